//! The sink side of every pipeline: a [`SinkWriter`] writes batches of events to sinkd (or
//! nowhere, with `--null-sink`) with retries and dead letters, records each event's end-to-end
//! latency, and counts what was delivered. [`start_sink`] starts the embedded sinkd a plan
//! asks for.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::Context;
use hdrhistogram::Histogram;
use reactive::flow::{Limiter, Outcome};
use reactive::sink::{DeadLetters, Delivery, Failure, Retry, RetryPolicy};
use sinkd::SinkClient;
use sinkd::wire::{Event, Format};
use tokio::time::Instant;

use crate::cli::{Backpressure, OnLimit};
use crate::credit::CreditFlow;
use crate::generator::{self, GeneratorStats};
use crate::plan::{Plan, SinkTarget};

#[derive(Default)]
pub struct Counters {
    pub delivered: AtomicU64,
    pub writes: AtomicU64,
    pub dead_lettered: AtomicU64,
    /// Write attempts made (first tries and retries).
    pub attempts: AtomicU64,
    /// Attempts answered 429.
    pub rejected: AtomicU64,
}

/// What one failed attempt was, in `--backpressure-on`'s terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Status(u16),
    Timeout,
    Error,
}

/// Whether `kind` counts as backpressure under `classes`.
fn is_backpressure(kind: Kind, classes: &[Backpressure]) -> bool {
    classes.iter().any(|c| match (c, kind) {
        (Backpressure::TooManyRequests, Kind::Status(429)) => true,
        (Backpressure::Unavailable, Kind::Status(503)) => true,
        (Backpressure::ServerError, Kind::Status(s)) => (500..600).contains(&s),
        (Backpressure::Timeout, Kind::Timeout) => true,
        (Backpressure::Error, Kind::Error) => true,
        _ => false,
    })
}

/// The sink side of a pipeline: the client, retries and dead letters, and what was delivered.
/// Shared by the embedded pipeline and every Kafka poll loop.
pub struct SinkWriter {
    pub(crate) client: Option<SinkClient>,
    /// `--sink-on-limit credit`: attempts go only against sinkd's credit.
    pub(crate) credit: Option<Arc<CreditFlow>>,
    single: bool,
    /// Retries share the batch: an attempt clones the `Arc`, not the events.
    pub retry: Retry<Arc<Vec<Event>>>,
    pub counters: Counters,
    pub latency: Mutex<Histogram<u64>>,
    pub window: Mutex<Histogram<u64>>,
    pub(crate) origin: Instant,
    pub(crate) origin_epoch_ns: i64,
    /// With an adaptive `--concurrency`: a permit per attempt.
    pub limiter: Option<Limiter>,
    backpressure_on: Vec<Backpressure>,
    attempt_timeout: Option<std::time::Duration>,
    /// The generator whose payload buffers written events go back to, if any.
    recycle: Option<Arc<GeneratorStats>>,
}

/// A latency histogram: microseconds, 1 µs to 1 hour, 3 significant figures. Its range is
/// fixed (no auto-resize) and values are recorded saturating, so a longer latency counts as
/// 1 hour and the histogram's memory is the same at the first value and the billionth.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid bounds")
}

impl SinkWriter {
    /// The sink side for `plan`, dead-lettering into `out_dir/dead-letters.jsonl`.
    pub fn new(
        plan: &Plan,
        client: Option<SinkClient>,
        out_dir: &std::path::Path,
    ) -> anyhow::Result<SinkWriter> {
        std::fs::create_dir_all(out_dir)
            .with_context(|| format!("cannot create {}", out_dir.display()))?;
        let dead_path = out_dir.join("dead-letters.jsonl");
        let _ = std::fs::remove_file(&dead_path);
        let dead = DeadLetters::open(&dead_path, |b: &Arc<Vec<Event>>| {
            serde_json::to_string(&**b).unwrap_or_else(|_| "null".into())
        })
        .with_context(|| format!("cannot open {}", dead_path.display()))?;
        let retry = Retry::new(
            RetryPolicy {
                max_attempts: plan.max_attempts(),
                seed: plan.shape().seed,
                ..RetryPolicy::default()
            },
            dead,
        );
        let credit = (plan.sink_credit() && client.is_some()).then(|| CreditFlow::new(account()));
        Ok(SinkWriter {
            client,
            credit,
            single: plan.single_writes(),
            retry,
            counters: Counters::default(),
            latency: Mutex::new(histogram()),
            window: Mutex::new(histogram()),
            origin: Instant::now(),
            origin_epoch_ns: generator::now_epoch_ns(),
            limiter: plan.concurrency().cloned().map(Limiter::new),
            backpressure_on: plan.backpressure_on().to_vec(),
            attempt_timeout: plan.attempt_timeout(),
            recycle: None,
        })
    }

    /// Hands the payload buffers of written events back to `generator`, for its next events.
    pub fn recycling_into(mut self, generator: Arc<GeneratorStats>) -> SinkWriter {
        self.recycle = Some(generator);
        self
    }

    /// The batch is written (or dead-lettered): its payload buffers go back to the generator.
    fn done_with(&self, batch: Arc<Vec<Event>>) {
        if let (Some(generator), Ok(events)) = (&self.recycle, Arc::try_unwrap(batch)) {
            generator.recycled.give(events);
        }
    }

    /// The p99 of the latency window, in ms, and a fresh window.
    pub fn take_window_p99(&self) -> f64 {
        let mut w = self.window.lock().unwrap_or_else(|p| p.into_inner());
        let p = if w.is_empty() {
            0.0
        } else {
            w.value_at_quantile(0.99) as f64 / 1000.0
        };
        w.reset();
        p
    }

    fn record(&self, batch: &[Event]) {
        let now = self.origin.elapsed().as_nanos() as i64;
        let mut all = self.latency.lock().unwrap_or_else(|p| p.into_inner());
        let mut window = self.window.lock().unwrap_or_else(|p| p.into_inner());
        for e in batch {
            let intended = e.ts_ns - self.origin_epoch_ns;
            let micros = ((now - intended).max(0) / 1_000).max(1) as u64;
            all.saturating_record(micros);
            window.saturating_record(micros);
        }
        self.counters
            .delivered
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
        self.counters.writes.fetch_add(1, Ordering::Relaxed);
    }

    /// One attempt: a permit from the limiter (if any), one request, its outcome reported on
    /// the permit, so each attempt of a retry sequence is timed and judged on its own.
    async fn attempt(&self, batch: Arc<Vec<Event>>) -> Result<(), Failure> {
        let Some(client) = &self.client else {
            return Ok(());
        };
        // Credit first, then the permit: the permit's RTT is the request's, not the wait for
        // credit.
        let credit = match &self.credit {
            Some(flow) => Some((flow, flow.acquire(client, flow.cost(batch.len())).await)),
            None => None,
        };
        let permit = match &self.limiter {
            Some(l) => Some(l.acquire().await),
            None => None,
        };
        self.counters.attempts.fetch_add(1, Ordering::Relaxed);
        let ask = credit.as_ref().map(|(flow, _)| flow.ask());
        let request = self.send(client, &batch, ask);
        let answer = match self.attempt_timeout {
            Some(limit) => tokio::time::timeout(limit, request).await,
            None => Ok(request.await),
        };
        if let Some((flow, c)) = credit {
            flow.settle(c, answer.as_ref().ok().and_then(|r| r.as_ref().ok()));
        }
        let (result, kind) = match answer {
            Ok(Ok(r)) if r.is_success() => (Ok(()), None),
            Ok(Ok(r)) => (failure(&r), Some(Kind::Status(r.status.as_u16()))),
            Ok(Err(e)) => (
                Err(Failure::Retriable {
                    reason: e.to_string(),
                    retry_after: None,
                }),
                Some(Kind::Error),
            ),
            Err(_) => (
                Err(Failure::Retriable {
                    reason: format!(
                        "no answer within {:?}",
                        self.attempt_timeout.unwrap_or_default()
                    ),
                    retry_after: None,
                }),
                Some(Kind::Timeout),
            ),
        };
        if kind == Some(Kind::Status(429)) {
            self.counters.rejected.fetch_add(1, Ordering::Relaxed);
        }
        if let Some(p) = permit {
            p.report(match kind {
                None => Outcome::Success,
                Some(k) if is_backpressure(k, &self.backpressure_on) => Outcome::Backpressure,
                Some(_) => Outcome::Ignored,
            });
        }
        result
    }

    /// One request: the batch (or its one event with single writes), on credit when `ask`.
    async fn send(
        &self,
        client: &SinkClient,
        batch: &[Event],
        ask: Option<sinkd::credit::CreditAsk>,
    ) -> Result<sinkd::Reply, sinkd::ClientError> {
        let single = self.single && batch.len() == 1;
        match ask {
            None if single => client.write(&batch[0], Format::Binary).await,
            None => client.write_batch(batch, Format::Binary).await,
            Some(ask) if single => client.write_credited(&batch[0], Format::Binary, ask).await,
            Some(ask) => {
                client
                    .write_batch_credited(batch, Format::Binary, ask)
                    .await
            }
        }
    }

    /// Writes a batch with retries; it ends delivered or dead-lettered.
    pub async fn write(&self, batch: Vec<Event>) {
        if self.client.is_none() {
            self.record(&batch);
            self.done_with(Arc::new(batch));
            return;
        }
        let n = batch.len() as u64;
        let batch = Arc::new(batch);
        match self.retry.run(batch.clone(), |b| self.attempt(b)).await {
            Delivery::Delivered { .. } => self.record(&batch),
            Delivery::DeadLettered { .. } => {
                self.counters.dead_lettered.fetch_add(n, Ordering::Relaxed);
            }
        }
        self.done_with(batch);
    }
}

impl Drop for SinkWriter {
    fn drop(&mut self) {
        if let Some(flow) = &self.credit {
            flow.stop();
        }
    }
}

/// A credit account at sinkd unique to this process and this writer: two members of a group
/// writing to one sinkd must not share one.
fn account() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    splitmix::next(
        nanos ^ (u64::from(std::process::id()) << 32) ^ NEXT.fetch_add(1, Ordering::Relaxed),
    )
}

/// The failure an unsuccessful answer is: retriable (429, 5xx) or fatal.
fn failure(r: &sinkd::client::Reply) -> Result<(), Failure> {
    let reason = format!("{} {}", r.status.as_u16(), String::from_utf8_lossy(&r.body));
    if r.is_retriable() {
        Err(Failure::Retriable {
            reason,
            retry_after: r.retry_after,
        })
    } else {
        Err(Failure::Fatal { reason })
    }
}

/// Starts the embedded sinkd, if the plan has one.
pub async fn start_sink(
    plan: &Plan,
) -> anyhow::Result<(Option<sinkd::Running>, Option<SinkClient>, f64)> {
    match plan.sink() {
        SinkTarget::Null => Ok((None, None, f64::INFINITY)),
        SinkTarget::External { url } => {
            let client = SinkClient::new(url)?;
            let text = client
                .metrics()
                .await
                .with_context(|| format!("cannot read {url}/metrics"))?;
            let limit = text
                .lines()
                .find_map(|l| l.strip_prefix("sinkd_rate_limit "))
                .and_then(|v| v.trim().parse::<f64>().ok())
                .filter(|r| *r > 0.0)
                .unwrap_or(f64::INFINITY);
            Ok((None, Some(client), limit))
        }
        SinkTarget::Embedded {
            rate,
            on_limit,
            latency,
            stall,
        } => {
            let mut config = sinkd::Config::default();
            config.listen = "127.0.0.1:0".parse()?;
            config.rate = Some(*rate);
            config.burst = (rate / 10.0).max(1.0);
            config.on_limit = match on_limit {
                OnLimit::Delay => sinkd::config::OnLimit::Delay,
                OnLimit::Reject | OnLimit::Credit => sinkd::config::OnLimit::Reject,
            };
            config.max_held = 100_000;
            config.latency = *latency;
            config.stall = stall.map(|s| (s.at, s.duration, s.rate));
            config.admin_token = Some("loadgen".into());
            let running = sinkd::start(config)
                .await
                .context("cannot start the embedded sinkd")?;
            let client = SinkClient::new(&running.url())?.with_admin_token("loadgen");
            Ok((Some(running), Some(client), *rate))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Backpressure as B, Kind, is_backpressure};

    #[test]
    fn backpressure_classes_are_the_ones_chosen() {
        let only_429 = [B::TooManyRequests];
        assert!(is_backpressure(Kind::Status(429), &only_429));
        assert!(!is_backpressure(Kind::Status(503), &only_429));
        assert!(!is_backpressure(Kind::Timeout, &only_429));
        let wide = [B::ServerError, B::Timeout];
        assert!(is_backpressure(Kind::Status(503), &wide));
        assert!(is_backpressure(Kind::Status(500), &wide));
        assert!(!is_backpressure(Kind::Status(429), &wide));
        assert!(is_backpressure(Kind::Timeout, &wide));
        assert!(!is_backpressure(Kind::Error, &wide));
        assert!(is_backpressure(Kind::Error, &[B::Error]));
    }

    #[test]
    fn the_latency_histogram_never_resizes() {
        let mut h = super::histogram();
        let size = h.distinct_values();
        h.saturating_record(1);
        h.saturating_record(10 * 3_600_000_000); // ten hours: clamped, not grown
        assert_eq!(h.distinct_values(), size);
        assert_eq!(h.len(), 2);
        // Counted as 1 hour, to the histogram's precision.
        assert!((h.max() as f64 / 3.6e9 - 1.0).abs() < 1e-3, "{}", h.max());
    }
}
