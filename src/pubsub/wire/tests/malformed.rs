//! Malformed client messages: every error code, and the ids recovered for `err` replies.

use super::*;

#[test]
fn error_codes_are_stable_and_documented() {
    let all = [
        WireError::BadJson(String::new()),
        WireError::BadOp(String::new()),
        WireError::MissingField("op"),
        WireError::BadField {
            field: "id",
            reason: "",
        },
        WireError::BadTopic(TopicError::Empty),
        WireError::TooLarge { len: 0, max: 0 },
        WireError::BadBinary(""),
        WireError::BadFrame { expected: "text" },
    ];
    let codes: Vec<_> = all.iter().map(WireError::code).collect();
    assert_eq!(codes, ErrorCode::DECODE);
    for code in ErrorCode::DECODE {
        assert!(
            DOC.contains(&format!("| `{code}` |")),
            "docs/protocol.md lacks {code}"
        );
    }
}

#[test]
fn bad_json() {
    for input in [
        "",
        "   ",
        "{",
        "[]",
        "\"sub\"",
        "17",
        "null",
        "{\"op\":\"sub\",}",
        "{\"op\":\"sub\",\"topic\":\"a\"} x",
        "{\"op\":\"sub\",\"topic\":\"a\"}{}",
        "{\"op\":\"sub\",\"op\":\"sub\",\"topic\":\"a\"}",
        "{'op':'sub'}",
        "{\"op\":\"pub\",\"topic\":\"a\",\"data\":}",
        "{\"op\":\"pub\",\"topic\":\"a\",\"data\":NaN}",
        "{\"op\":\"pub\",\"topic\":\"a\",\"data\":\"\u{1}\"}",
    ] {
        assert_eq!(code_of_json(input), "bad_json", "{input:?}");
    }
    let e = decode_json("{\"op\":\"sub\",").unwrap_err();
    assert!(
        e.to_string()
            .starts_with("not valid JSON: EOF while parsing"),
        "{e}"
    );
    assert_eq!(
        decode_json("[1]").unwrap_err().to_string(),
        "not valid JSON: expected a JSON object"
    );
}

#[test]
fn bad_op() {
    for input in [
        r#"{"op":"msg","topic":"a"}"#,
        r#"{"op":"SUB","topic":"a"}"#,
        r#"{"op":"subscribe","topic":"a"}"#,
        r#"{"op":"","topic":"a"}"#,
        r#"{"op":1,"topic":"a"}"#,
        r#"{"op":["sub"],"topic":"a"}"#,
        r#"{"op":"\ud800","topic":"a"}"#,
    ] {
        assert_eq!(code_of_json(input), "bad_op", "{input}");
    }
    // The op is checked before anything else.
    assert_eq!(
        code_of_json(r#"{"op":"nope","id":{},"topic":"a..b"}"#),
        "bad_op"
    );
    // Untrusted op names are cut short in the message.
    let e = decode_json(&format!(r#"{{"op":"{}"}}"#, "x".repeat(1000))).unwrap_err();
    assert!(e.to_string().len() < 120, "{e}");
    for op in [
        0x00,
        0x05,
        0x7f,
        OP_MSG,
        OP_ACK,
        OP_UNSUBBED,
        OP_AUTHED,
        0xff,
    ] {
        assert_eq!(code_of_bin(&[op, 0, 1, b'a']), "bad_op", "{op:#x}");
    }
    assert_eq!(
        decode_binary(&[0x81, 0]).unwrap_err().to_string(),
        "unknown op 0x81; a client sends sub, unsub or pub"
    );
}

#[test]
fn missing_field() {
    for (input, field) in [
        (r#"{}"#, "op"),
        (r#"{"topic":"a"}"#, "op"),
        (r#"{"op":null,"topic":"a"}"#, "op"),
        (r#"{"op":"sub"}"#, "topic"),
        (r#"{"op":"unsub","topic":null}"#, "topic"),
        (r#"{"op":"pub","topic":"a"}"#, "data"),
        (r#"{"op":"pub","topic":"a","dat":1}"#, "data"),
    ] {
        assert_eq!(
            decode_json(input),
            Err(WireError::MissingField(field)),
            "{input}"
        );
    }
}

#[test]
fn bad_field() {
    let long_id = format!(
        r#"{{"op":"sub","topic":"a","id":"{}"}}"#,
        "i".repeat(MAX_ID_BYTES + 1)
    );
    let long_key = format!(
        r#"{{"op":"pub","topic":"a","data":1,"key":"{}"}}"#,
        "k".repeat(MAX_KEY_BYTES + 1)
    );
    // 64 bytes once unescaped, 65 escaped bytes on the wire: accepted.
    let escaped_id = format!(r#"{{"op":"sub","topic":"a","id":"\n{}"}}"#, "i".repeat(63));
    assert!(decode_json(&escaped_id).is_ok());
    for (input, field) in [
        (r#"{"op":"sub","topic":"a","since":-1}"#, "since"),
        (r#"{"op":"sub","topic":"a","since":1.5}"#, "since"),
        (r#"{"op":"sub","topic":"a","since":1e3}"#, "since"),
        (r#"{"op":"sub","topic":"a","since":1.0}"#, "since"),
        (r#"{"op":"sub","topic":"a","since":"3"}"#, "since"),
        (
            r#"{"op":"sub","topic":"a","since":18446744073709551616}"#,
            "since",
        ),
        (r#"{"op":"sub","topic":"a","since":true}"#, "since"),
        (r#"{"op":"sub","topic":"a","id":""}"#, "id"),
        (r#"{"op":"sub","topic":"a","id":-1}"#, "id"),
        (r#"{"op":"sub","topic":"a","id":1.5}"#, "id"),
        (
            r#"{"op":"sub","topic":"a","id":18446744073709551616}"#,
            "id",
        ),
        (r#"{"op":"sub","topic":"a","id":{}}"#, "id"),
        (r#"{"op":"sub","topic":"a","id":["1"]}"#, "id"),
        (r#"{"op":"sub","topic":"a","id":false}"#, "id"),
        (r#"{"op":"sub","topic":"a","id":"\ud800"}"#, "id"),
        (&long_id, "id"),
        (r#"{"op":"pub","topic":"a","data":1,"key":""}"#, "key"),
        (r#"{"op":"pub","topic":"a","data":1,"key":5}"#, "key"),
        (r#"{"op":"pub","topic":"a","data":1,"key":"\udc00"}"#, "key"),
        (&long_key, "key"),
    ] {
        match decode_json(input) {
            Err(WireError::BadField { field: f, .. }) => assert_eq!(f, field, "{input}"),
            other => panic!("{input}: {other:?}"),
        }
    }
    // Binary: id and key must be UTF-8 and within their lengths.
    assert_eq!(code_of_bin(&[OP_SUB, FLAG_ID_STR, 0, 1, b'a']), "bad_field");
    assert_eq!(
        code_of_bin(&[OP_SUB, FLAG_ID_STR, 1, 0xff, 1, b'a']),
        "bad_field"
    );
    let mut long = vec![OP_SUB, FLAG_ID_STR, 65];
    long.extend([b'i'; 65]);
    long.extend([1, b'a']);
    assert_eq!(code_of_bin(&long), "bad_field");
    assert_eq!(code_of_bin(&[OP_PUB, FLAG_KEY, 1, b'a', 0]), "bad_field");
    assert_eq!(
        code_of_bin(&[OP_PUB, FLAG_KEY, 1, b'a', 1, 0xc3]),
        "bad_field"
    );
}

#[test]
fn bad_topic() {
    for input in [
        r#"{"op":"sub","topic":""}"#,
        r#"{"op":"sub","topic":"a..b"}"#,
        r#"{"op":"sub","topic":".a"}"#,
        r#"{"op":"sub","topic":"a/b"}"#,
        r#"{"op":"sub","topic":"a b"}"#,
        r#"{"op":"sub","topic":"\u0061"}"#,
        r#"{"op":"sub","topic":"a\"b"}"#,
        r#"{"op":"sub","topic":7}"#,
        r#"{"op":"sub","topic":["a"]}"#,
        r#"{"op":"pub","topic":"é","data":1}"#,
    ] {
        assert_eq!(code_of_json(input), "bad_topic", "{input}");
    }
    let long = format!(
        r#"{{"op":"unsub","topic":"{}"}}"#,
        "a".repeat(MAX_TOPIC_BYTES + 1)
    );
    assert_eq!(code_of_json(&long), "bad_topic");
    assert_eq!(
        decode_json(r#"{"op":"sub","topic":"\u0061"}"#)
            .unwrap_err()
            .to_string(),
        "topic must be written without JSON escapes"
    );
    assert_eq!(code_of_bin(&[OP_SUB, 0, 0]), "bad_topic");
    assert_eq!(code_of_bin(&[OP_SUB, 0, 2, b'a', b'.']), "bad_topic");
    assert_eq!(code_of_bin(&[OP_UNSUB, 0, 2, b'a', 0xff]), "bad_topic");
}

#[test]
fn too_large() {
    let pad = |n: usize| {
        let head = r#"{"op":"pub","topic":"a","data":""#;
        format!("{head}{}\"}}", "x".repeat(n - head.len() - 2))
    };
    let at_limit = pad(MAX_ENVELOPE_BYTES);
    assert_eq!(at_limit.len(), MAX_ENVELOPE_BYTES);
    assert!(decode_json(&at_limit).is_ok());
    let over = pad(MAX_ENVELOPE_BYTES + 1);
    assert_eq!(
        decode_json(&over),
        Err(WireError::TooLarge {
            len: MAX_ENVELOPE_BYTES + 1,
            max: MAX_ENVELOPE_BYTES
        })
    );
    let mut bin = vec![OP_PUB, 0, 1, b'a'];
    bin.resize(MAX_ENVELOPE_BYTES, 0xaa);
    assert!(decode_binary(&bin).is_ok());
    bin.push(0);
    assert_eq!(code_of_bin(&bin), "too_large");
    // Size is checked before anything else.
    assert_eq!(
        code_of_json(&"x".repeat(MAX_ENVELOPE_BYTES + 1)),
        "too_large"
    );
}

#[test]
fn bad_binary() {
    let cases: &[(&[u8], &str)] = &[
        (&[], "empty message"),
        (&[OP_SUB], "truncated"),
        (&[OP_SUB, 0], "truncated"),
        (&[OP_SUB, 0, 3, b'a'], "truncated"),
        (&[OP_SUB, FLAG_SINCE, 1, b'a'], "truncated"),
        (&[OP_SUB, FLAG_SINCE, 1, b'a', 0x80], "truncated"),
        (&[OP_SUB, FLAG_ID_STR, 5, b'i'], "truncated"),
        (&[OP_SUB, FLAG_ID_NUM], "truncated"),
        (&[OP_PUB, FLAG_KEY, 1, b'a'], "truncated"),
        (&[OP_PUB, FLAG_KEY, 1, b'a', 4, b'k'], "truncated"),
        (
            &[OP_SUB, FLAG_KEY, 1, b'a'],
            "flag bits set that this op does not define",
        ),
        (
            &[OP_SUB, FLAG_JSON, 1, b'a'],
            "flag bits set that this op does not define",
        ),
        (
            &[OP_UNSUB, FLAG_SINCE, 1, b'a'],
            "flag bits set that this op does not define",
        ),
        (
            &[OP_PUB, FLAG_SINCE, 1, b'a'],
            "flag bits set that this op does not define",
        ),
        (
            &[OP_PUB, 0x20, 1, b'a'],
            "flag bits set that this op does not define",
        ),
        (
            &[OP_PUB, 0x80, 1, b'a'],
            "flag bits set that this op does not define",
        ),
        (&[OP_SUB, FLAG_ID, 1, b'1', 1, b'a'], "both id flags set"),
        (&[OP_SUB, 0, 1, b'a', 0], "trailing bytes"),
        (&[OP_SUB, FLAG_SINCE, 1, b'a', 1, 2], "trailing bytes"),
        (&[OP_UNSUB, 0, 1, b'a', b'b'], "trailing bytes"),
        (
            &[OP_SUB, 0, 0x81, 0x00, b'a'],
            "varint not in its shortest form",
        ),
        (
            &[OP_SUB, FLAG_SINCE, 1, b'a', 0x80, 0x00],
            "varint not in its shortest form",
        ),
        (
            &[
                OP_SUB, FLAG_SINCE, 1, b'a', 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
                0x02,
            ],
            "varint over 64 bits",
        ),
        (
            &[
                OP_SUB, FLAG_SINCE, 1, b'a', 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80,
                0x80, 0x01,
            ],
            "varint over 64 bits",
        ),
        (
            &[
                OP_SUB, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01,
            ],
            "truncated",
        ),
    ];
    for (input, why) in cases {
        assert_eq!(
            decode_binary(input),
            Err(WireError::BadBinary(why)),
            "{}",
            hex(input)
        );
    }
    // The largest varint is fine.
    let mut max = vec![OP_SUB, FLAG_SINCE, 1, b'a'];
    max.extend([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]);
    assert_eq!(
        decode_binary(&max).unwrap(),
        ClientOp::Sub {
            topic: t("a"),
            since: Some(u64::MAX),
            id: None
        }
    );
    // Every proper prefix of a sub or unsub fails, and never panics.
    for op in [
        ClientOp::Sub {
            topic: t("abc"),
            since: Some(300),
            id: Some("id".into()),
        },
        ClientOp::Unsub {
            topic: t("abc"),
            id: Some(Id::Num(1 << 40)),
        },
    ] {
        let full = op_bin(&op);
        for cut in 0..full.len() {
            assert!(
                decode_binary(&full[..cut]).is_err(),
                "{}",
                hex(&full[..cut])
            );
        }
    }
}

#[test]
fn data_nesting_is_limited() {
    let nest = |n: usize| format!("{}1{}", "[".repeat(n), "]".repeat(n));
    let obj = |n: usize| format!("{}1{}", "{\"k\":".repeat(n), "}".repeat(n));
    for data in [
        nest(MAX_DATA_DEPTH),
        obj(MAX_DATA_DEPTH),
        format!("[\"{}\"]", "[".repeat(500)),
    ] {
        let input = format!(r#"{{"op":"pub","topic":"a","data":{data}}}"#);
        assert!(decode_json(&input).is_ok(), "{data}");
        let mut bin = vec![OP_PUB, FLAG_JSON, 1, b'a'];
        bin.extend(data.as_bytes());
        assert!(decode_binary(&bin).is_ok());
    }
    // Deep nesting is refused, also as deep as the size limit allows (no stack overflow:
    // serde_json skips raw values iteratively).
    for data in [
        nest(MAX_DATA_DEPTH + 1),
        obj(MAX_DATA_DEPTH + 1),
        nest(30_000),
    ] {
        let input = format!(r#"{{"op":"pub","topic":"a","data":{data}}}"#);
        let e = decode_json(&input).unwrap_err();
        assert!(
            matches!(e, WireError::BadField { field: "data", .. }),
            "{e}"
        );
        let mut bin = vec![OP_PUB, FLAG_JSON, 1, b'a'];
        bin.extend(data.as_bytes());
        assert_eq!(code_of_bin(&bin), "bad_field");
    }
    // Unknown fields are skipped iteratively too, however deep.
    let input = format!(r#"{{"op":"sub","topic":"a","x":{}}}"#, nest(30_000));
    assert!(decode_json(&input).is_ok());
    // Escaped quotes and backslashes inside strings do not confuse the count.
    let tricky = format!(r#"["\"[[[[", "\\", {}]"#, nest(MAX_DATA_DEPTH - 1));
    assert!(decode_json(&format!(r#"{{"op":"pub","topic":"a","data":{tricky}}}"#)).is_ok());
}

#[test]
fn json_flagged_binary_data_must_be_json() {
    let mk = |data: &[u8]| {
        let mut v = vec![OP_PUB, FLAG_JSON, 1, b'a'];
        v.extend_from_slice(data);
        v
    };
    for bad in [&b""[..], b"{", b"1 2", b"nul", b"\xff", b"\"a", b"[1]x"] {
        assert_eq!(code_of_bin(&mk(bad)), "bad_json", "{bad:?}");
    }
    // Whitespace around the value is dropped; the value is kept as sent.
    let frame = mk(b" \n{\"a\": [1]}\t");
    let op = decode_binary(&frame).unwrap();
    assert_eq!(
        op,
        ClientOp::Pub {
            topic: t("a"),
            data: Payload::Json("{\"a\": [1]}"),
            key: None,
            id: None
        }
    );
}

#[test]
fn error_ids_are_recovered_for_err_replies() {
    assert_eq!(
        error_id_json(r#"{"op":"sub","topic":"a..b","id":"7"}"#),
        Some("7".into())
    );
    assert_eq!(error_id_json(r#"{"op":"nope","id":7}"#), Some(Id::Num(7)));
    assert_eq!(
        error_id_json(r#"{"op":"pub","topic":"a","id":"x\ty"}"#),
        Some("x\ty".into())
    );
    assert_eq!(error_id_json(r#"{"op":"sub","topic":"a","id":{}}"#), None);
    assert_eq!(error_id_json(r#"{"op":"sub","id":"7""#), None);
    assert_eq!(error_id_json("garbage"), None);
    assert_eq!(
        error_id_binary(&[OP_SUB, FLAG_ID_STR, 1, b'7', 0]),
        Some("7".into())
    );
    assert_eq!(
        error_id_binary(&[OP_PUB, FLAG_ID_NUM | FLAG_JSON, 0x2a, 1, b'a', b'{']),
        Some(Id::Num(42))
    );
    assert_eq!(error_id_binary(&[OP_SUB, 0, 1, b'.']), None);
    assert_eq!(error_id_binary(&[0x99, FLAG_ID_STR, 1, b'7']), None);
    assert_eq!(error_id_binary(&[]), None);
}
