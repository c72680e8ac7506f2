//! The pub/sub wire protocol v1 as a pure codec (see docs/protocol.md).
//!
//! Owns: the two encodings (`corecast.v1.json`, `corecast.v1.bin`), decoding client ops
//! (`sub`, `unsub`, `pub`) into borrowed values, encoding server messages (`msg`, `ack`, `err`,
//! `subbed`, `reset`, `unsubbed`) into caller buffers, and topic-name validation.
//!
//! Must never: perform I/O, read a clock (timestamps are arguments), re-serialise publish
//! data, or panic on any input from the network.
#![forbid(unsafe_code)]

pub mod topic_name;
pub mod wire;

pub use topic_name::{TopicName, MAX_TOPIC_BYTES};
pub use wire::{ClientOp, Encoding, Id, Payload, WireError};
