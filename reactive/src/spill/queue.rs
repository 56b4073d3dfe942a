//! [`SpillSender`] and [`SpillReceiver`]: memory first, then the disk, FIFO overall.

use std::collections::VecDeque;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::Notify;

use super::log::{AppendError, SpillLog};
use super::{Fsync, Recovery, SpillCodec, SpillConfig, SpillError, SpillStats};

/// How long a push waits on a full disk before it tries again, in case the room it waits for
/// came from outside (the file system freed space, not our reader).
const FULL_RETRY: Duration = Duration::from_millis(50);

struct Memory<T> {
    items: VecDeque<T>,
    sender_gone: bool,
    receiver_gone: bool,
}

struct Shared<T> {
    memory: Mutex<Memory<T>>,
    log: Mutex<SpillLog>,
    /// Records in the log not yet consumed. Written only under the log's lock; only the sender
    /// raises it, so a sender that reads 0 knows the disk stays empty until it appends.
    on_disk: AtomicU64,
    /// Signalled on every push and when the sender goes.
    items: Notify,
    /// Signalled on every pop from disk and when the receiver goes.
    room: Notify,
    capacity: usize,
    stats: Arc<SpillStats>,
    fsync: Fsync,
    flusher: std::sync::atomic::AtomicBool,
}

impl<T> Shared<T> {
    fn memory(&self) -> MutexGuard<'_, Memory<T>> {
        self.memory.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn lock_log<T>(shared: &Shared<T>) -> MutexGuard<'_, SpillLog> {
    shared.log.lock().unwrap_or_else(|p| p.into_inner())
}

/// Opens a spill queue over `config.dir`, recovering what a previous process left there (the
/// [`Recovery`] says what was found). The recovered records come out of the receiver first.
///
/// Opening reads every segment after the cursor once (blocking file I/O): call it at start-up,
/// or from `spawn_blocking`.
///
/// # Errors
/// When the directory or its files cannot be created or read.
pub fn open<T: SpillCodec>(
    config: SpillConfig,
) -> Result<(SpillSender<T>, SpillReceiver<T>, Recovery), SpillError> {
    let stats = Arc::new(SpillStats::default());
    let capacity = config.memory;
    let fsync = config.fsync;
    let (log, recovery) = SpillLog::open(config, stats.clone())?;
    let shared = Arc::new(Shared {
        memory: Mutex::new(Memory {
            items: VecDeque::new(),
            sender_gone: false,
            receiver_gone: false,
        }),
        on_disk: AtomicU64::new(log.backlog()),
        log: Mutex::new(log),
        items: Notify::new(),
        room: Notify::new(),
        capacity,
        stats,
        fsync,
        flusher: std::sync::atomic::AtomicBool::new(false),
    });
    let sender = SpillSender {
        shared: shared.clone(),
        scratch: Vec::new(),
    };
    Ok((
        sender,
        SpillReceiver {
            shared,
            _item: PhantomData,
        },
        recovery,
    ))
}

/// The producing half. One per queue: the order guarantee rests on a single sender.
pub struct SpillSender<T> {
    shared: Arc<Shared<T>>,
    scratch: Vec<u8>,
}

/// The consuming half.
pub struct SpillReceiver<T> {
    shared: Arc<Shared<T>>,
    _item: PhantomData<fn() -> T>,
}

impl<T> std::fmt::Debug for SpillSender<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpillSender")
            .field("capacity", &self.shared.capacity)
            .finish()
    }
}

impl<T> std::fmt::Debug for SpillReceiver<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpillReceiver")
            .field("capacity", &self.shared.capacity)
            .finish()
    }
}

/// A push that failed: the item comes back with the reason.
#[derive(Debug)]
pub struct PushError<T> {
    /// The item, not queued.
    pub item: T,
    /// Why.
    pub error: SpillError,
}

impl<T> std::fmt::Display for PushError<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.error.fmt(f)
    }
}

impl<T: std::fmt::Debug> std::error::Error for PushError<T> {}

/// A [`SpillSender::push_many`] that failed: the items not queued come back with the reason.
#[derive(Debug)]
pub struct PushManyError<T> {
    /// The items not queued, in order.
    pub items: Vec<T>,
    /// Why.
    pub error: SpillError,
}

impl<T> std::fmt::Display for PushManyError<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.error.fmt(f)
    }
}

impl<T: std::fmt::Debug> std::error::Error for PushManyError<T> {}

impl<T: SpillCodec + Send + 'static> SpillSender<T> {
    /// Queues `item`. In memory if the disk holds nothing and memory has room; else appended to
    /// the log, and then it is *acknowledged into the spill* when this returns (see
    /// [`SpillLog::append`]). When the disk budget is full, or the file system has no space,
    /// it waits until the receiver frees room: backpressure, never a drop.
    ///
    /// # Errors
    /// The receiver is gone, the item is over the largest record, or the file system failed.
    pub async fn push(&mut self, item: T) -> Result<(), PushError<T>> {
        start_flusher(&self.shared);
        {
            let mut memory = self.shared.memory();
            if memory.receiver_gone {
                return Err(PushError {
                    item,
                    error: SpillError::Closed,
                });
            }
            if self.shared.on_disk.load(Ordering::Acquire) == 0
                && memory.items.len() < self.shared.capacity
            {
                memory.items.push_back(item);
                self.shared.stats.memory(memory.items.len());
                drop(memory);
                self.shared.stats.pushed();
                self.shared.items.notify_one();
                return Ok(());
            }
        }
        let mut buf = std::mem::take(&mut self.scratch);
        buf.clear();
        item.encode(&mut buf);
        loop {
            let shared = self.shared.clone();
            let task = tokio::task::spawn_blocking(move || {
                let mut log = lock_log(&shared);
                let result = log.append(&buf);
                shared.on_disk.store(log.backlog(), Ordering::Release);
                drop(log);
                (result, buf)
            });
            let (result, back) = match task.await {
                Ok(done) => done,
                Err(_) => {
                    return Err(PushError {
                        item,
                        error: SpillError::Runtime,
                    });
                }
            };
            buf = back;
            match result {
                Ok(()) => {
                    self.scratch = buf;
                    self.shared.stats.set_blocked(false);
                    self.shared.stats.pushed();
                    self.shared.items.notify_one();
                    return Ok(());
                }
                Err(AppendError::Full { no_space }) => {
                    self.shared.stats.waited_full(no_space);
                    self.shared.stats.set_blocked(true);
                    if self.shared.memory().receiver_gone {
                        return Err(PushError {
                            item,
                            error: SpillError::Closed,
                        });
                    }
                    let _ = tokio::time::timeout(FULL_RETRY, self.shared.room.notified()).await;
                }
                Err(AppendError::Failed(error)) => return Err(PushError { item, error }),
            }
        }
    }

    /// Queues `items` in order, as [`push`](Self::push) would one by one, but with one
    /// blocking task (and, under [`Fsync::Always`](super::Fsync::Always), one `fdatasync`) for
    /// all that go to disk: they are acknowledged together when it returns.
    ///
    /// # Errors
    /// As `push`; the items not queued come back in the error, the first of them as `item`
    /// and the rest in `rest`.
    pub async fn push_many(&mut self, items: Vec<T>) -> Result<(), PushManyError<T>> {
        start_flusher(&self.shared);
        let mut items: std::collections::VecDeque<T> = items.into();
        {
            let mut memory = self.shared.memory();
            if memory.receiver_gone {
                return Err(PushManyError {
                    items: items.into(),
                    error: SpillError::Closed,
                });
            }
            let mut n = 0;
            while self.shared.on_disk.load(Ordering::Acquire) == 0
                && memory.items.len() < self.shared.capacity
            {
                let Some(item) = items.pop_front() else { break };
                memory.items.push_back(item);
                n += 1;
            }
            self.shared.stats.memory(memory.items.len());
            drop(memory);
            for _ in 0..n {
                self.shared.stats.pushed();
            }
            if n > 0 {
                self.shared.items.notify_one();
            }
        }
        let mut encoded: Vec<Vec<u8>> = items
            .iter()
            .map(|item| {
                let mut buf = Vec::new();
                item.encode(&mut buf);
                buf
            })
            .collect();
        while !encoded.is_empty() {
            let shared = self.shared.clone();
            let task = tokio::task::spawn_blocking(move || {
                let mut log = lock_log(&shared);
                let (done, result) = log.append_many(&encoded);
                shared.on_disk.store(log.backlog(), Ordering::Release);
                drop(log);
                encoded.drain(..done);
                (done, result, encoded)
            });
            let (done, result, rest) = match task.await {
                Ok(r) => r,
                Err(_) => {
                    return Err(PushManyError {
                        items: items.into(),
                        error: SpillError::Runtime,
                    });
                }
            };
            encoded = rest;
            items.drain(..done);
            for _ in 0..done {
                self.shared.stats.pushed();
            }
            if done > 0 {
                self.shared.items.notify_one();
            }
            match result {
                Ok(()) => {}
                Err(AppendError::Full { no_space }) => {
                    self.shared.stats.waited_full(no_space);
                    self.shared.stats.set_blocked(true);
                    if self.shared.memory().receiver_gone {
                        return Err(PushManyError {
                            items: items.into(),
                            error: SpillError::Closed,
                        });
                    }
                    let _ = tokio::time::timeout(FULL_RETRY, self.shared.room.notified()).await;
                }
                Err(AppendError::Failed(error)) => {
                    return Err(PushManyError {
                        items: items.into(),
                        error,
                    });
                }
            }
        }
        self.shared.stats.set_blocked(false);
        Ok(())
    }

    /// The queue's counters.
    pub fn stats(&self) -> Arc<SpillStats> {
        self.shared.stats.clone()
    }
}

/// Under [`Fsync::Every`], the task that syncs the log once per period while anything written
/// is unsynced, so an idle queue's last records are not left to the kernel. Started by the first
/// push (which runs in the runtime); ends when both halves are gone.
fn start_flusher<T: Send + 'static>(shared: &Arc<Shared<T>>) {
    let Fsync::Every(period) = shared.fsync else {
        return;
    };
    if shared.flusher.swap(true, Ordering::AcqRel) {
        return;
    }
    let weak = Arc::downgrade(shared);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let Some(shared) = weak.upgrade() else { return };
            let synced =
                tokio::task::spawn_blocking(move || lock_log(&shared).sync_if_dirty()).await;
            // A failed sync is retried next period; a later append or pop reports the error.
            if synced.is_err() {
                return;
            }
        }
    });
}

impl<T> Drop for SpillSender<T> {
    fn drop(&mut self) {
        self.shared.memory().sender_gone = true;
        self.shared.items.notify_one();
    }
}

impl<T: SpillCodec + Send + 'static> SpillReceiver<T> {
    /// The oldest item: from memory while it holds any (they are older than anything on disk),
    /// else from the log, where the cursor past it is saved before it is returned (so a restart
    /// does not replay it: it is *consumed*). `None` once the sender is gone and all is drained.
    /// A record whose bytes the codec refuses is counted (`undecodable`) and skipped.
    ///
    /// # Errors
    /// When the log cannot be read or the cursor saved; the record stays in the log.
    pub async fn pop(&mut self) -> Result<Option<T>, SpillError> {
        loop {
            {
                let mut memory = self.shared.memory();
                if let Some(item) = memory.items.pop_front() {
                    self.shared.stats.memory(memory.items.len());
                    drop(memory);
                    self.shared.stats.popped();
                    return Ok(Some(item));
                }
            }
            if self.shared.on_disk.load(Ordering::Acquire) > 0 {
                let shared = self.shared.clone();
                let read = tokio::task::spawn_blocking(move || {
                    let mut log = lock_log(&shared);
                    let record = log.pop();
                    shared.on_disk.store(log.backlog(), Ordering::Release);
                    shared.stats.backlog_is(log.backlog());
                    record
                })
                .await
                .map_err(|_| SpillError::Runtime)??;
                self.shared.room.notify_one();
                if let Some(bytes) = read {
                    match T::decode(&bytes) {
                        Ok(item) => {
                            self.shared.stats.popped();
                            return Ok(Some(item));
                        }
                        Err(_) => self.shared.stats.undecodable(),
                    }
                }
                continue;
            }
            if self.shared.memory().sender_gone && self.shared.on_disk.load(Ordering::Acquire) == 0
            {
                // The sender's last push happened before it was dropped: check memory once more.
                if self.shared.memory().items.is_empty() {
                    return Ok(None);
                }
                continue;
            }
            self.shared.items.notified().await;
        }
    }

    /// Up to `max` of the oldest items (at least one; empty only once the sender is gone and
    /// all is drained): from memory while it holds any, else from the log, whose cursor is
    /// saved once past the whole batch before it returns (they are consumed together).
    ///
    /// # Errors
    /// As [`pop`](Self::pop).
    pub async fn pop_many(&mut self, max: usize) -> Result<Vec<T>, SpillError> {
        let max = max.max(1);
        loop {
            {
                let mut memory = self.shared.memory();
                if !memory.items.is_empty() {
                    let n = memory.items.len().min(max);
                    let out: Vec<T> = memory.items.drain(..n).collect();
                    self.shared.stats.memory(memory.items.len());
                    drop(memory);
                    for _ in 0..n {
                        self.shared.stats.popped();
                    }
                    return Ok(out);
                }
            }
            if self.shared.on_disk.load(Ordering::Acquire) > 0 {
                let shared = self.shared.clone();
                let records = tokio::task::spawn_blocking(move || {
                    let mut log = lock_log(&shared);
                    let records = log.pop_many(max);
                    shared.on_disk.store(log.backlog(), Ordering::Release);
                    shared.stats.backlog_is(log.backlog());
                    records
                })
                .await
                .map_err(|_| SpillError::Runtime)??;
                self.shared.room.notify_one();
                let mut out = Vec::with_capacity(records.len());
                for bytes in records {
                    match T::decode(&bytes) {
                        Ok(item) => {
                            self.shared.stats.popped();
                            out.push(item);
                        }
                        Err(_) => self.shared.stats.undecodable(),
                    }
                }
                if !out.is_empty() {
                    return Ok(out);
                }
                continue;
            }
            if self.shared.memory().sender_gone && self.shared.on_disk.load(Ordering::Acquire) == 0
            {
                if self.shared.memory().items.is_empty() {
                    return Ok(Vec::new());
                }
                continue;
            }
            self.shared.items.notified().await;
        }
    }

    /// The queue's counters.
    pub fn stats(&self) -> Arc<SpillStats> {
        self.shared.stats.clone()
    }
}

impl<T> Drop for SpillReceiver<T> {
    fn drop(&mut self) {
        self.shared.memory().receiver_gone = true;
        self.shared.room.notify_one();
    }
}
