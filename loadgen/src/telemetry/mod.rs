//! The time series every command samples: [`Sample`], with its fields spelled out once in
//! [`FIELDS`]. The CSV a run writes, the CSV an experiment reads back, the chart fields and the
//! Prometheus exposition of `loadgen process` all come from that one table. [`Sampler`] turns
//! running totals into a sample, for the embedded pipeline and the Kafka processor alike;
//! [`Bounded`] holds a series in memory that does not grow with the run, and [`CsvWriter`]
//! writes the full one to disk as it goes.
//!
//! A leaf: it depends on nothing else in loadgen.

/// One row of the time series.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Sample {
    /// Seconds since the start.
    pub t: f64,
    /// The schedule's rate now, events/s.
    pub target_rate: f64,
    /// Events the source emitted per second over the last period.
    pub generated_rate: f64,
    /// Events acknowledged by the sink per second.
    pub delivered_rate: f64,
    /// Sink write requests acknowledged per second.
    pub writes_rate: f64,
    /// Events queued between transform and sink.
    pub queue_depth: u64,
    /// Their bytes.
    pub queue_bytes: u64,
    /// Events due by the schedule and not yet emitted: held back at the source.
    pub source_backlog: u64,
    /// Events due and not yet delivered, dropped or dead-lettered: the health signal.
    pub lag: u64,
    /// Resident memory of this process.
    pub rss_bytes: u64,
    /// Events dropped so far.
    pub dropped: u64,
    /// p99 latency over the last period, milliseconds.
    pub p99_ms: f64,
    /// The slow-source signal's rate, if any.
    pub signal_rate: f64,
    /// The sink writes' adaptive concurrency limit now (0 with `--concurrency fixed`).
    pub concurrency_limit: u64,
}

/// How a field is exposed on `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Not exposed (the sample's time).
    None,
    /// A gauge of whole numbers.
    IntGauge,
    /// A gauge of reals.
    Gauge,
    /// A counter (the encoder adds `_total`).
    Counter,
}

/// One field of a [`Sample`]: its CSV column (also its chart field), its metric, and how to
/// read and write it.
#[derive(Debug)]
pub struct Field {
    /// The CSV column and chart field.
    pub name: &'static str,
    metric: &'static str,
    help: &'static str,
    kind: Kind,
    /// The metric's value is the field's times this (milliseconds to seconds, say).
    scale: f64,
    /// Decimals in the CSV.
    decimals: usize,
    get: fn(&Sample) -> f64,
    set: fn(&mut Sample, f64),
}

macro_rules! field {
    ($name:ident, $metric:expr, $kind:ident, $scale:expr, $decimals:expr, $help:expr, f64) => {
        Field {
            name: stringify!($name),
            metric: $metric,
            help: $help,
            kind: Kind::$kind,
            scale: $scale,
            decimals: $decimals,
            get: |s| s.$name,
            set: |s, v| s.$name = v,
        }
    };
    ($name:ident, $metric:expr, $kind:ident, $help:expr, u64) => {
        Field {
            name: stringify!($name),
            metric: $metric,
            help: $help,
            kind: Kind::$kind,
            scale: 1.0,
            decimals: 0,
            get: |s| s.$name as f64,
            set: |s, v| s.$name = v as u64,
        }
    };
}

/// Every field of a [`Sample`], in CSV order.
pub static FIELDS: [Field; 14] = [
    field!(t, "", None, 1.0, 3, "Seconds since the start", f64),
    field!(
        target_rate,
        "loadgen_target_rate",
        Gauge,
        1.0,
        1,
        "Offered rate of the schedule, events/s",
        f64
    ),
    field!(
        generated_rate,
        "loadgen_generated_rate",
        Gauge,
        1.0,
        1,
        "Events the source emitted per second",
        f64
    ),
    field!(
        delivered_rate,
        "loadgen_delivered_rate",
        Gauge,
        1.0,
        1,
        "Events the sink acknowledged per second",
        f64
    ),
    field!(
        writes_rate,
        "loadgen_sink_writes_rate",
        Gauge,
        1.0,
        1,
        "Sink write requests acknowledged per second",
        f64
    ),
    field!(
        queue_depth,
        "loadgen_queue_depth",
        IntGauge,
        "Events queued between transform and sink",
        u64
    ),
    field!(
        queue_bytes,
        "loadgen_queue_bytes",
        IntGauge,
        "Bytes queued between transform and sink",
        u64
    ),
    field!(
        source_backlog,
        "loadgen_source_backlog",
        IntGauge,
        "Events due and held back at the source",
        u64
    ),
    field!(
        lag,
        "loadgen_lag",
        IntGauge,
        "Events due and not yet delivered, dropped or dead-lettered",
        u64
    ),
    field!(
        rss_bytes,
        "loadgen_process_resident_memory_bytes",
        IntGauge,
        "Resident memory of the processor",
        u64
    ),
    field!(
        dropped,
        "loadgen_dropped",
        Counter,
        "Events dropped so far",
        u64
    ),
    field!(
        p99_ms,
        "loadgen_latency_p99_seconds",
        Gauge,
        1e-3,
        3,
        "End-to-end p99 over the last sample period",
        f64
    ),
    field!(
        signal_rate,
        "loadgen_slow_source_rate",
        Gauge,
        1.0,
        1,
        "The slow-source signal's rate, events/s (0 when off)",
        f64
    ),
    field!(
        concurrency_limit,
        "loadgen_sink_concurrency_limit",
        IntGauge,
        "The sink writes' adaptive concurrency limit (0 when fixed)",
        u64
    ),
];

/// A field derived from the table's for charts: its name, and how.
type Derived = (&'static str, fn(&Sample) -> f64);

/// The derived fields.
static DERIVED: [Derived; 2] = [
    ("rss_mb", |s| s.rss_bytes as f64 / 1e6),
    ("queue_mb", |s| s.queue_bytes as f64 / 1e6),
];

impl Sample {
    /// The value of field `name` (a CSV column, or `rss_mb` / `queue_mb`).
    pub fn field(&self, name: &str) -> Option<f64> {
        FIELDS
            .iter()
            .find(|f| f.name == name)
            .map(|f| (f.get)(self))
            .or_else(|| {
                DERIVED
                    .iter()
                    .find(|(n, _)| *n == name)
                    .map(|(_, f)| f(self))
            })
    }
}

/// The chart fields, for error messages.
pub fn field_names() -> String {
    FIELDS
        .iter()
        .skip(1)
        .map(|f| f.name)
        .chain(DERIVED.iter().map(|(n, _)| *n))
        .collect::<Vec<_>>()
        .join(", ")
}

mod csv;
mod expose;
mod sampler;
mod series;

pub use csv::{CsvWriter, from_csv, to_csv};
pub use expose::{CONTENT_TYPE, encode, from_exposition, register, scrape};
pub use sampler::{Sampler, Totals, rss_bytes, sampling};
pub use series::{Bounded, Coarsen};

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::registry::Registry;
    use tokio::time::Instant;

    fn sample() -> Sample {
        Sample {
            t: 1.25,
            target_rate: 8000.0,
            generated_rate: 7999.5,
            delivered_rate: 2000.0,
            writes_rate: 2000.0,
            queue_depth: 10,
            queue_bytes: 5120,
            source_backlog: 3,
            lag: 42,
            rss_bytes: 1 << 20,
            dropped: 7,
            p99_ms: 12.5,
            signal_rate: 0.0,
            concurrency_limit: 12,
        }
    }

    #[test]
    fn a_series_survives_the_csv() {
        let series = vec![sample(), Sample::default()];
        assert_eq!(from_csv(&to_csv(&series)).unwrap(), series);
    }

    #[test]
    fn a_corrupt_csv_is_an_error_not_zeros() {
        let mut text = to_csv(&[sample()]);
        text = text.replace("42", "forty-two");
        let e = from_csv(&text).unwrap_err().to_string();
        assert!(e.contains("line 2") && e.contains("'lag'"), "{e}");
        let e = from_csv("t,lag\n1,2\n").unwrap_err().to_string();
        assert!(e.contains("no column 'target_rate'"), "{e}");
    }

    #[test]
    fn fields_are_found_by_name_with_the_derived_ones() {
        let s = sample();
        assert_eq!(s.field("lag"), Some(42.0));
        assert_eq!(s.field("rss_mb"), Some((1 << 20) as f64 / 1e6));
        assert_eq!(s.field("nope"), None);
        assert!(field_names().contains("queue_mb"));
    }

    #[test]
    fn the_exposition_names_every_metric_once() {
        let mut r = Registry::default();
        register(&mut r, &sample());
        let text = encode(&r);
        assert!(text.contains("\nloadgen_lag 42\n"), "{text}");
        assert!(text.contains("# TYPE loadgen_dropped counter"), "{text}");
        assert!(text.contains("\nloadgen_dropped_total 7\n"), "{text}");
        assert!(
            text.contains("\nloadgen_latency_p99_seconds 0.0125\n"),
            "{text}"
        );
        assert_eq!(text.matches("# HELP").count(), 13);
        assert_eq!(scrape(&text, "loadgen_lag"), 42.0);
    }

    #[test]
    fn a_sample_survives_its_exposition() {
        let mut r = Registry::default();
        register(&mut r, &sample());
        let back = from_exposition(&encode(&r));
        // Everything but the time, which the exposition does not carry.
        assert_eq!(back, Sample { t: 0.0, ..sample() });
        assert_eq!(from_exposition("garbage"), Sample::default());
    }

    #[test]
    fn a_metric_sums_over_its_label_sets_and_ignores_its_prefixes() {
        let text = "# HELP lag x\nlag{p=\"0\"} 3\nlag{p=\"1\"} 4\nlag_total 100\n";
        assert_eq!(scrape(text, "lag"), 7.0);
        assert_eq!(scrape(text, "missing"), 0.0);
    }

    #[tokio::test(start_paused = true)]
    async fn after_a_stall_the_next_sample_is_a_whole_period_away() {
        let period = std::time::Duration::from_millis(250);
        let mut tick = sampling(period);
        tick.tick().await;
        // A stall of four periods: one tick is due at once, and none in a burst after it.
        tokio::time::advance(period * 4).await;
        let stalled = Instant::now();
        tick.tick().await;
        assert_eq!(Instant::now(), stalled);
        tick.tick().await;
        assert_eq!(Instant::now() - stalled, period);
    }

    #[tokio::test(start_paused = true)]
    async fn rates_are_the_change_since_the_last_sample() {
        let mut s = Sampler::new(Instant::now());
        tokio::time::advance(std::time::Duration::from_secs(1)).await;
        let a = s.sample(Totals {
            emitted: 100,
            delivered: 50,
            writes: 5,
            ..Totals::default()
        });
        assert_eq!(
            (a.generated_rate, a.delivered_rate, a.writes_rate),
            (100.0, 50.0, 5.0)
        );
        tokio::time::advance(std::time::Duration::from_millis(500)).await;
        let b = s.sample(Totals {
            emitted: 200,
            delivered: 100,
            writes: 10,
            ..Totals::default()
        });
        assert_eq!(b.generated_rate, 200.0);
        assert_eq!(b.t, 1.5);
    }
}
