//! RFC 6455 10.4 size limits (Autobahn 9 Limits/Performance): frames and messages at exactly
//! `max_frame_bytes` / `max_message_bytes` pass, one byte more fails with 1009 as soon as the
//! header says so; absurd lengths are refused without allocating; large messages, however
//! they are fragmented or chopped, are echoed intact.

use corecast::Config;

use crate::{
    ascii_text, binary_payload,
    common::{op, raw_frame, RawClient},
    each_driver, each_driver_with,
};

fn limits(max_frame: usize, max_message: usize) -> impl Fn(&mut Config) {
    move |c| {
        c.max_frame_bytes = max_frame;
        c.max_message_bytes = max_message;
        c.partial_message_budget = c.partial_message_budget.max(max_message);
    }
}

/// The frames of one message in fragments of `frag` bytes (the last may be shorter).
fn fragmented(c: &mut RawClient, opcode: u8, data: &[u8], frag: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + data.len() / frag.max(1) * 14 + 14);
    let n = data.len().div_ceil(frag).max(1);
    for i in 0..n {
        let o = if i == 0 { opcode } else { op::CONT };
        let end = ((i + 1) * frag).min(data.len());
        out.extend(c.build(o, i == n - 1, &data[i * frag..end]));
    }
    out
}

/// A frame header alone (masked, 64-bit length field), announcing `len` payload bytes.
fn header_64(raw_op: u8, fin: bool, len: u64) -> Vec<u8> {
    let mut h = vec![(u8::from(fin) << 7) | raw_op, 0x80 | 127];
    h.extend_from_slice(&len.to_be_bytes());
    h.extend_from_slice(&[0x11, 0x22, 0x33, 0x44]);
    h
}

/// A single frame of exactly `max_frame_bytes` is echoed; one byte more is 1009 — at the
/// 7-bit (125), 16-bit (65535 / 65536) and an arbitrary (1024) boundary.
#[test]
fn frame_at_max_frame_bytes_passes_one_over_is_1009() {
    for (max_frame, max_message) in [
        (125usize, 125usize),
        (1024, 4096),
        (65535, 65535),
        (65536, 1 << 20),
    ] {
        each_driver_with(limits(max_frame, max_message), |env| {
            let mut c = env.connect(format!("frame of max_frame_bytes={max_frame}"));
            c.send_text(&ascii_text(max_frame));
            c.expect_text(&ascii_text(max_frame));
            c.send_binary(&binary_payload(max_frame));
            c.expect_binary(&binary_payload(max_frame));
            c.close_normally();

            for opcode in [op::TEXT, op::BINARY] {
                let mut c = env.connect(format!(
                    "opcode {opcode} frame of max_frame_bytes={max_frame} + 1"
                ));
                c.send(opcode, true, &ascii_text(max_frame + 1).into_bytes());
                c.expect_close(1009);
            }
            // The header alone decides: the payload is never sent.
            let mut c = env.connect(format!("header of max_frame_bytes={max_frame} + 1"));
            let f = c.build(op::BINARY, true, &vec![0; max_frame + 1]);
            let header = match max_frame + 1 {
                0..=125 => 6,
                126..=65535 => 8,
                _ => 14,
            };
            c.send_raw(&f[..header]);
            c.expect_close(1009);
        });
    }
}

/// A fragmented message of exactly `max_message_bytes` is echoed (control frames between the
/// fragments do not count); one byte more, in a middle or in the final fragment, is 1009.
#[test]
fn message_at_max_message_bytes_passes_one_over_is_1009() {
    each_driver_with(limits(1024, 4096), |env| {
        let mut c = env.connect("message of max_message_bytes");
        let data = binary_payload(4096);
        let f = fragmented(&mut c, op::BINARY, &data, 1024);
        c.send_raw(&f);
        c.expect_binary(&data);
        // With pings between fragments and an empty last fragment.
        let text = ascii_text(4096);
        let mut all = Vec::new();
        for (i, chunk) in text.as_bytes().chunks(1024).enumerate() {
            let o = if i == 0 { op::TEXT } else { op::CONT };
            all.extend(c.build(o, false, chunk));
            all.extend(c.build(op::PING, true, &[i as u8; 125]));
        }
        all.extend(c.build(op::CONT, true, b""));
        c.send_raw(&all);
        for i in 0..4u8 {
            c.expect_pong(&[i; 125]);
        }
        c.expect_text(&text);
        c.close_normally();

        for (name, last_fin) in [("final fragment", true), ("middle fragment", false)] {
            let mut c = env.connect(format!("message of max_message_bytes + 1, {name}"));
            let mut all = fragmented(&mut c, op::TEXT, text.as_bytes(), 1024);
            // Re-mark the last 1024-byte fragment as not final, then add one byte.
            let last_start = all.len() - (1024 + 8);
            all[last_start] &= 0x7F;
            all.extend(c.build(op::CONT, last_fin, b"!"));
            c.send_raw(&all);
            c.expect_close(1009);
        }
    });
}

/// A fragmented message whose total exceeds `max_message_bytes` fails with 1009 when the
/// header of the fragment that crosses the limit arrives, before its payload.
#[test]
fn fragmented_message_over_max_message_is_1009() {
    each_driver_with(limits(64 << 10, 256 << 10), |env| {
        let mut c = env.connect("5 x 64 KiB against a 256 KiB message limit");
        let data = binary_payload(64 << 10);
        let mut all = Vec::new();
        for i in 0..4 {
            let o = if i == 0 { op::BINARY } else { op::CONT };
            all.extend(c.build(o, false, &data));
        }
        let fifth = c.build(op::CONT, true, &data);
        all.extend_from_slice(&fifth[..14]);
        c.send_raw(&all);
        c.expect_close(1009);

        let mut c = env.connect("many small fragments over the limit");
        let chunk = [b'z'; 1000];
        let mut all = c.build(op::TEXT, false, &chunk);
        for _ in 0..300 {
            all.extend(c.build(op::CONT, false, &chunk));
        }
        c.send_raw(&all);
        c.expect_close(1009);
    });
}

/// A header announcing 2^63-1 bytes (the largest valid 64-bit length) is refused with 1009
/// (or 1002) at once, without the server trying to allocate it: the server keeps serving.
/// A length with the most significant bit set is invalid (1002).
#[test]
fn header_announcing_2_63_minus_1_bytes_is_refused() {
    let huge = (1u64 << 63) - 1;
    let check = |env: &crate::Env| {
        for (name, prefix) in [
            ("binary", vec![]),
            ("text", vec![]),
            (
                "continuation",
                raw_frame(op::BINARY, false, 0, Some([9, 9, 9, 9]), b"start"),
            ),
            ("4 GiB binary", vec![]),
        ] {
            let mut c = env.connect(format!("huge length: {name}"));
            let (raw_op, len) = match name {
                "text" => (op::TEXT, huge),
                "continuation" => (op::CONT, huge),
                "4 GiB binary" => (op::BINARY, 1 << 32),
                _ => (op::BINARY, huge),
            };
            let mut all = prefix;
            all.extend(header_64(raw_op, true, len));
            all.extend_from_slice(b"a few payload bytes");
            c.send_raw(&all);
            c.expect_close_any(&[1002, 1009]);
        }
        let mut c = env.connect("MSB set in the 64-bit length");
        c.send_raw(&header_64(op::BINARY, true, 1 << 63));
        c.expect_close(1002);
        let mut c = env.connect("u64::MAX length");
        c.send_raw(&header_64(op::BINARY, true, u64::MAX));
        c.expect_close(1002);
        // Still serving.
        let mut c = env.connect("after huge headers");
        c.send_text("alive");
        c.expect_text("alive");
        c.close_normally();
    };
    each_driver(check);
    // Also with the largest limits the configuration allows.
    each_driver_with(limits(1 << 30, 1 << 30), check);
}

/// With the echo example's limits (16 MiB), a 16 MiB message is echoed, in one frame and in
/// 64 KiB fragments; 16 MiB + 1 is 1009.
#[test]
fn message_of_16_mib_is_echoed_with_the_echo_limits() {
    each_driver(|env| {
        assert_eq!(crate::ECHO_MAX_MESSAGE, 16 << 20);
        let data = binary_payload(16 << 20);
        let mut c = env.connect("16 MiB single frame");
        let f = c.build(op::BINARY, true, &data);
        let w = c.send_in_background(f);
        c.expect_binary(&data);
        w.join().unwrap();
        let f = fragmented(&mut c, op::BINARY, &data, 64 << 10);
        let w = c.send_in_background(f);
        c.expect_binary(&data);
        w.join().unwrap();
        c.close_normally();

        let mut c = env.connect("16 MiB + 1");
        c.send_raw(&header_64(op::BINARY, true, (16 << 20) + 1));
        c.expect_close(1009);
    });
}

/// Autobahn 9.1-9.4: messages of 64 KiB, 1 MiB and 8 MiB, text and binary, in fragments of
/// 1 KiB, 64 KiB and 1 MiB, all sent back to back as fast as the socket takes them while the
/// echoes are read.
#[test]
fn large_messages_in_fragments_sent_fast() {
    each_driver(|env| {
        let mut c = env.connect("large fragmented messages");
        let mut plan = Vec::new();
        let mut bytes = Vec::new();
        for size in [64usize << 10, 1 << 20, 8 << 20] {
            for frag in [1usize << 10, 64 << 10, 1 << 20] {
                if frag > size {
                    continue;
                }
                let text = plan.len() % 2 == 0;
                let data = if text {
                    ascii_text(size).into_bytes()
                } else {
                    binary_payload(size)
                };
                let opcode = if text { op::TEXT } else { op::BINARY };
                bytes.extend(fragmented(&mut c, opcode, &data, frag));
                plan.push((opcode, data, frag));
            }
        }
        let w = c.send_in_background(bytes);
        for (opcode, data, frag) in &plan {
            c.ctx = env.ctx(format!("{} bytes in {frag}-byte fragments", data.len()));
            if *opcode == op::TEXT {
                c.expect_text_bytes(data);
            } else {
                c.expect_binary(data);
            }
        }
        w.join().unwrap();
        c.close_normally();
    });
}

/// Autobahn 9.5/9.6: a 1 MiB message in one frame written in chops of 64 bytes and 4 KiB.
#[test]
fn large_message_written_in_small_chops() {
    each_driver(|env| {
        let mut c = env.connect("1 MiB in chops");
        for chop in [64usize, 4096] {
            let text = ascii_text(1 << 20);
            let f = c.build(op::TEXT, true, text.as_bytes());
            c.send_chopped(&f, chop);
            c.expect_text(&text);
            let bin = binary_payload(1 << 20);
            let f = c.build(op::BINARY, true, &bin);
            c.send_chopped(&f, chop);
            c.expect_binary(&bin);
        }
        c.close_normally();
    });
}

/// Autobahn 9.7/9.8: 1000 messages each of 0, 16, 64, 256, 1024 and 4096 bytes, text and
/// binary, sent back to back; every echo arrives, in order.
#[test]
fn many_small_messages_sent_fast() {
    each_driver(|env| {
        let mut c = env.connect("1000 x small messages");
        let sizes = [0usize, 16, 64, 256, 1024, 4096];
        let mut bytes = Vec::new();
        for &size in &sizes {
            let text = ascii_text(size);
            let bin = binary_payload(size);
            for i in 0..1000 {
                if i % 2 == 0 {
                    bytes.extend(c.build(op::TEXT, true, text.as_bytes()));
                } else {
                    bytes.extend(c.build(op::BINARY, true, &bin));
                }
            }
        }
        let w = c.send_in_background(bytes);
        for &size in &sizes {
            let text = ascii_text(size);
            let bin = binary_payload(size);
            for i in 0..1000 {
                if i % 2 == 0 {
                    c.expect_text(&text);
                } else {
                    c.expect_binary(&bin);
                }
            }
        }
        w.join().unwrap();
        c.close_normally();
    });
}
