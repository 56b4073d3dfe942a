use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use pin_project_lite::pin_project;

use super::{Mode, Offer, Overflow, QueueConfig, QueueStats, ShedBuffer};
use crate::demand::UNBOUNDED;
use crate::handoff::{Handoff, wake};
use crate::subscription::{self, Demand, Stop};
use crate::{Error, Publisher, Subscriber, Subscription};

/// A queue between a publisher and its subscriber. See [`crate::queue`].
pub struct Queue<P: Publisher> {
    upstream: P,
    config: QueueConfig<P::Item>,
    stats: Arc<QueueStats>,
}

impl<P: Publisher> std::fmt::Debug for Queue<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queue")
            .field("config", &self.config)
            .finish()
    }
}

impl<P: Publisher> Queue<P> {
    pub(crate) fn new(upstream: P, config: QueueConfig<P::Item>) -> Self {
        let capacity = match config.mode {
            Mode::Bounded(n) => n as u64,
            Mode::Unbounded { .. } => u64::MAX,
            Mode::Pull => 0,
        };
        Queue {
            upstream,
            config,
            stats: Arc::new(QueueStats::new(capacity)),
        }
    }

    /// The queue's live counters: keep a clone to watch the queue while it runs.
    pub fn stats(&self) -> Arc<QueueStats> {
        self.stats.clone()
    }
}

impl<P: Publisher> Publisher for Queue<P> {
    type Item = P::Item;
    type Connection<S: Subscriber<P::Item>> = QueueConnection<P, S>;

    fn connect<S: Subscriber<P::Item>>(self, subscriber: S) -> Self::Connection<S> {
        let (down_subscription, demand) = subscription::pair();
        if let Mode::Pull = self.config.mode {
            let link = Arc::new(PullLink {
                upstream: Mutex::new(None),
                outstanding: AtomicU64::new(0),
            });
            let pull = PullSubscriber {
                downstream: subscriber,
                down_subscription: Some(down_subscription),
                down: None,
                link: link.clone(),
                stats: self.stats.clone(),
            };
            return QueueConnection {
                pull: Some(self.upstream.connect(pull)),
                upstream: None,
                forward: Some(Forward {
                    demand,
                    link,
                    stats: self.stats,
                }),
                buffered: None,
            };
        }
        let (capacity, safety_cap) = match self.config.mode {
            Mode::Bounded(n) => (n, None),
            Mode::Unbounded { safety_cap } => (usize::MAX, safety_cap),
            Mode::Pull => unreachable!("handled above"),
        };
        let blocks = matches!(self.config.mode, Mode::Bounded(_)) && !self.config.overflow.sheds();
        let policy = if blocks || safety_cap.is_some() || capacity == usize::MAX {
            Overflow::Block
        } else {
            self.config.overflow.clone()
        };
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                buffer: ShedBuffer::new(capacity, policy),
                handoff: Handoff::default(),
                outstanding: 0,
            }),
        });
        let mut subscriber = subscriber;
        subscriber.on_subscribe(down_subscription);
        let input = QueueSubscriber {
            shared: shared.clone(),
            config: self.config.clone(),
            stats: self.stats.clone(),
            initial: if blocks { capacity as u64 } else { UNBOUNDED },
            blocks,
            safety_cap,
            subscribed: false,
        };
        QueueConnection {
            pull: None,
            upstream: Some(self.upstream.connect(input)),
            forward: None,
            buffered: Some(Buffered {
                shared,
                downstream: Some(subscriber),
                demand,
                config: self.config,
                stats: self.stats,
                blocks,
                // Small grants: the source follows the sink smoothly instead of in bursts.
                replenish: (capacity as u64 / 8).clamp(1, 64),
                taken: 0,
                local: std::collections::VecDeque::new(),
            }),
        }
    }
}

pin_project! {
    /// The connection of a [`Queue`]: drives the upstream connection and the emission
    /// downstream in one task.
    #[must_use = "a connection emits nothing unless polled"]
    pub struct QueueConnection<P: Publisher, S: Subscriber<P::Item>> {
        #[pin]
        pull: Option<P::Connection<PullSubscriber<S>>>,
        #[pin]
        upstream: Option<P::Connection<QueueSubscriber<P::Item>>>,
        forward: Option<Forward>,
        buffered: Option<Buffered<P::Item, S>>,
    }
}

impl<P: Publisher, S: Subscriber<P::Item>> std::fmt::Debug for QueueConnection<P, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueueConnection")
            .field("pull", &self.pull.is_some())
            .finish()
    }
}

impl<P: Publisher, S: Subscriber<P::Item>> Future for QueueConnection<P, S> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut this = self.project();
        if let Some(forward) = this.forward.as_mut() {
            forward.poll(cx);
            return match this.pull.as_mut().as_pin_mut() {
                Some(pull) => pull.poll(cx),
                None => Poll::Ready(()),
            };
        }
        if let Some(upstream) = this.upstream.as_mut().as_pin_mut() {
            if upstream.poll(cx).is_ready() {
                this.upstream.set(None);
            }
        }
        match this.buffered.as_mut() {
            Some(buffered) => buffered.poll(cx),
            None => Poll::Ready(()),
        }
    }
}

// ---- pull mode: demand passes through ----

#[derive(Debug)]
struct PullLink {
    upstream: Mutex<Option<Subscription>>,
    /// Requested downstream, forwarded upstream, not yet delivered.
    outstanding: AtomicU64,
}

/// The subscriber a pull-mode [`Queue`] connects upstream.
#[derive(Debug)]
pub struct PullSubscriber<S> {
    downstream: S,
    down_subscription: Option<Subscription>,
    /// The downstream's subscription, to mark it ended when the stream ends (rule 1.6).
    down: Option<Subscription>,
    link: Arc<PullLink>,
    stats: Arc<QueueStats>,
}

impl<T, S: Subscriber<T>> Subscriber<T> for PullSubscriber<S> {
    fn on_subscribe(&mut self, subscription: Subscription) {
        let Some(down) = self.down_subscription.take() else {
            subscription.cancel();
            return;
        };
        *self.link.upstream.lock().unwrap_or_else(|p| p.into_inner()) = Some(subscription);
        self.down = Some(down.clone());
        self.downstream.on_subscribe(down);
    }
    fn on_next(&mut self, item: T) {
        let left = self
            .link
            .outstanding
            .fetch_sub(1, Ordering::AcqRel)
            .saturating_sub(1);
        if left == 0 {
            self.stats.set_blocked(true);
        }
        self.stats.passed();
        self.downstream.on_next(item);
    }
    fn on_error(&mut self, error: Error) {
        if let Some(down) = &self.down {
            down.terminate();
        }
        self.downstream.on_error(error);
    }
    fn on_complete(&mut self) {
        if let Some(down) = &self.down {
            down.terminate();
        }
        self.downstream.on_complete();
    }
}

#[derive(Debug)]
struct Forward {
    demand: Demand,
    link: Arc<PullLink>,
    stats: Arc<QueueStats>,
}

impl Forward {
    fn poll(&mut self, cx: &mut Context<'_>) {
        self.demand.register(cx);
        let upstream = self
            .link
            .upstream
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let Some(upstream) = upstream else { return };
        match self.demand.take_requests() {
            Ok(0) => {}
            Ok(n) => {
                let before = self
                    .link
                    .outstanding
                    .fetch_add(n.min(UNBOUNDED), Ordering::AcqRel);
                if before == 0 {
                    self.stats.set_blocked(false);
                }
                upstream.request(n);
            }
            // request(0) travels upstream, whose publisher answers it with on_error.
            Err(Stop::BadRequest) => upstream.request(0),
            Err(_) => upstream.cancel(),
        }
    }
}

// ---- buffered modes ----

#[derive(Debug)]
struct Shared<T> {
    state: Mutex<State<T>>,
}

#[derive(Debug)]
struct State<T> {
    buffer: ShedBuffer<T>,
    handoff: Handoff,
    /// Blocking mode: demand granted upstream and not yet used.
    outstanding: u64,
}

impl<T> Shared<T> {
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The subscriber a buffered [`Queue`] connects upstream: it queues what arrives.
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
                // The item that found the cap is dropped, and counted: nothing is lost silently.
                self.stats.dropped(super::DropReason::Newest, None);
                self.stats.overflow();
                // `end` was checked above, so this terminal signal is the first.
                let waker = state.handoff.finish(Some(Error::Overflow {
                    what: "unbounded queue (safety cap)",
                    limit: cap as u64,
                }));
                let upstream = state.handoff.upstream.clone();
                drop(state);
                if let Some(u) = upstream {
                    u.cancel();
                }
                wake(waker);
                return;
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
            Offer::Full(_) => self.stats.dropped(super::DropReason::Newest, None),
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

struct Buffered<T, S> {
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
    local: std::collections::VecDeque<T>,
}

/// The most items moved out of the shared buffer per lock.
const TAKE: u64 = 256;

impl<T, S: Subscriber<T>> Buffered<T, S> {
    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let Some(downstream) = self.downstream.as_mut() else {
            return Poll::Ready(());
        };
        let mut budget = crate::source::YIELD_BUDGET;
        loop {
            let permits = match self.demand.poll_ready(cx) {
                Poll::Ready(Ok(p)) => p,
                Poll::Ready(Err(stop)) => {
                    let upstream = self.shared.lock().handoff.upstream.clone();
                    if let Some(u) = upstream {
                        u.cancel();
                    }
                    if let Some(e) = stop.into_error() {
                        downstream.on_error(e);
                    }
                    self.demand.terminate();
                    self.downstream = None;
                    return Poll::Ready(());
                }
                Poll::Pending => return Poll::Pending,
            };
            if self.local.is_empty() {
                let mut state = self.shared.lock();
                for _ in 0..permits.min(TAKE) {
                    match state.buffer.pop() {
                        Some(item) => self.local.push_back(item),
                        None => break,
                    }
                }
                if self.local.is_empty() {
                    if let Some(end) = state.handoff.end.take() {
                        drop(state);
                        match end {
                            Some(e) => downstream.on_error(e),
                            None => downstream.on_complete(),
                        }
                        self.demand.terminate();
                        self.downstream = None;
                        return Poll::Ready(());
                    }
                    state.handoff.register(cx);
                    return Poll::Pending;
                }
            }
            let Some(item) = self.local.pop_front() else {
                continue;
            };
            if self.blocks {
                self.taken += 1;
                if self.taken >= self.replenish {
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
            }
            self.stats.popped(self.config.weight(&item));
            self.demand.consume();
            downstream.on_next(item);
            budget -= 1;
            if budget == 0 {
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
        }
    }
}
