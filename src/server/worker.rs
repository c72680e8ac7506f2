//! A worker: one OS thread, one monoio runtime, one SO_REUSEPORT listener, one slab of
//! connections, one timer wheel. Nothing here is shared with other workers except the
//! counters (single-writer) and the shutdown bell.
//!
//! This file is the glue between sockets and the connection state machines: admit a socket,
//! read into the worker's buffer and feed the bytes to the connection's
//! [`Connection`](crate::connection::Connection), hand what comes out to the [`Handler`],
//! and run the timers. Protocol decisions are in `crate::connection`; admission in
//! [`accept`](super::accept); the send and write paths in [`core`](super::core); the async
//! tasks in [`tasks`](super::tasks).

use std::{
    cell::{Cell, RefCell},
    net::SocketAddr,
    rc::Rc,
    sync::Arc,
};

use super::{
    conn::{Conn, ConnId},
    core::{WorkerCore, WorkerSettings},
    handler::{Ctx, Handler, HandshakeHook, HookDecision, OpenInfo, Wakeup},
    io,
    stats::WorkerStats,
    tls::{TlsConn, TlsRead},
};
use crate::{
    connection::{Failure, Phase, Read, Timeout, Workspace},
    proto::{handshake, CloseCode},
};

/// The shared read buffer of a worker.
const SCRATCH_BYTES: usize = 64 * 1024;

/// A worker's state, owned by its thread.
pub(crate) struct Worker {
    /// What the handler may use too (connections, settings, counters, the write path).
    pub(crate) core: WorkerCore,
    handler: RefCell<Box<dyn Handler>>,
    hook: Option<Arc<dyn HandshakeHook>>,
    /// The read buffer and the message workspace every connection of this worker borrows.
    scratch: RefCell<Vec<u8>>,
    ws: RefCell<Workspace>,
    pub(super) next_gen: Cell<u32>,
    pub(crate) draining: Cell<bool>,
    /// The handler's wakeup source, taken by the worker's main task at start.
    pub(crate) wakeup: RefCell<Option<Rc<dyn Wakeup>>>,
    /// The handler asked for `on_wake` at the end of every wake.
    wake_hook: bool,
    /// Refused connections still sending their HTTP answer (see `refuse_at_accept`).
    pub(super) refusing: Cell<usize>,
}

impl Worker {
    pub(crate) fn new(
        id: usize,
        set: WorkerSettings,
        mut handler: Box<dyn Handler>,
        hook: Option<Arc<dyn HandshakeHook>>,
        stats: Arc<WorkerStats>,
    ) -> Self {
        let wakeup = handler.wakeup();
        Worker {
            core: WorkerCore::new(id, set, stats),
            wake_hook: wakeup.is_some(),
            wakeup: RefCell::new(wakeup),
            handler: RefCell::new(handler),
            hook,
            scratch: RefCell::new(vec![0; SCRATCH_BYTES]),
            ws: RefCell::new(Workspace::default()),
            next_gen: Cell::new(0),
            draining: Cell::new(false),
            refusing: Cell::new(0),
        }
    }

    fn ctx(&self) -> Ctx<'_> {
        Ctx { w: &self.core }
    }

    /// Remove a finished connection and tell the handler.
    pub(crate) fn finish(&self, conn: &Rc<Conn>) {
        let (core, stats) = (&self.core, &self.core.stats);
        if let Some(tls) = conn.tls.as_deref() {
            stats.bytes_out.add(tls.goodbye(conn.fd) as u64);
        }
        if core
            .conns
            .borrow_mut()
            .try_remove(conn.key as usize)
            .is_some()
        {
            if conn.counted.get() {
                core.set.limit.release();
            } else {
                self.refusing.set(self.refusing.get().saturating_sub(1));
            }
        }
        // Per-IP and per-user counts go back now, whoever still holds the `Conn`.
        drop(conn.admission.borrow_mut().take());
        stats.connections.dec();
        stats.closed.inc();
        stats
            .queued_bytes
            .shift(-(conn.accounted.replace(0) as i64));
        let (opened, code) = {
            // Handlers may hold the `Conn` a while longer: its buffers go now.
            let mut st = conn.state_mut();
            st.release();
            (st.opened(), st.peer_code())
        };
        if opened {
            self.handler
                .borrow_mut()
                .on_close(&mut self.ctx(), conn.id(), code);
        }
    }

    // ----- reading -----

    /// The socket is readable: read until it is drained (or our queue is over its bound).
    pub(crate) fn on_readable(&self, conn: &Rc<Conn>) {
        if let Some(tls) = conn.tls.as_deref() {
            return self.on_readable_tls(conn, tls);
        }
        let mut scratch = self.scratch.borrow_mut();
        while !conn.is_dead() {
            let n = match io::recv(conn.fd, &mut scratch) {
                Ok(0) => return conn.kill(),
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
                Err(_) => return conn.kill(),
            };
            self.core.stats.bytes_in.add(n as u64);
            self.consume(conn, &mut scratch[..n]);
            if n < scratch.len() || conn.state().read_paused(&self.core.set.conn) {
                return;
            }
        }
    }

    /// The TLS socket is readable: decrypt until it is drained (or our queue is over its
    /// bound), feeding the plaintext through [`Self::consume`]. See `tls.rs`.
    fn on_readable_tls(&self, conn: &Rc<Conn>, tls: &TlsConn) {
        let mut scratch = self.scratch.borrow_mut();
        while !conn.is_dead() {
            let (res, cipher) = tls.read(conn.fd, &mut scratch);
            if cipher > 0 {
                self.core.stats.bytes_in.add(cipher as u64);
                conn.state_mut().received(self.core.now());
            }
            if tls.wants_write() {
                self.core.mark_dirty(conn); // handshake messages (or an alert) to send
            }
            match res {
                TlsRead::Data(n) => self.consume(conn, &mut scratch[..n]),
                TlsRead::Blocked => return,
                TlsRead::Closed => return conn.kill(),
                TlsRead::Failed(e) => {
                    let counter = if conn.state().opened() {
                        &self.core.stats.closed_tls
                    } else {
                        &self.core.stats.rejected_tls
                    };
                    counter.inc();
                    tracing::debug!(worker = self.core.id, error = %e, "dropping TLS connection");
                    // Our alert, if rustls queued one, goes out before the socket closes.
                    self.core.flush(conn);
                    return conn.kill();
                }
            }
            if conn.state().read_paused(&self.core.set.conn) {
                return;
            }
        }
    }

    /// Feed plaintext through the connection, keeping an unfinished tail in it.
    fn consume(&self, conn: &Rc<Conn>, data: &mut [u8]) {
        let (cfg, now) = (&self.core.set.conn, self.core.now());
        let mut tail = {
            let mut st = conn.state_mut();
            st.received(now);
            st.take_tail()
        };
        if tail.is_empty() {
            let used = self.process(conn, data);
            conn.state_mut().keep_tail(&data[used..], cfg, now);
        } else {
            tail.extend_from_slice(data);
            let used = self.process(conn, &mut tail);
            conn.state_mut().restore_tail(tail, used, cfg, now);
        }
        self.account_partial(conn);
        self.core.settle(conn);
    }

    /// Feed `buf` through the handshake or the frame decoder, handing each message to the
    /// handler; returns the bytes consumed. The connection is not borrowed while the
    /// handler runs (it may send to this very connection).
    fn process(&self, conn: &Rc<Conn>, buf: &mut [u8]) -> usize {
        let (cfg, now) = (&self.core.set.conn, self.core.now());
        let mut ws = self.ws.borrow_mut();
        let mut off = 0;
        while off < buf.len() {
            let mut st = conn.state_mut();
            if st.phase() == Phase::Handshake {
                drop(st);
                match self.handshake(conn, &buf[off..]) {
                    Some(used) => off += used,
                    None => break,
                }
                continue;
            }
            let read = st.read(&mut buf[off..], &mut ws, cfg, now);
            let inflated = st.last_message_inflated();
            drop(st); // the handler may send to this connection
            match read {
                Read::Done(used) => {
                    off += used;
                    break;
                }
                Read::Message(used, msg) => {
                    off += used;
                    self.core.stats.messages_in.inc();
                    if inflated {
                        self.core.stats.messages_inflated.inc();
                    }
                    self.handler
                        .borrow_mut()
                        .on_message(&mut self.ctx(), conn.id(), msg);
                }
            }
        }
        ws.trim();
        self.count_failure(conn);
        off
    }

    fn count_failure(&self, conn: &Conn) {
        let Some(failure) = conn.state_mut().take_failure() else {
            return;
        };
        let stats = &self.core.stats;
        match failure {
            Failure::Protocol(_) => stats.protocol_errors.inc(),
            Failure::InflateLimit => stats.closed_inflate_limit.inc(),
            Failure::InflateCorrupt => stats.closed_inflate_error.inc(),
            Failure::MessageTimeout => stats.closed_message_timeout.inc(),
            Failure::OverBudget => stats.closed_message_budget.inc(),
        }
        let (worker, reason) = (self.core.id, failure.label());
        tracing::debug!(worker, reason, "closing on a failed message");
    }

    /// Bring the process-wide count of bytes held for unfinished messages up to date with
    /// this connection; if that takes the process past its budget, close this connection
    /// (1013) and give its bytes back.
    fn account_partial(&self, conn: &Conn) {
        let held = conn.state().partial_bytes();
        let before = conn.partial.replace(held);
        if held == before {
            return;
        }
        self.core
            .stats
            .partial_bytes
            .shift(held as i64 - before as i64);
        if self.core.set.partial.shift(before, held) {
            let (cfg, now) = (&self.core.set.conn, self.core.now());
            conn.state_mut().close_over_budget(cfg, now);
            self.count_failure(conn);
            self.account_partial(conn);
        }
    }

    /// Parse the upgrade request, decide (guard, hook, subprotocol, deflate), and answer it;
    /// returns the bytes consumed, `None` when the request is incomplete.
    fn handshake(&self, conn: &Rc<Conn>, buf: &[u8]) -> Option<usize> {
        let (core, set) = (&self.core, &self.core.set);
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let parsed =
            conn.state_mut()
                .read_request(buf, &mut headers, &set.hs_limits, &set.conn, core.now());
        let (req, used) = match parsed {
            Ok(None) => return None,
            Ok(Some(parsed)) => parsed,
            Err(e) => {
                // Answered with an HTTP error by the connection.
                core.stats.handshake_rejected.inc();
                tracing::debug!(worker = core.id, reason = e.label(), "handshake rejected");
                return Some(buf.len());
            }
        };
        let peer = nix::sys::socket::getpeername::<nix::sys::socket::SockaddrStorage>(conn.fd)
            .ok()
            .and_then(|a| sockaddr_to_std(&a))
            .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)));
        let admitted = match set.guard.on_handshake(&req) {
            Ok(a) => a,
            Err(why) => {
                self.count_refusal(why);
                tracing::debug!(worker = core.id, reason = why.reason(), "handshake refused");
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
        let protocol = handshake::select_protocol(req.protocols(), &set.subprotocols);
        let pmd = core.deflate.negotiate(&req);
        if pmd.is_some() {
            core.stats.deflate_negotiated.inc();
        }
        conn.state_mut().accept(req.key, protocol, pmd, core.now());
        // Answer now and hand the queue's memory back: most connections then sit idle.
        core.flush(conn);
        conn.state_mut().shrink();
        core.settle(conn);
        core.stats.opened.inc();
        let info = OpenInfo {
            peer,
            path: req.path,
            query: req.query,
            origin: req.origin,
            protocol,
            identity: identity.as_ref(),
        };
        self.handler
            .borrow_mut()
            .on_open(&mut self.ctx(), conn.id(), &info);
        Some(used)
    }

    /// Answer the upgrade request with an HTTP error and close.
    pub(super) fn reject(&self, conn: &Conn, status: u16, reason: &str) {
        self.core.stats.handshake_rejected.inc();
        conn.state_mut()
            .reject(status, reason, &self.core.set.conn, self.core.now());
        self.core.settle(conn);
    }

    // ----- the end of a wake -----

    /// Let the handler poll its wakeup source, then write what is queued.
    pub(crate) fn end_of_wake(&self) {
        if self.wake_hook {
            self.handler.borrow_mut().on_wake(&mut self.ctx());
        }
        self.core.flush_dirty();
        if self.wake_hook {
            self.handler.borrow_mut().after_flush(&mut self.ctx());
        }
    }

    // ----- timers -----

    /// Run every timer due now: handshake and close deadlines, pings, silent peers.
    pub(crate) fn on_tick(&self, due: &mut Vec<(u32, u64)>) {
        let now = self.core.refresh_clock();
        for conn in self.core.due(now, due) {
            self.on_timer(&conn, now);
        }
        self.handler.borrow_mut().on_tick(&mut self.ctx());
        self.end_of_wake();
    }

    fn on_timer(&self, conn: &Rc<Conn>, now: u64) {
        let (core, cfg, stats) = (&self.core, &self.core.set.conn, &self.core.stats);
        if conn.state().is_silent(cfg, now) && !conn.write_blocked.get() {
            // An overloaded worker can reach this timer before the readiness event of a pong
            // already in the socket: read what is there before judging.
            self.on_readable(conn);
        }
        let timeout = conn.state_mut().on_timeout(cfg, now);
        match timeout {
            Timeout::Nothing => {}
            Timeout::Message => {
                self.count_failure(conn);
                self.account_partial(conn);
            }
            Timeout::Handshake => stats.handshake_timeouts.inc(),
            Timeout::Close => stats.close_timeouts.inc(),
            Timeout::Heartbeat => {
                stats.heartbeat_timeouts.inc();
                tracing::debug!(worker = core.id, "closing silent connection");
                core.flush(conn);
                conn.kill();
            }
            Timeout::Ping => {
                stats.pings_sent.inc();
                core.flush(conn);
            }
        }
        if conn.state().is_open() {
            // A quiet moment: give the send queue's memory back if it is empty.
            conn.state_mut().shrink();
        }
        conn.timer_at.set(u64::MAX);
        core.settle(conn);
    }

    // ----- drain -----

    /// Send close 1001 to these open connections (handshaking ones are dropped).
    pub(crate) fn drain_some(&self, keys: &[ConnId]) {
        for &id in keys {
            let Some(conn) = self.core.conn(id) else {
                continue;
            };
            if conn.state().is_open() {
                self.core.stats.drained.inc();
            }
            self.core
                .close(&conn, CloseCode::GOING_AWAY, "server shutting down");
        }
        self.core.flush_dirty();
    }

    /// Every live connection's id.
    pub(crate) fn conn_ids(&self) -> Vec<ConnId> {
        self.core
            .conns
            .borrow()
            .iter()
            .map(|(_, c)| c.id())
            .collect()
    }

    /// Drop every connection now.
    pub(crate) fn kill_all(&self) {
        for (_, c) in self.core.conns.borrow().iter() {
            c.kill();
        }
    }
}

fn sockaddr_to_std(a: &nix::sys::socket::SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = a.as_sockaddr_in() {
        return Some(SocketAddr::from((v4.ip(), v4.port())));
    }
    a.as_sockaddr_in6()
        .map(|v6| SocketAddr::from((v6.ip(), v6.port())))
}
