//! `/admin/*`, on when sinkd runs with `--admin-token`, and then only with
//! `Authorization: Bearer TOKEN`: set the rate, stall, pause and resume.

use std::sync::Arc;
use std::time::Duration;

use http::header::AUTHORIZATION;
use http::{HeaderValue, Request, Response, StatusCode};
use hyper::body::Incoming;
use serde::Deserialize;

use super::reply::{Body, error, json, read_body};
use super::state::State;

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

/// Serves `/admin/*`: checks the token, reads the body, and applies the command.
pub(super) async fn admin(
    state: &Arc<State>,
    req: Request<Incoming>,
    path: &str,
) -> Response<Body> {
    if !authorized(state, &req) {
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
    let result = match path {
        "/admin/rate" => set_rate(state, &body),
        "/admin/stall" => stall(state, &body),
        "/admin/pause" | "/admin/resume" => {
            let paused = path == "/admin/pause";
            state.set_paused(paused);
            Ok(serde_json::json!({ "paused": paused }))
        }
        _ => {
            state.metrics.reject("not_found");
            return error(
                StatusCode::NOT_FOUND,
                &format!("no such admin endpoint: {path} (rate, stall, pause, resume)"),
            );
        }
    };
    match result {
        Ok(reply) => json(StatusCode::OK, reply.to_string()),
        Err(Refused(status, reason)) => error(status, &reason),
    }
}

/// Why a command was refused: its status and reason.
struct Refused(StatusCode, String);

fn bad_request(reason: &str) -> Refused {
    Refused(StatusCode::BAD_REQUEST, reason.to_string())
}

/// Whether the request carries `Authorization: Bearer <--admin-token>`.
fn authorized(state: &State, req: &Request<Incoming>) -> bool {
    let token = state.config.admin_token.as_deref().unwrap_or_default();
    req.headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|g| constant_time_eq(g.as_bytes(), token.as_bytes()))
}

/// Parses a command's JSON body, or answers 400 with the shape expected.
fn parse<T: serde::de::DeserializeOwned>(
    state: &State,
    body: &[u8],
    shape: &str,
) -> Result<T, Refused> {
    serde_json::from_slice(body).map_err(|e| {
        state.metrics.reject("malformed");
        bad_request(&format!("expected {shape}: {e}"))
    })
}

/// `/admin/rate`: a new write rate, or none.
fn set_rate(state: &State, body: &[u8]) -> Result<serde_json::Value, Refused> {
    let b: RateBody = parse(
        state,
        body,
        r#"{"rate": writes per second, or null for no limit}"#,
    )?;
    if b.rate.is_some_and(|r| !(r.is_finite() && r > 0.0)) {
        return Err(bad_request("rate must be above 0 (or null for no limit)"));
    }
    state.set_rate(b.rate);
    Ok(serde_json::json!({ "rate": b.rate }))
}

/// `/admin/stall`: a slower rate for a while.
fn stall(state: &Arc<State>, body: &[u8]) -> Result<serde_json::Value, Refused> {
    let b: StallBody = parse(
        state,
        body,
        r#"{"rate": writes per second, "seconds": duration}"#,
    )?;
    let Ok(duration) = Duration::try_from_secs_f64(b.seconds) else {
        return Err(bad_request("seconds must be a non-negative duration"));
    };
    if !(b.rate.is_finite() && b.rate > 0.0) {
        return Err(bad_request("rate must be above 0"));
    }
    state.stall(b.rate, duration);
    Ok(serde_json::json!({ "stall_rate": b.rate, "seconds": b.seconds }))
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
