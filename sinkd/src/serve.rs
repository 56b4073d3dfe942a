//! One HTTP/1 serve loop for every server of the workspace (sinkd itself, and `loadgen
//! process`'s metrics endpoint): it accepts until told to stop, backs off when accepting fails
//! (a full file-descriptor table, say) instead of spinning, bounds how long a client may take
//! to send its headers, and on stop lets the requests under way finish within a grace period.

use std::convert::Infallible;
use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;

/// How a [`serve`] loop behaves.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// The longest a client may take to send a request's headers (slowloris guard).
    pub header_timeout: Duration,
    /// How long requests under way may take to finish after the stop.
    pub grace: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            header_timeout: Duration::from_secs(10),
            grace: Duration::from_secs(10),
        }
    }
}

/// The first and the longest pause after a failed accept.
const BACKOFF: (Duration, Duration) = (Duration::from_millis(5), Duration::from_secs(1));

/// Serves `handler` on `listener` until `stop` resolves, then waits up to `options.grace` for
/// the connections under way.
pub async fn serve<H, F>(
    listener: TcpListener,
    handler: H,
    options: Options,
    stop: impl Future<Output = ()>,
) where
    H: Fn(Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<Full<Bytes>>> + Send + 'static,
{
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(options.header_timeout);
    let mut stop = std::pin::pin!(stop);
    let mut backoff = BACKOFF.0;
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    backoff = BACKOFF.0;
                    stream
                }
                Err(e) => {
                    tracing::warn!("accept failed: {e}; retrying in {backoff:?}");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(BACKOFF.1);
                    continue;
                }
            },
            _ = &mut stop => break,
        };
        let _ = stream.set_nodelay(true);
        let handler = handler.clone();
        let service = service_fn(move |req| {
            let response = handler(req);
            async move { Ok::<_, Infallible>(response.await) }
        });
        let connection = graceful.watch(builder.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!("connection ended: {e}");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(options.grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            "requests under way did not finish within {:?}",
            options.grace
        );
    }
}
