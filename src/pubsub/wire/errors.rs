//! [`WireError`]: why the codec refused a client message, and the `code` of the `err` reply.

use crate::pubsub::topic_name::TopicError;

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
    /// Every code [`WireError::code`] can return.
    pub const CODES: [&'static str; 8] = [
        "bad_json",
        "bad_op",
        "missing_field",
        "bad_field",
        "bad_topic",
        "too_large",
        "bad_binary",
        "bad_frame",
    ];

    /// The stable short code sent as the `code` of an `err` message.
    pub fn code(&self) -> &'static str {
        match self {
            WireError::BadJson(_) => "bad_json",
            WireError::BadOp(_) => "bad_op",
            WireError::MissingField(_) => "missing_field",
            WireError::BadField { .. } => "bad_field",
            WireError::BadTopic(_) => "bad_topic",
            WireError::TooLarge { .. } => "too_large",
            WireError::BadBinary(_) => "bad_binary",
            WireError::BadFrame { .. } => "bad_frame",
        }
    }
}
