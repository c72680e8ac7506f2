//! Hostile clients (issue 11): each test is named after one way a single client could hurt
//! everyone, shows the refusal, and shows a well-behaved client beside it still served.

mod common;

use std::{
    io::Write,
    net::TcpStream,
    time::{Duration, Instant},
};

use common::*;
use corecast::Config;
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
