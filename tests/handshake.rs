//! The HTTP upgrade under each io driver: bad requests get the right status (and the server
//! closes), a handshake hook rejects or accepts by path, and a configured subprotocol is
//! selected and echoed.

mod common;

use std::net::SocketAddr;

use common::*;
use corecast::{
    proto::handshake::Request,
    server::{ConnId, Ctx, Handler, HookDecision, Message, OpenInfo, Server},
    Config,
};
use tungstenite::client::IntoClientRequest;

/// `(what, request, status)` for requests that must not be upgraded.
fn bad_requests(addr: SocketAddr) -> Vec<(&'static str, String, u16)> {
    let key = "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";
    vec![
        (
            "missing Upgrade",
            format!(
                "GET / HTTP/1.1\r\nHost: {addr}\r\nConnection: Upgrade\r\n{key}\
                 Sec-WebSocket-Version: 13\r\n\r\n"
            ),
            400,
        ),
        (
            "missing Sec-WebSocket-Key",
            format!(
                "GET / HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                 Sec-WebSocket-Version: 13\r\n\r\n"
            ),
            400,
        ),
        (
            "POST",
            format!(
                "POST / HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                 {key}Sec-WebSocket-Version: 13\r\nContent-Length: 0\r\n\r\n"
            ),
            400,
        ),
        (
            "HTTP/1.0",
            format!(
                "GET / HTTP/1.0\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                 {key}Sec-WebSocket-Version: 13\r\n\r\n"
            ),
            400,
        ),
        (
            "Sec-WebSocket-Version: 8",
            format!(
                "GET / HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                 {key}Sec-WebSocket-Version: 8\r\n\r\n"
            ),
            426,
        ),
        (
            "9 KiB of headers",
            upgrade_request(
                addr,
                "/",
                &format!("X-Padding: {}\r\n", "p".repeat(9 * 1024)),
            ),
            431,
        ),
    ]
}

#[test]
fn bad_upgrade_requests_get_their_status_and_are_closed() {
    for driver in drivers() {
        let srv = start_echo(test_config(driver));
        let cases = bad_requests(srv.addr);
        for (what, req, want) in &cases {
            let (status, head, _body) = http_exchange(srv.addr, req.as_bytes());
            assert_eq!(status, *want, "{driver:?}: {what}: {head}");
            let lower = head.to_ascii_lowercase();
            assert!(
                lower.contains("connection: close"),
                "{driver:?}: {what}: {head}"
            );
            if *want == 426 {
                assert!(
                    head.lines()
                        .any(|l| l.eq_ignore_ascii_case("Sec-WebSocket-Version: 13")),
                    "{driver:?}: 426 must name version 13: {head}"
                );
            }
        }
        assert!(
            wait_until(std::time::Duration::from_secs(3), || srv
                .stats()
                .connections
                == 0),
            "{driver:?}: {:?}",
            srv.stats()
        );
        let stats = srv.stats();
        assert_eq!(
            stats.handshake_rejected,
            cases.len() as u64,
            "{driver:?}: {stats:?}"
        );
        assert_eq!(stats.opened, 0, "{driver:?}: {stats:?}");
    }
}

#[test]
fn valid_upgrade_gets_101_with_accept_key() {
    for driver in drivers() {
        let srv = start_echo(test_config(driver));
        let (head, _s) = send_upgrade(srv.addr, &upgrade_request(srv.addr, "/", ""));
        assert!(head.starts_with("HTTP/1.1 101 "), "{driver:?}: {head}");
        // RFC 6455 1.3's sample key and its answer.
        assert!(
            head.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"),
            "{driver:?}: {head}"
        );
        assert!(
            !head.contains("Sec-WebSocket-Protocol"),
            "{driver:?}: none configured: {head}"
        );
        assert!(
            wait_until(std::time::Duration::from_secs(2), || srv.stats().opened
                == 1),
            "{driver:?}: {:?}",
            srv.stats()
        );
    }
}

/// Tells each client, on open, the path and subprotocol it connected with; then echoes.
struct Announce;

impl Handler for Announce {
    fn on_open(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, info: &OpenInfo<'_>) {
        let text = format!(
            "path={} protocol={}",
            info.path,
            info.protocol.unwrap_or("-")
        );
        ctx.send_text(conn, &text).unwrap();
    }

    fn on_message(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, msg: Message<'_>) {
        if let Message::Text(t) = msg {
            let _ = ctx.send_text(conn, t);
        }
    }
}

fn start_with_hook(config: Config) -> TestServer {
    start(
        Server::builder(config)
            .handler(|_| Announce)
            .handshake_hook(|req: &Request<'_, '_>, _peer: SocketAddr| {
                if req.path.starts_with("/private") {
                    HookDecision::Reject {
                        status: 403,
                        reason: "no entry".into(),
                    }
                } else {
                    HookDecision::Accept
                }
            }),
    )
}

#[test]
fn hook_rejects_with_403_and_accepts_others() {
    for driver in drivers() {
        let srv = start_with_hook(test_config(driver));
        let req = upgrade_request(srv.addr, "/private/room?x=1", "");
        let (status, head, body) = http_exchange(srv.addr, req.as_bytes());
        assert_eq!(status, 403, "{driver:?}: {head}");
        assert!(body.contains("no entry"), "{driver:?}: body {body:?}");

        let mut ws = connect_with(srv.addr, "/public/room?x=1", Default::default());
        let hello = read_data(&mut ws).into_text().unwrap();
        assert_eq!(hello.as_str(), "path=/public/room protocol=-", "{driver:?}");
        ws.send(tungstenite::Message::text("through")).unwrap();
        assert_eq!(
            read_data(&mut ws).into_text().unwrap().as_str(),
            "through",
            "{driver:?}"
        );

        let stats = srv.stats();
        assert_eq!(
            (stats.handshake_rejected, stats.opened),
            (1, 1),
            "{driver:?}: {stats:?}"
        );
    }
}

#[test]
fn configured_subprotocol_is_selected_and_echoed() {
    for driver in drivers() {
        let cfg = Config {
            subprotocols: vec!["chat.v2".into(), "chat.v1".into()],
            ..test_config(driver)
        };
        let srv = start_with_hook(cfg);

        // Raw: the first offered protocol that the server supports is echoed.
        let req = upgrade_request(srv.addr, "/", "Sec-WebSocket-Protocol: mqtt, chat.v1\r\n");
        let (head, mut s) = send_upgrade(srv.addr, &req);
        assert!(head.starts_with("HTTP/1.1 101"), "{driver:?}: {head}");
        assert!(
            head.contains("\r\nSec-WebSocket-Protocol: chat.v1\r\n"),
            "{driver:?}: {head}"
        );
        let hello = read_frame(&mut s).expect("hello");
        assert_eq!(hello.payload, b"path=/ protocol=chat.v1", "{driver:?}");

        // tungstenite offering both: it checks the answer names one it offered.
        let mut req = format!("ws://{}/", srv.addr).into_client_request().unwrap();
        req.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            "chat.v2, chat.v1".parse().unwrap(),
        );
        let stream = std::net::TcpStream::connect(srv.addr).unwrap();
        stream.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
        let (mut ws, resp) = tungstenite::client(req, stream).expect("handshake");
        let proto = resp
            .headers()
            .get("Sec-WebSocket-Protocol")
            .map(|v| v.to_str().unwrap());
        assert_eq!(proto, Some("chat.v2"), "{driver:?}");
        assert_eq!(
            read_data(&mut ws).into_text().unwrap().as_str(),
            "path=/ protocol=chat.v2",
            "{driver:?}"
        );

        // Offering only unknown protocols: upgraded without a protocol.
        let req = upgrade_request(srv.addr, "/", "Sec-WebSocket-Protocol: mqtt\r\n");
        let (head, _s) = send_upgrade(srv.addr, &req);
        assert!(head.starts_with("HTTP/1.1 101"), "{driver:?}: {head}");
        assert!(
            !head.contains("Sec-WebSocket-Protocol"),
            "{driver:?}: {head}"
        );
    }
}
