//! The per-core runtime: workers, listeners, connections, timers and drain.

use std::net::SocketAddr;

use crate::{config::Config, proto::CloseCode};

/// Identifies a connection within its worker (slab index and generation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConnId {
    key: u32,
    gen: u32,
}

/// A complete message received from a client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Message<'a> {
    /// A text message (valid UTF-8).
    Text(&'a str),
    /// A binary message.
    Binary(&'a [u8]),
}

/// What a handler learns when a connection opens.
#[derive(Debug, Clone, Copy)]
pub struct OpenInfo<'a> {
    /// The peer's address.
    pub peer: SocketAddr,
    /// The request path.
    pub path: &'a str,
    /// The query string, if any.
    pub query: Option<&'a str>,
    /// The negotiated subprotocol, if any.
    pub protocol: Option<&'a str>,
}

/// Per-worker context handed to a [`Handler`].
pub struct Ctx<'w> {
    _w: std::marker::PhantomData<&'w ()>,
}

/// Application logic run inside each worker.
pub trait Handler: 'static {
    /// A connection completed its handshake.
    fn on_open(&mut self, _ctx: &mut Ctx<'_>, _conn: ConnId, _info: &OpenInfo<'_>) {}
    /// A complete message arrived.
    fn on_message(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, msg: Message<'_>);
    /// A connection ended.
    fn on_close(&mut self, _ctx: &mut Ctx<'_>, _conn: ConnId, _code: Option<CloseCode>) {}
}

/// Builds a [`Server`].
pub struct ServerBuilder {
    _config: Config,
}

/// A running corecast server.
pub struct Server {}
