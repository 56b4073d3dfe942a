//! `loadgen process --source kafka`: a consumer-group member that writes what it reads to
//! sinkd, and commits only what sinkd acknowledged.
//!
//! Two poll loops:
//! - `decoupled` (the default): the reactive [`KafkaSource`] -> decode -> the queue of `--queue`
//!   and `--policy` -> sink workers -> sinkd, then `Ack`. Demand reaches Kafka as pause/resume,
//!   so the backlog is Kafka lag, and the poll thread never waits for the sink.
//! - `inline`: the loop most consumers start with, and experiment 6's villain: poll up to
//!   `--poll-batch` records, write them all, commit, poll again. When writing a batch takes
//!   longer than `max.poll.interval.ms`, the client leaves the group (an eviction), its
//!   partitions move, and what it writes after that is replayed by their new owner.

use std::future::Future;
use std::pin::Pin;
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
use reactive::kafka::{Ack, KafkaConfig, KafkaHandle, KafkaRecord, KafkaSource, KafkaStats};
use reactive::queue::QueueStats;
use reactive::sink::{DeadLetters, workers};
use reactive::{Publisher, PublisherExt};
use sinkd::wire::Event;
use tokio::time::Instant;

use crate::cli::{Policy, PollLoop, ProcessArgs};
use crate::pipeline::{Ctx, Sample, rss_bytes, start_sink};
use crate::plan::{Plan, parse_duration};
use crate::progress::Progress;

/// A record that is not an event, as written to `poison.jsonl`.
#[derive(Debug, serde::Serialize)]
struct Poison {
    topic: String,
    partition: i32,
    offset: i64,
    value: String,
}

/// One record on its way to the sink.
struct Job {
    event: Result<Event, (String, String)>,
    ack: Ack,
}

impl Job {
    fn new(r: KafkaRecord) -> Job {
        Job {
            event: super::decode_or_poison(r.payload.as_deref()),
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

/// What the processor shares between its loop, its samples and its metrics.
pub struct Live {
    pub group: String,
    pub pressure_lag: u64,
    pub sample: Mutex<Sample>,
    pub kafka: Mutex<KafkaStats>,
    pub poison: AtomicU64,
}

impl Live {
    /// `/metrics`: the pipeline's gauges and the consumer's.
    pub fn exposition(&self) -> String {
        let sample = self
            .sample
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let kafka = self.kafka.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let mut text = crate::process::exposition(&sample);
        text.push_str(&super::exposition(&kafka, &self.group));
        text.push_str(&format!(
            "# HELP loadgen_poison_records_total Records that were not events, dead-lettered\n\
             # TYPE loadgen_poison_records_total counter\nloadgen_poison_records_total {}\n",
            self.poison.load(Ordering::Relaxed)
        ));
        text
    }

    /// `/pressure`: lag over `--pressure-lag`, or the queue's fill if higher.
    pub fn pressure(&self, queue_fill: f64) -> f64 {
        let lag = self
            .kafka
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .total_lag()
            .max(0) as f64;
        (lag / self.pressure_lag.max(1) as f64).max(queue_fill)
    }
}

/// The processor's own summary (`--report`).
#[derive(Debug, serde::Serialize)]
pub struct ProcessReport {
    pub poll_loop: PollLoop,
    pub consumed: u64,
    pub delivered: u64,
    pub dead_lettered: u64,
    pub poison: u64,
    pub dropped: u64,
    pub evictions: u64,
    pub rebalances: u64,
    pub commits: u64,
    pub commit_failures: u64,
    pub lag_max: i64,
    pub duration_s: f64,
    pub latency_ms: crate::report::Latency,
}

/// Why the processor stops.
pub struct Stopping {
    pub idle: Option<Duration>,
    pub after: Option<Duration>,
}

fn flag_duration(flag: &str, text: &str) -> anyhow::Result<Duration> {
    parse_duration(text).with_context(|| format!("invalid value '{text}' for '{flag}'"))
}

/// The consumer settings from the flags.
pub fn consumer_config(args: &ProcessArgs, plan: &Plan) -> anyhow::Result<KafkaConfig> {
    let k = &args.kafka;
    let bootstrap = k
        .bootstrap_servers
        .as_deref()
        .context("'--source kafka' needs '--bootstrap-servers HOST:PORT'")?;
    let mut config = KafkaConfig::new(bootstrap, &k.group, [k.topic.clone()]);
    config.max_poll_interval = flag_duration("--max-poll-interval", &k.max_poll_interval)?;
    anyhow::ensure!(
        config.max_poll_interval >= Duration::from_millis(1),
        "invalid value '{}' for '--max-poll-interval': at least 1ms",
        k.max_poll_interval
    );
    config.session_timeout =
        flag_duration("--session-timeout", &k.session_timeout)?.min(config.max_poll_interval);
    config.commit_interval = flag_duration("--commit-interval", &k.commit_interval)?;
    config.settle_on_drop = plan.policy == Policy::Shed;
    for option in &k.kafka_options {
        let Some((key, value)) = option.split_once('=') else {
            anyhow::bail!("invalid value '{option}' for '--kafka-option': expected KEY=VALUE");
        };
        config = config.set(key.trim(), value.trim());
    }
    Ok(config)
}

/// Writes one batch: poison to its file, events to the sink; then acknowledges them all. A
/// batch that fails every retry is dead-lettered, which also counts as handled.
async fn write_jobs(ctx: &Ctx, poison: &DeadLetters<Poison>, live: &Live, batch: Vec<Job>) {
    let mut events = Vec::with_capacity(batch.len());
    let mut acks = Vec::with_capacity(batch.len());
    for job in batch {
        match job.event {
            Ok(e) => events.push(e),
            Err((reason, value)) => {
                let (topic, partition, offset) = job.ack.position();
                let _ = poison.record(
                    &Poison {
                        topic: topic.to_string(),
                        partition,
                        offset,
                        value,
                    },
                    &reason,
                    1,
                );
                live.poison.fetch_add(1, Ordering::Relaxed);
            }
        }
        acks.push(job.ack);
    }
    if !events.is_empty() {
        ctx.write(events).await;
    }
    Ack::ack_all(acks);
}

type Shutdown = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Runs the processor until a stop condition or a signal; returns its report.
pub async fn run(
    args: &ProcessArgs,
    plan: &Plan,
    live: Arc<Live>,
    stopping: Stopping,
    progress: &Progress,
) -> anyhow::Result<ProcessReport> {
    let config = consumer_config(args, plan)?;
    let (embedded, client, _) = start_sink(plan).await?;
    let out_dir = plan.out.clone().unwrap_or_else(std::env::temp_dir);
    let ctx = Arc::new(Ctx::new(plan, client, &out_dir)?);
    let poison_path = out_dir.join("poison.jsonl");
    let _ = std::fs::remove_file(&poison_path);
    let poison = Arc::new(
        DeadLetters::open(&poison_path, |p: &Poison| {
            serde_json::to_string(p).unwrap_or_else(|_| "null".into())
        })
        .with_context(|| format!("cannot open {}", poison_path.display()))?,
    );

    let started = Instant::now();
    let (stats, queue, shutdown): (StatsFn, Option<_>, Shutdown) = match args.kafka.poll_loop {
        PollLoop::Decoupled => {
            let (handle, queue, shutdown) =
                decoupled(config, plan, ctx.clone(), poison.clone(), live.clone());
            let h = handle.clone();
            (Box::new(move || h.stats()), Some(queue), shutdown)
        }
        PollLoop::Inline => {
            let (stats, shutdown) = inline(
                config,
                plan,
                args.kafka.poll_batch.max(1),
                ctx.clone(),
                poison.clone(),
                live.clone(),
            )?;
            (stats, None, shutdown)
        }
    };

    // Sample until told to stop.
    let mut tick = tokio::time::interval(plan.sample);
    tick.tick().await;
    let mut last = (Instant::now(), 0u64, 0u64, 0u64);
    let mut last_record = Instant::now();
    let mut lag_max = 0i64;
    let mut terminate = terminate_signal();
    // Created once, so a Ctrl-C between two samples is not missed.
    let mut interrupt = std::pin::pin!(tokio::signal::ctrl_c());
    loop {
        let stop = tokio::select! {
            _ = tick.tick() => false,
            _ = &mut interrupt => true,
            _ = &mut terminate => true,
        };
        let k = stats();
        let now = Instant::now();
        let dt = (now - last.0).as_secs_f64().max(1e-9);
        let delivered = ctx.counters.delivered.load(Ordering::Relaxed);
        let writes = ctx.counters.writes.load(Ordering::Relaxed);
        if k.delivered > last.1 {
            last_record = now;
        }
        let q = queue.as_ref().map(|q| q.snapshot());
        let lag = k.total_lag();
        lag_max = lag_max.max(lag);
        let sample = Sample {
            t: (now - started).as_secs_f64(),
            target_rate: 0.0,
            generated_rate: (k.delivered - last.1) as f64 / dt,
            delivered_rate: (delivered - last.2) as f64 / dt,
            writes_rate: (writes - last.3) as f64 / dt,
            queue_depth: q.as_ref().map_or(k.in_flight, |q| q.depth),
            queue_bytes: q.as_ref().map_or(0, |q| q.depth_bytes),
            source_backlog: lag.max(0) as u64,
            lag: lag.max(0) as u64,
            rss_bytes: rss_bytes(),
            dropped: q.as_ref().map_or(0, |q| q.dropped()),
            p99_ms: ctx.take_window_p99(),
            signal_rate: 0.0,
        };
        last = (now, k.delivered, delivered, writes);
        progress.update(&sample, stopping.after.unwrap_or(Duration::from_secs(3600)));
        *live.sample.lock().unwrap_or_else(|p| p.into_inner()) = sample;
        *live.kafka.lock().unwrap_or_else(|p| p.into_inner()) = k;
        let idle = stopping
            .idle
            .is_some_and(|idle| now - last_record >= idle && now - started >= idle);
        let over = stopping.after.is_some_and(|after| now - started >= after);
        if stop || idle || over {
            break;
        }
    }
    progress.note("stopping: finishing what is in flight, committing, leaving the group");
    let _ = tokio::time::timeout(plan.drain_timeout + Duration::from_secs(10), shutdown).await;
    let k = stats();
    if let Some(running) = embedded {
        running.shutdown().await;
    }
    Ok(ProcessReport {
        poll_loop: args.kafka.poll_loop,
        consumed: k.delivered,
        delivered: ctx.counters.delivered.load(Ordering::Relaxed),
        dead_lettered: ctx.counters.dead_lettered.load(Ordering::Relaxed),
        poison: live.poison.load(Ordering::Relaxed),
        dropped: queue.as_ref().map_or(0, |q| q.snapshot().dropped()),
        evictions: k.evictions,
        rebalances: k.rebalances,
        commits: k.commits,
        commit_failures: k.commit_failures,
        lag_max,
        duration_s: started.elapsed().as_secs_f64(),
        latency_ms: crate::report::Latency::from_histogram(
            &ctx.latency.lock().unwrap_or_else(|p| p.into_inner()),
        ),
    })
}

/// Resolves on SIGTERM (so `kill` stops the processor as cleanly as Ctrl-C).
fn terminate_signal() -> Pin<Box<dyn Future<Output = ()> + Send>> {
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => Box::pin(async move {
                s.recv().await;
            }),
            Err(_) => Box::pin(std::future::pending()),
        }
    }
    #[cfg(not(unix))]
    {
        Box::pin(std::future::pending())
    }
}

fn decoupled(
    config: KafkaConfig,
    plan: &Plan,
    ctx: Arc<Ctx>,
    poison: Arc<DeadLetters<Poison>>,
    live: Arc<Live>,
) -> (KafkaHandle, Arc<QueueStats>, Shutdown) {
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
            let (ctx, poison, live) = (ctx.clone(), poison.clone(), live.clone());
            async move { write_jobs(&ctx, &poison, &live, batch).await }
        },
    );
    let connection = tokio::spawn(queue.connect(subscriber));
    let driver = tokio::spawn(pool);
    let h = handle.clone();
    let shutdown = Box::pin(async move {
        // Stop fetching; what was handed over drains through the sink and is acknowledged.
        h.drain();
        let _ = driver.await;
        connection.abort();
        h.close().await;
    });
    (handle, queue_stats, shutdown)
}

/// Rebalance bookkeeping for the inline loop's consumer.
#[derive(Default)]
struct InlineContext {
    assigned: Mutex<Vec<(String, i32)>>,
    rebalances: AtomicU64,
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

#[derive(Default)]
struct InlineCounters {
    delivered: AtomicU64,
    acked: AtomicU64,
    evictions: AtomicU64,
    commits: AtomicU64,
    commit_failures: AtomicU64,
    in_flight: AtomicU64,
}

/// A record as the inline loop polled it: topic, partition, offset, and the event or poison.
type Polled = (String, i32, i64, Result<Event, (String, String)>);

type StatsFn = Box<dyn Fn() -> KafkaStats + Send + Sync>;

fn inline(
    config: KafkaConfig,
    plan: &Plan,
    poll_batch: usize,
    ctx: Arc<Ctx>,
    poison: Arc<DeadLetters<Poison>>,
    live: Arc<Live>,
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
    let lag = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));

    // Lag, read from the broker on a blocking thread now and then.
    {
        let (consumer, lag, stop) = (consumer.clone(), lag.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let assigned = consumer
                    .context()
                    .assigned
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .clone();
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
                    *lag.lock().unwrap_or_else(|p| p.into_inner()) = l;
                }
                std::thread::sleep(Duration::from_secs(1));
            }
        });
    }

    let batch_size = plan.batch_size.max(1);
    let concurrency = plan.sink_workers.max(1);
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
                        Err((reason, value)) => {
                            let _ = poison.record(
                                &Poison {
                                    topic,
                                    partition,
                                    offset,
                                    value,
                                },
                                &reason,
                                1,
                            );
                            live.poison.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                let n = events.len() as u64;
                let chunks: Vec<Vec<Event>> =
                    events.chunks(batch_size).map(<[Event]>::to_vec).collect();
                futures::stream::iter(chunks)
                    .for_each_concurrent(concurrency, |chunk| {
                        let ctx = ctx.clone();
                        async move { ctx.write(chunk).await }
                    })
                    .await;
                counters.acked.fetch_add(n, Ordering::Relaxed);
                counters.in_flight.store(0, Ordering::Relaxed);
                // ... then commit.
                let mut tpl = TopicPartitionList::with_capacity(next.len());
                for ((t, p), o) in &next {
                    let _ = tpl.add_partition_offset(t, *p, Offset::Offset(*o));
                }
                match consumer.commit(&tpl, CommitMode::Sync) {
                    Ok(()) => counters.commits.fetch_add(1, Ordering::Relaxed),
                    Err(e) => {
                        tracing::warn!(error = %e, "commit failed");
                        counters.commit_failures.fetch_add(1, Ordering::Relaxed)
                    }
                };
            }
        })
    };

    let stats: StatsFn = {
        let (consumer, counters, lag) = (consumer.clone(), counters.clone(), lag.clone());
        Box::new(move || {
            let c = consumer.context();
            KafkaStats {
                assigned: c.assigned.lock().unwrap_or_else(|p| p.into_inner()).clone(),
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
