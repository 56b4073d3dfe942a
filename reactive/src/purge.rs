//! Removing waiting items on purpose: a [`Purger`] asks a queue or a worker pool to drop the
//! items that match a predicate, from any task or thread.
//!
//! The use it was made for: when a Kafka consumer loses partitions in a rebalance, the records
//! of those partitions still waiting in its queue must not be written any more. Their new owner
//! reads them again from the last commit, so writing them here too would only make duplicates.
//! Purging them leaves only the writes already under way to be duplicated.
//!
//! # What is guaranteed
//! - Items that match and wait in the holder's shared buffer when [`Purger::purge`] is called
//!   are gone when it returns; that count is its return value.
//! - Items that match and sit on the holder's own side (a batch the queue has taken out of its
//!   buffer but not yet emitted, a worker's queue) are removed the next time the holder runs,
//!   before it emits or writes anything else. `purge` wakes it for that.
//! - An item already handed on (emitted downstream, or in a write under way) is not touched.
//! - Every purged item is counted, apart from what is dropped by policy:
//!   [`QueueSnapshot::purged`](crate::queue::QueueSnapshot::purged),
//!   [`WorkerStats::purged`](crate::sink::WorkerStats::purged). Purged items are dropped as
//!   values, so whatever they own is released (a Kafka record's acknowledgement, say).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use futures_util::task::AtomicWaker;

/// A predicate over items, shared with the holder.
pub(crate) type Predicate<T> = Arc<dyn Fn(&T) -> bool + Send + Sync>;

/// What a [`Purger`] drives: a holder of items that can remove them.
pub(crate) trait Target<T>: Send + Sync {
    /// Removes what it can now, records the predicate for the rest, wakes the holder; returns
    /// how many items were removed now.
    fn purge(&self, predicate: Predicate<T>) -> u64;
}

/// A handle that removes waiting items matching a predicate. Cheap to clone; usable from any
/// thread. See the [module docs](self).
pub struct Purger<T> {
    target: Arc<dyn Target<T>>,
}

impl<T> Clone for Purger<T> {
    fn clone(&self) -> Self {
        Purger {
            target: self.target.clone(),
        }
    }
}

impl<T> std::fmt::Debug for Purger<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Purger").finish_non_exhaustive()
    }
}

impl<T> Purger<T> {
    pub(crate) fn new(target: Arc<dyn Target<T>>) -> Self {
        Purger { target }
    }

    /// Removes the waiting items for which `predicate` is true. Returns how many were removed
    /// at once; those on the holder's own side are removed when it next runs (it is woken).
    pub fn purge(&self, predicate: impl Fn(&T) -> bool + Send + Sync + 'static) -> u64 {
        self.target.purge(Arc::new(predicate))
    }
}

/// Purge requests waiting for a holder that applies them on its own task.
pub(crate) struct Requests<T> {
    pending: Mutex<Vec<Predicate<T>>>,
    /// Bumped by each request, so the holder can check for one without a lock.
    epoch: AtomicU64,
    waker: AtomicWaker,
}

impl<T> Default for Requests<T> {
    fn default() -> Self {
        Requests {
            pending: Mutex::new(Vec::new()),
            epoch: AtomicU64::new(0),
            waker: AtomicWaker::new(),
        }
    }
}

impl<T> std::fmt::Debug for Requests<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Requests")
            .field("epoch", &self.epoch.load(Ordering::Relaxed))
            .finish()
    }
}

impl<T> Requests<T> {
    /// Records a request and wakes the holder.
    pub(crate) fn push(&self, predicate: Predicate<T>) {
        self.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(predicate);
        self.epoch.fetch_add(1, Ordering::AcqRel);
        self.waker.wake();
    }

    /// The holder's side: registers its task, then takes the requests made since it last
    /// looked (`seen`). Lock-free when there are none.
    pub(crate) fn take(&self, seen: &mut u64, waker: &std::task::Waker) -> Vec<Predicate<T>> {
        self.waker.register(waker);
        let epoch = self.epoch.load(Ordering::Acquire);
        if epoch == *seen {
            return Vec::new();
        }
        *seen = epoch;
        std::mem::take(&mut *self.pending.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

/// Removes from `items` what any of `predicates` matches; returns how many.
pub(crate) fn retain<T>(
    items: &mut std::collections::VecDeque<T>,
    predicates: &[Predicate<T>],
) -> u64 {
    if predicates.is_empty() {
        return 0;
    }
    let before = items.len();
    items.retain(|item| !predicates.iter().any(|p| p(item)));
    (before - items.len()) as u64
}
