//! The admin listener on a real server: Prometheus `/metrics` (names, types, per-worker
//! labels, the latency histogram), `/topics`, the `/healthz` and `/readyz` probes (readiness
//! drops when a drain starts) and the bearer token.

mod common;

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    time::Duration,
};

use common::{connect, read_data, start_pubsub_admin, test_config, wait_until, PubSubServer};
use corecast::{config::Driver, Config};
use tungstenite::Message;

const TOKEN: &str = "s3cret-admin-token";

fn setup(token: Option<&str>) -> PubSubServer {
    let cfg = Config {
        workers: 2,
        ..test_config(Driver::Auto)
    };
    start_pubsub_admin(cfg, token)
}

/// One request on a fresh connection: (status, head, body).
fn http(addr: SocketAddr, method: &str, path: &str, auth: Option<&str>) -> (u16, String, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let auth = auth
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let body = if method == "POST" { "{\"v\":1}" } else { "" };
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: x\r\n{auth}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let status = out[9..12].parse().unwrap();
    let (head, body) = out.split_once("\r\n\r\n").unwrap();
    (status, head.to_string(), body.to_string())
}

/// The value of the sample `name{labels}` in an exposition.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[test]
fn metrics_expose_per_worker_counters_types_and_the_latency_histogram() {
    let s = setup(None);
    let a = s.admin.local_addr();
    // A subscriber and some publishes through the admin API, so the counters move.
    let mut ws = connect(s.srv.addr);
    ws.send(Message::text(r#"{"op":"sub","topic":"m.t","id":1}"#))
        .unwrap();
    assert!(matches!(read_data(&mut ws), Message::Text(_)));
    for _ in 0..5 {
        assert_eq!(http(a, "POST", "/publish?topic=m.t", None).0, 200);
    }
    for _ in 0..5 {
        assert!(matches!(read_data(&mut ws), Message::Text(_)));
    }
    let (status, head, text) = http(a, "GET", "/metrics", None);
    assert_eq!(status, 200);
    assert!(
        head.contains("Content-Type: text/plain; version=0.0.4"),
        "{head}"
    );
    assert!(text.contains("corecast_info{version=\""), "{text}");
    assert!(text.contains("# TYPE corecast_connections gauge"), "{text}");
    assert!(text.contains("# TYPE corecast_connections_opened_total counter"));
    assert!(text.contains("# TYPE corecast_publish_to_write_seconds histogram"));
    // Per-worker samples: both workers appear, and they sum to what /stats says.
    let opened: f64 = (0..2)
        .map(|w| {
            sample(
                &text,
                &format!("corecast_connections_opened_total{{worker=\"{w}\"}}"),
            )
            .unwrap()
        })
        .sum();
    assert_eq!(opened, 1.0);
    let published: f64 = (0..2)
        .map(|w| {
            sample(
                &text,
                &format!("corecast_published_total{{worker=\"{w}\"}}"),
            )
            .unwrap()
        })
        .sum();
    assert_eq!(published, 5.0);
    // Reasons are labels of one family.
    assert!(text.contains("corecast_server_closes_total{worker=\"0\",reason=\"slow_consumer\"} 0"));
    assert!(text
        .contains("corecast_handshakes_rejected_total{worker=\"1\",reason=\"max_connections\"} 0"));
    // Every delivered message was measured once on the subscriber's worker.
    let count: f64 = (0..2)
        .map(|w| {
            sample(
                &text,
                &format!("corecast_publish_to_write_seconds_count{{worker=\"{w}\"}}"),
            )
            .unwrap()
        })
        .sum();
    assert_eq!(count, 5.0);
    // No label names a topic or a connection.
    assert!(!text.contains("m.t"), "a topic leaked into the labels");
    // Each HELP and TYPE appears once per family.
    let types = text.lines().filter(|l| l.starts_with("# TYPE ")).count();
    let mut names: Vec<_> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .map(|l| l.split(' ').next().unwrap())
        .collect();
    names.sort();
    names.dedup();
    assert_eq!(types, names.len());
}

#[test]
fn topics_lists_the_busiest_first() {
    // One worker: both topics are swept at the same moment, so their rates cover the same
    // interval (with two owners, one list can be a second older than the other).
    let cfg = Config {
        workers: 1,
        ..test_config(Driver::Auto)
    };
    let s = start_pubsub_admin(cfg, None);
    let a = s.admin.local_addr();
    for i in 0..30 {
        http(a, "POST", "/publish?topic=hot", None);
        if i % 10 == 0 {
            http(a, "POST", "/publish?topic=cold", None);
        }
    }
    // The list refreshes once a second; wait for a sweep that saw every publish. In any
    // interval `hot` got at least as many messages as `cold`, and more in all, so it leads.
    let mut body = String::new();
    let ok = wait_until(Duration::from_secs(5), || {
        body = http(a, "GET", "/topics?limit=5", None).2;
        body.contains("\"seq\":30}") && body.contains("\"seq\":3}")
    });
    assert!(ok, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let list = v["topics"].as_array().unwrap();
    assert_eq!(list[0]["name"], "hot", "{body}");
    assert_eq!(list[0]["seq"], 30);
    assert_eq!(list[1]["name"], "cold");
    assert_eq!(http(a, "GET", "/topics?limit=0", None).0, 400);
}

#[test]
fn probes_report_health_and_readiness_until_the_drain() {
    let s = setup(None);
    let a = s.admin.local_addr();
    let (st, _, body) = http(a, "GET", "/healthz", None);
    assert_eq!((st, body.as_str()), (200, r#"{"status":"ok"}"#));
    let (st, _, body) = http(a, "GET", "/readyz", None);
    assert_eq!(st, 200, "{body}");
    assert!(body.contains("\"ready\":true"), "{body}");
    s.srv.server.as_ref().unwrap().drain(Duration::from_secs(1));
    let (st, _, body) = http(a, "GET", "/readyz", None);
    assert_eq!(st, 503, "{body}");
    assert!(body.contains("\"draining\":true"), "{body}");
    // Liveness is about the process, not the drain.
    assert_eq!(http(a, "GET", "/healthz", None).0, 200);
    let (st, _, text) = http(a, "GET", "/metrics", None);
    assert_eq!(st, 200);
    assert_eq!(sample(&text, "corecast_draining"), Some(1.0));
}

#[test]
fn the_admin_token_guards_everything_but_the_probes() {
    let s = setup(Some(TOKEN));
    let a = s.admin.local_addr();
    for (method, path) in [
        ("GET", "/metrics"),
        ("GET", "/stats"),
        ("GET", "/topics"),
        ("POST", "/publish?topic=t"),
    ] {
        let (st, head, body) = http(a, method, path, None);
        assert_eq!(st, 401, "{path}: {body}");
        assert!(head.contains("WWW-Authenticate: Bearer"), "{head}");
        assert_eq!(
            http(a, method, path, Some("wrong-token-of-same-len")).0,
            401
        );
        assert_eq!(http(a, method, path, Some("s3cret")).0, 401, "a prefix");
        assert_eq!(http(a, method, path, Some(TOKEN)).0, 200, "{path}");
    }
    assert_eq!(http(a, "GET", "/healthz", None).0, 200);
    assert_eq!(http(a, "GET", "/readyz", None).0, 200);
    // Unknown paths are 404 whoever asks; a wrong method is 405 once authorised.
    assert_eq!(http(a, "GET", "/nope", None).0, 404);
    assert_eq!(http(a, "GET", "/publish", Some(TOKEN)).0, 405);
}
