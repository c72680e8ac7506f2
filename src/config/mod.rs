//! The one `Config`: built-in defaults, then a TOML file (`--config`), then environment
//! variables (`CORECAST_*`), then command-line flags; validated before anything starts.
//!
//! Every setting is declared once, in a `settings!` table (`declare.rs`; the top level here,
//! `[auth]` and `[limits]` in `guard`): the entry gives the field, default, help and check,
//! and the struct, its TOML table, flag, variable and docs row follow from it. `kinds` says how
//! each kind of value (size, duration, list, ...) is parsed and shown. This module imports
//! nothing from the crate but the leaf [`crate::names`]: the modules that read the settings
//! depend on it, not the other way round.

use std::{
    ffi::OsString,
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use clap::{Arg, ArgAction, ArgMatches, Command};
use serde::Deserialize;

mod declare;
mod guard;
mod kinds;

pub use declare::Setting;
use declare::{settings, Section};
pub use guard::{AuthConfig, AuthMode, JwtAlgorithm, LimitsConfig};
pub use kinds::{parse_bool, parse_duration, parse_size};
use kinds::{Bytes, Choice, HasKind, Human, Size, GIB, KIB, MIB};

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

impl HasKind for Driver {
    type Kind = Choice<Self>;
}

impl HasKind for SlowConsumer {
    type Kind = Choice<Self>;
}

impl HasKind for LogFormat {
    type Kind = Choice<Self>;
}

/// The environment variable naming the TOML file (the `--config` flag wins over it).
pub const CONFIG_ENV: &str = "CORECAST_CONFIG";

/// The prefix of every setting's environment variable: `CORECAST_` + the key in capitals.
pub const ENV_PREFIX: &str = "CORECAST_";

/// Most workers `validate` accepts.
const MAX_WORKERS: usize = 1024;
/// Upper bound for every duration, so `Instant + duration` can never overflow.
const MAX_DURATION: Duration = Duration::from_secs(24 * 60 * 60);
/// The largest SO_SNDBUF accepted (the kernel doubles it and keeps it in an `int`).
const MAX_SOCKET_BUFFER: usize = 512 * MIB;

settings! {
    /// Every setting of a corecast server.
    pub struct Config, file FileConfig, section None,
    nested {
        /// Authentication and origin checks (`[auth]`).
        auth: AuthConfig,
        /// Per-IP, per-user and per-connection limits (`[limits]`).
        limits: LimitsConfig,
    },
    extra {
        /// The TOML file this configuration was read from, if any.
        config_file: Option<PathBuf> = None,
    };

    /// WebSocket listen address (each worker binds it with SO_REUSEPORT).
    listen: SocketAddr = addr("0.0.0.0:9001"), "ADDR", "WebSocket listen address, IP:PORT";
    /// Admin HTTP listen address.
    admin_listen: SocketAddr = addr("127.0.0.1:9002"), "ADDR",
        "Admin HTTP listen address, IP:PORT";
    /// A file holding the admin API's bearer token; when set, every admin endpoint except
    /// `/healthz` and `/readyz` requires `Authorization: Bearer <token>`.
    admin_token_file: Option<PathBuf> = None, "FILE",
        "File with the admin API's bearer token (required on all but /healthz and /readyz)";
    /// Worker threads; 0 means one per available core.
    workers: usize = 0, "N", "Worker threads, 0 = one per core, at most 1024",
        check |v, _| *v <= MAX_WORKERS => format!("0 (one per core) to {MAX_WORKERS}");
    /// Pin each worker to a core.
    pin_workers: bool = true, "BOOL", "Pin each worker to a core";
    /// The io driver.
    driver: Driver = Driver::Auto, "DRIVER", "I/O driver: auto, uring or epoll";
    /// io_uring submission queue entries per worker.
    uring_entries: u32 = 4096, "N", "io_uring entries per worker, a power of two in 8..=32768",
        check |v, _| v.is_power_of_two() && (8..=32768).contains(v)
            => "a power of two from 8 to 32768";
    /// Listen backlog.
    backlog: u32 = 4096, "N", "Listen backlog",
        check |v, _| *v >= 1 => "at least 1";
    /// Maximum concurrent connections per process (sized against RLIMIT_NOFILE at start).
    max_connections: usize = 1_000_000, "N", "Maximum concurrent connections",
        check |v, _| *v >= 1 => "at least 1";
    /// Largest handshake request head in bytes (431 above it).
    max_handshake_bytes: usize as Bytes = 8 * KIB, "SIZE",
        "Largest handshake request head, 1KiB..=1MiB",
        check |v, _| (KIB..=MIB).contains(v) => "1KiB to 1MiB";
    /// Largest message in bytes, fragments summed (close 1009 above it). The pub/sub protocol
    /// refuses data over 64 KiB anyway; the echo example raises it to 16 MiB.
    max_message_bytes: usize as Bytes = MIB, "SIZE",
        "Largest message, fragments summed, at most 1GiB",
        check |v, _| *v <= GIB => "at most 1GiB";
    /// Largest frame payload in bytes (close 1009 above it).
    max_frame_bytes: usize as Bytes = MIB, "SIZE", "Largest frame payload",
        check |v, c| *v >= 125 && *v <= c.max_message_bytes
            => format!("125 bytes up to max_message_bytes ({})", Size(c.max_message_bytes));
    /// Bound on a connection's queued outgoing bytes.
    send_buffer_bytes: usize as Bytes = MIB, "SIZE",
        "Bound on a connection's queued outgoing bytes",
        check |v, _| *v >= KIB => "at least 1KiB";
    /// SO_SNDBUF of accepted sockets in bytes; 0 leaves the kernel's autotuning in place.
    socket_send_buffer: usize as Bytes = 0, "SIZE",
        "Kernel send buffer (SO_SNDBUF) of accepted sockets, 0 = the kernel's autotuning, \
         else 4KiB..=512MiB",
        check |v, _| *v == 0 || (4 * KIB..=MAX_SOCKET_BUFFER).contains(v)
            => "0 (the kernel's autotuning) or 4KiB to 512MiB";
    /// Interval between server pings.
    ping_interval: Duration = secs(25), "DURATION", "Interval between server pings",
        check |v, _| within(v, ms(100)) => span(ms(100));
    /// Extra time after `ping_interval` for a silent peer before it is closed.
    pong_timeout: Duration = secs(5), "DURATION",
        "Extra time a silent peer gets after a ping interval",
        check |v, _| within(v, ms(10)) => span(ms(10));
    /// Time allowed to complete the upgrade handshake.
    handshake_timeout: Duration = secs(5), "DURATION",
        "Time allowed to complete the upgrade handshake",
        check |v, _| within(v, ms(10)) => span(ms(10));
    /// Time allowed for the peer to answer our close frame.
    close_timeout: Duration = secs(5), "DURATION",
        "Time allowed for the peer to answer our close frame",
        check |v, _| within(v, ms(10)) => span(ms(10));
    /// Time allowed to finish a message once its first byte arrived (close 1008 after it).
    message_timeout: Duration = secs(30), "DURATION",
        "Time allowed to finish a message once it has started",
        check |v, _| within(v, ms(100)) => span(ms(100));
    /// Bytes all connections of the process together may hold of messages not yet received
    /// whole; the connection that goes past it is closed with 1013.
    partial_message_budget: usize as Bytes = 256 * MIB, "SIZE",
        "Bytes all connections may hold of unfinished messages, at least max_message_bytes",
        check |v, c| *v >= c.max_message_bytes
            => format!("at least max_message_bytes ({})", Size(c.max_message_bytes));
    /// Window over which close 1001 is spread across connections on SIGTERM.
    drain_window: Duration = secs(10), "DURATION",
        "Window over which connections are closed on SIGTERM",
        check |v, _| within(v, Duration::ZERO) => span(Duration::ZERO);
    /// Subprotocols the server accepts, in no particular order (the pub/sub server adds its own).
    subprotocols: Vec<String> = Vec::new(), "NAME",
        "Accepted subprotocol; repeat or comma-separate",
        flag "subprotocol",
        each |s| is_http_token(s)
            => "non-empty HTTP tokens (letters, digits and !#$%&'*+-.^_`|~)";
    /// Messages each topic keeps for resuming with `since` (0 = no history).
    history_len: usize = 256, "N", "Messages each topic keeps for resume, 0..=1000000",
        check |v, _| *v <= 1_000_000 => "0 to 1000000";
    /// Age after which a message leaves a topic's history.
    history_max_age: Duration = secs(60), "DURATION",
        "Age after which a message leaves a topic's history",
        check |v, _| within(v, ms(100)) => span(ms(100));
    /// Bytes one topic's history may be charged (data, both frames, overhead); oldest
    /// entries leave first.
    history_topic_bytes: usize as Bytes = 4 * MIB, "SIZE",
        "Bytes one topic's history may hold, oldest evicted first",
        check |v, _| *v >= 256 * KIB => "at least 256KiB (one 64 KiB message as charged)";
    /// Bytes all topics' histories may be charged, split evenly over the workers; oldest
    /// entries of any topic leave first.
    history_bytes: usize as Bytes = GIB, "SIZE",
        "Bytes all histories together may hold, oldest evicted first",
        check |v, c| *v >= c.history_topic_bytes
            => format!("at least history_topic_bytes ({})", Size(c.history_topic_bytes));
    /// Topics the process may know, split evenly over the workers; a `sub` or `pub` that
    /// would add one beyond gets `too_many_topics`.
    max_topics: usize = 100_000, "N",
        "Topics the process may hold; beyond, sub and pub get too_many_topics",
        check |v, _| (1..=100_000_000).contains(v) => "1 to 100000000";
    /// The slow-consumer policy of topics not named in `drop_topics`.
    slow_consumer: SlowConsumer = SlowConsumer::Disconnect, "POLICY",
        "Slow-consumer policy for unkeyed messages: disconnect or drop";
    /// Topics whose slow subscribers lose messages instead of being disconnected: exact names
    /// or prefixes ending in `.*` (e.g. `md.*`).
    drop_topics: Vec<String> = Vec::new(), "PATTERN",
        "Topics that drop instead of disconnecting (names or prefix.*); repeat or \
         comma-separate",
        each |p| crate::names::topic::is_topic(p.strip_suffix(".*").unwrap_or(p))
            => "topic names or prefixes ending in .* (e.g. md.*)";
    /// Items each worker's cross-worker inbox holds.
    inbox_capacity: usize = 8192, "N",
        "Items each worker's cross-worker inbox holds, 64..=1048576",
        check |v, _| (64..=1 << 20).contains(v) => "64 to 1048576";
    /// Set TCP_NODELAY on accepted sockets.
    tcp_nodelay: bool = true, "BOOL", "Set TCP_NODELAY on accepted sockets";
    /// Log format.
    log_format: LogFormat = LogFormat::Text, "FORMAT", "Log format: text or json";
    /// Log filter (tracing `EnvFilter` syntax), e.g. `info` or `corecast=debug`.
    log_filter: String = "info".to_string(), "FILTER", "Log filter, tracing EnvFilter syntax",
        check |v, _| filter_error(v).is_none()
            => "tracing EnvFilter directives such as \"info\" or \"warn,corecast=debug\"",
            got format!("{v:?} ({})", filter_error(v).unwrap_or_default());
    /// PEM certificate chain (leaf first) for wss://; with `tls_key`, the listener speaks TLS only.
    tls_cert: Option<PathBuf> = None, "FILE",
        "PEM certificate chain; with --tls-key the listener speaks wss:// only",
        check |v, c| v.is_some() || c.tls_key.is_none() => "both or neither",
            got "none while tls_key is set".to_string();
    /// PEM private key (PKCS#8, PKCS#1 or SEC1) of `tls_cert`.
    tls_key: Option<PathBuf> = None, "FILE", "PEM private key of --tls-cert",
        check |v, c| v.is_some() || c.tls_cert.is_none() => "both or neither",
            got "none while tls_cert is set".to_string();
    /// Negotiate permessage-deflate (RFC 7692) with clients that offer it.
    permessage_deflate: bool = false, "BOOL",
        "Negotiate permessage-deflate; the flag alone means true",
        arg |a| a.num_args(0..=1).default_missing_value("true");
    /// Messages smaller than this many bytes are sent uncompressed.
    deflate_threshold: usize as Bytes = 256, "SIZE",
        "Messages under this size are sent uncompressed",
        check |v, _| *v <= GIB => "at most 1GiB";
    /// zlib compression level of the messages the server sends (1 fastest .. 9 smallest).
    deflate_level: u32 = 6, "N", "Compression level, 1..=9",
        check |v, _| (1..=9).contains(v) => "1 (fastest) to 9 (smallest)";
    /// Ask every client to compress each message with a fresh context, so no connection
    /// needs an inflater of its own.
    deflate_client_no_context_takeover: bool = false, "BOOL",
        "Ask clients to compress without context takeover";
    /// Widest LZ77 window (9..=15 bits) a client may compress with, when it lets the server
    /// choose; bounds the inflater memory of a connection that keeps its context.
    deflate_client_max_window_bits: u8 = 15, "BITS", "Widest client window in bits, 9..=15",
        check |v, _| (9..=15).contains(v) => "9 to 15";
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
        Config::load_over(Config::default())
    }

    /// [`Config::load`] with `base` in place of the built-in defaults: a program built on the
    /// server (the echo example) can start from other defaults and still take every file,
    /// variable and flag. `--help` shows the built-in defaults.
    pub fn load_over(base: Config) -> Result<Config, ConfigError> {
        resolve(&command().get_matches(), process_env, base)
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
        self.check()
    }

    /// Every setting, `[auth]` and `[limits]` included, in declaration order: its key,
    /// variable, flag and default (what `--help` shows and docs/configuration.md documents).
    pub fn settings() -> Vec<Setting> {
        let mut out = Vec::new();
        <Config as Section>::settings(&mut out);
        out
    }
}

/// Like [`Config::load`] with explicit arguments (`args[0]` is the program name); clap errors
/// (and `--help` / `--version`) come back as [`ConfigError::Cli`] instead of exiting.
pub fn from_args<I, T>(args: I) -> Result<Config, ConfigError>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let m = command()
        .try_get_matches_from(args)
        .map_err(|e| ConfigError::Cli(e.to_string()))?;
    resolve(&m, process_env, Config::default())
}

/// Overlay the settings present in TOML text `s` onto `base` (not validated).
pub fn from_toml_str(s: &str, base: Config) -> Result<Config, ConfigError> {
    overlay_toml(s, base).map_err(|message| ConfigError::Parse {
        path: PathBuf::from("<string>"),
        message,
    })
}

/// The command line: `--config`, one flag per setting (from the declarations, every one
/// optional so an unset flag leaves the lower layers alone), and `--json-logs`.
pub fn command() -> Command {
    let mut args = Vec::new();
    <Config as Section>::args(&mut args);
    Command::new("corecast")
        .version(env!("CARGO_PKG_VERSION"))
        .about("A WebSocket pub/sub server on thread-per-core io_uring runtimes")
        .after_help(
            "Precedence: defaults < TOML file < CORECAST_* environment < flags.\n\
             Durations: 25s, 500ms, 2m, 1h or bare seconds. \
             Sizes: 4096, 64KB, 8KiB, 16MiB, 1GiB.",
        )
        .arg(
            Arg::new("config")
                .long("config")
                .value_name("FILE")
                .value_parser(clap::value_parser!(PathBuf))
                .help(format!(
                    "TOML configuration file [default: none] [env: {CONFIG_ENV}]"
                )),
        )
        .args(args)
        .arg(
            Arg::new("json_logs")
                .long("json-logs")
                .action(ArgAction::SetTrue)
                .conflicts_with("log_format")
                .help("Shorthand for --log-format json"),
        )
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
    base.overlay_file(file);
    Ok(base)
}

/// The real process environment (non-UTF-8 values are passed on lossily and fail to parse).
fn process_env(name: &str) -> Option<String> {
    std::env::var_os(name).map(|v| v.to_string_lossy().into_owned())
}

/// All layers: defaults, then the TOML file, then `env`, then the flags in `m`; validated.
fn resolve(
    m: &ArgMatches,
    env: impl Fn(&str) -> Option<String>,
    base: Config,
) -> Result<Config, ConfigError> {
    // An empty variable counts as unset, as with clap's own `env` handling.
    let env = |name: &str| env(name).filter(|v| !v.is_empty());
    let mut config = base;

    let file = m
        .get_one::<PathBuf>("config")
        .cloned()
        .or_else(|| env(CONFIG_ENV).map(PathBuf::from));
    if let Some(path) = file {
        config = read_file(&path, config)?;
        config.config_file = Some(path);
    }
    config.overlay_env(&env)?;
    config.overlay_matches(m);
    if m.get_flag("json_logs") {
        config.log_format = LogFormat::Json;
    }
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

/// A literal socket address of a default.
fn addr(s: &str) -> SocketAddr {
    s.parse().expect("static address")
}

/// `n` seconds.
const fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// `n` milliseconds.
const fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Whether a duration lies in `min..=MAX_DURATION`.
fn within(v: &Duration, min: Duration) -> bool {
    (min..=MAX_DURATION).contains(v)
}

/// "MIN to 24h", the allowed range of a duration.
fn span(min: Duration) -> String {
    format!("{} to {}", Human(min), Human(MAX_DURATION))
}

/// Why `filter` is not a tracing `EnvFilter`, if it is not.
fn filter_error(filter: &str) -> Option<String> {
    tracing_subscriber::EnvFilter::builder()
        .parse(filter)
        .err()
        .map(|e| e.to_string())
}

/// RFC 7230 `token`: one or more `tchar`.
fn is_http_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod doc_tests;
