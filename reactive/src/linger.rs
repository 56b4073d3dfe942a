//! The size-and-linger rule of micro-batching, written once for [`ops::batch`](crate::ops::batch)
//! and the [sink workers](crate::sink::workers): a batch is ready to go when it holds `size`
//! items, or when its oldest item has waited `linger`.

use std::pin::Pin;
use std::task::Context;
use std::time::Duration;

use tokio::time::{Instant, Sleep};

/// A batch's clock, shared by every batching rule: when the batch's oldest item arrived, and a
/// timer that wakes the owner's task at a deadline measured from it.
pub(crate) struct BatchClock {
    /// When the batch's oldest item arrived; `None` while the batch is empty.
    since: Option<Instant>,
    timer: Pin<Box<Sleep>>,
}

impl std::fmt::Debug for BatchClock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BatchClock")
            .field("since", &self.since)
            .finish()
    }
}

impl BatchClock {
    pub(crate) fn new() -> BatchClock {
        BatchClock {
            since: None,
            timer: Box::pin(tokio::time::sleep(Duration::ZERO)),
        }
    }

    /// An item arrived at a batch that held `before` items: the first one starts the clock.
    pub(crate) fn arrived(&mut self, before: usize) {
        if before == 0 {
            self.since = Some(Instant::now());
        }
    }

    /// A batch was taken and `left` items remain: they start the next batch's clock now.
    pub(crate) fn taken(&mut self, left: usize) {
        self.since = (left > 0).then(Instant::now);
    }

    /// Whether `wait` has passed since the batch started; when not, the timer is armed to wake
    /// the task then. `None` while the clock is not running (no batch started).
    pub(crate) fn poll_waited(&mut self, wait: Duration, cx: &mut Context<'_>) -> Option<bool> {
        let deadline = self.since? + wait;
        if Instant::now() >= deadline {
            return Some(true);
        }
        if self.timer.deadline() != deadline {
            self.timer.as_mut().reset(deadline);
        }
        Some(self.timer.as_mut().poll(cx).is_ready())
    }
}

/// The fixed rule: batches of at most `size` items, sent once full or once the oldest has
/// waited `linger`. The owner keeps the items.
#[derive(Debug)]
pub(crate) struct Linger {
    size: usize,
    linger: Duration,
    clock: BatchClock,
}

impl Linger {
    /// Batches of at most `size` items (at least 1), sent at the latest `linger` after their
    /// first item arrived.
    pub(crate) fn new(size: usize, linger: Duration) -> Linger {
        Linger {
            size: size.max(1),
            linger,
            clock: BatchClock::new(),
        }
    }

    /// The most items one batch takes.
    pub(crate) fn size(&self) -> usize {
        self.size
    }

    /// An item arrived at a batch that held `before` items: the first one starts the clock.
    pub(crate) fn arrived(&mut self, before: usize) {
        self.clock.arrived(before);
    }

    /// A batch was taken and `left` items remain: they start the next batch's clock now.
    pub(crate) fn taken(&mut self, left: usize) {
        self.clock.taken(left);
    }

    /// Whether a batch of the `len` items held is ready: full, or lingered long enough. When it
    /// is not, the timer is armed to wake the task at the deadline.
    pub(crate) fn poll_ready(&mut self, len: usize, cx: &mut Context<'_>) -> bool {
        if len == 0 {
            return false;
        }
        if len >= self.size {
            return true;
        }
        self.clock.poll_waited(self.linger, cx).unwrap_or(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn ready_when_full_or_lingered_and_never_when_empty() {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let mut l = Linger::new(3, Duration::from_millis(10));
        assert!(!l.poll_ready(0, &mut cx));
        l.arrived(0);
        assert!(!l.poll_ready(1, &mut cx));
        assert!(l.poll_ready(3, &mut cx), "a full batch goes at once");
        tokio::time::advance(Duration::from_millis(9)).await;
        assert!(!l.poll_ready(2, &mut cx));
        tokio::time::advance(Duration::from_millis(1)).await;
        assert!(
            l.poll_ready(2, &mut cx),
            "the oldest item waited the linger"
        );
        l.taken(0);
        assert!(!l.poll_ready(0, &mut cx));
        l.arrived(0);
        l.taken(1);
        assert!(
            !l.poll_ready(1, &mut cx),
            "what is left starts a fresh clock"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_timer_wakes_the_task_at_the_deadline() {
        let mut l = Linger::new(10, Duration::from_millis(5));
        l.arrived(0);
        let woke = std::future::poll_fn(|cx| {
            if l.poll_ready(1, cx) {
                std::task::Poll::Ready(Instant::now())
            } else {
                std::task::Poll::Pending
            }
        });
        let start = Instant::now();
        let at = tokio::time::timeout(Duration::from_secs(1), woke)
            .await
            .unwrap();
        assert_eq!(at - start, Duration::from_millis(5));
    }
}
