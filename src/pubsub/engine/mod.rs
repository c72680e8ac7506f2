//! The pub/sub engine of one worker: its topic table, its connections' subscriptions, and the
//! items it exchanges with other workers.
//!
//! **Who decides the order.** Every topic has one owner worker, `fnv1a(name) % workers`. Only
//! the owner assigns the topic's sequence numbers, stamps `ts`, keeps its history and encodes
//! each message once per encoding. A `pub` received on another worker is copied once into a
//! `Bytes` and sent to the owner; the owner fans the encoded frames out to its own
//! subscribers (a reference count each) and sends one `Deliver` item to each other worker
//! that has subscribers, which fans out to its own. Each producer-to-worker channel is FIFO,
//! so every worker sees a topic's messages in the owner's order, and a subscriber's `subbed`
//! reply (sent by the owner through the same channel) splits the stream exactly: everything
//! before it is history, everything after it is live. See `docs/pubsub.md`.
//!
//! **Time.** The engine never reads the clock or touches a socket: it sends through an
//! [`Outbox`] (the worker's [`Ctx`](crate::server::Ctx), or a fake in tests) and every
//! entry point that needs the wall-clock time is handed a [`Time`]. Coarse ages (history,
//! strikes, rate buckets) count the 100 ms ticks of `Engine::on_tick`.
//!
//! - `mod.rs`: [`Settings`], topic ownership, the `Engine` and its entry points;
//! - `topics`: the topic table and the fan-out of one message to local subscribers;
//! - `owner`: what the owner of a topic does (seq, history, resume, remote workers);
//! - `client`: a connection's subscriptions and its `sub`, `unsub` and `pub` ops;
//! - `mesh`: the items workers exchange and their handling;
//! - `access`: permissions, rate limits, token expiry and the `auth` op;
//! - `outbox`: the [`Outbox`], [`Link`] and [`Time`] the engine is generic over;
//! - `handler`: [`PubSub`], the server [`Handler`](crate::server::Handler) around it.

mod access;
mod client;
mod handler;
mod mesh;
mod outbox;
mod owner;
mod topics;

#[cfg(test)]
mod tests;

pub use access::{RateSettings, RATE_DROPS_BEFORE_CLOSE};
pub use handler::PubSub;
pub(crate) use mesh::{Item, PubReq, Reply};
pub use outbox::{Link, Outbox, Time};

use std::{
    collections::{HashMap, VecDeque},
    hash::RandomState,
    rc::Rc,
    sync::Arc,
};

use slab::Slab;

use self::{
    client::{ConnState, SubState},
    topics::Topic,
};
use super::{
    frames,
    stats::WorkerPubSubStats,
    wire::{self, Encoding, Id},
};
use crate::{
    fanout::{Backlog, Inbox, Outboxes},
    queue::SlowPolicy,
    server::{ConnId, Message, OpenInfo},
};

/// A topic entry in a worker's table: slot and generation (a stale reference to a slot that
/// was reused never reaches the new topic).
pub(crate) type TopicRef = (u32, u32);

/// Subscriptions one connection may hold by default (`max_subscriptions`).
pub const MAX_SUBSCRIPTIONS_PER_CONN: usize = 4096;
/// Refused messages within [`STRIKE_WINDOW_TICKS`] after which a connection is closed (1008).
pub const MAX_STRIKES: u32 = 10;
/// The window for [`MAX_STRIKES`]: 10 s of 100 ms ticks.
const STRIKE_WINDOW_TICKS: u64 = 100;
/// Items taken from the inbox per batch.
const BATCH: usize = 256;
/// Items handled per wake at most (then the worker serves its sockets again).
const MAX_ITEMS_PER_WAKE: usize = 64 * 1024;
/// Items a worker holds back for another whose inbox is full, before it starts losing them.
pub(crate) const BACKLOG_LIMIT: usize = 1 << 20;
/// Ticks between sweeps of idle topics (1 s).
const SWEEP_TICKS: u64 = 10;

/// Settings of the pub/sub layer, shared by every worker.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Messages kept per topic for resume.
    pub history_len: usize,
    /// Age limit of history entries, in 100 ms ticks.
    pub history_max_age_ticks: u64,
    /// Bytes one topic's history may be charged (see [`crate::pubsub::history`]).
    pub history_topic_bytes: usize,
    /// Bytes all histories of the process may be charged; each worker gets an equal share
    /// for the topics it owns.
    pub history_bytes: usize,
    /// Topics the process may know; each worker gets an equal share of its topic table, and
    /// refuses a `sub` or `pub` that would add a topic beyond it (`too_many_topics`).
    pub max_topics: usize,
    /// Policy of topics not matched by `drop_topics`.
    pub default_policy: SlowPolicy,
    /// Topic patterns that use [`SlowPolicy::Drop`]: exact names, or prefixes (`md.`) when
    /// the pattern ended in `.*`.
    pub drop_topics: Vec<(String, bool)>,
    /// Subscriptions one connection may hold.
    pub max_subscriptions: usize,
    /// Inbound message and byte rate limits per connection.
    pub rate: RateSettings,
    /// Connections carry identities whose topic patterns are checked on `sub` and `pub`
    /// (when false, the checks are skipped without a lookup).
    pub auth_required: bool,
}

impl Settings {
    /// The slow-consumer policy of topic `name`.
    pub fn policy_for(&self, name: &str) -> SlowPolicy {
        let drop = self.drop_topics.iter().any(|(p, prefix)| {
            if *prefix {
                name.starts_with(p.as_str())
            } else {
                name == p
            }
        });
        if drop {
            SlowPolicy::Drop
        } else {
            self.default_policy
        }
    }
}

/// The worker that owns topic `name`.
pub fn owner_of(name: &str, workers: usize) -> usize {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in name.as_bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    (h % workers as u64) as usize
}

/// The pub/sub engine of one worker, generic over the handle `C` it keeps per connection
/// (see [`Outbox`]). It never reads the clock: the entry points that need the time take it.
pub(crate) struct Engine<C> {
    me: u32,
    workers: usize,
    set: Arc<Settings>,
    inbox: Rc<Inbox<Item>>,
    mesh: Outboxes<Item>,
    backlog: Backlog<Item>,
    topics: Slab<Topic<C>>,
    by_name: HashMap<Arc<str>, usize>,
    next_gen: u32,
    conns: HashMap<u32, ConnState<C>>,
    key_hasher: RandomState,
    stats: Arc<WorkerPubSubStats>,
    batch: Vec<Item>,
    tick: u64,
    /// Owner stamps of the messages fanned out to local subscribers in this wake, measured
    /// when the worker has written them out ([`Engine::record_latency`]).
    written: Vec<u64>,
    expiry: access::ExpiryQueue,
    /// What the histories of the topics this worker owns keep, and their bound.
    history: HistoryBudget,
    /// Topics this worker's table may hold (its share of `max_topics`).
    topic_cap: usize,
}

/// A worker's share of the process-wide history budget: the charges of the histories of the
/// topics it owns, summed, and a record of (topic, seq) per entry kept, oldest first, so that
/// going over the budget evicts the oldest entries of any topic first.
///
/// The record costs 16 bytes per entry; records of entries that left for another reason
/// (count, age, the topic's own budget) are skipped when popped, and dropped in one pass
/// whenever they outnumber the entries kept (amortised O(1) per push), so it holds at most
/// about two records per entry (counted in [`ENTRY_OVERHEAD`](crate::pubsub::history::ENTRY_OVERHEAD)).
#[derive(Debug, Default)]
pub(super) struct HistoryBudget {
    /// Bytes this worker's histories may be charged.
    pub(super) limit: usize,
    /// Bytes charged now.
    pub(super) bytes: usize,
    /// Entries kept now.
    pub(super) entries: usize,
    /// (topic, seq) of entries, in the order they were pushed.
    pub(super) order: VecDeque<(TopicRef, u64)>,
}

impl<C: Link> Engine<C> {
    /// The engine of worker `me` of `workers`.
    pub(crate) fn new(
        me: usize,
        workers: usize,
        set: Arc<Settings>,
        inbox: Rc<Inbox<Item>>,
        mesh: Outboxes<Item>,
        stats: Arc<WorkerPubSubStats>,
    ) -> Self {
        Engine {
            me: me as u32,
            workers,
            inbox,
            mesh,
            backlog: Backlog::new(workers, BACKLOG_LIMIT),
            topics: Slab::new(),
            by_name: HashMap::new(),
            next_gen: 0,
            conns: HashMap::new(),
            key_hasher: RandomState::new(),
            stats,
            batch: Vec::with_capacity(BATCH),
            tick: 0,
            written: Vec::new(),
            expiry: access::ExpiryQueue::default(),
            history: HistoryBudget {
                limit: (set.history_bytes / workers.max(1)).max(1),
                ..HistoryBudget::default()
            },
            topic_cap: set.max_topics.div_ceil(workers.max(1)).max(1),
            set,
        }
    }
}

/// The entry points: the [`Handler`](crate::server::Handler) callbacks, with the time
/// passed in by the caller.
impl<C: Link> Engine<C> {
    /// A connection completed its handshake.
    pub(crate) fn on_open<O: Outbox<Conn = C>>(
        &mut self,
        out: &mut O,
        conn: ConnId,
        info: &OpenInfo<'_>,
    ) {
        let Some(c) = out.conn(conn) else { return };
        let enc = Encoding::from_subprotocol(info.protocol).unwrap_or(Encoding::Json);
        let identity = info.identity.cloned();
        let access = access::Access::new(identity, out.token_leeway(), &self.set.rate, self.tick);
        let st = ConnState {
            gen: conn.gen,
            conn: c,
            enc,
            subs: Vec::new(),
            strikes: 0,
            strike_tick: self.tick,
            access,
        };
        self.track_expiry(conn, &st);
        self.conns.insert(conn.key, st);
    }

    /// A message from `conn` arrived at `now` (the stamp of a message it publishes here).
    pub(crate) fn on_message<O: Outbox<Conn = C>>(
        &mut self,
        out: &mut O,
        now: Time,
        conn: ConnId,
        msg: Message<'_>,
    ) {
        let Some(enc) = self.conn_state(conn).map(|s| s.enc) else {
            return;
        };
        if !self.admit_message(out, conn, &msg) {
            return;
        }
        let (op, err_id) = match msg {
            Message::Text(t) => match enc.decode_text_frame(t) {
                Ok(op) => (Ok(op), None),
                Err(e) => (Err(e), wire::error_id_json(t).map(Id::into_owned)),
            },
            Message::Binary(b) => match enc.decode_binary_frame(b) {
                Ok(op) => (Ok(op), None),
                Err(e) => (Err(e), wire::error_id_binary(b).map(Id::into_owned)),
            },
        };
        match op {
            Ok(op) => self.on_op(out, now, conn, op),
            Err(e) => self.refuse(out, conn, frames::error(enc, err_id.as_ref(), &e)),
        }
    }

    /// A connection that had opened ended: its subscriptions end with it.
    pub(crate) fn on_close(&mut self, conn: ConnId) {
        let Some(st) = self.conns.remove(&conn.key) else {
            return;
        };
        if st.gen != conn.gen {
            self.conns.insert(conn.key, st);
            return;
        }
        for s in st.subs {
            self.stats.subscriptions.dec();
            match s.state {
                SubState::Active(key) => self.detach(s.topic, key),
                // The owner's answer will find the connection gone and release the topic.
                SubState::Pending { .. } => {}
            }
        }
    }

    /// Handle what other workers sent (at most [`MAX_ITEMS_PER_WAKE`] items), then push out
    /// what this worker has for them. `clock` is read once per non-empty batch of up to 256
    /// items: the `ts` of the messages this worker owns and publishes from that batch.
    pub(crate) fn on_wake<O: Outbox<Conn = C>>(
        &mut self,
        out: &mut O,
        clock: impl FnMut() -> Time,
    ) {
        self.drain_inbox(out, clock);
        self.backlog.flush(&self.mesh);
        self.mesh.flush();
    }

    /// Whether messages were fanned out to local subscribers since the last
    /// [`record_latency`](Self::record_latency).
    pub(crate) fn has_written(&self) -> bool {
        !self.written.is_empty()
    }

    /// The worker has written out what the wake queued, at `now`: record each fanned-out
    /// message's publish-to-write latency.
    pub(crate) fn record_latency(&mut self, now: Time) {
        let now = now.unix_us();
        for ts in self.written.drain(..) {
            self.stats.latency.record(now.saturating_sub(ts));
        }
    }

    /// The 100 ms timer ticked at `now`: close connections whose token expired, and sweep
    /// idle topics and old history every second of ticks.
    pub(crate) fn on_tick<O: Outbox<Conn = C>>(&mut self, out: &mut O, now: Time) {
        self.tick += 1;
        self.expire_tokens(out, now);
        if self.tick % SWEEP_TICKS == 0 {
            self.sweep();
        }
    }
}
