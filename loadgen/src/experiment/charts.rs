//! The charts that put every run's curve on one axis, and, for a sweep, throughput and p99
//! against the parameter.

use super::Done;
use super::load::Loaded;
use super::measure::steady_mean;
use super::{ChartSpec, Kind};
use crate::chart::{Chart, Series};
use crate::telemetry::Sample;

fn field(s: &Sample, name: &str) -> f64 {
    s.field(name).unwrap_or(f64::NAN)
}

/// Every chart of the config, the sweep's two, and the memory limit's.
pub(super) fn draw(l: &Loaded, done: &Done<'_>) -> anyhow::Result<()> {
    for c in &l.config.charts {
        over_time(l, done, c)?;
    }
    if l.config.kind == Kind::Sweep {
        sweep(l, done)?;
    }
    super::cliff::draw(l, done)
}

/// One chart of a field over time, a curve (or two, with `also`) per run.
fn over_time(l: &Loaded, done: &Done<'_>, c: &ChartSpec) -> anyhow::Result<()> {
    let mut series = Vec::new();
    for (spec, outcome, _) in &done.outcomes {
        for name in std::iter::once(&c.field).chain(c.also.as_ref()) {
            series.push(Series {
                name: format!("{} {}", spec.label, name.replace('_', " ")),
                points: outcome
                    .series
                    .iter()
                    .map(|s| (s.t, field(s, name)))
                    .collect(),
            });
        }
    }
    crate::output::write_chart(
        &l.out.join(&c.file),
        &Chart {
            title: c.title.clone(),
            x_label: "seconds".into(),
            y_label: c.y_label.clone(),
            log_x: false,
            log_y: false,
            series,
        },
    )
}

/// A sweep's throughput and p99 against its parameter, one curve per series of runs.
fn sweep(l: &Loaded, done: &Done<'_>) -> anyhow::Result<()> {
    let config = &l.config;
    let mut groups: Vec<String> = Vec::new();
    for (spec, _, _) in &done.outcomes {
        let g = spec.series.clone().unwrap_or_default();
        if !groups.contains(&g) {
            groups.push(g);
        }
    }
    let x_label = config.x_label.clone().unwrap_or_else(|| "x".into());
    // Parameters that span decades read better on a log axis.
    let xs: Vec<f64> = config.runs.iter().filter_map(|r| r.x).collect();
    let (lo, hi) = xs
        .iter()
        .fold((f64::MAX, 0.0f64), |(lo, hi), &x| (lo.min(x), hi.max(x)));
    let wide = lo > 0.0 && hi / lo >= 50.0;
    let (mut throughput, mut p99) = (Vec::new(), Vec::new());
    for g in &groups {
        let points: Vec<_> = done
            .outcomes
            .iter()
            .filter(|(s, _, _)| s.series.clone().unwrap_or_default() == *g)
            .collect();
        let name = if g.is_empty() {
            String::new()
        } else {
            format!("{g} ")
        };
        throughput.push(Series {
            name: format!("{name}delivered events/s"),
            points: points
                .iter()
                .map(|(s, o, t)| (s.x.unwrap_or(0.0), steady_mean(o, |x| x.delivered_rate, *t)))
                .collect(),
        });
        p99.push(Series {
            name: format!("{name}p99 ms"),
            points: points
                .iter()
                .map(|(s, o, _)| (s.x.unwrap_or(0.0), o.report.latency_ms.p99))
                .collect(),
        });
    }
    let chart = |what: &str, y: &str, log_y: bool, series| Chart {
        title: format!("{}: {what}", config.title),
        x_label: x_label.clone(),
        y_label: y.into(),
        log_x: wide,
        log_y,
        series,
    };
    crate::output::write_chart(
        &l.out.join("throughput.svg"),
        &chart("throughput", "events/s", false, throughput),
    )?;
    crate::output::write_chart(
        &l.out.join("p99.svg"),
        &chart("p99 latency", "ms", true, p99),
    )
}
