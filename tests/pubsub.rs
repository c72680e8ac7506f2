//! End-to-end pub/sub on the real server with several workers: ordering across workers,
//! resume and reset, slow consumers, clean-up, the admin API.

mod common;

use std::{
    collections::HashMap,
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    time::Duration,
};

use common::{
    connect, drivers, read_close, read_data, recv_json as recv, send_json as send,
    start_pubsub_admin, test_config, wait_until, PubSubServer,
};
use corecast::{
    config::{Driver, SlowConsumer},
    Config,
};
use serde_json::Value;
use tungstenite::Message;

type Client = tungstenite::WebSocket<TcpStream>;

/// The tests of this file run one at a time: two of them read the process's RSS.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

fn start_pubsub(cfg: Config) -> PubSubServer {
    start_pubsub_admin(cfg, None)
}

fn config(driver: Driver) -> Config {
    Config {
        workers: 3,
        ..test_config(driver)
    }
}

/// Subscribe and wait for `subbed`; returns its seq.
fn subscribe(ws: &mut Client, topic: &str, since: Option<u64>) -> u64 {
    let mut m = serde_json::json!({"op": "sub", "topic": topic, "id": "s"});
    if let Some(s) = since {
        m["since"] = s.into();
    }
    send(ws, m);
    let r = recv(ws);
    assert_eq!(r["op"], "subbed", "{r}");
    assert_eq!(r["topic"], topic);
    r["seq"].as_u64().unwrap()
}

fn http(addr: SocketAddr, req: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(req.as_bytes()).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let status = out[9..12].parse().unwrap();
    let body = out.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    (status, body)
}

fn admin_publish(addr: SocketAddr, topic: &str, body: &str) -> (u16, String) {
    http(
        addr,
        &format!(
            "POST /publish?topic={topic} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ),
    )
}

#[test]
fn concurrent_publishers_on_every_worker_give_every_subscriber_the_same_contiguous_order() {
    let _serial = serial();
    for driver in drivers() {
        let s = start_pubsub(config(driver));
        let addr = s.srv.addr;
        let topics = ["ord.a", "ord.b", "ord.c"];
        // Subscribers spread over the workers (SO_REUSEPORT hashes connections).
        let mut subs: Vec<Client> = (0..9).map(|_| connect(addr)).collect();
        for (i, ws) in subs.iter_mut().enumerate() {
            for t in &topics[..1 + i % 3] {
                assert_eq!(subscribe(ws, t, None), 0);
            }
        }
        const PER: usize = 300;
        let publishers: Vec<_> = (0..4)
            .map(|p| {
                std::thread::spawn(move || {
                    let mut ws = connect(addr);
                    for i in 0..PER {
                        let t = ["ord.a", "ord.b", "ord.c"][i % 3];
                        send(
                            &mut ws,
                            serde_json::json!({"op":"pub","topic":t,"data":{"p":p,"i":i}}),
                        );
                    }
                    // A last acked publish proves the others were taken.
                    send(
                        &mut ws,
                        serde_json::json!({"op":"pub","topic":"ord.done","data":0,"id":p}),
                    );
                    let r = recv(&mut ws);
                    assert_eq!(r["op"], "ack");
                })
            })
            .collect();
        for p in publishers {
            p.join().unwrap();
        }
        let per_topic = 4 * PER / 3;
        let mut orders: HashMap<&str, Vec<(u64, u64, u64)>> = HashMap::new();
        for (i, ws) in subs.iter_mut().enumerate() {
            let mine = &topics[..1 + i % 3];
            let mut next: HashMap<String, u64> = HashMap::new();
            let mut seen: HashMap<String, Vec<(u64, u64, u64)>> = HashMap::new();
            for _ in 0..per_topic * mine.len() {
                let m = recv(ws);
                assert_eq!(m["op"], "msg");
                let t = m["topic"].as_str().unwrap().to_string();
                let seq = m["seq"].as_u64().unwrap();
                let want = next.entry(t.clone()).or_insert(1);
                assert_eq!(seq, *want, "subscriber {i}: contiguous seq on {t}");
                *want += 1;
                let d = &m["data"];
                seen.entry(t).or_default().push((
                    seq,
                    d["p"].as_u64().unwrap(),
                    d["i"].as_u64().unwrap(),
                ));
            }
            for t in mine {
                let got = &seen[*t];
                assert_eq!(got.len(), per_topic);
                // Every subscriber sees the same message at the same seq.
                match orders.get(t) {
                    Some(first) => assert_eq!(first, got, "same order for every subscriber"),
                    None => {
                        orders.insert(t, got.clone());
                    }
                }
                // Each publisher's messages keep that publisher's order.
                for p in 0..4 {
                    let idx: Vec<u64> = got.iter().filter(|m| m.1 == p).map(|m| m.2).collect();
                    assert!(
                        idx.windows(2).all(|w| w[0] < w[1]),
                        "publisher {p} order on {t}"
                    );
                }
            }
        }
        let st = s.svc.stats();
        assert_eq!(st.published, (4 * PER + 4) as u64);
        assert_eq!(st.mesh_lost, 0);
    }
}

#[test]
fn resume_after_reconnect_replays_what_was_missed_and_reset_when_history_is_short() {
    let _serial = serial();
    for driver in drivers() {
        let s = start_pubsub(Config {
            history_len: 50,
            ..config(driver)
        });
        let addr = s.srv.addr;
        let mut sub = connect(addr);
        subscribe(&mut sub, "res.x", None);
        for i in 1..=10 {
            let (st, body) = admin_publish(s.admin.local_addr(), "res.x", &i.to_string());
            assert_eq!(st, 200, "{body}");
            assert_eq!(body, format!("{{\"seq\":{i}}}"));
        }
        let mut last = 0;
        for _ in 0..4 {
            last = recv(&mut sub)["seq"].as_u64().unwrap();
        }
        assert_eq!(last, 4);
        drop(sub); // the client goes away having seen up to 4
        for i in 11..=20 {
            admin_publish(s.admin.local_addr(), "res.x", &i.to_string());
        }
        // Reconnect (lands on any worker) and resume after 4: 5..=20 from history, then live.
        let mut sub = connect(addr);
        assert_eq!(subscribe(&mut sub, "res.x", Some(last)), 20);
        for want in 5..=20u64 {
            let m = recv(&mut sub);
            assert_eq!(m["op"], "msg");
            assert_eq!(m["seq"], want);
            assert_eq!(m["data"], want);
        }
        admin_publish(s.admin.local_addr(), "res.x", "21");
        assert_eq!(recv(&mut sub)["seq"], 21);
        // Up to date: nothing replayed.
        let mut up = connect(addr);
        assert_eq!(subscribe(&mut up, "res.x", Some(21)), 21);
        // Too old for a 50-message history: reset.
        for i in 22..=100 {
            admin_publish(s.admin.local_addr(), "res.x", &i.to_string());
        }
        let mut old = connect(addr);
        assert_eq!(subscribe(&mut old, "res.x", Some(3)), 100);
        let r = recv(&mut old);
        assert_eq!(r["op"], "reset");
        assert_eq!(r["seq"], 100);
        // Ahead of the topic (e.g. it started afresh): reset too.
        let mut ahead = connect(addr);
        subscribe(&mut ahead, "res.x", Some(1000));
        assert_eq!(recv(&mut ahead)["op"], "reset");
        // Live goes on after the reset for both.
        admin_publish(s.admin.local_addr(), "res.x", "101");
        assert_eq!(recv(&mut old)["seq"], 101);
        assert_eq!(recv(&mut ahead)["seq"], 101);
        assert_eq!(recv(&mut up)["seq"], 22);
        assert!(s.svc.stats().resets >= 2);
    }
}

/// A client socket with a small receive buffer that never reads: the server's queue for it
/// fills after a few hundred KiB instead of the kernel's megabytes.
fn stalled_client(addr: SocketAddr, topic: &str) -> TcpStream {
    use socket2::{Domain, Socket, Type};
    let sock = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    sock.connect(&addr.into()).unwrap();
    let stream: TcpStream = sock.into();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let (mut ws, _) =
        tungstenite::client::client(format!("ws://{addr}/").as_str(), stream).unwrap();
    subscribe(&mut ws, topic, None);
    let (stream, _) = (ws.get_ref().try_clone().unwrap(), ());
    stream
}

fn rss_bytes() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    let kb: u64 = s
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap();
    kb * 1024
}

fn run_slow_consumer(driver: Driver, policy: SlowConsumer, keyed: bool) {
    let s = start_pubsub(Config {
        send_buffer_bytes: 1 << 20,
        slow_consumer: policy,
        history_len: 0,
        ..config(driver)
    });
    let addr = s.srv.addr;
    let _stalled = stalled_client(addr, "slow.t");
    let mut fast: Vec<Client> = (0..3).map(|_| connect(addr)).collect();
    for ws in &mut fast {
        subscribe(ws, "slow.t", None);
    }
    let pad = "x".repeat(4000);
    let rss_before = rss_bytes();
    const N: u64 = 2000; // 8 MB to each subscriber
    let mut publisher = connect(addr);
    let mut next = vec![1u64; fast.len()];
    for i in 0..N {
        let mut m = serde_json::json!({"op":"pub","topic":"slow.t","data":{"i":i,"pad":pad}});
        if keyed {
            m["key"] = format!("k{}", i % 8).into();
        }
        send(&mut publisher, m);
        // The fast subscribers read as they go.
        if i % 10 == 9 {
            for (f, ws) in fast.iter_mut().enumerate() {
                while next[f] + 5 <= i + 1 {
                    let m = recv(ws);
                    assert_eq!(m["seq"], next[f], "a fast subscriber loses nothing");
                    next[f] += 1;
                }
            }
        }
    }
    for (f, ws) in fast.iter_mut().enumerate() {
        while next[f] <= N {
            let m = recv(ws);
            assert_eq!(m["seq"], next[f], "a fast subscriber loses nothing");
            next[f] += 1;
        }
    }
    let grown = rss_bytes().saturating_sub(rss_before);
    let st = s.srv.stats();
    // The stalled subscriber's queue is bounded: memory grew by far less than the 8 MB it
    // was sent (allow for the allocator and the test's own buffers).
    assert!(grown < 12 << 20, "RSS grew by {grown} bytes");
    assert!(st.queued_bytes < 1 << 20, "queued {}", st.queued_bytes);
    match (policy, keyed) {
        (_, true) => {
            assert!(st.conflated > 0, "{st:?}");
            assert_eq!(
                st.slow_disconnects, 0,
                "a keyed feed with room for its keys is never refused"
            );
        }
        (SlowConsumer::Disconnect, false) => {
            assert_eq!(st.slow_disconnects, 1, "{st:?}");
            assert_eq!(st.dropped, 0);
        }
        (SlowConsumer::Drop, false) => {
            assert!(st.dropped > 0, "{st:?}");
            assert_eq!(st.slow_disconnects, 0);
        }
    }
}

#[test]
fn a_stalled_subscriber_is_disconnected_and_the_others_lose_nothing() {
    let _serial = serial();
    for driver in drivers() {
        run_slow_consumer(driver, SlowConsumer::Disconnect, false);
    }
}

#[test]
fn a_stalled_subscriber_on_a_drop_topic_loses_messages_and_the_others_do_not() {
    let _serial = serial();
    for driver in drivers() {
        run_slow_consumer(driver, SlowConsumer::Drop, false);
    }
}

#[test]
fn a_stalled_subscriber_on_a_keyed_feed_is_conflated() {
    let _serial = serial();
    for driver in drivers() {
        run_slow_consumer(driver, SlowConsumer::Disconnect, true);
    }
}

#[test]
fn the_slow_consumer_close_is_1008_slow_consumer() {
    let _serial = serial();
    for driver in drivers() {
        let s = start_pubsub(Config {
            send_buffer_bytes: 16 * 1024,
            ..config(driver)
        });
        let addr = s.srv.addr;
        let mut slow = connect(addr);
        subscribe(&mut slow, "cl.t", None);
        let pad = "y".repeat(8000);
        let mut publisher = connect(addr);
        // Enough to fill the socket buffers and then the 16 KiB queue.
        for i in 0..3000 {
            send(
                &mut publisher,
                serde_json::json!({"op":"pub","topic":"cl.t","data":{"i":i,"pad":pad}}),
            );
        }
        send(
            &mut publisher,
            serde_json::json!({"op":"pub","topic":"x.done","data":0,"id":1}),
        );
        assert_eq!(recv(&mut publisher)["op"], "ack");
        assert!(wait_until(Duration::from_secs(10), || s
            .srv
            .stats()
            .slow_disconnects
            == 1));
        // Now read: data first (whatever was written before the close), then the close.
        loop {
            match common::ws_read(&mut slow) {
                Ok(Message::Close(Some(f))) => {
                    assert_eq!(u16::from(f.code), 1008);
                    assert_eq!(f.reason.as_str(), "slow consumer");
                    break;
                }
                Ok(_) => continue,
                Err(e) => panic!("{e}"),
            }
        }
    }
}

#[test]
fn unsubscribe_and_disconnect_clean_up_after_100000_cycles() {
    let _serial = serial();
    let driver = drivers()[0];
    let s = start_pubsub(config(driver));
    let addr = s.srv.addr;
    let mut ws = connect(addr);
    const CYCLES: usize = 100_000;
    const WINDOW: usize = 500;
    let rss_at = |n: usize| (n, rss_bytes());
    let mut marks = Vec::new();
    let mut sent = 0;
    let mut got = 0;
    while got < 2 * CYCLES {
        while sent < CYCLES && sent - got / 2 < WINDOW {
            // Distinct topics, so every cycle creates and frees a topic entry (and, for
            // topics owned elsewhere, a remote interest at the owner).
            let t = format!("cyc.{}", sent % 5000);
            send(&mut ws, serde_json::json!({"op":"sub","topic":t}));
            send(&mut ws, serde_json::json!({"op":"unsub","topic":t}));
            sent += 1;
        }
        let m = recv(&mut ws);
        let op = m["op"].as_str().unwrap();
        assert!(op == "subbed" || op == "unsubbed", "{m}");
        got += 1;
        if got % 40_000 == 0 {
            marks.push(rss_at(got));
        }
    }
    assert!(
        wait_until(Duration::from_secs(5), || {
            let st = s.svc.stats();
            st.subscriptions == 0 && st.topics == 0
        }),
        "{:?}",
        s.svc.stats()
    );
    // Subscriptions on several topics, then a disconnect, also leave nothing behind.
    for i in 0..50 {
        subscribe(&mut ws, &format!("dis.{i}"), None);
    }
    assert_eq!(s.svc.stats().subscriptions, 50);
    drop(ws);
    assert!(
        wait_until(Duration::from_secs(5), || {
            let st = s.svc.stats();
            st.subscriptions == 0 && st.topics == 0
        }),
        "{:?}",
        s.svc.stats()
    );
    // No growth between the first and the last mark beyond noise.
    let (first, last) = (marks[0].1, marks[marks.len() - 1].1);
    assert!(last < first + (8 << 20), "RSS {marks:?}");
}

#[test]
fn malformed_messages_get_err_and_repeated_abuse_closes_1008() {
    let _serial = serial();
    for driver in drivers() {
        let s = start_pubsub(config(driver));
        let mut ws = connect(s.srv.addr);
        ws.send(Message::text("{\"op\":\"sub\",\"id\":7}")).unwrap();
        let r = recv(&mut ws);
        assert_eq!(r["op"], "err");
        assert_eq!(r["code"], "missing_field");
        assert_eq!(r["id"], 7);
        ws.send(Message::text("{\"op\":\"sub\",\"topic\":\"bad topic!\"}"))
            .unwrap();
        assert_eq!(recv(&mut ws)["code"], "bad_topic");
        ws.send(Message::binary(vec![1, 2, 3])).unwrap();
        assert_eq!(recv(&mut ws)["code"], "bad_frame");
        // The connection still works.
        assert_eq!(subscribe(&mut ws, "ok.t", None), 0);
        for _ in 0..10 {
            ws.send(Message::text("not json")).unwrap();
        }
        loop {
            match common::ws_read(&mut ws) {
                Ok(Message::Close(Some(f))) => {
                    assert_eq!(u16::from(f.code), 1008);
                    break;
                }
                Ok(_) => continue,
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(s.svc.stats().error_closes, 1);
        let _ = read_close;
    }
}

#[test]
fn binary_and_json_subscribers_get_the_same_messages() {
    let _serial = serial();
    for driver in drivers() {
        let s = start_pubsub(config(driver));
        let addr = s.srv.addr;
        let mut json = connect(addr);
        subscribe(&mut json, "mix.t", None);
        let req =
            tungstenite::client::IntoClientRequest::into_client_request(format!("ws://{addr}/"))
                .map(|mut r| {
                    r.headers_mut()
                        .insert("Sec-WebSocket-Protocol", "corecast.v1.bin".parse().unwrap());
                    r
                })
                .unwrap();
        let stream = TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let (mut bin, resp) = tungstenite::client::client(req, stream).unwrap();
        assert_eq!(resp.headers()["sec-websocket-protocol"], "corecast.v1.bin");
        // sub, flags 0, topic "mix.t"
        bin.send(Message::binary(b"\x01\x00\x05mix.t".to_vec()))
            .unwrap();
        let Message::Binary(subbed) = read_data(&mut bin) else {
            panic!()
        };
        assert_eq!(&subbed[..], b"\x84\x00\x05mix.t\x00");
        admin_publish(s.admin.local_addr(), "mix.t", "{\"v\":1}");
        assert_eq!(recv(&mut json)["data"]["v"], 1);
        let Message::Binary(msg) = read_data(&mut bin) else {
            panic!()
        };
        assert_eq!(msg[0], 0x81);
        assert!(msg.ends_with(b"{\"v\":1}"));
    }
}

#[test]
fn admin_api_publishes_refuses_bad_input_and_reports_stats() {
    let _serial = serial();
    let s = start_pubsub(config(drivers()[0]));
    let a = s.admin.local_addr();
    assert_eq!(admin_publish(a, "adm.t", "{\"a\":1}").0, 200);
    assert_eq!(admin_publish(a, "adm.t", "{\"a\":1}").1, "{\"seq\":2}");
    let (st, body) = admin_publish(a, "bad!topic", "1");
    assert_eq!(st, 400);
    assert!(body.contains("bad_topic"), "{body}");
    let (st, body) = admin_publish(a, "adm.t", "{not json");
    assert_eq!(st, 400);
    assert!(body.contains("bad_json"), "{body}");
    assert_eq!(
        http(a, "GET /nope HTTP/1.1\r\nConnection: close\r\n\r\n").0,
        404
    );
    assert_eq!(
        http(a, "GET /publish HTTP/1.1\r\nConnection: close\r\n\r\n").0,
        405
    );
    let (st, body) = http(a, "GET /stats HTTP/1.1\r\nConnection: close\r\n\r\n");
    assert_eq!(st, 200);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["total"]["pubsub"]["published"], 2);
    assert_eq!(v["workers"].as_array().unwrap().len(), 3);
    assert!(v["total"]["server"]["connections"].is_u64());
}
