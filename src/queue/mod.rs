//! The per-connection send queue: encoded frames waiting for the socket.
//!
//! Pure data structure: no I/O, no clock. Two lanes: control frames (pong, ping, close) are
//! never dropped and go out before queued data, but never split a frame that is already half
//! written. Frames are `Bytes`, so one encoded frame can sit in many queues at once.
//! The writer asks for up to N slices ([`SendQueue::fill_slices`]), writes them in one
//! vectored call, then reports how many bytes went out ([`SendQueue::advance`]).
//!
//! Published data goes through [`SendQueue::offer`], which enforces a byte bound: past half of
//! it, a frame with a [`ConflationKey`] replaces the waiting frame with the same key; a frame
//! that neither fits nor conflates follows the [`SlowPolicy`]. The rules and their reasons are
//! in `docs/backpressure.md`.

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

/// Bytes each queued frame is charged against the bound on top of its length: the worst case of
/// its slot in a lane that has just doubled, plus its entry in the conflation index. Charging it
/// makes the bound a memory bound even for tiny frames.
pub const FRAME_OVERHEAD: usize = 160;

const _: () = assert!(2 * size_of::<Slot>() + KeyIndex::WORST_BYTES_PER_ENTRY <= FRAME_OVERHEAD);

/// Outgoing frames of one connection. Eight bytes while idle: the lanes are allocated on
/// first use and released by [`SendQueue::shrink`] once the connection goes quiet.
#[derive(Debug, Default)]
pub struct SendQueue {
    lanes: Option<Box<Lanes>>,
}

/// A queued data frame and its conflation key, packed into 48 bytes (an
/// `Option<ConflationKey>` would take 56).
#[derive(Debug)]
struct Slot {
    frame: Bytes,
    key: u64,
    topic: u32,
    keyed: bool,
}

impl Slot {
    fn new(frame: Bytes, key: Option<ConflationKey>) -> Self {
        match key {
            Some(k) => Self {
                frame,
                key: k.key,
                topic: k.topic,
                keyed: true,
            },
            None => Self {
                frame,
                key: 0,
                topic: 0,
                keyed: false,
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
    data: VecDeque<Slot>,
    /// Id of `data[0]` for the conflation index (wrapping).
    data_base: u32,
    /// Key → id of its latest queued data frame; built only when an offer needs it.
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
        if let Some(k) = slot.key() {
            self.index.popped(k, self.data_base);
        }
        self.data_base = self.data_base.wrapping_add(1);
        if self.data.is_empty() && self.index.is_live() {
            self.index.reset();
        }
        self.head_is_data = true;
        Some(slot.frame)
    }

    /// Whether a data frame is queued or being written.
    fn has_data(&self) -> bool {
        !self.data.is_empty() || (self.head.is_some() && self.head_is_data)
    }

    /// Queued bytes plus [`FRAME_OVERHEAD`] per frame: what the bound is compared with.
    fn charged(&self) -> usize {
        let frames = self.control.len() + self.data.len() + usize::from(self.head.is_some());
        self.queued + frames * FRAME_OVERHEAD
    }

    fn push_slot(&mut self, frame: Bytes, key: Option<ConflationKey>) {
        if let Some(k) = key {
            let id = self.data_base.wrapping_add(self.data.len() as u32);
            self.index.pushed(k, id);
        }
        self.queued += frame.len();
        self.data.push_back(Slot::new(frame, key));
    }

    /// Position in the data lane of the latest queued frame with `key`, building the index on
    /// first use.
    fn find_latest(&mut self, key: ConflationKey) -> Option<usize> {
        if !self.index.is_live() {
            let base = self.data_base;
            let keyed = self
                .data
                .iter()
                .enumerate()
                .filter_map(|(i, s)| s.key().map(|k| (base.wrapping_add(i as u32), k)));
            self.index.build(keyed);
        }
        let pos = self.index.get(&key)?.wrapping_sub(self.data_base) as usize;
        debug_assert!(pos < self.data.len() && self.data[pos].key() == Some(key));
        Some(pos)
    }
}

/// The bytes a frame of `len` bytes is charged against the bound.
pub const fn frame_cost(len: usize) -> usize {
    len + FRAME_OVERHEAD
}

#[cfg(test)]
impl SendQueue {
    /// Check the bookkeeping against the lanes: byte count, and the index against a rebuild.
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
        if l.index.is_live() {
            let mut expect = std::collections::HashMap::new();
            for (i, s) in l.data.iter().enumerate() {
                if let Some(k) = s.key() {
                    expect.insert(k, l.data_base.wrapping_add(i as u32));
                }
            }
            assert_eq!(l.index.snapshot(), expect, "index");
        }
    }

    /// Whether the conflation index is built.
    fn index_is_live(&self) -> bool {
        self.lanes.as_ref().is_some_and(|l| l.index.is_live())
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
    /// - Keyed, `cost` past half the bound, and a not yet started frame with the same key
    ///   queued: the latest such frame is replaced in its position, [`Offer::Conflated`]
    ///   (a larger value only while the queue without the old frame's bytes is within `bound`).
    /// - Otherwise, `cost <= bound`, or no data frame is queued or being written (one message
    ///   always gets through): appended, [`Offer::Queued`].
    /// - Otherwise `policy` decides: [`Offer::Dropped`] (the frame is discarded) or
    ///   [`Offer::Disconnect`] (the queue is left as is; the caller closes the connection).
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
        let cost = l.charged() + frame_cost(len);
        let fits = !has_data || cost <= bound;
        if has_data && cost > bound / 2 {
            if let Some(pos) = key.and_then(|k| l.find_latest(k)) {
                let old = l.data[pos].frame.len();
                if fits || len <= old || l.charged() - old <= bound {
                    l.queued = l.queued - old + len;
                    l.data[pos].frame = frame;
                    return Offer::Conflated;
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
    pub fn fill_slices<'a>(&'a mut self, out: &mut [IoSlice<'a>]) -> usize {
        let Some(l) = self.lanes.as_deref() else {
            return 0;
        };
        let head = l.head.as_ref().map(|(frame, off)| &frame[*off..]);
        let control = l.control.iter().map(|b| &b[..]);
        let data = l.data.iter().map(|s| &s.frame[..]);
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
