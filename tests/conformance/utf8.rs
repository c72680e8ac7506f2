//! RFC 6455 8.1 UTF-8 in text messages (Autobahn 6): valid text of every sequence length is
//! echoed however it is fragmented; invalid text fails with 1007, wherever the fragment
//! boundaries fall, and as soon as the invalid bytes arrive (fail-fast).

use std::time::{Duration, Instant};

use crate::{
    common::{op, RawClient},
    each_driver,
};

/// Valid strings (Autobahn 6.2, 6.5, 6.7, 6.9, 6.11, 6.22, 6.23): every sequence length, the
/// first and last code point of each length, the surrogate boundaries, noncharacters.
const VALID: &[&str] = &[
    "",
    "Hello-µ@ßöäüàá-UTF-8!!",
    "κόσμε",
    "\u{0}",
    "\u{7F}",
    "\u{80}",
    "\u{7FF}",
    "\u{800}",
    "\u{FFFF}",
    "\u{10000}",
    "\u{10FFFF}",
    "\u{D7FF}",
    "\u{E000}",
    "\u{FFFD}",
    "\u{FFFE}",
    "\u{FDD0}\u{FDEF}",
    "\u{1FFFE}\u{10FFFE}",
    "𝄞 music, 😀 emoji, 中文, ελληνικά, русский",
    "\u{1F600}\u{1F600}\u{1F600}",
];

/// Invalid byte sequences (Autobahn 6.3, 6.8, 6.10, 6.12-6.21), each with a name.
const INVALID: &[(&str, &[u8])] = &[
    // Overlong encodings (6.17-6.19).
    ("overlong / 2 bytes", &[0xC0, 0xAF]),
    ("overlong NUL 2 bytes", &[0xC0, 0x80]),
    ("overlong max 2 bytes", &[0xC1, 0xBF]),
    ("overlong / 3 bytes", &[0xE0, 0x80, 0xAF]),
    ("overlong max 3 bytes", &[0xE0, 0x9F, 0xBF]),
    ("overlong / 4 bytes", &[0xF0, 0x80, 0x80, 0xAF]),
    ("overlong max 4 bytes", &[0xF0, 0x8F, 0xBF, 0xBF]),
    // UTF-16 surrogates (6.20, 6.21).
    ("surrogate U+D800", &[0xED, 0xA0, 0x80]),
    ("surrogate U+DBFF", &[0xED, 0xAF, 0xBF]),
    ("surrogate U+DC00", &[0xED, 0xB0, 0x80]),
    ("surrogate U+DFFF", &[0xED, 0xBF, 0xBF]),
    ("surrogate pair", &[0xED, 0xA0, 0x80, 0xED, 0xB0, 0x80]),
    // Above U+10FFFF, and 5/6-byte forms (6.8, 6.10).
    ("U+110000", &[0xF4, 0x90, 0x80, 0x80]),
    ("F5 lead", &[0xF5, 0x80, 0x80, 0x80]),
    ("U+1FFFFF", &[0xF7, 0xBF, 0xBF, 0xBF]),
    ("5-byte", &[0xF8, 0x88, 0x80, 0x80, 0x80]),
    ("6-byte", &[0xFC, 0x84, 0x80, 0x80, 0x80, 0x80]),
    // Impossible bytes (6.16), lone continuation bytes (6.12), lonely starts (6.13).
    ("FE", &[0xFE]),
    ("FF", &[0xFF]),
    ("FE FE FF FF", &[0xFE, 0xFE, 0xFF, 0xFF]),
    ("lone 80", &[0x80]),
    ("lone BF", &[0xBF]),
    ("continuation run", &[0x80, 0xBF, 0x80]),
    ("lonely start C2 + space", &[0xC2, 0x20]),
    ("lonely start E0 + space", &[0xE0, 0x20]),
    ("lonely start F0 + space", &[0xF0, 0x20]),
    // Truncated at the end of the message (6.14, 6.15).
    ("truncated 2-byte", &[0xC2]),
    ("truncated 3-byte", &[0xE2, 0x82]),
    ("truncated 4-byte", &[0xF0, 0x9F, 0x98]),
    ("ascii then truncated", b"abc\xE2"),
    (
        "concatenated incomplete",
        &[0xC0, 0xE0, 0x80, 0xF0, 0x80, 0x80],
    ),
    // Invalid in the middle of valid text (6.3.1).
    (
        "kosme with surrogate",
        b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80edited",
    ),
];

/// Autobahn 6.2, 6.5-6.11, 6.22, 6.23: valid text is echoed exactly.
#[test]
fn valid_multibyte_text_is_echoed() {
    each_driver(|env| {
        let mut c = env.connect("valid UTF-8");
        for s in VALID {
            c.send_text(s);
            c.expect_text(s);
        }
        let all = VALID.concat();
        c.send_text(&all);
        c.expect_text(&all);
        c.close_normally();
    });
}

/// Autobahn 6.2.3/6.2.4, 6.6: a text with 1- to 4-byte code points split into two fragments
/// at every byte offset, then into one-byte fragments: always echoed whole.
#[test]
fn code_points_split_across_fragments_at_every_offset() {
    each_driver(|env| {
        let mut c = env.connect("split at every offset");
        for s in ["a€𝄞ß", "κόσμε", "\u{10FFFF}\u{800}\u{80}x", "😀"] {
            let b = s.as_bytes();
            for cut in 0..=b.len() {
                let mut all = c.build(op::TEXT, false, &b[..cut]);
                all.extend(c.build(op::CONT, true, &b[cut..]));
                c.send_raw(&all);
                c.expect_text(s);
            }
            // Three fragments: every pair of cut points.
            for i in 0..=b.len() {
                for j in i..=b.len() {
                    let mut all = c.build(op::TEXT, false, &b[..i]);
                    all.extend(c.build(op::CONT, false, &b[i..j]));
                    all.extend(c.build(op::CONT, true, &b[j..]));
                    c.send_raw(&all);
                    c.expect_text(s);
                }
            }
            // One byte per fragment, with a ping in the middle of each code point.
            let mut all = Vec::new();
            for (i, byte) in b.iter().enumerate() {
                let o = if i == 0 { op::TEXT } else { op::CONT };
                all.extend(c.build(o, i == b.len() - 1, std::slice::from_ref(byte)));
                if i == 0 {
                    all.extend(c.build(op::PING, true, b"mid"));
                }
            }
            c.send_raw(&all);
            c.expect_pong(b"mid");
            c.expect_text(s);
        }
        c.close_normally();
    });
}

/// Autobahn 6.6: every prefix of a text that ends on a character boundary is valid; the
/// same text written octet-wise is echoed.
#[test]
fn all_prefixes_of_valid_text() {
    each_driver(|env| {
        let mut c = env.connect("prefixes");
        let s = "κόσμε€𝄞";
        for (end, _) in s.char_indices().chain([(s.len(), ' ')]) {
            c.send_text(&s[..end]);
            c.expect_text(&s[..end]);
        }
        let f = c.build(op::TEXT, true, s.as_bytes());
        c.send_chopped(&f, 1);
        c.expect_text(s);
        c.close_normally();
    });
}

fn send_invalid(c: &mut RawClient, bytes: &[u8], how: &str) {
    match how {
        "unfragmented" => c.send(op::TEXT, true, bytes),
        "one-byte fragments" => {
            let mut all = Vec::new();
            for (i, b) in bytes.iter().enumerate() {
                let o = if i == 0 { op::TEXT } else { op::CONT };
                all.extend(c.build(o, i == bytes.len() - 1, std::slice::from_ref(b)));
            }
            c.send_raw(&all);
        }
        "valid prefix fragment" => {
            let mut all = c.build(op::TEXT, false, "κόσμε".as_bytes());
            all.extend(c.build(op::CONT, true, bytes));
            c.send_raw(&all);
        }
        "octet-wise" => {
            let f = c.build(op::TEXT, true, bytes);
            c.send_chopped(&f, 1);
        }
        _ => unreachable!(),
    }
}

/// Autobahn 6.3, 6.8, 6.10, 6.12-6.21: invalid sequences (overlong, surrogates, above
/// U+10FFFF, impossible bytes, truncated at the message end) fail with 1007, unfragmented,
/// in one-byte fragments, after a valid fragment, and written octet-wise.
#[test]
fn invalid_sequences_are_1007() {
    each_driver(|env| {
        for (name, bytes) in INVALID {
            for how in [
                "unfragmented",
                "one-byte fragments",
                "valid prefix fragment",
                "octet-wise",
            ] {
                let mut c = env.connect(format!("invalid {name:?} sent {how}"));
                send_invalid(&mut c, bytes, how);
                c.expect_close(1007);
            }
        }
    });
}

/// A code point truncated by the end of a fragmented message: the last fragment ends
/// inside it (1007), even though each fragment boundary on its own is fine.
#[test]
fn code_point_truncated_at_message_end_is_1007() {
    each_driver(|env| {
        let euro = "€".as_bytes();
        let mut c = env.connect("truncated across fragments");
        let mut all = c.build(op::TEXT, false, &euro[..1]);
        all.extend(c.build(op::CONT, true, &euro[1..2]));
        c.send_raw(&all);
        c.expect_close(1007);

        let mut c = env.connect("truncated after empty last fragment");
        let mut all = c.build(op::TEXT, false, b"ok");
        all.extend(c.build(op::CONT, false, &euro[..2]));
        all.extend(c.build(op::CONT, true, b""));
        c.send_raw(&all);
        c.expect_close(1007);
    });
}

/// A binary message is not UTF-8 checked: invalid sequences are echoed as binary.
#[test]
fn binary_is_not_utf8_checked() {
    each_driver(|env| {
        let mut c = env.connect("binary not validated");
        for (_, bytes) in INVALID {
            c.send_binary(bytes);
            c.expect_binary(bytes);
        }
        c.close_normally();
    });
}

fn expect_fast_1007(c: &mut RawClient, sent: Instant) {
    let f = c.read_close_frame();
    let took = sent.elapsed();
    assert!(
        took < Duration::from_secs(2),
        "[{}] close took {took:?}: not fail-fast",
        c.ctx
    );
    let code = f.close_parts().map(|(code, _)| code);
    assert_eq!(code, Some(1007), "[{}] close code", c.ctx);
    c.expect_tcp_closed();
}

/// Autobahn 6.4.3/6.4.4: a large text frame whose first bytes are invalid and whose rest is
/// never sent is closed with 1007 at once, while the frame is still incomplete.
#[test]
fn fail_fast_on_invalid_prefix_of_incomplete_frame() {
    each_driver(|env| {
        for (name, prefix) in [
            ("invalid first byte", &b"\xFF"[..]),
            (
                "U+110000 after text",
                &b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xf4\x90\x80\x80"[..],
            ),
            ("surrogate after text", &b"Hello \xed\xa0\x80"[..]),
            ("overlong", &b"\xC0\x80"[..]),
        ] {
            for announced in [1usize << 10, 1 << 20, 8 << 20] {
                let mut c = env.connect(format!("fail-fast {name} in a {announced}-byte frame"));
                let mut payload = prefix.to_vec();
                payload.resize(announced, b'a');
                let f = c.build(op::TEXT, true, &payload);
                let header = if announced <= 0xFFFF { 8 } else { 14 };
                let t = Instant::now();
                c.send_raw(&f[..header + prefix.len() + 16]);
                expect_fast_1007(&mut c, t);
            }
        }
    });
}

/// Autobahn 6.4.3/6.4.4 in two steps: the header and valid text of a large frame arrive
/// first (the server buffers the unfinished frame), the invalid bytes later; the close comes
/// as soon as those arrive, the rest of the frame never being sent.
#[test]
fn fail_fast_when_invalid_bytes_arrive_after_valid_prefix() {
    each_driver(|env| {
        for announced in [4usize << 10, 1 << 20] {
            let mut c = env.connect(format!("fail-fast in a later read, {announced}-byte frame"));
            let mut payload = "κόσμε".repeat(20).into_bytes();
            let valid = payload.len();
            payload.extend_from_slice(b"\xed\xa0\x80");
            payload.resize(announced, b'a');
            let f = c.build(op::TEXT, true, &payload);
            let header = if announced <= 0xFFFF { 8 } else { 14 };
            c.send_raw(&f[..header + valid]);
            c.expect_silence(Duration::from_millis(100));
            let t = Instant::now();
            c.send_raw(&f[header + valid..header + valid + 8]);
            expect_fast_1007(&mut c, t);
        }
    });
}

/// Autobahn 6.4.1/6.4.2: a fragmented text message whose second fragment is invalid and
/// whose third is never sent: 1007 at once.
#[test]
fn fail_fast_on_invalid_fragment_of_incomplete_message() {
    each_driver(|env| {
        let mut c = env.connect("fail-fast fragmented");
        let t = Instant::now();
        let mut all = c.build(op::TEXT, false, "κόσμε".as_bytes());
        all.extend(c.build(op::CONT, false, b"\xf4\x90\x80\x80"));
        c.send_raw(&all);
        expect_fast_1007(&mut c, t);

        // The invalid fragment itself incomplete: its header announces 64 KiB, 20 bytes come.
        let mut c = env.connect("fail-fast fragmented, invalid fragment incomplete");
        let mut all = c.build(op::TEXT, false, b"valid ");
        let mut bad = b"\xed\xa0\x80".to_vec();
        bad.resize(65536, b'a');
        let f = c.build(op::CONT, true, &bad);
        all.extend_from_slice(&f[..14 + 20]);
        let t = Instant::now();
        c.send_raw(&all);
        expect_fast_1007(&mut c, t);
    });
}
