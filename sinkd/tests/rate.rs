//! Rate enforcement, stall and pause, over real HTTP on loopback.
//!
//! Wall-clock is only used for bounds that noise cannot break: a limiter can be slower than its
//! rate on a busy machine, never faster. The bucket's arithmetic is tested exactly on a fake
//! clock in `src/bucket.rs`.

mod support;

use std::time::{Duration, Instant};

use http::StatusCode;
use sinkd::wire::Format;
use support::{TOKEN, event, metric, sinkd};

#[tokio::test]
async fn reject_mode_admits_the_burst_then_answers_429_with_headers() {
    let (running, client) =
        sinkd(&["--rate-limit", "1", "--burst", "3", "--on-limit", "reject"]).await;
    let start = Instant::now();
    let mut ok = 0;
    let mut limited = None;
    for id in 0..20 {
        let reply = client.write(&event(id, 0, id), Format::Json).await.unwrap();
        match reply.status {
            StatusCode::OK => ok += 1,
            StatusCode::TOO_MANY_REQUESTS => limited = Some(reply),
            other => panic!("unexpected {other}"),
        }
    }
    let allowed = 3 + start.elapsed().as_secs_f64().ceil() as u64;
    assert!(
        ok >= 3 && ok <= allowed,
        "{ok} accepted, at most {allowed} allowed"
    );
    let limited = limited.expect("some writes must be refused");
    assert!(
        limited.retry_after.unwrap() >= Duration::from_secs(1),
        "a wait under a second rounds up"
    );
    assert_eq!(
        limited.rate_limit_policy.as_deref(),
        Some("\"sinkd\";q=1;w=1")
    );
    assert_eq!(running.shutdown().await.received, ok);
}

#[tokio::test]
async fn delay_mode_holds_writes_until_their_tokens_arrive() {
    let (running, client) = sinkd(&["--rate-limit", "20", "--burst", "1"]).await;
    let start = Instant::now();
    let writes = (0..5).map(|id| {
        let client = client.clone();
        tokio::spawn(async move {
            client
                .write(&event(id, id, 0), Format::Json)
                .await
                .unwrap()
                .status
        })
    });
    for w in writes {
        assert_eq!(w.await.unwrap(), StatusCode::OK);
    }
    // 1 from the burst, then 4 at 20/s: at least 200 ms, however fast the machine.
    assert!(
        start.elapsed() >= Duration::from_millis(190),
        "{:?}",
        start.elapsed()
    );
    let text = client.metrics().await.unwrap();
    assert!(
        metric(&text, "sinkd_requests_held_total").unwrap() >= 3.0,
        "{text}"
    );
    assert_eq!(running.shutdown().await.received, 5);
}

#[tokio::test]
async fn delay_mode_answers_503_past_max_held() {
    let (running, client) = sinkd(&["--rate-limit", "5", "--burst", "1", "--max-held", "2"]).await;
    // The first write takes the only token; the next ones are held or refused.
    assert_eq!(
        client
            .write(&event(0, 0, 0), Format::Json)
            .await
            .unwrap()
            .status,
        StatusCode::OK
    );
    let writes: Vec<_> = (1..6)
        .map(|id| {
            let client = client.clone();
            tokio::spawn(
                async move { client.write(&event(id, 0, id), Format::Json).await.unwrap() },
            )
        })
        .collect();
    let mut statuses = Vec::new();
    for w in writes {
        statuses.push(w.await.unwrap());
    }
    let refused: Vec<_> = statuses
        .iter()
        .filter(|r| r.status == StatusCode::SERVICE_UNAVAILABLE)
        .collect();
    let ok = statuses
        .iter()
        .filter(|r| r.status == StatusCode::OK)
        .count();
    assert!(ok >= 2, "the held writes complete: {statuses:?}");
    assert!(
        !refused.is_empty() && refused.len() + ok == 5,
        "{statuses:?}"
    );
    assert!(refused.iter().all(|r| r.retry_after.is_some()));
    assert_eq!(running.shutdown().await.received, 1 + ok as u64);
}

#[tokio::test]
async fn per_event_cost_admits_a_batch_larger_than_the_burst_and_pays_it_back() {
    let (running, client) = sinkd(&[
        "--rate-limit",
        "10",
        "--burst",
        "5",
        "--cost",
        "per-event",
        "--on-limit",
        "reject",
    ])
    .await;
    let batch: Vec<_> = (0..20).map(|id| event(id, 0, id)).collect();
    assert_eq!(
        client
            .write_batch(&batch, Format::Binary)
            .await
            .unwrap()
            .status,
        StatusCode::OK
    );
    let next = client.write(&event(20, 0, 20), Format::Json).await.unwrap();
    assert_eq!(next.status, StatusCode::TOO_MANY_REQUESTS);
    // 15 tokens of debt plus one at 10/s: about 1.6 s, rounded up.
    assert_eq!(next.retry_after, Some(Duration::from_secs(2)));
    assert_eq!(running.shutdown().await.received, 20);
}

#[tokio::test]
async fn per_request_cost_makes_a_batch_cost_one_write() {
    let (running, client) =
        sinkd(&["--rate-limit", "1", "--burst", "2", "--on-limit", "reject"]).await;
    for b in 0..2u64 {
        let batch: Vec<_> = (0..100).map(|i| event(b * 100 + i, i, b)).collect();
        assert_eq!(
            client
                .write_batch(&batch, Format::Json)
                .await
                .unwrap()
                .status,
            StatusCode::OK
        );
    }
    assert_eq!(running.shutdown().await.received, 200);
}

#[tokio::test]
async fn an_admin_stall_lowers_the_rate_and_its_burst_then_restores_them() {
    let (running, client) = sinkd(&[
        "--rate-limit",
        "100",
        "--burst",
        "10",
        "--on-limit",
        "reject",
        "--admin-token",
        TOKEN,
    ])
    .await;
    assert!(
        client
            .stall(1.0, Duration::from_millis(1500))
            .await
            .unwrap()
            .is_success()
    );
    let mut ok = 0;
    let mut policy = None;
    for id in 0..10 {
        let r = client.write(&event(id, 0, id), Format::Json).await.unwrap();
        if r.is_success() {
            ok += 1;
        } else {
            policy = r.rate_limit_policy;
        }
    }
    assert!(
        ok <= 2,
        "a stalled sink at 1/s with a burst of 1 accepted {ok}"
    );
    assert_eq!(
        policy.as_deref(),
        Some("\"sinkd\";q=1;w=1"),
        "the policy shows the reduced rate"
    );
    tokio::time::sleep(Duration::from_millis(1700)).await;
    let text = client.metrics().await.unwrap();
    assert_eq!(metric(&text, "sinkd_rate_limit"), Some(100.0));
    let mut after = 0;
    for id in 100..105 {
        if client
            .write(&event(id, 1, id), Format::Json)
            .await
            .unwrap()
            .is_success()
        {
            after += 1;
        }
    }
    assert!(after >= 3, "after the stall the rate is back: {after} of 5");
    running.shutdown().await;
}

#[tokio::test]
async fn a_scheduled_stall_from_flags_starts_and_ends_on_time() {
    let (running, client) = sinkd(&[
        "--rate-limit",
        "500",
        "--stall-rate",
        "7",
        "--stall-at",
        "200ms",
        "--stall-for",
        "1s",
    ])
    .await;
    let rate = || async { metric(&client.metrics().await.unwrap(), "sinkd_rate_limit").unwrap() };
    assert_eq!(rate().await, 500.0);
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(rate().await, 7.0);
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(rate().await, 500.0);
    running.shutdown().await;
}

#[tokio::test]
async fn pause_holds_writes_in_delay_mode_until_resume() {
    let (running, client) = sinkd(&["--admin-token", TOKEN]).await;
    assert!(client.pause().await.unwrap().is_success());
    let c = client.clone();
    let held =
        tokio::spawn(async move { c.write(&event(1, 1, 1), Format::Json).await.unwrap().status });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        !held.is_finished(),
        "a write must wait while the sink is paused"
    );
    assert_eq!(running.stats(None).received, 0);
    assert!(client.resume().await.unwrap().is_success());
    assert_eq!(held.await.unwrap(), StatusCode::OK);
    assert_eq!(running.shutdown().await.received, 1);
}

#[tokio::test]
async fn pause_answers_503_in_reject_mode() {
    let (running, client) = sinkd(&["--on-limit", "reject", "--admin-token", TOKEN]).await;
    client.pause().await.unwrap();
    let r = client.write(&event(1, 1, 1), Format::Json).await.unwrap();
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.retry_after, Some(Duration::from_secs(1)));
    client.resume().await.unwrap();
    assert!(
        client
            .write(&event(1, 1, 1), Format::Json)
            .await
            .unwrap()
            .is_success()
    );
    assert_eq!(running.shutdown().await.received, 1);
}

#[tokio::test]
async fn injected_failures_are_seeded_and_never_audited() {
    let mut runs = Vec::new();
    for _ in 0..2 {
        let (running, client) =
            sinkd(&["--rate-limit", "off", "--fail-rate", "0.3", "--seed", "42"]).await;
        let mut statuses = Vec::new();
        for id in 0..100 {
            statuses.push(
                client
                    .write(&event(id, 0, id), Format::Json)
                    .await
                    .unwrap()
                    .status
                    .as_u16(),
            );
        }
        let ok = statuses.iter().filter(|s| **s == 200).count() as u64;
        let failed = statuses.iter().filter(|s| **s == 500).count() as u64;
        assert_eq!(ok + failed, 100);
        assert!((15..=45).contains(&failed), "{failed} failures at 30%");
        assert_eq!(running.shutdown().await.received, ok);
        runs.push(statuses);
    }
    assert_eq!(runs[0], runs[1], "the same seed gives the same failures");
}

#[tokio::test]
async fn added_latency_delays_each_write() {
    let (running, client) = sinkd(&["--rate-limit", "off", "--latency", "50ms"]).await;
    let start = Instant::now();
    for id in 0..3 {
        client.write(&event(id, 0, id), Format::Json).await.unwrap();
    }
    assert!(start.elapsed() >= Duration::from_millis(150));
    running.shutdown().await;
}
