//! The server's own counters, read from corecast's admin API (`GET /stats`) before and after
//! a run, so a report can say what the server did: messages conflated or dropped for slow
//! subscribers, slow-consumer disconnects, protocol errors. Plain HTTP/1.1 over loopback.

use std::{
    collections::BTreeMap,
    io::{Read, Write},
    net::TcpStream,
    time::Duration,
};

use anyhow::{anyhow, Context};
use serde_json::Value;

/// The process totals of `GET /stats` as `server.<counter>` and `pubsub.<counter>`.
pub fn totals(addr: &str) -> anyhow::Result<BTreeMap<String, u64>> {
    let mut s = TcpStream::connect(addr).with_context(|| format!("admin API at {addr}"))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        s,
        "GET /stats HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut resp = Vec::new();
    s.read_to_end(&mut resp)?;
    let text = String::from_utf8_lossy(&resp);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| anyhow!("no HTTP answer from {addr}"))?;
    if !head.starts_with("HTTP/1.1 200") {
        let line = head.lines().next().unwrap_or_default();
        return Err(anyhow!("GET /stats at {addr}: {line}"));
    }
    let v: Value = serde_json::from_str(body).context("GET /stats is not JSON")?;
    Ok(flatten(&v["total"]))
}

/// `{"server": {"a": 1}, "pubsub": {"b": 2}}` as `server.a = 1`, `pubsub.b = 2`.
fn flatten(total: &Value) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for part in ["server", "pubsub"] {
        if let Some(m) = total[part].as_object() {
            for (k, v) in m {
                if let Some(n) = v.as_u64() {
                    out.insert(format!("{part}.{k}"), n);
                }
            }
        }
    }
    out
}

/// How each counter changed from `before` to `after`, the unchanged ones left out.
pub fn changes(
    before: &BTreeMap<String, u64>,
    after: &BTreeMap<String, u64>,
) -> BTreeMap<String, i64> {
    after
        .iter()
        .filter_map(|(k, &a)| {
            let d = a as i64 - before.get(k).copied().unwrap_or(0) as i64;
            (d != 0).then(|| (k.clone(), d))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flattens_and_keeps_only_changes() {
        let before = flatten(&serde_json::json!({
            "server": {"conflated": 1, "connections": 5, "driver": "uring"},
            "pubsub": {"published": 10}
        }));
        let after = flatten(&serde_json::json!({
            "server": {"conflated": 4, "connections": 3, "driver": "uring"},
            "pubsub": {"published": 10, "resets": 2}
        }));
        assert_eq!(before.len(), 3);
        let d = changes(&before, &after);
        let want: BTreeMap<String, i64> = [
            ("pubsub.resets".to_string(), 2),
            ("server.conflated".to_string(), 3),
            ("server.connections".to_string(), -2),
        ]
        .into();
        assert_eq!(d, want);
    }
}
