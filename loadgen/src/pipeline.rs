//! One pipeline run: generator -> transform -> queue -> sink workers -> sink, sampled into a
//! time series, ended by a drain, summed up in a report.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use hdrhistogram::Histogram;
use reactive::flow::{Aimd, RateSignal, Stage, StageSnapshot, find_bottleneck, slow_source};
use reactive::queue::QueueStats;
use reactive::sink::{WorkerStats, workers};
use reactive::{Publisher, PublisherExt};
use sinkd::wire::Event;
use tokio::time::Instant;

use crate::cli::Policy;
use crate::generator::{self, EventShape, GeneratorStats};
use crate::plan::Plan;
use crate::sink::{SinkWriter, start_sink};
use crate::progress::Progress;
use crate::report::{Dropped, Latency, QueueSummary, Report};
use crate::telemetry::{Sample, Sampler, Totals, rss_bytes};

/// What a run leaves behind.
pub struct Outcome {
    pub report: Report,
    pub series: Vec<Sample>,
    pub latency: Histogram<u64>,
}

pub async fn run(plan: &Plan, progress: &Progress) -> anyhow::Result<Outcome> {
    let (embedded, client, ceiling) = start_sink(plan).await?;
    let out_dir = plan.out.clone().unwrap_or_else(std::env::temp_dir);
    let ctx = Arc::new(SinkWriter::new(plan, client, &out_dir)?);
    let (origin, origin_epoch_ns) = (ctx.origin, ctx.origin_epoch_ns);

    // The source, obeying the slow-source signal when there is one.
    let signal = (plan.policy == Policy::SlowSource).then(|| RateSignal::new(plan.schedule.peak()));
    let gen_stats = Arc::new(GeneratorStats::default());
    let gen_stage = Stage::new("generator");
    let shape = EventShape {
        seed: plan.seed,
        keys: plan.keys,
        msg_size: plan.msg_size,
    };
    let events = generator::events(
        plan.schedule.clone(),
        shape,
        origin,
        origin_epoch_ns,
        signal.clone(),
        gen_stats.clone(),
        gen_stage.clone(),
    );
    let transformed = reactive::from_stream(Box::pin(events)).map(|mut e: Event| {
        // The processor's cheap transform.
        e.payload.make_ascii_uppercase();
        e
    });
    let config = plan
        .queue_config()
        .weigh(|e: &Event| (std::mem::size_of::<Event>() + e.payload.capacity()) as u64)
        .priority(|e: &Event| e.priority);
    let queue = transformed.queue(config);
    let queue_stats = queue.stats();

    let c = ctx.clone();
    let (subscriber, pool) = workers(
        plan.workers_config(),
        |e: &Event| e.key,
        move |_, batch: Vec<Event>| {
            let c = c.clone();
            async move { c.write(batch).await }
        },
    );
    let worker_stats = pool.stats();
    let connection = tokio::spawn(queue.connect(subscriber));
    let driver = tokio::spawn(pool);
    let controller = signal.clone().map(|signal| {
        let qs = queue_stats.clone();
        let peak = plan.schedule.peak().max(1.0);
        tokio::spawn(slow_source(
            move || qs.fill(),
            Aimd::new(peak, 10.0, peak).increase(peak * 0.01),
            signal,
            Duration::from_millis(100),
        ))
    });

    // Sample until the pipeline has drained, or the drain timed out.
    let total = plan.schedule.total();
    let mut series = Vec::new();
    let mut tick = tokio::time::interval(plan.sample);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The first tick is immediate: skip it, so every sample covers a whole period.
    tick.tick().await;
    let mut sampler = Sampler::new(origin);
    let mut driver = driver;
    let mut drained = false;
    let mut stages: Vec<(f64, StageSnapshot, Duration, u64)> = Vec::new();
    let deadline = origin + total + plan.drain_timeout;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            done = &mut driver, if !drained => {
                drained = true;
                if let Ok(Err(e)) = &done {
                    progress.note(&format!("the pipeline ended with an error: {e}"));
                }
            }
        }
        let sample = sampler.sample(totals(
            plan,
            &ctx,
            &gen_stats,
            &queue_stats,
            signal.as_ref(),
            origin,
        ));
        progress.update(&sample, total);
        stages.push((
            sample.t,
            gen_stage.snapshot(),
            worker_stats.busy(),
            worker_stats.completed(),
        ));
        series.push(sample);
        if drained || Instant::now() >= deadline {
            break;
        }
        if origin.elapsed() >= total {
            gen_stats.stop.store(true, Ordering::Relaxed);
        }
    }
    gen_stats.stop.store(true, Ordering::Relaxed);
    if !drained {
        driver.abort();
        progress.note("the drain timed out: what was still queued is counted as abandoned");
    }
    connection.abort();
    if let Some(c) = controller {
        c.abort();
    }
    drop(signal);

    let produced = gen_stats.emitted.load(Ordering::Relaxed);
    let (audit, sink_missing) = match (&embedded, &ctx.client) {
        (_, Some(client)) => match client.stats(Some((0, produced))).await {
            Ok(s) => {
                let missing = s.missing.as_ref().map_or(0, |m| m.count);
                (Some(s), missing)
            }
            Err(e) => {
                progress.note(&format!("cannot read the sink's audit: {e}"));
                (None, 0)
            }
        },
        _ => (None, 0),
    };
    if let Some(running) = embedded {
        running.shutdown().await;
    }
    let report = build_report(
        plan,
        &ctx,
        produced,
        &gen_stats,
        &queue_stats,
        &worker_stats,
        &stages,
        audit,
        sink_missing,
        ceiling,
        &series,
        drained,
    );
    let latency = ctx
        .latency
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    Ok(Outcome {
        report,
        series,
        latency,
    })
}

/// The embedded pipeline's totals now.
fn totals(
    plan: &Plan,
    ctx: &SinkWriter,
    generator: &GeneratorStats,
    queue: &QueueStats,
    signal: Option<&RateSignal>,
    origin: Instant,
) -> Totals {
    let t = origin.elapsed();
    let emitted = generator.emitted.load(Ordering::Relaxed);
    let delivered = ctx.counters.delivered.load(Ordering::Relaxed);
    let snapshot = queue.snapshot();
    let dead = ctx.counters.dead_lettered.load(Ordering::Relaxed);
    let due = plan.schedule.due(t).floor() as u64;
    Totals {
        target_rate: plan.schedule.rate_at(t),
        emitted,
        delivered,
        writes: ctx.counters.writes.load(Ordering::Relaxed),
        queue_depth: snapshot.depth,
        queue_bytes: snapshot.depth_bytes,
        source_backlog: due.saturating_sub(emitted),
        lag: due.saturating_sub(delivered + snapshot.dropped() + dead),
        rss_bytes: rss_bytes(),
        dropped: snapshot.dropped(),
        p99_ms: ctx.take_window_p99(),
        signal_rate: signal.map_or(0.0, RateSignal::get),
    }
}

/// Least-squares slope of `y` over `x`.
fn slope(points: &[(f64, f64)]) -> f64 {
    let n = points.len() as f64;
    if n < 2.0 {
        return 0.0;
    }
    let (sx, sy) = points
        .iter()
        .fold((0.0, 0.0), |(a, b), (x, y)| (a + x, b + y));
    let (mx, my) = (sx / n, sy / n);
    let (num, den) = points.iter().fold((0.0, 0.0), |(a, b), (x, y)| {
        (a + (x - mx) * (y - my), b + (x - mx) * (x - mx))
    });
    if den == 0.0 { 0.0 } else { num / den }
}

#[allow(clippy::too_many_arguments)]
fn build_report(
    plan: &Plan,
    ctx: &SinkWriter,
    produced: u64,
    generator: &GeneratorStats,
    queue: &QueueStats,
    worker_stats: &WorkerStats,
    stages: &[(f64, StageSnapshot, Duration, u64)],
    audit: Option<sinkd::Stats>,
    sink_missing: u64,
    ceiling: f64,
    series: &[Sample],
    drained: bool,
) -> Report {
    let q = queue.snapshot();
    let dead_lettered = ctx.counters.dead_lettered.load(Ordering::Relaxed);
    let acked = ctx.counters.delivered.load(Ordering::Relaxed);
    let delivered = audit
        .as_ref()
        .map_or(acked, |a| a.distinct_ids.min(produced));
    // When the drain timed out, what was still inside is abandoned. Writes in flight at that
    // moment may still have reached the sink, whose audit is the truth: abandoned is what the
    // audit does not have, capped at what was inside, so a real loss still shows as `lost`.
    let unaccounted = produced.saturating_sub(delivered + q.dropped() + dead_lettered);
    let abandoned = if drained {
        0
    } else {
        unaccounted.min(q.depth + worker_stats.held())
    };
    let dropped = Dropped {
        newest: q.dropped_newest,
        oldest: q.dropped_oldest,
        priority: q.dropped_priority.clone(),
        abandoned,
        total: q.dropped() + abandoned,
    };
    let lost = produced as i64 - delivered as i64 - dropped.total as i64 - dead_lettered as i64;
    let latency = Latency::from_histogram(&ctx.latency.lock().unwrap_or_else(|p| p.into_inner()));

    // The overload window: where the offered events/s exceed what the sink can take; skip its
    // first second (or tenth) so the transient does not count.
    let ceiling_events = ceiling * plan.batch_size as f64;
    let windows = plan.schedule.overload_windows(ceiling_events);
    let in_overload = |t: f64| {
        windows.iter().any(|(a, b)| {
            let skip = ((b.as_secs_f64() - a.as_secs_f64()) * 0.1).min(1.0);
            t >= a.as_secs_f64() + skip && t <= b.as_secs_f64()
        })
    };
    // Without an overload window, judge the schedule itself (not the drain after it).
    let schedule_s = plan.schedule.total().as_secs_f64();
    let in_window = |t: f64| {
        if windows.is_empty() {
            t <= schedule_s
        } else {
            in_overload(t)
        }
    };
    let window: Vec<&Sample> = series.iter().filter(|s| in_window(s.t)).collect();
    let writes_rate = if window.is_empty() {
        0.0
    } else {
        window.iter().map(|s| s.writes_rate).sum::<f64>() / window.len() as f64
    };
    let sink_utilization = if ceiling.is_finite() && ceiling > 0.0 {
        writes_rate / ceiling
    } else {
        0.0
    };
    // An overflowing queue stops growing once it hits its cap: measure its growth before that.
    let grew_until = if q.overflowed {
        window
            .iter()
            .max_by_key(|s| s.queue_depth)
            .map_or(f64::MAX, |s| s.t)
    } else {
        f64::MAX
    };
    let rss_points: Vec<(f64, f64)> = window
        .iter()
        .filter(|s| s.t <= grew_until)
        .map(|s| (s.t, s.rss_bytes as f64))
        .collect();

    let total = plan.schedule.total();
    let due = plan.schedule.due(total);
    // Judge the bottleneck over the same window.
    let staged: Vec<&(f64, StageSnapshot, Duration, u64)> =
        stages.iter().filter(|s| in_window(s.0)).collect();
    let bottleneck = match (staged.first(), staged.last()) {
        (Some(first), Some(last)) if last.0 > first.0 => {
            let generator = last.1.since(&first.1);
            let workers = plan.sink_workers as u32;
            let busy = last.2.saturating_sub(first.2) / workers;
            let sink = StageSnapshot {
                name: "sink".into(),
                elapsed: generator.elapsed,
                busy: busy.min(generator.elapsed),
                idle: generator.elapsed.saturating_sub(busy),
                backpressured: Duration::ZERO,
                items_in: last.3 - first.3,
                items_out: last.3 - first.3,
                input_fill: (q.high_water as f64 / plan.queue_cap.max(1) as f64).min(1.0),
            };
            find_bottleneck(&[generator, sink]).map_or_else(
                || "none: the source sets the pace".to_string(),
                |b| format!("{} ({})", b.stage, b.reason),
            )
        }
        _ => "unknown: too short to tell".to_string(),
    };

    Report {
        produced,
        delivered,
        dropped,
        dead_lettered,
        duplicates: audit.as_ref().map_or(0, |a| a.duplicates),
        ordering_violations: audit.as_ref().map_or(0, |a| a.order_violations),
        missing: sink_missing,
        lost,
        sink_ceiling_writes_per_s: if ceiling.is_finite() { ceiling } else { 0.0 },
        sink_utilization,
        rss_peak_bytes: series.iter().map(|s| s.rss_bytes).max().unwrap_or(0),
        rss_slope_bytes_per_s: slope(&rss_points),
        latency_ms: latency,
        lag_max: series.iter().map(|s| s.lag).max().unwrap_or(0),
        missed_sends: generator.missed.load(Ordering::Relaxed),
        bottleneck,
        target_rate: due / total.as_secs_f64(),
        generated_rate: produced as f64 / total.as_secs_f64(),
        rate_error: if due > 0.0 {
            produced as f64 / due - 1.0
        } else {
            0.0
        },
        duration_s: series.last().map_or(0.0, |s| s.t),
        retries: ctx.retry.stats().retries,
        queue: QueueSummary {
            high_water: q.high_water,
            high_water_bytes: q.high_water_bytes,
            blocked_s: q.blocked.as_secs_f64(),
            overflowed: q.overflowed,
        },
        drained,
        plan: serde_json::to_value(plan).unwrap_or_default(),
    }
}
