//! TLS for the WebSocket listener (wss://), on rustls with the `ring` provider.
//!
//! This module owns three things: loading a PEM certificate chain and key into a rustls
//! `ServerConfig` (TLS 1.3 and 1.2, ALPN `http/1.1`), the certificate that new handshakes use
//! and its swap on reload ([`CertStore`]), and the per-connection state machine
//! ([`TlsConn`]) that sits between the socket and the worker's plaintext processing.
//!
//! The worker's socket I/O is readiness-based on raw fds, so rustls is driven the same way:
//! on readable, ciphertext goes from the socket straight into rustls (`read_tls`), records are
//! decrypted (`process_new_packets`) and the plaintext is handed out into the worker's shared
//! read buffer; on flush, queued plaintext moves into rustls (`write_vectored`) and TLS records
//! go to the socket (`write_tls`), stopping at `WouldBlock`. Nothing here waits or spawns;
//! the worker owns the wait. Plain (ws://) connections never touch this module.

use std::{
    fmt,
    io::{self, IoSlice, Read, Write},
    os::fd::RawFd,
    path::{Path, PathBuf},
    sync::{Arc, RwLock},
};

use rustls::{
    crypto::CryptoProvider,
    pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer},
    server::{ClientHello, ResolvesServerCert, ServerSessionMemoryCache},
    sign::CertifiedKey,
    ServerConfig, ServerConnection,
};

use super::io as sockio;
use crate::queue::SendQueue;

/// The ALPN protocol the listener offers: WebSocket upgrades are HTTP/1.1.
pub const ALPN_HTTP11: &[u8] = b"http/1.1";
/// TLS sessions kept per process for resumption (stateful; a fixed cost, not per connection).
const SESSION_CACHE_ENTRIES: usize = 1024;
/// Most ciphertext rustls holds for one connection before `write_vectored` takes no more
/// plaintext (the rest waits in the connection's send queue, under its bound).
const TLS_BUFFER_LIMIT: usize = 32 * 1024;
/// Slices handed to one `write_vectored` into rustls.
const MAX_IOV: usize = 64;

/// Why a certificate or key could not be loaded (at start or on reload).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// Only one of `tls_cert` and `tls_key` was given.
    #[error("tls_cert and tls_key must be set together (got only {0})")]
    Incomplete(&'static str),
    /// The certificate or key file could not be read.
    #[error("cannot read TLS {what} file {path}: {source}")]
    Read {
        /// "certificate" or "key".
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// The file is not valid PEM, or holds no item of the expected kind.
    #[error("invalid TLS {what} file {path}: {message}")]
    Pem {
        /// "certificate" or "key".
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The key is not the private half of the certificate's public key.
    #[error("TLS key {key} does not belong to the certificate {cert}")]
    KeyMismatch {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
    },
    /// rustls refused the key or the certificate (an unsupported key type, a malformed
    /// certificate).
    #[error("unusable TLS certificate/key ({cert} / {key}): {source}")]
    Rejected {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// rustls's reason.
        source: rustls::Error,
    },
    /// A reload was asked of a server that does not speak TLS.
    #[error("TLS is not configured (set tls_cert and tls_key)")]
    NotConfigured,
}

/// The provider every TLS object here uses: rustls's `ring` backend.
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Read a PEM certificate chain (leaf first) and a PEM private key (PKCS#8, PKCS#1 or SEC1),
/// and check that they belong together.
pub fn load_certified_key(cert: &Path, key: &Path) -> Result<CertifiedKey, TlsError> {
    let read = |what, path: &Path| {
        std::fs::read(path).map_err(|source| TlsError::Read {
            what,
            path: path.to_path_buf(),
            source,
        })
    };
    let pem_err = |what, path: &Path, message: String| TlsError::Pem {
        what,
        path: path.to_path_buf(),
        message,
    };
    let cert_pem = read("certificate", cert)?;
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_err("certificate", cert, e.to_string()))?;
    if chain.is_empty() {
        return Err(pem_err(
            "certificate",
            cert,
            "no CERTIFICATE section found".into(),
        ));
    }
    let key_pem = read("key", key)?;
    let der = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| {
        let message = match e {
            rustls::pki_types::pem::Error::NoItemsFound => {
                "no PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY section found".to_string()
            }
            other => other.to_string(),
        };
        pem_err("key", key, message)
    })?;
    CertifiedKey::from_der(chain, der, &provider()).map_err(|source| match source {
        rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch) => {
            TlsError::KeyMismatch {
                cert: cert.to_path_buf(),
                key: key.to_path_buf(),
            }
        }
        source => TlsError::Rejected {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
            source,
        },
    })
}

/// The certificate new handshakes get; swapped whole on reload, so a handshake sees either
/// the old pair or the new one, never a mix. Connections already open keep their session.
pub struct CertStore {
    cert_path: PathBuf,
    key_path: PathBuf,
    current: RwLock<Arc<CertifiedKey>>,
}

impl fmt::Debug for CertStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertStore")
            .field("cert_path", &self.cert_path)
            .field("key_path", &self.key_path)
            .finish_non_exhaustive()
    }
}

impl CertStore {
    /// Load the pair from `cert_path` and `key_path`.
    pub fn load(cert_path: &Path, key_path: &Path) -> Result<CertStore, TlsError> {
        let ck = load_certified_key(cert_path, key_path)?;
        Ok(CertStore {
            cert_path: cert_path.to_path_buf(),
            key_path: key_path.to_path_buf(),
            current: RwLock::new(Arc::new(ck)),
        })
    }

    /// Read the files again and use the new pair for every later handshake. On error the
    /// current pair stays in use.
    pub fn reload(&self) -> Result<(), TlsError> {
        let ck = Arc::new(load_certified_key(&self.cert_path, &self.key_path)?);
        match self.current.write() {
            Ok(mut g) => *g = ck,
            Err(poisoned) => *poisoned.into_inner() = ck,
        }
        Ok(())
    }

    /// The pair in use now.
    pub fn current(&self) -> Arc<CertifiedKey> {
        match self.current.read() {
            Ok(g) => g.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// The certificate file.
    pub fn cert_path(&self) -> &Path {
        &self.cert_path
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

/// The listener's TLS setup: the rustls config shared by every worker, and the certificate
/// store behind it (for reload).
#[derive(Debug, Clone)]
pub struct TlsSetup {
    /// The server config each new connection starts from.
    pub(crate) config: Arc<ServerConfig>,
    /// The certificate in use, swappable.
    pub(crate) certs: Arc<CertStore>,
}

impl TlsSetup {
    /// Load the pair and build the config: TLS 1.3 and 1.2 with rustls's default (AEAD-only,
    /// forward-secret) cipher suites, ALPN `http/1.1`, no client certificates.
    pub fn new(cert_path: &Path, key_path: &Path) -> Result<TlsSetup, TlsError> {
        let certs = Arc::new(CertStore::load(cert_path, key_path)?);
        let mut config = ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|source| TlsError::Rejected {
                cert: cert_path.to_path_buf(),
                key: key_path.to_path_buf(),
                source,
            })?
            .with_no_client_auth()
            .with_cert_resolver(certs.clone());
        config.alpn_protocols = vec![ALPN_HTTP11.to_vec()];
        config.session_storage = ServerSessionMemoryCache::new(SESSION_CACHE_ENTRIES);
        // Upgrades are client-first: a server never needs 0-RTT data.
        config.max_early_data_size = 0;
        Ok(TlsSetup {
            config: Arc::new(config),
            certs,
        })
    }

    /// From the optional settings: `None` when neither is set, an error when only one is.
    pub fn from_paths(
        cert: Option<&Path>,
        key: Option<&Path>,
    ) -> Result<Option<TlsSetup>, TlsError> {
        match (cert, key) {
            (None, None) => Ok(None),
            (Some(c), Some(k)) => TlsSetup::new(c, k).map(Some),
            (Some(_), None) => Err(TlsError::Incomplete("tls_cert")),
            (None, Some(_)) => Err(TlsError::Incomplete("tls_key")),
        }
    }

    /// The certificate store (reload, the current pair).
    pub fn certs(&self) -> &Arc<CertStore> {
        &self.certs
    }

    /// The rustls config every connection starts from.
    pub fn server_config(&self) -> Arc<ServerConfig> {
        self.config.clone()
    }
}

/// What one [`TlsConn::read`] produced.
#[derive(Debug)]
pub(crate) enum TlsRead {
    /// This many plaintext bytes were written to the front of the output buffer.
    Data(usize),
    /// The socket has nothing more now.
    Blocked,
    /// The peer closed (close_notify or end of stream).
    Closed,
    /// The peer sent something that is not valid TLS, or an alert; an alert of ours may be
    /// queued (see [`TlsConn::wants_write`]).
    Failed(TlsFailure),
}

/// Why a TLS connection failed.
#[derive(Debug)]
pub(crate) enum TlsFailure {
    /// rustls rejected the peer's records.
    Protocol(rustls::Error),
    /// The socket failed.
    Io(io::Error),
}

impl fmt::Display for TlsFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TlsFailure::Protocol(e) => write!(f, "{e}"),
            TlsFailure::Io(e) => write!(f, "{e}"),
        }
    }
}

/// What one [`TlsConn::flush`] achieved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TlsFlush {
    /// Queue and TLS records all written (and close_notify, when asked).
    Done,
    /// The socket refused more: wait for writability.
    Blocked,
    /// rustls takes no more plaintext until its handshake moves on; nothing to wait for on
    /// the socket's write side.
    Stalled,
    /// The socket or rustls failed: drop the connection.
    Failed,
}

/// One connection's TLS state. Boxed on the connection, so plain connections pay a pointer.
pub(crate) struct TlsConn {
    tls: std::cell::RefCell<ServerConnection>,
    /// close_notify was queued (or the session failed, so none is due).
    closed: std::cell::Cell<bool>,
}

/// Reads from a raw non-blocking socket.
struct FdReader(RawFd);

impl Read for FdReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        sockio::recv(self.0, buf)
    }
}

/// Writes to a raw non-blocking socket, vectored.
struct FdWriter(RawFd);

impl Write for FdWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        sockio::send_vectored(self.0, &[IoSlice::new(buf)])
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        sockio::send_vectored(self.0, bufs)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl TlsConn {
    /// A new server-side session from `config`.
    pub(crate) fn new(config: &Arc<ServerConfig>) -> Result<TlsConn, rustls::Error> {
        let mut tls = ServerConnection::new(config.clone())?;
        tls.set_buffer_limit(Some(TLS_BUFFER_LIMIT));
        Ok(TlsConn {
            tls: std::cell::RefCell::new(tls),
            closed: std::cell::Cell::new(false),
        })
    }

    /// Whether rustls has records to send (handshake messages, an alert, encrypted data).
    pub(crate) fn wants_write(&self) -> bool {
        self.tls.borrow().wants_write()
    }

    /// The negotiated ALPN protocol, once the handshake is done.
    #[allow(dead_code)] // for handlers and tests that inspect a session
    pub(crate) fn alpn(&self) -> Option<Vec<u8>> {
        self.tls.borrow().alpn_protocol().map(<[u8]>::to_vec)
    }

    /// Decrypt what the socket has until some plaintext is ready (copied to the front of
    /// `out`), the socket is drained, or the session ends. Returns the outcome and the
    /// ciphertext bytes read from the socket.
    pub(crate) fn read(&self, fd: RawFd, out: &mut [u8]) -> (TlsRead, usize) {
        let mut tls = self.tls.borrow_mut();
        let mut cipher = 0;
        loop {
            match tls.reader().read(out) {
                Ok(0) => return (TlsRead::Closed, cipher),
                Ok(n) => return (TlsRead::Data(n), cipher),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                // End of stream without close_notify: the peer is gone all the same.
                Err(_) => return (TlsRead::Closed, cipher),
            }
            match tls.read_tls(&mut FdReader(fd)) {
                Ok(0) => return (TlsRead::Closed, cipher),
                Ok(n) => cipher += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    return (TlsRead::Blocked, cipher)
                }
                Err(e) => {
                    self.closed.set(true);
                    return (TlsRead::Failed(TlsFailure::Io(e)), cipher);
                }
            }
            if let Err(e) = tls.process_new_packets() {
                self.closed.set(true);
                return (TlsRead::Failed(TlsFailure::Protocol(e)), cipher);
            }
        }
    }

    /// Write pending TLS records, then move the queue's plaintext into rustls and write its
    /// records, until both are empty or the socket blocks. With `close`, a close_notify
    /// follows the last byte of the queue. Returns the outcome and the bytes written.
    pub(crate) fn flush(&self, fd: RawFd, q: &mut SendQueue, close: bool) -> (TlsFlush, usize) {
        let mut tls = self.tls.borrow_mut();
        let mut written = 0;
        loop {
            while tls.wants_write() {
                match tls.write_tls(&mut FdWriter(fd)) {
                    Ok(n) => written += n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        return (TlsFlush::Blocked, written)
                    }
                    Err(_) => return (TlsFlush::Failed, written),
                }
            }
            if !q.is_empty() {
                let mut slices = [IoSlice::new(&[]); MAX_IOV];
                let n = q.fill_slices(&mut slices);
                match tls.writer().write_vectored(&slices[..n]) {
                    Ok(0) => return (TlsFlush::Stalled, written),
                    Ok(taken) => q.advance(taken),
                    Err(_) => return (TlsFlush::Failed, written),
                }
                continue;
            }
            if close && !self.closed.replace(true) && !tls.is_handshaking() {
                tls.send_close_notify();
                continue;
            }
            return (TlsFlush::Done, written);
        }
    }

    /// Best effort on the way out: send close_notify (when the session is established and
    /// none was sent) and whatever records are pending, without waiting.
    pub(crate) fn goodbye(&self, fd: RawFd) -> usize {
        let mut tls = self.tls.borrow_mut();
        if !self.closed.replace(true) && !tls.is_handshaking() {
            tls.send_close_notify();
        }
        let mut written = 0;
        while tls.wants_write() {
            match tls.write_tls(&mut FdWriter(fd)) {
                Ok(n) if n > 0 => written += n,
                _ => break,
            }
        }
        written
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair() -> (tempfile::TempDir, PathBuf, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let ck = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let cert = dir.path().join("cert.pem");
        let key = dir.path().join("key.pem");
        std::fs::write(&cert, ck.cert.pem()).unwrap();
        std::fs::write(&key, ck.key_pair.serialize_pem()).unwrap();
        (dir, cert, key)
    }

    #[test]
    fn loads_a_generated_pair() {
        let (_d, cert, key) = pair();
        let setup = TlsSetup::new(&cert, &key).unwrap();
        assert_eq!(setup.config.alpn_protocols, vec![b"http/1.1".to_vec()]);
        assert_eq!(setup.certs.current().cert.len(), 1);
    }

    #[test]
    fn missing_files_name_the_file() {
        let (d, cert, key) = pair();
        let nope = d.path().join("nope.pem");
        let e = TlsSetup::new(&nope, &key).unwrap_err();
        assert!(
            matches!(
                e,
                TlsError::Read {
                    what: "certificate",
                    ..
                }
            ),
            "{e}"
        );
        assert!(e.to_string().contains("nope.pem"), "{e}");
        let e = TlsSetup::new(&cert, &nope).unwrap_err();
        assert!(matches!(e, TlsError::Read { what: "key", .. }), "{e}");
    }

    #[test]
    fn garbage_and_swapped_files_are_typed_errors() {
        let (d, cert, key) = pair();
        let junk = d.path().join("junk.pem");
        std::fs::write(&junk, "not pem at all\n").unwrap();
        let e = TlsSetup::new(&junk, &key).unwrap_err();
        assert!(
            matches!(
                e,
                TlsError::Pem {
                    what: "certificate",
                    ..
                }
            ),
            "{e}"
        );
        let e = TlsSetup::new(&cert, &junk).unwrap_err();
        assert!(matches!(e, TlsError::Pem { what: "key", .. }), "{e}");
        // The key file where the certificate goes and the other way round.
        let e = TlsSetup::new(&key, &cert).unwrap_err();
        assert!(matches!(e, TlsError::Pem { .. }), "{e}");
    }

    #[test]
    fn a_key_of_another_certificate_is_rejected() {
        let (_d1, cert, _) = pair();
        let (_d2, _, other_key) = pair();
        let e = TlsSetup::new(&cert, &other_key).unwrap_err();
        assert!(matches!(e, TlsError::KeyMismatch { .. }), "{e}");
        assert!(e.to_string().contains("does not belong"), "{e}");
    }

    #[test]
    fn only_one_path_is_incomplete() {
        let (_d, cert, key) = pair();
        assert!(TlsSetup::from_paths(None, None).unwrap().is_none());
        assert!(matches!(
            TlsSetup::from_paths(Some(&cert), None),
            Err(TlsError::Incomplete("tls_cert"))
        ));
        assert!(matches!(
            TlsSetup::from_paths(None, Some(&key)),
            Err(TlsError::Incomplete("tls_key"))
        ));
    }

    #[test]
    fn reload_swaps_and_a_bad_reload_keeps_the_old_pair() {
        let (d, cert, key) = pair();
        let store = CertStore::load(&cert, &key).unwrap();
        let first = store.current().cert[0].clone();
        let ck = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        std::fs::write(&cert, ck.cert.pem()).unwrap();
        std::fs::write(&key, ck.key_pair.serialize_pem()).unwrap();
        store.reload().unwrap();
        let second = store.current().cert[0].clone();
        assert_ne!(first, second);
        std::fs::write(d.path().join("cert.pem"), "garbage").unwrap();
        assert!(store.reload().is_err());
        assert_eq!(store.current().cert[0], second);
    }
}
