//! The crash test: a child process pushes into a spill queue (every item through the disk) and
//! pops some back, printing `@ack N` after each acknowledged push and `@pop N` after each pop; the
//! parent kills it with SIGKILL at a seeded moment, reopens the directory and drains it.
//!
//! What must hold after each kill, with `A` the acknowledged numbers, `P` the reported pops:
//! - nothing is recovered twice, and everything comes back in order;
//! - every number in `A`, not in `P`, is recovered, except at most the one the child had popped
//!   (consumed: its cursor was saved) without having printed it yet: the first such number;
//! - nothing in `P` is recovered (consumed items are not replayed);
//! - nothing else is recovered but, possibly, the one push in flight (the number after the
//!   last `@ack`) whose record was whole when the process died;
//! - every recovered record decodes to exactly what the child wrote (no garbage).
//!
//! `cargo test` runs 20 kills; `SPILL_KILLS=100 cargo test --release -p reactive --test
//! spill_crash -- --nocapture` runs 100 and prints the tally.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use reactive::spill::{self, DamageKind, Fsync, SpillConfig};

const CHILD: &str = "SPILL_CRASH_CHILD";

/// A record: the number, then filler of a size drawn from the number (up to 256 KiB, so some
/// writes span many pages and a kill can tear them), each filler byte derived from both.
fn record(n: u64) -> Vec<u8> {
    let mut s = n ^ 0x5eed;
    let size = match splitmix::step(&mut s) % 8 {
        0 => (splitmix::step(&mut s) % (256 << 10)) as usize,
        _ => (splitmix::step(&mut s) % 512) as usize,
    };
    let mut out = n.to_le_bytes().to_vec();
    out.extend((0..size).map(|i| (n as u8).wrapping_mul(31).wrapping_add(i as u8)));
    out
}

fn check_record(bytes: &[u8]) -> Result<u64, String> {
    let n = u64::from_le_bytes(
        bytes
            .get(..8)
            .and_then(|b| b.try_into().ok())
            .ok_or("a record shorter than its number")?,
    );
    if record(n) == bytes {
        Ok(n)
    } else {
        Err(format!("record {n} is not what was written"))
    }
}

fn config(dir: &Path) -> SpillConfig {
    SpillConfig::new(dir, 0, 256 << 20)
        .segment_bytes(1 << 20)
        .fsync(Fsync::Never)
}

/// The child: runs only when the parent re-executes this test binary with `SPILL_CRASH_CHILD`.
#[test]
fn spill_crash_child() {
    let Ok(dir) = std::env::var(CHILD) else {
        return;
    };
    let first: u64 = std::env::var("SPILL_CRASH_FIRST").unwrap().parse().unwrap();
    let batch: u64 = std::env::var("SPILL_CRASH_BATCH").unwrap().parse().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let (mut tx, mut rx, _) = spill::open::<Vec<u8>>(config(Path::new(&dir))).unwrap();
        let mut out = std::io::stdout().lock();
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut n = first;
        // Bounded: the parent kills it long before either bound.
        for round in 0..1_000_000u64 {
            if batch == 1 {
                tx.push(record(n)).await.unwrap();
            } else {
                tx.push_many((n..n + batch).map(record).collect())
                    .await
                    .unwrap();
            }
            for k in n..n + batch {
                writeln!(out, "@ack {k}").unwrap();
            }
            out.flush().unwrap();
            n += batch;
            if round % 3 == 0 {
                for bytes in rx.pop_many(batch as usize).await.unwrap() {
                    let popped = check_record(&bytes).unwrap();
                    writeln!(out, "@pop {popped}").unwrap();
                }
                out.flush().unwrap();
            }
            if Instant::now() > deadline {
                break;
            }
        }
    });
}

#[derive(Debug, Default)]
struct Tally {
    kills: u64,
    acknowledged: u64,
    popped_by_child: u64,
    recovered: u64,
    in_flight_recovered: u64,
    popped_unreported: u64,
    torn: u64,
}

/// One kill: start the child, let it run to a seeded number of acks (and a little more),
/// SIGKILL it, reopen, drain and check. Returns the next number to write.
fn one_kill(dir: &Path, first: u64, batch: u64, seed: &mut u64, tally: &mut Tally) -> u64 {
    let exe = std::env::current_exe().unwrap();
    let mut child = Command::new(exe)
        .args([
            "spill_crash_child",
            "--exact",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env(CHILD, dir)
        .env("SPILL_CRASH_FIRST", first.to_string())
        .env("SPILL_CRASH_BATCH", batch.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let kill_after = 1 + splitmix::step(seed) % 300;
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let (mut acked, mut popped) = (BTreeSet::new(), Vec::new());
    let deadline = Instant::now() + Duration::from_secs(20);
    let read = |line: String, acked: &mut BTreeSet<u64>, popped: &mut Vec<u64>| {
        // libtest prints `test spill_crash_child ... ` with no newline before the first line.
        let word = |tag: &str| {
            let at = line.find(tag)?;
            line[at + tag.len()..].trim().parse::<u64>().ok()
        };
        if let Some(n) = word("@ack ") {
            acked.insert(n);
        } else if let Some(n) = word("@pop ") {
            popped.push(n);
        }
    };
    while (acked.len() as u64) < kill_after && Instant::now() < deadline {
        match lines.next() {
            Some(Ok(line)) => read(line, &mut acked, &mut popped),
            _ => break,
        }
    }
    assert!(!acked.is_empty(), "the child acknowledged nothing");
    // Let it get a seeded little way into its next writes, then kill it mid-flight.
    std::thread::sleep(Duration::from_micros(splitmix::step(seed) % 2_000));
    child.kill().unwrap();
    child.wait().unwrap();
    // Lines it printed before it died count: each was printed after its ack or pop.
    for line in lines.map_while(Result::ok) {
        read(line, &mut acked, &mut popped);
    }
    let last_ack = *acked.last().unwrap();

    let (tx, mut rx, recovery) = spill::open::<Vec<u8>>(config(dir)).unwrap();
    drop(tx);
    for d in &recovery.damage {
        assert_eq!(
            d.kind,
            DamageKind::Torn,
            "a kill can only tear the tail: {d}"
        );
        tally.torn += 1;
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let recovered: Vec<u64> = rt.block_on(async {
        let mut out = Vec::new();
        while let Some(bytes) = rx.pop().await.unwrap() {
            out.push(check_record(&bytes).unwrap_or_else(|e| panic!("garbage recovered: {e}")));
            assert!(out.len() < 2_000_000);
        }
        out
    });
    drop(rx);

    // In order, and nothing twice.
    assert!(
        recovered.windows(2).all(|w| w[0] < w[1]),
        "out of order or repeated: {recovered:?}"
    );
    let got: BTreeSet<u64> = recovered.iter().copied().collect();
    let popped_set: BTreeSet<u64> = popped.iter().copied().collect();
    assert!(got.is_disjoint(&popped_set), "a consumed item was replayed");
    // Popped by the child before it died, not yet printed: at most one pop's worth, and the
    // oldest of what it owed.
    let owed: BTreeSet<u64> = acked.difference(&popped_set).copied().collect();
    let missing: Vec<u64> = owed.difference(&got).copied().collect();
    let oldest_owed: Vec<u64> = owed.iter().copied().take(missing.len()).collect();
    assert!(
        missing.len() as u64 <= batch && missing == oldest_owed,
        "acknowledged items lost: {missing:?} (oldest owed {oldest_owed:?}, batch {batch})"
    );
    // The push in flight: at most its items, the first ones of it, whole.
    let extra: Vec<u64> = got.difference(&owed).copied().collect();
    let in_flight: Vec<u64> = (last_ack + 1..).take(extra.len()).collect();
    assert!(
        extra.len() as u64 <= batch && extra == in_flight,
        "recovered what was never acknowledged: {extra:?} (last ack {last_ack}, batch {batch})"
    );
    tally.kills += 1;
    tally.acknowledged += acked.len() as u64;
    tally.popped_by_child += popped.len() as u64;
    tally.recovered += got.len() as u64;
    tally.in_flight_recovered += extra.len() as u64;
    tally.popped_unreported += missing.len() as u64;
    // The next child starts after everything this one could have written.
    last_ack + 1 + batch
}

#[test]
fn kill_nine_loses_nothing_acknowledged_and_replays_nothing_consumed() {
    if std::env::var(CHILD).is_ok() {
        return;
    }
    let kills: u64 = std::env::var("SPILL_KILLS")
        .ok()
        .and_then(|k| k.parse().ok())
        .unwrap_or(20)
        .min(10_000);
    let mut seed: u64 = std::env::var("SPILL_SEED")
        .ok()
        .and_then(|k| k.parse().ok())
        .unwrap_or(13);
    let dir = tempfile::tempdir().unwrap();
    let mut tally = Tally::default();
    let mut next = 0;
    // One directory for every kill: each restart recovers what the previous ones left.
    // Odd kills use batches: push_many of 8 (one fsync-able write round) and pop_many of 8.
    for k in 0..kills {
        let batch = if k % 2 == 0 { 1 } else { 8 };
        next = one_kill(dir.path(), next, batch, &mut seed, &mut tally);
    }
    let owed = tally.acknowledged - tally.popped_by_child;
    println!(
        "spill crash test: {} kills (seed {}), {} acknowledged, {} popped by the child, {} owed; \
         recovered {} = {} owed - {} popped but unreported + {} in-flight whole; {} torn tails dropped",
        tally.kills,
        std::env::var("SPILL_SEED").unwrap_or_else(|_| "13".into()),
        tally.acknowledged,
        tally.popped_by_child,
        owed,
        tally.recovered,
        owed,
        tally.popped_unreported,
        tally.in_flight_recovered,
        tally.torn,
    );
    assert_eq!(tally.kills, kills);
    assert_eq!(
        tally.recovered,
        owed - tally.popped_unreported + tally.in_flight_recovered
    );
}

/// A real full disk: a 256 KiB tmpfs mounted in a private mount namespace (needs root and
/// `unshare`; skipped, and said so, without them). The child fills it through the spill with a
/// budget far above the file system's size, so only `ENOSPC` can stop it; once it has, a reader
/// drains; every item must arrive, in order, and the writer must have waited on `ENOSPC`.
#[test]
fn a_full_file_system_blocks_the_writer_and_loses_nothing() {
    const MARK: &str = "SPILL_ENOSPC_CHILD";
    if let Ok(dir) = std::env::var(MARK) {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let config = SpillConfig::new(&dir, 0, 64 << 20)
                .segment_bytes(32 << 10)
                .fsync(Fsync::Never);
            let (mut tx, mut rx, _) = spill::open::<Vec<u8>>(config).unwrap();
            let stats = tx.stats();
            const N: u64 = 2_000; // 2,000 KiB through a 256 KiB file system
            let producer = tokio::spawn(async move {
                for n in 0..N {
                    let mut item = n.to_le_bytes().to_vec();
                    item.resize(1024, n as u8);
                    tx.push(item).await.unwrap();
                }
            });
            // Let the writer hit the wall before reading (bounded wait).
            for _ in 0..500 {
                if stats.snapshot().no_space > 0 {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            let mut got = 0u64;
            while let Some(item) = rx.pop().await.unwrap() {
                let n = u64::from_le_bytes(item[..8].try_into().unwrap());
                assert_eq!(n, got, "out of order");
                got += 1;
                assert!(got <= N);
            }
            producer.await.unwrap();
            assert_eq!(got, N);
            println!(
                "ENOSPC-OK no_space={} items={got}",
                stats.snapshot().no_space
            );
        });
        return;
    }
    if std::env::var(CHILD).is_ok() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let script = format!(
        "mount -t tmpfs -o size=256k tmpfs '{}' && exec '{}' a_full_file_system_blocks_the_writer_and_loses_nothing --exact --nocapture --test-threads 1",
        dir.path().display(),
        exe.display()
    );
    let out = Command::new("unshare")
        .args(["-m", "sh", "-c", &script])
        .env(MARK, dir.path())
        .output();
    let out = match out {
        Ok(o) => o,
        Err(e) => {
            eprintln!("skipped: cannot run unshare: {e}");
            return;
        }
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() && !stdout.contains("running 1 test") {
        eprintln!("skipped: no private tmpfs here (needs root): {stderr}");
        return;
    }
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let line = stdout
        .lines()
        .find_map(|l| l.find("ENOSPC-OK").map(|at| &l[at..]))
        .unwrap_or_else(|| panic!("the child did not finish: {stdout}\n{stderr}"));
    println!("{line}");
    let no_space: u64 = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix("no_space="))
        .and_then(|v| v.parse().ok())
        .unwrap();
    assert!(no_space > 0, "the file system never said ENOSPC: {line}");
}
