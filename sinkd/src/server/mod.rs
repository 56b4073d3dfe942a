//! The HTTP edge of sinkd, on the workspace's one [serve loop](crate::serve):
//!
//! - [`routes`]: routing, body limits, the write path and the audit, `/metrics`, `/stats`;
//! - [`admission`]: what a write costs against the token bucket: admitted, held (`delay`),
//!   refused with 429 and `Retry-After` (`reject`), or 503 when paused or too many are held;
//! - [`credit`]: credit across HTTP (grants in answers, `POST /credit`), see [`crate::credit`];
//! - [`admin`]: `/admin/*`, token-protected: rate, stall, pause, resume;
//! - [`reply`]: JSON responses, errors with a reason, the body read under `--max-body`;
//! - [`state`]: what they share: the limiter, the pause, the audit, the metrics, the log.

mod admin;
mod admission;
mod credit;
mod ledger;
mod reply;
mod routes;
mod state;

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::oneshot;

use crate::audit::Stats;
use crate::config::Config;
use state::State;

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
    let (stop, stopped) = oneshot::channel::<()>();
    let options = crate::serve::Options {
        header_timeout: state.config.header_timeout,
        grace: std::time::Duration::from_secs(10),
    };
    let s = state.clone();
    let handler = move |req| routes::handle(s.clone(), req);
    let task = tokio::spawn(crate::serve::serve(listener, handler, options, async {
        let _ = stopped.await;
    }));
    Ok(Running {
        addr,
        state,
        stop: Some(stop),
        task,
    })
}
