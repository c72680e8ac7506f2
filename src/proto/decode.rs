//! The frame decoder: validates client frames and yields payloads unmasked in place.
//!
//! Contract: `decode` looks at the start of the caller's buffer. When the frame there is not
//! complete it returns `Ok(None)` and consumes nothing; it may already have unmasked and
//! validated the payload bytes present (it remembers how far), so the caller must keep those
//! bytes in place and only append. Limits are checked on the header, before any payload is
//! buffered. Text payloads are validated incrementally and fail at the first invalid byte.

use super::{close::CloseFrame, error::ProtocolError, frame::OpCode};

/// Size limits enforced by the decoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecoderLimits {
    /// Largest payload of a single frame.
    pub max_frame: usize,
    /// Largest message (sum of its fragments' payloads).
    pub max_message: usize,
}

impl Default for DecoderLimits {
    fn default() -> Self {
        DecoderLimits { max_frame: 16 << 20, max_message: 16 << 20 }
    }
}

/// One decoded frame, its payload borrowed from (and unmasked in) the read buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum Decoded<'a> {
    /// A data frame. `opcode` is `Text` or `Binary` on the first frame of a message and
    /// `Continuation` after; `fin` marks the last frame. Text is already UTF-8 validated,
    /// including across fragments (a code point may straddle two fragments).
    Data {
        /// Opcode as sent.
        opcode: OpCode,
        /// FIN bit.
        fin: bool,
        /// Unmasked payload.
        payload: &'a [u8],
    },
    /// A ping with its payload (at most 125 bytes).
    Ping(&'a [u8]),
    /// A pong with its payload (at most 125 bytes).
    Pong(&'a [u8]),
    /// A close frame: `None` when it carried no status code.
    Close(Option<CloseFrame<'a>>),
}

/// The per-connection decoding state machine.
#[derive(Debug)]
pub struct Decoder {
    limits: DecoderLimits,
    rsv_allowed: u8,
}

impl Decoder {
    /// A decoder enforcing `limits`, with no RSV bits allowed.
    pub fn new(limits: DecoderLimits) -> Self {
        Decoder { limits, rsv_allowed: 0 }
    }

    /// Allow the RSV bits (low three bits, RSV1 = 0b100) that a negotiated extension claimed.
    pub fn set_rsv_allowed(&mut self, rsv: u8) {
        self.rsv_allowed = rsv;
    }

    /// Decode one frame from the start of `buf`, unmasking its payload in place.
    ///
    /// Returns the frame and the number of bytes it occupied; the caller drops those bytes
    /// once it is done with the frame. `Ok(None)`: incomplete, nothing consumed.
    pub fn decode<'a>(
        &mut self,
        buf: &'a mut [u8],
    ) -> Result<Option<(Decoded<'a>, usize)>, ProtocolError> {
        let _ = (buf, self.limits);
        todo!()
    }

    /// Total bytes (header included) of the frame under way, once its header is known.
    /// Lets the caller size its buffer for a large frame in one step.
    pub fn frame_len_hint(&self) -> Option<usize> {
        todo!()
    }

    /// Whether a fragmented message is under way.
    pub fn in_message(&self) -> bool {
        todo!()
    }
}
