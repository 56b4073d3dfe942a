//! loadgen's Kafka commands against a real broker (tansu on loopback, from `testbroker`) and a
//! real sinkd: produce, process, scale-out across processes, and `kill -9`.

mod support;

use std::time::Duration;

use sinkd::SinkClient;
use support::{Processor, get, produce, start_sinkd, temp, wait_for};
use testbroker::broker_or_skip;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn produce_then_process_delivers_every_event_and_dead_letters_poison() {
    let broker = broker_or_skip!();
    let bootstrap = broker.bootstrap();
    let dir = temp("e2e");
    let report = dir.join("produce.json");
    let (ok, out) = produce(
        &bootstrap,
        "e2e",
        2000,
        "2s",
        &[
            "--partitions",
            "4",
            "--report",
            report.to_str().expect("utf-8 path"),
        ],
    );
    assert!(ok, "{out}");
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).expect("report")).expect("json");
    assert_eq!(r["sent"], 4000, "{r}");
    assert_eq!(r["delivered"], 4000, "{r}");
    assert!(r["latency_ms"]["p99"].as_f64().expect("p99") > 0.0, "{r}");
    // Two records that are not events.
    broker.produce("e2e", 2, |i| {
        (b"poison".to_vec(), format!("not an event {i}").into_bytes())
    });

    let sink = start_sinkd(None).await;
    let client = SinkClient::new(&sink.url()).expect("client");
    let p = Processor::start(
        &bootstrap,
        "e2e",
        &sink.url(),
        &dir,
        &[
            "--sink-mode",
            "batch",
            "--batch-size",
            "100",
            "--batch-linger",
            "5ms",
        ],
    );
    let stats = wait_for(
        "sinkd has all 4000 events",
        Duration::from_secs(60),
        async || {
            let s = client.stats(Some((0, 4000))).await.ok()?;
            (s.distinct_ids == 4000).then_some(s)
        },
    )
    .await;
    assert_eq!(stats.missing.map(|m| m.count), Some(0));
    assert_eq!(
        stats.order_violations, 0,
        "key partitioning keeps per-key order"
    );
    // Lag drains to zero once everything is committed.
    wait_for("lag reaches 0", Duration::from_secs(30), async || {
        (p.metric("kafka_consumergroup_lag")? == 0.0).then_some(())
    })
    .await;
    assert_eq!(p.metric("loadgen_poison_records_total"), Some(2.0));
    assert_eq!(p.metric("kafka_consumer_assigned_partitions"), Some(4.0));
    assert_eq!(p.metric("kafka_consumer_evictions_total"), Some(0.0));
    let pressure = get(&p.metrics, "/pressure").expect("pressure");
    assert_eq!(pressure.trim().parse::<f64>().ok(), Some(0.0));
    let out = p.terminate();
    assert!(out.contains("consumed 4002 records"), "{out}");
    let poison = std::fs::read_to_string(dir.join("poison.jsonl")).expect("poison file");
    assert_eq!(poison.lines().count(), 2, "{poison}");
    assert!(poison.contains("not an event"), "{poison}");
    sink.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processes_in_one_group_split_partitions_and_kill_9_loses_nothing() {
    let broker = broker_or_skip!();
    let bootstrap = broker.bootstrap();
    broker.create_topic("scale", 12);
    // The sink is the bottleneck (4000 events/s), so the work takes a while and the kill
    // lands in the middle of it.
    let sink = start_sinkd(Some(4000.0)).await;
    let client = SinkClient::new(&sink.url()).expect("client");
    // Commits every 30 s: what the victim wrote since its last commit is replayed.
    let common = ["--commit-interval", "30s", "--sink-workers", "8"];
    let mut procs: Vec<Processor> = (0..3)
        .map(|i| {
            Processor::start(
                &bootstrap,
                "scale",
                &sink.url(),
                &temp(&format!("scale-{i}")),
                &common,
            )
        })
        .collect();
    let assigned = |procs: &[Processor]| -> Option<Vec<f64>> {
        procs
            .iter()
            .map(|p| p.metric("kafka_consumer_assigned_partitions"))
            .collect()
    };
    let split = wait_for(
        "12 partitions split over 3 processes",
        Duration::from_secs(60),
        async || {
            let a = assigned(&procs)?;
            (a.iter().sum::<f64>() == 12.0 && a.iter().all(|&n| n > 0.0)).then_some(a)
        },
    )
    .await;
    assert_eq!(split.iter().sum::<f64>(), 12.0, "{split:?}");

    let (ok, out) = produce(&bootstrap, "scale", 5000, "4s", &[]);
    assert!(ok, "{out}");
    let total = 20_000u64;

    // Kill -9 the first process once it has written a good share.
    wait_for(
        "the victim has written 1000 events",
        Duration::from_secs(60),
        async || (procs[0].metric("kafka_consumer_acked_total")? >= 1000.0).then_some(()),
    )
    .await;
    let mut victim = procs.remove(0);
    victim.child.kill().expect("kill -9");
    let _ = victim.child.wait();

    // A replacement starts, as an orchestrator would restart the process. With Apache Kafka the
    // survivors take the partitions over by themselves once the session (6 s) times out. tansu
    // drops the lost member at that point but rebalances only when a member joins, and a join
    // before the timeout hands the dead member a share. So the replacement joins after it.
    tokio::time::sleep(Duration::from_secs(10)).await;
    procs.push(Processor::start(
        &bootstrap,
        "scale",
        &sink.url(),
        &temp("scale-replacement"),
        &common,
    ));
    // The group, replacement included, owns every partition again, and everything arrives.
    wait_for(
        "the live members own all 12 partitions",
        Duration::from_secs(90),
        async || {
            let a = assigned(&procs)?;
            (a.iter().sum::<f64>() == 12.0 && a.iter().all(|&n| n > 0.0)).then_some(())
        },
    )
    .await;
    let stats = wait_for(
        "sinkd has every event",
        Duration::from_secs(120),
        async || {
            let s = client.stats(Some((0, total))).await.ok()?;
            (s.distinct_ids == total).then_some(s)
        },
    )
    .await;
    assert_eq!(
        stats.missing.as_ref().map(|m| m.count),
        Some(0),
        "{stats:?}"
    );
    assert!(
        stats.duplicates > 0,
        "the victim's uncommitted writes are replayed and counted as duplicates: {stats:?}"
    );
    assert_eq!(stats.received, total + stats.duplicates);
    for p in procs {
        let out = p.terminate();
        assert!(out.contains("evictions 0"), "{out}");
    }
    sink.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_producer_slows_down_on_the_processors_pressure_across_processes() {
    let broker = broker_or_skip!();
    let bootstrap = broker.bootstrap();
    broker.create_topic("pressure", 4);
    // The sink takes 500 events/s; the producer offers 3000/s. The processor publishes its lag
    // over 1000 as the pressure.
    let sink = start_sinkd(Some(500.0)).await;
    let dir = temp("pressure");
    let p = Processor::start(
        &bootstrap,
        "pressure",
        &sink.url(),
        &dir,
        &["--pressure-lag", "1000", "--queue", "pull"],
    );
    wait_for(
        "the processor owns the partitions",
        Duration::from_secs(60),
        async || (p.metric("kafka_consumer_assigned_partitions")? == 4.0).then_some(()),
    )
    .await;
    let report = dir.join("produce.json");
    let (ok, out) = produce(
        &bootstrap,
        "pressure",
        3000,
        "8s",
        &[
            "--pressure-url",
            &p.metrics,
            "--report",
            report.to_str().expect("utf-8 path"),
        ],
    );
    assert!(ok, "{out}");
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).expect("report")).expect("json");
    let sent = r["sent"].as_u64().expect("sent");
    let slowest = r["signal_min_rate"].as_f64().expect("signal_min_rate");
    // Without the signal it would send 24,000; AIMD backs off as the lag passes 1000.
    assert!(slowest < 1500.0, "the rate never backed off: {r}");
    assert!(sent < 20_000, "the producer kept its full rate: {r}");
    assert_eq!(r["delivered"].as_u64(), Some(sent), "{r}");
    drop(p);
    sink.shutdown().await;
}
