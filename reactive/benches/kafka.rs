//! The Kafka source's consume rate and client CPU per record, against a bare rdkafka
//! `StreamConsumer` loop on the same broker and topic, in the same run. Needs tansu (see the
//! README's Kafka section): `cargo bench -p reactive --features kafka --bench kafka`.
//!
//! The broker is tansu on its `memory://` engine (set `KAFKA_BENCH_STORAGE=sqlite://tansu.db`
//! for the disk engine), so that fetches are not what is measured. Both consumers fetch with
//! `fetch.wait.max.ms=5`: with librdkafka's default of 500 ms, tansu held fetches back and set
//! the pace of both (about 33,000 records/s, with the broker and the client each at 2-3% of a
//! core); at 5 ms both read about ten times faster, and the broker uses about a third of a
//! core (`KAFKA_BENCH_SET=fetch.wait.max.ms=500` shows the difference). The topic is filled
//! before any timing starts; each measurement is a fresh consumer group reading it from the
//! start, timed from its first record to its last, so group joins do not count. Three
//! consumers:
//!
//! - the bare loop: `StreamConsumer::stream()`, each payload's length read (with
//!   `KAFKA_BENCH_TOUCH=1` every byte of it, in all three consumers);
//! - the source, acks batched: [`KafkaSource`] connected to a null sink (a [`Subscriber`] that
//!   requests a window of 2,048 records, reads each payload's length, and gives the acks of
//!   each 256 records at once with [`Ack::ack_all`]);
//! - the source, each acked: the same sink acknowledging each record on its own as it arrives,
//!   with commits every 500 ms: the full cost of at-least-once.
//!
//! The sink is connected to the source directly, as a pipeline's queue is; a `Stream` bridge
//! (`into_stream`) adds its own hop, measured by the `hop` bench.
//!
//! Rounds alternate between them; the medians are compared.
//!
//! Knobs for finding where the time goes (defaults are the source's own):
//! `KAFKA_BENCH_ONLY=bare|batched|each` (one consumer alone, for a profiler),
//! `KAFKA_BENCH_RECORDS`, `BENCH_REPS`, `KAFKA_BENCH_STORAGE`, `KAFKA_BENCH_COMMIT_MS`,
//! `KAFKA_BENCH_MAX_BATCH`, `KAFKA_BENCH_QMM` (librdkafka's `queued.min.messages`, for the source),
//! `KAFKA_BENCH_SET=key=value,...` (librdkafka properties for both consumers), and
//! `KAFKA_BENCH_STATS=1` (the source's stats after each round, on stderr), `KAFKA_BENCH_THREADS=1` (with
//! `KAFKA_BENCH_ONLY`: each thread's CPU and how often it was scheduled in, per record). CPU is the whole process's (user +
//! system, summed over its threads), librdkafka's threads included, over the timed span. The
//! broker's CPU over the same span is shown too, in percent of one core: whether the broker is
//! what sets the rate.

use std::time::{Duration, Instant};

use futures::StreamExt;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use reactive::kafka::{Ack, KafkaConfig, KafkaRecord, KafkaSource};
use reactive::{Publisher, Subscriber, Subscription};

const PARTITIONS: u32 = 12;

/// CPU time this process's live threads have used, in nanoseconds, from each thread's
/// /proc/self/task/*/schedstat (finer than /proc/self/stat's 10 ms ticks; zero where
/// unavailable). The consumers' threads all live across the timed span.
fn cpu_time() -> Duration {
    threads_cpu("/proc/self/task")
}

/// The broker's process id: the child of this process named `tansu` (found once).
fn broker_pid() -> Option<u32> {
    static PID: std::sync::OnceLock<Option<u32>> = std::sync::OnceLock::new();
    *PID.get_or_init(|| {
        let me = std::process::id().to_string();
        std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
            let pid: u32 = e.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(e.path().join("stat")).ok()?;
            // pid (comm) state ppid ...
            let (comm, rest) = stat.split_once(") ")?;
            let ppid = rest.split_whitespace().nth(1)?;
            (comm.ends_with("(tansu") && ppid == me).then_some(pid)
        })
    })
}

/// CPU time the broker's threads have used (zero when it is not found): whether the broker is
/// what limits a consumer's rate shows as its CPU over the timed span nearing its cores.
fn broker_cpu_time() -> Duration {
    broker_pid().map_or(Duration::ZERO, |pid| {
        threads_cpu(&format!("/proc/{pid}/task"))
    })
}

/// The CPU time of the threads listed in `dir` (a /proc/PID/task), from their schedstat.
fn threads_cpu(dir: &str) -> Duration {
    threads(dir).iter().map(|t| t.cpu).sum()
}

/// One thread's CPU time and how many times it was scheduled in (its wake-ups, mostly), from
/// /proc/PID/task/TID/schedstat, and its name.
#[derive(Clone)]
struct ThreadCpu {
    tid: u64,
    name: String,
    cpu: Duration,
    runs: u64,
}

/// The threads listed in `dir` (a /proc/PID/task).
fn threads(dir: &str) -> Vec<ThreadCpu> {
    let Ok(tasks) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for task in tasks.flatten() {
        let stat = std::fs::read_to_string(task.path().join("schedstat")).unwrap_or_default();
        let f: Vec<u64> = stat
            .split_whitespace()
            .map(|v| v.parse().unwrap_or(0))
            .collect();
        let name = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        out.push(ThreadCpu {
            tid: task
                .file_name()
                .to_str()
                .and_then(|t| t.parse().ok())
                .unwrap_or(0),
            name: name.trim().to_string(),
            cpu: Duration::from_nanos(f.first().copied().unwrap_or(0)),
            runs: f.get(2).copied().unwrap_or(0),
        });
    }
    out
}

/// Per thread name, the CPU time and the runs since `before` (threads born since count whole).
fn threads_since(before: &[ThreadCpu]) -> Vec<ThreadCpu> {
    let mut by_name: Vec<ThreadCpu> = Vec::new();
    for t in threads("/proc/self/task") {
        let earlier = before.iter().find(|b| b.tid == t.tid);
        let cpu = t
            .cpu
            .saturating_sub(earlier.map_or(Duration::ZERO, |b| b.cpu));
        let runs = t.runs.saturating_sub(earlier.map_or(0, |b| b.runs));
        match by_name.iter_mut().find(|b| b.name == t.name) {
            Some(b) => {
                b.cpu += cpu;
                b.runs += runs;
            }
            None => by_name.push(ThreadCpu { cpu, runs, ..t }),
        }
    }
    by_name.retain(|t| !t.cpu.is_zero());
    by_name.sort_by_key(|t| std::cmp::Reverse(t.cpu));
    by_name
}

/// Wall time from the first record to the last, and the CPU time spent meanwhile (by this
/// process, and by the broker).
#[derive(Clone)]
struct Measured {
    wall: Duration,
    cpu: Duration,
    broker: Duration,
    /// Per thread name (with `KAFKA_BENCH_THREADS`).
    threads: Vec<ThreadCpu>,
}

/// When a timed span started: wall clock, this process's CPU, the broker's CPU, and (with
/// `KAFKA_BENCH_THREADS`) each thread's.
struct Start(Instant, Duration, Duration, Option<Vec<ThreadCpu>>);

impl Start {
    fn now() -> Start {
        let threads = std::env::var_os("KAFKA_BENCH_THREADS").map(|_| threads("/proc/self/task"));
        Start(Instant::now(), cpu_time(), broker_cpu_time(), threads)
    }

    fn end(&self) -> Measured {
        Measured {
            wall: self.0.elapsed(),
            cpu: cpu_time().saturating_sub(self.1),
            broker: broker_cpu_time().saturating_sub(self.2),
            threads: self.3.as_deref().map(threads_since).unwrap_or_default(),
        }
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// What the consumers do with a payload: take its length, or with `KAFKA_BENCH_TOUCH` read
/// every byte of it (sum them), as a consumer that writes it somewhere does.
fn read(payload: Option<&[u8]>) -> usize {
    static TOUCH: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let payload = payload.unwrap_or_default();
    if *TOUCH.get_or_init(|| std::env::var_os("KAFKA_BENCH_TOUCH").is_some()) {
        payload.iter().map(|&b| usize::from(b)).sum()
    } else {
        payload.len()
    }
}

/// The consumers' configuration: the source's defaults, fetches the broker answers at once
/// (see the module docs), and any librdkafka properties in `KAFKA_BENCH_SET`
/// (`key=value,key=value`), for both consumers alike.
fn config(bootstrap: &str, group: &str) -> KafkaConfig {
    let mut config = KafkaConfig::new(bootstrap, group, ["bench"]).set("fetch.wait.max.ms", "5");
    let set = std::env::var("KAFKA_BENCH_SET").unwrap_or_default();
    for (k, v) in set.split(',').filter_map(|kv| kv.split_once('=')) {
        config = config.set(k.trim(), v.trim());
    }
    config
}

fn bare(bootstrap: &str, group: &str, records: u64) -> Measured {
    let runtime = runtime();
    runtime.block_on(async {
        let consumer: StreamConsumer = config(bootstrap, group)
            .client_config()
            .create()
            .expect("consumer");
        consumer.subscribe(&["bench"]).expect("subscribe");
        let mut stream = consumer.stream();
        let mut bytes = 0usize;
        let first = stream.next().await.expect("a record").expect("no error");
        bytes += read(first.payload());
        let start = Start::now();
        for _ in 1..records {
            let m = stream.next().await.expect("a record").expect("no error");
            bytes += read(m.payload());
        }
        let measured = start.end();
        std::hint::black_box(bytes);
        measured
    })
}

/// How the source's consumer acknowledges.
#[derive(Clone, Copy, PartialEq)]
enum Acks {
    /// `Ack::ack_all` over each 256 records.
    Batched,
    /// `Ack::ack` on each record as it arrives.
    Each,
}

/// The null sink: requests a window of 2,048 and tops it up by halves, reads each payload's
/// length, acknowledges, and cancels once it has `target` records.
struct NullSink {
    target: u64,
    received: u64,
    acks: Acks,
    held: Vec<Ack>,
    bytes: usize,
    subscription: Option<Subscription>,
    start: Option<Start>,
    done: Option<std::sync::mpsc::Sender<Measured>>,
}

const WINDOW: u64 = 2048;

impl Subscriber<KafkaRecord> for NullSink {
    fn on_subscribe(&mut self, subscription: Subscription) {
        subscription.request(WINDOW);
        self.subscription = Some(subscription);
    }

    fn on_next(&mut self, r: KafkaRecord) {
        self.received += 1;
        if self.received == 1 {
            // Timed from the first record: the group join does not count.
            self.start = Some(Start::now());
        }
        self.bytes += read(r.payload());
        match self.acks {
            Acks::Each => r.ack.ack(),
            Acks::Batched => {
                self.held.push(r.ack);
                if self.held.len() == 256 {
                    Ack::ack_all(self.held.drain(..));
                }
            }
        }
        if self.received % (WINDOW / 2) == 0 {
            if let Some(s) = &self.subscription {
                s.request(WINDOW / 2);
            }
        }
        if self.received == self.target {
            Ack::ack_all(self.held.drain(..));
            if let (Some(start), Some(done)) = (&self.start, self.done.take()) {
                let _ = done.send(start.end());
            }
            std::hint::black_box(self.bytes);
            if let Some(s) = self.subscription.take() {
                s.cancel();
            }
        }
    }

    fn on_error(&mut self, e: reactive::Error) {
        panic!("the source failed: {e}");
    }

    fn on_complete(&mut self) {}
}

fn source(bootstrap: &str, group: &str, records: u64, acks: Acks) -> Measured {
    let runtime = runtime();
    runtime.block_on(async {
        let config = KafkaConfig {
            lag_interval: Duration::ZERO,
            commit_interval: std::env::var("KAFKA_BENCH_COMMIT_MS")
                .ok()
                .and_then(|v| v.parse().ok())
                .map_or(Duration::from_millis(500), Duration::from_millis),
            max_batch: std::env::var("KAFKA_BENCH_MAX_BATCH")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(512),
            ..config(bootstrap, group)
        };
        let config = match std::env::var("KAFKA_BENCH_QMM") {
            Ok(v) => config.set("queued.min.messages", &v),
            Err(_) => config,
        };
        let source = KafkaSource::new(config);
        let handle = source.handle();
        let (tx, rx) = std::sync::mpsc::channel();
        source
            .connect(NullSink {
                target: records,
                received: 0,
                acks,
                held: Vec::with_capacity(256),
                bytes: 0,
                subscription: None,
                start: None,
                done: Some(tx),
            })
            .await;
        if std::env::var_os("KAFKA_BENCH_STATS").is_some() {
            let s = handle.stats();
            eprintln!(
                "stats: pauses {} stalls {} recoveries {} rebalances {} commits {} errors {}",
                s.pauses, s.stalls, s.stall_recoveries, s.rebalances, s.commits, s.errors
            );
        }
        handle.close().await;
        rx.recv().expect("the sink reached its target")
    })
}

fn median(mut v: Vec<f64>) -> (f64, f64, f64) {
    v.sort_by(f64::total_cmp);
    (v[0], v[v.len() / 2], v[v.len() - 1])
}

fn main() {
    let reps: usize = std::env::var("BENCH_REPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let records: u64 = std::env::var("KAFKA_BENCH_RECORDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000);
    let chosen = std::env::var("KAFKA_BENCH_STORAGE").ok();
    let mut storage = chosen
        .clone()
        .unwrap_or_else(|| "memory://tansu/".to_string());
    let broker = match testbroker::Broker::try_start_with_storage(&storage) {
        Ok(b) => b,
        // A tansu built without its memory engine (feature dynostore): the disk engine.
        Err(e) if chosen.is_none() && e.contains("FeatureNotEnabled") => {
            println!("(this tansu has no memory engine: sqlite, where the broker sets the rate)");
            storage = "sqlite://tansu.db".to_string();
            match testbroker::Broker::try_start_with_storage(&storage) {
                Ok(b) => b,
                Err(e) => {
                    println!("kafka: skipped, {e}");
                    return;
                }
            }
        }
        Err(e) => {
            println!("kafka: skipped, {e}");
            return;
        }
    };
    broker.create_topic("bench", PARTITIONS);
    let payload = vec![b'x'; 512];
    broker.produce("bench", records, |i| {
        ((i % 64).to_string().into_bytes(), payload.clone())
    });
    println!("pid {}", std::process::id());
    println!(
        "kafka: {records} records of 512 B in {PARTITIONS} partitions on tansu ({storage}), \
         filled before timing; {reps} alternating rounds, min / median / max"
    );
    let bootstrap = broker.bootstrap();
    let (mut a, mut b, mut c) = (Vec::new(), Vec::new(), Vec::new());
    // KAFKA_BENCH_ONLY=bare|batched|each runs one consumer alone (to profile it).
    let only = std::env::var("KAFKA_BENCH_ONLY").ok();
    let runs = |name: &str| only.as_deref().is_none_or(|o| o == name);
    for round in 0..reps {
        if runs("bare") {
            a.push(bare(&bootstrap, &format!("bare-{round}"), records));
        }
        if runs("batched") {
            b.push(source(
                &bootstrap,
                &format!("batched-{round}"),
                records,
                Acks::Batched,
            ));
        }
        if runs("each") {
            c.push(source(
                &bootstrap,
                &format!("each-{round}"),
                records,
                Acks::Each,
            ));
        }
    }
    if only.is_some() {
        for (name, m) in [("bare", &a), ("batched", &b), ("each", &c)] {
            for x in m.iter() {
                println!(
                    "{name}: {:.0} records/s, CPU {:.2} µs/record, broker {:.0}% of a core",
                    records as f64 / x.wall.as_secs_f64(),
                    x.cpu.as_secs_f64() * 1e6 / records as f64,
                    100.0 * x.broker.as_secs_f64() / x.wall.as_secs_f64()
                );
                for t in &x.threads {
                    println!(
                        "    {:<16} CPU {:.3} µs/record, {:.1} runs per 1,000 records",
                        t.name,
                        t.cpu.as_secs_f64() * 1e6 / records as f64,
                        t.runs as f64 * 1e3 / records as f64
                    );
                }
            }
        }
        return;
    }
    report(records, &a, &b, &c);
}

/// The three consumers' medians (min..max) and the source's ratios to the bare loop.
fn report(records: u64, a: &[Measured], b: &[Measured], c: &[Measured]) {
    let rate = |m: &[Measured]| {
        median(
            m.iter()
                .map(|x| records as f64 / x.wall.as_secs_f64())
                .collect(),
        )
    };
    let cpu = |m: &[Measured]| {
        median(
            m.iter()
                .map(|x| x.cpu.as_secs_f64() * 1e6 / records as f64)
                .collect(),
        )
    };
    // The broker's CPU over the span, in percent of one core.
    let broker = |m: &[Measured]| {
        median(
            m.iter()
                .map(|x| 100.0 * x.broker.as_secs_f64() / x.wall.as_secs_f64())
                .collect(),
        )
    };
    let (bare_rate, bare_cpu) = (rate(a), cpu(a));
    let line = |name: &str, m: &[Measured]| {
        let (r, u, k) = (rate(m), cpu(m), broker(m));
        println!(
            "{name:<40} {:>8.0} records/s ({:.0}..{:.0})  CPU {:.2} µs/record ({:.2}..{:.2})  \
             broker {:.0}% of a core ({:.0}..{:.0})",
            r.1, r.0, r.2, u.1, u.0, u.2, k.1, k.0, k.2
        );
        (r.1, u.1)
    };
    line("bare rdkafka StreamConsumer loop", a);
    for (name, m) in [
        ("KafkaSource, acks batched (ack_all)", b),
        ("KafkaSource, each acked, commits", c),
    ] {
        let (r, u) = line(name, m);
        let (rr, ur) = (r / bare_rate.1, u / bare_cpu.1);
        println!(
            "{:<40} rate {rr:.2}x bare (target >= 0.90: {})   CPU {ur:.2}x bare (target <= 1.30: {})",
            "",
            if rr >= 0.9 { "met" } else { "NOT met" },
            if ur <= 1.3 { "met" } else { "NOT met" },
        );
    }
}
