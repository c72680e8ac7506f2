//! Heap memory one idle server TLS session keeps, counted exactly: a counting allocator, a
//! rustls client and the server's own TLS config joined by in-memory buffers (no sockets),
//! the handshake, one application record each way, then the server session at rest.
//!
//! This pins what docs/tls.md reports per idle wss:// connection (on top of a plain one) and
//! fails if a change makes an idle session keep much more.

use std::{
    alloc::{GlobalAlloc, Layout, System},
    cell::Cell,
    io::{Read, Write},
    sync::{
        atomic::{AtomicIsize, Ordering::Relaxed},
        Arc,
    },
};

use corecast::server::tls::TlsSetup;
use rustls::{pki_types::ServerName, ClientConfig, ClientConnection, RootCertStore};

/// Counts the bytes allocated minus freed while [`server_side`] runs on this thread.
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

thread_local! {
    static ON: Cell<bool> = const { Cell::new(false) };
}

fn count(delta: isize) {
    if ON.with(Cell::get) {
        LIVE.fetch_add(delta, Relaxed);
    }
}

/// Run `f`, counting what it allocates and frees (the server's share of the work).
fn server_side<T>(f: impl FnOnce() -> T) -> T {
    ON.with(|on| on.set(true));
    let r = f();
    ON.with(|on| on.set(false));
    r
}

// SAFETY: forwards to the system allocator unchanged and only counts sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        count(l.size() as isize);
        System.alloc(l)
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        count(-(l.size() as isize));
        System.dealloc(p, l)
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        count(new as isize - l.size() as isize);
        System.realloc(p, l, new)
    }
}

#[global_allocator]
static A: Counting = Counting;

/// Move every pending record from `from` to `to`; `server_from` says which side the server
/// is (only its calls are counted). The transfer buffer is allocated outside the count.
fn pump(from: &mut impl WriteTls, to: &mut impl ReadTls, server_from: bool) {
    let mut buf = Vec::with_capacity(64 * 1024);
    let on = |server: bool, f: &mut dyn FnMut()| {
        if server {
            server_side(f)
        } else {
            f()
        }
    };
    while from.wants_write_() {
        on(server_from, &mut || from.write_tls_(&mut buf));
    }
    let mut slice = &buf[..];
    while !slice.is_empty() {
        on(!server_from, &mut || {
            to.read_tls_(&mut slice);
            to.process_();
        });
    }
}

trait WriteTls {
    fn wants_write_(&self) -> bool;
    fn write_tls_(&mut self, out: &mut Vec<u8>);
}
trait ReadTls {
    fn read_tls_(&mut self, rd: &mut &[u8]);
    fn process_(&mut self);
}

macro_rules! impl_io {
    ($t:ty) => {
        impl WriteTls for $t {
            fn wants_write_(&self) -> bool {
                self.wants_write()
            }
            fn write_tls_(&mut self, out: &mut Vec<u8>) {
                self.write_tls(out).unwrap();
            }
        }
        impl ReadTls for $t {
            fn read_tls_(&mut self, rd: &mut &[u8]) {
                self.read_tls(rd).unwrap();
            }
            fn process_(&mut self) {
                self.process_new_packets().unwrap();
            }
        }
    };
}
impl_io!(ClientConnection);
impl_io!(rustls::ServerConnection);

#[test]
fn an_idle_server_session_keeps_under_nine_kib() {
    let dir = tempfile::tempdir().unwrap();
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let (cert, key) = (dir.path().join("c.pem"), dir.path().join("k.pem"));
    std::fs::write(&cert, ck.cert.pem()).unwrap();
    std::fs::write(&key, ck.key_pair.serialize_pem()).unwrap();
    let setup = TlsSetup::new(&cert, &key).unwrap();
    let mut roots = RootCertStore::empty();
    roots.add(ck.cert.der().clone()).unwrap();
    let client_cfg = Arc::new(
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    );
    let server_cfg = setup.server_config();
    // Round 0 also fills one-time state (the session cache's table); later rounds are the
    // steady cost of one more connection.
    for round in 0..3 {
        let mut client = ClientConnection::new(
            client_cfg.clone(),
            ServerName::try_from("localhost").unwrap(),
        )
        .unwrap();
        let before = LIVE.load(Relaxed);
        let mut server = server_side(|| {
            let mut s = Box::new(rustls::ServerConnection::new(server_cfg.clone()).unwrap());
            s.set_buffer_limit(Some(32 * 1024));
            s
        });
        while client.is_handshaking() || server.is_handshaking() {
            pump(&mut client, &mut *server, false);
            pump(&mut *server, &mut client, true);
        }
        // One small message each way, as an upgrade and its answer would be.
        client
            .writer()
            .write_all(b"GET / HTTP/1.1\r\n\r\n")
            .unwrap();
        pump(&mut client, &mut *server, false);
        let mut plain = [0u8; 256];
        let n = server_side(|| server.reader().read(&mut plain).unwrap());
        assert_eq!(&plain[..n], b"GET / HTTP/1.1\r\n\r\n");
        server_side(|| server.writer().write_all(b"HTTP/1.1 101 \r\n\r\n").unwrap());
        pump(&mut *server, &mut client, true);
        // At rest: nothing buffered, waiting for the next record.
        let after_traffic = LIVE.load(Relaxed) - before;
        let _ = server_side(|| server.read_tls(&mut &[][..]));
        let kept = LIVE.load(Relaxed) - before;
        assert_eq!(
            after_traffic, kept,
            "the read buffer is kept, not grown, at rest"
        );
        println!(
            "round {round}: idle server session keeps {kept} heap bytes \
             (ServerConnection itself: {} bytes, {:?}, {:?})",
            std::mem::size_of::<rustls::ServerConnection>(),
            server.protocol_version(),
            server.negotiated_cipher_suite().map(|s| s.suite()),
        );
        if round > 0 {
            // 7,641 bytes with rustls 0.23.46 (1,168 the session, 4,096 its read buffer).
            assert!(kept < 9 * 1024, "an idle TLS session keeps {kept} bytes");
        }
        drop(server);
    }
}
