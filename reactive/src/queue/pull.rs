//! Pull mode: no buffer. Each downstream `request(n)` is forwarded upstream as is, and each
//! item upstream emits goes straight to the subscriber.
//!
//! # Cancellation
//! The subscriber's `cancel` (or `request(0)`) is checked before every item is passed on, not
//! only when the connection is next polled: an upstream that emits a run of items in one poll
//! is cut off at once, so at most the item being delivered when `cancel` returns still
//! arrives. The upstream is cancelled (or sent the `request(0)`, which it answers with
//! `on_error`) at the same moment.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Context;

use super::QueueStats;
use crate::demand::UNBOUNDED;
use crate::subscription::{self, Demand, Stop};
use crate::{Error, Subscriber, Subscription};

/// Builds the two halves of a pull-mode connection: the subscriber to connect upstream and
/// the forwarder of downstream demand.
pub(super) fn connect<S>(downstream: S, stats: Arc<QueueStats>) -> (PullSubscriber<S>, Forward) {
    let (down_subscription, demand) = subscription::pair();
    let link = Arc::new(PullLink {
        upstream: Mutex::new(None),
        outstanding: AtomicU64::new(0),
    });
    let input = PullSubscriber {
        downstream,
        down_subscription: Some(down_subscription),
        down: None,
        link: link.clone(),
        stats: stats.clone(),
        stopped: None,
    };
    (
        input,
        Forward {
            demand,
            link,
            stats,
        },
    )
}

#[derive(Debug)]
struct PullLink {
    upstream: Mutex<Option<Subscription>>,
    /// Requested downstream, forwarded upstream, not yet delivered.
    outstanding: AtomicU64,
}

impl PullLink {
    fn upstream(&self) -> Option<Subscription> {
        self.upstream
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// Passes a downstream stop upstream: a cancel as a cancel, a `request(0)` as a `request(0)`
/// (which the upstream publisher answers with `on_error`).
fn pass_stop(upstream: &Subscription, stop: Stop) {
    match stop {
        Stop::BadRequest => upstream.request(0),
        _ => upstream.cancel(),
    }
}

/// The subscriber a pull-mode [`Queue`](super::Queue) connects upstream.
#[derive(Debug)]
pub struct PullSubscriber<S> {
    downstream: S,
    down_subscription: Option<Subscription>,
    /// The downstream's subscription: checked before each item, and marked ended when the
    /// stream ends (rule 1.6).
    down: Option<Subscription>,
    link: Arc<PullLink>,
    stats: Arc<QueueStats>,
    /// The downstream stopped, and how: nothing more is passed on.
    stopped: Option<Stop>,
}

impl<T, S: Subscriber<T>> Subscriber<T> for PullSubscriber<S> {
    fn on_subscribe(&mut self, subscription: Subscription) {
        let Some(down) = self.down_subscription.take() else {
            subscription.cancel();
            return;
        };
        *self.link.upstream.lock().unwrap_or_else(|p| p.into_inner()) = Some(subscription);
        self.down = Some(down.clone());
        self.downstream.on_subscribe(down);
    }

    fn on_next(&mut self, item: T) {
        if self.stopped.is_some() {
            return;
        }
        if let Some(stop) = self.down.as_ref().and_then(Subscription::stopped) {
            // Cancelled (or sent request(0)) since the last item: stop here, and tell the
            // upstream now rather than when the connection is next polled.
            self.stopped = Some(stop);
            if let Some(upstream) = self.link.upstream() {
                pass_stop(&upstream, stop);
            }
            return;
        }
        let left = self
            .link
            .outstanding
            .fetch_sub(1, Ordering::AcqRel)
            .saturating_sub(1);
        if left == 0 {
            self.stats.set_blocked(true);
        }
        self.stats.passed();
        self.downstream.on_next(item);
    }

    fn on_error(&mut self, error: Error) {
        // A source that has ended waits for nothing: a blocked spell ends with it.
        self.stats.set_blocked(false);
        if let Some(down) = &self.down {
            down.terminate();
        }
        match self.stopped {
            None => self.downstream.on_error(error),
            // A request(0) cut the stream short: its BadRequest is owed, whatever ended it.
            Some(Stop::BadRequest) => self.downstream.on_error(Error::BadRequest),
            Some(_) => {}
        }
    }

    fn on_complete(&mut self) {
        // A source that has ended waits for nothing: a blocked spell ends with it.
        self.stats.set_blocked(false);
        if let Some(down) = &self.down {
            down.terminate();
        }
        match self.stopped {
            None => self.downstream.on_complete(),
            Some(Stop::BadRequest) => self.downstream.on_error(Error::BadRequest),
            Some(_) => {}
        }
    }
}

/// Forwards downstream demand (and stops) upstream, each time the connection is polled.
#[derive(Debug)]
pub struct Forward {
    demand: Demand,
    link: Arc<PullLink>,
    stats: Arc<QueueStats>,
}

impl Forward {
    pub(super) fn poll(&mut self, cx: &mut Context<'_>) {
        self.demand.register(cx);
        let Some(upstream) = self.link.upstream() else {
            return;
        };
        match self.demand.take_requests() {
            Ok(0) => {}
            Ok(n) => {
                let before = self
                    .link
                    .outstanding
                    .fetch_add(n.min(UNBOUNDED), Ordering::AcqRel);
                if before == 0 {
                    self.stats.set_blocked(false);
                }
                upstream.request(n);
            }
            Err(stop) => pass_stop(&upstream, stop),
        }
    }
}
