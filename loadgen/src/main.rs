//! `loadgen`: open-model load, backpressured pipelines, and the experiments that measure them.
//!
//! Layers, as ripgrep keeps them: [`cli`] (the flags as typed) → [`plan`] (validated: what will
//! run) → [`pipeline`] (the run) → [`report`], [`output`] (what it leaves).

mod analysis;
mod autoscale;
mod chaos;
mod chart;
mod check;
mod child;
mod cli;
mod experiment;
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

use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Cli, Command, RunCommand};

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
            .unwrap_or_else(|| Command::Run(RunCommand::default()))
        {
            Command::Run(args) => run::run(args).await,
            Command::Experiment(args) => experiment::run(args).await,
            Command::Sweep(args) => sweep::run(args).await,
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
