//! Bad input gets a clear error before anything runs.

use std::process::Command;

fn loadgen(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args(args)
        .output()
        .expect("loadgen runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_bad_flag_value_names_the_flag_and_the_allowed_values() {
    let (code, _, err) = loadgen(&["run", "--queue", "sideways"]);
    assert_eq!(code, 2);
    assert!(
        err.contains("--queue")
            && err.contains("bounded")
            && err.contains("unbounded")
            && err.contains("pull")
            && err.contains("spill"),
        "{err}"
    );
    let (_, _, err) = loadgen(&["run", "--policy", "pray"]);
    assert!(
        err.contains("--policy")
            && err.contains("buffer")
            && err.contains("shed")
            && err.contains("slow-source"),
        "{err}"
    );
    let (_, _, err) = loadgen(&["run", "--shed", "random"]);
    assert!(
        err.contains("drop-newest") && err.contains("drop-oldest") && err.contains("priority"),
        "{err}"
    );
}

#[test]
fn spill_flags_are_checked_before_anything_runs() {
    let (code, _, err) = loadgen(&["run", "--queue", "spill", "--spill-max", "1KiB", "--quiet"]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("--spill-max") && err.contains("64KiB"),
        "{err}"
    );
    let (code, _, err) = loadgen(&["run", "--spill-fsync", "sometimes"]);
    assert_eq!(code, 2);
    assert!(
        err.contains("--spill-fsync")
            && err.contains("always")
            && err.contains("never")
            && err.contains("100ms"),
        "{err}"
    );
    let (_, _, err) = loadgen(&["run", "--spill-max", "lots"]);
    assert!(err.contains("--spill-max"), "{err}");
    let (_, _, err) = loadgen(&["run", "--spill-dir", "/tmp/x", "--quiet"]);
    assert!(
        err.contains("--spill-dir") && err.contains("--queue spill"),
        "{err}"
    );
    let (_, _, err) = loadgen(&[
        "run",
        "--queue",
        "spill",
        "--spill-dir",
        "/tmp/x",
        "--policy",
        "shed",
        "--quiet",
    ]);
    assert!(err.contains("--policy"), "{err}");
    let (code, _, err) = loadgen(&[
        "process",
        "--source",
        "kafka",
        "--queue",
        "spill",
        "--spill-dir",
        "/tmp/x",
    ]);
    assert_ne!(code, 0);
    assert!(
        err.contains("--queue spill") && err.contains("--source kafka"),
        "{err}"
    );
}

#[test]
fn inconsistent_flags_are_refused_with_the_flag_named() {
    let (code, _, err) = loadgen(&["run", "--policy", "shed", "--queue", "unbounded", "--quiet"]);
    assert_eq!(code, 2);
    assert!(
        err.contains("--policy shed") && err.contains("--queue bounded"),
        "{err}"
    );
    let (_, _, err) = loadgen(&["run", "--duration", "ten minutes", "--quiet"]);
    assert!(err.contains("--duration"), "{err}");
    let (_, _, err) = loadgen(&["run", "--schedule", "8000", "--quiet"]);
    assert!(
        err.contains("--schedule") && err.contains("RATE@DURATION"),
        "{err}"
    );
}

#[test]
fn a_bad_check_fails_before_the_run_and_lists_the_valid_fields() {
    let start = std::time::Instant::now();
    let (code, out, err) = loadgen(&["run", "--check", "latency.p99<100"]);
    assert_eq!(code, 2);
    assert!(
        err.contains("unknown field 'latency.p99'")
            && err.contains("latency_ms.p99")
            && err.contains("rss_peak_bytes"),
        "{err}"
    );
    assert!(out.is_empty(), "nothing ran: {out}");
    assert!(start.elapsed().as_secs() < 20, "the run did not start");
}

#[test]
fn every_committed_experiment_config_is_valid() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/experiments");
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            e.path()
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
        })
        .collect();
    names.sort();
    assert_eq!(names.len(), 8, "experiments 1-7 and 6c: {names:?}");
    for name in names {
        let (code, out, err) = loadgen(&[
            "experiment",
            &name,
            "--configs",
            dir,
            "--dry-run",
            "--time-scale",
            "0.02",
        ]);
        assert_eq!(code, 0, "{name}: {err}");
        if name.starts_with("6-") {
            // The Kafka experiment: its processor flags, validated, for each run.
            assert!(out.contains("--poll-loop inline"), "{name}: {out}");
            assert!(out.contains("--poll-loop decoupled"), "{name}: {out}");
        } else if name.starts_with("6c-") {
            // Its control: a bare consumer, paused and not, and the reactive source.
            assert!(out.contains("--poll-loop bare "), "{name}: {out}");
            assert!(out.contains("--poll-loop bare-pause"), "{name}: {out}");
            assert!(out.contains("--poll-loop decoupled"), "{name}: {out}");
        } else {
            assert!(out.contains("\"schedule\""), "{name}: {out}");
        }
    }
    let (code, _, err) = loadgen(&["experiment", "42", "--configs", dir]);
    assert_eq!(code, 2);
    assert!(
        err.contains("no such experiment") && err.contains("1-unbounded-vs-bounded"),
        "{err}"
    );
}

#[test]
fn kafka_flags_are_checked_before_anything_connects() {
    // No broker is named: the error says which flag is missing.
    let (code, _, err) = loadgen(&[
        "process",
        "--source",
        "kafka",
        "--metrics-addr",
        "127.0.0.1:0",
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--bootstrap-servers"), "{err}");
    let (code, _, err) = loadgen(&["process", "--source", "kafka", "--poll-loop", "sometimes"]);
    assert_eq!(code, 2);
    assert!(err.contains("decoupled") && err.contains("inline"), "{err}");
    let (code, _, err) = loadgen(&[
        "process",
        "--source",
        "kafka",
        "--bootstrap-servers",
        "127.0.0.1:1",
        "--metrics-addr",
        "127.0.0.1:0",
        "--kafka-option",
        "no-equals-sign",
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("--kafka-option") && err.contains("KEY=VALUE"),
        "{err}"
    );
    let (code, _, err) = loadgen(&[
        "process",
        "--source",
        "kafka",
        "--bootstrap-servers",
        "127.0.0.1:1",
        "--metrics-addr",
        "127.0.0.1:0",
        "--max-poll-interval",
        "soon",
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--max-poll-interval"), "{err}");
    // produce needs a target: a sinkd or a Kafka cluster.
    let (code, _, err) = loadgen(&["produce", "--rate", "10"]);
    assert_eq!(code, 2);
    assert!(
        err.contains("--sink-url") && err.contains("--bootstrap-servers"),
        "{err}"
    );
    let (code, _, err) = loadgen(&[
        "produce",
        "--bootstrap-servers",
        "127.0.0.1:1",
        "--partitions",
        "0",
        "--duration",
        "1s",
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--partitions"), "{err}");
}

/// The processes whose command line names `marker`.
fn processes_naming(marker: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        if let Ok(cmd) = std::fs::read(entry.path().join("cmdline")) {
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            if cmd.contains(marker) {
                found.push(cmd);
            }
        }
    }
    found
}

#[cfg(unix)]
#[test]
fn an_interrupted_experiment_takes_its_runs_with_it() {
    let out = std::env::temp_dir().join(format!("interrupted-{}", std::process::id()));
    let marker = out.display().to_string();
    let mut parent = std::process::Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args(["experiment", "1", "--quiet", "--time-scale", "0.02"])
        .args(["--configs", "experiments", "--out", &marker])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("loadgen starts");
    // Wait (at most 30 s) for its first run, a child process of its own.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while processes_naming(&format!("{marker}/unbounded")).is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "the run never started"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let status = std::process::Command::new("kill")
        .args(["-INT", &parent.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let code = loop {
        if let Some(code) = parent.try_wait().expect("wait") {
            break code;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the experiment did not stop"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    assert!(
        !code.success(),
        "an interrupted experiment does not succeed"
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let left = processes_naming(&format!("{marker}/"));
        if left.is_empty() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "still running after the interrupt: {left:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let _ = std::fs::remove_dir_all(&out);
}
