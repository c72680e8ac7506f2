//! The engine's side of the fanout mesh: the items workers exchange, sending them in order
//! (behind a backlog when a peer's inbox is full), and handling what arrives.

use std::sync::Arc;

use bytes::Bytes;

use super::{topics::fan_out, Engine, Link, Outbox, Time, TopicRef, BATCH, MAX_ITEMS_PER_WAKE};
use crate::{
    fanout::Undelivered,
    pubsub::{
        frames::{self, Frames},
        wire::{Encoding, Id, Payload},
    },
    server::ConnId,
};

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
    /// A publish from `conn` was refused: its topic would not fit the owner's topic table.
    TopicRefused {
        conn: ConnId,
        id: Option<Id<'static>>,
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
    /// A client: its worker and connection, and the id it gave, if any (without one it is
    /// only told of a refusal).
    Client {
        worker: u32,
        conn: ConnId,
        id: Option<Id<'static>>,
    },
    /// The admin API, waiting on a channel.
    Admin(crossbeam_channel::Sender<u64>),
}

/// A subscription request on its way to the topic's owner.
pub(crate) struct SubReq {
    pub(super) name: Arc<str>,
    pub(super) from: u32,
    pub(super) topic: TopicRef,
    pub(super) conn: ConnId,
    pub(super) since: Option<u64>,
    pub(super) enc: Encoding,
}

/// The owner's answer: the topic's seq when the subscriber joined, and what to replay.
pub(crate) struct SubReply {
    pub(super) topic: TopicRef,
    pub(super) conn: ConnId,
    pub(super) seq: u64,
    pub(super) replay: Replay,
}

/// What a resuming subscriber gets before live messages.
pub(super) enum Replay {
    Nothing,
    Reset,
    Frames(Vec<(Bytes, Option<u64>)>),
}

impl<C: Link> Engine<C> {
    /// Send `item` to `worker` in order behind anything held back for it.
    pub(super) fn send(&mut self, worker: usize, item: Item) {
        self.stats.mesh_items.inc();
        let item = if self.backlog.len_for(worker) == 0 {
            match self.mesh.push(worker, item) {
                Ok(()) => return,
                Err(Undelivered::Full(item)) => item,
                Err(Undelivered::Closed(_)) => return,
            }
        } else {
            item
        };
        if let Err(Undelivered::Full(_)) = self.backlog.send(&self.mesh, worker, item) {
            self.stats.mesh_lost.inc();
            tracing::warn!(
                worker = self.me,
                to = worker,
                "fanout backlog full: item lost"
            );
        }
    }

    /// Handle up to [`MAX_ITEMS_PER_WAKE`] items from the inbox, reading `clock` once per
    /// non-empty batch.
    pub(super) fn drain_inbox(
        &mut self,
        out: &mut impl Outbox<Conn = C>,
        mut clock: impl FnMut() -> Time,
    ) {
        let mut batch = std::mem::take(&mut self.batch);
        let mut handled = 0;
        while handled < MAX_ITEMS_PER_WAKE {
            match self.inbox.try_recv_batch(&mut batch, BATCH) {
                Some(0) | None => break,
                Some(n) => handled += n,
            }
            let now = clock();
            for item in batch.drain(..) {
                self.on_item(out, now, item);
            }
        }
        self.batch = batch;
    }

    /// Handle one item from another worker (or a [`Publisher`](crate::pubsub::Publisher)).
    pub(super) fn on_item(&mut self, out: &mut impl Outbox<Conn = C>, now: Time, item: Item) {
        match item {
            Item::Publish(p) => {
                let PubReq {
                    name,
                    data,
                    json,
                    key,
                    reply,
                } = *p;
                // An admin publish arrives here, at its topic's owner (a client's `pub` was
                // counted by its connection's worker before it was forwarded).
                if matches!(reply, Reply::Admin(_)) {
                    self.stats.publishes_in.inc();
                }
                let payload = if json {
                    match simdutf8::basic::from_utf8(&data) {
                        Ok(t) => Payload::Json(t),
                        Err(_) => return,
                    }
                } else {
                    Payload::Bytes(&data)
                };
                let seq = self.publish_owned(out, now, &name, payload, Some(&data), key.as_deref());
                self.reply_seq(out, reply, seq);
            }
            Item::Subscribe(req) => self.on_sub_req(*req),
            Item::Unsubscribe { name, from, topic } => {
                if let Some(&slot) = self.by_name.get(&name) {
                    let r = (slot as u32, self.topics[slot].gen);
                    if let Some(o) = self.topics[slot].owned.as_mut() {
                        o.remote.retain(|&(w, t, _)| !(w == from && t == topic));
                    }
                    self.maybe_release(r);
                }
            }
            Item::Subbed(reply) => self.on_subbed(out, *reply),
            Item::Deliver {
                topic,
                seq,
                ts_us,
                frames,
                key,
            } => {
                if let Some(t) = self.topic_mut(topic) {
                    t.last_seq = seq;
                    if fan_out(out, t, &frames, key) {
                        self.written.push(ts_us);
                    }
                }
            }
            Item::TopicRefused { conn, id } => self.refuse_topic(out, conn, id.as_ref()),
            Item::Ack { conn, id, seq } => {
                if let Some(st) = self.conn_state(conn) {
                    let _ = out.send_reply(&st.conn, frames::ack(st.enc, &id, seq));
                }
            }
        }
    }
}
