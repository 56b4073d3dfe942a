//! A Kafka source in pull mode (feature `kafka`): consumer-group membership, records fetched
//! only against demand, offsets committed only after the sink acknowledges.
//!
//! ```no_run
//! use reactive::kafka::{KafkaConfig, KafkaSource};
//! use reactive::{Prefetch, PublisherExt};
//! use futures::TryStreamExt;
//! # #[tokio::main] async fn main() -> Result<(), reactive::Error> {
//! let source = KafkaSource::new(KafkaConfig::new("127.0.0.1:9092", "processors", ["events"]));
//! let mut records = source.into_stream_with(Prefetch::new(256));
//! while let Some(record) = records.try_next().await? {
//!     // ... write record.payload to the sink, then:
//!     record.ack.ack();
//! }
//! # Ok(()) }
//! ```
//!
//! # Guarantees
//! - **Pull mode.** A thread of its own polls the consumer. It hands records downstream only
//!   while the subscriber has outstanding demand: never more records than were requested. When
//!   demand has been out for 100 ms (a shorter gap, while the subscriber replenishes, is waited
//!   out: a pause drops what librdkafka fetched ahead), every assigned partition is paused, so
//!   the backlog stays in Kafka (as lag) and not in this process; when demand returns they are
//!   resumed. What librdkafka may buffer
//!   ahead is bounded by [`KafkaConfig::fetch_buffer_kbytes`].
//! - **Polling is decoupled from processing.** The poll thread never waits for the sink: while
//!   paused it goes on polling every 10 ms, which serves rebalances and keeps the member within
//!   `max.poll.interval.ms` however slow the sink is. A slow sink shows up as lag, not as an
//!   eviction.
//! - **At-least-once.** Each [`KafkaRecord`] carries an [`Ack`]. Offsets are committed
//!   (synchronously, every [`KafkaConfig::commit_interval`]) only up to the first record of each
//!   partition that is not yet acknowledged: records acknowledged out of order wait for the
//!   earlier ones. A record that is never acknowledged is never committed past, and is delivered
//!   again after a restart or rebalance (see [`KafkaConfig::settle_on_drop`] for pipelines that
//!   shed on purpose).
//! - **Revocation.** Before a partition is given up, the source waits up to
//!   [`KafkaConfig::revoke_grace`] for its records in flight to be acknowledged, commits what
//!   was, and forgets the rest: acknowledgements that arrive later are ignored (the new owner
//!   reads from the commit, so those records show up again there, as duplicates). A lost
//!   assignment (the member was evicted) commits nothing.
//! - **Lag.** Every [`KafkaConfig::lag_interval`] a second thread reads each assigned
//!   partition's log-end offset (high watermark) and the group's committed offset from the
//!   broker; lag is their difference ([`KafkaStats::lag`]). Assignments come from the rebalance
//!   callbacks, evictions from the client's own `MAX_POLL_EXCEEDED` events.
//!
//! Kafka never ends, so the source completes only after [`KafkaHandle::drain`]. Errors while
//! polling (a broker gone, a rebalance failure) are counted and retried by librdkafka; only a
//! consumer that cannot be created or subscribed ends the stream with `on_error`.

mod poller;
mod tracker;

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use tokio::sync::mpsc;

use crate::subscription::{self, Demand};
use crate::{Error, Publisher, Subscriber};
use tracker::{Tp, Tracker};

/// How the source joins its group and how it fetches.
#[derive(Debug, Clone)]
pub struct KafkaConfig {
    /// `bootstrap.servers`: `host:port[,host:port...]`.
    pub bootstrap_servers: String,
    /// `group.id`: the members of one group share the topic's partitions.
    pub group_id: String,
    /// Topics to subscribe to.
    pub topics: Vec<String>,
    /// `max.poll.interval.ms`: the longest the member may go between polls before the client
    /// leaves the group. The poll thread never comes near it; see the module docs.
    pub max_poll_interval: Duration,
    /// `session.timeout.ms`: the longest the broker waits for a heartbeat. librdkafka needs it
    /// no larger than `max_poll_interval`.
    pub session_timeout: Duration,
    /// How often acknowledged offsets are committed.
    pub commit_interval: Duration,
    /// How long a revocation waits for records in flight to be acknowledged.
    pub revoke_grace: Duration,
    /// `queued.max.messages.kbytes`: what librdkafka may fetch ahead, per partition.
    pub fetch_buffer_kbytes: u32,
    /// Most records handed across to the subscriber's task at once.
    pub max_batch: usize,
    /// How often lag is read from the broker (`Duration::ZERO`: never).
    pub lag_interval: Duration,
    /// Where a group with no committed offset starts: `earliest` or `latest`.
    pub auto_offset_reset: String,
    /// Whether an [`Ack`] dropped without [`Ack::ack`] counts as acknowledged. Off by default:
    /// a dropped record is redelivered later. Turn it on in pipelines that shed records on
    /// purpose, so that shedding does not hold the commit point back.
    pub settle_on_drop: bool,
    /// Any other librdkafka property, applied last.
    pub extra: Vec<(String, String)>,
}

impl KafkaConfig {
    /// A consumer of `topics` in `group_id`, with this crate's defaults.
    pub fn new<I, S>(bootstrap_servers: &str, group_id: &str, topics: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        KafkaConfig {
            bootstrap_servers: bootstrap_servers.into(),
            group_id: group_id.into(),
            topics: topics.into_iter().map(Into::into).collect(),
            max_poll_interval: Duration::from_secs(300),
            session_timeout: Duration::from_secs(45),
            commit_interval: Duration::from_millis(500),
            revoke_grace: Duration::from_secs(2),
            fetch_buffer_kbytes: 4096,
            max_batch: 512,
            lag_interval: Duration::from_secs(1),
            auto_offset_reset: "earliest".into(),
            settle_on_drop: false,
            extra: Vec::new(),
        }
    }

    /// Sets any librdkafka property (applied after the ones this crate sets).
    pub fn set(mut self, key: &str, value: &str) -> Self {
        self.extra.push((key.into(), value.into()));
        self
    }

    /// The librdkafka properties of a consumer with this configuration.
    pub fn client_config(&self) -> rdkafka::ClientConfig {
        let mut c = rdkafka::ClientConfig::new();
        let session = self.session_timeout.as_millis().max(1);
        let heartbeat = (session / 3).clamp(1, 3000);
        c.set("bootstrap.servers", &self.bootstrap_servers)
            .set("group.id", &self.group_id)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("enable.partition.eof", "false")
            .set("auto.offset.reset", &self.auto_offset_reset)
            .set(
                "max.poll.interval.ms",
                self.max_poll_interval.as_millis().max(1).to_string(),
            )
            .set("session.timeout.ms", session.to_string())
            .set("heartbeat.interval.ms", heartbeat.to_string())
            .set(
                "queued.max.messages.kbytes",
                self.fetch_buffer_kbytes.max(1).to_string(),
            )
            .set(
                "queued.min.messages",
                (self.max_batch.max(1) * 4).to_string(),
            );
        for (k, v) in &self.extra {
            c.set(k, v);
        }
        c
    }
}

/// One record, with the acknowledgement that lets its offset be committed.
#[derive(Debug)]
pub struct KafkaRecord {
    /// The topic it was read from.
    pub topic: Arc<str>,
    /// Its partition.
    pub partition: i32,
    /// Its offset in the partition.
    pub offset: i64,
    /// The record's key, if it has one.
    pub key: Option<Vec<u8>>,
    /// The record's value, if it has one (a copy: the record owns it).
    pub payload: Option<Vec<u8>>,
    /// Milliseconds since the epoch, when the record has a timestamp.
    pub timestamp_ms: Option<i64>,
    /// Call [`Ack::ack`] once the sink has the record.
    pub ack: Ack,
}

/// The right to commit one record's offset. Acknowledging is cheap (a short lock); use
/// [`Ack::ack_all`] for a batch.
#[derive(Debug)]
pub struct Ack {
    shared: Arc<Shared>,
    tp: Tp,
    offset: i64,
    generation: u64,
    done: bool,
}

impl Ack {
    /// The sink has the record: its offset may be committed once every earlier record of the
    /// partition is acknowledged too.
    pub fn ack(mut self) {
        self.done = true;
        self.shared.ack(&self.tp, self.offset, self.generation);
    }

    /// Acknowledges many records under one lock.
    pub fn ack_all(acks: impl IntoIterator<Item = Ack>) {
        let mut shared: Option<Arc<Shared>> = None;
        let mut guard = None;
        for mut a in acks {
            a.done = true;
            if shared.as_ref().is_none_or(|s| !Arc::ptr_eq(s, &a.shared)) {
                guard = None;
                shared = Some(a.shared.clone());
            }
            let s = shared.as_ref().expect("set above");
            if s.closed.load(Ordering::Acquire) {
                continue;
            }
            let g = guard.get_or_insert_with(|| s.lock_tracker());
            if g.ack(&a.tp, a.offset, a.generation) {
                s.counters.acked.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// The record's partition and offset.
    pub fn position(&self) -> (&str, i32, i64) {
        (&self.tp.0, self.tp.1, self.offset)
    }
}

impl Drop for Ack {
    fn drop(&mut self) {
        if !self.done && self.shared.settle_on_drop {
            self.shared.ack(&self.tp, self.offset, self.generation);
        }
    }
}

/// Lag of one partition, as last read from the broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionLag {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// The log-end offset (high watermark).
    pub log_end: i64,
    /// The group's committed offset (`None`: nothing committed yet; lag counts from the log
    /// start).
    pub committed: Option<i64>,
    /// `log_end − committed`.
    pub lag: i64,
}

/// What the source has done so far.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct KafkaStats {
    /// Partitions assigned to this member now (from the rebalance callbacks).
    pub assigned: Vec<(String, i32)>,
    /// Rebalance events seen (each assignment and each revocation counts).
    pub rebalances: u64,
    /// Times the client left the group because `max.poll.interval.ms` passed without a poll.
    pub evictions: u64,
    /// Records handed downstream.
    pub delivered: u64,
    /// Records acknowledged.
    pub acked: u64,
    /// Successful commits.
    pub commits: u64,
    /// Failed commits (retried at the next interval).
    pub commit_failures: u64,
    /// Records in flight when their partition was revoked, whose acknowledgements were dropped.
    pub revoked_in_flight: u64,
    /// Times the assigned partitions were paused for want of demand.
    pub pauses: u64,
    /// Client errors seen (not counting evictions).
    pub errors: u64,
    /// Lag per assigned partition, as of the last reading.
    pub lag: Vec<PartitionLag>,
    /// Records delivered and not yet acknowledged.
    pub in_flight: u64,
}

impl KafkaStats {
    /// Sum of the partitions' lag.
    pub fn total_lag(&self) -> i64 {
        self.lag.iter().map(|l| l.lag).sum()
    }
}

#[derive(Debug, Default)]
struct Counters {
    rebalances: AtomicU64,
    evictions: AtomicU64,
    delivered: AtomicU64,
    acked: AtomicU64,
    commits: AtomicU64,
    commit_failures: AtomicU64,
    revoked_in_flight: AtomicU64,
    pauses: AtomicU64,
    errors: AtomicU64,
}

/// State shared by the connection, the poll thread, the lag thread and the acks.
#[derive(Debug)]
struct Shared {
    config: KafkaConfig,
    settle_on_drop: bool,
    /// Total demand the subscriber has granted (monotonic, saturating).
    granted: AtomicU64,
    /// Whether to fetch at all ([`KafkaHandle::drain`] clears it).
    fetching: AtomicBool,
    /// Tells the poll thread to commit and leave.
    stop: AtomicBool,
    /// After close: acknowledgements no longer count.
    closed: AtomicBool,
    tracker: Mutex<Tracker>,
    /// Bumped at each assignment, so the poll thread re-applies a pause.
    assignment_epoch: AtomicU64,
    lag: Mutex<Vec<PartitionLag>>,
    counters: Counters,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// The poll thread, to wake it when demand arrives.
    poller: std::sync::OnceLock<std::thread::Thread>,
}

impl Shared {
    fn lock_tracker(&self) -> std::sync::MutexGuard<'_, Tracker> {
        self.tracker.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn ack(&self, tp: &Tp, offset: i64, generation: u64) {
        if self.closed.load(Ordering::Acquire) {
            return;
        }
        if self.lock_tracker().ack(tp, offset, generation) {
            self.counters.acked.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Whether a client error is the eviction librdkafka reports when `max.poll.interval.ms`
/// passed without a poll (`MAX_POLL_EXCEEDED`): the member has left its group.
pub fn is_eviction(error: &KafkaError) -> bool {
    error.rdkafka_error_code() == Some(RDKafkaErrorCode::PollExceeded)
}

/// Reads the lag of `partitions` for the consumer's group: the group's committed offsets and each
/// partition's log-end offset (high watermark), from the broker. A partition with nothing
/// committed counts from its log start. Blocks for up to `timeout` per request.
pub fn read_lag<C: rdkafka::consumer::ConsumerContext>(
    consumer: &impl rdkafka::consumer::Consumer<C>,
    partitions: rdkafka::TopicPartitionList,
    timeout: Duration,
) -> Result<Vec<PartitionLag>, KafkaError> {
    let committed = consumer.committed_offsets(partitions, timeout)?;
    let mut lags = Vec::new();
    for e in committed.elements() {
        let (low, high) = consumer.fetch_watermarks(e.topic(), e.partition(), timeout)?;
        let committed = e.offset().to_raw().filter(|o| *o >= 0);
        lags.push(PartitionLag {
            topic: e.topic().to_string(),
            partition: e.partition(),
            log_end: high,
            committed,
            lag: (high - committed.unwrap_or(low)).max(0),
        });
    }
    lags.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
    Ok(lags)
}

/// A Kafka consumer as a [`Publisher`] of [`KafkaRecord`]s. See the [module docs](self).
#[derive(Debug)]
pub struct KafkaSource {
    shared: Arc<Shared>,
}

impl KafkaSource {
    /// A source with this configuration; nothing connects until it is subscribed to.
    pub fn new(config: KafkaConfig) -> Self {
        KafkaSource {
            shared: Arc::new(Shared {
                settle_on_drop: config.settle_on_drop,
                config,
                granted: AtomicU64::new(0),
                fetching: AtomicBool::new(true),
                stop: AtomicBool::new(false),
                closed: AtomicBool::new(false),
                tracker: Mutex::new(Tracker::default()),
                assignment_epoch: AtomicU64::new(0),
                lag: Mutex::new(Vec::new()),
                counters: Counters::default(),
                thread: Mutex::new(None),
                poller: std::sync::OnceLock::new(),
            }),
        }
    }

    /// A handle for stats and shutdown, usable after the source is connected.
    pub fn handle(&self) -> KafkaHandle {
        KafkaHandle {
            shared: self.shared.clone(),
        }
    }
}

/// Stats and shutdown of a [`KafkaSource`].
#[derive(Debug, Clone)]
pub struct KafkaHandle {
    shared: Arc<Shared>,
}

impl KafkaHandle {
    /// A snapshot of the counters, the assignment and the lag.
    pub fn stats(&self) -> KafkaStats {
        let c = &self.shared.counters;
        let tracker = self.shared.lock_tracker();
        let in_flight = tracker.in_flight_total() as u64;
        KafkaStats {
            assigned: tracker
                .assigned()
                .into_iter()
                .map(|(topic, p)| (topic.to_string(), p))
                .collect(),
            rebalances: c.rebalances.load(Ordering::Relaxed),
            evictions: c.evictions.load(Ordering::Relaxed),
            delivered: c.delivered.load(Ordering::Relaxed),
            acked: c.acked.load(Ordering::Relaxed),
            commits: c.commits.load(Ordering::Relaxed),
            commit_failures: c.commit_failures.load(Ordering::Relaxed),
            revoked_in_flight: c.revoked_in_flight.load(Ordering::Relaxed),
            pauses: c.pauses.load(Ordering::Relaxed),
            errors: c.errors.load(Ordering::Relaxed),
            lag: self
                .shared
                .lag
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
            in_flight,
        }
    }

    /// Stops fetching: the partitions stay paused, and the stream completes once the records
    /// already handed over are delivered. The member stays in the group and goes on committing
    /// what is acknowledged, until [`close`](Self::close).
    pub fn drain(&self) {
        self.shared.fetching.store(false, Ordering::Release);
    }

    /// Commits what was acknowledged, leaves the group, and waits for the poll thread to end.
    /// Acknowledgements after this are ignored.
    pub async fn close(&self) {
        self.shared.fetching.store(false, Ordering::Release);
        self.shared.stop.store(true, Ordering::Release);
        let thread = self
            .shared
            .thread
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(thread) = thread {
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
    }
}

pub(crate) enum Msg {
    Records(Vec<KafkaRecord>),
    Failed(KafkaError),
    Drained,
}

impl Publisher for KafkaSource {
    type Item = KafkaRecord;
    type Connection<S: Subscriber<KafkaRecord>> = KafkaConnection<S>;

    fn connect<S: Subscriber<KafkaRecord>>(self, mut subscriber: S) -> KafkaConnection<S> {
        let (subscription, demand) = subscription::pair();
        subscriber.on_subscribe(subscription);
        let (tx, rx) = mpsc::unbounded_channel();
        let shared = self.shared.clone();
        let spawned = std::thread::Builder::new()
            .name("kafka-poll".into())
            .spawn(move || poller::run(shared, tx));
        let mut failed = None;
        match spawned {
            Ok(thread) => {
                let _ = self.shared.poller.set(thread.thread().clone());
                *self.shared.thread.lock().unwrap_or_else(|p| p.into_inner()) = Some(thread);
            }
            Err(e) => failed = Some(Error::upstream(e)),
        }
        KafkaConnection {
            subscriber: Some(subscriber),
            demand,
            rx,
            buffer: VecDeque::new(),
            shared: self.shared,
            consumed: 0,
            granted: 0,
            failed,
        }
    }
}

/// The connection of a [`KafkaSource`]: moves records from the poll thread to the subscriber,
/// and the subscriber's demand to the poll thread.
#[must_use = "a connection emits nothing unless polled"]
pub struct KafkaConnection<S> {
    subscriber: Option<S>,
    demand: Demand,
    rx: mpsc::UnboundedReceiver<Msg>,
    buffer: VecDeque<KafkaRecord>,
    shared: Arc<Shared>,
    consumed: u64,
    granted: u64,
    failed: Option<Error>,
}

impl<S> std::fmt::Debug for KafkaConnection<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaConnection")
            .field("consumed", &self.consumed)
            .field("granted", &self.granted)
            .field("buffered", &self.buffer.len())
            .finish_non_exhaustive()
    }
}

// The subscriber is never pinned: it is only reached through `&mut`.
impl<S> Unpin for KafkaConnection<S> {}

impl<S> Drop for KafkaConnection<S> {
    fn drop(&mut self) {
        // The subscriber is gone: stop fetching and leave the group.
        self.shared.fetching.store(false, Ordering::Release);
        self.shared.stop.store(true, Ordering::Release);
    }
}

impl<S: Subscriber<KafkaRecord>> KafkaConnection<S> {
    fn end(&mut self, error: Option<Error>) -> Poll<()> {
        if let Some(mut subscriber) = self.subscriber.take() {
            match error {
                Some(e) => subscriber.on_error(e),
                None => subscriber.on_complete(),
            }
        }
        self.demand.terminate();
        self.shared.stop.store(true, Ordering::Release);
        Poll::Ready(())
    }
}

impl<S: Subscriber<KafkaRecord>> Future for KafkaConnection<S> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        if this.subscriber.is_none() {
            return Poll::Ready(());
        }
        if let Some(e) = this.failed.take() {
            return this.end(Some(e));
        }
        let mut budget = crate::source::YIELD_BUDGET;
        loop {
            match this.demand.poll_ready(cx) {
                Poll::Ready(Ok(n)) => {
                    let granted = this.consumed.saturating_add(n);
                    if granted != this.granted {
                        this.granted = granted;
                        this.shared.granted.store(granted, Ordering::Release);
                        if let Some(poller) = this.shared.poller.get() {
                            poller.unpark();
                        }
                    }
                }
                Poll::Ready(Err(stop)) => {
                    // Cancelled: release the subscriber without a signal, or signal request(0).
                    let error = stop.into_error();
                    if error.is_none() {
                        this.subscriber = None;
                    }
                    return this.end(error);
                }
                Poll::Pending => return Poll::Pending,
            }
            if let Some(record) = this.buffer.pop_front() {
                this.demand.consume();
                this.consumed += 1;
                if let Some(s) = this.subscriber.as_mut() {
                    s.on_next(record);
                }
                budget -= 1;
                if budget == 0 {
                    cx.waker().wake_by_ref();
                    return Poll::Pending;
                }
                continue;
            }
            match this.rx.poll_recv(cx) {
                Poll::Ready(Some(Msg::Records(records))) => this.buffer.extend(records),
                Poll::Ready(Some(Msg::Failed(e))) => return this.end(Some(Error::upstream(e))),
                Poll::Ready(Some(Msg::Drained)) | Poll::Ready(None) => return this.end(None),
                Poll::Pending => {
                    // Waiting on the poll thread with demand outstanding: a stop must still
                    // wake us.
                    if this.demand.poll_stop(cx).is_ready() {
                        continue;
                    }
                    return Poll::Pending;
                }
            }
        }
    }
}
