//! The client ops and the values they carry, apart from how either encoding writes them:
//! request ids, publish data, `sub`, `unsub`, `pub` and `auth`, and the field rules both
//! decoders check (sizes and lengths). [`check_pub`] applies the same rules to a publish that
//! arrives without a client envelope (the admin API's `POST /publish`, an embedder's
//! `Publisher`).

use std::borrow::Cow;
use std::fmt;

use super::binary::pub_len;
use super::json::json_value;
use super::{WireError, MAX_ENVELOPE_BYTES, MAX_ID_BYTES, MAX_KEY_BYTES, MAX_TOKEN_BYTES};
use crate::pubsub::topic_name::TopicName;

/// A request id, echoed back in `ack`, `err`, `subbed` and `unsubbed` exactly as it came.
///
/// JSON ids are strings or non-negative integers and come back in the same JSON type.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Id<'a> {
    /// A string id, 1 to [`MAX_ID_BYTES`] bytes (borrowed unless JSON escapes were undone).
    Str(Cow<'a, str>),
    /// A numeric id (JSON: an integer from 0 to 2^64 - 1).
    Num(u64),
}

impl Id<'_> {
    /// Detach from the input buffer (for an ack sent after the buffer is reused).
    pub fn into_owned(self) -> Id<'static> {
        match self {
            Id::Str(s) => Id::Str(Cow::Owned(s.into_owned())),
            Id::Num(n) => Id::Num(n),
        }
    }
}

impl fmt::Display for Id<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Id::Str(s) => write!(f, "{s:?}"),
            Id::Num(n) => write!(f, "{n}"),
        }
    }
}

impl<'a> From<&'a str> for Id<'a> {
    fn from(s: &'a str) -> Self {
        Id::Str(Cow::Borrowed(s))
    }
}

impl From<u64> for Id<'_> {
    fn from(n: u64) -> Self {
        Id::Num(n)
    }
}

/// Publish data, carried through unparsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Payload<'a> {
    /// One JSON value as text. Decoders guarantee it is valid JSON; encoders trust the caller.
    Json(&'a str),
    /// Opaque bytes (binary publishers only); JSON subscribers get them as `data_b64`.
    Bytes(&'a [u8]),
}

impl<'a> Payload<'a> {
    /// The payload's bytes (the JSON text for [`Payload::Json`]).
    pub fn as_bytes(&self) -> &'a [u8] {
        match *self {
            Payload::Json(text) => text.as_bytes(),
            Payload::Bytes(bytes) => bytes,
        }
    }

    /// Whether the payload is JSON text.
    pub fn is_json(&self) -> bool {
        matches!(self, Payload::Json(_))
    }
}

/// A decoded client message; it borrows the frame it was decoded from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientOp<'a> {
    /// Subscribe to `topic`; with `since`, resume after that sequence number.
    Sub {
        /// The topic.
        topic: TopicName<'a>,
        /// Resume after this seq: replay `since + 1 ..` from history, or get a `reset`.
        since: Option<u64>,
        /// Request id, echoed in `subbed` or `err`.
        id: Option<Id<'a>>,
    },
    /// Unsubscribe from `topic`.
    Unsub {
        /// The topic.
        topic: TopicName<'a>,
        /// Request id, echoed in `unsubbed` or `err`.
        id: Option<Id<'a>>,
    },
    /// Publish `data` to `topic`.
    Pub {
        /// The topic.
        topic: TopicName<'a>,
        /// The data, unparsed.
        data: Payload<'a>,
        /// Conflation key: a newer message with the same key may replace this one.
        key: Option<Cow<'a, str>>,
        /// Request id: asks for an `ack` carrying the assigned seq.
        id: Option<Id<'a>>,
    },
    /// Refresh the connection's token over the open connection.
    Auth(AuthOp<'a>),
}

/// An `auth` op: a fresh token for the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthOp<'a> {
    /// The token (a JWT), 1 to [`MAX_TOKEN_BYTES`] bytes.
    pub token: Cow<'a, str>,
    /// Request id, echoed in `authed` or `err`.
    pub id: Option<Id<'a>>,
}

impl<'a> ClientOp<'a> {
    /// The op name as it appears in JSON (`sub`, `unsub`, `pub`, `auth`).
    pub fn name(&self) -> &'static str {
        match self {
            ClientOp::Sub { .. } => "sub",
            ClientOp::Unsub { .. } => "unsub",
            ClientOp::Pub { .. } => "pub",
            ClientOp::Auth(_) => "auth",
        }
    }

    /// The topic the op names (`auth` names none).
    pub fn topic(&self) -> Option<TopicName<'a>> {
        match self {
            ClientOp::Sub { topic, .. }
            | ClientOp::Unsub { topic, .. }
            | ClientOp::Pub { topic, .. } => Some(*topic),
            ClientOp::Auth(_) => None,
        }
    }

    /// The request id, if any.
    pub fn id(&self) -> Option<&Id<'a>> {
        match self {
            ClientOp::Sub { id, .. }
            | ClientOp::Unsub { id, .. }
            | ClientOp::Pub { id, .. }
            | ClientOp::Auth(AuthOp { id, .. }) => id.as_ref(),
        }
    }
}

/// Refuse a client message over [`MAX_ENVELOPE_BYTES`] (the first check of both decoders).
pub(super) fn check_size(len: usize) -> Result<(), WireError> {
    if len > MAX_ENVELOPE_BYTES {
        return Err(WireError::TooLarge {
            len,
            max: MAX_ENVELOPE_BYTES,
        });
    }
    Ok(())
}

/// A string id, checked against [`MAX_ID_BYTES`].
pub(super) fn check_id_str(s: Cow<'_, str>) -> Result<Id<'_>, WireError> {
    if s.is_empty() || s.len() > MAX_ID_BYTES {
        return Err(WireError::BadField {
            field: "id",
            reason: "a string id must be 1 to 64 bytes",
        });
    }
    Ok(Id::Str(s))
}

/// A conflation key, checked against [`MAX_KEY_BYTES`].
pub(super) fn check_key(s: Cow<'_, str>) -> Result<Cow<'_, str>, WireError> {
    if s.is_empty() || s.len() > MAX_KEY_BYTES {
        return Err(WireError::BadField {
            field: "key",
            reason: "must be 1 to 128 bytes",
        });
    }
    Ok(s)
}

/// An `auth` token, checked against [`MAX_TOKEN_BYTES`].
pub(super) fn check_token(token: &str) -> Result<(), WireError> {
    if token.is_empty() || token.len() > MAX_TOKEN_BYTES {
        return Err(WireError::BadField {
            field: "token",
            reason: "must be 1 to 8192 bytes",
        });
    }
    Ok(())
}

/// Raw bytes of a string field (binary encoding) as UTF-8; not UTF-8 is `bad_field`.
pub(super) fn utf8_field<'a>(bytes: &'a [u8], field: &'static str) -> Result<&'a str, WireError> {
    std::str::from_utf8(bytes).map_err(|_| WireError::BadField {
        field,
        reason: "not UTF-8",
    })
}

/// A publish that passed every check a `pub` op passes: what [`check_pub`] returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckedPub<'a> {
    /// The topic.
    pub topic: TopicName<'a>,
    /// The conflation key, 1 to [`MAX_KEY_BYTES`] bytes of UTF-8.
    pub key: Option<&'a str>,
    /// The data: for JSON, one JSON value without the whitespace around it.
    pub data: Payload<'a>,
}

/// Check a publish that arrives without a client envelope (the admin API's `POST /publish`,
/// an embedder's `Publisher`) by exactly the rules a WebSocket `pub` passes, in the decoders'
/// order, each rule by the same function the decoders call:
///
/// 1. size: the smallest `pub` carrying it (the binary encoding's, without an id) must fit
///    in [`MAX_ENVELOPE_BYTES`] (`too_large`);
/// 2. `topic`: the topic rules, from raw bytes as in the binary encoding (`bad_topic`);
/// 3. `key`: UTF-8 and 1 to [`MAX_KEY_BYTES`] bytes (`bad_field`);
/// 4. `data`: when `json`, exactly one JSON value (`bad_json`) nesting at most
///    [`MAX_DATA_DEPTH`](super::MAX_DATA_DEPTH) levels (`bad_field`); opaque bytes otherwise.
pub fn check_pub<'a>(
    topic: &'a [u8],
    key: Option<&'a [u8]>,
    data: &'a [u8],
    json: bool,
) -> Result<CheckedPub<'a>, WireError> {
    check_size(pub_len(topic.len(), key.map(<[u8]>::len), data.len()))?;
    let topic = TopicName::from_bytes(topic)?;
    let key = match key {
        None => None,
        Some(bytes) => {
            let key = utf8_field(bytes, "key")?;
            check_key(Cow::Borrowed(key))?;
            Some(key)
        }
    };
    let data = if json {
        Payload::Json(json_value(data)?)
    } else {
        Payload::Bytes(data)
    };
    Ok(CheckedPub { topic, key, data })
}
