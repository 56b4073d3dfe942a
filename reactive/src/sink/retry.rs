use std::future::Future;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::DeadLetters;

/// Why one attempt failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// Worth retrying: 429, 5xx, a connection error. `retry_after` is the server's
    /// `Retry-After`; the retry never comes sooner.
    Retriable {
        /// What happened.
        reason: String,
        /// The earliest the server wants a retry.
        retry_after: Option<Duration>,
    },
    /// Not worth retrying (a 4xx other than 429: the request itself is wrong): dead-lettered at
    /// once.
    Fatal {
        /// What happened.
        reason: String,
    },
}

/// How hard to retry.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Attempts per item, the first included (at least 1).
    pub max_attempts: u32,
    /// The first backoff; each retry doubles it.
    pub base: Duration,
    /// The longest backoff.
    pub max_backoff: Duration,
    /// The random part of each backoff, from 0 (none) to 1 (anywhere in `0..=backoff`).
    pub jitter: f64,
    /// Retry budget: each first attempt earns this many retry tokens (0.2 = retries may add 20%
    /// to the load)…
    pub budget_ratio: f64,
    /// …on top of this many tokens to start with, which is also the floor the budget refills to
    /// each second so that a quiet period does not leave it empty.
    pub budget_reserve: f64,
    /// Seed of the jitter.
    pub seed: u64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 5,
            base: Duration::from_millis(50),
            max_backoff: Duration::from_secs(5),
            jitter: 0.5,
            budget_ratio: 0.2,
            budget_reserve: 10.0,
            seed: 1,
        }
    }
}

/// What became of an item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// Written, after this many attempts.
    Delivered {
        /// Attempts made.
        attempts: u32,
    },
    /// Sent to the dead-letter file with this reason.
    DeadLettered {
        /// Why.
        reason: String,
        /// Attempts made.
        attempts: u32,
    },
}

/// Counters of a [`Retry`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RetryStats {
    /// Items delivered.
    pub delivered: u64,
    /// Retries made (attempts after the first).
    pub retries: u64,
    /// Items dead-lettered.
    pub dead_lettered: u64,
    /// Retries refused because the budget was empty.
    pub budget_exhausted: u64,
}

/// Retries with backoff, jitter, `Retry-After` and a budget, then dead letters. Share it
/// between workers behind an `Arc`.
pub struct Retry<T> {
    policy: RetryPolicy,
    dead: DeadLetters<T>,
    budget: Mutex<Budget>,
    rng: AtomicU64,
    delivered: AtomicU64,
    retries: AtomicU64,
    dead_lettered: AtomicU64,
    budget_exhausted: AtomicU64,
}

#[derive(Debug)]
struct Budget {
    tokens: f64,
    refilled: tokio::time::Instant,
}

impl<T> std::fmt::Debug for Retry<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Retry")
            .field("policy", &self.policy)
            .field("stats", &self.stats())
            .finish()
    }
}

impl<T> Retry<T> {
    /// Retries by `policy`, dead-lettering into `dead`.
    pub fn new(policy: RetryPolicy, dead: DeadLetters<T>) -> Self {
        let tokens = policy.budget_reserve.max(0.0);
        Retry {
            rng: AtomicU64::new(policy.seed),
            policy,
            dead,
            budget: Mutex::new(Budget {
                tokens,
                refilled: tokio::time::Instant::now(),
            }),
            delivered: AtomicU64::new(0),
            retries: AtomicU64::new(0),
            dead_lettered: AtomicU64::new(0),
            budget_exhausted: AtomicU64::new(0),
        }
    }

    /// The counters so far.
    pub fn stats(&self) -> RetryStats {
        RetryStats {
            delivered: self.delivered.load(Ordering::Relaxed),
            retries: self.retries.load(Ordering::Relaxed),
            dead_lettered: self.dead_lettered.load(Ordering::Relaxed),
            budget_exhausted: self.budget_exhausted.load(Ordering::Relaxed),
        }
    }

    /// The dead-letter file.
    pub fn dead_letters(&self) -> &DeadLetters<T> {
        &self.dead
    }

    /// The backoff before retry number `retry` (1 for the first retry), jitter included.
    pub fn backoff(&self, retry: u32) -> Duration {
        let exp = self.policy.base.saturating_mul(
            1u32.checked_shl(retry.saturating_sub(1))
                .unwrap_or(u32::MAX),
        );
        let capped = exp.min(self.policy.max_backoff);
        let jitter = self.policy.jitter.clamp(0.0, 1.0);
        // Lock-free SplitMix64: each draw advances the shared state by one step.
        let state = self.rng.fetch_add(splitmix::GAMMA, Ordering::Relaxed);
        let unit = splitmix::unit(splitmix::next(state));
        capped.mul_f64(1.0 - jitter + jitter * unit)
    }

    fn deposit(&self) {
        let mut b = self.budget.lock().unwrap_or_else(|p| p.into_inner());
        let cap = self.policy.budget_reserve.max(0.0) * 10.0 + 1.0;
        b.tokens =
            (b.tokens + self.policy.budget_ratio.max(0.0)).min(cap.max(self.policy.budget_reserve));
    }

    fn withdraw(&self) -> bool {
        let mut b = self.budget.lock().unwrap_or_else(|p| p.into_inner());
        if b.refilled.elapsed() >= Duration::from_secs(1) {
            b.tokens = b.tokens.max(self.policy.budget_reserve);
            b.refilled = tokio::time::Instant::now();
        }
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    fn give_up(&self, item: &T, reason: String, attempts: u32) -> Delivery {
        self.dead_lettered.fetch_add(1, Ordering::Relaxed);
        // A failed dead-letter write is counted by the file itself and stays visible there.
        let _ = self.dead.record(item, &reason, attempts);
        Delivery::DeadLettered { reason, attempts }
    }

    /// Delivers `item` with `attempt`, retrying per the policy; ends delivered or dead-lettered.
    pub async fn run<F, Fut>(&self, item: T, mut attempt: F) -> Delivery
    where
        T: Clone,
        F: FnMut(T) -> Fut,
        Fut: Future<Output = Result<(), Failure>>,
    {
        self.deposit();
        let max = self.policy.max_attempts.max(1);
        let mut attempts = 0;
        loop {
            attempts += 1;
            match attempt(item.clone()).await {
                Ok(()) => {
                    self.delivered.fetch_add(1, Ordering::Relaxed);
                    return Delivery::Delivered { attempts };
                }
                Err(Failure::Fatal { reason }) => return self.give_up(&item, reason, attempts),
                Err(Failure::Retriable {
                    reason,
                    retry_after,
                }) => {
                    if attempts >= max {
                        return self.give_up(
                            &item,
                            format!("gave up after {attempts} attempts: {reason}"),
                            attempts,
                        );
                    }
                    if !self.withdraw() {
                        self.budget_exhausted.fetch_add(1, Ordering::Relaxed);
                        return self.give_up(
                            &item,
                            format!("retry budget exhausted: {reason}"),
                            attempts,
                        );
                    }
                    let wait = self.backoff(attempts).max(retry_after.unwrap_or_default());
                    self.retries.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }
}
