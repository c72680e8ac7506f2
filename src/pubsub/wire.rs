//! The pub/sub wire codec: client ops in, server messages out, in JSON and in binary.
//!
//! Owns both encodings of protocol v1 (docs/protocol.md): decoding client messages into the
//! borrowed [`ClientOp`] and encoding every server message into a caller's buffer, by hand
//! (no serde on the encode path). Publish data is never re-serialised: JSON data stays the
//! raw text slice it arrived as, binary data stays the raw bytes. No I/O, no clock (times come
//! in as arguments), and no panics on any input.

use std::borrow::Cow;
use std::fmt;

use serde::Deserialize;
use serde_json::value::RawValue;

use super::topic_name::{TopicError, TopicName};

/// The subprotocol of the JSON encoding (text frames).
pub const JSON_SUBPROTOCOL: &str = "corecast.v1.json";

/// The subprotocol of the binary encoding (binary frames).
pub const BINARY_SUBPROTOCOL: &str = "corecast.v1.bin";

/// The largest client message the codec decodes, in bytes, envelope and data together. The
/// server's WebSocket limit (`max_message_bytes`) is checked first, at the frame layer.
pub const MAX_ENVELOPE_BYTES: usize = 64 * 1024;

/// The longest request id (a string id, in bytes after JSON unescaping).
pub const MAX_ID_BYTES: usize = 64;

/// The longest conflation key, in bytes after JSON unescaping.
pub const MAX_KEY_BYTES: usize = 128;

/// The deepest nesting of arrays and objects allowed in JSON data, so that every subscriber's
/// JSON parser (serde_json stops at 128 levels, Python's recursion limit is 1000) can read it.
pub const MAX_DATA_DEPTH: usize = 64;

/// Byte values of the binary encoding: op codes and flag bits (docs/protocol.md#binary).
pub mod binary {
    /// Client op: subscribe.
    pub const OP_SUB: u8 = 0x01;
    /// Client op: unsubscribe.
    pub const OP_UNSUB: u8 = 0x02;
    /// Client op: publish.
    pub const OP_PUB: u8 = 0x03;
    /// Server message: a published message.
    pub const OP_MSG: u8 = 0x81;
    /// Server message: a publish was sequenced.
    pub const OP_ACK: u8 = 0x82;
    /// Server message: an error.
    pub const OP_ERR: u8 = 0x83;
    /// Server message: a subscription is active.
    pub const OP_SUBBED: u8 = 0x84;
    /// Server message: the topic's sequence must be taken up afresh.
    pub const OP_RESET: u8 = 0x85;
    /// Server message: a subscription ended.
    pub const OP_UNSUBBED: u8 = 0x86;

    /// Flag: a string id follows (varint length + UTF-8).
    pub const FLAG_ID_STR: u8 = 0x01;
    /// Flag: a numeric id follows (varint).
    pub const FLAG_ID_NUM: u8 = 0x02;
    /// Flag: a `since` follows (varint); `sub` only.
    pub const FLAG_SINCE: u8 = 0x04;
    /// Flag: a conflation key follows (varint length + UTF-8); `pub` only.
    pub const FLAG_KEY: u8 = 0x08;
    /// Flag: the data is JSON text, not opaque bytes; `pub` and `msg` only.
    pub const FLAG_JSON: u8 = 0x10;
    /// Flag (no field): the server ended the subscription because the connection's token no
    /// longer allows the topic; `unsubbed` only.
    pub const FLAG_REVOKED: u8 = 0x20;

    /// Both id flags: at most one may be set.
    pub(crate) const FLAG_ID: u8 = FLAG_ID_STR | FLAG_ID_NUM;
}

use binary::*;

// ---------------------------------------------------------------------------------------------
// Encoding
// ---------------------------------------------------------------------------------------------

/// Which encoding a connection speaks, fixed by its WebSocket subprotocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Encoding {
    /// `corecast.v1.json`: JSON in text frames (also what a client that names no subprotocol gets).
    Json,
    /// `corecast.v1.bin`: the compact binary encoding in binary frames.
    Binary,
}

impl Encoding {
    /// Both subprotocol names, for the server's list of accepted subprotocols.
    pub const SUBPROTOCOLS: [&'static str; 2] = [JSON_SUBPROTOCOL, BINARY_SUBPROTOCOL];

    /// The encoding for a negotiated subprotocol: none means JSON; an unknown name is `None`.
    pub fn from_subprotocol(protocol: Option<&str>) -> Option<Encoding> {
        match protocol {
            None | Some(JSON_SUBPROTOCOL) => Some(Encoding::Json),
            Some(BINARY_SUBPROTOCOL) => Some(Encoding::Binary),
            Some(_) => None,
        }
    }

    /// The subprotocol name of this encoding.
    pub const fn subprotocol(self) -> &'static str {
        match self {
            Encoding::Json => JSON_SUBPROTOCOL,
            Encoding::Binary => BINARY_SUBPROTOCOL,
        }
    }

    /// Whether this encoding's messages travel in text frames (else binary frames).
    pub const fn is_text(self) -> bool {
        matches!(self, Encoding::Json)
    }

    /// Decode a client text frame: JSON on a JSON connection, `bad_frame` on a binary one.
    pub fn decode_text_frame(self, text: &str) -> Result<ClientOp<'_>, WireError> {
        match self {
            Encoding::Json => decode_json(text),
            Encoding::Binary => Err(WireError::BadFrame { expected: "binary" }),
        }
    }

    /// Decode a client binary frame: binary on a binary connection, `bad_frame` on a JSON one.
    pub fn decode_binary_frame(self, bytes: &[u8]) -> Result<ClientOp<'_>, WireError> {
        match self {
            Encoding::Json => Err(WireError::BadFrame { expected: "text" }),
            Encoding::Binary => decode_binary(bytes),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Values
// ---------------------------------------------------------------------------------------------

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
}

impl<'a> ClientOp<'a> {
    /// The op name as it appears in JSON (`sub`, `unsub`, `pub`).
    pub fn name(&self) -> &'static str {
        match self {
            ClientOp::Sub { .. } => "sub",
            ClientOp::Unsub { .. } => "unsub",
            ClientOp::Pub { .. } => "pub",
        }
    }

    /// The topic the op names.
    pub fn topic(&self) -> TopicName<'a> {
        match self {
            ClientOp::Sub { topic, .. }
            | ClientOp::Unsub { topic, .. }
            | ClientOp::Pub { topic, .. } => *topic,
        }
    }

    /// The request id, if any.
    pub fn id(&self) -> Option<&Id<'a>> {
        match self {
            ClientOp::Sub { id, .. } | ClientOp::Unsub { id, .. } | ClientOp::Pub { id, .. } => {
                id.as_ref()
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

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
    /// The message is over [`MAX_ENVELOPE_BYTES`].
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

const TRUNCATED: WireError = WireError::BadBinary("truncated");

fn check_size(len: usize) -> Result<(), WireError> {
    if len > MAX_ENVELOPE_BYTES {
        return Err(WireError::TooLarge {
            len,
            max: MAX_ENVELOPE_BYTES,
        });
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// JSON decoding
// ---------------------------------------------------------------------------------------------

/// The fields of a client message, each captured as raw JSON text; unknown fields are skipped.
#[derive(Deserialize)]
struct Fields<'a> {
    #[serde(default, borrow, deserialize_with = "raw_some")]
    op: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "raw_some")]
    topic: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "raw_some")]
    since: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "raw_some")]
    id: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "raw_some")]
    key: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "raw_some")]
    data: Option<&'a RawValue>,
}

/// Capture a field as raw text, `null` included (an `Option` would swallow it).
fn raw_some<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<&'de RawValue>, D::Error> {
    <&'de RawValue>::deserialize(d).map(Some)
}

fn parse_fields(input: &str) -> Result<Fields<'_>, WireError> {
    let first = input
        .trim_start_matches([' ', '\t', '\n', '\r'])
        .as_bytes()
        .first();
    if first != Some(&b'{') {
        return Err(WireError::BadJson("expected a JSON object".into()));
    }
    serde_json::from_str(input).map_err(|e| WireError::BadJson(e.to_string()))
}

/// The raw text of a field that is present and not `null`.
fn present(raw: Option<&RawValue>) -> Option<&str> {
    raw.map(RawValue::get).filter(|text| *text != "null")
}

/// A raw JSON string token's value: borrowed when it has no escapes. `None`: not a string.
fn json_string(raw: &str) -> Option<Result<Cow<'_, str>, ()>> {
    let inner = raw.strip_prefix('"')?.strip_suffix('"')?;
    if !inner.contains('\\') {
        return Some(Ok(Cow::Borrowed(inner)));
    }
    // Escapes are valid JSON syntax here, but a lone surrogate (`\ud800`) has no `str` form.
    Some(
        serde_json::from_str::<String>(raw)
            .map(Cow::Owned)
            .map_err(|_| ()),
    )
}

/// A raw JSON number token as a `u64`: digits only (no sign, fraction or exponent).
fn json_u64(raw: &str) -> Option<u64> {
    if raw.is_empty() || !raw.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    raw.parse().ok()
}

fn check_id_str(s: Cow<'_, str>) -> Result<Id<'_>, WireError> {
    if s.is_empty() || s.len() > MAX_ID_BYTES {
        return Err(WireError::BadField {
            field: "id",
            reason: "a string id must be 1 to 64 bytes",
        });
    }
    Ok(Id::Str(s))
}

fn check_key(s: Cow<'_, str>) -> Result<Cow<'_, str>, WireError> {
    if s.is_empty() || s.len() > MAX_KEY_BYTES {
        return Err(WireError::BadField {
            field: "key",
            reason: "must be 1 to 128 bytes",
        });
    }
    Ok(s)
}

fn json_id(raw: Option<&RawValue>) -> Result<Option<Id<'_>>, WireError> {
    const NOT_ID: WireError = WireError::BadField {
        field: "id",
        reason: "must be a string or an integer from 0 to 2^64-1",
    };
    let Some(text) = present(raw) else {
        return Ok(None);
    };
    match json_string(text) {
        Some(Ok(s)) => check_id_str(s).map(Some),
        Some(Err(())) => Err(WireError::BadField {
            field: "id",
            reason: "invalid escape",
        }),
        None => json_u64(text).map(|n| Some(Id::Num(n))).ok_or(NOT_ID),
    }
}

fn json_topic(raw: Option<&RawValue>) -> Result<TopicName<'_>, WireError> {
    let text = present(raw).ok_or(WireError::MissingField("topic"))?;
    let inner = text
        .strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .ok_or(TopicError::NotAString)?;
    if inner.contains('\\') {
        return Err(TopicError::Escaped.into());
    }
    TopicName::new(inner)
}

/// Decode a client message from the JSON encoding (a text frame's payload).
///
/// Fields are checked in this order, and the first failure is returned: size, JSON syntax,
/// `op`, `id`, `topic`, then `since` (sub) or `key` and `data` (pub). Unknown fields, and
/// fields the op does not define, are ignored; `null` counts as absent (except as `data`).
pub fn decode_json(input: &str) -> Result<ClientOp<'_>, WireError> {
    #[derive(Clone, Copy)]
    enum Op {
        Sub,
        Unsub,
        Pub,
    }
    check_size(input.len())?;
    let f = parse_fields(input)?;
    let op_text = present(f.op).ok_or(WireError::MissingField("op"))?;
    let op = match json_string(op_text) {
        Some(Ok(name)) => match &*name {
            "sub" => Op::Sub,
            "unsub" => Op::Unsub,
            "pub" => Op::Pub,
            _ => return Err(WireError::BadOp(shorten(&format!("{name:?}")))),
        },
        _ => return Err(WireError::BadOp(shorten(op_text))),
    };
    let id = json_id(f.id)?;
    let topic = json_topic(f.topic)?;
    match op {
        Op::Sub => {
            let since = match present(f.since) {
                None => None,
                Some(text) => Some(json_u64(text).ok_or(WireError::BadField {
                    field: "since",
                    reason: "must be an integer from 0 to 2^64-1",
                })?),
            };
            Ok(ClientOp::Sub { topic, since, id })
        }
        Op::Unsub => Ok(ClientOp::Unsub { topic, id }),
        Op::Pub => {
            let key = match present(f.key) {
                None => None,
                Some(text) => Some(match json_string(text) {
                    Some(Ok(s)) => check_key(s)?,
                    Some(Err(())) => {
                        return Err(WireError::BadField {
                            field: "key",
                            reason: "invalid escape",
                        })
                    }
                    None => {
                        return Err(WireError::BadField {
                            field: "key",
                            reason: "must be a string",
                        })
                    }
                }),
            };
            let data = f.data.ok_or(WireError::MissingField("data"))?.get();
            check_depth(data)?;
            Ok(ClientOp::Pub {
                topic,
                data: Payload::Json(data),
                key,
                id,
            })
        }
    }
}

/// The id of a JSON client message that failed to decode, if it can still be read, so the
/// `err` reply can carry it.
pub fn error_id_json(input: &str) -> Option<Id<'_>> {
    if input.len() > MAX_ENVELOPE_BYTES {
        return None;
    }
    json_id(parse_fields(input).ok()?.id).ok().flatten()
}

/// At most 40 characters of `s`, for echoing untrusted text in an error message.
fn shorten(s: &str) -> String {
    const MAX: usize = 40;
    match s.char_indices().nth(MAX) {
        None => s.to_owned(),
        Some((cut, _)) => format!("{}...", &s[..cut]),
    }
}

// ---------------------------------------------------------------------------------------------
// Binary decoding
// ---------------------------------------------------------------------------------------------

/// A cursor over a binary message.
struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn byte(&mut self) -> Result<u8, WireError> {
        let (&b, rest) = self.buf.split_first().ok_or(TRUNCATED)?;
        self.buf = rest;
        Ok(b)
    }

    /// An unsigned LEB128 varint of at most 10 bytes, in its shortest form.
    fn varint(&mut self) -> Result<u64, WireError> {
        let mut value = 0u64;
        for i in 0..10 {
            let b = self.byte()?;
            if i == 9 && b > 1 {
                return Err(WireError::BadBinary("varint over 64 bits"));
            }
            value |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                if b == 0 && i > 0 {
                    return Err(WireError::BadBinary("varint not in its shortest form"));
                }
                return Ok(value);
            }
        }
        Err(WireError::BadBinary("varint over 64 bits"))
    }

    fn take(&mut self, len: u64) -> Result<&'a [u8], WireError> {
        if len > self.buf.len() as u64 {
            return Err(TRUNCATED);
        }
        let (head, rest) = self.buf.split_at(len as usize);
        self.buf = rest;
        Ok(head)
    }

    /// A varint length, then that many bytes.
    fn sized(&mut self) -> Result<&'a [u8], WireError> {
        let len = self.varint()?;
        self.take(len)
    }

    fn utf8(&mut self, field: &'static str) -> Result<&'a str, WireError> {
        let bytes = self.sized()?;
        std::str::from_utf8(bytes).map_err(|_| WireError::BadField {
            field,
            reason: "not UTF-8",
        })
    }

    fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.buf)
    }

    fn finish(&self) -> Result<(), WireError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(WireError::BadBinary("trailing bytes"))
        }
    }

    /// The op and flags bytes; flags outside `allowed` (for `op`) are an error.
    fn head(&mut self, allowed: impl Fn(u8) -> Option<u8>) -> Result<(u8, u8), WireError> {
        let op = self
            .byte()
            .map_err(|_| WireError::BadBinary("empty message"))?;
        let allowed = allowed(op).ok_or_else(|| WireError::BadOp(format!("{op:#04x}")))?;
        let flags = self.byte()?;
        if flags & !allowed != 0 {
            return Err(WireError::BadBinary(
                "flag bits set that this op does not define",
            ));
        }
        if flags & FLAG_ID == FLAG_ID {
            return Err(WireError::BadBinary("both id flags set"));
        }
        Ok((op, flags))
    }

    fn id(&mut self, flags: u8) -> Result<Option<Id<'a>>, WireError> {
        if flags & FLAG_ID_STR != 0 {
            check_id_str(Cow::Borrowed(self.utf8("id")?)).map(Some)
        } else if flags & FLAG_ID_NUM != 0 {
            Ok(Some(Id::Num(self.varint()?)))
        } else {
            Ok(None)
        }
    }

    fn topic(&mut self) -> Result<TopicName<'a>, WireError> {
        TopicName::from_bytes(self.sized()?)
    }
}

fn client_flags(op: u8) -> Option<u8> {
    match op {
        OP_SUB => Some(FLAG_ID | FLAG_SINCE),
        OP_UNSUB => Some(FLAG_ID),
        OP_PUB => Some(FLAG_ID | FLAG_KEY | FLAG_JSON),
        _ => None,
    }
}

/// Decode a client message from the binary encoding (a binary frame's payload).
///
/// Layout: op, flags, then the fields the flags announce in a fixed order; `pub` data runs to
/// the end. JSON-flagged data is checked to be one valid JSON value.
pub fn decode_binary(input: &[u8]) -> Result<ClientOp<'_>, WireError> {
    check_size(input.len())?;
    let mut r = Reader { buf: input };
    let (op, flags) = r.head(client_flags)?;
    let id = r.id(flags)?;
    let topic = r.topic()?;
    match op {
        OP_SUB => {
            let since = if flags & FLAG_SINCE != 0 {
                Some(r.varint()?)
            } else {
                None
            };
            r.finish()?;
            Ok(ClientOp::Sub { topic, since, id })
        }
        OP_UNSUB => {
            r.finish()?;
            Ok(ClientOp::Unsub { topic, id })
        }
        _ => {
            let key = if flags & FLAG_KEY != 0 {
                Some(check_key(Cow::Borrowed(r.utf8("key")?))?)
            } else {
                None
            };
            let bytes = r.rest();
            let data = if flags & FLAG_JSON != 0 {
                Payload::Json(json_data(bytes)?)
            } else {
                Payload::Bytes(bytes)
            };
            Ok(ClientOp::Pub {
                topic,
                data,
                key,
                id,
            })
        }
    }
}

/// Check that JSON-flagged binary data is exactly one JSON value; returns it without the
/// whitespace around it.
fn json_data(bytes: &[u8]) -> Result<&str, WireError> {
    let text = std::str::from_utf8(bytes)
        .map_err(|_| WireError::BadJson("JSON-flagged data is not UTF-8".into()))?;
    let raw: &RawValue = serde_json::from_str(text)
        .map_err(|e| WireError::BadJson(format!("JSON-flagged data: {e}")))?;
    check_depth(raw.get())?;
    Ok(raw.get())
}

/// Refuse (valid) JSON text that nests arrays and objects deeper than [`MAX_DATA_DEPTH`].
fn check_depth(json: &str) -> Result<(), WireError> {
    let bytes = json.as_bytes();
    // A scalar cannot nest.
    if !matches!(bytes.first(), Some(b'[' | b'{')) {
        return Ok(());
    }
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for &b in bytes {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > MAX_DATA_DEPTH {
                    return Err(WireError::BadField {
                        field: "data",
                        reason: "nests arrays and objects deeper than 64 levels",
                    });
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

/// The id of a binary client message that failed to decode, if it can still be read, so the
/// `err` reply can carry it.
pub fn error_id_binary(input: &[u8]) -> Option<Id<'_>> {
    let mut r = Reader { buf: input };
    let (_, flags) = r.head(client_flags).ok()?;
    r.id(flags).ok().flatten()
}

// ---------------------------------------------------------------------------------------------
// Output buffers
// ---------------------------------------------------------------------------------------------

mod sealed {
    pub trait Sealed {}
    impl Sealed for Vec<u8> {}
    impl Sealed for bytes::BytesMut {}
}

/// A growable buffer the encoders append to: `Vec<u8>` or `BytesMut` (sealed, so an encoder
/// can never run out of room and panic).
pub trait WireBuf: sealed::Sealed {
    /// Append `bytes`.
    fn put(&mut self, bytes: &[u8]);
    /// Make room for `additional` more bytes.
    fn reserve_more(&mut self, additional: usize);
}

impl WireBuf for Vec<u8> {
    #[inline]
    fn put(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
    #[inline]
    fn reserve_more(&mut self, additional: usize) {
        self.reserve(additional);
    }
}

impl WireBuf for bytes::BytesMut {
    #[inline]
    fn put(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
    #[inline]
    fn reserve_more(&mut self, additional: usize) {
        self.reserve(additional);
    }
}

// ---------------------------------------------------------------------------------------------
// Primitive writers
// ---------------------------------------------------------------------------------------------

const DEC_PAIRS: &[u8; 200] = b"\
    0001020304050607080910111213141516171819\
    2021222324252627282930313233343536373839\
    4041424344454647484950515253545556575859\
    6061626364656667686970717273747576777879\
    8081828384858687888990919293949596979899";

/// Append `n` in decimal.
fn put_dec<B: WireBuf + ?Sized>(out: &mut B, mut n: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    while n >= 100 {
        let pair = (n % 100) as usize * 2;
        n /= 100;
        i -= 2;
        buf[i..i + 2].copy_from_slice(&DEC_PAIRS[pair..pair + 2]);
    }
    if n >= 10 {
        let pair = n as usize * 2;
        i -= 2;
        buf[i..i + 2].copy_from_slice(&DEC_PAIRS[pair..pair + 2]);
    } else {
        i -= 1;
        buf[i] = b'0' + n as u8;
    }
    out.put(&buf[i..]);
}

/// Number of decimal digits of `n`.
fn dec_len(n: u64) -> usize {
    n.checked_ilog10().map_or(1, |d| d as usize + 1)
}

/// Append `n` as an unsigned LEB128 varint.
fn put_varint<B: WireBuf + ?Sized>(out: &mut B, mut n: u64) {
    let mut buf = [0u8; 10];
    let mut i = 0;
    while n >= 0x80 {
        buf[i] = (n as u8) | 0x80;
        n >>= 7;
        i += 1;
    }
    buf[i] = n as u8;
    out.put(&buf[..=i]);
}

/// Encoded length of `n` as a varint.
fn varint_len(n: u64) -> usize {
    (64 - (n | 1).leading_zeros() as usize).div_ceil(7)
}

/// Append `bytes` with a varint length prefix.
fn put_sized<B: WireBuf + ?Sized>(out: &mut B, bytes: &[u8]) {
    put_varint(out, bytes.len() as u64);
    out.put(bytes);
}

fn sized_len(len: usize) -> usize {
    varint_len(len as u64) + len
}

/// The escape sequence for a byte that JSON strings may not hold raw, if it is one.
#[inline]
fn json_escape(b: u8) -> Option<&'static [u8]> {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    const fn table() -> [[u8; 6]; 32] {
        let mut t = [[0u8; 6]; 32];
        let mut i = 0;
        while i < 32 {
            t[i] = [b'\\', b'u', b'0', b'0', HEX[i >> 4], HEX[i & 15]];
            i += 1;
        }
        t
    }
    static CONTROL: [[u8; 6]; 32] = table();
    match b {
        b'"' => Some(b"\\\""),
        b'\\' => Some(b"\\\\"),
        b'\n' => Some(b"\\n"),
        b'\r' => Some(b"\\r"),
        b'\t' => Some(b"\\t"),
        0x08 => Some(b"\\b"),
        0x0c => Some(b"\\f"),
        0..=0x1f => Some(&CONTROL[b as usize]),
        _ => None,
    }
}

/// Append the body of a JSON string for `s` (no quotes): `"`, `\` and control characters
/// escaped, everything else (all of Unicode) as UTF-8.
fn put_json_escaped<B: WireBuf + ?Sized>(out: &mut B, s: &str) {
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        if let Some(esc) = json_escape(b) {
            out.put(&bytes[start..i]);
            out.put(esc);
            start = i + 1;
        }
    }
    out.put(&bytes[start..]);
}

/// Append `s` as a quoted JSON string.
fn put_json_str<B: WireBuf + ?Sized>(out: &mut B, s: &str) {
    out.put(b"\"");
    put_json_escaped(out, s);
    out.put(b"\"");
}

/// A `fmt::Write` that appends JSON-escaped text (for `Display` output inside a string).
struct JsonText<'b, B: ?Sized>(&'b mut B);

impl<B: WireBuf + ?Sized> fmt::Write for JsonText<'_, B> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        put_json_escaped(self.0, s);
        Ok(())
    }
}

/// A `fmt::Write` that appends text as it is.
struct RawText<'b, B: ?Sized>(&'b mut B);

impl<B: WireBuf + ?Sized> fmt::Write for RawText<'_, B> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.0.put(s.as_bytes());
        Ok(())
    }
}

/// Append `bytes` as standard base64 with padding (RFC 4648 section 4).
fn put_base64<B: WireBuf + ?Sized>(out: &mut B, bytes: &[u8]) {
    use base64::Engine as _;
    // 768 input bytes make 1024 output bytes; a multiple of 3 keeps padding at the very end.
    let mut buf = [0u8; 1024];
    for chunk in bytes.chunks(768) {
        let n = base64::engine::general_purpose::STANDARD
            .encode_slice(chunk, &mut buf)
            .unwrap_or(0); // unreachable: the buffer fits a full chunk
        out.put(&buf[..n]);
    }
}

fn base64_len(len: usize) -> usize {
    len.div_ceil(3) * 4
}

/// Append a JSON id (string with escapes, or number).
fn put_json_id<B: WireBuf + ?Sized>(out: &mut B, id: &Id<'_>) {
    match id {
        Id::Str(s) => put_json_str(out, s),
        Id::Num(n) => put_dec(out, *n),
    }
}

/// The id flag bits for an optional id.
fn id_flags(id: Option<&Id<'_>>) -> u8 {
    match id {
        None => 0,
        Some(Id::Str(_)) => FLAG_ID_STR,
        Some(Id::Num(_)) => FLAG_ID_NUM,
    }
}

/// Append a binary id field (for the flags [`id_flags`] gave).
fn put_bin_id<B: WireBuf + ?Sized>(out: &mut B, id: Option<&Id<'_>>) {
    match id {
        None => {}
        Some(Id::Str(s)) => put_sized(out, s.as_bytes()),
        Some(Id::Num(n)) => put_varint(out, *n),
    }
}

// ---------------------------------------------------------------------------------------------
// Server messages
// ---------------------------------------------------------------------------------------------

/// Append a `msg` in `enc` (the body only: the WebSocket frame header is added elsewhere).
pub fn encode_msg<B: WireBuf + ?Sized>(
    enc: Encoding,
    topic: TopicName<'_>,
    seq: u64,
    ts_us: u64,
    data: Payload<'_>,
    out: &mut B,
) {
    match enc {
        Encoding::Json => encode_msg_json(topic, seq, ts_us, data, out),
        Encoding::Binary => encode_msg_binary(topic, seq, ts_us, data, out),
    }
}

/// The exact length [`encode_msg`] appends, to size a frame before encoding into it.
pub fn msg_len(
    enc: Encoding,
    topic: TopicName<'_>,
    seq: u64,
    ts_us: u64,
    data: Payload<'_>,
) -> usize {
    match enc {
        Encoding::Json => msg_json_len(topic, seq, ts_us, data),
        Encoding::Binary => msg_binary_len(topic, seq, ts_us, data),
    }
}

const MSG_JSON_HEAD: &[u8] = b"{\"op\":\"msg\",\"topic\":\"";
const MSG_JSON_SEQ: &[u8] = b"\",\"seq\":";
const MSG_JSON_TS: &[u8] = b",\"ts\":";
const MSG_JSON_DATA: &[u8] = b",\"data\":";
const MSG_JSON_DATA_B64: &[u8] = b",\"data_b64\":\"";

/// Append a `msg` as JSON: `{"op":"msg","topic":..,"seq":..,"ts":..,"data":..}`, with
/// `"data_b64":"<base64>"` in place of `data` for opaque bytes. JSON data is spliced verbatim.
pub fn encode_msg_json<B: WireBuf + ?Sized>(
    topic: TopicName<'_>,
    seq: u64,
    ts_us: u64,
    data: Payload<'_>,
    out: &mut B,
) {
    debug_assert!(
        !matches!(data, Payload::Json(t) if serde_json::from_str::<&RawValue>(t).is_err()),
        "Payload::Json must hold valid JSON"
    );
    out.reserve_more(msg_json_len(topic, seq, ts_us, data));
    out.put(MSG_JSON_HEAD);
    out.put(topic.as_str().as_bytes());
    out.put(MSG_JSON_SEQ);
    put_dec(out, seq);
    out.put(MSG_JSON_TS);
    put_dec(out, ts_us);
    match data {
        Payload::Json(text) => {
            out.put(MSG_JSON_DATA);
            out.put(text.as_bytes());
            out.put(b"}");
        }
        Payload::Bytes(bytes) => {
            out.put(MSG_JSON_DATA_B64);
            put_base64(out, bytes);
            out.put(b"\"}");
        }
    }
}

/// The exact length [`encode_msg_json`] appends.
pub fn msg_json_len(topic: TopicName<'_>, seq: u64, ts_us: u64, data: Payload<'_>) -> usize {
    let fixed = MSG_JSON_HEAD.len() + MSG_JSON_SEQ.len() + MSG_JSON_TS.len() + 1;
    let data_len = match data {
        Payload::Json(text) => MSG_JSON_DATA.len() + text.len(),
        Payload::Bytes(bytes) => MSG_JSON_DATA_B64.len() + base64_len(bytes.len()) + 1,
    };
    fixed + topic.len() + dec_len(seq) + dec_len(ts_us) + data_len
}

/// Append a `msg` in binary: `81`, flags (`JSON` or 0), topic, seq, ts, then the data bytes.
pub fn encode_msg_binary<B: WireBuf + ?Sized>(
    topic: TopicName<'_>,
    seq: u64,
    ts_us: u64,
    data: Payload<'_>,
    out: &mut B,
) {
    out.reserve_more(msg_binary_len(topic, seq, ts_us, data));
    let flags = if data.is_json() { FLAG_JSON } else { 0 };
    out.put(&[OP_MSG, flags]);
    put_sized(out, topic.as_str().as_bytes());
    put_varint(out, seq);
    put_varint(out, ts_us);
    out.put(data.as_bytes());
}

/// The exact length [`encode_msg_binary`] appends.
pub fn msg_binary_len(topic: TopicName<'_>, seq: u64, ts_us: u64, data: Payload<'_>) -> usize {
    2 + sized_len(topic.len()) + varint_len(seq) + varint_len(ts_us) + data.as_bytes().len()
}

/// Append an `ack`: the publish with this `id` was given sequence number `seq`.
pub fn encode_ack<B: WireBuf + ?Sized>(enc: Encoding, id: &Id<'_>, seq: u64, out: &mut B) {
    match enc {
        Encoding::Json => {
            out.put(b"{\"op\":\"ack\",\"id\":");
            put_json_id(out, id);
            out.put(b",\"seq\":");
            put_dec(out, seq);
            out.put(b"}");
        }
        Encoding::Binary => {
            out.put(&[OP_ACK, id_flags(Some(id))]);
            put_bin_id(out, Some(id));
            put_varint(out, seq);
        }
    }
}

/// Append an `err` with a short `code` and a human `msg`; `id` is the failed request's, if known.
pub fn encode_err<B: WireBuf + ?Sized>(
    enc: Encoding,
    id: Option<&Id<'_>>,
    code: &str,
    msg: &str,
    out: &mut B,
) {
    encode_err_fmt(enc, id, code, &msg, out);
}

/// Append the `err` for a [`WireError`]: its code, and its `Display` text as `msg`.
pub fn encode_error<B: WireBuf + ?Sized>(
    enc: Encoding,
    id: Option<&Id<'_>>,
    err: &WireError,
    out: &mut B,
) {
    encode_err_fmt(enc, id, err.code(), err, out);
}

fn encode_err_fmt<B: WireBuf + ?Sized>(
    enc: Encoding,
    id: Option<&Id<'_>>,
    code: &str,
    msg: &dyn fmt::Display,
    out: &mut B,
) {
    use fmt::Write as _;
    match enc {
        Encoding::Json => {
            out.put(b"{\"op\":\"err\"");
            if let Some(id) = id {
                out.put(b",\"id\":");
                put_json_id(out, id);
            }
            out.put(b",\"code\":");
            put_json_str(out, code);
            out.put(b",\"msg\":\"");
            // Writing into a buffer cannot fail; only a broken Display impl could.
            let _ = write!(JsonText(out), "{msg}");
            out.put(b"\"}");
        }
        Encoding::Binary => {
            out.put(&[OP_ERR, id_flags(id)]);
            put_bin_id(out, id);
            put_sized(out, code.as_bytes());
            let _ = write!(RawText(out), "{msg}");
        }
    }
}

/// Append a `subbed`: the subscription to `topic` is active and `seq` is the topic's current
/// (last assigned) sequence number; `id` is the `sub`'s, if it had one.
pub fn encode_subbed<B: WireBuf + ?Sized>(
    enc: Encoding,
    topic: TopicName<'_>,
    seq: u64,
    id: Option<&Id<'_>>,
    out: &mut B,
) {
    match enc {
        Encoding::Json => {
            out.put(b"{\"op\":\"subbed\",\"topic\":\"");
            out.put(topic.as_str().as_bytes());
            out.put(b"\",\"seq\":");
            put_dec(out, seq);
            if let Some(id) = id {
                out.put(b",\"id\":");
                put_json_id(out, id);
            }
            out.put(b"}");
        }
        Encoding::Binary => {
            out.put(&[OP_SUBBED, id_flags(id)]);
            put_bin_id(out, id);
            put_sized(out, topic.as_str().as_bytes());
            put_varint(out, seq);
        }
    }
}

/// Append a `reset`: the client's position in `topic` is void; go on from `seq`.
pub fn encode_reset<B: WireBuf + ?Sized>(
    enc: Encoding,
    topic: TopicName<'_>,
    seq: u64,
    out: &mut B,
) {
    match enc {
        Encoding::Json => {
            out.put(b"{\"op\":\"reset\",\"topic\":\"");
            out.put(topic.as_str().as_bytes());
            out.put(b"\",\"seq\":");
            put_dec(out, seq);
            out.put(b"}");
        }
        Encoding::Binary => {
            out.put(&[OP_RESET, 0]);
            put_sized(out, topic.as_str().as_bytes());
            put_varint(out, seq);
        }
    }
}

/// Append an `unsubbed`: no `msg` for `topic` follows; `id` is the `unsub`'s, if it had one.
pub fn encode_unsubbed<B: WireBuf + ?Sized>(
    enc: Encoding,
    topic: TopicName<'_>,
    id: Option<&Id<'_>>,
    out: &mut B,
) {
    put_unsubbed(enc, topic, id, false, out);
}

/// Append an `unsubbed` the server sends on its own: the connection's refreshed token no
/// longer allows `topic` (JSON `"reason":"forbidden"`, binary flag `REVOKED`).
pub fn encode_revoked<B: WireBuf + ?Sized>(enc: Encoding, topic: TopicName<'_>, out: &mut B) {
    put_unsubbed(enc, topic, None, true, out);
}

fn put_unsubbed<B: WireBuf + ?Sized>(
    enc: Encoding,
    topic: TopicName<'_>,
    id: Option<&Id<'_>>,
    revoked: bool,
    out: &mut B,
) {
    match enc {
        Encoding::Json => {
            out.put(b"{\"op\":\"unsubbed\",\"topic\":\"");
            out.put(topic.as_str().as_bytes());
            out.put(b"\"");
            if let Some(id) = id {
                out.put(b",\"id\":");
                put_json_id(out, id);
            }
            if revoked {
                out.put(b",\"reason\":\"forbidden\"");
            }
            out.put(b"}");
        }
        Encoding::Binary => {
            let flags = id_flags(id) | if revoked { FLAG_REVOKED } else { 0 };
            out.put(&[OP_UNSUBBED, flags]);
            put_bin_id(out, id);
            put_sized(out, topic.as_str().as_bytes());
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Client ops (for clients, load generators and tests)
// ---------------------------------------------------------------------------------------------

/// Append a client op in `enc`; fails only for opaque bytes in JSON, which has no form for them.
pub fn encode_op<B: WireBuf + ?Sized>(
    enc: Encoding,
    op: &ClientOp<'_>,
    out: &mut B,
) -> Result<(), WireError> {
    match enc {
        Encoding::Json => encode_op_json(op, out),
        Encoding::Binary => {
            encode_op_binary(op, out);
            Ok(())
        }
    }
}

/// Append a client op as JSON (`data` last); `Payload::Bytes` is refused with `bad_field`.
pub fn encode_op_json<B: WireBuf + ?Sized>(
    op: &ClientOp<'_>,
    out: &mut B,
) -> Result<(), WireError> {
    if let ClientOp::Pub {
        data: Payload::Bytes(_),
        ..
    } = op
    {
        return Err(WireError::BadField {
            field: "data",
            reason: "opaque bytes have no JSON form; publish them in the binary encoding",
        });
    }
    out.put(b"{\"op\":\"");
    out.put(op.name().as_bytes());
    out.put(b"\",\"topic\":\"");
    out.put(op.topic().as_str().as_bytes());
    out.put(b"\"");
    if let ClientOp::Sub {
        since: Some(since), ..
    } = op
    {
        out.put(b",\"since\":");
        put_dec(out, *since);
    }
    if let ClientOp::Pub { key: Some(key), .. } = op {
        out.put(b",\"key\":");
        put_json_str(out, key);
    }
    if let Some(id) = op.id() {
        out.put(b",\"id\":");
        put_json_id(out, id);
    }
    if let ClientOp::Pub { data, .. } = op {
        out.put(b",\"data\":");
        out.put(data.as_bytes());
    }
    out.put(b"}");
    Ok(())
}

/// Append a client op in the binary encoding.
pub fn encode_op_binary<B: WireBuf + ?Sized>(op: &ClientOp<'_>, out: &mut B) {
    let id = op.id();
    match op {
        ClientOp::Sub { topic, since, .. } => {
            let flags = id_flags(id) | if since.is_some() { FLAG_SINCE } else { 0 };
            out.put(&[OP_SUB, flags]);
            put_bin_id(out, id);
            put_sized(out, topic.as_str().as_bytes());
            if let Some(since) = since {
                put_varint(out, *since);
            }
        }
        ClientOp::Unsub { topic, .. } => {
            out.put(&[OP_UNSUB, id_flags(id)]);
            put_bin_id(out, id);
            put_sized(out, topic.as_str().as_bytes());
        }
        ClientOp::Pub {
            topic, data, key, ..
        } => {
            let flags = id_flags(id)
                | if key.is_some() { FLAG_KEY } else { 0 }
                | if data.is_json() { FLAG_JSON } else { 0 };
            out.put(&[OP_PUB, flags]);
            put_bin_id(out, id);
            put_sized(out, topic.as_str().as_bytes());
            if let Some(key) = key {
                put_sized(out, key.as_bytes());
            }
            out.put(data.as_bytes());
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The auth op (in-band token refresh)
// ---------------------------------------------------------------------------------------------

/// Client op byte of `auth` in the binary encoding.
pub const OP_AUTH: u8 = 0x04;
/// Server message byte of `authed` in the binary encoding.
pub const OP_AUTHED: u8 = 0x87;
/// The longest token the `auth` op carries, in bytes.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;

/// An `auth` op: a fresh token for the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthOp<'a> {
    /// The token (a JWT).
    pub token: Cow<'a, str>,
    /// Request id, echoed in `authed` or `err`.
    pub id: Option<Id<'a>>,
}

/// Decode an `auth` op, or `None` when the message is not one. It is decoded apart from
/// [`ClientOp`] (and tried only after [`decode_json`] reports an unknown op), so `sub` and
/// `pub` pay nothing for it.
///
/// JSON: `{"op":"auth","token":"<JWT>","id":...}`.
pub fn decode_auth_json(input: &str) -> Option<Result<AuthOp<'_>, WireError>> {
    #[derive(Deserialize)]
    struct Auth<'a> {
        #[serde(default, borrow, deserialize_with = "raw_some")]
        op: Option<&'a RawValue>,
        #[serde(default, borrow, deserialize_with = "raw_some")]
        token: Option<&'a RawValue>,
        #[serde(default, borrow, deserialize_with = "raw_some")]
        id: Option<&'a RawValue>,
    }
    if input.len() > MAX_ENVELOPE_BYTES {
        return None;
    }
    let f: Auth<'_> = serde_json::from_str(input).ok()?;
    if present(f.op)? != "\"auth\"" {
        return None;
    }
    Some((|| {
        let id = json_id(f.id)?;
        let raw = present(f.token).ok_or(WireError::MissingField("token"))?;
        let token = match json_string(raw) {
            Some(Ok(t)) => t,
            _ => {
                return Err(WireError::BadField {
                    field: "token",
                    reason: "must be a string",
                })
            }
        };
        check_token(&token)?;
        Ok(AuthOp { token, id })
    })())
}

/// Decode a binary `auth` op, or `None` when the message is not one.
///
/// Binary: `0x04`, flags (id flags only), the id if flagged, then the token (varint length
/// and UTF-8).
pub fn decode_auth_binary(input: &[u8]) -> Option<Result<AuthOp<'_>, WireError>> {
    if input.first() != Some(&OP_AUTH) || input.len() > MAX_ENVELOPE_BYTES {
        return None;
    }
    let mut r = Reader { buf: input };
    Some((|| {
        let (_, flags) = r.head(|op| (op == OP_AUTH).then_some(FLAG_ID))?;
        let id = r.id(flags)?;
        let token = Cow::Borrowed(r.utf8("token")?);
        r.finish()?;
        check_token(&token)?;
        Ok(AuthOp { token, id })
    })())
}

fn check_token(token: &str) -> Result<(), WireError> {
    if token.is_empty() || token.len() > MAX_TOKEN_BYTES {
        return Err(WireError::BadField {
            field: "token",
            reason: "must be 1 to 8192 bytes",
        });
    }
    Ok(())
}

/// Append the `authed` reply: the new token was accepted; `exp` is its expiry in seconds
/// since the Unix epoch (0: none).
///
/// JSON: `{"op":"authed","exp":1700000000,"id":...}`. Binary: `0x87`, flags, id, varint exp.
pub fn encode_authed<B: WireBuf + ?Sized>(
    enc: Encoding,
    exp: u64,
    id: Option<&Id<'_>>,
    out: &mut B,
) {
    match enc {
        Encoding::Json => {
            out.put(b"{\"op\":\"authed\",\"exp\":");
            put_dec(out, exp);
            if let Some(id) = id {
                out.put(b",\"id\":");
                put_json_id(out, id);
            }
            out.put(b"}");
        }
        Encoding::Binary => {
            out.put(&[OP_AUTHED, id_flags(id)]);
            put_bin_id(out, id);
            put_varint(out, exp);
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn auth_op_in_both_encodings() {
        let a = decode_auth_json(r#"{"op":"auth","token":"a.b.c","id":"r1"}"#)
            .unwrap()
            .unwrap();
        assert_eq!(a.token, "a.b.c");
        assert_eq!(a.id, Some(Id::Str("r1".into())));
        assert!(decode_auth_json(r#"{"op":"sub","topic":"a"}"#).is_none());
        assert!(decode_auth_json("not json").is_none());
        assert_eq!(
            decode_auth_json(r#"{"op":"auth"}"#).unwrap(),
            Err(WireError::MissingField("token"))
        );
        assert!(decode_auth_json(r#"{"op":"auth","token":7}"#)
            .unwrap()
            .is_err());
        let mut bin = vec![OP_AUTH, FLAG_ID_NUM, 9];
        put_sized(&mut bin, b"x.y.z");
        let a = decode_auth_binary(&bin).unwrap().unwrap();
        assert_eq!((a.token.as_ref(), a.id), ("x.y.z", Some(Id::Num(9))));
        assert!(decode_auth_binary(&[OP_SUB, 0]).is_none());
        assert!(decode_auth_binary(&[OP_AUTH, FLAG_SINCE]).unwrap().is_err());
        bin.push(0);
        assert!(decode_auth_binary(&bin).unwrap().is_err(), "trailing bytes");
        let mut out = Vec::new();
        encode_authed(Encoding::Json, 1700, Some(&Id::Num(3)), &mut out);
        assert_eq!(out, br#"{"op":"authed","exp":1700,"id":3}"#);
        out.clear();
        encode_authed(Encoding::Binary, 300, None, &mut out);
        assert_eq!(out, [OP_AUTHED, 0, 0xac, 0x02]);
    }

    use super::*;
    use crate::pubsub::MAX_TOPIC_BYTES;
    use serde_json::{json, Value};

    // -----------------------------------------------------------------------------------------
    // Helpers, and a test-side decoder for server messages
    // -----------------------------------------------------------------------------------------

    fn t(name: &str) -> TopicName<'_> {
        TopicName::new(name).unwrap()
    }

    fn hex(bytes: &[u8]) -> String {
        bytes
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(" ")
    }

    fn unhex(s: &str) -> Vec<u8> {
        s.split_whitespace()
            .map(|h| u8::from_str_radix(h, 16).unwrap())
            .collect()
    }

    fn op_json(op: &ClientOp<'_>) -> String {
        let mut out = Vec::new();
        encode_op_json(op, &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    fn op_bin(op: &ClientOp<'_>) -> Vec<u8> {
        let mut out = Vec::new();
        encode_op_binary(op, &mut out);
        out
    }

    fn code_of_json(input: &str) -> &'static str {
        match decode_json(input) {
            Err(e) => e.code(),
            Ok(op) => panic!("{input:?} decoded to {op:?}"),
        }
    }

    fn code_of_bin(input: &[u8]) -> &'static str {
        match decode_binary(input) {
            Err(e) => e.code(),
            Ok(op) => panic!("{} decoded to {op:?}", hex(input)),
        }
    }

    /// A server message as a client sees it, owned (the test-side decoder's output).
    #[derive(Debug, Clone, PartialEq, Eq)]
    enum Srv {
        Msg {
            topic: String,
            seq: u64,
            ts: u64,
            json: bool,
            data: Vec<u8>,
        },
        Ack {
            id: Id<'static>,
            seq: u64,
        },
        Err {
            id: Option<Id<'static>>,
            code: String,
            msg: String,
        },
        Subbed {
            topic: String,
            seq: u64,
            id: Option<Id<'static>>,
        },
        Reset {
            topic: String,
            seq: u64,
        },
        Unsubbed {
            topic: String,
            id: Option<Id<'static>>,
            revoked: bool,
        },
    }

    /// Decode a binary server message strictly (every byte accounted for).
    fn decode_srv_bin(input: &[u8]) -> Result<Srv, WireError> {
        let mut r = Reader { buf: input };
        let (op, flags) = r.head(|op| match op {
            OP_MSG => Some(FLAG_JSON),
            OP_ACK | OP_ERR | OP_SUBBED => Some(FLAG_ID),
            OP_UNSUBBED => Some(FLAG_ID | FLAG_REVOKED),
            OP_RESET => Some(0),
            _ => None,
        })?;
        let id = r.id(flags)?.map(Id::into_owned);
        let topic = |r: &mut Reader<'_>| -> Result<String, WireError> {
            Ok(TopicName::from_bytes(r.sized()?)?.as_str().to_owned())
        };
        let msg = match op {
            OP_MSG => {
                let topic = topic(&mut r)?;
                let (seq, ts) = (r.varint()?, r.varint()?);
                let data = r.rest().to_vec();
                Srv::Msg {
                    topic,
                    seq,
                    ts,
                    json: flags & FLAG_JSON != 0,
                    data,
                }
            }
            OP_ACK => Srv::Ack {
                id: id.ok_or(WireError::MissingField("id"))?,
                seq: r.varint()?,
            },
            OP_ERR => {
                let code = r.utf8("code")?.to_owned();
                let msg = std::str::from_utf8(r.rest()).unwrap().to_owned();
                Srv::Err { id, code, msg }
            }
            OP_SUBBED => Srv::Subbed {
                topic: topic(&mut r)?,
                seq: r.varint()?,
                id,
            },
            OP_RESET => Srv::Reset {
                topic: topic(&mut r)?,
                seq: r.varint()?,
            },
            _ => Srv::Unsubbed {
                topic: topic(&mut r)?,
                id,
                revoked: flags & FLAG_REVOKED != 0,
            },
        };
        r.finish()?;
        Ok(msg)
    }

    /// Decode a JSON server message with serde_json, checking the exact set of fields.
    fn decode_srv_json(input: &[u8]) -> Srv {
        let text = std::str::from_utf8(input).expect("server JSON is UTF-8");
        let v: serde_json::Map<String, Value> = serde_json::from_str(text)
            .unwrap_or_else(|e| panic!("server JSON does not parse: {e}: {text}"));
        let keys: Vec<&str> = v.keys().map(String::as_str).collect();
        let s = |k: &str| v[k].as_str().unwrap().to_owned();
        let u = |k: &str| v[k].as_u64().unwrap();
        let id = || {
            v.get("id").map(|id| match id {
                Value::String(s) => Id::Str(Cow::Owned(s.clone())),
                Value::Number(n) => Id::Num(n.as_u64().unwrap()),
                other => panic!("bad id {other}"),
            })
        };
        let expect_keys = |want: &[&str]| {
            let mut got = keys.clone();
            got.sort_unstable();
            let mut want = want.to_vec();
            if v.contains_key("id") && !want.contains(&"id") {
                want.push("id");
            }
            want.sort_unstable();
            assert_eq!(got, want, "fields of {text}");
        };
        match v["op"].as_str().unwrap() {
            "msg" => {
                #[derive(Deserialize)]
                struct Raw<'a> {
                    #[serde(default, borrow, deserialize_with = "raw_some")]
                    data: Option<&'a RawValue>,
                    data_b64: Option<String>,
                }
                let raw: Raw<'_> = serde_json::from_str(text).unwrap();
                let (json, data) = match (raw.data, raw.data_b64) {
                    (Some(d), None) => (true, d.get().as_bytes().to_vec()),
                    (None, Some(b)) => {
                        use base64::Engine as _;
                        (
                            false,
                            base64::engine::general_purpose::STANDARD.decode(b).unwrap(),
                        )
                    }
                    _ => panic!("msg needs exactly one of data, data_b64: {text}"),
                };
                let data_key = if json { "data" } else { "data_b64" };
                expect_keys(&["op", "topic", "seq", "ts", data_key]);
                Srv::Msg {
                    topic: s("topic"),
                    seq: u("seq"),
                    ts: u("ts"),
                    json,
                    data,
                }
            }
            "ack" => {
                expect_keys(&["op", "id", "seq"]);
                Srv::Ack {
                    id: id().unwrap(),
                    seq: u("seq"),
                }
            }
            "err" => {
                expect_keys(&["op", "code", "msg"]);
                Srv::Err {
                    id: id(),
                    code: s("code"),
                    msg: s("msg"),
                }
            }
            "subbed" => {
                expect_keys(&["op", "topic", "seq"]);
                Srv::Subbed {
                    topic: s("topic"),
                    seq: u("seq"),
                    id: id(),
                }
            }
            "reset" => {
                expect_keys(&["op", "topic", "seq"]);
                assert!(!v.contains_key("id"));
                Srv::Reset {
                    topic: s("topic"),
                    seq: u("seq"),
                }
            }
            "unsubbed" => {
                let revoked = v.contains_key("reason");
                if revoked {
                    assert_eq!(v["reason"], "forbidden", "{text}");
                    expect_keys(&["op", "topic", "reason"]);
                } else {
                    expect_keys(&["op", "topic"]);
                }
                Srv::Unsubbed {
                    topic: s("topic"),
                    id: id(),
                    revoked,
                }
            }
            other => panic!("unknown server op {other}"),
        }
    }

    /// Encode with `f` in both encodings, decode each with the test decoders, return both.
    fn both(f: impl Fn(Encoding, &mut Vec<u8>)) -> (Srv, Srv) {
        let (mut j, mut b) = (Vec::new(), Vec::new());
        f(Encoding::Json, &mut j);
        f(Encoding::Binary, &mut b);
        let bin = decode_srv_bin(&b)
            .unwrap_or_else(|e| panic!("binary {} does not decode: {e}", hex(&b)));
        (decode_srv_json(&j), bin)
    }

    // -----------------------------------------------------------------------------------------
    // Encoding
    // -----------------------------------------------------------------------------------------

    #[test]
    fn subprotocols_choose_the_encoding() {
        assert_eq!(Encoding::from_subprotocol(None), Some(Encoding::Json));
        assert_eq!(
            Encoding::from_subprotocol(Some("corecast.v1.json")),
            Some(Encoding::Json)
        );
        assert_eq!(
            Encoding::from_subprotocol(Some("corecast.v1.bin")),
            Some(Encoding::Binary)
        );
        assert_eq!(Encoding::from_subprotocol(Some("corecast.v2.bin")), None);
        assert_eq!(Encoding::from_subprotocol(Some("CORECAST.V1.JSON")), None);
        for enc in [Encoding::Json, Encoding::Binary] {
            assert_eq!(
                Encoding::from_subprotocol(Some(enc.subprotocol())),
                Some(enc)
            );
            assert!(Encoding::SUBPROTOCOLS.contains(&enc.subprotocol()));
        }
        assert!(Encoding::Json.is_text() && !Encoding::Binary.is_text());
    }

    #[test]
    fn frame_type_must_match_the_encoding() {
        let text = r#"{"op":"sub","topic":"a"}"#;
        let bin = op_bin(&ClientOp::Sub {
            topic: t("a"),
            since: None,
            id: None,
        });
        assert!(Encoding::Json.decode_text_frame(text).is_ok());
        assert!(Encoding::Binary.decode_binary_frame(&bin).is_ok());
        let e = Encoding::Binary.decode_text_frame(text).unwrap_err();
        assert_eq!(
            (e.code(), e.to_string().as_str()),
            (
                "bad_frame",
                "this connection's encoding takes binary frames"
            )
        );
        assert_eq!(
            Encoding::Json.decode_binary_frame(&bin).unwrap_err().code(),
            "bad_frame"
        );
    }

    // -----------------------------------------------------------------------------------------
    // The examples in docs/protocol.md, byte for byte
    // -----------------------------------------------------------------------------------------

    const DOC: &str = include_str!("../../docs/protocol.md");
    const PX: &str = r#"{"px":64000.5}"#;
    const DEADBEEF: &[u8] = &[0xde, 0xad, 0xbe, 0xef];
    const TS: u64 = 1_700_000_000_000_000;

    #[test]
    fn documented_client_examples() {
        let cases: [(ClientOp<'_>, &str, &str); 5] = [
            (
                ClientOp::Sub {
                    topic: t("prices.BTC"),
                    since: Some(42),
                    id: Some("1".into()),
                },
                r#"{"op":"sub","topic":"prices.BTC","since":42,"id":"1"}"#,
                "01 05 01 31 0a 70 72 69 63 65 73 2e 42 54 43 2a",
            ),
            (
                ClientOp::Sub {
                    topic: t("a"),
                    since: None,
                    id: Some(7.into()),
                },
                r#"{"op":"sub","topic":"a","id":7}"#,
                "01 02 07 01 61",
            ),
            (
                ClientOp::Unsub {
                    topic: t("prices.BTC"),
                    id: Some("2".into()),
                },
                r#"{"op":"unsub","topic":"prices.BTC","id":"2"}"#,
                "02 01 01 32 0a 70 72 69 63 65 73 2e 42 54 43",
            ),
            (
                ClientOp::Pub {
                    topic: t("prices.BTC"),
                    data: Payload::Json(PX),
                    key: Some("BTC".into()),
                    id: Some("3".into()),
                },
                r#"{"op":"pub","topic":"prices.BTC","key":"BTC","id":"3","data":{"px":64000.5}}"#,
                "03 19 01 33 0a 70 72 69 63 65 73 2e 42 54 43 03 42 54 43 \
                 7b 22 70 78 22 3a 36 34 30 30 30 2e 35 7d",
            ),
            (
                ClientOp::Pub {
                    topic: t("prices.BTC"),
                    data: Payload::Bytes(DEADBEEF),
                    key: None,
                    id: None,
                },
                "",
                "03 00 0a 70 72 69 63 65 73 2e 42 54 43 de ad be ef",
            ),
        ];
        for (op, json, bin) in cases {
            assert!(
                DOC.contains(&hex(&unhex(bin))),
                "docs/protocol.md lacks {bin}"
            );
            assert!(DOC.contains(json), "docs/protocol.md lacks {json}");
            if !json.is_empty() {
                assert_eq!(op_json(&op), json);
                assert_eq!(decode_json(json).unwrap(), op);
            }
            assert_eq!(hex(&op_bin(&op)), hex(&unhex(bin)));
            assert_eq!(decode_binary(&unhex(bin)).unwrap(), op);
        }
        // The issue's own example, with data before key and id.
        let op = decode_json(
            r#"{"op":"pub","topic":"prices.BTC","data":{"px":64000.5},"key":"BTC","id":"2"}"#,
        )
        .unwrap();
        assert_eq!(
            op,
            ClientOp::Pub {
                topic: t("prices.BTC"),
                data: Payload::Json(PX),
                key: Some("BTC".into()),
                id: Some("2".into())
            }
        );
    }

    #[test]
    fn documented_server_examples() {
        let p = t("prices.BTC");
        type Enc = Box<dyn Fn(Encoding, &mut Vec<u8>)>;
        let cases: Vec<(Enc, &str, &str)> = vec![
            (
                Box::new(move |e, o| encode_msg(e, p, 43, TS, Payload::Json(PX), o)),
                r#"{"op":"msg","topic":"prices.BTC","seq":43,"ts":1700000000000000,"data":{"px":64000.5}}"#,
                "81 10 0a 70 72 69 63 65 73 2e 42 54 43 2b 80 80 f9 c0 c1 c4 82 03 \
                 7b 22 70 78 22 3a 36 34 30 30 30 2e 35 7d",
            ),
            (
                Box::new(move |e, o| encode_msg(e, p, 44, TS + 1, Payload::Bytes(DEADBEEF), o)),
                r#"{"op":"msg","topic":"prices.BTC","seq":44,"ts":1700000000000001,"data_b64":"3q2+7w=="}"#,
                "81 00 0a 70 72 69 63 65 73 2e 42 54 43 2c 81 80 f9 c0 c1 c4 82 03 de ad be ef",
            ),
            (
                Box::new(|e, o| encode_ack(e, &"3".into(), 44, o)),
                r#"{"op":"ack","id":"3","seq":44}"#,
                "82 01 01 33 2c",
            ),
            (
                Box::new(|e, o| encode_err(e, Some(&"4".into()), "bad_topic", "empty segment", o)),
                r#"{"op":"err","id":"4","code":"bad_topic","msg":"empty segment"}"#,
                "83 01 01 34 09 62 61 64 5f 74 6f 70 69 63 \
                 65 6d 70 74 79 20 73 65 67 6d 65 6e 74",
            ),
            (
                Box::new(|e, o| encode_err(e, None, "bad_json", "x", o)),
                r#"{"op":"err","code":"bad_json","msg":"x"}"#,
                "83 00 08 62 61 64 5f 6a 73 6f 6e 78",
            ),
            (
                Box::new(move |e, o| encode_subbed(e, p, 42, Some(&"1".into()), o)),
                r#"{"op":"subbed","topic":"prices.BTC","seq":42,"id":"1"}"#,
                "84 01 01 31 0a 70 72 69 63 65 73 2e 42 54 43 2a",
            ),
            (
                Box::new(move |e, o| encode_subbed(e, p, 0, None, o)),
                r#"{"op":"subbed","topic":"prices.BTC","seq":0}"#,
                "84 00 0a 70 72 69 63 65 73 2e 42 54 43 00",
            ),
            (
                Box::new(move |e, o| encode_reset(e, p, 40, o)),
                r#"{"op":"reset","topic":"prices.BTC","seq":40}"#,
                "85 00 0a 70 72 69 63 65 73 2e 42 54 43 28",
            ),
            (
                Box::new(move |e, o| encode_unsubbed(e, p, Some(&"2".into()), o)),
                r#"{"op":"unsubbed","topic":"prices.BTC","id":"2"}"#,
                "86 01 01 32 0a 70 72 69 63 65 73 2e 42 54 43",
            ),
        ];
        for (f, json, bin) in cases {
            let (mut j, mut b) = (Vec::new(), Vec::new());
            f(Encoding::Json, &mut j);
            f(Encoding::Binary, &mut b);
            assert!(
                DOC.contains(&hex(&unhex(bin))),
                "docs/protocol.md lacks {bin}"
            );
            assert!(DOC.contains(json), "docs/protocol.md lacks {json}");
            assert_eq!(std::str::from_utf8(&j).unwrap(), json);
            assert_eq!(hex(&b), hex(&unhex(bin)));
            assert_eq!(decode_srv_json(&j), decode_srv_bin(&b).unwrap(), "{json}");
        }
    }

    // -----------------------------------------------------------------------------------------
    // Round trips
    // -----------------------------------------------------------------------------------------

    #[test]
    fn every_client_op_round_trips_in_both_encodings() {
        let big = "x".repeat(MAX_TOPIC_BYTES);
        let id64 = "i".repeat(MAX_ID_BYTES);
        let key128 = "k".repeat(MAX_KEY_BYTES);
        let ops = [
            ClientOp::Sub {
                topic: t("a"),
                since: None,
                id: None,
            },
            ClientOp::Sub {
                topic: t(&big),
                since: Some(0),
                id: Some(Id::Num(0)),
            },
            ClientOp::Sub {
                topic: t("a.b"),
                since: Some(u64::MAX),
                id: Some(Id::Num(u64::MAX)),
            },
            ClientOp::Sub {
                topic: t("a"),
                since: None,
                id: Some(id64.as_str().into()),
            },
            ClientOp::Unsub {
                topic: t("a"),
                id: None,
            },
            ClientOp::Unsub {
                topic: t("x:y-z_1"),
                id: Some("u\"1\\".into()),
            },
            ClientOp::Pub {
                topic: t("p"),
                data: Payload::Json("null"),
                key: None,
                id: None,
            },
            ClientOp::Pub {
                topic: t("p"),
                data: Payload::Json(r#"[1, {"a" : "é\n"}, true]"#),
                key: Some(key128.as_str().into()),
                id: Some("\u{1F600}\u{0}".into()),
            },
            ClientOp::Pub {
                topic: t("p"),
                data: Payload::Json("\"s\""),
                key: None,
                id: Some(9.into()),
            },
            ClientOp::Pub {
                topic: t("p"),
                data: Payload::Bytes(b""),
                key: None,
                id: None,
            },
            ClientOp::Pub {
                topic: t("p"),
                data: Payload::Bytes(&[0, 0xff, b'{']),
                key: Some("k\u{7}".into()),
                id: Some("1".into()),
            },
        ];
        for op in &ops {
            assert_eq!(
                &decode_binary(&op_bin(op)).unwrap(),
                op,
                "binary {}",
                hex(&op_bin(op))
            );
            let mut via_bytes_mut = bytes::BytesMut::new();
            encode_op_binary(op, &mut via_bytes_mut);
            assert_eq!(&via_bytes_mut[..], &op_bin(op)[..]);
            if let ClientOp::Pub {
                data: Payload::Bytes(_),
                ..
            } = op
            {
                let e = encode_op_json(op, &mut Vec::new()).unwrap_err();
                assert_eq!(e.code(), "bad_field");
                continue;
            }
            let json = op_json(op);
            serde_json::from_str::<Value>(&json).expect("valid JSON");
            assert_eq!(&decode_json(&json).unwrap(), op, "json {json}");
            let mut enc = Vec::new();
            encode_op(Encoding::Json, op, &mut enc).unwrap();
            assert_eq!(enc, json.as_bytes());
        }
    }

    #[test]
    fn every_server_message_round_trips_in_both_encodings() {
        let p = t("p.q");
        let s = |x: &str| x.to_owned();
        let (j, b) = both(|e, o| encode_msg(e, p, 3, 4, Payload::Json("null"), o));
        let want = Srv::Msg {
            topic: s("p.q"),
            seq: 3,
            ts: 4,
            json: true,
            data: b"null".to_vec(),
        };
        assert_eq!((j, b), (want.clone(), want));
        let (j, b) = both(|e, o| encode_msg(e, p, 1, 2, Payload::Json("[1,2]"), o));
        let want = Srv::Msg {
            topic: s("p.q"),
            seq: 1,
            ts: 2,
            json: true,
            data: b"[1,2]".to_vec(),
        };
        assert_eq!((j, b), (want.clone(), want));
        let (j, b) =
            both(|e, o| encode_msg(e, p, u64::MAX, u64::MAX, Payload::Bytes(b"\0\x01"), o));
        let want = Srv::Msg {
            topic: s("p.q"),
            seq: u64::MAX,
            ts: u64::MAX,
            json: false,
            data: vec![0, 1],
        };
        assert_eq!((j, b), (want.clone(), want));
        for id in [Id::Num(0), Id::Num(u64::MAX), Id::from("a\"b\\c\n\u{2028}")] {
            let (j, b) = both(|e, o| encode_ack(e, &id, 5, o));
            assert_eq!(
                (&j, &b),
                (
                    &Srv::Ack {
                        id: id.clone().into_owned(),
                        seq: 5
                    },
                    &j
                )
            );
            for maybe in [None, Some(&id)] {
                let owned = maybe.cloned().map(Id::into_owned);
                let (j, b) = both(|e, o| encode_err(e, maybe, "c", "m \"q\" \u{0}", o));
                let want = Srv::Err {
                    id: owned.clone(),
                    code: s("c"),
                    msg: s("m \"q\" \u{0}"),
                };
                assert_eq!((j, b), (want.clone(), want));
                let (j, b) = both(|e, o| encode_subbed(e, p, 7, maybe, o));
                let want = Srv::Subbed {
                    topic: s("p.q"),
                    seq: 7,
                    id: owned.clone(),
                };
                assert_eq!((j, b), (want.clone(), want));
                let (j, b) = both(|e, o| encode_unsubbed(e, p, maybe, o));
                let want = Srv::Unsubbed {
                    topic: s("p.q"),
                    id: owned.clone(),
                    revoked: false,
                };
                assert_eq!((j, b), (want.clone(), want));
                let (j, b) = both(|e, o| encode_revoked(e, p, o));
                let want = Srv::Unsubbed {
                    topic: s("p.q"),
                    id: None,
                    revoked: true,
                };
                assert_eq!((j, b), (want.clone(), want));
            }
        }
        let (j, b) = both(|e, o| encode_reset(e, p, 0, o));
        assert_eq!(
            (j, b),
            (
                Srv::Reset {
                    topic: s("p.q"),
                    seq: 0
                },
                Srv::Reset {
                    topic: s("p.q"),
                    seq: 0
                }
            )
        );
    }

    #[test]
    fn encoders_write_the_same_bytes_into_bytes_mut() {
        let mut v = Vec::new();
        let mut bm = bytes::BytesMut::new();
        for enc in [Encoding::Json, Encoding::Binary] {
            encode_msg(enc, t("a"), 1, 2, Payload::Bytes(b"xyz"), &mut v);
            encode_msg(enc, t("a"), 1, 2, Payload::Bytes(b"xyz"), &mut bm);
            encode_error(
                enc,
                Some(&"i".into()),
                &WireError::MissingField("op"),
                &mut v,
            );
            encode_error(
                enc,
                Some(&"i".into()),
                &WireError::MissingField("op"),
                &mut bm,
            );
        }
        assert_eq!(&v[..], &bm[..]);
    }

    #[test]
    fn msg_len_is_exact() {
        for enc in [Encoding::Json, Encoding::Binary] {
            for (seq, ts) in [(0, 0), (9, 10), (99, 100), (127, 128), (u64::MAX, 1 << 63)] {
                for data in [
                    Payload::Json("0"),
                    Payload::Json(PX),
                    Payload::Bytes(b""),
                    Payload::Bytes(b"a"),
                    Payload::Bytes(b"ab"),
                    Payload::Bytes(b"abc"),
                    Payload::Bytes(&[7; 2000]),
                ] {
                    let mut out = vec![1, 2, 3];
                    encode_msg(enc, t("a.b"), seq, ts, data, &mut out);
                    assert_eq!(out.len() - 3, msg_len(enc, t("a.b"), seq, ts, data));
                }
            }
        }
    }

    // -----------------------------------------------------------------------------------------
    // JSON details
    // -----------------------------------------------------------------------------------------

    #[test]
    fn json_data_is_spliced_verbatim_never_reparsed() {
        for data in [
            "null",
            "0",
            "-1.5e300",
            "\"a\\u0000b\"",
            "[ 1 ,2 ]",
            "{\"a\" :\n {\"b\":[true,false,null]}}",
            "\"\u{1F600}\"",
        ] {
            let input = format!(r#"{{"op":"pub","topic":"t","data": {data} ,"id":"1"}}"#);
            let op = decode_json(&input).unwrap();
            let ClientOp::Pub {
                data: Payload::Json(text),
                ..
            } = op
            else {
                panic!()
            };
            assert_eq!(text, data);
            // It points into the input: no copy was made.
            let range = input.as_bytes().as_ptr_range();
            assert!(range.contains(&text.as_ptr()));
            let mut out = Vec::new();
            encode_msg_json(t("t"), 1, 2, Payload::Json(text), &mut out);
            let v: Value = serde_json::from_slice(&out).unwrap();
            assert_eq!(v["data"], serde_json::from_str::<Value>(data).unwrap());
            assert!(std::str::from_utf8(&out)
                .unwrap()
                .ends_with(&format!("\"data\":{data}}}")));
        }
    }

    #[test]
    fn json_borrows_unescaped_strings_and_unescapes_the_rest() {
        let op =
            decode_json(r#"{"op":"pub","topic":"t","data":1,"id":"plain","key":"k\"ey"}"#).unwrap();
        let ClientOp::Pub {
            id: Some(Id::Str(id)),
            key: Some(key),
            ..
        } = op
        else {
            panic!()
        };
        assert!(matches!(id, Cow::Borrowed("plain")));
        assert!(matches!(key, Cow::Owned(ref k) if k == "k\"ey"));
        // Escapes in the op name and field names are plain JSON and are understood.
        let op = decode_json(r#"{"\u006fp":"s\u0075b","topic":"t"}"#).unwrap();
        assert_eq!(
            op,
            ClientOp::Sub {
                topic: t("t"),
                since: None,
                id: None
            }
        );
    }

    #[test]
    fn json_tolerates_whitespace_unknown_fields_and_nulls() {
        let want = ClientOp::Sub {
            topic: t("a.b"),
            since: Some(3),
            id: None,
        };
        for input in [
            " \n{ \"op\" : \"sub\" ,\t\"topic\":\"a.b\", \"since\" : 3 }\r\n ",
            r#"{"topic":"a.b","since":3,"op":"sub"}"#,
            r#"{"op":"sub","topic":"a.b","since":3,"id":null,"extra":{"deep":[1,2,{"x":null}]}}"#,
            r#"{"op":"sub","topic":"a.b","since":3,"key":5,"data":"ignored: not a sub field"}"#,
        ] {
            assert_eq!(decode_json(input).unwrap(), want, "{input}");
        }
        // `null` counts as absent, except as data, where it is the JSON value null.
        assert_eq!(
            decode_json(r#"{"op":"sub","topic":"a.b","since":null}"#).unwrap(),
            ClientOp::Sub {
                topic: t("a.b"),
                since: None,
                id: None
            }
        );
        assert_eq!(
            decode_json(r#"{"op":"pub","topic":"a","data":null,"key":null}"#).unwrap(),
            ClientOp::Pub {
                topic: t("a"),
                data: Payload::Json("null"),
                key: None,
                id: None
            }
        );
    }

    #[test]
    fn numeric_ids_come_back_as_numbers() {
        let op =
            decode_json(r#"{"op":"pub","topic":"a","data":1,"id":18446744073709551615}"#).unwrap();
        let id = op.id().unwrap();
        assert_eq!(id, &Id::Num(u64::MAX));
        let mut out = Vec::new();
        encode_ack(Encoding::Json, id, 1, &mut out);
        assert_eq!(out, br#"{"op":"ack","id":18446744073709551615,"seq":1}"#);
        out.clear();
        encode_ack(Encoding::Json, &"7".into(), 1, &mut out);
        assert_eq!(out, br#"{"op":"ack","id":"7","seq":1}"#);
    }

    #[test]
    fn ids_and_messages_are_escaped_exactly() {
        let raw = "q\"b\\s/n\nr\rt\tb\u{8}f\u{c}\u{0}\u{1f}\u{7f}é\u{2028}\u{1F600}";
        let mut out = Vec::new();
        encode_ack(Encoding::Json, &Id::from(raw), 1, &mut out);
        assert_eq!(
            std::str::from_utf8(&out).unwrap(),
            "{\"op\":\"ack\",\"id\":\"q\\\"b\\\\s/n\\nr\\rt\\tb\\bf\\f\\u0000\\u001f\u{7f}é\u{2028}\
             \u{1F600}\",\"seq\":1}"
        );
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["id"], json!(raw));
        // Every control character, one at a time, survives serde_json.
        for c in 0u8..0x20 {
            let s = format!("a{}b", c as char);
            let mut out = Vec::new();
            encode_err(Encoding::Json, Some(&s.as_str().into()), "c", &s, &mut out);
            let v: Value = serde_json::from_slice(&out).unwrap();
            assert_eq!(
                (v["id"].as_str(), v["msg"].as_str()),
                (Some(&*s), Some(&*s))
            );
        }
    }

    #[test]
    fn wire_errors_become_err_messages() {
        let e = decode_json(r#"{"op":"sub\"<x>","topic":"a","id":"i"}"#).unwrap_err();
        assert_eq!(e.code(), "bad_op");
        let mut out = Vec::new();
        encode_error(
            Encoding::Json,
            error_id_json(r#"{"op":"x","id":"i"}"#).as_ref(),
            &e,
            &mut out,
        );
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(
            v,
            json!({"op":"err","id":"i","code":"bad_op",
            "msg":"unknown op \"sub\\\"<x>\"; a client sends sub, unsub or pub"})
        );
        out.clear();
        encode_error(Encoding::Binary, None, &e, &mut out);
        assert_eq!(
            decode_srv_bin(&out).unwrap(),
            Srv::Err {
                id: None,
                code: "bad_op".into(),
                msg: e.to_string()
            }
        );
    }

    // -----------------------------------------------------------------------------------------
    // Malformed input: every error code
    // -----------------------------------------------------------------------------------------

    #[test]
    fn error_codes_are_stable_and_documented() {
        let all = [
            WireError::BadJson(String::new()),
            WireError::BadOp(String::new()),
            WireError::MissingField("op"),
            WireError::BadField {
                field: "id",
                reason: "",
            },
            WireError::BadTopic(TopicError::Empty),
            WireError::TooLarge { len: 0, max: 0 },
            WireError::BadBinary(""),
            WireError::BadFrame { expected: "text" },
        ];
        let codes: Vec<_> = all.iter().map(WireError::code).collect();
        assert_eq!(codes, WireError::CODES);
        for code in WireError::CODES {
            assert!(
                DOC.contains(&format!("| `{code}` |")),
                "docs/protocol.md lacks {code}"
            );
        }
    }

    #[test]
    fn bad_json() {
        for input in [
            "",
            "   ",
            "{",
            "[]",
            "\"sub\"",
            "17",
            "null",
            "{\"op\":\"sub\",}",
            "{\"op\":\"sub\",\"topic\":\"a\"} x",
            "{\"op\":\"sub\",\"topic\":\"a\"}{}",
            "{\"op\":\"sub\",\"op\":\"sub\",\"topic\":\"a\"}",
            "{'op':'sub'}",
            "{\"op\":\"pub\",\"topic\":\"a\",\"data\":}",
            "{\"op\":\"pub\",\"topic\":\"a\",\"data\":NaN}",
            "{\"op\":\"pub\",\"topic\":\"a\",\"data\":\"\u{1}\"}",
        ] {
            assert_eq!(code_of_json(input), "bad_json", "{input:?}");
        }
        let e = decode_json("{\"op\":\"sub\",").unwrap_err();
        assert!(
            e.to_string()
                .starts_with("not valid JSON: EOF while parsing"),
            "{e}"
        );
        assert_eq!(
            decode_json("[1]").unwrap_err().to_string(),
            "not valid JSON: expected a JSON object"
        );
    }

    #[test]
    fn bad_op() {
        for input in [
            r#"{"op":"msg","topic":"a"}"#,
            r#"{"op":"SUB","topic":"a"}"#,
            r#"{"op":"subscribe","topic":"a"}"#,
            r#"{"op":"","topic":"a"}"#,
            r#"{"op":1,"topic":"a"}"#,
            r#"{"op":["sub"],"topic":"a"}"#,
            r#"{"op":"\ud800","topic":"a"}"#,
        ] {
            assert_eq!(code_of_json(input), "bad_op", "{input}");
        }
        // The op is checked before anything else.
        assert_eq!(
            code_of_json(r#"{"op":"nope","id":{},"topic":"a..b"}"#),
            "bad_op"
        );
        // Untrusted op names are cut short in the message.
        let e = decode_json(&format!(r#"{{"op":"{}"}}"#, "x".repeat(1000))).unwrap_err();
        assert!(e.to_string().len() < 120, "{e}");
        for op in [0x00, 0x04, 0x7f, OP_MSG, OP_ACK, OP_UNSUBBED, 0xff] {
            assert_eq!(code_of_bin(&[op, 0, 1, b'a']), "bad_op", "{op:#x}");
        }
        assert_eq!(
            decode_binary(&[0x81, 0]).unwrap_err().to_string(),
            "unknown op 0x81; a client sends sub, unsub or pub"
        );
    }

    #[test]
    fn missing_field() {
        for (input, field) in [
            (r#"{}"#, "op"),
            (r#"{"topic":"a"}"#, "op"),
            (r#"{"op":null,"topic":"a"}"#, "op"),
            (r#"{"op":"sub"}"#, "topic"),
            (r#"{"op":"unsub","topic":null}"#, "topic"),
            (r#"{"op":"pub","topic":"a"}"#, "data"),
            (r#"{"op":"pub","topic":"a","dat":1}"#, "data"),
        ] {
            assert_eq!(
                decode_json(input),
                Err(WireError::MissingField(field)),
                "{input}"
            );
        }
    }

    #[test]
    fn bad_field() {
        let long_id = format!(
            r#"{{"op":"sub","topic":"a","id":"{}"}}"#,
            "i".repeat(MAX_ID_BYTES + 1)
        );
        let long_key = format!(
            r#"{{"op":"pub","topic":"a","data":1,"key":"{}"}}"#,
            "k".repeat(MAX_KEY_BYTES + 1)
        );
        // 64 bytes once unescaped, 65 escaped bytes on the wire: accepted.
        let escaped_id = format!(r#"{{"op":"sub","topic":"a","id":"\n{}"}}"#, "i".repeat(63));
        assert!(decode_json(&escaped_id).is_ok());
        for (input, field) in [
            (r#"{"op":"sub","topic":"a","since":-1}"#, "since"),
            (r#"{"op":"sub","topic":"a","since":1.5}"#, "since"),
            (r#"{"op":"sub","topic":"a","since":1e3}"#, "since"),
            (r#"{"op":"sub","topic":"a","since":1.0}"#, "since"),
            (r#"{"op":"sub","topic":"a","since":"3"}"#, "since"),
            (
                r#"{"op":"sub","topic":"a","since":18446744073709551616}"#,
                "since",
            ),
            (r#"{"op":"sub","topic":"a","since":true}"#, "since"),
            (r#"{"op":"sub","topic":"a","id":""}"#, "id"),
            (r#"{"op":"sub","topic":"a","id":-1}"#, "id"),
            (r#"{"op":"sub","topic":"a","id":1.5}"#, "id"),
            (
                r#"{"op":"sub","topic":"a","id":18446744073709551616}"#,
                "id",
            ),
            (r#"{"op":"sub","topic":"a","id":{}}"#, "id"),
            (r#"{"op":"sub","topic":"a","id":["1"]}"#, "id"),
            (r#"{"op":"sub","topic":"a","id":false}"#, "id"),
            (r#"{"op":"sub","topic":"a","id":"\ud800"}"#, "id"),
            (&long_id, "id"),
            (r#"{"op":"pub","topic":"a","data":1,"key":""}"#, "key"),
            (r#"{"op":"pub","topic":"a","data":1,"key":5}"#, "key"),
            (r#"{"op":"pub","topic":"a","data":1,"key":"\udc00"}"#, "key"),
            (&long_key, "key"),
        ] {
            match decode_json(input) {
                Err(WireError::BadField { field: f, .. }) => assert_eq!(f, field, "{input}"),
                other => panic!("{input}: {other:?}"),
            }
        }
        // Binary: id and key must be UTF-8 and within their lengths.
        assert_eq!(code_of_bin(&[OP_SUB, FLAG_ID_STR, 0, 1, b'a']), "bad_field");
        assert_eq!(
            code_of_bin(&[OP_SUB, FLAG_ID_STR, 1, 0xff, 1, b'a']),
            "bad_field"
        );
        let mut long = vec![OP_SUB, FLAG_ID_STR, 65];
        long.extend([b'i'; 65]);
        long.extend([1, b'a']);
        assert_eq!(code_of_bin(&long), "bad_field");
        assert_eq!(code_of_bin(&[OP_PUB, FLAG_KEY, 1, b'a', 0]), "bad_field");
        assert_eq!(
            code_of_bin(&[OP_PUB, FLAG_KEY, 1, b'a', 1, 0xc3]),
            "bad_field"
        );
    }

    #[test]
    fn bad_topic() {
        for input in [
            r#"{"op":"sub","topic":""}"#,
            r#"{"op":"sub","topic":"a..b"}"#,
            r#"{"op":"sub","topic":".a"}"#,
            r#"{"op":"sub","topic":"a/b"}"#,
            r#"{"op":"sub","topic":"a b"}"#,
            r#"{"op":"sub","topic":"\u0061"}"#,
            r#"{"op":"sub","topic":"a\"b"}"#,
            r#"{"op":"sub","topic":7}"#,
            r#"{"op":"sub","topic":["a"]}"#,
            r#"{"op":"pub","topic":"é","data":1}"#,
        ] {
            assert_eq!(code_of_json(input), "bad_topic", "{input}");
        }
        let long = format!(
            r#"{{"op":"unsub","topic":"{}"}}"#,
            "a".repeat(MAX_TOPIC_BYTES + 1)
        );
        assert_eq!(code_of_json(&long), "bad_topic");
        assert_eq!(
            decode_json(r#"{"op":"sub","topic":"\u0061"}"#)
                .unwrap_err()
                .to_string(),
            "topic must be written without JSON escapes"
        );
        assert_eq!(code_of_bin(&[OP_SUB, 0, 0]), "bad_topic");
        assert_eq!(code_of_bin(&[OP_SUB, 0, 2, b'a', b'.']), "bad_topic");
        assert_eq!(code_of_bin(&[OP_UNSUB, 0, 2, b'a', 0xff]), "bad_topic");
    }

    #[test]
    fn too_large() {
        let pad = |n: usize| {
            let head = r#"{"op":"pub","topic":"a","data":""#;
            format!("{head}{}\"}}", "x".repeat(n - head.len() - 2))
        };
        let at_limit = pad(MAX_ENVELOPE_BYTES);
        assert_eq!(at_limit.len(), MAX_ENVELOPE_BYTES);
        assert!(decode_json(&at_limit).is_ok());
        let over = pad(MAX_ENVELOPE_BYTES + 1);
        assert_eq!(
            decode_json(&over),
            Err(WireError::TooLarge {
                len: MAX_ENVELOPE_BYTES + 1,
                max: MAX_ENVELOPE_BYTES
            })
        );
        let mut bin = vec![OP_PUB, 0, 1, b'a'];
        bin.resize(MAX_ENVELOPE_BYTES, 0xaa);
        assert!(decode_binary(&bin).is_ok());
        bin.push(0);
        assert_eq!(code_of_bin(&bin), "too_large");
        // Size is checked before anything else.
        assert_eq!(
            code_of_json(&"x".repeat(MAX_ENVELOPE_BYTES + 1)),
            "too_large"
        );
    }

    #[test]
    fn bad_binary() {
        let cases: &[(&[u8], &str)] = &[
            (&[], "empty message"),
            (&[OP_SUB], "truncated"),
            (&[OP_SUB, 0], "truncated"),
            (&[OP_SUB, 0, 3, b'a'], "truncated"),
            (&[OP_SUB, FLAG_SINCE, 1, b'a'], "truncated"),
            (&[OP_SUB, FLAG_SINCE, 1, b'a', 0x80], "truncated"),
            (&[OP_SUB, FLAG_ID_STR, 5, b'i'], "truncated"),
            (&[OP_SUB, FLAG_ID_NUM], "truncated"),
            (&[OP_PUB, FLAG_KEY, 1, b'a'], "truncated"),
            (&[OP_PUB, FLAG_KEY, 1, b'a', 4, b'k'], "truncated"),
            (
                &[OP_SUB, FLAG_KEY, 1, b'a'],
                "flag bits set that this op does not define",
            ),
            (
                &[OP_SUB, FLAG_JSON, 1, b'a'],
                "flag bits set that this op does not define",
            ),
            (
                &[OP_UNSUB, FLAG_SINCE, 1, b'a'],
                "flag bits set that this op does not define",
            ),
            (
                &[OP_PUB, FLAG_SINCE, 1, b'a'],
                "flag bits set that this op does not define",
            ),
            (
                &[OP_PUB, 0x20, 1, b'a'],
                "flag bits set that this op does not define",
            ),
            (
                &[OP_PUB, 0x80, 1, b'a'],
                "flag bits set that this op does not define",
            ),
            (&[OP_SUB, FLAG_ID, 1, b'1', 1, b'a'], "both id flags set"),
            (&[OP_SUB, 0, 1, b'a', 0], "trailing bytes"),
            (&[OP_SUB, FLAG_SINCE, 1, b'a', 1, 2], "trailing bytes"),
            (&[OP_UNSUB, 0, 1, b'a', b'b'], "trailing bytes"),
            (
                &[OP_SUB, 0, 0x81, 0x00, b'a'],
                "varint not in its shortest form",
            ),
            (
                &[OP_SUB, FLAG_SINCE, 1, b'a', 0x80, 0x00],
                "varint not in its shortest form",
            ),
            (
                &[
                    OP_SUB, FLAG_SINCE, 1, b'a', 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
                    0xff, 0x02,
                ],
                "varint over 64 bits",
            ),
            (
                &[
                    OP_SUB, FLAG_SINCE, 1, b'a', 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80,
                    0x80, 0x80, 0x01,
                ],
                "varint over 64 bits",
            ),
            (
                &[
                    OP_SUB, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01,
                ],
                "truncated",
            ),
        ];
        for (input, why) in cases {
            assert_eq!(
                decode_binary(input),
                Err(WireError::BadBinary(why)),
                "{}",
                hex(input)
            );
        }
        // The largest varint is fine.
        let mut max = vec![OP_SUB, FLAG_SINCE, 1, b'a'];
        max.extend([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]);
        assert_eq!(
            decode_binary(&max).unwrap(),
            ClientOp::Sub {
                topic: t("a"),
                since: Some(u64::MAX),
                id: None
            }
        );
        // Every proper prefix of a sub or unsub fails, and never panics.
        for op in [
            ClientOp::Sub {
                topic: t("abc"),
                since: Some(300),
                id: Some("id".into()),
            },
            ClientOp::Unsub {
                topic: t("abc"),
                id: Some(Id::Num(1 << 40)),
            },
        ] {
            let full = op_bin(&op);
            for cut in 0..full.len() {
                assert!(
                    decode_binary(&full[..cut]).is_err(),
                    "{}",
                    hex(&full[..cut])
                );
            }
        }
    }

    #[test]
    fn data_nesting_is_limited() {
        let nest = |n: usize| format!("{}1{}", "[".repeat(n), "]".repeat(n));
        let obj = |n: usize| format!("{}1{}", "{\"k\":".repeat(n), "}".repeat(n));
        for data in [
            nest(MAX_DATA_DEPTH),
            obj(MAX_DATA_DEPTH),
            format!("[\"{}\"]", "[".repeat(500)),
        ] {
            let input = format!(r#"{{"op":"pub","topic":"a","data":{data}}}"#);
            assert!(decode_json(&input).is_ok(), "{data}");
            let mut bin = vec![OP_PUB, FLAG_JSON, 1, b'a'];
            bin.extend(data.as_bytes());
            assert!(decode_binary(&bin).is_ok());
        }
        // Deep nesting is refused, also as deep as the size limit allows (no stack overflow:
        // serde_json skips raw values iteratively).
        for data in [
            nest(MAX_DATA_DEPTH + 1),
            obj(MAX_DATA_DEPTH + 1),
            nest(30_000),
        ] {
            let input = format!(r#"{{"op":"pub","topic":"a","data":{data}}}"#);
            let e = decode_json(&input).unwrap_err();
            assert!(
                matches!(e, WireError::BadField { field: "data", .. }),
                "{e}"
            );
            let mut bin = vec![OP_PUB, FLAG_JSON, 1, b'a'];
            bin.extend(data.as_bytes());
            assert_eq!(code_of_bin(&bin), "bad_field");
        }
        // Unknown fields are skipped iteratively too, however deep.
        let input = format!(r#"{{"op":"sub","topic":"a","x":{}}}"#, nest(30_000));
        assert!(decode_json(&input).is_ok());
        // Escaped quotes and backslashes inside strings do not confuse the count.
        let tricky = format!(r#"["\"[[[[", "\\", {}]"#, nest(MAX_DATA_DEPTH - 1));
        assert!(decode_json(&format!(r#"{{"op":"pub","topic":"a","data":{tricky}}}"#)).is_ok());
    }

    #[test]
    fn json_flagged_binary_data_must_be_json() {
        let mk = |data: &[u8]| {
            let mut v = vec![OP_PUB, FLAG_JSON, 1, b'a'];
            v.extend_from_slice(data);
            v
        };
        for bad in [&b""[..], b"{", b"1 2", b"nul", b"\xff", b"\"a", b"[1]x"] {
            assert_eq!(code_of_bin(&mk(bad)), "bad_json", "{bad:?}");
        }
        // Whitespace around the value is dropped; the value is kept as sent.
        let frame = mk(b" \n{\"a\": [1]}\t");
        let op = decode_binary(&frame).unwrap();
        assert_eq!(
            op,
            ClientOp::Pub {
                topic: t("a"),
                data: Payload::Json("{\"a\": [1]}"),
                key: None,
                id: None
            }
        );
    }

    #[test]
    fn error_ids_are_recovered_for_err_replies() {
        assert_eq!(
            error_id_json(r#"{"op":"sub","topic":"a..b","id":"7"}"#),
            Some("7".into())
        );
        assert_eq!(error_id_json(r#"{"op":"nope","id":7}"#), Some(Id::Num(7)));
        assert_eq!(
            error_id_json(r#"{"op":"pub","topic":"a","id":"x\ty"}"#),
            Some("x\ty".into())
        );
        assert_eq!(error_id_json(r#"{"op":"sub","topic":"a","id":{}}"#), None);
        assert_eq!(error_id_json(r#"{"op":"sub","id":"7""#), None);
        assert_eq!(error_id_json("garbage"), None);
        assert_eq!(
            error_id_binary(&[OP_SUB, FLAG_ID_STR, 1, b'7', 0]),
            Some("7".into())
        );
        assert_eq!(
            error_id_binary(&[OP_PUB, FLAG_ID_NUM | FLAG_JSON, 0x2a, 1, b'a', b'{']),
            Some(Id::Num(42))
        );
        assert_eq!(error_id_binary(&[OP_SUB, 0, 1, b'.']), None);
        assert_eq!(error_id_binary(&[0x99, FLAG_ID_STR, 1, b'7']), None);
        assert_eq!(error_id_binary(&[]), None);
    }

    // -----------------------------------------------------------------------------------------
    // Interop between the encodings
    // -----------------------------------------------------------------------------------------

    #[test]
    fn json_publisher_to_binary_subscriber() {
        let input = r#"{"op":"pub","topic":"t","data":{"a":[1,"é"]}}"#;
        let ClientOp::Pub { data, .. } = decode_json(input).unwrap() else {
            panic!()
        };
        let mut out = Vec::new();
        encode_msg_binary(t("t"), 5, 6, data, &mut out);
        let Srv::Msg { json, data, .. } = decode_srv_bin(&out).unwrap() else {
            panic!()
        };
        assert!(json);
        assert_eq!(data, r#"{"a":[1,"é"]}"#.as_bytes());
    }

    #[test]
    fn binary_publisher_to_json_subscriber() {
        // Opaque bytes arrive base64-encoded in data_b64.
        let bytes: Vec<u8> = (0..=255).collect();
        let mut frame = vec![OP_PUB, 0, 1, b't'];
        frame.extend(&bytes);
        let ClientOp::Pub { data, .. } = decode_binary(&frame).unwrap() else {
            panic!()
        };
        assert_eq!(data, Payload::Bytes(&bytes));
        let mut out = Vec::new();
        encode_msg_json(t("t"), 1, 2, data, &mut out);
        assert_eq!(
            decode_srv_json(&out),
            Srv::Msg {
                topic: "t".into(),
                seq: 1,
                ts: 2,
                json: false,
                data: bytes.clone()
            }
        );
        // JSON-flagged data arrives as JSON, spliced.
        let mut frame = vec![OP_PUB, FLAG_JSON, 1, b't'];
        frame.extend(br#"{"x":1}"#);
        let ClientOp::Pub { data, .. } = decode_binary(&frame).unwrap() else {
            panic!()
        };
        out.clear();
        encode_msg_json(t("t"), 1, 2, data, &mut out);
        assert_eq!(
            out,
            br#"{"op":"msg","topic":"t","seq":1,"ts":2,"data":{"x":1}}"#
        );
    }

    // -----------------------------------------------------------------------------------------
    // Primitives
    // -----------------------------------------------------------------------------------------

    #[test]
    fn decimal_and_varint_writers() {
        let mut probes = vec![
            0,
            1,
            9,
            10,
            99,
            100,
            127,
            128,
            999,
            1000,
            16383,
            16384,
            u64::MAX,
        ];
        probes.extend((0..64).map(|s| 1u64 << s));
        probes.extend((0..64).map(|s| (1u64 << s) - 1));
        probes.extend((1..20).map(|e| 10u64.pow(e) - 1));
        probes.extend((1..20).map(|e| 10u64.pow(e)));
        for n in probes {
            let mut out = Vec::new();
            put_dec(&mut out, n);
            assert_eq!(out, n.to_string().as_bytes());
            assert_eq!(dec_len(n), out.len());
            out.clear();
            put_varint(&mut out, n);
            assert_eq!(varint_len(n), out.len(), "{n}");
            let mut r = Reader { buf: &out };
            assert_eq!(r.varint(), Ok(n));
            assert!(r.finish().is_ok());
        }
    }

    #[test]
    fn base64_matches_the_standard_engine() {
        use base64::Engine as _;
        for len in [0, 1, 2, 3, 4, 5, 767, 768, 769, 770, 1536, 2000] {
            let data: Vec<u8> = (0..len).map(|i| (i * 7) as u8).collect();
            let mut out = Vec::new();
            put_base64(&mut out, &data);
            assert_eq!(
                out,
                base64::engine::general_purpose::STANDARD
                    .encode(&data)
                    .as_bytes()
            );
            assert_eq!(out.len(), base64_len(len));
        }
    }

    #[test]
    fn client_op_accessors() {
        let op = ClientOp::Pub {
            topic: t("a"),
            data: Payload::Json("1"),
            key: None,
            id: Some(3.into()),
        };
        assert_eq!(
            (op.name(), op.topic().as_str(), op.id()),
            ("pub", "a", Some(&Id::Num(3)))
        );
        assert_eq!(
            ClientOp::Unsub {
                topic: t("b"),
                id: None
            }
            .name(),
            "unsub"
        );
        assert_eq!(Payload::Bytes(b"ab").as_bytes(), b"ab");
        assert_eq!(Id::from("x").to_string(), "\"x\"");
        assert_eq!(Id::Num(4).to_string(), "4");
    }

    // -----------------------------------------------------------------------------------------
    // Properties
    // -----------------------------------------------------------------------------------------

    mod props {
        use super::*;
        use proptest::prelude::*;

        /// An owned client op, for strategies (a `ClientOp` borrows).
        #[derive(Debug, Clone)]
        struct OwnedOp {
            kind: u8,
            topic: String,
            since: Option<u64>,
            id: Option<Id<'static>>,
            key: Option<String>,
            json: Option<String>,
            bytes: Vec<u8>,
        }

        impl OwnedOp {
            fn op(&self) -> ClientOp<'_> {
                let topic = TopicName::new(&self.topic).unwrap();
                let id = self.id.clone();
                match self.kind {
                    0 => ClientOp::Sub {
                        topic,
                        since: self.since,
                        id,
                    },
                    1 => ClientOp::Unsub { topic, id },
                    _ => ClientOp::Pub {
                        topic,
                        data: match &self.json {
                            Some(text) => Payload::Json(text),
                            None => Payload::Bytes(&self.bytes),
                        },
                        key: self.key.as_deref().map(Cow::Borrowed),
                        id,
                    },
                }
            }
        }

        fn topic() -> impl Strategy<Value = String> {
            prop_oneof![
                "[A-Za-z0-9_:-]{1,12}(\\.[A-Za-z0-9_:-]{1,12}){0,6}",
                "[a-z]{128}",
            ]
        }

        fn id() -> impl Strategy<Value = Id<'static>> {
            prop_oneof![
                any::<u64>().prop_map(Id::Num),
                "(?s).{1,16}".prop_map(|s| Id::Str(Cow::Owned(s))),
                "[\\x00-\\x1f\"\\\\]{1,64}".prop_map(|s| Id::Str(Cow::Owned(s))),
            ]
        }

        fn json_value() -> impl Strategy<Value = Value> {
            let leaf = prop_oneof![
                Just(Value::Null),
                any::<bool>().prop_map(Value::Bool),
                any::<i64>().prop_map(Value::from),
                any::<u64>().prop_map(Value::from),
                any::<f64>()
                    .prop_filter("finite", |f| f.is_finite())
                    .prop_map(Value::from),
                "(?s).{0,12}".prop_map(Value::String),
            ];
            leaf.prop_recursive(4, 32, 6, |inner| {
                prop_oneof![
                    proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                    proptest::collection::btree_map("(?s).{0,6}", inner, 0..6)
                        .prop_map(|m| Value::Object(m.into_iter().collect())),
                ]
            })
        }

        fn json_text() -> impl Strategy<Value = String> {
            (json_value(), any::<bool>()).prop_map(|(v, pretty)| {
                if pretty {
                    serde_json::to_string_pretty(&v).unwrap()
                } else {
                    v.to_string()
                }
            })
        }

        fn owned_op() -> impl Strategy<Value = OwnedOp> {
            (
                0u8..3,
                topic(),
                any::<Option<u64>>(),
                proptest::option::of(id()),
                proptest::option::of("(?s).{1,32}"),
                proptest::option::of(json_text()),
                proptest::collection::vec(any::<u8>(), 0..64),
            )
                .prop_map(|(kind, topic, since, id, key, json, bytes)| OwnedOp {
                    kind,
                    topic,
                    since,
                    id,
                    key,
                    json,
                    bytes,
                })
        }

        /// Strings built from JSON-ish fragments, to get past the syntax check more often.
        fn jsonish() -> impl Strategy<Value = String> {
            let frag = prop_oneof![
                Just("{".to_owned()),
                Just("}".to_owned()),
                Just("[".to_owned()),
                Just("]".to_owned()),
                Just(",".to_owned()),
                Just(":".to_owned()),
                Just("\"op\":".to_owned()),
                Just("\"sub\"".to_owned()),
                Just("\"pub\"".to_owned()),
                Just("\"unsub\"".to_owned()),
                Just("\"topic\":".to_owned()),
                Just("\"a.b\"".to_owned()),
                Just("\"since\":".to_owned()),
                Just("\"id\":".to_owned()),
                Just("\"key\":".to_owned()),
                Just("\"data\":".to_owned()),
                Just("null".to_owned()),
                Just("\"\\u0000\\ud800\"".to_owned()),
                any::<u64>().prop_map(|n| n.to_string()),
                "-?[0-9]{1,25}(\\.[0-9]+)?(e-?[0-9]+)?",
                "\"(?s).{0,8}\"",
                "(?s).{0,3}",
            ];
            proptest::collection::vec(frag, 0..24).prop_map(|v| v.concat())
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

            #[test]
            fn decode_json_never_panics(s in any::<String>()) {
                let _ = decode_json(&s);
                let _ = error_id_json(&s);
            }

            #[test]
            fn decode_jsonish_never_panics(s in jsonish()) {
                let _ = decode_json(&s);
                let _ = error_id_json(&s);
                let wrapped = format!("{{\"op\":\"pub\",\"topic\":\"a\",\"data\":{s}}}");
                let _ = decode_json(&wrapped);
            }

            #[test]
            fn decode_binary_never_panics(b in proptest::collection::vec(any::<u8>(), 0..96)) {
                let _ = decode_binary(&b);
                let _ = error_id_binary(&b);
                for op in [OP_SUB, OP_UNSUB, OP_PUB] {
                    let mut v = vec![op];
                    v.extend(&b);
                    let _ = decode_binary(&v);
                }
            }

            #[test]
            fn mutated_binary_never_panics(
                o in owned_op(),
                flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
                cut in any::<prop::sample::Index>(),
            ) {
                let mut b = op_bin(&o.op());
                for (at, x) in flips {
                    let i = at.index(b.len());
                    b[i] ^= x;
                }
                let _ = decode_binary(&b);
                let _ = decode_binary(&b[..cut.index(b.len() + 1)]);
                let _ = error_id_binary(&b);
            }

            #[test]
            fn client_ops_round_trip(o in owned_op()) {
                let op = o.op();
                let bin = op_bin(&op);
                prop_assert_eq!(&decode_binary(&bin).unwrap(), &op);
                if o.kind != 2 || o.json.is_some() {
                    let json = op_json(&op);
                    prop_assert_eq!(&decode_json(&json).unwrap(), &op);
                    let id = error_id_json(&json);
                    prop_assert_eq!(id.as_ref(), op.id());
                }
                let id = error_id_binary(&bin);
                prop_assert_eq!(id.as_ref(), op.id());
            }

            #[test]
            fn msgs_round_trip(
                topic in topic(),
                seq in any::<u64>(),
                ts in any::<u64>(),
                json in proptest::option::of(json_text()),
                bytes in proptest::collection::vec(any::<u8>(), 0..200),
            ) {
                let data = match &json {
                    Some(text) => Payload::Json(text),
                    None => Payload::Bytes(&bytes),
                };
                let tn = TopicName::new(&topic).unwrap();
                let want = Srv::Msg {
                    topic: topic.clone(), seq, ts, json: json.is_some(), data: data.as_bytes().to_vec()
                };
                for enc in [Encoding::Json, Encoding::Binary] {
                    let mut out = Vec::new();
                    encode_msg(enc, tn, seq, ts, data, &mut out);
                    prop_assert_eq!(out.len(), msg_len(enc, tn, seq, ts, data));
                    let got = match enc {
                        Encoding::Json => decode_srv_json(&out),
                        Encoding::Binary => decode_srv_bin(&out).unwrap(),
                    };
                    prop_assert_eq!(&got, &want);
                }
            }

            #[test]
            fn replies_round_trip(
                topic in topic(),
                seq in any::<u64>(),
                id in proptest::option::of(id()),
                code in "[a-z_]{1,16}",
                msg in "(?s).{0,40}",
            ) {
                let tn = TopicName::new(&topic).unwrap();
                let t = || topic.clone();
                if let Some(id) = &id {
                    let (j, b) = both(|e, o| encode_ack(e, id, seq, o));
                    prop_assert_eq!(&j, &Srv::Ack { id: id.clone(), seq });
                    prop_assert_eq!(&b, &j);
                }
                let id = id.as_ref();
                let owned = id.cloned();
                let (j, b) = both(|e, o| encode_err(e, id, &code, &msg, o));
                prop_assert_eq!(&j, &Srv::Err { id: owned.clone(), code: code.clone(), msg: msg.clone() });
                prop_assert_eq!(&b, &j);
                let (j, b) = both(|e, o| encode_subbed(e, tn, seq, id, o));
                prop_assert_eq!(&j, &Srv::Subbed { topic: t(), seq, id: owned.clone() });
                prop_assert_eq!(&b, &j);
                let (j, b) = both(|e, o| encode_reset(e, tn, seq, o));
                prop_assert_eq!(&j, &Srv::Reset { topic: t(), seq });
                prop_assert_eq!(&b, &j);
                let (j, b) = both(|e, o| encode_unsubbed(e, tn, id, o));
                prop_assert_eq!(&j, &Srv::Unsubbed { topic: t(), id: owned, revoked: false });
                prop_assert_eq!(&b, &j);
            }

            #[test]
            fn any_string_escapes_to_the_same_string(s in any::<String>()) {
                let mut out = Vec::new();
                put_json_str(&mut out, &s);
                prop_assert_eq!(serde_json::from_slice::<String>(&out).unwrap(), s);
            }
        }
    }
}
