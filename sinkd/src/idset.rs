//! The set of ids the audit has seen, exact, in memory that follows the *gaps* rather than the
//! ids.
//!
//! Ids are grouped in chunks of 65,536 consecutive ids. A chunk with some but not all of its
//! ids seen is a bitmap (8 KiB, allocated on first use). A chunk whose ids have all been seen
//! gives its bitmap back and joins [`Ranges`], a set of runs of whole chunks.
//!
//! What that guarantees:
//! - membership, insertion and the missing-id scan are exact: the set answers as a plain
//!   `HashSet<u64>` would, whatever the order of the ids and however often one repeats;
//! - ids that arrive roughly in order, without loss, keep at most the chunks in flight as
//!   bitmaps plus one run: memory stays flat however many ids go by (a day at 8,000 ids/s
//!   is about 10,500 chunks, which are one run);
//! - a chunk with an id that never arrives keeps its bitmap for good, so a lossy stream costs
//!   1 bit per id of each lossy chunk, as a bitmap of every id would.

use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasherDefault, Hasher};

/// Ids per chunk.
pub const CHUNK_BITS: u64 = 1 << 16;
const WORDS: usize = (CHUNK_BITS / 64) as usize;

/// A hasher for u64 keys chosen by the producer: one multiply, no per-process seed. Keys come
/// from a trusted test harness, not from an adversary, so flooding resistance is not needed.
#[derive(Debug, Default, Clone, Copy)]
pub struct U64Hasher(u64);

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

/// A `HashMap` keyed by u64 with [`U64Hasher`].
pub type Fast<V> = HashMap<u64, V, BuildHasherDefault<U64Hasher>>;

/// A set of u64 stored as disjoint, non-adjacent inclusive runs `start..=last`: one entry per
/// run, so consecutive values cost one entry whatever their number.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Ranges {
    /// start -> last (inclusive).
    runs: BTreeMap<u64, u64>,
}

impl Ranges {
    /// Whether `v` is in the set.
    pub fn contains(&self, v: u64) -> bool {
        self.runs
            .range(..=v)
            .next_back()
            .is_some_and(|(_, &last)| v <= last)
    }

    /// Adds `v`; false if it was already there. Joins the runs it touches.
    pub fn insert(&mut self, v: u64) -> bool {
        let before = self.runs.range(..=v).next_back().map(|(&s, &l)| (s, l));
        if before.is_some_and(|(_, last)| v <= last) {
            return false;
        }
        let after = v
            .checked_add(1)
            .and_then(|next| self.runs.get(&next).map(|&last| (next, last)));
        let start = match before {
            Some((s, last)) if last + 1 == v => s,
            _ => v,
        };
        let last = match after {
            Some((next, last)) => {
                self.runs.remove(&next);
                last
            }
            None => v,
        };
        self.runs.insert(start, last);
        true
    }

    /// The number of runs.
    pub fn runs(&self) -> usize {
        self.runs.len()
    }

    /// The runs, in order, as `(start, last)` inclusive.
    #[cfg(test)]
    pub fn iter(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.runs.iter().map(|(&s, &l)| (s, l))
    }
}

/// A chunk with some of its ids seen.
#[derive(Debug)]
struct Partial {
    bits: Box<[u64; WORDS]>,
    seen: u32,
}

/// The ids seen: bitmaps for partial chunks, runs of whole ones (see the module docs).
#[derive(Debug, Default)]
pub struct IdSet {
    partial: Fast<Partial>,
    full: Ranges,
}

impl IdSet {
    /// Adds `id`; false if it had been seen before.
    pub fn insert(&mut self, id: u64) -> bool {
        let chunk = id / CHUNK_BITS;
        if self.full.contains(chunk) {
            return false;
        }
        let p = self.partial.entry(chunk).or_insert_with(|| Partial {
            bits: Box::new([0; WORDS]),
            seen: 0,
        });
        let bit = id % CHUNK_BITS;
        let word = &mut p.bits[(bit / 64) as usize];
        let mask = 1u64 << (bit % 64);
        if *word & mask != 0 {
            return false;
        }
        *word |= mask;
        p.seen += 1;
        if u64::from(p.seen) == CHUNK_BITS {
            self.partial.remove(&chunk);
            self.full.insert(chunk);
        }
        true
    }

    /// The 64 ids starting at `id` (a multiple of 64) as bits, bit i for `id + i`.
    pub fn word(&self, id: u64) -> u64 {
        let chunk = id / CHUNK_BITS;
        if self.full.contains(chunk) {
            return u64::MAX;
        }
        self.partial
            .get(&chunk)
            .map_or(0, |p| p.bits[((id % CHUNK_BITS) / 64) as usize])
    }

    /// Whether `id` has been seen.
    pub fn contains(&self, id: u64) -> bool {
        self.word(id - id % 64) & (1 << (id % 64)) != 0
    }

    /// Whether every id of the chunk `id` starts (a multiple of [`CHUNK_BITS`]) was seen.
    pub fn whole_chunk(&self, id: u64) -> bool {
        id % CHUNK_BITS == 0 && self.full.contains(id / CHUNK_BITS)
    }

    /// Chunks held as bitmaps.
    #[cfg(test)]
    pub fn partial_chunks(&self) -> usize {
        self.partial.len()
    }

    /// Runs of whole chunks.
    #[cfg(test)]
    pub fn full_runs(&self) -> usize {
        self.full.runs()
    }

    /// An estimate of the heap the set holds: each bitmap and its map slot, and about 48 bytes
    /// per run (16 per entry, B-tree nodes at least half full, and their headers).
    pub fn heap_bytes(&self) -> u64 {
        let bitmaps = self.partial.capacity() as u64 * (8 + std::mem::size_of::<Partial>() as u64)
            + self.partial.len() as u64 * (WORDS as u64 * 8);
        bitmaps + self.full.runs() as u64 * 48
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn ranges_join_out_of_order_values_and_refuse_duplicates() {
        let mut r = Ranges::default();
        for v in [5, 7, 6, 1, 3, 2, 9] {
            assert!(r.insert(v), "{v} is new");
        }
        for v in [5, 1, 9, 6] {
            assert!(!r.insert(v), "{v} is a duplicate");
        }
        assert_eq!(r.iter().collect::<Vec<_>>(), [(1, 3), (5, 7), (9, 9)]);
        assert!(r.insert(4) && r.insert(8));
        assert_eq!(r.iter().collect::<Vec<_>>(), [(1, 9)]);
        assert!(r.contains(1) && r.contains(9) && !r.contains(0) && !r.contains(10));
        assert!(r.insert(u64::MAX) && r.insert(u64::MAX - 1) && !r.insert(u64::MAX));
        assert_eq!(r.runs(), 2);
    }

    #[test]
    fn ranges_agree_with_a_btreeset_on_a_shuffled_stream_with_repeats() {
        let mut r = Ranges::default();
        let mut model = BTreeSet::new();
        let mut state = 7u64;
        for _ in 0..20_000 {
            let v = splitmix::step(&mut state) % 3_000;
            assert_eq!(r.insert(v), model.insert(v), "insert {v}");
        }
        for v in 0..3_100 {
            assert_eq!(r.contains(v), model.contains(&v), "contains {v}");
        }
        // Runs are disjoint and not adjacent: each is a maximal run of the model.
        let runs: Vec<_> = r.iter().collect();
        for w in runs.windows(2) {
            assert!(w[0].1 + 1 < w[1].0, "{w:?}");
        }
        let covered: u64 = runs.iter().map(|(s, l)| l - s + 1).sum();
        assert_eq!(covered, model.len() as u64);
    }

    #[test]
    fn whole_chunks_give_their_bitmaps_back_whatever_the_order() {
        let mut ids = IdSet::default();
        // Three chunks, each filled backwards, interleaved, with every id sent twice.
        let n = 3 * CHUNK_BITS;
        let order = (0..CHUNK_BITS)
            .rev()
            .flat_map(|i| [i, i + 2 * CHUNK_BITS, i + CHUNK_BITS]);
        for id in order {
            assert!(ids.insert(id), "{id} is new");
            assert!(!ids.insert(id), "{id} is now a duplicate");
        }
        assert_eq!((ids.partial_chunks(), ids.full_runs()), (0, 1));
        assert!(ids.heap_bytes() < 1024, "{}", ids.heap_bytes());
        assert!((0..n).step_by(997).all(|id| ids.contains(id)));
        assert!(!ids.contains(n) && ids.whole_chunk(CHUNK_BITS) && !ids.whole_chunk(n));
        assert!(!ids.insert(12_345), "a duplicate in a whole chunk");
    }

    #[test]
    fn a_chunk_with_a_lost_id_stays_a_bitmap_and_answers_exactly() {
        let mut ids = IdSet::default();
        for id in (0..2 * CHUNK_BITS).filter(|&id| id != 70_000) {
            ids.insert(id);
        }
        assert_eq!((ids.partial_chunks(), ids.full_runs()), (1, 1));
        assert!(!ids.contains(70_000) && ids.contains(69_999) && ids.contains(70_001));
        assert_eq!(ids.word(70_000 - 70_000 % 64).count_zeros(), 1);
        assert!(ids.insert(70_000));
        assert_eq!((ids.partial_chunks(), ids.full_runs()), (0, 1));
    }
}
