//! The flags as typed, in the lab's vocabulary. [`crate::plan`] validates them into a plan.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

pub use crate::schedule::Profile;
use crate::schedule::Schedule;
use crate::units;
pub use crate::units::BatchSize;

mod kafka;
mod sweep;
pub use kafka::{
    AutoscaleArgs, KafkaConsumerArgs, KeyOrderArgs, KeyOrderMode, PollLoop, ProduceArgs, Source,
};
pub use sweep::SweepArgs;

/// Open-model load, backpressured pipelines, and the experiments that measure them.
#[derive(Debug, Parser)]
#[command(name = "loadgen", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Runs the whole pipeline in one process: generator -> transform -> queue -> sink workers
    /// -> sinkd (embedded on loopback unless --sink-url). With no flags: a 30 s demonstration.
    Run(RunCommand),
    /// Runs one of the lab's experiments from its committed config.
    Experiment(ExperimentArgs),
    /// Runs the pipeline over a grid of settings and prints a table per figure.
    Sweep(SweepArgs),
    /// Adaptive concurrency against static: static worker counts, ARC and ours, against the
    /// embedded sinkd in reject and delay mode with a stall in the middle; a table (min /
    /// median / max over --repeat runs) and charts of the limit over time.
    Concurrency(ConcurrencyArgs),
    /// Drives a sinkd's admin endpoints on a schedule: stall, pause, resume.
    Chaos(ChaosArgs),
    /// An open-model producer to an HTTP sink (sinkd's /write endpoints).
    Produce(ProduceArgs),
    /// The processor as a long-running service, with Prometheus /metrics.
    Process(ProcessArgs),
    /// Lag-driven scale-out: supervises `process` members of one consumer group, adding one
    /// when the broker's lag grows for a window and removing one when it stays near zero.
    Autoscale(AutoscaleArgs),
    /// Per-key parallelism within one partition: the same records and work in partition
    /// order, key order and no order, over a real broker, with the order checked.
    Keyorder(KeyOrderArgs),
}

/// `loadgen run`: the pipeline's flags, and what only a run in its own process takes.
#[derive(Debug, Clone, Default, Parser)]
pub struct RunCommand {
    /// Serves /metrics, /pressure and /debug/pprof/heap here while the run lasts, as `process`
    /// does (the experiments' memory limit takes the heap profile from it).
    #[arg(long)]
    pub metrics_addr: Option<std::net::SocketAddr>,
    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Debug, Clone, Parser)]
pub struct ProcessArgs {
    /// Where to serve /metrics (and /pressure, the slow-source signal for producers).
    #[arg(long, default_value = "127.0.0.1:9464")]
    pub metrics_addr: std::net::SocketAddr,
    /// Where events come from.
    #[arg(long, value_enum, default_value_t = Source::Generator)]
    pub source: Source,
    /// The Kafka consumer, with --source kafka.
    #[command(flatten)]
    pub kafka: KafkaConsumerArgs,
    /// The pipeline, as for `run` (set a long --duration or --schedule for a service).
    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum QueueKind {
    /// A full queue blocks the source: backpressure.
    Bounded,
    /// Never blocks: grows until --safety-cap (or the OOM killer).
    Unbounded,
    /// No buffer: the sink's demand goes straight to the source.
    Pull,
    /// --queue-cap events in memory, the overflow in segment files in --spill-dir (at most
    /// --spill-max bytes; a full disk blocks the source).
    Spill,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Policy {
    /// Wait for room (the source is slowed by a full queue).
    Buffer,
    /// Drop and count what does not fit (see --shed).
    Shed,
    /// Lower the source's rate by AIMD from the queue's fill.
    SlowSource,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Shed {
    /// Refuse the incoming event.
    DropNewest,
    /// Evict the oldest queued event.
    DropOldest,
    /// Shed classes 0-2 from 50/70/90% fill; class 3 is never shed.
    Priority,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SinkMode {
    /// One event per request (POST /write).
    Single,
    /// Up to --batch-size events per request (POST /write/batch).
    Batch,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Partitioning {
    /// Even spread, per-key order lost.
    RoundRobin,
    /// By key hash, per-key order kept.
    Key,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OnLimit {
    /// sinkd holds requests over its limit.
    Delay,
    /// sinkd answers 429 over its limit.
    Reject,
    /// sinkd answers 429 over its limit, and the sink workers send only against the credit it
    /// grants (its `sinkd-credit` header): nothing is refused, nothing held.
    Credit,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Concurrency {
    /// Every sink worker writes whenever it has a batch.
    Fixed,
    /// Ours: slow start by doubling, an RTT baseline band, a hold after each decrease.
    Adaptive,
    /// Vector's adaptive request concurrency: +1 per RTT window from 1, ×0.9 on backpressure.
    Arc,
}

/// A kind of failed attempt that `--backpressure-on` may count as backpressure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize, serde::Deserialize)]
pub enum Backpressure {
    /// 429 Too Many Requests (sinkd's reject mode, with Retry-After).
    #[value(name = "429")]
    #[serde(rename = "429")]
    TooManyRequests,
    /// 503 Service Unavailable (sinkd paused, or too many held requests).
    #[value(name = "503")]
    #[serde(rename = "503")]
    Unavailable,
    /// Any 5xx answer.
    #[value(name = "5xx")]
    #[serde(rename = "5xx")]
    ServerError,
    /// An attempt that took longer than --attempt-timeout.
    #[value(name = "timeout")]
    #[serde(rename = "timeout")]
    Timeout,
    /// No answer at all (connection refused or reset).
    #[value(name = "error")]
    #[serde(rename = "error")]
    Error,
}

/// The pipeline's flags, shared by `run`, `experiment` (as overrides) and `sweep`.
#[derive(Debug, Clone, Parser)]
pub struct RunArgs {
    /// Peak source rate, events/s.
    #[arg(long, default_value = "8000", value_parser = units::rate)]
    pub rate: f64,
    /// Rate outside the peak for --profile step|burst, events/s.
    #[arg(long, default_value = "1500", value_parser = units::rate)]
    pub baseline: f64,
    /// Shape of the offered load over --duration.
    #[arg(long, value_enum, default_value_t = Profile::Burst)]
    pub profile: Profile,
    /// Explicit schedule, overriding --profile and --duration: `RATE@DURATION,...`, e.g.
    /// `1500@60s,8000@300s`.
    #[arg(long, value_parser = Schedule::parse)]
    pub schedule: Option<Schedule>,
    /// Run length (e.g. 30s, 5m).
    #[arg(long, default_value = "30s", value_parser = units::duration)]
    pub duration: Duration,
    /// Payload bytes per event (at most 1 MiB).
    #[arg(long, default_value = "512", value_parser = units::payload_size)]
    pub msg_size: usize,
    /// Seed of the generator: the same seed gives the same events.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Distinct event keys.
    #[arg(long, default_value_t = 64)]
    pub keys: u64,
    /// Queue capacity semantics.
    #[arg(long, value_enum, default_value_t = QueueKind::Bounded)]
    pub queue: QueueKind,
    /// Capacity of a bounded queue, events.
    #[arg(long, default_value = "10000", value_parser = units::at_least_one)]
    pub queue_cap: usize,
    /// With --queue unbounded: end the run cleanly after this many queued events instead of
    /// growing until the OOM killer.
    #[arg(long)]
    pub safety_cap: Option<usize>,
    /// With --queue spill: the directory of the segment files (created; what a killed run left
    /// there is recovered first) [default: OUT/spill with --out, else out/spill].
    #[arg(long)]
    pub spill_dir: Option<PathBuf>,
    /// With --queue spill: the most bytes on disk (e.g. 1GiB; scaled by --time-scale); a full
    /// budget blocks the source.
    #[arg(long, default_value = "1GiB", value_parser = units::bytes)]
    pub spill_max: u64,
    /// With --queue spill: when spilled events are fsynced: `always` (each event), `never`, or
    /// a period (e.g. `100ms`).
    #[arg(long, default_value = "100ms", value_parser = units::fsync)]
    pub spill_fsync: reactive::spill::Fsync,
    /// What to do with the excess.
    #[arg(long, value_enum, default_value_t = Policy::Buffer)]
    pub policy: Policy,
    /// With --policy shed: which events to drop.
    #[arg(long, value_enum, default_value_t = Shed::DropNewest)]
    pub shed: Shed,
    /// One event per request, or batches.
    #[arg(long, value_enum, default_value_t = SinkMode::Single)]
    pub sink_mode: SinkMode,
    /// With --sink-mode batch: events per request, or `auto`: each writer sends what it has
    /// queued at once while the sink keeps up, and waits for the events that arrive during one
    /// write when the sink is congested (up to --batch-max, at most --batch-linger).
    #[arg(long, default_value = "200", value_parser = units::batch_size)]
    pub batch_size: BatchSize,
    /// With --batch-size auto: the most events per request [default: 1000].
    #[arg(long, value_parser = units::at_least_one)]
    pub batch_max: Option<usize>,
    /// With --sink-mode batch: the longest a batch waits to fill (e.g. 50ms).
    #[arg(long, default_value = "50ms", value_parser = units::duration)]
    pub batch_linger: Duration,
    /// Concurrent sink writers (1 to 1024).
    #[arg(long, default_value = "4", value_parser = units::workers)]
    pub sink_workers: usize,
    /// How many writes may be in flight: `fixed` (all --sink-workers), or a limit that adapts
    /// per attempt up to --sink-workers: `adaptive` (ours) or `arc` (Vector's ARC rule).
    #[arg(long, value_enum, default_value_t = Concurrency::Fixed)]
    pub concurrency: Concurrency,
    /// With --concurrency adaptive|arc: which failed attempts count as backpressure,
    /// comma-separated: 429 (with Retry-After), 503, 5xx (any 5xx, 503 included), timeout
    /// (an attempt longer than --attempt-timeout), error (no answer: connection refused, reset).
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "429,503,timeout"
    )]
    pub backpressure_on: Vec<Backpressure>,
    /// The longest one write attempt may take before it is abandoned as a retriable timeout
    /// (the `timeout` class of --backpressure-on) [default: no limit].
    #[arg(long, value_parser = units::duration)]
    pub attempt_timeout: Option<Duration>,
    /// Events each writer may hold, queued or being written (its share of the demand; raised
    /// to two batches when a batch is larger).
    #[arg(long, default_value = "16", value_parser = units::at_least_one)]
    pub worker_window: usize,
    /// How events are spread over the writers.
    #[arg(long, value_enum, default_value_t = Partitioning::Key)]
    pub partitioning: Partitioning,
    /// An external sinkd (http://host:port); default: one embedded on loopback.
    #[arg(long)]
    pub sink_url: Option<String>,
    /// Discard events in-process instead of writing them: measures the generator alone.
    #[arg(long, conflicts_with = "sink_url")]
    pub null_sink: bool,
    /// Embedded sinkd: writes/s.
    #[arg(long, default_value = "2000", value_parser = units::positive_rate)]
    pub sink_rate: f64,
    /// Embedded sinkd: over-limit behaviour.
    #[arg(long, value_enum, default_value_t = OnLimit::Delay)]
    pub sink_on_limit: OnLimit,
    /// Embedded sinkd: added latency per write (e.g. 2ms).
    #[arg(long, default_value = "0ms", value_parser = units::duration)]
    pub sink_latency: Duration,
    /// Embedded sinkd: stall rate, writes/s (with --stall-at).
    #[arg(long, requires = "stall_at", value_parser = units::positive_rate)]
    pub stall_rate: Option<f64>,
    /// Embedded sinkd: when the stall starts (e.g. 10m).
    #[arg(long, requires = "stall_rate", value_parser = units::duration)]
    pub stall_at: Option<Duration>,
    /// Embedded sinkd: how long the stall lasts.
    #[arg(long, default_value = "90s", value_parser = units::duration)]
    pub stall_for: Duration,
    /// Attempts per write before dead-lettering.
    #[arg(long, default_value = "5", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_attempts: u32,
    /// How long to let the pipeline drain after the schedule ends.
    #[arg(long, default_value = "10s", value_parser = units::duration)]
    pub drain_timeout: Duration,
    /// Time-series sampling period.
    #[arg(long, default_value = "250ms", value_parser = units::duration)]
    pub sample: Duration,
    /// Multiplies every duration of the schedule and the stall, and the queue capacities with
    /// them, so a compressed run keeps its shape: 0.02 turns 30 minutes into 36 s.
    #[arg(long, default_value = "1", value_parser = units::time_scale)]
    pub time_scale: f64,
    /// Writes report.json here.
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Writes the time series (CSV), HDR histogram log, dead letters and charts (SVG) here.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// A gate over the report, e.g. 'latency_ms.p99<100', 'lost==0', 'rss_peak_bytes<64MiB'.
    /// Repeatable; the run exits non-zero if any fails.
    #[arg(long = "check", value_name = "EXPR")]
    pub checks: Vec<String>,
    /// No live progress on stderr.
    #[arg(long)]
    pub quiet: bool,
}

impl Default for RunArgs {
    /// Every flag at its default, as `loadgen run` with none.
    fn default() -> Self {
        RunArgs::parse_from(["run"])
    }
}

#[derive(Debug, Clone, Args)]
pub struct ExperimentArgs {
    /// Which experiment: a name from loadgen/experiments/ (e.g. 1-unbounded-vs-bounded), or its
    /// number. `list` lists them.
    pub name: String,
    /// Multiplies every duration: 0.02 compresses a 30-minute run into 36 s with the same shape.
    #[arg(long, default_value = "1", value_parser = units::time_scale)]
    pub time_scale: f64,
    /// Output folder [default: out/experiment-NAME].
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Where the experiment configs live.
    #[arg(long, default_value = "loadgen/experiments")]
    pub configs: PathBuf,
    /// Gates over each run's report (see `run --check`).
    #[arg(long = "check", value_name = "EXPR")]
    pub checks: Vec<String>,
    /// No live progress on stderr.
    #[arg(long)]
    pub quiet: bool,
    /// Validates the config and prints each run's plan, without running.
    #[arg(long)]
    pub dry_run: bool,
    /// Rebuilds the charts and tables from the run folders a previous run left in --out,
    /// without running again.
    #[arg(long, conflicts_with = "dry_run")]
    pub replot: bool,
    /// Runs experiments 1-5 and 7 over Kafka (producer -> topic -> `loadgen process` -> sinkd)
    /// instead of the embedded generator, on a tansu broker started on loopback (build with
    /// `--features local-broker`) unless --bootstrap-servers.
    #[arg(long)]
    pub kafka: bool,
    /// The Kafka cluster to use (implies --kafka) [default: a tansu broker started on loopback].
    #[arg(long, value_name = "HOSTS")]
    pub bootstrap_servers: Option<String>,
    /// Experiments 6 and 6c: make each run this many times; the table gives min / median / max.
    #[arg(long, default_value_t = 1)]
    pub repeat: usize,
    /// Experiments 6 and 6c: only these runs of the config, by number from 1 (comma-separated,
    /// e.g. `--only 3` for the decoupled source alone).
    #[arg(long, value_delimiter = ',', value_name = "N")]
    pub only: Vec<usize>,
    /// Runs each run under this memory limit (e.g. 256MiB), a cgroup where the machine allows
    /// one, else setrlimit; an unbounded run's --safety-cap is lifted, so the limit ends it.
    #[arg(long, value_parser = units::bytes)]
    pub memory_limit: Option<u64>,
    /// With --memory-limit: how to impose it.
    #[arg(long, value_enum, default_value_t = crate::memlimit::Via::Auto, requires = "memory_limit")]
    pub memory_limit_via: crate::memlimit::Via,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sweep_parses_its_lists_beside_the_base_flags() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
        let cli = Cli::try_parse_from([
            "loadgen",
            "sweep",
            "--batch-size",
            "1,16,auto",
            "--policy",
            "shed",
            "--queue",
            "bounded,pull",
            "--repeat",
            "5",
            "--batch-max",
            "64",
        ])
        .unwrap();
        let Some(Command::Sweep(s)) = cli.command else {
            panic!("not a sweep")
        };
        assert_eq!(
            s.batch_size,
            [BatchSize::Fixed(1), BatchSize::Fixed(16), BatchSize::Auto]
        );
        assert_eq!(s.policy, [Policy::Shed]);
        assert_eq!(s.queue, [QueueKind::Bounded, QueueKind::Pull]);
        assert_eq!(s.repeat, 5);
        assert_eq!(
            s.base.queue,
            QueueKind::Bounded,
            "the base keeps its default"
        );
        assert_eq!(s.base.batch_max, Some(64));
    }
}

impl ExperimentArgs {
    /// Whether the runs go through a Kafka topic (`--kafka` or `--bootstrap-servers`).
    pub fn over_kafka(&self) -> bool {
        self.kafka || self.bootstrap_servers.is_some()
    }
}

/// How the sink side asks for events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Demand {
    /// request(1): one event at a time, a round trip each.
    Request1,
    /// request(n) replenished at 75% (a pull queue with the workers' window).
    RequestN,
    /// Credit-based, end to end: in the process, the workers' windows are the credit (a
    /// bounded queue of their size, refilled as writes complete); across HTTP, the workers send
    /// only against the credit sinkd grants (`--sink-on-limit credit`).
    Credit,
    /// A bounded channel (queue) of --queue-cap.
    BoundedChannel,
    /// An unbounded channel.
    Unbounded,
}

/// `loadgen concurrency`: what each run is made of, and how many times.
#[derive(Debug, Clone, Args)]
pub struct ConcurrencyArgs {
    /// sinkd's over-limit modes to measure, comma-separated.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "reject,delay"
    )]
    pub modes: Vec<OnLimit>,
    /// Static concurrencies to run (the best of them is the target), comma-separated.
    #[arg(long = "static", value_delimiter = ',', value_parser = units::workers, default_value = "32,48,64,96,128")]
    pub statics: Vec<usize>,
    /// The adaptive limits' maximum (their --sink-workers).
    #[arg(long, default_value = "128", value_parser = units::workers)]
    pub max: usize,
    /// Offered load, events/s, one write each (above the sink's rate: the queue stays full).
    #[arg(long, default_value = "2000", value_parser = units::rate)]
    pub rate: f64,
    /// sinkd's rate limit, writes/s.
    #[arg(long, default_value = "1000", value_parser = units::positive_rate)]
    pub sink_rate: f64,
    /// sinkd's added latency per write: the best static concurrency is about rate × latency.
    #[arg(long, default_value = "50ms", value_parser = units::duration)]
    pub sink_latency: Duration,
    /// Each run's length.
    #[arg(long, default_value = "20s", value_parser = units::duration)]
    pub duration: Duration,
    /// When sinkd's stall starts.
    #[arg(long, default_value = "8s", value_parser = units::duration)]
    pub stall_at: Duration,
    /// How long it lasts.
    #[arg(long, default_value = "5s", value_parser = units::duration)]
    pub stall_for: Duration,
    /// sinkd's rate during the stall, writes/s.
    #[arg(long, default_value = "200", value_parser = units::positive_rate)]
    pub stall_rate: f64,
    /// With adaptive limits: which failed attempts count as backpressure (see `run`).
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "429,503,timeout"
    )]
    pub backpressure_on: Vec<Backpressure>,
    /// Runs of each setting; the table gives min / median / max.
    #[arg(long, default_value = "5", value_parser = units::at_least_one)]
    pub repeat: usize,
    /// Multiplies the duration and the stall's times (0.5 halves every run).
    #[arg(long, default_value = "1", value_parser = units::time_scale)]
    pub time_scale: f64,
    /// Output folder: concurrency.md, the charts, a folder per run.
    #[arg(long, default_value = "out/concurrency")]
    pub out: PathBuf,
    /// No live progress on stderr.
    #[arg(long)]
    pub quiet: bool,
}

#[derive(Debug, Clone, Args)]
pub struct ChaosArgs {
    /// The sinkd to drive (http://host:port).
    #[arg(long)]
    pub sink_url: String,
    /// Its --admin-token.
    #[arg(long)]
    pub admin_token: String,
    /// Actions, in order: `stall:RATE:DURATION@AT`, `pause@AT`, `resume@AT`, `rate:RATE@AT`
    /// (AT from the start, e.g. `stall:200:90s@600s,pause@20m,resume@21m`).
    #[arg(long, value_delimiter = ',')]
    pub schedule: Vec<String>,
}
