//! The Kafka source's consume rate and client CPU per record, against a bare rdkafka
//! `StreamConsumer` loop on the same broker and topic, in the same run. Needs tansu (see the
//! README's Kafka section): `cargo bench -p reactive --features kafka --bench kafka`.
//!
//! The broker is tansu on its `memory://` engine (set `KAFKA_BENCH_STORAGE=sqlite://tansu.db`
//! for the disk engine), so that fetches are not what is measured. The topic is filled before
//! any timing starts; each measurement is a fresh consumer group reading it from the start,
//! timed from its first record to its last, so group joins do not count. Three consumers:
//!
//! - the bare loop: `StreamConsumer::stream()`, each payload's length read;
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
//! `KAFKA_BENCH_MAX_BATCH`, `KAFKA_BENCH_QMM` (librdkafka's `queued.min.messages`), and
//! `KAFKA_BENCH_STATS=1` (the source's stats after each round, on stderr). CPU is the whole process's (user +
//! system, summed over its threads), librdkafka's threads included, over the timed span.

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
    let mut ns = 0u64;
    if let Ok(tasks) = std::fs::read_dir("/proc/self/task") {
        for task in tasks.flatten() {
            let stat = std::fs::read_to_string(task.path().join("schedstat")).unwrap_or_default();
            ns += stat
                .split_whitespace()
                .next()
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0);
        }
    }
    Duration::from_nanos(ns)
}

/// Wall time from the first record to the last, and the CPU time spent meanwhile.
#[derive(Clone, Copy)]
struct Measured {
    wall: Duration,
    cpu: Duration,
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

fn bare(bootstrap: &str, group: &str, records: u64) -> Measured {
    let runtime = runtime();
    runtime.block_on(async {
        let consumer: StreamConsumer = KafkaConfig::new(bootstrap, group, ["bench"])
            .client_config()
            .create()
            .expect("consumer");
        consumer.subscribe(&["bench"]).expect("subscribe");
        let mut stream = consumer.stream();
        let mut bytes = 0usize;
        let first = stream.next().await.expect("a record").expect("no error");
        bytes += first.payload().map_or(0, <[u8]>::len);
        let start = Instant::now();
        let cpu = cpu_time();
        for _ in 1..records {
            let m = stream.next().await.expect("a record").expect("no error");
            bytes += m.payload().map_or(0, <[u8]>::len);
        }
        let measured = Measured {
            wall: start.elapsed(),
            cpu: cpu_time().saturating_sub(cpu),
        };
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
    start: Option<(Instant, Duration)>,
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
            self.start = Some((Instant::now(), cpu_time()));
        }
        self.bytes += r.payload().map_or(0, <[u8]>::len);
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
            if let (Some((wall, cpu)), Some(done)) = (self.start, self.done.take()) {
                let _ = done.send(Measured {
                    wall: wall.elapsed(),
                    cpu: cpu_time().saturating_sub(cpu),
                });
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
            ..KafkaConfig::new(bootstrap, group, ["bench"])
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
                    "{name}: {:.0} records/s, CPU {:.2} µs/record",
                    records as f64 / x.wall.as_secs_f64(),
                    x.cpu.as_secs_f64() * 1e6 / records as f64
                );
            }
        }
        return;
    }
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
    let (bare_rate, bare_cpu) = (rate(&a), cpu(&a));
    let line = |name: &str, m: &[Measured]| {
        let (r, u) = (rate(m), cpu(m));
        println!(
            "{name:<40} {:>8.0} records/s ({:.0}..{:.0})  CPU {:.2} µs/record ({:.2}..{:.2})",
            r.1, r.0, r.2, u.1, u.0, u.2
        );
        (r.1, u.1)
    };
    line("bare rdkafka StreamConsumer loop", &a);
    for (name, m) in [
        ("KafkaSource, acks batched (ack_all)", &b),
        ("KafkaSource, each acked, commits", &c),
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
