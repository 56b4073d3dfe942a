//! Spill benchmarks. Run with `cargo bench -p reactive --bench spill` (files go to a temporary
//! directory under `SPILL_BENCH_DIR`, default the system's temp dir: say which disk in a report).
//!
//! 1. Throughput: 512-byte events from a fast source through the queue to a null subscriber,
//!    events/s, for the in-memory bounded queue (`queue(bounded(1024))`, the baseline) and for
//!    the spill with every event through the disk (`memory = 0`: written, read back, cursor
//!    saved), under each fsync policy; plus the spill with 1024 in memory (it spills only what
//!    the consumer has not caught up with).
//! 2. Latency per event, one at a time (push, then pop, on an empty queue): p50 and p99 of the
//!    round trip, for the spill's memory half and for the disk under each fsync policy.

#[allow(dead_code)] // `report` prints M items/s: the disk rates here want events/s.
mod support;

use std::hint::black_box;
use std::time::{Duration, Instant};

use reactive::queue::QueueConfig;
use reactive::spill::{self, Fsync, Spill, SpillConfig};
use reactive::{Error, Publisher, PublisherExt, Subscriber, Subscription};

const SIZE: usize = 512;

/// Takes everything, as fast as it comes.
struct Null(u64);

impl Subscriber<Vec<u8>> for Null {
    fn on_subscribe(&mut self, s: Subscription) {
        s.request(u64::MAX);
    }
    fn on_next(&mut self, x: Vec<u8>) {
        self.0 = self.0.wrapping_add(black_box(x[0]) as u64);
    }
    fn on_error(&mut self, e: Error) {
        panic!("{e}");
    }
    fn on_complete(&mut self) {
        black_box(self.0);
    }
}

fn events(n: u64) -> impl Iterator<Item = Vec<u8>> + Send + 'static {
    (0..n).map(|i| vec![i as u8; SIZE])
}

fn base_dir() -> std::path::PathBuf {
    std::env::var_os("SPILL_BENCH_DIR").map_or_else(std::env::temp_dir, Into::into)
}

fn policy_name(f: Fsync) -> String {
    match f {
        Fsync::Always => "always".into(),
        Fsync::Every(d) => format!("every {}ms", d.as_millis()),
        Fsync::Never => "never".into(),
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)]
}

fn main() {
    let reps = support::reps(3);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let policies = [
        Fsync::Never,
        Fsync::Every(Duration::from_millis(100)),
        Fsync::Always,
    ];
    println!("disk: {}", base_dir().display());
    println!("1) fast source -> queue -> null sink, {SIZE}-byte events, median of {reps}");
    let n_mem = 1_000_000;
    let memory = support::items_per_sec(n_mem, reps, || {
        rt.block_on(
            reactive::iter(events(n_mem))
                .queue(QueueConfig::bounded(1024))
                .connect(Null(0)),
        )
    });
    println!(
        "{:<44} {:>10.0} events/s",
        "baseline: queue bounded(1024), in memory", memory
    );
    let mut runs: Vec<(String, usize, Fsync)> = policies
        .iter()
        .map(|&f| {
            (
                format!("spill, all through disk, fsync {}", policy_name(f)),
                0,
                f,
            )
        })
        .collect();
    runs.push((
        "spill, 1024 in memory, fsync never".into(),
        1024,
        Fsync::Never,
    ));
    for (name, mem, fsync) in runs {
        let n: u64 = if fsync == Fsync::Always {
            2_000
        } else {
            200_000
        };
        let rate = support::items_per_sec(n, reps, || {
            let dir = tempfile::tempdir_in(base_dir()).unwrap();
            let config = SpillConfig::new(dir.path(), mem, 1 << 30).fsync(fsync);
            let (tx, rx, _) = spill::open::<Vec<u8>>(config).unwrap();
            rt.block_on(Spill::new(reactive::iter(events(n)), tx, rx).connect(Null(0)));
        });
        println!(
            "{name:<44} {rate:>10.0} events/s   {:>7.4}x in-memory",
            rate / memory
        );
    }

    println!("2) one event at a time: push, then pop; round trip per event");
    let mut lat_runs: Vec<(String, usize, Fsync)> = vec![(
        "spill, memory half (the in-memory path)".into(),
        1,
        Fsync::Never,
    )];
    lat_runs.extend(policies.iter().map(|&f| {
        (
            format!("spill, through disk, fsync {}", policy_name(f)),
            0,
            f,
        )
    }));
    let mut base_p99 = None;
    for (name, mem, fsync) in lat_runs {
        let n = if fsync == Fsync::Always {
            1_000
        } else {
            20_000
        };
        let dir = tempfile::tempdir_in(base_dir()).unwrap();
        let config = SpillConfig::new(dir.path(), mem, 1 << 30).fsync(fsync);
        let (mut tx, mut rx, _) = spill::open::<Vec<u8>>(config).unwrap();
        let mut times: Vec<Duration> = rt.block_on(async {
            let mut times = Vec::with_capacity(n);
            for e in events(n as u64) {
                let start = Instant::now();
                tx.push(e).await.unwrap();
                black_box(rx.pop().await.unwrap());
                times.push(start.elapsed());
            }
            times
        });
        times.sort();
        let (p50, p99) = (percentile(&times, 0.5), percentile(&times, 0.99));
        let base = *base_p99.get_or_insert(p99);
        println!(
            "{name:<44} p50 {:>9.1} µs   p99 {:>9.1} µs   {:>7.1}x the memory p99",
            p50.as_secs_f64() * 1e6,
            p99.as_secs_f64() * 1e6,
            p99.as_secs_f64() / base.as_secs_f64()
        );
    }
}
