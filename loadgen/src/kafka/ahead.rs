//! `keyorder --max-ahead W`: a record is handed to the workers only while its offset is less
//! than W past the first record of its partition not yet acknowledged.
//!
//! Key-parallel workers finish far ahead of their slowest record, and the commit point is that
//! record: everything finished past it is written again after a `kill -9`. With a gate of W,
//! nothing more than W past the first unacknowledged record is ever dispatched, so a replay is
//! at most W plus what was acknowledged since the last commit. One partition (keyorder's
//! workload): the gate holds offsets of one partition.

use std::collections::BTreeSet;
use std::sync::Mutex;

use tokio::sync::Notify;

/// Offsets dispatched and not yet done, and the window past the first of them.
#[derive(Debug)]
pub(crate) struct Ahead {
    window: i64,
    open: Mutex<BTreeSet<i64>>,
    freed: Notify,
}

impl Ahead {
    /// A gate of `window` offsets (at least 1).
    pub(crate) fn new(window: u64) -> Ahead {
        Ahead {
            window: i64::try_from(window.max(1)).unwrap_or(i64::MAX),
            open: Mutex::new(BTreeSet::new()),
            freed: Notify::new(),
        }
    }

    /// Waits until `offset` is within the window past the first open offset, then opens it.
    pub(crate) async fn admit(&self, offset: i64) {
        loop {
            let freed = self.freed.notified();
            {
                let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
                let first = open.first().copied().unwrap_or(offset);
                if offset < first.saturating_add(self.window) {
                    open.insert(offset);
                    return;
                }
            }
            freed.await;
        }
    }

    /// `offset` is done (acknowledged, or given up on): it no longer holds the window.
    pub(crate) fn done(&self, offset: i64) {
        let removed = self
            .open
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&offset);
        if removed {
            self.freed.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn nothing_is_admitted_a_window_past_the_first_open_offset() {
        let gate = Arc::new(Ahead::new(3));
        for o in 0..3 {
            gate.admit(o).await;
        }
        // 3 is a window past 0, which is still open.
        let g = gate.clone();
        let waiting = tokio::spawn(async move { g.admit(3).await });
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert!(!waiting.is_finished());
        // 1 done: the first open is still 0.
        gate.done(1);
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert!(!waiting.is_finished());
        // 0 done: the first open is 2, and 3 < 2 + 3.
        gate.done(0);
        tokio::time::timeout(Duration::from_secs(1), waiting)
            .await
            .expect("admitted once the first open offset moved")
            .unwrap();
        // An unknown offset done is nothing.
        gate.done(99);
    }
}
