//! RFC 6455 4.1/4.2 opening handshake: the accept key, case-insensitive header names and
//! values, `Connection` lists, subprotocol negotiation, frames pipelined behind the request,
//! and the rejections: 400 for a missing or invalid field, 426 (with
//! `Sec-WebSocket-Version: 13`) for another version, 431 for an oversized head.
//! Also Autobahn 12/13's precondition: permessage-deflate is not negotiated. Beyond the RFC:
//! a handshake hook rejects or accepts by path, and `on_open` sees the path and the
//! negotiated subprotocol.

use std::{net::SocketAddr, time::Duration};

use corecast::{
    proto::handshake::{accept_key, Request},
    server::{ConnId, Ctx, Handler, HookDecision, Message, OpenInfo, Server},
    Config,
};
use tungstenite::client::IntoClientRequest;

use crate::{
    common::{
        connect_with, drivers, http_exchange, http_reject, op, read_data, read_frame, send_upgrade,
        start, test_config, upgrade_request, wait_until, HttpResponse, RawClient, TestServer,
        READ_TIMEOUT, RFC_ACCEPT, RFC_KEY,
    },
    each_driver, each_driver_with, Env,
};

/// A request with these header lines (each ending in `\r\n`) and nothing else.
fn request(lines: &str) -> Vec<u8> {
    format!("GET /chat HTTP/1.1\r\n{lines}\r\n").into_bytes()
}

fn host(addr: SocketAddr) -> String {
    format!("Host: {addr}\r\n")
}

fn upgrade_via(env: &Env, case: &str, req: &[u8]) -> RawClient {
    RawClient::connect_raw(env.addr(), env.ctx(case), req, &[])
}

/// RFC 6455 1.3 / 4.2.2: the key "dGhlIHNhbXBsZSBub25jZQ==" is answered with
/// "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" (checked inside `connect`), and the connection then works.
#[test]
fn accept_key_matches_rfc_example() {
    assert_eq!(accept_key(RFC_KEY.as_bytes()), RFC_ACCEPT);
    each_driver(|env| {
        let mut c = env.connect("RFC accept key");
        assert!(
            c.response.rest.is_empty(),
            "[{}] bytes after the 101 head",
            c.ctx
        );
        assert_eq!(c.response.header("sec-websocket-protocol"), None);
        assert_eq!(c.response.header("sec-websocket-extensions"), None);
        c.send_text("after upgrade");
        c.expect_text("after upgrade");
        c.close_normally();

        // Another key: the answer follows the key.
        let key = "x3JJHMbDL1EzLkh9GBhXDw==";
        let mut s = crate::common::tcp(env.addr(), &env.ctx("other key"));
        let req = format!(
            "GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        );
        std::io::Write::write_all(&mut s, req.as_bytes()).unwrap();
        let resp = crate::common::read_http_head(&mut s, &env.ctx("other key"));
        assert_eq!(resp.status, 101, "{}", env.ctx("other key"));
        assert_eq!(
            resp.header("sec-websocket-accept"),
            Some(accept_key(key.as_bytes()).as_str()),
            "{}",
            env.ctx("other key")
        );
        // Both upgrades count as opened.
        assert!(
            wait_until(Duration::from_secs(2), || env.server.stats().opened == 2),
            "{}: {:?}",
            env.ctx("opened"),
            env.server.stats()
        );
    });
}

/// Header names and the Upgrade / Connection tokens are case-insensitive; optional
/// whitespace around values is ignored.
#[test]
fn header_names_and_values_are_case_insensitive() {
    each_driver(|env| {
        let variants = [
            format!(
                "hOsT: {}\r\nuPgRaDe: WebSocket\r\ncOnNeCtIoN: uPgRaDe\r\n\
                 sec-websocket-key: {RFC_KEY}\r\nSEC-WEBSOCKET-VERSION: 13\r\n",
                env.addr()
            ),
            format!(
                "HOST: {}\r\nUPGRADE: WEBSOCKET\r\nCONNECTION: UPGRADE\r\n\
                 SEC-WEBSOCKET-KEY: {RFC_KEY}\r\nSec-Websocket-Version: 13\r\n",
                env.addr()
            ),
            format!(
                "Host:{}\r\nUpgrade:   websocket  \r\nConnection:\tUpgrade\r\n\
                 Sec-WebSocket-Key:  {RFC_KEY} \r\nSec-WebSocket-Version: 13\r\n",
                env.addr()
            ),
        ];
        for (i, lines) in variants.iter().enumerate() {
            let mut c = upgrade_via(env, &format!("case variant {i}"), &request(lines));
            c.send_text("ok");
            c.expect_text("ok");
            c.close_normally();
        }
    });
}

/// `Connection` is a list: "keep-alive, Upgrade" (as Firefox sends it) and other spellings
/// are accepted; so is a request with extra, unrelated headers (Origin, User-Agent, ...).
#[test]
fn connection_keep_alive_upgrade_is_accepted() {
    each_driver(|env| {
        for conn in [
            "keep-alive, Upgrade",
            "Upgrade, keep-alive",
            "keep-alive,upgrade",
            "close, Upgrade, foo",
        ] {
            let lines = format!(
                "{}Upgrade: websocket\r\nConnection: {conn}\r\nSec-WebSocket-Key: {RFC_KEY}\r\n\
                 Sec-WebSocket-Version: 13\r\nOrigin: http://example.com\r\n\
                 User-Agent: conformance\r\nAccept-Encoding: gzip\r\n",
                host(env.addr())
            );
            let mut c = upgrade_via(env, &format!("Connection: {conn}"), &request(&lines));
            c.send_binary(b"ok");
            c.expect_binary(b"ok");
            c.close_normally();
        }
    });
}

/// Config.subprotocols: the server picks the first protocol the client offered that it
/// supports (client order, across repeated headers), and none when nothing matches.
#[test]
fn subprotocol_negotiation() {
    each_driver_with(
        |c| c.subprotocols = vec!["chat.v2".into(), "chat.v1".into(), "mqtt".into()],
        |env| {
            let cases: [(&str, Option<&str>); 7] = [
                (
                    "Sec-WebSocket-Protocol: chat.v1, chat.v2\r\n",
                    Some("chat.v1"),
                ),
                (
                    "Sec-WebSocket-Protocol: chat.v2, chat.v1\r\n",
                    Some("chat.v2"),
                ),
                ("Sec-WebSocket-Protocol: soap, wamp, mqtt\r\n", Some("mqtt")),
                (
                    "Sec-WebSocket-Protocol: soap\r\nSec-WebSocket-Protocol: chat.v1\r\n",
                    Some("chat.v1"),
                ),
                ("Sec-WebSocket-Protocol: soap, wamp\r\n", None),
                ("Sec-WebSocket-Protocol: CHAT.V1\r\n", None),
                ("", None),
            ];
            for (offer, want) in cases {
                let case = format!("offer {offer:?}");
                let mut c = RawClient::connect_with(env.addr(), env.ctx(&case), offer);
                assert_eq!(
                    c.response.all("sec-websocket-protocol"),
                    want.into_iter().collect::<Vec<_>>(),
                    "[{}] negotiated protocol",
                    c.ctx
                );
                c.send_text("x");
                c.expect_text("x");
                c.close_normally();
            }
        },
    );
    // A server with no subprotocols configured never answers with one.
    each_driver(|env| {
        let c = RawClient::connect_with(
            env.addr(),
            env.ctx("no subprotocols configured"),
            "Sec-WebSocket-Protocol: chat.v1\r\n",
        );
        assert_eq!(
            c.response.header("sec-websocket-protocol"),
            None,
            "[{}]",
            c.ctx
        );
    });
}

/// Autobahn 12/13 precondition: a permessage-deflate offer is declined (no
/// Sec-WebSocket-Extensions in the answer), so compressed (RSV1) frames stay a protocol error.
#[test]
fn permessage_deflate_offer_is_declined() {
    each_driver(|env| {
        let offer = "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n";
        let mut c = RawClient::connect_with(env.addr(), env.ctx("deflate offer"), offer);
        assert_eq!(
            c.response.header("sec-websocket-extensions"),
            None,
            "[{}] extension accepted",
            c.ctx
        );
        c.send_text("plain");
        c.expect_text("plain");
        let f = c.build_raw(
            op::TEXT,
            true,
            0b100,
            &[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00],
        );
        c.send_raw(&f);
        c.expect_close(1002);
    });
}

/// Frames sent right behind the request, in the same write, are processed after the 101:
/// the 101 comes first, then the answers in order.
#[test]
fn pipelined_frames_after_request_are_processed() {
    each_driver(|env| {
        let req = upgrade_request(env.addr(), "/chat", "");
        let mut frames = crate::common::frame(op::TEXT, true, b"pipelined", [1, 2, 3, 4]);
        frames.extend(crate::common::frame(
            op::BINARY,
            true,
            &[0xAB; 300],
            [5, 6, 7, 8],
        ));
        let mut c = RawClient::connect_raw(
            env.addr(),
            env.ctx("pipelined data"),
            req.as_bytes(),
            &frames,
        );
        c.expect_text("pipelined");
        c.expect_binary(&[0xAB; 300]);
        c.close_normally();
    });
}

/// A ping pipelined behind the request is answered after the 101, never before it.
#[test]
fn pipelined_ping_after_request_is_answered_after_101() {
    each_driver(|env| {
        let req = upgrade_request(env.addr(), "/chat", "");
        let ping = crate::common::frame(op::PING, true, b"early", [1, 2, 3, 4]);
        let mut c =
            RawClient::connect_raw(env.addr(), env.ctx("pipelined ping"), req.as_bytes(), &ping);
        c.expect_pong(b"early");
        c.close_normally();
    });
}

/// A close (or a protocol error) pipelined behind the request: the 101 still comes first,
/// then the close.
#[test]
fn pipelined_close_or_error_after_request_comes_after_101() {
    each_driver(|env| {
        let req = upgrade_request(env.addr(), "/chat", "");
        let close = crate::common::frame(op::CLOSE, true, &1000u16.to_be_bytes(), [1, 2, 3, 4]);
        let mut c = RawClient::connect_raw(
            env.addr(),
            env.ctx("pipelined close"),
            req.as_bytes(),
            &close,
        );
        c.expect_close_echo(Some(1000));

        let bad = crate::common::raw_frame(op::TEXT, true, 0, None, b"unmasked");
        let mut c =
            RawClient::connect_raw(env.addr(), env.ctx("pipelined error"), req.as_bytes(), &bad);
        c.expect_close(1002);
    });
}

fn expect_status(env: &Env, case: &str, req: &[u8], status: u16) -> HttpResponse {
    let ctx = env.ctx(case);
    let resp = http_reject(env.addr(), req, &ctx);
    assert_eq!(resp.status, status, "[{ctx}] status: {resp:?}");
    assert_eq!(
        resp.header("sec-websocket-accept"),
        None,
        "[{ctx}] a rejection carries no accept key"
    );
    assert!(
        resp.all("connection")
            .iter()
            .any(|v| v.eq_ignore_ascii_case("close")),
        "[{ctx}] a rejection says Connection: close: {resp:?}"
    );
    resp
}

/// Wait until every connection is gone; then the server must count `rejected` handshake
/// rejections and `opened` upgrades.
fn expect_counts(env: &Env, rejected: u64, opened: u64) {
    let ctx = env.ctx("counters");
    let stats = env.stats_when_idle();
    assert_eq!(
        (stats.handshake_rejected, stats.opened),
        (rejected, opened),
        "[{ctx}] {stats:?}"
    );
}

/// RFC 6455 4.2.1/4.2.2: a request missing Host, Sec-WebSocket-Key, Upgrade or Connection,
/// or with an invalid key, is answered 400 and the connection closed.
#[test]
fn missing_or_invalid_fields_are_400() {
    each_driver(|env| {
        let h = host(env.addr());
        let up = "Upgrade: websocket\r\n";
        let conn = "Connection: Upgrade\r\n";
        let key = format!("Sec-WebSocket-Key: {RFC_KEY}\r\n");
        let ver = "Sec-WebSocket-Version: 13\r\n";
        let cases = [
            ("missing Host", format!("{up}{conn}{key}{ver}")),
            ("missing Sec-WebSocket-Key", format!("{h}{up}{conn}{ver}")),
            ("missing Upgrade", format!("{h}{conn}{key}{ver}")),
            ("missing Connection", format!("{h}{up}{key}{ver}")),
            (
                "Upgrade not websocket",
                format!("{h}Upgrade: h2c\r\n{conn}{key}{ver}"),
            ),
            (
                "Connection without Upgrade",
                format!("{h}{up}Connection: keep-alive\r\n{key}{ver}"),
            ),
            (
                "key too short",
                format!("{h}{up}{conn}Sec-WebSocket-Key: c2hvcnQ=\r\n{ver}"),
            ),
            (
                "duplicate Sec-WebSocket-Key",
                format!("{h}{up}{conn}{key}{key}{ver}"),
            ),
            ("duplicate Host", format!("{h}{h}{up}{conn}{key}{ver}")),
            (
                "key not base64 of 16 bytes",
                format!("{h}{up}{conn}Sec-WebSocket-Key: !!!!!!!!!!!!!!!!!!!!!!==\r\n{ver}"),
            ),
        ];
        // The cases below, then POST and HTTP/1.0.
        let rejected = cases.len() as u64 + 2;
        for (case, lines) in cases {
            expect_status(env, case, &request(&lines), 400);
        }
        // Not a GET, and not HTTP/1.1.
        let tail = format!("{h}{up}{conn}{key}{ver}\r\n");
        expect_status(
            env,
            "POST",
            format!("POST /chat HTTP/1.1\r\n{tail}").as_bytes(),
            400,
        );
        expect_status(
            env,
            "HTTP/1.0",
            format!("GET /chat HTTP/1.0\r\n{tail}").as_bytes(),
            400,
        );
        expect_counts(env, rejected, 0);
    });
}

/// RFC 6455 4.2.2/4.4: a version other than 13 is answered 426 with
/// `Sec-WebSocket-Version: 13`.
#[test]
fn version_8_is_426_with_version_13_header() {
    each_driver(|env| {
        for version in ["8", "7", "14", "0"] {
            let lines = format!(
                "{}Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {RFC_KEY}\r\n\
                 Sec-WebSocket-Version: {version}\r\n",
                host(env.addr())
            );
            let resp = expect_status(env, &format!("version {version}"), &request(&lines), 426);
            assert_eq!(
                resp.header("sec-websocket-version"),
                Some("13"),
                "[{}] 426 must name the supported version: {resp:?}",
                env.ctx(format!("version {version}"))
            );
        }
        expect_counts(env, 4, 0);
    });
}

/// A request head over `max_handshake_bytes` (default 8 KiB) is answered 431; one exactly at
/// the limit is accepted.
#[test]
fn oversize_head_is_431() {
    each_driver(|env| {
        let base = upgrade_request(env.addr(), "/chat", "");
        let limit = corecast::Config::default().max_handshake_bytes;
        // "X-Pad: " + value + "\r\n" inserted before the final CRLF.
        let pad = |total: usize| {
            let fill = total - base.len() - "X-Pad: \r\n".len();
            let extra = format!("X-Pad: {}\r\n", "p".repeat(fill));
            let req = upgrade_request(env.addr(), "/chat", &extra);
            assert_eq!(req.len(), total);
            req
        };
        let mut c = RawClient::connect_raw(
            env.addr(),
            env.ctx("head of exactly max_handshake_bytes"),
            pad(limit).as_bytes(),
            &[],
        );
        c.send_text("fits");
        c.expect_text("fits");
        c.close_normally();

        expect_status(env, "head of limit + 1", pad(limit + 1).as_bytes(), 431);
        expect_status(env, "16 KiB head", pad(16 << 10).as_bytes(), 431);
        // Many headers (more than the server keeps) is "too large" as well.
        let many: String = (0..200).map(|i| format!("X-H{i}: v\r\n")).collect();
        expect_status(
            env,
            "200 headers",
            upgrade_request(env.addr(), "/chat", &many).as_bytes(),
            431,
        );
        // An endless head that never ends in CRLF CRLF: 431 once over the limit.
        let endless = format!("GET / HTTP/1.1\r\nX-Long: {}", "q".repeat(limit + 100));
        expect_status(env, "unterminated head", endless.as_bytes(), 431);
    });
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

/// An `Announce` server whose handshake hook refuses paths under `/private` with 403.
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

/// `on_open` sees the subprotocol the server selected, raw or through tungstenite (which
/// checks that the answer names one it offered). The selection rules themselves are
/// `subprotocol_negotiation`'s.
#[test]
fn on_open_sees_the_negotiated_subprotocol() {
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
    }
}
