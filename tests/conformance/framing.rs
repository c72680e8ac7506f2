//! RFC 6455 5.2 base framing (Autobahn 1.1 text, 1.2 binary): data opcodes, the 7-, 16- and
//! 64-bit payload lengths at their boundaries, and payload sizes from 0 up.

use std::time::Duration;

use crate::{
    ascii_text, binary_payload,
    common::{frame, op},
    each_driver,
};

/// Payload lengths around each length-encoding boundary.
const BOUNDARY_LENS: [usize; 14] = [
    0, 1, 2, 124, 125, 126, 127, 128, 1000, 65534, 65535, 65536, 65537, 100_000,
];

/// The header length a minimal server encoding uses for `len` payload bytes.
fn server_header_len(len: usize) -> usize {
    match len {
        0..=125 => 2,
        126..=65535 => 4,
        _ => 10,
    }
}

fn echo_lengths(opcode: u8) {
    each_driver(|env| {
        let mut c = env.connect(format!("opcode {opcode} boundary lengths"));
        for len in BOUNDARY_LENS {
            let payload = if opcode == op::TEXT {
                ascii_text(len).into_bytes()
            } else {
                binary_payload(len)
            };
            c.send(opcode, true, &payload);
            let f = c.read_frame();
            let ctx = &c.ctx;
            assert_eq!(f.opcode, opcode, "[{ctx}] len {len}: opcode");
            assert!(f.fin, "[{ctx}] len {len}: echo must be one frame");
            assert_eq!(f.payload.len(), len, "[{ctx}] len {len}: payload length");
            assert!(f.payload == payload, "[{ctx}] len {len}: payload differs");
            assert_eq!(
                f.header_len,
                server_header_len(len),
                "[{ctx}] len {len}: server length encoding"
            );
        }
        c.close_normally();
    });
}

/// Autobahn 1.1.1-1.1.7: text messages of 0, 125, 126, 127, 128, 65535, 65536 bytes (and
/// neighbours), with the echo's header length checked against the minimal encoding.
#[test]
fn text_lengths_at_7_16_64_bit_boundaries() {
    echo_lengths(op::TEXT);
}

/// Autobahn 1.2.1-1.2.7: the same for binary.
#[test]
fn binary_lengths_at_7_16_64_bit_boundaries() {
    echo_lengths(op::BINARY);
}

/// Every payload size from 0 to 300, text and binary alternating, all in one write: many
/// frames per read, each echoed in order.
#[test]
fn payload_sizes_0_to_300_pipelined() {
    each_driver(|env| {
        let mut c = env.connect("sizes 0..=300 pipelined");
        let mut all = Vec::new();
        for len in 0..=300 {
            let f = if len % 2 == 0 {
                c.build(op::TEXT, true, ascii_text(len).as_bytes())
            } else {
                c.build(op::BINARY, true, &binary_payload(len))
            };
            all.extend_from_slice(&f);
        }
        c.send_raw(&all);
        for len in 0..=300 {
            if len % 2 == 0 {
                c.expect_text(&ascii_text(len));
            } else {
                c.expect_binary(&binary_payload(len));
            }
        }
        c.close_normally();
    });
}

/// Autobahn 1.1.8 / 1.2.8: a 65536-byte message written in chops of 997 bytes.
#[test]
fn len_65536_written_in_chops_of_997() {
    each_driver(|env| {
        let mut c = env.connect("65536 in chops of 997");
        let text = ascii_text(65536);
        let f = c.build(op::TEXT, true, text.as_bytes());
        c.send_chopped(&f, 997);
        c.expect_text(&text);
        let bin = binary_payload(65536);
        let f = c.build(op::BINARY, true, &bin);
        c.send_chopped(&f, 997);
        c.expect_binary(&bin);
        c.close_normally();
    });
}

/// The header (first byte, length byte, extended length, masking key) arriving one byte per
/// read, for each length encoding: the server must wait for the rest, not misparse.
#[test]
fn header_arriving_one_byte_at_a_time() {
    each_driver(|env| {
        let mut c = env.connect("header byte by byte");
        for len in [5usize, 125, 126, 300, 65535, 65536, 70_000] {
            let payload = binary_payload(len);
            let f = c.build(op::BINARY, true, &payload);
            let header = 2
                + 4
                + match len {
                    0..=125 => 0,
                    126..=65535 => 2,
                    _ => 8,
                };
            for b in &f[..header] {
                c.send_raw(std::slice::from_ref(b));
                std::thread::sleep(Duration::from_millis(2));
            }
            // Then the payload in two uneven parts.
            let mid = header + len / 3;
            c.send_raw(&f[header..mid]);
            std::thread::sleep(Duration::from_millis(2));
            c.send_raw(&f[mid..]);
            c.expect_binary(&payload);
        }
        c.close_normally();
    });
}

/// A whole small frame written one byte per write (Autobahn's "octet-wise" chopping).
#[test]
fn small_frames_written_octet_wise() {
    each_driver(|env| {
        let mut c = env.connect("octet-wise");
        for text in ["", "a", "Hello, world!", &ascii_text(125), &ascii_text(200)] {
            let f = c.build(op::TEXT, true, text.as_bytes());
            c.send_chopped(&f, 1);
            c.expect_text(text);
        }
        c.close_normally();
    });
}

/// The all-zero masking key is a valid key (the payload goes through unchanged).
#[test]
fn zero_masking_key_is_valid() {
    each_driver(|env| {
        let mut c = env.connect("zero mask");
        c.send_raw(&frame(op::TEXT, true, b"zero key", [0, 0, 0, 0]));
        c.expect_text("zero key");
        c.send_raw(&frame(op::BINARY, true, &[0xFF; 300], [0xFF; 4]));
        c.expect_binary(&[0xFF; 300]);
        c.close_normally();
    });
}

/// Text and binary messages stay distinct: each echo carries the opcode it was sent with.
#[test]
fn echo_keeps_the_data_opcode() {
    each_driver(|env| {
        let mut c = env.connect("opcode kept");
        let mut all = c.build(op::TEXT, true, b"t1");
        all.extend(c.build(op::BINARY, true, b"b1"));
        all.extend(c.build(op::BINARY, true, b""));
        all.extend(c.build(op::TEXT, true, b""));
        all.extend(c.build(op::TEXT, true, b"t2"));
        c.send_raw(&all);
        c.expect_text("t1");
        c.expect_binary(b"b1");
        c.expect_binary(b"");
        c.expect_text("");
        c.expect_text("t2");
        c.close_normally();
    });
}
