//! Benchmark b): items/s across two tokio tasks through a Publisher/Subscriber boundary, against
//! tokio mpsc bounded (capacity 1024) and unbounded. Run with `cargo bench -p reactive --bench hop`.

mod support;

use std::hint::black_box;

use futures::TryStreamExt;
use reactive::{Prefetch, PublisherExt};

const ITEMS: u64 = 5_000_000;

fn main() {
    let reps = support::reps(7);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    println!("b) hop across two tokio tasks (2 worker threads), {ITEMS} items, median of {reps}");

    let bounded = support::items_per_sec(ITEMS, reps, || {
        runtime.block_on(async {
            let (tx, mut rx) = tokio::sync::mpsc::channel::<u64>(1024);
            let producer = tokio::spawn(async move {
                for i in 0..ITEMS {
                    if tx.send(i).await.is_err() {
                        break;
                    }
                }
            });
            let consumer = tokio::spawn(async move {
                let mut sum = 0u64;
                while let Some(x) = rx.recv().await {
                    sum = sum.wrapping_add(black_box(x));
                }
                sum
            });
            producer.await.unwrap();
            black_box(consumer.await.unwrap());
        })
    });
    let unbounded = support::items_per_sec(ITEMS, reps, || {
        runtime.block_on(async {
            let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<u64>();
            let producer = tokio::spawn(async move {
                for i in 0..ITEMS {
                    if tx.send(i).is_err() {
                        break;
                    }
                }
            });
            let consumer = tokio::spawn(async move {
                let mut sum = 0u64;
                while let Some(x) = rx.recv().await {
                    sum = sum.wrapping_add(black_box(x));
                }
                sum
            });
            producer.await.unwrap();
            black_box(consumer.await.unwrap());
        })
    });
    println!(
        "{:<44} {:>8.1} M items/s",
        "baseline: tokio mpsc bounded(1024)",
        bounded / 1e6
    );
    println!(
        "{:<44} {:>8.1} M items/s",
        "baseline: tokio mpsc unbounded",
        unbounded / 1e6
    );

    for window in [1024u64, 8192] {
        let rate = support::items_per_sec(ITEMS, reps, || {
            runtime.block_on(async {
                let consumer = tokio::spawn(async move {
                    // The connection runs in a task of its own; this task consumes.
                    let stream = reactive::iter(0..ITEMS).spawn_stream(Prefetch::new(window));
                    stream
                        .try_fold(
                            0u64,
                            |acc, x| async move { Ok(acc.wrapping_add(black_box(x))) },
                        )
                        .await
                });
                black_box(consumer.await.unwrap().unwrap());
            })
        });
        let name = format!("reactive spawn_stream(prefetch {window})");
        support::report(&name, rate, "mpsc bounded", bounded, Some(1.0));
        support::report("", rate, "mpsc unbounded", unbounded, None);
    }
}
