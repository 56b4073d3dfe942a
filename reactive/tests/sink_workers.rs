//! Parallel sink workers on tokio's paused clock: key partitioning keeps per-key order under
//! random write delays; round-robin does not, and the order check sees it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use reactive::sink::{Batching, OrderCheck, Partitioning, WorkersConfig, workers};
use reactive::{Publisher, PublisherExt};

#[derive(Debug, Clone, Copy)]
struct Event {
    key: u64,
    seq: u64,
    delay_ms: u64,
}

/// Keys coprime to the worker counts, so round-robin really spreads each key.
const KEYS: u64 = 21;

/// 2,000 events over 21 keys, each written after a pseudo-random 1–20 ms.
fn events() -> impl Iterator<Item = Event> {
    let mut seqs = [0u64; KEYS as usize];
    let mut state = 7u64;
    (0..2_000u64).map(move |i| {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        let key = i % KEYS;
        let seq = seqs[key as usize];
        seqs[key as usize] += 1;
        Event {
            key,
            seq,
            delay_ms: 1 + (state >> 33) % 20,
        }
    })
}

async fn run(partitioning: Partitioning, n: usize) -> (u64, u64, Duration) {
    let check = Arc::new(OrderCheck::default());
    let written = Arc::new(AtomicU64::new(0));
    let config = WorkersConfig {
        workers: n,
        window: 8,
        partitioning,
        ..Default::default()
    };
    let (c, w) = (check.clone(), written.clone());
    let (subscriber, pool) = workers(
        config,
        |e: &Event| e.key,
        move |_, batch: Vec<Event>| {
            let (c, w) = (c.clone(), w.clone());
            async move {
                for e in batch {
                    tokio::time::sleep(Duration::from_millis(e.delay_ms)).await;
                    c.observe(e.key, e.seq);
                    w.fetch_add(1, Ordering::SeqCst);
                }
            }
        },
    );
    let start = tokio::time::Instant::now();
    let (_, result) = tokio::join!(reactive::iter(events()).connect(subscriber), pool);
    result.unwrap();
    (
        written.load(Ordering::SeqCst),
        check.violations(),
        start.elapsed(),
    )
}

#[tokio::test(start_paused = true)]
async fn key_partitioning_keeps_per_key_order_under_random_delays() {
    for n in [1, 4, 16] {
        let (written, violations, _) = run(Partitioning::Key, n).await;
        assert_eq!(written, 2_000);
        assert_eq!(violations, 0, "{n} workers");
    }
}

#[tokio::test(start_paused = true)]
async fn round_robin_reorders_and_the_check_counts_it() {
    let (written, violations, _) = run(Partitioning::RoundRobin, 4).await;
    assert_eq!(written, 2_000);
    assert!(
        violations > 0,
        "random delays over 4 workers must reorder some keys"
    );
    let (_, one_worker, _) = run(Partitioning::RoundRobin, 1).await;
    assert_eq!(one_worker, 0, "one worker cannot reorder");
}

#[tokio::test(start_paused = true)]
async fn more_workers_write_faster() {
    let (_, _, one) = run(Partitioning::RoundRobin, 1).await;
    let (_, _, sixteen) = run(Partitioning::RoundRobin, 16).await;
    // 2,000 writes of 10.5 ms on average: ~21 s alone, ~1.3 s over 16.
    assert!(
        one > sixteen * 10,
        "1 worker {one:?}, 16 workers {sixteen:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn the_pool_holds_no_more_than_its_window() {
    let max_held = Arc::new(AtomicU64::new(0));
    let produced = Arc::new(AtomicU64::new(0));
    let written = Arc::new(AtomicU64::new(0));
    let config = WorkersConfig {
        workers: 3,
        window: 5,
        partitioning: Partitioning::RoundRobin,
        ..Default::default()
    };
    let (m, p, w) = (max_held.clone(), produced.clone(), written.clone());
    let (subscriber, pool) = workers(
        config,
        |_: &u64| 0,
        move |_, _x: Vec<u64>| {
            let (m, p, w) = (m.clone(), p.clone(), w.clone());
            async move {
                m.fetch_max(
                    p.load(Ordering::SeqCst) - w.load(Ordering::SeqCst),
                    Ordering::SeqCst,
                );
                tokio::time::sleep(Duration::from_millis(3)).await;
                w.fetch_add(1, Ordering::SeqCst);
            }
        },
    );
    let source = reactive::iter(0..500u64).map(move |x| {
        produced.fetch_add(1, Ordering::SeqCst);
        x
    });
    let (_, result) = tokio::join!(source.connect(subscriber), pool);
    result.unwrap();
    assert!(
        max_held.load(Ordering::SeqCst) <= 15,
        "held {}",
        max_held.load(Ordering::SeqCst)
    );
}

#[tokio::test(start_paused = true)]
async fn workers_batch_by_size_and_linger_and_keep_key_order() {
    let check = Arc::new(OrderCheck::default());
    let sizes = Arc::new(std::sync::Mutex::new(Vec::new()));
    let config = WorkersConfig {
        workers: 4,
        window: 8,
        partitioning: Partitioning::Key,
        batching: Batching::Fixed {
            size: 10,
            linger: Duration::from_millis(5),
        },
    };
    let (c, s) = (check.clone(), sizes.clone());
    let (subscriber, pool) = workers(
        config,
        |e: &Event| e.key,
        move |_, batch: Vec<Event>| {
            let (c, s) = (c.clone(), s.clone());
            async move {
                s.lock().unwrap().push(batch.len());
                tokio::time::sleep(Duration::from_millis(2)).await;
                for e in batch {
                    c.observe(e.key, e.seq);
                }
            }
        },
    );
    let (_, result) = tokio::join!(reactive::iter(events()).connect(subscriber), pool);
    result.unwrap();
    let sizes = sizes.lock().unwrap();
    assert_eq!(sizes.iter().sum::<usize>(), 2_000);
    assert!(
        sizes.iter().all(|n| (1..=10).contains(n)),
        "batches never exceed their size, never empty"
    );
    assert!(
        sizes.iter().filter(|n| **n == 10).count() > sizes.len() / 2,
        "a fast source fills most batches"
    );
    assert_eq!(check.violations(), 0);
}
