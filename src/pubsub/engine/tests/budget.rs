//! History byte budgets (per topic, and a worker's share of the process budget, oldest
//! first across topics) and the topic cap (`too_many_topics`).

use serde_json::{json, Value};

use super::{msg_seqs, op, settings, topic_owned_by, World, BIG, T0};
use crate::pubsub::{engine::Settings, history::Entry, wire::Payload, TopicName};

/// A JSON string of about 10 KB, different per `i`, so that entries cost about the same.
fn big(i: u64) -> String {
    format!("\"{i:05}{}\"", "x".repeat(10_000))
}

fn pub_big(topic: &str, i: u64) -> String {
    format!(r#"{{"op":"pub","topic":"{topic}","data":{}}}"#, big(i))
}

/// What one [`big`] message to a one-letter topic is charged (seq and ts of up to 2 and 16
/// digits; later seqs differ by a few bytes, covered by the slack of the budgets below).
fn cost() -> usize {
    let t = TopicName::new("h").unwrap();
    Entry::charge(t, 1, T0, Payload::Json(&big(1)))
}

fn resume(w: &mut World, topic: &str, since: u64) -> Vec<Value> {
    let s = w.open(0);
    w.send(
        0,
        s,
        &format!(r#"{{"op":"sub","topic":"{topic}","since":{since}}}"#),
    );
    w.take(0, s)
}

#[test]
fn a_topics_history_keeps_to_its_bytes_oldest_first() {
    let budget = 3 * cost() + 100;
    let set = Settings {
        history_topic_bytes: budget,
        ..settings()
    };
    let mut w = World::new(1, set, BIG);
    let p = w.open(0);
    for i in 1..=10 {
        w.send(0, p, &pub_big("h", i));
        let held = w.nodes[0].stats.history_bytes.get() as usize;
        assert!(held <= budget, "{held} > {budget}");
    }
    // 8, 9 and 10 fit; 7 was evicted for bytes (the count, 100, would have kept it).
    assert_eq!(msg_seqs(&resume(&mut w, "h", 7)[1..], "h"), [8, 9, 10]);
    assert_eq!(op(&resume(&mut w, "h", 6)[1]), "reset");
    assert_eq!(w.nodes[0].stats.history_evicted.get(), 7);
    assert!(w.nodes[0].stats.history_bytes.get() as usize >= 3 * cost());
}

#[test]
fn the_workers_budget_evicts_the_oldest_entries_of_any_topic() {
    let budget = 3 * cost() + 100;
    let set = Settings {
        history_bytes: budget,
        ..settings()
    };
    let mut w = World::new(1, set, BIG);
    let p = w.open(0);
    // Oldest first: a1, b1, c1, a2, d1. The fourth evicts a1, the fifth b1.
    for (t, i) in [("a", 1), ("b", 2), ("c", 3), ("a", 4), ("d", 5)] {
        w.send(0, p, &pub_big(t, i));
        let held = w.nodes[0].stats.history_bytes.get() as usize;
        assert!(held <= budget, "{held} > {budget}");
    }
    assert_eq!(w.nodes[0].stats.history_evicted.get(), 2);
    assert_eq!(op(&resume(&mut w, "a", 0)[1]), "reset", "a1 was evicted");
    assert_eq!(msg_seqs(&resume(&mut w, "a", 1)[1..], "a"), [2]);
    assert_eq!(
        resume(&mut w, "b", 0),
        [
            json!({"op":"subbed","topic":"b","seq":1}),
            json!({"op":"reset","topic":"b","seq":1})
        ]
    );
    assert_eq!(msg_seqs(&resume(&mut w, "c", 0)[1..], "c"), [1]);
    assert_eq!(msg_seqs(&resume(&mut w, "d", 0)[1..], "d"), [1]);
    // Entries that leave by age give their bytes back, and the records of the evicted ones
    // do not pile up: a long run on one topic stays within the budget.
    for i in 0..200 {
        w.send(0, p, &pub_big("e", i));
    }
    assert!(w.nodes[0].stats.history_bytes.get() as usize <= budget);
    assert!(w.nodes[0].engine.history.order.len() <= 2 * 3 + 64 + 1);
    w.tick(700);
    assert_eq!(w.nodes[0].stats.history_bytes.get(), 0, "all aged out");
}

#[test]
fn the_process_budget_is_split_over_the_workers() {
    let budget = 4 * cost() + 100;
    let set = Settings {
        history_bytes: budget,
        ..settings()
    };
    let mut w = World::new(2, set, BIG);
    let t = topic_owned_by(1, 2);
    let p = w.open(0);
    for i in 1..=5 {
        w.send(0, p, &pub_big(&t, i));
    }
    // Worker 1's share holds 2 of them.
    let held = w.nodes[1].stats.history_bytes.get() as usize;
    assert!(held <= budget / 2 && held >= 2 * cost(), "{held}");
    assert_eq!(w.nodes[1].stats.history_evicted.get(), 3);
    assert_eq!(w.nodes[0].stats.history_bytes.get(), 0);
}

fn is_refused(f: &Value, id: Option<u64>) -> bool {
    op(f) == "err" && f["code"] == "too_many_topics" && f.get("id").and_then(Value::as_u64) == id
}

#[test]
fn a_sub_or_pub_that_would_add_a_topic_beyond_the_cap_is_refused() {
    let set = Settings {
        max_topics: 2,
        ..settings()
    };
    let mut w = World::new(1, set, BIG);
    let (s, p) = (w.open(0), w.open(0));
    w.send(0, s, r#"{"op":"sub","topic":"a","id":1}"#);
    w.send(0, p, r#"{"op":"pub","topic":"b","data":1,"id":2}"#);
    assert_eq!(op(&w.take(0, s)[0]), "subbed");
    assert_eq!(w.take(0, p), [json!({"op":"ack","id":2,"seq":1})]);
    w.send(0, s, r#"{"op":"sub","topic":"c","id":3}"#);
    let got = w.take(0, s);
    assert!(got.len() == 1 && is_refused(&got[0], Some(3)), "{got:?}");
    w.send(0, p, r#"{"op":"pub","topic":"d","data":1,"id":4}"#);
    w.send(0, p, r#"{"op":"pub","topic":"d","data":1}"#);
    let got = w.take(0, p);
    assert!(
        is_refused(&got[0], Some(4)) && is_refused(&got[1], None),
        "{got:?}"
    );
    // Topics already known are served.
    w.send(0, p, r#"{"op":"pub","topic":"a","data":1,"id":5}"#);
    assert_eq!(w.take(0, p), [json!({"op":"ack","id":5,"seq":1})]);
    assert_eq!(msg_seqs(&w.take(0, s), "a"), [1]);
    w.send(0, s, r#"{"op":"sub","topic":"b","id":6}"#);
    assert_eq!(op(&w.take(0, s)[0]), "subbed");
    assert_eq!(w.nodes[0].stats.topics_refused.get(), 3);
}

#[test]
fn a_publish_refused_by_another_worker_is_answered() {
    // 2 topics over 2 workers: one each.
    let set = Settings {
        max_topics: 2,
        ..settings()
    };
    let mut w = World::new(2, set, BIG);
    let t1 = topic_owned_by(1, 2);
    let t2 = (0..)
        .map(|i| format!("u.{i}"))
        .find(|t| super::owner_of(t, 2) == 1)
        .unwrap();
    let p = w.open(0);
    w.send(
        0,
        p,
        &format!(r#"{{"op":"pub","topic":"{t1}","data":1,"id":1}}"#),
    );
    assert_eq!(w.take(0, p), [json!({"op":"ack","id":1,"seq":1})]);
    w.send(
        0,
        p,
        &format!(r#"{{"op":"pub","topic":"{t2}","data":1,"id":2}}"#),
    );
    let got = w.take(0, p);
    assert!(got.len() == 1 && is_refused(&got[0], Some(2)), "{got:?}");
    assert_eq!(w.nodes[1].stats.topics_refused.get(), 1);
}
