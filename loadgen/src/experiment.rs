//! `loadgen experiment NAME`: the lab's experiments, each from a committed config in
//! `loadgen/experiments/`. Every run leaves its own folder (time series, report.json, HDR log,
//! charts); the experiment adds the charts that put the runs' curves on one axis, a summary
//! table (summary.md) and its analysis (experiment.json).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::Parser;
use serde::{Deserialize, Serialize};

use crate::chart::{Chart, Series};
use crate::cli::{Cli, Command, ExperimentArgs, RunArgs};
use crate::pipeline::Outcome;
use crate::plan::Plan;
use crate::report::Report;
use crate::telemetry::Sample;

#[derive(Debug, Deserialize)]
struct Config {
    name: String,
    title: String,
    question: String,
    kind: Kind,
    #[serde(default)]
    x_label: Option<String>,
    runs: Vec<RunSpec>,
    #[serde(default)]
    charts: Vec<ChartSpec>,
    #[serde(default)]
    stall: Option<StallSpec>,
    #[serde(default)]
    kafka: Option<crate::kafka::eviction::KafkaSpec>,
}

#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
enum Kind {
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
struct RunSpec {
    label: String,
    args: Vec<String>,
    #[serde(default)]
    x: Option<f64>,
    #[serde(default)]
    series: Option<String>,
}

#[derive(Debug, Deserialize)]
struct ChartSpec {
    file: String,
    title: String,
    y_label: String,
    field: String,
    #[serde(default)]
    also: Option<String>,
}

#[derive(Debug, Deserialize, Clone, Copy)]
struct StallSpec {
    at_s: f64,
    for_s: f64,
    sink_rate: f64,
    source_rate: f64,
}

#[derive(Debug, Serialize)]
struct RunResult {
    label: String,
    report: Report,
    #[serde(skip_serializing_if = "Option::is_none")]
    stall: Option<StallAnalysis>,
}

#[derive(Debug, Serialize, Clone, Copy)]
struct StallAnalysis {
    lag_before: f64,
    lag_growth_per_s: f64,
    lag_peak: f64,
    recovery_s: Option<f64>,
    theoretical_drain_s: f64,
    recovery_ratio: Option<f64>,
}

/// Runs `loadgen run ARGS --out DIR` as a child process and reads back what it wrote.
pub async fn run_child(args: &[String], dir: &Path, quiet: bool) -> anyhow::Result<Outcome> {
    let mut cmd = crate::child::loadgen(args)?;
    cmd.arg("--out")
        .arg(dir)
        .stdout(std::process::Stdio::null());
    if quiet {
        cmd.arg("--quiet");
    }
    let status = cmd.status().await.context("cannot start the run")?;
    read_back(dir).with_context(|| format!("the run exited with {status}"))
}

/// Reads the report and time series a run left in `dir`.
fn read_back(dir: &Path) -> anyhow::Result<Outcome> {
    let report_path = dir.join("report.json");
    let text = std::fs::read_to_string(&report_path)
        .with_context(|| format!("no {}", report_path.display()))?;
    let report: Report = serde_json::from_str(&text)?;
    let series = read_csv(&dir.join("timeseries.csv"))?;
    Ok(Outcome {
        report,
        series,
        latency: crate::sink::histogram(),
    })
}

fn read_csv(path: &Path) -> anyhow::Result<Vec<Sample>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    crate::telemetry::from_csv(&text).with_context(|| format!("invalid {}", path.display()))
}

fn field(s: &Sample, name: &str) -> f64 {
    s.field(name).unwrap_or(f64::NAN)
}

fn configs(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read the experiment configs in {} (run from the repository root, or pass --configs)", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    out.sort();
    Ok(out)
}

fn slug(label: &str) -> String {
    label
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect()
}

/// Mean of a field over the steady part of a run (after its first tenth, before the drain).
fn steady_mean(outcome: &Outcome, f: impl Fn(&Sample) -> f64, total_s: f64) -> f64 {
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

fn analyse_stall(spec: StallSpec, scale: f64, series: &[Sample]) -> StallAnalysis {
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

pub async fn run(args: ExperimentArgs) -> anyhow::Result<ExitCode> {
    let checks = crate::check::parse_checks(&args.checks)?;
    let paths = configs(&args.configs)?;
    let names: Vec<String> = paths
        .iter()
        .filter_map(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .collect();
    if args.name == "list" {
        for p in &paths {
            let c: Config = serde_json::from_str(&std::fs::read_to_string(p)?)
                .with_context(|| format!("invalid config {}", p.display()))?;
            println!("{:<28} {}", c.name, c.title);
        }
        return Ok(ExitCode::SUCCESS);
    }
    let Some(index) = names
        .iter()
        .position(|n| *n == args.name || n.split('-').next() == Some(args.name.as_str()))
    else {
        bail!(
            "invalid value '{}' for '<NAME>': no such experiment; choose from: {}, or `list`",
            args.name,
            names.join(", ")
        );
    };
    if !(args.time_scale.is_finite() && args.time_scale > 0.0) {
        bail!(
            "invalid value '{}' for '--time-scale': must be above 0",
            args.time_scale
        );
    }
    let config: Config = serde_json::from_str(&std::fs::read_to_string(&paths[index])?)
        .with_context(|| format!("invalid config {}", paths[index].display()))?;
    if config.kind != Kind::KafkaEviction {
        if args.repeat != 1 {
            bail!(
                "invalid value '{}' for '--repeat': only the Kafka consumer-group experiments (6, 6c) repeat their runs",
                args.repeat
            );
        }
        if !args.only.is_empty() {
            bail!("'--only' applies to the Kafka consumer-group experiments (6, 6c)");
        }
    }
    if args.repeat == 0 {
        bail!("invalid value '0' for '--repeat': at least 1");
    }
    if config.kind == Kind::KafkaEviction {
        let spec = config.kafka.as_ref().with_context(|| {
            format!(
                "config {}: kind kafka-eviction needs \"kafka\"",
                config.name
            )
        })?;
        let out = args
            .out
            .clone()
            .unwrap_or_else(|| PathBuf::from(format!("out/experiment-{}", config.name)));
        std::fs::create_dir_all(&out)
            .with_context(|| format!("cannot create {}", out.display()))?;
        if let Some(bad) = args.only.iter().find(|&&n| n == 0 || n > config.runs.len()) {
            bail!(
                "invalid value '{bad}' for '--only': config {} has runs 1 to {}",
                config.name,
                config.runs.len()
            );
        }
        let runs: Vec<(String, Vec<String>)> = config
            .runs
            .iter()
            .enumerate()
            .filter(|(i, _)| args.only.is_empty() || args.only.contains(&(i + 1)))
            .map(|(_, r)| (r.label.clone(), r.args.clone()))
            .collect();
        if args.replot {
            return crate::kafka::eviction::replot(&runs, &out);
        }
        // Validate every run's processor flags before anything starts.
        for (label, flags) in &runs {
            let mut argv = vec!["loadgen".to_string(), "process".into()];
            argv.extend(flags.iter().cloned());
            if let Err(e) = Cli::try_parse_from(&argv) {
                bail!("config {} run '{label}': {e}", config.name);
            }
        }
        let experiment = crate::kafka::eviction::Experiment {
            name: &config.name,
            title: &config.title,
            question: &config.question,
            runs: &runs,
            spec,
        };
        return crate::kafka::eviction::run(experiment, &args, &out).await;
    }
    for c in &config.charts {
        if field(&Sample::default(), &c.field).is_nan() {
            bail!(
                "config {}: unknown chart field '{}' (valid: {})",
                config.name,
                c.field,
                crate::telemetry::field_names()
            );
        }
    }
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("out/experiment-{}", config.name)));
    std::fs::create_dir_all(&out).with_context(|| format!("cannot create {}", out.display()))?;
    println!(
        "{}: {}\n{}\n(time scale {})\n",
        config.name, config.title, config.question, args.time_scale
    );

    let mut results = Vec::new();
    let mut outcomes = Vec::new();
    let mut all_ok = true;
    for spec in &config.runs {
        // Validate the run's flags here, so a bad config fails before anything runs.
        let mut argv: Vec<String> = vec!["loadgen".into(), "run".into()];
        argv.extend(spec.args.iter().cloned());
        argv.extend(["--time-scale".into(), args.time_scale.to_string()]);
        let run_args: RunArgs = match Cli::try_parse_from(&argv) {
            Ok(Cli {
                command: Some(Command::Run(a)),
            }) => a,
            Ok(_) => unreachable!("argv starts with run"),
            Err(e) => bail!("config {} run '{}': {e}", config.name, spec.label),
        };
        let plan = Plan::from_args(&run_args)
            .with_context(|| format!("config {} run '{}'", config.name, spec.label))?;
        if args.dry_run {
            println!("{}: {}", spec.label, plan.to_json());
            continue;
        }
        let dir = out.join(slug(&spec.label));
        eprintln!("== {} ==", spec.label);
        // Each run in a process of its own: RSS belongs to one run, not to the runs before it.
        let outcome = if args.replot {
            read_back(&dir).with_context(|| {
                format!(
                    "run '{}' (--replot needs a previous run's folder)",
                    spec.label
                )
            })?
        } else {
            run_child(&argv[1..], &dir, args.quiet)
                .await
                .with_context(|| format!("run '{}'", spec.label))?
        };
        println!("== {} ==\n{}", spec.label, outcome.report.summary());
        all_ok &= crate::check::apply_checks(&checks, &outcome.report, "");
        let stall = config
            .stall
            .map(|s| analyse_stall(s, args.time_scale, &outcome.series));
        results.push(RunResult {
            label: spec.label.clone(),
            report: outcome.report.clone(),
            stall,
        });
        outcomes.push((spec, outcome, plan.schedule().total().as_secs_f64()));
    }

    if args.dry_run {
        return Ok(ExitCode::SUCCESS);
    }
    // Charts with every run's curve on one axis.
    for c in &config.charts {
        let mut series = Vec::new();
        for (spec, outcome, _) in &outcomes {
            series.push(Series {
                name: format!("{} {}", spec.label, c.field.replace('_', " ")),
                points: outcome
                    .series
                    .iter()
                    .map(|s| (s.t, field(s, &c.field)))
                    .collect(),
            });
            if let Some(also) = &c.also {
                series.push(Series {
                    name: format!("{} {}", spec.label, also.replace('_', " ")),
                    points: outcome
                        .series
                        .iter()
                        .map(|s| (s.t, field(s, also)))
                        .collect(),
                });
            }
        }
        crate::output::write_chart(
            &out.join(&c.file),
            &Chart {
                title: c.title.clone(),
                x_label: "seconds".into(),
                y_label: c.y_label.clone(),
                log_x: false,
                log_y: false,
                series,
            },
        )?;
    }
    let mut table = format!("# {}\n\n{}\n\n", config.title, config.question);
    if config.kind == Kind::Sweep {
        let mut groups: Vec<String> = Vec::new();
        for (spec, _, _) in &outcomes {
            let g = spec.series.clone().unwrap_or_default();
            if !groups.contains(&g) {
                groups.push(g);
            }
        }
        let x_label = config.x_label.clone().unwrap_or_else(|| "x".into());
        // Parameters that span decades read better on a log axis.
        let xs: Vec<f64> = config.runs.iter().filter_map(|r| r.x).collect();
        let wide = xs.iter().cloned().fold(f64::MAX, f64::min) > 0.0
            && xs.iter().cloned().fold(0.0, f64::max) / xs.iter().cloned().fold(f64::MAX, f64::min)
                >= 50.0;
        let mut throughput = Vec::new();
        let mut p99 = Vec::new();
        for g in &groups {
            let points: Vec<_> = outcomes
                .iter()
                .filter(|(s, _, _)| s.series.clone().unwrap_or_default() == *g)
                .collect();
            let name = if g.is_empty() {
                String::new()
            } else {
                format!("{g} ")
            };
            throughput.push(Series {
                name: format!("{name}delivered events/s"),
                points: points
                    .iter()
                    .map(|(s, o, t)| (s.x.unwrap_or(0.0), steady_mean(o, |x| x.delivered_rate, *t)))
                    .collect(),
            });
            p99.push(Series {
                name: format!("{name}p99 ms"),
                points: points
                    .iter()
                    .map(|(s, o, _)| (s.x.unwrap_or(0.0), o.report.latency_ms.p99))
                    .collect(),
            });
        }
        crate::output::write_chart(
            &out.join("throughput.svg"),
            &Chart {
                title: format!("{}: throughput", config.title),
                x_label: x_label.clone(),
                y_label: "events/s".into(),
                log_x: wide,
                log_y: false,
                series: throughput,
            },
        )?;
        crate::output::write_chart(
            &out.join("p99.svg"),
            &Chart {
                title: format!("{}: p99 latency", config.title),
                x_label,
                y_label: "ms".into(),
                log_x: wide,
                log_y: true,
                series: p99,
            },
        )?;
    }
    table.push_str("| run | delivered/s (steady) | produced | delivered | dropped | dead-lettered | lost | order violations | p99 ms | RSS peak MB | queue high-water | bottleneck |\n|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    for (spec, o, total) in &outcomes {
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
    if config.kind == Kind::Stall {
        table.push_str("\n| run | lag before | lag growth /s during the stall | peak lag | recovery s | theoretical drain s | ratio |\n|---|---|---|---|---|---|---|\n");
        for r in &results {
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
    }
    std::fs::write(out.join("summary.md"), &table)?;
    std::fs::write(
        out.join("experiment.json"),
        serde_json::to_string_pretty(
            &serde_json::json!({ "name": config.name, "time_scale": args.time_scale, "runs": results }),
        )?,
    )?;
    println!("{table}\nwrote {}", out.display());
    Ok(if all_ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
