//! The experiment's tables (summary.md), its analysis (experiment.json), and the stall
//! analysis of experiment 5.

use super::load::Loaded;
use super::runs::Done;
use super::{Kind, StallAnalysis, StallSpec};
use crate::cli::ExperimentArgs;
use crate::pipeline::Outcome;
use crate::telemetry::Sample;

/// Mean of a field over the steady part of a run (after its first tenth, before the drain).
pub(super) fn steady_mean(outcome: &Outcome, f: impl Fn(&Sample) -> f64, total_s: f64) -> f64 {
    let xs: Vec<f64> = outcome
        .series
        .iter()
        .filter(|s| s.t >= total_s * 0.1 && s.t <= total_s)
        .map(f)
        .collect();
    if xs.is_empty() {
        0.0
    } else {
        xs.iter().sum::<f64>() / xs.len() as f64
    }
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

/// Writes summary.md and experiment.json, and prints the table.
pub(super) fn write(l: &Loaded, args: &ExperimentArgs, done: &Done<'_>) -> anyhow::Result<()> {
    let config = &l.config;
    let mut table = format!("# {}\n\n{}\n\n", config.title, config.question);
    table.push_str(&runs_table(done));
    if config.kind == Kind::Stall {
        table.push_str(&stall_table(done));
    }
    std::fs::write(l.out.join("summary.md"), &table)?;
    std::fs::write(
        l.out.join("experiment.json"),
        serde_json::to_string_pretty(&serde_json::json!({
            "name": config.name,
            "time_scale": args.time_scale,
            "runs": done.results,
        }))?,
    )?;
    println!("{table}\nwrote {}", l.out.display());
    Ok(())
}

fn runs_table(done: &Done<'_>) -> String {
    let mut table = String::from(
        "| run | delivered/s (steady) | produced | delivered | dropped | dead-lettered | lost | order violations | p99 ms | RSS peak MB | queue high-water | bottleneck |\n|---|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for (spec, o, total) in &done.outcomes {
        let r = &o.report;
        table.push_str(&format!(
            "| {} | {:.0} | {} | {} | {} | {} | {} | {} | {:.1} | {:.1} | {} | {} |\n",
            spec.label,
            steady_mean(o, |x| x.delivered_rate, *total),
            r.produced,
            r.delivered,
            r.dropped.total,
            r.dead_lettered,
            r.lost,
            r.ordering_violations,
            r.latency_ms.p99,
            r.rss_peak_bytes as f64 / 1e6,
            r.queue.high_water,
            r.bottleneck
        ));
    }
    table
}

fn stall_table(done: &Done<'_>) -> String {
    let mut table = String::from(
        "\n| run | lag before | lag growth /s during the stall | peak lag | recovery s | theoretical drain s | ratio |\n|---|---|---|---|---|---|---|\n",
    );
    for r in &done.results {
        if let Some(a) = r.stall {
            table.push_str(&format!(
                "| {} | {:.0} | {:.0} | {:.0} | {} | {:.1} | {} |\n",
                r.label,
                a.lag_before,
                a.lag_growth_per_s,
                a.lag_peak,
                a.recovery_s
                    .map_or("not within the run".into(), |v| format!("{v:.1}")),
                a.theoretical_drain_s,
                a.recovery_ratio.map_or("-".into(), |v| format!("{v:.2}"))
            ));
        }
    }
    table
}
