//! Shared helpers for integration tests: start a real server on an ephemeral loopback port
//! under each io driver, and small raw-socket utilities.
#![allow(dead_code)]

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    time::{Duration, Instant},
};

use corecast::{
    config::Driver,
    proto::CloseCode,
    server::{ConnId, Ctx, Handler, Message, Server},
    Config,
};

/// The drivers to test: `CORECAST_TEST_DRIVERS=uring,epoll` (the default is both).
pub fn drivers() -> Vec<Driver> {
    let list = std::env::var("CORECAST_TEST_DRIVERS").unwrap_or_else(|_| "uring,epoll".into());
    list.split(',')
        .filter_map(|d| match d.trim() {
            "uring" => Some(Driver::Uring),
            "epoll" => Some(Driver::Epoll),
            "auto" => Some(Driver::Auto),
            "" => None,
            other => panic!("unknown driver {other:?} in CORECAST_TEST_DRIVERS"),
        })
        .collect()
}

/// A test configuration: loopback, port 0, two workers, the given driver.
pub fn test_config(driver: Driver) -> Config {
    Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        workers: 2,
        pin_workers: false,
        driver,
        ..Config::default()
    }
}

/// Echoes every message.
pub struct Echo;

impl Handler for Echo {
    fn on_message(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, msg: Message<'_>) {
        let r = match msg {
            Message::Text(t) => ctx.send_text(conn, t),
            Message::Binary(b) => ctx.send_binary(conn, b),
        };
        if r.is_err() {
            ctx.close(conn, CloseCode::TRY_AGAIN_LATER, "send buffer full");
        }
    }
}

/// A running in-process echo server, drained and joined on drop.
pub struct TestServer {
    pub server: Option<Server>,
    pub addr: SocketAddr,
}

impl TestServer {
    pub fn url(&self) -> String {
        format!("ws://{}/", self.addr)
    }

    pub fn stats(&self) -> corecast::server::Stats {
        self.server.as_ref().unwrap().stats()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(s) = self.server.take() {
            s.drain(Duration::ZERO);
            let _ = s.join();
        }
    }
}

/// Start an echo server with `config`.
pub fn start_echo(config: Config) -> TestServer {
    let server = Server::builder(config).handler(|_| Echo).start().expect("server starts");
    let addr = server.local_addr();
    TestServer { server: Some(server), addr }
}

/// Wait until `f` holds, polling every 10 ms, up to `timeout`.
pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + timeout;
    while Instant::now() < end {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    f()
}

/// A raw TCP connection that has completed the WebSocket handshake.
pub fn raw_ws(addr: SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET / HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    .unwrap();
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(s.read(&mut b).unwrap(), 1, "server closed during handshake");
        head.push(b[0]);
    }
    assert!(head.starts_with(b"HTTP/1.1 101"), "{}", String::from_utf8_lossy(&head));
    s
}
