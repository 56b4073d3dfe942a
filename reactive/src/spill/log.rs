//! [`SpillLog`]: the on-disk half, synchronous. A FIFO of byte records in numbered segment
//! files, with a read cursor. See the [module docs](super) for what it guarantees.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use super::cursor::{Cursor, Position};
use super::record::{self, HEADER};
use super::{Damage, DamageKind, Fsync, Recovery, SpillConfig, SpillError, SpillStats};

/// One segment: its file, its length, and the damaged stretches recovery found in it.
#[derive(Debug)]
struct Segment {
    file: File,
    len: u64,
    /// `start -> end` of stretches to skip (found by recovery or by a reader).
    skips: BTreeMap<u64, u64>,
}

/// The on-disk FIFO. Single writer, single reader; the queue of [`open`](super::open) shares one
/// behind a lock.
#[derive(Debug)]
pub struct SpillLog {
    dir: PathBuf,
    config: SpillConfig,
    segments: BTreeMap<u64, Segment>,
    /// The segment appends go to (the last one).
    head: u64,
    read: Position,
    cursor: Cursor,
    /// Valid records appended and not yet consumed.
    backlog: u64,
    /// Sum of the segment files' lengths.
    bytes: u64,
    last_sync: Instant,
    dirty: bool,
    /// The file system said `ENOSPC` since the last reset: free the head segment as soon as
    /// it is consumed, whatever its size.
    starved: bool,
    stats: Arc<SpillStats>,
    scratch: Vec<u8>,
}

/// What [`SpillLog::append`] did not do.
#[derive(Debug)]
pub enum AppendError {
    /// The byte budget (or the file system) has no room now: retry after records are consumed.
    Full {
        /// The file system said so (`ENOSPC`), rather than the budget.
        no_space: bool,
    },
    /// The log could not take the record.
    Failed(SpillError),
}

fn segment_path(dir: &Path, n: u64) -> PathBuf {
    dir.join(format!("seg-{n:016}.log"))
}

fn segment_number(name: &str) -> Option<u64> {
    name.strip_prefix("seg-")?
        .strip_suffix(".log")?
        .parse()
        .ok()
}

fn io_error<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> SpillError + 'a {
    move |source| SpillError::Io {
        what,
        path: path.to_path_buf(),
        source: Arc::new(source),
    }
}

impl SpillLog {
    /// Opens the log in `config.dir` (creating it), recovering what a previous process left:
    /// segments before the cursor are deleted, every segment after it is checked record by
    /// record, damage is reported in the [`Recovery`] (and counted in `stats`), and a torn tail
    /// is cut off the last segment.
    ///
    /// # Errors
    /// When the directory or a file cannot be created, read or truncated.
    pub fn open(
        config: SpillConfig,
        stats: Arc<SpillStats>,
    ) -> Result<(SpillLog, Recovery), SpillError> {
        let dir = config.dir.clone();
        fs::create_dir_all(&dir).map_err(io_error("create the spill directory", &dir))?;
        let cursor_path = dir.join("cursor");
        let (cursor, saved) =
            Cursor::open(&cursor_path).map_err(io_error("open the cursor", &cursor_path))?;
        let mut numbers = Vec::new();
        for entry in fs::read_dir(&dir).map_err(io_error("list the spill directory", &dir))? {
            let entry = entry.map_err(io_error("list the spill directory", &dir))?;
            if let Some(n) = entry.file_name().to_str().and_then(segment_number) {
                numbers.push(n);
            }
        }
        numbers.sort_unstable();
        let mut read = saved.unwrap_or(Position {
            segment: numbers.first().copied().unwrap_or(0),
            offset: 0,
        });
        let mut recovery = Recovery::default();
        let mut segments = BTreeMap::new();
        let last = numbers.last().copied();
        for n in numbers {
            let path = segment_path(&dir, n);
            if n < read.segment {
                // Consumed before the crash; its deletion had not happened yet.
                fs::remove_file(&path).map_err(io_error("delete a consumed segment", &path))?;
                continue;
            }
            let file = File::options()
                .read(true)
                .write(true)
                .open(&path)
                .map_err(io_error("open a segment", &path))?;
            let buf = fs::read(&path).map_err(io_error("read a segment", &path))?;
            let from = if n == read.segment {
                (read.offset as usize).min(buf.len())
            } else {
                0
            };
            let checked = record::check(&buf, from, config.max_record_len());
            let mut len = buf.len() as u64;
            let mut skips = BTreeMap::new();
            for &(start, end) in &checked.damaged {
                skips.insert(start, end);
                recovery.damage.push(Damage {
                    segment: path.clone(),
                    offset: start,
                    bytes: end - start,
                    kind: DamageKind::Corrupt,
                });
            }
            if let Some(at) = checked.torn_at {
                recovery.damage.push(Damage {
                    segment: path.clone(),
                    offset: at,
                    bytes: len - at,
                    kind: DamageKind::Torn,
                });
                if Some(n) == last {
                    // Cut it off, so appends continue after the last whole record.
                    file.set_len(at)
                        .map_err(io_error("cut a torn tail", &path))?;
                    file.sync_data()
                        .map_err(io_error("cut a torn tail", &path))?;
                    len = at;
                } else {
                    skips.insert(at, len);
                }
            }
            recovery.records += checked.records;
            segments.insert(n, Segment { file, len, skips });
        }
        for d in &recovery.damage {
            stats.damaged(d.kind, d.bytes);
        }
        let head = match segments.last_key_value() {
            Some((&n, _)) => n,
            None => {
                let n = read.segment;
                let path = segment_path(&dir, n);
                let file = create_segment(&path)?;
                segments.insert(
                    n,
                    Segment {
                        file,
                        len: 0,
                        skips: BTreeMap::new(),
                    },
                );
                n
            }
        };
        if !segments.contains_key(&read.segment) {
            // The cursor's segment was deleted after it was consumed: start at the next one.
            read = Position {
                segment: *segments.keys().next().unwrap_or(&head),
                offset: 0,
            };
        }
        let bytes = segments.values().map(|s| s.len).sum();
        stats.recovered(recovery.records, bytes);
        let log = SpillLog {
            dir,
            config,
            segments,
            head,
            read,
            cursor,
            backlog: recovery.records,
            bytes,
            last_sync: Instant::now(),
            dirty: false,
            starved: false,
            stats,
            scratch: Vec::new(),
        };
        Ok((log, recovery))
    }

    /// Records appended and not yet consumed.
    pub fn backlog(&self) -> u64 {
        self.backlog
    }

    /// Bytes on disk (the segment files' lengths).
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// The position of the next record to consume.
    pub fn position(&self) -> Position {
        self.read
    }

    /// Appends one record. When it returns `Ok` the record is *acknowledged*: written to the
    /// file (so it survives the process being killed), and with [`Fsync::Always`] on stable
    /// storage (so it survives a power cut).
    ///
    /// # Errors
    /// [`AppendError::Full`] when the byte budget or the file system has no room (nothing was
    /// written: retry later); [`AppendError::Failed`] for a record over the largest size or
    /// any other I/O error.
    pub fn append(&mut self, payload: &[u8]) -> Result<(), AppendError> {
        self.append_unsynced(payload)?;
        self.sync_by_policy().map_err(AppendError::Failed)
    }

    fn sync_by_policy(&mut self) -> Result<(), SpillError> {
        let sync = match self.config.fsync {
            Fsync::Always => true,
            Fsync::Every(period) => self.last_sync.elapsed() >= period,
            Fsync::Never => false,
        };
        if sync { self.sync() } else { Ok(()) }
    }

    fn append_unsynced(&mut self, payload: &[u8]) -> Result<(), AppendError> {
        let max = self.config.max_record_len();
        if payload.len() > max as usize {
            return Err(AppendError::Failed(SpillError::TooLarge {
                bytes: payload.len() as u64,
                max: u64::from(max),
            }));
        }
        let framed = (payload.len() + HEADER) as u64;
        if self.bytes + framed > self.config.max_bytes {
            return Err(AppendError::Full { no_space: false });
        }
        let head_len = self.segments.get(&self.head).map_or(0, |s| s.len);
        if head_len > 0 && head_len + framed > self.config.segment_bytes_cap() {
            self.roll().map_err(|e| match &e {
                // No room for a new file is a full disk too: wait, do not fail.
                SpillError::Io { source, .. } if source.kind() == io::ErrorKind::StorageFull => {
                    self.starved = true;
                    AppendError::Full { no_space: true }
                }
                _ => AppendError::Failed(e),
            })?;
        }
        self.scratch.clear();
        record::frame(payload, &mut self.scratch);
        let path = segment_path(&self.dir, self.head);
        let Some(seg) = self.segments.get_mut(&self.head) else {
            return Err(AppendError::Failed(SpillError::Io {
                what: "find the head segment",
                path,
                source: Arc::new(io::Error::other("no head segment")),
            }));
        };
        if let Err(e) = seg.file.write_all_at(&self.scratch, seg.len) {
            // Take back whatever part was written, so the next record starts clean.
            let _ = seg.file.set_len(seg.len);
            if e.kind() == io::ErrorKind::StorageFull {
                self.starved = true;
                return Err(AppendError::Full { no_space: true });
            }
            return Err(AppendError::Failed(io_error("append a record", &path)(e)));
        }
        seg.len += framed;
        self.bytes += framed;
        self.backlog += 1;
        self.dirty = true;
        self.stats.appended(framed);
        Ok(())
    }

    /// Appends `payloads` in order, stopping at the first that is refused, then syncs once
    /// as the policy says (under [`Fsync::Always`], one `fdatasync` acknowledges them all).
    /// Returns how many were appended, and why the rest were not.
    pub fn append_many(&mut self, payloads: &[Vec<u8>]) -> (usize, Result<(), AppendError>) {
        let mut done = 0;
        let mut stopped = Ok(());
        for p in payloads {
            if let Err(e) = self.append_unsynced(p) {
                stopped = Err(e);
                break;
            }
            done += 1;
        }
        if done > 0 {
            if let Err(e) = self.sync_by_policy() {
                // Written, so not to be appended again; but not synced: the caller hears why.
                return (done, Err(AppendError::Failed(e)));
            }
        }
        (done, stopped)
    }

    /// Syncs if anything was appended since the last sync; returns whether it synced. The
    /// background flusher of [`Fsync::Every`] calls it once per period.
    ///
    /// # Errors
    /// When the file system fails the sync.
    pub fn sync_if_dirty(&mut self) -> Result<bool, SpillError> {
        if !self.dirty {
            return Ok(false);
        }
        self.sync()?;
        Ok(true)
    }

    /// Makes what was appended and consumed so far durable (`fdatasync` of the head segment and
    /// the cursor). [`Fsync::Every`] calls it from `append` and `pop` once its period has passed.
    ///
    /// # Errors
    /// When the file system fails the sync.
    pub fn sync(&mut self) -> Result<(), SpillError> {
        if let Some(seg) = self.segments.get(&self.head) {
            let path = segment_path(&self.dir, self.head);
            seg.file
                .sync_data()
                .map_err(io_error("sync a segment", &path))?;
        }
        let path = self.dir.join("cursor");
        self.cursor
            .sync()
            .map_err(io_error("sync the cursor", &path))?;
        self.last_sync = Instant::now();
        self.dirty = false;
        self.stats.synced();
        Ok(())
    }

    /// Takes the oldest record out of the log: when it returns `Some`, the cursor past it has
    /// been saved, so a restart will not replay it. `None` when the backlog is empty.
    ///
    /// # Errors
    /// When a segment cannot be read or the cursor cannot be saved (the record stays in the
    /// log: a later pop, or a restart, returns it).
    pub fn pop(&mut self) -> Result<Option<Vec<u8>>, SpillError> {
        Ok(self.pop_many(1)?.pop())
    }

    /// Takes up to `max` of the oldest records (at least one if any is there) and saves the
    /// cursor once, past all of them, before it returns: they are consumed together. A batch
    /// stops at the end of a segment, so a segment is deleted only after a save past it.
    ///
    /// # Errors
    /// As [`pop`](Self::pop); on an error no record of the batch is consumed.
    pub fn pop_many(&mut self, max: usize) -> Result<Vec<Vec<u8>>, SpillError> {
        let (start, start_backlog) = (self.read, self.backlog);
        let mut out: Vec<Vec<u8>> = Vec::new();
        while out.len() < max.max(1) {
            match self.next_record(out.is_empty()) {
                Ok(Some(record)) => out.push(record),
                Ok(None) => break,
                Err(e) => {
                    (self.read, self.backlog) = (start, start_backlog);
                    return Err(e);
                }
            }
        }
        if out.is_empty() {
            return Ok(out);
        }
        let sync = self.config.fsync == Fsync::Always;
        if let Err(e) = self.cursor.save(self.read, sync) {
            (self.read, self.backlog) = (start, start_backlog);
            return Err(io_error("save the cursor", &self.dir.join("cursor"))(e));
        }
        // The saved cursor is not on stable storage yet (unless synced above): the next sync
        // takes it there.
        self.dirty |= !sync;
        if self.backlog == 0 {
            // Drained: give the head segment's bytes back now, not at the next pop (a writer
            // waiting on a full file system may be what this reader waits for). Best effort:
            // when it fails, the segment is freed by a later reset or read past.
            let _ = self.reset_if_large();
        }
        for record in &out {
            self.stats.consumed(HEADER as u64 + record.len() as u64);
        }
        if let Fsync::Every(period) = self.config.fsync {
            if self.last_sync.elapsed() >= period {
                self.sync()?;
            }
        }
        Ok(out)
    }

    /// The next record, moving the read position past it (the caller saves the cursor). `None`
    /// when the backlog is empty, or at the end of a segment when `may_finish` is false.
    fn next_record(&mut self, may_finish: bool) -> Result<Option<Vec<u8>>, SpillError> {
        loop {
            if self.backlog == 0 {
                if may_finish {
                    self.reset_if_large()?;
                }
                return Ok(None);
            }
            let n = self.read.segment;
            let path = segment_path(&self.dir, n);
            let Some(seg) = self.segments.get_mut(&n) else {
                // Only an inconsistent count gets here: trust the files.
                self.backlog = 0;
                return Ok(None);
            };
            if let Some(&end) = seg.skips.get(&self.read.offset) {
                self.read.offset = end;
                continue;
            }
            if self.read.offset >= seg.len {
                if n == self.head {
                    self.backlog = 0;
                    return Ok(None);
                }
                if !may_finish {
                    return Ok(None);
                }
                self.finish_segment(n)?;
                continue;
            }
            let mut header = [0u8; HEADER];
            seg.file
                .read_exact_at(&mut header, self.read.offset)
                .map_err(io_error("read a record", &path))?;
            let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
            let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
            let end = self.read.offset + HEADER as u64 + u64::from(len);
            if len <= self.config.max_record_len() && end <= seg.len {
                let mut payload = vec![0u8; len as usize];
                seg.file
                    .read_exact_at(&mut payload, self.read.offset + HEADER as u64)
                    .map_err(io_error("read a record", &path))?;
                if record::checksum(len, &payload) == crc {
                    self.read = Position {
                        segment: n,
                        offset: end,
                    };
                    self.backlog -= 1;
                    return Ok(Some(payload));
                }
            }
            // Damaged since recovery checked it (or appended by someone else): report, resync.
            self.skip_damage(n)?;
        }
    }

    /// The reader met damage at its position in segment `n`: find the next valid record in the
    /// segment, record the stretch as skipped, and count it.
    fn skip_damage(&mut self, n: u64) -> Result<(), SpillError> {
        let path = segment_path(&self.dir, n);
        let buf = fs::read(&path).map_err(io_error("read a segment", &path))?;
        let at = self.read.offset;
        let Some(seg) = self.segments.get_mut(&n) else {
            return Ok(());
        };
        let limit = (seg.len as usize).min(buf.len());
        let resume = record::resync(&buf[..limit], at as usize, self.config.max_record_len())
            .map_or(seg.len, |r| r as u64);
        seg.skips.insert(at, resume);
        let damage = Damage {
            segment: path,
            offset: at,
            bytes: resume - at,
            kind: DamageKind::Corrupt,
        };
        self.stats.damaged(damage.kind, damage.bytes);
        self.stats.report(damage);
        if resume == seg.len && n == self.head {
            // Nothing valid is left to read: what the count said was in the damage.
            self.backlog = 0;
            self.read.offset = resume;
        }
        Ok(())
    }

    /// Segment `n` is read to its end and is not the head: move the cursor to the next one, then
    /// delete it (a crash in between leaves a file before the cursor, deleted at the next open).
    fn finish_segment(&mut self, n: u64) -> Result<(), SpillError> {
        let next = self
            .segments
            .range(n + 1..)
            .next()
            .map_or(self.head, |(&k, _)| k);
        let at = Position {
            segment: next,
            offset: 0,
        };
        self.cursor
            .save(at, self.config.fsync == Fsync::Always)
            .map_err(io_error("save the cursor", &self.dir.join("cursor")))?;
        self.read = at;
        if let Some(seg) = self.segments.remove(&n) {
            self.bytes -= seg.len;
            self.stats.freed(seg.len);
            let path = segment_path(&self.dir, n);
            drop(seg);
            fs::remove_file(&path).map_err(io_error("delete a consumed segment", &path))?;
        }
        Ok(())
    }

    /// Starts a new head segment.
    fn roll(&mut self) -> Result<(), SpillError> {
        if self.config.fsync != Fsync::Never && self.dirty {
            self.sync()?;
        }
        let n = self.head + 1;
        let file = create_segment(&segment_path(&self.dir, n))?;
        self.segments.insert(
            n,
            Segment {
                file,
                len: 0,
                skips: BTreeMap::new(),
            },
        );
        self.head = n;
        Ok(())
    }

    /// The backlog is empty: if the head segment has grown large, or the file system ran out of
    /// space, start afresh so its bytes come back (to the budget, or to the file system).
    fn reset_if_large(&mut self) -> Result<(), SpillError> {
        let len = self.segments.get(&self.head).map_or(0, |s| s.len);
        if len > 0 && (len >= self.config.segment_bytes_cap() / 4 || self.starved) {
            self.starved = false;
            let old = self.head;
            self.roll()?;
            self.read = Position {
                segment: old,
                offset: len,
            };
            self.finish_segment(old)?;
        }
        Ok(())
    }
}

fn create_segment(path: &Path) -> Result<File, SpillError> {
    let file = File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(io_error("create a segment", path))?;
    // A segment that already exists (left empty by a crash) is reused from its start.
    file.set_len(0)
        .map_err(io_error("create a segment", path))?;
    if let Some(dir) = path.parent() {
        // The new name must survive a power cut before records in it are acknowledged.
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(file)
}

impl Drop for SpillLog {
    fn drop(&mut self) {
        // An idle log under `Fsync::Every` would otherwise keep its last records unsynced.
        if self.dirty && self.config.fsync != Fsync::Never {
            let _ = self.sync();
        }
    }
}
