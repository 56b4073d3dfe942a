//! The Prometheus metrics served on `GET /metrics`.
//!
//! | metric | type | meaning |
//! |---|---|---|
//! | `sinkd_writes_accepted_total` | counter | write requests accepted (a batch is one) |
//! | `sinkd_events_accepted_total` | counter | events accepted |
//! | `sinkd_requests_rejected_total{reason}` | counter | requests refused, by reason: `rate_limited`, `held_full`, `paused`, `malformed`, `too_large`, `unsupported_media_type`, `not_found`, `method_not_allowed`, `unauthorized`, `injected` |
//! | `sinkd_requests_held_total` | counter | write requests that had to wait for tokens |
//! | `sinkd_requests_held_now` | gauge | write requests waiting now |
//! | `sinkd_rate_limit` | gauge | the current limit, writes/s (0 when off) |
//! | `sinkd_tokens` | gauge | tokens in the bucket now (negative while held requests are paid back) |
//! | `sinkd_paused` | gauge | 1 while paused |
//! | `sinkd_requests_in_flight` | gauge | requests being handled now |
//! | `sinkd_request_duration_seconds` | histogram | time to answer a write, holding included |
//! | `sinkd_audit_received_total` | counter | events received, duplicates included |
//! | `sinkd_audit_distinct_ids` | gauge | distinct ids received |
//! | `sinkd_audit_duplicates_total` | counter | events whose id was already received |
//! | `sinkd_audit_order_violations_total` | counter | events whose seq was lower than the last for their key |
//! | `sinkd_credits_granted_total` | counter | credit granted to clients (tokens set aside for them) |
//! | `sinkd_writes_on_credit_total` | counter | writes admitted on a client's credit |
//! | `sinkd_credit_polls_total` | counter | `POST /credit` calls answered |

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Why a request was refused.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Reason {
    /// The reason label.
    pub reason: &'static str,
}

/// All metrics, registered once.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    pub(crate) writes_accepted: Counter,
    pub(crate) events_accepted: Counter,
    pub(crate) rejected: Family<Reason, Counter>,
    pub(crate) held_total: Counter,
    pub(crate) held: Gauge,
    pub(crate) rate_limit: Gauge<f64, AtomicU64>,
    pub(crate) tokens: Gauge<f64, AtomicU64>,
    pub(crate) paused: Gauge,
    pub(crate) in_flight: Gauge,
    pub(crate) duration: Histogram,
    pub(crate) audit_received: Counter,
    pub(crate) audit_distinct: Gauge,
    pub(crate) audit_duplicates: Counter,
    pub(crate) audit_order_violations: Counter,
    pub(crate) credits_granted: Counter,
    pub(crate) writes_on_credit: Counter,
    pub(crate) credit_polls: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::default();
        let m = Metrics {
            writes_accepted: Counter::default(),
            events_accepted: Counter::default(),
            rejected: Family::default(),
            held_total: Counter::default(),
            held: Gauge::default(),
            rate_limit: Gauge::default(),
            tokens: Gauge::default(),
            paused: Gauge::default(),
            in_flight: Gauge::default(),
            duration: Histogram::new(exponential_buckets(0.000_05, 2.0, 20)),
            audit_received: Counter::default(),
            audit_distinct: Gauge::default(),
            audit_duplicates: Counter::default(),
            audit_order_violations: Counter::default(),
            credits_granted: Counter::default(),
            writes_on_credit: Counter::default(),
            credit_polls: Counter::default(),
            registry: Registry::default(),
        };
        m.register_all(&mut registry);
        Metrics { registry, ..m }
    }
}

impl Metrics {
    /// Registers every metric. Names are given without the `_total` suffix: the encoder adds
    /// it to counters.
    fn register_all(&self, r: &mut Registry) {
        let m = self;
        r.register(
            "sinkd_writes_accepted",
            "Write requests accepted (a batch is one)",
            m.writes_accepted.clone(),
        );
        r.register(
            "sinkd_events_accepted",
            "Events accepted",
            m.events_accepted.clone(),
        );
        r.register(
            "sinkd_requests_rejected",
            "Requests refused, by reason",
            m.rejected.clone(),
        );
        r.register(
            "sinkd_requests_held",
            "Write requests that waited for tokens",
            m.held_total.clone(),
        );
        r.register(
            "sinkd_requests_held_now",
            "Write requests waiting for tokens now",
            m.held.clone(),
        );
        r.register(
            "sinkd_rate_limit",
            "Current write limit, writes/s (0 = off)",
            m.rate_limit.clone(),
        );
        r.register("sinkd_tokens", "Tokens in the bucket now", m.tokens.clone());
        r.register(
            "sinkd_paused",
            "1 while the sink is paused",
            m.paused.clone(),
        );
        r.register(
            "sinkd_requests_in_flight",
            "Requests being handled now",
            m.in_flight.clone(),
        );
        r.register(
            "sinkd_request_duration_seconds",
            "Time to answer a write, holding included",
            m.duration.clone(),
        );
        r.register(
            "sinkd_audit_received",
            "Events received, duplicates included",
            m.audit_received.clone(),
        );
        r.register(
            "sinkd_audit_distinct_ids",
            "Distinct event ids received",
            m.audit_distinct.clone(),
        );
        r.register(
            "sinkd_audit_duplicates",
            "Events whose id was already received",
            m.audit_duplicates.clone(),
        );
        r.register(
            "sinkd_audit_order_violations",
            "Events whose seq was lower than the last seen for their key",
            m.audit_order_violations.clone(),
        );
        r.register(
            "sinkd_credits_granted",
            "Credit granted to clients (tokens set aside for them)",
            m.credits_granted.clone(),
        );
        r.register(
            "sinkd_writes_on_credit",
            "Writes admitted on a client's credit",
            m.writes_on_credit.clone(),
        );
        r.register(
            "sinkd_credit_polls",
            "POST /credit calls answered",
            m.credit_polls.clone(),
        );
    }

    /// Counts a refused request.
    pub fn reject(&self, reason: &'static str) {
        self.rejected.get_or_create(&Reason { reason }).inc();
    }

    /// The Prometheus text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::with_capacity(4096);
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
