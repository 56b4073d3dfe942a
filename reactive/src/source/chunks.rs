//! A publisher of the items of a stream of chunks: [`from_chunks`].

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_core::Stream;
use pin_project_lite::pin_project;

use super::YIELD_BUDGET;
use crate::subscription::{self, Demand};
use crate::{Publisher, Subscriber};

/// A publisher of the items of a stream that yields them in chunks (`Vec<T>`), in order.
///
/// For a source that makes its items in bulk (a generator that makes everything due at once,
/// a client that fetches pages): a subscriber that takes batches
/// ([`Subscriber::takes_batches`]) receives them with `on_next_batch`, as much of a chunk at a
/// time as its demand allows; any other gets them one `on_next` at a time. The stream is
/// polled only when the items of the last chunk are all out and demand is outstanding, so
/// demand bounds what is taken from it to one chunk more than was requested. Empty chunks
/// are skipped. Like [`from_stream`](crate::from_stream), it completes when the stream ends,
/// which it finds out only by polling it, so it needs demand to complete.
///
/// ```
/// use futures::TryStreamExt;
/// use reactive::PublisherExt;
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let chunks = futures::stream::iter(vec![vec![1, 2, 3], vec![], vec![4, 5]]);
/// let all: Vec<u32> = reactive::from_chunks(chunks).into_stream().try_collect().await.unwrap();
/// assert_eq!(all, [1, 2, 3, 4, 5]);
/// # }
/// ```
pub fn from_chunks<St, T>(stream: St) -> FromChunks<St>
where
    St: Stream<Item = Vec<T>>,
{
    FromChunks { stream }
}

/// See [`from_chunks`].
#[derive(Debug, Clone)]
#[must_use = "publishers do nothing unless connected"]
pub struct FromChunks<St> {
    stream: St,
}

impl<St, T> Publisher for FromChunks<St>
where
    St: Stream<Item = Vec<T>>,
{
    type Item = T;
    type Connection<S: Subscriber<T>> = ChunksConnection<St, S, T>;

    fn connect<S: Subscriber<T>>(self, mut subscriber: S) -> Self::Connection<S> {
        let (subscription, demand) = subscription::pair();
        subscriber.on_subscribe(subscription);
        ChunksConnection {
            stream: self.stream,
            subscriber: Some(subscriber),
            demand,
            pending: VecDeque::new(),
            batch: Vec::new(),
        }
    }
}

pin_project! {
    /// The connection of a [`FromChunks`] publisher.
    #[derive(Debug)]
    #[must_use = "a connection emits nothing unless polled"]
    pub struct ChunksConnection<St, S, T> {
        #[pin]
        stream: St,
        subscriber: Option<S>,
        demand: Demand,
        // The items of the last chunk not yet emitted.
        pending: VecDeque<T>,
        // The batch being handed over (empty between deliveries).
        batch: Vec<T>,
    }
}

/// What the next step of a chunk connection is.
enum Step {
    /// Items are in hand and demand is outstanding: emit up to this many.
    Emit(u64),
    /// Wait for a wake-up.
    Wait,
    /// The connection is over (the subscriber is released).
    Over,
}

impl<St, S, T> ChunksConnection<St, S, T>
where
    St: Stream<Item = Vec<T>>,
    S: Subscriber<T>,
{
    /// Finds demand, and items from the stream if none are in hand; signals the end if the
    /// subscriber stopped or the stream ended.
    fn step(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Step {
        let mut this = self.project();
        loop {
            let permits = match this.demand.poll_ready(cx) {
                Poll::Ready(Ok(permits)) => permits,
                Poll::Ready(Err(stop)) => {
                    stop.end(this.subscriber, this.demand);
                    return Step::Over;
                }
                Poll::Pending => return Step::Wait,
            };
            if !this.pending.is_empty() {
                return Step::Emit(permits);
            }
            match this.stream.as_mut().poll_next(cx) {
                Poll::Ready(Some(chunk)) => *this.pending = VecDeque::from(chunk),
                Poll::Ready(None) => {
                    if let Some(subscriber) = this.subscriber.as_mut() {
                        subscriber.on_complete();
                    }
                    this.demand.terminate();
                    *this.subscriber = None;
                    return Step::Over;
                }
                Poll::Pending => {
                    // Waiting on the stream, not on demand: make sure a cancel still wakes us.
                    if this.demand.poll_stop(cx).is_ready() {
                        continue;
                    }
                    return Step::Wait;
                }
            }
        }
    }
}

impl<St, S, T> Future for ChunksConnection<St, S, T>
where
    St: Stream<Item = Vec<T>>,
    S: Subscriber<T>,
{
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut budget = u64::from(YIELD_BUDGET);
        loop {
            if self.subscriber.is_none() {
                return Poll::Ready(());
            }
            let permits = match self.as_mut().step(cx) {
                Step::Emit(permits) => permits,
                Step::Wait => return Poll::Pending,
                Step::Over => return Poll::Ready(()),
            };
            let this = self.as_mut().project();
            let Some(subscriber) = this.subscriber.as_mut() else {
                return Poll::Ready(());
            };
            let n = permits.min(budget).min(this.pending.len() as u64);
            if n > 1 && subscriber.takes_batches() {
                if n == this.pending.len() as u64 {
                    // The whole rest of the chunk: its buffer goes as it is.
                    *this.batch = Vec::from(std::mem::take(this.pending));
                } else {
                    this.batch.extend(this.pending.drain(..n as usize));
                }
                this.demand.consume_n(n);
                subscriber.on_next_batch(this.batch);
                this.batch.clear();
            } else if let Some(item) = this.pending.pop_front() {
                this.demand.consume();
                subscriber.on_next(item);
            }
            budget = budget.saturating_sub(n.max(1));
            if budget == 0 {
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
        }
    }
}
