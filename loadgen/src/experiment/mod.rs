//! `loadgen experiment NAME`: the lab's experiments, each from a committed config in
//! `loadgen/experiments/`. Every run leaves its own folder (time series, report.json, HDR log,
//! charts); the experiment adds the charts that put the runs' curves on one axis, a summary
//! table (summary.md) and its analysis (experiment.json).
//!
//! It goes: [`load`] the config and check it whole, [`runs`] each in a process of its own (or
//! read back with `--replot`; under `--memory-limit`, [`limited`] and judged against its
//! [`cliff`]; with `--kafka`, through a real broker by [`over_kafka`], its report by
//! [`kafka_report`]), draw the [`charts`], write the [`summary`]. The Kafka consumer-group
//! experiments (6, 6c) have their own runner ([`crate::kafka::eviction`]).

mod charts;
mod cliff;
mod folder;
mod heap;
mod kafka_report;
mod limited;
mod load;
mod measure;
mod over_kafka;
mod runs;
mod summary;

use std::process::ExitCode;

use serde::{Deserialize, Serialize};

use crate::cli::ExperimentArgs;
use crate::report::Report;

#[derive(Debug, Deserialize)]
pub(super) struct Config {
    pub(super) name: String,
    pub(super) title: String,
    pub(super) question: String,
    pub(super) kind: Kind,
    #[serde(default)]
    pub(super) x_label: Option<String>,
    pub(super) runs: Vec<RunSpec>,
    #[serde(default)]
    pub(super) charts: Vec<ChartSpec>,
    #[serde(default)]
    pub(super) stall: Option<StallSpec>,
    #[serde(default)]
    pub(super) kafka: Option<crate::kafka::eviction::KafkaSpec>,
}

#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub(super) enum Kind {
    /// Runs compared over time, curves on one axis.
    Compare,
    /// Runs over a parameter: throughput and p99 against it.
    Sweep,
    /// Runs through a downstream stall: lag growth, peak and recovery.
    Stall,
    /// Kafka consumer groups under a slow sink: evictions, partition moves, lag (experiment 6).
    KafkaEviction,
}

#[derive(Debug, Deserialize)]
pub(super) struct RunSpec {
    pub(super) label: String,
    pub(super) args: Vec<String>,
    #[serde(default)]
    pub(super) x: Option<f64>,
    #[serde(default)]
    pub(super) series: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(super) struct ChartSpec {
    pub(super) file: String,
    pub(super) title: String,
    pub(super) y_label: String,
    pub(super) field: String,
    #[serde(default)]
    pub(super) also: Option<String>,
}

#[derive(Debug, Deserialize, Clone, Copy)]
pub(super) struct StallSpec {
    pub(super) at_s: f64,
    pub(super) for_s: f64,
    pub(super) sink_rate: f64,
    pub(super) source_rate: f64,
}

/// What the runs left: each run's spec, outcome and schedule length, its result for
/// experiment.json, and whether every gate held.
pub(super) struct Done<'a> {
    pub(super) outcomes: Vec<(&'a RunSpec, crate::pipeline::Outcome, f64)>,
    pub(super) results: Vec<RunResult>,
    pub(super) all_ok: bool,
}

#[derive(Debug, Serialize)]
pub(super) struct RunResult {
    pub(super) label: String,
    pub(super) report: Report,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) stall: Option<StallAnalysis>,
    /// Under `--memory-limit`: how the run ended against the limit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) cliff: Option<cliff::Cliff>,
}

#[derive(Debug, Serialize, Clone, Copy)]
pub(super) struct StallAnalysis {
    pub(super) lag_before: f64,
    pub(super) lag_growth_per_s: f64,
    pub(super) lag_peak: f64,
    pub(super) recovery_s: Option<f64>,
    pub(super) theoretical_drain_s: f64,
    pub(super) recovery_ratio: Option<f64>,
}

/// Runs experiment `args.name`. Ctrl-C or SIGTERM stops it with everything it started: its
/// children are killed as their handles drop, and a broker it started with them.
pub async fn run(args: ExperimentArgs) -> anyhow::Result<ExitCode> {
    let Some(loaded) = load::load(&args)? else {
        return Ok(ExitCode::SUCCESS); // `list`
    };
    tokio::select! {
        result = run_loaded(&loaded, &args) => result,
        _ = crate::child::signalled() => {
            anyhow::bail!("interrupted: the runs under way and the processes they started were stopped")
        }
    }
}

async fn run_loaded(loaded: &load::Loaded, args: &ExperimentArgs) -> anyhow::Result<ExitCode> {
    if loaded.config.kind == Kind::KafkaEviction {
        return load::run_kafka(loaded, args).await;
    }
    let done = runs::run_all(loaded, args).await?;
    if args.dry_run {
        return Ok(ExitCode::SUCCESS);
    }
    charts::draw(loaded, &done)?;
    summary::write(loaded, args, &done)?;
    Ok(if done.all_ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
