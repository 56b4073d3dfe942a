//! Release rules (3.9, 3.13): what ends a connection, over an idle upstream when the
//! verification has one.

use super::Outcome;
use super::publisher::{LONG, PublisherVerification, Run};
use crate::Error;

impl PublisherVerification {
    /// Dropping the connection ends the subscription: the subscriber's handle reports itself
    /// cancelled, and the subscriber is released.
    pub async fn rule_3_13_dropping_the_connection_cancels(&self) -> Outcome {
        let run = self.start(LONG);
        run.probe.request(1);
        self.settle().await;
        let subscription = run.probe.subscription();
        run.task.abort();
        let _ = run.task.await;
        assert!(
            subscription.is_cancelled(),
            "rule 3.13 broken: the connection is gone but its subscription is not cancelled"
        );
        assert!(
            run.probe.released(),
            "rule 3.13 broken: the subscriber outlived its connection"
        );
        Outcome::Passed
    }

    fn start_idle(&self) -> Option<Run> {
        let idle = self.idle.as_ref()?;
        let (probe, handle) = self.probe(0);
        Some(self.launch(idle, 0, probe, handle))
    }

    /// Waits for the subscriber, the connection and the source of an idle run to be gone.
    async fn expect_released(&self, run: Run, rule: &str, after: &str) {
        self.expect(
            &run,
            rule,
            &format!("the subscriber released after {after} with an idle upstream"),
            |p| p.released(),
        )
        .await;
        let upstreams = run.upstreams.clone();
        let upstreams_released = || {
            upstreams
                .iter()
                .all(|r| r.load(std::sync::atomic::Ordering::Acquire))
        };
        self.finish(run, rule).await;
        assert!(
            upstreams_released(),
            "rule {rule} broken: the source was not released after {after}"
        );
    }

    /// Rule 3.13 over an idle upstream: `cancel`, with demand outstanding or not, releases the
    /// subscriber and the source and ends the connection, though no item ever comes to wake
    /// the publisher.
    pub async fn rule_3_13_idle_cancel_releases_subscriber_and_source(&self) -> Outcome {
        for demand in [5, 0] {
            let Some(run) = self.start_idle() else {
                return Outcome::Skipped("needs an idle upstream (over or with_idle)");
            };
            self.expect(&run, "3.13", "on_subscribe", |p| !p.signals().is_empty())
                .await;
            if demand > 0 {
                run.probe.request(demand);
            }
            self.settle().await;
            run.probe.cancel();
            self.expect_released(run, "3.13", "cancel").await;
        }
        Outcome::Passed
    }

    /// Rule 3.9 over an idle upstream: `request(0)` is answered with [`Error::BadRequest`] at
    /// once, and everything is released.
    pub async fn rule_3_09_idle_request_zero_signals_error(&self) -> Outcome {
        let Some(run) = self.start_idle() else {
            return Outcome::Skipped("needs an idle upstream (over or with_idle)");
        };
        self.expect(&run, "3.9", "on_subscribe", |p| !p.signals().is_empty())
            .await;
        run.probe.request(5);
        self.settle().await;
        run.probe.request(0);
        self.expect(&run, "3.9", "on_error", |p| p.error().is_some())
            .await;
        assert!(
            matches!(run.probe.error(), Some(Error::BadRequest)),
            "rule 3.9 broken: wrong error {:?}",
            run.probe.error()
        );
        self.expect_released(run, "3.9", "request(0)").await;
        Outcome::Passed
    }

    /// Dropping the connection over an idle upstream releases the source and cancels the
    /// subscription.
    pub async fn rule_3_13_idle_dropped_connection_releases_the_source(&self) -> Outcome {
        let Some(mut run) = self.start_idle() else {
            return Outcome::Skipped("needs an idle upstream (over or with_idle)");
        };
        self.expect(&run, "3.13", "on_subscribe", |p| !p.signals().is_empty())
            .await;
        run.probe.request(5);
        self.settle().await;
        let subscription = run.probe.subscription();
        run.task.abort();
        let _ = (&mut run.task).await;
        assert!(
            subscription.is_cancelled(),
            "rule 3.13 broken: the connection is gone but its subscription is not cancelled"
        );
        assert!(
            run.upstreams_released(),
            "rule 3.13 broken: the source outlived the dropped connection"
        );
        Outcome::Passed
    }
}
