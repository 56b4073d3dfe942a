//! The Kafka source's consume rate into a null sink (each record acknowledged), against a bare
//! rdkafka `StreamConsumer` loop on the same broker and topic, in the same run. Needs tansu
//! (see the README's Kafka section): `cargo bench -p reactive --features kafka --bench kafka`.
//!
//! The topic is filled once; each measurement is a fresh consumer group reading it from the
//! start, timed from its first record to its last, so group joins do not count. Rounds
//! alternate between the two, and the medians are compared.

use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use reactive::kafka::{KafkaConfig, KafkaSource};
use reactive::{Prefetch, PublisherExt};

const RECORDS: u64 = 60_000;

/// CPU time this process has used (user + system), from /proc (zero where unavailable).
fn cpu_time() -> Duration {
    let ticks = std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            let rest = s.rsplit_once(')')?.1.to_string();
            let f: Vec<&str> = rest.split_whitespace().collect();
            Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
        })
        .unwrap_or(0);
    Duration::from_millis(ticks * 10) // USER_HZ is 100 on Linux
}

/// Wall time from the first record to the last, and the CPU time spent meanwhile.
type Measured = (Duration, Duration);
const PARTITIONS: u32 = 12;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

fn bare(bootstrap: &str, group: &str) -> Measured {
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
        for _ in 1..RECORDS {
            let m = stream.next().await.expect("a record").expect("no error");
            bytes += m.payload().map_or(0, <[u8]>::len);
        }
        let elapsed = (start.elapsed(), cpu_time().saturating_sub(cpu));
        std::hint::black_box(bytes);
        elapsed
    })
}

fn source(bootstrap: &str, group: &str) -> Measured {
    let runtime = runtime();
    runtime.block_on(async {
        let source = KafkaSource::new(KafkaConfig::new(bootstrap, group, ["bench"]));
        let handle = source.handle();
        let mut records = source.into_stream_with(Prefetch::new(2048));
        let mut bytes = 0usize;
        let first = records
            .try_next()
            .await
            .expect("no error")
            .expect("a record");
        bytes += first.payload.as_ref().map_or(0, Vec::len);
        first.ack.ack();
        let start = Instant::now();
        let cpu = cpu_time();
        for _ in 1..RECORDS {
            let r = records
                .try_next()
                .await
                .expect("no error")
                .expect("a record");
            bytes += r.payload.as_ref().map_or(0, Vec::len);
            r.ack.ack(); // the null sink acknowledges at once
        }
        let elapsed = (start.elapsed(), cpu_time().saturating_sub(cpu));
        std::hint::black_box(bytes);
        drop(records);
        handle.close().await;
        elapsed
    })
}

fn main() {
    let reps: usize = std::env::var("BENCH_REPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let Some(broker) = testbroker::Broker::start() else {
        println!("kafka: skipped, no tansu broker on PATH");
        return;
    };
    broker.create_topic("bench", PARTITIONS);
    let payload = vec![b'x'; 512];
    broker.produce("bench", RECORDS, |i| {
        ((i % 64).to_string().into_bytes(), payload.clone())
    });
    println!(
        "kafka source into a null sink vs a bare StreamConsumer loop, {RECORDS} records of 512 B \
         in {PARTITIONS} partitions on tansu, median of {reps} alternating rounds"
    );
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for round in 0..reps {
        a.push(bare(&broker.bootstrap(), &format!("bare-{round}")));
        b.push(source(&broker.bootstrap(), &format!("source-{round}")));
    }
    a.sort_by_key(|m| m.0);
    b.sort_by_key(|m| m.0);
    let rate = |d: &Measured| RECORDS as f64 / d.0.as_secs_f64();
    let (bare_rate, source_rate) = (rate(&a[reps / 2]), rate(&b[reps / 2]));
    let cpu = |m: &[Measured]| {
        let mut v: Vec<f64> = m
            .iter()
            .map(|x| x.1.as_secs_f64() * 1e6 / RECORDS as f64)
            .collect();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let ratio = source_rate / bare_rate;
    println!(
        "{:<44} {bare_rate:>9.0} records/s   client CPU {:.1} µs/record",
        "bare rdkafka StreamConsumer loop",
        cpu(&a)
    );
    println!(
        "{:<44} {source_rate:>9.0} records/s   client CPU {:.1} µs/record   {ratio:.2}x bare  target >= 0.90x: {}",
        "reactive::kafka::KafkaSource, each acked",
        cpu(&b),
        if ratio >= 0.9 { "met" } else { "NOT met" }
    );
    println!(
        "(the broker sets both rates here; the CPU per record is what the client itself costs)"
    );
}
