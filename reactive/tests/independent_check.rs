//! An independent check of the five contract holes of issue 11 (idle-source cancel, exact-demand
//! completion, pull cancel, dropped connections, the safety cap), written by a second author
//! from the issue text and the public docs only, without reading `tck` or these tests.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use reactive::{
    Error, Overflow, Prefetch, Publisher, PublisherExt, QueueConfig, Subscriber, Subscription,
};
use tokio::time::timeout;

const T: Duration = Duration::from_secs(3);

#[allow(dead_code)]
#[derive(Debug, Clone)]
enum Ev {
    Next(u64),
    Error(Error),
    Complete,
}

#[derive(Default)]
struct Shared {
    events: Mutex<Vec<Ev>>,
    sub: Mutex<Option<Subscription>>,
    cancel_returned: AtomicBool,
    after_cancel: AtomicU64,
    count: AtomicU64,
}

impl Shared {
    fn events(&self) -> Vec<Ev> {
        self.events.lock().unwrap().clone()
    }
    fn sub(&self) -> Subscription {
        self.sub.lock().unwrap().clone().expect("subscribed")
    }
    fn nexts(&self) -> usize {
        self.events()
            .iter()
            .filter(|e| matches!(e, Ev::Next(_)))
            .count()
    }
}

struct Rec {
    shared: Arc<Shared>,
    initial: u64,
    cancel_at: Option<u64>,
}

impl Rec {
    fn new(initial: u64) -> (Self, Arc<Shared>) {
        let shared = Arc::new(Shared::default());
        (
            Rec {
                shared: shared.clone(),
                initial,
                cancel_at: None,
            },
            shared,
        )
    }
}

impl Subscriber<u64> for Rec {
    fn on_subscribe(&mut self, s: Subscription) {
        if self.initial > 0 {
            s.request(self.initial);
        }
        *self.shared.sub.lock().unwrap() = Some(s);
    }
    fn on_next(&mut self, x: u64) {
        if self.shared.cancel_returned.load(Ordering::SeqCst) {
            self.shared.after_cancel.fetch_add(1, Ordering::SeqCst);
        }
        let n = self.shared.count.fetch_add(1, Ordering::SeqCst) + 1;
        self.shared.events.lock().unwrap().push(Ev::Next(x));
        if Some(n) == self.cancel_at {
            self.shared.sub().cancel();
        }
    }
    fn on_error(&mut self, e: Error) {
        self.shared.events.lock().unwrap().push(Ev::Error(e));
    }
    fn on_complete(&mut self) {
        self.shared.events.lock().unwrap().push(Ev::Complete);
    }
}

/// A stream source whose sender stays alive and silent.
type Src = reactive::source::FromStream<std::pin::Pin<Box<dyn futures::Stream<Item = u64> + Send>>>;

fn silent_source(prime: u64) -> (tokio::sync::mpsc::Sender<u64>, Src) {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<u64>(64);
    for i in 0..prime {
        tx.try_send(i).unwrap();
    }
    let st = async_stream::stream! {
        while let Some(x) = rx.recv().await { yield x; }
    };
    let st: std::pin::Pin<Box<dyn futures::Stream<Item = u64> + Send>> = Box::pin(st);
    (tx, reactive::from_stream(st))
}

fn buffered_configs() -> Vec<(&'static str, QueueConfig<u64>)> {
    vec![
        ("bounded(4)", QueueConfig::bounded(4)),
        ("unbounded", QueueConfig::unbounded()),
        (
            "bounded(4)+DropOldest",
            QueueConfig::bounded(4).overflow(Overflow::DropOldest),
        ),
        (
            "bounded(4)+DropNewest",
            QueueConfig::bounded(4).overflow(Overflow::DropNewest),
        ),
    ]
}

// ---------- Behaviour 1 ----------

async fn b1_cancel_or_bad_request(bad_request: bool, prime: u64) {
    for (name, cfg) in buffered_configs() {
        let (tx, src) = silent_source(prime);
        let (rec, shared) = Rec::new(10);
        let conn = src.queue(cfg).connect(rec);
        let handle = tokio::spawn(conn);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(
            shared.nexts() as u64,
            prime,
            "{name}: primed items delivered"
        );
        assert!(
            !handle.is_finished(),
            "{name}: connection should be waiting on the silent source"
        );
        let s = shared.sub();
        if bad_request {
            s.request(0);
        } else {
            s.cancel();
        }
        let ended = timeout(T, handle).await;
        assert!(
            ended.is_ok(),
            "{name} (bad_request={bad_request}, prime={prime}): connection did not end"
        );
        let closed = timeout(T, tx.closed()).await;
        assert!(
            closed.is_ok(),
            "{name} (bad_request={bad_request}, prime={prime}): source not released"
        );
        let evs = shared.events();
        let errors: Vec<_> = evs.iter().filter(|e| matches!(e, Ev::Error(_))).collect();
        if bad_request {
            assert!(
                matches!(evs.last(), Some(Ev::Error(Error::BadRequest))) && errors.len() == 1,
                "{name}: expected one on_error(BadRequest) last, got {evs:?}"
            );
        } else {
            assert!(
                !evs.iter().any(|e| matches!(e, Ev::Error(_) | Ev::Complete)),
                "{name}: cancel must not signal, got {evs:?}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn b1_cancel_noticed_with_pending_source() {
    b1_cancel_or_bad_request(false, 0).await;
    b1_cancel_or_bad_request(false, 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn b1_request_zero_noticed_with_pending_source() {
    b1_cancel_or_bad_request(true, 0).await;
    b1_cancel_or_bad_request(true, 2).await;
}

#[tokio::test(flavor = "current_thread")]
async fn b1_cancel_noticed_current_thread() {
    b1_cancel_or_bad_request(false, 0).await;
    b1_cancel_or_bad_request(true, 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn b1_drop_spawn_stream_releases_source() {
    for prime in [0u64, 2] {
        for (name, cfg) in buffered_configs() {
            let (tx, src) = silent_source(prime);
            let mut stream = src.queue(cfg).spawn_stream(Prefetch::new(8));
            for i in 0..prime {
                let x = timeout(T, stream.next())
                    .await
                    .expect("primed item")
                    .unwrap()
                    .unwrap();
                assert_eq!(x, i);
            }
            assert!(
                timeout(Duration::from_millis(50), stream.next())
                    .await
                    .is_err(),
                "{name}: stream should be pending"
            );
            drop(stream);
            let closed = timeout(T, tx.closed()).await;
            assert!(
                closed.is_ok(),
                "{name} (prime={prime}): dropping spawn_stream did not release the source"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn b1_drop_into_stream_releases_source() {
    for (name, cfg) in buffered_configs() {
        let (tx, src) = silent_source(1);
        let mut stream = src.queue(cfg).into_stream_with(Prefetch::new(8));
        assert_eq!(
            timeout(T, stream.next()).await.unwrap().unwrap().unwrap(),
            0
        );
        assert!(
            timeout(Duration::from_millis(50), stream.next())
                .await
                .is_err()
        );
        drop(stream);
        assert!(
            timeout(T, tx.closed()).await.is_ok(),
            "{name}: dropping into_stream did not release the source"
        );
    }
}

// ---------- Behaviour 2 ----------

#[tokio::test]
async fn b2_exact_request_completes() {
    let (rec, shared) = Rec::new(10);
    let conn = reactive::iter(0..10u64)
        .queue(QueueConfig::bounded(16))
        .connect(rec);
    assert!(
        timeout(T, conn).await.is_ok(),
        "connection did not end: {:?}",
        shared.events()
    );
    let evs = shared.events();
    assert_eq!(shared.nexts(), 10, "{evs:?}");
    assert!(
        matches!(evs.last(), Some(Ev::Complete)),
        "expected on_complete last: {evs:?}"
    );
}

#[tokio::test]
async fn b2_exact_request_completes_other_modes() {
    for (name, cfg) in buffered_configs() {
        let (rec, shared) = Rec::new(10);
        let conn = reactive::iter(0..10u64).queue(cfg).connect(rec);
        assert!(
            timeout(T, conn).await.is_ok(),
            "{name}: connection did not end: {:?}",
            shared.events()
        );
        let evs = shared.events();
        // Shedding policies may legitimately drop items from a fast source (documented).
        if !name.contains("Drop") {
            assert_eq!(shared.nexts(), 10, "{name}: {evs:?}");
        }
        assert!(
            matches!(evs.last(), Some(Ev::Complete)),
            "{name}: expected on_complete last: {evs:?}"
        );
    }
}

#[tokio::test]
async fn b2_empty_iter_completes() {
    for initial in [1u64, 0] {
        let (rec, shared) = Rec::new(initial);
        let conn = reactive::iter(std::iter::empty::<u64>())
            .queue(QueueConfig::bounded(16))
            .connect(rec);
        assert!(
            timeout(T, conn).await.is_ok(),
            "initial={initial}: connection did not end"
        );
        let evs = shared.events();
        assert!(
            matches!(evs.as_slice(), [Ev::Complete]),
            "initial={initial}: {evs:?}"
        );
    }
}

// ---------- Behaviour 3 ----------

#[tokio::test]
async fn b3_pull_cancel_inside_on_next() {
    let (mut rec, shared) = Rec::new(10);
    rec.cancel_at = Some(3);
    let conn = reactive::iter(0..100u64)
        .queue(QueueConfig::pull())
        .connect(rec);
    assert!(timeout(T, conn).await.is_ok(), "connection did not end");
    let n = shared.nexts();
    assert!(
        n <= 4,
        "at most one item after cancel in on_next #3, got {n}: {:?}",
        shared.events()
    );
    assert!(n == 3, "ideally none after cancel (informational), got {n}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn b3_pull_cancel_from_other_thread() {
    for round in 0..20 {
        let (rec, shared) = Rec::new(u64::MAX);
        let handle = reactive::iter(0u64..)
            .queue(QueueConfig::pull())
            .subscribe(rec);
        let sh = shared.clone();
        let canceller = std::thread::spawn(move || {
            while sh.count.load(Ordering::SeqCst) < 1000 {
                std::hint::spin_loop();
            }
            sh.sub().cancel();
            sh.cancel_returned.store(true, Ordering::SeqCst);
        });
        timeout(T, handle)
            .await
            .expect("connection did not end")
            .unwrap();
        canceller.join().unwrap();
        let after = shared.after_cancel.load(Ordering::SeqCst);
        assert!(
            after <= 1,
            "round {round}: {after} items arrived after cancel() returned"
        );
    }
}

// ---------- Behaviour 4 ----------

/// Connects a recording subscriber to one publisher under test.
type Connect = Box<dyn Fn(Rec) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()>>>>;

#[tokio::test]
async fn b4_dropping_connection_cancels() {
    let cases: Vec<(&str, Connect)> = vec![
        (
            "iter",
            Box::new(|r| Box::pin(reactive::iter(0u64..).connect(r))),
        ),
        (
            "bounded",
            Box::new(|r| {
                Box::pin(
                    reactive::iter(0u64..)
                        .queue(QueueConfig::bounded(4))
                        .connect(r),
                )
            }),
        ),
        (
            "unbounded",
            Box::new(|r| {
                Box::pin(
                    reactive::iter(0u64..10)
                        .queue(QueueConfig::unbounded())
                        .connect(r),
                )
            }),
        ),
        (
            "pull",
            Box::new(|r| Box::pin(reactive::iter(0u64..).queue(QueueConfig::pull()).connect(r))),
        ),
    ];
    for (name, make) in cases {
        for polled in [false, true] {
            let (rec, shared) = Rec::new(2);
            let mut conn = make(rec);
            if polled {
                let _ = timeout(Duration::from_millis(20), &mut conn).await;
            }
            let s = shared.sub();
            assert!(!s.is_cancelled(), "{name}: cancelled too early");
            drop(conn);
            assert!(
                s.is_cancelled(),
                "{name} (polled={polled}): dropping the connection did not cancel"
            );
        }
    }
}

// ---------- Behaviour 5 ----------

#[tokio::test]
async fn b5_safety_cap_overflow_without_demand() {
    for initial in [0u64, 1] {
        let (rec, shared) = Rec::new(initial);
        let conn = reactive::iter(0u64..1000)
            .queue(QueueConfig::unbounded().safety_cap(10))
            .connect(rec);
        assert!(
            timeout(T, conn).await.is_ok(),
            "initial={initial}: connection did not end: {:?}",
            shared.events()
        );
        let evs = shared.events();
        assert!(
            matches!(evs.last(), Some(Ev::Error(Error::Overflow { .. }))),
            "initial={initial}: expected Overflow last, got {evs:?}"
        );
        assert!(
            shared.nexts() as u64 <= initial,
            "initial={initial}: {evs:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn b5_safety_cap_overflow_before_buffered_items_pending_source() {
    // 20 items arrive at once, the consumer asked for 1 and never more; the source stays alive.
    let (tx, src) = silent_source(20);
    let (rec, shared) = Rec::new(1);
    let handle = tokio::spawn(
        src.queue(QueueConfig::unbounded().safety_cap(5))
            .connect(rec),
    );
    assert!(
        timeout(T, handle).await.is_ok(),
        "connection did not end: {:?}",
        shared.events()
    );
    let evs = shared.events();
    assert!(
        matches!(evs.last(), Some(Ev::Error(Error::Overflow { .. }))),
        "{evs:?}"
    );
    eprintln!("b5 events: {evs:?}");
    assert!(shared.nexts() <= 1, "{evs:?}");
    assert!(
        timeout(T, tx.closed()).await.is_ok(),
        "source not released after overflow"
    );
}
