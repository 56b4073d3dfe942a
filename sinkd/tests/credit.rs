//! Credit across HTTP, over real loopback: a client that sends only against its grants is
//! never refused and never held, where a greedy client on the same limit gets 429s; the rate
//! holds with credit in play; bad credit headers get 400 with the header named.

mod support;

use std::time::Duration;

use http::{Method, StatusCode};
use sinkd::SinkClient;
use sinkd::credit::CreditAsk;
use sinkd::wire::Format;
use support::{event, metric, sinkd};

/// Sends `n` single writes from `workers` tasks, each only against credit: a grant from the
/// answers, or from `POST /credit` when out of it (sleeping its `wait` when it granted nothing).
async fn credited_writes(client: &SinkClient, n: u64, workers: u64) -> (u64, u64) {
    let credit = std::sync::Arc::new(reactive_free::Credit::default());
    let mut tasks = Vec::new();
    for w in 0..workers {
        let (client, credit) = (client.clone(), credit.clone());
        tasks.push(tokio::spawn(async move {
            let mut refused = 0;
            let mut polls = 0;
            for i in (w..n).step_by(workers as usize) {
                while !credit.take() {
                    polls += 1;
                    let g = client
                        .credit(CreditAsk {
                            id: 9,
                            backlog: workers,
                        })
                        .await
                        .unwrap();
                    credit.add(g.granted);
                    if g.granted == 0 {
                        tokio::time::sleep(g.wait.max(Duration::from_micros(200))).await;
                    }
                }
                let ask = CreditAsk { id: 9, backlog: 1 };
                let r = client
                    .write_credited(&event(i, i, 0), Format::Binary, ask)
                    .await
                    .unwrap();
                if !r.is_success() {
                    refused += 1;
                }
                let g = r
                    .credit
                    .expect("an answer to a credited write carries a grant");
                assert!(
                    g.used || !r.is_success(),
                    "a write sent on credit was not admitted on it"
                );
                credit.add(g.granted);
            }
            (refused, polls)
        }));
    }
    let mut total = (0, 0);
    for t in tasks {
        let (r, p) = t.await.unwrap();
        total.0 += r;
        total.1 += p;
    }
    total
}

/// The client's credit count, without the reactive crate (sinkd's tests stand alone).
mod reactive_free {
    use std::sync::atomic::{AtomicU64, Ordering};

    #[derive(Default)]
    pub struct Credit(AtomicU64);

    impl Credit {
        pub fn add(&self, n: u64) {
            self.0.fetch_add(n, Ordering::AcqRel);
        }
        pub fn take(&self) -> bool {
            self.0
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |c| c.checked_sub(1))
                .is_ok()
        }
    }
}

#[tokio::test]
async fn writes_on_credit_are_never_refused_where_greedy_ones_are() {
    let (running, client) = sinkd(&["--rate-limit", "400", "--on-limit", "reject"]).await;
    // Greedy first: 100 writes back to back, no credit: the burst (40) passes, most others 429.
    let mut greedy_refused = 0;
    for i in 0..100u64 {
        let r = client.write(&event(i, i, 0), Format::Binary).await.unwrap();
        if r.status == StatusCode::TOO_MANY_REQUESTS {
            greedy_refused += 1;
            assert!(r.credit.is_none(), "no account, no grant");
        }
    }
    assert!(
        greedy_refused > 0,
        "the greedy client was never refused: the test proves nothing"
    );
    // Now on credit: 400 writes at 400/s from 8 tasks: none refused.
    let (refused, polls) = credited_writes(&client, 400, 8).await;
    assert_eq!(refused, 0, "a write on credit was refused");
    let text = client.metrics().await.unwrap();
    assert_eq!(metric(&text, "sinkd_writes_on_credit_total"), Some(400.0));
    assert_eq!(
        metric(&text, "sinkd_credit_polls_total"),
        Some(polls as f64)
    );
    assert_eq!(
        metric(&text, "sinkd_requests_held_total").unwrap_or(0.0),
        0.0
    );
    let stats = running.shutdown().await;
    assert_eq!(stats.distinct_ids, 400);
}

#[tokio::test]
async fn credit_does_not_raise_the_rate() {
    let (_running, client) = sinkd(&[
        "--rate-limit",
        "200",
        "--burst",
        "20",
        "--on-limit",
        "reject",
    ])
    .await;
    let started = tokio::time::Instant::now();
    let (refused, _) = credited_writes(&client, 220, 4).await;
    assert_eq!(refused, 0);
    // 220 writes at 200/s with a burst of 20 take at least 1 s whatever the credit said.
    assert!(
        started.elapsed() >= Duration::from_millis(990),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn credit_headers_are_checked() {
    let (running, client) = sinkd(&["--rate-limit", "100"]).await;
    let addr = running.local_addr();
    let r = client
        .send(Method::POST, "/credit", None, Vec::new())
        .await
        .unwrap();
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(String::from_utf8_lossy(&r.body).contains("sinkd-credit-id"));
    assert!(r.credit.is_none());
    // A bad id on a write: 400 naming the header, and the write is not audited.
    let body = sinkd::wire::encode_one(&event(1, 1, 0), Format::Json);
    let r = raw_write(addr, "sinkd-credit-id", "seven", body.clone()).await;
    assert_eq!(r.0, StatusCode::BAD_REQUEST);
    assert!(r.1.contains("sinkd-credit-id"), "{}", r.1);
    let r = raw_write(addr, "sinkd-backlog", "-1", body).await;
    assert_eq!(r.0, StatusCode::BAD_REQUEST);
    assert!(r.1.contains("sinkd-backlog"), "{}", r.1);
    assert_eq!(client.stats(None).await.unwrap().received, 0);
    // And a good ask is answered at once with a grant, in the header and the body.
    let g = client
        .credit(CreditAsk { id: 1, backlog: 5 })
        .await
        .unwrap();
    assert_eq!(g.granted, 5);
    assert!(!g.per_event);
}

/// A write with one extra header, over plain hyper (the client has no way to send a bad one).
async fn raw_write(
    addr: std::net::SocketAddr,
    name: &str,
    value: &str,
    body: Vec<u8>,
) -> (StatusCode, String) {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut send, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    let req = http::Request::post("/write")
        .header("host", "127.0.0.1")
        .header("content-type", sinkd::wire::JSON)
        .header(name, value)
        .body(http_body_util::Full::new(bytes::Bytes::from(body)))
        .unwrap();
    let r = send.send_request(req).await.unwrap();
    let status = r.status();
    let body = http_body_util::BodyExt::collect(r.into_body())
        .await
        .unwrap()
        .to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test]
async fn every_write_answer_advertises_what_the_bucket_would_admit_now() {
    let (_running, client) = sinkd(&["--rate-limit", "100", "--burst", "10"]).await;
    let r = client.write(&event(1, 1, 0), Format::Binary).await.unwrap();
    assert!(r.is_success());
    // The bucket held 10; this write took one.
    assert_eq!(r.rate_limit.as_deref(), Some("\"sinkd\";r=9;t=0"));
    assert_eq!(r.rate_limit_policy.as_deref(), Some("\"sinkd\";q=100;w=1"));
    let (_running, unlimited) = sinkd(&["--rate-limit", "off"]).await;
    let r = unlimited
        .write(&event(1, 1, 0), Format::Binary)
        .await
        .unwrap();
    assert!(r.rate_limit.is_none(), "no limit, nothing to advertise");
}
