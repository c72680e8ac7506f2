//! `corecast-idle`: open N idle WebSocket connections, plain (`ws://`) or TLS (`wss://`), hold
//! them, and report the server's resident memory per connection (from `/proc/PID/status`).
//!
//! It exists to measure what one idle wss:// connection costs the server next to a ws:// one.
//! Connections are opened with blocking sockets by a few threads (an idle measurement needs
//! no event loop); TLS uses rustls with the `ring` provider and verifies the server's
//! certificate against `--ca` (or not at all with `--insecure`).
//!
//! ```sh
//! corecast-idle --target 127.0.0.1:9001 -n 10000 --server-pid $PID                # ws://
//! corecast-idle --target 127.0.0.1:9443 -n 10000 --server-pid $PID --tls --ca ca.pem
//! ```

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    path::PathBuf,
    process::ExitCode,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use clap::Parser;
use rustls::{
    client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
    crypto::CryptoProvider,
    pki_types::{pem::PemObject, CertificateDer, ServerName, UnixTime},
    ClientConfig, ClientConnection, DigitallySignedStruct, RootCertStore, SignatureScheme,
    StreamOwned,
};

/// Flags.
#[derive(Parser, Debug)]
#[command(
    name = "corecast-idle",
    about = "Server memory per idle ws:// or wss:// connection"
)]
struct Args {
    /// The server, HOST:PORT.
    #[arg(long, default_value = "127.0.0.1:9001")]
    target: SocketAddr,
    /// Connections to open.
    #[arg(long, short = 'n', default_value_t = 5000)]
    connections: usize,
    /// Client threads opening connections.
    #[arg(long, default_value_t = 4)]
    threads: usize,
    /// Speak TLS (wss://).
    #[arg(long)]
    tls: bool,
    /// PEM file of the CA (or self-signed certificate) to trust.
    #[arg(long, value_name = "FILE")]
    ca: Option<PathBuf>,
    /// Accept any server certificate (measurements only).
    #[arg(long)]
    insecure: bool,
    /// Name to verify the certificate against (SNI).
    #[arg(long, default_value = "localhost")]
    server_name: String,
    /// Server process to read VmRSS from.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Seconds to hold the connections after the last one opened (RSS is read at the end).
    #[arg(long, default_value_t = 2)]
    hold: u64,
}

/// A held connection: only kept alive, never read.
enum Held {
    Plain(#[allow(dead_code)] TcpStream),
    Tls(#[allow(dead_code)] Box<StreamOwned<ClientConnection, TcpStream>>),
}

fn rss(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = s.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Accepts every certificate; `--insecure` only.
#[derive(Debug)]
struct AnyCert(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCert {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

fn tls_config(a: &Args) -> anyhow::Result<Arc<ClientConfig>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?;
    let mut cfg = if a.insecure {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCert(provider)))
            .with_no_client_auth()
    } else {
        let Some(ca) = &a.ca else {
            anyhow::bail!("--tls needs --ca FILE or --insecure");
        };
        let mut roots = RootCertStore::empty();
        for c in CertificateDer::pem_file_iter(ca)? {
            roots.add(c?)?;
        }
        builder.with_root_certificates(roots).with_no_client_auth()
    };
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

/// Send the upgrade request and read the response head; `Ok(())` on 101.
fn upgrade(s: &mut impl ReadWrite, host: &str) -> anyhow::Result<()> {
    let req = format!(
        "GET / HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    s.write_all(req.as_bytes())?;
    s.flush()?;
    let mut head = Vec::with_capacity(256);
    let mut buf = [0u8; 512];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = s.read(&mut buf)?;
        anyhow::ensure!(n > 0, "closed during the upgrade");
        head.extend_from_slice(&buf[..n]);
        anyhow::ensure!(head.len() < 16 * 1024, "response head too long");
    }
    anyhow::ensure!(
        head.starts_with(b"HTTP/1.1 101"),
        "not upgraded: {}",
        String::from_utf8_lossy(&head[..head.len().min(40)])
    );
    Ok(())
}

trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}

fn open(a: &Args, tls: Option<&Arc<ClientConfig>>) -> anyhow::Result<Held> {
    let mut tcp = TcpStream::connect_timeout(&a.target, Duration::from_secs(10))?;
    tcp.set_read_timeout(Some(Duration::from_secs(10)))?;
    let host = a.target.to_string();
    match tls {
        None => {
            upgrade(&mut tcp, &host)?;
            Ok(Held::Plain(tcp))
        }
        Some(cfg) => {
            let name = ServerName::try_from(a.server_name.clone())?;
            let conn = ClientConnection::new(cfg.clone(), name)?;
            let mut s = StreamOwned::new(conn, tcp);
            upgrade(&mut s, &host)?;
            Ok(Held::Tls(Box::new(s)))
        }
    }
}

fn main() -> ExitCode {
    let a = Args::parse();
    match run(&a) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("corecast-idle: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(a: &Args) -> anyhow::Result<()> {
    let tls = if a.tls { Some(tls_config(a)?) } else { None };
    let before = a.server_pid.and_then(rss);
    let started = Instant::now();
    let failed = AtomicUsize::new(0);
    let threads = a.threads.max(1);
    let held: Vec<Held> = std::thread::scope(|sc| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let tls = tls.as_ref();
                let failed = &failed;
                sc.spawn(move || {
                    let mine = a.connections / threads + usize::from(t < a.connections % threads);
                    let mut out = Vec::with_capacity(mine);
                    for _ in 0..mine {
                        match open(a, tls) {
                            Ok(h) => out.push(h),
                            Err(e) => {
                                if failed.fetch_add(1, Ordering::Relaxed) < 3 {
                                    eprintln!("connection failed: {e:#}");
                                }
                            }
                        }
                    }
                    out
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_default())
            .collect()
    });
    let ramp = started.elapsed();
    std::thread::sleep(Duration::from_secs(a.hold));
    let after = a.server_pid.and_then(rss);
    let open = held.len();
    println!(
        "scheme={} open={} failed={} ramp_s={:.2} handshakes_per_s={:.0}",
        if a.tls { "wss" } else { "ws" },
        open,
        failed.load(Ordering::Relaxed),
        ramp.as_secs_f64(),
        open as f64 / ramp.as_secs_f64().max(1e-9),
    );
    if let (Some(b), Some(e)) = (before, after) {
        let per = e.saturating_sub(b) as f64 / open.max(1) as f64;
        println!(
            "server_rss_before={b} server_rss_after={e} rss_growth={} rss_per_conn_bytes={per:.0}",
            e.saturating_sub(b)
        );
    }
    drop(held);
    Ok(())
}
