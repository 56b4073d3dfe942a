//! Checks a publisher against the rules that bind publishers and subscriptions.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use super::upstream::tracking;
use super::{Outcome, Probe, ProbeHandle, Signal, Upstream};
use crate::demand::UNBOUNDED;
use crate::{Error, Publisher};

type Connection = Pin<Box<dyn Future<Output = ()> + Send>>;
type Factory = Arc<dyn Fn(u64, Probe) -> Connection + Send + Sync>;
type FailedFactory = Arc<dyn Fn(Probe) -> Connection + Send + Sync>;

fn boxed<P, F>(factory: F) -> Factory
where
    F: Fn(u64) -> P + Send + Sync + 'static,
    P: Publisher,
    P::Connection<Probe>: Send + 'static,
    Probe: crate::Subscriber<P::Item>,
{
    Arc::new(move |n, probe| Box::pin(factory(n).connect(probe)))
}

/// Verifies a publisher, built by a factory from the number of items it should emit.
///
/// # Three kinds of upstream
/// A publisher is checked first as the factory builds it. An operator (a queue, a batcher,
/// anything that sits on an upstream) should also be checked over an upstream that pauses
/// between items and over one that is idle, because a lost wake-up hides behind an upstream
/// that is always ready. [`over`](Self::over) does all three from one closure that puts the
/// operator on an [`Upstream`] the suite provides; [`with_pending`](Self::with_pending) and
/// [`with_idle`](Self::with_idle) take the other two factories one by one. The
/// [`publisher_tck!`](crate::publisher_tck) macro runs every rule a second time over the
/// pausing upstream (the tests in its `pending` module), and the `idle` rules over the idle
/// one.
///
/// ```
/// use reactive::tck::{run, Outcome, PublisherVerification};
/// let verification = PublisherVerification::new(|n| reactive::iter(0..n));
/// assert_eq!(run(verification.rule_1_01_on_next_never_exceeds_requested()), Outcome::Passed);
/// ```
#[derive(Clone)]
pub struct PublisherVerification {
    factory: Factory,
    pending: Option<Factory>,
    idle: Option<Factory>,
    failed: Option<FailedFactory>,
    max_elements: u64,
    timeout: Duration,
    settle: Duration,
    /// Why the publisher needs one more request to find out it is done, if it does.
    extra_request_to_complete: Option<&'static str>,
}

impl std::fmt::Debug for PublisherVerification {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PublisherVerification")
            .field("max_elements", &self.max_elements)
            .field("has_failed_publisher", &self.failed.is_some())
            .field("has_pending_upstream", &self.pending.is_some())
            .field("has_idle_upstream", &self.idle.is_some())
            .finish()
    }
}

/// How long to stream an infinite publisher before a check is satisfied.
const LONG: u64 = 1_000_000;

struct Run {
    probe: ProbeHandle,
    task: tokio::task::JoinHandle<()>,
    /// Release flags of the [`Upstream`]s the factory built.
    upstreams: Vec<Arc<std::sync::atomic::AtomicBool>>,
}

impl Run {
    fn upstreams_released(&self) -> bool {
        self.upstreams
            .iter()
            .all(|r| r.load(std::sync::atomic::Ordering::Acquire))
    }
}

impl PublisherVerification {
    /// Verifies the publishers `factory(n)` makes, where `n` is the number of items the
    /// publisher must emit before completing. For an infinite publisher, ignore `n` and set
    /// [`max_elements`](Self::max_elements) to `u64::MAX`.
    pub fn new<P, F>(factory: F) -> Self
    where
        F: Fn(u64) -> P + Send + Sync + 'static,
        P: Publisher,
        P::Connection<Probe>: Send + 'static,
        Probe: crate::Subscriber<P::Item>,
    {
        PublisherVerification {
            factory: boxed(factory),
            pending: None,
            idle: None,
            failed: None,
            max_elements: u64::MAX - 1,
            timeout: Duration::from_secs(2),
            settle: Duration::from_millis(20),
            extra_request_to_complete: None,
        }
    }

    /// Verifies the operator that `operator` puts on an [`Upstream`]: over an upstream of `n`
    /// items that is always ready, then (the `pending` tests) over one that pauses between
    /// items, and (the `idle` rules) over one that never emits.
    ///
    /// ```
    /// use reactive::PublisherExt;
    /// use reactive::queue::QueueConfig;
    /// use reactive::tck::{run, Outcome, PublisherVerification};
    /// let verification = PublisherVerification::over(|up| up.queue(QueueConfig::bounded(4)));
    /// assert_eq!(run(verification.rule_3_13_idle_cancel_releases_subscriber_and_source()), Outcome::Passed);
    /// ```
    pub fn over<P, F>(operator: F) -> Self
    where
        F: Fn(Upstream) -> P + Send + Sync + 'static,
        P: Publisher,
        P::Connection<Probe>: Send + 'static,
        Probe: crate::Subscriber<P::Item>,
    {
        let operator = Arc::new(operator);
        let (a, b, c) = (operator.clone(), operator.clone(), operator);
        PublisherVerification::new(move |n| a(Upstream::ready(n)))
            .with_pending(move |n| b(Upstream::pausing(n)))
            .with_idle(move || c(Upstream::idle()))
    }

    /// Also runs every rule over the publishers `factory(n)` makes whose items arrive with
    /// pauses (the `pending` tests of [`publisher_tck!`](crate::publisher_tck)).
    pub fn with_pending<P, F>(mut self, factory: F) -> Self
    where
        F: Fn(u64) -> P + Send + Sync + 'static,
        P: Publisher,
        P::Connection<Probe>: Send + 'static,
        Probe: crate::Subscriber<P::Item>,
    {
        self.pending = Some(boxed(factory));
        self
    }

    /// Checks the `idle` rules (cancel, `request(0)` and a dropped connection end everything
    /// at once) on the publishers `factory` makes, which must never emit on their own: an
    /// operator over a silent source.
    pub fn with_idle<P, F>(mut self, factory: F) -> Self
    where
        F: Fn() -> P + Send + Sync + 'static,
        P: Publisher,
        P::Connection<Probe>: Send + 'static,
        Probe: crate::Subscriber<P::Item>,
    {
        self.idle = Some(boxed(move |_| factory()));
        self
    }

    /// Declares that the publisher cannot know it is done until it is asked for one more
    /// item (a stream must be polled once more to return `None`; a filter cannot know that
    /// no later item would pass). The rule "completes on exact demand" is then skipped with
    /// this reason. Everything that knows its length must complete without it.
    pub fn needs_a_request_to_complete(mut self, why: &'static str) -> Self {
        self.extra_request_to_complete = Some(why);
        self
    }

    /// The same verification with the pausing upstream as its publisher, if it has one.
    pub fn pending_variant(&self) -> Option<Self> {
        let pending = self.pending.clone()?;
        Some(PublisherVerification {
            factory: pending,
            pending: None,
            idle: None,
            failed: None,
            ..self.clone()
        })
    }

    /// Also checks the failure rules (1.4, 1.7) with a publisher that signals `on_error`,
    /// with or without demand.
    pub fn with_failed<P, F>(mut self, factory: F) -> Self
    where
        F: Fn() -> P + Send + Sync + 'static,
        P: Publisher,
        P::Connection<Probe>: Send + 'static,
        Probe: crate::Subscriber<P::Item>,
    {
        self.failed = Some(Arc::new(move |probe| Box::pin(factory().connect(probe))));
        self
    }

    /// The most items the publisher can emit; `u64::MAX` for an infinite publisher.
    pub fn max_elements(mut self, max: u64) -> Self {
        self.max_elements = max;
        self
    }

    /// How long to wait for an expected signal (default 2 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    fn finite(&self) -> bool {
        self.max_elements < u64::MAX
    }

    fn start(&self, n: u64) -> Run {
        self.start_with(n, 0)
    }

    fn start_with(&self, n: u64, request_in_on_next: u64) -> Run {
        let (probe, handle) = Probe::new(request_in_on_next);
        self.launch(&self.factory, n.min(self.max_elements), probe, handle)
    }

    fn launch(&self, factory: &Factory, n: u64, probe: Probe, handle: ProbeHandle) -> Run {
        let (connection, upstreams) = tracking(|| factory(n, probe));
        Run {
            probe: handle,
            task: tokio::spawn(connection),
            upstreams,
        }
    }

    async fn expect(
        &self,
        run: &Run,
        rule: &str,
        what: &str,
        condition: impl Fn(&ProbeHandle) -> bool,
    ) {
        if !run.probe.wait_for(self.timeout, condition).await {
            panic!(
                "rule {rule} broken: {what} within {:?}; signals: {:?}",
                self.timeout,
                run.probe.signals()
            );
        }
    }

    async fn settle(&self) {
        tokio::time::sleep(self.settle).await;
    }

    /// Waits for the connection to end and checks that it did not panic.
    async fn finish(&self, run: Run, rule: &str) {
        match tokio::time::timeout(self.timeout, run.task).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) if e.is_panic() => panic!("rule {rule} broken: the publisher panicked: {e}"),
            Ok(Err(_)) => {}
            Err(_) => panic!(
                "rule {rule} broken: the connection did not end within {:?}",
                self.timeout
            ),
        }
    }

    /// Rule 1.1: the number of `on_next` never exceeds the total requested.
    pub async fn rule_1_01_on_next_never_exceeds_requested(&self) -> Outcome {
        let run = self.start(10);
        let mut requested = 0;
        for n in [1, 2, 3] {
            run.probe.request(n);
            requested += n;
            self.settle().await;
            let got = run.probe.nexts();
            assert!(
                got <= requested,
                "rule 1.1 broken: {got} on_next for {requested} requested"
            );
        }
        run.probe.cancel();
        self.finish(run, "1.1").await;
        Outcome::Passed
    }

    /// Rule 1.2: a publisher may emit fewer items than requested and then terminate.
    pub async fn rule_1_02_may_complete_with_fewer_items_than_requested(&self) -> Outcome {
        if !self.finite() || self.max_elements < 3 {
            return Outcome::Skipped("rule 1.2 needs a finite publisher of 3 items");
        }
        let run = self.start(3);
        run.probe.request(10);
        self.expect(&run, "1.2", "on_complete after 3 items", |p| p.completed())
            .await;
        assert_eq!(run.probe.nexts(), 3, "rule 1.2 broken: wrong item count");
        self.finish(run, "1.2").await;
        Outcome::Passed
    }

    /// Rule 1.3: signals are serial even when requests come from many threads at once.
    pub async fn rule_1_03_signals_are_serial(&self) -> Outcome {
        let total = 8 * 2_000;
        let run = self.start(total);
        let subscription = run.probe.subscription();
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let s = subscription.clone();
                std::thread::spawn(move || {
                    for _ in 0..2_000 {
                        s.request(1);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().expect("request panicked (rule 3.16)");
        }
        let expected = total.min(self.max_elements);
        self.expect(&run, "1.3", "all requested items", |p| {
            p.nexts() >= expected
        })
        .await;
        assert_eq!(
            run.probe.overlaps(),
            0,
            "rule 1.3 broken: signals overlapped"
        );
        run.probe.cancel();
        self.finish(run, "1.3").await;
        Outcome::Passed
    }

    /// Rule 1.4: a failing publisher signals `on_error`.
    pub async fn rule_1_04_failure_is_signalled_with_on_error(&self) -> Outcome {
        let Some(failed) = &self.failed else {
            return Outcome::Skipped("rule 1.4 needs a failing publisher (with_failed)");
        };
        let (probe, handle) = Probe::new(0);
        let run = Run {
            probe: handle,
            task: tokio::spawn(failed(probe)),
            upstreams: Vec::new(),
        };
        // A stream-backed publisher discovers its failure only by polling, which takes demand.
        run.probe.request(16);
        self.expect(&run, "1.4", "on_error", |p| p.error().is_some())
            .await;
        assert!(
            matches!(run.probe.signals().first(), Some(Signal::Subscribe)),
            "rule 1.9 broken: on_error before on_subscribe"
        );
        self.finish(run, "1.4").await;
        Outcome::Passed
    }

    /// Rule 1.5: a finite publisher completes after its last item.
    pub async fn rule_1_05_completes_after_the_last_item(&self) -> Outcome {
        if !self.finite() || self.max_elements < 3 {
            return Outcome::Skipped("rule 1.5 needs a finite publisher of 3 items");
        }
        let run = self.start(3);
        run.probe.request(3);
        self.expect(&run, "1.5", "3 items", |p| p.nexts() == 3)
            .await;
        // Discovering the end may take one more unit of demand (a stream must be polled once more).
        run.probe.request(1);
        self.expect(&run, "1.5", "on_complete", |p| p.completed())
            .await;
        assert!(
            matches!(run.probe.signals().last(), Some(Signal::Complete)),
            "rule 1.5 broken"
        );
        self.finish(run, "1.5").await;
        Outcome::Passed
    }

    /// Rule 1.5, strictly: a finite publisher that knows it is done completes on exactly the
    /// demand for its items, without one more request, and an empty one without any.
    pub async fn rule_1_05_completes_on_exact_demand(&self) -> Outcome {
        if let Some(why) = self.extra_request_to_complete {
            return Outcome::Skipped(why);
        }
        if !self.finite() || self.max_elements < 3 {
            return Outcome::Skipped("rule 1.5 needs a finite publisher of 3 items");
        }
        for n in [3, 0] {
            let run = self.start(n);
            if n > 0 {
                run.probe.request(n);
            }
            self.expect(&run, "1.5", "on_complete without a further request", |p| {
                p.completed()
            })
            .await;
            assert_eq!(run.probe.nexts(), n, "rule 1.5 broken: wrong item count");
            self.finish(run, "1.5").await;
        }
        Outcome::Passed
    }

    /// Rule 1.6: after a terminal signal the subscription counts as cancelled.
    pub async fn rule_1_06_terminal_signal_cancels_the_subscription(&self) -> Outcome {
        if !self.finite() {
            return Outcome::Skipped("rule 1.6 needs a finite publisher");
        }
        let run = self.start(1);
        run.probe.request(5);
        self.expect(&run, "1.6", "on_complete", |p| p.completed())
            .await;
        assert!(
            run.probe.subscription().is_cancelled(),
            "rule 1.6 broken: subscription still active"
        );
        let before = run.probe.signals().len();
        run.probe.request(5);
        self.settle().await;
        assert_eq!(
            run.probe.signals().len(),
            before,
            "rule 1.6 broken: signals after terminal"
        );
        self.finish(run, "1.6").await;
        Outcome::Passed
    }

    /// Rule 1.7: nothing follows `on_complete` or `on_error`.
    pub async fn rule_1_07_no_signal_follows_a_terminal_signal(&self) -> Outcome {
        let mut runs = Vec::new();
        if self.finite() {
            let run = self.start(2);
            run.probe.request(UNBOUNDED);
            runs.push(run);
        }
        if let Some(failed) = &self.failed {
            let (probe, handle) = Probe::new(0);
            let run = Run {
                probe: handle,
                task: tokio::spawn(failed(probe)),
                upstreams: Vec::new(),
            };
            run.probe.request(UNBOUNDED);
            runs.push(run);
        }
        if runs.is_empty() {
            return Outcome::Skipped("rule 1.7 needs a finite or a failing publisher");
        }
        for run in runs {
            self.expect(&run, "1.7", "a terminal signal", |p| p.terminals() > 0)
                .await;
            self.settle().await;
            let signals = run.probe.signals();
            assert_eq!(run.probe.terminals(), 1, "rule 1.7 broken: {signals:?}");
            assert!(
                matches!(signals.last(), Some(Signal::Complete | Signal::Error(_))),
                "rule 1.7 broken: signal after terminal: {signals:?}"
            );
            self.finish(run, "1.7").await;
        }
        Outcome::Passed
    }

    /// Rule 1.8: after `cancel`, signals eventually stop.
    pub async fn rule_1_08_cancel_eventually_stops_signals(&self) -> Outcome {
        let run = self.start(LONG);
        run.probe.request(UNBOUNDED);
        self.expect(&run, "1.8", "items", |p| p.nexts() > 0 || p.terminals() > 0)
            .await;
        run.probe.cancel();
        self.finish(run, "1.8").await;
        Outcome::Passed
    }

    /// Rule 1.9: `on_subscribe` is the first signal, and comes exactly once.
    pub async fn rule_1_09_on_subscribe_comes_first_and_once(&self) -> Outcome {
        for n in [0, 3] {
            let run = self.start(n);
            self.expect(&run, "1.9", "on_subscribe", |p| !p.signals().is_empty())
                .await;
            run.probe.request(5);
            self.settle().await;
            let signals = run.probe.signals();
            assert!(
                matches!(signals.first(), Some(Signal::Subscribe)),
                "rule 1.9 broken: {signals:?}"
            );
            let subscribes = signals
                .iter()
                .filter(|s| matches!(s, Signal::Subscribe))
                .count();
            assert_eq!(
                subscribes, 1,
                "rule 1.9 broken: on_subscribe {subscribes} times"
            );
            run.probe.cancel();
            self.finish(run, "1.9").await;
        }
        Outcome::Passed
    }

    /// Rule 2.12: each subscriber gets `on_subscribe` once, with a subscription of its own.
    pub async fn rule_2_12_on_subscribe_is_called_once_per_subscriber(&self) -> Outcome {
        let a = self.start(3);
        let b = self.start(3);
        for run in [&a, &b] {
            self.expect(run, "2.12", "on_subscribe", |p| !p.signals().is_empty())
                .await;
        }
        assert!(
            !a.probe.subscription().same_as(&b.probe.subscription()),
            "rule 2.12 broken: two subscribers share one subscription"
        );
        for run in [a, b] {
            run.probe.request(1);
            self.settle().await;
            let subscribes = run
                .probe
                .signals()
                .iter()
                .filter(|s| matches!(s, Signal::Subscribe))
                .count();
            assert_eq!(
                subscribes, 1,
                "rule 2.12 broken: on_subscribe {subscribes} times"
            );
            run.probe.cancel();
            self.finish(run, "2.12").await;
        }
        Outcome::Passed
    }

    /// Rule 3.2: a subscriber may request from inside `on_next`.
    pub async fn rule_3_02_request_from_on_next_is_allowed(&self) -> Outcome {
        let n = 100.min(self.max_elements);
        let run = self.start_with(n, 1);
        run.probe.request(1);
        self.expect(&run, "3.2", "every item, one request at a time", |p| {
            p.nexts() >= n
        })
        .await;
        run.probe.cancel();
        self.finish(run, "3.2").await;
        Outcome::Passed
    }

    /// Rule 3.3: `request` from `on_next` does not recurse into `on_next`.
    pub async fn rule_3_03_request_recursion_is_bounded(&self) -> Outcome {
        let n = 10_000.min(self.max_elements);
        let run = self.start_with(n, 1);
        run.probe.request(1);
        self.expect(&run, "3.3", "every item", |p| p.nexts() >= n)
            .await;
        let depth = run.probe.max_depth();
        assert!(depth <= 1, "rule 3.3 broken: signals nested {depth} deep");
        run.probe.cancel();
        self.finish(run, "3.3").await;
        Outcome::Passed
    }

    /// Rule 3.5: `cancel` is thread-safe and idempotent.
    pub async fn rule_3_05_cancel_is_thread_safe(&self) -> Outcome {
        let run = self.start(LONG);
        run.probe.request(UNBOUNDED);
        let subscription = run.probe.subscription();
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let s = subscription.clone();
                std::thread::spawn(move || {
                    for _ in 0..100 {
                        s.cancel();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().expect("rule 3.5 broken: cancel panicked");
        }
        self.finish(run, "3.5").await;
        Outcome::Passed
    }

    /// Rule 3.6: `request` after `cancel` does nothing.
    pub async fn rule_3_06_request_after_cancel_is_a_no_op(&self) -> Outcome {
        let run = self.start(10);
        run.probe.cancel();
        run.probe.request(10);
        self.settle().await;
        assert_eq!(run.probe.nexts(), 0, "rule 3.6 broken: items after cancel");
        self.finish(run, "3.6").await;
        Outcome::Passed
    }

    /// Rule 3.7: `cancel` after `cancel` does nothing.
    pub async fn rule_3_07_cancel_after_cancel_is_a_no_op(&self) -> Outcome {
        let run = self.start(10);
        run.probe.cancel();
        run.probe.cancel();
        run.probe.cancel();
        self.settle().await;
        assert_eq!(
            run.probe.terminals(),
            0,
            "rule 3.7 broken: cancel caused a signal"
        );
        self.finish(run, "3.7").await;
        Outcome::Passed
    }

    /// Rule 3.8: `request(n)` registers demand for `n` more items.
    pub async fn rule_3_08_request_registers_demand(&self) -> Outcome {
        if self.max_elements < 10 {
            return Outcome::Skipped("rule 3.8 needs a publisher of 10 items");
        }
        let run = self.start(10);
        run.probe.request(4);
        self.expect(&run, "3.8", "4 items", |p| p.nexts() == 4)
            .await;
        self.settle().await;
        assert_eq!(run.probe.nexts(), 4, "rule 1.1 broken: more than requested");
        run.probe.request(3);
        self.expect(&run, "3.8", "3 more items", |p| p.nexts() == 7)
            .await;
        run.probe.cancel();
        self.finish(run, "3.8").await;
        Outcome::Passed
    }

    /// Rule 3.9: `request(0)` signals `on_error` with [`Error::BadRequest`].
    pub async fn rule_3_09_request_zero_signals_error(&self) -> Outcome {
        let run = self.start(10);
        run.probe.request(0);
        self.expect(&run, "3.9", "on_error", |p| p.error().is_some())
            .await;
        assert!(
            matches!(run.probe.error(), Some(Error::BadRequest)),
            "rule 3.9 broken: wrong error {:?}",
            run.probe.error()
        );
        self.finish(run, "3.9").await;
        Outcome::Passed
    }

    /// Rule 3.12: `cancel` stops signals even while demand is outstanding.
    pub async fn rule_3_12_cancel_stops_signals(&self) -> Outcome {
        let run = self.start(LONG);
        run.probe.request(2);
        self.expect(&run, "3.12", "2 items", |p| {
            p.nexts() == 2 || p.terminals() > 0
        })
        .await;
        run.probe.cancel();
        let at_cancel = run.probe.nexts();
        run.probe.request(100);
        self.settle().await;
        let after = run.probe.nexts();
        assert_eq!(
            after,
            at_cancel,
            "rule 3.12 broken: {} items after cancel",
            after - at_cancel
        );
        self.finish(run, "3.12").await;
        Outcome::Passed
    }

    /// Rule 3.12, at once: a `cancel` from inside `on_next` stops the very next emission,
    /// whatever demand is outstanding.
    pub async fn rule_3_12_cancel_in_on_next_stops_the_next_item(&self) -> Outcome {
        if self.max_elements < 10 {
            return Outcome::Skipped("needs a publisher of 10 items");
        }
        for demand in [10, UNBOUNDED] {
            let (probe, handle) = Probe::cancelling_at(3);
            let run = self.launch(&self.factory, LONG.min(self.max_elements), probe, handle);
            run.probe.request(demand);
            self.expect(&run, "3.12", "3 items", |p| p.nexts() >= 3)
                .await;
            self.settle().await;
            assert_eq!(
                run.probe.nexts(),
                3,
                "rule 3.12 broken: items after a cancel in on_next #3 (demand {demand})"
            );
            self.finish(run, "3.12").await;
        }
        Outcome::Passed
    }

    /// Rule 3.12, across threads: once `cancel` has returned on another thread, at most the
    /// one item being delivered at that moment still arrives (rule 2.8).
    pub async fn rule_3_12_cancel_from_another_thread_stops_at_once(&self) -> Outcome {
        let run = self.start(LONG);
        run.probe.request(UNBOUNDED);
        self.expect(&run, "3.12", "items", |p| {
            p.nexts() > 0 || p.terminals() > 0
        })
        .await;
        let probe = run.probe.clone();
        let at_cancel = std::thread::spawn(move || {
            probe.cancel();
            probe.nexts()
        })
        .join()
        .expect("cancel panicked (rule 3.15)");
        self.settle().await;
        let after = run.probe.nexts();
        assert!(
            after <= at_cancel + 1,
            "rule 3.12 broken: {} items arrived after cancel returned",
            after - at_cancel
        );
        self.finish(run, "3.12").await;
        Outcome::Passed
    }

    /// Rule 3.13: after `cancel`, the publisher drops the subscriber.
    pub async fn rule_3_13_cancel_releases_the_subscriber(&self) -> Outcome {
        let run = self.start(LONG);
        run.probe.request(1);
        run.probe.cancel();
        self.expect(&run, "3.13", "the subscriber to be dropped", |p| {
            p.released()
        })
        .await;
        self.finish(run, "3.13").await;
        Outcome::Passed
    }

    /// Dropping the connection ends the subscription: the subscriber's handle reports itself
    /// cancelled, and the subscriber is released.
    pub async fn rule_3_13_dropping_the_connection_cancels(&self) -> Outcome {
        let run = self.start(LONG);
        run.probe.request(1);
        self.settle().await;
        let subscription = run.probe.subscription();
        run.task.abort();
        let _ = run.task.await;
        assert!(
            subscription.is_cancelled(),
            "rule 3.13 broken: the connection is gone but its subscription is not cancelled"
        );
        assert!(
            run.probe.released(),
            "rule 3.13 broken: the subscriber outlived its connection"
        );
        Outcome::Passed
    }

    fn start_idle(&self) -> Option<Run> {
        let idle = self.idle.as_ref()?;
        let (probe, handle) = Probe::new(0);
        Some(self.launch(idle, 0, probe, handle))
    }

    /// Waits for the subscriber, the connection and the source of an idle run to be gone.
    async fn expect_released(&self, run: Run, rule: &str, after: &str) {
        self.expect(
            &run,
            rule,
            &format!("the subscriber released after {after} with an idle upstream"),
            |p| p.released(),
        )
        .await;
        let upstreams = run.upstreams.clone();
        let upstreams_released = || {
            upstreams
                .iter()
                .all(|r| r.load(std::sync::atomic::Ordering::Acquire))
        };
        self.finish(run, rule).await;
        assert!(
            upstreams_released(),
            "rule {rule} broken: the source was not released after {after}"
        );
    }

    /// Rule 3.13 over an idle upstream: `cancel`, with demand outstanding or not, releases the
    /// subscriber and the source and ends the connection, though no item ever comes to wake
    /// the publisher.
    pub async fn rule_3_13_idle_cancel_releases_subscriber_and_source(&self) -> Outcome {
        for demand in [5, 0] {
            let Some(run) = self.start_idle() else {
                return Outcome::Skipped("needs an idle upstream (over or with_idle)");
            };
            self.expect(&run, "3.13", "on_subscribe", |p| !p.signals().is_empty())
                .await;
            if demand > 0 {
                run.probe.request(demand);
            }
            self.settle().await;
            run.probe.cancel();
            self.expect_released(run, "3.13", "cancel").await;
        }
        Outcome::Passed
    }

    /// Rule 3.9 over an idle upstream: `request(0)` is answered with [`Error::BadRequest`] at
    /// once, and everything is released.
    pub async fn rule_3_09_idle_request_zero_signals_error(&self) -> Outcome {
        let Some(run) = self.start_idle() else {
            return Outcome::Skipped("needs an idle upstream (over or with_idle)");
        };
        self.expect(&run, "3.9", "on_subscribe", |p| !p.signals().is_empty())
            .await;
        run.probe.request(5);
        self.settle().await;
        run.probe.request(0);
        self.expect(&run, "3.9", "on_error", |p| p.error().is_some())
            .await;
        assert!(
            matches!(run.probe.error(), Some(Error::BadRequest)),
            "rule 3.9 broken: wrong error {:?}",
            run.probe.error()
        );
        self.expect_released(run, "3.9", "request(0)").await;
        Outcome::Passed
    }

    /// Dropping the connection over an idle upstream releases the source and cancels the
    /// subscription.
    pub async fn rule_3_13_idle_dropped_connection_releases_the_source(&self) -> Outcome {
        let Some(mut run) = self.start_idle() else {
            return Outcome::Skipped("needs an idle upstream (over or with_idle)");
        };
        self.expect(&run, "3.13", "on_subscribe", |p| !p.signals().is_empty())
            .await;
        run.probe.request(5);
        self.settle().await;
        let subscription = run.probe.subscription();
        run.task.abort();
        let _ = (&mut run.task).await;
        assert!(
            subscription.is_cancelled(),
            "rule 3.13 broken: the connection is gone but its subscription is not cancelled"
        );
        assert!(
            run.upstreams_released(),
            "rule 3.13 broken: the source outlived the dropped connection"
        );
        Outcome::Passed
    }

    /// Rule 3.15: `cancel` returns normally in every state.
    pub async fn rule_3_15_cancel_returns_normally(&self) -> Outcome {
        let run = self.start(2);
        run.probe.cancel();
        self.finish(run, "3.15").await;
        if self.finite() {
            let run = self.start(1);
            run.probe.request(10);
            self.expect(&run, "3.15", "on_complete", |p| p.completed())
                .await;
            run.probe.cancel();
            self.finish(run, "3.15").await;
        }
        Outcome::Passed
    }

    /// Rule 3.16: `request` returns normally in every state, for every value.
    pub async fn rule_3_16_request_returns_normally(&self) -> Outcome {
        let run = self.start(5);
        for n in [1, u64::MAX, u64::MAX, 0, 7] {
            run.probe.request(n);
        }
        self.finish(run, "3.16").await;
        Outcome::Passed
    }

    /// Rule 3.17: demand that adds up past 2^63 − 1 is unbounded, not an overflow.
    pub async fn rule_3_17_demand_saturates_at_unbounded(&self) -> Outcome {
        let n = 1_000.min(self.max_elements);
        let run = self.start(n);
        run.probe.request(UNBOUNDED);
        run.probe.request(UNBOUNDED);
        run.probe.request(u64::MAX);
        self.expect(&run, "3.17", "items", |p| p.nexts() >= n).await;
        assert!(
            run.probe.error().is_none(),
            "rule 3.17 broken: {:?}",
            run.probe.error()
        );
        run.probe.cancel();
        self.finish(run, "3.17").await;
        Outcome::Passed
    }

    /// Runs every rule and reports each outcome, or the message of the rule it broke.
    pub async fn run_all(&self) -> Vec<(&'static str, Result<Outcome, String>)> {
        macro_rules! each {
            ($($rule:ident),*) => {{
                let mut out = Vec::new();
                $(
                    let v = self.clone();
                    let result = tokio::spawn(async move { v.$rule().await }).await;
                    out.push((stringify!($rule), result.map_err(panic_message)));
                )*
                out
            }};
        }
        each!(
            rule_1_01_on_next_never_exceeds_requested,
            rule_1_02_may_complete_with_fewer_items_than_requested,
            rule_1_03_signals_are_serial,
            rule_1_04_failure_is_signalled_with_on_error,
            rule_1_05_completes_after_the_last_item,
            rule_1_05_completes_on_exact_demand,
            rule_1_06_terminal_signal_cancels_the_subscription,
            rule_1_07_no_signal_follows_a_terminal_signal,
            rule_1_08_cancel_eventually_stops_signals,
            rule_1_09_on_subscribe_comes_first_and_once,
            rule_2_12_on_subscribe_is_called_once_per_subscriber,
            rule_3_02_request_from_on_next_is_allowed,
            rule_3_03_request_recursion_is_bounded,
            rule_3_05_cancel_is_thread_safe,
            rule_3_06_request_after_cancel_is_a_no_op,
            rule_3_07_cancel_after_cancel_is_a_no_op,
            rule_3_08_request_registers_demand,
            rule_3_09_request_zero_signals_error,
            rule_3_09_idle_request_zero_signals_error,
            rule_3_12_cancel_stops_signals,
            rule_3_12_cancel_in_on_next_stops_the_next_item,
            rule_3_12_cancel_from_another_thread_stops_at_once,
            rule_3_13_cancel_releases_the_subscriber,
            rule_3_13_dropping_the_connection_cancels,
            rule_3_13_idle_cancel_releases_subscriber_and_source,
            rule_3_13_idle_dropped_connection_releases_the_source,
            rule_3_15_cancel_returns_normally,
            rule_3_16_request_returns_normally,
            rule_3_17_demand_saturates_at_unbounded
        )
    }
}

pub(crate) fn panic_message(e: tokio::task::JoinError) -> String {
    match e.try_into_panic() {
        Ok(payload) => payload
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "panicked".into()),
        Err(e) => e.to_string(),
    }
}
