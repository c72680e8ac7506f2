//! Frame headers: opcodes and the header layout of RFC 6455 5.2.

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
        let _ = v;
        todo!()
    }

    /// The 4-bit wire value.
    pub fn as_u8(self) -> u8 {
        todo!()
    }

    /// Close, ping and pong are control frames.
    pub fn is_control(self) -> bool {
        todo!()
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
        let _ = buf;
        todo!()
    }
}
