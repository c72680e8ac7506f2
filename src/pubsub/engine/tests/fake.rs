//! A fake worker for the engine's unit tests: connections are in-memory [`SendQueue`]s under
//! a byte bound, so the real bound, conflation and slow-consumer rules apply; frames are read
//! back as JSON. The [`World`] wires one engine per worker with a real fanout mesh and pumps
//! items between them until every inbox is empty. No sockets, no runtime, no clock.

use std::{collections::HashMap, io::IoSlice, net::SocketAddr, rc::Rc, sync::Arc};

use bytes::Bytes;
use serde_json::Value;

use super::super::{Engine, Item, Link, Outbox, Settings, Time};
use crate::{
    auth::{AuthError, Identity},
    fanout::{Inbox, Mesh},
    proto::CloseCode,
    pubsub::stats::WorkerPubSubStats,
    queue::{ConflationKey, Offer, SendQueue, SlowPolicy},
    server::{ConnId, Message, OpenInfo, SendError},
};

/// The handle the engine keeps for a fake connection: its id (looked up on every send).
#[derive(Debug, Clone)]
pub(super) struct FakeLink(ConnId);

impl Link for FakeLink {
    fn id(&self) -> ConnId {
        self.0
    }

    fn deflate_window(&self) -> Option<u8> {
        None
    }
}

/// One fake connection.
#[derive(Debug, Default)]
struct FakeConn {
    queue: SendQueue,
    /// Set once the engine closed it: the code and reason.
    closed: Option<(CloseCode, String)>,
}

/// The connections of one fake worker.
#[derive(Debug)]
pub(super) struct FakeConns {
    conns: HashMap<u32, FakeConn>,
    next: u32,
    /// The send bound of every connection (charged bytes, as the server's `send_bound`).
    bound: usize,
    /// Every verdict of an offer, in order.
    pub(super) offers: Vec<Offer>,
    /// Seconds of JWT leeway.
    leeway: u64,
}

impl FakeConns {
    fn new(bound: usize) -> Self {
        FakeConns {
            conns: HashMap::new(),
            next: 0,
            bound,
            offers: Vec::new(),
            leeway: 0,
        }
    }

    fn get(&mut self, id: ConnId) -> &mut FakeConn {
        assert_eq!(id.gen, 1, "fake ids all have generation 1");
        self.conns.get_mut(&id.key).expect("a fake connection")
    }

    fn add(&mut self) -> ConnId {
        self.next += 1;
        self.conns.insert(self.next, FakeConn::default());
        ConnId {
            key: self.next,
            gen: 1,
        }
    }

    /// Every frame queued for `id` so far, as JSON (the queue is emptied: "written").
    pub(super) fn take(&mut self, id: ConnId) -> Vec<Value> {
        let q = &mut self.get(id).queue;
        let mut frames = Vec::new();
        loop {
            let mut slices = [IoSlice::new(&[]); 64];
            let n = q.fill_slices(&mut slices);
            if n == 0 {
                break;
            }
            let mut written = 0;
            for s in &slices[..n] {
                frames.push(parse(s));
                written += s.len();
            }
            q.advance(written);
        }
        frames
    }

    /// The code and reason the engine closed `id` with, if it did.
    pub(super) fn closed(&mut self, id: ConnId) -> Option<(CloseCode, String)> {
        self.get(id).closed.clone()
    }

    /// Bytes queued for `id` and not taken.
    pub(super) fn queued(&mut self, id: ConnId) -> usize {
        self.get(id).queue.queued_bytes()
    }
}

/// The JSON payload of one whole unmasked server text frame.
fn parse(frame: &[u8]) -> Value {
    assert_eq!(frame[0], 0x81, "a final text frame");
    let (len, at) = match frame[1] {
        126 => (usize::from(u16::from_be_bytes([frame[2], frame[3]])), 4),
        127 => (
            u64::from_be_bytes(frame[2..10].try_into().expect("8 bytes")) as usize,
            10,
        ),
        n => (usize::from(n), 2),
    };
    assert_eq!(frame.len(), at + len, "one whole frame per slice");
    serde_json::from_slice(&frame[at..]).expect("a JSON server message")
}

impl Outbox for FakeConns {
    type Conn = FakeLink;

    fn conn(&self, id: ConnId) -> Option<FakeLink> {
        self.conns.contains_key(&id.key).then_some(FakeLink(id))
    }

    fn offer(
        &mut self,
        conn: &FakeLink,
        frame: Bytes,
        key: Option<ConflationKey>,
        policy: SlowPolicy,
    ) -> Result<Offer, SendError> {
        let bound = self.bound;
        let c = self.get(conn.0);
        if c.closed.is_some() {
            return Err(SendError::Closed);
        }
        let verdict = c.queue.offer(frame, key, bound, policy);
        self.offers.push(verdict);
        if verdict == Offer::Disconnect {
            self.close_now(conn, CloseCode::POLICY, "slow consumer");
        }
        Ok(verdict)
    }

    fn send_reply(&mut self, conn: &FakeLink, frame: Bytes) -> Result<(), SendError> {
        let c = self.get(conn.0);
        if c.closed.is_some() {
            return Err(SendError::Closed);
        }
        c.queue.push_data(frame);
        Ok(())
    }

    fn close_now(&mut self, conn: &FakeLink, code: CloseCode, reason: &str) {
        let c = self.get(conn.0);
        if c.closed.is_none() {
            c.queue.discard_data();
            c.closed = Some((code, reason.to_string()));
        }
    }

    fn deflate_frame(&mut self, _frame: &Bytes, _window_bits: u8) -> Option<Bytes> {
        None
    }

    fn verify_token(&self, _token: &str) -> Result<Identity, AuthError> {
        Err(AuthError::Disabled)
    }

    fn token_leeway(&self) -> u64 {
        self.leeway
    }
}

/// One worker: its engine, its connections, its inbox and counters.
pub(super) struct Node {
    pub(super) engine: Engine<FakeLink>,
    pub(super) conns: FakeConns,
    inbox: Rc<Inbox<Item>>,
    pub(super) stats: Arc<WorkerPubSubStats>,
}

/// Engines of `workers` workers joined by a fanout mesh, and the time they are handed.
pub(super) struct World {
    pub(super) nodes: Vec<Node>,
    /// The time passed to the next call.
    pub(super) now: Time,
}

/// 2023-11-14, in µs since the epoch: a plausible wall clock.
pub(super) const T0: u64 = 1_700_000_000_000_000;

impl World {
    /// `workers` engines with `set`, each connection bounded to `bound` charged bytes.
    pub(super) fn new(workers: usize, set: Settings, bound: usize) -> Self {
        let set = Arc::new(set);
        let mesh = Mesh::new(workers, 1024);
        let nodes = mesh
            .inboxes
            .into_iter()
            .enumerate()
            .map(|(i, inbox)| {
                let inbox = Rc::new(inbox);
                let stats = Arc::new(WorkerPubSubStats::default());
                let engine = Engine::new(
                    i,
                    workers,
                    set.clone(),
                    inbox.clone(),
                    mesh.outboxes.clone(),
                    stats.clone(),
                );
                Node {
                    engine,
                    conns: FakeConns::new(bound),
                    inbox,
                    stats,
                }
            })
            .collect();
        World {
            nodes,
            now: Time::from_unix_us(T0),
        }
    }

    /// Open a JSON connection on worker `w`, with `identity` if given.
    pub(super) fn open_with(&mut self, w: usize, identity: Option<Arc<Identity>>) -> ConnId {
        let n = &mut self.nodes[w];
        let id = n.conns.add();
        let info = OpenInfo {
            peer: SocketAddr::from(([127, 0, 0, 1], 40000)),
            path: "/",
            query: None,
            origin: None,
            protocol: None,
            identity: identity.as_ref(),
        };
        n.engine.on_open(&mut n.conns, id, &info);
        id
    }

    /// Open a JSON connection on worker `w`.
    pub(super) fn open(&mut self, w: usize) -> ConnId {
        self.open_with(w, None)
    }

    /// Connection `id` of worker `w` sends `text`; then the mesh settles.
    pub(super) fn send(&mut self, w: usize, id: ConnId, text: &str) {
        self.send_unsettled(w, id, text);
        self.settle();
    }

    /// Connection `id` of worker `w` sends `text`; other workers have not seen what it
    /// causes yet.
    pub(super) fn send_unsettled(&mut self, w: usize, id: ConnId, text: &str) {
        let now = self.now;
        let n = &mut self.nodes[w];
        n.engine
            .on_message(&mut n.conns, now, id, Message::Text(text));
    }

    /// Wake every worker until no inbox holds anything.
    pub(super) fn settle(&mut self) {
        let now = self.now;
        for _ in 0..100 {
            for n in &mut self.nodes {
                n.engine.on_wake(&mut n.conns, || now);
            }
            if self.nodes.iter().all(|n| n.inbox.is_empty()) {
                return;
            }
        }
        panic!("the mesh did not settle");
    }

    /// Advance the time by `ticks` timer ticks of 100 ms, ticking every worker each time.
    pub(super) fn tick(&mut self, ticks: u64) {
        for _ in 0..ticks {
            self.now = Time::from_unix_us(self.now.unix_us() + 100_000);
            let now = self.now;
            for n in &mut self.nodes {
                n.engine.on_tick(&mut n.conns, now);
            }
            self.settle();
        }
    }

    /// The server closed connection `id` of worker `w` (after the engine closed it, say).
    pub(super) fn close(&mut self, w: usize, id: ConnId) {
        self.nodes[w].engine.on_close(id);
        self.settle();
    }

    /// What connection `id` of worker `w` has received since last asked.
    pub(super) fn take(&mut self, w: usize, id: ConnId) -> Vec<Value> {
        self.nodes[w].conns.take(id)
    }
}
