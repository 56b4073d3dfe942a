//! The delivery audit: what sinkd received, judged as a witness.
//!
//! For every accepted event it records the id (to count distinct ids, duplicates and, given
//! the range a producer says it sent, missing ids) and the per-key `seq` (to count ordering
//! violations: a `seq` lower than the highest already seen for its key).
//!
//! Ids are kept in an [`IdSet`]: a bitmap (8 KiB per 65,536 consecutive ids) only for the
//! chunks not yet complete, and runs of whole chunks for the rest. A lossless run keeps only
//! the chunks in flight, so the audit stays flat however long it runs; a chunk with a lost id
//! keeps its bitmap, so a lossy run costs 1 bit per id of its lossy chunks.

use serde::Serialize;

use crate::idset::{CHUNK_BITS, Fast, IdSet};

/// The running audit.
#[derive(Debug, Default)]
pub struct Audit {
    ids: IdSet,
    received: u64,
    distinct: u64,
    duplicates: u64,
    order_violations: u64,
    last_seq: Fast<u64>,
    bytes: u64,
}

/// A snapshot of the audit, as served on `GET /stats`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Stats {
    /// Events accepted, duplicates included.
    pub received: u64,
    /// Distinct ids among them.
    pub distinct_ids: u64,
    /// Events whose id had been received before.
    pub duplicates: u64,
    /// Events whose `seq` was lower than the highest seen before for their key.
    pub order_violations: u64,
    /// Distinct keys seen.
    pub keys: u64,
    /// Payload bytes received.
    pub payload_bytes: u64,
    /// An estimate of the heap the audit itself holds (ids and keys), bytes: what sinkd's
    /// witness costs, apart from the rest of the process.
    #[serde(default)]
    pub audit_bytes: u64,
    /// With an expected id range: how many of its ids were never received.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub missing: Option<Missing>,
}

/// Missing ids in the range the producer says it sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Missing {
    /// First id of the range.
    pub from: u64,
    /// One past the last id of the range.
    pub to: u64,
    /// How many ids of the range were never received.
    pub count: u64,
    /// The first few of them (at most 100).
    pub sample: Vec<u64>,
}

impl Audit {
    /// Records one accepted event.
    pub fn record(&mut self, id: u64, key: u64, seq: u64, payload_len: usize) {
        self.received += 1;
        self.bytes += payload_len as u64;
        if self.ids.insert(id) {
            self.distinct += 1;
        } else {
            self.duplicates += 1;
        }
        let last = self.last_seq.entry(key).or_insert(seq);
        if seq < *last {
            self.order_violations += 1;
        } else {
            *last = seq;
        }
    }

    /// (duplicates, order violations) so far: cheap, for the metrics.
    pub fn stats_counts(&self) -> (u64, u64) {
        (self.duplicates, self.order_violations)
    }

    /// An estimate of the heap the audit holds: the id set and the per-key map.
    pub fn heap_bytes(&self) -> u64 {
        self.ids.heap_bytes() + self.last_seq.capacity() as u64 * 17
    }

    /// The audit so far; with `expected = Some((from, to))`, also the ids of `from..to` that
    /// were never received.
    pub fn stats(&self, expected: Option<(u64, u64)>) -> Stats {
        let missing = expected.map(|(from, to)| {
            let mut count = 0;
            let mut sample = Vec::new();
            let mut id = from;
            while id < to {
                // Whole chunks at a time where every id was seen, then whole words of 64 ids,
                // where the range allows.
                if to - id >= CHUNK_BITS && self.ids.whole_chunk(id) {
                    id += CHUNK_BITS;
                    continue;
                }
                if id % 64 == 0 && to - id >= 64 {
                    let word = self.ids.word(id);
                    count += u64::from((!word).count_ones());
                    let mut absent = !word;
                    while absent != 0 && sample.len() < 100 {
                        sample.push(id + u64::from(absent.trailing_zeros()));
                        absent &= absent - 1;
                    }
                    id += 64;
                    continue;
                }
                if !self.ids.contains(id) {
                    count += 1;
                    if sample.len() < 100 {
                        sample.push(id);
                    }
                }
                id += 1;
            }
            Missing {
                from,
                to,
                count,
                sample,
            }
        });
        Stats {
            received: self.received,
            distinct_ids: self.distinct,
            duplicates: self.duplicates,
            order_violations: self.order_violations,
            keys: self.last_seq.len() as u64,
            payload_bytes: self.bytes,
            audit_bytes: self.heap_bytes(),
            missing,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_duplicates_and_order_violations() {
        let mut a = Audit::default();
        a.record(0, 1, 0, 10);
        a.record(1, 1, 1, 10);
        a.record(1, 1, 1, 10); // duplicate, same seq: not a violation
        a.record(2, 1, 0, 10); // seq went back for key 1
        a.record(3, 2, 5, 10);
        let s = a.stats(None);
        assert_eq!(
            (
                s.received,
                s.distinct_ids,
                s.duplicates,
                s.order_violations,
                s.keys
            ),
            (5, 4, 1, 1, 2)
        );
        assert_eq!(s.payload_bytes, 50);
    }

    #[test]
    fn finds_missing_ids_across_chunks() {
        let mut a = Audit::default();
        for id in (0..200_000u64).filter(|id| id % 1000 != 7) {
            a.record(id, 0, id, 0);
        }
        let m = a.stats(Some((0, 300_000))).missing.unwrap();
        assert_eq!(m.count, 200 + 100_000);
        assert_eq!(&m.sample[..3], &[7, 1007, 2007]);
        assert_eq!(m.sample.len(), 100);
    }

    #[test]
    fn agrees_with_a_hashset_on_shuffled_ids_with_duplicates_and_losses() {
        use std::collections::HashSet;
        let mut a = Audit::default();
        let mut model = HashSet::new();
        let mut state = 11u64;
        // Ids 0..300,000 in windows of 4,096 shuffled by a draw, some sent twice, some lost.
        let mut dups = 0;
        for base in (0..300_000u64).step_by(4096) {
            let mut window: Vec<u64> = (base..(base + 4096).min(300_000)).collect();
            for i in (1..window.len()).rev() {
                let j = (splitmix::step(&mut state) % (i as u64 + 1)) as usize;
                window.swap(i, j);
            }
            for id in window {
                let draw = splitmix::step(&mut state) % 1000;
                if draw == 0 && id > 200_000 {
                    continue; // lost, but only in the last chunks
                }
                let times = if draw < 5 { 2 } else { 1 };
                for _ in 0..times {
                    a.record(id, id % 64, 0, 0);
                    if !model.insert(id) {
                        dups += 1;
                    }
                }
            }
        }
        let s = a.stats(Some((0, 300_000)));
        assert_eq!(s.distinct_ids, model.len() as u64);
        assert_eq!(s.duplicates, dups);
        let m = s.missing.unwrap();
        let lost: Vec<u64> = (0..300_000).filter(|id| !model.contains(id)).collect();
        assert_eq!(m.count, lost.len() as u64);
        assert!(m.count > 0);
        assert_eq!(m.sample, lost[..lost.len().min(100)]);
    }

    #[test]
    fn a_lossless_stream_keeps_the_audit_flat() {
        let mut a = Audit::default();
        // Slightly out of order (pairs swapped), as concurrent writers deliver.
        let record_up_to = |a: &mut Audit, from: u64, to: u64| {
            for pair in (from..to).step_by(2) {
                a.record(pair + 1, 0, 0, 0);
                a.record(pair, 0, 0, 0);
            }
        };
        record_up_to(&mut a, 0, 1 << 20);
        let early = a.stats(None).audit_bytes;
        record_up_to(&mut a, 1 << 20, 1 << 24);
        let s = a.stats(Some((0, 1 << 24)));
        assert_eq!((s.distinct_ids, s.missing.unwrap().count), (1 << 24, 0));
        // 16 times the ids, the same memory (a bitmap of every id would be 2 MiB).
        assert!(s.audit_bytes <= early, "{} > {early}", s.audit_bytes);
        assert!(s.audit_bytes < 16 * 1024, "{}", s.audit_bytes);
    }
}
