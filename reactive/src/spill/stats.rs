//! [`SpillStats`]: the spill's live counters.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};

use super::{Damage, DamageKind};

/// Damage reports kept for [`SpillStats::damage`]: the first ones, the rest only counted.
const KEEP_REPORTS: usize = 64;

/// Counters of a spill queue ([`open`](super::open)), shared with its log.
#[derive(Debug, Default)]
pub struct SpillStats {
    memory: AtomicU64,
    in_hand: AtomicU64,
    high_water: AtomicU64,
    pushed: AtomicU64,
    popped: AtomicU64,
    spilled: AtomicU64,
    unspilled: AtomicU64,
    backlog: AtomicU64,
    disk_bytes: AtomicU64,
    recovered: AtomicU64,
    full_waits: AtomicU64,
    no_space: AtomicU64,
    blocked: AtomicBool,
    torn: AtomicU64,
    corrupt: AtomicU64,
    damaged_bytes: AtomicU64,
    undecodable: AtomicU64,
    syncs: AtomicU64,
    reports: Mutex<Vec<Damage>>,
}

/// A copy of the counters at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SpillSnapshot {
    /// Items held in memory now.
    pub memory: u64,
    /// Items the [`Spill`](super::Spill) operator holds between the source and the queue, or
    /// between the queue and the subscriber (a batch on its way).
    pub in_hand: u64,
    /// The most items queued at once (memory and disk), as seen after each push.
    pub high_water: u64,
    /// Items pushed (acknowledged) since the queue was opened.
    pub pushed: u64,
    /// Items popped since the queue was opened (recovered ones included).
    pub popped: u64,
    /// Records written to disk.
    pub spilled: u64,
    /// Records read back from disk.
    pub unspilled: u64,
    /// Records on disk, not yet consumed.
    pub backlog: u64,
    /// Bytes of segment files on disk.
    pub disk_bytes: u64,
    /// Records found on disk when the queue was opened.
    pub recovered: u64,
    /// Times a push waited because the byte budget was full.
    pub full_waits: u64,
    /// Times the file system said `ENOSPC` (the push waited too).
    pub no_space: u64,
    /// Torn tails dropped.
    pub torn: u64,
    /// Corrupt stretches skipped.
    pub corrupt: u64,
    /// Bytes skipped as torn or corrupt.
    pub damaged_bytes: u64,
    /// Records with a valid checksum that the item's codec refused (skipped).
    pub undecodable: u64,
    /// `fdatasync` calls.
    pub syncs: u64,
}

impl SpillStats {
    /// The counters now.
    pub fn snapshot(&self) -> SpillSnapshot {
        SpillSnapshot {
            memory: self.memory.load(Relaxed),
            in_hand: self.in_hand.load(Relaxed),
            high_water: self.high_water.load(Relaxed),
            pushed: self.pushed.load(Relaxed),
            popped: self.popped.load(Relaxed),
            spilled: self.spilled.load(Relaxed),
            unspilled: self.unspilled.load(Relaxed),
            backlog: self.backlog.load(Relaxed),
            disk_bytes: self.disk_bytes.load(Relaxed),
            recovered: self.recovered.load(Relaxed),
            full_waits: self.full_waits.load(Relaxed),
            no_space: self.no_space.load(Relaxed),
            torn: self.torn.load(Relaxed),
            corrupt: self.corrupt.load(Relaxed),
            damaged_bytes: self.damaged_bytes.load(Relaxed),
            undecodable: self.undecodable.load(Relaxed),
            syncs: self.syncs.load(Relaxed),
        }
    }

    /// Items queued, in memory and on disk, and in the operator's hands.
    pub fn depth(&self) -> u64 {
        self.memory.load(Relaxed) + self.backlog.load(Relaxed) + self.in_hand.load(Relaxed)
    }

    /// Whether a push is waiting for room on disk now.
    pub fn blocked(&self) -> bool {
        self.blocked.load(Relaxed)
    }

    /// The damage reported so far (the first 64; the rest are counted only).
    pub fn damage(&self) -> Vec<Damage> {
        self.reports.lock().map(|r| r.clone()).unwrap_or_default()
    }

    pub(crate) fn memory(&self, n: usize) {
        self.memory.store(n as u64, Relaxed);
    }
    pub(crate) fn take_in_hand(&self, n: usize) {
        self.in_hand.fetch_add(n as u64, Relaxed);
    }
    pub(crate) fn put_down(&self, n: usize) {
        let _ = self
            .in_hand
            .fetch_update(Relaxed, Relaxed, |h| Some(h.saturating_sub(n as u64)));
    }
    pub(crate) fn pushed(&self) {
        self.pushed.fetch_add(1, Relaxed);
        self.high_water.fetch_max(self.depth(), Relaxed);
    }
    pub(crate) fn popped(&self) {
        self.popped.fetch_add(1, Relaxed);
    }
    pub(crate) fn appended(&self, bytes: u64) {
        self.spilled.fetch_add(1, Relaxed);
        self.backlog.fetch_add(1, Relaxed);
        self.disk_bytes.fetch_add(bytes, Relaxed);
    }
    pub(crate) fn consumed(&self, _bytes: u64) {
        self.unspilled.fetch_add(1, Relaxed);
        let _ = self
            .backlog
            .fetch_update(Relaxed, Relaxed, |b| Some(b.saturating_sub(1)));
    }
    pub(crate) fn backlog_is(&self, n: u64) {
        self.backlog.store(n, Relaxed);
    }
    pub(crate) fn freed(&self, bytes: u64) {
        let _ = self
            .disk_bytes
            .fetch_update(Relaxed, Relaxed, |b| Some(b.saturating_sub(bytes)));
    }
    pub(crate) fn recovered(&self, records: u64, bytes: u64) {
        self.recovered.fetch_add(records, Relaxed);
        self.backlog.store(records, Relaxed);
        self.disk_bytes.store(bytes, Relaxed);
    }
    pub(crate) fn waited_full(&self, no_space: bool) {
        self.full_waits.fetch_add(1, Relaxed);
        if no_space {
            self.no_space.fetch_add(1, Relaxed);
        }
    }
    pub(crate) fn set_blocked(&self, blocked: bool) {
        self.blocked.store(blocked, Relaxed);
    }
    pub(crate) fn damaged(&self, kind: DamageKind, bytes: u64) {
        match kind {
            DamageKind::Torn => self.torn.fetch_add(1, Relaxed),
            DamageKind::Corrupt => self.corrupt.fetch_add(1, Relaxed),
        };
        self.damaged_bytes.fetch_add(bytes, Relaxed);
    }
    pub(crate) fn report(&self, damage: Damage) {
        if let Ok(mut r) = self.reports.lock() {
            if r.len() < KEEP_REPORTS {
                r.push(damage);
            }
        }
    }
    pub(crate) fn undecodable(&self) {
        self.undecodable.fetch_add(1, Relaxed);
    }
    pub(crate) fn synced(&self) {
        self.syncs.fetch_add(1, Relaxed);
    }
}
