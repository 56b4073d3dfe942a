//! The offered load: a piecewise-constant rate over time, from a profile or `--schedule`.

use std::time::Duration;

/// The shape of the offered rate over a run.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum Profile {
    /// --rate for the whole run.
    Constant,
    /// --baseline for the first third, then --rate.
    Step,
    /// --baseline, then --rate for the middle third, then --baseline again.
    Burst,
}

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

pub(crate) mod secs {
    pub fn serialize<S: serde::Serializer>(
        d: &std::time::Duration,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64())
    }
}

impl Schedule {
    /// Parses `RATE@DURATION,...` (e.g. `1500@60s,8000@300s`); a value parser of `--schedule`.
    pub fn parse(text: &str) -> Result<Schedule, String> {
        let mut segments = Vec::new();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (rate, duration) = part
                .split_once('@')
                .ok_or_else(|| format!("`{part}` is not RATE@DURATION (e.g. 8000@300s)"))?;
            let rate = crate::units::rate(rate)
                .map_err(|e| format!("`{rate}` is not a rate in events/s: {e}"))?;
            segments.push(Segment {
                rate,
                duration: crate::units::duration(duration)?,
            });
        }
        if segments.is_empty() {
            return Err("the schedule is empty".into());
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
