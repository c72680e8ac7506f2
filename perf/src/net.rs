//! Client networking: an edge-triggered epoll loop per thread (nanosecond timeouts with
//! `epoll_pwait2`), non-blocking connections that run the WebSocket upgrade, and a [`Dialer`]
//! that drives many connection attempts at once with rate limits, deadlines and delayed starts.

use std::{
    cmp::Reverse,
    collections::{BTreeMap, BinaryHeap},
    io,
    net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream, ToSocketAddrs},
    os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd},
};

use anyhow::Context as _;
use socket2::{Domain, Socket, Type};

use crate::{
    clock::Rng,
    ws::{self, Decoder, HandshakeError, Message, Writer},
};

/// Readiness flag: readable.
pub const EV_IN: u32 = libc::EPOLLIN as u32;
/// Readiness flag: writable.
pub const EV_OUT: u32 = libc::EPOLLOUT as u32;
/// Readiness flag: the peer shut down its side.
pub const EV_RDHUP: u32 = libc::EPOLLRDHUP as u32;
/// Readiness flag: hang-up.
pub const EV_HUP: u32 = libc::EPOLLHUP as u32;
/// Readiness flag: error.
pub const EV_ERR: u32 = libc::EPOLLERR as u32;
/// Any of the flags after which a read is worth trying.
pub const READABLE: u32 = EV_IN | EV_RDHUP | EV_HUP | EV_ERR;
/// Interest of a connection that is read and written as events come.
pub const INTEREST_ALL: u32 = EV_IN | EV_OUT | EV_RDHUP;
/// Interest of a connection that is only read on a timer: hang-ups (and writability) only.
pub const INTEREST_QUIET: u32 = EV_OUT | EV_RDHUP;

/// One epoll instance, edge-triggered.
pub struct Poller {
    fd: OwnedFd,
    events: Vec<libc::epoll_event>,
    pwait2: bool,
}

impl Poller {
    /// A poller that returns at most `capacity` events per wait.
    pub fn new(capacity: usize) -> io::Result<Self> {
        // SAFETY: plain syscall; the result is checked before use.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Poller {
            // SAFETY: `fd` is a fresh descriptor that nothing else owns.
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
            events: vec![libc::epoll_event { events: 0, u64: 0 }; capacity.max(16)],
            pwait2: true,
        })
    }

    fn ctl(&self, op: libc::c_int, fd: RawFd, token: u64, interest: u32) -> io::Result<()> {
        let mut ev = libc::epoll_event {
            events: interest | libc::EPOLLET as u32,
            u64: token,
        };
        // SAFETY: `ev` outlives the call; the kernel copies it.
        let r = unsafe { libc::epoll_ctl(self.fd.as_raw_fd(), op, fd, &mut ev) };
        if r < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    }

    /// Registers `fd` under `token`.
    pub fn add(&self, fd: RawFd, token: u64, interest: u32) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_ADD, fd, token, interest)
    }

    /// Changes the token or interest of a registered `fd`.
    pub fn modify(&self, fd: RawFd, token: u64, interest: u32) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_MOD, fd, token, interest)
    }

    /// Waits for events, at most `timeout_ns` (None: forever); returns how many are ready.
    pub fn wait(&mut self, timeout_ns: Option<u64>) -> io::Result<usize> {
        let cap = self.events.len() as libc::c_int;
        if self.pwait2 {
            let ts = timeout_ns.map(|ns| libc::timespec {
                tv_sec: (ns / 1_000_000_000) as libc::time_t,
                tv_nsec: (ns % 1_000_000_000) as libc::c_long,
            });
            let ts_ptr = ts
                .as_ref()
                .map_or(std::ptr::null(), |t| t as *const libc::timespec);
            // SAFETY: the events buffer holds `cap` entries; a null sigmask means none.
            let r = unsafe {
                libc::syscall(
                    libc::SYS_epoll_pwait2,
                    self.fd.as_raw_fd(),
                    self.events.as_mut_ptr(),
                    cap,
                    ts_ptr,
                    std::ptr::null::<libc::sigset_t>(),
                    0usize,
                )
            };
            if r >= 0 {
                return Ok(r as usize);
            }
            let e = io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EINTR) => return Ok(0),
                Some(libc::ENOSYS) => self.pwait2 = false,
                _ => return Err(e),
            }
        }
        let ms = timeout_ns.map_or(-1, |ns| ns.div_ceil(1_000_000).min(i32::MAX as u64) as i32);
        // SAFETY: as above.
        let r = unsafe { libc::epoll_wait(self.fd.as_raw_fd(), self.events.as_mut_ptr(), cap, ms) };
        if r < 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EINTR) {
                return Ok(0);
            }
            return Err(e);
        }
        Ok(r as usize)
    }

    /// Event `i` of the last wait: (token, flags).
    #[inline]
    pub fn event(&self, i: usize) -> (u64, u32) {
        let ev = self.events[i];
        (ev.u64, ev.events)
    }
}

/// Where and how to connect.
#[derive(Debug, Clone)]
pub struct Target {
    /// The resolved server address.
    pub addr: SocketAddr,
    /// The `Host` header.
    pub host: String,
    /// The request path.
    pub path: String,
    /// The subprotocol to offer, if any.
    pub protocol: Option<String>,
    /// How many loopback source addresses to spread over (0: let the kernel choose).
    pub source_ips: u32,
}

impl Target {
    /// Resolves `host:port`; source addresses are used only for an IPv4 loopback target.
    pub fn new(
        target: &str,
        path: &str,
        protocol: Option<&str>,
        source_ips: u32,
    ) -> anyhow::Result<Self> {
        let addr = target
            .to_socket_addrs()
            .with_context(|| format!("resolving {target}"))?
            .next()
            .with_context(|| format!("{target} resolves to no address"))?;
        let loopback_v4 = matches!(addr.ip(), IpAddr::V4(ip) if ip.is_loopback());
        Ok(Target {
            addr,
            host: target.to_string(),
            path: path.to_string(),
            protocol: protocol.map(str::to_string),
            source_ips: if loopback_v4 {
                source_ips.min(60_000)
            } else {
                0
            },
        })
    }

    /// The source address of connection number `idx` (global over threads and processes):
    /// 127.0.0.2, 127.0.0.3, ... round-robin.
    pub fn source_for(&self, idx: usize) -> Option<Ipv4Addr> {
        (self.source_ips > 0)
            .then(|| Ipv4Addr::from(0x7F00_0002u32 + (idx % self.source_ips as usize) as u32))
    }
}

/// Why a connection attempt failed or an open connection ended.
#[derive(Debug, thiserror::Error)]
pub enum ConnError {
    /// The TCP connection could not be made (refused, unreachable, out of ports, ...).
    #[error("connect: {0}")]
    Connect(io::Error),
    /// The upgrade was refused or answered wrongly.
    #[error("handshake: {0}")]
    Handshake(#[from] HandshakeError),
    /// The server closed the connection before the upgrade completed.
    #[error("closed during the handshake")]
    Eof,
    /// Another I/O error.
    #[error("i/o: {0}")]
    Io(io::Error),
    /// The attempt ran past its deadline.
    #[error("timed out")]
    Timeout,
}

impl ConnError {
    /// A short stable name for counting failures by kind.
    pub fn kind(&self) -> String {
        match self {
            ConnError::Connect(e) => match e.raw_os_error() {
                Some(libc::ECONNREFUSED) => "refused".into(),
                Some(libc::EADDRNOTAVAIL) => "no_source_port".into(),
                Some(libc::EMFILE) | Some(libc::ENFILE) => "out_of_fds".into(),
                Some(libc::ECONNRESET) => "reset".into(),
                Some(libc::ETIMEDOUT) => "connect_timeout".into(),
                _ => "connect_error".into(),
            },
            ConnError::Handshake(HandshakeError::Status(s)) => format!("http_{s}"),
            ConnError::Handshake(_) => "bad_handshake".into(),
            ConnError::Eof => "closed_in_handshake".into(),
            ConnError::Io(e) if e.raw_os_error() == Some(libc::ECONNRESET) => "reset".into(),
            ConnError::Io(_) => "io_error".into(),
            ConnError::Timeout => "timeout".into(),
        }
    }
}

/// Counts of failures by kind.
pub type Failures = BTreeMap<String, u64>;

/// Adds one failure of `kind`.
pub fn count(f: &mut Failures, kind: impl Into<String>) {
    *f.entry(kind.into()).or_default() += 1;
}

/// Adds `b`'s counts into `a`.
pub fn merge_counts(a: &mut Failures, b: Failures) {
    for (k, v) in b {
        *a.entry(k).or_default() += v;
    }
}

/// Where a connection is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// TCP connect in progress, upgrade request not yet sent.
    Connecting,
    /// Request sent, waiting for the 101.
    Handshaking,
    /// Upgraded: frames flow.
    Open,
}

/// One client connection.
pub struct Conn {
    /// The socket (non-blocking).
    pub stream: TcpStream,
    /// Where it is in its life.
    pub phase: Phase,
    /// Incoming bytes and frames.
    pub dec: Decoder,
    /// Outgoing frames.
    pub out: Writer,
    accept: String,
    protocol: Option<Box<str>>,
}

/// What one round of reads found.
#[derive(Debug, Default, Clone, Copy)]
pub struct ReadOutcome {
    /// Bytes read.
    pub bytes: usize,
    /// The peer closed its side (end of stream).
    pub eof: bool,
}

impl Conn {
    /// Starts a non-blocking connection to `target` as connection number `idx` and queues the
    /// upgrade request. `rcvbuf` sets SO_RCVBUF before connecting.
    pub fn start(
        target: &Target,
        idx: usize,
        rng: &mut Rng,
        rcvbuf: Option<usize>,
    ) -> Result<Conn, ConnError> {
        let sock = Socket::new(
            Domain::for_address(target.addr),
            Type::STREAM.nonblocking().cloexec(),
            None,
        )
        .map_err(ConnError::Connect)?;
        sock.set_nodelay(true).map_err(ConnError::Connect)?;
        if let Some(n) = rcvbuf {
            sock.set_recv_buffer_size(n).map_err(ConnError::Connect)?;
        }
        if let Some(ip) = target.source_for(idx) {
            // Let connect() pick the port for the whole 4-tuple, so each source address gives
            // a full ephemeral range per destination.
            let one: libc::c_int = 1;
            // SAFETY: a valid socket and an int option of the right size.
            unsafe {
                libc::setsockopt(
                    sock.as_raw_fd(),
                    libc::IPPROTO_IP,
                    libc::IP_BIND_ADDRESS_NO_PORT,
                    (&one as *const libc::c_int).cast(),
                    std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                );
            }
            sock.bind(&SocketAddr::new(IpAddr::V4(ip), 0).into())
                .map_err(ConnError::Connect)?;
        }
        match sock.connect(&target.addr.into()) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
            Err(e) => return Err(ConnError::Connect(e)),
        }
        let key = ws::new_key(rng);
        let mut out = Writer::new(rng.next_u64());
        out.raw(&ws::request(
            &target.host,
            &target.path,
            &key,
            target.protocol.as_deref(),
        ));
        Ok(Conn {
            stream: sock.into(),
            phase: Phase::Connecting,
            dec: Decoder::new(),
            out,
            accept: ws::accept_for(&key),
            protocol: target.protocol.as_deref().map(Box::from),
        })
    }

    /// The socket's descriptor.
    pub fn fd(&self) -> RawFd {
        self.stream.as_raw_fd()
    }

    /// Moves the upgrade on after an event with `flags`: `Ok(true)` once the connection is
    /// open (frames that came with the response stay buffered in `dec`).
    pub fn advance(&mut self, flags: u32) -> Result<bool, ConnError> {
        if self.phase == Phase::Open {
            return Ok(true);
        }
        if flags & EV_ERR != 0 && self.phase == Phase::Connecting {
            let e = self
                .stream
                .take_error()
                .ok()
                .flatten()
                .unwrap_or_else(|| io::Error::from_raw_os_error(libc::ECONNREFUSED));
            return Err(ConnError::Connect(e));
        }
        if self.phase == Phase::Connecting {
            if flags & (EV_OUT | EV_HUP) == 0 {
                return Ok(false);
            }
            // A write before the connection is up answers EAGAIN; a failed connect answers
            // its error.
            match self.out.flush(&mut self.stream) {
                Ok(true) => self.phase = Phase::Handshaking,
                Ok(false) => return Ok(false),
                Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) => return Ok(false),
                Err(e) => return Err(ConnError::Connect(e)),
            }
        }
        if self.out.pending() > 0 {
            self.out.flush(&mut self.stream).map_err(ConnError::Io)?;
        }
        loop {
            match self.dec.read_from(&mut self.stream, ws::MAX_RESPONSE_HEAD) {
                Ok(0) => return Err(ConnError::Eof),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(ConnError::Io(e)),
            }
            if let Some(head) =
                ws::parse_response(self.dec.buffered(), &self.accept, self.protocol.as_deref())?
            {
                self.dec.consume(head);
                self.phase = Phase::Open;
                self.accept = String::new();
                self.protocol = None;
                return Ok(true);
            }
        }
    }

    /// Reads whatever is available, up to `max` bytes, into `dec`.
    pub fn read_available(&mut self, max: usize) -> io::Result<ReadOutcome> {
        let mut out = ReadOutcome::default();
        while out.bytes < max {
            match self.dec.read_from(&mut self.stream, max - out.bytes) {
                Ok(0) => {
                    out.eof = true;
                    break;
                }
                Ok(n) => {
                    out.bytes += n;
                    if n < MIN_FULL_READ && out.bytes < max {
                        // A short read drained the socket; edge-triggered epoll reports new
                        // data with a new event.
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// Writes what is queued; `Ok(true)` when all is written.
    #[inline]
    pub fn flush(&mut self) -> io::Result<bool> {
        self.out.flush(&mut self.stream)
    }

    /// Queues a close frame and writes what it can; the caller then drops the connection.
    pub fn goodbye(&mut self) {
        self.out.close(1001, "load test over");
        let _ = self.flush();
    }
}

/// A read that returns less than this is taken to have drained the socket.
const MIN_FULL_READ: usize = 4096;

/// What handling a connection's control frames found.
#[derive(Debug, Default, Clone, Copy)]
pub struct Control {
    /// A close frame arrived, with this code (None: no code).
    pub close: Option<Option<u16>>,
    /// The stream ended.
    pub eof: bool,
}

/// Reads everything available on an open connection that expects no data, answering pings;
/// data messages are counted in `data` and dropped.
pub fn service_idle(c: &mut Conn, data: &mut u64) -> Result<Control, ConnError> {
    let r = c.read_available(usize::MAX).map_err(ConnError::Io)?;
    let mut ctl = Control {
        eof: r.eof,
        ..Control::default()
    };
    loop {
        match c.dec.next() {
            Ok(Some(Message::Ping(p))) => c.out.frame(ws::OP_PONG, p),
            Ok(Some(Message::Close(code, _))) => {
                ctl.close = Some(code);
                break;
            }
            Ok(Some(Message::Pong(_))) => {}
            Ok(Some(_)) => *data += 1,
            Ok(None) => break,
            Err(_) => {
                ctl.eof = true;
                break;
            }
        }
    }
    if c.out.pending() > 0 {
        let _ = c.flush();
    }
    c.dec.release();
    Ok(ctl)
}

/// Most attempts one `start_due` call starts.
const START_BATCH: usize = 64;

/// Marks tokens that belong to the dialer.
pub const DIAL_BIT: u64 = 1 << 63;

/// An attempt in progress.
struct Attempt {
    slot: usize,
    conn: Conn,
    due: u64,
    started: u64,
    deadline: u64,
}

/// The end of one attempt.
pub enum Dialed {
    /// The upgrade succeeded.
    Open {
        /// The caller's slot number.
        slot: usize,
        /// The open connection, still registered under a dialer token: re-register it.
        conn: Conn,
        /// When the attempt was meant to start (ns).
        due: u64,
        /// When it started (ns).
        started: u64,
    },
    /// The attempt failed.
    Failed {
        /// The caller's slot number.
        slot: usize,
        /// Why.
        err: ConnError,
    },
}

/// Drives many connection attempts on one poller: each queued slot starts at its due time
/// (with at most `max_active` attempts at once) and ends open, failed or timed out.
pub struct Dialer {
    queue: BinaryHeap<Reverse<(u64, usize)>>,
    active: Vec<Option<Attempt>>,
    free: Vec<usize>,
    live: usize,
    /// Most attempts in progress at once.
    pub max_active: usize,
    /// Deadline of one attempt, from its start (ns).
    pub attempt_timeout: u64,
    next_sweep: u64,
}

impl Dialer {
    /// A dialer with no attempts queued.
    pub fn new(max_active: usize, attempt_timeout: u64) -> Self {
        Dialer {
            queue: BinaryHeap::new(),
            active: Vec::new(),
            free: Vec::new(),
            live: 0,
            max_active: max_active.max(1),
            attempt_timeout,
            next_sweep: 0,
        }
    }

    /// Queues slot `slot` to start at `due` (ns).
    pub fn queue(&mut self, slot: usize, due: u64) {
        self.queue.push(Reverse((due, slot)));
    }

    /// Whether nothing is queued or in progress.
    pub fn idle(&self) -> bool {
        self.queue.is_empty() && self.live == 0
    }

    /// When something next needs doing (a queued start or a deadline), if anything.
    pub fn next_wake(&self) -> Option<u64> {
        let q = if self.live < self.max_active {
            self.queue.peek().map(|Reverse((d, _))| *d)
        } else {
            None
        };
        let s = (self.live > 0).then_some(self.next_sweep);
        match (q, s) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Starts the due attempts; `slot_info` maps a slot to its global connection number and the
    /// SO_RCVBUF its socket gets.
    pub fn start_due(
        &mut self,
        poller: &Poller,
        target: &Target,
        now: u64,
        rng: &mut Rng,
        slot_info: impl Fn(usize) -> (usize, Option<usize>),
        out: &mut Vec<Dialed>,
    ) {
        // A few at a time, so that attempts already under way progress between batches (the
        // caller's next wait returns at once while starts are due).
        let mut started_now = 0;
        while self.live < self.max_active && started_now < START_BATCH {
            started_now += 1;
            match self.queue.peek() {
                Some(Reverse((due, _))) if *due <= now => {}
                _ => break,
            }
            let Some(Reverse((due, slot))) = self.queue.pop() else {
                break;
            };
            let started = crate::clock::now_ns();
            let (idx, rcvbuf) = slot_info(slot);
            let conn = match Conn::start(target, idx, rng, rcvbuf) {
                Ok(c) => c,
                Err(err) => {
                    out.push(Dialed::Failed { slot, err });
                    continue;
                }
            };
            let i = self.free.pop().unwrap_or_else(|| {
                self.active.push(None);
                self.active.len() - 1
            });
            if let Err(e) = poller.add(conn.fd(), DIAL_BIT | i as u64, INTEREST_ALL) {
                self.free.push(i);
                out.push(Dialed::Failed {
                    slot,
                    err: ConnError::Connect(e),
                });
                continue;
            }
            if self.live == 0 {
                self.next_sweep = started + self.attempt_timeout.min(100 * crate::clock::MS);
            }
            self.active[i] = Some(Attempt {
                slot,
                conn,
                due,
                started,
                deadline: started + self.attempt_timeout,
            });
            self.live += 1;
        }
    }

    fn finish(&mut self, i: usize, res: Result<(), ConnError>, out: &mut Vec<Dialed>) {
        let Some(mut a) = self.active.get_mut(i).and_then(Option::take) else {
            return;
        };
        // Idle connections keep no read buffer until data comes.
        a.conn.dec.release();
        self.free.push(i);
        self.live -= 1;
        out.push(match res {
            Ok(()) => Dialed::Open {
                slot: a.slot,
                conn: a.conn,
                due: a.due,
                started: a.started,
            },
            Err(err) => Dialed::Failed { slot: a.slot, err },
        });
    }

    /// Handles an event for a dialer token.
    pub fn on_event(&mut self, token: u64, flags: u32, out: &mut Vec<Dialed>) {
        let i = (token & !DIAL_BIT) as usize;
        let res = match self.active.get_mut(i).and_then(Option::as_mut) {
            Some(a) => a.conn.advance(flags),
            None => return,
        };
        match res {
            Ok(true) => self.finish(i, Ok(()), out),
            Ok(false) => {}
            Err(e) => self.finish(i, Err(e), out),
        }
    }

    /// Fails the attempts past their deadline (checked every 100 ms at most).
    pub fn expire(&mut self, now: u64, out: &mut Vec<Dialed>) {
        if self.live == 0 || now < self.next_sweep {
            return;
        }
        self.next_sweep = now + self.attempt_timeout.min(100 * crate::clock::MS);
        for i in 0..self.active.len() {
            if matches!(&self.active[i], Some(a) if a.deadline <= now) {
                self.finish(i, Err(ConnError::Timeout), out);
            }
        }
    }

    /// Abandons everything queued or in progress; returns how many were in progress.
    pub fn abandon(&mut self) -> usize {
        self.queue.clear();
        let n = self.live;
        self.active.clear();
        self.free.clear();
        self.live = 0;
        n
    }
}

/// Raises the soft open-files limit to the hard limit; returns the new soft limit.
pub fn raise_fd_limit() -> u64 {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `r` is a valid out-pointer.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) } != 0 {
        return 0;
    }
    if r.rlim_cur < r.rlim_max {
        let want = libc::rlimit {
            rlim_cur: r.rlim_max,
            rlim_max: r.rlim_max,
        };
        // SAFETY: as above.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &want) } == 0 {
            return want.rlim_cur;
        }
    }
    r.rlim_cur
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_addresses_round_robin_on_loopback_only() {
        let t = Target::new("127.0.0.1:9", "/", None, 3).unwrap();
        let ips: Vec<_> = (0..4).map(|i| t.source_for(i).unwrap()).collect();
        assert_eq!(
            ips,
            vec![
                Ipv4Addr::new(127, 0, 0, 2),
                Ipv4Addr::new(127, 0, 0, 3),
                Ipv4Addr::new(127, 0, 0, 4),
                Ipv4Addr::new(127, 0, 0, 2)
            ]
        );
        let t = Target::new("127.0.0.1:9", "/", None, 300).unwrap();
        assert_eq!(t.source_for(299), Some(Ipv4Addr::new(127, 0, 1, 45)));
        let t = Target::new("[::1]:9", "/", None, 3).unwrap();
        assert_eq!(t.source_for(0), None);
    }
}
