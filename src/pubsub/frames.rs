//! Server frames of the pub/sub protocol, encoded once into `Bytes` with their WebSocket
//! header, ready to be shared by every connection that sends them.

use bytes::{Bytes, BytesMut};

use super::{
    wire::{self, Encoding, ErrorCode, Id, Payload, WireError},
    TopicName,
};
use crate::proto::{encode_header, OpCode};

/// Largest header of an unmasked server frame.
const MAX_HEAD: usize = 10;

/// One encoded frame per encoding, each present only if someone needs it.
#[derive(Debug, Clone, Default)]
pub struct Frames([Option<Bytes>; 2]);

impl Frames {
    /// The frame for `enc`, if it was encoded.
    pub fn get(&self, enc: Encoding) -> Option<&Bytes> {
        self.0[index(enc)].as_ref()
    }

    /// Set the frame for `enc`.
    pub fn set(&mut self, enc: Encoding, frame: Bytes) {
        self.0[index(enc)] = Some(frame);
    }
}

/// The permessage-deflate variants of one message's frames, made on first need: one per
/// (encoding, server window), shared by every subscriber that negotiated that window. Empty
/// (no allocation) while no subscriber compresses.
#[derive(Debug, Default)]
pub struct Deflated(Vec<(Encoding, u8, Option<Bytes>)>);

impl Deflated {
    /// The frame to send to a subscriber with encoding `enc` and server window `bits`: the
    /// compressed variant of `plain`, or `plain` itself when compressing does not pay
    /// (under the threshold, or no smaller). `deflate` compresses a frame for a window (see
    /// [`Ctx::deflate_frame`](crate::server::Ctx::deflate_frame)); it runs once per variant.
    pub fn get(
        &mut self,
        enc: Encoding,
        bits: u8,
        plain: &Bytes,
        deflate: impl FnOnce(&Bytes, u8) -> Option<Bytes>,
    ) -> Bytes {
        let z = match self.0.iter().find(|(e, b, _)| *e == enc && *b == bits) {
            Some((_, _, z)) => z.clone(),
            None => {
                let z = deflate(plain, bits);
                self.0.push((enc, bits, z.clone()));
                z
            }
        };
        z.unwrap_or_else(|| plain.clone())
    }
}

/// The slot of an encoding in per-encoding arrays.
pub const fn index(enc: Encoding) -> usize {
    match enc {
        Encoding::Json => 0,
        Encoding::Binary => 1,
    }
}

/// Both encodings, in [`index`] order.
pub const ENCODINGS: [Encoding; 2] = [Encoding::Json, Encoding::Binary];

/// Encode one protocol message with `f` behind room for its frame header, then write the
/// header in front: one allocation, no copy.
pub(crate) fn framed(enc: Encoding, capacity: usize, f: impl FnOnce(&mut BytesMut)) -> Bytes {
    let mut buf = BytesMut::with_capacity(MAX_HEAD + capacity);
    buf.extend_from_slice(&[0; MAX_HEAD]);
    f(&mut buf);
    let len = buf.len() - MAX_HEAD;
    let op = if enc.is_text() {
        OpCode::Text
    } else {
        OpCode::Binary
    };
    let mut head = [0u8; 14];
    let n = encode_header(op, true, len, &mut head);
    let start = MAX_HEAD - n;
    buf[start..MAX_HEAD].copy_from_slice(&head[..n]);
    buf.freeze().slice(start..)
}

/// A `msg` frame.
pub fn msg(enc: Encoding, topic: TopicName<'_>, seq: u64, ts_us: u64, data: Payload<'_>) -> Bytes {
    let len = wire::msg_len(enc, topic, seq, ts_us, data);
    framed(enc, len, |b| {
        wire::encode_msg(enc, topic, seq, ts_us, data, b)
    })
}

/// The bytes a `msg` frame in `enc` takes once encoded (its allocation: the encoded
/// message behind room for the longest header).
pub fn msg_size(
    enc: Encoding,
    topic: TopicName<'_>,
    seq: u64,
    ts_us: u64,
    data: Payload<'_>,
) -> usize {
    MAX_HEAD + wire::msg_len(enc, topic, seq, ts_us, data)
}

/// An `ack` frame.
pub fn ack(enc: Encoding, id: &Id<'_>, seq: u64) -> Bytes {
    framed(enc, 64 + id_len(id), |b| wire::encode_ack(enc, id, seq, b))
}

/// A `subbed` frame.
pub fn subbed(enc: Encoding, topic: TopicName<'_>, seq: u64, id: Option<&Id<'_>>) -> Bytes {
    framed(enc, 64 + topic.len() + id.map_or(0, id_len), |b| {
        wire::encode_subbed(enc, topic, seq, id, b)
    })
}

/// A `reset` frame.
pub fn reset(enc: Encoding, topic: TopicName<'_>, seq: u64) -> Bytes {
    framed(enc, 64 + topic.len(), |b| {
        wire::encode_reset(enc, topic, seq, b)
    })
}

/// An `unsubbed` frame.
pub fn unsubbed(enc: Encoding, topic: TopicName<'_>, id: Option<&Id<'_>>) -> Bytes {
    framed(enc, 64 + topic.len() + id.map_or(0, id_len), |b| {
        wire::encode_unsubbed(enc, topic, id, b)
    })
}

/// An `unsubbed` frame the server sends on its own when a refreshed token no longer allows
/// the topic.
pub fn revoked(enc: Encoding, topic: TopicName<'_>) -> Bytes {
    framed(enc, 64 + topic.len(), |b| {
        wire::encode_revoked(enc, topic, b)
    })
}

/// An `err` frame for a refused client message.
pub fn error(enc: Encoding, id: Option<&Id<'_>>, err: &WireError) -> Bytes {
    framed(enc, 128, |b| wire::encode_error(enc, id, err, b))
}

/// An `err` frame with a server-side code (`forbidden`, `rate_limited`, ...).
pub fn err(enc: Encoding, id: Option<&Id<'_>>, code: ErrorCode, msg: &str) -> Bytes {
    framed(enc, 64 + code.as_str().len() + msg.len(), |b| {
        wire::encode_err(enc, id, code, msg, b)
    })
}

/// An `authed` frame (the token of an `auth` op was accepted).
pub fn authed(enc: Encoding, exp: u64, id: Option<&Id<'_>>) -> Bytes {
    framed(enc, 48 + id.map_or(0, id_len), |b| {
        wire::encode_authed(enc, exp, id, b)
    })
}

fn id_len(id: &Id<'_>) -> usize {
    match id {
        Id::Str(s) => s.len() * 6 + 2,
        Id::Num(_) => 20,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Split an unmasked server frame into opcode and payload (test-side parser).
    fn payload(frame: &Bytes) -> (OpCode, Vec<u8>) {
        assert_eq!(frame[0] & 0xf0, 0x80, "FIN set, RSV clear");
        let op = if frame[0] & 0x0f == 1 {
            OpCode::Text
        } else {
            OpCode::Binary
        };
        assert_eq!(frame[1] & 0x80, 0, "server frames are not masked");
        let (len, at) = match frame[1] & 0x7f {
            126 => (u16::from_be_bytes([frame[2], frame[3]]) as usize, 4),
            127 => (
                u64::from_be_bytes(frame[2..10].try_into().unwrap()) as usize,
                10,
            ),
            n => (n as usize, 2),
        };
        assert_eq!(frame.len(), at + len, "length field matches");
        (op, frame[at..].to_vec())
    }

    #[test]
    fn frames_carry_the_wire_message_behind_a_correct_header() {
        let t = TopicName::new("prices.BTC").unwrap();
        let f = msg(Encoding::Json, t, 43, 7, Payload::Json("{\"px\":1}"));
        let (op, body) = payload(&f);
        assert_eq!(op, OpCode::Text);
        assert_eq!(
            body,
            br#"{"op":"msg","topic":"prices.BTC","seq":43,"ts":7,"data":{"px":1}}"#
        );
        let big = "x".repeat(70_000);
        let data = format!("\"{big}\"");
        let f = msg(Encoding::Binary, t, 1, 2, Payload::Json(&data));
        let (op, body) = payload(&f);
        assert_eq!(op, OpCode::Binary);
        assert_eq!(
            body.len(),
            wire::msg_binary_len(t, 1, 2, Payload::Json(&data))
        );
        let f = subbed(Encoding::Json, t, 5, Some(&Id::Num(9)));
        assert_eq!(
            payload(&f).1,
            br#"{"op":"subbed","topic":"prices.BTC","seq":5,"id":9}"#
        );
    }
}
