//! The permessage-deflate codec (RFC 7692 7.2): compress one message as raw DEFLATE with a
//! sync flush and the trailing `00 00 FF FF` removed, and inflate one message (the tail put
//! back) under a size limit that is checked while inflating, so a small "zip bomb" never
//! grows past the limit in memory.
//!
//! Built on `flate2` with the `zlib-rs` backend (a Rust port of zlib that honours window
//! sizes for raw deflate). No I/O; output goes into buffers the caller owns.

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

use super::{MAX_WINDOW_BITS, MIN_SERVER_WINDOW_BITS};

/// What a sync flush ends with; removed by the sender, appended by the receiver.
const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];
/// The first output chunk reserved when inflating into an empty buffer.
const FIRST_CHUNK: usize = 4096;

/// Why a compressed message could not be inflated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InflateError {
    /// The inflated message is larger than the limit (close 1009).
    #[error("inflated message over the limit")]
    TooLarge,
    /// The payload is not valid DEFLATE data.
    #[error("invalid compressed data")]
    Corrupt,
}

/// Compression failed inside the backend (not expected with valid settings).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("compression failed")]
pub struct DeflateError;

/// A message compressor that starts every message with a fresh context
/// (`server_no_context_takeover`), so one instance can serve any number of connections.
pub struct Deflater {
    z: Compress,
    window_bits: u8,
}

impl std::fmt::Debug for Deflater {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deflater")
            .field("window_bits", &self.window_bits)
            .finish_non_exhaustive()
    }
}

impl Deflater {
    /// A compressor at `level` (0..=9) with a window of `window_bits` (clamped to 9..=15).
    pub fn new(level: u32, window_bits: u8) -> Self {
        let window_bits = window_bits.clamp(MIN_SERVER_WINDOW_BITS, MAX_WINDOW_BITS);
        Deflater {
            z: Compress::new_with_window_bits(Compression::new(level.min(9)), false, window_bits),
            window_bits,
        }
    }

    /// The window this compressor uses.
    pub fn window_bits(&self) -> u8 {
        self.window_bits
    }

    /// Compress one whole message and append its payload (tail removed) to `out`.
    pub fn compress(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<(), DeflateError> {
        self.z.reset();
        let start = out.len();
        out.reserve(input.len() / 2 + 64);
        let mut consumed = 0;
        loop {
            let before = self.z.total_in();
            self.z
                .compress_vec(&input[consumed..], out, FlushCompress::Sync)
                .map_err(|_| DeflateError)?;
            consumed += (self.z.total_in() - before) as usize;
            // Done once every byte went in and the flush fitted with room to spare.
            if consumed >= input.len() && out.len() < out.capacity() {
                break;
            }
            out.reserve(out.capacity().max(64));
        }
        if out.len() < start + TAIL.len() || !out.ends_with(&TAIL) {
            return Err(DeflateError);
        }
        out.truncate(out.len() - TAIL.len());
        Ok(())
    }
}

/// A message inflater. With `reset` on every call it serves many connections whose clients
/// use `client_no_context_takeover`; otherwise it keeps the LZ77 window of one connection
/// from message to message.
pub struct Inflater {
    z: Decompress,
    /// The peer ended a stream with a final block: the next message starts a new one.
    ended: bool,
}

impl std::fmt::Debug for Inflater {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inflater")
            .field("ended", &self.ended)
            .finish_non_exhaustive()
    }
}

impl Inflater {
    /// An inflater with a window of `window_bits` (clamped to 9..=15: a window at least as
    /// wide as the sender's always works).
    pub fn new(window_bits: u8) -> Self {
        let bits = window_bits.clamp(MIN_SERVER_WINDOW_BITS, MAX_WINDOW_BITS);
        Inflater {
            z: Decompress::new_with_window_bits(false, bits),
            ended: false,
        }
    }

    /// Inflate one whole message's payload, appending to `out`; fails as soon as `out` would
    /// hold more than `limit` bytes. `reset`: forget the previous messages' window first.
    ///
    /// After an error the inflater must be reset (or dropped) before it is used again.
    pub fn inflate(
        &mut self,
        input: &[u8],
        limit: usize,
        reset: bool,
        out: &mut Vec<u8>,
    ) -> Result<(), InflateError> {
        if reset || self.ended {
            self.z.reset(false);
            self.ended = false;
        }
        let limit = out.len().saturating_add(limit);
        self.feed(input, limit, out)?;
        if !self.ended {
            self.feed(&TAIL, limit, out)?;
        }
        Ok(())
    }

    fn feed(
        &mut self,
        mut input: &[u8],
        limit: usize,
        out: &mut Vec<u8>,
    ) -> Result<(), InflateError> {
        loop {
            if out.len() == out.capacity() {
                // Grow by doubling, never past one byte over the limit (which proves too much).
                let room = limit.saturating_add(1).saturating_sub(out.len());
                if room == 0 {
                    return Err(InflateError::TooLarge);
                }
                out.reserve_exact(out.capacity().max(FIRST_CHUNK).min(room));
            }
            let (in_before, out_before) = (self.z.total_in(), out.len());
            let status = self
                .z
                .decompress_vec(input, out, FlushDecompress::Sync)
                .map_err(|_| InflateError::Corrupt)?;
            let used = (self.z.total_in() - in_before) as usize;
            input = input.get(used..).unwrap_or_default();
            if out.len() > limit {
                return Err(InflateError::TooLarge);
            }
            if status == Status::StreamEnd {
                // A final block (BFINAL): whatever follows in this message is ignored.
                self.ended = true;
                return Ok(());
            }
            if out.len() < out.capacity() {
                if input.is_empty() {
                    return Ok(());
                }
                if used == 0 && out.len() == out_before {
                    return Err(InflateError::Corrupt);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn roundtrip(d: &mut Deflater, i: &mut Inflater, msg: &[u8], reset: bool) -> Vec<u8> {
        let mut z = Vec::new();
        d.compress(msg, &mut z).unwrap();
        let mut out = Vec::new();
        i.inflate(&z, usize::MAX, reset, &mut out).unwrap();
        out
    }

    #[test]
    fn rfc_7692_hello_example() {
        // RFC 7692 7.2.3.1: "Hello" compressed without context takeover.
        let mut d = Deflater::new(6, 15);
        let mut z = Vec::new();
        d.compress(b"Hello", &mut z).unwrap();
        assert_eq!(z, [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00]);
        let mut out = Vec::new();
        Inflater::new(15).inflate(&z, 100, true, &mut out).unwrap();
        assert_eq!(out, b"Hello");
    }

    #[test]
    fn rfc_7692_shared_window_example() {
        // 7.2.3.2: the second "Hello" refers back into the first message's window.
        let mut i = Inflater::new(15);
        let mut out = Vec::new();
        i.inflate(
            &[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00],
            100,
            false,
            &mut out,
        )
        .unwrap();
        i.inflate(&[0xf2, 0x00, 0x11, 0x00, 0x00], 100, false, &mut out)
            .unwrap();
        assert_eq!(out, b"HelloHello");
    }

    #[test]
    fn uncompressed_block_and_final_block_are_accepted() {
        // 7.2.3.3: "Hello" in a stored block; 7.2.3.4: BFINAL set.
        let mut out = Vec::new();
        Inflater::new(15)
            .inflate(
                &[
                    0x00, 0x05, 0x00, 0xfa, 0xff, 0x48, 0x65, 0x6c, 0x6c, 0x6f, 0x00,
                ],
                100,
                false,
                &mut out,
            )
            .unwrap();
        assert_eq!(out, b"Hello");
        let mut i = Inflater::new(15);
        let mut out = Vec::new();
        i.inflate(
            &[0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00],
            100,
            false,
            &mut out,
        )
        .unwrap();
        assert_eq!(out, b"Hello");
        // The next message starts a new stream.
        out.clear();
        i.inflate(
            &[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00],
            100,
            false,
            &mut out,
        )
        .unwrap();
        assert_eq!(out, b"Hello");
    }

    #[test]
    fn empty_message() {
        let mut d = Deflater::new(6, 15);
        let mut z = Vec::new();
        d.compress(b"", &mut z).unwrap();
        assert!(z.len() <= 2, "{z:?}");
        let mut out = Vec::new();
        Inflater::new(15).inflate(&z, 0, true, &mut out).unwrap();
        assert!(out.is_empty());
        // RFC 7692 7.2.3.6: a single 0x00 byte is an empty message too.
        Inflater::new(15)
            .inflate(&[0x00], 0, true, &mut out)
            .unwrap();
        assert!(out.is_empty());
    }

    #[test]
    fn zip_bomb_stops_at_the_limit() {
        let mut d = Deflater::new(9, 15);
        let big = vec![b'a'; 10 << 20];
        let mut z = Vec::new();
        d.compress(&big, &mut z).unwrap();
        assert!(z.len() < 20_000, "{}", z.len());
        let mut out = Vec::new();
        let limit = 64 * 1024;
        assert_eq!(
            Inflater::new(15).inflate(&z, limit, true, &mut out),
            Err(InflateError::TooLarge)
        );
        assert!(out.capacity() <= limit + 1, "{}", out.capacity());
        // Exactly at the limit is fine.
        let mut out = Vec::new();
        let mut z = Vec::new();
        d.compress(&big[..limit], &mut z).unwrap();
        Inflater::new(15)
            .inflate(&z, limit, true, &mut out)
            .unwrap();
        assert_eq!(out.len(), limit);
    }

    #[test]
    fn garbage_is_corrupt() {
        let mut out = Vec::new();
        assert_eq!(
            Inflater::new(15).inflate(&[0xff, 0xff, 0xff, 0xff], 100, true, &mut out),
            Err(InflateError::Corrupt)
        );
    }

    #[test]
    fn narrow_windows_roundtrip() {
        let msg: Vec<u8> = (0..200_000u32)
            .map(|i| (i % 251) as u8 ^ (i / 7) as u8)
            .collect();
        for bits in 9..=15 {
            let mut d = Deflater::new(6, bits);
            assert_eq!(d.window_bits(), bits);
            let mut i = Inflater::new(bits);
            assert_eq!(roundtrip(&mut d, &mut i, &msg, true), msg);
        }
        // 8 is clamped to 9 on both sides.
        assert_eq!(Deflater::new(6, 8).window_bits(), 9);
    }

    #[test]
    fn context_takeover_across_messages() {
        // A client that keeps its context: compress with one long-lived stream.
        let mut c = Compress::new_with_window_bits(Compression::default(), false, 15);
        let mut i = Inflater::new(15);
        for n in 0..20 {
            let msg = format!("message number {n} with a repeated body body body").into_bytes();
            let mut z = Vec::with_capacity(256);
            c.compress_vec(&msg, &mut z, FlushCompress::Sync).unwrap();
            assert!(z.ends_with(&TAIL));
            z.truncate(z.len() - 4);
            let mut out = Vec::new();
            i.inflate(&z, 1000, false, &mut out).unwrap();
            assert_eq!(out, msg);
        }
    }

    proptest! {
        #[test]
        fn compress_inflate_roundtrip(
            msgs in proptest::collection::vec(proptest::collection::vec(0u8..8, 0..3000), 1..5),
            level in 0u32..=9,
            bits in 9u8..=15,
        ) {
            let mut d = Deflater::new(level, bits);
            let mut i = Inflater::new(bits);
            for m in &msgs {
                prop_assert_eq!(&roundtrip(&mut d, &mut i, m, true), m);
            }
        }

        #[test]
        fn inflate_never_panics(data in proptest::collection::vec(any::<u8>(), 0..512)) {
            let mut out = Vec::new();
            let _ = Inflater::new(15).inflate(&data, 4096, true, &mut out);
            prop_assert!(out.len() <= 4096);
        }
    }
}
