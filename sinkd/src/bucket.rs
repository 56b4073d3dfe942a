//! The token bucket: a plain struct with the clock passed in, so it is tested without a runtime.
//!
//! Tokens accrue at `rate` per second up to `burst`. A write costs `cost` tokens (1 per request,
//! or 1 per event). Two ways to spend:
//! - [`try_take`](TokenBucket::try_take) (reject mode): succeeds only if the tokens are there;
//!   otherwise says how long until they will be.
//! - [`reserve`](TokenBucket::reserve) (delay mode): always takes the tokens, possibly going into
//!   debt, and says how long the caller must wait before proceeding. Reservations are served in
//!   order and the long-run rate is exact.
//!
//! A cost larger than the burst is still admissible: it needs a full bucket and leaves the
//! bucket in debt, which later writes pay back. So per-event costing never starves a big batch,
//! and the long-run rate still holds.

use std::time::Duration;

/// A token bucket. `now` is any monotonic time since an arbitrary origin.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Duration,
}

impl TokenBucket {
    /// A full bucket refilling at `rate` tokens/s, holding at most `burst`.
    ///
    /// `rate` must be positive and finite; `burst` at least 1 (both are clamped).
    pub fn new(rate: f64, burst: f64, now: Duration) -> Self {
        let burst = burst.max(1.0);
        TokenBucket {
            rate: sanitize(rate),
            burst,
            tokens: burst,
            last: now,
        }
    }

    fn refill(&mut self, now: Duration) {
        if now > self.last {
            let elapsed = (now - self.last).as_secs_f64();
            self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
            self.last = now;
        }
    }

    /// The tokens a write of `cost` needs before it may go: never more than a full bucket.
    fn needed(&self, cost: f64) -> f64 {
        cost.min(self.burst)
    }

    /// Takes `cost` tokens if they are available now; otherwise returns how long until they
    /// will be, without taking anything.
    pub fn try_take(&mut self, now: Duration, cost: f64) -> Result<(), Duration> {
        self.refill(now);
        let needed = self.needed(cost);
        if self.tokens + 1e-9 >= needed {
            self.tokens -= cost;
            Ok(())
        } else {
            Err(secs((needed - self.tokens) / self.rate))
        }
    }

    /// Takes `cost` tokens now, going into debt if needed, and returns how long the caller must
    /// wait before its write may proceed (zero if it may go at once).
    pub fn reserve(&mut self, now: Duration, cost: f64) -> Duration {
        self.refill(now);
        let needed = self.needed(cost);
        let wait = if self.tokens >= needed {
            0.0
        } else {
            (needed - self.tokens) / self.rate
        };
        self.tokens -= cost;
        secs(wait)
    }

    /// Changes the rate from `now` on. Tokens accrued so far are kept; the burst is unchanged.
    pub fn set_rate(&mut self, now: Duration, rate: f64) {
        self.refill(now);
        self.rate = sanitize(rate);
    }

    /// Changes rate and capacity from `now` on; tokens above the new capacity are dropped.
    pub fn set_limits(&mut self, now: Duration, rate: f64, burst: f64) {
        self.refill(now);
        self.rate = sanitize(rate);
        self.burst = burst.max(1.0);
        self.tokens = self.tokens.min(self.burst);
    }

    /// The refill rate, tokens per second.
    pub fn rate(&self) -> f64 {
        self.rate
    }

    /// The capacity.
    pub fn burst(&self) -> f64 {
        self.burst
    }

    /// Tokens available at `now` (negative while in debt).
    pub fn tokens(&mut self, now: Duration) -> f64 {
        self.refill(now);
        self.tokens
    }
}

fn sanitize(rate: f64) -> f64 {
    if rate.is_finite() && rate > 0.0 {
        rate
    } else {
        f64::MIN_POSITIVE
    }
}

fn secs(s: f64) -> Duration {
    Duration::try_from_secs_f64(s.max(0.0)).unwrap_or(Duration::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn starts_full_and_refuses_past_the_burst() {
        let mut b = TokenBucket::new(100.0, 10.0, ms(0));
        for _ in 0..10 {
            assert!(b.try_take(ms(0), 1.0).is_ok());
        }
        let wait = b.try_take(ms(0), 1.0).unwrap_err();
        assert_eq!(wait, ms(10));
    }

    #[test]
    fn refills_at_the_rate_and_caps_at_the_burst() {
        let mut b = TokenBucket::new(100.0, 10.0, ms(0));
        for _ in 0..10 {
            b.try_take(ms(0), 1.0).unwrap();
        }
        assert!((b.tokens(ms(50)) - 5.0).abs() < 1e-9);
        assert!((b.tokens(ms(10_000)) - 10.0).abs() < 1e-9);
    }

    #[test]
    fn long_run_rate_is_exact_under_twice_the_offer() {
        // Offer 2 writes per token period for 100 s at 2,000/s; count what passes after the
        // initial burst.
        let rate = 2_000.0;
        let mut b = TokenBucket::new(rate, rate / 10.0, ms(0));
        let step = Duration::from_micros(250); // 4,000 offers/s
        let mut now = Duration::ZERO;
        let mut accepted = 0u64;
        while now < Duration::from_secs(100) {
            if b.try_take(now, 1.0).is_ok() {
                accepted += 1;
            }
            now += step;
        }
        let expected = rate * 100.0 + rate / 10.0;
        assert!(
            (accepted as f64 - expected).abs() <= 2.0,
            "accepted {accepted}, expected {expected}"
        );
    }

    #[test]
    fn reservations_queue_in_order_and_keep_the_rate() {
        let mut b = TokenBucket::new(10.0, 1.0, ms(0));
        assert_eq!(b.reserve(ms(0), 1.0), ms(0));
        assert_eq!(b.reserve(ms(0), 1.0), ms(100));
        assert_eq!(b.reserve(ms(0), 1.0), ms(200));
        assert_eq!(b.reserve(ms(250), 1.0), ms(50));
    }

    #[test]
    fn a_cost_above_the_burst_is_admitted_from_a_full_bucket_and_paid_back() {
        let mut b = TokenBucket::new(100.0, 10.0, ms(0));
        assert!(b.try_take(ms(0), 50.0).is_ok());
        assert!((b.tokens(ms(0)) + 40.0).abs() < 1e-9);
        // The debt (40) plus one token must refill before the next write: 410 ms.
        assert_eq!(b.try_take(ms(0), 1.0).unwrap_err(), ms(410));
        assert!(b.try_take(ms(410), 1.0).is_ok());
    }

    #[test]
    fn a_rate_change_applies_from_now() {
        let mut b = TokenBucket::new(1_000.0, 1.0, ms(0));
        b.try_take(ms(0), 1.0).unwrap();
        b.set_rate(ms(0), 10.0);
        assert_eq!(b.try_take(ms(0), 1.0).unwrap_err(), ms(100));
    }

    #[test]
    fn shrinking_the_limits_drops_the_excess_tokens() {
        let mut b = TokenBucket::new(1_000.0, 100.0, ms(0));
        b.set_limits(ms(0), 10.0, 1.0);
        assert!(b.try_take(ms(0), 1.0).is_ok());
        assert_eq!(b.try_take(ms(0), 1.0).unwrap_err(), ms(100));
    }

    #[test]
    fn nonsense_rates_do_not_panic() {
        let mut b = TokenBucket::new(f64::NAN, -3.0, ms(0));
        assert!(b.try_take(ms(0), 1.0).is_ok());
        assert!(b.try_take(ms(1), 1.0).is_err());
        b.set_rate(ms(2), f64::INFINITY);
        let _ = b.reserve(ms(3), 1.0);
    }
}
