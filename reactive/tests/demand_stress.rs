//! The demand counter under concurrent requests from many threads (rules 1.1, 1.3, 3.5): no
//! request is lost, none is double-counted, and emission stops exactly at the total.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use reactive::{Error, Publisher, Subscriber, Subscription};

struct Counter {
    received: Arc<AtomicU64>,
    subscription: Arc<std::sync::Mutex<Option<Subscription>>>,
}

impl Subscriber<u64> for Counter {
    fn on_subscribe(&mut self, s: Subscription) {
        *self.subscription.lock().unwrap() = Some(s);
    }
    fn on_next(&mut self, _: u64) {
        self.received.fetch_add(1, Ordering::Relaxed);
    }
    fn on_error(&mut self, e: Error) {
        panic!("unexpected error {e}");
    }
    fn on_complete(&mut self) {}
}

#[test]
fn concurrent_requests_add_up_exactly() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .unwrap();
    for round in 0..20u64 {
        let received = Arc::new(AtomicU64::new(0));
        let slot = Arc::new(std::sync::Mutex::new(None));
        let connection = reactive::iter(0u64..).connect(Counter {
            received: received.clone(),
            subscription: slot.clone(),
        });
        let task = runtime.spawn(connection);
        let subscription = slot.lock().unwrap().clone().unwrap();
        let threads: Vec<_> = (0..8u64)
            .map(|t| {
                let s = subscription.clone();
                std::thread::spawn(move || {
                    let mut sum = 0;
                    for i in 0..500u64 {
                        let n = 1 + (i * 7 + t * 13 + round) % 5;
                        s.request(n);
                        sum += n;
                    }
                    sum
                })
            })
            .collect();
        let total: u64 = threads.into_iter().map(|t| t.join().unwrap()).sum();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while received.load(Ordering::Relaxed) < total && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        std::thread::sleep(Duration::from_millis(10));
        assert_eq!(received.load(Ordering::Relaxed), total, "round {round}");
        subscription.cancel();
        runtime.block_on(task).unwrap();
    }
}
