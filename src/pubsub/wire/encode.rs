//! Every encoder, one per message, in the connection's [`Encoding`]: each appends the message
//! body (the WebSocket frame header is added elsewhere, see `pubsub::frames`) and hands the
//! writing to the JSON or the binary module.

use std::fmt;

use super::{binary, json, ClientOp, Encoding, ErrorCode, Id, Payload, WireBuf, WireError};
use crate::pubsub::topic_name::TopicName;

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
        Encoding::Json => json::encode_msg_json(topic, seq, ts_us, data, out),
        Encoding::Binary => binary::encode_msg_binary(topic, seq, ts_us, data, out),
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
        Encoding::Json => json::msg_json_len(topic, seq, ts_us, data),
        Encoding::Binary => binary::msg_binary_len(topic, seq, ts_us, data),
    }
}

/// Append an `ack`: the publish with this `id` was given sequence number `seq`.
pub fn encode_ack<B: WireBuf + ?Sized>(enc: Encoding, id: &Id<'_>, seq: u64, out: &mut B) {
    match enc {
        Encoding::Json => json::ack(id, seq, out),
        Encoding::Binary => binary::ack(id, seq, out),
    }
}

/// Append an `err` with its `code` and a human `msg`; `id` is the failed request's, if known.
pub fn encode_err<B: WireBuf + ?Sized>(
    enc: Encoding,
    id: Option<&Id<'_>>,
    code: ErrorCode,
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
    code: ErrorCode,
    msg: &dyn fmt::Display,
    out: &mut B,
) {
    match enc {
        Encoding::Json => json::err(id, code, msg, out),
        Encoding::Binary => binary::err(id, code, msg, out),
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
        Encoding::Json => json::subbed(topic, seq, id, out),
        Encoding::Binary => binary::subbed(topic, seq, id, out),
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
        Encoding::Json => json::reset(topic, seq, out),
        Encoding::Binary => binary::reset(topic, seq, out),
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
        Encoding::Json => json::unsubbed(topic, id, revoked, out),
        Encoding::Binary => binary::unsubbed(topic, id, revoked, out),
    }
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
        Encoding::Json => json::authed(exp, id, out),
        Encoding::Binary => binary::authed(exp, id, out),
    }
}

/// Append a client op in `enc`; fails only for opaque bytes in JSON, which has no form for them.
pub fn encode_op<B: WireBuf + ?Sized>(
    enc: Encoding,
    op: &ClientOp<'_>,
    out: &mut B,
) -> Result<(), WireError> {
    match enc {
        Encoding::Json => json::encode_op_json(op, out),
        Encoding::Binary => {
            binary::encode_op_binary(op, out);
            Ok(())
        }
    }
}
