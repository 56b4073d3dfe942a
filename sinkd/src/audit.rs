//! The delivery audit: what sinkd received, judged as a witness.
//!
//! For every accepted event it records the id (to count distinct ids, duplicates and, given
//! the range a producer says it sent, missing ids) and the per-key `seq` (to count ordering
//! violations: a `seq` lower than the highest already seen for its key).
//!
//! Ids are kept in a chunked bitmap: 8 KiB per 65,536 consecutive ids, allocated on first use,
//! so a dense run of 10 million ids costs about 1.3 MB.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use serde::Serialize;

const CHUNK_BITS: u64 = 1 << 16;
const WORDS: usize = (CHUNK_BITS / 64) as usize;

/// A hasher for u64 keys chosen by the producer: one multiply, no per-process seed. Keys come
/// from a trusted test harness, not from an adversary, so flooding resistance is not needed.
#[derive(Debug, Default, Clone, Copy)]
struct U64Hasher(u64);

impl Hasher for U64Hasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(*b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = (n ^ (n >> 32)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

type Fast<V> = HashMap<u64, V, BuildHasherDefault<U64Hasher>>;

/// The running audit.
#[derive(Debug, Default)]
pub struct Audit {
    chunks: Fast<Box<[u64; WORDS]>>,
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
        let chunk = self
            .chunks
            .entry(id / CHUNK_BITS)
            .or_insert_with(|| Box::new([0; WORDS]));
        let bit = id % CHUNK_BITS;
        let word = &mut chunk[(bit / 64) as usize];
        let mask = 1u64 << (bit % 64);
        if *word & mask != 0 {
            self.duplicates += 1;
        } else {
            *word |= mask;
            self.distinct += 1;
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

    fn seen(&self, id: u64) -> bool {
        self.chunks
            .get(&(id / CHUNK_BITS))
            .is_some_and(|c| c[((id % CHUNK_BITS) / 64) as usize] & (1 << (id % 64)) != 0)
    }

    /// The audit so far; with `expected = Some((from, to))`, also the ids of `from..to` that
    /// were never received.
    pub fn stats(&self, expected: Option<(u64, u64)>) -> Stats {
        let missing = expected.map(|(from, to)| {
            let mut count = 0;
            let mut sample = Vec::new();
            let mut id = from;
            while id < to {
                // Whole words of 64 ids at a time, where the range allows.
                if id % 64 == 0 && to - id >= 64 {
                    let word = self
                        .chunks
                        .get(&(id / CHUNK_BITS))
                        .map_or(0, |c| c[((id % CHUNK_BITS) / 64) as usize]);
                    count += u64::from((!word).count_ones());
                    let mut absent = !word;
                    while absent != 0 && sample.len() < 100 {
                        sample.push(id + u64::from(absent.trailing_zeros()));
                        absent &= absent - 1;
                    }
                    id += 64;
                    continue;
                }
                if !self.seen(id) {
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
}
