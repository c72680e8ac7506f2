//! One connection as its worker holds it: the socket's descriptor and slab place, the
//! protocol state machine ([`Connection`]), and the runtime's own bookkeeping (the task's
//! wake-up, the flush list, the timer entry, the limit slot and admission counts).
//!
//! The protocol lives in [`crate::connection`]; this file only ties it to a socket.

use std::{
    cell::{Cell, Ref, RefCell, RefMut},
    future::Future,
    os::fd::RawFd,
    pin::Pin,
    task::{Context, Poll, Waker},
};

use super::tls::TlsConn;
use crate::{connection::Connection, guard::Admission};

/// Identifies a connection within its worker (slab key and a generation, so a stale id never
/// reaches a newer connection that reused the slot).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConnId {
    pub(crate) key: u32,
    pub(crate) gen: u32,
}

/// A connection of a worker, shared by its task, the timer and handlers on that worker.
pub(crate) struct Conn {
    pub(crate) fd: RawFd,
    pub(crate) key: u32,
    pub(crate) gen: u32,
    state: RefCell<Connection>,
    /// The socket refused more bytes: wait for it to become writable.
    pub(crate) write_blocked: Cell<bool>,
    /// Queued in the worker's flush list.
    pub(crate) dirty: Cell<bool>,
    /// The tick of the live timer-wheel entry (older entries are stale).
    pub(crate) timer_at: Cell<u64>,
    /// Queued bytes last added to the worker's `queued_bytes` gauge.
    pub(crate) accounted: Cell<usize>,
    /// Bytes of unfinished messages last added to the process-wide budget.
    pub(crate) partial: Cell<usize>,
    /// Wakes the task when its wait set changes (blocked write, forced close).
    kicked: Cell<bool>,
    waker: Cell<Option<Waker>>,
    /// The TLS session of a wss:// connection; `None` on a plain listener.
    pub(crate) tls: Option<Box<TlsConn>>,
    /// Holds a slot of the process-wide connection limit (refused connections do not).
    pub(crate) counted: Cell<bool>,
    /// Per-IP and per-user counts and the identity, released when the connection ends.
    pub(crate) admission: RefCell<Option<Box<Admission>>>,
}

impl Conn {
    /// A registered socket with its protocol state.
    pub(crate) fn new(fd: RawFd, id: ConnId, state: Connection, tls: Option<Box<TlsConn>>) -> Conn {
        Conn {
            fd,
            key: id.key,
            gen: id.gen,
            state: RefCell::new(state),
            write_blocked: Cell::new(false),
            dirty: Cell::new(false),
            timer_at: Cell::new(u64::MAX),
            accounted: Cell::new(0),
            partial: Cell::new(0),
            kicked: Cell::new(false),
            waker: Cell::new(None),
            tls,
            counted: Cell::new(true),
            admission: RefCell::new(None),
        }
    }

    /// The connection's id.
    pub(crate) fn id(&self) -> ConnId {
        ConnId {
            key: self.key,
            gen: self.gen,
        }
    }

    /// The protocol state, to read.
    pub(crate) fn state(&self) -> Ref<'_, Connection> {
        self.state.borrow()
    }

    /// The protocol state, to change. Never held across a handler call: a handler may send
    /// to this very connection.
    pub(crate) fn state_mut(&self) -> RefMut<'_, Connection> {
        self.state.borrow_mut()
    }

    /// Whether the connection is finished (its task drops the socket).
    pub(crate) fn is_dead(&self) -> bool {
        self.state.borrow().is_dead()
    }

    /// Wake the connection's task so it re-evaluates what to wait for.
    pub(crate) fn kick(&self) {
        self.kicked.set(true);
        if let Some(w) = self.waker.take() {
            w.wake();
        }
    }

    /// Mark the connection finished and wake its task to drop the socket.
    pub(crate) fn kill(&self) {
        self.state.borrow_mut().kill();
        self.kick();
    }

    /// Resolves when [`Conn::kick`] was called.
    pub(crate) fn kicked(&self) -> Kicked<'_> {
        Kicked { conn: self }
    }
}

/// Resolves when [`Conn::kick`] was called.
pub(crate) struct Kicked<'a> {
    conn: &'a Conn,
}

impl Future for Kicked<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.conn.kicked.replace(false) {
            Poll::Ready(())
        } else {
            self.conn.waker.set(Some(cx.waker().clone()));
            Poll::Pending
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_idle_conn_is_small() {
        // The runtime's part plus the protocol state (docs/architecture.md, memory table).
        let (conn, state) = (
            std::mem::size_of::<super::Conn>(),
            std::mem::size_of::<crate::connection::Connection>(),
        );
        println!("Conn {conn} bytes, of which Connection {state}");
        assert!(conn <= 240, "{conn}");
    }
}
