//! Stall detection: a partition that is assigned, has records to fetch, and gets none although
//! the pipeline asks for records. Pure logic with the clock passed in; the poll thread feeds it
//! and carries out what it decides.
//!
//! A member in that state holds its partitions and consumes nothing: no other member may read
//! them, and nothing fails, so lag grows silently. It was seen after rebalances, where a
//! partition came back still paused from an earlier assignment (librdkafka keeps a partition's
//! pause across a revoke and a re-assign).
//!
//! A partition's records can also wait behind other partitions' in librdkafka's fetch queue
//! (it fetches a partition's records in large chunks), so the clock starts only once the
//! consumer has run dry (a poll returned nothing while the pipeline asked) with the partition
//! still owing records: only then is it certain that nothing of it is on its way.
//!
//! Recovery escalates while the stall lasts, one step per `after`: resume the partition (it
//! may be paused), then seek it to the next offset the source needs (restarts its fetcher,
//! drops nothing it has not delivered), then rejoin the group.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::tracker::Tp;

/// What to do for a stalled partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Recovery {
    /// Resume it: it may have been left paused.
    Resume,
    /// Seek it to the next offset needed: restarts its fetch.
    Seek,
    /// Leave and rejoin the group.
    Rejoin,
}

#[derive(Debug)]
struct Watch {
    generation: u64,
    /// Since when the partition has been wanted (fetchable records, demand) without progress,
    /// counted from the first time the consumer ran dry meanwhile.
    waiting_since: Option<Instant>,
    /// The recoveries tried during the current stall.
    tried: u32,
    /// When the last recovery was tried.
    last_try: Option<Instant>,
}

impl Watch {
    fn new(generation: u64) -> Self {
        Watch {
            generation,
            waiting_since: None,
            tried: 0,
            last_try: None,
        }
    }
}

/// The stall detector of one consumer.
#[derive(Debug)]
pub(crate) struct StallWatch {
    after: Duration,
    parts: HashMap<Tp, Watch>,
}

/// One partition as the poll thread sees it at a check.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Seen {
    /// The generation it is assigned under (a new one restarts its watch).
    pub(crate) generation: u64,
    /// Records the broker has beyond what the source fetched.
    pub(crate) fetchable: i64,
    /// Whether records of it were fetched since the last check.
    pub(crate) progressed: bool,
    /// Whether the consumer ran dry (a poll returned nothing while the pipeline asked) since
    /// the last check.
    pub(crate) ran_dry: bool,
}

impl StallWatch {
    /// A detector that calls a partition stalled after `after` without progress
    /// (`Duration::ZERO`: never).
    pub(crate) fn new(after: Duration) -> Self {
        StallWatch {
            after,
            parts: HashMap::new(),
        }
    }

    /// Forgets partitions no longer assigned.
    pub(crate) fn retain(&mut self, assigned: &[Tp]) {
        self.parts.retain(|tp, _| assigned.contains(tp));
    }

    /// Checks one partition at `now`. `wanted` is whether the pipeline is asking for records
    /// (demand outstanding, partitions not paused for want of it). Returns the recovery to
    /// try now, if any.
    pub(crate) fn check(
        &mut self,
        now: Instant,
        tp: &Tp,
        seen: Seen,
        wanted: bool,
    ) -> Option<Recovery> {
        if self.after.is_zero() {
            return None;
        }
        let w = self
            .parts
            .entry(tp.clone())
            .or_insert_with(|| Watch::new(seen.generation));
        if w.generation != seen.generation || seen.progressed || !wanted || seen.fetchable <= 0 {
            *w = Watch::new(seen.generation);
            return None;
        }
        // Records of it may still be queued behind others' until the consumer runs dry.
        let since = w.waiting_since.or(seen.ran_dry.then_some(now))?;
        w.waiting_since = Some(since);
        let due = match w.last_try {
            None => now.duration_since(since) >= self.after,
            Some(last) => now.duration_since(last) >= self.after,
        };
        if !due {
            return None;
        }
        let step = match w.tried {
            0 => Recovery::Resume,
            1 => Recovery::Seek,
            _ => Recovery::Rejoin,
        };
        w.tried += 1;
        w.last_try = Some(now);
        Some(step)
    }

    /// How long `tp` has been stalled at `now`, if it is (waited `after` or more).
    pub(crate) fn stalled_for(&self, now: Instant, tp: &Tp) -> Option<Duration> {
        let since = self.parts.get(tp)?.waiting_since?;
        let waited = now.duration_since(since);
        (!self.after.is_zero() && waited >= self.after).then_some(waited)
    }

    /// Partitions stalled at `now`.
    #[cfg(test)]
    pub(crate) fn stalled(&self, now: Instant) -> usize {
        self.parts
            .keys()
            .filter(|tp| self.stalled_for(now, tp).is_some())
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn tp(p: i32) -> Tp {
        (Arc::from("events"), p)
    }

    fn seen(fetchable: i64, progressed: bool) -> Seen {
        Seen {
            generation: 1,
            fetchable,
            progressed,
            ran_dry: true,
        }
    }

    fn busy(fetchable: i64) -> Seen {
        Seen {
            ran_dry: false,
            ..seen(fetchable, false)
        }
    }

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn a_wanted_partition_without_progress_escalates_one_step_per_period() {
        let t0 = Instant::now();
        let mut w = StallWatch::new(5 * S);
        assert_eq!(w.check(t0, &tp(0), seen(100, false), true), None);
        assert_eq!(w.check(t0 + 4 * S, &tp(0), seen(100, false), true), None);
        assert_eq!(w.stalled(t0 + 4 * S), 0);
        assert_eq!(
            w.check(t0 + 5 * S, &tp(0), seen(100, false), true),
            Some(Recovery::Resume)
        );
        assert_eq!(w.stalled_for(t0 + 6 * S, &tp(0)), Some(6 * S));
        assert_eq!(w.check(t0 + 9 * S, &tp(0), seen(100, false), true), None);
        assert_eq!(
            w.check(t0 + 10 * S, &tp(0), seen(100, false), true),
            Some(Recovery::Seek)
        );
        assert_eq!(
            w.check(t0 + 15 * S, &tp(0), seen(100, false), true),
            Some(Recovery::Rejoin)
        );
        // Progress ends the stall and its escalation.
        assert_eq!(w.check(t0 + 21 * S, &tp(0), seen(100, true), true), None);
        assert_eq!(w.stalled(t0 + 21 * S), 0);
        assert_eq!(w.check(t0 + 22 * S, &tp(0), seen(100, false), true), None);
        assert_eq!(
            w.check(t0 + 27 * S, &tp(0), seen(100, false), true),
            Some(Recovery::Resume)
        );
    }

    #[test]
    fn a_partition_queued_behind_others_is_not_stalled_until_the_consumer_runs_dry() {
        let t0 = Instant::now();
        let mut w = StallWatch::new(5 * S);
        // Other partitions' records keep every poll busy: no clock yet.
        for s in 0..30 {
            assert_eq!(w.check(t0 + s * S, &tp(0), busy(100), true), None);
        }
        assert_eq!(w.stalled(t0 + 30 * S), 0);
        // Then a poll comes back empty, and the partition still gets nothing.
        assert_eq!(w.check(t0 + 31 * S, &tp(0), seen(100, false), true), None);
        assert_eq!(w.check(t0 + 33 * S, &tp(0), busy(100), true), None);
        assert_eq!(
            w.check(t0 + 36 * S, &tp(0), busy(100), true),
            Some(Recovery::Resume),
            "once started, the clock runs whether later polls are dry or not"
        );
    }

    #[test]
    fn no_demand_no_records_or_a_new_assignment_is_not_a_stall() {
        let t0 = Instant::now();
        let mut w = StallWatch::new(5 * S);
        w.check(t0, &tp(0), seen(100, false), true);
        // Paused for want of demand: the clock restarts.
        assert_eq!(w.check(t0 + 6 * S, &tp(0), seen(100, false), false), None);
        assert_eq!(w.check(t0 + 7 * S, &tp(0), seen(100, false), true), None);
        assert_eq!(w.check(t0 + 11 * S, &tp(0), seen(100, false), true), None);
        // Nothing to fetch: caught up, not stalled.
        assert_eq!(w.check(t0 + 20 * S, &tp(0), seen(0, false), true), None);
        w.check(t0 + 21 * S, &tp(0), seen(10, false), true);
        // Revoked and assigned again: a new generation starts a new watch.
        let fresh = Seen {
            generation: 2,
            ..seen(10, false)
        };
        assert_eq!(w.check(t0 + 30 * S, &tp(0), fresh, true), None);
        assert_eq!(w.stalled(t0 + 30 * S), 0);
    }

    #[test]
    fn zero_disables_it() {
        let t0 = Instant::now();
        let mut w = StallWatch::new(Duration::ZERO);
        assert_eq!(w.check(t0, &tp(0), seen(1, false), true), None);
        assert_eq!(w.check(t0 + 60 * S, &tp(0), seen(1, false), true), None);
        assert_eq!(w.stalled(t0 + 60 * S), 0);
    }

    #[test]
    fn partitions_no_longer_assigned_are_forgotten() {
        let t0 = Instant::now();
        let mut w = StallWatch::new(S);
        w.check(t0, &tp(0), seen(1, false), true);
        w.check(t0, &tp(1), seen(1, false), true);
        w.retain(&[tp(1)]);
        assert_eq!(w.stalled(t0 + 2 * S), 1, "only tp(1) is watched");
        assert!(w.stalled_for(t0 + 2 * S, &tp(0)).is_none());
        assert!(w.stalled_for(t0 + 2 * S, &tp(1)).is_some());
    }
}
