//! Checks a subscriber against the rules that bind subscribers.
//!
//! The verification plays the publisher: it hands the subscriber a real
//! [`Subscription`](crate::Subscription) and watches the demand it signals.

use std::cell::Cell;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::task::{Context, Wake, Waker};
use std::time::Duration;

use tokio::time::Instant;

use super::Outcome;
use crate::subscription::{self, Demand};
use crate::{Error, Subscriber, Subscription};

type Factory<T> = Arc<dyn Fn() -> Box<dyn Subscriber<T> + Send> + Send + Sync>;

/// Verifies the subscribers a factory makes, feeding them items made by `element(i)`.
///
/// The factory is called inside a tokio runtime, so it may spawn whatever drives the subscriber
/// (the driver of [`from_sink`](crate::from_sink), say).
///
/// ```
/// use reactive::tck::{run, Outcome, SubscriberVerification};
/// use reactive::Prefetch;
/// let verification = SubscriberVerification::new(
///     || {
///         let (subscriber, driver) = reactive::from_sink(futures::sink::drain(), Prefetch::new(4));
///         tokio::spawn(driver);
///         subscriber
///     },
///     |i| i,
/// );
/// assert_eq!(run(verification.rule_2_01_signals_demand()), Outcome::Passed);
/// ```
pub struct SubscriberVerification<T> {
    factory: Factory<T>,
    element: Arc<dyn Fn(u64) -> T + Send + Sync>,
    timeout: Duration,
}

impl<T> Clone for SubscriberVerification<T> {
    fn clone(&self) -> Self {
        SubscriberVerification {
            factory: self.factory.clone(),
            element: self.element.clone(),
            timeout: self.timeout,
        }
    }
}

impl<T> std::fmt::Debug for SubscriberVerification<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SubscriberVerification")
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// The verification's stand-in publisher: the subscriber under test and its demand.
struct Feed<T> {
    subscriber: Box<dyn Subscriber<T> + Send>,
    subscription: Subscription,
    demand: Demand,
    sent: u64,
}

impl<T: 'static> SubscriberVerification<T> {
    /// Verifies the subscribers `factory` makes, with items `element(0)`, `element(1)`, ….
    pub fn new<S, F, E>(factory: F, element: E) -> Self
    where
        S: Subscriber<T> + Send + 'static,
        F: Fn() -> S + Send + Sync + 'static,
        E: Fn(u64) -> T + Send + Sync + 'static,
    {
        SubscriberVerification {
            factory: Arc::new(move || Box::new(factory())),
            element: Arc::new(element),
            timeout: Duration::from_secs(2),
        }
    }

    /// How long to wait for the subscriber to signal demand (default 2 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    fn subscribe(&self, rule: &str) -> Feed<T> {
        let mut subscriber = (self.factory)();
        let (subscription, demand) = subscription::pair();
        signal(rule, "on_subscribe", || {
            subscriber.on_subscribe(subscription.clone())
        });
        Feed {
            subscriber,
            subscription,
            demand,
            sent: 0,
        }
    }

    /// Waits for demand, then sends up to `n` items within it; returns how many were sent.
    async fn send(&self, feed: &mut Feed<T>, n: u64, rule: &str) -> u64 {
        let deadline = Instant::now() + self.timeout;
        let mut sent = 0;
        while sent < n {
            match feed.demand.try_ready() {
                Ok(0) => {
                    if Instant::now() >= deadline {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                Ok(_) => {
                    let item = (self.element)(feed.sent);
                    feed.demand.consume();
                    signal(rule, "on_next", || feed.subscriber.on_next(item));
                    feed.sent += 1;
                    sent += 1;
                }
                Err(_) => break,
            }
        }
        sent
    }

    /// Rule 2.1: a subscriber signals demand to receive items, and keeps doing so.
    pub async fn rule_2_01_signals_demand(&self) -> Outcome {
        let mut feed = self.subscribe("2.1");
        let sent = self.send(&mut feed, 10, "2.1").await;
        assert_eq!(
            sent, 10,
            "rule 2.1 broken: demand for only {sent} of 10 items within {:?}",
            self.timeout
        );
        signal("2.1", "on_complete", || feed.subscriber.on_complete());
        Outcome::Passed
    }

    /// Rule 2.3: `on_complete` and `on_error` do not call the subscription.
    ///
    /// Seen through the publisher's waker, not through a hook in [`Subscription`]: before the
    /// terminal signal the stand-in publisher takes all demand and registers a waker that
    /// notes being woken on the signalling thread while the signal runs. A `request`, a
    /// `request(0)` or a `cancel` made there wakes it. Calls from the subscriber's other
    /// threads (a consumer task replenishing demand) are not the signal's and are ignored; a
    /// `request` that finds the demand unbounded wakes nobody and goes unseen.
    pub async fn rule_2_03_terminal_signals_do_not_call_the_subscription(&self) -> Outcome {
        for fail in [false, true] {
            let mut feed = self.subscribe("2.3");
            self.send(&mut feed, 2, "2.3").await;
            let watch = Arc::new(CallWatch::default());
            let waker = Waker::from(watch.clone());
            let _ = feed.demand.try_ready(); // empties the counter, so a request will wake
            feed.demand.register(&mut Context::from_waker(&waker));
            IN_TERMINAL.with(|t| t.set(true));
            signal("2.3", "a terminal signal", || {
                if fail {
                    feed.subscriber
                        .on_error(Error::upstream(std::io::Error::other("tck")))
                } else {
                    feed.subscriber.on_complete()
                }
            });
            IN_TERMINAL.with(|t| t.set(false));
            let calls = watch.calls.load(Ordering::Acquire);
            assert_eq!(
                calls, 0,
                "rule 2.3 broken: {calls} subscription calls from a terminal signal"
            );
        }
        Outcome::Passed
    }

    /// Rule 2.5: a subscriber with an active subscription cancels a second one.
    pub async fn rule_2_05_cancels_a_second_subscription(&self) -> Outcome {
        let mut feed = self.subscribe("2.5");
        let (second, _second_demand) = subscription::pair();
        signal("2.5", "on_subscribe", || {
            feed.subscriber.on_subscribe(second.clone())
        });
        let deadline = Instant::now() + self.timeout;
        while !second.is_cancelled() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        assert!(
            second.is_cancelled(),
            "rule 2.5 broken: the second subscription was not cancelled"
        );
        assert!(
            !feed.subscription.is_cancelled(),
            "rule 2.5 broken: the first subscription was cancelled"
        );
        signal("2.5", "on_complete", || feed.subscriber.on_complete());
        Outcome::Passed
    }

    /// Rule 2.8: a subscriber accepts items that were in flight when it cancelled.
    pub async fn rule_2_08_tolerates_on_next_after_cancel(&self) -> Outcome {
        let mut feed = self.subscribe("2.8");
        let deadline = Instant::now() + self.timeout;
        let mut granted = 0;
        while granted == 0 && Instant::now() < deadline {
            granted = feed.demand.try_ready().unwrap_or(0);
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        feed.subscription.cancel();
        for i in 0..granted.min(2) {
            let item = (self.element)(i);
            signal("2.8", "on_next after cancel", || {
                feed.subscriber.on_next(item)
            });
        }
        signal("2.8", "on_complete after cancel", || {
            feed.subscriber.on_complete()
        });
        Outcome::Passed
    }

    /// Rule 2.9: `on_complete` may come without any request.
    pub async fn rule_2_09_accepts_on_complete_without_request(&self) -> Outcome {
        let mut feed = self.subscribe("2.9");
        signal("2.9", "on_complete", || feed.subscriber.on_complete());
        Outcome::Passed
    }

    /// Rule 2.10: `on_error` may come without any request.
    pub async fn rule_2_10_accepts_on_error_without_request(&self) -> Outcome {
        let mut feed = self.subscribe("2.10");
        let error = Error::upstream(std::io::Error::other("tck"));
        signal("2.10", "on_error", || feed.subscriber.on_error(error));
        Outcome::Passed
    }

    /// Rule 2.13: every signal of a valid sequence returns normally.
    pub async fn rule_2_13_signals_return_normally(&self) -> Outcome {
        let mut feed = self.subscribe("2.13");
        self.send(&mut feed, 5, "2.13").await;
        signal("2.13", "on_complete", || feed.subscriber.on_complete());
        Outcome::Passed
    }
}

thread_local! {
    /// Set on the thread that delivers a terminal signal, while it does.
    static IN_TERMINAL: Cell<bool> = const { Cell::new(false) };
}

/// The stand-in publisher's waker during a terminal signal: counts the wake-ups that come
/// from the signalling thread, which only a subscription call made by the signal can cause.
#[derive(Default)]
struct CallWatch {
    calls: AtomicU32,
}

impl Wake for CallWatch {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        if IN_TERMINAL.with(Cell::get) {
            self.calls.fetch_add(1, Ordering::AcqRel);
        }
    }
}

fn signal(rule: &str, what: &str, f: impl FnOnce()) {
    if catch_unwind(AssertUnwindSafe(f)).is_err() {
        panic!("rule {rule} broken: {what} panicked (rule 2.13)");
    }
}
