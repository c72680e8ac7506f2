//! Encoding server frames (unmasked) into caller-owned buffers, and client frames for tests
//! and load generators.

use super::{close::CloseCode, frame::OpCode};

/// Total encoded length (header and payload) of an unmasked frame with `payload_len` bytes.
pub fn encoded_len(payload_len: usize) -> usize {
    let _ = payload_len;
    todo!()
}

/// Write an unmasked frame header into `out`; returns its length (2, 4 or 10).
pub fn encode_header(opcode: OpCode, fin: bool, payload_len: usize, out: &mut [u8; 14]) -> usize {
    let _ = (opcode, fin, payload_len, out);
    todo!()
}

/// Append an unmasked (server) frame to `out`.
pub fn encode_frame(opcode: OpCode, fin: bool, payload: &[u8], out: &mut Vec<u8>) {
    let _ = (opcode, fin, payload, out);
    todo!()
}

/// Append a masked (client) frame to `out`.
pub fn encode_client_frame(
    opcode: OpCode,
    fin: bool,
    payload: &[u8],
    mask: [u8; 4],
    out: &mut Vec<u8>,
) {
    let _ = (opcode, fin, payload, mask, out);
    todo!()
}

/// Append an unmasked close frame; the reason is cut to 123 bytes at a character boundary.
/// `None` sends an empty close payload.
pub fn encode_close(code: Option<CloseCode>, reason: &str, out: &mut Vec<u8>) {
    let _ = (code, reason, out);
    todo!()
}
