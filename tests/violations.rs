//! Protocol violations from raw clients under each io driver: each is answered with its close
//! code, then the server closes TCP, and `protocol_errors` counts it.

mod common;

use std::{io::Write, time::Duration};

use common::*;
use corecast::Config;

/// Open a raw connection on a server with `config`, send `wire`, and expect a close frame
/// with `code`, then the server's end of TCP, and one protocol error counted.
fn assert_violation(what: &str, config: impl Fn(Config) -> Config, wire: &[u8], code: u16) {
    for driver in drivers() {
        let srv = start_echo(config(test_config(driver)));
        let mut s = raw_ws(srv.addr);
        s.write_all(wire).unwrap();
        let (got, reason) = read_close_frame(&mut s);
        assert_eq!(got, code, "{driver:?}: {what}: close reason {reason:?}");
        assert!(
            closed_within(&mut s, Duration::from_secs(3)),
            "{driver:?}: {what}: TCP still open after the close frame"
        );
        assert!(
            wait_until(Duration::from_secs(2), || srv.stats().protocol_errors == 1),
            "{driver:?}: {what}: {:?}",
            srv.stats()
        );
        assert_eq!(
            srv.stats().messages_in,
            0,
            "{driver:?}: {what}: nothing was delivered"
        );
    }
}

fn default(c: Config) -> Config {
    c
}

#[test]
fn unmasked_frame_is_closed_with_1002() {
    assert_violation(
        "unmasked text",
        default,
        &raw_frame(0x1, true, 0, None, b"hello"),
        1002,
    );
}

#[test]
fn unknown_opcode_3_is_closed_with_1002() {
    assert_violation("opcode 3", default, &client_frame(0x3, true, 0, b"x"), 1002);
}

#[test]
fn reserved_control_opcode_is_closed_with_1002() {
    assert_violation(
        "opcode 0xB",
        default,
        &client_frame(0xB, true, 0, b""),
        1002,
    );
}

#[test]
fn rsv1_without_extension_is_closed_with_1002() {
    assert_violation(
        "RSV1",
        default,
        &client_frame(0x1, true, 0b100, b"hello"),
        1002,
    );
}

#[test]
fn invalid_utf8_text_is_closed_with_1007() {
    // "κ" then a byte that can never appear in UTF-8.
    assert_violation(
        "bad UTF-8",
        default,
        &client_frame(0x1, true, 0, &[0xce, 0xba, 0xff]),
        1007,
    );
}

#[test]
fn invalid_utf8_across_fragments_is_closed_with_1007() {
    // A 3-byte sequence started in one fragment and broken in the next.
    let mut wire = client_frame(0x1, false, 0, &[b'a', 0xe2, 0x82]);
    wire.extend(client_frame(0x0, true, 0, b"b"));
    assert_violation("bad UTF-8 across fragments", default, &wire, 1007);
}

#[test]
fn oversize_frame_is_closed_with_1009() {
    let small = |c: Config| Config {
        max_frame_bytes: 1024,
        ..c
    };
    assert_violation(
        "2048-byte frame",
        small,
        &client_frame(0x2, true, 0, &[7; 2048]),
        1009,
    );
}

#[test]
fn oversize_message_from_small_fragments_is_closed_with_1009() {
    let small = |c: Config| Config {
        max_frame_bytes: 1024,
        max_message_bytes: 2048,
        ..c
    };
    let mut wire = client_frame(0x2, false, 0, &[1; 1000]);
    wire.extend(client_frame(0x0, false, 0, &[2; 1000]));
    wire.extend(client_frame(0x0, true, 0, &[3; 1000]));
    assert_violation("3000-byte message", small, &wire, 1009);
}

#[test]
fn fragmented_ping_is_closed_with_1002() {
    assert_violation(
        "ping without FIN",
        default,
        &client_frame(0x9, false, 0, b"x"),
        1002,
    );
}

#[test]
fn oversize_ping_is_closed_with_1002() {
    assert_violation(
        "126-byte ping",
        default,
        &client_frame(0x9, true, 0, &[0; 126]),
        1002,
    );
}

#[test]
fn continuation_without_start_is_closed_with_1002() {
    assert_violation(
        "lone continuation",
        default,
        &client_frame(0x0, true, 0, b"x"),
        1002,
    );
}

#[test]
fn new_message_inside_fragmented_one_is_closed_with_1002() {
    let mut wire = client_frame(0x1, false, 0, b"first ");
    wire.extend(client_frame(0x1, true, 0, b"second"));
    assert_violation("text inside text", default, &wire, 1002);
}

#[test]
fn invalid_close_payloads_are_closed_with_1002() {
    assert_violation(
        "1-byte close",
        default,
        &client_frame(0x8, true, 0, &[3]),
        1002,
    );
    assert_violation("close code 1005", default, &client_close(1005, ""), 1002);
    assert_violation("close code 999", default, &client_close(999, ""), 1002);
    let mut bad_reason = 1000u16.to_be_bytes().to_vec();
    bad_reason.push(0xff);
    assert_violation(
        "close reason not UTF-8",
        default,
        &client_frame(0x8, true, 0, &bad_reason),
        1007,
    );
}

#[test]
fn valid_frames_before_a_violation_are_still_served() {
    for driver in drivers() {
        let srv = start_echo(test_config(driver));
        let mut s = raw_ws(srv.addr);
        let mut wire = client_frame(0x1, true, 0, b"fine");
        wire.extend(client_frame(0x3, true, 0, b"not fine"));
        wire.extend(client_frame(0x1, true, 0, b"never read"));
        s.write_all(&wire).unwrap();
        let echo = read_frame(&mut s).expect("echo");
        assert_eq!(
            (echo.opcode, &echo.payload[..]),
            (0x1, &b"fine"[..]),
            "{driver:?}"
        );
        assert_eq!(read_close_frame(&mut s).0, 1002, "{driver:?}");
        assert!(closed_within(&mut s, Duration::from_secs(3)), "{driver:?}");
        assert_eq!(
            srv.stats().messages_in,
            1,
            "{driver:?}: nothing after the violation"
        );
    }
}
