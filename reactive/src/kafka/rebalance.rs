//! The consumer's context: the rebalance callbacks (assignment, revocation with its purge,
//! grace and commit) and the commit of the acknowledged prefix.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use rdkafka::ClientContext;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList as Tpl};

use super::shared::Shared;
use super::tracker::Tp;

/// Whether a client error is the eviction librdkafka reports when `max.poll.interval.ms`
/// passed without a poll (`MAX_POLL_EXCEEDED`): the member has left its group.
pub fn is_eviction(error: &KafkaError) -> bool {
    error.rdkafka_error_code() == Some(RDKafkaErrorCode::PollExceeded)
}

pub(super) struct SourceContext {
    pub(super) shared: Arc<Shared>,
}

impl ClientContext for SourceContext {
    fn error(&self, error: KafkaError, reason: &str) {
        if is_eviction(&error) {
            // Counted where the consumer reports it, in the poll loop.
            return;
        }
        self.shared.counters.errors.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(%error, reason, "kafka client error");
    }
}

pub(super) fn tps_of(tpl: &Tpl) -> Vec<Tp> {
    tpl.elements()
        .iter()
        .map(|e| (Arc::from(e.topic()), e.partition()))
        .collect()
}

pub(super) fn tpl_of<'a>(tps: impl IntoIterator<Item = &'a Tp>) -> Tpl {
    let mut tpl = Tpl::new();
    for (topic, p) in tps {
        tpl.add_partition(topic, *p);
    }
    tpl
}

impl ConsumerContext for SourceContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let Rebalance::Revoke(tpl) = rebalance else {
            return;
        };
        let shared = &self.shared;
        shared.counters.rebalances.fetch_add(1, Ordering::Relaxed);
        let revoked = tps_of(tpl);
        let lost = consumer.assignment_lost();
        // librdkafka keeps a partition's pause across a revoke and a later re-assign: resume
        // it before it goes, or it may come back paused while this member believes it fetches.
        let _ = consumer.resume(tpl);
        // Stop handing their records on and purge them from the pipeline: only what is being
        // written now can still be written twice.
        shared.begin_revoke(&revoked);
        if !lost {
            // Give the records in flight a chance to be acknowledged, then commit them.
            let deadline = Instant::now() + shared.config.revoke_grace;
            loop {
                let left: usize = {
                    let t = shared.lock_tracker();
                    revoked.iter().map(|tp| t.in_flight(tp)).sum()
                };
                if left == 0 || Instant::now() >= deadline {
                    break;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        // Records that were on their way into the pipeline when it was first purged.
        shared.run_revoke_hooks(&revoked);
        if !lost {
            commit(consumer, shared, Some(&revoked));
        }
        let forgotten: usize = {
            let mut t = shared.lock_tracker();
            revoked.iter().map(|tp| t.revoke(tp)).sum()
        };
        shared.end_revoke(&revoked);
        if let Ok(mut positions) = shared.revoked_positions.lock() {
            positions.extend(revoked.iter().cloned());
        }
        shared.revoked_seq.fetch_add(1, Ordering::AcqRel);
        shared.assignment_epoch.fetch_add(1, Ordering::Release);
        shared
            .counters
            .revoked_in_flight
            .fetch_add(forgotten as u64, Ordering::Relaxed);
        tracing::info!(
            partitions = revoked.len(),
            lost,
            in_flight_forgotten = forgotten,
            "partitions revoked"
        );
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let shared = &self.shared;
        match rebalance {
            Rebalance::Assign(tpl) => {
                shared.counters.rebalances.fetch_add(1, Ordering::Relaxed);
                let mut t = shared.lock_tracker();
                for tp in tps_of(tpl) {
                    t.assign(tp);
                }
                drop(t);
                shared.assignment_epoch.fetch_add(1, Ordering::Release);
                tracing::info!(partitions = tpl.count(), "partitions assigned");
            }
            Rebalance::Revoke(_) => {}
            Rebalance::Error(e) => {
                shared.counters.errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %e, "rebalance error");
            }
        }
    }
}

/// Commits the acknowledged prefix of every tracked partition (or of `only`), synchronously.
pub(super) fn commit(consumer: &BaseConsumer<SourceContext>, shared: &Shared, only: Option<&[Tp]>) {
    let due: Vec<(Tp, i64)> = {
        let mut t = shared.lock_tracker();
        match only {
            Some(tps) => tps
                .iter()
                .filter_map(|tp| t.due_for(tp).map(|o| (tp.clone(), o)))
                .collect(),
            None => t.due(),
        }
    };
    if due.is_empty() {
        return;
    }
    let mut tpl = Tpl::with_capacity(due.len());
    for (tp, offset) in &due {
        if tpl
            .add_partition_offset(&tp.0, tp.1, Offset::Offset(*offset))
            .is_err()
        {
            return;
        }
    }
    match consumer.commit(&tpl, CommitMode::Sync) {
        Ok(()) => {
            shared.counters.commits.fetch_add(1, Ordering::Relaxed);
            let mut t = shared.lock_tracker();
            for (tp, offset) in &due {
                t.committed(tp, *offset);
            }
        }
        Err(e) => {
            shared
                .counters
                .commit_failures
                .fetch_add(1, Ordering::Relaxed);
            tracing::warn!(error = %e, "commit failed");
        }
    }
}
