//! The Kafka source against a real broker (tansu, started on loopback by `testbroker`).

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use futures::StreamExt;
use reactive::kafka::{Ack, KafkaConfig, KafkaHandle, KafkaRecord, KafkaSource};
use reactive::{Inbox, Prefetch, Publisher};
use testbroker::{Broker, broker_or_skip};

fn config(broker: &Broker, group: &str, topic: &str) -> KafkaConfig {
    let mut c = KafkaConfig::new(&broker.bootstrap(), group, [topic]);
    c.commit_interval = Duration::from_millis(100);
    c.lag_interval = Duration::from_millis(200);
    c.session_timeout = Duration::from_secs(10);
    c.max_poll_interval = Duration::from_secs(10);
    c
}

fn record(i: u64) -> (Vec<u8>, Vec<u8>) {
    (
        format!("k{}", i % 16).into_bytes(),
        i.to_string().into_bytes(),
    )
}

/// Connects a source to a manual inbox: nothing is requested until the test asks.
fn connect(config: KafkaConfig) -> (KafkaHandle, Inbox<KafkaRecord>) {
    let source = KafkaSource::new(config);
    let handle = source.handle();
    let (subscriber, inbox) = reactive::inbox(Prefetch::manual());
    tokio::spawn(source.connect(subscriber));
    (handle, inbox)
}

async fn next(inbox: &mut Inbox<KafkaRecord>) -> KafkaRecord {
    tokio::time::timeout(Duration::from_secs(30), inbox.next())
        .await
        .expect("a record within 30 s")
        .expect("the stream goes on")
        .expect("no error")
}

/// Polls `f` until it holds, for at most 30 s.
async fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    for _ in 0..300 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("not within 30 s: {what}");
}

fn value(r: &KafkaRecord) -> u64 {
    std::str::from_utf8(r.payload().unwrap_or_default())
        .ok()
        .and_then(|s| s.parse().ok())
        .expect("a numeric payload")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetches_only_against_demand_and_commits_only_what_was_acked() {
    let broker = broker_or_skip!();
    broker.create_topic("demand", 3);
    broker.produce("demand", 3_000, record);

    let (handle, mut inbox) = connect(config(&broker, "g-demand", "demand"));
    inbox.request(100);
    let mut got = Vec::new();
    for _ in 0..100 {
        got.push(next(&mut inbox).await);
    }
    // No more demand: nothing more arrives, and the partitions are paused.
    let extra = tokio::time::timeout(Duration::from_millis(1_500), inbox.next()).await;
    assert!(extra.is_err(), "a record arrived without demand");
    let stats = handle.stats();
    assert_eq!(stats.delivered, 100, "{stats:?}");
    assert!(stats.pauses >= 1, "{stats:?}");
    assert_eq!(stats.assigned.len(), 3, "{stats:?}");
    // Nothing acked: lag is the whole topic.
    eventually("lag reads 3000", || handle.stats().total_lag() == 3_000).await;

    // Ack all but the first record of one partition: that partition commits nothing; the
    // others commit what they delivered.
    let held_partition = got[0].partition;
    let mut held = None;
    let mut per_partition: BTreeMap<i32, u64> = BTreeMap::new();
    let mut acks = Vec::new();
    for r in got {
        *per_partition.entry(r.partition).or_default() += 1;
        if held.is_none() && r.partition == held_partition {
            held = Some(r);
        } else {
            acks.push(r.ack);
        }
    }
    Ack::ack_all(acks);
    let expected_lag = 3_000 - (100 - per_partition[&held_partition]);
    eventually("lag falls by what the other partitions acked", || {
        handle.stats().total_lag() == expected_lag as i64
    })
    .await;
    let stats = handle.stats();
    assert_eq!(stats.acked, 99);
    let held_lag = stats
        .lag
        .iter()
        .find(|l| l.partition == held_partition)
        .expect("the held partition is assigned");
    assert_eq!(held_lag.committed, None, "{held_lag:?}");

    // Acking the held record releases the rest of its partition.
    held.expect("held").ack.ack();
    eventually("everything delivered is committed", || {
        handle.stats().total_lag() == 2_900
    })
    .await;
    assert!(handle.stats().commits >= 1);
    drop(inbox);
    handle.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_member_resumes_from_the_commit_and_sees_unacked_records_again() {
    let broker = broker_or_skip!();
    broker.create_topic("resume", 2);
    broker.produce("resume", 400, record);

    // First member: takes everything, acks all but values 200..210 (each partition's commit
    // stops at its first unacked record).
    let (handle, mut inbox) = connect(config(&broker, "g-resume", "resume"));
    inbox.request(400);
    let mut unacked = HashSet::new();
    let mut acks = Vec::new();
    let mut kept = Vec::new();
    for _ in 0..400 {
        let r = next(&mut inbox).await;
        if (200..210).contains(&value(&r)) {
            unacked.insert(value(&r));
            kept.push(r);
        } else {
            acks.push(r.ack);
        }
    }
    Ack::ack_all(acks);
    drop(kept); // dropped without ack: not settled (settle_on_drop is off)
    drop(inbox);
    handle.close().await;
    let first = handle.stats();
    assert_eq!(first.delivered, 400);
    assert!(first.commits >= 1, "{first:?}");

    // Second member of the same group: starts at each partition's first unacked record, so
    // every unacked value comes again (and some acked ones after it: at-least-once).
    broker.produce("resume", 100, |i| record(400 + i));
    let (handle, mut inbox) = connect(config(&broker, "g-resume", "resume"));
    inbox.request(u64::MAX >> 2);
    let mut seen = HashSet::new();
    while !(unacked.is_subset(&seen) && (400..500).all(|v| seen.contains(&v))) {
        let r = next(&mut inbox).await;
        seen.insert(value(&r));
        r.ack.ack();
    }
    assert!(
        seen.len() < 500,
        "the commit held: not everything was replayed ({} values)",
        seen.len()
    );
    drop(inbox);
    handle.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_members_split_the_partitions_and_one_takes_over_when_the_other_leaves() {
    let broker = broker_or_skip!();
    broker.create_topic("split", 6);
    broker.produce("split", 600, record);

    let (a, mut inbox_a) = connect(config(&broker, "g-split", "split"));
    let (b, inbox_b) = connect(config(&broker, "g-split", "split"));
    eventually("both members have partitions", || {
        let (sa, sb) = (a.stats(), b.stats());
        sa.assigned.len() + sb.assigned.len() == 6
            && !sa.assigned.is_empty()
            && !sb.assigned.is_empty()
    })
    .await;
    let (sa, sb) = (a.stats(), b.stats());
    assert!(
        sa.assigned.iter().all(|p| !sb.assigned.contains(p)),
        "no partition is assigned twice: {:?} {:?}",
        sa.assigned,
        sb.assigned
    );
    // b leaves cleanly; a ends up with all six.
    drop(inbox_b);
    b.close().await;
    eventually("the survivor has every partition", || {
        a.stats().assigned.len() == 6
    })
    .await;
    // At least its first assignment and the takeover (cooperative-sticky: a keeps its own
    // partitions throughout, so there may be no revocation at all).
    assert!(a.stats().rebalances >= 2, "{:?}", a.stats());
    inbox_a.request(600);
    let mut values = HashSet::new();
    while values.len() < 600 {
        let r = next(&mut inbox_a).await;
        values.insert(value(&r));
        r.ack.ack();
    }
    drop(inbox_a);
    a.close().await;
}

#[tokio::test]
async fn a_consumer_that_cannot_be_created_ends_the_stream_with_the_reason() {
    // No broker needed: librdkafka refuses the configuration before connecting.
    let config = KafkaConfig::new("127.0.0.1:1", "g-bad", ["t"]).set("session.timeout.ms", "soon");
    let (_handle, mut inbox) = connect(config);
    inbox.request(1);
    let item = tokio::time::timeout(Duration::from_secs(10), inbox.next())
        .await
        .expect("an answer within 10 s")
        .expect("a terminal signal, not a silent end");
    let error = item.expect_err("an error, not a record");
    assert!(error.to_string().contains("session.timeout.ms"), "{error}");
    assert!(inbox.next().await.is_none(), "nothing after the error");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kip_848_protocol_on_a_broker_without_it_ends_the_stream_with_the_reason() {
    let broker = broker_or_skip!();
    broker.create_topic("kip848", 1);
    let mut config = config(&broker, "g-kip848", "kip848");
    config.group_protocol = "consumer".into();
    let (_handle, mut inbox) = connect(config);
    inbox.request(1);
    let item = tokio::time::timeout(Duration::from_secs(15), inbox.next())
        .await
        .expect("an answer within 15 s, not a member that never joins")
        .expect("a terminal signal");
    let error = item.expect_err("an error, not a record");
    assert!(
        error.to_string().contains("ConsumerGroupHeartbeat"),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_settle_on_drop_a_dropped_record_counts_as_acknowledged() {
    let broker = broker_or_skip!();
    broker.create_topic("settle", 2);
    broker.produce("settle", 200, record);
    let mut c = config(&broker, "g-settle", "settle");
    c.settle_on_drop = true;
    let (handle, mut inbox) = connect(c);
    inbox.request(200);
    for _ in 0..200 {
        drop(next(&mut inbox).await); // shed on purpose: never acked
    }
    eventually("everything dropped is committed", || {
        let s = handle.stats();
        s.acked == 200 && s.total_lag() == 0 && s.lag.len() == 2
    })
    .await;
    drop(inbox);
    handle.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_paused_behind_the_source_is_found_and_recovered() {
    // A pause left over from an earlier assignment (librdkafka keeps one across a rebalance)
    // leaves a partition assigned and never fetched. The detector must see it, say so and
    // resume it.
    let broker = broker_or_skip!();
    broker.create_topic("stall", 2);
    broker.produce("stall", 200, record);
    let mut c = config(&broker, "g-stall", "stall");
    c.stall_after = Duration::from_secs(1);
    let (handle, mut inbox) = connect(c);
    inbox.request(u64::MAX >> 2);
    let mut values = HashSet::new();
    while values.len() < 200 {
        let r = next(&mut inbox).await;
        values.insert(value(&r));
        r.ack.ack();
    }
    handle.pause_behind_the_source("stall", 0);
    // Give the poll thread a round to apply it, then produce to both partitions.
    tokio::time::sleep(Duration::from_millis(300)).await;
    broker.produce("stall", 100, |i| record(200 + i));
    while values.len() < 300 {
        let r = next(&mut inbox).await;
        values.insert(value(&r));
        r.ack.ack();
    }
    let s = handle.stats();
    assert!(s.stalls >= 1, "the stall was not detected: {s:?}");
    assert!(s.stall_recoveries >= 1, "{s:?}");
    eventually("nothing stays stalled", || handle.stats().stalled == 0).await;
    drop(inbox);
    handle.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_settle_on_drop_records_purged_at_a_revocation_are_read_again() {
    // A shedding pipeline settles what it drops on purpose; what it lets go because its
    // partition moves to another member (the purge) must not be committed past, or nobody
    // writes it.
    let broker = broker_or_skip!();
    broker.create_topic("settle-revoke", 2);
    broker.produce("settle-revoke", 100, record);
    let mut c = config(&broker, "g-settle-revoke", "settle-revoke");
    c.settle_on_drop = true;
    let (a, mut inbox_a) = connect(c.clone());
    // The pipeline's queue at member A: records held, neither written nor shed.
    let held = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let purge = held.clone();
    a.on_revoke(move |revoked| {
        purge
            .lock()
            .unwrap()
            .retain(|r: &KafkaRecord| !r.ack.is_in(revoked));
    });
    inbox_a.request(100);
    let mut odd: BTreeMap<i32, HashSet<u64>> = BTreeMap::new();
    for _ in 0..100 {
        let r = next(&mut inbox_a).await;
        if value(&r) % 2 == 0 {
            r.ack.ack();
        } else {
            odd.entry(r.partition).or_default().insert(value(&r));
            held.lock().unwrap().push(r);
        }
    }
    // B joins: one partition moves to it, and A's revocation purges that partition's records.
    let (b, mut inbox_b) = connect(c);
    inbox_b.request(u64::MAX >> 2);
    let mut seen: BTreeMap<i32, HashSet<u64>> = BTreeMap::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let complete = |seen: &BTreeMap<i32, HashSet<u64>>| {
        !seen.is_empty()
            && seen
                .iter()
                .all(|(p, v)| odd.get(p).is_none_or(|o| o.is_subset(v)))
    };
    while !complete(&seen) {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let Ok(Some(Ok(r))) = tokio::time::timeout(left, inbox_b.next()).await else {
            panic!(
                "the new owner never read the purged records again: it saw {seen:?}, A held {odd:?}"
            );
        };
        seen.entry(r.partition).or_default().insert(value(&r));
        r.ack.ack();
    }
    drop((inbox_a, inbox_b));
    a.close().await;
    b.close().await;
}
