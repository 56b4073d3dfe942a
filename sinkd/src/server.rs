//! The HTTP edge: routing, body limits, admission through the token bucket, faults, audit.

use std::convert::Infallible;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use http::header::{ALLOW, AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, RETRY_AFTER};
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use serde::Deserialize;
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};
use tokio::time::Instant;

use crate::audit::{Audit, Stats};
use crate::bucket::TokenBucket;
use crate::config::{Config, Cost, OnLimit};
use crate::metrics::Metrics;
use crate::wire::{self, Event, Format};

type Body = Full<Bytes>;

/// A running sinkd: its address, its audit, and the way to stop it.
#[derive(Debug)]
pub struct Running {
    addr: SocketAddr,
    state: Arc<State>,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Running {
    /// The bound address (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://ADDR`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The audit so far.
    pub fn stats(&self, expected: Option<(u64, u64)>) -> Stats {
        self.state.audit().stats(expected)
    }

    /// Stops accepting connections, lets in-flight requests finish (up to 10 s), flushes the
    /// event log and returns the final audit.
    pub async fn shutdown(mut self) -> Stats {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.task).await;
        self.state.flush_log();
        self.state.audit().stats(None)
    }
}

/// Binds `config.listen` and serves until [`Running::shutdown`].
///
/// # Errors
/// When the address cannot be bound or the event log cannot be opened.
pub async fn start(config: Config) -> std::io::Result<Running> {
    let listener = TcpListener::bind(config.listen).await?;
    let addr = listener.local_addr()?;
    let state = Arc::new(State::new(config)?);
    if let Some((at, duration, rate)) = state.config.stall {
        let s = state.clone();
        tokio::spawn(async move {
            tokio::time::sleep(at).await;
            s.stall(rate, duration);
        });
    }
    let (stop, stopped) = oneshot::channel();
    let task = tokio::spawn(serve(listener, state.clone(), stopped));
    Ok(Running {
        addr,
        state,
        stop: Some(stop),
        task,
    })
}

async fn serve(listener: TcpListener, state: Arc<State>, mut stopped: oneshot::Receiver<()>) {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(state.config.header_timeout);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
            _ = &mut stopped => break,
        };
        let _ = stream.set_nodelay(true);
        let s = state.clone();
        let service = service_fn(move |req| handle(s.clone(), req));
        let connection = builder.serve_connection(TokioIo::new(stream), service);
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!("connection ended: {e}");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(Duration::from_secs(10), graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("in-flight requests did not finish within 10 s");
    }
}

#[derive(Debug)]
struct Limiter {
    /// `None`: no limit.
    bucket: Option<TokenBucket>,
    base: Option<f64>,
    /// Bumped by every rate change, so a stall's restore does not undo a later change.
    generation: u64,
}

#[derive(Debug)]
struct State {
    config: Config,
    origin: Instant,
    limiter: Mutex<Limiter>,
    paused: watch::Sender<bool>,
    held: AtomicUsize,
    /// No rate limit right now: admission needs neither the lock nor the clock.
    unlimited: AtomicBool,
    audit: Mutex<Audit>,
    metrics: Metrics,
    rng: Mutex<u64>,
    log: Option<Mutex<std::io::BufWriter<std::fs::File>>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl State {
    fn new(config: Config) -> std::io::Result<State> {
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

    fn now(&self) -> Duration {
        self.origin.elapsed()
    }

    fn audit(&self) -> MutexGuard<'_, Audit> {
        lock(&self.audit)
    }

    fn flush_log(&self) {
        if let Some(log) = &self.log {
            if let Err(e) = lock(log).flush() {
                tracing::warn!("cannot flush the event log: {e}");
            }
        }
    }

    /// Sets the current rate (and the base it returns to after a stall).
    fn set_rate(&self, rate: Option<f64>) {
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
    fn stall(self: &Arc<Self>, rate: f64, duration: Duration) {
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

    fn set_paused(&self, paused: bool) {
        self.paused.send_replace(paused);
        self.metrics.paused.set(i64::from(paused));
    }

    /// Seeded draw for `--fail-rate` (splitmix64).
    fn inject_failure(&self) -> bool {
        if self.config.fail_rate <= 0.0 {
            return false;
        }
        let draw = splitmix::step(&mut lock(&self.rng));
        splitmix::unit(draw) < self.config.fail_rate
    }
}

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

async fn handle(state: Arc<State>, req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    state.metrics.in_flight.inc();
    let response = route(&state, req).await;
    state.metrics.in_flight.dec();
    Ok(response)
}

#[derive(Clone, Copy)]
enum Route {
    Write,
    WriteBatch,
    Metrics,
    Stats,
    Health,
    Admin,
}

async fn route(state: &Arc<State>, req: Request<Incoming>) -> Response<Body> {
    let path = req.uri().path();
    let (route, allowed) = match path {
        "/write" => (Route::Write, Method::POST),
        "/write/batch" => (Route::WriteBatch, Method::POST),
        "/metrics" => (Route::Metrics, Method::GET),
        "/stats" => (Route::Stats, Method::GET),
        "/healthz" => (Route::Health, Method::GET),
        p if p.starts_with("/admin/") => {
            if state.config.admin_token.is_none() {
                state.metrics.reject("not_found");
                return error(
                    StatusCode::NOT_FOUND,
                    "admin endpoints are off (start sinkd with --admin-token)",
                );
            }
            (Route::Admin, Method::POST)
        }
        _ => {
            state.metrics.reject("not_found");
            return error(StatusCode::NOT_FOUND, &format!("no such endpoint: {path}"));
        }
    };
    if req.method() != allowed {
        state.metrics.reject("method_not_allowed");
        let mut r = error(
            StatusCode::METHOD_NOT_ALLOWED,
            &format!("{path} takes {allowed}"),
        );
        let allow = if allowed == Method::GET {
            "GET"
        } else {
            "POST"
        };
        r.headers_mut()
            .insert(ALLOW, HeaderValue::from_static(allow));
        return r;
    }
    match route {
        Route::Write => write(state, req, false).await,
        Route::WriteBatch => write(state, req, true).await,
        Route::Metrics => metrics(state),
        Route::Stats => stats(state, req.uri().query()),
        Route::Health => json(StatusCode::OK, r#"{"status":"ok"}"#.into()),
        Route::Admin => {
            let path = path.to_owned();
            admin(state, req, &path).await
        }
    }
}

fn json(status: StatusCode, body: String) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(wire::JSON));
    r
}

fn error(status: StatusCode, reason: &str) -> Response<Body> {
    json(
        status,
        serde_json::json!({ "error": status.canonical_reason().unwrap_or(""), "reason": reason })
            .to_string(),
    )
}

/// Reads the body, refusing more than `--max-body` bytes.
async fn read_body(state: &State, req: Request<Incoming>) -> Result<Bytes, Response<Body>> {
    let max = state.config.max_body;
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max) {
        state.metrics.reject("too_large");
        return Err(error(
            StatusCode::PAYLOAD_TOO_LARGE,
            &format!("body larger than --max-body ({max} bytes)"),
        ));
    }
    let limit = usize::try_from(max).unwrap_or(usize::MAX);
    match Limited::new(req.into_body(), limit).collect().await {
        Ok(body) => Ok(body.to_bytes()),
        Err(e)
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            state.metrics.reject("too_large");
            Err(error(
                StatusCode::PAYLOAD_TOO_LARGE,
                &format!("body larger than --max-body ({max} bytes)"),
            ))
        }
        Err(e) => {
            state.metrics.reject("malformed");
            Err(error(
                StatusCode::BAD_REQUEST,
                &format!("cannot read the body: {e}"),
            ))
        }
    }
}

async fn write(state: &Arc<State>, req: Request<Incoming>, batch: bool) -> Response<Body> {
    let started = Instant::now();
    let content_type = req
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let Some(format) = Format::from_content_type(content_type) else {
        state.metrics.reject("unsupported_media_type");
        return error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            &format!(
                "Content-Type must be {} or {}, got `{content_type}`",
                wire::JSON,
                wire::BINARY
            ),
        );
    };
    let body = match read_body(state, req).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let decoded = if batch {
        wire::decode_batch(&body, format)
    } else {
        wire::decode_one(&body, format).map(|e| vec![e])
    };
    let events = match decoded {
        Ok(events) => events,
        Err(e) => {
            state.metrics.reject("malformed");
            return error(StatusCode::BAD_REQUEST, &e.0);
        }
    };
    if state.inject_failure() {
        state.metrics.reject("injected");
        return error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "injected failure (--fail-rate)",
        );
    }
    let cost = match state.config.cost {
        Cost::PerRequest => 1.0,
        Cost::PerEvent => events.len() as f64,
    };
    if let Err(refusal) = admit(state, cost).await {
        return refusal;
    }
    if !state.config.latency.is_zero() {
        tokio::time::sleep(state.config.latency).await;
    }
    accept(state, &events);
    state
        .metrics
        .duration
        .observe(started.elapsed().as_secs_f64());
    json(
        StatusCode::OK,
        format!(r#"{{"accepted":{}}}"#, events.len()),
    )
}

/// Waits for or refuses the tokens a write costs.
async fn admit(state: &Arc<State>, cost: f64) -> Result<(), Response<Body>> {
    if state.unlimited.load(Ordering::Acquire) && !*state.paused.borrow() {
        return Ok(());
    }
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

fn with_retry_after(mut r: Response<Body>, secs: u64) -> Response<Body> {
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
    let h = r.headers_mut();
    let policy = format!("\"sinkd\";q={};w=1", rate.round() as u64);
    let remaining = tokens.max(0.0).floor() as u64;
    if let Ok(v) = HeaderValue::from_str(&policy) {
        h.insert("ratelimit-policy", v);
    }
    if let Ok(v) = HeaderValue::from_str(&format!("\"sinkd\";r={remaining};t={secs}")) {
        h.insert("ratelimit", v);
    }
    r
}

fn accept(state: &State, events: &[Event]) {
    state.metrics.writes_accepted.inc();
    state.metrics.events_accepted.inc_by(events.len() as u64);
    let (duplicates, violations) = {
        let mut audit = state.audit();
        let before = audit.stats_counts();
        for e in events {
            audit.record(e.id, e.key, e.seq, e.payload.len());
        }
        let after = audit.stats_counts();
        (after.0 - before.0, after.1 - before.1)
    };
    state.metrics.audit_received.inc_by(events.len() as u64);
    state.metrics.audit_duplicates.inc_by(duplicates);
    state.metrics.audit_order_violations.inc_by(violations);
    if let Some(log) = &state.log {
        let mut log = lock(log);
        for e in events {
            let line = serde_json::to_string(e).unwrap_or_default();
            if let Err(err) = writeln!(log, "{line}") {
                tracing::warn!("cannot append to the event log: {err}");
                break;
            }
        }
    }
}

fn metrics(state: &State) -> Response<Body> {
    {
        let mut l = lock(&state.limiter);
        let now = state.now();
        let tokens = l.bucket.as_mut().map_or(0.0, |b| b.tokens(now));
        state.metrics.tokens.set(tokens);
    }
    state
        .metrics
        .audit_distinct
        .set(state.audit().stats(None).distinct_ids as i64);
    let mut r = Response::new(Full::new(Bytes::from(state.metrics.encode())));
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
    );
    r
}

/// The widest id range `/stats` will check for missing ids.
const MAX_RANGE: u64 = 1 << 32;

fn stats(state: &State, query: Option<&str>) -> Response<Body> {
    let mut from = None;
    let mut to = None;
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let parsed = v.parse::<u64>();
        match (k, parsed) {
            ("from", Ok(n)) => from = Some(n),
            ("to", Ok(n)) => to = Some(n),
            ("from" | "to", Err(_)) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    &format!("`{k}` must be an id, got `{v}`"),
                );
            }
            _ => {
                return error(
                    StatusCode::BAD_REQUEST,
                    &format!("unknown parameter `{k}` (use from and to)"),
                );
            }
        }
    }
    let expected = match (from, to) {
        (None, None) => None,
        (Some(f), Some(t)) if f <= t && t - f <= MAX_RANGE => Some((f, t)),
        (Some(_), Some(_)) => {
            return error(
                StatusCode::BAD_REQUEST,
                &format!("need from <= to and at most {MAX_RANGE} ids"),
            );
        }
        _ => return error(StatusCode::BAD_REQUEST, "give both from and to"),
    };
    let s = state.audit().stats(expected);
    json(
        StatusCode::OK,
        serde_json::to_string(&s).unwrap_or_default(),
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RateBody {
    rate: Option<f64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StallBody {
    rate: f64,
    seconds: f64,
}

async fn admin(state: &Arc<State>, req: Request<Incoming>, path: &str) -> Response<Body> {
    let token = state.config.admin_token.as_deref().unwrap_or_default();
    let given = req
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if !given.is_some_and(|g| constant_time_eq(g.as_bytes(), token.as_bytes())) {
        state.metrics.reject("unauthorized");
        let mut r = error(
            StatusCode::UNAUTHORIZED,
            "admin endpoints need Authorization: Bearer <--admin-token>",
        );
        r.headers_mut()
            .insert("www-authenticate", HeaderValue::from_static("Bearer"));
        return r;
    }
    let body = match read_body(state, req).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let bad = |e: serde_json::Error, shape: &str| {
        state.metrics.reject("malformed");
        error(StatusCode::BAD_REQUEST, &format!("expected {shape}: {e}"))
    };
    match path {
        "/admin/rate" => {
            let b: RateBody = match serde_json::from_slice(&body) {
                Ok(b) => b,
                Err(e) => return bad(e, r#"{"rate": writes per second, or null for no limit}"#),
            };
            if let Some(r) = b.rate {
                if !(r.is_finite() && r > 0.0) {
                    return error(
                        StatusCode::BAD_REQUEST,
                        "rate must be above 0 (or null for no limit)",
                    );
                }
            }
            state.set_rate(b.rate);
            json(
                StatusCode::OK,
                serde_json::json!({ "rate": b.rate }).to_string(),
            )
        }
        "/admin/stall" => {
            let b: StallBody = match serde_json::from_slice(&body) {
                Ok(b) => b,
                Err(e) => return bad(e, r#"{"rate": writes per second, "seconds": duration}"#),
            };
            let Ok(duration) = Duration::try_from_secs_f64(b.seconds) else {
                return error(
                    StatusCode::BAD_REQUEST,
                    "seconds must be a non-negative duration",
                );
            };
            if !(b.rate.is_finite() && b.rate > 0.0) {
                return error(StatusCode::BAD_REQUEST, "rate must be above 0");
            }
            state.stall(b.rate, duration);
            json(
                StatusCode::OK,
                serde_json::json!({ "stall_rate": b.rate, "seconds": b.seconds }).to_string(),
            )
        }
        "/admin/pause" => {
            state.set_paused(true);
            json(StatusCode::OK, r#"{"paused":true}"#.into())
        }
        "/admin/resume" => {
            state.set_paused(false);
            json(StatusCode::OK, r#"{"paused":false}"#.into())
        }
        _ => {
            state.metrics.reject("not_found");
            error(
                StatusCode::NOT_FOUND,
                &format!("no such admin endpoint: {path} (rate, stall, pause, resume)"),
            )
        }
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
