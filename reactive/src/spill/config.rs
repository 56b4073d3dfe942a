//! The spill's configuration, its errors and its recovery report.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// When appended records (and the cursor) are made durable with `fdatasync`.
///
/// Every policy survives the process being killed (`kill -9`): an acknowledged record is in the
/// kernel's page cache, which outlives the process. They differ on a power cut or a kernel crash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fsync {
    /// After every record, before the push is acknowledged (and after every pop, for the
    /// cursor): a power cut loses nothing acknowledged. The slowest.
    Always,
    /// Once per period: appends and pops sync when the period has passed since the last sync,
    /// and a background task (started by the first push) syncs an idle queue's unsynced
    /// records. A power cut loses what was acknowledged in about the last period.
    Every(Duration),
    /// Never (the kernel writes back in its own time): a power cut can lose any record not yet
    /// written back, typically the last 30 s.
    Never,
}

/// Where and how much a spill queue ([`open`](super::open)) may spill.
#[derive(Debug, Clone)]
pub struct SpillConfig {
    pub(crate) dir: PathBuf,
    pub(crate) memory: usize,
    pub(crate) max_bytes: u64,
    pub(crate) segment_bytes: u64,
    pub(crate) fsync: Fsync,
}

impl SpillConfig {
    /// Spill into `dir` (created if missing; one queue per directory) once `memory` items are
    /// held in memory (0: every item goes through the disk), with at most `max_bytes` on disk
    /// (at least 4 KiB). Defaults: 8 MiB segments, [`Fsync::Every`] 100 ms.
    pub fn new(dir: impl Into<PathBuf>, memory: usize, max_bytes: u64) -> Self {
        SpillConfig {
            dir: dir.into(),
            memory,
            max_bytes: max_bytes.max(4096),
            segment_bytes: 8 << 20,
            fsync: Fsync::Every(Duration::from_millis(100)),
        }
    }

    /// The fsync policy.
    pub fn fsync(mut self, fsync: Fsync) -> Self {
        self.fsync = fsync;
        self
    }

    /// The size at which a segment is closed and the next one started (capped at a quarter of
    /// the budget, so consumed segments free room while the head one fills).
    pub fn segment_bytes(mut self, bytes: u64) -> Self {
        self.segment_bytes = bytes.max(64);
        self
    }

    /// The directory.
    pub fn dir(&self) -> &std::path::Path {
        &self.dir
    }

    pub(crate) fn segment_bytes_cap(&self) -> u64 {
        self.segment_bytes.min(self.max_bytes / 4).max(64)
    }

    /// The largest payload: a quarter of the budget (so a full budget always holds a whole
    /// segment that a reader can free), and at most `u32::MAX`.
    pub(crate) fn max_record_len(&self) -> u32 {
        (self.max_bytes / 4 - super::record::HEADER as u64).min(u64::from(u32::MAX)) as u32
    }
}

/// An error of the spill. I/O errors name what was being done and the file.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum SpillError {
    /// A file operation failed.
    Io {
        /// What was being done ("append a record").
        what: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The operating system's error.
        source: Arc<std::io::Error>,
    },
    /// A record larger than the log takes (a quarter of `max_bytes`).
    TooLarge {
        /// The record's size.
        bytes: u64,
        /// The largest the log takes.
        max: u64,
    },
    /// The queue was closed.
    Closed,
    /// A blocking task failed (the runtime is shutting down).
    Runtime,
}

impl std::fmt::Display for SpillError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SpillError::Io { what, path, source } => {
                write!(f, "cannot {what} ({}): {source}", path.display())
            }
            SpillError::TooLarge { bytes, max } => {
                write!(
                    f,
                    "a record of {bytes} bytes is over the spill's largest, {max} bytes"
                )
            }
            SpillError::Closed => f.write_str("the spill queue is closed"),
            SpillError::Runtime => f.write_str("the spill's blocking task did not finish"),
        }
    }
}

impl std::error::Error for SpillError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            SpillError::Io { source, .. } => Some(&**source),
            _ => None,
        }
    }
}

/// What kind of damage recovery (or a reader) found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DamageKind {
    /// An incomplete record at the end of a segment: a write the crash interrupted. It was never
    /// acknowledged; it is dropped (cut off the last segment).
    Torn,
    /// Bytes that fail their checksum (or hold an impossible length), followed by valid records
    /// or by the end of the segment. Skipped; the reader resumes at the next valid record.
    Corrupt,
}

/// One damaged stretch: where it is and how long.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Damage {
    /// The segment file.
    pub segment: PathBuf,
    /// The byte offset in it where the damage starts.
    pub offset: u64,
    /// Bytes skipped.
    pub bytes: u64,
    /// Torn or corrupt.
    pub kind: DamageKind,
}

impl std::fmt::Display for Damage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.kind {
            DamageKind::Torn => "torn last record",
            DamageKind::Corrupt => "corrupt records",
        };
        write!(
            f,
            "{kind} in {} at byte {}: {} bytes skipped",
            self.segment.display(),
            self.offset,
            self.bytes
        )
    }
}

/// What opening a spill directory found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recovery {
    /// Valid records waiting to be consumed.
    pub records: u64,
    /// Damage found and skipped, in file order.
    pub damage: Vec<Damage>,
}
