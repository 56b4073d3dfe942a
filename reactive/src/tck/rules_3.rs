//! The rules of section 3 (the subscription), over the publisher's normal upstream.

use super::publisher::{LONG, PublisherVerification};
use super::{Outcome, Probe};
use crate::Error;
use crate::demand::UNBOUNDED;

impl PublisherVerification {
    /// Rule 3.2: a subscriber may request from inside `on_next`.
    pub async fn rule_3_02_request_from_on_next_is_allowed(&self) -> Outcome {
        let n = 100.min(self.max_elements);
        let run = self.start_with(n, 1);
        run.probe.request(1);
        self.expect(&run, "3.2", "every item, one request at a time", |p| {
            p.nexts() >= n
        })
        .await;
        run.probe.cancel();
        self.finish(run, "3.2").await;
        Outcome::Passed
    }

    /// Rule 3.3: `request` from `on_next` does not recurse into `on_next`.
    pub async fn rule_3_03_request_recursion_is_bounded(&self) -> Outcome {
        let n = 10_000.min(self.max_elements);
        let run = self.start_with(n, 1);
        run.probe.request(1);
        self.expect(&run, "3.3", "every item", |p| p.nexts() >= n)
            .await;
        let depth = run.probe.max_depth();
        assert!(depth <= 1, "rule 3.3 broken: signals nested {depth} deep");
        run.probe.cancel();
        self.finish(run, "3.3").await;
        Outcome::Passed
    }

    /// Rule 3.5: `cancel` is thread-safe and idempotent.
    pub async fn rule_3_05_cancel_is_thread_safe(&self) -> Outcome {
        let run = self.start(LONG);
        run.probe.request(UNBOUNDED);
        let subscription = run.probe.subscription();
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let s = subscription.clone();
                std::thread::spawn(move || {
                    for _ in 0..100 {
                        s.cancel();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().expect("rule 3.5 broken: cancel panicked");
        }
        self.finish(run, "3.5").await;
        Outcome::Passed
    }

    /// Rule 3.6: `request` after `cancel` does nothing.
    pub async fn rule_3_06_request_after_cancel_is_a_no_op(&self) -> Outcome {
        let run = self.start(10);
        run.probe.cancel();
        run.probe.request(10);
        self.settle().await;
        assert_eq!(run.probe.nexts(), 0, "rule 3.6 broken: items after cancel");
        self.finish(run, "3.6").await;
        Outcome::Passed
    }

    /// Rule 3.7: `cancel` after `cancel` does nothing.
    pub async fn rule_3_07_cancel_after_cancel_is_a_no_op(&self) -> Outcome {
        let run = self.start(10);
        run.probe.cancel();
        run.probe.cancel();
        run.probe.cancel();
        self.settle().await;
        assert_eq!(
            run.probe.terminals(),
            0,
            "rule 3.7 broken: cancel caused a signal"
        );
        self.finish(run, "3.7").await;
        Outcome::Passed
    }

    /// Rule 3.8: `request(n)` registers demand for `n` more items.
    pub async fn rule_3_08_request_registers_demand(&self) -> Outcome {
        if self.max_elements < 10 {
            return Outcome::Skipped("rule 3.8 needs a publisher of 10 items");
        }
        let run = self.start(10);
        run.probe.request(4);
        self.expect(&run, "3.8", "4 items", |p| p.nexts() == 4)
            .await;
        self.settle().await;
        assert_eq!(run.probe.nexts(), 4, "rule 1.1 broken: more than requested");
        run.probe.request(3);
        self.expect(&run, "3.8", "3 more items", |p| p.nexts() == 7)
            .await;
        run.probe.cancel();
        self.finish(run, "3.8").await;
        Outcome::Passed
    }

    /// Rule 3.9: `request(0)` signals `on_error` with [`Error::BadRequest`].
    pub async fn rule_3_09_request_zero_signals_error(&self) -> Outcome {
        let run = self.start(10);
        run.probe.request(0);
        self.expect(&run, "3.9", "on_error", |p| p.error().is_some())
            .await;
        assert!(
            matches!(run.probe.error(), Some(Error::BadRequest)),
            "rule 3.9 broken: wrong error {:?}",
            run.probe.error()
        );
        self.finish(run, "3.9").await;
        Outcome::Passed
    }

    /// Rule 3.12: `cancel` stops signals even while demand is outstanding.
    pub async fn rule_3_12_cancel_stops_signals(&self) -> Outcome {
        let run = self.start(LONG);
        run.probe.request(2);
        self.expect(&run, "3.12", "2 items", |p| {
            p.nexts() == 2 || p.terminals() > 0
        })
        .await;
        run.probe.cancel();
        let at_cancel = run.probe.nexts();
        run.probe.request(100);
        self.settle().await;
        let after = run.probe.nexts();
        assert_eq!(
            after,
            at_cancel,
            "rule 3.12 broken: {} items after cancel",
            after - at_cancel
        );
        self.finish(run, "3.12").await;
        Outcome::Passed
    }

    /// Rule 3.12, at once: a `cancel` from inside `on_next` stops the very next emission,
    /// whatever demand is outstanding.
    pub async fn rule_3_12_cancel_in_on_next_stops_the_next_item(&self) -> Outcome {
        if self.max_elements < 10 {
            return Outcome::Skipped("needs a publisher of 10 items");
        }
        for demand in [10, UNBOUNDED] {
            let (probe, handle) = Probe::with_options(0, 3, self.batches);
            let run = self.launch(&self.factory, LONG.min(self.max_elements), probe, handle);
            run.probe.request(demand);
            self.expect(&run, "3.12", "3 items", |p| p.nexts() >= 3)
                .await;
            self.settle().await;
            // Item by item, nothing after the third; in batches, nothing after the batch
            // that held it.
            assert_eq!(
                run.probe.nexts(),
                run.probe.nexts_when_cancelled(),
                "rule 3.12 broken: items after a cancel in on_next #3 (demand {demand})"
            );
            self.finish(run, "3.12").await;
        }
        Outcome::Passed
    }

    /// Rule 3.12, across threads: once `cancel` has returned on another thread, at most the
    /// one item being delivered at that moment still arrives (rule 2.8).
    pub async fn rule_3_12_cancel_from_another_thread_stops_at_once(&self) -> Outcome {
        let run = self.start(LONG);
        run.probe.request(UNBOUNDED);
        self.expect(&run, "3.12", "items", |p| {
            p.nexts() > 0 || p.terminals() > 0
        })
        .await;
        let probe = run.probe.clone();
        let at_cancel = std::thread::spawn(move || {
            probe.cancel();
            probe.deliveries()
        })
        .join()
        .expect("cancel panicked (rule 3.15)");
        self.settle().await;
        // At most the delivery under way (one item, or one batch) still arrives.
        let after = run.probe.deliveries();
        assert!(
            after <= at_cancel + 1,
            "rule 3.12 broken: {} deliveries arrived after cancel returned",
            after - at_cancel
        );
        self.finish(run, "3.12").await;
        Outcome::Passed
    }

    /// Rule 3.13: after `cancel`, the publisher drops the subscriber.
    pub async fn rule_3_13_cancel_releases_the_subscriber(&self) -> Outcome {
        let run = self.start(LONG);
        run.probe.request(1);
        run.probe.cancel();
        self.expect(&run, "3.13", "the subscriber to be dropped", |p| {
            p.released()
        })
        .await;
        self.finish(run, "3.13").await;
        Outcome::Passed
    }

    /// Rule 3.15: `cancel` returns normally in every state.
    pub async fn rule_3_15_cancel_returns_normally(&self) -> Outcome {
        let run = self.start(2);
        run.probe.cancel();
        self.finish(run, "3.15").await;
        if self.finite() {
            let run = self.start(1);
            run.probe.request(10);
            self.expect(&run, "3.15", "on_complete", |p| p.completed())
                .await;
            run.probe.cancel();
            self.finish(run, "3.15").await;
        }
        Outcome::Passed
    }

    /// Rule 3.16: `request` returns normally in every state, for every value.
    pub async fn rule_3_16_request_returns_normally(&self) -> Outcome {
        let run = self.start(5);
        for n in [1, u64::MAX, u64::MAX, 0, 7] {
            run.probe.request(n);
        }
        self.finish(run, "3.16").await;
        Outcome::Passed
    }

    /// Rule 3.17: demand that adds up past 2^63 − 1 is unbounded, not an overflow.
    pub async fn rule_3_17_demand_saturates_at_unbounded(&self) -> Outcome {
        let n = 1_000.min(self.max_elements);
        let run = self.start(n);
        run.probe.request(UNBOUNDED);
        run.probe.request(UNBOUNDED);
        run.probe.request(u64::MAX);
        self.expect(&run, "3.17", "items", |p| p.nexts() >= n).await;
        assert!(
            run.probe.error().is_none(),
            "rule 3.17 broken: {:?}",
            run.probe.error()
        );
        run.probe.cancel();
        self.finish(run, "3.17").await;
        Outcome::Passed
    }
}
