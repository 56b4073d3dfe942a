//! `loadgen sweep`: the pipeline over a grid of settings, one run per combination, a table and
//! a chart per figure (throughput and p99 against the one dimension that varies).
//!
//! Runs share this process, so RSS is not compared across them (use `experiment` for that).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};

use crate::chart::{Chart, Series};
use crate::check::Check;
use crate::cli::{Demand, OnLimit, QueueKind, RunArgs, SinkMode, SweepArgs};
use crate::plan::Plan;
use crate::progress::Progress;

/// One grid point: its flags (the base's with the point's values), its label and x value.
#[derive(Debug, Clone)]
struct Point {
    label: String,
    x: Option<f64>,
    args: RunArgs,
}

/// Every grid point with its plan, and the axis to chart against (if one).
type Grid = (Vec<(Point, Plan)>, Option<String>);

/// One row of the sweep: the varying value (if numeric), delivered events/s, p99 ms.
type Row = (Option<f64>, f64, f64);

/// Every point times every value of one dimension (`values` empty: the points unchanged).
fn grow<T>(points: Vec<Point>, values: &[T], apply: impl Fn(&mut Point, &T)) -> Vec<Point> {
    if values.is_empty() {
        return points;
    }
    let mut out = Vec::new();
    for p in points {
        for v in values {
            let mut q = p.clone();
            apply(&mut q, v);
            out.push(q);
        }
    }
    out
}

/// Adds `tag` to the point's label; `x` is its value on the chart's axis when this dimension
/// is the one that varies.
fn tag(p: &mut Point, tag: String, x: Option<f64>, varies: bool) {
    if !p.label.is_empty() {
        p.label.push(' ');
    }
    p.label.push_str(&tag);
    if varies {
        p.x = x;
    }
}

/// The demand strategy `d`, as flags.
fn apply_demand(a: &mut RunArgs, d: Demand) {
    match d {
        Demand::Request1 => {
            a.queue = QueueKind::Pull;
            a.worker_window = 1;
        }
        Demand::RequestN => a.queue = QueueKind::Pull,
        Demand::Credit => {
            a.queue = QueueKind::Bounded;
            // The credit is what the workers hold: their window, or two batches if larger.
            let batch = if a.sink_mode == SinkMode::Batch {
                a.batch_size
            } else {
                1
            };
            a.queue_cap = a.sink_workers * a.worker_window.max(2 * batch);
            a.sink_on_limit = OnLimit::Credit;
        }
        Demand::BoundedChannel => a.queue = QueueKind::Bounded,
        Demand::Unbounded => {
            a.queue = QueueKind::Unbounded;
            a.safety_cap.get_or_insert(4_000_000);
        }
    }
}

/// The grid: every combination of the values given, each validated as a whole by
/// [`Plan::from_args`], and the axis to chart against when exactly one numeric dimension varies.
fn expand(args: &SweepArgs) -> anyhow::Result<Grid> {
    let dims = [
        ("batch size", args.batch_size.len()),
        ("batch linger", args.batch_linger.len()),
        ("workers", args.workers.len()),
        ("queue", args.queue.len()),
        ("policy", args.policy.len()),
        ("demand", args.demand.len()),
        ("on limit", args.on_limit.len()),
    ];
    let varying: Vec<&str> = dims
        .iter()
        .filter(|(_, n)| *n > 1)
        .map(|(d, _)| *d)
        .collect();
    let mut points = vec![Point {
        label: String::new(),
        x: None,
        args: args.base.clone(),
    }];
    points = grow(points, &args.batch_size, |p, &b| {
        p.args.sink_mode = SinkMode::Batch;
        p.args.batch_size = b;
        tag(
            p,
            format!("batch={b}"),
            Some(b as f64),
            args.batch_size.len() > 1,
        );
    });
    points = grow(points, &args.batch_linger, |p, &l| {
        p.args.batch_linger = l;
        let ms = l.as_secs_f64() * 1e3;
        tag(
            p,
            format!("linger={ms}ms"),
            Some(ms),
            args.batch_linger.len() > 1,
        );
    });
    points = grow(points, &args.workers, |p, &w| {
        p.args.sink_workers = w;
        tag(
            p,
            format!("workers={w}"),
            Some(w as f64),
            args.workers.len() > 1,
        );
    });
    points = grow(points, &args.queue, |p, &q| {
        p.args.queue = q;
        if q == QueueKind::Unbounded {
            p.args.safety_cap.get_or_insert(4_000_000);
        }
        tag(p, format!("queue={q:?}").to_lowercase(), None, false);
    });
    points = grow(points, &args.policy, |p, &policy| {
        p.args.policy = policy;
        tag(p, format!("policy={policy:?}").to_lowercase(), None, false);
    });
    points = grow(points, &args.demand, |p, &d| {
        apply_demand(&mut p.args, d);
        tag(p, format!("demand={d:?}").to_lowercase(), None, false);
    });
    points = grow(points, &args.on_limit, |p, &o| {
        p.args.sink_on_limit = o;
        tag(p, format!("on-limit={o:?}").to_lowercase(), None, false);
    });
    if points.len() > 64 {
        bail!("the grid has {} combinations; at most 64", points.len());
    }
    let axis = (varying.len() == 1 && points.iter().all(|p| p.x.is_some()))
        .then(|| varying[0].to_string());
    let planned = points
        .into_iter()
        .map(|p| {
            let plan =
                Plan::from_args(&p.args).with_context(|| format!("grid point '{}'", p.label))?;
            Ok((p, plan))
        })
        .collect::<anyhow::Result<_>>()?;
    Ok((planned, axis))
}

/// What one run of one grid point measured: the table's columns.
#[derive(Debug, Clone, Copy, Default)]
struct Measured {
    rate: f64,
    p50: f64,
    p99: f64,
    dropped: f64,
    lost: f64,
    violations: f64,
    utilization: f64,
    refused: f64,
    held: f64,
    on_credit: f64,
    polls: f64,
}

impl Measured {
    fn of(r: &crate::report::Report, seconds: f64) -> Measured {
        Measured {
            rate: r.delivered as f64 / seconds,
            p50: r.latency_ms.p50,
            p99: r.latency_ms.p99,
            dropped: r.dropped.total as f64,
            lost: r.lost as f64,
            violations: r.ordering_violations as f64,
            utilization: r.sink_utilization,
            refused: r.sink_limit.refused as f64,
            held: r.sink_limit.held as f64,
            on_credit: r.sink_limit.on_credit as f64,
            polls: r.sink_limit.credit_polls as f64,
        }
    }
}

const HEADER: &str = "| run | delivered/s | p50 ms | p99 ms | dropped | lost | order violations | sink utilization | 429s | held | on credit | credit polls |\n|---|---|---|---|---|---|---|---|---|---|---|---|\n";

/// One cell: the value, or with repeats the median and `[min–max]` when they differ.
fn cell(runs: &[Measured], f: impl Fn(&Measured) -> f64, decimals: usize) -> String {
    let mut v: Vec<f64> = runs.iter().map(f).collect();
    v.sort_by(f64::total_cmp);
    let (lo, mid, hi) = (v[0], v[v.len() / 2], v[v.len() - 1]);
    if lo == hi {
        format!("{mid:.decimals$}")
    } else {
        format!("{mid:.decimals$} [{lo:.decimals$}–{hi:.decimals$}]")
    }
}

/// The table's row for one grid point.
fn row(label: &str, runs: &[Measured]) -> String {
    let cols = [
        cell(runs, |m| m.rate, 0),
        cell(runs, |m| m.p50, 1),
        cell(runs, |m| m.p99, 1),
        cell(runs, |m| m.dropped, 0),
        cell(runs, |m| m.lost, 0),
        cell(runs, |m| m.violations, 0),
        cell(runs, |m| m.utilization, 3),
        cell(runs, |m| m.refused, 0),
        cell(runs, |m| m.held, 0),
        cell(runs, |m| m.on_credit, 0),
        cell(runs, |m| m.polls, 0),
    ];
    format!("| {label} | {} |\n", cols.join(" | "))
}

/// Runs one grid point `repeat` times; each run's report and time series go to its folder.
async fn measure(
    label: &str,
    plan: &Plan,
    dir: &std::path::Path,
    args: &SweepArgs,
    checks: &[Check],
) -> anyhow::Result<(Vec<Measured>, Vec<crate::telemetry::Sample>, bool)> {
    let mut runs = Vec::new();
    let mut first_series = Vec::new();
    let mut ok = true;
    for i in 0..args.repeat {
        let (dir, name) = if args.repeat == 1 {
            (dir.to_path_buf(), label.to_string())
        } else {
            (
                dir.join(format!("r{}", i + 1)),
                format!("{label} #{}", i + 1),
            )
        };
        let plan = plan.with_out(dir.clone());
        let progress = Progress::new(args.base.quiet, &name);
        let outcome = crate::pipeline::run(&plan, &progress).await?;
        progress.finish();
        let r = &outcome.report;
        std::fs::write(dir.join("report.json"), serde_json::to_string_pretty(r)?)?;
        ok &= crate::check::apply_checks(checks, r, &format!("{name}: "));
        runs.push(Measured::of(r, plan.schedule().total().as_secs_f64()));
        if i == 0 {
            first_series = outcome.series;
        }
    }
    Ok((runs, first_series, ok))
}

pub async fn run(args: SweepArgs) -> anyhow::Result<ExitCode> {
    let checks = crate::check::parse_checks(&args.base.checks)?;
    let (points, axis) = expand(&args)?;
    let out = args
        .base
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from("out/sweep"));
    std::fs::create_dir_all(&out)?;
    let mut table = String::from(HEADER);
    let mut rows = Vec::new();
    let mut timelines = Vec::new();
    let mut all_ok = true;
    for (p, plan) in &points {
        let label = if p.label.is_empty() {
            "base".to_string()
        } else {
            p.label.clone()
        };
        let dir = out.join(label.replace([' ', '='], "_"));
        let (runs, series, ok) = measure(&label, plan, &dir, &args, &checks).await?;
        all_ok &= ok;
        table.push_str(&row(&label, &runs));
        let mut rates: Vec<f64> = runs.iter().map(|m| m.rate).collect();
        let mut p99s: Vec<f64> = runs.iter().map(|m| m.p99).collect();
        rates.sort_by(f64::total_cmp);
        p99s.sort_by(f64::total_cmp);
        rows.push((p.x, rates[rates.len() / 2], p99s[p99s.len() / 2]));
        timelines.push(crate::output::series(&label, &series, |s| s.delivered_rate));
    }
    write_charts(&out, axis, &rows, timelines)?;
    std::fs::write(out.join("sweep.md"), &table)?;
    println!("{table}\nwrote {}", out.display());
    Ok(if all_ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Throughput and p99 against the varying dimension when it is numeric; delivered events/s
/// over time for every point (at most eight) when it is not.
fn write_charts(
    out: &std::path::Path,
    axis: Option<String>,
    rows: &[Row],
    timelines: Vec<Series>,
) -> anyhow::Result<()> {
    if let Some(axis) = axis {
        let chart = |title: &str, y: &str, f: &dyn Fn(&Row) -> f64| {
            let points = rows.iter().map(|r| (r.0.unwrap_or(0.0), f(r))).collect();
            Chart::new(
                title,
                axis.clone(),
                y,
                vec![Series {
                    name: y.to_string(),
                    points,
                }],
            )
        };
        crate::output::write_chart(
            &out.join("throughput.svg"),
            &chart("throughput", "delivered events/s", &|r| r.1),
        )?;
        crate::output::write_chart(&out.join("p99.svg"), &chart("p99 latency", "ms", &|r| r.2))?;
    } else if (2..=8).contains(&timelines.len()) {
        crate::output::write_chart(
            &out.join("delivered.svg"),
            &Chart::new("delivered over time", "s", "events/s", timelines),
        )?;
    }
    Ok(())
}
