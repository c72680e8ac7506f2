//! Resource use from /proc: a process's CPU-seconds (`utime + stime` of /proc/PID/stat) and RSS
//! (`VmRSS` of /proc/PID/status), and a sampler that follows the server over a run.

use std::{
    io,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    thread::JoinHandle,
};

use crate::{
    clock::{self, now_ns},
    report::ServerStats,
};

fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

/// CPU-seconds (user + system, all threads) that `/proc/<pid>/stat` reports; `pid` may be
/// `"self"`.
pub fn cpu_seconds(pid: &str) -> io::Result<f64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    parse_stat_cpu(&s)
        .map(|ticks| ticks as f64 / clock_ticks())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "unexpected /proc stat"))
}

/// utime + stime in clock ticks from the text of a /proc/PID/stat file.
pub fn parse_stat_cpu(stat: &str) -> Option<u64> {
    // The command name may hold spaces and parentheses: fields start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut f = rest.split_whitespace();
    // After the name: state(3) ... utime is field 14, stime 15 (1-based over the whole line).
    let utime: u64 = f.nth(11)?.parse().ok()?;
    let stime: u64 = f.next()?.parse().ok()?;
    Some(utime + stime)
}

/// Resident set size in bytes from `/proc/<pid>/status`.
pub fn rss_bytes(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    parse_vmrss(&s)
}

/// `VmRSS` in bytes from the text of a /proc/PID/status file.
pub fn parse_vmrss(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Follows the server (if a PID is given) and this process over a window: CPU at both ends,
/// RSS every `interval`.
pub struct Sampler {
    pid: Option<u32>,
    start_ns: u64,
    interval_ns: u64,
    server_cpu0: Option<f64>,
    self_cpu0: f64,
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<Vec<Option<u64>>>>,
    rss_start: Option<u64>,
}

/// What a [`Sampler`] saw.
pub struct Sampled {
    /// Server figures, with a PID.
    pub server: Option<ServerStats>,
    /// RSS at the end of each interval (index k: end of window k).
    pub rss: Vec<Option<u64>>,
    /// CPU-seconds this process used in the window.
    pub self_cpu_s: f64,
    /// Length of the window (s).
    pub window_s: f64,
}

impl Sampler {
    /// Starts sampling now (call at the window's start).
    pub fn start(pid: Option<u32>, interval_ns: u64) -> Self {
        let start_ns = now_ns();
        let server_cpu0 = pid.and_then(|p| cpu_seconds(&p.to_string()).ok());
        let rss_start = pid.and_then(rss_bytes);
        let self_cpu0 = cpu_seconds("self").unwrap_or(0.0);
        let stop = Arc::new(AtomicBool::new(false));
        let handle = pid.map(|p| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut out = Vec::new();
                let mut k = 1u64;
                while !stop.load(Ordering::Relaxed) {
                    let at = start_ns + k * interval_ns.max(clock::MS);
                    while now_ns() < at && !stop.load(Ordering::Relaxed) {
                        clock::sleep_until(at.min(now_ns() + 20 * clock::MS));
                    }
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    out.push(rss_bytes(p));
                    k += 1;
                }
                out
            })
        });
        Sampler {
            pid,
            start_ns,
            interval_ns: interval_ns.max(clock::MS),
            server_cpu0,
            self_cpu0,
            stop,
            handle,
            rss_start,
        }
    }

    /// Ends the window now.
    pub fn finish(mut self) -> Sampled {
        let server_cpu1 = self.pid.and_then(|p| cpu_seconds(&p.to_string()).ok());
        let self_cpu1 = cpu_seconds("self").unwrap_or(0.0);
        let rss_end = self.pid.and_then(rss_bytes);
        let window_s = (now_ns() - self.start_ns) as f64 / 1e9;
        self.stop.store(true, Ordering::Relaxed);
        let mut rss = self
            .handle
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default();
        if self.pid.is_some() {
            // The sample due at the very end races with the stop: use the final reading.
            let due = (window_s * 1e9 / self.interval_ns as f64).ceil() as usize;
            while rss.len() < due {
                rss.push(rss_end);
            }
        }
        let server = self.pid.map(|pid| ServerStats {
            pid,
            cpu_s: match (self.server_cpu0, server_cpu1) {
                (Some(a), Some(b)) => b - a,
                _ => 0.0,
            },
            rss_bytes_start: self.rss_start,
            rss_bytes_end: rss_end,
            rss_bytes_max: rss
                .iter()
                .flatten()
                .copied()
                .chain(self.rss_start)
                .chain(rss_end)
                .max(),
        });
        Sampled {
            server,
            rss,
            self_cpu_s: self_cpu1 - self.self_cpu0,
            window_s,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_with_odd_name() {
        let stat = "1234 (my (odd) name) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 4 0 \
                    100 1000000 200 18446744073709551615";
        assert_eq!(parse_stat_cpu(stat), Some(300));
    }

    #[test]
    fn vmrss() {
        let st = "Name:\tx\nVmPeak:\t 10 kB\nVmRSS:\t    2048 kB\nThreads: 3\n";
        assert_eq!(parse_vmrss(st), Some(2048 * 1024));
        assert_eq!(parse_vmrss("Name: x\n"), None);
    }

    #[test]
    fn self_cpu_reads() {
        assert!(cpu_seconds("self").unwrap() >= 0.0);
        assert!(rss_bytes(std::process::id()).unwrap() > 0);
    }
}
