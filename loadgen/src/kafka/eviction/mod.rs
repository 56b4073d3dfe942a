//! Experiment 6 (and its control, 6c): a consumer group under a slow sink.
//!
//! Each run of the config: a fresh 12-partition topic with a backlog, a producer at a steady
//! rate, three `loadgen process --source kafka` children in one group with the run's flags, and
//! one sinkd they share (the slow sink). Every second the experiment reads each processor's
//! `/metrics`: partitions owned, lag, evictions (counted by the client from its own
//! `MAX_POLL_EXCEEDED` events), rebalances, stalled partitions. At the end: sinkd's audit
//! (duplicates are replays, missing ids would be loss), one chart per run of partitions per
//! processor and one of lag per processor, and a table. With `--repeat N` each run is made N
//! times and the table gives min / median / max: one good run of a consumer group proves
//! nothing.
//!
//! - [`group`]: one run, from the empty topic to the audit.
//! - [`summary`]: the tables, single and repeated.

mod group;
mod summary;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::chart::{Chart, Series};
use crate::cli::ExperimentArgs;
use crate::output::write_chart;
use crate::units::duration as parse_duration;

/// The broker-side setting of a consumer-group experiment.
#[derive(Debug, Clone, Deserialize)]
pub struct KafkaSpec {
    /// Partitions of the topic.
    pub partitions: i32,
    /// Processor processes in the group.
    pub processors: usize,
    /// sinkd's limit, writes/s, shared by all processors.
    pub sink_rate: f64,
    /// Records produced before the processors start.
    pub backlog: u64,
    /// The producer's steady rate while the run lasts, events/s.
    pub produce_rate: f64,
    /// How long each run lasts (scaled by --time-scale).
    pub duration: String,
}

/// One run's outcome.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EvictionResult {
    pub label: String,
    pub evictions: u64,
    pub rebalances: u64,
    pub produced: u64,
    pub distinct: u64,
    pub duplicates: u64,
    /// Produced ids sinkd does not have when the run stops (after up to a minute of drain):
    /// lost, or still in Kafka as lag.
    pub missing: u64,
    pub lag_max: f64,
    /// Highest lag seen on a processor other than the one evicted first, in the 20 s after
    /// the first eviction (the survivors' spike); 0 without an eviction.
    pub survivor_lag_peak: f64,
    pub first_eviction_s: Option<f64>,
    /// Records purged before they reached the sink because their partition was revoked
    /// (summed over processors; 0 for loops without the reactive source).
    #[serde(default)]
    pub revoked_unsent: u64,
    /// Records being written when their partition was revoked: what rebalances may duplicate.
    #[serde(default)]
    pub revoked_in_flight: u64,
    /// Stalled partitions detected, and recovery steps taken (summed over processors).
    #[serde(default)]
    pub stalls: u64,
    #[serde(default)]
    pub stall_recoveries: u64,
    /// Partitions still stalled at the last reading (summed over processors).
    #[serde(default)]
    pub stalled_at_end: u64,
}

/// One processor's readings at one second.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
struct Reading {
    t: f64,
    assigned: f64,
    lag: f64,
    evictions: f64,
    rebalances: f64,
    #[serde(default)]
    stalled: f64,
}

/// A chart of one reading per processor: file, what it shows, y label, the reading.
type ChartSpec = (
    &'static str,
    &'static str,
    &'static str,
    fn(&Reading) -> f64,
);

/// Draws the run's charts from its readings: partitions, lag and evictions per processor.
fn write_charts(dir: &Path, label: &str, readings: &[Vec<Reading>]) -> anyhow::Result<()> {
    let series = |f: fn(&Reading) -> f64| -> Vec<Series> {
        readings
            .iter()
            .enumerate()
            .map(|(i, r)| Series {
                name: format!("processor {}", i + 1),
                points: r.iter().map(|x| (x.t, f(x))).collect(),
            })
            .collect()
    };
    let charts: [ChartSpec; 3] = [
        (
            "partitions.svg",
            "partitions owned per processor",
            "partitions",
            |r| r.assigned,
        ),
        (
            "lag.svg",
            "consumer-group lag per processor",
            "events",
            |r| r.lag,
        ),
        (
            "evictions.svg",
            "evictions so far, per processor",
            "evictions",
            |r| r.evictions,
        ),
    ];
    for (file, what, y_label, f) in charts {
        write_chart(
            &dir.join(file),
            &Chart::new(format!("{label}: {what}"), "seconds", y_label, series(f)),
        )?;
    }
    Ok(())
}

/// The folder of run `run` (0-based), repeat `rep` (0-based) of `repeat`.
fn run_dir(out: &Path, run: usize, rep: usize, repeat: usize) -> PathBuf {
    let dir = out.join(format!("run-{}", run + 1));
    if repeat > 1 {
        dir.join(format!("rep-{}", rep + 1))
    } else {
        dir
    }
}

/// `--replot`: redraws every run's charts from the readings a previous run left in `out`.
pub fn replot(runs: &[(String, Vec<String>)], out: &Path) -> anyhow::Result<ExitCode> {
    for (i, (label, _)) in runs.iter().enumerate() {
        let top = out.join(format!("run-{}", i + 1));
        let mut dirs = vec![top.clone()];
        for rep in 0.. {
            let d = top.join(format!("rep-{}", rep + 1));
            if !d.is_dir() {
                break;
            }
            dirs.push(d);
        }
        let mut drawn = 0;
        for dir in dirs {
            let path = dir.join("readings.json");
            let Ok(text) = std::fs::read_to_string(&path) else {
                continue;
            };
            let readings: Vec<Vec<Reading>> = serde_json::from_str(&text)
                .with_context(|| format!("invalid {}", path.display()))?;
            write_charts(&dir, label, &readings)?;
            drawn += 1;
        }
        anyhow::ensure!(
            drawn > 0,
            "cannot read {}/readings.json: run the experiment first",
            top.display()
        );
    }
    if let Ok(md) = std::fs::read_to_string(out.join("summary.md")) {
        println!("{md}");
    }
    println!(
        "redrew {}/run-*/{{partitions,lag,evictions}}.svg",
        out.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// What the experiment is: its name, title, question and runs, from the config.
pub struct Experiment<'a> {
    pub name: &'a str,
    pub title: &'a str,
    pub question: &'a str,
    pub runs: &'a [(String, Vec<String>)],
    pub spec: &'a KafkaSpec,
}

/// Runs every run `--repeat` times, then writes the summary. Exits non-zero unless the last
/// run (the fix) had no eviction and nothing undelivered in every repeat.
pub async fn run(e: Experiment<'_>, args: &ExperimentArgs, out: &Path) -> anyhow::Result<ExitCode> {
    let duration = parse_duration(&e.spec.duration)
        .map_err(anyhow::Error::msg)
        .with_context(|| format!("config {}: invalid duration '{}'", e.name, e.spec.duration))?
        .mul_f64(args.time_scale);
    let repeat = args.repeat.max(1);
    println!(
        "{}: {}\n{}\n(time scale {}: {:.0}s per run, {repeat} time(s) each)\n",
        e.name,
        e.title,
        e.question,
        args.time_scale,
        duration.as_secs_f64()
    );
    for (label, flags) in e.runs {
        println!(
            "run '{label}': {} processors, loadgen process {}",
            e.spec.processors,
            flags.join(" ")
        );
    }
    if args.dry_run {
        return Ok(ExitCode::SUCCESS);
    }
    let (_broker, bootstrap) = super::broker(args.bootstrap_servers.as_deref())?;
    let stamp = std::process::id();
    let mut results: Vec<Vec<EvictionResult>> = Vec::new();
    for (i, (label, flags)) in e.runs.iter().enumerate() {
        let mut reps = Vec::new();
        for rep in 0..repeat {
            let dir = run_dir(out, i, rep, repeat);
            std::fs::create_dir_all(&dir)?;
            let topic = format!("exp6-{stamp}-{}-{}", i + 1, rep + 1);
            let setting = group::Setting {
                label,
                flags,
                spec: e.spec,
                bootstrap: &bootstrap,
                topic: &topic,
                duration,
            };
            let r = group::run_one(&setting, &dir).await?;
            println!(
                "  {label} #{}: evictions {}, rebalances {}, duplicates {}, undelivered {}, stalls {}, max lag {:.0}",
                rep + 1,
                r.evictions,
                r.rebalances,
                r.duplicates,
                r.missing,
                r.stalls,
                r.lag_max
            );
            reps.push(r);
        }
        results.push(reps);
    }
    let md = summary::markdown(e.title, e.question, &results);
    std::fs::write(out.join("summary.md"), &md)?;
    std::fs::write(
        out.join("experiment.json"),
        serde_json::to_string_pretty(&results)?,
    )?;
    println!(
        "\n{md}\nwrote {}/{{summary.md, experiment.json, run-*/}}",
        out.display()
    );
    let fixed_clean = results
        .last()
        .is_some_and(|reps| reps.iter().all(|r| r.evictions == 0 && r.missing == 0));
    Ok(if fixed_clean {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
