use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use pin_project_lite::pin_project;

use super::YIELD_BUDGET;
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
        let mut budget = YIELD_BUDGET;
        loop {
            match this.demand.poll_ready(cx) {
                Poll::Ready(Ok(_)) => {}
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
            }
            match this.iter.next() {
                Some(item) => {
                    this.demand.consume();
                    subscriber.on_next(item);
                }
                None => {
                    subscriber.on_complete();
                    this.demand.terminate();
                    *this.subscriber = None;
                    return Poll::Ready(());
                }
            }
            budget -= 1;
            if budget == 0 {
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
        }
    }
}
