//! Behaviour of the Stream / Sink bridges: demand bounds what is produced and buffered.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::Poll;
use std::time::Duration;

use futures::{SinkExt, StreamExt, TryStreamExt};
use reactive::{Error, Prefetch, Publisher, PublisherExt};

mod support;

use support::Scripted;

#[tokio::test]
async fn a_stream_is_polled_only_against_demand() {
    let polls = Arc::new(AtomicU64::new(0));
    let counter = polls.clone();
    let source = futures::stream::poll_fn(move |_| {
        Poll::Ready(Some(counter.fetch_add(1, Ordering::SeqCst)))
    });
    let script = Scripted::<u64>::default();
    let mut connection = Box::pin(reactive::from_stream(source).connect(script.clone()));
    let mut task = tokio_test::task::spawn(());
    task.enter(|cx, _| assert!(connection.as_mut().poll(cx).is_pending()));
    assert_eq!(polls.load(Ordering::SeqCst), 0, "polled without demand");
    script.allow(3);
    task.enter(|cx, _| assert!(connection.as_mut().poll(cx).is_pending()));
    assert_eq!(polls.load(Ordering::SeqCst), 3);
    assert_eq!(script.count(), 3);
    script.allow(2);
    assert!(task.is_woken(), "a request must wake the connection");
    task.enter(|cx, _| assert!(connection.as_mut().poll(cx).is_pending()));
    assert_eq!(polls.load(Ordering::SeqCst), 5);
}

#[tokio::test]
async fn cancel_wakes_a_connection_waiting_on_its_stream() {
    let script = Scripted::<u64>::default();
    let mut connection =
        Box::pin(reactive::from_stream(futures::stream::pending::<u64>()).connect(script.clone()));
    let mut task = tokio_test::task::spawn(());
    script.allow(1);
    task.enter(|cx, _| assert!(connection.as_mut().poll(cx).is_pending()));
    script.cancel();
    assert!(task.is_woken());
    task.enter(|cx, _| assert!(connection.as_mut().poll(cx).is_ready()));
}

#[tokio::test]
async fn into_stream_never_has_more_than_the_window_outstanding() {
    let produced = Arc::new(AtomicU64::new(0));
    let counter = produced.clone();
    let window = 16;
    let mut stream = reactive::iter(0..1_000u64)
        .map(move |x| {
            counter.fetch_add(1, Ordering::SeqCst);
            x
        })
        .into_stream_with(Prefetch::new(window).replenish_at(0.75));
    let mut consumed = 0;
    let mut max_ahead = 0;
    while let Some(item) = stream.try_next().await.unwrap() {
        assert_eq!(item, consumed);
        consumed += 1;
        max_ahead = max_ahead.max(produced.load(Ordering::SeqCst) - consumed);
    }
    assert_eq!(consumed, 1_000);
    assert!(
        max_ahead < window,
        "{max_ahead} items ahead with a window of {window}"
    );
    assert!(
        max_ahead >= window - 12,
        "replenishing at 75% should refill the window"
    );
}

#[tokio::test]
async fn errors_reach_the_stream_after_the_items_before_them() {
    let source = futures::stream::iter(vec![Ok(1u64), Ok(2), Err(std::io::Error::other("boom"))]);
    let items: Vec<_> = reactive::from_try_stream(source)
        .into_stream()
        .collect()
        .await;
    assert_eq!(items.len(), 3);
    assert!(matches!(items[2], Err(Error::Upstream(_))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spawn_stream_carries_every_item_in_order_across_tasks() {
    let stream = reactive::iter(0..50_000u64).spawn_stream(Prefetch::new(1024));
    let items: Vec<u64> = stream.try_collect().await.unwrap();
    assert!(items.iter().copied().eq(0..50_000));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_a_spawned_stream_cancels_its_publisher() {
    let produced = Arc::new(AtomicU64::new(0));
    let counter = produced.clone();
    let mut stream = reactive::iter(0u64..)
        .map(move |x| {
            counter.fetch_add(1, Ordering::SeqCst);
            x
        })
        .spawn_stream(Prefetch::new(8));
    assert_eq!(stream.next().await.unwrap().unwrap(), 0);
    drop(stream);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let after_drop = produced.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(produced.load(Ordering::SeqCst), after_drop);
    assert!(after_drop <= 16);
}

#[tokio::test(start_paused = true)]
async fn a_slow_sink_bounds_what_is_buffered() {
    let produced = Arc::new(AtomicU64::new(0));
    let counter = produced.clone();
    let sunk = Arc::new(AtomicU64::new(0));
    let sunk_in = sunk.clone();
    let max_ahead = Arc::new(AtomicU64::new(0));
    let ahead = max_ahead.clone();
    let produced_view = produced.clone();
    let slow = futures::sink::drain::<u64>().with(move |x: u64| {
        let sunk = sunk_in.clone();
        let ahead = ahead.clone();
        let produced = produced_view.clone();
        async move {
            tokio::time::sleep(Duration::from_millis(10)).await;
            let done = sunk.fetch_add(1, Ordering::SeqCst) + 1;
            ahead.fetch_max(produced.load(Ordering::SeqCst) - done, Ordering::SeqCst);
            Ok::<_, std::convert::Infallible>(x)
        }
    });
    let (subscriber, driver) = reactive::from_sink(slow, Prefetch::new(8));
    let connection = reactive::iter(0..200u64)
        .map(move |x| {
            counter.fetch_add(1, Ordering::SeqCst);
            x
        })
        .connect(subscriber);
    let (_, result) = tokio::join!(connection, driver);
    result.unwrap();
    assert_eq!(sunk.load(Ordering::SeqCst), 200);
    assert!(
        max_ahead.load(Ordering::SeqCst) <= 8,
        "buffered {} > window",
        max_ahead.load(Ordering::SeqCst)
    );
}

#[tokio::test]
async fn a_sink_error_cancels_the_publisher() {
    #[derive(Debug)]
    struct Full;
    impl std::fmt::Display for Full {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("full")
        }
    }
    impl std::error::Error for Full {}
    impl From<std::convert::Infallible> for Full {
        fn from(never: std::convert::Infallible) -> Self {
            match never {}
        }
    }
    let failing = futures::sink::drain::<u64>()
        .with(|x: u64| async move { if x < 3 { Ok(x) } else { Err(Full) } });
    let (subscriber, driver) = reactive::from_sink(failing, Prefetch::new(4));
    let connection = reactive::iter(0u64..).connect(subscriber);
    let (_, result) = tokio::join!(connection, driver);
    assert!(matches!(result, Err(Error::Sink(_))));
}
