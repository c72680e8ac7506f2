//! A token bucket in integer milli-tokens over a caller-supplied millisecond clock: no
//! floating point, no clock reads, a few words of state.

/// A token bucket: `rate` tokens per second, holding at most `burst` tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenBucket {
    /// Milli-tokens available at `at_ms`.
    milli: u64,
    /// The time `milli` was computed for.
    at_ms: u64,
}

/// The shape of a bucket: refill rate and capacity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BucketShape {
    /// Tokens added per second.
    pub rate: u64,
    /// Most tokens held.
    pub burst: u64,
}

impl BucketShape {
    fn cap(&self) -> u64 {
        self.burst.saturating_mul(1000)
    }
}

impl TokenBucket {
    /// A full bucket at `now_ms`.
    pub fn full(shape: BucketShape, now_ms: u64) -> Self {
        TokenBucket {
            milli: shape.cap(),
            at_ms: now_ms,
        }
    }

    fn refill(&mut self, shape: BucketShape, now_ms: u64) {
        let elapsed = now_ms.saturating_sub(self.at_ms);
        // rate tokens/s = rate milli-tokens/ms.
        self.milli = self
            .milli
            .saturating_add(elapsed.saturating_mul(shape.rate))
            .min(shape.cap());
        self.at_ms = self.at_ms.max(now_ms);
    }

    /// Take `tokens` if the bucket holds them at `now_ms`; `false` (and nothing taken) if not.
    pub fn take(&mut self, shape: BucketShape, now_ms: u64, tokens: u64) -> bool {
        self.refill(shape, now_ms);
        let want = tokens.saturating_mul(1000);
        if self.milli >= want {
            self.milli -= want;
            true
        } else {
            false
        }
    }

    /// Whether the bucket would be full at `now_ms` (then it carries no state worth keeping).
    pub fn is_full_at(&self, shape: BucketShape, now_ms: u64) -> bool {
        let mut b = *self;
        b.refill(shape, now_ms);
        b.milli >= shape.cap()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn takes_refills_and_caps() {
        let s = BucketShape { rate: 10, burst: 3 };
        let mut b = TokenBucket::full(s, 0);
        assert!(b.take(s, 0, 1) && b.take(s, 0, 1) && b.take(s, 0, 1));
        assert!(!b.take(s, 0, 1), "burst spent");
        assert!(!b.take(s, 99, 1), "a token takes 100 ms at 10/s");
        assert!(b.take(s, 100, 1));
        assert!(!b.is_full_at(s, 100));
        assert!(b.is_full_at(s, 400));
        // Idle for long: capped at the burst.
        assert!(b.take(s, 1_000_000, 3) && !b.take(s, 1_000_000, 1));
        // A clock that goes backwards never adds tokens.
        assert!(!b.take(s, 10, 1));
        // Byte buckets take many tokens at once.
        let bytes = BucketShape {
            rate: 1000,
            burst: 2000,
        };
        let mut b = TokenBucket::full(bytes, 0);
        assert!(b.take(bytes, 0, 1500) && !b.take(bytes, 0, 600) && b.take(bytes, 100, 600));
    }
}
