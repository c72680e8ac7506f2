//! corecast's pub/sub protocol, JSON encoding (`corecast.v1.json`, see `docs/protocol.md`):
//! the client messages the generator sends (`sub`, `pub`) and a parser for the server's.
//!
//! The parser has a fast path for `msg` written the way the server writes it
//! (`{"op":"msg","topic":..,"seq":..,"ts":..,"data":{"t":..` ...), which reads the numbers
//! without building a JSON tree; anything else (another field order, whitespace, other ops)
//! goes through serde_json. Both give the same answer.

use std::borrow::Cow;

use serde_json::Value;

/// The subprotocol of the JSON encoding.
pub const SUBPROTOCOL: &str = "corecast.v1.json";

/// Length of a data value with an empty pad: `{"t":<16 digits>,"pad":""}`.
pub const DATA_OVERHEAD: usize = 31;

/// Appends the decimal digits of `v`.
#[inline]
pub fn push_u64(out: &mut Vec<u8>, mut v: u64) {
    let mut tmp = [0u8; 20];
    let mut i = tmp.len();
    loop {
        i -= 1;
        tmp[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    out.extend_from_slice(&tmp[i..]);
}

/// `{"op":"sub","topic":"<topic>","id":"<id>"}`.
pub fn encode_sub(out: &mut Vec<u8>, topic: &str, id: u64) {
    out.extend_from_slice(b"{\"op\":\"sub\",\"topic\":\"");
    out.extend_from_slice(topic.as_bytes());
    out.extend_from_slice(b"\",\"id\":\"");
    push_u64(out, id);
    out.extend_from_slice(b"\"}");
}

/// `{"op":"pub","topic":"<topic>","data":{"t":<t_us>,"pad":"<pad>"}[,"key":"k<key>"]}`.
/// `pad` must be JSON-safe (the generator uses `x`s).
pub fn encode_pub(out: &mut Vec<u8>, topic: &str, t_us: u64, pad: &[u8], key: Option<u64>) {
    out.extend_from_slice(b"{\"op\":\"pub\",\"topic\":\"");
    out.extend_from_slice(topic.as_bytes());
    out.extend_from_slice(b"\",\"data\":{\"t\":");
    push_u64(out, t_us);
    out.extend_from_slice(b",\"pad\":\"");
    out.extend_from_slice(pad);
    out.extend_from_slice(b"\"}");
    if let Some(k) = key {
        out.extend_from_slice(b",\"key\":\"k");
        push_u64(out, k);
        out.push(b'"');
    }
    out.push(b'}');
}

/// A message from the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerMsg<'a> {
    /// A published message.
    Msg {
        /// Its topic.
        topic: Cow<'a, str>,
        /// Its sequence number in the topic.
        seq: u64,
        /// When the server accepted it (µs since the epoch).
        ts: u64,
        /// The `t` inside its data (the publisher's send time, µs since the epoch), if any.
        t_us: Option<u64>,
    },
    /// A subscription is active.
    Subbed {
        /// The topic.
        topic: Cow<'a, str>,
        /// The topic's current sequence number.
        seq: u64,
        /// The request id, as text.
        id: Option<String>,
    },
    /// The stream of a topic starts afresh after `seq`.
    Reset {
        /// The topic.
        topic: Cow<'a, str>,
        /// The topic's current sequence number.
        seq: u64,
    },
    /// A request failed.
    Err {
        /// The stable error code.
        code: String,
        /// The request id, as text.
        id: Option<String>,
    },
    /// A publish was accepted.
    Ack {
        /// The sequence number it got.
        seq: u64,
    },
    /// A subscription ended.
    Unsubbed,
    /// A message with another op (ignored, as the protocol asks).
    Other(String),
}

/// Why a server message could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ParseError {
    /// Not a JSON object.
    #[error("not a JSON object: {0}")]
    Json(String),
    /// `op` is missing or not a string.
    #[error("no op")]
    NoOp,
    /// A required field is missing or has the wrong type.
    #[error("{op}: field {field} missing or of the wrong type")]
    Field {
        /// The op.
        op: &'static str,
        /// The field.
        field: &'static str,
    },
}

/// Reads a run of ASCII digits at the start of `b`: (value, digits used).
#[inline]
fn digits(b: &[u8]) -> Option<(u64, usize)> {
    let mut v: u64 = 0;
    let mut n = 0;
    for &c in b {
        if !c.is_ascii_digit() {
            break;
        }
        v = v.checked_mul(10)?.checked_add((c - b'0') as u64)?;
        n += 1;
    }
    (n > 0).then_some((v, n))
}

/// The fast path: a `msg` exactly as the server writes it. None means "use the slow path".
#[inline]
fn fast_msg(b: &[u8]) -> Option<ServerMsg<'_>> {
    let rest = b.strip_prefix(b"{\"op\":\"msg\",\"topic\":\"")?;
    let q = rest.iter().position(|&c| c == b'"' || c == b'\\')?;
    if rest[q] != b'"' {
        return None;
    }
    let topic = std::str::from_utf8(&rest[..q]).ok()?;
    let rest = rest[q + 1..].strip_prefix(b",\"seq\":")?;
    let (seq, n) = digits(rest)?;
    let rest = rest[n..].strip_prefix(b",\"ts\":")?;
    let (ts, n) = digits(rest)?;
    let rest = &rest[n..];
    let t_us = match rest.strip_prefix(b",\"data\":{\"t\":") {
        Some(r) => {
            let (t, n) = digits(r)?;
            // The number must end there, not be the start of a float or such.
            match r.get(n) {
                Some(b',') | Some(b'}') => Some(t),
                _ => return None,
            }
        }
        None => return None,
    };
    Some(ServerMsg::Msg {
        topic: Cow::Borrowed(topic),
        seq,
        ts,
        t_us,
    })
}

fn id_text(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Parses one server message (the payload of one text frame).
pub fn parse(b: &[u8]) -> Result<ServerMsg<'_>, ParseError> {
    if let Some(m) = fast_msg(b) {
        return Ok(m);
    }
    let v: Value = serde_json::from_slice(b).map_err(|e| ParseError::Json(e.to_string()))?;
    let Value::Object(o) = v else {
        return Err(ParseError::Json("not an object".into()));
    };
    let op = o
        .get("op")
        .and_then(Value::as_str)
        .ok_or(ParseError::NoOp)?;
    let field = |op: &'static str, field: &'static str| ParseError::Field { op, field };
    let u = |op: &'static str, name: &'static str| {
        o.get(name).and_then(Value::as_u64).ok_or(field(op, name))
    };
    let topic = |op: &'static str| {
        o.get("topic")
            .and_then(Value::as_str)
            .map(|s| Cow::Owned(s.to_string()))
            .ok_or(field(op, "topic"))
    };
    Ok(match op {
        "msg" => ServerMsg::Msg {
            topic: topic("msg")?,
            seq: u("msg", "seq")?,
            ts: u("msg", "ts")?,
            t_us: o
                .get("data")
                .and_then(|d| d.get("t"))
                .and_then(Value::as_u64),
        },
        "subbed" => ServerMsg::Subbed {
            topic: topic("subbed")?,
            seq: u("subbed", "seq")?,
            id: id_text(o.get("id")),
        },
        "reset" => ServerMsg::Reset {
            topic: topic("reset")?,
            seq: u("reset", "seq")?,
        },
        "err" => ServerMsg::Err {
            code: o
                .get("code")
                .and_then(Value::as_str)
                .ok_or(field("err", "code"))?
                .to_string(),
            id: id_text(o.get("id")),
        },
        "ack" => ServerMsg::Ack {
            seq: u("ack", "seq")?,
        },
        "unsubbed" => ServerMsg::Unsubbed,
        other => ServerMsg::Other(other.to_string()),
    })
}

/// What one subscriber has seen of its topic's sequence numbers.
///
/// Gaps are counted as numbers missing below the highest `seq` seen, so messages that arrive
/// out of order (a conflated topic lets a newer key overtake an older one) fill their hole
/// instead of counting twice.
#[derive(Debug, Default, Clone)]
pub struct SeqTrack {
    base: u64,
    max: u64,
    got: u64,
    closed_gaps: u64,
    /// Times `seq` jumped ahead by more than one.
    pub jumps: u64,
    /// Messages that arrived below the highest `seq` seen.
    pub reorders: u64,
    /// `reset` messages.
    pub resets: u64,
    /// Messages at or below the subscription's starting point (duplicates, replays).
    pub stale: u64,
}

impl SeqTrack {
    /// Starts (or restarts) at `seq`, the topic's number when subscribed.
    pub fn start(&mut self, seq: u64) {
        self.closed_gaps = self.gaps();
        self.base = seq;
        self.max = seq;
        self.got = 0;
    }

    /// A `reset` to `seq`.
    pub fn reset(&mut self, seq: u64) {
        self.resets += 1;
        self.start(seq);
    }

    /// A message with `seq`.
    #[inline]
    pub fn saw(&mut self, seq: u64) {
        if seq <= self.base {
            self.stale += 1;
        } else if seq > self.max {
            if seq > self.max + 1 {
                self.jumps += 1;
            }
            self.max = seq;
            self.got += 1;
        } else {
            self.reorders += 1;
            self.got += 1;
        }
    }

    /// Messages lost to this subscriber so far (dropped or conflated by the server).
    pub fn gaps(&self) -> u64 {
        self.closed_gaps + (self.max - self.base).saturating_sub(self.got)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_match_the_protocol() {
        let mut b = Vec::new();
        encode_sub(&mut b, "bench.3", 1);
        assert_eq!(
            std::str::from_utf8(&b).unwrap(),
            r#"{"op":"sub","topic":"bench.3","id":"1"}"#
        );
        b.clear();
        encode_pub(&mut b, "bench.3", 1_700_000_000_000_000, b"xxx", None);
        assert_eq!(
            std::str::from_utf8(&b).unwrap(),
            r#"{"op":"pub","topic":"bench.3","data":{"t":1700000000000000,"pad":"xxx"}}"#
        );
        let v: Value = serde_json::from_slice(&b).unwrap();
        assert_eq!(v["data"]["t"].as_u64(), Some(1_700_000_000_000_000));
        b.clear();
        encode_pub(&mut b, "a", 1_700_000_000_000_000, b"", Some(4));
        let v: Value = serde_json::from_slice(&b).unwrap();
        assert_eq!(v["key"], "k4");
        assert_eq!(
            serde_json::to_vec(&v["data"]).unwrap().len(),
            DATA_OVERHEAD,
            "data overhead with an empty pad"
        );
    }

    #[test]
    fn push_u64_edges() {
        for v in [0u64, 7, 10, 99, 100, u64::MAX] {
            let mut b = Vec::new();
            push_u64(&mut b, v);
            assert_eq!(String::from_utf8(b).unwrap(), v.to_string());
        }
    }

    #[test]
    fn fast_and_slow_paths_agree() {
        let canonical = br#"{"op":"msg","topic":"bench.3","seq":43,"ts":1700000000000001,"data":{"t":1700000000000000,"pad":"xx"}}"#;
        let reordered = br#"{ "seq":43, "op":"msg", "data": {"pad":"xx","t":1700000000000000}, "ts":1700000000000001, "topic":"bench.3" }"#;
        assert!(fast_msg(canonical).is_some());
        assert!(fast_msg(reordered).is_none());
        let want = ServerMsg::Msg {
            topic: "bench.3".into(),
            seq: 43,
            ts: 1_700_000_000_000_001,
            t_us: Some(1_700_000_000_000_000),
        };
        assert_eq!(parse(canonical).unwrap(), want);
        assert_eq!(parse(reordered).unwrap(), want);
    }

    #[test]
    fn msg_without_t_and_with_b64() {
        let m = parse(br#"{"op":"msg","topic":"prices.BTC","seq":43,"ts":1700000000000000,"data":{"px":64000.5}}"#).unwrap();
        assert!(matches!(
            m,
            ServerMsg::Msg {
                seq: 43,
                t_us: None,
                ..
            }
        ));
        let m = parse(br#"{"op":"msg","topic":"prices.BTC","seq":44,"ts":1700000000000001,"data_b64":"3q2+7w=="}"#).unwrap();
        assert!(matches!(
            m,
            ServerMsg::Msg {
                seq: 44,
                t_us: None,
                ..
            }
        ));
        // A float t is not ours: no t.
        let m = parse(br#"{"op":"msg","topic":"a","seq":1,"ts":2,"data":{"t":1.5}}"#).unwrap();
        assert!(matches!(m, ServerMsg::Msg { t_us: None, .. }));
    }

    #[test]
    fn control_messages() {
        assert_eq!(
            parse(br#"{"op":"subbed","topic":"prices.BTC","seq":42,"id":"1"}"#).unwrap(),
            ServerMsg::Subbed {
                topic: "prices.BTC".into(),
                seq: 42,
                id: Some("1".into())
            }
        );
        assert_eq!(
            parse(br#"{"op":"subbed","topic":"a","seq":0,"id":7}"#).unwrap(),
            ServerMsg::Subbed {
                topic: "a".into(),
                seq: 0,
                id: Some("7".into())
            }
        );
        assert_eq!(
            parse(br#"{"op":"reset","topic":"prices.BTC","seq":40}"#).unwrap(),
            ServerMsg::Reset {
                topic: "prices.BTC".into(),
                seq: 40
            }
        );
        assert_eq!(
            parse(br#"{"op":"err","id":"4","code":"bad_topic","msg":"x"}"#).unwrap(),
            ServerMsg::Err {
                code: "bad_topic".into(),
                id: Some("4".into())
            }
        );
        assert_eq!(
            parse(br#"{"op":"ack","id":"3","seq":44}"#).unwrap(),
            ServerMsg::Ack { seq: 44 }
        );
        assert_eq!(
            parse(br#"{"op":"unsubbed","topic":"a"}"#).unwrap(),
            ServerMsg::Unsubbed
        );
        assert_eq!(
            parse(br#"{"op":"future","x":1}"#).unwrap(),
            ServerMsg::Other("future".into())
        );
        assert_eq!(
            parse(b"[1]").unwrap_err(),
            ParseError::Json("not an object".into())
        );
        assert!(matches!(
            parse(b"{\"op\":\"msg\"}"),
            Err(ParseError::Field { .. })
        ));
        assert!(matches!(
            parse(b"{\"op\":\"msg\",\"topic\":\"a\",\"seq\":"),
            Err(ParseError::Json(_))
        ));
    }

    #[test]
    fn seq_tracking_counts_gaps_once() {
        let mut s = SeqTrack::default();
        s.start(10);
        for q in [11, 12, 15, 13, 16] {
            s.saw(q);
        }
        // 14 is missing; 13 came late and filled its hole.
        assert_eq!(s.gaps(), 1);
        assert_eq!((s.jumps, s.reorders), (1, 1));
        s.saw(9);
        assert_eq!(s.stale, 1);
        s.reset(100);
        s.saw(103);
        assert_eq!(s.gaps(), 3);
        assert_eq!(s.resets, 1);
    }
}
