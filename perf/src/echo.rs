//! `echo`: round trips against any echo server over C connections.
//!
//! - Open loop (`--rate R`): R messages/s in all, on a fixed schedule spread round-robin over
//!   the connections, whatever the server does. Latency runs from the *intended* send time, so
//!   a stall shows in the percentiles instead of silently lowering the rate (no coordinated
//!   omission). The generator's own lateness is reported as `send_lag_*`.
//! - Closed loop (no `--rate`): every connection keeps `--inflight` messages outstanding and
//!   sends the next when a reply comes; this finds the maximum rate. Latency runs from the
//!   actual send.
//!
//! Replies are matched to sends in order per connection (an echo server answers in order), and
//! their length is checked. Only messages sent inside the measured window count; after the
//! window the generator stops sending and waits up to 2 s for the replies still due.

use std::collections::VecDeque;

use clap::Args;
use serde::{Deserialize, Serialize};

use crate::{
    clock::{self, now_ns, Rng, MS, SEC},
    net::{
        self, count, Conn, Dialed, Dialer, Failures, Poller, Target, DIAL_BIT, EV_OUT,
        INTEREST_ALL, READABLE,
    },
    proc::Sampler,
    report::{self, Report, Results, ServerStats, Windows},
    run::{self, Crew, Parts, Worker},
    ws::{Message, OP_BINARY, OP_PONG, OP_TEXT},
    Common,
};

/// Flags of `echo`.
#[derive(Args, Serialize, Clone, Debug)]
pub struct EchoArgs {
    /// Flags every scenario takes.
    #[command(flatten)]
    #[serde(flatten)]
    pub common: Common,
    /// Connections (in all processes).
    #[arg(short = 'c', long, default_value_t = 50)]
    pub connections: usize,
    /// Payload bytes per message.
    #[arg(long, default_value_t = 32)]
    pub size: usize,
    /// Messages per second in all, open loop; omit for closed loop at max rate.
    #[arg(long)]
    pub rate: Option<f64>,
    /// Messages outstanding per connection in closed loop.
    #[arg(long, default_value_t = 1)]
    pub inflight: usize,
    /// Send binary frames (default: text).
    #[arg(long)]
    pub binary: bool,
}

/// Counters of `echo`.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct EchoResults {
    /// "open" (fixed rate) or "closed" (max rate).
    pub mode: String,
    /// Connections asked for.
    pub connections: usize,
    /// Connections upgraded.
    pub open: u64,
    /// Connection failures by kind.
    pub connect_failures: Failures,
    /// Target rate, null in closed loop.
    pub rate_target: Option<f64>,
    /// Messages sent in the window.
    pub sent: u64,
    /// Replies to them.
    pub received: u64,
    /// `received / duration`.
    pub msgs_per_s: f64,
    /// Messages sent in the window with no reply by the end of the drain.
    pub unanswered: u64,
    /// Replies whose length differed from what was sent.
    pub mismatched: u64,
    /// Data frames that arrived with nothing outstanding.
    pub unexpected: u64,
    /// Sends skipped because a connection had over 8 MiB unwritten (open loop).
    pub dropped_sends: u64,
    /// Frames that broke RFC 6455 (the connection was dropped).
    pub protocol_errors: u64,
    /// Connections the server closed or reset.
    pub closed_by_server: u64,
    /// Close codes received ("eof": no close frame).
    pub close_codes: Failures,
    /// 99th percentile of how late the generator sent behind schedule (open loop, µs).
    pub send_lag_p99_us: Option<f64>,
    /// Most the generator sent behind schedule (open loop, µs).
    pub send_lag_max_us: Option<f64>,
    /// Server CPU-seconds in the window (needs --server-pid).
    pub server_cpu_s: Option<f64>,
    /// Round trips per server CPU-second.
    pub msgs_per_server_cpu_s: Option<f64>,
}

fn max_opt(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.max(y)),
        (x, y) => x.or(y),
    }
}

impl Results for EchoResults {
    fn merge(&mut self, o: Self) {
        self.connections += o.connections;
        self.open += o.open;
        net::merge_counts(&mut self.connect_failures, o.connect_failures);
        self.sent += o.sent;
        self.received += o.received;
        self.unanswered += o.unanswered;
        self.mismatched += o.mismatched;
        self.unexpected += o.unexpected;
        self.dropped_sends += o.dropped_sends;
        self.protocol_errors += o.protocol_errors;
        self.closed_by_server += o.closed_by_server;
        net::merge_counts(&mut self.close_codes, o.close_codes);
        self.send_lag_p99_us = max_opt(self.send_lag_p99_us, o.send_lag_p99_us);
        self.send_lag_max_us = max_opt(self.send_lag_max_us, o.send_lag_max_us);
    }

    fn finish(&mut self, duration_s: f64, server: Option<&ServerStats>) {
        self.msgs_per_s = self.received as f64 / duration_s.max(1e-9);
        self.server_cpu_s = server.map(|s| s.cpu_s);
        self.msgs_per_server_cpu_s = server
            .filter(|s| s.cpu_s > 0.0)
            .map(|s| self.received as f64 / s.cpu_s);
    }
}

/// Unwritten bytes past which an open-loop send is skipped.
const MAX_PENDING: usize = 8 << 20;
/// How long replies are awaited after the window.
const DRAIN: u64 = 2 * SEC;

struct EConn {
    conn: Conn,
    sent: VecDeque<u64>,
    dirty: bool,
    alive: bool,
}

struct Out {
    hist: hdrhistogram::Histogram<u64>,
    lag: hdrhistogram::Histogram<u64>,
    windows: Windows,
    r: EchoResults,
}

struct Run<'a> {
    a: &'a EchoArgs,
    opcode: u8,
    payload: Vec<u8>,
    warm_end: u64,
    end: u64,
    outstanding: usize,
    dirty: Vec<usize>,
}

impl Run<'_> {
    #[inline]
    fn send(&mut self, c: &mut EConn, i: usize, at: u64) {
        c.conn.out.frame(self.opcode, &self.payload);
        c.sent.push_back(at);
        self.outstanding += 1;
        if !c.dirty {
            c.dirty = true;
            self.dirty.push(i);
        }
    }

    fn kill(&mut self, c: &mut EConn, out: &mut Out, kind: String) {
        if !c.alive {
            return;
        }
        c.alive = false;
        out.r.closed_by_server += 1;
        count(&mut out.r.close_codes, kind);
        let (w, e) = (self.warm_end, self.end);
        out.r.unanswered += c.sent.iter().filter(|&&t| t >= w && t < e).count() as u64;
        self.outstanding -= c.sent.len();
        c.sent.clear();
    }

    /// Reads and handles everything available on connection `i`.
    fn on_readable(&mut self, c: &mut EConn, i: usize, out: &mut Out) {
        let r = match c.conn.read_available(usize::MAX) {
            Ok(r) => r,
            Err(_) => return self.kill(c, out, "reset".into()),
        };
        let now = now_ns();
        let closed_loop = self.a.rate.is_none();
        let mut resend = 0usize;
        loop {
            match c.conn.dec.next() {
                Ok(Some(Message::Text(p) | Message::Binary(p))) => {
                    let Some(t) = c.sent.pop_front() else {
                        out.r.unexpected += 1;
                        continue;
                    };
                    self.outstanding -= 1;
                    if p.len() != self.payload.len() {
                        out.r.mismatched += 1;
                    }
                    if t >= self.warm_end && t < self.end {
                        let lat = now.saturating_sub(t);
                        report::record(&mut out.hist, lat);
                        out.windows.record(now, lat);
                        out.r.received += 1;
                    }
                    if closed_loop && now < self.end {
                        resend += 1;
                    }
                }
                Ok(Some(Message::Ping(p))) => {
                    c.conn.out.frame(OP_PONG, p);
                    if !c.dirty {
                        c.dirty = true;
                        self.dirty.push(i);
                    }
                }
                Ok(Some(Message::Pong(_))) => {}
                Ok(Some(Message::Close(code, _))) => {
                    let kind = code.map_or("no_code".into(), |c| c.to_string());
                    return self.kill(c, out, kind);
                }
                Ok(None) => break,
                Err(_) => {
                    out.r.protocol_errors += 1;
                    return self.kill(c, out, "protocol_error".into());
                }
            }
        }
        for _ in 0..resend {
            self.send(c, i, now);
        }
        if r.eof {
            self.kill(c, out, "eof".into());
        }
    }
}

fn worker(w: Worker, a: &EchoArgs, target: &Target, offset: usize, local: usize) -> Out {
    let mut out = Out {
        hist: report::new_hist(3),
        lag: report::new_hist(3),
        windows: Windows::new(0, SEC, a.common.duration.ceil() as usize),
        r: EchoResults::default(),
    };
    let mine: Vec<usize> = w.mine(local).collect();
    let fail_gates = |w: &Worker| w.arrive(0);
    let mut poller = match Poller::new(1024) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("epoll: {e}");
            fail_gates(&w);
            return out;
        }
    };
    let mut rng = Rng::new(0xEC40 ^ (offset + w.index) as u64);
    // Connect everything before the clock starts.
    let mut dialer = Dialer::new(256, clock::secs_to_ns(a.common.connect_timeout));
    for k in 0..mine.len() {
        dialer.queue(k, 0);
    }
    let mut conns: Vec<EConn> = Vec::with_capacity(mine.len());
    let mut done = Vec::new();
    loop {
        let now = now_ns();
        dialer.start_due(
            &poller,
            target,
            now,
            &mut rng,
            |s| (offset + mine[s], None),
            &mut done,
        );
        dialer.expire(now, &mut done);
        for d in done.drain(..) {
            match d {
                Dialed::Open { conn, .. } => {
                    let i = conns.len();
                    if poller.modify(conn.fd(), i as u64, INTEREST_ALL).is_ok() {
                        conns.push(EConn {
                            conn,
                            sent: VecDeque::new(),
                            dirty: false,
                            alive: true,
                        });
                    }
                }
                Dialed::Failed { err, .. } => count(&mut out.r.connect_failures, err.kind()),
            }
        }
        if dialer.idle() {
            break;
        }
        let n = poller.wait(Some(10 * MS)).unwrap_or(0);
        for i in 0..n {
            let (token, flags) = poller.event(i);
            if token & DIAL_BIT != 0 {
                dialer.on_event(token, flags, &mut done);
            }
        }
    }
    out.r.open = conns.len() as u64;
    w.arrive(0);
    let mut run = Run {
        a,
        opcode: if a.binary { OP_BINARY } else { OP_TEXT },
        payload: vec![b'x'; a.size],
        warm_end: 0,
        end: 0,
        outstanding: 0,
        dirty: Vec::new(),
    };
    // Wait for the start, answering pings.
    let go = loop {
        if let Some(t) = w.go(0) {
            break t;
        }
        let n = poller.wait(Some(MS)).unwrap_or(0);
        for i in 0..n {
            let (token, _) = poller.event(i);
            if let Some(c) = conns.get_mut(token as usize) {
                run.on_readable(c, token as usize, &mut out);
            }
        }
    };
    run.warm_end = go + clock::secs_to_ns(a.common.warmup);
    run.end = run.warm_end + clock::secs_to_ns(a.common.duration);
    out.windows.set_origin(run.warm_end);
    let interval = a.rate.map(|r| {
        let per_thread = a.common.my_rate(r) / w.threads as f64;
        ((SEC as f64 / per_thread.max(1e-9)) as u64).max(1)
    });
    let mut next_due = interval.map_or(u64::MAX, |iv| go + w.index as u64 * iv / w.threads as u64);
    let mut rr = 0usize;
    if interval.is_none() {
        for (i, c) in conns.iter_mut().enumerate() {
            for _ in 0..a.inflight.max(1) {
                run.send(c, i, now_ns());
            }
        }
    }
    loop {
        let now = now_ns();
        if now >= run.end && (run.outstanding == 0 || now >= run.end + DRAIN) {
            break;
        }
        if let Some(iv) = interval {
            while next_due <= now && next_due < run.end && !conns.is_empty() {
                let mut tries = 0;
                while !conns[rr].alive && tries < conns.len() {
                    rr = (rr + 1) % conns.len();
                    tries += 1;
                }
                if tries == conns.len() {
                    next_due = u64::MAX;
                    break;
                }
                let lag = now - next_due;
                if next_due >= run.warm_end {
                    report::record(&mut out.lag, lag.max(1));
                }
                let i = rr;
                rr = (rr + 1) % conns.len();
                if conns[i].conn.out.pending() > MAX_PENDING {
                    out.r.dropped_sends += 1;
                } else {
                    let c = &mut conns[i];
                    c.conn.out.frame(run.opcode, &run.payload);
                    c.sent.push_back(next_due);
                    run.outstanding += 1;
                    if next_due >= run.warm_end {
                        out.r.sent += 1;
                    }
                    if !c.dirty {
                        c.dirty = true;
                        run.dirty.push(i);
                    }
                }
                next_due += iv;
            }
        }
        for i in std::mem::take(&mut run.dirty) {
            let c = &mut conns[i];
            c.dirty = false;
            if c.alive && c.conn.flush().is_err() {
                run.kill(c, &mut out, "reset".into());
            }
        }
        let now = now_ns();
        let until = if next_due < run.end {
            next_due
        } else if now < run.end {
            run.end
        } else {
            run.end + DRAIN
        };
        let timeout = until.saturating_sub(now).min(100 * MS);
        let n = match poller.wait(Some(timeout)) {
            Ok(n) => n,
            Err(e) => {
                eprintln!("epoll_wait: {e}");
                break;
            }
        };
        for e in 0..n {
            let (token, flags) = poller.event(e);
            let i = token as usize;
            let Some(c) = conns.get_mut(i) else { continue };
            if !c.alive {
                continue;
            }
            if flags & EV_OUT != 0 && c.conn.out.pending() > 0 && c.conn.flush().is_err() {
                run.kill(c, &mut out, "reset".into());
                continue;
            }
            if flags & READABLE != 0 {
                run.on_readable(c, i, &mut out);
            }
        }
    }
    // Whatever is still outstanding from the window went unanswered.
    let (ws, en) = (run.warm_end, run.end);
    for c in &conns {
        if c.alive {
            out.r.unanswered += c.sent.iter().filter(|&&t| t >= ws && t < en).count() as u64;
        }
    }
    if interval.is_none() {
        out.r.sent = out.r.received + out.r.unanswered;
    }
    for c in conns.iter_mut().filter(|c| c.alive) {
        c.conn.goodbye();
    }
    out
}

/// Runs `echo` in this process.
pub fn run(a: &EchoArgs) -> anyhow::Result<Report<EchoResults>> {
    let c = &a.common;
    let target = Target::new(&c.target, &c.path, None, c.source_ips)?;
    let (offset, local) = c.my_share(a.connections);
    let threads = c.thread_count();
    let args = a.clone();
    let mut crew = Crew::spawn(threads, 1, c.is_child(), move |w| {
        worker(w, &args, &target, offset, local)
    })?;
    let go = crew.gate(0)?;
    let warm_end = go + clock::secs_to_ns(c.warmup);
    clock::sleep_until(warm_end);
    let sampler = Sampler::start(c.server_pid, SEC);
    clock::sleep_until(warm_end + clock::secs_to_ns(c.duration));
    let sampled = sampler.finish();
    let outs = crew.join()?;
    let mut results = EchoResults {
        mode: if a.rate.is_some() { "open" } else { "closed" }.into(),
        connections: local,
        rate_target: a.rate,
        ..EchoResults::default()
    };
    let mut hist = report::new_hist(3);
    let mut lag = report::new_hist(3);
    let mut windows = Windows::new(warm_end, SEC, 100_000);
    for o in outs {
        report::add(&mut hist, &o.hist);
        report::add(&mut lag, &o.lag);
        windows.merge(o.windows);
        let mut r = o.r;
        r.connections = 0;
        results.merge(r);
    }
    if !lag.is_empty() {
        results.send_lag_p99_us = Some(lag.value_at_quantile(0.99) as f64 / 1000.0);
        results.send_lag_max_us = Some(lag.max() as f64 / 1000.0);
    }
    Ok(run::assemble(
        Parts {
            scenario: "echo",
            params: run::params(a),
            results,
            hist: Some(hist),
            windows,
            points: c.duration.ceil() as usize,
            sampled,
            threads,
            duration_s: c.duration,
        },
        c.is_child(),
    ))
}
