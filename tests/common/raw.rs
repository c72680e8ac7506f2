//! The raw WebSocket client every integration test shares (the conformance suite's, and the
//! raw-socket helpers of the other tests).
//!
//! It speaks just enough RFC 6455 to drive the server: the upgrade handshake, masked client
//! frames (any opcode, RSV bits and mask, built byte by byte: well-formed and deliberately
//! broken ones alike), and strict parsing of server frames: a server frame must be unmasked,
//! must carry no RSV bits but those an extension allows, must use a defined opcode and must
//! encode its length in the minimal number of bytes (RFC 6455 5.2).
//!
//! [`RawClient`] carries a `ctx` (the driver and the case) into every assertion message, so a
//! failure under one driver says which one; the free functions on a bare `TcpStream` serve
//! tests that keep their own socket.

use std::{
    io::{BufReader, ErrorKind, Read, Write},
    net::{SocketAddr, TcpStream},
    time::{Duration, Instant},
};

use corecast::proto::OpCode;

use super::read_some;

/// The RFC 6455 4.2.2 example key and its accept value.
pub const RFC_KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
pub const RFC_ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

/// How long any single wait for the server may take before the test fails. Generous: the
/// box is small and noisy, and a pass never waits this long.
pub const TIMEOUT: Duration = Duration::from_secs(15);

/// Raw opcode values, including the reserved ones.
pub mod op {
    pub const CONT: u8 = 0x0;
    pub const TEXT: u8 = 0x1;
    pub const BINARY: u8 = 0x2;
    pub const CLOSE: u8 = 0x8;
    pub const PING: u8 = 0x9;
    pub const PONG: u8 = 0xA;
}

/// The RSV1 bit (permessage-deflate's "compressed"), as [`Frame::rsv`] holds it.
pub const RSV1: u8 = 0b100;

/// A frame received from the server (already checked to be unmasked and minimally encoded).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// FIN bit.
    pub fin: bool,
    /// RSV bits (RSV1 = 0b100).
    pub rsv: u8,
    /// The 4-bit opcode.
    pub opcode: u8,
    /// The payload.
    pub payload: Vec<u8>,
    /// Length of the header as sent by the server (2, 4 or 10).
    pub header_len: usize,
}

impl Frame {
    /// The close code and reason of a close frame (`None` for an empty payload).
    pub fn close_parts(&self) -> Option<(u16, Vec<u8>)> {
        match self.payload.as_slice() {
            [] => None,
            [hi, lo, rest @ ..] => Some((u16::from_be_bytes([*hi, *lo]), rest.to_vec())),
            [_] => panic!("server sent a close frame with a 1-byte payload"),
        }
    }

    /// The close code and reason of a close frame (1005 when it has no payload).
    pub fn close_code(&self) -> (u16, String) {
        assert_eq!(
            self.opcode,
            op::CLOSE,
            "not a close frame: {}",
            describe(self)
        );
        match self.close_parts() {
            None => (1005, String::new()),
            Some((code, reason)) => (code, String::from_utf8_lossy(&reason).into_owned()),
        }
    }
}

fn to_opcode(raw: u8) -> Option<OpCode> {
    OpCode::from_u8(raw)
}

// ----- building client frames -----

/// The mask [`client_frame`] puts on every frame.
pub const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

/// A frame built by hand, byte by byte: any opcode (reserved ones too), any RSV bits, masked
/// or not. The length uses the minimal encoding.
pub fn raw_frame(raw_op: u8, fin: bool, rsv: u8, mask: Option<[u8; 4]>, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 14);
    out.push((u8::from(fin) << 7) | ((rsv & 0b111) << 4) | (raw_op & 0x0F));
    let mbit = if mask.is_some() { 0x80 } else { 0 };
    let len = payload.len();
    if len < 126 {
        out.push(mbit | len as u8);
    } else if len <= 0xFFFF {
        out.push(mbit | 126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(mbit | 127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    match mask {
        Some(key) => {
            out.extend_from_slice(&key);
            out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
        }
        None => out.extend_from_slice(payload),
    }
    out
}

/// A well-formed masked client frame (`raw_op` must be a defined opcode).
pub fn frame(raw_op: u8, fin: bool, payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
    assert!(
        to_opcode(raw_op).is_some(),
        "frame(): use raw_frame() for reserved opcodes"
    );
    raw_frame(raw_op, fin, 0, Some(mask), payload)
}

/// A masked client frame with [`MASK`]: any opcode (reserved ones too) and RSV bits.
pub fn client_frame(raw_op: u8, fin: bool, rsv: u8, payload: &[u8]) -> Vec<u8> {
    raw_frame(raw_op, fin, rsv, Some(MASK), payload)
}

/// A close payload: code and reason.
pub fn close_payload(code: u16, reason: &[u8]) -> Vec<u8> {
    let mut p = code.to_be_bytes().to_vec();
    p.extend_from_slice(reason);
    p
}

/// A masked client close frame with `code` and `reason`.
pub fn client_close(code: u16, reason: &str) -> Vec<u8> {
    client_frame(op::CLOSE, true, 0, &close_payload(code, reason.as_bytes()))
}

// ----- reading server frames -----

/// Fill `buf` from `r`; a short read fails the test (the server closed inside a frame).
fn read_part(r: &mut impl Read, buf: &mut [u8], ctx: &str, what: &str) {
    if let Err(e) = r.read_exact(buf) {
        if e.kind() == ErrorKind::UnexpectedEof {
            panic!("[{ctx}] connection closed inside a frame (reading {what})");
        }
        panic!("[{ctx}] reading {what}: {e}");
    }
}

/// Read and check one server frame from `r`, consuming exactly its bytes. `Ok(None)` when the
/// server closed the stream before a frame started, `Err` when that first read failed (a
/// timeout, a reset); a frame cut short or breaking RFC 6455 5.2 fails the test.
/// `allowed_rsv` holds the RSV bits a negotiated extension gives a meaning (0 for none).
pub fn read_frame_from(
    r: &mut impl Read,
    ctx: &str,
    allowed_rsv: u8,
) -> std::io::Result<Option<Frame>> {
    let mut b = [0u8; 10];
    if read_some(r, &mut b[..1])? == 0 {
        return Ok(None);
    }
    read_part(r, &mut b[1..2], ctx, "the frame header");
    let fin = b[0] & 0x80 != 0;
    let rsv = (b[0] >> 4) & 0b111;
    let opcode = b[0] & 0x0F;
    assert_eq!(
        b[1] & 0x80,
        0,
        "[{ctx}] server frame is masked (RFC 6455 5.1): header {:02x?}",
        &b[..2]
    );
    assert_eq!(
        rsv & !allowed_rsv,
        0,
        "[{ctx}] server frame has RSV bits {rsv:#05b}"
    );
    assert!(
        to_opcode(opcode).is_some(),
        "[{ctx}] server frame has reserved opcode {opcode:#x}"
    );
    let (len, header_len) = match b[1] & 0x7F {
        126 => {
            read_part(r, &mut b[2..4], ctx, "the 16-bit length");
            let len = u64::from(u16::from_be_bytes([b[2], b[3]]));
            assert!(len >= 126, "[{ctx}] non-minimal 16-bit length {len}");
            (len, 4)
        }
        127 => {
            read_part(r, &mut b[2..10], ctx, "the 64-bit length");
            let len = u64::from_be_bytes(b[2..10].try_into().unwrap());
            assert!(len > 0xFFFF, "[{ctx}] non-minimal 64-bit length {len}");
            assert_eq!(len >> 63, 0, "[{ctx}] 64-bit length with the MSB set");
            (len, 10)
        }
        n => (u64::from(n), 2),
    };
    let len = usize::try_from(len).unwrap();
    if to_opcode(opcode).is_some_and(|o| o.is_control()) {
        assert!(fin, "[{ctx}] fragmented control frame from the server");
        assert!(
            len <= 125,
            "[{ctx}] control frame of {len} bytes from the server"
        );
    }
    let mut payload = vec![0u8; len];
    read_part(r, &mut payload, ctx, "the frame payload");
    Ok(Some(Frame {
        fin,
        rsv,
        opcode,
        payload,
        header_len,
    }))
}

/// Read frames from `r` until a close frame arrives and return it; frames with an opcode in
/// `skip` are passed over, any other frame (or the end of the stream) fails the test.
pub fn read_close_from(r: &mut impl Read, ctx: &str, skip: &[u8]) -> Frame {
    loop {
        let f = match read_frame_from(r, ctx, 0) {
            Ok(Some(f)) => f,
            Ok(None) => panic!("[{ctx}] server closed TCP without sending a close frame"),
            Err(e) => panic!("[{ctx}] waiting for a close frame: {e}"),
        };
        if f.opcode == op::CLOSE {
            return f;
        }
        assert!(
            skip.contains(&f.opcode),
            "[{ctx}] expected a close frame, got {}",
            describe(&f)
        );
    }
}

/// Read one server frame from a bare socket (no RSV bits allowed); `None` when the server
/// closed the stream before a frame started. Fails the test on a read error (including the
/// socket's read timeout), a truncated frame or a frame that breaks RFC 6455 5.2.
pub fn read_frame(s: &mut TcpStream) -> Option<Frame> {
    read_frame_rsv(s, 0)
}

/// [`read_frame`] with the RSV bits a negotiated extension allows (`RSV1` for
/// permessage-deflate).
pub fn read_frame_rsv(s: &mut TcpStream, allowed_rsv: u8) -> Option<Frame> {
    read_frame_from(s, "raw socket", allowed_rsv)
        .unwrap_or_else(|e| panic!("[raw socket] reading a frame: {e}"))
}

/// Read frames from a bare socket until a close frame; pings and pongs are skipped, data
/// frames are a failure. Returns the close code (1005 for none) and reason.
pub fn read_close_frame(s: &mut TcpStream) -> (u16, String) {
    read_close_from(s, "raw socket", &[op::PING, op::PONG]).close_code()
}

// ----- the opening handshake -----

/// The server's answer to an upgrade request.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    pub status: u16,
    /// Header names lower-cased, values as sent (trimmed).
    pub headers: Vec<(String, String)>,
    /// The head as sent, through the blank line.
    pub head: String,
    /// Bytes after the head: the body of a rejection, or the bytes that arrived with a 101.
    pub rest: Vec<u8>,
}

impl HttpResponse {
    /// The first header with this (lower-case) name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every header with this (lower-case) name.
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

/// A valid upgrade request for `path` on `addr` with the RFC key and `extra` header lines
/// (each ending in `\r\n`).
pub fn upgrade_request(addr: SocketAddr, path: &str, extra: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {RFC_KEY}\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    )
}

/// Connect a plain TCP socket with the raw client's timeouts.
pub fn tcp(addr: SocketAddr, ctx: &str) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap_or_else(|e| panic!("[{ctx}] connect {addr}: {e}"));
    s.set_read_timeout(Some(TIMEOUT)).unwrap();
    s.set_write_timeout(Some(TIMEOUT)).unwrap();
    s.set_nodelay(true).unwrap();
    s
}

/// Read an HTTP response head from `r` byte by byte, leaving what follows unread (`rest` is
/// empty), and parse it; a head that is not HTTP/1.1 or does not parse fails the test.
pub fn read_http_head(r: &mut impl Read, ctx: &str) -> HttpResponse {
    let mut buf = Vec::new();
    let mut b = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        match read_some(r, &mut b) {
            Ok(0) => panic!(
                "[{ctx}] server closed before the end of the response head: {:?}",
                String::from_utf8_lossy(&buf)
            ),
            Ok(_) => buf.push(b[0]),
            Err(e) => panic!(
                "[{ctx}] reading the response head: {e} (got {:?})",
                String::from_utf8_lossy(&buf)
            ),
        }
    }
    let head =
        String::from_utf8(buf).unwrap_or_else(|_| panic!("[{ctx}] response head is not UTF-8"));
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap();
    let mut parts = status_line.splitn(3, ' ');
    assert_eq!(
        parts.next(),
        Some("HTTP/1.1"),
        "[{ctx}] status line {status_line:?}"
    );
    let status: u16 = parts
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("[{ctx}] bad status line {status_line:?}"));
    let headers = lines
        .filter(|l| !l.is_empty())
        .map(|l| {
            let (n, v) = l
                .split_once(':')
                .unwrap_or_else(|| panic!("[{ctx}] bad header line {l:?}"));
            (n.trim().to_ascii_lowercase(), v.trim().to_string())
        })
        .collect();
    HttpResponse {
        status,
        headers,
        head,
        rest: Vec::new(),
    }
}

/// Send `request` on a fresh connection and read the whole answer until the server closes
/// the connection (a rejection must end with the server closing it); `rest` is the body.
pub fn http_reject(addr: SocketAddr, request: &[u8], ctx: &str) -> HttpResponse {
    let mut s = tcp(addr, ctx);
    s.write_all(request)
        .unwrap_or_else(|e| panic!("[{ctx}] writing the request: {e}"));
    let mut resp = read_http_head(&mut s, ctx);
    let deadline = Instant::now() + TIMEOUT;
    let mut chunk = [0u8; 4096];
    loop {
        assert!(
            Instant::now() < deadline,
            "[{ctx}] server did not close after status {}",
            resp.status
        );
        match read_some(&mut s, &mut chunk) {
            Ok(0) => break,
            Ok(n) => resp.rest.extend_from_slice(&chunk[..n]),
            // A reset after the full answer also ends the connection.
            Err(e) if e.kind() == ErrorKind::ConnectionReset => break,
            Err(e) => panic!(
                "[{ctx}] server did not close after status {}: {e}",
                resp.status
            ),
        }
    }
    resp
}

/// [`http_reject`] as (status, head, body), for tests that compare strings.
pub fn http_exchange(addr: SocketAddr, request: &[u8]) -> (u16, String, String) {
    let resp = http_reject(addr, request, "http exchange");
    let body = String::from_utf8_lossy(&resp.rest).into_owned();
    (resp.status, resp.head, body)
}

/// Open a TCP connection and send the upgrade request `req`; returns the response head and
/// the stream, positioned right after the head.
pub fn send_upgrade(addr: SocketAddr, req: &str) -> (String, TcpStream) {
    let mut s = tcp(addr, "upgrade");
    s.write_all(req.as_bytes())
        .unwrap_or_else(|e| panic!("[upgrade] writing the request: {e}"));
    (read_http_head(&mut s, "upgrade").head, s)
}

/// A raw TCP connection that has completed the WebSocket handshake.
pub fn raw_ws(addr: SocketAddr) -> TcpStream {
    let (head, s) = send_upgrade(addr, &upgrade_request(addr, "/", ""));
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    s
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
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return false
            }
            Err(_) => return true, // reset
        }
    }
}

/// A connected, upgraded WebSocket client.
pub struct RawClient {
    /// The socket, for writes (frames are read through `reader`, a clone of it).
    pub stream: TcpStream,
    /// Driver and case, for failure messages.
    pub ctx: String,
    /// Reads the socket in large chunks; frames are parsed out of its buffer.
    reader: BufReader<TcpStream>,
    /// State of the masking-key generator: every frame gets a different key.
    seed: u32,
    /// The server's 101 answer.
    pub response: HttpResponse,
}

impl RawClient {
    /// Connect and upgrade with a standard request.
    pub fn connect(addr: SocketAddr, ctx: impl Into<String>) -> RawClient {
        RawClient::connect_with(addr, ctx, "")
    }

    /// Connect and upgrade with extra header lines (each ending in `\r\n`).
    pub fn connect_with(addr: SocketAddr, ctx: impl Into<String>, extra: &str) -> RawClient {
        let ctx = ctx.into();
        RawClient::connect_raw(
            addr,
            ctx,
            upgrade_request(addr, "/chat", extra).as_bytes(),
            &[],
        )
    }

    /// Send `request` (a complete upgrade request) followed by `pipelined` bytes in one
    /// write, then expect a valid 101 for the RFC key.
    pub fn connect_raw(
        addr: SocketAddr,
        ctx: String,
        request: &[u8],
        pipelined: &[u8],
    ) -> RawClient {
        let mut stream = tcp(addr, &ctx);
        let mut bytes = request.to_vec();
        bytes.extend_from_slice(pipelined);
        stream
            .write_all(&bytes)
            .unwrap_or_else(|e| panic!("[{ctx}] writing the request: {e}"));
        let mut reader =
            BufReader::with_capacity(256 * 1024, stream.try_clone().expect("clone the socket"));
        let mut response = read_http_head(&mut reader, &ctx);
        // Whatever came in the same reads as the head (frames still to be parsed).
        response.rest = reader.buffer().to_vec();
        assert_eq!(
            response.status, 101,
            "[{ctx}] expected 101, got {response:?}"
        );
        let upgrade = response.header("upgrade").unwrap_or_default();
        assert!(
            upgrade.eq_ignore_ascii_case("websocket"),
            "[{ctx}] Upgrade header: {response:?}"
        );
        let connection = response.header("connection").unwrap_or_default();
        assert!(
            connection
                .split(',')
                .any(|t| t.trim().eq_ignore_ascii_case("upgrade")),
            "[{ctx}] Connection header: {response:?}"
        );
        assert_eq!(
            response.header("sec-websocket-accept"),
            Some(RFC_ACCEPT),
            "[{ctx}] accept key"
        );
        RawClient {
            stream,
            ctx,
            reader,
            seed: 0x9E37_79B9,
            response,
        }
    }

    /// A fresh masking key; never all zero, so a server that forgets to unmask is caught.
    pub fn next_mask(&mut self) -> [u8; 4] {
        // xorshift32
        let mut x = self.seed;
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        self.seed = x;
        let mut m = x.to_be_bytes();
        if m.iter().all(|&b| b == 0) {
            m = [1, 2, 3, 4];
        }
        m
    }

    /// Write raw bytes.
    pub fn send_raw(&mut self, bytes: &[u8]) {
        let ctx = &self.ctx;
        self.stream
            .write_all(bytes)
            .unwrap_or_else(|e| panic!("[{ctx}] write of {} bytes failed: {e}", bytes.len()));
    }

    /// Write raw bytes in chops of `chop` bytes, one write each.
    pub fn send_chopped(&mut self, bytes: &[u8], chop: usize) {
        for c in bytes.chunks(chop.max(1)) {
            self.send_raw(c);
        }
    }

    /// Write `bytes` from another thread (through a clone of the socket), so that the test
    /// can read the echoes while the server is still receiving: a server that stops reading
    /// while its send queue is full must not deadlock the test.
    pub fn send_in_background(&self, bytes: Vec<u8>) -> std::thread::JoinHandle<()> {
        let mut s = self.stream.try_clone().expect("clone the socket");
        let ctx = self.ctx.clone();
        std::thread::spawn(move || {
            s.write_all(&bytes).unwrap_or_else(|e| {
                panic!("[{ctx}] background write of {} bytes: {e}", bytes.len())
            });
        })
    }

    /// Build (not send) a masked frame with a fresh key.
    pub fn build(&mut self, raw_op: u8, fin: bool, payload: &[u8]) -> Vec<u8> {
        let mask = self.next_mask();
        frame(raw_op, fin, payload, mask)
    }

    /// Build (not send) a masked frame with arbitrary opcode and RSV bits.
    pub fn build_raw(&mut self, raw_op: u8, fin: bool, rsv: u8, payload: &[u8]) -> Vec<u8> {
        let mask = self.next_mask();
        raw_frame(raw_op, fin, rsv, Some(mask), payload)
    }

    /// Send one masked frame.
    pub fn send(&mut self, raw_op: u8, fin: bool, payload: &[u8]) {
        let f = self.build(raw_op, fin, payload);
        self.send_raw(&f);
    }

    pub fn send_text(&mut self, text: &str) {
        self.send(op::TEXT, true, text.as_bytes());
    }

    pub fn send_binary(&mut self, data: &[u8]) {
        self.send(op::BINARY, true, data);
    }

    /// Send a close frame with `code` and `reason`.
    pub fn send_close(&mut self, code: u16, reason: &[u8]) {
        self.send(op::CLOSE, true, &close_payload(code, reason));
    }

    /// Read the next frame; `Ok(None)` when the server closed the connection first.
    pub fn try_read_frame(&mut self) -> std::io::Result<Option<Frame>> {
        read_frame_from(&mut self.reader, &self.ctx, 0)
    }

    /// Read the next frame; fails the test on end of stream, error or timeout.
    pub fn read_frame(&mut self) -> Frame {
        match self.try_read_frame() {
            Ok(Some(f)) => f,
            Ok(None) => panic!(
                "[{}] server closed the connection, expected a frame",
                self.ctx
            ),
            Err(e) => panic!("[{}] reading a frame: {e}", self.ctx),
        }
    }

    /// Read a complete message (reassembling fragments); control frames in between fail.
    pub fn read_message(&mut self) -> (u8, Vec<u8>) {
        let first = self.read_frame();
        assert!(
            first.opcode == op::TEXT || first.opcode == op::BINARY,
            "[{}] expected a data frame, got {}",
            self.ctx,
            describe(&first)
        );
        let mut data = first.payload;
        let mut fin = first.fin;
        while !fin {
            let f = self.read_frame();
            assert_eq!(
                f.opcode,
                op::CONT,
                "[{}] expected a continuation, got {}",
                self.ctx,
                describe(&f)
            );
            data.extend_from_slice(&f.payload);
            fin = f.fin;
        }
        (first.opcode, data)
    }

    /// Expect a text message equal to `want`.
    pub fn expect_text(&mut self, want: &str) {
        let (opcode, data) = self.read_message();
        assert_eq!(opcode, op::TEXT, "[{}] expected text", self.ctx);
        if data != want.as_bytes() {
            panic!(
                "[{}] text echo differs: got {} bytes {:?}..., want {} bytes {:?}...",
                self.ctx,
                data.len(),
                String::from_utf8_lossy(&data[..data.len().min(64)]),
                want.len(),
                &want[..want.floor_char_boundary_compat(64)]
            );
        }
    }

    /// Expect a text message with these exact bytes (which must be valid UTF-8).
    pub fn expect_text_bytes(&mut self, want: &[u8]) {
        self.expect_text(std::str::from_utf8(want).expect("expected text is UTF-8"));
    }

    /// Expect a binary message equal to `want`.
    pub fn expect_binary(&mut self, want: &[u8]) {
        let (opcode, data) = self.read_message();
        assert_eq!(opcode, op::BINARY, "[{}] expected binary", self.ctx);
        if data != want {
            let at = data.iter().zip(want).position(|(a, b)| a != b);
            panic!(
                "[{}] binary echo differs: got {} bytes, want {} bytes, first difference at {at:?}",
                self.ctx,
                data.len(),
                want.len()
            );
        }
    }

    /// Expect a pong carrying exactly `payload`.
    pub fn expect_pong(&mut self, payload: &[u8]) {
        let f = self.read_frame();
        assert_eq!(
            f.opcode,
            op::PONG,
            "[{}] expected a pong, got {}",
            self.ctx,
            describe(&f)
        );
        assert_eq!(f.payload, payload, "[{}] pong payload", self.ctx);
    }

    /// Read the next frame, which must be a close frame, and return it (the TCP connection
    /// is not checked).
    pub fn read_close_frame(&mut self) -> Frame {
        self.read_close(false)
    }

    /// Read frames until a close frame arrives, skipping data frames (which a server may or
    /// may not send before it), and return it.
    pub fn read_close_after_data(&mut self) -> Frame {
        self.read_close(true)
    }

    /// Read frames until a close frame arrives (anything else before it fails the test
    /// unless `skip_data`), and return it.
    fn read_close(&mut self, skip_data: bool) -> Frame {
        let skip: &[u8] = if skip_data {
            &[op::TEXT, op::BINARY, op::CONT]
        } else {
            &[]
        };
        read_close_from(&mut self.reader, &self.ctx, skip)
    }

    /// Expect the server to close with `code` (any reason, which must be UTF-8), then to
    /// close the TCP connection within the timeout. Returns the reason.
    pub fn expect_close(&mut self, code: u16) -> String {
        let f = self.read_close(false);
        self.check_close_code(&f, &[code])
    }

    /// Like [`RawClient::expect_close`], accepting any of `codes`; returns the code.
    pub fn expect_close_any(&mut self, codes: &[u16]) -> u16 {
        let f = self.read_close(false);
        self.check_close_code(&f, codes);
        f.close_parts().unwrap().0
    }

    fn check_close_code(&mut self, f: &Frame, codes: &[u16]) -> String {
        let Some((got, reason)) = f.close_parts() else {
            panic!(
                "[{}] expected close {codes:?}, got an empty close",
                self.ctx
            );
        };
        assert!(
            codes.contains(&got),
            "[{}] expected close {codes:?}, got {got} {:?}",
            self.ctx,
            String::from_utf8_lossy(&reason)
        );
        let reason = String::from_utf8(reason)
            .unwrap_or_else(|_| panic!("[{}] close reason is not UTF-8", self.ctx));
        self.expect_tcp_closed();
        reason
    }

    /// Expect a close frame echoing `code` (or an empty close for `None`), then the server
    /// closing TCP.
    pub fn expect_close_echo(&mut self, code: Option<u16>) {
        let f = self.read_close(false);
        let got = f.close_parts().map(|(c, _)| c);
        assert_eq!(got, code, "[{}] close echo code", self.ctx);
        if let Some((_, reason)) = f.close_parts() {
            assert!(
                std::str::from_utf8(&reason).is_ok(),
                "[{}] close reason is not UTF-8",
                self.ctx
            );
        }
        self.expect_tcp_closed();
    }

    /// Expect the server to close the TCP connection (read returns 0) within the timeout,
    /// with no further frame before it.
    pub fn expect_tcp_closed(&mut self) {
        assert!(
            self.reader.buffer().is_empty(),
            "[{}] {} unexpected bytes after the close frame",
            self.ctx,
            self.reader.buffer().len()
        );
        let deadline = Instant::now() + TIMEOUT;
        let mut chunk = [0u8; 4096];
        loop {
            assert!(
                Instant::now() < deadline,
                "[{}] server did not close TCP",
                self.ctx
            );
            match self.reader.read(&mut chunk) {
                Ok(0) => return,
                Ok(n) => panic!(
                    "[{}] {n} bytes after the close frame: {:02x?}",
                    self.ctx,
                    &chunk[..n.min(16)]
                ),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => panic!(
                    "[{}] server did not close TCP after its close frame: {e}",
                    self.ctx
                ),
            }
        }
    }

    /// Assert that nothing arrives within `quiet` (the connection stays open and silent).
    pub fn expect_silence(&mut self, quiet: Duration) {
        assert!(
            self.reader.buffer().is_empty(),
            "[{}] unexpected buffered bytes",
            self.ctx
        );
        self.stream.set_read_timeout(Some(quiet)).unwrap();
        let mut b = [0u8; 64];
        let r = self.reader.read(&mut b);
        self.stream.set_read_timeout(Some(TIMEOUT)).unwrap();
        match r {
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Ok(0) => panic!("[{}] server closed the connection", self.ctx),
            Ok(n) => panic!("[{}] unexpected {n} bytes: {:02x?}", self.ctx, &b[..n]),
            Err(e) => panic!("[{}] unexpected error {e}", self.ctx),
        }
    }

    /// A clean client-initiated close: send 1000, expect it echoed and TCP closed.
    pub fn close_normally(mut self) {
        self.send_close(1000, b"");
        self.expect_close_echo(Some(1000));
    }
}

/// One-line description of a frame for failure messages.
pub fn describe(f: &Frame) -> String {
    let name = match f.opcode {
        op::CONT => "continuation",
        op::TEXT => "text",
        op::BINARY => "binary",
        op::CLOSE => "close",
        op::PING => "ping",
        op::PONG => "pong",
        _ => "reserved",
    };
    let shown = &f.payload[..f.payload.len().min(32)];
    format!(
        "{name} frame (fin={}, {} bytes: {:02x?}{})",
        f.fin,
        f.payload.len(),
        shown,
        if f.payload.len() > 32 { "..." } else { "" }
    )
}

/// `str::floor_char_boundary` is unstable; a small stand-in for failure messages.
trait FloorCharBoundary {
    fn floor_char_boundary_compat(&self, i: usize) -> usize;
}

impl FloorCharBoundary for str {
    fn floor_char_boundary_compat(&self, i: usize) -> usize {
        let mut i = i.min(self.len());
        while !self.is_char_boundary(i) {
            i -= 1;
        }
        i
    }
}
