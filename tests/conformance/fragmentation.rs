//! RFC 6455 5.4 fragmentation (Autobahn 5, and 10.1 auto-fragmentation): messages in 2..N
//! fragments, empty fragments, control frames between fragments, and every misuse of
//! continuation frames (1002).

use std::time::Duration;

use crate::{
    ascii_text, binary_payload,
    common::{op, RawClient},
    each_driver,
};

/// The frames of one message split into `sizes.len()` fragments of these sizes.
fn fragments(c: &mut RawClient, opcode: u8, data: &[u8], sizes: &[usize]) -> Vec<u8> {
    assert_eq!(sizes.iter().sum::<usize>(), data.len());
    let mut out = Vec::new();
    let mut off = 0;
    for (i, &n) in sizes.iter().enumerate() {
        let o = if i == 0 { opcode } else { op::CONT };
        out.extend(c.build(o, i == sizes.len() - 1, &data[off..off + n]));
        off += n;
    }
    out
}

/// Split `len` into `n` nearly equal parts.
fn even(len: usize, n: usize) -> Vec<usize> {
    (0..n).map(|i| len / n + usize::from(i < len % n)).collect()
}

/// Autobahn 5.3-5.5: text and binary in 2, 3, 10 and 100 fragments, in one write, echoed as
/// one message.
#[test]
fn text_and_binary_in_2_to_100_fragments() {
    each_driver(|env| {
        let mut c = env.connect("2..100 fragments");
        for n in [2usize, 3, 10, 100] {
            let text = ascii_text(1000 + n);
            let f = fragments(&mut c, op::TEXT, text.as_bytes(), &even(text.len(), n));
            c.send_raw(&f);
            c.expect_text(&text);
            let bin = binary_payload(777 * n);
            let f = fragments(&mut c, op::BINARY, &bin, &even(bin.len(), n));
            c.send_raw(&f);
            c.expect_binary(&bin);
        }
        c.close_normally();
    });
}

/// Autobahn 5.4/5.5/5.8: fragments written one frame per write with pauses between, and
/// written octet-wise.
#[test]
fn fragments_sent_one_at_a_time_and_octet_wise() {
    each_driver(|env| {
        let mut c = env.connect("fragments one at a time");
        let text = "fragment1fragment2fragment3";
        for (i, part) in ["fragment1", "fragment2", "fragment3"].iter().enumerate() {
            let o = if i == 0 { op::TEXT } else { op::CONT };
            c.send(o, i == 2, part.as_bytes());
            std::thread::sleep(Duration::from_millis(20));
        }
        c.expect_text(text);
        let f = fragments(&mut c, op::TEXT, text.as_bytes(), &[9, 9, 9]);
        c.send_chopped(&f, 1);
        c.expect_text(text);
        c.close_normally();
    });
}

/// Fragments of size 0: at the start, middle and end, and a message made only of them
/// (Autobahn 6.1.2/6.1.3 for text).
#[test]
fn zero_length_fragments() {
    each_driver(|env| {
        let mut c = env.connect("zero-length fragments");
        for (opcode, sizes) in [
            (op::TEXT, vec![0, 0, 0]),
            (op::BINARY, vec![0, 0]),
            (op::TEXT, vec![0, 5, 0]),
            (op::TEXT, vec![0, 3]),
            (op::BINARY, vec![3, 0]),
            (op::BINARY, vec![2, 0, 0, 0, 2]),
        ] {
            let len: usize = sizes.iter().sum();
            let data = ascii_text(len);
            let f = fragments(&mut c, opcode, data.as_bytes(), &sizes);
            c.send_raw(&f);
            if opcode == op::TEXT {
                c.expect_text(&data);
            } else {
                c.expect_binary(data.as_bytes());
            }
        }
        c.close_normally();
    });
}

/// Autobahn 5.6-5.8, 5.19/5.20: pings and pongs between fragments are answered (pong first,
/// since the message is not complete yet) and do not disturb the message.
#[test]
fn ping_and_pong_interleaved_between_fragments() {
    each_driver(|env| {
        let mut c = env.connect("ping/pong between fragments");
        let mut all = c.build(op::TEXT, false, b"frag1 ");
        all.extend(c.build(op::PING, true, b"ping-1"));
        all.extend(c.build(op::CONT, false, b"frag2 "));
        all.extend(c.build(op::PONG, true, b"unsolicited"));
        all.extend(c.build(op::CONT, false, b"frag3 "));
        all.extend(c.build(op::PING, true, b""));
        all.extend(c.build(op::CONT, true, b"frag4"));
        c.send_raw(&all);
        c.expect_pong(b"ping-1");
        c.expect_pong(b"");
        c.expect_text("frag1 frag2 frag3 frag4");

        // The same, one frame at a time: each pong comes back before the message ends.
        c.send(op::BINARY, false, &[1, 2]);
        for i in 0..5u8 {
            c.send(op::PING, true, &[i; 3]);
            c.expect_pong(&[i; 3]);
            c.send(op::CONT, false, &[i]);
        }
        c.send(op::CONT, true, &[9]);
        c.expect_binary(&[1, 2, 0, 1, 2, 3, 4, 9]);

        // And octet-wise (5.7/5.20).
        let mut all = c.build(op::TEXT, false, b"a");
        all.extend(c.build(op::PING, true, b"x"));
        all.extend(c.build(op::CONT, true, b"b"));
        c.send_chopped(&all, 1);
        c.expect_pong(b"x");
        c.expect_text("ab");
        c.close_normally();
    });
}

/// Autobahn 5.9-5.14: a continuation frame with no message under way, FIN set or not, sent
/// at once or chopped: 1002.
#[test]
fn continuation_without_start_is_1002() {
    each_driver(|env| {
        for fin in [true, false] {
            for chop in [0usize, 1] {
                let mut c = env.connect(format!("continuation first fin={fin} chop={chop}"));
                let mut all = c.build(op::CONT, fin, b"fragment1");
                all.extend(c.build(op::TEXT, true, b"fragment2"));
                if chop == 0 {
                    c.send_raw(&all);
                } else {
                    c.send_chopped(&all, chop);
                }
                c.expect_close(1002);
            }
        }
        // A continuation after a complete (unfragmented) message: nothing is under way.
        let mut c = env.connect("continuation after complete message");
        c.send_text("done");
        c.expect_text("done");
        c.send(op::CONT, true, b"late");
        c.expect_close(1002);
    });
}

/// Autobahn 5.18 and friends: a new text or binary frame while a fragmented message is
/// under way: 1002.
#[test]
fn new_data_frame_inside_fragmented_message_is_1002() {
    each_driver(|env| {
        for (first, second, fin) in [
            (op::TEXT, op::TEXT, true),
            (op::TEXT, op::TEXT, false),
            (op::TEXT, op::BINARY, true),
            (op::BINARY, op::TEXT, true),
            (op::BINARY, op::BINARY, false),
        ] {
            let mut c = env.connect(format!("data {second} inside {first} fin={fin}"));
            c.send(first, false, b"fragment1");
            c.send(second, fin, b"fragment2");
            c.expect_close(1002);
        }
    });
}

/// Autobahn 5.1/5.2: control frames must not be fragmented (FIN clear): 1002, on their own
/// and in the middle of a fragmented data message.
#[test]
fn fragmented_control_frame_is_1002() {
    each_driver(|env| {
        for (name, opcode) in [("ping", op::PING), ("pong", op::PONG), ("close", op::CLOSE)] {
            let mut c = env.connect(format!("fragmented {name}"));
            let mut all = c.build(opcode, false, b"");
            all.extend(c.build(op::CONT, true, b""));
            c.send_raw(&all);
            c.expect_close(1002);

            let mut c = env.connect(format!("fragmented {name} inside message"));
            let mut all = c.build(op::TEXT, false, b"abc");
            let payload: &[u8] = if opcode == op::CLOSE {
                &[0x03, 0xE8]
            } else {
                b"x"
            };
            all.extend(c.build(opcode, false, payload));
            c.send_raw(&all);
            c.expect_close(1002);
        }
    });
}

/// BUG (Autobahn 5.15): a complete fragmented message, then a continuation that starts
/// nothing, in one write. The first message must be echoed before the connection fails with
/// 1002; the server drops the queued echo (`fail` -> `discard_data`) and sends only the
/// close.
#[test]
fn bug_protocol_error_discards_queued_echo_stray_continuation() {
    each_driver(|env| {
        let mut c = env.connect("5.15");
        let mut all = c.build(op::TEXT, false, b"fragment1");
        all.extend(c.build(op::CONT, true, b"fragment2"));
        all.extend(c.build(op::CONT, false, b"fragment3"));
        all.extend(c.build(op::TEXT, true, b"fragment4"));
        c.send_raw(&all);
        c.expect_text("fragment1fragment2");
        c.expect_close(1002);
    });
}

/// Autobahn 5.15 with the first message answered before the stray continuation is sent.
#[test]
fn answered_fragmented_message_then_stray_continuation_is_1002() {
    each_driver(|env| {
        let mut c = env.connect("5.15 answered first");
        let mut all = c.build(op::TEXT, false, b"fragment1");
        all.extend(c.build(op::CONT, true, b"fragment2"));
        c.send_raw(&all);
        c.expect_text("fragment1fragment2");
        let mut all = c.build(op::CONT, false, b"fragment3");
        all.extend(c.build(op::TEXT, true, b"fragment4"));
        c.send_raw(&all);
        c.expect_close(1002);
    });
}

/// Autobahn 5.16/5.17: (continuation, text, continuation) sequences, twice, starting with a
/// continuation: 1002 at the first frame.
#[test]
fn continuation_text_continuation_sequence_is_1002() {
    each_driver(|env| {
        for first_fin in [false, true] {
            let mut c = env.connect(format!("5.16/5.17 first fin={first_fin}"));
            let mut all = Vec::new();
            for _ in 0..2 {
                all.extend(c.build(op::CONT, first_fin, b"fragment1"));
                all.extend(c.build(op::TEXT, false, b"fragment2"));
                all.extend(c.build(op::CONT, true, b"fragment3"));
            }
            c.send_raw(&all);
            c.expect_close(1002);
        }
    });
}

/// Autobahn 10.1.1: a 65536-byte text message auto-fragmented into 1300-byte frames.
#[test]
fn autobahn_10_1_1_auto_fragmented_64k_text() {
    each_driver(|env| {
        let mut c = env.connect("10.1.1");
        let text = ascii_text(65536);
        let mut sizes = vec![1300; 65536 / 1300];
        sizes.push(65536 % 1300);
        let f = fragments(&mut c, op::TEXT, text.as_bytes(), &sizes);
        c.send_raw(&f);
        c.expect_text(&text);
        c.close_normally();
    });
}
