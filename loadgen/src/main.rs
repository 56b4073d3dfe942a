//! `loadgen`: the entry point for backpressure experiments.
//!
//! Today it runs one demonstration (`loadgen run`): a source that can emit millions of items a
//! second feeds a sink that takes a fixed number per second, once with bounded demand and once
//! with unbounded demand, and shows where the difference goes.

mod demo;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Open-model load and backpressure experiments.
#[derive(Debug, Parser)]
#[command(name = "loadgen", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Shows, with a fast source and a slow sink, that demand bounds what is in flight.
    Run(demo::DemoArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let args = match cli.command {
        Some(Command::Run(args)) => args,
        None => demo::DemoArgs::default(),
    };
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
    match runtime.block_on(demo::run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("loadgen: {e:#}");
            ExitCode::FAILURE
        }
    }
}
