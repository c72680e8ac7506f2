//! The binary encoding (`corecast.v1.bin`, binary frames; docs/protocol.md#binary): its byte
//! values (op codes and flag bits), decoding client ops in place, and writing every message.
//!
//! A message is an op byte, a flags byte, then the fields the flags announce in a fixed
//! order; integers are LEB128 varints and strings are varint-sized. Data runs to the end.

use std::borrow::Cow;
use std::fmt;

use super::json::json_value;
use super::ops::{check_id_str, check_key, check_size, check_token, utf8_field};
use super::{AuthOp, ClientOp, ErrorCode, Id, Payload, WireBuf, WireError};
use crate::pubsub::topic_name::TopicName;

/// Client op: subscribe.
pub const OP_SUB: u8 = 0x01;
/// Client op: unsubscribe.
pub const OP_UNSUB: u8 = 0x02;
/// Client op: publish.
pub const OP_PUB: u8 = 0x03;
/// Client op: refresh the connection's token.
pub const OP_AUTH: u8 = 0x04;
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
/// Server message: an `auth` op's token was accepted.
pub const OP_AUTHED: u8 = 0x87;

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

// ---------------------------------------------------------------------------------------------
// Decoding
// ---------------------------------------------------------------------------------------------

const TRUNCATED: WireError = WireError::BadBinary("truncated");

/// A cursor over a binary message.
pub(super) struct Reader<'a> {
    pub(super) buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn byte(&mut self) -> Result<u8, WireError> {
        let (&b, rest) = self.buf.split_first().ok_or(TRUNCATED)?;
        self.buf = rest;
        Ok(b)
    }

    /// An unsigned LEB128 varint of at most 10 bytes, in its shortest form.
    pub(super) fn varint(&mut self) -> Result<u64, WireError> {
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
    pub(super) fn sized(&mut self) -> Result<&'a [u8], WireError> {
        let len = self.varint()?;
        self.take(len)
    }

    /// A varint-sized UTF-8 string; not UTF-8 is `bad_field` for `field`.
    pub(super) fn utf8(&mut self, field: &'static str) -> Result<&'a str, WireError> {
        utf8_field(self.sized()?, field)
    }

    /// Everything left.
    pub(super) fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.buf)
    }

    /// Nothing may be left.
    pub(super) fn finish(&self) -> Result<(), WireError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(WireError::BadBinary("trailing bytes"))
        }
    }

    /// The op and flags bytes; flags outside `allowed` (for `op`) are an error.
    pub(super) fn head(
        &mut self,
        allowed: impl Fn(u8) -> Option<u8>,
    ) -> Result<(u8, u8), WireError> {
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

    /// The id the flags announce, if any.
    pub(super) fn id(&mut self, flags: u8) -> Result<Option<Id<'a>>, WireError> {
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

/// The flags a client op may set, or `None` for a byte that is no client op.
fn client_flags(op: u8) -> Option<u8> {
    match op {
        OP_SUB => Some(FLAG_ID | FLAG_SINCE),
        OP_UNSUB => Some(FLAG_ID),
        OP_PUB => Some(FLAG_ID | FLAG_KEY | FLAG_JSON),
        OP_AUTH => Some(FLAG_ID),
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
    if op == OP_AUTH {
        let token = Cow::Borrowed(r.utf8("token")?);
        r.finish()?;
        check_token(&token)?;
        return Ok(ClientOp::Auth(AuthOp { token, id }));
    }
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
                Payload::Json(json_value(bytes)?)
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

/// The id of a binary client message that failed to decode, if it can still be read, so the
/// `err` reply can carry it.
///
/// Not for `auth`: its `err` has never carried the id in the binary encoding (the JSON one
/// does), and the wire stays as it was.
pub fn error_id_binary(input: &[u8]) -> Option<Id<'_>> {
    if input.first() == Some(&OP_AUTH) {
        return None;
    }
    let mut r = Reader { buf: input };
    let (_, flags) = r.head(client_flags).ok()?;
    r.id(flags).ok().flatten()
}

// ---------------------------------------------------------------------------------------------
// Primitive writers
// ---------------------------------------------------------------------------------------------

/// Append `n` as an unsigned LEB128 varint.
pub(super) fn put_varint<B: WireBuf + ?Sized>(out: &mut B, mut n: u64) {
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
pub(super) fn varint_len(n: u64) -> usize {
    (64 - (n | 1).leading_zeros() as usize).div_ceil(7)
}

/// The exact length [`encode_op_binary`] appends for a `pub` without an id: the smallest
/// `pub` that carries a topic, a key and data of these lengths (the JSON envelope is longer).
pub(super) fn pub_len(topic: usize, key: Option<usize>, data: usize) -> usize {
    2usize
        .saturating_add(sized_len(topic))
        .saturating_add(key.map_or(0, sized_len))
        .saturating_add(data)
}

/// Append `bytes` with a varint length prefix.
pub(super) fn put_sized<B: WireBuf + ?Sized>(out: &mut B, bytes: &[u8]) {
    put_varint(out, bytes.len() as u64);
    out.put(bytes);
}

/// Encoded length of `len` bytes with their varint length prefix.
fn sized_len(len: usize) -> usize {
    varint_len(len as u64).saturating_add(len)
}

/// A `fmt::Write` that appends text as it is.
struct RawText<'b, B: ?Sized>(&'b mut B);

impl<B: WireBuf + ?Sized> fmt::Write for RawText<'_, B> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.0.put(s.as_bytes());
        Ok(())
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

/// Append the op byte, the flags (`flags` and the id's), and the id.
fn put_head<B: WireBuf + ?Sized>(out: &mut B, op: u8, flags: u8, id: Option<&Id<'_>>) {
    out.put(&[op, flags | id_flags(id)]);
    put_bin_id(out, id);
}

// ---------------------------------------------------------------------------------------------
// Server messages
// ---------------------------------------------------------------------------------------------

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

/// `82 flags id seq`.
pub(super) fn ack<B: WireBuf + ?Sized>(id: &Id<'_>, seq: u64, out: &mut B) {
    put_head(out, OP_ACK, 0, Some(id));
    put_varint(out, seq);
}

/// `83 flags [id] code msg...`, `msg` being `Display` text.
pub(super) fn err<B: WireBuf + ?Sized>(
    id: Option<&Id<'_>>,
    code: ErrorCode,
    msg: &dyn fmt::Display,
    out: &mut B,
) {
    use fmt::Write as _;
    put_head(out, OP_ERR, 0, id);
    put_sized(out, code.as_str().as_bytes());
    // Writing into a buffer cannot fail; only a broken Display impl could.
    let _ = write!(RawText(out), "{msg}");
}

/// `84 flags [id] topic seq`.
pub(super) fn subbed<B: WireBuf + ?Sized>(
    topic: TopicName<'_>,
    seq: u64,
    id: Option<&Id<'_>>,
    out: &mut B,
) {
    put_head(out, OP_SUBBED, 0, id);
    put_sized(out, topic.as_str().as_bytes());
    put_varint(out, seq);
}

/// `85 00 topic seq`.
pub(super) fn reset<B: WireBuf + ?Sized>(topic: TopicName<'_>, seq: u64, out: &mut B) {
    put_head(out, OP_RESET, 0, None);
    put_sized(out, topic.as_str().as_bytes());
    put_varint(out, seq);
}

/// `86 flags [id] topic`, with the `REVOKED` flag when `revoked`.
pub(super) fn unsubbed<B: WireBuf + ?Sized>(
    topic: TopicName<'_>,
    id: Option<&Id<'_>>,
    revoked: bool,
    out: &mut B,
) {
    let flags = if revoked { FLAG_REVOKED } else { 0 };
    put_head(out, OP_UNSUBBED, flags, id);
    put_sized(out, topic.as_str().as_bytes());
}

/// `87 flags [id] exp`.
pub(super) fn authed<B: WireBuf + ?Sized>(exp: u64, id: Option<&Id<'_>>, out: &mut B) {
    put_head(out, OP_AUTHED, 0, id);
    put_varint(out, exp);
}

// ---------------------------------------------------------------------------------------------
// Client ops (for clients, load generators and tests)
// ---------------------------------------------------------------------------------------------

/// Append a client op in the binary encoding.
pub fn encode_op_binary<B: WireBuf + ?Sized>(op: &ClientOp<'_>, out: &mut B) {
    let id = op.id();
    match op {
        ClientOp::Sub { topic, since, .. } => {
            let flags = if since.is_some() { FLAG_SINCE } else { 0 };
            put_head(out, OP_SUB, flags, id);
            put_sized(out, topic.as_str().as_bytes());
            if let Some(since) = since {
                put_varint(out, *since);
            }
        }
        ClientOp::Unsub { topic, .. } => {
            put_head(out, OP_UNSUB, 0, id);
            put_sized(out, topic.as_str().as_bytes());
        }
        ClientOp::Pub {
            topic, data, key, ..
        } => {
            let flags = if key.is_some() { FLAG_KEY } else { 0 }
                | if data.is_json() { FLAG_JSON } else { 0 };
            put_head(out, OP_PUB, flags, id);
            put_sized(out, topic.as_str().as_bytes());
            if let Some(key) = key {
                put_sized(out, key.as_bytes());
            }
            out.put(data.as_bytes());
        }
        ClientOp::Auth(AuthOp { token, .. }) => {
            put_head(out, OP_AUTH, 0, id);
            put_sized(out, token.as_bytes());
        }
    }
}
