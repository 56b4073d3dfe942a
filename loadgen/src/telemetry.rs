//! Telemetry shared by every command: reading a value off a Prometheus exposition.

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

#[cfg(test)]
mod tests {
    #[test]
    fn a_metric_sums_over_its_label_sets_and_ignores_its_prefixes() {
        let text = "# HELP lag x\nlag{p=\"0\"} 3\nlag{p=\"1\"} 4\nlag_total 100\n";
        assert_eq!(super::scrape(text, "lag"), 7.0);
        assert_eq!(super::scrape(text, "missing"), 0.0);
    }
}
