//! `corecast-plot`: turns the JSON files written by `corecast-load ... --json FILE` into
//! standalone SVG charts, hand-written (no plotting crate), one line per file.
//!
//! - `corecast-plot latency -o out.svg [--log-y] [--title T] [--label A] a.json [--label B] b.json`
//!   draws the latency percentile curve (`latency_us.curve`) against "nines": the x axis is
//!   log10(1/(1-p)), so 90%, 99%, 99.9% ... sit one step apart.
//! - `corecast-plot timeline -o out.svg --field msgs_per_s|p99_us|rss_bytes [--log-y] a.json ...`
//!   draws one field of `timeline` over `t_s`.
//!
//! - `corecast-plot table [--baseline NAME] [--medians FILE] [-o OUT.md] --label A a1.json
//!   --label A a2.json --label B b1.json ...` groups the files by label (one per round), and
//!   prints a Markdown table of the medians over rounds (msgs/s, msgs per server CPU-second,
//!   p50/p99/p99.9) with each label's throughput as a ratio of the baseline's.
//!
//! A `--label` names the file that follows it; a file without one is named by its file stem.

use std::{fmt::Write as _, fs, path::PathBuf, process::ExitCode};

use serde_json::Value;

const USAGE: &str = "\
usage: corecast-plot latency  -o OUT.svg [--log-y] [--title T] [--label NAME] FILE.json ...
       corecast-plot timeline -o OUT.svg --field msgs_per_s|p99_us|rss_bytes [--log-y]
                              [--title T] [--label NAME] FILE.json ...
       corecast-plot table [-o OUT.md] [--baseline NAME] [--medians FILE]
                           [--label NAME] FILE.json ...
table: files with the same label are rounds of one server; --medians writes, per label,
\"LABEL<TAB>FILE\" of its median-throughput round.
A --label names the file that follows it; otherwise the file stem is used.";

/// Line colours, picked to stay apart for the usual 2-4 series (and for most colour blindness).
const PALETTE: [&str; 8] = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf",
];

/// Highest number of nines the latency x axis goes to; finer percentiles are clamped onto it.
const MAX_NINES: f64 = 6.0;

/// Canvas and plot-area geometry, in SVG user units.
const WIDTH: f64 = 960.0;
const HEIGHT: f64 = 560.0;
const LEFT: f64 = 84.0;
const RIGHT: f64 = 250.0;
const TOP: f64 = 62.0;
const BOTTOM: f64 = 64.0;

/// Which chart (or table) to draw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Latency,
    Timeline,
    Table,
}

/// The `timeline` entry fields a chart can show.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    MsgsPerS,
    P99Us,
    RssBytes,
}

impl Field {
    fn parse(s: &str) -> Result<Field, String> {
        match s {
            "msgs_per_s" => Ok(Field::MsgsPerS),
            "p99_us" => Ok(Field::P99Us),
            "rss_bytes" => Ok(Field::RssBytes),
            _ => Err(format!(
                "--field {s}: expected msgs_per_s, p99_us or rss_bytes"
            )),
        }
    }

    fn key(self) -> &'static str {
        match self {
            Field::MsgsPerS => "msgs_per_s",
            Field::P99Us => "p99_us",
            Field::RssBytes => "rss_bytes",
        }
    }

    /// The y axis title; RSS is drawn in MiB.
    fn axis_label(self) -> &'static str {
        match self {
            Field::MsgsPerS => "messages per second",
            Field::P99Us => "p99 latency (µs)",
            Field::RssBytes => "server RSS (MiB)",
        }
    }

    fn scale(self) -> f64 {
        match self {
            Field::RssBytes => 1.0 / (1024.0 * 1024.0),
            _ => 1.0,
        }
    }
}

/// Parsed command line.
#[derive(Debug)]
struct Options {
    kind: Kind,
    out: Option<PathBuf>,
    title: Option<String>,
    log_y: bool,
    field: Option<Field>,
    baseline: Option<String>,
    medians: Option<PathBuf>,
    inputs: Vec<(String, PathBuf)>,
}

fn parse_args<I: IntoIterator<Item = String>>(args: I) -> Result<Options, String> {
    let mut it = args.into_iter();
    let kind = match it.next().as_deref() {
        Some("latency") => Kind::Latency,
        Some("timeline") => Kind::Timeline,
        Some("table") => Kind::Table,
        Some("-h" | "--help") | None => return Err(USAGE.to_string()),
        Some(other) => return Err(format!("unknown chart {other}\n{USAGE}")),
    };
    let (mut out, mut title, mut log_y, mut field) = (None, None, false, None);
    let (mut baseline, mut medians) = (None, None);
    let mut label: Option<String> = None;
    let mut inputs = Vec::new();
    while let Some(arg) = it.next() {
        let mut value = |flag: &str| it.next().ok_or_else(|| format!("{flag} needs a value"));
        match arg.as_str() {
            "-o" | "--output" => out = Some(PathBuf::from(value(&arg)?)),
            "--title" => title = Some(value(&arg)?),
            "--label" => label = Some(value(&arg)?),
            "--field" => field = Some(Field::parse(&value(&arg)?)?),
            "--log-y" => log_y = true,
            "--baseline" => baseline = Some(value(&arg)?),
            "--medians" => medians = Some(PathBuf::from(value(&arg)?)),
            "-h" | "--help" => return Err(USAGE.to_string()),
            flag if flag.starts_with('-') && flag.len() > 1 => {
                return Err(format!("unknown flag {flag}\n{USAGE}"))
            }
            file => {
                let path = PathBuf::from(file);
                let name = label.take().unwrap_or_else(|| {
                    path.file_stem()
                        .map_or_else(|| file.to_string(), |s| s.to_string_lossy().into_owned())
                });
                inputs.push((name, path));
            }
        }
    }
    if label.is_some() {
        return Err("--label must be followed by a file".into());
    }
    if out.is_none() && kind != Kind::Table {
        return Err("-o OUT.svg is required".into());
    }
    if inputs.is_empty() {
        return Err(format!("no input files\n{USAGE}"));
    }
    if kind == Kind::Timeline && field.is_none() {
        return Err("timeline needs --field msgs_per_s|p99_us|rss_bytes".into());
    }
    Ok(Options {
        kind,
        out,
        title,
        log_y,
        field,
        baseline,
        medians,
        inputs,
    })
}

/// One line on the chart: connected runs of points (a gap in the data starts a new run).
#[derive(Debug, Clone)]
struct Series {
    label: String,
    note: Option<String>,
    runs: Vec<Vec<(f64, f64)>>,
}

/// Converts a percentile (a fraction, or a percentage when the curve goes past 1) into nines.
fn nines(p: f64) -> f64 {
    if p >= 1.0 {
        MAX_NINES
    } else {
        (-(1.0 - p).log10()).clamp(0.0, MAX_NINES)
    }
}

/// Reads `latency_us.curve` as (nines, µs) points; the 100% point (the maximum) is left out
/// because it has no place on a nines axis: the legend gives the maximum instead.
fn latency_series(doc: &Value, label: &str) -> Result<Series, String> {
    let lat = doc
        .get("latency_us")
        .filter(|v| !v.is_null())
        .ok_or_else(|| format!("{label}: no latency_us in this result"))?;
    let curve = lat
        .get("curve")
        .and_then(Value::as_array)
        .ok_or_else(|| format!("{label}: latency_us has no curve"))?;
    let mut raw = Vec::with_capacity(curve.len());
    for pair in curve {
        let p = pair.get(0).and_then(Value::as_f64);
        let v = pair.get(1).and_then(Value::as_f64);
        match (p, v) {
            (Some(p), Some(v)) => raw.push((p, v)),
            _ => return Err(format!("{label}: curve entries must be [percentile, µs]")),
        }
    }
    let percent = raw.iter().any(|&(p, _)| p > 1.0);
    let mut points: Vec<(f64, f64)> = raw
        .into_iter()
        .map(|(p, v)| (if percent { p / 100.0 } else { p }, v))
        .filter(|&(p, _)| p < 1.0)
        .map(|(p, v)| (nines(p), v))
        .collect();
    points.sort_by(|a, b| a.0.total_cmp(&b.0));
    let stat = |k: &str| lat.get(k).and_then(Value::as_f64);
    let note = match (stat("p50"), stat("p99"), stat("max")) {
        (Some(p50), Some(p99), Some(max)) => Some(format!(
            "p50 {} · p99 {} · max {} µs",
            compact(p50),
            compact(p99),
            compact(max)
        )),
        _ => None,
    };
    Ok(Series {
        label: label.to_string(),
        note,
        runs: vec![points],
    })
}

/// Reads one field of `timeline` as (t_s, value) points, splitting the line where it is null.
/// A window that starts at or after `duration_s` lies outside the measured window (a partial
/// tail) and is left out.
fn timeline_series(doc: &Value, label: &str, field: Field) -> Result<Series, String> {
    let end = doc
        .get("duration_s")
        .and_then(Value::as_f64)
        .unwrap_or(f64::INFINITY);
    let timeline = doc
        .get("timeline")
        .and_then(Value::as_array)
        .ok_or_else(|| format!("{label}: no timeline in this result"))?;
    let mut runs = vec![Vec::new()];
    let mut values = Vec::new();
    for entry in timeline {
        let t = entry.get("t_s").and_then(Value::as_f64);
        let v = entry.get(field.key()).and_then(Value::as_f64);
        match (t, v) {
            (Some(t), _) if t >= end - 1e-9 => {}
            (Some(t), Some(v)) => {
                let v = v * field.scale();
                values.push(v);
                runs.last_mut().expect("never empty").push((t, v));
            }
            _ => {
                if !runs.last().expect("never empty").is_empty() {
                    runs.push(Vec::new());
                }
            }
        }
    }
    runs.retain(|r| !r.is_empty());
    values.sort_by(f64::total_cmp);
    let note = (!values.is_empty()).then(|| {
        format!(
            "median {} · max {}",
            compact(values[values.len() / 2]),
            compact(values[values.len() - 1])
        )
    });
    Ok(Series {
        label: label.to_string(),
        note,
        runs,
    })
}

/// One axis: its range, scale and tick marks.
#[derive(Debug, Clone)]
struct Axis {
    min: f64,
    max: f64,
    log: bool,
    ticks: Vec<(f64, String)>,
}

impl Axis {
    /// Where `v` falls along the axis, 0.0 at `min` and 1.0 at `max`.
    fn frac(&self, v: f64) -> f64 {
        let f = if self.log {
            let v = v.max(self.min);
            (v.log10() - self.min.log10()) / (self.max.log10() - self.min.log10())
        } else {
            (v - self.min) / (self.max - self.min)
        };
        f.clamp(0.0, 1.0)
    }

    /// The nines axis, 0% to the next whole nine above the finest percentile (at least 99%).
    fn nines(top: f64) -> Axis {
        let max = top.ceil().clamp(2.0, MAX_NINES);
        let ticks = (0..=max as usize)
            .map(|k| (k as f64, nines_label(k)))
            .collect();
        Axis {
            min: 0.0,
            max,
            log: false,
            ticks,
        }
    }

    /// A linear axis from `lo` (or zero, when `from_zero`) up to a round number above `hi`.
    fn linear(lo: f64, hi: f64, from_zero: bool) -> Axis {
        let lo = if from_zero { lo.min(0.0) } else { lo };
        let hi = if hi > lo { hi } else { lo + 1.0 };
        let step = nice_step((hi - lo) / 6.0);
        let min = (lo / step).floor() * step;
        let max = (hi / step).ceil() * step;
        let count = ((max - min) / step).round() as usize;
        let ticks = (0..=count)
            .map(|i| min + i as f64 * step)
            .map(|v| (v, compact(v)))
            .collect();
        Axis {
            min,
            max,
            log: false,
            ticks,
        }
    }

    /// A log axis over whole decades covering `lo..=hi` (non-positive values sit on the floor).
    fn log(lo: f64, hi: f64) -> Axis {
        let lo = if lo > 0.0 { lo } else { hi.max(1.0) / 1000.0 };
        let hi = hi.max(lo);
        let (a, mut b) = (lo.log10().floor() as i32, hi.log10().ceil() as i32);
        if b <= a {
            b = a + 1;
        }
        let ticks = (a..=b)
            .map(|e| 10f64.powi(e))
            .map(|v| (v, compact(v)))
            .collect();
        Axis {
            min: 10f64.powi(a),
            max: 10f64.powi(b),
            log: true,
            ticks,
        }
    }
}

/// A tick step of 1, 2 or 5 times a power of ten, at least `raw`.
fn nice_step(raw: f64) -> f64 {
    if raw.is_nan() || raw <= 0.0 || !raw.is_finite() {
        return 1.0;
    }
    let pow = 10f64.powf(raw.log10().floor());
    let m = raw / pow;
    let nice = if m <= 1.0 {
        1.0
    } else if m <= 2.0 {
        2.0
    } else if m <= 5.0 {
        5.0
    } else {
        10.0
    };
    nice * pow
}

/// "0%", "90%", "99%", "99.9%" ... for k nines.
fn nines_label(k: usize) -> String {
    match k {
        0 => "0%".into(),
        1 => "90%".into(),
        _ => format!("99.{}%", "9".repeat(k - 2)).replace(".%", "%"),
    }
}

/// A short number: 950, 1500, 35k, 1.5M; fractions keep up to two decimals.
fn compact(v: f64) -> String {
    let a = v.abs();
    let trim = |s: String| {
        if s.contains('.') {
            s.trim_end_matches('0').trim_end_matches('.').to_string()
        } else {
            s
        }
    };
    if a >= 1e9 {
        trim(format!("{:.2}", v / 1e9)) + "G"
    } else if a >= 1e6 {
        trim(format!("{:.2}", v / 1e6)) + "M"
    } else if a >= 1e4 {
        trim(format!("{:.1}", v / 1e3)) + "k"
    } else if a >= 100.0 || a == 0.0 {
        format!("{v:.0}")
    } else {
        trim(format!("{v:.2}"))
    }
}

/// Escapes text for SVG content and attribute values.
fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

/// Everything a chart needs to be drawn.
#[derive(Debug, Clone)]
struct Chart {
    title: String,
    subtitle: String,
    x_label: String,
    y_label: String,
    x: Axis,
    y: Axis,
    series: Vec<Series>,
}

/// Writes the chart as one standalone SVG document.
fn render(chart: &Chart) -> String {
    let (pw, ph) = (WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM);
    let px = |v: f64| LEFT + chart.x.frac(v) * pw;
    let py = |v: f64| TOP + (1.0 - chart.y.frac(v)) * ph;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r##"<?xml version="1.0" encoding="UTF-8"?>
<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="Helvetica, Arial, sans-serif" font-size="13">
<rect x="0" y="0" width="{WIDTH}" height="{HEIGHT}" fill="#ffffff"/>
<text x="{tx}" y="26" text-anchor="middle" font-size="17" font-weight="bold">{title}</text>
<text x="{tx}" y="45" text-anchor="middle" font-size="12" fill="#555555">{subtitle}</text>"##,
        tx = LEFT + pw / 2.0,
        title = xml_escape(&chart.title),
        subtitle = xml_escape(&chart.subtitle),
    );
    // Grid and tick labels.
    s.push_str("<g stroke=\"#e0e0e0\" stroke-width=\"1\">\n");
    for (v, _) in &chart.x.ticks {
        let x = px(*v);
        let _ = writeln!(
            s,
            r#"<line x1="{x:.1}" y1="{TOP}" x2="{x:.1}" y2="{:.1}"/>"#,
            TOP + ph
        );
    }
    for (v, _) in &chart.y.ticks {
        let y = py(*v);
        let _ = writeln!(
            s,
            r#"<line x1="{LEFT}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}"/>"#,
            LEFT + pw
        );
    }
    s.push_str("</g>\n<g fill=\"#333333\">\n");
    for (v, label) in &chart.x.ticks {
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
            px(*v),
            TOP + ph + 18.0,
            xml_escape(label)
        );
    }
    for (v, label) in &chart.y.ticks {
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"#,
            LEFT - 8.0,
            py(*v) + 4.0,
            xml_escape(label)
        );
    }
    s.push_str("</g>\n");
    // Axes and their titles.
    let _ = writeln!(
        s,
        r##"<rect x="{LEFT}" y="{TOP}" width="{pw}" height="{ph}" fill="none" stroke="#333333"/>
<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>
<text transform="translate(20 {:.1}) rotate(-90)" text-anchor="middle">{}</text>"##,
        LEFT + pw / 2.0,
        HEIGHT - 18.0,
        xml_escape(&chart.x_label),
        TOP + ph / 2.0,
        xml_escape(&chart.y_label),
    );
    // The lines.
    for (i, series) in chart.series.iter().enumerate() {
        let color = PALETTE[i % PALETTE.len()];
        for run in &series.runs {
            let points: Vec<String> = run
                .iter()
                .map(|&(x, y)| format!("{:.1},{:.1}", px(x), py(y)))
                .collect();
            let _ = writeln!(
                s,
                r#"<polyline fill="none" stroke="{color}" stroke-width="2" stroke-linejoin="round" points="{}"/>"#,
                points.join(" ")
            );
        }
    }
    // Legend, right of the plot.
    let lx = LEFT + pw + 18.0;
    for (i, series) in chart.series.iter().enumerate() {
        let color = PALETTE[i % PALETTE.len()];
        let y = TOP + 10.0 + i as f64 * 40.0;
        let _ = writeln!(
            s,
            r#"<line x1="{lx:.1}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="{color}" stroke-width="3"/>
<text x="{:.1}" y="{:.1}">{}</text>"#,
            lx + 22.0,
            lx + 28.0,
            y + 4.0,
            xml_escape(&series.label)
        );
        if let Some(note) = &series.note {
            let _ = writeln!(
                s,
                r##"<text x="{:.1}" y="{:.1}" font-size="11" fill="#555555">{}</text>"##,
                lx + 28.0,
                y + 19.0,
                xml_escape(note)
            );
        }
    }
    s.push_str("</svg>\n");
    s
}

/// The scenario names of the documents, for the subtitle.
fn scenarios(docs: &[Value]) -> String {
    let mut names: Vec<&str> = docs
        .iter()
        .filter_map(|d| d.get("scenario").and_then(Value::as_str))
        .collect();
    names.dedup();
    if names.is_empty() {
        String::new()
    } else {
        format!("scenario: {}", names.join(", "))
    }
}

/// Builds the chart the options ask for from already-parsed documents.
fn build_chart(opts: &Options, docs: &[Value]) -> Result<Chart, String> {
    let labels = opts.inputs.iter().map(|(l, _)| l.as_str());
    let series: Vec<Series> = match opts.kind {
        Kind::Latency => labels
            .zip(docs)
            .map(|(l, d)| latency_series(d, l))
            .collect::<Result<_, _>>()?,
        Kind::Timeline => {
            let field = opts.field.expect("checked by parse_args");
            labels
                .zip(docs)
                .map(|(l, d)| timeline_series(d, l, field))
                .collect::<Result<_, _>>()?
        }
        Kind::Table => return Err("a table is not a chart".into()),
    };
    let all = || series.iter().flat_map(|s| s.runs.iter().flatten());
    if all().next().is_none() {
        return Err("no data points in the input files".into());
    }
    let (x_lo, x_hi) = all().fold((f64::MAX, f64::MIN), |(lo, hi), p| {
        (lo.min(p.0), hi.max(p.0))
    });
    let (y_lo, y_hi) = all().fold((f64::MAX, f64::MIN), |(lo, hi), p| {
        (lo.min(p.1), hi.max(p.1))
    });
    let y_pos_lo = all()
        .map(|p| p.1)
        .filter(|v| *v > 0.0)
        .fold(f64::MAX, f64::min);
    let y = if opts.log_y {
        Axis::log(if y_pos_lo == f64::MAX { 0.0 } else { y_pos_lo }, y_hi)
    } else {
        Axis::linear(y_lo, y_hi, true)
    };
    let subtitle = scenarios(docs);
    Ok(match opts.kind {
        Kind::Latency => Chart {
            title: opts
                .title
                .clone()
                .unwrap_or_else(|| "Latency by percentile".into()),
            subtitle,
            x_label: "percentile (log scale of 1/(1-p))".into(),
            y_label: "latency (µs)".into(),
            x: Axis::nines(x_hi),
            y,
            series,
        },
        Kind::Timeline => {
            let field = opts.field.expect("checked by parse_args");
            Chart {
                title: opts
                    .title
                    .clone()
                    .unwrap_or_else(|| format!("{} over time", field.key())),
                subtitle,
                x_label: "time (s)".into(),
                y_label: field.axis_label().into(),
                x: Axis::linear(x_lo.min(0.0), x_hi, true),
                y,
                series,
            }
        }
        Kind::Table => unreachable!("returned above"),
    })
}

/// The figures of one result file that the table shows; each is absent when the file lacks it.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Figures {
    msgs_per_s: Option<f64>,
    msgs_per_cpu_s: Option<f64>,
    p50: Option<f64>,
    p99: Option<f64>,
    p999: Option<f64>,
}

/// The first of `keys` that `obj` holds as a number.
fn lookup(obj: Option<&Value>, keys: &[&str]) -> Option<f64> {
    let obj = obj?;
    keys.iter()
        .find_map(|k| obj.get(*k).and_then(Value::as_f64))
}

/// Reads a result file's throughput, throughput per server CPU-second and latency percentiles.
fn figures(doc: &Value) -> Figures {
    let results = doc.get("results");
    let server = doc.get("server");
    let lat = doc.get("latency_us");
    let msgs_per_s = lookup(results, &["msgs_per_s", "messages_per_s"]);
    let per_cpu_keys = ["msgs_per_server_cpu_s", "msgs_per_cpu_s"];
    let msgs_per_cpu_s = lookup(results, &per_cpu_keys)
        .or_else(|| lookup(server, &per_cpu_keys))
        .or_else(|| {
            let cpu_keys = ["server_cpu_s", "cpu_s"];
            let cpu = lookup(results, &cpu_keys).or_else(|| lookup(server, &cpu_keys))?;
            let msgs = lookup(results, &["received", "msgs"])?;
            (cpu > 0.0).then(|| msgs / cpu)
        });
    Figures {
        msgs_per_s,
        msgs_per_cpu_s,
        p50: lookup(lat, &["p50"]),
        p99: lookup(lat, &["p99"]),
        p999: lookup(lat, &["p999"]),
    }
}

/// The median of the values present (the lower middle one for an even count).
fn median(values: impl Iterator<Item = Option<f64>>) -> Option<f64> {
    let mut v: Vec<f64> = values.flatten().collect();
    v.sort_by(f64::total_cmp);
    (!v.is_empty()).then(|| v[(v.len() - 1) / 2])
}

/// Builds the Markdown table of medians per label, in first-seen label order, and picks for
/// each label the file of its median-throughput round (its first file when none has one).
fn table(opts: &Options, docs: &[Value]) -> (String, Vec<(String, PathBuf)>) {
    let mut labels: Vec<&str> = Vec::new();
    for (label, _) in &opts.inputs {
        if !labels.contains(&label.as_str()) {
            labels.push(label);
        }
    }
    let rows: Vec<(&str, usize, Figures, PathBuf)> = labels
        .iter()
        .map(|&label| {
            let runs: Vec<(Figures, &PathBuf)> = opts
                .inputs
                .iter()
                .zip(docs)
                .filter(|((l, _), _)| l == label)
                .map(|((_, path), doc)| (figures(doc), path))
                .collect();
            let med = |f: fn(&Figures) -> Option<f64>| median(runs.iter().map(|(x, _)| f(x)));
            let m = Figures {
                msgs_per_s: med(|f| f.msgs_per_s),
                msgs_per_cpu_s: med(|f| f.msgs_per_cpu_s),
                p50: med(|f| f.p50),
                p99: med(|f| f.p99),
                p999: med(|f| f.p999),
            };
            let pick = runs
                .iter()
                .find(|(f, _)| f.msgs_per_s.is_some() && f.msgs_per_s == m.msgs_per_s)
                .unwrap_or(&runs[0]);
            (label, runs.len(), m, pick.1.clone())
        })
        .collect();
    let base_label = opts
        .baseline
        .clone()
        .unwrap_or_else(|| labels[0].to_string());
    let base = rows.iter().find(|r| r.0 == base_label).map(|r| r.2);
    let num = |v: Option<f64>| v.map_or_else(|| "-".to_string(), |v| format!("{v:.0}"));
    let ratio = |v: Option<f64>, b: Option<f64>| match (v, b) {
        (Some(v), Some(b)) if b > 0.0 => format!("{:.2}", v / b),
        _ => "-".to_string(),
    };
    let mut md = format!(
        "| server | rounds | msgs/s | x {base_label} | msgs per server CPU-s | x {base_label} \
         | p50 µs | p99 µs | p99.9 µs |\n|---|--:|--:|--:|--:|--:|--:|--:|--:|\n"
    );
    for (label, rounds, m, _) in &rows {
        let _ = writeln!(
            md,
            "| {label} | {rounds} | {} | {} | {} | {} | {} | {} | {} |",
            num(m.msgs_per_s),
            ratio(m.msgs_per_s, base.and_then(|b| b.msgs_per_s)),
            num(m.msgs_per_cpu_s),
            ratio(m.msgs_per_cpu_s, base.and_then(|b| b.msgs_per_cpu_s)),
            num(m.p50),
            num(m.p99),
            num(m.p999),
        );
    }
    let picks = rows
        .into_iter()
        .map(|(label, _, _, path)| (label.to_string(), path))
        .collect();
    (md, picks)
}

fn run(opts: &Options) -> Result<(), String> {
    let docs = opts
        .inputs
        .iter()
        .map(|(_, path)| {
            let text = fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
            serde_json::from_str::<Value>(&text).map_err(|e| format!("{}: {e}", path.display()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let write = |path: &PathBuf, text: &str| {
        fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))
    };
    if opts.kind == Kind::Table {
        let (markdown, picks) = table(opts, &docs);
        match &opts.out {
            Some(path) => write(path, &markdown)?,
            None => print!("{markdown}"),
        }
        if let Some(path) = &opts.medians {
            let lines: String = picks
                .iter()
                .map(|(label, file)| format!("{label}\t{}\n", file.display()))
                .collect();
            write(path, &lines)?;
        }
        return Ok(());
    }
    let out = opts.out.as_ref().expect("checked by parse_args");
    write(out, &render(&build_chart(opts, &docs)?))?;
    eprintln!("corecast-plot: wrote {}", out.display());
    Ok(())
}

fn main() -> ExitCode {
    match parse_args(std::env::args().skip(1)).and_then(|o| run(&o)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("corecast-plot: {e}");
            ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"{
        "scenario": "echo",
        "params": {"connections": 100, "size": 20},
        "machine": {"cpus": 2},
        "duration_s": 3.0,
        "results": {"msgs_per_s": 120000.0},
        "latency_us": {"count": 1000, "min": 20.0, "p50": 80.0, "p90": 120.0, "p99": 300.0,
            "p999": 900.0, "max": 2000.0, "mean": 95.0,
            "curve": [[0.0, 20.0], [50.0, 80.0], [90.0, 120.0], [99.0, 300.0],
                      [99.9, 900.0], [99.99, 1500.0], [100.0, 2000.0]]},
        "timeline": [
            {"t_s": 1.0, "msgs_per_s": 110000.0, "p99_us": 310.0, "rss_bytes": 10485760},
            {"t_s": 2.0, "msgs_per_s": 125000.0, "p99_us": null, "rss_bytes": 11534336},
            {"t_s": 2.5, "msgs_per_s": 121000.0, "p99_us": 290.0, "rss_bytes": 11534336},
            {"t_s": 3.0, "msgs_per_s": 20.0, "p99_us": 1.0, "rss_bytes": 1}
        ]
    }"#;

    fn opts(args: &[&str]) -> Options {
        parse_args(args.iter().map(|s| s.to_string())).unwrap()
    }

    /// The number of "x,y" pairs in each polyline, in document order.
    fn polyline_points(svg: &str) -> Vec<usize> {
        svg.split("<polyline")
            .skip(1)
            .map(|rest| {
                let start = rest.find("points=\"").unwrap() + 8;
                let end = start + rest[start..].find('"').unwrap();
                rest[start..end].split_whitespace().count()
            })
            .collect()
    }

    #[test]
    fn latency_chart_has_one_point_per_percentile_below_100_and_the_labels() {
        let doc: Value = serde_json::from_str(SAMPLE).unwrap();
        let o = opts(&[
            "latency", "-o", "x.svg", "--log-y", "--label", "corecast", "a.json", "b.json",
        ]);
        let svg = render(&build_chart(&o, &[doc.clone(), doc]).unwrap());
        assert!(svg.starts_with("<?xml") && svg.trim_end().ends_with("</svg>"));
        // Seven curve entries, the 100% one left out, for each of the two files.
        assert_eq!(polyline_points(&svg), vec![6, 6]);
        for text in [
            ">corecast<",
            ">b<",
            ">99.9%<",
            ">99.99%<",
            ">0%<",
            "latency (µs)",
            "p99 300 · max 2000 µs",
            "scenario: echo",
        ] {
            assert!(svg.contains(text), "missing {text}");
        }
        // The finest percentile is 99.99%, so the axis ends there.
        assert!(!svg.contains(">99.999%<"));
    }

    #[test]
    fn fractional_percentiles_read_like_percentages() {
        let doc: Value = serde_json::from_str(
            r#"{"latency_us": {"curve": [[0.5, 10.0], [0.99, 20.0], [0.999, 30.0]]}}"#,
        )
        .unwrap();
        let s = latency_series(&doc, "f").unwrap();
        let xs: Vec<f64> = s.runs[0].iter().map(|p| p.0).collect();
        assert!(
            (xs[1] - 2.0).abs() < 1e-9 && (xs[2] - 3.0).abs() < 1e-9,
            "{xs:?}"
        );
    }

    #[test]
    fn timeline_splits_at_nulls_drops_the_tail_window_and_scales_rss() {
        let doc: Value = serde_json::from_str(SAMPLE).unwrap();
        let o = opts(&["timeline", "-o", "t.svg", "--field", "p99_us", "s.json"]);
        let svg = render(&build_chart(&o, std::slice::from_ref(&doc)).unwrap());
        assert_eq!(polyline_points(&svg), vec![1, 1]);
        assert!(svg.contains("p99_us over time") && svg.contains(">s<"));

        let o = opts(&["timeline", "-o", "t.svg", "--field", "rss_bytes", "s.json"]);
        let svg = render(&build_chart(&o, &[doc]).unwrap());
        assert_eq!(polyline_points(&svg), vec![3]);
        assert!(svg.contains("server RSS (MiB)") && svg.contains("median 11 · max 11"));
    }

    #[test]
    fn labels_are_escaped_and_bad_arguments_refused() {
        let doc: Value = serde_json::from_str(SAMPLE).unwrap();
        let o = opts(&["latency", "-o", "x.svg", "--label", "a<b&c", "a.json"]);
        let svg = render(&build_chart(&o, &[doc]).unwrap());
        assert!(svg.contains("a&lt;b&amp;c") && !svg.contains("a<b"));
        let parse = |a: &[&str]| parse_args(a.iter().map(|s| s.to_string()));
        assert!(parse(&["timeline", "-o", "x.svg", "a.json"]).is_err());
        assert!(parse(&["latency", "a.json"]).is_err());
        assert!(parse(&["latency", "-o", "x.svg", "--label", "dangling"]).is_err());
        assert!(parse(&["bars", "-o", "x.svg", "a.json"]).is_err());
    }

    #[test]
    fn table_takes_medians_per_label_and_ratios_to_the_baseline() {
        let doc = |msgs: f64, cpu: f64, p99: f64| {
            serde_json::json!({
                "scenario": "echo",
                "results": {"msgs_per_s": msgs, "msgs_per_server_cpu_s": cpu},
                "latency_us": {"p50": 50.0, "p99": p99, "p999": 900.0, "curve": []},
                "timeline": []
            })
        };
        let docs = [
            doc(100.0, 200.0, 10.0),
            doc(300.0, 100.0, 30.0),
            doc(200.0, 300.0, 20.0),
            doc(50.0, 100.0, 70.0),
        ];
        let o = opts(&[
            "table",
            "--baseline",
            "cc",
            "--label",
            "p",
            "p1.json",
            "--label",
            "cc",
            "c1.json",
            "--label",
            "cc",
            "c2.json",
            "--label",
            "cc",
            "c3.json",
        ]);
        let docs = [
            docs[3].clone(),
            docs[0].clone(),
            docs[1].clone(),
            docs[2].clone(),
        ];
        let (md, picks) = table(&o, &docs);
        assert!(
            md.contains("| p | 1 | 50 | 0.25 | 100 | 0.50 | 50 | 70 | 900 |"),
            "{md}"
        );
        assert!(
            md.contains("| cc | 3 | 200 | 1.00 | 200 | 1.00 | 50 | 20 | 900 |"),
            "{md}"
        );
        assert_eq!(picks[1], ("cc".to_string(), PathBuf::from("c3.json")));
        assert_eq!(picks[0].1, PathBuf::from("p1.json"));
    }

    #[test]
    fn figures_fall_back_to_messages_over_server_cpu_seconds() {
        let doc = serde_json::json!({
            "results": {"msgs": 1000.0}, "server": {"cpu_s": 4.0}, "latency_us": null
        });
        let f = figures(&doc);
        assert_eq!(f.msgs_per_cpu_s, Some(250.0));
        assert_eq!((f.msgs_per_s, f.p99), (None, None));
    }

    #[test]
    fn axis_helpers() {
        assert_eq!(nines_label(0), "0%");
        assert_eq!(nines_label(2), "99%");
        assert_eq!(nines_label(5), "99.999%");
        assert_eq!(compact(1500.0), "1500");
        assert_eq!(compact(15_500.0), "15.5k");
        assert_eq!(compact(2_000_000.0), "2M");
        assert_eq!(compact(12.5), "12.5");
        assert_eq!(nice_step(13.0), 20.0);
        let log = Axis::log(20.0, 2000.0);
        assert_eq!((log.min, log.max, log.ticks.len()), (10.0, 10_000.0, 4));
        assert!((log.frac(100.0) - 1.0 / 3.0).abs() < 1e-9);
    }
}
