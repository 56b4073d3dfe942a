//! The subscription: the subscriber's handle for `request(n)` and `cancel`, and the
//! publisher's view of it, [`Demand`].
//!
//! # Demand
//! `request(n)` adds `n` permits to a shared atomic counter (saturating at
//! [`UNBOUNDED`](crate::demand::UNBOUNDED)). The publisher moves permits from the shared counter
//! into a local one in bulk, so emitting an item costs no atomic read-modify-write: one atomic
//! swap moves a whole request batch. A request that finds the counter empty wakes the
//! publisher's task.
//!
//! # Cancellation
//! `cancel` sets a flag and wakes the publisher. The publisher checks the flag before every
//! emission, so at most the item being emitted when `cancel` was called still arrives
//! (rule 2.8); then it drops the subscriber (rule 3.13). `cancel` is idempotent and
//! `request` after `cancel` does nothing (rules 3.5–3.7).
//!
//! # Requests never recurse
//! Neither `request` nor `cancel` calls the subscriber: they only touch atomics and wake a task.
//! A subscriber may therefore call them from inside `on_next` (rule 3.2) and the stack never
//! grows (rule 3.3).
//!
//! # Threads
//! [`Subscription`] is `Send + Sync + Clone`: it may be used from any task or thread. Calls
//! made concurrently are safe, and no request is lost (checked by `tests/demand_stress.rs`).

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::task::{Context, Poll};

use futures_util::task::AtomicWaker;

use crate::Error;
use crate::demand;

const CANCELLED: u8 = 1;
const BAD_REQUEST: u8 = 2;

#[derive(Debug)]
struct Cell {
    demand: AtomicU64,
    flags: AtomicU8,
    waker: AtomicWaker,
}

/// Creates a connected pair: the [`Subscription`] to hand to a subscriber's `on_subscribe`, and
/// the [`Demand`] the publisher reads it through.
///
/// ```
/// use reactive::subscription;
/// let (subscription, mut demand) = subscription::pair();
/// subscription.request(2);
/// assert_eq!(demand.try_ready(), Ok(2));
/// demand.consume();
/// assert_eq!(demand.try_ready(), Ok(1));
/// ```
pub fn pair() -> (Subscription, Demand) {
    let cell = Arc::new(Cell {
        demand: AtomicU64::new(0),
        flags: AtomicU8::new(0),
        waker: AtomicWaker::new(),
    });
    (
        Subscription { cell: cell.clone() },
        Demand { cell, local: 0 },
    )
}

/// The subscriber's handle: signals demand with [`request`](Self::request) and stops the flow
/// with [`cancel`](Self::cancel).
#[derive(Debug, Clone)]
pub struct Subscription {
    cell: Arc<Cell>,
}

impl Subscription {
    /// Asks for `n` more items. Demand adds up and saturates at 2^63 − 1, which means
    /// "unbounded" (rule 3.17).
    ///
    /// `request(0)` is a contract violation: the publisher answers with
    /// [`Error::BadRequest`] through `on_error` and the subscription is cancelled (rule 3.9).
    /// After `cancel`, `request` does nothing (rule 3.6). Never panics.
    pub fn request(&self, n: u64) {
        let cell = &*self.cell;
        if cell.flags.load(Ordering::Relaxed) & CANCELLED != 0 {
            return;
        }
        if n == 0 {
            cell.flags.fetch_or(BAD_REQUEST, Ordering::AcqRel);
            cell.waker.wake();
            return;
        }
        let mut current = cell.demand.load(Ordering::Relaxed);
        loop {
            if demand::is_unbounded(current) {
                return;
            }
            let next = demand::add(current, n);
            match cell.demand.compare_exchange_weak(
                current,
                next,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => break,
                Err(actual) => current = actual,
            }
        }
        // The publisher only sleeps on an empty counter, so only the request that fills an
        // empty counter needs to wake it.
        if current == 0 {
            cell.waker.wake();
        }
    }

    /// Asks the publisher to stop and to release the subscriber. Idempotent; never panics
    /// (rules 3.5, 3.7, 3.15).
    pub fn cancel(&self) {
        if self.cell.flags.fetch_or(CANCELLED, Ordering::AcqRel) & CANCELLED == 0 {
            self.cell.waker.wake();
        }
    }

    /// Whether the subscription has ended: `cancel` or `request(0)` was called, the publisher
    /// signalled a terminal signal, or its connection was dropped.
    pub fn is_cancelled(&self) -> bool {
        self.cell.flags.load(Ordering::Acquire) != 0
    }

    /// Why the subscription ended, if it did: what its publisher would find with
    /// [`Demand::check`]. For operators that forward items from another connection and must
    /// stop at once when their own subscriber stops.
    pub(crate) fn stopped(&self) -> Option<Stop> {
        stop_of(self.cell.flags.load(Ordering::Acquire))
    }

    /// Marks the subscription ended by its publisher (rule 1.6), for operators that hand the
    /// subscriber a subscription of their own but let another connection emit.
    pub(crate) fn terminate(&self) {
        self.cell.flags.fetch_or(CANCELLED, Ordering::AcqRel);
    }

    /// Whether `self` and `other` are handles of the same subscription.
    pub fn same_as(&self, other: &Subscription) -> bool {
        Arc::ptr_eq(&self.cell, &other.cell)
    }
}

fn stop_of(flags: u8) -> Option<Stop> {
    match flags {
        0 => None,
        flags if flags & CANCELLED != 0 => Some(Stop::Cancelled),
        _ => Some(Stop::BadRequest),
    }
}

/// Why a publisher must stop emitting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Stop {
    /// The subscriber cancelled: end without a signal.
    Cancelled,
    /// The subscriber called `request(0)`: signal [`Error::BadRequest`] and end.
    BadRequest,
}

impl Stop {
    /// The terminal signal the subscriber is owed, if any.
    pub fn into_error(self) -> Option<Error> {
        match self {
            Stop::Cancelled => None,
            Stop::BadRequest => Some(Error::BadRequest),
        }
    }

    /// Ends a connection on this stop: signals `on_error` for a `request(0)` (rule 3.9),
    /// nothing for a cancel, then releases the demand and the subscriber.
    pub(crate) fn end<T, S: crate::Subscriber<T>>(
        self,
        subscriber: &mut Option<S>,
        demand: &Demand,
    ) {
        if let (Some(error), Some(s)) = (self.into_error(), subscriber.as_mut()) {
            s.on_error(error);
        }
        demand.terminate();
        *subscriber = None;
    }
}

/// The publisher's side of a subscription: permits to emit.
///
/// Call [`poll_ready`](Self::poll_ready) before each emission and [`consume`](Self::consume)
/// after it. Both are cheap on the hot path: a relaxed load of the flags and a local decrement.
#[derive(Debug)]
pub struct Demand {
    cell: Arc<Cell>,
    local: u64,
}

impl Demand {
    /// Ready with the number of permits in hand (at least one; `UNBOUNDED` if unbounded), or
    /// with the reason to stop. Pending, with the task's waker registered, when there is no
    /// demand. Permits already in hand are reported first: requests made since they were taken
    /// (an unbounded one included) show once they are used.
    #[inline]
    pub fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<u64, Stop>> {
        if let Err(stop) = self.check() {
            return Poll::Ready(Err(stop));
        }
        if self.local > 0 {
            return Poll::Ready(Ok(self.local));
        }
        self.poll_refill(cx)
    }

    #[cold]
    fn poll_refill(&mut self, cx: &mut Context<'_>) -> Poll<Result<u64, Stop>> {
        match self.try_ready() {
            Ok(0) => {}
            other => return Poll::Ready(other),
        }
        self.cell.waker.register(cx.waker());
        match self.try_ready() {
            Ok(0) => Poll::Pending,
            other => Poll::Ready(other),
        }
    }

    /// Like [`poll_ready`](Self::poll_ready) without waiting: `Ok(0)` when there is no demand.
    /// The permits in hand come first, as there.
    pub fn try_ready(&mut self) -> Result<u64, Stop> {
        self.check()?;
        if self.local == 0 {
            self.local = self.cell.demand.swap(0, Ordering::AcqRel);
        }
        Ok(self.local)
    }

    /// For operators that forward demand upstream instead of emitting: the requests made since
    /// the last call (saturating; `UNBOUNDED` once unbounded), or the reason to stop. Local
    /// permits are left alone.
    pub fn take_requests(&mut self) -> Result<u64, Stop> {
        self.check()?;
        Ok(self.cell.demand.swap(0, Ordering::AcqRel))
    }

    /// Uses one permit. Call once per `on_next`.
    #[inline]
    pub fn consume(&mut self) {
        debug_assert!(self.local > 0, "rule 1.1 broken: emitted without demand");
        self.local = demand::sub(self.local, 1);
    }

    /// Uses `n` permits at once: call before an `on_next_batch` of `n` items. `n` must not
    /// exceed the permits [`poll_ready`](Self::poll_ready) or [`try_ready`](Self::try_ready)
    /// reported.
    #[inline]
    pub fn consume_n(&mut self, n: u64) {
        debug_assert!(self.local >= n, "rule 1.1 broken: emitted without demand");
        self.local = demand::sub(self.local, n);
    }

    /// Registers the task to be woken by `request`, `cancel` or `request(0)`. A publisher that
    /// waits on something else (a stream, a timer) calls this before returning `Pending`, so a
    /// `cancel` still reaches it.
    pub fn register(&self, cx: &mut Context<'_>) {
        self.cell.waker.register(cx.waker());
    }

    /// Whether the subscriber asked to stop.
    #[inline]
    pub fn check(&self) -> Result<(), Stop> {
        match stop_of(self.cell.flags.load(Ordering::Relaxed)) {
            None => Ok(()),
            Some(stop) => Err(stop),
        }
    }

    /// Registers the task to be woken by `request`, `cancel` or `request(0)`, *then* checks
    /// whether the subscriber asked to stop: `Ready` with the reason, or `Pending` with the
    /// waker registered.
    ///
    /// This is the step a publisher must take before it returns `Pending` while it waits on
    /// something other than demand (an upstream, a timer, a channel), demand outstanding or
    /// not. Register first and check second: a `cancel` that lands between the two is then
    /// either seen by the check or wakes the registered task, never lost. Checking first and
    /// registering second loses it, and the connection (with its subscriber and its source)
    /// then lives until the next item arrives, which for an idle source is never.
    ///
    /// # Examples
    /// A publisher that emits what a channel delivers, and still ends at once when cancelled
    /// while the channel is silent:
    /// ```
    /// use std::future::Future;
    /// use std::pin::Pin;
    /// use std::task::{Context, Poll};
    /// use reactive::{Subscriber, subscription::{self, Demand}};
    ///
    /// struct Relay<S> { rx: tokio::sync::mpsc::Receiver<u64>, demand: Demand, subscriber: Option<S> }
    ///
    /// impl<S: Subscriber<u64> + Unpin> Future for Relay<S> {
    ///     type Output = ();
    ///     fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
    ///         let this = &mut *self;
    ///         loop {
    ///             let Some(subscriber) = this.subscriber.as_mut() else { return Poll::Ready(()) };
    ///             match this.demand.poll_ready(cx) {
    ///                 Poll::Ready(Ok(_)) => {}
    ///                 Poll::Ready(Err(stop)) => {
    ///                     if let Some(e) = stop.into_error() { subscriber.on_error(e); }
    ///                     this.subscriber = None;
    ///                     continue;
    ///                 }
    ///                 Poll::Pending => return Poll::Pending, // waits on demand: registered
    ///             }
    ///             match this.rx.poll_recv(cx) {
    ///                 Poll::Ready(Some(x)) => { this.demand.consume(); subscriber.on_next(x); }
    ///                 Poll::Ready(None) => { subscriber.on_complete(); this.subscriber = None; }
    ///                 // Waits on the channel with demand outstanding: a cancel must still wake us.
    ///                 Poll::Pending => match this.demand.poll_stop(cx) {
    ///                     Poll::Ready(_) => continue, // poll_ready reports the stop
    ///                     Poll::Pending => return Poll::Pending,
    ///                 },
    ///             }
    ///         }
    ///     }
    /// }
    /// # struct Ignore;
    /// # impl Subscriber<u64> for Ignore {
    /// #     fn on_subscribe(&mut self, _: reactive::Subscription) {}
    /// #     fn on_next(&mut self, _: u64) {}
    /// #     fn on_error(&mut self, _: reactive::Error) {}
    /// #     fn on_complete(&mut self) {}
    /// # }
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let (_tx, rx) = tokio::sync::mpsc::channel(1); // alive and silent
    /// let (subscription, demand) = subscription::pair();
    /// subscription.request(10);
    /// let relay = tokio::spawn(Relay { rx, demand, subscriber: Some(Ignore) });
    /// tokio::task::yield_now().await; // the relay now waits on the channel, demand outstanding
    /// subscription.cancel();
    /// relay.await.unwrap(); // it ends: the cancel woke it
    /// # }
    /// ```
    pub fn poll_stop(&self, cx: &mut Context<'_>) -> Poll<Stop> {
        self.cell.waker.register(cx.waker());
        match self.check() {
            Ok(()) => Poll::Pending,
            Err(stop) => Poll::Ready(stop),
        }
    }

    /// Marks the subscription as ended by the publisher (after `on_complete` or `on_error`),
    /// so that later `request` and `cancel` calls are no-ops (rule 1.6).
    pub fn terminate(&self) {
        self.cell.flags.fetch_or(CANCELLED, Ordering::AcqRel);
    }

    /// Permits granted but not yet used: local plus shared. For metrics and tests.
    pub fn outstanding(&self) -> u64 {
        demand::add(self.local, self.cell.demand.load(Ordering::Acquire))
    }
}

/// Dropping the publisher's side ends the subscription: once the connection that emits is
/// gone, nothing can be emitted any more, so the subscriber's handle reports itself cancelled
/// and its later calls are no-ops.
impl Drop for Demand {
    fn drop(&mut self) {
        self.cell.flags.fetch_or(CANCELLED, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::demand::UNBOUNDED;
    use futures_util::task::noop_waker_ref;

    #[test]
    fn requests_add_up_and_saturate() {
        let (s, mut d) = pair();
        s.request(3);
        s.request(4);
        assert_eq!(d.try_ready(), Ok(7));
        s.request(u64::MAX);
        d.consume();
        // local still holds 6; shared holds UNBOUNDED
        assert_eq!(d.outstanding(), UNBOUNDED);
    }

    #[test]
    fn unbounded_is_never_decremented() {
        let (s, mut d) = pair();
        s.request(UNBOUNDED);
        assert_eq!(d.try_ready(), Ok(UNBOUNDED));
        for _ in 0..1000 {
            d.consume();
        }
        assert_eq!(d.try_ready(), Ok(UNBOUNDED));
    }

    #[test]
    fn request_zero_stops_with_bad_request() {
        let (s, mut d) = pair();
        s.request(5);
        s.request(0);
        assert_eq!(d.try_ready(), Err(Stop::BadRequest));
        assert!(matches!(
            Stop::BadRequest.into_error(),
            Some(Error::BadRequest)
        ));
    }

    #[test]
    fn request_after_cancel_is_ignored() {
        let (s, mut d) = pair();
        s.cancel();
        s.cancel();
        s.request(5);
        s.request(0);
        assert_eq!(d.try_ready(), Err(Stop::Cancelled));
        assert_eq!(d.outstanding(), 0);
    }

    #[test]
    fn dropping_the_demand_cancels_the_subscription() {
        let (s, d) = pair();
        assert!(!s.is_cancelled());
        drop(d);
        assert!(s.is_cancelled());
        s.request(1); // a no-op, not a panic
    }

    #[test]
    fn poll_stop_registers_before_it_checks() {
        use std::sync::Arc;
        use std::task::Wake;
        struct Flag(std::sync::atomic::AtomicBool);
        impl Wake for Flag {
            fn wake(self: Arc<Self>) {
                self.0.store(true, Ordering::SeqCst);
            }
        }
        let (s, mut d) = pair();
        s.request(3);
        assert_eq!(d.try_ready(), Ok(3)); // demand outstanding: poll_ready would not register
        let flag = Arc::new(Flag(false.into()));
        let waker = std::task::Waker::from(flag.clone());
        let mut cx = Context::from_waker(&waker);
        assert!(d.poll_stop(&mut cx).is_pending());
        s.cancel();
        assert!(flag.0.load(Ordering::SeqCst), "the cancel woke the task");
        assert_eq!(d.poll_stop(&mut cx), Poll::Ready(Stop::Cancelled));
    }

    #[test]
    fn empty_counter_registers_and_request_wakes() {
        let (s, mut d) = pair();
        let mut cx = Context::from_waker(noop_waker_ref());
        assert!(d.poll_ready(&mut cx).is_pending());
        s.request(1);
        assert_eq!(d.poll_ready(&mut cx), Poll::Ready(Ok(1)));
    }
}
