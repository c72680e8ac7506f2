//! The shutdown bell: rung from any thread (signal handler thread, embedding code), awaited by
//! each worker's tasks. Carries the drain window.

use std::{
    future::Future,
    pin::Pin,
    sync::{
        atomic::{AtomicU64, Ordering},
        Mutex,
    },
    task::{Context, Poll, Waker},
    time::Duration,
};

/// A one-shot cross-thread notification carrying a drain window.
#[derive(Debug, Default)]
pub(crate) struct Bell {
    /// 0 while quiet; the drain window in milliseconds plus one once rung.
    state: AtomicU64,
    wakers: Mutex<Vec<Waker>>,
}

impl Bell {
    /// Ring: every waiter (now or later) resolves with `window`. Later rings are ignored.
    pub(crate) fn ring(&self, window: Duration) {
        let v = (window.as_millis() as u64).saturating_add(1);
        if self
            .state
            .compare_exchange(0, v, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return;
        }
        let wakers = std::mem::take(&mut *self.wakers.lock().unwrap_or_else(|p| p.into_inner()));
        for w in wakers {
            w.wake();
        }
    }

    /// Whether the bell has rung.
    pub(crate) fn rung(&self) -> bool {
        self.state.load(Ordering::Acquire) != 0
    }

    /// Wait for the bell; resolves with the drain window.
    pub(crate) fn wait(&self) -> BellWait<'_> {
        BellWait { bell: self }
    }
}

/// Future returned by [`Bell::wait`].
pub(crate) struct BellWait<'a> {
    bell: &'a Bell,
}

impl Future for BellWait<'_> {
    type Output = Duration;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Duration> {
        let read = |b: &Bell| match b.state.load(Ordering::Acquire) {
            0 => None,
            v => Some(Duration::from_millis(v - 1)),
        };
        if let Some(d) = read(self.bell) {
            return Poll::Ready(d);
        }
        let mut wakers = self.bell.wakers.lock().unwrap_or_else(|p| p.into_inner());
        // Re-check under the lock: a ring between the load and the lock would be missed.
        if let Some(d) = read(self.bell) {
            return Poll::Ready(d);
        }
        if !wakers.iter().any(|w| w.will_wake(cx.waker())) {
            wakers.push(cx.waker().clone());
        }
        Poll::Pending
    }
}
