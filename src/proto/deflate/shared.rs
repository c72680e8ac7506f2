//! The compressors a worker shares between all its connections: one per window size, made
//! on first use. Every message the server sends is compressed with a fresh context
//! (`server_no_context_takeover`), so one compressor serves every connection, and a
//! published frame is compressed once per worker for all subscribers with the same window.
//!
//! Memory: nothing is allocated until a message is compressed. Inflating is per connection
//! (see [`crate::connection`]).

use std::cell::RefCell;

use bytes::Bytes;

use super::{
    codec::Deflater, negotiate, DeflateParams, DeflatePolicy, MAX_WINDOW_BITS,
    MIN_SERVER_WINDOW_BITS,
};
use crate::proto::{encode_compressed_header, handshake::Request, split_server_frame, OpCode};

/// Largest unmasked server frame header.
const MAX_HEAD: usize = 10;

/// The permessage-deflate settings of a server (present only when enabled).
#[derive(Debug, Clone, Copy)]
pub struct DeflateSettings {
    /// What the server accepts of a client's offer.
    pub policy: DeflatePolicy,
    /// Messages shorter than this are sent uncompressed.
    pub threshold: usize,
    /// zlib compression level (0-9).
    pub level: u32,
}

/// A worker's compressors (see the module documentation).
#[derive(Debug)]
pub struct SharedDeflate {
    set: Option<DeflateSettings>,
    /// One compressor per window size (9..=15), made on first use.
    deflaters: RefCell<[Option<Box<Deflater>>; 7]>,
}

impl SharedDeflate {
    /// The compressors for `set` (`None`: permessage-deflate is off); allocates nothing.
    pub fn new(set: Option<DeflateSettings>) -> Self {
        SharedDeflate {
            set,
            deflaters: RefCell::default(),
        }
    }

    /// Whether permessage-deflate is enabled.
    pub fn enabled(&self) -> bool {
        self.set.is_some()
    }

    /// Negotiate with the request's offers; `None` when disabled or no offer is acceptable.
    pub fn negotiate(&self, req: &Request<'_, '_>) -> Option<DeflateParams> {
        let set = self.set.as_ref()?;
        negotiate(req.extensions(), &set.policy)
    }

    /// Compress `payload` into a whole frame (RSV1 set) for peers with this server window;
    /// `None` when disabled, under the threshold, or compressing does not make it smaller.
    pub fn compress_frame(&self, op: OpCode, payload: &[u8], bits: u8) -> Option<Bytes> {
        let set = self.set.as_ref()?;
        if payload.len() < set.threshold {
            return None;
        }
        let bits = bits.clamp(MIN_SERVER_WINDOW_BITS, MAX_WINDOW_BITS);
        let mut deflaters = self.deflaters.borrow_mut();
        let slot = &mut deflaters[usize::from(bits - MIN_SERVER_WINDOW_BITS)];
        let z = slot.get_or_insert_with(|| Box::new(Deflater::new(set.level, bits)));
        // Compress behind room for the longest header, then write the header just before
        // the payload: one buffer, no copy.
        let mut buf = Vec::with_capacity(MAX_HEAD + payload.len() / 2 + 64);
        buf.extend_from_slice(&[0; MAX_HEAD]);
        z.compress(payload, &mut buf).ok()?;
        let len = buf.len() - MAX_HEAD;
        if len >= payload.len() {
            return None;
        }
        let mut head = [0u8; 14];
        let n = encode_compressed_header(op, len, &mut head);
        let start = MAX_HEAD - n;
        buf[start..MAX_HEAD].copy_from_slice(&head[..n]);
        Some(Bytes::from(buf).slice(start..))
    }

    /// Compress an encoded unfragmented server frame (FIN, unmasked, no RSV, text or binary)
    /// for peers with this server window; `None` when it stays as it is.
    pub fn recompress(&self, frame: &Bytes, bits: u8) -> Option<Bytes> {
        let (op, payload) = split_server_frame(frame)?;
        self.compress_frame(op, payload, bits)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{deflate::Inflater, encode_frame_bytes};

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
        let w = SharedDeflate::new(settings(100));
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
        let off = SharedDeflate::new(None);
        assert!(off
            .compress_frame(OpCode::Text, text.as_bytes(), 15)
            .is_none());
    }

    #[test]
    fn shared_frames_recompress_with_every_header_length() {
        let w = SharedDeflate::new(settings(0));
        // Too short to shrink: left as it is.
        let short = encode_frame_bytes(OpCode::Binary, b"hello");
        assert!(w.recompress(&short, 15).is_none());
        for len in [125, 126, 1000, 65_535, 65_536, 200_000] {
            let payload: Vec<u8> = (0..len).map(|i| b"hello world "[i % 12]).collect();
            let shared = encode_frame_bytes(OpCode::Binary, &payload);
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
}
