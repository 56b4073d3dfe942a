//! `loadgen`: open-model load, backpressured pipelines, and the experiments that measure them.
//!
//! Layers, as ripgrep keeps them: [`cli`] (the flags as typed) → [`plan`] (validated: what will
//! run) → [`pipeline`] (the run) → [`report`], [`output`] (what it leaves).

mod chaos;
mod chart;
mod check;
mod child;
mod cli;
mod experiment;
mod generator;
mod kafka;
mod output;
mod pipeline;
mod plan;
mod process;
mod produce;
mod progress;
mod report;
mod sweep;
mod telemetry;

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

use crate::check::Check;
use crate::cli::{Cli, Command, RunArgs};
use crate::plan::Plan;
use crate::progress::Progress;

/// With `--features heap-profile`: jemalloc, sampling allocations for `/debug/pprof/heap`.
#[cfg(feature = "heap-profile")]
#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc reads its options from this symbol at start-up: profiling on, one sample per 512 KiB.
#[cfg(feature = "heap-profile")]
#[allow(non_upper_case_globals, unsafe_code)]
#[unsafe(export_name = "malloc_conf")]
pub static malloc_conf: &[u8] = b"prof:true,prof_active:true,lg_prof_sample:19\0";

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("loadgen: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli
            .command
            .unwrap_or_else(|| Command::Run(RunArgs::default()))
        {
            Command::Run(args) => run(args).await,
            Command::Experiment(args) => experiment::run(args).await,
            Command::Sweep(args) => sweep::run(args).await,
            Command::Chaos(args) => chaos::run(args).await,
            Command::Produce(args) => produce::run(args).await,
            Command::Process(args) => process::run(args).await,
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            // A closed stdout (`loadgen run | head`) is not an error.
            if e.chain().any(|c| {
                c.downcast_ref::<std::io::Error>()
                    .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            }) {
                return ExitCode::SUCCESS;
            }
            eprintln!("loadgen: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// Parses every `--check` before anything runs, so a typo fails fast.
pub fn parse_checks(texts: &[String]) -> anyhow::Result<Vec<Check>> {
    texts.iter().map(|t| Check::parse(t)).collect()
}

/// Prints one line per check; returns whether all held.
pub fn apply_checks(checks: &[Check], report: &report::Report) -> bool {
    let mut all = true;
    for c in checks {
        let (ok, line) = c.evaluate(report);
        println!("{line}");
        all &= ok;
    }
    all
}

fn describe(plan: &Plan) -> String {
    let schedule: Vec<String> = plan
        .schedule
        .segments
        .iter()
        .map(|s| format!("{:.0}/s for {:.0}s", s.rate, s.duration.as_secs_f64()))
        .collect();
    let sink = match &plan.sink {
        plan::SinkTarget::Embedded { rate, .. } => {
            format!("an embedded sinkd capped at {rate:.0} writes/s")
        }
        plan::SinkTarget::External { url } => format!("the sinkd at {url}"),
        plan::SinkTarget::Null => "a null sink".into(),
    };
    format!(
        "Offering {} of {}-byte events, through a {:?} queue (cap {}, policy {:?}), {} {:?} writer(s) ({} per write), into {}.",
        schedule.join(", then "),
        plan.msg_size,
        plan.queue,
        plan.queue_cap,
        plan.policy,
        plan.sink_workers,
        plan.partitioning,
        plan.batch_size,
        sink
    )
    .to_lowercase()
    .replacen("offering", "Offering", 1)
}

async fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let checks = parse_checks(&args.checks)?;
    let mut plan = Plan::from_args(&args)?;
    if plan.out.is_none() {
        plan.out = Some(PathBuf::from("out/run"));
    }
    let dir = plan.out.clone().unwrap_or_default();
    println!("{}\n", describe(&plan));
    let progress = Progress::new(plan.quiet, "run");
    let outcome = pipeline::run(&plan, &progress).await?;
    progress.finish();
    output::write_run(&dir, "loadgen run", &outcome)?;
    if let Some(path) = &plan.report {
        std::fs::write(path, serde_json::to_string_pretty(&outcome.report)?)?;
    }
    let mut stdout = std::io::stdout().lock();
    write!(stdout, "{}", outcome.report.summary())?;
    writeln!(stdout, "\n{}", outcome.report.interpretation())?;
    writeln!(
        stdout,
        "\nwrote {}/{{report.json, timeseries.csv, latency.hlog, rates.svg, memory.svg, lag.svg}}",
        dir.display()
    )?;
    drop(stdout);
    Ok(if apply_checks(&checks, &outcome.report) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
