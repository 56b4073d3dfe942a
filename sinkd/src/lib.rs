//! sinkd: an HTTP sink daemon that enforces its write rate on the server side, and audits what
//! it received.
//!
//! It is the slow dependency of every backpressure experiment: a downstream capped at a fixed
//! write rate that the client cannot cheat, because the token bucket is on the server. It is
//! also the trustworthy witness of delivery: it counts distinct ids, duplicates, per-key
//! ordering violations and, given the range a producer says it sent, missing ids.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use sinkd::{Config, SinkClient, wire::{Event, Format}};
//! let mut config = Config::default();
//! config.listen = "127.0.0.1:0".parse()?;
//! let running = sinkd::start(config).await?;
//! let client = SinkClient::new(&running.url())?;
//! let event = Event { id: 0, key: 1, seq: 0, ts_ns: 0, priority: 0, payload: "hello".into() };
//! assert!(client.write(&event, Format::Json).await?.is_success());
//! assert_eq!(running.shutdown().await.received, 1);
//! # Ok(()) }
//! ```
//!
//! # What is guaranteed
//! - Over any window longer than a burst, accepted writes never exceed `rate × window + burst`.
//!   `--on-limit delay` holds excess requests (at most `--max-held`, in arrival order);
//!   `--on-limit reject` answers 429 with `Retry-After`, `RateLimit` and `RateLimit-Policy`.
//! - A write is audited only after it is accepted; a refused write (429, 503, 4xx, injected
//!   500) is never audited, so the audit counts exactly what a client was told succeeded.
//! - Bad input never crashes the daemon: a malformed body gets 400 with the reason, a body over
//!   `--max-body` 413, a wrong content type 415, an unknown path 404, a bad admin token 401.

#![warn(missing_docs)]

pub mod audit;
pub mod bucket;
pub mod client;
pub mod config;
pub mod credit;
mod idset;
mod metrics;
pub mod serve;
mod server;
pub mod wire;

pub use audit::Stats;
pub use client::{ClientError, Reply, SinkClient};
pub use config::{Args, Config};
pub use server::{Running, start};
