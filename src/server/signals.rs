//! Signals for a standalone server: SIGTERM drains over `drain_window`, SIGINT drains at once,
//! a second signal exits immediately; SIGHUP reloads the TLS certificate (and does nothing
//! else, at any time).

use nix::sys::signal::{SigSet, Signal};

use super::{Server, ServerBuilder, ServerError};

/// Block SIGTERM, SIGINT and SIGHUP (workers inherit the mask), start the server, drain it on
/// the first SIGTERM or SIGINT, and return when every worker has finished. A second one exits
/// at once with status 128 + signal number. SIGHUP reloads the TLS certificate and key.
pub fn run_until_signalled(builder: ServerBuilder) -> Result<(), ServerError> {
    run_until_signalled_with(builder, |_| Ok(()))
}

/// [`run_until_signalled`], calling `after_start` once the workers run (with the signals
/// already blocked, so threads it starts inherit the mask); what it returns is kept until
/// the workers have stopped.
pub fn run_until_signalled_with<T>(
    builder: ServerBuilder,
    after_start: impl FnOnce(&Server) -> Result<T, ServerError>,
) -> Result<(), ServerError> {
    let mut set = SigSet::empty();
    set.add(Signal::SIGTERM);
    set.add(Signal::SIGINT);
    set.add(Signal::SIGHUP);
    if let Err(e) = set.thread_block() {
        tracing::warn!(error = %e, "cannot block signals; SIGTERM will kill without a drain");
    }
    let window = builder.config.drain_window;
    let server = builder.start()?;
    let keep = match after_start(&server) {
        Ok(k) => k,
        Err(e) => {
            server.drain(std::time::Duration::ZERO);
            let _ = server.join();
            return Err(e);
        }
    };
    let handle = server.shutdown_handle();
    std::thread::Builder::new()
        .name("corecast-signals".into())
        .spawn(move || {
            let wait = || loop {
                match set.wait() {
                    Ok(Signal::SIGHUP) => reload(&handle),
                    Ok(sig) => return Some(sig),
                    Err(_) => return None,
                }
            };
            let Some(first) = wait() else { return };
            let window = if first == Signal::SIGINT {
                std::time::Duration::ZERO
            } else {
                window
            };
            tracing::info!(signal = %first, ?window, "draining: closing connections with 1001");
            handle.drain(window);
            if let Some(second) = wait() {
                tracing::warn!(signal = %second, "second signal: exiting now");
                std::process::exit(128 + second as i32);
            }
        })
        .map_err(|e| ServerError::Worker {
            worker: usize::MAX,
            source: e,
        })?;
    let result = server.join();
    drop(keep);
    tracing::info!("all workers stopped");
    result
}

/// SIGHUP: reload the certificate, or say why not (the old one stays in use).
fn reload(handle: &super::ShutdownHandle) {
    match handle.reload_tls() {
        Ok(()) => tracing::info!("SIGHUP: TLS certificate reloaded; new handshakes use it"),
        Err(super::tls::TlsError::NotConfigured) => {
            tracing::info!("SIGHUP ignored: TLS is not configured")
        }
        Err(e) => {
            tracing::error!(error = %e, "SIGHUP: TLS reload failed; keeping the old certificate")
        }
    }
}
