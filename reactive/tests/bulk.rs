//! The bulk path: `on_next_batch` from publishers to subscribers that take batches, and
//! `recv_many` out of an inbox. Demand, order and cancellation hold as item by item.

use std::sync::{Arc, Mutex};

use reactive::queue::{Overflow, QueueConfig};
use reactive::{Error, Prefetch, Publisher, PublisherExt, Subscriber, Subscription};

/// What a recording subscriber saw.
#[derive(Default)]
struct Seen {
    items: Vec<u64>,
    batches: Vec<usize>,
    singles: usize,
    requested: u64,
    completed: bool,
    error: Option<Error>,
}

/// Requests `step` at a time, whenever what it has been given reaches what it asked for;
/// cancels once it holds `cancel_at` items or more.
struct Recorder {
    seen: Arc<Mutex<Seen>>,
    batches: bool,
    step: u64,
    cancel_at: Option<usize>,
    subscription: Option<Subscription>,
}

impl Recorder {
    fn new(batches: bool, step: u64, cancel_at: Option<usize>) -> (Self, Arc<Mutex<Seen>>) {
        let seen = Arc::new(Mutex::new(Seen::default()));
        let recorder = Recorder {
            seen: seen.clone(),
            batches,
            step,
            cancel_at,
            subscription: None,
        };
        (recorder, seen)
    }

    fn after_delivery(&mut self) {
        let mut seen = self.seen.lock().unwrap();
        assert!(
            seen.items.len() as u64 <= seen.requested,
            "rule 1.1 broken: {} items against {} requested",
            seen.items.len(),
            seen.requested
        );
        let subscription = self.subscription.as_ref().unwrap();
        if self.cancel_at.is_some_and(|at| seen.items.len() >= at) {
            subscription.cancel();
        } else if seen.items.len() as u64 == seen.requested {
            seen.requested += self.step;
            subscription.request(self.step);
        }
    }
}

impl Subscriber<u64> for Recorder {
    fn on_subscribe(&mut self, subscription: Subscription) {
        self.seen.lock().unwrap().requested = self.step;
        subscription.request(self.step);
        self.subscription = Some(subscription);
    }
    fn on_next(&mut self, item: u64) {
        {
            let mut seen = self.seen.lock().unwrap();
            seen.items.push(item);
            seen.singles += 1;
        }
        self.after_delivery();
    }
    fn on_next_batch(&mut self, items: &mut Vec<u64>) {
        assert!(
            self.batches,
            "a batch for a subscriber that does not take them"
        );
        assert!(!items.is_empty(), "an empty batch");
        {
            let mut seen = self.seen.lock().unwrap();
            seen.batches.push(items.len());
            seen.items.append(items);
        }
        self.after_delivery();
    }
    fn takes_batches(&self) -> bool {
        self.batches
    }
    fn on_error(&mut self, error: Error) {
        self.seen.lock().unwrap().error = Some(error);
    }
    fn on_complete(&mut self) {
        self.seen.lock().unwrap().completed = true;
    }
}

#[tokio::test]
async fn iter_hands_batches_within_demand_and_in_order() {
    let (recorder, seen) = Recorder::new(true, 100, None);
    reactive::iter(0..10_000u64).connect(recorder).await;
    let seen = seen.lock().unwrap();
    assert_eq!(seen.items, (0..10_000).collect::<Vec<_>>());
    assert!(seen.completed);
    assert_eq!(
        seen.singles, 0,
        "every delivery should be a batch of the demand"
    );
    // Batches of the demand, except where the publisher's yield budget (4,096 items a poll)
    // splits one in two.
    assert!(seen.batches.iter().all(|&n| n <= 100), "{:?}", seen.batches);
    assert!(
        seen.batches.len() <= 100 + 10_000 / 4_096,
        "{:?}",
        seen.batches
    );
}

#[tokio::test]
async fn a_subscriber_that_does_not_take_batches_gets_items_one_by_one() {
    let (recorder, seen) = Recorder::new(false, 100, None);
    reactive::iter(0..1_000u64).connect(recorder).await;
    let seen = seen.lock().unwrap();
    assert_eq!(seen.items, (0..1_000).collect::<Vec<_>>());
    assert_eq!(seen.singles, 1_000);
    assert!(seen.batches.is_empty());
}

#[tokio::test]
async fn a_cancel_inside_a_batch_stops_the_batches_after_it() {
    let (recorder, seen) = Recorder::new(true, 64, Some(100));
    reactive::iter(0..u64::MAX).connect(recorder).await;
    let seen = seen.lock().unwrap();
    // 64, then 64 more crossed the cancel point at 128: nothing after that batch.
    assert_eq!(seen.items, (0..128).collect::<Vec<_>>());
    assert!(!seen.completed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recv_many_takes_everything_in_order_and_never_holds_more_than_the_window() {
    let window = 64;
    let mut inbox = reactive::iter(0..50_000u64).spawn_stream(Prefetch::new(window));
    let mut all = Vec::new();
    let mut buf = Vec::new();
    loop {
        assert!(inbox.len() as u64 <= window, "inbox holds {}", inbox.len());
        let n = inbox.recv_many(&mut buf, 48).await.unwrap();
        if n == 0 {
            break;
        }
        assert!(n <= 48, "took {n} past the limit");
        assert_eq!(buf.len(), n);
        all.append(&mut buf);
    }
    assert_eq!(all, (0..50_000).collect::<Vec<_>>());
    // The end stays the end.
    assert_eq!(inbox.recv_many(&mut buf, 8).await.unwrap(), 0);
}

#[tokio::test]
async fn recv_many_appends_and_takes_a_limit_of_zero_as_one() {
    let mut inbox = reactive::iter(0..5u64).spawn_stream(Prefetch::new(8));
    let mut buf = vec![99];
    assert_eq!(inbox.recv_many(&mut buf, 0).await.unwrap(), 1);
    assert_eq!(buf, [99, 0]);
    assert_eq!(inbox.recv_many(&mut buf, 10).await.unwrap(), 4);
    assert_eq!(buf, [99, 0, 1, 2, 3, 4]);
    assert_eq!(inbox.recv_many(&mut buf, 10).await.unwrap(), 0);
}

#[tokio::test]
async fn recv_many_reports_the_publishers_error_after_its_items() {
    let source = reactive::from_try_stream(futures::stream::iter(vec![
        Ok(1u64),
        Ok(2),
        Err(std::io::Error::other("broken")),
    ]));
    let mut inbox = source.spawn_stream(Prefetch::new(8));
    let mut buf = Vec::new();
    let mut error = None;
    loop {
        match inbox.recv_many(&mut buf, 8).await {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) => {
                error = Some(e);
                break;
            }
        }
    }
    assert_eq!(buf, [1, 2]);
    assert!(error.is_some(), "the error was lost");
}

#[tokio::test]
async fn a_bounded_queue_passes_batches_within_demand_in_order_and_counts_them() {
    let (recorder, seen) = Recorder::new(true, 10, None);
    let queue = reactive::iter(0..5_000u64).queue(QueueConfig::bounded(16));
    let stats = queue.stats();
    queue.connect(recorder).await;
    let seen = seen.lock().unwrap();
    assert_eq!(seen.items, (0..5_000).collect::<Vec<_>>());
    assert!(seen.completed && seen.error.is_none());
    assert_eq!(seen.singles, 0);
    let snap = stats.snapshot();
    assert_eq!((snap.pushed, snap.popped, snap.depth), (5_000, 5_000, 0));
    assert!(snap.high_water <= 16, "high water {}", snap.high_water);
}

#[tokio::test]
async fn a_shedding_queue_fed_in_batches_counts_every_item_it_drops() {
    let (recorder, seen) = Recorder::new(true, 5, None);
    let queue =
        reactive::iter(0..1_000u64).queue(QueueConfig::bounded(8).overflow(Overflow::DropOldest));
    let stats = queue.stats();
    queue.connect(recorder).await;
    let seen = seen.lock().unwrap();
    let snap = stats.snapshot();
    assert_eq!(seen.items.len() as u64 + snap.dropped_oldest, 1_000);
    assert!(snap.dropped_oldest > 0, "nothing was shed");
    assert!(seen.items.windows(2).all(|w| w[0] < w[1]), "out of order");
    assert_eq!(seen.items.last(), Some(&999), "the freshest item is kept");
}

#[tokio::test]
async fn the_safety_cap_trips_inside_a_batch_and_counts_the_rest_of_it() {
    let (recorder, seen) = Recorder::new(true, 10, None);
    let queue = reactive::iter(0..1_000u64).queue(QueueConfig::unbounded().safety_cap(100));
    let stats = queue.stats();
    queue.connect(recorder).await;
    let seen = seen.lock().unwrap();
    let snap = stats.snapshot();
    assert!(
        matches!(seen.error, Some(Error::Overflow { limit: 100, .. })),
        "{:?}",
        seen.error
    );
    assert!(snap.overflowed);
    // The source made all 1,000 in one batch (fewer than a batch's 1,024) before the cap's
    // cancel reached it: each is delivered or counted as the cap's discard.
    assert_eq!(seen.items.len() as u64 + snap.dropped_overflow, 1_000);
}

#[tokio::test]
async fn map_and_filter_pass_batches_on_and_keep_demand_whole() {
    let (recorder, seen) = Recorder::new(true, 100, None);
    reactive::iter(0..10_000u64)
        .map(|x| x * 3)
        .filter(|x| x % 2 == 0)
        .connect(recorder)
        .await;
    let seen = seen.lock().unwrap();
    let expected: Vec<u64> = (0..10_000u64)
        .map(|x| x * 3)
        .filter(|x| x % 2 == 0)
        .collect();
    assert_eq!(seen.items, expected);
    assert!(seen.completed);
    // What the filter removed is asked for again in one request, which comes back as a
    // smaller batch, down to single items: most items still travel in batches.
    assert!(
        seen.singles * 20 < seen.items.len(),
        "{} of {} items came one by one",
        seen.singles,
        seen.items.len()
    );
}

#[tokio::test]
async fn map_hands_items_one_by_one_to_a_subscriber_that_does_not_take_batches() {
    let (recorder, seen) = Recorder::new(false, 10, Some(35));
    reactive::iter(0..u64::MAX)
        .map(|x| x + 1)
        .connect(recorder)
        .await;
    let seen = seen.lock().unwrap();
    // The cancel at the 35th item stops the 36th: nothing was delivered in bulk past it.
    assert_eq!(seen.items, (1..=35).collect::<Vec<_>>());
    assert!(seen.batches.is_empty());
}

#[tokio::test]
async fn from_chunks_splits_chunks_to_the_demand_and_hands_them_as_batches() {
    // Chunks of 64 against requests of 10: batches of at most 10, every item once, in order.
    let chunks = futures::stream::iter((0..100u64).map(|c| (c * 64..(c + 1) * 64).collect()));
    let (recorder, seen) = Recorder::new(true, 10, None);
    reactive::from_chunks(chunks).connect(recorder).await;
    let seen = seen.lock().unwrap();
    assert_eq!(seen.items, (0..6_400).collect::<Vec<_>>());
    assert!(seen.completed);
    assert!(seen.batches.iter().all(|&n| n <= 10), "{:?}", seen.batches);
    assert!(seen.batches.len() >= 640);
}

#[tokio::test]
async fn from_chunks_hands_whole_chunks_to_a_large_demand_and_items_to_a_per_item_subscriber() {
    let chunks = || futures::stream::iter((0..10u64).map(|c| (c * 64..(c + 1) * 64).collect()));
    let (recorder, seen) = Recorder::new(true, 10_000, None);
    reactive::from_chunks(chunks()).connect(recorder).await;
    assert_eq!(seen.lock().unwrap().batches, vec![64; 10]);

    let (recorder, seen) = Recorder::new(false, 7, Some(100));
    reactive::from_chunks(chunks()).connect(recorder).await;
    let seen = seen.lock().unwrap();
    // Item by item, and the cancel at the 100th stops the 101st, mid-chunk.
    assert_eq!(seen.items, (0..100).collect::<Vec<_>>());
    assert!(seen.batches.is_empty());
}
