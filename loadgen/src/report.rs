//! `report.json`: what a run produced, delivered, dropped and cost.

use serde::{Deserialize, Serialize};

/// How the sink met its limit: what it refused, what it held, what went on credit.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq)]
pub struct SinkLimit {
    /// Writes refused for the rate (429): requests wasted, each retried.
    pub refused: u64,
    /// Writes held on the server until their tokens came (`--sink-on-limit delay`).
    pub held: u64,
    /// Writes admitted on credit (`--sink-on-limit credit`).
    pub on_credit: u64,
    /// `POST /credit` calls: the credit's own requests.
    pub credit_polls: u64,
}

impl SinkLimit {
    /// Reads sinkd's counters from its `/metrics` text.
    pub fn from_metrics(text: &str) -> SinkLimit {
        use crate::telemetry::scrape;
        // The one labelled sample: refusals for the rate, not for other reasons.
        let rate_limited = "sinkd_requests_rejected_total{reason=\"rate_limited\"} ";
        let refused = text
            .lines()
            .find_map(|l| l.strip_prefix(rate_limited))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .unwrap_or(0.0);
        let value = |name: &str| scrape(text, name) as u64;
        SinkLimit {
            refused: refused as u64,
            held: value("sinkd_requests_held_total"),
            on_credit: value("sinkd_writes_on_credit_total"),
            credit_polls: value("sinkd_credit_polls_total"),
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Report {
    /// Events the generator emitted.
    pub produced: u64,
    /// Distinct events the sink acknowledged (its own audit when the sink is sinkd).
    pub delivered: u64,
    /// Whether `delivered` comes from the sink's own audit (otherwise it counts the sink's
    /// acknowledgements: what the sink kept is unknown).
    #[serde(default)]
    pub audited: bool,
    /// Events dropped, by reason.
    pub dropped: Dropped,
    /// Events that exhausted their retries or failed for good, in the dead-letter file.
    pub dead_lettered: u64,
    /// Events the sink received more than once (retries after a lost answer).
    pub duplicates: u64,
    /// Events whose per-key sequence went backwards at the sink.
    pub ordering_violations: u64,
    /// Ids in 0..produced the sink never received.
    pub missing: u64,
    /// produced - delivered - dropped - dead_lettered - left_in_source: 0 unless something
    /// vanished.
    pub lost: i64,
    /// Whether events crossed a Kafka topic on their way (`experiment --kafka`).
    #[serde(default)]
    pub over_kafka: bool,
    /// Over Kafka: records still in the topic past the group's commit when the run stopped.
    /// Not lost: the group's next member reads them from the commit.
    #[serde(default)]
    pub left_in_source: u64,
    /// Over Kafka: records the sink has although the group had not committed them when the run
    /// stopped (writes that finished after the last commit). A restart replays them: the
    /// duplicates a stop costs.
    #[serde(default)]
    pub delivered_uncommitted: u64,
    /// The sink's limit, writes/s (0 when unknown).
    pub sink_ceiling_writes_per_s: f64,
    /// Acknowledged writes/s over the overload window, divided by the ceiling.
    pub sink_utilization: f64,
    /// Whether the offered rate ever exceeded the sink's ceiling (then utilization and the RSS
    /// slope are judged over those windows; otherwise over the whole schedule).
    #[serde(default)]
    pub overloaded: bool,
    /// The largest resident set size sampled.
    pub rss_peak_bytes: u64,
    /// How fast RSS grew over the overload window (least squares), bytes/s.
    pub rss_slope_bytes_per_s: f64,
    /// What the sink's audit says it holds at the end (sinkd's estimate of its id set and
    /// per-key map), bytes; 0 without an audit. With the embedded sinkd (no `--sink-url`) it
    /// is part of this process's RSS: the rest of the RSS is the pipeline's and the sink's
    /// fixed costs.
    #[serde(default)]
    pub sink_audit_bytes: u64,
    /// End-to-end latency from each event's intended send time to the sink's acknowledgement.
    pub latency_ms: Latency,
    /// The largest lag sampled: events due and not yet delivered, dropped or dead-lettered.
    pub lag_max: u64,
    /// Events the generator sent late although the pipeline was asking for them.
    pub missed_sends: u64,
    /// The stage limiting throughput, and why.
    pub bottleneck: String,
    /// Mean offered rate of the schedule, events/s.
    pub target_rate: f64,
    /// Mean rate the generator achieved, events/s.
    pub generated_rate: f64,
    /// produced / due - 1: how far the generator fell short of (or beyond) its schedule.
    pub rate_error: f64,
    /// How long the run took, drain included, seconds.
    pub duration_s: f64,
    /// Write retries.
    pub retries: u64,
    /// The embedded sinkd's own counts of how it met its limit (0 with an external sink, whose
    /// counters span more than this run).
    #[serde(default)]
    pub sink_limit: SinkLimit,
    /// Writes (batches) the sink workers started.
    #[serde(default)]
    pub writes: u64,
    /// Of those, the writes `--batch-size auto` sized for a congested sink (waiting for the
    /// events that arrive during one write instead of sending at once); 0 with a fixed size.
    #[serde(default)]
    pub writes_congested: u64,
    /// Write attempts (first tries and retries) and the sink writes' concurrency limit.
    #[serde(default)]
    pub concurrency: ConcurrencySummary,
    /// The queue.
    pub queue: QueueSummary,
    /// Whether the pipeline drained before the drain timeout.
    pub drained: bool,
    /// The plan that ran.
    #[serde(default)]
    pub plan: serde_json::Value,
}

/// The sink writes' attempts and, with an adaptive `--concurrency`, their limit.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ConcurrencySummary {
    /// `fixed`, `adaptive` or `arc`.
    pub mode: String,
    /// Write attempts made, retries included.
    pub attempts: u64,
    /// Attempts the sink answered 429.
    pub rejected_429: u64,
    /// The limit at the end (0 when fixed).
    pub final_limit: u64,
    /// The limit's mean over the samples (0 when fixed).
    pub mean_limit: f64,
    /// Times the limit grew and shrank.
    pub increases: u64,
    pub decreases: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Dropped {
    pub newest: u64,
    pub oldest: u64,
    /// Per priority class.
    pub priority: Vec<u64>,
    /// Discarded when an unbounded queue's safety cap ended the run.
    #[serde(default)]
    pub overflow: u64,
    /// Still queued when the drain timed out.
    pub abandoned: u64,
    pub total: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Latency {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
}

impl Latency {
    /// Percentiles in ms of a histogram in µs (all 0 when it is empty).
    pub fn from_histogram(h: &hdrhistogram::Histogram<u64>) -> Latency {
        if h.is_empty() {
            return Latency::default();
        }
        let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
        Latency {
            p50: ms(0.5),
            p90: ms(0.9),
            p99: ms(0.99),
            p999: ms(0.999),
            max: h.max() as f64 / 1000.0,
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct QueueSummary {
    pub high_water: u64,
    pub high_water_bytes: u64,
    pub blocked_s: f64,
    pub overflowed: bool,
    /// A bounded queue: when the trend of its depth first predicted it full (seconds into the
    /// run; `None`: never).
    #[serde(default)]
    pub fill_warned_s: Option<f64>,
    /// A bounded queue: when it was first sampled full (at 98% of its capacity: a blocking
    /// queue at capacity is sampled a few items short of it).
    #[serde(default)]
    pub full_at_s: Option<f64>,
}

pub fn mb(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

impl Dropped {
    /// The total and its reasons, in a line.
    fn line(&self) -> String {
        format!(
            "{} (newest {}, oldest {}, priority {:?}, abandoned {})",
            self.total, self.newest, self.oldest, self.priority, self.abandoned
        )
    }
}

impl Report {
    /// What the sink has, as far as is known.
    pub fn delivery_line(&self) -> String {
        if self.audited {
            format!("the sink's audit has {} of them", self.delivered)
        } else {
            format!(
                "the sink acknowledged {}; its audit could not be read, so what it kept is unknown",
                self.delivered
            )
        }
    }

    /// Where the excess went, in a sentence or two, from the numbers.
    pub fn interpretation(&self) -> String {
        let mut out = Vec::new();
        if self.sink_utilization > 0.0 {
            out.push(if self.overloaded {
                format!(
                    "The sink ran at {:.0}% of its ceiling while it was overloaded.",
                    self.sink_utilization * 100.0
                )
            } else {
                format!(
                    "The sink ran at {:.0}% of its ceiling; the offered load never exceeded it.",
                    self.sink_utilization * 100.0
                )
            });
        }
        let queued_mb = self.queue.high_water_bytes as f64 / 1e6;
        if self.dropped.total > 0 {
            out.push(format!(
                "{} events were dropped and counted ({} shed by policy, {} still queued when the drain timed out).",
                self.dropped.total,
                self.dropped.total - self.dropped.abandoned,
                self.dropped.abandoned
            ));
        }
        if self.generated_rate < self.target_rate * 0.98 && self.lag_max > 0 {
            out.push(format!(
                "The source was slowed to {:.0}/s of the {:.0}/s offered: the excess (lag up to {} events) waited at the source, not in memory; the queue never held more than {} events ({queued_mb:.1} MB) and RSS peaked at {:.1} MB.",
                self.generated_rate, self.target_rate, self.lag_max, self.queue.high_water, self.rss_peak_bytes as f64 / 1e6
            ));
        } else if self.queue.high_water > 100_000 {
            out.push(format!(
                "Nothing slowed the source: the excess went to the heap ({} events, {queued_mb:.1} MB queued; RSS grew {:.1} MB/s).",
                self.queue.high_water,
                self.rss_slope_bytes_per_s / 1e6
            ));
        }
        if self.over_kafka && self.lag_max > 0 {
            out.push(format!(
                "Kafka held the rest as lag: up to {} records, {} still there when the run stopped (not lost: the group's next member reads them from its commit).",
                self.lag_max, self.left_in_source
            ));
        }
        if self.lost != 0 {
            out.push(format!(
                "{} events are unaccounted for: investigate.",
                self.lost
            ));
        }
        out.join(" ")
    }

    /// The summary for stdout.
    pub fn summary(&self) -> String {
        let mut rows = vec![
            ("produced", self.produced.to_string()),
            ("delivered", self.delivered.to_string()),
            ("dropped", self.dropped.line()),
            ("dead-lettered", self.dead_lettered.to_string()),
            ("lost", self.lost.to_string()),
            ("left in Kafka", self.left_in_source.to_string()),
            (
                "delivered, not committed",
                self.delivered_uncommitted.to_string(),
            ),
            (
                "duplicates / order violations",
                format!("{} / {}", self.duplicates, self.ordering_violations),
            ),
            (
                "offered / generated",
                format!(
                    "{:.0}/s / {:.0}/s ({:.1}% of the schedule)",
                    self.target_rate,
                    self.generated_rate,
                    (1.0 + self.rate_error) * 100.0
                ),
            ),
            (
                "sink utilization",
                format!(
                    "{:.3} of {:.0} writes/s",
                    self.sink_utilization, self.sink_ceiling_writes_per_s
                ),
            ),
            (
                "latency p50 / p99 / p99.9 / max",
                format!(
                    "{:.1} / {:.1} / {:.1} / {:.1} ms",
                    self.latency_ms.p50,
                    self.latency_ms.p99,
                    self.latency_ms.p999,
                    self.latency_ms.max
                ),
            ),
            ("lag max", self.lag_max.to_string()),
            (
                "queue high-water",
                format!(
                    "{} events, {}",
                    self.queue.high_water,
                    mb(self.queue.high_water_bytes)
                ),
            ),
            (
                "RSS peak / slope",
                format!(
                    "{} / {:+.0} KB/s",
                    mb(self.rss_peak_bytes),
                    self.rss_slope_bytes_per_s / 1e3
                ),
            ),
            (
                "sink audit holds",
                format!("{:.1} KB", self.sink_audit_bytes as f64 / 1e3),
            ),
            ("missed sends", self.missed_sends.to_string()),
            ("bottleneck", self.bottleneck.clone()),
        ];
        if !self.over_kafka {
            rows.retain(|(k, _)| *k != "left in Kafka" && *k != "delivered, not committed");
        }
        let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
        rows.iter()
            .map(|(k, v)| format!("  {k:<width$}  {v}\n"))
            .collect()
    }
}
