//! `storm`: hold C connections, then drop every one at once and reconnect them all, `--rounds`
//! times, holding `--duration` seconds between drops.
//!
//! `--backoff none` reconnects at once and retries a failure at once (the thundering herd);
//! `--backoff jittered` waits a random time in [0, min(cap, base x 2^attempt)) before each
//! attempt, the first included ("full jitter"; base 50 ms, cap 5 s by default). Each round
//! reports the time until every connection was back (from the start of the drop), percentiles
//! of per-connection reconnect time (from that connection's close to its 101; closing
//! thousands of sockets takes a while itself), attempts, and failures by kind (refused,
//! timeout, http_503, ...). The initial ramp is reported as round 0, with at most
//! `--concurrency` attempts in progress per thread.

use clap::{Args, ValueEnum};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::{
    clock::{self, now_ns, Rng, MS, SEC},
    connect::close_kind,
    net::{self, count, Conn, Dialed, Dialer, Failures, Poller, Target, DIAL_BIT, INTEREST_ALL},
    proc::Sampler,
    report::{self, Report, Results, ServerStats, Windows},
    run::{self, Crew, Parts, Worker},
    Common,
};

/// Reconnect policy.
#[derive(ValueEnum, Serialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Backoff {
    /// Reconnect at once; retry a failure at once.
    None,
    /// Exponential backoff with full jitter before every attempt.
    Jittered,
}

/// How connections are dropped.
#[derive(ValueEnum, Serialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum DropHow {
    /// close(): a FIN.
    Fin,
    /// An abortive close (SO_LINGER 0): a RST.
    Rst,
}

/// Flags of `storm`.
#[derive(Args, Serialize, Clone, Debug)]
pub struct StormArgs {
    /// Flags every scenario takes.
    #[command(flatten)]
    #[serde(flatten)]
    pub common: Common,
    /// Connections (in all processes).
    #[arg(short = 'c', long, default_value_t = 1000)]
    pub connections: usize,
    /// Drop-and-reconnect rounds.
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
    /// Reconnect policy.
    #[arg(long, value_enum, default_value_t = Backoff::Jittered)]
    pub backoff: Backoff,
    /// Backoff base (ms).
    #[arg(long, default_value_t = 50)]
    pub backoff_base_ms: u64,
    /// Backoff cap (ms).
    #[arg(long, default_value_t = 5000)]
    pub backoff_cap_ms: u64,
    /// How connections are dropped.
    #[arg(long = "drop", value_enum, default_value_t = DropHow::Fin)]
    pub drop_how: DropHow,
    /// Seconds a round may last; connections not back by then count as not back.
    #[arg(long, default_value_t = 60.0)]
    pub round_timeout: f64,
    /// Attempts in progress at once per thread during the initial ramp.
    #[arg(long, default_value_t = 256)]
    pub concurrency: usize,
}

/// One round: the initial ramp (0) or a drop and reconnect.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Round {
    /// Round number (0: initial connect).
    pub round: usize,
    /// Connections back (upgraded) in the round.
    pub back: u64,
    /// Connections not back when the round timed out.
    pub not_back: u64,
    /// Time from the start of the drop until the last connection was back (s).
    pub all_back_s: f64,
    /// Median per-connection reconnect time, from its close to its 101 (ms).
    pub p50_ms: Option<f64>,
    /// 99th percentile reconnect time (ms).
    pub p99_ms: Option<f64>,
    /// Longest reconnect time (ms).
    pub max_ms: Option<f64>,
    /// Connection attempts made.
    pub attempts: u64,
    /// Attempts that failed.
    pub failed: u64,
    /// Failures by kind.
    pub failures: Failures,
    /// Connections the server closed while they were held before this round's drop.
    pub closed_in_hold: u64,
    /// The round's histogram (child processes only, for merging).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hdr: Option<String>,
}

impl Round {
    fn set_hist(&mut self, h: &Histogram<u64>, keep: bool) {
        if !h.is_empty() {
            self.p50_ms = Some(h.value_at_quantile(0.5) as f64 / 1e6);
            self.p99_ms = Some(h.value_at_quantile(0.99) as f64 / 1e6);
            self.max_ms = Some(h.max() as f64 / 1e6);
        }
        self.hdr = if keep {
            report::hist_to_b64(h).ok()
        } else {
            None
        };
    }

    fn merge(&mut self, o: Round) {
        let mut h = self
            .hdr
            .as_deref()
            .and_then(|s| report::hist_from_b64(s).ok());
        if let Some(oh) = o.hdr.as_deref().and_then(|s| report::hist_from_b64(s).ok()) {
            match &mut h {
                Some(m) => report::add(m, &oh),
                None => h = Some(oh),
            }
        }
        self.back += o.back;
        self.not_back += o.not_back;
        self.all_back_s = self.all_back_s.max(o.all_back_s);
        self.attempts += o.attempts;
        self.failed += o.failed;
        net::merge_counts(&mut self.failures, o.failures);
        self.closed_in_hold += o.closed_in_hold;
        match h {
            Some(h) => self.set_hist(&h, true),
            None => {
                let mx = |a: Option<f64>, b: Option<f64>| match (a, b) {
                    (Some(x), Some(y)) => Some(x.max(y)),
                    (x, y) => x.or(y),
                };
                self.p50_ms = mx(self.p50_ms, o.p50_ms);
                self.p99_ms = mx(self.p99_ms, o.p99_ms);
                self.max_ms = mx(self.max_ms, o.max_ms);
            }
        }
    }
}

/// Counters of `storm`.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct StormResults {
    /// Connections asked for.
    pub connections: usize,
    /// "none" or "jittered".
    pub backoff: String,
    /// "fin" or "rst".
    pub drop: String,
    /// The initial ramp and every drop round.
    pub rounds: Vec<Round>,
    /// The slowest round's time until all were back (s), drop rounds only.
    pub worst_all_back_s: f64,
    /// Failed attempts in the drop rounds.
    pub failed_attempts: u64,
    /// Connections never back, over all drop rounds.
    pub not_back: u64,
    /// Server CPU-seconds over the whole run (needs --server-pid).
    pub server_cpu_s: Option<f64>,
}

impl Results for StormResults {
    fn merge(&mut self, o: Self) {
        self.connections += o.connections;
        for r in o.rounds {
            match self.rounds.iter_mut().find(|m| m.round == r.round) {
                Some(m) => m.merge(r),
                None => self.rounds.push(r),
            }
        }
        self.rounds.sort_by_key(|r| r.round);
    }

    fn finish(&mut self, _duration_s: f64, server: Option<&ServerStats>) {
        for r in &mut self.rounds {
            r.hdr = None;
        }
        let drops = self.rounds.iter().filter(|r| r.round > 0);
        self.worst_all_back_s = drops.clone().map(|r| r.all_back_s).fold(0.0, f64::max);
        self.failed_attempts = drops.clone().map(|r| r.failed).sum();
        self.not_back = drops.map(|r| r.not_back).sum();
        self.server_cpu_s = server.map(|s| s.cpu_s);
    }
}

struct Out {
    hist: Histogram<u64>,
    windows: Windows,
    rounds: Vec<(Round, Histogram<u64>)>,
}

fn delay(a: &StormArgs, attempt: u32, rng: &mut Rng) -> u64 {
    match a.backoff {
        Backoff::None => 0,
        Backoff::Jittered => {
            let ceiling = a
                .backoff_base_ms
                .saturating_mul(1u64 << attempt.min(40))
                .min(a.backoff_cap_ms)
                * MS;
            rng.below(ceiling)
        }
    }
}

/// Answers pings on held connections for the events of the last wait; returns how many of
/// them the server closed.
fn service_held(poller: &Poller, n: usize, conns: &mut [Option<Conn>], data: &mut u64) -> u64 {
    let mut closed = 0;
    for e in 0..n {
        let (token, _) = poller.event(e);
        if token & DIAL_BIT != 0 {
            continue;
        }
        let slot = token as usize;
        let Some(c) = conns.get_mut(slot).and_then(Option::as_mut) else {
            continue;
        };
        let ended = match net::service_idle(c, data) {
            Ok(ctl) => ctl.close.is_some() || ctl.eof,
            Err(_) => true,
        };
        if ended {
            conns[slot] = None;
            closed += 1;
        }
    }
    closed
}

fn worker(w: Worker, a: &StormArgs, target: &Target, offset: usize, local: usize) -> Out {
    let mut out = Out {
        hist: report::new_hist(3),
        windows: Windows::new(0, SEC, 1_000_000),
        rounds: Vec::new(),
    };
    let mine: Vec<usize> = w.mine(local).collect();
    let gates = a.rounds + 2;
    let mut poller = match Poller::new(1024) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("epoll: {e}");
            (0..gates).for_each(|g| w.arrive(g));
            return out;
        }
    };
    let mut rng = Rng::new(0x5707 ^ (offset + w.index) as u64);
    let mut conns: Vec<Option<Conn>> = (0..mine.len()).map(|_| None).collect();
    let mut attempts: Vec<u32> = vec![0; mine.len()];
    let mut dropped_at: Vec<u64> = vec![0; mine.len()];
    let mut done = Vec::new();
    let mut data = 0u64;
    let idx = |slot: usize| (offset + mine[slot], None);
    let timeout = clock::secs_to_ns(a.common.connect_timeout);
    let mut closed_in_hold = 0u64;
    for round in 0..=a.rounds {
        // Hold (servicing pings) until this round's gate opens.
        w.arrive(round);
        let t0 = loop {
            if let Some(t) = w.go(round) {
                break t;
            }
            let n = poller.wait(Some(MS)).unwrap_or(0);
            closed_in_hold += service_held(&poller, n, &mut conns, &mut data);
        };
        if round == 0 {
            out.windows.set_origin(t0);
        }
        // The drop. Closing thousands of sockets takes a while, so each connection's
        // reconnect time runs from its own close (and `all_back_s` from the round's start).
        for (slot, c) in conns.iter_mut().enumerate() {
            if let Some(conn) = c.take() {
                if a.drop_how == DropHow::Rst {
                    let _ = socket2::SockRef::from(&conn.stream)
                        .set_linger(Some(std::time::Duration::ZERO));
                }
                drop(conn);
            }
            dropped_at[slot] = now_ns();
        }
        let mut dialer = Dialer::new(
            if round == 0 {
                a.concurrency
            } else {
                usize::MAX
            },
            timeout,
        );
        for (slot, at) in attempts.iter_mut().enumerate() {
            *at = 0;
            let d = if round == 0 { 0 } else { delay(a, 0, &mut rng) };
            dialer.queue(slot, dropped_at[slot] + d);
        }
        let mut r = Round {
            round,
            closed_in_hold: std::mem::take(&mut closed_in_hold),
            ..Round::default()
        };
        let mut h = report::new_hist(3);
        let deadline = t0 + clock::secs_to_ns(a.round_timeout);
        let mut last = t0;
        loop {
            let now = now_ns();
            dialer.start_due(&poller, target, now, &mut rng, idx, &mut done);
            dialer.expire(now, &mut done);
            for d in done.drain(..) {
                r.attempts += 1;
                match d {
                    Dialed::Open { slot, conn, .. } => {
                        let at = now_ns();
                        let took = at.saturating_sub(dropped_at[slot]);
                        report::record(&mut h, took);
                        if round > 0 {
                            report::record(&mut out.hist, took);
                        }
                        out.windows.record(at, took);
                        last = last.max(at);
                        r.back += 1;
                        if poller.modify(conn.fd(), slot as u64, INTEREST_ALL).is_ok() {
                            conns[slot] = Some(conn);
                        }
                    }
                    Dialed::Failed { slot, err, .. } => {
                        r.failed += 1;
                        count(&mut r.failures, err.kind());
                        attempts[slot] += 1;
                        let retry = now_ns() + delay(a, attempts[slot], &mut rng);
                        dialer.queue(slot, retry);
                    }
                }
            }
            if dialer.idle() || now >= deadline {
                break;
            }
            let wake = dialer.next_wake().unwrap_or(now + 100 * MS).min(deadline);
            let n = poller
                .wait(Some(wake.saturating_sub(now_ns()).min(100 * MS)))
                .unwrap_or(0);
            for e in 0..n {
                let (token, flags) = poller.event(e);
                if token & DIAL_BIT != 0 {
                    dialer.on_event(token, flags, &mut done);
                    continue;
                }
                let slot = token as usize;
                let Some(c) = conns.get_mut(slot).and_then(Option::as_mut) else {
                    continue;
                };
                match net::service_idle(c, &mut data) {
                    Ok(ctl) if ctl.close.is_some() || ctl.eof => {
                        count(&mut r.failures, format!("closed_{}", close_kind(&ctl)));
                        conns[slot] = None;
                    }
                    Ok(_) => {}
                    Err(_) => conns[slot] = None,
                }
            }
        }
        r.not_back = (mine.len() as u64).saturating_sub(r.back);
        dialer.abandon();
        r.all_back_s = last.saturating_sub(t0) as f64 / 1e9;
        out.rounds.push((r, h));
        // Hold before the next drop.
        if round < a.rounds {
            let until = now_ns() + clock::secs_to_ns(a.common.duration);
            while now_ns() < until {
                let n = poller
                    .wait(Some(until.saturating_sub(now_ns()).min(100 * MS)))
                    .unwrap_or(0);
                closed_in_hold += service_held(&poller, n, &mut conns, &mut data);
            }
        }
    }
    w.arrive(a.rounds + 1);
    for c in conns.iter_mut().flatten() {
        c.goodbye();
    }
    out
}

/// Runs `storm` in this process.
pub fn run(a: &StormArgs) -> anyhow::Result<Report<StormResults>> {
    let c = &a.common;
    let target = Target::new(&c.target, &c.path, None, c.source_ips)?;
    let (offset, local) = c.my_share(a.connections);
    let threads = c.thread_count();
    let args = a.clone();
    let mut crew = Crew::spawn(threads, a.rounds + 2, c.is_child(), move |w| {
        worker(w, &args, &target, offset, local)
    })?;
    let go = crew.gate(0)?;
    let sampler = Sampler::start(c.server_pid, SEC);
    for g in 1..=a.rounds + 1 {
        if let Err(e) = crew.gate(g) {
            crew.open_rest(g);
            let _ = crew.join();
            return Err(e);
        }
    }
    let sampled = sampler.finish();
    let outs = crew.join()?;
    let mut results = StormResults {
        connections: local,
        backoff: format!("{:?}", a.backoff).to_lowercase(),
        drop: format!("{:?}", a.drop_how).to_lowercase(),
        ..StormResults::default()
    };
    let mut hist = report::new_hist(3);
    let mut windows = Windows::new(go, SEC, 1_000_000);
    let mut rounds: Vec<(Round, Histogram<u64>)> = Vec::new();
    for o in outs {
        report::add(&mut hist, &o.hist);
        windows.merge(o.windows);
        for (r, h) in o.rounds {
            match rounds.iter_mut().find(|(m, _)| m.round == r.round) {
                Some((m, mh)) => {
                    report::add(mh, &h);
                    m.back += r.back;
                    m.not_back += r.not_back;
                    m.all_back_s = m.all_back_s.max(r.all_back_s);
                    m.attempts += r.attempts;
                    m.failed += r.failed;
                    net::merge_counts(&mut m.failures, r.failures);
                    m.closed_in_hold += r.closed_in_hold;
                }
                None => rounds.push((r, h)),
            }
        }
    }
    rounds.sort_by_key(|(r, _)| r.round);
    for (mut r, h) in rounds {
        r.set_hist(&h, c.is_child());
        results.rounds.push(r);
    }
    let duration_s = sampled.window_s;
    Ok(run::assemble(
        Parts {
            scenario: "storm",
            params: run::params(a),
            results,
            hist: Some(hist),
            windows,
            points: duration_s.ceil() as usize,
            sampled,
            threads,
            duration_s,
        },
        c.is_child(),
    ))
}
