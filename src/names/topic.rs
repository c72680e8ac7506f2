//! The topic grammar of protocol v1 (docs/protocol.md#topic-names): 1 to [`MAX_TOPIC_BYTES`]
//! bytes of `A-Z a-z 0-9 _ : -`, in segments separated by single dots.
//!
//! Pure validation over borrowed input: no I/O, no allocation, never panics. `pubsub`'s
//! `TopicName` wraps it for the wire; `config` uses it to check `drop_topics`.

use std::fmt;

/// The longest topic name, in bytes. The binary encoding prefixes topics with a varint length,
/// so raising this later changes no byte layout.
pub const MAX_TOPIC_BYTES: usize = 128;

/// The segment separator: the only character that structures a topic name.
pub const SEPARATOR: u8 = b'.';

/// Why a topic name is invalid (`pubsub`'s `WireError::BadTopic` carries it).
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
pub const fn is_segment_byte(b: u8) -> bool {
    matches!(b, b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'_' | b':' | b'-')
}

/// Check `bytes` against the topic grammar with a length limit of `max`.
pub fn check(bytes: &[u8], max: usize) -> Result<(), TopicError> {
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

/// Whether `name` is a valid topic name of at most [`MAX_TOPIC_BYTES`] bytes.
pub fn is_topic(name: &str) -> bool {
    check(name.as_bytes(), MAX_TOPIC_BYTES).is_ok()
}
