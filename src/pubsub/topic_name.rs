//! Topic names: the validated `TopicName` and the rules it enforces.
//!
//! Owns the topic grammar of protocol v1 (docs/protocol.md#topic-names): 1 to
//! [`MAX_TOPIC_BYTES`] bytes of `A-Z a-z 0-9 _ : -`, in segments separated by single dots.
//! Pure validation over borrowed input: no I/O, no allocation, never panics.

use std::fmt;

use super::wire::WireError;

/// The longest topic name, in bytes. The binary encoding prefixes topics with a varint length,
/// so raising this later changes no byte layout.
pub const MAX_TOPIC_BYTES: usize = 128;

/// The segment separator: the only character that structures a topic name.
pub const SEPARATOR: u8 = b'.';

/// A topic name that passed validation; it borrows the text it was read from.
///
/// Every byte is printable ASCII that needs no escaping in JSON, so encoders copy it verbatim.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TopicName<'a>(&'a str);

/// Why a topic name is invalid (carried by [`WireError::BadTopic`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TopicError {
    /// The name has no bytes.
    #[error("topic is empty")]
    Empty,
    /// The name is longer than the limit.
    #[error("topic is {len} bytes, over the {max}-byte limit")]
    TooLong {
        /// Length of the name in bytes.
        len: usize,
        /// The limit it broke.
        max: usize,
    },
    /// A byte outside `A-Z a-z 0-9 _ : - .`.
    #[error(
        "topic has {} at byte {at}; allowed: A-Z a-z 0-9 _ : - and '.' between segments",
        ShowByte(*byte)
    )]
    BadChar {
        /// Offset of the byte in the name.
        at: usize,
        /// The offending byte (the first byte of a non-ASCII character).
        byte: u8,
    },
    /// A leading, trailing or doubled `.`.
    #[error("topic has an empty segment at byte {at} (leading, trailing or doubled '.')")]
    EmptySegment {
        /// Offset where the empty segment starts.
        at: usize,
    },
    /// A JSON string with escape sequences: topics never need them, so none are accepted.
    #[error("topic must be written without JSON escapes")]
    Escaped,
    /// The topic field is not a JSON string.
    #[error("topic must be a string")]
    NotAString,
}

/// Shows a byte as a quoted character if printable ASCII, else in hex.
struct ShowByte(u8);

impl fmt::Display for ShowByte {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_ascii_graphic() || self.0 == b' ' {
            write!(f, "character {:?}", self.0 as char)
        } else {
            write!(f, "byte {:#04x}", self.0)
        }
    }
}

/// Whether `b` may appear inside a segment.
#[inline]
const fn is_segment_byte(b: u8) -> bool {
    matches!(b, b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'_' | b':' | b'-')
}

/// Check `bytes` against the topic grammar with a length limit of `max`.
fn check(bytes: &[u8], max: usize) -> Result<(), TopicError> {
    if bytes.is_empty() {
        return Err(TopicError::Empty);
    }
    if bytes.len() > max {
        return Err(TopicError::TooLong {
            len: bytes.len(),
            max,
        });
    }
    // `seg_start` is where the current segment began; a separator right there closes an
    // empty segment (this also covers a leading dot).
    let mut seg_start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        if b == SEPARATOR {
            if i == seg_start {
                return Err(TopicError::EmptySegment { at: i });
            }
            seg_start = i + 1;
        } else if !is_segment_byte(b) {
            return Err(TopicError::BadChar { at: i, byte: b });
        }
    }
    if seg_start == bytes.len() {
        return Err(TopicError::EmptySegment { at: seg_start });
    }
    Ok(())
}

impl<'a> TopicName<'a> {
    /// Validate `name` as a topic of at most [`MAX_TOPIC_BYTES`] bytes.
    pub fn new(name: &'a str) -> Result<Self, WireError> {
        check(name.as_bytes(), MAX_TOPIC_BYTES)?;
        Ok(TopicName(name))
    }

    /// Validate raw bytes (from the binary encoding) as a topic; no UTF-8 check is needed
    /// because every allowed byte is ASCII.
    pub fn from_bytes(name: &'a [u8]) -> Result<Self, WireError> {
        check(name, MAX_TOPIC_BYTES)?;
        // Every byte passed `check`, so it is ASCII and therefore UTF-8.
        match std::str::from_utf8(name) {
            Ok(s) => Ok(TopicName(s)),
            Err(e) => Err(TopicError::BadChar {
                at: e.valid_up_to(),
                byte: name[e.valid_up_to()],
            }
            .into()),
        }
    }

    /// The name as text, with the lifetime of the input it borrows.
    pub fn as_str(&self) -> &'a str {
        self.0
    }

    /// The name's length in bytes (always 1 to [`MAX_TOPIC_BYTES`]).
    #[allow(clippy::len_without_is_empty)] // a topic name is never empty
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// The dot-separated segments, in order (never empty strings).
    pub fn segments(&self) -> impl Iterator<Item = &'a str> + 'a {
        self.0.split('.')
    }
}

impl fmt::Display for TopicName<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

impl AsRef<str> for TopicName<'_> {
    fn as_ref(&self) -> &str {
        self.0
    }
}

impl PartialEq<str> for TopicName<'_> {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for TopicName<'_> {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

impl<'a> TryFrom<&'a str> for TopicName<'a> {
    type Error = WireError;

    fn try_from(name: &'a str) -> Result<Self, WireError> {
        TopicName::new(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(name: &str) -> TopicError {
        match TopicName::new(name) {
            Err(WireError::BadTopic(e)) => e,
            other => panic!("{name:?}: expected BadTopic, got {other:?}"),
        }
    }

    #[test]
    fn accepts_the_documented_charset() {
        for ok in [
            "a",
            "prices.BTC",
            "prices.BTC-USD",
            "user:42.inbox",
            "a_b.c-d.e:f.0.9",
            "A.B.C.D.E",
            "-",
            "_",
            ":",
            "x.-.y",
        ] {
            let t = TopicName::new(ok).unwrap();
            assert_eq!(t.as_str(), ok);
            assert_eq!(t, ok);
            assert_eq!(t.to_string(), ok);
            assert_eq!(TopicName::from_bytes(ok.as_bytes()).unwrap(), t);
        }
    }

    #[test]
    fn length_limits() {
        let max = "a".repeat(MAX_TOPIC_BYTES);
        assert_eq!(TopicName::new(&max).unwrap().len(), MAX_TOPIC_BYTES);
        let over = "a".repeat(MAX_TOPIC_BYTES + 1);
        assert_eq!(
            err(&over),
            TopicError::TooLong {
                len: MAX_TOPIC_BYTES + 1,
                max: MAX_TOPIC_BYTES
            }
        );
        assert_eq!(err(""), TopicError::Empty);
    }

    #[test]
    fn rejects_empty_segments() {
        assert_eq!(err("."), TopicError::EmptySegment { at: 0 });
        assert_eq!(err(".a"), TopicError::EmptySegment { at: 0 });
        assert_eq!(err("a."), TopicError::EmptySegment { at: 2 });
        assert_eq!(err("a..b"), TopicError::EmptySegment { at: 2 });
        assert_eq!(err("a.b."), TopicError::EmptySegment { at: 4 });
    }

    #[test]
    fn rejects_other_characters() {
        for (name, at, byte) in [
            ("a/b", 1, b'/'),
            ("a b", 1, b' '),
            ("a*", 1, b'*'),
            ("a.>", 2, b'>'),
            ("#", 0, b'#'),
            ("a\"b", 1, b'"'),
            ("a\\b", 1, b'\\'),
            ("a\nb", 1, b'\n'),
            ("a\0", 1, 0),
            ("caf\u{e9}", 3, 0xc3),
            ("$sys", 0, b'$'),
        ] {
            assert_eq!(err(name), TopicError::BadChar { at, byte }, "{name:?}");
        }
    }

    #[test]
    fn bytes_that_are_not_utf8_are_bad_chars() {
        assert_eq!(
            TopicName::from_bytes(b"ab\xff"),
            Err(WireError::BadTopic(TopicError::BadChar {
                at: 2,
                byte: 0xff
            }))
        );
    }

    #[test]
    fn error_messages_are_readable() {
        assert_eq!(
            err("a/b").to_string(),
            "topic has character '/' at byte 1; allowed: A-Z a-z 0-9 _ : - and '.' between \
             segments"
        );
        assert!(err("a\nb").to_string().contains("byte 0x0a at byte 1"));
        assert!(err("a..b").to_string().contains("empty segment at byte 2"));
    }

    #[test]
    fn segments_split_on_dots() {
        let t = TopicName::new("prices.BTC.usd").unwrap();
        assert_eq!(t.segments().collect::<Vec<_>>(), ["prices", "BTC", "usd"]);
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn never_panics_and_accepts_only_the_grammar(s in any::<String>()) {
                if let Ok(t) = TopicName::new(&s) {
                    prop_assert!(!s.is_empty() && s.len() <= MAX_TOPIC_BYTES);
                    let grammar = s.split('.').all(|seg| !seg.is_empty() && seg.bytes().all(is_segment_byte));
                    prop_assert!(grammar);
                    prop_assert_eq!(t.as_str(), s.as_str());
                }
            }

            #[test]
            fn from_bytes_never_panics(b in proptest::collection::vec(any::<u8>(), 0..200)) {
                let _ = TopicName::from_bytes(&b);
            }

            #[test]
            fn grammar_strings_are_accepted(s in "[A-Za-z0-9_:-]{1,10}(\\.[A-Za-z0-9_:-]{1,10}){0,8}") {
                prop_assert_eq!(TopicName::new(&s).unwrap().as_str(), s.as_str());
            }
        }
    }
}
