//! Results: latency distributions (HDR histograms), per-window timelines, the JSON report that
//! every scenario writes with `--json`, and the table printed at the end of a run.
//!
//! Latencies are recorded in nanoseconds (1 ns to about 17 minutes, 3 significant digits) and
//! reported in microseconds. A report can carry its histograms serialised (V2 + deflate, base64),
//! so that the results of several processes merge exactly.

use std::{io::Write as _, path::Path};

use anyhow::Context as _;
use base64::Engine as _;
use hdrhistogram::{
    serialization::{Deserializer, Serializer as _, V2DeflateSerializer},
    Histogram,
};
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use serde_json::Value;

/// Highest latency a histogram holds (ns); larger values are recorded as this.
pub const MAX_NS: u64 = 1_000_000_000_000;
/// Percentiles of the `curve` in `latency_us`.
pub const CURVE: [f64; 12] = [
    0.0, 50.0, 75.0, 90.0, 95.0, 99.0, 99.5, 99.9, 99.95, 99.99, 99.999, 100.0,
];

/// A latency histogram in ns with `sigfig` significant digits.
pub fn new_hist(sigfig: u8) -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_NS, sigfig).expect("constant histogram bounds are valid")
}

/// Records `ns` (clamped into the histogram's range).
#[inline]
pub fn record(h: &mut Histogram<u64>, ns: u64) {
    h.saturating_record(ns.clamp(1, MAX_NS));
}

/// Adds `b` into `a` (histograms with the same bounds cannot fail to add).
pub fn add(a: &mut Histogram<u64>, b: &Histogram<u64>) {
    if a.add(b).is_err() {
        // Different ranges: fall back to re-recording every bucket.
        for v in b.iter_recorded() {
            a.saturating_record_n(v.value_iterated_to(), v.count_at_value());
        }
    }
}

/// A histogram as base64 of its V2 + deflate serialisation.
pub fn hist_to_b64(h: &Histogram<u64>) -> anyhow::Result<String> {
    let mut buf = Vec::new();
    V2DeflateSerializer::new()
        .serialize(h, &mut buf)
        .map_err(|e| anyhow::anyhow!("serialising a histogram: {e:?}"))?;
    Ok(base64::engine::general_purpose::STANDARD.encode(buf))
}

/// The inverse of [`hist_to_b64`].
pub fn hist_from_b64(s: &str) -> anyhow::Result<Histogram<u64>> {
    let raw = base64::engine::general_purpose::STANDARD
        .decode(s)
        .context("histogram base64")?;
    Deserializer::new()
        .deserialize(&mut raw.as_slice())
        .map_err(|e| anyhow::anyhow!("deserialising a histogram: {e:?}"))
}

/// Percentiles of a latency distribution, in microseconds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LatencySummary {
    /// Samples.
    pub count: u64,
    /// Smallest.
    pub min: f64,
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
    /// Largest.
    pub max: f64,
    /// Mean (never read alone: the percentiles are the figures).
    pub mean: f64,
    /// [percentile, µs] pairs at the [`CURVE`] percentiles.
    pub curve: Vec<[f64; 2]>,
}

fn us(ns: u64) -> f64 {
    ns as f64 / 1000.0
}

impl LatencySummary {
    /// The summary of `h`, None if it is empty.
    pub fn of(h: &Histogram<u64>) -> Option<Self> {
        if h.is_empty() {
            return None;
        }
        let q = |p: f64| us(h.value_at_quantile(p / 100.0));
        Some(LatencySummary {
            count: h.len(),
            min: us(h.min()),
            p50: q(50.0),
            p90: q(90.0),
            p99: q(99.0),
            p999: q(99.9),
            max: us(h.max()),
            mean: h.mean() / 1000.0,
            curve: CURVE
                .iter()
                .map(|&p| {
                    let v = if p >= 100.0 {
                        us(h.max())
                    } else if p <= 0.0 {
                        us(h.min())
                    } else {
                        q(p)
                    };
                    [p, v]
                })
                .collect(),
        })
    }
}

/// One point of a run's timeline (one window: 1 s, or 500 ms for `slow`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TimelinePoint {
    /// Start of the window, seconds since the measured window began.
    pub t_s: f64,
    /// Messages (or handshakes, deliveries) per second in the window.
    pub msgs_per_s: f64,
    /// 99th percentile latency in the window (µs), null without samples.
    pub p99_us: Option<f64>,
    /// Server RSS at the end of the window, null without `--server-pid`.
    pub rss_bytes: Option<u64>,
    /// The window's histogram, only in the reports of child processes (for merging).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hdr: Option<String>,
}

/// The machine the run was on.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Machine {
    /// Online cores.
    pub cores: usize,
    /// Kernel release.
    pub kernel: String,
}

impl Machine {
    /// This machine.
    pub fn this() -> Self {
        Machine {
            cores: std::thread::available_parallelism().map_or(1, usize::from),
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .map(|s| s.trim().to_string())
                .unwrap_or_default(),
        }
    }
}

/// The server's resource use over the measured window, from /proc.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ServerStats {
    /// The server's PID.
    pub pid: u32,
    /// CPU-seconds (user + system) the server used in the window.
    pub cpu_s: f64,
    /// RSS at the start of the window.
    pub rss_bytes_start: Option<u64>,
    /// RSS at the end of the window.
    pub rss_bytes_end: Option<u64>,
    /// Highest RSS sampled during the window.
    pub rss_bytes_max: Option<u64>,
}

/// The load generator's own resource use over the measured window.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ClientStats {
    /// Generator processes.
    pub processes: usize,
    /// Client threads in all.
    pub threads: usize,
    /// CPU-seconds all generator processes used in the window.
    pub cpu_s: f64,
    /// `cpu_s` over the window's length: cores kept busy by the generator.
    pub cores_busy: f64,
}

/// Scenario-specific results: they merge across processes and derive their rates last.
pub trait Results: Serialize + DeserializeOwned {
    /// Adds another process's results into these.
    fn merge(&mut self, other: Self);
    /// Computes derived figures (rates, ratios) once all counts are in.
    fn finish(&mut self, duration_s: f64, server: Option<&ServerStats>);
}

/// A scenario's report: what `--json` writes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report<R> {
    /// Scenario name.
    pub scenario: String,
    /// The command-line parameters.
    pub params: Value,
    /// Where it ran.
    pub machine: Machine,
    /// Length of the measured window (s).
    pub duration_s: f64,
    /// Scenario-specific counters.
    pub results: R,
    /// The scenario's latency distribution, null if it has none.
    pub latency_us: Option<LatencySummary>,
    /// Per-window figures.
    pub timeline: Vec<TimelinePoint>,
    /// Server resource use, with `--server-pid`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<ServerStats>,
    /// The generator's resource use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<ClientStats>,
    /// The full latency histogram (V2 deflate, base64), for merging and later analysis.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_hdr: Option<String>,
    /// How the server's counters changed over the run, with `--server-admin`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_counters: Option<std::collections::BTreeMap<String, i64>>,
}

/// Per-window counts and latencies, kept by each client thread.
#[derive(Debug, Clone)]
pub struct Windows {
    origin: u64,
    width: u64,
    count: Vec<u64>,
    hist: Vec<Option<Histogram<u64>>>,
    limit: usize,
}

impl Windows {
    /// Windows of `width` ns from `origin`, at most `limit` of them.
    pub fn new(origin: u64, width: u64, limit: usize) -> Self {
        Windows {
            origin,
            width: width.max(1),
            count: Vec::new(),
            hist: Vec::new(),
            limit,
        }
    }

    /// Sets the origin (known only once the run starts).
    pub fn set_origin(&mut self, origin: u64) {
        self.origin = origin;
    }

    fn slot(&mut self, at: u64) -> Option<usize> {
        if at < self.origin {
            return None;
        }
        let i = ((at - self.origin) / self.width) as usize;
        if i >= self.limit {
            return None;
        }
        if i >= self.count.len() {
            self.count.resize(i + 1, 0);
            self.hist.resize(i + 1, None);
        }
        Some(i)
    }

    /// Counts one event at `at` with latency `ns`.
    #[inline]
    pub fn record(&mut self, at: u64, ns: u64) {
        if let Some(i) = self.slot(at) {
            self.count[i] += 1;
            record(self.hist[i].get_or_insert_with(|| new_hist(2)), ns);
        }
    }

    /// Adds another thread's windows (same origin and width).
    pub fn merge(&mut self, o: Windows) {
        if o.count.len() > self.count.len() {
            self.count.resize(o.count.len(), 0);
            self.hist.resize(o.count.len(), None);
        }
        for (i, (c, h)) in o.count.into_iter().zip(o.hist).enumerate() {
            self.count[i] += c;
            if let Some(h) = h {
                match &mut self.hist[i] {
                    Some(mine) => add(mine, &h),
                    slot => *slot = Some(h),
                }
            }
        }
    }

    /// The timeline: `n` points (at least), RSS from `rss` (sample k taken at the end of
    /// window k), histograms attached if `with_hdr`.
    pub fn timeline(&self, n: usize, rss: &[Option<u64>], with_hdr: bool) -> Vec<TimelinePoint> {
        let w = self.width as f64 / 1e9;
        (0..n.max(self.count.len()).min(self.limit))
            .map(|i| {
                let h = self.hist.get(i).and_then(Option::as_ref);
                TimelinePoint {
                    t_s: i as f64 * w,
                    msgs_per_s: self.count.get(i).copied().unwrap_or(0) as f64 / w,
                    p99_us: h
                        .filter(|h| !h.is_empty())
                        .map(|h| us(h.value_at_quantile(0.99))),
                    rss_bytes: rss.get(i).copied().flatten(),
                    hdr: if with_hdr {
                        h.and_then(|h| hist_to_b64(h).ok())
                    } else {
                        None
                    },
                }
            })
            .collect()
    }
}

/// Merges the timelines of several processes point by point: rates add up, p99 comes from the
/// merged histograms, RSS from whichever process sampled it.
pub fn merge_timelines(all: Vec<Vec<TimelinePoint>>) -> Vec<TimelinePoint> {
    let n = all.iter().map(Vec::len).max().unwrap_or(0);
    let mut out: Vec<TimelinePoint> = Vec::with_capacity(n);
    let mut hists: Vec<Option<Histogram<u64>>> = vec![None; n];
    for tl in all {
        for (i, p) in tl.into_iter().enumerate() {
            if let Some(h) = p.hdr.as_deref().and_then(|s| hist_from_b64(s).ok()) {
                match &mut hists[i] {
                    Some(m) => add(m, &h),
                    slot => *slot = Some(h),
                }
            }
            if i < out.len() {
                let o = &mut out[i];
                o.msgs_per_s += p.msgs_per_s;
                o.rss_bytes = o.rss_bytes.or(p.rss_bytes);
                o.p99_us = match (o.p99_us, p.p99_us) {
                    (Some(a), Some(b)) => Some(a.max(b)),
                    (a, b) => a.or(b),
                };
            } else {
                out.push(TimelinePoint { hdr: None, ..p });
            }
        }
    }
    for (o, h) in out.iter_mut().zip(hists) {
        if let Some(h) = h.filter(|h| !h.is_empty()) {
            o.p99_us = Some(us(h.value_at_quantile(0.99)));
        }
    }
    out
}

/// Writes the report as pretty JSON.
pub fn write_json<R: Serialize>(path: &Path, report: &Report<R>) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(report)?;
    std::fs::write(path, text + "\n").with_context(|| format!("writing {}", path.display()))
}

/// Reads a report written by [`write_json`].
pub fn read_json<R: DeserializeOwned>(path: &Path) -> anyhow::Result<Report<R>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}

fn fmt_num(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::Number(n) => {
            if let Some(i) = n.as_u64() {
                group(i)
            } else if let Some(i) = n.as_i64() {
                i.to_string()
            } else {
                let f = n.as_f64().unwrap_or(0.0);
                if f.abs() >= 1000.0 {
                    group(f.round() as u64)
                } else if f.abs() >= 10.0 {
                    format!("{f:.1}")
                } else {
                    format!("{f:.3}")
                }
            }
        }
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        other => other.to_string(),
    }
}

/// `1234567` as `1,234,567`.
pub fn group(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn mib(b: Option<u64>) -> String {
    b.map_or("-".into(), |b| format!("{:.1} MiB", b as f64 / 1048576.0))
}

fn print_value(out: &mut String, indent: usize, key: &str, v: &Value) {
    let pad = " ".repeat(indent);
    match v {
        Value::Object(m) if m.is_empty() => {
            out.push_str(&format!("{pad}{key:<28} -\n"));
        }
        Value::Object(m) if m.values().all(|x| !x.is_object() && !x.is_array()) && m.len() <= 8 => {
            let parts: Vec<String> = m
                .iter()
                .map(|(k, x)| format!("{k} {}", fmt_num(x)))
                .collect();
            out.push_str(&format!("{pad}{key:<28} {}\n", parts.join(", ")));
        }
        Value::Object(m) => {
            out.push_str(&format!("{pad}{key}\n"));
            for (k, x) in m {
                print_value(out, indent + 2, k, x);
            }
        }
        Value::Array(a) if a.first().is_some_and(Value::is_object) => {
            out.push_str(&format!("{pad}{key}\n"));
            let cols: Vec<String> = match &a[0] {
                Value::Object(m) => m
                    .iter()
                    .filter(|(_, x)| !x.is_object() && !x.is_array())
                    .map(|(k, _)| k.clone())
                    .collect(),
                _ => Vec::new(),
            };
            let width: Vec<usize> = cols.iter().map(|c| c.len().max(9)).collect();
            let head: Vec<String> = cols
                .iter()
                .zip(&width)
                .map(|(c, w)| format!("{c:>w$}"))
                .collect();
            out.push_str(&format!("{pad}  {}\n", head.join(" ")));
            const ROWS: usize = 20;
            for row in a.iter().take(ROWS) {
                let cells: Vec<String> = cols
                    .iter()
                    .zip(&width)
                    .map(|(c, w)| format!("{:>w$}", fmt_num(row.get(c).unwrap_or(&Value::Null))))
                    .collect();
                out.push_str(&format!("{pad}  {}\n", cells.join(" ")));
            }
            if a.len() > ROWS {
                out.push_str(&format!("{pad}  ... {} more in the JSON\n", a.len() - ROWS));
            }
        }
        other => out.push_str(&format!("{pad}{key:<28} {}\n", fmt_num(other))),
    }
}

/// The human-readable table of a report.
pub fn table<R: Serialize>(r: &Report<R>) -> String {
    let mut out = String::new();
    let target = r.params.get("target").map(fmt_num).unwrap_or_default();
    out.push_str(&format!(
        "scenario {}  target {}  window {:.1} s  ({} cores, kernel {})\n",
        r.scenario, target, r.duration_s, r.machine.cores, r.machine.kernel
    ));
    if let Ok(Value::Object(m)) = serde_json::to_value(&r.results) {
        for (k, v) in &m {
            print_value(&mut out, 2, k, v);
        }
    }
    if let Some(l) = &r.latency_us {
        out.push_str(&format!(
            "latency µs    {:>10} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}\n",
            "count", "min", "p50", "p90", "p99", "p99.9", "max", "mean"
        ));
        out.push_str(&format!(
            "              {:>10} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>9.1}\n",
            group(l.count),
            l.min,
            l.p50,
            l.p90,
            l.p99,
            l.p999,
            l.max,
            l.mean
        ));
    } else {
        out.push_str("latency µs    (none recorded)\n");
    }
    if let Some(s) = &r.server {
        out.push_str(&format!(
            "server        pid {}  cpu {:.2} s ({:.2} cores)  rss {} -> {} (max {})\n",
            s.pid,
            s.cpu_s,
            s.cpu_s / r.duration_s.max(1e-9),
            mib(s.rss_bytes_start),
            mib(s.rss_bytes_end),
            mib(s.rss_bytes_max)
        ));
    }
    if let Some(m) = &r.server_counters {
        let changed: Vec<String> = m.iter().map(|(k, v)| format!("{k} {v:+}")).collect();
        out.push_str("server counters over the run (GET /stats)\n");
        for chunk in changed.chunks(3) {
            out.push_str(&format!("              {}\n", chunk.join("   ")));
        }
    }
    if let Some(c) = &r.client {
        out.push_str(&format!(
            "generator     {} process(es), {} threads  cpu {:.2} s ({:.2} cores)\n",
            c.processes, c.threads, c.cpu_s, c.cores_busy
        ));
    }
    if !r.timeline.is_empty() {
        out.push_str(&format!(
            "timeline      {:>7} {:>12} {:>10} {:>12}\n",
            "t_s", "per_s", "p99_µs", "server_rss"
        ));
        for p in &r.timeline {
            out.push_str(&format!(
                "              {:>7.1} {:>12} {:>10} {:>12}\n",
                p.t_s,
                group(p.msgs_per_s.round() as u64),
                p.p99_us.map_or("-".into(), |v| format!("{v:.0}")),
                mib(p.rss_bytes)
            ));
        }
    }
    out
}

/// Prints the table to stdout.
pub fn print<R: Serialize>(r: &Report<R>) {
    let t = table(r);
    let mut so = std::io::stdout().lock();
    let _ = so.write_all(t.as_bytes());
    let _ = so.flush();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_and_b64_round_trip() {
        let mut h = new_hist(3);
        for v in 1..=10_000u64 {
            record(&mut h, v * 1000);
        }
        let s = LatencySummary::of(&h).unwrap();
        assert_eq!(s.count, 10_000);
        assert!((s.p50 - 5000.0).abs() < 10.0, "{}", s.p50);
        assert!((s.p99 - 9900.0).abs() < 20.0, "{}", s.p99);
        assert_eq!(s.curve.len(), CURVE.len());
        assert_eq!(s.curve.last().unwrap()[1], s.max);
        let back = hist_from_b64(&hist_to_b64(&h).unwrap()).unwrap();
        assert_eq!(back.len(), h.len());
        assert_eq!(back.value_at_quantile(0.99), h.value_at_quantile(0.99));
    }

    #[test]
    fn windows_merge_and_timeline() {
        let mut a = Windows::new(0, 1_000_000_000, 10);
        let mut b = Windows::new(0, 1_000_000_000, 10);
        a.record(10, 5_000);
        b.record(1_500_000_000, 7_000);
        b.record(1_600_000_000, 7_000);
        a.merge(b);
        let tl = a.timeline(3, &[Some(1), None], true);
        assert_eq!(tl.len(), 3);
        assert_eq!(tl[0].msgs_per_s, 1.0);
        assert_eq!(tl[1].msgs_per_s, 2.0);
        assert_eq!(tl[2].p99_us, None);
        assert_eq!(tl[0].rss_bytes, Some(1));
        let merged = merge_timelines(vec![tl.clone(), tl]);
        assert_eq!(merged[1].msgs_per_s, 4.0);
        assert!(merged[1].hdr.is_none());
        assert!((merged[1].p99_us.unwrap() - 7.0).abs() < 0.1);
    }

    #[test]
    fn grouping() {
        assert_eq!(group(0), "0");
        assert_eq!(group(1234), "1,234");
        assert_eq!(group(1234567), "1,234,567");
    }
}
