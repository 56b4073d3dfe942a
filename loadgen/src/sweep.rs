//! `loadgen sweep`: the pipeline over a grid of settings, one run per combination, a table and
//! a chart per figure (throughput and p99 against the one dimension that varies).
//!
//! Runs share this process, so RSS is not compared across them (use `experiment` for that).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};

use crate::chart::{Chart, Series};
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

pub async fn run(args: SweepArgs) -> anyhow::Result<ExitCode> {
    let checks = crate::check::parse_checks(&args.base.checks)?;
    let (points, axis) = expand(&args)?;
    let out = args
        .base
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from("out/sweep"));
    std::fs::create_dir_all(&out)?;
    let mut table = String::from(
        "| run | delivered/s | p50 ms | p99 ms | dropped | lost | order violations | sink utilization | 429s | held | on credit | credit polls |\n|---|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    let mut rows = Vec::new();
    let mut all_ok = true;
    for (p, plan) in &points {
        let label = if p.label.is_empty() {
            "base".to_string()
        } else {
            p.label.clone()
        };
        let plan = plan.with_out(out.join(label.replace([' ', '='], "_")));
        let progress = Progress::new(args.base.quiet, &label);
        let outcome = crate::pipeline::run(&plan, &progress).await?;
        progress.finish();
        let r = &outcome.report;
        let rate = r.delivered as f64 / plan.schedule().total().as_secs_f64();
        table.push_str(&format!(
            "| {label} | {rate:.0} | {:.1} | {:.1} | {} | {} | {} | {:.3} | {} | {} | {} | {} |\n",
            r.latency_ms.p50,
            r.latency_ms.p99,
            r.dropped.total,
            r.lost,
            r.ordering_violations,
            r.sink_utilization,
            r.sink_limit.refused,
            r.sink_limit.held,
            r.sink_limit.on_credit,
            r.sink_limit.credit_polls,
        ));
        all_ok &= crate::check::apply_checks(&checks, r, &format!("{label}: "));
        rows.push((p.x, rate, r.latency_ms.p99));
    }
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
    }
    std::fs::write(out.join("sweep.md"), &table)?;
    println!("{table}\nwrote {}", out.display());
    Ok(if all_ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
