//! Property tests: random operation sequences against a simple model of the rules (vectors and
//! linear scans, no index, no tombstones), plus the bound, latest-wins, per-topic order, the
//! keyed-feed guarantee and the lane's length as properties of their own.

use std::{
    collections::{HashMap, VecDeque},
    io::IoSlice,
};

use bytes::Bytes;
use proptest::prelude::*;

use super::*;

/// The rules written the plain way: a vector of data frames (not started) scanned for a key;
/// a removed frame is removed from the vector.
#[derive(Debug, Default)]
struct Model {
    /// Half-written frame, bytes written, whether it is data.
    head: Option<(Bytes, usize, bool)>,
    control: VecDeque<Bytes>,
    data: Vec<(Bytes, Option<ConflationKey>)>,
}

impl Model {
    fn queued(&self) -> usize {
        self.head.as_ref().map_or(0, |h| h.0.len() - h.1)
            + self.control.iter().map(Bytes::len).sum::<usize>()
            + self.data.iter().map(|d| d.0.len()).sum::<usize>()
    }

    fn charged(&self) -> usize {
        let frames = self.control.len() + self.data.len() + usize::from(self.head.is_some());
        self.queued() + frames * FRAME_OVERHEAD
    }

    fn has_data(&self) -> bool {
        !self.data.is_empty() || self.head.as_ref().is_some_and(|h| h.2)
    }

    fn offer(
        &mut self,
        f: Bytes,
        key: Option<ConflationKey>,
        bound: usize,
        p: SlowPolicy,
    ) -> Offer {
        let charged = self.charged();
        let cost = charged + f.len() + FRAME_OVERHEAD;
        let fits = !self.has_data() || cost <= bound;
        if self.has_data() && cost > bound / 2 && key.is_some() {
            let waiting: Vec<usize> = (0..self.data.len())
                .filter(|&i| self.data[i].1 == key)
                .collect();
            if let Some(&newest) = waiting.last() {
                let old = self.data[newest].0.len();
                let conflate = waiting.len() >= 2 || !fits;
                if conflate && (fits || f.len() <= old || charged - old <= bound) {
                    self.data.remove(newest);
                    self.data.push((f, key));
                    return Offer::Conflated;
                }
            }
        }
        if fits {
            self.data.push((f, key));
            return Offer::Queued;
        }
        match p {
            SlowPolicy::Drop => Offer::Dropped,
            SlowPolicy::Disconnect => Offer::Disconnect,
        }
    }

    /// The remaining bytes of the next `n` frames, in write order.
    fn slices(&self, n: usize) -> Vec<Vec<u8>> {
        let head = self.head.iter().map(|h| h.0[h.1..].to_vec());
        let control = self.control.iter().map(|b| b.to_vec());
        let data = self.data.iter().map(|d| d.0.to_vec());
        head.chain(control).chain(data).take(n).collect()
    }

    fn advance(&mut self, mut written: usize) {
        while written > 0 {
            let (f, off, is_data) = match self.head.take() {
                Some(h) => h,
                None => match self.control.pop_front() {
                    Some(c) => (c, 0, false),
                    None => (self.data.remove(0).0, 0, true),
                },
            };
            let take = written.min(f.len() - off);
            written -= take;
            if off + take < f.len() {
                self.head = Some((f, off + take, is_data));
            }
        }
    }
}

#[derive(Debug, Clone)]
enum Op {
    Offer {
        len: usize,
        key: Option<(u32, u64)>,
        drop: bool,
    },
    PushData(usize),
    PushControl(usize),
    Write {
        budget: usize,
        slices: usize,
    },
    Discard,
    Shrink,
}

fn op() -> impl Strategy<Value = Op> {
    let key = prop::option::of((0u32..2, 0u64..4));
    prop_oneof![
        8 => (1usize..400, key, any::<bool>())
            .prop_map(|(len, key, drop)| Op::Offer { len, key, drop }),
        4 => (0usize..1200, 1usize..6).prop_map(|(budget, slices)| Op::Write { budget, slices }),
        1 => (1usize..200).prop_map(Op::PushData),
        1 => (1usize..130).prop_map(Op::PushControl),
        1 => Just(Op::Discard),
        1 => Just(Op::Shrink),
    ]
}

/// Distinct bytes for every frame, so any mix-up shows in the written stream.
fn frame(n: &mut u32, len: usize) -> Bytes {
    *n += 1;
    let tag = n.to_le_bytes();
    Bytes::from(
        (0..len)
            .map(|i| tag[i % 4] ^ (i / 4) as u8)
            .collect::<Vec<u8>>(),
    )
}

/// Write up to `budget` bytes from at most `slices` slices; returns the slices offered and the
/// bytes written.
fn write(q: &mut SendQueue, budget: usize, slices: usize) -> (Vec<Vec<u8>>, usize) {
    let mut out = [IoSlice::new(&[]); 8];
    let n = q.fill_slices(&mut out[..slices]);
    let offered: Vec<Vec<u8>> = out[..n].iter().map(|s| s.to_vec()).collect();
    let written = offered.iter().map(Vec::len).sum::<usize>().min(budget);
    q.advance(written);
    (offered, written)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn the_queue_behaves_like_the_model(
        bound in 0usize..4000,
        ops in prop::collection::vec(op(), 1..200),
    ) {
        let mut q = SendQueue::new();
        let mut m = Model::default();
        let mut n = 0;
        for op in ops {
            match op {
                Op::Offer { len, key, drop } => {
                    let f = frame(&mut n, len);
                    let key = key.map(|(t, k)| ConflationKey::new(t, k));
                    let p = if drop { SlowPolicy::Drop } else { SlowPolicy::Disconnect };
                    let got = q.offer(f.clone(), key, bound, p);
                    prop_assert_eq!(got, m.offer(f, key, bound, p));
                }
                Op::PushData(len) => {
                    let f = frame(&mut n, len);
                    q.push_data(f.clone());
                    m.data.push((f, None));
                }
                Op::PushControl(len) => {
                    let f = frame(&mut n, len);
                    q.push_control(f.clone());
                    m.control.push_back(f);
                }
                Op::Write { budget, slices } => {
                    let (offered, written) = write(&mut q, budget, slices);
                    prop_assert_eq!(offered, m.slices(slices));
                    m.advance(written);
                }
                Op::Discard => {
                    let before = m.queued();
                    m.data.clear();
                    prop_assert_eq!(q.discard_data(), before - m.queued());
                }
                Op::Shrink => {
                    q.shrink();
                    prop_assert_eq!(q.lanes.is_none(), m.queued() == 0);
                }
            }
            q.check_invariants();
            prop_assert_eq!(q.queued_bytes(), m.queued());
            prop_assert_eq!(q.charged_bytes(), m.charged());
            prop_assert_eq!(q.is_empty(), m.queued() == 0);
        }
        while !q.is_empty() {
            let (rest, written) = write(&mut q, usize::MAX, 8);
            prop_assert_eq!(rest, m.slices(8));
            m.advance(written);
        }
        prop_assert_eq!(m.queued(), 0);
    }

    #[test]
    fn the_bound_holds_within_one_message(
        bound in 0usize..6000,
        ops in prop::collection::vec(
            prop_oneof![
                4 => (1usize..600, prop::option::of(0u64..3), any::<bool>())
                    .prop_map(|(len, key, drop)| Op::Offer { len, key: key.map(|k| (0, k)), drop }),
                1 => (0usize..800, 1usize..6)
                    .prop_map(|(budget, slices)| Op::Write { budget, slices }),
            ],
            1..300,
        ),
    ) {
        let mut q = SendQueue::new();
        let mut n = 0;
        let mut max_len = 0;
        for op in ops {
            match op {
                Op::Offer { len, key, drop } => {
                    max_len = max_len.max(len);
                    let key = key.map(|(t, k)| ConflationKey::new(t, k));
                    let p = if drop { SlowPolicy::Drop } else { SlowPolicy::Disconnect };
                    let _ = q.offer(frame(&mut n, len), key, bound, p);
                }
                Op::Write { budget, slices } => {
                    write(&mut q, budget, slices);
                }
                _ => unreachable!(),
            }
            prop_assert!(q.queued_bytes() <= bound + max_len);
            prop_assert!(q.charged_bytes() <= bound + frame_cost(max_len));
        }
    }

    #[test]
    fn every_topic_is_delivered_in_seq_order_and_the_latest_value_of_every_key_wins(
        bound in 0usize..5000,
        ops in prop::collection::vec(
            prop_oneof![
                6 => (8usize..300, 0u32..3, prop::option::of(0u64..4), any::<bool>())
                    .prop_map(|(len, t, key, drop)| Op::Offer {
                        len,
                        key: Some((t, key.unwrap_or(u64::MAX))),
                        drop,
                    }),
                2 => (0usize..900, 1usize..8)
                    .prop_map(|(budget, slices)| Op::Write { budget, slices }),
            ],
            1..400,
        ),
    ) {
        // Frames: length (u16 LE), topic (u8), key (u8, 255: none), seq within the topic (u32
        // LE), filler. Each topic counts its own seq, one per offer, accepted or not.
        let mut q = SendQueue::new();
        let mut wire = Vec::new();
        let mut seq = [0u32; 3];
        let mut last_accepted: HashMap<(u8, u8), u32> = HashMap::new();
        let mut max_len = 0;
        for op in ops {
            match op {
                Op::Offer { len, key: Some((t, k)), drop } => {
                    max_len = max_len.max(len);
                    seq[t as usize] += 1;
                    let s = seq[t as usize];
                    let kb = if k == u64::MAX { 255 } else { k as u8 };
                    let mut f = (len as u16).to_le_bytes().to_vec();
                    f.extend_from_slice(&[t as u8, kb]);
                    f.extend_from_slice(&s.to_le_bytes());
                    f.resize(len, s as u8);
                    let key = (k != u64::MAX).then(|| ConflationKey::new(t, k));
                    let p = if drop { SlowPolicy::Drop } else { SlowPolicy::Disconnect };
                    if q.offer(Bytes::from(f), key, bound, p).accepted() && key.is_some() {
                        last_accepted.insert((t as u8, kb), s);
                    }
                }
                Op::Write { budget, slices } => {
                    let (offered, written) = write(&mut q, budget, slices);
                    wire.extend(offered.concat().into_iter().take(written));
                }
                _ => unreachable!(),
            }
            // Within one message of the bound, and the lane holds few tombstones.
            q.check_invariants();
            prop_assert!(q.charged_bytes() <= bound + frame_cost(max_len));
            let (slots, dead) = q.data_slots();
            prop_assert!(dead <= (slots - dead) / 2 + COMPACT_SLACK);
        }
        while !q.is_empty() {
            let (rest, _) = write(&mut q, usize::MAX, 8);
            wire.extend(rest.concat());
        }
        let mut last_seq: HashMap<u8, u32> = HashMap::new();
        let mut last_seen: HashMap<(u8, u8), u32> = HashMap::new();
        let mut at = 0;
        while at < wire.len() {
            let len = usize::from(u16::from_le_bytes([wire[at], wire[at + 1]]));
            let (t, k) = (wire[at + 2], wire[at + 3]);
            let s = u32::from_le_bytes(wire[at + 4..at + 8].try_into().unwrap());
            prop_assert!(wire[at + 8..at + len].iter().all(|&b| b == s as u8), "intact");
            if let Some(prev) = last_seq.insert(t, s) {
                prop_assert!(prev < s, "topic {}: seq {} after {}", t, s, prev);
            }
            if k != 255 {
                last_seen.insert((t, k), s);
            }
            at += len;
        }
        prop_assert_eq!(last_seen, last_accepted);
    }

    #[test]
    fn the_latest_accepted_value_of_every_key_wins(
        bound in 0usize..3000,
        ops in prop::collection::vec(
            prop_oneof![
                4 => prop::option::of(0u64..5).prop_map(|key| Op::Offer {
                    len: 8,
                    key: key.map(|k| (0, k)),
                    drop: true,
                }),
                1 => (0usize..40, 1usize..6)
                    .prop_map(|(budget, slices)| Op::Write { budget, slices }),
            ],
            1..300,
        ),
    ) {
        // Frames of 8 bytes: stream (key, or 9 for none), sequence number, padding.
        let mut q = SendQueue::new();
        let mut wire = Vec::new();
        let mut last_accepted: HashMap<u8, u32> = HashMap::new();
        let mut accepted_unkeyed = Vec::new();
        for (seq, op) in ops.into_iter().enumerate() {
            let seq = seq as u32;
            match op {
                Op::Offer { key, .. } => {
                    let stream = key.map_or(9, |(_, k)| k as u8);
                    let mut f = vec![stream];
                    f.extend_from_slice(&seq.to_le_bytes());
                    f.extend_from_slice(&[0; 3]);
                    let key = key.map(|(t, k)| ConflationKey::new(t, k));
                    if q.offer(Bytes::from(f), key, bound, SlowPolicy::Drop).accepted() {
                        if key.is_some() {
                            last_accepted.insert(stream, seq);
                        } else {
                            accepted_unkeyed.push(seq);
                        }
                    }
                }
                Op::Write { budget, slices } => {
                    let (offered, written) = write(&mut q, budget, slices);
                    wire.extend(offered.concat().into_iter().take(written));
                }
                _ => unreachable!(),
            }
        }
        while !q.is_empty() {
            let (rest, _) = write(&mut q, usize::MAX, 8);
            wire.extend(rest.concat());
        }
        let mut last_seen: HashMap<u8, u32> = HashMap::new();
        let mut unkeyed = Vec::new();
        let mut prev_seq = None;
        for f in wire.chunks(8) {
            let seq = u32::from_le_bytes(f[1..5].try_into().unwrap());
            // One topic: the whole stream is in offer order.
            prop_assert!(prev_seq < Some(seq), "{} after {:?}", seq, prev_seq);
            prev_seq = Some(seq);
            if f[0] == 9 {
                unkeyed.push(seq);
            } else if let Some(prev) = last_seen.insert(f[0], seq) {
                prop_assert!(prev < seq, "key {}: {} after {}", f[0], seq, prev);
            }
        }
        prop_assert_eq!(last_seen, last_accepted);
        prop_assert_eq!(unkeyed, accepted_unkeyed);
    }

    #[test]
    fn a_keyed_feed_with_room_for_two_frames_of_every_key_is_never_refused(
        keys in 1u64..10,
        spare in 0usize..2000,
        ops in prop::collection::vec(
            prop_oneof![
                4 => (0u64..10).prop_map(|k| Op::Offer { len: 0, key: Some((0, k)), drop: false }),
                1 => (0usize..400, 1usize..6)
                    .prop_map(|(budget, slices)| Op::Write { budget, slices }),
            ],
            1..400,
        ),
    ) {
        // Key k's frames are 20 + 30k bytes. With room for two frames of every key, plus one,
        // in half the bound, conflation absorbs any reader speed, a stalled one included.
        let len = |k: u64| 20 + 30 * k as usize;
        let bound = 2 * (2 * keys as usize + 1) * frame_cost(len(keys - 1)) + spare;
        let mut q = SendQueue::new();
        let mut n = 0;
        for op in ops {
            match op {
                Op::Offer { key: Some((t, k)), .. } => {
                    let k = k % keys;
                    let f = frame(&mut n, len(k));
                    let key = Some(ConflationKey::new(t, k));
                    let got = q.offer(f, key, bound, SlowPolicy::Disconnect);
                    prop_assert!(got.accepted(), "{:?} with {} charged", got, q.charged_bytes());
                    q.check_invariants();
                }
                Op::Write { budget, slices } => {
                    write(&mut q, budget, slices);
                }
                _ => unreachable!(),
            }
        }
    }
}
