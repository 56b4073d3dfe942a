//! One run of an experiment over a real broker (`experiment N --kafka`, or
//! `--bootstrap-servers HOSTS`): the lab as written, Kafka → processor → sink.
//!
//! The run's flags are split three ways, each to the process that owns them:
//!
//! - **the producer** (`loadgen produce`): the open-model rate and length, payload, keys and
//!   seed. With `--policy slow-source` it follows the processor's `/pressure`;
//! - **the processor** (`loadgen process --source kafka`): the queue, policy, batching, workers
//!   and retries, exactly the run's flags, as a one-member consumer group;
//! - **sinkd**, in this process: its rate, over-limit behaviour, latency and stall, as the run's
//!   embedded sink would have them. Its clock is the run's clock: the time series counts from its
//!   start, so a stall `--stall-at 10m` lands where the stall analysis looks for it.
//!
//! Every sample reads the broker (log-end offsets and the group's commit: the producer's send
//! rate and the lag) and the processor's `/metrics` (RSS, queue, delivered, dropped, p99). After
//! the producer ends, the run waits up to its `--drain-timeout` for the lag to reach 0, stops the
//! processor (SIGTERM: it finishes in-flight writes, commits, leaves) and reads the lag once more:
//! what is left is left in Kafka, not lost. The run's folder gets the same `timeseries.csv` and
//! `report.json` as an embedded run, so `--replot` reads both alike.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::process::Child;
use tokio::time::Instant;

use super::kafka_report::{self, KafkaTotals};
use crate::child;
use crate::cli::{Profile, RunArgs};
use crate::kafka::group_lag::{GroupLag, LagReader};
use crate::pipeline::Outcome;
use crate::plan::Plan;
use crate::telemetry::{Sample, Sampler, Totals};

/// Partitions of each run's topic.
pub(super) const PARTITIONS: i32 = 6;

/// One run over Kafka: its flags (as for `loadgen run`, time scale included), their plan, the
/// cluster and a topic of its own.
pub(super) struct KafkaRun<'a> {
    pub flags: &'a [String],
    pub args: &'a RunArgs,
    pub plan: &'a Plan,
    pub bootstrap: &'a str,
    pub topic: String,
}

/// Only a constant rate goes through `loadgen produce`.
pub(super) fn check(args: &RunArgs) -> anyhow::Result<()> {
    if args.profile != Profile::Constant || args.schedule.is_some() {
        bail!(
            "over Kafka, a run's load must be '--profile constant' (the producer sends at one rate); this run has '--profile {:?}'{}",
            args.profile,
            if args.schedule.is_some() {
                " and a --schedule"
            } else {
                ""
            }
        );
    }
    if args.null_sink {
        bail!("'--null-sink' does not apply over Kafka: the processor writes to sinkd");
    }
    Ok(())
}

fn processor_argv(r: &KafkaRun<'_>, group: &str, sink: &str, port: u16, dir: &Path) -> Vec<String> {
    let out = dir.join("processor");
    let member = child::Member {
        bootstrap: r.bootstrap,
        topic: &r.topic,
        group,
        sink_url: sink,
        port,
        out: &out,
    };
    let mut argv = member.argv();
    argv.extend([
        "--report".into(),
        dir.join("processor.json").display().to_string(),
    ]);
    argv.extend(r.flags.iter().cloned());
    argv
}

fn producer_argv(r: &KafkaRun<'_>, pressure: Option<String>, dir: &Path) -> Vec<String> {
    let report = dir.join("producer.json");
    let mut argv = child::Producer {
        bootstrap: r.bootstrap,
        topic: &r.topic,
        rate: r.plan.schedule().peak(),
        secs: r.plan.schedule().total().as_secs_f64(),
        seed: r.args.seed,
        first_id: 0,
        report: &report,
    }
    .argv();
    argv.extend([
        "--msg-size".into(),
        r.args.msg_size.to_string(),
        "--keys".into(),
        r.args.keys.to_string(),
    ]);
    if let Some(url) = pressure {
        argv.extend(["--pressure-url".into(), url]);
    }
    argv
}

/// The samples of a run: the broker's figures and the processor's, on the run's clock.
struct Watch {
    sampler: Sampler,
    target: f64,
    last: GroupLag,
    series: Vec<Sample>,
}

impl Watch {
    async fn sample(&mut self, reader: &LagReader, metrics: &sinkd::SinkClient, producing: bool) {
        if let Ok(lag) = reader.read().await {
            self.last = lag;
        }
        let text = metrics.metrics().await.unwrap_or_default();
        let p = crate::telemetry::from_exposition(&text);
        let lag = self.last.lag.max(0) as u64;
        let mut s = self.sampler.sample(Totals {
            target_rate: if producing { self.target } else { 0.0 },
            emitted: self.last.log_end.max(0) as u64,
            source_backlog: lag,
            lag,
            queue_depth: p.queue_depth,
            queue_bytes: p.queue_bytes,
            rss_bytes: p.rss_bytes,
            dropped: p.dropped,
            p99_ms: p.p99_ms,
            signal_rate: p.signal_rate,
            concurrency_limit: p.concurrency_limit,
            ..Totals::default()
        });
        // The processor's own rates: it counts what the sink acknowledged.
        s.delivered_rate = p.delivered_rate;
        s.writes_rate = p.writes_rate;
        self.series.push(s);
    }
}

impl Watch {
    /// Samples until the producer ends, then through the drain (up to the run's
    /// `--drain-timeout`, or until the lag is 0); returns when the producer ended, seconds.
    async fn through(
        &mut self,
        plan: &Plan,
        producer: &mut Child,
        (reader, metrics): (&LagReader, &sinkd::SinkClient),
        dir: &Path,
    ) -> anyhow::Result<f64> {
        let mut tick = crate::telemetry::sampling(plan.sample());
        loop {
            tokio::select! {
                status = producer.wait() => {
                    let status = status.context("cannot wait for the producer")?;
                    anyhow::ensure!(status.success(), "the producer failed ({status}): see {}", dir.join("producer.log").display());
                    break;
                }
                _ = tick.tick() => self.sample(reader, metrics, true).await,
            }
        }
        let produce_end = self.sampler.origin().elapsed().as_secs_f64();
        let drain_until = Instant::now() + plan.drain_timeout();
        while Instant::now() < drain_until && self.series.last().is_none_or(|s| s.lag > 0) {
            tick.tick().await;
            self.sample(reader, metrics, false).await;
        }
        Ok(produce_end)
    }
}

fn read_json(path: &Path) -> serde_json::Value {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or(serde_json::Value::Null)
}

/// Runs one run over Kafka and leaves its folder as an embedded run would.
pub(super) async fn run_one(r: &KafkaRun<'_>, dir: &Path) -> anyhow::Result<Outcome> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    crate::kafka::create_topic(r.bootstrap, &r.topic, PARTITIONS, 1).await?;
    let group = format!("{}-group", r.topic);
    let (sink, client, ceiling) = crate::sink::start_sink(r.plan).await?;
    let origin = Instant::now();
    let client = client.context("over Kafka, the processor needs a sink")?;
    let sink_url = r
        .args
        .sink_url
        .clone()
        .unwrap_or_else(|| sink.as_ref().map_or_else(String::new, sinkd::Running::url));
    let port = child::free_port()?;
    let log = dir.join("processor.log");
    let mut processor = child::spawn(&processor_argv(r, &group, &sink_url, port, dir), &log)?;
    let metrics = sinkd::SinkClient::new(&format!("http://127.0.0.1:{port}"))?;
    child::joined(port, &mut processor, &log).await?;
    let pressure = r
        .plan
        .slow_source()
        .then(|| format!("http://127.0.0.1:{port}/pressure"));
    let mut producer = child::spawn(&producer_argv(r, pressure, dir), &dir.join("producer.log"))?;
    let produce_start = origin.elapsed().as_secs_f64();
    let reader = LagReader::new(r.bootstrap, &group, &r.topic, PARTITIONS)?;
    let mut watch = Watch {
        sampler: Sampler::new(origin),
        target: r.plan.schedule().peak(),
        last: GroupLag::default(),
        series: Vec::new(),
    };
    let produce_end = watch
        .through(r.plan, &mut producer, (&reader, &metrics), dir)
        .await?;
    child::terminate(&mut processor, Duration::from_secs(30)).await;
    let end = reader.read().await?;
    let audit = client.stats(None).await.ok();
    if let Some(running) = sink {
        running.shutdown().await;
    }
    let (producer, processor) = (
        read_json(&dir.join("producer.json")),
        read_json(&dir.join("processor.json")),
    );
    anyhow::ensure!(
        !processor.is_null(),
        "the processor left no report: see {}",
        log.display()
    );
    let schedule_s = r.plan.schedule().total().as_secs_f64();
    let report = kafka_report::build(&KafkaTotals {
        plan: r.plan,
        series: &watch.series,
        produced: end.log_end.max(0) as u64,
        producer: &producer,
        processor: &processor,
        audit,
        left: end.lag.max(0) as u64,
        ceiling,
        window: (produce_start + schedule_s * 0.1, produce_end),
    });
    std::fs::write(
        dir.join("report.json"),
        serde_json::to_string_pretty(&report)?,
    )?;
    std::fs::write(
        dir.join("timeseries.csv"),
        crate::telemetry::to_csv(&watch.series),
    )?;
    Ok(Outcome {
        report,
        series: watch.series,
        latency: crate::sink::histogram(),
    })
}
