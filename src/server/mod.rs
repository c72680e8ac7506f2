//! The per-core runtime: workers, listeners, connections, timers and drain.
//!
//! [`Server::builder`] binds one SO_REUSEPORT listener per worker (on the caller's thread, so
//! a bad address fails at once and port 0 resolves to one port for all workers), then starts
//! one pinned OS thread per worker, each with its own monoio runtime.

mod accept;
mod bell;
mod conn;
mod core;
mod handler;
mod io;
pub mod limits;
pub mod logging;
mod signals;
pub(crate) mod stats;
mod tasks;
pub mod timer;
pub mod tls;
mod worker;

use std::{
    net::SocketAddr,
    rc::Rc,
    sync::{mpsc, Arc},
    thread::JoinHandle,
    time::Duration,
};

pub use handler::{
    ConnId, ConnRef, Ctx, Handler, HandshakeHook, HookDecision, Message, OpenInfo, SendError,
    Wakeup,
};
pub use signals::{run_until_signalled, run_until_signalled_with};
pub use stats::Stats;

use self::{bell::Bell, core::WorkerSettings, stats::WorkerStats};
use crate::config::{Config, ConfigError, Driver};

/// The io driver a server actually runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActiveDriver {
    /// io_uring.
    Uring,
    /// epoll (monoio's legacy driver).
    Epoll,
}

impl std::fmt::Display for ActiveDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ActiveDriver::Uring => "io_uring",
            ActiveDriver::Epoll => "epoll",
        })
    }
}

/// Why a server could not start or stopped abnormally.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// io_uring was required but the kernel refused it.
    #[error("io_uring is not available on this kernel (or is disabled by io_uring_disabled / seccomp); use --driver epoll or --driver auto")]
    UringUnavailable,
    /// Binding the listen address failed.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
    /// A worker's runtime could not be built.
    #[error("worker {worker} failed to start: {source}")]
    Worker {
        /// The worker index.
        worker: usize,
        /// The cause.
        source: std::io::Error,
    },
    /// The admin listener could not start.
    #[error("cannot start the admin API on {addr}: {source}")]
    Admin {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
    /// A worker thread panicked.
    #[error("worker {0} panicked")]
    WorkerPanicked(usize),
    /// The TLS certificate or key could not be loaded.
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    /// The JWT key named in the configuration could not be loaded.
    #[error(transparent)]
    AuthKey(#[from] crate::auth::KeySetupError),
}

type HandlerFactory = Arc<dyn Fn(usize) -> Box<dyn Handler> + Send + Sync>;

/// Builds a [`Server`]: configuration, the handler factory and an optional handshake hook.
pub struct ServerBuilder {
    config: Config,
    factory: Option<HandlerFactory>,
    hook: Option<Arc<dyn HandshakeHook>>,
}

impl ServerBuilder {
    /// The handler: `factory(worker_index)` builds one instance per worker, on that worker.
    pub fn handler<H, F>(mut self, factory: F) -> Self
    where
        H: Handler,
        F: Fn(usize) -> H + Send + Sync + 'static,
    {
        self.factory = Some(Arc::new(move |i| Box::new(factory(i)) as Box<dyn Handler>));
        self
    }

    /// A hook that sees every valid upgrade request and may reject it with a status.
    pub fn handshake_hook(mut self, hook: impl HandshakeHook) -> Self {
        self.hook = Some(Arc::new(hook));
        self
    }

    /// Validate, bind and start the workers; returns once every worker runs.
    pub fn start(self) -> Result<Server, ServerError> {
        let cfg = self.config;
        cfg.validate()?;
        let driver = match cfg.driver {
            Driver::Epoll => ActiveDriver::Epoll,
            Driver::Uring if uring_available() => ActiveDriver::Uring,
            Driver::Uring => return Err(ServerError::UringUnavailable),
            Driver::Auto if uring_available() => ActiveDriver::Uring,
            Driver::Auto => ActiveDriver::Epoll,
        };
        let tls = tls::TlsSetup::from_paths(cfg.tls_cert.as_deref(), cfg.tls_key.as_deref())?;
        let workers = cfg.worker_count();
        let max_conns = limits::check_nofile(cfg.max_connections, workers);
        limits::check_socket_send_buffer(cfg.socket_send_buffer);
        // One process-wide count: SO_REUSEPORT spreads connections unevenly, so a per-worker
        // share of the limit would refuse on one worker while the process still has room.
        let live = Arc::new(ConnLimit::new(max_conns));
        let partial = Arc::new(core::PartialBudget::new(cfg.partial_message_budget));
        let guard = Arc::new(crate::guard::Guard::from_config(&cfg)?);
        let listeners = bind_all(&cfg, workers, driver)?;
        let addr = listeners[0].local_addr().map_err(|e| ServerError::Bind {
            addr: cfg.listen,
            source: e,
        })?;
        let factory = self
            .factory
            .unwrap_or_else(|| Arc::new(|_| Box::new(NoopHandler)));
        let cpus = allowed_cpus();
        let coop_taskrun = driver == ActiveDriver::Uring && coop_taskrun_available();
        let mut threads = Vec::with_capacity(workers);
        let mut bells = Vec::with_capacity(workers);
        let mut stats = Vec::with_capacity(workers);
        let (ready_tx, ready_rx) = mpsc::channel::<Result<(), ServerError>>();
        for (i, listener) in listeners.into_iter().enumerate() {
            let bell = Arc::new(Bell::default());
            let st = Arc::new(WorkerStats::default());
            st.heartbeat_ms.set(stats::monotonic_ms());
            bells.push(bell.clone());
            stats.push(st.clone());
            let mut set = WorkerSettings::new(&cfg, live.clone(), partial.clone(), guard.clone());
            set.tls = tls.as_ref().map(|t| t.config.clone());
            let factory = factory.clone();
            let hook = self.hook.clone();
            let ready = ready_tx.clone();
            // The i-th CPU this process may run on, not CPU i: under `isolcpus`, a cpuset or
            // systemd's `CPUAffinity=` the allowed set need not start at 0.
            let pin = cfg.pin_workers.then(|| cpus[i % cpus.len()]);
            let entries = cfg.uring_entries;
            let coop = coop_taskrun;
            let t = std::thread::Builder::new()
                .name(format!("corecast-w{i}"))
                .spawn(move || {
                    let _guard = PanicGuard(i);
                    if let Some(core) = pin {
                        if let Err(e) = monoio::utils::bind_to_cpu_set([core]) {
                            tracing::warn!(worker = i, core, error = ?e, "cannot pin worker");
                        }
                    }
                    macro_rules! run_on {
                        ($builder:expr) => {{
                            let mut rt = match $builder.enable_timer().build() {
                                Ok(rt) => rt,
                                Err(e) => {
                                    let _ = ready.send(Err(ServerError::Worker {
                                        worker: i,
                                        source: e,
                                    }));
                                    return Ok(());
                                }
                            };
                            rt.block_on(async move {
                                let listener = match monoio::net::TcpListener::from_std(listener) {
                                    Ok(l) => l,
                                    Err(e) => {
                                        let _ = ready.send(Err(ServerError::Worker {
                                            worker: i,
                                            source: e,
                                        }));
                                        return Ok(());
                                    }
                                };
                                let handler = factory(i);
                                let w = Rc::new(worker::Worker::new(i, set, handler, hook, st));
                                let _ = ready.send(Ok(()));
                                drop(ready);
                                tasks::main(w, listener, bell).await;
                                Ok(())
                            })
                        }};
                    }
                    match driver {
                        ActiveDriver::Uring => {
                            run_on!(monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
                                .uring_builder(uring_builder(coop))
                                .with_entries(entries))
                        }
                        ActiveDriver::Epoll => {
                            run_on!(monoio::RuntimeBuilder::<monoio::LegacyDriver>::new())
                        }
                    }
                })
                .map_err(|e| ServerError::Worker {
                    worker: i,
                    source: e,
                })?;
            threads.push(t);
        }
        drop(ready_tx);
        let shared = Arc::new(Shared {
            bells,
            stats,
            tls: tls.map(|t| t.certs),
        });
        for _ in 0..workers {
            let failed = match ready_rx.recv() {
                Ok(Ok(())) => continue,
                Ok(Err(e)) => e,
                Err(_) => ServerError::WorkerPanicked(usize::MAX),
            };
            for b in &shared.bells {
                b.ring(Duration::ZERO);
            }
            for t in threads {
                let _ = t.join();
            }
            return Err(failed);
        }
        let scheme = if shared.tls.is_some() { "wss" } else { "ws" };
        tracing::info!(%addr, scheme, workers, %driver, max_connections = max_conns, "corecast listening");
        Ok(Server {
            addr,
            driver,
            threads,
            shared,
        })
    }
}

/// Whether io_uring works here. The probe creates and drops a ring; tearing a ring down
/// interrupts a blocking syscall of the thread that owned it with a spurious EINTR about
/// 15 ms later (seen on Linux 6.18), so the probe runs on a throwaway thread, never on the
/// embedder's (regression test: `start_on_uring_leaves_no_spurious_eintr_on_calling_thread`).
fn uring_available() -> bool {
    std::thread::spawn(monoio::utils::detect_uring)
        .join()
        .unwrap_or(false)
}

/// The io_uring set-up of a worker's ring. With `coop`: `COOP_TASKRUN` (completions are
/// posted when the worker next enters the kernel, which it does on every socket call and
/// when it parks, instead of through an interrupt that preempts it) and `SINGLE_ISSUER` (only
/// the worker thread that made the ring submits to it, which is how thread-per-core works).
/// Measured on the echo scenario: 16% more messages per server CPU-second, see
/// docs/benchmarks.md.
fn uring_builder(coop: bool) -> io_uring::Builder {
    let mut b = io_uring::IoUring::builder();
    if coop {
        b.setup_coop_taskrun().setup_single_issuer();
    }
    b
}

/// Whether this kernel takes the flags of [`uring_builder`] (Linux 6.0 and later): a small
/// ring is made with them once at start.
fn coop_taskrun_available() -> bool {
    let ok = std::thread::spawn(|| uring_builder(true).build(8).is_ok())
        .join()
        .unwrap_or(false);
    if ok {
        tracing::debug!("io_uring: COOP_TASKRUN and SINGLE_ISSUER on");
    } else {
        tracing::info!(
            "io_uring: this kernel refuses COOP_TASKRUN or SINGLE_ISSUER (before Linux 6.0); \
             rings use the default set-up"
        );
    }
    ok
}

/// Aborts the process when a worker thread unwinds: a dead worker would leave a silent hole
/// (its listener still takes connections that nobody serves).
struct PanicGuard(usize);

impl Drop for PanicGuard {
    fn drop(&mut self) {
        if std::thread::panicking() {
            tracing::error!(worker = self.0, "worker panicked; aborting the process");
            eprintln!("corecast: worker {} panicked; aborting", self.0);
            std::process::abort();
        }
    }
}

struct NoopHandler;

impl Handler for NoopHandler {
    fn on_message(&mut self, _: &mut Ctx<'_>, _: ConnId, _: Message<'_>) {}
}

fn bind_all(
    cfg: &Config,
    workers: usize,
    driver: ActiveDriver,
) -> Result<Vec<std::net::TcpListener>, ServerError> {
    let mut out: Vec<std::net::TcpListener> = Vec::with_capacity(workers);
    let mut addr = cfg.listen;
    for _ in 0..workers {
        let l = bind_one(addr, cfg.backlog, driver)
            .map_err(|source| ServerError::Bind { addr, source })?;
        if addr.port() == 0 {
            addr = l
                .local_addr()
                .map_err(|source| ServerError::Bind { addr, source })?;
        }
        out.push(l);
    }
    Ok(out)
}

fn bind_one(
    addr: SocketAddr,
    backlog: u32,
    driver: ActiveDriver,
) -> std::io::Result<std::net::TcpListener> {
    use socket2::{Domain, Socket, Type};
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    s.set_reuse_address(true)?;
    s.set_reuse_port(true)?;
    if addr.is_ipv6() {
        let _ = s.set_only_v6(false);
    }
    // epoll needs non-blocking sockets; io_uring handles blocking ones itself.
    s.set_nonblocking(driver == ActiveDriver::Epoll)?;
    s.bind(&addr.into())?;
    s.listen(backlog.min(i32::MAX as u32) as i32)?;
    Ok(s.into())
}

/// The process-wide connection limit, shared by the workers: touched once per accepted and
/// once per closed connection (never per message).
#[derive(Debug)]
pub(crate) struct ConnLimit {
    max: usize,
    live: std::sync::atomic::AtomicUsize,
}

impl ConnLimit {
    fn new(max: usize) -> Self {
        ConnLimit {
            max,
            live: std::sync::atomic::AtomicUsize::new(0),
        }
    }

    /// Take a slot; `false` when the process is full.
    pub(crate) fn acquire(&self) -> bool {
        use std::sync::atomic::Ordering::Relaxed;
        if self.live.fetch_add(1, Relaxed) >= self.max {
            self.live.fetch_sub(1, Relaxed);
            return false;
        }
        true
    }

    /// Give a slot back.
    pub(crate) fn release(&self) {
        self.live.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

struct Shared {
    bells: Vec<Arc<Bell>>,
    stats: Vec<Arc<WorkerStats>>,
    /// The certificate of a wss:// listener, for reload.
    tls: Option<Arc<tls::CertStore>>,
}

/// A running corecast server.
pub struct Server {
    addr: SocketAddr,
    driver: ActiveDriver,
    threads: Vec<JoinHandle<std::io::Result<()>>>,
    shared: Arc<Shared>,
}

/// A cloneable, `Send` handle that starts the drain of a [`Server`] from any thread.
#[derive(Clone)]
pub struct ShutdownHandle {
    shared: Arc<Shared>,
}

impl ShutdownHandle {
    /// Stop accepting and close every connection with 1001, spread over `window`.
    pub fn drain(&self, window: Duration) {
        for b in &self.shared.bells {
            b.ring(window);
        }
    }

    /// Whether a drain has started.
    pub fn draining(&self) -> bool {
        self.shared.bells.iter().any(|b| b.rung())
    }

    /// The counters of each worker.
    pub fn worker_stats(&self) -> Vec<Stats> {
        self.shared
            .stats
            .iter()
            .map(|w| {
                let mut s = Stats::default();
                s.add(w);
                s
            })
            .collect()
    }

    /// How long ago each worker's timer loop last ran: a worker stuck in a long computation
    /// or a blocked system call stops ticking (it ticks every 100 ms).
    pub fn heartbeat_ages(&self) -> Vec<Duration> {
        let now = stats::monotonic_ms();
        self.shared
            .stats
            .iter()
            .map(|w| Duration::from_millis(now.saturating_sub(w.heartbeat_ms.get())))
            .collect()
    }

    /// The counters, summed over workers.
    pub fn stats(&self) -> Stats {
        let mut s = Stats::default();
        for w in &self.shared.stats {
            s.add(w);
        }
        s
    }

    /// Read the TLS certificate and key files again: handshakes from now on use the new
    /// pair, open connections keep theirs. On error the old pair stays in use.
    pub fn reload_tls(&self) -> Result<(), tls::TlsError> {
        match &self.shared.tls {
            Some(store) => store.reload(),
            None => Err(tls::TlsError::NotConfigured),
        }
    }

    /// Whether the listener speaks TLS (wss://).
    pub fn tls_enabled(&self) -> bool {
        self.shared.tls.is_some()
    }
}

impl Server {
    /// A builder with `config`.
    pub fn builder(config: Config) -> ServerBuilder {
        ServerBuilder {
            config,
            factory: None,
            hook: None,
        }
    }

    /// The address the workers listen on (the real port when the config said 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The io driver in use.
    pub fn driver(&self) -> ActiveDriver {
        self.driver
    }

    /// A handle to drain the server from another thread (a signal handler thread, a test).
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        ShutdownHandle {
            shared: self.shared.clone(),
        }
    }

    /// The counters, summed over workers.
    pub fn stats(&self) -> Stats {
        self.shutdown_handle().stats()
    }

    /// Start the drain (see [`ShutdownHandle::drain`]).
    pub fn drain(&self, window: Duration) {
        self.shutdown_handle().drain(window);
    }

    /// Reload the TLS certificate (see [`ShutdownHandle::reload_tls`]).
    pub fn reload_tls(&self) -> Result<(), tls::TlsError> {
        self.shutdown_handle().reload_tls()
    }

    /// Whether the listener speaks TLS (wss://).
    pub fn tls_enabled(&self) -> bool {
        self.shared.tls.is_some()
    }

    /// Wait for every worker to finish (after a drain).
    pub fn join(self) -> Result<(), ServerError> {
        let mut result = Ok(());
        for (i, t) in self.threads.into_iter().enumerate() {
            match t.join() {
                Ok(Ok(())) => {}
                Ok(Err(source)) => result = Err(ServerError::Worker { worker: i, source }),
                Err(_) => result = Err(ServerError::WorkerPanicked(i)),
            }
        }
        result
    }
}

/// The CPUs this process may run on, in increasing order (never empty: CPU 0 when the
/// affinity cannot be read).
fn allowed_cpus() -> Vec<usize> {
    use nix::{sched::sched_getaffinity, sched::CpuSet, unistd::Pid};
    let cpus: Vec<usize> = match sched_getaffinity(Pid::from_raw(0)) {
        Ok(set) => (0..CpuSet::count())
            .filter(|&c| set.is_set(c).unwrap_or(false))
            .collect(),
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the CPU affinity; pinning from CPU 0");
            Vec::new()
        }
    };
    if cpus.is_empty() {
        vec![0]
    } else {
        cpus
    }
}
