use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use tokio::time::Instant;

use crate::batching::{Batching, Rule};
use crate::bridge::{Inbox, InboxSubscriber, Prefetch, inbox};
use crate::purge::{Predicate, Purger, Requests, Target, retain};
use crate::{Error, demand};

/// How items are spread over the workers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Partitioning {
    /// Worker after worker: the most even load, but two items of one key may be written by two
    /// workers at once and arrive out of order.
    RoundRobin,
    /// By a hash of the item's key: each key's items are written one after another by one
    /// worker, so per-key order holds; an uneven key distribution loads workers unevenly.
    Key,
}

/// The shape of a worker pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkersConfig {
    /// How many writes may run at once (at least 1).
    pub workers: usize,
    /// Items held per worker, queued or being written (raised to two of the largest batches
    /// when that is larger); the pool requests upstream no more than `workers ×` that in all.
    pub window: usize,
    /// How items are assigned.
    pub partitioning: Partitioning,
    /// How a worker groups what it has queued into one write: a fixed size and linger, or
    /// sizes chosen from the observed write latency ([`Batching`]). A worker writes a batch
    /// once the rule says so, or once the input ended. Batching per worker keeps per-key order
    /// with [`Partitioning::Key`].
    pub batching: Batching,
}

impl Default for WorkersConfig {
    fn default() -> Self {
        WorkersConfig {
            workers: 4,
            window: 16,
            partitioning: Partitioning::Key,
            batching: Batching::default(),
        }
    }
}

/// Counters of a worker pool, readable while it runs.
#[derive(Debug, Default)]
pub struct WorkerStats {
    started: AtomicU64,
    congested: AtomicU64,
    completed: AtomicU64,
    busy_ns: AtomicU64,
    held: AtomicU64,
    purged: AtomicU64,
}

impl WorkerStats {
    /// Writes (batches) started.
    pub fn started(&self) -> u64 {
        self.started.load(Ordering::Relaxed)
    }
    /// Writes started while adaptive batching judged the sink congested (sized to the items
    /// arriving during one write rather than sent at once); 0 with fixed batching.
    pub fn congested(&self) -> u64 {
        self.congested.load(Ordering::Relaxed)
    }
    /// Items whose write finished.
    pub fn completed(&self) -> u64 {
        self.completed.load(Ordering::Relaxed)
    }
    /// Time spent writing, summed over workers.
    pub fn busy(&self) -> std::time::Duration {
        std::time::Duration::from_nanos(self.busy_ns.load(Ordering::Relaxed))
    }
    /// Items held by the pool now (queued at a worker or being written).
    pub fn held(&self) -> u64 {
        self.held.load(Ordering::Relaxed)
    }
    /// Items removed from the workers' queues by a [`Purger`](crate::purge::Purger) before they
    /// were written.
    pub fn purged(&self) -> u64 {
        self.purged.load(Ordering::Relaxed)
    }
}

/// Makes a pool of `config.workers` concurrent writers: returns the subscriber to connect to a
/// publisher and the driver future that runs the writes. `key` gives an item's partition key
/// (used with [`Partitioning::Key`]); `write(worker, batch)` writes one batch (of one item with
/// the default batching).
///
/// Each worker runs one write at a time, taking its items in the order it received them. The driver ends
/// with `Ok(())` once the publisher completed and every write finished, or with the publisher's
/// error once the items already taken are written.
///
/// ```
/// use reactive::sink::{workers, Partitioning, WorkersConfig};
/// use reactive::Publisher;
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let config = WorkersConfig { workers: 3, window: 4, partitioning: Partitioning::Key, ..Default::default() };
/// let (subscriber, pool) = workers(config, |x: &u64| x % 5, |_worker, _batch: Vec<u64>| async {});
/// let stats = pool.stats();
/// let (_, result) = tokio::join!(reactive::iter(0..100u64).connect(subscriber), pool);
/// result.unwrap();
/// assert_eq!(stats.completed(), 100);
/// # }
/// ```
pub fn workers<T, K, W, Fut>(
    config: WorkersConfig,
    key: K,
    write: W,
) -> (InboxSubscriber<T>, WorkersDriver<T, K, W, Fut>)
where
    K: Fn(&T) -> u64,
    W: FnMut(usize, Vec<T>) -> Fut,
    Fut: Future<Output = ()>,
{
    let n = config.workers.max(1);
    let batch = config.batching.max();
    let (subscriber, inbox) = inbox(Prefetch::manual());
    let driver = WorkersDriver {
        inbox,
        queues: (0..n).map(|_| VecDeque::new()).collect(),
        inflight: (0..n).map(|_| None).collect(),
        // A worker must be able to hold a full batch, and the next one filling behind it.
        capacity: n.saturating_mul(config.window.max(1).max(batch.saturating_mul(2))) as u64,
        rules: (0..n).map(|_| config.batching.rule()).collect(),
        held: 0,
        outstanding: 0,
        next: 0,
        partitioning: config.partitioning,
        key,
        write,
        end: None,
        stats: Arc::new(WorkerStats::default()),
        purges: Arc::new(Requests::default()),
        purges_seen: 0,
    };
    (subscriber, driver)
}

/// A write under way: the future, when it started, how many items it carries.
type InFlight<Fut> = (Pin<Box<Fut>>, Instant, u64);

/// Runs the writes of a [`workers`] pool.
pub struct WorkersDriver<T, K, W, Fut> {
    inbox: Inbox<T>,
    queues: Vec<VecDeque<T>>,
    inflight: Vec<Option<InFlight<Fut>>>,
    capacity: u64,
    /// Each worker's batching rule: when its next batch goes, and how large it may be.
    rules: Vec<Rule>,
    held: u64,
    outstanding: u64,
    next: usize,
    partitioning: Partitioning,
    key: K,
    write: W,
    end: Option<Option<Error>>,
    stats: Arc<WorkerStats>,
    purges: Arc<Requests<T>>,
    purges_seen: u64,
}

impl<T, K, W, Fut> std::fmt::Debug for WorkersDriver<T, K, W, Fut> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkersDriver")
            .field("workers", &self.queues.len())
            .field("held", &self.held)
            .finish()
    }
}

// The driver never pins its fields: futures are boxed.
impl<T, K, W, Fut> Unpin for WorkersDriver<T, K, W, Fut> {}

impl<T, K, W, Fut> WorkersDriver<T, K, W, Fut> {
    /// The pool's live counters.
    pub fn stats(&self) -> Arc<WorkerStats> {
        self.stats.clone()
    }

    /// A handle that removes items waiting in the workers' queues (not those being written);
    /// see [`crate::purge`]. They are removed the next time the pool runs.
    pub fn purger(&self) -> Purger<T>
    where
        T: Send + 'static,
    {
        Purger::new(Arc::new(Deferred(self.purges.clone())))
    }

    /// Applies the purges requested since the last poll.
    fn apply_purges(&mut self, cx: &Context<'_>) {
        let predicates = self.purges.take(&mut self.purges_seen, cx.waker());
        if predicates.is_empty() {
            return;
        }
        for (w, queue) in self.queues.iter_mut().enumerate() {
            let removed = retain(queue, &predicates);
            if removed > 0 {
                self.held -= removed;
                self.stats.purged.fetch_add(removed, Ordering::Relaxed);
                if queue.is_empty() {
                    self.rules[w].taken(0);
                }
            }
        }
        self.stats.held.store(self.held, Ordering::Relaxed);
    }
}

/// A purge target applied by its holder on its own task.
struct Deferred<T>(Arc<Requests<T>>);

impl<T: Send> Target<T> for Deferred<T> {
    fn purge(&self, predicate: Predicate<T>) -> u64 {
        self.0.push(predicate);
        0
    }
}

/// Spreads keys over workers even when keys are small consecutive numbers.
fn spread(key: u64) -> u64 {
    splitmix::next(key)
}

impl<T, K, W, Fut> Future for WorkersDriver<T, K, W, Fut>
where
    K: Fn(&T) -> u64,
    W: FnMut(usize, Vec<T>) -> Fut,
    Fut: Future<Output = ()>,
{
    type Output = Result<(), Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let n = this.queues.len();
        this.apply_purges(cx);
        loop {
            let mut progressed = false;
            // Demand: the room the pool has, less what is already on its way.
            if this.end.is_none() {
                let room = this
                    .capacity
                    .saturating_sub(this.held)
                    .saturating_sub(this.outstanding);
                if room > 0 {
                    this.outstanding = demand::add(this.outstanding, room);
                    this.inbox.request(room);
                }
            }
            while this.end.is_none() && this.held < this.capacity {
                match this.inbox.poll_recv(cx) {
                    Poll::Ready(Some(Ok(item))) => {
                        this.outstanding = this.outstanding.saturating_sub(1);
                        let worker = match this.partitioning {
                            Partitioning::RoundRobin => {
                                this.next = (this.next + 1) % n;
                                this.next
                            }
                            Partitioning::Key => (spread((this.key)(&item)) % n as u64) as usize,
                        };
                        this.rules[worker].arrived(this.queues[worker].len());
                        this.queues[worker].push_back(item);
                        this.held += 1;
                        this.stats.held.store(this.held, Ordering::Relaxed);
                    }
                    Poll::Ready(Some(Err(e))) => this.end = Some(Some(e)),
                    Poll::Ready(None) => this.end = Some(None),
                    Poll::Pending => break,
                }
            }
            for w in 0..n {
                if this.inflight[w].is_none() && !this.queues[w].is_empty() {
                    let len = this.queues[w].len();
                    if this.rules[w].poll_ready(len, cx) || this.end.is_some() {
                        let take = len.min(this.rules[w].size());
                        let items: Vec<T> = this.queues[w].drain(..take).collect();
                        this.rules[w].taken(this.queues[w].len());
                        this.stats.started.fetch_add(1, Ordering::Relaxed);
                        if this.rules[w].congested() {
                            this.stats.congested.fetch_add(1, Ordering::Relaxed);
                        }
                        let n_items = items.len() as u64;
                        this.inflight[w] =
                            Some((Box::pin((this.write)(w, items)), Instant::now(), n_items));
                    }
                }
                if let Some((write, started, items)) = this.inflight[w].as_mut() {
                    if write.as_mut().poll(cx).is_ready() {
                        let took = started.elapsed();
                        this.rules[w].wrote(took);
                        this.stats
                            .busy_ns
                            .fetch_add(took.as_nanos() as u64, Ordering::Relaxed);
                        this.stats.completed.fetch_add(*items, Ordering::Relaxed);
                        this.held -= *items;
                        this.inflight[w] = None;
                        this.stats.held.store(this.held, Ordering::Relaxed);
                        progressed = true;
                    }
                }
            }
            if this.held == 0 {
                if let Some(end) = this.end.take() {
                    return Poll::Ready(end.map_or(Ok(()), Err));
                }
            }
            if !progressed {
                return Poll::Pending;
            }
        }
    }
}
