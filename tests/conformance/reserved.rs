//! RFC 6455 5.2 reserved bits and opcodes (Autobahn 3 Reserved Bits, 4 Opcodes): with no
//! extension negotiated, any RSV bit and any reserved opcode fails the connection with 1002.
//! A valid message sent before the offending frame is still echoed first.

use crate::{
    common::{op, raw_frame, RawClient},
    each_case, each_driver, Env,
};

/// Reserved non-control (3-7) and control (0xB-0xF) opcodes.
const RESERVED_OPCODES: [u8; 10] = [3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF];

fn masked(c: &mut RawClient, raw_op: u8, fin: bool, rsv: u8, payload: &[u8]) -> Vec<u8> {
    c.build_raw(raw_op, fin, rsv, payload)
}

/// Autobahn 3.1, 3.5-3.7: each RSV value 1-7 on text, binary, ping, pong, close: 1002.
#[test]
fn rsv_bits_set_each_is_1002() {
    each_driver(|env| {
        for rsv in 1..=7u8 {
            for (name, opcode, payload) in [
                ("text", op::TEXT, &b"Hello"[..]),
                ("binary", op::BINARY, &[0u8, 1, 2][..]),
                ("ping", op::PING, &b"p"[..]),
                ("pong", op::PONG, &b""[..]),
                ("close", op::CLOSE, &[0x03, 0xE8][..]),
            ] {
                let mut c = env.connect(format!("rsv={rsv:03b} on {name}"));
                let f = masked(&mut c, opcode, true, rsv, payload);
                c.send_raw(&f);
                c.expect_close(1002);
            }
        }
    });
}

/// RSV bits on a continuation frame and on the first fragment of a message: 1002.
#[test]
fn rsv_bits_on_fragments_are_1002() {
    each_driver(|env| {
        for rsv in [0b100u8, 0b010, 0b001] {
            let mut c = env.connect(format!("rsv={rsv:03b} on continuation"));
            let mut all = c.build(op::TEXT, false, b"ab");
            all.extend(masked(&mut c, op::CONT, true, rsv, b"cd"));
            c.send_raw(&all);
            c.expect_close(1002);

            let mut c = env.connect(format!("rsv={rsv:03b} on first fragment"));
            let mut all = masked(&mut c, op::BINARY, false, rsv, b"ab");
            all.extend(c.build(op::CONT, true, b"cd"));
            c.send_raw(&all);
            c.expect_close(1002);
        }
    });
}

/// Autobahn 3.2: a valid text message answered, then a frame with RSV bits and a ping:
/// 1002, the ping is not answered.
#[test]
fn rsv_after_answered_message_is_1002() {
    each_driver(|env| {
        for rsv in [1u8, 2, 4] {
            let mut c = env.connect(format!("answered, then rsv={rsv:03b}"));
            c.send_text("Hello, world!");
            c.expect_text("Hello, world!");
            let mut rest = masked(&mut c, op::TEXT, true, rsv, b"Hello, world!");
            rest.extend(c.build(op::PING, true, b""));
            c.send_raw(&rest);
            c.expect_close(1002);
        }
    });
}

/// BUG (Autobahn 3.3/3.4): a valid text message, a frame with RSV bits and a ping sent
/// together (and octet-wise). The valid message must be echoed before the close 1002; the
/// server instead drops the echo it had already queued (`fail` calls
/// `SendQueue::discard_data`, which throws away replies to earlier, valid messages that were
/// not yet written) and sends only the close.
#[test]
fn bug_protocol_error_discards_queued_echo_rsv() {
    each_driver(|env| {
        each_case([(3u8, 0usize), (4, 1)], |&(rsv, chop)| {
            let mut c = env.connect(format!("valid, rsv={rsv:03b}, ping; chop={chop}"));
            let mut all = c.build(op::TEXT, true, b"Hello, world!");
            all.extend(masked(&mut c, op::TEXT, true, rsv, b"Hello, world!"));
            all.extend(c.build(op::PING, true, b""));
            if chop == 0 {
                c.send_raw(&all);
            } else {
                c.send_chopped(&all, chop);
            }
            c.expect_text("Hello, world!");
            c.expect_close(1002);
        });
    });
}

fn reserved_opcode_alone(env: &Env, opcode: u8, payload: &[u8]) {
    let mut c = env.connect(format!(
        "reserved opcode {opcode:#x} payload {}",
        payload.len()
    ));
    let f = masked(&mut c, opcode, true, 0, payload);
    c.send_raw(&f);
    c.expect_close(1002);
}

/// Autobahn 4.1.1/4.1.2, 4.2.1/4.2.2: reserved opcodes 3-7 and 0xB-0xF, with and without
/// payload: 1002.
#[test]
fn reserved_opcodes_are_1002() {
    each_driver(|env| {
        for opcode in RESERVED_OPCODES {
            reserved_opcode_alone(env, opcode, b"");
            reserved_opcode_alone(env, opcode, b"reserved opcode payload");
        }
    });
}

/// BUG (Autobahn 4.1.3-4.1.5, 4.2.3-4.2.5): a valid text message, a frame with a reserved
/// opcode, then a ping, all in one write (and octet-wise). The valid message must still be
/// echoed before the close 1002; the server drops the queued echo (`fail` ->
/// `discard_data`) and sends only the close.
#[test]
fn bug_protocol_error_discards_queued_echo_reserved_opcode() {
    each_driver(|env| {
        let cases = RESERVED_OPCODES
            .iter()
            .map(|&opcode| (opcode, 0usize))
            .chain([(5, 1), (0xB, 1)]);
        each_case(cases, |&(opcode, chop)| {
            let mut c = env.connect(format!(
                "valid, reserved opcode {opcode:#x}, ping; chop={chop}"
            ));
            let mut all = c.build(op::TEXT, true, b"Hello, world!");
            all.extend(masked(&mut c, opcode, true, 0, b"reserved"));
            all.extend(c.build(op::PING, true, b""));
            if chop == 0 {
                c.send_raw(&all);
            } else {
                c.send_chopped(&all, chop);
            }
            c.expect_text("Hello, world!");
            c.expect_close(1002);
        });
    });
}

/// The same with the valid message answered before the bad frame is even sent.
#[test]
fn reserved_opcode_after_answered_message_is_1002() {
    each_driver(|env| {
        for opcode in [5u8, 0xB] {
            let mut c = env.connect(format!("answered, then reserved opcode {opcode:#x}"));
            c.send_text("Hello, world!");
            c.expect_text("Hello, world!");
            let f = raw_frame(opcode, true, 0, Some([1, 2, 3, 4]), b"");
            c.send_raw(&f);
            c.expect_close(1002);
        }
    });
}

/// A reserved opcode in the middle of a fragmented message: 1002.
#[test]
fn reserved_opcode_inside_fragmented_message_is_1002() {
    each_driver(|env| {
        for opcode in [3u8, 0xF] {
            let mut c = env.connect(format!("reserved opcode {opcode:#x} between fragments"));
            let mut all = c.build(op::TEXT, false, b"ab");
            all.extend(masked(&mut c, opcode, true, 0, b""));
            all.extend(c.build(op::CONT, true, b"cd"));
            c.send_raw(&all);
            c.expect_close(1002);
        }
    });
}
