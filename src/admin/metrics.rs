//! `GET /metrics`: the counters in the Prometheus text exposition format (version 0.0.4).
//!
//! Every counter is kept per worker by its single writer and summed or labelled here, on the
//! scrape, never on the hot path. Names follow one convention so a new counter needs no code
//! here: a field `rejected_<reason>` becomes `corecast_handshakes_rejected_total{reason}`,
//! `closed_<reason>` becomes `corecast_server_closes_total{reason}`, and any other field
//! `corecast_<field>_total` (a few have hand-picked names, below). Labels are `worker` and
//! `reason` only: no label per topic or connection, so cardinality stays fixed (the busiest
//! topics are on `GET /topics` instead).

use std::fmt::Write as _;

use crate::{
    pubsub::stats::{LatencySnapshot, PubSubStats, LATENCY_BOUNDS_US},
    server::Stats,
};

use super::AdminState;

/// How a field is exported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Counter,
    Gauge,
}

/// A metric family: its samples are appended in the order they arrive.
struct Family {
    name: String,
    help: String,
    kind: Kind,
    samples: Vec<(String, u64)>,
}

/// Families in first-seen order.
#[derive(Default)]
struct Families(Vec<Family>);

impl Families {
    fn push(&mut self, name: &str, help: &str, kind: Kind, labels: String, value: u64) {
        let fam = match self.0.iter_mut().position(|f| f.name == name) {
            Some(i) => &mut self.0[i],
            None => {
                self.0.push(Family {
                    name: name.to_string(),
                    help: help.to_string(),
                    kind,
                    samples: Vec::new(),
                });
                self.0
                    .last_mut()
                    .unwrap_or_else(|| unreachable!("just pushed"))
            }
        };
        fam.samples.push((labels, value));
    }

    fn render(&self, out: &mut String) {
        for f in &self.0 {
            let kind = match f.kind {
                Kind::Counter => "counter",
                Kind::Gauge => "gauge",
            };
            let _ = writeln!(out, "# HELP {} {}", f.name, escape_help(&f.help));
            let _ = writeln!(out, "# TYPE {} {kind}", f.name);
            for (labels, v) in &f.samples {
                let _ = writeln!(out, "{}{{{labels}}} {v}", f.name);
            }
        }
    }
}

fn escape_help(s: &str) -> String {
    s.trim().replace('\\', "\\\\").replace('\n', " ")
}

/// Where a server or pub/sub field goes: (family, help, kind, reason label).
fn place(field: &str, doc: &str) -> (String, String, Kind, Option<String>) {
    const REJECTED: &str = "corecast_handshakes_rejected_total";
    const REJECTED_HELP: &str =
        "Connections refused before the upgrade, by reason (HTTP status or bare close).";
    const CLOSES: &str = "corecast_server_closes_total";
    const CLOSES_HELP: &str = "Connections the server closed after the upgrade, by reason.";
    let fixed = |name: &str, kind: Kind| (name.to_string(), doc.to_string(), kind, None);
    let reason = |fam: &str, help: &str, r: &str| {
        (
            fam.to_string(),
            help.to_string(),
            Kind::Counter,
            Some(r.to_string()),
        )
    };
    match field {
        "connections" => fixed("corecast_connections", Kind::Gauge),
        "queued_bytes" => fixed("corecast_send_queue_bytes", Kind::Gauge),
        "partial_bytes" => fixed("corecast_partial_message_bytes", Kind::Gauge),
        "topics" => fixed("corecast_topics", Kind::Gauge),
        "history_bytes" => fixed("corecast_history_bytes", Kind::Gauge),
        "subscriptions" => fixed("corecast_subscriptions", Kind::Gauge),
        "accepted" => fixed("corecast_connections_accepted_total", Kind::Counter),
        "opened" => fixed("corecast_connections_opened_total", Kind::Counter),
        "closed" => fixed("corecast_connections_closed_total", Kind::Counter),
        "messages_in" => fixed("corecast_messages_received_total", Kind::Counter),
        "messages_out" => fixed("corecast_messages_sent_total", Kind::Counter),
        "bytes_in" => fixed("corecast_bytes_received_total", Kind::Counter),
        "bytes_out" => fixed("corecast_bytes_sent_total", Kind::Counter),
        "handshake_rejected" => fixed("corecast_handshake_http_errors_total", Kind::Counter),
        "refused_limit" => reason(REJECTED, REJECTED_HELP, "max_connections"),
        "handshake_timeouts" => reason(CLOSES, CLOSES_HELP, "handshake_timeout"),
        "heartbeat_timeouts" => reason(CLOSES, CLOSES_HELP, "heartbeat_timeout"),
        "close_timeouts" => reason(CLOSES, CLOSES_HELP, "close_timeout"),
        "protocol_errors" => reason(CLOSES, CLOSES_HELP, "protocol_error"),
        "drained" => reason(CLOSES, CLOSES_HELP, "drain"),
        "slow_disconnects" => reason(CLOSES, CLOSES_HELP, "slow_consumer"),
        "error_closes" => reason(CLOSES, CLOSES_HELP, "too_many_errors"),
        f => {
            if let Some(r) = f.strip_prefix("rejected_") {
                reason(REJECTED, REJECTED_HELP, r)
            } else if let Some(r) = f.strip_prefix("closed_") {
                reason(CLOSES, CLOSES_HELP, r)
            } else {
                fixed(&format!("corecast_{f}_total"), Kind::Counter)
            }
        }
    }
}

fn push_fields(fams: &mut Families, fields: &[(&str, &str)], values: &[u64], worker: usize) {
    for (&(field, doc), &v) in fields.iter().zip(values) {
        let (name, help, kind, reason) = place(field, doc);
        let labels = match reason {
            Some(r) => format!("worker=\"{worker}\",reason=\"{r}\""),
            None => format!("worker=\"{worker}\""),
        };
        fams.push(&name, &help, kind, labels, v);
    }
}

/// Append a histogram in seconds from per-worker latency snapshots.
fn render_latency(out: &mut String, per_worker: &[LatencySnapshot]) {
    let name = "corecast_publish_to_write_seconds";
    let _ = writeln!(
        out,
        "# HELP {name} From the owner worker's stamp on a published message to the write that \
         hands it to the kernel on a subscriber's worker; one sample per message and worker."
    );
    let _ = writeln!(out, "# TYPE {name} histogram");
    for (w, snap) in per_worker.iter().enumerate() {
        let mut cum = 0;
        for (i, n) in snap.buckets.iter().enumerate() {
            cum += n;
            let le = match LATENCY_BOUNDS_US.get(i) {
                Some(&us) => format_seconds(us),
                None => "+Inf".to_string(),
            };
            let _ = writeln!(out, "{name}_bucket{{worker=\"{w}\",le=\"{le}\"}} {cum}");
        }
        let _ = writeln!(
            out,
            "{name}_sum{{worker=\"{w}\"}} {}",
            format_seconds(snap.sum_us)
        );
        let _ = writeln!(out, "{name}_count{{worker=\"{w}\"}} {cum}");
    }
}

/// Microseconds as decimal seconds without float noise (`2500` → `0.0025`).
fn format_seconds(us: u64) -> String {
    let (s, frac) = (us / 1_000_000, us % 1_000_000);
    if frac == 0 {
        return s.to_string();
    }
    let f = format!("{frac:06}");
    format!("{s}.{}", f.trim_end_matches('0'))
}

/// The whole exposition.
pub(super) fn render(state: &AdminState, uptime_s: f64) -> String {
    let mut out = String::with_capacity(16 * 1024);
    let _ = writeln!(
        out,
        "# HELP corecast_info The running build and io driver (always 1).\n\
         # TYPE corecast_info gauge\n\
         corecast_info{{version=\"{}\",driver=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION"),
        state.driver
    );
    let _ = writeln!(
        out,
        "# HELP corecast_uptime_seconds Seconds since the admin API started.\n\
         # TYPE corecast_uptime_seconds gauge\n\
         corecast_uptime_seconds {uptime_s:.3}"
    );
    let _ = writeln!(
        out,
        "# HELP corecast_draining 1 while the server drains on shutdown.\n\
         # TYPE corecast_draining gauge\n\
         corecast_draining {}",
        u8::from(state.server.draining())
    );

    let mut fams = Families::default();
    for (w, s) in state.server.worker_stats().iter().enumerate() {
        push_fields(&mut fams, Stats::FIELDS, &s.values(), w);
    }
    for (w, s) in state.pubsub.worker_stats().iter().enumerate() {
        push_fields(&mut fams, PubSubStats::FIELDS, &s.values(), w);
    }
    for (w, age) in state.server.heartbeat_ages().iter().enumerate() {
        fams.push(
            "corecast_worker_heartbeat_age_ms",
            "Milliseconds since the worker's timer loop last ran (it runs every 100 ms).",
            Kind::Gauge,
            format!("worker=\"{w}\""),
            age.as_millis() as u64,
        );
    }
    let mesh = state.pubsub.mesh();
    for w in 0..mesh.workers() {
        let s = mesh.inbox(w);
        let l = format!("worker=\"{w}\"");
        fams.push(
            "corecast_mesh_received_total",
            "Items taken from the worker's cross-worker inbox.",
            Kind::Counter,
            l.clone(),
            s.received,
        );
        fams.push(
            "corecast_mesh_batches_total",
            "Non-empty inbox batches drained (received / batches is the mean batch).",
            Kind::Counter,
            l.clone(),
            s.batches,
        );
        fams.push(
            "corecast_mesh_parks_total",
            "Times the worker's inbox task found it empty and parked.",
            Kind::Counter,
            l.clone(),
            s.waits,
        );
        fams.push(
            "corecast_mesh_wakes_total",
            "Doorbell wakes other workers sent to this worker.",
            Kind::Counter,
            l,
            s.rings,
        );
    }
    fams.render(&mut out);
    render_latency(&mut out, &state.pubsub.worker_latency());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_are_exact_decimals() {
        assert_eq!(format_seconds(10), "0.00001");
        assert_eq!(format_seconds(2_500), "0.0025");
        assert_eq!(format_seconds(1_000_000), "1");
        assert_eq!(format_seconds(2_500_000), "2.5");
        assert_eq!(format_seconds(0), "0");
    }

    #[test]
    fn fields_are_placed_by_convention() {
        let (n, _, k, r) = place("rejected_origin", "x");
        assert_eq!(
            (n.as_str(), k, r.as_deref()),
            (
                "corecast_handshakes_rejected_total",
                Kind::Counter,
                Some("origin")
            )
        );
        let (n, _, _, r) = place("closed_rate_limit", "x");
        assert_eq!(
            (n.as_str(), r.as_deref()),
            ("corecast_server_closes_total", Some("rate_limit"))
        );
        let (n, h, k, r) = place("pings_sent", " Pings sent.");
        assert_eq!(
            (n.as_str(), h.as_str(), k, r),
            (
                "corecast_pings_sent_total",
                " Pings sent.",
                Kind::Counter,
                None
            )
        );
        assert_eq!(place("connections", "").2, Kind::Gauge);
    }

    #[test]
    fn every_metric_name_is_valid_and_families_are_unique() {
        let mut seen = std::collections::HashMap::new();
        for &(f, d) in Stats::FIELDS.iter().chain(PubSubStats::FIELDS) {
            let (name, help, kind, reason) = place(f, d);
            assert!(
                name.chars()
                    .all(|c| c.is_ascii_lowercase() || c == '_' || c.is_ascii_digit()),
                "{name}"
            );
            assert!(!help.trim().is_empty(), "{f} has no doc line");
            if kind == Kind::Counter {
                assert!(name.ends_with("_total"), "{name}");
            }
            // One field per (family, reason).
            assert!(seen.insert((name, reason), f).is_none(), "{f} collides");
        }
    }

    #[test]
    fn families_render_help_type_and_samples_once() {
        let mut f = Families::default();
        f.push("a_total", "A.", Kind::Counter, "worker=\"0\"".into(), 1);
        f.push("a_total", "A.", Kind::Counter, "worker=\"1\"".into(), 2);
        let mut out = String::new();
        f.render(&mut out);
        assert_eq!(
            out,
            "# HELP a_total A.\n# TYPE a_total counter\na_total{worker=\"0\"} 1\na_total{worker=\"1\"} 2\n"
        );
    }

    #[test]
    fn histogram_buckets_are_cumulative() {
        let h = crate::pubsub::stats::LatencyHistogram::default();
        h.record(5);
        h.record(30);
        h.record(30);
        h.record(10_000_000);
        let mut out = String::new();
        render_latency(&mut out, &[h.snapshot()]);
        assert!(out.contains("le=\"0.00001\"} 1\n"), "{out}");
        assert!(out.contains("le=\"0.00005\"} 3\n"), "{out}");
        assert!(out.contains("le=\"2.5\"} 3\n"), "{out}");
        assert!(out.contains("le=\"+Inf\"} 4\n"), "{out}");
        assert!(out.contains("_count{worker=\"0\"} 4\n"), "{out}");
        assert!(out.contains("_sum{worker=\"0\"} 10.000065\n"), "{out}");
    }
}
