//! Hostile clients (issue 11): each test is named after one way a single client could hurt
//! everyone, shows the refusal, and shows a well-behaved client beside it still served.
//!
//! The admin API's `POST /publish` is a client too: it skipped the codec's limits
//! (100,000-deep JSON was accepted, delivered and kept in history) and now passes the
//! WebSocket `pub`'s rules, answering 400 with the code a WebSocket `err` carries; and
//! `publishes_in` did not count admin publishes, though docs/operations.md says it does.

mod common;

use std::{
    io::Write,
    net::{SocketAddr, TcpStream},
    time::{Duration, Instant},
};

use common::*;
use corecast::{config::Driver, Config};
use serde_json::{json, Value};
use tungstenite::Message;

/// A masked binary frame header announcing `len` payload bytes, and the first `sent` of them.
fn frame_start(len: usize, sent: usize) -> Vec<u8> {
    let whole = client_frame(0x2, true, 0, &vec![7u8; len]);
    let head = whole.len() - len;
    whole[..head + sent].to_vec()
}

/// A well-behaved client beside the hostile ones: its echo comes back.
fn echo_works(addr: std::net::SocketAddr, what: &str) {
    let mut ws = connect(addr);
    ws.send(Message::text("still served")).unwrap();
    assert_eq!(read_data(&mut ws), Message::text("still served"), "{what}");
}

#[test]
fn unfinished_messages_cannot_pin_memory_a_trickle_is_closed_at_the_message_timeout() {
    for driver in drivers() {
        let srv = start_echo(Config {
            message_timeout: Duration::from_millis(500),
            ..test_config(driver)
        });
        // The default limit is 1 MiB: a 16 MiB frame is refused on its header.
        let mut big = raw_ws(srv.addr);
        big.write_all(&frame_start(16 << 20, 10)).unwrap();
        assert_eq!(read_close_frame(&mut big).0, 1009, "{driver:?}");

        // A 512 KiB frame whose bytes trickle in: every byte counts as life for the
        // heartbeat, but the message must finish within message_timeout.
        let mut slow = raw_ws(srv.addr);
        let start = frame_start(512 << 10, 16);
        slow.write_all(&start).unwrap();
        assert!(
            wait_until(Duration::from_secs(2), || srv.stats().partial_bytes
                >= 512 << 10),
            "{driver:?}: the cut frame is held whole: {:?}",
            srv.stats()
        );
        let t0 = Instant::now();
        slow.set_nonblocking(true).unwrap();
        let mut closed = None;
        while t0.elapsed() < Duration::from_secs(3) {
            let _ = slow.write_all(&[7]); // one more byte every 50 ms
            if let Some(code) = try_close(&mut slow) {
                closed = Some(code);
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        assert_eq!(
            closed,
            Some(1008),
            "{driver:?}: closed with 1008 message timeout"
        );
        assert!(
            t0.elapsed() < Duration::from_millis(1500),
            "{driver:?}: {:?}",
            t0.elapsed()
        );
        echo_works(srv.addr, &format!("{driver:?}"));
        let st = srv.stats();
        assert_eq!(st.closed_message_timeout, 1, "{driver:?}: {st:?}");
        assert!(
            wait_until(Duration::from_secs(2), || srv.stats().partial_bytes == 0),
            "{driver:?}: the held bytes are given back: {:?}",
            srv.stats()
        );
    }
}

/// Read what is there without blocking; the close code once a close frame arrived.
fn try_close(s: &mut TcpStream) -> Option<u16> {
    s.set_nonblocking(false).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(10))).unwrap();
    let mut peek = [0u8; 2];
    let got = match s.peek(&mut peek) {
        Ok(n) if n >= 1 => Some(read_close_frame(s).0),
        _ => None,
    };
    s.set_nonblocking(true).unwrap();
    got
}

#[test]
fn unfinished_messages_across_connections_stay_within_the_process_budget() {
    for driver in drivers() {
        let srv = start_echo(Config {
            max_message_bytes: 512 << 10,
            max_frame_bytes: 512 << 10,
            partial_message_budget: 1 << 20,
            ..test_config(driver)
        });
        // Each starts a 400 KiB frame and stops: two fit in 1 MiB, the third does not.
        let mut held = Vec::new();
        for _ in 0..2 {
            let mut s = raw_ws(srv.addr);
            s.write_all(&frame_start(400 << 10, 100)).unwrap();
            held.push(s);
        }
        assert!(
            wait_until(Duration::from_secs(2), || srv.stats().partial_bytes
                >= 800 << 10),
            "{driver:?}: {:?}",
            srv.stats()
        );
        let mut third = raw_ws(srv.addr);
        third.write_all(&frame_start(400 << 10, 100)).unwrap();
        let (code, reason) = read_close_frame(&mut third);
        assert_eq!((code, reason.as_str()), (1013, "server busy"), "{driver:?}");
        let st = srv.stats();
        assert_eq!(st.closed_message_budget, 1, "{driver:?}: {st:?}");
        assert!(st.partial_bytes < 1 << 20, "{driver:?}: {st:?}");
        // The two within the budget are still open: they finish their messages.
        for s in &mut held {
            s.write_all(&vec![7u8; (400 << 10) - 100]).unwrap();
            let echo = read_frame(s).expect("echo of the finished message");
            assert_eq!(echo.payload.len(), 400 << 10, "{driver:?}");
        }
        echo_works(srv.addr, &format!("{driver:?}"));
        assert!(
            wait_until(Duration::from_secs(2), || srv.stats().partial_bytes == 0),
            "{driver:?}: {:?}",
            srv.stats()
        );
    }
}

// ---------------------------------------------------------------------------------------------
// The admin API's `POST /publish`
// ---------------------------------------------------------------------------------------------

/// A pub/sub server on two workers with its admin API (no token).
fn start_pubsub(driver: Driver) -> PubSubServer {
    let cfg = Config {
        workers: 2,
        ..test_config(driver)
    };
    start_pubsub_admin(cfg, None)
}

/// `POST /publish?<query>` with `body` as JSON: (status, body parsed as JSON).
fn admin_publish(addr: SocketAddr, query: &str, body: &[u8]) -> (u16, Value) {
    let mut req = format!(
        "POST /publish?{query} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    req.extend_from_slice(body);
    let (status, _, body) = http_exchange(addr, &req);
    let v = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
    (status, v)
}

/// Subscribe and wait for `subbed`; returns the topic's seq.
fn subscribe(ws: &mut Client, topic: &str, since: Option<u64>) -> u64 {
    let mut m = json!({"op": "sub", "topic": topic, "id": "s"});
    if let Some(s) = since {
        m["since"] = s.into();
    }
    send_json(ws, m);
    let r = recv_json(ws);
    assert_eq!(r["op"], "subbed", "{r}");
    r["seq"].as_u64().expect("seq")
}

/// The `err` code a WebSocket `pub` of `data` (JSON text) to `topic` gets, with `key`.
fn websocket_pub_code(ws: &mut Client, topic: &str, key: Option<&str>, data: &str) -> String {
    let key = key
        .map(|k| format!(",\"key\":{}", json!(k)))
        .unwrap_or_default();
    let text = format!(
        r#"{{"op":"pub","topic":{},"id":"p"{key},"data":{data}}}"#,
        json!(topic)
    );
    ws.send(Message::text(text)).expect("send");
    let r = recv_json(ws);
    assert_eq!(r["op"], "err", "{r}");
    r["code"].as_str().expect("code").to_string()
}

fn nest(n: usize) -> String {
    format!("{}1{}", "[".repeat(n), "]".repeat(n))
}

#[test]
fn admin_publish_refuses_deep_json_like_websocket_pub() {
    for driver in drivers() {
        let s = start_pubsub(driver);
        let a = s.admin.local_addr();
        let mut sub = connect(s.srv.addr);
        assert_eq!(subscribe(&mut sub, "hostile.deep", None), 0);
        let mut publisher = connect(s.srv.addr);
        // 65 levels is over the nesting limit; 100,000 (200,000 bytes) over the size limit too.
        for depth in [65, 100_000] {
            let data = nest(depth);
            let code = websocket_pub_code(&mut publisher, "hostile.deep", None, &data);
            let (status, body) = admin_publish(a, "topic=hostile.deep", data.as_bytes());
            assert_eq!(status, 400, "{driver:?} depth {depth}: {body}");
            assert_eq!(
                body["error"],
                code.as_str(),
                "{driver:?} depth {depth}: {body}"
            );
            assert!(body["message"].is_string(), "{body}");
        }
        assert_eq!(
            websocket_pub_code(&mut publisher, "hostile.deep", None, &nest(65)),
            "bad_field"
        );
        // A well-behaved publish beside them is delivered, and is the topic's first message.
        let (status, body) = admin_publish(a, "topic=hostile.deep", br#"{"ok":1}"#);
        assert_eq!((status, &body), (200, &json!({"seq": 1})), "{driver:?}");
        let m = recv_json(&mut sub);
        assert_eq!(m["op"], "msg", "{driver:?}: {m}");
        assert_eq!(m["seq"], 1, "{driver:?}: {m}");
        assert_eq!(m["data"], json!({"ok": 1}), "{driver:?}: {m}");
        // History holds nothing else: a resume from 0 replays exactly that one message.
        let mut late = connect(s.srv.addr);
        assert_eq!(
            subscribe(&mut late, "hostile.deep", Some(0)),
            1,
            "{driver:?}"
        );
        let m = recv_json(&mut late);
        assert_eq!(
            (m["seq"].clone(), m["data"].clone()),
            (json!(1), json!({"ok": 1}))
        );
        assert_eq!(s.svc.stats().published, 1, "{driver:?}");
    }
}

#[test]
fn admin_publish_answers_every_pub_rule_with_the_websocket_code() {
    for driver in drivers() {
        let s = start_pubsub(driver);
        let a = s.admin.local_addr();
        let mut ws = connect(s.srv.addr);
        let long_key = "k".repeat(129);
        let big = format!("\"{}\"", "x".repeat(64 * 1024));
        // (query for the admin API, topic and key for the WebSocket pub, data)
        let cases: [(String, &str, Option<&str>, &str); 6] = [
            ("topic=a..b".into(), "a..b", None, "1"),
            ("topic=a%2Fb".into(), "a/b", None, "1"),
            (
                format!("topic=h.k&key={long_key}"),
                "h.k",
                Some(&long_key),
                "1",
            ),
            ("topic=h.j".into(), "h.j", None, "{\"a\":"),
            ("topic=h.j".into(), "h.j", None, "1 2"),
            ("topic=h.big".into(), "h.big", None, &big),
        ];
        for (query, topic, key, data) in &cases {
            let code = websocket_pub_code(&mut ws, topic, *key, data);
            let (status, body) = admin_publish(a, query, data.as_bytes());
            assert_eq!(status, 400, "{driver:?} {query}: {body}");
            assert_eq!(body["error"], code.as_str(), "{driver:?} {query}: {body}");
        }
        // A key that is not UTF-8 is refused as in a binary pub, not replaced.
        let (status, body) = admin_publish(a, "topic=h.k&key=%FF", b"1");
        assert_eq!(
            (status, body["error"].as_str()),
            (400, Some("bad_field")),
            "{body}"
        );
        assert_eq!(s.svc.stats().published, 0, "{driver:?}");
    }
}

#[test]
fn admin_publishes_count_in_publishes_in() {
    for driver in drivers() {
        let s = start_pubsub(driver);
        let a = s.admin.local_addr();
        // Topics owned by either worker.
        for topic in ["cnt.a", "cnt.b", "cnt.c", "cnt.d"] {
            let (status, body) = admin_publish(a, &format!("topic={topic}"), b"1");
            assert_eq!(status, 200, "{driver:?}: {body}");
        }
        // A refused publish counts nowhere, as a refused WebSocket `pub` does not.
        assert_eq!(admin_publish(a, "topic=cnt.a", b"{").0, 400);
        let mut ws = connect(s.srv.addr);
        send_json(
            &mut ws,
            json!({"op": "pub", "topic": "cnt.a", "id": 1, "data": 2}),
        );
        assert_eq!(recv_json(&mut ws)["op"], "ack");
        let counted = || {
            let st = s.svc.stats();
            (st.publishes_in, st.published)
        };
        assert!(
            wait_until(Duration::from_secs(5), || counted() == (5, 5)),
            "{driver:?}: (publishes_in, published) = {:?}",
            counted()
        );
        // `GET /stats` says the same, summed and per worker.
        let req = b"GET /stats HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
        let (status, _, body) = http_exchange(a, req);
        assert_eq!(status, 200);
        let v: Value = serde_json::from_str(&body).expect("JSON");
        assert_eq!(
            v["total"]["pubsub"]["publishes_in"], 5,
            "{driver:?}: {body}"
        );
        let per_worker: u64 = v["workers"]
            .as_array()
            .expect("workers")
            .iter()
            .map(|w| w["pubsub"]["publishes_in"].as_u64().expect("counter"))
            .sum();
        assert_eq!(per_worker, 5, "{driver:?}");
    }
}

/// A pub/sub config with 2 workers and `cfg` applied.
fn pubsub_config(driver: corecast::config::Driver, cfg: impl FnOnce(&mut Config)) -> Config {
    let mut c = Config {
        workers: 2,
        ..test_config(driver)
    };
    cfg(&mut c);
    c
}

/// Publish `data` (a JSON value) to `topic` with id `id`; the reply (`ack` or `err`).
fn publish(ws: &mut Client, topic: &str, data: serde_json::Value, id: u64) -> serde_json::Value {
    send_json(
        ws,
        serde_json::json!({"op": "pub", "topic": topic, "data": data, "id": id}),
    );
    recv_json(ws)
}

/// A subscriber on `topic` (subscribed before anything else happens) that a fresh publisher
/// can still reach afterwards.
fn still_served(addr: std::net::SocketAddr, sub: &mut Client, topic: &str, what: &str) {
    let mut p = connect(addr);
    let r = publish(&mut p, topic, serde_json::json!({"calm": true}), 1);
    assert_eq!(r["op"], "ack", "{what}: {r}");
    let m = recv_json(sub);
    assert_eq!(
        (
            m["op"].as_str(),
            m["topic"].as_str(),
            m["data"]["calm"].as_bool()
        ),
        (Some("msg"), Some(topic), Some(true)),
        "{what}: {m}"
    );
}

#[test]
fn history_flood_stays_within_its_byte_budget() {
    const BUDGET: usize = 1 << 20;
    for driver in drivers() {
        let what = format!("{driver:?}");
        let srv = start_pubsub_admin(
            pubsub_config(driver, |c| {
                c.history_topic_bytes = 256 << 10;
                c.history_bytes = BUDGET;
            }),
            None,
        );
        let addr = srv.srv.addr;
        let mut calm = connect(addr);
        send_json(
            &mut calm,
            serde_json::json!({"op": "sub", "topic": "calm", "id": 1}),
        );
        assert_eq!(recv_json(&mut calm)["op"], "subbed", "{what}");
        // One connection publishes 60 KiB messages to 40 topics, 3 rounds: 7 MiB of data,
        // each message charged about 180 KiB.
        let mut flood = connect(addr);
        let big = serde_json::Value::String("x".repeat(60 << 10));
        let mut id = 0;
        for _round in 0..3 {
            for t in 0..40 {
                id += 1;
                let r = publish(&mut flood, &format!("flood.{t}"), big.clone(), id);
                assert_eq!(r["op"], "ack", "{what}: {r}");
                let held = srv.svc.stats().history_bytes as usize;
                assert!(held <= BUDGET, "{what}: {held} > {BUDGET}");
            }
        }
        let st = srv.svc.stats();
        assert!(st.history_bytes > 0, "{what}: history is kept: {st:?}");
        // At most 5 of the 120 messages fit (2 per worker's share): the rest were evicted.
        assert!(st.history_evicted >= 115, "{what}: {st:?}");
        // The first topic's history went for the later ones: its resume gets `reset`.
        let mut late = connect(addr);
        send_json(
            &mut late,
            serde_json::json!({"op": "sub", "topic": "flood.0", "since": 0}),
        );
        assert_eq!(recv_json(&mut late)["op"], "subbed", "{what}");
        let r = recv_json(&mut late);
        assert_eq!(
            (r["op"].as_str(), r["seq"].as_u64()),
            (Some("reset"), Some(3))
        );
        still_served(addr, &mut calm, "calm", &what);
    }
}

#[test]
fn new_topics_beyond_max_topics_are_refused() {
    for driver in drivers() {
        let what = format!("{driver:?}");
        // 2 topics per worker.
        let srv = start_pubsub_admin(pubsub_config(driver, |c| c.max_topics = 4), None);
        let addr = srv.srv.addr;
        let mut p = connect(addr);
        let (mut acked, mut refused) = (Vec::new(), 0);
        for t in 0..10u64 {
            let topic = format!("t.{t}");
            let r = publish(&mut p, &topic, serde_json::json!(t), t);
            match r["op"].as_str() {
                Some("ack") => acked.push(topic),
                Some("err") if r["code"] == "too_many_topics" && r["id"] == t => refused += 1,
                _ => panic!("{what}: {r}"),
            }
        }
        assert_eq!((acked.len(), refused), (4, 6), "{what}: {acked:?}");
        // The admin API is refused a new topic too, with 503 and the same code.
        let (status, body) = admin_publish(srv.admin.local_addr(), "topic=t.new", b"1");
        assert_eq!(status, 503, "{what}: {body}");
        assert_eq!(body["error"], "too_many_topics", "{what}: {body}");
        assert_eq!(srv.svc.stats().topics_refused, 7, "{what}");
        // Known topics are still served: a publish to one is acked.
        let mut q = connect(addr);
        let r = publish(&mut q, &acked[0], serde_json::json!("again"), 1);
        assert_eq!(
            (r["op"].as_str(), r["seq"].as_u64()),
            (Some("ack"), Some(2)),
            "{what}"
        );
    }
}
