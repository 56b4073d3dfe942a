use crate::{Error, Publisher, Subscriber, Subscription};

/// Keeps the items a predicate accepts. See [`PublisherExt::filter`](crate::PublisherExt::filter).
#[derive(Debug, Clone)]
#[must_use = "publishers do nothing unless connected"]
pub struct Filter<P, F> {
    upstream: P,
    f: F,
}

impl<P, F> Filter<P, F> {
    pub(crate) fn new(upstream: P, f: F) -> Self {
        Filter { upstream, f }
    }
}

impl<P, F> Publisher for Filter<P, F>
where
    P: Publisher,
    F: FnMut(&P::Item) -> bool,
{
    type Item = P::Item;
    type Connection<S: Subscriber<P::Item>> = P::Connection<FilterSubscriber<S, F>>;

    fn connect<S: Subscriber<P::Item>>(self, subscriber: S) -> Self::Connection<S> {
        self.upstream.connect(FilterSubscriber {
            downstream: subscriber,
            f: self.f,
            upstream: None,
        })
    }
}

/// The subscriber a [`Filter`] connects upstream. A rejected item used up one unit of the
/// downstream's demand upstream, so it is replaced with `request(1)`.
#[derive(Debug)]
pub struct FilterSubscriber<S, F> {
    downstream: S,
    f: F,
    upstream: Option<Subscription>,
}

impl<S, F> FilterSubscriber<S, F> {
    /// Wraps `downstream` so that it receives only the items `f` accepts.
    pub fn new(downstream: S, f: F) -> Self {
        FilterSubscriber {
            downstream,
            f,
            upstream: None,
        }
    }
}

impl<T, S, F> Subscriber<T> for FilterSubscriber<S, F>
where
    S: Subscriber<T>,
    F: FnMut(&T) -> bool,
{
    fn on_subscribe(&mut self, subscription: Subscription) {
        if self.upstream.is_some() {
            subscription.cancel();
            return;
        }
        self.upstream = Some(subscription.clone());
        self.downstream.on_subscribe(subscription)
    }
    #[inline]
    fn on_next(&mut self, item: T) {
        if (self.f)(&item) {
            self.downstream.on_next(item)
        } else if let Some(upstream) = &self.upstream {
            upstream.request(1);
        }
    }
    /// Passes on what the predicate keeps as one batch, and asks upstream again for what it
    /// removed, in one request.
    fn on_next_batch(&mut self, items: &mut Vec<T>) {
        let before = items.len();
        items.retain(|item| (self.f)(item));
        let removed = (before - items.len()) as u64;
        if !items.is_empty() {
            self.downstream.on_next_batch(items);
        }
        if let (Some(upstream), true) = (&self.upstream, removed > 0) {
            upstream.request(removed);
        }
    }
    /// As its downstream: a filter passes batches on when its downstream takes them.
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
