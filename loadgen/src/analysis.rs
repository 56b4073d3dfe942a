//! What a finished run's measurements add up to: [`Report::build`] from [`RunTotals`].
//!
//! - **Lost** is what is neither delivered (sinkd's own audit), dropped by policy, abandoned
//!   at a timed-out drain, nor dead-lettered: 0 unless something vanished.
//! - **Utilization** and the **RSS slope** are judged over the overload window (where the
//!   offered rate exceeds the sink's ceiling), or over the whole schedule when there is none.
//! - **The bottleneck** is judged over the same window. Events shed at a full queue count as
//!   time the source spent held back by the sink: shedding is the sink's pressure, only paid in
//!   events instead of time.

use std::sync::atomic::Ordering;
use std::time::Duration;

use reactive::flow::{StageSnapshot, find_bottleneck};
use reactive::queue::QueueSnapshot;

use crate::plan::Plan;
use crate::report::{ConcurrencySummary, Dropped, Latency, QueueSummary, Report};
use crate::sink::SinkWriter;
use crate::telemetry::{Coarsen, Sample};

/// One reading of the stages, taken with each sample.
#[derive(Debug, Clone, Default)]
pub struct StageReading {
    /// Seconds since the start.
    pub t: f64,
    /// The generator's stage.
    pub generator: StageSnapshot,
    /// Time the sink workers spent writing, summed over workers.
    pub workers_busy: Duration,
    /// Events whose write finished.
    pub completed: u64,
    /// Events the queue dropped by policy so far.
    pub dropped: u64,
}

/// Readings are running totals: a coarse reading is the later one, and what happened between
/// two readings is still their difference.
impl Coarsen for StageReading {
    fn coarsen(&self, _: u32, later: &Self, _: u32) -> Self {
        later.clone()
    }
}

/// Everything [`Report::build`] reads.
pub struct RunTotals<'a> {
    pub plan: &'a Plan,
    /// Events the generator emitted.
    pub produced: u64,
    pub sink: &'a SinkWriter,
    pub missed_sends: u64,
    pub queue: QueueSnapshot,
    /// Events the workers held (queued or being written) at the end.
    pub held_by_workers: u64,
    /// Writes the workers started, and those sized for a congested sink.
    pub writes: (u64, u64),
    pub stages: &'a [StageReading],
    /// sinkd's audit, when it could be read.
    pub audit: Option<sinkd::Stats>,
    /// The sink's limit, writes/s (infinite when unknown or off).
    pub ceiling: f64,
    pub series: &'a [Sample],
    /// Whether the pipeline drained before the drain timeout.
    pub drained: bool,
}

/// The time window a run is judged over.
struct Window {
    /// (start, end) of each overload, seconds; empty when the sink was never overloaded.
    overloads: Vec<(f64, f64)>,
    schedule_s: f64,
}

impl Window {
    fn new(plan: &Plan, ceiling: f64) -> Window {
        let ceiling_events = ceiling * plan.batch_size() as f64;
        let overloads = plan
            .schedule()
            .overload_windows(ceiling_events)
            .into_iter()
            .map(|(a, b)| (a.as_secs_f64(), b.as_secs_f64()))
            .collect();
        Window {
            overloads,
            schedule_s: plan.schedule().total().as_secs_f64(),
        }
    }

    /// Whether `t` is judged: inside an overload (its first second, or tenth, skipped as the
    /// transient), or, without one, inside the schedule (not the drain after it).
    fn contains(&self, t: f64) -> bool {
        if self.overloads.is_empty() {
            return t <= self.schedule_s;
        }
        self.overloads.iter().any(|(a, b)| {
            let skip = ((b - a) * 0.1).min(1.0);
            t >= a + skip && t <= *b
        })
    }
}

/// The mean of `xs` (0 when empty).
pub(crate) fn mean(xs: impl Iterator<Item = f64>) -> f64 {
    let (n, sum) = xs.fold((0usize, 0.0), |(n, s), x| (n + 1, s + x));
    if n == 0 { 0.0 } else { sum / n as f64 }
}

/// Minimum, median and maximum of `xs` (the lower median for an even count; NaN when empty).
pub(crate) fn min_median_max(xs: &[f64]) -> (f64, f64, f64) {
    let mut v: Vec<f64> = xs.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => (f64::NAN, f64::NAN, f64::NAN),
        n => (v[0], v[(n - 1) / 2], v[n - 1]),
    }
}

/// Least-squares slope of `y` over `x`.
pub(crate) fn slope(points: &[(f64, f64)]) -> f64 {
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

/// What became of every event: delivered, dropped (by reason), dead-lettered, lost.
fn accounting(t: &RunTotals<'_>) -> (u64, Dropped, u64, i64) {
    let q = &t.queue;
    let dead_lettered = t.sink.counters.dead_lettered.load(Ordering::Relaxed);
    let acked = t.sink.counters.delivered.load(Ordering::Relaxed);
    let delivered = t
        .audit
        .as_ref()
        .map_or(acked, |a| a.distinct_ids.min(t.produced));
    // When the drain timed out, what was still inside is abandoned. Writes in flight at that
    // moment may still have reached the sink, whose audit is the truth: abandoned is what the
    // audit does not have, capped at what was inside, so a real loss still shows as `lost`.
    let unaccounted = t
        .produced
        .saturating_sub(delivered + q.dropped() + dead_lettered);
    let abandoned = if t.drained {
        0
    } else {
        unaccounted.min(q.depth + t.held_by_workers)
    };
    let dropped = Dropped {
        newest: q.dropped_newest,
        oldest: q.dropped_oldest,
        priority: q.dropped_priority.clone(),
        overflow: q.dropped_overflow,
        abandoned,
        total: q.dropped() + abandoned,
    };
    let lost = t.produced as i64 - delivered as i64 - dropped.total as i64 - dead_lettered as i64;
    (delivered, dropped, dead_lettered, lost)
}

/// The stage limiting throughput over the judged window, in words: `workers` sink workers
/// whose input queue was at most `input_fill` full.
fn bottleneck(workers: usize, input_fill: f64, stages: &[StageReading], window: &Window) -> String {
    let judged: Vec<&StageReading> = stages.iter().filter(|s| window.contains(s.t)).collect();
    let (Some(first), Some(last)) = (judged.first(), judged.last()) else {
        return "unknown: too short to tell".to_string();
    };
    if last.t <= first.t {
        return "unknown: too short to tell".to_string();
    }
    let mut generator = last.generator.since(&first.generator);
    let busy = last.workers_busy.saturating_sub(first.workers_busy) / workers.max(1) as u32;
    let sink = StageSnapshot {
        name: "sink".into(),
        elapsed: generator.elapsed,
        busy: busy.min(generator.elapsed),
        idle: generator.elapsed.saturating_sub(busy),
        backpressured: Duration::ZERO,
        items_in: last.completed - first.completed,
        items_out: last.completed - first.completed,
        input_fill,
    };
    // Shedding is backpressure paid in events: the share of the source's events shed at the
    // sink's door is the share of its time the sink held it back.
    let shed = last.dropped.saturating_sub(first.dropped) as f64;
    let offered = generator.items_out.max(1) as f64;
    let shed_share = (shed / offered).min(1.0);
    let held = generator.elapsed.mul_f64(shed_share);
    if held > generator.backpressured {
        generator.backpressured = held;
        generator.busy = generator.busy.min(generator.elapsed.saturating_sub(held));
        generator.idle = generator
            .elapsed
            .saturating_sub(held)
            .saturating_sub(generator.busy);
    }
    match find_bottleneck(&[generator, sink]) {
        Some(b) if shed_share >= 0.5 && b.stage == "sink" => format!(
            "sink ({:.0}% of the source's events were shed at its door; it was busy {:.0}%)",
            shed_share * 100.0,
            sink_busy_ratio(busy, last.t - first.t) * 100.0
        ),
        Some(b) => format!("{} ({})", b.stage, b.reason),
        None => "none: the source sets the pace".to_string(),
    }
}

fn sink_busy_ratio(busy: Duration, span_s: f64) -> f64 {
    (busy.as_secs_f64() / span_s.max(1e-9)).min(1.0)
}

impl Report {
    /// Sums a finished run up.
    pub fn build(t: RunTotals<'_>) -> Report {
        let (delivered, dropped, dead_lettered, lost) = accounting(&t);
        let window = Window::new(t.plan, t.ceiling);
        let judged: Vec<&Sample> = t.series.iter().filter(|s| window.contains(s.t)).collect();
        let writes_rate = mean(judged.iter().map(|s| s.writes_rate));
        let finite = t.ceiling.is_finite() && t.ceiling > 0.0;
        // An overflowing queue stops growing once it hits its cap: measure its growth before.
        let grew_until = if t.queue.overflowed {
            judged
                .iter()
                .max_by_key(|s| s.queue_depth)
                .map_or(f64::MAX, |s| s.t)
        } else {
            f64::MAX
        };
        let rss_points: Vec<(f64, f64)> = judged
            .iter()
            .filter(|s| s.t <= grew_until)
            .map(|s| (s.t, s.rss_bytes as f64))
            .collect();
        let schedule = t.plan.schedule();
        let total = schedule.total().as_secs_f64();
        let due = schedule.due(schedule.total());
        let audit = t.audit.as_ref();
        Report {
            produced: t.produced,
            delivered,
            audited: t.audit.is_some(),
            dropped,
            dead_lettered,
            duplicates: audit.map_or(0, |a| a.duplicates),
            ordering_violations: audit.map_or(0, |a| a.order_violations),
            missing: audit
                .and_then(|a| a.missing.as_ref())
                .map_or(0, |m| m.count),
            lost,
            sink_ceiling_writes_per_s: if t.ceiling.is_finite() {
                t.ceiling
            } else {
                0.0
            },
            sink_utilization: if finite { writes_rate / t.ceiling } else { 0.0 },
            overloaded: !window.overloads.is_empty(),
            rss_peak_bytes: t.series.iter().map(|s| s.rss_bytes).max().unwrap_or(0),
            rss_slope_bytes_per_s: slope(&rss_points),
            sink_audit_bytes: audit.map_or(0, |a| a.audit_bytes),
            latency_ms: Latency::from_histogram(
                &t.sink.latency.lock().unwrap_or_else(|p| p.into_inner()),
            ),
            lag_max: t.series.iter().map(|s| s.lag).max().unwrap_or(0),
            missed_sends: t.missed_sends,
            bottleneck: bottleneck(
                t.plan.sink_workers(),
                t.queue.high_water_fill(),
                t.stages,
                &window,
            ),
            target_rate: due / total,
            generated_rate: t.produced as f64 / total,
            rate_error: if due > 0.0 {
                t.produced as f64 / due - 1.0
            } else {
                0.0
            },
            duration_s: t.series.last().map_or(0.0, |s| s.t),
            retries: t.sink.retry.stats().retries,
            writes: t.writes.0,
            writes_congested: t.writes.1,
            concurrency: concurrency(&t),
            queue: QueueSummary {
                high_water: t.queue.high_water,
                high_water_bytes: t.queue.high_water_bytes,
                blocked_s: t.queue.blocked.as_secs_f64(),
                overflowed: t.queue.overflowed,
                fill_warned_s: None,
                full_at_s: None,
            },
            drained: t.drained,
            plan: t.plan.to_json(),
            // Over Kafka only (`over_kafka`, `left_in_source`, `delivered_uncommitted`).
            ..Report::default()
        }
    }
}

/// The writes' attempts and concurrency limit over the run.
fn concurrency(t: &RunTotals<'_>) -> ConcurrencySummary {
    let counters = &t.sink.counters;
    let readings = t.sink.limiter.as_ref().map(|l| l.readings());
    let limits: Vec<f64> = t
        .series
        .iter()
        .map(|s| s.concurrency_limit as f64)
        .collect();
    ConcurrencySummary {
        mode: t.plan.to_json()["concurrency"]
            .as_str()
            .unwrap_or("fixed")
            .to_string(),
        attempts: counters.attempts.load(Ordering::Relaxed),
        rejected_429: counters.rejected.load(Ordering::Relaxed),
        final_limit: readings.map_or(0, |r| r.limit as u64),
        mean_limit: if limits.is_empty() {
            0.0
        } else {
            limits.iter().sum::<f64>() / limits.len() as f64
        },
        increases: readings.map_or(0, |r| r.increases),
        decreases: readings.map_or(0, |r| r.decreases),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Readings over 10 s: the generator busy `busy`, backpressured `held` of the time, its
    /// events shed `shed` of the time, one sink worker busy `sink_busy` of the time.
    fn readings(busy: f64, held: f64, shed: f64, sink_busy: f64) -> Vec<StageReading> {
        let secs = |f: f64| Duration::from_secs_f64(f);
        (0..=10)
            .map(|i| {
                let t = i as f64;
                StageReading {
                    t,
                    generator: StageSnapshot {
                        name: "generator".into(),
                        elapsed: secs(t),
                        busy: secs(t * busy),
                        idle: secs(t * (1.0 - busy - held)),
                        backpressured: secs(t * held),
                        items_in: (t * 8000.0) as u64,
                        items_out: (t * 8000.0) as u64,
                        input_fill: 0.0,
                    },
                    workers_busy: secs(t * sink_busy),
                    completed: (t * 2000.0) as u64,
                    dropped: (t * 8000.0 * shed) as u64,
                }
            })
            .collect()
    }

    fn whole_run() -> Window {
        Window {
            overloads: vec![(0.0, 10.0)],
            schedule_s: 10.0,
        }
    }

    #[test]
    fn a_shedding_run_names_the_sink_it_sheds_for() {
        // Experiment 7's shed runs: the generator never waits (nothing blocks), 75% of its
        // events are shed at the sink's full queue, and the sink is busy 75%.
        let b = bottleneck(1, 1.0, &readings(0.2, 0.0, 0.75, 0.75), &whole_run());
        assert!(
            b.starts_with("sink (75% of the source's events were shed"),
            "{b}"
        );
    }

    #[test]
    fn a_blocked_source_names_the_sink_and_an_idle_pipeline_nothing() {
        let b = bottleneck(1, 1.0, &readings(0.1, 0.9, 0.0, 0.8), &whole_run());
        assert!(b.starts_with("sink (generator spent 90%"), "{b}");
        let b = bottleneck(1, 0.1, &readings(0.3, 0.0, 0.0, 0.4), &whole_run());
        assert_eq!(b, "none: the source sets the pace");
    }

    #[test]
    fn the_summary_says_overloaded_only_when_it_was() {
        let mut r = Report {
            sink_utilization: 0.8,
            ..Report::default()
        };
        assert!(
            r.interpretation().contains("never exceeded"),
            "{}",
            r.interpretation()
        );
        r.overloaded = true;
        assert!(r.interpretation().contains("while it was overloaded"));
    }

    #[test]
    fn without_the_audit_the_delivery_line_says_it_is_unknown() {
        let mut r = Report {
            delivered: 24_000,
            ..Report::default()
        };
        assert!(
            r.delivery_line().contains("could not be read"),
            "{}",
            r.delivery_line()
        );
        assert!(!r.delivery_line().contains("has 24000"));
        r.audited = true;
        assert_eq!(r.delivery_line(), "the sink's audit has 24000 of them");
    }
}
