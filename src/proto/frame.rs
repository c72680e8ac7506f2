//! Frame headers: opcodes and the header layout of RFC 6455 5.2.
//!
//! Only structure lives here; policy (masking, RSV, limits, control rules) is the decoder's.

use super::error::ProtocolError;

/// A frame opcode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OpCode {
    /// 0x0: continuation of a fragmented message.
    Continuation,
    /// 0x1: text.
    Text,
    /// 0x2: binary.
    Binary,
    /// 0x8: close.
    Close,
    /// 0x9: ping.
    Ping,
    /// 0xA: pong.
    Pong,
}

impl OpCode {
    /// Decode a 4-bit opcode; `None` for reserved values.
    pub fn from_u8(v: u8) -> Option<OpCode> {
        match v {
            0x0 => Some(OpCode::Continuation),
            0x1 => Some(OpCode::Text),
            0x2 => Some(OpCode::Binary),
            0x8 => Some(OpCode::Close),
            0x9 => Some(OpCode::Ping),
            0xA => Some(OpCode::Pong),
            _ => None,
        }
    }

    /// The 4-bit wire value.
    pub fn as_u8(self) -> u8 {
        match self {
            OpCode::Continuation => 0x0,
            OpCode::Text => 0x1,
            OpCode::Binary => 0x2,
            OpCode::Close => 0x8,
            OpCode::Ping => 0x9,
            OpCode::Pong => 0xA,
        }
    }

    /// Close, ping and pong are control frames.
    pub fn is_control(self) -> bool {
        matches!(self, OpCode::Close | OpCode::Ping | OpCode::Pong)
    }
}

/// A decoded frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// FIN bit: last frame of a message.
    pub fin: bool,
    /// RSV1..3 as the low three bits (RSV1 = 0b100).
    pub rsv: u8,
    /// The opcode.
    pub opcode: OpCode,
    /// The masking key, if the MASK bit was set.
    pub mask: Option<[u8; 4]>,
    /// Payload length in bytes.
    pub payload_len: u64,
    /// Header length in bytes (2 to 14).
    pub header_len: usize,
}

impl FrameHeader {
    /// Parse a header from the start of `buf`; `Ok(None)` when more bytes are needed.
    ///
    /// Rejects only what is structurally invalid: reserved opcodes and 64-bit lengths with the
    /// high bit set. Policy checks (masking, RSV, limits, control rules) live in the decoder.
    pub fn parse(buf: &[u8]) -> Result<Option<FrameHeader>, ProtocolError> {
        let Some(p) = HeaderPrefix::parse(buf)? else {
            return Ok(None);
        };
        let mut header_len = p.len_end;
        let mask = if p.masked {
            match buf.get(p.len_end..p.len_end + 4) {
                Some(&[a, b, c, d]) => {
                    header_len += 4;
                    Some([a, b, c, d])
                }
                _ => return Ok(None),
            }
        } else {
            None
        };
        Ok(Some(FrameHeader {
            fin: p.fin,
            rsv: p.rsv,
            opcode: p.opcode,
            mask,
            payload_len: p.payload_len,
            header_len,
        }))
    }
}

/// The header up to and including the payload length: everything but the masking key.
///
/// Lets the decoder apply its policy checks as soon as the length is known, before the key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct HeaderPrefix {
    /// FIN bit.
    pub(crate) fin: bool,
    /// RSV1..3 as the low three bits.
    pub(crate) rsv: u8,
    /// The opcode.
    pub(crate) opcode: OpCode,
    /// Whether the MASK bit is set (a 4-byte key follows the length).
    pub(crate) masked: bool,
    /// Payload length in bytes.
    pub(crate) payload_len: u64,
    /// Offset just past the length field (2, 4 or 10): where the key starts.
    pub(crate) len_end: usize,
}

impl HeaderPrefix {
    /// Parse up to the payload length; `Ok(None)` when more bytes are needed.
    pub(crate) fn parse(buf: &[u8]) -> Result<Option<HeaderPrefix>, ProtocolError> {
        let (b0, b1) = match buf {
            [b0, b1, ..] => (*b0, *b1),
            _ => return Ok(None),
        };
        let raw_op = b0 & 0x0F;
        let opcode = OpCode::from_u8(raw_op).ok_or(ProtocolError::UnknownOpcode(raw_op))?;
        let (payload_len, len_end) = match b1 & 0x7F {
            126 => match buf.get(2..4) {
                Some(&[a, b]) => (u64::from(u16::from_be_bytes([a, b])), 4),
                _ => return Ok(None),
            },
            127 => match buf.get(2..10) {
                Some(&[a, b, c, d, e, f, g, h]) => {
                    let len = u64::from_be_bytes([a, b, c, d, e, f, g, h]);
                    if len >> 63 != 0 {
                        return Err(ProtocolError::InvalidLength);
                    }
                    (len, 10)
                }
                _ => return Ok(None),
            },
            n => (u64::from(n), 2),
        };
        Ok(Some(HeaderPrefix {
            fin: b0 & 0x80 != 0,
            rsv: (b0 >> 4) & 0b111,
            opcode,
            masked: b1 & 0x80 != 0,
            payload_len,
            len_end,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [OpCode; 6] = [
        OpCode::Continuation,
        OpCode::Text,
        OpCode::Binary,
        OpCode::Close,
        OpCode::Ping,
        OpCode::Pong,
    ];

    #[test]
    fn opcode_round_trips_every_value() {
        for op in ALL {
            assert_eq!(OpCode::from_u8(op.as_u8()), Some(op));
        }
        let valid: Vec<u8> = ALL.iter().map(|o| o.as_u8()).collect();
        assert_eq!(valid, [0x0, 0x1, 0x2, 0x8, 0x9, 0xA]);
        for v in 0u8..=255 {
            assert_eq!(
                OpCode::from_u8(v).is_some(),
                valid.contains(&v),
                "value {v:#x}"
            );
        }
    }

    #[test]
    fn opcode_is_control_only_for_close_ping_pong() {
        for op in ALL {
            assert_eq!(op.is_control(), op.as_u8() >= 8, "{op:?}");
        }
    }

    #[test]
    fn parse_short_header_masked() {
        let buf = [0x81, 0x85, 1, 2, 3, 4, 0xAA];
        let h = FrameHeader::parse(&buf).unwrap().unwrap();
        assert_eq!(
            h,
            FrameHeader {
                fin: true,
                rsv: 0,
                opcode: OpCode::Text,
                mask: Some([1, 2, 3, 4]),
                payload_len: 5,
                header_len: 6,
            }
        );
    }

    #[test]
    fn parse_rsv_bits_as_low_three_bits() {
        let h = FrameHeader::parse(&[0x42, 0x00]).unwrap().unwrap();
        assert_eq!(h.rsv, 0b100);
        assert!(!h.fin);
        assert_eq!(h.opcode, OpCode::Binary);
        assert_eq!(
            FrameHeader::parse(&[0x12, 0x00]).unwrap().unwrap().rsv,
            0b001
        );
        assert_eq!(
            FrameHeader::parse(&[0xF2, 0x00]).unwrap().unwrap().rsv,
            0b111
        );
    }

    #[test]
    fn parse_extended_16_bit_length() {
        let buf = [0x82, 0xFE, 0x01, 0x00, 9, 9, 9, 9];
        let h = FrameHeader::parse(&buf).unwrap().unwrap();
        assert_eq!(h.payload_len, 256);
        assert_eq!(h.header_len, 8);
        let unmasked = FrameHeader::parse(&[0x82, 0x7E, 0xFF, 0xFF])
            .unwrap()
            .unwrap();
        assert_eq!(unmasked.payload_len, 65535);
        assert_eq!(unmasked.header_len, 4);
        assert_eq!(unmasked.mask, None);
    }

    #[test]
    fn parse_extended_64_bit_length() {
        let mut buf = vec![0x82, 0xFF];
        buf.extend_from_slice(&(1u64 << 40).to_be_bytes());
        buf.extend_from_slice(&[5, 6, 7, 8]);
        let h = FrameHeader::parse(&buf).unwrap().unwrap();
        assert_eq!(h.payload_len, 1 << 40);
        assert_eq!(h.header_len, 14);
        assert_eq!(h.mask, Some([5, 6, 7, 8]));
    }

    #[test]
    fn parse_incomplete_at_every_prefix() {
        let mut full = vec![0x82, 0xFF];
        full.extend_from_slice(&70000u64.to_be_bytes());
        full.extend_from_slice(&[1, 2, 3, 4]);
        for n in 0..full.len() {
            assert_eq!(FrameHeader::parse(&full[..n]), Ok(None), "prefix {n}");
        }
        assert!(FrameHeader::parse(&full).unwrap().is_some());
        let short = [0x81, 0xFE, 0x00, 0x80, 1, 2, 3, 4];
        for n in 0..short.len() {
            assert_eq!(FrameHeader::parse(&short[..n]), Ok(None), "prefix {n}");
        }
    }

    #[test]
    fn parse_rejects_reserved_opcodes() {
        for op in [3u8, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF] {
            assert_eq!(
                FrameHeader::parse(&[0x80 | op, 0x80]),
                Err(ProtocolError::UnknownOpcode(op))
            );
        }
    }

    #[test]
    fn parse_rejects_64_bit_length_with_msb_set() {
        let mut buf = vec![0x82, 0xFF];
        buf.extend_from_slice(&(1u64 << 63).to_be_bytes());
        assert_eq!(FrameHeader::parse(&buf), Err(ProtocolError::InvalidLength));
        // Rejected before the mask arrives.
        assert_eq!(
            FrameHeader::parse(&buf[..10]),
            Err(ProtocolError::InvalidLength)
        );
    }
}
