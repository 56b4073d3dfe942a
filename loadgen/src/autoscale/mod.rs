//! `loadgen autoscale`: lag-driven scale-out on the engine users already scale with, Kafka
//! consumer groups. It supervises `loadgen process --source kafka` members of one group on this
//! machine, reads the group's lag from the broker once a second, and adds or removes one member
//! at a time by the [`policy`]: never more members than partitions, never two changes within the
//! cool-down. Each change is reported with its cost, read off the broker and sinkd: the seconds
//! of reduced throughput after it (the rebalance stops the group) and the duplicates it caused.
//!
//! With `--step RATE@DURATION,...` it is also the experiment: a broker (tansu on loopback unless
//! `--bootstrap-servers`), producers at each rate in turn, and a sinkd whose capacity grows with
//! the members (no rate limit, a fixed latency per write: each member's writers are the limit).

pub mod policy;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::process::Child;
use tokio::time::Instant;

use crate::chart::{Chart, Series};
use crate::child;
use crate::cli::AutoscaleArgs;
use crate::kafka::group_lag::LagReader;
use crate::schedule::Schedule;
use policy::{Decision, Reading, Rule, Scaler};

/// The members, in the order they were started.
struct Members<'a> {
    args: &'a AutoscaleArgs,
    bootstrap: &'a str,
    sink_url: &'a str,
    out: &'a Path,
    started: usize,
    /// Each running member and its metrics port.
    running: Vec<(Child, u16)>,
}

impl Members<'_> {
    fn add(&mut self) -> anyhow::Result<()> {
        self.started += 1;
        let n = self.started;
        let port = child::free_port()?;
        let a = self.args;
        let out = self.out.join(format!("member-{n}"));
        let mut argv = child::Member {
            bootstrap: self.bootstrap,
            topic: &a.topic,
            group: &a.group,
            sink_url: self.sink_url,
            port,
            out: &out,
        }
        .argv();
        argv.extend(a.member_flags.iter().cloned());
        let log = self.out.join(format!("member-{n}.log"));
        self.running.push((child::spawn(&argv, &log)?, port));
        Ok(())
    }

    /// Waits until the first member owns a partition.
    async fn joined(&mut self) -> anyhow::Result<()> {
        let log = self.out.join("member-1.log");
        match self.running.first_mut() {
            Some((c, port)) => child::joined(*port, c, &log).await,
            None => Ok(()),
        }
    }

    /// Stops the newest member: SIGTERM, so it commits and leaves the group.
    async fn remove(&mut self) {
        if let Some((mut c, _)) = self.running.pop() {
            child::terminate(&mut c, Duration::from_secs(30)).await;
        }
    }

    async fn stop_all(&mut self) {
        while !self.running.is_empty() {
            self.remove().await;
        }
    }
}

/// The sink the members write to: `--sink-url`, or a sinkd started here whose capacity grows
/// with the members.
async fn start_sink(
    args: &AutoscaleArgs,
) -> anyhow::Result<(Option<sinkd::Running>, String, sinkd::SinkClient)> {
    if let Some(url) = &args.sink_url {
        return Ok((None, url.clone(), sinkd::SinkClient::new(url)?));
    }
    let config = sinkd::Config {
        listen: "127.0.0.1:0".parse()?,
        rate: None,
        latency: args.sink_latency,
        max_held: 100_000,
        ..sinkd::Config::default()
    };
    let running = sinkd::start(config).await.context("cannot start sinkd")?;
    let url = running.url();
    let client = sinkd::SinkClient::new(&url)?;
    Ok((Some(running), url, client))
}

/// Produces each segment of `step` in turn, ids kept distinct across them.
async fn produce_steps(bootstrap: String, topic: String, step: Schedule, out: PathBuf) {
    let mut first_id = 0u64;
    for (i, s) in step.segments.iter().enumerate() {
        let secs = s.duration.as_secs_f64();
        let report = out.join(format!("producer-{}.json", i + 1));
        let argv = child::Producer {
            bootstrap: &bootstrap,
            topic: &topic,
            rate: s.rate,
            secs,
            seed: i as u64 + 1,
            first_id,
            report: &report,
        }
        .argv();
        first_id += (s.rate * secs).ceil() as u64 + 1;
        match child::spawn(&argv, &out.join(format!("producer-{}.log", i + 1))) {
            Ok(mut c) => {
                let _ = c.wait().await;
            }
            Err(e) => eprintln!("loadgen autoscale: cannot start a producer: {e:#}"),
        }
    }
}

/// The rule from the flags, bounded by the partition count.
fn rule(args: &AutoscaleArgs) -> anyhow::Result<Rule> {
    let partitions = usize::try_from(args.partitions)
        .ok()
        .filter(|p| *p >= 1)
        .with_context(|| {
            format!(
                "invalid value '{}' for '--partitions': at least 1",
                args.partitions
            )
        })?;
    let max = args.max_members.unwrap_or(partitions).min(partitions);
    if args.min_members == 0 || args.min_members > max {
        bail!(
            "invalid value '{}' for '--min-members': from 1 to {max} (the most members, at most the partition count)",
            args.min_members
        );
    }
    Ok(Rule {
        window_s: args.window.as_secs_f64(),
        cooldown_s: args.cooldown.as_secs_f64(),
        scale_up_lag: args.scale_up_lag,
        idle_lag: args.idle_lag,
        min: args.min_members,
        max,
    })
}

/// Runs the supervisor until `--stop-after` (or the end of `--step` and a minute) or Ctrl-C.
pub async fn run(args: AutoscaleArgs) -> anyhow::Result<ExitCode> {
    let rule = rule(&args)?;
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from("out/autoscale"));
    std::fs::create_dir_all(&out).with_context(|| format!("cannot create {}", out.display()))?;
    let (_broker, bootstrap) = crate::kafka::broker(args.bootstrap_servers.as_deref())?;
    crate::kafka::create_topic(&bootstrap, &args.topic, args.partitions, 1).await?;
    let (sink, sink_url, client) = start_sink(&args).await?;
    let mut members = Members {
        args: &args,
        bootstrap: &bootstrap,
        sink_url: &sink_url,
        out: &out,
        started: 0,
        running: Vec::new(),
    };
    for _ in 0..rule.min {
        members.add()?;
    }
    members.joined().await?;
    let stop_after = args.stop_after.or_else(|| {
        args.step
            .as_ref()
            .map(|s| s.total() + Duration::from_secs(60))
    });
    if let Some(step) = args.step.clone() {
        tokio::spawn(produce_steps(
            bootstrap.clone(),
            args.topic.clone(),
            step,
            out.clone(),
        ));
    }
    let reader = LagReader::new(&bootstrap, &args.group, &args.topic, args.partitions)?;
    println!(
        "loadgen autoscale: group {} on {} ({} partitions), {} to {} members; lag from the broker every second",
        args.group, args.topic, args.partitions, rule.min, rule.max
    );
    let watched = watch(&mut members, &reader, &client, rule, stop_after).await;
    members.stop_all().await;
    if let Some(s) = sink {
        s.shutdown().await;
    }
    let (readings, decisions) = watched?;
    report(&out, &readings, &decisions, rule.cooldown_s)?;
    Ok(ExitCode::SUCCESS)
}

/// The span the rates are measured over, seconds.
const RATE_SPAN_S: f64 = 5.0;

/// The loop: a reading a second, a decision when the rule says so.
async fn watch(
    members: &mut Members<'_>,
    reader: &LagReader,
    client: &sinkd::SinkClient,
    rule: Rule,
    stop_after: Option<Duration>,
) -> anyhow::Result<(Vec<Reading>, Vec<Decision>)> {
    let started = Instant::now();
    let mut scaler = Scaler::new(rule);
    let (mut readings, mut decisions) = (Vec::<Reading>::new(), Vec::new());
    // (t, log-end, committed) over the last RATE_SPAN seconds: commits land in steps of a
    // commit interval, and a reading can take a while on a busy broker, so a rate over one
    // second would be all spikes.
    let mut history: std::collections::VecDeque<(f64, i64, i64)> = Default::default();
    let mut tick = crate::telemetry::sampling(Duration::from_secs(1));
    let mut interrupt = std::pin::pin!(tokio::signal::ctrl_c());
    while stop_after.is_none_or(|s| started.elapsed() < s) {
        tokio::select! {
            _ = tick.tick() => {}
            _ = &mut interrupt => break,
        }
        let Ok(g) = reader.read().await else { continue };
        let t = started.elapsed().as_secs_f64();
        let committed = g.log_end - g.lag;
        history.push_back((t, g.log_end, committed));
        while history.len() > 2 && history[1].0 <= t - RATE_SPAN_S {
            history.pop_front();
        }
        let (t0, end0, committed0) = history[0];
        let dt = (t - t0).max(1e-9);
        let duplicates = client.stats(None).await.map_or_else(
            |_| readings.last().map_or(0, |r| r.duplicates),
            |s| s.duplicates,
        );
        let lag = g.lag.max(0) as u64;
        readings.push(Reading {
            t,
            members: members.running.len(),
            lag,
            committed_rate: (committed - committed0) as f64 / dt,
            produced_rate: (g.log_end - end0) as f64 / dt,
            duplicates,
        });
        if let Some(d) = scaler.observe(t, lag, members.running.len()) {
            println!(
                "  t={:>5.0}s  {} -> {} members: {}",
                d.t, d.from, d.to, d.reason
            );
            if d.to > d.from {
                members.add()?;
            } else {
                members.remove().await;
            }
            decisions.push(d);
        }
    }
    Ok((readings, decisions))
}

/// A chart: its file, title, y label, and its curves (a name and a reading each).
type ChartSpec = (
    &'static str,
    &'static str,
    &'static str,
    &'static [(&'static str, fn(&Reading) -> f64)],
);

/// The charts: throughput (produced and committed), members, lag and duplicates over time.
fn write_charts(out: &Path, readings: &[Reading]) -> anyhow::Result<()> {
    const CHARTS: [ChartSpec; 3] = [
        (
            "throughput.svg",
            "Throughput recovered as members are added",
            "records/s",
            &[
                ("produced", |r| r.produced_rate),
                ("committed", |r| r.committed_rate),
            ],
        ),
        (
            "members.svg",
            "Members of the group",
            "members",
            &[("members", |r| r.members as f64)],
        ),
        (
            "lag.svg",
            "Lag (broker) and duplicates (sinkd)",
            "records",
            &[
                ("lag", |r| r.lag as f64),
                ("duplicates", |r| r.duplicates as f64),
            ],
        ),
    ];
    for (file, title, y, curves) in CHARTS {
        let series = curves
            .iter()
            .map(|(name, f)| Series {
                name: (*name).into(),
                points: readings.iter().map(|r| (r.t, f(r))).collect(),
            })
            .collect();
        crate::output::write_chart(&out.join(file), &Chart::new(title, "seconds", y, series))?;
    }
    Ok(())
}

/// The table of decisions and their costs, autoscale.json, and the charts.
fn report(
    out: &Path,
    readings: &[Reading],
    decisions: &[Decision],
    span: f64,
) -> anyhow::Result<()> {
    let mut md = String::from(
        "| t s | members | why | throughput before → after, records/s | reduced throughput s | duplicates |\n|---|---|---|---|---|---|\n",
    );
    let mut costs = Vec::new();
    for d in decisions {
        let c = policy::cost(readings, d.t, 5.0, span);
        md.push_str(&format!(
            "| {:.0} | {} → {} | {} | {:.0} → {:.0} | {:.0} | {} |\n",
            d.t, d.from, d.to, d.reason, c.rate_before, c.rate_after, c.reduced_s, c.duplicates
        ));
        costs.push(c);
    }
    println!("\n{md}");
    std::fs::write(out.join("summary.md"), &md)?;
    std::fs::write(
        out.join("autoscale.json"),
        serde_json::to_string_pretty(&serde_json::json!({
            "decisions": decisions,
            "costs": costs,
            "readings": readings,
        }))?,
    )?;
    write_charts(out, readings)?;
    println!(
        "wrote {}/{{summary.md, autoscale.json, throughput.svg, members.svg, lag.svg}}",
        out.display()
    );
    Ok(())
}
