use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::Aimd;

/// A rate a source should keep to, in items per second: the "slow-source" signal. Clone it to
/// share; any clone may set it, the source reads it. In one process the generator reads it
/// directly; across processes it is published (over HTTP, a control topic) and a producer
/// applies it to its own `RateSignal`.
#[derive(Debug, Clone)]
pub struct RateSignal {
    rate: Arc<AtomicU64>,
}

impl RateSignal {
    /// A signal starting at `rate`.
    pub fn new(rate: f64) -> Self {
        RateSignal {
            rate: Arc::new(AtomicU64::new(rate.max(0.0).to_bits())),
        }
    }

    /// The rate to keep.
    pub fn get(&self) -> f64 {
        f64::from_bits(self.rate.load(Ordering::Relaxed))
    }

    /// Sets the rate to keep.
    pub fn set(&self, rate: f64) {
        if rate.is_finite() {
            self.rate.store(rate.max(0.0).to_bits(), Ordering::Relaxed);
        }
    }

    fn listeners(&self) -> usize {
        Arc::strong_count(&self.rate)
    }
}

/// Drives `signal` from a pressure reading with `aimd`, every `period`, until every other clone
/// of `signal` is dropped. `pressure` is typically a queue's [`fill`](crate::queue::QueueStats::fill).
///
/// ```
/// use reactive::flow::{slow_source, Aimd, RateSignal};
/// use std::time::Duration;
/// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
/// let signal = RateSignal::new(8_000.0);
/// let control = tokio::spawn(slow_source(|| 1.0, Aimd::new(8_000.0, 100.0, 8_000.0), signal.clone(), Duration::from_millis(100)));
/// tokio::time::sleep(Duration::from_millis(250)).await;
/// assert_eq!(signal.get(), 2_000.0); // a full queue halved it twice
/// drop(signal);
/// control.await.unwrap();
/// # }
/// ```
pub async fn slow_source(
    pressure: impl Fn() -> f64,
    mut aimd: Aimd,
    signal: RateSignal,
    period: Duration,
) {
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    while signal.listeners() > 1 {
        tick.tick().await;
        signal.set(aimd.update(pressure()));
    }
}
