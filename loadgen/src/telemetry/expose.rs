//! The Prometheus exposition of a [`Sample`] (through `prometheus-client`), and reading a
//! value back from such a text.

use std::sync::atomic::AtomicU64;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::{FIELDS, Kind, Sample};

/// Registers `s`'s fields in `registry` (values as of now).
pub fn register(registry: &mut Registry, s: &Sample) {
    for f in FIELDS.iter() {
        let v = (f.get)(s) * f.scale;
        match f.kind {
            Kind::None => {}
            Kind::IntGauge => {
                let g: Gauge = Gauge::default();
                g.set(v as i64);
                registry.register(f.metric, f.help, g);
            }
            Kind::Gauge => {
                let g: Gauge<f64, AtomicU64> = Gauge::default();
                g.set(v);
                registry.register(f.metric, f.help, g);
            }
            Kind::Counter => {
                let c: Counter = Counter::default();
                c.inc_by(v as u64);
                registry.register(f.metric, f.help, c);
            }
        }
    }
}

/// Encodes a registry as OpenMetrics text.
pub fn encode(registry: &Registry) -> String {
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut out, registry);
    out
}

/// A sample read back from the exposition [`register`] wrote (another process's `/metrics`):
/// every field the exposition carries, by the same table; `t` is 0.
pub fn from_exposition(text: &str) -> Sample {
    let mut s = Sample::default();
    for f in FIELDS.iter() {
        let name = match f.kind {
            Kind::None => continue,
            Kind::Counter => format!("{}_total", f.metric),
            Kind::IntGauge | Kind::Gauge => f.metric.to_string(),
        };
        (f.set)(&mut s, scrape(text, &name) / f.scale);
    }
    s
}

/// The content type of [`encode`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The sum of every sample of metric `name` (over its label sets) in Prometheus text; 0 when
/// there is none.
pub fn scrape(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit_once(' '))
        .filter(|(k, _)| k.split('{').next() == Some(name))
        .filter_map(|(_, v)| v.parse::<f64>().ok())
        .sum()
}
