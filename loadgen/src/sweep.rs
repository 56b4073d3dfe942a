//! `loadgen sweep`: the pipeline over a grid of settings, one run per combination, a table and
//! a chart per figure (throughput and p99 against the one dimension that varies).
//!
//! Runs share this process, so RSS is not compared across them (use `experiment` for that).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::bail;

use crate::chart::{Chart, Series};
use crate::cli::{Demand, QueueKind, SinkMode, SweepArgs};
use crate::plan::{Plan, parse_duration};
use crate::progress::Progress;

#[derive(Debug, Clone)]
struct Point {
    label: String,
    x: Option<f64>,
    plan: Plan,
}

/// One row of the sweep: the varying value (if numeric), delivered events/s, p99 ms.
type Row = (Option<f64>, f64, f64);

fn expand(args: &SweepArgs) -> anyhow::Result<(Vec<Point>, Option<String>)> {
    let base = Plan::from_args(&args.base)?;
    let mut points = vec![Point {
        label: String::new(),
        x: None,
        plan: base,
    }];
    let mut varying = Vec::new();
    let mut axis = |name: &str, n: usize| {
        if n > 1 {
            varying.push(name.to_string());
        }
    };
    axis("batch size", args.batch_size.len());
    axis("batch linger", args.batch_linger.len());
    axis("workers", args.workers.len());
    axis("queue", args.queue.len());
    axis("policy", args.policy.len());
    axis("demand", args.demand.len());
    fn grow<T: Clone>(
        points: Vec<Point>,
        values: &[T],
        apply: impl Fn(&mut Point, &T) -> anyhow::Result<()>,
    ) -> anyhow::Result<Vec<Point>> {
        if values.is_empty() {
            return Ok(points);
        }
        let mut out = Vec::new();
        for p in points {
            for v in values {
                let mut q = p.clone();
                apply(&mut q, v)?;
                out.push(q);
            }
        }
        Ok(out)
    }
    let tag = |p: &mut Point, t: String, x: Option<f64>, many: bool| {
        if !p.label.is_empty() {
            p.label.push(' ');
        }
        p.label.push_str(&t);
        if many {
            p.x = x;
        }
    };
    let many = |n: usize| n > 1;
    points = grow(points, &args.batch_size, |p, &b| {
        if b == 0 {
            bail!("invalid value '0' for '--batch-size': at least 1");
        }
        p.plan.sink_mode = SinkMode::Batch;
        p.plan.batch_size = b;
        if p.plan.batch_linger.is_zero() {
            p.plan.batch_linger = parse_duration("50ms")?;
        }
        tag(
            p,
            format!("batch={b}"),
            Some(b as f64),
            many(args.batch_size.len()),
        );
        Ok(())
    })?;
    points = grow(points, &args.batch_linger, |p, l| {
        let d = parse_duration(l)
            .map_err(|e| anyhow::anyhow!("invalid value '{l}' for '--batch-linger': {e}"))?;
        p.plan.batch_linger = d;
        tag(
            p,
            format!("linger={l}"),
            Some(d.as_secs_f64() * 1e3),
            many(args.batch_linger.len()),
        );
        Ok(())
    })?;
    points = grow(points, &args.workers, |p, &w| {
        if w == 0 || w > 1024 {
            bail!("invalid value '{w}' for '--workers': from 1 to 1024");
        }
        p.plan.sink_workers = w;
        tag(
            p,
            format!("workers={w}"),
            Some(w as f64),
            many(args.workers.len()),
        );
        Ok(())
    })?;
    points = grow(points, &args.queue, |p, &q| {
        p.plan.queue = q;
        if q == QueueKind::Unbounded && p.plan.safety_cap.is_none() {
            p.plan.safety_cap = Some(4_000_000);
        }
        tag(p, format!("queue={q:?}").to_lowercase(), None, false);
        Ok(())
    })?;
    points = grow(points, &args.policy, |p, &policy| {
        p.plan.policy = policy;
        tag(p, format!("policy={policy:?}").to_lowercase(), None, false);
        Ok(())
    })?;
    points = grow(points, &args.demand, |p, &d| {
        match d {
            Demand::Request1 => {
                p.plan.queue = QueueKind::Pull;
                p.plan.worker_window = 1;
            }
            Demand::RequestN => p.plan.queue = QueueKind::Pull,
            Demand::Credit => {
                p.plan.queue = QueueKind::Bounded;
                // The credit is what the workers hold: their window, or two batches if larger.
                p.plan.queue_cap =
                    p.plan.sink_workers * p.plan.worker_window.max(2 * p.plan.batch_size);
            }
            Demand::BoundedChannel => p.plan.queue = QueueKind::Bounded,
            Demand::Unbounded => {
                p.plan.queue = QueueKind::Unbounded;
                p.plan.safety_cap.get_or_insert(4_000_000);
            }
        }
        tag(p, format!("demand={d:?}").to_lowercase(), None, false);
        Ok(())
    })?;
    if points.len() > 64 {
        bail!("the grid has {} combinations; at most 64", points.len());
    }
    let axis =
        (varying.len() == 1 && points.iter().all(|p| p.x.is_some())).then(|| varying[0].clone());
    Ok((points, axis))
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
        "| run | delivered/s | p50 ms | p99 ms | dropped | lost | order violations | sink utilization |\n|---|---|---|---|---|---|---|---|\n",
    );
    let mut rows = Vec::new();
    let mut all_ok = true;
    for p in &points {
        let label = if p.label.is_empty() {
            "base".to_string()
        } else {
            p.label.clone()
        };
        let mut plan = p.plan.clone();
        plan.out = Some(out.join(label.replace([' ', '='], "_")));
        let progress = Progress::new(args.base.quiet, &label);
        let outcome = crate::pipeline::run(&plan, &progress).await?;
        progress.finish();
        let r = &outcome.report;
        let rate = r.delivered as f64 / plan.schedule.total().as_secs_f64();
        table.push_str(&format!(
            "| {label} | {rate:.0} | {:.1} | {:.1} | {} | {} | {} | {:.3} |\n",
            r.latency_ms.p50,
            r.latency_ms.p99,
            r.dropped.total,
            r.lost,
            r.ordering_violations,
            r.sink_utilization
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
