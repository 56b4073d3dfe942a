//! The spill queue's behaviour on real files: order, the byte bound, reopening, torn tails and
//! flipped bytes.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use reactive::PublisherExt;
use reactive::spill::{
    self, DamageKind, Fsync, Spill, SpillConfig, SpillLog, SpillReceiver, SpillSender, SpillStats,
};

fn open_u64(config: SpillConfig) -> (SpillSender<u64>, SpillReceiver<u64>, spill::Recovery) {
    spill::open::<u64>(config).expect("open the spill")
}

async fn drain(mut rx: SpillReceiver<u64>) -> Vec<u64> {
    let mut out = Vec::new();
    // Bounded: a queue that never ends would fail the test, not hang it.
    for _ in 0..1_000_000 {
        match rx.pop().await.expect("pop") {
            Some(x) => out.push(x),
            None => return out,
        }
    }
    panic!("the queue did not end");
}

fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    v.sort();
    v
}

#[tokio::test]
async fn spilled_items_drain_before_newer_memory_items() {
    let dir = tempfile::tempdir().unwrap();
    let (mut tx, mut rx, _) = open_u64(SpillConfig::new(dir.path(), 2, 1 << 20));
    for i in 0..10 {
        tx.push(i).await.unwrap();
    }
    let stats = tx.stats().snapshot();
    assert_eq!(
        (stats.memory, stats.spilled),
        (2, 8),
        "two in memory, the rest on disk"
    );
    assert_eq!(rx.pop().await.unwrap(), Some(0));
    // Memory has room again, but the disk is not empty: item 10 must queue behind it.
    tx.push(10).await.unwrap();
    assert_eq!(tx.stats().snapshot().spilled, 9);
    let mut got = Vec::new();
    for _ in 0..10 {
        got.push(rx.pop().await.unwrap().unwrap());
    }
    assert_eq!(got, (1..=10).collect::<Vec<_>>());
    // The disk is drained: the next items go to memory.
    tx.push(11).await.unwrap();
    assert_eq!(tx.stats().snapshot().spilled, 9);
    drop(tx);
    assert_eq!(drain(rx).await, vec![11]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_budget_blocks_the_producer_and_drops_nothing() {
    let dir = tempfile::tempdir().unwrap();
    // 8 KiB of disk, segments of 2 KiB; each item is 8 + 8 bytes framed.
    let config = SpillConfig::new(dir.path(), 0, 8192).fsync(Fsync::Never);
    let (mut tx, rx, _) = spill::open::<u64>(config).unwrap();
    let stats: Arc<SpillStats> = tx.stats();
    const N: u64 = 5_000;
    let producer = tokio::spawn(async move {
        for i in 0..N {
            tx.push(i).await.unwrap();
        }
    });
    // Wait (bounded) until the producer is held by the budget.
    let mut blocked = false;
    for _ in 0..500 {
        if stats.blocked() {
            blocked = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(blocked, "the producer never waited: {:?}", stats.snapshot());
    let s = stats.snapshot();
    assert!(s.disk_bytes <= 8192, "over budget: {s:?}");
    assert!(s.pushed < N, "everything went in: the budget did not hold");
    assert!(!producer.is_finished());
    let got = drain(rx).await;
    producer.await.unwrap();
    assert_eq!(got, (0..N).collect::<Vec<_>>(), "nothing dropped, in order");
    assert!(stats.snapshot().full_waits > 0);
}

#[tokio::test]
async fn reopening_recovers_what_was_not_consumed_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let config = SpillConfig::new(dir.path(), 0, 1 << 20).segment_bytes(256);
    {
        let (mut tx, mut rx, recovery) = open_u64(config.clone());
        assert_eq!(recovery.records, 0);
        for i in 0..100 {
            tx.push(i).await.unwrap();
        }
        for i in 0..30 {
            assert_eq!(rx.pop().await.unwrap(), Some(i));
        }
        assert!(
            segments(dir.path()).len() > 1,
            "the test wants several segments"
        );
    }
    let (mut tx, rx, recovery) = open_u64(config.clone());
    assert_eq!(recovery.records, 70);
    assert!(recovery.damage.is_empty());
    tx.push(100).await.unwrap();
    drop(tx);
    assert_eq!(drain(rx).await, (30..=100).collect::<Vec<_>>());
    // Everything consumed: a third open finds nothing.
    let (_, _, recovery) = open_u64(config);
    assert_eq!(recovery.records, 0);
}

/// A log of `n` records in one segment, returning the offsets where each record starts.
fn write_log(dir: &Path, n: u64) -> (PathBuf, Vec<u64>) {
    let (mut log, _) = SpillLog::open(SpillConfig::new(dir, 0, 1 << 20), Arc::default()).unwrap();
    let mut starts = Vec::new();
    for i in 0..n {
        starts.push(log.bytes());
        let payload = vec![i as u8; 10 + i as usize];
        log.append(&payload).unwrap();
    }
    let segs = segments(dir);
    assert_eq!(segs.len(), 1);
    (segs[0].clone(), starts)
}

fn pop_all(log: &mut SpillLog) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    while let Some(r) = log.pop().unwrap() {
        out.push(r);
        assert!(out.len() < 10_000);
    }
    out
}

#[test]
fn a_torn_last_record_is_dropped_at_every_cut() {
    let n = 5u64;
    let template = tempfile::tempdir().unwrap();
    let (seg, starts) = write_log(template.path(), n);
    let bytes = fs::read(&seg).unwrap();
    let last = *starts.last().unwrap() as usize;
    for cut in last + 1..bytes.len() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(seg.file_name().unwrap());
        fs::write(&path, &bytes[..cut]).unwrap();
        let stats = Arc::new(SpillStats::default());
        let (mut log, recovery) =
            SpillLog::open(SpillConfig::new(dir.path(), 0, 1 << 20), stats.clone()).unwrap();
        assert_eq!(recovery.records, n - 1, "cut at {cut}");
        assert_eq!(recovery.damage.len(), 1, "cut at {cut}");
        let d = &recovery.damage[0];
        assert_eq!(
            (d.kind, d.offset, d.segment.clone()),
            (DamageKind::Torn, last as u64, path.clone())
        );
        assert_eq!(
            fs::metadata(&path).unwrap().len(),
            last as u64,
            "the tail is cut off"
        );
        // Appends continue after the last whole record, and nothing torn is ever replayed.
        log.append(b"after").unwrap();
        let got = pop_all(&mut log);
        let mut want: Vec<Vec<u8>> = (0..n - 1).map(|i| vec![i as u8; 10 + i as usize]).collect();
        want.push(b"after".to_vec());
        assert_eq!(got, want, "cut at {cut}");
        assert_eq!(stats.snapshot().torn, 1);
    }
}

#[test]
fn a_flipped_byte_is_reported_with_its_place_and_skipped() {
    let n = 10u64;
    let template = tempfile::tempdir().unwrap();
    let (seg, starts) = write_log(template.path(), n);
    let bytes = fs::read(&seg).unwrap();
    let bad = 5usize;
    let (from, to) = (starts[bad] as usize, starts[bad + 1] as usize);
    // Every byte of record 5: its length, its checksum, its payload.
    for i in from..to {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(seg.file_name().unwrap());
        let mut flipped = bytes.clone();
        flipped[i] ^= 0x10;
        fs::write(&path, &flipped).unwrap();
        let stats = Arc::new(SpillStats::default());
        let (mut log, recovery) =
            SpillLog::open(SpillConfig::new(dir.path(), 0, 1 << 20), stats.clone()).unwrap();
        assert_eq!(recovery.damage.len(), 1, "flip at {i}");
        let d = &recovery.damage[0];
        assert_eq!(d.kind, DamageKind::Corrupt);
        assert_eq!(d.segment, path);
        assert_eq!(d.offset, from as u64, "flip at {i}");
        assert_eq!(d.bytes, (to - from) as u64);
        assert!(d.to_string().contains(&format!("at byte {from}")), "{d}");
        let got = pop_all(&mut log);
        let want: Vec<Vec<u8>> = (0..n)
            .filter(|&k| k != bad as u64)
            .map(|k| vec![k as u8; 10 + k as usize])
            .collect();
        assert_eq!(got, want, "flip at {i}");
        assert_eq!(stats.snapshot().corrupt, 1);
    }
}

#[tokio::test]
async fn garbage_files_never_panic_and_give_no_records() {
    let dir = tempfile::tempdir().unwrap();
    let mut state = 7u64;
    let mut junk = vec![0u8; 4096];
    for b in &mut junk {
        *b = splitmix::step(&mut state) as u8;
    }
    fs::write(dir.path().join("seg-0000000000000003.log"), &junk).unwrap();
    fs::write(dir.path().join("cursor"), &junk[..64]).unwrap();
    let (tx, rx, recovery) = open_u64(SpillConfig::new(dir.path(), 0, 1 << 20));
    assert_eq!(recovery.records, 0);
    assert!(!recovery.damage.is_empty());
    drop(tx);
    assert!(drain(rx).await.is_empty());
}

#[tokio::test]
async fn an_item_over_the_largest_record_is_handed_back() {
    let dir = tempfile::tempdir().unwrap();
    let (mut tx, _rx, _) = spill::open::<Vec<u8>>(SpillConfig::new(dir.path(), 0, 8192)).unwrap();
    let err = tx.push(vec![0u8; 4096]).await.unwrap_err();
    assert_eq!(err.item.len(), 4096);
    assert!(err.to_string().contains("largest"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_spill_operator_keeps_order_between_a_source_and_a_subscriber() {
    let dir = tempfile::tempdir().unwrap();
    let (tx, rx, _) = open_u64(SpillConfig::new(dir.path(), 16, 1 << 20).segment_bytes(512));
    let stats = tx.stats();
    let spilled = Spill::new(reactive::iter(0..2_000u64), tx, rx);
    let got: Vec<u64> = spilled
        .into_stream()
        .map(|r| r.expect("no error"))
        .collect()
        .await;
    assert_eq!(got, (0..2_000).collect::<Vec<_>>());
    let s = stats.snapshot();
    assert_eq!(s.pushed, 2_000);
    assert_eq!(s.popped, 2_000);
}

#[test]
fn a_batch_pop_stops_at_a_segment_end_and_is_not_replayed() {
    let dir = tempfile::tempdir().unwrap();
    let config = SpillConfig::new(dir.path(), 0, 1 << 20).segment_bytes(256);
    let payload = |i: u64| format!("record {i:>12}").into_bytes();
    {
        let (mut log, _) = SpillLog::open(config.clone(), Arc::default()).unwrap();
        let all: Vec<Vec<u8>> = (0..50).map(payload).collect();
        let (done, result) = log.append_many(&all);
        assert_eq!(done, 50);
        assert!(result.is_ok());
        let first = log.pop_many(1000).unwrap();
        // 256-byte segments of 27-byte records: the batch ends with the first segment.
        assert_eq!(first.len(), 9);
        assert_eq!(first, (0..9).map(payload).collect::<Vec<_>>());
    }
    let (mut log, recovery) = SpillLog::open(config, Arc::default()).unwrap();
    assert_eq!(recovery.records, 41);
    assert_eq!(pop_all(&mut log), (9..50).map(payload).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_queue_is_synced_within_its_period() {
    let dir = tempfile::tempdir().unwrap();
    let config =
        SpillConfig::new(dir.path(), 0, 1 << 20).fsync(Fsync::Every(Duration::from_millis(20)));
    let (mut tx, _rx, _) = open_u64(config);
    tx.push(1).await.unwrap();
    let stats = tx.stats();
    // No more pushes or pops: only the background flusher can sync now. Bounded wait.
    let before = stats.snapshot().syncs;
    let mut synced = false;
    for _ in 0..200 {
        tokio::time::sleep(Duration::from_millis(10)).await;
        if stats.snapshot().syncs > before {
            synced = true;
            break;
        }
    }
    assert!(
        synced,
        "nothing synced the idle queue: {:?}",
        stats.snapshot()
    );
    // And it does not sync again while nothing new is written.
    let after = stats.snapshot().syncs;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(stats.snapshot().syncs, after);
}
