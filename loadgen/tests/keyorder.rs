//! `loadgen keyorder` against the real broker, small: every record processed once in each mode,
//! key order and partition order keep each key's order (the check counts what unordered
//! breaks), and each group's commit reaches the log's end. Times are reported, not asserted.

mod support;

use support::{loadgen, temp};
use testbroker::broker_or_skip;

#[test]
fn key_order_keeps_each_keys_order_and_commits_everything() {
    let broker = broker_or_skip!();
    let out = temp("keyorder");
    let status = loadgen()
        .args([
            "keyorder",
            "--records",
            "400",
            "--keys",
            "20",
            "--work-max",
            "2ms",
        ])
        .args(["--workers", "32", "--bootstrap-servers"])
        .arg(broker.bootstrap())
        .arg("--out")
        .arg(&out)
        .stdout(std::process::Stdio::null())
        .status()
        .expect("loadgen runs");
    assert!(status.success(), "keyorder failed: {status}");
    let text = std::fs::read_to_string(out.join("keyorder.json")).expect("keyorder.json");
    let report: serde_json::Value = serde_json::from_str(&text).expect("JSON");
    let modes = report["modes"].as_array().expect("modes");
    assert_eq!(modes.len(), 3);
    for m in modes {
        assert_eq!(m["processed"], 400, "{m}");
        assert_eq!(m["committed"], 400, "the commit reaches the log's end: {m}");
        if m["mode"] != "unordered" {
            assert_eq!(m["order_violations"], 0, "{m}");
        }
        assert!(m["seconds"].as_f64().is_some_and(|s| s > 0.0), "{m}");
    }
    assert_eq!(modes[0]["workers"], 1, "partition order has one worker");
}

#[test]
fn bad_counts_are_refused_with_the_flag_named() {
    let out = loadgen()
        .args([
            "keyorder",
            "--records",
            "0",
            "--bootstrap-servers",
            "127.0.0.1:9",
        ])
        .output()
        .expect("loadgen runs");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--records"), "{err}");
}
