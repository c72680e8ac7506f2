//! The embedding API: a [`Handler`] runs inside each worker and talks to connections through
//! a [`Ctx`]; a [`HandshakeHook`] accepts or rejects upgrade requests before the `101`.

use std::{future::Future, net::SocketAddr, pin::Pin, rc::Rc, sync::Arc};

use bytes::Bytes;

pub use super::conn::ConnId;
use super::{conn::Conn, core::WorkerCore};
pub use crate::connection::{Message, SendError};
use crate::{
    auth::{AuthError, Identity},
    proto::{handshake::Request, CloseCode},
    queue::{ConflationKey, Offer, SlowPolicy},
};

/// A connection handle a handler may keep (in a subscriber list, say): sending through it
/// costs no lookup. It keeps the connection's bookkeeping alive until dropped, never its
/// socket; sends to a connection that has closed are refused.
#[derive(Clone)]
pub struct ConnRef(pub(crate) Rc<Conn>);

impl ConnRef {
    /// The connection's id.
    pub fn id(&self) -> ConnId {
        self.0.id()
    }

    /// The window (bits) the server compresses with for this connection if it negotiated
    /// permessage-deflate: connections with the same value share one compressed frame
    /// (see [`Ctx::deflate_frame`]).
    pub fn deflate_window(&self) -> Option<u8> {
        self.0.state().deflate_window()
    }
}

impl std::fmt::Debug for ConnRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("ConnRef").field(&self.id()).finish()
    }
}

/// A source of work outside the worker's sockets, such as a cross-worker inbox: the worker
/// awaits it in a task of its own and calls [`Handler::on_wake`] each time it resolves.
pub trait Wakeup: 'static {
    /// Resolves when there may be work; `false` means the source is gone for good.
    fn wait(self: Rc<Self>) -> Pin<Box<dyn Future<Output = bool>>>;
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
    /// The `Origin` header, if any.
    pub origin: Option<&'a str>,
    /// The negotiated subprotocol, if any.
    pub protocol: Option<&'a str>,
    /// Who the connection's token says it is (`None` when auth is off).
    pub identity: Option<&'a Arc<Identity>>,
}

/// Application logic run inside each worker (one instance per worker; it need not be `Send`).
pub trait Handler: 'static {
    /// A connection completed its handshake.
    fn on_open(&mut self, _ctx: &mut Ctx<'_>, _conn: ConnId, _info: &OpenInfo<'_>) {}
    /// A complete message arrived.
    fn on_message(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, msg: Message<'_>);
    /// A connection that had opened ended; `code` is the peer's close code if it sent one.
    fn on_close(&mut self, _ctx: &mut Ctx<'_>, _conn: ConnId, _code: Option<CloseCode>) {}
    /// Called once when the worker starts: a source whose readiness calls [`Handler::on_wake`].
    /// Returning one also makes the worker call `on_wake` at the end of every wake (after
    /// socket work and on every tick), so a busy worker polls its source without waiting to park.
    fn wakeup(&mut self) -> Option<Rc<dyn Wakeup>> {
        None
    }
    /// The [`Wakeup`] source resolved, or a wake of the worker ends (see [`Handler::wakeup`]).
    fn on_wake(&mut self, _ctx: &mut Ctx<'_>) {}
    /// Called on every timer tick (100 ms).
    fn on_tick(&mut self, _ctx: &mut Ctx<'_>) {}
    /// Called after the worker has written out what a wake queued (only for handlers that
    /// return a [`Handler::wakeup`] source): e.g. to measure publish-to-write latency.
    fn after_flush(&mut self, _ctx: &mut Ctx<'_>) {}
}

/// The answer of a [`HandshakeHook`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HookDecision {
    /// Go on with the upgrade.
    Accept,
    /// Refuse with this HTTP status and a short reason (sent as the body).
    Reject {
        /// HTTP status, e.g. 401 or 403.
        status: u16,
        /// A short reason.
        reason: String,
    },
}

/// Inspects every valid upgrade request (path, query, Origin, headers) before the `101`:
/// authentication and origin checks plug in here. Shared by all workers.
pub trait HandshakeHook: Send + Sync + 'static {
    /// Accept or reject the request from `peer`.
    fn check(&self, req: &Request<'_, '_>, peer: SocketAddr) -> HookDecision;
}

impl<F> HandshakeHook for F
where
    F: Fn(&Request<'_, '_>, SocketAddr) -> HookDecision + Send + Sync + 'static,
{
    fn check(&self, req: &Request<'_, '_>, peer: SocketAddr) -> HookDecision {
        self(req, peer)
    }
}

/// Per-worker context handed to a [`Handler`]: send to and close this worker's connections.
pub struct Ctx<'w> {
    pub(crate) w: &'w WorkerCore,
}

impl Ctx<'_> {
    /// The index of the worker running this handler.
    pub fn worker_id(&self) -> usize {
        self.w.id
    }

    /// Queue a text message.
    pub fn send_text(&mut self, conn: ConnId, text: &str) -> Result<(), SendError> {
        self.w
            .send_data(conn, crate::proto::OpCode::Text, text.as_bytes())
    }

    /// Queue a binary message.
    pub fn send_binary(&mut self, conn: ConnId, data: &[u8]) -> Result<(), SendError> {
        self.w.send_data(conn, crate::proto::OpCode::Binary, data)
    }

    /// Queue a frame encoded once (e.g. with [`crate::proto::encode_frame`]) and shared by
    /// many connections: queuing it costs a reference count, not a copy.
    pub fn send_frame(&mut self, conn: ConnId, frame: Bytes) -> Result<(), SendError> {
        let conn = self.w.conn(conn).ok_or(SendError::Closed)?;
        self.w.send_frame(&conn, frame)
    }

    /// Start the close handshake: data queued before stays ahead of the close frame.
    pub fn close(&mut self, conn: ConnId, code: CloseCode, reason: &str) {
        if let Some(conn) = self.w.conn(conn) {
            self.w.close(&conn, code, reason);
        }
    }

    /// A handle to `conn` that can be kept, or `None` if it is gone.
    pub fn conn_ref(&self, conn: ConnId) -> Option<ConnRef> {
        self.w.conn(conn).map(ConnRef)
    }

    /// Offer a published frame to `conn` under its send-buffer bound (see
    /// `docs/backpressure.md`). On [`Offer::Disconnect`] the connection is already being
    /// closed with 1008 "slow consumer". `Err(Closed)` if the connection is not open.
    pub fn offer(
        &mut self,
        conn: &ConnRef,
        frame: Bytes,
        key: Option<ConflationKey>,
        policy: SlowPolicy,
    ) -> Result<Offer, SendError> {
        self.w.offer(&conn.0, frame, key, policy)
    }

    /// Queue a reply to the client's own request (`subbed`, `ack`, `err`): never refused for
    /// the bound (reading pauses at half the bound, which bounds replies), only if closed.
    pub fn send_reply(&mut self, conn: &ConnRef, frame: Bytes) -> Result<(), SendError> {
        self.w.send_reply(&conn.0, frame)
    }

    /// Close `conn` at once with `code`, discarding queued data not yet started (the close
    /// frame goes ahead of it).
    pub fn close_now(&mut self, conn: &ConnRef, code: CloseCode, reason: &str) {
        self.w.close_now(&conn.0, code, reason);
    }

    /// Verify a token presented on an open connection (in-band refresh) with the server's
    /// JWT settings; `Err(AuthError::Disabled)` when auth is off.
    pub fn verify_token(&self, token: &str) -> Result<Identity, AuthError> {
        self.w.set.guard.verify(token)
    }

    /// Seconds past a token's `exp` it is still accepted (the JWT leeway): a connection
    /// whose token is not refreshed should be closed at `exp` plus this.
    pub fn token_leeway(&self) -> u64 {
        self.w.set.guard.leeway()
    }

    /// Whether this server negotiates permessage-deflate at all.
    pub fn deflate_enabled(&self) -> bool {
        self.w.deflate.enabled()
    }

    /// The compressed (RSV1) variant of a shared frame made by [`crate::proto::encode_frame_bytes`]
    /// (or any unfragmented, unmasked text or binary frame), for connections whose
    /// [`ConnRef::deflate_window`] is `window_bits`. `None`: send the frame as it is (deflate
    /// off, payload under `deflate_threshold`, or compression would not make it smaller).
    /// Compress once, then offer the result to every such connection.
    pub fn deflate_frame(&mut self, frame: &Bytes, window_bits: u8) -> Option<Bytes> {
        let z = self.w.deflate.recompress(frame, window_bits)?;
        self.w.stats.messages_deflated.inc();
        Some(z)
    }

    /// Bytes queued for `conn` and not yet written, or `None` if it is gone.
    pub fn queued_bytes(&self, conn: ConnId) -> Option<usize> {
        self.w.conn(conn).map(|c| c.state().queued_bytes())
    }
}
