//! The sink end of a pipeline: parallel workers, retries, dead letters, and an order check.
//!
//! - [`workers`]: N concurrent writers fed by demand. `RoundRobin` spreads items evenly and
//!   loses per-key order; `Key` sends each key to one worker, so each key's items are written in
//!   order, at the price of skew when keys are uneven.
//! - [`Retry`]: retriable failures (429, 5xx, connection errors) are retried with exponential
//!   backoff and jitter, never sooner than the server's `Retry-After`, within a retry budget;
//!   non-retriable failures and exhausted retries go to [`DeadLetters`] with their reason.
//!   Every item ends delivered or dead-lettered, and both are counted: nothing is lost silently.
//! - [`OrderCheck`]: counts per-key ordering violations where items arrive, to measure what
//!   parallelism costs in order.

mod dead_letter;
mod order;
mod retry;
mod workers;

pub use crate::batching::Batching;
pub use dead_letter::DeadLetters;
pub use order::OrderCheck;
pub use retry::{Delivery, Failure, Retry, RetryPolicy, RetryStats};
pub use workers::{Partitioning, WorkerStats, WorkersConfig, WorkersDriver, workers};
