//! Counters with a single writer (a relaxed load and store, no locked read-modify-write on
//! the hot path), read from any thread; and [`counter_set!`], which declares a set of them
//! once with its summed snapshot. Every counter in the server comes from here.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// A counter with a single writer.
#[derive(Debug, Default)]
pub(crate) struct Counter(AtomicU64);

impl Counter {
    #[inline]
    pub(crate) fn add(&self, n: u64) {
        self.0.store(self.0.load(Relaxed).wrapping_add(n), Relaxed);
    }

    #[inline]
    pub(crate) fn inc(&self) {
        self.add(1);
    }

    #[inline]
    pub(crate) fn dec(&self) {
        self.0.store(self.0.load(Relaxed).wrapping_sub(1), Relaxed);
    }

    /// Move a gauge by `delta` (single writer).
    #[inline]
    pub(crate) fn shift(&self, delta: i64) {
        self.0
            .store(self.0.load(Relaxed).wrapping_add(delta as u64), Relaxed);
    }

    /// Overwrite the value (single writer).
    #[inline]
    pub(crate) fn set(&self, v: u64) {
        self.0.store(v, Relaxed);
    }

    /// The value now.
    pub(crate) fn get(&self) -> u64 {
        self.0.load(Relaxed)
    }
}

/// Declares a set of per-worker counters once: the worker's struct (a [`Counter`] per name,
/// plus `extra` fields), and the public snapshot summed over workers (a `u64` per name, its
/// doc line, `FIELDS` for exporters, `add` and `values`). The server's and the pub/sub
/// engine's counters both come from here.
macro_rules! counter_set {
    (
        $(#[doc = $wdoc:literal])* worker $worker:ident { $($extra:tt)* }
        $(#[doc = $sdoc:literal])* snapshot $snap:ident;
        $($(#[doc = $doc:literal])* $name:ident),* $(,)?
    ) => {
        $(#[doc = $wdoc])*
        #[derive(Debug, Default)]
        pub(crate) struct $worker {
            $(pub(crate) $name: $crate::counters::Counter,)*
            $($extra)*
        }

        $(#[doc = $sdoc])*
        #[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
        #[non_exhaustive]
        pub struct $snap {
            $($(#[doc = $doc])* pub $name: u64,)*
        }

        impl $snap {
            /// Every field's name and doc line, in declaration order (for exporters).
            pub const FIELDS: &'static [(&'static str, &'static str)] =
                &[$((stringify!($name), concat!($($doc),*)),)*];

            /// Add one worker's counters.
            pub(crate) fn add(&mut self, w: &$worker) {
                $(self.$name += w.$name.get();)*
            }

            /// The values in the order of `FIELDS`.
            pub fn values(&self) -> Vec<u64> {
                vec![$(self.$name,)*]
            }
        }
    };
}
pub(crate) use counter_set;
