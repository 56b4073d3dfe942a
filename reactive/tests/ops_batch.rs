//! Micro-batching on tokio's paused clock: by size, by linger, at the end, never empty, and
//! never without demand.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures::TryStreamExt;
use reactive::tck::{PublisherVerification, Upstream};
use reactive::{Publisher, PublisherExt};
use tokio::time::Instant;

#[tokio::test(start_paused = true)]
async fn batches_fill_by_size_and_flush_at_the_end() {
    let batches: Vec<Vec<u32>> = reactive::iter(0..10)
        .batch(3, Duration::from_secs(3600))
        .into_stream()
        .try_collect()
        .await
        .unwrap();
    assert_eq!(
        batches,
        [vec![0, 1, 2], vec![3, 4, 5], vec![6, 7, 8], vec![9]]
    );
}

#[tokio::test(start_paused = true)]
async fn a_partial_batch_leaves_after_the_linger() {
    // One item every 10 ms; batches of up to 100 with a 25 ms linger.
    let source = async_stream::stream! {
        for i in 0..9u32 {
            tokio::time::sleep(Duration::from_millis(10)).await;
            yield i;
        }
    };
    let start = Instant::now();
    let mut stream = Box::pin(
        reactive::from_stream(source)
            .batch(100, Duration::from_millis(25))
            .into_stream(),
    );
    let mut seen = Vec::new();
    while let Some(batch) = stream.try_next().await.unwrap() {
        seen.push((start.elapsed().as_millis(), batch));
    }
    // First item at 10 ms, so the first batch leaves at 35 ms holding items from 10, 20, 30 ms.
    assert_eq!(seen[0], (35, vec![0, 1, 2]));
    assert_eq!(seen[1], (65, vec![3, 4, 5]));
    assert!(seen.iter().all(|(_, b)| !b.is_empty()), "no empty batch");
    let all: Vec<u32> = seen.into_iter().flat_map(|(_, b)| b).collect();
    assert_eq!(all, (0..9).collect::<Vec<_>>());
}

mod support;

type Scripted = support::Scripted<Vec<u64>>;

#[tokio::test(start_paused = true)]
async fn batches_are_requested_never_pushed() {
    let produced = Arc::new(AtomicU64::new(0));
    let counter = produced.clone();
    let script = Scripted::default();
    let connection = reactive::iter(0u64..)
        .map(move |x| {
            counter.fetch_add(1, Ordering::SeqCst);
            x
        })
        .batch(4, Duration::from_millis(5))
        .connect(script.clone());
    let task = tokio::spawn(connection);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(
        produced.load(Ordering::SeqCst),
        0,
        "nothing is pulled without demand"
    );
    assert!(script.received.lock().unwrap().is_empty());
    script
        .subscription
        .lock()
        .unwrap()
        .as_ref()
        .unwrap()
        .request(2);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(
        *script.received.lock().unwrap(),
        vec![vec![0, 1, 2, 3], vec![4, 5, 6, 7]]
    );
    assert_eq!(
        produced.load(Ordering::SeqCst),
        8,
        "2 batches of 4 requested: 8 items pulled"
    );
    script
        .subscription
        .lock()
        .unwrap()
        .as_ref()
        .unwrap()
        .cancel();
    task.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_lingering_batch_without_demand_waits_for_it() {
    let source = async_stream::stream! {
        for i in 0..3u64 {
            tokio::time::sleep(Duration::from_millis(10)).await;
            yield i;
        }
        futures::future::pending::<()>().await;
    };
    let script = Scripted::default();
    let task = tokio::spawn(
        reactive::from_stream(source)
            .batch(10, Duration::from_millis(5))
            .connect(script.clone()),
    );
    let request = |n| {
        script
            .subscription
            .lock()
            .unwrap()
            .as_ref()
            .unwrap()
            .request(n)
    };
    request(1);
    tokio::time::sleep(Duration::from_millis(12)).await;
    // The first item arrived at 10 ms; its linger ended at 15 ms... not yet.
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(
        *script.received.lock().unwrap(),
        vec![vec![0]],
        "the linger flushed one item"
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        script.received.lock().unwrap().len(),
        1,
        "no demand, no batch, however long it lingers"
    );
    request(1);
    tokio::time::sleep(Duration::from_millis(1)).await;
    assert_eq!(*script.received.lock().unwrap(), vec![vec![0], vec![1, 2]]);
    script
        .subscription
        .lock()
        .unwrap()
        .as_ref()
        .unwrap()
        .cancel();
    task.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn requests_far_beyond_u64_do_not_overflow() {
    let batches: Vec<Vec<u64>> = reactive::iter(0..1000u64)
        .batch(usize::MAX / 2, Duration::from_millis(1))
        .into_stream_with(reactive::Prefetch::unbounded())
        .try_collect()
        .await
        .unwrap();
    assert_eq!(batches.concat().len(), 1000);
}

reactive::publisher_tck!(
    batch_of_one,
    PublisherVerification::over(|up| up.batch(1, Duration::from_secs(1)))
);

reactive::publisher_tck!(
    batch_of_three,
    PublisherVerification::new(
        |n| reactive::iter(0..n.saturating_mul(3)).batch(3, Duration::from_secs(1))
    )
    .with_pending(|n| Upstream::pausing(n.saturating_mul(3)).batch(3, Duration::from_secs(1)))
    .with_idle(|| Upstream::idle().batch(3, Duration::from_secs(1)))
);
