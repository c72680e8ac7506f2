//! Unit tests of the layering (defaults, file, environment, flags), the parsers, `--help` and
//! validation.

use std::{collections::HashMap, fmt};

use super::*;

/// Parse `args` (without the program name) and resolve against an explicit environment.
fn resolve_with(args: &[&str], env: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let env: HashMap<String, String> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let m = command()
        .try_get_matches_from(std::iter::once("corecast").chain(args.iter().copied()))
        .map_err(|e| ConfigError::Cli(e.to_string()))?;
    resolve(&m, move |k| env.get(k).cloned(), Config::default())
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
    command().debug_assert();
}

#[test]
fn defaults_are_valid_and_used_when_nothing_is_set() {
    Config::default().validate().unwrap();
    assert_eq!(resolve_with(&[], &[]).unwrap(), Config::default());
    let c = Config::default();
    assert_eq!(c.listen, "0.0.0.0:9001".parse().unwrap());
    assert_eq!(c.ping_interval, Duration::from_secs(25));
    assert_eq!(c.max_frame_bytes, 1 << 20);
    assert_eq!(c.max_message_bytes, 1 << 20);
    assert_eq!(c.message_timeout, Duration::from_secs(30));
    assert_eq!(c.partial_message_budget, 256 << 20);
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
    let doc = include_str!("../../docs/configuration.md");
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
        ("--message-timeout", Human(d.message_timeout).to_string()),
        (
            "--partial-message-budget",
            Size(d.partial_message_budget).to_string(),
        ),
        ("--drain-window", Human(d.drain_window).to_string()),
        ("--subprotocol", "none".into()),
        ("--admin-token-file", "none".into()),
        ("--history-len", d.history_len.to_string()),
        ("--history-max-age", Human(d.history_max_age).to_string()),
        (
            "--history-topic-bytes",
            Size(d.history_topic_bytes).to_string(),
        ),
        ("--history-bytes", Size(d.history_bytes).to_string()),
        ("--max-topics", d.max_topics.to_string()),
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
    let expect: Vec<(&str, String)> = expect.into_iter().chain(guard_help_defaults()).collect();
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
    let mut flags: Vec<String> = command()
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
        message_timeout: Duration::from_millis(100),
        partial_message_budget: 125,
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
        partial_message_budget: 1 << 30,
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
        (
            "history_topic_bytes",
            |c| c.history_topic_bytes = 64 << 10,
            "at least 256KiB",
        ),
        (
            "history_bytes",
            |c| c.history_bytes = 2 << 20,
            "at least history_topic_bytes (4MiB)",
        ),
        ("max_topics", |c| c.max_topics = 0, "1 to 100000000"),
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

/// Every flag of `[auth]` and `[limits]` with the default `--help` shows (for the help test).
fn guard_help_defaults() -> Vec<(&'static str, String)> {
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
