use crate::{Error, Publisher, Subscriber, Subscription};

/// Transforms each item. See [`PublisherExt::map`](crate::PublisherExt::map).
#[derive(Debug, Clone)]
#[must_use = "publishers do nothing unless connected"]
pub struct Map<P, F> {
    upstream: P,
    f: F,
}

impl<P, F> Map<P, F> {
    pub(crate) fn new(upstream: P, f: F) -> Self {
        Map { upstream, f }
    }
}

impl<P, F, U> Publisher for Map<P, F>
where
    P: Publisher,
    F: FnMut(P::Item) -> U,
{
    type Item = U;
    type Connection<S: Subscriber<U>> = P::Connection<MapSubscriber<S, F>>;

    fn connect<S: Subscriber<U>>(self, subscriber: S) -> Self::Connection<S> {
        self.upstream.connect(MapSubscriber {
            downstream: subscriber,
            f: self.f,
        })
    }
}

/// The subscriber a [`Map`] connects upstream: applies `f` and forwards every signal.
#[derive(Debug)]
pub struct MapSubscriber<S, F> {
    downstream: S,
    f: F,
}

impl<S, F> MapSubscriber<S, F> {
    /// Wraps `downstream` so that it receives `f(item)` for each item.
    pub fn new(downstream: S, f: F) -> Self {
        MapSubscriber { downstream, f }
    }
}

impl<T, U, S, F> Subscriber<T> for MapSubscriber<S, F>
where
    S: Subscriber<U>,
    F: FnMut(T) -> U,
{
    #[inline]
    fn on_subscribe(&mut self, subscription: Subscription) {
        self.downstream.on_subscribe(subscription)
    }
    #[inline]
    fn on_next(&mut self, item: T) {
        self.downstream.on_next((self.f)(item))
    }
    /// Maps the batch and passes it on as one batch.
    fn on_next_batch(&mut self, items: &mut Vec<T>) {
        let mut mapped: Vec<U> = items.drain(..).map(&mut self.f).collect();
        self.downstream.on_next_batch(&mut mapped);
    }
    /// As its downstream: a map passes batches on when its downstream takes them.
    #[inline]
    fn takes_batches(&self) -> bool {
        self.downstream.takes_batches()
    }
    fn on_error(&mut self, error: Error) {
        self.downstream.on_error(error)
    }
    fn on_complete(&mut self) {
        self.downstream.on_complete()
    }
}
