//! The per-connection send queue: encoded frames waiting for the socket.
//!
//! Pure data structure: no I/O, no clock. Two lanes: control frames (pong, ping, close) are
//! never dropped and go out before queued data, but never split a frame that is already half
//! written. Frames are `Bytes`, so one encoded frame can sit in many queues at once.
//! The writer asks for up to N slices ([`SendQueue::fill_slices`]), writes them in one
//! vectored call, then reports how many bytes went out ([`SendQueue::advance`]).

use std::{collections::VecDeque, io::IoSlice};

use bytes::Bytes;

/// Outgoing frames of one connection.
#[derive(Debug, Default)]
pub struct SendQueue {
    /// The frame being written, and how many of its bytes already went out.
    head: Option<(Bytes, usize)>,
    control: VecDeque<Bytes>,
    data: VecDeque<Bytes>,
    /// Bytes not yet written across all lanes (head counted from its offset).
    queued: usize,
}

impl SendQueue {
    /// An empty queue (allocates nothing until used).
    pub fn new() -> Self {
        Self::default()
    }

    /// Bytes waiting to be written.
    pub fn queued_bytes(&self) -> usize {
        self.queued
    }

    /// Whether nothing waits to be written.
    pub fn is_empty(&self) -> bool {
        self.queued == 0
    }

    /// Queue a data frame behind earlier data.
    pub fn push_data(&mut self, frame: Bytes) {
        self.queued += frame.len();
        self.data.push_back(frame);
    }

    /// Queue a control frame ahead of all data not yet started.
    pub fn push_control(&mut self, frame: Bytes) {
        self.queued += frame.len();
        self.control.push_back(frame);
    }

    /// Drop every data frame not yet started (the head, if half written, stays: the peer must
    /// receive whole frames). Returns the bytes discarded.
    pub fn discard_data(&mut self) -> usize {
        let dropped: usize = self.data.iter().map(Bytes::len).sum();
        self.data.clear();
        self.queued -= dropped;
        dropped
    }

    /// Release memory held by empty lanes (called when a connection goes quiet).
    pub fn shrink(&mut self) {
        if self.control.is_empty() {
            self.control = VecDeque::new();
        }
        if self.data.is_empty() {
            self.data = VecDeque::new();
        }
    }

    fn next_frame(&mut self) -> Option<Bytes> {
        self.control.pop_front().or_else(|| self.data.pop_front())
    }

    /// Fill `out` with the next slices to write, in order; returns how many were filled.
    pub fn fill_slices<'a>(&'a mut self, out: &mut [IoSlice<'a>]) -> usize {
        if out.is_empty() {
            return 0;
        }
        if self.head.is_none() {
            self.head = self.next_frame().map(|b| (b, 0));
        }
        let Some((frame, off)) = &self.head else {
            return 0;
        };
        out[0] = IoSlice::new(&frame[*off..]);
        let mut n = 1;
        for frame in self.control.iter().chain(self.data.iter()) {
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
        debug_assert!(written <= self.queued);
        self.queued -= written.min(self.queued);
        while written > 0 {
            let Some((frame, off)) = self.head.as_mut() else {
                self.head = self.next_frame().map(|b| (b, 0));
                if self.head.is_none() {
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
            self.head = self.next_frame().map(|b| (b, 0));
        }
        if let Some((frame, off)) = &self.head {
            if *off == frame.len() {
                self.head = None;
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
