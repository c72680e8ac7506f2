//! Pub/sub counters, one set per worker: written only by their worker (no locked
//! read-modify-write on the hot path), summed by readers such as `GET /stats`.

use crate::server::stats::Counter;

macro_rules! counters {
    ($($(#[doc = $doc:literal])* $name:ident),* $(,)?) => {
        /// One worker's pub/sub counters.
        #[derive(Debug, Default)]
        pub struct WorkerPubSubStats {
            $(pub(crate) $name: Counter,)*
        }

        /// A snapshot of the pub/sub counters, summed over workers.
        #[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
        #[non_exhaustive]
        pub struct PubSubStats {
            $($(#[doc = $doc])* pub $name: u64,)*
        }

        impl PubSubStats {
            /// Add one worker's counters.
            pub fn add(&mut self, w: &WorkerPubSubStats) {
                $(self.$name += w.$name.get();)*
            }
        }
    };
}

counters! {
    /// Topics known to the workers now (owned, or with local subscribers).
    topics,
    /// Subscriptions now (connection × topic, pending ones included).
    subscriptions,
    /// `pub` messages received from clients and the admin API.
    publishes_in,
    /// Messages given a sequence number by their topic's owner.
    published,
    /// `msg` frames replayed from history to resuming subscribers.
    replayed,
    /// `reset` messages sent (a resume that history could not serve).
    resets,
    /// Client messages refused with an `err`.
    client_errors,
    /// Connections closed with 1008 for repeated errors.
    error_closes,
    /// Items sent to other workers (deliveries, requests, replies).
    mesh_items,
    /// Items lost because another worker's inbox and our backlog for it were full.
    mesh_lost,
}
