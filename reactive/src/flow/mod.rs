//! Flow metrics and flow control that sit beside the pipeline rather than in it.
//!
//! - [`Stage`]: where each stage's time goes, as Flink reports it: busy (working), idle
//!   (waiting for input) or backpressured (waiting for the stage after it), with items in and
//!   out. A snapshot is a plain struct, for loadgen to print and export.
//! - [`find_bottleneck`]: names the stage that limits throughput from a set of snapshots: the
//!   stage the others are waiting on, or one that is busy with a full input.
//! - [`Aimd`]: additive-increase / multiplicative-decrease control of a source's rate from a
//!   pressure signal (a queue's fill, a lag), the "slow-source" overload policy; [`RateSignal`]
//!   carries the rate to the source and [`slow_source`] runs the loop.
//! - [`Credits`] and [`credit::channels`]: credit-based flow control, Flink's scheme (a sender
//!   sends only against credit its receiver granted for free buffers: exclusive per channel,
//!   plus a floating pool for the channels with a backlog).
//! - [`FillForecast`]: predictive backpressure: when a bounded queue will be full, from the
//!   trend of its depth.
//! - [`Limiter`]: an adaptive concurrency limit for the attempts to a sink, from their RTT and
//!   backpressure, by Vector's ARC rule or ours ([`Controller`]).

mod aimd;
mod bottleneck;
pub mod concurrency;
pub mod credit;
mod forecast;
mod signal;
mod stage;

pub use aimd::Aimd;
pub use bottleneck::{Bottleneck, BottleneckKind, find_bottleneck};
pub use concurrency::{Controller, LimitConfig, Limiter, Outcome, Permit, Readings};
pub use credit::{Closed, Credit, Credits};
pub use forecast::{FillForecast, Forecast};
pub use signal::{RateSignal, slow_source};
pub use stage::{Activity, Stage, StageSnapshot};
