//! The server's side of [credit](crate::credit) over HTTP: the headers of a request, the grant
//! on its answer, and `POST /credit`. The accounts themselves are [`super::ledger`].

use std::sync::Arc;
use std::time::Duration;

use http::{HeaderMap, HeaderValue, Response, StatusCode};

use super::reply::{Body, error, json};
use super::state::{State, lock};
use crate::config::Cost;
use crate::credit::{BACKLOG, CREDIT, CREDIT_ID, CreditAsk, CreditGrant};

/// The credit headers of a request: `None` without an id; the reason naming the bad header.
pub(super) fn ask(headers: &HeaderMap) -> Result<Option<CreditAsk>, String> {
    let number = |name: &str| -> Result<Option<u64>, String> {
        match headers.get(name) {
            None => Ok(None),
            Some(v) => v
                .to_str()
                .ok()
                .and_then(|s| s.trim().parse::<u64>().ok())
                .map(Some)
                .ok_or_else(|| format!("{name} must be an unsigned integer")),
        }
    };
    let id = number(CREDIT_ID)?;
    let backlog = number(BACKLOG)?.unwrap_or(0);
    Ok(id.map(|id| CreditAsk { id, backlog }))
}

/// Grants `ask` what the bucket holds now and puts the grant on `response`.
pub(super) fn answer(state: &State, ask: CreditAsk, used: bool, response: &mut Response<Body>) {
    let grant = grant(state, ask, used);
    if let Ok(v) = HeaderValue::from_str(&grant.to_header()) {
        response.headers_mut().insert(CREDIT, v);
    }
}

fn grant(state: &State, ask: CreditAsk, used: bool) -> CreditGrant {
    let per_event = state.config.cost == Cost::PerEvent;
    let (granted, wait) = if *state.paused.borrow() {
        (0, Duration::from_millis(100))
    } else {
        let mut l = lock(&state.limiter);
        let now = state.now();
        let super::state::Limiter { bucket, ledger, .. } = &mut *l;
        ledger.grant(bucket.as_mut(), ask.id, ask.backlog, now)
    };
    state.metrics.credits_granted.inc_by(granted);
    CreditGrant {
        granted,
        per_event,
        used,
        wait,
    }
}

/// `POST /credit`: a grant, at once.
pub(super) fn poll(state: &Arc<State>, headers: &HeaderMap) -> Response<Body> {
    let ask = match ask(headers) {
        Ok(Some(a)) => a,
        Ok(None) => {
            state.metrics.reject("malformed");
            return error(
                StatusCode::BAD_REQUEST,
                &format!("POST /credit needs the {CREDIT_ID} header"),
            );
        }
        Err(reason) => {
            state.metrics.reject("malformed");
            return error(StatusCode::BAD_REQUEST, &reason);
        }
    };
    state.metrics.credit_polls.inc();
    let g = grant(state, ask, false);
    let mut r = json(
        StatusCode::OK,
        format!(
            r#"{{"granted":{},"per":"{}","wait_us":{}}}"#,
            g.granted,
            if g.per_event { "event" } else { "request" },
            g.wait.as_micros()
        ),
    );
    if let Ok(v) = HeaderValue::from_str(&g.to_header()) {
        r.headers_mut().insert(CREDIT, v);
    }
    r
}
