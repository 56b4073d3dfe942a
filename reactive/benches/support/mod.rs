//! Shared by the bench binaries: repeat a measurement and keep the median.

use std::time::{Duration, Instant};

/// Runs `f` (which processes `items` items) `reps` times after one warm-up and returns the
/// median throughput in items per second.
pub fn items_per_sec(items: u64, reps: usize, mut f: impl FnMut()) -> f64 {
    f();
    let mut times: Vec<Duration> = (0..reps)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed()
        })
        .collect();
    times.sort();
    items as f64 / times[reps / 2].as_secs_f64()
}

/// A contender in [`interleaved`]: its name, and one run of it.
pub type Contender<'a> = (String, Box<dyn FnMut() + 'a>);

/// Runs every contender once to warm up, then `reps` rounds in which each runs once in turn, so
/// that a machine whose load drifts (other builds, other benches) weighs on all of them alike.
/// Returns each one's median throughput in items per second, in the order given.
pub fn interleaved(items: u64, reps: usize, contenders: &mut [Contender<'_>]) -> Vec<f64> {
    let mut times: Vec<Vec<Duration>> = vec![Vec::with_capacity(reps); contenders.len()];
    for (_, f) in contenders.iter_mut() {
        f();
    }
    for _ in 0..reps {
        for (i, (_, f)) in contenders.iter_mut().enumerate() {
            let start = Instant::now();
            f();
            times[i].push(start.elapsed());
        }
    }
    times
        .into_iter()
        .map(|mut t| {
            t.sort();
            items as f64 / t[reps / 2].as_secs_f64()
        })
        .collect()
}

/// Prints one result line: the figure, and its ratio to the baseline.
pub fn report(name: &str, value: f64, baseline_name: &str, baseline: f64, target: Option<f64>) {
    let ratio = value / baseline;
    let verdict = match target {
        Some(t) if ratio >= t => format!("  target >= {t:.2}x: met"),
        Some(t) => format!("  target >= {t:.2}x: NOT met"),
        None => String::new(),
    };
    println!(
        "{name:<44} {:>8.1} M items/s   {ratio:>5.2}x {baseline_name}{verdict}",
        value / 1e6
    );
}

/// Reads the repetition count from `BENCH_REPS` (default `default`).
pub fn reps(default: usize) -> usize {
    std::env::var("BENCH_REPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Prints the baselines (the first `n_baselines` of `names` and `rates`), then each of ours
/// against the best of the baselines at the indices `batched` (with the target `target(i,
/// name)` gives the `i`-th of ours, if any) and against every baseline.
pub fn report_all(
    names: &[String],
    rates: &[f64],
    n_baselines: usize,
    batched: &[usize],
    target: impl Fn(usize, &str) -> Option<f64>,
) {
    let baselines: Vec<(&str, f64)> = names[..n_baselines]
        .iter()
        .map(String::as_str)
        .zip(rates.iter().copied())
        .collect();
    for (name, rate) in &baselines {
        println!(
            "{:<44} {:>8.1} M items/s",
            format!("baseline: {name}"),
            rate / 1e6
        );
    }
    let best = batched
        .iter()
        .map(|&i| baselines[i])
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .expect("at least one batched baseline");
    let best_name = format!("best batched: {}", best.0);
    for (i, (name, rate)) in names[n_baselines..]
        .iter()
        .zip(&rates[n_baselines..])
        .enumerate()
    {
        report(name, *rate, &best_name, best.1, target(i, name));
        for (baseline, value) in &baselines {
            report("", *rate, baseline, *value, None);
        }
    }
}
