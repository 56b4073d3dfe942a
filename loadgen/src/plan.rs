//! The validated plan: what will run. Every error names the flag at fault.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use reactive::queue::Overflow;

use crate::cli::{OnLimit, Partitioning, Policy, Profile, QueueKind, RunArgs, Shed, SinkMode};

/// A piecewise-constant offered rate.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Schedule {
    pub segments: Vec<Segment>,
}

#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Segment {
    pub rate: f64,
    #[serde(with = "secs")]
    pub duration: Duration,
}

mod secs {
    pub fn serialize<S: serde::Serializer>(
        d: &std::time::Duration,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64())
    }
}

impl Schedule {
    /// Parses `RATE@DURATION,...` (e.g. `1500@60s,8000@300s`).
    pub fn parse(text: &str) -> anyhow::Result<Schedule> {
        let mut segments = Vec::new();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (rate, duration) = part
                .split_once('@')
                .with_context(|| format!("`{part}` is not RATE@DURATION (e.g. 8000@300s)"))?;
            let rate: f64 = rate
                .trim()
                .parse()
                .with_context(|| format!("`{rate}` is not a rate in events/s"))?;
            if !(rate.is_finite() && rate >= 0.0) {
                bail!("rate `{rate}` must be 0 or more");
            }
            segments.push(Segment {
                rate,
                duration: parse_duration(duration)?,
            });
        }
        if segments.is_empty() {
            bail!("the schedule is empty");
        }
        Ok(Schedule { segments })
    }

    pub fn from_profile(
        profile: Profile,
        rate: f64,
        baseline: f64,
        duration: Duration,
    ) -> Schedule {
        let third = duration / 3;
        let segments = match profile {
            Profile::Constant => vec![Segment { rate, duration }],
            Profile::Step => vec![
                Segment {
                    rate: baseline,
                    duration: third,
                },
                Segment {
                    rate,
                    duration: duration - third,
                },
            ],
            Profile::Burst => vec![
                Segment {
                    rate: baseline,
                    duration: third,
                },
                Segment {
                    rate,
                    duration: third,
                },
                Segment {
                    rate: baseline,
                    duration: duration - 2 * third,
                },
            ],
        };
        Schedule { segments }
    }

    pub fn scaled(&self, factor: f64) -> Schedule {
        Schedule {
            segments: self
                .segments
                .iter()
                .map(|s| Segment {
                    rate: s.rate,
                    duration: s.duration.mul_f64(factor),
                })
                .collect(),
        }
    }

    pub fn total(&self) -> Duration {
        self.segments.iter().map(|s| s.duration).sum()
    }

    pub fn rate_at(&self, at: Duration) -> f64 {
        let mut end = Duration::ZERO;
        for s in &self.segments {
            end += s.duration;
            if at < end {
                return s.rate;
            }
        }
        0.0
    }

    pub fn next_change(&self, at: Duration) -> Option<Duration> {
        let mut end = Duration::ZERO;
        for s in &self.segments {
            end += s.duration;
            if at < end {
                return Some(end);
            }
        }
        None
    }

    /// Events the schedule intends between its start and `at`.
    pub fn due(&self, at: Duration) -> f64 {
        let mut start = Duration::ZERO;
        let mut due = 0.0;
        for s in &self.segments {
            if at <= start {
                break;
            }
            let span = (at - start).min(s.duration);
            due += s.rate * span.as_secs_f64();
            start += s.duration;
        }
        due
    }

    /// The time windows whose rate is above `ceiling`.
    pub fn overload_windows(&self, ceiling: f64) -> Vec<(Duration, Duration)> {
        let mut start = Duration::ZERO;
        let mut out = Vec::new();
        for s in &self.segments {
            if s.rate > ceiling {
                out.push((start, start + s.duration));
            }
            start += s.duration;
        }
        out
    }

    pub fn peak(&self) -> f64 {
        self.segments.iter().map(|s| s.rate).fold(0.0, f64::max)
    }
}

/// Parses `90s`, `2ms`, `1.5s`, `10m`, `1h`.
pub fn parse_duration(text: &str) -> anyhow::Result<Duration> {
    sinkd::config::parse_duration(text).map_err(anyhow::Error::msg)
}

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

#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Stall {
    #[serde(with = "secs")]
    pub at: Duration,
    #[serde(with = "secs")]
    pub duration: Duration,
    pub rate: f64,
}

/// Everything one pipeline run needs, validated.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Plan {
    pub schedule: Schedule,
    pub msg_size: usize,
    pub seed: u64,
    pub keys: u64,
    pub queue: QueueKind,
    pub queue_cap: usize,
    pub safety_cap: Option<usize>,
    pub policy: Policy,
    pub shed: Shed,
    pub sink_mode: SinkMode,
    pub batch_size: usize,
    #[serde(with = "secs")]
    pub batch_linger: Duration,
    pub sink_workers: usize,
    /// Events each worker may hold (its demand window).
    pub worker_window: usize,
    pub partitioning: Partitioning,
    pub sink: SinkTarget,
    pub max_attempts: u32,
    #[serde(with = "secs")]
    pub drain_timeout: Duration,
    #[serde(with = "secs")]
    pub sample: Duration,
    #[serde(skip)]
    pub report: Option<PathBuf>,
    #[serde(skip)]
    pub out: Option<PathBuf>,
    #[serde(skip)]
    pub quiet: bool,
}

fn scale_count(n: usize, scale: f64) -> usize {
    if scale == 1.0 {
        n
    } else {
        ((n as f64 * scale).round() as usize).max(16)
    }
}

fn flag_duration(flag: &str, text: &str) -> anyhow::Result<Duration> {
    parse_duration(text).with_context(|| format!("invalid value '{text}' for '{flag}'"))
}

impl Plan {
    pub fn from_args(a: &RunArgs) -> anyhow::Result<Plan> {
        if !(a.time_scale.is_finite() && a.time_scale > 0.0) {
            bail!(
                "invalid value '{}' for '--time-scale': must be above 0",
                a.time_scale
            );
        }
        let scale = a.time_scale;
        let schedule = match &a.schedule {
            Some(text) => Schedule::parse(text)
                .with_context(|| format!("invalid value '{text}' for '--schedule'"))?,
            None => {
                for (flag, v) in [("--rate", a.rate), ("--baseline", a.baseline)] {
                    if !(v.is_finite() && v >= 0.0) {
                        bail!("invalid value '{v}' for '{flag}': must be 0 or more events/s");
                    }
                }
                Schedule::from_profile(
                    a.profile,
                    a.rate,
                    a.baseline,
                    flag_duration("--duration", &a.duration)?,
                )
            }
        }
        .scaled(scale);
        if schedule.total().is_zero() {
            bail!("invalid value for '--duration': the run must last more than 0 s");
        }
        if a.msg_size > 1 << 20 {
            bail!(
                "invalid value '{}' for '--msg-size': at most 1 MiB",
                a.msg_size
            );
        }
        if a.queue_cap == 0 {
            bail!("invalid value '0' for '--queue-cap': at least 1");
        }
        if a.policy == Policy::Shed && a.queue != QueueKind::Bounded {
            bail!(
                "'--policy shed' needs '--queue bounded' (a queue must be full before anything is shed)"
            );
        }
        if a.policy == Policy::SlowSource && a.queue != QueueKind::Bounded {
            bail!(
                "'--policy slow-source' needs '--queue bounded' (its fill is the pressure signal)"
            );
        }
        if a.sink_workers == 0 || a.sink_workers > 1024 {
            bail!(
                "invalid value '{}' for '--sink-workers': from 1 to 1024",
                a.sink_workers
            );
        }
        if a.batch_size == 0 {
            bail!("invalid value '0' for '--batch-size': at least 1");
        }
        if a.max_attempts == 0 {
            bail!("invalid value '0' for '--max-attempts': at least 1");
        }
        let sink = if a.null_sink {
            SinkTarget::Null
        } else if let Some(url) = &a.sink_url {
            sinkd::SinkClient::new(url)
                .map_err(|e| anyhow::anyhow!("invalid value '{url}' for '--sink-url': {e}"))?;
            SinkTarget::External { url: url.clone() }
        } else {
            if !(a.sink_rate.is_finite() && a.sink_rate > 0.0) {
                bail!(
                    "invalid value '{}' for '--sink-rate': must be above 0 writes/s",
                    a.sink_rate
                );
            }
            let stall = match (&a.stall_at, a.stall_rate) {
                (Some(at), Some(rate)) => {
                    if !(rate.is_finite() && rate > 0.0) {
                        bail!("invalid value '{rate}' for '--stall-rate': must be above 0");
                    }
                    Some(Stall {
                        at: flag_duration("--stall-at", at)?.mul_f64(scale),
                        duration: flag_duration("--stall-for", &a.stall_for)?.mul_f64(scale),
                        rate,
                    })
                }
                _ => None,
            };
            SinkTarget::Embedded {
                rate: a.sink_rate,
                on_limit: a.sink_on_limit,
                latency: flag_duration("--sink-latency", &a.sink_latency)?,
                stall,
            }
        };
        let batch_size = if a.sink_mode == SinkMode::Batch {
            a.batch_size
        } else {
            1
        };
        Ok(Plan {
            schedule,
            msg_size: a.msg_size,
            seed: a.seed,
            keys: a.keys.max(1),
            queue: a.queue,
            // Capacities scale with time: a compressed run's queue fills at the same point of
            // its schedule as the full run's would.
            queue_cap: scale_count(a.queue_cap, scale),
            safety_cap: a.safety_cap.map(|c| scale_count(c, scale)),
            policy: a.policy,
            shed: a.shed,
            sink_mode: a.sink_mode,
            batch_size,
            batch_linger: if a.sink_mode == SinkMode::Batch {
                flag_duration("--batch-linger", &a.batch_linger)?
            } else {
                Duration::ZERO
            },
            sink_workers: a.sink_workers,
            // `sink::workers` already gives each worker room for two batches.
            worker_window: 16,
            partitioning: a.partitioning,
            sink,
            max_attempts: a.max_attempts,
            // Not scaled: draining is about the queue's size, not the schedule's shape.
            drain_timeout: flag_duration("--drain-timeout", &a.drain_timeout)?,
            sample: flag_duration("--sample", &a.sample)?.max(Duration::from_millis(10)),
            report: a.report.clone(),
            out: a.out.clone(),
            quiet: a.quiet,
        })
    }

    /// The queue between transform and sink, for items of any type (weights and priorities are
    /// the caller's).
    pub fn queue_config<T>(&self) -> reactive::QueueConfig<T> {
        use reactive::QueueConfig;
        match self.queue {
            QueueKind::Bounded => QueueConfig::bounded(self.queue_cap).overflow(self.overflow()),
            QueueKind::Unbounded => match self.safety_cap {
                Some(cap) => QueueConfig::unbounded().safety_cap(cap),
                None => QueueConfig::unbounded(),
            },
            QueueKind::Pull => QueueConfig::pull(),
        }
    }

    /// A depth of the run's queue as a fraction of its capacity (0 for a queue without one).
    pub fn queue_fill(&self, depth: u64) -> f64 {
        match self.queue {
            QueueKind::Bounded => depth as f64 / self.queue_cap.max(1) as f64,
            QueueKind::Unbounded | QueueKind::Pull => 0.0,
        }
    }

    /// The sink workers.
    pub fn workers_config(&self) -> reactive::sink::WorkersConfig {
        use reactive::sink::Partitioning as Parts;
        reactive::sink::WorkersConfig {
            workers: self.sink_workers,
            window: self.worker_window,
            partitioning: match self.partitioning {
                Partitioning::RoundRobin => Parts::RoundRobin,
                Partitioning::Key => Parts::Key,
            },
            batch: self.batch_size,
            linger: self.batch_linger,
        }
    }

    pub fn overflow(&self) -> Overflow {
        match (self.policy, self.shed) {
            (Policy::Shed, Shed::DropNewest) => Overflow::DropNewest,
            (Policy::Shed, Shed::DropOldest) => Overflow::DropOldest,
            (Policy::Shed, Shed::Priority) => Overflow::Priority {
                thresholds: vec![0.5, 0.7, 0.9],
            },
            _ => Overflow::Block,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules_parse_and_integrate() {
        let s = Schedule::parse("1500@60s, 8000@300s").unwrap();
        assert_eq!(s.total(), Duration::from_secs(360));
        assert_eq!(s.rate_at(Duration::from_secs(59)), 1500.0);
        assert_eq!(s.rate_at(Duration::from_secs(60)), 8000.0);
        assert_eq!(
            s.due(Duration::from_secs(70)),
            1500.0 * 60.0 + 8000.0 * 10.0
        );
        assert_eq!(
            s.overload_windows(2000.0),
            vec![(Duration::from_secs(60), Duration::from_secs(360))]
        );
        assert!(
            Schedule::parse("fast@1s")
                .unwrap_err()
                .to_string()
                .contains("rate")
        );
        assert!(Schedule::parse("100").is_err());
    }

    #[test]
    fn time_scale_keeps_the_shape() {
        let s = Schedule::from_profile(Profile::Burst, 8000.0, 1500.0, Duration::from_secs(1800))
            .scaled(0.02);
        assert_eq!(s.total(), Duration::from_secs(36));
        assert_eq!(s.rate_at(Duration::from_secs(18)), 8000.0);
    }
}
