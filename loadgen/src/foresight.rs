//! Predictive backpressure in a run: warns before the bounded queue fills, from the trend of
//! its depth ([`reactive::flow::FillForecast`]), and keeps when it first warned and when the
//! queue first was full, so the report says how much warning there was.

use std::time::Duration;

use reactive::flow::{FillForecast, Forecast};

use crate::progress::Progress;

/// Samples in the forecast's window.
const WINDOW_SAMPLES: u32 = 8;
/// A blocking queue at its capacity is sampled a few items short of it (the workers take some
/// between two offers): at this fill it counts as full.
const FULL: f64 = 0.98;

/// Watches one bounded queue's depth, a sample at a time.
pub(crate) struct FillWatch {
    forecast: FillForecast,
    capacity: usize,
    horizon: Duration,
    /// A warning was given for the climb under way (reset once the climb stops).
    warned: bool,
    /// When it first warned, seconds into the run.
    pub first_warning_s: Option<f64>,
    /// When the queue was first seen full (98% of its capacity), seconds into the run.
    pub first_full_s: Option<f64>,
}

impl FillWatch {
    /// A watch over a queue of `capacity`, sampled every `sample`; it warns when the trend says
    /// full within `horizon`.
    pub fn new(capacity: usize, sample: Duration, horizon: Duration) -> FillWatch {
        FillWatch {
            forecast: FillForecast::new(capacity as u64, sample * WINDOW_SAMPLES),
            capacity,
            horizon,
            warned: false,
            first_warning_s: None,
            first_full_s: None,
        }
    }

    /// Feeds the depth at `t` seconds; warns through `progress` once per climb.
    pub fn observe(&mut self, t: f64, depth: u64, progress: &Progress) {
        if depth as f64 >= self.capacity as f64 * FULL {
            self.first_full_s.get_or_insert(t);
        }
        match self
            .forecast
            .observe(Duration::from_secs_f64(t.max(0.0)), depth)
        {
            Forecast::Full => self.warned = true,
            Forecast::Filling { eta, rate } if eta <= self.horizon => {
                if !self.warned {
                    self.warned = true;
                    self.first_warning_s.get_or_insert(t);
                    progress.note(&format!(
                        "the queue will be full in about {:.1} s at this trend (+{rate:.0} events/s, depth {depth})",
                        eta.as_secs_f64()
                    ));
                }
            }
            Forecast::Filling { .. } => {}
            Forecast::Steady | Forecast::Draining => self.warned = false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn it_warns_once_per_climb_and_before_the_queue_is_full() {
        let progress = Progress::new(true, "test");
        let mut w = FillWatch::new(1_000, Duration::from_millis(250), Duration::from_secs(10));
        // Flat, then +400/s until full at 2.5 s of climbing, then flat at the top.
        let mut t = 0.0;
        let mut depth = 0u64;
        for _ in 0..20 {
            w.observe(t, depth, &progress);
            t += 0.25;
        }
        assert_eq!(w.first_warning_s, None, "no warning while flat");
        while depth < 990 {
            depth = (depth + 100).min(990);
            w.observe(t, depth, &progress);
            t += 0.25;
        }
        let (warned, full) = (w.first_warning_s.unwrap(), w.first_full_s.unwrap());
        assert!(warned < full, "warned at {warned}, full at {full}");
        assert!(full - warned >= 1.0, "only {} s of warning", full - warned);
    }
}
