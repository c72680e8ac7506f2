//! One connection: its state (phase, decoder, send queue, timestamps) and the task that waits
//! for its socket and feeds bytes through the protocol core.
//!
//! An idle connection owns no read buffer: bytes are read into the worker's shared buffer
//! and only the unfinished tail of a frame (or a fragmented message) is kept per connection.

use std::{
    cell::{Cell, RefCell},
    future::Future,
    os::fd::RawFd,
    pin::Pin,
    rc::Rc,
    task::{Context, Poll, Waker},
};

use monoio::net::TcpStream;

use super::{tls::TlsConn, worker::WorkerInner};
use crate::{
    proto::{CloseCode, Decoder, OpCode},
    queue::SendQueue,
};

/// Where a connection is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Waiting for the HTTP upgrade request.
    Handshake,
    /// Upgraded: frames flow both ways.
    Open,
    /// A close frame or an HTTP rejection was sent (or is queued); waiting for the peer.
    Closing,
    /// Finished: the task drops the socket as soon as it runs.
    Dead,
}

/// What to do once the send queue has been written out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AfterFlush {
    /// Nothing.
    Nothing,
    /// Send FIN and keep reading until the peer closes (so our last bytes are not lost to a
    /// reset caused by unread input).
    ShutdownWrite,
    /// Close the connection (we answered the peer's close frame).
    Drop,
}

/// The state of one connection, shared by its task, the timer and handlers on its worker.
pub(crate) struct Conn {
    pub(crate) fd: RawFd,
    pub(crate) key: u32,
    pub(crate) gen: u32,
    pub(crate) phase: Cell<Phase>,
    /// The handshake completed (so the handler saw `on_open`).
    pub(crate) opened: Cell<bool>,
    pub(crate) after_flush: Cell<AfterFlush>,
    /// We sent (or queued) a close frame.
    pub(crate) close_sent: Cell<bool>,
    /// Input is read and thrown away (after a protocol failure or an HTTP rejection).
    pub(crate) discarding: Cell<bool>,
    /// The close code the peer sent, for `on_close`.
    pub(crate) peer_code: Cell<Option<CloseCode>>,
    /// The socket refused more bytes: wait for it to become writable.
    pub(crate) write_blocked: Cell<bool>,
    /// Queued in the worker's flush list.
    pub(crate) dirty: Cell<bool>,
    /// Timer ticks: last byte received, last ping sent, the phase deadline, the live wheel entry.
    pub(crate) last_rx: Cell<u64>,
    pub(crate) last_ping: Cell<u64>,
    pub(crate) deadline: Cell<u64>,
    pub(crate) timer_at: Cell<u64>,
    pub(crate) queue: RefCell<SendQueue>,
    /// Queued bytes last added to the worker's `queued_bytes` gauge.
    pub(crate) accounted: Cell<usize>,
    pub(crate) decoder: RefCell<Decoder>,
    /// The unfinished tail of the input (a partial frame); empty and unallocated when idle.
    pub(crate) rbuf: RefCell<Vec<u8>>,
    /// A fragmented message being assembled, and its opcode.
    pub(crate) msg: RefCell<Vec<u8>>,
    pub(crate) msg_op: Cell<OpCode>,
    /// permessage-deflate parameters and inflater (empty unless negotiated).
    pub(crate) deflate: super::deflate::ConnDeflate,
    /// Wakes the task when its wait set changes (blocked write, forced close).
    kicked: Cell<bool>,
    waker: Cell<Option<Waker>>,
    /// The TLS session of a wss:// connection; `None` on a plain listener.
    pub(crate) tls: Option<Box<TlsConn>>,
    /// Holds a slot of the process-wide connection limit (refused connections do not).
    pub(crate) counted: Cell<bool>,
    /// Per-IP and per-user counts and the identity, released when the connection ends.
    pub(crate) admission: RefCell<Option<Box<crate::guard::Admission>>>,
}

impl Conn {
    /// A new connection in the handshake phase.
    pub(crate) fn new(fd: RawFd, key: u32, gen: u32, decoder: Decoder, now: u64) -> Conn {
        Conn {
            fd,
            key,
            gen,
            phase: Cell::new(Phase::Handshake),
            opened: Cell::new(false),
            after_flush: Cell::new(AfterFlush::Nothing),
            close_sent: Cell::new(false),
            discarding: Cell::new(false),
            peer_code: Cell::new(None),
            write_blocked: Cell::new(false),
            dirty: Cell::new(false),
            last_rx: Cell::new(now),
            last_ping: Cell::new(now),
            deadline: Cell::new(u64::MAX),
            timer_at: Cell::new(u64::MAX),
            queue: RefCell::new(SendQueue::new()),
            accounted: Cell::new(0),
            decoder: RefCell::new(decoder),
            rbuf: RefCell::new(Vec::new()),
            msg: RefCell::new(Vec::new()),
            msg_op: Cell::new(OpCode::Binary),
            deflate: Default::default(),
            kicked: Cell::new(false),
            waker: Cell::new(None),
            tls: None,
            counted: Cell::new(true),
            admission: RefCell::new(None),
        }
    }

    /// The same connection speaking TLS through `tls`.
    pub(crate) fn with_tls(mut self, tls: Option<Box<TlsConn>>) -> Conn {
        self.tls = tls;
        self
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
        self.phase.set(Phase::Dead);
        self.kick();
    }

    fn kicked(&self) -> Kicked<'_> {
        Kicked { conn: self }
    }
}

/// Resolves when [`Conn::kick`] was called.
struct Kicked<'a> {
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

enum Wake {
    Read,
    Write,
    Kick,
    Error,
}

/// The connection task: wait for readiness, read and process, write, until the end.
pub(crate) async fn run(w: Rc<WorkerInner>, stream: TcpStream, conn: Rc<Conn>) {
    loop {
        if conn.phase.get() == Phase::Dead {
            break;
        }
        // One readiness wait at a time, plus the kick: a blocked write waits for writability
        // only (the peer is not reading, so we stop reading too); otherwise we wait to read
        // unless our queue for this peer is over half its bound. Keeping a single operation
        // in the wait keeps this future, which every idle connection holds, small.
        let wake = if conn.write_blocked.get() {
            monoio::select! {
                r = stream.writable(false) => if r.is_ok() { Wake::Write } else { Wake::Error },
                _ = conn.kicked() => Wake::Kick,
            }
        } else if !w.read_paused(&conn) {
            monoio::select! {
                r = stream.readable(false) => if r.is_ok() { Wake::Read } else { Wake::Error },
                _ = conn.kicked() => Wake::Kick,
            }
        } else {
            conn.kicked().await;
            Wake::Kick
        };
        match wake {
            Wake::Read => w.on_readable(&conn),
            Wake::Write => {
                conn.write_blocked.set(false);
                w.flush(&conn);
            }
            Wake::Kick => {}
            Wake::Error => conn.kill(),
        }
        w.end_of_wake();
    }
    w.finish(&conn);
    drop(stream);
}
