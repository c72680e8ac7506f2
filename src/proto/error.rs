//! Protocol errors: every way a peer can violate RFC 6455, each mapped to a close code.
//!
//! One place decides the close code, the short reason sent to the peer and the metric label.

use super::close::CloseCode;

/// A violation of RFC 6455 by the peer; the connection must be closed with [`Self::close_code`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProtocolError {
    /// A client frame arrived without the mask bit (RFC 6455 5.1).
    #[error("client frame is not masked")]
    UnmaskedFrame,
    /// An RSV bit was set that no negotiated extension claimed (5.2).
    #[error("reserved bits set")]
    ReservedBits,
    /// The opcode is reserved (3-7, 0xB-0xF) (5.2).
    #[error("unknown opcode {0:#x}")]
    UnknownOpcode(u8),
    /// A control frame had FIN clear (5.5).
    #[error("fragmented control frame")]
    FragmentedControl,
    /// A control frame carried more than 125 bytes (5.5).
    #[error("control frame payload over 125 bytes")]
    ControlTooLong,
    /// A continuation frame arrived with no message under way (5.4).
    #[error("continuation frame without a message")]
    UnexpectedContinuation,
    /// A text or binary frame arrived while a fragmented message was under way (5.4).
    #[error("new message before the fragmented one ended")]
    ExpectedContinuation,
    /// A 64-bit payload length with the most significant bit set (5.2).
    #[error("invalid 64-bit payload length")]
    InvalidLength,
    /// A frame longer than the configured maximum frame size.
    #[error("frame too large")]
    FrameTooLarge,
    /// A message longer than the configured maximum message size.
    #[error("message too large")]
    MessageTooLarge,
    /// A text message or close reason that is not valid UTF-8 (8.1).
    #[error("invalid UTF-8")]
    InvalidUtf8,
    /// A close frame with a one-byte payload (5.5.1).
    #[error("close payload of one byte")]
    InvalidClosePayload,
    /// A close frame with a code that may not be sent on the wire (7.4).
    #[error("invalid close code {0}")]
    InvalidCloseCode(u16),
}

impl ProtocolError {
    /// The close code to send for this violation.
    pub fn close_code(&self) -> CloseCode {
        todo!()
    }

    /// A short reason for the close frame (at most 123 bytes, ASCII).
    pub fn reason(&self) -> &'static str {
        todo!()
    }

    /// A stable label for metrics and logs (snake_case, no spaces).
    pub fn label(&self) -> &'static str {
        todo!()
    }
}
