//! RFC 6455 5.5.2/5.5.3 ping and pong (Autobahn 2): every ping is answered by a pong with
//! the identical payload, control payloads are at most 125 bytes, unsolicited pongs are
//! ignored.

use std::time::Duration;

use crate::{binary_payload, common::op, each_driver};

/// Autobahn 2.1-2.4: pings with no payload, text, binary (every byte value) and 125-byte
/// payloads.
#[test]
fn ping_answered_by_pong_with_identical_payload() {
    each_driver(|env| {
        let mut c = env.connect("ping payloads");
        let all_bytes: Vec<u8> = (0..=255u8).collect();
        let payloads: Vec<Vec<u8>> = vec![
            Vec::new(),
            b"Hello, world!".to_vec(),
            vec![0x00, 0xFF, 0xFE, 0xFD, 0xFC, 0xFB, 0x00, 0xFF],
            all_bytes[..125].to_vec(),
            all_bytes[131..].to_vec(), // 125 bytes, high half: invalid UTF-8 is fine here
            vec![0xFE; 125],
            binary_payload(124),
        ];
        for p in &payloads {
            c.send(op::PING, true, p);
            c.expect_pong(p);
        }
        c.close_normally();
    });
}

/// Autobahn 2.6: a 125-byte ping written in chops of 1 byte.
#[test]
fn ping_125_bytes_written_octet_wise() {
    each_driver(|env| {
        let mut c = env.connect("ping 125 octet-wise");
        let p = binary_payload(125);
        let f = c.build(op::PING, true, &p);
        c.send_chopped(&f, 1);
        c.expect_pong(&p);
        c.close_normally();
    });
}

/// Autobahn 2.5: a ping of 126 bytes (16-bit length) fails with 1002; so do larger ones and
/// a pong of 126 bytes.
#[test]
fn control_frame_over_125_bytes_is_1002() {
    each_driver(|env| {
        for (name, opcode, len) in [
            ("ping 126", op::PING, 126usize),
            ("ping 65536", op::PING, 65536),
            ("pong 126", op::PONG, 126),
        ] {
            let mut c = env.connect(name);
            c.send(opcode, true, &vec![b'x'; len]);
            c.expect_close(1002);
        }
        // The header alone must suffice: the oversized payload is never sent.
        let mut c = env.connect("ping 126 header only");
        let f = c.build(op::PING, true, &[b'x'; 126]);
        c.send_raw(&f[..8]);
        c.expect_close(1002);
    });
}

/// Autobahn 2.7-2.9: unsolicited pongs (empty, with payload) are ignored; a ping after them is
/// answered with its own payload, not the pong's.
#[test]
fn unsolicited_pong_is_ignored() {
    each_driver(|env| {
        let mut c = env.connect("unsolicited pong");
        c.send(op::PONG, true, b"");
        c.send(op::PONG, true, b"unsolicited pong payload");
        c.expect_silence(Duration::from_millis(200));
        c.send(op::PONG, true, b"ping payload?");
        c.send(op::PING, true, b"ping payload");
        c.expect_pong(b"ping payload");
        c.send_text("still open");
        c.expect_text("still open");
        c.close_normally();
    });
}

/// Autobahn 2.10/2.11: many pings in a row, in one write and octet-wise; each is answered in
/// order.
#[test]
fn many_pings_in_a_row_each_answered() {
    each_driver(|env| {
        let mut c = env.connect("many pings");
        let mut all = Vec::new();
        for i in 0..100u32 {
            all.extend(c.build(op::PING, true, format!("payload-{i}").as_bytes()));
        }
        c.send_raw(&all);
        for i in 0..100u32 {
            c.expect_pong(format!("payload-{i}").as_bytes());
        }
        let mut all = Vec::new();
        for i in 0..10u32 {
            all.extend(c.build(op::PING, true, format!("chopped-{i}").as_bytes()));
        }
        c.send_chopped(&all, 1);
        for i in 0..10u32 {
            c.expect_pong(format!("chopped-{i}").as_bytes());
        }
        c.close_normally();
    });
}

/// Pings between data messages: answers come back and data is still echoed in order.
#[test]
fn pings_mixed_with_data() {
    each_driver(|env| {
        let mut c = env.connect("pings and data");
        for i in 0..20u8 {
            c.send(op::PING, true, &[i]);
            c.send_binary(&[i; 10]);
            c.expect_pong(&[i]);
            c.expect_binary(&[i; 10]);
        }
        c.close_normally();
    });
}
