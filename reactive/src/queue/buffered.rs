//! The buffered modes (bounded, unbounded, shedding): the upstream fills a [`ShedBuffer`]
//! under a lock, and the [`Emitter`] drains it downstream against demand. Both halves run in
//! the queue's one task.
//!
//! # Waiting without losing a wake-up
//! The emitter waits on two things at once: items (or the end) from upstream, and requests
//! (or a stop) from downstream. Before it returns `Pending` it registers for both and then
//! looks at both again, so that a `cancel`, a `request(0)` or a completion that arrives while
//! the upstream is idle ends the connection at once, instead of when the next item comes.
//!
//! # Terminal signals
//! - Completion is signalled as soon as the upstream has completed and the buffer is empty,
//!   with or without outstanding demand.
//! - An upstream error is signalled after the items buffered before it.
//! - The safety cap's [`Error::Overflow`] is signalled at once, ahead of what is buffered
//!   (rule 1.4 lets an error skip items); the discarded items are counted as
//!   [`DropReason::Overflow`](super::DropReason::Overflow).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use super::{DropReason, Offer, Overflow, QueueConfig, QueueStats, ShedBuffer};
use crate::demand::UNBOUNDED;
use crate::handoff::{Handoff, wake};
use crate::purge::{Predicate, Requests, Target};
use crate::subscription::{self, Demand, Stop};
use crate::{Error, Subscriber, Subscription};

/// The most items moved out of the shared buffer per lock.
const TAKE: u64 = 256;

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

/// Builds the two halves of a buffered connection over `shared`: the subscriber to connect
/// upstream and the emitter that serves `downstream`.
pub(super) fn connect<T, S: Subscriber<T>>(
    mut downstream: S,
    shared: Arc<Shared<T>>,
    config: QueueConfig<T>,
    stats: Arc<QueueStats>,
    safety_cap: Option<usize>,
) -> (QueueSubscriber<T>, Emitter<T, S>) {
    let (down_subscription, demand) = subscription::pair();
    let (blocks, capacity) = (shared.blocks, shared.capacity);
    downstream.on_subscribe(down_subscription);
    let input = QueueSubscriber {
        shared: shared.clone(),
        config: config.clone(),
        stats: stats.clone(),
        initial: if blocks { capacity as u64 } else { UNBOUNDED },
        blocks,
        safety_cap,
        subscribed: false,
    };
    let emitter = Emitter {
        shared,
        downstream: Some(downstream),
        demand,
        config,
        stats,
        blocks,
        // Small grants: the source follows the sink smoothly instead of in bursts.
        replenish: (capacity as u64 / 8).clamp(1, 64),
        taken: 0,
        local: VecDeque::new(),
        purges_seen: 0,
    };
    (input, emitter)
}

pub(super) struct Shared<T> {
    state: Mutex<State<T>>,
    /// Purges for the items the emitter has taken out of the buffer and not yet emitted.
    purges: Requests<T>,
    blocks: bool,
    capacity: usize,
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
struct State<T> {
    buffer: ShedBuffer<T>,
    handoff: Handoff,
    /// Blocking mode: demand granted upstream and not yet used.
    outstanding: u64,
    /// The safety cap that tripped, if one did: the emitter discards what is queued and fails
    /// at once.
    overflowed: Option<usize>,
}

impl<T> Shared<T> {
    fn lock(&self) -> MutexGuard<'_, State<T>> {
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
        let waker = self.shared.lock().handoff.finish(end);
        wake(waker);
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
        let bytes = self.config.weight(&item);
        let class = self.config.class(&item);
        let mut state = self.shared.lock();
        if state.handoff.end.is_some() {
            return;
        }
        if let Some(cap) = self.safety_cap {
            if state.buffer.len() >= cap {
                return self.overflow(state, cap);
            }
        }
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
        if self.blocks {
            state.outstanding = state.outstanding.saturating_sub(1);
            if state.outstanding == 0 {
                self.stats.set_blocked(true);
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

fn overflow_error(cap: usize) -> Error {
    Error::Overflow {
        what: "unbounded queue (safety cap)",
        limit: cap as u64,
    }
}

/// The output half of a buffered queue: emits what is queued against downstream demand.
pub struct Emitter<T, S> {
    shared: Arc<Shared<T>>,
    downstream: Option<S>,
    demand: Demand,
    config: QueueConfig<T>,
    stats: Arc<QueueStats>,
    blocks: bool,
    replenish: u64,
    taken: u64,
    /// Items moved out of the shared buffer under one lock, emitted without it. They still
    /// count as queued until emitted.
    local: VecDeque<T>,
    /// The last purge request applied to `local`.
    purges_seen: u64,
}

impl<T, S> std::fmt::Debug for Emitter<T, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Emitter")
            .field("blocks", &self.blocks)
            .field("local", &self.local.len())
            .finish()
    }
}

/// What a look at the shared buffer found.
enum Refill {
    /// Items moved to the local buffer: emit them.
    Items,
    /// Something changed while registering: look again.
    Again,
    /// Nothing to do until a wake-up.
    Wait,
    /// The stream ended: `None` completed, `Some(e)` failed.
    End(Option<Error>),
    /// The safety cap tripped.
    Overflowed(usize),
    /// The subscriber stopped.
    Stop(Stop),
}

impl<T, S: Subscriber<T>> Emitter<T, S> {
    /// Emits what it can. `Ready` once the subscriber has been released.
    pub(super) fn poll(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if self.downstream.is_none() {
            return Poll::Ready(());
        }
        self.apply_purges(cx);
        let mut budget = crate::source::YIELD_BUDGET;
        loop {
            if let Err(stop) = self.demand.check() {
                return self.stop(stop);
            }
            if self.local.is_empty() {
                match self.refill(cx) {
                    Refill::Items => {}
                    Refill::Again => continue,
                    Refill::Wait => return Poll::Pending,
                    Refill::End(end) => return self.release(Some(end)),
                    Refill::Overflowed(cap) => return self.overflowed(cap),
                    Refill::Stop(stop) => return self.stop(stop),
                }
            } else if budget == crate::source::YIELD_BUDGET {
                // Once per poll with items in hand: the upstream runs in this same task, so
                // the cap cannot trip in the middle of this loop.
                let overflowed = self.shared.lock().overflowed;
                if let Some(cap) = overflowed {
                    return self.overflowed(cap);
                }
            }
            let Some(item) = self.local.pop_front() else {
                continue;
            };
            if self.blocks {
                self.grant_upstream(1);
            }
            self.stats.popped(self.config.weight(&item));
            self.demand.consume();
            if let Some(downstream) = self.downstream.as_mut() {
                downstream.on_next(item);
            }
            budget -= 1;
            if budget == 0 {
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
        }
    }

    /// Moves items from the shared buffer within the demand, or finds out what to wait for.
    fn refill(&mut self, cx: &mut Context<'_>) -> Refill {
        let permits = match self.demand.try_ready() {
            Ok(p) => p,
            Err(stop) => return Refill::Stop(stop),
        };
        let mut state = self.shared.lock();
        if let Some(cap) = state.overflowed {
            return Refill::Overflowed(cap);
        }
        for _ in 0..permits.min(TAKE) {
            match state.buffer.pop() {
                Some(item) => self.local.push_back(item),
                None => break,
            }
        }
        if !self.local.is_empty() {
            return Refill::Items;
        }
        if state.buffer.is_empty() {
            if let Some(end) = state.handoff.end.take() {
                return Refill::End(end);
            }
        }
        // Nothing to emit: no demand, or nothing queued. Register for both sides, then look at
        // the demand again, so a request or a stop made in between is not lost (items and the
        // end are registered for under the lock, so they cannot be).
        state.handoff.register(cx);
        drop(state);
        match self.demand.poll_stop(cx) {
            Poll::Ready(stop) => Refill::Stop(stop),
            Poll::Pending => match self.demand.try_ready() {
                Err(stop) => Refill::Stop(stop),
                Ok(n) if permits == 0 && n > 0 => Refill::Again,
                Ok(_) => Refill::Wait,
            },
        }
    }

    /// Removes from the local hand what purges asked for since the last poll.
    fn apply_purges(&mut self, cx: &mut Context<'_>) {
        let predicates = self.shared.purges.take(&mut self.purges_seen, cx.waker());
        if predicates.is_empty() || self.local.is_empty() {
            return;
        }
        let mut removed = Vec::new();
        let mut kept = VecDeque::with_capacity(self.local.len());
        for item in self.local.drain(..) {
            if predicates.iter().any(|p| p(&item)) {
                removed.push(item);
            } else {
                kept.push_back(item);
            }
        }
        self.local = kept;
        {
            // The lock orders these counts with the input side's.
            let _state = self.shared.lock();
            for item in &removed {
                self.stats.purged(self.config.weight(item));
            }
        }
        if self.blocks {
            // Their places are free: grant them upstream as if they had been emitted.
            self.grant_upstream(removed.len() as u64);
        }
    }

    /// Blocking mode: `n` places came free; hands the upstream more demand, a few items' worth
    /// at a time.
    fn grant_upstream(&mut self, n: u64) {
        self.taken += n;
        if self.taken < self.replenish {
            return;
        }
        let mut state = self.shared.lock();
        if state.handoff.end.is_none() {
            if state.outstanding == 0 {
                self.stats.set_blocked(false);
            }
            state.outstanding += self.taken;
            let upstream = state.handoff.upstream.clone();
            drop(state);
            if let Some(u) = upstream {
                u.request(self.taken);
            }
        }
        self.taken = 0;
    }

    /// The safety cap tripped: discard what is queued (counted) and fail at once.
    fn overflowed(&mut self, cap: usize) -> Poll<()> {
        let buffered = {
            // The input side has stopped (its `end` is set), so these counts have one writer.
            let mut state = self.shared.lock();
            let mut buffered = Vec::with_capacity(state.buffer.len());
            while let Some(item) = state.buffer.pop() {
                buffered.push(item);
            }
            buffered
        };
        for item in self.local.drain(..).chain(buffered) {
            let bytes = self.config.weight(&item);
            self.stats.dropped(DropReason::Overflow, Some(bytes));
        }
        self.release(Some(Some(overflow_error(cap))))
    }

    /// The downstream cancelled or sent `request(0)`: cancel the source and release the
    /// subscriber, with the `BadRequest` a `request(0)` is owed.
    fn stop(&mut self, stop: Stop) -> Poll<()> {
        let upstream = self.shared.lock().handoff.upstream.clone();
        if let Some(u) = upstream {
            u.cancel();
        }
        self.release(stop.into_error().map(Some))
    }

    /// Signals `end` (`Some(None)`: complete; `Some(Some(e))`: fail; `None`: nothing is owed)
    /// and releases the subscriber.
    fn release(&mut self, end: Option<Option<Error>>) -> Poll<()> {
        if let Some(mut downstream) = self.downstream.take() {
            match end {
                Some(Some(e)) => downstream.on_error(e),
                Some(None) => downstream.on_complete(),
                None => {}
            }
        }
        self.demand.terminate();
        Poll::Ready(())
    }
}
