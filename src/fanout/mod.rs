//! Cross-worker delivery inside one process: one bounded lock-free inbox (a crossbeam
//! channel) per worker, the [`Outboxes`] handle that producers (in the server: each worker's
//! pub/sub engine and the admin API's threads) put items into, and the [`Doorbell`] that
//! wakes a worker's inbox task only when it is parked. One item per interested worker per
//! publish, never one per subscriber. See `docs/fanout.md` for the design, the arming
//! protocol, how the pub/sub engine uses it and the measured figures.
//!
//! ```text
//!  producer (any thread)                               worker w (its monoio runtime)
//!  Outboxes::send(w, item)  (or push + flush)          Inbox::recv_batch(&mut buf, max).await
//!    try_send into w's crossbeam bounded channel         drain up to max; if none:
//!    Full/Closed: hand the item back                       arm the doorbell, drain again,
//!    doorbell.ring(): fence + load `armed`;                Pending
//!      only if armed: swap false, wake the task  ───────►  (monoio: remote wake + eventfd)
//! ```
//!
//! This module owns the channels, the doorbells and their counters. It does not know what an
//! item is, which worker is interested in a topic, or what to do with an item that does not
//! fit: [`Undelivered::Full`] hands it back, and [`Backlog`] is the block-free spill a producer
//! can keep to retry it later, in order.

mod backlog;
pub mod doorbell;

use std::{
    cell::Cell,
    fmt,
    future::Future,
    marker::PhantomData,
    ops::Deref,
    pin::Pin,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex,
    },
    task::{Context, Poll},
};

use crossbeam_channel::{Receiver, Sender, TryRecvError, TrySendError};

use crate::counters::Counter;

pub use backlog::{Backlog, Delivery};
pub use doorbell::Doorbell;

/// A value on its own cache line (128 bytes: adjacent-line prefetch on x86), so that what
/// one thread writes does not evict what other threads read.
#[derive(Debug, Default)]
#[repr(align(128))]
struct Padded<T>(T);

impl<T> Deref for Padded<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

/// The receiver's counters; written only by the [`Inbox`] owner.
#[derive(Debug, Default)]
struct InboxCounters {
    received: Counter,
    batches: Counter,
    waits: Counter,
}

/// What senders share about one inbox: its doorbell (read on every send) and, on another
/// cache line, the receiver's counters (written on every batch).
#[derive(Debug, Default)]
struct InboxShared {
    bell: Padded<Doorbell>,
    counters: Padded<InboxCounters>,
}

/// One producer handle's counters; written only by the thread that holds that handle.
#[derive(Debug, Default)]
struct ProducerCounters {
    sent: Counter,
    full: Counter,
    closed: Counter,
    rings: Counter,
}

/// State shared by every handle of one mesh.
#[derive(Debug)]
struct MeshShared {
    inboxes: Box<[InboxShared]>,
    /// Every producer handle's counters, ever created (a handle is cloned once per producer
    /// thread, so this stays short).
    producers: Mutex<Vec<Arc<Padded<ProducerCounters>>>>,
    /// Live [`Outboxes`] handles; the last one to drop wakes every parked inbox.
    live: AtomicUsize,
}

/// Counters of one inbox, read from any thread.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct InboxStats {
    /// Items taken out of the inbox.
    pub received: u64,
    /// Non-empty batches drained (`received / batches` is the mean batch size).
    pub batches: u64,
    /// Times `recv_batch` or `ready` found the inbox empty, armed the doorbell and returned
    /// `Pending` (the inbox task parked).
    pub waits: u64,
    /// Wakes senders actually sent to this inbox: about one per `waits`. A sender racing with
    /// the re-check after arming can also ring a task that did not park (a spurious wake).
    pub rings: u64,
}

/// Counters of producer handles (one handle, or summed over all of them).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ProducerStats {
    /// Items accepted by an inbox.
    pub sent: u64,
    /// Items refused because the inbox was full (handed back to the caller).
    pub full: u64,
    /// Items refused because the inbox's worker has gone (handed back to the caller).
    pub closed: u64,
    /// Wakes sent: sends that found the receiver parked.
    pub rings: u64,
}

impl ProducerStats {
    fn read(c: &ProducerCounters) -> Self {
        Self {
            sent: c.sent.get(),
            full: c.full.get(),
            closed: c.closed.get(),
            rings: c.rings.get(),
        }
    }

    fn add(&mut self, o: Self) {
        self.sent += o.sent;
        self.full += o.full;
        self.closed += o.closed;
        self.rings += o.rings;
    }
}

/// A mesh of `workers` inboxes, as built by [`Mesh::new`]: hand `inboxes[i]` to worker `i`
/// and a clone of `outboxes` to every producer thread.
#[derive(Debug)]
pub struct Mesh<T> {
    /// One inbox per worker, in worker order.
    pub inboxes: Vec<Inbox<T>>,
    /// The producer handle; clone it once per producer thread.
    pub outboxes: Outboxes<T>,
}

impl<T> Mesh<T> {
    /// Build a mesh of `workers` inboxes, each a bounded channel of `capacity` items.
    ///
    /// # Panics
    /// If `workers` or `capacity` is zero (a zero-capacity crossbeam channel is a rendezvous
    /// channel, which `try_send` could only fill while the receiver is blocked in `recv`).
    pub fn new(workers: usize, capacity: usize) -> Self {
        assert!(workers > 0, "a mesh needs at least one worker");
        assert!(
            capacity > 0,
            "an inbox needs a capacity of at least one item"
        );
        let shared = Arc::new(MeshShared {
            inboxes: (0..workers).map(|_| InboxShared::default()).collect(),
            producers: Mutex::new(Vec::new()),
            live: AtomicUsize::new(1),
        });
        let (senders, inboxes) = (0..workers)
            .map(|index| {
                let (tx, rx) = crossbeam_channel::bounded(capacity);
                let inbox = Inbox {
                    rx,
                    shared: shared.clone(),
                    index,
                    _not_sync: PhantomData,
                };
                (tx, inbox)
            })
            .unzip();
        let outboxes = Outboxes::with_senders(senders, shared);
        Self { inboxes, outboxes }
    }
}

/// Why [`Outboxes::send`] refused an item; the item is handed back either way.
#[derive(PartialEq, Eq, Clone, Copy)]
pub enum Undelivered<T> {
    /// The worker's inbox holds `capacity` items: it is behind. Retry later (see
    /// [`Backlog`]), or drop and count.
    Full(T),
    /// The worker's [`Inbox`] has been dropped (the worker has exited).
    Closed(T),
}

impl<T> Undelivered<T> {
    /// The item that was not sent.
    pub fn into_inner(self) -> T {
        match self {
            Self::Full(t) | Self::Closed(t) => t,
        }
    }

    /// Whether the inbox was full (as opposed to closed).
    pub fn is_full(&self) -> bool {
        matches!(self, Self::Full(_))
    }
}

impl<T> fmt::Debug for Undelivered<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Full(_) => "Full(..)",
            Self::Closed(_) => "Closed(..)",
        })
    }
}

impl<T> fmt::Display for Undelivered<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Full(_) => "worker inbox is full",
            Self::Closed(_) => "worker inbox is closed",
        })
    }
}

impl<T> std::error::Error for Undelivered<T> {}

/// A producer's handle on every worker's inbox.
///
/// `Send` but not `Sync`: each producer thread holds its own clone, so its counters have a
/// single writer. Cloning registers fresh counters (clone once per thread, not per message).
/// When the last handle is dropped, every inbox closes and its `recv_batch` returns `None`.
///
/// Two ways to send: [`send`](Self::send) rings at once; [`push`](Self::push) defers the
/// ring to the next [`flush`](Self::flush), so a producer that emits many items in one wake
/// (a worker processing a read buffer full of publishes) rings each parked worker once per
/// wake instead of once per item.
pub struct Outboxes<T> {
    senders: Vec<Sender<T>>,
    shared: Arc<MeshShared>,
    counters: Arc<Padded<ProducerCounters>>,
    /// Workers pushed to since the last flush (the `Cell`s also make the handle `!Sync`).
    deferred: Box<[Cell<bool>]>,
    any_deferred: Cell<bool>,
}

impl<T> Outboxes<T> {
    fn with_senders(senders: Vec<Sender<T>>, shared: Arc<MeshShared>) -> Self {
        let counters = Arc::new(Padded(ProducerCounters::default()));
        shared
            .producers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(counters.clone());
        let deferred = (0..senders.len()).map(|_| Cell::new(false)).collect();
        Self {
            senders,
            shared,
            counters,
            deferred,
            any_deferred: Cell::new(false),
        }
    }

    /// Number of workers (inboxes) in the mesh.
    pub fn workers(&self) -> usize {
        self.shared.inboxes.len()
    }

    /// Put `item` into `worker`'s inbox without blocking, and wake the worker if it is
    /// parked. On [`Undelivered`] the item comes back and nothing was queued.
    ///
    /// # Panics
    /// If `worker >= self.workers()`.
    #[inline]
    pub fn send(&self, worker: usize, item: T) -> Result<(), Undelivered<T>> {
        self.try_put(worker, item)?;
        self.ring(worker);
        Ok(())
    }

    /// Put `item` into `worker`'s inbox without blocking, and leave the wake to the next
    /// [`flush`](Self::flush). Until then a parked worker does not see the item, so call
    /// `flush` before this thread waits for anything (at the end of every wake); dropping the
    /// handle flushes too. On [`Undelivered`] the item comes back and nothing was queued.
    ///
    /// A `Full` inbox is rung at once: its worker may be parked with our unflushed items, and
    /// the caller is about to wait for it to make room.
    ///
    /// # Panics
    /// If `worker >= self.workers()`.
    #[inline]
    pub fn push(&self, worker: usize, item: T) -> Result<(), Undelivered<T>> {
        match self.try_put(worker, item) {
            Ok(()) => {
                self.deferred[worker].set(true);
                self.any_deferred.set(true);
                Ok(())
            }
            Err(Undelivered::Full(t)) => {
                self.deferred[worker].set(false);
                self.ring(worker);
                Err(Undelivered::Full(t))
            }
            Err(e) => Err(e),
        }
    }

    /// Ring every parked worker that [`push`](Self::push) put items for since the last flush.
    /// Returns the wakes sent. Costs nothing when nothing was pushed.
    #[inline]
    pub fn flush(&self) -> usize {
        if !self.any_deferred.replace(false) {
            return 0;
        }
        self.flush_slow()
    }

    fn flush_slow(&self) -> usize {
        let mut rung = 0;
        for (worker, pending) in self.deferred.iter().enumerate() {
            if pending.replace(false) && self.ring(worker) {
                rung += 1;
            }
        }
        rung
    }

    /// Whether items pushed since the last flush may still need a ring.
    pub fn has_deferred(&self) -> bool {
        self.any_deferred.get()
    }

    #[inline]
    fn try_put(&self, worker: usize, item: T) -> Result<(), Undelivered<T>> {
        let c = &self.counters;
        match self.senders[worker].try_send(item) {
            Ok(()) => {
                c.sent.add(1);
                Ok(())
            }
            Err(TrySendError::Full(t)) => {
                c.full.add(1);
                Err(Undelivered::Full(t))
            }
            Err(TrySendError::Disconnected(t)) => {
                c.closed.add(1);
                Err(Undelivered::Closed(t))
            }
        }
    }

    #[inline]
    fn ring(&self, worker: usize) -> bool {
        let rung = self.shared.inboxes[worker].bell.ring();
        if rung {
            self.counters.rings.add(1);
        }
        rung
    }

    /// Items queued in `worker`'s inbox now (a racy snapshot).
    pub fn queued(&self, worker: usize) -> usize {
        self.senders[worker].len()
    }

    /// This handle's counters.
    pub fn counters(&self) -> ProducerStats {
        ProducerStats::read(&self.counters)
    }

    /// A read-only view of the whole mesh's counters, for any thread.
    pub fn stats(&self) -> MeshStats {
        MeshStats {
            shared: self.shared.clone(),
        }
    }
}

impl<T> Clone for Outboxes<T> {
    fn clone(&self) -> Self {
        self.shared.live.fetch_add(1, Ordering::Relaxed);
        Self::with_senders(self.senders.clone(), self.shared.clone())
    }
}

impl<T> Drop for Outboxes<T> {
    fn drop(&mut self) {
        // Items pushed without a ring must not be stranded.
        self.flush();
        // Drop our senders first, so that the last handle's ring finds every channel
        // disconnected.
        self.senders.clear();
        if self.shared.live.fetch_sub(1, Ordering::AcqRel) == 1 {
            // Disconnection is the inbox's other wake condition: ring every parked one.
            for worker in 0..self.workers() {
                self.ring(worker);
            }
        }
    }
}

impl<T> fmt::Debug for Outboxes<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Outboxes")
            .field("workers", &self.workers())
            .field("counters", &self.counters())
            .finish()
    }
}

/// A read-only view of a mesh's counters; cheap to clone, usable from any thread.
#[derive(Clone)]
pub struct MeshStats {
    shared: Arc<MeshShared>,
}

impl MeshStats {
    /// Number of workers (inboxes).
    pub fn workers(&self) -> usize {
        self.shared.inboxes.len()
    }

    /// Counters of `worker`'s inbox.
    pub fn inbox(&self, worker: usize) -> InboxStats {
        read_inbox(&self.shared.inboxes[worker])
    }

    /// Counters of every producer handle ever created, summed.
    pub fn producers(&self) -> ProducerStats {
        let list = self
            .shared
            .producers
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let mut sum = ProducerStats::default();
        for c in list.iter() {
            sum.add(ProducerStats::read(c));
        }
        sum
    }

    /// Whether `worker`'s doorbell is armed now (its task is parked in `recv_batch`).
    pub fn is_parked(&self, worker: usize) -> bool {
        self.shared.inboxes[worker].bell.is_armed()
    }
}

impl fmt::Debug for MeshStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MeshStats")
            .field("workers", &self.workers())
            .field("producers", &self.producers())
            .finish()
    }
}

fn read_inbox(s: &InboxShared) -> InboxStats {
    InboxStats {
        received: s.counters.received.get(),
        batches: s.counters.batches.get(),
        waits: s.counters.waits.get(),
        rings: s.bell.rings(),
    }
}

/// One worker's inbox: the receiving end of its channel and the owner of its doorbell.
/// Move it to the worker's thread and drain it there: `Send` but not `Sync`, so every
/// method runs on that one thread (its counters have a single writer), and not `Clone`.
///
/// Two ways to consume: [`recv_batch`](Self::recv_batch) (wait, then drain), or, when the
/// inbox is shared inside a worker (an `Rc`), [`ready`](Self::ready) in the inbox task plus
/// [`try_recv_batch`](Self::try_recv_batch) wherever the worker wants to drain, e.g. at the
/// end of every wake. Only one task may wait on an inbox at a time: the doorbell holds one
/// waker.
pub struct Inbox<T> {
    rx: Receiver<T>,
    shared: Arc<MeshShared>,
    index: usize,
    _not_sync: PhantomData<Cell<()>>,
}

impl<T> Inbox<T> {
    /// The worker index this inbox belongs to.
    pub fn index(&self) -> usize {
        self.index
    }

    fn me(&self) -> &InboxShared {
        &self.shared.inboxes[self.index]
    }

    /// Drain up to `max` items into `buf` without waiting. `Some(n)` (`n` may be 0 when the
    /// inbox is empty), or `None` once every producer handle has gone and the inbox is empty.
    pub fn try_recv_batch(&self, buf: &mut Vec<T>, max: usize) -> Option<usize> {
        let mut n = 0;
        let max = max.max(1);
        let mut closed = false;
        while n < max {
            match self.rx.try_recv() {
                Ok(t) => {
                    buf.push(t);
                    n += 1;
                }
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    closed = true;
                    break;
                }
            }
        }
        if n > 0 {
            let c = &self.me().counters;
            c.received.add(n as u64);
            c.batches.add(1);
            Some(n)
        } else if closed {
            None
        } else {
            Some(0)
        }
    }

    /// Wait until at least one item is queued, then drain up to `max` (at least 1), appending
    /// to `buf`. Resolves to `Some(n)` with `n >= 1`, or `None` once every producer handle
    /// has gone and the inbox is empty. While it waits, the doorbell is armed, so the next
    /// send wakes this task; while the worker is busy, sends cost no wake.
    pub fn recv_batch<'a>(&'a mut self, buf: &'a mut Vec<T>, max: usize) -> RecvBatch<'a, T> {
        RecvBatch {
            inbox: self,
            buf,
            max,
        }
    }

    /// Wait, without draining, until the inbox holds an item or every producer handle has
    /// gone; then drain with [`try_recv_batch`](Self::try_recv_batch). Arms the doorbell
    /// exactly as `recv_batch` does. Takes `&self`, so the worker can drain elsewhere while
    /// its inbox task waits here.
    pub fn ready(&self) -> Ready<'_, T> {
        Ready { inbox: self }
    }

    /// Items queued, or every producer handle gone (the wake condition of `ready`).
    fn has_work(&self) -> bool {
        // `live` reaches 0 only after the last handle dropped its senders; its ring follows.
        !self.rx.is_empty() || self.shared.live.load(Ordering::Acquire) == 0
    }

    /// Items queued now (a racy snapshot).
    pub fn len(&self) -> usize {
        self.rx.len()
    }

    /// Whether nothing is queued now (a racy snapshot).
    pub fn is_empty(&self) -> bool {
        self.rx.is_empty()
    }

    /// The channel's capacity.
    pub fn capacity(&self) -> usize {
        self.rx.capacity().unwrap_or(0)
    }

    /// This inbox's counters.
    pub fn stats(&self) -> InboxStats {
        read_inbox(self.me())
    }
}

impl<T> Drop for Inbox<T> {
    fn drop(&mut self) {
        // Drop the task's waker here, on the worker's thread.
        self.me().bell.clear();
    }
}

impl<T> fmt::Debug for Inbox<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Inbox")
            .field("index", &self.index)
            .field("len", &self.len())
            .field("stats", &self.stats())
            .finish()
    }
}

/// The future returned by [`Inbox::ready`].
#[must_use = "futures do nothing unless polled"]
pub struct Ready<'a, T> {
    inbox: &'a Inbox<T>,
}

impl<T> Future for Ready<'_, T> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let inbox = self.inbox;
        let me = inbox.me();
        if inbox.has_work() {
            me.bell.disarm();
            return Poll::Ready(());
        }
        me.bell.arm(cx.waker());
        if inbox.has_work() {
            me.bell.disarm();
            return Poll::Ready(());
        }
        me.counters.waits.add(1);
        Poll::Pending
    }
}

impl<T> Drop for Ready<'_, T> {
    fn drop(&mut self) {
        self.inbox.me().bell.disarm();
    }
}

/// The future returned by [`Inbox::recv_batch`].
#[must_use = "futures do nothing unless polled"]
pub struct RecvBatch<'a, T> {
    inbox: &'a mut Inbox<T>,
    buf: &'a mut Vec<T>,
    max: usize,
}

impl<T> Future for RecvBatch<'_, T> {
    type Output = Option<usize>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<usize>> {
        let this = self.get_mut();
        let max = this.max;
        // 1. Drain: a busy worker finds items here and never touches the doorbell's waker.
        match this.inbox.try_recv_batch(this.buf, max) {
            Some(0) => {}
            done => {
                this.inbox.me().bell.disarm();
                return Poll::Ready(done);
            }
        }
        // 2. Arm (waker stored, armed = true, SeqCst fence).
        this.inbox.me().bell.arm(cx.waker());
        // 3. Re-check: an item pushed before a sender could have seen `armed` is found here.
        match this.inbox.try_recv_batch(this.buf, max) {
            Some(0) => {
                this.inbox.me().counters.waits.add(1);
                Poll::Pending
            }
            done => {
                this.inbox.me().bell.disarm();
                Poll::Ready(done)
            }
        }
    }
}

impl<T> Drop for RecvBatch<'_, T> {
    fn drop(&mut self) {
        // Abandoned while parked (e.g. lost a select): stop senders from ringing a task that
        // no longer waits here.
        self.inbox.me().bell.disarm();
    }
}

#[cfg(test)]
mod tests {
    use std::{
        sync::Arc,
        task::{Context, Poll, Wake, Waker},
    };

    use super::*;

    struct Noop;
    impl Wake for Noop {
        fn wake(self: Arc<Self>) {}
    }

    fn poll_once<T>(inbox: &mut Inbox<T>, buf: &mut Vec<T>, max: usize) -> Poll<Option<usize>> {
        let waker = Waker::from(Arc::new(Noop));
        let mut cx = Context::from_waker(&waker);
        let mut fut = std::pin::pin!(inbox.recv_batch(buf, max));
        fut.as_mut().poll(&mut cx)
    }

    #[test]
    fn send_then_drain_in_order() {
        let Mesh {
            mut inboxes,
            outboxes,
        } = Mesh::new(2, 8);
        for i in 0..5 {
            outboxes.send(1, i).unwrap();
        }
        let mut buf = Vec::new();
        assert_eq!(inboxes[1].try_recv_batch(&mut buf, 3), Some(3));
        assert_eq!(
            poll_once(&mut inboxes[1], &mut buf, 64),
            Poll::Ready(Some(2))
        );
        assert_eq!(buf, vec![0, 1, 2, 3, 4]);
        assert_eq!(inboxes[0].try_recv_batch(&mut buf, 3), Some(0));
        let st = inboxes[1].stats();
        assert_eq!((st.received, st.batches, st.waits, st.rings), (5, 2, 0, 0));
        assert_eq!(outboxes.counters().sent, 5);
        assert_eq!(outboxes.counters().rings, 0, "nobody was parked");
    }

    #[test]
    fn pending_arms_and_the_next_send_rings_once() {
        let Mesh {
            mut inboxes,
            outboxes,
        } = Mesh::new(1, 8);
        let mut buf = Vec::new();
        assert_eq!(poll_once(&mut inboxes[0], &mut buf, 8), Poll::Pending);
        // The future was dropped: dropping disarms.
        assert!(!outboxes.stats().is_parked(0));
        let waker = Waker::from(Arc::new(Noop));
        let mut cx = Context::from_waker(&waker);
        {
            let mut fut = std::pin::pin!(inboxes[0].recv_batch(&mut buf, 8));
            assert_eq!(fut.as_mut().poll(&mut cx), Poll::Pending);
            assert!(outboxes.stats().is_parked(0));
            outboxes.send(0, 7).unwrap();
            outboxes.send(0, 8).unwrap();
            assert_eq!(fut.as_mut().poll(&mut cx), Poll::Ready(Some(2)));
        }
        assert_eq!(buf, vec![7, 8]);
        assert_eq!(
            outboxes.counters().rings,
            1,
            "the second send found it disarmed"
        );
        assert_eq!(inboxes[0].stats().waits, 2);
        assert_eq!(inboxes[0].stats().rings, 1);
    }

    #[test]
    fn push_defers_the_ring_to_flush() {
        let Mesh {
            mut inboxes,
            outboxes,
        } = Mesh::new(3, 8);
        let waker = Waker::from(Arc::new(Noop));
        let mut cx = Context::from_waker(&waker);
        let mut buf = Vec::new();
        let mut buf2 = Vec::new();
        let (a, rest) = inboxes.split_at_mut(1);
        let mut f0 = std::pin::pin!(a[0].recv_batch(&mut buf, 8));
        let mut f1 = std::pin::pin!(rest[0].recv_batch(&mut buf2, 8));
        assert_eq!(f0.as_mut().poll(&mut cx), Poll::Pending);
        assert_eq!(f1.as_mut().poll(&mut cx), Poll::Pending);
        assert_eq!(outboxes.flush(), 0, "nothing pushed");
        for i in 0..4 {
            outboxes.push(0, i).unwrap();
        }
        outboxes.push(1, 9).unwrap();
        assert!(outboxes.has_deferred());
        let stats = outboxes.stats();
        assert!(
            stats.is_parked(0) && stats.is_parked(1),
            "push does not ring"
        );
        assert_eq!(
            outboxes.flush(),
            2,
            "one ring per parked worker, not per item"
        );
        assert!(!outboxes.has_deferred());
        assert_eq!(outboxes.flush(), 0);
        assert_eq!(f0.as_mut().poll(&mut cx), Poll::Ready(Some(4)));
        assert_eq!(f1.as_mut().poll(&mut cx), Poll::Ready(Some(1)));
        assert_eq!(outboxes.counters().rings, 2);
        assert_eq!(outboxes.counters().sent, 5);
    }

    #[test]
    fn drop_flushes_deferred_rings() {
        let Mesh {
            mut inboxes,
            outboxes,
        } = Mesh::new(1, 8);
        let stats = outboxes.stats();
        let other = outboxes.clone();
        let waker = Waker::from(Arc::new(Noop));
        let mut cx = Context::from_waker(&waker);
        let mut buf = Vec::new();
        let mut f = std::pin::pin!(inboxes[0].recv_batch(&mut buf, 8));
        assert_eq!(f.as_mut().poll(&mut cx), Poll::Pending);
        other.push(0, 1).unwrap();
        drop(other);
        assert!(!stats.is_parked(0), "the dropped handle rang");
        assert_eq!(stats.inbox(0).rings, 1);
        assert_eq!(f.as_mut().poll(&mut cx), Poll::Ready(Some(1)));
        drop(outboxes);
    }

    #[test]
    fn ready_waits_without_draining() {
        let Mesh { inboxes, outboxes } = Mesh::new(1, 8);
        let inbox = &inboxes[0];
        let waker = Waker::from(Arc::new(Noop));
        let mut cx = Context::from_waker(&waker);
        let mut buf = Vec::new();
        let stats = outboxes.stats();
        {
            let mut r = std::pin::pin!(inbox.ready());
            assert_eq!(r.as_mut().poll(&mut cx), Poll::Pending);
            assert!(stats.is_parked(0));
            // The worker drains elsewhere while its task waits: shared access.
            assert_eq!(inbox.try_recv_batch(&mut buf, 8), Some(0));
            outboxes.push(0, 1).unwrap();
            assert_eq!(outboxes.flush(), 1);
            assert_eq!(r.as_mut().poll(&mut cx), Poll::Ready(()));
        }
        assert_eq!(inbox.len(), 1, "ready does not drain");
        assert_eq!(inbox.try_recv_batch(&mut buf, 8), Some(1));
        let mut r = std::pin::pin!(inbox.ready());
        assert_eq!(r.as_mut().poll(&mut cx), Poll::Pending);
        drop(outboxes);
        assert!(!stats.is_parked(0), "the close rang");
        assert_eq!(r.as_mut().poll(&mut cx), Poll::Ready(()));
        assert_eq!(inbox.try_recv_batch(&mut buf, 8), None);
    }

    #[test]
    fn push_rings_a_full_inbox_at_once() {
        let Mesh {
            mut inboxes,
            outboxes,
        } = Mesh::new(1, 2);
        let waker = Waker::from(Arc::new(Noop));
        let mut cx = Context::from_waker(&waker);
        let mut buf = Vec::new();
        let mut f = std::pin::pin!(inboxes[0].recv_batch(&mut buf, 8));
        assert_eq!(f.as_mut().poll(&mut cx), Poll::Pending);
        outboxes.push(0, 1).unwrap();
        outboxes.push(0, 2).unwrap();
        assert!(outboxes.stats().is_parked(0), "pushes wait for the flush");
        assert!(outboxes.push(0, 3).unwrap_err().is_full());
        assert!(
            !outboxes.stats().is_parked(0),
            "Full rang the parked worker"
        );
        assert_eq!(outboxes.flush(), 0, "nothing left to ring");
        assert_eq!(f.as_mut().poll(&mut cx), Poll::Ready(Some(2)));
    }

    #[test]
    fn full_hands_the_item_back() {
        let Mesh { inboxes, outboxes } = Mesh::new(1, 2);
        outboxes.send(0, 1).unwrap();
        outboxes.send(0, 2).unwrap();
        match outboxes.send(0, 3) {
            Err(e @ Undelivered::Full(_)) => {
                assert!(e.is_full());
                assert_eq!(e.into_inner(), 3);
            }
            other => panic!("expected Full, got {other:?}"),
        }
        assert_eq!(outboxes.counters().full, 1);
        let mut buf = Vec::new();
        assert_eq!(inboxes[0].try_recv_batch(&mut buf, 10), Some(2));
        assert_eq!(buf, vec![1, 2]);
    }

    #[test]
    fn closed_both_ways() {
        let Mesh {
            mut inboxes,
            outboxes,
        } = Mesh::new(2, 2);
        let extra = outboxes.clone();
        drop(inboxes.pop());
        assert!(matches!(outboxes.send(1, 1), Err(Undelivered::Closed(1))));
        outboxes.send(0, 5).unwrap();
        drop(outboxes);
        let mut buf = Vec::new();
        assert_eq!(
            poll_once(&mut inboxes[0], &mut buf, 8),
            Poll::Ready(Some(1))
        );
        assert_eq!(poll_once(&mut inboxes[0], &mut buf, 8), Poll::Pending);
        drop(extra);
        assert_eq!(poll_once(&mut inboxes[0], &mut buf, 8), Poll::Ready(None));
        assert_eq!(inboxes[0].try_recv_batch(&mut buf, 8), None);
    }

    #[test]
    fn counters_are_per_handle_and_summed() {
        let Mesh {
            inboxes: _inboxes,
            outboxes,
        } = Mesh::new(2, 16);
        let other = outboxes.clone();
        outboxes.send(0, ()).unwrap();
        other.send(1, ()).unwrap();
        other.send(1, ()).unwrap();
        assert_eq!(outboxes.counters().sent, 1);
        assert_eq!(other.counters().sent, 2);
        assert_eq!(outboxes.stats().producers().sent, 3);
    }

    #[test]
    fn padded_is_a_cache_line_pair() {
        assert_eq!(std::mem::align_of::<Padded<Doorbell>>(), 128);
        assert!(std::mem::size_of::<InboxShared>() >= 256);
    }
}
