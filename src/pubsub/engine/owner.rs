//! The owner side of a topic: assigning seqs, stamping `ts`, keeping history, fanning out to
//! local subscribers and remote workers, acks, and answering subscriptions (`since` resume).

use std::hash::BuildHasher;

use bytes::Bytes;

use super::{
    mesh::{Item, Replay, Reply, SubReply, SubReq},
    topics::{fan_out, unreachable_topic},
    Engine, Link, Outbox, Time, TopicRef,
};
use crate::pubsub::{
    frames::{self, Frames, ENCODINGS},
    history::{Entry, Resume},
    wire::{Encoding, Payload},
    TopicName,
};

impl<C: Link> Engine<C> {
    /// Give the next seq of a topic this worker owns to a message, keep it, and fan it out.
    pub(super) fn publish_owned(
        &mut self,
        out: &mut impl Outbox<Conn = C>,
        now: Time,
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
        let local = fan_out(out, t, &frames, key);
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

    /// Tell whoever asked the seq given to a publish.
    pub(super) fn reply_seq(&mut self, out: &mut impl Outbox<Conn = C>, reply: Reply, seq: u64) {
        match reply {
            Reply::None => {}
            Reply::Admin(tx) => {
                let _ = tx.send(seq);
            }
            Reply::Client { worker, conn, id } if worker == self.me => {
                if let Some(st) = self.conn_state(conn) {
                    let _ = out.send_reply(&st.conn, frames::ack(st.enc, &id, seq));
                }
            }
            Reply::Client { worker, conn, id } => {
                self.send(worker as usize, Item::Ack { conn, id, seq });
            }
        }
    }

    /// The topic's seq and what a subscriber resuming from `since` gets, in `enc`.
    pub(super) fn join(&mut self, r: TopicRef, since: Option<u64>, enc: Encoding) -> (u64, Replay) {
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
