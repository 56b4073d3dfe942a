//! Stall detection: a partition that is assigned, has records to fetch, and gets none although
//! the pipeline asks for records. Pure logic with the clock passed in; the poll thread feeds it
//! and carries out what it decides.
//!
//! A member in that state holds its partitions and consumes nothing: no other member may read
//! them, and nothing fails, so lag grows silently. It was seen after rebalances, where a
//! partition came back still paused from an earlier assignment (librdkafka keeps a partition's
//! pause across a revoke and a re-assign).
//!
//! Recovery escalates while the stall lasts, one step per `after`: resume the partition (it
//! may be paused), then seek it to the next offset the source needs (restarts its fetcher,
//! drops nothing it has not delivered), then, if the consumer as a whole ran dry meanwhile,
//! rejoin the group.

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
    /// Since when the partition has been wanted (fetchable records, demand) without progress.
    waiting_since: Option<Instant>,
    /// The recoveries tried during the current stall.
    tried: u32,
    /// When the last recovery was tried.
    last_try: Option<Instant>,
    /// Whether the consumer ran dry (a poll returned nothing) since the stall began.
    dry: bool,
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

    /// Notes that a poll returned nothing while the source asked for records.
    pub(crate) fn ran_dry(&mut self) {
        for w in self.parts.values_mut() {
            if w.waiting_since.is_some() {
                w.dry = true;
            }
        }
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
        let w = self.parts.entry(tp.clone()).or_insert(Watch {
            generation: seen.generation,
            waiting_since: None,
            tried: 0,
            last_try: None,
            dry: false,
        });
        if w.generation != seen.generation || seen.progressed || !wanted || seen.fetchable <= 0 {
            *w = Watch {
                generation: seen.generation,
                waiting_since: None,
                tried: 0,
                last_try: None,
                dry: false,
            };
            return None;
        }
        let since = *w.waiting_since.get_or_insert(now);
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
            // Rejoining costs the whole group a rebalance: only when the consumer ran dry, so
            // a partition that merely waits behind others' records never causes one.
            _ if w.dry => Recovery::Rejoin,
            _ => Recovery::Seek,
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
        // Not dry: the consumer kept returning other partitions' records. Seek again, never
        // a rejoin.
        assert_eq!(
            w.check(t0 + 15 * S, &tp(0), seen(100, false), true),
            Some(Recovery::Seek)
        );
        w.ran_dry();
        assert_eq!(
            w.check(t0 + 20 * S, &tp(0), seen(100, false), true),
            Some(Recovery::Rejoin)
        );
        // Progress ends the stall and its escalation.
        assert_eq!(w.check(t0 + 21 * S, &tp(0), seen(100, true), true), None);
        assert_eq!(w.stalled(t0 + 21 * S), 0);
        assert_eq!(w.check(t0 + 25 * S, &tp(0), seen(100, false), true), None);
        assert_eq!(
            w.check(t0 + 26 * S, &tp(0), seen(100, false), true),
            Some(Recovery::Resume)
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
