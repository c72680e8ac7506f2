//! One WebSocket connection as a state machine with no I/O and no clock, in the style of
//! quinn-proto: bytes and `now` go in; messages for the handler, bytes to write and the next
//! deadline come out.
//!
//! Owns: the phase (handshake, open, closing, dead), the upgrade answer, frame decoding and
//! the unfinished tail of the input, fragment reassembly, permessage-deflate inflation, the
//! one close path (every close frame is built in `start_close`), the heartbeat
//! and the handshake and close deadlines, and the send queue with its bound.
//!
//! Must never: touch a socket, read a clock, or panic on anything a peer sends. The caller
//! (the worker) reads into its own buffer, calls [`Connection::read`] until it yields nothing,
//! writes what [`Connection::transmit`] fills in, and calls [`Connection::on_timeout`] at
//! [`Connection::next_timeout`]. Time is in ticks of the caller's choosing (the worker uses
//! 100 ms), so tests run hours of simulated time in microseconds.

use std::io::IoSlice;

use bytes::Bytes;

use crate::{
    proto::{
        deflate::{DeflateParams, InflateError, Inflater, MAX_WINDOW_BITS},
        encode_close, encode_frame_bytes,
        handshake::{self, HandshakeError, Request},
        CloseCode, Decoded, Decoder, DecoderLimits, OpCode, ProtocolError,
    },
    queue::{ConflationKey, Offer, SendQueue, SlowPolicy},
};

mod input;
mod output;
#[cfg(test)]
mod tests;

/// A point in time, in ticks.
pub type Tick = u64;

/// Inflate output (and assembled message) capacity kept between messages; more is freed.
const KEEP_BYTES: usize = 64 * 1024;

/// The settings every connection of a worker shares, in ticks.
#[derive(Debug, Clone, Copy)]
pub struct ConnConfig {
    /// Frame and message size limits.
    pub limits: DecoderLimits,
    /// Bytes a connection may have queued before published frames are refused.
    pub send_bound: usize,
    /// Ping a connection silent for this long.
    pub ping_ticks: Tick,
    /// Close a connection silent for this long (ping interval plus pong timeout).
    pub silent_ticks: Tick,
    /// Time allowed for the upgrade request.
    pub handshake_ticks: Tick,
    /// Time allowed for the peer's answer to our close frame (or HTTP rejection).
    pub close_ticks: Tick,
    /// Time allowed to finish a message once its first byte arrived (a frame cut by the end
    /// of a read, or a fragmented message under way).
    pub message_ticks: Tick,
}

/// Where a connection is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Waiting for the HTTP upgrade request.
    Handshake,
    /// Upgraded: frames flow both ways.
    Open,
    /// A close frame or an HTTP rejection was sent (or is queued); waiting for the peer.
    Closing,
    /// Finished: the caller drops the socket.
    Dead,
}

/// What the caller does once the send queue is written out (see [`Connection::flushed`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterFlush {
    /// Nothing.
    Nothing,
    /// Send FIN and keep reading until the peer closes (so our last bytes are not lost to a
    /// reset caused by unread input).
    ShutdownWrite,
    /// Close the socket: the close handshake is complete. The connection is already dead.
    Drop,
}

/// A complete message from the client, borrowed from the caller's buffer or [`Workspace`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Message<'a> {
    /// A text message (valid UTF-8).
    Text(&'a str),
    /// A binary message.
    Binary(&'a [u8]),
}

/// Why a connection failed, for the caller's counters and logs (see [`Connection::take_failure`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The peer violated RFC 6455; a close frame with its code is queued.
    Protocol(ProtocolError),
    /// A compressed message inflated past the message limit (closed 1009).
    InflateLimit,
    /// A compressed message did not inflate (closed 1007).
    InflateCorrupt,
    /// A message under way was not finished within the message timeout (closed 1008).
    MessageTimeout,
    /// The process holds too much of unfinished messages and this connection's grew it past
    /// the budget (closed 1013, see [`Connection::close_over_budget`]).
    OverBudget,
}

impl Failure {
    /// The close code and reason sent for this failure.
    pub fn close_frame(&self) -> (CloseCode, &'static str) {
        match self {
            Failure::Protocol(e) => (e.close_code(), e.reason()),
            Failure::InflateLimit => {
                let e = ProtocolError::MessageTooLarge;
                (e.close_code(), e.reason())
            }
            Failure::InflateCorrupt => {
                let e = ProtocolError::InvalidCompressed;
                (e.close_code(), e.reason())
            }
            Failure::MessageTimeout => (CloseCode::POLICY, "message timeout"),
            Failure::OverBudget => (CloseCode::TRY_AGAIN_LATER, "server busy"),
        }
    }

    /// A short label for logs and counters.
    pub fn label(&self) -> &'static str {
        match self {
            Failure::Protocol(e) => e.label(),
            Failure::InflateLimit => "inflate_limit",
            Failure::InflateCorrupt => "inflate_error",
            Failure::MessageTimeout => "message_timeout",
            Failure::OverBudget => "message_budget",
        }
    }
}

/// What [`Connection::on_timeout`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timeout {
    /// Nothing was due.
    Nothing,
    /// A message under way was not finished in time: a 1008 close is queued behind the
    /// replies already queued, as on a protocol failure.
    Message,
    /// A ping was queued.
    Ping,
    /// The peer was silent past the heartbeat window: a 1001 close is queued ahead of all
    /// data; write it if the socket takes it, then call [`Connection::kill`].
    Heartbeat,
    /// No upgrade request in time: the connection is dead.
    Handshake,
    /// The peer did not answer our close in time: the connection is dead.
    Close,
}

/// Why a send did not queue the frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SendError {
    /// The connection is gone or closing.
    #[error("connection closed")]
    Closed,
    /// The connection's send buffer is over its bound; the frame was not queued.
    #[error("send buffer full")]
    Full,
}

/// What [`Connection::read`] produced.
#[derive(Debug)]
pub enum Read<'a> {
    /// Everything usable was consumed; `0` is the count of bytes used. Keep the rest (see
    /// [`Connection::keep_tail`]) and read more from the socket.
    Done(usize),
    /// A complete message after `0` bytes; call `read` again on the bytes after them.
    Message(usize, Message<'a>),
}

/// Buffers a worker lends its connections while it feeds them input: the inflate output, the
/// message being delivered after reassembly, and the inflater shared by every client that
/// compresses without context takeover. One per worker, so an idle connection holds none.
#[derive(Debug, Default)]
pub struct Workspace {
    out: Vec<u8>,
    assembled: Vec<u8>,
    shared: Option<Box<Inflater>>,
}

impl Workspace {
    /// Give back buffers grown past 64 KiB by a large message.
    pub fn trim(&mut self) {
        for buf in [&mut self.out, &mut self.assembled] {
            if buf.capacity() > KEEP_BYTES {
                *buf = Vec::new();
            }
        }
    }
}

/// One connection's protocol state. See the module documentation.
#[derive(Debug)]
pub struct Connection {
    phase: Phase,
    /// The upgrade completed (so the handler saw the open).
    opened: bool,
    /// We queued a close frame.
    close_sent: bool,
    /// Input is read and thrown away (after a failure, a rejection or the peer's close).
    discarding: bool,
    after_flush: AfterFlush,
    peer_code: Option<CloseCode>,
    failure: Option<Failure>,
    /// Last byte received, last ping sent, the phase deadline (handshake or close; while open,
    /// the deadline of the message under way, `Tick::MAX` when none is).
    last_rx: Tick,
    last_ping: Tick,
    deadline: Tick,
    queue: SendQueue,
    decoder: Decoder,
    /// The unfinished tail of the input (a partial frame); empty and unallocated when idle.
    tail: Vec<u8>,
    /// A fragmented message being assembled, and its opcode.
    msg: Vec<u8>,
    msg_op: OpCode,
    deflate: Option<Box<ConnDeflate>>,
}

/// What a connection that negotiated permessage-deflate keeps: its parameters and, for a
/// client that keeps its context, its own inflater (made on its first compressed message).
#[derive(Debug)]
struct ConnDeflate {
    params: DeflateParams,
    inflater: Option<Box<Inflater>>,
}

impl Connection {
    /// A new connection waiting for its upgrade request until `now` + the handshake timeout.
    pub fn new(cfg: &ConnConfig, now: Tick) -> Connection {
        Connection {
            phase: Phase::Handshake,
            opened: false,
            close_sent: false,
            discarding: false,
            after_flush: AfterFlush::Nothing,
            peer_code: None,
            failure: None,
            last_rx: now,
            last_ping: now,
            deadline: now + cfg.handshake_ticks,
            queue: SendQueue::new(),
            decoder: Decoder::new(cfg.limits),
            tail: Vec::new(),
            msg: Vec::new(),
            msg_op: OpCode::Binary,
            deflate: None,
        }
    }

    /// Where the connection is.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// Whether the connection is upgraded and not closing: it may be sent to.
    pub fn is_open(&self) -> bool {
        self.phase == Phase::Open
    }

    /// Whether the connection is finished: drop its socket.
    pub fn is_dead(&self) -> bool {
        self.phase == Phase::Dead
    }

    /// Whether the upgrade completed (the handler saw the open, and must see the close).
    pub fn opened(&self) -> bool {
        self.opened
    }

    /// The close code the peer sent, if it sent one.
    pub fn peer_code(&self) -> Option<CloseCode> {
        self.peer_code
    }

    /// The window (bits) the server compresses with, if permessage-deflate was negotiated.
    pub fn deflate_window(&self) -> Option<u8> {
        self.deflate
            .as_ref()
            .map(|d| d.params.server_max_window_bits)
    }

    /// Bytes this connection holds for messages it has not received whole: the capacity of
    /// its tail and fragment buffers (what a process-wide budget counts).
    pub fn partial_bytes(&self) -> usize {
        self.tail.capacity() + self.msg.capacity()
    }

    /// Whether the message [`Self::read`] last returned came compressed (and was inflated).
    pub fn last_message_inflated(&self) -> bool {
        self.decoder.message_compressed()
    }

    /// Why the connection failed, once (for counters and logs).
    pub fn take_failure(&mut self) -> Option<Failure> {
        self.failure.take()
    }

    /// Finish the connection now: the caller drops the socket.
    pub fn kill(&mut self) {
        self.phase = Phase::Dead;
    }

    /// Free every buffer of a finished connection (its queue, tail, fragments, inflater):
    /// a handler may keep a handle to it for a while.
    pub fn release(&mut self) {
        self.kill();
        self.queue = SendQueue::new();
        self.tail = Vec::new();
        self.msg = Vec::new();
        if let Some(d) = self.deflate.as_deref_mut() {
            d.inflater = None;
        }
    }

    // ----- timers -----

    /// When [`Self::on_timeout`] should next run; `None` once dead. In the open phase this
    /// only moves later as traffic arrives, so a caller may keep an earlier timer and let it
    /// fire early.
    pub fn next_timeout(&self, cfg: &ConnConfig) -> Option<Tick> {
        match self.phase {
            Phase::Handshake | Phase::Closing => Some(self.deadline),
            Phase::Open => {
                let heard = self.last_rx.max(self.last_ping);
                let beat = (heard + cfg.ping_ticks).min(self.last_rx + cfg.silent_ticks);
                Some(beat.min(self.deadline))
            }
            Phase::Dead => None,
        }
    }

    /// Whether the peer has been silent past the heartbeat window. A caller that may not
    /// have read what is already in the socket (an overloaded worker) reads first.
    pub fn is_silent(&self, cfg: &ConnConfig, now: Tick) -> bool {
        self.phase == Phase::Open && now >= self.last_rx + cfg.silent_ticks
    }

    /// Run whatever is due at `now`: the handshake or close deadline, the heartbeat close,
    /// a ping to a peer we have not heard from for a whole interval (traffic from the peer
    /// already proves it is alive).
    pub fn on_timeout(&mut self, cfg: &ConnConfig, now: Tick) -> Timeout {
        match self.phase {
            Phase::Dead => Timeout::Nothing,
            Phase::Handshake | Phase::Closing if now < self.deadline => Timeout::Nothing,
            Phase::Handshake => {
                self.kill();
                Timeout::Handshake
            }
            Phase::Closing => {
                self.kill();
                Timeout::Close
            }
            Phase::Open if now >= self.deadline => {
                self.fail(Failure::MessageTimeout, cfg, now);
                Timeout::Message
            }
            Phase::Open if self.is_silent(cfg, now) => {
                let (lane, after) = (Lane::AheadOfData, AfterFlush::Drop);
                self.start_close(
                    Some(CloseCode::GOING_AWAY),
                    "heartbeat timeout",
                    lane,
                    after,
                    cfg,
                    now,
                );
                Timeout::Heartbeat
            }
            Phase::Open => {
                if now < self.last_rx.max(self.last_ping) + cfg.ping_ticks {
                    return Timeout::Nothing;
                }
                self.queue
                    .push_control(encode_frame_bytes(OpCode::Ping, b""));
                self.last_ping = now;
                Timeout::Ping
            }
        }
    }
}

/// Where a close frame goes in the send queue.
#[derive(Debug, Clone, Copy)]
enum Lane {
    /// Behind the data already queued (answers the peer sees before the close).
    BehindData,
    /// Ahead of every data frame not yet started, which is discarded.
    AheadOfData,
}
