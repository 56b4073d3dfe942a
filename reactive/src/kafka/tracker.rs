//! Which offsets may be committed: per partition, the records handed downstream in offset order
//! and which of them the sink has acknowledged. The commit point is the first record not yet
//! acknowledged (or, when all are, the one after the last delivered): a record acknowledged out
//! of order waits for every earlier one, so a commit never skips an unacknowledged record.
//!
//! Pure data, no Kafka: the source's poll thread and the acknowledging tasks share it behind a
//! mutex, and it is tested on its own.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

/// A topic and partition.
pub(crate) type Tp = (Arc<str>, i32);

/// A map keyed by partition, hashed with [`TpHasher`].
pub(crate) type TpMap<V> = HashMap<Tp, V, BuildHasherDefault<TpHasher>>;

/// A multiply-and-rotate hasher for the few, trusted keys of the source's partition maps
/// (topic names from the broker and partition numbers). Every record is looked up at least
/// twice, when it is handed over and when it is acknowledged; SipHash's resistance to chosen
/// keys is not needed here and cost about a tenth of the source's CPU per record.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct TpHasher(u64);

impl TpHasher {
    const K: u64 = 0x51_7c_c1_b7_27_22_0a_95;

    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(Self::K);
    }
}

impl Hasher for TpHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.add(u64::from_le_bytes(w));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            // Byte by byte: a topic name's tail is short, and a copy into a buffer would be a
            // call to memcpy.
            let w = rest
                .iter()
                .enumerate()
                .fold(0u64, |w, (i, &b)| w | (u64::from(b) << (8 * i)));
            self.add(w);
        }
    }

    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }

    fn write_u32(&mut self, i: u32) {
        self.add(u64::from(i));
    }

    fn write_i32(&mut self, i: i32) {
        self.add(u64::from(i as u32));
    }

    fn write_u64(&mut self, i: u64) {
        self.add(i);
    }

    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// Where a delivered record stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mark {
    /// Handed downstream, not yet acknowledged.
    InFlight,
    /// Acknowledged: the commit point may pass it.
    Acked,
    /// Let go without an acknowledgement (purged before it reached the sink): not in flight
    /// any more, but the commit point never passes it, so it is read again after a rebalance.
    Released,
}

#[derive(Debug, Default)]
struct Track {
    generation: u64,
    /// Offsets past the commit that an earlier owner wrote and acknowledged (from the commit's
    /// metadata): when fetched they are counted as acknowledged and not handed downstream.
    done: std::collections::BTreeSet<i64>,
    /// The metadata of the last commit: what was acknowledged past its offset.
    committed_metadata: String,
    /// Delivered and not yet released to the commit point, in offset order.
    pending: VecDeque<(i64, Mark)>,
    /// The offset after the last one delivered.
    next: Option<i64>,
    /// The last offset committed to the broker (the next one the group will read); before
    /// the first commit, the first offset delivered (where the group already stands).
    committed: Option<i64>,
}

impl Track {
    fn count(&self, mark: Mark) -> usize {
        self.pending.iter().filter(|(_, m)| *m == mark).count()
    }

    /// Releases the acknowledged prefix and returns the offset to commit, if any.
    fn commit_point(&mut self) -> Option<i64> {
        while self.pending.front().is_some_and(|&(_, m)| m == Mark::Acked) {
            self.pending.pop_front();
        }
        match self.pending.front() {
            Some(&(offset, _)) => Some(offset),
            None => self.next,
        }
    }
}

/// What the acks of a run of delivered records need: see [`Tracker::delivered_run`].
#[derive(Debug, PartialEq)]
pub(crate) struct Delivered {
    /// The generation to acknowledge them under.
    pub(crate) generation: u64,
    /// The partition's slot, for [`Tracker::ack_at`] and [`Tracker::release_at`].
    pub(crate) slot: u32,
    /// When any was skipped, which ones (true: skip).
    pub(crate) skips: Option<Vec<bool>>,
}

#[derive(Debug, Default)]
pub(crate) struct Tracker {
    /// Each assigned partition's slot in `tracks`.
    slots: TpMap<u32>,
    /// The assigned partitions' tracks by slot (`None`: a free slot). An acknowledgement finds
    /// its partition by slot, without hashing and comparing the topic's name; generations are
    /// never reused, so one for a slot's earlier partition is told apart and ignored.
    tracks: Vec<Option<(Tp, Track)>>,
    generations: u64,
    /// Records acknowledged, over the source's life (counted here, under the lock the
    /// acknowledgement takes anyway, rather than in a shared atomic per record).
    acked: u64,
    /// Records not handed downstream because an earlier owner had written them.
    skipped: u64,
}

impl Tracker {
    /// Starts tracking a newly assigned partition; returns its generation. Acknowledgements
    /// carry the generation they were delivered under, so those of an earlier assignment of the
    /// same partition are ignored.
    pub(crate) fn assign(&mut self, tp: Tp) -> u64 {
        self.generations += 1;
        let generation = self.generations;
        let track = Track {
            generation,
            ..Track::default()
        };
        let slot = match self.slots.get(&tp) {
            Some(&slot) => slot as usize,
            None => {
                let slot = match self.tracks.iter().position(Option::is_none) {
                    Some(free) => free,
                    None => {
                        self.tracks.push(None);
                        self.tracks.len() - 1
                    }
                };
                self.slots.insert(tp.clone(), slot as u32);
                slot
            }
        };
        self.tracks[slot] = Some((tp, track));
        generation
    }

    fn track(&self, tp: &Tp) -> Option<&Track> {
        let slot = *self.slots.get(tp)? as usize;
        self.tracks[slot].as_ref().map(|(_, t)| t)
    }

    fn track_mut(&mut self, tp: &Tp) -> Option<&mut Track> {
        let slot = *self.slots.get(tp)? as usize;
        self.tracks[slot].as_mut().map(|(_, t)| t)
    }

    /// The assigned partitions and their tracks.
    fn tracks_mut(&mut self) -> impl Iterator<Item = (&Tp, &mut Track)> {
        self.tracks.iter_mut().flatten().map(|(tp, t)| (&*tp, t))
    }

    /// Stops tracking a partition (revoked or lost). What it still had in flight is forgotten.
    pub(crate) fn revoke(&mut self, tp: &Tp) -> usize {
        let Some(slot) = self.slots.remove(tp) else {
            return 0;
        };
        self.tracks[slot as usize]
            .take()
            .map_or(0, |(_, t)| t.count(Mark::InFlight))
    }

    /// The generation `tp` is assigned under, if it is assigned.
    pub(crate) fn generation(&self, tp: &Tp) -> Option<u64> {
        self.track(tp).map(|t| t.generation)
    }

    /// Whether `slot` holds the assignment of `generation` (still assigned, not revoked).
    pub(crate) fn is_current(&self, slot: u32, generation: u64) -> bool {
        matches!(self.tracks.get(slot as usize), Some(Some((_, t))) if t.generation == generation)
    }

    /// Records that `offset` of `tp` went downstream; returns the generation to acknowledge it
    /// under, or `None` when the partition is not assigned (the record must not be delivered).
    #[cfg(test)]
    pub(crate) fn delivered(&mut self, tp: &Tp, offset: i64) -> Option<u64> {
        self.delivered_run(tp, [offset]).map(|d| d.generation)
    }

    /// Records that `tp`'s `offsets` were written and acknowledged by an earlier owner (read
    /// from the commit's metadata): they are not handed downstream again.
    pub(crate) fn set_done(&mut self, tp: &Tp, offsets: impl IntoIterator<Item = i64>) {
        if let Some(track) = self.track_mut(tp) {
            track.done.extend(offsets);
        }
    }

    /// Records that `offsets` (increasing) of `tp` went downstream, with one lookup of the
    /// partition. Those an earlier owner already wrote (see [`set_done`](Self::set_done)) are
    /// registered as acknowledged at once instead. Returns what their acks need (see
    /// [`Delivered`]); `None` when the partition is not assigned (none of them must be
    /// delivered).
    pub(crate) fn delivered_run(
        &mut self,
        tp: &Tp,
        offsets: impl IntoIterator<Item = i64>,
    ) -> Option<Delivered> {
        let slot = *self.slots.get(tp)?;
        let (_, track) = self.tracks[slot as usize].as_mut()?;
        // Without a done-list (the usual case) no record is looked up in it.
        let mut skips = (!track.done.is_empty()).then(Vec::new);
        for offset in offsets {
            if track.committed.is_none() {
                track.committed = Some(offset);
            }
            let skip = skips.is_some() && track.done.remove(&offset);
            let mark = if skip { Mark::Acked } else { Mark::InFlight };
            track.pending.push_back((offset, mark));
            track.next = Some(offset + 1);
            if let Some(s) = &mut skips {
                s.push(skip);
            }
        }
        let generation = track.generation;
        if let Some(s) = &skips {
            self.skipped += s.iter().filter(|&&k| k).count() as u64;
        }
        Some(Delivered {
            generation,
            slot,
            skips,
        })
    }

    #[cfg(test)]
    /// Records skipped because an earlier owner had written them.
    pub(crate) fn skipped_total(&self) -> u64 {
        self.skipped
    }

    /// The commits due: per partition (of `only`, or all), the commit point and the metadata
    /// that says what is acknowledged past it, when either changed since the last commit.
    pub(crate) fn commits(&mut self, only: Option<&[Tp]>) -> Vec<(Tp, i64, String)> {
        let mut out = Vec::new();
        for (tp, track) in self.tracks_mut() {
            if only.is_some_and(|o| !o.contains(tp)) {
                continue;
            }
            let Some(point) = track.commit_point() else {
                continue;
            };
            let acked = track
                .pending
                .iter()
                .filter(|&&(o, m)| m == Mark::Acked && o > point)
                .map(|&(o, _)| o);
            let done = track.done.range(point + 1..).copied();
            let metadata = super::done_list::encode(point, acked.chain(done));
            let moved = track.committed.is_none_or(|c| point > c);
            if moved || metadata != track.committed_metadata {
                out.push((tp.clone(), point, metadata));
            }
        }
        out
    }

    /// Records a successful commit with its metadata.
    pub(crate) fn committed_with(&mut self, tp: &Tp, offset: i64, metadata: String) {
        self.committed(tp, offset);
        if let Some(track) = self.track_mut(tp) {
            track.committed_metadata = metadata;
        }
    }

    /// Records acknowledged so far.
    pub(crate) fn acked_total(&self) -> u64 {
        self.acked
    }

    /// Marks a delivered record acknowledged. Returns false when it is unknown: from an earlier
    /// generation, already acknowledged, or never delivered.
    #[cfg(test)]
    pub(crate) fn ack(&mut self, tp: &Tp, offset: i64, generation: u64) -> bool {
        let slot = self.slots.get(tp).copied().unwrap_or(u32::MAX);
        self.ack_at(slot, offset, generation)
    }

    /// [`ack`](Self::ack) by the partition's slot (from [`delivered_run`](Self::delivered_run)).
    pub(crate) fn ack_at(&mut self, slot: u32, offset: i64, generation: u64) -> bool {
        let acked = self.mark(slot, offset, generation, Mark::Acked);
        self.acked += u64::from(acked);
        acked
    }

    /// Marks a delivered record let go without an acknowledgement: it no longer counts as in
    /// flight, and the commit point stops before it. Returns false when it is unknown or not
    /// in flight.
    #[cfg(test)]
    pub(crate) fn release(&mut self, tp: &Tp, offset: i64, generation: u64) -> bool {
        let slot = self.slots.get(tp).copied().unwrap_or(u32::MAX);
        self.release_at(slot, offset, generation)
    }

    /// [`release`](Self::release) by the partition's slot.
    pub(crate) fn release_at(&mut self, slot: u32, offset: i64, generation: u64) -> bool {
        self.mark(slot, offset, generation, Mark::Released)
    }

    fn mark(&mut self, slot: u32, offset: i64, generation: u64, mark: Mark) -> bool {
        let Some(Some((_, track))) = self.tracks.get_mut(slot as usize) else {
            return false;
        };
        // A slot's earlier partition (or an earlier assignment of this one) had another
        // generation: generations are never reused.
        if track.generation != generation {
            return false;
        }
        // Offsets are delivered in increasing order, so `pending` is sorted; without gaps (no
        // compaction, no transaction markers) the record sits at its distance from the front.
        let at = track.pending.front().and_then(|&(first, _)| {
            let i = usize::try_from(offset.checked_sub(first)?).ok()?;
            (track.pending.get(i)?.0 == offset).then_some(i)
        });
        let found = match at {
            Some(i) => Ok(i),
            None => track.pending.binary_search_by_key(&offset, |&(o, _)| o),
        };
        match found {
            Ok(i) if track.pending[i].1 == Mark::InFlight => {
                track.pending[i].1 = mark;
                true
            }
            _ => false,
        }
    }

    #[cfg(test)]
    /// The partitions whose commit point moved past what was committed, with that point.
    pub(crate) fn due(&mut self) -> Vec<(Tp, i64)> {
        let mut out = Vec::new();
        for (tp, track) in self.tracks_mut() {
            if let Some(point) = track.commit_point() {
                if track.committed.is_none_or(|c| point > c) {
                    out.push((tp.clone(), point));
                }
            }
        }
        out
    }

    #[cfg(test)]
    /// The commit point of one partition, if it moved past what was committed.
    pub(crate) fn due_for(&mut self, tp: &Tp) -> Option<i64> {
        let track = self.track_mut(tp)?;
        let point = track.commit_point()?;
        track.committed.is_none_or(|c| point > c).then_some(point)
    }

    /// Records a successful commit.
    pub(crate) fn committed(&mut self, tp: &Tp, offset: i64) {
        if let Some(track) = self.track_mut(tp) {
            if track.committed.is_none_or(|c| offset > c) {
                track.committed = Some(offset);
            }
        }
    }

    /// Records delivered but not yet acknowledged, for one partition.
    pub(crate) fn in_flight(&self, tp: &Tp) -> usize {
        self.track(tp).map_or(0, |t| t.count(Mark::InFlight))
    }

    /// The partitions tracked now, that is, assigned to this member, in order.
    pub(crate) fn assigned(&self) -> Vec<Tp> {
        let mut v: Vec<Tp> = self.slots.keys().cloned().collect();
        v.sort();
        v
    }

    /// Whether no partition is assigned.
    pub(crate) fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Records delivered but not yet acknowledged, over every partition.
    pub(crate) fn in_flight_total(&self) -> usize {
        self.tracks
            .iter()
            .flatten()
            .map(|(_, t)| t.count(Mark::InFlight))
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tp(p: i32) -> Tp {
        (Arc::from("events"), p)
    }

    #[test]
    fn commits_only_the_acknowledged_prefix() {
        let mut t = Tracker::default();
        let g = t.assign(tp(0));
        for o in 10..15 {
            assert_eq!(t.delivered(&tp(0), o), Some(g));
        }
        assert!(t.due().is_empty(), "nothing acked, nothing to commit");
        // 12 and 13 acked out of order: the commit point stays at 10.
        assert!(t.ack(&tp(0), 12, g));
        assert!(t.ack(&tp(0), 13, g));
        assert!(
            t.due().is_empty(),
            "10 is not acked: the point stays where the group is"
        );
        assert!(t.ack(&tp(0), 10, g));
        assert_eq!(t.due(), vec![(tp(0), 11)]);
        t.committed(&tp(0), 11);
        assert!(t.due().is_empty());
        assert!(t.ack(&tp(0), 11, g));
        assert_eq!(t.due_for(&tp(0)), Some(14));
        assert!(t.ack(&tp(0), 14, g));
        assert_eq!(
            t.due_for(&tp(0)),
            Some(15),
            "all acked: commit after the last"
        );
        assert_eq!(t.in_flight(&tp(0)), 0);
    }

    #[test]
    fn acks_of_an_earlier_assignment_are_ignored() {
        let mut t = Tracker::default();
        let old = t.assign(tp(3));
        t.delivered(&tp(3), 0);
        t.delivered(&tp(3), 1);
        assert_eq!(t.revoke(&tp(3)), 2);
        let new = t.assign(tp(3));
        assert_ne!(old, new);
        t.delivered(&tp(3), 0);
        assert!(
            !t.ack(&tp(3), 0, old),
            "a late ack from the old owner's work"
        );
        assert!(t.ack(&tp(3), 0, new));
        assert!(!t.ack(&tp(3), 0, new), "a second ack of the same record");
        assert!(!t.ack(&tp(3), 7, new), "never delivered");
        assert_eq!(t.due(), vec![(tp(3), 1)]);
        t.committed(&tp(3), 1);
        assert!(t.due().is_empty());
    }

    #[test]
    fn a_released_record_leaves_the_flight_but_holds_the_commit_point() {
        let mut t = Tracker::default();
        let g = t.assign(tp(0));
        for o in 0..4 {
            t.delivered(&tp(0), o);
        }
        assert!(t.ack(&tp(0), 0, g));
        assert!(t.release(&tp(0), 1, g), "purged before it reached the sink");
        assert!(t.ack(&tp(0), 2, g));
        assert!(!t.release(&tp(0), 2, g), "an acked record is not released");
        assert!(!t.ack(&tp(0), 1, g), "nor is a released one acked later");
        assert_eq!(t.in_flight(&tp(0)), 1, "only offset 3 is still in flight");
        assert_eq!(
            t.due(),
            vec![(tp(0), 1)],
            "the commit stops at the released record: the next owner reads it again"
        );
        assert_eq!(t.revoke(&tp(0)), 1);
    }

    #[test]
    fn what_the_last_owner_wrote_past_the_commit_is_skipped_and_passed_on() {
        let mut t = Tracker::default();
        let g = t.assign(tp(0));
        // The last owner committed 10 and wrote 12, 13 and 15 past it.
        t.set_done(&tp(0), super::super::done_list::decode(10, "d1:2+1,2+0"));
        let d = t.delivered_run(&tp(0), 10..17).unwrap();
        assert_eq!(d.generation, g);
        assert_eq!(
            d.skips,
            Some(vec![false, false, true, true, false, true, false]),
            "12, 13 and 15 are not handed downstream"
        );
        assert_eq!(t.skipped_total(), 3);
        assert_eq!(t.in_flight(&tp(0)), 4);
        // Nothing acked yet: the commit stays at 10 and passes the list on.
        assert_eq!(t.commits(None), vec![(tp(0), 10, "d1:2+1,2+0".to_string())]);
        t.committed_with(&tp(0), 10, "d1:2+1,2+0".into());
        assert!(t.commits(None).is_empty(), "nothing changed");
        assert!(t.ack(&tp(0), 16, g));
        assert_eq!(t.commits(None), vec![(tp(0), 10, "d1:2+1,2+1".to_string())]);
        for o in [10, 11, 14] {
            assert!(t.ack(&tp(0), o, g));
        }
        assert_eq!(
            t.commits(None),
            vec![(tp(0), 17, String::new())],
            "all done"
        );
    }

    #[test]
    fn a_slot_given_to_another_partition_ignores_the_old_ones_acks() {
        let mut t = Tracker::default();
        let old = t.assign(tp(0));
        let d = t.delivered_run(&tp(0), [7]).unwrap();
        assert_eq!(t.revoke(&tp(0)), 1);
        let new = t.assign(tp(1));
        let e = t.delivered_run(&tp(1), [7]).unwrap();
        assert_eq!(d.slot, e.slot, "the free slot is reused");
        assert!(!t.ack_at(d.slot, 7, old), "the revoked partition's ack");
        assert!(!t.release_at(d.slot, 7, old));
        assert_eq!(t.in_flight(&tp(1)), 1);
        assert!(t.ack_at(e.slot, 7, new));
        assert!(!t.ack_at(99, 7, new), "no such slot");
        assert_eq!(t.due(), vec![(tp(1), 8)]);
    }

    #[test]
    fn an_unassigned_partition_takes_no_records() {
        let mut t = Tracker::default();
        assert_eq!(t.delivered(&tp(1), 5), None);
        assert!(!t.ack(&tp(1), 5, 1));
        assert!(t.due().is_empty());
    }

    #[test]
    fn commits_never_go_backwards() {
        let mut t = Tracker::default();
        let g = t.assign(tp(0));
        t.delivered(&tp(0), 100);
        t.ack(&tp(0), 100, g);
        t.committed(&tp(0), 101);
        t.committed(&tp(0), 50);
        assert!(t.due().is_empty());
        t.delivered(&tp(0), 101);
        t.ack(&tp(0), 101, g);
        assert_eq!(t.due(), vec![(tp(0), 102)]);
    }

    proptest::proptest! {
        /// Whatever order acks come in, the commit point is the first unacked offset.
        #[test]
        fn the_commit_point_is_the_first_unacked(
            n in 1usize..60,
            order in proptest::collection::vec(0usize..60, 0..80),
        ) {
            let mut t = Tracker::default();
            let g = t.assign(tp(0));
            for o in 0..n as i64 {
                t.delivered(&tp(0), o * 2); // gaps, as after compaction
            }
            let mut acked = vec![false; n];
            for i in order.into_iter().filter(|&i| i < n) {
                t.ack(&tp(0), i as i64 * 2, g);
                acked[i] = true;
                let expect = acked.iter().position(|a| !a).map_or(n as i64 * 2 - 1, |i| i as i64 * 2);
                // Offset 0 is where the group stands: committing it again is no progress.
                let expect = (expect > 0).then_some(expect);
                proptest::prop_assert_eq!(t.due_for(&tp(0)), expect);
            }
        }
    }
}
