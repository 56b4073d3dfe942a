//! Experiment 6: a consumer evicted by `max.poll.interval.ms`, then the fix.
//!
//! Each run of the config: a fresh 12-partition topic with a backlog, a producer at a steady
//! rate, three `loadgen process --source kafka` children in one group with the run's flags, and
//! one sinkd they share (the slow sink). Every second the experiment reads each processor's
//! `/metrics`: partitions owned, lag, evictions (counted by the client from its own
//! `MAX_POLL_EXCEEDED` events). At the end: sinkd's audit (duplicates are the replays that
//! evictions cause, missing ids would be loss), one chart per run of partitions per processor
//! and one of lag per processor, and a table.

use std::path::Path;
use std::process::{ExitCode, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use tokio::process::{Child, Command};
use tokio::time::Instant;

use crate::chart::{Chart, Series};
use crate::cli::ExperimentArgs;
use crate::output::write_chart;
use crate::plan::parse_duration;

/// The broker-side setting of an eviction experiment.
#[derive(Debug, Clone, Deserialize)]
pub struct KafkaSpec {
    /// Partitions of the topic.
    pub partitions: i32,
    /// Processor processes in the group.
    pub processors: usize,
    /// sinkd's limit, writes/s, shared by all processors.
    pub sink_rate: f64,
    /// Records produced before the processors start.
    pub backlog: u64,
    /// The producer's steady rate while the run lasts, events/s.
    pub produce_rate: f64,
    /// How long each run lasts (scaled by --time-scale).
    pub duration: String,
}

/// One run's outcome.
#[derive(Debug, Serialize)]
pub struct EvictionResult {
    pub label: String,
    pub evictions: u64,
    pub rebalances: u64,
    pub produced: u64,
    pub distinct: u64,
    pub duplicates: u64,
    /// Produced ids sinkd does not have when the run stops (after up to a minute of drain):
    /// lost, or still in Kafka as lag.
    pub missing: u64,
    pub lag_max: f64,
    /// Highest lag seen on a processor other than the one evicted first, in the 20 s after
    /// the first eviction (the survivors' spike); 0 without an eviction.
    pub survivor_lag_peak: f64,
    pub first_eviction_s: Option<f64>,
}

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
struct Reading {
    t: f64,
    assigned: f64,
    lag: f64,
    evictions: f64,
    rebalances: f64,
}

/// Draws the run's charts from its readings: partitions, lag and evictions per processor.
fn write_charts(dir: &Path, label: &str, readings: &[Vec<Reading>]) -> anyhow::Result<()> {
    let series = |f: fn(&Reading) -> f64| -> Vec<Series> {
        readings
            .iter()
            .enumerate()
            .map(|(i, r)| Series {
                name: format!("processor {}", i + 1),
                points: r.iter().map(|x| (x.t, f(x))).collect(),
            })
            .collect()
    };
    let charts: [ChartSpec; 3] = [
        (
            "partitions.svg",
            "partitions owned per processor",
            "partitions",
            |r| r.assigned,
        ),
        (
            "lag.svg",
            "consumer-group lag per processor",
            "events",
            |r| r.lag,
        ),
        (
            "evictions.svg",
            "evictions so far, per processor",
            "evictions",
            |r| r.evictions,
        ),
    ];
    for (file, what, y_label, f) in charts {
        write_chart(
            &dir.join(file),
            &Chart::new(format!("{label}: {what}"), "seconds", y_label, series(f)),
        )?;
    }
    Ok(())
}

/// `--replot`: redraws every run's charts from the readings a previous run left in `out`.
pub fn replot(runs: &[(String, Vec<String>)], out: &Path) -> anyhow::Result<ExitCode> {
    for (i, (label, _)) in runs.iter().enumerate() {
        let dir = out.join(format!("run-{}", i + 1));
        let path = dir.join("readings.json");
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}: run the experiment first", path.display()))?;
        let readings: Vec<Vec<Reading>> =
            serde_json::from_str(&text).with_context(|| format!("invalid {}", path.display()))?;
        write_charts(&dir, label, &readings)?;
    }
    if let Ok(md) = std::fs::read_to_string(out.join("summary.md")) {
        println!("{md}");
    }
    println!(
        "redrew {}/run-*/{{partitions,lag,evictions}}.svg",
        out.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// A chart of one reading per processor: file, what it shows, y label, the reading.
type ChartSpec = (
    &'static str,
    &'static str,
    &'static str,
    fn(&Reading) -> f64,
);

/// `loadgen produce` to `topic` at `rate` for `secs`, with a seed and first id, reporting to
/// `report`.
fn produce_argv(
    bootstrap: &str,
    topic: &str,
    rate: f64,
    secs: f64,
    (seed, first_id): (u64, u64),
    report: &Path,
) -> Vec<String> {
    [
        "produce",
        "--quiet",
        "--bootstrap-servers",
        bootstrap,
        "--topic",
        topic,
    ]
    .into_iter()
    .map(String::from)
    .chain([
        "--rate".into(),
        rate.to_string(),
        "--duration".into(),
        format!("{secs}s"),
        "--seed".into(),
        seed.to_string(),
        "--first-id".into(),
        first_id.to_string(),
        "--report".into(),
        report.display().to_string(),
    ])
    .collect()
}

/// Events a producer's report says it sent (0 without a report).
fn sent(report: &Path) -> u64 {
    std::fs::read_to_string(report)
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .and_then(|v| v["sent"].as_u64())
        .unwrap_or(0)
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit_once(' '))
        .filter(|(k, _)| k.split('{').next() == Some(name))
        .filter_map(|(_, v)| v.parse::<f64>().ok())
        .sum()
}

async fn loadgen(args: &[String]) -> anyhow::Result<std::process::Output> {
    let exe = std::env::current_exe().context("cannot find the loadgen executable")?;
    Command::new(exe)
        .args(args)
        .output()
        .await
        .context("cannot run loadgen")
}

fn spawn_loadgen(args: &[String], log: &Path) -> anyhow::Result<Child> {
    let exe = std::env::current_exe().context("cannot find the loadgen executable")?;
    let file =
        std::fs::File::create(log).with_context(|| format!("cannot create {}", log.display()))?;
    Command::new(exe)
        .args(args)
        .stdin(Stdio::null())
        .stdout(file.try_clone()?)
        .stderr(file)
        .kill_on_drop(true)
        .spawn()
        .context("cannot start loadgen")
}

#[allow(clippy::too_many_arguments)]
pub async fn run(
    name: &str,
    title: &str,
    question: &str,
    runs: &[(String, Vec<String>)],
    spec: &KafkaSpec,
    args: &ExperimentArgs,
    out: &Path,
) -> anyhow::Result<ExitCode> {
    let duration = parse_duration(&spec.duration)
        .with_context(|| format!("config {name}: invalid duration '{}'", spec.duration))?
        .mul_f64(args.time_scale);
    println!(
        "{name}: {title}\n{question}\n(time scale {}: {:.0}s per run)\n",
        args.time_scale,
        duration.as_secs_f64()
    );
    for (label, flags) in runs {
        println!(
            "run '{label}': {} processors, loadgen process {}",
            spec.processors,
            flags.join(" ")
        );
    }
    if args.dry_run {
        return Ok(ExitCode::SUCCESS);
    }
    // The broker: the one named, or a tansu of our own on loopback.
    let (_broker, bootstrap) = match &args.bootstrap_servers {
        Some(b) => (None, b.clone()),
        None => {
            let broker = testbroker::Broker::try_start().map_err(anyhow::Error::msg)?;
            let b = broker.bootstrap();
            println!("started tansu on {b}");
            (Some(broker), b)
        }
    };
    let stamp = std::process::id();
    let mut results = Vec::new();
    for (i, (label, flags)) in runs.iter().enumerate() {
        let dir = out.join(format!("run-{}", i + 1));
        std::fs::create_dir_all(&dir)?;
        let topic = format!("exp6-{stamp}-{}", i + 1);
        let result = run_one(label, flags, spec, &bootstrap, &topic, duration, &dir).await?;
        println!(
            "  {label}: evictions {}, rebalances {}, duplicates {}, missing {}, max lag {:.0}",
            result.evictions, result.rebalances, result.duplicates, result.missing, result.lag_max
        );
        results.push(result);
    }

    let mut md = format!(
        "# {title}\n\n{question}\n\n| run | evictions | rebalances | duplicates | undelivered at stop | max lag | survivors' lag peak |\n|---|---|---|---|---|---|---|\n"
    );
    for r in &results {
        md.push_str(&format!(
            "| {} | {} | {} | {} | {} | {:.0} | {:.0} |\n",
            r.label,
            r.evictions,
            r.rebalances,
            r.duplicates,
            r.missing,
            r.lag_max,
            r.survivor_lag_peak
        ));
    }
    std::fs::write(out.join("summary.md"), &md)?;
    std::fs::write(
        out.join("experiment.json"),
        serde_json::to_string_pretty(&results)?,
    )?;
    println!(
        "\n{md}\nwrote {}/{{summary.md, experiment.json, run-*/}}",
        out.display()
    );
    let fixed_clean = results
        .last()
        .is_some_and(|r| r.evictions == 0 && r.missing == 0);
    Ok(if fixed_clean {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

async fn run_one(
    label: &str,
    flags: &[String],
    spec: &KafkaSpec,
    bootstrap: &str,
    topic: &str,
    duration: Duration,
    dir: &Path,
) -> anyhow::Result<EvictionResult> {
    super::create_topic(bootstrap, topic, spec.partitions, 1).await?;
    // The slow sink, shared by every processor.
    let config = sinkd::Config {
        listen: "127.0.0.1:0".parse()?,
        rate: Some(spec.sink_rate),
        burst: (spec.sink_rate / 10.0).max(1.0),
        max_held: 100_000,
        ..sinkd::Config::default()
    };
    let sink = sinkd::start(config).await.context("cannot start sinkd")?;
    let sink_url = sink.url();

    // The backlog, then a steady producer; each reports what it sent.
    let s = |x: &str| x.to_string();
    let backlog_rate = 20_000.0f64;
    let backlog_report = dir.join("backlog-producer.json");
    let out = loadgen(&produce_argv(
        bootstrap,
        topic,
        backlog_rate,
        spec.backlog as f64 / backlog_rate,
        (1, 0),
        &backlog_report,
    ))
    .await?;
    if !out.status.success() {
        bail!(
            "the backlog producer failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let steady_report = dir.join("producer.json");
    let mut producer = spawn_loadgen(
        &produce_argv(
            bootstrap,
            topic,
            spec.produce_rate,
            duration.as_secs_f64(),
            (2, spec.backlog),
            &steady_report,
        ),
        &dir.join("producer.log"),
    )?;

    let mut procs = Vec::new();
    for i in 0..spec.processors {
        let port = free_port()?;
        let mut argv = vec![
            s("process"),
            s("--quiet"),
            s("--bootstrap-servers"),
            s(bootstrap),
            s("--topic"),
            s(topic),
            s("--group"),
            format!("{topic}-group"),
            s("--sink-url"),
            sink_url.clone(),
            s("--metrics-addr"),
            format!("127.0.0.1:{port}"),
            s("--out"),
            dir.join(format!("processor-{}", i + 1))
                .display()
                .to_string(),
            s("--report"),
            dir.join(format!("processor-{}.json", i + 1))
                .display()
                .to_string(),
        ];
        argv.extend(flags.iter().cloned());
        let child = spawn_loadgen(&argv, &dir.join(format!("processor-{}.log", i + 1)))?;
        procs.push((child, format!("http://127.0.0.1:{port}")));
    }

    // Read every processor's /metrics once a second.
    let http = sinkd::SinkClient::new(&sink_url)?;
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
            let text = match c.metrics().await {
                Ok(text) => text,
                Err(_) => continue,
            };
            readings[i].push(Reading {
                t,
                assigned: metric(&text, "kafka_consumer_assigned_partitions"),
                lag: metric(&text, "kafka_consumergroup_lag"),
                evictions: metric(&text, "kafka_consumer_evictions_total"),
                rebalances: metric(&text, "kafka_consumer_rebalances_total"),
            });
        }
    }
    let _ = producer.wait().await;
    let produced = sent(&backlog_report) + sent(&steady_report);
    // Let the group finish the backlog (at most a minute), then stop it.
    let drain_until = Instant::now() + Duration::from_secs(60);
    while Instant::now() < drain_until {
        match http.stats(None).await {
            Ok(a) if a.distinct_ids >= produced => break,
            _ => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
    // Stop the processors (SIGTERM: they finish what is in flight and commit).
    for (child, _) in &mut procs {
        if let Some(pid) = child.id() {
            let _ = Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status()
                .await;
        }
    }
    for (child, _) in &mut procs {
        if tokio::time::timeout(Duration::from_secs(30), child.wait())
            .await
            .is_err()
        {
            let _ = child.kill().await;
        }
    }
    let audit = http
        .stats(None)
        .await
        .context("cannot read sinkd's audit")?;
    sink.shutdown().await;

    let last = |i: usize, f: fn(&Reading) -> f64| readings[i].last().map_or(0.0, f);
    let evictions: f64 = (0..procs.len()).map(|i| last(i, |r| r.evictions)).sum();
    let rebalances: f64 = (0..procs.len()).map(|i| last(i, |r| r.rebalances)).sum();
    let lag_total: Vec<f64> = {
        let n = readings.iter().map(Vec::len).max().unwrap_or(0);
        (0..n)
            .map(|k| {
                readings
                    .iter()
                    .filter_map(|r| r.get(k))
                    .map(|r| r.lag)
                    .sum()
            })
            .collect()
    };
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

    write_charts(dir, label, &readings)?;
    std::fs::write(dir.join("readings.json"), serde_json::to_string(&readings)?)?;
    Ok(EvictionResult {
        label: label.to_string(),
        evictions: evictions as u64,
        rebalances: rebalances as u64,
        produced,
        distinct: audit.distinct_ids,
        duplicates: audit.duplicates,
        missing: produced.saturating_sub(audit.distinct_ids),
        lag_max: lag_total.iter().copied().fold(0.0, f64::max),
        survivor_lag_peak,
        first_eviction_s: first.map(|f| f.1),
    })
}
