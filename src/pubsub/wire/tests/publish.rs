//! [`check_pub`], the `pub` rules for a publish without a client envelope (the admin API's
//! `POST /publish`): for every input it must give the same answer, the same code, as a
//! WebSocket `pub` carrying the same topic, key and data.

use super::*;

/// The binary `pub` (no id) carrying these raw fields, written by hand so that fields the
/// encoder's types would refuse (a bad topic, a key that is not UTF-8) can be carried too.
fn bin_pub(topic: &[u8], key: Option<&[u8]>, data: &[u8], json: bool) -> Vec<u8> {
    let flags = if key.is_some() { FLAG_KEY } else { 0 } | if json { FLAG_JSON } else { 0 };
    let mut out = vec![OP_PUB, flags];
    put_sized(&mut out, topic);
    if let Some(key) = key {
        put_sized(&mut out, key);
    }
    out.extend_from_slice(data);
    out
}

/// What a publish came to: its topic, key, data and whether the data is JSON; or the code.
type Answer = Result<(String, Option<String>, Vec<u8>, bool), &'static str>;

/// A case: topic, key, data, JSON or not, and the answer expected (the code of a refusal).
type Case<'a> = (
    &'a [u8],
    Option<&'a [u8]>,
    Vec<u8>,
    bool,
    Result<(), &'static str>,
);

/// `check_pub`'s answer: the parts, or the code.
fn checked(topic: &[u8], key: Option<&[u8]>, data: &[u8], json: bool) -> Answer {
    check_pub(topic, key, data, json)
        .map(|p| {
            (
                p.topic.as_str().to_string(),
                p.key.map(str::to_string),
                p.data.as_bytes().to_vec(),
                p.data.is_json(),
            )
        })
        .map_err(|e| e.code().as_str())
}

/// The answer of the binary decoder to the same fields.
fn decoded(topic: &[u8], key: Option<&[u8]>, data: &[u8], json: bool) -> Answer {
    match decode_binary(&bin_pub(topic, key, data, json)) {
        Ok(ClientOp::Pub {
            topic, key, data, ..
        }) => Ok((
            topic.as_str().to_string(),
            key.map(Cow::into_owned),
            data.as_bytes().to_vec(),
            data.is_json(),
        )),
        Ok(op) => panic!("not a pub: {op:?}"),
        Err(e) => Err(e.code().as_str()),
    }
}

fn nest(n: usize) -> String {
    format!("{}1{}", "[".repeat(n), "]".repeat(n))
}

fn obj(n: usize) -> String {
    format!("{}1{}", "{\"k\":".repeat(n), "}".repeat(n))
}

#[test]
fn check_pub_answers_exactly_as_a_binary_pub() {
    let long_topic = "t".repeat(MAX_TOPIC_BYTES + 1);
    let long_key = "k".repeat(MAX_KEY_BYTES + 1);
    let max_key = "k".repeat(MAX_KEY_BYTES);
    // Opaque data that makes the smallest pub on topic "a" exactly the limit, and one over.
    let fits = vec![0xab; MAX_ENVELOPE_BYTES - 4];
    let over = vec![0xab; MAX_ENVELOPE_BYTES - 3];
    let cases: Vec<Case<'_>> = vec![
        (b"a", None, b"1".to_vec(), true, Ok(())),
        (
            b"prices.BTC",
            Some(b"BTC"),
            b" {\"px\": 1}\n".to_vec(),
            true,
            Ok(()),
        ),
        (
            b"a",
            Some(max_key.as_bytes()),
            b"null".to_vec(),
            true,
            Ok(()),
        ),
        (b"a", None, b"\xff\x00 not json".to_vec(), false, Ok(())),
        (b"a", None, Vec::new(), false, Ok(())),
        (b"a", None, nest(MAX_DATA_DEPTH).into_bytes(), true, Ok(())),
        (b"a", None, fits.clone(), false, Ok(())),
        (b"a", None, over.clone(), false, Err("too_large")),
        (
            b"a",
            None,
            nest(100_000).into_bytes(),
            true,
            Err("too_large"),
        ),
        // Size comes first: a bad topic on an oversized publish is `too_large`.
        (b"a..b", None, over.clone(), false, Err("too_large")),
        (b"", None, b"1".to_vec(), true, Err("bad_topic")),
        (b"a..b", None, b"1".to_vec(), true, Err("bad_topic")),
        (b"a/b", None, b"1".to_vec(), true, Err("bad_topic")),
        (b"\xff", None, b"1".to_vec(), true, Err("bad_topic")),
        (
            long_topic.as_bytes(),
            None,
            b"1".to_vec(),
            true,
            Err("bad_topic"),
        ),
        // The topic comes before the key, the key before the data.
        (b"a..b", Some(b""), b"{".to_vec(), true, Err("bad_topic")),
        (b"a", Some(b""), b"{".to_vec(), true, Err("bad_field")),
        (
            b"a",
            Some(long_key.as_bytes()),
            b"1".to_vec(),
            true,
            Err("bad_field"),
        ),
        (b"a", Some(b"\xff"), b"1".to_vec(), true, Err("bad_field")),
        (
            b"a",
            None,
            nest(MAX_DATA_DEPTH + 1).into_bytes(),
            true,
            Err("bad_field"),
        ),
        (
            b"a",
            None,
            obj(MAX_DATA_DEPTH + 1).into_bytes(),
            true,
            Err("bad_field"),
        ),
        (
            b"a",
            None,
            nest(30_000).into_bytes(),
            true,
            Err("bad_field"),
        ),
        (b"a", None, Vec::new(), true, Err("bad_json")),
        (b"a", None, b"{".to_vec(), true, Err("bad_json")),
        (b"a", None, b"1 2".to_vec(), true, Err("bad_json")),
        (b"a", None, b"\xff".to_vec(), true, Err("bad_json")),
    ];
    for (topic, key, data, json, want) in cases {
        let got = checked(topic, key, &data, json);
        let ctx = format!(
            "topic {:?} key {key:?} data {}.. ({} bytes) json {json}",
            String::from_utf8_lossy(topic),
            String::from_utf8_lossy(&data[..data.len().min(20)]),
            data.len()
        );
        assert_eq!(got, decoded(topic, key, &data, json), "{ctx}");
        assert_eq!(got.as_ref().map(|_| ()).map_err(|c| *c), want, "{ctx}");
    }
}

#[test]
fn check_pub_keeps_json_data_without_surrounding_whitespace() {
    let p = check_pub(b"a", None, b" \n{\"a\": [1]}\t", true).unwrap();
    assert_eq!(p.data, Payload::Json("{\"a\": [1]}"));
    assert_eq!(p.topic, t("a"));
    let p = check_pub(b"a", Some(b"k"), b" raw ", false).unwrap();
    assert_eq!(p.data, Payload::Bytes(b" raw "));
    assert_eq!(p.key, Some("k"));
}

#[test]
fn check_pub_refuses_what_a_json_pub_refuses_with_the_same_code() {
    // The nesting rule is the JSON decoder's too: the same data in a JSON `pub`.
    for (data, code) in [
        (nest(MAX_DATA_DEPTH + 1), "bad_field"),
        (obj(MAX_DATA_DEPTH + 1), "bad_field"),
        (nest(30_000), "bad_field"),
        (nest(100_000), "too_large"),
    ] {
        let input = format!(r#"{{"op":"pub","topic":"a","data":{data}}}"#);
        assert_eq!(code_of_json(&input), code, "{}", &data[..10]);
        let e = check_pub(b"a", None, data.as_bytes(), true).unwrap_err();
        assert_eq!(e.code().as_str(), code);
    }
}

#[test]
fn pub_len_is_the_encoders_length() {
    for (topic, key, data) in [
        ("a", None, &b""[..]),
        ("prices.BTC", Some("BTC"), b"{\"px\":1}"),
        (
            &*"t".repeat(MAX_TOPIC_BYTES),
            Some(&*"k".repeat(MAX_KEY_BYTES)),
            &[7u8; 300][..],
        ),
    ] {
        let op = ClientOp::Pub {
            topic: t(topic),
            data: Payload::Bytes(data),
            key: key.map(Cow::Borrowed),
            id: None,
        };
        assert_eq!(
            pub_len(topic.len(), key.map(str::len), data.len()),
            op_bin(&op).len()
        );
    }
}

mod props {
    use super::*;
    use proptest::prelude::*;

    fn field() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            "[a-z.:_/-]{0,8}".prop_map(String::into_bytes),
            proptest::collection::vec(any::<u8>(), 0..8),
            (120usize..140).prop_map(|n| vec![b'k'; n]),
        ]
    }

    fn data() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            r#"[ \[\]{}"a:,0-9\\]{0,24}"#.prop_map(String::into_bytes),
            proptest::collection::vec(any::<u8>(), 0..24),
            (60usize..70).prop_map(|n| nest(n).into_bytes()),
        ]
    }

    proptest! {
        #[test]
        fn check_pub_agrees_with_the_binary_decoder(
            topic in field(),
            key in proptest::option::of(field()),
            data in data(),
            json in any::<bool>(),
        ) {
            prop_assert_eq!(
                checked(&topic, key.as_deref(), &data, json),
                decoded(&topic, key.as_deref(), &data, json)
            );
        }
    }
}
