//! The subscriber: four callbacks, called serially.
//!
//! A publisher calls `on_subscribe` once, first; then `on_next` at most as many times as the
//! subscriber has requested; then at most one of `on_error` or `on_complete`, after which
//! nothing more (rules 1.1, 1.3, 1.7, 1.9). The callbacks are synchronous: a subscriber that
//! does slow or async work keeps what it received and requests more when it is done (see
//! [`Inbox`](crate::Inbox) and [`from_sink`](crate::from_sink)).

use crate::{Error, Subscription};

/// Receives a stream's signals. See the [module docs](self) for the order of calls.
///
/// Implementations must not panic on any signal sequence the rules allow (rule 2.13), must
/// cancel a second subscription if they already have one (rule 2.5), and must not call the
/// subscription from `on_error` or `on_complete` (rule 2.3).
pub trait Subscriber<T> {
    /// The first signal, exactly once: the handle to request items with.
    fn on_subscribe(&mut self, subscription: Subscription);
    /// One item, never more than requested.
    fn on_next(&mut self, item: T);
    /// Several items at once, in order: the same signals as one `on_next` for each, under the
    /// same demand (together they never exceed what was requested). The subscriber takes them
    /// all and leaves `items` empty, its capacity for the publisher to reuse.
    ///
    /// Publishers call it only on a subscriber whose [`takes_batches`](Self::takes_batches)
    /// is true, when they have several items in hand (an iterator, a queue's buffer): one call
    /// instead of one per item, so a subscriber that keeps items behind a lock or hands them to
    /// another task pays that once. The default calls [`on_next`](Self::on_next) for each.
    ///
    /// A batch is one delivery: a `cancel` made while it is being delivered (from inside this
    /// call, or from another thread) stops the batches after it, not the rest of this one.
    #[inline]
    fn on_next_batch(&mut self, items: &mut Vec<T>) {
        for item in items.drain(..) {
            self.on_next(item);
        }
    }
    /// Whether this subscriber wants its items in batches ([`on_next_batch`](Self::on_next_batch)).
    /// `false` by default: a publisher then hands items over one at a time, and a `cancel` made
    /// in `on_next` stops the very next item. Asked before each emission, so an operator may
    /// answer for its downstream.
    #[inline]
    fn takes_batches(&self) -> bool {
        false
    }
    /// Terminal: the stream failed. Nothing follows.
    fn on_error(&mut self, error: Error);
    /// Terminal: the stream ended. Nothing follows.
    fn on_complete(&mut self);
}

impl<T, S: Subscriber<T> + ?Sized> Subscriber<T> for Box<S> {
    fn on_subscribe(&mut self, subscription: Subscription) {
        (**self).on_subscribe(subscription)
    }
    fn on_next(&mut self, item: T) {
        (**self).on_next(item)
    }
    fn on_next_batch(&mut self, items: &mut Vec<T>) {
        (**self).on_next_batch(items)
    }
    fn takes_batches(&self) -> bool {
        (**self).takes_batches()
    }
    fn on_error(&mut self, error: Error) {
        (**self).on_error(error)
    }
    fn on_complete(&mut self) {
        (**self).on_complete()
    }
}
