//! What a worker's connections and its handler share: the slab of connections, the settings,
//! the counters, the compressors, the timer wheel and the flush list; and the paths that
//! queue frames on a connection and write them to its socket.
//!
//! The handler reaches this through [`Ctx`](super::Ctx); the reading side and the
//! handler calls are in [`worker`](super::worker).

use std::{
    cell::{Cell, RefCell},
    io::IoSlice,
    rc::Rc,
    sync::{
        atomic::{AtomicUsize, Ordering::Relaxed},
        Arc,
    },
    time::{Duration, Instant},
};

use bytes::Bytes;
use nix::sys::socket::Shutdown;
use slab::Slab;

use super::{
    conn::{Conn, ConnId},
    io,
    stats::WorkerStats,
    timer::TimerWheel,
    tls::TlsFlush,
};
use crate::{
    config::Config,
    connection::{AfterFlush, ConnConfig, SendError, Tick},
    guard::Guard,
    proto::{
        deflate::{DeflatePolicy, DeflateSettings, SharedDeflate},
        handshake::HandshakeLimits,
        CloseCode, DecoderLimits, OpCode,
    },
    queue::{ConflationKey, Offer, SlowPolicy},
};

/// Timer resolution.
pub(crate) const TICK: Duration = Duration::from_millis(100);
/// Slices handed to one `sendmsg`.
const MAX_IOV: usize = 64;
/// Wheel size: 4096 ticks of 100 ms, about 6.8 minutes.
const WHEEL_SLOTS: usize = 4096;

fn ticks(d: Duration) -> u64 {
    let t = TICK.as_nanos();
    (d.as_nanos().div_ceil(t)).max(1) as u64
}

/// Settings a worker reads on the hot path, in its own units.
pub(crate) struct WorkerSettings {
    /// What every connection's state machine needs (limits, bound, timeouts in ticks).
    pub(crate) conn: ConnConfig,
    pub(crate) hs_limits: HandshakeLimits,
    pub(crate) limit: Arc<super::ConnLimit>,
    /// Bytes held for unfinished messages, process-wide.
    pub(crate) partial: Arc<PartialBudget>,
    pub(crate) guard: Arc<Guard>,
    pub(crate) subprotocols: Vec<String>,
    pub(crate) nodelay: bool,
    /// SO_SNDBUF for accepted sockets; 0 keeps the kernel's autotuning.
    pub(crate) socket_send_buffer: usize,
    /// The TLS config of a wss:// listener; `None` for plain ws://.
    pub(crate) tls: Option<Arc<rustls::ServerConfig>>,
    pub(crate) deflate: Option<DeflateSettings>,
}

impl WorkerSettings {
    pub(crate) fn new(
        cfg: &Config,
        limit: Arc<super::ConnLimit>,
        partial: Arc<PartialBudget>,
        guard: Arc<Guard>,
    ) -> Self {
        WorkerSettings {
            conn: ConnConfig {
                limits: DecoderLimits {
                    max_frame: cfg.max_frame_bytes,
                    max_message: cfg.max_message_bytes,
                },
                send_bound: cfg.send_buffer_bytes,
                ping_ticks: ticks(cfg.ping_interval),
                silent_ticks: ticks(cfg.ping_interval + cfg.pong_timeout),
                handshake_ticks: ticks(cfg.handshake_timeout),
                close_ticks: ticks(cfg.close_timeout),
                message_ticks: ticks(cfg.message_timeout),
            },
            hs_limits: HandshakeLimits {
                max_head_bytes: cfg.max_handshake_bytes,
            },
            limit,
            partial,
            guard,
            subprotocols: cfg.subprotocols.clone(),
            nodelay: cfg.tcp_nodelay,
            socket_send_buffer: cfg.socket_send_buffer,
            tls: None,
            deflate: cfg.permessage_deflate.then_some(DeflateSettings {
                policy: DeflatePolicy {
                    client_no_context_takeover: cfg.deflate_client_no_context_takeover,
                    client_max_window_bits: cfg.deflate_client_max_window_bits,
                },
                threshold: cfg.deflate_threshold,
                level: cfg.deflate_level,
            }),
        }
    }
}

/// The bytes all connections of a process hold for messages they have not received whole
/// (tail and fragment buffers), against `partial_message_budget`.
pub(crate) struct PartialBudget {
    limit: usize,
    held: AtomicUsize,
}

impl PartialBudget {
    pub(crate) fn new(limit: usize) -> Self {
        PartialBudget {
            limit,
            held: AtomicUsize::new(0),
        }
    }

    /// One connection's share went from `before` to `now` bytes; `true` when it grew and the
    /// process is now over the budget. Touched only when a message is cut by a read, not per
    /// message.
    pub(crate) fn shift(&self, before: usize, now: usize) -> bool {
        if now > before {
            let grown = now - before;
            self.held.fetch_add(grown, Relaxed) + grown > self.limit
        } else {
            self.held.fetch_sub(before - now, Relaxed);
            false
        }
    }
}

/// The part of a worker its handler may use (see the module documentation).
pub(crate) struct WorkerCore {
    pub(crate) id: usize,
    pub(crate) set: WorkerSettings,
    pub(crate) conns: RefCell<Slab<Rc<Conn>>>,
    pub(crate) stats: Arc<WorkerStats>,
    pub(crate) deflate: SharedDeflate,
    wheel: RefCell<TimerWheel>,
    epoch: Instant,
    /// The tick read at the start of the current wake: one clock read per wake, not one per
    /// message or per subscriber (a tick is 100 ms).
    tick: Cell<Tick>,
    dirty: RefCell<Vec<Rc<Conn>>>,
}

impl WorkerCore {
    pub(crate) fn new(id: usize, set: WorkerSettings, stats: Arc<WorkerStats>) -> Self {
        WorkerCore {
            id,
            deflate: SharedDeflate::new(set.deflate),
            set,
            conns: RefCell::new(Slab::new()),
            stats,
            wheel: RefCell::new(TimerWheel::new(WHEEL_SLOTS)),
            epoch: Instant::now(),
            tick: Cell::new(0),
            dirty: RefCell::new(Vec::new()),
        }
    }

    /// The current timer tick, as read at the start of this wake.
    pub(crate) fn now(&self) -> Tick {
        self.tick.get()
    }

    /// Read the clock: called once at the start of every wake (a readiness event, a timer
    /// tick, an accept, the handler's wakeup source).
    pub(crate) fn refresh_clock(&self) -> Tick {
        let now = (self.epoch.elapsed().as_nanos() / TICK.as_nanos()) as u64;
        self.tick.set(now);
        now
    }

    /// The connection behind `id`, if it still exists.
    pub(crate) fn conn(&self, id: ConnId) -> Option<Rc<Conn>> {
        let conns = self.conns.borrow();
        conns
            .get(id.key as usize)
            .filter(|c| c.gen == id.gen)
            .cloned()
    }

    /// The connections whose timer entries are due at `now`, each once.
    pub(crate) fn due(&self, now: Tick, due: &mut Vec<(u32, u64)>) -> Vec<Rc<Conn>> {
        due.clear();
        self.wheel.borrow_mut().advance(now, due);
        let conns = self.conns.borrow();
        due.iter()
            .filter_map(|&(key, at)| conns.get(key as usize).filter(|c| c.timer_at.get() == at))
            .cloned()
            .collect()
    }

    /// After the state machine changed: drop a dead connection's socket (wake its task),
    /// queue a flush for new output, and move the timer earlier if its deadline did.
    pub(crate) fn settle(&self, conn: &Conn) {
        let st = conn.state();
        if st.is_dead() {
            drop(st);
            return conn.kick();
        }
        let (output, next) = (st.has_output(), st.next_timeout(&self.set.conn));
        drop(st);
        if output {
            self.mark_dirty(conn);
        }
        if let Some(at) = next.filter(|&t| t < conn.timer_at.get()) {
            self.schedule(conn, at);
        }
    }

    /// Put the connection's timer at `tick` (an older entry becomes stale).
    pub(crate) fn schedule(&self, conn: &Conn, tick: Tick) {
        let at = self.wheel.borrow_mut().schedule(conn.key, tick);
        conn.timer_at.set(at);
    }

    // ----- sending (through `Ctx`) -----

    /// Queue a message, compressed for this connection when it negotiated deflate.
    pub(crate) fn send_data(
        &self,
        id: ConnId,
        op: OpCode,
        payload: &[u8],
    ) -> Result<(), SendError> {
        let conn = self.conn(id).ok_or(SendError::Closed)?;
        let window = {
            let st = conn.state();
            st.can_send(&self.set.conn)?;
            st.deflate_window()
        };
        let frame = match window.and_then(|bits| self.deflate.compress_frame(op, payload, bits)) {
            Some(z) => {
                self.stats.messages_deflated.inc();
                z
            }
            None => crate::proto::encode_frame_bytes(op, payload),
        };
        self.send_frame(&conn, frame)
    }

    /// Queue an encoded frame, refused when closed or over the bound.
    pub(crate) fn send_frame(&self, conn: &Conn, frame: Bytes) -> Result<(), SendError> {
        conn.state_mut().send(frame, &self.set.conn)?;
        self.stats.messages_out.inc();
        self.mark_dirty(conn);
        Ok(())
    }

    /// Offer a published frame under the send-buffer bound; see [`Ctx::offer`](super::Ctx::offer).
    pub(crate) fn offer(
        &self,
        conn: &Conn,
        frame: Bytes,
        key: Option<ConflationKey>,
        policy: SlowPolicy,
    ) -> Result<Offer, SendError> {
        let verdict = conn
            .state_mut()
            .offer(frame, key, policy, &self.set.conn, self.now())?;
        match verdict {
            Offer::Queued => self.stats.messages_out.inc(),
            Offer::Conflated => self.stats.conflated.inc(),
            Offer::Dropped => self.stats.dropped.inc(),
            Offer::Disconnect => {
                self.stats.slow_disconnects.inc();
                tracing::debug!(worker = self.id, "closing slow consumer");
            }
        }
        match verdict {
            Offer::Dropped => {}
            Offer::Queued | Offer::Conflated => {
                self.account(conn);
                self.mark_dirty(conn);
            }
            // Closing: its close deadline may be earlier than its timer.
            Offer::Disconnect => {
                self.account(conn);
                self.settle(conn);
            }
        }
        Ok(verdict)
    }

    /// Queue a reply whatever the bound; see [`Ctx::send_reply`](super::Ctx::send_reply).
    pub(crate) fn send_reply(&self, conn: &Conn, frame: Bytes) -> Result<(), SendError> {
        conn.state_mut().send_reply(frame)?;
        self.account(conn);
        self.mark_dirty(conn);
        Ok(())
    }

    /// Close with `code` behind the data already queued.
    pub(crate) fn close(&self, conn: &Conn, code: CloseCode, reason: &str) {
        conn.state_mut()
            .close(code, reason, &self.set.conn, self.now());
        self.settle(conn);
    }

    /// Close with `code` ahead of every queued frame not yet started (which is discarded).
    pub(crate) fn close_now(&self, conn: &Conn, code: CloseCode, reason: &str) {
        conn.state_mut()
            .close_now(code, reason, &self.set.conn, self.now());
        self.account(conn);
        self.settle(conn);
    }

    /// Bring the worker's `queued_bytes` gauge up to date with this connection's queue.
    pub(crate) fn account(&self, conn: &Conn) {
        let now = conn.state().queued_bytes();
        let before = conn.accounted.replace(now);
        if now != before {
            self.stats.queued_bytes.shift(now as i64 - before as i64);
        }
    }

    // ----- writing -----

    pub(crate) fn mark_dirty(&self, conn: &Conn) {
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
        if conn.write_blocked.get() || conn.is_dead() {
            return;
        }
        let mut st = conn.state_mut();
        let was_paused = st.read_paused(&self.set.conn);
        if let Some(tls) = conn.tls.as_deref() {
            let closing = st.ends_after_flush();
            let (res, n) = tls.flush(conn.fd, st.queue_mut(), closing);
            self.stats.bytes_out.add(n as u64);
            match res {
                TlsFlush::Done => {}
                TlsFlush::Blocked => {
                    drop(st);
                    conn.write_blocked.set(true);
                    conn.kick();
                    return self.account(conn);
                }
                TlsFlush::Stalled => {
                    drop(st);
                    return self.account(conn);
                }
                TlsFlush::Failed => {
                    drop(st);
                    return conn.kill();
                }
            }
        }
        while st.has_output() {
            let res = {
                let mut slices = [IoSlice::new(&[]); MAX_IOV];
                let n = st.transmit(&mut slices);
                io::send_vectored(conn.fd, &slices[..n])
            };
            match res {
                Ok(n) => {
                    self.stats.bytes_out.add(n as u64);
                    st.sent(n);
                }
                Err(e) => {
                    drop(st);
                    if e.kind() == std::io::ErrorKind::WouldBlock {
                        conn.write_blocked.set(true);
                        conn.kick();
                        self.account(conn);
                    } else {
                        conn.kill();
                    }
                    return;
                }
            }
        }
        let after = st.flushed();
        drop(st);
        self.account(conn);
        // A task that stopped reading at half the bound resumes; a dead one drops its socket.
        if was_paused || after == AfterFlush::Drop {
            conn.kick();
        }
        if after == AfterFlush::ShutdownWrite {
            io::shutdown(conn.fd, Shutdown::Write);
        }
    }
}
