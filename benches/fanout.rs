//! Criterion benchmarks of cross-worker delivery (`corecast::fanout`):
//! - `fanout_throughput`: items/s from one producer thread into one consumer monoio runtime
//!   that drains in batches of up to 256 (the publish path's step 4 with one interested
//!   worker). Items: a `Bytes` clone of one encoded frame, as the server will send, and a
//!   bare `u64`. Modes: `send` (doorbell checked per item) and `push_flush64` (`push`, one
//!   `flush` per 64 items, as a worker flushes once per wake).
//! - `fanout_wake`: one item to a parked consumer, until the consumer has it (the doorbell's
//!   slow path: remote wake through monoio's eventfd, one round trip per iteration).
//!
//! Each runs under both drivers; io_uring is skipped where the kernel refuses it. Each bench
//! measures for about 2 s.

use std::{
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    thread,
    time::{Duration, Instant},
};

use bytes::Bytes;
use corecast::fanout::{Mesh, MeshStats, Outboxes, Undelivered};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

/// Inbox capacity (items), as a worker would configure it.
const CAPACITY: usize = 1024;
/// Most items one `recv_batch` takes.
const BATCH: usize = 256;

#[derive(Clone, Copy)]
enum Drv {
    Legacy,
    Uring,
}

impl Drv {
    fn name(self) -> &'static str {
        match self {
            Drv::Legacy => "epoll",
            Drv::Uring => "io_uring",
        }
    }
}

fn drivers() -> Vec<Drv> {
    let mut v = vec![Drv::Legacy];
    if thread::spawn(monoio::utils::detect_uring)
        .join()
        .unwrap_or(false)
    {
        v.push(Drv::Uring);
    } else {
        eprintln!("io_uring unavailable: benchmarking epoll only");
    }
    v
}

/// What the consumer does with an item before dropping it.
trait Item: Clone + Send + 'static {
    /// Read the item (as fanout would read a frame's length).
    fn touch(&self) -> usize;
}

impl Item for Bytes {
    fn touch(&self) -> usize {
        self.len()
    }
}

impl Item for u64 {
    fn touch(&self) -> usize {
        *self as usize
    }
}

/// A consumer runtime on its own thread, draining worker 0's inbox until the mesh closes;
/// `received` counts items taken.
struct Consumer<T> {
    out: Option<Outboxes<T>>,
    stats: MeshStats,
    received: Arc<AtomicU64>,
    thread: Option<thread::JoinHandle<()>>,
}

impl<T: Item> Consumer<T> {
    fn start(drv: Drv) -> Self {
        let Mesh {
            mut inboxes,
            outboxes,
        } = Mesh::<T>::new(1, CAPACITY);
        let mut inbox = inboxes.pop().unwrap();
        let received = Arc::new(AtomicU64::new(0));
        let r = received.clone();
        let thread = thread::spawn(move || {
            let run = async move {
                let mut buf = Vec::with_capacity(BATCH);
                let mut bytes = 0usize;
                while let Some(n) = inbox.recv_batch(&mut buf, BATCH).await {
                    // Touch each item as fanout would (read its length), then drop it.
                    bytes = buf.drain(..).fold(bytes, |a, b| a.wrapping_add(b.touch()));
                    r.fetch_add(n as u64, Ordering::Release);
                }
                std::hint::black_box(bytes);
            };
            match drv {
                Drv::Legacy => monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
                    .build()
                    .unwrap()
                    .block_on(run),
                Drv::Uring => monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
                    .build()
                    .unwrap()
                    .block_on(run),
            }
        });
        Self {
            stats: outboxes.stats(),
            out: Some(outboxes),
            received,
            thread: Some(thread),
        }
    }

    fn out(&self) -> &Outboxes<T> {
        self.out.as_ref().unwrap()
    }

    /// Wait until the consumer has taken `n` items in total.
    fn wait_received(&self, n: u64) {
        let start = Instant::now();
        while self.received.load(Ordering::Acquire) < n {
            assert!(start.elapsed() < Duration::from_secs(60), "consumer stuck");
            std::hint::spin_loop();
        }
    }

    fn finish(mut self, label: &str) {
        let p = self.out().counters();
        let st = self.stats.inbox(0);
        drop(self.out.take());
        self.thread.take().unwrap().join().unwrap();
        if p.sent == 0 {
            return; // filtered out
        }
        eprintln!(
            "{label}: {} items, {} rings ({:.4}/item), {} full, mean batch {:.1}",
            p.sent,
            p.rings,
            p.rings as f64 / p.sent.max(1) as f64,
            p.full,
            st.received as f64 / st.batches.max(1) as f64,
        );
    }
}

/// How the producer sends.
#[derive(Clone, Copy)]
enum Mode {
    /// `send`: the doorbell is checked after every item.
    Send,
    /// `push`, with a `flush` every `n` items (and before spinning on `Full`).
    PushFlush(u64),
}

/// Send `iters` clones of `frame` to worker 0, spinning on `Full`.
fn produce<T: Item>(out: &Outboxes<T>, frame: &T, iters: u64, mode: Mode) {
    for i in 0..iters {
        let mut item = frame.clone();
        loop {
            let r = match mode {
                Mode::Send => out.send(0, item),
                Mode::PushFlush(_) => out.push(0, item),
            };
            match r {
                Ok(()) => break,
                Err(Undelivered::Full(t)) => {
                    item = t;
                    out.flush();
                    std::hint::spin_loop();
                }
                Err(Undelivered::Closed(_)) => panic!("consumer gone"),
            }
        }
        if let Mode::PushFlush(n) = mode {
            if i % n == n - 1 {
                out.flush();
            }
        }
    }
    out.flush();
}

fn throughput_of<T: Item>(c: &mut Criterion, item_name: &str, item: T) {
    let mut group = c.benchmark_group("fanout_throughput");
    group.throughput(Throughput::Elements(1));
    for drv in drivers() {
        for (mode_name, mode) in [("send", Mode::Send), ("push_flush64", Mode::PushFlush(64))] {
            let consumer = Consumer::<T>::start(drv);
            let mut total = 0u64;
            let id = BenchmarkId::new(format!("{item_name}/{mode_name}"), drv.name());
            group.bench_function(id, |b| {
                b.iter_custom(|iters| {
                    let start = Instant::now();
                    produce(consumer.out(), &item, iters, mode);
                    total += iters;
                    consumer.wait_received(total);
                    start.elapsed()
                })
            });
            consumer.finish(&format!(
                "fanout_throughput/{item_name}/{mode_name}/{}",
                drv.name()
            ));
        }
    }
    group.finish();
}

fn bench_throughput(c: &mut Criterion) {
    // The server's item: a clone of one shared encoded frame (the refcount is touched by
    // both threads, as it will be).
    throughput_of(c, "bytes64", Bytes::from(vec![0x81u8; 64]));
    // The bare channel and doorbell.
    throughput_of(c, "u64", 7u64);
}

fn bench_wake(c: &mut Criterion) {
    let frame = Bytes::from_static(b"\x81\x05hello");
    let mut group = c.benchmark_group("fanout_wake");
    for drv in drivers() {
        let consumer = Consumer::<Bytes>::start(drv);
        let mut total = 0u64;
        group.bench_function(BenchmarkId::new("parked_1item", drv.name()), |b| {
            b.iter_custom(|iters| {
                let mut spent = Duration::ZERO;
                for _ in 0..iters {
                    // Untimed: wait for the consumer to park.
                    let start = Instant::now();
                    while !consumer.stats.is_parked(0) {
                        assert!(start.elapsed() < Duration::from_secs(60));
                        std::hint::spin_loop();
                    }
                    let t0 = Instant::now();
                    consumer.out().send(0, frame.clone()).unwrap();
                    total += 1;
                    consumer.wait_received(total);
                    spent += t0.elapsed();
                }
                spent
            })
        });
        consumer.finish(&format!("fanout_wake/{}", drv.name()));
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = bench_throughput, bench_wake
}
criterion_main!(benches);
