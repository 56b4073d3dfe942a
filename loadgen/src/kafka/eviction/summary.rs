//! The experiment's table: one row per run, or with repeats, min / median / max per figure.

use super::EvictionResult;
use crate::analysis::min_median_max;

fn cell(xs: &[f64]) -> String {
    let (lo, mid, hi) = min_median_max(xs);
    if lo == hi {
        format!("{mid:.0}")
    } else {
        format!("{lo:.0} / **{mid:.0}** / {hi:.0}")
    }
}

/// The summary in Markdown.
pub fn markdown(title: &str, question: &str, results: &[Vec<EvictionResult>]) -> String {
    let repeats = results.iter().map(Vec::len).max().unwrap_or(1);
    let mut md = format!("# {title}\n\n{question}\n\n");
    if repeats > 1 {
        md.push_str(&format!(
            "{repeats} repeats of each run; each cell is min / **median** / max.\n\n"
        ));
    }
    md.push_str(
        "| run | evictions | rebalances | duplicates | duplicates % of produced | undelivered at stop | purged on revoke | stalls (recovery steps) | stalled at end | max lag |\n|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for reps in results {
        let Some(first) = reps.first() else { continue };
        let col = |f: fn(&EvictionResult) -> f64| -> String {
            cell(&reps.iter().map(f).collect::<Vec<_>>())
        };
        let pct: Vec<f64> = reps
            .iter()
            .map(|r| 100.0 * r.duplicates as f64 / r.produced.max(1) as f64)
            .collect();
        let (lo, mid, hi) = min_median_max(&pct);
        md.push_str(&format!(
            "| {} | {} | {} | {} | {lo:.2} / {mid:.2} / {hi:.2} | {} | {} | {} ({}) | {} | {} |\n",
            first.label,
            col(|r| r.evictions as f64),
            col(|r| r.rebalances as f64),
            col(|r| r.duplicates as f64),
            col(|r| r.missing as f64),
            col(|r| r.revoked_unsent as f64),
            col(|r| r.stalls as f64),
            col(|r| r.stall_recoveries as f64),
            col(|r| r.stalled_at_end as f64),
            col(|r| r.lag_max),
        ));
    }
    md
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn min_median_max_of_odd_and_even_counts() {
        assert_eq!(min_median_max(&[5.0, 1.0, 3.0]), (1.0, 3.0, 5.0));
        assert_eq!(min_median_max(&[4.0, 1.0, 3.0, 2.0]), (1.0, 2.0, 4.0));
        assert_eq!(min_median_max(&[7.0]), (7.0, 7.0, 7.0));
        assert!(min_median_max(&[]).1.is_nan());
    }

    #[test]
    fn a_repeated_run_shows_its_spread() {
        let r = |dups| EvictionResult {
            label: "decoupled".into(),
            evictions: 0,
            rebalances: 3,
            produced: 1000,
            distinct: 1000,
            duplicates: dups,
            missing: 0,
            lag_max: 10.0,
            survivor_lag_peak: 0.0,
            first_eviction_s: None,
            revoked_unsent: 0,
            revoked_in_flight: 0,
            stalls: 0,
            stall_recoveries: 0,
            stalled_at_end: 0,
        };
        let md = markdown("t", "q", &[vec![r(0), r(10), r(4)]]);
        assert!(md.contains("3 repeats"), "{md}");
        assert!(
            md.contains("| decoupled | 0 | 3 | 0 / **4** / 10 | 0.00 / 0.40 / 1.00 |"),
            "{md}"
        );
    }
}
