//! What every poll loop (decoupled, inline, bare) hands back to the processor: its counters,
//! its queue, a graceful stop, and why it ended if it ended on its own.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};

use reactive::kafka::KafkaStats;
use reactive::queue::QueueStats;

/// A poll loop's graceful stop: stop fetching, drain what was handed over, commit, leave.
pub type Shutdown = Pin<Box<dyn Future<Output = ()> + Send>>;

/// A poll loop's counters, read by the sampler and the metrics endpoint.
pub type StatsFn = Box<dyn Fn() -> KafkaStats + Send + Sync>;

/// Why a poll loop ended on its own, once it has (the processor stops with the reason).
pub type Failure = Arc<OnceLock<String>>;

/// A running poll loop.
pub struct Running {
    pub stats: StatsFn,
    /// The pipeline's queue (the decoupled loop only).
    pub queue: Option<Arc<QueueStats>>,
    pub shutdown: Shutdown,
    /// Set if the loop ended on its own (the plain loops never do).
    pub failure: Failure,
}
