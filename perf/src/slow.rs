//! `slow`: fan-out with subscribers that cannot keep up. Of the `-s` subscribers, the first
//! `--slow` read slowly (`--slow-read-bps` bytes per second, in rations every
//! `--slow-read-every-ms`) and the next `--stalled` never read after subscribing; the rest read
//! at full speed.
//!
//! It shows what the server's slow-consumer policy does: the server's RSS over time (sampled
//! every 500 ms into the timeline), the gaps each slow or stalled subscriber saw (messages the
//! server dropped or conflated), how many were disconnected and with which close code (1008:
//! slow consumer), and the fast subscribers' latency per 500 ms window, which should stay flat.
//! With `--keys K`, publishes carry conflation keys, so the server may conflate instead of drop.
//!
//! A stalled subscriber's disconnect is seen as the TCP hang-up (EPOLLRDHUP), which comes after
//! the server's close timeout when the close frame cannot be written; at the end, slow and
//! stalled subscribers read out what they still hold to find close frames.

use clap::Args;
use serde::Serialize;

use crate::{
    clock::MS,
    fanout::{self, FanoutArgs, FanoutResults, SlowCfg},
    report::Report,
    run,
};

/// Flags of `slow`.
#[derive(Args, Serialize, Clone, Debug)]
pub struct SlowArgs {
    /// The `fanout` flags.
    #[command(flatten)]
    #[serde(flatten)]
    pub fanout: FanoutArgs,
    /// Subscribers (of -s) that read slowly.
    #[arg(long, default_value_t = 10, value_name = "K")]
    pub slow: usize,
    /// Bytes per second a slow subscriber reads.
    #[arg(long, default_value_t = 10_240)]
    pub slow_read_bps: u64,
    /// Milliseconds between a slow subscriber's reads.
    #[arg(long, default_value_t = 100)]
    pub slow_read_every_ms: u64,
    /// Subscribers (of -s, after the slow ones) that never read after subscribing.
    #[arg(long, default_value_t = 10, value_name = "K")]
    pub stalled: usize,
    /// SO_RCVBUF of slow and stalled subscribers in bytes [default: the kernel's].
    #[arg(long, value_name = "BYTES")]
    pub slow_rcvbuf: Option<usize>,
}

/// Runs `slow` in this process.
pub fn run(a: &SlowArgs) -> anyhow::Result<Report<FanoutResults>> {
    let every = a.slow_read_every_ms.max(1);
    let cfg = SlowCfg {
        slow: a.slow,
        stalled: a.stalled,
        read_bytes: ((a.slow_read_bps * every) / 1000).max(1) as usize,
        every_ns: every * MS,
        rcvbuf: a.slow_rcvbuf,
        window_ns: 500 * MS,
    };
    fanout::run_engine(&a.fanout, cfg, "slow", run::params(a))
}
