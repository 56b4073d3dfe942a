//! Independent black-box checks of `Batching::Adaptive` in the sink workers, written from the
//! docs of `reactive::batching`, `reactive::sink::workers` and the README only. Paused clock.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;

use reactive::Publisher;
use reactive::sink::{Batching, Partitioning, WorkersConfig, workers};
use tokio::time::{Instant, sleep, timeout};

/// An item: (id, key, when it was emitted).
type Item = (u64, u64, Instant);

#[derive(Default)]
struct Log {
    /// per write: worker, start, end, items
    writes: Vec<(usize, Instant, Option<Instant>, Vec<Item>)>,
}

/// Emits `gaps.len()` items, item i after sleeping `gaps[i]`; key = id % keys.
fn source(gaps: Vec<Duration>, keys: u64) -> impl Publisher<Item = Item> {
    reactive::from_stream(async_stream::stream! {
        for (i, g) in gaps.into_iter().enumerate() {
            if !g.is_zero() {
                sleep(g).await;
            }
            yield (i as u64, i as u64 % keys, Instant::now());
        }
    })
}

/// Runs a pool; `service(write_index, batch_len)` gives how long a write takes.
async fn run(
    config: WorkersConfig,
    gaps: Vec<Duration>,
    keys: u64,
    service: impl Fn(usize, usize) -> Duration + 'static,
) -> (Rc<RefCell<Log>>, u64, u64) {
    let log = Rc::new(RefCell::new(Log::default()));
    let l2 = log.clone();
    let service = Rc::new(service);
    let (sub, pool) = workers(
        config,
        |x: &Item| x.1,
        move |worker, batch: Vec<Item>| {
            let log = l2.clone();
            let service = service.clone();
            let idx = {
                let mut g = log.borrow_mut();
                g.writes.push((worker, Instant::now(), None, batch.clone()));
                g.writes.len() - 1
            };
            let d = service(idx, batch.len());
            async move {
                sleep(d).await;
                log.borrow_mut().writes[idx].2 = Some(Instant::now());
            }
        },
    );
    let stats = pool.stats();
    let run = async {
        let (_, r) = tokio::join!(source(gaps, keys).connect(sub), pool);
        r
    };
    timeout(Duration::from_secs(3600), run)
        .await
        .expect("pool never finished")
        .expect("pool failed");
    let completed = stats.completed();
    (log, completed, stats.congested())
}

fn adaptive(max: usize, linger_ms: u64) -> Batching {
    Batching::Adaptive {
        max,
        linger: Duration::from_millis(linger_ms),
    }
}

/// Checks: every write 1..=max, each item once, per-key order, one write at a time per worker,
/// and no item waiting past its linger while its writer was free.
fn check(log: &Log, n: u64, max: usize, linger: Duration) {
    let mut seen = vec![0u32; n as usize];
    let mut last_per_key: HashMap<u64, u64> = HashMap::new();
    let mut last_end: HashMap<usize, Instant> = HashMap::new();
    for (k, (w, start, end, batch)) in log.writes.iter().enumerate() {
        assert!(
            !batch.is_empty() && batch.len() <= max,
            "write {k} has {} items (max {max})",
            batch.len()
        );
        let end = end.expect("a write never finished");
        let free_from = last_end.get(w).copied();
        if let Some(prev) = free_from {
            assert!(
                *start >= prev,
                "worker {w} started a write before its last ended"
            );
        }
        for &(id, key, at) in batch {
            seen[id as usize] += 1;
            if let Some(&prev) = last_per_key.get(&key) {
                assert!(id > prev, "key {key}: {id} written after {prev}");
            }
            last_per_key.insert(key, id);
            // a free writer sends by `at + linger`; a busy one at once when it frees up
            let deadline = match free_from {
                Some(e) if e > at + linger => e,
                _ => at + linger,
            };
            assert!(
                *start <= deadline + Duration::from_micros(1),
                "write {k}: item {id} emitted at {:?} waited to {:?}, past its linger (writer free from {:?})",
                at.elapsed(),
                start.elapsed(),
                free_from.map(|e| e.elapsed())
            );
        }
        last_end.insert(*w, end);
    }
    assert!(
        seen.iter().all(|&c| c == 1),
        "an item was lost or duplicated"
    );
}

#[tokio::test(start_paused = true)]
async fn light_load_is_written_at_once_one_item_per_write() {
    let config = WorkersConfig {
        workers: 2,
        window: 8,
        batching: adaptive(64, 10),
        ..Default::default()
    };
    let n = 50;
    let (log, completed, congested) = run(config, vec![Duration::from_millis(50); n], 7, |_, _| {
        Duration::from_millis(1)
    })
    .await;
    let log = log.borrow();
    assert_eq!(completed, n as u64);
    check(&log, n as u64, 64, Duration::from_millis(10));
    assert_eq!(congested, 0, "a sink keeping up was judged congested");
    for (_, start, _, batch) in &log.writes {
        assert_eq!(batch.len(), 1, "a light load was batched");
        assert_eq!(*start, batch[0].2, "a free writer lingered on a lone item");
    }
}

#[tokio::test(start_paused = true)]
async fn a_request_limited_sink_grows_the_batches_and_keeps_up() {
    // the sink serves one request per 10 ms (100 requests/s), whatever its size; 2,000 items/s
    let config = WorkersConfig {
        workers: 1,
        window: 16,
        batching: adaptive(256, 10),
        ..Default::default()
    };
    let n = 2000u64;
    let next_slot = Rc::new(RefCell::new(Instant::now()));
    let (log, completed, congested) = {
        let next_slot = next_slot.clone();
        // tokio's timer has 1 ms resolution: two items per millisecond
        let gaps = (0..n)
            .map(|i| {
                if i % 2 == 0 {
                    Duration::from_millis(1)
                } else {
                    Duration::ZERO
                }
            })
            .collect();
        run(config, gaps, 13, move |_, _| {
            let now = Instant::now();
            let mut s = next_slot.borrow_mut();
            let at = (*s).max(now);
            *s = at + Duration::from_millis(10);
            at - now + Duration::from_millis(1)
        })
        .await
    };
    let log = log.borrow();
    assert_eq!(completed, n);
    check(&log, n, 256, Duration::from_millis(10));
    let writes = log.writes.len() as u64;
    assert!(
        congested > 0,
        "a request-limited sink was never judged congested"
    );
    assert!(
        writes < n / 5,
        "{writes} writes for {n} items: the batch did not grow"
    );
    let first = log.writes.first().unwrap().1;
    let last = log.writes.last().unwrap().2.unwrap();
    assert!(
        last - first < Duration::from_millis(1_500),
        "fell behind: the 1 s of load took {:?}",
        last - first
    );
}

/// Gaps between arrivals: five 20 ms apart, then a burst of `burst` arriving 1 ms apart in
/// groups of `every`, then a trickle of `trickle` items `gap` apart.
fn warm_burst_trickle(burst: usize, every: usize, gap: Duration, trickle: usize) -> Vec<Duration> {
    let mut gaps = vec![Duration::from_millis(20); 5];
    gaps.extend((0..burst).map(|i| {
        if i % every == 0 {
            Duration::from_millis(1)
        } else {
            Duration::ZERO
        }
    }));
    gaps.extend(vec![gap; trickle]);
    gaps
}

#[tokio::test(start_paused = true)]
async fn congestion_then_a_trickle_waits_at_most_the_linger() {
    // fast writes, then a congested phase (slow writes under a burst), then a trickle
    let config = WorkersConfig {
        workers: 1,
        window: 64,
        batching: adaptive(32, 10),
        ..Default::default()
    };
    let gaps = warm_burst_trickle(2000, 5, Duration::from_millis(37), 40);
    let n = gaps.len() as u64;
    let (log, completed, congested) = run(config, gaps, 5, |idx, _| {
        if idx < 5 {
            Duration::from_millis(1)
        } else {
            Duration::from_millis(25)
        }
    })
    .await;
    let log = log.borrow();
    assert_eq!(completed, n);
    check(&log, n, 32, Duration::from_millis(10));
    assert!(
        congested > 0,
        "25 ms writes after 1 ms ones were never judged congested"
    );
}

#[tokio::test(start_paused = true)]
async fn an_idle_source_does_not_strand_queued_items() {
    // a few items, then the source stays silent (never completes)
    let config = WorkersConfig {
        workers: 1,
        window: 32,
        batching: adaptive(16, 10),
        ..Default::default()
    };
    let log = Rc::new(RefCell::new(Vec::<(Instant, Vec<Instant>)>::new()));
    let l2 = log.clone();
    let quickest = Rc::new(RefCell::new(0usize));
    let (sub, pool) = workers(
        config,
        |_: &Instant| 0,
        move |_, batch: Vec<Instant>| {
            l2.borrow_mut().push((Instant::now(), batch));
            let mut k = quickest.borrow_mut();
            *k += 1;
            // quick at first, then slow: the sink looks congested when the last items come
            let d = if *k <= 3 {
                Duration::from_millis(1)
            } else {
                Duration::from_millis(40)
            };
            async move { sleep(d).await }
        },
    );
    let src = reactive::from_stream(async_stream::stream! {
        for i in 0..3 { sleep(Duration::from_millis(30)).await; let _ = i; yield Instant::now(); }
        for _ in 0..20 { yield Instant::now(); sleep(Duration::from_millis(1)).await; }
        sleep(Duration::from_millis(5)).await;
        yield Instant::now();
        std::future::pending::<()>().await;
    });
    let all = async {
        let _ = tokio::join!(src.connect(sub), pool);
    };
    assert!(
        timeout(Duration::from_secs(2), all).await.is_err(),
        "the source never ends"
    );
    let log = log.borrow();
    let items: usize = log.iter().map(|(_, b)| b.len()).sum();
    assert_eq!(items, 24, "items still queued after 2 s of an idle source");
}

#[tokio::test(start_paused = true)]
async fn a_burst_with_slow_writes_never_exceeds_max_and_keeps_key_order() {
    let config = WorkersConfig {
        workers: 3,
        window: 8,
        partitioning: Partitioning::Key,
        batching: adaptive(7, 5),
    };
    let n = 3000u64;
    let (log, completed, _congested) =
        run(config, vec![Duration::ZERO; n as usize], 11, |i, len| {
            Duration::from_millis(2 + (i % 5) as u64 + len as u64 / 3)
        })
        .await;
    let log = log.borrow();
    assert_eq!(completed, n);
    check(&log, n, 7, Duration::from_millis(5));
    assert!(
        log.writes.iter().any(|w| w.3.len() == 7),
        "a burst never filled a batch to max"
    );
}

#[tokio::test(start_paused = true)]
async fn zero_max_and_zero_linger() {
    assert_eq!(adaptive(0, 10).max(), 1, "max is at least 1");
    assert_eq!(adaptive(usize::MAX, 10).max(), usize::MAX);
    let config = WorkersConfig {
        workers: 2,
        window: 4,
        batching: adaptive(0, 0),
        ..Default::default()
    };
    let n = 200u64;
    let (log, completed, _congested) = run(
        config,
        vec![Duration::from_micros(100); n as usize],
        3,
        |_, _| Duration::from_millis(3),
    )
    .await;
    let log = log.borrow();
    assert_eq!(completed, n);
    check(&log, n, 1, Duration::ZERO);
}

#[tokio::test(start_paused = true)]
async fn a_huge_max_does_not_blow_up_the_window() {
    // workers × (two of the largest batches) would overflow: the pool must still run
    let config = WorkersConfig {
        workers: 2,
        window: 4,
        batching: adaptive(usize::MAX / 2, 10),
        ..Default::default()
    };
    let n = 500u64;
    let (log, completed, _congested) = run(
        config,
        vec![Duration::from_micros(50); n as usize],
        4,
        |_, _| Duration::from_millis(2),
    )
    .await;
    let log = log.borrow();
    assert_eq!(completed, n);
    check(&log, n, usize::MAX, Duration::from_millis(10));
}

#[tokio::test(start_paused = true)]
async fn the_trickle_after_a_burst_then_waits_not_at_all() {
    // burst against a slow (congested) sink, then the sink is fast again and a trickle comes
    let config = WorkersConfig {
        workers: 1,
        window: 64,
        batching: adaptive(32, 10),
        ..Default::default()
    };
    let gaps = warm_burst_trickle(1000, 4, Duration::from_millis(200), 30);
    let n = gaps.len() as u64;
    let t0 = Instant::now();
    let (log, completed, congested) = run(config, gaps, 5, move |_, _| {
        let t = Instant::now() - t0;
        if t < Duration::from_millis(100) || t > Duration::from_millis(1_500) {
            Duration::from_millis(1)
        } else {
            Duration::from_millis(25)
        }
    })
    .await;
    assert!(
        congested > 0,
        "the burst against 25 ms writes was never judged congested"
    );
    let log = log.borrow();
    assert_eq!(completed, n);
    check(&log, n, 32, Duration::from_millis(10));
    let last: Vec<_> = log.writes.iter().rev().take(10).collect();
    for (_, start, _, batch) in last {
        assert_eq!(batch.len(), 1);
        assert_eq!(
            *start,
            batch[0].2,
            "a trickle item waited {:?} long after the burst",
            *start - batch[0].2
        );
    }
}

#[tokio::test(start_paused = true)]
async fn a_congested_writer_waits_at_most_one_write_latency() {
    // linger is long (100 ms); the wait for a target must still end after one write latency
    let config = WorkersConfig {
        workers: 1,
        window: 256,
        batching: adaptive(128, 100),
        ..Default::default()
    };
    let mut gaps = vec![Duration::from_millis(20); 5];
    gaps.extend(vec![Duration::ZERO; 300]); // an instant burst: a high arrival rate
    gaps.extend(vec![Duration::from_millis(13); 40]); // then slow arrivals: the target lags
    let n = gaps.len() as u64;
    let (log, completed, congested) = run(config, gaps, 3, |idx, _| {
        if idx < 5 {
            Duration::from_millis(1)
        } else {
            Duration::from_millis(5)
        }
    })
    .await;
    let log = log.borrow();
    assert_eq!(completed, n);
    assert!(
        congested > 0,
        "5 ms writes after 1 ms ones were never judged congested"
    );
    // one write latency (a moving average of 1 ms and 5 ms writes: at most 5 ms) plus a tick
    check(&log, n, 128, Duration::from_millis(6));
}
