//! The output half of a buffered queue: emits what is queued against downstream demand.
//!
//! # Waiting without losing a wake-up
//! The emitter waits on two things at once: items (or the end) from upstream, and requests
//! (or a stop) from downstream. Before it returns `Pending` it registers for both and then
//! looks at both again, so that a `cancel`, a `request(0)` or a completion that arrives while
//! the upstream is idle ends the connection at once, instead of when the next item comes.

use std::collections::VecDeque;
use std::sync::Arc;
use std::task::{Context, Poll};

use super::buffered::{Shared, overflow_error};
use super::{DropReason, QueueConfig, QueueStats};
use crate::subscription::{self, Demand, Stop};
use crate::{Error, Subscriber};

/// The most items moved out of the shared buffer per lock, for a downstream that takes items
/// one at a time.
const TAKE: u64 = 256;
/// The most items handed over in one `on_next_batch`, for a downstream that takes batches.
const BULK: u64 = 1024;

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
    /// For a downstream that takes batches: the items moved out under one lock and handed
    /// over at once in the same poll (so empty between polls).
    batch: Vec<T>,
    /// The last purge request applied to `local`.
    purges_seen: u64,
    /// Whether demand went upstream since [`take_granted`](Self::take_granted) last looked.
    granted: bool,
    /// Whether the last look at the buffer found it empty while the downstream had demand: the
    /// source, not the sink, is what the queue waits on.
    starved: bool,
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
    /// The output half of a buffered connection over `shared`: subscribes `downstream` and
    /// serves it from the buffer.
    pub(super) fn serve(
        shared: Arc<Shared<T>>,
        mut downstream: S,
        config: QueueConfig<T>,
        stats: Arc<QueueStats>,
    ) -> Self {
        let (down_subscription, demand) = subscription::pair();
        downstream.on_subscribe(down_subscription);
        // Small grants: the source follows the sink smoothly instead of in bursts.
        let replenish = (shared.capacity as u64 / 8).clamp(1, 64);
        Emitter {
            blocks: shared.blocks,
            shared,
            downstream: Some(downstream),
            demand,
            config,
            stats,
            replenish,
            taken: 0,
            local: VecDeque::new(),
            batch: Vec::new(),
            purges_seen: 0,
            granted: false,
            starved: false,
        }
    }

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
            let bulk = self.local.is_empty()
                && self.downstream.as_ref().is_some_and(|d| d.takes_batches());
            if self.local.is_empty() {
                let limit = if bulk {
                    BULK.min(u64::from(budget))
                } else {
                    TAKE
                };
                match self.refill(cx, bulk, limit) {
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
            let emitted = if bulk {
                self.emit_batch()
            } else {
                self.emit_one()
            };
            budget = budget.saturating_sub(emitted);
            if budget == 0 {
                // A full turn: the task yields, and the upstream waits for the next poll.
                self.granted = false;
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
        }
    }

    /// Hands the next local item downstream; how many went (0 or 1).
    fn emit_one(&mut self) -> u32 {
        let Some(item) = self.local.pop_front() else {
            return 0;
        };
        if self.blocks {
            self.grant_upstream(1);
        }
        self.stats.popped(self.config.weight(&item));
        self.demand.consume();
        if let Some(downstream) = self.downstream.as_mut() {
            downstream.on_next(item);
        }
        1
    }

    /// Hands the whole batch downstream in one call; how many went.
    fn emit_batch(&mut self) -> u32 {
        let n = self.batch.len();
        if n == 0 {
            return 0;
        }
        if self.blocks {
            self.grant_upstream(n as u64);
        }
        self.stats
            .popped_n(n as u64, self.config.weight_all(&self.batch));
        self.demand.consume_n(n as u64);
        if let Some(downstream) = self.downstream.as_mut() {
            downstream.on_next_batch(&mut self.batch);
        }
        self.batch.clear();
        n as u32
    }

    /// Moves items from the shared buffer within the demand, or finds out what to wait for.
    fn refill(&mut self, cx: &mut Context<'_>, bulk: bool, limit: u64) -> Refill {
        let permits = match self.demand.try_ready() {
            Ok(p) => p,
            Err(stop) => return Refill::Stop(stop),
        };
        let mut state = self.shared.lock();
        if let Some(cap) = state.overflowed {
            return Refill::Overflowed(cap);
        }
        let n = permits.min(limit);
        if bulk {
            state.buffer.take_into(&mut self.batch, n as usize);
        } else {
            for _ in 0..n {
                match state.buffer.pop() {
                    Some(item) => self.local.push_back(item),
                    None => break,
                }
            }
        }
        if !self.local.is_empty() || !self.batch.is_empty() {
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
                Ok(_) => {
                    self.starved = permits > 0;
                    Refill::Wait
                }
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
                self.granted = true;
            }
        }
        self.taken = 0;
    }

    /// Whether demand went upstream since the last call while the queue ran dry with demand
    /// downstream (and the last poll did not use up its budget): the upstream, in this same
    /// task, is what holds the sink up, and may have more to give at once.
    pub(super) fn take_granted(&mut self) -> bool {
        std::mem::take(&mut self.granted) && std::mem::take(&mut self.starved)
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
