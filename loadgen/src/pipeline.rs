//! One pipeline run: generator -> transform -> queue -> sink workers -> sink, sampled into a
//! time series, ended by a drain, summed up in a report ([`crate::analysis`]).
//!
//! What the run holds in memory does not grow with its length: the series the report and the
//! charts read is a [`Bounded`] one of at most [`SERIES_POINTS`] points (as are the stage
//! readings beside it), and the full-resolution series goes to `timeseries.csv` in the plan's
//! out directory as each sample is taken (no CSV without one).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::{Context, bail};
use hdrhistogram::Histogram;
use reactive::flow::{Aimd, RateSignal, Stage, StageSnapshot, slow_source};
use reactive::queue::{QueueSnapshot, QueueStats};
use reactive::sink::{WorkerStats, workers};
use reactive::spill::{Spill, SpillConfig, SpillStats};
use reactive::{Publisher, PublisherExt};
use sinkd::wire::Event;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::analysis::{RunTotals, StageReading};
use crate::foresight::FillWatch;
use crate::generator::{self, GeneratorStats};
use crate::plan::Plan;
use crate::progress::Progress;
use crate::report::{Report, SinkLimit};
use crate::sink::{SinkWriter, start_sink};
use crate::spilled::Spilled;
use crate::telemetry::{Bounded, CsvWriter, Sample, Sampler, Totals, rss_bytes};

/// The most points the in-memory series keeps (about 150 KB with the stage readings): a run
/// of up to 128 s at the default 250 ms period keeps every sample, a longer one coarser ones.
pub const SERIES_POINTS: usize = 512;

/// What a run leaves behind.
pub struct Outcome {
    pub report: Report,
    pub series: Vec<Sample>,
    pub latency: Histogram<u64>,
}

/// A pipeline that is running: its parts and the handles to watch and stop them.
struct Running {
    sink: Arc<SinkWriter>,
    embedded: Option<sinkd::Running>,
    ceiling: f64,
    signal: Option<RateSignal>,
    generator: Arc<GeneratorStats>,
    stage: Stage,
    queue: Arc<QueueStats>,
    /// With `--queue spill`: the spill's counters (its depth is added to the queue's).
    spill: Option<Arc<SpillStats>>,
    workers: Arc<WorkerStats>,
    connection: JoinHandle<()>,
    driver: JoinHandle<Result<(), reactive::Error>>,
    controller: Option<JoinHandle<()>>,
}

/// What the sampling loop collected.
struct Collected {
    series: Bounded<Sample>,
    stages: Bounded<StageReading>,
    csv: Option<CsvWriter>,
    drained: bool,
    /// A bounded queue's fill forecast.
    watch: Option<FillWatch>,
}

/// How far ahead a filling queue is warned of: the trend must say full within this.
const FILL_HORIZON: Duration = Duration::from_secs(10);

/// Runs `plan` to the end: the schedule, then the drain.
pub async fn run(plan: &Plan, progress: &Progress) -> anyhow::Result<Outcome> {
    let mut running = start(plan).await?;
    let collected = sample_until_drained(plan, &mut running, progress).await;
    finish(plan, running, collected, progress).await
}

/// What [`run_unpaced`] measured.
#[derive(Debug, Clone)]
pub struct Unpaced {
    /// Events the sink acknowledged.
    pub delivered: u64,
    /// Writes the sink acknowledged.
    pub writes: u64,
    /// From the generator's start to the last write's answer.
    pub elapsed: Duration,
    /// The generator's stage over the run: busy making events, held back (no demand), idle.
    pub generator: StageSnapshot,
    /// Time the sink workers spent writing, summed over workers.
    pub workers_busy: Duration,
    /// Sink workers.
    pub workers: usize,
}

/// Runs all of `plan`'s events through the pipeline as fast as it takes them, for the
/// end-to-end bench. Unlike [`run`], the generator is not stopped when the schedule's time is
/// up, so a schedule of N events delivers N events however long that takes; no sampling, no
/// audit, no report.
///
/// # Errors
/// When the sink cannot be reached, the pipeline fails, or it has not drained within the
/// schedule plus the drain timeout.
pub(crate) async fn run_unpaced(plan: &Plan) -> anyhow::Result<Unpaced> {
    let mut r = start(plan).await?;
    let limit = plan.schedule().total() + plan.drain_timeout();
    let ended = tokio::time::timeout(limit, &mut r.driver).await;
    let elapsed = r.sink.origin.elapsed();
    let generator = r.stage.snapshot();
    let workers_busy = r.workers.busy();
    r.generator.stop.store(true, Ordering::Relaxed);
    r.connection.abort();
    if let Some(controller) = r.controller {
        controller.abort();
    }
    if let Some(running) = r.embedded {
        running.shutdown().await;
    }
    match ended {
        Err(_) => {
            r.driver.abort();
            bail!("the pipeline did not drain within {limit:?}");
        }
        Ok(Err(e)) => bail!("the pipeline's task failed: {e}"),
        Ok(Ok(Err(e))) => bail!("the pipeline ended with an error: {e}"),
        Ok(Ok(Ok(()))) => {}
    }
    Ok(Unpaced {
        delivered: r.sink.counters.delivered.load(Ordering::Relaxed),
        writes: r.sink.counters.writes.load(Ordering::Relaxed),
        elapsed,
        generator,
        workers_busy,
        workers: plan.sink_workers(),
    })
}

/// Starts the sink, the generator, the queue and the workers.
async fn start(plan: &Plan) -> anyhow::Result<Running> {
    let (embedded, client, ceiling) = start_sink(plan).await?;
    let out_dir = plan.out().map_or_else(std::env::temp_dir, Into::into);
    let generator = Arc::new(GeneratorStats::default());
    let sink = Arc::new(SinkWriter::new(plan, client, &out_dir)?.recycling_into(generator.clone()));
    // The source, obeying the slow-source signal when there is one.
    let signal = plan
        .slow_source()
        .then(|| RateSignal::new(plan.schedule().peak()));
    let stage = Stage::new("generator");
    let events = generator::event_chunks(
        plan.schedule().clone(),
        plan.shape(),
        sink.origin,
        sink.origin_epoch_ns,
        signal.clone(),
        generator.clone(),
        stage.clone(),
    );
    let transformed = reactive::from_chunks(Box::pin(events)).map(|mut e: Event| {
        // The processor's cheap transform.
        e.payload.make_ascii_uppercase();
        e
    });
    let (subscriber, pool) = workers(plan.workers_config(), |e: &Event| e.key, {
        let writer = sink.clone();
        move |_, batch: Vec<Event>| {
            let writer = writer.clone();
            async move { writer.write(batch).await }
        }
    });
    let worker_stats = pool.stats();
    let (queue_stats, spill, connection) = match plan.spill() {
        None => {
            let config = plan
                .queue_config()
                .weigh(|e: &Event| (std::mem::size_of::<Event>() + e.payload.capacity()) as u64)
                .priority(|e: &Event| e.priority);
            let queue = transformed.queue(config);
            let stats = queue.stats();
            (stats, None, tokio::spawn(queue.connect(subscriber)))
        }
        Some(s) => {
            // Memory first (--queue-cap events), then the disk. A pull queue after it passes
            // the workers' demand through and keeps the pipeline's queue counters.
            let memory = plan.queue_capacity().unwrap_or(0);
            let config = SpillConfig::new(&s.dir, memory, s.max_bytes).fsync(s.fsync);
            let (tx, rx, recovery) =
                tokio::task::spawn_blocking(move || reactive::spill::open::<Spilled>(config))
                    .await
                    .context("the spill's open did not finish")?
                    .with_context(|| format!("cannot open the spill in {}", s.dir.display()))?;
            if recovery.records > 0 || !recovery.damage.is_empty() {
                eprintln!(
                    "loadgen: the spill in {} held {} events from an earlier run: they are sent first",
                    s.dir.display(),
                    recovery.records
                );
            }
            for d in &recovery.damage {
                eprintln!("loadgen: spill recovery: {d}");
            }
            let spilled = Spill::new(transformed.map(Spilled), tx, rx);
            let stats = spilled.stats();
            let queue = spilled
                .map(|s: Spilled| s.0)
                .queue(reactive::QueueConfig::pull());
            let queue_stats = queue.stats();
            (
                queue_stats,
                Some(stats),
                tokio::spawn(queue.connect(subscriber)),
            )
        }
    };
    if let Some(flow) = &sink.credit {
        let (queue, pool) = (queue_stats.clone(), worker_stats.clone());
        let per_write = if plan.single_writes() {
            1
        } else {
            plan.batch_size() as u64
        };
        flow.backlog_from(move || (queue.depth() + pool.held()).div_ceil(per_write.max(1)));
    }
    let driver = tokio::spawn(pool);
    let controller = signal.clone().map(|signal| {
        let qs = queue_stats.clone();
        let peak = plan.schedule().peak().max(1.0);
        tokio::spawn(slow_source(
            move || qs.fill(),
            Aimd::new(peak, 10.0, peak).increase(peak * 0.01),
            signal,
            Duration::from_millis(100),
        ))
    });
    Ok(Running {
        sink,
        embedded,
        ceiling,
        signal,
        generator,
        stage,
        queue: queue_stats,
        spill,
        workers: worker_stats,
        connection,
        driver,
        controller,
    })
}

/// Samples every `plan.sample` until the pipeline has drained, or the drain timed out.
async fn sample_until_drained(plan: &Plan, r: &mut Running, progress: &Progress) -> Collected {
    let origin = r.sink.origin;
    let total = plan.schedule().total();
    let deadline = origin + total + plan.drain_timeout();
    let mut tick = crate::telemetry::sampling(plan.sample());
    // The first tick is immediate: skip it, so every sample covers a whole period.
    tick.tick().await;
    let mut sampler = Sampler::new(origin);
    let csv = plan.out().and_then(|dir| {
        CsvWriter::create(&dir.join("timeseries.csv"))
            .map_err(|e| progress.note(&format!("{e:#}")))
            .ok()
    });
    let mut c = Collected {
        series: Bounded::new(SERIES_POINTS),
        stages: Bounded::new(SERIES_POINTS),
        csv,
        drained: false,
        watch: plan
            .queue_capacity()
            .map(|cap| FillWatch::new(cap, plan.sample(), FILL_HORIZON)),
    };
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            done = &mut r.driver, if !c.drained => {
                c.drained = true;
                if let Ok(Err(e)) = &done {
                    progress.note(&format!("the pipeline ended with an error: {e}"));
                }
            }
        }
        let sample = sampler.sample(totals(plan, r));
        progress.update(&sample, total);
        if let Some(w) = c.watch.as_mut() {
            w.observe(sample.t, sample.queue_depth, progress);
        }
        c.stages.push(StageReading {
            t: sample.t,
            generator: r.stage.snapshot(),
            workers_busy: r.workers.busy(),
            completed: r.workers.completed(),
            dropped: r.queue.snapshot().dropped(),
        });
        if let Some(Err(e)) = c.csv.as_mut().map(|csv| csv.write(&sample)) {
            progress.note(&format!("{e:#}"));
        }
        c.series.push(sample);
        if c.drained || Instant::now() >= deadline {
            return c;
        }
        if origin.elapsed() >= total {
            r.generator.stop.store(true, Ordering::Relaxed);
        }
    }
}

/// The queue's counters, with what a spill holds (in memory and on disk) counted as queued.
fn queue_snapshot(r: &Running) -> QueueSnapshot {
    let mut q = r.queue.snapshot();
    if let Some(spill) = &r.spill {
        q.depth += spill.depth();
        q.high_water = q.high_water.max(spill.snapshot().high_water);
    }
    q
}

/// The embedded pipeline's totals now.
fn totals(plan: &Plan, r: &Running) -> Totals {
    let t = r.sink.origin.elapsed();
    let emitted = r.generator.emitted.load(Ordering::Relaxed);
    let delivered = r.sink.counters.delivered.load(Ordering::Relaxed);
    let q = queue_snapshot(r);
    let dead = r.sink.counters.dead_lettered.load(Ordering::Relaxed);
    let due = plan.schedule().due(t).floor() as u64;
    Totals {
        target_rate: plan.schedule().rate_at(t),
        emitted,
        delivered,
        writes: r.sink.counters.writes.load(Ordering::Relaxed),
        queue_depth: q.depth,
        queue_bytes: q.depth_bytes,
        source_backlog: due.saturating_sub(emitted),
        lag: due.saturating_sub(delivered + q.dropped() + dead),
        rss_bytes: rss_bytes(),
        dropped: q.dropped(),
        p99_ms: r.sink.take_window_p99(),
        signal_rate: r.signal.as_ref().map_or(0.0, RateSignal::get),
        concurrency_limit: r
            .sink
            .limiter
            .as_ref()
            .map_or(0, |l| l.readings().limit as u64),
    }
}

/// Stops what still runs, reads the sink's audit, and builds the report.
async fn finish(
    plan: &Plan,
    r: Running,
    c: Collected,
    progress: &Progress,
) -> anyhow::Result<Outcome> {
    r.generator.stop.store(true, Ordering::Relaxed);
    if !c.drained {
        r.driver.abort();
        progress.note("the drain timed out: what was still queued is counted as abandoned");
    }
    r.connection.abort();
    let queued = queue_snapshot(&r);
    if let Some(controller) = r.controller {
        controller.abort();
    }
    if let Some(Err(e)) = c.csv.map(CsvWriter::finish) {
        progress.note(&format!("{e:#}"));
    }
    let (series, stages) = (c.series.to_vec(), c.stages.to_vec());
    let produced = r.generator.emitted.load(Ordering::Relaxed);
    let audit = match &r.sink.client {
        Some(client) => match client.stats(Some((0, produced))).await {
            Ok(s) => Some(s),
            Err(e) => {
                progress.note(&format!("cannot read the sink's audit: {e}"));
                None
            }
        },
        None => None,
    };
    let sink_limit = match (&r.embedded, &r.sink.client) {
        (Some(_), Some(client)) => client
            .metrics()
            .await
            .map(|t| SinkLimit::from_metrics(&t))
            .unwrap_or_default(),
        _ => SinkLimit::default(),
    };
    if let Some(running) = r.embedded {
        running.shutdown().await;
    }
    let latency = r
        .sink
        .latency
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    let mut report = Report::build(RunTotals {
        plan,
        produced,
        sink: &r.sink,
        missed_sends: r.generator.missed.load(Ordering::Relaxed),
        queue: queued,
        held_by_workers: r.workers.held(),
        writes: (r.workers.started(), r.workers.congested()),
        stages: &stages,
        audit,
        ceiling: r.ceiling,
        series: &series,
        drained: c.drained,
    });
    report.sink_limit = sink_limit;
    if let Some(w) = &c.watch {
        report.queue.fill_warned_s = w.first_warning_s;
        report.queue.full_at_s = w.first_full_s;
    }
    Ok(Outcome {
        report,
        series,
        latency,
    })
}
