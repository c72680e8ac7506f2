//! Authentication at the handshake (JWT HS256, RS256, ES256 from the header, the
//! subprotocol or the query), topic permissions from the token, token expiry and in-band
//! refresh, the per-user connection limit and the origin allowlist, on the real pub/sub
//! server. Every rule is shown refusing and allowing, with its counter.

mod common;

use std::{net::TcpStream, path::PathBuf, sync::Arc, time::Duration};

use common::{
    drivers, http_exchange, read_close, recv_json as recv, send_json as send, start, test_config,
    upgrade_request, wait_until, TestServer, READ_TIMEOUT,
};
use corecast::{
    config::{AuthMode, Driver, JwtAlgorithm},
    pubsub::PubSubService,
    Config, Server,
};
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use tungstenite::client::IntoClientRequest;

type Client = tungstenite::WebSocket<TcpStream>;

const SECRET: &str = "integration-test-secret-0123456789";

struct AuthServer {
    srv: TestServer,
    svc: Arc<PubSubService>,
    _dir: tempfile::TempDir,
}

/// A pub/sub server with auth required, HS256 with [`SECRET`], leeway 0.
fn hs_config(driver: Driver) -> (Config, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("secret");
    std::fs::write(&path, format!("{SECRET}\n")).unwrap();
    let mut cfg = test_config(driver);
    cfg.auth.mode = AuthMode::Required;
    cfg.auth.jwt_secret_file = Some(path);
    cfg.auth.jwt_leeway = Duration::ZERO;
    (cfg, dir)
}

fn start_pubsub(mut cfg: Config, dir: tempfile::TempDir) -> AuthServer {
    PubSubService::configure(&mut cfg);
    let svc = PubSubService::new(&cfg);
    let srv = start(svc.install(Server::builder(cfg)));
    AuthServer {
        srv,
        svc,
        _dir: dir,
    }
}

fn now() -> u64 {
    jsonwebtoken::get_current_timestamp()
}

fn hs_token(claims: Value) -> String {
    encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

/// A token for `user` valid for `secs`, allowed to subscribe to `prices.*` and publish to
/// `orders.eu`.
fn token(user: &str, secs: u64) -> String {
    hs_token(json!({"sub": user, "exp": now() + secs,
        "corecast": {"sub": ["prices.*"], "pub": ["orders.eu"]}}))
}

/// Connect with `Authorization: Bearer <token>`.
fn connect_bearer(addr: std::net::SocketAddr, token: &str) -> Client {
    let mut req = format!("ws://{addr}/").into_client_request().unwrap();
    req.headers_mut()
        .insert("Authorization", format!("Bearer {token}").parse().unwrap());
    client(addr, req)
}

fn client(addr: std::net::SocketAddr, req: tungstenite::handshake::client::Request) -> Client {
    let stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
    let (ws, resp) = tungstenite::client::client(req, stream)
        .unwrap_or_else(|e| panic!("handshake failed: {e}"));
    assert_eq!(resp.status().as_u16(), 101);
    ws
}

/// The status and body a raw upgrade request with `extra` headers gets.
fn upgrade_status(addr: std::net::SocketAddr, path: &str, extra: &str) -> (u16, String) {
    let (status, _, body) = http_exchange(addr, upgrade_request(addr, path, extra).as_bytes());
    (status, body)
}

#[test]
fn handshake_needs_a_valid_token_from_header_subprotocol_or_enabled_query() {
    for driver in drivers() {
        let (cfg, dir) = hs_config(driver);
        let s = start_pubsub(cfg, dir);
        let addr = s.srv.addr;
        // Refused before the upgrade, each with 401 and counted. A 401 carries the Bearer
        // challenge that RFC 9110 requires.
        let (status, head, _) = http_exchange(addr, upgrade_request(addr, "/", "").as_bytes());
        assert_eq!(status, 401, "[{driver:?}] no token");
        assert!(
            head.lines()
                .any(|l| l == "WWW-Authenticate: Bearer realm=\"corecast\""),
            "[{driver:?}] {head}"
        );
        let forged = encode(
            &Header::new(Algorithm::HS256),
            &json!({"sub": "mallory", "exp": now() + 60}),
            &EncodingKey::from_secret(b"not-the-server-secret-at-all"),
        )
        .unwrap();
        let (status, _) = upgrade_status(addr, "/", &format!("Authorization: Bearer {forged}\r\n"));
        assert_eq!(status, 401, "[{driver:?}] forged");
        let expired = hs_token(json!({"sub": "a", "exp": now() - 5}));
        let (status, body) =
            upgrade_status(addr, "/", &format!("Authorization: Bearer {expired}\r\n"));
        assert_eq!(
            (status, body.trim()),
            (401, "token expired"),
            "[{driver:?}]"
        );
        let t = token("alice", 60);
        assert_eq!(
            upgrade_status(addr, &format!("/?token={t}"), "").0,
            401,
            "[{driver:?}] query tokens are off by default"
        );
        let st = s.srv.stats();
        assert_eq!(
            (st.rejected_unauthorized, st.rejected_token_expired),
            (3, 1),
            "[{driver:?}] {st:?}"
        );
        // Allowed: the header ...
        let mut ws = connect_bearer(addr, &t);
        send(&mut ws, json!({"op": "sub", "topic": "prices.BTC"}));
        assert_eq!(recv(&mut ws)["op"], "subbed");
        // ... and the subprotocol, which is never echoed back.
        let mut req = format!("ws://{addr}/").into_client_request().unwrap();
        req.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            format!("corecast.v1.json, corecast.bearer.{t}")
                .parse()
                .unwrap(),
        );
        let stream = TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
        let (mut ws2, resp) = tungstenite::client::client(req, stream).unwrap();
        assert_eq!(
            resp.headers()["sec-websocket-protocol"],
            "corecast.v1.json",
            "[{driver:?}]"
        );
        send(&mut ws2, json!({"op": "sub", "topic": "prices.ETH"}));
        assert_eq!(recv(&mut ws2)["op"], "subbed");
        drop((ws, ws2));

        // The query parameter only when the operator enables it.
        let (mut cfg, dir) = hs_config(driver);
        cfg.auth.query_token = true;
        let q = start_pubsub(cfg, dir);
        let (head, _sock) = common::send_upgrade(
            q.srv.addr,
            &upgrade_request(q.srv.addr, &format!("/?token={t}"), ""),
        );
        assert!(head.starts_with("HTTP/1.1 101"), "[{driver:?}] {head}");
    }
}

#[test]
fn rs256_and_es256_tokens_verify_with_public_key_files() {
    use rsa::{pkcs1::EncodeRsaPrivateKey, pkcs8::EncodePublicKey, pkcs8::LineEnding};
    let rsa_key = rsa::RsaPrivateKey::new(&mut rand::thread_rng(), 2048).unwrap();
    let rsa_priv = rsa_key.to_pkcs1_pem(LineEnding::LF).unwrap();
    let rsa_pub = rsa::RsaPublicKey::from(&rsa_key)
        .to_public_key_pem(LineEnding::LF)
        .unwrap();
    let ec = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let other_ec = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let cases: [(JwtAlgorithm, Algorithm, String, EncodingKey, EncodingKey); 2] = [
        (
            JwtAlgorithm::Rs256,
            Algorithm::RS256,
            rsa_pub,
            EncodingKey::from_rsa_pem(rsa_priv.as_bytes()).unwrap(),
            // An ES key can never sign an RS256 token the server accepts.
            EncodingKey::from_ec_pem(other_ec.serialize_pem().as_bytes()).unwrap(),
        ),
        (
            JwtAlgorithm::Es256,
            Algorithm::ES256,
            ec.public_key_pem(),
            EncodingKey::from_ec_pem(ec.serialize_pem().as_bytes()).unwrap(),
            EncodingKey::from_ec_pem(other_ec.serialize_pem().as_bytes()).unwrap(),
        ),
    ];
    let driver = drivers()[0];
    for (alg, jwt_alg, public_pem, good, bad) in cases {
        let dir = tempfile::tempdir().unwrap();
        let path: PathBuf = dir.path().join("key.pem");
        std::fs::write(&path, public_pem).unwrap();
        let mut cfg = test_config(driver);
        cfg.auth.mode = AuthMode::Required;
        cfg.auth.jwt_algorithm = alg;
        cfg.auth.jwt_public_key_file = Some(path);
        let s = start_pubsub(cfg, dir);
        let claims = json!({"sub": "svc", "exp": now() + 60, "corecast": {"sub": ["*"]}});
        let bad_alg = if jwt_alg == Algorithm::RS256 {
            Algorithm::ES256
        } else {
            jwt_alg
        };
        let forged = encode(&Header::new(bad_alg), &claims, &bad).unwrap();
        let (status, _) = upgrade_status(
            s.srv.addr,
            "/",
            &format!("Authorization: Bearer {forged}\r\n"),
        );
        assert_eq!(status, 401, "{alg:?}: another key's token");
        let hs = hs_token(claims.clone());
        let (status, _) =
            upgrade_status(s.srv.addr, "/", &format!("Authorization: Bearer {hs}\r\n"));
        assert_eq!(status, 401, "{alg:?}: HS256 is not accepted");
        let t = encode(&Header::new(jwt_alg), &claims, &good).unwrap();
        let mut ws = connect_bearer(s.srv.addr, &t);
        send(&mut ws, json!({"op": "sub", "topic": "any.topic"}));
        assert_eq!(recv(&mut ws)["op"], "subbed", "{alg:?}");
    }
}

#[test]
fn topic_claims_forbid_what_they_do_not_allow() {
    for driver in drivers() {
        let (cfg, dir) = hs_config(driver);
        let s = start_pubsub(cfg, dir);
        let mut ws = connect_bearer(s.srv.addr, &token("alice", 60));
        send(&mut ws, json!({"op": "sub", "topic": "orders.eu", "id": 1}));
        let r = recv(&mut ws);
        assert_eq!(
            (r["op"].as_str(), r["code"].as_str(), r["id"].as_u64()),
            (Some("err"), Some("forbidden"), Some(1))
        );
        send(
            &mut ws,
            json!({"op": "pub", "topic": "prices.BTC", "data": 1, "id": 2}),
        );
        let r = recv(&mut ws);
        assert_eq!(
            (r["code"].as_str(), r["id"].as_u64()),
            (Some("forbidden"), Some(2)),
            "{r}"
        );
        // The refused ops touched no topic.
        assert_eq!(s.svc.stats().topics, 0, "[{driver:?}]");
        // What the claims allow still works.
        send(
            &mut ws,
            json!({"op": "sub", "topic": "prices.BTC", "id": 3}),
        );
        assert_eq!(recv(&mut ws)["op"], "subbed");
        send(
            &mut ws,
            json!({"op": "pub", "topic": "orders.eu", "data": {"q": 1}, "id": 4}),
        );
        let r = recv(&mut ws);
        assert_eq!(
            (r["op"].as_str(), r["id"].as_u64()),
            (Some("ack"), Some(4)),
            "{r}"
        );
        assert_eq!(s.svc.stats().forbidden, 2, "[{driver:?}]");
    }
}

#[test]
fn an_unrefreshed_token_closes_at_exp_and_a_refresh_extends_it() {
    for driver in drivers() {
        let (cfg, dir) = hs_config(driver);
        let s = start_pubsub(cfg, dir);
        let short = token("alice", 2);
        let mut stale = connect_bearer(s.srv.addr, &short);
        let mut fresh = connect_bearer(s.srv.addr, &short);
        // A refresh with an invalid token, or another user's, is refused; the old one holds.
        send(
            &mut fresh,
            json!({"op": "auth", "token": "x.y.z", "id": "a1"}),
        );
        let r = recv(&mut fresh);
        assert_eq!(
            (r["code"].as_str(), r["id"].as_str()),
            (Some("unauthorized"), Some("a1")),
            "{r}"
        );
        send(
            &mut fresh,
            json!({"op": "auth", "token": token("bob", 60), "id": "a2"}),
        );
        assert_eq!(recv(&mut fresh)["code"], "forbidden");
        let later = now() + 3600;
        let long = hs_token(json!({"sub": "alice", "exp": later, "corecast": {"sub": ["news.*"]}}));
        send(&mut fresh, json!({"op": "auth", "token": long, "id": "a3"}));
        let r = recv(&mut fresh);
        assert_eq!(
            (r["op"].as_str(), r["exp"].as_u64(), r["id"].as_str()),
            (Some("authed"), Some(later), Some("a3")),
            "{r}"
        );
        // The connection that did not refresh is closed at exp.
        assert_eq!(
            read_close(&mut stale),
            (1008, "token expired".into()),
            "[{driver:?}]"
        );
        // The refreshed one is still open, with the new token's permissions.
        send(&mut fresh, json!({"op": "sub", "topic": "news.a"}));
        assert_eq!(recv(&mut fresh)["op"], "subbed", "[{driver:?}]");
        send(&mut fresh, json!({"op": "sub", "topic": "prices.a"}));
        assert_eq!(recv(&mut fresh)["code"], "forbidden", "[{driver:?}]");
        let st = s.svc.stats();
        assert_eq!(
            (st.closed_token_expired, st.auth_refreshed, st.auth_refused),
            (1, 1, 2),
            "{st:?}"
        );
    }
}

#[test]
fn a_refresh_that_narrows_the_claims_ends_the_subscriptions_it_no_longer_allows() {
    for driver in drivers() {
        let (cfg, dir) = hs_config(driver);
        let s = start_pubsub(cfg, dir);
        let exp = now() + 3600;
        let wide = hs_token(json!({"sub": "alice", "exp": exp,
            "corecast": {"sub": ["prices.*", "news.*"]}}));
        let narrow = hs_token(json!({"sub": "alice", "exp": exp,
            "corecast": {"sub": ["news.*"]}}));
        let publisher = hs_token(json!({"sub": "feed", "exp": exp,
            "corecast": {"pub": ["*"]}}));
        let mut alice = connect_bearer(s.srv.addr, &wide);
        let mut feed = connect_bearer(s.srv.addr, &publisher);
        for (i, topic) in ["prices.a", "news.a", "prices.b"].into_iter().enumerate() {
            send(&mut alice, json!({"op": "sub", "topic": topic, "id": i}));
            assert_eq!(recv(&mut alice)["op"], "subbed", "[{driver:?}] {topic}");
        }
        send(
            &mut alice,
            json!({"op": "auth", "token": narrow, "id": "r"}),
        );
        // Both prices subscriptions end, each with an unsubbed that says why, before authed.
        let mut ended = Vec::new();
        for _ in 0..2 {
            let r = recv(&mut alice);
            assert_eq!(
                (r["op"].as_str(), r["reason"].as_str(), r.get("id")),
                (Some("unsubbed"), Some("forbidden"), None),
                "[{driver:?}] {r}"
            );
            ended.push(r["topic"].as_str().unwrap().to_owned());
        }
        ended.sort();
        assert_eq!(ended, ["prices.a", "prices.b"], "[{driver:?}]");
        let r = recv(&mut alice);
        assert_eq!(
            (r["op"].as_str(), r["id"].as_str()),
            (Some("authed"), Some("r")),
            "{r}"
        );
        // Nothing more arrives on the revoked topics; the allowed one goes on.
        for topic in ["prices.a", "prices.b", "news.a"] {
            send(
                &mut feed,
                json!({"op": "pub", "topic": topic, "data": topic, "id": topic}),
            );
            assert_eq!(recv(&mut feed)["op"], "ack", "[{driver:?}] {topic}");
        }
        let m = recv(&mut alice);
        assert_eq!(
            (m["op"].as_str(), m["topic"].as_str()),
            (Some("msg"), Some("news.a")),
            "[{driver:?}] {m}"
        );
        // And the narrowed token refuses a new subscription to them.
        send(&mut alice, json!({"op": "sub", "topic": "prices.a"}));
        assert_eq!(recv(&mut alice)["code"], "forbidden", "[{driver:?}]");
        let st = s.svc.stats();
        assert_eq!(
            (st.revoked, st.subscriptions),
            (2, 1),
            "[{driver:?}] {st:?}"
        );
    }
}

#[test]
fn the_per_user_limit_refuses_with_429_and_frees_on_close() {
    for driver in drivers() {
        let (mut cfg, dir) = hs_config(driver);
        cfg.limits.max_connections_per_user = 2;
        let s = start_pubsub(cfg, dir);
        let addr = s.srv.addr;
        let t = token("alice", 60);
        let mut a = connect_bearer(addr, &t);
        let _b = connect_bearer(addr, &t);
        let (status, body) = upgrade_status(addr, "/", &format!("Authorization: Bearer {t}\r\n"));
        assert_eq!(
            (status, body.trim()),
            (429, "too many connections for this user"),
            "[{driver:?}]"
        );
        assert_eq!(s.srv.stats().rejected_user_limit, 1);
        // Another user is not affected.
        let _c = connect_bearer(addr, &token("bob", 60));
        // Closing one of alice's frees her slot.
        a.close(None).unwrap();
        let _ = common::finishes_closed(&mut a);
        assert!(
            wait_until(Duration::from_secs(5), || {
                let req = upgrade_request(addr, "/", &format!("Authorization: Bearer {t}\r\n"));
                common::send_upgrade(addr, &req)
                    .0
                    .starts_with("HTTP/1.1 101")
            }),
            "[{driver:?}] slot released"
        );
    }
}

#[test]
fn the_origin_allowlist_refuses_other_browser_origins_with_403() {
    for driver in drivers() {
        let mut cfg = test_config(driver);
        cfg.auth.check_origin = true;
        cfg.auth.allowed_origins = vec!["https://*.example.com".into(), "https://app.test".into()];
        let s = start_pubsub(cfg, tempfile::tempdir().unwrap());
        let addr = s.srv.addr;
        let (status, body) = upgrade_status(addr, "/", "Origin: https://evil.test\r\n");
        assert_eq!(
            (status, body.trim()),
            (403, "origin not allowed"),
            "[{driver:?}]"
        );
        assert_eq!(
            upgrade_status(addr, "/", "Origin: https://example.com\r\n").0,
            403
        );
        assert_eq!(s.srv.stats().rejected_origin, 2);
        for ok in [
            "Origin: https://app.example.com\r\n",
            "Origin: https://app.test\r\n",
            "",
        ] {
            let (head, _sock) = common::send_upgrade(addr, &upgrade_request(addr, "/", ok));
            assert!(
                head.starts_with("HTTP/1.1 101"),
                "[{driver:?}] {ok:?}: {head}"
            );
        }
    }
}
