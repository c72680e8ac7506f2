//! The JSON encoding (`corecast.v1.json`, text frames): decoding client ops with serde into
//! borrowed raw fields, and writing every message by hand (no serde on the encode path). JSON
//! publish data stays the raw text slice it arrived as and is spliced into `msg` verbatim.

use std::borrow::Cow;
use std::fmt;

use serde::Deserialize;
use serde_json::value::RawValue;

use super::ops::{check_id_str, check_key, check_size, check_token};
use super::{
    AuthOp, ClientOp, ErrorCode, Id, Payload, WireBuf, WireError, MAX_DATA_DEPTH,
    MAX_ENVELOPE_BYTES,
};
use crate::pubsub::topic_name::{TopicError, TopicName};

// ---------------------------------------------------------------------------------------------
// Decoding
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
pub(super) fn raw_some<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<&'de RawValue>, D::Error> {
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

/// The `bad_op` error for an op name (quoted, shortened).
fn bad_op(name: &str) -> WireError {
    WireError::BadOp(shorten(&format!("{name:?}")))
}

/// Decode a client message from the JSON encoding (a text frame's payload).
///
/// Fields are checked in this order, and the first failure is returned: size, JSON syntax,
/// `op`, `id`, then `topic`, then `since` (sub) or `key` and `data` (pub); an `auth` has no
/// topic and checks `token` after `id`. Unknown fields, and fields the op does not define,
/// are ignored; `null` counts as absent (except as `data`).
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
            // Unlike the other names, `auth` is understood only without escapes, as always.
            "auth" if matches!(name, Cow::Borrowed(_)) => return json_auth(input, json_id(f.id)?),
            _ => return Err(bad_op(&name)),
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

/// The rest of an `auth` op, once its `op` and `id` are read: the `token`.
///
/// The token is read in a second, small parse so that [`Fields`] (every `sub` and `pub`)
/// does not carry it; a token given twice is answered `bad_op`, as it always has been.
fn json_auth<'a>(input: &'a str, id: Option<Id<'a>>) -> Result<ClientOp<'a>, WireError> {
    #[derive(Deserialize)]
    struct Token<'a> {
        #[serde(default, borrow, deserialize_with = "raw_some")]
        token: Option<&'a RawValue>,
    }
    let f: Token<'_> = serde_json::from_str(input).map_err(|_| bad_op("auth"))?;
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
    Ok(ClientOp::Auth(AuthOp { token, id }))
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

/// Check that `bytes` are exactly one JSON value nesting no deeper than [`MAX_DATA_DEPTH`];
/// returns the value's text without the whitespace around it.
///
/// The rule for `pub` data that arrives apart from a JSON envelope: JSON-flagged binary data,
/// and a publish without a client envelope ([`check_pub`](super::check_pub)).
pub(super) fn json_value(bytes: &[u8]) -> Result<&str, WireError> {
    let text =
        std::str::from_utf8(bytes).map_err(|_| WireError::BadJson("data is not UTF-8".into()))?;
    let raw: &RawValue = serde_json::from_str(text)
        .map_err(|e| WireError::BadJson(format!("data is not one JSON value: {e}")))?;
    check_depth(raw.get())?;
    Ok(raw.get())
}

/// Refuse (valid) JSON text that nests arrays and objects deeper than [`MAX_DATA_DEPTH`].
pub(super) fn check_depth(json: &str) -> Result<(), WireError> {
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
pub(super) fn put_dec<B: WireBuf + ?Sized>(out: &mut B, mut n: u64) {
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
pub(super) fn dec_len(n: u64) -> usize {
    n.checked_ilog10().map_or(1, |d| d as usize + 1)
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
pub(super) fn put_json_str<B: WireBuf + ?Sized>(out: &mut B, s: &str) {
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

/// Append `bytes` as standard base64 with padding (RFC 4648 section 4).
pub(super) fn put_base64<B: WireBuf + ?Sized>(out: &mut B, bytes: &[u8]) {
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

/// Encoded length of `len` bytes in base64.
pub(super) fn base64_len(len: usize) -> usize {
    len.div_ceil(3) * 4
}

/// Append a JSON id (string with escapes, or number).
fn put_json_id<B: WireBuf + ?Sized>(out: &mut B, id: &Id<'_>) {
    match id {
        Id::Str(s) => put_json_str(out, s),
        Id::Num(n) => put_dec(out, *n),
    }
}

/// Append `,"id":<id>` when there is an id.
fn put_opt_id<B: WireBuf + ?Sized>(out: &mut B, id: Option<&Id<'_>>) {
    if let Some(id) = id {
        out.put(b",\"id\":");
        put_json_id(out, id);
    }
}

// ---------------------------------------------------------------------------------------------
// Server messages
// ---------------------------------------------------------------------------------------------

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

/// `{"op":"ack","id":..,"seq":..}`.
pub(super) fn ack<B: WireBuf + ?Sized>(id: &Id<'_>, seq: u64, out: &mut B) {
    out.put(b"{\"op\":\"ack\",\"id\":");
    put_json_id(out, id);
    out.put(b",\"seq\":");
    put_dec(out, seq);
    out.put(b"}");
}

/// `{"op":"err","id":..,"code":..,"msg":..}`, `msg` being `Display` text, escaped.
pub(super) fn err<B: WireBuf + ?Sized>(
    id: Option<&Id<'_>>,
    code: ErrorCode,
    msg: &dyn fmt::Display,
    out: &mut B,
) {
    use fmt::Write as _;
    out.put(b"{\"op\":\"err\"");
    put_opt_id(out, id);
    out.put(b",\"code\":");
    put_json_str(out, code.as_str());
    out.put(b",\"msg\":\"");
    // Writing into a buffer cannot fail; only a broken Display impl could.
    let _ = write!(JsonText(out), "{msg}");
    out.put(b"\"}");
}

/// `{"op":"subbed","topic":..,"seq":..,"id":..}`.
pub(super) fn subbed<B: WireBuf + ?Sized>(
    topic: TopicName<'_>,
    seq: u64,
    id: Option<&Id<'_>>,
    out: &mut B,
) {
    out.put(b"{\"op\":\"subbed\",\"topic\":\"");
    out.put(topic.as_str().as_bytes());
    out.put(b"\",\"seq\":");
    put_dec(out, seq);
    put_opt_id(out, id);
    out.put(b"}");
}

/// `{"op":"reset","topic":..,"seq":..}`.
pub(super) fn reset<B: WireBuf + ?Sized>(topic: TopicName<'_>, seq: u64, out: &mut B) {
    out.put(b"{\"op\":\"reset\",\"topic\":\"");
    out.put(topic.as_str().as_bytes());
    out.put(b"\",\"seq\":");
    put_dec(out, seq);
    out.put(b"}");
}

/// `{"op":"unsubbed","topic":..,"id":..}`, with `"reason":"forbidden"` when `revoked`.
pub(super) fn unsubbed<B: WireBuf + ?Sized>(
    topic: TopicName<'_>,
    id: Option<&Id<'_>>,
    revoked: bool,
    out: &mut B,
) {
    out.put(b"{\"op\":\"unsubbed\",\"topic\":\"");
    out.put(topic.as_str().as_bytes());
    out.put(b"\"");
    put_opt_id(out, id);
    if revoked {
        out.put(b",\"reason\":\"forbidden\"");
    }
    out.put(b"}");
}

/// `{"op":"authed","exp":..,"id":..}`.
pub(super) fn authed<B: WireBuf + ?Sized>(exp: u64, id: Option<&Id<'_>>, out: &mut B) {
    out.put(b"{\"op\":\"authed\",\"exp\":");
    put_dec(out, exp);
    put_opt_id(out, id);
    out.put(b"}");
}

// ---------------------------------------------------------------------------------------------
// Client ops (for clients, load generators and tests)
// ---------------------------------------------------------------------------------------------

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
    out.put(b"\"");
    if let Some(topic) = op.topic() {
        out.put(b",\"topic\":\"");
        out.put(topic.as_str().as_bytes());
        out.put(b"\"");
    }
    match op {
        ClientOp::Sub {
            since: Some(since), ..
        } => {
            out.put(b",\"since\":");
            put_dec(out, *since);
        }
        ClientOp::Pub { key: Some(key), .. } => {
            out.put(b",\"key\":");
            put_json_str(out, key);
        }
        ClientOp::Auth(AuthOp { token, .. }) => {
            out.put(b",\"token\":");
            put_json_str(out, token);
        }
        _ => {}
    }
    put_opt_id(out, op.id());
    if let ClientOp::Pub { data, .. } = op {
        out.put(b",\"data\":");
        out.put(data.as_bytes());
    }
    out.put(b"}");
    Ok(())
}
