//! Checks a publisher against the rules that bind publishers and subscriptions.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use super::upstream::tracking;
use super::{Outcome, Probe, ProbeHandle, Upstream};
use crate::Publisher;

type Connection = Pin<Box<dyn Future<Output = ()> + Send>>;
pub(super) type Factory = Arc<dyn Fn(u64, Probe) -> Connection + Send + Sync>;
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
    pub(super) factory: Factory,
    pub(super) pending: Option<Factory>,
    pub(super) idle: Option<Factory>,
    pub(super) failed: Option<FailedFactory>,
    pub(super) max_elements: u64,
    pub(super) timeout: Duration,
    pub(super) settle: Duration,
    /// Why the publisher needs one more request to find out it is done, if it does.
    pub(super) extra_request_to_complete: Option<&'static str>,
    /// Whether the probes take batches (`on_next_batch`).
    pub(super) batches: bool,
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
pub(super) const LONG: u64 = 1_000_000;

pub(super) struct Run {
    pub(super) probe: ProbeHandle,
    pub(super) task: tokio::task::JoinHandle<()>,
    /// Release flags of the [`Upstream`]s the factory built.
    pub(super) upstreams: Vec<Arc<std::sync::atomic::AtomicBool>>,
}

impl Run {
    pub(super) fn upstreams_released(&self) -> bool {
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
            batches: false,
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

    /// The same verification with probes that take batches (`takes_batches() == true`), so
    /// that a publisher's bulk path (`on_next_batch`) is held to the same rules: the
    /// `batches` tests of [`publisher_tck!`](crate::publisher_tck). There, a `cancel` made
    /// during a delivery stops the deliveries after it.
    pub fn batches_variant(&self) -> Self {
        PublisherVerification {
            batches: true,
            ..self.clone()
        }
    }

    /// A probe for this verification (taking batches in the `batches` variant).
    pub(super) fn probe(&self, request_in_on_next: u64) -> (Probe, ProbeHandle) {
        Probe::with_options(request_in_on_next, 0, self.batches)
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

    pub(super) fn finite(&self) -> bool {
        self.max_elements < u64::MAX
    }

    pub(super) fn start(&self, n: u64) -> Run {
        self.start_with(n, 0)
    }

    pub(super) fn start_with(&self, n: u64, request_in_on_next: u64) -> Run {
        let (probe, handle) = self.probe(request_in_on_next);
        self.launch(&self.factory, n.min(self.max_elements), probe, handle)
    }

    pub(super) fn launch(
        &self,
        factory: &Factory,
        n: u64,
        probe: Probe,
        handle: ProbeHandle,
    ) -> Run {
        let (connection, upstreams) = tracking(|| factory(n, probe));
        Run {
            probe: handle,
            task: tokio::spawn(connection),
            upstreams,
        }
    }

    pub(super) async fn expect(
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

    pub(super) async fn settle(&self) {
        tokio::time::sleep(self.settle).await;
    }

    /// Waits for the connection to end and checks that it did not panic.
    pub(super) async fn finish(&self, run: Run, rule: &str) {
        match tokio::time::timeout(self.timeout, run.task).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) if e.is_panic() => panic!("rule {rule} broken: the publisher panicked: {e}"),
            Ok(Err(_)) => {}
            Err(_) => panic!(
                "rule {rule} broken: the connection did not end within {:?}",
                self.timeout
            ),
        }
        let unasked = run.probe.unasked_batches();
        assert_eq!(
            unasked, 0,
            "rule {rule} broken: {unasked} batches (on_next_batch) went to a subscriber whose \
             takes_batches() is false"
        );
    }

    /// Runs every rule and reports each outcome, or the message of the rule it broke.
    pub async fn run_all(&self) -> Vec<(&'static str, Result<Outcome, String>)> {
        let this = self;
        crate::__publisher_rules!(__tck_collect; this)
    }
}

#[doc(hidden)]
pub fn panic_message(e: tokio::task::JoinError) -> String {
    match e.try_into_panic() {
        Ok(payload) => payload
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "panicked".into()),
        Err(e) => e.to_string(),
    }
}
