//! What every poll loop (decoupled, inline, bare) hands back to the processor: a way to stop
//! it gracefully and a way to read its counters.

use std::future::Future;
use std::pin::Pin;

use reactive::kafka::KafkaStats;

/// A poll loop's graceful stop: stop fetching, drain what was handed over, commit, leave.
pub type Shutdown = Pin<Box<dyn Future<Output = ()> + Send>>;

/// A poll loop's counters, read by the sampler and the metrics endpoint.
pub type StatsFn = Box<dyn Fn() -> KafkaStats + Send + Sync>;

/// Why a poll loop ended on its own, once it has (the processor stops with the reason).
pub type Failure = std::sync::Arc<std::sync::OnceLock<String>>;
