//! [`Sampler`]: running totals in, a [`Sample`] out (rates are the change since the last
//! sample), for the embedded pipeline and the Kafka processor alike; and the process's RSS.

use tokio::time::Instant;

use super::Sample;

/// Running totals, as a pipeline knows them at one moment; [`Sampler`] makes a sample of them.
#[derive(Debug, Clone, Copy, Default)]
pub struct Totals {
    /// The schedule's rate now (0 without a schedule).
    pub target_rate: f64,
    /// Events the source emitted so far.
    pub emitted: u64,
    /// Events the sink acknowledged so far.
    pub delivered: u64,
    /// Write requests the sink acknowledged so far.
    pub writes: u64,
    pub queue_depth: u64,
    pub queue_bytes: u64,
    pub source_backlog: u64,
    pub lag: u64,
    pub rss_bytes: u64,
    pub dropped: u64,
    pub p99_ms: f64,
    pub signal_rate: f64,
    pub concurrency_limit: u64,
}

/// Turns running totals into samples: rates are the change since the last sample.
#[derive(Debug)]
pub struct Sampler {
    origin: Instant,
    last: (Instant, u64, u64, u64),
}

impl Sampler {
    /// A sampler whose samples count time from `origin`.
    pub fn new(origin: Instant) -> Self {
        Sampler {
            origin,
            last: (Instant::now(), 0, 0, 0),
        }
    }

    /// The instant the time series counts from.
    pub fn origin(&self) -> Instant {
        self.origin
    }

    /// The sample of `totals` taken now.
    pub fn sample(&mut self, totals: Totals) -> Sample {
        let now = Instant::now();
        let dt = (now - self.last.0).as_secs_f64().max(1e-9);
        let rate = |total: u64, last: u64| total.saturating_sub(last) as f64 / dt;
        let sample = Sample {
            t: (now - self.origin).as_secs_f64(),
            target_rate: totals.target_rate,
            generated_rate: rate(totals.emitted, self.last.1),
            delivered_rate: rate(totals.delivered, self.last.2),
            writes_rate: rate(totals.writes, self.last.3),
            queue_depth: totals.queue_depth,
            queue_bytes: totals.queue_bytes,
            source_backlog: totals.source_backlog,
            lag: totals.lag,
            rss_bytes: totals.rss_bytes,
            dropped: totals.dropped,
            p99_ms: totals.p99_ms,
            signal_rate: totals.signal_rate,
            concurrency_limit: totals.concurrency_limit,
        };
        self.last = (now, totals.emitted, totals.delivered, totals.writes);
        sample
    }
}

/// A sampling clock of `period` whose missed ticks are not made up in a burst: after a stall
/// (a busy machine, a stopped process) the next sample comes a whole period later, so no rate is
/// measured over a few microseconds.
pub fn sampling(period: std::time::Duration) -> tokio::time::Interval {
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick
}

/// The resident set size of this process, from /proc (0 where unavailable).
pub fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .nth(1)
                .and_then(|p| p.parse::<u64>().ok())
        })
        .map_or(0, |pages| pages * 4096)
}
