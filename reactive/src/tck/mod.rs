//! The conformance suite: the Rust counterpart of the Reactive Streams TCK.
//!
//! [`PublisherVerification`] and [`SubscriberVerification`] check any publisher or subscriber,
//! in this crate or in yours, against the rules of Reactive Streams 1.0.4 that can be checked
//! mechanically. Each rule is an async method named `rule_<section>_<two-digit number>_<what>`;
//! it panics with a message naming the rule when the rule is broken, and returns
//! [`Outcome::Skipped`] when the rule does not apply (a finite check on an infinite publisher,
//! say).
//!
//! The macros [`publisher_tck!`](crate::publisher_tck) and
//! [`subscriber_tck!`](crate::subscriber_tck) expand into one `#[test]` per rule:
//!
//! ```
//! reactive::publisher_tck!(
//!     my_range,
//!     reactive::tck::PublisherVerification::new(|n| reactive::iter(0..n))
//! );
//! // An operator: checked over an upstream that is always ready, one that pauses between
//! // items (the `my_queue::pending::*` tests) and one that is idle (the `*_idle_*` rules).
//! reactive::publisher_tck!(
//!     my_queue,
//!     reactive::tck::PublisherVerification::over(|up| {
//!         reactive::PublisherExt::queue(up, reactive::QueueConfig::bounded(8))
//!     })
//! );
//! ```
//!
//! # What is checked beyond the letter of the rules
//! - **Every rule over a pausing upstream**, not only one that is always ready: a lost
//!   wake-up hides behind an upstream that is always about to poll again.
//! - **Release over an idle upstream** (`*_idle_*`): after `cancel` (with demand outstanding
//!   or not), `request(0)`, or a dropped connection, the subscriber and the source are
//!   released and the connection ends within the timeout, though nothing ever arrives to wake
//!   the publisher.
//! - **Completion on exact demand** (1.5): a publisher that knows it is done completes on the
//!   demand for exactly its items, and an empty one without any demand. Publishers that
//!   cannot know (a stream, a filter) declare it with
//!   [`needs_a_request_to_complete`](PublisherVerification::needs_a_request_to_complete).
//! - **Items after cancel** (3.12): a cancel from inside `on_next` stops the next emission;
//!   after a cancel from another thread has returned, at most the one item in flight arrives.
//! - **A dropped connection cancels** (3.13): the subscription reports itself cancelled.
//!
//! # What is not checked
//! - Rules that need a particular publisher failure (1.4, 1.7 with an error) run only with
//!   [`with_failed`](PublisherVerification::with_failed).
//! - Memory: the suite sees that the subscriber and an [`Upstream`] are released, not what
//!   else a publisher keeps.
//! - Rule 2.3 is seen through the publisher's waker (see
//!   [`SubscriberVerification::rule_2_03_terminal_signals_do_not_call_the_subscription`]):
//!   a `request` made when the demand is already unbounded wakes nobody and goes unseen.
//! - Timing is bounded by timeouts, so a publisher that ends "eventually" but later than the
//!   timeout (2 s) fails; one that emits an unexpected signal later than the settle time
//!   (20 ms) passes.
//!
//! # How rules map to Rust
//! - "Returns normally" means "does not panic". "Throws NullPointerException" rules do not
//!   apply: Rust has no null.
//! - Rules about the `Subscription` object itself (3.5–3.9, 3.15–3.17) are checked through the
//!   publisher under test, because what matters is how the publisher reacts to the calls.
//! - Concurrency (1.3, 3.5) is checked with stress tests on several OS threads; see also
//!   `tests/demand_stress.rs` for the demand counter itself.
//! - Timing: a check waits for an expected signal up to a timeout (2 s by default) and waits a
//!   short settle time (20 ms by default) before concluding that an unexpected signal did not
//!   come. Both can be changed on each verification.

mod probe;
mod publisher;
mod rules_1;
mod rules_3;
mod rules_idle;
mod subscriber;
mod upstream;

use std::future::Future;

pub use probe::{Probe, ProbeHandle, Signal};
pub use publisher::PublisherVerification;
#[doc(hidden)]
pub use publisher::panic_message as publisher_panic_message;
pub use subscriber::SubscriberVerification;
pub use upstream::{Upstream, UpstreamConnection};

/// What a rule check concluded, when it did not panic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The rule was checked and holds.
    Passed,
    /// The rule does not apply to this publisher or subscriber; the reason says why.
    Skipped(&'static str),
}

/// Runs a verification future on a fresh two-thread tokio runtime, as the generated tests do.
///
/// # Panics
/// When the future panics (a broken rule), or when called inside a tokio runtime.
pub fn run<F: Future<Output = Outcome>>(check: F) -> Outcome {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .expect("the tck needs a tokio runtime");
    let outcome = runtime.block_on(check);
    if let Outcome::Skipped(why) = outcome {
        eprintln!("skipped: {why}");
    }
    outcome
}

/// Expands into a module of `#[test]` functions, one per publisher rule, for the
/// [`PublisherVerification`] that `$make` builds; a module `batches` that runs every rule
/// again with probes that take batches ([`PublisherVerification::batches_variant`]); and a
/// module `pending` that runs every rule again over its pausing upstream (skipped when it has
/// none; see [`PublisherVerification::over`]).
#[macro_export]
macro_rules! publisher_tck {
    ($name:ident, $make:expr) => {
        #[allow(non_snake_case)]
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            fn verification() -> $crate::tck::PublisherVerification {
                $make
            }
            $crate::__publisher_rules!(__tck_tests; verification);
            mod batches {
                fn verification() -> $crate::tck::PublisherVerification {
                    super::verification().batches_variant()
                }
                $crate::__publisher_rules!(__tck_tests; verification);
            }
            mod pending {
                fn verification() -> ::core::option::Option<$crate::tck::PublisherVerification> {
                    super::verification().pending_variant()
                }
                $crate::__publisher_rules!(__tck_pending_tests; verification);
            }
        }
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __publisher_rules {
    ($tests:ident; $verification:ident) => {
        $crate::$tests! { $verification;
            rule_1_01_on_next_never_exceeds_requested,
            rule_1_02_may_complete_with_fewer_items_than_requested,
            rule_1_03_signals_are_serial,
            rule_1_04_failure_is_signalled_with_on_error,
            rule_1_05_completes_after_the_last_item,
            rule_1_05_completes_on_exact_demand,
            rule_1_06_terminal_signal_cancels_the_subscription,
            rule_1_07_no_signal_follows_a_terminal_signal,
            rule_1_08_cancel_eventually_stops_signals,
            rule_1_09_on_subscribe_comes_first_and_once,
            rule_2_12_on_subscribe_is_called_once_per_subscriber,
            rule_3_02_request_from_on_next_is_allowed,
            rule_3_03_request_recursion_is_bounded,
            rule_3_05_cancel_is_thread_safe,
            rule_3_06_request_after_cancel_is_a_no_op,
            rule_3_07_cancel_after_cancel_is_a_no_op,
            rule_3_08_request_registers_demand,
            rule_3_09_request_zero_signals_error,
            rule_3_09_idle_request_zero_signals_error,
            rule_3_12_cancel_stops_signals,
            rule_3_12_cancel_in_on_next_stops_the_next_item,
            rule_3_12_cancel_from_another_thread_stops_at_once,
            rule_3_13_cancel_releases_the_subscriber,
            rule_3_13_dropping_the_connection_cancels,
            rule_3_13_idle_cancel_releases_subscriber_and_source,
            rule_3_13_idle_dropped_connection_releases_the_source,
            rule_3_15_cancel_returns_normally,
            rule_3_16_request_returns_normally,
            rule_3_17_demand_saturates_at_unbounded
        }
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __tck_collect {
    ($verification:ident; $($rule:ident),* $(,)?) => {{
        let mut out = Vec::new();
        $(
            let v = $verification.clone();
            let result = tokio::spawn(async move { v.$rule().await }).await;
            out.push((stringify!($rule), result.map_err($crate::tck::publisher_panic_message)));
        )*
        out
    }};
}

#[doc(hidden)]
#[macro_export]
macro_rules! __tck_pending_tests {
    ($verification:ident; $($rule:ident),* $(,)?) => {
        $(
            #[test]
            fn $rule() {
                match $verification() {
                    ::core::option::Option::Some(v) => {
                        $crate::tck::run(async move { v.$rule().await });
                    }
                    ::core::option::Option::None => {
                        ::std::eprintln!("skipped: no pausing upstream (PublisherVerification::over or with_pending)");
                    }
                }
            }
        )*
    };
}

/// Expands into a module of `#[test]` functions, one per subscriber rule, for the
/// [`SubscriberVerification`] of items of type `$item` that `$make` builds.
#[macro_export]
macro_rules! subscriber_tck {
    ($name:ident, $item:ty, $make:expr) => {
        #[allow(non_snake_case)]
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            fn verification() -> $crate::tck::SubscriberVerification<$item> {
                $make
            }
            $crate::__tck_tests!(verification;
                rule_2_01_signals_demand,
                rule_2_03_terminal_signals_do_not_call_the_subscription,
                rule_2_05_cancels_a_second_subscription,
                rule_2_08_tolerates_on_next_after_cancel,
                rule_2_09_accepts_on_complete_without_request,
                rule_2_10_accepts_on_error_without_request,
                rule_2_13_signals_return_normally
            );
        }
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __tck_tests {
    ($verification:ident; $($rule:ident),* $(,)?) => {
        $(
            #[test]
            fn $rule() {
                $crate::tck::run(async { $verification().$rule().await });
            }
        )*
    };
}
