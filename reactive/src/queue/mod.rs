//! One logical queue, three capacity semantics, and an explicit choice of what happens to the
//! excess.
//!
//! [`PublisherExt::queue`](crate::PublisherExt::queue) puts a [`Queue`] between a source and a
//! sink. Only the configuration changes between runs, so the only variable is whether the queue
//! pushes back:
//!
//! | mode | memory | when the sink is slower than the source |
//! |---|---|---|
//! | [`bounded(N)`](QueueConfig::bounded) | at most N items | the queue stops granting demand: the source is slowed (backpressure), or, with a shedding [`Overflow`], items are dropped and counted |
//! | [`unbounded`](QueueConfig::unbounded) | grows without limit | nothing pushes back: the heap grows until the OOM killer, or until the optional [safety cap](QueueConfig::safety_cap) ends the stream with [`Error::Overflow`](crate::Error::Overflow) |
//! | [`pull`](QueueConfig::pull) | none | each downstream `request(n)` is passed upstream as is: the source is asked for exactly what the sink demanded |
//!
//! # What is dropped and counted
//! Nothing is dropped silently: every drop is counted in [`QueueStats`] by reason (newest,
//! oldest, priority class), so `produced = delivered + queued + dropped` holds at all times.
//!
//! # Guarantees
//! - Bounded with [`Overflow::Block`]: items queued + upstream demand outstanding never exceed N.
//! - Order is FIFO in every mode (an eviction removes an item but never reorders the rest).
//! - The queue emits downstream only against downstream demand (rule 1.1) and passes the
//!   reactive-streams conformance suite in every mode.

mod buffered;
mod config;
mod emitter;
mod operator;
mod pull;
mod shed;
mod stats;

pub use config::{Mode, QueueConfig};
pub use operator::{Queue, QueueConnection};
pub use shed::{DropReason, Offer, Overflow, ShedBuffer};
pub use stats::{QueueSnapshot, QueueStats};
