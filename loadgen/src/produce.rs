//! `loadgen produce`: an open-model producer to an HTTP sink (or, with `--bootstrap-servers`, to
//! Kafka: [`crate::kafka::produce`]). The generator keeps its schedule
//! and measures latency from each event's intended time; `--connections` writes run at once.

use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;

use crate::cli::{Cli, Command, ProduceArgs};
use crate::plan::Plan;
use crate::progress::Progress;

pub async fn run(args: ProduceArgs) -> anyhow::Result<ExitCode> {
    let Some(sink_url) = args.sink_url.clone() else {
        return crate::kafka::produce::run(args).await;
    };
    let argv = [
        "loadgen".to_string(),
        "run".into(),
        "--profile".into(),
        "constant".into(),
        "--rate".into(),
        args.rate.to_string(),
        "--duration".into(),
        args.duration.clone(),
        "--msg-size".into(),
        args.msg_size.to_string(),
        "--seed".into(),
        args.seed.to_string(),
        "--sink-url".into(),
        sink_url,
        "--queue".into(),
        "pull".into(),
        "--sink-workers".into(),
        args.connections.to_string(),
        "--partitioning".into(),
        "round-robin".into(),
    ];
    let run_args = match Cli::try_parse_from(&argv) {
        Ok(Cli {
            command: Some(Command::Run(a)),
        }) => a,
        Ok(_) => unreachable!("argv starts with run"),
        Err(e) => return Err(anyhow::anyhow!("{e}")),
    };
    let mut plan = Plan::from_args(&run_args).context("invalid producer settings")?;
    plan.worker_window = 1;
    let progress = Progress::new(false, "produce");
    let outcome = crate::pipeline::run(&plan, &progress).await?;
    progress.finish();
    let r = &outcome.report;
    println!(
        "sent {} events in {:.1}s: {:.0}/s for a target of {:.0}/s ({} missed sends); delivery latency p50 {:.1} ms, p99 {:.1} ms; the sink has {} of them",
        r.produced,
        r.duration_s,
        r.generated_rate,
        r.target_rate,
        r.missed_sends,
        r.latency_ms.p50,
        r.latency_ms.p99,
        r.delivered
    );
    Ok(ExitCode::SUCCESS)
}
