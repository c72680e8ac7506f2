//! The one `Config`: built-in defaults, then a TOML file (`--config`), then environment
//! variables (`CORECAST_*`), then command-line flags; validated before anything starts.

use std::{
    ffi::OsString,
    fmt,
    net::SocketAddr,
    path::{Path, PathBuf},
    str::FromStr,
    time::Duration,
};

use clap::{ArgAction, Parser, ValueEnum};
use serde::{de, Deserialize, Deserializer};

mod guard;
pub use guard::{AuthConfig, AuthMode, GuardCli, JwtAlgorithm, LimitsConfig};

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

/// What happens to a published message without a conflation key that does not fit a
/// subscriber's send buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum SlowConsumer {
    /// Close the connection with 1008 "slow consumer".
    Disconnect,
    /// Drop the message for that subscriber; it sees the gap in `seq`.
    Drop,
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
    /// A file holding the admin API's bearer token; when set, every admin endpoint except
    /// `/healthz` and `/readyz` requires `Authorization: Bearer <token>`.
    pub admin_token_file: Option<PathBuf>,
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
    /// SO_SNDBUF of accepted sockets in bytes; 0 leaves the kernel's autotuning in place.
    pub socket_send_buffer: usize,
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
    /// Subprotocols the server accepts, in no particular order (the pub/sub server adds its own).
    pub subprotocols: Vec<String>,
    /// Messages each topic keeps for resuming with `since` (0 = no history).
    pub history_len: usize,
    /// Age after which a message leaves a topic's history.
    pub history_max_age: Duration,
    /// The slow-consumer policy of topics not named in `drop_topics`.
    pub slow_consumer: SlowConsumer,
    /// Topics whose slow subscribers lose messages instead of being disconnected: exact names
    /// or prefixes ending in `.*` (e.g. `md.*`).
    pub drop_topics: Vec<String>,
    /// Items each worker's cross-worker inbox holds.
    pub inbox_capacity: usize,
    /// Set TCP_NODELAY on accepted sockets.
    pub tcp_nodelay: bool,
    /// Log format.
    pub log_format: LogFormat,
    /// Log filter (tracing `EnvFilter` syntax), e.g. `info` or `corecast=debug`.
    pub log_filter: String,
    /// The TOML file this configuration was read from, if any.
    pub config_file: Option<PathBuf>,
    /// PEM certificate chain (leaf first) for wss://; with `tls_key`, the listener speaks TLS only.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1) of `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// Authentication and origin checks (`[auth]`).
    pub auth: AuthConfig,
    /// Per-IP, per-user and per-connection limits (`[limits]`).
    pub limits: LimitsConfig,
    /// Negotiate permessage-deflate (RFC 7692) with clients that offer it.
    pub permessage_deflate: bool,
    /// Messages smaller than this many bytes are sent uncompressed.
    pub deflate_threshold: usize,
    /// zlib compression level of the messages the server sends (1 fastest .. 9 smallest).
    pub deflate_level: u32,
    /// Ask every client to compress each message with a fresh context, so no connection
    /// needs an inflater of its own.
    pub deflate_client_no_context_takeover: bool,
    /// Widest LZ77 window (9..=15 bits) a client may compress with, when it lets the server
    /// choose; bounds the inflater memory of a connection that keeps its context.
    pub deflate_client_max_window_bits: u8,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: "0.0.0.0:9001".parse().expect("static address"),
            admin_listen: "127.0.0.1:9002".parse().expect("static address"),
            admin_token_file: None,
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
            socket_send_buffer: 0,
            ping_interval: Duration::from_secs(25),
            pong_timeout: Duration::from_secs(5),
            handshake_timeout: Duration::from_secs(5),
            close_timeout: Duration::from_secs(5),
            drain_window: Duration::from_secs(10),
            subprotocols: Vec::new(),
            history_len: 256,
            history_max_age: Duration::from_secs(60),
            slow_consumer: SlowConsumer::Disconnect,
            drop_topics: Vec::new(),
            inbox_capacity: 8192,
            tcp_nodelay: true,
            log_format: LogFormat::Text,
            log_filter: "info".to_string(),
            config_file: None,
            tls_cert: None,
            tls_key: None,
            auth: AuthConfig::default(),
            limits: LimitsConfig::default(),
            permessage_deflate: false,
            deflate_threshold: 256,
            deflate_level: 6,
            deflate_client_no_context_takeover: false,
            deflate_client_max_window_bits: 15,
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
    /// The command line could not be parsed (clap's rendered message; from [`from_args`] this
    /// also carries the `--help` / `--version` text).
    #[error("{0}")]
    Cli(String),
}

/// The environment variable naming the TOML file (the `--config` flag wins over it).
pub const CONFIG_ENV: &str = "CORECAST_CONFIG";

/// The prefix of every setting's environment variable: `CORECAST_` + the field name in capitals.
pub const ENV_PREFIX: &str = "CORECAST_";

/// Most workers `validate` accepts.
const MAX_WORKERS: usize = 1024;
/// Upper bound for every duration, so `Instant + duration` can never overflow.
const MAX_DURATION: Duration = Duration::from_secs(24 * 60 * 60);
const KIB: usize = 1 << 10;
const MIB: usize = 1 << 20;
/// The largest SO_SNDBUF accepted (the kernel doubles it and keeps it in an `int`).
const MAX_SOCKET_BUFFER: usize = 512 * MIB;
const GIB: usize = 1 << 30;

impl Config {
    /// The number of workers to start: `workers`, or the available cores when it is 0.
    pub fn worker_count(&self) -> usize {
        if self.workers > 0 {
            self.workers
        } else {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        }
    }

    /// Build the configuration from `std::env::args_os()` and the process environment, validated.
    ///
    /// `--help` / `--version` print and exit 0; a usage error prints clap's message and exits 2.
    pub fn load() -> Result<Config, ConfigError> {
        resolve(Cli::parse(), process_env)
    }

    /// Like [`Config::load`] with explicit arguments (`args[0]` is the program name); clap errors
    /// (and `--help` / `--version`) come back as [`ConfigError::Cli`] instead of exiting.
    pub fn from_args<I, T>(args: I) -> Result<Config, ConfigError>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString> + Clone,
    {
        from_args(args)
    }

    /// Overlay the settings present in TOML text `s` onto `base` (not validated).
    pub fn from_toml_str(s: &str, base: Config) -> Result<Config, ConfigError> {
        from_toml_str(s, base)
    }

    /// Check ranges and consistency; the error names the setting and what is allowed.
    pub fn validate(&self) -> Result<(), ConfigError> {
        check(
            self.workers <= MAX_WORKERS,
            "workers",
            self.workers,
            format_args!("0 (one per core) to {MAX_WORKERS}"),
        )?;
        check(
            self.uring_entries.is_power_of_two() && (8..=32768).contains(&self.uring_entries),
            "uring_entries",
            self.uring_entries,
            "a power of two from 8 to 32768",
        )?;
        check(self.backlog >= 1, "backlog", self.backlog, "at least 1")?;
        check(
            self.max_connections >= 1,
            "max_connections",
            self.max_connections,
            "at least 1",
        )?;
        check(
            (KIB..=MIB).contains(&self.max_handshake_bytes),
            "max_handshake_bytes",
            Size(self.max_handshake_bytes),
            "1KiB to 1MiB",
        )?;
        check(
            self.max_message_bytes <= GIB,
            "max_message_bytes",
            Size(self.max_message_bytes),
            "at most 1GiB",
        )?;
        check(
            self.max_frame_bytes >= 125 && self.max_frame_bytes <= self.max_message_bytes,
            "max_frame_bytes",
            Size(self.max_frame_bytes),
            format_args!(
                "125 bytes up to max_message_bytes ({})",
                Size(self.max_message_bytes)
            ),
        )?;
        check(
            self.send_buffer_bytes >= KIB,
            "send_buffer_bytes",
            Size(self.send_buffer_bytes),
            "at least 1KiB",
        )?;
        check(
            self.socket_send_buffer == 0
                || (4 * KIB..=MAX_SOCKET_BUFFER).contains(&self.socket_send_buffer),
            "socket_send_buffer",
            Size(self.socket_send_buffer),
            "0 (the kernel's autotuning) or 4KiB to 512MiB",
        )?;
        let durations = [
            (
                "ping_interval",
                self.ping_interval,
                Duration::from_millis(100),
            ),
            ("pong_timeout", self.pong_timeout, Duration::from_millis(10)),
            (
                "handshake_timeout",
                self.handshake_timeout,
                Duration::from_millis(10),
            ),
            (
                "close_timeout",
                self.close_timeout,
                Duration::from_millis(10),
            ),
            ("drain_window", self.drain_window, Duration::ZERO),
        ];
        for (field, value, min) in durations {
            check(
                (min..=MAX_DURATION).contains(&value),
                field,
                Human(value),
                format_args!("{} to {}", Human(min), Human(MAX_DURATION)),
            )?;
        }
        for name in &self.subprotocols {
            check(
                is_http_token(name),
                "subprotocols",
                format_args!("{name:?}"),
                "non-empty HTTP tokens (letters, digits and !#$%&'*+-.^_`|~)",
            )?;
        }
        check(
            self.history_len <= 1_000_000,
            "history_len",
            self.history_len,
            "0 to 1000000",
        )?;
        check(
            (Duration::from_millis(100)..=MAX_DURATION).contains(&self.history_max_age),
            "history_max_age",
            Human(self.history_max_age),
            format_args!("100ms to {}", Human(MAX_DURATION)),
        )?;
        check(
            (64..=1 << 20).contains(&self.inbox_capacity),
            "inbox_capacity",
            self.inbox_capacity,
            "64 to 1048576",
        )?;
        for p in &self.drop_topics {
            let name = p.strip_suffix(".*").unwrap_or(p);
            check(
                crate::pubsub::TopicName::new(name).is_ok(),
                "drop_topics",
                format_args!("{p:?}"),
                "topic names or prefixes ending in .* (e.g. md.*)",
            )?;
        }
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            let (field, other) = if self.tls_cert.is_some() {
                ("tls_key", "tls_cert")
            } else {
                ("tls_cert", "tls_key")
            };
            return Err(ConfigError::Invalid {
                field,
                message: format!("got none while {other} is set; allowed: both or neither"),
            });
        }
        check(
            self.deflate_threshold <= GIB,
            "deflate_threshold",
            Size(self.deflate_threshold),
            "at most 1GiB",
        )?;
        check(
            (1..=9).contains(&self.deflate_level),
            "deflate_level",
            self.deflate_level,
            "1 (fastest) to 9 (smallest)",
        )?;
        check(
            (9..=15).contains(&self.deflate_client_max_window_bits),
            "deflate_client_max_window_bits",
            self.deflate_client_max_window_bits,
            "9 to 15",
        )?;
        if let Err(e) = tracing_subscriber::EnvFilter::builder().parse(&self.log_filter) {
            return Err(ConfigError::Invalid {
                field: "log_filter",
                message: format!(
                    "got {:?} ({e}); allowed: tracing EnvFilter directives such as \
                     \"info\" or \"warn,corecast=debug\"",
                    self.log_filter
                ),
            });
        }
        guard::validate(&self.auth, &self.limits)
    }
}

/// Like [`Config::load`] with explicit arguments (`args[0]` is the program name); clap errors
/// (and `--help` / `--version`) come back as [`ConfigError::Cli`] instead of exiting.
pub fn from_args<I, T>(args: I) -> Result<Config, ConfigError>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let cli = Cli::try_parse_from(args).map_err(|e| ConfigError::Cli(e.to_string()))?;
    resolve(cli, process_env)
}

/// Overlay the settings present in TOML text `s` onto `base` (not validated).
pub fn from_toml_str(s: &str, base: Config) -> Result<Config, ConfigError> {
    overlay_toml(s, base).map_err(|message| ConfigError::Parse {
        path: PathBuf::from("<string>"),
        message,
    })
}

/// The command-line flags; every one is optional so an unset flag leaves the lower layers alone.
#[derive(Debug, Clone, Default, Parser)]
#[command(
    name = "corecast",
    version,
    about = "A WebSocket pub/sub server on thread-per-core io_uring runtimes",
    long_about = None,
    after_help = "Precedence: defaults < TOML file < CORECAST_* environment < flags.\n\
                  Durations: 25s, 500ms, 2m, 1h or bare seconds. Sizes: 4096, 64KB, 8KiB, 16MiB, 1GiB."
)]
pub struct Cli {
    /// TOML configuration file [default: none] [env: CORECAST_CONFIG]
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// WebSocket listen address, IP:PORT [default: 0.0.0.0:9001] [env: CORECAST_LISTEN]
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// Admin HTTP listen address, IP:PORT [default: 127.0.0.1:9002] [env: CORECAST_ADMIN_LISTEN]
    #[arg(long, value_name = "ADDR")]
    pub admin_listen: Option<SocketAddr>,
    /// File with the admin API's bearer token (required on all but /healthz and /readyz) [default: none] [env: CORECAST_ADMIN_TOKEN_FILE]
    #[arg(long, value_name = "FILE")]
    pub admin_token_file: Option<PathBuf>,
    /// Worker threads, 0 = one per core, at most 1024 [default: 0] [env: CORECAST_WORKERS]
    #[arg(long, value_name = "N")]
    pub workers: Option<usize>,
    /// Pin each worker to a core [default: true] [env: CORECAST_PIN_WORKERS]
    #[arg(long, value_name = "BOOL", value_parser = parse_bool, action = ArgAction::Set)]
    pub pin_workers: Option<bool>,
    /// I/O driver: auto, uring or epoll [default: auto] [env: CORECAST_DRIVER]
    #[arg(long, value_name = "DRIVER", hide_possible_values = true)]
    pub driver: Option<Driver>,
    /// io_uring entries per worker, a power of two in 8..=32768 [default: 4096] [env: CORECAST_URING_ENTRIES]
    #[arg(long, value_name = "N")]
    pub uring_entries: Option<u32>,
    /// Listen backlog [default: 4096] [env: CORECAST_BACKLOG]
    #[arg(long, value_name = "N")]
    pub backlog: Option<u32>,
    /// Maximum concurrent connections [default: 1000000] [env: CORECAST_MAX_CONNECTIONS]
    #[arg(long, value_name = "N")]
    pub max_connections: Option<usize>,
    /// Largest handshake request head, 1KiB..=1MiB [default: 8KiB] [env: CORECAST_MAX_HANDSHAKE_BYTES]
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub max_handshake_bytes: Option<usize>,
    /// Largest frame payload [default: 16MiB] [env: CORECAST_MAX_FRAME_BYTES]
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub max_frame_bytes: Option<usize>,
    /// Largest message, fragments summed, at most 1GiB [default: 16MiB] [env: CORECAST_MAX_MESSAGE_BYTES]
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub max_message_bytes: Option<usize>,
    /// Bound on a connection's queued outgoing bytes [default: 1MiB] [env: CORECAST_SEND_BUFFER_BYTES]
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub send_buffer_bytes: Option<usize>,
    /// Kernel send buffer (SO_SNDBUF) of accepted sockets, 0 = the kernel's autotuning, else 4KiB..=512MiB [default: 0] [env: CORECAST_SOCKET_SEND_BUFFER]
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub socket_send_buffer: Option<usize>,
    /// Interval between server pings [default: 25s] [env: CORECAST_PING_INTERVAL]
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub ping_interval: Option<Duration>,
    /// Extra time a silent peer gets after a ping interval [default: 5s] [env: CORECAST_PONG_TIMEOUT]
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub pong_timeout: Option<Duration>,
    /// Time allowed to complete the upgrade handshake [default: 5s] [env: CORECAST_HANDSHAKE_TIMEOUT]
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub handshake_timeout: Option<Duration>,
    /// Time allowed for the peer to answer our close frame [default: 5s] [env: CORECAST_CLOSE_TIMEOUT]
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub close_timeout: Option<Duration>,
    /// Window over which connections are closed on SIGTERM [default: 10s] [env: CORECAST_DRAIN_WINDOW]
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub drain_window: Option<Duration>,
    /// Accepted subprotocol; repeat or comma-separate [default: none] [env: CORECAST_SUBPROTOCOLS]
    #[arg(long, value_name = "NAME", value_delimiter = ',')]
    pub subprotocol: Option<Vec<String>>,
    /// Messages each topic keeps for resume, 0..=1000000 [default: 256] [env: CORECAST_HISTORY_LEN]
    #[arg(long, value_name = "N")]
    pub history_len: Option<usize>,
    /// Age after which a message leaves a topic's history [default: 1m] [env: CORECAST_HISTORY_MAX_AGE]
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub history_max_age: Option<Duration>,
    /// Slow-consumer policy for unkeyed messages: disconnect or drop [default: disconnect] [env: CORECAST_SLOW_CONSUMER]
    #[arg(long, value_name = "POLICY", hide_possible_values = true)]
    pub slow_consumer: Option<SlowConsumer>,
    /// Topics that drop instead of disconnecting (names or prefix.*); repeat or comma-separate [default: none] [env: CORECAST_DROP_TOPICS]
    #[arg(long, value_name = "PATTERN", value_delimiter = ',')]
    pub drop_topics: Option<Vec<String>>,
    /// Items each worker's cross-worker inbox holds, 64..=1048576 [default: 8192] [env: CORECAST_INBOX_CAPACITY]
    #[arg(long, value_name = "N")]
    pub inbox_capacity: Option<usize>,
    /// Set TCP_NODELAY on accepted sockets [default: true] [env: CORECAST_TCP_NODELAY]
    #[arg(long, value_name = "BOOL", value_parser = parse_bool, action = ArgAction::Set)]
    pub tcp_nodelay: Option<bool>,
    /// Log format: text or json [default: text] [env: CORECAST_LOG_FORMAT]
    #[arg(long, value_name = "FORMAT", hide_possible_values = true)]
    pub log_format: Option<LogFormat>,
    /// Shorthand for --log-format json
    #[arg(long, conflicts_with = "log_format")]
    pub json_logs: bool,
    /// Log filter, tracing EnvFilter syntax [default: info] [env: CORECAST_LOG_FILTER]
    #[arg(long, value_name = "FILTER")]
    pub log_filter: Option<String>,
    /// PEM certificate chain; with --tls-key the listener speaks wss:// only [default: none] [env: CORECAST_TLS_CERT]
    #[arg(long, value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert [default: none] [env: CORECAST_TLS_KEY]
    #[arg(long, value_name = "FILE")]
    pub tls_key: Option<PathBuf>,
    /// Authentication, origin and limit flags.
    #[command(flatten)]
    pub guard: GuardCli,
    /// Negotiate permessage-deflate; the flag alone means true [default: false] [env: CORECAST_PERMESSAGE_DEFLATE]
    #[arg(long, value_name = "BOOL", value_parser = parse_bool, action = ArgAction::Set,
          num_args = 0..=1, default_missing_value = "true")]
    pub permessage_deflate: Option<bool>,
    /// Messages under this size are sent uncompressed [default: 256] [env: CORECAST_DEFLATE_THRESHOLD]
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub deflate_threshold: Option<usize>,
    /// Compression level, 1..=9 [default: 6] [env: CORECAST_DEFLATE_LEVEL]
    #[arg(long, value_name = "N")]
    pub deflate_level: Option<u32>,
    /// Ask clients to compress without context takeover [default: false] [env: CORECAST_DEFLATE_CLIENT_NO_CONTEXT_TAKEOVER]
    #[arg(long, value_name = "BOOL", value_parser = parse_bool, action = ArgAction::Set)]
    pub deflate_client_no_context_takeover: Option<bool>,
    /// Widest client window in bits, 9..=15 [default: 15] [env: CORECAST_DEFLATE_CLIENT_MAX_WINDOW_BITS]
    #[arg(long, value_name = "BITS")]
    pub deflate_client_max_window_bits: Option<u8>,
}

/// The TOML file's shape: every key optional, unknown keys rejected.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen: Option<SocketAddr>,
    admin_listen: Option<SocketAddr>,
    admin_token_file: Option<PathBuf>,
    workers: Option<usize>,
    pin_workers: Option<bool>,
    driver: Option<Driver>,
    uring_entries: Option<u32>,
    backlog: Option<u32>,
    max_connections: Option<usize>,
    max_handshake_bytes: Option<FileSize>,
    max_frame_bytes: Option<FileSize>,
    max_message_bytes: Option<FileSize>,
    send_buffer_bytes: Option<FileSize>,
    socket_send_buffer: Option<FileSize>,
    ping_interval: Option<FileDuration>,
    pong_timeout: Option<FileDuration>,
    handshake_timeout: Option<FileDuration>,
    close_timeout: Option<FileDuration>,
    drain_window: Option<FileDuration>,
    subprotocols: Option<Vec<String>>,
    history_len: Option<usize>,
    history_max_age: Option<FileDuration>,
    slow_consumer: Option<SlowConsumer>,
    drop_topics: Option<Vec<String>>,
    inbox_capacity: Option<usize>,
    tcp_nodelay: Option<bool>,
    log_format: Option<LogFormat>,
    log_filter: Option<String>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    auth: Option<guard::FileAuth>,
    limits: Option<guard::FileLimits>,
    permessage_deflate: Option<bool>,
    deflate_threshold: Option<FileSize>,
    deflate_level: Option<u32>,
    deflate_client_no_context_takeover: Option<bool>,
    deflate_client_max_window_bits: Option<u8>,
}

/// A TOML duration: a string `parse_duration` accepts, or an integer number of seconds.
#[derive(Debug)]
struct FileDuration(Duration);

impl From<FileDuration> for Duration {
    fn from(d: FileDuration) -> Duration {
        d.0
    }
}

impl<'de> Deserialize<'de> for FileDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl de::Visitor<'_> for V {
            type Value = FileDuration;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(
                    "a duration such as \"25s\", \"500ms\", \"2m\", \"1h\", or whole seconds",
                )
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<FileDuration, E> {
                Ok(FileDuration(Duration::from_secs(v)))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<FileDuration, E> {
                let v = u64::try_from(v)
                    .map_err(|_| E::invalid_value(de::Unexpected::Signed(v), &self))?;
                self.visit_u64(v)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<FileDuration, E> {
                parse_duration(v).map(FileDuration).map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

/// A TOML byte size: a string `parse_size` accepts, or an integer number of bytes.
#[derive(Debug)]
struct FileSize(usize);

impl From<FileSize> for usize {
    fn from(s: FileSize) -> usize {
        s.0
    }
}

impl<'de> Deserialize<'de> for FileSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl de::Visitor<'_> for V {
            type Value = FileSize;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a size such as \"8KiB\", \"16MiB\", \"64KB\", or a number of bytes")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<FileSize, E> {
                usize::try_from(v)
                    .map(FileSize)
                    .map_err(|_| E::invalid_value(de::Unexpected::Unsigned(v), &self))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<FileSize, E> {
                let v = u64::try_from(v)
                    .map_err(|_| E::invalid_value(de::Unexpected::Signed(v), &self))?;
                self.visit_u64(v)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<FileSize, E> {
                parse_size(v).map(FileSize).map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

/// Copy every `Some` field of `$src` onto the same-named field of `$dst`, converting with `Into`.
macro_rules! overlay {
    ($dst:ident <- $src:ident: $($field:ident),* $(,)?) => {
        $(if let Some(v) = $src.$field {
            $dst.$field = v.into();
        })*
    };
}

/// Overlay TOML text onto `base`; the error is a one-line message with the position.
fn overlay_toml(s: &str, mut base: Config) -> Result<Config, String> {
    let file: FileConfig = toml::from_str(s).map_err(|e| match e.span() {
        Some(span) => {
            let before = &s[..span.start.min(s.len())];
            let line = before.matches('\n').count() + 1;
            let line_start = before.rfind('\n').map_or(0, |i| i + 1);
            let column = before.len() - line_start + 1;
            let text = s[line_start..].lines().next().unwrap_or("").trim();
            format!(
                "line {line}, column {column} (`{text}`): {}",
                e.message().trim_end()
            )
        }
        None => e.message().trim_end().to_string(),
    })?;
    overlay!(base <- file:
        listen, admin_listen, admin_token_file, workers, pin_workers, driver, uring_entries, backlog,
        max_connections, max_handshake_bytes, max_frame_bytes, max_message_bytes,
        send_buffer_bytes, socket_send_buffer, ping_interval, pong_timeout, handshake_timeout,
        close_timeout, drain_window, subprotocols, history_len, history_max_age, slow_consumer,
        drop_topics, inbox_capacity, tcp_nodelay, log_format, log_filter, tls_cert, tls_key,
        permessage_deflate, deflate_threshold, deflate_level, deflate_client_no_context_takeover,
        deflate_client_max_window_bits,
    );
    guard::overlay_file(&mut base.auth, &mut base.limits, file.auth, file.limits);
    Ok(base)
}

/// The real process environment (non-UTF-8 values are passed on lossily and fail to parse).
fn process_env(name: &str) -> Option<String> {
    std::env::var_os(name).map(|v| v.to_string_lossy().into_owned())
}

/// The environment variable of a setting: `CORECAST_` + the field name in capitals.
fn env_name(field: &str) -> String {
    format!("{ENV_PREFIX}{}", field.to_ascii_uppercase())
}

/// All layers: defaults, then the TOML file, then `env`, then `cli`; validated.
fn resolve(cli: Cli, env: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
    // An empty variable counts as unset, as with clap's own `env` handling.
    let env = |name: &str| env(name).filter(|v| !v.is_empty());
    let mut config = Config::default();

    let file = cli
        .config
        .clone()
        .or_else(|| env(CONFIG_ENV).map(PathBuf::from));
    if let Some(path) = file {
        config = read_file(&path, config)?;
        config.config_file = Some(path);
    }
    overlay_env(&mut config, &env)?;
    overlay_cli(&mut config, cli);
    config.validate()?;
    Ok(config)
}

/// Read and overlay one TOML file.
fn read_file(path: &Path, base: Config) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    overlay_toml(&text, base).map_err(|message| ConfigError::Parse {
        path: path.to_path_buf(),
        message,
    })
}

/// Overlay every `CORECAST_<FIELD>` variable that is set.
fn overlay_env(
    config: &mut Config,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(), ConfigError> {
    fn var<T>(
        env: &dyn Fn(&str) -> Option<String>,
        field: &'static str,
        parse: fn(&str) -> Result<T, String>,
    ) -> Result<Option<T>, ConfigError> {
        let name = env_name(field);
        match env(&name) {
            None => Ok(None),
            Some(raw) => parse(&raw).map(Some).map_err(|e| ConfigError::Invalid {
                field,
                message: format!("{name}={raw:?}: {e}"),
            }),
        }
    }
    macro_rules! from_env {
        ($($field:ident => $parse:expr),* $(,)?) => {
            $(if let Some(v) = var(env, stringify!($field), $parse)? {
                config.$field = v;
            })*
        };
    }
    from_env! {
        listen => parse_from_str::<SocketAddr>,
        admin_listen => parse_from_str::<SocketAddr>,
        admin_token_file => |s| Ok(Some(PathBuf::from(s))),
        workers => parse_from_str::<usize>,
        pin_workers => parse_bool,
        driver => parse_value_enum::<Driver>,
        uring_entries => parse_from_str::<u32>,
        backlog => parse_from_str::<u32>,
        max_connections => parse_from_str::<usize>,
        max_handshake_bytes => parse_size,
        max_frame_bytes => parse_size,
        max_message_bytes => parse_size,
        send_buffer_bytes => parse_size,
        socket_send_buffer => parse_size,
        ping_interval => parse_duration,
        pong_timeout => parse_duration,
        handshake_timeout => parse_duration,
        close_timeout => parse_duration,
        drain_window => parse_duration,
        subprotocols => parse_list,
        history_len => parse_from_str::<usize>,
        history_max_age => parse_duration,
        slow_consumer => parse_value_enum::<SlowConsumer>,
        drop_topics => parse_list,
        inbox_capacity => parse_from_str::<usize>,
        tcp_nodelay => parse_bool,
        log_format => parse_value_enum::<LogFormat>,
        log_filter => |s| Ok(s.to_string()),
        tls_cert => |s| Ok(Some(PathBuf::from(s))),
        tls_key => |s| Ok(Some(PathBuf::from(s))),
        permessage_deflate => parse_bool,
        deflate_threshold => parse_size,
        deflate_level => parse_from_str::<u32>,
        deflate_client_no_context_takeover => parse_bool,
        deflate_client_max_window_bits => parse_from_str::<u8>,
    }
    guard::overlay_env(&mut config.auth, &mut config.limits, env)?;
    Ok(())
}

/// Overlay every flag that was given.
fn overlay_cli(config: &mut Config, cli: Cli) {
    overlay!(config <- cli:
        listen, admin_listen, admin_token_file, workers, pin_workers, driver, uring_entries, backlog,
        max_connections, max_handshake_bytes, max_frame_bytes, max_message_bytes,
        send_buffer_bytes, socket_send_buffer, ping_interval, pong_timeout, handshake_timeout,
        close_timeout, drain_window, history_len, history_max_age, slow_consumer, drop_topics,
        inbox_capacity, tcp_nodelay, log_format, log_filter, tls_cert, tls_key, permessage_deflate,
        deflate_threshold, deflate_level, deflate_client_no_context_takeover,
        deflate_client_max_window_bits,
    );
    if let Some(names) = cli.subprotocol {
        config.subprotocols = names;
    }
    if cli.json_logs {
        config.log_format = LogFormat::Json;
    }
    guard::overlay_cli(&mut config.auth, &mut config.limits, cli.guard);
}

/// Parse with `FromStr`, keeping the type's own message.
fn parse_from_str<T: FromStr>(s: &str) -> Result<T, String>
where
    T::Err: fmt::Display,
{
    s.trim().parse().map_err(|e| format!("{e}"))
}

/// Parse a clap `ValueEnum` by name, ignoring case.
fn parse_value_enum<T: ValueEnum>(s: &str) -> Result<T, String> {
    T::from_str(s.trim(), true).map_err(|_| {
        let names: Vec<String> = T::value_variants()
            .iter()
            .filter_map(|v| v.to_possible_value())
            .map(|p| p.get_name().to_string())
            .collect();
        format!("expected one of {}", names.join(", "))
    })
}

/// A comma-separated list; blanks around names and empty items are dropped.
fn parse_list(s: &str) -> Result<Vec<String>, String> {
    Ok(s.split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(str::to_string)
        .collect())
}

/// Parse a boolean: `true`/`false`, `yes`/`no`, `on`/`off` or `1`/`0`, in any case.
pub fn parse_bool(s: &str) -> Result<bool, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "true" | "yes" | "on" | "1" => Ok(true),
        "false" | "no" | "off" | "0" => Ok(false),
        _ => Err(format!(
            "invalid boolean {s:?}: expected true/false, yes/no, on/off or 1/0"
        )),
    }
}

/// Parse a duration: `"500ms"`, `"25s"`, `"2m"`, `"1h"`, or a bare whole number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad = || {
        format!(
            "invalid duration {s:?}: expected a whole number with unit ms, s, m or h \
             (e.g. \"500ms\", \"25s\", \"2m\", \"1h\"), or bare seconds"
        )
    };
    let (n, unit) = split_number(s).ok_or_else(bad)?;
    let too_big = || format!("duration {s:?} is too large");
    match unit {
        "ms" => Ok(Duration::from_millis(n)),
        "" | "s" => Ok(Duration::from_secs(n)),
        "m" => n
            .checked_mul(60)
            .map(Duration::from_secs)
            .ok_or_else(too_big),
        "h" => n
            .checked_mul(3600)
            .map(Duration::from_secs)
            .ok_or_else(too_big),
        _ => Err(bad()),
    }
}

/// Parse a byte size: `"4096"`, `"4096B"`, `"64KB"` (KB = 1000), `"8KiB"`, `"16MiB"`, `"1GiB"`.
///
/// Units (case-insensitive): B, KB, MB, GB, TB (powers of 1000), KiB, MiB, GiB, TiB (of 1024).
pub fn parse_size(s: &str) -> Result<usize, String> {
    let bad = || {
        format!(
            "invalid size {s:?}: expected a whole number of bytes with an optional unit \
             B, KB, MB, GB (powers of 1000) or KiB, MiB, GiB (powers of 1024), e.g. \"8KiB\""
        )
    };
    let (n, unit) = split_number(s).ok_or_else(bad)?;
    let scale: u64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "tb" => 1_000_000_000_000,
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        "tib" => 1 << 40,
        _ => return Err(bad()),
    };
    n.checked_mul(scale)
        .and_then(|v| usize::try_from(v).ok())
        .ok_or_else(|| format!("size {s:?} is too large"))
}

/// Split `" 25 ms "` into `(25, "ms")`; `None` without leading digits or on overflow.
fn split_number(s: &str) -> Option<(u64, &str)> {
    let s = s.trim();
    let end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, unit) = s.split_at(end);
    if digits.is_empty() {
        return None;
    }
    Some((digits.parse().ok()?, unit.trim_start()))
}

/// RFC 7230 `token`: one or more `tchar`.
fn is_http_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// `Ok` when `ok`, else an `Invalid` error: "got VALUE; allowed: ALLOWED".
fn check(
    ok: bool,
    field: &'static str,
    got: impl fmt::Display,
    allowed: impl fmt::Display,
) -> Result<(), ConfigError> {
    if ok {
        Ok(())
    } else {
        Err(ConfigError::Invalid {
            field,
            message: format!("got {got}; allowed: {allowed}"),
        })
    }
}

/// Shows a byte count in the largest exact binary unit ("16MiB"), else as "N bytes".
struct Size(usize);

impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0;
        for (unit, scale) in [("GiB", GIB), ("MiB", MIB), ("KiB", KIB)] {
            if n >= scale && n % scale == 0 {
                return write!(f, "{}{unit}", n / scale);
            }
        }
        write!(f, "{n} bytes")
    }
}

/// Shows a duration in the largest exact unit of h, m, s, ms ("25s", "1500ms").
struct Human(Duration);

impl fmt::Display for Human {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = self.0;
        if d.subsec_nanos() % 1_000_000 != 0 {
            return write!(f, "{d:?}");
        }
        let ms = d.as_millis();
        if ms == 0 {
            return f.write_str("0s");
        }
        for (unit, scale) in [("h", 3_600_000), ("m", 60_000), ("s", 1_000)] {
            if ms % scale == 0 {
                return write!(f, "{}{unit}", ms / scale);
            }
        }
        write!(f, "{ms}ms")
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use clap::CommandFactory;

    use super::*;

    /// Parse `args` (without the program name) and resolve against an explicit environment.
    fn resolve_with(args: &[&str], env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let env: HashMap<String, String> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let cli = Cli::try_parse_from(std::iter::once("corecast").chain(args.iter().copied()))
            .map_err(|e| ConfigError::Cli(e.to_string()))?;
        resolve(cli, move |k| env.get(k).cloned())
    }

    fn invalid_field(r: Result<impl fmt::Debug, ConfigError>) -> (&'static str, String) {
        match r {
            Err(ConfigError::Invalid { field, message }) => (field, message),
            other => panic!("expected ConfigError::Invalid, got {other:?}"),
        }
    }

    fn toml_file(text: &str) -> tempfile::NamedTempFile {
        use std::io::Write;
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(text.as_bytes()).unwrap();
        f
    }

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn defaults_are_valid_and_used_when_nothing_is_set() {
        Config::default().validate().unwrap();
        assert_eq!(resolve_with(&[], &[]).unwrap(), Config::default());
        let c = Config::default();
        assert_eq!(c.listen, "0.0.0.0:9001".parse().unwrap());
        assert_eq!(c.ping_interval, Duration::from_secs(25));
        assert_eq!(c.max_frame_bytes, 16 << 20);
        assert_eq!(c.config_file, None);
    }

    #[test]
    fn toml_overrides_defaults() {
        let c = from_toml_str(
            r#"
            listen = "127.0.0.1:8000"
            workers = 4
            pin_workers = false
            driver = "epoll"
            uring_entries = 256
            max_frame_bytes = "64KiB"
            max_message_bytes = 1048576
            ping_interval = "500ms"
            pong_timeout = 3
            subprotocols = ["chat", "v2.json"]
            log_format = "json"
            tls_cert = "/etc/corecast/cert.pem"
            tls_key = "/etc/corecast/key.pem"
            "#,
            Config::default(),
        )
        .unwrap();
        assert_eq!(c.listen, "127.0.0.1:8000".parse().unwrap());
        assert_eq!(c.workers, 4);
        assert!(!c.pin_workers);
        assert_eq!(c.driver, Driver::Epoll);
        assert_eq!(c.uring_entries, 256);
        assert_eq!(c.max_frame_bytes, 64 * 1024);
        assert_eq!(c.max_message_bytes, 1 << 20);
        assert_eq!(c.ping_interval, Duration::from_millis(500));
        assert_eq!(c.pong_timeout, Duration::from_secs(3));
        assert_eq!(c.subprotocols, ["chat", "v2.json"]);
        assert_eq!(c.log_format, LogFormat::Json);
        assert_eq!(c.tls_cert, Some("/etc/corecast/cert.pem".into()));
        assert_eq!(c.tls_key, Some("/etc/corecast/key.pem".into()));
        // Untouched keys keep the base values.
        assert_eq!(c.admin_listen, Config::default().admin_listen);
        assert_eq!(c.log_filter, "info");
        // The associated form is the same function.
        assert_eq!(
            Config::from_toml_str("workers = 4", Config::default())
                .unwrap()
                .workers,
            4
        );
    }

    #[test]
    fn docs_example_file_is_valid() {
        let doc = include_str!("../docs/configuration.md");
        let start = doc.find("```toml\n").expect("example in docs") + "```toml\n".len();
        let end = start + doc[start..].find("```").unwrap();
        let c = from_toml_str(&doc[start..end], Config::default()).unwrap();
        c.validate().unwrap();
        let want = Config {
            subprotocols: vec!["chat.v1".into(), "chat.v2".into()],
            log_format: LogFormat::Json,
            log_filter: "info,corecast::server=debug".into(),
            permessage_deflate: true,
            ..Config::default()
        };
        assert_eq!(c, want);
    }

    #[test]
    fn toml_overlays_onto_the_given_base() {
        let base = Config {
            workers: 7,
            ..Config::default()
        };
        let c = from_toml_str("backlog = 10", base).unwrap();
        assert_eq!((c.workers, c.backlog), (7, 10));
    }

    #[test]
    fn toml_unknown_key_is_an_error_naming_it() {
        let err =
            from_toml_str("workers = 2\nping_intervall = \"5s\"\n", Config::default()).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, ConfigError::Parse { .. }), "{err:?}");
        assert!(msg.contains("ping_intervall"), "{msg}");
        assert!(msg.contains("line 2"), "{msg}");
    }

    #[test]
    fn toml_bad_values_are_errors() {
        for text in [
            "ping_interval = \"5 parsecs\"",
            "ping_interval = -1",
            "ping_interval = 1.5",
            "max_frame_bytes = \"12XB\"",
            "max_frame_bytes = -5",
            "driver = \"kqueue\"",
            "listen = \"nowhere\"",
            "uring_entries = 99999999999",
            "workers = \"four\"",
            "config_file = \"x.toml\"",
            "not toml at all",
        ] {
            let err = from_toml_str(text, Config::default()).unwrap_err();
            assert!(matches!(err, ConfigError::Parse { .. }), "{text}: {err:?}");
        }
        let msg = from_toml_str("\nping_interval = \"5 parsecs\"\n", Config::default())
            .unwrap_err()
            .to_string();
        assert!(msg.contains("5 parsecs"), "{msg}");
        assert!(
            msg.contains("line 2, column 17 (`ping_interval = \"5 parsecs\"`)"),
            "{msg}"
        );
    }

    #[test]
    fn file_is_read_from_flag_or_env() {
        let f = toml_file("workers = 3\nping_interval = \"2m\"\n");
        let path = f.path().to_str().unwrap();
        let c = resolve_with(&["--config", path], &[]).unwrap();
        assert_eq!(c.workers, 3);
        assert_eq!(c.ping_interval, Duration::from_secs(120));
        assert_eq!(c.config_file.as_deref(), Some(f.path()));

        let c = resolve_with(&[], &[("CORECAST_CONFIG", path)]).unwrap();
        assert_eq!(c.workers, 3);

        // The flag wins over the variable.
        let other = toml_file("workers = 5\n");
        let c = resolve_with(
            &["--config", other.path().to_str().unwrap()],
            &[("CORECAST_CONFIG", path)],
        )
        .unwrap();
        assert_eq!(c.workers, 5);
    }

    #[test]
    fn file_errors_name_the_file() {
        let err = resolve_with(&["--config", "/nonexistent/corecast.toml"], &[]).unwrap_err();
        assert!(matches!(err, ConfigError::Read { .. }), "{err:?}");
        assert!(err.to_string().contains("/nonexistent/corecast.toml"));

        let f = toml_file("bogus = 1\n");
        let err = resolve_with(&["--config", f.path().to_str().unwrap()], &[]).unwrap_err();
        match &err {
            ConfigError::Parse { path, message } => {
                assert_eq!(path, f.path());
                assert!(message.contains("bogus"), "{message}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn env_overrides_file() {
        let f = toml_file("workers = 3\nping_interval = \"2m\"\nsubprotocols = [\"a\"]\n");
        let c = resolve_with(
            &["--config", f.path().to_str().unwrap()],
            &[
                ("CORECAST_WORKERS", "6"),
                ("CORECAST_SUBPROTOCOLS", "chat, v2 ,,mqtt"),
            ],
        )
        .unwrap();
        assert_eq!(c.workers, 6);
        assert_eq!(c.ping_interval, Duration::from_secs(120), "file value kept");
        assert_eq!(c.subprotocols, ["chat", "v2", "mqtt"]);
    }

    #[test]
    fn env_sets_every_field() {
        let c = resolve_with(
            &[],
            &[
                ("CORECAST_LISTEN", "127.0.0.1:1"),
                ("CORECAST_ADMIN_LISTEN", "[::1]:2"),
                ("CORECAST_WORKERS", "2"),
                ("CORECAST_PIN_WORKERS", "no"),
                ("CORECAST_DRIVER", "URING"),
                ("CORECAST_URING_ENTRIES", "64"),
                ("CORECAST_BACKLOG", "5"),
                ("CORECAST_MAX_CONNECTIONS", "10"),
                ("CORECAST_MAX_HANDSHAKE_BYTES", "2KiB"),
                ("CORECAST_MAX_FRAME_BYTES", "1000"),
                ("CORECAST_MAX_MESSAGE_BYTES", "64KB"),
                ("CORECAST_SEND_BUFFER_BYTES", "1MiB"),
                ("CORECAST_SOCKET_SEND_BUFFER", "64KiB"),
                ("CORECAST_PING_INTERVAL", "1h"),
                ("CORECAST_PONG_TIMEOUT", "10ms"),
                ("CORECAST_HANDSHAKE_TIMEOUT", "7"),
                ("CORECAST_CLOSE_TIMEOUT", "2m"),
                ("CORECAST_DRAIN_WINDOW", "0"),
                ("CORECAST_SUBPROTOCOLS", "x"),
                ("CORECAST_TCP_NODELAY", "off"),
                ("CORECAST_LOG_FORMAT", "json"),
                ("CORECAST_LOG_FILTER", "corecast=debug"),
                ("CORECAST_HISTORY_LEN", "10"),
                ("CORECAST_HISTORY_MAX_AGE", "5s"),
                ("CORECAST_SLOW_CONSUMER", "drop"),
                ("CORECAST_DROP_TOPICS", "md.*, x"),
                ("CORECAST_INBOX_CAPACITY", "128"),
                ("CORECAST_ADMIN_TOKEN_FILE", "/etc/corecast/admin.token"),
                ("CORECAST_TLS_CERT", "/etc/c.pem"),
                ("CORECAST_TLS_KEY", "/etc/k.pem"),
                ("CORECAST_PERMESSAGE_DEFLATE", "yes"),
                ("CORECAST_DEFLATE_THRESHOLD", "1KiB"),
                ("CORECAST_DEFLATE_LEVEL", "1"),
                ("CORECAST_DEFLATE_CLIENT_NO_CONTEXT_TAKEOVER", "true"),
                ("CORECAST_DEFLATE_CLIENT_MAX_WINDOW_BITS", "10"),
            ],
        )
        .unwrap();
        let want = Config {
            listen: "127.0.0.1:1".parse().unwrap(),
            admin_listen: "[::1]:2".parse().unwrap(),
            admin_token_file: Some("/etc/corecast/admin.token".into()),
            workers: 2,
            pin_workers: false,
            driver: Driver::Uring,
            uring_entries: 64,
            backlog: 5,
            max_connections: 10,
            max_handshake_bytes: 2048,
            max_frame_bytes: 1000,
            max_message_bytes: 64_000,
            send_buffer_bytes: 1 << 20,
            socket_send_buffer: 64 << 10,
            ping_interval: Duration::from_secs(3600),
            pong_timeout: Duration::from_millis(10),
            handshake_timeout: Duration::from_secs(7),
            close_timeout: Duration::from_secs(120),
            drain_window: Duration::ZERO,
            subprotocols: vec!["x".into()],
            history_len: 10,
            history_max_age: Duration::from_secs(5),
            slow_consumer: SlowConsumer::Drop,
            drop_topics: vec!["md.*".into(), "x".into()],
            inbox_capacity: 128,
            tcp_nodelay: false,
            log_format: LogFormat::Json,
            log_filter: "corecast=debug".into(),
            config_file: None,
            tls_cert: Some("/etc/c.pem".into()),
            tls_key: Some("/etc/k.pem".into()),
            permessage_deflate: true,
            deflate_threshold: 1024,
            deflate_level: 1,
            deflate_client_no_context_takeover: true,
            deflate_client_max_window_bits: 10,
            ..Config::default()
        };
        assert_eq!(c, want);
    }

    #[test]
    fn empty_env_counts_as_unset() {
        let c = resolve_with(&[], &[("CORECAST_WORKERS", ""), ("CORECAST_CONFIG", "")]).unwrap();
        assert_eq!(c, Config::default());
    }

    #[test]
    fn bad_env_value_names_the_variable() {
        let (field, msg) = invalid_field(resolve_with(&[], &[("CORECAST_PING_INTERVAL", "soon")]));
        assert_eq!(field, "ping_interval");
        assert!(msg.contains("CORECAST_PING_INTERVAL=\"soon\""), "{msg}");
        let (field, msg) = invalid_field(resolve_with(&[], &[("CORECAST_DRIVER", "kqueue")]));
        assert_eq!(field, "driver");
        assert!(msg.contains("auto, uring, epoll"), "{msg}");
        let (field, _) = invalid_field(resolve_with(&[], &[("CORECAST_LISTEN", "localhost")]));
        assert_eq!(field, "listen");
    }

    #[test]
    fn cli_overrides_env_and_file() {
        let f = toml_file("workers = 3\nbacklog = 100\nlog_format = \"json\"\n");
        let c = resolve_with(
            &[
                "--config",
                f.path().to_str().unwrap(),
                "--workers",
                "9",
                "--ping-interval",
                "30s",
                "--log-format",
                "text",
            ],
            &[("CORECAST_WORKERS", "6"), ("CORECAST_PING_INTERVAL", "1m")],
        )
        .unwrap();
        assert_eq!(c.workers, 9);
        assert_eq!(c.ping_interval, Duration::from_secs(30));
        assert_eq!(c.backlog, 100, "file value kept");
        assert_eq!(c.log_format, LogFormat::Text);
    }

    #[test]
    fn cli_sets_every_field() {
        let c = resolve_with(
            &[
                "--listen=127.0.0.1:1",
                "--admin-listen=[::1]:2",
                "--workers=2",
                "--pin-workers=false",
                "--driver=epoll",
                "--uring-entries=64",
                "--backlog=5",
                "--max-connections=10",
                "--max-handshake-bytes=2KiB",
                "--max-frame-bytes=1000",
                "--max-message-bytes=64KB",
                "--send-buffer-bytes=1MiB",
                "--ping-interval=1h",
                "--pong-timeout=10ms",
                "--handshake-timeout=7",
                "--close-timeout=2m",
                "--drain-window=0",
                "--subprotocol=a,b",
                "--subprotocol=c",
                "--tcp-nodelay=0",
                "--log-format=json",
                "--log-filter=warn",
                "--tls-cert=/c.pem",
                "--tls-key=/k.pem",
            ],
            &[],
        )
        .unwrap();
        assert_eq!(c.listen, "127.0.0.1:1".parse().unwrap());
        assert_eq!(c.admin_listen, "[::1]:2".parse().unwrap());
        assert_eq!(c.workers, 2);
        assert!(!c.pin_workers);
        assert_eq!(c.driver, Driver::Epoll);
        assert_eq!((c.uring_entries, c.backlog, c.max_connections), (64, 5, 10));
        assert_eq!(c.max_handshake_bytes, 2048);
        assert_eq!(c.max_frame_bytes, 1000);
        assert_eq!(c.max_message_bytes, 64_000);
        assert_eq!(c.send_buffer_bytes, 1 << 20);
        assert_eq!(c.ping_interval, Duration::from_secs(3600));
        assert_eq!(c.pong_timeout, Duration::from_millis(10));
        assert_eq!(c.handshake_timeout, Duration::from_secs(7));
        assert_eq!(c.close_timeout, Duration::from_secs(120));
        assert_eq!(c.drain_window, Duration::ZERO);
        assert_eq!(c.subprotocols, ["a", "b", "c"]);
        assert!(!c.tcp_nodelay);
        assert_eq!(c.log_format, LogFormat::Json);
        assert_eq!(c.log_filter, "warn");
        assert_eq!(c.tls_cert.as_deref(), Some(Path::new("/c.pem")));
        assert_eq!(c.tls_key.as_deref(), Some(Path::new("/k.pem")));
    }

    #[test]
    fn deflate_settings_default_flag_file_and_ranges() {
        let c = resolve_with(&[], &[]).unwrap();
        assert!(!c.permessage_deflate, "off by default");
        assert_eq!(c.deflate_threshold, 256);
        // The bare flag means true (the echo example's `--permessage-deflate`).
        let c = resolve_with(&["--permessage-deflate", "--deflate-level=9"], &[]).unwrap();
        assert!(c.permessage_deflate);
        assert_eq!(c.deflate_level, 9);
        let c = resolve_with(&["--permessage-deflate=false"], &[]).unwrap();
        assert!(!c.permessage_deflate);
        let c = resolve_with(
            &[
                "--deflate-threshold=0",
                "--deflate-client-no-context-takeover=yes",
                "--deflate-client-max-window-bits=9",
            ],
            &[],
        )
        .unwrap();
        assert_eq!(c.deflate_threshold, 0);
        assert!(c.deflate_client_no_context_takeover);
        assert_eq!(c.deflate_client_max_window_bits, 9);
        let f = toml_file("permessage_deflate = true\ndeflate_threshold = \"4KiB\"\n");
        let c = resolve_with(&["--config", f.path().to_str().unwrap()], &[]).unwrap();
        assert!(c.permessage_deflate);
        assert_eq!(c.deflate_threshold, 4096);
        for (flag, field) in [
            ("--deflate-level=0", "deflate_level"),
            ("--deflate-level=10", "deflate_level"),
            (
                "--deflate-client-max-window-bits=8",
                "deflate_client_max_window_bits",
            ),
            (
                "--deflate-client-max-window-bits=16",
                "deflate_client_max_window_bits",
            ),
            ("--deflate-threshold=2GiB", "deflate_threshold"),
        ] {
            let (f, _) = invalid_field(resolve_with(&[flag], &[]));
            assert_eq!(f, field, "{flag}");
        }
    }

    #[test]
    fn json_logs_shorthand() {
        let c = resolve_with(&["--json-logs"], &[("CORECAST_LOG_FORMAT", "text")]).unwrap();
        assert_eq!(c.log_format, LogFormat::Json);
        let err = resolve_with(&["--json-logs", "--log-format", "text"], &[]).unwrap_err();
        assert!(matches!(err, ConfigError::Cli(_)), "{err:?}");
    }

    #[test]
    fn from_args_parses_and_reports_clap_errors() {
        let c = from_args(["corecast", "--workers", "3", "--tcp-nodelay", "false"]).unwrap();
        assert_eq!(c.workers, 3);
        assert!(!c.tcp_nodelay);
        let c = Config::from_args(["corecast", "--workers", "4"]).unwrap();
        assert_eq!(c.workers, 4);

        for args in [
            &["corecast", "--no-such-flag"][..],
            &["corecast", "--ping-interval", "soon"],
            &["corecast", "--max-frame-bytes", "lots"],
            &["corecast", "--pin-workers", "maybe"],
            &["corecast", "--pin-workers"],
            &["corecast", "--driver", "kqueue"],
            &["corecast", "--listen", "nowhere"],
            &["corecast", "stray"],
        ] {
            let err = from_args(args).unwrap_err();
            let ConfigError::Cli(msg) = &err else {
                panic!("{args:?}: {err:?}")
            };
            assert!(msg.contains("error:"), "{msg}");
        }
        // Flags are validated too.
        let (field, _) = invalid_field(from_args(["corecast", "--workers", "5000"]));
        assert_eq!(field, "workers");
    }

    #[test]
    fn help_lists_every_option_with_its_default() {
        let Err(ConfigError::Cli(help)) = from_args(["corecast", "--help"]) else {
            panic!("--help should come back as ConfigError::Cli")
        };
        let d = Config::default();
        let expect = [
            ("--config", "none".to_string()),
            ("--listen", d.listen.to_string()),
            ("--admin-listen", d.admin_listen.to_string()),
            ("--workers", d.workers.to_string()),
            ("--pin-workers", d.pin_workers.to_string()),
            ("--driver", "auto".into()),
            ("--uring-entries", d.uring_entries.to_string()),
            ("--backlog", d.backlog.to_string()),
            ("--max-connections", d.max_connections.to_string()),
            (
                "--max-handshake-bytes",
                Size(d.max_handshake_bytes).to_string(),
            ),
            ("--max-frame-bytes", Size(d.max_frame_bytes).to_string()),
            ("--max-message-bytes", Size(d.max_message_bytes).to_string()),
            ("--send-buffer-bytes", Size(d.send_buffer_bytes).to_string()),
            ("--socket-send-buffer", "0".into()),
            ("--ping-interval", Human(d.ping_interval).to_string()),
            ("--pong-timeout", Human(d.pong_timeout).to_string()),
            (
                "--handshake-timeout",
                Human(d.handshake_timeout).to_string(),
            ),
            ("--close-timeout", Human(d.close_timeout).to_string()),
            ("--drain-window", Human(d.drain_window).to_string()),
            ("--subprotocol", "none".into()),
            ("--admin-token-file", "none".into()),
            ("--history-len", d.history_len.to_string()),
            ("--history-max-age", Human(d.history_max_age).to_string()),
            ("--slow-consumer", "disconnect".into()),
            ("--drop-topics", "none".into()),
            ("--inbox-capacity", d.inbox_capacity.to_string()),
            ("--tcp-nodelay", d.tcp_nodelay.to_string()),
            ("--log-format", "text".into()),
            ("--log-filter", d.log_filter.clone()),
            ("--tls-cert", "none".into()),
            ("--tls-key", "none".into()),
            ("--permessage-deflate", d.permessage_deflate.to_string()),
            ("--deflate-threshold", d.deflate_threshold.to_string()),
            ("--deflate-level", d.deflate_level.to_string()),
            (
                "--deflate-client-no-context-takeover",
                d.deflate_client_no_context_takeover.to_string(),
            ),
            (
                "--deflate-client-max-window-bits",
                d.deflate_client_max_window_bits.to_string(),
            ),
        ];
        let expect: Vec<(&str, String)> =
            expect.into_iter().chain(guard::help_defaults()).collect();
        assert_eq!(d.driver, Driver::Auto);
        assert_eq!(d.log_format, LogFormat::Text);
        let lines: Vec<&str> = help.lines().collect();
        for (flag, default) in &expect {
            let at = lines
                .iter()
                .position(|l| l.trim_start().starts_with(&format!("{flag} ")))
                .unwrap_or_else(|| panic!("{flag} missing from --help:\n{help}"));
            // clap puts the help text on the flag's line, or (when a flag is long) on the next.
            let line = format!("{} {}", lines[at], lines.get(at + 1).unwrap_or(&""));
            assert!(
                line.contains(&format!("[default: {default}]")),
                "{flag} should state default {default}: {line}"
            );
        }
        assert!(help.contains("--json-logs"), "{help}");
        // Every flag is documented and covered by the list above.
        let mut flags: Vec<String> = Cli::command()
            .get_arguments()
            .inspect(|a| assert!(a.get_help().is_some(), "{} has no help", a.get_id()))
            .filter_map(|a| a.get_long().map(|l| format!("--{l}")))
            .filter(|f| f != "--json-logs" && f != "--help" && f != "--version")
            .collect();
        let mut listed: Vec<String> = expect.iter().map(|(f, _)| f.to_string()).collect();
        flags.sort();
        listed.sort();
        assert_eq!(flags, listed);
    }

    #[test]
    fn validation_accepts_boundaries() {
        let c = Config {
            workers: 1024,
            uring_entries: 8,
            backlog: 1,
            max_connections: 1,
            max_handshake_bytes: 1024,
            max_frame_bytes: 125,
            max_message_bytes: 125,
            send_buffer_bytes: 1024,
            ping_interval: Duration::from_millis(100),
            pong_timeout: Duration::from_millis(10),
            handshake_timeout: Duration::from_millis(10),
            close_timeout: Duration::from_millis(10),
            drain_window: Duration::ZERO,
            subprotocols: vec!["a!#$%&'*+-.^_`|~Z9".into()],
            log_filter: "warn,corecast::server=trace".into(),
            ..Config::default()
        };
        c.validate().unwrap();
        let c = Config {
            uring_entries: 32768,
            max_handshake_bytes: 1 << 20,
            max_frame_bytes: 1 << 30,
            max_message_bytes: 1 << 30,
            ping_interval: MAX_DURATION,
            ..Config::default()
        };
        c.validate().unwrap();
    }

    #[test]
    fn each_validation_error_names_field_value_and_range() {
        type Case = (&'static str, fn(&mut Config), &'static str);
        let cases: &[Case] = &[
            ("workers", |c| c.workers = 1025, "1025"),
            ("uring_entries", |c| c.uring_entries = 100, "power of two"),
            ("uring_entries", |c| c.uring_entries = 4, "8 to 32768"),
            ("uring_entries", |c| c.uring_entries = 65536, "65536"),
            ("backlog", |c| c.backlog = 0, "at least 1"),
            ("max_connections", |c| c.max_connections = 0, "at least 1"),
            (
                "max_handshake_bytes",
                |c| c.max_handshake_bytes = 1023,
                "1KiB to 1MiB",
            ),
            (
                "max_handshake_bytes",
                |c| c.max_handshake_bytes = (1 << 20) + 1,
                "1048577",
            ),
            (
                "max_message_bytes",
                |c| c.max_message_bytes = 2 << 30,
                "got 2GiB",
            ),
            ("max_frame_bytes", |c| c.max_frame_bytes = 124, "124 bytes"),
            (
                "max_frame_bytes",
                |c| {
                    c.max_message_bytes = 1 << 20;
                    c.max_frame_bytes = 2 << 20;
                },
                "max_message_bytes (1MiB)",
            ),
            (
                "send_buffer_bytes",
                |c| c.send_buffer_bytes = 1000,
                "at least 1KiB",
            ),
            (
                "socket_send_buffer",
                |c| c.socket_send_buffer = 4095,
                "4KiB to 512MiB",
            ),
            (
                "socket_send_buffer",
                |c| c.socket_send_buffer = 513 << 20,
                "4KiB to 512MiB",
            ),
            (
                "ping_interval",
                |c| c.ping_interval = Duration::from_millis(99),
                "99ms",
            ),
            (
                "ping_interval",
                |c| c.ping_interval = Duration::from_secs(86401),
                "to 24h",
            ),
            (
                "pong_timeout",
                |c| c.pong_timeout = Duration::from_millis(9),
                "10ms",
            ),
            (
                "handshake_timeout",
                |c| c.handshake_timeout = Duration::ZERO,
                "got 0s",
            ),
            (
                "close_timeout",
                |c| c.close_timeout = Duration::from_micros(9500),
                "9.5ms",
            ),
            (
                "drain_window",
                |c| c.drain_window = Duration::from_secs(90000),
                "24h",
            ),
            (
                "subprotocols",
                |c| c.subprotocols = vec!["a b".into()],
                "\"a b\"",
            ),
            (
                "subprotocols",
                |c| c.subprotocols = vec!["".into()],
                "HTTP tokens",
            ),
            (
                "subprotocols",
                |c| c.subprotocols = vec!["x,y".into()],
                "x,y",
            ),
            (
                "log_filter",
                |c| c.log_filter = "corecast=loud".into(),
                "corecast=loud",
            ),
            (
                "tls_key",
                |c| c.tls_cert = Some("/c.pem".into()),
                "while tls_cert is set",
            ),
            (
                "tls_cert",
                |c| c.tls_key = Some("/k.pem".into()),
                "both or neither",
            ),
        ];
        for (want_field, mutate, needle) in cases {
            let mut c = Config::default();
            mutate(&mut c);
            let (field, msg) = invalid_field(c.validate());
            assert_eq!(field, *want_field, "{msg}");
            assert!(msg.contains("got ") && msg.contains("allowed: "), "{msg}");
            assert!(msg.contains(needle), "{field}: {msg:?} lacks {needle:?}");
        }
    }

    #[test]
    fn durations_parse() {
        let ok = [
            ("25s", Duration::from_secs(25)),
            ("500ms", Duration::from_millis(500)),
            ("2m", Duration::from_secs(120)),
            ("1h", Duration::from_secs(3600)),
            ("30", Duration::from_secs(30)),
            ("0", Duration::ZERO),
            (" 7 s ", Duration::from_secs(7)),
            ("007ms", Duration::from_millis(7)),
        ];
        for (s, d) in ok {
            assert_eq!(parse_duration(s), Ok(d), "{s}");
        }
        for s in [
            "",
            "s",
            "ms",
            "-1s",
            "1.5s",
            "10 sec",
            "5S",
            "3d",
            "1h30m",
            "10us",
            "abc",
            "99999999999999999999",
            "307445734561825861h",
        ] {
            let err = parse_duration(s).unwrap_err();
            assert!(err.contains(&format!("{s:?}")), "{s}: {err}");
        }
    }

    #[test]
    fn sizes_parse() {
        let ok = [
            ("4096", 4096),
            ("4096B", 4096),
            ("8KiB", 8 << 10),
            ("16MiB", 16 << 20),
            ("1GiB", 1 << 30),
            ("64KB", 64_000),
            ("2MB", 2_000_000),
            ("1gb", 1_000_000_000),
            ("8 kib", 8192),
            ("0", 0),
        ];
        for (s, n) in ok {
            assert_eq!(parse_size(s), Ok(n), "{s}");
        }
        for s in [
            "",
            "KiB",
            "-1",
            "1.5MiB",
            "8K",
            "8 KiBs",
            "12XB",
            "lots",
            "99999999999999999999",
            "18446744073709551615KiB",
        ] {
            let err = parse_size(s).unwrap_err();
            assert!(err.contains(&format!("{s:?}")), "{s}: {err}");
        }
    }

    #[test]
    fn bools_parse() {
        for s in ["true", "TRUE", "yes", "on", "1"] {
            assert_eq!(parse_bool(s), Ok(true), "{s}");
        }
        for s in ["false", "No", "off", "0"] {
            assert_eq!(parse_bool(s), Ok(false), "{s}");
        }
        for s in ["", "2", "maybe", "y"] {
            assert!(parse_bool(s).is_err(), "{s}");
        }
    }

    #[test]
    fn display_helpers() {
        assert_eq!(Size(16 << 20).to_string(), "16MiB");
        assert_eq!(Size(1 << 30).to_string(), "1GiB");
        assert_eq!(Size(8192).to_string(), "8KiB");
        assert_eq!(Size(1000).to_string(), "1000 bytes");
        assert_eq!(Human(Duration::from_secs(25)).to_string(), "25s");
        assert_eq!(Human(Duration::from_secs(7200)).to_string(), "2h");
        assert_eq!(Human(Duration::from_secs(90)).to_string(), "90s");
        assert_eq!(Human(Duration::from_secs(120)).to_string(), "2m");
        assert_eq!(Human(Duration::from_millis(1500)).to_string(), "1500ms");
        assert_eq!(Human(Duration::ZERO).to_string(), "0s");
    }

    #[test]
    fn http_tokens() {
        assert!(is_http_token("chat"));
        assert!(is_http_token("v2.json+gzip"));
        for s in ["", "a b", "a,b", "a/b", "é", "a\"", "(x)", "a;b"] {
            assert!(!is_http_token(s), "{s}");
        }
    }
}
