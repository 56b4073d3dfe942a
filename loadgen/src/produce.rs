//! `loadgen produce`: an open-model producer to an HTTP sink (or, with `--bootstrap-servers`, to
//! Kafka: [`crate::kafka::produce`]). The generator keeps its schedule
//! and measures latency from each event's intended time; `--connections` writes run at once.

use std::process::ExitCode;

use anyhow::Context;

use crate::cli::{Partitioning, ProduceArgs, Profile, QueueKind, RunArgs};
use crate::plan::Plan;
use crate::progress::Progress;

pub async fn run(args: ProduceArgs) -> anyhow::Result<ExitCode> {
    let Some(sink_url) = args.sink_url.clone() else {
        return crate::kafka::produce::run(args).await;
    };
    let run_args = RunArgs {
        profile: Profile::Constant,
        rate: args.rate,
        duration: args.duration,
        msg_size: args.msg_size,
        seed: args.seed,
        sink_url: Some(sink_url),
        queue: QueueKind::Pull,
        sink_workers: args.connections,
        partitioning: Partitioning::RoundRobin,
        // One event per writer at a time: each connection writes as the schedule releases.
        worker_window: 1,
        ..RunArgs::default()
    };
    let plan = Plan::from_args(&run_args).context("invalid producer settings")?;
    let progress = Progress::new(false, "produce");
    let outcome = crate::pipeline::run(&plan, &progress).await?;
    progress.finish();
    let r = &outcome.report;
    println!(
        "sent {} events in {:.1}s: {:.0}/s for a target of {:.0}/s ({} missed sends); delivery latency p50 {:.1} ms, p99 {:.1} ms; {}",
        r.produced,
        r.duration_s,
        r.generated_rate,
        r.target_rate,
        r.missed_sends,
        r.latency_ms.p50,
        r.latency_ms.p99,
        r.delivery_line()
    );
    Ok(ExitCode::SUCCESS)
}
