//! Credit-based channels (`reactive::flow::credit`): the receiver's buffer bound under senders
//! that outrun it, floating buffers going where the backlog is, progress of a quiet channel
//! beside a flooding one, per-channel order, and the ends (receiver or senders gone).

use std::time::Duration;

use reactive::flow::credit::{CreditReceiver, channels};

/// Receives everything, checking the bound at every item and per-channel order; returns what
/// each channel delivered.
async fn drain(mut rx: CreditReceiver<(usize, u64)>, n: usize, pause_every: u64) -> Vec<u64> {
    let cap = rx.capacity();
    let mut next = vec![0u64; n];
    let mut got = 0u64;
    while let Some((c, (sender, seq))) = rx.recv().await {
        assert_eq!(c, sender, "an item came out on another channel");
        assert_eq!(seq, next[c], "channel {c} out of order");
        next[c] += 1;
        // What is held after taking this one, plus this one, never exceeds the buffers.
        assert!(rx.len() < cap, "held {} of {cap}", rx.len() + 1);
        got += 1;
        if pause_every > 0 && got % pause_every == 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    next
}

#[tokio::test(start_paused = true)]
async fn the_receiver_never_holds_more_than_its_buffers_and_nothing_is_lost() {
    for (n, exclusive, floating) in [(1, 1, 0), (3, 2, 4), (4, 1, 1), (8, 0, 5)] {
        let (senders, rx) = channels::<(usize, u64)>(n, exclusive, floating);
        let per = 500u64;
        let mut tasks = Vec::new();
        for s in senders {
            tasks.push(tokio::spawn(async move {
                let c = s.channel();
                for seq in 0..per {
                    s.send((c, seq)).await.expect("the receiver is there");
                    if seq % 7 == c as u64 % 7 {
                        tokio::task::yield_now().await;
                    }
                }
            }));
        }
        let delivered = drain(rx, n, 3).await;
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(
            delivered,
            vec![per; n],
            "n={n} exclusive={exclusive} floating={floating}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn floating_buffers_go_to_the_backlog_and_come_back_when_it_clears() {
    let (senders, mut rx) = channels::<u32>(2, 1, 3);
    let [a, b]: [_; 2] = senders.try_into().unwrap();
    assert_eq!(rx.pool(), 3);
    // Channel a announces a backlog of 10: the whole pool goes to it.
    a.announce_backlog(10);
    assert_eq!(rx.pool(), 0);
    assert_eq!(a.credits().available(), 4);
    assert_eq!(b.credits().available(), 1);
    for i in 0..4 {
        a.send(i).await.unwrap();
    }
    // Its backlog cleared: as the receiver frees a's buffers, the floating ones go back.
    a.announce_backlog(0);
    for _ in 0..4 {
        rx.recv().await.unwrap();
    }
    assert_eq!(rx.pool(), 3, "the floating buffers went back to the pool");
    assert_eq!(a.credits().available(), 1, "its exclusive buffer stays");
    // Now b wants them.
    b.announce_backlog(5);
    assert_eq!(b.credits().available(), 4);
}

#[tokio::test(start_paused = true)]
async fn a_quiet_channel_keeps_its_exclusive_buffer_beside_a_flood() {
    let (senders, mut rx) = channels::<(usize, u64)>(2, 1, 2);
    let [flood, quiet]: [_; 2] = senders.try_into().unwrap();
    let flooding = tokio::spawn(async move {
        for seq in 0..1_000 {
            if flood.send((0, seq)).await.is_err() {
                break;
            }
        }
    });
    // The receiver is slow: one item per 10 ms. The quiet channel sends one item every 50 ms
    // and each must arrive within the next few receives, not behind the whole flood.
    let quieting = tokio::spawn(async move {
        for seq in 0..5u64 {
            tokio::time::sleep(Duration::from_millis(50)).await;
            quiet.send((1, seq)).await.unwrap();
        }
    });
    let mut quiet_seen = 0;
    let mut since = Vec::new();
    let mut received = 0u64;
    while quiet_seen < 5 {
        let (c, _) = rx.recv().await.unwrap();
        received += 1;
        if c == 1 {
            quiet_seen += 1;
            since.push(received);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    quieting.await.unwrap();
    drop(rx);
    flooding.await.unwrap();
    // Between two quiet items the receiver took at most (50 ms / 10 ms) + buffers items.
    for w in since.windows(2) {
        assert!(
            w[1] - w[0] <= 5 + 4,
            "the quiet channel waited behind {} items",
            w[1] - w[0]
        );
    }
}

#[tokio::test(start_paused = true)]
async fn sends_fail_once_the_receiver_is_gone_and_give_the_item_back() {
    let (senders, rx) = channels::<String>(1, 1, 0);
    let s = &senders[0];
    s.send("first".into()).await.unwrap();
    let blocked = async { s.send("second".into()).await };
    tokio::pin!(blocked);
    assert!(
        tokio::time::timeout(Duration::from_millis(10), &mut blocked)
            .await
            .is_err(),
        "no credit: the send waits"
    );
    drop(rx);
    assert_eq!(blocked.await, Err("second".to_string()));
    assert_eq!(s.send("third".into()).await, Err("third".to_string()));
}

#[tokio::test(start_paused = true)]
async fn the_receiver_ends_when_every_sender_is_gone_after_the_last_item() {
    let (senders, mut rx) = channels::<u8>(3, 2, 0);
    for s in &senders {
        s.send(s.channel() as u8).await.unwrap();
    }
    drop(senders);
    let mut got: Vec<u8> = Vec::new();
    while let Some((_, x)) = rx.recv().await {
        got.push(x);
    }
    got.sort_unstable();
    assert_eq!(got, vec![0, 1, 2]);
}

#[tokio::test(start_paused = true)]
async fn a_dropped_sender_gives_its_floating_credit_back() {
    let (senders, rx) = channels::<u8>(2, 1, 2);
    let [a, b]: [_; 2] = senders.try_into().unwrap();
    a.announce_backlog(5);
    assert_eq!(rx.pool(), 0);
    drop(a);
    // The pool got them back and b, asking, gets them.
    assert_eq!(rx.pool(), 2);
    b.announce_backlog(3);
    assert_eq!(b.credits().available(), 3);
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_send_takes_no_credit_and_leaves_no_backlog() {
    let (senders, mut rx) = channels::<u8>(1, 1, 0);
    let s = &senders[0];
    s.send(1).await.unwrap();
    // A send that waits for credit, cancelled by a timeout (a select! elsewhere would do the same).
    let r = tokio::time::timeout(Duration::from_millis(5), s.send(2)).await;
    assert!(r.is_err());
    assert_eq!(s.credits().backlog(), 0);
    assert_eq!(rx.recv().await.map(|x| x.1), Some(1));
    assert_eq!(
        s.credits().available(),
        1,
        "the credit came back with the free buffer"
    );
    s.send(3).await.unwrap();
    assert_eq!(rx.recv().await.map(|x| x.1), Some(3));
}
