//! The connection state machine in simulated time: no sockets, no clock. Each test drives a
//! [`Connection`] the way a worker does (bytes in, slices out, `on_timeout` at
//! `next_timeout`) and reads the server's frames back.

use super::*;
use crate::proto::{
    deflate::{negotiate, DeflatePolicy, Deflater},
    encode::encode_client_frame,
    handshake::HandshakeLimits,
};

const CFG: ConnConfig = ConnConfig {
    limits: DecoderLimits {
        max_frame: 1 << 16,
        max_message: 1 << 17,
    },
    send_bound: 4096,
    ping_ticks: 10,
    silent_ticks: 20,
    handshake_ticks: 5,
    close_ticks: 3,
    message_ticks: 15,
};

const UPGRADE: &str =
    "GET /chat HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
     Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n";

/// What came out of the connection for the peer to read.
#[derive(Debug, PartialEq, Eq)]
enum Out {
    Http(String),
    Frame(u8, Vec<u8>),
}

/// A connection and the simulated peer and clock around it.
struct Sim {
    conn: Connection,
    ws: Workspace,
    now: Tick,
    /// Messages handed to the "handler", as (is_text, bytes).
    got: Vec<(bool, Vec<u8>)>,
}

impl Sim {
    fn new() -> Sim {
        Sim {
            conn: Connection::new(&CFG, 0),
            ws: Workspace::default(),
            now: 0,
            got: Vec::new(),
        }
    }

    /// A connection past its upgrade, its `101` already written.
    fn open() -> Sim {
        Sim::open_with("")
    }

    fn open_with(extra: &str) -> Sim {
        let mut s = Sim::new();
        s.upgrade(extra);
        match s.written().as_slice() {
            [Out::Http(h)] => assert!(h.starts_with("HTTP/1.1 101"), "{h}"),
            other => panic!("{other:?}"),
        }
        s
    }

    fn upgrade(&mut self, extra: &str) {
        let req = format!("{UPGRADE}{extra}\r\n");
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let limits = HandshakeLimits::default();
        let (req, used) = self
            .conn
            .read_request(req.as_bytes(), &mut headers, &limits, &CFG, self.now)
            .unwrap()
            .unwrap();
        assert_eq!(used, format!("{UPGRADE}{extra}\r\n").len());
        let pmd = negotiate(req.extensions(), &DeflatePolicy::default());
        self.conn.accept(req.key, None, pmd, self.now);
    }

    /// Feed bytes as a worker does: through the tail, message by message.
    fn feed(&mut self, bytes: &[u8]) {
        self.conn.received(self.now);
        let mut buf = self.conn.take_tail();
        buf.extend_from_slice(bytes);
        let mut off = 0;
        while off < buf.len() {
            match self
                .conn
                .read(&mut buf[off..], &mut self.ws, &CFG, self.now)
            {
                Read::Done(used) => {
                    off += used;
                    break;
                }
                Read::Message(used, m) => {
                    off += used;
                    self.got.push(match m {
                        Message::Text(t) => (true, t.as_bytes().to_vec()),
                        Message::Binary(b) => (false, b.to_vec()),
                    });
                }
            }
        }
        self.conn.restore_tail(buf, off, &CFG, self.now);
    }

    fn frame(&mut self, op: OpCode, fin: bool, payload: &[u8]) {
        self.feed(&client(op, fin, payload));
    }

    /// Everything queued, written as a socket that takes it all would.
    fn written(&mut self) -> Vec<Out> {
        let mut bytes = Vec::new();
        while self.conn.has_output() {
            let mut slices = [IoSlice::new(&[]); 8];
            let n = self.conn.transmit(&mut slices);
            if n == 0 {
                break;
            }
            let len: usize = slices[..n].iter().map(|s| s.len()).sum();
            for s in &slices[..n] {
                bytes.extend_from_slice(s);
            }
            self.conn.sent(len);
        }
        parse_output(&bytes)
    }

    /// Advance the clock to `t`, running the timer whenever it is due.
    fn run_until(&mut self, t: Tick) -> Vec<Timeout> {
        let mut fired = Vec::new();
        while let Some(at) = self.conn.next_timeout(&CFG) {
            if at > t {
                break;
            }
            self.now = self.now.max(at);
            let r = self.conn.on_timeout(&CFG, self.now);
            if r != Timeout::Nothing {
                fired.push(r);
            }
        }
        self.now = self.now.max(t);
        fired
    }
}

fn client(op: OpCode, fin: bool, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    encode_client_frame(op, fin, payload, [1, 2, 3, 4], &mut out);
    out
}

fn close_payload(code: u16, reason: &str) -> Vec<u8> {
    let mut p = code.to_be_bytes().to_vec();
    p.extend_from_slice(reason.as_bytes());
    p
}

/// Split what the server wrote into an HTTP head and unmasked frames.
fn parse_output(mut b: &[u8]) -> Vec<Out> {
    let mut out = Vec::new();
    if b.starts_with(b"HTTP/1.1 101") {
        let end = b.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        out.push(Out::Http(String::from_utf8(b[..end].to_vec()).unwrap()));
        b = &b[end..];
    } else if b.starts_with(b"HTTP/") {
        return vec![Out::Http(String::from_utf8(b.to_vec()).unwrap())]; // a refusal and its body
    }
    while !b.is_empty() {
        let (len, at) = match b[1] & 0x7f {
            126 => (u16::from_be_bytes([b[2], b[3]]) as usize, 4),
            127 => (
                u64::from_be_bytes(b[2..10].try_into().unwrap()) as usize,
                10,
            ),
            n => (n as usize, 2),
        };
        out.push(Out::Frame(b[0], b[at..at + len].to_vec()));
        b = &b[at + len..];
    }
    out
}

fn close_frame(code: u16, reason: &str) -> Out {
    Out::Frame(0x88, close_payload(code, reason))
}

// ----- handshake -----

#[test]
fn upgrade_opens_and_sets_the_ping_timer() {
    let s = Sim::open();
    assert!(s.conn.is_open() && s.conn.opened());
    assert_eq!(s.conn.next_timeout(&CFG), Some(CFG.ping_ticks));
}

#[test]
fn a_request_split_anywhere_is_kept_and_completed() {
    let req = format!("{UPGRADE}\r\n");
    for cut in [1, 10, req.len() - 1] {
        let mut conn = Connection::new(&CFG, 0);
        let limits = HandshakeLimits::default();
        let mut h = [httparse::EMPTY_HEADER; 32];
        let first = conn.read_request(&req.as_bytes()[..cut], &mut h, &limits, &CFG, 0);
        assert!(matches!(first, Ok(None)), "cut {cut}");
        conn.keep_tail(&req.as_bytes()[..cut], &CFG, 0);
        let mut buf = conn.take_tail();
        buf.extend_from_slice(&req.as_bytes()[cut..]);
        let mut h = [httparse::EMPTY_HEADER; 32];
        let (_, used) = conn
            .read_request(&buf, &mut h, &limits, &CFG, 0)
            .unwrap()
            .unwrap();
        assert_eq!(used, req.len());
    }
}

#[test]
fn a_malformed_request_is_answered_in_http_and_closes() {
    let mut s = Sim::new();
    let mut h = [httparse::EMPTY_HEADER; 32];
    let bad = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    let r = s
        .conn
        .read_request(bad, &mut h, &HandshakeLimits::default(), &CFG, 0);
    assert!(r.is_err());
    assert_eq!(s.conn.phase(), Phase::Closing);
    assert!(!s.conn.wants_input());
    match s.written().as_slice() {
        [Out::Http(h)] => assert!(h.starts_with("HTTP/1.1 400"), "{h}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(s.conn.flushed(), AfterFlush::ShutdownWrite);
}

#[test]
fn handshake_timeout() {
    let mut s = Sim::new();
    assert_eq!(s.run_until(CFG.handshake_ticks - 1), vec![]);
    assert_eq!(s.run_until(CFG.handshake_ticks), vec![Timeout::Handshake]);
    assert!(s.conn.is_dead());
    assert_eq!(s.conn.next_timeout(&CFG), None);
}

#[test]
fn a_rejected_request_waits_for_the_peer_until_the_close_deadline() {
    let mut s = Sim::new();
    s.conn.reject(429, "too many", &CFG, 2);
    assert_eq!(s.conn.next_timeout(&CFG), Some(2 + CFG.close_ticks));
    assert_eq!(s.run_until(100), vec![Timeout::Close]);
}

// ----- messages -----

#[test]
fn messages_are_delivered_whole_and_in_order() {
    let mut s = Sim::open();
    let mut bytes = client(OpCode::Text, true, b"one");
    bytes.extend(client(OpCode::Binary, true, &[0, 1, 2]));
    bytes.extend(client(OpCode::Text, true, "drei ü".as_bytes()));
    s.feed(&bytes);
    assert_eq!(
        s.got,
        vec![
            (true, b"one".to_vec()),
            (false, vec![0, 1, 2]),
            (true, "drei ü".as_bytes().to_vec())
        ]
    );
}

#[test]
fn bytes_split_one_at_a_time_give_the_same_messages_and_no_idle_buffer() {
    let mut s = Sim::open();
    let mut bytes = client(OpCode::Text, false, b"hel");
    bytes.extend(client(OpCode::Ping, true, b"p"));
    bytes.extend(client(OpCode::Continuation, true, b"lo"));
    bytes.extend(client(OpCode::Binary, true, &[7; 300]));
    for b in &bytes {
        s.feed(std::slice::from_ref(b));
    }
    assert_eq!(
        s.got,
        vec![(true, b"hello".to_vec()), (false, vec![7; 300])]
    );
    assert_eq!(s.written(), vec![Out::Frame(0x8A, b"p".to_vec())]);
    assert_eq!(
        s.conn.tail.capacity(),
        0,
        "an idle connection holds no read buffer"
    );
    assert_eq!(s.conn.msg.capacity(), 0, "nor a fragment buffer");
}

#[test]
fn a_ping_inside_a_fragmented_message_is_answered_at_once() {
    let mut s = Sim::open();
    s.frame(OpCode::Binary, false, b"a");
    s.frame(OpCode::Ping, true, b"hi");
    assert_eq!(s.written(), vec![Out::Frame(0x8A, b"hi".to_vec())]);
    s.frame(OpCode::Continuation, true, b"b");
    assert_eq!(s.got, vec![(false, b"ab".to_vec())]);
}

#[test]
fn every_protocol_violation_closes_with_its_code_behind_earlier_replies() {
    let cases: Vec<(Vec<u8>, u16)> = vec![
        (
            {
                let mut f = client(OpCode::Text, true, b"x");
                f[1] &= 0x7f;
                f.truncate(2);
                f.push(b'x');
                f
            },
            1002,
        ),
        (
            {
                let mut f = client(OpCode::Text, true, b"x");
                f[0] |= 0x40;
                f
            },
            1002,
        ),
        (
            {
                let mut f = client(OpCode::Text, true, b"x");
                f[0] = 0x83;
                f
            },
            1002,
        ),
        (client(OpCode::Ping, false, b""), 1002),
        (client(OpCode::Ping, true, &[0; 126]), 1002),
        (client(OpCode::Continuation, true, b"x"), 1002),
        (client(OpCode::Text, true, &[0xff, 0xfe]), 1007),
        (client(OpCode::Binary, true, &vec![0; (1 << 16) + 1]), 1009),
        (client(OpCode::Close, true, &[3]), 1002),
        (client(OpCode::Close, true, &close_payload(1005, "")), 1002),
        (client(OpCode::Close, true, &[0x03, 0xe8, 0xff]), 1007),
    ];
    for (bad, code) in cases {
        let mut s = Sim::open();
        s.feed(&client(OpCode::Text, true, b"before"));
        s.conn
            .send_reply(encode_frame_bytes(OpCode::Text, b"reply"))
            .unwrap();
        let mut bytes = bad.clone();
        bytes.extend(client(OpCode::Text, true, b"after"));
        s.feed(&bytes);
        assert_eq!(s.got, vec![(true, b"before".to_vec())], "{bad:?}");
        assert!(
            matches!(s.conn.take_failure(), Some(Failure::Protocol(_))),
            "{bad:?}"
        );
        let out = s.written();
        assert_eq!(out[0], Out::Frame(0x81, b"reply".to_vec()), "{bad:?}");
        match &out[1..] {
            [Out::Frame(0x88, p)] => assert_eq!(u16::from_be_bytes([p[0], p[1]]), code, "{bad:?}"),
            other => panic!("{bad:?}: {other:?}"),
        }
        assert_eq!(s.conn.flushed(), AfterFlush::ShutdownWrite);
        assert!(!s.conn.wants_input());
        assert!(
            s.conn.send_reply(Bytes::new()).is_err(),
            "closing refuses sends"
        );
    }
}

#[test]
fn a_message_over_the_limit_in_fragments_closes_1009() {
    let mut s = Sim::open();
    let chunk = vec![0u8; 1 << 15];
    s.frame(OpCode::Binary, false, &chunk);
    for _ in 0..3 {
        s.frame(OpCode::Continuation, false, &chunk);
    }
    s.frame(OpCode::Continuation, true, b"x");
    assert_eq!(s.written(), vec![close_frame(1009, "message too large")]);
    assert!(s.got.is_empty());
}

// ----- closing -----

#[test]
fn the_peers_close_is_echoed_behind_replies_and_ends_the_connection() {
    let mut s = Sim::open();
    s.conn
        .send_reply(encode_frame_bytes(OpCode::Text, b"r"))
        .unwrap();
    let mut bytes = client(OpCode::Close, true, &close_payload(1000, "bye"));
    bytes.extend(client(OpCode::Text, true, b"ignored"));
    s.feed(&bytes);
    assert_eq!(s.conn.peer_code(), Some(CloseCode::NORMAL));
    assert!(s.got.is_empty());
    assert_eq!(
        s.written(),
        vec![Out::Frame(0x81, b"r".to_vec()), close_frame(1000, "")]
    );
    assert_eq!(s.conn.flushed(), AfterFlush::Drop);
    assert!(s.conn.is_dead());
}

#[test]
fn a_close_during_a_fragmented_message_drops_the_fragments() {
    let mut s = Sim::open();
    s.frame(OpCode::Text, false, b"part");
    s.frame(OpCode::Close, true, &close_payload(1001, ""));
    assert!(s.got.is_empty());
    assert_eq!(s.written(), vec![close_frame(1001, "")]);
    s.frame(OpCode::Continuation, true, b"rest");
    assert!(s.got.is_empty(), "nothing after the close is delivered");
}

#[test]
fn our_close_waits_for_the_answer_then_ends() {
    let mut s = Sim::open();
    s.conn
        .send(encode_frame_bytes(OpCode::Text, b"last"), &CFG)
        .unwrap();
    s.conn.close(CloseCode::NORMAL, "done", &CFG, 0);
    assert_eq!(s.conn.phase(), Phase::Closing);
    assert_eq!(
        s.written(),
        vec![
            Out::Frame(0x81, b"last".to_vec()),
            close_frame(1000, "done")
        ]
    );
    assert_eq!(s.conn.flushed(), AfterFlush::Nothing);
    // Data from the peer before its close is ignored; its close completes the handshake.
    s.frame(OpCode::Text, true, b"late");
    assert!(s.got.is_empty());
    s.frame(OpCode::Close, true, &close_payload(1000, ""));
    assert!(s.conn.is_dead());
    assert!(s.written().is_empty(), "no second close frame");
}

#[test]
fn close_timeout_when_the_peer_never_answers() {
    let mut s = Sim::open();
    s.now = 4;
    s.conn.close(CloseCode::GOING_AWAY, "bye", &CFG, s.now);
    assert_eq!(s.conn.next_timeout(&CFG), Some(4 + CFG.close_ticks));
    assert_eq!(s.run_until(4 + CFG.close_ticks - 1), vec![]);
    assert_eq!(s.run_until(100), vec![Timeout::Close]);
    assert!(s.conn.is_dead());
}

#[test]
fn close_now_jumps_the_queue_and_discards_data() {
    let mut s = Sim::open();
    for _ in 0..3 {
        s.conn
            .send(encode_frame_bytes(OpCode::Binary, &[1; 100]), &CFG)
            .unwrap();
    }
    s.conn
        .close_now(CloseCode::POLICY, "slow consumer", &CFG, 0);
    assert_eq!(s.written(), vec![close_frame(1008, "slow consumer")]);
}

#[test]
fn closing_a_handshaking_connection_kills_it() {
    let mut s = Sim::new();
    s.conn.close(CloseCode::GOING_AWAY, "drain", &CFG, 0);
    assert!(s.conn.is_dead());
}

// ----- heartbeat -----

#[test]
fn a_silent_peer_is_pinged_then_closed() {
    let mut s = Sim::open();
    assert_eq!(s.run_until(CFG.ping_ticks), vec![Timeout::Ping]);
    assert_eq!(s.written(), vec![Out::Frame(0x89, vec![])]);
    assert_eq!(s.run_until(CFG.silent_ticks - 1), vec![]);
    assert_eq!(s.run_until(CFG.silent_ticks), vec![Timeout::Heartbeat]);
    assert_eq!(s.written(), vec![close_frame(1001, "heartbeat timeout")]);
    assert_eq!(s.conn.flushed(), AfterFlush::Drop);
    assert!(s.conn.is_dead());
}

#[test]
fn a_peer_that_answers_pings_stays_open_for_hours() {
    let mut s = Sim::open();
    let mut pings = 0;
    for _ in 0..36_000 {
        let next = s.conn.next_timeout(&CFG).unwrap();
        for t in s.run_until(next) {
            assert_eq!(t, Timeout::Ping);
            pings += 1;
            s.written();
            s.now += 1; // the pong arrives a tick later
            s.frame(OpCode::Pong, true, b"");
        }
    }
    assert!(s.conn.is_open());
    assert!(pings >= 30_000, "{pings}");
}

#[test]
fn traffic_from_the_peer_defers_the_ping() {
    let mut s = Sim::open();
    s.now = 8;
    s.frame(OpCode::Text, true, b"x");
    // The timer set at the upgrade fires early: nothing is due yet, it moves.
    assert_eq!(s.conn.on_timeout(&CFG, CFG.ping_ticks), Timeout::Nothing);
    assert_eq!(s.conn.next_timeout(&CFG), Some(8 + CFG.ping_ticks));
}

// ----- backpressure -----

#[test]
fn a_peer_that_never_reads_fills_the_bound_then_is_refused_or_closed() {
    let mut s = Sim::open();
    let frame = encode_frame_bytes(OpCode::Binary, &[0; 500]);
    let mut sent = 0;
    while s.conn.send(frame.clone(), &CFG).is_ok() {
        sent += 1;
        assert!(sent < 100);
    }
    assert_eq!(s.conn.send(frame.clone(), &CFG), Err(SendError::Full));
    assert!(
        s.conn.read_paused(&CFG),
        "reading pauses past half the bound"
    );
    assert!(s.conn.queued_bytes() <= CFG.send_bound + frame.len());
    // A published frame under the disconnect policy closes it 1008, ahead of the data.
    let verdict = s
        .conn
        .offer(frame.clone(), None, SlowPolicy::Disconnect, &CFG, 0);
    assert_eq!(verdict, Ok(Offer::Disconnect));
    assert_eq!(s.conn.phase(), Phase::Closing);
    assert_eq!(s.written(), vec![close_frame(1008, "slow consumer")]);
    assert_eq!(
        s.conn.offer(frame, None, SlowPolicy::Drop, &CFG, 0),
        Err(SendError::Closed)
    );
}

#[test]
fn keyed_offers_conflate_for_a_slow_reader() {
    let mut s = Sim::open();
    let key = Some(ConflationKey::new(1, 7));
    let mut conflated = 0;
    for i in 0..50u8 {
        let f = encode_frame_bytes(OpCode::Binary, &[i; 200]);
        if s.conn.offer(f, key, SlowPolicy::Disconnect, &CFG, 0) == Ok(Offer::Conflated) {
            conflated += 1;
        }
    }
    assert!(conflated > 0);
    assert!(s.conn.is_open());
    let out = s.written();
    assert_eq!(
        out.last(),
        Some(&Out::Frame(0x82, vec![49; 200])),
        "latest wins"
    );
}

#[test]
fn release_frees_everything() {
    let mut s = Sim::open();
    s.conn
        .send(encode_frame_bytes(OpCode::Binary, &[0; 100]), &CFG)
        .unwrap();
    s.feed(&client(OpCode::Binary, true, &[1; 50])[..10]);
    s.conn.release();
    assert!(s.conn.is_dead() && !s.conn.has_output());
    assert_eq!(s.conn.tail.capacity(), 0);
}

// ----- permessage-deflate -----

fn compressed(op: OpCode, msg: &[u8], d: &mut Deflater) -> Vec<u8> {
    let mut z = Vec::new();
    d.compress(msg, &mut z).unwrap();
    let mut f = client(op, true, &z);
    f[0] |= 0x40;
    f
}

#[test]
fn compressed_messages_inflate_with_and_without_context_takeover() {
    let text = "hello hello hello hello".repeat(10);
    for (offer, keep) in [
        ("permessage-deflate; client_no_context_takeover", false),
        ("permessage-deflate", true),
    ] {
        let mut s = Sim::open_with(&format!("Sec-WebSocket-Extensions: {offer}\r\n"));
        assert_eq!(s.conn.deflate_window(), Some(15));
        let mut d = Deflater::new(6, 15);
        for _ in 0..3 {
            let f = compressed(OpCode::Text, text.as_bytes(), &mut d);
            s.feed(&f);
            if !keep {
                d = Deflater::new(6, 15);
            }
        }
        assert_eq!(s.got.len(), 3, "{offer}");
        assert!(s.conn.last_message_inflated());
        assert!(s.got.iter().all(|(t, m)| *t && m == text.as_bytes()));
        assert_eq!(s.conn.deflate.as_ref().unwrap().inflater.is_some(), keep);
    }
}

#[test]
fn a_compression_bomb_closes_1009_and_garbage_closes_1007() {
    let mut s = Sim::open_with("Sec-WebSocket-Extensions: permessage-deflate\r\n");
    let big = vec![b'a'; CFG.limits.max_message + 1];
    s.feed(&compressed(OpCode::Binary, &big, &mut Deflater::new(6, 15)));
    assert_eq!(s.conn.take_failure(), Some(Failure::InflateLimit));
    assert_eq!(s.written(), vec![close_frame(1009, "message too large")]);

    let mut s = Sim::open_with("Sec-WebSocket-Extensions: permessage-deflate\r\n");
    let mut f = client(OpCode::Binary, true, &[0xff; 20]);
    f[0] |= 0x40;
    s.feed(&f);
    assert_eq!(s.conn.take_failure(), Some(Failure::InflateCorrupt));
    assert!(matches!(s.written().as_slice(), [Out::Frame(0x88, p)] if p[..2] == [0x03, 0xef]));
}

#[test]
fn compressed_text_that_is_not_utf8_closes_1007() {
    let mut s = Sim::open_with("Sec-WebSocket-Extensions: permessage-deflate\r\n");
    s.feed(&compressed(
        OpCode::Text,
        &[0xc3, 0x28],
        &mut Deflater::new(6, 15),
    ));
    assert!(s.got.is_empty());
    assert_eq!(
        s.conn.take_failure(),
        Some(Failure::Protocol(ProtocolError::InvalidUtf8))
    );
}

#[test]
fn an_idle_connection_is_small() {
    // What every idle connection pays for its protocol state (docs/architecture.md), and
    // what negotiating permessage-deflate adds before the first compressed message
    // (docs/protocol.md).
    println!(
        "Connection {} bytes, ConnDeflate {} bytes",
        std::mem::size_of::<Connection>(),
        std::mem::size_of::<ConnDeflate>()
    );
    assert!(std::mem::size_of::<ConnDeflate>() <= 16);
    assert!(
        std::mem::size_of::<Connection>() <= 152,
        "{}",
        std::mem::size_of::<Connection>()
    );
}

// ----- messages under way -----

#[test]
fn a_message_not_finished_in_time_closes_1008_and_frees_its_bytes() {
    let mut s = Sim::open();
    let frame = client(OpCode::Binary, true, &[5; 1000]);
    s.now = 2;
    s.feed(&frame[..20]);
    assert!(
        s.conn.partial_bytes() >= 1000,
        "the whole frame is reserved at once"
    );
    assert_eq!(
        s.conn.next_timeout(&CFG),
        Some(2 + CFG.ping_ticks),
        "the ping comes first"
    );
    // Trickling bytes keeps the heartbeat happy but not the message deadline.
    for t in 3..2 + CFG.message_ticks {
        s.run_until(t);
        s.written();
        s.feed(&frame[20 + t as usize..21 + t as usize]);
    }
    assert_eq!(s.run_until(2 + CFG.message_ticks), vec![Timeout::Message]);
    assert_eq!(s.conn.take_failure(), Some(Failure::MessageTimeout));
    assert_eq!(s.written(), vec![close_frame(1008, "message timeout")]);
    assert_eq!(s.conn.partial_bytes(), 0);
    assert!(s.got.is_empty());
}

#[test]
fn a_fragmented_message_must_finish_in_time_too() {
    let mut s = Sim::open();
    s.frame(OpCode::Text, false, b"first part");
    assert_eq!(s.conn.next_timeout(&CFG), Some(CFG.ping_ticks));
    s.frame(OpCode::Pong, true, b""); // control frames between fragments do not help
    let fired = s.run_until(CFG.message_ticks);
    assert_eq!(fired.last(), Some(&Timeout::Message), "{fired:?}");
}

#[test]
fn messages_cut_by_every_read_never_time_out_while_they_keep_finishing() {
    let mut s = Sim::open();
    let one = client(OpCode::Binary, true, &[9; 100]);
    let stream: Vec<u8> = one.iter().cycle().take(one.len() * 400).copied().collect();
    // Each tick a read of 150 bytes: every read ends inside a frame, every other one
    // finishes a message.
    for (t, chunk) in stream.chunks(150).enumerate() {
        s.now = t as Tick / 4;
        for fired in s.run_until(s.now) {
            assert_ne!(fired, Timeout::Message, "tick {t}");
            s.written();
        }
        s.feed(chunk);
    }
    assert!(s.conn.is_open());
    assert_eq!(s.got.len(), 400);
    assert!(
        s.now > 3 * CFG.message_ticks,
        "the run outlasted the message deadline"
    );
}

#[test]
fn over_budget_closes_1013_and_frees_what_it_held() {
    let mut s = Sim::open();
    s.frame(OpCode::Binary, false, &[1; 500]);
    s.feed(&client(OpCode::Continuation, true, &[2; 800])[..100]);
    assert!(s.conn.partial_bytes() >= 1300);
    s.conn.close_over_budget(&CFG, s.now);
    assert_eq!(s.conn.take_failure(), Some(Failure::OverBudget));
    assert_eq!(s.conn.partial_bytes(), 0);
    assert_eq!(s.written(), vec![close_frame(1013, "server busy")]);
    s.feed(&[0; 50]);
    assert_eq!(
        s.conn.partial_bytes(),
        0,
        "input after the close is not kept"
    );
}
