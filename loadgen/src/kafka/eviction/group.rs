//! One run of a consumer-group experiment: the topic and its backlog, a steady producer, the
//! processors, a reading of each processor's `/metrics` every second, the drain, and the audit.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::process::Child;
use tokio::time::Instant;

use super::{EvictionResult, KafkaSpec, Reading, write_charts};
use crate::child;

/// What one run needs to know.
pub struct Setting<'a> {
    pub label: &'a str,
    pub flags: &'a [String],
    pub spec: &'a KafkaSpec,
    pub bootstrap: &'a str,
    pub topic: &'a str,
    pub duration: Duration,
}

/// `loadgen produce` to `topic` at `rate` for `secs`, with a seed and first id, reporting to
/// `report`.
fn produce_argv(
    s: &Setting<'_>,
    rate: f64,
    secs: f64,
    (seed, first_id): (u64, u64),
    report: &Path,
) -> Vec<String> {
    child::Producer {
        bootstrap: s.bootstrap,
        topic: s.topic,
        rate,
        secs,
        seed,
        first_id,
        report,
    }
    .argv()
}

/// A report's field (0 without the report or the field).
fn report_field(report: &Path, field: &str) -> u64 {
    std::fs::read_to_string(report)
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .and_then(|v| v[field].as_u64())
        .unwrap_or(0)
}

/// The processors, each with its metrics address.
type Processors = Vec<(Child, String)>;

fn start_processors(s: &Setting<'_>, sink_url: &str, dir: &Path) -> anyhow::Result<Processors> {
    let mut procs = Vec::new();
    for i in 0..s.spec.processors {
        let port = child::free_port()?;
        let n = i + 1;
        let (group, out) = (
            format!("{}-group", s.topic),
            dir.join(format!("processor-{n}")),
        );
        let mut argv = child::Member {
            bootstrap: s.bootstrap,
            topic: s.topic,
            group: &group,
            sink_url,
            port,
            out: &out,
        }
        .argv();
        argv.extend([
            "--report".into(),
            dir.join(format!("processor-{n}.json"))
                .display()
                .to_string(),
        ]);
        argv.extend(s.flags.iter().cloned());
        let child = child::spawn(&argv, &dir.join(format!("processor-{n}.log")))?;
        procs.push((child, format!("http://127.0.0.1:{port}")));
    }
    Ok(procs)
}

/// Reads every processor's `/metrics` once a second for `duration`.
async fn watch(procs: &Processors, duration: Duration) -> anyhow::Result<Vec<Vec<Reading>>> {
    let clients: Vec<sinkd::SinkClient> = procs
        .iter()
        .map(|(_, url)| sinkd::SinkClient::new(url))
        .collect::<Result<_, _>>()?;
    let started = Instant::now();
    let mut readings: Vec<Vec<Reading>> = vec![Vec::new(); procs.len()];
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    while started.elapsed() < duration {
        tick.tick().await;
        let t = started.elapsed().as_secs_f64();
        for (i, c) in clients.iter().enumerate() {
            let Ok(text) = c.metrics().await else {
                continue;
            };
            let m = |name| crate::telemetry::scrape(&text, name);
            readings[i].push(Reading {
                t,
                assigned: m("kafka_consumer_assigned_partitions"),
                lag: m("kafka_consumergroup_lag"),
                evictions: m("kafka_consumer_evictions_total"),
                rebalances: m("kafka_consumer_rebalances_total"),
                stalled: m("kafka_consumer_stalled_partitions"),
            });
        }
    }
    Ok(readings)
}

/// Starts the topic's backlog and the steady producer; returns the producer and the two
/// reports that will say how much they sent.
async fn start_load(
    s: &Setting<'_>,
    dir: &Path,
) -> anyhow::Result<(Child, [std::path::PathBuf; 2])> {
    super::super::create_topic(s.bootstrap, s.topic, s.spec.partitions, 1).await?;
    let backlog_rate = 20_000.0f64;
    let backlog_report = dir.join("backlog-producer.json");
    let argv = produce_argv(
        s,
        backlog_rate,
        s.spec.backlog as f64 / backlog_rate,
        (1, 0),
        &backlog_report,
    );
    let out = child::output(&argv).await?;
    if !out.status.success() {
        bail!(
            "the backlog producer failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let steady_report = dir.join("producer.json");
    let argv = produce_argv(
        s,
        s.spec.produce_rate,
        s.duration.as_secs_f64(),
        (2, s.spec.backlog),
        &steady_report,
    );
    let producer = child::spawn(&argv, &dir.join("producer.log"))?;
    Ok((producer, [backlog_report, steady_report]))
}

/// One run, from the empty topic to the audit.
pub async fn run_one(s: &Setting<'_>, dir: &Path) -> anyhow::Result<EvictionResult> {
    // The slow sink, shared by every processor.
    let config = sinkd::Config {
        listen: "127.0.0.1:0".parse()?,
        rate: Some(s.spec.sink_rate),
        burst: (s.spec.sink_rate / 10.0).max(1.0),
        max_held: 100_000,
        ..sinkd::Config::default()
    };
    let sink = sinkd::start(config).await.context("cannot start sinkd")?;
    let http = sinkd::SinkClient::new(&sink.url())?;
    let (mut producer, reports) = start_load(s, dir).await?;
    let mut procs = start_processors(s, &sink.url(), dir)?;
    let readings = watch(&procs, s.duration).await?;
    let _ = producer.wait().await;
    let produced: u64 = reports.iter().map(|r| report_field(r, "sent")).sum();
    // Let the group finish the backlog (at most a minute), then stop it.
    let drain_until = Instant::now() + Duration::from_secs(60);
    while Instant::now() < drain_until {
        match http.stats(None).await {
            Ok(a) if a.distinct_ids >= produced => break,
            _ => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
    // SIGTERM: each finishes what is in flight, commits and leaves.
    for (child, _) in &mut procs {
        child::terminate(child, Duration::from_secs(30)).await;
    }
    let audit = http
        .stats(None)
        .await
        .context("cannot read sinkd's audit")?;
    sink.shutdown().await;
    write_charts(dir, s.label, &readings)?;
    std::fs::write(dir.join("readings.json"), serde_json::to_string(&readings)?)?;
    let processor_sum = |field: &str| -> u64 {
        (1..=procs.len())
            .map(|n| report_field(&dir.join(format!("processor-{n}.json")), field))
            .sum()
    };
    let mut r = analyse(s.label, &readings, produced, &audit);
    r.revoked_unsent = processor_sum("revoked_unsent");
    r.revoked_in_flight = processor_sum("revoked_in_flight");
    r.stalls = processor_sum("stalls");
    r.stall_recoveries = processor_sum("stall_recoveries");
    Ok(r)
}

/// The run's outcome from its readings and sinkd's audit.
fn analyse(
    label: &str,
    readings: &[Vec<Reading>],
    produced: u64,
    audit: &sinkd::Stats,
) -> EvictionResult {
    let last =
        |f: fn(&Reading) -> f64| -> f64 { readings.iter().map(|r| r.last().map_or(0.0, f)).sum() };
    let n = readings.iter().map(Vec::len).max().unwrap_or(0);
    let lag_total = (0..n).map(|k| {
        readings
            .iter()
            .filter_map(|r| r.get(k))
            .map(|r| r.lag)
            .sum::<f64>()
    });
    // Who was evicted first, and when.
    let first = readings
        .iter()
        .enumerate()
        .filter_map(|(i, r)| r.iter().find(|x| x.evictions > 0.0).map(|x| (i, x.t)))
        .min_by(|a, b| a.1.total_cmp(&b.1));
    let survivor_lag_peak = first.map_or(0.0, |(victim, t0)| {
        readings
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != victim)
            .flat_map(|(_, r)| r.iter())
            .filter(|x| x.t >= t0 && x.t <= t0 + 20.0)
            .map(|x| x.lag)
            .fold(0.0, f64::max)
    });
    EvictionResult {
        label: label.to_string(),
        evictions: last(|r| r.evictions) as u64,
        rebalances: last(|r| r.rebalances) as u64,
        produced,
        distinct: audit.distinct_ids,
        duplicates: audit.duplicates,
        missing: produced.saturating_sub(audit.distinct_ids),
        lag_max: lag_total.fold(0.0, f64::max),
        survivor_lag_peak,
        first_eviction_s: first.map(|f| f.1),
        revoked_unsent: 0,
        revoked_in_flight: 0,
        stalls: 0,
        stall_recoveries: 0,
        stalled_at_end: last(|r| r.stalled) as u64,
    }
}
