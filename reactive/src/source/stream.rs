use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_core::Stream;
use pin_project_lite::pin_project;

use super::YIELD_BUDGET;
use crate::subscription::{self, Demand};
use crate::{Error, Publisher, Subscriber};

/// A publisher of a stream's items: the stream is polled only while the subscriber has
/// outstanding demand, so a slow subscriber slows the stream itself.
///
/// ```
/// use reactive::PublisherExt;
/// use futures::TryStreamExt;
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let source = async_stream::stream! { for i in 0..3u8 { yield i; } };
/// let all: Vec<u8> = reactive::from_stream(source).into_stream().try_collect().await.unwrap();
/// assert_eq!(all, [0, 1, 2]);
/// # }
/// ```
pub fn from_stream<St: Stream>(stream: St) -> FromStream<St> {
    FromStream { stream }
}

/// A publisher of a fallible stream: `Ok` items are emitted, the first `Err` becomes
/// `on_error(Error::Upstream(..))` and ends the stream.
pub fn from_try_stream<St, T, E>(stream: St) -> FromTryStream<St>
where
    St: Stream<Item = Result<T, E>>,
    E: std::error::Error + Send + Sync + 'static,
{
    FromTryStream { stream }
}

/// See [`from_stream`].
#[derive(Debug, Clone)]
pub struct FromStream<St> {
    stream: St,
}

/// See [`from_try_stream`].
#[derive(Debug, Clone)]
pub struct FromTryStream<St> {
    stream: St,
}

/// How a stream's item becomes an emission or an error.
#[doc(hidden)]
pub trait Lift<I> {
    type Out;
    fn lift(item: I) -> Result<Self::Out, Error>;
}

#[doc(hidden)]
#[derive(Debug)]
pub struct Plain;

#[doc(hidden)]
#[derive(Debug)]
pub struct Fallible;

impl<I> Lift<I> for Plain {
    type Out = I;
    #[inline]
    fn lift(item: I) -> Result<I, Error> {
        Ok(item)
    }
}

impl<T, E: std::error::Error + Send + Sync + 'static> Lift<Result<T, E>> for Fallible {
    type Out = T;
    #[inline]
    fn lift(item: Result<T, E>) -> Result<T, Error> {
        item.map_err(Error::upstream)
    }
}

impl<St: Stream> Publisher for FromStream<St> {
    type Item = St::Item;
    type Connection<S: Subscriber<St::Item>> = StreamConnection<St, S, Plain>;

    fn connect<S: Subscriber<St::Item>>(self, subscriber: S) -> Self::Connection<S> {
        StreamConnection::new(self.stream, subscriber)
    }
}

impl<St, T, E> Publisher for FromTryStream<St>
where
    St: Stream<Item = Result<T, E>>,
    E: std::error::Error + Send + Sync + 'static,
{
    type Item = T;
    type Connection<S: Subscriber<T>> = StreamConnection<St, S, Fallible>;

    fn connect<S: Subscriber<T>>(self, subscriber: S) -> Self::Connection<S> {
        StreamConnection::new(self.stream, subscriber)
    }
}

pin_project! {
    /// The connection of a [`FromStream`] or [`FromTryStream`] publisher.
    #[derive(Debug)]
    #[must_use = "a connection emits nothing unless polled"]
    pub struct StreamConnection<St, S, L> {
        #[pin]
        stream: St,
        subscriber: Option<S>,
        demand: Demand,
        lift: PhantomData<fn() -> L>,
    }
}

impl<St, S, L> StreamConnection<St, S, L> {
    fn new<T>(stream: St, mut subscriber: S) -> Self
    where
        S: Subscriber<T>,
    {
        let (subscription, demand) = subscription::pair();
        subscriber.on_subscribe(subscription);
        StreamConnection {
            stream,
            subscriber: Some(subscriber),
            demand,
            lift: PhantomData,
        }
    }
}

impl<St, S, L> Future for StreamConnection<St, S, L>
where
    St: Stream,
    L: Lift<St::Item>,
    S: Subscriber<L::Out>,
{
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut this = self.project();
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
                Poll::Pending => return Poll::Pending,
            }
            match this.stream.as_mut().poll_next(cx) {
                Poll::Ready(Some(item)) => match L::lift(item) {
                    Ok(item) => {
                        this.demand.consume();
                        subscriber.on_next(item);
                    }
                    Err(error) => {
                        subscriber.on_error(error);
                        this.demand.terminate();
                        *this.subscriber = None;
                        return Poll::Ready(());
                    }
                },
                Poll::Ready(None) => {
                    subscriber.on_complete();
                    this.demand.terminate();
                    *this.subscriber = None;
                    return Poll::Ready(());
                }
                Poll::Pending => {
                    // Waiting on the stream, not on demand: make sure a cancel still wakes us.
                    if this.demand.poll_stop(cx).is_ready() {
                        continue;
                    }
                    return Poll::Pending;
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
