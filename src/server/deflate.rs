//! permessage-deflate in the runtime: what a worker shares between its connections (one
//! compressor per window size, one inflater for clients without context takeover, the
//! inflate output buffer) and the small state a connection keeps once it negotiated.
//!
//! Memory: a connection that did not negotiate pays for an empty [`ConnDeflate`] (16 bytes).
//! One that did adds nothing more unless its client keeps its compression context; then its
//! own inflater is made on its first compressed message (see `docs/protocol.md`).
//! Every message the server sends is compressed with a fresh context
//! (`server_no_context_takeover`), so the worker's compressors serve every connection, and a
//! published frame is compressed once per worker for all subscribers with the same window.

use std::cell::{Cell, RefCell};

use bytes::Bytes;

use super::conn::Conn;
use crate::{
    config::Config,
    proto::{
        compress::{Deflater, InflateError, Inflater},
        deflate::{self, DeflateParams, DeflatePolicy, MAX_WINDOW_BITS, MIN_SERVER_WINDOW_BITS},
        encode_header,
        handshake::Request,
        OpCode,
    },
};

/// Largest unmasked server frame header.
const MAX_HEAD: usize = 10;
/// Inflate output capacity kept between messages; a larger buffer is freed after use.
const KEEP_OUT: usize = 64 * 1024;

/// The permessage-deflate settings of a worker (present only when enabled).
#[derive(Debug, Clone, Copy)]
pub(crate) struct DeflateSettings {
    policy: DeflatePolicy,
    threshold: usize,
    level: u32,
}

impl DeflateSettings {
    /// The settings from the config, or `None` when permessage-deflate is off.
    pub(crate) fn from_config(cfg: &Config) -> Option<Self> {
        cfg.permessage_deflate.then_some(DeflateSettings {
            policy: DeflatePolicy {
                client_no_context_takeover: cfg.deflate_client_no_context_takeover,
                client_max_window_bits: cfg.deflate_client_max_window_bits,
            },
            threshold: cfg.deflate_threshold,
            level: cfg.deflate_level,
        })
    }
}

/// What one connection keeps: its negotiated parameters and, for a client that keeps its
/// context, its own inflater (made lazily).
#[derive(Default)]
pub(crate) struct ConnDeflate {
    params: Cell<Option<DeflateParams>>,
    inflater: Cell<Option<Box<Inflater>>>,
}

impl ConnDeflate {
    /// The negotiated parameters, if any.
    pub(crate) fn params(&self) -> Option<DeflateParams> {
        self.params.get()
    }

    /// Free the inflater (the connection is finished).
    pub(crate) fn release(&self) {
        drop(self.inflater.take());
    }
}

/// The worker's permessage-deflate state.
pub(crate) struct WorkerDeflate {
    set: Option<DeflateSettings>,
    codecs: RefCell<Codecs>,
    /// Inflate output, taken while a message is delivered from it.
    out: Cell<Vec<u8>>,
}

#[derive(Default)]
struct Codecs {
    /// One compressor per window size (9..=15), made on first use.
    deflaters: [Option<Box<Deflater>>; 7],
    /// Shared by every client that compresses without context takeover.
    inflater: Option<Box<Inflater>>,
}

impl WorkerDeflate {
    /// The worker's state for `set` (nothing is allocated until used).
    pub(crate) fn new(set: Option<DeflateSettings>) -> Self {
        WorkerDeflate {
            set,
            codecs: RefCell::new(Codecs::default()),
            out: Cell::new(Vec::new()),
        }
    }

    /// Whether permessage-deflate is enabled.
    pub(crate) fn enabled(&self) -> bool {
        self.set.is_some()
    }

    /// Negotiate with the request's offers; `None` when disabled or no offer is acceptable.
    pub(crate) fn negotiate(&self, req: &Request<'_, '_>) -> Option<DeflateParams> {
        let set = self.set.as_ref()?;
        deflate::negotiate(req.extensions(), &set.policy)
    }

    /// Record what `conn` negotiated.
    pub(crate) fn attach(&self, conn: &Conn, params: DeflateParams) {
        conn.deflate.params.set(Some(params));
    }

    /// Compress a message for `conn` into a whole frame (RSV1 set), or `None` when it did not
    /// negotiate, the payload is under the threshold, or compressing does not make it smaller.
    pub(crate) fn frame_for(&self, conn: &Conn, op: OpCode, payload: &[u8]) -> Option<Bytes> {
        let params = conn.deflate.params.get()?;
        self.compress_frame(op, payload, params.server_max_window_bits)
    }

    /// Compress `payload` into a whole frame for peers with this server window.
    pub(crate) fn compress_frame(&self, op: OpCode, payload: &[u8], bits: u8) -> Option<Bytes> {
        let set = self.set.as_ref()?;
        if payload.len() < set.threshold {
            return None;
        }
        let bits = bits.clamp(MIN_SERVER_WINDOW_BITS, MAX_WINDOW_BITS);
        let mut codecs = self.codecs.borrow_mut();
        let slot = &mut codecs.deflaters[usize::from(bits - MIN_SERVER_WINDOW_BITS)];
        let z = slot.get_or_insert_with(|| Box::new(Deflater::new(set.level, bits)));
        let mut buf = Vec::with_capacity(MAX_HEAD + payload.len() / 2 + 64);
        buf.extend_from_slice(&[0; MAX_HEAD]);
        z.compress(payload, &mut buf).ok()?;
        let len = buf.len() - MAX_HEAD;
        if len >= payload.len() {
            return None;
        }
        let mut head = [0u8; 14];
        let n = encode_header(op, true, len, &mut head);
        head[0] |= 0x40; // RSV1: compressed
        let start = MAX_HEAD - n;
        buf[start..MAX_HEAD].copy_from_slice(&head[..n]);
        Some(Bytes::from(buf).slice(start..))
    }

    /// Compress an encoded unfragmented server frame (FIN, unmasked, no RSV, text or binary)
    /// for peers with this server window; `None` when it stays as it is.
    pub(crate) fn recompress(&self, frame: &Bytes, bits: u8) -> Option<Bytes> {
        let (op, payload) = split_server_frame(frame)?;
        self.compress_frame(op, payload, bits)
    }

    /// Inflate one compressed message from `conn` into the worker's output buffer and hand it
    /// to `deliver`; the buffer is returned to the worker afterwards.
    pub(crate) fn inflate_then<R>(
        &self,
        conn: &Conn,
        payload: &[u8],
        limit: usize,
        deliver: impl FnOnce(Result<&[u8], InflateError>) -> R,
    ) -> R {
        let mut out = self.out.take();
        out.clear();
        let res = self.inflate(conn, payload, limit, &mut out);
        let r = deliver(res.map(|()| out.as_slice()));
        if out.capacity() > KEEP_OUT {
            out = Vec::new();
        }
        self.out.set(out);
        r
    }

    fn inflate(
        &self,
        conn: &Conn,
        payload: &[u8],
        limit: usize,
        out: &mut Vec<u8>,
    ) -> Result<(), InflateError> {
        let Some(params) = conn.deflate.params.get() else {
            return Err(InflateError::Corrupt);
        };
        if params.client_no_context_takeover {
            let mut codecs = self.codecs.borrow_mut();
            let z = codecs
                .inflater
                .get_or_insert_with(|| Box::new(Inflater::new(MAX_WINDOW_BITS)));
            return z.inflate(payload, limit, true, out);
        }
        let mut z = conn
            .deflate
            .inflater
            .take()
            .unwrap_or_else(|| Box::new(Inflater::new(params.inflate_window_bits())));
        let res = z.inflate(payload, limit, false, out);
        // After an error the connection is closed: its inflater goes.
        if res.is_ok() {
            conn.deflate.inflater.set(Some(z));
        }
        res
    }
}

/// The opcode and payload of an unfragmented, unmasked server data frame without RSV bits.
fn split_server_frame(frame: &[u8]) -> Option<(OpCode, &[u8])> {
    let (&b0, &b1) = (frame.first()?, frame.get(1)?);
    let op = match b0 {
        0x81 => OpCode::Text,
        0x82 => OpCode::Binary,
        _ => return None,
    };
    if b1 & 0x80 != 0 {
        return None;
    }
    let (len, at) = match b1 & 0x7f {
        126 => (
            usize::from(u16::from_be_bytes([*frame.get(2)?, *frame.get(3)?])),
            4,
        ),
        127 => {
            let raw: [u8; 8] = frame.get(2..10)?.try_into().ok()?;
            (usize::try_from(u64::from_be_bytes(raw)).ok()?, 10)
        }
        n => (usize::from(n), 2),
    };
    let payload = frame.get(at..)?;
    (payload.len() == len).then_some((op, payload))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::worker::encode_shared;

    fn settings(threshold: usize) -> Option<DeflateSettings> {
        Some(DeflateSettings {
            policy: DeflatePolicy::default(),
            threshold,
            level: 6,
        })
    }

    fn inflate(frame: &[u8]) -> (u8, Vec<u8>) {
        let (b0, body) = match frame[1] {
            126 => (frame[0], &frame[4..]),
            127 => (frame[0], &frame[10..]),
            _ => (frame[0], &frame[2..]),
        };
        let mut out = Vec::new();
        Inflater::new(15)
            .inflate(body, usize::MAX, true, &mut out)
            .unwrap();
        (b0, out)
    }

    #[test]
    fn frames_are_compressed_above_the_threshold_only() {
        let w = WorkerDeflate::new(settings(100));
        let text = "abc ".repeat(50);
        let f = w.compress_frame(OpCode::Text, text.as_bytes(), 15).unwrap();
        let (b0, body) = inflate(&f);
        assert_eq!(b0, 0x80 | 0x40 | 0x1, "FIN, RSV1, text");
        assert_eq!(body, text.as_bytes());
        assert!(w
            .compress_frame(OpCode::Text, &text.as_bytes()[..99], 15)
            .is_none());
        // Incompressible data stays as it is.
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let noise: Vec<u8> = (0..4000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 32) as u8
            })
            .collect();
        assert!(w.compress_frame(OpCode::Binary, &noise, 15).is_none());
        // Disabled: never.
        let off = WorkerDeflate::new(None);
        assert!(off
            .compress_frame(OpCode::Text, text.as_bytes(), 15)
            .is_none());
    }

    #[test]
    fn shared_frames_recompress_with_every_header_length() {
        let w = WorkerDeflate::new(settings(0));
        // Too short to shrink: left as it is.
        let short = encode_shared(OpCode::Binary, b"hello");
        assert!(w.recompress(&short, 15).is_none());
        for len in [125, 126, 1000, 65_535, 65_536, 200_000] {
            let payload: Vec<u8> = (0..len).map(|i| b"hello world "[i % 12]).collect();
            let shared = encode_shared(OpCode::Binary, &payload);
            let z = w.recompress(&shared, 12).unwrap();
            let (b0, body) = inflate(&z);
            assert_eq!(b0, 0xC2);
            assert_eq!(body, payload, "{len}");
        }
        // Frames it does not understand are left alone.
        assert!(w
            .recompress(&Bytes::from_static(&[0x01, 0x01, b'a']), 15)
            .is_none());
        assert!(w
            .recompress(&Bytes::from_static(&[0x81, 0x05, b'a']), 15)
            .is_none());
        assert!(w
            .recompress(&Bytes::from_static(&[0x89, 0x00]), 15)
            .is_none());
    }

    #[test]
    fn empty_conn_state_is_small() {
        assert!(std::mem::size_of::<ConnDeflate>() <= 16);
    }
}
