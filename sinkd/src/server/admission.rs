//! Admission: what a write costs against the token bucket. Admitted at once when tokens are
//! there; otherwise held until they come (`--on-limit delay`, at most `--max-held` at once,
//! 503 beyond) or refused with 429, `Retry-After` and the IETF `RateLimit` headers
//! (`--on-limit reject`). While paused, `delay` holds and `reject` answers 503.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use http::header::RETRY_AFTER;
use http::{HeaderValue, Response, StatusCode};

use super::reply::{Body, error};
use super::state::{State, lock};
use crate::config::OnLimit;

/// Decrements the held gauge however the held request ends (the client may hang up).
struct Held<'a>(&'a State);

impl<'a> Held<'a> {
    fn enter(state: &'a State) -> Option<Held<'a>> {
        let max = state.config.max_held;
        let mut current = state.held.load(Ordering::Relaxed);
        loop {
            if current >= max {
                return None;
            }
            match state.held.compare_exchange_weak(
                current,
                current + 1,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => break,
                Err(actual) => current = actual,
            }
        }
        state.metrics.held.inc();
        state.metrics.held_total.inc();
        Some(Held(state))
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.0.held.fetch_sub(1, Ordering::AcqRel);
        self.0.metrics.held.dec();
    }
}

/// Admits a write on its client's credit: whether it had enough (then no tokens are taken).
/// Never while paused: a paused sink admits nothing.
fn on_credit(state: &State, credit: Option<u64>, cost: f64) -> bool {
    let Some(id) = credit else { return false };
    if *state.paused.borrow() {
        return false;
    }
    let now = state.now();
    let spent = lock(&state.limiter).ledger.spend(id, cost, now);
    if spent {
        state.metrics.writes_on_credit.inc();
    }
    spent
}

/// Waits for or refuses the tokens a write costs; a write on credit (`credit`: its client's
/// account) is admitted at once when the account holds its cost. `Ok(true)`: admitted on credit.
pub(super) async fn admit(
    state: &Arc<State>,
    cost: f64,
    credit: Option<u64>,
) -> Result<bool, Response<Body>> {
    if state.unlimited.load(Ordering::Acquire) && !*state.paused.borrow() {
        return Ok(false);
    }
    if on_credit(state, credit, cost) {
        return Ok(true);
    }
    admit_on_tokens(state, cost).await.map(|()| false)
}

async fn admit_on_tokens(state: &Arc<State>, cost: f64) -> Result<(), Response<Body>> {
    match state.config.on_limit {
        OnLimit::Reject => {
            if *state.paused.borrow() {
                state.metrics.reject("paused");
                return Err(with_retry_after(
                    error(StatusCode::SERVICE_UNAVAILABLE, "the sink is paused"),
                    1,
                ));
            }
            let mut l = lock(&state.limiter);
            let now = state.now();
            let Some(bucket) = l.bucket.as_mut() else {
                return Ok(());
            };
            match bucket.try_take(now, cost) {
                Ok(()) => Ok(()),
                Err(wait) => {
                    let rate = bucket.rate();
                    let tokens = bucket.tokens(now);
                    drop(l);
                    state.metrics.reject("rate_limited");
                    Err(rate_limited(rate, tokens, wait))
                }
            }
        }
        OnLimit::Delay => {
            let mut paused = state.paused.subscribe();
            if !*paused.borrow_and_update() {
                let mut l = lock(&state.limiter);
                let now = state.now();
                match l.bucket.as_mut() {
                    None => return Ok(()),
                    Some(b) => {
                        if b.try_take(now, cost).is_ok() {
                            return Ok(());
                        }
                    }
                }
            }
            // No tokens now: hold the request, if there is room to hold it, without spending
            // tokens on a request that will be refused.
            let Some(_held) = Held::enter(state) else {
                state.metrics.reject("held_full");
                let r = error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "too many held requests (--max-held)",
                );
                return Err(with_retry_after(r, 1));
            };
            let _ = paused.wait_for(|p| !*p).await;
            let wait = {
                let mut l = lock(&state.limiter);
                let now = state.now();
                l.bucket
                    .as_mut()
                    .map_or(Duration::ZERO, |b| b.reserve(now, cost))
            };
            tokio::time::sleep(wait).await;
            // A request whose turn came during a pause waits for the resume.
            let _ = paused.wait_for(|p| !*p).await;
            Ok(())
        }
    }
}

pub(super) fn with_retry_after(mut r: Response<Body>, secs: u64) -> Response<Body> {
    r.headers_mut().insert(RETRY_AFTER, HeaderValue::from(secs));
    r
}

/// 429 with `Retry-After` and the IETF draft's `RateLimit` / `RateLimit-Policy` headers.
fn rate_limited(rate: f64, tokens: f64, wait: Duration) -> Response<Body> {
    // A wait under a second rounds up: Retry-After has whole seconds.
    let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
    let r = error(
        StatusCode::TOO_MANY_REQUESTS,
        &format!("over the limit of {rate} writes/s; retry in {wait:?}"),
    );
    let mut r = with_retry_after(r, secs);
    rate_limit_headers(&mut r, rate, tokens, secs);
    r
}

/// The IETF draft's `RateLimit-Policy` (the quota: `rate` per 1 s window) and `RateLimit`
/// (`r`: writes the bucket would admit now; `t`: seconds until it has one, or 0).
fn rate_limit_headers(r: &mut Response<Body>, rate: f64, tokens: f64, secs: u64) {
    let h = r.headers_mut();
    let policy = format!("\"sinkd\";q={};w=1", rate.round() as u64);
    let remaining = tokens.max(0.0).floor() as u64;
    if let Ok(v) = HeaderValue::from_str(&policy) {
        h.insert("ratelimit-policy", v);
    }
    if let Ok(v) = HeaderValue::from_str(&format!("\"sinkd\";r={remaining};t={secs}")) {
        h.insert("ratelimit", v);
    }
}

/// Advertises the bucket on an answer that has no `RateLimit` yet: how many writes it would
/// admit now. An advertisement, not a promise (other clients may take them first); a credit
/// account is the promise. Nothing without a limit.
pub(super) fn advertise(state: &State, r: &mut Response<Body>) {
    if r.headers().contains_key("ratelimit") || state.unlimited.load(Ordering::Acquire) {
        return;
    }
    let (rate, tokens) = {
        let mut l = lock(&state.limiter);
        let now = state.now();
        match l.bucket.as_mut() {
            Some(b) => (b.rate(), b.tokens(now)),
            None => return,
        }
    };
    let secs = if tokens >= 1.0 {
        0
    } else {
        ((1.0 - tokens) / rate).ceil().max(1.0) as u64
    };
    rate_limit_headers(r, rate, tokens, secs);
}
