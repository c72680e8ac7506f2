//! `corecast-load`: a thread-per-core load generator for corecast and any other WebSocket
//! server. Scenarios (subcommands): `connect`, `echo`, `fanout`, `slow`, `storm`; see
//! `perf/README.md`.
//!
//! Every scenario runs for a fixed time, reports distributions (HDR histograms) rather than
//! averages, prints a table, and writes a JSON report with `--json FILE`. With `--server-pid` it
//! also reports the server's CPU-seconds and RSS over the measured window. `--processes P` runs
//! P copies and merges their results.

mod admin;
mod clock;
mod connect;
mod echo;
mod fanout;
mod multi;
mod net;
mod proc;
mod pubsub;
mod report;
mod run;
mod slow;
mod storm;
mod ws;

use std::{path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand};
use serde::Serialize;

use crate::report::{Report, Results};

#[derive(Parser)]
#[command(
    version,
    about = "Load generator for corecast and other WebSocket servers"
)]
struct Cli {
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Subcommand)]
enum Scenario {
    /// Open N connections (at a rate or as fast as possible), hold them, report handshake
    /// latency, failures and the server's RSS per connection.
    Connect(connect::ConnectArgs),
    /// Echo round trips over C connections, open loop at a rate or closed loop at max rate.
    Echo(echo::EchoArgs),
    /// corecast pub/sub: S subscribers over T topics, P publishers at a total rate.
    Fanout(fanout::FanoutArgs),
    /// Fan-out with slow and stalled subscribers: server RSS over time, gaps, disconnects.
    Slow(slow::SlowArgs),
    /// Hold C connections, drop them all at once, and time the reconnection storm.
    Storm(storm::StormArgs),
}

/// Flags every scenario takes.
#[derive(clap::Args, Serialize, Clone, Debug)]
pub struct Common {
    /// Server address, host:port.
    #[arg(long, default_value = "127.0.0.1:9001")]
    pub target: String,
    /// Request path of the WebSocket endpoint.
    #[arg(long, default_value = "/")]
    pub path: String,
    /// Seconds of measurement (for storm: seconds connections are held between drops).
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Seconds of load before measurement starts (echo, fanout, slow).
    #[arg(long, default_value_t = 1.0)]
    pub warmup: f64,
    /// Write the report as JSON to this file.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Server PID: report its CPU-seconds and RSS over the measured window (from /proc).
    #[arg(long, value_name = "PID")]
    pub server_pid: Option<u32>,
    /// corecast's admin address: report how the server's counters changed over the run
    /// (conflated, dropped, slow-consumer disconnects, ...), from `GET /stats`.
    #[arg(long, value_name = "HOST:PORT")]
    pub server_admin: Option<String>,
    /// Client threads per process [default: cores / processes].
    #[arg(long)]
    pub threads: Option<usize>,
    /// Spread connections round-robin over source addresses 127.0.0.2.. (loopback targets
    /// only; 0 = let the kernel choose), so more than ~28k connections fit.
    #[arg(long, default_value_t = 16, value_name = "K")]
    pub source_ips: u32,
    /// Run P generator processes, each with a share of the connections and rates, and merge
    /// their results (beyond one process's open-files limit).
    #[arg(long, default_value_t = 1, value_name = "P")]
    pub processes: usize,
    /// Seconds one connection attempt (TCP connect + upgrade) may take.
    #[arg(long, default_value_t = 10.0, value_name = "SECS")]
    pub connect_timeout: f64,
    /// Internal: this process is child number N of `--processes`.
    #[arg(long, hide = true)]
    pub child: Option<usize>,
}

fn execute<R: Results>(
    common: &Common,
    params: serde_json::Value,
    run: impl FnOnce() -> anyhow::Result<Report<R>>,
) -> anyhow::Result<()> {
    // Only the process that prints reads the server's counters (children leave it alone).
    let admin = common
        .server_admin
        .as_deref()
        .filter(|_| !common.is_child());
    let before = admin.map(admin::totals).transpose()?;
    let mut report = if common.processes > 1 && !common.is_child() {
        let mut r = multi::run_parent::<R>(common)?;
        r.params = params;
        r
    } else {
        run()?
    };
    if let (Some(addr), Some(before)) = (admin, before) {
        report.server_counters = Some(admin::changes(&before, &admin::totals(addr)?));
    }
    if common.is_child() {
        let path = common
            .json
            .as_deref()
            .ok_or_else(|| anyhow::anyhow!("a child process needs --json"))?;
        return report::write_json(path, &report);
    }
    report
        .results
        .finish(report.duration_s, report.server.as_ref());
    report::print(&report);
    if let Some(path) = &common.json {
        report::write_json(path, &report)?;
        println!("report written to {}", path.display());
    }
    Ok(())
}

fn main() -> ExitCode {
    clock::init();
    let limit = net::raise_fd_limit();
    let cli = Cli::parse();
    let res = match cli.scenario {
        Scenario::Connect(a) => {
            warn_fds(&a.common, a.connections, limit);
            execute(&a.common, run::params(&a), || connect::run(&a))
        }
        Scenario::Echo(a) => {
            warn_fds(&a.common, a.connections, limit);
            execute(&a.common, run::params(&a), || echo::run(&a))
        }
        Scenario::Fanout(a) => {
            warn_fds(&a.common, a.subscribers + a.publishers, limit);
            execute(&a.common, run::params(&a), || fanout::run(&a))
        }
        Scenario::Slow(a) => {
            warn_fds(
                &a.fanout.common,
                a.fanout.subscribers + a.fanout.publishers,
                limit,
            );
            execute(&a.fanout.common, run::params(&a), || slow::run(&a))
        }
        Scenario::Storm(a) => {
            warn_fds(&a.common, a.connections, limit);
            execute(&a.common, run::params(&a), || storm::run(&a))
        }
    };
    match res {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("corecast-load: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Warns when one process's share of the connections will not fit its open-files limit.
fn warn_fds(common: &Common, connections: usize, limit: u64) {
    if common.is_child() {
        return;
    }
    let per_proc = connections.div_ceil(common.processes.max(1)) as u64;
    if limit > 0 && per_proc + 64 > limit {
        eprintln!(
            "warning: {per_proc} connections per process but the open-files limit is {limit}; \
             use --processes {}",
            (connections as u64).div_ceil(limit.saturating_sub(64).max(1))
        );
    }
}
