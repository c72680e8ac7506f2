//! The pub/sub wire codec: client ops in, server messages out, in JSON and in binary.
//!
//! Owns both encodings of protocol v1 (docs/protocol.md): decoding client messages into the
//! borrowed [`ClientOp`] and encoding every server message into a caller's buffer, by hand
//! (no serde on the encode path). Publish data is never re-serialised: JSON data stays the
//! raw text slice it arrived as, binary data stays the raw bytes. No I/O, no clock (times come
//! in as arguments), and no panics on any input.
//!
//! - `ops`: the client ops (`sub`, `unsub`, `pub`, `auth`) and the values they carry, and
//!   [`check_pub`], the `pub` rules for a publish without a client envelope (admin API).
//! - `errors`: [`ErrorCode`], every code an `err` can carry, and [`WireError`].
//! - `json` and [`binary`]: one encoding each, decoder and writers.
//! - `encode`: every encoder, one per message, in a connection's [`Encoding`].
//!
//! Everything public is re-exported here: callers use `wire::decode_json`, `wire::Id`, ...

mod encode;
mod errors;
mod json;
mod ops;

pub mod binary;

pub use encode::{
    encode_ack, encode_authed, encode_err, encode_error, encode_msg, encode_op, encode_reset,
    encode_revoked, encode_subbed, encode_unsubbed, msg_len,
};
pub use errors::{ErrorCode, WireError};
pub use ops::{check_pub, AuthOp, CheckedPub, ClientOp, Id, Payload};

pub use binary::{
    decode_binary, encode_msg_binary, encode_op_binary, error_id_binary, msg_binary_len,
};
pub use json::{decode_json, encode_msg_json, encode_op_json, error_id_json, msg_json_len};

/// The subprotocol of the JSON encoding (text frames).
pub const JSON_SUBPROTOCOL: &str = "corecast.v1.json";

/// The subprotocol of the binary encoding (binary frames).
pub const BINARY_SUBPROTOCOL: &str = "corecast.v1.bin";

/// The largest client message the codec decodes, in bytes, envelope and data together. The
/// server's WebSocket limit (`max_message_bytes`) is checked first, at the frame layer.
pub const MAX_ENVELOPE_BYTES: usize = 64 * 1024;

/// The longest request id (a string id, in bytes after JSON unescaping).
pub const MAX_ID_BYTES: usize = 64;

/// The longest conflation key, in bytes after JSON unescaping.
pub const MAX_KEY_BYTES: usize = 128;

/// The longest token the `auth` op carries, in bytes.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;

/// The deepest nesting of arrays and objects allowed in JSON data, so that every subscriber's
/// JSON parser (serde_json stops at 128 levels, Python's recursion limit is 1000) can read it.
pub const MAX_DATA_DEPTH: usize = 64;

/// Which encoding a connection speaks, fixed by its WebSocket subprotocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Encoding {
    /// `corecast.v1.json`: JSON in text frames (also what a client that names no subprotocol gets).
    Json,
    /// `corecast.v1.bin`: the compact binary encoding in binary frames.
    Binary,
}

impl Encoding {
    /// Both subprotocol names, for the server's list of accepted subprotocols.
    pub const SUBPROTOCOLS: [&'static str; 2] = [JSON_SUBPROTOCOL, BINARY_SUBPROTOCOL];

    /// The encoding for a negotiated subprotocol: none means JSON; an unknown name is `None`.
    pub fn from_subprotocol(protocol: Option<&str>) -> Option<Encoding> {
        match protocol {
            None | Some(JSON_SUBPROTOCOL) => Some(Encoding::Json),
            Some(BINARY_SUBPROTOCOL) => Some(Encoding::Binary),
            Some(_) => None,
        }
    }

    /// The subprotocol name of this encoding.
    pub const fn subprotocol(self) -> &'static str {
        match self {
            Encoding::Json => JSON_SUBPROTOCOL,
            Encoding::Binary => BINARY_SUBPROTOCOL,
        }
    }

    /// Whether this encoding's messages travel in text frames (else binary frames).
    pub const fn is_text(self) -> bool {
        matches!(self, Encoding::Json)
    }

    /// Decode a client text frame: JSON on a JSON connection, `bad_frame` on a binary one.
    pub fn decode_text_frame(self, text: &str) -> Result<ClientOp<'_>, WireError> {
        match self {
            Encoding::Json => decode_json(text),
            Encoding::Binary => Err(WireError::BadFrame { expected: "binary" }),
        }
    }

    /// Decode a client binary frame: binary on a binary connection, `bad_frame` on a JSON one.
    pub fn decode_binary_frame(self, bytes: &[u8]) -> Result<ClientOp<'_>, WireError> {
        match self {
            Encoding::Json => Err(WireError::BadFrame { expected: "text" }),
            Encoding::Binary => decode_binary(bytes),
        }
    }
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for Vec<u8> {}
    impl Sealed for bytes::BytesMut {}
}

/// A growable buffer the encoders append to: `Vec<u8>` or `BytesMut` (sealed, so an encoder
/// can never run out of room and panic).
pub trait WireBuf: sealed::Sealed {
    /// Append `bytes`.
    fn put(&mut self, bytes: &[u8]);
    /// Make room for `additional` more bytes.
    fn reserve_more(&mut self, additional: usize);
}

impl WireBuf for Vec<u8> {
    #[inline]
    fn put(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
    #[inline]
    fn reserve_more(&mut self, additional: usize) {
        self.reserve(additional);
    }
}

impl WireBuf for bytes::BytesMut {
    #[inline]
    fn put(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
    #[inline]
    fn reserve_more(&mut self, additional: usize) {
        self.reserve(additional);
    }
}

#[cfg(test)]
mod tests;
