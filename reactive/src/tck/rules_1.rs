//! The rules of section 1 (the publisher's signals) and 2.12.

use super::publisher::{LONG, PublisherVerification, Run};
use super::{Outcome, Signal};
use crate::demand::UNBOUNDED;

impl PublisherVerification {
    /// Rule 1.1: the number of `on_next` never exceeds the total requested.
    pub async fn rule_1_01_on_next_never_exceeds_requested(&self) -> Outcome {
        let run = self.start(10);
        let mut requested = 0;
        for n in [1, 2, 3] {
            run.probe.request(n);
            requested += n;
            self.settle().await;
            let got = run.probe.nexts();
            assert!(
                got <= requested,
                "rule 1.1 broken: {got} on_next for {requested} requested"
            );
        }
        run.probe.cancel();
        self.finish(run, "1.1").await;
        Outcome::Passed
    }

    /// Rule 1.2: a publisher may emit fewer items than requested and then terminate.
    pub async fn rule_1_02_may_complete_with_fewer_items_than_requested(&self) -> Outcome {
        if !self.finite() || self.max_elements < 3 {
            return Outcome::Skipped("rule 1.2 needs a finite publisher of 3 items");
        }
        let run = self.start(3);
        run.probe.request(10);
        self.expect(&run, "1.2", "on_complete after 3 items", |p| p.completed())
            .await;
        assert_eq!(run.probe.nexts(), 3, "rule 1.2 broken: wrong item count");
        self.finish(run, "1.2").await;
        Outcome::Passed
    }

    /// Rule 1.3: signals are serial even when requests come from many threads at once.
    pub async fn rule_1_03_signals_are_serial(&self) -> Outcome {
        let total = 8 * 2_000;
        let run = self.start(total);
        let subscription = run.probe.subscription();
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let s = subscription.clone();
                std::thread::spawn(move || {
                    for _ in 0..2_000 {
                        s.request(1);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().expect("request panicked (rule 3.16)");
        }
        let expected = total.min(self.max_elements);
        self.expect(&run, "1.3", "all requested items", |p| {
            p.nexts() >= expected
        })
        .await;
        assert_eq!(
            run.probe.overlaps(),
            0,
            "rule 1.3 broken: signals overlapped"
        );
        run.probe.cancel();
        self.finish(run, "1.3").await;
        Outcome::Passed
    }

    /// Rule 1.4: a failing publisher signals `on_error`.
    pub async fn rule_1_04_failure_is_signalled_with_on_error(&self) -> Outcome {
        let Some(failed) = &self.failed else {
            return Outcome::Skipped("rule 1.4 needs a failing publisher (with_failed)");
        };
        let (probe, handle) = self.probe(0);
        let run = Run {
            probe: handle,
            task: tokio::spawn(failed(probe)),
            upstreams: Vec::new(),
        };
        // A stream-backed publisher discovers its failure only by polling, which takes demand.
        run.probe.request(16);
        self.expect(&run, "1.4", "on_error", |p| p.error().is_some())
            .await;
        assert!(
            matches!(run.probe.signals().first(), Some(Signal::Subscribe)),
            "rule 1.9 broken: on_error before on_subscribe"
        );
        self.finish(run, "1.4").await;
        Outcome::Passed
    }

    /// Rule 1.5: a finite publisher completes after its last item.
    pub async fn rule_1_05_completes_after_the_last_item(&self) -> Outcome {
        if !self.finite() || self.max_elements < 3 {
            return Outcome::Skipped("rule 1.5 needs a finite publisher of 3 items");
        }
        let run = self.start(3);
        run.probe.request(3);
        self.expect(&run, "1.5", "3 items", |p| p.nexts() == 3)
            .await;
        // Discovering the end may take one more unit of demand (a stream must be polled once more).
        run.probe.request(1);
        self.expect(&run, "1.5", "on_complete", |p| p.completed())
            .await;
        assert!(
            matches!(run.probe.signals().last(), Some(Signal::Complete)),
            "rule 1.5 broken"
        );
        self.finish(run, "1.5").await;
        Outcome::Passed
    }

    /// Rule 1.5, strictly: a finite publisher that knows it is done completes on exactly the
    /// demand for its items, without one more request, and an empty one without any.
    pub async fn rule_1_05_completes_on_exact_demand(&self) -> Outcome {
        if let Some(why) = self.extra_request_to_complete {
            return Outcome::Skipped(why);
        }
        if !self.finite() || self.max_elements < 3 {
            return Outcome::Skipped("rule 1.5 needs a finite publisher of 3 items");
        }
        for n in [3, 0] {
            let run = self.start(n);
            if n > 0 {
                run.probe.request(n);
            }
            self.expect(&run, "1.5", "on_complete without a further request", |p| {
                p.completed()
            })
            .await;
            assert_eq!(run.probe.nexts(), n, "rule 1.5 broken: wrong item count");
            self.finish(run, "1.5").await;
        }
        Outcome::Passed
    }

    /// Rule 1.6: after a terminal signal the subscription counts as cancelled.
    pub async fn rule_1_06_terminal_signal_cancels_the_subscription(&self) -> Outcome {
        if !self.finite() {
            return Outcome::Skipped("rule 1.6 needs a finite publisher");
        }
        let run = self.start(1);
        run.probe.request(5);
        self.expect(&run, "1.6", "on_complete", |p| p.completed())
            .await;
        assert!(
            run.probe.subscription().is_cancelled(),
            "rule 1.6 broken: subscription still active"
        );
        let before = run.probe.signals().len();
        run.probe.request(5);
        self.settle().await;
        assert_eq!(
            run.probe.signals().len(),
            before,
            "rule 1.6 broken: signals after terminal"
        );
        self.finish(run, "1.6").await;
        Outcome::Passed
    }

    /// Rule 1.7: nothing follows `on_complete` or `on_error`.
    pub async fn rule_1_07_no_signal_follows_a_terminal_signal(&self) -> Outcome {
        let mut runs = Vec::new();
        if self.finite() {
            let run = self.start(2);
            run.probe.request(UNBOUNDED);
            runs.push(run);
        }
        if let Some(failed) = &self.failed {
            let (probe, handle) = self.probe(0);
            let run = Run {
                probe: handle,
                task: tokio::spawn(failed(probe)),
                upstreams: Vec::new(),
            };
            run.probe.request(UNBOUNDED);
            runs.push(run);
        }
        if runs.is_empty() {
            return Outcome::Skipped("rule 1.7 needs a finite or a failing publisher");
        }
        for run in runs {
            self.expect(&run, "1.7", "a terminal signal", |p| p.terminals() > 0)
                .await;
            self.settle().await;
            let signals = run.probe.signals();
            assert_eq!(run.probe.terminals(), 1, "rule 1.7 broken: {signals:?}");
            assert!(
                matches!(signals.last(), Some(Signal::Complete | Signal::Error(_))),
                "rule 1.7 broken: signal after terminal: {signals:?}"
            );
            self.finish(run, "1.7").await;
        }
        Outcome::Passed
    }

    /// Rule 1.8: after `cancel`, signals eventually stop.
    pub async fn rule_1_08_cancel_eventually_stops_signals(&self) -> Outcome {
        let run = self.start(LONG);
        run.probe.request(UNBOUNDED);
        self.expect(&run, "1.8", "items", |p| p.nexts() > 0 || p.terminals() > 0)
            .await;
        run.probe.cancel();
        self.finish(run, "1.8").await;
        Outcome::Passed
    }

    /// Rule 1.9: `on_subscribe` is the first signal, and comes exactly once.
    pub async fn rule_1_09_on_subscribe_comes_first_and_once(&self) -> Outcome {
        for n in [0, 3] {
            let run = self.start(n);
            self.expect(&run, "1.9", "on_subscribe", |p| !p.signals().is_empty())
                .await;
            run.probe.request(5);
            self.settle().await;
            let signals = run.probe.signals();
            assert!(
                matches!(signals.first(), Some(Signal::Subscribe)),
                "rule 1.9 broken: {signals:?}"
            );
            let subscribes = signals
                .iter()
                .filter(|s| matches!(s, Signal::Subscribe))
                .count();
            assert_eq!(
                subscribes, 1,
                "rule 1.9 broken: on_subscribe {subscribes} times"
            );
            run.probe.cancel();
            self.finish(run, "1.9").await;
        }
        Outcome::Passed
    }

    /// Rule 2.12: each subscriber gets `on_subscribe` once, with a subscription of its own.
    pub async fn rule_2_12_on_subscribe_is_called_once_per_subscriber(&self) -> Outcome {
        let a = self.start(3);
        let b = self.start(3);
        for run in [&a, &b] {
            self.expect(run, "2.12", "on_subscribe", |p| !p.signals().is_empty())
                .await;
        }
        assert!(
            !a.probe.subscription().same_as(&b.probe.subscription()),
            "rule 2.12 broken: two subscribers share one subscription"
        );
        for run in [a, b] {
            run.probe.request(1);
            self.settle().await;
            let subscribes = run
                .probe
                .signals()
                .iter()
                .filter(|s| matches!(s, Signal::Subscribe))
                .count();
            assert_eq!(
                subscribes, 1,
                "rule 2.12 broken: on_subscribe {subscribes} times"
            );
            run.probe.cancel();
            self.finish(run, "2.12").await;
        }
        Outcome::Passed
    }
}
