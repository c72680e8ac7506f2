//! Cross-worker delivery (`corecast::fanout`) across real monoio runtimes on threads, under
//! both drivers: exactly-once in-order delivery from workers and from a plain thread, wakes
//! only for parked receivers, `Full` without loss, and shutdown by dropping the senders.
//!
//! Nothing here asserts a duration: waits use generous timeouts only so that a bug fails
//! the test instead of hanging it.

use std::{
    future::Future,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        mpsc, Arc,
    },
    thread,
    time::{Duration, Instant},
};

use corecast::fanout::{Backlog, Delivery, Mesh, MeshStats, Outboxes, Undelivered};

/// Generous: a failure, not a slow machine, is what trips it.
const TIMEOUT: Duration = Duration::from_secs(20);

#[derive(Debug, Clone, Copy)]
enum Drv {
    Legacy,
    Uring,
}

/// Run `f` to completion on a fresh monoio runtime (timer enabled) of the given driver, on
/// this thread.
fn block_on<F: Future>(drv: Drv, f: F) -> F::Output {
    match drv {
        Drv::Legacy => monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
            .enable_timer()
            .build()
            .expect("legacy runtime")
            .block_on(f),
        Drv::Uring => monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
            .enable_timer()
            .build()
            .expect("io_uring runtime")
            .block_on(f),
    }
}

/// Whether io_uring works here (probed on a throwaway thread, as the server does).
fn uring_ok() -> bool {
    thread::spawn(monoio::utils::detect_uring)
        .join()
        .unwrap_or(false)
}

/// One test per driver: `NAME::legacy` and `NAME::uring` (skipped, loudly, without io_uring).
macro_rules! both_drivers {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[test]
            fn legacy() {
                super::$name(super::Drv::Legacy);
            }

            #[test]
            fn uring() {
                if !super::uring_ok() {
                    eprintln!("io_uring unavailable: skipping {}", stringify!($name));
                    return;
                }
                super::$name(super::Drv::Uring);
            }
        }
    )*};
}

both_drivers!(
    every_item_once_in_order,
    busy_receiver_burst_costs_no_wakes,
    draining_receiver_burst_few_wakes,
    parked_receivers_wake_on_one_item,
    full_hands_back_and_loses_nothing,
    dropping_senders_ends_recv,
    shared_inbox_ready_and_tick_drain,
);

/// Push from a worker task (the ring deferred to the next flush): on `Full`, flush (the
/// full inbox's worker may be parked, waiting for exactly that ring), sleep a millisecond
/// (the server's "retry on the next tick") and retry. Not a self-wake loop: monoio 0.2.4
/// re-runs a task that wakes itself before any other task (`push_front`), so such a loop
/// would starve this worker's own receiver, and on io_uring the cross-thread wakes too (see
/// docs/fanout.md). Returns how many times the inbox was full.
async fn push_retrying<T>(out: &Outboxes<T>, worker: usize, mut item: T) -> u64 {
    let mut fulls = 0;
    loop {
        match out.push(worker, item) {
            Ok(()) => return fulls,
            Err(Undelivered::Full(t)) => {
                fulls += 1;
                item = t;
                out.flush();
                monoio::time::sleep(Duration::from_millis(1)).await;
            }
            Err(Undelivered::Closed(_)) => panic!("inbox {worker} closed early"),
        }
    }
}

/// Send from a plain thread: on `Full`, yield the thread and retry.
fn send_blocking<T>(out: &Outboxes<T>, worker: usize, mut item: T) -> u64 {
    let mut fulls = 0;
    loop {
        match out.send(worker, item) {
            Ok(()) => return fulls,
            Err(Undelivered::Full(t)) => {
                fulls += 1;
                item = t;
                thread::yield_now();
            }
            Err(Undelivered::Closed(_)) => panic!("inbox {worker} closed early"),
        }
    }
}

/// Spin (yielding the thread) until `cond` holds; panic after [`TIMEOUT`].
fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < TIMEOUT, "timed out waiting for {what}");
        thread::yield_now();
    }
}

/// Receive everything until the inbox closes, in batches of up to `max`.
async fn drain_all<T>(inbox: &mut corecast::fanout::Inbox<T>, max: usize) -> Vec<T> {
    let mut all = Vec::new();
    while let Some(n) = inbox.recv_batch(&mut all, max).await {
        assert!(n >= 1 && n <= max);
    }
    all
}

/// Assert that `got` holds, for each producer `0..producers`, exactly the sequence numbers
/// `0..per_producer`, in order.
fn assert_once_in_order(got: &[(usize, u64)], producers: usize, per_producer: u64, who: &str) {
    let mut next = vec![0u64; producers];
    for &(p, seq) in got {
        assert_eq!(
            seq, next[p],
            "{who}: producer {p} out of order or duplicated"
        );
        next[p] += 1;
    }
    for (p, n) in next.iter().enumerate() {
        assert_eq!(*n, per_producer, "{who}: producer {p} lost items");
    }
}

/// N = 2..4 runtimes on threads. Every worker runs a receiver task and a producer task that
/// pushes to every worker (itself included) and flushes once per round; a plain thread
/// produces too, with `send` through a `Backlog`. Small inboxes, so that `Full` and retries happen. Every item arrives exactly
/// once and each producer's items arrive in order at each receiver.
fn every_item_once_in_order(drv: Drv) {
    const PER_DEST: u64 = 3_000;
    for n in 2..=4usize {
        let Mesh { inboxes, outboxes } = Mesh::<(usize, u64)>::new(n, 64);
        let stats = outboxes.stats();
        let (done_tx, done_rx) = mpsc::channel();
        for mut inbox in inboxes {
            let out = outboxes.clone();
            let done = done_tx.clone();
            thread::spawn(move || {
                let me = inbox.index();
                let got = block_on(drv, async move {
                    let producer = monoio::spawn(async move {
                        let mut fulls = 0;
                        for seq in 0..PER_DEST {
                            for dst in 0..out.workers() {
                                fulls += push_retrying(&out, dst, (me, seq)).await;
                            }
                            // The end of this producer's "wake": one ring per parked worker.
                            out.flush();
                        }
                        let sent = out.counters().sent;
                        drop(out);
                        (sent, fulls)
                    });
                    let got = drain_all(&mut inbox, 32).await;
                    (got, producer.await)
                });
                let _ = done.send((me, got));
            });
        }
        // The plain-thread producer: index n.
        let out = outboxes.clone();
        let plain = thread::spawn(move || {
            let mut backlog = Backlog::new(out.workers(), 16);
            let mut deferred = 0u64;
            for seq in 0..PER_DEST {
                for dst in 0..out.workers() {
                    let mut item = (n, seq);
                    loop {
                        match backlog.send(&out, dst, item) {
                            Ok(Delivery::Sent) => break,
                            Ok(Delivery::Deferred) => {
                                deferred += 1;
                                break;
                            }
                            Err(Undelivered::Full(t)) => {
                                item = t;
                                backlog.flush(&out);
                                thread::yield_now();
                            }
                            Err(Undelivered::Closed(_)) => panic!("closed early"),
                        }
                    }
                }
            }
            while !backlog.is_empty() {
                backlog.flush(&out);
                thread::yield_now();
            }
            (out.counters().sent, deferred)
        });
        drop(outboxes);
        drop(done_tx);
        let mut total_received = 0;
        for _ in 0..n {
            let Ok((me, (got, (sent, _fulls)))) = done_rx.recv_timeout(TIMEOUT) else {
                let state: Vec<_> = (0..n)
                    .map(|w| (stats.inbox(w), stats.is_parked(w)))
                    .collect();
                panic!(
                    "n={n}: a worker did not finish: {state:?} {:?}",
                    stats.producers()
                );
            };
            assert_eq!(sent, PER_DEST * n as u64, "worker {me} sent everything");
            assert_once_in_order(&got, n + 1, PER_DEST, &format!("n={n} worker {me}"));
            total_received += got.len() as u64;
            let st = stats.inbox(me);
            assert_eq!(st.received, got.len() as u64);
        }
        let (plain_sent, _deferred) = plain.join().expect("plain producer");
        assert_eq!(plain_sent, PER_DEST * n as u64);
        let p = stats.producers();
        assert_eq!(p.sent, total_received, "n={n}");
        assert_eq!(p.sent, PER_DEST * (n * (n + 1)) as u64);
        assert_eq!(p.closed, 0);
    }
}

/// A receiver that is busy (its thread is inside a long handler, not parked) while a burst
/// of 10,000 items arrives: the burst costs senders no wake at all. Deterministic: the only
/// wake is for the first item, sent while the receiver is known to be parked.
fn busy_receiver_burst_costs_no_wakes(drv: Drv) {
    const BURST: u64 = 10_000;
    let Mesh {
        mut inboxes,
        outboxes,
    } = Mesh::<u64>::new(1, 16_384);
    let mut inbox = inboxes.pop().unwrap();
    let stats = outboxes.stats();
    let busy = Arc::new(AtomicBool::new(false));
    let burst_done = Arc::new(AtomicBool::new(false));
    let (b, d) = (busy.clone(), burst_done.clone());
    let rx = thread::spawn(move || {
        block_on(drv, async move {
            let mut got = Vec::new();
            assert_eq!(inbox.recv_batch(&mut got, 1).await, Some(1));
            // The handler is busy: the thread does not return to the runtime.
            b.store(true, Ordering::SeqCst);
            wait_until("the burst", || d.load(Ordering::SeqCst));
            let rest = drain_all(&mut inbox, 256).await;
            got.extend(rest);
            got
        })
    });
    wait_until("the receiver to park", || stats.is_parked(0));
    outboxes.send(0, 0).unwrap();
    wait_until("the receiver to be busy", || busy.load(Ordering::SeqCst));
    for i in 1..=BURST {
        outboxes.send(0, i).expect("capacity covers the burst");
    }
    let c = outboxes.counters();
    burst_done.store(true, Ordering::SeqCst);
    assert_eq!(c.sent, BURST + 1);
    assert_eq!(
        c.rings, 1,
        "only the first item, sent to a parked receiver, rang"
    );
    drop(outboxes);
    let got = rx.join().expect("receiver");
    assert_eq!(got, (0..=BURST).collect::<Vec<_>>());
    // The close may ring once more if the receiver parked before the drop.
    assert!(stats.inbox(0).rings <= 2, "{:?}", stats.inbox(0));
}

/// A receiver that keeps draining (with some work per batch) while one thread pushes a
/// burst of 10,000 items through a 256-item inbox, retrying on `Full`: it parks (and costs a
/// wake) only when it catches up with the producer, so wakes stay far below items / 10.
fn draining_receiver_burst_few_wakes(drv: Drv) {
    const BURST: u64 = 10_000;
    let Mesh {
        mut inboxes,
        outboxes,
    } = Mesh::<u64>::new(1, 256);
    let mut inbox = inboxes.pop().unwrap();
    let stats = outboxes.stats();
    let work = Arc::new(AtomicU64::new(0));
    let w = work.clone();
    let rx = thread::spawn(move || {
        block_on(drv, async move {
            let mut all = Vec::new();
            let mut batch = Vec::new();
            while let Some(_n) = inbox.recv_batch(&mut batch, 64).await {
                // Per-item work, so the receiver is the slower side.
                for _ in 0..batch.len() * 1024 {
                    w.fetch_add(1, Ordering::Relaxed);
                }
                all.append(&mut batch);
            }
            all
        })
    });
    wait_until("the receiver to park", || stats.is_parked(0));
    let mut fulls = 0;
    for i in 0..BURST {
        fulls += send_blocking(&outboxes, 0, i);
    }
    let c = outboxes.counters();
    drop(outboxes);
    let got = rx.join().expect("receiver");
    assert_eq!(got, (0..BURST).collect::<Vec<_>>());
    assert_eq!(c.sent, BURST);
    assert_eq!(c.full, fulls);
    let st = stats.inbox(0);
    eprintln!(
        "{drv:?}: {BURST} items, {} rings, {} waits, {} batches, {fulls} full",
        c.rings, st.waits, st.batches
    );
    // How often the receiver catches up and parks depends on scheduling: on a quiet machine
    // a few hundred times, on a loaded one (CI beside a build) over a thousand. One wake per
    // item is what this guards against, so the bound leaves room for a busy machine.
    assert!(
        c.rings < BURST / 4,
        "wakes {} should be far fewer than items {BURST}",
        c.rings
    );
}

/// Parked receivers are woken by a single item, from a plain thread and from another
/// runtime: the main thread sends one item to worker 1, which forwards it to worker 0, which
/// reports it. Before each round both workers are known to be parked, so each round costs
/// exactly one wake per inbox.
fn parked_receivers_wake_on_one_item(drv: Drv) {
    const ROUNDS: u64 = 200;
    const STOP: u64 = u64::MAX;
    let Mesh { inboxes, outboxes } = Mesh::<u64>::new(2, 16);
    let stats = outboxes.stats();
    let (ack_tx, ack_rx) = mpsc::channel();
    let mut threads = Vec::new();
    for mut inbox in inboxes {
        // Only worker 1 forwards, so only it holds a sender.
        let out = (inbox.index() == 1).then(|| outboxes.clone());
        let ack = ack_tx.clone();
        threads.push(thread::spawn(move || {
            block_on(drv, async move {
                let mut buf = Vec::new();
                while let Some(n) = inbox.recv_batch(&mut buf, 8).await {
                    assert_eq!(n, 1, "one item per round");
                    let v = buf.pop().unwrap();
                    match &out {
                        Some(out) => out.send(0, v).expect("worker 0 has room"),
                        None => ack.send(v).unwrap(),
                    }
                    if v == STOP {
                        break;
                    }
                }
            })
        }));
    }
    drop(ack_tx);
    for round in 0..ROUNDS {
        wait_until("both workers to park", || {
            stats.is_parked(0) && stats.is_parked(1)
        });
        outboxes.send(1, round).unwrap();
        let got = ack_rx.recv_timeout(TIMEOUT).expect("the item arrives");
        assert_eq!(got, round);
    }
    for w in 0..2 {
        let st = stats.inbox(w);
        assert_eq!(st.rings, ROUNDS, "worker {w}: one wake per round: {st:?}");
        assert_eq!(st.received, ROUNDS);
    }
    assert_eq!(
        outboxes.counters().rings,
        ROUNDS,
        "main thread rang worker 1 each round"
    );
    outboxes.send(1, STOP).unwrap();
    assert_eq!(ack_rx.recv_timeout(TIMEOUT), Ok(STOP));
    for t in threads {
        t.join().expect("worker");
    }
}

/// A full inbox refuses with `Full(item)`, handing the very item back; nothing queued is
/// lost, and once the receiver drains, retries go through in order.
fn full_hands_back_and_loses_nothing(drv: Drv) {
    const CAP: usize = 8;
    const TOTAL: u64 = 2_000;
    let Mesh {
        mut inboxes,
        outboxes,
    } = Mesh::<u64>::new(1, CAP);
    let mut inbox = inboxes.pop().unwrap();
    let go = Arc::new(AtomicBool::new(false));
    let g = go.clone();
    let rx = thread::spawn(move || {
        // The receiver does not start until the producer has filled the inbox.
        wait_until("go", || g.load(Ordering::SeqCst));
        block_on(drv, async move { drain_all(&mut inbox, 3).await })
    });
    for i in 0..CAP as u64 {
        outboxes.send(0, i).expect("room");
    }
    assert_eq!(outboxes.queued(0), CAP);
    match outboxes.send(0, CAP as u64) {
        Err(Undelivered::Full(v)) => assert_eq!(v, CAP as u64, "the item comes back"),
        other => panic!("expected Full, got {other:?}"),
    }
    assert_eq!(outboxes.counters().full, 1);
    assert_eq!(outboxes.queued(0), CAP, "the refused item was not queued");
    go.store(true, Ordering::SeqCst);
    let mut fulls = 1;
    for i in CAP as u64..TOTAL {
        fulls += send_blocking(&outboxes, 0, i);
    }
    let c = outboxes.counters();
    assert_eq!(c.full, fulls);
    assert_eq!(c.sent, TOTAL);
    drop(outboxes);
    let got = rx.join().expect("receiver");
    assert_eq!(got, (0..TOTAL).collect::<Vec<_>>());
}

/// Dropping every sender handle (on several threads) ends `recv_batch` on every worker,
/// parked or not, after what was queued has been delivered.
fn dropping_senders_ends_recv(drv: Drv) {
    let Mesh { inboxes, outboxes } = Mesh::<u64>::new(3, 32);
    let stats: MeshStats = outboxes.stats();
    let (tx, rx) = mpsc::channel();
    for mut inbox in inboxes {
        let tx = tx.clone();
        thread::spawn(move || {
            let me = inbox.index();
            let got = block_on(drv, async move { drain_all(&mut inbox, 4).await });
            let _ = tx.send((me, got));
        });
    }
    drop(tx);
    // Worker 2 gets items queued before the close; the others are parked when it comes.
    for v in 0..10 {
        outboxes.send(2, v).unwrap();
    }
    let other = outboxes.clone();
    let t = thread::spawn(move || drop(other));
    t.join().unwrap();
    wait_until("workers 0 and 1 to park", || {
        stats.is_parked(0) && stats.is_parked(1)
    });
    drop(outboxes);
    let mut ended = [false; 3];
    for _ in 0..3 {
        let (me, got) = rx.recv_timeout(TIMEOUT).expect("recv ends on close");
        let want: Vec<u64> = if me == 2 { (0..10).collect() } else { vec![] };
        assert_eq!(got, want, "worker {me}");
        ended[me] = true;
    }
    assert_eq!(ended, [true; 3]);
    for w in 0..2 {
        assert_eq!(
            stats.inbox(w).rings,
            1,
            "worker {w}: woken once, by the close"
        );
    }
}

/// The wiring the server will use: the inbox shared inside the worker (`Rc`), one task
/// waiting with `ready()` and draining, and a timer tick that also drains (as the worker's
/// end-of-wake drain would). Two producers; every item arrives once, in order per producer.
fn shared_inbox_ready_and_tick_drain(drv: Drv) {
    use std::{cell::RefCell, rc::Rc};
    const PER_PRODUCER: u64 = 20_000;
    let Mesh {
        mut inboxes,
        outboxes,
    } = Mesh::<(usize, u64)>::new(1, 128);
    let inbox = inboxes.pop().unwrap();
    let rx = thread::spawn(move || {
        block_on(drv, async move {
            let inbox = Rc::new(inbox);
            let got = Rc::new(RefCell::new(Vec::new()));
            let done = Rc::new(std::cell::Cell::new(false));
            let (i2, g2, d2) = (inbox.clone(), got.clone(), done.clone());
            let tick = monoio::spawn(async move {
                let mut by_tick = 0;
                while !d2.get() {
                    monoio::time::sleep(Duration::from_millis(1)).await;
                    by_tick += i2.try_recv_batch(&mut g2.borrow_mut(), 16).unwrap_or(0);
                }
                by_tick
            });
            loop {
                inbox.ready().await;
                if inbox.try_recv_batch(&mut got.borrow_mut(), 64).is_none() {
                    break;
                }
            }
            done.set(true);
            let by_tick = tick.await;
            let got = got.take();
            (got, by_tick, inbox.stats())
        })
    });
    let producers: Vec<_> = (0..2)
        .map(|p| {
            let out = outboxes.clone();
            thread::spawn(move || {
                for seq in 0..PER_PRODUCER {
                    send_blocking(&out, 0, (p, seq));
                }
            })
        })
        .collect();
    drop(outboxes);
    for p in producers {
        p.join().expect("producer");
    }
    let (got, by_tick, st) = rx.join().expect("receiver");
    assert_once_in_order(&got, 2, PER_PRODUCER, "shared inbox");
    assert_eq!(st.received, 2 * PER_PRODUCER);
    eprintln!(
        "{drv:?}: {} items, {by_tick} drained by the tick, {st:?}",
        got.len()
    );
}
