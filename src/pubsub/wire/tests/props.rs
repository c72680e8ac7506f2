//! Property tests: no input panics a decoder, and every op and message round-trips.

use super::*;
use proptest::prelude::*;

/// An owned client op, for strategies (a `ClientOp` borrows); `kind` 0 to 3: sub, unsub,
/// pub, auth.
#[derive(Debug, Clone)]
struct OwnedOp {
    kind: u8,
    topic: String,
    since: Option<u64>,
    id: Option<Id<'static>>,
    key: Option<String>,
    json: Option<String>,
    bytes: Vec<u8>,
}

impl OwnedOp {
    fn op(&self) -> ClientOp<'_> {
        let topic = TopicName::new(&self.topic).unwrap();
        let id = self.id.clone();
        match self.kind {
            0 => ClientOp::Sub {
                topic,
                since: self.since,
                id,
            },
            1 => ClientOp::Unsub { topic, id },
            // The key's strategy makes a good token too.
            3 => ClientOp::Auth(AuthOp {
                token: Cow::Borrowed(self.key.as_deref().unwrap_or("a.b.c")),
                id,
            }),
            _ => ClientOp::Pub {
                topic,
                data: match &self.json {
                    Some(text) => Payload::Json(text),
                    None => Payload::Bytes(&self.bytes),
                },
                key: self.key.as_deref().map(Cow::Borrowed),
                id,
            },
        }
    }
}

fn topic() -> impl Strategy<Value = String> {
    prop_oneof![
        "[A-Za-z0-9_:-]{1,12}(\\.[A-Za-z0-9_:-]{1,12}){0,6}",
        "[a-z]{128}",
    ]
}

fn id() -> impl Strategy<Value = Id<'static>> {
    prop_oneof![
        any::<u64>().prop_map(Id::Num),
        "(?s).{1,16}".prop_map(|s| Id::Str(Cow::Owned(s))),
        "[\\x00-\\x1f\"\\\\]{1,64}".prop_map(|s| Id::Str(Cow::Owned(s))),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        "(?s).{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::btree_map("(?s).{0,6}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn json_text() -> impl Strategy<Value = String> {
    (json_value(), any::<bool>()).prop_map(|(v, pretty)| {
        if pretty {
            serde_json::to_string_pretty(&v).unwrap()
        } else {
            v.to_string()
        }
    })
}

fn owned_op() -> impl Strategy<Value = OwnedOp> {
    (
        0u8..4,
        topic(),
        any::<Option<u64>>(),
        proptest::option::of(id()),
        proptest::option::of("(?s).{1,32}"),
        proptest::option::of(json_text()),
        proptest::collection::vec(any::<u8>(), 0..64),
    )
        .prop_map(|(kind, topic, since, id, key, json, bytes)| OwnedOp {
            kind,
            topic,
            since,
            id,
            key,
            json,
            bytes,
        })
}

/// Strings built from JSON-ish fragments, to get past the syntax check more often.
fn jsonish() -> impl Strategy<Value = String> {
    let frag = prop_oneof![
        Just("{".to_owned()),
        Just("}".to_owned()),
        Just("[".to_owned()),
        Just("]".to_owned()),
        Just(",".to_owned()),
        Just(":".to_owned()),
        Just("\"op\":".to_owned()),
        Just("\"sub\"".to_owned()),
        Just("\"pub\"".to_owned()),
        Just("\"unsub\"".to_owned()),
        Just("\"topic\":".to_owned()),
        Just("\"a.b\"".to_owned()),
        Just("\"since\":".to_owned()),
        Just("\"id\":".to_owned()),
        Just("\"key\":".to_owned()),
        Just("\"data\":".to_owned()),
        Just("null".to_owned()),
        Just("\"\\u0000\\ud800\"".to_owned()),
        any::<u64>().prop_map(|n| n.to_string()),
        "-?[0-9]{1,25}(\\.[0-9]+)?(e-?[0-9]+)?",
        "\"(?s).{0,8}\"",
        "(?s).{0,3}",
    ];
    proptest::collection::vec(frag, 0..24).prop_map(|v| v.concat())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn decode_json_never_panics(s in any::<String>()) {
        let _ = decode_json(&s);
        let _ = error_id_json(&s);
    }

    #[test]
    fn decode_jsonish_never_panics(s in jsonish()) {
        let _ = decode_json(&s);
        let _ = error_id_json(&s);
        let wrapped = format!("{{\"op\":\"pub\",\"topic\":\"a\",\"data\":{s}}}");
        let _ = decode_json(&wrapped);
    }

    #[test]
    fn decode_binary_never_panics(b in proptest::collection::vec(any::<u8>(), 0..96)) {
        let _ = decode_binary(&b);
        let _ = error_id_binary(&b);
        for op in [OP_SUB, OP_UNSUB, OP_PUB, OP_AUTH] {
            let mut v = vec![op];
            v.extend(&b);
            let _ = decode_binary(&v);
        }
    }

    #[test]
    fn mutated_binary_never_panics(
        o in owned_op(),
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut b = op_bin(&o.op());
        for (at, x) in flips {
            let i = at.index(b.len());
            b[i] ^= x;
        }
        let _ = decode_binary(&b);
        let _ = decode_binary(&b[..cut.index(b.len() + 1)]);
        let _ = error_id_binary(&b);
    }

    #[test]
    fn client_ops_round_trip(o in owned_op()) {
        let op = o.op();
        let bin = op_bin(&op);
        prop_assert_eq!(&decode_binary(&bin).unwrap(), &op);
        if o.kind != 2 || o.json.is_some() {
            let json = op_json(&op);
            prop_assert_eq!(&decode_json(&json).unwrap(), &op);
            let id = error_id_json(&json);
            prop_assert_eq!(id.as_ref(), op.id());
        }
        let id = error_id_binary(&bin);
        // A binary auth's err carries no id (see error_id_binary).
        let want = if o.kind == 3 { None } else { op.id() };
        prop_assert_eq!(id.as_ref(), want);
    }

    #[test]
    fn msgs_round_trip(
        topic in topic(),
        seq in any::<u64>(),
        ts in any::<u64>(),
        json in proptest::option::of(json_text()),
        bytes in proptest::collection::vec(any::<u8>(), 0..200),
    ) {
        let data = match &json {
            Some(text) => Payload::Json(text),
            None => Payload::Bytes(&bytes),
        };
        let tn = TopicName::new(&topic).unwrap();
        let want = Srv::Msg {
            topic: topic.clone(), seq, ts, json: json.is_some(), data: data.as_bytes().to_vec()
        };
        for enc in [Encoding::Json, Encoding::Binary] {
            let mut out = Vec::new();
            encode_msg(enc, tn, seq, ts, data, &mut out);
            prop_assert_eq!(out.len(), msg_len(enc, tn, seq, ts, data));
            let got = match enc {
                Encoding::Json => decode_srv_json(&out),
                Encoding::Binary => decode_srv_bin(&out).unwrap(),
            };
            prop_assert_eq!(&got, &want);
        }
    }

    #[test]
    fn replies_round_trip(
        topic in topic(),
        seq in any::<u64>(),
        id in proptest::option::of(id()),
        code in prop::sample::select(
            [ErrorCode::DECODE.as_slice(), &ErrorCode::SERVER, &ErrorCode::ADMIN].concat()
        ),
        msg in "(?s).{0,40}",
    ) {
        let tn = TopicName::new(&topic).unwrap();
        let t = || topic.clone();
        if let Some(id) = &id {
            let (j, b) = both(|e, o| encode_ack(e, id, seq, o));
            prop_assert_eq!(&j, &Srv::Ack { id: id.clone(), seq });
            prop_assert_eq!(&b, &j);
        }
        let id = id.as_ref();
        let owned = id.cloned();
        let (j, b) = both(|e, o| encode_err(e, id, code, &msg, o));
        prop_assert_eq!(&j, &Srv::Err { id: owned.clone(), code: code.as_str().to_owned(), msg: msg.clone() });
        prop_assert_eq!(&b, &j);
        let (j, b) = both(|e, o| encode_subbed(e, tn, seq, id, o));
        prop_assert_eq!(&j, &Srv::Subbed { topic: t(), seq, id: owned.clone() });
        prop_assert_eq!(&b, &j);
        let (j, b) = both(|e, o| encode_reset(e, tn, seq, o));
        prop_assert_eq!(&j, &Srv::Reset { topic: t(), seq });
        prop_assert_eq!(&b, &j);
        let (j, b) = both(|e, o| encode_unsubbed(e, tn, id, o));
        prop_assert_eq!(&j, &Srv::Unsubbed { topic: t(), id: owned, revoked: false });
        prop_assert_eq!(&b, &j);
    }

    #[test]
    fn any_string_escapes_to_the_same_string(s in any::<String>()) {
        let mut out = Vec::new();
        put_json_str(&mut out, &s);
        prop_assert_eq!(serde_json::from_slice::<String>(&out).unwrap(), s);
    }
}
