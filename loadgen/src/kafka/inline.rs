//! `--poll-loop inline`: the loop most consumers start with, and experiment 6's villain. Poll
//! up to `--poll-batch` records, write them all, commit, poll again. When writing a batch takes
//! longer than `max.poll.interval.ms`, the client leaves the group (an eviction), its
//! partitions move, and what it writes after that is replayed by their new owner.
//!
//! Also the pieces the bare control ([`super::bare`]) shares with it: the rebalance
//! bookkeeping, the lag reader, and a round of writes.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use futures::StreamExt;
use rdkafka::ClientContext;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::message::Message;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use reactive::kafka::{KafkaConfig, KafkaStats, PartitionLag};
use sinkd::wire::Event;
use tokio::time::Instant;

use super::poison::PoisonLog;
use super::poll_loop::{Shutdown, StatsFn};
use crate::plan::Plan;
use crate::sink::SinkWriter;

/// Rebalance bookkeeping for a consumer without the reactive source.
#[derive(Default)]
pub struct InlineContext {
    assigned: Mutex<Vec<(String, i32)>>,
    pub rebalances: AtomicU64,
}

impl InlineContext {
    /// The partitions assigned now, in order.
    pub fn assigned(&self) -> Vec<(String, i32)> {
        self.assigned
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

impl ClientContext for InlineContext {}

impl ConsumerContext for InlineContext {
    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let mut assigned = self.assigned.lock().unwrap_or_else(|p| p.into_inner());
        match rebalance {
            Rebalance::Assign(tpl) => {
                self.rebalances.fetch_add(1, Ordering::Relaxed);
                for e in tpl.elements() {
                    let entry = (e.topic().to_string(), e.partition());
                    if !assigned.contains(&entry) {
                        assigned.push(entry);
                    }
                }
                assigned.sort();
            }
            Rebalance::Revoke(tpl) => {
                self.rebalances.fetch_add(1, Ordering::Relaxed);
                assigned.retain(|(t, p)| {
                    !tpl.elements()
                        .iter()
                        .any(|e| e.topic() == t && e.partition() == *p)
                });
            }
            Rebalance::Error(_) => {}
        }
    }
}

/// Reads the lag of the consumer's assigned partitions from the broker once a second, on a
/// thread of its own, until `stop`.
pub fn spawn_lag_reader<C>(consumer: Arc<C>, stop: Arc<AtomicBool>) -> Arc<Mutex<Vec<PartitionLag>>>
where
    C: Consumer<InlineContext> + Send + Sync + 'static,
{
    let lag = Arc::new(Mutex::new(Vec::new()));
    let out = lag.clone();
    std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            let assigned = consumer.context().assigned();
            let mut tpl = TopicPartitionList::with_capacity(assigned.len());
            for (t, p) in &assigned {
                tpl.add_partition(t, *p);
            }
            let read = if assigned.is_empty() {
                Ok(Vec::new())
            } else {
                reactive::kafka::read_lag(&*consumer, tpl, Duration::from_secs(5))
            };
            if let Ok(l) = read {
                *out.lock().unwrap_or_else(|p| p.into_inner()) = l;
            }
            std::thread::sleep(Duration::from_secs(1));
        }
    });
    lag
}

/// A polled record: topic, partition, offset, and the event or poison.
pub type Polled = (String, i32, i64, Result<Event, (String, String)>);

/// Writes a round of polled records: poison to its file, events to the sink in batches of
/// `batch_size`, `concurrency` at a time. Returns the offset to commit per partition (after
/// the highest written) and how many events were written.
pub async fn write_round(
    ctx: &SinkWriter,
    poison: &PoisonLog,
    records: Vec<Polled>,
    batch_size: usize,
    concurrency: usize,
) -> (Vec<((String, i32), i64)>, u64) {
    let mut next: Vec<((String, i32), i64)> = Vec::new();
    let mut events = Vec::with_capacity(records.len());
    for (topic, partition, offset, event) in records {
        match next
            .iter_mut()
            .find(|(tp, _)| tp.0 == topic && tp.1 == partition)
        {
            Some((_, o)) => *o = (*o).max(offset + 1),
            None => next.push(((topic.clone(), partition), offset + 1)),
        }
        match event {
            Ok(e) => events.push(e),
            Err(bad) => poison.record(&topic, partition, offset, bad),
        }
    }
    let n = events.len() as u64;
    let chunks: Vec<Vec<Event>> = events.chunks(batch_size).map(<[Event]>::to_vec).collect();
    futures::stream::iter(chunks)
        .for_each_concurrent(concurrency, |chunk| ctx.write(chunk))
        .await;
    (next, n)
}

/// The offsets of `next` as a list to commit.
pub fn commit_list(next: &[((String, i32), i64)]) -> TopicPartitionList {
    let mut tpl = TopicPartitionList::with_capacity(next.len());
    for ((t, p), o) in next {
        let _ = tpl.add_partition_offset(t, *p, Offset::Offset(*o));
    }
    tpl
}

#[derive(Default)]
struct InlineCounters {
    delivered: AtomicU64,
    acked: AtomicU64,
    evictions: AtomicU64,
    commits: AtomicU64,
    commit_failures: AtomicU64,
    in_flight: AtomicU64,
}

/// Starts the inline loop; returns its stats and its graceful stop.
pub fn inline(
    config: KafkaConfig,
    plan: &Plan,
    poll_batch: usize,
    ctx: Arc<SinkWriter>,
    poison: Arc<PoisonLog>,
) -> anyhow::Result<(StatsFn, Shutdown)> {
    let consumer: StreamConsumer<InlineContext> = config
        .client_config()
        .create_with_context(InlineContext::default())
        .context("cannot create the Kafka consumer")?;
    let topics: Vec<&str> = config.topics.iter().map(String::as_str).collect();
    consumer
        .subscribe(&topics)
        .context("cannot subscribe to the topic")?;
    let consumer = Arc::new(consumer);
    let counters = Arc::new(InlineCounters::default());
    let stop = Arc::new(AtomicBool::new(false));
    let lag = spawn_lag_reader(consumer.clone(), stop.clone());

    let batch_size = plan.batch_size();
    let concurrency = plan.sink_workers();
    let task = {
        let (consumer, counters, stop) = (consumer.clone(), counters.clone(), stop.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                // Poll up to --poll-batch records (waiting at most 200 ms for them)...
                let mut records: Vec<Polled> = Vec::new();
                let deadline = Instant::now() + Duration::from_millis(200);
                while records.len() < poll_batch {
                    match tokio::time::timeout_at(deadline, consumer.recv()).await {
                        Ok(Ok(m)) => records.push((
                            m.topic().to_string(),
                            m.partition(),
                            m.offset(),
                            super::decode_or_poison(m.payload()),
                        )),
                        Ok(Err(e)) => {
                            if reactive::kafka::is_eviction(&e) {
                                counters.evictions.fetch_add(1, Ordering::Relaxed);
                                tracing::warn!(
                                    "evicted: max.poll.interval.ms passed without a poll"
                                );
                            }
                            break;
                        }
                        Err(_) => break,
                    }
                }
                if records.is_empty() {
                    continue;
                }
                counters
                    .delivered
                    .fetch_add(records.len() as u64, Ordering::Relaxed);
                counters
                    .in_flight
                    .store(records.len() as u64, Ordering::Relaxed);
                // ... write them all (no poll meanwhile: this is the anti-pattern) ...
                let (next, n) = write_round(&ctx, &poison, records, batch_size, concurrency).await;
                counters.acked.fetch_add(n, Ordering::Relaxed);
                counters.in_flight.store(0, Ordering::Relaxed);
                // ... then commit (off the runtime's threads: a synchronous commit blocks).
                let (c, tpl) = (consumer.clone(), commit_list(&next));
                match tokio::task::spawn_blocking(move || c.commit(&tpl, CommitMode::Sync)).await {
                    Ok(Ok(())) => counters.commits.fetch_add(1, Ordering::Relaxed),
                    Ok(Err(e)) => {
                        tracing::warn!(error = %e, "commit failed");
                        counters.commit_failures.fetch_add(1, Ordering::Relaxed)
                    }
                    Err(_) => counters.commit_failures.fetch_add(1, Ordering::Relaxed),
                };
            }
        })
    };

    let stats: StatsFn = {
        let (consumer, counters) = (consumer.clone(), counters.clone());
        Box::new(move || {
            let c = consumer.context();
            KafkaStats {
                assigned: c.assigned(),
                rebalances: c.rebalances.load(Ordering::Relaxed),
                evictions: counters.evictions.load(Ordering::Relaxed),
                delivered: counters.delivered.load(Ordering::Relaxed),
                acked: counters.acked.load(Ordering::Relaxed),
                commits: counters.commits.load(Ordering::Relaxed),
                commit_failures: counters.commit_failures.load(Ordering::Relaxed),
                in_flight: counters.in_flight.load(Ordering::Relaxed),
                lag: lag.lock().unwrap_or_else(|p| p.into_inner()).clone(),
                ..KafkaStats::default()
            }
        })
    };
    let shutdown = Box::pin(async move {
        stop.store(true, Ordering::Relaxed);
        let _ = task.await;
        let c = consumer.clone();
        let _ = tokio::task::spawn_blocking(move || c.unsubscribe()).await;
    });
    Ok((stats, shutdown))
}
