//! The figures of one run of `loadgen concurrency`, from its time series: pure functions of the
//! samples, so they are tested without running anything.

use crate::telemetry::Sample;

/// When the run's phases begin and end, seconds from the start.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Phases {
    /// The stall's start.
    pub stall_at: f64,
    /// The stall's end.
    pub stall_end: f64,
    /// The schedule's end.
    pub end: f64,
}

impl Phases {
    /// The steady part before the stall: its second half.
    pub fn steady(&self) -> (f64, f64) {
        (self.stall_at / 2.0, self.stall_at)
    }
}

/// What one run measured.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Figures {
    /// Delivered events/s over the schedule (the drain left out).
    pub goodput: f64,
    /// Delivered events/s over the steady part before the stall.
    pub steady: f64,
    /// The limit's range (max − min) over the steady part (0 when fixed).
    pub amplitude: f64,
    /// The limit's mean over the steady part (0 when fixed).
    pub mean_limit: f64,
    /// 429s per attempt.
    pub rejected: f64,
}

/// The mean of `f` over the samples in `[from, to)`.
pub fn mean_over(series: &[Sample], from: f64, to: f64, f: impl Fn(&Sample) -> f64) -> f64 {
    crate::analysis::mean(series.iter().filter(|s| s.t >= from && s.t < to).map(f))
}

/// The figures of `series`; `attempts` and `rejected` are the run's write attempts and 429s.
pub fn figures(series: &[Sample], p: Phases, attempts: u64, rejected: u64) -> Figures {
    let (from, to) = p.steady();
    let limits: Vec<u64> = series
        .iter()
        .filter(|s| s.t >= from && s.t < to)
        .map(|s| s.concurrency_limit)
        .collect();
    let amplitude = match (limits.iter().max(), limits.iter().min()) {
        (Some(hi), Some(lo)) => (hi - lo) as f64,
        _ => 0.0,
    };
    Figures {
        goodput: mean_over(series, 0.0, p.end, |s| s.delivered_rate),
        steady: mean_over(series, from, to, |s| s.delivered_rate),
        amplitude,
        mean_limit: mean_over(series, from, to, |s| s.concurrency_limit as f64),
        rejected: if attempts == 0 {
            0.0
        } else {
            rejected as f64 / attempts as f64
        },
    }
}

/// Seconds from `from` until the delivered rate, averaged over `smooth` samples centred on
/// each, first reaches `target`; `None` if it never does before `until`.
pub fn time_to_reach(
    series: &[Sample],
    from: f64,
    until: f64,
    target: f64,
    smooth: usize,
) -> Option<f64> {
    let half = smooth / 2;
    (0..series.len())
        .filter(|&i| series[i].t >= from && series[i].t < until)
        .find(|&i| {
            let lo = i.saturating_sub(half);
            let hi = (i + half + 1).min(series.len());
            let w = &series[lo..hi];
            w.iter().map(|s| s.delivered_rate).sum::<f64>() / w.len() as f64 >= target
        })
        .map(|i| (series[i].t - from).max(0.0))
}

/// Min, median and max of `v` (`None` when empty).
pub fn spread(v: &[f64]) -> Option<(f64, f64, f64)> {
    let mut v: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    let median = if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    };
    Some((v[0], median, v[n - 1]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(t: f64, rate: f64, limit: u64) -> Sample {
        Sample {
            t,
            delivered_rate: rate,
            concurrency_limit: limit,
            ..Sample::default()
        }
    }

    /// 0.1 s samples: a ramp to 600/s over the first second, a stall at 5-7 s at 150/s.
    fn series() -> Vec<Sample> {
        (1..=100)
            .map(|i| {
                let t = i as f64 / 10.0;
                let rate = if t < 1.0 {
                    600.0 * t
                } else if (5.0..7.0).contains(&t) {
                    150.0
                } else {
                    600.0
                };
                at(t, rate, if i % 2 == 0 { 20 } else { 24 })
            })
            .collect()
    }

    const PHASES: Phases = Phases {
        stall_at: 5.0,
        stall_end: 7.0,
        end: 10.0,
    };

    #[test]
    fn the_time_to_reach_counts_from_its_start() {
        let s = series();
        let t = time_to_reach(&s, 0.0, 5.0, 570.0, 1).unwrap();
        assert!((t - 1.0).abs() < 1e-9, "{t}");
        let after = time_to_reach(&s, 7.0, 10.0, 570.0, 1).unwrap();
        assert!(after.abs() < 1e-9, "{after}");
        assert_eq!(time_to_reach(&s, 5.0, 7.0, 570.0, 1), None);
        // Smoothing over five samples delays the crossing of a ramp.
        assert!(time_to_reach(&s, 0.0, 5.0, 570.0, 5).unwrap() > 1.0);
    }

    #[test]
    fn figures_take_the_steady_part_before_the_stall() {
        let f = figures(&series(), PHASES, 1_000, 50);
        assert_eq!(f.steady, 600.0);
        assert_eq!(f.amplitude, 4.0);
        assert!((f.mean_limit - 22.0).abs() < 0.2, "{}", f.mean_limit);
        assert_eq!(f.rejected, 0.05);
        assert!(f.goodput < 600.0 && f.goodput > 450.0, "{}", f.goodput);
        assert_eq!(figures(&[], PHASES, 0, 0), Figures::default());
    }

    #[test]
    fn the_spread_is_min_median_max() {
        assert_eq!(spread(&[3.0, 1.0, 2.0]), Some((1.0, 2.0, 3.0)));
        assert_eq!(spread(&[4.0, 1.0, 2.0, 3.0]), Some((1.0, 2.5, 4.0)));
        assert_eq!(spread(&[f64::NAN]), None);
    }
}
