//! Criterion benchmarks of the sans-IO protocol core: frame decode, unmask, encode and the
//! upgrade request parse. Each bench is short (about 2 s measured) so the set stays quick.

use std::time::Duration;

use corecast::proto::{
    encode::encode_client_frame,
    encode_frame,
    handshake::{parse_request, HandshakeLimits},
    mask::{unmask, unmask_naive},
    Decoder, DecoderLimits, OpCode,
};
use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

/// Payload sizes: a small message, a medium one and a large one.
const SIZES: [(&str, usize); 3] = [("20B", 20), ("4KiB", 4 << 10), ("1MiB", 1 << 20)];

/// A key with every byte below 0x80: ASCII stays ASCII when masked, so a text frame can be
/// decoded (unmasked in place) over and over without copying it back each time.
const ASCII_KEY: [u8; 4] = [0x12, 0x34, 0x56, 0x78];

fn ascii_payload(len: usize) -> Vec<u8> {
    (0..len).map(|i| b'a' + (i % 26) as u8).collect()
}

fn bench_decode(c: &mut Criterion) {
    let mut group = c.benchmark_group("decode");
    for (name, len) in SIZES {
        group.throughput(Throughput::Bytes(len as u64));
        for (kind, opcode) in [("binary", OpCode::Binary), ("text", OpCode::Text)] {
            let mut wire = Vec::new();
            encode_client_frame(opcode, true, &ascii_payload(len), ASCII_KEY, &mut wire);
            let mut decoder = Decoder::new(DecoderLimits::default());
            group.bench_function(BenchmarkId::new(kind, name), |b| {
                b.iter(|| {
                    // Each decode unmasks in place, flipping the payload between its masked
                    // and plain forms; both are valid ASCII.
                    let (frame, used) = decoder.decode(black_box(&mut wire)).unwrap().unwrap();
                    black_box((&frame, used));
                })
            });
        }
    }
    group.finish();
}

fn bench_unmask(c: &mut Criterion) {
    let mut group = c.benchmark_group("unmask");
    for (name, len) in SIZES {
        group.throughput(Throughput::Bytes(len as u64));
        let mut buf = ascii_payload(len);
        group.bench_function(BenchmarkId::new("naive", name), |b| {
            b.iter(|| unmask_naive(black_box(&mut buf), black_box(ASCII_KEY), 1))
        });
        group.bench_function(BenchmarkId::new("fast", name), |b| {
            b.iter(|| unmask(black_box(&mut buf), black_box(ASCII_KEY), 1))
        });
    }
    group.finish();
}

fn bench_encode(c: &mut Criterion) {
    let mut group = c.benchmark_group("encode");
    for (name, len) in SIZES {
        group.throughput(Throughput::Bytes(len as u64));
        let payload = ascii_payload(len);
        let mut out = Vec::with_capacity(len + 14);
        group.bench_function(BenchmarkId::new("server", name), |b| {
            b.iter(|| {
                out.clear();
                encode_frame(OpCode::Binary, true, black_box(&payload), &mut out);
                black_box(out.len());
            })
        });
    }
    group.finish();
}

/// A typical upgrade request as a browser sends it.
const BROWSER_UPGRADE: &[u8] = b"GET /chat?room=lobby HTTP/1.1\r\n\
Host: example.com:8080\r\n\
Connection: Upgrade\r\n\
Pragma: no-cache\r\n\
Cache-Control: no-cache\r\n\
User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36\r\n\
Upgrade: websocket\r\n\
Origin: https://example.com\r\n\
Sec-WebSocket-Version: 13\r\n\
Accept-Encoding: gzip, deflate, br, zstd\r\n\
Accept-Language: en-US,en;q=0.9\r\n\
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\
\r\n";

fn bench_handshake(c: &mut Criterion) {
    let mut group = c.benchmark_group("handshake");
    group.throughput(Throughput::Bytes(BROWSER_UPGRADE.len() as u64));
    let limits = HandshakeLimits::default();
    group.bench_function("parse_browser_upgrade", |b| {
        b.iter(|| {
            let mut headers = [httparse::EMPTY_HEADER; 32];
            let parsed = parse_request(black_box(BROWSER_UPGRADE), &mut headers, &limits);
            black_box(
                parsed
                    .map(|r| r.map(|(req, used)| (req.key.len(), used)))
                    .ok(),
            );
        })
    });
    group.finish();
}

fn quick() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(20)
}

criterion_group! {
    name = benches;
    config = quick();
    targets = bench_decode, bench_unmask, bench_encode, bench_handshake
}
criterion_main!(benches);
