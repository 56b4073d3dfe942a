//! The adaptive concurrency limiter against a simulated sink, on tokio's paused clock.
//!
//! The sink has a per-attempt latency `L` and a token-bucket rate limit `R` (burst `R/10`):
//! over the limit it rejects at once (reject mode, a 429) or holds the attempt until its token
//! comes (delay mode). The best static concurrency is `R·L`, and its throughput `R`. A pool of
//! `max` workers acquires a permit per attempt; a rejected worker backs off without its permit,
//! as a retry does.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use reactive::flow::{Controller, LimitConfig, Limiter, Outcome};
use tokio::time::Instant;

const LATENCY: Duration = Duration::from_millis(40);
const RATE: f64 = 1_200.0; // best static concurrency: 48
const MAX: usize = 64;
const BIN: Duration = Duration::from_millis(200); // five windows of one RTT

#[derive(Debug, Clone, Copy, PartialEq)]
enum Mode {
    Reject,
    Delay,
}

/// The sink: a token bucket whose rate follows `rate(t)`.
struct Sink {
    mode: Mode,
    start: Instant,
    rate: fn(Duration) -> f64,
    bucket: Mutex<(f64, Instant)>,
}

impl Sink {
    fn new(mode: Mode, rate: fn(Duration) -> f64) -> Arc<Sink> {
        let now = Instant::now();
        Arc::new(Sink {
            mode,
            start: now,
            rate,
            bucket: Mutex::new((RATE / 10.0, now)),
        })
    }

    /// `Some(hold)` when admitted after `hold`, `None` when rejected.
    fn admit(&self) -> Option<Duration> {
        let now = Instant::now();
        let rate = (self.rate)(now - self.start);
        let mut b = self.bucket.lock().unwrap();
        let burst = rate / 10.0;
        b.0 = (b.0 + (now - b.1).as_secs_f64() * rate).min(burst);
        b.1 = now;
        if b.0 >= 1.0 {
            b.0 -= 1.0;
            return Some(Duration::ZERO);
        }
        match self.mode {
            Mode::Reject => None,
            Mode::Delay => {
                b.0 -= 1.0;
                Some(Duration::from_secs_f64(-b.0 / rate))
            }
        }
    }
}

/// What a run recorded: successes per bin, and the limit sampled every 10 ms.
struct Run {
    done: Vec<u64>,
    limits: Vec<usize>,
    max_in_flight: usize,
}

impl Run {
    /// Throughput of bin `i`, per second.
    fn rate(&self, i: usize) -> f64 {
        self.done[i] as f64 / BIN.as_secs_f64()
    }

    /// The first bin at or after `from` whose throughput is at least 95% of `RATE`.
    fn reached(&self, from: usize) -> Option<usize> {
        (from..self.done.len()).find(|&i| self.rate(i) >= 0.95 * RATE)
    }

    /// The limit's range (max − min) over samples `from..to` (10 ms each).
    fn amplitude(&self, from: usize, to: usize) -> usize {
        let w = &self.limits[from..to];
        w.iter().max().unwrap() - w.iter().min().unwrap()
    }
}

async fn worker(limiter: Limiter, sink: Arc<Sink>, end: Instant, done: Arc<Mutex<Vec<u64>>>) {
    while Instant::now() < end {
        let permit = limiter.acquire().await;
        match sink.admit() {
            Some(hold) => {
                tokio::time::sleep(hold + LATENCY).await;
                permit.report(Outcome::Success);
                let bin = ((Instant::now() - sink.start).as_nanos() / BIN.as_nanos()) as usize;
                let mut d = done.lock().unwrap();
                if let Some(slot) = d.get_mut(bin) {
                    *slot += 1;
                }
            }
            None => {
                tokio::time::sleep(Duration::from_millis(1)).await;
                permit.report(Outcome::Backpressure);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

async fn run(controller: Controller, mode: Mode, rate: fn(Duration) -> f64, secs: u64) -> Run {
    let limiter = Limiter::new(LimitConfig::new(controller, MAX));
    let sink = Sink::new(mode, rate);
    let length = Duration::from_secs(secs);
    let end = sink.start + length;
    let bins = (length.as_nanos() / BIN.as_nanos()) as usize;
    let done = Arc::new(Mutex::new(vec![0u64; bins]));
    let tasks: Vec<_> = (0..MAX)
        .map(|_| tokio::spawn(worker(limiter.clone(), sink.clone(), end, done.clone())))
        .collect();
    let (mut limits, mut max_in_flight) = (Vec::new(), 0);
    while Instant::now() < end {
        let r = limiter.readings();
        limits.push(r.limit);
        max_in_flight = max_in_flight.max(r.in_flight);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(limiter.readings().in_flight, 0, "every permit came back");
    let done = done.lock().unwrap().clone();
    Run {
        done,
        limits,
        max_in_flight,
    }
}

fn steady(_: Duration) -> f64 {
    RATE
}

/// A quarter of the rate from 4 s to 7 s.
fn stalled(t: Duration) -> f64 {
    if t >= Duration::from_secs(4) && t < Duration::from_secs(7) {
        RATE / 4.0
    } else {
        RATE
    }
}

#[tokio::test(start_paused = true)]
async fn ours_reaches_the_best_static_throughput_sooner_than_arc_from_the_start() {
    for mode in [Mode::Reject, Mode::Delay] {
        let ours = run(Controller::Adaptive, mode, steady, 6).await;
        let arc = run(Controller::Arc, mode, steady, 6).await;
        let (o, a) = (ours.reached(0), arc.reached(0));
        // Within 1 s (25 RTTs); ARC adds one per RTT from 1, so it needs about 48 RTTs.
        assert!(o.is_some_and(|o| o <= 5), "{mode:?}: ours at bin {o:?}");
        assert!(
            a.is_none_or(|a| a >= o.unwrap() + 3),
            "{mode:?}: ARC at bin {a:?}"
        );
        assert!(ours.max_in_flight <= MAX && ours.limits.iter().all(|&l| l <= MAX));
    }
}

#[tokio::test(start_paused = true)]
async fn after_a_stall_ours_returns_to_the_best_static_throughput() {
    for mode in [Mode::Reject, Mode::Delay] {
        let ours = run(Controller::Adaptive, mode, stalled, 12).await;
        let arc = run(Controller::Arc, mode, stalled, 12).await;
        let recovered = 7_000 / BIN.as_millis() as usize; // the bin where the stall ends
        let during = ours.limits[600..700].iter().max().unwrap();
        assert!(
            *during < 40,
            "{mode:?}: the limit followed the stall down: {during}"
        );
        let (o, a) = (ours.reached(recovered), arc.reached(recovered));
        assert!(
            o.is_some_and(|o| o - recovered <= 5),
            "{mode:?}: ours back at bin {o:?}"
        );
        // In delay mode ARC hardly comes down during the stall (the held requests' RTT becomes
        // its new mean), so it has little to climb back: only reject mode separates the two.
        if mode == Mode::Reject {
            assert!(
                a.is_none_or(|a| a > o.unwrap()),
                "{mode:?}: ARC back at bin {a:?}, ours at {o:?}"
            );
        }
    }
}

#[tokio::test(start_paused = true)]
async fn in_steady_state_the_limit_stays_near_the_best_static_concurrency() {
    for mode in [Mode::Reject, Mode::Delay] {
        let ours = run(Controller::Adaptive, mode, steady, 10).await;
        // From 4 s to 10 s: 600 samples.
        let amplitude = ours.amplitude(400, 1_000);
        assert!(amplitude <= 16, "{mode:?}: the limit swings by {amplitude}");
        let mean = ours.limits[400..].iter().sum::<usize>() as f64 / 600.0;
        assert!(
            (36.0..=MAX as f64).contains(&mean),
            "{mode:?}: mean limit {mean}"
        );
        let tail: u64 = ours.done[20..].iter().sum();
        let throughput = tail as f64 / 6.0;
        assert!(throughput >= 0.95 * RATE, "{mode:?}: {throughput}/s");
    }
}

/// vector #26123: a rejection that a retry turns into success is still backpressure, and each
/// attempt is timed on its own, when the permit is taken per attempt inside `Retry::run`.
#[tokio::test(start_paused = true)]
async fn a_rejection_retried_into_success_still_counts_as_backpressure() {
    use reactive::sink::{DeadLetters, Delivery, Failure, Retry, RetryPolicy};
    let dir = std::env::temp_dir().join(format!("reactive-limiter-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let dead = DeadLetters::open(dir.join("dead.jsonl"), |x: &u64| x.to_string()).unwrap();
    let retry = Retry::new(RetryPolicy::default(), dead);
    let limiter = Limiter::new(LimitConfig::new(Controller::Adaptive, 8));
    let attempts = Mutex::new(Vec::new());
    let delivery = retry
        .run(1u64, |_| {
            let limiter = limiter.clone();
            let attempts = &attempts;
            async move {
                let permit = limiter.acquire().await;
                let first = attempts.lock().unwrap().is_empty();
                tokio::time::sleep(if first { LATENCY * 10 } else { LATENCY }).await;
                attempts.lock().unwrap().push(permit.elapsed());
                if first {
                    permit.report(Outcome::Backpressure);
                    Err(Failure::Retriable {
                        reason: "429".into(),
                        retry_after: Some(Duration::from_secs(1)),
                    })
                } else {
                    permit.report(Outcome::Success);
                    Ok(())
                }
            }
        })
        .await;
    assert_eq!(delivery, Delivery::Delivered { attempts: 2 });
    let r = limiter.readings();
    assert_eq!((r.backpressure, r.reported, r.in_flight), (1, 2, 0));
    // The success was timed alone: not the rejection, the Retry-After wait and the retry.
    assert_eq!(attempts.lock().unwrap()[1], LATENCY);
}
