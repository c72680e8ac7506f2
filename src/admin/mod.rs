//! The admin HTTP listener (127.0.0.1:9002 by default): `POST /publish` for backends that
//! publish without a WebSocket, `GET /metrics` for Prometheus, `GET /stats` and `GET /topics`
//! as JSON, and the probes `GET /healthz` and `GET /readyz`. With a token configured every
//! endpoint but the probes requires `Authorization: Bearer <token>`.
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

mod metrics;

/// Threads serving admin connections.
const THREADS: usize = 4;
/// Largest request head.
const MAX_HEAD: usize = 16 * 1024;
/// Idle keep-alive connections are closed after this.
const IDLE: Duration = Duration::from_secs(30);
/// How long a publish waits for the owner worker's answer.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(5);
/// A worker whose timer loop has not run for this long is reported not ready.
const STUCK_AFTER: Duration = Duration::from_secs(2);
/// Topics `GET /topics` lists unless `?limit=` says otherwise (at most 1000).
const DEFAULT_TOPICS: usize = 20;

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
    /// When set, every endpoint except `/healthz` and `/readyz` requires
    /// `Authorization: Bearer <token>`.
    pub token: Option<String>,
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
    authorization: Option<Vec<u8>>,
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
                let mut authorization = None;
                let mut keep_alive = req.version == Some(1);
                for h in req.headers.iter() {
                    if h.name.eq_ignore_ascii_case("content-length") {
                        len = std::str::from_utf8(h.value)
                            .ok()
                            .and_then(|v| v.trim().parse().ok())
                            .ok_or(ReadError::Bad(400, "bad Content-Length"))?;
                    } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                        return Err(ReadError::Bad(411, "send a Content-Length"));
                    } else if h.name.eq_ignore_ascii_case("authorization") {
                        authorization = Some(h.value.to_vec());
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
                    authorization,
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
        let reply = route(&req, state, publisher, started);
        respond(
            &mut stream,
            reply.status,
            reply.content_type,
            reply.body.as_bytes(),
            req.keep_alive,
        )?;
        if !req.keep_alive {
            return Ok(());
        }
    }
}

/// An answer: status, content type and body.
struct Reply {
    status: u16,
    content_type: &'static str,
    body: String,
}

impl Reply {
    fn json((status, body): (u16, String)) -> Reply {
        Reply {
            status,
            content_type: "application/json",
            body,
        }
    }
}

/// The endpoints, with the method each takes.
const ENDPOINTS: [(&str, &str); 6] = [
    ("POST", "/publish"),
    ("GET", "/metrics"),
    ("GET", "/stats"),
    ("GET", "/topics"),
    ("GET", "/healthz"),
    ("GET", "/readyz"),
];

fn route(req: &Request, state: &AdminState, publisher: &Publisher, started: Instant) -> Reply {
    let path = req.path.as_str();
    let Some(&(method, _)) = ENDPOINTS.iter().find(|(_, p)| *p == path) else {
        return Reply::json((
            404,
            error_body(
                "not_found",
                "no such endpoint; try POST /publish, GET /metrics, /stats, /topics, /healthz \
                 or /readyz",
            ),
        ));
    };
    // Probes stay open: orchestrators call them without credentials.
    let probe = matches!(path, "/healthz" | "/readyz");
    if !probe {
        if let Some(token) = &state.token {
            if !bearer_matches(req.authorization.as_deref(), token) {
                return Reply::json((
                    401,
                    error_body("unauthorized", "send Authorization: Bearer <admin token>"),
                ));
            }
        }
    }
    if req.method != method {
        return Reply::json((405, error_body("method_not_allowed", "wrong method")));
    }
    match path {
        "/publish" => Reply::json(publish(req, publisher)),
        "/metrics" => Reply {
            status: 200,
            content_type: "text/plain; version=0.0.4; charset=utf-8",
            body: metrics::render(state, started.elapsed().as_secs_f64()),
        },
        "/stats" => Reply::json((200, stats_json(state, started))),
        "/topics" => Reply::json(topics(req, state)),
        "/healthz" => Reply::json((200, r#"{"status":"ok"}"#.to_string())),
        _ => Reply::json(readiness(state)),
    }
}

/// Compare the request's bearer token with ours in time independent of where they differ.
fn bearer_matches(header: Option<&[u8]>, token: &str) -> bool {
    let Some(h) = header else { return false };
    let Some(given) = h
        .strip_prefix(b"Bearer ")
        .or_else(|| h.strip_prefix(b"bearer "))
    else {
        return false;
    };
    let want = token.as_bytes();
    if given.len() != want.len() {
        return false;
    }
    given
        .iter()
        .zip(want)
        .fold(0u8, |acc, (a, b)| acc | (a ^ b))
        == 0
}

/// `GET /readyz`: 200 while every worker's timer loop runs and no drain has started.
fn readiness(state: &AdminState) -> (u16, String) {
    let draining = state.server.draining();
    let ages = state.server.heartbeat_ages();
    let stuck: Vec<usize> = ages
        .iter()
        .enumerate()
        .filter(|(_, a)| **a > STUCK_AFTER)
        .map(|(i, _)| i)
        .collect();
    let ready = !draining && stuck.is_empty();
    let body = serde_json::json!({
        "ready": ready,
        "draining": draining,
        "workers": ages.len(),
        "stuck_workers": stuck,
    })
    .to_string();
    (if ready { 200 } else { 503 }, body)
}

/// `GET /topics?limit=N`: the busiest topics by message rate.
fn topics(req: &Request, state: &AdminState) -> (u16, String) {
    let mut limit = DEFAULT_TOPICS;
    for (k, v) in form_urlencoded::parse(req.query.as_bytes()) {
        if k == "limit" {
            match v.parse::<usize>() {
                Ok(n) if (1..=1000).contains(&n) => limit = n,
                _ => {
                    return (
                        400,
                        error_body("bad_field", "limit must be an integer in 1..=1000"),
                    )
                }
            }
        }
    }
    let top = state.pubsub.top_topics(limit);
    (200, serde_json::json!({ "topics": top }).to_string())
}

/// `POST /publish?topic=T&key=K`: the body is the data of a `pub`, checked by the same rules
/// (see [`Publisher::publish`]); a refusal is 400 with the code a WebSocket `err` would carry.
fn publish(req: &Request, publisher: &Publisher) -> (u16, String) {
    let topic = query_bytes(&req.query, "topic");
    let key = query_bytes(&req.query, "key");
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
                PublishError::Invalid(_) => 400,
                PublishError::Busy | PublishError::Closed | PublishError::TooManyTopics => 503,
                PublishError::Timeout => 504,
            };
            (status, error_body(e.code(), &e.to_string()))
        }
    }
}

/// The last value of `name` in a URL query, form-decoded (`+` is a space, `%XX` a byte) to
/// raw bytes: a value that is not UTF-8 reaches the `pub` rules as it is, not replaced.
fn query_bytes(query: &str, name: &str) -> Option<Vec<u8>> {
    let decode = |s: &str| -> Vec<u8> {
        let plus: Vec<u8> = s
            .bytes()
            .map(|b| if b == b'+' { b' ' } else { b })
            .collect();
        percent_encoding::percent_decode(&plus).collect()
    };
    query
        .split('&')
        .rev()
        .filter(|pair| !pair.is_empty())
        .map(|pair| pair.split_once('=').unwrap_or((pair, "")))
        .find(|(k, _)| decode(k) == name.as_bytes())
        .map(|(_, v)| decode(v))
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
        401 => "Unauthorized",
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
    let auth = if status == 401 {
        "WWW-Authenticate: Bearer realm=\"corecast-admin\"\r\n"
    } else {
        ""
    };
    let head = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\n{auth}Connection: {conn}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(body)?;
    stream.flush()
}
