//! The validated plan: what will run. Flags arrive typed from [`crate::cli`]; [`Plan::from_args`]
//! checks how they combine (every error names the flags at fault) and turns them into the
//! library's own terms (a queue [`Mode`] and [`Overflow`], a worker [`Partitioning`]). Only
//! `from_args` builds a plan, and nothing changes it after.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::bail;
use reactive::flow::{Controller, LimitConfig};
use reactive::queue::{Mode, Overflow};
use reactive::sink::{Batching, Partitioning, WorkersConfig};

use crate::cli::{
    self, Backpressure, BatchSize, Concurrency, OnLimit, Policy, QueueKind, RunArgs, Shed, SinkMode,
};
use crate::generator::EventShape;
use crate::schedule::Schedule;
use crate::schedule::secs;

/// Where the events go.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum SinkTarget {
    /// A sinkd started in this process on loopback.
    Embedded {
        rate: f64,
        on_limit: OnLimit,
        #[serde(with = "secs")]
        latency: Duration,
        stall: Option<Stall>,
    },
    /// A sinkd elsewhere.
    External { url: String },
    /// Nowhere: events are discarded in-process.
    Null,
}

/// Where and how a `--queue spill` queue spills.
#[derive(Debug, Clone)]
pub struct SpillPlan {
    pub dir: PathBuf,
    pub max_bytes: u64,
    pub fsync: reactive::spill::Fsync,
}

#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Stall {
    #[serde(with = "secs")]
    pub at: Duration,
    #[serde(with = "secs")]
    pub duration: Duration,
    pub rate: f64,
}

/// Everything one pipeline run needs, validated. Read it through its methods.
#[derive(Debug, Clone)]
pub struct Plan {
    schedule: Schedule,
    shape: EventShape,
    queue: Mode,
    overflow: Overflow,
    spill: Option<SpillPlan>,
    slow_source: bool,
    /// Each event its own write (`--sink-mode single`).
    single: bool,
    /// Writes only against sinkd's credit (`--sink-on-limit credit`).
    credit: bool,
    /// The most events per write: 1 with single writes.
    batch_size: usize,
    batch_linger: Duration,
    /// Whether batch sizes are chosen as the run goes (`--batch-size auto`).
    adaptive: bool,
    workers: WorkersConfig,
    sink: SinkTarget,
    /// With an adaptive `--concurrency`: the limiter's set-up (its max is `--sink-workers`).
    concurrency: Option<LimitConfig>,
    backpressure_on: Vec<Backpressure>,
    attempt_timeout: Option<Duration>,
    max_attempts: u32,
    drain_timeout: Duration,
    sample: Duration,
    report: Option<PathBuf>,
    out: Option<PathBuf>,
    quiet: bool,
}

fn scale_count(n: usize, scale: f64) -> usize {
    if scale == 1.0 {
        n
    } else {
        ((n as f64 * scale).round() as usize).max(16)
    }
}

/// The queue's mode and overflow from the flags, checking how they combine.
fn queue_of(a: &RunArgs) -> anyhow::Result<(Mode, Overflow)> {
    let scale = a.time_scale;
    if a.policy == Policy::Shed && a.queue != QueueKind::Bounded {
        bail!(
            "'--policy shed' needs '--queue bounded' (a queue must be full before anything is shed)"
        );
    }
    if a.policy == Policy::SlowSource && a.queue != QueueKind::Bounded {
        bail!("'--policy slow-source' needs '--queue bounded' (its fill is the pressure signal)");
    }
    // Capacities scale with time: a compressed run's queue fills at the same point of its
    // schedule as the full run's would.
    let mode = match a.queue {
        QueueKind::Bounded => Mode::Bounded(scale_count(a.queue_cap, scale)),
        QueueKind::Unbounded => Mode::Unbounded {
            safety_cap: a.safety_cap.map(|c| scale_count(c, scale)),
        },
        QueueKind::Pull => Mode::Pull,
        // The memory half of the spill queue.
        QueueKind::Spill => Mode::Bounded(scale_count(a.queue_cap, scale)),
    };
    let overflow = match (a.policy, a.shed) {
        (Policy::Shed, Shed::DropNewest) => Overflow::DropNewest,
        (Policy::Shed, Shed::DropOldest) => Overflow::DropOldest,
        (Policy::Shed, Shed::Priority) => Overflow::Priority {
            thresholds: vec![0.5, 0.7, 0.9],
        },
        _ => Overflow::Block,
    };
    Ok((mode, overflow))
}

/// The spill from the flags: `--spill-*` only with `--queue spill`, and a directory for it.
fn spill_of(a: &RunArgs) -> anyhow::Result<Option<SpillPlan>> {
    if a.queue != QueueKind::Spill {
        if a.spill_dir.is_some() {
            bail!("'--spill-dir' needs '--queue spill'");
        }
        return Ok(None);
    }
    if a.policy != Policy::Buffer {
        bail!(
            "'--queue spill' needs '--policy buffer' (a spill neither sheds nor slows the source until its disk is full)"
        );
    }
    let dir = match (&a.spill_dir, &a.out) {
        (Some(dir), _) => dir.clone(),
        (None, Some(out)) => out.join("spill"),
        (None, None) => PathBuf::from("out/spill"),
    };
    // The budget scales with time, like the queue's capacity.
    let max_bytes = if a.time_scale == 1.0 {
        a.spill_max
    } else {
        (a.spill_max as f64 * a.time_scale) as u64
    };
    if max_bytes < 64 << 10 {
        bail!(
            "invalid value for '--spill-max': at least 64KiB after --time-scale (a quarter of it is the largest event)"
        );
    }
    Ok(Some(SpillPlan {
        dir,
        max_bytes,
        fsync: a.spill_fsync,
    }))
}

/// The most an adaptive batch takes when `--batch-max` is not given.
const BATCH_MAX: usize = 1000;

/// How the workers batch, from the flags: one event per write unless `--sink-mode batch`.
fn batching_of(a: &RunArgs) -> anyhow::Result<Batching> {
    if a.batch_max.is_some() && a.batch_size != BatchSize::Auto {
        bail!("'--batch-max' applies to '--batch-size auto' only (a fixed size is its own max)");
    }
    if a.sink_mode != SinkMode::Batch {
        return Ok(Batching::default());
    }
    Ok(match a.batch_size {
        BatchSize::Fixed(size) => Batching::Fixed {
            size,
            linger: a.batch_linger,
        },
        BatchSize::Auto => Batching::Adaptive {
            max: a.batch_max.unwrap_or(BATCH_MAX),
            linger: a.batch_linger,
        },
    })
}

/// The sink from the flags.
fn sink_of(a: &RunArgs) -> anyhow::Result<SinkTarget> {
    if a.null_sink {
        return Ok(SinkTarget::Null);
    }
    if let Some(url) = &a.sink_url {
        sinkd::SinkClient::new(url)
            .map_err(|e| anyhow::anyhow!("invalid value '{url}' for '--sink-url': {e}"))?;
        return Ok(SinkTarget::External { url: url.clone() });
    }
    let stall = match (a.stall_at, a.stall_rate) {
        (Some(at), Some(rate)) => Some(Stall {
            at: at.mul_f64(a.time_scale),
            duration: a.stall_for.mul_f64(a.time_scale),
            rate,
        }),
        _ => None,
    };
    Ok(SinkTarget::Embedded {
        rate: a.sink_rate,
        on_limit: a.sink_on_limit,
        latency: a.sink_latency,
        stall,
    })
}

/// The concurrency limiter from the flags: none for `--concurrency fixed`.
fn concurrency_of(a: &RunArgs) -> Option<LimitConfig> {
    let controller = match a.concurrency {
        Concurrency::Fixed => return None,
        Concurrency::Adaptive => Controller::Adaptive,
        Concurrency::Arc => Controller::Arc,
    };
    Some(LimitConfig::new(controller, a.sink_workers))
}

impl Plan {
    /// Validates the flags as a whole and builds the plan.
    ///
    /// # Errors
    /// When flags do not go together (each message names them), or the schedule is empty.
    pub fn from_args(a: &RunArgs) -> anyhow::Result<Plan> {
        let schedule = match &a.schedule {
            Some(s) => s.clone(),
            None => Schedule::from_profile(a.profile, a.rate, a.baseline, a.duration),
        }
        .scaled(a.time_scale);
        if schedule.total().is_zero() {
            bail!("invalid value for '--duration': the run must last more than 0 s");
        }
        let (queue, overflow) = queue_of(a)?;
        let batching = batching_of(a)?;
        let batch = a.sink_mode == SinkMode::Batch;
        let batch_linger = if batch {
            a.batch_linger
        } else {
            Duration::ZERO
        };
        Ok(Plan {
            schedule,
            shape: EventShape {
                seed: a.seed,
                keys: a.keys.max(1),
                msg_size: a.msg_size,
            },
            queue,
            overflow,
            spill: spill_of(a)?,
            slow_source: a.policy == Policy::SlowSource,
            single: !batch,
            credit: a.sink_on_limit == OnLimit::Credit,
            batch_size: batching.max(),
            batch_linger,
            adaptive: matches!(batching, Batching::Adaptive { .. }),
            workers: WorkersConfig {
                workers: a.sink_workers,
                window: a.worker_window,
                partitioning: match a.partitioning {
                    cli::Partitioning::RoundRobin => Partitioning::RoundRobin,
                    cli::Partitioning::Key => Partitioning::Key,
                },
                batching,
            },
            sink: sink_of(a)?,
            concurrency: concurrency_of(a),
            backpressure_on: a.backpressure_on.clone(),
            attempt_timeout: a.attempt_timeout.map(|t| t.max(Duration::from_millis(1))),
            max_attempts: a.max_attempts,
            // Not scaled: draining is about the queue's size, not the schedule's shape.
            drain_timeout: a.drain_timeout,
            sample: a.sample.max(Duration::from_millis(10)),
            report: a.report.clone(),
            out: a.out.clone(),
            quiet: a.quiet,
        })
    }

    /// The offered load.
    pub fn schedule(&self) -> &Schedule {
        &self.schedule
    }

    /// The events' seed, keys and payload size.
    pub fn shape(&self) -> EventShape {
        self.shape
    }

    /// The queue between transform and sink, for items of any type (weights and priorities are
    /// the caller's).
    pub fn queue_config<T>(&self) -> reactive::QueueConfig<T> {
        reactive::QueueConfig::new(self.queue).overflow(self.overflow.clone())
    }

    /// The spill, with `--queue spill` (its memory half is the bounded [`Self::queue_capacity`]).
    pub fn spill(&self) -> Option<&SpillPlan> {
        self.spill.as_ref()
    }

    /// The capacity of a bounded queue (`None` for an unbounded or pull queue).
    pub fn queue_capacity(&self) -> Option<usize> {
        match self.queue {
            Mode::Bounded(n) => Some(n),
            _ => None,
        }
    }

    /// A depth of the run's queue as a fraction of its capacity (0 for a queue without one).
    pub fn queue_fill(&self, depth: u64) -> f64 {
        self.queue_capacity()
            .map_or(0.0, |cap| depth as f64 / cap.max(1) as f64)
    }

    /// Whether the queue sheds what does not fit.
    pub fn sheds(&self) -> bool {
        self.overflow.sheds()
    }

    /// Whether AIMD lowers the source's rate from the queue's fill.
    pub fn slow_source(&self) -> bool {
        self.slow_source
    }

    /// The most events per write (1 with single writes; the max with `--batch-size auto`).
    pub fn batch_size(&self) -> usize {
        self.batch_size
    }

    /// Whether each event is its own write (`POST /write`).
    pub fn single_writes(&self) -> bool {
        self.single
    }

    /// `--sink-on-limit credit`: the sink workers write only against sinkd's credit.
    pub fn sink_credit(&self) -> bool {
        self.credit
    }

    /// The sink workers.
    pub fn workers_config(&self) -> WorkersConfig {
        self.workers
    }

    /// Concurrent sink writers.
    pub fn sink_workers(&self) -> usize {
        self.workers.workers
    }

    pub fn sink(&self) -> &SinkTarget {
        &self.sink
    }

    /// The adaptive concurrency limit's set-up, if the writes have one.
    pub fn concurrency(&self) -> Option<&LimitConfig> {
        self.concurrency.as_ref()
    }

    /// Which failed attempts count as backpressure for the limiter.
    pub fn backpressure_on(&self) -> &[Backpressure] {
        &self.backpressure_on
    }

    /// The longest one write attempt may take, if limited.
    pub fn attempt_timeout(&self) -> Option<Duration> {
        self.attempt_timeout
    }

    pub fn max_attempts(&self) -> u32 {
        self.max_attempts
    }

    pub fn drain_timeout(&self) -> Duration {
        self.drain_timeout
    }

    pub fn sample(&self) -> Duration {
        self.sample
    }

    pub fn report(&self) -> Option<&Path> {
        self.report.as_deref()
    }

    pub fn out(&self) -> Option<&Path> {
        self.out.as_deref()
    }

    pub fn quiet(&self) -> bool {
        self.quiet
    }

    /// The same plan writing its outputs to `dir` (each run of a sweep has its own).
    pub fn with_out(&self, dir: PathBuf) -> Plan {
        Plan {
            out: Some(dir),
            ..self.clone()
        }
    }

    /// The plan as JSON, for report.json and `--dry-run`.
    pub fn to_json(&self) -> serde_json::Value {
        let queue = match self.queue {
            Mode::Bounded(cap) if self.spill.is_some() => {
                let s = self.spill.as_ref().map(|s| {
                    (
                        s.dir.display().to_string(),
                        s.max_bytes,
                        format!("{:?}", s.fsync),
                    )
                });
                serde_json::json!({"kind": "spill", "cap": cap, "spill": s})
            }
            Mode::Bounded(cap) => serde_json::json!({"kind": "bounded", "cap": cap}),
            Mode::Unbounded { safety_cap } => {
                serde_json::json!({"kind": "unbounded", "safety_cap": safety_cap})
            }
            Mode::Pull => serde_json::json!({"kind": "pull"}),
        };
        serde_json::json!({
            "schedule": self.schedule,
            "msg_size": self.shape.msg_size,
            "seed": self.shape.seed,
            "keys": self.shape.keys,
            "queue": queue,
            "overflow": format!("{:?}", self.overflow),
            "slow_source": self.slow_source,
            "batch_size": self.batch_size,
            "batch_adaptive": self.adaptive,
            "batch_linger": self.batch_linger.as_secs_f64(),
            "sink_workers": self.workers.workers,
            "concurrency": self.concurrency.as_ref().map_or("fixed".to_string(), |c| format!("{:?}", c.controller).to_lowercase()),
            "backpressure_on": self.backpressure_on,
            "worker_window": self.workers.window,
            "partitioning": format!("{:?}", self.workers.partitioning),
            "sink": self.sink,
            "max_attempts": self.max_attempts,
            "drain_timeout": self.drain_timeout.as_secs_f64(),
            "sample": self.sample.as_secs_f64(),
        })
    }

    /// What will run, in a sentence.
    pub fn describe(&self) -> String {
        let schedule: Vec<String> = self
            .schedule
            .segments
            .iter()
            .map(|s| format!("{:.0}/s for {:.0}s", s.rate, s.duration.as_secs_f64()))
            .collect();
        let sink = match &self.sink {
            SinkTarget::Embedded { rate, .. } => {
                format!("an embedded sinkd capped at {rate:.0} writes/s")
            }
            SinkTarget::External { url } => format!("the sinkd at {url}"),
            SinkTarget::Null => "a null sink".into(),
        };
        let queue = match (self.queue, &self.spill) {
            (Mode::Bounded(cap), Some(s)) => format!(
                "a spill queue ({cap} in memory, then up to {} MiB in {}, fsync {:?})",
                s.max_bytes >> 20,
                s.dir.display(),
                s.fsync
            ),
            (mode, _) => match mode {
                Mode::Bounded(cap) => format!("a bounded queue of {cap}"),
                Mode::Unbounded {
                    safety_cap: Some(c),
                } => {
                    format!("an unbounded queue (safety cap {c})")
                }
                Mode::Unbounded { safety_cap: None } => "an unbounded queue".into(),
                Mode::Pull => "a pull queue".into(),
            },
        };
        let policy = if self.slow_source {
            "slow-source".to_string()
        } else {
            format!("{:?}", self.overflow).to_lowercase()
        };
        let per_write = if self.adaptive {
            format!(
                "1 to {} per write, sized by the write latency",
                self.batch_size
            )
        } else {
            format!("{} per write", self.batch_size)
        };
        format!(
            "Offering {} of {}-byte events, through {queue} ({policy}), {} {:?} writer(s) ({per_write}), into {sink}.",
            schedule.join(", then "),
            self.shape.msg_size,
            self.workers.workers,
            self.workers.partitioning,
        )
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    fn plan(args: &[&str]) -> anyhow::Result<Plan> {
        let argv = std::iter::once("run").chain(args.iter().copied());
        Plan::from_args(&RunArgs::parse_from(argv))
    }

    #[test]
    fn batch_size_auto_is_adaptive_batching_up_to_batch_max() {
        let p = plan(&["--sink-mode", "batch", "--batch-size", "auto"]).unwrap();
        assert!(matches!(
            p.workers_config().batching,
            Batching::Adaptive { max: BATCH_MAX, .. }
        ));
        assert_eq!(p.batch_size(), BATCH_MAX);
        assert!(
            p.describe().contains("1 to 1000 per write"),
            "{}",
            p.describe()
        );
        let p = plan(&[
            "--sink-mode",
            "batch",
            "--batch-size",
            "auto",
            "--batch-max",
            "64",
            "--batch-linger",
            "5ms",
        ])
        .unwrap();
        assert_eq!(
            p.workers_config().batching,
            Batching::Adaptive {
                max: 64,
                linger: Duration::from_millis(5)
            }
        );
        let p = plan(&["--sink-mode", "batch", "--batch-size", "16"]).unwrap();
        assert!(matches!(
            p.workers_config().batching,
            Batching::Fixed { size: 16, .. }
        ));
        assert_eq!(p.batch_size(), 16);
        let err = plan(&["--batch-size", "16", "--batch-max", "64"]).unwrap_err();
        assert!(err.to_string().contains("'--batch-max'"), "{err}");
        let err = RunArgs::try_parse_from(["run", "--batch-size", "lots"]).unwrap_err();
        let err = err.to_string();
        assert!(
            err.contains("--batch-size") && err.contains("`auto`"),
            "{err}"
        );
    }

    #[test]
    fn a_spill_queue_is_its_memory_half_and_a_disk_budget_scaled_with_time() {
        let p = plan(&["--queue", "spill", "--out", "/tmp/o"]).unwrap();
        let s = p.spill().unwrap();
        assert_eq!(s.dir, PathBuf::from("/tmp/o/spill"));
        assert_eq!(s.max_bytes, 1 << 30);
        assert_eq!(
            s.fsync,
            reactive::spill::Fsync::Every(Duration::from_millis(100))
        );
        assert_eq!(p.queue_capacity(), Some(10_000));
        assert!(p.describe().contains("spill queue"), "{}", p.describe());
        let p = plan(&[
            "--queue",
            "spill",
            "--spill-dir",
            "/tmp/d",
            "--spill-fsync",
            "always",
            "--time-scale",
            "0.02",
        ])
        .unwrap();
        let s = p.spill().unwrap();
        assert_eq!(s.dir, PathBuf::from("/tmp/d"));
        assert_eq!(s.max_bytes, ((1u64 << 30) as f64 * 0.02) as u64);
        assert_eq!(s.fsync, reactive::spill::Fsync::Always);
        assert_eq!(p.queue_capacity(), Some(200));
        assert!(plan(&[]).unwrap().spill().is_none());
    }

    #[test]
    fn an_adaptive_concurrency_is_bounded_by_the_workers_and_bad_classes_are_named() {
        let p = plan(&["--concurrency", "adaptive", "--sink-workers", "48"]).unwrap();
        let c = p.concurrency().unwrap();
        assert_eq!((c.controller, c.max), (Controller::Adaptive, 48));
        assert!(
            plan(&[]).unwrap().concurrency().is_none(),
            "fixed by default"
        );
        let p = plan(&["--concurrency", "arc", "--backpressure-on", "5xx,timeout"]).unwrap();
        assert_eq!(
            p.backpressure_on(),
            &[Backpressure::ServerError, Backpressure::Timeout]
        );
        let argv = ["run", "--backpressure-on", "429,404"];
        let e = RunArgs::try_parse_from(argv).unwrap_err().to_string();
        assert!(
            e.contains("--backpressure-on") && e.contains("'404'"),
            "{e}"
        );
        assert!(e.contains("429, 503, 5xx, timeout, error"), "{e}");
        let e = RunArgs::try_parse_from(["run", "--concurrency", "auto"])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("--concurrency") && e.contains("fixed, adaptive, arc"),
            "{e}"
        );
    }
}
