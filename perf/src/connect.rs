//! `connect`: open N connections (at `--rate` handshakes/s, or as fast as `--concurrency`
//! attempts per thread allow), hold them for `--duration` seconds, and report handshake latency
//! percentiles, failures by kind, and the server's RSS per held connection.
//!
//! Handshake latency runs from the intended start (with `--rate`: the schedule, so a stalled
//! server shows as latency and not as a lower rate) or from the start of the attempt (max rate)
//! to the 101 response.

use clap::Args;
use serde::{Deserialize, Serialize};

use crate::{
    clock::{self, now_ns, Rng, MS, SEC},
    net::{self, count, Conn, Dialed, Dialer, Failures, Poller, Target, DIAL_BIT, INTEREST_ALL},
    proc::Sampler,
    report::{self, Report, Results, ServerStats, Windows},
    run::{self, Crew, Parts, Worker},
    Common,
};

/// Flags of `connect`.
#[derive(Args, Serialize, Clone, Debug)]
pub struct ConnectArgs {
    /// Flags every scenario takes.
    #[command(flatten)]
    #[serde(flatten)]
    pub common: Common,
    /// Connections to open (in all processes).
    #[arg(long, short = 'n', default_value_t = 10_000)]
    pub connections: usize,
    /// Handshakes per second in all (open loop); omit for as fast as possible.
    #[arg(long)]
    pub rate: Option<f64>,
    /// Attempts in progress at once per thread when no --rate is given.
    #[arg(long, default_value_t = 256)]
    pub concurrency: usize,
}

/// Counters of `connect`.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct ConnectResults {
    /// Connections asked for.
    pub connections: usize,
    /// Connections upgraded.
    pub open: u64,
    /// Attempts that failed.
    pub failed: u64,
    /// Failures by kind (refused, timeout, http_503, ...).
    pub failures: Failures,
    /// Target rate (handshakes/s), null for max rate.
    pub rate_target: Option<f64>,
    /// From the start until the last attempt ended (s).
    pub ramp_s: f64,
    /// `open / ramp_s`.
    pub handshakes_per_s: f64,
    /// Seconds the connections were held.
    pub hold_s: f64,
    /// Connections the server closed while held.
    pub closed_during_hold: u64,
    /// Close codes seen while held ("eof": closed without a close frame).
    pub close_codes: Failures,
    /// Server RSS growth per open connection (needs --server-pid).
    pub rss_per_conn_bytes: Option<f64>,
}

impl Results for ConnectResults {
    fn merge(&mut self, o: Self) {
        self.connections += o.connections;
        self.open += o.open;
        self.failed += o.failed;
        net::merge_counts(&mut self.failures, o.failures);
        self.ramp_s = self.ramp_s.max(o.ramp_s);
        self.closed_during_hold += o.closed_during_hold;
        net::merge_counts(&mut self.close_codes, o.close_codes);
    }

    fn finish(&mut self, _duration_s: f64, server: Option<&ServerStats>) {
        self.handshakes_per_s = if self.ramp_s > 0.0 {
            self.open as f64 / self.ramp_s
        } else {
            0.0
        };
        self.rss_per_conn_bytes = server.and_then(|s| match (s.rss_bytes_start, s.rss_bytes_end) {
            (Some(a), Some(b)) if self.open > 0 => {
                Some(b.saturating_sub(a) as f64 / self.open as f64)
            }
            _ => None,
        });
    }
}

struct Out {
    hist: hdrhistogram::Histogram<u64>,
    windows: Windows,
    failures: Failures,
    open: u64,
    failed: u64,
    ramp_end: u64,
    closed: u64,
    close_codes: Failures,
}

/// Records why a held connection ended.
pub fn close_kind(ctl: &net::Control) -> String {
    match ctl.close {
        Some(Some(code)) => code.to_string(),
        Some(None) => "no_code".into(),
        None => "eof".into(),
    }
}

fn worker(w: Worker, a: &ConnectArgs, target: &Target, offset: usize, local: usize) -> Out {
    let mut out = Out {
        hist: report::new_hist(3),
        windows: Windows::new(0, SEC, 100_000),
        failures: Failures::new(),
        open: 0,
        failed: 0,
        ramp_end: 0,
        closed: 0,
        close_codes: Failures::new(),
    };
    let mine: Vec<usize> = w.mine(local).collect();
    let mut poller = match Poller::new(1024) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("epoll: {e}");
            w.arrive(0);
            w.arrive(1);
            w.arrive(2);
            return out;
        }
    };
    let mut rng = Rng::new(0xC0FFEE ^ (offset + w.index) as u64);
    let limit = if a.rate.is_some() {
        usize::MAX
    } else {
        a.concurrency
    };
    let mut dialer = Dialer::new(limit, clock::secs_to_ns(a.common.connect_timeout));
    w.arrive(0);
    let go = loop {
        if let Some(t) = w.go(0) {
            break t;
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    };
    out.windows.set_origin(go);
    // This thread's part of the total rate, with its starts spread evenly.
    let interval = a.rate.map(|r| {
        let per_thread = a.common.my_rate(r) / w.threads as f64;
        (SEC as f64 / per_thread.max(1e-9)) as u64
    });
    for (k, _) in mine.iter().enumerate() {
        let due = interval.map_or(go, |iv| {
            go + k as u64 * iv + w.index as u64 * iv / w.threads as u64
        });
        dialer.queue(k, due);
    }
    let mut conns: Vec<Option<Conn>> = (0..mine.len()).map(|_| None).collect();
    let mut done = Vec::new();
    let mut data = 0u64;
    let idx = |slot: usize| (offset + mine[slot], None);
    let mut phase = 0; // 0 ramp, 1 waiting for gate 1/2 (held)
    loop {
        let now = now_ns();
        dialer.start_due(&poller, target, now, &mut rng, idx, &mut done);
        dialer.expire(now, &mut done);
        for d in done.drain(..) {
            let at = now_ns();
            match d {
                Dialed::Open {
                    slot,
                    conn,
                    due,
                    started,
                } => {
                    let from = if a.rate.is_some() { due } else { started };
                    let lat = at.saturating_sub(from);
                    report::record(&mut out.hist, lat);
                    out.windows.record(at, lat);
                    out.open += 1;
                    if poller.modify(conn.fd(), slot as u64, INTEREST_ALL).is_err() {
                        count(&mut out.failures, "epoll");
                        continue;
                    }
                    conns[slot] = Some(conn);
                }
                Dialed::Failed { err, .. } => {
                    out.failed += 1;
                    count(&mut out.failures, err.kind());
                }
            }
        }
        if phase == 0 && dialer.idle() {
            out.ramp_end = now_ns().saturating_sub(go);
            w.arrive(1);
            w.arrive(2);
            phase = 1;
        }
        if phase == 1 && w.go(2).is_some() {
            break;
        }
        let wake = dialer.next_wake().unwrap_or(now + 100 * MS);
        let timeout = wake.saturating_sub(now_ns()).min(100 * MS);
        let n = match poller.wait(Some(timeout)) {
            Ok(n) => n,
            Err(e) => {
                eprintln!("epoll_wait: {e}");
                break;
            }
        };
        for i in 0..n {
            let (token, flags) = poller.event(i);
            if token & DIAL_BIT != 0 {
                dialer.on_event(token, flags, &mut done);
                continue;
            }
            let slot = token as usize;
            let Some(c) = conns.get_mut(slot).and_then(Option::as_mut) else {
                continue;
            };
            let ended = match net::service_idle(c, &mut data) {
                Ok(ctl) if ctl.close.is_some() || ctl.eof => Some(close_kind(&ctl)),
                Ok(_) => None,
                Err(_) => Some("reset".to_string()),
            };
            if let Some(kind) = ended {
                out.closed += 1;
                count(&mut out.close_codes, kind);
                conns[slot] = None;
            }
        }
    }
    dialer.abandon();
    for c in conns.iter_mut().flatten() {
        c.goodbye();
    }
    out
}

/// Runs `connect` in this process.
pub fn run(a: &ConnectArgs) -> anyhow::Result<Report<ConnectResults>> {
    let c = &a.common;
    let target = Target::new(&c.target, &c.path, None, c.source_ips)?;
    let (offset, local) = c.my_share(a.connections);
    let threads = c.thread_count();
    let args = a.clone();
    let mut crew = Crew::spawn(threads, 3, c.is_child(), move |w| {
        worker(w, &args, &target, offset, local)
    })?;
    let go = crew.gate(0)?;
    let sampler = Sampler::start(c.server_pid, SEC);
    let held = match crew.gate(1) {
        Ok(t) => t,
        Err(e) => {
            crew.open_rest(1);
            return Err(e);
        }
    };
    clock::sleep_until(held + clock::secs_to_ns(c.duration));
    let sampled = sampler.finish();
    let gate2 = crew.gate(2);
    let outs = crew.join()?;
    gate2?;
    let mut results = ConnectResults {
        connections: local,
        rate_target: a.rate,
        hold_s: c.duration,
        ..ConnectResults::default()
    };
    let mut hist = report::new_hist(3);
    let mut windows = Windows::new(go, SEC, 100_000);
    for o in outs {
        report::add(&mut hist, &o.hist);
        windows.merge(o.windows);
        results.open += o.open;
        results.failed += o.failed;
        net::merge_counts(&mut results.failures, o.failures);
        results.ramp_s = results.ramp_s.max(o.ramp_end as f64 / 1e9);
        results.closed_during_hold += o.closed;
        net::merge_counts(&mut results.close_codes, o.close_codes);
    }
    let duration_s = sampled.window_s;
    let points = duration_s.ceil() as usize;
    Ok(run::assemble(
        Parts {
            scenario: "connect",
            params: run::params(a),
            results,
            hist: Some(hist),
            windows,
            points,
            sampled,
            threads,
            duration_s,
        },
        c.is_child(),
    ))
}
