//! What a send queue does with a published frame that does not fit, and what it tells the caller.
//!
//! Pure data. The rules themselves are in [`SendQueue::offer`](super::SendQueue::offer) and
//! `docs/backpressure.md`.

/// What to do with a published frame that does not fit under the bound and cannot be conflated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SlowPolicy {
    /// Refuse it and tell the caller to close the connection (1008 "slow consumer").
    #[default]
    Disconnect,
    /// Drop the new frame; the client sees the gap in sequence numbers and may resume.
    Drop,
}

/// The outcome of [`SendQueue::offer`](super::SendQueue::offer); the caller keeps the counters.
#[must_use = "a Disconnect must close the connection, and the caller counts drops and conflations"]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offer {
    /// Appended behind the queued data.
    Queued,
    /// Replaced the latest queued, not yet started frame with the same key, in its position.
    Conflated,
    /// Did not fit and could not be conflated; `SlowPolicy::Drop` discarded it.
    Dropped,
    /// Did not fit and could not be conflated; under `SlowPolicy::Disconnect` the caller must
    /// close the connection. The frame was not queued and the queue is unchanged.
    Disconnect,
}

impl Offer {
    /// Whether the frame is now in the queue (queued or conflated).
    pub fn accepted(self) -> bool {
        matches!(self, Offer::Queued | Offer::Conflated)
    }
}
