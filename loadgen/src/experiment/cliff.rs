//! The cliff of `--memory-limit`: how each run under the limit ended, when, and against what
//! prediction; its table in summary.md, its object in experiment.json, and the chart of memory
//! against the limit.
//!
//! The prediction is the issue's: limit ÷ ((rate − ceiling) × bytes per event), with the
//! offered rate and the sink's ceiling from the run's plan, and the bytes per event *measured*:
//! the least-squares slope of the child's RSS against its queue depth over its time series
//! (resident bytes per queued event, allocator and all). It ignores the RSS the process had
//! before the queue grew, so a run dies somewhat before it.

use serde::{Deserialize, Serialize};

use super::Done;
use super::load::Loaded;
use crate::chart::{Chart, Series};
use crate::memlimit::Mechanism;
use crate::memlimit::fate::Fate;
use crate::telemetry::Sample;

/// Below this many queued events, the queue did not grow enough to weigh an event by.
const MIN_GROWTH: f64 = 10_000.0;

/// One run under the limit.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Cliff {
    pub(super) limit_bytes: u64,
    pub(super) mechanism: Mechanism,
    /// Why `auto` did not get a cgroup, when it fell back to the rlimit.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub(super) fallback: Option<String>,
    pub(super) fate: Fate,
    /// Seconds from the child's start to its death (`None`: it lived).
    pub(super) died_at_s: Option<f64>,
    /// The highest reading of what the limit counts (cgroup charge, or VmData), bytes.
    pub(super) peak_usage_bytes: u64,
    /// Resident bytes per queued event: the slope of RSS against queue depth.
    pub(super) bytes_per_event: Option<f64>,
    pub(super) rate: f64,
    pub(super) ceiling: f64,
    /// limit ÷ ((rate − ceiling) × bytes per event), seconds.
    pub(super) predicted_s: Option<f64>,
    /// died_at_s ÷ predicted_s.
    pub(super) ratio: Option<f64>,
    /// The heap profile taken at 80% of the limit, or why there is none.
    pub(super) profile: Result<Profile, String>,
    /// What the limit counted over time, sampled from outside: (seconds, bytes).
    #[serde(skip)]
    pub(super) usage: Vec<(f64, u64)>,
}

/// A heap profile taken from the child.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Profile {
    pub(super) at_s: f64,
    pub(super) usage_bytes: u64,
    /// File names in the run's folder.
    pub(super) pprof: String,
    pub(super) flamegraph: String,
}

/// limit ÷ ((rate − ceiling) × bytes per event): when a queue that grows at the excess fills
/// the limit. `None` when nothing is in excess or an event weighs nothing.
pub(super) fn predicted_s(
    limit_bytes: u64,
    rate: f64,
    ceiling: f64,
    bytes_per_event: f64,
) -> Option<f64> {
    let growth = (rate - ceiling) * bytes_per_event;
    (growth > 0.0).then(|| limit_bytes as f64 / growth)
}

/// Resident bytes per queued event: the least-squares slope of RSS against queue depth. `None`
/// unless the queue grew by [`MIN_GROWTH`] events over the series.
pub(super) fn bytes_per_event(series: &[Sample]) -> Option<f64> {
    let points: Vec<(f64, f64)> = series
        .iter()
        .map(|s| (s.queue_depth as f64, s.rss_bytes as f64))
        .collect();
    let (lo, hi) = points
        .iter()
        .fold((f64::MAX, f64::MIN), |(lo, hi), &(x, _)| {
            (lo.min(x), hi.max(x))
        });
    if points.len() < 2 || hi - lo < MIN_GROWTH {
        return None;
    }
    let n = points.len() as f64;
    let mx = points.iter().map(|p| p.0).sum::<f64>() / n;
    let my = points.iter().map(|p| p.1).sum::<f64>() / n;
    let sxy: f64 = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    let sxx: f64 = points.iter().map(|p| (p.0 - mx) * (p.0 - mx)).sum();
    Some(sxy / sxx)
}

impl Cliff {
    /// Fills in the measured weight of an event and the prediction from the run's series.
    pub(super) fn predict(&mut self, series: &[Sample]) {
        self.bytes_per_event = bytes_per_event(series);
        self.predicted_s = self
            .bytes_per_event
            .and_then(|b| predicted_s(self.limit_bytes, self.rate, self.ceiling, b));
        self.ratio = match (self.died_at_s, self.predicted_s) {
            (Some(d), Some(p)) => Some(d / p),
            _ => None,
        };
    }
}

fn secs(v: Option<f64>) -> String {
    v.map_or("—".into(), |v| format!("{v:.1}"))
}

/// The limit's table, one row per run.
pub(super) fn table(done: &Done<'_>) -> String {
    let mut t = String::from(
        "\n| run | limit | mechanism | how it ended | died at s | predicted s | ratio | bytes/event (RSS ÷ queue depth) | peak charge MB | heap profile |\n|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for r in &done.results {
        let Some(c) = &r.cliff else { continue };
        let profile = match &c.profile {
            Ok(p) => format!(
                "{} at {:.1} s ({:.0} MB)",
                p.flamegraph,
                p.at_s,
                p.usage_bytes as f64 / 1e6
            ),
            Err(why) => why.clone(),
        };
        t.push_str(&format!(
            "| {} | {} MiB | {} | {} | {} | {} | {} | {} | {:.1} | {} |\n",
            r.label,
            c.limit_bytes >> 20,
            c.mechanism,
            c.fate,
            secs(c.died_at_s),
            secs(c.predicted_s),
            c.ratio.map_or("—".into(), |v| format!("{v:.2}")),
            c.bytes_per_event.map_or("—".into(), |v| format!("{v:.0}")),
            c.peak_usage_bytes as f64 / 1e6,
            profile
        ));
    }
    t
}

/// memory-limit.svg: each run's RSS and the limit's own count, against the limit.
pub(super) fn draw(l: &Loaded, done: &Done<'_>) -> anyhow::Result<()> {
    let mut series = Vec::new();
    let mut end: f64 = 0.0;
    let mut limit = 0;
    for ((spec, outcome, _), r) in done.outcomes.iter().zip(&done.results) {
        let Some(c) = &r.cliff else { continue };
        limit = c.limit_bytes;
        let rss: Vec<(f64, f64)> = outcome
            .series
            .iter()
            .map(|s| (s.t, s.rss_bytes as f64 / 1e6))
            .collect();
        let usage: Vec<(f64, f64)> = c.usage.iter().map(|&(t, b)| (t, b as f64 / 1e6)).collect();
        end = end
            .max(rss.last().map_or(0.0, |p| p.0))
            .max(usage.last().map_or(0.0, |p| p.0));
        series.push(Series {
            name: format!("{} RSS", spec.label),
            points: rss,
        });
        series.push(Series {
            name: format!("{} charged ({})", spec.label, c.mechanism),
            points: usage,
        });
    }
    if series.is_empty() {
        return Ok(());
    }
    let mb = limit as f64 / 1e6;
    series.push(Series {
        name: "limit".into(),
        points: vec![(0.0, mb), (end, mb)],
    });
    crate::output::write_chart(
        &l.out.join("memory-limit.svg"),
        &Chart::new(
            format!(
                "{}: memory against a {} MiB limit",
                l.config.name,
                limit >> 20
            ),
            "seconds",
            "MB",
            series,
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_prediction_is_the_limit_over_the_growth() {
        // 256 MiB at 6,000 excess events/s of 650 bytes: 68.8 s.
        let p = predicted_s(256 << 20, 8000.0, 2000.0, 650.0).unwrap();
        assert!((p - 268_435_456.0 / 3_900_000.0).abs() < 1e-9);
        assert!((p - 68.83).abs() < 0.01);
        assert_eq!(predicted_s(256 << 20, 2000.0, 2000.0, 650.0), None);
        assert_eq!(predicted_s(256 << 20, 1000.0, 2000.0, 650.0), None);
    }

    fn sample(depth: u64, rss: u64) -> Sample {
        Sample {
            queue_depth: depth,
            rss_bytes: rss,
            ..Sample::default()
        }
    }

    #[test]
    fn bytes_per_event_is_the_slope_of_rss_against_depth() {
        let series: Vec<Sample> = (0..50)
            .map(|i| sample(i * 6000, 20_000_000 + i * 6000 * 640))
            .collect();
        assert!((bytes_per_event(&series).unwrap() - 640.0).abs() < 1e-6);
        // A bounded queue's few hundred events weigh nothing measurable.
        let flat: Vec<Sample> = (0..50).map(|i| sample(i % 500, 20_000_000)).collect();
        assert_eq!(bytes_per_event(&flat), None);
    }

    #[test]
    fn the_ratio_is_death_over_prediction_and_only_for_a_death() {
        let mut c = Cliff {
            limit_bytes: 256 << 20,
            mechanism: Mechanism::RlimitData,
            fallback: None,
            fate: Fate::OomKilled,
            died_at_s: Some(60.0),
            peak_usage_bytes: 0,
            bytes_per_event: None,
            rate: 8000.0,
            ceiling: 2000.0,
            predicted_s: None,
            ratio: None,
            profile: Err("none".into()),
            usage: Vec::new(),
        };
        let series: Vec<Sample> = (0..50)
            .map(|i| sample(i * 6000, 20_000_000 + i * 6000 * 650))
            .collect();
        c.predict(&series);
        assert!((c.ratio.unwrap() - 60.0 / 68.83).abs() < 0.001);
        c.died_at_s = None;
        c.predict(&series);
        assert_eq!(c.ratio, None);
        assert!(c.predicted_s.is_some());
    }
}
