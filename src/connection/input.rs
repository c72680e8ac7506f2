//! The input side of a [`Connection`]: the unfinished tail, the upgrade request and its
//! answer, frame decoding, reassembly, inflation, control frames and protocol failures.

use super::*;

impl Connection {
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
    pub fn keep_tail(&mut self, rest: &[u8], cfg: &ConnConfig, now: Tick) {
        if !rest.is_empty() && self.wants_input() {
            self.tail.extend_from_slice(rest);
            self.reserve_frame();
        }
        self.track_message(cfg, now);
    }

    /// Hand back a buffer from [`Self::take_tail`] of which `used` bytes were consumed.
    pub fn restore_tail(&mut self, mut buf: Vec<u8>, used: usize, cfg: &ConnConfig, now: Tick) {
        buf.drain(..used.min(buf.len()));
        // Idle connections own no read memory.
        if !buf.is_empty() && self.wants_input() {
            self.tail = buf;
            self.reserve_frame();
        }
        self.track_message(cfg, now);
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
        handshake::parse_request(buf, headers, limits)
            .inspect_err(|e| self.reject(e.status(), e.reason(), cfg, now))
    }

    /// Accept the upgrade: queue the `101` (with the chosen subprotocol and the negotiated
    /// permessage-deflate answer) and open.
    pub fn accept(
        &mut self,
        key: &str,
        protocol: Option<&str>,
        deflate: Option<DeflateParams>,
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
        self.deadline = Tick::MAX; // while open: the deadline of a message under way
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
                    self.fail(Failure::Protocol(e), cfg, now);
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
                self.deadline = Tick::MAX; // a whole message: none is under way
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
                self.deadline = Tick::MAX; // a whole message: none is under way
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
                    self.fail(Failure::InflateLimit, cfg, now);
                    return None;
                }
                Err(_) => {
                    self.fail(Failure::InflateCorrupt, cfg, now);
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
                self.fail(Failure::Protocol(e), cfg, now);
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
        let z = d
            .inflater
            .get_or_insert_with(|| Box::new(Inflater::new(bits)));
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
                    .push_control(encode_frame_bytes(OpCode::Pong, payload));
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
    pub(super) fn fail(&mut self, failure: Failure, cfg: &ConnConfig, now: Tick) {
        self.failure = Some(failure);
        let (code, reason) = failure.close_frame();
        let (lane, after) = (Lane::BehindData, AfterFlush::ShutdownWrite);
        self.start_close(Some(code), reason, lane, after, cfg, now);
        self.discarding = true;
        // Nothing more is read: what was kept of unfinished messages goes now.
        self.tail = Vec::new();
        self.msg = Vec::new();
    }

    /// The process holds more of unfinished messages than its budget, and this connection
    /// added to them last: close it with 1013 "server busy" (behind its queued replies) and
    /// free what it held.
    pub fn close_over_budget(&mut self, cfg: &ConnConfig, now: Tick) {
        if self.wants_input() && self.phase == Phase::Open {
            self.fail(Failure::OverBudget, cfg, now);
        }
    }

    /// Keep the deadline of the message under way: set when one starts (a frame cut by the
    /// end of the input, or a fragmented message), cleared when none is.
    fn track_message(&mut self, cfg: &ConnConfig, now: Tick) {
        if !self.wants_input() {
            self.msg = Vec::new(); // a message that will never finish
            return;
        }
        if self.phase != Phase::Open {
            return;
        }
        if self.tail.is_empty() && !self.decoder.in_message() {
            self.deadline = Tick::MAX;
        } else if self.deadline == Tick::MAX {
            self.deadline = now.saturating_add(cfg.message_ticks);
        }
    }
}
