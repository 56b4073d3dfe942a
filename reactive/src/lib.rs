//! Reactive Streams `request(n)` demand for async Rust, and the flow-control pieces built on it.
//!
//! A [`Publisher`] emits only what its [`Subscriber`] has asked for through its
//! [`Subscription`]. That one rule is what turns "the source is faster than the sink" from a
//! growing heap into a slower source: the sink asks for what it can take, and nothing more is
//! produced.
//!
//! ```
//! use reactive::{Prefetch, PublisherExt};
//! use futures::TryStreamExt;
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! // A window of 16: the publisher never has more than 16 items outstanding, however fast it is.
//! let total: u64 = reactive::iter(0..10_000u64)
//!     .map(|x| x * 2)
//!     .into_stream_with(Prefetch::new(16))
//!     .try_fold(0, |acc, x| async move { Ok(acc + x) })
//!     .await
//!     .unwrap();
//! assert_eq!(total, 99_990_000);
//! # }
//! ```
//!
//! # The model
//! - **Callbacks for signals, a future for the flow.** [`Subscriber`] has the four Reactive
//!   Streams callbacks (`on_subscribe`, `on_next`, `on_error`, `on_complete`), called
//!   synchronously. [`Publisher::connect`] calls `on_subscribe` and returns the *connection*, a
//!   future that emits as it is polled and owns the subscriber. We chose this shape for speed and
//!   for ownership: a chain of operators compiles into one loop with no allocation, lock or
//!   virtual call per item; signals are serial because one future owns the subscriber; and
//!   "release the subscriber" (rule 3.13) is simply the connection ending. Async work in a
//!   subscriber is done by keeping items and requesting more later ([`inbox`], [`from_sink`]).
//! - **Demand is a permit count** ([`subscription`], [`demand`]). `request(n)` adds permits
//!   atomically, saturating at 2^63 − 1, which means unbounded (rule 3.17). The publisher
//!   takes permits in bulk, so one atomic operation pays for a whole batch of items, and one
//!   wake-up carries many items across tasks.
//! - **Requests never recurse.** `request` and `cancel` touch atomics and wake a task; they
//!   never call back into the subscriber. Calling `request` from inside `on_next` is allowed
//!   (rule 3.2) and the stack depth stays constant (rule 3.3).
//!
//! - **Items in bulk, where both sides want it.** A subscriber whose
//!   [`takes_batches`](Subscriber::takes_batches) is true may receive several items in one
//!   [`on_next_batch`](Subscriber::on_next_batch) call: one permit per item, in order, never
//!   past the demand. [`iter`], the queues and `map`/`filter` hand items over this way; an
//!   [`Inbox`] and a queue's input take them (one lock for the batch), and
//!   [`Inbox::recv_many`] hands a run out at once. A subscriber that does not opt in sees
//!   items one `on_next` at a time, exactly as before. A batch is one delivery: a `cancel`
//!   made during it stops the batches after it (for an item-by-item subscriber, the very next
//!   item).
//!
//! # Demand
//! Each `on_next` uses one permit. A subscriber that requested `n` receives at most `n` items
//! (rule 1.1); it may receive fewer and then a terminal signal (rule 1.2). `request(0)` is an
//! error: the publisher signals [`Error::BadRequest`] and stops (rule 3.9). Nothing panics.
//!
//! ```
//! use std::sync::{Arc, Mutex};
//! use reactive::{Error, Publisher, Subscriber, Subscription};
//!
//! #[derive(Default)]
//! struct Log(Arc<Mutex<Vec<String>>>);
//! impl Subscriber<u32> for Log {
//!     fn on_subscribe(&mut self, s: Subscription) { s.request(2); }
//!     fn on_next(&mut self, x: u32) { self.0.lock().unwrap().push(x.to_string()); }
//!     fn on_error(&mut self, e: Error) { self.0.lock().unwrap().push(e.to_string()); }
//!     fn on_complete(&mut self) { self.0.lock().unwrap().push("done".into()); }
//! }
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let log = Arc::new(Mutex::new(Vec::new()));
//! let connection = reactive::iter(1..=10).connect(Log(log.clone()));
//! // Two requested, two emitted: the connection now waits for more demand.
//! let waiting = tokio::time::timeout(std::time::Duration::from_millis(10), connection).await;
//! assert!(waiting.is_err());
//! assert_eq!(*log.lock().unwrap(), ["1", "2"]);
//! # }
//! ```
//!
//! # Cancellation
//! [`Subscription::cancel`] is idempotent and callable from any thread. Every publisher of this
//! crate checks for it before every emission (a pull queue included, though its items come
//! from another connection), then drops the subscriber and its source (rules 3.5–3.7, 3.12,
//! 3.13). A subscriber must tolerate the one item that may be in flight when it cancels from
//! another thread (rule 2.8). A cancel is noticed at once even while the source is idle: a
//! publisher waiting on something other than demand registers for it first
//! ([`Demand::poll_stop`](subscription::Demand::poll_stop)). Dropping a connection, or a stream
//! made by [`PublisherExt::into_stream`] or [`PublisherExt::spawn_stream`], also cancels, and
//! the subscription then reports [`is_cancelled`](Subscription::is_cancelled).
//!
//! ```
//! use futures::StreamExt;
//! use reactive::{Prefetch, PublisherExt};
//! use std::sync::{Arc, atomic::{AtomicU64, Ordering}};
//! # #[tokio::main] async fn main() {
//! let produced = Arc::new(AtomicU64::new(0));
//! let counter = produced.clone();
//! let mut stream = reactive::iter(0u64..) // endless
//!     .map(move |x| { counter.fetch_add(1, Ordering::SeqCst); x })
//!     .spawn_stream(Prefetch::new(8));
//! assert_eq!(stream.next().await.unwrap().unwrap(), 0);
//! drop(stream); // cancels: the publisher's task stops and releases its subscriber
//! tokio::time::sleep(std::time::Duration::from_millis(20)).await;
//! let stopped_at = produced.load(Ordering::SeqCst);
//! tokio::time::sleep(std::time::Duration::from_millis(20)).await;
//! assert_eq!(produced.load(Ordering::SeqCst), stopped_at);
//! assert!(stopped_at <= 16, "never more than the window ahead");
//! # }
//! ```
//!
//! # Terminal signals
//! At most one of `on_error` / `on_complete`, after which the connection ends, the subscription
//! counts as cancelled and no signal follows (rules 1.6, 1.7). A publisher may complete
//! without demand once it knows it is empty, and those that know (`iter` over an exact-size
//! iterator, the queue once its upstream completed and its buffer is empty) do: a subscriber
//! that requests exactly what it needs gets its `on_complete`. `from_stream` and `filter`
//! cannot know without pulling once more, which takes one more unit of demand.
//!
//! ```
//! use futures::StreamExt;
//! use reactive::{Error, PublisherExt};
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let source = futures::stream::iter([Ok(1), Err(std::io::Error::other("disk full")), Ok(3)]);
//! let signals: Vec<_> = reactive::from_try_stream(source).into_stream().collect().await;
//! // The item before the failure, the failure, and nothing after it: `Ok(3)` is never emitted.
//! assert_eq!(signals.len(), 2);
//! assert!(matches!(&signals[1], Err(Error::Upstream(e)) if e.to_string() == "disk full"));
//! # }
//! ```
//!
//! # Across threads
//! [`Subscription`] is `Send + Sync + Clone`. A connection is `Send` when its source and
//! subscriber are, so it can be spawned on any runtime thread while its subscriber requests from
//! another ([`PublisherExt::spawn_stream`]).
//!
//! ```
//! use futures::TryStreamExt;
//! use reactive::{Prefetch, PublisherExt};
//! # #[tokio::main(flavor = "multi_thread", worker_threads = 2)] async fn main() {
//! // The publisher runs in a task of its own; requests cross back from this one.
//! let items: Vec<u64> = reactive::iter(0..10_000).spawn_stream(Prefetch::new(64)).try_collect().await.unwrap();
//! assert!(items.into_iter().eq(0..10_000));
//! # }
//! ```
//!
//! The demand counter is checked by a stress test on
//! many threads (`tests/demand_stress.rs`) rather than loom: it is one atomic counter updated by
//! compare-and-swap, and the stress test also exercises the real wake-ups.
//!
//! # Flow control built on demand
//! - [`queue`]: one queue, three capacity semantics (bounded, unbounded with an optional safety
//!   cap, pull) and an explicit [`Overflow`] policy (block, drop newest, drop oldest, priority
//!   classes), with live [`QueueStats`](queue::QueueStats).
//! - [`spill`]: a queue whose overflow goes to bounded, checksummed segment files on disk,
//!   FIFO overall, recovered exactly once after `kill -9` (torn tails dropped, corruption
//!   reported by file and offset), blocking the source when its disk budget is full.
//! - [`PublisherExt::batch`]: demand-correct micro-batching by size and linger.
//! - [`sink`]: parallel workers (round-robin or key-partitioned) batching by a fixed size and
//!   linger or adaptively ([`sink::Batching`]), retries with backoff, jitter,
//!   `Retry-After` and a budget, dead letters, and a per-key order check.
//! - [`flow`]: per-stage busy/idle/backpressured accounting, a bottleneck finder, and AIMD
//!   control of a source's rate (the slow-source policy).
//! - `kafka` (feature `kafka`, off by default): a pull-mode Kafka source with consumer groups,
//!   pause/resume by demand, commits after acknowledgement, and lag.
//!
//! # Conformance
//! [`tck`] (feature `tck`, on by default) is the counterpart of the Reactive Streams TCK: it
//! verifies any publisher or subscriber, including yours, rule by rule.

#![warn(missing_docs)]

mod batching;
pub mod bridge;
pub mod demand;
mod error;
pub mod flow;
mod handoff;
#[cfg(feature = "kafka")]
pub mod kafka;
mod linger;
pub mod ops;
mod publisher;
pub mod purge;
pub mod queue;
pub mod sink;
pub mod source;
pub mod spill;
pub mod subscriber;
pub mod subscription;
#[cfg(feature = "tck")]
pub mod tck;

pub use bridge::{Inbox, Prefetch, from_sink, inbox};
pub use error::Error;
pub use publisher::{Publisher, PublisherExt};
pub use queue::{Overflow, QueueConfig};
pub use source::{from_chunks, from_stream, from_try_stream, iter};
pub use subscriber::Subscriber;
pub use subscription::Subscription;
