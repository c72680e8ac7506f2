//! Unit tests of the wire codec across its modules: both encodings byte for byte against
//! docs/protocol.md, round trips, escaping, interop between the encodings and the writers.
//! Malformed input (every error code) is in `malformed`, property tests in `props`.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{json, Value};

use super::binary::*;
use super::json::{base64_len, dec_len, put_base64, put_dec, put_json_str, raw_some};
use super::*;
use crate::pubsub::topic_name::{TopicError, TopicName};
use crate::pubsub::MAX_TOPIC_BYTES;

mod malformed;
mod props;
mod publish;

// -----------------------------------------------------------------------------------------
// Helpers, and a test-side decoder for server messages
// -----------------------------------------------------------------------------------------

fn t(name: &str) -> TopicName<'_> {
    TopicName::new(name).unwrap()
}

fn hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn unhex(s: &str) -> Vec<u8> {
    s.split_whitespace()
        .map(|h| u8::from_str_radix(h, 16).unwrap())
        .collect()
}

fn op_json(op: &ClientOp<'_>) -> String {
    let mut out = Vec::new();
    encode_op_json(op, &mut out).unwrap();
    String::from_utf8(out).unwrap()
}

fn op_bin(op: &ClientOp<'_>) -> Vec<u8> {
    let mut out = Vec::new();
    encode_op_binary(op, &mut out);
    out
}

fn code_of_json(input: &str) -> &'static str {
    match decode_json(input) {
        Err(e) => e.code().as_str(),
        Ok(op) => panic!("{input:?} decoded to {op:?}"),
    }
}

fn code_of_bin(input: &[u8]) -> &'static str {
    match decode_binary(input) {
        Err(e) => e.code().as_str(),
        Ok(op) => panic!("{} decoded to {op:?}", hex(input)),
    }
}

/// A server message as a client sees it, owned (the test-side decoder's output).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Srv {
    Msg {
        topic: String,
        seq: u64,
        ts: u64,
        json: bool,
        data: Vec<u8>,
    },
    Ack {
        id: Id<'static>,
        seq: u64,
    },
    Err {
        id: Option<Id<'static>>,
        code: String,
        msg: String,
    },
    Subbed {
        topic: String,
        seq: u64,
        id: Option<Id<'static>>,
    },
    Reset {
        topic: String,
        seq: u64,
    },
    Unsubbed {
        topic: String,
        id: Option<Id<'static>>,
        revoked: bool,
    },
}

/// Decode a binary server message strictly (every byte accounted for).
fn decode_srv_bin(input: &[u8]) -> Result<Srv, WireError> {
    let mut r = Reader { buf: input };
    let (op, flags) = r.head(|op| match op {
        OP_MSG => Some(FLAG_JSON),
        OP_ACK | OP_ERR | OP_SUBBED => Some(FLAG_ID),
        OP_UNSUBBED => Some(FLAG_ID | FLAG_REVOKED),
        OP_RESET => Some(0),
        _ => None,
    })?;
    let id = r.id(flags)?.map(Id::into_owned);
    let topic = |r: &mut Reader<'_>| -> Result<String, WireError> {
        Ok(TopicName::from_bytes(r.sized()?)?.as_str().to_owned())
    };
    let msg = match op {
        OP_MSG => {
            let topic = topic(&mut r)?;
            let (seq, ts) = (r.varint()?, r.varint()?);
            let data = r.rest().to_vec();
            Srv::Msg {
                topic,
                seq,
                ts,
                json: flags & FLAG_JSON != 0,
                data,
            }
        }
        OP_ACK => Srv::Ack {
            id: id.ok_or(WireError::MissingField("id"))?,
            seq: r.varint()?,
        },
        OP_ERR => {
            let code = r.utf8("code")?.to_owned();
            let msg = std::str::from_utf8(r.rest()).unwrap().to_owned();
            Srv::Err { id, code, msg }
        }
        OP_SUBBED => Srv::Subbed {
            topic: topic(&mut r)?,
            seq: r.varint()?,
            id,
        },
        OP_RESET => Srv::Reset {
            topic: topic(&mut r)?,
            seq: r.varint()?,
        },
        _ => Srv::Unsubbed {
            topic: topic(&mut r)?,
            id,
            revoked: flags & FLAG_REVOKED != 0,
        },
    };
    r.finish()?;
    Ok(msg)
}

/// Decode a JSON server message with serde_json, checking the exact set of fields.
fn decode_srv_json(input: &[u8]) -> Srv {
    let text = std::str::from_utf8(input).expect("server JSON is UTF-8");
    let v: serde_json::Map<String, Value> = serde_json::from_str(text)
        .unwrap_or_else(|e| panic!("server JSON does not parse: {e}: {text}"));
    let keys: Vec<&str> = v.keys().map(String::as_str).collect();
    let s = |k: &str| v[k].as_str().unwrap().to_owned();
    let u = |k: &str| v[k].as_u64().unwrap();
    let id = || {
        v.get("id").map(|id| match id {
            Value::String(s) => Id::Str(Cow::Owned(s.clone())),
            Value::Number(n) => Id::Num(n.as_u64().unwrap()),
            other => panic!("bad id {other}"),
        })
    };
    let expect_keys = |want: &[&str]| {
        let mut got = keys.clone();
        got.sort_unstable();
        let mut want = want.to_vec();
        if v.contains_key("id") && !want.contains(&"id") {
            want.push("id");
        }
        want.sort_unstable();
        assert_eq!(got, want, "fields of {text}");
    };
    match v["op"].as_str().unwrap() {
        "msg" => {
            #[derive(Deserialize)]
            struct Raw<'a> {
                #[serde(default, borrow, deserialize_with = "raw_some")]
                data: Option<&'a RawValue>,
                data_b64: Option<String>,
            }
            let raw: Raw<'_> = serde_json::from_str(text).unwrap();
            let (json, data) = match (raw.data, raw.data_b64) {
                (Some(d), None) => (true, d.get().as_bytes().to_vec()),
                (None, Some(b)) => {
                    use base64::Engine as _;
                    (
                        false,
                        base64::engine::general_purpose::STANDARD.decode(b).unwrap(),
                    )
                }
                _ => panic!("msg needs exactly one of data, data_b64: {text}"),
            };
            let data_key = if json { "data" } else { "data_b64" };
            expect_keys(&["op", "topic", "seq", "ts", data_key]);
            Srv::Msg {
                topic: s("topic"),
                seq: u("seq"),
                ts: u("ts"),
                json,
                data,
            }
        }
        "ack" => {
            expect_keys(&["op", "id", "seq"]);
            Srv::Ack {
                id: id().unwrap(),
                seq: u("seq"),
            }
        }
        "err" => {
            expect_keys(&["op", "code", "msg"]);
            Srv::Err {
                id: id(),
                code: s("code"),
                msg: s("msg"),
            }
        }
        "subbed" => {
            expect_keys(&["op", "topic", "seq"]);
            Srv::Subbed {
                topic: s("topic"),
                seq: u("seq"),
                id: id(),
            }
        }
        "reset" => {
            expect_keys(&["op", "topic", "seq"]);
            assert!(!v.contains_key("id"));
            Srv::Reset {
                topic: s("topic"),
                seq: u("seq"),
            }
        }
        "unsubbed" => {
            let revoked = v.contains_key("reason");
            if revoked {
                assert_eq!(v["reason"], "forbidden", "{text}");
                expect_keys(&["op", "topic", "reason"]);
            } else {
                expect_keys(&["op", "topic"]);
            }
            Srv::Unsubbed {
                topic: s("topic"),
                id: id(),
                revoked,
            }
        }
        other => panic!("unknown server op {other}"),
    }
}

/// Encode with `f` in both encodings, decode each with the test decoders, return both.
fn both(f: impl Fn(Encoding, &mut Vec<u8>)) -> (Srv, Srv) {
    let (mut j, mut b) = (Vec::new(), Vec::new());
    f(Encoding::Json, &mut j);
    f(Encoding::Binary, &mut b);
    let bin =
        decode_srv_bin(&b).unwrap_or_else(|e| panic!("binary {} does not decode: {e}", hex(&b)));
    (decode_srv_json(&j), bin)
}

// -----------------------------------------------------------------------------------------
// Encoding
// -----------------------------------------------------------------------------------------

#[test]
fn subprotocols_choose_the_encoding() {
    assert_eq!(Encoding::from_subprotocol(None), Some(Encoding::Json));
    assert_eq!(
        Encoding::from_subprotocol(Some("corecast.v1.json")),
        Some(Encoding::Json)
    );
    assert_eq!(
        Encoding::from_subprotocol(Some("corecast.v1.bin")),
        Some(Encoding::Binary)
    );
    assert_eq!(Encoding::from_subprotocol(Some("corecast.v2.bin")), None);
    assert_eq!(Encoding::from_subprotocol(Some("CORECAST.V1.JSON")), None);
    for enc in [Encoding::Json, Encoding::Binary] {
        assert_eq!(
            Encoding::from_subprotocol(Some(enc.subprotocol())),
            Some(enc)
        );
        assert!(Encoding::SUBPROTOCOLS.contains(&enc.subprotocol()));
    }
    assert!(Encoding::Json.is_text() && !Encoding::Binary.is_text());
}

#[test]
fn frame_type_must_match_the_encoding() {
    let text = r#"{"op":"sub","topic":"a"}"#;
    let bin = op_bin(&ClientOp::Sub {
        topic: t("a"),
        since: None,
        id: None,
    });
    assert!(Encoding::Json.decode_text_frame(text).is_ok());
    assert!(Encoding::Binary.decode_binary_frame(&bin).is_ok());
    let e = Encoding::Binary.decode_text_frame(text).unwrap_err();
    assert_eq!(
        (e.code().as_str(), e.to_string().as_str()),
        (
            "bad_frame",
            "this connection's encoding takes binary frames"
        )
    );
    assert_eq!(
        Encoding::Json.decode_binary_frame(&bin).unwrap_err().code(),
        ErrorCode::BadFrame
    );
}

// -----------------------------------------------------------------------------------------
// The examples in docs/protocol.md, byte for byte
// -----------------------------------------------------------------------------------------

const DOC: &str = include_str!("../../../../docs/protocol.md");
const PX: &str = r#"{"px":64000.5}"#;
const DEADBEEF: &[u8] = &[0xde, 0xad, 0xbe, 0xef];
const TS: u64 = 1_700_000_000_000_000;

#[test]
fn documented_client_examples() {
    let cases: [(ClientOp<'_>, &str, &str); 5] = [
        (
            ClientOp::Sub {
                topic: t("prices.BTC"),
                since: Some(42),
                id: Some("1".into()),
            },
            r#"{"op":"sub","topic":"prices.BTC","since":42,"id":"1"}"#,
            "01 05 01 31 0a 70 72 69 63 65 73 2e 42 54 43 2a",
        ),
        (
            ClientOp::Sub {
                topic: t("a"),
                since: None,
                id: Some(7.into()),
            },
            r#"{"op":"sub","topic":"a","id":7}"#,
            "01 02 07 01 61",
        ),
        (
            ClientOp::Unsub {
                topic: t("prices.BTC"),
                id: Some("2".into()),
            },
            r#"{"op":"unsub","topic":"prices.BTC","id":"2"}"#,
            "02 01 01 32 0a 70 72 69 63 65 73 2e 42 54 43",
        ),
        (
            ClientOp::Pub {
                topic: t("prices.BTC"),
                data: Payload::Json(PX),
                key: Some("BTC".into()),
                id: Some("3".into()),
            },
            r#"{"op":"pub","topic":"prices.BTC","key":"BTC","id":"3","data":{"px":64000.5}}"#,
            "03 19 01 33 0a 70 72 69 63 65 73 2e 42 54 43 03 42 54 43 \
             7b 22 70 78 22 3a 36 34 30 30 30 2e 35 7d",
        ),
        (
            ClientOp::Pub {
                topic: t("prices.BTC"),
                data: Payload::Bytes(DEADBEEF),
                key: None,
                id: None,
            },
            "",
            "03 00 0a 70 72 69 63 65 73 2e 42 54 43 de ad be ef",
        ),
    ];
    for (op, json, bin) in cases {
        assert!(
            DOC.contains(&hex(&unhex(bin))),
            "docs/protocol.md lacks {bin}"
        );
        assert!(DOC.contains(json), "docs/protocol.md lacks {json}");
        if !json.is_empty() {
            assert_eq!(op_json(&op), json);
            assert_eq!(decode_json(json).unwrap(), op);
        }
        assert_eq!(hex(&op_bin(&op)), hex(&unhex(bin)));
        assert_eq!(decode_binary(&unhex(bin)).unwrap(), op);
    }
    // The issue's own example, with data before key and id.
    let op = decode_json(
        r#"{"op":"pub","topic":"prices.BTC","data":{"px":64000.5},"key":"BTC","id":"2"}"#,
    )
    .unwrap();
    assert_eq!(
        op,
        ClientOp::Pub {
            topic: t("prices.BTC"),
            data: Payload::Json(PX),
            key: Some("BTC".into()),
            id: Some("2".into())
        }
    );
}

#[test]
fn documented_server_examples() {
    let p = t("prices.BTC");
    type Enc = Box<dyn Fn(Encoding, &mut Vec<u8>)>;
    let cases: Vec<(Enc, &str, &str)> = vec![
        (
            Box::new(move |e, o| encode_msg(e, p, 43, TS, Payload::Json(PX), o)),
            r#"{"op":"msg","topic":"prices.BTC","seq":43,"ts":1700000000000000,"data":{"px":64000.5}}"#,
            "81 10 0a 70 72 69 63 65 73 2e 42 54 43 2b 80 80 f9 c0 c1 c4 82 03 \
             7b 22 70 78 22 3a 36 34 30 30 30 2e 35 7d",
        ),
        (
            Box::new(move |e, o| encode_msg(e, p, 44, TS + 1, Payload::Bytes(DEADBEEF), o)),
            r#"{"op":"msg","topic":"prices.BTC","seq":44,"ts":1700000000000001,"data_b64":"3q2+7w=="}"#,
            "81 00 0a 70 72 69 63 65 73 2e 42 54 43 2c 81 80 f9 c0 c1 c4 82 03 de ad be ef",
        ),
        (
            Box::new(|e, o| encode_ack(e, &"3".into(), 44, o)),
            r#"{"op":"ack","id":"3","seq":44}"#,
            "82 01 01 33 2c",
        ),
        (
            Box::new(|e, o| {
                encode_err(
                    e,
                    Some(&"4".into()),
                    ErrorCode::BadTopic,
                    "empty segment",
                    o,
                )
            }),
            r#"{"op":"err","id":"4","code":"bad_topic","msg":"empty segment"}"#,
            "83 01 01 34 09 62 61 64 5f 74 6f 70 69 63 \
             65 6d 70 74 79 20 73 65 67 6d 65 6e 74",
        ),
        (
            Box::new(|e, o| encode_err(e, None, ErrorCode::BadJson, "x", o)),
            r#"{"op":"err","code":"bad_json","msg":"x"}"#,
            "83 00 08 62 61 64 5f 6a 73 6f 6e 78",
        ),
        (
            Box::new(move |e, o| encode_subbed(e, p, 42, Some(&"1".into()), o)),
            r#"{"op":"subbed","topic":"prices.BTC","seq":42,"id":"1"}"#,
            "84 01 01 31 0a 70 72 69 63 65 73 2e 42 54 43 2a",
        ),
        (
            Box::new(move |e, o| encode_subbed(e, p, 0, None, o)),
            r#"{"op":"subbed","topic":"prices.BTC","seq":0}"#,
            "84 00 0a 70 72 69 63 65 73 2e 42 54 43 00",
        ),
        (
            Box::new(move |e, o| encode_reset(e, p, 40, o)),
            r#"{"op":"reset","topic":"prices.BTC","seq":40}"#,
            "85 00 0a 70 72 69 63 65 73 2e 42 54 43 28",
        ),
        (
            Box::new(move |e, o| encode_unsubbed(e, p, Some(&"2".into()), o)),
            r#"{"op":"unsubbed","topic":"prices.BTC","id":"2"}"#,
            "86 01 01 32 0a 70 72 69 63 65 73 2e 42 54 43",
        ),
    ];
    for (f, json, bin) in cases {
        let (mut j, mut b) = (Vec::new(), Vec::new());
        f(Encoding::Json, &mut j);
        f(Encoding::Binary, &mut b);
        assert!(
            DOC.contains(&hex(&unhex(bin))),
            "docs/protocol.md lacks {bin}"
        );
        assert!(DOC.contains(json), "docs/protocol.md lacks {json}");
        assert_eq!(std::str::from_utf8(&j).unwrap(), json);
        assert_eq!(hex(&b), hex(&unhex(bin)));
        assert_eq!(decode_srv_json(&j), decode_srv_bin(&b).unwrap(), "{json}");
    }
}

// -----------------------------------------------------------------------------------------
// Round trips
// -----------------------------------------------------------------------------------------

#[test]
fn every_client_op_round_trips_in_both_encodings() {
    let big = "x".repeat(MAX_TOPIC_BYTES);
    let id64 = "i".repeat(MAX_ID_BYTES);
    let key128 = "k".repeat(MAX_KEY_BYTES);
    let ops = [
        ClientOp::Sub {
            topic: t("a"),
            since: None,
            id: None,
        },
        ClientOp::Sub {
            topic: t(&big),
            since: Some(0),
            id: Some(Id::Num(0)),
        },
        ClientOp::Sub {
            topic: t("a.b"),
            since: Some(u64::MAX),
            id: Some(Id::Num(u64::MAX)),
        },
        ClientOp::Sub {
            topic: t("a"),
            since: None,
            id: Some(id64.as_str().into()),
        },
        ClientOp::Unsub {
            topic: t("a"),
            id: None,
        },
        ClientOp::Unsub {
            topic: t("x:y-z_1"),
            id: Some("u\"1\\".into()),
        },
        ClientOp::Pub {
            topic: t("p"),
            data: Payload::Json("null"),
            key: None,
            id: None,
        },
        ClientOp::Pub {
            topic: t("p"),
            data: Payload::Json(r#"[1, {"a" : "é\n"}, true]"#),
            key: Some(key128.as_str().into()),
            id: Some("\u{1F600}\u{0}".into()),
        },
        ClientOp::Pub {
            topic: t("p"),
            data: Payload::Json("\"s\""),
            key: None,
            id: Some(9.into()),
        },
        ClientOp::Pub {
            topic: t("p"),
            data: Payload::Bytes(b""),
            key: None,
            id: None,
        },
        ClientOp::Pub {
            topic: t("p"),
            data: Payload::Bytes(&[0, 0xff, b'{']),
            key: Some("k\u{7}".into()),
            id: Some("1".into()),
        },
    ];
    for op in &ops {
        assert_eq!(
            &decode_binary(&op_bin(op)).unwrap(),
            op,
            "binary {}",
            hex(&op_bin(op))
        );
        let mut via_bytes_mut = bytes::BytesMut::new();
        encode_op_binary(op, &mut via_bytes_mut);
        assert_eq!(&via_bytes_mut[..], &op_bin(op)[..]);
        if let ClientOp::Pub {
            data: Payload::Bytes(_),
            ..
        } = op
        {
            let e = encode_op_json(op, &mut Vec::new()).unwrap_err();
            assert_eq!(e.code(), ErrorCode::BadField);
            continue;
        }
        let json = op_json(op);
        serde_json::from_str::<Value>(&json).expect("valid JSON");
        assert_eq!(&decode_json(&json).unwrap(), op, "json {json}");
        let mut enc = Vec::new();
        encode_op(Encoding::Json, op, &mut enc).unwrap();
        assert_eq!(enc, json.as_bytes());
    }
}

#[test]
fn every_server_message_round_trips_in_both_encodings() {
    let p = t("p.q");
    let s = |x: &str| x.to_owned();
    let (j, b) = both(|e, o| encode_msg(e, p, 3, 4, Payload::Json("null"), o));
    let want = Srv::Msg {
        topic: s("p.q"),
        seq: 3,
        ts: 4,
        json: true,
        data: b"null".to_vec(),
    };
    assert_eq!((j, b), (want.clone(), want));
    let (j, b) = both(|e, o| encode_msg(e, p, 1, 2, Payload::Json("[1,2]"), o));
    let want = Srv::Msg {
        topic: s("p.q"),
        seq: 1,
        ts: 2,
        json: true,
        data: b"[1,2]".to_vec(),
    };
    assert_eq!((j, b), (want.clone(), want));
    let (j, b) = both(|e, o| encode_msg(e, p, u64::MAX, u64::MAX, Payload::Bytes(b"\0\x01"), o));
    let want = Srv::Msg {
        topic: s("p.q"),
        seq: u64::MAX,
        ts: u64::MAX,
        json: false,
        data: vec![0, 1],
    };
    assert_eq!((j, b), (want.clone(), want));
    for id in [Id::Num(0), Id::Num(u64::MAX), Id::from("a\"b\\c\n\u{2028}")] {
        let (j, b) = both(|e, o| encode_ack(e, &id, 5, o));
        assert_eq!(
            (&j, &b),
            (
                &Srv::Ack {
                    id: id.clone().into_owned(),
                    seq: 5
                },
                &j
            )
        );
        for maybe in [None, Some(&id)] {
            let owned = maybe.cloned().map(Id::into_owned);
            let (j, b) =
                both(|e, o| encode_err(e, maybe, ErrorCode::Forbidden, "m \"q\" \u{0}", o));
            let want = Srv::Err {
                id: owned.clone(),
                code: s("forbidden"),
                msg: s("m \"q\" \u{0}"),
            };
            assert_eq!((j, b), (want.clone(), want));
            let (j, b) = both(|e, o| encode_subbed(e, p, 7, maybe, o));
            let want = Srv::Subbed {
                topic: s("p.q"),
                seq: 7,
                id: owned.clone(),
            };
            assert_eq!((j, b), (want.clone(), want));
            let (j, b) = both(|e, o| encode_unsubbed(e, p, maybe, o));
            let want = Srv::Unsubbed {
                topic: s("p.q"),
                id: owned.clone(),
                revoked: false,
            };
            assert_eq!((j, b), (want.clone(), want));
            let (j, b) = both(|e, o| encode_revoked(e, p, o));
            let want = Srv::Unsubbed {
                topic: s("p.q"),
                id: None,
                revoked: true,
            };
            assert_eq!((j, b), (want.clone(), want));
        }
    }
    let (j, b) = both(|e, o| encode_reset(e, p, 0, o));
    assert_eq!(
        (j, b),
        (
            Srv::Reset {
                topic: s("p.q"),
                seq: 0
            },
            Srv::Reset {
                topic: s("p.q"),
                seq: 0
            }
        )
    );
}

#[test]
fn encoders_write_the_same_bytes_into_bytes_mut() {
    let mut v = Vec::new();
    let mut bm = bytes::BytesMut::new();
    for enc in [Encoding::Json, Encoding::Binary] {
        encode_msg(enc, t("a"), 1, 2, Payload::Bytes(b"xyz"), &mut v);
        encode_msg(enc, t("a"), 1, 2, Payload::Bytes(b"xyz"), &mut bm);
        encode_error(
            enc,
            Some(&"i".into()),
            &WireError::MissingField("op"),
            &mut v,
        );
        encode_error(
            enc,
            Some(&"i".into()),
            &WireError::MissingField("op"),
            &mut bm,
        );
    }
    assert_eq!(&v[..], &bm[..]);
}

#[test]
fn msg_len_is_exact() {
    for enc in [Encoding::Json, Encoding::Binary] {
        for (seq, ts) in [(0, 0), (9, 10), (99, 100), (127, 128), (u64::MAX, 1 << 63)] {
            for data in [
                Payload::Json("0"),
                Payload::Json(PX),
                Payload::Bytes(b""),
                Payload::Bytes(b"a"),
                Payload::Bytes(b"ab"),
                Payload::Bytes(b"abc"),
                Payload::Bytes(&[7; 2000]),
            ] {
                let mut out = vec![1, 2, 3];
                encode_msg(enc, t("a.b"), seq, ts, data, &mut out);
                assert_eq!(out.len() - 3, msg_len(enc, t("a.b"), seq, ts, data));
            }
        }
    }
}

// -----------------------------------------------------------------------------------------
// JSON details
// -----------------------------------------------------------------------------------------

#[test]
fn json_data_is_spliced_verbatim_never_reparsed() {
    for data in [
        "null",
        "0",
        "-1.5e300",
        "\"a\\u0000b\"",
        "[ 1 ,2 ]",
        "{\"a\" :\n {\"b\":[true,false,null]}}",
        "\"\u{1F600}\"",
    ] {
        let input = format!(r#"{{"op":"pub","topic":"t","data": {data} ,"id":"1"}}"#);
        let op = decode_json(&input).unwrap();
        let ClientOp::Pub {
            data: Payload::Json(text),
            ..
        } = op
        else {
            panic!()
        };
        assert_eq!(text, data);
        // It points into the input: no copy was made.
        let range = input.as_bytes().as_ptr_range();
        assert!(range.contains(&text.as_ptr()));
        let mut out = Vec::new();
        encode_msg_json(t("t"), 1, 2, Payload::Json(text), &mut out);
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["data"], serde_json::from_str::<Value>(data).unwrap());
        assert!(std::str::from_utf8(&out)
            .unwrap()
            .ends_with(&format!("\"data\":{data}}}")));
    }
}

#[test]
fn json_borrows_unescaped_strings_and_unescapes_the_rest() {
    let op =
        decode_json(r#"{"op":"pub","topic":"t","data":1,"id":"plain","key":"k\"ey"}"#).unwrap();
    let ClientOp::Pub {
        id: Some(Id::Str(id)),
        key: Some(key),
        ..
    } = op
    else {
        panic!()
    };
    assert!(matches!(id, Cow::Borrowed("plain")));
    assert!(matches!(key, Cow::Owned(ref k) if k == "k\"ey"));
    // Escapes in the op name and field names are plain JSON and are understood.
    let op = decode_json(r#"{"\u006fp":"s\u0075b","topic":"t"}"#).unwrap();
    assert_eq!(
        op,
        ClientOp::Sub {
            topic: t("t"),
            since: None,
            id: None
        }
    );
}

#[test]
fn json_tolerates_whitespace_unknown_fields_and_nulls() {
    let want = ClientOp::Sub {
        topic: t("a.b"),
        since: Some(3),
        id: None,
    };
    for input in [
        " \n{ \"op\" : \"sub\" ,\t\"topic\":\"a.b\", \"since\" : 3 }\r\n ",
        r#"{"topic":"a.b","since":3,"op":"sub"}"#,
        r#"{"op":"sub","topic":"a.b","since":3,"id":null,"extra":{"deep":[1,2,{"x":null}]}}"#,
        r#"{"op":"sub","topic":"a.b","since":3,"key":5,"data":"ignored: not a sub field"}"#,
    ] {
        assert_eq!(decode_json(input).unwrap(), want, "{input}");
    }
    // `null` counts as absent, except as data, where it is the JSON value null.
    assert_eq!(
        decode_json(r#"{"op":"sub","topic":"a.b","since":null}"#).unwrap(),
        ClientOp::Sub {
            topic: t("a.b"),
            since: None,
            id: None
        }
    );
    assert_eq!(
        decode_json(r#"{"op":"pub","topic":"a","data":null,"key":null}"#).unwrap(),
        ClientOp::Pub {
            topic: t("a"),
            data: Payload::Json("null"),
            key: None,
            id: None
        }
    );
}

#[test]
fn numeric_ids_come_back_as_numbers() {
    let op = decode_json(r#"{"op":"pub","topic":"a","data":1,"id":18446744073709551615}"#).unwrap();
    let id = op.id().unwrap();
    assert_eq!(id, &Id::Num(u64::MAX));
    let mut out = Vec::new();
    encode_ack(Encoding::Json, id, 1, &mut out);
    assert_eq!(out, br#"{"op":"ack","id":18446744073709551615,"seq":1}"#);
    out.clear();
    encode_ack(Encoding::Json, &"7".into(), 1, &mut out);
    assert_eq!(out, br#"{"op":"ack","id":"7","seq":1}"#);
}

#[test]
fn ids_and_messages_are_escaped_exactly() {
    let raw = "q\"b\\s/n\nr\rt\tb\u{8}f\u{c}\u{0}\u{1f}\u{7f}é\u{2028}\u{1F600}";
    let mut out = Vec::new();
    encode_ack(Encoding::Json, &Id::from(raw), 1, &mut out);
    assert_eq!(
        std::str::from_utf8(&out).unwrap(),
        "{\"op\":\"ack\",\"id\":\"q\\\"b\\\\s/n\\nr\\rt\\tb\\bf\\f\\u0000\\u001f\u{7f}é\u{2028}\
         \u{1F600}\",\"seq\":1}"
    );
    let v: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v["id"], json!(raw));
    // Every control character, one at a time, survives serde_json.
    for c in 0u8..0x20 {
        let s = format!("a{}b", c as char);
        let mut out = Vec::new();
        encode_err(
            Encoding::Json,
            Some(&s.as_str().into()),
            ErrorCode::RateLimited,
            &s,
            &mut out,
        );
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(
            (v["id"].as_str(), v["msg"].as_str()),
            (Some(&*s), Some(&*s))
        );
    }
}

#[test]
fn wire_errors_become_err_messages() {
    let e = decode_json(r#"{"op":"sub\"<x>","topic":"a","id":"i"}"#).unwrap_err();
    assert_eq!(e.code(), ErrorCode::BadOp);
    let mut out = Vec::new();
    encode_error(
        Encoding::Json,
        error_id_json(r#"{"op":"x","id":"i"}"#).as_ref(),
        &e,
        &mut out,
    );
    let v: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(
        v,
        json!({"op":"err","id":"i","code":"bad_op",
        "msg":"unknown op \"sub\\\"<x>\"; a client sends sub, unsub or pub"})
    );
    out.clear();
    encode_error(Encoding::Binary, None, &e, &mut out);
    assert_eq!(
        decode_srv_bin(&out).unwrap(),
        Srv::Err {
            id: None,
            code: "bad_op".into(),
            msg: e.to_string()
        }
    );
}

// -----------------------------------------------------------------------------------------
// Interop between the encodings
// -----------------------------------------------------------------------------------------

#[test]
fn json_publisher_to_binary_subscriber() {
    let input = r#"{"op":"pub","topic":"t","data":{"a":[1,"é"]}}"#;
    let ClientOp::Pub { data, .. } = decode_json(input).unwrap() else {
        panic!()
    };
    let mut out = Vec::new();
    encode_msg_binary(t("t"), 5, 6, data, &mut out);
    let Srv::Msg { json, data, .. } = decode_srv_bin(&out).unwrap() else {
        panic!()
    };
    assert!(json);
    assert_eq!(data, r#"{"a":[1,"é"]}"#.as_bytes());
}

#[test]
fn binary_publisher_to_json_subscriber() {
    // Opaque bytes arrive base64-encoded in data_b64.
    let bytes: Vec<u8> = (0..=255).collect();
    let mut frame = vec![OP_PUB, 0, 1, b't'];
    frame.extend(&bytes);
    let ClientOp::Pub { data, .. } = decode_binary(&frame).unwrap() else {
        panic!()
    };
    assert_eq!(data, Payload::Bytes(&bytes));
    let mut out = Vec::new();
    encode_msg_json(t("t"), 1, 2, data, &mut out);
    assert_eq!(
        decode_srv_json(&out),
        Srv::Msg {
            topic: "t".into(),
            seq: 1,
            ts: 2,
            json: false,
            data: bytes.clone()
        }
    );
    // JSON-flagged data arrives as JSON, spliced.
    let mut frame = vec![OP_PUB, FLAG_JSON, 1, b't'];
    frame.extend(br#"{"x":1}"#);
    let ClientOp::Pub { data, .. } = decode_binary(&frame).unwrap() else {
        panic!()
    };
    out.clear();
    encode_msg_json(t("t"), 1, 2, data, &mut out);
    assert_eq!(
        out,
        br#"{"op":"msg","topic":"t","seq":1,"ts":2,"data":{"x":1}}"#
    );
}

// -----------------------------------------------------------------------------------------
// Primitives
// -----------------------------------------------------------------------------------------

#[test]
fn decimal_and_varint_writers() {
    let mut probes = vec![
        0,
        1,
        9,
        10,
        99,
        100,
        127,
        128,
        999,
        1000,
        16383,
        16384,
        u64::MAX,
    ];
    probes.extend((0..64).map(|s| 1u64 << s));
    probes.extend((0..64).map(|s| (1u64 << s) - 1));
    probes.extend((1..20).map(|e| 10u64.pow(e) - 1));
    probes.extend((1..20).map(|e| 10u64.pow(e)));
    for n in probes {
        let mut out = Vec::new();
        put_dec(&mut out, n);
        assert_eq!(out, n.to_string().as_bytes());
        assert_eq!(dec_len(n), out.len());
        out.clear();
        put_varint(&mut out, n);
        assert_eq!(varint_len(n), out.len(), "{n}");
        let mut r = Reader { buf: &out };
        assert_eq!(r.varint(), Ok(n));
        assert!(r.finish().is_ok());
    }
}

#[test]
fn base64_matches_the_standard_engine() {
    use base64::Engine as _;
    for len in [0, 1, 2, 3, 4, 5, 767, 768, 769, 770, 1536, 2000] {
        let data: Vec<u8> = (0..len).map(|i| (i * 7) as u8).collect();
        let mut out = Vec::new();
        put_base64(&mut out, &data);
        assert_eq!(
            out,
            base64::engine::general_purpose::STANDARD
                .encode(&data)
                .as_bytes()
        );
        assert_eq!(out.len(), base64_len(len));
    }
}

#[test]
fn client_op_accessors() {
    let op = ClientOp::Pub {
        topic: t("a"),
        data: Payload::Json("1"),
        key: None,
        id: Some(3.into()),
    };
    assert_eq!(
        (op.name(), op.topic().map(|t| t.as_str()), op.id()),
        ("pub", Some("a"), Some(&Id::Num(3)))
    );
    assert_eq!(
        ClientOp::Unsub {
            topic: t("b"),
            id: None
        }
        .name(),
        "unsub"
    );
    assert_eq!(Payload::Bytes(b"ab").as_bytes(), b"ab");
    assert_eq!(Id::from("x").to_string(), "\"x\"");
    assert_eq!(Id::Num(4).to_string(), "4");
}

// -----------------------------------------------------------------------------------------
// The auth op
// -----------------------------------------------------------------------------------------

#[test]
fn auth_op_in_both_encodings() {
    let auth = |token: &'static str, id: Option<Id<'static>>| {
        ClientOp::Auth(AuthOp {
            token: token.into(),
            id,
        })
    };
    let json = r#"{"op":"auth","token":"a.b.c","id":"r1"}"#;
    let op = auth("a.b.c", Some("r1".into()));
    assert_eq!(decode_json(json).unwrap(), op);
    assert_eq!(op_json(&op), json);
    assert_eq!(
        (op.name(), op.topic(), op.id()),
        ("auth", None, Some(&"r1".into()))
    );
    // Other fields are ignored, a topic included; the id is checked before the token.
    assert_eq!(
        decode_json(r#"{"op":"auth","topic":7,"token":"t"}"#).unwrap(),
        auth("t", None)
    );
    assert_eq!(
        decode_json(r#"{"op":"auth"}"#),
        Err(WireError::MissingField("token"))
    );
    assert_eq!(
        code_of_json(r#"{"op":"auth","id":{},"token":7}"#),
        "bad_field"
    );
    for bad in [
        r#"{"op":"auth","token":7}"#.to_owned(),
        r#"{"op":"auth","token":""}"#.to_owned(),
        format!(
            r#"{{"op":"auth","token":"{}"}}"#,
            "t".repeat(MAX_TOKEN_BYTES + 1)
        ),
    ] {
        assert!(
            matches!(
                decode_json(&bad),
                Err(WireError::BadField { field: "token", .. })
            ),
            "{bad}"
        );
    }
    // As before `auth` joined the op enum: only an unescaped "auth" is the op, and a token
    // given twice is answered `bad_op`.
    for odd in [
        r#"{"op":"\u0061uth","token":"t"}"#,
        r#"{"op":"auth","token":"t","token":"u"}"#,
    ] {
        let e = decode_json(odd).unwrap_err();
        assert_eq!(e, WireError::BadOp("\"auth\"".into()), "{odd}");
    }

    let mut bin = vec![OP_AUTH, FLAG_ID_NUM, 9];
    put_sized(&mut bin, b"x.y.z");
    let op = auth("x.y.z", Some(Id::Num(9)));
    assert_eq!(decode_binary(&bin).unwrap(), op);
    assert_eq!(op_bin(&op), bin);
    assert_eq!(
        decode_binary(&[OP_AUTH, FLAG_SINCE]),
        Err(WireError::BadBinary(
            "flag bits set that this op does not define"
        ))
    );
    assert_eq!(
        decode_binary(&[OP_AUTH, 0, 0]).unwrap_err().code(),
        ErrorCode::BadField
    );
    // A binary auth's err carries no id (as it never has).
    assert_eq!(error_id_binary(&bin), None);
    bin.push(0);
    assert_eq!(
        decode_binary(&bin),
        Err(WireError::BadBinary("trailing bytes"))
    );

    let mut out = Vec::new();
    encode_authed(Encoding::Json, 1700, Some(&Id::Num(3)), &mut out);
    assert_eq!(out, br#"{"op":"authed","exp":1700,"id":3}"#);
    out.clear();
    encode_authed(Encoding::Binary, 300, None, &mut out);
    assert_eq!(out, [OP_AUTHED, 0, 0xac, 0x02]);
}
