//! The doorbell: a cross-thread wake-up that costs the ringer nothing while the listener is
//! awake. The listener (one task on one worker) arms it just before it parks; a ringer (any
//! thread, after making the listener's condition true) wakes the listener only if it is armed.
//!
//! Protocol (the listener's "condition" is, for an inbox, "the channel is not empty or is
//! disconnected"):
//!
//! 1. Listener: check the condition; if true, [`Doorbell::disarm`] and run.
//! 2. Listener: [`Doorbell::arm`] (store the waker, `armed = true`, SeqCst fence).
//! 3. Listener: check the condition again; if true, `disarm` and run, else return `Pending`.
//! 4. Ringer: make the condition true (push an item), then [`Doorbell::ring`]: SeqCst fence,
//!    load `armed`; only if it is set, swap it to false and, if the swap won, wake the waker.
//!
//! The two fences make this a Dekker pair: either the listener's re-check (3) sees the item,
//! or the ringer's load (4) sees `armed`, or both. It cannot happen that neither does, so a
//! parked listener is never left asleep with work queued.

use std::{
    sync::{
        atomic::{fence, AtomicBool, AtomicU64, Ordering},
        Mutex,
    },
    task::Waker,
};

/// A wake-up slot that rings only when its listener is parked; see the module docs.
#[derive(Debug, Default)]
pub struct Doorbell {
    /// Set by the listener right before it parks, cleared by the ringer that wakes it (or by
    /// the listener when it runs again). Read by every ringer on every ring.
    armed: AtomicBool,
    /// The listener's waker. Locked by the listener when it arms and by the one ringer that
    /// won the swap, so it is practically never contended.
    waker: Mutex<Option<Waker>>,
    /// Wakes actually sent. Written only on the (rare, already expensive) wake path.
    rings: AtomicU64,
}

impl Doorbell {
    /// A disarmed doorbell with no waker.
    pub fn new() -> Self {
        Self::default()
    }

    /// Listener: store `waker` and arm. The caller must re-check its condition afterwards and
    /// call [`disarm`](Self::disarm) if it holds (step 3 of the protocol).
    pub fn arm(&self, waker: &Waker) {
        {
            let mut slot = self.waker.lock().unwrap_or_else(|p| p.into_inner());
            match &mut *slot {
                Some(w) if w.will_wake(waker) => {}
                slot => *slot = Some(waker.clone()),
            }
        }
        // Release: a ringer whose swap reads `true` also sees the waker stored above.
        self.armed.store(true, Ordering::Release);
        // Orders the store above before the caller's re-check of its condition (Dekker).
        fence(Ordering::SeqCst);
    }

    /// Listener: clear the arm (it is running and will re-check before it parks again). A
    /// ringer racing with this may still wake the listener once, which is harmless.
    #[inline]
    pub fn disarm(&self) {
        if self.armed.load(Ordering::Relaxed) {
            self.armed.store(false, Ordering::Relaxed);
        }
    }

    /// Ringer: after making the listener's condition true, wake it if (and only if) it is
    /// armed. Returns whether this call sent the wake. Costs a fence and a load when the
    /// listener is awake.
    #[inline]
    pub fn ring(&self) -> bool {
        // Orders the caller's push before the load of `armed` (Dekker).
        fence(Ordering::SeqCst);
        if !self.armed.load(Ordering::Relaxed) {
            return false;
        }
        self.ring_slow()
    }

    #[cold]
    fn ring_slow(&self) -> bool {
        // Only one ringer wins the arm; the others have nothing to do.
        if !self.armed.swap(false, Ordering::AcqRel) {
            return false;
        }
        let waker = self.waker.lock().unwrap_or_else(|p| p.into_inner()).clone();
        self.rings.fetch_add(1, Ordering::Relaxed);
        if let Some(w) = waker {
            w.wake();
        }
        true
    }

    /// Whether the listener is armed now (a racy snapshot, for tests and diagnostics).
    pub fn is_armed(&self) -> bool {
        self.armed.load(Ordering::Acquire)
    }

    /// Wakes this doorbell has sent so far.
    pub fn rings(&self) -> u64 {
        self.rings.load(Ordering::Relaxed)
    }

    /// Listener: drop the stored waker (on the listener's own thread, when it goes away).
    pub fn clear(&self) {
        self.disarm();
        let w = self.waker.lock().unwrap_or_else(|p| p.into_inner()).take();
        drop(w);
    }
}

#[cfg(test)]
mod tests {
    use std::{
        sync::{
            atomic::{AtomicUsize, Ordering},
            Arc,
        },
        task::{Wake, Waker},
    };

    use super::Doorbell;

    #[derive(Default)]
    struct CountWake(AtomicUsize);

    impl Wake for CountWake {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    #[test]
    fn rings_only_when_armed() {
        let bell = Doorbell::new();
        let count = Arc::new(CountWake::default());
        let waker = Waker::from(count.clone());
        assert!(!bell.ring(), "a disarmed bell does not ring");
        bell.arm(&waker);
        assert!(bell.is_armed());
        assert!(bell.ring());
        assert!(!bell.ring(), "one arm is one wake");
        assert_eq!(count.0.load(Ordering::Relaxed), 1);
        assert_eq!(bell.rings(), 1);
    }

    #[test]
    fn disarm_suppresses_the_ring() {
        let bell = Doorbell::new();
        let count = Arc::new(CountWake::default());
        bell.arm(&Waker::from(count.clone()));
        bell.disarm();
        assert!(!bell.ring());
        assert_eq!(count.0.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn rearm_replaces_a_different_waker() {
        let bell = Doorbell::new();
        let a = Arc::new(CountWake::default());
        let b = Arc::new(CountWake::default());
        bell.arm(&Waker::from(a.clone()));
        bell.arm(&Waker::from(b.clone()));
        assert!(bell.ring());
        assert_eq!(a.0.load(Ordering::Relaxed), 0);
        assert_eq!(b.0.load(Ordering::Relaxed), 1);
        bell.clear();
        bell.arm(&Waker::from(b.clone()));
        bell.clear();
        assert!(!bell.ring(), "clear disarms");
    }

    /// Many racing ringers against one arm: exactly one wins.
    #[test]
    fn racing_ringers_wake_once() {
        for _ in 0..200 {
            let bell = Arc::new(Doorbell::new());
            let count = Arc::new(CountWake::default());
            bell.arm(&Waker::from(count.clone()));
            let won: usize = std::thread::scope(|s| {
                let hs: Vec<_> = (0..4)
                    .map(|_| {
                        let bell = &bell;
                        s.spawn(move || bell.ring() as usize)
                    })
                    .collect();
                hs.into_iter().map(|h| h.join().unwrap()).sum()
            });
            assert_eq!(won, 1);
            assert_eq!(count.0.load(Ordering::Relaxed), 1);
        }
    }
}
