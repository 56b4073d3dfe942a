//! `--poll-loop decoupled` (the default): the reactive [`KafkaSource`] -> decode -> the queue of
//! `--queue` and `--policy` -> sink workers -> sinkd, then `Ack`. Demand reaches Kafka as
//! pause and resume, so the backlog is Kafka lag, and the poll thread never waits for the sink.
//! A revoked partition's records still waiting in the queue or at a worker are purged: their
//! new owner reads them from the commit, and only the writes under way can be duplicated.

use std::sync::Arc;

use reactive::kafka::{Ack, KafkaConfig, KafkaRecord, KafkaSource};
use reactive::sink::workers;
use reactive::{Publisher, PublisherExt};
use sinkd::wire::Event;

use super::poison::PoisonLog;
use super::poll_loop::{Failure, Running};
use crate::plan::Plan;
use crate::sink::SinkWriter;

/// One record on its way to the sink.
struct Job {
    event: Result<Event, (String, String)>,
    ack: Ack,
}

impl Job {
    fn new(r: KafkaRecord) -> Job {
        Job {
            event: super::decode_or_poison(r.payload()),
            ack: r.ack,
        }
    }

    fn key(&self) -> u64 {
        match &self.event {
            Ok(e) => e.key,
            Err(_) => self.ack.position().1 as u64,
        }
    }
}

/// Writes one batch: poison to its file, events to the sink; then acknowledges them all. A
/// batch that fails every retry is dead-lettered, which also counts as handled.
async fn write_jobs(ctx: &SinkWriter, poison: &PoisonLog, batch: Vec<Job>) {
    let mut events = Vec::with_capacity(batch.len());
    let mut acks = Vec::with_capacity(batch.len());
    for job in batch {
        match job.event {
            Ok(e) => events.push(e),
            Err(bad) => {
                let (topic, partition, offset) = job.ack.position();
                poison.record(topic, partition, offset, bad);
            }
        }
        acks.push(job.ack);
    }
    if !events.is_empty() {
        ctx.write(events).await;
    }
    Ack::ack_all(acks);
}

/// Starts the source, its queue and the sink workers.
pub fn decoupled(
    config: KafkaConfig,
    plan: &Plan,
    ctx: Arc<SinkWriter>,
    poison: Arc<PoisonLog>,
) -> Running {
    let source = KafkaSource::new(config);
    let handle = source.handle();
    let queue_config = plan
        .queue_config()
        .weigh(|j: &Job| match &j.event {
            Ok(e) => (std::mem::size_of::<Job>() + e.payload.capacity()) as u64,
            Err(_) => std::mem::size_of::<Job>() as u64,
        })
        .priority(|j: &Job| j.event.as_ref().map_or(u8::MAX, |e| e.priority));
    let queue = source.map(Job::new).queue(queue_config);
    let queue_stats = queue.stats();
    let (subscriber, pool) = workers(
        plan.workers_config(),
        Job::key,
        move |_, batch: Vec<Job>| {
            let (ctx, poison) = (ctx.clone(), poison.clone());
            async move { write_jobs(&ctx, &poison, batch).await }
        },
    );
    // A revoked partition's records still waiting here are not written: the new owner reads
    // them again from the commit. Only the writes under way can be duplicated.
    let (queue_purger, pool_purger) = (queue.purger(), pool.purger());
    handle.on_revoke(move |revoked| {
        let revoked: Arc<[(Arc<str>, i32)]> = revoked.into();
        let in_queue = revoked.clone();
        queue_purger.purge(move |job: &Job| job.ack.is_in(&in_queue));
        pool_purger.purge(move |job: &Job| job.ack.is_in(&revoked));
    });
    let connection = tokio::spawn(queue.connect(subscriber));
    // The pipeline ends early only when the source failed (a consumer that cannot be created,
    // subscribed, or that the broker cannot serve): say why, so the processor stops with it.
    let failure = Failure::default();
    let driver = {
        let failure = failure.clone();
        tokio::spawn(async move {
            if let Err(e) = pool.await {
                tracing::error!(error = %e, "the Kafka source failed");
                let _ = failure.set(e.to_string());
            }
        })
    };
    let h = handle.clone();
    let drain_timeout = plan.drain_timeout();
    let shutdown = Box::pin(async move {
        // Stop fetching; what was handed over drains through the sink and is acknowledged,
        // for up to the drain timeout. Then the member commits what was acknowledged and
        // leaves, drained or not: what is still queued was never acknowledged, so the next
        // member reads it again, and only writes finishing after the commit can be replayed.
        h.drain();
        let _ = tokio::time::timeout(drain_timeout, driver).await;
        // Close before the queue is dropped: leaving purges what it holds unacknowledged (so a
        // shedding pipeline does not settle, and commit past, records it never wrote), and
        // acknowledgements after the close are ignored.
        h.close().await;
        connection.abort();
    });
    Running {
        stats: Box::new(move || handle.stats()),
        queue: Some(queue_stats),
        shutdown,
        failure,
    }
}
