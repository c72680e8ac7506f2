//! The per-worker timer wheel: one entry per connection, checked lazily.
//!
//! Pure data structure. A connection's activity only updates its own timestamps; the wheel is
//! touched when its next check is due (heartbeat, handshake or close deadline). Entries are
//! `(slab key, stamp)`; a connection remembers the stamp of its live entry, so stale entries
//! (rescheduled or closed connections) are skipped when they fire.

/// A hashed timing wheel of `(key, stamp)` entries over discrete ticks.
#[derive(Debug)]
pub struct TimerWheel {
    slots: Vec<Vec<(u32, u64)>>,
    /// The next tick to fire.
    next: u64,
}

impl TimerWheel {
    /// A wheel with `slots` slots (the furthest schedulable tick is `slots - 1` ahead).
    pub fn new(slots: usize) -> Self {
        TimerWheel {
            slots: (0..slots.max(2)).map(|_| Vec::new()).collect(),
            next: 0,
        }
    }

    /// Schedule `key` at `tick`, clamped into `[next, next + slots - 1]`; returns the tick
    /// actually used (callers re-check the real deadline when the entry fires).
    pub fn schedule(&mut self, key: u32, tick: u64) -> u64 {
        let span = self.slots.len() as u64 - 1;
        let at = tick.clamp(self.next, self.next + span);
        let slot = (at % self.slots.len() as u64) as usize;
        self.slots[slot].push((key, at));
        at
    }

    /// Fire every entry due up to and including `now`, appending `(key, tick)` to `due`.
    pub fn advance(&mut self, now: u64, due: &mut Vec<(u32, u64)>) {
        if now < self.next {
            return;
        }
        let len = self.slots.len() as u64;
        // One full turn visits every slot: a late advance never walks more than that.
        let steps = (now - self.next + 1).min(len);
        for i in 0..steps {
            let entries = &mut self.slots[((self.next + i) % len) as usize];
            let mut j = 0;
            while j < entries.len() {
                if entries[j].1 <= now {
                    due.push(entries.swap_remove(j));
                } else {
                    j += 1;
                }
            }
            if entries.is_empty() && entries.capacity() > 64 {
                entries.shrink_to(16);
            }
        }
        self.next = now + 1;
    }

    /// The next tick that will fire.
    pub fn next_tick(&self) -> u64 {
        self.next
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fires_at_the_scheduled_tick_not_before() {
        let mut w = TimerWheel::new(8);
        w.schedule(1, 3);
        let mut due = Vec::new();
        w.advance(2, &mut due);
        assert!(due.is_empty());
        w.advance(3, &mut due);
        assert_eq!(due, vec![(1, 3)]);
    }

    #[test]
    fn far_deadlines_are_clamped_and_fire_early_for_a_recheck() {
        let mut w = TimerWheel::new(8);
        assert_eq!(w.schedule(7, 1000), 7);
        let mut due = Vec::new();
        w.advance(7, &mut due);
        assert_eq!(due, vec![(7, 7)]);
    }

    #[test]
    fn a_late_advance_fires_everything_overdue() {
        let mut w = TimerWheel::new(8);
        for k in 0..8 {
            w.schedule(k, k as u64);
        }
        let mut due = Vec::new();
        w.advance(100, &mut due);
        due.sort();
        assert_eq!(due.len(), 8);
        assert_eq!(w.next_tick(), 101);
        // Past ticks are clamped to the next one.
        assert_eq!(w.schedule(9, 5), 101);
    }

    #[test]
    fn entries_in_the_same_slot_a_turn_apart_wait_their_turn() {
        let mut w = TimerWheel::new(4);
        w.schedule(1, 1);
        w.advance(0, &mut Vec::new());
        w.schedule(2, 4); // same slot as tick 0/4, clamped to 1 + 3 = 4
        let mut due = Vec::new();
        w.advance(1, &mut due);
        assert_eq!(due, vec![(1, 1)]);
        due.clear();
        w.advance(3, &mut due);
        assert!(due.is_empty());
        w.advance(4, &mut due);
        assert_eq!(due, vec![(2, 4)]);
    }
}
