//! A run under `--memory-limit`: its child started under the limit ([`crate::memlimit`]),
//! watched from outside (what the limit counts, every 100 ms), its raw heap dump taken once the
//! count passes 80% of the limit and symbolized after the run ([`super::heap`]), and its end
//! judged. A child that dies leaves no report.json: its result comes from the time series it
//! wrote as it ran, and the watch.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use tokio::time::Instant;

use super::cliff::{Cliff, Profile};
use crate::memlimit::{Limit, Via, fate};
use crate::pipeline::Outcome;
use crate::plan::{Plan, SinkTarget};
use crate::report::Report;

/// Where the profile is taken: this fraction of the limit.
const PROFILE_AT: f64 = 0.8;

/// The run's flags without `--safety-cap`: under a memory limit, the limit ends an unbounded
/// run. Returns whether there was one.
pub(super) fn lift_safety_cap(argv: &[String]) -> (Vec<String>, bool) {
    let mut out = Vec::with_capacity(argv.len());
    let mut lifted = false;
    let mut args = argv.iter();
    while let Some(a) = args.next() {
        if a == "--safety-cap" {
            args.next();
            lifted = true;
        } else if a.starts_with("--safety-cap=") {
            lifted = true;
        } else {
            out.push(a.clone());
        }
    }
    (out, lifted)
}

/// One run under a limit of `bytes` through `via`.
pub(super) struct Run<'a> {
    pub(super) label: &'a str,
    pub(super) argv: &'a [String],
    pub(super) plan: &'a Plan,
    pub(super) dir: &'a Path,
    pub(super) bytes: u64,
    pub(super) via: Via,
}

/// Runs it to its end, whichever end that is.
pub(super) async fn run(r: Run<'_>) -> anyhow::Result<(Outcome, Cliff)> {
    let name = format!(
        "loadgen-{}-{}",
        std::process::id(),
        r.label.replace(' ', "-")
    );
    let limit = Limit::new(r.bytes, r.via, &name)?;
    eprintln!(
        "{}: limit {} MiB by {}",
        r.label,
        r.bytes >> 20,
        limit.mechanism()
    );
    if let Some(why) = &limit.fallback {
        eprintln!("{}: (no cgroup: {why})", r.label);
    }
    std::fs::create_dir_all(r.dir)?;
    // A report left by an earlier run in this folder must not pass for this one's.
    let _ = std::fs::remove_file(r.dir.join("report.json"));
    let addr = free_port()?;
    let stderr = std::fs::File::create(r.dir.join("stderr.log"))?;
    let mut cmd = crate::child::loadgen(r.argv)?;
    cmd.arg("--out")
        .arg(r.dir)
        .arg("--metrics-addr")
        .arg(addr.to_string())
        .arg("--quiet")
        .stdout(std::process::Stdio::null())
        .stderr(stderr)
        .kill_on_drop(true);
    limit.apply(&mut cmd);
    let mut child = cmd.spawn().context("cannot start the run")?;
    let start = Instant::now();
    let pid = child.id().context("the run ended at once")?;
    let mut watch = Watch::default();
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    let status = loop {
        tokio::select! {
            status = child.wait() => break status?,
            _ = tick.tick() => {}
        }
        let Some(usage) = limit.usage(pid) else {
            continue;
        };
        watch.record(
            r.label,
            start.elapsed().as_secs_f64(),
            usage,
            r.bytes,
            addr,
            r.dir,
        );
    };
    let died_at = start.elapsed().as_secs_f64();
    let profile = super::heap::render_dump(watch.profile_result().await, r.dir, r.label).await;
    let tail = stderr_tail(&r.dir.join("stderr.log"));
    let fate = fate::of_status(status, limit.oom_kills(), &tail);
    eprintln!("{}: {fate} after {died_at:.1} s", r.label);
    let outcome = outcome_of(r.dir, fate.died(), died_at)?;
    let mut cliff = Cliff {
        limit_bytes: r.bytes,
        mechanism: limit.mechanism(),
        fallback: limit.fallback.clone(),
        died_at_s: fate.died().then_some(died_at),
        fate,
        peak_usage_bytes: watch.usage.iter().map(|u| u.1).max().unwrap_or(0),
        bytes_per_event: None,
        rate: r.plan.schedule().peak(),
        ceiling: ceiling(r.plan, &outcome),
        predicted_s: None,
        ratio: None,
        profile,
        usage: watch.usage,
    };
    cliff.predict(&outcome.series);
    save(r.dir, &cliff)?;
    Ok((outcome, cliff))
}

/// The watch over a child: what the limit counted, and the profile once it passed 80%.
#[derive(Default)]
struct Watch {
    usage: Vec<(f64, u64)>,
    profile: Option<tokio::task::JoinHandle<anyhow::Result<Profile>>>,
    /// The last fifth of the limit announced.
    announced: u64,
}

impl Watch {
    fn record(
        &mut self,
        label: &str,
        t: f64,
        usage: u64,
        limit: u64,
        addr: SocketAddr,
        dir: &Path,
    ) {
        self.usage.push((t, usage));
        let fifth = usage * 5 / limit.max(1);
        if fifth > self.announced {
            self.announced = fifth;
            eprintln!(
                "{label}: {:.0} MB of {} MiB at {t:.1} s",
                usage as f64 / 1e6,
                limit >> 20
            );
        }
        if self.profile.is_none() && usage as f64 >= PROFILE_AT * limit as f64 {
            eprintln!(
                "{label}: {:.0}% of the limit: taking a heap profile",
                PROFILE_AT * 100.0
            );
            self.profile = Some(tokio::spawn(super::heap::take_profile(
                addr,
                dir.to_path_buf(),
                t,
                usage,
            )));
        }
    }

    async fn profile_result(&mut self) -> Result<Profile, String> {
        match self.profile.take() {
            None => Err(format!(
                "none: the count stayed under {:.0}% of the limit",
                PROFILE_AT * 100.0
            )),
            Some(task) => match task.await {
                Ok(Ok(p)) => Ok(p),
                Ok(Err(e)) => Err(format!("none: {e:#}")),
                Err(e) => Err(format!("none: {e}")),
            },
        }
    }
}

fn free_port() -> anyhow::Result<SocketAddr> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?)
}

/// The last 4 KiB of the child's stderr.
fn stderr_tail(path: &Path) -> String {
    let text = std::fs::read(path).unwrap_or_default();
    String::from_utf8_lossy(&text[text.len().saturating_sub(4096)..]).into_owned()
}

/// The sink's ceiling in events/s: the embedded sink's rate (times the batch), else what was
/// delivered on average.
fn ceiling(plan: &Plan, outcome: &Outcome) -> f64 {
    match plan.sink() {
        SinkTarget::Embedded { rate, .. } if plan.single_writes() => *rate,
        SinkTarget::Embedded { rate, .. } => rate * plan.batch_size() as f64,
        _ => {
            let s = &outcome.series;
            s.iter().map(|x| x.delivered_rate).sum::<f64>() / s.len().max(1) as f64
        }
    }
}

/// What the run left: its report and series when it lived; its series so far when it died,
/// with a report of what the series tells (the rest is unknown and left at zero).
fn outcome_of(dir: &Path, died: bool, died_at: f64) -> anyhow::Result<Outcome> {
    if !died {
        return super::folder::read_back(dir);
    }
    let csv = dir.join("timeseries.csv");
    let text =
        std::fs::read_to_string(&csv).with_context(|| format!("cannot read {}", csv.display()))?;
    let series = crate::telemetry::from_csv(&text)?;
    let report = Report {
        rss_peak_bytes: series.iter().map(|s| s.rss_bytes).max().unwrap_or(0),
        lag_max: series.iter().map(|s| s.lag).max().unwrap_or(0),
        duration_s: died_at,
        bottleneck: "died under the memory limit".into(),
        ..Report::default()
    };
    Ok(Outcome {
        report,
        series,
        latency: crate::sink::histogram(),
    })
}

fn save(dir: &Path, cliff: &Cliff) -> anyhow::Result<()> {
    std::fs::write(dir.join("cliff.json"), serde_json::to_string_pretty(cliff)?)?;
    let mut csv = String::from("t,bytes\n");
    cliff
        .usage
        .iter()
        .for_each(|(t, b)| csv.push_str(&format!("{t:.3},{b}\n")));
    std::fs::write(dir.join("limit-usage.csv"), csv)?;
    Ok(())
}

/// With `--replot`: a limited run read back from its folder (`None`: it ran without a limit).
pub(super) fn read_back(dir: &Path) -> anyhow::Result<Option<(Outcome, Cliff)>> {
    let Ok(text) = std::fs::read_to_string(dir.join("cliff.json")) else {
        return Ok(None);
    };
    let mut cliff: Cliff = serde_json::from_str(&text)?;
    let usage = std::fs::read_to_string(dir.join("limit-usage.csv")).unwrap_or_default();
    cliff.usage = usage
        .lines()
        .skip(1)
        .filter_map(|l| {
            l.split_once(',')
                .and_then(|(t, b)| Some((t.parse().ok()?, b.parse().ok()?)))
        })
        .collect();
    let outcome = outcome_of(
        dir,
        cliff.died_at_s.is_some(),
        cliff.died_at_s.unwrap_or(0.0),
    )?;
    Ok(Some((outcome, cliff)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_safety_cap_is_lifted_in_either_spelling() {
        let argv: Vec<String> = [
            "run",
            "--queue",
            "unbounded",
            "--safety-cap",
            "4000000",
            "--rate",
            "8000",
        ]
        .map(String::from)
        .into();
        let (out, lifted) = lift_safety_cap(&argv);
        assert!(lifted);
        assert_eq!(out, ["run", "--queue", "unbounded", "--rate", "8000"]);
        let (out, lifted) = lift_safety_cap(&["run".into(), "--safety-cap=9".into()]);
        assert!(lifted);
        assert_eq!(out, ["run"]);
        assert!(!lift_safety_cap(&["run".into()]).1);
    }
}
