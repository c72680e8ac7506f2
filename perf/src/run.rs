//! The runtime every scenario shares: client threads, the gates they pass together (within
//! this process and, through the parent, with sibling processes), how connections are shared
//! out, and the assembly of a report.

use std::{
    io::{BufRead, Write},
    sync::{
        atomic::{AtomicU64, AtomicUsize, Ordering},
        Arc,
    },
    thread::JoinHandle,
};

use anyhow::{bail, Context as _};
use hdrhistogram::Histogram;
use serde::Serialize;

use crate::{
    clock::{self, now_ns},
    proc::Sampled,
    report::{self, ClientStats, LatencySummary, Machine, Report, Windows},
    Common,
};

const CLOSED: u64 = u64::MAX;

/// State the client threads and the main thread share.
pub struct Shared {
    ready: Vec<AtomicUsize>,
    go: Vec<AtomicU64>,
    done: AtomicUsize,
}

/// One client thread's view of the run.
#[derive(Clone)]
pub struct Worker {
    /// This thread's number.
    pub index: usize,
    /// Client threads in this process.
    pub threads: usize,
    shared: Arc<Shared>,
}

impl Worker {
    /// Says this thread has reached gate `g`.
    pub fn arrive(&self, g: usize) {
        if let Some(r) = self.shared.ready.get(g) {
            r.fetch_add(1, Ordering::Release);
        }
    }

    /// The monotonic time at which gate `g` opens, once the main thread has opened it.
    #[inline]
    pub fn go(&self, g: usize) -> Option<u64> {
        let v = self.shared.go.get(g)?.load(Ordering::Acquire);
        (v != CLOSED).then_some(v)
    }

    /// This thread's share of `count` local items (round-robin): their local numbers.
    pub fn mine(&self, count: usize) -> impl Iterator<Item = usize> {
        (self.index..count).step_by(self.threads.max(1))
    }
}

struct DoneGuard(Arc<Shared>);

impl Drop for DoneGuard {
    fn drop(&mut self) {
        self.0.done.fetch_add(1, Ordering::Release);
    }
}

/// How this process meets its siblings at a gate.
pub enum ProcSync {
    /// A lone process: gates open at once.
    Single,
    /// A child of `--processes`: say `ready` on stdout, wait for `go <epoch ns>` on stdin.
    Child,
}

impl ProcSync {
    /// Waits at a gate; returns the monotonic time it opens.
    pub fn barrier(&mut self) -> anyhow::Result<u64> {
        match self {
            ProcSync::Single => Ok(now_ns()),
            ProcSync::Child => {
                let mut out = std::io::stdout().lock();
                writeln!(out, "ready")?;
                out.flush()?;
                let mut line = String::new();
                if std::io::stdin().lock().read_line(&mut line)? == 0 {
                    bail!("parent went away");
                }
                let epoch: u64 = line
                    .trim()
                    .strip_prefix("go ")
                    .and_then(|v| v.parse().ok())
                    .with_context(|| format!("bad gate line from parent: {line:?}"))?;
                Ok(clock::from_epoch_ns(epoch).max(now_ns()))
            }
        }
    }
}

/// The client threads of one process.
pub struct Crew<T> {
    shared: Arc<Shared>,
    handles: Vec<JoinHandle<T>>,
    sync: ProcSync,
}

impl<T: Send + 'static> Crew<T> {
    /// Starts `threads` threads running `f`, with `gates` gates to pass.
    pub fn spawn<F>(threads: usize, gates: usize, child: bool, f: F) -> anyhow::Result<Self>
    where
        F: Fn(Worker) -> T + Send + Sync + 'static,
    {
        let shared = Arc::new(Shared {
            ready: (0..gates).map(|_| AtomicUsize::new(0)).collect(),
            go: (0..gates).map(|_| AtomicU64::new(CLOSED)).collect(),
            done: AtomicUsize::new(0),
        });
        let f = Arc::new(f);
        let mut handles = Vec::with_capacity(threads);
        for index in 0..threads {
            let w = Worker {
                index,
                threads,
                shared: shared.clone(),
            };
            let f = f.clone();
            handles.push(
                std::thread::Builder::new()
                    .name(format!("client-{index}"))
                    .spawn(move || {
                        let _g = DoneGuard(w.shared.clone());
                        f(w)
                    })
                    .context("spawning a client thread")?,
            );
        }
        Ok(Crew {
            shared,
            handles,
            sync: if child {
                ProcSync::Child
            } else {
                ProcSync::Single
            },
        })
    }

    /// Waits until every thread has reached gate `g` (or ended), meets the sibling processes,
    /// and opens the gate; returns when it opens (monotonic ns).
    pub fn gate(&mut self, g: usize) -> anyhow::Result<u64> {
        let n = self.handles.len();
        loop {
            let r = self.shared.ready[g].load(Ordering::Acquire)
                + self.shared.done.load(Ordering::Acquire);
            if r >= n {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        let t = self.sync.barrier()?;
        clock::sleep_until(t);
        self.shared.go[g].store(t, Ordering::Release);
        Ok(t)
    }

    /// Opens every gate from `g` on without waiting (after a failure, so threads can finish).
    pub fn open_rest(&self, g: usize) {
        for x in &self.shared.go[g.min(self.shared.go.len())..] {
            let _ = x.compare_exchange(CLOSED, now_ns(), Ordering::AcqRel, Ordering::Acquire);
        }
    }

    /// Waits for every thread's result.
    pub fn join(self) -> anyhow::Result<Vec<T>> {
        self.handles
            .into_iter()
            .map(|h| {
                h.join()
                    .map_err(|_| anyhow::anyhow!("a client thread panicked"))
            })
            .collect()
    }
}

/// `(offset, count)`: part `i` of `n` of `total` items, as even as can be.
pub fn share(total: usize, n: usize, i: usize) -> (usize, usize) {
    let n = n.max(1);
    let (base, rem) = (total / n, total % n);
    (i * base + i.min(rem), base + usize::from(i < rem))
}

impl Common {
    /// This process's part of `total` items: `(offset, count)`.
    pub fn my_share(&self, total: usize) -> (usize, usize) {
        share(total, self.processes, self.child.unwrap_or(0))
    }

    /// This process's part of a total rate.
    pub fn my_rate(&self, total: f64) -> f64 {
        total / self.processes.max(1) as f64
    }

    /// Client threads in this process.
    pub fn thread_count(&self) -> usize {
        self.threads.unwrap_or_else(|| {
            let cores = std::thread::available_parallelism().map_or(1, usize::from);
            (cores / self.processes.max(1)).max(1)
        })
    }

    /// Whether this process is a child of `--processes`.
    pub fn is_child(&self) -> bool {
        self.child.is_some()
    }
}

/// The parameters as JSON, without the internal ones.
pub fn params<A: Serialize>(args: &A) -> serde_json::Value {
    let mut v = serde_json::to_value(args).unwrap_or(serde_json::Value::Null);
    if let Some(m) = v.as_object_mut() {
        m.remove("child");
    }
    v
}

/// Everything a scenario measured, turned into a report.
pub struct Parts<R> {
    /// Scenario name.
    pub scenario: &'static str,
    /// Parameters.
    pub params: serde_json::Value,
    /// Scenario counters.
    pub results: R,
    /// The latency distribution, if the scenario has one.
    pub hist: Option<Histogram<u64>>,
    /// Per-window counts and latencies.
    pub windows: Windows,
    /// Timeline length (points).
    pub points: usize,
    /// What the sampler saw.
    pub sampled: Sampled,
    /// Client threads.
    pub threads: usize,
    /// Length of the measured window (s).
    pub duration_s: f64,
}

/// Builds the report; a child keeps its histograms serialised for the parent to merge.
pub fn assemble<R>(p: Parts<R>, child: bool) -> Report<R> {
    let latency_hdr = p
        .hist
        .as_ref()
        .filter(|h| !h.is_empty())
        .and_then(|h| report::hist_to_b64(h).ok());
    Report {
        scenario: p.scenario.to_string(),
        params: p.params,
        machine: Machine::this(),
        duration_s: p.duration_s,
        results: p.results,
        latency_us: p.hist.as_ref().and_then(LatencySummary::of),
        timeline: p.windows.timeline(p.points, &p.sampled.rss, child),
        server: p.sampled.server,
        client: Some(ClientStats {
            processes: 1,
            threads: p.threads,
            cpu_s: p.sampled.self_cpu_s,
            cores_busy: p.sampled.self_cpu_s / p.sampled.window_s.max(1e-9),
        }),
        latency_hdr,
        server_counters: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_cover_everything_once() {
        for total in [0, 1, 7, 100, 20001] {
            for n in 1..6 {
                let mut next = 0;
                for i in 0..n {
                    let (off, c) = share(total, n, i);
                    assert_eq!(off, next);
                    next += c;
                }
                assert_eq!(next, total);
            }
        }
    }
}
