//! How the [sink workers](crate::sink::workers) group items into writes: a fixed size and
//! linger ([`Batching::Fixed`], the [`Linger`] rule `.batch()` also uses), or a size chosen as
//! the pool runs from the write latency it observes and the items waiting
//! ([`Batching::Adaptive`]).

use std::task::Context;
use std::time::Duration;

use tokio::time::Instant;

use crate::linger::{BatchClock, Linger};

/// How a worker groups the items it holds into writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Batching {
    /// Writes of at most `size` items (at least 1), sent once full or once the oldest item has
    /// waited `linger`. One size and one linger serve every load: a large size pays its linger
    /// when traffic is light, a small one spends a write per few items when it is heavy.
    Fixed {
        /// The most items one write takes.
        size: usize,
        /// How long a worker waits for a batch to fill.
        linger: Duration,
    },
    /// Sizes chosen per worker from what it observes, between 1 and `max`:
    ///
    /// - **A free writer sends what is queued** (up to `max`), at once, while the sink keeps
    ///   up. At light load that is one item, written without lingering; under load the items
    ///   that arrived during the last write ride together in the next (Nagle's rule), so the
    ///   batch already grows with the write latency.
    /// - **When the sink is the bottleneck** (a write takes more than twice as long as the
    ///   quickest recent write: it was held by the sink's limiter, retried, or queued), a write
    ///   of fewer items than arrive during one write would spend one of the sink's scarce
    ///   requests on a short batch. The writer then waits for the *target*, ⌈arrival rate ×
    ///   write latency⌉ items (both moving averages, per worker), but never longer than one
    ///   write latency and never longer than `linger` after the oldest item arrived.
    ///
    /// Guarantees: every write has 1 to `max` items; no item waits for its batch longer than
    /// `linger` (a free writer sends its batch by then); a worker writes its items in the order
    /// it received them, one write at a time, so per-key order holds with
    /// [`Partitioning::Key`](crate::sink::Partitioning::Key) as with `Fixed`. What it does not
    /// bound is the time an item waits for a *busy* writer: that is the sink's pace.
    Adaptive {
        /// The most items one write takes (at least 1).
        max: usize,
        /// The longest an item waits for its batch to fill while its writer is free.
        linger: Duration,
    },
}

impl Batching {
    /// The most items one write takes.
    pub fn max(&self) -> usize {
        match *self {
            Batching::Fixed { size, .. } => size.max(1),
            Batching::Adaptive { max, .. } => max.max(1),
        }
    }

    /// One worker's rule.
    pub(crate) fn rule(&self) -> Rule {
        match *self {
            Batching::Fixed { size, linger } => Rule::Fixed(Linger::new(size, linger)),
            Batching::Adaptive { max, linger } => Rule::Adaptive(Adaptive::new(max, linger)),
        }
    }
}

impl Default for Batching {
    /// One item per write.
    fn default() -> Self {
        Batching::Fixed {
            size: 1,
            linger: Duration::ZERO,
        }
    }
}

/// One worker's batching state, whichever the rule.
#[derive(Debug)]
pub(crate) enum Rule {
    Fixed(Linger),
    Adaptive(Adaptive),
}

impl Rule {
    /// The most items the next write may take.
    pub(crate) fn size(&self) -> usize {
        match self {
            Rule::Fixed(l) => l.size(),
            Rule::Adaptive(a) => a.max,
        }
    }

    /// An item arrived at a worker that held `before` items.
    pub(crate) fn arrived(&mut self, before: usize) {
        match self {
            Rule::Fixed(l) => l.arrived(before),
            Rule::Adaptive(a) => a.arrived(before),
        }
    }

    /// A batch was taken and `left` items remain.
    pub(crate) fn taken(&mut self, left: usize) {
        match self {
            Rule::Fixed(l) => l.taken(left),
            Rule::Adaptive(a) => a.taken(left),
        }
    }

    /// Whether the rule is sizing writes for a congested sink now (never for `Fixed`).
    pub(crate) fn congested(&self) -> bool {
        matches!(self, Rule::Adaptive(a) if a.congested())
    }

    /// A write finished after `took`.
    pub(crate) fn wrote(&mut self, took: Duration) {
        if let Rule::Adaptive(a) = self {
            a.wrote(took);
        }
    }

    /// Whether a free writer holding `len` items should write now; if not, a timer wakes the
    /// task when it should.
    pub(crate) fn poll_ready(&mut self, len: usize, cx: &mut Context<'_>) -> bool {
        match self {
            Rule::Fixed(l) => l.poll_ready(len, cx),
            Rule::Adaptive(a) => a.poll_ready(len, cx),
        }
    }
}

/// The weight of a new sample in the moving averages.
const ALPHA: f64 = 0.25;
/// How fast the quickest write drifts up towards the current one, per write, so a sink that
/// became slower for good stops counting as congested.
const DRIFT: f64 = 1.0 / 128.0;
/// A write this many times slower than the quickest recent one means the sink is congested.
const CONGESTED: f64 = 2.0;

/// The state of [`Batching::Adaptive`] for one worker.
pub(crate) struct Adaptive {
    max: usize,
    cap: Duration,
    /// Moving average of a write's duration, seconds (`None` before the first write ends).
    latency: Option<f64>,
    /// The quickest recent write, seconds: the sink's latency when nothing queues in it.
    fastest: Option<f64>,
    /// Moving average of arrivals per second.
    rate: f64,
    /// Arrivals since `counted_from`.
    arrivals: u64,
    counted_from: Instant,
    /// When the oldest queued item arrived, and the timer of the wait for a fuller batch.
    clock: BatchClock,
}

impl std::fmt::Debug for Adaptive {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Adaptive")
            .field("max", &self.max)
            .field("latency", &self.latency)
            .field("fastest", &self.fastest)
            .field("rate", &self.rate)
            .field("target", &self.target())
            .finish()
    }
}

impl Adaptive {
    pub(crate) fn new(max: usize, cap: Duration) -> Adaptive {
        Adaptive {
            max: max.max(1),
            cap,
            latency: None,
            fastest: None,
            rate: 0.0,
            arrivals: 0,
            counted_from: Instant::now(),
            clock: BatchClock::new(),
        }
    }

    fn arrived(&mut self, before: usize) {
        self.arrivals += 1;
        self.clock.arrived(before);
    }

    /// A batch was taken: the arrivals since the last one give a rate sample (over at least
    /// a millisecond, so two takes close together do not read as a spike).
    fn taken(&mut self, left: usize) {
        let now = Instant::now();
        self.clock.taken(left);
        let span = (now - self.counted_from).as_secs_f64();
        if span >= 1e-3 {
            let sample = self.arrivals as f64 / span;
            self.rate += ALPHA * (sample - self.rate);
            self.arrivals = 0;
            self.counted_from = now;
        }
    }

    fn wrote(&mut self, took: Duration) {
        let t = took.as_secs_f64();
        self.latency = Some(self.latency.map_or(t, |l| l + ALPHA * (t - l)));
        self.fastest = Some(match self.fastest {
            Some(f) if f <= t => f + DRIFT * (t - f),
            _ => t,
        });
    }

    /// Whether writes take long enough that the sink, not this pool, sets the pace.
    fn congested(&self) -> bool {
        match (self.latency, self.fastest) {
            (Some(l), Some(f)) => l > CONGESTED * f,
            _ => false,
        }
    }

    /// How many items a write should carry now: the items arriving during one write when the
    /// sink is congested, else 1.
    fn target(&self) -> usize {
        match self.latency {
            Some(l) if self.congested() => {
                let items = (self.rate * l).ceil();
                if items >= self.max as f64 {
                    self.max
                } else {
                    (items as usize).max(1)
                }
            }
            _ => 1,
        }
    }

    fn poll_ready(&mut self, len: usize, cx: &mut Context<'_>) -> bool {
        if len == 0 {
            return false;
        }
        if len >= self.target() {
            return true;
        }
        // Waiting longer than one write for a fuller batch would cost more than the write.
        let wait = self
            .cap
            .min(Duration::from_secs_f64(self.latency.unwrap_or(0.0)));
        self.clock.poll_waited(wait, cx).unwrap_or(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn noop() -> Context<'static> {
        Context::from_waker(std::task::Waker::noop())
    }

    /// `n` arrivals spread evenly over `over`, each taken at once (a writer that keeps up).
    async fn feed(a: &mut Adaptive, n: u32, over: Duration) {
        for _ in 0..n {
            tokio::time::advance(over / n).await;
            a.arrived(0);
            a.taken(0);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_free_writer_sends_one_item_at_once_while_the_sink_keeps_up() {
        let mut a = Adaptive::new(64, Duration::from_millis(50));
        let mut cx = noop();
        assert!(!a.poll_ready(0, &mut cx));
        a.arrived(0);
        assert!(
            a.poll_ready(1, &mut cx),
            "no write observed yet: no waiting"
        );
        feed(&mut a, 100, Duration::from_millis(100)).await;
        for _ in 0..20 {
            a.wrote(Duration::from_millis(4));
        }
        a.arrived(0);
        assert_eq!(a.target(), 1, "{a:?}");
        assert!(a.poll_ready(1, &mut cx), "writes are quick: send at once");
    }

    #[tokio::test(start_paused = true)]
    async fn a_congested_sink_grows_the_target_to_the_arrivals_during_one_write_and_no_more() {
        let mut a = Adaptive::new(64, Duration::from_millis(50));
        let mut cx = noop();
        a.wrote(Duration::from_millis(2));
        // 10,000 items/s, and writes now take 5 ms: 50 items arrive during one.
        feed(&mut a, 200, Duration::from_millis(20)).await;
        for _ in 0..20 {
            a.wrote(Duration::from_millis(5));
        }
        assert!(a.congested(), "{a:?}");
        assert_eq!(a.target(), 50, "{a:?}");
        a.arrived(0);
        assert!(!a.poll_ready(10, &mut cx), "a short batch waits");
        assert!(a.poll_ready(50, &mut cx), "the target goes at once");
        for _ in 0..20 {
            a.wrote(Duration::from_millis(50));
        }
        assert_eq!(a.target(), 64, "never beyond max: {a:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_short_batch_waits_at_most_one_write_and_at_most_the_cap() {
        let mut a = Adaptive::new(64, Duration::from_millis(3));
        let mut cx = noop();
        a.wrote(Duration::from_millis(1));
        feed(&mut a, 200, Duration::from_millis(20)).await;
        for _ in 0..20 {
            a.wrote(Duration::from_millis(5));
        }
        a.arrived(0);
        tokio::time::advance(Duration::from_micros(2_999)).await;
        assert!(!a.poll_ready(2, &mut cx));
        tokio::time::advance(Duration::from_micros(1)).await;
        assert!(a.poll_ready(2, &mut cx), "the cap (3 ms) is up");
        a.taken(0);
        a.cap = Duration::from_secs(1);
        a.arrived(0);
        tokio::time::advance(Duration::from_millis(4)).await;
        assert!(!a.poll_ready(2, &mut cx));
        tokio::time::advance(Duration::from_millis(2)).await;
        assert!(a.poll_ready(2, &mut cx), "one write's latency is up");
    }

    #[tokio::test(start_paused = true)]
    async fn the_target_shrinks_when_the_load_drops() {
        let mut a = Adaptive::new(256, Duration::from_millis(50));
        a.wrote(Duration::from_millis(1));
        feed(&mut a, 400, Duration::from_millis(20)).await;
        for _ in 0..10 {
            a.wrote(Duration::from_millis(10));
        }
        let peak = a.target();
        assert!(peak >= 100, "{a:?}");
        // 100 items/s now, still congested: the target follows the rate down.
        feed(&mut a, 20, Duration::from_millis(200)).await;
        assert!(a.target() <= 2, "{a:?}");
        // And the sink recovers: writes as quick as ever.
        for _ in 0..20 {
            a.wrote(Duration::from_millis(1));
        }
        assert_eq!(a.target(), 1, "{a:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_sink_slower_for_good_stops_counting_as_congested() {
        let mut a = Adaptive::new(64, Duration::from_millis(50));
        a.wrote(Duration::from_millis(1));
        a.wrote(Duration::from_millis(10));
        assert!(a.congested());
        for _ in 0..1_000 {
            a.wrote(Duration::from_millis(10));
        }
        assert!(!a.congested(), "{a:?}");
    }
}
