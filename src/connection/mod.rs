//! One WebSocket connection as a state machine with no I/O and no clock, in the style of
//! quinn-proto: bytes and `now` go in; messages for the handler, bytes to write and the next
//! deadline come out.
//!
//! Owns: the phase (handshake, open, closing, dead), the upgrade answer, frame decoding and
//! the unfinished tail of the input, fragment reassembly, permessage-deflate inflation, the
//! one close path (every close frame is built in [`Connection::start_close`]), the heartbeat
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
    /// The upgrade request was malformed; the HTTP answer is queued.
    Handshake(HandshakeError),
}

/// What [`Connection::on_timeout`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timeout {
    /// Nothing was due.
    Nothing,
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
    /// Last byte received, last ping sent, the phase deadline (handshake or close).
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
    inflater: Option<Inflater>,
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

    // ----- input -----

    /// Bytes arrived from the peer at `now` (they count as life for the heartbeat).
    pub fn received(&mut self, now: Tick) {
        self.last_rx = now;
    }

    /// Whether input still matters: false once the connection discards it or is dead.
    pub fn wants_input(&self) -> bool {
        !self.discarding && self.phase != Phase::Dead
    }

    /// Whether reading should pause until the queue drains: at half the bound, so that what
    /// one read batch makes the handler send (at most a read buffer's worth for an echo)
    /// still fits under the bound.
    pub fn read_paused(&self, cfg: &ConnConfig) -> bool {
        self.queue.queued_bytes() > cfg.send_bound / 2
    }

    /// The unfinished input kept from the last read (empty if none); the caller appends new
    /// bytes to it, reads from it, and hands it back with [`Self::restore_tail`].
    pub fn take_tail(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.tail)
    }

    /// Keep `rest`, the bytes [`Self::read`] did not use, until more arrive.
    pub fn keep_tail(&mut self, rest: &[u8]) {
        if rest.is_empty() || !self.wants_input() {
            return;
        }
        self.tail.extend_from_slice(rest);
        self.reserve_frame();
    }

    /// Hand back a buffer from [`Self::take_tail`] of which `used` bytes were consumed.
    pub fn restore_tail(&mut self, mut buf: Vec<u8>, used: usize) {
        buf.drain(..used.min(buf.len()));
        if buf.is_empty() || !self.wants_input() {
            return; // idle connections own no read memory
        }
        self.tail = buf;
        self.reserve_frame();
    }

    /// Size the tail for the whole frame under way at once (its header already passed the
    /// limits) instead of growing it by doubling.
    fn reserve_frame(&mut self) {
        if let Some(total) = self.decoder.frame_len_hint() {
            if total > self.tail.capacity() {
                self.tail.reserve_exact(total - self.tail.len());
            }
        }
    }

    /// Parse the upgrade request at the start of `buf`. `Ok(None)`: incomplete, keep the
    /// bytes. A malformed request is answered here (an HTTP error is queued, the connection
    /// closes) and returned as the error; a valid one must be answered with [`Self::accept`]
    /// or [`Self::reject`] before reading on.
    pub fn read_request<'h, 'b>(
        &mut self,
        buf: &'b [u8],
        headers: &'h mut [httparse::Header<'b>],
        limits: &handshake::HandshakeLimits,
        cfg: &ConnConfig,
        now: Tick,
    ) -> Result<Option<(Request<'h, 'b>, usize)>, HandshakeError> {
        debug_assert_eq!(self.phase, Phase::Handshake);
        handshake::parse_request(buf, headers, limits).inspect_err(|e| {
            self.reject(e.status(), e.reason(), cfg, now);
            self.failure = Some(Failure::Handshake(*e));
        })
    }

    /// Accept the upgrade: queue the `101` (with the chosen subprotocol and the negotiated
    /// permessage-deflate answer) and open.
    pub fn accept(
        &mut self,
        key: &str,
        protocol: Option<&str>,
        deflate: Option<DeflateParams>,
        cfg: &ConnConfig,
        now: Tick,
    ) {
        let answer = deflate.map(|p| p.to_string());
        let mut out = Vec::with_capacity(160);
        handshake::write_accept(key, protocol, answer.as_deref(), &mut out);
        if let Some(params) = deflate {
            self.deflate = Some(Box::new(ConnDeflate {
                params,
                inflater: None,
            }));
            self.decoder.set_rsv_allowed(0b100);
        }
        self.queue.push_data(Bytes::from(out));
        self.phase = Phase::Open;
        self.opened = true;
        self.last_rx = now;
        self.last_ping = now;
        self.deadline = now + cfg.ping_ticks;
    }

    /// Refuse the upgrade (or a connection refused at accept) with an HTTP `status`; the
    /// answer is written, then the socket shut down for writing.
    pub fn reject(&mut self, status: u16, reason: &str, cfg: &ConnConfig, now: Tick) {
        let mut out = Vec::with_capacity(160);
        handshake::write_reject(status, reason, &mut out);
        self.queue.push_control(Bytes::from(out));
        self.discarding = true;
        self.enter_closing(AfterFlush::ShutdownWrite, cfg, now);
    }

    /// Decode frames from the start of `buf` (plaintext read from the socket, or the tail
    /// with new bytes appended), answering pings and closes, until a message is complete or
    /// the input runs out. Payloads are unmasked in place; a message is borrowed from `buf`
    /// or, when reassembled or inflated, from `ws`.
    pub fn read<'a>(
        &mut self,
        buf: &'a mut [u8],
        ws: &'a mut Workspace,
        cfg: &ConnConfig,
        now: Tick,
    ) -> Read<'a> {
        let mut off = 0;
        loop {
            if !self.wants_input() {
                return Read::Done(buf.len());
            }
            if off == buf.len() || self.phase == Phase::Handshake {
                return Read::Done(off);
            }
            // The payload's place in `buf`, so that the decoder's borrow ends here and a
            // message can be lent out of `buf` afterwards.
            let (data, used) = match self.decoder.decode(&mut buf[off..]) {
                Ok(None) => return Read::Done(off),
                Err(e) => {
                    self.fail(e, Failure::Protocol(e), cfg, now);
                    return Read::Done(buf.len());
                }
                Ok(Some((
                    Decoded::Data {
                        opcode,
                        fin,
                        payload,
                    },
                    used,
                ))) => {
                    let at = payload.as_ptr() as usize;
                    (Some((opcode, fin, at, payload.len())), used)
                }
                Ok(Some((control, used))) => {
                    self.on_control(control, cfg, now);
                    (None, used)
                }
            };
            let start = off;
            off += used;
            let Some((opcode, fin, at, len)) = data else {
                continue;
            };
            if self.phase != Phase::Open {
                continue; // data after our close frame is ignored
            }
            let from = start + (at - buf[start..].as_ptr() as usize);
            let range = from..from + len;
            if opcode != OpCode::Continuation && fin {
                let buf: &'a [u8] = buf;
                let Workspace { out, shared, .. } = ws;
                return match self.complete(opcode, &buf[range], out, shared, cfg, now) {
                    Some(m) => Read::Message(off, m),
                    None => Read::Done(buf.len()),
                };
            }
            if opcode != OpCode::Continuation {
                self.msg_op = opcode;
                self.msg.clear();
            }
            self.msg.extend_from_slice(&buf[range]);
            if fin {
                // Deliver from the workspace: the connection keeps no message buffer.
                let Workspace {
                    out,
                    assembled,
                    shared,
                } = ws;
                *assembled = std::mem::take(&mut self.msg);
                let op = self.msg_op;
                return match self.complete(op, assembled, out, shared, cfg, now) {
                    Some(m) => Read::Message(off, m),
                    None => Read::Done(buf.len()),
                };
            }
        }
    }

    /// A whole message's payload: inflate it if it is compressed, check text, or fail.
    fn complete<'a>(
        &mut self,
        opcode: OpCode,
        payload: &'a [u8],
        out: &'a mut Vec<u8>,
        shared: &mut Option<Box<Inflater>>,
        cfg: &ConnConfig,
        now: Tick,
    ) -> Option<Message<'a>> {
        let payload = if self.decoder.message_compressed() {
            out.clear();
            match self.inflate(payload, out, shared, cfg.limits.max_message) {
                Ok(()) => out.as_slice(),
                Err(InflateError::TooLarge) => {
                    let e = ProtocolError::MessageTooLarge;
                    self.fail(e, Failure::InflateLimit, cfg, now);
                    return None;
                }
                Err(_) => {
                    let e = ProtocolError::InvalidCompressed;
                    self.fail(e, Failure::InflateCorrupt, cfg, now);
                    return None;
                }
            }
        } else {
            payload
        };
        if opcode != OpCode::Text {
            return Some(Message::Binary(payload));
        }
        // The decoder validated uncompressed text as it arrived; inflated text is checked
        // here (and both again, cheaply, so that no `unsafe` is needed).
        match simdutf8::basic::from_utf8(payload) {
            Ok(text) => Some(Message::Text(text)),
            Err(_) => {
                let e = ProtocolError::InvalidUtf8;
                self.fail(e, Failure::Protocol(e), cfg, now);
                None
            }
        }
    }

    /// Inflate one compressed message (RFC 7692) with the connection's own inflater when the
    /// client keeps its context, else with the worker's shared one.
    fn inflate(
        &mut self,
        payload: &[u8],
        out: &mut Vec<u8>,
        shared: &mut Option<Box<Inflater>>,
        limit: usize,
    ) -> Result<(), InflateError> {
        let Some(d) = self.deflate.as_deref_mut() else {
            return Err(InflateError::Corrupt);
        };
        if d.params.client_no_context_takeover {
            let z = shared.get_or_insert_with(|| Box::new(Inflater::new(MAX_WINDOW_BITS)));
            return z.inflate(payload, limit, true, out);
        }
        let bits = d.params.inflate_window_bits();
        let z = d.inflater.get_or_insert_with(|| Inflater::new(bits));
        let res = z.inflate(payload, limit, false, out);
        if res.is_err() {
            d.inflater = None; // the connection closes: its inflater goes
        }
        res
    }

    fn on_control(&mut self, frame: Decoded<'_>, cfg: &ConnConfig, now: Tick) {
        match frame {
            Decoded::Ping(payload) if self.phase == Phase::Open => {
                self.queue
                    .push_control(control_frame(OpCode::Pong, payload));
            }
            Decoded::Close(frame) => {
                self.peer_code = frame.map(|f| f.code);
                if self.close_sent {
                    // Our close was answered: the handshake is complete.
                    self.kill();
                    return;
                }
                // Echo the code behind the replies already queued to earlier messages, then
                // close the socket; nothing the peer sends after its close frame matters.
                let code = frame.map(|f| f.code);
                self.start_close(code, "", Lane::BehindData, AfterFlush::Drop, cfg, now);
                self.discarding = true;
            }
            _ => {}
        }
    }

    /// A failure: record it, send the close code behind the replies already queued to the
    /// valid messages before it, stop reading, and shut down once it is written.
    fn fail(&mut self, e: ProtocolError, failure: Failure, cfg: &ConnConfig, now: Tick) {
        self.failure = Some(failure);
        let code = Some(e.close_code());
        self.start_close(
            code,
            e.reason(),
            Lane::BehindData,
            AfterFlush::ShutdownWrite,
            cfg,
            now,
        );
        self.discarding = true;
    }

    // ----- closing -----

    /// The one close path: queue a close frame on `lane`, then wait for the peer's answer
    /// until the close deadline, doing `after` once the queue is written.
    fn start_close(
        &mut self,
        code: Option<CloseCode>,
        reason: &str,
        lane: Lane,
        after: AfterFlush,
        cfg: &ConnConfig,
        now: Tick,
    ) {
        let mut out = Vec::with_capacity(8 + reason.len());
        encode_close(code, reason, &mut out);
        match lane {
            Lane::BehindData => self.queue.push_data(Bytes::from(out)),
            Lane::AheadOfData => {
                self.queue.discard_data();
                self.queue.push_control(Bytes::from(out));
            }
        }
        self.close_sent = true;
        self.enter_closing(after, cfg, now);
    }

    fn enter_closing(&mut self, after: AfterFlush, cfg: &ConnConfig, now: Tick) {
        if self.phase == Phase::Dead {
            return;
        }
        self.phase = Phase::Closing;
        self.after_flush = after;
        self.deadline = now + cfg.close_ticks;
    }

    /// Close with `code`: data queued before the close frame still goes out first. A
    /// connection still in its handshake is dropped; a closing one is left alone.
    pub fn close(&mut self, code: CloseCode, reason: &str, cfg: &ConnConfig, now: Tick) {
        match self.phase {
            Phase::Open => self.start_close(
                Some(code),
                reason,
                Lane::BehindData,
                AfterFlush::Nothing,
                cfg,
                now,
            ),
            Phase::Handshake => self.kill(),
            Phase::Closing | Phase::Dead => {}
        }
    }

    /// Close an open connection with `code` ahead of every queued frame not yet started,
    /// which is discarded (a slow consumer, a revoked token).
    pub fn close_now(&mut self, code: CloseCode, reason: &str, cfg: &ConnConfig, now: Tick) {
        if self.phase == Phase::Open {
            self.start_close(
                Some(code),
                reason,
                Lane::AheadOfData,
                AfterFlush::Nothing,
                cfg,
                now,
            );
        }
    }

    // ----- sending -----

    /// Bytes queued and not yet written.
    pub fn queued_bytes(&self) -> usize {
        self.queue.queued_bytes()
    }

    /// Whether [`Self::send`] would take a frame now.
    pub fn can_send(&self, cfg: &ConnConfig) -> Result<(), SendError> {
        if self.phase != Phase::Open {
            return Err(SendError::Closed);
        }
        if self.queue.queued_bytes() > cfg.send_bound {
            return Err(SendError::Full);
        }
        Ok(())
    }

    /// Queue a data frame, refused when closed or over the send bound.
    pub fn send(&mut self, frame: Bytes, cfg: &ConnConfig) -> Result<(), SendError> {
        self.can_send(cfg)?;
        self.queue.push_data(frame);
        Ok(())
    }

    /// Queue a reply to the client's own request whatever the bound (reading pauses at half
    /// the bound, which bounds replies); refused only when closed.
    pub fn send_reply(&mut self, frame: Bytes) -> Result<(), SendError> {
        if self.phase != Phase::Open {
            return Err(SendError::Closed);
        }
        self.queue.push_data(frame);
        Ok(())
    }

    /// Offer a published frame under the send bound (conflation and the slow-consumer
    /// policy: see `docs/backpressure.md`). On [`Offer::Disconnect`] the connection is
    /// already closing with 1008 "slow consumer".
    pub fn offer(
        &mut self,
        frame: Bytes,
        key: Option<ConflationKey>,
        policy: SlowPolicy,
        cfg: &ConnConfig,
        now: Tick,
    ) -> Result<Offer, SendError> {
        if self.phase != Phase::Open {
            return Err(SendError::Closed);
        }
        let verdict = self.queue.offer(frame, key, cfg.send_bound, policy);
        if verdict == Offer::Disconnect {
            self.close_now(CloseCode::POLICY, "slow consumer", cfg, now);
        }
        Ok(verdict)
    }

    // ----- writing -----

    /// Whether bytes wait to be written.
    pub fn has_output(&self) -> bool {
        !self.queue.is_empty()
    }

    /// Fill `out` with the next slices to write, in order; returns how many were filled.
    pub fn transmit<'q>(&'q mut self, out: &mut [IoSlice<'q>]) -> usize {
        if self.phase == Phase::Dead {
            return 0;
        }
        self.queue.fill_slices(out)
    }

    /// Record that `n` bytes from [`Self::transmit`] were written.
    pub fn sent(&mut self, n: usize) {
        self.queue.advance(n);
    }

    /// The send queue itself, for a TLS layer that encrypts from it.
    pub fn queue_mut(&mut self) -> &mut SendQueue {
        &mut self.queue
    }

    /// Whether the connection ends once its queue is written (TLS sends close_notify then).
    pub fn ends_after_flush(&self) -> bool {
        self.after_flush != AfterFlush::Nothing
    }

    /// The queue was written out: what to do now (a [`AfterFlush::Drop`] kills the
    /// connection).
    pub fn flushed(&mut self) -> AfterFlush {
        let after = std::mem::replace(&mut self.after_flush, AfterFlush::Nothing);
        if after == AfterFlush::Drop {
            self.kill();
        }
        after
    }

    /// Release the send queue's memory if nothing is queued (the connection went quiet).
    pub fn shrink(&mut self) {
        self.queue.shrink();
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
                Some((heard + cfg.ping_ticks).min(self.last_rx + cfg.silent_ticks))
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
                self.queue.push_control(control_frame(OpCode::Ping, b""));
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

fn control_frame(op: OpCode, payload: &[u8]) -> Bytes {
    encode_frame_bytes(op, payload)
}
