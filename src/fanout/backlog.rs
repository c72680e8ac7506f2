//! The producer-side spill for items an inbox refused: a bounded FIFO per worker, retried in
//! order, so that a full inbox never blocks the producer's thread and never reorders what
//! one producer sends to one worker.

use std::collections::VecDeque;

use super::{Outboxes, Undelivered};

/// What [`Backlog::send`] did with an item it accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// The item went into the worker's inbox.
    Sent,
    /// The item waits in the backlog behind earlier ones; [`Backlog::flush`] retries it.
    Deferred,
}

/// A producer's block-free spill: items the worker's inbox refused as full, kept in order and
/// retried by [`flush`](Self::flush) (call it on every tick and after every drain). Holds at
/// most `limit` items per worker; past that, [`send`](Self::send) hands the item back with
/// [`Undelivered::Full`] for the caller to drop and count. Single owner, no locking.
#[derive(Debug)]
pub struct Backlog<T> {
    queues: Vec<VecDeque<T>>,
    limit: usize,
    pending: usize,
}

impl<T> Backlog<T> {
    /// An empty backlog for `workers` workers, holding at most `limit` items per worker.
    pub fn new(workers: usize, limit: usize) -> Self {
        Self {
            queues: (0..workers).map(|_| VecDeque::new()).collect(),
            limit,
            pending: 0,
        }
    }

    /// Send `item` to `worker` after whatever is already waiting for that worker. `Ok(Sent)`
    /// or `Ok(Deferred)`; `Err(Full)` when the backlog for `worker` is at its limit;
    /// `Err(Closed)` when the worker has gone.
    pub fn send(
        &mut self,
        out: &Outboxes<T>,
        worker: usize,
        item: T,
    ) -> Result<Delivery, Undelivered<T>> {
        if !self.queues[worker].is_empty() {
            self.flush_one(out, worker);
        }
        let q = &mut self.queues[worker];
        if q.is_empty() {
            return match out.send(worker, item) {
                Ok(()) => Ok(Delivery::Sent),
                Err(Undelivered::Full(t)) if self.limit > 0 => {
                    q.push_back(t);
                    self.pending += 1;
                    Ok(Delivery::Deferred)
                }
                Err(e) => Err(e),
            };
        }
        if q.len() >= self.limit {
            return Err(Undelivered::Full(item));
        }
        q.push_back(item);
        self.pending += 1;
        Ok(Delivery::Deferred)
    }

    /// Retry every waiting item, in order, until each worker's inbox refuses again. Returns
    /// how many went out. Items for a worker that has gone are dropped (and counted by the
    /// `Outboxes` handle as `closed`).
    pub fn flush(&mut self, out: &Outboxes<T>) -> usize {
        if self.pending == 0 {
            return 0;
        }
        (0..self.queues.len()).map(|w| self.flush_one(out, w)).sum()
    }

    fn flush_one(&mut self, out: &Outboxes<T>, worker: usize) -> usize {
        let q = &mut self.queues[worker];
        let mut sent = 0;
        while let Some(item) = q.pop_front() {
            match out.send(worker, item) {
                Ok(()) => sent += 1,
                Err(Undelivered::Full(t)) => {
                    q.push_front(t);
                    break;
                }
                Err(Undelivered::Closed(_)) => {
                    self.pending -= q.len() + 1;
                    q.clear();
                    return sent;
                }
            }
        }
        self.pending -= sent;
        sent
    }

    /// Items waiting, over all workers.
    pub fn len(&self) -> usize {
        self.pending
    }

    /// Whether nothing is waiting.
    pub fn is_empty(&self) -> bool {
        self.pending == 0
    }

    /// Items waiting for `worker`.
    pub fn len_for(&self, worker: usize) -> usize {
        self.queues[worker].len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fanout::Mesh;

    #[test]
    fn spills_in_order_and_flushes() {
        let Mesh { inboxes, outboxes } = Mesh::new(2, 2);
        let mut b = Backlog::new(2, 3);
        let mut got = Vec::new();
        for i in 0..5 {
            let d = b.send(&outboxes, 0, i).unwrap();
            assert_eq!(
                d,
                if i < 2 {
                    Delivery::Sent
                } else {
                    Delivery::Deferred
                }
            );
        }
        assert!(
            b.send(&outboxes, 0, 5).unwrap_err().is_full(),
            "limit 3 reached"
        );
        assert_eq!((b.len(), b.len_for(0), b.len_for(1)), (3, 3, 0));
        assert_eq!(b.send(&outboxes, 1, 100), Ok(Delivery::Sent));
        assert_eq!(inboxes[0].try_recv_batch(&mut got, 1), Some(1));
        // A send behind a non-empty backlog flushes first, then queues behind it.
        assert_eq!(b.send(&outboxes, 0, 6), Ok(Delivery::Deferred));
        assert_eq!(b.len_for(0), 3);
        assert_eq!(inboxes[0].try_recv_batch(&mut got, 10), Some(2));
        assert_eq!(b.flush(&outboxes), 2);
        assert_eq!(inboxes[0].try_recv_batch(&mut got, 10), Some(2));
        assert_eq!(b.flush(&outboxes), 1);
        assert!(b.is_empty());
        assert_eq!(inboxes[0].try_recv_batch(&mut got, 10), Some(1));
        assert_eq!(got, vec![0, 1, 2, 3, 4, 6]);
    }

    #[test]
    fn closed_worker_drops_its_backlog() {
        let Mesh {
            mut inboxes,
            outboxes,
        } = Mesh::new(2, 1);
        let mut b = Backlog::new(2, 4);
        b.send(&outboxes, 1, 1).unwrap();
        b.send(&outboxes, 1, 2).unwrap();
        b.send(&outboxes, 1, 3).unwrap();
        assert_eq!(b.len(), 2);
        drop(inboxes.pop());
        assert_eq!(b.flush(&outboxes), 0);
        assert!(b.is_empty());
        assert_eq!(outboxes.counters().closed, 1);
        assert!(matches!(
            b.send(&outboxes, 1, 4),
            Err(Undelivered::Closed(4))
        ));
    }
}
