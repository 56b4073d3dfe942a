//! The five contract holes an independent rule-by-rule check found in the queue and the
//! subscription, each pinned by the behaviour the check saw fail.

mod support;

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::{Stream, StreamExt};
use reactive::queue::{Overflow, QueueConfig};
use reactive::{Error, Prefetch, Publisher, PublisherExt, Subscriber, Subscription};
use support::Scripted;

/// A stream fed by a channel whose sender the test keeps alive and silent; it records when it
/// is dropped, so a test can tell whether the source was released.
struct Watched {
    rx: tokio::sync::mpsc::Receiver<u64>,
    dropped: Arc<AtomicBool>,
}

impl Stream for Watched {
    type Item = u64;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<u64>> {
        self.rx.poll_recv(cx)
    }
}

impl Drop for Watched {
    fn drop(&mut self) {
        self.dropped.store(true, Ordering::SeqCst);
    }
}

/// An idle source: its sender is alive (returned) and never sends.
fn idle_source() -> (
    reactive::source::FromStream<Watched>,
    tokio::sync::mpsc::Sender<u64>,
    Arc<AtomicBool>,
) {
    let (tx, rx) = tokio::sync::mpsc::channel(8);
    let dropped = Arc::new(AtomicBool::new(false));
    let stream = Watched {
        rx,
        dropped: dropped.clone(),
    };
    (reactive::from_stream(stream), tx, dropped)
}

/// Records signals; its clones share one `alive` token, so the test can tell when the
/// publisher has dropped its clone.
#[derive(Clone, Default)]
struct Recorder {
    subscription: Arc<Mutex<Option<Subscription>>>,
    items: Arc<AtomicU64>,
    error: Arc<Mutex<Option<Error>>>,
    completed: Arc<AtomicBool>,
    /// The `on_next` (1-based) from inside which to cancel; 0: never.
    cancel_at: u64,
    alive: Arc<()>,
}

impl Recorder {
    fn subscription(&self) -> Subscription {
        self.subscription
            .lock()
            .unwrap()
            .clone()
            .expect("subscribed")
    }
    fn items(&self) -> u64 {
        self.items.load(Ordering::SeqCst)
    }
    /// Whether the publisher has dropped its copy (only the test's copy is left).
    fn released(&self) -> bool {
        Arc::strong_count(&self.alive) == 1
    }
}

impl<T> Subscriber<T> for Recorder {
    fn on_subscribe(&mut self, s: Subscription) {
        *self.subscription.lock().unwrap() = Some(s);
    }
    fn on_next(&mut self, _: T) {
        let n = self.items.fetch_add(1, Ordering::SeqCst) + 1;
        if n == self.cancel_at {
            self.subscription().cancel();
        }
    }
    fn on_error(&mut self, e: Error) {
        *self.error.lock().unwrap() = Some(e);
    }
    fn on_complete(&mut self) {
        self.completed.store(true, Ordering::SeqCst);
    }
}

fn buffered_modes() -> Vec<(&'static str, QueueConfig<u64>)> {
    vec![
        ("bounded", QueueConfig::bounded(16)),
        ("unbounded", QueueConfig::unbounded()),
        (
            "drop-oldest",
            QueueConfig::bounded(16).overflow(Overflow::DropOldest),
        ),
    ]
}

async fn ends_within(task: tokio::task::JoinHandle<()>, what: &str) {
    tokio::time::timeout(Duration::from_secs(2), task)
        .await
        .unwrap_or_else(|_| panic!("{what}: the connection never ended"))
        .expect("the connection panicked");
}

// 1. A buffered queue over an idle source notices cancel, request(0) and a dropped stream.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_over_an_idle_source_ends_the_connection_and_releases_both_ends() {
    for (mode, config) in buffered_modes() {
        let (source, _tx, source_dropped) = idle_source();
        let recorder = Recorder::default();
        let task = source.queue(config).subscribe(recorder.clone());
        recorder.subscription().request(5);
        tokio::time::sleep(Duration::from_millis(20)).await;
        recorder.subscription().cancel();
        ends_within(task, mode).await;
        assert!(
            recorder.released(),
            "{mode}: the subscriber was not released"
        );
        assert!(
            source_dropped.load(Ordering::SeqCst),
            "{mode}: the source was not released"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_zero_over_an_idle_source_signals_bad_request_at_once() {
    for (mode, config) in buffered_modes() {
        let (source, _tx, source_dropped) = idle_source();
        let recorder = Recorder::default();
        let task = source.queue(config).subscribe(recorder.clone());
        recorder.subscription().request(5);
        tokio::time::sleep(Duration::from_millis(20)).await;
        recorder.subscription().request(0);
        ends_within(task, mode).await;
        assert!(
            matches!(*recorder.error.lock().unwrap(), Some(Error::BadRequest)),
            "{mode}: request(0) must be answered with BadRequest"
        );
        assert!(source_dropped.load(Ordering::SeqCst), "{mode}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_a_spawned_stream_over_an_idle_source_ends_its_task() {
    for (mode, config) in buffered_modes() {
        let (source, _tx, source_dropped) = idle_source();
        let stream = source.queue(config).spawn_stream(Prefetch::new(8));
        tokio::time::sleep(Duration::from_millis(20)).await;
        drop(stream);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
        while !source_dropped.load(Ordering::SeqCst) && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert!(
            source_dropped.load(Ordering::SeqCst),
            "{mode}: the spawned task (and its source) outlived the dropped stream"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn items_still_flow_after_an_idle_spell() {
    // The registration added for cancel must not swallow the wake-up an item brings.
    let (source, tx, _) = idle_source();
    let mut stream = source
        .queue(QueueConfig::bounded(4))
        .spawn_stream(Prefetch::new(2));
    for i in 0..20 {
        tokio::time::sleep(Duration::from_millis(2)).await;
        tx.send(i).await.unwrap();
        let got = tokio::time::timeout(Duration::from_secs(2), stream.next()).await;
        assert_eq!(got.unwrap().unwrap().unwrap(), i);
    }
}

// 2. A queue that knows it is done completes without one more request.

#[tokio::test]
async fn a_queue_completes_on_exactly_the_demand_for_its_items() {
    for (mode, config) in buffered_modes()
        .into_iter()
        .chain([("pull", QueueConfig::pull())])
    {
        let recorder = Recorder::default();
        let task = reactive::iter(0..10u64)
            .queue(config.clone())
            .subscribe(recorder.clone());
        recorder.subscription().request(10);
        ends_within(task, mode).await;
        assert_eq!(recorder.items(), 10, "{mode}");
        assert!(
            recorder.completed.load(Ordering::SeqCst),
            "{mode}: on_complete waited for a request nobody needs to make"
        );

        let empty = Recorder::default();
        let task = reactive::iter(0..0u64)
            .queue(config)
            .subscribe(empty.clone());
        ends_within(task, mode).await;
        assert!(
            empty.completed.load(Ordering::SeqCst),
            "{mode}: an empty source completes without any request"
        );
    }
}

// 3. Pull mode stops at once on cancel.

#[tokio::test]
async fn pull_stops_at_the_item_that_cancelled() {
    for demand in [10, u64::MAX] {
        let recorder = Recorder {
            cancel_at: 3,
            ..Recorder::default()
        };
        let task = reactive::iter(0u64..)
            .queue(QueueConfig::pull())
            .subscribe(recorder.clone());
        recorder.subscription().request(demand);
        ends_within(task, "pull").await;
        assert_eq!(
            recorder.items(),
            3,
            "a cancel in on_next #3 stops the stream there (demand {demand})"
        );
    }
}

#[test]
fn pull_delivers_at_most_one_item_after_a_cancel_from_another_thread() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .unwrap();
    for _ in 0..20 {
        let recorder = Recorder::default();
        let task = runtime.spawn(
            reactive::iter(0u64..)
                .queue(QueueConfig::pull())
                .connect(recorder.clone()),
        );
        let subscription = loop {
            if let Some(s) = recorder.subscription.lock().unwrap().clone() {
                break s;
            }
            std::thread::yield_now();
        };
        subscription.request(u64::MAX);
        while recorder.items() < 1_000 {
            std::thread::yield_now();
        }
        subscription.cancel();
        let at_cancel = recorder.items();
        runtime.block_on(ends_within(task, "pull"));
        let after = recorder.items() - at_cancel;
        assert!(after <= 1, "{after} items arrived after cancel returned");
    }
}

// 4. Dropping a connection cancels its subscription.

#[tokio::test]
async fn dropping_a_connection_marks_its_subscription_cancelled() {
    let (source, _tx, _) = idle_source();
    let scripted = Scripted::<u64>::default();
    let connection = source
        .queue(QueueConfig::bounded(4))
        .connect(scripted.clone());
    let subscription = scripted.subscription.lock().unwrap().clone().unwrap();
    assert!(!subscription.is_cancelled());
    drop(connection);
    assert!(subscription.is_cancelled());

    let scripted = Scripted::<u64>::default();
    let connection = reactive::iter(0..3u64).connect(scripted.clone());
    let subscription = scripted.subscription.lock().unwrap().clone().unwrap();
    drop(connection);
    assert!(subscription.is_cancelled());
}

// 5. The safety cap's overflow is signalled at once, ahead of what is buffered.

#[tokio::test]
async fn a_tripped_safety_cap_fails_a_stalled_consumer_at_once_and_counts_the_discarded() {
    let queue = reactive::iter(0u64..).queue(QueueConfig::unbounded().safety_cap(1_000));
    let stats = queue.stats();
    let recorder = Recorder::default();
    let task = queue.subscribe(recorder.clone());
    // The consumer takes one item and stalls: it never requests again.
    recorder.subscription().request(1);
    ends_within(task, "safety cap").await;
    let error = recorder.error.lock().unwrap().clone();
    assert!(
        matches!(error, Some(Error::Overflow { limit: 1_000, .. })),
        "the stalled consumer gets the overflow: {error:?}"
    );
    let s = stats.snapshot();
    assert!(s.overflowed);
    assert_eq!(s.pushed, 1_000, "the cap is reached");
    assert!(recorder.items() <= 1, "never more than the one requested");
    assert_eq!(s.depth, 0, "the discarded items left the queue");
    // Every queued item not delivered, the one that found the cap, and the rest of the batch
    // it came in (the source hands over up to 1,024 at once) are counted.
    let owed = s.pushed - recorder.items() + 1;
    assert!(
        (owed..owed + 1_024).contains(&s.dropped_overflow),
        "{} counted, {owed} owed at least",
        s.dropped_overflow
    );
}
