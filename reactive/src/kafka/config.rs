//! How a [`KafkaSource`](super::KafkaSource) joins its group and fetches.

use std::time::Duration;

#[allow(unused_imports)] // for the docs
use super::KafkaStats;

/// How the source joins its group and how it fetches.
#[derive(Debug, Clone)]
pub struct KafkaConfig {
    /// `bootstrap.servers`: `host:port[,host:port...]`.
    pub bootstrap_servers: String,
    /// `group.id`: the members of one group share the topic's partitions.
    pub group_id: String,
    /// Topics to subscribe to.
    pub topics: Vec<String>,
    /// `max.poll.interval.ms`: the longest the member may go between polls before the client
    /// leaves the group. The poll thread never comes near it; see the module docs.
    pub max_poll_interval: Duration,
    /// `session.timeout.ms`: the longest the broker waits for a heartbeat. librdkafka needs it
    /// no larger than `max_poll_interval`.
    pub session_timeout: Duration,
    /// How often acknowledged offsets are committed.
    pub commit_interval: Duration,
    /// How long a revocation waits for records in flight to be acknowledged.
    pub revoke_grace: Duration,
    /// `queued.max.messages.kbytes`: what librdkafka may fetch ahead, per partition.
    pub fetch_buffer_kbytes: u32,
    /// Most records handed across to the subscriber's task at once.
    pub max_batch: usize,
    /// How often lag is read from the broker (`Duration::ZERO`: never).
    pub lag_interval: Duration,
    /// Where a group with no committed offset starts: `earliest` or `latest`.
    pub auto_offset_reset: String,
    /// Whether an [`Ack`](super::Ack) dropped without [`Ack::ack`](super::Ack::ack) counts as acknowledged. Off by default:
    /// a dropped record is redelivered later. Turn it on in pipelines that shed records on
    /// purpose, so that shedding does not hold the commit point back. A record dropped while its
    /// partition is being revoked (purged, or still queued when the source closes) is not
    /// settled: the partition's next owner reads it again.
    pub settle_on_drop: bool,
    /// How long an assigned partition with records to fetch may go without any being fetched,
    /// while the pipeline asks for records, before it counts as stalled and the source starts
    /// to recover it (`Duration::ZERO`: never). See [`KafkaStats::stalled`].
    pub stall_after: Duration,
    /// `partition.assignment.strategy`. Default `cooperative-sticky` (KIP-429): a rebalance
    /// moves only the partitions that change hands, and the others keep flowing.
    pub assignment_strategy: String,
    /// `group.protocol`: `classic` (the default: JoinGroup and SyncGroup, the assignment made by
    /// a member) or `consumer` (KIP-848, brokers from Kafka 4.0: the broker assigns, and
    /// `assignment_strategy` does not apply).
    pub group_protocol: String,
    /// Any other librdkafka property, applied last.
    pub extra: Vec<(String, String)>,
}

impl KafkaConfig {
    /// A consumer of `topics` in `group_id`, with this crate's defaults.
    pub fn new<I, S>(bootstrap_servers: &str, group_id: &str, topics: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        KafkaConfig {
            bootstrap_servers: bootstrap_servers.into(),
            group_id: group_id.into(),
            topics: topics.into_iter().map(Into::into).collect(),
            max_poll_interval: Duration::from_secs(300),
            session_timeout: Duration::from_secs(45),
            commit_interval: Duration::from_millis(500),
            revoke_grace: Duration::from_secs(2),
            fetch_buffer_kbytes: 4096,
            max_batch: 512,
            lag_interval: Duration::from_secs(1),
            auto_offset_reset: "earliest".into(),
            settle_on_drop: false,
            stall_after: Duration::from_secs(5),
            assignment_strategy: "cooperative-sticky".into(),
            group_protocol: "classic".into(),
            extra: Vec::new(),
        }
    }

    /// Sets any librdkafka property (applied after the ones this crate sets).
    pub fn set(mut self, key: &str, value: &str) -> Self {
        self.extra.push((key.into(), value.into()));
        self
    }

    /// The librdkafka properties of a consumer with this configuration.
    pub fn client_config(&self) -> rdkafka::ClientConfig {
        let mut c = rdkafka::ClientConfig::new();
        let session = self.session_timeout.as_millis().max(1);
        let heartbeat = (session / 3).clamp(1, 3000);
        c.set("bootstrap.servers", &self.bootstrap_servers)
            .set("group.id", &self.group_id)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("enable.partition.eof", "false")
            .set("auto.offset.reset", &self.auto_offset_reset)
            .set(
                "max.poll.interval.ms",
                self.max_poll_interval.as_millis().max(1).to_string(),
            )
            .set("session.timeout.ms", session.to_string())
            .set("heartbeat.interval.ms", heartbeat.to_string())
            .set(
                "queued.max.messages.kbytes",
                self.fetch_buffer_kbytes.max(1).to_string(),
            )
            // How many records per partition librdkafka keeps fetched ahead (bounded in bytes by
            // `queued.max.messages.kbytes` above). At 4 batches (2,048) it fetched too little
            // ahead to keep up: the source topped out at 7,200 records/s against tansu in the
            // `kafka` bench whatever else changed, and at 16 batches it runs at the broker's pace.
            .set(
                "queued.min.messages",
                (self.max_batch.max(1) * 16).to_string(),
            )
            // How long librdkafka waits before fetching again once the consumer's queue is past
            // either bound above. Its default, 1 s, is made for its own far larger defaults
            // (100,000 records, 64 MiB): with these, a consumer that keeps up drains the queue
            // in a fraction of that second and then waits out the rest. In the `kafka` bench
            // both consumers read 9,000-11,000 records/s with it and 32,000-34,000 with 10 ms
            // (on a broker that answered at once, 12,000-14,000 against 350,000-390,000).
            .set("fetch.queue.backoff.ms", "10")
            .set("group.protocol", &self.group_protocol);
        if self.group_protocol == "consumer" {
            // KIP-848: the broker assigns, and librdkafka refuses the classic-only settings.
            c.remove("session.timeout.ms");
            c.remove("heartbeat.interval.ms");
        } else {
            c.set("partition.assignment.strategy", &self.assignment_strategy);
        }
        for (k, v) in &self.extra {
            c.set(k, v);
        }
        c
    }
}
