//! RFC 6455 conformance suite: a raw client (`tests/common/raw.rs`, shared with the other
//! integration tests) drives the in-process echo server (`tests/common`) under every io
//! driver from `drivers()` (`CORECAST_TEST_DRIVERS`).
//!
//! One module per RFC section; each Autobahn|Testsuite group has its counterpart:
//!
//! | RFC 6455                          | module             | Autobahn group                    |
//! |-----------------------------------|--------------------|-----------------------------------|
//! | 5.2 base framing, lengths         | `framing`          | 1 Framing (1.1 text, 1.2 binary)  |
//! | 5.3 client-to-server masking      | `masking`          | (implicit in every case)          |
//! | 5.5.2/5.5.3 ping and pong         | `control`          | 2 Pings/Pongs                     |
//! | 5.2 RSV bits, reserved opcodes    | `reserved`         | 3 Reserved Bits, 4 Opcodes        |
//! | 5.4 fragmentation                 | `fragmentation`    | 5 Fragmentation, 10 Misc (10.1    |
//! |                                   |                    | auto-fragmentation)               |
//! | 8.1 UTF-8 in text messages        | `utf8`             | 6 UTF-8 Handling (6.1-6.23)       |
//! | 5.5.1, 7.4 close frames and codes | `close`            | 7 Close Handling                  |
//! | 7.1 closing (server-initiated,    |                    |                                   |
//! | close timeout)                    |                    |                                   |
//! | 10.4 size limits                  | `limits`           | 9 Limits/Performance              |
//! | 4.1/4.2 opening handshake         | `handshake`        | (opening handshake; 12/13         |
//! |                                   |                    | permessage-deflate: not offered,  |
//! |                                   |                    | so RSV1 stays a protocol error)   |
//!
//! Autobahn has no section 8; its 12 and 13 (compression) only apply when
//! permessage-deflate is negotiated, which corecast does not do: `handshake` checks that the
//! offer is declined and `reserved` that RSV1 is then refused.
//!
//! Every test loops over the drivers itself and starts one echo server per driver; the
//! driver and the case appear in every failure message. The few that need another handler
//! (a handler-initiated close, the handshake hook, `on_open`) start their own server in a
//! `for driver in drivers()` loop.
//!
//! Tests named `bug_*` reproduce server bugs found by this suite (their doc comments say
//! what the server does instead); they fail until the server is fixed.

#[path = "../common/mod.rs"]
mod common;

mod close;
mod control;
mod fragmentation;
mod framing;
mod handshake;
mod limits;
mod masking;
mod reserved;
mod utf8;

use std::{
    net::SocketAddr,
    panic::{catch_unwind, AssertUnwindSafe},
    time::Duration,
};

use corecast::{Config, Driver};

use crate::common::{drivers, start_echo, test_config, wait_until, RawClient, TestServer};

/// The largest message and frame of the echo server under test: the echo example's 16 MiB.
pub const ECHO_MAX_MESSAGE: usize = 16 << 20;

/// One driver's echo server, handed to a test body.
pub struct Env {
    pub driver: Driver,
    pub server: TestServer,
}

impl Env {
    pub fn addr(&self) -> SocketAddr {
        self.server.addr
    }

    /// The failure-message context for `case` under this driver.
    pub fn ctx(&self, case: impl std::fmt::Display) -> String {
        format!("driver={:?} case={case}", self.driver)
    }

    /// A fresh upgraded connection.
    pub fn connect(&self, case: impl std::fmt::Display) -> RawClient {
        RawClient::connect(self.addr(), self.ctx(case))
    }

    /// The server's stats once it has no connection left (it must get there within 3 s).
    pub fn stats_when_idle(&self) -> corecast::server::Stats {
        assert!(
            wait_until(Duration::from_secs(3), || self.server.stats().connections
                == 0),
            "[{}] connections left: {:?}",
            self.ctx("stats when idle"),
            self.server.stats()
        );
        self.server.stats()
    }
}

/// Run `body` once per driver against an echo server with the test configuration.
pub fn each_driver(body: impl FnMut(&Env)) {
    each_driver_with(|_| {}, body);
}

/// Run `body` once per driver against an echo server whose test configuration `tweak` edits.
/// Every driver runs even when an earlier one fails; the test then fails naming the drivers
/// that failed (each failure's own message, with its driver and case, is printed as it
/// happens).
pub fn each_driver_with(tweak: impl Fn(&mut Config), mut body: impl FnMut(&Env)) {
    let list = drivers();
    assert!(!list.is_empty(), "CORECAST_TEST_DRIVERS selects no driver");
    let mut failed = Vec::new();
    for driver in list {
        // The echo example's limits (16 MiB messages, for Autobahn's limit cases) rather than
        // the server's built-in 1 MiB.
        let mut cfg = Config {
            max_message_bytes: ECHO_MAX_MESSAGE,
            max_frame_bytes: ECHO_MAX_MESSAGE,
            ..test_config(driver)
        };
        tweak(&mut cfg);
        let env = Env {
            driver,
            server: start_echo(cfg),
        };
        if catch_unwind(AssertUnwindSafe(|| body(&env))).is_err() {
            failed.push(driver);
        }
    }
    assert!(
        failed.is_empty(),
        "conformance: failed under driver(s) {failed:?}"
    );
}

/// Run `check` for every case, even after one fails; then fail naming every failed case.
/// For tests whose cases fail independently (each failure's message is printed as it
/// happens).
pub fn each_case<T: std::fmt::Debug>(
    cases: impl IntoIterator<Item = T>,
    mut check: impl FnMut(&T),
) {
    let mut failed = Vec::new();
    for case in cases {
        if catch_unwind(AssertUnwindSafe(|| check(&case))).is_err() {
            failed.push(format!("{case:?}"));
        }
    }
    assert!(failed.is_empty(), "failed cases: {}", failed.join(", "));
}

/// A deterministic text of `len` ASCII bytes.
pub fn ascii_text(len: usize) -> String {
    (0..len).map(|i| (b'a' + (i % 26) as u8) as char).collect()
}

/// A deterministic binary payload of `len` bytes covering every byte value.
pub fn binary_payload(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i.wrapping_mul(31) ^ (i >> 8)) as u8)
        .collect()
}
