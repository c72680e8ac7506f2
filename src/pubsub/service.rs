//! Wiring of the pub/sub layer into a server: the fanout mesh between workers, one
//! [`PubSub`] handler per worker, and [`Publisher`]s for backends that publish without a
//! WebSocket (the admin API).

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use bytes::Bytes;

use super::{
    engine::{owner_of, Item, PubReq, PubSub, Reply, Settings},
    stats::{LatencySnapshot, PubSubStats, TopicSummary, WorkerPubSubStats},
    wire::{check_pub, Encoding, ErrorCode, Payload},
    WireError,
};
use crate::{
    config::{Config, SlowConsumer},
    fanout::{Inbox, Mesh, MeshStats, Outboxes, Undelivered},
    queue::SlowPolicy,
    server::ServerBuilder,
};

/// The pub/sub layer of one server: build it from the configuration, then
/// [`install`](Self::install) it on a [`ServerBuilder`].
pub struct PubSubService {
    workers: usize,
    set: Arc<Settings>,
    stats: Vec<Arc<WorkerPubSubStats>>,
    inboxes: Mutex<Vec<Option<Inbox<Item>>>>,
    outboxes: Mutex<Outboxes<Item>>,
    mesh: MeshStats,
}

/// Why a publish through a [`Publisher`] failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PublishError {
    /// The publish breaks a rule a WebSocket `pub` must pass ([`check_pub`]): its
    /// [`WireError::code`] is the code a client's `err` would carry.
    #[error(transparent)]
    Invalid(#[from] WireError),
    /// The topic is new and the server holds the most topics allowed (`max_topics`).
    #[error("the server holds the most topics allowed")]
    TooManyTopics,
    /// The owner worker's inbox is full: retry later.
    #[error("the topic's worker is busy; retry")]
    Busy,
    /// No answer in time.
    #[error("no answer from the topic's worker in time")]
    Timeout,
    /// The server is shutting down.
    #[error("the server is shutting down")]
    Closed,
}

impl PublishError {
    /// A short stable code for API answers.
    pub fn code(&self) -> &'static str {
        match self {
            PublishError::Invalid(e) => e.code(),
            PublishError::TooManyTopics => ErrorCode::TooManyTopics,
            PublishError::Busy => ErrorCode::Busy,
            PublishError::Timeout => ErrorCode::Timeout,
            PublishError::Closed => ErrorCode::Closed,
        }
        .as_str()
    }
}

impl PubSubService {
    /// Build the mesh and settings for `cfg.worker_count()` workers.
    pub fn new(cfg: &Config) -> Arc<Self> {
        let workers = cfg.worker_count();
        let mesh = Mesh::new(workers, cfg.inbox_capacity);
        let ticks = (cfg.history_max_age.as_millis() / 100).max(1) as u64;
        let set = Settings {
            history_len: cfg.history_len,
            history_max_age_ticks: ticks,
            history_topic_bytes: cfg.history_topic_bytes,
            history_bytes: cfg.history_bytes,
            max_topics: cfg.max_topics,
            default_policy: match cfg.slow_consumer {
                SlowConsumer::Disconnect => SlowPolicy::Disconnect,
                SlowConsumer::Drop => SlowPolicy::Drop,
            },
            drop_topics: cfg
                .drop_topics
                .iter()
                .map(|p| match p.strip_suffix('*') {
                    Some(prefix) => (prefix.to_string(), true),
                    None => (p.clone(), false),
                })
                .collect(),
            max_subscriptions: cfg.limits.max_subscriptions,
            rate: super::engine::RateSettings {
                msgs_per_sec: u64::from(cfg.limits.max_msgs_per_sec),
                bytes_per_sec: cfg.limits.max_bytes_per_sec as u64,
                burst_ms: cfg.limits.rate_burst.as_millis() as u64,
            },
            auth_required: cfg.auth.mode == crate::config::AuthMode::Required,
        };
        let stats_view = mesh.outboxes.stats();
        Arc::new(PubSubService {
            workers,
            set: Arc::new(set),
            stats: (0..workers).map(|_| Arc::default()).collect(),
            inboxes: Mutex::new(mesh.inboxes.into_iter().map(Some).collect()),
            outboxes: Mutex::new(mesh.outboxes),
            mesh: stats_view,
        })
    }

    /// Add the protocol's subprotocols to `cfg` (call before building the server).
    pub fn configure(cfg: &mut Config) {
        for name in Encoding::SUBPROTOCOLS {
            if !cfg.subprotocols.iter().any(|s| s == name) {
                cfg.subprotocols.push(name.to_string());
            }
        }
    }

    /// Make `builder` run the pub/sub handler on every worker.
    pub fn install(self: &Arc<Self>, builder: ServerBuilder) -> ServerBuilder {
        let svc = self.clone();
        builder.handler(move |i| svc.handler(i))
    }

    /// The handler of worker `i` (each worker's once; later calls panic).
    fn handler(&self, i: usize) -> PubSub {
        let inbox = self.inboxes.lock().unwrap_or_else(|p| p.into_inner())[i]
            .take()
            .expect("one handler per worker");
        let out = self
            .outboxes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        PubSub::new(
            i,
            self.workers,
            self.set.clone(),
            inbox,
            out,
            self.stats[i].clone(),
        )
    }

    /// A handle to publish from another thread (one per thread: it is `Send`, not `Sync`).
    pub fn publisher(&self) -> Publisher {
        Publisher {
            out: self
                .outboxes
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
            workers: self.workers,
        }
    }

    /// The pub/sub counters summed over workers.
    pub fn stats(&self) -> PubSubStats {
        let mut s = PubSubStats::default();
        for w in &self.stats {
            s.add(w);
        }
        s
    }

    /// The pub/sub counters of each worker.
    pub fn worker_stats(&self) -> Vec<PubSubStats> {
        self.stats
            .iter()
            .map(|w| {
                let mut s = PubSubStats::default();
                s.add(w);
                s
            })
            .collect()
    }

    /// Publish-to-write latency of each worker (see [`LatencySnapshot`]).
    pub fn worker_latency(&self) -> Vec<LatencySnapshot> {
        self.stats.iter().map(|w| w.latency.snapshot()).collect()
    }

    /// The `limit` busiest topics (by messages per second over the last second), from every
    /// owner worker's list.
    pub fn top_topics(&self, limit: usize) -> Vec<TopicSummary> {
        let mut all: Vec<TopicSummary> = self
            .stats
            .iter()
            .filter_map(|w| w.top.lock().ok().map(|t| t.clone()))
            .flatten()
            .collect();
        all.sort_by(|a, b| b.rate.total_cmp(&a.rate).then(b.seq.cmp(&a.seq)));
        all.truncate(limit);
        all
    }

    /// The fanout mesh's counters.
    pub fn mesh(&self) -> &MeshStats {
        &self.mesh
    }
}

/// Publishes to topics from a thread outside the workers (the admin API, an embedder).
pub struct Publisher {
    out: Outboxes<Item>,
    workers: usize,
}

impl Publisher {
    /// Publish `data` (one JSON value when `json`, else opaque bytes) to `topic`, wait for
    /// the owner worker to assign its seq, and return it.
    ///
    /// The topic, the key and the data are checked by [`check_pub`], exactly as the fields of
    /// a WebSocket `pub` (raw bytes, as the binary encoding carries them: a key that is not
    /// UTF-8 is refused, not replaced); a failure is [`PublishError::Invalid`] and nothing is
    /// sent to the worker.
    pub fn publish(
        &self,
        topic: &[u8],
        data: Bytes,
        json: bool,
        key: Option<&[u8]>,
        timeout: Duration,
    ) -> Result<u64, PublishError> {
        let checked = check_pub(topic, key, &data, json)?;
        let name: Arc<str> = checked.topic.as_str().into();
        let key = checked.key.map(Box::from);
        let data = match checked.data {
            // JSON data is kept as the value's exact text, without the whitespace around it;
            // `text` borrows from `data`, so the slice is within it.
            Payload::Json(text) => data.slice_ref(text.as_bytes()),
            Payload::Bytes(_) => data.clone(),
        };
        let (tx, rx) = crossbeam_channel::bounded(1);
        let owner = owner_of(&name, self.workers);
        let item = Item::Publish(Box::new(PubReq {
            name,
            data,
            json,
            key,
            reply: Reply::Admin(tx),
        }));
        match self.out.send(owner, item) {
            Ok(()) => {}
            Err(Undelivered::Full(_)) => return Err(PublishError::Busy),
            Err(Undelivered::Closed(_)) => return Err(PublishError::Closed),
        }
        match rx.recv_timeout(timeout) {
            // No message has seq 0: the owner refused to add the topic.
            Ok(0) => Err(PublishError::TooManyTopics),
            Ok(seq) => Ok(seq),
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => Err(PublishError::Timeout),
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => Err(PublishError::Closed),
        }
    }
}
