//! The admin HTTP listener (127.0.0.1:9002 by default): `POST /publish` for backends that
//! publish without a WebSocket, and `GET /stats` with the counters as JSON.
//!
//! Plain blocking HTTP/1.1 with keep-alive on a small fixed pool of threads, away from the
//! workers: nothing here touches the hot path except the one item a publish sends to the
//! topic's owner worker.

use std::{
    io::{self, Read, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use bytes::Bytes;

use crate::{
    pubsub::{PubSubService, PublishError, Publisher},
    server::{ActiveDriver, ShutdownHandle},
};

/// Threads serving admin connections.
const THREADS: usize = 4;
/// Largest request head.
const MAX_HEAD: usize = 16 * 1024;
/// Idle keep-alive connections are closed after this.
const IDLE: Duration = Duration::from_secs(30);
/// How long a publish waits for the owner worker's answer.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(5);

/// What the admin API reads and calls.
pub struct AdminState {
    /// The pub/sub layer.
    pub pubsub: Arc<PubSubService>,
    /// The server's counters and drain state.
    pub server: ShutdownHandle,
    /// The io driver in use.
    pub driver: ActiveDriver,
    /// Largest publish body accepted.
    pub max_body: usize,
}

/// A running admin listener; stops accepting when dropped.
pub struct Admin {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl Admin {
    /// Bind `addr` and serve on a small pool of threads.
    pub fn start(addr: SocketAddr, state: AdminState) -> io::Result<Admin> {
        let listener = TcpListener::bind(addr)?;
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let state = Arc::new(state);
        let started = Instant::now();
        let (tx, rx) = crossbeam_channel::bounded::<TcpStream>(256);
        let mut threads = Vec::with_capacity(THREADS + 1);
        for i in 0..THREADS {
            let rx = rx.clone();
            let state = state.clone();
            let publisher = state.pubsub.publisher();
            threads.push(
                std::thread::Builder::new()
                    .name(format!("corecast-admin{i}"))
                    .spawn(move || {
                        for stream in rx {
                            let _ = serve(stream, &state, &publisher, started);
                        }
                    })?,
            );
        }
        let stop2 = stop.clone();
        threads.push(
            std::thread::Builder::new()
                .name("corecast-admin".into())
                .spawn(move || {
                    for stream in listener.incoming() {
                        if stop2.load(Ordering::Relaxed) {
                            break;
                        }
                        let Ok(stream) = stream else { continue };
                        if let Err(crossbeam_channel::TrySendError::Full(mut stream)) =
                            tx.try_send(stream)
                        {
                            let _ = respond(
                                &mut stream,
                                503,
                                "application/json",
                                br#"{"error":"busy","message":"admin API overloaded"}"#,
                                false,
                            );
                        }
                    }
                })?,
        );
        tracing::info!(%addr, "admin API listening");
        Ok(Admin {
            addr,
            stop,
            threads,
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for Admin {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_millis(100));
        self.threads.clear();
    }
}

/// A parsed request.
struct Request {
    method: String,
    path: String,
    query: String,
    content_type: Option<String>,
    body: Vec<u8>,
    keep_alive: bool,
}

/// Why a request could not be read.
enum ReadError {
    Closed,
    Bad(u16, &'static str),
}

fn read_request(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    max_body: usize,
) -> Result<Request, ReadError> {
    loop {
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut req = httparse::Request::new(&mut headers);
        match req.parse(buf) {
            Ok(httparse::Status::Complete(head)) => {
                let method = req.method.unwrap_or("").to_string();
                let target = req.path.unwrap_or("/");
                let (path, query) = match target.split_once('?') {
                    Some((p, q)) => (p.to_string(), q.to_string()),
                    None => (target.to_string(), String::new()),
                };
                let mut len = 0usize;
                let mut content_type = None;
                let mut keep_alive = req.version == Some(1);
                for h in req.headers.iter() {
                    if h.name.eq_ignore_ascii_case("content-length") {
                        len = std::str::from_utf8(h.value)
                            .ok()
                            .and_then(|v| v.trim().parse().ok())
                            .ok_or(ReadError::Bad(400, "bad Content-Length"))?;
                    } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                        return Err(ReadError::Bad(411, "send a Content-Length"));
                    } else if h.name.eq_ignore_ascii_case("content-type") {
                        content_type = std::str::from_utf8(h.value).ok().map(str::to_string);
                    } else if h.name.eq_ignore_ascii_case("connection") {
                        let v = String::from_utf8_lossy(h.value).to_ascii_lowercase();
                        if v.contains("close") {
                            keep_alive = false;
                        } else if v.contains("keep-alive") {
                            keep_alive = true;
                        }
                    }
                }
                if len > max_body {
                    return Err(ReadError::Bad(413, "body too large"));
                }
                while buf.len() < head + len {
                    let mut chunk = [0u8; 8192];
                    match stream.read(&mut chunk) {
                        Ok(0) | Err(_) => return Err(ReadError::Closed),
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let body = buf[head..head + len].to_vec();
                buf.drain(..head + len);
                return Ok(Request {
                    method,
                    path,
                    query,
                    content_type,
                    body,
                    keep_alive,
                });
            }
            Ok(httparse::Status::Partial) => {
                if buf.len() > MAX_HEAD {
                    return Err(ReadError::Bad(431, "request head too large"));
                }
            }
            Err(_) => return Err(ReadError::Bad(400, "malformed request")),
        }
        let mut chunk = [0u8; 4096];
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return Err(ReadError::Closed),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

fn serve(
    mut stream: TcpStream,
    state: &AdminState,
    publisher: &Publisher,
    started: Instant,
) -> io::Result<()> {
    stream.set_read_timeout(Some(IDLE))?;
    stream.set_nodelay(true)?;
    let mut buf = Vec::new();
    loop {
        let req = match read_request(&mut stream, &mut buf, state.max_body) {
            Ok(r) => r,
            Err(ReadError::Closed) => return Ok(()),
            Err(ReadError::Bad(status, msg)) => {
                let body = error_body("bad_request", msg);
                return respond(
                    &mut stream,
                    status,
                    "application/json",
                    body.as_bytes(),
                    false,
                );
            }
        };
        let (status, body) = route(&req, state, publisher, started);
        respond(
            &mut stream,
            status,
            "application/json",
            body.as_bytes(),
            req.keep_alive,
        )?;
        if !req.keep_alive {
            return Ok(());
        }
    }
}

fn route(
    req: &Request,
    state: &AdminState,
    publisher: &Publisher,
    started: Instant,
) -> (u16, String) {
    match (req.method.as_str(), req.path.as_str()) {
        ("POST", "/publish") => publish(req, publisher),
        ("GET", "/stats") => (200, stats_json(state, started)),
        (_, "/publish") | (_, "/stats") => (405, error_body("method_not_allowed", "wrong method")),
        _ => (
            404,
            error_body(
                "not_found",
                "no such endpoint; try POST /publish or GET /stats",
            ),
        ),
    }
}

fn publish(req: &Request, publisher: &Publisher) -> (u16, String) {
    let mut topic = None;
    let mut key = None;
    for (k, v) in form_urlencoded::parse(req.query.as_bytes()) {
        match &*k {
            "topic" => topic = Some(v.into_owned()),
            "key" => key = Some(v.into_owned()),
            _ => {}
        }
    }
    let Some(topic) = topic else {
        return (
            400,
            error_body("missing_field", "query parameter `topic` is required"),
        );
    };
    let json = !req
        .content_type
        .as_deref()
        .is_some_and(|t| t.starts_with("application/octet-stream"));
    let data = Bytes::from(req.body.clone());
    match publisher.publish(&topic, data, json, key.as_deref(), PUBLISH_TIMEOUT) {
        Ok(seq) => (200, format!("{{\"seq\":{seq}}}")),
        Err(e) => {
            let status = match e {
                PublishError::Busy | PublishError::Closed => 503,
                PublishError::Timeout => 504,
                _ => 400,
            };
            (status, error_body(e.code(), &e.to_string()))
        }
    }
}

fn stats_json(state: &AdminState, started: Instant) -> String {
    let server = state.server.worker_stats();
    let pubsub = state.pubsub.worker_stats();
    let workers: Vec<_> = server
        .iter()
        .zip(&pubsub)
        .enumerate()
        .map(|(i, (s, p))| serde_json::json!({"worker": i, "server": s, "pubsub": p}))
        .collect();
    let mesh = state.pubsub.mesh();
    let inboxes: Vec<_> = (0..mesh.workers())
        .map(|w| {
            let s = mesh.inbox(w);
            serde_json::json!({"received": s.received, "batches": s.batches, "waits": s.waits, "rings": s.rings})
        })
        .collect();
    serde_json::json!({
        "driver": state.driver.to_string(),
        "uptime_s": started.elapsed().as_secs_f64(),
        "draining": state.server.draining(),
        "total": {"server": state.server.stats(), "pubsub": state.pubsub.stats()},
        "workers": workers,
        "mesh": {"inboxes": inboxes},
    })
    .to_string()
}

fn error_body(code: &str, msg: &str) -> String {
    serde_json::json!({"error": code, "message": msg}).to_string()
}

fn respond(
    stream: &mut TcpStream,
    status: u16,
    ctype: &str,
    body: &[u8],
    keep_alive: bool,
) -> io::Result<()> {
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        411 => "Length Required",
        413 => "Payload Too Large",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Error",
    };
    let conn = if keep_alive { "keep-alive" } else { "close" };
    let head = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: {conn}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(body)?;
    stream.flush()
}
