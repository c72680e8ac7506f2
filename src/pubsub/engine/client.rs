//! A connection's requests: its subscriptions (pending at a remote owner, or active), `sub`,
//! `unsub` and `pub` ops, the `subbed` welcome with its replay, and strikes for refused
//! messages.

use std::sync::Arc;

use bytes::Bytes;

use super::{
    access,
    mesh::{Item, PubReq, Replay, Reply, SubReply, SubReq},
    owner_of, Engine, Link, Outbox, Time, TopicRef, MAX_STRIKES, STRIKE_WINDOW_TICKS,
};
use crate::{
    proto::CloseCode,
    pubsub::{
        frames,
        wire::{ClientOp, Encoding, Id, Payload},
        TopicName,
    },
    queue::ConflationKey,
    server::ConnId,
};

/// A request deferred behind a pending subscription of the same connection and topic.
pub(super) enum Deferred {
    Sub(Option<Id<'static>>),
    Unsub(Ending),
}

/// Why a subscription ends: the client's `unsub` (with its request id), or a refreshed token
/// that no longer allows the topic.
pub(super) enum Ending {
    Asked(Option<Id<'static>>),
    Revoked,
}

/// The state of one of a connection's subscriptions.
pub(super) enum SubState {
    /// Sent to the owner; requests for the same topic wait behind it.
    Pending {
        id: Option<Id<'static>>,
        then: Vec<Deferred>,
    },
    /// In the topic's subscriber slab under this key.
    Active(usize),
}

/// One subscription of a connection.
pub(super) struct ConnSub {
    pub(super) topic: TopicRef,
    pub(super) state: SubState,
}

/// What the engine keeps per open connection.
pub(super) struct ConnState<C> {
    pub(super) gen: u32,
    pub(super) conn: C,
    pub(super) enc: Encoding,
    pub(super) subs: Vec<ConnSub>,
    pub(super) strikes: u32,
    pub(super) strike_tick: u64,
    pub(super) access: access::Access,
}

impl<C: Link> Engine<C> {
    /// The state of connection `id`, if it is open.
    pub(super) fn conn_state(&self, id: ConnId) -> Option<&ConnState<C>> {
        self.conns.get(&id.key).filter(|s| s.gen == id.gen)
    }

    /// Send `subbed` and the replay (or `reset`) to a new subscriber.
    pub(super) fn welcome(
        &mut self,
        out: &mut impl Outbox<Conn = C>,
        conn: &C,
        enc: Encoding,
        r: TopicRef,
        (seq, replay): (u64, Replay),
        id: Option<&Id<'_>>,
    ) {
        let Some(t) = self.topic(r) else { return };
        let topic = t.name();
        let (gen, policy) = (t.gen, t.policy);
        let _ = out.send_reply(conn, frames::subbed(enc, topic, seq, id));
        match replay {
            Replay::Nothing => {}
            Replay::Reset => {
                self.stats.resets.inc();
                let _ = out.send_reply(conn, frames::reset(enc, topic, seq));
            }
            Replay::Frames(list) => {
                for (frame, key) in list {
                    self.stats.replayed.inc();
                    let key = key.map(|k| ConflationKey::new(gen, k));
                    if out.offer(conn, frame, key, policy).is_err() {
                        break;
                    }
                }
            }
        }
    }

    /// The owner answered a subscription: activate it, welcome the subscriber, then run
    /// the requests that waited behind it.
    pub(super) fn on_subbed(&mut self, out: &mut impl Outbox<Conn = C>, reply: SubReply) {
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
        self.welcome(out, &conn, enc, r, (reply.seq, reply.replay), id.as_ref());
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
                Deferred::Sub(id) => self.sub(out, conn_id, r, None, id),
                Deferred::Unsub(why) => self.unsub(out, conn_id, r, why),
            }
        }
    }

    /// Count a refused message against connection `id`; too many close it (1008).
    pub(super) fn strike(&mut self, out: &mut impl Outbox<Conn = C>, id: ConnId) {
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
            out.close_now(&conn, CloseCode::POLICY, "too many errors");
        }
    }

    /// Reply `frame` (an `err`) to connection `id` and strike it.
    pub(super) fn refuse(&mut self, out: &mut impl Outbox<Conn = C>, id: ConnId, frame: Bytes) {
        if let Some(st) = self.conn_state(id) {
            let _ = out.send_reply(&st.conn, frame);
        }
        self.strike(out, id);
    }

    /// A `sub` for the topic `r` (already in the table) from connection `id`.
    pub(super) fn sub(
        &mut self,
        out: &mut impl Outbox<Conn = C>,
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
                        let _ = out.send_reply(&conn, f);
                    }
                }
            }
            return;
        }
        if st.subs.len() >= self.set.max_subscriptions {
            let f = frames::err(
                enc,
                req_id.as_ref(),
                crate::pubsub::wire::ErrorCode::TooManySubscriptions,
                "this connection holds the most subscriptions allowed",
            );
            self.maybe_release(r);
            return self.refuse(out, id, f);
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
            self.welcome(out, &conn, enc, r, joined, req_id.as_ref());
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
    pub(super) fn unsub(
        &mut self,
        out: &mut impl Outbox<Conn = C>,
        id: ConnId,
        r: TopicRef,
        why: Ending,
    ) {
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
            let _ = out.send_reply(&conn, frame);
        }
        if let Some(key) = detach {
            self.stats.subscriptions.dec();
            self.detach(r, key);
        } else {
            self.maybe_release(r);
        }
    }

    /// A `pub` of `data` to `topic`: published here if this worker owns the topic, else
    /// sent to the owner; `reply` learns its seq.
    pub(super) fn publish(
        &mut self,
        out: &mut impl Outbox<Conn = C>,
        now: Time,
        topic: TopicName<'_>,
        data: Payload<'_>,
        key: Option<&str>,
        reply: Reply,
    ) {
        self.stats.publishes_in.inc();
        let owner = owner_of(topic.as_str(), self.workers);
        if owner == self.me as usize {
            let seq = self.publish_owned(out, now, topic.as_str(), data, None, key);
            self.reply_seq(out, reply, seq);
            return;
        }
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

    /// A decoded op (`sub`, `unsub`, `pub`, `auth`) from connection `id`, at `now`.
    pub(super) fn on_op(
        &mut self,
        out: &mut impl Outbox<Conn = C>,
        now: Time,
        id: ConnId,
        op: ClientOp<'_>,
    ) {
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
                    return self.forbid(out, id, req_id.as_ref(), "subscribe to");
                }
                let Some(r) = self.admit_topic(topic.as_str()) else {
                    return self.refuse_topic(out, id, req_id.as_ref());
                };
                self.sub(out, id, r, since, req_id.map(Id::into_owned));
            }
            ClientOp::Unsub { topic, id: req_id } => {
                let req_id = req_id.map(Id::into_owned);
                match self.by_name.get(topic.as_str()) {
                    Some(&slot) => {
                        let r = (slot as u32, self.topics[slot].gen);
                        self.unsub(out, id, r, Ending::Asked(req_id));
                    }
                    None => {
                        if let Some(st) = self.conn_state(id) {
                            let f = frames::unsubbed(st.enc, topic, req_id.as_ref());
                            let _ = out.send_reply(&st.conn, f);
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
                self.forbid(out, id, req_id.as_ref(), "publish to")
            }
            ClientOp::Pub {
                topic,
                data,
                key,
                id: req_id,
            } => {
                let reply = Reply::Client {
                    worker: self.me,
                    conn: id,
                    id: req_id.map(Id::into_owned),
                };
                self.publish(out, now, topic, data, key.as_deref(), reply);
            }
            ClientOp::Auth(op) => self.auth(out, id, op),
        }
    }
}
