//! `fanout`: corecast pub/sub under load. S subscribers spread evenly over T topics
//! (`bench.0` ..; subscriber g takes topic g mod T), P publishers sending R messages/s in all on
//! a fixed schedule (open loop), each message to the publisher's next topic in turn.
//!
//! Every published message carries its intended send time as `data.t` (µs since the epoch), so
//! delivery latency = receive time - `t` on the same host clock, without coordinated omission.
//! Subscribers track each topic's `seq` to count what they lost (gaps), and count `reset`s and
//! `err`s. The counts cover messages whose `t` falls in the measured window; after it,
//! subscribers keep reading for up to `--drain` seconds so late deliveries still count.
//!
//! The same engine runs `slow` (see `slow.rs`): some subscribers then read slowly or never.

use clap::Args;
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::{
    clock::{self, now_ns, to_epoch_ns, Rng, MS, SEC},
    net::{
        self, count, Conn, Dialed, Dialer, Failures, Poller, Target, DIAL_BIT, EV_ERR, EV_HUP,
        EV_OUT, EV_RDHUP, INTEREST_ALL, INTEREST_QUIET, READABLE,
    },
    proc::Sampler,
    pubsub::{self, SeqTrack, ServerMsg},
    report::{self, Report, Results, ServerStats, Windows},
    run::{self, Crew, Parts, Worker},
    ws::{Message, OP_PONG, OP_TEXT},
    Common,
};

/// Flags of `fanout` (and the base of `slow`).
#[derive(Args, Serialize, Clone, Debug)]
pub struct FanoutArgs {
    /// Flags every scenario takes.
    #[command(flatten)]
    #[serde(flatten)]
    pub common: Common,
    /// Subscribers (in all processes).
    #[arg(short = 's', long, default_value_t = 1000)]
    pub subscribers: usize,
    /// Topics; subscriber g subscribes to topic g mod T.
    #[arg(short = 't', long, default_value_t = 10)]
    pub topics: usize,
    /// Publishers.
    #[arg(short = 'p', long, default_value_t = 1)]
    pub publishers: usize,
    /// Publishes per second, all publishers together (open loop).
    #[arg(long, default_value_t = 1000.0)]
    pub rate: f64,
    /// Bytes of each message's `data` value (at least 31: `{"t":..,"pad":""}`).
    #[arg(long, default_value_t = 100)]
    pub size: usize,
    /// Conflation keys: messages carry `"key":"k<n mod K>"` (0: no key).
    #[arg(long, default_value_t = 0, value_name = "K")]
    pub keys: usize,
    /// Topic names are PREFIX.0, PREFIX.1, ...
    #[arg(long, default_value = "bench", value_name = "PREFIX")]
    pub topic_prefix: String,
    /// Seconds subscribers keep reading after the window for deliveries still due.
    #[arg(long, default_value_t = 2.0)]
    pub drain: f64,
    /// Offer no subprotocol (the server then speaks JSON by default).
    #[arg(long)]
    pub no_subprotocol: bool,
}

/// Slow-consumer settings, from `slow`.
#[derive(Clone, Debug, Default)]
pub struct SlowCfg {
    /// Subscribers 0..slow read slowly.
    pub slow: usize,
    /// The next `stalled` never read after subscribing.
    pub stalled: usize,
    /// Bytes a slow subscriber reads per tick.
    pub read_bytes: usize,
    /// Time between a slow subscriber's reads (ns).
    pub every_ns: u64,
    /// SO_RCVBUF of slow and stalled subscribers.
    pub rcvbuf: Option<usize>,
    /// Timeline window (ns).
    pub window_ns: u64,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Fast = 0,
    Slow = 1,
    Stalled = 2,
}

fn kind_of(g: usize, s: &SlowCfg) -> Kind {
    if g < s.slow {
        Kind::Slow
    } else if g < s.slow + s.stalled {
        Kind::Stalled
    } else {
        Kind::Fast
    }
}

/// One slow or stalled subscriber's outcome.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SubRecord {
    /// Global subscriber number.
    pub index: usize,
    /// Its topic.
    pub topic: usize,
    /// Messages from the window it received.
    pub deliveries: u64,
    /// Messages lost to it (seq gaps: dropped or conflated).
    pub gaps: u64,
    /// How its connection ended: a close code, "eof", "reset", or null if still open.
    pub close: Option<String>,
    /// Seconds from the start of load until the generator saw the close frame or the TCP
    /// hang-up (an upper bound on when the server closed it: a slow or stalled reader sees
    /// either only after the backlog in its socket, or after the server's close timeout).
    pub close_seen_after_s: Option<f64>,
}

/// Figures of one group of subscribers (fast, slow or stalled).
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct Group {
    /// Subscribers in the group.
    pub subscribers: u64,
    /// Those whose `sub` was answered with `subbed`.
    pub subscribed: u64,
    /// Messages from the window delivered to the group.
    pub deliveries: u64,
    /// Deliveries the window's publishes called for (publishes x the topic's subscribers).
    pub expected: u64,
    /// `expected - deliveries`: lost anywhere, the tail included (a gap shows only once a
    /// later message arrives).
    pub missing: u64,
    /// Fewest messages lost by one subscriber.
    pub gaps_min: Option<u64>,
    /// Most messages lost by one subscriber.
    pub gaps_max: Option<u64>,
    /// Messages lost, all subscribers together.
    pub gaps_sum: u64,
    /// Subscribers that lost any.
    pub with_gaps: u64,
    /// Forward jumps in `seq`.
    pub jumps: u64,
    /// Messages that arrived below the highest `seq` already seen.
    pub reorders: u64,
    /// `reset` messages.
    pub resets: u64,
    /// Subscribers whose connection ended.
    pub disconnected: u64,
    /// How connections ended: close codes ("1008" is slow consumer), "eof", "reset".
    pub close_codes: Failures,
    /// Earliest close seen, seconds from the start of load (see `SubRecord`).
    pub close_seen_after_s_min: Option<f64>,
    /// Latest close seen, seconds from the start of load.
    pub close_seen_after_s_max: Option<f64>,
    /// Median delivery latency (µs; merged across processes as the max).
    pub latency_p50_us: Option<f64>,
    /// 99th percentile delivery latency (µs; as above).
    pub latency_p99_us: Option<f64>,
    /// Largest delivery latency (µs).
    pub latency_max_us: Option<f64>,
    /// Each subscriber's outcome (slow and stalled groups only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub per_subscriber: Vec<SubRecord>,
}

fn min_o<T: PartialOrd>(a: Option<T>, b: Option<T>) -> Option<T> {
    match (a, b) {
        (Some(x), Some(y)) => Some(if y < x { y } else { x }),
        (x, y) => x.or(y),
    }
}

fn max_o<T: PartialOrd>(a: Option<T>, b: Option<T>) -> Option<T> {
    match (a, b) {
        (Some(x), Some(y)) => Some(if y > x { y } else { x }),
        (x, y) => x.or(y),
    }
}

impl Group {
    fn merge(&mut self, o: Group) {
        self.subscribers += o.subscribers;
        self.subscribed += o.subscribed;
        self.deliveries += o.deliveries;
        self.expected += o.expected;
        self.gaps_min = min_o(self.gaps_min, o.gaps_min);
        self.gaps_max = max_o(self.gaps_max, o.gaps_max);
        self.gaps_sum += o.gaps_sum;
        self.with_gaps += o.with_gaps;
        self.jumps += o.jumps;
        self.reorders += o.reorders;
        self.resets += o.resets;
        self.disconnected += o.disconnected;
        net::merge_counts(&mut self.close_codes, o.close_codes);
        self.close_seen_after_s_min = min_o(self.close_seen_after_s_min, o.close_seen_after_s_min);
        self.close_seen_after_s_max = max_o(self.close_seen_after_s_max, o.close_seen_after_s_max);
        self.latency_p50_us = max_o(self.latency_p50_us, o.latency_p50_us);
        self.latency_p99_us = max_o(self.latency_p99_us, o.latency_p99_us);
        self.latency_max_us = max_o(self.latency_max_us, o.latency_max_us);
        self.per_subscriber.extend(o.per_subscriber);
    }

    fn set_latency(&mut self, h: &Histogram<u64>) {
        if !h.is_empty() {
            self.latency_p50_us = Some(h.value_at_quantile(0.5) as f64 / 1000.0);
            self.latency_p99_us = Some(h.value_at_quantile(0.99) as f64 / 1000.0);
            self.latency_max_us = Some(h.max() as f64 / 1000.0);
        }
    }
}

/// Counters of `fanout` and `slow`.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct FanoutResults {
    /// Subscribers asked for.
    pub subscribers: usize,
    /// Topics.
    pub topics: usize,
    /// Publishers asked for.
    pub publishers: usize,
    /// Publishers connected.
    pub publishers_open: u64,
    /// Target publish rate (messages/s).
    pub rate_target: f64,
    /// Bytes of each message's data value.
    pub size: usize,
    /// Conflation keys (0: none).
    pub keys: usize,
    /// Messages published in the window.
    pub published: u64,
    /// Publishes skipped because a publisher had over 8 MiB unwritten.
    pub publish_skipped: u64,
    /// Deliveries to the subscribers that read at full speed, per second of window.
    pub deliveries_per_s: f64,
    /// Their deliveries over what the window's publishes called for.
    pub delivery_ratio: Option<f64>,
    /// Subscribers that read at full speed (all of them in `fanout`).
    pub fast: Group,
    /// Slow readers (`slow` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slow: Option<Group>,
    /// Subscribers that never read (`slow` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stalled: Option<Group>,
    /// `err` messages by code (any connection; `sub_timeout`: no answer to a `sub`).
    pub errs: Failures,
    /// Server messages that did not parse.
    pub bad_messages: u64,
    /// Frames that broke RFC 6455.
    pub protocol_errors: u64,
    /// Connection failures by kind.
    pub connect_failures: Failures,
    /// Publisher connections that ended, by close code.
    pub publisher_closes: Failures,
    /// 99th percentile of how late publishes left behind schedule (µs).
    pub send_lag_p99_us: Option<f64>,
    /// Most a publish left behind schedule (µs).
    pub send_lag_max_us: Option<f64>,
    /// Server CPU-seconds in the window (needs --server-pid).
    pub server_cpu_s: Option<f64>,
    /// Deliveries (all groups) per server CPU-second.
    pub deliveries_per_server_cpu_s: Option<f64>,
}

impl Results for FanoutResults {
    fn merge(&mut self, o: Self) {
        self.subscribers += o.subscribers;
        self.publishers += o.publishers;
        self.publishers_open += o.publishers_open;
        self.published += o.published;
        self.publish_skipped += o.publish_skipped;
        self.fast.merge(o.fast);
        match (&mut self.slow, o.slow) {
            (Some(a), Some(b)) => a.merge(b),
            (a, b) => *a = a.take().or(b),
        }
        match (&mut self.stalled, o.stalled) {
            (Some(a), Some(b)) => a.merge(b),
            (a, b) => *a = a.take().or(b),
        }
        net::merge_counts(&mut self.errs, o.errs);
        self.bad_messages += o.bad_messages;
        self.protocol_errors += o.protocol_errors;
        net::merge_counts(&mut self.connect_failures, o.connect_failures);
        net::merge_counts(&mut self.publisher_closes, o.publisher_closes);
        self.send_lag_p99_us = max_o(self.send_lag_p99_us, o.send_lag_p99_us);
        self.send_lag_max_us = max_o(self.send_lag_max_us, o.send_lag_max_us);
    }

    fn finish(&mut self, duration_s: f64, server: Option<&ServerStats>) {
        self.deliveries_per_s = self.fast.deliveries as f64 / duration_s.max(1e-9);
        self.delivery_ratio = (self.fast.expected > 0)
            .then(|| self.fast.deliveries as f64 / self.fast.expected as f64);
        self.server_cpu_s = server.map(|s| s.cpu_s);
        let all = self.fast.deliveries
            + self.slow.as_ref().map_or(0, |g| g.deliveries)
            + self.stalled.as_ref().map_or(0, |g| g.deliveries);
        self.deliveries_per_server_cpu_s = server
            .filter(|s| s.cpu_s > 0.0)
            .map(|s| all as f64 / s.cpu_s);
        self.fast.missing = self.fast.expected.saturating_sub(self.fast.deliveries);
        for g in [&mut self.slow, &mut self.stalled].into_iter().flatten() {
            g.missing = g.expected.saturating_sub(g.deliveries);
            g.per_subscriber.sort_by_key(|r| r.index);
        }
    }
}

/// Everything a client thread needs to know.
struct Cfg {
    a: FanoutArgs,
    slow: SlowCfg,
    topics: Vec<String>,
    /// Subscribers of each kind per topic (global).
    per_topic: [Vec<u64>; 3],
    pad: Vec<u8>,
    sub_offset: usize,
    sub_local: usize,
    pub_offset: usize,
    pub_local: usize,
    rate_local: f64,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum SubState {
    Subscribing,
    Active,
    Failed,
    Closed,
}

struct Sub {
    conn: Conn,
    g: usize,
    kind: Kind,
    topic: usize,
    state: SubState,
    track: SeqTrack,
    subbed: bool,
    deliveries: u64,
    close: Option<String>,
    disc_at: Option<u64>,
    dirty: bool,
}

struct Pub {
    conn: Conn,
    k: usize,
    n: u64,
    alive: bool,
    dirty: bool,
}

const PUB_BIT: u64 = 1 << 62;
/// Unwritten bytes past which a publish is skipped.
const MAX_PENDING: usize = 8 << 20;

struct Out {
    hist: Histogram<u64>,
    slow_hist: Histogram<u64>,
    lag: Histogram<u64>,
    windows: Windows,
    groups: [Group; 3],
    r: FanoutResults,
}

/// Times of the run, once known.
#[derive(Default, Clone, Copy)]
struct Times {
    go: u64,
    win_epoch: (u64, u64),
}

impl Times {
    #[inline]
    fn in_window(&self, t_ns: u64) -> bool {
        t_ns >= self.win_epoch.0 && t_ns < self.win_epoch.1
    }
}

fn mark_dirty(dirty: &mut Vec<u64>, flag: &mut bool, token: u64) {
    if !*flag {
        *flag = true;
        dirty.push(token);
    }
}

/// Handles everything buffered on a subscriber. `record`: latency counts (not in the final
/// read-out of slow and stalled subscribers, whose late messages say nothing new).
fn process_sub(
    s: &mut Sub,
    i: usize,
    now: u64,
    times: &Times,
    out: &mut Out,
    dirty: &mut Vec<u64>,
    record: bool,
) {
    let now_epoch = to_epoch_ns(now);
    loop {
        match s.conn.dec.next() {
            Ok(Some(Message::Text(p) | Message::Binary(p))) => match pubsub::parse(p) {
                Ok(ServerMsg::Msg { seq, t_us, .. }) => {
                    s.track.saw(seq);
                    let Some(t) = t_us else { continue };
                    let t_ns = t.saturating_mul(1000);
                    if !times.in_window(t_ns) {
                        continue;
                    }
                    s.deliveries += 1;
                    out.groups[s.kind as usize].deliveries += 1;
                    if record {
                        let lat = now_epoch.saturating_sub(t_ns);
                        if s.kind == Kind::Fast {
                            report::record(&mut out.hist, lat);
                            out.windows.record(now, lat);
                        } else {
                            report::record(&mut out.slow_hist, lat);
                        }
                    }
                }
                Ok(ServerMsg::Subbed { seq, .. }) => {
                    if s.state == SubState::Subscribing {
                        s.state = SubState::Active;
                        s.subbed = true;
                        s.track.start(seq);
                    }
                }
                Ok(ServerMsg::Reset { seq, .. }) => s.track.reset(seq),
                Ok(ServerMsg::Err { code, .. }) => {
                    count(&mut out.r.errs, code);
                    if s.state == SubState::Subscribing {
                        s.state = SubState::Failed;
                    }
                }
                Ok(_) => {}
                Err(_) => out.r.bad_messages += 1,
            },
            Ok(Some(Message::Ping(p))) => {
                s.conn.out.frame(OP_PONG, p);
                mark_dirty(dirty, &mut s.dirty, i as u64);
            }
            Ok(Some(Message::Pong(_))) => {}
            Ok(Some(Message::Close(code, _))) => {
                s.close = Some(code.map_or("no_code".into(), |c| c.to_string()));
                s.disc_at.get_or_insert(now);
                s.state = SubState::Closed;
                return;
            }
            Ok(None) => return,
            Err(_) => {
                out.r.protocol_errors += 1;
                s.close = Some("protocol_error".into());
                s.disc_at.get_or_insert(now);
                s.state = SubState::Closed;
                return;
            }
        }
    }
}

/// Reads up to `max` bytes from a subscriber and handles them.
#[allow(clippy::too_many_arguments)]
fn read_sub(
    s: &mut Sub,
    i: usize,
    max: usize,
    times: &Times,
    out: &mut Out,
    dirty: &mut Vec<u64>,
    record: bool,
) -> usize {
    if s.state == SubState::Closed {
        return 0;
    }
    let r = s.conn.read_available(max);
    let now = now_ns();
    match r {
        Ok(r) => {
            process_sub(s, i, now, times, out, dirty, record);
            if r.eof && s.state != SubState::Closed {
                s.close.get_or_insert_with(|| "eof".into());
                s.disc_at.get_or_insert(now);
                s.state = SubState::Closed;
            }
            r.bytes
        }
        Err(_) => {
            s.close.get_or_insert_with(|| "reset".into());
            s.disc_at.get_or_insert(now);
            s.state = SubState::Closed;
            0
        }
    }
}

fn process_pub(p: &mut Pub, j: usize, out: &mut Out, dirty: &mut Vec<u64>) {
    let r = match p.conn.read_available(usize::MAX) {
        Ok(r) => r,
        Err(_) => {
            p.alive = false;
            count(&mut out.r.publisher_closes, "reset");
            return;
        }
    };
    loop {
        match p.conn.dec.next() {
            Ok(Some(Message::Text(b) | Message::Binary(b))) => match pubsub::parse(b) {
                Ok(ServerMsg::Err { code, .. }) => count(&mut out.r.errs, code),
                Ok(_) => {}
                Err(_) => out.r.bad_messages += 1,
            },
            Ok(Some(Message::Ping(b))) => {
                p.conn.out.frame(OP_PONG, b);
                mark_dirty(dirty, &mut p.dirty, PUB_BIT | j as u64);
            }
            Ok(Some(Message::Pong(_))) => {}
            Ok(Some(Message::Close(code, _))) => {
                p.alive = false;
                count(
                    &mut out.r.publisher_closes,
                    code.map_or("no_code".into(), |c| c.to_string()),
                );
                return;
            }
            Ok(None) => break,
            Err(_) => {
                out.r.protocol_errors += 1;
                p.alive = false;
                return;
            }
        }
    }
    if r.eof {
        p.alive = false;
        count(&mut out.r.publisher_closes, "eof");
    }
}

#[derive(PartialEq, Eq, PartialOrd, Ord, Clone, Copy)]
enum Phase {
    Setup,
    Ready,
    Run,
    Drain,
}

fn worker(w: Worker, cfg: &Cfg, target: &Target) -> Out {
    let a = &cfg.a;
    let mut out = Out {
        hist: report::new_hist(3),
        slow_hist: report::new_hist(3),
        lag: report::new_hist(3),
        windows: Windows::new(
            0,
            cfg.slow.window_ns,
            (clock::secs_to_ns(a.common.duration)).div_ceil(cfg.slow.window_ns) as usize,
        ),
        groups: Default::default(),
        r: FanoutResults::default(),
    };
    let sub_g: Vec<usize> = w.mine(cfg.sub_local).map(|j| cfg.sub_offset + j).collect();
    let pub_k: Vec<usize> = w.mine(cfg.pub_local).map(|j| cfg.pub_offset + j).collect();
    let mut poller = match Poller::new(1024) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("epoll: {e}");
            w.arrive(0);
            return out;
        }
    };
    let mut rng = Rng::new(0xFA40 ^ (cfg.sub_offset + w.index) as u64);
    let mut dialer = Dialer::new(256, clock::secs_to_ns(a.common.connect_timeout));
    let ns = sub_g.len();
    for slot in 0..ns + pub_k.len() {
        dialer.queue(slot, 0);
    }
    let s_total = a.subscribers;
    let slot_info = |slot: usize| {
        if slot < ns {
            let g = sub_g[slot];
            let rcv = if kind_of(g, &cfg.slow) == Kind::Fast {
                None
            } else {
                cfg.slow.rcvbuf
            };
            (g, rcv)
        } else {
            (s_total + pub_k[slot - ns], None)
        }
    };
    for &g in &sub_g {
        out.groups[kind_of(g, &cfg.slow) as usize].subscribers += 1;
    }
    let mut subs: Vec<Sub> = Vec::with_capacity(ns);
    let mut pubs: Vec<Pub> = Vec::with_capacity(pub_k.len());
    let mut dirty: Vec<u64> = Vec::new();
    let mut done = Vec::new();
    let mut scratch = Vec::with_capacity(256);
    let mut phase = Phase::Setup;
    let mut setup_deadline = u64::MAX;
    let mut times = Times::default();
    let (mut end, mut drain_end) = (0u64, 0u64);
    let mut next_due = u64::MAX;
    let mut next_slow = u64::MAX;
    let mut last_fast = 0u64;
    let mut rr = 0usize;
    let interval = (cfg.rate_local > 0.0 && !pub_k.is_empty()).then(|| {
        let mine = cfg.rate_local * pub_k.len() as f64 / cfg.pub_local.max(1) as f64;
        ((SEC as f64 / mine.max(1e-9)) as u64).max(1)
    });
    loop {
        let now = now_ns();
        match phase {
            Phase::Setup => {
                dialer.start_due(&poller, target, now, &mut rng, slot_info, &mut done);
                dialer.expire(now, &mut done);
                for d in done.drain(..) {
                    match d {
                        Dialed::Open { slot, conn, .. } if slot < ns => {
                            let i = subs.len();
                            let g = sub_g[slot];
                            let mut s = Sub {
                                conn,
                                g,
                                kind: kind_of(g, &cfg.slow),
                                topic: g % cfg.topics.len(),
                                state: SubState::Subscribing,
                                track: SeqTrack::default(),
                                subbed: false,
                                deliveries: 0,
                                close: None,
                                disc_at: None,
                                dirty: false,
                            };
                            if poller.modify(s.conn.fd(), i as u64, INTEREST_ALL).is_err() {
                                count(&mut out.r.connect_failures, "epoll");
                                continue;
                            }
                            scratch.clear();
                            pubsub::encode_sub(&mut scratch, &cfg.topics[s.topic], g as u64);
                            s.conn.out.frame(OP_TEXT, &scratch);
                            mark_dirty(&mut dirty, &mut s.dirty, i as u64);
                            subs.push(s);
                        }
                        Dialed::Open { slot, conn, .. } => {
                            let j = pubs.len();
                            if poller
                                .modify(conn.fd(), PUB_BIT | j as u64, INTEREST_ALL)
                                .is_err()
                            {
                                count(&mut out.r.connect_failures, "epoll");
                                continue;
                            }
                            pubs.push(Pub {
                                conn,
                                k: pub_k[slot - ns],
                                n: 0,
                                alive: true,
                                dirty: false,
                            });
                        }
                        Dialed::Failed { err, .. } => {
                            count(&mut out.r.connect_failures, err.kind())
                        }
                    }
                }
                if dialer.idle() {
                    if setup_deadline == u64::MAX {
                        setup_deadline = now + clock::secs_to_ns(a.common.connect_timeout);
                    }
                    let waiting = subs.iter().any(|s| s.state == SubState::Subscribing);
                    if !waiting || now >= setup_deadline {
                        for s in subs.iter_mut().filter(|s| s.state == SubState::Subscribing) {
                            s.state = SubState::Failed;
                            count(&mut out.r.errs, "sub_timeout");
                        }
                        w.arrive(0);
                        phase = Phase::Ready;
                    }
                }
            }
            Phase::Ready => {
                if let Some(t) = w.go(0) {
                    times.go = t;
                    let warm_end = t + clock::secs_to_ns(a.common.warmup);
                    end = warm_end + clock::secs_to_ns(a.common.duration);
                    drain_end = end + clock::secs_to_ns(a.drain);
                    times.win_epoch = (to_epoch_ns(warm_end), to_epoch_ns(end));
                    out.windows.set_origin(warm_end);
                    if let Some(iv) = interval {
                        next_due = t + w.index as u64 * iv / w.threads as u64;
                    }
                    for (i, s) in subs.iter().enumerate() {
                        if s.kind != Kind::Fast {
                            let _ = poller.modify(s.conn.fd(), i as u64, INTEREST_QUIET);
                        }
                    }
                    if cfg.slow.slow > 0 {
                        next_slow = t;
                    }
                    phase = Phase::Run;
                }
            }
            Phase::Run => {
                if now >= end {
                    phase = Phase::Drain;
                    last_fast = last_fast.max(now);
                }
            }
            Phase::Drain => {
                let quiet = now.saturating_sub(last_fast) >= 500 * MS;
                if now >= drain_end || quiet {
                    break;
                }
            }
        }
        // Publish what is due.
        if phase == Phase::Run && !pubs.is_empty() {
            if let Some(iv) = interval {
                while next_due <= now && next_due < end {
                    let mut tries = 0;
                    while !pubs[rr].alive && tries < pubs.len() {
                        rr = (rr + 1) % pubs.len();
                        tries += 1;
                    }
                    if tries == pubs.len() {
                        next_due = u64::MAX;
                        break;
                    }
                    let t_ns = to_epoch_ns(next_due);
                    let t_us = t_ns / 1000;
                    let counted = times.in_window(t_us * 1000);
                    if counted {
                        report::record(&mut out.lag, (now - next_due).max(1));
                    }
                    let j = rr;
                    rr = (rr + 1) % pubs.len();
                    let p = &mut pubs[j];
                    if p.conn.out.pending() > MAX_PENDING {
                        out.r.publish_skipped += 1;
                    } else {
                        let topic = (p.k + p.n as usize) % cfg.topics.len();
                        let key =
                            (a.keys > 0).then(|| (p.n / cfg.topics.len() as u64) % a.keys as u64);
                        p.n += 1;
                        scratch.clear();
                        pubsub::encode_pub(&mut scratch, &cfg.topics[topic], t_us, &cfg.pad, key);
                        p.conn.out.frame(OP_TEXT, &scratch);
                        mark_dirty(&mut dirty, &mut p.dirty, PUB_BIT | j as u64);
                        if counted {
                            out.r.published += 1;
                            for (kind, g) in out.groups.iter_mut().enumerate() {
                                g.expected += cfg.per_topic[kind][topic];
                            }
                        }
                    }
                    next_due += iv;
                }
            }
        }
        // Slow readers take their ration.
        if phase >= Phase::Run && now >= next_slow {
            for (i, s) in subs.iter_mut().enumerate() {
                if s.kind == Kind::Slow {
                    read_sub(
                        s,
                        i,
                        cfg.slow.read_bytes,
                        &times,
                        &mut out,
                        &mut dirty,
                        true,
                    );
                }
            }
            next_slow += cfg.slow.every_ns;
            if next_slow <= now {
                next_slow = now + cfg.slow.every_ns;
            }
        }
        for token in std::mem::take(&mut dirty) {
            if token & PUB_BIT != 0 {
                let p = &mut pubs[(token & !PUB_BIT) as usize];
                p.dirty = false;
                if p.alive && p.conn.flush().is_err() {
                    p.alive = false;
                    count(&mut out.r.publisher_closes, "reset");
                }
            } else {
                let s = &mut subs[token as usize];
                s.dirty = false;
                if s.state != SubState::Closed && s.conn.flush().is_err() {
                    s.close.get_or_insert_with(|| "reset".into());
                    s.disc_at.get_or_insert(now);
                    s.state = SubState::Closed;
                }
            }
        }
        let now = now_ns();
        let mut wake = now + 100 * MS;
        match phase {
            Phase::Setup => wake = wake.min(dialer.next_wake().unwrap_or(now + 10 * MS)),
            Phase::Ready => wake = now + MS,
            Phase::Run => {
                wake = wake.min(end);
                if next_due < end {
                    wake = wake.min(next_due);
                }
                wake = wake.min(next_slow);
            }
            Phase::Drain => wake = wake.min(drain_end).min(next_slow),
        }
        let n = match poller.wait(Some(wake.saturating_sub(now))) {
            Ok(n) => n,
            Err(e) => {
                eprintln!("epoll_wait: {e}");
                break;
            }
        };
        for e in 0..n {
            let (token, flags) = poller.event(e);
            if token & DIAL_BIT != 0 {
                dialer.on_event(token, flags, &mut done);
            } else if token & PUB_BIT != 0 {
                let j = (token & !PUB_BIT) as usize;
                let Some(p) = pubs.get_mut(j) else { continue };
                if !p.alive {
                    continue;
                }
                if flags & EV_OUT != 0 && p.conn.out.pending() > 0 && p.conn.flush().is_err() {
                    p.alive = false;
                    count(&mut out.r.publisher_closes, "reset");
                    continue;
                }
                if flags & READABLE != 0 {
                    process_pub(p, j, &mut out, &mut dirty);
                }
            } else {
                let i = token as usize;
                let Some(s) = subs.get_mut(i) else { continue };
                if s.state == SubState::Closed {
                    continue;
                }
                if flags & EV_OUT != 0 && s.conn.out.pending() > 0 {
                    let _ = s.conn.flush();
                }
                if phase >= Phase::Run && s.kind != Kind::Fast {
                    // Read only on the timer (slow) or never (stalled): note a hang-up.
                    if flags & (EV_RDHUP | EV_HUP | EV_ERR) != 0 {
                        s.disc_at.get_or_insert(now_ns());
                    }
                    continue;
                }
                if flags & READABLE == 0 {
                    continue;
                }
                let before = out.groups[0].deliveries;
                read_sub(s, i, usize::MAX, &times, &mut out, &mut dirty, true);
                if out.groups[0].deliveries != before {
                    last_fast = now_ns();
                }
            }
        }
    }
    // Read out slow and stalled subscribers: what they still hold shows their gaps and
    // whether (and how) the server closed them.
    // The server refills a socket as it is read, so read them all in turns until nothing has
    // come for 300 ms (or 3 s have passed).
    let stop = now_ns() + 3 * SEC;
    let mut last_data = now_ns();
    loop {
        let mut open = false;
        for (i, s) in subs.iter_mut().enumerate() {
            if s.kind == Kind::Fast || s.state == SubState::Closed {
                continue;
            }
            open = true;
            if read_sub(s, i, 4 << 20, &times, &mut out, &mut dirty, false) > 0 {
                last_data = now_ns();
            }
        }
        let now = now_ns();
        if !open || now >= stop || now - last_data > 300 * MS {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    // Tally.
    for s in &subs {
        let g = &mut out.groups[s.kind as usize];
        g.subscribed += u64::from(s.subbed);
        let gaps = s.track.gaps();
        g.gaps_min = min_o(g.gaps_min, Some(gaps));
        g.gaps_max = max_o(g.gaps_max, Some(gaps));
        g.gaps_sum += gaps;
        g.with_gaps += u64::from(gaps > 0);
        g.jumps += s.track.jumps;
        g.reorders += s.track.reorders;
        g.resets += s.track.resets;
        let disc_s = s.disc_at.map(|t| t.saturating_sub(times.go) as f64 / 1e9);
        if s.close.is_some() || s.disc_at.is_some() {
            g.disconnected += 1;
            count(
                &mut g.close_codes,
                s.close.clone().unwrap_or_else(|| "tcp_closed".into()),
            );
            g.close_seen_after_s_min = min_o(g.close_seen_after_s_min, disc_s);
            g.close_seen_after_s_max = max_o(g.close_seen_after_s_max, disc_s);
        }
        if s.kind != Kind::Fast {
            g.per_subscriber.push(SubRecord {
                index: s.g,
                topic: s.topic,
                deliveries: s.deliveries,
                gaps,
                close: s.close.clone(),
                close_seen_after_s: disc_s,
            });
        }
    }
    out.r.publishers_open = pubs.len() as u64;
    for s in subs.iter_mut().filter(|s| s.state != SubState::Closed) {
        s.conn.goodbye();
    }
    for p in pubs.iter_mut().filter(|p| p.alive) {
        p.conn.goodbye();
    }
    out
}

/// Runs the fan-out engine in this process: `fanout`, or `slow` with `slow` settings.
pub fn run_engine(
    a: &FanoutArgs,
    slow: SlowCfg,
    scenario: &'static str,
    params: serde_json::Value,
) -> anyhow::Result<Report<FanoutResults>> {
    let c = &a.common;
    if a.topics == 0 {
        anyhow::bail!("--topics must be at least 1");
    }
    if slow.slow + slow.stalled > a.subscribers {
        anyhow::bail!("--slow plus --stalled is more than --subscribers");
    }
    let protocol = (!a.no_subprotocol).then_some(pubsub::SUBPROTOCOL);
    let target = Target::new(&c.target, &c.path, protocol, c.source_ips)?;
    let (sub_offset, sub_local) = c.my_share(a.subscribers);
    let (pub_offset, pub_local) = c.my_share(a.publishers);
    let mut per_topic = [
        vec![0u64; a.topics],
        vec![0u64; a.topics],
        vec![0u64; a.topics],
    ];
    for g in 0..a.subscribers {
        per_topic[kind_of(g, &slow) as usize][g % a.topics] += 1;
    }
    let window_ns = slow.window_ns;
    let cfg = Cfg {
        a: a.clone(),
        topics: (0..a.topics)
            .map(|i| format!("{}.{i}", a.topic_prefix))
            .collect(),
        per_topic,
        pad: vec![b'x'; a.size.saturating_sub(pubsub::DATA_OVERHEAD)],
        sub_offset,
        sub_local,
        pub_offset,
        pub_local,
        rate_local: a.rate * pub_local as f64 / a.publishers.max(1) as f64,
        slow: slow.clone(),
    };
    let threads = c.thread_count();
    let mut crew = Crew::spawn(threads, 1, c.is_child(), move |w| worker(w, &cfg, &target))?;
    let go = crew.gate(0)?;
    let warm_end = go + clock::secs_to_ns(c.warmup);
    clock::sleep_until(warm_end);
    let sampler = Sampler::start(c.server_pid, window_ns);
    clock::sleep_until(warm_end + clock::secs_to_ns(c.duration));
    let sampled = sampler.finish();
    let outs = crew.join()?;
    let mut results = FanoutResults {
        subscribers: sub_local,
        topics: a.topics,
        publishers: pub_local,
        rate_target: a.rate,
        size: a.size.max(pubsub::DATA_OVERHEAD),
        keys: a.keys,
        ..FanoutResults::default()
    };
    let mut hist = report::new_hist(3);
    let mut slow_hist = report::new_hist(3);
    let mut lag = report::new_hist(3);
    let mut windows = Windows::new(warm_end, window_ns, usize::MAX);
    let mut groups: [Group; 3] = Default::default();
    for o in outs {
        report::add(&mut hist, &o.hist);
        report::add(&mut slow_hist, &o.slow_hist);
        report::add(&mut lag, &o.lag);
        windows.merge(o.windows);
        for (g, og) in groups.iter_mut().zip(o.groups) {
            g.merge(og);
        }
        let mut r = o.r;
        r.subscribers = 0;
        r.publishers = 0;
        results.merge(r);
    }
    let [mut fast, mut slow_g, stalled_g] = groups;
    fast.set_latency(&hist);
    slow_g.set_latency(&slow_hist);
    results.fast = fast;
    if slow.slow > 0 || slow.stalled > 0 || scenario == "slow" {
        results.slow = Some(slow_g);
        results.stalled = Some(stalled_g);
    }
    if !lag.is_empty() {
        results.send_lag_p99_us = Some(lag.value_at_quantile(0.99) as f64 / 1000.0);
        results.send_lag_max_us = Some(lag.max() as f64 / 1000.0);
    }
    let points = clock::secs_to_ns(c.duration).div_ceil(window_ns) as usize;
    Ok(run::assemble(
        Parts {
            scenario,
            params,
            results,
            hist: Some(hist),
            windows,
            points,
            sampled,
            threads,
            duration_s: c.duration,
        },
        c.is_child(),
    ))
}

/// Runs `fanout` in this process.
pub fn run(a: &FanoutArgs) -> anyhow::Result<Report<FanoutResults>> {
    let cfg = SlowCfg {
        window_ns: SEC,
        ..SlowCfg::default()
    };
    run_engine(a, cfg, "fanout", run::params(a))
}
