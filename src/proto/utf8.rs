//! Incremental UTF-8 validation across frame fragments, failing at the first invalid byte.
//!
//! The bulk of each chunk goes through `simdutf8`; a code point cut by a chunk boundary is
//! kept in `pending` (at most 3 bytes) and completed byte by byte from the next chunk. Every
//! byte is checked as it arrives, so a sequence that can never become valid (a surrogate, a
//! code point past U+10FFFF, an overlong form) fails at once even when it is incomplete.

use super::error::ProtocolError;

/// Validates a UTF-8 stream fed in arbitrary chunks.
#[derive(Debug, Default, Clone)]
pub struct Utf8Validator {
    pending: [u8; 4],
    pending_len: u8,
}

/// Length of the sequence a lead byte starts; `None` if it can never start one.
fn sequence_len(lead: u8) -> Option<usize> {
    match lead {
        0x00..=0x7F => Some(1),
        0xC2..=0xDF => Some(2),
        0xE0..=0xEF => Some(3),
        0xF0..=0xF4 => Some(4),
        _ => None,
    }
}

/// Whether `byte` may follow at position `pos` (1..=3) of a sequence led by `lead`.
fn continuation_ok(lead: u8, pos: usize, byte: u8) -> bool {
    let (lo, hi) = match (lead, pos) {
        (0xE0, 1) => (0xA0, 0xBF), // overlong below U+0800
        (0xED, 1) => (0x80, 0x9F), // surrogates U+D800..U+DFFF
        (0xF0, 1) => (0x90, 0xBF), // overlong below U+10000
        (0xF4, 1) => (0x80, 0x8F), // above U+10FFFF
        _ => (0x80, 0xBF),
    };
    (lo..=hi).contains(&byte)
}

/// Whether `bytes` (1 to 3 of them) start some valid UTF-8 sequence without completing it.
fn is_incomplete_prefix(bytes: &[u8]) -> bool {
    let Some((&lead, rest)) = bytes.split_first() else {
        return false;
    };
    match sequence_len(lead) {
        Some(need) if bytes.len() < need => rest
            .iter()
            .enumerate()
            .all(|(i, &b)| continuation_ok(lead, i + 1, b)),
        _ => false,
    }
}

impl Utf8Validator {
    /// A validator at the start of a message.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feed the next chunk; fails as soon as a byte can never be part of valid UTF-8.
    pub fn feed(&mut self, chunk: &[u8]) -> Result<(), ProtocolError> {
        let rest = match self.complete_pending(chunk) {
            Ok(rest) => rest,
            Err(e) => {
                self.reset();
                return Err(e);
            }
        };
        if rest.is_empty() {
            return Ok(());
        }
        match simdutf8::compat::from_utf8(rest) {
            Ok(_) => Ok(()),
            Err(e) if e.error_len().is_none() => {
                let tail = rest.get(e.valid_up_to()..).unwrap_or_default();
                if tail.len() < 4 && is_incomplete_prefix(tail) {
                    self.pending[..tail.len()].copy_from_slice(tail);
                    self.pending_len = tail.len() as u8;
                    Ok(())
                } else {
                    self.reset();
                    Err(ProtocolError::InvalidUtf8)
                }
            }
            Err(_) => {
                self.reset();
                Err(ProtocolError::InvalidUtf8)
            }
        }
    }

    /// Completes a pending code point from the start of `chunk`; returns what is left.
    fn complete_pending<'c>(&mut self, chunk: &'c [u8]) -> Result<&'c [u8], ProtocolError> {
        let mut len = usize::from(self.pending_len);
        if len == 0 {
            return Ok(chunk);
        }
        let lead = self.pending[0];
        let need = sequence_len(lead).ok_or(ProtocolError::InvalidUtf8)?;
        let mut used = 0;
        while len < need {
            let Some(&b) = chunk.get(used) else {
                // Chunk exhausted: still a valid prefix, keep waiting.
                self.pending_len = len as u8;
                return Ok(&[]);
            };
            if !continuation_ok(lead, len, b) {
                return Err(ProtocolError::InvalidUtf8);
            }
            if let Some(slot) = self.pending.get_mut(len) {
                *slot = b;
            }
            len += 1;
            used += 1;
        }
        self.pending_len = 0;
        Ok(chunk.get(used..).unwrap_or_default())
    }

    /// End of the message: fails if a code point is left incomplete. Resets the validator.
    pub fn finish(&mut self) -> Result<(), ProtocolError> {
        let incomplete = self.pending_len != 0;
        self.reset();
        if incomplete {
            Err(ProtocolError::InvalidUtf8)
        } else {
            Ok(())
        }
    }

    /// Forget any partial code point.
    pub fn reset(&mut self) {
        self.pending_len = 0;
    }

    /// Whether a code point is waiting for its remaining bytes.
    pub fn has_pending(&self) -> bool {
        self.pending_len != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed_all(chunks: &[&[u8]]) -> Result<(), ProtocolError> {
        let mut v = Utf8Validator::new();
        for c in chunks {
            v.feed(c)?;
        }
        v.finish()
    }

    fn feed_bytewise(bytes: &[u8]) -> Result<(), ProtocolError> {
        let mut v = Utf8Validator::new();
        for b in bytes {
            v.feed(std::slice::from_ref(b))?;
        }
        v.finish()
    }

    #[test]
    fn valid_text_in_one_chunk() {
        assert_eq!(feed_all(&["héllo wörld €𝄞".as_bytes()]), Ok(()));
        assert_eq!(feed_all(&[b""]), Ok(()));
        assert_eq!(feed_all(&[]), Ok(()));
    }

    #[test]
    fn code_point_split_across_chunks_at_every_position() {
        let s = "a€b𝄞c\u{10FFFF}\u{80}\u{7FF}\u{800}\u{FFFF}\u{10000}".as_bytes();
        for i in 0..=s.len() {
            for j in i..=s.len() {
                assert_eq!(feed_all(&[&s[..i], &s[i..j], &s[j..]]), Ok(()), "{i} {j}");
            }
        }
        assert_eq!(feed_bytewise(s), Ok(()));
    }

    #[test]
    fn incomplete_code_point_fails_at_finish_only() {
        let mut v = Utf8Validator::new();
        assert_eq!(v.feed(&[b'a', 0xE2, 0x82]), Ok(()));
        assert!(v.has_pending());
        assert_eq!(v.finish(), Err(ProtocolError::InvalidUtf8));
        // finish() reset the validator.
        assert!(!v.has_pending());
        assert_eq!(v.feed(b"ok"), Ok(()));
        assert_eq!(v.finish(), Ok(()));
    }

    #[test]
    fn fail_fast_on_code_point_above_u10ffff_while_incomplete() {
        let mut v = Utf8Validator::new();
        assert_eq!(v.feed(&[0xF4, 0x90]), Err(ProtocolError::InvalidUtf8));
        let mut v = Utf8Validator::new();
        assert_eq!(v.feed(&[0xF4]), Ok(()));
        assert_eq!(v.feed(&[0x90]), Err(ProtocolError::InvalidUtf8));
    }

    #[test]
    fn fail_fast_on_surrogate_while_incomplete() {
        let mut v = Utf8Validator::new();
        assert_eq!(v.feed(&[b'x', 0xED, 0xA0]), Err(ProtocolError::InvalidUtf8));
        let mut v = Utf8Validator::new();
        assert_eq!(v.feed(&[0xED]), Ok(()));
        assert_eq!(v.feed(&[0xA0]), Err(ProtocolError::InvalidUtf8));
        // 0xED 0x9F is fine (U+D7FF).
        assert_eq!(feed_all(&[&[0xED], &[0x9F], &[0xBF]]), Ok(()));
    }

    #[test]
    fn fail_fast_on_never_valid_lead_bytes() {
        for b in [0xC0u8, 0xC1, 0xF5, 0xF8, 0xFE, 0xFF, 0x80, 0xBF] {
            let mut v = Utf8Validator::new();
            assert_eq!(
                v.feed(&[b'a', b]),
                Err(ProtocolError::InvalidUtf8),
                "{b:#x}"
            );
        }
    }

    #[test]
    fn fail_fast_on_overlong_prefixes() {
        for second in 0x80..=0x9Fu8 {
            let mut v = Utf8Validator::new();
            assert_eq!(v.feed(&[0xE0, second]), Err(ProtocolError::InvalidUtf8));
            let mut v = Utf8Validator::new();
            assert_eq!(v.feed(&[0xE0]), Ok(()));
            assert_eq!(v.feed(&[second]), Err(ProtocolError::InvalidUtf8));
        }
        for second in 0x80..=0x8Fu8 {
            let mut v = Utf8Validator::new();
            assert_eq!(v.feed(&[0xF0, second]), Err(ProtocolError::InvalidUtf8));
            let mut v = Utf8Validator::new();
            assert_eq!(v.feed(&[0xF0]), Ok(()));
            assert_eq!(v.feed(&[second]), Err(ProtocolError::InvalidUtf8));
        }
    }

    #[test]
    fn fail_fast_on_bad_continuation_after_pending() {
        let mut v = Utf8Validator::new();
        assert_eq!(v.feed(&[0xE2, 0x82]), Ok(()));
        assert_eq!(v.feed(b"A"), Err(ProtocolError::InvalidUtf8));
        let mut v = Utf8Validator::new();
        assert_eq!(v.feed(&[0xF0, 0x9F, 0x98]), Ok(()));
        assert_eq!(v.feed(&[0xC0, b'x']), Err(ProtocolError::InvalidUtf8));
    }

    #[test]
    fn error_after_completed_pending_in_same_chunk() {
        let mut v = Utf8Validator::new();
        assert_eq!(v.feed(&[0xE2]), Ok(()));
        assert_eq!(
            v.feed(&[0x82, 0xAC, b'a', 0xFF]),
            Err(ProtocolError::InvalidUtf8)
        );
    }

    #[test]
    fn autobahn_6_3_invalid_in_the_middle_fails_bytewise() {
        // "κόσμε" followed by a surrogate, then "edited" (Autobahn 6.3.1).
        let mut bytes = "κόσμε".as_bytes().to_vec();
        let fail_at = bytes.len() + 1;
        bytes.extend_from_slice(&[0xED, 0xA0, 0x80]);
        bytes.extend_from_slice(b"edited");
        let mut v = Utf8Validator::new();
        for (i, b) in bytes.iter().enumerate() {
            let r = v.feed(std::slice::from_ref(b));
            if i < fail_at {
                assert_eq!(r, Ok(()), "byte {i}");
            } else {
                assert_eq!(r, Err(ProtocolError::InvalidUtf8), "byte {i}");
                break;
            }
        }
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        /// Byte strings biased towards multi-byte sequences and their edge cases.
        fn utf8ish() -> impl Strategy<Value = Vec<u8>> {
            let piece = prop_oneof![
                any::<char>().prop_map(|c| c.to_string().into_bytes()),
                proptest::collection::vec(
                    prop_oneof![
                        Just(0x80u8),
                        Just(0x8F),
                        Just(0x90),
                        Just(0x9F),
                        Just(0xA0),
                        Just(0xBF),
                        Just(0xC0),
                        Just(0xC2),
                        Just(0xDF),
                        Just(0xE0),
                        Just(0xED),
                        Just(0xEF),
                        Just(0xF0),
                        Just(0xF4),
                        Just(0xF5),
                        any::<u8>(),
                    ],
                    1..4
                ),
            ];
            proptest::collection::vec(piece, 0..24).prop_map(|v| v.concat())
        }

        proptest! {
            #[test]
            fn split_feed_matches_std(
                bytes in utf8ish(),
                cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..6),
            ) {
                let mut points: Vec<usize> = cuts.iter().map(|c| c.index(bytes.len() + 1)).collect();
                points.sort_unstable();
                let mut v = Utf8Validator::new();
                let mut start = 0;
                let mut verdict = Ok(());
                for p in points.into_iter().chain(std::iter::once(bytes.len())) {
                    if verdict.is_ok() {
                        verdict = v.feed(&bytes[start..p]);
                    }
                    start = p;
                }
                if verdict.is_ok() {
                    verdict = v.finish();
                }
                prop_assert_eq!(verdict.is_ok(), std::str::from_utf8(&bytes).is_ok());
                prop_assert_eq!(feed_bytewise(&bytes).is_ok(), std::str::from_utf8(&bytes).is_ok());
            }

            #[test]
            fn prefix_of_valid_never_fails_feed(s in ".{0,40}", cut in any::<prop::sample::Index>()) {
                let bytes = s.as_bytes();
                let prefix = &bytes[..cut.index(bytes.len() + 1)];
                let mut v = Utf8Validator::new();
                prop_assert_eq!(v.feed(prefix), Ok(()));
                let mut v = Utf8Validator::new();
                for b in prefix {
                    prop_assert_eq!(v.feed(std::slice::from_ref(b)), Ok(()));
                }
            }

            #[test]
            fn bytewise_fails_at_first_invalid_byte(bytes in utf8ish()) {
                // The first byte at which std says no prefix can be valid.
                let first_bad = match std::str::from_utf8(&bytes) {
                    Err(e) if e.error_len().is_some() => Some(e.valid_up_to()),
                    _ => None,
                };
                let mut v = Utf8Validator::new();
                let mut failed_at = None;
                for (i, b) in bytes.iter().enumerate() {
                    if v.feed(std::slice::from_ref(b)).is_err() {
                        failed_at = Some(i);
                        break;
                    }
                }
                // std reports where the bad sequence starts; we fail at the byte that makes it
                // bad, which lies within the next 3 bytes.
                match (first_bad, failed_at) {
                    (None, None) => {}
                    (Some(start), Some(at)) => prop_assert!(at >= start && at <= start + 3),
                    other => prop_assert!(false, "mismatch {:?}", other),
                }
            }
        }
    }
}
