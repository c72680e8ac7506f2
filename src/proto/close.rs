//! Close codes and close frame payloads (RFC 6455 5.5.1 and 7.4).

use super::error::ProtocolError;

/// A close status code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CloseCode(pub u16);

impl CloseCode {
    /// 1000: normal closure.
    pub const NORMAL: CloseCode = CloseCode(1000);
    /// 1001: the endpoint is going away (server shutdown).
    pub const GOING_AWAY: CloseCode = CloseCode(1001);
    /// 1002: protocol error.
    pub const PROTOCOL: CloseCode = CloseCode(1002);
    /// 1003: unsupported data type.
    pub const UNSUPPORTED: CloseCode = CloseCode(1003);
    /// 1005: no status code was present (never sent on the wire).
    pub const NO_STATUS: CloseCode = CloseCode(1005);
    /// 1006: closed without a close frame (never sent on the wire).
    pub const ABNORMAL: CloseCode = CloseCode(1006);
    /// 1007: payload data inconsistent with the message type (bad UTF-8).
    pub const INVALID_PAYLOAD: CloseCode = CloseCode(1007);
    /// 1008: policy violation.
    pub const POLICY: CloseCode = CloseCode(1008);
    /// 1009: message too big.
    pub const TOO_BIG: CloseCode = CloseCode(1009);
    /// 1010: a required extension was not negotiated.
    pub const MANDATORY_EXT: CloseCode = CloseCode(1010);
    /// 1011: internal server error.
    pub const INTERNAL: CloseCode = CloseCode(1011);
    /// 1013: try again later (overload).
    pub const TRY_AGAIN_LATER: CloseCode = CloseCode(1013);

    /// Whether a peer may send this code in a close frame (RFC 6455 7.4.1 and 7.4.2).
    ///
    /// Valid: 1000-1003, 1007-1014 (1012-1014 are IANA-registered), and 3000-4999
    /// (libraries and applications). Everything else, including 1005 and 1006, is not.
    pub fn is_valid_on_wire(self) -> bool {
        matches!(self.0, 1000..=1003 | 1007..=1014 | 3000..=4999)
    }
}

/// A parsed close frame payload: a code and a UTF-8 reason borrowed from the frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CloseFrame<'a> {
    /// The status code.
    pub code: CloseCode,
    /// The reason, validated UTF-8, possibly empty.
    pub reason: &'a str,
}

/// Parse and validate a close payload: empty (no code), or a valid code and a UTF-8 reason.
pub fn parse_close_payload(payload: &[u8]) -> Result<Option<CloseFrame<'_>>, ProtocolError> {
    match payload {
        [] => Ok(None),
        [_] => Err(ProtocolError::InvalidClosePayload),
        [hi, lo, rest @ ..] => {
            let code = CloseCode(u16::from_be_bytes([*hi, *lo]));
            if !code.is_valid_on_wire() {
                return Err(ProtocolError::InvalidCloseCode(code.0));
            }
            let reason = std::str::from_utf8(rest).map_err(|_| ProtocolError::InvalidUtf8)?;
            Ok(Some(CloseFrame { code, reason }))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_codes_table() {
        let valid = |c: u16| CloseCode(c).is_valid_on_wire();
        for c in 0..=999 {
            assert!(!valid(c), "{c}");
        }
        for c in [
            1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014,
        ] {
            assert!(valid(c), "{c}");
        }
        for c in [1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999] {
            assert!(!valid(c), "{c}");
        }
        for c in 1016..=2999 {
            assert!(!valid(c), "{c}");
        }
        for c in 3000..=4999 {
            assert!(valid(c), "{c}");
        }
        for c in 5000..=u16::MAX {
            assert!(!valid(c), "{c}");
        }
    }

    #[test]
    fn named_codes_have_their_values() {
        assert_eq!(CloseCode::NORMAL.0, 1000);
        assert_eq!(CloseCode::GOING_AWAY.0, 1001);
        assert_eq!(CloseCode::PROTOCOL.0, 1002);
        assert_eq!(CloseCode::UNSUPPORTED.0, 1003);
        assert_eq!(CloseCode::NO_STATUS.0, 1005);
        assert_eq!(CloseCode::ABNORMAL.0, 1006);
        assert_eq!(CloseCode::INVALID_PAYLOAD.0, 1007);
        assert_eq!(CloseCode::POLICY.0, 1008);
        assert_eq!(CloseCode::TOO_BIG.0, 1009);
        assert_eq!(CloseCode::MANDATORY_EXT.0, 1010);
        assert_eq!(CloseCode::INTERNAL.0, 1011);
        assert_eq!(CloseCode::TRY_AGAIN_LATER.0, 1013);
        assert!(!CloseCode::NO_STATUS.is_valid_on_wire());
        assert!(!CloseCode::ABNORMAL.is_valid_on_wire());
    }

    #[test]
    fn empty_close_payload_has_no_code() {
        assert_eq!(parse_close_payload(&[]), Ok(None));
    }

    #[test]
    fn one_byte_close_payload_is_invalid() {
        assert_eq!(
            parse_close_payload(&[0x03]),
            Err(ProtocolError::InvalidClosePayload)
        );
    }

    #[test]
    fn close_payload_with_code_and_reason() {
        let mut p = 1000u16.to_be_bytes().to_vec();
        p.extend_from_slice("bye ü".as_bytes());
        assert_eq!(
            parse_close_payload(&p),
            Ok(Some(CloseFrame {
                code: CloseCode::NORMAL,
                reason: "bye ü"
            }))
        );
        assert_eq!(
            parse_close_payload(&4999u16.to_be_bytes()),
            Ok(Some(CloseFrame {
                code: CloseCode(4999),
                reason: ""
            }))
        );
    }

    #[test]
    fn close_payload_with_invalid_code() {
        for c in [0u16, 999, 1004, 1005, 1006, 1015, 2999, 5000, u16::MAX] {
            assert_eq!(
                parse_close_payload(&c.to_be_bytes()),
                Err(ProtocolError::InvalidCloseCode(c))
            );
        }
    }

    #[test]
    fn close_reason_must_be_utf8() {
        let p = [0x03, 0xE8, b'a', 0xFF];
        assert_eq!(parse_close_payload(&p), Err(ProtocolError::InvalidUtf8));
        let cut = [0x03, 0xE8, 0xE2, 0x82];
        assert_eq!(parse_close_payload(&cut), Err(ProtocolError::InvalidUtf8));
    }
}
