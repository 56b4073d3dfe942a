//! What a run leaves in its folder, read back: its report and its time series. A leaf: the
//! runners (plain, limited, over Kafka) write the folder, and this reads it for them and for
//! `--replot`.

use std::path::Path;

use anyhow::Context;

use crate::pipeline::Outcome;
use crate::report::Report;

/// Reads the report and time series a run left in `dir`.
pub(super) fn read_back(dir: &Path) -> anyhow::Result<Outcome> {
    let report_path = dir.join("report.json");
    let text = std::fs::read_to_string(&report_path)
        .with_context(|| format!("no {}", report_path.display()))?;
    let report: Report = serde_json::from_str(&text)?;
    let csv = dir.join("timeseries.csv");
    let text =
        std::fs::read_to_string(&csv).with_context(|| format!("cannot read {}", csv.display()))?;
    let series =
        crate::telemetry::from_csv(&text).with_context(|| format!("invalid {}", csv.display()))?;
    Ok(Outcome {
        report,
        series,
        latency: crate::sink::histogram(),
    })
}
