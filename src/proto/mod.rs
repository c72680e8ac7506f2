//! The sans-IO WebSocket protocol core (RFC 6455).
//!
//! Owns: parsing the HTTP/1.1 upgrade request and writing its answer, decoding client frames
//! straight from a read buffer (unmasking in place), incremental UTF-8 validation, close-code
//! rules, encoding server frames into caller-owned buffers, and permessage-deflate (RFC 7692)
//! negotiation and its per-message codec.
//!
//! Must never: perform I/O, read a clock, allocate per frame on the decode path, or panic on
//! any input from the network. Every peer fault maps to a [`ProtocolError`] with a close code.
#![forbid(unsafe_code)]

pub mod close;
pub mod decode;
pub mod deflate;
pub mod encode;
pub mod error;
pub mod frame;
pub mod handshake;
pub mod mask;
pub mod utf8;

pub use close::{CloseCode, CloseFrame};
pub use decode::{Decoded, Decoder, DecoderLimits};
pub use encode::{
    encode_close, encode_compressed_header, encode_frame, encode_frame_bytes, encode_header,
    encoded_len, split_server_frame,
};
pub use error::ProtocolError;
pub use frame::{FrameHeader, OpCode};
