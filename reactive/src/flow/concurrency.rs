//! Adaptive concurrency: how many attempts may be in flight to a sink whose capacity is unknown
//! and changes.
//!
//! # Use
//! A caller [`acquire`](Limiter::acquire)s a [`Permit`] before each attempt (a request, one try
//! of a retry sequence), makes the attempt, and [`report`](Permit::report)s its [`Outcome`] on
//! the permit. The permit measures the attempt's round-trip time (RTT) from acquire to report,
//! so a retry sequence is timed attempt by attempt, and a rejected attempt counts as
//! backpressure even when a later retry succeeds. Which failures are backpressure is the
//! caller's choice: a rate-limit answer, an overload answer, a timeout are
//! [`Outcome::Backpressure`]; anything that says nothing about the sink's load is
//! [`Outcome::Ignored`].
//!
//! # Guarantees
//! - At most [`limit`](Readings::limit) permits are out at once, except right after a decrease,
//!   when the permits already out are not taken back: none is handed out until the count is
//!   below the new limit.
//! - The limit stays within `[1, max]`.
//! - A permit is released when it is dropped, reported or not (a cancelled attempt, a panic);
//!   an unreported permit tells the controller nothing. A cancelled `acquire` holds nothing.
//! - Waiters are woken when a permit is released or the limit grows; the order among waiters
//!   is not guaranteed (no fairness).
//!
//! # The controllers
//! The limit changes once per *window*: a period of one moving-mean RTT (at least
//! [`LimitConfig::min_window`]); only successes are timed (a rejection comes back fast and
//! says nothing of the service time). Both controllers multiply the limit by `decrease` (0.9)
//! at most once per window, and grow it only after a window in which the limit was reached
//! (all permits out at once: a limit that was never reached says nothing about the sink).
//!
//! - [`Controller::Arc`], the reference (Vector's adaptive request concurrency): starts at 1;
//!   decreases after a window with backpressure or a mean RTT at or above `mean + k·σ` of the
//!   windows before it (σ taken as at least 2% of the mean); otherwise adds 1 when the window's
//!   RTT was at or below the moving mean.
//! - [`Controller::Adaptive`], ours. It judges the RTT against a *baseline*, the lowest window
//!   RTT seen (it drifts up by 5% a window only while the limit is 1, for a sink that really got
//!   slower): above 1.25× the baseline the sink is queueing requests, which counts as
//!   backpressure; the limit grows only while the RTT is within 1.1× (between the two it
//!   holds). It doubles per window from the start until the first backpressure, which halves
//!   it back (slow start, as TCP does). Each backpressure records the limit it came at, the
//!   *ceiling*, and then decreases it; after a decrease the limit holds for `hold` windows (so
//!   one overload is not answered twice). Below the ceiling it grows by half the distance to
//!   it (a binary search, as BIC-TCP does: back near the ceiling in a few windows, but never
//!   past it in one step); at or past the ceiling it probes by 1 a window for four windows,
//!   then 2, 4, 8… (at most a quarter of the limit a window), so a limit that the sink no
//!   longer bounds (a stall ended) climbs back in a few windows, while one near a ceiling that
//!   still holds probes gently.
//!   Unlike ARC's moving mean, the baseline does not follow a persistent queue: a sink that
//!   holds requests (delay mode) is seen as overloaded for as long as it holds them.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

/// Which rule moves the limit (see the [module docs](self)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Controller {
    /// Vector's ARC: +1 per clean window at or below the mean RTT, ×`decrease` otherwise,
    /// from 1.
    Arc,
    /// Ours: slow start by doubling, a hold after each decrease, an accelerating increase.
    Adaptive,
}

/// How a [`Limiter`] is set up.
#[derive(Debug, Clone, PartialEq)]
pub struct LimitConfig {
    /// The rule.
    pub controller: Controller,
    /// The most permits (the size of the pool behind the limiter; at least 1).
    pub max: usize,
    /// The first limit (ARC starts at 1; clamped to `[1, max]`).
    pub initial: usize,
    /// The factor of a decrease, in `(0, 1)`.
    pub decrease: f64,
    /// `k`: an RTT at or above `mean + k·σ` of the past windows counts as backpressure.
    pub rtt_deviations: f64,
    /// The weight of the newest window in the moving mean and variance of the RTT, in `(0, 1]`.
    pub ewma_alpha: f64,
    /// The shortest window, however short the RTT.
    pub min_window: Duration,
    /// With [`Controller::Adaptive`]: windows without increase after a decrease.
    pub hold: u32,
}

impl LimitConfig {
    /// `controller` up to `max` permits, from 1, with Vector's defaults: ×0.9, k = 2.5, α = 0.4.
    pub fn new(controller: Controller, max: usize) -> Self {
        LimitConfig {
            controller,
            max: max.max(1),
            initial: 1,
            decrease: 0.9,
            rtt_deviations: 2.5,
            ewma_alpha: 0.4,
            min_window: Duration::from_millis(1),
            hold: 2,
        }
    }
}

/// What an attempt told about the sink.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// It succeeded: its RTT counts.
    Success,
    /// The sink pushed back (rate limited, overloaded, timed out): the window is not clean.
    Backpressure,
    /// Nothing about the sink's load (a malformed request, a closed connection): not counted.
    Ignored,
}

/// A limiter's readings, for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Readings {
    /// The limit now.
    pub limit: usize,
    /// Permits out now.
    pub in_flight: usize,
    /// Times the limit grew.
    pub increases: u64,
    /// Times the limit shrank.
    pub decreases: u64,
    /// Attempts reported as backpressure.
    pub backpressure: u64,
    /// Attempts reported (success or backpressure).
    pub reported: u64,
}

/// An adaptive concurrency limit, shared by cloning. See the [module docs](self).
#[derive(Debug, Clone)]
pub struct Limiter {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    state: Mutex<State>,
    released: Notify,
    increases: AtomicU64,
    decreases: AtomicU64,
    backpressure: AtomicU64,
    reported: AtomicU64,
}

#[derive(Debug)]
struct State {
    limit: usize,
    in_flight: usize,
    control: Control,
}

/// A permission to make one attempt; released on drop.
#[derive(Debug)]
#[must_use = "a permit is released when dropped"]
pub struct Permit {
    inner: Arc<Inner>,
    start: Instant,
}

impl Limiter {
    /// A limiter by `config`.
    pub fn new(config: LimitConfig) -> Self {
        let control = Control::new(config);
        let limit = control.initial();
        Limiter {
            inner: Arc::new(Inner {
                state: Mutex::new(State {
                    limit,
                    in_flight: 0,
                    control,
                }),
                released: Notify::new(),
                increases: AtomicU64::new(0),
                decreases: AtomicU64::new(0),
                backpressure: AtomicU64::new(0),
                reported: AtomicU64::new(0),
            }),
        }
    }

    /// Waits for a permit: until fewer than `limit` are out. Cancel-safe: dropping the future
    /// takes nothing.
    pub async fn acquire(&self) -> Permit {
        loop {
            let released = self.inner.released.notified();
            tokio::pin!(released);
            // Registered before the check, so a release between the check and the await wakes us.
            released.as_mut().enable();
            if let Some(permit) = self.try_acquire() {
                return permit;
            }
            released.await;
        }
    }

    /// A permit if one is free now.
    pub fn try_acquire(&self) -> Option<Permit> {
        let mut s = self.inner.lock();
        if s.in_flight >= s.limit {
            return None;
        }
        s.in_flight += 1;
        let reached = s.in_flight >= s.limit;
        s.control.acquired(reached);
        drop(s);
        Some(Permit {
            inner: self.inner.clone(),
            start: Instant::now(),
        })
    }

    /// The readings now.
    pub fn readings(&self) -> Readings {
        let s = self.inner.lock();
        Readings {
            limit: s.limit,
            in_flight: s.in_flight,
            increases: self.inner.increases.load(Ordering::Relaxed),
            decreases: self.inner.decreases.load(Ordering::Relaxed),
            backpressure: self.inner.backpressure.load(Ordering::Relaxed),
            reported: self.inner.reported.load(Ordering::Relaxed),
        }
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Permit {
    /// Reports the attempt's outcome (its RTT is the time since the permit was acquired) and
    /// releases the permit.
    pub fn report(self, outcome: Outcome) {
        let rtt = self.start.elapsed();
        match outcome {
            Outcome::Ignored => return,
            Outcome::Backpressure => {
                self.inner.backpressure.fetch_add(1, Ordering::Relaxed);
            }
            Outcome::Success => {}
        }
        self.inner.reported.fetch_add(1, Ordering::Relaxed);
        let mut s = self.inner.lock();
        let before = s.limit;
        let after = s.control.report(
            Instant::now(),
            rtt,
            outcome == Outcome::Backpressure,
            before,
        );
        s.limit = after;
        drop(s);
        if after > before {
            self.inner.increases.fetch_add(1, Ordering::Relaxed);
            self.inner.released.notify_waiters();
        } else if after < before {
            self.inner.decreases.fetch_add(1, Ordering::Relaxed);
        }
        // `self` drops here and releases the permit.
    }

    /// How long since the permit was acquired.
    pub fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut s = self.inner.lock();
        s.in_flight = s.in_flight.saturating_sub(1);
        let free = s.in_flight < s.limit;
        drop(s);
        if free {
            self.inner.released.notify_waiters();
        }
    }
}

/// The moving mean and variance of the windows' RTTs, in seconds.
#[derive(Debug, Clone, Copy, Default)]
struct Ewma {
    mean: f64,
    var: f64,
    seen: bool,
}

impl Ewma {
    fn push(&mut self, x: f64, alpha: f64) {
        if !self.seen {
            *self = Ewma {
                mean: x,
                var: 0.0,
                seen: true,
            };
            return;
        }
        let d = x - self.mean;
        self.mean += alpha * d;
        self.var = (1.0 - alpha) * (self.var + alpha * d * d);
    }
}

/// The window being measured.
#[derive(Debug, Clone, Copy)]
struct Window {
    start: Instant,
    rtt_sum: f64,
    count: u64,
    backpressure: bool,
    reached: bool,
}

impl Window {
    fn new(start: Instant) -> Self {
        Window {
            start,
            rtt_sum: 0.0,
            count: 0,
            backpressure: false,
            reached: false,
        }
    }
}

/// What a closed window showed.
#[derive(Debug, Clone, Copy)]
struct Verdict {
    backpressure: bool,
    reached: bool,
    /// ARC's test: the RTT at or above `mean + k·σ`.
    slow: bool,
    /// ARC's condition to grow: the RTT at or below the moving mean.
    at_or_below_mean: bool,
    /// Ours: the RTT above `QUEUEING ×` the baseline (requests queue at the sink).
    queueing: bool,
    /// Ours: the RTT within `UNLOADED ×` the baseline (room to grow).
    unloaded: bool,
}

/// Ours: a window's RTT above this multiple of the baseline means the sink queues requests.
const QUEUEING: f64 = 1.25;
/// Ours: the limit grows only while the RTT stays within this multiple of the baseline.
const UNLOADED: f64 = 1.1;
/// Ours: the baseline (the lowest RTT seen) drifts up by this factor per window while the limit
/// is at its floor, so a sink whose own latency grew is not taken for a queueing one for ever.
/// Above the floor it does not drift: a queue that persists must not become the new normal.
const BASELINE_DRIFT: f64 = 1.05;
/// Ours: past the last ceiling the step doubles every this many growing windows.
const PROBE_WINDOWS: u32 = 4;
/// σ is taken as at least this fraction of the mean, so a perfectly steady RTT (a simulated
/// sink) still has a threshold above it.
const MIN_DEVIATION: f64 = 0.02;

/// The controller: the window, the RTT statistics and the rule's own state.
#[derive(Debug)]
struct Control {
    config: LimitConfig,
    window: Window,
    rtt: Ewma,
    baseline: Option<f64>,
    slow_start: bool,
    hold: u32,
    /// Ours: the limit at the last backpressure.
    ceiling: Option<usize>,
    /// Ours: growing windows in a row at or past the ceiling.
    probe_run: u32,
}

impl Control {
    fn new(mut config: LimitConfig) -> Self {
        config.max = config.max.max(1);
        if !(config.decrease > 0.0 && config.decrease < 1.0) {
            config.decrease = 0.9;
        }
        if !(config.ewma_alpha > 0.0 && config.ewma_alpha <= 1.0) {
            config.ewma_alpha = 0.4;
        }
        if !config.rtt_deviations.is_finite() || config.rtt_deviations < 0.0 {
            config.rtt_deviations = 2.5;
        }
        Control {
            slow_start: config.controller == Controller::Adaptive,
            config,
            window: Window::new(Instant::now()),
            rtt: Ewma::default(),
            baseline: None,
            hold: 0,
            ceiling: None,
            probe_run: 0,
        }
    }

    fn initial(&self) -> usize {
        self.config.initial.clamp(1, self.config.max)
    }

    fn acquired(&mut self, reached: bool) {
        self.window.reached |= reached;
    }

    /// Counts one attempt; closes the window when it is due and returns the new limit. Only
    /// successes are timed: a rejection comes back fast and says nothing of the service time.
    fn report(&mut self, now: Instant, rtt: Duration, backpressure: bool, limit: usize) -> usize {
        if backpressure {
            self.window.backpressure = true;
        } else {
            self.window.count += 1;
            self.window.rtt_sum += rtt.as_secs_f64();
        }
        let length = Duration::from_secs_f64(self.rtt.mean.max(0.0)).max(self.config.min_window);
        if now.saturating_duration_since(self.window.start) < length {
            return limit;
        }
        let verdict = self.close(now, limit);
        let next = match self.config.controller {
            Controller::Arc => self.arc(verdict, limit),
            Controller::Adaptive => self.adaptive(verdict, limit),
        };
        next.clamp(1, self.config.max)
    }

    /// Ends the window: judges it against the RTTs before it, then adds it to them.
    fn close(&mut self, now: Instant, limit: usize) -> Verdict {
        let w = std::mem::replace(&mut self.window, Window::new(now));
        let mut v = Verdict {
            backpressure: w.backpressure,
            reached: w.reached,
            slow: false,
            at_or_below_mean: true,
            queueing: false,
            unloaded: true,
        };
        if w.count == 0 {
            return v;
        }
        let rtt = w.rtt_sum / w.count as f64;
        if self.rtt.seen {
            let mean = self.rtt.mean;
            let sd = self.rtt.var.max(0.0).sqrt().max(mean * MIN_DEVIATION);
            v.slow = rtt >= mean + self.config.rtt_deviations * sd;
            // A relative tolerance of 1e-9: the mean of equal RTTs may round above them.
            v.at_or_below_mean = rtt <= mean * (1.0 + 1e-9);
        }
        let drift = if limit <= 1 { BASELINE_DRIFT } else { 1.0 };
        let baseline = self.baseline.map_or(rtt, |b| (b * drift).min(rtt));
        v.queueing = rtt > baseline * QUEUEING;
        v.unloaded = rtt <= baseline * UNLOADED;
        self.baseline = Some(baseline);
        self.rtt.push(rtt, self.config.ewma_alpha);
        v
    }

    fn shrink(&self, limit: usize) -> usize {
        ((limit as f64 * self.config.decrease).floor() as usize).max(1)
    }

    fn arc(&mut self, v: Verdict, limit: usize) -> usize {
        if v.backpressure || v.slow {
            self.shrink(limit)
        } else if v.reached && v.at_or_below_mean {
            limit + 1
        } else {
            limit
        }
    }

    fn adaptive(&mut self, v: Verdict, limit: usize) -> usize {
        if v.backpressure || v.queueing {
            self.hold = self.config.hold;
            self.probe_run = 0;
            self.ceiling = Some(limit);
            if self.slow_start {
                self.slow_start = false;
                return (limit / 2).max(1);
            }
            return self.shrink(limit);
        }
        if !v.reached || !v.unloaded {
            return limit;
        }
        if self.slow_start {
            return limit.saturating_mul(2);
        }
        if self.hold > 0 {
            self.hold -= 1;
            return limit;
        }
        match self.ceiling {
            // Below the limit that last met backpressure: halve the distance to it.
            Some(c) if limit < c => limit + ((c - limit) / 2).max(1),
            // At or past it: probe, by 1 for PROBE_WINDOWS windows, then 2, 4, 8…
            _ => {
                self.probe_run += 1;
                let doublings = (self.probe_run / PROBE_WINDOWS).min(16);
                limit + (1usize << doublings).min((limit / 4).max(1))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(controller: Controller, max: usize) -> Limiter {
        Limiter::new(LimitConfig::new(controller, max))
    }

    #[tokio::test(start_paused = true)]
    async fn permits_are_released_on_drop_and_cancel() {
        let l = limiter(Controller::Arc, 4);
        let p = l.acquire().await;
        assert!(l.try_acquire().is_none(), "ARC starts at one permit");
        // A waiting acquire that is cancelled takes nothing.
        let waiting = tokio::time::timeout(Duration::from_millis(5), l.acquire()).await;
        assert!(waiting.is_err());
        drop(p);
        assert_eq!(l.readings().in_flight, 0);
        let p = l.acquire().await;
        assert_eq!(l.readings().in_flight, 1);
        // A waiter is woken by a release.
        let l2 = l.clone();
        let waiter = tokio::spawn(async move { l2.acquire().await.report(Outcome::Ignored) });
        tokio::task::yield_now().await;
        p.report(Outcome::Ignored);
        waiter.await.unwrap();
        assert_eq!(l.readings().in_flight, 0);
    }

    #[tokio::test(start_paused = true)]
    async fn backpressure_shrinks_once_per_window_and_never_below_one() {
        let l = Limiter::new(LimitConfig {
            initial: 50,
            ..LimitConfig::new(Controller::Arc, 64)
        });
        tokio::time::advance(Duration::from_millis(10)).await;
        // Twenty rejections in one window: one decrease.
        let permits: Vec<_> = (0..20).map(|_| l.try_acquire().unwrap()).collect();
        for p in permits {
            p.report(Outcome::Backpressure);
        }
        assert_eq!(l.readings().limit, 45);
        assert_eq!(l.readings().decreases, 1);
        for _ in 0..200 {
            tokio::time::advance(Duration::from_millis(10)).await;
            l.acquire().await.report(Outcome::Backpressure);
        }
        assert_eq!(l.readings().limit, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn the_limit_never_exceeds_max() {
        for controller in [Controller::Arc, Controller::Adaptive] {
            let l = limiter(controller, 8);
            for _ in 0..100 {
                let limit = l.readings().limit;
                let permits: Vec<_> = (0..limit).map(|_| l.try_acquire().unwrap()).collect();
                assert!(l.try_acquire().is_none());
                tokio::time::advance(Duration::from_millis(10)).await;
                for p in permits {
                    p.report(Outcome::Success);
                }
            }
            assert_eq!(l.readings().limit, 8, "{controller:?}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn an_unreached_limit_does_not_grow() {
        let l = limiter(Controller::Adaptive, 64);
        for _ in 0..10 {
            let p = l.acquire().await;
            tokio::time::advance(Duration::from_millis(10)).await;
            p.report(Outcome::Success);
        }
        let grown = l.readings().limit;
        // One attempt at a time from now on, below the limit.
        for _ in 0..50 {
            let p = l.acquire().await;
            tokio::time::advance(Duration::from_millis(10)).await;
            p.report(Outcome::Success);
        }
        assert!(grown > 1);
        assert_eq!(l.readings().limit, grown);
    }
}
