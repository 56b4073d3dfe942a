//! What a [`KafkaSource`](super::KafkaSource) reports.

use std::sync::atomic::AtomicU64;

/// Lag of one partition, as last read from the broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionLag {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// The log-end offset (high watermark).
    pub log_end: i64,
    /// The group's committed offset (`None`: nothing committed yet; lag counts from the log
    /// start).
    pub committed: Option<i64>,
    /// `log_end − committed`.
    pub lag: i64,
}

/// What the source has done so far.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct KafkaStats {
    /// Partitions assigned to this member now (from the rebalance callbacks).
    pub assigned: Vec<(String, i32)>,
    /// Rebalance events seen (each assignment and each revocation counts).
    pub rebalances: u64,
    /// Times the client left the group because `max.poll.interval.ms` passed without a poll.
    pub evictions: u64,
    /// Records handed downstream.
    pub delivered: u64,
    /// Records acknowledged.
    pub acked: u64,
    /// Successful commits.
    pub commits: u64,
    /// Failed commits (retried at the next interval).
    pub commit_failures: u64,
    /// Records in flight when their partition was revoked, whose acknowledgements were dropped.
    /// These may be written after the revocation: they are what a rebalance can duplicate.
    pub revoked_in_flight: u64,
    /// Records let go before they reached the sink: purged from the pipeline when their
    /// partition was revoked (see [`KafkaHandle::on_revoke`](super::KafkaHandle::on_revoke)),
    /// or otherwise dropped unacknowledged. The next owner reads them again from the commit.
    pub revoked_unsent: u64,
    /// Partitions stalled now: assigned, with records to fetch, and none fetched for
    /// [`KafkaConfig::stall_after`](super::KafkaConfig::stall_after) while the pipeline asks
    /// for records.
    pub stalled: u64,
    /// The stalled partitions with how long each has been stalled, as of the last check.
    pub stalled_partitions: Vec<(String, i32, std::time::Duration)>,
    /// Stalls detected (each partition's each stall once).
    pub stalls: u64,
    /// Recovery steps taken for stalled partitions (resume, seek, rejoin).
    pub stall_recoveries: u64,
    /// Times the assigned partitions were paused for want of demand.
    pub pauses: u64,
    /// Client errors seen (not counting evictions).
    pub errors: u64,
    /// Lag per assigned partition, as of the last reading.
    pub lag: Vec<PartitionLag>,
    /// Records delivered and not yet acknowledged.
    pub in_flight: u64,
}

impl KafkaStats {
    /// Sum of the partitions' lag.
    pub fn total_lag(&self) -> i64 {
        self.lag.iter().map(|l| l.lag).sum()
    }
}

#[derive(Debug, Default)]
pub(super) struct Counters {
    pub(super) rebalances: AtomicU64,
    pub(super) evictions: AtomicU64,
    pub(super) delivered: AtomicU64,
    pub(super) commits: AtomicU64,
    pub(super) commit_failures: AtomicU64,
    pub(super) revoked_in_flight: AtomicU64,
    pub(super) revoked_unsent: AtomicU64,
    pub(super) pauses: AtomicU64,
    pub(super) errors: AtomicU64,
    pub(super) stalled: AtomicU64,
    pub(super) stalls: AtomicU64,
    pub(super) stall_recoveries: AtomicU64,
}
