//! Queue benchmarks. Run with `cargo bench -p reactive --bench queue`.
//!
//! 1. Items/s through bounded(1024), unbounded and pull, between a fast source and a null sink,
//!    next to a tokio bounded mpsc of the same capacity doing the same work in one task
//!    (producer and consumer joined), and across two tasks; and next to batched baselines in one
//!    task: tokio mpsc(1024) drained with `recv_many`, tokio mpsc of `Vec` chunks of 1024 items
//!    drained with `recv_many`, and kanal bounded(1024) per item and in chunks of 1024 (kanal
//!    beat flume in the hop bench; see `hop.rs`). Target: bounded ≥ 0.9× the best batched one.
//!
//!    Every contender runs once per round, in turn, for `BENCH_REPS` rounds (default 5) after a
//!    warm-up; each one's figure is its median.
//! 2. Heap bytes per queued 512-byte event, counted by a global allocator that tracks live
//!    bytes. Target ≤ 1.2 × 512 + 64 = 678 bytes.

#[allow(dead_code)] // each bench uses some of it
mod support;

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering};

use reactive::queue::QueueConfig;
use reactive::{Error, Publisher, PublisherExt, Subscriber, Subscription};
use support::Contender;
use tokio::runtime::Runtime;

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is forwarded unchanged to the system allocator; only a counter is added.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size(), Ordering::Relaxed);
        // SAFETY: same layout contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: `ptr` came from `alloc` above with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(new_size, Ordering::Relaxed);
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: forwarded unchanged.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const ITEMS: u64 = 5_000_000;
/// Items per chunk in the batched baselines: the queue's capacity.
const CHUNK: u64 = 1024;

/// The items `0..ITEMS` as chunks of `CHUNK`.
fn chunks() -> impl Iterator<Item = Vec<u64>> {
    (0..ITEMS)
        .step_by(CHUNK as usize)
        .map(|start| (start..(start + CHUNK).min(ITEMS)).collect())
}

/// Takes everything, as fast as it comes: in batches (summing each, as the batched baselines'
/// consumers do) when `batches`, else one item per `on_next`.
struct Null(u64, bool);

impl Subscriber<u64> for Null {
    fn on_subscribe(&mut self, s: Subscription) {
        s.request(u64::MAX);
    }
    fn on_next(&mut self, x: u64) {
        self.0 = self.0.wrapping_add(black_box(x));
    }
    fn on_next_batch(&mut self, items: &mut Vec<u64>) {
        for x in items.drain(..) {
            self.0 = self.0.wrapping_add(black_box(x));
        }
    }
    fn takes_batches(&self) -> bool {
        self.1
    }
    fn on_error(&mut self, e: Error) {
        panic!("{e}");
    }
    fn on_complete(&mut self) {
        black_box(self.0);
    }
}

/// A lab event: 512 bytes of payload and its header.
#[allow(dead_code)]
struct Event {
    id: u64,
    key: u64,
    seq: u64,
    ts_ns: i64,
    priority: u8,
    payload: Box<[u8]>,
}

/// Never requests: everything stays queued.
struct Stuck;

impl Subscriber<Event> for Stuck {
    fn on_subscribe(&mut self, _: Subscription) {}
    fn on_next(&mut self, _: Event) {}
    fn on_error(&mut self, _: Error) {}
    fn on_complete(&mut self) {}
}

/// The channels, in one task (producer and consumer joined) unless said otherwise.
fn baselines<'a>(current: &'a Runtime, multi: &'a Runtime) -> Vec<Contender<'a>> {
    vec![
        contender("mpsc(1024) one task", || {
            current.block_on(async {
                let (tx, mut rx) = tokio::sync::mpsc::channel::<u64>(1024);
                let producer = async move {
                    for i in 0..ITEMS {
                        tx.send(i).await.unwrap();
                    }
                };
                let consumer = async move {
                    let mut sum = 0u64;
                    while let Some(x) = rx.recv().await {
                        sum = sum.wrapping_add(black_box(x));
                    }
                    black_box(sum);
                };
                tokio::join!(producer, consumer);
            })
        }),
        contender("mpsc(1024) two tasks", || {
            multi.block_on(async {
                let (tx, mut rx) = tokio::sync::mpsc::channel::<u64>(1024);
                let producer = tokio::spawn(async move {
                    for i in 0..ITEMS {
                        tx.send(i).await.unwrap();
                    }
                });
                let mut sum = 0u64;
                while let Some(x) = rx.recv().await {
                    sum = sum.wrapping_add(black_box(x));
                }
                producer.await.unwrap();
                black_box(sum);
            })
        }),
        contender("mpsc(1024) + recv_many", || {
            current.block_on(async {
                let (tx, mut rx) = tokio::sync::mpsc::channel::<u64>(1024);
                let producer = async move {
                    for i in 0..ITEMS {
                        tx.send(i).await.unwrap();
                    }
                };
                let consumer = async move {
                    let mut sum = 0u64;
                    let mut buf = Vec::with_capacity(CHUNK as usize);
                    while rx.recv_many(&mut buf, CHUNK as usize).await > 0 {
                        for x in buf.drain(..) {
                            sum = sum.wrapping_add(black_box(x));
                        }
                    }
                    black_box(sum);
                };
                tokio::join!(producer, consumer);
            })
        }),
        contender("mpsc Vec chunks + recv_many", || {
            current.block_on(async {
                let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<u64>>(1);
                let producer = async move {
                    for chunk in chunks() {
                        tx.send(chunk).await.unwrap();
                    }
                };
                let consumer = async move {
                    let mut sum = 0u64;
                    let mut buf = Vec::with_capacity(4);
                    while rx.recv_many(&mut buf, 4).await > 0 {
                        for x in buf.drain(..).flatten() {
                            sum = sum.wrapping_add(black_box(x));
                        }
                    }
                    black_box(sum);
                };
                tokio::join!(producer, consumer);
            })
        }),
        contender("kanal bounded(1024)", || {
            current.block_on(async {
                let (tx, rx) = kanal::bounded_async::<u64>(1024);
                let producer = async move {
                    for i in 0..ITEMS {
                        tx.send(i).await.unwrap();
                    }
                };
                let consumer = async move {
                    let mut sum = 0u64;
                    while let Ok(x) = rx.recv().await {
                        sum = sum.wrapping_add(black_box(x));
                    }
                    black_box(sum);
                };
                tokio::join!(producer, consumer);
            })
        }),
        contender("kanal Vec chunks", || {
            current.block_on(async {
                let (tx, rx) = kanal::bounded_async::<Vec<u64>>(1);
                let producer = async move {
                    for chunk in chunks() {
                        tx.send(chunk).await.unwrap();
                    }
                };
                let consumer = async move {
                    let mut sum = 0u64;
                    while let Ok(chunk) = rx.recv().await {
                        for x in chunk {
                            sum = sum.wrapping_add(black_box(x));
                        }
                    }
                    black_box(sum);
                };
                tokio::join!(producer, consumer);
            })
        }),
    ]
}

fn contender<'a>(name: &str, f: impl FnMut() + 'a) -> Contender<'a> {
    (name.to_string(), Box::new(f))
}

fn main() {
    let reps = support::reps(5);
    let current = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let multi = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    println!(
        "1) fast source -> queue -> null sink, {ITEMS} items, median of {reps} interleaved rounds"
    );
    let mut contenders = baselines(&current, &multi);
    let n_baselines = contenders.len();
    // Ours: the target is judged on a bounded queue feeding a sink that takes batches.
    let ours = [
        (
            "queue bounded(1024), batches",
            QueueConfig::bounded(1024),
            true,
        ),
        (
            "queue bounded(1024), per item",
            QueueConfig::bounded(1024),
            false,
        ),
        ("queue unbounded, batches", QueueConfig::unbounded(), true),
        ("queue unbounded, per item", QueueConfig::unbounded(), false),
        ("queue pull, per item", QueueConfig::pull(), false),
    ];
    for (name, config, batches) in ours.iter().cloned() {
        let current = &current;
        contenders.push(contender(name, move || {
            current.block_on(
                reactive::iter(0..ITEMS)
                    .queue(config.clone())
                    .connect(Null(0, batches)),
            );
        }));
    }
    let rates = support::interleaved(ITEMS, reps, &mut contenders);
    let names: Vec<String> = contenders.into_iter().map(|(name, _)| name).collect();
    // The batched ones: recv_many per item, and the two chunked channels; the target is judged
    // on the first of ours, the bounded queue feeding a sink that takes batches.
    support::report_all(&names, &rates, n_baselines, &[2, 3, 5], |i, _| {
        (i == 0).then_some(0.9)
    });

    println!("\n2) heap bytes per queued 512-byte event (live bytes counted by the allocator)");
    const QUEUED: u64 = 100_000;
    current.block_on(async {
        let before = LIVE.load(Ordering::Relaxed);
        let source = reactive::iter(0..QUEUED).map(|i| Event {
            id: i,
            key: i % 64,
            seq: i,
            ts_ns: 0,
            priority: 0,
            payload: vec![b'x'; 512].into_boxed_slice(),
        });
        let queue = source.queue(QueueConfig::unbounded());
        let stats = queue.stats();
        let mut connection = Box::pin(queue.connect(Stuck));
        while stats.depth() < QUEUED {
            let _ = futures::poll!(connection.as_mut());
        }
        let after = LIVE.load(Ordering::Relaxed);
        let per_event = (after - before) as f64 / QUEUED as f64;
        let target = 1.2 * 512.0 + 64.0;
        let verdict = if per_event <= target { "met" } else { "NOT met" };
        println!(
            "{QUEUED} events queued: {:.1} MB live, {per_event:.1} bytes per event ({:.2}x the payload); target <= {target:.0}: {verdict}",
            (after - before) as f64 / 1e6,
            per_event / 512.0
        );
        drop(connection);
    });
}
