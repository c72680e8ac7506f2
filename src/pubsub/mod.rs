//! Pub/sub: topics with per-topic sequence numbers, history for resume, cross-worker fanout,
//! and the wire protocol v1 (see docs/protocol.md and docs/pubsub.md).
//!
//! - `wire` and `topic_name`: the protocol as a pure codec (no I/O, no clock; never panics
//!   on input from the network).
//! - `frames`: server messages encoded once into shareable WebSocket frames.
//! - `history`: a topic's last messages, for `sub` with `since`.
//! - `engine`: the per-worker [`Handler`](crate::server::Handler): topic table,
//!   subscriptions, owner-assigned order, fanout.
//! - `service`: wiring into a server (mesh, handlers) and [`Publisher`] for backends.
#![forbid(unsafe_code)]

pub mod engine;
pub mod frames;
pub mod history;
pub mod service;
pub mod stats;
pub mod topic_name;
pub mod wire;

pub use service::{PubSubService, PublishError, Publisher};
pub use stats::PubSubStats;
pub use topic_name::{TopicName, MAX_TOPIC_BYTES};
pub use wire::{ClientOp, Encoding, Id, Payload, WireError};
