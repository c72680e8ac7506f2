//! The per-connection send queue: encoded frames waiting for the socket.
//!
//! Pure data structure: no I/O, no clock. Two lanes: control frames (pong, ping, close) are
//! never dropped and go out before queued data, but never split a frame that is already half
//! written. Frames are `Bytes`, so one encoded frame can sit in many queues at once.
//! The writer asks for up to N slices ([`SendQueue::fill_slices`]), writes them in one
//! vectored call, then reports how many bytes went out ([`SendQueue::advance`]).

use std::{collections::VecDeque, io::IoSlice};

use bytes::Bytes;

/// Outgoing frames of one connection. Eight bytes while idle: the lanes are allocated on
/// first use and released by [`SendQueue::shrink`] once the connection goes quiet.
#[derive(Debug, Default)]
pub struct SendQueue {
    lanes: Option<Box<Lanes>>,
}

#[derive(Debug, Default)]
struct Lanes {
    /// The frame being written, and how many of its bytes already went out.
    head: Option<(Bytes, usize)>,
    control: VecDeque<Bytes>,
    data: VecDeque<Bytes>,
    /// Bytes not yet written across all lanes (head counted from its offset).
    queued: usize,
}

impl Lanes {
    fn next_frame(&mut self) -> Option<Bytes> {
        self.control.pop_front().or_else(|| self.data.pop_front())
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

    /// Whether nothing waits to be written.
    pub fn is_empty(&self) -> bool {
        self.queued_bytes() == 0
    }

    /// Queue a data frame behind earlier data.
    pub fn push_data(&mut self, frame: Bytes) {
        let l = self.lanes();
        l.queued += frame.len();
        l.data.push_back(frame);
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
        let Some(l) = self.lanes.as_mut() else { return 0 };
        let dropped: usize = l.data.iter().map(Bytes::len).sum();
        l.data.clear();
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
        let Some(l) = self.lanes.as_deref_mut() else { return 0 };
        if out.is_empty() {
            return 0;
        }
        if l.head.is_none() {
            l.head = l.next_frame().map(|b| (b, 0));
        }
        let Some((frame, off)) = &l.head else {
            return 0;
        };
        out[0] = IoSlice::new(&frame[*off..]);
        let mut n = 1;
        for frame in l.control.iter().chain(l.data.iter()) {
            if n == out.len() {
                break;
            }
            out[n] = IoSlice::new(frame);
            n += 1;
        }
        n
    }

    /// Record that `written` bytes from the front of the queue went out.
    pub fn advance(&mut self, mut written: usize) {
        let Some(l) = self.lanes.as_deref_mut() else { return };
        debug_assert!(written <= l.queued);
        l.queued -= written.min(l.queued);
        while written > 0 {
            let Some((frame, off)) = l.head.as_mut() else {
                l.head = l.next_frame().map(|b| (b, 0));
                if l.head.is_none() {
                    return;
                }
                continue;
            };
            let left = frame.len() - *off;
            if written < left {
                *off += written;
                return;
            }
            written -= left;
            l.head = l.next_frame().map(|b| (b, 0));
        }
        if let Some((frame, off)) = &l.head {
            if *off == frame.len() {
                l.head = None;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain_all(q: &mut SendQueue, chunk: usize) -> Vec<u8> {
        let mut out = Vec::new();
        while !q.is_empty() {
            let mut slices = [IoSlice::new(&[]); 4];
            let n = q.fill_slices(&mut slices);
            assert!(n > 0);
            let mut budget = chunk;
            let mut wrote = 0;
            for s in &slices[..n] {
                let take = s.len().min(budget);
                out.extend_from_slice(&s[..take]);
                budget -= take;
                wrote += take;
                if budget == 0 {
                    break;
                }
            }
            q.advance(wrote);
        }
        out
    }

    #[test]
    fn control_frames_overtake_queued_data() {
        let mut q = SendQueue::new();
        q.push_data(Bytes::from_static(b"d1"));
        q.push_data(Bytes::from_static(b"d2"));
        q.push_control(Bytes::from_static(b"C"));
        assert_eq!(q.queued_bytes(), 5);
        assert_eq!(drain_all(&mut q, 100), b"Cd1d2");
    }

    #[test]
    fn control_never_splits_a_half_written_frame() {
        let mut q = SendQueue::new();
        q.push_data(Bytes::from_static(b"abcdef"));
        q.push_data(Bytes::from_static(b"gh"));
        let mut slices = [IoSlice::new(&[]); 4];
        let n = q.fill_slices(&mut slices);
        assert_eq!(n, 2);
        q.advance(3);
        q.push_control(Bytes::from_static(b"P"));
        assert_eq!(drain_all(&mut q, 100), b"defPgh");
    }

    #[test]
    fn partial_writes_of_every_size_keep_order() {
        for chunk in 1..12 {
            let mut q = SendQueue::new();
            q.push_data(Bytes::from_static(b"hello"));
            q.push_data(Bytes::from_static(b" "));
            q.push_data(Bytes::from_static(b"world"));
            assert_eq!(drain_all(&mut q, chunk), b"hello world", "chunk {chunk}");
            assert_eq!(q.queued_bytes(), 0);
        }
    }

    #[test]
    fn an_idle_queue_is_eight_bytes_and_shrinks_back() {
        assert_eq!(std::mem::size_of::<SendQueue>(), 8);
        let mut q = SendQueue::new();
        q.push_data(Bytes::from_static(b"x"));
        q.shrink();
        assert_eq!(q.queued_bytes(), 1, "shrink keeps queued frames");
        assert_eq!(drain_all(&mut q, 1), b"x");
        q.shrink();
        assert!(q.lanes.is_none());
    }

    #[test]
    fn discard_data_keeps_head_and_control() {
        let mut q = SendQueue::new();
        q.push_data(Bytes::from_static(b"abcd"));
        q.push_data(Bytes::from_static(b"efgh"));
        let mut slices = [IoSlice::new(&[]); 4];
        q.fill_slices(&mut slices);
        q.advance(2);
        q.push_control(Bytes::from_static(b"X"));
        assert_eq!(q.discard_data(), 4);
        assert_eq!(q.queued_bytes(), 3);
        assert_eq!(drain_all(&mut q, 100), b"cdX");
    }
}
