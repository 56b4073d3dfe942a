//! The demand demonstration: the same fast source and slow sink, with bounded and unbounded
//! demand.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use futures::SinkExt;
use reactive::{Prefetch, Publisher, PublisherExt};

/// Flags of `loadgen run`.
#[derive(Debug, Clone, clap::Args)]
pub struct DemoArgs {
    /// Items the source offers.
    #[arg(long, default_value_t = 2_000_000)]
    items: u64,
    /// The sink's rate, items per second.
    #[arg(long, default_value_t = 2_000)]
    sink_rate: u64,
    /// The bounded run's demand window.
    #[arg(long, default_value_t = 64)]
    window: u64,
    /// How long each run lasts, in seconds.
    #[arg(long, default_value_t = 3.0)]
    seconds: f64,
}

impl Default for DemoArgs {
    fn default() -> Self {
        DemoArgs {
            items: 2_000_000,
            sink_rate: 2_000,
            window: 64,
            seconds: 3.0,
        }
    }
}

struct Outcome {
    produced: u64,
    delivered: u64,
    max_in_flight: u64,
}

pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    if args.sink_rate == 0 {
        bail!("--sink-rate must be at least 1");
    }
    if !(args.seconds.is_finite() && args.seconds > 0.0 && args.seconds <= 3600.0) {
        bail!("--seconds must be between 0 and 3600, got {}", args.seconds);
    }
    println!(
        "A source that can emit {} items as fast as the CPU allows, a sink that takes {}/s, {:.1} s each.\n",
        args.items, args.sink_rate, args.seconds
    );
    let bounded = one_run(&args, Prefetch::new(args.window))
        .await
        .context("bounded run")?;
    let unbounded = one_run(&args, Prefetch::unbounded())
        .await
        .context("unbounded run")?;
    println!(
        "{:<26} {:>12} {:>12} {:>16}",
        "demand", "produced", "delivered", "max in flight"
    );
    for (name, o) in [
        (format!("request({}) window", args.window), &bounded),
        ("unbounded".to_string(), &unbounded),
    ] {
        println!(
            "{name:<26} {:>12} {:>12} {:>16}",
            o.produced, o.delivered, o.max_in_flight
        );
    }
    println!(
        "\nWith a window the source produced only what the sink asked for: at most {} items were ever in flight.\n\
         Without one it produced {} items for a sink that took {}: the rest waited in memory.",
        bounded.max_in_flight, unbounded.produced, unbounded.delivered
    );
    Ok(())
}

async fn one_run(args: &DemoArgs, prefetch: Prefetch) -> anyhow::Result<Outcome> {
    let produced = Arc::new(AtomicU64::new(0));
    let delivered = Arc::new(AtomicU64::new(0));
    let max_in_flight = Arc::new(AtomicU64::new(0));
    let period = Duration::from_secs_f64(1.0 / args.sink_rate as f64);
    let mut ticker = tokio::time::interval(period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let ticker = Arc::new(tokio::sync::Mutex::new(ticker));
    let sink = {
        let delivered = delivered.clone();
        futures::sink::drain::<u64>().with(move |item: u64| {
            let ticker = ticker.clone();
            let delivered = delivered.clone();
            async move {
                ticker.lock().await.tick().await;
                delivered.fetch_add(1, Ordering::Relaxed);
                Ok::<_, std::convert::Infallible>(item)
            }
        })
    };
    let (subscriber, driver) = reactive::from_sink(sink, prefetch);
    let source = {
        let produced = produced.clone();
        let delivered = delivered.clone();
        let max = max_in_flight.clone();
        reactive::iter(0..args.items).map(move |x| {
            let p = produced.fetch_add(1, Ordering::Relaxed) + 1;
            max.fetch_max(p - delivered.load(Ordering::Relaxed), Ordering::Relaxed);
            x
        })
    };
    let connection = tokio::spawn(source.connect(subscriber));
    let driver = tokio::spawn(driver);
    tokio::time::sleep(Duration::from_secs_f64(args.seconds)).await;
    driver.abort();
    let _ = driver.await;
    let _ = connection.await;
    Ok(Outcome {
        produced: produced.load(Ordering::Relaxed),
        delivered: delivered.load(Ordering::Relaxed),
        max_in_flight: max_in_flight.load(Ordering::Relaxed),
    })
}
