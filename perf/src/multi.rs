//! `--processes P`: the generator runs itself P times, each child with a share of the
//! connections (so a run can hold more connections than one process may open files), keeps the
//! children in step at every gate, and merges their JSON reports.
//!
//! The protocol with a child is line based: the child writes `ready` on stdout when it reaches
//! a gate and waits; once every live child is ready the parent writes `go <epoch ns>` (a moment
//! slightly ahead, so all start together) to each. A child writes its report (histograms
//! serialised) to the file named by its `--json`; only child 0 gets `--server-pid`, so the
//! server is sampled once.

use std::{
    ffi::OsString,
    io::{BufRead, BufReader, Write},
    path::PathBuf,
    process::{Child, ChildStdin, Command, Stdio},
    sync::mpsc,
};

use anyhow::{bail, Context as _};

use crate::{
    clock,
    report::{self, ClientStats, LatencySummary, Report, Results},
    Common,
};

/// Removes the flags the parent sets per child (`--json`, `--server-pid`, `--processes` is
/// kept: a child knows it is one of P by `--child`).
fn child_args(args: impl Iterator<Item = OsString>) -> Vec<OsString> {
    const DROP: [&str; 2] = ["--json", "--server-pid"];
    let mut out = Vec::new();
    let mut skip = false;
    for a in args {
        if skip {
            skip = false;
            continue;
        }
        let s = a.to_string_lossy();
        if DROP.contains(&s.as_ref()) {
            skip = true;
            continue;
        }
        if DROP.iter().any(|d| s.starts_with(&format!("{d}="))) {
            continue;
        }
        out.push(a);
    }
    out
}

enum Line {
    Ready(usize),
    Gone(usize),
}

/// Runs the children and returns their merged report (not yet finished).
pub fn run_parent<R: Results>(common: &Common) -> anyhow::Result<Report<R>> {
    let p = common.processes;
    let exe = std::env::current_exe().context("finding this executable")?;
    let args = child_args(std::env::args_os().skip(1));
    let dir = std::env::temp_dir().join(format!("corecast-load-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let (tx, rx) = mpsc::channel();
    let mut children: Vec<(Child, Option<ChildStdin>, PathBuf)> = Vec::new();
    for i in 0..p {
        let path = dir.join(format!("child-{i}.json"));
        let mut cmd = Command::new(&exe);
        cmd.args(&args)
            .arg("--child")
            .arg(i.to_string())
            .arg("--json")
            .arg(&path)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        if i == 0 {
            if let Some(pid) = common.server_pid {
                cmd.arg("--server-pid").arg(pid.to_string());
            }
        }
        let mut child = cmd.spawn().context("starting a child process")?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().context("child stdout")?;
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                match line {
                    Ok(l) if l.trim() == "ready" => {
                        if tx.send(Line::Ready(i)).is_err() {
                            return;
                        }
                    }
                    Ok(l) => eprintln!("child {i}: {l}"),
                    Err(_) => break,
                }
            }
            let _ = tx.send(Line::Gone(i));
        });
        children.push((child, stdin, path));
    }
    drop(tx);
    let mut alive = vec![true; p];
    let mut waiting = vec![false; p];
    let mut gates = 0usize;
    while alive.iter().any(|&a| a) {
        match rx.recv() {
            Ok(Line::Ready(i)) => waiting[i] = true,
            Ok(Line::Gone(i)) => {
                alive[i] = false;
                waiting[i] = false;
            }
            Err(_) => break,
        }
        let live = alive.iter().filter(|&&a| a).count();
        let ready = waiting.iter().filter(|&&w| w).count();
        if live > 0 && ready == live {
            let at = clock::wall_epoch_ns() + 50 * clock::MS;
            for (i, (_, stdin, _)) in children.iter_mut().enumerate() {
                if waiting[i] {
                    if let Some(s) = stdin.as_mut() {
                        let _ = writeln!(s, "go {at}").and_then(|_| s.flush());
                    }
                    waiting[i] = false;
                }
            }
            gates += 1;
        }
    }
    let mut reports = Vec::new();
    for (i, (mut child, stdin, path)) in children.into_iter().enumerate() {
        drop(stdin);
        let status = child.wait().context("waiting for a child")?;
        if !status.success() {
            eprintln!("child {i} exited with {status}");
        }
        match report::read_json::<R>(&path) {
            Ok(r) => reports.push(r),
            Err(e) => eprintln!("child {i}: no report: {e:#}"),
        }
        let _ = std::fs::remove_file(&path);
    }
    let _ = std::fs::remove_dir(&dir);
    if reports.is_empty() {
        bail!("no child process produced a report ({gates} gates passed)");
    }
    if reports.len() < p {
        eprintln!(
            "warning: only {} of {p} child processes reported; figures cover those",
            reports.len()
        );
    }
    merge(reports)
}

/// Merges child reports: counters add up, histograms merge exactly, the timeline point by point.
pub fn merge<R: Results>(reports: Vec<Report<R>>) -> anyhow::Result<Report<R>> {
    let mut it = reports.into_iter();
    let Some(first) = it.next() else {
        bail!("nothing to merge");
    };
    let mut hist = first
        .latency_hdr
        .as_deref()
        .map(report::hist_from_b64)
        .transpose()?;
    let mut timelines = vec![first.timeline];
    let mut out = Report {
        timeline: Vec::new(),
        latency_hdr: None,
        server_counters: None,
        ..first
    };
    let mut client = out.client.take().unwrap_or_default();
    for r in it {
        out.results.merge(r.results);
        if let Some(h) = r.latency_hdr.as_deref() {
            let h = report::hist_from_b64(h)?;
            match &mut hist {
                Some(m) => report::add(m, &h),
                None => hist = Some(h),
            }
        }
        timelines.push(r.timeline);
        out.server = out.server.or(r.server);
        out.duration_s = out.duration_s.max(r.duration_s);
        if let Some(c) = r.client {
            client = ClientStats {
                processes: client.processes + c.processes,
                threads: client.threads + c.threads,
                cpu_s: client.cpu_s + c.cpu_s,
                cores_busy: client.cores_busy + c.cores_busy,
            };
        }
    }
    out.client = Some(client);
    out.timeline = report::merge_timelines(timelines);
    out.latency_us = hist.as_ref().and_then(LatencySummary::of);
    out.latency_hdr = hist.as_ref().and_then(|h| report::hist_to_b64(h).ok());
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_adds_counts_and_histograms() {
        use crate::{
            echo::EchoResults,
            report::{new_hist, record, Machine, TimelinePoint},
        };
        let child = |lat_us: u64, n: u64| {
            let mut h = new_hist(3);
            for _ in 0..n {
                record(&mut h, lat_us * 1000);
            }
            Report {
                scenario: "echo".into(),
                params: serde_json::Value::Null,
                machine: Machine::this(),
                duration_s: 1.0,
                results: EchoResults {
                    received: n,
                    connections: 5,
                    ..EchoResults::default()
                },
                latency_us: LatencySummary::of(&h),
                timeline: vec![TimelinePoint {
                    t_s: 0.0,
                    msgs_per_s: n as f64,
                    p99_us: Some(lat_us as f64),
                    rss_bytes: None,
                    hdr: report::hist_to_b64(&h).ok(),
                }],
                server: None,
                client: Some(ClientStats {
                    processes: 1,
                    threads: 2,
                    cpu_s: 0.5,
                    cores_busy: 0.5,
                }),
                latency_hdr: report::hist_to_b64(&h).ok(),
                server_counters: None,
            }
        };
        let m = merge(vec![child(100, 90), child(1000, 10)]).unwrap();
        assert_eq!(m.results.received, 100);
        assert_eq!(m.results.connections, 10);
        let l = m.latency_us.unwrap();
        assert_eq!(l.count, 100);
        assert!((l.p50 - 100.0).abs() < 1.0);
        assert!((l.p99 - 1000.0).abs() < 5.0);
        assert_eq!(m.timeline[0].msgs_per_s, 100.0);
        assert!(m.timeline[0].hdr.is_none());
        let c = m.client.unwrap();
        assert_eq!((c.processes, c.threads), (2, 4));
    }

    #[test]
    fn child_args_drop_per_child_flags() {
        let a: Vec<OsString> = [
            "echo",
            "--json",
            "x.json",
            "-c",
            "10",
            "--server-pid=5",
            "--processes",
            "2",
        ]
        .iter()
        .map(OsString::from)
        .collect();
        let out = child_args(a.into_iter());
        let out: Vec<_> = out
            .iter()
            .map(|s| s.to_string_lossy().to_string())
            .collect();
        assert_eq!(out, vec!["echo", "-c", "10", "--processes", "2"]);
    }
}
