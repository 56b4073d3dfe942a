//! Finding an experiment's config and checking it before anything runs.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};

use super::{Config, Kind};
use crate::check::Check;
use crate::cli::{ExperimentArgs, ProcessArgs};
use crate::telemetry::Sample;

/// A config, checked, with where its outputs go and the gates over each run.
pub(super) struct Loaded {
    pub(super) config: Config,
    pub(super) out: PathBuf,
    pub(super) checks: Vec<Check>,
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

fn read(path: &Path) -> anyhow::Result<Config> {
    serde_json::from_str(&std::fs::read_to_string(path)?)
        .with_context(|| format!("invalid config {}", path.display()))
}

/// Finds and checks the experiment `args.name`; `None` after listing them (`list`).
pub(super) fn load(args: &ExperimentArgs) -> anyhow::Result<Option<Loaded>> {
    let checks = crate::check::parse_checks(&args.checks)?;
    let paths = configs(&args.configs)?;
    if args.name == "list" {
        for p in &paths {
            let c = read(p)?;
            println!("{:<28} {}", c.name, c.title);
        }
        return Ok(None);
    }
    let names: Vec<String> = paths
        .iter()
        .filter_map(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .collect();
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
    let config = read(&paths[index])?;
    check(&config, args)?;
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("out/experiment-{}", config.name)));
    std::fs::create_dir_all(&out).with_context(|| format!("cannot create {}", out.display()))?;
    Ok(Some(Loaded {
        config,
        out,
        checks,
    }))
}

/// What only some kinds of experiment accept, and every chart field.
fn check(config: &Config, args: &ExperimentArgs) -> anyhow::Result<()> {
    if args.repeat == 0 {
        bail!("invalid value '0' for '--repeat': at least 1");
    }
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
    if args.memory_limit.is_some() && args.over_kafka() {
        bail!(
            "'--memory-limit' applies to the embedded runs, not with '--kafka' or '--bootstrap-servers'"
        );
    }
    if let Some(bad) = args.only.iter().find(|&&n| n == 0 || n > config.runs.len()) {
        bail!(
            "invalid value '{bad}' for '--only': config {} has runs 1 to {}",
            config.name,
            config.runs.len()
        );
    }
    for c in &config.charts {
        if Sample::default().field(&c.field).is_none() {
            bail!(
                "config {}: unknown chart field '{}' (valid: {})",
                config.name,
                c.field,
                crate::telemetry::field_names()
            );
        }
    }
    Ok(())
}

/// Experiments 6 and 6c: a consumer group over Kafka, run by [`crate::kafka::eviction`].
pub(super) async fn run_kafka(l: &Loaded, args: &ExperimentArgs) -> anyhow::Result<ExitCode> {
    let config = &l.config;
    let spec = config.kafka.as_ref().with_context(|| {
        format!(
            "config {}: kind kafka-eviction needs \"kafka\"",
            config.name
        )
    })?;
    let runs: Vec<(String, Vec<String>)> = config
        .runs
        .iter()
        .enumerate()
        .filter(|(i, _)| args.only.is_empty() || args.only.contains(&(i + 1)))
        .map(|(_, r)| (r.label.clone(), r.args.clone()))
        .collect();
    if args.replot {
        return crate::kafka::eviction::replot(&runs, &l.out);
    }
    // Every run's processor flags are checked before anything starts: they are the argv of
    // its `loadgen process` children.
    for (label, flags) in &runs {
        let argv = std::iter::once("process".to_string()).chain(flags.iter().cloned());
        if let Err(e) = <ProcessArgs as clap::Parser>::try_parse_from(argv) {
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
    crate::kafka::eviction::run(experiment, args, &l.out).await
}
