//! The handoff between a subscriber that receives items in `on_next` and the task that takes
//! them out: its upstream subscription, the terminal signal, and the consumer's waker. Shared by
//! the [`Inbox`](crate::Inbox) and the [`Queue`](crate::queue::Queue), each of which keeps it
//! under the same lock as its buffer.

use std::task::{Context, Waker};

use crate::{Error, Subscription};

#[derive(Debug, Default)]
pub(crate) struct Handoff {
    /// The upstream subscription, once `on_subscribe` has run.
    pub(crate) upstream: Option<Subscription>,
    /// `Some(None)`: completed; `Some(Some(e))`: failed.
    pub(crate) end: Option<Option<Error>>,
    waker: Option<Waker>,
}

impl Handoff {
    /// Records a terminal signal (the first one wins) and returns the consumer's waker, to wake
    /// once the lock is released.
    #[must_use]
    pub(crate) fn finish(&mut self, end: Option<Error>) -> Option<Waker> {
        if self.end.is_none() {
            self.end = Some(end);
        }
        self.waker.take()
    }

    /// Returns the consumer's waker after new items arrived, to wake once the lock is released.
    #[must_use]
    pub(crate) fn take_waker(&mut self) -> Option<Waker> {
        self.waker.take()
    }

    /// Registers the consumer's task, keeping the stored waker when it would wake the same task.
    pub(crate) fn register(&mut self, cx: &Context<'_>) {
        match &mut self.waker {
            Some(w) if w.will_wake(cx.waker()) => {}
            slot => *slot = Some(cx.waker().clone()),
        }
    }
}

/// Wakes a waker taken from a [`Handoff`], if there was one.
pub(crate) fn wake(waker: Option<Waker>) {
    if let Some(w) = waker {
        w.wake();
    }
}
