//! A short smoke of `loadgen experiment --kafka` against the real broker: experiment 7 (buffer,
//! two kinds of shedding, slow-source) with every run going producer → topic → `loadgen
//! process` → sinkd. Each run must account for every record the broker holds (delivered,
//! dropped by its policy, dead-lettered, or still in Kafka past the commit), read its lag from
//! the broker, and each policy must do what it says: buffer drops nothing, shedding drops,
//! slow-source slows the producer and drops nothing.

mod support;

use support::{loadgen, temp};
use testbroker::broker_or_skip;

fn report(dir: &std::path::Path, run: &str) -> serde_json::Value {
    let path = dir.join(run).join("report.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).expect("report.json is JSON")
}

fn n(r: &serde_json::Value, field: &str) -> i64 {
    r[field]
        .as_i64()
        .or_else(|| r[field].as_f64().map(|f| f as i64))
        .unwrap_or_else(|| panic!("no {field} in {r}"))
}

#[test]
fn experiment_7_over_kafka_accounts_for_every_record() {
    let broker = broker_or_skip!();
    let out = temp("experiment-7");
    let status = loadgen()
        .args(["experiment", "7", "--quiet", "--time-scale", "0.004"])
        .args(["--configs", "experiments", "--bootstrap-servers"])
        .arg(broker.bootstrap())
        .arg("--out")
        .arg(&out)
        .stdout(std::process::Stdio::null())
        .status()
        .expect("loadgen runs");
    assert!(status.success(), "experiment 7 --kafka failed: {status}");
    let summary = std::fs::read_to_string(out.join("summary.md")).expect("summary.md");
    assert!(summary.contains("left in Kafka"), "{summary}");
    for run in ["buffer", "shed-drop-oldest", "shed-priority", "slow-source"] {
        let r = report(&out, run);
        assert_eq!(r["over_kafka"], true, "{run}");
        let produced = n(&r, "produced");
        // 8,000/s for 7.2 s, except where the producer is told to back off.
        let floor = if run == "slow-source" { 1_000 } else { 40_000 };
        assert!(produced > floor, "{run}: the producer wrote {produced}");
        let accounted = n(&r, "delivered")
            + n(&r["dropped"], "total")
            + n(&r, "dead_lettered")
            + n(&r, "left_in_source");
        assert!(
            accounted >= produced,
            "{run}: {accounted} of {produced} accounted for: {r}"
        );
        assert_eq!(n(&r, "lost"), 0, "{run}: {r}");
        // Writes that finished after the last commit: at most what the workers hold.
        assert!(n(&r, "delivered_uncommitted") <= 4 * 16 + 200, "{run}: {r}");
        // The lag is the broker's, and the 4x imbalance built some.
        assert!(n(&r, "lag_max") > 1_000, "{run}: {r}");
        let csv = std::fs::read_to_string(out.join(run).join("timeseries.csv")).expect("csv");
        assert!(csv.lines().count() > 10, "{run}: {csv}");
    }
    assert_eq!(n(&report(&out, "buffer")["dropped"], "total"), 0);
    assert!(n(&report(&out, "shed-drop-oldest")["dropped"], "total") > 0);
    let slow = report(&out, "slow-source");
    assert_eq!(n(&slow["dropped"], "total"), 0);
    let (sent, offered) = (
        slow["generated_rate"].as_f64().unwrap(),
        slow["target_rate"].as_f64().unwrap(),
    );
    assert!(
        sent < offered * 0.9,
        "slow-source: the producer sent {sent:.0}/s of {offered:.0}/s"
    );
    for chart in ["generated.svg", "dropped.svg", "p99.svg"] {
        assert!(out.join(chart).is_file(), "{chart}");
    }
}

#[test]
fn autoscale_adds_members_when_lag_grows_and_never_more_than_partitions() {
    let broker = broker_or_skip!();
    let out = temp("autoscale");
    // One member writes about 1,000/s (4 writers, 4 ms a write); 4,000/s needs more of them.
    let status = loadgen()
        .args(["autoscale", "--partitions", "3", "--step", "4000@25s"])
        .args(["--stop-after", "40s", "--window", "3s", "--cooldown", "6s"])
        .args(["--sink-latency", "4ms", "--bootstrap-servers"])
        .arg(broker.bootstrap())
        .arg("--out")
        .arg(&out)
        .stdout(std::process::Stdio::null())
        .status()
        .expect("loadgen runs");
    assert!(status.success(), "autoscale failed: {status}");
    let text = std::fs::read_to_string(out.join("autoscale.json")).expect("autoscale.json");
    let v: serde_json::Value = serde_json::from_str(&text).expect("JSON");
    let decisions = v["decisions"].as_array().expect("decisions");
    assert!(!decisions.is_empty(), "no member added: {text}");
    assert_eq!(decisions[0]["from"], 1);
    assert_eq!(decisions[0]["to"], 2);
    let readings = v["readings"].as_array().expect("readings");
    let most = readings
        .iter()
        .filter_map(|r| r["members"].as_u64())
        .max()
        .unwrap_or(0);
    assert!((2..=3).contains(&most), "members peaked at {most}");
    assert_eq!(v["costs"].as_array().map(Vec::len), Some(decisions.len()));
    for chart in ["throughput.svg", "members.svg", "lag.svg"] {
        assert!(out.join(chart).is_file(), "{chart}");
    }
}
