//! Queue modes end to end, on tokio's paused clock: a fast source, a slow consumer.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures::StreamExt;
use reactive::queue::{Overflow, QueueConfig};
use reactive::{Error, Prefetch, PublisherExt};

const ITEMS: u64 = 2_000;

/// Runs 0..ITEMS through `config` into a consumer taking one item per millisecond; returns what
/// it received and the largest gap seen between produced and consumed.
async fn run(
    config: QueueConfig<u64>,
    stop_after: Option<usize>,
) -> (Vec<Result<u64, Error>>, u64, reactive::queue::QueueSnapshot) {
    let produced = Arc::new(AtomicU64::new(0));
    let counter = produced.clone();
    let queue = reactive::iter(0..ITEMS)
        .map(move |x| {
            counter.fetch_add(1, Ordering::SeqCst);
            x
        })
        .queue(config);
    let stats = queue.stats();
    let mut stream = queue.into_stream_with(Prefetch::new(1));
    let mut got = Vec::new();
    let mut max_ahead = 0;
    while let Some(item) = stream.next().await {
        got.push(item);
        max_ahead = max_ahead.max(produced.load(Ordering::SeqCst) - got.len() as u64);
        tokio::time::sleep(Duration::from_millis(1)).await;
        if stop_after.is_some_and(|n| got.len() >= n) {
            break;
        }
    }
    (got, max_ahead, stats.snapshot())
}

#[tokio::test(start_paused = true)]
async fn a_full_bounded_queue_blocks_the_source_and_memory_stays_bounded() {
    let (got, max_ahead, stats) = run(QueueConfig::bounded(100), None).await;
    assert_eq!(got.len() as u64, ITEMS);
    assert!(
        got.iter().map(|r| *r.as_ref().unwrap()).eq(0..ITEMS),
        "FIFO, nothing lost"
    );
    assert!(
        max_ahead <= 100 + 1,
        "the source ran {max_ahead} items ahead of a 100-item queue"
    );
    assert!(stats.high_water <= 100);
    assert_eq!(stats.dropped(), 0);
    assert!(
        stats.blocked >= Duration::from_millis(1_000),
        "the source spent most of the run blocked: {:?}",
        stats.blocked
    );
}

#[tokio::test(start_paused = true)]
async fn an_unbounded_queue_grows_with_the_imbalance() {
    let (got, max_ahead, stats) = run(QueueConfig::unbounded(), None).await;
    assert_eq!(got.len() as u64, ITEMS);
    assert!(max_ahead >= ITEMS - 10, "nothing pushed back: {max_ahead}");
    assert!(stats.high_water >= ITEMS - 10);
    assert_eq!(
        stats.high_water_bytes,
        stats.high_water * 8,
        "u64 items weigh 8 bytes"
    );
    assert_eq!(stats.blocked, Duration::ZERO);
}

#[tokio::test(start_paused = true)]
async fn an_unbounded_queue_with_a_safety_cap_ends_cleanly_with_overflow() {
    let (got, _, stats) = run(QueueConfig::unbounded().safety_cap(500), None).await;
    let last = got.last().unwrap();
    assert!(
        matches!(last, Err(Error::Overflow { limit: 500, .. })),
        "{last:?}"
    );
    assert!(stats.overflowed);
    assert!(got.len() <= 502);
    assert!(
        stats.dropped_overflow >= 1,
        "the event that found the cap is counted, not lost"
    );
    // Every event that reached the queue was delivered or counted as discarded, and so were
    // the rest of the batch that the one finding the cap came in (the source hands over up
    // to 1,024 at once).
    let delivered = got.len() as u64 - 1;
    let accounted = delivered + stats.dropped_overflow;
    assert!(
        (stats.pushed + 1..stats.pushed + 1_024).contains(&accounted),
        "{accounted} accounted for, {} pushed",
        stats.pushed
    );
    assert_eq!(stats.depth, 0, "the discarded events left the queue");
}

#[tokio::test(start_paused = true)]
async fn pull_never_holds_more_than_was_demanded() {
    let (got, max_ahead, stats) = run(QueueConfig::pull(), Some(300)).await;
    assert_eq!(got.len(), 300);
    // The consumer's window is 1: the source may be one item ahead, never more.
    assert!(max_ahead <= 1, "pull ran {max_ahead} ahead");
    assert_eq!(stats.high_water, 0);
    assert!(stats.blocked > Duration::ZERO);
}

#[tokio::test(start_paused = true)]
async fn drop_newest_keeps_the_head_and_counts_every_drop() {
    let (got, _, stats) = run(
        QueueConfig::bounded(10).overflow(Overflow::DropNewest),
        None,
    )
    .await;
    let got: Vec<u64> = got.into_iter().map(Result::unwrap).collect();
    assert_eq!(
        got.len() as u64 + stats.dropped_newest,
        ITEMS,
        "delivered + dropped = produced"
    );
    assert!(stats.dropped_newest > 0);
    assert!(got.windows(2).all(|w| w[0] < w[1]), "FIFO");
    assert_eq!(&got[..10], &(0..10).collect::<Vec<_>>()[..]);
}

#[tokio::test(start_paused = true)]
async fn drop_oldest_keeps_the_tail_and_counts_every_eviction() {
    let (got, _, stats) = run(
        QueueConfig::bounded(10).overflow(Overflow::DropOldest),
        None,
    )
    .await;
    let got: Vec<u64> = got.into_iter().map(Result::unwrap).collect();
    assert_eq!(got.len() as u64 + stats.dropped_oldest, ITEMS);
    assert_eq!(got.last(), Some(&(ITEMS - 1)), "the freshest item survives");
    assert!(stats.high_water <= 10);
}

#[tokio::test(start_paused = true)]
async fn priority_shedding_never_drops_the_top_class() {
    let config = QueueConfig::bounded(20)
        .overflow(Overflow::Priority {
            thresholds: vec![0.25, 0.5, 0.75],
        })
        .priority(|x: &u64| (x % 4) as u8);
    let (got, _, stats) = run(config, None).await;
    let got: Vec<u64> = got.into_iter().map(Result::unwrap).collect();
    let top = got.iter().filter(|x| *x % 4 == 3).count() as u64;
    assert_eq!(top, ITEMS / 4, "every top-class item is delivered");
    assert_eq!(got.len() as u64 + stats.dropped(), ITEMS);
    let shed = &stats.dropped_priority;
    assert!(
        shed[0] >= shed[1] && shed[1] >= shed[2],
        "lower classes are shed first: {shed:?}"
    );
}

/// Takes every item as it comes, in batches.
struct Drain(u64);

impl reactive::Subscriber<u64> for Drain {
    fn on_subscribe(&mut self, s: reactive::Subscription) {
        s.request(u64::MAX);
    }
    fn on_next(&mut self, _: u64) {
        self.0 += 1;
    }
    fn on_next_batch(&mut self, items: &mut Vec<u64>) {
        self.0 += items.len() as u64;
        items.clear();
    }
    fn takes_batches(&self) -> bool {
        true
    }
    fn on_error(&mut self, e: Error) {
        panic!("{e}");
    }
    fn on_complete(&mut self) {}
}

#[tokio::test]
async fn a_queue_drained_in_the_poll_it_fills_in_counts_no_blocked_time() {
    // The source fills the 64 places at every turn and the sink empties them in the same poll
    // of the queue's task: the source never waits for a wake-up, so no time is blocked (on the
    // real clock, which a spell timed from its start would show as microseconds each).
    use reactive::Publisher;
    let queue = reactive::iter(0..200_000u64).queue(QueueConfig::bounded(64));
    let stats = queue.stats();
    queue.connect(Drain(0)).await;
    let snap = stats.snapshot();
    assert_eq!(snap.popped, 200_000);
    assert_eq!(snap.blocked, Duration::ZERO);
}

#[tokio::test(start_paused = true)]
async fn a_source_that_completed_is_not_counted_blocked_while_its_items_wait() {
    // Ten items fill the ten places, and the source completes: from then on nothing waits
    // upstream, however long the items wait for the consumer.
    let queue = reactive::iter(0..10u64).queue(QueueConfig::bounded(10));
    let stats = queue.stats();
    let mut stream = queue.into_stream_with(Prefetch::manual());
    let first = tokio::time::timeout(Duration::from_millis(1), stream.next()).await;
    assert!(first.is_err(), "nothing was requested, nothing came");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let snap = stats.snapshot();
    assert_eq!(snap.depth, 10);
    assert_eq!(snap.blocked, Duration::ZERO);
}
