//! The time series as CSV: a header of the field names ([`super::FIELDS`]), one row per sample.
//! [`CsvWriter`] writes it sample by sample as a run goes (memory: one fixed buffer);
//! [`from_csv`] reads it back for the experiments.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

use super::{FIELDS, Field, Sample};

/// The CSV's header line: the field names.
pub fn csv_header() -> String {
    let mut out = FIELDS.iter().map(|f| f.name).collect::<Vec<_>>().join(",");
    out.push('\n');
    out
}

/// One CSV line for `s`.
pub fn csv_row(s: &Sample) -> String {
    let row: Vec<String> = FIELDS
        .iter()
        .map(|f| format!("{:.*}", f.decimals, (f.get)(s)))
        .collect();
    let mut out = row.join(",");
    out.push('\n');
    out
}

/// The series as CSV, all at once (what [`CsvWriter`] writes sample by sample).
pub fn to_csv(series: &[Sample]) -> String {
    let mut out = csv_header();
    for s in series {
        out.push_str(&csv_row(s));
    }
    out
}

/// Reads a series written by [`to_csv`]. Columns are found by name, so a file with more
/// columns reads too; a missing column or a value that is not a number is an error naming the
/// line and the column, never a silent zero.
pub fn from_csv(text: &str) -> anyhow::Result<Vec<Sample>> {
    let mut lines = text.lines();
    let header: Vec<&str> = lines
        .next()
        .context("the time series is empty")?
        .split(',')
        .collect();
    let columns: Vec<(usize, &Field)> = FIELDS
        .iter()
        .map(|f| {
            header
                .iter()
                .position(|h| *h == f.name)
                .map(|i| (i, f))
                .with_context(|| format!("the time series has no column '{}'", f.name))
        })
        .collect::<anyhow::Result<_>>()?;
    let mut out = Vec::new();
    for (n, line) in lines.enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let cells: Vec<&str> = line.split(',').collect();
        let mut s = Sample::default();
        for (i, f) in &columns {
            let cell = cells.get(*i).copied().unwrap_or("");
            let Ok(v) = cell.trim().parse::<f64>() else {
                bail!(
                    "line {}: column '{}' is '{cell}', not a number",
                    n + 2,
                    f.name
                );
            };
            (f.set)(&mut s, v);
        }
        out.push(s);
    }
    Ok(out)
}

/// Writes a series to a CSV file sample by sample (the format of [`super::to_csv`]), through a
/// fixed buffer. A write that fails is reported once by [`CsvWriter::write`]; later ones are
/// skipped.
#[derive(Debug)]
pub struct CsvWriter {
    path: PathBuf,
    out: Option<std::io::BufWriter<std::fs::File>>,
}

impl CsvWriter {
    /// Creates `path` and writes the header.
    pub fn create(path: &Path) -> anyhow::Result<CsvWriter> {
        let file = std::fs::File::create(path)
            .with_context(|| format!("cannot create {}", path.display()))?;
        let mut out = std::io::BufWriter::new(file);
        out.write_all(csv_header().as_bytes())
            .with_context(|| format!("cannot write {}", path.display()))?;
        Ok(CsvWriter {
            path: path.to_path_buf(),
            out: Some(out),
        })
    }

    /// Appends one row; an error the first time a write fails, nothing after.
    pub fn write(&mut self, s: &Sample) -> anyhow::Result<()> {
        let Some(out) = &mut self.out else {
            return Ok(());
        };
        // Written through at each sample, so a run that is killed leaves its rows so far.
        if let Err(e) = out
            .write_all(csv_row(s).as_bytes())
            .and_then(|()| out.flush())
        {
            self.out = None;
            return Err(e).with_context(|| format!("cannot write {}", self.path.display()));
        }
        Ok(())
    }

    /// Flushes what is buffered.
    pub fn finish(mut self) -> anyhow::Result<()> {
        if let Some(out) = &mut self.out {
            out.flush()
                .with_context(|| format!("cannot write {}", self.path.display()))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_csv_writer_writes_what_to_csv_writes() {
        let dir = std::env::temp_dir().join(format!("series-csv-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("timeseries.csv");
        let series = vec![sample(0.25, 1.5, 3), sample(0.5, 2.5, 4)];
        let mut w = CsvWriter::create(&path).unwrap();
        for s in &series {
            w.write(s).unwrap();
        }
        w.finish().unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text, to_csv(&series));
        assert_eq!(from_csv(&text).unwrap(), series);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn sample(t: f64, rate: f64, lag: u64) -> Sample {
        Sample {
            t,
            delivered_rate: rate,
            lag,
            ..Sample::default()
        }
    }
}
