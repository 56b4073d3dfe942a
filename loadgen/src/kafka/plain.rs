//! The pieces of a plain rdkafka consumer (no reactive source) that the inline loop
//! ([`super::inline`]) and the bare control ([`super::bare`]) share: creating and subscribing
//! it, the rebalance bookkeeping, the lag reader, a round of writes and its commit, and the
//! counters they report.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use futures::StreamExt;
use rdkafka::ClientContext;
use rdkafka::config::FromClientConfigAndContext;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::message::Message;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use reactive::kafka::{KafkaConfig, KafkaStats, PartitionLag};
use sinkd::wire::Event;

use super::poison::PoisonLog;
use crate::sink::SinkWriter;

/// Creates a consumer of `config` and subscribes it to its topics.
pub fn subscribed<C>(config: &KafkaConfig) -> anyhow::Result<Arc<C>>
where
    C: Consumer<PlainContext> + FromClientConfigAndContext<PlainContext>,
{
    let consumer: C = config
        .client_config()
        .create_with_context(PlainContext::default())
        .context("cannot create the Kafka consumer")?;
    let topics: Vec<&str> = config.topics.iter().map(String::as_str).collect();
    consumer
        .subscribe(&topics)
        .context("cannot subscribe to the topic")?;
    Ok(Arc::new(consumer))
}

/// Rebalance bookkeeping for a consumer without the reactive source.
#[derive(Default)]
pub struct PlainContext {
    assigned: Mutex<Vec<(String, i32)>>,
    pub rebalances: AtomicU64,
}

impl PlainContext {
    /// The partitions assigned now, in order.
    pub fn assigned(&self) -> Vec<(String, i32)> {
        self.assigned
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

impl ClientContext for PlainContext {}

impl ConsumerContext for PlainContext {
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
    C: Consumer<PlainContext> + Send + Sync + 'static,
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

/// A polled message as a [`Polled`] record.
pub fn polled<M: Message>(m: &M) -> Polled {
    (
        m.topic().to_string(),
        m.partition(),
        m.offset(),
        super::decode_or_poison(m.payload()),
    )
}

/// What a plain consumer counts; [`Counters::stats`] reports it as the source's stats.
#[derive(Default)]
pub struct Counters {
    pub delivered: AtomicU64,
    pub acked: AtomicU64,
    pub evictions: AtomicU64,
    pub commits: AtomicU64,
    pub commit_failures: AtomicU64,
    pub pauses: AtomicU64,
    pub in_flight: AtomicU64,
}

impl Counters {
    /// The counters, the assignment and the lag, as [`KafkaStats`].
    pub fn stats(&self, context: &PlainContext, lag: &Mutex<Vec<PartitionLag>>) -> KafkaStats {
        KafkaStats {
            assigned: context.assigned(),
            rebalances: context.rebalances.load(Ordering::Relaxed),
            evictions: self.evictions.load(Ordering::Relaxed),
            delivered: self.delivered.load(Ordering::Relaxed),
            acked: self.acked.load(Ordering::Relaxed),
            commits: self.commits.load(Ordering::Relaxed),
            commit_failures: self.commit_failures.load(Ordering::Relaxed),
            pauses: self.pauses.load(Ordering::Relaxed),
            in_flight: self.in_flight.load(Ordering::Relaxed),
            lag: lag.lock().unwrap_or_else(|p| p.into_inner()).clone(),
            ..KafkaStats::default()
        }
    }

    /// Commits `next` synchronously, off the runtime's threads (a synchronous commit blocks),
    /// and counts the commit or its failure.
    pub async fn commit<C>(&self, consumer: &Arc<C>, next: &[((String, i32), i64)])
    where
        C: Consumer<PlainContext> + Send + Sync + 'static,
    {
        let (c, tpl) = (consumer.clone(), commit_list(next));
        match tokio::task::spawn_blocking(move || c.commit(&tpl, CommitMode::Sync)).await {
            Ok(Ok(())) => self.commits.fetch_add(1, Ordering::Relaxed),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "commit failed");
                self.commit_failures.fetch_add(1, Ordering::Relaxed)
            }
            Err(_) => self.commit_failures.fetch_add(1, Ordering::Relaxed),
        };
    }
}
