//! Checks `compose/`: the compose file parses and has what the README promises, and every metric
//! the Grafana board queries is one that sinkd or `loadgen process` exports.

use std::collections::BTreeSet;
use std::path::PathBuf;

use reactive::kafka::{KafkaStats, PartitionLag};

fn compose_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../compose")
}

fn yaml(path: &str) -> serde_norway::Value {
    let text = std::fs::read_to_string(compose_dir().join(path)).expect("the file exists");
    let mut value: serde_norway::Value = serde_norway::from_str(&text).expect("valid YAML");
    value.apply_merge().expect("merge keys resolve");
    value
}

fn text(v: &serde_norway::Value) -> String {
    match v {
        serde_norway::Value::Sequence(items) => {
            items.iter().map(text).collect::<Vec<_>>().join(" ")
        }
        serde_norway::Value::String(s) => s.clone(),
        other => serde_norway::to_string(other).unwrap_or_default(),
    }
}

/// The metric names a PromQL expression reads: identifiers that are not functions, keywords,
/// label names or durations.
pub fn metric_names(expr: &str) -> BTreeSet<String> {
    // Drop label matchers and range selectors.
    let mut plain = String::new();
    let mut depth = 0i32;
    for c in expr.chars() {
        match c {
            '{' | '[' => depth += 1,
            '}' | ']' => depth -= 1,
            _ if depth > 0 => {}
            _ => plain.push(c),
        }
    }
    let chars: Vec<char> = plain.chars().collect();
    let mut names = BTreeSet::new();
    let mut i = 0;
    let mut skip_group = false;
    while i < chars.len() {
        if chars[i].is_ascii_alphabetic() || chars[i] == '_' || chars[i] == ':' {
            let start = i;
            while i < chars.len()
                && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == ':')
            {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let next = chars[i..].iter().find(|c| !c.is_whitespace());
            // `sum by (le) (...)`: an aggregation followed by its grouping is not a metric.
            let rest: String = chars[i..].iter().collect::<String>();
            let rest = rest.trim_start();
            let grouped = ["by", "without"].iter().any(|k| {
                rest.strip_prefix(k)
                    .is_some_and(|after| after.trim_start().starts_with('('))
            });
            if grouped {
                continue;
            }
            if matches!(
                word.as_str(),
                "by" | "without" | "on" | "ignoring" | "group_left" | "group_right"
            ) {
                skip_group = true;
                continue;
            }
            if skip_group {
                if next == Some(&')') {
                    skip_group = false;
                }
                continue;
            }
            if next != Some(&'(')
                && !matches!(word.as_str(), "and" | "or" | "unless" | "bool" | "offset")
            {
                names.insert(word);
            }
        } else {
            if chars[i] == ')' {
                skip_group = false;
            }
            i += 1;
        }
    }
    names
}

/// Every name a Prometheus text exposition defines (histograms with their series).
pub fn exported(exposition: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in exposition.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split_whitespace();
            if let (Some(name), Some(kind)) = (parts.next(), parts.next()) {
                names.insert(name.to_string());
                match kind {
                    "histogram" => {
                        for suffix in ["_bucket", "_sum", "_count"] {
                            names.insert(format!("{name}{suffix}"));
                        }
                    }
                    "counter" if !name.ends_with("_total") => {
                        names.insert(format!("{name}_total"));
                    }
                    _ => {}
                }
            }
        } else if !line.starts_with('#') {
            if let Some(name) = line.split(['{', ' ']).next().filter(|n| !n.is_empty()) {
                names.insert(name.to_string());
            }
        }
    }
    names
}

#[test]
fn promql_names_are_found() {
    let names = metric_names(
        "histogram_quantile(0.99, sum by (le) (rate(sinkd_request_duration_seconds_bucket{job=\"x\"}[1m]))) + sum without (partition) (kafka_consumergroup_lag)",
    );
    assert_eq!(
        names.into_iter().collect::<Vec<_>>(),
        [
            "kafka_consumergroup_lag",
            "sinkd_request_duration_seconds_bucket"
        ]
    );
}

#[test]
fn the_compose_file_has_three_kraft_brokers_a_12_partition_topic_and_the_lab() {
    let compose = yaml("docker-compose.yml");
    let services = compose["services"].as_mapping().expect("services");
    for name in [
        "kafka-1",
        "kafka-2",
        "kafka-3",
        "topic-init",
        "sinkd",
        "processor",
        "prometheus",
        "grafana",
    ] {
        assert!(services.contains_key(name), "service {name} missing");
    }
    for (i, name) in ["kafka-1", "kafka-2", "kafka-3"].iter().enumerate() {
        let s = &compose["services"][*name];
        assert!(text(&s["image"]).starts_with("apache/kafka:"), "{name}");
        let env = &s["environment"];
        assert_eq!(
            text(&env["KAFKA_PROCESS_ROLES"]),
            "broker,controller",
            "{name}: KRaft"
        );
        assert_eq!(text(&env["KAFKA_NODE_ID"]), (i + 1).to_string());
        assert_eq!(
            text(&env["KAFKA_CONTROLLER_QUORUM_VOTERS"])
                .split(',')
                .count(),
            3,
            "{name}: a three-voter quorum"
        );
    }
    let init = text(&compose["services"]["topic-init"]["command"]);
    assert!(init.contains("--topic events"), "{init}");
    assert!(init.contains("--partitions 12"), "{init}");
    let processor = text(&compose["services"]["processor"]["command"]);
    for flag in [
        "--source=kafka",
        "--sink-url=http://sinkd:8080",
        "--metrics-addr=0.0.0.0:9464",
    ] {
        assert!(
            processor.contains(flag),
            "processor lacks {flag}: {processor}"
        );
    }

    // Prometheus scrapes sinkd and the processors.
    let prom = yaml("prometheus.yml");
    let jobs: Vec<String> = prom["scrape_configs"]
        .as_sequence()
        .expect("scrape_configs")
        .iter()
        .map(|j| text(&j["job_name"]))
        .collect();
    assert_eq!(jobs, ["sinkd", "processor"]);
    let grafana = yaml("grafana/provisioning/datasources/prometheus.yml");
    assert_eq!(
        text(&grafana["datasources"][0]["url"]),
        "http://prometheus:9090"
    );
}

#[tokio::test]
async fn every_metric_the_dashboard_queries_is_exported() {
    let board: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(compose_dir().join("grafana/dashboards/backpressure.json"))
            .expect("the dashboard exists"),
    )
    .expect("valid JSON");
    let mut queried = BTreeSet::new();
    for panel in board["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().expect("targets") {
            queried.extend(metric_names(target["expr"].as_str().expect("expr")));
        }
    }
    assert!(queried.len() >= 8, "{queried:?}");

    // What the code exports: loadgen process (pipeline and consumer) and a real sinkd.
    let stats = KafkaStats {
        lag: vec![PartitionLag {
            topic: "events".into(),
            partition: 0,
            log_end: 1,
            committed: Some(0),
            lag: 1,
        }],
        ..KafkaStats::default()
    };
    let mut registry = prometheus_client::registry::Registry::default();
    crate::telemetry::register(&mut registry, &crate::telemetry::Sample::default());
    super::register(&mut registry, &stats, "g");
    let mut have = exported(&crate::telemetry::encode(&registry));
    let config = sinkd::Config {
        listen: "127.0.0.1:0".parse().expect("addr"),
        ..sinkd::Config::default()
    };
    let sink = sinkd::start(config).await.expect("sinkd starts");
    let text = sinkd::SinkClient::new(&sink.url())
        .expect("client")
        .metrics()
        .await
        .expect("sinkd /metrics");
    have.extend(exported(&text));
    sink.shutdown().await;

    let missing: Vec<&String> = queried.iter().filter(|m| !have.contains(*m)).collect();
    assert!(
        missing.is_empty(),
        "the dashboard queries metrics nobody exports: {missing:?}"
    );
    // And the board covers what the issue asks for.
    for needed in [
        "kafka_consumergroup_lag",
        "loadgen_queue_depth",
        "sinkd_writes_accepted_total",
        "loadgen_process_resident_memory_bytes",
        "loadgen_latency_p99_seconds",
    ] {
        assert!(queried.contains(needed), "the board does not show {needed}");
    }
}
