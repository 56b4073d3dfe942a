//! The buffered modes (bounded, unbounded, shedding): the upstream fills a [`ShedBuffer`]
//! under a lock (this module's input half), and the [`Emitter`](super::emitter::Emitter)
//! drains it downstream against demand. Both halves run in the queue's one task.
//!
//! # Terminal signals
//! - Completion is signalled as soon as the upstream has completed and the buffer is empty,
//!   with or without outstanding demand.
//! - An upstream error is signalled after the items buffered before it.
//! - The safety cap's [`Error::Overflow`] is signalled at once, ahead of what is buffered
//!   (rule 1.4 lets an error skip items); the discarded items are counted as
//!   [`DropReason::Overflow`](super::DropReason::Overflow), as are the items that came after
//!   the one that tripped it in the same batch.

use std::sync::{Arc, Mutex, MutexGuard};

use super::{DropReason, Offer, Overflow, QueueConfig, QueueStats, ShedBuffer};
use crate::demand::UNBOUNDED;
use crate::handoff::{Handoff, wake};
use crate::purge::{Predicate, Requests, Target};
use crate::{Error, Subscriber, Subscription};

/// The state a buffered queue's two halves and its purgers share, made when the queue is
/// (so a [`Purger`] can be handed out before it is connected). `capacity` is `None` for an
/// unbounded queue.
pub(super) fn shared<T>(capacity: Option<usize>, overflow: &Overflow) -> Arc<Shared<T>> {
    let blocks = capacity.is_some() && !overflow.sheds();
    let capacity = capacity.unwrap_or(usize::MAX);
    let policy = if blocks || capacity == usize::MAX {
        Overflow::Block
    } else {
        overflow.clone()
    };
    Arc::new(Shared {
        state: Mutex::new(State {
            buffer: ShedBuffer::new(capacity, policy),
            handoff: Handoff::default(),
            outstanding: 0,
            overflowed: None,
        }),
        purges: Requests::default(),
        blocks,
        capacity,
    })
}

/// The input half of a buffered connection over `shared`: the subscriber to connect upstream.
/// A blocking queue grants its capacity up front; any other grants without limit.
pub(super) fn input<T>(
    shared: Arc<Shared<T>>,
    config: QueueConfig<T>,
    stats: Arc<QueueStats>,
    safety_cap: Option<usize>,
) -> QueueSubscriber<T> {
    let (blocks, capacity) = (shared.blocks, shared.capacity);
    QueueSubscriber {
        shared,
        config,
        stats,
        initial: if blocks { capacity as u64 } else { UNBOUNDED },
        blocks,
        safety_cap,
        subscribed: false,
    }
}

pub(super) struct Shared<T> {
    state: Mutex<State<T>>,
    /// Purges for the items the emitter has taken out of the buffer and not yet emitted.
    pub(super) purges: Requests<T>,
    pub(super) blocks: bool,
    pub(super) capacity: usize,
}

impl<T> std::fmt::Debug for Shared<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("blocks", &self.blocks)
            .field("capacity", &self.capacity)
            .finish()
    }
}

/// The purge target of a buffered queue: its shared buffer now, the emitter's hand soon.
pub(super) struct Purging<T> {
    pub(super) shared: Arc<Shared<T>>,
    pub(super) config: QueueConfig<T>,
    pub(super) stats: Arc<QueueStats>,
}

impl<T: Send> Target<T> for Purging<T> {
    fn purge(&self, predicate: Predicate<T>) -> u64 {
        let (removed, waker, regrant) = {
            let mut state = self.shared.lock();
            let removed = state.buffer.remove_where(|item| predicate(item));
            for item in &removed {
                self.stats.purged(self.config.weight(item));
            }
            let n = removed.len() as u64;
            // A blocking queue granted its upstream one permit per place: the purged items'
            // places are free again, so their permits go back upstream.
            let regrant = (self.shared.blocks && n > 0 && state.handoff.end.is_none())
                .then(|| {
                    if state.outstanding == 0 {
                        self.stats.set_blocked(false);
                    }
                    state.outstanding += n;
                    state.handoff.upstream.clone()
                })
                .flatten();
            (removed, state.handoff.take_waker(), regrant.map(|u| (u, n)))
        };
        // Dropped outside the lock: an item may own something that takes a lock of its own.
        let count = removed.len() as u64;
        drop(removed);
        if let Some((upstream, n)) = regrant {
            upstream.request(n);
        }
        self.shared.purges.push(predicate);
        wake(waker);
        count
    }
}

#[derive(Debug)]
pub(super) struct State<T> {
    pub(super) buffer: ShedBuffer<T>,
    pub(super) handoff: Handoff,
    /// Blocking mode: demand granted upstream and not yet used.
    pub(super) outstanding: u64,
    /// The safety cap that tripped, if one did: the emitter discards what is queued and fails
    /// at once.
    pub(super) overflowed: Option<usize>,
}

impl<T> Shared<T> {
    pub(super) fn lock(&self) -> MutexGuard<'_, State<T>> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The subscriber a buffered [`Queue`](super::Queue) connects upstream: it queues what
/// arrives.
pub struct QueueSubscriber<T> {
    shared: Arc<Shared<T>>,
    config: QueueConfig<T>,
    stats: Arc<QueueStats>,
    initial: u64,
    blocks: bool,
    safety_cap: Option<usize>,
    subscribed: bool,
}

impl<T> std::fmt::Debug for QueueSubscriber<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueueSubscriber")
            .field("blocks", &self.blocks)
            .finish()
    }
}

impl<T> QueueSubscriber<T> {
    fn finish(&mut self, end: Option<Error>) {
        let waker = {
            let mut state = self.shared.lock();
            // A source that has ended waits for nothing: a blocked spell ends with it.
            self.stats.set_blocked(false);
            state.handoff.finish(end)
        };
        wake(waker);
    }

    /// Queues one item under the lock the caller holds, by the overflow policy, and counts it;
    /// `Err(cap)` when the safety cap refuses it.
    fn offer(&self, state: &mut State<T>, item: T) -> Result<(), usize> {
        if let Some(cap) = self.safety_cap {
            if state.buffer.len() >= cap {
                return Err(cap);
            }
        }
        let bytes = self.config.weight(&item);
        let class = self.config.class(&item);
        match state.buffer.offer(item, class) {
            Offer::Accepted => self.stats.pushed(bytes),
            Offer::Evicted(old, reason) => {
                let old_bytes = self.config.weight(&old);
                self.stats.dropped(reason, Some(old_bytes));
                self.stats.pushed(bytes);
            }
            Offer::Dropped(_, reason) => self.stats.dropped(reason, None),
            // Only a publisher that broke rule 1.1 can overfill a blocking queue.
            Offer::Full(_) => self.stats.dropped(DropReason::Newest, None),
        }
        self.used(state, 1);
        Ok(())
    }

    /// A blocking queue: `n` of the permits granted upstream were used.
    fn used(&self, state: &mut State<T>, n: u64) {
        if self.blocks {
            state.outstanding = state.outstanding.saturating_sub(n);
            if state.outstanding == 0 {
                self.stats.set_blocked(true);
            }
        }
    }

    /// The safety cap is reached: drop the item that found it (counted), fail the stream and
    /// cancel the source.
    fn overflow(&self, mut state: MutexGuard<'_, State<T>>, cap: usize) {
        self.stats.dropped(DropReason::Overflow, None);
        self.stats.overflow();
        state.overflowed = Some(cap);
        let waker = state.handoff.finish(Some(overflow_error(cap)));
        let upstream = state.handoff.upstream.clone();
        drop(state);
        if let Some(u) = upstream {
            u.cancel();
        }
        wake(waker);
    }
}

impl<T> Subscriber<T> for QueueSubscriber<T> {
    fn on_subscribe(&mut self, subscription: Subscription) {
        if self.subscribed {
            subscription.cancel();
            return;
        }
        self.subscribed = true;
        {
            let mut state = self.shared.lock();
            state.handoff.upstream = Some(subscription.clone());
            state.outstanding = self.initial;
        }
        subscription.request(self.initial);
    }

    fn on_next(&mut self, item: T) {
        let mut state = self.shared.lock();
        if state.handoff.end.is_some() {
            return;
        }
        if let Err(cap) = self.offer(&mut state, item) {
            return self.overflow(state, cap);
        }
        let waker = state.handoff.take_waker();
        drop(state);
        wake(waker);
    }

    fn takes_batches(&self) -> bool {
        true
    }

    /// Under one lock: queued whole when the policy accepts them all (no shedding, no safety
    /// cap in reach), offered one by one otherwise.
    fn on_next_batch(&mut self, items: &mut Vec<T>) {
        let n = items.len();
        let mut state = self.shared.lock();
        if state.overflowed.is_some() {
            // Made before the cap's cancel reached the source: counted with its discards.
            for _ in items.drain(..) {
                self.stats.dropped(DropReason::Overflow, None);
            }
            return;
        }
        if state.handoff.end.is_some() {
            items.clear();
            return;
        }
        let fits_cap = self
            .safety_cap
            .is_none_or(|cap| state.buffer.len() + n < cap);
        if fits_cap && state.buffer.takes_in_bulk(n) {
            let bytes = self.config.weight_all(items);
            state.buffer.append(items);
            self.stats.pushed_n(n as u64, bytes);
            self.used(&mut state, n as u64);
        } else {
            let mut rest = items.drain(..);
            while let Some(item) = rest.next() {
                if let Err(cap) = self.offer(&mut state, item) {
                    // The rest of the batch goes with the cap's discards.
                    for _ in rest.by_ref() {
                        self.stats.dropped(DropReason::Overflow, None);
                    }
                    drop(rest);
                    return self.overflow(state, cap);
                }
            }
        }
        let waker = state.handoff.take_waker();
        drop(state);
        wake(waker);
    }

    fn on_error(&mut self, error: Error) {
        self.finish(Some(error));
    }

    fn on_complete(&mut self) {
        self.finish(None);
    }
}

impl<T> Drop for QueueSubscriber<T> {
    fn drop(&mut self) {
        self.finish(None);
    }
}

pub(super) fn overflow_error(cap: usize) -> Error {
    Error::Overflow {
        what: "unbounded queue (safety cap)",
        limit: cap as u64,
    }
}
