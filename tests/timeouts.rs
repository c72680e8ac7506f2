//! Deadlines under each io driver: a slowloris handshake is dropped after handshake_timeout;
//! a client that never answers pings is closed after ping_interval + pong_timeout, while one
//! that answers stays connected.

mod common;

use std::{
    io::{ErrorKind, Write},
    net::TcpStream,
    time::{Duration, Instant},
};

use common::*;
use corecast::Config;
use tungstenite::Message;

#[test]
fn slowloris_handshake_is_closed_after_handshake_timeout() {
    for driver in drivers() {
        let cfg = Config {
            handshake_timeout: Duration::from_millis(500),
            ..test_config(driver)
        };
        let srv = start_echo(cfg);
        let mut s = TcpStream::connect(srv.addr).unwrap();
        let started = Instant::now();
        // Half a request, then silence.
        s.write_all(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n")
            .unwrap();
        assert!(
            closed_within(&mut s, Duration::from_secs(3)),
            "{driver:?}: a stalled handshake is still open after 3 s"
        );
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(400),
            "{driver:?}: closed too early: {took:?}"
        );
        assert!(
            wait_until(Duration::from_secs(2), || srv.stats().handshake_timeouts
                == 1),
            "{driver:?}: {:?}",
            srv.stats()
        );
        let stats = srv.stats();
        assert_eq!(
            (stats.opened, stats.connections),
            (0, 0),
            "{driver:?}: {stats:?}"
        );
    }
}

#[test]
fn idle_tcp_connection_without_request_is_closed_after_handshake_timeout() {
    for driver in drivers() {
        let cfg = Config {
            handshake_timeout: Duration::from_millis(500),
            ..test_config(driver)
        };
        let srv = start_echo(cfg);
        let mut s = TcpStream::connect(srv.addr).unwrap();
        assert!(closed_within(&mut s, Duration::from_secs(3)), "{driver:?}");
        assert!(
            wait_until(Duration::from_secs(2), || srv.stats().handshake_timeouts
                == 1),
            "{driver:?}: {:?}",
            srv.stats()
        );
    }
}

fn heartbeat_config(driver: corecast::Driver) -> Config {
    Config {
        ping_interval: Duration::from_secs(1),
        pong_timeout: Duration::from_millis(500),
        ..test_config(driver)
    }
}

#[test]
fn silent_client_is_closed_after_heartbeat_timeout() {
    for driver in drivers() {
        let srv = start_echo(heartbeat_config(driver));
        let mut s = raw_ws(srv.addr);
        let started = Instant::now();
        // The server pings; this client reads but never answers.
        let ping = read_frame(&mut s).expect("a ping before the close");
        assert_eq!(ping.opcode, 0x9, "{driver:?}: {ping:?}");
        let (code, reason) = read_close_frame(&mut s);
        assert_eq!(code, 1001, "{driver:?}: {reason}");
        assert!(
            closed_within(&mut s, Duration::from_secs(3)),
            "{driver:?}: TCP still open"
        );
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(1200) && took < Duration::from_secs(4),
            "{driver:?}: closed after {took:?}, expected about 1.5 s"
        );
        let stats = srv.stats();
        assert_eq!(stats.heartbeat_timeouts, 1, "{driver:?}: {stats:?}");
        assert!(stats.pings_sent >= 1, "{driver:?}: {stats:?}");
    }
}

#[test]
fn client_answering_pings_stays_connected() {
    for driver in drivers() {
        // Pings every 0.5 s, closed after 2.5 s of silence: a client must stall for 2 s after
        // a ping to be dropped (a loaded CI machine can stall a thread for 0.5 s), and a
        // server that ignored the pongs would still close this one at 2.5 s, well inside the
        // 6 s run.
        let srv = start_echo(Config {
            ping_interval: Duration::from_millis(500),
            pong_timeout: Duration::from_secs(2),
            ..test_config(driver)
        });
        let mut ws = connect(srv.addr);
        ws.get_mut()
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let started = Instant::now();
        let mut pings = 0;
        // Keep reading (tungstenite answers each ping with a pong) for well past 2.5 s.
        while started.elapsed() < Duration::from_secs(6) {
            match ws_read(&mut ws) {
                Ok(Message::Ping(_)) => pings += 1,
                Ok(other) => panic!("{driver:?}: unexpected {other:?}"),
                Err(tungstenite::Error::Io(e))
                    if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(e) => panic!("{driver:?}: dropped after {:?}: {e}", started.elapsed()),
            }
        }
        assert!(pings >= 4, "{driver:?}: {pings} pings in 6 s");
        ws.get_mut().set_read_timeout(Some(READ_TIMEOUT)).unwrap();
        ws.send(Message::text("still here")).unwrap();
        assert_eq!(
            read_data(&mut ws).into_text().unwrap().as_str(),
            "still here",
            "{driver:?}"
        );
        let stats = srv.stats();
        assert_eq!(stats.heartbeat_timeouts, 0, "{driver:?}: {stats:?}");
        assert_eq!(stats.connections, 1, "{driver:?}: {stats:?}");
    }
}
