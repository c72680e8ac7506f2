//! What the peer echo servers share: their two flags, the tokio runtime they run on, and the
//! accept loop. Each binary supplies only the per-connection echo task.

use std::{future::Future, net::SocketAddr, process::ExitCode, thread};

use tokio::net::{TcpListener, TcpStream};

/// The flags every peer takes: `--listen ADDR` and `--threads N`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Args {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// tokio worker threads (defaults to one per core).
    pub threads: usize,
}

impl Args {
    /// Parses `--listen ADDR` and `--threads N` (also `--flag=value`) from the given arguments.
    pub fn parse_from<I: IntoIterator<Item = String>>(args: I) -> Result<Args, String> {
        let mut listen: SocketAddr = "127.0.0.1:9001".parse().expect("valid default");
        let mut threads = thread::available_parallelism().map_or(1, |n| n.get());
        let mut it = args.into_iter();
        while let Some(arg) = it.next() {
            let (flag, inline) = match arg.split_once('=') {
                Some((f, v)) => (f.to_string(), Some(v.to_string())),
                None => (arg, None),
            };
            let mut value = || {
                inline
                    .clone()
                    .or_else(|| it.next())
                    .ok_or_else(|| format!("{flag} needs a value"))
            };
            match flag.as_str() {
                "--listen" => {
                    let v = value()?;
                    listen = v.parse().map_err(|e| format!("--listen {v}: {e}"))?;
                }
                "--threads" => {
                    let v = value()?;
                    threads = v.parse().map_err(|e| format!("--threads {v}: {e}"))?;
                    if threads == 0 {
                        return Err("--threads must be at least 1".into());
                    }
                }
                "-h" | "--help" => return Err(USAGE.into()),
                other => return Err(format!("unknown argument {other}\n{USAGE}")),
            }
        }
        Ok(Args { listen, threads })
    }
}

/// The usage line printed on `--help` or a bad flag.
pub const USAGE: &str =
    "usage: PEER [--listen ADDR (default 127.0.0.1:9001)] [--threads N (default: cores)]";

/// Parses the process arguments, builds a multi-thread runtime with `threads` workers, and
/// accepts connections until SIGINT/SIGTERM, handing each (with TCP_NODELAY set) to `serve`.
pub fn run<F, Fut>(name: &str, serve: F) -> ExitCode
where
    F: Fn(TcpStream, SocketAddr) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let args = match Args::parse_from(std::env::args().skip(1)) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{name}: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("{name}: runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        let listener = TcpListener::bind(args.listen).await?;
        eprintln!(
            "{name}: listening on {} with {} threads",
            listener.local_addr()?,
            args.threads
        );
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        loop {
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((stream, peer)) => {
                        let _ = stream.set_nodelay(true);
                        tokio::spawn(serve(stream, peer));
                    }
                    // Out of descriptors and the like: keep serving the connections we have.
                    Err(e) => eprintln!("{name}: accept: {e}"),
                },
                _ = tokio::signal::ctrl_c() => break,
                _ = term.recv() => break,
            }
        }
        Ok::<(), std::io::Error>(())
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{name}: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Args, String> {
        Args::parse_from(args.iter().map(|s| s.to_string()))
    }

    #[test]
    fn parses_both_flags_in_both_spellings() {
        let a = parse(&["--listen", "127.0.0.1:7000", "--threads=3"]).unwrap();
        assert_eq!(a.listen, "127.0.0.1:7000".parse().unwrap());
        assert_eq!(a.threads, 3);
    }

    #[test]
    fn rejects_unknown_and_zero() {
        assert!(parse(&["--bogus"]).is_err());
        assert!(parse(&["--threads", "0"]).is_err());
        assert!(parse(&["--listen"]).is_err());
    }
}
