//! Benchmark a): range → map → counting subscriber in one task, against the same work as a
//! plain `futures` stream (`iter(..).map(..)` folded). Run with `cargo bench -p reactive --bench chain`.

#[allow(dead_code)] // each bench uses some of it
mod support;

use std::hint::black_box;

use futures::StreamExt;
use reactive::{Error, Publisher, PublisherExt, Subscriber, Subscription};

const ITEMS: u64 = 20_000_000;

struct Counting {
    batch: u64,
    left: u64,
    sum: u64,
    subscription: Option<Subscription>,
}

impl Subscriber<u64> for Counting {
    fn on_subscribe(&mut self, s: Subscription) {
        s.request(self.batch);
        self.left = self.batch;
        self.subscription = Some(s);
    }
    #[inline]
    fn on_next(&mut self, item: u64) {
        self.sum = self.sum.wrapping_add(black_box(item));
        self.left -= 1;
        if self.left == 0 {
            self.left = self.batch;
            if let Some(s) = &self.subscription {
                s.request(self.batch);
            }
        }
    }
    fn on_error(&mut self, e: Error) {
        panic!("{e}");
    }
    fn on_complete(&mut self) {
        black_box(self.sum);
    }
}

fn main() {
    let reps = support::reps(7);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    println!("a) range -> map -> count, one task, {ITEMS} items, median of {reps}");

    let baseline = support::items_per_sec(ITEMS, reps, || {
        let sum = runtime.block_on(
            futures::stream::iter(0..ITEMS)
                .map(|x| x.wrapping_mul(3))
                .fold(0u64, |acc, x| async move { acc.wrapping_add(black_box(x)) }),
        );
        black_box(sum);
    });
    println!(
        "{:<44} {:>8.1} M items/s",
        "baseline: futures iter().map().fold()",
        baseline / 1e6
    );

    for batch in [1u64, 32, 1024] {
        let rate = support::items_per_sec(ITEMS, reps, || {
            let subscriber = Counting {
                batch,
                left: 0,
                sum: 0,
                subscription: None,
            };
            runtime.block_on(
                reactive::iter(0..ITEMS)
                    .map(|x| x.wrapping_mul(3))
                    .connect(subscriber),
            );
        });
        let target = (batch == 1024).then_some(0.8);
        support::report(
            &format!("reactive request({batch})"),
            rate,
            "futures",
            baseline,
            target,
        );
    }
}
