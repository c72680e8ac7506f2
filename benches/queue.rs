//! Criterion benchmarks of the per-connection send queue: push and drain throughput, offers on
//! the fast path, and conflation on a full queue (two frames per key: the newest is removed,
//! leaving a tombstone, and the new one appended; compaction of the tombstones included),
//! with the index, against a linear scan. Each bench is short (about 2 s measured) so the set
//! stays quick.

use std::{collections::VecDeque, io::IoSlice, time::Duration};

use bytes::Bytes;
use corecast::queue::{frame_cost, ConflationKey, Offer, SendQueue, SlowPolicy};
use criterion::{
    black_box, criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput,
};

/// Frames per batch in the throughput benches (a vectored write takes up to 64).
const BATCH: usize = 64;
/// The full queue of the conflation benches: frames, distinct keys (two frames each), frame
/// length.
const FULL: usize = 1000;
const KEYS: u64 = 500;
const LEN: usize = 64;

fn key(k: u64) -> Option<ConflationKey> {
    Some(ConflationKey::new(7, k))
}

/// Write everything queued, 64 slices per call, as the server's flush does.
fn drain(q: &mut SendQueue) {
    while !q.is_empty() {
        let mut slices = [IoSlice::new(&[]); BATCH];
        let n = q.fill_slices(&mut slices);
        let written: usize = slices[..n].iter().map(|s| s.len()).sum();
        q.advance(written);
    }
}

/// A queue holding `FULL` frames, keys `0..KEYS` in turn (so two waiting frames per key), and
/// the bound that makes it full. Offered with no bound, so no index is built yet.
fn full_queue(frame: &Bytes) -> (SendQueue, usize) {
    let bound = FULL * frame_cost(LEN);
    let mut q = SendQueue::new();
    for i in 0..FULL as u64 {
        let outcome = q.offer(frame.clone(), key(i % KEYS), usize::MAX, SlowPolicy::Drop);
        assert_eq!(outcome, Offer::Queued);
    }
    (q, bound)
}

fn bench_throughput(c: &mut Criterion) {
    let mut group = c.benchmark_group("queue");
    group.throughput(Throughput::Elements(BATCH as u64));
    let frame = Bytes::from(vec![0x5a; LEN]);
    let mut q = SendQueue::new();
    group.bench_function(BenchmarkId::new("push_data+drain", BATCH), |b| {
        b.iter(|| {
            for _ in 0..BATCH {
                q.push_data(frame.clone());
            }
            drain(black_box(&mut q));
        })
    });
    let bound = 64 << 10;
    for (name, keyed) in [("offer+drain/unkeyed", false), ("offer+drain/keyed", true)] {
        group.bench_function(BenchmarkId::new(name, BATCH), |b| {
            b.iter(|| {
                for i in 0..BATCH as u64 {
                    let k = if keyed { key(i % 8) } else { None };
                    let outcome = q.offer(frame.clone(), k, bound, SlowPolicy::Disconnect);
                    debug_assert_eq!(outcome, Offer::Queued);
                    let _ = black_box(outcome);
                }
                drain(black_box(&mut q));
            })
        });
    }
    group.finish();
}

fn bench_conflation(c: &mut Criterion) {
    let mut group = c.benchmark_group("queue_full_1000x500keys");
    group.throughput(Throughput::Elements(1));
    let frame = Bytes::from(vec![0x5a; LEN]);

    // Steady state under sustained conflation: every offer removes its key's newest frame (a
    // tombstone) and appends; every 508th offer also compacts the lane (1,000 frames and 508
    // tombstones), and the offer after it rebuilds the index: both amortised in the figure.
    let (mut q, bound) = full_queue(&frame);
    let mut i = 0u64;
    group.bench_function("offer_conflate", |b| {
        b.iter(|| {
            i = i.wrapping_add(37);
            let outcome = q.offer(frame.clone(), key(i % KEYS), bound, SlowPolicy::Drop);
            debug_assert_eq!(outcome, Offer::Conflated);
            black_box(outcome)
        })
    });
    group.bench_function("offer_refused_unkeyed", |b| {
        b.iter(|| black_box(q.offer(frame.clone(), None, bound, SlowPolicy::Drop)))
    });
    group.bench_function("offer_refused_unknown_key", |b| {
        b.iter(|| black_box(q.offer(frame.clone(), key(KEYS + 1), bound, SlowPolicy::Drop)))
    });
    // One compaction on its own: the 508th tombstone (past 999 / 2 + 8: the frames left once it
    // is made) makes the offer compact the lane (`tests::compaction_threshold` checks it).
    group.bench_function("offer_conflate_that_compacts", |b| {
        b.iter_batched_ref(
            || {
                let (mut q, bound) = full_queue(&frame);
                for k in 0..507 {
                    let outcome = q.offer(frame.clone(), key(k % KEYS), bound, SlowPolicy::Drop);
                    assert_eq!(outcome, Offer::Conflated);
                }
                (q, bound)
            },
            |(q, bound)| black_box(q.offer(frame.clone(), key(7), *bound, SlowPolicy::Drop)),
            BatchSize::LargeInput,
        )
    });
    group.bench_function("first_conflation_builds_index", |b| {
        b.iter_batched_ref(
            || full_queue(&frame),
            |(q, bound)| black_box(q.offer(frame.clone(), key(3), *bound, SlowPolicy::Drop)),
            BatchSize::LargeInput,
        )
    });

    // The alternative to the index: scan the data lane from the back on every offer.
    let mut lane: VecDeque<(Bytes, ConflationKey)> = (0..FULL as u64)
        .map(|i| (frame.clone(), ConflationKey::new(7, i % KEYS)))
        .collect();
    group.bench_function("linear_scan_reference", |b| {
        b.iter(|| {
            i = i.wrapping_add(37);
            let k = ConflationKey::new(7, black_box(i % KEYS));
            let pos = lane.iter().rposition(|s| s.1 == k).unwrap();
            lane[pos].0 = frame.clone();
        })
    });
    // The worst case of a scan: a key that is not queued, the whole lane read every time.
    group.bench_function("linear_scan_reference_miss", |b| {
        b.iter(|| {
            let k = ConflationKey::new(7, black_box(KEYS + 1));
            black_box(lane.iter().rposition(|s| s.1 == k))
        })
    });
    group.finish();
}

fn quick() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(30)
}

criterion_group! {
    name = benches;
    config = quick();
    targets = bench_throughput, bench_conflation
}
criterion_main!(benches);
