//! RFC 6455 5.3 client-to-server masking: every client frame must be masked; an unmasked
//! one fails the connection with 1002. Masked payloads are unmasked with each frame's own key.

use crate::{
    binary_payload,
    common::{frame, op, raw_frame},
    each_driver,
};

/// An unmasked frame of each kind, as the first frame on the connection: 1002.
#[test]
fn unmasked_frame_of_each_opcode_is_1002() {
    each_driver(|env| {
        let cases: [(&str, Vec<u8>); 7] = [
            ("text", raw_frame(op::TEXT, true, 0, None, b"hello")),
            ("empty text", raw_frame(op::TEXT, true, 0, None, b"")),
            ("binary", raw_frame(op::BINARY, true, 0, None, &[1, 2, 3])),
            (
                "binary 16-bit len",
                raw_frame(op::BINARY, true, 0, None, &[7; 300]),
            ),
            ("ping", raw_frame(op::PING, true, 0, None, b"p")),
            ("pong", raw_frame(op::PONG, true, 0, None, b"")),
            (
                "close",
                raw_frame(op::CLOSE, true, 0, None, &1000u16.to_be_bytes()),
            ),
        ];
        for (name, bytes) in cases {
            let mut c = env.connect(format!("unmasked {name}"));
            c.send_raw(&bytes);
            c.expect_close(1002);
        }
    });
}

/// An unmasked frame after valid traffic: the earlier message is answered, then 1002.
#[test]
fn unmasked_frame_after_valid_message_is_1002() {
    each_driver(|env| {
        let mut c = env.connect("unmasked after valid");
        c.send_text("first");
        c.expect_text("first");
        c.send_raw(&raw_frame(op::TEXT, true, 0, None, b"second"));
        c.expect_close(1002);
    });
}

/// An unmasked continuation inside a masked fragmented message: 1002.
#[test]
fn unmasked_continuation_is_1002() {
    each_driver(|env| {
        let mut c = env.connect("unmasked continuation");
        c.send(op::TEXT, false, b"par");
        c.send_raw(&raw_frame(op::CONT, true, 0, None, b"tial"));
        c.expect_close(1002);
    });
}

/// Every frame carries its own key, and keys rotate across payload offsets that are not a
/// multiple of 4: fragments of one message with different keys reassemble exactly.
#[test]
fn each_frame_is_unmasked_with_its_own_key() {
    each_driver(|env| {
        let mut c = env.connect("per-frame keys");
        let keys = [
            [0x37, 0xfa, 0x21, 0x3d],
            [0xFF, 0xFF, 0xFF, 0xFF],
            [0x00, 0x00, 0x00, 0x01],
            [0x80, 0x01, 0x7F, 0xFE],
        ];
        // RFC 6455 5.7: a single-frame masked text "Hello".
        c.send_raw(&[
            0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
        ]);
        c.expect_text("Hello");
        let data = binary_payload(1001);
        let mut all = Vec::new();
        let parts = [0..3, 3..10, 10..10, 10..513, 513..1001];
        for (i, r) in parts.iter().enumerate() {
            let opcode = if i == 0 { op::BINARY } else { op::CONT };
            let fin = i == parts.len() - 1;
            all.extend(frame(opcode, fin, &data[r.clone()], keys[i % keys.len()]));
        }
        c.send_raw(&all);
        c.expect_binary(&data);
        c.close_normally();
    });
}
