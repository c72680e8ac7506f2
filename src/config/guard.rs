//! The `[auth]` and `[limits]` sections of the configuration: authentication at the
//! handshake, the origin allowlist, and the limits that keep one client from hurting the
//! others (see docs/security.md). Each setting has a flag and a `CORECAST_*` variable like
//! every other setting.

use std::{path::PathBuf, time::Duration};

use clap::{ArgAction, Args};
use serde::Deserialize;

use super::{
    check, env_name, parse_bool, parse_duration, parse_from_str, parse_list, parse_size,
    parse_value_enum, ConfigError, FileDuration, FileSize, Human, MAX_DURATION,
};

/// Whether connections must present a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    /// No authentication: every connection may subscribe and publish anywhere.
    Off,
    /// Every handshake must carry a valid JWT (401 otherwise).
    Required,
}

/// The JWT signature algorithm (one per server).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
pub enum JwtAlgorithm {
    /// HMAC-SHA256 with a shared secret (`jwt_secret_file`).
    #[serde(rename = "HS256", alias = "hs256")]
    Hs256,
    /// RSA PKCS#1 v1.5 with SHA-256, verified with a public key (`jwt_public_key_file`).
    #[serde(rename = "RS256", alias = "rs256")]
    Rs256,
    /// ECDSA P-256 with SHA-256, verified with a public key (`jwt_public_key_file`).
    #[serde(rename = "ES256", alias = "es256")]
    Es256,
}

/// Authentication and origin settings (`[auth]` in TOML).
#[derive(Debug, Clone, PartialEq)]
pub struct AuthConfig {
    /// `off` (default) or `required`.
    pub mode: AuthMode,
    /// The signature algorithm tokens must use.
    pub jwt_algorithm: JwtAlgorithm,
    /// File holding the HS256 shared secret (trailing whitespace ignored; at least 16 bytes).
    pub jwt_secret_file: Option<PathBuf>,
    /// PEM file holding the RS256 or ES256 public key.
    pub jwt_public_key_file: Option<PathBuf>,
    /// Clock skew allowed on `exp` and `nbf`.
    pub jwt_leeway: Duration,
    /// Accepted `aud` values; empty: `aud` is not checked.
    pub jwt_audience: Vec<String>,
    /// Accepted `iss` values; empty: `iss` is not checked.
    pub jwt_issuer: Vec<String>,
    /// Also take the token from the `token` query parameter (it leaks into logs).
    pub query_token: bool,
    /// Refuse (403) browser handshakes whose `Origin` is not in `allowed_origins`.
    pub check_origin: bool,
    /// Allowed origins: `https://app.example.com`, `https://*.example.com`, `*.example.com`.
    pub allowed_origins: Vec<String>,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            mode: AuthMode::Off,
            jwt_algorithm: JwtAlgorithm::Hs256,
            jwt_secret_file: None,
            jwt_public_key_file: None,
            jwt_leeway: Duration::from_secs(30),
            jwt_audience: Vec::new(),
            jwt_issuer: Vec::new(),
            query_token: false,
            check_origin: false,
            allowed_origins: Vec::new(),
        }
    }
}

/// Per-IP, per-user and per-connection limits (`[limits]` in TOML); 0 turns a limit off.
#[derive(Debug, Clone, PartialEq)]
pub struct LimitsConfig {
    /// Open connections per client IP (IPv6: per /64); 0 = no limit.
    pub max_connections_per_ip: usize,
    /// Open connections per user (the token's `sub`, auth required only); 0 = no limit.
    pub max_connections_per_user: usize,
    /// Handshakes per second per client IP (IPv6: per /64), token bucket; 0 = no limit.
    pub handshake_rate_per_ip: u32,
    /// Handshakes a client IP may make at once before the rate applies.
    pub handshake_burst_per_ip: u32,
    /// Messages per second a connection may send (token bucket); 0 = no limit.
    pub max_msgs_per_sec: u32,
    /// Message bytes per second a connection may send (token bucket); 0 = no limit.
    pub max_bytes_per_sec: usize,
    /// The per-connection buckets hold this many seconds' worth of the rates.
    pub rate_burst: Duration,
    /// Subscriptions one connection may hold.
    pub max_subscriptions: usize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_connections_per_ip: 0,
            max_connections_per_user: 5,
            handshake_rate_per_ip: 0,
            handshake_burst_per_ip: 20,
            max_msgs_per_sec: 0,
            max_bytes_per_sec: 0,
            rate_burst: Duration::from_secs(2),
            max_subscriptions: 4096,
        }
    }
}

/// The flags of both sections.
#[derive(Debug, Clone, Default, Args)]
pub struct GuardCli {
    /// Authentication: off or required [default: off] [env: CORECAST_AUTH]
    #[arg(long, value_name = "MODE", hide_possible_values = true)]
    pub auth: Option<AuthMode>,
    /// JWT algorithm: hs256, rs256 or es256 [default: hs256] [env: CORECAST_JWT_ALGORITHM]
    #[arg(long, value_name = "ALG", hide_possible_values = true)]
    pub jwt_algorithm: Option<JwtAlgorithm>,
    /// File with the HS256 secret [default: none] [env: CORECAST_JWT_SECRET_FILE]
    #[arg(long, value_name = "FILE")]
    pub jwt_secret_file: Option<PathBuf>,
    /// PEM file with the RS256/ES256 public key [default: none] [env: CORECAST_JWT_PUBLIC_KEY_FILE]
    #[arg(long, value_name = "FILE")]
    pub jwt_public_key_file: Option<PathBuf>,
    /// Clock skew allowed on exp and nbf [default: 30s] [env: CORECAST_JWT_LEEWAY]
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub jwt_leeway: Option<Duration>,
    /// Accepted aud values; repeat or comma-separate [default: none] [env: CORECAST_JWT_AUDIENCE]
    #[arg(long, value_name = "AUD", value_delimiter = ',')]
    pub jwt_audience: Option<Vec<String>>,
    /// Accepted iss values; repeat or comma-separate [default: none] [env: CORECAST_JWT_ISSUER]
    #[arg(long, value_name = "ISS", value_delimiter = ',')]
    pub jwt_issuer: Option<Vec<String>>,
    /// Accept the token in the `token` query parameter [default: false] [env: CORECAST_QUERY_TOKEN]
    #[arg(long, value_name = "BOOL", value_parser = parse_bool, action = ArgAction::Set)]
    pub query_token: Option<bool>,
    /// Refuse browser handshakes from origins not allowed [default: false] [env: CORECAST_CHECK_ORIGIN]
    #[arg(long, value_name = "BOOL", value_parser = parse_bool, action = ArgAction::Set)]
    pub check_origin: Option<bool>,
    /// Allowed origins (https://a.example.com, *.example.com); repeat or comma-separate [default: none] [env: CORECAST_ALLOWED_ORIGINS]
    #[arg(long, value_name = "ORIGIN", value_delimiter = ',')]
    pub allowed_origins: Option<Vec<String>>,
    /// Open connections per client IP (IPv6 /64), 0 = no limit [default: 0] [env: CORECAST_MAX_CONNECTIONS_PER_IP]
    #[arg(long, value_name = "N")]
    pub max_connections_per_ip: Option<usize>,
    /// Open connections per user (token sub), 0 = no limit [default: 5] [env: CORECAST_MAX_CONNECTIONS_PER_USER]
    #[arg(long, value_name = "N")]
    pub max_connections_per_user: Option<usize>,
    /// Handshakes per second per client IP, 0 = no limit [default: 0] [env: CORECAST_HANDSHAKE_RATE_PER_IP]
    #[arg(long, value_name = "N")]
    pub handshake_rate_per_ip: Option<u32>,
    /// Handshakes a client IP may make at once [default: 20] [env: CORECAST_HANDSHAKE_BURST_PER_IP]
    #[arg(long, value_name = "N")]
    pub handshake_burst_per_ip: Option<u32>,
    /// Messages per second per connection, 0 = no limit [default: 0] [env: CORECAST_MAX_MSGS_PER_SEC]
    #[arg(long, value_name = "N")]
    pub max_msgs_per_sec: Option<u32>,
    /// Message bytes per second per connection, 0 = no limit [default: 0] [env: CORECAST_MAX_BYTES_PER_SEC]
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub max_bytes_per_sec: Option<usize>,
    /// Seconds' worth of the per-connection rates a connection may send at once [default: 2s] [env: CORECAST_RATE_BURST]
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub rate_burst: Option<Duration>,
    /// Subscriptions per connection [default: 4096] [env: CORECAST_MAX_SUBSCRIPTIONS]
    #[arg(long, value_name = "N")]
    pub max_subscriptions: Option<usize>,
}

/// `[auth]` in the TOML file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileAuth {
    mode: Option<AuthMode>,
    jwt_algorithm: Option<JwtAlgorithm>,
    jwt_secret_file: Option<PathBuf>,
    jwt_public_key_file: Option<PathBuf>,
    jwt_leeway: Option<FileDuration>,
    jwt_audience: Option<Vec<String>>,
    jwt_issuer: Option<Vec<String>>,
    query_token: Option<bool>,
    check_origin: Option<bool>,
    allowed_origins: Option<Vec<String>>,
}

/// `[limits]` in the TOML file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileLimits {
    max_connections_per_ip: Option<usize>,
    max_connections_per_user: Option<usize>,
    handshake_rate_per_ip: Option<u32>,
    handshake_burst_per_ip: Option<u32>,
    max_msgs_per_sec: Option<u32>,
    max_bytes_per_sec: Option<FileSize>,
    rate_burst: Option<FileDuration>,
    max_subscriptions: Option<usize>,
}

macro_rules! set_some {
    ($dst:expr => $src:ident: $($field:ident),* $(,)?) => {
        $(if let Some(v) = $src.$field {
            $dst.$field = v.into();
        })*
    };
}

/// Overlay the `[auth]` and `[limits]` tables of a TOML file.
pub(super) fn overlay_file(
    auth: &mut AuthConfig,
    limits: &mut LimitsConfig,
    fa: Option<FileAuth>,
    fl: Option<FileLimits>,
) {
    if let Some(f) = fa {
        if let Some(m) = f.mode {
            auth.mode = m;
        }
        if let Some(p) = f.jwt_secret_file {
            auth.jwt_secret_file = Some(p);
        }
        if let Some(p) = f.jwt_public_key_file {
            auth.jwt_public_key_file = Some(p);
        }
        set_some!(auth => f: jwt_algorithm, jwt_leeway, jwt_audience, jwt_issuer, query_token,
            check_origin, allowed_origins);
    }
    if let Some(f) = fl {
        set_some!(limits => f: max_connections_per_ip, max_connections_per_user,
            handshake_rate_per_ip, handshake_burst_per_ip, max_msgs_per_sec, max_bytes_per_sec,
            rate_burst, max_subscriptions);
    }
}

/// Overlay the flags that were given.
pub(super) fn overlay_cli(auth: &mut AuthConfig, limits: &mut LimitsConfig, c: GuardCli) {
    if let Some(m) = c.auth {
        auth.mode = m;
    }
    if let Some(p) = c.jwt_secret_file {
        auth.jwt_secret_file = Some(p);
    }
    if let Some(p) = c.jwt_public_key_file {
        auth.jwt_public_key_file = Some(p);
    }
    set_some!(auth => c: jwt_algorithm, jwt_leeway, jwt_audience, jwt_issuer, query_token,
        check_origin, allowed_origins);
    set_some!(limits => c: max_connections_per_ip, max_connections_per_user,
        handshake_rate_per_ip, handshake_burst_per_ip, max_msgs_per_sec, max_bytes_per_sec,
        rate_burst, max_subscriptions);
}

/// Overlay every `CORECAST_<SETTING>` variable of both sections that is set.
pub(super) fn overlay_env(
    auth: &mut AuthConfig,
    limits: &mut LimitsConfig,
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
    fn path(s: &str) -> Result<Option<PathBuf>, String> {
        Ok(Some(PathBuf::from(s)))
    }
    macro_rules! from_env {
        ($dst:ident: $($field:ident $(as $name:literal)? => $parse:expr),* $(,)?) => {
            $(if let Some(v) = var(env, from_env!(@name $field $($name)?), $parse)? {
                $dst.$field = v;
            })*
        };
        (@name $field:ident) => { stringify!($field) };
        (@name $field:ident $name:literal) => { $name };
    }
    from_env! { auth:
        mode as "auth" => parse_value_enum::<AuthMode>,
        jwt_algorithm => parse_value_enum::<JwtAlgorithm>,
        jwt_secret_file => path,
        jwt_public_key_file => path,
        jwt_leeway => parse_duration,
        jwt_audience => parse_list,
        jwt_issuer => parse_list,
        query_token => parse_bool,
        check_origin => parse_bool,
        allowed_origins => parse_list,
    }
    from_env! { limits:
        max_connections_per_ip => parse_from_str::<usize>,
        max_connections_per_user => parse_from_str::<usize>,
        handshake_rate_per_ip => parse_from_str::<u32>,
        handshake_burst_per_ip => parse_from_str::<u32>,
        max_msgs_per_sec => parse_from_str::<u32>,
        max_bytes_per_sec => parse_size,
        rate_burst => parse_duration,
        max_subscriptions => parse_from_str::<usize>,
    }
    Ok(())
}

/// Check both sections (key files are read at start, not here).
pub(super) fn validate(auth: &AuthConfig, limits: &LimitsConfig) -> Result<(), ConfigError> {
    if auth.mode == AuthMode::Required {
        let (field, set) = match auth.jwt_algorithm {
            JwtAlgorithm::Hs256 => ("jwt_secret_file", auth.jwt_secret_file.is_some()),
            _ => ("jwt_public_key_file", auth.jwt_public_key_file.is_some()),
        };
        check(
            set,
            field,
            "none",
            format_args!(
                "a file path when auth is required with {:?}",
                auth.jwt_algorithm
            ),
        )?;
    }
    check(
        auth.jwt_leeway <= Duration::from_secs(3600),
        "jwt_leeway",
        Human(auth.jwt_leeway),
        "0s to 1h",
    )?;
    if let Err(e) = crate::auth::OriginAllowlist::new(&auth.allowed_origins) {
        return Err(ConfigError::Invalid {
            field: "allowed_origins",
            message: e.to_string(),
        });
    }
    check(
        limits.handshake_rate_per_ip == 0 || limits.handshake_burst_per_ip >= 1,
        "handshake_burst_per_ip",
        limits.handshake_burst_per_ip,
        "at least 1 when handshake_rate_per_ip is set",
    )?;
    check(
        (Duration::from_millis(100)..=MAX_DURATION.min(Duration::from_secs(60)))
            .contains(&limits.rate_burst),
        "rate_burst",
        Human(limits.rate_burst),
        "100ms to 1m",
    )?;
    check(
        (1..=1_000_000).contains(&limits.max_subscriptions),
        "max_subscriptions",
        limits.max_subscriptions,
        "1 to 1000000",
    )?;
    Ok(())
}

/// Every flag of both sections with the default `--help` shows (for the help test).
#[cfg(test)]
pub(super) fn help_defaults() -> Vec<(&'static str, String)> {
    let (a, l) = (AuthConfig::default(), LimitsConfig::default());
    vec![
        ("--auth", "off".into()),
        ("--jwt-algorithm", "hs256".into()),
        ("--jwt-secret-file", "none".into()),
        ("--jwt-public-key-file", "none".into()),
        ("--jwt-leeway", Human(a.jwt_leeway).to_string()),
        ("--jwt-audience", "none".into()),
        ("--jwt-issuer", "none".into()),
        ("--query-token", a.query_token.to_string()),
        ("--check-origin", a.check_origin.to_string()),
        ("--allowed-origins", "none".into()),
        (
            "--max-connections-per-ip",
            l.max_connections_per_ip.to_string(),
        ),
        (
            "--max-connections-per-user",
            l.max_connections_per_user.to_string(),
        ),
        (
            "--handshake-rate-per-ip",
            l.handshake_rate_per_ip.to_string(),
        ),
        (
            "--handshake-burst-per-ip",
            l.handshake_burst_per_ip.to_string(),
        ),
        ("--max-msgs-per-sec", l.max_msgs_per_sec.to_string()),
        ("--max-bytes-per-sec", l.max_bytes_per_sec.to_string()),
        ("--rate-burst", Human(l.rate_burst).to_string()),
        ("--max-subscriptions", l.max_subscriptions.to_string()),
    ]
}

#[cfg(test)]
mod tests {
    use super::super::{from_toml_str, Config};
    use super::*;

    #[test]
    fn sections_from_toml_env_and_flags() {
        let c = from_toml_str(
            "[auth]\nmode = \"required\"\njwt_algorithm = \"ES256\"\n\
             jwt_public_key_file = \"/k.pem\"\njwt_leeway = \"5s\"\ncheck_origin = true\n\
             allowed_origins = [\"https://*.example.com\"]\n\
             [limits]\nmax_connections_per_ip = 10\nmax_bytes_per_sec = \"1MiB\"\n",
            Config::default(),
        )
        .unwrap();
        c.validate().unwrap();
        assert_eq!(c.auth.mode, AuthMode::Required);
        assert_eq!(c.auth.jwt_algorithm, JwtAlgorithm::Es256);
        assert_eq!(c.auth.jwt_leeway, Duration::from_secs(5));
        assert!(c.auth.check_origin);
        assert_eq!(c.limits.max_connections_per_ip, 10);
        assert_eq!(c.limits.max_bytes_per_sec, 1 << 20);
        assert!(from_toml_str("[limits]\nnope = 1\n", Config::default()).is_err());

        let (mut a, mut l) = (AuthConfig::default(), LimitsConfig::default());
        let env = |n: &str| match n {
            "CORECAST_AUTH" => Some("required".to_string()),
            "CORECAST_JWT_SECRET_FILE" => Some("/s".to_string()),
            "CORECAST_MAX_MSGS_PER_SEC" => Some("7".to_string()),
            _ => None,
        };
        overlay_env(&mut a, &mut l, &env).unwrap();
        assert_eq!(a.mode, AuthMode::Required);
        assert_eq!(a.jwt_secret_file, Some(PathBuf::from("/s")));
        assert_eq!(l.max_msgs_per_sec, 7);
        let bad = |n: &str| (n == "CORECAST_AUTH").then(|| "maybe".to_string());
        assert!(overlay_env(&mut a, &mut l, &bad).is_err());

        let c = Config::from_args([
            "corecast",
            "--auth",
            "required",
            "--jwt-secret-file",
            "/s",
            "--max-subscriptions",
            "9",
            "--allowed-origins",
            "https://a.com,*.b.com",
        ])
        .unwrap();
        assert_eq!(c.auth.mode, AuthMode::Required);
        assert_eq!(c.limits.max_subscriptions, 9);
        assert_eq!(c.auth.allowed_origins.len(), 2);
    }

    #[test]
    fn validation_names_the_setting() {
        let mut c = Config::default();
        c.auth.mode = AuthMode::Required;
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("jwt_secret_file"), "{e}");
        let mut c = Config::default();
        c.auth.allowed_origins = vec!["nope".into()];
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("allowed_origins"));
        let mut c = Config::default();
        c.limits.max_subscriptions = 0;
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("max_subscriptions"));
    }
}
