//! `loadgen produce --bootstrap-servers ...`: the open-model generator into a Kafka topic.
//!
//! Events leave at their intended times (the generator of `run`, same seed, same events);
//! delivery latency is measured from the intended time to the broker's acknowledgement, so a
//! slow broker cannot hide behind a slow producer. With `--pressure-url` the rate follows the
//! processor's slow-source signal: AIMD on the pressure it publishes (lag over its target).

use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use futures::StreamExt;
use hdrhistogram::Histogram;
use rdkafka::ClientConfig;
use rdkafka::ClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use reactive::flow::{Aimd, RateSignal, Stage, slow_source};
use tokio::time::Instant;

use crate::cli::ProduceArgs;
use crate::generator::{self, EventShape, GeneratorStats};
use crate::schedule::{Profile, Schedule};
use crate::sink::histogram;

/// Counts deliveries and their latency, on librdkafka's delivery thread.
struct Deliveries {
    latency: Mutex<Histogram<u64>>,
    delivered: AtomicU64,
    failed: AtomicU64,
}

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    /// The event's intended time, nanoseconds since the epoch.
    type DeliveryOpaque = Box<i64>;

    fn delivery(&self, result: &DeliveryResult<'_>, intended_ns: Box<i64>) {
        match result {
            Ok(_) => {
                let micros = ((generator::now_epoch_ns() - *intended_ns).max(0) / 1_000).max(1);
                self.latency
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .saturating_record(micros as u64);
                self.delivered.fetch_add(1, Ordering::Relaxed);
            }
            Err(_) => {
                self.failed.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// What a Kafka producer run did (`--report`).
#[derive(Debug, serde::Serialize)]
pub struct ProduceReport {
    pub topic: String,
    pub sent: u64,
    pub delivered: u64,
    pub failed: u64,
    pub duration_s: f64,
    pub target_rate: f64,
    pub send_rate: f64,
    pub missed_sends: u64,
    pub latency_ms: crate::report::Latency,
    /// The lowest rate the slow-source signal set (0 without --pressure-url).
    pub signal_min_rate: f64,
}

/// Reads a processor's `/pressure` now and then; the last value read, as f64 bits.
fn follow_pressure(url: &str, pressure: Arc<AtomicU64>) -> anyhow::Result<()> {
    let base = url.trim_end_matches('/').trim_end_matches("/pressure");
    let client = sinkd::SinkClient::new(base)
        .map_err(|e| anyhow::anyhow!("invalid value '{url}' for '--pressure-url': {e}"))?;
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        loop {
            tick.tick().await;
            if let Ok(reply) = client
                .send(http::Method::GET, "/pressure", None, Vec::new())
                .await
            {
                if let Some(p) = std::str::from_utf8(&reply.body)
                    .ok()
                    .and_then(|s| s.trim().parse::<f64>().ok())
                    .filter(|p| p.is_finite())
                {
                    pressure.store(p.to_bits(), Ordering::Relaxed);
                }
            }
        }
    });
    Ok(())
}

/// The producer, its deliveries counted in its context.
fn producer(bootstrap: &str) -> anyhow::Result<ThreadedProducer<Deliveries>> {
    let context = Deliveries {
        latency: Mutex::new(histogram()),
        delivered: AtomicU64::new(0),
        failed: AtomicU64::new(0),
    };
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("linger.ms", "5")
        .set("queue.buffering.max.messages", "200000")
        .set("message.timeout.ms", "60000")
        .create_with_context(context)
        .with_context(|| format!("cannot create a Kafka producer for {bootstrap}"))
}

/// With `--pressure-url`: a rate that follows the processor's pressure by AIMD.
fn follow_signal(args: &ProduceArgs) -> anyhow::Result<Option<RateSignal>> {
    let Some(url) = &args.pressure_url else {
        return Ok(None);
    };
    let pressure = Arc::new(AtomicU64::new(0f64.to_bits()));
    follow_pressure(url, pressure.clone())?;
    let signal = RateSignal::new(args.rate);
    let peak = args.rate;
    tokio::spawn(slow_source(
        move || f64::from_bits(pressure.load(Ordering::Relaxed)),
        Aimd::new(peak, (peak * 0.01).max(1.0), peak).increase(peak * 0.02),
        signal.clone(),
        Duration::from_millis(100),
    ));
    Ok(Some(signal))
}

/// Sends one event; while librdkafka's queue is full (the broker is the bottleneck), waits
/// for room.
async fn send(
    producer: &ThreadedProducer<Deliveries>,
    topic: &str,
    event: &sinkd::wire::Event,
) -> anyhow::Result<()> {
    let key = super::key_of(event);
    let value = super::encode(event);
    let mut record = BaseRecord::with_opaque_to(topic, Box::new(event.ts_ns))
        .key(&key)
        .payload(&value);
    loop {
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                record = back;
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            Err((e, _)) => anyhow::bail!("cannot produce to {topic}: {e}"),
        }
    }
}

/// One progress line on stderr.
fn progress(origin: Instant, sent: u64, c: &Deliveries, signal: Option<&RateSignal>) {
    eprintln!(
        "produce: {:>5.1}s sent {sent} delivered {} failed {}{}",
        origin.elapsed().as_secs_f64(),
        c.delivered.load(Ordering::Relaxed),
        c.failed.load(Ordering::Relaxed),
        signal
            .map(|s| format!(" rate {:.0}/s", s.get()))
            .unwrap_or_default()
    );
}

pub async fn run(args: ProduceArgs) -> anyhow::Result<ExitCode> {
    let bootstrap = args
        .bootstrap_servers
        .clone()
        .context("'--bootstrap-servers' is required for Kafka")?;
    anyhow::ensure!(
        args.rate.is_finite() && args.rate > 0.0,
        "invalid value '{}' for '--rate': events/s above 0",
        args.rate
    );
    anyhow::ensure!(args.keys >= 1, "invalid value '0' for '--keys': at least 1");
    if let Some(partitions) = args.partitions {
        super::create_topic(&bootstrap, &args.topic, partitions, args.replication).await?;
    }
    let producer = producer(&bootstrap)?;
    let signal = follow_signal(&args)?;
    let schedule = Schedule::from_profile(Profile::Constant, args.rate, args.rate, args.duration);
    let stats = Arc::new(GeneratorStats::default());
    let origin = Instant::now();
    let shape = EventShape {
        seed: args.seed,
        keys: args.keys,
        msg_size: args.msg_size,
    };
    let events = generator::event_chunks(
        schedule,
        shape,
        origin,
        generator::now_epoch_ns(),
        signal.clone(),
        stats.clone(),
        Stage::new("producer"),
    )
    .flat_map(futures::stream::iter);
    let mut events = std::pin::pin!(events);
    let mut sent = 0u64;
    let mut signal_min = args.rate;
    let mut next_report = origin + Duration::from_secs(1);
    while let Some(mut event) = events.next().await {
        event.id += args.first_id;
        send(&producer, &args.topic, &event).await?;
        sent += 1;
        if let Some(s) = &signal {
            signal_min = signal_min.min(s.get());
        }
        if !args.quiet && Instant::now() >= next_report {
            next_report += Duration::from_secs(1);
            progress(origin, sent, producer.context(), signal.as_ref());
        }
    }
    let elapsed = origin.elapsed().as_secs_f64();
    let producer = flush(producer).await?;
    let c = producer.context();
    let report = ProduceReport {
        topic: args.topic.clone(),
        sent,
        delivered: c.delivered.load(Ordering::Relaxed),
        failed: c.failed.load(Ordering::Relaxed),
        duration_s: elapsed,
        target_rate: args.rate,
        send_rate: sent as f64 / elapsed.max(1e-9),
        missed_sends: stats.missed.load(Ordering::Relaxed),
        latency_ms: crate::report::Latency::from_histogram(
            &c.latency.lock().unwrap_or_else(|p| p.into_inner()),
        ),
        signal_min_rate: if signal.is_some() { signal_min } else { 0.0 },
    };
    report.print();
    if let Some(path) = &args.report {
        std::fs::write(path, serde_json::to_string_pretty(&report)?)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(if report.failed == 0 && report.delivered == report.sent {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Waits up to 60 s for every record sent to be acknowledged (off the runtime's threads).
async fn flush(
    producer: ThreadedProducer<Deliveries>,
) -> anyhow::Result<ThreadedProducer<Deliveries>> {
    let (flush, producer) = tokio::task::spawn_blocking(move || {
        let r = producer.flush(Duration::from_secs(60));
        (r, producer)
    })
    .await
    .context("the flush task failed")?;
    if let Err(e) = flush {
        eprintln!("produce: not every record was acknowledged within 60 s: {e}");
    }
    Ok(producer)
}

impl ProduceReport {
    fn print(&self) {
        println!(
            "sent {} events to {} in {:.1}s: {:.0}/s for a target of {:.0}/s ({} missed sends); delivered {}, failed {}; delivery latency p50 {:.1} ms, p99 {:.1} ms",
            self.sent,
            self.topic,
            self.duration_s,
            self.send_rate,
            self.target_rate,
            self.missed_sends,
            self.delivered,
            self.failed,
            self.latency_ms.p50,
            self.latency_ms.p99
        );
    }
}
