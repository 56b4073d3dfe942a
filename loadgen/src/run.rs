//! `loadgen run`: the pipeline in one process, with its summary, outputs and gates.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use crate::check::{apply_checks, parse_checks};
use crate::cli::RunArgs;
use crate::plan::{self, Plan};
use crate::progress::Progress;
use crate::{output, pipeline};

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

pub async fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
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
    Ok(if apply_checks(&checks, &outcome.report, "") {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
