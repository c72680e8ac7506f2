//! permessage-deflate (RFC 7692) end to end, under each io driver: negotiation in the
//! upgrade, compressed echo both ways (with and without client context takeover, fragmented),
//! the threshold, a zip bomb (1009), RSV1 rules (1002), bad compressed data and bad UTF-8
//! after inflating (1007), Python `websockets` (which negotiates deflate by default), and
//! pub/sub subscribers with and without deflate on one topic.

mod common;

use std::{io::Write, net::TcpStream, process::Command, sync::Arc};

use common::*;
use corecast::{config::Driver, pubsub::PubSubService, Config, Server};
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};

const OFFER: &str = "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n";
const OFFER_NCT: &str =
    "Sec-WebSocket-Extensions: permessage-deflate; client_no_context_takeover\r\n";

fn deflate_config(driver: Driver) -> Config {
    Config {
        permessage_deflate: true,
        ..test_config(driver)
    }
}

/// Upgrade with `extra` headers; returns the response head and the socket.
fn upgrade(srv: &TestServer, extra: &str) -> (String, TcpStream) {
    let (head, s) = send_upgrade(srv.addr, &upgrade_request(srv.addr, "/", extra));
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    (head, s)
}

fn extensions_header(head: &str) -> Option<String> {
    head.lines()
        .find_map(|l| l.strip_prefix("Sec-WebSocket-Extensions: "))
        .map(|v| v.trim().to_string())
}

/// A client-side compressor (raw deflate, sync flush, tail removed).
struct ClientDeflate {
    z: Compress,
    takeover: bool,
}

impl ClientDeflate {
    fn new(takeover: bool) -> Self {
        ClientDeflate {
            z: Compress::new_with_window_bits(Compression::default(), false, 15),
            takeover,
        }
    }

    fn compress(&mut self, msg: &[u8]) -> Vec<u8> {
        if !self.takeover {
            self.z.reset();
        }
        let mut out = Vec::with_capacity(msg.len() + 64);
        let start = self.z.total_in();
        loop {
            let done = (self.z.total_in() - start) as usize;
            self.z
                .compress_vec(&msg[done..], &mut out, FlushCompress::Sync)
                .unwrap();
            if (self.z.total_in() - start) as usize == msg.len() && out.len() < out.capacity() {
                break;
            }
            out.reserve(out.capacity());
        }
        assert!(out.ends_with(&[0, 0, 0xff, 0xff]));
        out.truncate(out.len() - 4);
        out
    }
}

/// Inflate a server message (the server never keeps its context).
fn inflate(payload: &[u8]) -> Vec<u8> {
    let mut d = Decompress::new_with_window_bits(false, 15);
    let mut input = payload.to_vec();
    input.extend_from_slice(&[0, 0, 0xff, 0xff]);
    let mut out = Vec::with_capacity(payload.len() * 8 + 1024);
    loop {
        let before = d.total_in() as usize;
        d.decompress_vec(&input[before..], &mut out, FlushDecompress::Sync)
            .unwrap();
        if d.total_in() as usize == input.len() && out.len() < out.capacity() {
            return out;
        }
        out.reserve(out.capacity());
    }
}

/// The next data message: (opcode, whether it came compressed, inflated payload).
fn read_message(s: &mut TcpStream) -> (u8, bool, Vec<u8>) {
    loop {
        let f = read_frame_rsv(s, RSV1).expect("a frame");
        match f.opcode {
            0x9 | 0xA => continue,
            0x1 | 0x2 => {
                assert!(f.fin, "the server does not fragment");
                assert_eq!(f.rsv & 0b011, 0);
                let compressed = f.rsv & 0b100 != 0;
                let body = if compressed {
                    inflate(&f.payload)
                } else {
                    f.payload
                };
                return (f.opcode, compressed, body);
            }
            _ => panic!("expected a data frame, got {f:?}"),
        }
    }
}

fn text(n: usize, seed: usize) -> String {
    (0..n)
        .map(|i| ["alpha ", "beta ", "gamma ", "délta "][(i + seed) % 4])
        .collect::<String>()
}

#[test]
fn negotiated_answer_and_compressed_echo_with_context_takeover() {
    for driver in drivers() {
        let srv = start_echo(deflate_config(driver));
        let (head, mut s) = upgrade(&srv, OFFER);
        assert_eq!(
            extensions_header(&head).as_deref(),
            Some("permessage-deflate; server_no_context_takeover"),
            "{driver:?}"
        );
        let mut z = ClientDeflate::new(true);
        for i in 0..5 {
            let msg = text(300, i);
            s.write_all(&client_frame(0x1, true, 0b100, &z.compress(msg.as_bytes())))
                .unwrap();
            let (op, compressed, body) = read_message(&mut s);
            assert_eq!(op, 0x1);
            assert!(
                compressed,
                "{driver:?}: replies over the threshold are compressed"
            );
            assert_eq!(body, msg.as_bytes());
        }
        // Under the threshold (256 bytes): an uncompressed reply, even to a compressed message.
        s.write_all(&client_frame(0x2, true, 0b100, &z.compress(b"small")))
            .unwrap();
        assert_eq!(read_message(&mut s), (0x2, false, b"small".to_vec()));
        // An uncompressed message on a deflate connection is fine too.
        let plain = text(100, 1);
        s.write_all(&client_frame(0x1, true, 0, plain.as_bytes()))
            .unwrap();
        assert_eq!(read_message(&mut s).2, plain.as_bytes());
        // A compressed message in three fragments: RSV1 on the first only.
        let msg = text(2000, 3);
        let c = z.compress(msg.as_bytes());
        let (a, rest) = c.split_at(c.len() / 3);
        let (b, d) = rest.split_at(rest.len() / 2);
        s.write_all(&client_frame(0x1, false, 0b100, a)).unwrap();
        s.write_all(&client_frame(0x9, true, 0, b"ping")).unwrap();
        s.write_all(&client_frame(0x0, false, 0, b)).unwrap();
        s.write_all(&client_frame(0x0, true, 0, d)).unwrap();
        assert_eq!(read_message(&mut s), (0x1, true, msg.into_bytes()));
        s.write_all(&client_close(1000, "")).unwrap();
        assert_eq!(read_close_frame(&mut s).0, 1000);
        let st = srv.stats();
        assert_eq!(st.deflate_negotiated, 1, "{driver:?}");
        assert_eq!(st.messages_inflated, 7, "{driver:?}: {st:?}");
        assert_eq!(st.messages_deflated, 7, "{driver:?}: {st:?}");
        assert_eq!(st.protocol_errors, 0, "{driver:?}");
    }
}

#[test]
fn client_without_context_takeover_shares_the_worker_inflater() {
    for driver in drivers() {
        let srv = start_echo(deflate_config(driver));
        let (head, mut s1) = upgrade(&srv, OFFER_NCT);
        assert_eq!(
            extensions_header(&head).as_deref(),
            Some("permessage-deflate; server_no_context_takeover; client_no_context_takeover")
        );
        let (_, mut s2) = upgrade(&srv, OFFER_NCT);
        let mut z = ClientDeflate::new(false);
        for i in 0..4 {
            for s in [&mut s1, &mut s2] {
                let msg = text(400, i);
                s.write_all(&client_frame(0x1, true, 0b100, &z.compress(msg.as_bytes())))
                    .unwrap();
                assert_eq!(read_message(s).2, msg.as_bytes(), "{driver:?}");
            }
        }
    }
}

#[test]
fn forced_client_no_context_takeover_and_narrow_client_window() {
    for driver in drivers() {
        let srv = start_echo(Config {
            deflate_client_no_context_takeover: true,
            deflate_client_max_window_bits: 10,
            ..deflate_config(driver)
        });
        let (head, _s) = upgrade(&srv, OFFER);
        assert_eq!(
            extensions_header(&head).as_deref(),
            Some(
                "permessage-deflate; server_no_context_takeover; client_no_context_takeover; \
                 client_max_window_bits=10"
            )
        );
    }
}

#[test]
fn offers_the_server_cannot_take_are_declined() {
    for driver in drivers() {
        let srv = start_echo(deflate_config(driver));
        // server_max_window_bits=8 (zlib cannot), a duplicate, an unknown parameter: no
        // extension, but the upgrade goes on; the next acceptable offer is taken.
        for offer in [
            "permessage-deflate; server_max_window_bits=8",
            "permessage-deflate; client_no_context_takeover; client_no_context_takeover",
            "permessage-deflate; x=1",
        ] {
            let (head, _s) = upgrade(&srv, &format!("Sec-WebSocket-Extensions: {offer}\r\n"));
            assert_eq!(extensions_header(&head), None, "{offer}");
        }
        let (head, _s) = upgrade(
            &srv,
            "Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=8, \
             permessage-deflate; server_max_window_bits=10\r\n",
        );
        assert_eq!(
            extensions_header(&head).as_deref(),
            Some("permessage-deflate; server_no_context_takeover; server_max_window_bits=10")
        );
    }
}

#[test]
fn narrow_server_window_replies_inflate() {
    for driver in drivers() {
        let srv = start_echo(deflate_config(driver));
        let (_, mut s) = upgrade(
            &srv,
            "Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=9\r\n",
        );
        let msg = text(5000, 2);
        s.write_all(&client_frame(0x1, true, 0, msg.as_bytes()))
            .unwrap();
        let f = read_frame_rsv(&mut s, RSV1).unwrap();
        assert_eq!(f.rsv, 0b100);
        let mut d = Decompress::new_with_window_bits(false, 9);
        let mut input = f.payload.clone();
        input.extend_from_slice(&[0, 0, 0xff, 0xff]);
        let mut out = Vec::with_capacity(msg.len() + 100);
        d.decompress_vec(&input, &mut out, FlushDecompress::Sync)
            .unwrap();
        assert_eq!(
            out,
            msg.as_bytes(),
            "{driver:?}: decodable with a 512-byte window"
        );
    }
}

#[test]
fn deflate_is_off_by_default() {
    for driver in drivers() {
        let srv = start_echo(test_config(driver));
        let (head, mut s) = upgrade(&srv, OFFER);
        assert_eq!(extensions_header(&head), None);
        let mut z = ClientDeflate::new(true);
        s.write_all(&client_frame(0x1, true, 0b100, &z.compress(b"hello")))
            .unwrap();
        assert_eq!(read_close_frame(&mut s).0, 1002, "{driver:?}");
    }
}

#[test]
fn rsv1_without_negotiation_closes_1002() {
    for driver in drivers() {
        // Enabled on the server, but this client did not offer it.
        let srv = start_echo(deflate_config(driver));
        let (head, mut s) = upgrade(&srv, "");
        assert_eq!(extensions_header(&head), None);
        s.write_all(&client_frame(0x2, true, 0b100, b"\x00"))
            .unwrap();
        assert_eq!(read_close_frame(&mut s).0, 1002, "{driver:?}");
        // Without RSV1 the same client works.
        let (_, mut s) = upgrade(&srv, "");
        s.write_all(&client_frame(0x2, true, 0, b"ok")).unwrap();
        assert_eq!(read_message(&mut s), (0x2, false, b"ok".to_vec()));
    }
}

#[test]
fn rsv1_on_continuation_or_control_closes_1002() {
    for driver in drivers() {
        let srv = start_echo(deflate_config(driver));
        let mut z = ClientDeflate::new(false);
        let c = z.compress(text(100, 0).as_bytes());
        let (a, b) = c.split_at(c.len() / 2);
        let (_, mut s) = upgrade(&srv, OFFER);
        s.write_all(&client_frame(0x1, false, 0b100, a)).unwrap();
        s.write_all(&client_frame(0x0, true, 0b100, b)).unwrap();
        assert_eq!(read_close_frame(&mut s).0, 1002, "{driver:?}: continuation");
        let (_, mut s) = upgrade(&srv, OFFER);
        s.write_all(&client_frame(0x9, true, 0b100, b"")).unwrap();
        assert_eq!(read_close_frame(&mut s).0, 1002, "{driver:?}: ping");
        // RSV2 and RSV3 stay reserved.
        let (_, mut s) = upgrade(&srv, OFFER);
        s.write_all(&client_frame(0x1, true, 0b110, &c)).unwrap();
        assert_eq!(read_close_frame(&mut s).0, 1002, "{driver:?}: rsv2");
    }
}

#[test]
fn zip_bomb_is_closed_with_1009_at_the_limit() {
    for driver in drivers() {
        let srv = start_echo(Config {
            max_message_bytes: 64 * 1024,
            max_frame_bytes: 64 * 1024,
            ..deflate_config(driver)
        });
        let mut z = ClientDeflate::new(false);
        let bomb = z.compress(&vec![0u8; 16 << 20]);
        assert!(bomb.len() < 64 * 1024, "{}", bomb.len());
        let (_, mut s) = upgrade(&srv, OFFER);
        s.write_all(&client_frame(0x2, true, 0b100, &bomb)).unwrap();
        assert_eq!(read_close_frame(&mut s).0, 1009, "{driver:?}");
        let st = srv.stats();
        assert_eq!(st.closed_inflate_limit, 1, "{st:?}");
        assert_eq!(st.protocol_errors, 0, "counted once, under its own reason");
        // A message that inflates to exactly the limit is fine.
        let (_, mut s) = upgrade(&srv, OFFER);
        let msg = vec![7u8; 64 * 1024];
        s.write_all(&client_frame(0x2, true, 0b100, &z.compress(&msg)))
            .unwrap();
        assert_eq!(read_message(&mut s), (0x2, true, msg));
    }
}

#[test]
fn bad_compressed_data_and_bad_inflated_utf8_close_1007() {
    for driver in drivers() {
        let srv = start_echo(deflate_config(driver));
        let (_, mut s) = upgrade(&srv, OFFER);
        s.write_all(&client_frame(0x2, true, 0b100, &[0xff; 8]))
            .unwrap();
        assert_eq!(read_close_frame(&mut s).0, 1007, "{driver:?}: not deflate");
        let mut z = ClientDeflate::new(false);
        let (_, mut s) = upgrade(&srv, OFFER);
        s.write_all(&client_frame(
            0x1,
            true,
            0b100,
            &z.compress(b"ok \xc3\x28 no"),
        ))
        .unwrap();
        assert_eq!(read_close_frame(&mut s).0, 1007, "{driver:?}: UTF-8");
        let st = srv.stats();
        assert_eq!(st.closed_inflate_error, 1, "{st:?}");
        assert_eq!(st.protocol_errors, 1, "the UTF-8 one: {st:?}");
        // Binary is not validated.
        let (_, mut s) = upgrade(&srv, OFFER);
        s.write_all(&client_frame(0x2, true, 0b100, &z.compress(b"\xc3\x28")))
            .unwrap();
        assert_eq!(read_message(&mut s).2, b"\xc3\x28");
    }
}

/// Whether `python3` can import `websockets` (skipped when not, outside CI).
fn python_ok() -> bool {
    let ok = Command::new("python3")
        .args(["-c", "import websockets.asyncio.client"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI is set but python3 cannot import websockets"
        );
        eprintln!("SKIPPED: python3 cannot import websockets");
    }
    ok
}

fn python(script: &str, args: &[&str]) -> String {
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .expect("run python3");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "python failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

const PY_ECHO: &str = r#"
import asyncio, sys
from websockets.asyncio.client import connect
async def main(url):
    async with connect(url, max_size=None) as ws:
        print("EXT", ws.response.headers.get("Sec-WebSocket-Extensions"))
        msgs = ["hi", "x" * 5000, bytes(range(256)) * 40, "héllo wörld " * 500, "", b""]
        for m in msgs:
            await ws.send(m)
            r = await ws.recv()
            assert r == m, (type(r), len(r), len(m))
        await ws.send(["frag " * 100, "ment " * 100, "ed"])
        assert await ws.recv() == "frag " * 100 + "ment " * 100 + "ed"
        print("OK", len(msgs) + 1)
asyncio.run(main(sys.argv[1]))
"#;

#[test]
fn python_websockets_compressed_echo() {
    if !python_ok() {
        return;
    }
    for driver in drivers() {
        let srv = start_echo(deflate_config(driver));
        let out = python(PY_ECHO, &[&srv.url()]);
        assert!(
            out.contains("EXT permessage-deflate; server_no_context_takeover"),
            "{out}"
        );
        assert!(out.contains("OK 7"), "{out}");
        let st = srv.stats();
        assert!(st.messages_inflated >= 3, "{driver:?}: {st:?}");
        assert!(st.messages_deflated >= 3, "{driver:?}: {st:?}");
        assert_eq!(st.protocol_errors, 0);
    }
}

const PY_PUBSUB: &str = r#"
import asyncio, json, sys
from websockets.asyncio.client import connect
N = 30
async def sub(url, compression, ready):
    async with connect(url, compression=compression, max_size=None) as ws:
        await ws.send(json.dumps({"op": "sub", "topic": "news", "id": 1}))
        r = json.loads(await ws.recv())
        assert r["op"] == "subbed", r
        ready.set_result(ws.response.headers.get("Sec-WebSocket-Extensions"))
        got = []
        while len(got) < N:
            m = json.loads(await ws.recv())
            if m["op"] == "msg":
                got.append((m["seq"], m["data"]))
        return got
async def main(url):
    loop = asyncio.get_running_loop()
    readies = [loop.create_future() for _ in range(3)]
    subs = [asyncio.create_task(sub(url, c, r)) for c, r in zip(["deflate", "deflate", None], readies)]
    exts = [await r for r in readies]
    print("EXTS", exts)
    async with connect(url, compression=None) as pub:
        for i in range(N):
            data = {"i": i, "text": "the quick brown fox " * (15 + i)}
            if i % 3 == 0:
                data = {"i": i}
            await pub.send(json.dumps({"op": "pub", "topic": "news", "data": data}))
    a, b, c = [await s for s in subs]
    assert a == b == c, "subscribers differ"
    assert [d["i"] for _, d in a] == list(range(N))
    print("SAME", len(a))
asyncio.run(main(sys.argv[1]))
"#;

#[test]
fn pubsub_subscribers_with_and_without_deflate_get_the_same_messages() {
    if !python_ok() {
        return;
    }
    for driver in drivers() {
        // One worker: every subscriber is on the owner, so "compressed once" is exact.
        let mut cfg = Config {
            workers: 1,
            ..deflate_config(driver)
        };
        PubSubService::configure(&mut cfg);
        let svc: Arc<PubSubService> = PubSubService::new(&cfg);
        let srv = start(svc.install(Server::builder(cfg)));
        let out = python(PY_PUBSUB, &[&srv.url()]);
        assert!(out.contains("SAME 30"), "{out}");
        assert!(
            out.contains("'permessage-deflate; server_no_context_takeover', 'permessage-deflate; server_no_context_takeover', None"),
            "{out}"
        );
        let st = srv.stats();
        assert_eq!(st.deflate_negotiated, 2, "{st:?}");
        // 20 of the 30 messages are over the threshold: each compressed once for both
        // deflate subscribers, not once per subscriber.
        assert_eq!(st.messages_deflated, 20, "{driver:?}: {st:?}");
    }
}
