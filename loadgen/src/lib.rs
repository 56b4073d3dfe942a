//! `loadgen`: open-model load, backpressured pipelines, and the experiments that measure them.
//!
//! Layers, as ripgrep keeps them: [`cli`] (the flags as typed) → [`plan`] (validated: what will
//! run) → [`pipeline`] (the run) → [`report`], [`output`] (what it leaves).
//!
//! A library so that benches can drive the pipeline in their own process ([`e2e`]); the
//! binary (`src/main.rs`) calls [`run_cli`].

mod analysis;
mod autoscale;
mod chaos;
mod chart;
mod check;
mod child;
mod cli;
mod concurrency;
mod credit;
mod experiment;
mod foresight;
mod generator;
mod kafka;
mod memlimit;
mod output;
mod pipeline;
mod plan;
mod process;
mod produce;
mod progress;
mod report;
mod run;
mod schedule;
mod sink;
mod spilled;
mod sweep;
mod telemetry;
mod units;

pub mod e2e;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Cli, Command, RunCommand};

/// `loadgen` with the process's arguments: parses them, runs the command, and maps its outcome
/// to an exit code.
pub fn run_cli() -> ExitCode {
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
            .unwrap_or_else(|| Command::Run(RunCommand::default()))
        {
            Command::Run(args) => run::run(args).await,
            Command::Experiment(args) => experiment::run(args).await,
            Command::Sweep(args) => sweep::run(args).await,
            Command::Concurrency(args) => concurrency::run(args).await,
            Command::Chaos(args) => chaos::run(args).await,
            Command::Produce(args) => produce::run(args).await,
            Command::Process(args) => process::run(args).await,
            Command::Autoscale(args) => autoscale::run(args).await,
            Command::Keyorder(args) => kafka::keyorder::run(args).await,
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
