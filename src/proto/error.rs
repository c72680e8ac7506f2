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
    /// A permessage-deflate message whose payload does not inflate (RFC 7692 6.2).
    #[error("invalid compressed data")]
    InvalidCompressed,
}

impl ProtocolError {
    /// The close code to send for this violation.
    pub fn close_code(&self) -> CloseCode {
        match self {
            ProtocolError::InvalidUtf8 | ProtocolError::InvalidCompressed => {
                CloseCode::INVALID_PAYLOAD
            }
            ProtocolError::FrameTooLarge | ProtocolError::MessageTooLarge => CloseCode::TOO_BIG,
            ProtocolError::UnmaskedFrame
            | ProtocolError::ReservedBits
            | ProtocolError::UnknownOpcode(_)
            | ProtocolError::FragmentedControl
            | ProtocolError::ControlTooLong
            | ProtocolError::UnexpectedContinuation
            | ProtocolError::ExpectedContinuation
            | ProtocolError::InvalidLength
            | ProtocolError::InvalidClosePayload
            | ProtocolError::InvalidCloseCode(_) => CloseCode::PROTOCOL,
        }
    }

    /// A short reason for the close frame (at most 123 bytes, ASCII).
    pub fn reason(&self) -> &'static str {
        match self {
            ProtocolError::UnmaskedFrame => "client frame not masked",
            ProtocolError::ReservedBits => "reserved bits set",
            ProtocolError::UnknownOpcode(_) => "unknown opcode",
            ProtocolError::FragmentedControl => "fragmented control frame",
            ProtocolError::ControlTooLong => "control frame too long",
            ProtocolError::UnexpectedContinuation => "unexpected continuation frame",
            ProtocolError::ExpectedContinuation => "expected continuation frame",
            ProtocolError::InvalidLength => "invalid payload length",
            ProtocolError::FrameTooLarge => "frame too large",
            ProtocolError::MessageTooLarge => "message too large",
            ProtocolError::InvalidUtf8 => "invalid UTF-8",
            ProtocolError::InvalidClosePayload => "invalid close payload",
            ProtocolError::InvalidCloseCode(_) => "invalid close code",
            ProtocolError::InvalidCompressed => "invalid compressed data",
        }
    }

    /// A stable label for metrics and logs (snake_case, no spaces).
    pub fn label(&self) -> &'static str {
        match self {
            ProtocolError::UnmaskedFrame => "unmasked_frame",
            ProtocolError::ReservedBits => "reserved_bits",
            ProtocolError::UnknownOpcode(_) => "unknown_opcode",
            ProtocolError::FragmentedControl => "fragmented_control",
            ProtocolError::ControlTooLong => "control_too_long",
            ProtocolError::UnexpectedContinuation => "unexpected_continuation",
            ProtocolError::ExpectedContinuation => "expected_continuation",
            ProtocolError::InvalidLength => "invalid_length",
            ProtocolError::FrameTooLarge => "frame_too_large",
            ProtocolError::MessageTooLarge => "message_too_large",
            ProtocolError::InvalidUtf8 => "invalid_utf8",
            ProtocolError::InvalidClosePayload => "invalid_close_payload",
            ProtocolError::InvalidCloseCode(_) => "invalid_close_code",
            ProtocolError::InvalidCompressed => "invalid_compressed",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [ProtocolError; 14] = [
        ProtocolError::UnmaskedFrame,
        ProtocolError::ReservedBits,
        ProtocolError::UnknownOpcode(3),
        ProtocolError::FragmentedControl,
        ProtocolError::ControlTooLong,
        ProtocolError::UnexpectedContinuation,
        ProtocolError::ExpectedContinuation,
        ProtocolError::InvalidLength,
        ProtocolError::FrameTooLarge,
        ProtocolError::MessageTooLarge,
        ProtocolError::InvalidUtf8,
        ProtocolError::InvalidClosePayload,
        ProtocolError::InvalidCloseCode(1005),
        ProtocolError::InvalidCompressed,
    ];

    #[test]
    fn close_code_per_variant() {
        for e in ALL {
            let expected = match e {
                ProtocolError::InvalidUtf8 | ProtocolError::InvalidCompressed => 1007,
                ProtocolError::FrameTooLarge | ProtocolError::MessageTooLarge => 1009,
                _ => 1002,
            };
            assert_eq!(e.close_code(), CloseCode(expected), "{e:?}");
            assert!(e.close_code().is_valid_on_wire());
        }
    }

    #[test]
    fn reasons_are_short_ascii() {
        for e in ALL {
            let r = e.reason();
            assert!(!r.is_empty() && r.len() <= 123 && r.is_ascii(), "{e:?}");
        }
    }

    #[test]
    fn labels_are_unique_snake_case() {
        let mut seen = std::collections::HashSet::new();
        for e in ALL {
            let l = e.label();
            assert!(!l.is_empty());
            assert!(l
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'));
            assert!(seen.insert(l), "duplicate label {l}");
        }
    }

    #[test]
    fn display_messages_are_not_empty() {
        for e in ALL {
            assert!(!e.to_string().is_empty());
        }
        assert_eq!(
            ProtocolError::UnknownOpcode(0xB).to_string(),
            "unknown opcode 0xb"
        );
    }
}
