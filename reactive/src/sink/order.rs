use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// Counts per-key ordering violations: an item whose sequence number is lower than the highest
/// already seen for its key.
#[derive(Debug, Default)]
pub struct OrderCheck {
    last: Mutex<HashMap<u64, u64>>,
    violations: AtomicU64,
    seen: AtomicU64,
}

impl OrderCheck {
    /// Records `(key, seq)`; returns `false` when it breaks the key's order.
    pub fn observe(&self, key: u64, seq: u64) -> bool {
        self.seen.fetch_add(1, Ordering::Relaxed);
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        let entry = last.entry(key).or_insert(seq);
        if seq < *entry {
            self.violations.fetch_add(1, Ordering::Relaxed);
            false
        } else {
            *entry = seq;
            true
        }
    }

    /// Violations so far.
    pub fn violations(&self) -> u64 {
        self.violations.load(Ordering::Relaxed)
    }

    /// Items observed so far.
    pub fn seen(&self) -> u64 {
        self.seen.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_lower_seq_is_a_violation_and_keys_are_independent() {
        let c = super::OrderCheck::default();
        assert!(c.observe(1, 0));
        assert!(c.observe(2, 5));
        assert!(c.observe(1, 1));
        assert!(c.observe(1, 1), "a repeat is not a violation");
        assert!(!c.observe(1, 0));
        assert_eq!((c.violations(), c.seen()), (1, 5));
    }
}
