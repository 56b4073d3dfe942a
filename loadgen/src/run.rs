//! `loadgen run`: the pipeline in one process, with its summary, outputs and gates.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use crate::check::{apply_checks, parse_checks};
use crate::cli::RunArgs;
use crate::plan::Plan;
use crate::progress::Progress;
use crate::{output, pipeline};

pub async fn run(mut args: RunArgs) -> anyhow::Result<ExitCode> {
    let checks = parse_checks(&args.checks)?;
    let dir = args
        .out
        .get_or_insert_with(|| PathBuf::from("out/run"))
        .clone();
    let plan = Plan::from_args(&args)?;
    println!("{}\n", plan.describe());
    let progress = Progress::new(plan.quiet(), "run");
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
