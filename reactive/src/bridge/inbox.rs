use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use futures_core::Stream;

use super::Prefetch;
use crate::handoff::{Handoff, wake};
use crate::{Error, Subscriber, Subscription};

/// Creates an inbox: a subscriber that stores what it receives, and the stream that takes it out
/// and replenishes demand as it goes.
///
/// The subscriber requests `prefetch.window()` items in `on_subscribe`; the stream requests
/// `prefetch.batch()` more each time it has yielded that many. So the buffer never holds more
/// than the window, however fast the publisher is. The two halves may live in different tasks or
/// threads; the producing half hands over items under a short lock and the consuming half takes
/// the whole buffer at once, so one wake-up carries many items.
///
/// Dropping the stream cancels the subscription.
pub fn inbox<T>(prefetch: Prefetch) -> (InboxSubscriber<T>, Inbox<T>) {
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            queue: VecDeque::new(),
            handoff: Handoff::default(),
            consumer_gone: false,
        }),
    });
    let subscriber = InboxSubscriber {
        shared: shared.clone(),
        window: prefetch.window(),
        subscribed: false,
    };
    let consumer = Inbox {
        shared,
        local: VecDeque::new(),
        subscription: None,
        consumed: 0,
        batch: if prefetch.is_unbounded() || prefetch.is_manual() {
            u64::MAX
        } else {
            prefetch.batch()
        },
        done: false,
        pending: 0,
    };
    (subscriber, consumer)
}

#[derive(Debug)]
struct Shared<T> {
    state: Mutex<State<T>>,
}

#[derive(Debug)]
struct State<T> {
    queue: VecDeque<T>,
    handoff: Handoff,
    consumer_gone: bool,
}

impl<T> Shared<T> {
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        // A panic while holding this lock cannot leave the queue half-updated.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The producing half of an [`inbox`].
#[derive(Debug)]
pub struct InboxSubscriber<T> {
    shared: Arc<Shared<T>>,
    window: u64,
    subscribed: bool,
}

impl<T> InboxSubscriber<T> {
    fn finish(&mut self, end: Option<Error>) {
        let waker = self.shared.lock().handoff.finish(end);
        wake(waker);
    }
}

impl<T> Subscriber<T> for InboxSubscriber<T> {
    fn on_subscribe(&mut self, subscription: Subscription) {
        if self.subscribed {
            subscription.cancel();
            return;
        }
        self.subscribed = true;
        {
            let mut state = self.shared.lock();
            if state.consumer_gone {
                drop(state);
                subscription.cancel();
                return;
            }
            state.handoff.upstream = Some(subscription.clone());
        }
        if self.window > 0 {
            subscription.request(self.window);
        }
    }

    #[inline]
    fn on_next(&mut self, item: T) {
        let waker = {
            let mut state = self.shared.lock();
            state.queue.push_back(item);
            state.handoff.take_waker()
        };
        wake(waker);
    }

    fn takes_batches(&self) -> bool {
        true
    }

    /// Moves the whole batch in under one lock, with one wake-up.
    fn on_next_batch(&mut self, items: &mut Vec<T>) {
        if items.is_empty() {
            return;
        }
        let waker = {
            let mut state = self.shared.lock();
            if state.queue.is_empty() {
                // Nothing waiting: the batch becomes the buffer, without a copy.
                state.queue = VecDeque::from(std::mem::take(items));
            } else {
                state.queue.extend(items.drain(..));
            }
            state.handoff.take_waker()
        };
        wake(waker);
    }

    fn on_error(&mut self, error: Error) {
        self.finish(Some(error));
    }

    fn on_complete(&mut self) {
        self.finish(None);
    }
}

impl<T> Drop for InboxSubscriber<T> {
    fn drop(&mut self) {
        // A publisher that releases us without a terminal signal (it was cancelled, or its task
        // was aborted) still ends the consumer's stream instead of leaving it waiting forever.
        self.finish(None);
    }
}

/// The consuming half of an [`inbox`]: a stream of `Result<T, Error>`.
#[derive(Debug)]
pub struct Inbox<T> {
    shared: Arc<Shared<T>>,
    local: VecDeque<T>,
    subscription: Option<Subscription>,
    consumed: u64,
    batch: u64,
    done: bool,
    /// Manual requests made before the subscription arrived.
    pending: u64,
}

impl<T> Inbox<T> {
    /// Takes the subscription once the publisher has given it, and sends the manual requests
    /// made before then.
    fn adopt_subscription(
        subscription: &mut Option<Subscription>,
        pending: &mut u64,
        state: &State<T>,
    ) {
        if subscription.is_none() {
            *subscription = state.handoff.upstream.clone();
            if let (Some(s), true) = (&*subscription, *pending > 0) {
                s.request(std::mem::take(pending));
            }
        }
    }

    /// Takes an item already moved to this side, without locking.
    #[inline]
    pub(crate) fn pop_local(&mut self) -> Option<T> {
        let item = self.local.pop_front()?;
        self.note_consumed();
        Some(item)
    }

    #[inline]
    fn note_consumed(&mut self) {
        self.note_consumed_n(1);
    }

    #[inline]
    fn note_consumed_n(&mut self, n: u64) {
        self.consumed += n;
        if self.consumed >= self.batch {
            if let Some(subscription) = &self.subscription {
                subscription.request(self.consumed);
            }
            self.consumed = 0;
        }
    }

    /// Requests `n` more items upstream (for a [`Prefetch::manual`] inbox). Requests made before
    /// the publisher subscribed are sent when it does.
    pub fn request(&mut self, n: u64) {
        if self.subscription.is_none() {
            self.subscription = self.shared.lock().handoff.upstream.clone();
        }
        match &self.subscription {
            Some(s) => s.request(n),
            None => self.pending = crate::demand::add(self.pending, n),
        }
    }

    /// Items received and not yet taken.
    pub fn len(&self) -> usize {
        self.local.len() + self.shared.lock().queue.len()
    }

    /// Whether no item is waiting.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Cancels the subscription. Items already received can still be taken.
    pub fn cancel(&mut self) {
        let subscription = {
            let mut state = self.shared.lock();
            state.consumer_gone = true;
            state.handoff.upstream.clone()
        };
        if let Some(subscription) = subscription {
            subscription.cancel();
        }
    }
}

// Nothing in an inbox is ever pinned: items are moved in and out by value.
impl<T> Unpin for Inbox<T> {}

impl<T> Stream for Inbox<T> {
    type Item = Result<T, Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().poll_recv(cx)
    }
}

impl<T> Inbox<T> {
    /// Takes the next item, `None` at the end, or an error the publisher signalled. Like
    /// `poll_next`, without the `Pin`.
    pub fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<T, Error>>> {
        let this = self;
        if let Some(item) = this.pop_local() {
            return Poll::Ready(Some(Ok(item)));
        }
        if this.done {
            return Poll::Ready(None);
        }
        let mut state = this.shared.lock();
        Self::adopt_subscription(&mut this.subscription, &mut this.pending, &state);
        if !state.queue.is_empty() {
            std::mem::swap(&mut this.local, &mut state.queue);
            drop(state);
            let item = this.pop_local();
            return Poll::Ready(item.map(Ok));
        }
        if let Some(end) = state.handoff.end.take() {
            this.done = true;
            return Poll::Ready(end.map(Err));
        }
        state.handoff.register(cx);
        Poll::Pending
    }
}

impl<T> Inbox<T> {
    /// Moves up to `limit` received items to the end of `buf` at once: `Ready(Some(Ok(n)))`
    /// with `n ≥ 1` of them, `Ready(None)` at the end, or the error the publisher signalled.
    /// Demand is replenished as for items taken one by one. A `limit` of 0 is taken as 1.
    ///
    /// This is the consuming side's bulk path, like tokio's `Receiver::poll_recv_many`: one
    /// call, and one lock at most, for many items.
    pub fn poll_recv_many(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut Vec<T>,
        limit: usize,
    ) -> Poll<Option<Result<usize, Error>>> {
        if self.local.is_empty() {
            if self.done {
                return Poll::Ready(None);
            }
            let mut state = self.shared.lock();
            Self::adopt_subscription(&mut self.subscription, &mut self.pending, &state);
            if state.queue.is_empty() {
                if let Some(end) = state.handoff.end.take() {
                    self.done = true;
                    return Poll::Ready(end.map(Err));
                }
                state.handoff.register(cx);
                return Poll::Pending;
            }
            std::mem::swap(&mut self.local, &mut state.queue);
        }
        let n = self.local.len().min(limit.max(1));
        if buf.is_empty() {
            // Hand over a buffer rather than items one by one (a deque's drain moves each item
            // on its own): all of it as it is (no copy when it starts at its front, as one
            // moved in whole does), or the first `n` once the rest is split off.
            let rest = if n < self.local.len() {
                self.local.split_off(n)
            } else {
                VecDeque::new()
            };
            *buf = Vec::from(std::mem::replace(&mut self.local, rest));
        } else {
            buf.extend(self.local.drain(..n));
        }
        self.note_consumed_n(n as u64);
        Poll::Ready(Some(Ok(n)))
    }

    /// Waits for items and moves up to `limit` of them to the end of `buf`: how many it
    /// moved (at least one), 0 at the end. See [`poll_recv_many`](Self::poll_recv_many).
    ///
    /// ```
    /// use reactive::{Prefetch, PublisherExt};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let mut inbox = reactive::iter(0..10u32).spawn_stream(Prefetch::new(4));
    /// let mut buf = Vec::new();
    /// while inbox.recv_many(&mut buf, 3).await.unwrap() > 0 {}
    /// assert_eq!(buf, (0..10).collect::<Vec<_>>());
    /// # }
    /// ```
    pub async fn recv_many(&mut self, buf: &mut Vec<T>, limit: usize) -> Result<usize, Error> {
        std::future::poll_fn(|cx| self.poll_recv_many(cx, buf, limit))
            .await
            .unwrap_or(Ok(0))
    }
}

impl<T> Drop for Inbox<T> {
    fn drop(&mut self) {
        self.cancel();
    }
}
