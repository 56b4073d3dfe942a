//! A consumer group under churn, against the real broker: a member stopped past its session
//! timeout, a member killed with `kill -9` and replaced, a member added and then removed. The
//! group must lose nothing; a rebalance may duplicate only what was being written, a crashed or
//! stopped member what it had not committed, and (tansu has no join barrier) what an old owner
//! writes until its next heartbeat; and no live member may hold a partition whose lag grows
//! while its commit stands still for longer than the stall threshold plus one recovery.

mod support;

use std::collections::HashMap;
use std::process::Command;
use std::time::{Duration, Instant};

use sinkd::SinkClient;
use support::{Processor, produce, start_sinkd, temp, wait_for};
use testbroker::broker_or_skip;

const TOPIC: &str = "churn";
const BACKLOG: u64 = 15_000;
const RATE: u64 = 1_000;
const PRODUCE_SECS: u64 = 60;
const COMMIT_INTERVAL_S: f64 = 1.0;
const STALL_AFTER_S: f64 = 3.0;
/// librdkafka's heartbeat.interval.ms: how long a member may go on writing a partition that
/// was given to another (tansu has no join barrier).
const HEARTBEAT_S: f64 = 3.0;
/// A rebalance on tansu: the join held 3 s, then the sync.
const REBALANCE_S: f64 = 6.0;
const WORKERS: u64 = 4;
/// Records a worker may hold (queued at it or being written): the workers' window.
const WORKER_WINDOW: u64 = 16;

fn member(bootstrap: &str, sink: &str, name: &str) -> Processor {
    Processor::start(
        bootstrap,
        TOPIC,
        sink,
        &temp(&format!("churn-{name}")),
        &[
            "--commit-interval",
            "1s",
            "--stall-after",
            "3s",
            "--queue-cap",
            "2000",
            "--sink-workers",
            "4",
            "--max-poll-interval",
            "20s",
        ],
    )
}

fn signal(p: &Processor, sig: &str) {
    let status = Command::new("kill")
        .args([sig, &p.child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success(), "kill {sig}");
}

/// Per live member, per partition: (lag, committed offset) readings, one a second.
type Lags = HashMap<(usize, i32), Vec<(f64, f64)>>;

/// Reads each answering member's per-partition lag and committed offset, and its longest
/// stall so far.
fn read(members: &[(usize, &Processor)], lags: &mut Lags, longest_stall: &mut f64) {
    for (id, p) in members {
        let Some(text) = p.metrics_text() else {
            continue; // stopped or gone
        };
        let mut now: HashMap<i32, (f64, f64)> = HashMap::new();
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let Some((key, value)) = line.rsplit_once(' ') else {
                continue;
            };
            let Ok(value) = value.parse::<f64>() else {
                continue;
            };
            let partition = key
                .split("partition=\"")
                .nth(1)
                .and_then(|rest| rest.split('"').next())
                .and_then(|p| p.parse::<i32>().ok());
            match (key.split('{').next(), partition) {
                (Some("kafka_consumergroup_lag"), Some(p)) => now.entry(p).or_default().0 = value,
                (Some("kafka_consumergroup_committed_offset"), Some(p)) => {
                    now.entry(p).or_default().1 = value;
                }
                (Some("kafka_consumer_partition_stalled_seconds"), _) => {
                    *longest_stall = longest_stall.max(value);
                }
                _ => {}
            }
        }
        for (p, reading) in now {
            lags.entry((*id, p)).or_default().push(reading);
        }
    }
}

/// The longest run of consecutive readings over which a partition's lag kept growing while
/// its committed offset did not move: held, and not making progress. (Lag that grows while
/// the commit moves is backpressure: the sink is slower than the arrivals.)
fn longest_stuck(series: &[(f64, f64)]) -> usize {
    let (mut best, mut run) = (0, 0);
    for w in series.windows(2) {
        let ((lag0, commit0), (lag1, commit1)) = (w[0], w[1]);
        run = if lag1 > lag0 && commit1 == commit0 {
            run + 1
        } else {
            0
        };
        best = best.max(run);
    }
    best
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_under_churn_loses_nothing_duplicates_little_and_never_stalls() {
    let broker = broker_or_skip!();
    let bootstrap = broker.bootstrap();
    broker.create_topic(TOPIC, 12);
    // The sink is slower than the backlog arrives, so queues are full when partitions move:
    // without the purge on revoke, each move would replay a queue.
    let sink = start_sinkd(Some(1_500.0)).await;
    let client = SinkClient::new(&sink.url()).expect("client");
    let (ok, out) = produce(&bootstrap, TOPIC, 20_000, "750ms", &[]);
    assert!(ok, "{out}");
    let p1 = member(&bootstrap, &sink.url(), "1");
    let mut p2 = member(&bootstrap, &sink.url(), "2");
    let p3 = member(&bootstrap, &sink.url(), "3");
    wait_for(
        "12 partitions split over 3 members",
        Duration::from_secs(60),
        async || {
            let a: Vec<f64> = [&p1, &p2, &p3]
                .iter()
                .map(|p| p.metric("kafka_consumer_assigned_partitions"))
                .collect::<Option<_>>()?;
            (a.iter().sum::<f64>() == 12.0 && a.iter().all(|&n| n > 0.0)).then_some(())
        },
    )
    .await;
    let producer = {
        let bootstrap = bootstrap.clone();
        std::thread::spawn(move || {
            produce(
                &bootstrap,
                TOPIC,
                RATE as u32,
                &format!("{PRODUCE_SECS}s"),
                &["--first-id", &BACKLOG.to_string(), "--seed", "2"],
            )
        })
    };

    let start = Instant::now();
    let mut lags = Lags::new();
    let mut longest_stall = 0.0f64;
    let mut p2b: Option<Processor> = None;
    let mut p4: Option<Processor> = None;
    let mut step = 0;
    // The churn, one event at a time, reading every live member each second.
    while start.elapsed() < Duration::from_secs(PRODUCE_SECS + 5) {
        let t = start.elapsed().as_secs();
        match (step, t) {
            (0, 5..) => {
                signal(&p1, "-STOP"); // past its 6 s session
                step = 1;
            }
            (1, 15..) => {
                signal(&p1, "-CONT");
                step = 2;
            }
            (2, 25..) => {
                p2.child.kill().expect("kill -9");
                let _ = p2.child.wait();
                step = 3;
            }
            (3, 33..) => {
                // Its replacement, after the session timed out (tansu rebalances on a join).
                p2b = Some(member(&bootstrap, &sink.url(), "2b"));
                step = 4;
            }
            (4, 43..) => {
                p4 = Some(member(&bootstrap, &sink.url(), "4"));
                step = 5;
            }
            (5, 53..) => {
                if let Some(p) = p4.take() {
                    p.terminate(); // a clean leave
                }
                step = 6;
            }
            _ => {}
        }
        let mut live: Vec<(usize, &Processor)> = vec![(1, &p1), (3, &p3)];
        if step < 3 {
            live.push((2, &p2));
        }
        live.extend(p2b.iter().map(|p| (4, p)));
        live.extend(p4.iter().map(|p| (5, p)));
        read(&live, &mut lags, &mut longest_stall);
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let (ok, out) = producer.join().expect("the producer thread");
    assert!(ok, "{out}");
    let produced = BACKLOG + RATE * PRODUCE_SECS;
    let stats = wait_for(
        "sinkd has every event",
        Duration::from_secs(120),
        async || {
            let s = client.stats(Some((0, produced))).await.ok()?;
            (s.distinct_ids >= produced).then_some(s)
        },
    )
    .await;
    assert_eq!(
        stats.missing.as_ref().map(|m| m.count),
        Some(0),
        "nothing lost: {stats:?}"
    );

    // What rebalances may duplicate: the writes under way at each one (reported by every
    // member still up), one worker window per rebalance, and, at each of the five membership
    // changes (the stop, the kill, the replacement, the fourth member's join and its leave),
    // what a member wrote and had not committed: one commit interval, plus what it writes
    // between a move and its next heartbeat (librdkafka's heartbeat.interval.ms, 3 s), because
    // tansu completes a join without waiting for the old owner to give the partition up.
    let survivors = [&p1, &p3].into_iter().chain(p2b.iter());
    let (mut in_flight, mut rebalances) = (0.0, 0.0);
    for p in survivors {
        in_flight += p
            .metric("kafka_consumer_revoked_in_flight_total")
            .unwrap_or(0.0);
        rebalances += p.metric("kafka_consumer_rebalances_total").unwrap_or(0.0);
    }
    let changes = 5.0;
    let per_member_rate = 1_500.0 / 3.0;
    let bound = in_flight
        + rebalances * (WORKERS * WORKER_WINDOW) as f64
        + changes * per_member_rate * (COMMIT_INTERVAL_S + HEARTBEAT_S);
    let stuck = lags.values().map(|s| longest_stuck(s)).max().unwrap_or(0);
    eprintln!(
        "churn: produced {produced}, distinct {}, duplicates {} (bound {bound:.0}: {rebalances} rebalances, {in_flight} in flight at revocations), longest stuck {stuck} s, longest stall {longest_stall} s",
        stats.distinct_ids, stats.duplicates
    );
    assert!(
        (stats.duplicates as f64) <= bound,
        "{} duplicates, more than the in-flight bound {bound:.0} ({rebalances} rebalances, {in_flight} in flight at revocations)",
        stats.duplicates
    );

    // No live member held a partition whose lag kept growing without progress for longer than
    // the stall threshold plus one recovery: the detector's ladder (resume, seek, rejoin, one
    // threshold apart) and the rebalance a rejoin takes on tansu (a join is held 3 s).
    let limit = STALL_AFTER_S * 3.0 + REBALANCE_S;
    for ((m, p), series) in &lags {
        let stuck = longest_stuck(series);
        assert!(
            stuck as f64 <= limit,
            "member {m} held partition {p} with its lag growing and no commit for {stuck} s: {series:?}"
        );
    }
    assert!(
        longest_stall <= limit,
        "a partition stayed stalled {longest_stall} s"
    );
    for p in [p1, p3].into_iter().chain(p2b) {
        let out = p.terminate();
        assert!(out.contains("evictions 0"), "{out}");
    }
    sink.shutdown().await;
}

#[test]
fn stuck_runs_need_growing_lag_and_a_still_commit() {
    let still = |lags: &[f64]| lags.iter().map(|&l| (l, 7.0)).collect::<Vec<_>>();
    assert_eq!(longest_stuck(&still(&[1.0, 2.0, 3.0, 2.0, 3.0])), 2);
    assert_eq!(longest_stuck(&still(&[5.0, 5.0, 5.0])), 0);
    assert_eq!(longest_stuck(&[]), 0);
    let moving = [(1.0, 10.0), (2.0, 20.0), (3.0, 30.0)];
    assert_eq!(longest_stuck(&moving), 0, "backpressure, not a stall");
}
