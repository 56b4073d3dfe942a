//! What a run writes: report.json, the latency histogram (HDR interval log), and charts (SVG).
//! The time series (`timeseries.csv`, every sample) is written by the pipeline as it runs
//! ([`crate::telemetry::CsvWriter`]); the charts draw the run's bounded series.

use std::path::Path;

use anyhow::Context;
use hdrhistogram::serialization::V2DeflateSerializer;
use hdrhistogram::serialization::interval_log::IntervalLogWriterBuilder;

use crate::chart::{Chart, Series};
use crate::pipeline::Outcome;
use crate::telemetry::Sample;

pub fn write_hlog(path: &Path, outcome: &Outcome) -> anyhow::Result<()> {
    let mut buf = Vec::new();
    {
        let mut serializer = V2DeflateSerializer::new();
        let mut writer = IntervalLogWriterBuilder::new()
            .with_base_time(std::time::SystemTime::now())
            .add_comment(
                "end-to-end latency, microseconds, from intended send time to sink acknowledgement",
            )
            .begin_log_with(&mut buf, &mut serializer)
            .map_err(|e| anyhow::anyhow!("cannot start the HDR log: {e:?}"))?;
        writer
            .write_histogram(
                &outcome.latency,
                std::time::Duration::ZERO,
                std::time::Duration::from_secs_f64(outcome.report.duration_s),
                None,
            )
            .map_err(|e| anyhow::anyhow!("cannot write the HDR log: {e:?}"))?;
    }
    std::fs::write(path, buf).with_context(|| format!("cannot write {}", path.display()))
}

pub fn series(name: &str, s: &[Sample], f: impl Fn(&Sample) -> f64) -> Series {
    Series {
        name: name.into(),
        points: s.iter().map(|x| (x.t, f(x))).collect(),
    }
}

pub fn write_chart(path: &Path, chart: &Chart) -> anyhow::Result<()> {
    std::fs::write(path, chart.svg()).with_context(|| format!("cannot write {}", path.display()))
}

/// Everything for one run, into `dir`.
pub fn write_run(dir: &Path, title: &str, outcome: &Outcome) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    std::fs::write(
        dir.join("report.json"),
        serde_json::to_string_pretty(&outcome.report)?,
    )?;
    write_hlog(&dir.join("latency.hlog"), outcome)?;
    let s = &outcome.series;
    write_chart(
        &dir.join("rates.svg"),
        &Chart::new(
            format!("{title}: offered, generated and delivered"),
            "seconds",
            "events/s",
            vec![
                series("offered (schedule)", s, |x| x.target_rate),
                series("generated", s, |x| x.generated_rate),
                series("delivered to sink", s, |x| x.delivered_rate),
            ],
        ),
    )?;
    write_chart(
        &dir.join("memory.svg"),
        &Chart::new(
            format!("{title}: where the excess went"),
            "seconds",
            "MB",
            vec![
                series("process RSS", s, |x| x.rss_bytes as f64 / 1e6),
                series("queued bytes", s, |x| x.queue_bytes as f64 / 1e6),
            ],
        ),
    )?;
    write_chart(
        &dir.join("lag.svg"),
        &Chart::new(
            format!("{title}: lag and queue depth"),
            "seconds",
            "events",
            vec![
                series("lag (due, not delivered)", s, |x| x.lag as f64),
                series("held at the source", s, |x| x.source_backlog as f64),
                series("queued", s, |x| x.queue_depth as f64),
                series("dropped (total)", s, |x| x.dropped as f64),
            ],
        ),
    )?;
    Ok(())
}
