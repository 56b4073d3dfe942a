use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use pin_project_lite::pin_project;

use crate::bridge::{Inbox, InboxSubscriber, Prefetch, inbox};
use crate::demand::{self, UNBOUNDED};
use crate::linger::Linger;
use crate::subscription::{self, Demand};
use crate::{Error, Publisher, Subscriber};

/// Groups items into batches of `size`, or fewer once the oldest item has waited `linger`.
/// See [`PublisherExt::batch`](crate::PublisherExt::batch).
///
/// # Demand
/// A batch is only ever emitted against downstream demand, never pushed. Downstream
/// `request(k)` becomes an upstream request for up to `k × size` items, minus what is already
/// buffered or on its way; so at most one batch is held without demand. When the linger timer
/// fires without demand, the partial batch waits for the next request.
///
/// # Guarantees
/// No empty batch is ever emitted. The last partial batch is emitted before `on_complete` (and
/// before `on_error`, when there is demand for it). Arithmetic saturates: `request(u64::MAX)`
/// is unbounded.
///
/// ```
/// use reactive::PublisherExt;
/// use futures::TryStreamExt;
/// use std::time::Duration;
/// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
/// let batches: Vec<Vec<u32>> = reactive::iter(0..7).batch(3, Duration::from_millis(5))
///     .into_stream().try_collect().await.unwrap();
/// assert_eq!(batches, [vec![0, 1, 2], vec![3, 4, 5], vec![6]]);
/// # }
/// ```
#[derive(Debug, Clone)]
#[must_use = "publishers do nothing unless connected"]
pub struct Batch<P> {
    upstream: P,
    size: usize,
    linger: Duration,
}

impl<P> Batch<P> {
    pub(crate) fn new(upstream: P, size: usize, linger: Duration) -> Self {
        Batch {
            upstream,
            size: size.max(1),
            linger,
        }
    }
}

impl<P: Publisher> Publisher for Batch<P> {
    type Item = Vec<P::Item>;
    type Connection<S: Subscriber<Vec<P::Item>>> = BatchConnection<P, S>;

    fn connect<S: Subscriber<Vec<P::Item>>>(self, mut subscriber: S) -> Self::Connection<S> {
        let (subscription, demand) = subscription::pair();
        subscriber.on_subscribe(subscription);
        let (input, inbox) = inbox(Prefetch::manual());
        BatchConnection {
            upstream: Some(self.upstream.connect(input)),
            state: BatchState {
                inbox,
                downstream: Some(subscriber),
                demand,
                linger: Linger::new(self.size, self.linger),
                buffer: Vec::new(),
                outstanding: 0,
                end: None,
            },
        }
    }
}

pin_project! {
    /// The connection of a [`Batch`].
    #[must_use = "a connection emits nothing unless polled"]
    pub struct BatchConnection<P: Publisher, S> {
        #[pin]
        upstream: Option<P::Connection<InboxSubscriber<P::Item>>>,
        state: BatchState<P::Item, S>,
    }
}

impl<P: Publisher, S> std::fmt::Debug for BatchConnection<P, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BatchConnection")
            .field("buffered", &self.state.buffer.len())
            .finish()
    }
}

struct BatchState<T, S> {
    inbox: Inbox<T>,
    downstream: Option<S>,
    demand: Demand,
    /// When the current batch is ready.
    linger: Linger,
    buffer: Vec<T>,
    /// Items requested upstream and not yet received.
    outstanding: u64,
    end: Option<Option<Error>>,
}

impl<T, S: Subscriber<Vec<T>>> BatchState<T, S> {
    /// Asks upstream for what the granted batches can hold, less what is already here.
    fn request_upstream(&mut self, permits: u64) {
        if self.end.is_some() {
            return;
        }
        let want = if demand::is_unbounded(permits) {
            UNBOUNDED
        } else {
            permits.saturating_mul(self.linger.size() as u64)
        };
        let have = demand::add(self.buffer.len() as u64, self.outstanding);
        if want > have {
            let more = want - have;
            self.outstanding = demand::add(self.outstanding, more);
            self.inbox.request(more);
        }
    }

    /// Takes items while the batch is not full, until upstream has none or ends.
    fn take(&mut self, cx: &mut Context<'_>) {
        while self.end.is_none() && self.buffer.len() < self.linger.size() {
            match self.inbox.poll_recv(cx) {
                Poll::Ready(Some(Ok(item))) => {
                    self.outstanding = demand::sub(self.outstanding, 1);
                    self.linger.arrived(self.buffer.len());
                    self.buffer.push(item);
                }
                Poll::Ready(Some(Err(e))) => self.end = Some(Some(e)),
                Poll::Ready(None) => self.end = Some(None),
                Poll::Pending => break,
            }
        }
    }

    fn emit(&mut self) {
        // Preallocate modestly: a huge `size` must not become a huge allocation.
        let size = self.linger.size();
        let batch = std::mem::replace(&mut self.buffer, Vec::with_capacity(size.min(1024)));
        self.linger.taken(0);
        self.demand.consume();
        if let Some(d) = self.downstream.as_mut() {
            d.on_next(batch);
        }
    }

    /// Signals the end once upstream has ended and the last batch is out (an error does not
    /// wait for demand: the partial batch is dropped with it). Whether it did.
    fn end_now(&mut self, has_demand: bool) -> bool {
        let Some(end) = &self.end else {
            return false;
        };
        if self.buffer.is_empty() || (!has_demand && end.is_some()) {
            let end = end.clone();
            self.finish(end);
            return true;
        }
        false
    }

    fn finish(&mut self, error: Option<Error>) {
        if let Some(mut d) = self.downstream.take() {
            match error {
                Some(e) => d.on_error(e),
                None => d.on_complete(),
            }
        }
        self.demand.terminate();
    }
}

impl<P: Publisher, S: Subscriber<Vec<P::Item>>> Future for BatchConnection<P, S> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut this = self.project();
        let st = &mut *this.state;
        if st.downstream.is_none() {
            return Poll::Ready(());
        }
        let mut budget = crate::source::YIELD_BUDGET;
        loop {
            if let Some(upstream) = this.upstream.as_mut().as_pin_mut() {
                if upstream.poll(cx).is_ready() {
                    this.upstream.set(None);
                }
            }
            st.demand.register(cx);
            let permits = match st.demand.try_ready() {
                Ok(p) => p,
                Err(stop) => {
                    st.inbox.cancel();
                    stop.end(&mut st.downstream, &st.demand);
                    return Poll::Ready(());
                }
            };
            st.request_upstream(permits);
            st.take(cx);
            let has_demand = st.demand.try_ready().unwrap_or(0) > 0;
            let ready = st.linger.poll_ready(st.buffer.len(), cx)
                || (st.end.is_some() && !st.buffer.is_empty());
            let progressed = ready && has_demand;
            if progressed {
                st.emit();
            }
            if st.end_now(has_demand) {
                return Poll::Ready(());
            }
            if !progressed {
                return Poll::Pending;
            }
            budget -= 1;
            if budget == 0 {
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
        }
    }
}
