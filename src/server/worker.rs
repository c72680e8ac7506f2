//! A worker: one OS thread, one monoio runtime, one SO_REUSEPORT listener, one slab of
//! connections, one timer wheel. Nothing here is shared with other workers except the
//! counters (single-writer) and the shutdown bell.

use std::{
    cell::{Cell, RefCell},
    io::IoSlice,
    net::SocketAddr,
    rc::Rc,
    sync::Arc,
    time::{Duration, Instant},
};

use bytes::{Bytes, BytesMut};
use nix::sys::socket::Shutdown;
use slab::Slab;

use super::{
    bell::Bell,
    conn::{self, AfterFlush, Conn, Phase},
    deflate::{DeflateSettings, WorkerDeflate},
    handler::{
        ConnId, Ctx, Handler, HandshakeHook, HookDecision, Message, OpenInfo, SendError, Wakeup,
    },
    io,
    stats::WorkerStats,
    timer::TimerWheel,
    tls::{TlsConn, TlsFlush, TlsRead},
};
use crate::{
    config::Config,
    guard::{Admission, Guard, Refusal},
    proto::{
        compress::InflateError,
        encode_close, encode_frame, encoded_len,
        handshake::{self, HandshakeLimits},
        CloseCode, Decoded, Decoder, DecoderLimits, OpCode, ProtocolError,
    },
    queue::{ConflationKey, Offer, SlowPolicy},
};

/// Timer resolution.
pub(crate) const TICK: Duration = Duration::from_millis(100);
/// The shared read buffer of a worker.
const SCRATCH_BYTES: usize = 64 * 1024;
/// Slices handed to one `sendmsg`.
const MAX_IOV: usize = 64;
/// Wheel size: 4096 ticks of 100 ms, about 6.8 minutes.
const WHEEL_SLOTS: usize = 4096;
/// Refused connections a worker lets linger to deliver their HTTP answer (each holds a
/// socket and a slab entry for at most `close_timeout`).
const MAX_REFUSING: usize = 1024;

fn ticks(d: Duration) -> u64 {
    let t = TICK.as_nanos();
    (d.as_nanos().div_ceil(t)).max(1) as u64
}

/// Settings a worker reads on the hot path, in its own units.
pub(crate) struct WorkerSettings {
    pub(crate) limits: DecoderLimits,
    pub(crate) hs_limits: HandshakeLimits,
    pub(crate) send_bound: usize,
    pub(crate) limit: Arc<super::ConnLimit>,
    pub(crate) guard: Arc<Guard>,
    pub(crate) ping_ticks: u64,
    pub(crate) silent_ticks: u64,
    pub(crate) handshake_ticks: u64,
    pub(crate) close_ticks: u64,
    pub(crate) subprotocols: Vec<String>,
    pub(crate) nodelay: bool,
    /// SO_SNDBUF for accepted sockets; 0 keeps the kernel's autotuning.
    pub(crate) socket_send_buffer: usize,
    /// The TLS config of a wss:// listener; `None` for plain ws://.
    pub(crate) tls: Option<Arc<rustls::ServerConfig>>,
    pub(crate) deflate: Option<DeflateSettings>,
}

impl WorkerSettings {
    pub(crate) fn new(cfg: &Config, limit: Arc<super::ConnLimit>, guard: Arc<Guard>) -> Self {
        WorkerSettings {
            limits: DecoderLimits {
                max_frame: cfg.max_frame_bytes,
                max_message: cfg.max_message_bytes,
            },
            hs_limits: HandshakeLimits {
                max_head_bytes: cfg.max_handshake_bytes,
            },
            send_bound: cfg.send_buffer_bytes,
            limit,
            guard,
            ping_ticks: ticks(cfg.ping_interval),
            silent_ticks: ticks(cfg.ping_interval + cfg.pong_timeout),
            handshake_ticks: ticks(cfg.handshake_timeout),
            close_ticks: ticks(cfg.close_timeout),
            subprotocols: cfg.subprotocols.clone(),
            nodelay: cfg.tcp_nodelay,
            socket_send_buffer: cfg.socket_send_buffer,
            tls: None,
            deflate: DeflateSettings::from_config(cfg),
        }
    }
}

/// The state of one worker, owned by its thread.
pub(crate) struct WorkerInner {
    pub(crate) id: usize,
    pub(crate) set: WorkerSettings,
    pub(crate) conns: RefCell<Slab<Rc<Conn>>>,
    handler: RefCell<Box<dyn Handler>>,
    hook: Option<Arc<dyn HandshakeHook>>,
    scratch: RefCell<Vec<u8>>,
    wheel: RefCell<TimerWheel>,
    epoch: Instant,
    pub(crate) stats: Arc<WorkerStats>,
    dirty: RefCell<Vec<Rc<Conn>>>,
    next_gen: Cell<u32>,
    pub(crate) draining: Cell<bool>,
    /// The handler's wakeup source, taken by the worker's main task at start.
    wakeup: RefCell<Option<Rc<dyn Wakeup>>>,
    /// The handler asked for `on_wake` at the end of every wake.
    wake_hook: bool,
    /// Refused connections still sending their HTTP answer (see `refuse_at_accept`).
    refusing: Cell<usize>,
    /// permessage-deflate: the worker's compressors and inflater.
    pub(crate) deflate: WorkerDeflate,
}

impl WorkerInner {
    pub(crate) fn new(
        id: usize,
        set: WorkerSettings,
        handler: Box<dyn Handler>,
        hook: Option<Arc<dyn HandshakeHook>>,
        stats: Arc<WorkerStats>,
    ) -> Self {
        let mut handler = handler;
        let wakeup = handler.wakeup();
        WorkerInner {
            wake_hook: wakeup.is_some(),
            wakeup: RefCell::new(wakeup),
            deflate: WorkerDeflate::new(set.deflate),
            id,
            set,
            conns: RefCell::new(Slab::new()),
            handler: RefCell::new(handler),
            hook,
            scratch: RefCell::new(vec![0; SCRATCH_BYTES]),
            wheel: RefCell::new(TimerWheel::new(WHEEL_SLOTS)),
            epoch: Instant::now(),
            stats,
            dirty: RefCell::new(Vec::new()),
            next_gen: Cell::new(0),
            draining: Cell::new(false),
            refusing: Cell::new(0),
        }
    }

    /// The current timer tick.
    pub(crate) fn now(&self) -> u64 {
        (self.epoch.elapsed().as_nanos() / TICK.as_nanos()) as u64
    }

    /// The connection behind `id`, if it still exists.
    pub(crate) fn conn(&self, id: ConnId) -> Option<Rc<Conn>> {
        let conns = self.conns.borrow();
        conns
            .get(id.key as usize)
            .filter(|c| c.gen == id.gen)
            .cloned()
    }

    fn schedule(&self, conn: &Conn, tick: u64) {
        let at = self.wheel.borrow_mut().schedule(conn.key, tick);
        conn.timer_at.set(at);
    }

    /// Whether the connection's queue is over its bound: sends to it are refused.
    pub(crate) fn over_bound(&self, conn: &Conn) -> bool {
        conn.queue.borrow().queued_bytes() > self.set.send_bound
    }

    /// Whether to stop reading from the connection until its queue drains: at half the
    /// bound, so that what one read batch makes the handler send (at most a read buffer's
    /// worth for an echo) still fits under the bound.
    pub(crate) fn read_paused(&self, conn: &Conn) -> bool {
        conn.queue.borrow().queued_bytes() > self.set.send_bound / 2
    }

    // ----- accepting -----

    /// Register an accepted socket and return its connection: a new one, or one refused
    /// with an HTTP answer (503 when full, 429 over a per-IP limit); `None` to drop the
    /// socket at once (draining, or too many refusals in flight).
    pub(crate) fn admit(
        &self,
        stream: &monoio::net::TcpStream,
        peer: SocketAddr,
    ) -> Option<Rc<Conn>> {
        self.stats.accepted.inc();
        if self.draining.get() {
            self.stats.refused_limit.inc();
            return None;
        }
        let verdict = if self.set.limit.acquire() {
            self.set.guard.on_accept(peer.ip()).inspect_err(|_| {
                self.set.limit.release();
            })
        } else {
            Err(Refusal::Full)
        };
        match verdict {
            Ok(ip) => {
                let Some(conn) = self.register(stream) else {
                    self.set.limit.release();
                    return None;
                };
                if let Some(ip) = ip {
                    *conn.admission.borrow_mut() = Some(Box::new(Admission {
                        ip: Some(ip),
                        ..Admission::default()
                    }));
                }
                Some(conn)
            }
            Err(r) => self.refuse_at_accept(stream, r),
        }
    }

    /// Answer a connection refused at accept with a fixed HTTP response, without reading
    /// the request. The connection holds no slot of the limit; it reads and discards until
    /// the peer closes (so the answer is not lost to a reset) or `close_timeout`. At most
    /// [`MAX_REFUSING`] per worker linger like this; beyond that the socket is just closed.
    fn refuse_at_accept(&self, stream: &monoio::net::TcpStream, why: Refusal) -> Option<Rc<Conn>> {
        self.count_refusal(why);
        // Over TLS the answer would need a TLS handshake first: close at once instead.
        if self.refusing.get() >= MAX_REFUSING || self.set.tls.is_some() {
            return None;
        }
        let conn = self.register(stream)?;
        conn.counted.set(false);
        self.refusing.set(self.refusing.get() + 1);
        self.reject(&conn, why.status(), why.reason());
        self.flush(&conn);
        Some(conn)
    }

    fn count_refusal(&self, why: Refusal) {
        let s = &self.stats;
        match why {
            Refusal::Full => s.refused_limit.inc(),
            Refusal::IpLimit => s.rejected_ip_limit.inc(),
            Refusal::HandshakeRate => s.rejected_handshake_rate.inc(),
            Refusal::Origin => s.rejected_origin.inc(),
            Refusal::Unauthorized => s.rejected_unauthorized.inc(),
            Refusal::TokenExpired => s.rejected_token_expired.inc(),
            Refusal::UserLimit => s.rejected_user_limit.inc(),
        }
    }

    /// Put an accepted socket in the slab, in the handshake phase with its deadline; `None`
    /// when its TLS session cannot start (counted in `rejected_tls`).
    fn register(&self, stream: &monoio::net::TcpStream) -> Option<Rc<Conn>> {
        use std::os::fd::AsRawFd;
        let mut conns = self.conns.borrow_mut();
        if self.set.nodelay {
            let _ = stream.set_nodelay(true);
        }
        if self.set.socket_send_buffer > 0 {
            // Validated to fit an int. A failure leaves the kernel's autotuning in place.
            // SAFETY: the descriptor belongs to `stream`, which outlives this borrow (monoio's
            // stream implements only `AsRawFd`, not `AsFd`).
            let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(stream.as_raw_fd()) };
            let _ = nix::sys::socket::setsockopt(
                &fd,
                nix::sys::socket::sockopt::SndBuf,
                &self.set.socket_send_buffer,
            );
        }
        let tls = match &self.set.tls {
            None => None,
            Some(cfg) => match TlsConn::new(cfg) {
                Ok(t) => Some(Box::new(t)),
                Err(e) => {
                    tracing::warn!(worker = self.id, error = %e, "cannot start a TLS session");
                    self.stats.rejected_tls.inc();
                    return None;
                }
            },
        };
        let gen = self.next_gen.get().wrapping_add(1);
        self.next_gen.set(gen);
        let entry = conns.vacant_entry();
        let now = self.now();
        let conn = Rc::new(
            Conn::new(
                stream.as_raw_fd(),
                entry.key() as u32,
                gen,
                Decoder::new(self.set.limits),
                now,
            )
            .with_tls(tls),
        );
        entry.insert(conn.clone());
        drop(conns);
        self.stats.connections.inc();
        conn.deadline.set(now + self.set.handshake_ticks);
        self.schedule(&conn, now + self.set.handshake_ticks);
        Some(conn)
    }

    /// Remove a finished connection and tell the handler.
    pub(crate) fn finish(&self, conn: &Rc<Conn>) {
        let opened = conn.opened.get();
        if let Some(tls) = conn.tls.as_deref() {
            self.stats.bytes_out.add(tls.goodbye(conn.fd) as u64);
        }
        if self
            .conns
            .borrow_mut()
            .try_remove(conn.key as usize)
            .is_some()
        {
            if conn.counted.get() {
                self.set.limit.release();
            } else {
                self.refusing.set(self.refusing.get().saturating_sub(1));
            }
        }
        // Per-IP and per-user counts go back now, whoever still holds the `Conn`.
        drop(conn.admission.borrow_mut().take());
        self.stats.connections.dec();
        self.stats.closed.inc();
        conn.deflate.release();
        self.stats
            .queued_bytes
            .shift(-(conn.accounted.replace(0) as i64));
        if opened {
            let id = ConnId {
                key: conn.key,
                gen: conn.gen,
            };
            let code = conn.peer_code.get();
            self.handler
                .borrow_mut()
                .on_close(&mut Ctx { w: self }, id, code);
        }
    }

    // ----- reading -----

    /// The socket is readable: read until it is drained (or our queue is over its bound).
    pub(crate) fn on_readable(&self, conn: &Rc<Conn>) {
        if let Some(tls) = conn.tls.as_deref() {
            return self.on_readable_tls(conn, tls);
        }
        let mut scratch = self.scratch.borrow_mut();
        loop {
            if conn.phase.get() == Phase::Dead {
                return;
            }
            let n = match io::recv(conn.fd, &mut scratch) {
                Ok(0) => {
                    conn.kill();
                    return;
                }
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
                Err(_) => {
                    conn.kill();
                    return;
                }
            };
            self.stats.bytes_in.add(n as u64);
            conn.last_rx.set(self.now());
            self.consume(conn, &mut scratch[..n]);
            if n < scratch.len() || self.read_paused(conn) {
                return;
            }
        }
    }

    /// Feed bytes read (plaintext) through the protocol, keeping an unfinished tail.
    #[inline]
    fn consume(&self, conn: &Rc<Conn>, data: &mut [u8]) {
        let n = data.len();
        let mut rbuf = conn.rbuf.borrow_mut();
        if rbuf.is_empty() {
            let used = self.process(conn, data);
            if used < n && conn.phase.get() != Phase::Dead {
                self.keep_tail(conn, &mut rbuf, &data[used..n]);
            }
        } else {
            rbuf.extend_from_slice(data);
            let used = self.process(conn, &mut rbuf);
            rbuf.drain(..used);
            if rbuf.is_empty() {
                // Idle connections own no read memory.
                *rbuf = Vec::new();
            } else {
                self.reserve_frame(conn, &mut rbuf);
            }
        }
    }

    /// The TLS socket is readable: decrypt until it is drained (or our queue is over its
    /// bound), feeding the plaintext through [`Self::consume`]. See `tls.rs`.
    fn on_readable_tls(&self, conn: &Rc<Conn>, tls: &TlsConn) {
        let mut scratch = self.scratch.borrow_mut();
        loop {
            if conn.phase.get() == Phase::Dead {
                return;
            }
            let (res, cipher) = tls.read(conn.fd, &mut scratch);
            if cipher > 0 {
                self.stats.bytes_in.add(cipher as u64);
                conn.last_rx.set(self.now());
            }
            if tls.wants_write() {
                // Handshake messages (or an alert) to send.
                self.mark_dirty(conn);
            }
            match res {
                TlsRead::Data(n) => self.consume(conn, &mut scratch[..n]),
                TlsRead::Blocked => return,
                TlsRead::Closed => return conn.kill(),
                TlsRead::Failed(e) => {
                    if conn.opened.get() {
                        self.stats.closed_tls.inc();
                    } else {
                        self.stats.rejected_tls.inc();
                    }
                    tracing::debug!(worker = self.id, error = %e, "dropping TLS connection");
                    // Our alert, if rustls queued one, goes out before the socket closes.
                    self.flush(conn);
                    return conn.kill();
                }
            }
            if self.read_paused(conn) {
                return;
            }
        }
    }

    fn keep_tail(&self, conn: &Conn, rbuf: &mut Vec<u8>, tail: &[u8]) {
        rbuf.extend_from_slice(tail);
        self.reserve_frame(conn, rbuf);
    }

    /// Size the tail buffer for the whole frame under way at once (its header was checked
    /// against the limits already), instead of growing it by doubling.
    fn reserve_frame(&self, conn: &Conn, rbuf: &mut Vec<u8>) {
        if let Some(total) = conn.decoder.borrow().frame_len_hint() {
            if total > rbuf.capacity() {
                rbuf.reserve_exact(total - rbuf.len());
            }
        }
    }

    /// Feed `buf` through the handshake or the frame decoder; returns the bytes consumed.
    fn process(&self, conn: &Rc<Conn>, buf: &mut [u8]) -> usize {
        let mut off = 0;
        loop {
            if conn.discarding.get() || conn.phase.get() == Phase::Dead {
                return buf.len();
            }
            if off == buf.len() {
                return off;
            }
            if conn.phase.get() == Phase::Handshake {
                match self.handshake(conn, &buf[off..]) {
                    Some(used) => off += used,
                    None => return off,
                }
                continue;
            }
            let res = conn.decoder.borrow_mut().decode(&mut buf[off..]);
            match res {
                Ok(None) => return off,
                Ok(Some((frame, used))) => {
                    self.on_frame(conn, frame);
                    off += used;
                }
                Err(e) => {
                    self.fail(conn, e);
                    return buf.len();
                }
            }
        }
    }

    fn handshake(&self, conn: &Rc<Conn>, buf: &[u8]) -> Option<usize> {
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let (req, used) = match handshake::parse_request(buf, &mut headers, &self.set.hs_limits) {
            Ok(None) => return None,
            Ok(Some(parsed)) => parsed,
            Err(e) => {
                tracing::debug!(worker = self.id, reason = e.label(), "handshake rejected");
                self.reject(conn, e.status(), e.reason());
                return Some(buf.len());
            }
        };
        let peer = nix::sys::socket::getpeername::<nix::sys::socket::SockaddrStorage>(conn.fd)
            .ok()
            .and_then(|a| sockaddr_to_std(&a))
            .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)));
        let admitted = match self.set.guard.on_handshake(&req) {
            Ok(a) => a,
            Err(why) => {
                self.count_refusal(why);
                tracing::debug!(worker = self.id, reason = why.reason(), "handshake refused");
                self.reject(conn, why.status(), why.reason());
                return Some(buf.len());
            }
        };
        if let Some(hook) = &self.hook {
            if let HookDecision::Reject { status, reason } = hook.check(&req, peer) {
                self.reject(conn, status, &reason);
                return Some(buf.len());
            }
        }
        let identity = admitted.identity.clone();
        if admitted.user.is_some() || identity.is_some() {
            let mut slot = conn.admission.borrow_mut();
            let a = slot.get_or_insert_with(Box::default);
            a.user = admitted.user;
            a.identity = admitted.identity;
        }
        let protocol = handshake::select_protocol(req.protocols(), &self.set.subprotocols);
        let pmd = self.deflate.negotiate(&req);
        let pmd_answer = pmd.map(|p| p.to_string());
        let mut out = Vec::with_capacity(160);
        handshake::write_accept(req.key, protocol, pmd_answer.as_deref(), &mut out);
        if let Some(params) = pmd {
            self.deflate.attach(conn, params);
            conn.decoder.borrow_mut().set_rsv_allowed(0b100);
            self.stats.deflate_negotiated.inc();
        }
        conn.queue.borrow_mut().push_data(Bytes::from(out));
        // Answer now and hand the queue's memory back: most connections then sit idle.
        self.flush(conn);
        conn.queue.borrow_mut().shrink();
        conn.phase.set(Phase::Open);
        conn.opened.set(true);
        self.stats.opened.inc();
        let now = self.now();
        conn.last_rx.set(now);
        conn.last_ping.set(now);
        self.schedule(conn, now + self.set.ping_ticks);
        let info = OpenInfo {
            peer,
            path: req.path,
            query: req.query,
            origin: req.origin,
            protocol,
            identity: identity.as_ref(),
        };
        let id = ConnId {
            key: conn.key,
            gen: conn.gen,
        };
        self.handler
            .borrow_mut()
            .on_open(&mut Ctx { w: self }, id, &info);
        Some(used)
    }

    /// Answer the upgrade request with an HTTP error and close.
    fn reject(&self, conn: &Conn, status: u16, reason: &str) {
        self.stats.handshake_rejected.inc();
        let mut out = Vec::with_capacity(160);
        handshake::write_reject(status, reason, &mut out);
        conn.queue.borrow_mut().push_control(Bytes::from(out));
        self.begin_close(conn, AfterFlush::ShutdownWrite);
        conn.discarding.set(true);
    }

    fn on_frame(&self, conn: &Rc<Conn>, frame: Decoded<'_>) {
        match frame {
            Decoded::Data {
                opcode,
                fin,
                payload,
            } => {
                if conn.phase.get() != Phase::Open {
                    return; // data after our close frame is ignored
                }
                if opcode != OpCode::Continuation && fin {
                    self.deliver_data(conn, opcode, payload);
                    return;
                }
                let mut msg = conn.msg.borrow_mut();
                if opcode != OpCode::Continuation {
                    conn.msg_op.set(opcode);
                    msg.clear();
                }
                msg.extend_from_slice(payload);
                if fin {
                    let whole = std::mem::take(&mut *msg);
                    drop(msg);
                    self.deliver_data(conn, conn.msg_op.get(), &whole);
                }
            }
            Decoded::Ping(payload) => {
                if conn.phase.get() == Phase::Open {
                    self.push_control(conn, OpCode::Pong, payload);
                }
            }
            Decoded::Pong(_) => {}
            Decoded::Close(frame) => {
                conn.peer_code.set(frame.map(|f| f.code));
                if conn.close_sent.get() {
                    // Our close was answered: the handshake is complete.
                    conn.kill();
                    return;
                }
                // Answer behind the replies already queued to earlier messages, and stop
                // decoding: nothing the peer sends after its close frame matters.
                let mut out = Vec::with_capacity(8);
                encode_close(frame.map(|f| f.code), "", &mut out);
                conn.queue.borrow_mut().push_data(Bytes::from(out));
                conn.close_sent.set(true);
                conn.discarding.set(true);
                self.begin_close(conn, AfterFlush::Drop);
            }
        }
    }

    /// A complete message: inflate it first if it is compressed (permessage-deflate).
    fn deliver_data(&self, conn: &Rc<Conn>, opcode: OpCode, payload: &[u8]) {
        if !conn.decoder.borrow().message_compressed() {
            return self.deliver(conn, opcode, payload);
        }
        let limit = self.set.limits.max_message;
        self.deflate
            .inflate_then(conn, payload, limit, |inflated| match inflated {
                Ok(msg) => {
                    self.stats.messages_inflated.inc();
                    self.deliver(conn, opcode, msg);
                }
                Err(InflateError::TooLarge) => {
                    self.stats.closed_inflate_limit.inc();
                    self.close_on_error(conn, ProtocolError::MessageTooLarge);
                }
                Err(_) => {
                    self.stats.closed_inflate_error.inc();
                    self.close_on_error(conn, ProtocolError::InvalidCompressed);
                }
            });
    }

    fn deliver(&self, conn: &Rc<Conn>, opcode: OpCode, payload: &[u8]) {
        self.stats.messages_in.inc();
        let msg = if opcode == OpCode::Text {
            match simdutf8::basic::from_utf8(payload) {
                Ok(text) => Message::Text(text),
                // The decoder validated uncompressed text; inflated text is checked here.
                Err(_) => return self.fail(conn, ProtocolError::InvalidUtf8),
            }
        } else {
            Message::Binary(payload)
        };
        let id = ConnId {
            key: conn.key,
            gen: conn.gen,
        };
        self.handler
            .borrow_mut()
            .on_message(&mut Ctx { w: self }, id, msg);
    }

    /// A protocol violation: send the close code, then shut down once it is written.
    fn fail(&self, conn: &Conn, e: ProtocolError) {
        self.stats.protocol_errors.inc();
        self.close_on_error(conn, e);
    }

    /// [`Self::fail`] without counting it in `protocol_errors` (the caller counts the close
    /// under its own reason).
    fn close_on_error(&self, conn: &Conn, e: ProtocolError) {
        tracing::debug!(
            worker = self.id,
            error = e.label(),
            "closing on protocol error"
        );
        // The close goes behind the replies already queued to the valid messages that came
        // before the bad frame (a peer must see those answers, then the close).
        let mut out = Vec::with_capacity(32);
        encode_close(Some(e.close_code()), e.reason(), &mut out);
        conn.queue.borrow_mut().push_data(Bytes::from(out));
        conn.close_sent.set(true);
        conn.discarding.set(true);
        self.begin_close(conn, AfterFlush::ShutdownWrite);
    }

    /// Enter the closing phase with a deadline for the peer's answer.
    fn begin_close(&self, conn: &Conn, after: AfterFlush) {
        if conn.phase.get() == Phase::Dead {
            return;
        }
        conn.phase.set(Phase::Closing);
        conn.after_flush.set(after);
        let deadline = self.now() + self.set.close_ticks;
        conn.deadline.set(deadline);
        self.schedule(conn, deadline);
        self.mark_dirty(conn);
    }

    // ----- writing -----

    fn push_control(&self, conn: &Conn, op: OpCode, payload: &[u8]) {
        let mut out = BytesMut::with_capacity(encoded_len(payload.len()));
        encode_into(op, payload, &mut out);
        conn.queue.borrow_mut().push_control(out.freeze());
        self.mark_dirty(conn);
    }

    pub(crate) fn send_data(
        &self,
        id: ConnId,
        op: OpCode,
        payload: &[u8],
    ) -> Result<(), SendError> {
        let conn = self.writable_conn(id)?;
        if let Some(frame) = self.deflate.frame_for(&conn, op, payload) {
            self.stats.messages_deflated.inc();
            self.queue_data(&conn, frame);
            return Ok(());
        }
        let mut out = BytesMut::with_capacity(encoded_len(payload.len()));
        encode_into(op, payload, &mut out);
        self.queue_data(&conn, out.freeze());
        Ok(())
    }

    pub(crate) fn send_encoded(&self, id: ConnId, frame: Bytes) -> Result<(), SendError> {
        let conn = self.writable_conn(id)?;
        self.queue_data(&conn, frame);
        Ok(())
    }

    fn writable_conn(&self, id: ConnId) -> Result<Rc<Conn>, SendError> {
        let conn = self.conn(id).ok_or(SendError::Closed)?;
        if conn.phase.get() != Phase::Open {
            return Err(SendError::Closed);
        }
        if self.over_bound(&conn) {
            return Err(SendError::Full);
        }
        Ok(conn)
    }

    fn queue_data(&self, conn: &Rc<Conn>, frame: Bytes) {
        self.stats.messages_out.inc();
        conn.queue.borrow_mut().push_data(frame);
        self.mark_dirty(conn);
    }

    /// Close with `code`: data queued before the close frame still goes out first.
    pub(crate) fn close_conn(&self, id: ConnId, code: CloseCode, reason: &str) {
        if let Some(conn) = self.conn(id) {
            self.close_gracefully(&conn, code, reason);
        }
    }

    fn close_gracefully(&self, conn: &Conn, code: CloseCode, reason: &str) {
        match conn.phase.get() {
            Phase::Open => {}
            Phase::Handshake => return conn.kill(),
            Phase::Closing | Phase::Dead => return,
        }
        let mut out = Vec::with_capacity(8 + reason.len());
        encode_close(Some(code), reason, &mut out);
        conn.queue.borrow_mut().push_data(Bytes::from(out));
        conn.close_sent.set(true);
        self.begin_close(conn, AfterFlush::Nothing);
    }

    /// Offer a published frame under the send-buffer bound; see [`Ctx::offer`].
    pub(crate) fn offer(
        &self,
        conn: &Conn,
        frame: Bytes,
        key: Option<ConflationKey>,
        policy: SlowPolicy,
    ) -> Result<Offer, SendError> {
        if conn.phase.get() != Phase::Open {
            return Err(SendError::Closed);
        }
        let verdict = conn
            .queue
            .borrow_mut()
            .offer(frame, key, self.set.send_bound, policy);
        match verdict {
            Offer::Queued => self.stats.messages_out.inc(),
            Offer::Conflated => self.stats.conflated.inc(),
            Offer::Dropped => {
                self.stats.dropped.inc();
                return Ok(verdict);
            }
            Offer::Disconnect => {
                self.stats.slow_disconnects.inc();
                tracing::debug!(worker = self.id, "closing slow consumer");
                self.close_discarding(conn, CloseCode::POLICY, "slow consumer");
                return Ok(verdict);
            }
        }
        self.account(conn);
        self.mark_dirty(conn);
        Ok(verdict)
    }

    /// Queue a reply whatever the bound; see [`Ctx::send_reply`].
    pub(crate) fn send_reply(&self, conn: &Conn, frame: Bytes) -> Result<(), SendError> {
        if conn.phase.get() != Phase::Open {
            return Err(SendError::Closed);
        }
        conn.queue.borrow_mut().push_data(frame);
        self.account(conn);
        self.mark_dirty(conn);
        Ok(())
    }

    /// Close with `code` ahead of every queued frame not yet started (which is discarded).
    pub(crate) fn close_discarding(&self, conn: &Conn, code: CloseCode, reason: &str) {
        if conn.phase.get() != Phase::Open {
            return;
        }
        let mut out = Vec::with_capacity(8 + reason.len());
        encode_close(Some(code), reason, &mut out);
        let mut q = conn.queue.borrow_mut();
        q.discard_data();
        q.push_control(Bytes::from(out));
        drop(q);
        conn.close_sent.set(true);
        self.account(conn);
        self.begin_close(conn, AfterFlush::Nothing);
    }

    /// Bring the worker's `queued_bytes` gauge up to date with this connection's queue.
    fn account(&self, conn: &Conn) {
        let now = conn.queue.borrow().queued_bytes();
        let before = conn.accounted.replace(now);
        if now != before {
            self.stats.queued_bytes.shift(now as i64 - before as i64);
        }
    }

    /// The end of a wake: let the handler poll its wakeup source, then write what is queued.
    pub(crate) fn end_of_wake(&self) {
        if self.wake_hook {
            self.handler.borrow_mut().on_wake(&mut Ctx { w: self });
        }
        self.flush_dirty();
        if self.wake_hook {
            self.handler.borrow_mut().after_flush(&mut Ctx { w: self });
        }
    }

    fn mark_dirty(&self, conn: &Conn) {
        if !conn.dirty.replace(true) {
            if let Some(rc) = self.conns.borrow().get(conn.key as usize) {
                self.dirty.borrow_mut().push(rc.clone());
            }
        }
    }

    /// Write out every connection that has queued frames: one vectored write each.
    pub(crate) fn flush_dirty(&self) {
        loop {
            let batch = std::mem::take(&mut *self.dirty.borrow_mut());
            if batch.is_empty() {
                return;
            }
            for conn in batch {
                conn.dirty.set(false);
                self.flush(&conn);
            }
        }
    }

    /// Write as much of the queue as the socket takes, in vectored writes of up to 64 frames.
    pub(crate) fn flush(&self, conn: &Conn) {
        if conn.write_blocked.get() || conn.phase.get() == Phase::Dead {
            return;
        }
        let was_paused = self.read_paused(conn);
        let mut q = conn.queue.borrow_mut();
        if let Some(tls) = conn.tls.as_deref() {
            let closing = conn.after_flush.get() != AfterFlush::Nothing;
            let (res, n) = tls.flush(conn.fd, &mut q, closing);
            self.stats.bytes_out.add(n as u64);
            drop(q);
            match res {
                TlsFlush::Done => q = conn.queue.borrow_mut(),
                TlsFlush::Blocked => {
                    conn.write_blocked.set(true);
                    conn.kick();
                    return self.account(conn);
                }
                TlsFlush::Stalled => return self.account(conn),
                TlsFlush::Failed => return conn.kill(),
            }
        }
        while !q.is_empty() {
            let res = {
                let mut slices = [IoSlice::new(&[]); MAX_IOV];
                let n = q.fill_slices(&mut slices);
                io::send_vectored(conn.fd, &slices[..n])
            };
            match res {
                Ok(n) => {
                    self.stats.bytes_out.add(n as u64);
                    q.advance(n);
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    conn.write_blocked.set(true);
                    conn.kick();
                    drop(q);
                    self.account(conn);
                    return;
                }
                Err(_) => {
                    conn.kill();
                    return;
                }
            }
        }
        drop(q);
        self.account(conn);
        if was_paused {
            // Its task stopped reading while the queue was over half the bound: resume.
            conn.kick();
        }
        match conn.after_flush.replace(AfterFlush::Nothing) {
            AfterFlush::Nothing => {}
            AfterFlush::ShutdownWrite => io::shutdown(conn.fd, Shutdown::Write),
            AfterFlush::Drop => conn.kill(),
        }
    }

    // ----- timers -----

    /// Run every timer due now: handshake and close deadlines, pings, silent peers.
    pub(crate) fn on_tick(&self, due: &mut Vec<(u32, u64)>) {
        let now = self.now();
        due.clear();
        self.wheel.borrow_mut().advance(now, due);
        for &(key, at) in due.iter() {
            let conn = match self.conns.borrow().get(key as usize) {
                Some(c) if c.timer_at.get() == at => c.clone(),
                _ => continue,
            };
            self.check_timers(&conn, now);
        }
        self.handler.borrow_mut().on_tick(&mut Ctx { w: self });
        self.end_of_wake();
    }

    fn check_timers(&self, conn: &Rc<Conn>, now: u64) {
        match conn.phase.get() {
            Phase::Dead => {}
            Phase::Handshake => {
                if now >= conn.deadline.get() {
                    self.stats.handshake_timeouts.inc();
                    conn.kill();
                } else {
                    self.schedule(conn, conn.deadline.get());
                }
            }
            Phase::Closing => {
                if now >= conn.deadline.get() {
                    self.stats.close_timeouts.inc();
                    conn.kill();
                } else {
                    self.schedule(conn, conn.deadline.get());
                }
            }
            Phase::Open => {
                let mut silent_until = conn.last_rx.get() + self.set.silent_ticks;
                if now >= silent_until && !conn.write_blocked.get() {
                    // An overloaded worker can reach this timer before the readiness event of
                    // a pong already in the socket: read what is there before judging.
                    self.on_readable(conn);
                    if conn.phase.get() != Phase::Open {
                        return;
                    }
                    silent_until = conn.last_rx.get() + self.set.silent_ticks;
                }
                if now >= silent_until {
                    self.stats.heartbeat_timeouts.inc();
                    tracing::debug!(worker = self.id, "closing silent connection");
                    let mut out = Vec::with_capacity(32);
                    encode_close(Some(CloseCode::GOING_AWAY), "heartbeat timeout", &mut out);
                    let mut q = conn.queue.borrow_mut();
                    q.discard_data();
                    q.push_control(Bytes::from(out));
                    drop(q);
                    conn.close_sent.set(true);
                    self.flush(conn);
                    conn.kill();
                    return;
                }
                // Ping only a connection we have not heard from for a whole interval: traffic
                // from the peer already proves it is alive.
                let heard = conn.last_rx.get().max(conn.last_ping.get());
                let mut next_ping = heard + self.set.ping_ticks;
                if now >= next_ping {
                    self.stats.pings_sent.inc();
                    self.push_control(conn, OpCode::Ping, b"");
                    self.flush(conn);
                    conn.last_ping.set(now);
                    next_ping = now + self.set.ping_ticks;
                }
                // A quiet moment: give the send queue's memory back if it is empty.
                conn.queue.borrow_mut().shrink();
                self.schedule(conn, next_ping.min(silent_until));
            }
        }
    }

    // ----- drain -----

    /// Send close 1001 to these open connections (handshaking ones are dropped).
    pub(crate) fn drain_some(&self, keys: &[(u32, u32)]) {
        for &(key, gen) in keys {
            let Some(conn) = self.conn(ConnId { key, gen }) else {
                continue;
            };
            match conn.phase.get() {
                Phase::Handshake => conn.kill(),
                Phase::Open => {
                    self.stats.drained.inc();
                    self.close_gracefully(&conn, CloseCode::GOING_AWAY, "server shutting down");
                }
                Phase::Closing | Phase::Dead => {}
            }
        }
        self.flush_dirty();
    }

    /// Every live connection's id.
    pub(crate) fn conn_ids(&self) -> Vec<(u32, u32)> {
        self.conns
            .borrow()
            .iter()
            .map(|(_, c)| (c.key, c.gen))
            .collect()
    }

    /// Drop every connection now.
    pub(crate) fn kill_all(&self) {
        for (_, c) in self.conns.borrow().iter() {
            c.kill();
        }
    }
}

fn encode_into(op: OpCode, payload: &[u8], out: &mut BytesMut) {
    let mut head = [0u8; 14];
    let n = crate::proto::encode_header(op, true, payload.len(), &mut head);
    out.extend_from_slice(&head[..n]);
    out.extend_from_slice(payload);
}

/// Encode a server data frame once, to be shared by many connections with
/// [`Ctx::send_frame`](super::Ctx::send_frame).
pub fn encode_shared(op: OpCode, payload: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(encoded_len(payload.len()));
    encode_frame(op, true, payload, &mut out);
    Bytes::from(out)
}

fn sockaddr_to_std(a: &nix::sys::socket::SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = a.as_sockaddr_in() {
        return Some(SocketAddr::from((v4.ip(), v4.port())));
    }
    a.as_sockaddr_in6()
        .map(|v6| SocketAddr::from((v6.ip(), v6.port())))
}

/// The worker's tasks: accept loop, timer loop, and the drain when the bell rings.
pub(crate) async fn main(w: Rc<WorkerInner>, listener: monoio::net::TcpListener, bell: Arc<Bell>) {
    let accept = monoio::spawn(accept_loop(w.clone(), listener, bell.clone()));
    let timers = monoio::spawn(timer_loop(w.clone()));
    let wakeup = w.wakeup.borrow_mut().take();
    let events = wakeup.map(|src| monoio::spawn(event_loop(w.clone(), src)));
    let window = bell.wait().await;
    w.draining.set(true);
    accept.await;
    drain(&w, window).await;
    drop(timers);
    drop(events);
}

async fn event_loop(w: Rc<WorkerInner>, src: Rc<dyn Wakeup>) {
    while src.clone().wait().await {
        w.end_of_wake();
    }
}

async fn accept_loop(w: Rc<WorkerInner>, listener: monoio::net::TcpListener, bell: Arc<Bell>) {
    let mut last_err = None::<Instant>;
    loop {
        let accepted = monoio::select! {
            r = listener.accept() => r,
            _ = bell.wait() => return,
        };
        match accepted {
            Ok((stream, addr)) => {
                if let Some(conn) = w.admit(&stream, addr) {
                    monoio::spawn(conn::run(w.clone(), stream, conn));
                }
            }
            Err(e) => {
                // EMFILE and friends: say so at most once a second, and back off briefly.
                if last_err.map_or(true, |t| t.elapsed() > Duration::from_secs(1)) {
                    tracing::warn!(worker = w.id, error = %e, "accept failed");
                    last_err = Some(Instant::now());
                }
                monoio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

async fn timer_loop(w: Rc<WorkerInner>) {
    let mut due = Vec::new();
    loop {
        monoio::time::sleep(TICK).await;
        w.stats.heartbeat_ms.set(super::stats::monotonic_ms());
        w.on_tick(&mut due);
    }
}

/// Close every connection with 1001 in batches spread over `window`, wait for the answers
/// (each connection has its own close deadline), then drop whatever is left.
async fn drain(w: &Rc<WorkerInner>, window: Duration) {
    let ids = w.conn_ids();
    let batches = (window.as_millis() / TICK.as_millis()).max(1) as usize;
    let per_batch = ids.len().div_ceil(batches).max(1);
    tracing::info!(worker = w.id, connections = ids.len(), ?window, "draining");
    let mut chunks = ids.chunks(per_batch).peekable();
    while let Some(chunk) = chunks.next() {
        w.drain_some(chunk);
        if chunks.peek().is_some() {
            monoio::time::sleep(TICK).await;
        }
    }
    // Each connection's close deadline (close_timeout) bounds this; the timer loop kills
    // connections past it. Allow one extra second for the kills to land.
    let limit = Instant::now() + TICK * (w.set.close_ticks as u32) + Duration::from_secs(1);
    while !w.conns.borrow().is_empty() && Instant::now() < limit {
        monoio::time::sleep(Duration::from_millis(20)).await;
    }
    w.kill_all();
    for _ in 0..50 {
        if w.conns.borrow().is_empty() {
            break;
        }
        monoio::time::sleep(Duration::from_millis(2)).await;
    }
}
