//! The owner side of a topic: assigning seqs, stamping `ts`, keeping history (within the
//! topic's and the worker's byte budgets), fanning out to local subscribers and remote
//! workers, acks, and answering subscriptions (`since` resume).

use std::hash::BuildHasher;

use bytes::Bytes;

use super::{
    mesh::{Item, Replay, Reply, SubReply, SubReq},
    topics::{fan_out, unreachable_topic},
    Engine, Link, Outbox, Time, TopicRef,
};
use crate::{
    pubsub::{
        frames::{self, Frames, ENCODINGS},
        history::{Entry, Limits, Resume},
        wire::{Encoding, ErrorCode, Id, Payload},
        TopicName,
    },
    server::ConnId,
};

/// What pushing a message into its topic's history did, for the worker's sums.
#[derive(Default)]
struct Kept {
    /// Entries evicted for the topic's bytes.
    evicted: u64,
    /// (bytes, entries) of the history before and after.
    change: ((usize, usize), (usize, usize)),
    /// The seq pushed, if the history still holds it.
    seq: Option<u64>,
}

impl<C: Link> Engine<C> {
    /// Give the next seq of a topic this worker owns to a message, keep it, and fan it out.
    /// `None` when the topic is new and the topic table is full (`too_many_topics`).
    pub(super) fn publish_owned(
        &mut self,
        out: &mut impl Outbox<Conn = C>,
        now: Time,
        name: &str,
        data: Payload<'_>,
        stored: Option<&Bytes>,
        key: Option<&str>,
    ) -> Option<u64> {
        let r = self.admit_topic(name)?;
        let key = key.map(|k| self.key_hasher.hash_one(k));
        let lim = Limits {
            len: self.set.history_len,
            max_age_ticks: self.set.history_max_age_ticks,
            bytes: self.set.history_topic_bytes,
        };
        let tick = self.tick;
        let Some(t) = self.topic_mut(r) else {
            return Some(0);
        };
        let want = t.encodings_wanted();
        let ts_us = now.unix_us();
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
        let mut kept = Kept::default();
        if lim.len > 0 {
            let bytes = stored
                .cloned()
                .unwrap_or_else(|| Bytes::copy_from_slice(data.as_bytes()));
            let before = (o.history.bytes(), o.history.len());
            kept.evicted = o.history.push(
                Entry {
                    seq,
                    ts_us,
                    tick,
                    data: bytes,
                    json: data.is_json(),
                    key,
                    frames: frames.clone(),
                    cost: Entry::charge(topic, seq, ts_us, data),
                },
                &lim,
            );
            kept.change = (before, (o.history.bytes(), o.history.len()));
            kept.seq = o.history.holds(seq).then_some(seq);
        }
        t.last_seq = seq;
        let local = fan_out(out, t, &frames, key);
        let remotes = t.owned.as_ref().map_or(0, |o| o.remote.len());
        if lim.len > 0 {
            self.stats.history_evicted.add(kept.evicted);
            self.account_history(kept.change.0, kept.change.1);
            if let Some(seq) = kept.seq {
                self.history.order.push_back((r, seq));
            }
            self.enforce_history_budget();
        }
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
        Some(seq)
    }

    /// The entry of `name` if it is in the table or the table has room for it; else count the
    /// refusal and return `None`.
    pub(super) fn admit_topic(&mut self, name: &str) -> Option<TopicRef> {
        if !self.by_name.contains_key(name) && self.topics.len() >= self.topic_cap {
            self.stats.topics_refused.inc();
            return None;
        }
        Some(self.entry(name))
    }

    /// A history went from `before` to `after` (bytes, entries): keep the worker's sums.
    pub(super) fn account_history(&mut self, before: (usize, usize), after: (usize, usize)) {
        let h = &mut self.history;
        h.bytes = (h.bytes + after.0).saturating_sub(before.0);
        h.entries = (h.entries + after.1).saturating_sub(before.1);
        self.stats.history_bytes.set(h.bytes as u64);
    }

    /// While the histories of this worker's topics are over its share of `history_bytes`,
    /// evict the oldest entry of any topic; then drop stale records if they pile up.
    pub(super) fn enforce_history_budget(&mut self) {
        let h = &mut self.history;
        while h.bytes > h.limit {
            let Some((r, seq)) = h.order.pop_front() else {
                break;
            };
            let Some(o) = self
                .topics
                .get_mut(r.0 as usize)
                .filter(|t| t.gen == r.1)
                .and_then(|t| t.owned.as_mut())
            else {
                continue;
            };
            while let Some(freed) = o.history.evict_oldest_upto(seq) {
                h.bytes = h.bytes.saturating_sub(freed);
                h.entries = h.entries.saturating_sub(1);
                self.stats.history_evicted.inc();
            }
        }
        if h.order.len() > 2 * h.entries + 64 {
            let topics = &self.topics;
            h.order.retain(|&(r, seq)| {
                topics
                    .get(r.0 as usize)
                    .filter(|t| t.gen == r.1)
                    .and_then(|t| t.owned.as_ref())
                    .is_some_and(|o| o.history.holds(seq))
            });
        }
        self.stats.history_bytes.set(h.bytes as u64);
    }

    /// Tell whoever asked the seq given to a publish, or that it was refused (`None`: the
    /// topic table is full; the admin API is sent seq 0, which no message has).
    pub(super) fn reply_seq(
        &mut self,
        out: &mut impl Outbox<Conn = C>,
        reply: Reply,
        seq: Option<u64>,
    ) {
        match (reply, seq) {
            (Reply::Admin(tx), seq) => {
                let _ = tx.send(seq.unwrap_or(0));
            }
            (Reply::Client { id: None, .. }, Some(_)) => {}
            (Reply::Client { worker, conn, id }, None) if worker == self.me => {
                self.refuse_topic(out, conn, id.as_ref());
            }
            (Reply::Client { worker, conn, id }, None) => {
                self.send(worker as usize, Item::TopicRefused { conn, id });
            }
            (
                Reply::Client {
                    worker,
                    conn,
                    id: Some(id),
                },
                Some(seq),
            ) if worker == self.me => {
                if let Some(st) = self.conn_state(conn) {
                    let _ = out.send_reply(&st.conn, frames::ack(st.enc, &id, seq));
                }
            }
            (
                Reply::Client {
                    worker,
                    conn,
                    id: Some(id),
                },
                Some(seq),
            ) => {
                self.send(worker as usize, Item::Ack { conn, id, seq });
            }
        }
    }

    /// Answer a `sub` or `pub` of connection `conn` that would have added a topic beyond the
    /// table's share of `max_topics` with `err too_many_topics`.
    pub(super) fn refuse_topic(
        &mut self,
        out: &mut impl Outbox<Conn = C>,
        conn: ConnId,
        id: Option<&Id<'_>>,
    ) {
        let Some(enc) = self.conn_state(conn).map(|s| s.enc) else {
            return;
        };
        let f = frames::err(
            enc,
            id,
            ErrorCode::TooManyTopics,
            "the server holds the most topics allowed",
        );
        self.refuse(out, conn, f);
    }

    /// The topic's seq and what a subscriber resuming from `since` gets, in `enc`.
    pub(super) fn join(&mut self, r: TopicRef, since: Option<u64>, enc: Encoding) -> (u64, Replay) {
        let (now, max_age) = (self.tick, self.set.history_max_age_ticks);
        let Some(t) = self.topics.get_mut(r.0 as usize) else {
            return (0, Replay::Nothing);
        };
        let mut change = ((0, 0), (0, 0));
        let name = t.name.clone();
        let topic = TopicName::new(&name).unwrap_or_else(|_| unreachable_topic());
        let o = t.owned.get_or_insert_with(Box::default);
        let seq = o.seq;
        let Some(since) = since else {
            return (seq, Replay::Nothing);
        };
        change.0 = (o.history.bytes(), o.history.len());
        o.history.expire(now, max_age);
        change.1 = (o.history.bytes(), o.history.len());
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
        self.account_history(change.0, change.1);
        (seq, replay)
    }

    /// A subscription from another worker: remember the worker and answer with `Subbed`.
    pub(super) fn on_sub_req(&mut self, req: SubReq) {
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
}
