//! Shared helpers for integration tests: start a real server on an ephemeral loopback port
//! under each io driver, tungstenite clients, and (in `raw`, re-exported here) the raw
//! WebSocket client that the conformance suite and the raw-socket tests share.
#![allow(dead_code)]

mod raw;

#[allow(unused_imports)] // not every test binary uses the raw client
pub use raw::*;

use std::{
    io::Read,
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

/// Start the server `builder` describes, drained and joined when the result drops.
pub fn start(builder: corecast::server::ServerBuilder) -> TestServer {
    let server = builder.start().expect("server starts");
    let addr = server.local_addr();
    TestServer {
        server: Some(server),
        addr,
    }
}

/// Start an echo server with `config`.
pub fn start_echo(config: Config) -> TestServer {
    start(Server::builder(config).handler(|_| Echo))
}

/// A pub/sub server with its admin API on an ephemeral loopback port.
pub struct PubSubServer {
    /// The WebSocket server.
    pub srv: TestServer,
    /// Its pub/sub layer.
    pub svc: std::sync::Arc<corecast::pubsub::PubSubService>,
    /// The admin API.
    pub admin: corecast::admin::Admin,
}

/// Start the pub/sub server on `cfg` and its admin API, which requires `token` when given.
pub fn start_pubsub_admin(mut cfg: Config, token: Option<&str>) -> PubSubServer {
    use corecast::{admin::AdminState, pubsub::PubSubService};
    PubSubService::configure(&mut cfg);
    let svc = PubSubService::new(&cfg);
    let srv = start(svc.install(Server::builder(cfg)));
    let server = srv.server.as_ref().expect("started");
    let admin = corecast::admin::Admin::start(
        "127.0.0.1:0".parse().expect("address"),
        AdminState {
            pubsub: svc.clone(),
            server: server.shutdown_handle(),
            driver: server.driver(),
            max_body: 1 << 20,
            token: token.map(str::to_string),
        },
    )
    .expect("admin API starts");
    PubSubServer { srv, svc, admin }
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

// ----- reads that retry EINTR -----

/// `read`, retried when interrupted. With the uring driver a blocking read (with a timeout) in
/// the thread that started the server can fail once with EINTR: see
/// `start_on_uring_leaves_no_spurious_eintr_on_calling_thread` in tests/drain.rs.
pub fn read_some(s: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    loop {
        match s.read(buf) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            r => return r,
        }
    }
}

/// `WebSocket::read`, retried when the socket read was interrupted (tungstenite keeps its
/// state across such errors, as it does for timeouts).
#[allow(clippy::result_large_err)] // tungstenite's own error type
pub fn ws_read(ws: &mut Client) -> tungstenite::Result<tungstenite::Message> {
    loop {
        match ws.read() {
            Err(tungstenite::Error::Io(e)) if e.kind() == std::io::ErrorKind::Interrupted => {
                continue
            }
            r => return r,
        }
    }
}

// ----- tungstenite clients -----

/// A tungstenite client over a blocking std socket.
pub type Client = tungstenite::WebSocket<TcpStream>;

/// How long a client read may block before a test gives up on it.
pub const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Connect a tungstenite client to `addr` (path `/`), with a 10 s read timeout.
pub fn connect(addr: SocketAddr) -> Client {
    connect_with(addr, "/", tungstenite::protocol::WebSocketConfig::default())
}

/// Connect a tungstenite client to `path` on `addr` with `config`.
pub fn connect_with(
    addr: SocketAddr,
    path: &str,
    config: tungstenite::protocol::WebSocketConfig,
) -> Client {
    let stream = TcpStream::connect(addr).expect("tcp connect");
    stream.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
    stream.set_nodelay(true).unwrap();
    let url = format!("ws://{addr}{path}");
    let (ws, resp) = tungstenite::client::client_with_config(url.as_str(), stream, Some(config))
        .unwrap_or_else(|e| panic!("websocket handshake with {url} failed: {e}"));
    assert_eq!(resp.status().as_u16(), 101);
    ws
}

/// Read the next data message (text or binary), skipping pings and pongs.
pub fn read_data(ws: &mut Client) -> tungstenite::Message {
    loop {
        match ws_read(ws) {
            Ok(m @ (tungstenite::Message::Text(_) | tungstenite::Message::Binary(_))) => return m,
            Ok(tungstenite::Message::Ping(_) | tungstenite::Message::Pong(_)) => continue,
            Ok(other) => panic!("expected a data message, got {other:?}"),
            Err(e) => panic!("expected a data message, got error {e}"),
        }
    }
}

/// Read until the server's close frame arrives; returns its code and reason.
pub fn read_close(ws: &mut Client) -> (u16, String) {
    loop {
        match ws_read(ws) {
            Ok(tungstenite::Message::Close(Some(f))) => {
                return (u16::from(f.code), f.reason.as_str().to_owned())
            }
            Ok(tungstenite::Message::Close(None)) => return (1005, String::new()),
            Ok(tungstenite::Message::Ping(_) | tungstenite::Message::Pong(_)) => continue,
            Ok(other) => panic!("expected a close frame, got {other:?}"),
            Err(e) => panic!("expected a close frame, got error {e}"),
        }
    }
}

/// After the close handshake: keep reading until tungstenite reports the connection closed
/// (the server dropped TCP). Returns false on any other outcome.
pub fn finishes_closed(ws: &mut Client) -> bool {
    for _ in 0..100 {
        match ws_read(ws) {
            Err(tungstenite::Error::ConnectionClosed) => return true,
            Err(tungstenite::Error::AlreadyClosed) => return true,
            Err(tungstenite::Error::Protocol(
                tungstenite::error::ProtocolError::ResetWithoutClosingHandshake,
            )) => return false,
            Err(_) => return false,
            Ok(_) => continue,
        }
    }
    false
}

/// A port that was free a moment ago on 127.0.0.1 (for spawning the binary).
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// The driver's name as the `--driver` flag spells it.
pub fn driver_flag(driver: Driver) -> &'static str {
    match driver {
        Driver::Uring => "uring",
        Driver::Epoll => "epoll",
        Driver::Auto => "auto",
    }
}

/// Send `v` as a JSON text message.
pub fn send_json(ws: &mut Client, v: serde_json::Value) {
    ws.send(tungstenite::Message::text(v.to_string()))
        .expect("send");
}

/// The next data message, parsed as JSON text.
pub fn recv_json(ws: &mut Client) -> serde_json::Value {
    match read_data(ws) {
        tungstenite::Message::Text(t) => serde_json::from_str(t.as_str()).expect("JSON"),
        other => panic!("expected text, got {other:?}"),
    }
}
