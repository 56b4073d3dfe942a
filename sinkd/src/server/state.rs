//! What the routes share: the limiter (token bucket, its base rate and stalls), the pause,
//! the audit, the metrics, fault injection and the event log.

use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use crate::audit::Audit;
use crate::bucket::TokenBucket;
use crate::config::Config;
use crate::metrics::Metrics;

#[derive(Debug)]
pub(super) struct Limiter {
    /// `None`: no limit.
    pub(super) bucket: Option<TokenBucket>,
    pub(super) base: Option<f64>,
    /// Bumped by every rate change, so a stall's restore does not undo a later change.
    pub(super) generation: u64,
    /// Clients' credit: tokens taken from the bucket and set aside for them.
    pub(super) ledger: super::ledger::Ledger,
}

#[derive(Debug)]
pub(super) struct State {
    pub(super) config: Config,
    pub(super) origin: Instant,
    pub(super) limiter: Mutex<Limiter>,
    pub(super) paused: watch::Sender<bool>,
    pub(super) held: AtomicUsize,
    /// No rate limit right now: admission needs neither the lock nor the clock.
    pub(super) unlimited: AtomicBool,
    pub(super) audit: Mutex<Audit>,
    pub(super) metrics: Metrics,
    pub(super) rng: Mutex<u64>,
    pub(super) log: Option<Mutex<std::io::BufWriter<std::fs::File>>>,
}

pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl State {
    pub(super) fn new(config: Config) -> std::io::Result<State> {
        let origin = Instant::now();
        let log = match &config.log {
            Some(path) => {
                let file = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)?;
                Some(Mutex::new(std::io::BufWriter::with_capacity(1 << 16, file)))
            }
            None => None,
        };
        let bucket = config
            .rate
            .map(|r| TokenBucket::new(r, config.burst, Duration::ZERO));
        let metrics = Metrics::default();
        metrics.rate_limit.set(config.rate.unwrap_or(0.0));
        Ok(State {
            limiter: Mutex::new(Limiter {
                bucket,
                base: config.rate,
                generation: 0,
                ledger: Default::default(),
            }),
            paused: watch::Sender::new(false),
            held: AtomicUsize::new(0),
            unlimited: AtomicBool::new(config.rate.is_none()),
            audit: Mutex::new(Audit::default()),
            metrics,
            rng: Mutex::new(config.seed),
            log,
            origin,
            config,
        })
    }

    pub(super) fn now(&self) -> Duration {
        self.origin.elapsed()
    }

    pub(super) fn audit(&self) -> MutexGuard<'_, Audit> {
        lock(&self.audit)
    }

    pub(super) fn flush_log(&self) {
        if let Some(log) = &self.log {
            if let Err(e) = lock(log).flush() {
                tracing::warn!("cannot flush the event log: {e}");
            }
        }
    }

    /// Sets the current rate (and the base it returns to after a stall).
    pub(super) fn set_rate(&self, rate: Option<f64>) {
        let mut l = lock(&self.limiter);
        l.base = rate;
        l.generation += 1;
        self.apply(&mut l, rate);
    }

    /// Applies `rate`, scaling the burst with it so that a stalled sink also loses its burst
    /// (a tenth of a second of the configured rate becomes a tenth of a second of the stall's).
    fn apply(&self, l: &mut Limiter, rate: Option<f64>) {
        let now = self.now();
        let burst = |r: f64| match self.config.rate {
            Some(base) => (self.config.burst * r / base).max(1.0),
            None => (r / 10.0).max(1.0),
        };
        self.unlimited.store(rate.is_none(), Ordering::Release);
        match (rate, &mut l.bucket) {
            (None, bucket) => *bucket = None,
            (Some(r), Some(b)) => b.set_limits(now, r, burst(r)),
            (Some(r), bucket) => *bucket = Some(TokenBucket::new(r, burst(r), now)),
        }
        self.metrics.rate_limit.set(rate.unwrap_or(0.0));
    }

    /// Drops the rate to `rate` for `duration`, then restores the rate from before.
    pub(super) fn stall(self: &Arc<Self>, rate: f64, duration: Duration) {
        let generation = {
            let mut l = lock(&self.limiter);
            l.generation += 1;
            self.apply(&mut l, Some(rate));
            l.generation
        };
        tracing::info!("stall: {rate} writes/s for {duration:?}");
        let s = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(duration).await;
            let mut l = lock(&s.limiter);
            if l.generation == generation {
                let base = l.base;
                s.apply(&mut l, base);
                tracing::info!("stall over: back to {base:?} writes/s");
            }
        });
    }

    pub(super) fn set_paused(&self, paused: bool) {
        self.paused.send_replace(paused);
        self.metrics.paused.set(i64::from(paused));
    }

    /// Seeded draw for `--fail-rate` (splitmix64).
    pub(super) fn inject_failure(&self) -> bool {
        if self.config.fail_rate <= 0.0 {
            return false;
        }
        let draw = splitmix::step(&mut lock(&self.rng));
        splitmix::unit(draw) < self.config.fail_rate
    }
}
