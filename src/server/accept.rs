//! Admission: an accepted socket becomes a connection in the worker's slab (with its TLS
//! session and its deadline), or is refused with an HTTP answer (503 when the process is
//! full, 429 over a per-IP limit) without its request being read, or is just closed.

use std::{net::SocketAddr, rc::Rc};

use super::{
    conn::{Conn, ConnId},
    tls::TlsConn,
    worker::Worker,
};
use crate::{
    connection::Connection,
    guard::{Admission, Refusal},
};

/// Refused connections a worker lets linger to deliver their HTTP answer (each holds a
/// socket and a slab entry for at most `close_timeout`).
const MAX_REFUSING: usize = 1024;

impl Worker {
    /// Register an accepted socket and return its connection: a new one, or one refused
    /// with an HTTP answer (503 when full, 429 over a per-IP limit); `None` to drop the
    /// socket at once (draining, or too many refusals in flight).
    pub(crate) fn admit(
        &self,
        stream: &monoio::net::TcpStream,
        peer: SocketAddr,
    ) -> Option<Rc<Conn>> {
        let set = &self.core.set;
        self.core.stats.accepted.inc();
        if self.draining.get() {
            self.core.stats.refused_limit.inc();
            return None;
        }
        let verdict = if set.limit.acquire() {
            set.guard
                .on_accept(peer.ip())
                .inspect_err(|_| set.limit.release())
        } else {
            Err(Refusal::Full)
        };
        match verdict {
            Ok(ip) => {
                let Some(conn) = self.register(stream) else {
                    set.limit.release();
                    return None;
                };
                if let Some(ip) = ip {
                    *conn.admission.borrow_mut() = Some(Box::new(Admission {
                        ip: Some(ip),
                        ..Admission::default()
                    }));
                }
                Some(conn)
            }
            Err(r) => self.refuse_at_accept(stream, r),
        }
    }

    /// Answer a connection refused at accept with a fixed HTTP response, without reading
    /// the request. The connection holds no slot of the limit; it reads and discards until
    /// the peer closes (so the answer is not lost to a reset) or `close_timeout`. At most
    /// [`MAX_REFUSING`] per worker linger like this; beyond that the socket is just closed.
    fn refuse_at_accept(&self, stream: &monoio::net::TcpStream, why: Refusal) -> Option<Rc<Conn>> {
        self.count_refusal(why);
        // Over TLS the answer would need a TLS handshake first: close at once instead.
        if self.refusing.get() >= MAX_REFUSING || self.core.set.tls.is_some() {
            return None;
        }
        let conn = self.register(stream)?;
        conn.counted.set(false);
        self.refusing.set(self.refusing.get() + 1);
        self.reject(&conn, why.status(), why.reason());
        self.core.flush(&conn);
        Some(conn)
    }

    pub(super) fn count_refusal(&self, why: Refusal) {
        let s = &self.core.stats;
        match why {
            Refusal::Full => s.refused_limit.inc(),
            Refusal::IpLimit => s.rejected_ip_limit.inc(),
            Refusal::HandshakeRate => s.rejected_handshake_rate.inc(),
            Refusal::Origin => s.rejected_origin.inc(),
            Refusal::Unauthorized => s.rejected_unauthorized.inc(),
            Refusal::TokenExpired => s.rejected_token_expired.inc(),
            Refusal::UserLimit => s.rejected_user_limit.inc(),
        }
    }

    /// Put an accepted socket in the slab, in the handshake phase with its deadline; `None`
    /// when its TLS session cannot start (counted in `rejected_tls`).
    fn register(&self, stream: &monoio::net::TcpStream) -> Option<Rc<Conn>> {
        use std::os::fd::AsRawFd;
        let (core, set) = (&self.core, &self.core.set);
        if set.nodelay {
            let _ = stream.set_nodelay(true);
        }
        if set.socket_send_buffer > 0 {
            // Validated to fit an int. A failure leaves the kernel's autotuning in place.
            // SAFETY: the descriptor belongs to `stream`, which outlives this borrow (monoio's
            // stream implements only `AsRawFd`, not `AsFd`).
            let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(stream.as_raw_fd()) };
            let opt = nix::sys::socket::sockopt::SndBuf;
            let _ = nix::sys::socket::setsockopt(&fd, opt, &set.socket_send_buffer);
        }
        let tls = match &set.tls {
            None => None,
            Some(cfg) => match TlsConn::new(cfg) {
                Ok(t) => Some(Box::new(t)),
                Err(e) => {
                    tracing::warn!(worker = core.id, error = %e, "cannot start a TLS session");
                    core.stats.rejected_tls.inc();
                    return None;
                }
            },
        };
        let gen = self.next_gen.get().wrapping_add(1);
        self.next_gen.set(gen);
        let mut conns = core.conns.borrow_mut();
        let entry = conns.vacant_entry();
        let id = ConnId {
            key: entry.key() as u32,
            gen,
        };
        let state = Connection::new(&set.conn, core.now());
        let conn = Rc::new(Conn::new(stream.as_raw_fd(), id, state, tls));
        entry.insert(conn.clone());
        drop(conns);
        core.stats.connections.inc();
        core.settle(&conn);
        Some(conn)
    }
}
