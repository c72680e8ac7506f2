//! The close handshake under each io driver: a client-initiated close is echoed with the
//! client's code and the server drops TCP; a handler-initiated close reaches the client after
//! the data queued before it, and the handler learns the client's close code.

mod common;

use std::{
    io::Write,
    sync::mpsc,
    time::{Duration, Instant},
};

use common::*;
use corecast::{
    proto::CloseCode,
    server::{ConnId, Ctx, Handler, Message, Server},
};
use tungstenite::protocol::{frame::coding::CloseCode as WsCode, CloseFrame};

#[test]
fn client_close_is_echoed_with_its_code_and_server_drops_tcp() {
    for driver in drivers() {
        let srv = start_echo(test_config(driver));

        // Raw: exact bytes on the wire, then EOF from the server.
        let mut s = raw_ws(srv.addr);
        s.write_all(&client_close(4001, "client done")).unwrap();
        let (code, _) = read_close_frame(&mut s);
        assert_eq!(
            code, 4001,
            "{driver:?}: the server echoes the client's code"
        );
        assert!(
            closed_within(&mut s, Duration::from_secs(3)),
            "{driver:?}: server keeps TCP open"
        );

        // An empty close payload is answered with an empty one.
        let mut s = raw_ws(srv.addr);
        s.write_all(&client_frame(0x8, true, 0, b"")).unwrap();
        let f = read_frame(&mut s).expect("close answer");
        assert_eq!((f.opcode, f.payload.len()), (0x8, 0), "{driver:?}: {f:?}");
        assert!(closed_within(&mut s, Duration::from_secs(3)), "{driver:?}");

        // tungstenite: a normal close with a reason.
        let mut ws = connect(srv.addr);
        ws.close(Some(CloseFrame {
            code: WsCode::Normal,
            reason: "bye".into(),
        }))
        .unwrap();
        let (code, _) = read_close(&mut ws);
        assert_eq!(code, 1000, "{driver:?}");
        assert!(finishes_closed(&mut ws), "{driver:?}");
        assert!(
            closed_within(ws.get_mut(), Duration::from_secs(3)),
            "{driver:?}"
        );

        assert!(
            wait_until(Duration::from_secs(3), || srv.stats().connections == 0),
            "{driver:?}: {:?}",
            srv.stats()
        );
        let stats = srv.stats();
        assert_eq!(
            (stats.closed, stats.close_timeouts),
            (3, 0),
            "{driver:?}: {stats:?}"
        );
    }
}

/// Sends "goodbye" then closes with 4000 when it receives "close me"; reports every
/// `on_close` code.
struct Closer {
    closed: mpsc::Sender<Option<u16>>,
}

impl Handler for Closer {
    fn on_message(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, msg: Message<'_>) {
        if msg == Message::Text("close me") {
            ctx.send_text(conn, "goodbye").unwrap();
            ctx.close(conn, CloseCode(4000), "requested");
        } else if let Message::Text(t) = msg {
            ctx.send_text(conn, t).unwrap();
        }
    }

    fn on_close(&mut self, _ctx: &mut Ctx<'_>, _conn: ConnId, code: Option<CloseCode>) {
        let _ = self.closed.send(code.map(|c| c.0));
    }
}

fn start_closer(driver: corecast::Driver) -> (TestServer, mpsc::Receiver<Option<u16>>) {
    let (tx, rx) = mpsc::channel();
    let server =
        start(Server::builder(test_config(driver)).handler(move |_| Closer { closed: tx.clone() }));
    (server, rx)
}

#[test]
fn handler_initiated_close_reaches_client_after_queued_data() {
    for driver in drivers() {
        let (srv, closes) = start_closer(driver);
        let mut ws = connect(srv.addr);
        ws.send(tungstenite::Message::text("still open?")).unwrap();
        assert_eq!(
            read_data(&mut ws).into_text().unwrap().as_str(),
            "still open?"
        );
        ws.send(tungstenite::Message::text("close me")).unwrap();
        let data = read_data(&mut ws);
        assert_eq!(
            data.into_text().unwrap().as_str(),
            "goodbye",
            "{driver:?}: data first"
        );
        let started = Instant::now();
        let (code, reason) = read_close(&mut ws);
        assert_eq!((code, reason.as_str()), (4000, "requested"), "{driver:?}");
        // tungstenite answers the close on the next read; the server then drops TCP.
        assert!(finishes_closed(&mut ws), "{driver:?}");
        assert!(
            closed_within(ws.get_mut(), Duration::from_secs(3)),
            "{driver:?}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{driver:?}: {:?}",
            started.elapsed()
        );
        // The client echoed 4000: on_close sees it.
        let code = closes
            .recv_timeout(Duration::from_secs(3))
            .expect("on_close runs");
        assert_eq!(code, Some(4000), "{driver:?}");
        let stats = srv.stats();
        assert_eq!(
            stats.close_timeouts, 0,
            "{driver:?}: the client answered: {stats:?}"
        );
        assert_eq!(stats.protocol_errors, 0, "{driver:?}: {stats:?}");
    }
}

#[test]
fn handler_sees_client_close_code() {
    for driver in drivers() {
        let (srv, closes) = start_closer(driver);
        let mut s = raw_ws(srv.addr);
        s.write_all(&client_close(4321, "see you")).unwrap();
        assert_eq!(read_close_frame(&mut s).0, 4321, "{driver:?}");
        let code = closes
            .recv_timeout(Duration::from_secs(3))
            .expect("on_close runs");
        assert_eq!(code, Some(4321), "{driver:?}");

        // A peer that just drops TCP: on_close with no code.
        let s = raw_ws(srv.addr);
        drop(s);
        let code = closes
            .recv_timeout(Duration::from_secs(3))
            .expect("on_close runs");
        assert_eq!(code, None, "{driver:?}");
        assert!(
            wait_until(Duration::from_secs(3), || srv.stats().connections == 0),
            "{driver:?}"
        );
    }
}

#[test]
fn unanswered_server_close_times_out() {
    for driver in drivers() {
        let (tx, _rx) = mpsc::channel();
        let cfg = corecast::Config {
            close_timeout: Duration::from_millis(500),
            ..test_config(driver)
        };
        let server = Server::builder(cfg)
            .handler(move |_| Closer { closed: tx.clone() })
            .start()
            .unwrap();
        let srv = TestServer {
            addr: server.local_addr(),
            server: Some(server),
        };
        let mut s = raw_ws(srv.addr);
        s.write_all(&client_frame(0x1, true, 0, b"close me"))
            .unwrap();
        let echo = read_frame(&mut s).unwrap();
        assert_eq!(echo.payload, b"goodbye", "{driver:?}");
        let started = Instant::now();
        assert_eq!(read_close_frame(&mut s).0, 4000, "{driver:?}");
        // Never answer: the server gives up after close_timeout.
        assert!(
            closed_within(&mut s, Duration::from_secs(3)),
            "{driver:?}: never dropped"
        );
        assert!(
            started.elapsed() >= Duration::from_millis(400),
            "{driver:?}: {:?}",
            started.elapsed()
        );
        assert!(
            wait_until(Duration::from_secs(2), || srv.stats().close_timeouts == 1),
            "{driver:?}: {:?}",
            srv.stats()
        );
    }
}
