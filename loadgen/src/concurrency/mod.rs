//! `loadgen concurrency`: adaptive concurrency against static, over real HTTP to the embedded
//! sinkd. Each run offers more than sinkd's rate (so the sink side is the bottleneck) with a
//! per-write latency (so concurrency matters: the best static concurrency is about
//! rate × latency) and a stall in the middle (sinkd's rate drops, then comes back). Every
//! setting (each static worker count, ARC, ours) runs in each sinkd mode, `--repeat` times,
//! the settings interleaved so that a noisy moment of the machine is shared.
//!
//! The target of a repeat is the best static setting's steady throughput before the stall in
//! that repeat; the figures are the time to 95% of it after the start and after the stall
//! ends, the limit's range in the steady part, the 429s per attempt and the goodput.

mod figures;

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::bail;

use crate::chart::Chart;
use crate::cli::{Concurrency, ConcurrencyArgs, OnLimit, Partitioning, Profile, RunArgs};
use crate::output::{series, write_chart};
use crate::plan::Plan;
use crate::progress::Progress;
use crate::report::Report;
use crate::telemetry::Sample;
use figures::{Figures, Phases, figures, spread, time_to_reach};

/// How the writes' concurrency is set in one run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Setting {
    Static(usize),
    Arc,
    Adaptive,
}

impl Setting {
    fn label(self) -> String {
        match self {
            Setting::Static(n) => format!("static {n}"),
            Setting::Arc => "ARC".into(),
            Setting::Adaptive => "ours (adaptive)".into(),
        }
    }
}

/// What one run measured.
struct Measured {
    mode: OnLimit,
    setting: Setting,
    repeat: usize,
    figures: Figures,
    from_start: Option<f64>,
    after_stall: Option<f64>,
    /// Events dead-lettered (retries exhausted or the retry budget empty).
    dead_lettered: u64,
    series: Vec<Sample>,
}

/// The sample period: fine enough to time a ramp of a few hundred milliseconds.
const SAMPLE: Duration = Duration::from_millis(100);
/// The delivered rate is averaged over this many samples (centred) before it is compared.
const SMOOTH: usize = 5;

fn mode_name(mode: OnLimit) -> &'static str {
    match mode {
        OnLimit::Reject => "reject",
        OnLimit::Delay => "delay",
        OnLimit::Credit => "credit",
    }
}

/// The flags of one run.
fn run_args(args: &ConcurrencyArgs, mode: OnLimit, setting: Setting) -> RunArgs {
    let (workers, concurrency) = match setting {
        Setting::Static(n) => (n, Concurrency::Fixed),
        Setting::Arc => (args.max, Concurrency::Arc),
        Setting::Adaptive => (args.max, Concurrency::Adaptive),
    };
    RunArgs {
        profile: Profile::Constant,
        rate: args.rate,
        duration: args.duration,
        sink_rate: args.sink_rate,
        sink_on_limit: mode,
        sink_latency: args.sink_latency,
        stall_rate: Some(args.stall_rate),
        stall_at: Some(args.stall_at),
        stall_for: args.stall_for,
        sink_workers: workers,
        concurrency,
        backpressure_on: args.backpressure_on.clone(),
        // Round-robin over many keys: every worker has work, whatever the count.
        partitioning: Partitioning::RoundRobin,
        keys: 10_000,
        sample: SAMPLE,
        drain_timeout: Duration::from_secs(1),
        time_scale: args.time_scale,
        quiet: true,
        ..RunArgs::default()
    }
}

/// The run's phases, in the schedule's (scaled) seconds.
fn phases(args: &ConcurrencyArgs) -> Phases {
    let s = args.time_scale;
    let stall_at = args.stall_at.as_secs_f64() * s;
    Phases {
        stall_at,
        stall_end: stall_at + args.stall_for.as_secs_f64() * s,
        end: args.duration.as_secs_f64() * s,
    }
}

/// Runs one setting once; returns its series and report.
async fn one(
    args: &ConcurrencyArgs,
    mode: OnLimit,
    setting: Setting,
    repeat: usize,
) -> anyhow::Result<(Vec<Sample>, Report)> {
    let label = format!("{} {} #{}", mode_name(mode), setting.label(), repeat + 1);
    let dir = args.out.join(format!("run-{}", repeat + 1)).join(format!(
        "{}-{}",
        mode_name(mode),
        setting.label().replace(' ', "-")
    ));
    let plan = Plan::from_args(&run_args(args, mode, setting))?.with_out(dir);
    let progress = Progress::new(args.quiet, &label);
    let outcome = crate::pipeline::run(&plan, &progress).await?;
    progress.finish();
    std::fs::write(
        plan.out().unwrap_or(Path::new(".")).join("report.json"),
        serde_json::to_string_pretty(&outcome.report)?,
    )?;
    Ok((outcome.series, outcome.report))
}

/// Runs every setting in `mode` once and measures each against the best static one.
async fn repeat_once(
    args: &ConcurrencyArgs,
    mode: OnLimit,
    repeat: usize,
) -> anyhow::Result<Vec<Measured>> {
    let p = phases(args);
    let mut settings: Vec<Setting> = args.statics.iter().map(|&n| Setting::Static(n)).collect();
    settings.extend([Setting::Arc, Setting::Adaptive]);
    let mut runs = Vec::new();
    for setting in settings {
        let (series, report) = one(args, mode, setting, repeat).await?;
        let c = &report.concurrency;
        let figures = figures(&series, p, c.attempts, c.rejected_429);
        runs.push(Measured {
            mode,
            setting,
            repeat,
            figures,
            from_start: None,
            after_stall: None,
            dead_lettered: report.dead_lettered,
            series,
        });
    }
    let best = runs
        .iter()
        .filter(|m| matches!(m.setting, Setting::Static(_)))
        .map(|m| m.figures.steady)
        .fold(0.0, f64::max);
    for m in &mut runs {
        let target = 0.95 * best;
        m.from_start = time_to_reach(&m.series, 0.0, p.stall_at, target, SMOOTH);
        m.after_stall = time_to_reach(&m.series, p.stall_end, p.end, target, SMOOTH);
    }
    Ok(runs)
}

pub async fn run(args: ConcurrencyArgs) -> anyhow::Result<ExitCode> {
    if args.stall_at + args.stall_for >= args.duration {
        bail!(
            "invalid value for '--stall-for': the stall ({:?} from {:?}) must end before --duration ({:?})",
            args.stall_for,
            args.stall_at,
            args.duration
        );
    }
    if args.modes.is_empty() || args.statics.is_empty() {
        bail!("'--modes' and '--static' need at least one value each");
    }
    std::fs::create_dir_all(&args.out)?;
    let mut all = Vec::new();
    for repeat in 0..args.repeat {
        for &mode in &args.modes {
            all.extend(repeat_once(&args, mode, repeat).await?);
        }
    }
    let table = table(&args, &all);
    std::fs::write(args.out.join("concurrency.md"), &table)?;
    for &mode in &args.modes {
        charts(&args.out, mode, &all)?;
    }
    println!("{table}\nwrote {}", args.out.display());
    Ok(ExitCode::SUCCESS)
}

/// `median (min–max)` of the values, with how many runs never got there.
fn cell(values: &[Option<f64>], decimals: usize) -> String {
    let got: Vec<f64> = values.iter().flatten().copied().collect();
    let never = values.len() - got.len();
    let mut s = match spread(&got) {
        Some((lo, med, hi)) => format!("{med:.decimals$} ({lo:.decimals$}–{hi:.decimals$})"),
        None => "never".into(),
    };
    if never > 0 && !got.is_empty() {
        s.push_str(&format!(", {never}/{} never", values.len()));
    }
    s
}

/// The markdown table: one section per mode, one row per setting.
fn table(args: &ConcurrencyArgs, all: &[Measured]) -> String {
    let p = phases(args);
    let mut out = format!(
        "Offered {:.0} events/s (one write each), sinkd at {:.0} writes/s with {:?} per write, \
         stalled to {:.0} writes/s from {:.1} s to {:.1} s of {:.1} s; {} runs per setting, \
         median (min–max). Times are to 95% of the best static setting's steady throughput.\n",
        args.rate,
        args.sink_rate,
        args.sink_latency,
        args.stall_rate,
        p.stall_at,
        p.stall_end,
        p.end,
        args.repeat
    );
    for &mode in &args.modes {
        out.push_str(&format!(
            "\n### sinkd `--on-limit {}`\n\n| setting | goodput ev/s | steady ev/s | to 95% from start, s | to 95% after the stall, s | limit: mean, range (steady) | 429s per attempt | dead-lettered |\n|---|---|---|---|---|---|---|---|\n",
            mode_name(mode)
        ));
        let mut settings: Vec<Setting> = args.statics.iter().map(|&n| Setting::Static(n)).collect();
        settings.extend([Setting::Arc, Setting::Adaptive]);
        for setting in settings {
            let runs: Vec<&Measured> = all
                .iter()
                .filter(|m| m.mode == mode && m.setting == setting)
                .collect();
            let of = |f: &dyn Fn(&Measured) -> Option<f64>| -> Vec<Option<f64>> {
                runs.iter().map(|m| f(m)).collect()
            };
            let range = match setting {
                Setting::Static(_) => "—".to_string(),
                _ => format!(
                    "{}; {}",
                    cell(&of(&|m| Some(m.figures.mean_limit)), 0),
                    cell(&of(&|m| Some(m.figures.amplitude)), 0)
                ),
            };
            out.push_str(&format!(
                "| {} | {} | {} | {} | {} | {} | {} | {} |\n",
                setting.label(),
                cell(&of(&|m| Some(m.figures.goodput)), 0),
                cell(&of(&|m| Some(m.figures.steady)), 0),
                cell(&of(&|m| m.from_start), 2),
                cell(&of(&|m| m.after_stall), 2),
                range,
                cell(&of(&|m| Some(m.figures.rejected)), 3),
                cell(&of(&|m| Some(m.dead_lettered as f64)), 0),
            ));
        }
    }
    out
}

/// The limit over time and the delivered rate, ours against ARC, from the first repeat.
fn charts(out: &Path, mode: OnLimit, all: &[Measured]) -> anyhow::Result<()> {
    let pick = |s: Setting| {
        all.iter()
            .find(|m| m.mode == mode && m.setting == s && m.repeat == 0)
    };
    let (Some(ours), Some(arc)) = (pick(Setting::Adaptive), pick(Setting::Arc)) else {
        return Ok(());
    };
    let name = mode_name(mode);
    let limit = |m: &Measured| {
        series(&m.setting.label(), &m.series, |s| {
            s.concurrency_limit as f64
        })
    };
    write_chart(
        &out.join(format!("limit-{name}.svg")),
        &Chart::new(
            format!("concurrency limit, sinkd --on-limit {name} (stall in the middle)"),
            "s",
            "limit",
            vec![limit(ours), limit(arc)],
        ),
    )?;
    let rate = |m: &Measured| series(&m.setting.label(), &m.series, |s| s.delivered_rate);
    write_chart(
        &out.join(format!("delivered-{name}.svg")),
        &Chart::new(
            format!("delivered events/s, sinkd --on-limit {name}"),
            "s",
            "events/s",
            vec![rate(ours), rate(arc)],
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Wrap {
        #[command(flatten)]
        args: ConcurrencyArgs,
    }

    fn args(argv: &[&str]) -> ConcurrencyArgs {
        Wrap::parse_from(std::iter::once("concurrency").chain(argv.iter().copied())).args
    }

    #[test]
    fn each_setting_is_a_valid_plan_with_the_stall_scaled() {
        let a = args(&["--time-scale", "0.5", "--max", "96"]);
        for setting in [Setting::Static(24), Setting::Arc, Setting::Adaptive] {
            let plan = Plan::from_args(&run_args(&a, OnLimit::Reject, setting)).unwrap();
            let expected = match setting {
                Setting::Static(n) => n,
                _ => 96,
            };
            assert_eq!(plan.sink_workers(), expected);
            assert_eq!(plan.concurrency().is_some(), setting != Setting::Static(24));
        }
        assert_eq!(
            phases(&a),
            Phases {
                stall_at: 4.0,
                stall_end: 6.5,
                end: 10.0
            }
        );
    }

    #[test]
    fn a_cell_is_the_median_and_range_with_the_runs_that_never_got_there() {
        assert_eq!(cell(&[Some(1.0), Some(3.0), Some(2.0)], 1), "2.0 (1.0–3.0)");
        assert_eq!(cell(&[Some(1.0), None], 0), "1 (1–1), 1/2 never");
        assert_eq!(cell(&[None, None], 0), "never");
    }
}
