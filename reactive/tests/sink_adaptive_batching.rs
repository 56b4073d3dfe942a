//! Adaptive batching in the sink workers, on tokio's paused clock: a sink with a request limit
//! (a write holds a slot of the limit, then takes 1 ms), fed a burst it cannot take one item
//! per request, then a trickle.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use reactive::Publisher;
use reactive::sink::{Batching, OrderCheck, Partitioning, WorkersConfig, workers};
use tokio::time::Instant;

#[derive(Debug, Clone, Copy)]
struct Item {
    key: u64,
    seq: u64,
    /// When the source emitted it.
    at: Instant,
    /// Whether it belongs to the trickle after the burst.
    trickle: bool,
}

const KEYS: u64 = 7;

/// `burst` items at 10,000/s (ten every millisecond: the timer's resolution), then `trickle`
/// items 50 ms apart.
fn source(burst: u64, trickle: u64) -> impl futures::Stream<Item = Item> {
    let mut seqs = [0u64; KEYS as usize];
    futures::stream::iter(0..burst + trickle).then(move |i| {
        let key = i % KEYS;
        let seq = seqs[key as usize];
        seqs[key as usize] += 1;
        let trickle = i >= burst;
        async move {
            if trickle {
                tokio::time::sleep(Duration::from_millis(50)).await;
            } else if i % 10 == 0 {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            Item {
                key,
                seq,
                at: Instant::now(),
                trickle,
            }
        }
    })
}

/// What the sink saw: each write's start, size, and whether it carried trickle items; each
/// item's wait from its emission to its write's start; and the writes the pool counted as
/// sized for a congested sink.
#[derive(Debug, Default)]
struct Seen {
    writes: Vec<(Instant, usize, bool)>,
    trickle_waits: Vec<Duration>,
    congested: u64,
}

/// Runs the pool over the source into a sink that admits one write per `slot` (shared by all
/// workers: a request limit), each taking 1 ms once admitted.
async fn run(batching: Batching, workers_n: usize, burst: u64, trickle: u64) -> (Seen, u64) {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let check = Arc::new(OrderCheck::default());
    let next_slot = Arc::new(Mutex::new(Instant::now()));
    let slot = Duration::from_millis(5);
    let config = WorkersConfig {
        workers: workers_n,
        window: 16,
        partitioning: Partitioning::Key,
        batching,
    };
    let (s, c, n) = (seen.clone(), check.clone(), next_slot.clone());
    let (subscriber, pool) = workers(
        config,
        |i: &Item| i.key,
        move |_, batch: Vec<Item>| {
            let (s, c, n) = (s.clone(), c.clone(), n.clone());
            async move {
                let now = Instant::now();
                {
                    let mut s = s.lock().unwrap();
                    let trickle = batch.iter().any(|i| i.trickle);
                    s.writes.push((now, batch.len(), trickle));
                    for i in batch.iter().filter(|i| i.trickle) {
                        s.trickle_waits.push(now - i.at);
                    }
                }
                let admitted = {
                    let mut n = n.lock().unwrap();
                    let at = (*n).max(now);
                    *n = at + slot;
                    at
                };
                tokio::time::sleep_until(admitted + Duration::from_millis(1)).await;
                for i in batch {
                    c.observe(i.key, i.seq);
                }
            }
        },
    );
    let publisher = reactive::from_stream(Box::pin(source(burst, trickle)));
    let stats = pool.stats();
    let (_, result) = tokio::join!(publisher.connect(subscriber), pool);
    result.unwrap();
    let mut seen = Arc::try_unwrap(seen).unwrap().into_inner().unwrap();
    seen.congested = stats.congested();
    (seen, check.violations())
}

fn adaptive(max: usize, linger_ms: u64) -> Batching {
    Batching::Adaptive {
        max,
        linger: Duration::from_millis(linger_ms),
    }
}

#[tokio::test(start_paused = true)]
async fn the_batch_grows_under_a_congested_sink_and_shrinks_when_the_load_drops() {
    let (seen, violations) = run(adaptive(256, 20), 2, 3_000, 30).await;
    assert_eq!(violations, 0, "per-key order holds");
    let total: usize = seen.writes.iter().map(|w| w.1).sum();
    assert_eq!(total, 3_030);
    let burst: Vec<usize> = seen.writes.iter().filter(|w| !w.2).map(|w| w.1).collect();
    // 10,000 items/s into 200 writes/s: keeping up takes 50 items a write.
    let largest = burst.iter().max().copied().unwrap_or(0);
    assert!(largest >= 40, "burst batches {burst:?}");
    let started = seen.writes.first().unwrap().0;
    let last_burst = seen.writes.iter().rfind(|w| !w.2).unwrap().0;
    assert!(
        last_burst - started < Duration::from_millis(400),
        "the burst (300 ms of items) kept up: {:?}",
        last_burst - started
    );
    let late: Vec<usize> = seen.writes.iter().filter(|w| w.2).map(|w| w.1).collect();
    assert!(
        late.iter().all(|&n| n == 1),
        "the trickle goes one by one: {late:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_trickle_after_congestion_waits_at_most_the_cap_and_soon_not_at_all() {
    let (seen, violations) = run(adaptive(256, 3), 2, 3_000, 30).await;
    assert_eq!(violations, 0);
    let waits = &seen.trickle_waits;
    assert_eq!(waits.len(), 30);
    assert!(
        waits.iter().all(|w| *w <= Duration::from_millis(3)),
        "no trickle item waited beyond the 3 ms cap: {waits:?}"
    );
    // Each of the two workers learns from its own writes that the rate dropped and writes
    // are quick again: within ten writes each.
    assert!(
        waits[20..].iter().all(|w| w.is_zero()),
        "once the rate is known to have dropped, nothing waits: {waits:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn no_batch_exceeds_max_and_order_holds_over_many_workers() {
    let (seen, violations) = run(adaptive(8, 20), 4, 2_000, 0).await;
    assert_eq!(violations, 0);
    let sizes: Vec<usize> = seen.writes.iter().map(|w| w.1).collect();
    assert_eq!(sizes.iter().sum::<usize>(), 2_000);
    assert!(sizes.iter().all(|&n| (1..=8).contains(&n)), "{sizes:?}");
    assert!(
        sizes.iter().filter(|&&n| n == 8).count() > sizes.len() / 5,
        "a sink this congested fills many batches to max: {sizes:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_fixed_size_of_one_cannot_keep_up_where_adaptive_does() {
    // The control: the same burst one item per write takes a write slot each (5 ms).
    let fixed = Batching::Fixed {
        size: 1,
        linger: Duration::ZERO,
    };
    let (seen, _) = run(fixed, 2, 400, 0).await;
    let span = seen.writes.last().unwrap().0 - seen.writes.first().unwrap().0;
    assert!(span >= Duration::from_millis(1_900), "{span:?}");
    assert_eq!(seen.congested, 0, "a fixed size never counts congestion");
    let (seen, _) = run(adaptive(256, 20), 2, 400, 0).await;
    let span = seen.writes.last().unwrap().0 - seen.writes.first().unwrap().0;
    assert!(span < Duration::from_millis(100), "{span:?}");
    assert!(
        seen.congested > 0,
        "held writes (5 ms slots against 1 ms writes) count as congestion"
    );
}
