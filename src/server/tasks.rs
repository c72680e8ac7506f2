//! A worker's async tasks: the accept loop, the timer loop, the handler's wakeup loop, one
//! task per connection (wait for readiness or a kick, then read or write), and the drain.
//!
//! Everything here waits; what happens after a wait is in [`worker`](super::worker).

use std::{
    rc::Rc,
    sync::Arc,
    time::{Duration, Instant},
};

use monoio::net::TcpStream;

use super::{
    bell::Bell, conn::Conn, core::TICK, handler::Wakeup, stats::monotonic_ms, worker::Worker,
};

/// The worker's tasks: accept loop, timer loop, and the drain when the bell rings.
pub(crate) async fn main(w: Rc<Worker>, listener: monoio::net::TcpListener, bell: Arc<Bell>) {
    let accept = monoio::spawn(accept_loop(w.clone(), listener, bell.clone()));
    let timers = monoio::spawn(timer_loop(w.clone()));
    let wakeup = w.wakeup.borrow_mut().take();
    let events = wakeup.map(|src| monoio::spawn(event_loop(w.clone(), src)));
    let window = bell.wait().await;
    w.draining.set(true);
    accept.await;
    drain(&w, window).await;
    drop(timers);
    drop(events);
}

async fn event_loop(w: Rc<Worker>, src: Rc<dyn Wakeup>) {
    while src.clone().wait().await {
        w.core.refresh_clock();
        w.end_of_wake();
    }
}

async fn accept_loop(w: Rc<Worker>, listener: monoio::net::TcpListener, bell: Arc<Bell>) {
    let mut last_err = None::<Instant>;
    loop {
        let accepted = monoio::select! {
            r = listener.accept() => r,
            _ = bell.wait() => return,
        };
        match accepted {
            Ok((stream, addr)) => {
                w.core.refresh_clock();
                if let Some(conn) = w.admit(&stream, addr) {
                    monoio::spawn(run(w.clone(), stream, conn));
                }
            }
            Err(e) => {
                // EMFILE and friends: say so at most once a second, and back off briefly.
                if last_err.map_or(true, |t| t.elapsed() > Duration::from_secs(1)) {
                    tracing::warn!(worker = w.core.id, error = %e, "accept failed");
                    last_err = Some(Instant::now());
                }
                monoio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

async fn timer_loop(w: Rc<Worker>) {
    let mut due = Vec::new();
    loop {
        monoio::time::sleep(TICK).await;
        w.core.stats.heartbeat_ms.set(monotonic_ms());
        w.on_tick(&mut due);
    }
}

enum Wake {
    Read,
    Write,
    Kick,
    Error,
}

/// The connection task: wait for readiness, read and process, write, until the end.
async fn run(w: Rc<Worker>, stream: TcpStream, conn: Rc<Conn>) {
    let cfg = w.core.set.conn;
    while !conn.is_dead() {
        // One readiness wait at a time, plus the kick: a blocked write waits for writability
        // only (the peer is not reading, so we stop reading too); otherwise we wait to read
        // unless our queue for this peer is over half its bound. Keeping a single operation
        // in the wait keeps this future, which every idle connection holds, small.
        let wake = if conn.write_blocked.get() {
            monoio::select! {
                r = stream.writable(false) => if r.is_ok() { Wake::Write } else { Wake::Error },
                _ = conn.kicked() => Wake::Kick,
            }
        } else if !conn.state().read_paused(&cfg) {
            monoio::select! {
                r = stream.readable(false) => if r.is_ok() { Wake::Read } else { Wake::Error },
                _ = conn.kicked() => Wake::Kick,
            }
        } else {
            conn.kicked().await;
            Wake::Kick
        };
        w.core.refresh_clock();
        match wake {
            Wake::Read => w.on_readable(&conn),
            Wake::Write => {
                conn.write_blocked.set(false);
                w.core.flush(&conn);
            }
            Wake::Kick => {}
            Wake::Error => conn.kill(),
        }
        w.end_of_wake();
    }
    w.finish(&conn);
    drop(stream);
}

/// Close every connection with 1001 in batches spread over `window`, wait for the answers
/// (each connection has its own close deadline), then drop whatever is left.
async fn drain(w: &Rc<Worker>, window: Duration) {
    let ids = w.conn_ids();
    let batches = (window.as_millis() / TICK.as_millis()).max(1) as usize;
    let per_batch = ids.len().div_ceil(batches).max(1);
    tracing::info!(
        worker = w.core.id,
        connections = ids.len(),
        ?window,
        "draining"
    );
    let mut chunks = ids.chunks(per_batch).peekable();
    while let Some(chunk) = chunks.next() {
        w.core.refresh_clock();
        w.drain_some(chunk);
        if chunks.peek().is_some() {
            monoio::time::sleep(TICK).await;
        }
    }
    // Each connection's close deadline (close_timeout) bounds this; the timer loop kills
    // connections past it. Allow one extra second for the kills to land.
    let close = TICK * (w.core.set.conn.close_ticks as u32);
    let limit = Instant::now() + close + Duration::from_secs(1);
    while !w.core.conns.borrow().is_empty() && Instant::now() < limit {
        monoio::time::sleep(Duration::from_millis(20)).await;
    }
    w.kill_all();
    for _ in 0..50 {
        if w.core.conns.borrow().is_empty() {
            break;
        }
        monoio::time::sleep(Duration::from_millis(2)).await;
    }
}
