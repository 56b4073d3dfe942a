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

/// How long any broker round trip of the source may take (callbacks, shutdown, recovery, lag).
pub(super) const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

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

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let shared = &self.shared;
        match rebalance {
            Rebalance::Assign(tpl) => {
                shared.counters.rebalances.fetch_add(1, Ordering::Relaxed);
                let mut t = shared.lock_tracker();
                for tp in tps_of(tpl) {
                    t.assign(tp);
                }
                drop(t);
                load_done(consumer, shared, tpl);
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
    let due = shared.lock_tracker().commits(only);
    if due.is_empty() {
        return;
    }
    let mut tpl = Tpl::with_capacity(due.len());
    for (tp, offset, metadata) in &due {
        if tpl
            .add_partition_offset(&tp.0, tp.1, Offset::Offset(*offset))
            .is_err()
        {
            return;
        }
        if let Some(mut e) = tpl.find_partition(&tp.0, tp.1) {
            e.set_metadata(metadata);
        }
    }
    match consumer.commit(&tpl, CommitMode::Sync) {
        Ok(()) => {
            shared.counters.commits.fetch_add(1, Ordering::Relaxed);
            let mut t = shared.lock_tracker();
            for (tp, offset, metadata) in due {
                t.committed_with(&tp, offset, metadata);
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

/// Reads what the partitions' last owner left in its commits' metadata (records it wrote and
/// acknowledged past the commit point), so that they are not written again.
fn load_done(consumer: &BaseConsumer<SourceContext>, shared: &Shared, tpl: &Tpl) {
    let committed = match consumer.committed_offsets(tpl.clone(), REQUEST_TIMEOUT) {
        Ok(c) => c,
        Err(e) => {
            tracing::debug!(error = %e, "cannot read the commits' metadata");
            return;
        }
    };
    let mut t = shared.lock_tracker();
    let mut found = 0;
    for e in committed.elements() {
        let Offset::Offset(point) = e.offset() else {
            continue;
        };
        let done = super::done_list::decode(point, e.metadata());
        found += done.len();
        t.set_done(&(Arc::from(e.topic()), e.partition()), done);
    }
    if found > 0 {
        tracing::info!(
            records = found,
            "records past the commit already written by the last owner: skipped"
        );
    }
}
