//! Poison records: records that are not events go to `poison.jsonl` in `--out`, with the
//! reason, and are counted. One writer for every poll loop.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Context;
use reactive::sink::DeadLetters;

/// A record that is not an event, as written to `poison.jsonl`.
#[derive(Debug, serde::Serialize)]
struct PoisonRecord<'a> {
    topic: &'a str,
    partition: i32,
    offset: i64,
    value: &'a str,
}

/// The dead-letter file of poison records, and its count.
pub struct PoisonLog {
    file: DeadLetters<String>,
    count: Arc<AtomicU64>,
}

impl PoisonLog {
    /// Opens `dir/poison.jsonl`, emptied first; `count` is incremented for each record.
    pub fn open(dir: &Path, count: Arc<AtomicU64>) -> anyhow::Result<Self> {
        let path = dir.join("poison.jsonl");
        let _ = std::fs::remove_file(&path);
        let file = DeadLetters::open(&path, String::clone)
            .with_context(|| format!("cannot open {}", path.display()))?;
        Ok(PoisonLog { file, count })
    }

    /// Records one poison record. A failure to write it is logged and counted
    /// ([`write_errors`](Self::write_errors)), never dropped silently: the record is still
    /// acknowledged, as it can never be processed.
    pub fn record(
        &self,
        topic: &str,
        partition: i32,
        offset: i64,
        (reason, value): (String, String),
    ) {
        self.count.fetch_add(1, Ordering::Relaxed);
        let line = serde_json::to_string(&PoisonRecord {
            topic,
            partition,
            offset,
            value: &value,
        })
        .unwrap_or_else(|_| "null".into());
        if let Err(e) = self.file.record(&line, &reason, 1) {
            tracing::error!(error = %e, topic, partition, offset, "cannot write a poison record");
        }
    }

    /// Poison records that could not be written to the file.
    pub fn write_errors(&self) -> u64 {
        self.file.write_errors()
    }
}
