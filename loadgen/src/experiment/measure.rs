//! Figures read off a run's time series: the steady-state mean of a field, and the stall
//! analysis of experiment 5 (lag before, growth during, peak, and recovery against the
//! theoretical drain time).

use super::{StallAnalysis, StallSpec};
use crate::pipeline::Outcome;
use crate::telemetry::Sample;

/// Mean of a field over the steady part of a run (after its first tenth, before the drain).
pub(super) fn steady_mean(outcome: &Outcome, f: impl Fn(&Sample) -> f64, total_s: f64) -> f64 {
    crate::analysis::mean(
        outcome
            .series
            .iter()
            .filter(|s| s.t >= total_s * 0.1 && s.t <= total_s)
            .map(f),
    )
}

pub(super) fn analyse_stall(spec: StallSpec, scale: f64, series: &[Sample]) -> StallAnalysis {
    let (at, end) = (spec.at_s * scale, (spec.at_s + spec.for_s) * scale);
    let before: Vec<f64> = series
        .iter()
        .filter(|s| s.t >= at * 0.5 && s.t < at)
        .map(|s| s.lag as f64)
        .collect();
    let lag_before = before.iter().copied().fold(0.0, f64::max);
    let during: Vec<(f64, f64)> = series
        .iter()
        .filter(|s| s.t >= at && s.t <= end)
        .map(|s| (s.t, s.lag as f64))
        .collect();
    let lag_peak = series
        .iter()
        .filter(|s| s.t >= at)
        .map(|s| s.lag as f64)
        .fold(0.0, f64::max);
    let lag_growth_per_s = match (during.first(), during.last()) {
        (Some(a), Some(b)) if b.0 > a.0 => (b.1 - a.1) / (b.0 - a.0),
        _ => 0.0,
    };
    // Back in the band: within the pre-stall maximum plus a small allowance for sampling.
    let band = lag_before * 1.2 + spec.source_rate * 0.05;
    let recovered_at = series
        .iter()
        .filter(|s| s.t > end)
        .find(|s| (s.lag as f64) <= band)
        .map(|s| s.t);
    let spare = spec.sink_rate - spec.source_rate;
    let theoretical_drain_s = if spare > 0.0 {
        (lag_peak - lag_before).max(0.0) / spare
    } else {
        f64::INFINITY
    };
    let recovery_s = recovered_at.map(|t| t - end);
    StallAnalysis {
        lag_before,
        lag_growth_per_s,
        lag_peak,
        recovery_s,
        theoretical_drain_s,
        recovery_ratio: recovery_s.map(|r| r / theoretical_drain_s.max(1e-9)),
    }
}
