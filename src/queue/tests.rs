//! Unit tests of the send queue: lanes, partial writes, offers, conflation, memory.

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

fn frame(tag: u8, len: usize) -> Bytes {
    Bytes::from(vec![tag; len])
}

fn key(k: u64) -> Option<ConflationKey> {
    Some(ConflationKey::new(1, k))
}

/// A bound that holds exactly `n` frames of `len` bytes.
fn bound_for(n: usize, len: usize) -> usize {
    n * frame_cost(len)
}

const DROP: SlowPolicy = SlowPolicy::Drop;
const CLOSE: SlowPolicy = SlowPolicy::Disconnect;

#[test]
fn offers_under_the_bound_are_appended() {
    let mut q = SendQueue::new();
    let bound = bound_for(3, 4);
    for tag in [b'a', b'b', b'c'] {
        assert_eq!(q.offer(frame(tag, 4), None, bound, CLOSE), Offer::Queued);
    }
    assert_eq!(q.charged_bytes(), bound);
    assert_eq!(
        q.offer(frame(b'd', 4), None, bound, CLOSE),
        Offer::Disconnect
    );
    assert_eq!(q.offer(frame(b'd', 4), None, bound, DROP), Offer::Dropped);
    assert_eq!(drain_all(&mut q, 5), b"aaaabbbbcccc");
}

#[test]
fn one_message_always_fits_an_empty_queue() {
    let mut q = SendQueue::new();
    assert_eq!(q.offer(frame(b'x', 1000), None, 10, CLOSE), Offer::Queued);
    assert_eq!(q.offer(frame(b'y', 1), None, 10, CLOSE), Offer::Disconnect);
    // Half written, the big frame still counts as data in flight.
    let mut slices = [IoSlice::new(&[]); 4];
    q.fill_slices(&mut slices);
    q.advance(999);
    assert_eq!(q.offer(frame(b'y', 1), None, 10, DROP), Offer::Dropped);
    q.advance(1);
    assert_eq!(q.offer(frame(b'y', 1000), None, 10, DROP), Offer::Queued);
}

#[test]
fn a_queued_control_frame_does_not_starve_a_big_message() {
    let mut q = SendQueue::new();
    q.push_control(frame(b'P', 2));
    assert_eq!(q.offer(frame(b'x', 5000), None, 1000, CLOSE), Offer::Queued);
    assert_eq!(drain_all(&mut q, 7).len(), 5002);
}

#[test]
fn push_data_ignores_the_bound_but_counts_against_it() {
    let mut q = SendQueue::new();
    for _ in 0..10 {
        q.push_data(frame(b'r', 100));
    }
    assert_eq!(q.queued_bytes(), 1000);
    assert_eq!(q.charged_bytes(), 10 * frame_cost(100));
    let bound = bound_for(10, 100);
    assert_eq!(q.offer(frame(b'p', 1), None, bound, DROP), Offer::Dropped);
}

#[test]
fn past_half_a_key_keeps_two_frames_and_its_newest_value_goes_to_the_back() {
    let mut q = SendQueue::new();
    let bound = bound_for(6, 2);
    assert_eq!(q.offer(frame(b'a', 2), key(1), bound, CLOSE), Offer::Queued);
    assert_eq!(q.offer(frame(b'b', 2), key(2), bound, CLOSE), Offer::Queued);
    assert_eq!(q.offer(frame(b'c', 2), key(3), bound, CLOSE), Offer::Queued);
    assert!(!q.index_is_live(), "no index up to half the bound");
    // Past half: key 1 has one frame waiting and this one fits, so it becomes the second.
    assert_eq!(q.offer(frame(b'A', 2), key(1), bound, CLOSE), Offer::Queued);
    assert!(q.index_is_live());
    // Key 1 has two: its newest (`A`) is removed, the new value goes to the back.
    assert_eq!(
        q.offer(frame(b'B', 2), key(1), bound, CLOSE),
        Offer::Conflated
    );
    assert_eq!(q.data_slots(), (5, 1), "one tombstone");
    assert_eq!(q.queued_bytes(), 8);
    assert_eq!(
        q.charged_bytes(),
        4 * frame_cost(2),
        "a tombstone is not charged"
    );
    assert_eq!(q.offer(frame(b'C', 2), key(3), bound, CLOSE), Offer::Queued);
    q.check_invariants();
    assert_eq!(drain_all(&mut q, 100), b"aabbccBBCC");
    assert!(!q.index_is_live(), "an empty data lane retires the index");
    assert_eq!(q.data_slots(), (0, 0));
}

#[test]
fn conflated_frames_go_behind_everything_so_seq_never_goes_backwards() {
    // Frames carry their topic's seq, 1 to 7, over keys 1 and 2. Replacing in place (the old
    // rule) turned `1 2` into `3 2` at the third offer.
    let mut q = SendQueue::new();
    let bound = bound_for(4, 1);
    let seq = |n: u8| frame(b'0' + n, 1);
    assert_eq!(q.offer(seq(1), key(1), bound, DROP), Offer::Queued);
    assert_eq!(q.offer(seq(2), key(2), bound, DROP), Offer::Queued);
    assert_eq!(q.offer(seq(3), key(1), bound, DROP), Offer::Queued);
    assert_eq!(q.offer(seq(4), key(1), bound, DROP), Offer::Conflated);
    assert_eq!(q.offer(seq(5), key(2), bound, DROP), Offer::Queued);
    assert_eq!(q.offer(seq(6), key(2), bound, DROP), Offer::Conflated);
    assert_eq!(q.offer(seq(7), key(1), bound, DROP), Offer::Conflated);
    q.check_invariants();
    assert_eq!(drain_all(&mut q, 3), b"1267");
}

#[test]
fn tombstones_are_never_written_and_never_charged() {
    let mut q = SendQueue::new();
    let bound = bound_for(4, 3);
    for (v, k) in [(b'a', 1), (b'b', 2), (b'c', 1), (b'd', 2)] {
        assert_eq!(q.offer(frame(v, 3), key(k), bound, DROP), Offer::Queued);
    }
    assert_eq!(
        q.offer(frame(b'e', 3), key(1), bound, DROP),
        Offer::Conflated
    );
    assert_eq!(
        q.offer(frame(b'f', 3), key(2), bound, DROP),
        Offer::Conflated
    );
    assert_eq!(q.data_slots(), (6, 2));
    assert_eq!(q.charged_bytes(), bound);
    let mut slices = [IoSlice::new(&[]); 8];
    let n = q.fill_slices(&mut slices);
    assert_eq!(n, 4);
    assert!(slices[..n].iter().all(|s| s.len() == 3), "no empty slice");
    let got: Vec<u8> = slices[..n].iter().map(|s| s[0]).collect();
    assert_eq!(got, b"abef");
    // Writing `a` and `b` whole leaves the tombstones of `c` and `d` at the front: dropped.
    q.advance(6);
    assert_eq!(q.data_slots(), (2, 0));
    q.check_invariants();
    assert_eq!(drain_all(&mut q, 2), b"eeefff");
}

#[test]
fn a_stalled_reader_under_sustained_conflation_keeps_the_lane_compact() {
    let mut q = SendQueue::new();
    let bound = bound_for(40, 10);
    let mut compactions = 0;
    let mut last_slots = 0;
    for i in 0..20_000u64 {
        let outcome = q.offer(frame(b'0' + (i % 10) as u8, 10), key(i % 10), bound, CLOSE);
        assert!(outcome.accepted(), "offer {i}: {outcome:?}");
        let (slots, dead) = q.data_slots();
        let live = slots - dead;
        assert!(
            dead <= live / 2 + COMPACT_SLACK,
            "{dead} tombstones, {live} frames"
        );
        if slots < last_slots {
            compactions += 1;
        }
        last_slots = slots;
        if i % 97 == 0 {
            q.check_invariants();
        }
    }
    // 40 frames fit; the first 20 (two per key) are appended up to half the bound, then every
    // offer conflates.
    let (slots, dead) = q.data_slots();
    assert_eq!(
        slots - dead,
        20,
        "two per key, appended below half the bound"
    );
    assert!(compactions > 500, "{compactions} compactions");
    q.check_invariants();
    // Each key's values still arrive in order, and the last value of every key is last.
    let out = drain_all(&mut q, 7);
    let values: Vec<u8> = out.chunks(10).map(|c| c[0]).collect();
    assert_eq!(&values[values.len() - 10..], b"0123456789");
}

#[test]
fn conflation_replaces_the_latest_frame_of_the_key() {
    let mut q = SendQueue::new();
    let bound = bound_for(4, 1);
    assert_eq!(q.offer(frame(b'1', 1), key(7), bound, CLOSE), Offer::Queued);
    assert_eq!(q.offer(frame(b'2', 1), key(7), bound, CLOSE), Offer::Queued);
    assert_eq!(
        q.offer(frame(b'3', 1), key(7), bound, CLOSE),
        Offer::Conflated
    );
    assert_eq!(
        q.offer(frame(b'4', 1), key(7), bound, CLOSE),
        Offer::Conflated
    );
    assert_eq!(
        drain_all(&mut q, 100),
        b"14",
        "the oldest stays, the newest is replaced"
    );
}

#[test]
fn compaction_threshold() {
    // The shape of the compaction bench: 1,000 frames, two per key, full. A tombstone is
    // counted against the frames left once it is made (999): the 508th (past 999 / 2 + 8)
    // compacts.
    let mut q = SendQueue::new();
    let bound = bound_for(1000, 64);
    for i in 0..1000 {
        assert_eq!(
            q.offer(frame(1, 64), key(i % 500), usize::MAX, DROP),
            Offer::Queued
        );
    }
    for k in 0..507 {
        let outcome = q.offer(frame(2, 64), key(k % 500), bound, DROP);
        assert_eq!(outcome, Offer::Conflated);
    }
    assert_eq!(q.data_slots(), (1507, 507));
    assert!(q.index_is_live());
    assert_eq!(q.offer(frame(2, 64), key(7), bound, DROP), Offer::Conflated);
    assert_eq!(q.data_slots(), (1000, 0), "compacted");
    assert!(!q.index_is_live(), "reset; rebuilt on the next lookup");
    assert_eq!(q.charged_bytes(), bound);
    assert_eq!(q.offer(frame(3, 64), key(0), bound, DROP), Offer::Conflated);
    q.check_invariants();
    assert_eq!(q.data_slots(), (1001, 1));
}

#[test]
fn past_half_the_bound_a_hot_key_is_replaced_not_added() {
    let mut q = SendQueue::new();
    let bound = bound_for(8, 1);
    // Up to half the bound, every value is kept: a reader that keeps up loses nothing.
    for v in b"abcd" {
        assert_eq!(q.offer(frame(*v, 1), key(1), bound, DROP), Offer::Queued);
    }
    // Past half, the hot key conflates (its newest goes to the back) and leaves the rest of
    // the room to other keys.
    assert_eq!(
        q.offer(frame(b'e', 1), key(1), bound, DROP),
        Offer::Conflated
    );
    for k in 2..6 {
        assert_eq!(
            q.offer(frame(b'0' + k as u8, 1), key(k), bound, DROP),
            Offer::Queued
        );
    }
    assert_eq!(
        q.offer(frame(b'f', 1), key(1), bound, DROP),
        Offer::Conflated
    );
    assert_eq!(q.offer(frame(b'u', 1), None, bound, DROP), Offer::Dropped);
    q.check_invariants();
    assert_eq!(drain_all(&mut q, 100), b"abc2345f");
}

#[test]
fn a_key_with_one_frame_waiting_gets_a_second_only_if_it_fits() {
    let mut q = SendQueue::new();
    let bound = bound_for(3, 4);
    assert_eq!(q.offer(frame(b'a', 4), key(1), bound, DROP), Offer::Queued);
    // Past half; key 1 has one frame waiting and this one fits: its second.
    assert_eq!(q.offer(frame(b'A', 4), key(1), bound, DROP), Offer::Queued);
    assert_eq!(q.offer(frame(b'b', 4), key(2), bound, DROP), Offer::Queued);
    // Full: key 2's only waiting frame is removed and the new one goes to the back.
    assert_eq!(
        q.offer(frame(b'B', 4), key(2), bound, DROP),
        Offer::Conflated
    );
    assert_eq!(q.charged_bytes(), bound);
    q.check_invariants();
    assert_eq!(drain_all(&mut q, 5), b"aaaaAAAABBBB");
}

#[test]
fn conflation_never_touches_the_half_written_head() {
    let mut q = SendQueue::new();
    let bound = bound_for(1, 4);
    assert_eq!(q.offer(frame(b'a', 4), key(1), bound, CLOSE), Offer::Queued);
    let mut slices = [IoSlice::new(&[]); 4];
    q.fill_slices(&mut slices);
    q.advance(1);
    assert_eq!(
        q.offer(frame(b'b', 4), key(1), bound, CLOSE),
        Offer::Disconnect
    );
    assert_eq!(q.offer(frame(b'b', 4), key(1), bound, DROP), Offer::Dropped);
    assert_eq!(q.queued_bytes(), 3);
    assert_eq!(drain_all(&mut q, 100), b"aaa");
}

#[test]
fn a_frame_offered_but_not_started_can_still_be_conflated() {
    let mut q = SendQueue::new();
    let bound = bound_for(1, 4);
    assert_eq!(q.offer(frame(b'a', 4), key(1), bound, CLOSE), Offer::Queued);
    let mut slices = [IoSlice::new(&[]); 4];
    assert_eq!(q.fill_slices(&mut slices), 1);
    q.advance(0); // the socket took nothing
    assert_eq!(
        q.offer(frame(b'b', 4), key(1), bound, CLOSE),
        Offer::Conflated
    );
    assert_eq!(drain_all(&mut q, 100), b"bbbb");
}

#[test]
fn a_larger_replacement_must_leave_the_queue_within_one_frame() {
    let mut q = SendQueue::new();
    let bound = bound_for(2, 10);
    assert_eq!(q.offer(frame(b'a', 10), key(1), bound, DROP), Offer::Queued);
    assert_eq!(q.offer(frame(b'b', 10), key(2), bound, DROP), Offer::Queued);
    // Smaller or equal always replaces.
    assert_eq!(
        q.offer(frame(b'A', 5), key(1), bound, DROP),
        Offer::Conflated
    );
    // Larger: the queue without the old frame is within the bound, so it replaces.
    assert_eq!(
        q.offer(frame(b'B', 500), key(2), bound, DROP),
        Offer::Conflated
    );
    assert_eq!(q.queued_bytes(), 505);
    // Now the queue without key 1's frame is over the bound: a larger value is refused.
    assert_eq!(q.offer(frame(b'X', 6), key(1), bound, DROP), Offer::Dropped);
    assert_eq!(
        q.offer(frame(b'X', 6), key(1), bound, CLOSE),
        Offer::Disconnect
    );
    assert_eq!(
        q.offer(frame(b'Y', 5), key(1), bound, CLOSE),
        Offer::Conflated
    );
    assert!(q.charged_bytes() <= bound + frame_cost(500));
    q.check_invariants();
}

#[test]
fn a_key_not_queued_follows_the_policy() {
    let mut q = SendQueue::new();
    let bound = bound_for(1, 3);
    assert_eq!(q.offer(frame(b'a', 3), key(1), bound, DROP), Offer::Queued);
    assert_eq!(q.offer(frame(b'b', 3), key(2), bound, DROP), Offer::Dropped);
    assert_eq!(
        q.offer(frame(b'b', 3), key(2), bound, CLOSE),
        Offer::Disconnect
    );
    let other_topic = Some(ConflationKey::new(2, 1));
    assert_eq!(
        q.offer(frame(b'c', 3), other_topic, bound, DROP),
        Offer::Dropped
    );
    assert_eq!(drain_all(&mut q, 100), b"aaa");
}

#[test]
fn unkeyed_frames_are_never_conflated() {
    let mut q = SendQueue::new();
    let bound = bound_for(1, 3);
    q.push_data(frame(b'r', 3));
    assert_eq!(q.offer(frame(b'a', 3), key(1), bound, DROP), Offer::Dropped);
    assert_eq!(q.offer(frame(b'n', 3), None, bound, DROP), Offer::Dropped);
    assert_eq!(drain_all(&mut q, 100), b"rrr");
}

#[test]
fn disconnect_leaves_the_queue_as_it_was() {
    let mut q = SendQueue::new();
    let bound = bound_for(2, 4);
    let _ = q.offer(frame(b'a', 4), key(1), bound, CLOSE);
    let _ = q.offer(frame(b'b', 4), None, bound, CLOSE);
    let before = (q.queued_bytes(), q.charged_bytes());
    assert_eq!(
        q.offer(frame(b'c', 4), None, bound, CLOSE),
        Offer::Disconnect
    );
    assert_eq!((q.queued_bytes(), q.charged_bytes()), before);
    // The caller then discards data and queues its close on the control lane.
    assert_eq!(q.discard_data(), 8);
    q.push_control(frame(b'C', 2));
    assert_eq!(drain_all(&mut q, 100), b"CC");
}

#[test]
fn control_overtakes_data_that_was_filled_but_not_written() {
    let mut q = SendQueue::new();
    q.push_data(frame(b'd', 3));
    let mut slices = [IoSlice::new(&[]); 4];
    assert_eq!(q.fill_slices(&mut slices), 1);
    q.push_control(frame(b'C', 1));
    assert_eq!(drain_all(&mut q, 100), b"Cddd");
}

#[test]
fn discard_data_retires_the_index() {
    let mut q = SendQueue::new();
    let bound = bound_for(2, 2);
    let _ = q.offer(frame(b'a', 2), key(1), bound, DROP);
    let _ = q.offer(frame(b'b', 2), key(2), bound, DROP);
    assert_eq!(
        q.offer(frame(b'A', 2), key(1), bound, DROP),
        Offer::Conflated
    );
    assert!(q.index_is_live());
    assert_eq!(q.discard_data(), 4);
    assert!(!q.index_is_live());
    assert_eq!(q.offer(frame(b'x', 2), key(1), bound, DROP), Offer::Queued);
    assert_eq!(q.offer(frame(b'y', 2), key(2), bound, DROP), Offer::Queued);
    assert_eq!(
        q.offer(frame(b'X', 2), key(1), bound, DROP),
        Offer::Conflated
    );
    q.check_invariants();
    assert_eq!(drain_all(&mut q, 1), b"yyXX");
}

#[test]
fn index_positions_survive_wrapping() {
    let mut q = SendQueue::new();
    q.lanes().data_base = u32::MAX - 2;
    let bound = bound_for(4, 1);
    for (v, k) in [(b'a', 1), (b'b', 2), (b'c', 3), (b'd', 4)] {
        assert_eq!(q.offer(frame(v, 1), key(k), bound, DROP), Offer::Queued);
    }
    // `d` has id 0 (past the wrap); full, so it is removed and `D` (id 1) appended.
    assert_eq!(
        q.offer(frame(b'D', 1), key(4), bound, DROP),
        Offer::Conflated
    );
    let mut slices = [IoSlice::new(&[]); 1];
    q.fill_slices(&mut slices);
    q.advance(2); // a and b out
    q.check_invariants();
    // Key 3 has one frame (`c`, id u32::MAX) and this one fits: its second, id 2.
    assert_eq!(q.offer(frame(b'C', 1), key(3), bound, DROP), Offer::Queued);
    assert_eq!(
        q.offer(frame(b'K', 1), key(3), bound, DROP),
        Offer::Conflated
    );
    assert_eq!(q.offer(frame(b'e', 1), key(5), bound, DROP), Offer::Queued);
    assert_eq!(
        q.offer(frame(b'E', 1), key(5), bound, DROP),
        Offer::Conflated
    );
    assert_eq!(q.offer(frame(b'x', 1), None, bound, DROP), Offer::Dropped);
    q.check_invariants();
    assert_eq!(drain_all(&mut q, 100), b"cDKE");
}

#[test]
fn shrink_releases_lanes_and_index() {
    let mut q = SendQueue::new();
    let bound = bound_for(1, 2);
    let _ = q.offer(frame(b'a', 2), key(1), bound, DROP);
    assert_eq!(
        q.offer(frame(b'b', 2), key(1), bound, DROP),
        Offer::Conflated
    );
    q.shrink();
    assert!(q.lanes.is_some(), "shrink keeps queued frames");
    drain_all(&mut q, 1);
    q.shrink();
    assert!(q.lanes.is_none());
    assert_eq!(std::mem::size_of_val(&q), 8);
}

#[test]
fn frame_overhead_covers_the_bookkeeping() {
    // docs/backpressure.md quotes these sizes.
    assert_eq!(std::mem::size_of::<Lanes>(), 176);
    assert_eq!(std::mem::size_of::<Slot>(), 48);
    assert_eq!(KeyIndex::WORST_BYTES_PER_ENTRY, 58);
    assert_eq!(FRAME_OVERHEAD, 208);
    assert!(3 * std::mem::size_of::<Slot>() + KeyIndex::WORST_BYTES_PER_ENTRY <= FRAME_OVERHEAD);
}
