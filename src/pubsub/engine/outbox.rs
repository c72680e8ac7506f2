//! The engine's view of the worker around it: the [`Outbox`] it sends through (offer a
//! published frame under the send bound, queue a reply, close, find a connection, compress,
//! check a token), the [`Link`] it keeps per subscriber, and the wall-clock [`Time`] every
//! entry point is handed.
//!
//! The server's [`Ctx`] and [`ConnRef`] implement them here, so the engine itself never
//! touches a socket or reads the clock; its unit tests implement them with in-memory send
//! queues. The engine is generic over them (monomorphised, no `dyn` on the fan-out path).

use std::time::SystemTime;

use bytes::Bytes;

use crate::{
    auth::{AuthError, Identity},
    proto::CloseCode,
    queue::{ConflationKey, Offer, SlowPolicy},
    server::{ConnId, ConnRef, Ctx, SendError},
};

/// A wall-clock moment: microseconds since the Unix epoch. The engine stamps `ts` with it,
/// measures publish-to-write latency and expires tokens against it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Time(u64);

impl Time {
    /// The moment `us` microseconds after the Unix epoch.
    pub const fn from_unix_us(us: u64) -> Self {
        Time(us)
    }

    /// The system clock now (0 if it is set before the epoch).
    pub fn now() -> Self {
        Time(
            SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_micros() as u64),
        )
    }

    /// Microseconds since the Unix epoch.
    pub const fn unix_us(self) -> u64 {
        self.0
    }

    /// Whole seconds since the Unix epoch.
    pub const fn unix_secs(self) -> u64 {
        self.0 / 1_000_000
    }
}

/// A connection handle the engine keeps (in a topic's subscriber list, say).
pub trait Link: Clone {
    /// The connection's id.
    fn id(&self) -> ConnId;
    /// The server window (bits) the connection compresses with, if it negotiated
    /// permessage-deflate; connections with the same value share one compressed frame.
    fn deflate_window(&self) -> Option<u8>;
}

/// What the engine does to the connections of its worker. Semantics are those of the
/// [`Ctx`] methods of the same names.
pub trait Outbox {
    /// The handle the engine keeps per connection.
    type Conn: Link;

    /// A handle to `id`, or `None` if it is gone.
    fn conn(&self, id: ConnId) -> Option<Self::Conn>;

    /// Offer a published frame under the connection's send bound; on
    /// [`Offer::Disconnect`] the connection is already being closed (1008 "slow consumer").
    fn offer(
        &mut self,
        conn: &Self::Conn,
        frame: Bytes,
        key: Option<ConflationKey>,
        policy: SlowPolicy,
    ) -> Result<Offer, SendError>;

    /// Queue a reply to the client's own request, whatever the bound.
    fn send_reply(&mut self, conn: &Self::Conn, frame: Bytes) -> Result<(), SendError>;

    /// Close at once with `code`, discarding data not yet started.
    fn close_now(&mut self, conn: &Self::Conn, code: CloseCode, reason: &str);

    /// The compressed variant of a shared frame for connections with window `window_bits`,
    /// or `None` to send it as it is.
    fn deflate_frame(&mut self, frame: &Bytes, window_bits: u8) -> Option<Bytes>;

    /// Verify a token presented on an open connection (`auth` op).
    fn verify_token(&self, token: &str) -> Result<Identity, AuthError>;

    /// Seconds past a token's `exp` it is still accepted.
    fn token_leeway(&self) -> u64;
}

impl Link for ConnRef {
    fn id(&self) -> ConnId {
        ConnRef::id(self)
    }

    fn deflate_window(&self) -> Option<u8> {
        ConnRef::deflate_window(self)
    }
}

impl Outbox for Ctx<'_> {
    type Conn = ConnRef;

    fn conn(&self, id: ConnId) -> Option<ConnRef> {
        self.conn_ref(id)
    }

    #[inline]
    fn offer(
        &mut self,
        conn: &ConnRef,
        frame: Bytes,
        key: Option<ConflationKey>,
        policy: SlowPolicy,
    ) -> Result<Offer, SendError> {
        Ctx::offer(self, conn, frame, key, policy)
    }

    fn send_reply(&mut self, conn: &ConnRef, frame: Bytes) -> Result<(), SendError> {
        Ctx::send_reply(self, conn, frame)
    }

    fn close_now(&mut self, conn: &ConnRef, code: CloseCode, reason: &str) {
        Ctx::close_now(self, conn, code, reason);
    }

    fn deflate_frame(&mut self, frame: &Bytes, window_bits: u8) -> Option<Bytes> {
        Ctx::deflate_frame(self, frame, window_bits)
    }

    fn verify_token(&self, token: &str) -> Result<Identity, AuthError> {
        Ctx::verify_token(self, token)
    }

    fn token_leeway(&self) -> u64 {
        Ctx::token_leeway(self)
    }
}
