//! Start-up checks of process and kernel limits, with the fix printed when one is too low.

use nix::sys::resource::{getrlimit, setrlimit, Resource};

/// File descriptors kept aside for listeners, io_uring, eventfds, logs and the admin port.
fn reserved_fds(workers: usize) -> u64 {
    64 + 8 * workers as u64
}

/// Raise the soft RLIMIT_NOFILE to the hard limit, compare it with `max_connections`, warn
/// with the fix when it is too low, and return the connection limit that actually fits.
pub fn check_nofile(max_connections: usize, workers: usize) -> usize {
    let (mut soft, hard) = match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read RLIMIT_NOFILE");
            return max_connections;
        }
    };
    if soft < hard && setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_ok() {
        soft = hard;
    }
    let reserve = reserved_fds(workers);
    let needed = max_connections as u64 + reserve;
    if soft >= needed {
        tracing::info!(
            nofile = soft,
            max_connections,
            "file descriptor limit is sufficient"
        );
        return max_connections;
    }
    let fits = soft.saturating_sub(reserve).max(1) as usize;
    tracing::warn!(
        nofile_soft = soft,
        nofile_hard = hard,
        max_connections,
        effective_max_connections = fits,
        "RLIMIT_NOFILE is too low for max_connections; connections beyond {fits} will be refused. \
         Fix: raise the limit to at least {needed} (`ulimit -n {needed}` in the shell that \
         starts corecast, LimitNOFILE={needed} in its systemd unit, and fs.nr_open >= {needed}), \
         or lower --max-connections to {fits}"
    );
    fits
}

/// Log RLIMIT_MEMLOCK: io_uring rings were charged to it before Linux 5.12.
pub fn log_memlock() {
    if let Ok((soft, _)) = getrlimit(Resource::RLIMIT_MEMLOCK) {
        tracing::debug!(memlock_bytes = soft, "RLIMIT_MEMLOCK");
    }
}

/// Where the kernel keeps the largest SO_SNDBUF an unprivileged `setsockopt` may ask for.
const WMEM_MAX: &str = "/proc/sys/net/core/wmem_max";

/// Warn when `socket_send_buffer` is above `net.core.wmem_max`: the kernel would silently
/// cap every socket's send buffer there.
pub fn check_socket_send_buffer(bytes: usize) {
    if bytes == 0 {
        return;
    }
    let Some(max) = std::fs::read_to_string(WMEM_MAX)
        .ok()
        .and_then(|s| s.trim().parse::<usize>().ok())
    else {
        return;
    };
    if bytes > max {
        tracing::warn!(
            socket_send_buffer = bytes,
            wmem_max = max,
            "socket_send_buffer is above net.core.wmem_max; the kernel caps each socket's send \
             buffer at {max}. Fix: sysctl -w net.core.wmem_max={bytes} (and in /etc/sysctl.d), \
             or lower --socket-send-buffer"
        );
    } else {
        tracing::info!(
            socket_send_buffer = bytes,
            "kernel send buffer per connection"
        );
    }
}
