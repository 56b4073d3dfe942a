//! The source the verification puts under an operator: always ready, pausing between items,
//! or idle, so that an operator's rules are checked over each kind of upstream it will meet.
//!
//! An operator that only ever sees an upstream that is always ready can hide a lost wake-up:
//! something is always about to poll it again. Over a [`pausing`](Upstream::pausing) upstream
//! every item arrives from another task after the operator has returned `Pending`; over an
//! [`idle`](Upstream::idle) one nothing arrives at all, so a `cancel` or a `request(0)` is
//! noticed only if the operator registered for it.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll};

use futures_util::task::AtomicWaker;

use crate::subscription::{self, Demand};
use crate::{Publisher, Subscriber};

/// How an [`Upstream`] delivers its items.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pace {
    Ready,
    Pausing,
    Idle,
}

/// A publisher of `0, 1, …, n − 1` (as `u64`) for putting an operator under test. It completes
/// without further demand once its last item is out, as a source that knows its length should.
///
/// Its connection reports to the verification when it is dropped, so the suite can check that
/// an operator releases its source, not only its subscriber.
#[derive(Debug)]
pub struct Upstream {
    n: u64,
    pace: Pace,
    released: Arc<AtomicBool>,
}

thread_local! {
    /// The release flags of the upstreams built on this thread since the verification last
    /// looked: how the suite finds the upstream a factory built, without the factory's help.
    static BUILT: RefCell<Vec<Arc<AtomicBool>>> = const { RefCell::new(Vec::new()) };
}

/// Runs `build` and returns what it built with the release flags of the upstreams it made.
pub(crate) fn tracking<R>(build: impl FnOnce() -> R) -> (R, Vec<Arc<AtomicBool>>) {
    BUILT.with(|b| b.borrow_mut().clear());
    let built = build();
    (built, BUILT.with(|b| std::mem::take(&mut *b.borrow_mut())))
}

impl Upstream {
    fn new(n: u64, pace: Pace) -> Self {
        let released = Arc::new(AtomicBool::new(false));
        BUILT.with(|b| b.borrow_mut().push(released.clone()));
        Upstream { n, pace, released }
    }

    /// `n` items, each emitted as soon as there is demand for it.
    pub fn ready(n: u64) -> Self {
        Self::new(n, Pace::Ready)
    }

    /// `n` items that arrive from another task, a few at a time, each batch only after the
    /// connection has returned `Pending` waiting for it. Needs a tokio runtime.
    pub fn pausing(n: u64) -> Self {
        Self::new(n, Pace::Pausing)
    }

    /// An upstream that is alive and silent: it never emits and never completes.
    pub fn idle() -> Self {
        Self::new(u64::MAX, Pace::Idle)
    }
}

impl Publisher for Upstream {
    type Item = u64;
    type Connection<S: Subscriber<u64>> = UpstreamConnection<S>;

    fn connect<S: Subscriber<u64>>(self, mut subscriber: S) -> Self::Connection<S> {
        let (subscription, demand) = subscription::pair();
        subscriber.on_subscribe(subscription);
        let gate = (self.pace == Pace::Pausing).then(|| {
            let gate = Arc::new(Gate::default());
            tokio::spawn(feed(gate.clone()));
            gate
        });
        UpstreamConnection {
            subscriber: Some(subscriber),
            demand,
            next: 0,
            n: self.n,
            pace: self.pace,
            gate,
            released: self.released,
        }
    }
}

/// Items released to a pausing upstream by its feeder task.
#[derive(Debug, Default)]
struct Gate {
    open_to: AtomicU64,
    waker: AtomicWaker,
    wanted: tokio::sync::Notify,
    closed: AtomicBool,
}

/// Releases a few more items each time the connection asks, after a yield, so that each
/// batch arrives from outside the connection's poll.
async fn feed(gate: Arc<Gate>) {
    let mut round = 0u64;
    loop {
        gate.wanted.notified().await;
        if gate.closed.load(Ordering::Acquire) {
            return;
        }
        tokio::task::yield_now().await;
        round += 1;
        gate.open_to.fetch_add(1 + round % 7, Ordering::AcqRel);
        gate.waker.wake();
    }
}

/// The connection of an [`Upstream`].
#[derive(Debug)]
#[must_use = "a connection emits nothing unless polled"]
pub struct UpstreamConnection<S> {
    subscriber: Option<S>,
    demand: Demand,
    next: u64,
    n: u64,
    pace: Pace,
    gate: Option<Arc<Gate>>,
    released: Arc<AtomicBool>,
}

impl<S> Drop for UpstreamConnection<S> {
    fn drop(&mut self) {
        self.released.store(true, Ordering::Release);
        if let Some(gate) = &self.gate {
            gate.closed.store(true, Ordering::Release);
            gate.wanted.notify_one();
        }
    }
}

impl<S> Unpin for UpstreamConnection<S> {}

impl<S: Subscriber<u64>> UpstreamConnection<S> {
    /// Whether the next item may go now; if not, the task is registered to be woken when it
    /// may, or when the subscriber stops.
    fn poll_item(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        match self.pace {
            Pace::Ready => Poll::Ready(()),
            Pace::Idle => Poll::Pending,
            Pace::Pausing => {
                let gate = self.gate.as_ref().expect("a pausing upstream has a gate");
                if self.next < gate.open_to.load(Ordering::Acquire) {
                    return Poll::Ready(());
                }
                gate.waker.register(cx.waker());
                if self.next < gate.open_to.load(Ordering::Acquire) {
                    return Poll::Ready(());
                }
                gate.wanted.notify_one();
                Poll::Pending
            }
        }
    }

    fn end(&mut self, signal: impl FnOnce(&mut S)) -> Poll<()> {
        if let Some(mut subscriber) = self.subscriber.take() {
            signal(&mut subscriber);
        }
        self.demand.terminate();
        Poll::Ready(())
    }
}

impl<S: Subscriber<u64>> Future for UpstreamConnection<S> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = &mut *self;
        if this.subscriber.is_none() {
            return Poll::Ready(());
        }
        for _ in 0..crate::source::YIELD_BUDGET {
            if this.next >= this.n {
                // Known to be done: complete without waiting for demand (rule 1.5).
                return this.end(|s| s.on_complete());
            }
            match this.demand.poll_ready(cx) {
                Poll::Ready(Ok(_)) => {}
                Poll::Ready(Err(stop)) => {
                    return this.end(|s| {
                        if let Some(e) = stop.into_error() {
                            s.on_error(e)
                        }
                    });
                }
                Poll::Pending => return Poll::Pending,
            }
            if this.poll_item(cx).is_pending() {
                // Waiting on the source with demand outstanding: a stop must still wake us.
                if this.demand.poll_stop(cx).is_ready() {
                    continue;
                }
                return Poll::Pending;
            }
            let item = this.next;
            this.next += 1;
            this.demand.consume();
            if let Some(s) = this.subscriber.as_mut() {
                s.on_next(item);
            }
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}
