//! The delivery audit over real HTTP: duplicates, ordering violations, missing ids; the event
//! log; graceful shutdown.

mod support;

use std::time::Duration;

use http::StatusCode;
use sinkd::wire::Format;
use support::{event, metric, sinkd};

#[tokio::test]
async fn stats_count_duplicates_order_violations_and_missing_ids() {
    let (running, client) = sinkd(&["--rate-limit", "off"]).await;
    // ids 0..100 except 13 and 77; id 5 twice; key 3 goes 0,1,2 then 1 (a violation).
    let mut events: Vec<_> = (0..100)
        .filter(|id| *id != 13 && *id != 77)
        .map(|id| event(id, id % 10 + 100, id))
        .collect();
    events.push(event(5, 105, 5));
    events.extend([
        event(1000, 3, 0),
        event(1001, 3, 1),
        event(1002, 3, 2),
        event(1003, 3, 1),
    ]);
    for chunk in events.chunks(7) {
        assert!(
            client
                .write_batch(chunk, Format::Binary)
                .await
                .unwrap()
                .is_success()
        );
    }
    let stats = client.stats(Some((0, 100))).await.unwrap();
    assert_eq!(stats.received, 98 + 1 + 4);
    assert_eq!(stats.distinct_ids, 98 + 4);
    assert_eq!(stats.duplicates, 1);
    // Key 3 going back to seq 1, and the replayed id 5 (seq 5 after seq 95 on key 105).
    assert_eq!(stats.order_violations, 2);
    let missing = stats.missing.unwrap();
    assert_eq!((missing.count, missing.sample), (2, vec![13, 77]));
    let text = client.metrics().await.unwrap();
    assert_eq!(metric(&text, "sinkd_audit_duplicates_total"), Some(1.0));
    assert_eq!(
        metric(&text, "sinkd_audit_order_violations_total"),
        Some(2.0)
    );
    assert_eq!(metric(&text, "sinkd_audit_distinct_ids"), Some(102.0));
    assert_eq!(metric(&text, "sinkd_events_accepted_total"), Some(103.0));
    running.shutdown().await;
}

#[tokio::test]
async fn every_documented_metric_is_exported() {
    let (running, client) = sinkd(&[]).await;
    client.write(&event(0, 0, 0), Format::Json).await.unwrap();
    let text = client.metrics().await.unwrap();
    for name in [
        "sinkd_writes_accepted_total",
        "sinkd_events_accepted_total",
        "sinkd_requests_held_total",
        "sinkd_requests_held_now",
        "sinkd_rate_limit",
        "sinkd_tokens",
        "sinkd_paused",
        "sinkd_requests_in_flight",
        "sinkd_request_duration_seconds_bucket",
        "sinkd_audit_received_total",
        "sinkd_audit_distinct_ids",
        "sinkd_audit_duplicates_total",
        "sinkd_audit_order_violations_total",
    ] {
        assert!(
            text.lines().any(|l| l.starts_with(name)),
            "{name} missing from:\n{text}"
        );
    }
    running.shutdown().await;
}

#[tokio::test]
async fn the_event_log_holds_every_accepted_event() {
    let dir = std::env::temp_dir().join(format!("sinkd-log-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("events.jsonl");
    let _ = std::fs::remove_file(&path);
    let (running, client) = sinkd(&["--rate-limit", "off", "--log", path.to_str().unwrap()]).await;
    let events: Vec<_> = (0..50).map(|id| event(id, 1, id)).collect();
    client.write_batch(&events, Format::Json).await.unwrap();
    client
        .write(&event(50, 1, 50), Format::Binary)
        .await
        .unwrap();
    running.shutdown().await;
    let text = std::fs::read_to_string(&path).unwrap();
    let logged: Vec<sinkd::wire::Event> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(logged.len(), 51);
    assert_eq!(logged[50].id, 50);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn shutdown_finishes_held_requests_and_reports_them() {
    let (running, client) = sinkd(&["--rate-limit", "4", "--burst", "1"]).await;
    let writes: Vec<_> = (0..3)
        .map(|id| {
            let c = client.clone();
            tokio::spawn(async move {
                c.write(&event(id, 0, id), Format::Json)
                    .await
                    .unwrap()
                    .status
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let stats = running.shutdown().await;
    for w in writes {
        assert_eq!(w.await.unwrap(), StatusCode::OK);
    }
    assert_eq!(
        stats.received, 3,
        "held writes finish before the final audit"
    );
}
