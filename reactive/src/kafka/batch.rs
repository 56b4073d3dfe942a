//! One hand-over's records, built on the poll thread: each polled message becomes its
//! [`KafkaRecord`] at once (no intermediate copy of it), and the whole batch is registered with
//! the ack tracker under one lock before it is sent.

use std::sync::Arc;

use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::types::RDKafkaTopic;

use super::record::Lease;
use super::shared::{Arena, Raw, Shared, copy_out, timestamp_of};
use super::{Ack, KafkaRecord};

/// Records polled for one hand-over, not yet registered for acknowledgement.
pub(super) struct Batch {
    pub(super) records: Vec<KafkaRecord>,
    shared: Arc<Shared>,
    /// The batch's [`Lease`] per topic (fresh reference counts per hand-over, and the topic's
    /// name), each with the client's handle of the topic it was last seen with, so that a
    /// message's topic is found by comparing a pointer rather than reading, measuring and
    /// comparing its name. The handles are forgotten at each rebalance: only then can a
    /// topic's handle be freed and its address be given to another topic.
    leases: Vec<(Arc<Lease>, *const RDKafkaTopic)>,
}

impl Batch {
    pub(super) fn new(shared: &Arc<Shared>, capacity: usize) -> Batch {
        Batch {
            records: Vec::with_capacity(capacity),
            shared: shared.clone(),
            leases: Vec::new(),
        }
    }

    /// Forgets the topics' handles (after a rebalance); the leases stay.
    pub(super) fn forget_handles(&mut self) {
        for (_, handle) in &mut self.leases {
            *handle = std::ptr::null();
        }
    }

    /// The batch's lease of `m`'s topic.
    fn lease_of(&mut self, m: &BorrowedMessage<'_>) -> Arc<Lease> {
        let handle = m.topic_ptr().cast_const();
        if let Some((lease, _)) = self.leases.iter().find(|(_, h)| *h == handle) {
            return lease.clone();
        }
        let lease = self.lease(m.topic());
        if let Some(entry) = self.leases.iter_mut().find(|(l, _)| Arc::ptr_eq(l, &lease)) {
            entry.1 = handle;
        }
        lease
    }

    /// The batch's lease of `topic`, made when it has none yet.
    fn lease(&mut self, topic: &str) -> Arc<Lease> {
        if let Some((lease, _)) = self.leases.iter().find(|(l, _)| *l.topic == *topic) {
            return lease.clone();
        }
        let lease = Arc::new(Lease {
            shared: self.shared.clone(),
            topic: Arc::from(topic),
        });
        self.leases.push((lease.clone(), std::ptr::null()));
        lease
    }

    /// Copies `m` into the batch as a record (key and value into `arena`).
    pub(super) fn push_message(&mut self, m: &BorrowedMessage<'_>, arena: &mut Arena) {
        let lease = self.lease_of(m);
        let (data, key_len, has_payload) = copy_out(m, arena);
        self.records.push(KafkaRecord {
            partition: m.partition(),
            offset: m.offset(),
            data,
            key_len,
            has_payload,
            timestamp_ms: timestamp_of(m),
            ack: Ack::unregistered(lease, m.partition(), m.offset()),
        });
    }

    /// A message polled for the stash.
    pub(super) fn raw_of(&mut self, m: &BorrowedMessage<'_>, arena: &mut Arena) -> Raw {
        let topic = self.lease_of(m).topic.clone();
        Raw::new(m, topic, arena)
    }

    /// Adds a record kept in the stash.
    pub(super) fn push_raw(&mut self, raw: Raw) {
        let lease = self.lease(&raw.tp.0);
        self.push(raw, lease);
    }

    /// Adds `raw` (whose topic is `lease`'s) as a record.
    fn push(&mut self, raw: Raw, lease: Arc<Lease>) {
        self.records.push(KafkaRecord {
            partition: raw.tp.1,
            offset: raw.offset,
            data: raw.data,
            key_len: raw.key_len,
            has_payload: raw.has_payload,
            timestamp_ms: raw.timestamp_ms,
            ack: Ack::unregistered(lease, raw.tp.1, raw.offset),
        });
    }

    /// Registers the records with the tracker under one lock, with one lookup per run of a
    /// partition's records, and returns them. Records of partitions no longer assigned are left
    /// out (they belong to the next owner), and so are those an earlier owner already wrote
    /// (the tracker counts them as acknowledged).
    pub(super) fn register(mut self, shared: &Shared) -> Vec<KafkaRecord> {
        let records = &mut self.records;
        let mut left_out = false;
        let mut t = shared.lock_tracker();
        let mut start = 0;
        while start < records.len() {
            let first = &records[start];
            let tp = (first.topic_arc().clone(), first.partition);
            let lease = first.ack.lease.clone();
            let len = records[start..]
                .iter()
                .take_while(|r| r.partition == tp.1 && Arc::ptr_eq(&r.ack.lease, &lease))
                .count();
            let run = &mut records[start..start + len];
            start += len;
            let Some(delivered) = t.delivered_run(&tp, run.iter().map(|r| r.offset)) else {
                left_out = true; // not assigned (any more): the next owner reads these
                continue;
            };
            let mut skips = delivered.skips.into_iter().flatten();
            for r in run.iter_mut() {
                // Records the last owner already wrote (registered as acknowledged) stay out.
                let skip = skips.next().unwrap_or(false);
                left_out |= skip;
                r.ack.generation = delivered.generation;
                r.ack.slot = delivered.slot;
                r.ack.done = skip;
            }
        }
        drop(t);
        if left_out {
            // Registered records have `done` false; the others drop without a release.
            records.retain(|r| !r.ack.done);
        }
        self.records
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::Batch;
    use crate::kafka::shared::Raw;
    use crate::kafka::{KafkaConfig, KafkaSource};

    fn raw(topic: &str, partition: i32, offset: i64) -> Raw {
        Raw {
            tp: (Arc::from(topic), partition),
            offset,
            data: bytes::Bytes::from_static(b"v"),
            key_len: None,
            has_payload: true,
            timestamp_ms: None,
        }
    }

    #[test]
    fn registers_assigned_records_and_leaves_out_the_rest() {
        let source = KafkaSource::new(KafkaConfig::new("127.0.0.1:1", "g", ["t"]));
        let shared = source.shared();
        let tp = |p: i32| (Arc::<str>::from("t"), p);
        let (g0, g1) = {
            let mut t = shared.lock_tracker();
            let g0 = t.assign(tp(0));
            // An earlier owner wrote offset 12 past its commit.
            t.set_done(&tp(0), [12]);
            (g0, t.assign(tp(1)))
        };
        let mut batch = Batch::new(shared, 8);
        for r in (10..14).map(|o| raw("t", 0, o)) {
            batch.push_raw(r);
        }
        batch.push_raw(raw("t", 2, 0)); // not assigned here
        batch.push_raw(raw("t", 1, 5));
        batch.push_raw(raw("t", 1, 6));
        let records = batch.register(shared);
        let got: Vec<_> = records
            .iter()
            .map(|r| (r.partition, r.offset, r.ack.generation))
            .collect();
        assert_eq!(
            got,
            [
                (0, 10, g0),
                (0, 11, g0),
                (0, 13, g0),
                (1, 5, g1),
                (1, 6, g1)
            ]
        );
        {
            let t = shared.lock_tracker();
            assert_eq!((t.in_flight(&tp(0)), t.in_flight(&tp(1))), (3, 2));
            assert_eq!(t.skipped_total(), 1);
        }
        // Dropped unacknowledged, registered records are released (no longer in flight).
        drop(records);
        let t = shared.lock_tracker();
        assert_eq!(t.in_flight_total(), 0);
        assert_eq!(t.acked_total(), 0);
    }
}
