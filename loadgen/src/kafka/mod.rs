//! Kafka for loadgen: `produce` to a topic, `process --source kafka` from it, and the pieces
//! they share (client settings, topic creation, the event encoding, the metrics).
//!
//! Records carry one event each: the key is the event's key in decimal (so each key keeps its
//! partition, and its order), the value is the event in sinkd's binary form
//! ([`sinkd::wire::encode_one`]). A value that does not decode is a poison record: the processor
//! writes it to its dead-letter file with the reason and moves on.

mod ahead;
pub mod bare;
#[cfg(test)]
mod compose_check;
pub mod decoupled;
#[cfg(test)]
mod deploy_check;
pub mod eviction;
pub mod group_lag;
pub mod inline;
pub mod keyorder;
pub mod plain;
pub mod poison;
pub mod poll_loop;
pub mod process;
pub mod produce;

use std::time::Duration;

use std::sync::atomic::AtomicU64;

use anyhow::Context;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::types::RDKafkaErrorCode;
use reactive::kafka::KafkaStats;
use sinkd::wire::{Event, Format};

/// The record key of an event.
pub fn key_of(event: &Event) -> String {
    event.key.to_string()
}

/// The record value of an event.
pub fn encode(event: &Event) -> Vec<u8> {
    sinkd::wire::encode_one(event, Format::Binary)
}

/// The event in a record value, or why there is none.
pub fn decode(value: Option<&[u8]>) -> Result<Event, String> {
    let value = value.ok_or_else(|| "the record has no value".to_string())?;
    sinkd::wire::decode_one(value, Format::Binary).map_err(|e| format!("not an event: {e}"))
}

/// The event in a record value; otherwise why not, and the value as text (at most 1 KiB), for
/// the dead-letter file.
pub fn decode_or_poison(value: Option<&[u8]>) -> Result<Event, (String, String)> {
    decode(value).map_err(|reason| {
        let bytes = value.unwrap_or_default();
        let shown = String::from_utf8_lossy(&bytes[..bytes.len().min(1024)]).into_owned();
        (reason, shown)
    })
}

/// Creates `topic` with `partitions` partitions; an existing topic is left as it is.
pub async fn create_topic(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    replication: i32,
) -> anyhow::Result<()> {
    anyhow::ensure!(
        partitions >= 1,
        "invalid value '{partitions}' for '--partitions': at least 1"
    );
    anyhow::ensure!(
        replication >= 1,
        "invalid value '{replication}' for '--replication': at least 1"
    );
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .context("cannot create a Kafka admin client")?;
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let results = admin
        .create_topics(
            &[NewTopic::new(
                topic,
                partitions,
                TopicReplication::Fixed(replication),
            )],
            &options,
        )
        .await
        .with_context(|| format!("cannot create topic {topic} on {bootstrap}"))?;
    for result in results {
        match result {
            Ok(_) => {}
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => anyhow::bail!("cannot create topic {name}: {code}"),
        }
    }
    Ok(())
}

/// A broker that lives as long as an experiment needs it (`None` for the user's own cluster).
#[cfg(feature = "local-broker")]
pub type LocalBroker = Option<testbroker::Broker>;
/// A broker that lives as long as an experiment needs it (always the user's own cluster: this
/// build cannot start one).
#[cfg(not(feature = "local-broker"))]
pub type LocalBroker = Option<std::convert::Infallible>;

/// The cluster an experiment uses: `hosts` when given, otherwise a tansu broker of its own on
/// loopback (feature `local-broker`).
///
/// # Errors
/// Without `hosts`, when tansu cannot be started, or when this build cannot start one.
pub fn broker(hosts: Option<&str>) -> anyhow::Result<(LocalBroker, String)> {
    if let Some(hosts) = hosts {
        return Ok((None, hosts.to_string()));
    }
    #[cfg(feature = "local-broker")]
    {
        let broker = testbroker::Broker::try_start().map_err(anyhow::Error::msg)?;
        let b = broker.bootstrap();
        println!("started tansu on {b}");
        Ok((Some(broker), b))
    }
    #[cfg(not(feature = "local-broker"))]
    {
        anyhow::bail!(
            "this experiment needs a Kafka cluster: pass '--bootstrap-servers HOSTS', or build loadgen with `--features local-broker` to start tansu on loopback"
        )
    }
}

/// A partition of the group, as a label set.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PartitionLabels {
    consumergroup: String,
    topic: String,
    partition: String,
}

/// The group, as a label set.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GroupLabels {
    consumergroup: String,
}

/// Registers the consumer's metrics in `registry`: lag per partition, stalled partitions,
/// assignment, rebalances, evictions, commits, and what rebalances cost.
pub fn register(registry: &mut Registry, stats: &KafkaStats, group: &str) {
    let partition = |topic: &str, p: i32| PartitionLabels {
        consumergroup: group.to_string(),
        topic: topic.to_string(),
        partition: p.to_string(),
    };
    let lag: Family<PartitionLabels, Gauge> = Family::default();
    for l in &stats.lag {
        lag.get_or_create(&partition(&l.topic, l.partition))
            .set(l.lag);
    }
    registry.register(
        "kafka_consumergroup_lag",
        "Log-end offset minus the group's committed offset, per assigned partition",
        lag,
    );
    let committed: Family<PartitionLabels, Gauge> = Family::default();
    for l in &stats.lag {
        if let Some(offset) = l.committed {
            committed
                .get_or_create(&partition(&l.topic, l.partition))
                .set(offset);
        }
    }
    registry.register(
        "kafka_consumergroup_committed_offset",
        "The group's committed offset, per assigned partition (its progress)",
        committed,
    );
    let stalled: Family<PartitionLabels, Gauge<f64, AtomicU64>> = Family::default();
    for (topic, p, d) in &stats.stalled_partitions {
        stalled
            .get_or_create(&partition(topic, *p))
            .set(d.as_secs_f64());
    }
    registry.register(
        "kafka_consumer_partition_stalled_seconds",
        "How long a stalled partition has been stalled",
        stalled,
    );
    let labels = GroupLabels {
        consumergroup: group.to_string(),
    };
    let gauges: [(&str, &str, u64); 3] = [
        (
            "kafka_consumer_assigned_partitions",
            "Partitions assigned to this member (from the rebalance callbacks)",
            stats.assigned.len() as u64,
        ),
        (
            "kafka_consumer_in_flight",
            "Records handed to the pipeline and not yet acknowledged",
            stats.in_flight,
        ),
        (
            "kafka_consumer_stalled_partitions",
            "Partitions assigned, with records to fetch, and none fetched for --stall-after while the pipeline asks",
            stats.stalled,
        ),
    ];
    for (name, help, value) in gauges {
        let family: Family<GroupLabels, Gauge> = Family::default();
        family.get_or_create(&labels).set(value as i64);
        registry.register(name, help, family);
    }
    // Names without `_total`: the encoder adds it to counters.
    let counters: [(&str, &str, u64); 10] = [
        (
            "kafka_consumer_rebalances",
            "Rebalance events (assignments and revocations)",
            stats.rebalances,
        ),
        (
            "kafka_consumer_evictions",
            "Times the client left the group because max.poll.interval.ms passed without a poll",
            stats.evictions,
        ),
        (
            "kafka_consumer_records",
            "Records handed to the pipeline",
            stats.delivered,
        ),
        (
            "kafka_consumer_acked",
            "Records the sink acknowledged",
            stats.acked,
        ),
        (
            "kafka_consumer_commits",
            "Successful offset commits",
            stats.commits,
        ),
        (
            "kafka_consumer_commit_failures",
            "Failed offset commits",
            stats.commit_failures,
        ),
        (
            "kafka_consumer_revoked_in_flight",
            "Records being written when their partition was revoked: what a rebalance can duplicate",
            stats.revoked_in_flight,
        ),
        (
            "kafka_consumer_revoked_unsent",
            "Records of revoked partitions purged before they reached the sink (the new owner reads them)",
            stats.revoked_unsent,
        ),
        ("kafka_consumer_stalls", "Stalls detected", stats.stalls),
        (
            "kafka_consumer_stall_recoveries",
            "Recovery steps taken for stalled partitions (resume, seek, rejoin)",
            stats.stall_recoveries,
        ),
    ];
    for (name, help, value) in counters {
        let family: Family<GroupLabels, Counter> = Family::default();
        family.get_or_create(&labels).inc_by(value);
        registry.register(name, help, family);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reactive::kafka::PartitionLag;

    #[test]
    fn events_survive_the_record_encoding_and_garbage_is_poison() {
        let e = Event {
            id: 7,
            key: 3,
            seq: 1,
            ts_ns: 42,
            priority: 2,
            payload: "x".repeat(512),
        };
        assert_eq!(decode(Some(&encode(&e))), Ok(e.clone()));
        assert_eq!(key_of(&e), "3");
        assert!(
            decode(Some(b"garbage"))
                .unwrap_err()
                .contains("not an event")
        );
        assert!(decode(None).is_err());
    }

    #[test]
    fn the_exposition_has_lag_per_partition_and_the_counters() {
        let stats = KafkaStats {
            assigned: vec![("events".into(), 0), ("events".into(), 5)],
            evictions: 2,
            lag: vec![PartitionLag {
                topic: "events".into(),
                partition: 5,
                log_end: 100,
                committed: Some(60),
                lag: 40,
            }],
            ..KafkaStats::default()
        };
        let mut r = Registry::default();
        register(&mut r, &stats, "g");
        let text = crate::telemetry::encode(&r);
        assert!(text.contains(
            "kafka_consumergroup_lag{consumergroup=\"g\",topic=\"events\",partition=\"5\"} 40\n"
        ));
        assert!(text.contains("kafka_consumer_assigned_partitions{consumergroup=\"g\"} 2\n"));
        assert!(text.contains("kafka_consumer_evictions_total{consumergroup=\"g\"} 2\n"));
    }
}
