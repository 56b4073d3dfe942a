//! The response and request helpers every route uses: JSON bodies, errors with a reason, and
//! a body read under `--max-body`.

use bytes::Bytes;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;

use super::state::State;
use crate::wire;

/// Every response's body.
pub(super) type Body = Full<Bytes>;

/// A JSON response.
pub(super) fn json(status: StatusCode, body: String) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(wire::JSON));
    r
}

/// A JSON error: `{"error": the status's reason, "reason": what was wrong}`.
pub(super) fn error(status: StatusCode, reason: &str) -> Response<Body> {
    json(
        status,
        serde_json::json!({ "error": status.canonical_reason().unwrap_or(""), "reason": reason })
            .to_string(),
    )
}

/// Reads the body, refusing more than `--max-body` bytes.
pub(super) async fn read_body(
    state: &State,
    req: Request<Incoming>,
) -> Result<Bytes, Response<Body>> {
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
