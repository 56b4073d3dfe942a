//! The client for sinkd's endpoints: writes in either wire format, the audit, and the admin
//! (chaos) calls. Connections are pooled and kept alive.

use std::time::Duration;

use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER};
use http::{Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use crate::audit::Stats;
use crate::credit::{BACKLOG, CREDIT, CREDIT_ID, CreditAsk, CreditGrant};
use crate::wire::{self, Event, Format};

/// Why a call failed before an HTTP answer came back, or why an answer was unusable.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The base URL (or a request built on it) is not `http://host:port/...`.
    #[error("invalid sink URL `{0}` (expected http://host:port)")]
    InvalidUrl(String),
    /// Connecting or sending failed (the cause chain is kept).
    #[error("cannot reach the sink: {}", chain(.0))]
    Transport(#[source] hyper_util::client::legacy::Error),
    /// The answer's body could not be read.
    #[error("cannot read the sink's answer: {0}")]
    Body(#[source] hyper::Error),
    /// sinkd answered, but not with success.
    #[error("the sink answered {}: {}", .0.status, String::from_utf8_lossy(&.0.body))]
    Status(Box<Reply>),
    /// The answer's JSON could not be decoded.
    #[error("cannot decode the sink's answer: {0}")]
    Decode(#[source] serde_json::Error),
    /// The answer was not text.
    #[error("cannot decode the sink's answer: {0}")]
    NotText(#[source] std::string::FromUtf8Error),
}

/// An HTTP answer from sinkd.
#[derive(Debug, Clone)]
pub struct Reply {
    /// The status.
    pub status: StatusCode,
    /// `Retry-After`, in seconds, when present.
    pub retry_after: Option<Duration>,
    /// The `RateLimit-Policy` header, when present.
    pub rate_limit_policy: Option<String>,
    /// The `RateLimit` header, when present: `"sinkd";r=REMAINING;t=SECONDS`.
    pub rate_limit: Option<String>,
    /// The credit grant (`sinkd-credit`), on answers to requests that carried an account.
    pub credit: Option<CreditGrant>,
    /// The body.
    pub body: Bytes,
}

impl Reply {
    /// Whether the write was accepted.
    pub fn is_success(&self) -> bool {
        self.status.is_success()
    }

    /// Whether retrying may succeed: 429, 5xx.
    pub fn is_retriable(&self) -> bool {
        self.status == StatusCode::TOO_MANY_REQUESTS || self.status.is_server_error()
    }
}

/// A pooled client for one sinkd.
#[derive(Debug, Clone)]
pub struct SinkClient {
    base: String,
    client: Client<HttpConnector, Full<Bytes>>,
    admin_token: Option<String>,
}

impl SinkClient {
    /// A client for the sinkd at `base_url` (`http://127.0.0.1:8080`).
    ///
    /// # Errors
    /// [`ClientError::InvalidUrl`] when the URL is not plain `http://host:port`.
    pub fn new(base_url: &str) -> Result<SinkClient, ClientError> {
        let base = base_url.trim_end_matches('/').to_owned();
        let uri: Uri = base
            .parse()
            .map_err(|_| ClientError::InvalidUrl(base.clone()))?;
        if uri.scheme_str() != Some("http") || uri.host().is_none() {
            return Err(ClientError::InvalidUrl(base));
        }
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(256)
            .build(connector);
        Ok(SinkClient {
            base,
            client,
            admin_token: None,
        })
    }

    /// Sends this token on admin calls.
    pub fn with_admin_token(mut self, token: impl Into<String>) -> Self {
        self.admin_token = Some(token.into());
        self
    }

    /// `POST /write` with one event.
    pub async fn write(&self, event: &Event, format: Format) -> Result<Reply, ClientError> {
        self.send(
            Method::POST,
            "/write",
            Some(format.content_type()),
            wire::encode_one(event, format),
        )
        .await
    }

    /// `POST /write/batch` with many events.
    pub async fn write_batch(
        &self,
        events: &[Event],
        format: Format,
    ) -> Result<Reply, ClientError> {
        self.send(
            Method::POST,
            "/write/batch",
            Some(format.content_type()),
            wire::encode_batch(events, format),
        )
        .await
    }

    /// `POST /write/batch` on credit: the write names `ask`'s account and announces its
    /// backlog; the answer carries the next grant. See [`crate::credit`].
    pub async fn write_batch_credited(
        &self,
        events: &[Event],
        format: Format,
        ask: CreditAsk,
    ) -> Result<Reply, ClientError> {
        self.send_with(
            Method::POST,
            "/write/batch",
            Some(format.content_type()),
            wire::encode_batch(events, format),
            Some(ask),
        )
        .await
    }

    /// `POST /write` on credit, one event: as [`write_batch_credited`](Self::write_batch_credited).
    pub async fn write_credited(
        &self,
        event: &Event,
        format: Format,
        ask: CreditAsk,
    ) -> Result<Reply, ClientError> {
        self.send_with(
            Method::POST,
            "/write",
            Some(format.content_type()),
            wire::encode_one(event, format),
            Some(ask),
        )
        .await
    }

    /// `POST /credit`: a grant for `ask`'s backlog, answered at once (never held).
    ///
    /// # Errors
    /// As any call; an answer that is not a success is [`ClientError::Status`].
    pub async fn credit(&self, ask: CreditAsk) -> Result<CreditGrant, ClientError> {
        let reply = self
            .send_with(Method::POST, "/credit", None, Vec::new(), Some(ask))
            .await?;
        match reply.credit {
            Some(g) if reply.is_success() => Ok(g),
            _ => Err(ClientError::Status(Box::new(reply))),
        }
    }

    /// `GET /stats`, with the id range the producer sent when given.
    pub async fn stats(&self, expected: Option<(u64, u64)>) -> Result<Stats, ClientError> {
        let path = match expected {
            Some((from, to)) => format!("/stats?from={from}&to={to}"),
            None => "/stats".into(),
        };
        let reply = self.send(Method::GET, &path, None, Vec::new()).await?;
        if !reply.is_success() {
            return Err(ClientError::Status(Box::new(reply)));
        }
        serde_json::from_slice(&reply.body).map_err(ClientError::Decode)
    }

    /// `GET /metrics`, as text.
    pub async fn metrics(&self) -> Result<String, ClientError> {
        let reply = self.send(Method::GET, "/metrics", None, Vec::new()).await?;
        if !reply.is_success() {
            return Err(ClientError::Status(Box::new(reply)));
        }
        String::from_utf8(reply.body.to_vec()).map_err(ClientError::NotText)
    }

    /// `POST /admin/rate`: sets the rate (`None`: no limit).
    pub async fn set_rate(&self, rate: Option<f64>) -> Result<Reply, ClientError> {
        self.admin("/admin/rate", serde_json::json!({ "rate": rate }))
            .await
    }

    /// `POST /admin/stall`: `rate` for `duration`, then back.
    pub async fn stall(&self, rate: f64, duration: Duration) -> Result<Reply, ClientError> {
        self.admin(
            "/admin/stall",
            serde_json::json!({ "rate": rate, "seconds": duration.as_secs_f64() }),
        )
        .await
    }

    /// `POST /admin/pause`.
    pub async fn pause(&self) -> Result<Reply, ClientError> {
        self.admin("/admin/pause", serde_json::json!({})).await
    }

    /// `POST /admin/resume`.
    pub async fn resume(&self) -> Result<Reply, ClientError> {
        self.admin("/admin/resume", serde_json::json!({})).await
    }

    async fn admin(&self, path: &str, body: serde_json::Value) -> Result<Reply, ClientError> {
        self.send(
            Method::POST,
            path,
            Some(wire::JSON),
            body.to_string().into_bytes(),
        )
        .await
    }

    /// Sends any request: for calls this client has no method for, and for tests of bad input.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        content_type: Option<&str>,
        body: Vec<u8>,
    ) -> Result<Reply, ClientError> {
        self.send_with(method, path, content_type, body, None).await
    }

    async fn send_with(
        &self,
        method: Method,
        path: &str,
        content_type: Option<&str>,
        body: Vec<u8>,
        credit: Option<CreditAsk>,
    ) -> Result<Reply, ClientError> {
        let mut req = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base));
        if let Some(ct) = content_type {
            req = req.header(CONTENT_TYPE, ct);
        }
        if let Some(ask) = credit {
            req = req.header(CREDIT_ID, ask.id).header(BACKLOG, ask.backlog);
        }
        if let Some(token) = &self.admin_token {
            req = req.header(AUTHORIZATION, format!("Bearer {token}"));
        }
        let req = req
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| ClientError::InvalidUrl(e.to_string()))?;
        let response = self
            .client
            .request(req)
            .await
            .map_err(ClientError::Transport)?;
        let status = response.status();
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let retry_after = header(RETRY_AFTER.as_str())
            .and_then(|v| v.parse::<u64>().ok())
            .map(Duration::from_secs);
        let rate_limit_policy = header("ratelimit-policy");
        let rate_limit = header("ratelimit");
        let credit = header(CREDIT).and_then(|v| CreditGrant::parse(&v));
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(ClientError::Body)?
            .to_bytes();
        Ok(Reply {
            status,
            retry_after,
            rate_limit_policy,
            rate_limit,
            credit,
            body,
        })
    }
}

/// An error with its causes, `a: b: c`: a transport error's own text rarely says why.
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        source = inner.source();
    }
    s
}
