//! Recovering stalled partitions: the poll thread's side of [`super::stall`].

use std::collections::HashSet;
use std::hash::BuildHasherDefault;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::topic_partition_list::Offset;

use super::rebalance::{SourceContext, tpl_of};
use super::shared::Shared;
use super::stall::{Recovery, Seen, StallWatch};
use super::tracker::{Tp, TpHasher, TpMap};

use super::rebalance::REQUEST_TIMEOUT;

/// Fetch progress per partition, as the stall detector needs it.
pub(super) struct Progress {
    /// Per partition: the offset after the last one fetched in its current assignment.
    fetched_to: TpMap<i64>,
    /// Partitions fetched from since the last stall check.
    progressed: HashSet<Tp, BuildHasherDefault<TpHasher>>,
    /// Whether a poll returned nothing, while the pipeline asked, since the last stall check.
    pub(super) ran_dry: bool,
    stalls: StallWatch,
}

impl Progress {
    pub(super) fn new(stall_after: Duration) -> Progress {
        Progress {
            fetched_to: TpMap::default(),
            progressed: HashSet::default(),
            ran_dry: false,
            stalls: StallWatch::new(stall_after),
        }
    }

    /// Notes that the record at `offset` of `tp` was fetched.
    pub(super) fn note_fetched(&mut self, tp: &Tp, offset: i64) {
        match self.fetched_to.get_mut(tp) {
            Some(to) => *to = offset + 1,
            None => {
                self.fetched_to.insert(tp.clone(), offset + 1);
            }
        }
        if !self.progressed.contains(tp) {
            self.progressed.insert(tp.clone());
        }
    }

    /// Forgets a revoked partition's fetch position: its next assignment starts afresh.
    pub(super) fn forget(&mut self, tp: &Tp) {
        self.fetched_to.remove(tp);
        self.progressed.remove(tp);
    }
}

/// Looks for stalled partitions and takes the next recovery step for each.
pub(super) fn check_stalls(
    consumer: &BaseConsumer<SourceContext>,
    shared: &Shared,
    round: &mut Progress,
    wanted: bool,
) {
    let now = Instant::now();
    let assigned: Vec<(Tp, u64)> = {
        let t = shared.lock_tracker();
        t.assigned()
            .into_iter()
            .filter_map(|tp| t.generation(&tp).map(|g| (tp, g)))
            .collect()
    };
    let tps: Vec<Tp> = assigned.iter().map(|(tp, _)| tp.clone()).collect();
    round.stalls.retain(&tps);
    let lags = shared.lag();
    let mut rejoin = false;
    for (tp, generation) in &assigned {
        let Some(lag) = lags
            .iter()
            .find(|l| l.partition == tp.1 && *l.topic == *tp.0)
        else {
            continue; // no reading yet
        };
        let position = round.fetched_to.get(tp).copied();
        let seen = Seen {
            generation: *generation,
            fetchable: position.map_or(lag.lag, |p| lag.log_end - p),
            progressed: round.progressed.contains(tp),
            ran_dry: round.ran_dry,
        };
        let Some(step) = round.stalls.check(now, tp, seen, wanted) else {
            continue;
        };
        let stalled_for = round.stalls.stalled_for(now, tp).unwrap_or_default();
        let offset = position.or(lag.committed);
        rejoin |= recover(
            consumer,
            shared,
            tp,
            step,
            stalled_for,
            seen.fetchable,
            offset,
        );
    }
    publish(shared, round, &tps, now);
    round.progressed.clear();
    round.ran_dry = false;
    if rejoin {
        tracing::warn!("rejoining the group to recover stalled partitions");
        consumer.unsubscribe();
        let topics: Vec<&str> = shared.config.topics.iter().map(String::as_str).collect();
        if let Err(e) = consumer.subscribe(&topics) {
            tracing::warn!(error = %e, "cannot subscribe again");
        }
    }
}

/// Logs and counts one recovery step for a stalled partition and takes it; a rejoin is left
/// to the caller (once for all partitions). Returns whether to rejoin.
fn recover(
    consumer: &BaseConsumer<SourceContext>,
    shared: &Shared,
    tp: &Tp,
    step: Recovery,
    stalled_for: Duration,
    fetchable: i64,
    offset: Option<i64>,
) -> bool {
    let c = &shared.counters;
    if step == Recovery::Resume {
        c.stalls.fetch_add(1, Ordering::Relaxed);
    }
    c.stall_recoveries.fetch_add(1, Ordering::Relaxed);
    tracing::warn!(
        topic = %tp.0,
        partition = tp.1,
        stalled_s = stalled_for.as_secs_f64(),
        fetchable,
        ?step,
        "partition stalled: assigned, with records to fetch, none fetched while the pipeline asks"
    );
    match step {
        Recovery::Resume => {
            let _ = consumer.resume(&tpl_of([tp]));
        }
        Recovery::Seek => {
            let offset = offset.map_or(Offset::Stored, Offset::Offset);
            if let Err(e) = consumer.seek(&tp.0, tp.1, offset, REQUEST_TIMEOUT) {
                tracing::warn!(error = %e, "seek failed");
            }
        }
        Recovery::Rejoin => return true,
    }
    false
}

/// Publishes the partitions stalled now, and for how long ([`KafkaStats::stalled`]).
///
/// [`KafkaStats::stalled`]: super::KafkaStats::stalled
fn publish(shared: &Shared, round: &Progress, tps: &[Tp], now: Instant) {
    let stalled: Vec<(String, i32, Duration)> = tps
        .iter()
        .filter_map(|tp| {
            let d = round.stalls.stalled_for(now, tp)?;
            Some((tp.0.to_string(), tp.1, d))
        })
        .collect();
    shared
        .counters
        .stalled
        .store(stalled.len() as u64, Ordering::Relaxed);
    if let Ok(mut s) = shared.stalled.lock() {
        *s = stalled;
    }
}
