//! A topic's history: its last N messages (bounded by count, by age and by bytes), kept by the
//! topic's owner so that a `sub` with `since` can be served, or answered with `reset`.
//!
//! Each entry is charged [`Entry::charge`] bytes when it is pushed: its data, the `msg`
//! frames of both encodings (whether they are encoded then, later for a replay, or never: an
//! upper bound, so that caching a replay frame never takes a history past its budget) and
//! [`ENTRY_OVERHEAD`]. The worker that owns the topics sums the charges of all its histories
//! for the process-wide budget (`history_bytes`, see `engine::owner`).

use std::collections::VecDeque;

use bytes::Bytes;

use super::{
    frames::{self, Frames},
    wire::{Encoding, Payload},
    TopicName,
};

/// One published message as the history keeps it.
#[derive(Debug)]
pub struct Entry {
    /// Its sequence number.
    pub seq: u64,
    /// When it was accepted, µs since the Unix epoch (the `ts` of its `msg`).
    pub ts_us: u64,
    /// The owner's tick when it was accepted (for the age limit).
    pub tick: u64,
    /// The published data, verbatim.
    pub data: Bytes,
    /// Whether `data` is JSON text.
    pub json: bool,
    /// Its conflation key hash, if it had a key.
    pub key: Option<u64>,
    /// The frames encoded so far (filled in lazily for replay).
    pub frames: Frames,
    /// The bytes it is charged ([`Entry::charge`]).
    pub cost: usize,
}

/// What an entry costs besides its data and frames: the entry itself in its topic's queue,
/// and up to two 16-byte records in its worker's eviction queue.
pub const ENTRY_OVERHEAD: usize = std::mem::size_of::<Entry>() + 32;

/// The bounds of one topic's history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Entries kept at most (0: no history).
    pub len: usize,
    /// Age limit, in ticks.
    pub max_age_ticks: u64,
    /// Bytes kept at most (the sum of the entries' [`Entry::cost`]).
    pub bytes: usize,
}

impl Entry {
    /// The bytes an entry of message `seq` of `topic` with `data` is charged: the data, the
    /// `msg` frames of both encodings (encoded or not) and [`ENTRY_OVERHEAD`].
    pub fn charge(topic: TopicName<'_>, seq: u64, ts_us: u64, data: Payload<'_>) -> usize {
        let frames: usize = frames::ENCODINGS
            .iter()
            .map(|&enc| frames::msg_size(enc, topic, seq, ts_us, data))
            .sum();
        data.as_bytes().len() + frames + ENTRY_OVERHEAD
    }

    /// The frame of this message in `enc`, encoding (and caching) it if needed.
    pub fn frame(&mut self, enc: Encoding, topic: TopicName<'_>) -> Bytes {
        if let Some(f) = self.frames.get(enc) {
            return f.clone();
        }
        let data = if self.json {
            // Stored from a validated JSON payload, so it is UTF-8.
            match std::str::from_utf8(&self.data) {
                Ok(text) => Payload::Json(text),
                Err(_) => Payload::Bytes(&self.data),
            }
        } else {
            Payload::Bytes(&self.data)
        };
        let f = frames::msg(enc, topic, self.seq, self.ts_us, data);
        self.frames.set(enc, f.clone());
        f
    }
}

/// What a resume from `since` gets.
#[derive(Debug, PartialEq, Eq)]
pub enum Resume {
    /// Nothing to replay (`since` is the current seq).
    UpToDate,
    /// Replay the entries at these positions (oldest first).
    Replay(std::ops::Range<usize>),
    /// The history cannot serve it: send `reset`.
    Reset,
}

/// The last messages of one topic, oldest first, contiguous in `seq`.
#[derive(Debug, Default)]
pub struct History {
    entries: VecDeque<Entry>,
    /// The sum of the entries' [`Entry::cost`].
    bytes: usize,
}

impl History {
    /// Append the newest message, then trim to the limits: oldest first, by count, by age,
    /// then by bytes (which may evict the new entry itself, if it alone is over
    /// `lim.bytes`). Returns how many entries were evicted for bytes.
    pub fn push(&mut self, e: Entry, lim: &Limits) -> u64 {
        if lim.len == 0 {
            return 0;
        }
        let now = e.tick;
        debug_assert!(self.entries.back().map_or(true, |b| b.seq + 1 == e.seq));
        self.bytes += e.cost;
        self.entries.push_back(e);
        while self.entries.len() > lim.len {
            self.pop_front();
        }
        self.expire(now, lim.max_age_ticks);
        let mut evicted = 0;
        while self.bytes > lim.bytes && self.pop_front().is_some() {
            evicted += 1;
        }
        self.release_if_empty();
        evicted
    }

    /// Drop entries older than `max_age_ticks` at tick `now`.
    pub fn expire(&mut self, now: u64, max_age_ticks: u64) {
        while self
            .entries
            .front()
            .is_some_and(|f| now.saturating_sub(f.tick) > max_age_ticks)
        {
            self.pop_front();
        }
        self.release_if_empty();
    }

    /// Evict the oldest entry if its seq is `seq` or lower (the worker-wide budget evicts
    /// by its own oldest-first record of (topic, seq)); returns the bytes freed.
    pub fn evict_oldest_upto(&mut self, seq: u64) -> Option<usize> {
        if self.entries.front()?.seq > seq {
            return None;
        }
        let freed = self.pop_front();
        self.release_if_empty();
        freed
    }

    /// Whether message `seq` is still kept.
    pub fn holds(&self, seq: u64) -> bool {
        match (self.entries.front(), self.entries.back()) {
            (Some(f), Some(b)) => f.seq <= seq && seq <= b.seq,
            _ => false,
        }
    }

    /// The bytes charged for the entries held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    fn pop_front(&mut self) -> Option<usize> {
        let e = self.entries.pop_front()?;
        self.bytes -= e.cost;
        Some(e.cost)
    }

    fn release_if_empty(&mut self) {
        if self.entries.is_empty() && self.entries.capacity() > 0 {
            self.entries = VecDeque::new();
        }
    }

    /// How a subscriber that has seen everything up to `since` resumes, given the topic's
    /// current `seq`.
    pub fn resume(&self, since: u64, seq: u64) -> Resume {
        if since == seq {
            return Resume::UpToDate;
        }
        if since > seq {
            return Resume::Reset;
        }
        match self.entries.front() {
            Some(first) if first.seq <= since + 1 => {
                let start = (since + 1 - first.seq) as usize;
                Resume::Replay(start..self.entries.len())
            }
            _ => Resume::Reset,
        }
    }

    /// The entry at position `i`.
    pub fn get_mut(&mut self, i: usize) -> Option<&mut Entry> {
        self.entries.get_mut(i)
    }

    /// Whether the history holds nothing.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Entries held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(seq: u64, tick: u64) -> Entry {
        sized(seq, tick, 1)
    }

    fn sized(seq: u64, tick: u64, cost: usize) -> Entry {
        Entry {
            seq,
            ts_us: seq,
            tick,
            data: Bytes::from_static(b"1"),
            json: true,
            key: None,
            frames: Frames::default(),
            cost,
        }
    }

    fn lim(len: usize, max_age_ticks: u64) -> Limits {
        Limits {
            len,
            max_age_ticks,
            bytes: usize::MAX,
        }
    }

    #[test]
    fn oldest_entries_leave_to_keep_the_topic_within_its_bytes() {
        let mut h = History::default();
        let l = Limits {
            len: 100,
            max_age_ticks: 100,
            bytes: 1000,
        };
        for s in 1..=3 {
            assert_eq!(h.push(sized(s, 0, 300), &l), 0);
        }
        assert_eq!(h.push(sized(4, 0, 300), &l), 1, "4 × 300 > 1000: 1 leaves");
        assert_eq!((h.len(), h.bytes()), (3, 900));
        assert_eq!(h.push(sized(5, 0, 450), &l), 2, "2 and 3 leave for 5");
        assert_eq!((h.len(), h.bytes()), (2, 750));
        assert_eq!(h.resume(3, 5), Resume::Replay(0..2));
        assert_eq!(h.resume(2, 5), Resume::Reset, "3 was evicted");
        // One entry alone over the budget is not kept.
        assert_eq!(h.push(sized(6, 0, 1001), &l), 3);
        assert!(h.is_empty());
        assert_eq!(h.bytes(), 0);
        assert_eq!(h.resume(5, 6), Resume::Reset);
    }

    #[test]
    fn the_worker_budget_evicts_by_seq_and_count_and_age_keep_bytes_right() {
        let mut h = History::default();
        for s in 1..=5 {
            h.push(sized(s, s, 10), &lim(4, 100));
        }
        assert_eq!((h.len(), h.bytes()), (4, 40), "1 left by count");
        assert!(!h.holds(1) && h.holds(2) && h.holds(5) && !h.holds(6));
        assert_eq!(h.evict_oldest_upto(1), None, "1 is gone already");
        assert_eq!(h.evict_oldest_upto(2), Some(10));
        assert_eq!((h.len(), h.bytes()), (3, 30));
        h.expire(104, 100);
        assert_eq!((h.len(), h.bytes()), (2, 20), "3 is older than 100 ticks");
        assert_eq!(h.evict_oldest_upto(9), Some(10));
        assert_eq!(h.evict_oldest_upto(9), Some(10));
        assert_eq!(h.evict_oldest_upto(9), None);
        assert_eq!(h.bytes(), 0);
    }

    #[test]
    fn an_entry_is_charged_its_data_and_both_frames() {
        let t = TopicName::new("a.b").unwrap();
        let data = format!("\"{}\"", "x".repeat(60_000));
        let cost = Entry::charge(t, 1, 2, Payload::Json(&data));
        let mut e = Entry {
            seq: 1,
            ts_us: 2,
            tick: 0,
            data: Bytes::from(data.clone()),
            json: true,
            key: None,
            frames: Frames::default(),
            cost,
        };
        let json = e.frame(Encoding::Json, t).len();
        let bin = e.frame(Encoding::Binary, t).len();
        assert!(cost >= data.len() + json + bin, "{cost} {json} {bin}");
        assert!(
            cost <= data.len() + json + bin + ENTRY_OVERHEAD + 20,
            "{cost}"
        );
    }

    #[test]
    fn keeps_the_last_n_and_answers_resumes() {
        let mut h = History::default();
        for s in 1..=10 {
            h.push(entry(s, 0), &lim(4, 100));
        }
        assert_eq!(h.len(), 4); // 7..=10
        assert_eq!(h.resume(10, 10), Resume::UpToDate);
        assert_eq!(h.resume(11, 10), Resume::Reset);
        assert_eq!(h.resume(6, 10), Resume::Replay(0..4));
        assert_eq!(h.resume(8, 10), Resume::Replay(2..4));
        assert_eq!(h.resume(5, 10), Resume::Reset, "7 is the oldest: 6 is lost");
        assert_eq!(h.resume(0, 10), Resume::Reset);
    }

    #[test]
    fn old_entries_expire_and_no_history_means_reset() {
        let mut h = History::default();
        h.push(entry(1, 0), &lim(10, 5));
        h.push(entry(2, 3), &lim(10, 5));
        h.expire(7, 5);
        assert_eq!(h.len(), 1);
        h.expire(20, 5);
        assert!(h.is_empty());
        assert_eq!(h.resume(1, 2), Resume::Reset);
        let mut none = History::default();
        none.push(entry(1, 0), &lim(0, 5));
        assert!(none.is_empty());
        assert_eq!(none.resume(0, 1), Resume::Reset);
    }

    #[test]
    fn replay_frames_are_encoded_once_and_cached() {
        let t = TopicName::new("a.b").unwrap();
        let mut e = entry(3, 0);
        let f1 = e.frame(Encoding::Json, t);
        let f2 = e.frame(Encoding::Json, t);
        assert_eq!(f1.as_ptr(), f2.as_ptr());
        assert!(e.frames.get(Encoding::Binary).is_none());
    }
}
