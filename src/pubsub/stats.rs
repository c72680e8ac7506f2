//! Pub/sub counters, one set per worker: written only by their worker (no locked
//! read-modify-write on the hot path), summed by readers such as `GET /stats`.

use std::sync::Mutex;

use crate::counters::{counter_set, Counter};

counter_set! {
    /// One worker's pub/sub counters.
    worker WorkerPubSubStats {
        /// Publish-to-write latency of the messages this worker wrote out.
        pub(crate) latency: LatencyHistogram,
        /// The busiest topics this worker owns, refreshed once a second.
        pub(crate) top: Mutex<Vec<TopicSummary>>,
    }
    /// A snapshot of the pub/sub counters, summed over workers.
    snapshot PubSubStats;
    /// Topics known to the workers now (owned, or with local subscribers).
    topics,
    /// Subscriptions now (connection × topic, pending ones included).
    subscriptions,
    /// `pub` messages received from clients and the admin API, counted where they arrive: a
    /// client's by its connection's worker, an admin publish by its topic's owner.
    publishes_in,
    /// Messages given a sequence number by their topic's owner.
    published,
    /// `msg` frames replayed from history to resuming subscribers.
    replayed,
    /// `reset` messages sent (a resume that history could not serve).
    resets,
    /// Bytes the histories of the topics are charged now (data, both frames, overhead).
    history_bytes,
    /// History entries evicted for bytes (a topic's `history_topic_bytes`, or the worker's
    /// share of `history_bytes`), before their count or age would have.
    history_evicted,
    /// `sub` and `pub` refused with `too_many_topics` (the topic table was full).
    topics_refused,
    /// Client messages refused with an `err`.
    client_errors,
    /// Connections closed with 1008 for repeated errors.
    error_closes,
    /// Items sent to other workers (deliveries, requests, replies).
    mesh_items,
    /// Items lost because another worker's inbox and our backlog for it were full.
    mesh_lost,
    /// `sub` and `pub` refused with `forbidden`: the token does not allow the topic.
    forbidden,
    /// Client messages dropped for the per-connection message or byte rate.
    rate_limited,
    /// Connections closed with 1008 "rate limit" (over the rate for too long).
    closed_rate_limit,
    /// Connections closed with 1008 "token expired" (not refreshed before `exp`).
    closed_token_expired,
    /// Tokens refreshed with the `auth` op.
    auth_refreshed,
    /// `auth` ops refused (invalid, expired, another user's token, or auth off).
    auth_refused,
    /// Subscriptions ended by the server because a refreshed token no longer allows them.
    revoked,
}

/// Upper bounds of the latency histogram's buckets, in microseconds (the last bucket,
/// `+Inf`, is implied).
pub const LATENCY_BOUNDS_US: [u64; 17] = [
    10, 25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000,
    500_000, 1_000_000, 2_500_000,
];

/// A fixed-bucket latency histogram with a single writer (its worker): recording is a
/// bucket search and two relaxed stores, reading sums the workers' copies.
#[derive(Debug, Default)]
pub(crate) struct LatencyHistogram {
    /// Samples per bucket; the last one is `+Inf`.
    buckets: [Counter; LATENCY_BOUNDS_US.len() + 1],
    sum_us: Counter,
}

impl LatencyHistogram {
    /// Record one sample.
    pub(crate) fn record(&self, us: u64) {
        let i = LATENCY_BOUNDS_US.partition_point(|&b| b < us);
        self.buckets[i].inc();
        self.sum_us.add(us);
    }

    /// A copy of the current values.
    pub(crate) fn snapshot(&self) -> LatencySnapshot {
        let mut s = LatencySnapshot::default();
        s.add(self);
        s
    }
}

/// Publish-to-write latency, summed over workers: from the moment the topic's owner
/// stamped the message to the vectored write that handed it to the kernel on a subscriber's
/// worker, one sample per message and worker (not per subscriber).
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LatencySnapshot {
    /// Samples per bucket (not cumulative); bounds in [`LATENCY_BOUNDS_US`], then `+Inf`.
    pub buckets: [u64; LATENCY_BOUNDS_US.len() + 1],
    /// Sum of all samples in microseconds.
    pub sum_us: u64,
}

impl LatencySnapshot {
    /// Add one worker's histogram.
    pub(crate) fn add(&mut self, h: &LatencyHistogram) {
        for (acc, b) in self.buckets.iter_mut().zip(&h.buckets) {
            *acc += b.get();
        }
        self.sum_us += h.sum_us.get();
    }

    /// Add another snapshot.
    pub fn merge(&mut self, other: &LatencySnapshot) {
        for (acc, b) in self.buckets.iter_mut().zip(&other.buckets) {
            *acc += b;
        }
        self.sum_us += other.sum_us;
    }

    /// Number of samples.
    pub fn count(&self) -> u64 {
        self.buckets.iter().sum()
    }
}

/// One of the busiest topics of a worker, for `GET /topics`.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct TopicSummary {
    /// The topic's name.
    pub name: String,
    /// The worker that owns it (assigns seq, keeps history).
    pub owner: usize,
    /// The last sequence number: messages published since the topic was created.
    pub seq: u64,
    /// Messages per second over the last sweep interval.
    pub rate: f64,
    /// Subscribers on the owner's worker.
    pub local_subscribers: usize,
    /// Other workers with subscribers.
    pub remote_workers: usize,
    /// Messages in the topic's history.
    pub history: usize,
}

/// How many topics each worker reports in `GET /topics`.
pub(crate) const TOP_TOPICS: usize = 100;
