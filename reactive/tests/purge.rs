//! Purging on purpose: a queue and a worker pool drop the waiting items a predicate matches,
//! count them, and (a blocking queue) give their places back to the source.

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use reactive::queue::QueueConfig;
use reactive::sink::{Partitioning, WorkersConfig, workers};
use reactive::{Prefetch, Publisher, PublisherExt};
use support::Scripted;

#[tokio::test]
async fn a_purge_removes_matching_queued_items_and_counts_them() {
    let queue = reactive::iter(0..100u64).queue(QueueConfig::bounded(100));
    let (stats, purger) = (queue.stats(), queue.purger());
    let consumer = Scripted::<u64>::default();
    let task = tokio::spawn(queue.connect(consumer.clone()));
    // Let the source fill the queue; nothing is requested yet.
    while stats.snapshot().pushed < 100 {
        tokio::task::yield_now().await;
    }
    let removed = purger.purge(|x| x % 2 == 1);
    assert_eq!(removed, 50, "the odd items were waiting in the buffer");
    let s = stats.snapshot();
    assert_eq!(s.purged, 50);
    assert_eq!(s.depth, 50);
    assert_eq!(s.dropped(), 0, "a purge is not a drop by policy");
    consumer.allow(1_000);
    task.await.unwrap();
    assert_eq!(consumer.items(), (0..100).step_by(2).collect::<Vec<_>>());
}

#[tokio::test]
async fn a_purge_mid_stream_removes_only_what_was_not_yet_emitted() {
    // Ten items are out; a purge then removes what matches among the rest.
    let queue = reactive::iter(0..1_000u64).queue(QueueConfig::bounded(1_000));
    let (stats, purger) = (queue.stats(), queue.purger());
    let consumer = Scripted::<u64>::default();
    let task = tokio::spawn(queue.connect(consumer.clone()));
    while stats.snapshot().pushed < 1_000 {
        tokio::task::yield_now().await;
    }
    consumer.allow(10);
    while consumer.count() < 10 {
        tokio::task::yield_now().await;
    }
    purger.purge(|x| *x >= 10 && *x < 500);
    consumer.allow(10_000);
    task.await.unwrap();
    let got = consumer.items();
    assert!(
        got.iter().all(|x| *x < 10 || *x >= 500),
        "purged items were emitted"
    );
    assert_eq!(got.len(), 10 + 500);
    assert_eq!(stats.snapshot().purged, 490);
}

#[tokio::test]
async fn a_blocking_queue_gets_its_places_back_after_a_purge() {
    // An endless source into a full queue of 8: after purging all 8, the source must be
    // granted 8 more places, or the queue would shrink with every purge until it stalled.
    let queue = reactive::iter(0u64..).queue(QueueConfig::bounded(8));
    let (stats, purger) = (queue.stats(), queue.purger());
    let consumer = Scripted::<u64>::default();
    let task = tokio::spawn(queue.connect(consumer.clone()));
    for round in 1..=5u64 {
        while stats.snapshot().pushed < 8 * round {
            tokio::task::yield_now().await;
        }
        assert_eq!(stats.snapshot().depth, 8, "full again (round {round})");
        purger.purge(|_| true);
    }
    consumer.allow(8);
    while consumer.count() < 8 {
        tokio::task::yield_now().await;
    }
    assert_eq!(consumer.items(), (40..48).collect::<Vec<_>>());
    consumer.cancel();
    task.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_worker_pool_purges_queued_items_but_not_the_write_under_way() {
    let written = Arc::new(Mutex::new(Vec::new()));
    let log = written.clone();
    let config = WorkersConfig {
        workers: 1,
        window: 64,
        partitioning: Partitioning::RoundRobin,
        ..Default::default()
    };
    let (subscriber, pool) = workers(
        config,
        |x: &u64| *x,
        move |_, batch: Vec<u64>| {
            let log = log.clone();
            async move {
                tokio::time::sleep(Duration::from_millis(10)).await;
                log.lock().unwrap().extend(batch);
            }
        },
    );
    let (stats, purger) = (pool.stats(), pool.purger());
    let driver = tokio::spawn(pool);
    let source = tokio::spawn(reactive::iter(0..20u64).connect(subscriber));
    tokio::time::sleep(Duration::from_millis(1)).await;
    // Item 0 is being written; 1..20 wait in the worker's queue.
    assert_eq!(
        purger.purge(|x| *x % 2 == 0),
        0,
        "applied by the pool, later"
    );
    source.await.unwrap();
    driver.await.unwrap().unwrap();
    let written = written.lock().unwrap().clone();
    let mut expect = vec![0];
    expect.extend((1..20).filter(|x| x % 2 == 1));
    assert_eq!(
        written, expect,
        "0 was under way; the other even items were purged"
    );
    assert_eq!(stats.purged(), 9);
}

#[tokio::test]
async fn pull_mode_holds_nothing_to_purge() {
    let queue = reactive::iter(0..10u64).queue(QueueConfig::pull());
    let purger = queue.purger();
    assert_eq!(purger.purge(|_| true), 0);
    let got: Vec<u64> = queue
        .into_stream_with(Prefetch::new(4))
        .map(Result::unwrap)
        .collect()
        .await;
    assert_eq!(got.len(), 10);
}
