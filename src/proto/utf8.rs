//! Incremental UTF-8 validation across frame fragments, failing at the first invalid byte.

use super::error::ProtocolError;

/// Validates a UTF-8 stream fed in arbitrary chunks.
#[derive(Debug, Default, Clone)]
pub struct Utf8Validator {
    pending: [u8; 4],
    pending_len: u8,
}

impl Utf8Validator {
    /// A validator at the start of a message.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feed the next chunk; fails as soon as a byte can never be part of valid UTF-8.
    pub fn feed(&mut self, chunk: &[u8]) -> Result<(), ProtocolError> {
        let _ = (chunk, self.pending, self.pending_len);
        todo!()
    }

    /// End of the message: fails if a code point is left incomplete. Resets the validator.
    pub fn finish(&mut self) -> Result<(), ProtocolError> {
        todo!()
    }

    /// Forget any partial code point.
    pub fn reset(&mut self) {
        self.pending_len = 0;
    }
}
