//! Short real runs of `loadgen sweep` and `loadgen concurrency` against the embedded sinkd over
//! loopback: the commands the README's measurements are made with must run and leave what they
//! say they leave.

mod support;

use std::path::Path;

fn loadgen(args: &[&str], out: &Path) -> String {
    let o = support::loadgen()
        .args(args)
        .arg("--out")
        .arg(out)
        .output()
        .expect("loadgen runs");
    let stdout = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        o.status.success(),
        "loadgen {args:?} failed: {stdout}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    stdout
}

fn report(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

fn n(v: &serde_json::Value, path: &str) -> u64 {
    path.split('.')
        .fold(v, |v, k| &v[k])
        .as_u64()
        .unwrap_or_else(|| panic!("{path} missing in {v}"))
}

#[test]
fn a_sweep_over_the_ways_of_meeting_the_limit_counts_429s_holds_and_credit() {
    let dir = support::temp("cmd-sweep");
    let table = loadgen(
        &[
            "sweep",
            "--on-limit",
            "reject,delay,credit",
            "--time-scale",
            "0.05",
            "--quiet",
        ],
        &dir,
    );
    assert!(table.contains("on-limit=credit"), "{table}");
    assert!(dir.join("sweep.md").exists());
    assert!(
        dir.join("delivered.svg").exists(),
        "a category varies: the timeline chart"
    );
    let credit = report(&dir.join("on-limit_credit/report.json"));
    assert_eq!(
        n(&credit, "sink_limit.refused"),
        0,
        "a write on credit was refused"
    );
    assert_eq!(n(&credit, "sink_limit.held"), 0);
    assert!(
        n(&credit, "sink_limit.on_credit") > 0,
        "nothing went on credit"
    );
    assert_eq!(credit["lost"].as_i64(), Some(0));
    let delay = report(&dir.join("on-limit_delay/report.json"));
    assert!(
        n(&delay, "sink_limit.held") > 0,
        "the peak outruns the sink: delay holds"
    );
    assert_eq!(n(&delay, "sink_limit.on_credit"), 0);
    let reject = report(&dir.join("on-limit_reject/report.json"));
    assert_eq!(n(&reject, "sink_limit.held"), 0);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn loadgen_concurrency_runs_statics_arc_and_ours_and_draws_the_limit() {
    let dir = support::temp("cmd-concurrency");
    loadgen(
        &[
            "concurrency",
            "--modes",
            "credit",
            "--static",
            "8",
            "--max",
            "16",
            "--time-scale",
            "0.1",
            "--repeat",
            "1",
            "--quiet",
        ],
        &dir,
    );
    let md = std::fs::read_to_string(dir.join("concurrency.md")).expect("concurrency.md");
    for row in ["static 8", "ARC", "ours (adaptive)"] {
        assert!(md.contains(row), "no '{row}' row in:\n{md}");
    }
    assert!(dir.join("limit-credit.svg").exists());
    let _ = std::fs::remove_dir_all(&dir);
}
