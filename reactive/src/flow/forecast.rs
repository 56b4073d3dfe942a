//! Predictive backpressure: a warning before a bounded queue fills, from the trend of its depth.
//!
//! A full queue is the moment backpressure reaches the source (or shedding starts). Its depth
//! usually climbs for a while before: [`FillForecast`] fits a least-squares line to the depth
//! over a sliding window and, while the line climbs, says when it would reach the capacity.
//! An operator (or an autoscaler) warned then has that long to act.
//!
//! What it promises: a forecast from the samples inside the window only (older ones are
//! dropped); no verdict from fewer than three samples or from samples spanning less than a
//! quarter of the window, and no "filling" from a climb (over the samples' span) smaller than
//! `min_rise` of the capacity (noise on a steady queue is not a trend); the
//! time to full is the line's, not a guarantee — a load that changes changes it.

use std::collections::VecDeque;
use std::time::Duration;

/// What the depth's trend says.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Forecast {
    /// Too few samples yet, or no trend worth the name.
    Steady,
    /// The depth is falling.
    Draining,
    /// The depth is climbing: at `rate` items/s, the queue is full in `eta`.
    Filling {
        /// Time until the line reaches the capacity.
        eta: Duration,
        /// The climb, items per second.
        rate: f64,
    },
    /// At capacity now.
    Full,
}

/// Least-squares trend of a queue's depth over a sliding window.
#[derive(Debug, Clone)]
pub struct FillForecast {
    capacity: f64,
    window: Duration,
    min_rise: f64,
    samples: VecDeque<(Duration, f64)>,
}

impl FillForecast {
    /// A forecast for a queue of `capacity` items, over the last `window` of samples. A climb
    /// counts once the line rises by at least 2% of the capacity over the window.
    pub fn new(capacity: u64, window: Duration) -> FillForecast {
        FillForecast {
            capacity: capacity.max(1) as f64,
            window: window.max(Duration::from_millis(1)),
            min_rise: 0.02,
            samples: VecDeque::new(),
        }
    }

    /// The smallest climb over the window, as a fraction of the capacity, that counts as a
    /// trend (default 0.02).
    pub fn min_rise(mut self, fraction: f64) -> Self {
        self.min_rise = fraction.clamp(0.0, 1.0);
        self
    }

    /// Adds the depth seen at `at` (any monotonic time) and forecasts.
    pub fn observe(&mut self, at: Duration, depth: u64) -> Forecast {
        if self.samples.back().is_some_and(|(t, _)| at < *t) {
            // Time went backwards: start again rather than fit nonsense.
            self.samples.clear();
        }
        self.samples.push_back((at, depth as f64));
        while self
            .samples
            .front()
            .is_some_and(|(t, _)| at.saturating_sub(*t) > self.window)
        {
            self.samples.pop_front();
        }
        let depth = depth as f64;
        if depth >= self.capacity {
            return Forecast::Full;
        }
        let span = at.saturating_sub(self.samples[0].0);
        if span < self.window / 4 {
            return Forecast::Steady;
        }
        let Some(rate) = self.slope() else {
            return Forecast::Steady;
        };
        let rise = rate * span.as_secs_f64();
        if rise.abs() < self.min_rise * self.capacity {
            Forecast::Steady
        } else if rate < 0.0 {
            Forecast::Draining
        } else {
            let eta = Duration::try_from_secs_f64((self.capacity - depth) / rate)
                .unwrap_or(Duration::MAX);
            Forecast::Filling { eta, rate }
        }
    }

    /// The least-squares slope of depth over time, items/s; `None` under three samples or
    /// with no time between them.
    fn slope(&self) -> Option<f64> {
        if self.samples.len() < 3 {
            return None;
        }
        let t0 = self.samples[0].0;
        let n = self.samples.len() as f64;
        let (mut sx, mut sy, mut sxx, mut sxy) = (0.0, 0.0, 0.0, 0.0);
        for (t, y) in &self.samples {
            let x = (*t - t0).as_secs_f64();
            sx += x;
            sy += y;
            sxx += x * x;
            sxy += x * y;
        }
        let den = n * sxx - sx * sx;
        (den > 1e-12).then(|| (n * sxy - sx * sy) / den)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn a_steady_climb_gives_the_time_to_full() {
        // 1,000 items, +100/s, sampled every 100 ms: at 5 s the depth is 500, full at 10 s.
        let mut f = FillForecast::new(1_000, Duration::from_secs(2));
        let mut last = Forecast::Steady;
        for i in 0..=50 {
            last = f.observe(ms(i * 100), i * 10);
        }
        match last {
            Forecast::Filling { eta, rate } => {
                assert!((rate - 100.0).abs() < 1e-6, "{rate}");
                assert!((eta.as_secs_f64() - 5.0).abs() < 1e-6, "{eta:?}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn noise_around_a_level_is_not_a_trend() {
        let mut f = FillForecast::new(10_000, Duration::from_secs(5));
        let mut state = 7u64;
        for i in 0..200u64 {
            let noise = splitmix::step(&mut state) % 100; // ±1% of the capacity
            let got = f.observe(ms(i * 100), 5_000 + noise);
            assert_eq!(got, Forecast::Steady, "sample {i}");
        }
    }

    #[test]
    fn falling_full_and_too_few_samples() {
        let mut f = FillForecast::new(100, Duration::from_millis(400));
        assert_eq!(f.observe(ms(0), 90), Forecast::Steady);
        assert_eq!(f.observe(ms(100), 80), Forecast::Steady);
        assert_eq!(f.observe(ms(200), 70), Forecast::Draining);
        assert_eq!(f.observe(ms(300), 100), Forecast::Full);
    }

    #[test]
    fn only_the_window_counts() {
        // A fast climb long ago, then flat: the window forgets the climb.
        let mut f = FillForecast::new(1_000, Duration::from_secs(1));
        for i in 0..10 {
            f.observe(ms(i * 100), i * 50);
        }
        let mut last = Forecast::Steady;
        for i in 10..40 {
            last = f.observe(ms(i * 100), 450);
        }
        assert_eq!(last, Forecast::Steady);
    }

    #[test]
    fn time_going_backwards_starts_over() {
        let mut f = FillForecast::new(1_000, Duration::from_secs(10));
        for i in 0..5 {
            f.observe(ms(1_000 + i * 100), i * 100);
        }
        assert_eq!(f.observe(ms(0), 400), Forecast::Steady);
    }
}
