//! The Kafka flags: where `process` reads from and how it polls, and `produce`.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};

use crate::schedule::Schedule;
use crate::units;

/// Where `loadgen process` reads events from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Source {
    /// The embedded open-model generator (--rate, --profile, --schedule).
    Generator,
    /// A Kafka topic, as a member of a consumer group (--bootstrap-servers, --topic, --group).
    Kafka,
}

/// How the Kafka processor polls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PollLoop {
    /// The reactive Kafka source: a poll thread of its own, fetching against demand, pausing
    /// partitions without it. A slow sink cannot delay a poll.
    Decoupled,
    /// The common anti-pattern, kept for experiment 6: poll --poll-batch records, write them
    /// all, commit, poll again. A slow sink delays the next poll.
    Inline,
    /// Experiment 6's control: a plain rdkafka consumer that never pauses (its backlog is
    /// unbounded) and commits what it wrote; nothing is purged on a revocation.
    Bare,
    /// The control with the pause most consumers start with: pause the assignment when the
    /// backlog holds --queue-cap records, resume at half, tracking only its own last call.
    BarePause,
}

/// The consumer-group protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum GroupProtocol {
    /// JoinGroup and SyncGroup; a member computes the assignment (--assignment-strategy).
    Classic,
    /// KIP-848: the broker assigns. Needs a broker that has it (Apache Kafka 4.0 and later).
    Consumer,
}

impl GroupProtocol {
    /// The value of librdkafka's `group.protocol`.
    pub fn as_str(self) -> &'static str {
        match self {
            GroupProtocol::Classic => "classic",
            GroupProtocol::Consumer => "consumer",
        }
    }
}

#[derive(Debug, Clone, Args)]
pub struct KafkaConsumerArgs {
    /// Kafka bootstrap servers (host:port[,host:port...]).
    #[arg(long, value_name = "HOSTS")]
    pub bootstrap_servers: Option<String>,
    /// Topic to consume.
    #[arg(long, default_value = "events")]
    pub topic: String,
    /// Consumer group: processes with the same group share the topic's partitions.
    #[arg(long, default_value = "loadgen")]
    pub group: String,
    /// max.poll.interval.ms: the longest between two polls before the client leaves the group.
    #[arg(long, default_value = "300s", value_parser = units::duration)]
    pub max_poll_interval: Duration,
    /// session.timeout.ms (capped at --max-poll-interval).
    #[arg(long, default_value = "45s", value_parser = units::duration)]
    pub session_timeout: Duration,
    /// How often acknowledged offsets are committed.
    #[arg(long, default_value = "500ms", value_parser = units::duration)]
    pub commit_interval: Duration,
    /// An assigned partition with records to fetch that gets none for this long, while the
    /// pipeline asks for records, counts as stalled and is recovered (0s: never).
    #[arg(long, default_value = "5s", value_parser = units::duration)]
    pub stall_after: Duration,
    /// partition.assignment.strategy: cooperative-sticky moves only the partitions that change
    /// hands; range or roundrobin revoke every partition at each rebalance.
    #[arg(long, default_value = "cooperative-sticky")]
    pub assignment_strategy: String,
    /// group.protocol: classic (JoinGroup/SyncGroup) or consumer (KIP-848; Kafka 4.0+ brokers).
    #[arg(long, value_enum, default_value_t = GroupProtocol::Classic)]
    pub group_protocol: GroupProtocol,
    /// decoupled (the reactive source) or inline (poll, process, commit: the anti-pattern).
    #[arg(long, value_enum, default_value_t = PollLoop::Decoupled)]
    pub poll_loop: PollLoop,
    /// With --poll-loop inline: records taken per poll round and processed before the next.
    #[arg(long, default_value_t = 500)]
    pub poll_batch: usize,
    /// Lag (events) at which /pressure reads 1.0: producers with --pressure-url slow down
    /// as lag approaches it.
    #[arg(long, default_value_t = 20_000)]
    pub pressure_lag: u64,
    /// Stop once no record has arrived for this long (e.g. 10s); default: run until interrupted
    /// or --stop-after.
    #[arg(long, value_parser = units::duration)]
    pub stop_when_idle: Option<Duration>,
    /// Stop after this long (e.g. 5m).
    #[arg(long, value_parser = units::duration)]
    pub stop_after: Option<Duration>,
    /// Any librdkafka consumer property, KEY=VALUE (repeatable), e.g.
    /// `--kafka-option group.instance.id=processor-1`.
    #[arg(long = "kafka-option", value_name = "KEY=VALUE", value_parser = units::key_value)]
    pub kafka_options: Vec<(String, String)>,
}

#[derive(Debug, Clone, Args)]
#[command(group(clap::ArgGroup::new("target").required(true).args(["sink_url", "bootstrap_servers"])))]
pub struct ProduceArgs {
    /// Write to this sinkd (http://host:port) ...
    #[arg(long)]
    pub sink_url: Option<String>,
    /// ... or produce to Kafka (host:port[,host:port...]).
    #[arg(long, value_name = "HOSTS")]
    pub bootstrap_servers: Option<String>,
    /// Kafka topic.
    #[arg(long, default_value = "events")]
    pub topic: String,
    /// Create the topic with this many partitions first (nothing happens if it exists).
    #[arg(long)]
    pub partitions: Option<i32>,
    /// Replication factor of a topic created with --partitions.
    #[arg(long, default_value_t = 1)]
    pub replication: i32,
    /// Events/s.
    #[arg(long, default_value = "2000", value_parser = units::rate)]
    pub rate: f64,
    /// How long.
    #[arg(long, default_value = "30s", value_parser = units::duration)]
    pub duration: Duration,
    /// Payload bytes per event (at most 1 MiB).
    #[arg(long, default_value = "512", value_parser = units::payload_size)]
    pub msg_size: usize,
    /// Generator seed.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Distinct event keys (Kafka: the record key, so each key keeps its partition and order).
    #[arg(long, default_value_t = 64)]
    pub keys: u64,
    /// Concurrent requests (sinkd only).
    #[arg(long, default_value = "32", value_parser = units::workers)]
    pub connections: usize,
    /// Id of the first event (to keep ids distinct across producers of one topic).
    #[arg(long, default_value_t = 0)]
    pub first_id: u64,
    /// Kafka: follow a processor's slow-source signal (its http://host:port/pressure): the rate
    /// backs off by AIMD as the processor's lag builds and recovers as it drains.
    #[arg(long)]
    pub pressure_url: Option<String>,
    /// Kafka: writes the producer's report (JSON) here.
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// No live progress on stderr.
    #[arg(long)]
    pub quiet: bool,
}

#[derive(Debug, Clone, Args)]
pub struct AutoscaleArgs {
    /// Kafka bootstrap servers [default: a tansu broker started on loopback, with
    /// `--features local-broker`].
    #[arg(long, value_name = "HOSTS")]
    pub bootstrap_servers: Option<String>,
    /// Topic the members consume (created with --partitions if it does not exist).
    #[arg(long, default_value = "events")]
    pub topic: String,
    /// The members' consumer group.
    #[arg(long, default_value = "loadgen")]
    pub group: String,
    /// Partitions of the topic: the most members that can own one.
    #[arg(long, default_value_t = 8)]
    pub partitions: i32,
    /// Fewest members.
    #[arg(long, default_value_t = 1)]
    pub min_members: usize,
    /// Most members [default: the partition count; never more].
    #[arg(long)]
    pub max_members: Option<usize>,
    /// Add a member when the lag has grown across this long (and is at least --scale-up-lag);
    /// remove one when it stayed at most --idle-lag this long.
    #[arg(long, default_value = "10s", value_parser = units::duration)]
    pub window: Duration,
    /// The least time between two changes (each is a rebalance).
    #[arg(long, default_value = "20s", value_parser = units::duration)]
    pub cooldown: Duration,
    /// The least lag, records, at which a member is added.
    #[arg(long, default_value_t = 5000)]
    pub scale_up_lag: u64,
    /// Lag, records, at or below which the group counts as idle (at rest the lag is about the
    /// rate times the commit interval).
    #[arg(long, default_value_t = 1000)]
    pub idle_lag: u64,
    /// The sinkd the members write to [default: one started here with no rate limit and
    /// --sink-latency per write, so its capacity grows with the members].
    #[arg(long)]
    pub sink_url: Option<String>,
    /// The started sinkd's latency per write.
    #[arg(long, default_value = "2ms", value_parser = units::duration)]
    pub sink_latency: Duration,
    /// Offered load produced into the topic, `RATE@DURATION,...` (e.g. `1500@60s,8000@240s`);
    /// without it no producer is started.
    #[arg(long, value_parser = Schedule::parse)]
    pub step: Option<Schedule>,
    /// Stop after this long [default: the end of --step and one minute; else until Ctrl-C].
    #[arg(long, value_parser = units::duration)]
    pub stop_after: Option<Duration>,
    /// Writes summary.md, autoscale.json, the charts and the members' logs here
    /// [default: out/autoscale].
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Flags for every `loadgen process` member, after `--` (e.g. `-- --sink-workers 8`).
    #[arg(last = true)]
    pub member_flags: Vec<String>,
}

/// `loadgen keyorder`: parallel-consumer's published comparison, over a real broker.
#[derive(Debug, Clone, Args)]
pub struct KeyOrderArgs {
    /// Kafka bootstrap servers [default: a tansu broker started on loopback, with
    /// `--features local-broker`].
    #[arg(long, value_name = "HOSTS")]
    pub bootstrap_servers: Option<String>,
    /// Records produced into the one partition.
    #[arg(long, default_value_t = 10_000)]
    pub records: u64,
    /// Distinct keys, drawn at random for each record.
    #[arg(long, default_value_t = 100)]
    pub keys: u64,
    /// Each record's work is drawn uniformly from 0 to this (the same draws in every mode).
    #[arg(long, default_value = "5ms", value_parser = units::duration)]
    pub work_max: Duration,
    /// Workers of the key-order and unordered modes (partition order has one).
    #[arg(long, default_value_t = 256)]
    pub workers: usize,
    /// Seed of the keys and the work.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Modes to run, comma-separated: partition, key, unordered.
    #[arg(long, value_delimiter = ',', default_value = "partition,key,unordered")]
    pub modes: Vec<KeyOrderMode>,
    /// Writes keyorder.json and summary.md here [default: out/keyorder].
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Instead of the comparison: the replay after `kill -9`, this many times. Key order runs
    /// in a child process that writes each finished record's offset to a file (the sink), is
    /// SIGKILLed at a seeded point, and runs again in the same group to the end; records
    /// written by both runs are the replay.
    #[arg(long)]
    pub kills: Option<u32>,
    /// How often the source commits the acknowledged prefix (and, in the commit's metadata,
    /// what it acknowledged past it). What a `kill -9` replays is what was written past the
    /// last commit: the records in flight plus about one interval of progress.
    #[arg(long, default_value = "200ms", value_parser = units::duration)]
    pub commit_interval: Duration,
    /// Hands a record to the workers only while its offset is less than this many past the
    /// first record not yet acknowledged, so a `kill -9` replays at most this many plus what
    /// was acknowledged since the last commit [default: no limit].
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_ahead: Option<u64>,
    /// The child's topic, group and sink file (set by `--kills`).
    #[arg(long, hide = true, num_args = 3, value_names = ["TOPIC", "GROUP", "FILE"])]
    pub child: Option<Vec<String>>,
}

/// How `loadgen keyorder` spreads a partition's records over workers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyOrderMode {
    /// One worker: the partition's order (a plain consumer).
    Partition,
    /// A worker per key hash: each key's records in order, keys in parallel.
    Key,
    /// Round-robin: no order at all.
    Unordered,
}
