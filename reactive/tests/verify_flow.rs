//! Independent black-box checks of `reactive::flow` (credit, forecast, concurrency limiter),
//! written from the module docs and the README only.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use reactive::flow::credit::channels;
use reactive::flow::{
    Closed, Controller, Credits, FillForecast, Forecast, LimitConfig, Limiter, Outcome,
};
use tokio::time::{sleep, timeout};

/// Lets spawned tasks run (paused clock: a sleep only advances virtual time).
async fn settle() {
    for _ in 0..20 {
        tokio::task::yield_now().await;
    }
}

// ---------------------------------------------------------------- Credits

#[tokio::test(start_paused = true)]
async fn credits_counts_spend_and_give_back() {
    let c = Credits::new(2);
    assert_eq!(c.available(), 2);
    assert_eq!(c.granted(), 2, "granted includes the initial");
    let a = c.try_acquire(1).expect("credit is there");
    assert_eq!(c.available(), 1);
    a.spend();
    assert_eq!(c.spent(), 1);
    assert_eq!(c.available(), 1, "spent credit does not come back");
    let b = c.try_acquire(1).unwrap();
    drop(b);
    assert_eq!(c.available(), 1, "dropped unspent credit goes back");
    assert_eq!(c.spent(), 1);
    assert!(c.try_acquire(2).is_none(), "only 1 available");
    c.grant(5);
    assert_eq!(c.granted(), 7);
    assert_eq!(c.available(), 6);
    c.announce(10);
    assert_eq!(c.backlog(), 10);
    assert_eq!(c.shortfall(), 4);
    c.announce(0);
    assert_eq!(c.shortfall(), 0);
}

#[tokio::test(start_paused = true)]
async fn acquire_counts_in_backlog_from_the_call_and_a_dropped_one_takes_nothing() {
    let c = Credits::new(0);
    c.announce(2);
    let fut = c.acquire(3);
    assert_eq!(
        c.backlog(),
        5,
        "the cost counts from the call, not the first poll"
    );
    assert_eq!(c.shortfall(), 5);
    drop(fut);
    assert_eq!(c.backlog(), 2, "a dropped acquire leaves the backlog");
    // polled then dropped while waiting
    {
        let fut = c.acquire(4);
        assert!(timeout(Duration::from_millis(10), fut).await.is_err());
    }
    assert_eq!(c.backlog(), 2);
    c.grant(4);
    assert_eq!(c.available(), 4, "a dropped waiting acquire took credit");
    let got = c.acquire(4).await.unwrap();
    assert_eq!(c.backlog(), 2, "a satisfied acquire leaves the backlog");
    got.spend();
    assert_eq!(c.spent(), 4);
}

#[tokio::test(start_paused = true)]
async fn acquires_are_first_come_first_served_and_cancellation_from_another_task() {
    let c = Arc::new(Credits::new(0));
    let order = Arc::new(std::sync::Mutex::new(Vec::new()));
    let spawn = |name: &'static str, cost: u64| {
        let c = c.clone();
        let order = order.clone();
        tokio::spawn(async move {
            let credit = c.acquire(cost).await.unwrap();
            order.lock().unwrap().push(name);
            credit.spend();
        })
    };
    let big = spawn("big", 5);
    settle().await;
    let cancelled = spawn("cancelled", 2);
    settle().await;
    let small = spawn("small", 1);
    settle().await;
    assert_eq!(c.backlog(), 8);
    // a try_acquire may not jump the queue
    c.grant(1);
    settle().await;
    assert!(
        c.try_acquire(1).is_none(),
        "try_acquire jumped waiting acquires"
    );
    assert!(
        order.lock().unwrap().is_empty(),
        "a later small acquire overtook the big one"
    );
    cancelled.abort();
    let _ = cancelled.await;
    assert_eq!(
        c.backlog(),
        6,
        "the cancelled acquire's cost is still in the backlog"
    );
    c.grant(4);
    settle().await;
    assert_eq!(*order.lock().unwrap(), vec!["big"]);
    c.grant(1);
    settle().await;
    assert_eq!(
        *order.lock().unwrap(),
        vec!["big", "small"],
        "the cancelled acquire held the queue"
    );
    big.await.unwrap();
    small.await.unwrap();
    assert_eq!(c.spent(), 6);
    assert_eq!(c.available(), 0);
    assert_eq!(c.backlog(), 0);
}

#[tokio::test(start_paused = true)]
async fn close_fails_waiting_and_later_acquires() {
    let c = Arc::new(Credits::new(0));
    let w = {
        let c = c.clone();
        tokio::spawn(async move { c.acquire(1).await.map(|x| x.spend()) })
    };
    settle().await;
    c.close();
    let r = timeout(Duration::from_secs(1), w)
        .await
        .expect("a waiting acquire hangs after close")
        .unwrap();
    assert_eq!(r, Err(Closed));
    assert!(matches!(c.acquire(1).await, Err(Closed)));
}

#[tokio::test(start_paused = true)]
async fn huge_grants_and_costs_do_not_panic_or_mislead() {
    let c = Credits::new(0);
    c.announce(u64::MAX);
    assert_eq!(c.backlog(), u64::MAX);
    assert_eq!(c.shortfall(), u64::MAX);
    let fut = c.acquire(10);
    // backlog saturates rather than wrapping
    assert!(c.backlog() >= 10, "backlog wrapped: {}", c.backlog());
    drop(fut);
    c.grant(1 << 20);
    assert_eq!(c.available(), 1 << 20);
    let x = c.acquire(1 << 20).await.unwrap();
    x.spend();
    assert_eq!(c.available(), 0);
}

// ---------------------------------------------------------------- channels

#[tokio::test(start_paused = true)]
async fn channels_bound_order_and_exactly_once() {
    let (n, exclusive, floating) = (3usize, 2usize, 3usize);
    let (senders, mut rx) = channels::<(usize, u32)>(n, exclusive, floating);
    assert_eq!(rx.capacity(), n * exclusive + floating);
    assert_eq!(rx.pool(), floating);
    let per = 60u32;
    let mut tasks = Vec::new();
    for s in senders {
        tasks.push(tokio::spawn(async move {
            let ch = s.channel();
            s.announce_backlog(per as u64);
            for i in 0..per {
                s.send((ch, i)).await.map_err(|_| "receiver gone").unwrap();
                if ch == 2 && i % 7 == 0 {
                    sleep(Duration::from_millis(3)).await;
                }
            }
        }));
    }
    let mut next: HashMap<usize, u32> = HashMap::new();
    let mut got = 0;
    while let Some((ch, (ch2, i))) = timeout(Duration::from_secs(60), rx.recv())
        .await
        .expect("stuck")
    {
        assert!(
            rx.len() <= rx.capacity(),
            "held {} > {}",
            rx.len(),
            rx.capacity()
        );
        assert_eq!(ch, ch2, "item reported on the wrong channel");
        let e = next.entry(ch).or_default();
        assert_eq!(i, *e, "channel {ch}: out of order or duplicated");
        *e += 1;
        got += 1;
        if got % 5 == 0 {
            sleep(Duration::from_millis(1)).await; // a slow receiver
        }
        assert!(rx.len() <= rx.capacity());
    }
    assert_eq!(got, n as u32 * per);
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(
        rx.pool(),
        floating,
        "floating buffers did not all come back"
    );
}

#[tokio::test(start_paused = true)]
async fn the_receiver_never_holds_more_than_capacity_when_it_does_not_read() {
    let (senders, rx) = channels::<u32>(2, 1, 2);
    let mut tasks = Vec::new();
    for s in senders {
        tasks.push(tokio::spawn(async move {
            s.announce_backlog(100);
            for i in 0..100 {
                if s.send(i).await.is_err() {
                    return;
                }
            }
        }));
    }
    sleep(Duration::from_secs(1)).await;
    assert_eq!(
        rx.len(),
        rx.capacity(),
        "senders should fill exactly to capacity"
    );
    assert_eq!(rx.capacity(), 4);
    assert_eq!(rx.pool(), 0);
    drop(rx);
    for t in tasks {
        timeout(Duration::from_secs(1), t)
            .await
            .expect("a waiting send did not fail when the receiver went")
            .unwrap();
    }
}

#[tokio::test(start_paused = true)]
async fn a_quiet_channel_is_not_stuck_behind_a_flood() {
    let (mut senders, mut rx) = channels::<&'static str>(2, 1, 4);
    let quiet = senders.pop().unwrap();
    let flood = senders.pop().unwrap();
    let f = tokio::spawn(async move {
        flood.announce_backlog(1_000_000);
        loop {
            if flood.send("flood").await.is_err() {
                break;
            }
        }
    });
    sleep(Duration::from_millis(10)).await;
    // nobody reads; the flood holds every floating buffer, yet the quiet channel can send
    timeout(Duration::from_millis(100), quiet.send("quiet"))
        .await
        .expect("the quiet channel was stuck behind the flood")
        .unwrap();
    // and it keeps making progress as the receiver reads
    let mut seen_quiet = 0;
    for _ in 0..200 {
        let (ch, item) = rx.recv().await.unwrap();
        if item == "quiet" {
            assert_eq!(ch, quiet.channel());
            seen_quiet += 1;
            if seen_quiet == 3 {
                break;
            }
            let q = &quiet;
            timeout(Duration::from_millis(100), q.send("quiet"))
                .await
                .expect("quiet stuck")
                .unwrap();
        }
    }
    assert_eq!(seen_quiet, 3);
    drop(rx);
    timeout(Duration::from_secs(1), f).await.unwrap().unwrap();
}

#[tokio::test(start_paused = true)]
async fn dropped_receiver_gives_the_item_back_at_once() {
    let (senders, rx) = channels::<String>(1, 1, 0);
    drop(rx);
    let r = timeout(Duration::from_millis(10), senders[0].send("a".into()))
        .await
        .expect("send waited");
    assert_eq!(r, Err("a".to_string()));
}

#[tokio::test(start_paused = true)]
async fn dropped_senders_end_the_receiver_after_the_queued_items() {
    let (senders, mut rx) = channels::<u8>(2, 2, 0);
    senders[0].send(1).await.unwrap();
    senders[1].send(2).await.unwrap();
    senders[0].send(3).await.unwrap();
    drop(senders);
    let mut got = Vec::new();
    while let Some((_, x)) = timeout(Duration::from_secs(1), rx.recv())
        .await
        .expect("recv hangs")
    {
        got.push(x);
    }
    assert_eq!(got, vec![1, 2, 3], "in send order");
    assert!(rx.is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_send_sends_nothing_and_loses_no_credit() {
    let (mut senders, mut rx) = channels::<u32>(1, 1, 0);
    let s = Arc::new(senders.pop().unwrap());
    s.send(0).await.unwrap(); // the one exclusive buffer is now full
    let waiting = {
        let s = s.clone();
        tokio::spawn(async move { s.send(99).await })
    };
    settle().await;
    assert!(!waiting.is_finished());
    waiting.abort();
    let _ = waiting.await;
    assert_eq!(rx.recv().await.unwrap().1, 0);
    // the buffer freed goes to the next send, the cancelled item never arrives
    timeout(Duration::from_millis(10), s.send(1))
        .await
        .expect("credit lost to the cancelled send")
        .unwrap();
    assert_eq!(rx.recv().await.unwrap().1, 1);
    assert!(rx.is_empty());
    assert_eq!(
        s.credits().backlog(),
        0,
        "the cancelled send's cost stayed in the backlog"
    );
}

#[tokio::test(start_paused = true)]
async fn floating_only_channels_all_make_progress() {
    // no exclusive buffers: everything goes through the one floating buffer
    let (senders, mut rx) = channels::<(usize, u32)>(3, 0, 1);
    assert_eq!(rx.capacity(), 1);
    let mut tasks = Vec::new();
    for s in senders {
        tasks.push(tokio::spawn(async move {
            for i in 0..10 {
                s.send((s.channel(), i)).await.map_err(|_| ()).unwrap();
            }
        }));
    }
    let mut count = [0u32; 3];
    for _ in 0..30 {
        let (ch, (_, i)) = timeout(Duration::from_secs(5), rx.recv())
            .await
            .expect("stuck")
            .unwrap();
        assert!(rx.len() <= 1);
        assert_eq!(i, count[ch]);
        count[ch] += 1;
    }
    assert_eq!(count, [10, 10, 10]);
    for t in tasks {
        t.await.unwrap();
    }
}

// ---------------------------------------------------------------- FillForecast

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

#[test]
fn forecast_needs_three_samples_and_a_quarter_window() {
    let mut f = FillForecast::new(1000, secs(8.0));
    assert_eq!(f.observe(secs(0.0), 0), Forecast::Steady);
    assert_eq!(
        f.observe(secs(1.0), 300),
        Forecast::Steady,
        "two samples give no verdict"
    );
    // three samples but spanning less than a quarter of a fresh window
    let mut g = FillForecast::new(1000, secs(8.0));
    g.observe(secs(0.0), 0);
    g.observe(secs(0.5), 100);
    assert_eq!(
        g.observe(secs(1.9), 400),
        Forecast::Steady,
        "span 1.9 s < 2 s: no verdict"
    );
    assert!(matches!(
        g.observe(secs(2.0), 420),
        Forecast::Filling { .. }
    ));
}

#[test]
fn forecast_known_ramp() {
    let mut f = FillForecast::new(1000, secs(8.0));
    let mut last = Forecast::Steady;
    for k in 0..=8 {
        let t = k as f64 * 0.5;
        last = f.observe(secs(t), (100.0 * t) as u64);
    }
    // depth 400 at t = 4 s, climbing 100/s: full in 6 s
    match last {
        Forecast::Filling { eta, rate } => {
            assert!((rate - 100.0).abs() < 1.0, "rate {rate}");
            assert!((eta.as_secs_f64() - 6.0).abs() < 0.1, "eta {eta:?}");
        }
        other => panic!("expected Filling, got {other:?}"),
    }
}

#[test]
fn forecast_noise_around_a_level_is_steady() {
    let mut f = FillForecast::new(10_000, secs(2.0));
    let mut x: u64 = 12345;
    for k in 0..200 {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let noise = (x >> 33) % 150; // ±0.75% of capacity
        let depth = 5_000 - 75 + noise;
        let r = f.observe(secs(k as f64 * 0.25), depth);
        assert!(
            !matches!(r, Forecast::Filling { .. } | Forecast::Full),
            "sample {k}: noise read as {r:?}"
        );
    }
}

#[test]
fn forecast_falling_full_and_forgetting() {
    let mut f = FillForecast::new(1000, secs(4.0));
    let mut r = Forecast::Steady;
    for k in 0..10 {
        r = f.observe(secs(k as f64 * 0.5), 900 - 80 * k);
    }
    assert_eq!(r, Forecast::Draining);
    assert_eq!(f.observe(secs(5.0), 1000), Forecast::Full);
    assert_eq!(
        f.observe(secs(5.1), 5000),
        Forecast::Full,
        "over capacity is full"
    );

    // a climb, then a long flat stretch: the old climb leaves the window
    let mut g = FillForecast::new(1000, secs(4.0));
    for k in 0..8 {
        g.observe(secs(k as f64 * 0.5), 100 * k);
    }
    let mut r = Forecast::Full;
    for k in 0..20 {
        r = g.observe(secs(4.0 + k as f64 * 0.5), 700);
    }
    assert_eq!(
        r,
        Forecast::Steady,
        "an old climb is remembered past the window"
    );
}

#[test]
fn forecast_min_rise_raises_the_noise_floor() {
    let mut f = FillForecast::new(1000, secs(4.0)).min_rise(0.5);
    let mut r = Forecast::Full;
    for k in 0..9 {
        r = f.observe(secs(k as f64 * 0.5), 100 + 30 * k); // +240 over the window: 24%
    }
    assert_eq!(r, Forecast::Steady, "a 24% climb under a 50% floor");
}

#[test]
fn forecast_time_going_backwards_or_standing_still() {
    let mut f = FillForecast::new(1000, secs(4.0));
    for k in 0..6 {
        f.observe(secs(10.0 + k as f64 * 0.5), 100 * k);
    }
    // a sample from the past: no panic, no nonsense
    let r = f.observe(secs(1.0), 50);
    if let Forecast::Filling { eta, rate } = r {
        assert!(rate.is_finite() && rate > 0.0);
        assert!(eta < Duration::from_secs(3600));
    }
    // samples all at one instant: no slope, no NaN
    let mut g = FillForecast::new(1000, secs(4.0));
    for d in [10, 500, 900, 20] {
        let r = g.observe(secs(3.0), d);
        assert!(
            !matches!(r, Forecast::Filling { .. } | Forecast::Draining),
            "{r:?} from one instant"
        );
    }
    // forward again: it recovers a sane verdict
    let mut r = Forecast::Steady;
    for k in 0..8 {
        r = f.observe(secs(20.0 + k as f64 * 0.5), 100 + 100 * k);
    }
    match r {
        Forecast::Filling { eta, rate } => {
            assert!((rate - 200.0).abs() < 5.0, "rate {rate}");
            assert!(eta.as_secs_f64() < 2.0, "{eta:?}");
        }
        other => panic!("after time came back: {other:?}"),
    }
}

#[test]
fn forecast_zero_capacity_does_not_panic() {
    let mut f = FillForecast::new(0, secs(1.0));
    for k in 0..5 {
        let _ = f.observe(secs(k as f64), 0);
    }
}

// ---------------------------------------------------------------- Limiter

fn cfg(controller: Controller, max: usize, initial: usize) -> LimitConfig {
    let mut c = LimitConfig::new(controller, max);
    c.initial = initial;
    c
}

#[tokio::test(start_paused = true)]
async fn limiter_initial_is_clamped_and_max_at_least_one() {
    for ctl in [Controller::Arc, Controller::Adaptive] {
        assert_eq!(Limiter::new(cfg(ctl, 4, 0)).readings().limit, 1);
        assert_eq!(Limiter::new(cfg(ctl, 4, 100)).readings().limit, 4);
        let l = Limiter::new(LimitConfig::new(ctl, 0));
        assert_eq!(l.readings().limit, 1);
        let p = l.try_acquire().expect("one permit");
        assert!(l.try_acquire().is_none());
        drop(p);
    }
}

#[tokio::test(start_paused = true)]
async fn permits_are_released_on_drop_and_on_report() {
    let l = Limiter::new(cfg(Controller::Adaptive, 3, 3));
    let a = l.try_acquire().unwrap();
    let b = l.try_acquire().unwrap();
    let c = l.try_acquire().unwrap();
    assert!(l.try_acquire().is_none());
    assert_eq!(l.readings().in_flight, 3);
    drop(a);
    assert_eq!(l.readings().in_flight, 2);
    let d = l.try_acquire().expect("a dropped permit was not released");
    b.report(Outcome::Ignored);
    assert_eq!(l.readings().in_flight, 2);
    assert_eq!(l.readings().reported, 0, "ignored is not counted");
    c.report(Outcome::Backpressure);
    assert_eq!(l.readings().backpressure, 1);
    assert_eq!(l.readings().reported, 1);
    drop(d);
    assert_eq!(l.readings().in_flight, 0);
    // a permit dropped in a panicking task is released too
    let l2 = l.clone();
    let h = tokio::spawn(async move {
        let _p = l2.acquire().await;
        panic!("attempt panicked");
    });
    assert!(h.await.is_err());
    assert_eq!(
        l.readings().in_flight,
        0,
        "a panicking attempt kept its permit"
    );
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_acquire_holds_nothing_and_does_not_eat_a_wakeup() {
    let l = Limiter::new(cfg(Controller::Adaptive, 1, 1));
    let held = l.acquire().await;
    let spawn_waiter = |l: Limiter| tokio::spawn(async move { l.acquire().await });
    let a = spawn_waiter(l.clone());
    settle().await;
    let b = spawn_waiter(l.clone());
    settle().await;
    a.abort();
    let _ = a.await;
    assert_eq!(l.readings().in_flight, 1);
    drop(held);
    let p = timeout(Duration::from_secs(1), b)
        .await
        .expect("the live waiter was never woken")
        .unwrap();
    assert_eq!(l.readings().in_flight, 1);
    drop(p);
    assert_eq!(l.readings().in_flight, 0);

    // cancelled after being woken, before being polled again
    let held = l.acquire().await;
    let a = spawn_waiter(l.clone());
    let b = spawn_waiter(l.clone());
    settle().await;
    drop(held); // wakes one of them
    a.abort(); // which may be the one woken
    let _ = a.await;
    settle().await;
    let woke_b = timeout(Duration::from_secs(1), b).await;
    assert!(woke_b.is_ok(), "a release was lost to an aborted waiter");
    drop(woke_b);
    assert_eq!(l.readings().in_flight, 0);
}

async fn run_load(
    l: Limiter,
    tasks: usize,
    attempts: usize,
    rtt: impl Fn(usize) -> (Duration, Outcome) + Send + Sync + 'static,
) -> usize {
    let rtt = Arc::new(rtt);
    let out = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let mut hs = Vec::new();
    for t in 0..tasks {
        let (l, rtt, out, peak) = (l.clone(), rtt.clone(), out.clone(), peak.clone());
        hs.push(tokio::spawn(async move {
            for i in 0..attempts {
                let p = l.acquire().await;
                let now = out.fetch_add(1, Ordering::SeqCst) + 1;
                peak.fetch_max(now, Ordering::SeqCst);
                let r = l.readings();
                // current-thread runtime: nothing ran between the grant and this reading
                assert!(
                    r.in_flight <= r.limit,
                    "a permit handed out at or past the limit: {r:?}"
                );
                let (d, o) = rtt(t * attempts + i);
                sleep(d).await;
                out.fetch_sub(1, Ordering::SeqCst);
                p.report(o);
            }
        }));
    }
    for h in hs {
        h.await.unwrap();
    }
    peak.load(Ordering::SeqCst)
}

#[tokio::test(start_paused = true)]
async fn limiter_never_exceeds_max_and_grows_on_a_fast_sink() {
    for ctl in [Controller::Arc, Controller::Adaptive] {
        let max = 6;
        let l = Limiter::new(LimitConfig::new(ctl, max));
        let peak = run_load(l.clone(), 20, 60, |_| {
            (Duration::from_millis(10), Outcome::Success)
        })
        .await;
        let r = l.readings();
        assert!(peak <= max, "{ctl:?}: {peak} permits out, max {max}");
        assert!(r.limit >= 1 && r.limit <= max, "{ctl:?}: {r:?}");
        assert!(
            r.limit > 1 && r.increases > 0,
            "{ctl:?}: a steady fast sink never grew the limit: {r:?}"
        );
        assert_eq!(r.in_flight, 0);
        assert_eq!(r.reported, 20 * 60);
    }
}

#[tokio::test(start_paused = true)]
async fn backpressure_brings_the_limit_down_but_not_below_one() {
    for ctl in [Controller::Arc, Controller::Adaptive] {
        let l = Limiter::new(cfg(ctl, 16, 16));
        let peak = run_load(l.clone(), 32, 40, |_| {
            (Duration::from_millis(5), Outcome::Backpressure)
        })
        .await;
        let r = l.readings();
        assert!(peak <= 16);
        assert!(r.decreases > 0, "{ctl:?}: {r:?}");
        assert!(r.limit < 16 && r.limit >= 1, "{ctl:?}: {r:?}");
        assert_eq!(r.backpressure, 32 * 40);
    }
}

#[tokio::test(start_paused = true)]
async fn limiter_with_a_queueing_sink_stays_within_bounds() {
    // RTT grows with concurrency (a sink serving 2 at a time): limit stays in [1, max]
    let max = 32;
    let l = Limiter::new(LimitConfig::new(Controller::Adaptive, max));
    let inflight = Arc::new(AtomicUsize::new(0));
    let mut hs = Vec::new();
    for _ in 0..40 {
        let (l, inflight) = (l.clone(), inflight.clone());
        hs.push(tokio::spawn(async move {
            for _ in 0..30 {
                let p = l.acquire().await;
                let n = inflight.fetch_add(1, Ordering::SeqCst) + 1;
                assert!(n <= max);
                sleep(Duration::from_millis(5 * (1 + n as u64 / 2))).await;
                inflight.fetch_sub(1, Ordering::SeqCst);
                p.report(Outcome::Success);
            }
        }));
    }
    for h in hs {
        h.await.unwrap();
    }
    let r = l.readings();
    assert!(r.limit >= 1 && r.limit <= max, "{r:?}");
    assert!(
        r.limit < max,
        "a sink that queues past 2 should keep the limit off max: {r:?}"
    );
}

// ---------------------------------------------------------------- more adversarial cases

#[tokio::test(start_paused = true)]
async fn floating_goes_to_the_largest_shortfall_before_sending() {
    let (senders, rx) = channels::<u8>(2, 1, 3);
    senders[0].announce_backlog(3); // shortfall 2 beyond its exclusive credit
    settle().await;
    assert_eq!(
        senders[0].credits().available(),
        3,
        "announced backlog did not bring floating buffers"
    );
    assert_eq!(rx.pool(), 1);
    senders[1].announce_backlog(10);
    settle().await;
    assert_eq!(rx.pool(), 0);
    assert_eq!(senders[1].credits().available(), 2);

    // with one floating buffer, the larger shortfall gets it
    let (s, rx) = channels::<u8>(3, 0, 1);
    s[0].announce_backlog(2);
    s[2].announce_backlog(1);
    s[1].announce_backlog(7);
    settle().await;
    let avail: Vec<u64> = s.iter().map(|x| x.credits().available()).collect();
    // the first announcement may take it before the others ask; after that, ties aside,
    // it must not sit with the smallest shortfall
    assert_eq!(rx.pool(), 0);
    assert_ne!(
        avail,
        vec![0, 0, 1],
        "the smallest shortfall got the floating buffer"
    );
}

#[test]
fn forecast_line_above_capacity_with_the_last_sample_below() {
    // least-squares line at the last instant is above capacity though the depth is not:
    // the forecast must not panic on a negative time to full
    let mut f = FillForecast::new(1000, secs(4.0));
    f.observe(secs(0.0), 0);
    f.observe(secs(1.0), 999);
    f.observe(secs(2.0), 999);
    let r = f.observe(secs(3.0), 950);
    match r {
        Forecast::Filling { eta, rate } => {
            assert!(rate > 0.0 && rate.is_finite());
            assert!(eta <= secs(0.5), "line past capacity yet eta {eta:?}");
        }
        Forecast::Full | Forecast::Steady | Forecast::Draining => {}
    }
}

#[test]
fn forecast_huge_depths_and_times() {
    let mut f = FillForecast::new(u64::MAX, secs(1e6));
    for k in 0..10u64 {
        let r = f.observe(secs(1e9 + k as f64 * 1e5), k * (u64::MAX / 20));
        if let Forecast::Filling { rate, .. } = r {
            assert!(rate.is_finite() && rate > 0.0);
        }
    }
}

#[tokio::test(start_paused = true)]
async fn the_limit_grows_only_when_it_was_reached() {
    for ctl in [Controller::Arc, Controller::Adaptive] {
        let l = Limiter::new(cfg(ctl, 16, 4));
        // one attempt at a time never reaches a limit of 4
        for _ in 0..300 {
            let p = l.acquire().await;
            sleep(Duration::from_millis(5)).await;
            p.report(Outcome::Success);
        }
        let r = l.readings();
        assert_eq!(r.limit, 4, "{ctl:?}: a limit never reached changed: {r:?}");
        assert_eq!(r.increases, 0, "{ctl:?}: {r:?}");
    }
}

/// Saturating load at a constant RTT; records every limit seen after a report.
async fn limits_seen(l: Limiter, tasks: usize, attempts: usize) -> Vec<usize> {
    let seen = Rc::new(std::cell::RefCell::new(vec![l.readings().limit]));
    let local = tokio::task::LocalSet::new();
    for _ in 0..tasks {
        let (l, seen) = (l.clone(), seen.clone());
        local.spawn_local(async move {
            for _ in 0..attempts {
                let p = l.acquire().await;
                sleep(Duration::from_millis(10)).await;
                p.report(Outcome::Success);
                let now = l.readings().limit;
                let mut s = seen.borrow_mut();
                if *s.last().unwrap() != now {
                    s.push(now);
                }
            }
        });
    }
    local.await;
    Rc::try_unwrap(seen).unwrap().into_inner()
}

use std::rc::Rc;

#[tokio::test(start_paused = true)]
async fn adaptive_slow_start_doubles_and_arc_adds_one() {
    let seen = limits_seen(
        Limiter::new(LimitConfig::new(Controller::Adaptive, 64)),
        80,
        100,
    )
    .await;
    assert!(
        seen.contains(&64),
        "never reached max on a sink that does not slow down: {seen:?}"
    );
    let first_64 = seen.iter().position(|&x| x == 64).unwrap();
    for w in seen[..=first_64].windows(2) {
        assert!(
            w[1] == (w[0] * 2).min(64),
            "slow start did not double: {seen:?}"
        );
    }
    assert!(seen.iter().all(|&x| (1..=64).contains(&x)));

    let seen = limits_seen(Limiter::new(LimitConfig::new(Controller::Arc, 12)), 20, 200).await;
    assert!(seen.iter().all(|&x| (1..=12).contains(&x)), "{seen:?}");
    for w in seen.windows(2) {
        assert!(
            w[1] <= w[0] + 1,
            "ARC grew by more than 1 a window: {seen:?}"
        );
    }
    assert!(*seen.last().unwrap() > 1, "ARC never grew: {seen:?}");
}

#[tokio::test(start_paused = true)]
async fn decreases_are_bounded_per_step() {
    for ctl in [Controller::Arc, Controller::Adaptive] {
        let l = Limiter::new(cfg(ctl, 40, 40));
        let seen = Rc::new(std::cell::RefCell::new(vec![40usize]));
        let local = tokio::task::LocalSet::new();
        for _ in 0..40 {
            let (l, seen) = (l.clone(), seen.clone());
            local.spawn_local(async move {
                for _ in 0..20 {
                    let p = l.acquire().await;
                    sleep(Duration::from_millis(10)).await;
                    p.report(Outcome::Backpressure);
                    let now = l.readings().limit;
                    let mut s = seen.borrow_mut();
                    if *s.last().unwrap() != now {
                        s.push(now);
                    }
                }
            });
        }
        local.await;
        let seen = seen.borrow();
        assert!(
            seen.len() > 1,
            "{ctl:?}: constant backpressure never lowered the limit"
        );
        for w in seen.windows(2) {
            assert!(
                w[1] <= w[0],
                "{ctl:?}: grew under constant backpressure: {seen:?}"
            );
            // ×0.9 for ARC (a floor may take one more), at most halving for ours
            let floor = if matches!(ctl, Controller::Arc) {
                ((w[0] as f64 * 0.9).floor() as usize).saturating_sub(1)
            } else {
                w[0] / 2
            };
            assert!(
                w[1] >= floor.max(1),
                "{ctl:?}: dropped too far in one step: {seen:?}"
            );
        }
        assert!(*seen.last().unwrap() >= 1);
    }
}

#[tokio::test(start_paused = true)]
async fn credits_edge_values() {
    // a huge grant: "adds n credit", no limit documented
    let c = Credits::new(0);
    c.grant(u64::MAX / 2);
    assert!(
        c.available() >= u64::from(u32::MAX),
        "a huge grant was lost: {}",
        c.available()
    );
    let x = timeout(Duration::from_millis(10), c.acquire(u64::from(u32::MAX)))
        .await
        .expect("waited with credit there")
        .unwrap();
    x.spend();
    // cost 0 is at least 1: it takes one credit, or none, but never hangs with credit there
    let c = Credits::new(1);
    let x = timeout(Duration::from_millis(10), c.acquire(0))
        .await
        .expect("acquire(0) hung")
        .unwrap();
    x.spend();
    assert!(c.spent() <= 1);
}

#[tokio::test(start_paused = true)]
async fn zero_channels_end_at_once() {
    let (senders, mut rx) = channels::<u8>(0, 1, 1);
    assert!(senders.is_empty());
    let r = timeout(Duration::from_millis(10), rx.recv())
        .await
        .expect("recv hangs with no sender");
    assert!(r.is_none());
}

#[tokio::test(start_paused = true)]
async fn a_limit_that_grows_wakes_every_waiter_it_makes_room_for() {
    // slow start: 2 -> 4 on one report; one permit released plus two new slots: three waiters
    let l = Limiter::new(cfg(Controller::Adaptive, 64, 2));
    let a = l.acquire().await;
    let b = l.acquire().await;
    let got = Rc::new(std::cell::Cell::new(0usize));
    let local = tokio::task::LocalSet::new();
    let mut keep = Vec::new();
    for _ in 0..5 {
        let (l, got) = (l.clone(), got.clone());
        keep.push(local.spawn_local(async move {
            let p = l.acquire().await;
            got.set(got.get() + 1);
            sleep(Duration::from_secs(3600)).await;
            drop(p);
        }));
    }
    local
        .run_until(async {
            settle().await;
            assert_eq!(got.get(), 0);
            sleep(Duration::from_millis(10)).await;
            a.report(Outcome::Success);
            let limit = l.readings().limit;
            assert!(limit > 2, "the limit did not grow on a window that reached it: {limit}");
            for _ in 0..5 {
                settle().await;
                sleep(Duration::from_micros(10)).await;
            }
            let r = l.readings();
            assert_eq!(
                r.in_flight,
                limit.min(1 + 5),
                "limit {limit} but only {} out: a waiter was not woken when the limit grew ({} woke)",
                r.in_flight,
                got.get()
            );
        })
        .await;
    drop(b);
    for k in keep {
        k.abort();
    }
}

#[tokio::test(start_paused = true)]
async fn adaptive_halves_at_the_first_backpressure_then_stays_near_the_ceiling() {
    // a sink that pushes back once 16 attempts are allowed
    let l = Limiter::new(LimitConfig::new(Controller::Adaptive, 128));
    let seen = Rc::new(std::cell::RefCell::new(vec![1usize]));
    let local = tokio::task::LocalSet::new();
    for _ in 0..40 {
        let (l, seen) = (l.clone(), seen.clone());
        local.spawn_local(async move {
            for _ in 0..150 {
                let p = l.acquire().await;
                sleep(Duration::from_millis(10)).await;
                let over = l.readings().in_flight > 16;
                p.report(if over {
                    Outcome::Backpressure
                } else {
                    Outcome::Success
                });
                let now = l.readings().limit;
                let mut s = seen.borrow_mut();
                if *s.last().unwrap() != now {
                    s.push(now);
                }
            }
        });
    }
    local.await;
    let seen = seen.borrow();
    let peak = seen
        .iter()
        .position(|&x| x > 16)
        .expect("never went past 16");
    assert_eq!(
        &seen[..peak + 1],
        &[1, 2, 4, 8, 16, 32],
        "slow start: {seen:?}"
    );
    assert_eq!(
        seen[peak + 1],
        16,
        "the first backpressure halves: {seen:?}"
    );
    let after = &seen[peak + 2..];
    assert!(!after.is_empty(), "{seen:?}");
    assert!(
        after.iter().all(|&x| x <= 24),
        "went far past the ceiling again: {seen:?}"
    );
    assert!(after.iter().all(|&x| x >= 8), "collapsed: {seen:?}");
}
