//! The probe: a subscriber that records every signal and checks how it was called.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;

use crate::{Error, Subscriber, Subscription};

/// A signal as the probe saw it (items are counted, not kept).
#[derive(Debug, Clone)]
pub enum Signal {
    /// `on_subscribe`.
    Subscribe,
    /// `on_next`.
    Next,
    /// `on_error`, with the error.
    Error(Error),
    /// `on_complete`.
    Complete,
}

#[derive(Debug, Default)]
struct Shared {
    log: Mutex<Vec<Signal>>,
    subscription: Mutex<Option<Subscription>>,
    active: AtomicBool,
    overlaps: AtomicU64,
    max_depth: AtomicU32,
    released: AtomicBool,
    request_in_on_next: u64,
    /// Cancel from inside this `on_next` (1-based); 0: never.
    cancel_at: u64,
    nexts: AtomicU64,
    /// Whether the probe takes batches (`on_next_batch`); each of its items is logged as a
    /// `Next`, and requests and the cancel happen as if they had come one by one.
    batches: bool,
    /// `on_next` and `on_next_batch` calls.
    deliveries: AtomicU64,
    /// The items received by the end of the delivery in which the probe cancelled itself.
    nexts_when_cancelled: AtomicU64,
    /// `on_next_batch` calls made although `takes_batches` said no.
    unasked_batches: AtomicU64,
}

thread_local! {
    static DEPTH: Cell<u32> = const { Cell::new(0) };
}

/// The subscriber the publisher verification connects. It accepts items of any type.
#[derive(Debug)]
pub struct Probe {
    shared: Arc<Shared>,
}

/// The test's side of a [`Probe`]: its log, and its subscription.
#[derive(Debug, Clone)]
pub struct ProbeHandle {
    shared: Arc<Shared>,
}

impl Probe {
    /// A probe and its handle. With `request_in_on_next > 0`, the probe calls
    /// `request(request_in_on_next)` from inside each `on_next`.
    pub fn new(request_in_on_next: u64) -> (Probe, ProbeHandle) {
        Self::with(Shared {
            request_in_on_next,
            ..Shared::default()
        })
    }

    /// A probe that cancels its subscription from inside its `n`-th `on_next`.
    pub fn cancelling_at(n: u64) -> (Probe, ProbeHandle) {
        Self::with(Shared {
            cancel_at: n,
            ..Shared::default()
        })
    }

    /// A probe with the given options and its handle: see [`new`](Self::new) and
    /// [`cancelling_at`](Self::cancelling_at); with `batches`, it takes its items in batches
    /// (`takes_batches() == true`), logs each item as a `Next`, and requests (or cancels) as
    /// if they had come one by one.
    pub fn with_options(
        request_in_on_next: u64,
        cancel_at: u64,
        batches: bool,
    ) -> (Probe, ProbeHandle) {
        Self::with(Shared {
            request_in_on_next,
            cancel_at,
            batches,
            ..Shared::default()
        })
    }

    fn with(shared: Shared) -> (Probe, ProbeHandle) {
        let shared = Arc::new(shared);
        (
            Probe {
                shared: shared.clone(),
            },
            ProbeHandle { shared },
        )
    }

    fn record(&self, signal: Signal) {
        self.record_many(signal, 1);
    }

    /// Logs `signal` `count` times as one call (a batch of `count` items when it is `Next`).
    fn record_many(&self, signal: Signal, count: u64) {
        let shared = &*self.shared;
        if shared.active.swap(true, Ordering::AcqRel) {
            shared.overlaps.fetch_add(1, Ordering::Relaxed);
        }
        let depth = DEPTH.with(|d| {
            d.set(d.get() + 1);
            d.get()
        });
        shared.max_depth.fetch_max(depth, Ordering::Relaxed);
        let next = matches!(signal, Signal::Next);
        {
            let mut log = lock(&shared.log);
            for _ in 1..count {
                log.push(signal.clone());
            }
            log.push(signal);
        }
        if next {
            shared.deliveries.fetch_add(1, Ordering::AcqRel);
            let before = shared.nexts.fetch_add(count, Ordering::AcqRel);
            for nth in before + 1..=before + count {
                self.react_to(nth, before + count);
            }
        }
        DEPTH.with(|d| d.set(d.get() - 1));
        shared.active.store(false, Ordering::Release);
    }

    /// What the probe does on its `nth` item, delivered in a call that ends at item `last`.
    fn react_to(&self, nth: u64, last: u64) {
        let shared = &*self.shared;
        if shared.request_in_on_next == 0 && shared.cancel_at != nth {
            return;
        }
        let subscription = lock(&shared.subscription).clone();
        if let Some(subscription) = subscription {
            if shared.cancel_at == nth {
                subscription.cancel();
                shared.nexts_when_cancelled.store(last, Ordering::Release);
            } else {
                subscription.request(shared.request_in_on_next);
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl<T> Subscriber<T> for Probe {
    fn on_subscribe(&mut self, subscription: Subscription) {
        {
            let mut slot = lock(&self.shared.subscription);
            if slot.is_none() {
                *slot = Some(subscription);
            }
        }
        self.record(Signal::Subscribe);
    }
    fn on_next(&mut self, item: T) {
        drop(item);
        self.record(Signal::Next);
    }
    fn on_next_batch(&mut self, items: &mut Vec<T>) {
        if !self.shared.batches {
            // Publishers must not do this: a subscriber that keeps the default `on_next_batch`
            // would get the rest of the batch after a cancel made in `on_next`.
            self.shared.unasked_batches.fetch_add(1, Ordering::Relaxed);
        }
        let count = items.len() as u64;
        items.clear();
        if count > 0 {
            self.record_many(Signal::Next, count);
        }
    }
    fn takes_batches(&self) -> bool {
        self.shared.batches
    }
    fn on_error(&mut self, error: Error) {
        self.record(Signal::Error(error));
    }
    fn on_complete(&mut self) {
        self.record(Signal::Complete);
    }
}

impl Drop for Probe {
    fn drop(&mut self) {
        self.shared.released.store(true, Ordering::Release);
    }
}

impl ProbeHandle {
    /// A copy of the log.
    pub fn signals(&self) -> Vec<Signal> {
        lock(&self.shared.log).clone()
    }

    /// How many `on_next` calls arrived.
    pub fn nexts(&self) -> u64 {
        lock(&self.shared.log)
            .iter()
            .filter(|s| matches!(s, Signal::Next))
            .count() as u64
    }

    /// How many deliveries of items arrived: `on_next` calls, and `on_next_batch` calls for a
    /// probe that takes batches.
    pub fn deliveries(&self) -> u64 {
        self.shared.deliveries.load(Ordering::Acquire)
    }

    /// The items received by the end of the delivery in which a
    /// [`cancelling_at`](Probe::cancelling_at) probe cancelled itself (0 before it did): the
    /// `n`-th item for a probe that takes items one by one, the end of that item's batch for
    /// one that takes batches.
    pub fn nexts_when_cancelled(&self) -> u64 {
        self.shared.nexts_when_cancelled.load(Ordering::Acquire)
    }

    /// How many batches arrived although the probe does not take batches.
    pub fn unasked_batches(&self) -> u64 {
        self.shared.unasked_batches.load(Ordering::Acquire)
    }

    /// How many terminal signals arrived.
    pub fn terminals(&self) -> usize {
        lock(&self.shared.log)
            .iter()
            .filter(|s| matches!(s, Signal::Error(_) | Signal::Complete))
            .count()
    }

    /// Whether `on_complete` arrived.
    pub fn completed(&self) -> bool {
        lock(&self.shared.log)
            .iter()
            .any(|s| matches!(s, Signal::Complete))
    }

    /// The first error received, if any.
    pub fn error(&self) -> Option<Error> {
        lock(&self.shared.log).iter().find_map(|s| match s {
            Signal::Error(e) => Some(e.clone()),
            _ => None,
        })
    }

    /// Signals that ran while another signal was still running (rule 1.3).
    pub fn overlaps(&self) -> u64 {
        self.shared.overlaps.load(Ordering::Acquire)
    }

    /// The deepest nesting of signals on one thread's stack (rule 3.3).
    pub fn max_depth(&self) -> u32 {
        self.shared.max_depth.load(Ordering::Acquire)
    }

    /// Whether the publisher dropped the probe (rule 3.13).
    pub fn released(&self) -> bool {
        self.shared.released.load(Ordering::Acquire)
    }

    /// The subscription handed to `on_subscribe`.
    ///
    /// # Panics
    /// When `on_subscribe` was not called yet (rule 1.9).
    pub fn subscription(&self) -> Subscription {
        lock(&self.shared.subscription)
            .clone()
            .expect("rule 1.9 broken: no on_subscribe")
    }

    /// Requests `n` items through the probe's subscription.
    pub fn request(&self, n: u64) {
        self.subscription().request(n)
    }

    /// Cancels the probe's subscription.
    pub fn cancel(&self) {
        self.subscription().cancel()
    }

    /// Waits until `condition` holds, up to `timeout`; returns whether it held.
    pub async fn wait_for(
        &self,
        timeout: Duration,
        condition: impl Fn(&ProbeHandle) -> bool,
    ) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if condition(self) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
}
