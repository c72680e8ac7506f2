//! Criterion benchmarks of the publish path inside one worker: encoding a published message
//! into its shared frame once (header and body in one `Bytes`), and the local fanout of that
//! frame to 1,000 and 10,000 subscribers' send queues (one `offer` of a reference-counted
//! clone each), followed by the writer's drain of every queue, as the worker does per wake;
//! and permessage-deflate's compress-once: one compression of a published frame (level 6,
//! 15-bit window, fresh context) then the fanout of the compressed frame, and the inflate
//! of a client message.

use std::{io::IoSlice, time::Duration};

use bytes::Bytes;
use corecast::{
    proto::deflate::{Deflater, Inflater},
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

/// A published JSON array of `n` quotes: the payload of a realistic market-data message.
fn quotes(n: usize) -> String {
    let items: Vec<String> = (0..n)
        .map(|i| {
            format!(
                r#"{{"px":{}.5,"qty":0.{},"side":"buy"}}"#,
                64_000 + i % 37,
                i % 9
            )
        })
        .collect();
    format!("[{}]", items.join(","))
}

fn bench_deflate_once(c: &mut Criterion) {
    let topic = TopicName::new("prices.BTC-USD").unwrap();
    let mut g = c.benchmark_group("deflate_once");
    let mut z = Deflater::new(6, 15);
    for (name, n) in [("1k", 25usize), ("16k", 400)] {
        let data = quotes(n);
        let frame = frames::msg(Encoding::Json, topic, 1, 2, Payload::Json(&data));
        g.throughput(Throughput::Bytes(frame.len() as u64));
        g.bench_function(BenchmarkId::new("compress", name), |b| {
            let mut out = Vec::with_capacity(frame.len());
            b.iter(|| {
                out.clear();
                z.compress(black_box(&frame[4..]), &mut out).unwrap();
                black_box(out.len())
            })
        });
        let mut out = Vec::new();
        z.compress(&frame[4..], &mut out).unwrap();
        eprintln!(
            "deflate_once/{name}: {} payload bytes compress to {} ({:.1}%)",
            frame.len() - 4,
            out.len(),
            100.0 * out.len() as f64 / (frame.len() - 4) as f64
        );
        let mut inf = Inflater::new(15);
        g.bench_function(BenchmarkId::new("inflate", name), |b| {
            let mut plain = Vec::with_capacity(frame.len());
            b.iter(|| {
                plain.clear();
                inf.inflate(black_box(&out), 1 << 20, true, &mut plain)
                    .unwrap();
                black_box(plain.len())
            })
        });
    }
    // Compress once, then share the compressed frame with 1,000 subscribers.
    let data = quotes(25);
    let frame = frames::msg(Encoding::Json, topic, 1, 2, Payload::Json(&data));
    let mut queues: Vec<SendQueue> = (0..1_000).map(|_| SendQueue::new()).collect();
    g.throughput(Throughput::Elements(1_000));
    g.bench_function("compress_once_fanout_1000", |b| {
        let mut out = Vec::with_capacity(frame.len());
        b.iter(|| {
            out.clear();
            z.compress(&frame[4..], &mut out).unwrap();
            let zipped = Bytes::copy_from_slice(&out);
            fanout(&mut queues, &zipped, None)
        })
    });
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
    targets = bench_encode_once, bench_local_fanout, bench_deflate_once
}
criterion_main!(benches);
