use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use pin_project_lite::pin_project;

use super::YIELD_BUDGET;

/// The most items handed over in one `on_next_batch`.
const BULK: u64 = 1024;
use crate::subscription::{self, Demand};
use crate::{Publisher, Subscriber};

/// A publisher of an iterator's items. Clone it to subscribe again.
///
/// ```
/// use reactive::PublisherExt;
/// use futures::TryStreamExt;
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let all: Vec<u32> = reactive::iter(0..5).into_stream().try_collect().await.unwrap();
/// assert_eq!(all, [0, 1, 2, 3, 4]);
/// # }
/// ```
pub fn iter<I: IntoIterator>(items: I) -> Iter<I> {
    Iter { items }
}

/// See [`iter`].
#[derive(Debug, Clone)]
pub struct Iter<I> {
    items: I,
}

impl<I: IntoIterator> Publisher for Iter<I> {
    type Item = I::Item;
    type Connection<S: Subscriber<I::Item>> = IterConnection<I::IntoIter, S>;

    fn connect<S: Subscriber<I::Item>>(self, mut subscriber: S) -> Self::Connection<S> {
        let (subscription, demand) = subscription::pair();
        subscriber.on_subscribe(subscription);
        IterConnection {
            iter: self.items.into_iter(),
            subscriber: Some(subscriber),
            demand,
        }
    }
}

pin_project! {
    /// The connection of an [`Iter`] publisher.
    #[derive(Debug)]
    #[must_use = "a connection emits nothing unless polled"]
    pub struct IterConnection<It, S> {
        iter: It,
        subscriber: Option<S>,
        demand: Demand,
    }
}

impl<It: Iterator, S: Subscriber<It::Item>> Future for IterConnection<It, S> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.project();
        let Some(subscriber) = this.subscriber.as_mut() else {
            return Poll::Ready(());
        };
        let mut budget = u64::from(YIELD_BUDGET);
        // Items handed over at once when the demand allows more than one; made here, per
        // poll, so the connection does not need the item type in its own.
        let mut batch = Vec::new();
        loop {
            let permits = match this.demand.poll_ready(cx) {
                Poll::Ready(Ok(permits)) => permits,
                Poll::Ready(Err(stop)) => {
                    stop.end(this.subscriber, this.demand);
                    return Poll::Ready(());
                }
                Poll::Pending => {
                    // An exhausted iterator may complete without demand (rules 1.4, 1.5).
                    if this.iter.size_hint().1 == Some(0) {
                        subscriber.on_complete();
                        this.demand.terminate();
                        *this.subscriber = None;
                        return Poll::Ready(());
                    }
                    return Poll::Pending;
                }
            };
            let n = if subscriber.takes_batches() {
                permits.min(budget).min(BULK)
            } else {
                1
            };
            let ended = if n == 1 {
                match this.iter.next() {
                    Some(item) => {
                        this.demand.consume();
                        subscriber.on_next(item);
                        false
                    }
                    None => true,
                }
            } else {
                batch.extend(this.iter.by_ref().take(n as usize));
                let got = batch.len() as u64;
                if got > 0 {
                    this.demand.consume_n(got);
                    subscriber.on_next_batch(&mut batch);
                    debug_assert!(batch.is_empty(), "on_next_batch must take every item");
                    batch.clear();
                }
                budget = budget.saturating_sub(got.max(1) - 1);
                got < n
            };
            if ended {
                subscriber.on_complete();
                this.demand.terminate();
                *this.subscriber = None;
                return Poll::Ready(());
            }
            budget -= 1;
            if budget == 0 {
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
        }
    }
}
