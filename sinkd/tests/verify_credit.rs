//! Independent black-box checks of sinkd's credit over HTTP, written from the docs of
//! `sinkd::credit`, `sinkd::client` and the README's "Credit" section only.

use std::time::{Duration, Instant};

use sinkd::config::{Cost, OnLimit};
use sinkd::credit::{CreditAsk, CreditGrant};
use sinkd::wire::{Event, Format};
use sinkd::{Config, SinkClient};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn config(rate: f64, burst: f64, cost: Cost) -> Config {
    Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        rate: Some(rate),
        burst,
        cost,
        on_limit: OnLimit::Reject,
        admin_token: Some("secret".into()),
        ..Config::default()
    }
}

/// A sinkd on loopback with `config(rate, burst, cost)`, and a client that may call its admin
/// endpoints.
async fn start(rate: f64, burst: f64, cost: Cost) -> (sinkd::Running, SinkClient) {
    let running = sinkd::start(config(rate, burst, cost)).await.unwrap();
    let client = SinkClient::new(&running.url())
        .unwrap()
        .with_admin_token("secret");
    (running, client)
}

/// `POST /credit` for account `id` with `backlog`: the grant.
async fn grant(client: &SinkClient, id: u64, backlog: u64) -> CreditGrant {
    client
        .credit(CreditAsk { id, backlog })
        .await
        .expect("POST /credit answers")
}

/// A bad-header case: the header that is bad, the headers sent, the path.
type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a str);

fn ev(id: u64) -> Event {
    Event {
        id,
        key: id % 3,
        seq: id / 3,
        ts_ns: 0,
        priority: 0,
        payload: "x".into(),
    }
}

/// Raw HTTP/1.1 so that headers the client never sends can be tried.
async fn raw(url: &str, path: &str, headers: &[(&str, &str)], body: &str) -> (u16, String) {
    let addr = url.trim_start_matches("http://").trim_end_matches('/');
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut req = format!("POST {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if !body.is_empty() {
        req.push_str("Content-Type: application/json\r\n");
    }
    req.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out))
        .await
        .expect("answer within 5 s")
        .unwrap();
    let text = String::from_utf8_lossy(&out).to_string();
    let status: u16 = text.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_round_trip_and_garbage() {
    let g = CreditGrant {
        granted: 0,
        per_event: false,
        used: false,
        wait: Duration::ZERO,
    };
    assert_eq!(g.to_header(), "n=0;per=request;used=0;wait-us=0");
    assert_eq!(CreditGrant::parse(&g.to_header()), Some(g));
    let big = CreditGrant {
        granted: u64::MAX,
        per_event: true,
        used: true,
        wait: Duration::from_micros(u64::MAX),
    };
    assert_eq!(CreditGrant::parse(&big.to_header()), Some(big));
    // the documented example
    let ex = CreditGrant::parse("n=12;per=request;used=1;wait-us=2500").unwrap();
    assert_eq!(ex.granted, 12);
    assert!(!ex.per_event);
    assert!(ex.used);
    assert_eq!(ex.wait, Duration::from_micros(2500));
    for bad in [
        "",
        "n=",
        "n=-1",
        "n=1;per=",
        "per=event;used=1",
        "n=18446744073709551616",
    ] {
        assert_eq!(CreditGrant::parse(bad), None, "{bad:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_credit_headers_get_400_naming_the_header() {
    let running = sinkd::start(config(100.0, 10.0, Cost::PerRequest))
        .await
        .unwrap();
    let url = running.url();
    let body = r#"{"id":1,"key":1,"seq":0,"ts_ns":0,"payload":"x"}"#;
    let cases: &[Case<'_>] = &[
        (
            "sinkd-credit-id",
            &[("sinkd-credit-id", "abc"), ("sinkd-backlog", "1")],
            "",
        ),
        (
            "sinkd-credit-id",
            &[("sinkd-credit-id", "-1"), ("sinkd-backlog", "1")],
            "",
        ),
        (
            "sinkd-credit-id",
            &[
                ("sinkd-credit-id", "18446744073709551616"),
                ("sinkd-backlog", "1"),
            ],
            "",
        ),
        (
            "sinkd-backlog",
            &[("sinkd-credit-id", "7"), ("sinkd-backlog", "lots")],
            "",
        ),
        (
            "sinkd-backlog",
            &[("sinkd-credit-id", "7"), ("sinkd-backlog", "-5")],
            "",
        ),
        (
            "sinkd-backlog",
            &[("sinkd-credit-id", "7"), ("sinkd-backlog", "1.5")],
            "",
        ),
        (
            "sinkd-credit-id",
            &[("sinkd-credit-id", "abc"), ("sinkd-backlog", "1")],
            body,
        ),
        (
            "sinkd-backlog",
            &[("sinkd-credit-id", "7"), ("sinkd-backlog", "x")],
            body,
        ),
    ];
    for (name, headers, body) in cases {
        let path = if body.is_empty() { "/credit" } else { "/write" };
        let (status, text) = raw(&url, path, headers, body).await;
        assert_eq!(status, 400, "{path} {headers:?}: {text}");
        assert!(
            text.to_lowercase().contains(name),
            "400 should name {name}: {text}"
        );
    }
    // POST /credit without an account at all cannot be granted anything
    let (status, text) = raw(&url, "/credit", &[("sinkd-backlog", "3")], "").await;
    assert_eq!(status, 400, "{text}");
    // a refused write is not audited
    let stats = running.shutdown().await;
    assert_eq!(stats.received, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zero_and_huge_backlogs() {
    let (running, client) = start(100.0, 10.0, Cost::PerRequest).await;
    let g = grant(&client, 1, 0).await;
    assert_eq!(g.granted, 0, "n is at most the backlog: {g:?}");
    assert_eq!(
        g.wait,
        Duration::ZERO,
        "a grant that is not short has no wait: {g:?}"
    );
    assert!(!g.per_event);
    assert!(!g.used, "POST /credit is no write");
    let g = grant(&client, 2, u64::MAX).await;
    assert!(
        g.granted >= 1 && g.granted <= 10,
        "tokens from a 10-token bucket: {g:?}"
    );
    assert!(
        g.wait > Duration::ZERO,
        "short of the backlog: a wait: {g:?}"
    );
    // wait: until half a burst (5 tokens at 100/s = 50 ms) has refilled; allow slack
    assert!(g.wait <= Duration::from_millis(60), "{g:?}");
    // the id u64::MAX is an account like any other
    let g = grant(&client, u64::MAX, 3).await;
    assert!(g.granted <= 3, "{g:?}");
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grant_is_at_most_backlog_and_account_at_most_a_burst() {
    let (running, client) = start(1.0, 8.0, Cost::PerRequest).await;
    let g = grant(&client, 9, 3).await;
    assert_eq!(g.granted, 3, "full bucket, backlog 3: {g:?}");
    assert_eq!(g.wait, Duration::ZERO, "{g:?}");
    // the account already holds 3; asking for 8 may add at most 5 (a burst held)
    let g2 = grant(&client, 9, 8).await;
    assert!(
        g2.granted <= 5,
        "account would hold more than a burst: {g2:?}"
    );
    // another account finds the bucket nearly empty: credit is taken from the bucket
    let g3 = grant(&client, 10, 8).await;
    assert!(
        g.granted + g2.granted + g3.granted <= 9,
        "more than the bucket: {g:?} {g2:?} {g3:?}"
    );
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grants_never_exceed_the_rate() {
    let (rate, burst) = (50.0, 5.0);
    let (running, client) = start(rate, burst, Cost::PerRequest).await;
    let start = Instant::now();
    let mut total = 0u64;
    let mut polls = 0;
    while start.elapsed() < Duration::from_millis(800) && polls < 2000 {
        // two accounts compete; each spends its credit at once so its account never caps it
        for id in [1u64, 2] {
            let g = client
                .credit(CreditAsk { id, backlog: 1_000 })
                .await
                .unwrap();
            total += g.granted;
            polls += 1;
            for k in 0..g.granted {
                let r = client
                    .write_credited(
                        &ev(polls * 1000 + k),
                        Format::Json,
                        CreditAsk { id, backlog: 0 },
                    )
                    .await
                    .unwrap();
                assert!(
                    r.is_success(),
                    "a write on credit was refused: {:?}",
                    r.status
                );
                assert!(
                    r.credit.map(|c| c.used).unwrap_or(false),
                    "not admitted on credit"
                );
            }
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let bound = rate * elapsed + burst + 1.0;
    assert!(
        (total as f64) <= bound,
        "granted {total} in {elapsed:.3}s > {bound}"
    );
    assert!(
        total >= burst as u64,
        "at least the full bucket is grantable: {total}"
    );
    let stats = running.shutdown().await;
    assert_eq!(stats.received, total);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sending_only_against_credit_is_never_refused() {
    let (running, client) = start(200.0, 4.0, Cost::PerRequest).await;
    let n = 40u64;
    let mut available = 0u64;
    let mut sent = 0u64;
    let mut polls = 0;
    let start = Instant::now();
    while sent < n {
        assert!(
            polls < 500 && start.elapsed() < Duration::from_secs(20),
            "no progress"
        );
        let ask = CreditAsk {
            id: 77,
            backlog: n - sent,
        };
        if available == 0 {
            let g = client.credit(ask).await.unwrap();
            polls += 1;
            available += g.granted;
            if g.granted == 0 {
                assert!(g.wait > Duration::ZERO, "short with no wait: {g:?}");
                tokio::time::sleep(g.wait.min(Duration::from_millis(200))).await;
            }
            continue;
        }
        let r = client
            .write_credited(&ev(sent), Format::Json, ask)
            .await
            .unwrap();
        assert!(
            r.is_success(),
            "write {sent} on credit refused: {}",
            r.status
        );
        let c = r
            .credit
            .expect("every answer to a request with an id carries a grant");
        assert!(c.used, "write {sent} not admitted on credit: {c:?}");
        available = available - 1 + c.granted;
        sent += 1;
    }
    let stats = running.shutdown().await;
    assert_eq!(stats.received, n);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_without_enough_credit_goes_through_admission() {
    let (running, client) = start(1.0, 2.0, Cost::PerRequest).await;
    // no credit asked first: the write goes through admission like any other (bucket full)
    let r = client
        .write_credited(&ev(0), Format::Json, CreditAsk { id: 5, backlog: 0 })
        .await
        .unwrap();
    assert!(r.is_success());
    let c = r.credit.expect("a grant on the answer");
    assert!(!c.used, "no credit was held, yet used=1: {c:?}");
    assert!(
        r.rate_limit.is_some(),
        "every answer to a write advertises RateLimit"
    );
    // drain the bucket with plain writes; a credited write with no credit is refused (reject)
    let mut refused = false;
    for i in 1..10 {
        let r = client
            .write_credited(&ev(i), Format::Json, CreditAsk { id: 6, backlog: 0 })
            .await
            .unwrap();
        if r.status.as_u16() == 429 {
            refused = true;
            assert!(!r.credit.map(|c| c.used).unwrap_or(false));
            break;
        }
    }
    assert!(refused, "writes past the rate were all admitted");
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_event_batch_bigger_than_the_burst_gathers_its_credit() {
    let (running, client) = start(200.0, 5.0, Cost::PerEvent).await;
    let batch: Vec<Event> = (0..20).map(ev).collect();
    let ask = CreditAsk { id: 3, backlog: 20 };
    let mut held = 0u64;
    let mut polls = 0;
    let start = Instant::now();
    while held < 20 {
        assert!(
            polls < 200 && start.elapsed() < Duration::from_secs(10),
            "held {held} after {polls} polls"
        );
        let g = client.credit(ask).await.unwrap();
        assert!(g.per_event, "cost per event: per=event expected: {g:?}");
        polls += 1;
        held += g.granted;
        assert!(held <= 20, "account holds more than its backlog: {held}");
        if held < 20 {
            assert!(g.wait > Duration::ZERO, "short with no wait: {g:?}");
            tokio::time::sleep(g.wait.min(Duration::from_millis(200))).await;
        }
    }
    let r = client
        .write_batch_credited(&batch, Format::Json, CreditAsk { id: 3, backlog: 0 })
        .await
        .unwrap();
    assert!(
        r.is_success(),
        "a batch on gathered credit refused: {}",
        r.status
    );
    assert!(
        r.credit.expect("grant").used,
        "the batch was not admitted on its credit"
    );
    let stats = running.shutdown().await;
    assert_eq!(stats.received, 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paused_sink_refuses_a_credited_write_and_keeps_the_credit() {
    let (running, client) = start(1.0, 3.0, Cost::PerRequest).await;
    let g = grant(&client, 11, 3).await;
    assert_eq!(g.granted, 3, "{g:?}");
    assert!(client.pause().await.unwrap().is_success());
    let r = client
        .write_credited(&ev(0), Format::Json, CreditAsk { id: 11, backlog: 3 })
        .await
        .unwrap();
    assert!(!r.is_success(), "a paused sink admitted a write");
    if let Some(c) = r.credit {
        assert!(!c.used, "credit used on a refused write: {c:?}");
    }
    assert!(client.resume().await.unwrap().is_success());
    // the bucket is empty (3 tokens went to the account, rate 1/s): three writes go only on credit
    for i in 1..=3 {
        let r = client
            .write_credited(&ev(i), Format::Json, CreditAsk { id: 11, backlog: 0 })
            .await
            .unwrap();
        assert!(
            r.is_success(),
            "write {i} after resume refused ({}): the paused write ate credit?",
            r.status
        );
        assert!(r.credit.expect("grant").used, "write {i} not on credit");
    }
    let stats = running.shutdown().await;
    assert_eq!(stats.received, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credit_answers_at_once_even_when_the_bucket_is_empty() {
    let (running, client) = start(1.0, 1.0, Cost::PerRequest).await;
    let _ = grant(&client, 1, 1).await;
    // bucket empty now; refill of 1 token takes 1 s. A held request would take ~1 s.
    let t = Instant::now();
    let g = grant(&client, 2, 1).await;
    assert_eq!(g.granted, 0, "{g:?}");
    assert!(
        g.wait > Duration::ZERO && g.wait <= Duration::from_millis(1100),
        "{g:?}"
    );
    assert!(
        t.elapsed() < Duration::from_millis(900),
        "POST /credit was held: {:?}",
        t.elapsed()
    );
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_account_holds_at_most_a_burst_or_its_backlog() {
    let (running, client) = start(1.0, 4.0, Cost::PerRequest).await;
    let g1 = grant(&client, 1, 3).await;
    assert_eq!(g1.granted, 3);
    let g2 = grant(&client, 1, 3).await;
    assert!(
        g1.granted + g2.granted <= 4,
        "account holds more than max(burst, backlog): {g1:?} {g2:?}"
    );
    let stats = running.shutdown().await;
    assert_eq!(stats.received, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_writes_carry_no_grant() {
    let (running, client) = start(100.0, 10.0, Cost::PerRequest).await;
    let r = client.write(&ev(0), Format::Json).await.unwrap();
    assert!(r.is_success());
    assert!(r.credit.is_none(), "a write without an account got a grant");
    assert!(
        r.rate_limit.is_some(),
        "every answer to a write advertises RateLimit"
    );
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_us_is_when_asking_again_is_worth_it() {
    for (backlog, half_or_backlog) in [(2u64, 2.0f64), (1000, 5.0)] {
        let (running, client) = start(100.0, 10.0, Cost::PerRequest).await;
        // empty the bucket into another account
        let _ = grant(&client, 99, 10).await;
        let g = client.credit(CreditAsk { id: 1, backlog }).await.unwrap();
        assert!(g.granted <= 1, "{g:?}");
        assert!(
            g.wait > Duration::ZERO,
            "short of the backlog, no wait: {g:?}"
        );
        let expect = half_or_backlog / 100.0;
        assert!(
            g.wait.as_secs_f64() <= expect + 0.005,
            "backlog {backlog}: wait {:?} > {expect}s (half a burst or the backlog at 100/s)",
            g.wait
        );
        tokio::time::sleep(g.wait).await;
        let again = client.credit(CreditAsk { id: 1, backlog }).await.unwrap();
        assert!(
            again.granted >= 1,
            "backlog {backlog}: asked again after wait-us, got nothing: {again:?}"
        );
        running.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_event_debt_from_a_big_batch_is_paid_back_before_credit() {
    let (rate, burst) = (100.0, 5.0);
    let (running, client) = start(rate, burst, Cost::PerEvent).await;
    let start = Instant::now();
    // admitted from a full bucket, paid back by later writes (Cost::PerEvent docs)
    let batch: Vec<Event> = (0..20).map(ev).collect();
    let r = client.write_batch(&batch, Format::Json).await.unwrap();
    assert!(r.is_success(), "{}", r.status);
    let g = grant(&client, 4, 5).await;
    assert_eq!(g.granted, 0, "credit granted from a bucket in debt: {g:?}");
    assert!(g.wait > Duration::ZERO);
    let mut total = 0;
    let mut polls = 0;
    let mut w = g.wait;
    while start.elapsed() < Duration::from_millis(500) && polls < 200 {
        tokio::time::sleep(w.max(Duration::from_millis(2))).await;
        let g = grant(&client, 4, 1000).await;
        total += g.granted;
        w = g.wait;
        polls += 1;
        // spend at once so the account never caps the grants
        if g.granted > 0 {
            let evs: Vec<Event> = (0..g.granted).map(|k| ev(1000 + polls * 100 + k)).collect();
            let r = client
                .write_batch_credited(&evs, Format::Json, CreditAsk { id: 4, backlog: 0 })
                .await
                .unwrap();
            assert!(r.is_success() && r.credit.unwrap().used, "{}", r.status);
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    let bound = rate * elapsed + 20.0 + 1.0;
    assert!(
        20.0 + total as f64 <= bound,
        "accepted {} events in {elapsed:.3}s > {bound}",
        20 + total
    );
    assert!(total >= 1, "no credit at all in 500 ms");
    running.shutdown().await;
}

/// Found by this file: wait-us ignored a bucket in debt (fixed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_us_after_a_per_event_debt_is_worth_waiting() {
    let (running, client) = start(100.0, 5.0, Cost::PerEvent).await;
    let batch: Vec<Event> = (0..20).map(ev).collect();
    assert!(
        client
            .write_batch(&batch, Format::Json)
            .await
            .unwrap()
            .is_success()
    );
    // the bucket is 15 in debt: half a burst (2.5) is there only after ~175 ms
    let g = grant(&client, 4, 5).await;
    assert_eq!(g.granted, 0);
    tokio::time::sleep(g.wait).await;
    let again = grant(&client, 4, 5).await;
    assert!(
        again.granted >= 1,
        "wait-us after a debt said to ask again in {:?}, but nothing was there: {again:?}",
        g.wait
    );
    running.shutdown().await;
}

/// Found by this file: the 1 s cap on wait-us was undocumented (now in the docs).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_us_is_half_a_burst_at_a_slow_rate() {
    let (running, client) = start(1.0, 10.0, Cost::PerRequest).await;
    let _ = grant(&client, 99, 10).await;
    let g = grant(&client, 1, 100).await;
    assert_eq!(g.granted, 0, "{g:?}");
    // half a burst (5 tokens) at 1/s is about 5 s away: the documented cap of 1 s applies
    assert!(
        g.wait >= Duration::from_millis(900) && g.wait <= Duration::from_secs(1),
        "wait-us {:?}, expected the 1 s cap (half a burst at 1/s is ~5 s away)",
        g.wait
    );
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credit_while_paused_still_answers_at_once() {
    let (running, client) = start(1.0, 2.0, Cost::PerRequest).await;
    assert!(client.pause().await.unwrap().is_success());
    let t = Instant::now();
    let _ = client.credit(CreditAsk { id: 1, backlog: 1 }).await;
    assert!(
        t.elapsed() < Duration::from_millis(900),
        "POST /credit held while paused"
    );
    // a write without credit while paused, then resume: nothing audited from the pause
    let r = client
        .write_credited(&ev(0), Format::Json, CreditAsk { id: 2, backlog: 1 })
        .await
        .unwrap();
    assert!(!r.is_success());
    assert!(client.resume().await.unwrap().is_success());
    let stats = running.shutdown().await;
    assert_eq!(stats.received, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_polls_never_overdraw() {
    let (running, client) = start(1.0, 10.0, Cost::PerRequest).await;
    let start = Instant::now();
    // one account, many polls at once: it holds at most max(burst, backlog) = 10
    let same: Vec<_> = (0..20)
        .map(|_| {
            let c = client.clone();
            tokio::spawn(async move { grant(&c, 1, 3).await.granted })
        })
        .collect();
    let mut one = 0;
    for h in same {
        one += h.await.unwrap();
    }
    assert!(
        one <= 10,
        "one account got {one} > a burst from concurrent polls"
    );
    // many accounts at once: never more than the bucket (plus its refill at 1/s)
    let many: Vec<_> = (100..140u64)
        .map(|id| {
            let c = client.clone();
            tokio::spawn(async move {
                c.credit(CreditAsk { id, backlog: 5 })
                    .await
                    .unwrap()
                    .granted
            })
        })
        .collect();
    let mut all = one;
    for h in many {
        all += h.await.unwrap();
    }
    let bound = 10.0 + start.elapsed().as_secs_f64() * 1.0 + 1.0;
    assert!((all as f64) <= bound, "granted {all} > {bound}");
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credit_in_delay_mode_admits_at_once() {
    let mut c = config(2.0, 3.0, Cost::PerRequest);
    c.on_limit = OnLimit::Delay;
    let running = sinkd::start(c).await.unwrap();
    let client = SinkClient::new(&running.url()).unwrap();
    let g = grant(&client, 1, 3).await;
    assert_eq!(g.granted, 3);
    let t = Instant::now();
    for i in 0..3 {
        let r = client
            .write_credited(&ev(i), Format::Json, CreditAsk { id: 1, backlog: 0 })
            .await
            .unwrap();
        assert!(r.is_success() && r.credit.unwrap().used);
    }
    assert!(
        t.elapsed() < Duration::from_millis(400),
        "writes on credit were held: {:?}",
        t.elapsed()
    );
    // without credit the next is held by the limiter (a lower bound the rate guarantees)
    let t = Instant::now();
    let r = client
        .write_credited(&ev(9), Format::Json, CreditAsk { id: 1, backlog: 0 })
        .await
        .unwrap();
    assert!(r.is_success());
    assert!(!r.credit.unwrap().used);
    assert!(
        t.elapsed() >= Duration::from_millis(300),
        "a write past the rate was not held: {:?}",
        t.elapsed()
    );
    running.shutdown().await;
}
