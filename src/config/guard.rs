//! The `[auth]` and `[limits]` sections of the configuration: authentication at the
//! handshake, the origin allowlist, and the limits that keep one client from hurting the
//! others (see docs/security.md). Declared with the same [`settings!`] table as the top level,
//! so each setting has its TOML key, flag and `CORECAST_*` variable in one entry.

use std::{path::PathBuf, time::Duration};

use serde::Deserialize;

use super::{
    declare::settings,
    kinds::{Bytes, Choice, HasKind},
    MAX_DURATION,
};
use crate::names::origin::OriginAllowlist;

/// Whether connections must present a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    /// No authentication: every connection may subscribe and publish anywhere.
    Off,
    /// Every handshake must carry a valid JWT (401 otherwise).
    Required,
}

impl HasKind for AuthMode {
    type Kind = Choice<Self>;
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

impl HasKind for JwtAlgorithm {
    type Kind = Choice<Self>;
}

/// The rule every pattern of `allowed_origins` follows.
const ORIGIN_PATTERNS: &str = "origin patterns scheme://host[:port], scheme://*.domain or *.domain";

settings! {
    /// Authentication and origin settings (`[auth]` in TOML).
    pub struct AuthConfig, file FileAuth, section Some("auth");

    /// `off` (default) or `required`.
    mode: AuthMode = AuthMode::Off, "MODE", "Authentication: off or required",
        flag "auth", env "auth";
    /// The signature algorithm tokens must use.
    jwt_algorithm: JwtAlgorithm = JwtAlgorithm::Hs256, "ALG",
        "JWT algorithm: hs256, rs256 or es256";
    /// File holding the HS256 shared secret (trailing whitespace ignored; at least 16 bytes).
    jwt_secret_file: Option<PathBuf> = None, "FILE", "File with the HS256 secret",
        check |v, c| v.is_some() || c.mode != AuthMode::Required
            || c.jwt_algorithm != JwtAlgorithm::Hs256
            => format!("a file path when auth is required with {:?}", c.jwt_algorithm);
    /// PEM file holding the RS256 or ES256 public key.
    jwt_public_key_file: Option<PathBuf> = None, "FILE",
        "PEM file with the RS256/ES256 public key",
        check |v, c| v.is_some() || c.mode != AuthMode::Required
            || c.jwt_algorithm == JwtAlgorithm::Hs256
            => format!("a file path when auth is required with {:?}", c.jwt_algorithm);
    /// Clock skew allowed on `exp` and `nbf`.
    jwt_leeway: Duration = Duration::from_secs(30), "DURATION",
        "Clock skew allowed on exp and nbf",
        check |v, _| *v <= Duration::from_secs(3600) => "0s to 1h";
    /// Accepted `aud` values; empty: `aud` is not checked.
    jwt_audience: Vec<String> = Vec::new(), "AUD",
        "Accepted aud values; repeat or comma-separate";
    /// Accepted `iss` values; empty: `iss` is not checked.
    jwt_issuer: Vec<String> = Vec::new(), "ISS",
        "Accepted iss values; repeat or comma-separate";
    /// Also take the token from the `token` query parameter (it leaks into logs).
    query_token: bool = false, "BOOL", "Accept the token in the `token` query parameter";
    /// Refuse (403) browser handshakes whose `Origin` is not in `allowed_origins`.
    check_origin: bool = false, "BOOL", "Refuse browser handshakes from origins not allowed";
    /// Allowed origins: `https://app.example.com`, `https://*.example.com`, `*.example.com`.
    allowed_origins: Vec<String> = Vec::new(), "ORIGIN",
        "Allowed origins (https://a.example.com, *.example.com); repeat or comma-separate",
        each |o| OriginAllowlist::new([o]).is_ok() => ORIGIN_PATTERNS;
}

settings! {
    /// Per-IP, per-user and per-connection limits (`[limits]` in TOML); 0 turns a limit off.
    pub struct LimitsConfig, file FileLimits, section Some("limits");

    /// Open connections per client IP (IPv6: per /64); 0 = no limit.
    max_connections_per_ip: usize = 0, "N",
        "Open connections per client IP (IPv6 /64), 0 = no limit";
    /// Open connections per user (the token's `sub`, auth required only); 0 = no limit.
    max_connections_per_user: usize = 5, "N",
        "Open connections per user (token sub), 0 = no limit";
    /// Handshakes per second per client IP (IPv6: per /64), token bucket; 0 = no limit.
    handshake_rate_per_ip: u32 = 0, "N", "Handshakes per second per client IP, 0 = no limit";
    /// Handshakes a client IP may make at once before the rate applies.
    handshake_burst_per_ip: u32 = 20, "N", "Handshakes a client IP may make at once",
        check |v, c| *v >= 1 || c.handshake_rate_per_ip == 0
            => "at least 1 when handshake_rate_per_ip is set";
    /// Messages per second a connection may send (token bucket); 0 = no limit.
    max_msgs_per_sec: u32 = 0, "N", "Messages per second per connection, 0 = no limit";
    /// Message bytes per second a connection may send (token bucket); 0 = no limit.
    max_bytes_per_sec: usize as Bytes = 0, "SIZE",
        "Message bytes per second per connection, 0 = no limit";
    /// The per-connection buckets hold this many seconds' worth of the rates.
    rate_burst: Duration = Duration::from_secs(2), "DURATION",
        "Seconds' worth of the per-connection rates a connection may send at once",
        check |v, _| (Duration::from_millis(100)..=MAX_DURATION.min(Duration::from_secs(60)))
            .contains(v) => "100ms to 1m";
    /// Subscriptions one connection may hold.
    max_subscriptions: usize = 4096, "N", "Subscriptions per connection",
        check |v, _| (1..=1_000_000).contains(v) => "1 to 1000000";
}

#[cfg(test)]
mod tests {
    use super::super::{declare::Section, from_toml_str, Config};
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
        a.overlay_env(&env).unwrap();
        l.overlay_env(&env).unwrap();
        assert_eq!(a.mode, AuthMode::Required);
        assert_eq!(a.jwt_secret_file, Some(PathBuf::from("/s")));
        assert_eq!(l.max_msgs_per_sec, 7);
        let bad = |n: &str| (n == "CORECAST_AUTH").then(|| "maybe".to_string());
        let err = a.overlay_env(&bad).unwrap_err().to_string();
        assert!(
            err.contains("`auth`") && err.contains("CORECAST_AUTH=\"maybe\""),
            "{err}"
        );

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
