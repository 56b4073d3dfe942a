//! Checks `deploy/` (the Kubernetes manifests; nothing here runs Kubernetes) against the code:
//! the containers' commands parse with the real flag parsers, the KEDA ScaledObjects target the
//! processor Deployment, their consumer group and topic are the processor's `--group` and
//! `--topic` (as parsed, so the code's defaults count when a flag is left out), the Prometheus
//! trigger's query selects series the processor exports (rendered by the processor's own
//! exposition, not a list written here), no ScaledObject allows more replicas than the topic
//! has partitions, and the ports agree.

use std::collections::BTreeMap;
use std::path::PathBuf;

use clap::Parser;
use reactive::kafka::{KafkaStats, PartitionLag};
use serde::Deserialize;
use serde_norway::Value;

use super::compose_check::{exported, metric_names};
use crate::cli::{Cli, Command, ProcessArgs};

/// Every document of every YAML file in `deploy/`, keyed by `kind/name`.
fn manifests() -> BTreeMap<String, Value> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy");
    let mut all = BTreeMap::new();
    for entry in std::fs::read_dir(&dir).expect("deploy/ exists") {
        let path = entry.expect("a directory entry").path();
        if path.extension().and_then(|e| e.to_str()) != Some("yaml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("readable");
        for doc in serde_norway::Deserializer::from_str(&text) {
            let value = Value::deserialize(doc)
                .unwrap_or_else(|e| panic!("{}: not valid YAML: {e}", path.display()));
            let key = format!("{}/{}", s(&value["kind"]), s(&value["metadata"]["name"]));
            let file = path.file_name().map(|f| f.to_string_lossy().into_owned());
            all.insert(format!("{key}@{}", file.unwrap_or_default()), value);
        }
    }
    all
}

/// The string at `v`, or "" (numbers as written).
fn s(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        _ => String::new(),
    }
}

/// The one document of `kind` named `name` (whatever file holds it).
fn one<'a>(all: &'a BTreeMap<String, Value>, kind: &str, name: &str) -> &'a Value {
    let prefix = format!("{kind}/{name}@");
    let found: Vec<&Value> = all
        .iter()
        .filter(|(k, _)| k.starts_with(&prefix))
        .map(|(_, v)| v)
        .collect();
    assert_eq!(
        found.len(),
        1,
        "deploy/ should hold one {kind} named {name}"
    );
    found[0]
}

/// The first container's command and args, joined.
fn argv(deployment: &Value) -> Vec<String> {
    let c = &deployment["spec"]["template"]["spec"]["containers"][0];
    let mut argv: Vec<String> = Vec::new();
    for part in ["command", "args"] {
        if let Some(items) = c[part].as_sequence() {
            argv.extend(items.iter().map(s));
        }
    }
    argv
}

/// The processor's flags, parsed by loadgen's own parser (defaults included).
fn processor_args(all: &BTreeMap<String, Value>) -> ProcessArgs {
    let argv = argv(one(all, "Deployment", "processor"));
    let cli = Cli::try_parse_from(&argv)
        .unwrap_or_else(|e| panic!("the processor's command does not parse: {e}\n{argv:?}"));
    match cli.command {
        Some(Command::Process(args)) => args,
        other => panic!("the processor runs {other:?}, not `loadgen process`"),
    }
}

/// The ScaledObjects, by file.
fn scaled_objects(all: &BTreeMap<String, Value>) -> Vec<(&String, &Value)> {
    let found: Vec<_> = all
        .iter()
        .filter(|(k, _)| k.starts_with("ScaledObject/"))
        .collect();
    assert!(!found.is_empty(), "deploy/ has no KEDA ScaledObject");
    found
}

/// The trigger of `kind` in `so`, if it has one.
fn trigger<'a>(so: &'a Value, kind: &str) -> Option<&'a Value> {
    so["spec"]["triggers"]
        .as_sequence()
        .expect("spec.triggers")
        .iter()
        .find(|t| s(&t["type"]) == kind)
        .map(|t| &t["metadata"])
}

/// The partition count the topic Job creates the topic with.
fn partitions(all: &BTreeMap<String, Value>, topic: &str) -> u64 {
    let job = argv(one(all, "Job", "topic-init"));
    let after = |flag: &str| {
        let i = job.iter().position(|a| a == flag);
        i.and_then(|i| job.get(i + 1)).cloned()
    };
    assert_eq!(
        after("--topic").as_deref(),
        Some(topic),
        "topic-init creates another topic than the processor's --topic {topic}"
    );
    let n = after("--partitions").expect("topic-init states --partitions");
    n.parse().expect("--partitions is a number")
}

#[test]
fn the_kafka_trigger_reads_the_processors_group_and_topic() {
    let all = manifests();
    let args = processor_args(&all);
    let partitions = partitions(&all, &args.kafka.topic);
    let mut kafka_triggers = 0;
    for (file, so) in scaled_objects(&all) {
        assert_eq!(
            s(&so["spec"]["scaleTargetRef"]["name"]),
            "processor",
            "{file}: does not target the processor Deployment"
        );
        let kind = s(&so["spec"]["scaleTargetRef"]["kind"]);
        assert!(kind.is_empty() || kind == "Deployment", "{file}: {kind}");
        let max = so["spec"]["maxReplicaCount"].as_u64();
        let max = max.unwrap_or_else(|| panic!("{file}: no maxReplicaCount (KEDA's default: 100)"));
        assert!(
            max <= partitions,
            "{file}: maxReplicaCount {max} exceeds the topic's {partitions} partitions"
        );
        let Some(t) = trigger(so, "kafka") else {
            continue;
        };
        kafka_triggers += 1;
        assert_eq!(
            s(&t["consumerGroup"]),
            args.kafka.group,
            "{file}: consumerGroup is not the processor's --group"
        );
        assert_eq!(
            s(&t["topic"]),
            args.kafka.topic,
            "{file}: topic is not the processor's --topic"
        );
        assert_eq!(
            Some(s(&t["bootstrapServers"])),
            args.kafka.bootstrap_servers,
            "{file}: bootstrapServers is not the processor's --bootstrap-servers"
        );
        assert_eq!(
            s(&t["allowIdleConsumers"]),
            "false",
            "{file}: allowIdleConsumers must be false (never more replicas than partitions)"
        );
        lag_threshold_clears_the_queue(file, &s(&t["lagThreshold"]), &args);
    }
    assert_eq!(kafka_triggers, 1, "one ScaledObject with a kafka trigger");
}

/// Each replica's bounded queue holds fetched, uncommitted records, which count as lag: a
/// target at or below its capacity would scale on lag that is only in the queues.
fn lag_threshold_clears_the_queue(file: &str, threshold: &str, args: &ProcessArgs) {
    let threshold: f64 = threshold
        .parse()
        .unwrap_or_else(|_| panic!("{file}: threshold {threshold:?} is not a number"));
    let plan = crate::plan::Plan::from_args(&args.run).expect("the processor's flags are valid");
    if let Some(cap) = plan.queue_capacity() {
        assert!(
            threshold > cap as f64,
            "{file}: the lag target {threshold} is within one replica's queue ({cap})"
        );
    }
}

/// `name="value"` matchers of the first selector of `metric` in `query`.
fn matchers(query: &str, metric: &str) -> BTreeMap<String, String> {
    let Some(at) = query.find(&format!("{metric}{{")) else {
        return BTreeMap::new();
    };
    let inner = &query[at + metric.len() + 1..];
    let inner = &inner[..inner.find('}').expect("a closed selector")];
    inner
        .split(',')
        .filter(|m| !m.trim().is_empty())
        .map(|m| {
            let (k, v) = m.split_once('=').expect("name=\"value\"");
            assert!(
                !k.ends_with('!') && !v.starts_with('~'),
                "only = matchers: {m}"
            );
            (k.trim().to_string(), v.trim().trim_matches('"').to_string())
        })
        .collect()
}

#[test]
fn the_prometheus_trigger_queries_what_the_processor_exports() {
    let all = manifests();
    let args = processor_args(&all);
    // The processor's own exposition, for a member owning one partition of its topic.
    let live = super::process::Live {
        group: args.kafka.group.clone(),
        pressure_lag: args.kafka.pressure_lag,
        sample: Default::default(),
        kafka: std::sync::Mutex::new(KafkaStats {
            lag: vec![PartitionLag {
                topic: args.kafka.topic.clone(),
                partition: 0,
                log_end: 10,
                committed: Some(4),
                lag: 6,
            }],
            ..KafkaStats::default()
        }),
        poison: Default::default(),
        queue_fill: Default::default(),
    };
    let exposition = live.exposition();
    let have = exported(&exposition);
    let mut queries = 0;
    for (file, so) in scaled_objects(&all) {
        let Some(t) = trigger(so, "prometheus") else {
            continue;
        };
        queries += 1;
        let query = s(&t["query"]);
        let names = metric_names(&query);
        assert!(
            !names.is_empty(),
            "{file}: the query reads no metric: {query}"
        );
        for name in &names {
            assert!(
                have.contains(name),
                "{file}: the query reads {name}, which the processor does not export"
            );
            // Each matcher must select the processor's series: the label exists and has the
            // processor's value on some line of the metric.
            for (label, value) in matchers(&query, name) {
                let pair = format!("{label}=\"{value}\"");
                assert!(
                    exposition
                        .lines()
                        .filter_map(|l| l.strip_prefix(&format!("{name}{{")))
                        .any(|labels| labels.split(['}', ',']).any(|p| p == pair)),
                    "{file}: {name}{{{pair}}} selects nothing the processor (group {}, topic {}) exports:\n{exposition}",
                    args.kafka.group,
                    args.kafka.topic
                );
            }
        }
    }
    assert_eq!(queries, 1, "one ScaledObject with a prometheus trigger");
}

/// The first port of Service `service`, and the container port its targetPort reaches in
/// `container` (by name or number).
fn service_port(all: &BTreeMap<String, Value>, service: &str, container: &Value) -> (u64, u64) {
    let svc = one(all, "Service", service);
    let port = &svc["spec"]["ports"][0];
    let target = &port["targetPort"];
    let container_port = match target {
        Value::String(name) => container["ports"]
            .as_sequence()
            .expect("the container names its ports")
            .iter()
            .find(|p| s(&p["name"]) == *name)
            .and_then(|p| p["containerPort"].as_u64())
            .unwrap_or_else(|| panic!("Service {service}: targetPort {name} names no port")),
        other => other.as_u64().expect("targetPort"),
    };
    (port["port"].as_u64().expect("port"), container_port)
}

#[test]
fn the_ports_agree() {
    let all = manifests();
    let args = processor_args(&all);
    let processor = one(&all, "Deployment", "processor");
    let container = &processor["spec"]["template"]["spec"]["containers"][0];
    let metrics = u64::from(args.metrics_addr.port());
    assert!(
        args.metrics_addr.ip().is_unspecified(),
        "--metrics-addr {} is not reachable from outside the pod",
        args.metrics_addr
    );
    let (_, target) = service_port(&all, "processor", container);
    assert_eq!(target, metrics, "the processor Service's targetPort");
    let annotations = &processor["spec"]["template"]["metadata"]["annotations"];
    assert_eq!(
        s(&annotations["prometheus.io/port"]),
        metrics.to_string(),
        "the prometheus.io/port annotation is not --metrics-addr's port"
    );

    // --sink-url names the sinkd Service and its port, which reaches sinkd's --listen.
    let sinkd = one(&all, "Deployment", "sinkd");
    let argv = argv(sinkd);
    let sink_args = sinkd::Args::try_parse_from(&argv)
        .unwrap_or_else(|e| panic!("sinkd's command does not parse: {e}\n{argv:?}"));
    let listen = sinkd::Config::from_args(sink_args)
        .expect("sinkd's flags are valid")
        .listen;
    let sink_container = &sinkd["spec"]["template"]["spec"]["containers"][0];
    let (port, target) = service_port(&all, "sinkd", sink_container);
    assert_eq!(
        target,
        u64::from(listen.port()),
        "sinkd Service's targetPort"
    );
    let url = args
        .run
        .sink_url
        .clone()
        .expect("the processor has --sink-url");
    assert_eq!(
        url,
        format!("http://sinkd:{port}"),
        "--sink-url is not the sinkd Service"
    );
}
