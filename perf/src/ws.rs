//! The client side of RFC 6455, as much as a load generator needs: the upgrade request and the
//! check of its answer, a writer of masked frames, and an incremental reader of server frames.
//!
//! Both directions have a fast path for small frames: a frame is encoded straight into the
//! connection's output buffer and masked eight bytes at a time, and a complete frame is handed
//! out as a slice of the input buffer without a copy. Only fragmented messages are copied (to be
//! joined).

use std::io::{self, Read, Write};

use base64::Engine as _;
use sha1::{Digest, Sha1};

use crate::clock::Rng;

/// Opcode of a continuation frame.
pub const OP_CONT: u8 = 0x0;
/// Opcode of a text frame.
pub const OP_TEXT: u8 = 0x1;
/// Opcode of a binary frame.
pub const OP_BINARY: u8 = 0x2;
/// Opcode of a close frame.
pub const OP_CLOSE: u8 = 0x8;
/// Opcode of a ping frame.
pub const OP_PING: u8 = 0x9;
/// Opcode of a pong frame.
pub const OP_PONG: u8 = 0xA;

const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
/// Largest response head accepted in the handshake.
pub const MAX_RESPONSE_HEAD: usize = 16 * 1024;
/// Largest message the reader joins or buffers.
pub const MAX_MESSAGE: u64 = 64 * 1024 * 1024;

/// A fresh `Sec-WebSocket-Key`: 16 random bytes in base64.
pub fn new_key(rng: &mut Rng) -> String {
    let mut raw = [0u8; 16];
    rng.fill(&mut raw);
    base64::engine::general_purpose::STANDARD.encode(raw)
}

/// The `Sec-WebSocket-Accept` a server must answer to `key`.
pub fn accept_for(key: &str) -> String {
    let mut h = Sha1::new();
    h.update(key.as_bytes());
    h.update(GUID.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(h.finalize())
}

/// The HTTP/1.1 upgrade request.
pub fn request(host: &str, path: &str, key: &str, protocol: Option<&str>) -> Vec<u8> {
    let mut r = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
    );
    if let Some(p) = protocol {
        r.push_str("Sec-WebSocket-Protocol: ");
        r.push_str(p);
        r.push_str("\r\n");
    }
    r.push_str("\r\n");
    r.into_bytes()
}

/// Why an upgrade was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    /// The response head does not parse as HTTP/1.1.
    #[error("malformed response head: {0}")]
    Malformed(httparse::Error),
    /// The server answered with another status than 101.
    #[error("server answered {0} instead of 101")]
    Status(u16),
    /// `Sec-WebSocket-Accept` is missing or does not match the key.
    #[error("Sec-WebSocket-Accept missing or wrong")]
    Accept,
    /// The server selected no subprotocol, or another one than offered.
    #[error("server selected subprotocol {0:?}, not the one offered")]
    Protocol(Option<String>),
    /// The head is longer than [`MAX_RESPONSE_HEAD`].
    #[error("response head over {MAX_RESPONSE_HEAD} bytes")]
    TooLong,
}

/// Checks a response head in `buf`: `Ok(None)` while it is incomplete, `Ok(Some(n))` with the
/// head's length once it is complete and accepts the upgrade.
pub fn parse_response(
    buf: &[u8],
    accept: &str,
    protocol: Option<&str>,
) -> Result<Option<usize>, HandshakeError> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut resp = httparse::Response::new(&mut headers);
    let len = match resp.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() > MAX_RESPONSE_HEAD => {
            return Err(HandshakeError::TooLong)
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(HandshakeError::Malformed(e)),
    };
    let code = resp.code.unwrap_or(0);
    if code != 101 {
        return Err(HandshakeError::Status(code));
    }
    let header = |name: &str| {
        resp.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value)
    };
    if header("sec-websocket-accept").map(<[u8]>::trim_ascii) != Some(accept.as_bytes()) {
        return Err(HandshakeError::Accept);
    }
    if let Some(want) = protocol {
        let got = header("sec-websocket-protocol").map(|v| v.trim_ascii());
        // The offer may list several names; the server must pick one of them.
        let offered = |g: &[u8]| want.split(',').any(|w| w.trim().as_bytes() == g);
        match got {
            Some(g) if offered(g) => {}
            other => {
                return Err(HandshakeError::Protocol(
                    other.map(|g| String::from_utf8_lossy(g).into_owned()),
                ))
            }
        }
    }
    Ok(Some(len))
}

/// XORs `buf` with the repeating 4-byte `mask`, eight bytes at a time.
#[inline]
pub fn apply_mask(buf: &mut [u8], mask: [u8; 4]) {
    let m = u64::from_ne_bytes([
        mask[0], mask[1], mask[2], mask[3], mask[0], mask[1], mask[2], mask[3],
    ]);
    let mut chunks = buf.chunks_exact_mut(8);
    for c in &mut chunks {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        c.copy_from_slice(&(u64::from_ne_bytes(w) ^ m).to_ne_bytes());
    }
    // The remainder starts at a multiple of 8, so the mask phase is 0 again.
    for (i, b) in chunks.into_remainder().iter_mut().enumerate() {
        *b ^= mask[i & 3];
    }
}

/// Appends a frame header (FIN set, MASK set) for a payload of `len` bytes.
#[inline]
pub fn put_header(out: &mut Vec<u8>, opcode: u8, len: usize, mask: [u8; 4]) {
    out.push(0x80 | opcode);
    if len < 126 {
        out.push(0x80 | len as u8);
    } else if len <= 0xFFFF {
        out.push(0x80 | 126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(0x80 | 127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    out.extend_from_slice(&mask);
}

/// Appends one complete masked frame.
pub fn encode_frame(out: &mut Vec<u8>, opcode: u8, payload: &[u8], mask: [u8; 4]) {
    put_header(out, opcode, payload.len(), mask);
    let start = out.len();
    out.extend_from_slice(payload);
    apply_mask(&mut out[start..], mask);
}

/// A connection's outgoing bytes: frames are encoded here and written out by [`Writer::flush`].
#[derive(Debug)]
pub struct Writer {
    buf: Vec<u8>,
    pos: usize,
    rng: Rng,
}

impl Writer {
    /// An empty writer; `seed` seeds the masks.
    pub fn new(seed: u64) -> Self {
        Writer {
            buf: Vec::new(),
            pos: 0,
            rng: Rng::new(seed),
        }
    }

    fn make_room(&mut self) {
        if self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
        } else if self.pos > 64 * 1024 && self.pos * 2 > self.buf.len() {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
    }

    /// Queues raw bytes (the upgrade request).
    pub fn raw(&mut self, bytes: &[u8]) {
        self.make_room();
        self.buf.extend_from_slice(bytes);
    }

    /// Queues one masked frame.
    #[inline]
    pub fn frame(&mut self, opcode: u8, payload: &[u8]) {
        self.make_room();
        let mask = (self.rng.next_u64() as u32).to_ne_bytes();
        encode_frame(&mut self.buf, opcode, payload, mask);
    }

    /// Queues a close frame with a status code and reason.
    pub fn close(&mut self, code: u16, reason: &str) {
        let mut p = Vec::with_capacity(2 + reason.len());
        p.extend_from_slice(&code.to_be_bytes());
        p.extend_from_slice(reason.as_bytes());
        p.truncate(125);
        self.frame(OP_CLOSE, &p);
    }

    /// Bytes queued and not yet written.
    #[inline]
    pub fn pending(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// Writes as much as the socket takes. `Ok(true)` when nothing is left, `Ok(false)` when
    /// the socket would block; other errors are returned.
    pub fn flush<W: Write>(&mut self, w: &mut W) -> io::Result<bool> {
        while self.pos < self.buf.len() {
            match w.write(&self.buf[self.pos..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => self.pos += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        self.buf.clear();
        self.pos = 0;
        Ok(true)
    }
}

/// A protocol violation in a server frame.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WsError {
    /// RSV1-3 set without an extension that defines them.
    #[error("reserved bits set in a frame header")]
    Reserved,
    /// A server frame carries a mask (RFC 6455 5.1 forbids it).
    #[error("server frame is masked")]
    Masked,
    /// An opcode RFC 6455 does not define.
    #[error("unknown opcode {0:#x}")]
    Opcode(u8),
    /// A control frame over 125 bytes or fragmented.
    #[error("control frame fragmented or over 125 bytes ({0} bytes)")]
    BadControl(u64),
    /// A continuation frame with no message to continue.
    #[error("continuation frame without a fragmented message")]
    Continuation,
    /// A new data frame while a fragmented message is open.
    #[error("new data frame inside a fragmented message")]
    Interleaved,
    /// A message over [`MAX_MESSAGE`].
    #[error("message of {0} bytes over the limit")]
    TooLarge(u64),
    /// A close frame whose payload is one byte.
    #[error("close frame with a 1-byte payload")]
    BadClose,
}

/// One message or control frame from the server, borrowed from the reader's buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum Message<'a> {
    /// A text message.
    Text(&'a [u8]),
    /// A binary message.
    Binary(&'a [u8]),
    /// A ping, with its payload.
    Ping(&'a [u8]),
    /// A pong, with its payload.
    Pong(&'a [u8]),
    /// A close frame: its status code, if any, and reason.
    Close(Option<u16>, &'a [u8]),
}

/// Smallest free space offered to one `read`.
const MIN_READ: usize = 16 * 1024;

/// A connection's incoming bytes, cut into frames as they complete.
#[derive(Debug, Default)]
pub struct Decoder {
    buf: Vec<u8>,
    start: usize,
    end: usize,
    frag: Vec<u8>,
    frag_op: Option<u8>,
    frag_done: bool,
}

impl Decoder {
    /// An empty reader (allocates on first read).
    pub fn new() -> Self {
        Self::default()
    }

    /// Bytes received and not consumed.
    #[inline]
    pub fn buffered(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    /// Marks the first `n` buffered bytes consumed (the handshake response head).
    pub fn consume(&mut self, n: usize) {
        self.start = (self.start + n).min(self.end);
    }

    /// Frees the buffers if nothing is buffered (idle connections keep no memory).
    pub fn release(&mut self) {
        if self.start == self.end && self.frag_op.is_none() {
            self.buf = Vec::new();
            self.frag = Vec::new();
            self.start = 0;
            self.end = 0;
        }
    }

    /// One `read` of at most `max` bytes into the buffer; returns what `read` returned
    /// (`Ok(0)` is end of stream).
    pub fn read_from<R: Read>(&mut self, r: &mut R, max: usize) -> io::Result<usize> {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
        if self.buf.len() - self.end < MIN_READ && self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.buf.len() - self.end < MIN_READ {
            let want = (self.buf.len() * 2).max(self.end + MIN_READ);
            self.buf.resize(want, 0);
        }
        let lim = (self.buf.len() - self.end).min(max.max(1));
        let n = r.read(&mut self.buf[self.end..self.end + lim])?;
        self.end += n;
        Ok(n)
    }

    /// Appends bytes as if read.
    #[cfg(test)]
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.truncate(self.end);
        self.buf.extend_from_slice(bytes);
        self.end = self.buf.len();
    }

    /// The next complete message or control frame, `Ok(None)` if more bytes are needed.
    pub fn next(&mut self) -> Result<Option<Message<'_>>, WsError> {
        if self.frag_done {
            self.frag.clear();
            self.frag_done = false;
        }
        loop {
            let avail = &self.buf[self.start..self.end];
            if avail.len() < 2 {
                return Ok(None);
            }
            let (b0, b1) = (avail[0], avail[1]);
            if b0 & 0x70 != 0 {
                return Err(WsError::Reserved);
            }
            if b1 & 0x80 != 0 {
                return Err(WsError::Masked);
            }
            let fin = b0 & 0x80 != 0;
            let op = b0 & 0x0F;
            let (len, hlen) = match b1 & 0x7F {
                126 => {
                    if avail.len() < 4 {
                        return Ok(None);
                    }
                    (u16::from_be_bytes([avail[2], avail[3]]) as u64, 4)
                }
                127 => {
                    if avail.len() < 10 {
                        return Ok(None);
                    }
                    let mut b = [0u8; 8];
                    b.copy_from_slice(&avail[2..10]);
                    (u64::from_be_bytes(b), 10)
                }
                n => (n as u64, 2),
            };
            if op >= 8 && (!fin || len > 125) {
                return Err(WsError::BadControl(len));
            }
            if len > MAX_MESSAGE {
                return Err(WsError::TooLarge(len));
            }
            let total = hlen + len as usize;
            if avail.len() < total {
                return Ok(None);
            }
            let (ps, pe) = (self.start + hlen, self.start + total);
            self.start += total;
            match op {
                OP_TEXT | OP_BINARY => {
                    if self.frag_op.is_some() {
                        return Err(WsError::Interleaved);
                    }
                    if fin {
                        let p = &self.buf[ps..pe];
                        return Ok(Some(if op == OP_TEXT {
                            Message::Text(p)
                        } else {
                            Message::Binary(p)
                        }));
                    }
                    self.frag_op = Some(op);
                    self.frag.extend_from_slice(&self.buf[ps..pe]);
                }
                OP_CONT => {
                    let Some(fop) = self.frag_op else {
                        return Err(WsError::Continuation);
                    };
                    self.frag.extend_from_slice(&self.buf[ps..pe]);
                    if self.frag.len() as u64 > MAX_MESSAGE {
                        return Err(WsError::TooLarge(self.frag.len() as u64));
                    }
                    if fin {
                        self.frag_op = None;
                        self.frag_done = true;
                        let p = &self.frag[..];
                        return Ok(Some(if fop == OP_TEXT {
                            Message::Text(p)
                        } else {
                            Message::Binary(p)
                        }));
                    }
                }
                OP_CLOSE => {
                    let p = &self.buf[ps..pe];
                    return match p.len() {
                        0 => Ok(Some(Message::Close(None, p))),
                        1 => Err(WsError::BadClose),
                        _ => Ok(Some(Message::Close(
                            Some(u16::from_be_bytes([p[0], p[1]])),
                            &p[2..],
                        ))),
                    };
                }
                OP_PING => return Ok(Some(Message::Ping(&self.buf[ps..pe]))),
                OP_PONG => return Ok(Some(Message::Pong(&self.buf[ps..pe]))),
                other => return Err(WsError::Opcode(other)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Unmasks a client frame, as a server would: (opcode, fin, payload, bytes used).
    fn server_decode(b: &[u8]) -> (u8, bool, Vec<u8>, usize) {
        assert!(b[1] & 0x80 != 0, "client frames must be masked");
        let (len, mut i) = match b[1] & 0x7F {
            126 => (u16::from_be_bytes([b[2], b[3]]) as usize, 4),
            127 => (
                u64::from_be_bytes(b[2..10].try_into().unwrap()) as usize,
                10,
            ),
            n => (n as usize, 2),
        };
        let mask = [b[i], b[i + 1], b[i + 2], b[i + 3]];
        i += 4;
        let p: Vec<u8> = b[i..i + len]
            .iter()
            .enumerate()
            .map(|(k, x)| x ^ mask[k % 4])
            .collect();
        (b[0] & 0x0F, b[0] & 0x80 != 0, p, i + len)
    }

    #[test]
    fn accept_matches_rfc_example() {
        assert_eq!(
            accept_for("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn masked_frames_round_trip_at_every_length_class() {
        let mut w = Writer::new(1);
        for len in [0usize, 1, 7, 8, 9, 125, 126, 127, 1000, 65535, 65536, 70000] {
            let payload: Vec<u8> = (0..len).map(|i| (i * 31 + 7) as u8).collect();
            w.frame(OP_BINARY, &payload);
            let mut out = Vec::new();
            assert!(w.flush(&mut out).unwrap());
            let (op, fin, p, used) = server_decode(&out);
            assert_eq!((op, fin, used), (OP_BINARY, true, out.len()));
            assert_eq!(p, payload, "len {len}");
        }
    }

    #[test]
    fn mask_matches_bytewise_definition() {
        let mask = [0x12, 0x34, 0x56, 0x78];
        for len in 0..40 {
            let orig: Vec<u8> = (0..len as u8).collect();
            let mut fast = orig.clone();
            apply_mask(&mut fast, mask);
            let slow: Vec<u8> = orig
                .iter()
                .enumerate()
                .map(|(i, b)| b ^ mask[i % 4])
                .collect();
            assert_eq!(fast, slow);
        }
    }

    fn server_frame(op: u8, fin: bool, payload: &[u8]) -> Vec<u8> {
        let mut v = vec![(if fin { 0x80 } else { 0 }) | op];
        if payload.len() < 126 {
            v.push(payload.len() as u8);
        } else if payload.len() <= 0xFFFF {
            v.push(126);
            v.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        } else {
            v.push(127);
            v.extend_from_slice(&(payload.len() as u64).to_be_bytes());
        }
        v.extend_from_slice(payload);
        v
    }

    #[test]
    fn decoder_handles_split_input_and_fragments() {
        let mut all = Vec::new();
        all.extend(server_frame(OP_TEXT, true, b"one"));
        all.extend(server_frame(OP_BINARY, false, b"tw"));
        all.extend(server_frame(OP_PING, true, b"p"));
        all.extend(server_frame(OP_CONT, true, b"o"));
        all.extend(server_frame(OP_TEXT, true, &vec![b'x'; 300]));
        all.extend(server_frame(OP_BINARY, true, &vec![7u8; 70_000]));
        all.extend(server_frame(OP_CLOSE, true, &[0x03, 0xF0, b'b', b'y']));
        // Feed one byte at a time: every split point must work.
        let mut d = Decoder::new();
        let mut got = Vec::new();
        for b in &all {
            d.push(std::slice::from_ref(b));
            while let Some(m) = d.next().unwrap() {
                got.push(match m {
                    Message::Text(p) => format!("text {}", p.len()),
                    Message::Binary(p) => format!("binary {} {:?}", p.len(), &p[..2]),
                    Message::Ping(p) => format!("ping {p:?}"),
                    Message::Pong(_) => "pong".into(),
                    Message::Close(c, r) => format!("close {c:?} {r:?}"),
                });
            }
        }
        assert_eq!(
            got,
            vec![
                "text 3".to_string(),
                "ping [112]".into(),
                "binary 3 [116, 119]".into(),
                "text 300".into(),
                "binary 70000 [7, 7]".into(),
                "close Some(1008) [98, 121]".into(),
            ]
        );
    }

    #[test]
    fn decoder_rejects_violations() {
        let cases: Vec<(Vec<u8>, WsError)> = vec![
            (vec![0x81 | 0x40, 0], WsError::Reserved),
            (vec![0x81, 0x80, 0, 0, 0, 0], WsError::Masked),
            (vec![0x83, 0], WsError::Opcode(3)),
            (vec![0x09, 0], WsError::BadControl(0)),
            (vec![0x80, 0], WsError::Continuation),
            (vec![0x88, 1, 3], WsError::BadClose),
        ];
        for (bytes, want) in cases {
            let mut d = Decoder::new();
            d.push(&bytes);
            assert_eq!(d.next().unwrap_err(), want);
        }
    }

    #[test]
    fn response_checks() {
        let key = "dGhlIHNhbXBsZSBub25jZQ==";
        let acc = accept_for(key);
        let ok = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: {acc}\r\nSec-WebSocket-Protocol: corecast.v1.json\r\n\r\nXY"
        );
        let n = parse_response(ok.as_bytes(), &acc, Some("corecast.v1.json"))
            .unwrap()
            .unwrap();
        assert_eq!(&ok.as_bytes()[n..], b"XY");
        assert!(parse_response(&ok.as_bytes()[..20], &acc, None)
            .unwrap()
            .is_none());
        assert!(matches!(
            parse_response(b"HTTP/1.1 503 Busy\r\n\r\n", &acc, None),
            Err(HandshakeError::Status(503))
        ));
        assert!(matches!(
            parse_response(ok.as_bytes(), "nope", None),
            Err(HandshakeError::Accept)
        ));
        assert!(matches!(
            parse_response(ok.as_bytes(), &acc, Some("other")),
            Err(HandshakeError::Protocol(Some(_)))
        ));
    }
}
