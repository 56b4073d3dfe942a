use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

/// What a stage is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Activity {
    /// Waiting for input.
    Idle = 0,
    /// Working on an item.
    Busy = 1,
    /// Holding output the next stage will not take yet.
    Backpressured = 2,
}

/// The time accounting of one stage. Clone it to share; one task should drive it with
/// [`set`](Self::set), any task may take [`snapshot`](Self::snapshot)s.
#[derive(Debug, Clone)]
pub struct Stage {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    name: String,
    origin: Instant,
    spent: [AtomicU64; 3],
    current: AtomicU8,
    since_ns: AtomicU64,
    items_in: AtomicU64,
    items_out: AtomicU64,
    input_fill: AtomicU64,
}

/// A stage's counters at one moment, or over a window (see [`since`](Self::since)).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StageSnapshot {
    /// The stage's name.
    pub name: String,
    /// The time covered.
    pub elapsed: Duration,
    /// Time spent working.
    pub busy: Duration,
    /// Time spent waiting for input.
    pub idle: Duration,
    /// Time spent waiting for the next stage.
    pub backpressured: Duration,
    /// Items that entered.
    pub items_in: u64,
    /// Items that left.
    pub items_out: u64,
    /// How full the stage's input queue is, 0 to 1 (0 when it has none).
    pub input_fill: f64,
}

fn ratio(part: Duration, whole: Duration) -> f64 {
    if whole.is_zero() {
        0.0
    } else {
        (part.as_secs_f64() / whole.as_secs_f64()).min(1.0)
    }
}

impl StageSnapshot {
    /// Fraction of the time busy.
    pub fn busy_ratio(&self) -> f64 {
        ratio(self.busy, self.elapsed)
    }
    /// Fraction of the time idle.
    pub fn idle_ratio(&self) -> f64 {
        ratio(self.idle, self.elapsed)
    }
    /// Fraction of the time backpressured.
    pub fn backpressured_ratio(&self) -> f64 {
        ratio(self.backpressured, self.elapsed)
    }
    /// Items in per second.
    pub fn in_rate(&self) -> f64 {
        if self.elapsed.is_zero() {
            0.0
        } else {
            self.items_in as f64 / self.elapsed.as_secs_f64()
        }
    }
    /// Items out per second.
    pub fn out_rate(&self) -> f64 {
        if self.elapsed.is_zero() {
            0.0
        } else {
            self.items_out as f64 / self.elapsed.as_secs_f64()
        }
    }
    /// The window between an earlier snapshot of the same stage and this one.
    pub fn since(&self, earlier: &StageSnapshot) -> StageSnapshot {
        StageSnapshot {
            name: self.name.clone(),
            elapsed: self.elapsed.saturating_sub(earlier.elapsed),
            busy: self.busy.saturating_sub(earlier.busy),
            idle: self.idle.saturating_sub(earlier.idle),
            backpressured: self.backpressured.saturating_sub(earlier.backpressured),
            items_in: self.items_in.saturating_sub(earlier.items_in),
            items_out: self.items_out.saturating_sub(earlier.items_out),
            input_fill: self.input_fill,
        }
    }
}

impl Stage {
    /// A stage, idle from now.
    pub fn new(name: impl Into<String>) -> Self {
        Stage {
            inner: Arc::new(Inner {
                name: name.into(),
                origin: Instant::now(),
                spent: Default::default(),
                current: AtomicU8::new(Activity::Idle as u8),
                since_ns: AtomicU64::new(0),
                items_in: AtomicU64::new(0),
                items_out: AtomicU64::new(0),
                input_fill: AtomicU64::new(0f64.to_bits()),
            }),
        }
    }

    fn now_ns(&self) -> u64 {
        self.inner.origin.elapsed().as_nanos() as u64
    }

    /// Switches to `activity`, charging the time since the last switch to the previous one.
    pub fn set(&self, activity: Activity) {
        let now = self.now_ns();
        let previous = self.inner.current.swap(activity as u8, Ordering::AcqRel);
        let since = self.inner.since_ns.swap(now, Ordering::AcqRel);
        self.inner.spent[usize::from(previous.min(2))]
            .fetch_add(now.saturating_sub(since), Ordering::Relaxed);
    }

    /// Counts items in.
    pub fn record_in(&self, n: u64) {
        self.inner.items_in.fetch_add(n, Ordering::Relaxed);
    }

    /// Counts items out.
    pub fn record_out(&self, n: u64) {
        self.inner.items_out.fetch_add(n, Ordering::Relaxed);
    }

    /// Records how full the stage's input queue is (0 to 1).
    pub fn set_input_fill(&self, fill: f64) {
        self.inner
            .input_fill
            .store(fill.clamp(0.0, 1.0).to_bits(), Ordering::Relaxed);
    }

    /// The stage's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The counters since the stage was made, the current activity included up to now.
    pub fn snapshot(&self) -> StageSnapshot {
        let now = self.now_ns();
        let current = usize::from(self.inner.current.load(Ordering::Acquire).min(2));
        let since = self.inner.since_ns.load(Ordering::Acquire);
        let mut spent = [0u64; 3];
        for (i, s) in spent.iter_mut().enumerate() {
            *s = self.inner.spent[i].load(Ordering::Relaxed);
        }
        spent[current] += now.saturating_sub(since);
        StageSnapshot {
            name: self.inner.name.clone(),
            elapsed: Duration::from_nanos(now),
            idle: Duration::from_nanos(spent[0]),
            busy: Duration::from_nanos(spent[1]),
            backpressured: Duration::from_nanos(spent[2]),
            items_in: self.inner.items_in.load(Ordering::Relaxed),
            items_out: self.inner.items_out.load(Ordering::Relaxed),
            input_fill: f64::from_bits(self.inner.input_fill.load(Ordering::Relaxed)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn time_is_charged_to_the_activity_it_was_spent_in() {
        let stage = Stage::new("sink");
        tokio::time::advance(Duration::from_millis(100)).await; // idle
        stage.set(Activity::Busy);
        tokio::time::advance(Duration::from_millis(300)).await;
        stage.set(Activity::Backpressured);
        tokio::time::advance(Duration::from_millis(600)).await;
        stage.record_in(50);
        stage.record_out(40);
        let s = stage.snapshot();
        assert_eq!(
            (s.idle, s.busy, s.backpressured),
            (
                Duration::from_millis(100),
                Duration::from_millis(300),
                Duration::from_millis(600)
            )
        );
        assert!((s.backpressured_ratio() - 0.6).abs() < 1e-9);
        assert!((s.in_rate() - 50.0).abs() < 1e-9);
        stage.set(Activity::Busy);
        tokio::time::advance(Duration::from_millis(1000)).await;
        let window = stage.snapshot().since(&s);
        assert!((window.busy_ratio() - 1.0).abs() < 1e-9);
        assert_eq!(window.items_out, 0);
    }
}
