//! Error codes, typed: [`ErrorCode`] is every `code` an `err` message (or the admin publish
//! API) can carry, and [`WireError`] is why the codec refused a client message.

use std::fmt;

use crate::pubsub::topic_name::TopicError;

/// Every error code, in one place: the `code` of an `err` message in both encodings (JSON:
/// the `code` string; binary: the same text as a varint-sized string), its label for metrics
/// and logs, and the `error` of the admin publish API.
///
/// The codes and their meaning are in docs/protocol.md#errors (wire) and docs/pubsub.md
/// (admin API). They are stable: clients match on them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorCode {
    /// `bad_json`: not a JSON object, not valid JSON, or a field given twice.
    BadJson,
    /// `bad_op`: no client op of that name (also: `auth` on a server without authentication).
    BadOp,
    /// `missing_field`: a required field is absent or `null`.
    MissingField,
    /// `bad_field`: a field has the wrong type or is out of range.
    BadField,
    /// `bad_topic`: the topic name breaks the topic rules.
    BadTopic,
    /// `too_large`: the message is over the codec's size limit.
    TooLarge,
    /// `bad_binary`: a binary message that does not follow the binary layout.
    BadBinary,
    /// `bad_frame`: a frame type (text or binary) the connection's encoding does not take.
    BadFrame,
    /// `forbidden`: the connection's token does not allow this (topic, op or user).
    Forbidden,
    /// `rate_limited`: over the connection's message or byte rate; the message was dropped.
    RateLimited,
    /// `unauthorized`: an `auth` op's token does not verify or has expired.
    Unauthorized,
    /// `too_many_subscriptions`: the connection holds the most subscriptions allowed.
    TooManySubscriptions,
    /// `too_many_topics`: the server holds the most topics allowed (`max_topics`); the `sub`
    /// or `pub` that would have added one was not done.
    TooManyTopics,
    /// `busy`: the topic's worker is busy (admin publish API only).
    Busy,
    /// `timeout`: no answer from the topic's worker in time (admin publish API only).
    Timeout,
    /// `closed`: the server is shutting down (admin publish API only).
    Closed,
}

impl ErrorCode {
    /// The codes the codec itself returns ([`WireError::code`]), in docs/protocol.md order.
    pub const DECODE: [ErrorCode; 8] = [
        ErrorCode::BadJson,
        ErrorCode::BadOp,
        ErrorCode::MissingField,
        ErrorCode::BadField,
        ErrorCode::BadTopic,
        ErrorCode::TooLarge,
        ErrorCode::BadBinary,
        ErrorCode::BadFrame,
    ];

    /// The codes the server adds for requests that decode, in docs/protocol.md order.
    pub const SERVER: [ErrorCode; 5] = [
        ErrorCode::Forbidden,
        ErrorCode::RateLimited,
        ErrorCode::Unauthorized,
        ErrorCode::TooManySubscriptions,
        ErrorCode::TooManyTopics,
    ];

    /// The codes only the admin publish API answers with.
    pub const ADMIN: [ErrorCode; 3] = [ErrorCode::Busy, ErrorCode::Timeout, ErrorCode::Closed];

    /// The code as it goes on the wire: the `code` of an `err` in both encodings.
    pub const fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadJson => "bad_json",
            ErrorCode::BadOp => "bad_op",
            ErrorCode::MissingField => "missing_field",
            ErrorCode::BadField => "bad_field",
            ErrorCode::BadTopic => "bad_topic",
            ErrorCode::TooLarge => "too_large",
            ErrorCode::BadBinary => "bad_binary",
            ErrorCode::BadFrame => "bad_frame",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::TooManySubscriptions => "too_many_subscriptions",
            ErrorCode::TooManyTopics => "too_many_topics",
            ErrorCode::Busy => "busy",
            ErrorCode::Timeout => "timeout",
            ErrorCode::Closed => "closed",
        }
    }

    /// The label for metrics and logs (snake_case, no spaces): the wire code itself, so an
    /// operator's dashboard and a client's error handling name the same thing.
    pub const fn label(self) -> &'static str {
        self.as_str()
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a client message was refused; [`WireError::code`] is the `code` of the `err` reply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// Not a JSON object, or not valid JSON (also: JSON-flagged binary data that is not JSON).
    #[error("not valid JSON: {0}")]
    BadJson(String),
    /// The op is not one a client may send (shown quoted, or as a hex byte).
    #[error("unknown op {0}; a client sends sub, unsub or pub")]
    BadOp(String),
    /// A field the op requires is absent (or null).
    #[error("missing field `{0}`")]
    MissingField(&'static str),
    /// A field has the wrong type or an out-of-range value.
    #[error("bad field `{field}`: {reason}")]
    BadField {
        /// The field's JSON name.
        field: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The topic name breaks the topic rules.
    #[error(transparent)]
    BadTopic(#[from] TopicError),
    /// The message is over [`MAX_ENVELOPE_BYTES`](super::MAX_ENVELOPE_BYTES).
    #[error("message of {len} bytes is over the {max}-byte limit")]
    TooLarge {
        /// The message's length in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A binary message that does not follow the binary layout.
    #[error("malformed binary message: {0}")]
    BadBinary(&'static str),
    /// A text frame on a binary connection, or a binary frame on a JSON connection.
    #[error("this connection's encoding takes {expected} frames")]
    BadFrame {
        /// `"text"` or `"binary"`.
        expected: &'static str,
    },
}

impl WireError {
    /// The stable short code sent as the `code` of an `err` message (one of
    /// [`ErrorCode::DECODE`]).
    pub fn code(&self) -> ErrorCode {
        match self {
            WireError::BadJson(_) => ErrorCode::BadJson,
            WireError::BadOp(_) => ErrorCode::BadOp,
            WireError::MissingField(_) => ErrorCode::MissingField,
            WireError::BadField { .. } => ErrorCode::BadField,
            WireError::BadTopic(_) => ErrorCode::BadTopic,
            WireError::TooLarge { .. } => ErrorCode::TooLarge,
            WireError::BadBinary(_) => ErrorCode::BadBinary,
            WireError::BadFrame { .. } => ErrorCode::BadFrame,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [&[ErrorCode]; 3] = [&ErrorCode::DECODE, &ErrorCode::SERVER, &ErrorCode::ADMIN];

    #[test]
    fn codes_and_labels_are_unique_snake_case() {
        let mut seen = std::collections::HashSet::new();
        for &code in ALL.concat().iter() {
            let s = code.as_str();
            assert!(
                !s.is_empty() && s.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
                "{s}"
            );
            assert_eq!(code.label(), s);
            assert_eq!(code.to_string(), s);
            assert!(seen.insert(s), "duplicate code {s}");
        }
        assert_eq!(seen.len(), 16);
    }

    #[test]
    fn wire_codes_are_documented() {
        let doc = include_str!("../../../docs/protocol.md");
        for code in ErrorCode::DECODE.iter().chain(&ErrorCode::SERVER) {
            assert!(
                doc.contains(&format!("| `{code}` |")),
                "docs/protocol.md lacks {code}"
            );
        }
    }
}
