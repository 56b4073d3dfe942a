//! A record and its acknowledgement.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::shared::Shared;
use super::tracker::Tp;

/// One record, with the acknowledgement that lets its offset be committed.
#[derive(Debug)]
pub struct KafkaRecord {
    /// The topic it was read from.
    pub topic: Arc<str>,
    /// Its partition.
    pub partition: i32,
    /// Its offset in the partition.
    pub offset: i64,
    /// The record's key, if it has one.
    pub key: Option<Vec<u8>>,
    /// The record's value, if it has one (a copy: the record owns it).
    pub payload: Option<Vec<u8>>,
    /// Milliseconds since the epoch, when the record has a timestamp.
    pub timestamp_ms: Option<i64>,
    /// Call [`Ack::ack`] once the sink has the record.
    pub ack: Ack,
}

/// The right to commit one record's offset. Acknowledging is cheap (a short lock); use
/// [`Ack::ack_all`] for a batch.
#[derive(Debug)]
pub struct Ack {
    pub(super) shared: Arc<Shared>,
    pub(super) tp: Tp,
    pub(super) offset: i64,
    pub(super) generation: u64,
    pub(super) done: bool,
}

impl Ack {
    /// The sink has the record: its offset may be committed once every earlier record of the
    /// partition is acknowledged too.
    pub fn ack(mut self) {
        self.done = true;
        self.shared.ack(&self.tp, self.offset, self.generation);
    }

    /// Acknowledges many records under one lock.
    pub fn ack_all(acks: impl IntoIterator<Item = Ack>) {
        let mut shared: Option<Arc<Shared>> = None;
        let mut guard = None;
        for mut a in acks {
            a.done = true;
            if shared.as_ref().is_none_or(|s| !Arc::ptr_eq(s, &a.shared)) {
                guard = None;
                shared = Some(a.shared.clone());
            }
            let s = shared.as_ref().expect("set above");
            if s.closed.load(Ordering::Acquire) {
                continue;
            }
            let g = guard.get_or_insert_with(|| s.lock_tracker());
            if g.ack(&a.tp, a.offset, a.generation) {
                s.counters.acked.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// The record's topic, partition and offset.
    pub fn position(&self) -> (&str, i32, i64) {
        (&self.tp.0, self.tp.1, self.offset)
    }

    /// Whether the record belongs to one of `partitions` (as a revocation hook receives them).
    pub fn is_in(&self, partitions: &[(Arc<str>, i32)]) -> bool {
        partitions
            .iter()
            .any(|(t, p)| *p == self.tp.1 && **t == *self.tp.0)
    }
}

impl Drop for Ack {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        // Settled only when shed on purpose: a record let go because its partition is being
        // revoked (purged) is read again by the next owner, shedding or not.
        if self.shared.settle_on_drop && !self.shared.is_revoking(&self.tp) {
            self.shared.ack(&self.tp, self.offset, self.generation);
        } else {
            // Let go before the sink had it (purged from a revoked partition, say): no longer
            // in flight, and never committed past, so the next owner reads it again.
            self.shared.release(&self.tp, self.offset, self.generation);
        }
    }
}
