//! Unit tests of the engine without sockets, a runtime or a clock: one engine per worker over
//! fake connections (real send queues) and a real fanout mesh, with the time passed in.
//! Ordering, history and `since` resume, conflation and the slow-consumer policies.

mod budget;
mod fake;

use std::sync::Arc;

use serde_json::{json, Value};

use self::fake::{World, T0};
use super::{owner_of, RateSettings, Settings, Time};
use crate::{
    auth::{Identity, TopicPatterns},
    proto::CloseCode,
    queue::{Offer, SlowPolicy},
};

/// A send bound no test reaches.
const BIG: usize = 1 << 20;
/// A send bound a dozen small messages fill.
const SMALL: usize = 4096;

fn settings() -> Settings {
    Settings {
        history_len: 100,
        history_max_age_ticks: 600,
        history_topic_bytes: usize::MAX,
        history_bytes: usize::MAX,
        max_topics: usize::MAX,
        default_policy: SlowPolicy::Disconnect,
        drop_topics: Vec::new(),
        max_subscriptions: 64,
        rate: RateSettings::default(),
        auth_required: false,
    }
}

/// A topic name that worker `w` of `workers` owns.
fn topic_owned_by(w: usize, workers: usize) -> String {
    (0..)
        .map(|i| format!("t.{i}"))
        .find(|t| owner_of(t, workers) == w)
        .expect("some name hashes to every worker")
}

fn op(v: &Value) -> &str {
    v["op"].as_str().expect("every server message has an op")
}

/// The seqs of the `msg`s among `frames`, checking each is on `topic`.
fn msg_seqs(frames: &[Value], topic: &str) -> Vec<u64> {
    frames
        .iter()
        .filter(|f| op(f) == "msg")
        .map(|f| {
            assert_eq!(f["topic"], topic);
            f["seq"].as_u64().expect("a seq")
        })
        .collect()
}

fn pub_json(topic: &str, data: u64) -> String {
    format!(r#"{{"op":"pub","topic":"{topic}","data":{data}}}"#)
}

fn pub_keyed(topic: &str, data: u64, key: &str) -> String {
    format!(r#"{{"op":"pub","topic":"{topic}","data":{data},"key":"{key}"}}"#)
}

#[test]
fn seq_is_contiguous_across_publishers_and_ts_is_the_time_passed_in() {
    let mut w = World::new(1, settings(), BIG);
    let (s, p1, p2) = (w.open(0), w.open(0), w.open(0));
    w.send(0, s, r#"{"op":"sub","topic":"a.b","id":1}"#);
    assert_eq!(
        w.take(0, s),
        [json!({"op":"subbed","topic":"a.b","seq":0,"id":1})]
    );
    for i in 0..10u64 {
        w.now = Time::from_unix_us(T0 + 1000 * i);
        let p = if i % 3 == 0 { p1 } else { p2 };
        let text = format!(r#"{{"op":"pub","topic":"a.b","data":{i},"id":{i}}}"#);
        w.send(0, p, &text);
        assert_eq!(w.take(0, p), [json!({"op":"ack","id":i,"seq":i + 1})]);
    }
    let want: Vec<Value> = (0..10u64)
        .map(|i| json!({"op":"msg","topic":"a.b","seq":i + 1,"ts":T0 + 1000 * i,"data":i}))
        .collect();
    assert_eq!(w.take(0, s), want);
}

#[test]
fn every_worker_sees_the_owners_order() {
    let topic = topic_owned_by(1, 2);
    let mut w = World::new(2, settings(), BIG);
    let (s0, s1) = (w.open(0), w.open(1));
    let (p0, p1) = (w.open(0), w.open(1));
    let sub = format!(r#"{{"op":"sub","topic":"{topic}"}}"#);
    w.send(0, s0, &sub);
    w.send(1, s1, &sub);
    for s in [(0, s0), (1, s1)] {
        assert_eq!(
            w.take(s.0, s.1),
            [json!({"op":"subbed","topic":topic,"seq":0})]
        );
    }
    for i in 0..20u64 {
        w.now = Time::from_unix_us(T0 + i);
        let (worker, p) = if i % 2 == 0 { (0, p0) } else { (1, p1) };
        let text = format!(r#"{{"op":"pub","topic":"{topic}","data":{i},"id":"p{i}"}}"#);
        w.send(worker, p, &text);
        // The ack of a remote publish comes back through the mesh.
        assert_eq!(
            w.take(worker, p),
            [json!({"op":"ack","id":format!("p{i}"),"seq":i + 1})]
        );
    }
    let (a, b) = (w.take(0, s0), w.take(1, s1));
    assert_eq!(
        a, b,
        "the remote subscriber gets the owner's frames as they are"
    );
    assert_eq!(msg_seqs(&a, &topic), (1..=20).collect::<Vec<_>>());
    for (i, m) in a.iter().enumerate() {
        assert_eq!(m["data"], i as u64, "publish order");
        assert_eq!(m["ts"], T0 + i as u64, "the owner's stamp");
    }
    assert_eq!(
        w.nodes[1].stats.published.get(),
        20,
        "the owner published all"
    );
    assert_eq!(w.nodes[0].stats.published.get(), 0);
}

#[test]
fn resume_replays_exactly_what_was_missed_on_any_worker() {
    let topic = topic_owned_by(0, 2);
    let mut w = World::new(2, settings(), BIG);
    let p = w.open(0);
    for i in 1..=5 {
        w.send(0, p, &pub_json(&topic, i));
    }
    for worker in [0, 1] {
        // Exactly the messages after `since`, then live ones; `subbed` carries the seq at
        // which the replay ends.
        let s = w.open(worker);
        w.send(
            worker,
            s,
            &format!(r#"{{"op":"sub","topic":"{topic}","since":2}}"#),
        );
        let got = w.take(worker, s);
        assert_eq!(got[0], json!({"op":"subbed","topic":topic,"seq":5}));
        assert_eq!(msg_seqs(&got[1..], &topic), [3, 4, 5]);
        assert_eq!(got[1]["data"], 3);
        // Up to date: nothing to replay.
        let u = w.open(worker);
        w.send(
            worker,
            u,
            &format!(r#"{{"op":"sub","topic":"{topic}","since":5}}"#),
        );
        assert_eq!(
            w.take(worker, u),
            [json!({"op":"subbed","topic":topic,"seq":5})]
        );
        // `since: 0` with the whole history kept replays it all.
        let z = w.open(worker);
        w.send(
            worker,
            z,
            &format!(r#"{{"op":"sub","topic":"{topic}","since":0}}"#),
        );
        assert_eq!(msg_seqs(&w.take(worker, z)[1..], &topic), [1, 2, 3, 4, 5]);
        w.close(worker, s);
        w.close(worker, u);
        w.close(worker, z);
    }
    let s = w.open(1);
    w.send(
        1,
        s,
        &format!(r#"{{"op":"sub","topic":"{topic}","since":5}}"#),
    );
    w.send(0, p, &pub_json(&topic, 6));
    let got = w.take(1, s);
    assert_eq!(msg_seqs(&got, &topic), [6], "live after the replay");
    // Replays are counted where the subscriber is.
    for n in &w.nodes {
        assert_eq!(n.stats.replayed.get(), 3 + 5);
    }
}

#[test]
fn resume_beyond_history_or_ahead_of_the_topic_gets_reset() {
    let set = Settings {
        history_len: 3,
        ..settings()
    };
    let mut w = World::new(1, set, BIG);
    let p = w.open(0);
    for i in 1..=10 {
        w.send(0, p, &pub_json("h", i));
    }
    let sub = |w: &mut World, since: u64| {
        let s = w.open(0);
        w.send(
            0,
            s,
            &format!(r#"{{"op":"sub","topic":"h","since":{since}}}"#),
        );
        w.take(0, s)
    };
    // 8, 9 and 10 are kept: a resume from 7 is served, from 6 it is not (7 is lost).
    assert_eq!(msg_seqs(&sub(&mut w, 7)[1..], "h"), [8, 9, 10]);
    let reset = [
        json!({"op":"subbed","topic":"h","seq":10}),
        json!({"op":"reset","topic":"h","seq":10}),
    ];
    assert_eq!(sub(&mut w, 6), reset);
    assert_eq!(sub(&mut w, 0), reset);
    assert_eq!(sub(&mut w, 11), reset, "a since ahead of the topic");
    assert_eq!(w.nodes[0].stats.resets.get(), 3);
}

#[test]
fn history_ages_out_with_the_ticks() {
    let set = Settings {
        history_max_age_ticks: 5,
        ..settings()
    };
    let mut w = World::new(1, set, BIG);
    let (p, keep) = (w.open(0), w.open(0));
    // A live subscriber keeps the topic in the table while its history ages.
    w.send(0, keep, r#"{"op":"sub","topic":"h"}"#);
    w.send(0, p, &pub_json("h", 1)); // tick 0
    w.tick(3);
    w.send(0, p, &pub_json("h", 2)); // tick 3
    w.tick(4); // tick 7: seq 1 is 7 ticks old (> 5), seq 2 is 4
    let s = w.open(0);
    w.send(0, s, r#"{"op":"sub","topic":"h","since":1}"#);
    assert_eq!(msg_seqs(&w.take(0, s)[1..], "h"), [2]);
    let s = w.open(0);
    w.send(0, s, r#"{"op":"sub","topic":"h","since":0}"#);
    assert_eq!(op(&w.take(0, s)[1]), "reset", "seq 1 aged out");
    w.tick(2); // tick 9: seq 2 is 6 ticks old
    let s = w.open(0);
    w.send(0, s, r#"{"op":"sub","topic":"h","since":1}"#);
    assert_eq!(
        w.take(0, s),
        [
            json!({"op":"subbed","topic":"h","seq":2}),
            json!({"op":"reset","topic":"h","seq":2})
        ]
    );
}

#[test]
fn a_slow_subscriber_keeps_the_latest_value_of_each_key() {
    let mut w = World::new(1, settings(), SMALL);
    let (slow, fast, p) = (w.open(0), w.open(0), w.open(0));
    w.send(0, slow, r#"{"op":"sub","topic":"px"}"#);
    w.send(0, fast, r#"{"op":"sub","topic":"px"}"#);
    w.take(0, slow);
    let mut fast_got = Vec::new();
    for i in 1..=200 {
        let key = if i % 2 == 0 { "BTC" } else { "ETH" };
        w.send(0, p, &pub_keyed("px", i, key));
        fast_got.extend(w.take(0, fast));
    }
    assert_eq!(msg_seqs(&fast_got, "px"), (1..=200).collect::<Vec<_>>());
    assert_eq!(
        w.nodes[0].conns.closed(slow),
        None,
        "conflation, not disconnect"
    );
    assert!(w.nodes[0].conns.queued(slow) <= SMALL);
    assert!(w.nodes[0].conns.offers.contains(&Offer::Conflated));
    let got = w.take(0, slow);
    let seqs = msg_seqs(&got, "px");
    assert!(seqs.len() < 40, "older values were replaced: {seqs:?}");
    assert!(
        seqs.windows(2).all(|p| p[0] < p[1]),
        "never backwards: {seqs:?}"
    );
    assert_eq!(seqs[seqs.len() - 2..], [199, 200], "the latest of each key");
    // History keeps every message, but a replay goes through the same bound: a resume of
    // 100 keyed messages into a small queue conflates the same way.
    let r = w.open(0);
    w.send(0, r, r#"{"op":"sub","topic":"px","since":100}"#);
    assert_eq!(w.nodes[0].conns.closed(r), None);
    let seqs = msg_seqs(&w.take(0, r), "px");
    assert!(seqs.len() < 40, "{seqs:?}");
    assert!(seqs.windows(2).all(|p| p[0] < p[1]), "{seqs:?}");
    assert_eq!(seqs[0], 101);
    assert_eq!(seqs[seqs.len() - 2..], [199, 200]);
}

#[test]
fn a_slow_subscriber_is_disconnected_by_default() {
    let mut w = World::new(1, settings(), SMALL);
    let (slow, fast, p) = (w.open(0), w.open(0), w.open(0));
    w.send(0, slow, r#"{"op":"sub","topic":"t"}"#);
    w.send(0, fast, r#"{"op":"sub","topic":"t"}"#);
    w.take(0, fast);
    let mut sent = 0;
    while w.nodes[0].conns.closed(slow).is_none() {
        sent += 1;
        assert!(sent < 100, "the bound is reached");
        w.send(0, p, &pub_json("t", sent));
        assert_eq!(msg_seqs(&w.take(0, fast), "t"), [sent]);
    }
    assert_eq!(
        w.nodes[0].conns.closed(slow),
        Some((CloseCode::POLICY, "slow consumer".into()))
    );
    let offers = &w.nodes[0].conns.offers;
    assert_eq!(
        offers.iter().filter(|&&o| o == Offer::Disconnect).count(),
        1
    );
    assert!(w.take(0, slow).is_empty(), "queued data is discarded");
    // The server then reports the close; the subscription goes, the others go on.
    assert_eq!(w.nodes[0].stats.subscriptions.get(), 2);
    w.close(0, slow);
    assert_eq!(w.nodes[0].stats.subscriptions.get(), 1);
    w.send(0, p, &pub_json("t", 0));
    assert_eq!(msg_seqs(&w.take(0, fast), "t"), [sent + 1]);
}

#[test]
fn drop_topics_drop_for_a_slow_subscriber_and_leave_a_gap() {
    let set = Settings {
        drop_topics: vec![("md.".into(), true), ("exact".into(), false)],
        ..settings()
    };
    assert_eq!(set.policy_for("md.x"), SlowPolicy::Drop);
    assert_eq!(set.policy_for("exact"), SlowPolicy::Drop);
    assert_eq!(set.policy_for("exact.no"), SlowPolicy::Disconnect);
    let mut w = World::new(1, set, SMALL);
    let (slow, p) = (w.open(0), w.open(0));
    w.send(0, slow, r#"{"op":"sub","topic":"md.x"}"#);
    w.take(0, slow);
    for i in 1..=50 {
        w.send(0, p, &pub_json("md.x", i));
    }
    assert_eq!(w.nodes[0].conns.closed(slow), None);
    assert!(w.nodes[0].conns.offers.contains(&Offer::Dropped));
    let first = msg_seqs(&w.take(0, slow), "md.x");
    assert_eq!(first[0], 1);
    assert!(
        first.windows(2).all(|p| p[1] == p[0] + 1),
        "a prefix, then drops"
    );
    assert!(first.len() < 50);
    // Once the queue drains, messages flow again: the client sees the gap in seq.
    w.send(0, p, &pub_json("md.x", 51));
    assert_eq!(msg_seqs(&w.take(0, slow), "md.x"), [51]);
}

/// Documents current behaviour (not a protocol guarantee to rely on): an owned topic with no
/// subscriber and no history left is dropped from the table at the next sweep, and its seq
/// starts again from 1. A client resuming with its old `since` then gets `reset` with a seq
/// lower than its own.
#[test]
fn an_idle_topic_is_forgotten_and_its_seq_restarts() {
    let set = Settings {
        history_max_age_ticks: 5,
        ..settings()
    };
    let mut w = World::new(1, set, BIG);
    let p = w.open(0);
    for i in 1..=3 {
        w.send(
            0,
            p,
            &format!(r#"{{"op":"pub","topic":"idle","data":{i},"id":{i}}}"#),
        );
    }
    assert_eq!(w.take(0, p)[2], json!({"op":"ack","id":3,"seq":3}));
    w.tick(9);
    w.send(0, p, r#"{"op":"pub","topic":"idle","data":4,"id":4}"#);
    assert_eq!(
        w.take(0, p),
        [json!({"op":"ack","id":4,"seq":4})],
        "history still held at tick 9: the topic stays"
    );
    w.tick(20); // sweeps at ticks 10, 20 and 30; the history expires in between
    assert_eq!(w.nodes[0].stats.topics.get(), 0, "the topic was released");
    w.send(0, p, r#"{"op":"pub","topic":"idle","data":5,"id":5}"#);
    assert_eq!(w.take(0, p), [json!({"op":"ack","id":5,"seq":1})]);
    let s = w.open(0);
    w.send(0, s, r#"{"op":"sub","topic":"idle","since":4}"#);
    assert_eq!(
        w.take(0, s),
        [
            json!({"op":"subbed","topic":"idle","seq":1}),
            json!({"op":"reset","topic":"idle","seq":1})
        ]
    );
}

#[test]
fn a_token_expires_at_the_time_passed_in() {
    let exp = T0 / 1_000_000 + 1;
    let identity = Identity {
        user: "u".into(),
        exp: Some(exp),
        subscribe: TopicPatterns::new(["a.*"]),
        publish: TopicPatterns::new(["a.*"]),
    };
    let mut w = World::new(1, settings(), BIG);
    let c = w.open_with(0, Some(Arc::new(identity)));
    w.tick(9); // T0 + 0.9 s
    assert_eq!(w.nodes[0].conns.closed(c), None);
    w.tick(1); // T0 + 1 s: exp
    assert_eq!(
        w.nodes[0].conns.closed(c),
        Some((CloseCode::POLICY, "token expired".into()))
    );
    assert_eq!(w.nodes[0].stats.closed_token_expired.get(), 1);
}

#[test]
fn publish_to_write_latency_is_measured_against_the_time_passed_in() {
    let mut w = World::new(1, settings(), BIG);
    let (s, p) = (w.open(0), w.open(0));
    w.send(0, s, r#"{"op":"sub","topic":"l"}"#);
    w.send(0, p, &pub_json("l", 1));
    let e = &mut w.nodes[0].engine;
    assert!(e.has_written());
    e.record_latency(Time::from_unix_us(T0 + 250));
    assert!(!e.has_written());
    let snap = w.nodes[0].stats.latency.snapshot();
    assert_eq!(snap.buckets.iter().sum::<u64>(), 1);
    assert_eq!(snap.sum_us, 250, "the stamp was T0, written at T0 + 250 µs");
}

#[test]
fn requests_behind_a_pending_remote_subscription_run_in_order() {
    let topic = topic_owned_by(1, 2);
    let mut w = World::new(2, settings(), BIG);
    let (c, p) = (w.open(0), w.open(1));
    let sub = format!(r#"{{"op":"sub","topic":"{topic}","id":1}}"#);
    let unsub = format!(r#"{{"op":"unsub","topic":"{topic}","id":2}}"#);
    let sub_again = format!(r#"{{"op":"sub","topic":"{topic}","id":3}}"#);
    // All three before the owner answers the first.
    w.send_unsettled(0, c, &sub);
    w.send_unsettled(0, c, &unsub);
    w.send_unsettled(0, c, &sub_again);
    assert!(w.take(0, c).is_empty(), "nothing until the owner answers");
    w.settle();
    assert_eq!(
        w.take(0, c),
        [
            json!({"op":"subbed","topic":topic,"seq":0,"id":1}),
            json!({"op":"unsubbed","topic":topic,"id":2}),
            json!({"op":"subbed","topic":topic,"seq":0,"id":3}),
        ]
    );
    w.send(1, p, &pub_json(&topic, 7));
    assert_eq!(
        msg_seqs(&w.take(0, c), &topic),
        [1],
        "subscribed in the end"
    );
    assert_eq!(w.nodes[0].stats.subscriptions.get(), 1);
    // Closing while a subscription is pending: the owner's answer finds it gone.
    let d = w.open(0);
    w.send_unsettled(0, d, &sub);
    w.close(0, d);
    w.send(1, p, &pub_json(&topic, 8));
    assert_eq!(msg_seqs(&w.take(0, c), &topic), [2]);
    assert_eq!(w.nodes[0].stats.subscriptions.get(), 1);
}

#[test]
fn refused_messages_strike_until_the_connection_is_closed() {
    let mut w = World::new(1, settings(), BIG);
    let c = w.open(0);
    for i in 1..super::MAX_STRIKES {
        w.send(0, c, r#"{"op":"sub","topic":"bad..name","id":1}"#);
        let got = w.take(0, c);
        assert_eq!(got.len(), 1);
        assert_eq!(
            (op(&got[0]), &got[0]["code"]),
            ("err", &json!("bad_topic")),
            "{i}"
        );
    }
    // Strikes older than the window are forgotten.
    w.tick(super::STRIKE_WINDOW_TICKS + 1);
    w.send(0, c, "not json");
    assert_eq!(w.nodes[0].conns.closed(c), None);
    for _ in 1..super::MAX_STRIKES {
        w.send(0, c, "not json");
    }
    assert_eq!(
        w.nodes[0].conns.closed(c),
        Some((CloseCode::POLICY, "too many errors".into()))
    );
    assert_eq!(w.nodes[0].stats.error_closes.get(), 1);
}
