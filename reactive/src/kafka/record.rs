//! A record and its acknowledgement.

use std::sync::Arc;

use bytes::Bytes;
use std::sync::atomic::Ordering;

use super::shared::Shared;

/// One record, with the acknowledgement that lets its offset be committed.
#[derive(Debug)]
pub struct KafkaRecord {
    /// Its partition (its topic: [`topic`](Self::topic)).
    pub partition: i32,
    /// Its offset in the partition.
    pub offset: i64,
    /// The record's key and value, copied out of the client's buffers: the key's bytes, then
    /// the value's, in a chunk shared with the records fetched around it (the chunk is freed
    /// with the last of them). Read them with [`key`](Self::key) and [`payload`](Self::payload).
    pub data: Bytes,
    /// The key's length in `data`, if the record has a key.
    pub key_len: Option<u32>,
    /// Whether the record has a value (a tombstone has none).
    pub has_payload: bool,
    /// Milliseconds since the epoch, when the record has a timestamp.
    pub timestamp_ms: Option<i64>,
    /// Call [`Ack::ack`] once the sink has the record.
    pub ack: Ack,
}

impl KafkaRecord {
    /// The topic it was read from. Kept by the record's [`Ack`], whose hand-over shares one
    /// copy of the name: a record costs no reference count of its own for it.
    pub fn topic(&self) -> &str {
        &self.ack.lease.topic
    }

    /// The topic's name as the source shares it.
    pub(super) fn topic_arc(&self) -> &Arc<str> {
        &self.ack.lease.topic
    }

    /// The record's key, if it has one.
    pub fn key(&self) -> Option<&[u8]> {
        split(&self.data, self.key_len, self.has_payload).0
    }

    /// The record's value, if it has one.
    pub fn payload(&self) -> Option<&[u8]> {
        split(&self.data, self.key_len, self.has_payload).1
    }
}

/// The key and the value in a record's `data`.
fn split(data: &[u8], key_len: Option<u32>, has_payload: bool) -> (Option<&[u8]>, Option<&[u8]>) {
    let at = (key_len.unwrap_or(0) as usize).min(data.len());
    let (key, value) = data.split_at(at);
    (key_len.map(|_| key), has_payload.then_some(value))
}

/// One hand-over's hold on the source's shared state, and the name of its records' topic: the
/// acks of a hand-over's records of one topic share it, so that their reference counts live on
/// a cache line of the batch's own (cloned by the poll thread for one batch and dropped by the
/// acknowledging task for an earlier one, a count on the source's own state would pass between
/// the two threads at every record), and an ack needs no topic name of its own.
#[derive(Debug)]
pub(super) struct Lease {
    pub(super) shared: Arc<Shared>,
    pub(super) topic: Arc<str>,
}

/// The right to commit one record's offset. Acknowledging is cheap (a short lock); use
/// [`Ack::ack_all`] for a batch.
#[derive(Debug)]
pub struct Ack {
    /// The source and the record's topic.
    pub(super) lease: Arc<Lease>,
    pub(super) partition: i32,
    pub(super) offset: i64,
    pub(super) generation: u64,
    /// The partition's slot in the tracker (see [`Tracker::ack_at`](super::tracker::Tracker::ack_at)).
    pub(super) slot: u32,
    pub(super) done: bool,
}

impl Ack {
    /// The ack of a record not registered with the tracker yet: dropped now, it releases
    /// nothing.
    pub(super) fn unregistered(lease: Arc<Lease>, partition: i32, offset: i64) -> Ack {
        Ack {
            lease,
            partition,
            offset,
            generation: 0,
            slot: u32::MAX,
            done: true,
        }
    }

    /// The sink has the record: its offset may be committed once every earlier record of the
    /// partition is acknowledged too.
    pub fn ack(mut self) {
        self.done = true;
        self.lease
            .shared
            .ack(self.slot, self.offset, self.generation);
    }

    /// Acknowledges many records under one lock.
    pub fn ack_all(acks: impl IntoIterator<Item = Ack>) {
        let mut shared: Option<Arc<Shared>> = None;
        let mut guard = None;
        for mut a in acks {
            a.done = true;
            if shared
                .as_ref()
                .is_none_or(|s| !Arc::ptr_eq(s, &a.lease.shared))
            {
                guard = None;
                shared = Some(a.lease.shared.clone());
            }
            let s = shared.as_ref().expect("set above");
            if s.closed.load(Ordering::Acquire) {
                continue;
            }
            let g = guard.get_or_insert_with(|| s.lock_tracker());
            g.ack_at(a.slot, a.offset, a.generation);
        }
    }

    /// The record's topic, partition and offset.
    pub fn position(&self) -> (&str, i32, i64) {
        (&self.lease.topic, self.partition, self.offset)
    }

    /// Whether the record belongs to one of `partitions` (as a revocation hook receives them).
    pub fn is_in(&self, partitions: &[(Arc<str>, i32)]) -> bool {
        partitions
            .iter()
            .any(|(t, p)| *p == self.partition && **t == *self.lease.topic)
    }
}

impl Drop for Ack {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        // Settled only when shed on purpose: a record let go because its partition is being
        // revoked (purged) is read again by the next owner, shedding or not.
        let shared = &self.lease.shared;
        if shared.settle_on_drop && !shared.is_revoking(self) {
            shared.ack(self.slot, self.offset, self.generation);
        } else {
            // Let go before the sink had it (purged from a revoked partition, say): no longer
            // in flight, and never committed past, so the next owner reads it again.
            shared.release(self.slot, self.offset, self.generation);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::split;

    #[test]
    fn key_and_value_come_apart() {
        assert_eq!(
            split(b"k1hello", Some(2), true),
            (Some(&b"k1"[..]), Some(&b"hello"[..]))
        );
        assert_eq!(split(b"hello", None, true), (None, Some(&b"hello"[..])));
        assert_eq!(
            split(b"k1", Some(2), false),
            (Some(&b"k1"[..]), None),
            "a tombstone"
        );
        assert_eq!(
            split(b"", Some(0), true),
            (Some(&b""[..]), Some(&b""[..])),
            "both empty"
        );
        assert_eq!(split(b"", None, false), (None, None));
        assert_eq!(
            split(b"ab", Some(9), true).0,
            Some(&b"ab"[..]),
            "never out of bounds"
        );
    }
}
