//! The per-connection send queue: encoded frames waiting for the socket.
//!
//! Pure data structure: no I/O, no clock. Two lanes: control frames (pong, ping, close) are
//! never dropped and go out before queued data, but never split a frame that is already half
//! written. Frames are `Bytes`, so one encoded frame can sit in many queues at once.
//! The writer asks for up to N slices ([`SendQueue::fill_slices`]), writes them in one
//! vectored call, then reports how many bytes went out ([`SendQueue::advance`]).
//!
//! Published data goes through [`SendQueue::offer`], which enforces a byte bound: past half of
//! it, each [`ConflationKey`] keeps at most two waiting frames (its oldest, which keeps its
//! place, and its newest); a newer value removes the newest and goes to the back, so frames
//! always leave in offer order. A frame that neither fits nor conflates follows the
//! [`SlowPolicy`]. The rules and their reasons are in `docs/backpressure.md`.

mod conflate;
mod policy;

#[cfg(test)]
mod model_tests;
#[cfg(test)]
mod sim_tests;
#[cfg(test)]
mod tests;

use std::{collections::VecDeque, io::IoSlice, mem::size_of};

use bytes::Bytes;

use self::conflate::KeyIndex;
pub use self::{
    conflate::ConflationKey,
    policy::{Offer, SlowPolicy},
};

/// Bytes each queued frame is charged against the bound on top of its length. A waiting frame
/// holds one slot in the data lane, and up to half a tombstone slot more (compaction keeps
/// `dead <= live / 2 + COMPACT_SLACK`; the constant is per connection, not per frame), so
/// 1.5 slots; a lane that has just doubled has as many spare slots again: 3 slots of 48 bytes.
/// Plus its entry in the conflation index (58 bytes in a table that has just grown): 202,
/// rounded up to 208. Charging it makes the bound a memory bound even for tiny frames.
pub const FRAME_OVERHEAD: usize = 208;

const _: () = assert!(3 * size_of::<Slot>() + KeyIndex::WORST_BYTES_PER_ENTRY <= FRAME_OVERHEAD);

/// Tombstones tolerated beyond half the waiting data frames before the data lane is compacted.
/// A few, so that a short lane is not compacted at every other conflation.
const COMPACT_SLACK: usize = 8;

/// Outgoing frames of one connection. Eight bytes while idle: the lanes are allocated on
/// first use and released by [`SendQueue::shrink`] once the connection goes quiet.
#[derive(Debug, Default)]
pub struct SendQueue {
    lanes: Option<Box<Lanes>>,
}

/// A queued data frame and its conflation key, packed into 48 bytes (an
/// `Option<ConflationKey>` would take 56). A `dead` slot is a tombstone: its frame was removed
/// by conflation (its `frame` is an empty `Bytes`, which owns nothing) and it is skipped by
/// every reader of the lane until compaction or the front of the lane drops it.
#[derive(Debug)]
struct Slot {
    frame: Bytes,
    key: u64,
    topic: u32,
    keyed: bool,
    dead: bool,
}

impl Slot {
    fn new(frame: Bytes, key: Option<ConflationKey>) -> Self {
        match key {
            Some(k) => Self {
                frame,
                key: k.key,
                topic: k.topic,
                keyed: true,
                dead: false,
            },
            None => Self {
                frame,
                key: 0,
                topic: 0,
                keyed: false,
                dead: false,
            },
        }
    }

    fn key(&self) -> Option<ConflationKey> {
        self.keyed.then(|| ConflationKey::new(self.topic, self.key))
    }
}

#[derive(Debug, Default)]
struct Lanes {
    /// The frame being written (some of its bytes went out, not all), and how many went out.
    head: Option<(Bytes, usize)>,
    /// Whether the head came from the data lane.
    head_is_data: bool,
    control: VecDeque<Bytes>,
    /// Data frames not started, tombstones included. Never starts with a tombstone.
    data: VecDeque<Slot>,
    /// Id of `data[0]` for the conflation index (wrapping).
    data_base: u32,
    /// Tombstones in `data`; at most `live / 2 + COMPACT_SLACK` between calls.
    dead: u32,
    /// Key → its newest waiting data frame and their count; built only when an offer needs it.
    index: KeyIndex,
    /// Bytes not yet written across all lanes (head counted from its offset).
    queued: usize,
}

impl Lanes {
    fn next_frame(&mut self) -> Option<Bytes> {
        if let Some(frame) = self.control.pop_front() {
            self.head_is_data = false;
            return Some(frame);
        }
        let slot = self.data.pop_front()?;
        debug_assert!(!slot.dead, "the data lane never starts with a tombstone");
        if let Some(k) = slot.key() {
            self.index.popped(k);
        }
        self.data_base = self.data_base.wrapping_add(1);
        self.trim_front();
        self.compact_if_sparse();
        self.head_is_data = true;
        Some(slot.frame)
    }

    /// Data frames waiting (tombstones excluded).
    fn live(&self) -> usize {
        self.data.len() - self.dead as usize
    }

    /// Whether a data frame is queued or being written (a tombstone is not: the lane never
    /// starts with one, so a non-empty lane holds a frame).
    fn has_data(&self) -> bool {
        !self.data.is_empty() || (self.head.is_some() && self.head_is_data)
    }

    /// Queued bytes plus [`FRAME_OVERHEAD`] per frame: what the bound is compared with.
    /// Tombstones are not frames (their slack is in [`FRAME_OVERHEAD`]).
    fn charged(&self) -> usize {
        let frames = self.control.len() + self.live() + usize::from(self.head.is_some());
        self.queued + frames * FRAME_OVERHEAD
    }

    fn push_slot(&mut self, frame: Bytes, key: Option<ConflationKey>) {
        if let Some(k) = key {
            self.index.pushed(k, self.next_id());
        }
        self.queued += frame.len();
        self.data.push_back(Slot::new(frame, key));
    }

    /// The id the next appended slot gets.
    fn next_id(&self) -> u32 {
        self.data_base.wrapping_add(self.data.len() as u32)
    }

    /// Remove the waiting frame at `pos` (the newest of `key`) and append `frame` with `key`
    /// at the back. The old frame is released at once; its slot becomes a tombstone.
    fn conflate(&mut self, pos: usize, frame: Bytes, key: ConflationKey) {
        let slot = &mut self.data[pos];
        debug_assert!(!slot.dead && slot.key() == Some(key));
        let old = std::mem::take(&mut slot.frame);
        slot.dead = true;
        self.dead += 1;
        self.queued -= old.len();
        drop(old);
        self.trim_front();
        self.compact_if_sparse();
        self.index.replaced(key, self.next_id());
        self.queued += frame.len();
        self.data.push_back(Slot::new(frame, Some(key)));
    }

    /// Drop the tombstones at the front of the data lane; retire the index if the lane is
    /// empty.
    fn trim_front(&mut self) {
        while self.data.front().is_some_and(|s| s.dead) {
            self.data.pop_front();
            self.data_base = self.data_base.wrapping_add(1);
            self.dead -= 1;
        }
        if self.data.is_empty() && self.index.is_live() {
            self.index.reset();
        }
    }

    /// Compact the data lane once tombstones exceed half the waiting frames plus
    /// [`COMPACT_SLACK`]. Amortised O(1): a compaction of `n` slots follows at least `n / 3`
    /// new tombstones. Ids change, so the index is reset (rebuilt when next needed).
    fn compact_if_sparse(&mut self) {
        if self.dead as usize > self.live() / 2 + COMPACT_SLACK {
            self.data.retain(|s| !s.dead);
            self.dead = 0;
            self.index.reset();
        }
    }

    /// Position in the data lane of the newest waiting frame with `key`, and how many frames
    /// with `key` are waiting; builds the index on first use.
    fn find_newest(&mut self, key: ConflationKey) -> Option<(usize, u32)> {
        if !self.index.is_live() {
            let base = self.data_base;
            let keyed = self.data.iter().enumerate().filter_map(|(i, s)| {
                let k = s.key().filter(|_| !s.dead)?;
                Some((base.wrapping_add(i as u32), k))
            });
            self.index.build(keyed);
        }
        let w = self.index.get(&key)?;
        let pos = w.newest.wrapping_sub(self.data_base) as usize;
        debug_assert!(pos < self.data.len() && self.data[pos].key() == Some(key));
        debug_assert!(!self.data[pos].dead);
        Some((pos, w.count))
    }
}

/// The bytes a frame of `len` bytes is charged against the bound.
pub const fn frame_cost(len: usize) -> usize {
    len + FRAME_OVERHEAD
}

#[cfg(test)]
impl SendQueue {
    /// Check the bookkeeping against the lanes: byte count, tombstones, and the index against
    /// a rebuild.
    fn check_invariants(&self) {
        let Some(l) = self.lanes.as_deref() else {
            return;
        };
        let head = l.head.as_ref().map_or(0, |(f, off)| {
            assert!(*off > 0 && *off < f.len(), "a head is always half written");
            f.len() - off
        });
        let lanes: usize = l.control.iter().map(Bytes::len).sum::<usize>()
            + l.data.iter().map(|s| s.frame.len()).sum::<usize>();
        assert_eq!(l.queued, head + lanes, "queued bytes");
        let dead = l.data.iter().filter(|s| s.dead).count();
        assert_eq!(l.dead as usize, dead, "tombstone count");
        assert!(
            l.data.iter().all(|s| !s.dead || s.frame.is_empty()),
            "a tombstone holds no frame"
        );
        assert!(
            !l.data.front().is_some_and(|s| s.dead),
            "the data lane never starts with a tombstone"
        );
        assert!(
            dead <= l.live() / 2 + COMPACT_SLACK,
            "{dead} tombstones for {} frames",
            l.live()
        );
        if l.index.is_live() {
            let mut expect = std::collections::HashMap::new();
            for (i, s) in l.data.iter().enumerate() {
                if let Some(k) = s.key().filter(|_| !s.dead) {
                    let id = l.data_base.wrapping_add(i as u32);
                    let w = expect.entry(k).or_insert(conflate::Waiting {
                        newest: id,
                        count: 0,
                    });
                    w.newest = id;
                    w.count += 1;
                }
            }
            assert_eq!(l.index.snapshot(), expect, "index");
        }
    }

    /// Whether the conflation index is built.
    fn index_is_live(&self) -> bool {
        self.lanes.as_ref().is_some_and(|l| l.index.is_live())
    }

    /// Slots in the data lane (tombstones included) and tombstones among them.
    fn data_slots(&self) -> (usize, usize) {
        self.lanes
            .as_ref()
            .map_or((0, 0), |l| (l.data.len(), l.dead as usize))
    }
}

impl SendQueue {
    /// An empty queue (allocates nothing until used).
    pub fn new() -> Self {
        Self::default()
    }

    fn lanes(&mut self) -> &mut Lanes {
        self.lanes.get_or_insert_with(Default::default)
    }

    /// Bytes waiting to be written.
    pub fn queued_bytes(&self) -> usize {
        self.lanes.as_ref().map_or(0, |l| l.queued)
    }

    /// Bytes waiting plus [`FRAME_OVERHEAD`] per queued frame: the figure [`SendQueue::offer`]
    /// compares with its bound.
    pub fn charged_bytes(&self) -> usize {
        self.lanes.as_ref().map_or(0, |l| l.charged())
    }

    /// Whether nothing waits to be written.
    pub fn is_empty(&self) -> bool {
        self.queued_bytes() == 0
    }

    /// Queue a data frame behind earlier data, whatever the bound (replies, the `101`, closes).
    pub fn push_data(&mut self, frame: Bytes) {
        self.lanes().push_slot(frame, None);
    }

    /// Offer a published frame under a bound of `bound` charged bytes (see `docs/backpressure.md`).
    ///
    /// `cost` is `charged_bytes() + frame_cost(len)`, the charge once the frame is added.
    /// A key's *waiting* frames are its data frames queued and not started.
    /// - Keyed, data in flight, `cost` past half the bound, and the key has frames waiting:
    ///   - two or more: the newest is removed and the new frame appended at the back,
    ///     [`Offer::Conflated`];
    ///   - one, and `cost <= bound`: appended, [`Offer::Queued`] (the key's second frame);
    ///   - one, and `cost > bound`: it is removed and the new frame appended,
    ///     [`Offer::Conflated`].
    ///
    ///   A conflation with a larger value needs `cost <= bound` or the queue without the old
    ///   frame's bytes within `bound`; otherwise the frame falls through to the policy.
    /// - Otherwise, `cost <= bound`, or no data frame is queued or being written (one message
    ///   always gets through): appended, [`Offer::Queued`].
    /// - Otherwise `policy` decides: [`Offer::Dropped`] (the frame is discarded) or
    ///   [`Offer::Disconnect`] (the queue is left as is; the caller closes the connection).
    ///
    /// Every frame accepted is appended at the back, so frames leave in offer order (minus the
    /// removed ones): a topic's `seq` never goes backwards. O(1) amortised.
    pub fn offer(
        &mut self,
        frame: Bytes,
        key: Option<ConflationKey>,
        bound: usize,
        policy: SlowPolicy,
    ) -> Offer {
        let l = self.lanes();
        let len = frame.len();
        let has_data = l.has_data();
        let charged = l.charged();
        let cost = charged + frame_cost(len);
        let fits = !has_data || cost <= bound;
        if let Some(k) = key.filter(|_| has_data && cost > bound / 2) {
            if let Some((pos, waiting)) = l.find_newest(k) {
                if waiting >= 2 || !fits {
                    let old = l.data[pos].frame.len();
                    if fits || len <= old || charged - old <= bound {
                        l.conflate(pos, frame, k);
                        return Offer::Conflated;
                    }
                }
            }
        }
        if fits {
            l.push_slot(frame, key);
            return Offer::Queued;
        }
        match policy {
            SlowPolicy::Drop => Offer::Dropped,
            SlowPolicy::Disconnect => Offer::Disconnect,
        }
    }

    /// Queue a control frame ahead of all data not yet started.
    pub fn push_control(&mut self, frame: Bytes) {
        let l = self.lanes();
        l.queued += frame.len();
        l.control.push_back(frame);
    }

    /// Drop every data frame not yet started (the head, if half written, stays: the peer must
    /// receive whole frames). Returns the bytes discarded.
    pub fn discard_data(&mut self) -> usize {
        let Some(l) = self.lanes.as_mut() else {
            return 0;
        };
        let dropped: usize = l.data.iter().map(|s| s.frame.len()).sum();
        l.data_base = l.data_base.wrapping_add(l.data.len() as u32);
        l.data.clear();
        l.dead = 0;
        l.index.reset();
        l.queued -= dropped;
        dropped
    }

    /// Release all memory if nothing is queued (called when a connection goes quiet, not
    /// after every write: a busy connection keeps its lanes instead of reallocating them).
    pub fn shrink(&mut self) {
        if self.is_empty() {
            self.lanes = None;
        }
    }

    /// Fill `out` with the next slices to write, in order; returns how many were filled.
    /// Tombstones are skipped: no slice is empty unless a frame pushed empty.
    pub fn fill_slices<'a>(&'a mut self, out: &mut [IoSlice<'a>]) -> usize {
        let Some(l) = self.lanes.as_deref() else {
            return 0;
        };
        let head = l.head.as_ref().map(|(frame, off)| &frame[*off..]);
        let control = l.control.iter().map(|b| &b[..]);
        let data = l.data.iter().filter(|s| !s.dead).map(|s| &s.frame[..]);
        let mut n = 0;
        for (slot, bytes) in out
            .iter_mut()
            .zip(head.into_iter().chain(control).chain(data))
        {
            *slot = IoSlice::new(bytes);
            n += 1;
        }
        n
    }

    /// Record that `written` bytes from the front of the queue went out.
    ///
    /// A frame leaves its lane only once some of its bytes are written; until then it can still
    /// be overtaken by control frames or conflated.
    pub fn advance(&mut self, mut written: usize) {
        let Some(l) = self.lanes.as_deref_mut() else {
            return;
        };
        debug_assert!(written <= l.queued);
        l.queued -= written.min(l.queued);
        while written > 0 {
            let (frame, off) = match l.head.take() {
                Some(head) => head,
                None => match l.next_frame() {
                    Some(frame) => (frame, 0),
                    None => return,
                },
            };
            let left = frame.len() - off;
            if written < left {
                l.head = Some((frame, off + written));
                return;
            }
            written -= left;
        }
    }
}
