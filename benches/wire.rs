//! Criterion benchmarks of the pub/sub wire codec: decoding a small JSON publish, and encoding
//! a `msg` once (JSON and binary), as the server does per publish. Each bench is short (about
//! 2 s measured) so the set stays quick.

use std::time::Duration;

use corecast::pubsub::{
    wire::{self, Encoding, Payload},
    TopicName,
};
use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

/// A typical small publish: a price tick with a conflation key and an ack id.
const PUB_JSON: &str = r#"{"op":"pub","topic":"prices.BTC-USD","data":{"px":64000.5,"qty":0.25},"key":"BTC","id":"17"}"#;

/// The same publish in the binary encoding.
fn pub_binary() -> Vec<u8> {
    let op = wire::decode_json(PUB_JSON).unwrap();
    let mut out = Vec::new();
    wire::encode_op_binary(&op, &mut out);
    out
}

fn bench_decode(c: &mut Criterion) {
    let mut group = c.benchmark_group("decode_pub");
    group.throughput(Throughput::Bytes(PUB_JSON.len() as u64));
    group.bench_function("json", |b| {
        b.iter(|| black_box(wire::decode_json(black_box(PUB_JSON)).unwrap()))
    });
    // Reference point: parsing the same text into a generic `serde_json::Value`.
    group.bench_function("serde_json_value_baseline", |b| {
        b.iter(|| {
            black_box(serde_json::from_str::<serde_json::Value>(black_box(PUB_JSON)).unwrap())
        })
    });
    let bin = pub_binary();
    group.bench_function("binary_json_data", |b| {
        b.iter(|| black_box(wire::decode_binary(black_box(&bin)).unwrap()))
    });
    group.finish();
}

fn bench_encode_msg(c: &mut Criterion) {
    let topic = TopicName::new("prices.BTC-USD").unwrap();
    let json_data = r#"{"px":64000.5,"qty":0.25}"#;
    let bytes_1k: Vec<u8> = (0..1024).map(|i| i as u8).collect();
    let payloads = [
        ("json_small", Payload::Json(json_data)),
        ("bytes_1KiB", Payload::Bytes(&bytes_1k)),
    ];
    let mut group = c.benchmark_group("encode_msg");
    let mut out = Vec::with_capacity(4096);
    for (name, data) in payloads {
        for enc in [Encoding::Json, Encoding::Binary] {
            let label = match enc {
                Encoding::Json => "json",
                Encoding::Binary => "binary",
            };
            group.throughput(Throughput::Bytes(data.as_bytes().len() as u64));
            group.bench_function(BenchmarkId::new(label, name), |b| {
                b.iter(|| {
                    out.clear();
                    wire::encode_msg(
                        enc,
                        black_box(topic),
                        black_box(1_234_567),
                        black_box(1_700_000_000_123_456),
                        black_box(data),
                        &mut out,
                    );
                    black_box(&out);
                })
            });
        }
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(20);
    targets = bench_decode, bench_encode_msg
}
criterion_main!(benches);
