//! Access control inside the pub/sub engine, per connection: topic permissions from the
//! connection's identity (`forbidden`), the inbound message and byte rate buckets
//! (`rate_limited`, then close 1008 "rate limit"), token expiry timers (close 1008 "token
//! expired"), and the `auth` op that refreshes a token over the open connection.

use std::{cmp::Reverse, collections::BinaryHeap, sync::Arc};

use super::{
    client::{ConnState, Ending},
    Engine, Link, Outbox, Time, TopicRef,
};
use crate::{
    auth::{AuthError, Identity},
    guard::{BucketShape, TokenBucket},
    proto::CloseCode,
    pubsub::{
        frames,
        wire::{self, AuthOp, Encoding, Id},
    },
    server::{ConnId, Message},
};

/// Dropped messages after which a connection that keeps sending over its rate is closed
/// with 1008 "rate limit". The count starts again after a second without a drop.
pub const RATE_DROPS_BEFORE_CLOSE: u32 = 50;
/// 100 ms ticks in a second.
const TICKS_PER_SEC: u64 = 10;

/// The per-connection inbound rate limits (0: off).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RateSettings {
    /// Messages per second.
    pub msgs_per_sec: u64,
    /// Message bytes per second.
    pub bytes_per_sec: u64,
    /// Seconds' worth of each rate a bucket holds, in milliseconds.
    pub burst_ms: u64,
}

impl RateSettings {
    fn shape(rate: u64, burst_ms: u64) -> BucketShape {
        BucketShape {
            rate,
            burst: (rate.saturating_mul(burst_ms) / 1000).max(1),
        }
    }

    fn msgs(&self) -> BucketShape {
        Self::shape(self.msgs_per_sec, self.burst_ms)
    }

    fn bytes(&self) -> BucketShape {
        Self::shape(self.bytes_per_sec, self.burst_ms)
    }
}

/// What happens to an inbound message under the rate limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RateVerdict {
    /// Within the limits: handle it.
    Pass,
    /// Over a limit: drop it, and reply `rate_limited` when `err` (at most once a second).
    Drop { err: bool },
    /// Over a limit for too long: close 1008 "rate limit".
    Close,
}

/// A connection's access state: its identity, rate buckets and token deadline.
#[derive(Debug)]
pub(crate) struct Access {
    /// Who the connection is; `None` when auth is off (everything allowed).
    pub(crate) identity: Option<Arc<Identity>>,
    /// When the connection is closed unless it refreshes: `exp` + leeway, Unix seconds.
    pub(crate) deadline: Option<u64>,
    /// Boxed, and only when a rate limit is set: most deployments pay 8 bytes for it.
    rate: Option<Box<RateState>>,
}

/// The rate buckets of one connection and its recent drops.
#[derive(Debug)]
struct RateState {
    msgs: TokenBucket,
    bytes: TokenBucket,
    dropped: u32,
    last_drop_tick: u64,
    last_err_tick: Option<u64>,
}

impl Access {
    /// The access state of a connection opening at `tick`.
    pub(crate) fn new(
        identity: Option<Arc<Identity>>,
        leeway: u64,
        rate: &RateSettings,
        tick: u64,
    ) -> Self {
        let now_ms = tick * 100;
        Access {
            deadline: identity
                .as_ref()
                .and_then(|i| i.exp)
                .map(|e| e.saturating_add(leeway)),
            identity,
            rate: (rate.msgs_per_sec > 0 || rate.bytes_per_sec > 0).then(|| {
                Box::new(RateState {
                    msgs: TokenBucket::full(rate.msgs(), now_ms),
                    bytes: TokenBucket::full(rate.bytes(), now_ms),
                    dropped: 0,
                    last_drop_tick: 0,
                    last_err_tick: None,
                })
            }),
        }
    }

    /// Whether the connection may subscribe to `topic`.
    pub(crate) fn may_subscribe(&self, topic: &str) -> bool {
        self.identity
            .as_ref()
            .map_or(true, |i| i.subscribe.allows(topic))
    }

    /// Whether the connection may publish to `topic`.
    pub(crate) fn may_publish(&self, topic: &str) -> bool {
        self.identity
            .as_ref()
            .map_or(true, |i| i.publish.allows(topic))
    }

    /// Charge a message of `len` bytes arriving at `tick` to the buckets.
    pub(crate) fn check_rate(&mut self, rate: &RateSettings, tick: u64, len: usize) -> RateVerdict {
        let Some(st) = self.rate.as_deref_mut() else {
            return RateVerdict::Pass;
        };
        let now_ms = tick * 100;
        let ok = (rate.msgs_per_sec == 0 || st.msgs.take(rate.msgs(), now_ms, 1))
            && (rate.bytes_per_sec == 0 || st.bytes.take(rate.bytes(), now_ms, len as u64));
        if ok {
            return RateVerdict::Pass;
        }
        if tick.saturating_sub(st.last_drop_tick) > TICKS_PER_SEC {
            st.dropped = 0;
        }
        st.last_drop_tick = tick;
        st.dropped += 1;
        if st.dropped > RATE_DROPS_BEFORE_CLOSE {
            return RateVerdict::Close;
        }
        let err = st
            .last_err_tick
            .map_or(true, |t| tick.saturating_sub(t) >= TICKS_PER_SEC);
        if err {
            st.last_err_tick = Some(tick);
        }
        RateVerdict::Drop { err }
    }
}

/// Connections' token deadlines in a min-heap: each tick pops only what is due, so no tick
/// scans every connection. A refresh pushes a new entry; the old one is skipped when it
/// comes due because it no longer matches the connection's deadline.
#[derive(Debug, Default)]
pub(crate) struct ExpiryQueue(BinaryHeap<Reverse<(u64, u32, u32)>>);

impl ExpiryQueue {
    /// Remember that `conn` must be closed at `deadline` (Unix seconds) unless refreshed.
    pub(crate) fn push(&mut self, deadline: u64, conn: ConnId) {
        self.0.push(Reverse((deadline, conn.key, conn.gen)));
    }

    /// The next entry due at `now` (Unix seconds), if any.
    pub(crate) fn pop_due(&mut self, now: u64) -> Option<(u64, ConnId)> {
        let Reverse((at, _, _)) = *self.0.peek()?;
        if at > now {
            return None;
        }
        let Reverse((at, key, gen)) = self.0.pop()?;
        Some((at, ConnId { key, gen }))
    }

    /// Entries held (live and stale).
    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }
}

/// The length of a message as the byte rate counts it.
pub(crate) fn msg_len(msg: &Message<'_>) -> usize {
    match msg {
        Message::Text(t) => t.len(),
        Message::Binary(b) => b.len(),
    }
}

impl<C: Link> Engine<C> {
    /// Apply the rate limits to a message from `conn`; `false` when it must not be handled.
    pub(super) fn admit_message(
        &mut self,
        out: &mut impl Outbox<Conn = C>,
        conn: ConnId,
        msg: &Message<'_>,
    ) -> bool {
        let rate = self.set.rate;
        if rate.msgs_per_sec == 0 && rate.bytes_per_sec == 0 {
            return true;
        }
        let tick = self.tick;
        let Some(st) = self.conns.get_mut(&conn.key).filter(|s| s.gen == conn.gen) else {
            return false;
        };
        match st.access.check_rate(&rate, tick, msg_len(msg)) {
            RateVerdict::Pass => true,
            RateVerdict::Drop { err } => {
                self.stats.rate_limited.inc();
                if err {
                    let id = match msg {
                        Message::Text(t) => wire::error_id_json(t),
                        Message::Binary(b) => wire::error_id_binary(b),
                    };
                    let f = frames::err(
                        st.enc,
                        id.as_ref(),
                        wire::ErrorCode::RateLimited,
                        "over this connection's message rate; messages are dropped",
                    );
                    let _ = out.send_reply(&st.conn, f);
                }
                false
            }
            RateVerdict::Close => {
                self.stats.rate_limited.inc();
                self.stats.closed_rate_limit.inc();
                let c = st.conn.clone();
                out.close_now(&c, CloseCode::POLICY, "rate limit");
                false
            }
        }
    }

    /// Refuse an op on `topic` that the connection's token does not allow.
    pub(super) fn forbid(
        &mut self,
        out: &mut impl Outbox<Conn = C>,
        conn: ConnId,
        id: Option<&Id<'_>>,
        what: &str,
    ) {
        self.stats.forbidden.inc();
        let Some(enc) = self.conn_state(conn).map(|s| s.enc) else {
            return;
        };
        let msg = format!("this connection may not {what} this topic");
        self.refuse(
            out,
            conn,
            frames::err(enc, id, wire::ErrorCode::Forbidden, &msg),
        );
    }

    /// An `auth` op from `conn`: verify its token and, if it is good, make it the
    /// connection's.
    pub(super) fn auth(&mut self, out: &mut impl Outbox<Conn = C>, conn: ConnId, op: AuthOp<'_>) {
        let Some(enc) = self.conn_state(conn).map(|s| s.enc) else {
            return;
        };
        self.refresh(out, conn, enc, op);
    }

    fn refresh(
        &mut self,
        out: &mut impl Outbox<Conn = C>,
        conn: ConnId,
        enc: Encoding,
        op: AuthOp<'_>,
    ) {
        let leeway = out.token_leeway();
        let result = out.verify_token(&op.token).and_then(|identity| {
            let st = self.conn_state(conn).ok_or(AuthError::Disabled)?;
            match &st.access.identity {
                Some(old) if old.user != identity.user => Err(AuthError::OtherUser),
                _ => Ok(identity),
            }
        });
        let id = op.id.as_ref();
        let identity = match result {
            Ok(i) => i,
            Err(e) => {
                self.stats.auth_refused.inc();
                let code = match e {
                    AuthError::Disabled => wire::ErrorCode::BadOp,
                    AuthError::OtherUser => wire::ErrorCode::Forbidden,
                    _ => wire::ErrorCode::Unauthorized,
                };
                let f = frames::err(enc, id, code, &e.to_string());
                return self.refuse(out, conn, f);
            }
        };
        self.stats.auth_refreshed.inc();
        let exp = identity.exp;
        let deadline = exp.map(|e| e.saturating_add(leeway));
        let Some(st) = self.conns.get_mut(&conn.key).filter(|s| s.gen == conn.gen) else {
            return;
        };
        let identity = Arc::new(identity);
        st.access.identity = Some(identity.clone());
        let changed = st.access.deadline != deadline;
        st.access.deadline = deadline;
        let reply_to = st.conn.clone();
        let subs: Vec<TopicRef> = st.subs.iter().map(|s| s.topic).collect();
        if let (true, Some(d)) = (changed, deadline) {
            self.expiry.push(d, conn);
        }
        // The new claims govern what the connection already has, not only what it asks for
        // next: each subscription they no longer allow ends with an `unsubbed` carrying
        // `reason: forbidden` (a pending one as soon as its owner answers), before `authed`.
        for r in subs {
            let forbidden = self
                .topic(r)
                .is_some_and(|t| !identity.subscribe.allows(t.name().as_str()));
            if forbidden {
                self.unsub(out, conn, r, Ending::Revoked);
            }
        }
        let _ = out.send_reply(&reply_to, frames::authed(enc, exp.unwrap_or(0), id));
    }

    /// Start tracking a new connection's token deadline.
    pub(super) fn track_expiry(&mut self, conn: ConnId, st: &ConnState<C>) {
        if let Some(d) = st.access.deadline {
            self.expiry.push(d, conn);
        }
    }

    /// Close every connection whose token deadline has passed without a refresh.
    pub(super) fn expire_tokens(&mut self, out: &mut impl Outbox<Conn = C>, now: Time) {
        if self.expiry.len() == 0 {
            return;
        }
        let now = now.unix_secs();
        while let Some((at, id)) = self.expiry.pop_due(now) {
            let Some(st) = self.conn_state(id) else {
                continue;
            };
            if st.access.deadline != Some(at) {
                continue; // refreshed since
            }
            self.stats.closed_token_expired.inc();
            let c = st.conn.clone();
            out.close_now(&c, CloseCode::POLICY, "token expired");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_drops_errs_once_a_second_then_closes() {
        let rate = RateSettings {
            msgs_per_sec: 10,
            bytes_per_sec: 0,
            burst_ms: 1000,
        };
        let mut a = Access::new(None, 0, &rate, 0);
        for _ in 0..10 {
            assert_eq!(a.check_rate(&rate, 0, 1), RateVerdict::Pass);
        }
        assert_eq!(a.check_rate(&rate, 0, 1), RateVerdict::Drop { err: true });
        assert_eq!(a.check_rate(&rate, 0, 1), RateVerdict::Drop { err: false });
        // One tick refills one message.
        assert_eq!(a.check_rate(&rate, 1, 1), RateVerdict::Pass);
        let mut last = RateVerdict::Pass;
        for _ in 0..RATE_DROPS_BEFORE_CLOSE {
            last = a.check_rate(&rate, 1, 1);
        }
        assert_eq!(last, RateVerdict::Close);
        // A quiet second forgives the drops.
        let mut b = Access::new(None, 0, &rate, 0);
        for _ in 0..(10 + RATE_DROPS_BEFORE_CLOSE) {
            b.check_rate(&rate, 0, 1);
        }
        assert_eq!(b.check_rate(&rate, 30, 1), RateVerdict::Pass);
        for _ in 0..9 {
            assert_eq!(b.check_rate(&rate, 30, 1), RateVerdict::Pass);
        }
        assert_eq!(b.check_rate(&rate, 30, 1), RateVerdict::Drop { err: true });
    }

    #[test]
    fn byte_rate_and_permissions() {
        let rate = RateSettings {
            msgs_per_sec: 0,
            bytes_per_sec: 1000,
            burst_ms: 1000,
        };
        let mut a = Access::new(None, 0, &rate, 0);
        assert_eq!(a.check_rate(&rate, 0, 900), RateVerdict::Pass);
        assert_eq!(a.check_rate(&rate, 0, 200), RateVerdict::Drop { err: true });
        assert_eq!(a.check_rate(&rate, 2, 200), RateVerdict::Pass);
        assert!(
            a.may_subscribe("x") && a.may_publish("y"),
            "no identity: auth off"
        );
        let id = Identity {
            user: "u".into(),
            exp: Some(100),
            subscribe: crate::auth::TopicPatterns::new(["a.*"]),
            publish: crate::auth::TopicPatterns::new(["b"]),
        };
        let a = Access::new(Some(Arc::new(id)), 5, &rate, 0);
        assert_eq!(a.deadline, Some(105));
        assert!(a.may_subscribe("a.x") && !a.may_subscribe("b"));
        assert!(a.may_publish("b") && !a.may_publish("a.x"));
    }

    #[test]
    fn expiry_queue_pops_only_what_is_due() {
        let mut q = ExpiryQueue::default();
        q.push(30, ConnId { key: 3, gen: 1 });
        q.push(10, ConnId { key: 1, gen: 1 });
        q.push(20, ConnId { key: 2, gen: 1 });
        assert_eq!(q.pop_due(5), None);
        assert_eq!(q.pop_due(20).map(|(t, c)| (t, c.key)), Some((10, 1)));
        assert_eq!(q.pop_due(20).map(|(t, c)| (t, c.key)), Some((20, 2)));
        assert_eq!(q.pop_due(20), None);
        assert_eq!(q.len(), 1);
    }
}
