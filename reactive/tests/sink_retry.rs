//! Retries and dead letters on tokio's paused clock, with a real dead-letter file.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use reactive::sink::{DeadLetters, Delivery, Failure, Retry, RetryPolicy};
use tokio::time::Instant;

fn dead_letter_file(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("reactive-dlq-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("dead.jsonl");
    let _ = std::fs::remove_file(&path);
    path
}

fn retry(name: &str, policy: RetryPolicy) -> (Retry<u64>, std::path::PathBuf) {
    let path = dead_letter_file(name);
    let dead = DeadLetters::open(&path, |x: &u64| format!("{{\"id\":{x}}}")).unwrap();
    (Retry::new(policy, dead), path)
}

#[tokio::test(start_paused = true)]
async fn retries_wait_at_least_retry_after() {
    let (retry, _) = retry(
        "after",
        RetryPolicy {
            base: Duration::from_millis(10),
            jitter: 0.0,
            ..Default::default()
        },
    );
    let calls = AtomicU32::new(0);
    let start = Instant::now();
    let outcome = retry
        .run(7, |_| {
            let n = calls.fetch_add(1, Ordering::SeqCst);
            async move {
                if n < 2 {
                    Err(Failure::Retriable {
                        reason: "429".into(),
                        retry_after: Some(Duration::from_secs(2)),
                    })
                } else {
                    Ok(())
                }
            }
        })
        .await;
    assert_eq!(outcome, Delivery::Delivered { attempts: 3 });
    assert_eq!(
        start.elapsed(),
        Duration::from_secs(4),
        "two waits of Retry-After, not of the 10 ms backoff"
    );
    assert_eq!(retry.stats().retries, 2);
}

#[tokio::test(start_paused = true)]
async fn backoff_doubles_up_to_its_cap_with_bounded_jitter() {
    let policy = RetryPolicy {
        base: Duration::from_millis(100),
        max_backoff: Duration::from_millis(500),
        jitter: 0.5,
        ..Default::default()
    };
    let (retry, _) = retry("backoff", policy);
    for (n, full) in [(1, 100), (2, 200), (3, 400), (4, 500), (9, 500), (40, 500)] {
        let d = retry.backoff(n).as_millis() as u64;
        assert!(
            d >= full / 2 && d <= full,
            "retry {n}: {d} ms outside [{}, {full}]",
            full / 2
        );
    }
}

#[tokio::test(start_paused = true)]
async fn exhausted_attempts_go_to_the_dead_letter_file_with_their_reason() {
    let (retry, path) = retry(
        "exhausted",
        RetryPolicy {
            max_attempts: 3,
            jitter: 0.0,
            ..Default::default()
        },
    );
    let outcome = retry
        .run(42, |_| async {
            Err(Failure::Retriable {
                reason: "503 stalled".into(),
                retry_after: None,
            })
        })
        .await;
    assert_eq!(
        outcome,
        Delivery::DeadLettered {
            reason: "gave up after 3 attempts: 503 stalled".into(),
            attempts: 3
        }
    );
    let line = std::fs::read_to_string(&path).unwrap();
    assert_eq!(
        line,
        "{\"reason\":\"gave up after 3 attempts: 503 stalled\",\"attempts\":3,\"item\":{\"id\":42}}\n"
    );
    assert_eq!(retry.dead_letters().written(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_fatal_failure_is_dead_lettered_at_once() {
    let (retry, path) = retry("fatal", RetryPolicy::default());
    let calls = AtomicU32::new(0);
    let outcome = retry
        .run(9, |_| {
            calls.fetch_add(1, Ordering::SeqCst);
            async {
                Err(Failure::Fatal {
                    reason: "400 invalid JSON event".into(),
                })
            }
        })
        .await;
    assert!(matches!(
        outcome,
        Delivery::DeadLettered { attempts: 1, .. }
    ));
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert!(
        std::fs::read_to_string(&path)
            .unwrap()
            .contains("400 invalid JSON event")
    );
}

#[tokio::test(start_paused = true)]
async fn the_retry_budget_caps_retries_under_a_storm() {
    // A reserve of 3 tokens and no earning: only 3 retries in all, whatever the item count.
    let policy = RetryPolicy {
        budget_ratio: 0.0,
        budget_reserve: 3.0,
        max_attempts: 10,
        jitter: 0.0,
        base: Duration::from_millis(1),
        ..Default::default()
    };
    let (retry, path) = retry("budget", policy);
    let retry = Arc::new(retry);
    let mut outcomes = Vec::new();
    for id in 0..5u64 {
        outcomes.push(
            retry
                .run(id, |_| async {
                    Err(Failure::Retriable {
                        reason: "500".into(),
                        retry_after: None,
                    })
                })
                .await,
        );
    }
    let stats = retry.stats();
    assert_eq!(stats.retries, 3);
    assert_eq!(stats.dead_lettered, 5, "every item ends somewhere");
    assert_eq!(stats.budget_exhausted, 5);
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(text.lines().count(), 5);
    assert!(text.lines().all(|l| l.contains("retry budget exhausted")));
}
