//! `loadgen process --source kafka`: a consumer-group member that writes what it reads to
//! sinkd, and commits only what sinkd acknowledged. The poll loops live in
//! [`super::decoupled`] (the reactive source, the default), [`super::inline`] (experiment 6's
//! anti-pattern) and [`super::bare`] (the control); this is the service around them: samples,
//! metrics, stop conditions and the report.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use reactive::kafka::{KafkaConfig, KafkaStats};
use tokio::time::Instant;

use super::poison::PoisonLog;
use super::poll_loop::Running;
use crate::cli::{PollLoop, ProcessArgs};
use crate::plan::Plan;
use crate::progress::Progress;
use crate::sink::{SinkWriter, start_sink};
use crate::telemetry::{Sample, Sampler, Totals, rss_bytes};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;

/// What the processor shares between its loop, its samples and its metrics.
pub struct Live {
    pub group: String,
    pub pressure_lag: u64,
    pub sample: Mutex<Sample>,
    pub kafka: Mutex<KafkaStats>,
    pub poison: Arc<AtomicU64>,
    /// The queue's fill at the last sample (0 without a queue).
    pub queue_fill: Mutex<f64>,
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
        let mut registry = Registry::default();
        crate::telemetry::register(&mut registry, &sample);
        super::register(&mut registry, &kafka, &self.group);
        let poison: Counter = Counter::default();
        poison.inc_by(self.poison.load(Ordering::Relaxed));
        registry.register(
            "loadgen_poison_records",
            "Records that were not events, dead-lettered",
            poison,
        );
        crate::telemetry::encode(&registry)
    }

    /// `/pressure`: lag over `--pressure-lag`, or the queue's fill if higher.
    pub fn pressure(&self) -> f64 {
        let queue_fill = *self.queue_fill.lock().unwrap_or_else(|p| p.into_inner());
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
    /// Records dropped by the queue's policy (shed), and committed past.
    pub dropped: u64,
    /// Records an unbounded queue held when its safety cap stopped the consumer: not
    /// acknowledged, so still in Kafka past the commit.
    pub discarded_at_cap: u64,
    pub evictions: u64,
    pub rebalances: u64,
    pub commits: u64,
    pub commit_failures: u64,
    /// Records purged before they reached the sink when their partition was revoked.
    pub revoked_unsent: u64,
    /// Records being written when their partition was revoked (what rebalances may duplicate).
    pub revoked_in_flight: u64,
    /// Stalled partitions detected, and recovery steps taken.
    pub stalls: u64,
    pub stall_recoveries: u64,
    /// Poison records that could not be written to poison.jsonl.
    pub poison_write_errors: u64,
    pub lag_max: i64,
    pub duration_s: f64,
    pub latency_ms: crate::report::Latency,
    /// Why the consumer stopped before it was asked to (the source failed, or an unbounded
    /// queue reached its safety cap); `None` after a stop condition or a signal.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure: Option<String>,
}

/// Why the processor stops.
pub struct Stopping {
    pub idle: Option<Duration>,
    pub after: Option<Duration>,
}

/// The consumer settings from the flags.
pub fn consumer_config(args: &ProcessArgs, plan: &Plan) -> anyhow::Result<KafkaConfig> {
    let k = &args.kafka;
    let bootstrap = k
        .bootstrap_servers
        .as_deref()
        .context("'--source kafka' needs '--bootstrap-servers HOST:PORT'")?;
    let mut config = KafkaConfig::new(bootstrap, &k.group, [k.topic.clone()]);
    anyhow::ensure!(
        k.max_poll_interval >= Duration::from_millis(1),
        "invalid value '{:?}' for '--max-poll-interval': at least 1ms",
        k.max_poll_interval
    );
    config.max_poll_interval = k.max_poll_interval;
    config.session_timeout = k.session_timeout.min(k.max_poll_interval);
    config.commit_interval = k.commit_interval;
    config.stall_after = k.stall_after;
    config.assignment_strategy = k.assignment_strategy.clone();
    config.group_protocol = k.group_protocol.as_str().to_string();
    config.settle_on_drop = plan.sheds();
    for (key, value) in &k.kafka_options {
        config = config.set(key, value);
    }
    Ok(config)
}

/// Starts the poll loop `--poll-loop` names.
fn start_loop(
    args: &ProcessArgs,
    config: KafkaConfig,
    plan: &Plan,
    ctx: &Arc<SinkWriter>,
    poison: &Arc<PoisonLog>,
) -> anyhow::Result<Running> {
    let (ctx, poison) = (ctx.clone(), poison.clone());
    Ok(match args.kafka.poll_loop {
        PollLoop::Decoupled => super::decoupled::decoupled(config, plan, ctx, poison),
        PollLoop::Inline => {
            let batch = args.kafka.poll_batch.max(1);
            super::inline::inline(config, plan, batch, ctx, poison)?
        }
        PollLoop::Bare | PollLoop::BarePause => {
            let pause = args.kafka.poll_loop == PollLoop::BarePause;
            super::bare::bare(config, plan, pause, ctx, poison)?
        }
    })
}

/// What the sampling loop keeps between two samples.
struct Watch {
    sampler: Sampler,
    last_delivered: u64,
    last_record: Instant,
    lag_max: i64,
}

impl Watch {
    /// Takes one sample, publishes it (progress, `/metrics`, `/pressure`), and says whether a
    /// stop condition holds.
    fn sample(
        &mut self,
        started: &Running,
        ctx: &SinkWriter,
        live: &Live,
        stopping: &Stopping,
        progress: &Progress,
    ) -> bool {
        let k = (started.stats)();
        let now = Instant::now();
        if k.delivered > self.last_delivered {
            self.last_record = now;
            self.last_delivered = k.delivered;
        }
        let q = started.queue.as_ref().map(|q| q.snapshot());
        let lag = k.total_lag();
        self.lag_max = self.lag_max.max(lag);
        let sample = self.sampler.sample(Totals {
            emitted: k.delivered,
            delivered: ctx.counters.delivered.load(Ordering::Relaxed),
            writes: ctx.counters.writes.load(Ordering::Relaxed),
            queue_depth: q.as_ref().map_or(k.in_flight, |q| q.depth),
            queue_bytes: q.as_ref().map_or(0, |q| q.depth_bytes),
            source_backlog: lag.max(0) as u64,
            lag: lag.max(0) as u64,
            rss_bytes: rss_bytes(),
            dropped: q.as_ref().map_or(0, |q| q.dropped()),
            p99_ms: ctx.take_window_p99(),
            concurrency_limit: ctx
                .limiter
                .as_ref()
                .map_or(0, |l| l.readings().limit as u64),
            ..Totals::default()
        });
        progress.update(&sample, stopping.after.unwrap_or(Duration::from_secs(3600)));
        *live.sample.lock().unwrap_or_else(|p| p.into_inner()) = sample;
        *live.kafka.lock().unwrap_or_else(|p| p.into_inner()) = k;
        *live.queue_fill.lock().unwrap_or_else(|p| p.into_inner()) =
            q.as_ref().map_or(0.0, |q| q.fill());
        let since = now - self.sampler.origin();
        let idle = stopping
            .idle
            .is_some_and(|idle| now - self.last_record >= idle && since >= idle);
        let over = stopping.after.is_some_and(|after| since >= after);
        idle || over
    }
}

impl Watch {
    /// Samples until a stop condition, a signal, or the source's failure (returned): a failed
    /// source ends the run like a stop condition, so what was delivered is still committed and
    /// reported, and the caller turns the failure into an error.
    async fn until_stop(
        &mut self,
        plan: &Plan,
        started: &Running,
        (ctx, live): (&SinkWriter, &Live),
        stopping: &Stopping,
        progress: &Progress,
    ) -> Option<String> {
        let mut tick = crate::telemetry::sampling(plan.sample());
        tick.tick().await;
        // Created once, so a signal between two samples is not missed.
        let mut signal = crate::child::signalled();
        loop {
            let signalled = tokio::select! {
                _ = tick.tick() => false,
                _ = &mut signal => true,
            };
            if let Some(reason) = started.failure.get() {
                return Some(reason.to_string());
            }
            if self.sample(started, ctx, live, stopping, progress) || signalled {
                return None;
            }
        }
    }
}

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
    let out_dir = plan.out().map_or_else(std::env::temp_dir, Into::into);
    let ctx = Arc::new(SinkWriter::new(plan, client, &out_dir)?);
    let poison = Arc::new(PoisonLog::open(&out_dir, live.poison.clone())?);

    let started_at = Instant::now();
    let started = start_loop(args, config, plan, &ctx, &poison)?;
    let mut watch = Watch {
        sampler: Sampler::new(started_at),
        last_delivered: 0,
        last_record: Instant::now(),
        lag_max: 0,
    };
    let failure = watch
        .until_stop(plan, &started, (&ctx, &live), &stopping, progress)
        .await;
    progress.note("stopping: finishing what is in flight, committing, leaving the group");
    let Running {
        stats,
        queue,
        shutdown,
        ..
    } = started;
    let _ = tokio::time::timeout(plan.drain_timeout() + Duration::from_secs(10), shutdown).await;
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
        // An unbounded queue's safety cap discards what it held, unacknowledged: those records
        // are not dropped but left past the commit, and the group's next member reads them.
        dropped: queue.as_ref().map_or(0, |q| {
            let s = q.snapshot();
            s.dropped() - s.dropped_overflow
        }),
        discarded_at_cap: queue.as_ref().map_or(0, |q| q.snapshot().dropped_overflow),
        evictions: k.evictions,
        rebalances: k.rebalances,
        commits: k.commits,
        commit_failures: k.commit_failures,
        revoked_unsent: k.revoked_unsent,
        revoked_in_flight: k.revoked_in_flight,
        stalls: k.stalls,
        stall_recoveries: k.stall_recoveries,
        poison_write_errors: poison.write_errors(),
        lag_max: watch.lag_max,
        duration_s: started_at.elapsed().as_secs_f64(),
        latency_ms: crate::report::Latency::from_histogram(
            &ctx.latency.lock().unwrap_or_else(|p| p.into_inner()),
        ),
        failure,
    })
}
