//! `loadgen sweep`: the pipeline over a grid of settings, one run per combination, a table and
//! a chart per figure (throughput and p99 against the one dimension that varies). A point off
//! that axis (`--batch-size auto` among fixed sizes) is drawn as a level line across it.
//! `--repeat N` runs the whole grid N times, round after round, so drift on the machine spreads
//! over every point; the table then gives min / median / max and the charts the median.
//!
//! Runs share this process, so RSS is not compared across them (use `experiment` for that).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};

use crate::analysis::min_median_max;
use crate::chart::{Chart, Series};
use crate::cli::{BatchSize, Demand, OnLimit, QueueKind, RunArgs, SinkMode, SweepArgs};
use crate::plan::Plan;
use crate::progress::Progress;

/// One grid point: its flags (the base's with the point's values), its label and x value.
#[derive(Debug, Clone)]
struct Point {
    label: String,
    x: Option<f64>,
    /// Charted as a level line of this name rather than at an x (`batch=auto`).
    level: Option<String>,
    args: RunArgs,
}

/// Every grid point with its plan, and the axis to chart against (if one).
type Grid = (Vec<(Point, Plan)>, Option<String>);

/// What one run of a point measured.
#[derive(Debug, Clone, Copy)]
struct Measured {
    /// Delivered events/s over the schedule.
    rate: f64,
    p50: f64,
    p99: f64,
    dropped: u64,
    lost: i64,
    ordering_violations: u64,
    utilization: f64,
    /// Writes started, and those adaptive batching sized for a congested sink.
    writes: u64,
    congested: u64,
    /// How the embedded sinkd met its limit: 429s, held requests, writes on credit, credit
    /// polls.
    limit: crate::report::SinkLimit,
}

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
            let batch = match (a.sink_mode, a.batch_size) {
                (SinkMode::Batch, BatchSize::Fixed(n)) => n,
                (SinkMode::Batch, BatchSize::Auto) => a.batch_max.unwrap_or(1000),
                _ => 1,
            };
            a.queue_cap = a.sink_workers * a.worker_window.max(2 * batch);
            // And across HTTP: only against sinkd's credit.
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
        level: None,
        args: args.base.clone(),
    }];
    points = grow(points, &args.batch_size, |p, &b| {
        p.args.sink_mode = SinkMode::Batch;
        p.args.batch_size = b;
        let varies = args.batch_size.len() > 1;
        let x = match b {
            BatchSize::Fixed(n) => {
                // --batch-max is for the grid's auto points; a fixed size is its own max.
                p.args.batch_max = None;
                Some(n as f64)
            }
            BatchSize::Auto => {
                p.level = varies.then(|| "auto".to_string());
                None
            }
        };
        tag(p, format!("batch={b}"), x, varies);
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
    let on_axis = points.iter().filter(|p| p.x.is_some()).count();
    let charted = points.iter().all(|p| p.x.is_some() || p.level.is_some());
    let axis = (varying.len() == 1 && charted && on_axis >= 2).then(|| varying[0].to_string());
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

/// One run of one point, its outputs in `dir`.
async fn measure(
    plan: &Plan,
    label: &str,
    quiet: bool,
) -> anyhow::Result<(Measured, crate::pipeline::Outcome)> {
    let progress = Progress::new(quiet, label);
    let outcome = crate::pipeline::run(plan, &progress).await?;
    progress.finish();
    if let Some(dir) = plan.out() {
        std::fs::write(
            dir.join("report.json"),
            serde_json::to_string_pretty(&outcome.report)?,
        )?;
    }
    let r = &outcome.report;
    let m = Measured {
        rate: r.delivered as f64 / plan.schedule().total().as_secs_f64(),
        p50: r.latency_ms.p50,
        p99: r.latency_ms.p99,
        dropped: r.dropped.total,
        lost: r.lost,
        ordering_violations: r.ordering_violations,
        utilization: r.sink_utilization,
        writes: r.writes,
        congested: r.writes_congested,
        limit: r.sink_limit,
    };
    Ok((m, outcome))
}

/// A point's label, `base` when the grid has one point.
fn label_of(p: &Point) -> String {
    if p.label.is_empty() {
        "base".to_string()
    } else {
        p.label.clone()
    }
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
    let repeat = args.repeat.max(1);
    let mut runs: Vec<Vec<Measured>> = vec![Vec::new(); points.len()];
    let mut all_ok = true;
    let mut timelines = Vec::new();
    for round in 1..=repeat {
        for ((p, plan), runs) in points.iter().zip(&mut runs) {
            let label = label_of(p);
            let mut dir = out.join(label.replace([' ', '='], "_"));
            if repeat > 1 {
                dir = dir.join(format!("run-{round}"));
            }
            let shown = if repeat > 1 {
                format!("{label} ({round}/{repeat})")
            } else {
                label.clone()
            };
            let (m, outcome) = measure(&plan.with_out(dir), &shown, args.base.quiet).await?;
            all_ok &= crate::check::apply_checks(&checks, &outcome.report, &format!("{shown}: "));
            runs.push(m);
            if round == 1 {
                timelines.push(crate::output::series(&label, &outcome.series, |s| {
                    s.delivered_rate
                }));
            }
        }
    }
    let labels: Vec<String> = points.iter().map(|(p, _)| label_of(p)).collect();
    let table = if repeat > 1 {
        repeated_table(&labels, &runs)
    } else {
        single_table(&labels, &runs)
    };
    if let Some(axis) = axis {
        let at: Vec<&Point> = points.iter().map(|(p, _)| p).collect();
        write_charts(&out, &axis, &at, &runs)?;
    } else if (2..=8).contains(&timelines.len()) {
        // A category varies (queue, policy, demand, on-limit): each point's delivered rate over
        // its first run, on one chart.
        crate::output::write_chart(
            &out.join("delivered.svg"),
            &Chart::new("delivered over time", "s", "events/s", timelines),
        )?;
    }
    std::fs::write(out.join("sweep.md"), &table)?;
    println!("{table}\nwrote {}", out.display());
    Ok(if all_ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// One row per point, each run once.
fn single_table(labels: &[String], runs: &[Vec<Measured>]) -> String {
    let mut table = String::from(
        "| run | delivered/s | p50 ms | p99 ms | dropped | lost | order violations | sink utilization | 429s | held | on credit | credit polls |\n|---|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for (label, m) in labels.iter().zip(runs) {
        let Some(m) = m.first() else { continue };
        let l = m.limit;
        table.push_str(&format!(
            "| {label} | {:.0} | {:.1} | {:.1} | {} | {} | {} | {:.3} | {} | {} | {} | {} |\n",
            m.rate,
            m.p50,
            m.p99,
            m.dropped,
            m.lost,
            m.ordering_violations,
            m.utilization,
            l.refused,
            l.held,
            l.on_credit,
            l.credit_polls
        ));
    }
    table
}

/// `min / **median** / max` of a figure over a point's runs.
fn spread(runs: &[Measured], f: fn(&Measured) -> f64, digits: usize) -> String {
    let (lo, mid, hi) = min_median_max(&runs.iter().map(f).collect::<Vec<_>>());
    format!("{lo:.digits$} / **{mid:.digits$}** / {hi:.digits$}")
}

/// One row per point, min / median / max over its runs (losses and order violations: the most
/// any run had).
fn repeated_table(labels: &[String], runs: &[Vec<Measured>]) -> String {
    let n = runs.iter().map(Vec::len).max().unwrap_or(0);
    let mut table = format!(
        "{n} runs of each point; each cell is min / **median** / max.\n\n| run | delivered/s | p50 ms | p99 ms | dropped | lost (most) | order violations (most) | sink utilization | writes | sized for congestion | 429s | held | on credit | credit polls |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n"
    );
    for (label, m) in labels.iter().zip(runs) {
        let lost = m.iter().map(|m| m.lost).max().unwrap_or(0);
        let violations = m.iter().map(|m| m.ordering_violations).max().unwrap_or(0);
        table.push_str(&format!(
            "| {label} | {} | {} | {} | {} | {lost} | {violations} | {} | {} | {} | {} | {} | {} | {} |\n",
            spread(m, |m| m.rate, 0),
            spread(m, |m| m.p50, 1),
            spread(m, |m| m.p99, 1),
            spread(m, |m| m.dropped as f64, 0),
            spread(m, |m| m.utilization, 3),
            spread(m, |m| m.writes as f64, 0),
            spread(m, |m| m.congested as f64, 0),
            spread(m, |m| m.limit.refused as f64, 0),
            spread(m, |m| m.limit.held as f64, 0),
            spread(m, |m| m.limit.on_credit as f64, 0),
            spread(m, |m| m.limit.credit_polls as f64, 0),
        ));
    }
    table
}

/// Throughput and p99 against the axis (medians over the runs): the points on the axis as one
/// line, each level point as a flat line across it.
fn write_charts(
    out: &std::path::Path,
    axis: &str,
    points: &[&Point],
    runs: &[Vec<Measured>],
) -> anyhow::Result<()> {
    let median = |m: &[Measured], f: fn(&Measured) -> f64| {
        min_median_max(&m.iter().map(f).collect::<Vec<_>>()).1
    };
    let xs: Vec<f64> = points.iter().filter_map(|p| p.x).collect();
    let (x0, x1) = xs
        .iter()
        .fold((f64::MAX, f64::MIN), |(a, b), &x| (a.min(x), b.max(x)));
    let log_x = x0 > 0.0 && x1 / x0 >= 100.0;
    let chart = |title: &str, y: &str, f: fn(&Measured) -> f64| {
        let mut on_axis = Series {
            name: if log_x {
                format!("{axis} (fixed)")
            } else {
                axis.to_string()
            },
            points: Vec::new(),
        };
        let mut series = Vec::new();
        for (p, m) in points.iter().zip(runs) {
            match (p.x, &p.level) {
                (Some(x), _) => on_axis.points.push((x, median(m, f))),
                (None, Some(name)) => series.push(Series {
                    name: format!("{name} (adaptive)"),
                    points: vec![(x0, median(m, f)), (x1, median(m, f))],
                }),
                (None, None) => {}
            }
        }
        series.insert(0, on_axis);
        // Values two decades apart (a p99 of seconds beside one of milliseconds) on a log axis.
        let (lo, hi) = series
            .iter()
            .flat_map(|s| s.points.iter().map(|p| p.1))
            .fold((f64::MAX, f64::MIN), |(a, b), y| (a.min(y), b.max(y)));
        let mut c = Chart::new(title, axis, y, series);
        c.log_x = log_x;
        c.log_y = lo > 0.0 && hi / lo >= 100.0;
        c
    };
    crate::output::write_chart(
        &out.join("throughput.svg"),
        &chart("throughput", "delivered events/s", |m| m.rate),
    )?;
    crate::output::write_chart(&out.join("p99.svg"), &chart("p99 latency", "ms", |m| m.p99))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::{Cli, Command};

    fn sweep_args(argv: &[&str]) -> SweepArgs {
        let argv = ["loadgen", "sweep"].iter().chain(argv).copied();
        match Cli::parse_from(argv).command {
            Some(Command::Sweep(s)) => s,
            _ => unreachable!("a sweep"),
        }
    }

    #[test]
    fn auto_among_fixed_sizes_is_a_level_beside_the_axis() {
        let args = sweep_args(&["--batch-size", "1,16,auto", "--batch-max", "64"]);
        let (points, axis) = expand(&args).unwrap();
        assert_eq!(axis.as_deref(), Some("batch size"));
        let xs: Vec<Option<f64>> = points.iter().map(|(p, _)| p.x).collect();
        assert_eq!(xs, [Some(1.0), Some(16.0), None]);
        let (auto, plan) = &points[2];
        assert_eq!(auto.level.as_deref(), Some("auto"));
        assert_eq!(plan.batch_size(), 64, "--batch-max reaches the auto point");
        assert_eq!(points[1].1.batch_size(), 16);
    }

    #[test]
    fn a_repeated_table_gives_min_median_max() {
        let m = |rate: f64, p99: f64| Measured {
            rate,
            p50: 1.0,
            p99,
            dropped: 0,
            lost: 0,
            ordering_violations: 0,
            utilization: 0.5,
            writes: 100,
            congested: 7,
            limit: Default::default(),
        };
        let runs = vec![vec![m(3.0, 30.0), m(1.0, 10.0), m(2.0, 20.0)]];
        let table = repeated_table(&["batch=auto".into()], &runs);
        assert!(table.starts_with("3 runs"), "{table}");
        assert!(
            table.contains(
                "| batch=auto | 1 / **2** / 3 | 1.0 / **1.0** / 1.0 | 10.0 / **20.0** / 30.0 |"
            ),
            "{table}"
        );
        assert!(
            table.contains("| 100 / **100** / 100 | 7 / **7** / 7 |"),
            "{table}"
        );
    }
}
