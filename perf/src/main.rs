//! `corecast-load`: the load generator. Scenarios so far:
//! - `connect`: open N WebSocket connections from many 127.0.0.x source addresses, hold them
//!   idle, and report handshakes/s, failures and the server's RSS per connection (from /proc).

use std::{
    io::{Read, Write},
    net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream},
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use clap::{Parser, Subcommand};
use socket2::{Domain, Socket, Type};

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
    /// Open N connections, hold them idle, report handshake rate and server RSS per connection.
    Connect(ConnectArgs),
}

#[derive(clap::Args)]
struct ConnectArgs {
    /// Server address (host:port).
    #[arg(long, default_value = "127.0.0.1:9001")]
    target: SocketAddr,
    /// Connections to open.
    #[arg(long, short = 'n', default_value_t = 10_000)]
    connections: usize,
    /// Client threads.
    #[arg(long, default_value_t = 4)]
    threads: usize,
    /// Source addresses 127.0.0.2 .. 127.0.0.(1+N) used round-robin (loopback targets only).
    #[arg(long, default_value_t = 16)]
    source_ips: u8,
    /// Seconds to hold the connections before reading RSS and closing.
    #[arg(long, default_value_t = 3)]
    hold: u64,
    /// PID of the server, to read its RSS from /proc.
    #[arg(long)]
    server_pid: Option<u32>,
}

fn main() {
    match Cli::parse().scenario {
        Scenario::Connect(a) => connect(a),
    }
}

/// Resident set size of `pid` in bytes, from /proc/PID/status.
fn rss_bytes(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = s.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

fn open_one(target: SocketAddr, source: Option<Ipv4Addr>) -> std::io::Result<TcpStream> {
    let sock = Socket::new(Domain::for_address(target), Type::STREAM, None)?;
    if let Some(ip) = source {
        sock.bind(&SocketAddr::new(IpAddr::V4(ip), 0).into())?;
    }
    sock.connect(&target.into())?;
    let mut s: TcpStream = sock.into();
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        s,
        "GET / HTTP/1.1\r\nHost: {target}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )?;
    let mut head = [0u8; 512];
    let mut len = 0;
    while !head[..len].ends_with(b"\r\n\r\n") {
        let n = s.read(&mut head[len..])?;
        if n == 0 || len + n == head.len() {
            return Err(std::io::Error::other("bad handshake response"));
        }
        len += n;
    }
    if !head.starts_with(b"HTTP/1.1 101") {
        return Err(std::io::Error::other("handshake refused"));
    }
    Ok(s)
}

fn connect(a: ConnectArgs) {
    let loopback = a.target.ip().is_loopback();
    let rss_before = a.server_pid.and_then(rss_bytes);
    let failures = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let per_thread = a.connections.div_ceil(a.threads.max(1));
    let mut handles = Vec::new();
    for t in 0..a.threads.max(1) {
        let failures = failures.clone();
        let (target, n_ips) = (a.target, a.source_ips.max(1));
        let count = per_thread.min(a.connections.saturating_sub(t * per_thread));
        handles.push(std::thread::spawn(move || {
            let mut held = Vec::with_capacity(count);
            for i in 0..count {
                let src = loopback
                    .then(|| Ipv4Addr::new(127, 0, 0, 2 + ((t + i) % n_ips as usize) as u8));
                match open_one(target, src) {
                    Ok(s) => held.push(s),
                    Err(_) => {
                        failures.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            held
        }));
    }
    let held: Vec<Vec<TcpStream>> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let elapsed = start.elapsed();
    let open: usize = held.iter().map(Vec::len).sum();
    std::thread::sleep(Duration::from_secs(a.hold));
    let rss_after = a.server_pid.and_then(rss_bytes);
    println!("scenario      connect");
    println!("target        {}", a.target);
    println!(
        "connections   {open} open, {} failed",
        failures.load(Ordering::Relaxed)
    );
    println!(
        "ramp          {:.2} s, {:.0} handshakes/s",
        elapsed.as_secs_f64(),
        open as f64 / elapsed.as_secs_f64()
    );
    if let (Some(b), Some(af)) = (rss_before, rss_after) {
        println!(
            "server rss    {:.1} MiB before, {:.1} MiB held",
            b as f64 / 1048576.0,
            af as f64 / 1048576.0
        );
        if open > 0 {
            println!(
                "rss/conn      {:.0} bytes",
                (af.saturating_sub(b)) as f64 / open as f64
            );
        }
    }
    drop(held);
}
