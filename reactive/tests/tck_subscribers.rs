//! The conformance suite against every subscriber the crate ships.

use futures::StreamExt;
use reactive::Prefetch;
use reactive::ops::{FilterSubscriber, MapSubscriber};
use reactive::tck::SubscriberVerification;

fn draining_inbox(window: u64) -> reactive::bridge::InboxSubscriber<u64> {
    let (subscriber, mut inbox) = reactive::inbox(Prefetch::new(window));
    tokio::spawn(async move { while inbox.next().await.is_some() {} });
    subscriber
}

reactive::subscriber_tck!(
    inbox_subscriber,
    u64,
    SubscriberVerification::new(|| draining_inbox(4), |i| i)
);

reactive::subscriber_tck!(
    inbox_subscriber_window_1,
    u64,
    SubscriberVerification::new(|| draining_inbox(1), |i| i)
);

reactive::subscriber_tck!(
    sink_subscriber,
    String,
    SubscriberVerification::new(
        || {
            let (subscriber, driver) =
                reactive::from_sink(futures::sink::drain(), Prefetch::new(3));
            tokio::spawn(driver);
            subscriber
        },
        |i| i.to_string()
    )
);

reactive::subscriber_tck!(
    map_subscriber,
    u64,
    SubscriberVerification::new(
        || MapSubscriber::new(draining_inbox(8), |x: u64| x + 1),
        |i| i
    )
);

reactive::subscriber_tck!(
    filter_subscriber,
    u64,
    SubscriberVerification::new(
        || FilterSubscriber::new(draining_inbox(8), |x: &u64| x % 3 != 0),
        |i| i
    )
);

#[test]
fn a_subscriber_that_never_requests_breaks_rule_2_01() {
    struct Lazy;
    impl reactive::Subscriber<u64> for Lazy {
        fn on_subscribe(&mut self, _: reactive::Subscription) {}
        fn on_next(&mut self, _: u64) {}
        fn on_error(&mut self, _: reactive::Error) {}
        fn on_complete(&mut self) {}
    }
    let verification =
        SubscriberVerification::new(|| Lazy, |i| i).timeout(std::time::Duration::from_millis(50));
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        reactive::tck::run(verification.rule_2_01_signals_demand())
    }));
    assert!(
        result.is_err(),
        "the tck must reject a subscriber that never requests"
    );
}

reactive::subscriber_tck!(
    worker_pool_subscriber,
    u64,
    SubscriberVerification::new(
        || {
            let config = reactive::sink::WorkersConfig {
                workers: 2,
                window: 2,
                partitioning: reactive::sink::Partitioning::Key,
                ..Default::default()
            };
            let (subscriber, pool) =
                reactive::sink::workers(config, |x: &u64| *x, |_, _x: Vec<u64>| async {});
            tokio::spawn(pool);
            subscriber
        },
        |i| i
    )
);

#[test]
fn a_subscriber_that_calls_its_subscription_from_a_terminal_signal_breaks_rule_2_03() {
    #[derive(Default)]
    struct Rude {
        subscription: Option<reactive::Subscription>,
        cancel: bool,
    }
    impl reactive::Subscriber<u64> for Rude {
        fn on_subscribe(&mut self, s: reactive::Subscription) {
            s.request(8);
            self.subscription = Some(s);
        }
        fn on_next(&mut self, _: u64) {}
        fn on_error(&mut self, _: reactive::Error) {
            self.on_complete();
        }
        fn on_complete(&mut self) {
            if let Some(s) = &self.subscription {
                if self.cancel {
                    s.cancel()
                } else {
                    s.request(1)
                }
            }
        }
    }
    for cancel in [false, true] {
        let verification = SubscriberVerification::new(
            move || Rude {
                cancel,
                ..Rude::default()
            },
            |i| i,
        );
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            reactive::tck::run(
                verification.rule_2_03_terminal_signals_do_not_call_the_subscription(),
            )
        }));
        assert!(
            result.is_err(),
            "the tck must reject a subscriber that {} from on_complete",
            if cancel { "cancels" } else { "requests" }
        );
    }
}
