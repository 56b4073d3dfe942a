//! The conformance suite pointed at publishers written here from the public docs: a
//! hand-written publisher with its own bulk path (`Demand::consume_n` + `on_next_batch`),
//! `from_chunks` over a lazy chunked stream, and operator chains on the bulk path.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use reactive::subscription::{self, Demand};
use reactive::tck::PublisherVerification;
use reactive::{Publisher, PublisherExt, QueueConfig, Subscriber};

/// Emits `0..n`, in batches of up to 64 to a subscriber that takes batches, one by one to any
/// other; completes as soon as it is empty, demand or not.
struct Batcher {
    n: u64,
    fault: Fault,
}

/// Faults planted to check that the suite catches them.
#[derive(Clone, Copy, PartialEq)]
enum Fault {
    None,
    /// Calls `on_next_batch` whatever `takes_batches` says.
    BatchesToAnyone,
    /// Hands a batch taker one item more than its permits.
    OnePastDemand,
}

fn batcher(n: u64) -> Batcher {
    Batcher {
        n,
        fault: Fault::None,
    }
}

struct BatcherConnection<S> {
    fault: Fault,
    next: u64,
    n: u64,
    demand: Demand,
    subscriber: Option<S>,
    buf: Vec<u64>,
}

// The subscriber is never pinned.
impl<S> Unpin for BatcherConnection<S> {}

impl Publisher for Batcher {
    type Item = u64;
    type Connection<S: Subscriber<u64>> = BatcherConnection<S>;
    fn connect<S: Subscriber<u64>>(self, mut subscriber: S) -> BatcherConnection<S> {
        let (subscription, demand) = subscription::pair();
        subscriber.on_subscribe(subscription);
        BatcherConnection {
            fault: self.fault,
            next: 0,
            n: self.n,
            demand,
            subscriber: Some(subscriber),
            buf: Vec::new(),
        }
    }
}

impl<S: Subscriber<u64>> Future for BatcherConnection<S> {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = &mut *self;
        let mut budget = 4096u64;
        loop {
            let Some(subscriber) = this.subscriber.as_mut() else {
                return Poll::Ready(());
            };
            if let Err(stop) = this.demand.check() {
                if let Some(e) = stop.into_error() {
                    subscriber.on_error(e);
                }
                this.subscriber = None;
                continue;
            }
            if this.next >= this.n {
                subscriber.on_complete();
                this.demand.terminate();
                this.subscriber = None;
                continue;
            }
            if budget == 0 {
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            match this.demand.poll_ready(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(stop)) => {
                    if let Some(e) = stop.into_error() {
                        subscriber.on_error(e);
                    }
                    this.subscriber = None;
                }
                Poll::Ready(Ok(permits)) => {
                    if subscriber.takes_batches() || this.fault == Fault::BatchesToAnyone {
                        let k = permits.min(this.n - this.next).min(64).min(budget);
                        let extra =
                            u64::from(this.fault == Fault::OnePastDemand && this.next + k < this.n);
                        this.buf.extend(this.next..this.next + k + extra);
                        this.next += k + extra;
                        budget -= k;
                        this.demand.consume_n(k);
                        subscriber.on_next_batch(&mut this.buf);
                        this.buf.clear();
                    } else {
                        let item = this.next;
                        this.next += 1;
                        budget -= 1;
                        this.demand.consume();
                        subscriber.on_next(item);
                    }
                }
            }
        }
    }
}

/// A lazy stream of the items `0..n` in chunks of 0, 3, 1, 0, 5 items, cycling.
fn chunks(n: u64) -> impl futures::Stream<Item = Vec<u64>> + Send + Unpin {
    let sizes = [0u64, 3, 1, 0, 5];
    let mut at = 0u64;
    let mut k = 0usize;
    futures::stream::poll_fn(move |_| {
        if at >= n {
            return Poll::Ready(None);
        }
        let size = sizes[k % sizes.len()];
        k += 1;
        let end = at.saturating_add(size).min(n);
        let chunk: Vec<u64> = (at..end).collect();
        at = end;
        Poll::Ready(Some(chunk))
    })
}

reactive::publisher_tck!(hand_written_batcher, PublisherVerification::new(batcher));

reactive::publisher_tck!(
    chunks_source,
    PublisherVerification::new(|n| reactive::from_chunks(chunks(n)))
        .needs_a_request_to_complete("from_chunks finds the end only by polling its stream")
);

reactive::publisher_tck!(
    batcher_through_queue,
    PublisherVerification::new(|n| batcher(n).map(|x| x + 1).queue(QueueConfig::bounded(5)))
);

reactive::publisher_tck!(
    map_filter_unbounded_queue,
    PublisherVerification::over(|up| up
        .map(|x| x * 2)
        .filter(|_| true)
        .queue(QueueConfig::unbounded()))
    .needs_a_request_to_complete("filter needs one more pull to find the end")
);

reactive::publisher_tck!(
    chunks_through_queue,
    PublisherVerification::new(|n| reactive::from_chunks(chunks(n)).queue(QueueConfig::bounded(3)))
);

// The suite catches a publisher that breaks the bulk contract.

#[test]
#[should_panic]
// Was a finding: the suite passed such a publisher. Every rule's end now checks that no batch
// went to a probe that does not take batches.
fn suite_catches_batches_to_a_subscriber_that_does_not_take_them() {
    let v = PublisherVerification::new(|n| Batcher {
        n,
        fault: Fault::BatchesToAnyone,
    });
    reactive::tck::run(v.rule_3_12_cancel_in_on_next_stops_the_next_item());
}

#[test]
#[should_panic]
fn suite_catches_a_batch_past_demand() {
    let v = PublisherVerification::new(|n| Batcher {
        n,
        fault: Fault::OnePastDemand,
    })
    .batches_variant();
    reactive::tck::run(v.rule_1_01_on_next_never_exceeds_requested());
}

#[test]
fn suite_passes_the_correct_batcher_on_the_same_rules() {
    let v = PublisherVerification::new(batcher);
    reactive::tck::run(v.rule_3_12_cancel_in_on_next_stops_the_next_item());
    reactive::tck::run(
        v.batches_variant()
            .rule_1_01_on_next_never_exceeds_requested(),
    );
    reactive::tck::run(
        v.batches_variant()
            .rule_3_12_cancel_from_another_thread_stops_at_once(),
    );
}

/// The planted fault is real: a subscriber that keeps the default `on_next_batch` and cancels
/// in its 3rd `on_next` gets all 10 items it requested, not 3.
#[test]
fn planted_fault_breaks_cancel_in_on_next_for_a_default_subscriber() {
    use std::sync::{Arc, Mutex};
    struct Plain(Arc<Mutex<Vec<u64>>>, Option<reactive::Subscription>);
    impl Subscriber<u64> for Plain {
        fn on_subscribe(&mut self, s: reactive::Subscription) {
            s.request(10);
            self.1 = Some(s);
        }
        fn on_next(&mut self, x: u64) {
            let mut v = self.0.lock().unwrap();
            v.push(x);
            if v.len() == 3 {
                self.1.as_ref().unwrap().cancel();
            }
        }
        fn on_error(&mut self, _: reactive::Error) {}
        fn on_complete(&mut self) {}
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let got = |fault| {
        let log = Arc::new(Mutex::new(Vec::new()));
        let p = Batcher { n: 100, fault };
        rt.block_on(async {
            let conn = p.connect(Plain(log.clone(), None));
            let _ = tokio::time::timeout(std::time::Duration::from_secs(1), conn).await;
        });
        log.lock().map(|v| v.len()).unwrap()
    };
    assert_eq!(got(Fault::None), 3);
    assert_eq!(got(Fault::BatchesToAnyone), 10);
}
