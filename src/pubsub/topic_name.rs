//! Topic names: the validated `TopicName` the wire codec hands out.
//!
//! The grammar itself (docs/protocol.md#topic-names: 1 to [`MAX_TOPIC_BYTES`] bytes of
//! `A-Z a-z 0-9 _ : -`, in segments separated by single dots) lives in the leaf
//! [`crate::names::topic`], which the configuration also checks `drop_topics` against; this
//! module wraps it in a borrowed type and the wire's error. No I/O, no allocation, never panics.

use std::fmt;

use super::wire::WireError;
use crate::names::topic::check;
#[cfg(test)]
use crate::names::topic::is_segment_byte;
pub use crate::names::topic::{TopicError, MAX_TOPIC_BYTES, SEPARATOR};

/// A topic name that passed validation; it borrows the text it was read from.
///
/// Every byte is printable ASCII that needs no escaping in JSON, so encoders copy it verbatim.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TopicName<'a>(&'a str);

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
