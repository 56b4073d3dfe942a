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
    fn on_error(&mut self, error: Error) {
        (**self).on_error(error)
    }
    fn on_complete(&mut self) {
        (**self).on_complete()
    }
}
