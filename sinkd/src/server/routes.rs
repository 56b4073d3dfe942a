//! Routing, the write path (content type, body limit, decoding, fault injection, admission,
//! latency, audit), and the read endpoints `/metrics` and `/stats`.

use std::io::Write;
use std::sync::Arc;

use bytes::Bytes;
use http::header::{ALLOW, CONTENT_TYPE};
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use tokio::time::Instant;

use super::admin::admin;
use super::admission::{admit, advertise};
use super::credit;
use super::reply::{Body, error, json, read_body};
use super::state::{State, lock};
use crate::config::Cost;
use crate::wire::{self, Event, Format};

pub(super) async fn handle(state: Arc<State>, req: Request<Incoming>) -> Response<Body> {
    state.metrics.in_flight.inc();
    let response = route(&state, req).await;
    state.metrics.in_flight.dec();
    response
}

#[derive(Clone, Copy)]
enum Route {
    Write,
    WriteBatch,
    Metrics,
    Stats,
    Health,
    Credit,
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
        "/credit" => (Route::Credit, Method::POST),
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
        Route::Credit => credit::poll(state, req.headers()),
        Route::Admin => {
            let path = path.to_owned();
            admin(state, req, &path).await
        }
    }
}

/// A write, and the grant on its answer when it carries a credit account.
async fn write(state: &Arc<State>, req: Request<Incoming>, batch: bool) -> Response<Body> {
    let ask = match credit::ask(req.headers()) {
        Ok(a) => a,
        Err(reason) => {
            state.metrics.reject("malformed");
            return error(StatusCode::BAD_REQUEST, &reason);
        }
    };
    let (mut response, used) = match write_events(state, req, batch, ask.map(|a| a.id)).await {
        Ok(answer) => answer,
        Err(refusal) => (refusal, false),
    };
    if let Some(ask) = ask {
        credit::answer(state, ask, used, &mut response);
    }
    advertise(state, &mut response);
    response
}

/// The write path; also says whether the write was admitted on credit.
async fn write_events(
    state: &Arc<State>,
    req: Request<Incoming>,
    batch: bool,
    credit: Option<u64>,
) -> Result<(Response<Body>, bool), Response<Body>> {
    let started = Instant::now();
    let content_type = req
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let Some(format) = Format::from_content_type(content_type) else {
        state.metrics.reject("unsupported_media_type");
        return Err(error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            &format!(
                "Content-Type must be {} or {}, got `{content_type}`",
                wire::JSON,
                wire::BINARY
            ),
        ));
    };
    let body = read_body(state, req).await?;
    let decoded = if batch {
        wire::decode_batch(&body, format)
    } else {
        wire::decode_one(&body, format).map(|e| vec![e])
    };
    let events = match decoded {
        Ok(events) => events,
        Err(e) => {
            state.metrics.reject("malformed");
            return Err(error(StatusCode::BAD_REQUEST, &e.to_string()));
        }
    };
    if state.inject_failure() {
        state.metrics.reject("injected");
        return Err(error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "injected failure (--fail-rate)",
        ));
    }
    let cost = match state.config.cost {
        Cost::PerRequest => 1.0,
        Cost::PerEvent => events.len() as f64,
    };
    let used = admit(state, cost, credit).await?;
    if !state.config.latency.is_zero() {
        tokio::time::sleep(state.config.latency).await;
    }
    accept(state, &events);
    state
        .metrics
        .duration
        .observe(started.elapsed().as_secs_f64());
    let ok = json(
        StatusCode::OK,
        format!(r#"{{"accepted":{}}}"#, events.len()),
    );
    Ok((ok, used))
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
