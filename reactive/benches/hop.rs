//! Benchmark b): items/s across two tokio tasks through a Publisher/Subscriber boundary, against
//! channels doing the same hop. Run with `cargo bench -p reactive --bench hop`.
//!
//! Baselines, all measured in the same run:
//! - tokio mpsc bounded(1024) and unbounded, one `send`/`recv` per item;
//! - tokio mpsc bounded(1024), one `send` per item, the consumer taking up to 1024 at once
//!   with `recv_many`;
//! - tokio mpsc of `Vec` chunks of 1024 items (the prefetch window), one chunk in flight,
//!   drained with `recv_many`;
//! - kanal bounded(1024) per item, and kanal of `Vec` chunks of 1024 (one in flight).
//!
//! Why kanal: of the two fast third-party channels tried here (bounded, async send/recv, in
//! the same run), kanal was the faster both per item (36.6 M/s against flume's 11.4 M/s) and
//! in chunks (1,266 M/s against 692 M/s); flume was dropped.
//!
//! Every contender runs once per round, in turn, for `BENCH_REPS` rounds (default 7) after a
//! warm-up; each one's figure is its median.
//!
//! Ours is reported against each, and against the best batched one (target ≥ 1.0×):
//! - `spawn_stream` of `u64`, prefetch 1024 and 8192, taken with `Inbox::recv_many` (the items
//!   cross the boundary with `on_next_batch`, as many as the demand allows, and leave in one
//!   call per run, as the batched baselines' do): the target is judged on prefetch 1024;
//! - the same taken one at a time through the `Stream` (`try_fold`);
//! - `spawn_stream` of `Vec<u64>` chunks, the same chunks as the chunked baselines, four in
//!   flight.

#[allow(dead_code)] // each bench uses some of it
mod support;

use std::hint::black_box;

use futures::TryStreamExt;
use reactive::{Prefetch, PublisherExt};
use support::Contender;
use tokio::runtime::Runtime;

const ITEMS: u64 = 5_000_000;
/// Items per chunk in the batched baselines: the prefetch window that meets the target.
const CHUNK: u64 = 1024;

/// The items `0..ITEMS` as chunks of `CHUNK`.
fn chunks() -> impl Iterator<Item = Vec<u64>> {
    (0..ITEMS)
        .step_by(CHUNK as usize)
        .map(|start| (start..(start + CHUNK).min(ITEMS)).collect())
}

fn contender<'a>(name: &str, f: impl FnMut() + 'a) -> Contender<'a> {
    (name.to_string(), Box::new(f))
}

/// The channels, one `send`/`recv` per item or per chunk.
fn baselines(rt: &Runtime) -> Vec<Contender<'_>> {
    vec![
        contender("mpsc bounded(1024)", || {
            rt.block_on(async {
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
        }),
        contender("mpsc unbounded", || {
            rt.block_on(async {
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
        }),
        contender("mpsc(1024) + recv_many", || {
            rt.block_on(async {
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
                    let mut buf = Vec::with_capacity(CHUNK as usize);
                    while rx.recv_many(&mut buf, CHUNK as usize).await > 0 {
                        for x in buf.drain(..) {
                            sum = sum.wrapping_add(black_box(x));
                        }
                    }
                    sum
                });
                producer.await.unwrap();
                black_box(consumer.await.unwrap());
            })
        }),
        contender("mpsc Vec chunks + recv_many", || {
            rt.block_on(async {
                let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<u64>>(1);
                let producer = tokio::spawn(async move {
                    for chunk in chunks() {
                        if tx.send(chunk).await.is_err() {
                            break;
                        }
                    }
                });
                let consumer = tokio::spawn(async move {
                    let mut sum = 0u64;
                    let mut buf = Vec::with_capacity(4);
                    while rx.recv_many(&mut buf, 4).await > 0 {
                        for x in buf.drain(..).flatten() {
                            sum = sum.wrapping_add(black_box(x));
                        }
                    }
                    sum
                });
                producer.await.unwrap();
                black_box(consumer.await.unwrap());
            })
        }),
        contender("kanal bounded(1024)", || {
            rt.block_on(async {
                let (tx, rx) = kanal::bounded_async::<u64>(1024);
                let producer = tokio::spawn(async move {
                    for i in 0..ITEMS {
                        if tx.send(i).await.is_err() {
                            break;
                        }
                    }
                });
                let consumer = tokio::spawn(async move {
                    let mut sum = 0u64;
                    while let Ok(x) = rx.recv().await {
                        sum = sum.wrapping_add(black_box(x));
                    }
                    sum
                });
                producer.await.unwrap();
                black_box(consumer.await.unwrap());
            })
        }),
        contender("kanal Vec chunks", || {
            rt.block_on(async {
                let (tx, rx) = kanal::bounded_async::<Vec<u64>>(1);
                let producer = tokio::spawn(async move {
                    for chunk in chunks() {
                        if tx.send(chunk).await.is_err() {
                            break;
                        }
                    }
                });
                let consumer = tokio::spawn(async move {
                    let mut sum = 0u64;
                    while let Ok(chunk) = rx.recv().await {
                        for x in chunk {
                            sum = sum.wrapping_add(black_box(x));
                        }
                    }
                    sum
                });
                producer.await.unwrap();
                black_box(consumer.await.unwrap());
            })
        }),
    ]
}

/// Ours: the same hop through `spawn_stream`, in chunks, in bulk and per item.
fn ours(rt: &Runtime) -> Vec<Contender<'_>> {
    // The same chunks as the batched baselines: a stream of `Vec`s of CHUNK items, four
    // chunks of prefetch. What a user who batches does with this crate.
    let mut all = vec![contender(
        "reactive spawn_stream of Vec chunks (4 in flight)",
        || {
            rt.block_on(async {
                let consumer = tokio::spawn(async move {
                    let stream = reactive::iter(chunks()).spawn_stream(Prefetch::new(4));
                    stream
                        .try_fold(0u64, |acc, chunk| async move {
                            Ok(chunk
                                .into_iter()
                                .fold(acc, |a, x| a.wrapping_add(black_box(x))))
                        })
                        .await
                });
                black_box(consumer.await.unwrap().unwrap());
            })
        },
    )];
    for window in [CHUNK, 8192] {
        // Taken in bulk with `recv_many`, as the batched baselines take theirs: the items
        // cross with `on_next_batch` and leave with one call per run.
        all.push(contender(
            &format!("reactive spawn_stream(prefetch {window}), recv_many"),
            move || {
                rt.block_on(async {
                    let consumer = tokio::spawn(async move {
                        let mut inbox =
                            reactive::iter(0..ITEMS).spawn_stream(Prefetch::new(window));
                        let mut buf = Vec::with_capacity(window as usize);
                        let mut sum = 0u64;
                        while inbox.recv_many(&mut buf, window as usize).await.unwrap() > 0 {
                            for x in buf.drain(..) {
                                sum = sum.wrapping_add(black_box(x));
                            }
                        }
                        sum
                    });
                    black_box(consumer.await.unwrap());
                })
            },
        ));
        // Taken one at a time, through the `Stream`: what a `while let Some(x) = next()` pays.
        all.push(contender(
            &format!("reactive spawn_stream(prefetch {window}), per item"),
            move || {
                rt.block_on(async {
                    let consumer = tokio::spawn(async move {
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
            },
        ));
    }
    all
}

fn main() {
    let reps = support::reps(7);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    println!(
        "b) hop across two tokio tasks (2 worker threads), {ITEMS} items, median of {reps} interleaved rounds"
    );
    let mut contenders = baselines(&runtime);
    let n_baselines = contenders.len();
    contenders.extend(ours(&runtime));
    let rates = support::interleaved(ITEMS, reps, &mut contenders);
    let names: Vec<String> = contenders.into_iter().map(|(name, _)| name).collect();
    // The batched ones: recv_many per item, and the two chunked channels; the target is judged
    // on the chunks and on recv_many at prefetch CHUNK.
    let headline = format!("reactive spawn_stream(prefetch {CHUNK}), recv_many");
    support::report_all(&names, &rates, n_baselines, &[2, 3, 5], |_, name| {
        (name.contains("Vec chunks") || name == headline).then_some(1.0)
    });
}
