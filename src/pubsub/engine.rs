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

mod access;

pub use access::{RateSettings, RATE_DROPS_BEFORE_CLOSE};

use std::{
    collections::HashMap,
    hash::{BuildHasher, RandomState},
    rc::Rc,
    sync::Arc,
    time::SystemTime,
};

use bytes::Bytes;
use slab::Slab;

use super::{
    frames::{self, Frames, ENCODINGS},
    history::{Entry, History, Resume},
    stats::{TopicSummary, WorkerPubSubStats, TOP_TOPICS},
    wire::{self, ClientOp, Encoding, Id, Payload},
    TopicName,
};
use crate::{
    fanout::{Backlog, Inbox, Outboxes, SendError as MeshError},
    proto::CloseCode,
    queue::{ConflationKey, SlowPolicy},
    server::{ConnId, ConnRef, Ctx, Handler, Message, OpenInfo, Wakeup},
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

/// What workers send each other through the fanout mesh.
pub(crate) enum Item {
    /// To the owner: publish this.
    Publish(Box<PubReq>),
    /// To the owner: a connection of worker `from` subscribes.
    Subscribe(Box<SubReq>),
    /// To the owner: worker `from` has no subscriber left on the topic.
    Unsubscribe {
        name: Arc<str>,
        from: u32,
        topic: TopicRef,
    },
    /// From the owner: the answer to a `Subscribe`.
    Subbed(Box<SubReply>),
    /// From the owner: a message for the worker's subscribers.
    Deliver {
        topic: TopicRef,
        seq: u64,
        /// When the owner stamped the message (µs since the epoch), for the latency histogram.
        ts_us: u64,
        frames: Frames,
        key: Option<u64>,
    },
    /// From the owner: the seq given to a client's `pub` that asked for an ack.
    Ack {
        conn: ConnId,
        id: Id<'static>,
        seq: u64,
    },
}

/// A publish on its way to the topic's owner.
pub(crate) struct PubReq {
    pub(crate) name: Arc<str>,
    pub(crate) data: Bytes,
    pub(crate) json: bool,
    pub(crate) key: Option<Box<str>>,
    pub(crate) reply: Reply,
}

/// Who learns the seq of a publish.
pub(crate) enum Reply {
    /// Nobody.
    None,
    /// A client that asked with an id.
    Client {
        worker: u32,
        conn: ConnId,
        id: Id<'static>,
    },
    /// The admin API, waiting on a channel.
    Admin(crossbeam_channel::Sender<u64>),
}

/// A subscription request on its way to the topic's owner.
pub(crate) struct SubReq {
    name: Arc<str>,
    from: u32,
    topic: TopicRef,
    conn: ConnId,
    since: Option<u64>,
    enc: Encoding,
}

/// The owner's answer: the topic's seq when the subscriber joined, and what to replay.
pub(crate) struct SubReply {
    topic: TopicRef,
    conn: ConnId,
    seq: u64,
    replay: Replay,
}

/// What a resuming subscriber gets before live messages.
enum Replay {
    Nothing,
    Reset,
    Frames(Vec<(Bytes, Option<u64>)>),
}

/// Settings of the pub/sub layer, shared by every worker.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Messages kept per topic for resume.
    pub history_len: usize,
    /// Age limit of history entries, in 100 ms ticks.
    pub history_max_age_ticks: u64,
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

/// Microseconds since the Unix epoch.
fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// A local subscriber of a topic.
struct Sub {
    conn: ConnRef,
    enc: Encoding,
}

/// What only the owner of a topic keeps.
#[derive(Default)]
struct Owned {
    seq: u64,
    history: History,
    /// Other workers with subscribers: (worker, their topic entry, encodings bitmask).
    remote: Vec<(u32, TopicRef, u8)>,
    /// `seq` at the previous sweep, for the topic's message rate.
    swept_seq: u64,
}

/// A topic in a worker's table.
struct Topic {
    name: Arc<str>,
    gen: u32,
    policy: SlowPolicy,
    subs: Slab<Sub>,
    /// Local subscribers per encoding.
    enc_count: [u32; 2],
    /// Subscriptions sent to the owner and not answered yet.
    pending: u32,
    /// The last seq this worker delivered (or the seq its latest `subbed` reported).
    last_seq: u64,
    owned: Option<Box<Owned>>,
}

impl Topic {
    fn name(&self) -> TopicName<'_> {
        // Names enter the table only after validation.
        TopicName::new(&self.name).unwrap_or_else(|_| unreachable_topic())
    }

    fn encodings_wanted(&self) -> [bool; 2] {
        let mut want = [self.enc_count[0] > 0, self.enc_count[1] > 0];
        if let Some(o) = &self.owned {
            for &(_, _, mask) in &o.remote {
                want[0] |= mask & 1 != 0;
                want[1] |= mask & 2 != 0;
            }
        }
        want
    }
}

#[cold]
fn unreachable_topic() -> TopicName<'static> {
    TopicName::new("invalid").unwrap_or_else(|_| unreachable!("a static valid name"))
}

/// A request deferred behind a pending subscription of the same connection and topic.
enum Deferred {
    Sub(Option<Id<'static>>),
    Unsub(Ending),
}

/// Why a subscription ends: the client's `unsub` (with its request id), or a refreshed token
/// that no longer allows the topic.
enum Ending {
    Asked(Option<Id<'static>>),
    Revoked,
}

/// The state of one of a connection's subscriptions.
enum SubState {
    /// Sent to the owner; requests for the same topic wait behind it.
    Pending {
        id: Option<Id<'static>>,
        then: Vec<Deferred>,
    },
    /// In the topic's subscriber slab under this key.
    Active(usize),
}

struct ConnSub {
    topic: TopicRef,
    state: SubState,
}

struct ConnState {
    gen: u32,
    conn: ConnRef,
    enc: Encoding,
    subs: Vec<ConnSub>,
    strikes: u32,
    strike_tick: u64,
    access: access::Access,
}

/// The pub/sub [`Handler`] of one worker.
pub struct PubSub {
    me: u32,
    workers: usize,
    set: Arc<Settings>,
    inbox: Rc<InboxWake>,
    out: Outboxes<Item>,
    backlog: Backlog<Item>,
    topics: Slab<Topic>,
    by_name: HashMap<Arc<str>, usize>,
    next_gen: u32,
    conns: HashMap<u32, ConnState>,
    key_hasher: RandomState,
    stats: Arc<WorkerPubSubStats>,
    batch: Vec<Item>,
    tick: u64,
    /// Owner stamps of the messages fanned out to local subscribers in this wake, measured
    /// when the worker has written them out ([`Handler::after_flush`]).
    written: Vec<u64>,
    expiry: access::ExpiryQueue,
}

/// The worker's inbox as a [`Wakeup`] source.
pub(crate) struct InboxWake(Inbox<Item>);

impl Wakeup for InboxWake {
    fn wait(self: Rc<Self>) -> std::pin::Pin<Box<dyn std::future::Future<Output = bool>>> {
        // `ready` resolves when items wait or every producer has gone; checked on this
        // thread right after, an empty inbox means the latter.
        Box::pin(async move {
            self.0.ready().await;
            !self.0.is_empty()
        })
    }
}

impl PubSub {
    /// The engine of worker `me` of `workers`.
    pub(crate) fn new(
        me: usize,
        workers: usize,
        set: Arc<Settings>,
        inbox: Inbox<Item>,
        out: Outboxes<Item>,
        stats: Arc<WorkerPubSubStats>,
    ) -> Self {
        PubSub {
            me: me as u32,
            workers,
            set,
            inbox: Rc::new(InboxWake(inbox)),
            out,
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
        }
    }

    // ----- the topic table -----

    fn topic(&self, r: TopicRef) -> Option<&Topic> {
        self.topics.get(r.0 as usize).filter(|t| t.gen == r.1)
    }

    fn topic_mut(&mut self, r: TopicRef) -> Option<&mut Topic> {
        self.topics.get_mut(r.0 as usize).filter(|t| t.gen == r.1)
    }

    /// The entry of `name`, created if needed (owned if this worker is its owner).
    fn entry(&mut self, name: &str) -> TopicRef {
        if let Some(&slot) = self.by_name.get(name) {
            return (slot as u32, self.topics[slot].gen);
        }
        let name: Arc<str> = Arc::from(name);
        self.next_gen = self.next_gen.wrapping_add(1);
        let gen = self.next_gen;
        let owned = (owner_of(&name, self.workers) == self.me as usize).then(Box::default);
        let slot = self.topics.insert(Topic {
            policy: self.set.policy_for(&name),
            name: name.clone(),
            gen,
            subs: Slab::new(),
            enc_count: [0; 2],
            pending: 0,
            last_seq: 0,
            owned,
        });
        self.by_name.insert(name, slot);
        self.stats.topics.inc();
        (slot as u32, gen)
    }

    /// Forget a topic that nobody needs any more; tell its owner if it is elsewhere.
    fn maybe_release(&mut self, r: TopicRef) {
        let Some(t) = self.topic(r) else { return };
        if !t.subs.is_empty() || t.pending > 0 {
            return;
        }
        match &t.owned {
            Some(o) if !o.remote.is_empty() || !o.history.is_empty() => return,
            Some(_) => {}
            None => {
                let name = t.name.clone();
                let owner = owner_of(&name, self.workers);
                self.send(
                    owner,
                    Item::Unsubscribe {
                        name,
                        from: self.me,
                        topic: r,
                    },
                );
            }
        }
        let t = self.topics.remove(r.0 as usize);
        self.by_name.remove(&t.name);
        self.stats.topics.dec();
    }

    // ----- the mesh -----

    /// Send `item` to `worker` in order behind anything held back for it.
    fn send(&mut self, worker: usize, item: Item) {
        self.stats.mesh_items.inc();
        let item = if self.backlog.len_for(worker) == 0 {
            match self.out.push(worker, item) {
                Ok(()) => return,
                Err(MeshError::Full(item)) => item,
                Err(MeshError::Closed(_)) => return,
            }
        } else {
            item
        };
        if let Err(MeshError::Full(_)) = self.backlog.send(&self.out, worker, item) {
            self.stats.mesh_lost.inc();
            tracing::warn!(
                worker = self.me,
                to = worker,
                "fanout backlog full: item lost"
            );
        }
    }

    fn drain_inbox(&mut self, ctx: &mut Ctx<'_>) {
        let mut batch = std::mem::take(&mut self.batch);
        let mut handled = 0;
        while handled < MAX_ITEMS_PER_WAKE {
            match self.inbox.0.try_recv_batch(&mut batch, BATCH) {
                Some(0) | None => break,
                Some(n) => handled += n,
            }
            for item in batch.drain(..) {
                self.on_item(ctx, item);
            }
        }
        self.batch = batch;
    }

    fn on_item(&mut self, ctx: &mut Ctx<'_>, item: Item) {
        match item {
            Item::Publish(p) => {
                let PubReq {
                    name,
                    data,
                    json,
                    key,
                    reply,
                } = *p;
                let payload = if json {
                    match simdutf8::basic::from_utf8(&data) {
                        Ok(t) => Payload::Json(t),
                        Err(_) => return,
                    }
                } else {
                    Payload::Bytes(&data)
                };
                let seq = self.publish_owned(ctx, &name, payload, Some(&data), key.as_deref());
                self.reply_seq(ctx, reply, seq);
            }
            Item::Subscribe(req) => self.on_sub_req(ctx, *req),
            Item::Unsubscribe { name, from, topic } => {
                if let Some(&slot) = self.by_name.get(&name) {
                    let r = (slot as u32, self.topics[slot].gen);
                    if let Some(o) = self.topics[slot].owned.as_mut() {
                        o.remote.retain(|&(w, t, _)| !(w == from && t == topic));
                    }
                    self.maybe_release(r);
                }
            }
            Item::Subbed(reply) => self.on_subbed(ctx, *reply),
            Item::Deliver {
                topic,
                seq,
                ts_us,
                frames,
                key,
            } => {
                if let Some(t) = self.topic_mut(topic) {
                    t.last_seq = seq;
                    if fan_out(ctx, t, &frames, key) {
                        self.written.push(ts_us);
                    }
                }
            }
            Item::Ack { conn, id, seq } => {
                if let Some(st) = self.conn_state(conn) {
                    let _ = ctx.send_reply(&st.conn, frames::ack(st.enc, &id, seq));
                }
            }
        }
    }

    fn conn_state(&self, id: ConnId) -> Option<&ConnState> {
        self.conns.get(&id.key).filter(|s| s.gen == id.gen)
    }

    // ----- owner side -----

    /// Give the next seq of a topic this worker owns to a message, keep it, and fan it out.
    fn publish_owned(
        &mut self,
        ctx: &mut Ctx<'_>,
        name: &str,
        data: Payload<'_>,
        stored: Option<&Bytes>,
        key: Option<&str>,
    ) -> u64 {
        let r = self.entry(name);
        let key = key.map(|k| self.key_hasher.hash_one(k));
        let (history_len, max_age) = (self.set.history_len, self.set.history_max_age_ticks);
        let tick = self.tick;
        let Some(t) = self.topic_mut(r) else { return 0 };
        let want = t.encodings_wanted();
        let ts_us = now_us();
        let name_ref = t.name.clone();
        let topic = TopicName::new(&name_ref).unwrap_or_else(|_| unreachable_topic());
        let o = t.owned.get_or_insert_with(Box::default);
        o.seq += 1;
        let seq = o.seq;
        let mut frames = Frames::default();
        for enc in ENCODINGS {
            if want[frames::index(enc)] {
                frames.set(enc, frames::msg(enc, topic, seq, ts_us, data));
            }
        }
        if history_len > 0 {
            let bytes = stored
                .cloned()
                .unwrap_or_else(|| Bytes::copy_from_slice(data.as_bytes()));
            o.history.push(
                Entry {
                    seq,
                    ts_us,
                    tick,
                    data: bytes,
                    json: data.is_json(),
                    key,
                    frames: frames.clone(),
                },
                history_len,
                max_age,
            );
        }
        t.last_seq = seq;
        let local = fan_out(ctx, t, &frames, key);
        let remotes = t.owned.as_ref().map_or(0, |o| o.remote.len());
        if local {
            self.written.push(ts_us);
        }
        for i in 0..remotes {
            let Some(&(worker, topic, _)) = self.topics[r.0 as usize]
                .owned
                .as_ref()
                .and_then(|o| o.remote.get(i))
            else {
                break;
            };
            self.send(
                worker as usize,
                Item::Deliver {
                    topic,
                    seq,
                    ts_us,
                    frames: frames.clone(),
                    key,
                },
            );
        }
        self.stats.published.inc();
        seq
    }

    fn reply_seq(&mut self, ctx: &mut Ctx<'_>, reply: Reply, seq: u64) {
        match reply {
            Reply::None => {}
            Reply::Admin(tx) => {
                let _ = tx.send(seq);
            }
            Reply::Client { worker, conn, id } if worker == self.me => {
                if let Some(st) = self.conn_state(conn) {
                    let _ = ctx.send_reply(&st.conn, frames::ack(st.enc, &id, seq));
                }
            }
            Reply::Client { worker, conn, id } => {
                self.send(worker as usize, Item::Ack { conn, id, seq });
            }
        }
    }

    /// The topic's seq and what a subscriber resuming from `since` gets, in `enc`.
    fn join(&mut self, r: TopicRef, since: Option<u64>, enc: Encoding) -> (u64, Replay) {
        let (now, max_age) = (self.tick, self.set.history_max_age_ticks);
        let Some(t) = self.topics.get_mut(r.0 as usize) else {
            return (0, Replay::Nothing);
        };
        let name = t.name.clone();
        let topic = TopicName::new(&name).unwrap_or_else(|_| unreachable_topic());
        let o = t.owned.get_or_insert_with(Box::default);
        let seq = o.seq;
        let Some(since) = since else {
            return (seq, Replay::Nothing);
        };
        o.history.expire(now, max_age);
        let replay = match o.history.resume(since, seq) {
            Resume::UpToDate => Replay::Nothing,
            Resume::Reset => Replay::Reset,
            Resume::Replay(range) => {
                let mut list = Vec::with_capacity(range.len());
                for i in range {
                    if let Some(e) = o.history.get_mut(i) {
                        list.push((e.frame(enc, topic), e.key));
                    }
                }
                Replay::Frames(list)
            }
        };
        (seq, replay)
    }

    fn on_sub_req(&mut self, _ctx: &mut Ctx<'_>, req: SubReq) {
        let r = self.entry(&req.name);
        let bit = 1u8 << frames::index(req.enc);
        if let Some(o) = self.topics[r.0 as usize].owned.as_mut() {
            match o.remote.iter_mut().find(|(w, _, _)| *w == req.from) {
                Some(e) => {
                    e.1 = req.topic;
                    e.2 |= bit;
                }
                None => o.remote.push((req.from, req.topic, bit)),
            }
        }
        let (seq, replay) = self.join(r, req.since, req.enc);
        self.send(
            req.from as usize,
            Item::Subbed(Box::new(SubReply {
                topic: req.topic,
                conn: req.conn,
                seq,
                replay,
            })),
        );
    }

    // ----- subscriber side -----

    /// Add `conn` to the topic's local subscribers; returns the slab key.
    fn attach(&mut self, r: TopicRef, st_conn: &ConnRef, enc: Encoding) -> Option<usize> {
        let t = self.topic_mut(r)?;
        t.enc_count[frames::index(enc)] += 1;
        Some(t.subs.insert(Sub {
            conn: st_conn.clone(),
            enc,
        }))
    }

    fn detach(&mut self, r: TopicRef, key: usize) {
        if let Some(t) = self.topic_mut(r) {
            if let Some(s) = t.subs.try_remove(key) {
                t.enc_count[frames::index(s.enc)] -= 1;
            }
        }
        self.maybe_release(r);
    }

    /// Send `subbed` and the replay (or `reset`) to a new subscriber.
    fn welcome(
        &mut self,
        ctx: &mut Ctx<'_>,
        conn: &ConnRef,
        enc: Encoding,
        r: TopicRef,
        (seq, replay): (u64, Replay),
        id: Option<&Id<'_>>,
    ) {
        let Some(t) = self.topic(r) else { return };
        let topic = t.name();
        let (gen, policy) = (t.gen, t.policy);
        let _ = ctx.send_reply(conn, frames::subbed(enc, topic, seq, id));
        match replay {
            Replay::Nothing => {}
            Replay::Reset => {
                self.stats.resets.inc();
                let _ = ctx.send_reply(conn, frames::reset(enc, topic, seq));
            }
            Replay::Frames(list) => {
                for (frame, key) in list {
                    self.stats.replayed.inc();
                    let key = key.map(|k| ConflationKey::new(gen, k));
                    if ctx.offer(conn, frame, key, policy).is_err() {
                        break;
                    }
                }
            }
        }
    }

    fn on_subbed(&mut self, ctx: &mut Ctx<'_>, reply: SubReply) {
        let r = reply.topic;
        let Some(t) = self.topic_mut(r) else { return };
        t.pending = t.pending.saturating_sub(1);
        t.last_seq = t.last_seq.max(reply.seq);
        let Some(st) = self
            .conns
            .get_mut(&reply.conn.key)
            .filter(|s| s.gen == reply.conn.gen)
        else {
            self.maybe_release(r);
            return;
        };
        let Some(pos) = st
            .subs
            .iter()
            .position(|s| s.topic == r && matches!(s.state, SubState::Pending { .. }))
        else {
            self.maybe_release(r);
            return;
        };
        let (conn, enc) = (st.conn.clone(), st.enc);
        let Some(key) = self.attach(r, &conn, enc) else {
            return;
        };
        let st = self.conns.get_mut(&reply.conn.key).expect("checked above");
        let (id, then) = match std::mem::replace(&mut st.subs[pos].state, SubState::Active(key)) {
            SubState::Pending { id, then } => (id, then),
            SubState::Active(_) => (None, Vec::new()),
        };
        self.welcome(ctx, &conn, enc, r, (reply.seq, reply.replay), id.as_ref());
        if then.is_empty() {
            return;
        }
        // Requests that waited behind this subscription, in order. An `unsub` among them may
        // release the topic's entry, so each one looks the topic up again by name.
        let name = self.topics[r.0 as usize].name.clone();
        let conn_id = conn.id();
        for d in then {
            let r = self.entry(&name);
            match d {
                Deferred::Sub(id) => self.sub(ctx, conn_id, r, None, id),
                Deferred::Unsub(why) => self.unsub(ctx, conn_id, r, why),
            }
        }
    }

    fn strike(&mut self, ctx: &mut Ctx<'_>, id: ConnId) {
        self.stats.client_errors.inc();
        let tick = self.tick;
        let Some(st) = self.conns.get_mut(&id.key).filter(|s| s.gen == id.gen) else {
            return;
        };
        if tick.saturating_sub(st.strike_tick) > STRIKE_WINDOW_TICKS {
            st.strike_tick = tick;
            st.strikes = 0;
        }
        st.strikes += 1;
        if st.strikes >= MAX_STRIKES {
            self.stats.error_closes.inc();
            let conn = st.conn.clone();
            ctx.close_now(&conn, CloseCode::POLICY, "too many errors");
        }
    }

    fn refuse(&mut self, ctx: &mut Ctx<'_>, id: ConnId, frame: Bytes) {
        if let Some(st) = self.conn_state(id) {
            let _ = ctx.send_reply(&st.conn, frame);
        }
        self.strike(ctx, id);
    }

    /// A `sub` for the topic `r` (already in the table) from connection `id`.
    fn sub(
        &mut self,
        ctx: &mut Ctx<'_>,
        id: ConnId,
        r: TopicRef,
        since: Option<u64>,
        req_id: Option<Id<'static>>,
    ) {
        let me = self.me;
        let Some(st) = self.conns.get_mut(&id.key).filter(|s| s.gen == id.gen) else {
            return;
        };
        let (conn, enc) = (st.conn.clone(), st.enc);
        if let Some(s) = st.subs.iter_mut().find(|s| s.topic == r) {
            match &mut s.state {
                SubState::Pending { then, .. } => then.push(Deferred::Sub(req_id)),
                SubState::Active(_) => {
                    if let Some(t) = self.topics.get(r.0 as usize).filter(|t| t.gen == r.1) {
                        let seq = t.owned.as_ref().map_or(t.last_seq, |o| o.seq);
                        let f = frames::subbed(enc, t.name(), seq, req_id.as_ref());
                        let _ = ctx.send_reply(&conn, f);
                    }
                }
            }
            return;
        }
        if st.subs.len() >= self.set.max_subscriptions {
            let f = frames::err(
                enc,
                req_id.as_ref(),
                wire::ErrorCode::TooManySubscriptions,
                "this connection holds the most subscriptions allowed",
            );
            self.maybe_release(r);
            return self.refuse(ctx, id, f);
        }
        let Some(t) = self.topics.get_mut(r.0 as usize).filter(|t| t.gen == r.1) else {
            return;
        };
        self.stats.subscriptions.inc();
        if t.owned.is_some() {
            let Some(key) = self.attach(r, &conn, enc) else {
                return;
            };
            if let Some(st) = self.conns.get_mut(&id.key) {
                st.subs.push(ConnSub {
                    topic: r,
                    state: SubState::Active(key),
                });
            }
            let joined = self.join(r, since, enc);
            self.welcome(ctx, &conn, enc, r, joined, req_id.as_ref());
            return;
        }
        t.pending += 1;
        let name = t.name.clone();
        if let Some(st) = self.conns.get_mut(&id.key) {
            st.subs.push(ConnSub {
                topic: r,
                state: SubState::Pending {
                    id: req_id,
                    then: Vec::new(),
                },
            });
        }
        let owner = owner_of(&name, self.workers);
        self.send(
            owner,
            Item::Subscribe(Box::new(SubReq {
                name,
                from: me,
                topic: r,
                conn: id,
                since,
                enc,
            })),
        );
    }

    /// End connection `id`'s subscription to topic `r`, and say so with an `unsubbed`.
    fn unsub(&mut self, ctx: &mut Ctx<'_>, id: ConnId, r: TopicRef, why: Ending) {
        let Some(st) = self.conns.get_mut(&id.key).filter(|s| s.gen == id.gen) else {
            return;
        };
        let (conn, enc) = (st.conn.clone(), st.enc);
        let mut detach = None;
        if let Some(pos) = st.subs.iter().position(|s| s.topic == r) {
            match &mut st.subs[pos].state {
                SubState::Pending { then, .. } => {
                    then.push(Deferred::Unsub(why));
                    return;
                }
                SubState::Active(key) => {
                    detach = Some(*key);
                    st.subs.swap_remove(pos);
                }
            }
        }
        if let Some(t) = self.topic(r) {
            let frame = match &why {
                Ending::Asked(req_id) => frames::unsubbed(enc, t.name(), req_id.as_ref()),
                Ending::Revoked => {
                    self.stats.revoked.inc();
                    frames::revoked(enc, t.name())
                }
            };
            let _ = ctx.send_reply(&conn, frame);
        }
        if let Some(key) = detach {
            self.stats.subscriptions.dec();
            self.detach(r, key);
        } else {
            self.maybe_release(r);
        }
    }

    fn publish(
        &mut self,
        ctx: &mut Ctx<'_>,
        id: ConnId,
        topic: TopicName<'_>,
        data: Payload<'_>,
        key: Option<&str>,
        req_id: Option<Id<'static>>,
    ) {
        self.stats.publishes_in.inc();
        let owner = owner_of(topic.as_str(), self.workers);
        if owner == self.me as usize {
            let seq = self.publish_owned(ctx, topic.as_str(), data, None, key);
            if let Some(req_id) = req_id {
                self.reply_seq(
                    ctx,
                    Reply::Client {
                        worker: self.me,
                        conn: id,
                        id: req_id,
                    },
                    seq,
                );
            }
            return;
        }
        let reply = match req_id {
            Some(req_id) => Reply::Client {
                worker: self.me,
                conn: id,
                id: req_id,
            },
            None => Reply::None,
        };
        let name: Arc<str> = match self.by_name.get(topic.as_str()) {
            Some(&slot) => self.topics[slot].name.clone(),
            None => Arc::from(topic.as_str()),
        };
        self.send(
            owner,
            Item::Publish(Box::new(PubReq {
                name,
                data: Bytes::copy_from_slice(data.as_bytes()),
                json: data.is_json(),
                key: key.map(Box::from),
                reply,
            })),
        );
    }

    fn on_op(&mut self, ctx: &mut Ctx<'_>, id: ConnId, op: ClientOp<'_>) {
        match op {
            ClientOp::Sub {
                topic,
                since,
                id: req_id,
            } => {
                if self.set.auth_required
                    && !self
                        .conn_state(id)
                        .is_some_and(|s| s.access.may_subscribe(topic.as_str()))
                {
                    return self.forbid(ctx, id, req_id.as_ref(), "subscribe to");
                }
                let r = self.entry(topic.as_str());
                self.sub(ctx, id, r, since, req_id.map(Id::into_owned));
            }
            ClientOp::Unsub { topic, id: req_id } => {
                let req_id = req_id.map(Id::into_owned);
                match self.by_name.get(topic.as_str()) {
                    Some(&slot) => {
                        let r = (slot as u32, self.topics[slot].gen);
                        self.unsub(ctx, id, r, Ending::Asked(req_id));
                    }
                    None => {
                        if let Some(st) = self.conn_state(id) {
                            let f = frames::unsubbed(st.enc, topic, req_id.as_ref());
                            let _ = ctx.send_reply(&st.conn, f);
                        }
                    }
                }
            }
            ClientOp::Pub {
                topic, id: req_id, ..
            } if self.set.auth_required
                && !self
                    .conn_state(id)
                    .is_some_and(|s| s.access.may_publish(topic.as_str())) =>
            {
                self.forbid(ctx, id, req_id.as_ref(), "publish to")
            }
            ClientOp::Pub {
                topic,
                data,
                key,
                id: req_id,
            } => self.publish(
                ctx,
                id,
                topic,
                data,
                key.as_deref(),
                req_id.map(Id::into_owned),
            ),
            ClientOp::Auth(op) => self.auth(ctx, id, op),
        }
    }

    /// Drop expired history and topics nobody needs; refresh the busiest-topics list.
    fn sweep(&mut self) {
        let (now, max_age) = (self.tick, self.set.history_max_age_ticks);
        let secs = (SWEEP_TICKS as f64) * 0.1;
        let mut idle = Vec::new();
        let mut busy: Vec<(u64, u32)> = Vec::new();
        for (slot, t) in self.topics.iter_mut() {
            if let Some(o) = t.owned.as_mut() {
                o.history.expire(now, max_age);
                busy.push((o.seq - o.swept_seq, slot as u32));
                o.swept_seq = o.seq;
                if t.subs.is_empty() && t.pending == 0 && o.remote.is_empty() {
                    idle.push((slot as u32, t.gen));
                }
            }
        }
        if busy.len() > TOP_TOPICS {
            busy.select_nth_unstable_by(TOP_TOPICS - 1, |a, b| b.0.cmp(&a.0));
            busy.truncate(TOP_TOPICS);
        }
        busy.sort_unstable_by_key(|b| std::cmp::Reverse(b.0));
        let top = busy
            .iter()
            .filter_map(|&(n, slot)| {
                let t = self.topics.get(slot as usize)?;
                let o = t.owned.as_ref()?;
                Some(TopicSummary {
                    name: t.name.to_string(),
                    owner: self.me as usize,
                    seq: o.seq,
                    rate: n as f64 / secs,
                    local_subscribers: t.subs.len(),
                    remote_workers: o.remote.len(),
                    history: o.history.len(),
                })
            })
            .collect();
        if let Ok(mut slot) = self.stats.top.lock() {
            *slot = top;
        }
        for r in idle {
            self.maybe_release(r);
        }
    }
}

/// Offer a message's frame to every local subscriber of `t`: a reference count each (the
/// compressed variant for subscribers that negotiated permessage-deflate, made once).
/// Returns whether there was any.
fn fan_out(ctx: &mut Ctx<'_>, t: &Topic, frames: &Frames, key: Option<u64>) -> bool {
    let key = key.map(|k| ConflationKey::new(t.gen, k));
    let mut deflated = frames::Deflated::default();
    for (_, sub) in t.subs.iter() {
        if let Some(frame) = frames.get(sub.enc) {
            let frame = match sub.conn.deflate_window() {
                None => frame.clone(),
                Some(bits) => deflated.get(ctx, sub.enc, bits, frame),
            };
            let _ = ctx.offer(&sub.conn, frame, key, t.policy);
        }
    }
    !t.subs.is_empty()
}

impl Handler for PubSub {
    fn on_open(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, info: &OpenInfo<'_>) {
        let Some(c) = ctx.conn_ref(conn) else { return };
        let enc = Encoding::from_subprotocol(info.protocol).unwrap_or(Encoding::Json);
        let identity = info.identity.cloned();
        let access = access::Access::new(identity, ctx.token_leeway(), &self.set.rate, self.tick);
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

    fn on_message(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, msg: Message<'_>) {
        let Some(enc) = self.conn_state(conn).map(|s| s.enc) else {
            return;
        };
        if !self.admit_message(ctx, conn, &msg) {
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
            Ok(op) => self.on_op(ctx, conn, op),
            Err(e) => self.refuse(ctx, conn, frames::error(enc, err_id.as_ref(), &e)),
        }
    }

    fn on_close(&mut self, _ctx: &mut Ctx<'_>, conn: ConnId, _code: Option<CloseCode>) {
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

    fn wakeup(&mut self) -> Option<Rc<dyn Wakeup>> {
        Some(self.inbox.clone())
    }

    fn on_wake(&mut self, ctx: &mut Ctx<'_>) {
        self.drain_inbox(ctx);
        self.backlog.flush(&self.out);
        self.out.flush();
    }

    fn after_flush(&mut self, _ctx: &mut Ctx<'_>) {
        if self.written.is_empty() {
            return;
        }
        let now = now_us();
        for ts in self.written.drain(..) {
            self.stats.latency.record(now.saturating_sub(ts));
        }
    }

    fn on_tick(&mut self, ctx: &mut Ctx<'_>) {
        self.tick += 1;
        self.expire_tokens(ctx);
        if self.tick % SWEEP_TICKS == 0 {
            self.sweep();
        }
    }
}
