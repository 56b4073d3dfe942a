//! Black-box checks of the bulk path (`on_next_batch`, `takes_batches`, `recv_many`,
//! `from_chunks`, the queues' bulk input and output), written from the public docs only.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::Duration;

use futures::stream;
use reactive::queue::{Overflow, ShedBuffer};
use reactive::{Error, Prefetch, Publisher, PublisherExt, QueueConfig, Subscriber, Subscription};

const UNBOUNDED: u64 = u64::MAX >> 1;

#[derive(Default)]
struct Log {
    items: Vec<u64>,
    batches: Vec<usize>,
    nexts: u64,
    batch_when_not_taking: u64,
    empty_batches: u64,
    over_demand: u64,
    requested: u64,
    deliveries: u64,
    deliveries_after_cancel: u64,
    cancelled: bool,
    completed: bool,
    error: Option<String>,
    terminals: u32,
    sub: Option<Subscription>,
}

/// A subscriber that records everything and checks demand on every delivery.
struct Rec {
    log: Arc<Mutex<Log>>,
    takes: Arc<AtomicBool>,
    sub: Option<Subscription>,
    initial: u64,
    /// Request this many more each time everything requested has arrived (0: never).
    step: u64,
    /// Cancel from inside the delivery that brings the item count to this or past it.
    cancel_at: Option<u64>,
    /// Stop answering `takes_batches` with true once this many items arrived.
    stop_batches_at: Option<u64>,
}

impl Rec {
    fn new(takes: bool, initial: u64, step: u64) -> (Self, Arc<Mutex<Log>>) {
        let log = Arc::new(Mutex::new(Log::default()));
        (
            Rec {
                log: log.clone(),
                takes: Arc::new(AtomicBool::new(takes)),
                sub: None,
                initial,
                step,
                cancel_at: None,
                stop_batches_at: None,
            },
            log,
        )
    }

    fn after_delivery(&mut self, log: &mut Log) {
        if let Some(at) = self.stop_batches_at {
            if log.items.len() as u64 >= at {
                self.takes.store(false, Ordering::SeqCst);
            }
        }
        if let Some(at) = self.cancel_at {
            if log.items.len() as u64 >= at && !log.cancelled {
                log.cancelled = true;
                self.sub.as_ref().unwrap().cancel();
                return;
            }
        }
        if self.step > 0 && log.items.len() as u64 == log.requested && !log.cancelled {
            log.requested = log.requested.saturating_add(self.step);
            self.sub.as_ref().unwrap().request(self.step);
        }
    }
}

impl Subscriber<u64> for Rec {
    fn on_subscribe(&mut self, s: Subscription) {
        let mut log = self.log.lock().unwrap();
        log.sub = Some(s.clone());
        self.sub = Some(s.clone());
        if self.initial > 0 {
            log.requested = self.initial;
            s.request(self.initial);
        }
    }
    fn on_next(&mut self, item: u64) {
        let log = self.log.clone();
        let mut log = log.lock().unwrap();
        log.nexts += 1;
        log.deliveries += 1;
        if log.cancelled {
            log.deliveries_after_cancel += 1;
        }
        log.items.push(item);
        if log.items.len() as u64 > log.requested {
            log.over_demand += 1;
        }
        self.after_delivery(&mut log);
    }
    fn on_next_batch(&mut self, items: &mut Vec<u64>) {
        let log = self.log.clone();
        let mut log = log.lock().unwrap();
        log.deliveries += 1;
        if !self.takes.load(Ordering::SeqCst) {
            log.batch_when_not_taking += 1;
        }
        if items.is_empty() {
            log.empty_batches += 1;
        }
        if log.cancelled {
            log.deliveries_after_cancel += 1;
        }
        log.batches.push(items.len());
        log.items.append(items);
        if log.items.len() as u64 > log.requested {
            log.over_demand += 1;
        }
        self.after_delivery(&mut log);
    }
    fn takes_batches(&self) -> bool {
        self.takes.load(Ordering::SeqCst)
    }
    fn on_error(&mut self, e: Error) {
        let mut log = self.log.lock().unwrap();
        log.terminals += 1;
        log.error = Some(e.to_string());
    }
    fn on_complete(&mut self) {
        let mut log = self.log.lock().unwrap();
        log.terminals += 1;
        log.completed = true;
    }
}

/// Polls `fut` until it ends or `turns` polls have returned `Pending`; whether it ended.
async fn poll_turns<F: Future + Unpin>(fut: &mut F, turns: usize) -> bool {
    for _ in 0..turns {
        if futures::poll!(&mut *fut).is_ready() {
            return true;
        }
        tokio::task::yield_now().await;
    }
    false
}

async fn finish<F: Future>(fut: F) -> bool {
    tokio::time::timeout(Duration::from_secs(10), fut)
        .await
        .is_ok()
}

fn chunk_stream(n: u64) -> impl futures::Stream<Item = Vec<u64>> + Send + Unpin {
    // Sizes 0, 1, 5, 0, 17, 2, 64, 3, ... (empty chunks included).
    let sizes = [0u64, 1, 5, 0, 17, 2, 64, 3, 0, 300, 7];
    let mut at = 0u64;
    let mut k = 0usize;
    stream::poll_fn(move |_| {
        if at >= n {
            return Poll::Ready(None);
        }
        let size = sizes[k % sizes.len()];
        k += 1;
        let end = (at + size).min(n);
        let chunk: Vec<u64> = (at..end).collect();
        at = end;
        Poll::Ready(Some(chunk))
    })
}

/// Runs `p` to completion under the given request pattern and checks the bulk promises.
async fn check_delivery<P: Publisher<Item = u64>>(
    what: &str,
    p: P,
    expected: &[u64],
    takes: bool,
    initial: u64,
    step: u64,
) -> Vec<usize> {
    let (rec, log) = Rec::new(takes, initial, step);
    let done = finish(p.connect(rec)).await;
    let log = log.lock().unwrap();
    let ctx = format!("{what} takes={takes} initial={initial} step={step}");
    assert!(done, "{ctx}: connection did not end");
    assert_eq!(
        log.items, expected,
        "{ctx}: items (order, loss, duplicates)"
    );
    assert_eq!(log.over_demand, 0, "{ctx}: delivered past demand");
    assert_eq!(log.empty_batches, 0, "{ctx}: empty batch");
    assert_eq!(log.batch_when_not_taking, 0, "{ctx}: batch to non-taker");
    assert!(log.completed, "{ctx}: not completed ({:?})", log.error);
    assert_eq!(log.terminals, 1, "{ctx}: terminals");
    if !takes {
        assert!(log.batches.is_empty(), "{ctx}: got batches");
    }
    log.batches.clone()
}

const PATTERNS: [(u64, u64); 6] = [
    (1, 1),
    (3, 3),
    (7, 5),
    (100, 100),
    (1000, 1),
    (UNBOUNDED, 0),
];

async fn all_sources(takes: bool, initial: u64, step: u64) {
    const N: u64 = 2000;
    let all: Vec<u64> = (0..N).collect();
    let evens: Vec<u64> = (0..N).filter(|x| x % 2 == 0).collect();
    let b = check_delivery("iter", reactive::iter(0..N), &all, takes, initial, step).await;
    if takes && initial >= 100 {
        assert!(
            b.iter().any(|&n| n > 1),
            "iter never handed over more than one item at once: {b:?}"
        );
    }
    check_delivery(
        "iter.map",
        reactive::iter(0..N).map(|x| x),
        &all,
        takes,
        initial,
        step,
    )
    .await;
    check_delivery(
        "iter.filter",
        reactive::iter(0..N).filter(|x| x % 2 == 0),
        &evens,
        takes,
        initial,
        step,
    )
    .await;
    check_delivery(
        "from_chunks",
        reactive::from_chunks(chunk_stream(N)),
        &all,
        takes,
        initial,
        step,
    )
    .await;
    check_delivery(
        "from_chunks.map.filter",
        reactive::from_chunks(chunk_stream(N))
            .map(|x| x + 1)
            .filter(|x| x % 2 == 1)
            .map(|x| x - 1),
        &evens,
        takes,
        initial,
        step,
    )
    .await;
    check_delivery(
        "iter.queue(bounded(7))",
        reactive::iter(0..N).queue(QueueConfig::bounded(7)),
        &all,
        takes,
        initial,
        step,
    )
    .await;
    check_delivery(
        "iter.queue(unbounded)",
        reactive::iter(0..N).queue(QueueConfig::unbounded()),
        &all,
        takes,
        initial,
        step,
    )
    .await;
    check_delivery(
        "from_chunks.queue(bounded(5)).map",
        reactive::from_chunks(chunk_stream(N))
            .queue(QueueConfig::bounded(5))
            .map(|x| x),
        &all,
        takes,
        initial,
        step,
    )
    .await;
    check_delivery(
        "iter.queue(bounded(64)).filter.queue(unbounded)",
        reactive::iter(0..N)
            .queue(QueueConfig::bounded(64))
            .filter(|x| x % 2 == 0)
            .queue(QueueConfig::unbounded()),
        &evens,
        takes,
        initial,
        step,
    )
    .await;
}

#[tokio::test]
async fn batch_taker_gets_all_in_order_within_demand_no_empty_batches() {
    for (initial, step) in PATTERNS {
        all_sources(true, initial, step).await;
    }
}

#[tokio::test]
async fn non_batch_subscriber_never_gets_a_batch() {
    for (initial, step) in PATTERNS {
        all_sources(false, initial, step).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_taker_across_threads_via_spawn() {
    // The same checks with the connection on another runtime thread.
    for (initial, step) in [(3u64, 3u64), (100, 100), (UNBOUNDED, 0)] {
        for takes in [true, false] {
            let (rec, log) = Rec::new(takes, initial, step);
            let h = reactive::iter(0..5000u64)
                .queue(QueueConfig::bounded(16))
                .map(|x| x)
                .subscribe(rec);
            assert!(finish(h).await);
            let log = log.lock().unwrap();
            assert!(log.items.iter().copied().eq(0..5000));
            assert_eq!(log.over_demand, 0);
            assert_eq!(log.empty_batches, 0);
            assert_eq!(log.batch_when_not_taking, 0);
            assert!(log.completed);
        }
    }
}

async fn check_cancel_inside<P: Publisher<Item = u64>>(what: &str, p: P, takes: bool, at: u64) {
    let (mut rec, log) = Rec::new(takes, UNBOUNDED, 0);
    rec.cancel_at = Some(at);
    let done = finish(p.connect(rec)).await;
    let log = log.lock().unwrap();
    let ctx = format!("{what} takes={takes} cancel_at={at}");
    assert!(done, "{ctx}: the connection did not end after cancel");
    assert!(log.cancelled, "{ctx}: never reached the cancel point");
    assert_eq!(
        log.deliveries_after_cancel, 0,
        "{ctx}: deliveries after the cancelling one"
    );
    if !takes {
        assert_eq!(
            log.items.len() as u64,
            at,
            "{ctx}: not stopped at the very next item"
        );
    }
    assert_eq!(log.terminals, 0, "{ctx}: terminal after cancel");
    assert!(log.items.iter().copied().eq(0..log.items.len() as u64));
}

async fn cancel_inside_all(takes: bool) {
    for at in [1u64, 2, 7, 100, 1001] {
        check_cancel_inside("iter", reactive::iter(0u64..), takes, at).await;
        check_cancel_inside("iter.map", reactive::iter(0u64..).map(|x| x), takes, at).await;
        check_cancel_inside(
            "iter.filter",
            reactive::iter(0u64..).filter(|_| true),
            takes,
            at,
        )
        .await;
        check_cancel_inside(
            "from_chunks",
            reactive::from_chunks(chunk_stream(u64::MAX)),
            takes,
            at,
        )
        .await;
        check_cancel_inside(
            "queue(bounded(16))",
            reactive::iter(0u64..).queue(QueueConfig::bounded(16)),
            takes,
            at,
        )
        .await;
        check_cancel_inside(
            "queue(unbounded)",
            reactive::iter(0u64..100_000).queue(QueueConfig::unbounded()),
            takes,
            at,
        )
        .await;
        check_cancel_inside(
            "queue(bounded(8)).map.queue(bounded(300))",
            reactive::iter(0u64..)
                .queue(QueueConfig::bounded(8))
                .map(|x| x)
                .queue(QueueConfig::bounded(300)),
            takes,
            at,
        )
        .await;
    }
}

#[tokio::test]
async fn non_batch_cancel_in_on_next_stops_the_very_next_item() {
    cancel_inside_all(false).await;
}

#[tokio::test]
async fn batch_cancel_inside_on_next_batch_stops_later_deliveries() {
    cancel_inside_all(true).await;
}

#[tokio::test]
async fn takes_batches_is_asked_before_each_emission() {
    // A subscriber that stops taking batches after 10 items must get no batch after that.
    async fn one<P: Publisher<Item = u64>>(what: &str, p: P) {
        let (mut rec, log) = Rec::new(true, UNBOUNDED, 0);
        rec.stop_batches_at = Some(10);
        assert!(finish(p.connect(rec)).await, "{what}");
        let log = log.lock().unwrap();
        assert_eq!(
            log.batch_when_not_taking, 0,
            "{what}: batch after opting out"
        );
        assert!(log.items.iter().copied().eq(0..1000), "{what}");
    }
    one("iter", reactive::iter(0..1000u64)).await;
    one("iter.map", reactive::iter(0..1000u64).map(|x| x)).await;
    one("from_chunks", reactive::from_chunks(chunk_stream(1000))).await;
    one(
        "queue",
        reactive::iter(0..1000u64).queue(QueueConfig::bounded(64)),
    )
    .await;
    one("iter.filter", reactive::iter(0..1000u64).filter(|_| true)).await;
    one(
        "from_chunks.map",
        reactive::from_chunks(chunk_stream(1000)).map(|x| x),
    )
    .await;
    one(
        "queue.map",
        reactive::iter(0..1000u64)
            .queue(QueueConfig::unbounded())
            .map(|x| x),
    )
    .await;
}

async fn cross_thread_cancel<P>(what: &str, make: impl Fn() -> P)
where
    P: Publisher<Item = u64>,
    P::Connection<Rec>: Send + 'static,
{
    cross_thread_cancel_with(what, true, &make).await;
    cross_thread_cancel_with(what, false, &make).await;
}

async fn cross_thread_cancel_with<P>(what: &str, takes: bool, make: &impl Fn() -> P)
where
    P: Publisher<Item = u64>,
    P::Connection<Rec>: Send + 'static,
{
    for round in 0..20u64 {
        let (rec, log) = Rec::new(takes, UNBOUNDED, 0);
        let h = make().subscribe(rec);
        let start = 100 + round * 37;
        // Wait (bounded) until some items arrived.
        let mut waited = 0;
        loop {
            if log.lock().unwrap().items.len() as u64 >= start {
                break;
            }
            waited += 1;
            assert!(waited < 20_000, "{what}: no progress");
            tokio::task::yield_now().await;
            if waited % 100 == 0 {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
        let sub = log.lock().unwrap().sub.clone().unwrap();
        sub.cancel();
        let at_cancel = log.lock().unwrap().deliveries;
        assert!(
            finish(h).await,
            "{what}: connection did not end after cancel"
        );
        let log = log.lock().unwrap();
        assert!(
            log.deliveries <= at_cancel + 1,
            "{what} takes={takes}: {} deliveries after the cancel returned (at most the one in progress)",
            log.deliveries - at_cancel
        );
        assert_eq!(log.over_demand, 0);
        assert!(log.items.iter().copied().eq(0..log.items.len() as u64));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_cancel_from_another_thread_stops_after_the_delivery_in_progress() {
    cross_thread_cancel("iter", || reactive::iter(0u64..)).await;
    cross_thread_cancel("iter.map", || reactive::iter(0u64..).map(|x| x)).await;
    cross_thread_cancel("from_chunks", || {
        reactive::from_chunks(chunk_stream(u64::MAX))
    })
    .await;
    cross_thread_cancel("queue(bounded(64))", || {
        reactive::iter(0u64..).queue(QueueConfig::bounded(64))
    })
    .await;
    cross_thread_cancel("queue(unbounded)", || {
        reactive::iter(0u64..50_000_000)
            .map(|x| x)
            .queue(QueueConfig::unbounded().safety_cap(1_000_000))
    })
    .await;
}

// ---------------------------------------------------------------- Inbox::recv_many

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recv_many_appends_respects_limit_and_ends_with_zero() {
    for limit in [0usize, 1, 3, 16, 1000] {
        let mut inbox = reactive::iter(0..3000u64).spawn_stream(Prefetch::new(64));
        let mut buf = vec![u64::MAX];
        let mut got = 0usize;
        let mut calls = 0;
        loop {
            calls += 1;
            assert!(calls < 100_000);
            let before = buf.len();
            let n = inbox.recv_many(&mut buf, limit).await.unwrap();
            assert_eq!(buf.len(), before + n, "limit {limit}: appended count");
            assert!(n <= limit.max(1), "limit {limit}: took {n}");
            if n == 0 {
                break;
            }
            got += n;
        }
        assert_eq!(buf[0], u64::MAX, "recv_many must append, not overwrite");
        assert!(buf[1..].iter().copied().eq(0..3000), "limit {limit}: items");
        assert_eq!(got, 3000);
        for _ in 0..3 {
            assert_eq!(inbox.recv_many(&mut buf, limit).await.unwrap(), 0);
        }
        assert_eq!(buf.len(), 3001);
    }
}

#[derive(Debug)]
struct Boom;
impl std::fmt::Display for Boom {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("boom")
    }
}
impl std::error::Error for Boom {}

#[tokio::test]
async fn recv_many_reports_the_error_after_the_items_before_it() {
    for limit in [1usize, 3, 7, 100] {
        let items: Vec<Result<u64, Boom>> = (0..10u64).map(Ok).chain([Err(Boom), Ok(99)]).collect();
        let mut inbox =
            reactive::from_try_stream(stream::iter(items)).spawn_stream(Prefetch::new(4));
        let mut buf = Vec::new();
        let mut calls = 0;
        let err = loop {
            calls += 1;
            assert!(calls < 1000);
            match inbox.recv_many(&mut buf, limit).await {
                Ok(0) => panic!("limit {limit}: ended without the error"),
                Ok(n) => assert!(n <= limit),
                Err(e) => break e,
            }
        };
        assert!(matches!(err, Error::Upstream(_)), "limit {limit}: {err:?}");
        assert_eq!(buf, (0..10).collect::<Vec<_>>(), "limit {limit}");
    }
}

#[tokio::test]
async fn poll_recv_many_limit_zero_is_one() {
    let mut inbox = reactive::iter(0..10u64).spawn_stream(Prefetch::new(8));
    let mut buf = Vec::new();
    let mut calls = 0;
    loop {
        calls += 1;
        assert!(calls < 1000);
        let r = std::future::poll_fn(|cx| inbox.poll_recv_many(cx, &mut buf, 0)).await;
        match r {
            Some(Ok(n)) => assert_eq!(n, 1),
            None => break,
            Some(Err(e)) => panic!("{e}"),
        }
    }
    assert!(buf.into_iter().eq(0..10));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inbox_never_holds_more_than_the_window() {
    for window in [1u64, 4, 16, 100] {
        let produced = Arc::new(AtomicU64::new(0));
        let p = produced.clone();
        let mut inbox = reactive::iter(0..20_000u64)
            .map(move |x| {
                p.fetch_add(1, Ordering::SeqCst);
                x
            })
            .spawn_stream(Prefetch::new(window));
        let mut buf = Vec::new();
        let mut calls = 0;
        loop {
            calls += 1;
            assert!(calls < 200_000);
            assert!(
                inbox.len() as u64 <= window,
                "window {window}: inbox holds {}",
                inbox.len()
            );
            let taken = buf.len() as u64;
            let ahead = produced.load(Ordering::SeqCst) - taken;
            assert!(
                ahead <= window,
                "window {window}: {ahead} produced and not taken"
            );
            if calls % 3 == 0 {
                tokio::task::yield_now().await;
            }
            if inbox.recv_many(&mut buf, 7).await.unwrap() == 0 {
                break;
            }
        }
        assert!(buf.into_iter().eq(0..20_000));
    }
}

#[tokio::test]
async fn inbox_from_inbox_fn_takes_batches_within_window() {
    // The subscriber half of `reactive::inbox` behind a batch-emitting publisher.
    let (subscriber, mut inbox) = reactive::inbox::<u64>(Prefetch::new(8));
    let h = tokio::spawn(reactive::iter(0..1000u64).connect(subscriber));
    let mut buf = Vec::new();
    let mut calls = 0;
    while inbox.recv_many(&mut buf, 5).await.unwrap() > 0 {
        calls += 1;
        assert!(calls < 10_000);
        assert!(inbox.len() <= 8);
        tokio::task::yield_now().await;
    }
    assert!(buf.into_iter().eq(0..1000));
    assert!(finish(h).await);
}

// ---------------------------------------------------------------- from_chunks

struct Counted {
    polls: Arc<AtomicU64>,
}

fn counted(chunks: Vec<Vec<u64>>) -> (impl futures::Stream<Item = Vec<u64>> + Unpin, Counted) {
    let polls = Arc::new(AtomicU64::new(0));
    let p = polls.clone();
    let mut it = chunks.into_iter();
    let s = stream::poll_fn(move |_| {
        p.fetch_add(1, Ordering::SeqCst);
        Poll::Ready(it.next())
    });
    (s, Counted { polls })
}

#[tokio::test]
async fn from_chunks_is_not_polled_without_demand_and_splits_chunks() {
    for takes in [true, false] {
        let (s, c) = counted(vec![(0..10).collect(), (10..13).collect()]);
        let (rec, log) = Rec::new(takes, 0, 0);
        let mut conn = Box::pin(reactive::from_chunks(s).connect(rec));
        assert!(!poll_turns(&mut conn, 5).await);
        assert_eq!(c.polls.load(Ordering::SeqCst), 0, "polled with no demand");
        let sub = log.lock().unwrap().sub.clone().unwrap();
        log.lock().unwrap().requested = 4;
        sub.request(4);
        assert!(!poll_turns(&mut conn, 5).await);
        {
            let l = log.lock().unwrap();
            assert_eq!(l.items, [0, 1, 2, 3], "takes={takes}");
            assert!(l.batches.iter().all(|&b| b <= 4));
            assert_eq!(l.over_demand, 0);
        }
        assert_eq!(c.polls.load(Ordering::SeqCst), 1, "takes={takes}");
        // The rest of the first chunk: no new poll of the stream.
        log.lock().unwrap().requested = 10;
        sub.request(6);
        assert!(!poll_turns(&mut conn, 5).await);
        assert!(log.lock().unwrap().items.iter().copied().eq(0..10));
        assert_eq!(
            c.polls.load(Ordering::SeqCst),
            1,
            "takes={takes}: polled with all demand met"
        );
        log.lock().unwrap().requested = 13;
        sub.request(3);
        assert!(!poll_turns(&mut conn, 5).await);
        assert!(log.lock().unwrap().items.iter().copied().eq(0..13));
        assert_eq!(c.polls.load(Ordering::SeqCst), 2);
        assert!(!log.lock().unwrap().completed, "completed without polling");
        // Completion needs one more unit of demand.
        log.lock().unwrap().requested = 14;
        sub.request(1);
        assert!(
            poll_turns(&mut conn, 5).await,
            "takes={takes}: did not complete"
        );
        let l = log.lock().unwrap();
        assert!(l.completed);
        assert_eq!(l.terminals, 1);
        assert_eq!(c.polls.load(Ordering::SeqCst), 3);
        assert_eq!(l.empty_batches, 0);
        assert_eq!(l.batch_when_not_taking, 0);
    }
}

#[tokio::test]
async fn from_chunks_skips_empty_chunks() {
    for takes in [true, false] {
        let chunks = vec![vec![], vec![], vec![0], vec![], vec![1, 2], vec![], vec![]];
        let (s, _c) = counted(chunks);
        let (rec, log) = Rec::new(takes, 1, 1);
        assert!(finish(reactive::from_chunks(s).connect(rec)).await);
        {
            let l = log.lock().unwrap();
            assert_eq!(l.items, [0, 1, 2]);
            assert_eq!(l.empty_batches, 0);
            assert!(l.completed);
        }
        // Only empty chunks: completes with no item, given one unit of demand.
        let (s, _c) = counted(vec![vec![], vec![], vec![]]);
        let (rec, log2) = Rec::new(takes, 1, 0);
        assert!(finish(reactive::from_chunks(s).connect(rec)).await);
        let l2 = log2.lock().unwrap();
        assert!(l2.items.is_empty() && l2.completed && l2.empty_batches == 0);
    }
}

#[tokio::test]
async fn from_chunks_takes_at_most_one_chunk_more_than_requested() {
    // 1000 chunks of 7, demand 1 at a time: what left the stream stays within one chunk of it.
    let chunks: Vec<Vec<u64>> = (0..1000u64).map(|i| (i * 7..i * 7 + 7).collect()).collect();
    let (s, c) = counted(chunks);
    let (rec, log) = Rec::new(true, 0, 0);
    let mut conn = Box::pin(reactive::from_chunks(s).connect(rec));
    assert!(!poll_turns(&mut conn, 2).await);
    let sub = log.lock().unwrap().sub.clone().unwrap();
    for k in 1..=200u64 {
        log.lock().unwrap().requested = k * 3;
        sub.request(3);
        assert!(!poll_turns(&mut conn, 2).await);
        let taken = c.polls.load(Ordering::SeqCst) * 7;
        assert!(
            taken <= k * 3 + 7,
            "after {} requested, {taken} taken",
            k * 3
        );
        assert_eq!(log.lock().unwrap().items.len() as u64, k * 3);
    }
}

// ---------------------------------------------------------------- queue stats

async fn queue_run(config: QueueConfig<u64>, n: u64, window: u64, limit: usize) -> Vec<u64> {
    let produced = Arc::new(AtomicU64::new(0));
    let p = produced.clone();
    let q = reactive::iter(0..n)
        .map(move |x| {
            p.fetch_add(1, Ordering::SeqCst);
            x
        })
        .queue(config);
    let stats = q.stats();
    let capacity = stats.snapshot().capacity;
    let mut inbox = q.spawn_stream(Prefetch::new(window));
    let mut buf = Vec::new();
    let mut calls = 0;
    let mut err = None;
    loop {
        calls += 1;
        assert!(calls < 1_000_000);
        // current_thread runtime: the queue's task is not running now.
        let s = stats.snapshot();
        let prod = produced.load(Ordering::SeqCst);
        assert_eq!(
            prod,
            s.popped + s.depth + s.dropped(),
            "produced = delivered + queued + dropped: {s:?}"
        );
        assert_eq!(
            s.pushed,
            s.popped + s.depth + s.dropped_oldest + s.purged,
            "{s:?}"
        );
        if capacity != u64::MAX {
            assert!(s.high_water <= capacity, "high water past capacity: {s:?}");
            assert!(s.depth <= capacity, "{s:?}");
        }
        assert!(buf.len() as u64 <= s.popped);
        for _ in 0..3 {
            tokio::task::yield_now().await;
        }
        match inbox.recv_many(&mut buf, limit).await {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) => {
                err = Some(e);
                break;
            }
        }
    }
    let s = stats.snapshot();
    assert_eq!(buf.len() as u64, s.popped, "{s:?}");
    assert!(
        buf.windows(2).all(|w| w[0] < w[1]),
        "FIFO order broken (or duplicates)"
    );
    assert_eq!(
        produced.load(Ordering::SeqCst),
        s.popped + s.depth + s.dropped()
    );
    if let Some(e) = err {
        assert!(matches!(e, Error::Overflow { .. }), "{e:?}");
        assert!(s.overflowed);
        assert_eq!(s.depth, 0, "queued items are discarded at the cap: {s:?}");
    }
    buf
}

#[tokio::test]
async fn queue_block_counts_and_order() {
    for cap in [1usize, 8, 100] {
        let got = queue_run(QueueConfig::bounded(cap), 5000, 4, 3).await;
        assert!(got.into_iter().eq(0..5000));
    }
}

#[tokio::test]
async fn queue_drop_oldest_counts_and_order() {
    for cap in [1usize, 8, 100] {
        let config = QueueConfig::bounded(cap).overflow(Overflow::DropOldest);
        let got = queue_run(config, 5000, 4, 3).await;
        assert_eq!(
            *got.last().unwrap(),
            4999,
            "the freshest item is never dropped"
        );
    }
}

#[tokio::test]
async fn queue_drop_newest_counts_and_order() {
    for cap in [1usize, 8, 100] {
        let config = QueueConfig::bounded(cap).overflow(Overflow::DropNewest);
        let got = queue_run(config, 5000, 4, 3).await;
        assert_eq!(got[0], 0, "the oldest item is never dropped");
    }
}

#[tokio::test]
async fn queue_unbounded_counts_and_order() {
    let got = queue_run(QueueConfig::unbounded(), 5000, 4, 3).await;
    assert!(got.into_iter().eq(0..5000));
}

#[tokio::test]
async fn queue_safety_cap_counts() {
    // A stalled consumer (window 1) and a fast source: the cap must end the stream.
    let got = queue_run(QueueConfig::unbounded().safety_cap(100), 1_000_000, 1, 1).await;
    assert!(got.len() < 1_000_000);
}

#[tokio::test]
async fn queue_counts_with_batch_taker_downstream() {
    // The queue's output side handing batches straight to a batch-taking subscriber.
    for config in [
        QueueConfig::bounded(8),
        QueueConfig::bounded(8).overflow(Overflow::DropOldest),
        QueueConfig::bounded(8).overflow(Overflow::DropNewest),
        QueueConfig::unbounded(),
    ] {
        let q = reactive::from_chunks(chunk_stream(3000)).queue(config);
        let stats = q.stats();
        let (rec, log) = Rec::new(true, 5, 5);
        assert!(finish(q.connect(rec)).await);
        let s = stats.snapshot();
        let l = log.lock().unwrap();
        assert_eq!(l.over_demand, 0);
        assert_eq!(l.empty_batches, 0);
        assert_eq!(l.items.len() as u64, s.popped);
        assert_eq!(3000, s.popped + s.depth + s.dropped(), "{s:?}");
        assert!(l.items.windows(2).all(|w| w[0] < w[1]));
        if s.capacity != u64::MAX {
            assert!(s.high_water <= s.capacity, "{s:?}");
        }
    }
}

// ---------------------------------------------------------------- queue blocked time

#[tokio::test(start_paused = true)]
async fn blocked_grows_while_the_consumer_stalls() {
    let q = reactive::iter(0u64..).queue(QueueConfig::bounded(4));
    let stats = q.stats();
    let (rec, log) = Rec::new(true, 2, 0);
    let h = tokio::spawn(q.connect(rec));
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    assert_eq!(log.lock().unwrap().items, [0, 1]);
    let b0 = stats.snapshot().blocked;
    tokio::time::advance(Duration::from_secs(5)).await;
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    let b1 = stats.snapshot().blocked;
    assert!(
        b1 >= b0 + Duration::from_secs(4),
        "blocked {b0:?} -> {b1:?} over 5 s of stall"
    );
    log.lock().unwrap().sub.clone().unwrap().cancel();
    assert!(finish(h).await);
}

#[tokio::test(start_paused = true)]
async fn blocked_does_not_grow_after_the_source_completes() {
    // Exactly the capacity: the queue fills as the source completes.
    for (n, initial) in [(4u64, 0u64), (8, 4), (3, 0), (9, 1)] {
        let q = reactive::iter(0..n).queue(QueueConfig::bounded(4));
        let stats = q.stats();
        let (rec, log) = Rec::new(true, initial, 0);
        let h = tokio::spawn(q.connect(rec));
        for _ in 0..20 {
            tokio::task::yield_now().await;
        }
        let b0 = stats.snapshot().blocked;
        tokio::time::advance(Duration::from_secs(10)).await;
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        let b1 = stats.snapshot().blocked;
        let s = stats.snapshot();
        if s.pushed == n {
            assert_eq!(
                b1, b0,
                "n={n} initial={initial}: blocked grew after the source completed: {s:?}"
            );
        } else {
            // The source is still held back by the full queue: a stall.
            assert!(
                b1 >= b0 + Duration::from_secs(9),
                "n={n} initial={initial}: stalled source, blocked {b0:?} -> {b1:?}: {s:?}"
            );
        }
        assert!(s.high_water <= 4);
        // Drain so that the connection ends.
        let sub = log.lock().unwrap().sub.clone().unwrap();
        sub.request(UNBOUNDED);
        assert!(finish(h).await);
        let l = log.lock().unwrap();
        assert!(l.items.iter().copied().eq(0..n));
        assert!(l.completed);
    }
}

// ---------------------------------------------------------------- ShedBuffer bulk

#[test]
fn shed_buffer_bulk_append_and_take_into() {
    let mut b = ShedBuffer::new(4, Overflow::DropNewest);
    assert!(b.takes_in_bulk(4));
    assert!(!b.takes_in_bulk(5));
    let mut items = vec![1u64, 2, 3];
    b.append(&mut items);
    assert!(items.is_empty(), "append empties the batch");
    assert_eq!(b.len(), 3);
    assert!(b.takes_in_bulk(1));
    assert!(!b.takes_in_bulk(2));
    let mut out = vec![0u64];
    b.take_into(&mut out, 2);
    assert_eq!(out, [0, 1, 2], "take_into appends the oldest");
    let mut more = vec![4u64, 5, 6];
    assert!(b.takes_in_bulk(3));
    b.append(&mut more);
    assert_eq!(b.len(), 4);
    b.take_into(&mut out, 100);
    assert_eq!(out, [0, 1, 2, 3, 4, 5, 6]);
    assert!(b.is_empty());
    let mut empty_out = Vec::new();
    b.take_into(&mut empty_out, 3);
    assert!(empty_out.is_empty());

    // A blocking buffer never refuses: any batch may be appended.
    let block = ShedBuffer::<u64>::new(2, Overflow::Block);
    assert!(block.takes_in_bulk(1000));
    // Priority looks at classes: never in bulk.
    let prio = ShedBuffer::<u64>::new(
        100,
        Overflow::Priority {
            thresholds: vec![0.5],
        },
    );
    assert!(!prio.takes_in_bulk(1));
    // DropOldest refuses nothing but evicts: bulk only when it fits.
    let old = ShedBuffer::<u64>::new(2, Overflow::DropOldest);
    assert!(old.takes_in_bulk(2));
    assert!(!old.takes_in_bulk(3));
    // Capacity 0 is 1.
    let zero = ShedBuffer::<u64>::new(0, Overflow::DropNewest);
    assert_eq!(zero.capacity(), 1);
    assert!(zero.takes_in_bulk(1));
    assert!(!zero.takes_in_bulk(2));
}

// ---------------------------------------------------------------- Demand::consume_n

#[test]
fn consume_n_uses_n_permits() {
    let (subscription, mut demand) = reactive::subscription::pair();
    subscription.request(10);
    assert_eq!(demand.try_ready(), Ok(10));
    demand.consume_n(7);
    assert_eq!(demand.try_ready(), Ok(3));
    demand.consume_n(3);
    assert_eq!(demand.try_ready(), Ok(0));
    subscription.request(5);
    assert_eq!(demand.try_ready(), Ok(5));
    demand.consume_n(0);
    assert_eq!(demand.try_ready(), Ok(5));
    // Unbounded demand, with no local permit left: stays unbounded through consume_n.
    demand.consume_n(5);
    subscription.request(UNBOUNDED);
    assert_eq!(demand.try_ready(), Ok(UNBOUNDED));
    demand.consume_n(1000);
    assert_eq!(
        demand.try_ready(),
        Ok(UNBOUNDED),
        "unbounded stays unbounded"
    );
}

#[test]
fn try_ready_reports_the_permits_in_hand_then_the_unbounded_demand() {
    // Was a finding against the docs, which said "the number of permits available now
    // (UNBOUNDED if unbounded)": the permits already in hand come first, and a request made
    // since (here, unbounded) shows once they are used. The docs now say so.
    let (subscription, mut demand) = reactive::subscription::pair();
    subscription.request(5);
    assert_eq!(demand.try_ready(), Ok(5));
    subscription.request(UNBOUNDED);
    assert_eq!(demand.try_ready(), Ok(5), "the permits in hand first");
    demand.consume_n(5);
    assert_eq!(demand.try_ready(), Ok(UNBOUNDED));
}

// ---------------------------------------------------------------- more attacks

#[tokio::test(flavor = "multi_thread", worker_threads = 3)]
async fn batches_stay_within_demand_requested_from_another_thread() {
    // The subscriber never requests; another thread requests in small steps, counting what it
    // requested *before* each request, so `delivered <= requested` must hold on every delivery.
    for round in 0..6u64 {
        let requested = Arc::new(AtomicU64::new(0));
        let over = Arc::new(AtomicU64::new(0));
        let delivered = Arc::new(AtomicU64::new(0));
        struct Watch {
            requested: Arc<AtomicU64>,
            over: Arc<AtomicU64>,
            delivered: Arc<AtomicU64>,
            sub: Arc<Mutex<Option<Subscription>>>,
            next: u64,
            bad_order: bool,
        }
        impl Subscriber<u64> for Watch {
            fn on_subscribe(&mut self, s: Subscription) {
                *self.sub.lock().unwrap() = Some(s);
            }
            fn on_next(&mut self, x: u64) {
                self.on_next_batch(&mut vec![x]);
            }
            fn on_next_batch(&mut self, items: &mut Vec<u64>) {
                for x in items.drain(..) {
                    self.bad_order |= x != self.next;
                    self.next += 1;
                }
                let d = self.next;
                self.delivered.store(d, Ordering::SeqCst);
                if d > self.requested.load(Ordering::SeqCst) || self.bad_order {
                    self.over.fetch_add(1, Ordering::SeqCst);
                }
            }
            fn takes_batches(&self) -> bool {
                true
            }
            fn on_error(&mut self, _: Error) {}
            fn on_complete(&mut self) {}
        }
        let sub = Arc::new(Mutex::new(None));
        let w = Watch {
            requested: requested.clone(),
            over: over.clone(),
            delivered: delivered.clone(),
            sub: sub.clone(),
            next: 0,
            bad_order: false,
        };
        let p = match round % 3 {
            0 => reactive::iter(0u64..30_000).subscribe(w),
            1 => reactive::iter(0u64..30_000)
                .queue(QueueConfig::bounded(32))
                .map(|x| x)
                .subscribe(w),
            _ => reactive::from_chunks(chunk_stream(30_000))
                .filter(|_| true)
                .subscribe(w),
        };
        let s = loop {
            if let Some(s) = sub.lock().unwrap().clone() {
                break s;
            }
            tokio::task::yield_now().await;
        };
        let step = 1 + round * 5;
        let mut total = 0u64;
        let mut spins = 0u64;
        while total < 30_000 {
            spins += 1;
            assert!(spins < 5_000_000, "no progress");
            // Keep a little demand ahead of what was delivered.
            if total < delivered.load(Ordering::SeqCst) + 3 * step {
                requested.fetch_add(step, Ordering::SeqCst);
                total += step;
                s.request(step);
            } else {
                std::thread::yield_now();
                tokio::task::yield_now().await;
            }
        }
        s.request(1);
        assert!(finish(p).await, "round {round}: did not complete");
        assert_eq!(
            over.load(Ordering::SeqCst),
            0,
            "round {round}: past demand or out of order"
        );
        assert_eq!(delivered.load(Ordering::SeqCst), 30_000, "round {round}");
    }
}

#[tokio::test]
async fn operators_and_queues_do_hand_over_in_batches() {
    // The docs: "iter, the queues and map/filter hand items over this way".
    async fn sizes<P: Publisher<Item = u64>>(p: P) -> Vec<usize> {
        let (rec, log) = Rec::new(true, 1000, 1000);
        assert!(finish(p.connect(rec)).await);
        let l = log.lock().unwrap();
        assert!(l.items.iter().copied().eq(0..5000));
        l.batches.clone()
    }
    let many = |b: &[usize]| b.iter().any(|&n| n > 1);
    assert!(many(&sizes(reactive::iter(0..5000u64)).await), "iter");
    assert!(
        many(&sizes(reactive::iter(0..5000u64).map(|x| x)).await),
        "map"
    );
    assert!(
        many(&sizes(reactive::iter(0..5000u64).filter(|_| true)).await),
        "filter"
    );
    assert!(
        many(&sizes(reactive::iter(0..5000u64).queue(QueueConfig::bounded(64))).await),
        "bounded queue"
    );
    assert!(
        many(&sizes(reactive::iter(0..5000u64).queue(QueueConfig::unbounded())).await),
        "unbounded queue"
    );
    assert!(
        many(&sizes(reactive::from_chunks(chunk_stream(5000))).await),
        "from_chunks"
    );
}

#[tokio::test]
async fn inbox_cancel_keeps_received_items_takeable() {
    let mut inbox = reactive::iter(0..100u64).spawn_stream(Prefetch::new(16));
    let mut buf = Vec::new();
    assert!(inbox.recv_many(&mut buf, 1).await.unwrap() == 1);
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    let held = inbox.len();
    inbox.cancel();
    let mut calls = 0;
    while inbox.recv_many(&mut buf, 3).await.unwrap() > 0 {
        calls += 1;
        assert!(calls < 1000);
    }
    assert!(buf.len() > held, "took {} of {held} held + 1", buf.len());
    assert!(buf.len() <= 1 + 16);
    assert!(buf.iter().copied().eq(0..buf.len() as u64));
    assert_eq!(inbox.recv_many(&mut buf, 3).await.unwrap(), 0);
}

#[tokio::test]
async fn manual_inbox_recv_many_takes_only_what_was_requested() {
    let (subscriber, mut inbox) = reactive::inbox::<u64>(Prefetch::manual());
    inbox.request(5);
    let h = tokio::spawn(reactive::iter(0..100u64).connect(subscriber));
    let mut buf = Vec::new();
    let mut got = 0;
    while got < 5 {
        got += inbox.recv_many(&mut buf, 100).await.unwrap();
    }
    assert_eq!(buf, [0, 1, 2, 3, 4]);
    // Nothing more until requested: recv_many stays pending.
    let mut fut = Box::pin(inbox.recv_many(&mut buf, 100));
    assert!(
        !poll_turns(&mut fut, 20).await,
        "recv_many past the manual demand"
    );
    drop(fut);
    inbox.request(3);
    let mut got = 0;
    while got < 3 {
        got += inbox.recv_many(&mut buf, 100).await.unwrap();
    }
    assert_eq!(buf, (0..8).collect::<Vec<_>>());
    drop(inbox);
    assert!(finish(h).await);
}

#[tokio::test]
async fn queue_passes_the_error_after_the_items_before_it() {
    for (config, block) in [
        (QueueConfig::bounded(3), true),
        (QueueConfig::unbounded(), true),
        (
            QueueConfig::bounded(3).overflow(Overflow::DropNewest),
            false,
        ),
    ] {
        let items: Vec<Result<u64, Boom>> = (0..10u64).map(Ok).chain([Err(Boom), Ok(99)]).collect();
        let mut inbox = reactive::from_try_stream(stream::iter(items))
            .queue(config)
            .spawn_stream(Prefetch::new(2));
        let mut buf = Vec::new();
        let mut calls = 0;
        let err = loop {
            calls += 1;
            assert!(calls < 1000);
            match inbox.recv_many(&mut buf, 4).await {
                Ok(0) => panic!("ended without the error"),
                Ok(_) => {}
                Err(e) => break e,
            }
        };
        assert!(matches!(err, Error::Upstream(_)));
        assert!(buf.windows(2).all(|w| w[0] < w[1]));
        assert!(!buf.contains(&99));
        if block {
            assert_eq!(buf, (0..10).collect::<Vec<_>>());
        }
    }
}

#[tokio::test]
async fn safety_cap_with_chunked_input_holds_at_most_the_cap() {
    // A source that makes its items in chunks of 300 into an unbounded queue capped at 100:
    // the cap "ends the stream once this many items are queued".
    let produced = Arc::new(AtomicU64::new(0));
    let p = produced.clone();
    let q = reactive::from_chunks(stream::iter(
        (0..100u64).map(|i| (i * 300..i * 300 + 300).collect::<Vec<u64>>()),
    ))
    .map(move |x| {
        p.fetch_add(1, Ordering::SeqCst);
        x
    })
    .queue(QueueConfig::unbounded().safety_cap(100));
    let stats = q.stats();
    let (rec, log) = Rec::new(true, 0, 0);
    let mut conn = Box::pin(q.connect(rec));
    assert!(
        poll_turns(&mut conn, 50).await,
        "the cap did not end the stream"
    );
    let s = stats.snapshot();
    let l = log.lock().unwrap();
    assert!(l.error.is_some(), "{s:?}");
    assert!(s.overflowed);
    assert_eq!(
        produced.load(Ordering::SeqCst),
        s.popped + s.depth + s.dropped(),
        "{s:?}"
    );
    assert!(
        s.high_water <= 100,
        "held {} items with a cap of 100: {s:?}",
        s.high_water
    );
}

#[tokio::test]
async fn queue_priority_counts_and_order_with_batch_input() {
    // Priority looks at classes, so no bulk input; the counts must hold all the same. Classes
    // 0 and 1 only (the never-shed class 2 does not occur), so capacity is never exceeded.
    for cap in [2usize, 8, 100] {
        let config = QueueConfig::bounded(cap)
            .overflow(Overflow::Priority {
                thresholds: vec![0.5, 0.9],
            })
            .priority(|x: &u64| (x % 2) as u8);
        queue_run(config, 5000, 4, 3).await;
    }
}

#[tokio::test(start_paused = true)]
async fn blocked_stops_growing_once_the_stall_ends() {
    for config in [QueueConfig::bounded(4), QueueConfig::pull()] {
        let q = reactive::iter(0..1000u64).queue(config);
        let stats = q.stats();
        let (rec, log) = Rec::new(true, 2, 0);
        let h = tokio::spawn(q.connect(rec));
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        let b0 = stats.snapshot().blocked;
        tokio::time::advance(Duration::from_secs(5)).await;
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        let during = stats.snapshot().blocked;
        assert!(
            during >= b0 + Duration::from_secs(4),
            "{b0:?} -> {during:?}"
        );
        // End the stall: the rest flows and the source completes.
        log.lock().unwrap().sub.clone().unwrap().request(UNBOUNDED);
        assert!(finish(h).await);
        let after = stats.snapshot().blocked;
        tokio::time::advance(Duration::from_secs(100)).await;
        tokio::task::yield_now().await;
        let later = stats.snapshot().blocked;
        assert_eq!(
            after, later,
            "blocked grew after the stall ended and the source completed"
        );
        assert!(later <= Duration::from_secs(6), "{later:?} for a 5 s stall");
        assert!(log.lock().unwrap().items.iter().copied().eq(0..1000));
    }
}

#[tokio::test(start_paused = true)]
async fn pull_queue_blocked_without_downstream_demand() {
    let q = reactive::iter(0u64..).queue(QueueConfig::pull());
    let stats = q.stats();
    let (rec, log) = Rec::new(true, 3, 0);
    let h = tokio::spawn(q.connect(rec));
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    assert_eq!(log.lock().unwrap().items, [0, 1, 2]);
    let b0 = stats.snapshot().blocked;
    tokio::time::advance(Duration::from_secs(5)).await;
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    let b1 = stats.snapshot().blocked;
    assert!(b1 >= b0 + Duration::from_secs(4), "{b0:?} -> {b1:?}");
    log.lock().unwrap().sub.clone().unwrap().cancel();
    assert!(finish(h).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inbox_behind_a_queue_never_holds_more_than_the_window() {
    for window in [1u64, 5, 64] {
        let mut inbox = reactive::iter(0..20_000u64)
            .queue(QueueConfig::bounded(128))
            .spawn_stream(Prefetch::new(window));
        let mut buf = Vec::new();
        let mut calls = 0;
        loop {
            calls += 1;
            assert!(calls < 200_000);
            assert!(
                inbox.len() as u64 <= window,
                "window {window}: {}",
                inbox.len()
            );
            if calls % 2 == 0 {
                tokio::task::yield_now().await;
            }
            if inbox.recv_many(&mut buf, 1000).await.unwrap() == 0 {
                break;
            }
        }
        assert!(buf.into_iter().eq(0..20_000));
    }
}

#[tokio::test]
async fn from_chunks_cancel_while_the_stream_is_idle_ends_the_connection() {
    // "A cancel is noticed at once even while the source is idle", demand outstanding or not.
    for initial in [0u64, 5] {
        for takes in [true, false] {
            let (tx, rx) = futures::channel::mpsc::unbounded::<Vec<u64>>();
            tx.unbounded_send(vec![0, 1]).unwrap();
            let (rec, log) = Rec::new(takes, initial, 0);
            let released = Arc::new(AtomicBool::new(false));
            struct Flag<S>(S, Arc<AtomicBool>);
            impl<S> Drop for Flag<S> {
                fn drop(&mut self) {
                    self.1.store(true, Ordering::SeqCst);
                }
            }
            impl<S: Subscriber<u64>> Subscriber<u64> for Flag<S> {
                fn on_subscribe(&mut self, s: Subscription) {
                    self.0.on_subscribe(s)
                }
                fn on_next(&mut self, x: u64) {
                    self.0.on_next(x)
                }
                fn on_next_batch(&mut self, items: &mut Vec<u64>) {
                    self.0.on_next_batch(items)
                }
                fn takes_batches(&self) -> bool {
                    self.0.takes_batches()
                }
                fn on_error(&mut self, e: Error) {
                    self.0.on_error(e)
                }
                fn on_complete(&mut self) {
                    self.0.on_complete()
                }
            }
            let h = tokio::spawn(reactive::from_chunks(rx).connect(Flag(rec, released.clone())));
            for _ in 0..10 {
                tokio::task::yield_now().await;
            }
            let expect: &[u64] = if initial == 0 { &[] } else { &[0, 1] };
            assert_eq!(log.lock().unwrap().items, expect);
            log.lock().unwrap().sub.clone().unwrap().cancel();
            assert!(
                finish(h).await,
                "initial={initial} takes={takes}: not ended"
            );
            assert!(released.load(Ordering::SeqCst), "subscriber not released");
            assert!(tx.is_closed(), "stream not released");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recv_many_window_holds_for_any_replenish_fraction() {
    for fraction in [0.01f64, 0.5, 0.75, 1.0] {
        for window in [1u64, 10, 33] {
            let prefetch = Prefetch::new(window).replenish_at(fraction);
            let produced = Arc::new(AtomicU64::new(0));
            let p = produced.clone();
            let mut inbox = reactive::from_chunks(chunk_stream(5_000))
                .map(move |x| {
                    p.fetch_add(1, Ordering::SeqCst);
                    x
                })
                .spawn_stream(prefetch);
            let mut buf = Vec::new();
            let mut calls = 0;
            loop {
                calls += 1;
                assert!(
                    calls < 100_000,
                    "fraction {fraction} window {window}: stuck"
                );
                assert!(inbox.len() as u64 <= window);
                let ahead = produced.load(Ordering::SeqCst) - buf.len() as u64;
                assert!(
                    ahead <= window,
                    "fraction {fraction} window {window}: {ahead} ahead"
                );
                tokio::task::yield_now().await;
                if inbox.recv_many(&mut buf, 4).await.unwrap() == 0 {
                    break;
                }
            }
            assert!(buf.into_iter().eq(0..5_000));
        }
    }
}
