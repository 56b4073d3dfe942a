//! `--poll-loop inline`: the loop most consumers start with, and experiment 6's villain. Poll
//! up to `--poll-batch` records, write them all, commit, poll again. When writing a batch takes
//! longer than `max.poll.interval.ms`, the client leaves the group (an eviction), its
//! partitions move, and what it writes after that is replayed by their new owner.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rdkafka::consumer::{Consumer, StreamConsumer};
use reactive::kafka::KafkaConfig;
use tokio::time::Instant;

use super::plain::{
    Counters, PlainContext, Polled, polled, spawn_lag_reader, subscribed, write_round,
};
use super::poison::PoisonLog;
use super::poll_loop::{Failure, Running, StatsFn};
use crate::plan::Plan;
use crate::sink::SinkWriter;

/// Polls up to `n` records, waiting at most 200 ms for them; counts an eviction the client
/// reports.
async fn poll_round(
    consumer: &StreamConsumer<PlainContext>,
    n: usize,
    counters: &Counters,
) -> Vec<Polled> {
    let mut records: Vec<Polled> = Vec::new();
    let deadline = Instant::now() + Duration::from_millis(200);
    while records.len() < n {
        match tokio::time::timeout_at(deadline, consumer.recv()).await {
            Ok(Ok(m)) => records.push(polled(&m)),
            Ok(Err(e)) => {
                if reactive::kafka::is_eviction(&e) {
                    counters.evictions.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!("evicted: max.poll.interval.ms passed without a poll");
                }
                break;
            }
            Err(_) => break,
        }
    }
    records
}

/// Starts the inline loop; returns its stats and its graceful stop.
pub fn inline(
    config: KafkaConfig,
    plan: &Plan,
    poll_batch: usize,
    ctx: Arc<SinkWriter>,
    poison: Arc<PoisonLog>,
) -> anyhow::Result<Running> {
    let consumer = subscribed::<StreamConsumer<PlainContext>>(&config)?;
    let counters = Arc::new(Counters::default());
    let stop = Arc::new(AtomicBool::new(false));
    let lag = spawn_lag_reader(consumer.clone(), stop.clone());

    let batch_size = plan.batch_size();
    let concurrency = plan.sink_workers();
    let task = {
        let (consumer, counters, stop) = (consumer.clone(), counters.clone(), stop.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                // Poll up to --poll-batch records...
                let records = poll_round(&consumer, poll_batch, &counters).await;
                if records.is_empty() {
                    continue;
                }
                let n = records.len() as u64;
                counters.delivered.fetch_add(n, Ordering::Relaxed);
                counters.in_flight.store(n, Ordering::Relaxed);
                // ... write them all (no poll meanwhile: this is the anti-pattern) ...
                let (next, n) = write_round(&ctx, &poison, records, batch_size, concurrency).await;
                counters.acked.fetch_add(n, Ordering::Relaxed);
                counters.in_flight.store(0, Ordering::Relaxed);
                // ... then commit.
                counters.commit(&consumer, &next).await;
            }
        })
    };

    let stats: StatsFn = {
        let (consumer, counters) = (consumer.clone(), counters.clone());
        Box::new(move || counters.stats(consumer.context(), &lag))
    };
    let shutdown = Box::pin(async move {
        stop.store(true, Ordering::Relaxed);
        let _ = task.await;
        let c = consumer.clone();
        let _ = tokio::task::spawn_blocking(move || c.unsubscribe()).await;
    });
    Ok(Running {
        stats,
        queue: None,
        shutdown,
        failure: Failure::default(),
    })
}
