//! `socket_send_buffer`: SO_SNDBUF on accepted sockets, which caps what the kernel holds for
//! a connection beyond corecast's own send bound.

mod common;

use std::{
    net::SocketAddr,
    os::fd::{AsFd, AsRawFd, BorrowedFd},
};

use common::*;
use nix::sys::socket::{getpeername, getsockopt, setsockopt, sockopt, SockaddrStorage};

/// SO_SNDBUF of this process's socket whose peer is `peer`: the server runs in the test
/// process, so its accepted socket is one of our own descriptors.
fn server_sndbuf(peer: SocketAddr) -> Option<usize> {
    for entry in std::fs::read_dir("/proc/self/fd").ok()?.flatten() {
        let Ok(raw) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        // SAFETY: only used while the server holds the connection open (the test keeps the
        // client side open, so the server does not close it under us); a descriptor that is
        // not a socket just fails getpeername.
        let fd = unsafe { BorrowedFd::borrow_raw(raw) };
        let Ok(addr) = getpeername::<SockaddrStorage>(fd.as_raw_fd()) else {
            continue;
        };
        let matches = match (addr.as_sockaddr_in(), peer) {
            (Some(a), SocketAddr::V4(p)) => a.ip() == *p.ip() && a.port() == p.port(),
            _ => false,
        };
        if matches {
            return getsockopt(&fd, sockopt::SndBuf).ok();
        }
    }
    None
}

/// One echo, so the connection is past its handshake on both sides.
fn round_trip(ws: &mut Client) {
    ws.send(tungstenite::Message::text("hello")).unwrap();
    assert_eq!(read_data(ws).into_text().unwrap().as_str(), "hello");
}

#[test]
fn accepted_sockets_get_the_configured_send_buffer() {
    for driver in drivers() {
        let mut cfg = test_config(driver);
        cfg.socket_send_buffer = 64 << 10;
        let srv = start_echo(cfg);
        let mut ws = connect(srv.addr);
        round_trip(&mut ws);
        let me = ws.get_ref().local_addr().unwrap();
        // Linux doubles the value for its bookkeeping and reports the doubled one.
        assert_eq!(server_sndbuf(me), Some(128 << 10), "[{driver:?}]");

        // 0 (the default) leaves the kernel's autotuning alone.
        let srv = start_echo(test_config(driver));
        let mut ws = connect(srv.addr);
        round_trip(&mut ws);
        let me = ws.get_ref().local_addr().unwrap();
        let auto = server_sndbuf(me).expect("the server's socket");
        eprintln!("[{driver:?}] SO_SNDBUF with autotuning: {auto}");
        assert_ne!(auto, 128 << 10, "[{driver:?}]");
    }
}

#[test]
fn a_stalled_subscriber_meets_the_send_bound_after_little_kernel_buffering() {
    const MSG: usize = 4 << 10;
    for driver in drivers() {
        let mut cfg = test_config(driver);
        cfg.socket_send_buffer = 16 << 10;
        cfg.send_buffer_bytes = 64 << 10;
        let s = start_pubsub_admin(cfg, None);
        let mut sub = connect(s.srv.addr);
        setsockopt(&sub.get_ref().as_fd(), sockopt::RcvBuf, &(4 << 10)).unwrap();
        send_json(&mut sub, serde_json::json!({"op": "sub", "topic": "t"}));
        assert_eq!(recv_json(&mut sub)["op"], "subbed", "[{driver:?}]");
        // The subscriber now stops reading. Publish 4 KiB messages, one at a time (each
        // acked), until the server disconnects it as a slow consumer.
        let mut publ = connect(s.srv.addr);
        let data = "x".repeat(MSG);
        let mut published = 0usize;
        while s.srv.stats().slow_disconnects == 0 && published < 2_000 {
            send_json(
                &mut publ,
                serde_json::json!({"op": "pub", "topic": "t", "data": data, "id": published}),
            );
            assert_eq!(recv_json(&mut publ)["op"], "ack", "[{driver:?}]");
            published += 1;
        }
        assert_eq!(
            s.srv.stats().slow_disconnects,
            1,
            "[{driver:?}] {published} published"
        );
        eprintln!("[{driver:?}] disconnected after {published} messages of {MSG} B");
        // What it took: the 64 KiB bound plus what the kernel held, 2 x 16 KiB on the
        // server's side and the subscriber's small receive buffer. With the kernel's
        // autotuning the server's side alone can hold megabytes (hundreds of these
        // messages) before corecast's own bound sees any of it.
        assert!(
            published * MSG < 256 << 10,
            "[{driver:?}] {published} messages of {MSG} B before the disconnect"
        );
    }
}
