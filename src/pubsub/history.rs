//! A topic's history: its last N messages (bounded by count and by age), kept by the topic's
//! owner so that a `sub` with `since` can be served, or answered with `reset`.

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
}

impl Entry {
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
}

impl History {
    /// Append the newest message, then trim to `max_len` entries and `max_age_ticks`.
    pub fn push(&mut self, e: Entry, max_len: usize, max_age_ticks: u64) {
        if max_len == 0 {
            return;
        }
        let now = e.tick;
        debug_assert!(self.entries.back().map_or(true, |b| b.seq + 1 == e.seq));
        self.entries.push_back(e);
        while self.entries.len() > max_len {
            self.entries.pop_front();
        }
        self.expire(now, max_age_ticks);
    }

    /// Drop entries older than `max_age_ticks` at tick `now`.
    pub fn expire(&mut self, now: u64, max_age_ticks: u64) {
        while self
            .entries
            .front()
            .is_some_and(|f| now.saturating_sub(f.tick) > max_age_ticks)
        {
            self.entries.pop_front();
        }
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
        Entry {
            seq,
            ts_us: seq,
            tick,
            data: Bytes::from_static(b"1"),
            json: true,
            key: None,
            frames: Frames::default(),
        }
    }

    #[test]
    fn keeps_the_last_n_and_answers_resumes() {
        let mut h = History::default();
        for s in 1..=10 {
            h.push(entry(s, 0), 4, 100);
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
        h.push(entry(1, 0), 10, 5);
        h.push(entry(2, 3), 10, 5);
        h.expire(7, 5);
        assert_eq!(h.len(), 1);
        h.expire(20, 5);
        assert!(h.is_empty());
        assert_eq!(h.resume(1, 2), Resume::Reset);
        let mut none = History::default();
        none.push(entry(1, 0), 0, 5);
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
