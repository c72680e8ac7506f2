//! Clocks and a small random generator.
//!
//! Every time in the generator is nanoseconds on one monotonic clock per process, counted from a
//! base taken at start-up. The base's Unix-epoch time is read once, so a monotonic instant can be
//! turned into wall-clock time (for the `t` stamps that publishers put in messages and that
//! subscribers in another process compare against) without a second clock read.

use std::{
    sync::OnceLock,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

/// Nanoseconds in one second.
pub const SEC: u64 = 1_000_000_000;
/// Nanoseconds in one millisecond.
pub const MS: u64 = 1_000_000;

struct Base {
    at: Instant,
    epoch_ns: u64,
}

static BASE: OnceLock<Base> = OnceLock::new();

fn base() -> &'static Base {
    BASE.get_or_init(|| Base {
        at: Instant::now(),
        epoch_ns: wall_epoch_ns(),
    })
}

/// Fixes the process's time base; call first thing in `main`.
pub fn init() {
    base();
}

/// Monotonic nanoseconds since the process's time base.
#[inline]
pub fn now_ns() -> u64 {
    base().at.elapsed().as_nanos() as u64
}

/// The Unix-epoch nanoseconds of a monotonic instant of this process.
#[inline]
pub fn to_epoch_ns(mono_ns: u64) -> u64 {
    base().epoch_ns + mono_ns
}

/// The monotonic instant of this process at a Unix-epoch time (0 if it is before the base).
pub fn from_epoch_ns(epoch_ns: u64) -> u64 {
    epoch_ns.saturating_sub(base().epoch_ns)
}

/// The wall clock now, nanoseconds since the Unix epoch.
pub fn wall_epoch_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// Sleeps until the monotonic instant `at_ns` (returns at once if it has passed).
pub fn sleep_until(at_ns: u64) {
    let now = now_ns();
    if at_ns > now {
        std::thread::sleep(Duration::from_nanos(at_ns - now));
    }
}

/// Seconds (possibly fractional) as nanoseconds.
pub fn secs_to_ns(s: f64) -> u64 {
    (s.max(0.0) * SEC as f64) as u64
}

/// A xorshift64* generator: masks, handshake keys, jitter. Not for cryptography.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator seeded from `seed` mixed with the clock.
    pub fn new(seed: u64) -> Self {
        let mut s = seed
            .wrapping_mul(0x9E37_79B9_7F4A_7C15)
            .wrapping_add(wall_epoch_ns());
        // splitmix64 once, so that nearby seeds give unrelated streams.
        s = (s ^ (s >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        s = (s ^ (s >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        s ^= s >> 31;
        Rng(s.max(1))
    }

    /// The next 64 random bits.
    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A value in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            ((self.next_u64() as u128 * n as u128) >> 64) as u64
        }
    }

    /// Fills `buf` with random bytes.
    pub fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let v = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn below_stays_in_range() {
        let mut r = Rng::new(7);
        for n in [1u64, 2, 3, 10, 1000] {
            for _ in 0..1000 {
                assert!(r.below(n) < n);
            }
        }
        assert_eq!(r.below(0), 0);
    }

    #[test]
    fn epoch_round_trips() {
        init();
        let m = now_ns();
        assert_eq!(from_epoch_ns(to_epoch_ns(m)), m);
    }
}
