//! Spill to disk: a queue that holds up to N items in memory and the overflow in bounded,
//! append-only segment files, with crash recovery.
//!
//! ```text
//! push ──▶ memory (≤ N items) ─────────────┐
//!    └───▶ log: seg-…01.log seg-…02.log ───┴──▶ pop        cursor: where the next pop reads
//! ```
//!
//! [`open`] gives a [`SpillSender`] and a [`SpillReceiver`]; [`Spill`] puts them between a
//! publisher and its subscriber. The on-disk half alone is [`SpillLog`] (synchronous).
//!
//! # Order
//! FIFO overall, with one sender. A pushed item goes to memory only when the disk holds nothing
//! and memory has room; otherwise it is appended to the log. So once anything is on disk, every
//! newer item goes to disk behind it until the disk backlog has drained, and every item in
//! memory is older than every item on disk: `pop` takes from memory first, then from the log,
//! and the spilled items come out in order, before anything pushed after them.
//!
//! # Acknowledged, consumed
//! - An item is **acknowledged into the spill** when [`SpillSender::push`] returns `Ok` after
//!   appending it to the log: its whole record has been written to the segment file with one
//!   `pwrite` (so it survives `kill -9`: the data is in the kernel's page cache), and under
//!   [`Fsync::Always`] it has been `fdatasync`ed (so it survives a power cut). Items pushed into
//!   the memory half are not durable: they are lost with the process, as in a bounded queue
//!   (use `memory = 0` to send every item through the disk). [`SpillSender::push_many`]
//!   acknowledges a batch together (one `fdatasync` for all, under `Always`).
//! - A spilled item is **consumed** when [`SpillReceiver::pop`] returns it: the cursor past its
//!   record was saved (one 32-byte `pwrite`, to the slot the previous save did not use) before
//!   `pop` returns. Saving the cursor is the commit point: a crash before it replays the record
//!   (it was never returned); a crash after it does not. So across `kill -9` and a restart,
//!   every item acknowledged into the spill and not consumed is recovered **exactly once**. The
//!   hand-off to the caller is at-most-once: an item that `pop` returned and the process died
//!   holding is not replayed (commit downstream first and pop after, if you need it).
//!   [`SpillReceiver::pop_many`] consumes a batch together: one cursor save past all of it.
//! - A push that was interrupted by the crash was not acknowledged: its record is either whole
//!   (then it is recovered: the last record, or the first records of a `push_many` batch, in
//!   order) or torn (then it is dropped).
//! - On a power cut the cursor is as durable as its fsync policy; a torn cursor slot (a 32-byte
//!   write inside one sector: not expected on disks that write sectors whole) falls back to the
//!   previous save, which can replay the one record (or batch) consumed in between.
//!
//! # Recovery
//! [`open`] deletes segments wholly before the cursor (consumed; their deletion was cut short)
//! and checks every record after it: `[len u32][crc32 u32][payload]`, the CRC over the length
//! and the payload.
//! - A **torn** last record (the file ends inside it) is reported as [`DamageKind::Torn`] and
//!   cut off, so it is never replayed and appends continue after the last whole record.
//! - **Corruption** (a checksum that fails, or an impossible length) is reported with its
//!   segment file and byte offset ([`Damage`], in the [`Recovery`] and in [`SpillStats`]) and
//!   skipped: the reader resumes at the next offset where a whole record with a valid checksum
//!   starts (a scan; nothing valid after it in the segment: skip to the next segment). The
//!   records of the damaged stretch are lost, and counted.
//!
//! # Bounded on disk
//! At most `max_bytes` of segment files. A push that would exceed it, or that the file system
//! refuses with `ENOSPC` (the partial record is cut off again), waits until the receiver frees
//! room: the source is slowed, nothing is dropped. Segments are a quarter of the budget at most
//! and deleted once read, so a reader always frees room; after `ENOSPC` a drained log also gives
//! back its head segment at once. The cursor's two slots are allocated when the log is opened,
//! so consuming never needs disk space.
//!
//! # I/O
//! File operations run in `spawn_blocking` (one task per push to disk and per pop from disk, or
//! per batch), under one lock per queue. Under [`Fsync::Every`] a background task started by
//! the first push syncs unsynced records once per period. Nothing panics on bad bytes or I/O errors: they come back as
//! [`SpillError`]s naming the operation and file.

mod codec;
mod config;
mod cursor;
mod log;
mod operator;
mod queue;
mod record;
mod stats;

pub use codec::{DecodeError, SpillCodec};
pub use config::{Damage, DamageKind, Fsync, Recovery, SpillConfig, SpillError};
pub use cursor::Position;
pub use log::{AppendError, SpillLog};
pub use operator::{Spill, SpillConnection, SpillFailure};
pub use queue::{PushError, PushManyError, SpillReceiver, SpillSender, open};
pub use stats::{SpillSnapshot, SpillStats};
