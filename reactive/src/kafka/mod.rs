//! A Kafka source in pull mode (feature `kafka`): consumer-group membership, records fetched
//! only against demand, offsets committed only after the sink acknowledges.
//!
//! ```no_run
//! use reactive::kafka::{KafkaConfig, KafkaSource};
//! use reactive::{Prefetch, PublisherExt};
//! use futures::TryStreamExt;
//! # #[tokio::main] async fn main() -> Result<(), reactive::Error> {
//! let source = KafkaSource::new(KafkaConfig::new("127.0.0.1:9092", "processors", ["events"]));
//! let mut records = source.into_stream_with(Prefetch::new(256));
//! while let Some(record) = records.try_next().await? {
//!     // ... write record.payload() to the sink, then:
//!     record.ack.ack();
//! }
//! # Ok(()) }
//! ```
//!
//! # Guarantees
//! - **Pull mode.** A thread of its own polls the consumer. It hands records downstream only
//!   while the subscriber has outstanding demand: never more records than were requested. When
//!   demand has been out for 100 ms (a shorter gap, while the subscriber replenishes, is waited
//!   out: a pause drops what librdkafka fetched ahead), every assigned partition is paused, so
//!   the backlog stays in Kafka (as lag) and not in this process; when demand returns they are
//!   resumed. What librdkafka may buffer
//!   ahead is bounded by [`KafkaConfig::fetch_buffer_kbytes`].
//! - **Polling is decoupled from processing.** The poll thread never waits for the sink: while
//!   paused it goes on polling every 10 ms, which serves rebalances and keeps the member within
//!   `max.poll.interval.ms` however slow the sink is. A slow sink shows up as lag, not as an
//!   eviction.
//! - **At-least-once.** Each [`KafkaRecord`] carries an [`Ack`]. Offsets are committed
//!   (synchronously, every [`KafkaConfig::commit_interval`]) only up to the first record of each
//!   partition that is not yet acknowledged: records acknowledged out of order wait for the
//!   earlier ones. A record that is never acknowledged is never committed past, and is delivered
//!   again after a restart or rebalance (see [`KafkaConfig::settle_on_drop`] for pipelines that
//!   shed on purpose).
//! - **What was finished past the commit is not done again.** Each commit's metadata lists the
//!   offsets past its point that were already acknowledged (runs, cut at 3,000 bytes), and a
//!   member that is assigned a partition reads it back and counts those records as
//!   acknowledged instead of handing them over. So a crash or a hand-over replays the records
//!   in flight and those acknowledged since the last commit, not everything finished past the
//!   slowest record (key-parallel pipelines finish far ahead of it). This needs a broker that
//!   returns commit metadata in OffsetFetch, as Kafka does; tansu 0.6 stores it but answers
//!   without it, and there the source replays from the commit point as before.
//! - **Revocation.** When partitions are revoked (or lost), the source first stops handing
//!   their records on and calls the hooks registered with [`KafkaHandle::on_revoke`], which
//!   purge their records still waiting in the pipeline's queues: those are let go
//!   unacknowledged ([`KafkaStats::revoked_unsent`]) and their new owner reads them again from
//!   the commit. Then it waits up to [`KafkaConfig::revoke_grace`] for the records being written
//!   to be acknowledged, commits what was, and forgets the rest: acknowledgements that arrive
//!   later are ignored, and only those records ([`KafkaStats::revoked_in_flight`]) can be
//!   duplicated by the rebalance. A lost assignment (the member was evicted) commits nothing.
//! - **Rebalances move only what changes hands.** The default assignment strategy is
//!   `cooperative-sticky` (KIP-429): partitions that stay with a member keep flowing through a
//!   rebalance. [`KafkaConfig::group_protocol`] `consumer` selects KIP-848 on brokers that
//!   have it; on a broker without its `ConsumerGroupHeartbeat` API (asked with ApiVersions at
//!   start) the stream ends at once with `on_error` and the reason, instead of never joining.
//! - **No silent stall.** A partition's pause is applied again to the whole assignment after
//!   every rebalance (librdkafka keeps a partition paused across a revoke and a re-assign, which
//!   once left a member holding partitions it never fetched). And a partition that is assigned,
//!   has records to fetch, and gets none for [`KafkaConfig::stall_after`] while the pipeline
//!   asks for records is logged, counted ([`KafkaStats::stalled`], [`KafkaStats::stalls`]) and
//!   recovered: resumed, then sought to its next offset, then, if the consumer ran dry, the
//!   member rejoins the group ([`KafkaStats::stall_recoveries`]).
//! - **Lag.** Every [`KafkaConfig::lag_interval`] a second thread reads each assigned
//!   partition's log-end offset (high watermark) and the group's committed offset from the
//!   broker; lag is their difference ([`KafkaStats::lag`]). Assignments come from the rebalance
//!   callbacks, evictions from the client's own `MAX_POLL_EXCEEDED` events.
//!
//! Kafka never ends, so the source completes only after [`KafkaHandle::drain`]. Errors while
//! polling (a broker gone, a rebalance failure) are counted and retried by librdkafka; only a
//! consumer that cannot be created or subscribed ends the stream with `on_error`.

mod batch;
mod config;
mod done_list;
mod lag;
mod poller;
mod probe;
mod rebalance;
mod record;
mod recover;
mod shared;
mod source;
mod stall;
mod stats;
mod tracker;

pub use bytes::Bytes;
pub use config::KafkaConfig;
pub use lag::read_lag;
pub use rebalance::is_eviction;
pub use record::{Ack, KafkaRecord};
pub use shared::RevokeHook;
pub use source::{KafkaConnection, KafkaHandle, KafkaSource};
pub use stats::{KafkaStats, PartitionLag};
