//! The report of a run over Kafka, in the same [`Report`] as an embedded run, so the tables,
//! charts and `--check` gates read both alike. What differs is where each figure comes from:
//!
//! - **produced** is the broker's count (the topic's log-end offsets), **delivered** sinkd's
//!   audit, **dropped** and **dead-lettered** the processor's report;
//! - **left in Kafka** is the group's lag after the processor stopped: records past its commit,
//!   which the next member reads. They are not lost, and they are not dropped;
//! - **lost** = produced − delivered − dropped − dead-lettered − left in Kafka: 0 unless
//!   something vanished. The terms overlap by the writes that finished after the member's last
//!   commit (in the sink, and past the commit): that overlap is **delivered, not committed**,
//!   what a restart would replay, and it is bounded by the writes in flight at the stop;
//! - **lag** is the broker's (log-end minus commit, summed over partitions), and the bottleneck
//!   is judged from utilization, shedding and the lag's slope over the steady window.

use crate::analysis::{mean, slope};
use crate::plan::Plan;
use crate::report::{Dropped, Latency, QueueSummary, Report};
use crate::telemetry::Sample;

/// Everything [`build`] reads.
pub(super) struct KafkaTotals<'a> {
    pub plan: &'a Plan,
    pub series: &'a [Sample],
    /// Records in the topic at the end (the broker's count).
    pub produced: u64,
    /// The producer's report (`loadgen produce --report`).
    pub producer: &'a serde_json::Value,
    /// The processor's report (`loadgen process --report`).
    pub processor: &'a serde_json::Value,
    pub audit: Option<sinkd::Stats>,
    /// The group's lag after the processor stopped.
    pub left: u64,
    /// sinkd's limit, writes/s.
    pub ceiling: f64,
    /// The steady window: from a tenth into the schedule to the producer's end, seconds.
    pub window: (f64, f64),
}

fn u(v: &serde_json::Value, field: &str) -> u64 {
    v[field].as_u64().unwrap_or(0)
}

/// The stage limiting throughput over the steady window, in words.
fn bottleneck(utilization: f64, shed_share: f64, lag_slope: f64, rate: f64) -> String {
    if shed_share >= 0.5 {
        format!(
            "sink ({:.0}% of the records were shed at its door)",
            shed_share * 100.0
        )
    } else if utilization >= 0.9 {
        format!(
            "sink (at {:.0}% of its ceiling; the excess waits in Kafka as lag)",
            utilization * 100.0
        )
    } else if lag_slope > rate * 0.05 {
        format!("processor (lag grew {lag_slope:.0}/s while the sink had room)")
    } else {
        "none: the producer sets the pace".to_string()
    }
}

/// The queue's high-water marks, from the processor's samples.
fn queue(t: &KafkaTotals<'_>) -> QueueSummary {
    QueueSummary {
        high_water: t.series.iter().map(|s| s.queue_depth).max().unwrap_or(0),
        high_water_bytes: t.series.iter().map(|s| s.queue_bytes).max().unwrap_or(0),
        blocked_s: 0.0,
        // The processor stopped on its own: with an unbounded queue, at its safety cap.
        overflowed: t.processor["failure"].is_string(),
        fill_warned_s: None,
        full_at_s: None,
    }
}

/// The run's report.
pub(super) fn build(t: &KafkaTotals<'_>) -> Report {
    let (from, to) = t.window;
    let steady: Vec<&Sample> = t
        .series
        .iter()
        .filter(|s| s.t >= from && s.t <= to)
        .collect();
    let delivered = t
        .audit
        .as_ref()
        .map_or(u(t.processor, "delivered"), |a| a.distinct_ids)
        .min(t.produced);
    let dropped = u(t.processor, "dropped");
    let dead_lettered = u(t.processor, "dead_lettered") + u(t.processor, "poison");
    let balance = t.produced as i64
        - delivered as i64
        - dropped as i64
        - dead_lettered as i64
        - t.left as i64;
    let finite = t.ceiling.is_finite() && t.ceiling > 0.0;
    let utilization = if finite {
        mean(steady.iter().map(|s| s.writes_rate)) / t.ceiling
    } else {
        0.0
    };
    let schedule = t.plan.schedule();
    let rate = schedule.peak();
    let lag_points: Vec<(f64, f64)> = steady.iter().map(|s| (s.t, s.lag as f64)).collect();
    let rss_points: Vec<(f64, f64)> = steady.iter().map(|s| (s.t, s.rss_bytes as f64)).collect();
    let shed_share = dropped as f64 / t.produced.max(1) as f64;
    let due = schedule.due(schedule.total());
    let sent = u(t.producer, "sent");
    let mut plan = t.plan.to_json();
    plan["source"] = "kafka".into();
    let audit = t.audit.as_ref();
    Report {
        produced: t.produced,
        delivered,
        audited: audit.is_some(),
        dropped: Dropped {
            total: dropped,
            ..Dropped::default()
        },
        dead_lettered,
        duplicates: audit.map_or(0, |a| a.duplicates),
        ordering_violations: audit.map_or(0, |a| a.order_violations),
        missing: 0,
        lost: balance.max(0),
        over_kafka: true,
        left_in_source: t.left,
        delivered_uncommitted: (-balance).max(0) as u64,
        sink_ceiling_writes_per_s: if finite { t.ceiling } else { 0.0 },
        sink_utilization: utilization,
        overloaded: finite && rate > t.ceiling * t.plan.batch_size() as f64,
        rss_peak_bytes: t.series.iter().map(|s| s.rss_bytes).max().unwrap_or(0),
        // sinkd runs in the experiment's process here, not the processor's.
        sink_audit_bytes: 0,
        rss_slope_bytes_per_s: slope(&rss_points),
        latency_ms: serde_json::from_value::<Latency>(t.processor["latency_ms"].clone())
            .unwrap_or_default(),
        lag_max: t.series.iter().map(|s| s.lag).max().unwrap_or(0),
        missed_sends: u(t.producer, "missed_sends"),
        bottleneck: bottleneck(utilization, shed_share, slope(&lag_points), rate),
        target_rate: rate,
        generated_rate: t.producer["send_rate"].as_f64().unwrap_or(0.0),
        rate_error: if due > 0.0 {
            sent as f64 / due - 1.0
        } else {
            0.0
        },
        duration_s: t.series.last().map_or(0.0, |s| s.t),
        retries: 0,
        sink_limit: Default::default(),
        // The processor's writes are not among the figures it exports.
        writes: 0,
        writes_congested: 0,
        concurrency: Default::default(),
        queue: queue(t),
        drained: t.left == 0,
        plan,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::RunArgs;
    use clap::Parser;

    fn plan() -> Plan {
        let args = RunArgs::parse_from(["run", "--profile", "constant", "--rate", "8000"]);
        Plan::from_args(&args).unwrap()
    }

    fn series(lag_per_s: f64, writes: f64) -> Vec<Sample> {
        (0..=40)
            .map(|i| {
                let t = i as f64 * 0.5;
                Sample {
                    t,
                    lag: (t * lag_per_s) as u64,
                    writes_rate: writes,
                    rss_bytes: 10_000_000,
                    ..Sample::default()
                }
            })
            .collect()
    }

    fn totals<'a>(
        plan: &'a Plan,
        series: &'a [Sample],
        processor: &'a serde_json::Value,
        left: u64,
    ) -> KafkaTotals<'a> {
        static PRODUCER: std::sync::LazyLock<serde_json::Value> = std::sync::LazyLock::new(
            || serde_json::json!({"sent": 160_000, "send_rate": 8000.0, "missed_sends": 3}),
        );
        KafkaTotals {
            plan,
            series,
            produced: 160_000,
            producer: &PRODUCER,
            processor,
            audit: None,
            left,
            ceiling: 2000.0,
            window: (2.0, 20.0),
        }
    }

    #[test]
    fn what_waits_in_kafka_is_neither_lost_nor_dropped() {
        let (plan, series) = (plan(), series(6000.0, 2000.0));
        let processor = serde_json::json!({"delivered": 40_000, "dropped": 0, "dead_lettered": 0});
        let r = build(&totals(&plan, &series, &processor, 120_000));
        assert_eq!((r.lost, r.left_in_source, r.dropped.total), (0, 120_000, 0));
        assert!(!r.drained && r.over_kafka && r.overloaded);
        assert!(
            r.bottleneck.starts_with("sink (at 100%"),
            "{}",
            r.bottleneck
        );
        assert_eq!(r.missed_sends, 3);
    }

    #[test]
    fn a_record_that_is_nowhere_is_lost() {
        let (plan, series) = (plan(), series(0.0, 1000.0));
        let processor =
            serde_json::json!({"delivered": 150_000, "dropped": 9_000, "dead_lettered": 990});
        let r = build(&totals(&plan, &series, &processor, 0));
        assert_eq!((r.lost, r.delivered_uncommitted), (10, 0));
        assert!(r.drained);
        assert_eq!(r.bottleneck, "none: the producer sets the pace");
    }

    #[test]
    fn writes_after_the_last_commit_are_counted_apart_not_as_negative_loss() {
        let (plan, series) = (plan(), series(0.0, 2000.0));
        let processor = serde_json::json!({"delivered": 40_100, "dropped": 0, "dead_lettered": 0});
        let r = build(&totals(&plan, &series, &processor, 120_000));
        assert_eq!((r.lost, r.delivered_uncommitted), (0, 100));
    }

    #[test]
    fn shedding_and_a_slow_processor_are_named() {
        assert!(bottleneck(0.5, 0.75, 0.0, 8000.0).contains("75% of the records were shed"));
        assert!(bottleneck(0.5, 0.0, 500.0, 8000.0).starts_with("processor"));
        // A little growth (a stall inside the window, say) is not a slow processor.
        assert!(bottleneck(0.75, 0.0, 17.0, 1500.0).starts_with("none"));
    }
}
