//! `loadgen run`: the pipeline in one process, with its summary, outputs and gates; its time
//! series written as it is sampled, and with `--metrics-addr` its live endpoints.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

use crate::check::{apply_checks, parse_checks};
use crate::cli::RunCommand;
use crate::plan::Plan;
use crate::progress::Progress;
use crate::{output, pipeline};

pub async fn run(command: RunCommand) -> anyhow::Result<ExitCode> {
    let mut args = command.run;
    let checks = parse_checks(&args.checks)?;
    let dir = args
        .out
        .get_or_insert_with(|| PathBuf::from("out/run"))
        .clone();
    let plan = Plan::from_args(&args)?;
    println!("{}\n", plan.describe());
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut progress = Progress::new(plan.quiet(), "run");
    if let Some(addr) = command.metrics_addr {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr} ('--metrics-addr')"))?;
        progress = crate::process::serve_pipeline(&plan, listener, progress);
    }
    let outcome = pipeline::run(&plan, &progress).await?;
    progress.finish();
    output::write_run(&dir, "loadgen run", &outcome)?;
    if let Some(path) = plan.report() {
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
