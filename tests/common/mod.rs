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

/// A raw TCP connection that has completed the WebSocket handshake.
pub fn raw_ws(addr: SocketAddr) -> TcpStream {
    let (head, s) = send_upgrade(addr, &upgrade_request(addr, "/", ""));
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    s
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

// ----- raw frames -----

/// A frame read from the server, as it came on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawFrame {
    /// FIN bit.
    pub fin: bool,
    /// RSV bits (RSV1 = 0b100).
    pub rsv: u8,
    /// The 4-bit opcode.
    pub opcode: u8,
    /// Whether the MASK bit was set (a server must never set it).
    pub masked: bool,
    /// The payload.
    pub payload: Vec<u8>,
}

impl RawFrame {
    /// The close code and reason of a close frame (1005 when it has no payload).
    pub fn close_code(&self) -> (u16, String) {
        assert_eq!(self.opcode, 0x8, "not a close frame: {self:?}");
        if self.payload.len() < 2 {
            return (1005, String::new());
        }
        let code = u16::from_be_bytes([self.payload[0], self.payload[1]]);
        (
            code,
            String::from_utf8_lossy(&self.payload[2..]).into_owned(),
        )
    }
}

/// The mask raw tests put on client frames.
pub const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

/// Encode one masked client frame with any opcode (including reserved ones) and RSV bits.
pub fn client_frame(opcode: u8, fin: bool, rsv: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 14);
    out.push((u8::from(fin) << 7) | ((rsv & 0b111) << 4) | (opcode & 0x0f));
    let len = payload.len();
    if len < 126 {
        out.push(0x80 | len as u8);
    } else if len <= usize::from(u16::MAX) {
        out.push(0x80 | 126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(0x80 | 127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    out.extend_from_slice(&MASK);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ MASK[i % 4]));
    out
}

/// Encode one unmasked frame (which a client must never send).
pub fn unmasked_frame(opcode: u8, fin: bool, payload: &[u8]) -> Vec<u8> {
    assert!(payload.len() < 126);
    let mut out = vec![(u8::from(fin) << 7) | opcode, payload.len() as u8];
    out.extend_from_slice(payload);
    out
}

/// A masked client close frame with `code` and `reason`.
pub fn client_close(code: u16, reason: &str) -> Vec<u8> {
    let mut payload = code.to_be_bytes().to_vec();
    payload.extend_from_slice(reason.as_bytes());
    client_frame(0x8, true, 0, &payload)
}

/// Read one server frame; `None` when the server closed the stream before a frame started.
/// Panics on a read error (including the socket's read timeout) or a truncated frame.
pub fn read_frame(s: &mut TcpStream) -> Option<RawFrame> {
    let mut head = [0u8; 2];
    match read_some(s, &mut head[..1]) {
        Ok(0) => return None,
        Ok(_) => {}
        Err(e) => panic!("reading a frame: {e}"),
    }
    s.read_exact(&mut head[1..]).expect("frame header");
    let fin = head[0] & 0x80 != 0;
    let rsv = (head[0] >> 4) & 0b111;
    let opcode = head[0] & 0x0f;
    let masked = head[1] & 0x80 != 0;
    let len = match head[1] & 0x7f {
        126 => {
            let mut b = [0u8; 2];
            s.read_exact(&mut b).expect("16-bit length");
            u64::from(u16::from_be_bytes(b))
        }
        127 => {
            let mut b = [0u8; 8];
            s.read_exact(&mut b).expect("64-bit length");
            u64::from_be_bytes(b)
        }
        n => u64::from(n),
    };
    let mut mask = [0u8; 4];
    if masked {
        s.read_exact(&mut mask).expect("mask");
    }
    let mut payload = vec![0u8; usize::try_from(len).expect("frame length")];
    s.read_exact(&mut payload).expect("frame payload");
    if masked {
        payload
            .iter_mut()
            .enumerate()
            .for_each(|(i, b)| *b ^= mask[i % 4]);
    }
    Some(RawFrame {
        fin,
        rsv,
        opcode,
        masked,
        payload,
    })
}

/// Read frames until a close frame; pings and pongs are skipped, data frames are a failure.
pub fn read_close_frame(s: &mut TcpStream) -> (u16, String) {
    loop {
        let f = read_frame(s).expect("server closed TCP without a close frame");
        assert!(!f.masked, "server frames must not be masked: {f:?}");
        match f.opcode {
            0x8 => return f.close_code(),
            0x9 | 0xA => continue,
            _ => panic!("expected a close frame, got {f:?}"),
        }
    }
}

/// Whether the server closes the TCP stream (EOF or reset) within `within`; bytes that arrive
/// meanwhile are discarded.
pub fn closed_within(s: &mut TcpStream, within: Duration) -> bool {
    let end = Instant::now() + within;
    let mut buf = [0u8; 4096];
    loop {
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        s.set_read_timeout(Some(left)).unwrap();
        match read_some(s, &mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return false
            }
            Err(_) => return true, // reset
        }
    }
}

/// Send the raw bytes `req` on a new connection and read the whole answer until the server
/// closes. Returns (status, head, body).
pub fn http_exchange(addr: SocketAddr, req: &[u8]) -> (u16, String, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
    s.write_all(req).unwrap();
    let mut resp = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match read_some(&mut s, &mut buf) {
            Ok(0) => break,
            Ok(n) => resp.extend_from_slice(&buf[..n]),
            // A reset after the answer arrived still leaves the answer to check.
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset && !resp.is_empty() => break,
            Err(e) => panic!("reading the handshake answer: {e} (got so far: {resp:?})"),
        }
    }
    let text = String::from_utf8_lossy(&resp).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((text.as_str(), ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP status in {text:?}"));
    (status, head.to_owned(), body.to_owned())
}

/// A valid upgrade request for `path` with `extra` header lines (each ending in CRLF).
pub fn upgrade_request(addr: SocketAddr, path: &str, extra: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    )
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

/// Read an HTTP response head (through the blank line) byte by byte, leaving what follows.
pub fn read_http_head(s: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(
            read_some(s, &mut b).unwrap(),
            1,
            "server closed during the response head"
        );
        head.push(b[0]);
    }
    String::from_utf8(head).expect("response head is not UTF-8")
}

/// Open a TCP connection and send `req`; returns the response head and the stream.
pub fn send_upgrade(addr: SocketAddr, req: &str) -> (String, TcpStream) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
    s.write_all(req.as_bytes()).unwrap();
    (read_http_head(&mut s), s)
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
