//! The [`KafkaSource`] publisher, its handle, and the connection that hands records to the
//! subscriber.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use futures_util::task::AtomicWaker;
use tokio::sync::mpsc;

use super::poller::{self, Msg};
use super::shared::{Shared, lock};
use super::stats::Counters;
use super::tracker::{Tp, Tracker};
use super::{KafkaConfig, KafkaRecord, KafkaStats};
use crate::subscription::{self, Demand};
use crate::{Error, Publisher, Subscriber};

/// A Kafka consumer as a [`Publisher`] of [`KafkaRecord`]s. See the [module docs](super).
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
                revoking: Mutex::new(Vec::new()),
                revoking_count: Default::default(),
                revoke_epoch: AtomicU64::new(0),
                revoke_hooks: Mutex::new(Vec::new()),
                connection: AtomicWaker::new(),
                inject_pause: Mutex::new(Vec::new()),
                revoked_positions: Mutex::new(Vec::new()),
                revoked_seq: AtomicU64::new(0),
                stash: Mutex::new(VecDeque::new()),
                lag: Mutex::new(Vec::new()),
                stalled: Mutex::new(Vec::new()),
                counters: Counters::default(),
                thread: Mutex::new(None),
                poller: std::sync::OnceLock::new(),
            }),
        }
    }

    #[cfg(test)]
    pub(super) fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// A handle for stats and shutdown, usable after the source is connected.
    pub fn handle(&self) -> KafkaHandle {
        KafkaHandle {
            shared: self.shared.clone(),
        }
    }
}

/// Stats, revocation hooks and shutdown of a [`KafkaSource`].
#[derive(Debug, Clone)]
pub struct KafkaHandle {
    shared: Arc<Shared>,
}

impl KafkaHandle {
    /// A snapshot of the counters, the assignment and the lag.
    pub fn stats(&self) -> KafkaStats {
        let c = &self.shared.counters;
        let (assigned, in_flight, acked) = {
            let tracker = self.shared.lock_tracker();
            (
                tracker.assigned(),
                tracker.in_flight_total() as u64,
                tracker.acked_total(),
            )
        };
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        KafkaStats {
            assigned: assigned
                .into_iter()
                .map(|(topic, p)| (topic.to_string(), p))
                .collect(),
            rebalances: load(&c.rebalances),
            evictions: load(&c.evictions),
            delivered: load(&c.delivered),
            acked,
            commits: load(&c.commits),
            commit_failures: load(&c.commit_failures),
            revoked_in_flight: load(&c.revoked_in_flight),
            revoked_unsent: load(&c.revoked_unsent),
            pauses: load(&c.pauses),
            errors: load(&c.errors),
            stalled: load(&c.stalled),
            stalled_partitions: lock(&self.shared.stalled).clone(),
            stalls: load(&c.stalls),
            stall_recoveries: load(&c.stall_recoveries),
            lag: self.shared.lag(),
            in_flight,
        }
    }

    /// Registers `hook`, called on the poll thread with the partitions being revoked (or
    /// lost), before the source waits for their records in flight and commits. Use it to
    /// purge their records from the pipeline's queues ([`Purger`](crate::purge::Purger),
    /// [`Ack::is_in`](super::Ack::is_in)): what is purged is let go unacknowledged, counted
    /// as [`KafkaStats::revoked_unsent`], and read again by the partition's next owner, so a
    /// rebalance duplicates only what was already being written. It is called a second time
    /// just before the partitions are given up, for records that were on their way. Keep it
    /// short: the group waits for the revocation.
    pub fn on_revoke(&self, hook: impl Fn(&[(Arc<str>, i32)]) + Send + Sync + 'static) {
        lock(&self.shared.revoke_hooks).push(Box::new(hook));
    }

    /// Fault injection for tests: pauses `partition` of `topic` in librdkafka without the poll
    /// loop knowing, as a pause left over from an earlier assignment would. The stall detector
    /// must find it and recover.
    #[doc(hidden)]
    pub fn pause_behind_the_source(&self, topic: &str, partition: i32) {
        lock(&self.shared.inject_pause).push((Arc::from(topic), partition));
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
        let thread = lock(&self.shared.thread).take();
        if let Some(thread) = thread {
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
    }
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
                *lock(&self.shared.thread) = Some(thread);
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
            revoke_seen: 0,
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
    /// Records the poll thread sent that are accounted for: emitted, or dropped because their
    /// partition was revoked.
    consumed: u64,
    granted: u64,
    /// The last revocation whose partitions' records were dropped from `buffer`.
    revoke_seen: u64,
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

impl<S> KafkaConnection<S> {
    /// After a revocation began, drops held records of partitions being revoked or already
    /// given up (their acks are released, so the revocation need not wait for them).
    /// Lock-free unless a revocation happened since the last look.
    fn drop_revoked(&mut self) {
        let epoch = self.shared.revoke_epoch.load(Ordering::Acquire);
        if epoch == self.revoke_seen {
            return;
        }
        self.revoke_seen = epoch;
        self.drop_stale(0);
    }

    /// Drops records from `buffer[from..]` whose partition is being revoked, or was given up
    /// since they were made.
    fn drop_stale(&mut self, from: usize) {
        let revoking: Vec<Tp> = lock(&self.shared.revoking).clone();
        let mut gone = Vec::new();
        {
            let tracker = self.shared.lock_tracker();
            let mut kept = VecDeque::with_capacity(self.buffer.len());
            for (i, r) in self.buffer.drain(..).enumerate() {
                let current =
                    !r.ack.is_in(&revoking) && tracker.is_current(r.ack.slot, r.ack.generation);
                if i < from || current {
                    kept.push_back(r);
                } else {
                    gone.push(r);
                }
            }
            self.buffer = kept;
        }
        // They were sent against demand: count them as used, or the poll thread would wait
        // for demand that never comes. Their acks drop here, outside the tracker's lock.
        self.consumed += gone.len() as u64;
        drop(gone);
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

    /// Tells the poll thread how much demand there is, when it changed.
    fn grant(&mut self, permits: u64) {
        let granted = self.consumed.saturating_add(permits);
        if granted != self.granted {
            self.granted = granted;
            self.shared.granted.store(granted, Ordering::Release);
            if let Some(poller) = self.shared.poller.get() {
                poller.unpark();
            }
        }
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
            this.drop_revoked();
            match this.demand.poll_ready(cx) {
                Poll::Ready(Ok(n)) => this.grant(n),
                Poll::Ready(Err(stop)) => {
                    // Cancelled: release the subscriber without a signal, or signal request(0).
                    let error = stop.into_error();
                    if error.is_none() {
                        this.subscriber = None;
                    }
                    return this.end(error);
                }
                Poll::Pending => {
                    // Waiting for demand: a revocation must still reach the records held.
                    this.shared.connection.register(cx.waker());
                    if this.shared.revoke_epoch.load(Ordering::Acquire) != this.revoke_seen {
                        continue;
                    }
                    return Poll::Pending;
                }
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
                Poll::Ready(Some(Msg::Records(records, epoch))) => {
                    let from = this.buffer.len();
                    if from == 0 {
                        // Takes the batch's allocation as it is: no record moves.
                        this.buffer = VecDeque::from(records);
                    } else {
                        this.buffer.extend(records);
                    }
                    // Made before a revocation began: it may hold records of its partitions.
                    if epoch != this.shared.revoke_epoch.load(Ordering::Acquire) {
                        this.drop_stale(from);
                    }
                }
                Poll::Ready(Some(Msg::Failed(e))) => return this.end(Some(Error::upstream(e))),
                Poll::Ready(Some(Msg::Drained)) | Poll::Ready(None) => return this.end(None),
                Poll::Pending => {
                    // Waiting on the poll thread with demand outstanding: a stop must still
                    // wake us.
                    if this.demand.poll_stop(cx).is_ready() {
                        continue;
                    }
                    this.shared.connection.register(cx.waker());
                    return Poll::Pending;
                }
            }
        }
    }
}
