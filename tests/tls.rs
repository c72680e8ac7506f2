//! wss:// end to end under each io driver: certificates generated at test time (rcgen), a
//! tungstenite client over rustls that verifies the server's certificate against the test CA
//! and the name `localhost`. Echo and pub/sub round trips, rejections (plaintext client, a
//! client that trusts another CA, ALPN without http/1.1), TLS 1.2, close_notify, the handshake
//! timeout, certificate reload in process and by SIGHUP on the real binary, and Python's
//! `ssl` + `websockets`.

mod common;

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::Arc,
    time::Duration,
};

use common::{drivers, read_some, start, start_echo, test_config, wait_until, Echo, READ_TIMEOUT};
use corecast::{config::Driver, pubsub::PubSubService, Config, Server};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use rustls::{
    pki_types::{CertificateDer, ServerName},
    ClientConfig, ClientConnection, RootCertStore, StreamOwned, SupportedProtocolVersion,
};
use tungstenite::Message;

type TlsStream = StreamOwned<ClientConnection, TcpStream>;
type WssClient = tungstenite::WebSocket<TlsStream>;

// ----- certificates -----

/// A test CA and a `localhost` leaf it signed, written as PEM files.
struct Pki {
    dir: tempfile::TempDir,
    ca: CertificateDer<'static>,
    leaf: CertificateDer<'static>,
}

impl Pki {
    fn new() -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let mut pki = Pki {
            dir,
            ca: CertificateDer::from(Vec::new()),
            leaf: CertificateDer::from(Vec::new()),
        };
        pki.issue();
        pki
    }

    /// A fresh CA and leaf, written over the files.
    fn issue(&mut self) {
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "corecast test CA");
        let ca_key = KeyPair::generate().unwrap();
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let leaf_key = KeyPair::generate().unwrap();
        let leaf = CertificateParams::new(vec!["localhost".to_string()])
            .unwrap()
            .signed_by(&leaf_key, &ca, &ca_key)
            .unwrap();
        std::fs::write(self.cert_path(), format!("{}{}", leaf.pem(), ca.pem())).unwrap();
        std::fs::write(self.key_path(), leaf_key.serialize_pem()).unwrap();
        self.ca = ca.der().clone();
        self.leaf = leaf.der().clone();
    }

    fn cert_path(&self) -> PathBuf {
        self.dir.path().join("cert.pem")
    }

    fn key_path(&self) -> PathBuf {
        self.dir.path().join("key.pem")
    }

    fn ca_pem_path(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    fn config(&self, driver: Driver) -> Config {
        Config {
            tls_cert: Some(self.cert_path()),
            tls_key: Some(self.key_path()),
            ..test_config(driver)
        }
    }
}

// ----- clients -----

fn client_config(
    roots: &[&CertificateDer<'static>],
    versions: &[&'static SupportedProtocolVersion],
    alpn: &[&[u8]],
) -> Arc<ClientConfig> {
    let mut store = RootCertStore::empty();
    for r in roots {
        store.add((*r).clone()).unwrap();
    }
    let mut cfg =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_protocol_versions(versions)
            .unwrap()
            .with_root_certificates(store)
            .with_no_client_auth();
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(cfg)
}

fn trusting(ca: &CertificateDer<'static>) -> Arc<ClientConfig> {
    client_config(&[ca], rustls::ALL_VERSIONS, &[b"http/1.1"])
}

/// TCP connect and complete the TLS handshake (verifying the certificate for `localhost`).
fn tls_connect(addr: SocketAddr, cfg: Arc<ClientConfig>) -> std::io::Result<TlsStream> {
    let tcp = TcpStream::connect(addr)?;
    tcp.set_read_timeout(Some(READ_TIMEOUT))?;
    tcp.set_nodelay(true)?;
    let name = ServerName::try_from("localhost").unwrap();
    let conn = ClientConnection::new(cfg, name).map_err(std::io::Error::other)?;
    let mut s = StreamOwned::new(conn, tcp);
    while s.conn.is_handshaking() {
        match s.conn.complete_io(&mut s.sock) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
            Ok(_) => {}
        }
    }
    Ok(s)
}

/// A verified wss:// client on `/`.
fn wss(addr: SocketAddr, cfg: Arc<ClientConfig>) -> WssClient {
    let s = tls_connect(addr, cfg).expect("TLS handshake");
    let url = format!("wss://localhost:{}/", addr.port());
    let (ws, resp) = tungstenite::client(url.as_str(), s)
        .unwrap_or_else(|e| panic!("websocket handshake with {url} failed: {e}"));
    assert_eq!(resp.status().as_u16(), 101);
    ws
}

fn read_data(ws: &mut WssClient) -> Message {
    loop {
        match ws.read() {
            Ok(m @ (Message::Text(_) | Message::Binary(_))) => return m,
            Ok(Message::Ping(_) | Message::Pong(_)) => continue,
            Err(tungstenite::Error::Io(e)) if e.kind() == std::io::ErrorKind::Interrupted => {
                continue
            }
            other => panic!("expected a data message, got {other:?}"),
        }
    }
}

fn echo_text(ws: &mut WssClient, text: &str) {
    ws.send(Message::text(text)).unwrap();
    match read_data(ws) {
        Message::Text(t) => assert_eq!(t.as_str(), text),
        other => panic!("expected text, got {other:?}"),
    }
}

/// The end-entity certificate the server presented on this connection.
fn peer_leaf(ws: &WssClient) -> CertificateDer<'static> {
    ws.get_ref().conn.peer_certificates().expect("certificates")[0].clone()
}

// ----- tests -----

#[test]
fn wss_echo_round_trips_with_a_verified_certificate() {
    let pki = Pki::new();
    for driver in drivers() {
        let srv = start_echo(pki.config(driver));
        let mut ws = wss(srv.addr, trusting(&pki.ca));
        assert_eq!(peer_leaf(&ws), pki.leaf, "{driver:?}");
        for text in ["hello", "", "ünïcødé ✓"] {
            echo_text(&mut ws, text);
        }
        // Larger than one TLS record (16 KiB) and than one rustls read (4 KiB).
        let big: Vec<u8> = (0..=255u8).cycle().take(300_000).collect();
        ws.send(Message::binary(big.clone())).unwrap();
        match read_data(&mut ws) {
            Message::Binary(b) => assert_eq!(&b[..], &big[..], "{driver:?}"),
            other => panic!("{driver:?}: {other:?}"),
        }
        // Many messages in flight come back in order.
        for i in 0..300 {
            ws.write(Message::text(format!("m{i}"))).unwrap();
        }
        ws.flush().unwrap();
        for i in 0..300 {
            match read_data(&mut ws) {
                Message::Text(t) => assert_eq!(t.as_str(), format!("m{i}"), "{driver:?}"),
                other => panic!("{driver:?}: {other:?}"),
            }
        }
        let st = srv.stats();
        assert_eq!((st.opened, st.rejected_tls), (1, 0), "{driver:?}: {st:?}");
        ws.close(None).unwrap();
    }
}

#[test]
fn server_sends_close_notify_after_the_close_handshake() {
    let pki = Pki::new();
    for driver in drivers() {
        let srv = start_echo(pki.config(driver));
        let mut ws = wss(srv.addr, trusting(&pki.ca));
        echo_text(&mut ws, "before close");
        ws.close(None).unwrap();
        loop {
            match ws.read() {
                Ok(_) => continue,
                Err(tungstenite::Error::ConnectionClosed) => break,
                Err(tungstenite::Error::Io(e)) if e.kind() == std::io::ErrorKind::Interrupted => {
                    continue
                }
                Err(e) => panic!("{driver:?}: {e}"),
            }
        }
        let s = ws.get_mut();
        let mut buf = [0u8; 16];
        let n = loop {
            match s.read(&mut buf) {
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                r => break r,
            }
        };
        // rustls reads Ok(0) only after a close_notify; a bare TCP close is UnexpectedEof.
        assert_eq!(n.unwrap(), 0, "{driver:?}");
    }
}

#[test]
fn plaintext_client_on_the_tls_port_is_rejected() {
    let pki = Pki::new();
    for driver in drivers() {
        let srv = start_echo(pki.config(driver));
        let mut s = TcpStream::connect(srv.addr).unwrap();
        s.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
        let req = format!(
            "GET / HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
            srv.addr
        );
        s.write_all(req.as_bytes()).unwrap();
        // Whatever comes back (a TLS alert record at most) is not an HTTP answer, and the
        // server closes.
        let mut got = Vec::new();
        let mut buf = [0u8; 512];
        loop {
            match read_some(&mut s, &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
        assert!(!got.starts_with(b"HTTP"), "{driver:?}: {got:?}");
        if let Some(&first) = got.first() {
            assert_eq!(first, 0x15, "{driver:?}: a TLS alert record, got {got:?}");
        }
        assert!(
            wait_until(Duration::from_secs(5), || srv.stats().rejected_tls == 1),
            "{driver:?}: {:?}",
            srv.stats()
        );
        assert_eq!(srv.stats().opened, 0, "{driver:?}");
        // The allowed path still works on the same server.
        let mut ws = wss(srv.addr, trusting(&pki.ca));
        echo_text(&mut ws, "still fine");
        assert_eq!(srv.stats().rejected_tls, 1, "{driver:?}");
    }
}

#[test]
fn client_trusting_another_ca_fails_and_is_counted() {
    let pki = Pki::new();
    let other = Pki::new();
    for driver in drivers() {
        let srv = start_echo(pki.config(driver));
        let err = tls_connect(srv.addr, trusting(&other.ca)).err();
        let err = err.expect("the handshake must fail");
        assert!(
            err.to_string().to_lowercase().contains("certificate"),
            "{driver:?}: {err}"
        );
        // The client's alert ends the session on the server before any upgrade.
        assert!(
            wait_until(Duration::from_secs(5), || srv.stats().rejected_tls == 1),
            "{driver:?}: {:?}",
            srv.stats()
        );
        // A client with the right CA gets through.
        let mut ws = wss(srv.addr, trusting(&pki.ca));
        echo_text(&mut ws, "trusted");
    }
}

#[test]
fn tls12_only_client_works() {
    let pki = Pki::new();
    for driver in drivers() {
        let srv = start_echo(pki.config(driver));
        let cfg = client_config(&[&pki.ca], &[&rustls::version::TLS12], &[b"http/1.1"]);
        let mut ws = wss(srv.addr, cfg);
        assert_eq!(
            ws.get_ref().conn.protocol_version(),
            Some(rustls::ProtocolVersion::TLSv1_2),
            "{driver:?}"
        );
        echo_text(&mut ws, "over TLS 1.2");
        let ws13 = wss(srv.addr, trusting(&pki.ca));
        assert_eq!(
            ws13.get_ref().conn.protocol_version(),
            Some(rustls::ProtocolVersion::TLSv1_3),
            "{driver:?}"
        );
    }
}

#[test]
fn alpn_selects_http11_and_refuses_h2_only() {
    let pki = Pki::new();
    for driver in drivers() {
        let srv = start_echo(pki.config(driver));
        let cfg = client_config(&[&pki.ca], rustls::ALL_VERSIONS, &[b"h2", b"http/1.1"]);
        let mut ws = wss(srv.addr, cfg);
        assert_eq!(
            ws.get_ref().conn.alpn_protocol(),
            Some(&b"http/1.1"[..]),
            "{driver:?}"
        );
        echo_text(&mut ws, "alpn");
        // Without ALPN the upgrade works too.
        let mut plain = wss(
            srv.addr,
            client_config(&[&pki.ca], rustls::ALL_VERSIONS, &[]),
        );
        assert_eq!(plain.get_ref().conn.alpn_protocol(), None, "{driver:?}");
        echo_text(&mut plain, "no alpn");
        // A client that can only speak h2 is refused in the TLS handshake.
        let h2 = client_config(&[&pki.ca], rustls::ALL_VERSIONS, &[b"h2"]);
        assert!(tls_connect(srv.addr, h2).is_err(), "{driver:?}");
        assert!(
            wait_until(Duration::from_secs(5), || srv.stats().rejected_tls == 1),
            "{driver:?}: {:?}",
            srv.stats()
        );
    }
}

#[test]
fn silent_tcp_client_hits_the_handshake_timeout() {
    let pki = Pki::new();
    for driver in drivers() {
        let cfg = Config {
            handshake_timeout: Duration::from_millis(300),
            ..pki.config(driver)
        };
        let srv = start_echo(cfg);
        let mut s = TcpStream::connect(srv.addr).unwrap();
        s.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
        let mut buf = [0u8; 64];
        // The server closes without a byte: no TLS session was ever started.
        assert!(
            matches!(read_some(&mut s, &mut buf), Ok(0) | Err(_)),
            "{driver:?}"
        );
        assert!(
            wait_until(Duration::from_secs(5), || srv.stats().handshake_timeouts
                == 1),
            "{driver:?}: {:?}",
            srv.stats()
        );
        // A client that completes both handshakes in time is served.
        let mut ws = wss(srv.addr, trusting(&pki.ca));
        echo_text(&mut ws, "in time");
    }
}

#[test]
fn reload_swaps_the_certificate_for_new_connections_only() {
    let mut pki = Pki::new();
    for driver in drivers() {
        let srv = start_echo(pki.config(driver));
        let old_ca = pki.ca.clone();
        let old_leaf = pki.leaf.clone();
        let mut before = wss(srv.addr, trusting(&old_ca));
        pki.issue();
        let server = srv.server.as_ref().unwrap();
        assert!(server.tls_enabled());
        server.reload_tls().expect("reload");
        let both = client_config(&[&old_ca, &pki.ca], rustls::ALL_VERSIONS, &[b"http/1.1"]);
        let mut after = wss(srv.addr, both);
        assert_eq!(
            peer_leaf(&after),
            pki.leaf,
            "{driver:?}: new handshakes get the new cert"
        );
        assert_ne!(pki.leaf, old_leaf);
        echo_text(&mut after, "new cert");
        // The connection opened before the reload goes on, on its old session.
        assert_eq!(peer_leaf(&before), old_leaf, "{driver:?}");
        echo_text(&mut before, "old session still works");
        // A client that trusts only the old CA now fails.
        assert!(
            tls_connect(srv.addr, trusting(&old_ca)).is_err(),
            "{driver:?}"
        );
    }
}

#[test]
fn bad_reload_keeps_the_old_certificate() {
    let pki = Pki::new();
    for driver in drivers() {
        let srv = start_echo(pki.config(driver));
        let good = std::fs::read(pki.cert_path()).unwrap();
        std::fs::write(
            pki.cert_path(),
            "-----BEGIN CERTIFICATE-----\nnot base64!\n",
        )
        .unwrap();
        let server = srv.server.as_ref().unwrap();
        let err = server.reload_tls().unwrap_err();
        assert!(err.to_string().contains("cert.pem"), "{err}");
        let mut ws = wss(srv.addr, trusting(&pki.ca));
        assert_eq!(peer_leaf(&ws), pki.leaf, "{driver:?}");
        echo_text(&mut ws, "old cert still served");
        std::fs::write(pki.cert_path(), good).unwrap();
    }
}

#[test]
fn plain_server_has_nothing_to_reload() {
    let srv = start_echo(test_config(Driver::Epoll));
    let server = srv.server.as_ref().unwrap();
    assert!(!server.tls_enabled());
    assert!(matches!(
        server.reload_tls(),
        Err(corecast::server::tls::TlsError::NotConfigured)
    ));
}

#[test]
fn start_fails_with_a_typed_error_for_a_bad_certificate() {
    let pki = Pki::new();
    let missing = Config {
        tls_cert: Some(pki.dir.path().join("missing.pem")),
        ..pki.config(Driver::Epoll)
    };
    let err = Server::builder(missing)
        .handler(|_| Echo)
        .start()
        .err()
        .expect("start must fail");
    assert!(
        matches!(err, corecast::server::ServerError::Tls(_)),
        "{err:?}"
    );
    assert!(err.to_string().contains("missing.pem"), "{err}");
}

#[test]
fn wss_pubsub_round_trip() {
    let pki = Pki::new();
    for driver in drivers() {
        let mut cfg = pki.config(driver);
        PubSubService::configure(&mut cfg);
        let svc = PubSubService::new(&cfg);
        let srv = start(svc.install(Server::builder(cfg)));
        let mut sub = wss(srv.addr, trusting(&pki.ca));
        let mut publ = wss(srv.addr, trusting(&pki.ca));
        sub.send(Message::text(
            r#"{"op":"sub","topic":"prices.BTC","id":"s"}"#,
        ))
        .unwrap();
        let subbed = read_json(&mut sub);
        assert_eq!(subbed["op"], "subbed", "{driver:?}: {subbed}");
        publ.send(Message::text(
            r#"{"op":"pub","topic":"prices.BTC","data":{"px":1}}"#,
        ))
        .unwrap();
        let msg = read_json(&mut sub);
        assert_eq!(msg["op"], "msg", "{driver:?}: {msg}");
        assert_eq!(msg["data"]["px"], 1, "{driver:?}: {msg}");
    }
}

fn read_json(ws: &mut WssClient) -> serde_json::Value {
    match read_data(ws) {
        Message::Text(t) => serde_json::from_str(t.as_str()).unwrap(),
        other => panic!("expected text, got {other:?}"),
    }
}

// ----- the real binary and SIGHUP -----

/// The binary's log lines (JSON), collected by a thread that keeps its stderr drained.
type Log = Arc<std::sync::Mutex<Vec<String>>>;

fn collect_log(child: &mut Child) -> Log {
    use std::io::BufRead;
    let log: Log = Arc::default();
    let stderr = child.stderr.take().expect("piped stderr");
    let sink = log.clone();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            sink.lock().unwrap().push(line);
        }
    });
    log
}

/// The address in the binary's "corecast listening" line (it listens on port 0, so no other
/// test's server can share the port).
fn listening_addr(log: &Log) -> Option<SocketAddr> {
    let lines = log.lock().unwrap();
    let line = lines.iter().find(|l| l.contains("corecast listening"))?;
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    v["addr"].as_str()?.parse().ok()
}

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn signal(child: &Child, sig: nix::sys::signal::Signal) {
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    nix::sys::signal::kill(pid, sig).unwrap();
}

#[test]
fn sighup_reloads_the_certificate_of_the_real_binary() {
    let mut pki = Pki::new();
    let mut child = Command::new(env!("CARGO_BIN_EXE_corecast"))
        .args(["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
        .args(["--log-format", "json", "--log-filter", "info"])
        .args([
            "--workers",
            "2",
            "--pin-workers",
            "false",
            "--driver",
            "epoll",
        ])
        .arg("--tls-cert")
        .arg(pki.cert_path())
        .arg("--tls-key")
        .arg(pki.key_path())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start corecast");
    let log = collect_log(&mut child);
    let proc = Proc(child);
    assert!(
        wait_until(Duration::from_secs(20), || listening_addr(&log).is_some()),
        "corecast did not start: {:?}",
        log.lock().unwrap()
    );
    let addr = listening_addr(&log).unwrap();
    let old_ca = pki.ca.clone();
    let old_leaf = pki.leaf.clone();
    let mut before = wss(addr, trusting(&old_ca));
    assert_eq!(peer_leaf(&before), old_leaf);
    pki.issue();
    signal(&proc.0, nix::sys::signal::Signal::SIGHUP);
    // The reload happens on the signal thread; wait until a new handshake shows it. Each try
    // gets a fresh client config: a shared one would keep the session ticket of a try that
    // raced ahead of the reload, and every later try would resume that session, whose
    // certificate is the old one (resumption never sends the certificate again).
    assert!(
        wait_until(Duration::from_secs(10), || {
            let both = client_config(&[&old_ca, &pki.ca], rustls::ALL_VERSIONS, &[b"http/1.1"]);
            let ws = wss(addr, both);
            peer_leaf(&ws) == pki.leaf
        }),
        "a new connection never saw the reloaded certificate: {:?}",
        log.lock().unwrap()
    );
    assert!(
        log.lock()
            .unwrap()
            .iter()
            .any(|l| l.contains("TLS certificate reloaded")),
        "{:?}",
        log.lock().unwrap()
    );
    before
        .send(Message::text(r#"{"op":"sub","topic":"t","id":"1"}"#))
        .unwrap();
    assert_eq!(read_json(&mut before)["op"], "subbed");
    // SIGHUP did not stop the server; SIGTERM still drains it.
    let mut proc = proc;
    signal(&proc.0, nix::sys::signal::Signal::SIGTERM);
    let status = proc.0.wait().unwrap();
    assert!(status.success(), "{status}");
}

// ----- Python's ssl + websockets -----

#[test]
fn python_ssl_websockets_client_round_trips() {
    let probe = Command::new("python3")
        .args(["-c", "import ssl, websockets.sync.client"])
        .output();
    if !matches!(probe, Ok(ref o) if o.status.success()) {
        if std::env::var_os("CI").is_some() {
            panic!("CI is set but python3 cannot import ssl and websockets");
        }
        eprintln!("SKIPPED python_ssl: python3 cannot import websockets.sync.client");
        return;
    }
    let pki = Pki::new();
    write_ca_pem(&pki);
    let srv = start_echo(pki.config(Driver::Epoll));
    let script = r#"
import ssl, sys
from websockets.sync.client import connect
ctx = ssl.create_default_context(cafile=sys.argv[2])
ctx.set_alpn_protocols(["http/1.1"])
with connect(sys.argv[1], ssl=ctx, server_hostname="localhost") as ws:
    ws.send("hello over wss")
    assert ws.recv(timeout=10) == "hello over wss"
    print("alpn", ws.socket.selected_alpn_protocol(), ws.socket.version())
print("ok")
"#;
    let url = format!("wss://127.0.0.1:{}/", srv.addr.port());
    let out = Command::new("python3")
        .args(["-c", script, &url])
        .arg(pki.ca_pem_path())
        .output()
        .expect("run python3");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("ok"),
        "{}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("alpn http/1.1 TLSv1.3"), "{stdout}");
    assert_eq!(srv.stats().opened, 1);
}

fn write_ca_pem(pki: &Pki) {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(pki.ca.as_ref());
    let mut pem = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in b64.as_bytes().chunks(64) {
        pem.push_str(std::str::from_utf8(line).unwrap());
        pem.push('\n');
    }
    pem.push_str("-----END CERTIFICATE-----\n");
    std::fs::write(pki.ca_pem_path(), pem).unwrap();
}
