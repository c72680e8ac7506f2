//! The output side of a [`Connection`]: the one close path, sends under the bound, and the
//! bytes handed to the caller to write.

use super::*;

impl Connection {
    /// The one close path: queue a close frame on `lane`, then wait for the peer's answer
    /// until the close deadline, doing `after` once the queue is written.
    pub(super) fn start_close(
        &mut self,
        code: Option<CloseCode>,
        reason: &str,
        lane: Lane,
        after: AfterFlush,
        cfg: &ConnConfig,
        now: Tick,
    ) {
        let mut out = Vec::with_capacity(8 + reason.len());
        encode_close(code, reason, &mut out);
        match lane {
            Lane::BehindData => self.queue.push_data(Bytes::from(out)),
            Lane::AheadOfData => {
                self.queue.discard_data();
                self.queue.push_control(Bytes::from(out));
            }
        }
        self.close_sent = true;
        self.enter_closing(after, cfg, now);
    }

    pub(super) fn enter_closing(&mut self, after: AfterFlush, cfg: &ConnConfig, now: Tick) {
        if self.phase == Phase::Dead {
            return;
        }
        self.phase = Phase::Closing;
        self.after_flush = after;
        self.deadline = now + cfg.close_ticks;
    }

    /// Close with `code`: data queued before the close frame still goes out first. A
    /// connection still in its handshake is dropped; a closing one is left alone.
    pub fn close(&mut self, code: CloseCode, reason: &str, cfg: &ConnConfig, now: Tick) {
        match self.phase {
            Phase::Open => self.start_close(
                Some(code),
                reason,
                Lane::BehindData,
                AfterFlush::Nothing,
                cfg,
                now,
            ),
            Phase::Handshake => self.kill(),
            Phase::Closing | Phase::Dead => {}
        }
    }

    /// Close an open connection with `code` ahead of every queued frame not yet started,
    /// which is discarded (a slow consumer, a revoked token).
    pub fn close_now(&mut self, code: CloseCode, reason: &str, cfg: &ConnConfig, now: Tick) {
        if self.phase == Phase::Open {
            self.start_close(
                Some(code),
                reason,
                Lane::AheadOfData,
                AfterFlush::Nothing,
                cfg,
                now,
            );
        }
    }

    // ----- sending -----

    /// Bytes queued and not yet written.
    pub fn queued_bytes(&self) -> usize {
        self.queue.queued_bytes()
    }

    /// Whether [`Self::send`] would take a frame now.
    pub fn can_send(&self, cfg: &ConnConfig) -> Result<(), SendError> {
        if self.phase != Phase::Open {
            return Err(SendError::Closed);
        }
        if self.queue.queued_bytes() > cfg.send_bound {
            return Err(SendError::Full);
        }
        Ok(())
    }

    /// Queue a data frame, refused when closed or over the send bound.
    pub fn send(&mut self, frame: Bytes, cfg: &ConnConfig) -> Result<(), SendError> {
        self.can_send(cfg)?;
        self.queue.push_data(frame);
        Ok(())
    }

    /// Queue a reply to the client's own request whatever the bound (reading pauses at half
    /// the bound, which bounds replies); refused only when closed.
    pub fn send_reply(&mut self, frame: Bytes) -> Result<(), SendError> {
        if self.phase != Phase::Open {
            return Err(SendError::Closed);
        }
        self.queue.push_data(frame);
        Ok(())
    }

    /// Offer a published frame under the send bound (conflation and the slow-consumer
    /// policy: see `docs/backpressure.md`). On [`Offer::Disconnect`] the connection is
    /// already closing with 1008 "slow consumer".
    pub fn offer(
        &mut self,
        frame: Bytes,
        key: Option<ConflationKey>,
        policy: SlowPolicy,
        cfg: &ConnConfig,
        now: Tick,
    ) -> Result<Offer, SendError> {
        if self.phase != Phase::Open {
            return Err(SendError::Closed);
        }
        let verdict = self.queue.offer(frame, key, cfg.send_bound, policy);
        if verdict == Offer::Disconnect {
            self.close_now(CloseCode::POLICY, "slow consumer", cfg, now);
        }
        Ok(verdict)
    }

    // ----- writing -----

    /// Whether bytes wait to be written.
    pub fn has_output(&self) -> bool {
        !self.queue.is_empty()
    }

    /// Fill `out` with the next slices to write, in order; returns how many were filled.
    pub fn transmit<'q>(&'q mut self, out: &mut [IoSlice<'q>]) -> usize {
        if self.phase == Phase::Dead {
            return 0;
        }
        self.queue.fill_slices(out)
    }

    /// Record that `n` bytes from [`Self::transmit`] were written.
    pub fn sent(&mut self, n: usize) {
        self.queue.advance(n);
    }

    /// The send queue itself, for a TLS layer that encrypts from it.
    pub fn queue_mut(&mut self) -> &mut SendQueue {
        &mut self.queue
    }

    /// Whether the connection ends once its queue is written (TLS sends close_notify then).
    pub fn ends_after_flush(&self) -> bool {
        self.after_flush != AfterFlush::Nothing
    }

    /// The queue was written out: what to do now (a [`AfterFlush::Drop`] kills the
    /// connection).
    pub fn flushed(&mut self) -> AfterFlush {
        let after = std::mem::replace(&mut self.after_flush, AfterFlush::Nothing);
        if after == AfterFlush::Drop {
            self.kill();
        }
        after
    }

    /// Release the send queue's memory if nothing is queued (the connection went quiet).
    pub fn shrink(&mut self) {
        self.queue.shrink();
    }
}
