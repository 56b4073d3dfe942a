//! `--poll-loop bare` and `bare-pause`: the control of experiment 6. A plain rdkafka consumer
//! with none of the reactive source's machinery, so that what the group does under it can be
//! told apart from what the source does: churn seen here too comes from the broker.
//!
//! A thread polls without pause and puts each record in a backlog; a task writes the backlog
//! to the sink in rounds and commits each round's highest offsets. With `bare-pause`, the poll
//! thread pauses the assignment when the backlog holds `--queue-cap` records and resumes it at
//! half, remembering only its own last call (the pattern most consumers start with); without,
//! the backlog is unbounded. Nothing is purged on a revocation.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use rdkafka::consumer::{BaseConsumer, Consumer};
use reactive::kafka::{KafkaConfig, KafkaStats};

use super::plain::{
    Counters, PlainContext, Polled, polled, spawn_lag_reader, subscribed, write_round,
};
use super::poison::PoisonLog;
use super::poll_loop::{Failure, Running, Shutdown, StatsFn};
use crate::plan::Plan;
use crate::sink::SinkWriter;

/// The poll thread: polls without pause into the backlog; with `pause`, pauses the assignment
/// at `cap` records held and resumes it at half.
fn poll_thread(
    consumer: Arc<BaseConsumer<PlainContext>>,
    backlog: Arc<Mutex<VecDeque<Polled>>>,
    counters: Arc<Counters>,
    stop: Arc<AtomicBool>,
    (pause, cap): (bool, usize),
) {
    let mut paused = false;
    while !stop.load(Ordering::Relaxed) {
        let held = backlog.lock().map_or(0, |b| b.len());
        if pause && !paused && held >= cap {
            if let Ok(tpl) = consumer.assignment() {
                let _ = consumer.pause(&tpl);
            }
            paused = true;
            counters.pauses.fetch_add(1, Ordering::Relaxed);
        } else if pause && paused && held < cap / 2 {
            if let Ok(tpl) = consumer.assignment() {
                let _ = consumer.resume(&tpl);
            }
            paused = false;
        }
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
            counters.delivered.fetch_add(1, Ordering::Relaxed);
            if let Ok(mut b) = backlog.lock() {
                b.push_back(polled(&m));
            }
        }
    }
}

/// Starts the bare consumer: a poll thread and a writer task.
pub fn bare(
    config: KafkaConfig,
    plan: &Plan,
    pause: bool,
    ctx: Arc<SinkWriter>,
    poison: Arc<PoisonLog>,
) -> anyhow::Result<Running> {
    let consumer = subscribed::<BaseConsumer<PlainContext>>(&config)?;
    let backlog: Arc<Mutex<VecDeque<Polled>>> = Arc::default();
    let counters = Arc::new(Counters::default());
    let stop = Arc::new(AtomicBool::new(false));
    let lag = spawn_lag_reader(consumer.clone(), stop.clone());
    let cap = plan.queue_capacity().unwrap_or(10_000).max(2);

    let poller = {
        let (consumer, backlog, counters, stop) = (
            consumer.clone(),
            backlog.clone(),
            counters.clone(),
            stop.clone(),
        );
        std::thread::Builder::new()
            .name("bare-poll".into())
            .spawn(move || poll_thread(consumer, backlog, counters, stop, (pause, cap)))
            .context("cannot start the poll thread")?
    };

    let round_size = plan.batch_size() * plan.sink_workers();
    let writer = {
        let (consumer, backlog, counters, stop) = (
            consumer.clone(),
            backlog.clone(),
            counters.clone(),
            stop.clone(),
        );
        let batch_size = plan.batch_size();
        let concurrency = plan.sink_workers();
        tokio::spawn(async move {
            loop {
                let round: Vec<Polled> = {
                    let mut b = backlog.lock().unwrap_or_else(|p| p.into_inner());
                    let n = b.len().min(round_size);
                    b.drain(..n).collect()
                };
                if round.is_empty() {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    continue;
                }
                let (next, n) = write_round(&ctx, &poison, round, batch_size, concurrency).await;
                counters.acked.fetch_add(n, Ordering::Relaxed);
                counters.commit(&consumer, &next).await;
            }
        })
    };

    let stats: StatsFn = {
        let (consumer, counters, backlog) = (consumer.clone(), counters.clone(), backlog.clone());
        Box::new(move || KafkaStats {
            // In flight: what the backlog holds, polled and not yet written.
            in_flight: backlog.lock().map_or(0, |b| b.len() as u64),
            ..counters.stats(consumer.context(), &lag)
        })
    };
    let shutdown: Shutdown = Box::pin(async move {
        // Stop polling; the writer finishes the backlog and commits it.
        stop.store(true, Ordering::Relaxed);
        let _ = tokio::task::spawn_blocking(move || poller.join()).await;
        let _ = writer.await;
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
