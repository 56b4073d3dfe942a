//! The publisher: a source of items that emits only against demand.
//!
//! [`Publisher::connect`] hands the subscriber its [`Subscription`](crate::Subscription) (through
//! `on_subscribe`, before `connect` returns) and returns the *connection*: the future that
//! emits. The connection owns the subscriber, so signals are serial by construction (rule 1.3)
//! and dropping the connection releases the subscriber. Nothing is emitted until the connection
//! is polled: await it, spawn it ([`PublisherExt::subscribe`]), or let
//! [`into_stream`](PublisherExt::into_stream) poll it for you.

use std::future::Future;

use crate::Subscriber;
use crate::bridge::{Inbox, InboxSubscriber, IntoStream, Prefetch};
use crate::ops::{Batch, Filter, Map};
use crate::queue::{Queue, QueueConfig};

/// A source of items that emits only what its subscriber requested.
///
/// # Examples
/// ```
/// use reactive::{Publisher, PublisherExt};
/// use futures::TryStreamExt;
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let doubled: Vec<u64> = reactive::iter(1..=3).map(|x| x * 2).into_stream().try_collect().await.unwrap();
/// assert_eq!(doubled, [2, 4, 6]);
/// # }
/// ```
pub trait Publisher {
    /// What the publisher emits.
    type Item;
    /// The future that emits to subscriber `S`. Completes after the terminal signal, or once
    /// the subscription is cancelled and the subscriber released.
    type Connection<S: Subscriber<Self::Item>>: Future<Output = ()>;

    /// Subscribes `subscriber`: calls its `on_subscribe` before returning, then emits as the
    /// returned connection is polled.
    fn connect<S: Subscriber<Self::Item>>(self, subscriber: S) -> Self::Connection<S>;
}

/// Operators and bridges for every [`Publisher`].
pub trait PublisherExt: Publisher + Sized {
    /// Transforms each item with `f`. Demand passes through unchanged.
    fn map<U, F: FnMut(Self::Item) -> U>(self, f: F) -> Map<Self, F> {
        Map::new(self, f)
    }

    /// Keeps the items for which `f` is true. Each dropped item is replaced by requesting one
    /// more upstream, so the subscriber's demand is still met.
    fn filter<F: FnMut(&Self::Item) -> bool>(self, f: F) -> Filter<Self, F> {
        Filter::new(self, f)
    }

    /// Groups items into batches of `size`, emitting a partial batch once its oldest item has
    /// waited `linger`, whichever comes first. Demand-correct: see [`Batch`].
    fn batch(self, size: usize, linger: std::time::Duration) -> Batch<Self> {
        Batch::new(self, size, linger)
    }

    /// Puts a [`Queue`] after this publisher: bounded, unbounded or pull, with an overflow
    /// policy. See [`crate::queue`].
    fn queue(self, config: QueueConfig<Self::Item>) -> Queue<Self> {
        Queue::new(self, config)
    }

    /// A [`Stream`](futures_core::Stream) of `Result<Item, Error>` that polls the connection in the
    /// caller's task, with the default [`Prefetch`] (256 items, replenished at 75%).
    fn into_stream(self) -> IntoStream<Self> {
        IntoStream::new(self, Prefetch::default())
    }

    /// Like [`into_stream`](Self::into_stream) with a chosen prefetch window.
    fn into_stream_with(self, prefetch: Prefetch) -> IntoStream<Self> {
        IntoStream::new(self, prefetch)
    }

    /// A [`Stream`](futures_core::Stream) whose connection runs in a task of its own on the
    /// current tokio runtime: the publisher and the consumer may run on different threads.
    /// Dropping the stream cancels the subscription, which ends the task.
    ///
    /// # Panics
    /// Outside a tokio runtime, like [`tokio::spawn`].
    fn spawn_stream(self, prefetch: Prefetch) -> Inbox<Self::Item>
    where
        Self::Connection<InboxSubscriber<Self::Item>>: Send + 'static,
    {
        let (subscriber, inbox) = crate::bridge::inbox(prefetch);
        tokio::spawn(self.connect(subscriber));
        inbox
    }

    /// Spawns the connection on the current tokio runtime.
    ///
    /// # Panics
    /// Outside a tokio runtime, like [`tokio::spawn`].
    fn subscribe<S>(self, subscriber: S) -> tokio::task::JoinHandle<()>
    where
        S: Subscriber<Self::Item>,
        Self::Connection<S>: Send + 'static,
    {
        tokio::spawn(self.connect(subscriber))
    }
}

impl<P: Publisher> PublisherExt for P {}
