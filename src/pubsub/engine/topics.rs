//! The topic table of one worker: entries by name and slot, local subscribers, what the
//! owner keeps (seq, history, remote workers), release of idle topics, and the fan-out of
//! one message's frames to local subscribers.

use std::sync::Arc;

use slab::Slab;

use super::{mesh::Item, owner_of, Engine, Link, Outbox, TopicRef, SWEEP_TICKS};
use crate::{
    pubsub::{
        frames::{self, Frames},
        history::History,
        stats::{TopicSummary, TOP_TOPICS},
        wire::Encoding,
        TopicName,
    },
    queue::{ConflationKey, SlowPolicy},
};

/// A local subscriber of a topic.
pub(super) struct Sub<C> {
    pub(super) conn: C,
    pub(super) enc: Encoding,
}

/// What only the owner of a topic keeps.
#[derive(Default)]
pub(super) struct Owned {
    pub(super) seq: u64,
    pub(super) history: History,
    /// Other workers with subscribers: (worker, their topic entry, encodings bitmask).
    pub(super) remote: Vec<(u32, TopicRef, u8)>,
    /// `seq` at the previous sweep, for the topic's message rate.
    pub(super) swept_seq: u64,
}

/// A topic in a worker's table.
pub(super) struct Topic<C> {
    pub(super) name: Arc<str>,
    pub(super) gen: u32,
    pub(super) policy: SlowPolicy,
    pub(super) subs: Slab<Sub<C>>,
    /// Local subscribers per encoding.
    pub(super) enc_count: [u32; 2],
    /// Subscriptions sent to the owner and not answered yet.
    pub(super) pending: u32,
    /// The last seq this worker delivered (or the seq its latest `subbed` reported).
    pub(super) last_seq: u64,
    pub(super) owned: Option<Box<Owned>>,
}

impl<C> Topic<C> {
    /// The topic's name.
    pub(super) fn name(&self) -> TopicName<'_> {
        // Names enter the table only after validation.
        TopicName::new(&self.name).unwrap_or_else(|_| unreachable_topic())
    }

    /// Which encodings someone subscribed to the topic needs (here or on other workers).
    pub(super) fn encodings_wanted(&self) -> [bool; 2] {
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

/// A placeholder name for the case that cannot happen (an invalid name in the table).
#[cold]
pub(super) fn unreachable_topic() -> TopicName<'static> {
    TopicName::new("invalid").unwrap_or_else(|_| unreachable!("a static valid name"))
}

impl<C: Link> Engine<C> {
    /// The topic at `r`, unless its slot was reused.
    pub(super) fn topic(&self, r: TopicRef) -> Option<&Topic<C>> {
        self.topics.get(r.0 as usize).filter(|t| t.gen == r.1)
    }

    /// The topic at `r`, mutably, unless its slot was reused.
    pub(super) fn topic_mut(&mut self, r: TopicRef) -> Option<&mut Topic<C>> {
        self.topics.get_mut(r.0 as usize).filter(|t| t.gen == r.1)
    }

    /// The entry of `name`, created if needed (owned if this worker is its owner).
    pub(super) fn entry(&mut self, name: &str) -> TopicRef {
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
    pub(super) fn maybe_release(&mut self, r: TopicRef) {
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

    /// Add `conn` to the topic's local subscribers; returns the slab key.
    pub(super) fn attach(&mut self, r: TopicRef, st_conn: &C, enc: Encoding) -> Option<usize> {
        let t = self.topic_mut(r)?;
        t.enc_count[frames::index(enc)] += 1;
        Some(t.subs.insert(Sub {
            conn: st_conn.clone(),
            enc,
        }))
    }

    /// Remove the local subscriber at `key` from topic `r`, releasing the topic if idle.
    pub(super) fn detach(&mut self, r: TopicRef, key: usize) {
        if let Some(t) = self.topic_mut(r) {
            if let Some(s) = t.subs.try_remove(key) {
                t.enc_count[frames::index(s.enc)] -= 1;
            }
        }
        self.maybe_release(r);
    }

    /// Drop expired history and topics nobody needs; refresh the busiest-topics list.
    pub(super) fn sweep(&mut self) {
        let (now, max_age) = (self.tick, self.set.history_max_age_ticks);
        let secs = (SWEEP_TICKS as f64) * 0.1;
        let mut idle = Vec::new();
        let mut busy: Vec<(u64, u32)> = Vec::new();
        let (mut before, mut after) = ((0, 0), (0, 0));
        for (slot, t) in self.topics.iter_mut() {
            if let Some(o) = t.owned.as_mut() {
                before.0 += o.history.bytes();
                before.1 += o.history.len();
                o.history.expire(now, max_age);
                after.0 += o.history.bytes();
                after.1 += o.history.len();
                busy.push((o.seq - o.swept_seq, slot as u32));
                o.swept_seq = o.seq;
                if t.subs.is_empty() && t.pending == 0 && o.remote.is_empty() {
                    idle.push((slot as u32, t.gen));
                }
            }
        }
        self.account_history(before, after);
        self.enforce_history_budget();
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
pub(super) fn fan_out<O: Outbox>(
    out: &mut O,
    t: &Topic<O::Conn>,
    frames: &Frames,
    key: Option<u64>,
) -> bool {
    let key = key.map(|k| ConflationKey::new(t.gen, k));
    let mut deflated = frames::Deflated::default();
    for (_, sub) in t.subs.iter() {
        if let Some(frame) = frames.get(sub.enc) {
            let frame = match sub.conn.deflate_window() {
                None => frame.clone(),
                Some(bits) => deflated.get(sub.enc, bits, frame, |f, b| out.deflate_frame(f, b)),
            };
            let _ = out.offer(&sub.conn, frame, key, t.policy);
        }
    }
    !t.subs.is_empty()
}
