//! corecast: a WebSocket pub/sub server on thread-per-core monoio runtimes.
//!
//! The crate is organised the way a frame travels:
//! - [`proto`]: the sans-IO WebSocket core (handshake, frames, UTF-8, close codes,
//!   permessage-deflate). No I/O.
//! - [`connection`]: one connection as a state machine with no I/O and no clock: bytes and
//!   `now` in; messages, bytes to write and the next deadline out.
//! - [`pubsub`]: topics, owner-assigned sequence numbers, history, fanout, and the wire
//!   protocol codec (JSON and binary, topic names).
//! - [`queue`]: the per-connection send queue (control lane, data lane). No I/O.
//! - [`fanout`]: cross-worker delivery: bounded lock-free inboxes and the parked-only doorbell.
//! - [`server`]: the per-core runtime: workers, listeners, sockets and their tasks, timers,
//!   drain.
//! - [`admin`]: the admin HTTP API (`POST /publish`, `GET /metrics`, `/stats`, `/topics`,
//!   `/healthz`, `/readyz`).
//! - [`config`]: the one `Config` (defaults, TOML, environment, CLI).
//! - [`auth`]: JWT verification, identities and topic permissions, the origin allowlist.
//! - [`guard`]: admission control before the upgrade (per-IP, per-user, handshake rate).
//! - [`names`]: the grammars of topic names and origin patterns (a leaf: config, auth and
//!   pubsub all read it).
//! - `counters`: single-writer counters and the one macro that declares each set of them.
//!
//! Embedding: build a [`Server`] with a [`Handler`] and run it.
#![warn(missing_docs)]

pub mod admin;
pub mod auth;
pub mod config;
pub mod connection;
mod counters;
pub mod fanout;
pub mod guard;
pub mod names;
pub mod proto;
pub mod pubsub;
pub mod queue;
pub mod server;

pub use config::{Config, Driver};
pub use server::{ConnId, Ctx, Handler, Message, OpenInfo, Server, ServerBuilder};
