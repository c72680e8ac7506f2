//! The one `Config`: built-in defaults, then a TOML file (`--config`), then environment
//! variables (`CORECAST_*`), then command-line flags; validated before anything starts.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use serde::Deserialize;

/// Which io driver each worker's monoio runtime uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Driver {
    /// io_uring when the kernel allows it, epoll otherwise.
    Auto,
    /// io_uring only; fail at start if unavailable.
    Uring,
    /// epoll (monoio's legacy driver).
    Epoll,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Every setting of a corecast server.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// WebSocket listen address (each worker binds it with SO_REUSEPORT).
    pub listen: SocketAddr,
    /// Admin HTTP listen address.
    pub admin_listen: SocketAddr,
    /// Worker threads; 0 means one per available core.
    pub workers: usize,
    /// Pin each worker to a core.
    pub pin_workers: bool,
    /// The io driver.
    pub driver: Driver,
    /// io_uring submission queue entries per worker.
    pub uring_entries: u32,
    /// Listen backlog.
    pub backlog: u32,
    /// Maximum concurrent connections per process (sized against RLIMIT_NOFILE at start).
    pub max_connections: usize,
    /// Largest handshake request head in bytes (431 above it).
    pub max_handshake_bytes: usize,
    /// Largest frame payload in bytes (close 1009 above it).
    pub max_frame_bytes: usize,
    /// Largest message in bytes, fragments summed (close 1009 above it).
    pub max_message_bytes: usize,
    /// Bound on a connection's queued outgoing bytes.
    pub send_buffer_bytes: usize,
    /// Interval between server pings.
    pub ping_interval: Duration,
    /// Extra time after `ping_interval` for a silent peer before it is closed.
    pub pong_timeout: Duration,
    /// Time allowed to complete the upgrade handshake.
    pub handshake_timeout: Duration,
    /// Time allowed for the peer to answer our close frame.
    pub close_timeout: Duration,
    /// Window over which close 1001 is spread across connections on SIGTERM.
    pub drain_window: Duration,
    /// Subprotocols the server accepts, in no particular order.
    pub subprotocols: Vec<String>,
    /// Set TCP_NODELAY on accepted sockets.
    pub tcp_nodelay: bool,
    /// Log format.
    pub log_format: LogFormat,
    /// Log filter (tracing `EnvFilter` syntax), e.g. `info` or `corecast=debug`.
    pub log_filter: String,
    /// The TOML file this configuration was read from, if any.
    pub config_file: Option<PathBuf>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: "0.0.0.0:9001".parse().expect("static address"),
            admin_listen: "127.0.0.1:9002".parse().expect("static address"),
            workers: 0,
            pin_workers: true,
            driver: Driver::Auto,
            uring_entries: 4096,
            backlog: 4096,
            max_connections: 1_000_000,
            max_handshake_bytes: 8 * 1024,
            max_frame_bytes: 16 << 20,
            max_message_bytes: 16 << 20,
            send_buffer_bytes: 1 << 20,
            ping_interval: Duration::from_secs(25),
            pong_timeout: Duration::from_secs(5),
            handshake_timeout: Duration::from_secs(5),
            close_timeout: Duration::from_secs(5),
            drain_window: Duration::from_secs(10),
            subprotocols: Vec::new(),
            tcp_nodelay: true,
            log_format: LogFormat::Text,
            log_filter: "info".to_string(),
            config_file: None,
        }
    }
}

/// A configuration that cannot be used, with a message for the operator.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The TOML file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The TOML file is not valid.
    #[error("invalid config file {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A value is out of range or inconsistent with another.
    #[error("invalid setting `{field}`: {message}")]
    Invalid {
        /// The setting.
        field: &'static str,
        /// What is wrong and what is allowed.
        message: String,
    },
}

impl Config {
    /// The number of workers to start: `workers`, or the available cores when it is 0.
    pub fn worker_count(&self) -> usize {
        if self.workers > 0 {
            self.workers
        } else {
            std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
        }
    }

    /// Check ranges and consistency; the error names the setting and what is allowed.
    pub fn validate(&self) -> Result<(), ConfigError> {
        todo!()
    }
}
