//! Encoding server frames (unmasked) into caller-owned buffers, and client frames for tests
//! and load generators.
//!
//! No I/O here: every function writes into a buffer the caller owns.

use bytes::Bytes;

use super::{close::CloseCode, frame::OpCode, mask::unmask};

/// The RSV1 bit of a frame's first byte: the payload is compressed (permessage-deflate).
pub const RSV1: u8 = 0x40;

/// Largest close reason that fits a control frame next to the 2-byte code.
const MAX_CLOSE_REASON: usize = 123;

/// Header length (without a mask) for a payload of `payload_len` bytes.
fn header_len(payload_len: usize) -> usize {
    if payload_len < 126 {
        2
    } else if payload_len <= usize::from(u16::MAX) {
        4
    } else {
        10
    }
}

/// Total encoded length (header and payload) of an unmasked frame with `payload_len` bytes.
pub fn encoded_len(payload_len: usize) -> usize {
    header_len(payload_len).saturating_add(payload_len)
}

/// Write an unmasked frame header into `out`; returns its length (2, 4 or 10).
pub fn encode_header(opcode: OpCode, fin: bool, payload_len: usize, out: &mut [u8; 14]) -> usize {
    out[0] = (u8::from(fin) << 7) | opcode.as_u8();
    match header_len(payload_len) {
        2 => {
            out[1] = payload_len as u8;
            2
        }
        4 => {
            out[1] = 126;
            out[2..4].copy_from_slice(&(payload_len as u16).to_be_bytes());
            4
        }
        _ => {
            out[1] = 127;
            out[2..10].copy_from_slice(&(payload_len as u64).to_be_bytes());
            10
        }
    }
}

/// Append an unmasked (server) frame to `out`.
pub fn encode_frame(opcode: OpCode, fin: bool, payload: &[u8], out: &mut Vec<u8>) {
    let mut head = [0u8; 14];
    let n = encode_header(opcode, fin, payload.len(), &mut head);
    out.reserve(n.saturating_add(payload.len()));
    out.extend_from_slice(&head[..n]);
    out.extend_from_slice(payload);
}

/// An unmasked, unfragmented (server) frame in a buffer of its own, ready to be shared by
/// many connections: queuing it anywhere costs a reference count, not a copy.
pub fn encode_frame_bytes(opcode: OpCode, payload: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(encoded_len(payload.len()));
    encode_frame(opcode, true, payload, &mut out);
    Bytes::from(out)
}

/// Write the header of an unfragmented server frame whose payload is compressed with
/// permessage-deflate (FIN and RSV1 set, RFC 7692 6); returns its length.
pub fn encode_compressed_header(opcode: OpCode, payload_len: usize, out: &mut [u8; 14]) -> usize {
    let n = encode_header(opcode, true, payload_len, out);
    out[0] |= RSV1;
    n
}

/// The opcode and payload of an unfragmented, unmasked server data frame (text or binary)
/// without RSV bits, as [`encode_frame`] writes it; `None` for anything else.
pub fn split_server_frame(frame: &[u8]) -> Option<(OpCode, &[u8])> {
    let (&b0, &b1) = (frame.first()?, frame.get(1)?);
    let op = match b0 {
        0x81 => OpCode::Text,
        0x82 => OpCode::Binary,
        _ => return None,
    };
    if b1 & 0x80 != 0 {
        return None;
    }
    let (len, at) = match b1 & 0x7f {
        126 => (
            usize::from(u16::from_be_bytes([*frame.get(2)?, *frame.get(3)?])),
            4,
        ),
        127 => {
            let raw: [u8; 8] = frame.get(2..10)?.try_into().ok()?;
            (usize::try_from(u64::from_be_bytes(raw)).ok()?, 10)
        }
        n => (usize::from(n), 2),
    };
    let payload = frame.get(at..)?;
    (payload.len() == len).then_some((op, payload))
}

/// Append a masked (client) frame to `out`.
pub fn encode_client_frame(
    opcode: OpCode,
    fin: bool,
    payload: &[u8],
    mask: [u8; 4],
    out: &mut Vec<u8>,
) {
    let mut head = [0u8; 14];
    let n = encode_header(opcode, fin, payload.len(), &mut head);
    head[1] |= 0x80;
    head[n..n + 4].copy_from_slice(&mask);
    out.reserve((n + 4).saturating_add(payload.len()));
    out.extend_from_slice(&head[..n + 4]);
    let start = out.len();
    out.extend_from_slice(payload);
    unmask(&mut out[start..], mask, 0);
}

/// Append an unmasked close frame; the reason is cut to 123 bytes at a character boundary.
/// `None` sends an empty close payload.
pub fn encode_close(code: Option<CloseCode>, reason: &str, out: &mut Vec<u8>) {
    let Some(code) = code else {
        encode_frame(OpCode::Close, true, &[], out);
        return;
    };
    let mut cut = reason.len().min(MAX_CLOSE_REASON);
    while !reason.is_char_boundary(cut) {
        cut -= 1;
    }
    let mut payload = [0u8; 2 + MAX_CLOSE_REASON];
    payload[..2].copy_from_slice(&code.0.to_be_bytes());
    payload[2..2 + cut].copy_from_slice(&reason.as_bytes()[..cut]);
    encode_frame(OpCode::Close, true, &payload[..2 + cut], out);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{close::parse_close_payload, frame::FrameHeader};

    #[test]
    fn encoded_len_at_header_size_boundaries() {
        assert_eq!(encoded_len(0), 2);
        assert_eq!(encoded_len(125), 127);
        assert_eq!(encoded_len(126), 130);
        assert_eq!(encoded_len(65535), 65539);
        assert_eq!(encoded_len(65536), 65546);
        assert_eq!(encoded_len(usize::MAX), usize::MAX);
    }

    #[test]
    fn header_sizes_2_4_10() {
        let mut h = [0u8; 14];
        assert_eq!(encode_header(OpCode::Text, true, 5, &mut h), 2);
        assert_eq!(&h[..2], &[0x81, 5]);
        assert_eq!(encode_header(OpCode::Binary, false, 126, &mut h), 4);
        assert_eq!(&h[..4], &[0x02, 126, 0, 126]);
        assert_eq!(encode_header(OpCode::Ping, true, 65535, &mut h), 4);
        assert_eq!(&h[..4], &[0x89, 126, 0xFF, 0xFF]);
        assert_eq!(encode_header(OpCode::Continuation, true, 65536, &mut h), 10);
        assert_eq!(&h[..10], &[0x80, 127, 0, 0, 0, 0, 0, 1, 0, 0]);
    }

    #[test]
    fn encode_frame_every_opcode_parses_back() {
        for op in [
            OpCode::Continuation,
            OpCode::Text,
            OpCode::Binary,
            OpCode::Close,
            OpCode::Ping,
            OpCode::Pong,
        ] {
            for fin in [false, true] {
                let mut out = Vec::new();
                encode_frame(op, fin, b"abc", &mut out);
                let h = FrameHeader::parse(&out).unwrap().unwrap();
                assert_eq!(
                    (h.opcode, h.fin, h.rsv, h.mask, h.payload_len),
                    (op, fin, 0, None, 3)
                );
                assert_eq!(&out[h.header_len..], b"abc");
            }
        }
    }

    #[test]
    fn encode_frame_appends() {
        let mut out = vec![1, 2, 3];
        let payload = vec![7u8; 70000];
        encode_frame(OpCode::Binary, true, &payload, &mut out);
        assert_eq!(out.len(), 3 + encoded_len(70000));
        assert_eq!(&out[..3], &[1, 2, 3]);
        assert_eq!(&out[13..], &payload[..]);
    }

    #[test]
    fn encode_client_frame_is_masked() {
        let mut out = Vec::new();
        encode_client_frame(
            OpCode::Text,
            true,
            b"Hello",
            [0x37, 0xfa, 0x21, 0x3d],
            &mut out,
        );
        // RFC 6455 5.7.
        assert_eq!(
            out,
            [0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58]
        );
        let mut big = Vec::new();
        encode_client_frame(OpCode::Binary, false, &[0u8; 300], [1, 2, 3, 4], &mut big);
        let h = FrameHeader::parse(&big).unwrap().unwrap();
        assert_eq!(
            (h.header_len, h.payload_len, h.mask),
            (8, 300, Some([1, 2, 3, 4]))
        );
        assert!(!h.fin);
    }

    #[test]
    fn encode_close_with_code_and_reason() {
        let mut out = Vec::new();
        encode_close(Some(CloseCode::NORMAL), "bye", &mut out);
        assert_eq!(out, [0x88, 5, 0x03, 0xE8, b'b', b'y', b'e']);
    }

    #[test]
    fn encode_close_without_code_is_empty() {
        let mut out = Vec::new();
        encode_close(None, "ignored", &mut out);
        assert_eq!(out, [0x88, 0]);
    }

    #[test]
    fn encode_close_truncates_reason_at_char_boundary() {
        // 61 two-byte chars plus one ASCII = 123 bytes fits; 62 two-byte chars = 124 does not.
        let reason = "é".repeat(62);
        let mut out = Vec::new();
        encode_close(Some(CloseCode::GOING_AWAY), &reason, &mut out);
        let payload = &out[2..];
        assert_eq!(out[1] as usize, payload.len());
        assert_eq!(payload.len(), 2 + 122);
        let frame = parse_close_payload(payload).unwrap().unwrap();
        assert_eq!(frame.reason, "é".repeat(61));

        let long_ascii = "x".repeat(500);
        let mut out = Vec::new();
        encode_close(Some(CloseCode::NORMAL), &long_ascii, &mut out);
        assert_eq!(out.len(), 2 + 125);
        let frame = parse_close_payload(&out[2..]).unwrap().unwrap();
        assert_eq!(frame.reason.len(), 123);

        let four = "𝄞".repeat(40); // 160 bytes, 4 per char: cut at 120.
        let mut out = Vec::new();
        encode_close(Some(CloseCode::NORMAL), &four, &mut out);
        assert_eq!(
            parse_close_payload(&out[2..])
                .unwrap()
                .unwrap()
                .reason
                .len(),
            120
        );
    }
}
