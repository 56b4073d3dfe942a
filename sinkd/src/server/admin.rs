//! `/admin/*`, on when sinkd runs with `--admin-token`, and then only with
//! `Authorization: Bearer TOKEN`: set the rate, stall, pause and resume.

use std::sync::Arc;
use std::time::Duration;

use http::header::AUTHORIZATION;
use http::{HeaderValue, Request, Response, StatusCode};
use hyper::body::Incoming;
use serde::Deserialize;

use super::routes::{Body, error, json, read_body};
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

pub(super) async fn admin(
    state: &Arc<State>,
    req: Request<Incoming>,
    path: &str,
) -> Response<Body> {
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
