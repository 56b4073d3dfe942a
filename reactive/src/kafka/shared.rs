//! The state the source's parts share: the connection, the poll thread, the lag thread and
//! the acks all hold one [`Shared`].

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::{Bytes, BytesMut};
use futures_util::task::AtomicWaker;
use rdkafka::message::{BorrowedMessage, Message, Timestamp};

use super::stats::Counters;
use super::tracker::{Tp, Tracker};
use super::{KafkaConfig, PartitionLag};

/// Called on the poll thread with the partitions being revoked, before the source waits for
/// their records in flight. See [`KafkaHandle::on_revoke`](super::KafkaHandle::on_revoke).
pub type RevokeHook = Box<dyn Fn(&[(Arc<str>, i32)]) + Send + Sync>;

/// State shared by the connection, the poll thread, the lag thread and the acks.
pub(super) struct Shared {
    pub(super) config: KafkaConfig,
    pub(super) settle_on_drop: bool,
    /// Total demand the subscriber has granted (monotonic, saturating).
    pub(super) granted: AtomicU64,
    /// Whether to fetch at all ([`KafkaHandle::drain`] clears it).
    pub(super) fetching: AtomicBool,
    /// Tells the poll thread to commit and leave.
    pub(super) stop: AtomicBool,
    /// After close: acknowledgements no longer count.
    pub(super) closed: AtomicBool,
    pub(super) tracker: Mutex<Tracker>,
    /// Bumped at each assignment, so the poll thread re-applies pause or resume.
    pub(super) assignment_epoch: AtomicU64,
    /// Partitions being revoked now (between the start and the end of a revocation).
    pub(super) revoking: Mutex<Vec<Tp>>,
    /// How many partitions `revoking` holds, so that an [`Ack`](super::Ack) dropped outside a
    /// revocation (every record a shedding pipeline drops) does not take its lock.
    pub(super) revoking_count: AtomicUsize,
    /// Bumped at the start of each revocation, so the connection drops what it holds of them.
    pub(super) revoke_epoch: AtomicU64,
    /// Called with the partitions at the start of each revocation.
    pub(super) revoke_hooks: Mutex<Vec<RevokeHook>>,
    /// The connection's task, woken at a revocation so it drops what it holds of them.
    pub(super) connection: AtomicWaker,
    /// Partitions to pause behind the poll loop's back (a fault injected by tests).
    pub(super) inject_pause: Mutex<Vec<Tp>>,
    /// Partitions revoked whose fetch positions the poll thread has yet to forget.
    pub(super) revoked_positions: Mutex<Vec<Tp>>,
    /// Bumped after each push to `revoked_positions`, so that the poll thread looks at it
    /// (takes its lock) only when there is something new.
    pub(super) revoked_seq: AtomicU64,
    /// Records fetched before a pause took effect, kept for later demand (poll thread only).
    pub(super) stash: Mutex<VecDeque<Raw>>,
    pub(super) lag: Mutex<Vec<PartitionLag>>,
    /// Partitions stalled at the last check, and for how long.
    pub(super) stalled: Mutex<Vec<(String, i32, std::time::Duration)>>,
    pub(super) counters: Counters,
    pub(super) thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// The poll thread, to wake it when demand arrives.
    pub(super) poller: std::sync::OnceLock<std::thread::Thread>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("config", &self.config)
            .field("granted", &self.granted)
            .finish_non_exhaustive()
    }
}

pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Shared {
    pub(super) fn lock_tracker(&self) -> MutexGuard<'_, Tracker> {
        lock(&self.tracker)
    }

    /// Acknowledges a record by its partition's slot in the tracker.
    pub(super) fn ack(&self, slot: u32, offset: i64, generation: u64) {
        if self.closed.load(Ordering::Acquire) {
            return;
        }
        self.lock_tracker().ack_at(slot, offset, generation);
    }

    /// Releases a record by its partition's slot in the tracker.
    pub(super) fn release(&self, slot: u32, offset: i64, generation: u64) {
        if self.closed.load(Ordering::Acquire) {
            return;
        }
        if self.lock_tracker().release_at(slot, offset, generation) {
            self.counters.revoked_unsent.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Starts a revocation of `tps`: the connection stops handing their records on, and the
    /// hooks purge them from the pipeline.
    pub(super) fn begin_revoke(&self, tps: &[Tp]) {
        {
            let mut revoking = lock(&self.revoking);
            revoking.extend(tps.iter().cloned());
            self.revoking_count.store(revoking.len(), Ordering::Release);
        }
        lock(&self.stash).retain(|r| !tps.contains(&r.tp));
        self.revoke_epoch.fetch_add(1, Ordering::AcqRel);
        self.connection.wake();
        self.run_revoke_hooks(tps);
    }

    pub(super) fn run_revoke_hooks(&self, tps: &[Tp]) {
        for hook in lock(&self.revoke_hooks).iter() {
            hook(tps);
        }
    }

    /// Whether `ack`'s partition is being revoked now.
    pub(super) fn is_revoking(&self, ack: &super::Ack) -> bool {
        self.revoking_count.load(Ordering::Acquire) > 0 && ack.is_in(&lock(&self.revoking))
    }

    pub(super) fn end_revoke(&self, tps: &[Tp]) {
        let mut revoking = lock(&self.revoking);
        revoking.retain(|tp| !tps.contains(tp));
        self.revoking_count.store(revoking.len(), Ordering::Release);
    }

    pub(super) fn set_lag(&self, lags: Vec<PartitionLag>) {
        *lock(&self.lag) = lags;
    }

    pub(super) fn lag(&self) -> Vec<PartitionLag> {
        lock(&self.lag).clone()
    }
}

/// A polled message, copied out of librdkafka, not yet registered for acknowledgement.
pub(super) struct Raw {
    pub(super) tp: Tp,
    pub(super) offset: i64,
    /// The key's bytes then the value's.
    pub(super) data: Bytes,
    pub(super) key_len: Option<u32>,
    pub(super) has_payload: bool,
    pub(super) timestamp_ms: Option<i64>,
}

/// How much an [`Arena`] allocates at a time: 64 records of 512 B share one allocation.
const ARENA_CHUNK: usize = 32 * 1024;

/// Where the poll thread copies keys and payloads: consecutive slices of shared chunks, so that
/// a record costs no allocation of its own (one in about 64, for 512-byte records) and
/// dropping it costs a reference count rather than a free. A chunk is freed when the last
/// record copied into it is dropped: a record kept long keeps its chunk (at most
/// [`ARENA_CHUNK`] bytes) alive.
#[derive(Debug, Default)]
pub(super) struct Arena(BytesMut);

impl Arena {
    /// Copies `key` then `value` into one slice.
    fn copy(&mut self, key: &[u8], value: &[u8]) -> Bytes {
        let len = key.len() + value.len();
        if len == 0 {
            return Bytes::new();
        }
        if self.0.capacity() < len {
            self.0 = BytesMut::with_capacity(ARENA_CHUNK.max(len));
        }
        self.0.extend_from_slice(key);
        self.0.extend_from_slice(value);
        self.0.split().freeze()
    }
}

impl Raw {
    pub(super) fn new(m: &BorrowedMessage<'_>, topic: Arc<str>, arena: &mut Arena) -> Raw {
        let (data, key_len, has_payload) = copy_out(m, arena);
        Raw {
            tp: (topic, m.partition()),
            offset: m.offset(),
            data,
            key_len,
            has_payload,
            timestamp_ms: timestamp_of(m),
        }
    }
}

/// `m`'s key and value copied into `arena` (the key's bytes, then the value's), the key's
/// length if it has one, and whether it has a value.
pub(super) fn copy_out(m: &BorrowedMessage<'_>, arena: &mut Arena) -> (Bytes, Option<u32>, bool) {
    let (key, payload) = (m.key(), m.payload());
    (
        arena.copy(key.unwrap_or_default(), payload.unwrap_or_default()),
        // A key longer than 4 GiB cannot come from a broker (its limit is 2 GiB).
        key.map(|k| u32::try_from(k.len()).unwrap_or(u32::MAX)),
        payload.is_some(),
    )
}

/// `m`'s timestamp in milliseconds since the epoch, if it has one.
pub(super) fn timestamp_of(m: &BorrowedMessage<'_>) -> Option<i64> {
    match m.timestamp() {
        Timestamp::NotAvailable => None,
        Timestamp::CreateTime(t) | Timestamp::LogAppendTime(t) => Some(t),
    }
}

#[cfg(test)]
mod tests {
    use super::{ARENA_CHUNK, Arena};

    #[test]
    fn the_arena_hands_out_exact_copies_across_chunks() {
        let mut arena = Arena::default();
        let mut kept = Vec::new();
        for i in 0..(3 * ARENA_CHUNK / 500) {
            let key = format!("key-{i}");
            let value = vec![(i % 251) as u8; 490];
            let data = arena.copy(key.as_bytes(), &value);
            assert_eq!(data.len(), key.len() + value.len());
            kept.push((key, value, data));
        }
        // Later copies never overwrite earlier ones, in the same chunk or a new one.
        for (key, value, data) in &kept {
            assert_eq!(&data[..key.len()], key.as_bytes());
            assert_eq!(&data[key.len()..], &value[..]);
        }
        let big = vec![7u8; ARENA_CHUNK * 2];
        assert_eq!(
            arena.copy(b"", &big),
            big,
            "larger than a chunk: a chunk of its own"
        );
        assert!(arena.copy(b"", b"").is_empty());
    }
}
