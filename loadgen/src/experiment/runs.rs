//! Each run of an experiment in a process of its own, so RSS belongs to one run and not to the
//! runs before it; or, with `--replot`, read back from the folder a previous run left.

use std::path::Path;

use anyhow::Context;

use super::cliff::Cliff;
use super::folder::read_back;
use super::limited;
use super::load::Loaded;
use super::measure::analyse_stall;
use super::over_kafka;
use super::{Done, RunResult, RunSpec};
use crate::cli::{ExperimentArgs, RunArgs};
use crate::pipeline::Outcome;
use crate::plan::Plan;

/// Runs `loadgen run ARGS --out DIR` as a child process and reads back what it wrote.
pub(super) async fn run_child(args: &[String], dir: &Path, quiet: bool) -> anyhow::Result<Outcome> {
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

/// A run's argv (`run` and the config's flags, at the experiment's time scale), its flags and
/// its checked plan.
fn planned(l: &Loaded, spec: &RunSpec, scale: f64) -> anyhow::Result<(Vec<String>, RunArgs, Plan)> {
    let mut argv: Vec<String> = vec!["run".into()];
    argv.extend(spec.args.iter().cloned());
    argv.extend(["--time-scale".into(), scale.to_string()]);
    let run_args = <RunArgs as clap::Parser>::try_parse_from(&argv)
        .with_context(|| format!("config {} run '{}'", l.config.name, spec.label))?;
    let plan = Plan::from_args(&run_args)
        .with_context(|| format!("config {} run '{}'", l.config.name, spec.label))?;
    Ok((argv, run_args, plan))
}

/// Runs (or reads back) every run of the config, checking every run's flags first.
pub(super) async fn run_all<'a>(l: &'a Loaded, args: &ExperimentArgs) -> anyhow::Result<Done<'a>> {
    let config = &l.config;
    let kafka = args.over_kafka();
    let mut plans = Vec::new();
    for spec in &config.runs {
        let planned = planned(l, spec, args.time_scale)?;
        if kafka && planned.2.spill().is_some() {
            // `loadgen process --source kafka` has no spill: the topic is its overflow.
            eprintln!(
                "config {} run '{}': skipped over Kafka ('--queue spill' runs embedded only)",
                config.name, spec.label
            );
            continue;
        }
        if kafka {
            over_kafka::check(&planned.1)
                .with_context(|| format!("config {} run '{}'", config.name, spec.label))?;
        }
        plans.push((spec, planned));
    }
    // The broker lives as long as the experiment.
    let broker = if kafka && !args.dry_run && !args.replot {
        Some(crate::kafka::broker(args.bootstrap_servers.as_deref())?)
    } else {
        None
    };
    println!(
        "{}: {}\n{}\n(time scale {}{})\n",
        config.name,
        config.title,
        config.question,
        args.time_scale,
        broker.as_ref().map_or(String::new(), |(_, b)| format!(
            "; over Kafka at {b}: producer -> topic ({} partitions) -> loadgen process -> sinkd",
            over_kafka::PARTITIONS
        ))
    );
    let mut done = Done {
        outcomes: Vec::new(),
        results: Vec::new(),
        all_ok: true,
    };
    for (i, (spec, (argv, run_args, plan))) in plans.iter().enumerate() {
        if args.dry_run {
            println!("{}: {}", spec.label, plan.to_json());
            continue;
        }
        let dir = l.out.join(slug(&spec.label));
        eprintln!("== {} ==", spec.label);
        let kafka = broker.as_ref().map(|(_, bootstrap)| over_kafka::KafkaRun {
            flags: &argv[1..],
            args: run_args,
            plan,
            bootstrap,
            topic: format!("{}-{}-{}", config.name, std::process::id(), i + 1),
        });
        let (outcome, cliff) = one(spec, argv, plan, &dir, args, kafka.as_ref())
            .await
            .with_context(|| format!("run '{}'", spec.label))?;
        match &cliff {
            Some(c) if c.fate.died() => {
                println!(
                    "== {} ==\n{}: no report, the gates are not judged",
                    spec.label, c.fate
                );
                done.all_ok &= l.checks.is_empty();
            }
            _ => {
                println!("== {} ==\n{}", spec.label, outcome.report.summary());
                done.all_ok &= crate::check::apply_checks(&l.checks, &outcome.report, "");
            }
        }
        done.results.push(RunResult {
            label: spec.label.clone(),
            report: outcome.report.clone(),
            stall: config
                .stall
                .map(|s| analyse_stall(s, args.time_scale, &outcome.series)),
            cliff,
        });
        done.outcomes
            .push((spec, outcome, plan.schedule().total().as_secs_f64()));
    }
    Ok(done)
}

/// One run: read back (`--replot`), over Kafka, under the memory limit, or as a plain child.
async fn one(
    spec: &RunSpec,
    argv: &[String],
    plan: &Plan,
    dir: &Path,
    args: &ExperimentArgs,
    kafka: Option<&over_kafka::KafkaRun<'_>>,
) -> anyhow::Result<(Outcome, Option<Cliff>)> {
    if args.replot {
        if let Some((outcome, cliff)) = limited::read_back(dir)? {
            return Ok((outcome, Some(cliff)));
        }
        let outcome = read_back(dir).context("--replot needs a previous run's folder")?;
        return Ok((outcome, None));
    }
    if let Some(run) = kafka {
        return Ok((over_kafka::run_one(run, dir).await?, None));
    }
    let Some(bytes) = args.memory_limit else {
        return Ok((run_child(argv, dir, args.quiet).await?, None));
    };
    let (argv, lifted) = limited::lift_safety_cap(argv);
    if lifted {
        eprintln!(
            "{}: --safety-cap lifted: the memory limit ends this run",
            spec.label
        );
    }
    let run = limited::Run {
        label: &spec.label,
        argv: &argv,
        plan,
        dir,
        bytes,
        via: args.memory_limit_via,
    };
    let (outcome, cliff) = limited::run(run).await?;
    Ok((outcome, Some(cliff)))
}
