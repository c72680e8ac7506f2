//! Per-worker counters: written only by their worker (relaxed load + store, no locked
//! read-modify-write on the hot path), summed by readers on another thread.

use crate::counters::counter_set;
pub(crate) use crate::counters::Counter;

counter_set! {
    /// One worker's counters.
    worker WorkerStats {
        /// Milliseconds since the server started, stored by the worker's timer loop at
        /// every tick: how readiness tells a live worker from a stuck one.
        pub(crate) heartbeat_ms: Counter,
    }
    /// A snapshot of the counters, summed over workers.
    snapshot Stats;
    /// Connections open now (handshaking or upgraded).
    connections,
    /// TCP connections accepted.
    accepted,
    /// Connections that completed the WebSocket handshake.
    opened,
    /// Connections closed, for any reason.
    closed,
    /// Connections refused because the connection limit was reached.
    refused_limit,
    /// Handshakes rejected with an HTTP error (bad request, version, size, hook).
    handshake_rejected,
    /// Connections closed because the handshake did not finish in time.
    handshake_timeouts,
    /// Connections closed because the peer was silent past the heartbeat window.
    heartbeat_timeouts,
    /// Connections closed because the peer did not answer our close frame in time.
    close_timeouts,
    /// Connections closed for a protocol violation (1002, 1007, 1009), except the inflate
    /// failures counted in `closed_inflate_limit` and `closed_inflate_error`.
    protocol_errors,
    /// Connections closed by the drain on shutdown.
    drained,
    /// Pings sent.
    pings_sent,
    /// Messages received (complete messages, not frames).
    messages_in,
    /// Data frames queued for sending.
    messages_out,
    /// Bytes received from sockets.
    bytes_in,
    /// Bytes written to sockets.
    bytes_out,
    /// Bytes queued in send queues and not yet written (a gauge).
    queued_bytes,
    /// Published frames that replaced a queued frame with the same conflation key.
    conflated,
    /// Published frames dropped for a slow subscriber (the `drop` policy).
    dropped,
    /// Connections closed with 1008 "slow consumer".
    slow_disconnects,
    /// TLS connections dropped before the upgrade: not TLS (e.g. plain HTTP), a bad record,
    /// an alert from the client (it distrusts our certificate), no common version or cipher.
    rejected_tls,
    /// Upgraded TLS connections dropped for a bad record or an alert from the peer.
    closed_tls,
    /// Connections refused with 429 before the upgrade: the client address is over its
    /// handshake rate.
    rejected_handshake_rate,
    /// Connections refused with 429 before the upgrade: the client address has
    /// `max_connections_per_ip` open.
    rejected_ip_limit,
    /// Handshakes refused with 403: a browser origin not in the allowlist.
    rejected_origin,
    /// Handshakes refused with 401: no token, or one that does not verify.
    rejected_unauthorized,
    /// Handshakes refused with 401 "token expired".
    rejected_token_expired,
    /// Handshakes refused with 429: the user has `max_connections_per_user` open.
    rejected_user_limit,
    /// Connections that negotiated permessage-deflate.
    deflate_negotiated,
    /// Messages compressed for sending (a frame shared by many connections counts once).
    messages_deflated,
    /// Compressed messages received and inflated.
    messages_inflated,
    /// Connections closed with 1009 because a compressed message inflated past `max_message_bytes`.
    closed_inflate_limit,
    /// Connections closed with 1007 because a compressed message did not inflate.
    closed_inflate_error,
    /// Connections closed with 1008 because a message was not finished within
    /// `message_timeout` of its first byte.
    closed_message_timeout,
    /// Connections closed with 1013 because unfinished messages held across the process went
    /// past `partial_message_budget`.
    closed_message_budget,
    /// Bytes held now for messages not yet received whole (a gauge; the process-wide sum is
    /// what `partial_message_budget` bounds).
    partial_bytes,
}

/// Milliseconds on a monotonic clock shared by the whole process (its zero is the first
/// call), so a worker's heartbeat can be compared with the time on another thread.
pub(crate) fn monotonic_ms() -> u64 {
    static ZERO: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    ZERO.get_or_init(std::time::Instant::now)
        .elapsed()
        .as_millis() as u64
}
