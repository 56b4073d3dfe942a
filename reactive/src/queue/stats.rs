//! What a queue reports while it runs: depth, high-water marks, time blocked, drops.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use super::DropReason;

/// Live counters of one queue, shared between the queue and whoever watches it (a progress
/// bar, a metrics exporter, a slow-source controller). Cheap to read at any time.
///
/// Each counter has exactly one writer at a time (the queue's input side, its output side, or
/// a purge, which holds the queue's lock as the input side does), so the hot path updates them
/// with plain loads and stores, never a locked read-modify-write; depth is derived from what
/// went in and what went out.
#[derive(Debug)]
pub struct QueueStats {
    capacity: u64,
    // Written by the input side only.
    pushed: AtomicU64,
    bytes_in: AtomicU64,
    evicted: AtomicU64,
    evicted_bytes: AtomicU64,
    high_water: AtomicU64,
    high_water_bytes: AtomicU64,
    dropped_newest: AtomicU64,
    dropped_oldest: AtomicU64,
    dropped_priority: [AtomicU64; 16],
    dropped_overflow: AtomicU64,
    // Written under the queue's lock, by a purge.
    purged: AtomicU64,
    purged_bytes: AtomicU64,
    // Written by the output side only.
    popped: AtomicU64,
    bytes_out: AtomicU64,
    overflowed: AtomicBool,
    blocked: Mutex<Blocked>,
    /// Whether `blocked` holds an unstamped spell: the end of a poll checks this alone.
    unstamped: AtomicBool,
}

/// Adds to a counter that only the calling side writes: no locked instruction needed.
#[inline]
fn bump(counter: &AtomicU64, n: u64) -> u64 {
    let v = counter.load(Ordering::Relaxed).wrapping_add(n);
    counter.store(v, Ordering::Relaxed);
    v
}

#[derive(Debug, Default)]
struct Blocked {
    total: Duration,
    since: Option<Instant>,
    /// Blocked since some time in the queue task's current poll, not yet stamped: see
    /// [`QueueStats::stamp_blocked`].
    unstamped: bool,
}

/// A copy of a queue's counters at one moment.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct QueueSnapshot {
    /// The capacity (`u64::MAX` when unbounded; 0 in pull mode).
    pub capacity: u64,
    /// Items queued now.
    pub depth: u64,
    /// Bytes queued now, as the queue's weigher counts them.
    pub depth_bytes: u64,
    /// The most items ever queued at once.
    pub high_water: u64,
    /// The most bytes ever queued at once.
    pub high_water_bytes: u64,
    /// Items that entered.
    pub pushed: u64,
    /// Items that left downstream.
    pub popped: u64,
    /// Items dropped on arrival because the queue was full.
    pub dropped_newest: u64,
    /// Items evicted from the head to make room.
    pub dropped_oldest: u64,
    /// Items shed per priority class (index = class).
    pub dropped_priority: Vec<u64>,
    /// Items discarded when the safety cap ended the stream: the one that found the cap (with
    /// the rest of the batch it came in, when the source handed over a batch) and those still
    /// queued.
    pub dropped_overflow: u64,
    /// Items removed on purpose by a [`Purger`](crate::purge::Purger) (a revoked Kafka
    /// partition's records, say). Not counted in [`dropped`](Self::dropped): their owner
    /// delivers them again.
    pub purged: u64,
    /// Time the upstream spent blocked by a full queue (in pull mode: with no downstream
    /// demand), timed from the end of the queue task's poll in which it became blocked: a
    /// spell that ends within that poll (the queue drained and granted again at once) counts
    /// as none.
    pub blocked: Duration,
    /// Whether an unbounded queue hit its safety cap.
    pub overflowed: bool,
}

impl QueueSnapshot {
    /// All items dropped, whatever the reason.
    pub fn dropped(&self) -> u64 {
        self.dropped_newest
            + self.dropped_oldest
            + self.dropped_priority.iter().sum::<u64>()
            + self.dropped_overflow
    }

    /// Depth as a fraction of capacity (0 when unbounded or pull).
    pub fn fill(&self) -> f64 {
        fraction(self.depth, self.capacity)
    }

    /// The high-water mark as a fraction of capacity, at most 1 (0 when unbounded or pull).
    pub fn high_water_fill(&self) -> f64 {
        fraction(self.high_water, self.capacity).min(1.0)
    }
}

/// `n` as a fraction of `capacity`; 0 when the capacity means "none" (pull) or "no limit".
fn fraction(n: u64, capacity: u64) -> f64 {
    if capacity == 0 || capacity == u64::MAX {
        0.0
    } else {
        n as f64 / capacity as f64
    }
}

impl QueueStats {
    pub(crate) fn new(capacity: u64) -> Self {
        QueueStats {
            capacity,
            pushed: AtomicU64::new(0),
            bytes_in: AtomicU64::new(0),
            evicted: AtomicU64::new(0),
            evicted_bytes: AtomicU64::new(0),
            high_water: AtomicU64::new(0),
            high_water_bytes: AtomicU64::new(0),
            dropped_newest: AtomicU64::new(0),
            dropped_oldest: AtomicU64::new(0),
            dropped_priority: Default::default(),
            dropped_overflow: AtomicU64::new(0),
            purged: AtomicU64::new(0),
            purged_bytes: AtomicU64::new(0),
            popped: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
            overflowed: AtomicBool::new(false),
            blocked: Mutex::new(Blocked::default()),
            unstamped: AtomicBool::new(false),
        }
    }

    /// Input side: an item entered.
    #[inline]
    pub(crate) fn pushed(&self, bytes: u64) {
        self.pushed_n(1, bytes);
    }

    /// Input side: `n` items of `bytes` in all entered at once (the high-water mark is the
    /// depth after them: it only grows while they enter).
    #[inline]
    pub(crate) fn pushed_n(&self, n: u64, bytes: u64) {
        let pushed = bump(&self.pushed, n);
        let bytes_in = bump(&self.bytes_in, bytes);
        let depth = pushed
            .saturating_sub(self.evicted.load(Ordering::Relaxed))
            .saturating_sub(self.purged.load(Ordering::Relaxed))
            .saturating_sub(self.popped.load(Ordering::Relaxed));
        if depth > self.high_water.load(Ordering::Relaxed) {
            self.high_water.store(depth, Ordering::Relaxed);
        }
        let depth_bytes = bytes_in
            .saturating_sub(self.evicted_bytes.load(Ordering::Relaxed))
            .saturating_sub(self.purged_bytes.load(Ordering::Relaxed))
            .saturating_sub(self.bytes_out.load(Ordering::Relaxed));
        if depth_bytes > self.high_water_bytes.load(Ordering::Relaxed) {
            self.high_water_bytes.store(depth_bytes, Ordering::Relaxed);
        }
    }

    /// Output side: an item left downstream.
    #[inline]
    pub(crate) fn popped(&self, bytes: u64) {
        self.popped_n(1, bytes);
    }

    /// Output side: `n` items of `bytes` in all left downstream at once.
    #[inline]
    pub(crate) fn popped_n(&self, n: u64, bytes: u64) {
        bump(&self.popped, n);
        bump(&self.bytes_out, bytes);
    }

    /// Pull mode: an item passed straight through (the one side is both).
    pub(crate) fn passed(&self) {
        bump(&self.pushed, 1);
        bump(&self.popped, 1);
    }

    /// Input side: an item was dropped; `queued_bytes` is its weight if it had been queued
    /// (an eviction), `None` if it was refused on arrival.
    pub(crate) fn dropped(&self, reason: DropReason, queued_bytes: Option<u64>) {
        if let Some(bytes) = queued_bytes {
            bump(&self.evicted, 1);
            bump(&self.evicted_bytes, bytes);
        }
        let counter = match reason {
            DropReason::Newest => &self.dropped_newest,
            DropReason::Oldest => &self.dropped_oldest,
            DropReason::Priority(c) => &self.dropped_priority[usize::from(c).min(15)],
            DropReason::Overflow => &self.dropped_overflow,
        };
        bump(counter, 1);
    }

    /// An item was purged (under the queue's lock).
    pub(crate) fn purged(&self, bytes: u64) {
        bump(&self.purged, 1);
        bump(&self.purged_bytes, bytes);
    }

    pub(crate) fn overflow(&self) {
        self.overflowed.store(true, Ordering::Relaxed);
    }

    /// Marks the start or the end of a blocked spell. Both happen in the queue's task; the
    /// clock is read only for a spell that outlives the poll it began in (see
    /// [`stamp_blocked`](Self::stamp_blocked)), so a queue that fills and is drained within
    /// one poll, as a fast pipeline's does at every batch, pays no clock read for it.
    pub(crate) fn set_blocked(&self, blocked: bool) {
        let mut b = self.blocked.lock().unwrap_or_else(|p| p.into_inner());
        if blocked {
            if b.since.is_none() && !b.unstamped {
                b.unstamped = true;
                self.unstamped.store(true, Ordering::Relaxed);
            }
        } else {
            if let Some(since) = b.since.take() {
                b.total += since.elapsed();
            }
            b.unstamped = false;
        }
    }

    /// Called by the queue's task at the end of each poll: a spell still open then is timed
    /// from now on. A spell that began and ended within the poll counts as none: the source
    /// waited for no wake-up.
    #[inline]
    pub(crate) fn stamp_blocked(&self) {
        if !self.unstamped.swap(false, Ordering::Relaxed) {
            return;
        }
        let mut b = self.blocked.lock().unwrap_or_else(|p| p.into_inner());
        if b.unstamped {
            b.unstamped = false;
            b.since = Some(Instant::now());
        }
    }

    /// Items queued now.
    pub fn depth(&self) -> u64 {
        let pushed = self.pushed.load(Ordering::Relaxed);
        let gone = self.popped.load(Ordering::Relaxed)
            + self.evicted.load(Ordering::Relaxed)
            + self.purged.load(Ordering::Relaxed);
        pushed.saturating_sub(gone)
    }

    fn depth_bytes(&self) -> u64 {
        let gone = self.bytes_out.load(Ordering::Relaxed)
            + self.evicted_bytes.load(Ordering::Relaxed)
            + self.purged_bytes.load(Ordering::Relaxed);
        self.bytes_in.load(Ordering::Relaxed).saturating_sub(gone)
    }

    /// Depth as a fraction of capacity: the pressure signal a slow-source controller reads
    /// (0 when unbounded or pull).
    pub fn fill(&self) -> f64 {
        fraction(self.depth(), self.capacity)
    }

    /// A copy of every counter.
    pub fn snapshot(&self) -> QueueSnapshot {
        let blocked = {
            let b = self.blocked.lock().unwrap_or_else(|p| p.into_inner());
            b.total + b.since.map_or(Duration::ZERO, |s| s.elapsed())
        };
        let mut dropped_priority: Vec<u64> = self
            .dropped_priority
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .collect();
        while dropped_priority.last() == Some(&0) {
            dropped_priority.pop();
        }
        QueueSnapshot {
            capacity: self.capacity,
            depth: self.depth(),
            depth_bytes: self.depth_bytes(),
            high_water: self.high_water.load(Ordering::Relaxed),
            high_water_bytes: self.high_water_bytes.load(Ordering::Relaxed),
            pushed: self.pushed.load(Ordering::Relaxed),
            popped: self.popped.load(Ordering::Relaxed),
            dropped_newest: self.dropped_newest.load(Ordering::Relaxed),
            dropped_oldest: self.dropped_oldest.load(Ordering::Relaxed),
            dropped_priority,
            dropped_overflow: self.dropped_overflow.load(Ordering::Relaxed),
            purged: self.purged.load(Ordering::Relaxed),
            blocked,
            overflowed: self.overflowed.load(Ordering::Relaxed),
        }
    }
}
