//! Criterion benchmarks of the publish path inside one worker: encoding a published message
//! into its shared frame once (header and body in one `Bytes`), and the local fanout of that
//! frame to 1,000 and 10,000 subscribers' send queues (one `offer` of a reference-counted
//! clone each), followed by the writer's drain of every queue, as the worker does per wake.

use std::{io::IoSlice, time::Duration};

use bytes::Bytes;
use corecast::{
    pubsub::{frames, wire::Encoding, Payload, TopicName},
    queue::{ConflationKey, SendQueue, SlowPolicy},
};
use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

const DATA: &str = r#"{"px":64000.5,"qty":0.25,"side":"buy"}"#;

fn bench_encode_once(c: &mut Criterion) {
    let topic = TopicName::new("prices.BTC-USD").unwrap();
    let mut g = c.benchmark_group("encode_once");
    for enc in [Encoding::Json, Encoding::Binary] {
        g.bench_function(format!("{enc:?}").to_lowercase(), |b| {
            b.iter(|| {
                black_box(frames::msg(
                    enc,
                    topic,
                    black_box(123_456),
                    1_700_000_000_000_000,
                    Payload::Json(black_box(DATA)),
                ))
            })
        });
    }
    g.finish();
}

/// Offer one frame to every queue, then drain every queue as the writer would (fill the
/// slices, "write" them all, advance).
fn fanout(queues: &mut [SendQueue], frame: &Bytes, key: Option<ConflationKey>) {
    for q in queues.iter_mut() {
        let _ = q.offer(frame.clone(), key, 1 << 20, SlowPolicy::Disconnect);
    }
    for q in queues.iter_mut() {
        let mut slices = [IoSlice::new(&[]); 64];
        let n = q.fill_slices(&mut slices);
        let bytes: usize = slices[..n].iter().map(|s| s.len()).sum();
        q.advance(bytes);
    }
}

fn bench_local_fanout(c: &mut Criterion) {
    let topic = TopicName::new("prices.BTC-USD").unwrap();
    let frame = frames::msg(Encoding::Json, topic, 1, 2, Payload::Json(DATA));
    let mut g = c.benchmark_group("local_fanout");
    for subs in [1_000usize, 10_000] {
        g.throughput(Throughput::Elements(subs as u64));
        let mut queues: Vec<SendQueue> = (0..subs).map(|_| SendQueue::new()).collect();
        g.bench_with_input(BenchmarkId::new("unkeyed", subs), &subs, |b, _| {
            b.iter(|| fanout(&mut queues, &frame, None))
        });
        let key = Some(ConflationKey::new(1, 42));
        g.bench_with_input(BenchmarkId::new("keyed", subs), &subs, |b, _| {
            b.iter(|| fanout(&mut queues, &frame, key))
        });
    }
    g.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(30)
}

criterion_group! {
    name = benches;
    config = config();
    targets = bench_encode_once, bench_local_fanout
}
criterion_main!(benches);
