//! The experiment's tables (summary.md) and its analysis (experiment.json).

use super::Done;
use super::Kind;
use super::load::Loaded;
use super::measure::steady_mean;
use crate::cli::ExperimentArgs;

/// Writes summary.md and experiment.json, and prints the table.
pub(super) fn write(l: &Loaded, args: &ExperimentArgs, done: &Done<'_>) -> anyhow::Result<()> {
    let config = &l.config;
    let mut table = format!("# {}\n\n{}\n\n", config.title, config.question);
    table.push_str(&runs_table(done));
    if config.kind == Kind::Stall {
        table.push_str(&stall_table(done));
    }
    if done.results.iter().any(|r| r.cliff.is_some()) {
        table.push_str(&super::cliff::table(done));
    }
    std::fs::write(l.out.join("summary.md"), &table)?;
    std::fs::write(
        l.out.join("experiment.json"),
        serde_json::to_string_pretty(&serde_json::json!({
            "name": config.name,
            "time_scale": args.time_scale,
            "runs": done.results,
        }))?,
    )?;
    println!("{table}\nwrote {}", l.out.display());
    Ok(())
}

fn runs_table(done: &Done<'_>) -> String {
    // Over Kafka, what the group had not consumed when the run stopped is a column of its own.
    let kafka = done.outcomes.iter().any(|(_, o, _)| o.report.over_kafka);
    let (left_head, left_rule) = if kafka {
        (" left in Kafka |", "---|")
    } else {
        ("", "")
    };
    let mut table = format!(
        "| run | delivered/s (steady) | produced | delivered | dropped | dead-lettered |{left_head} lost | order violations | p99 ms | RSS peak MB | queue high-water | bottleneck |\n|---|---|---|---|---|---|{left_rule}---|---|---|---|---|---|\n",
    );
    for ((spec, o, total), result) in done.outcomes.iter().zip(&done.results) {
        if let Some(c) = result.cliff.as_ref().filter(|c| c.fate.died()) {
            let cells = " — |".repeat(8);
            let rss = o.report.rss_peak_bytes as f64 / 1e6;
            table.push_str(&format!(
                "| {} (died at {:.1} s) |{cells} {rss:.1} | — | {} |\n",
                spec.label,
                c.died_at_s.unwrap_or(0.0),
                c.fate
            ));
            continue;
        }
        let r = &o.report;
        let left = if kafka {
            format!(" {} |", r.left_in_source)
        } else {
            String::new()
        };
        table.push_str(&format!(
            "| {} | {:.0} | {} | {} | {} | {} |{left} {} | {} | {:.1} | {:.1} | {} | {} |\n",
            spec.label,
            steady_mean(o, |x| x.delivered_rate, *total),
            r.produced,
            r.delivered,
            r.dropped.total,
            r.dead_lettered,
            r.lost,
            r.ordering_violations,
            r.latency_ms.p99,
            r.rss_peak_bytes as f64 / 1e6,
            r.queue.high_water,
            r.bottleneck
        ));
    }
    table
}

fn stall_table(done: &Done<'_>) -> String {
    let mut table = String::from(
        "\n| run | lag before | lag growth /s during the stall | peak lag | recovery s | theoretical drain s | ratio |\n|---|---|---|---|---|---|---|\n",
    );
    for r in &done.results {
        if let Some(a) = r.stall {
            table.push_str(&format!(
                "| {} | {:.0} | {:.0} | {:.0} | {} | {:.1} | {} |\n",
                r.label,
                a.lag_before,
                a.lag_growth_per_s,
                a.lag_peak,
                a.recovery_s
                    .map_or("not within the run".into(), |v| format!("{v:.1}")),
                a.theoretical_drain_s,
                a.recovery_ratio.map_or("-".into(), |v| format!("{v:.2}"))
            ));
        }
    }
    table
}
