//! RFC 6455 5.5.1 and 7.4 close frames (Autobahn 7 Close Handling): the server echoes a valid
//! close (its code, or an empty close for an empty one) and then closes TCP; malformed close
//! frames and invalid codes fail with 1002, a reason that is not UTF-8 with 1007; data after
//! a close frame is ignored. RFC 6455 7.1.2 and 7.1.1 from the server's side: a
//! handler-initiated close reaches the client after the data queued before it, the handler
//! learns the client's close code, and an unanswered close times out.

use std::{
    io::Write,
    sync::mpsc,
    time::{Duration, Instant},
};

use corecast::{
    proto::CloseCode,
    server::{ConnId, Ctx, Handler, Message, Server},
};
use tungstenite::protocol::{frame::coding::CloseCode as WsCode, CloseFrame};

use crate::{
    common::{
        client_close, client_frame, close_payload, closed_within, connect, drivers,
        finishes_closed, op, raw_ws, read_close, read_close_frame, read_data, read_frame, start,
        test_config, wait_until, TestServer,
    },
    each_case, each_driver, Env,
};

/// Once the server has no connection left, it must count `closes` connections closed and
/// no close timeout: every close so far was the client's.
fn expect_client_closes(env: &Env, closes: u64) {
    let ctx = env.ctx("close counters");
    let stats = env.stats_when_idle();
    assert_eq!(
        (stats.closed, stats.close_timeouts),
        (closes, 0),
        "[{ctx}] {stats:?}"
    );
}

/// Autobahn 7.3.1: a close with no payload is answered by an empty close, then TCP closes.
#[test]
fn empty_close_is_echoed_empty() {
    each_driver(|env| {
        let mut c = env.connect("empty close");
        c.send(op::CLOSE, true, b"");
        c.expect_close_echo(None);
        // A client-initiated close counts as closed, never as a close timeout.
        expect_client_closes(env, 1);
    });
}

/// Autobahn 7.1.1/7.3.3: a message, then a close with only a code: the code is echoed.
#[test]
fn close_with_code_only_is_echoed() {
    each_driver(|env| {
        let mut c = env.connect("code only");
        c.send_text("Hello World!");
        c.expect_text("Hello World!");
        c.send(op::CLOSE, true, &1000u16.to_be_bytes());
        c.expect_close_echo(Some(1000));
    });
}

/// Autobahn 7.3.4/7.3.5: code and reason (ASCII, multi-byte, 123 bytes: the most that fits)
/// are accepted and the code is echoed.
#[test]
fn close_with_code_and_reason_is_echoed() {
    each_driver(|env| {
        let reason_123 = "x".repeat(123);
        let reason_123_mb = format!("{}{}", "€".repeat(40), "abc"); // 120 + 3 bytes
        for reason in ["Goodbye", "κόσμε 𝄞", &reason_123, &reason_123_mb] {
            assert!(reason.len() <= 123);
            let mut c = env.connect(format!("code + {}-byte reason", reason.len()));
            c.send_close(1000, reason.as_bytes());
            c.expect_close_echo(Some(1000));
        }
    });
}

/// Autobahn 7.3.2: a close payload of one byte: 1002.
#[test]
fn close_payload_of_one_byte_is_1002() {
    each_driver(|env| {
        for byte in [0x00u8, 0x03, 0xE8] {
            let mut c = env.connect(format!("1-byte close {byte:#x}"));
            c.send(op::CLOSE, true, &[byte]);
            c.expect_close(1002);
        }
    });
}

/// Autobahn 7.3.6: a 124-byte reason makes a 126-byte control payload: 1002.
#[test]
fn close_reason_of_124_bytes_is_1002() {
    each_driver(|env| {
        let mut c = env.connect("124-byte reason");
        c.send_close(1000, "y".repeat(124).as_bytes());
        c.expect_close(1002);
    });
}

/// Autobahn 7.9.x, 7.13.x: codes that may not appear on the wire: 1002.
#[test]
fn invalid_close_codes_are_1002() {
    each_driver(|env| {
        for code in [
            0u16, 1, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535,
        ] {
            let mut c = env.connect(format!("invalid code {code}"));
            c.send_close(code, b"");
            c.expect_close(1002);
        }
    });
}

/// Autobahn 7.7.x: every code a peer may send is echoed: 1000-1003, 1007-1014 and the
/// application ranges 3000-4999 at their ends.
#[test]
fn valid_close_codes_are_echoed() {
    each_driver(|env| {
        let codes = [
            1000u16, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 3999,
            4000, 4999,
        ];
        for code in codes {
            let mut c = env.connect(format!("valid code {code}"));
            c.send_close(code, b"reason");
            c.expect_close_echo(Some(code));
        }
    });
}

/// Autobahn 7.5.1: a close reason that is not valid UTF-8: 1007.
#[test]
fn close_reason_invalid_utf8_is_1007() {
    each_driver(|env| {
        for (name, reason) in [
            (
                "kosme + surrogate",
                &b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80edited"[..],
            ),
            ("FF", &b"\xFF"[..]),
            ("truncated", &b"bye \xE2\x82"[..]),
            ("overlong", &b"\xC0\xAF"[..]),
        ] {
            let mut c = env.connect(format!("reason {name}"));
            c.send_close(1000, reason);
            c.expect_close(1007);
        }
    });
}

/// Autobahn 7.1.3/7.1.4: a ping and data frames after the close frame, all in the same
/// write, get no answer: only the close echo comes back, then TCP closes.
#[test]
fn data_after_close_frame_is_ignored() {
    each_driver(|env| {
        for (name, after) in [
            ("text", vec![(op::TEXT, b"after close".to_vec())]),
            ("ping", vec![(op::PING, b"after close".to_vec())]),
            (
                "binary, ping, text",
                vec![
                    (op::BINARY, vec![1, 2, 3]),
                    (op::PING, vec![]),
                    (op::TEXT, b"more".to_vec()),
                ],
            ),
        ] {
            let mut c = env.connect(format!("{name} after close"));
            let mut all = c.build(op::CLOSE, true, &close_payload(1000, b"bye"));
            for (o, p) in &after {
                all.extend(c.build(*o, true, p));
            }
            c.send_raw(&all);
            c.expect_close_echo(Some(1000));
        }
    });
}

/// BUG (Autobahn 7.1.2): two close frames in one write. The server must answer the first
/// with its close echo and ignore the second; instead it takes the second close for the
/// answer to a close of its own (`close_sent` is already set by the echo it queued) and
/// drops the connection at once: the queued echo is never written and the client sees TCP
/// closed without any close frame.
#[test]
fn bug_second_close_frame_drops_connection_before_close_reply() {
    each_driver(|env| {
        each_case([close_payload(1001, b""), Vec::new()], |second| {
            let mut c = env.connect(format!("close, then close {second:02x?}"));
            let mut all = c.build(op::CLOSE, true, &close_payload(1000, b"bye"));
            all.extend(c.build(op::CLOSE, true, second));
            c.send_raw(&all);
            c.expect_close_echo(Some(1000));
        });
    });
}

/// BUG (RFC 6455 5.5.1, Autobahn 7.1.x): frames after the peer's close frame must be
/// ignored, not examined. The server keeps decoding them: an invalid frame there (a
/// continuation with no message, invalid UTF-8) makes it send a second close frame (1002,
/// 1007) after its close echo.
#[test]
fn bug_invalid_frame_after_close_frame_triggers_second_close_frame() {
    each_driver(|env| {
        let cases = [
            ("stray continuation", op::CONT, &b"no message under way"[..]),
            ("invalid UTF-8", op::TEXT, &b"\xFF\xFE"[..]),
        ];
        each_case(cases, |&(name, raw_op, payload)| {
            let mut c = env.connect(format!("{name} after close"));
            let mut all = c.build(op::CLOSE, true, &close_payload(1000, b""));
            all.extend(c.build(raw_op, true, payload));
            c.send_raw(&all);
            c.expect_close_echo(Some(1000));
        });
    });
}

/// Autobahn 7.1.5: a fragmented message started, a close, then the rest of the message: the
/// close is echoed and the message is never delivered.
#[test]
fn close_in_the_middle_of_fragmented_message() {
    each_driver(|env| {
        let mut c = env.connect("close between fragments");
        let mut all = c.build(op::TEXT, false, b"fragment1");
        all.extend(c.build(op::CLOSE, true, &close_payload(1000, b"")));
        all.extend(c.build(op::CONT, true, b"fragment2"));
        c.send_raw(&all);
        c.expect_close_echo(Some(1000));
    });
}

/// Autobahn 7.1.6: a large message, a close and a ping in one write: the server may or may
/// not answer the message first, but then it echoes the close (and answers no ping).
#[test]
fn large_message_then_close_then_ping() {
    each_driver(|env| {
        let mut c = env.connect("256K, close, ping");
        let text = crate::ascii_text(256 * 1024);
        let mut all = c.build(op::TEXT, true, text.as_bytes());
        all.extend(c.build(op::CLOSE, true, &close_payload(1000, b"")));
        all.extend(c.build(op::PING, true, b"after close"));
        c.send_raw(&all);
        let f = c.read_close_after_data();
        assert_eq!(
            f.close_parts().map(|(code, _)| code),
            Some(1000),
            "[{}] close echo",
            c.ctx
        );
        c.expect_tcp_closed();
    });
}

/// A close frame written octet-wise is still recognised and echoed.
#[test]
fn close_written_octet_wise() {
    each_driver(|env| {
        let mut c = env.connect("close octet-wise");
        let f = c.build(op::CLOSE, true, &close_payload(4000, b"octets"));
        c.send_chopped(&f, 1);
        c.expect_close_echo(Some(4000));
    });
}

/// A client-initiated close with a code and a reason, raw (4001) or from tungstenite (1000):
/// the client's code is echoed and the server drops TCP within 3 s; each counts as closed,
/// none as a close timeout.
#[test]
fn client_close_is_echoed_with_its_code_and_server_drops_tcp() {
    each_driver(|env| {
        let mut c = env.connect("raw close 4001");
        let started = Instant::now();
        c.send_close(4001, b"client done");
        c.expect_close_echo(Some(4001));
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "[{}] server kept TCP open: {:?}",
            c.ctx,
            started.elapsed()
        );

        let ctx = env.ctx("tungstenite close");
        let mut ws = connect(env.addr());
        ws.close(Some(CloseFrame {
            code: WsCode::Normal,
            reason: "bye".into(),
        }))
        .unwrap();
        let (code, _) = read_close(&mut ws);
        assert_eq!(code, 1000, "{ctx}");
        assert!(finishes_closed(&mut ws), "{ctx}");
        assert!(closed_within(ws.get_mut(), Duration::from_secs(3)), "{ctx}");

        expect_client_closes(env, 2);
    });
}

/// Sends "goodbye" then closes with 4000 when it receives "close me"; reports every
/// `on_close` code.
struct Closer {
    closed: mpsc::Sender<Option<u16>>,
}

impl Handler for Closer {
    fn on_message(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, msg: Message<'_>) {
        if msg == Message::Text("close me") {
            ctx.send_text(conn, "goodbye").unwrap();
            ctx.close(conn, CloseCode(4000), "requested");
        } else if let Message::Text(t) = msg {
            ctx.send_text(conn, t).unwrap();
        }
    }

    fn on_close(&mut self, _ctx: &mut Ctx<'_>, _conn: ConnId, code: Option<CloseCode>) {
        let _ = self.closed.send(code.map(|c| c.0));
    }
}

fn start_closer(cfg: corecast::Config) -> (TestServer, mpsc::Receiver<Option<u16>>) {
    let (tx, rx) = mpsc::channel();
    let server = start(Server::builder(cfg).handler(move |_| Closer { closed: tx.clone() }));
    (server, rx)
}

#[test]
fn handler_initiated_close_reaches_client_after_queued_data() {
    for driver in drivers() {
        let (srv, closes) = start_closer(test_config(driver));
        let mut ws = connect(srv.addr);
        ws.send(tungstenite::Message::text("still open?")).unwrap();
        assert_eq!(
            read_data(&mut ws).into_text().unwrap().as_str(),
            "still open?"
        );
        ws.send(tungstenite::Message::text("close me")).unwrap();
        let data = read_data(&mut ws);
        assert_eq!(
            data.into_text().unwrap().as_str(),
            "goodbye",
            "{driver:?}: data first"
        );
        let started = Instant::now();
        let (code, reason) = read_close(&mut ws);
        assert_eq!((code, reason.as_str()), (4000, "requested"), "{driver:?}");
        // tungstenite answers the close on the next read; the server then drops TCP.
        assert!(finishes_closed(&mut ws), "{driver:?}");
        assert!(
            closed_within(ws.get_mut(), Duration::from_secs(3)),
            "{driver:?}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{driver:?}: {:?}",
            started.elapsed()
        );
        // The client echoed 4000: on_close sees it.
        let code = closes
            .recv_timeout(Duration::from_secs(3))
            .expect("on_close runs");
        assert_eq!(code, Some(4000), "{driver:?}");
        let stats = srv.stats();
        assert_eq!(
            stats.close_timeouts, 0,
            "{driver:?}: the client answered: {stats:?}"
        );
        assert_eq!(stats.protocol_errors, 0, "{driver:?}: {stats:?}");
    }
}

#[test]
fn handler_sees_client_close_code() {
    for driver in drivers() {
        let (srv, closes) = start_closer(test_config(driver));
        let mut s = raw_ws(srv.addr);
        s.write_all(&client_close(4321, "see you")).unwrap();
        assert_eq!(read_close_frame(&mut s).0, 4321, "{driver:?}");
        let code = closes
            .recv_timeout(Duration::from_secs(3))
            .expect("on_close runs");
        assert_eq!(code, Some(4321), "{driver:?}");

        // A peer that just drops TCP: on_close with no code.
        let s = raw_ws(srv.addr);
        drop(s);
        let code = closes
            .recv_timeout(Duration::from_secs(3))
            .expect("on_close runs");
        assert_eq!(code, None, "{driver:?}");
        assert!(
            wait_until(Duration::from_secs(3), || srv.stats().connections == 0),
            "{driver:?}"
        );
    }
}

#[test]
fn unanswered_server_close_times_out() {
    for driver in drivers() {
        let cfg = corecast::Config {
            close_timeout: Duration::from_millis(500),
            ..test_config(driver)
        };
        let (srv, _closes) = start_closer(cfg);
        let mut s = raw_ws(srv.addr);
        s.write_all(&client_frame(op::TEXT, true, 0, b"close me"))
            .unwrap();
        let echo = read_frame(&mut s).unwrap();
        assert_eq!(echo.payload, b"goodbye", "{driver:?}");
        let started = Instant::now();
        assert_eq!(read_close_frame(&mut s).0, 4000, "{driver:?}");
        // Never answer: the server gives up after close_timeout.
        assert!(
            closed_within(&mut s, Duration::from_secs(3)),
            "{driver:?}: never dropped"
        );
        assert!(
            started.elapsed() >= Duration::from_millis(400),
            "{driver:?}: {:?}",
            started.elapsed()
        );
        assert!(
            wait_until(Duration::from_secs(2), || srv.stats().close_timeouts == 1),
            "{driver:?}: {:?}",
            srv.stats()
        );
    }
}
