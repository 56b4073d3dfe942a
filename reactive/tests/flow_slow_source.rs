//! The slow-source policy on tokio's paused clock: a paced source obeying a RateSignal driven by
//! AIMD from the queue's fill settles near the sink's rate, without shedding and without the
//! queue staying full.

use std::time::Duration;

use futures::StreamExt;
use reactive::flow::{Aimd, RateSignal, slow_source};
use reactive::queue::QueueConfig;
use reactive::{Prefetch, PublisherExt};
use tokio::time::Instant;

#[tokio::test(start_paused = true)]
async fn the_source_slows_to_the_sink_rate() {
    let signal = RateSignal::new(4_000.0);
    let pacing = signal.clone();
    // A source that emits at whatever rate the signal says, for 20 s.
    let source = async_stream::stream! {
        let start = Instant::now();
        let mut next = start;
        let mut i = 0u64;
        while next - start < Duration::from_secs(20) {
            tokio::time::sleep_until(next).await;
            yield i;
            i += 1;
            next += Duration::from_secs_f64(1.0 / pacing.get().max(1.0));
        }
    };
    let queue = reactive::from_stream(Box::pin(source)).queue(QueueConfig::bounded(200));
    let stats = queue.stats();
    let fill = stats.clone();
    let control = tokio::spawn(slow_source(
        move || fill.fill(),
        Aimd::new(4_000.0, 100.0, 4_000.0).increase(20.0),
        signal.clone(),
        Duration::from_millis(100),
    ));
    // The sink takes 1,000 items/s.
    let mut stream = Box::pin(queue.into_stream_with(Prefetch::new(1)));
    let mut taken = 0u64;
    let mut rates = Vec::new();
    let start = Instant::now();
    while let Some(item) = stream.next().await {
        item.unwrap();
        taken += 1;
        tokio::time::sleep(Duration::from_millis(1)).await;
        if taken % 100 == 0 && start.elapsed() > Duration::from_secs(10) {
            rates.push(signal.get());
        }
    }
    drop(signal);
    control.await.unwrap();
    let mean = rates.iter().sum::<f64>() / rates.len() as f64;
    assert!(
        (700.0..=1_400.0).contains(&mean),
        "the source's rate settled at {mean:.0}/s, not near 1,000/s"
    );
    let snapshot = stats.snapshot();
    assert_eq!(snapshot.dropped(), 0, "slow-source loses nothing");
    assert!(
        snapshot.blocked < Duration::from_secs(10),
        "the source slowed itself instead of being blocked for most of the run: {:?}",
        snapshot.blocked
    );
}
