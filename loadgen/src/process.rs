//! `loadgen process`: the processor as a long-running service. It reads from the embedded
//! generator or, with `--source kafka`, from a topic as a member of a consumer group
//! ([`crate::kafka::process`]). It serves its live state as Prometheus text on `/metrics`, and
//! its slow-source signal on `/pressure` (a number: 0 is idle, 1 is at its limit) for producers
//! in other processes (`loadgen produce --pressure-url`).

use std::process::ExitCode;

use anyhow::Context;
use bytes::Bytes;
use http_body_util::Full;
use tokio::sync::watch;

use std::sync::Arc;

use crate::cli::{BatchSize, PollLoop, ProcessArgs, SinkMode, Source};
use crate::plan::Plan;
use crate::progress::Progress;
use crate::telemetry::Sample;

/// Prometheus text for the latest sample.
pub fn exposition(s: &Sample) -> String {
    let mut registry = prometheus_client::registry::Registry::default();
    crate::telemetry::register(&mut registry, s);
    crate::telemetry::encode(&registry)
}

/// What `/debug/pprof/heap` can give: the profile, or its flamegraph.
#[derive(Debug, Clone, Copy)]
enum Heap {
    /// pprof format (gzipped protobuf), symbolized in this process.
    Pprof,
    /// An SVG flamegraph of the bytes in use, by allocating stack.
    Flamegraph,
    /// jemalloc's own dump, unsymbolized (its addresses, and this process's mappings): cheap
    /// to take, for another process of the same executable to symbolize.
    Raw,
}

/// A heap dump of this process, or why there is none. Symbolizing takes seconds of CPU, so it
/// runs on a blocking thread, not on the runtime's workers; the first one also keeps about
/// 80 MB of symbol tables on the heap and maps the executable's debug information.
#[cfg(feature = "heap-profile")]
async fn heap_dump(kind: Heap) -> Result<Vec<u8>, String> {
    let Some(ctl) = jemalloc_pprof::PROF_CTL.as_ref() else {
        return Err("jemalloc profiling is not available in this process".into());
    };
    let ctl = ctl.clone();
    let dump = move || {
        let mut ctl = ctl.blocking_lock();
        if !ctl.activated() {
            return Err("jemalloc profiling is not active (malloc_conf prof:true)".to_string());
        }
        match kind {
            Heap::Pprof => ctl.dump_pprof(),
            Heap::Flamegraph => ctl.dump_flamegraph(),
            Heap::Raw => ctl.dump().and_then(|mut f| {
                let mut raw = Vec::new();
                std::io::Read::read_to_end(&mut f, &mut raw)?;
                Ok(raw)
            }),
        }
        .map_err(|e| format!("cannot dump the heap profile: {e}"))
    };
    tokio::task::spawn_blocking(dump)
        .await
        .map_err(|e| format!("the heap dump failed: {e}"))?
}

#[cfg(not(feature = "heap-profile"))]
async fn heap_dump(_: Heap) -> Result<Vec<u8>, String> {
    Err(
        "this loadgen was built without heap profiling: build it with `--features heap-profile`"
            .into(),
    )
}

fn respond(
    status: http::StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> hyper::Response<Full<Bytes>> {
    let mut r = hyper::Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut()
        .insert("content-type", http::HeaderValue::from_static(content_type));
    r.headers_mut()
        .insert("cache-control", http::HeaderValue::from_static("no-store"));
    r
}

/// What the server shows: the metrics text and the pressure, computed per request.
type Exposer = Arc<dyn Fn() -> (String, f64) + Send + Sync>;

/// Answers one request: `/metrics`, `/pressure`, `/debug/pprof/heap`,
/// `/debug/pprof/heap/flamegraph` or `/debug/pprof/heap/raw`.
async fn answer(expose: Exposer, path: String) -> hyper::Response<Full<Bytes>> {
    match path.as_str() {
        "/metrics" => respond(
            http::StatusCode::OK,
            crate::telemetry::CONTENT_TYPE,
            expose().0,
        ),
        "/pressure" => respond(
            http::StatusCode::OK,
            "text/plain",
            format!("{:.4}\n", expose().1),
        ),
        "/debug/pprof/heap" => heap(Heap::Pprof, "application/octet-stream").await,
        "/debug/pprof/heap/flamegraph" => heap(Heap::Flamegraph, "image/svg+xml").await,
        "/debug/pprof/heap/raw" => heap(Heap::Raw, "text/plain").await,
        _ => respond(
            http::StatusCode::NOT_FOUND,
            "text/plain",
            "try /metrics, /pressure, /debug/pprof/heap or /debug/pprof/heap/flamegraph\n",
        ),
    }
}

async fn heap(kind: Heap, content_type: &'static str) -> hyper::Response<Full<Bytes>> {
    match heap_dump(kind).await {
        Ok(body) => respond(http::StatusCode::OK, content_type, body),
        Err(why) => respond(
            http::StatusCode::NOT_IMPLEMENTED,
            "text/plain",
            format!("{why}\n"),
        ),
    }
}

/// Serves the endpoints until the process ends, on sinkd's serve loop.
async fn serve(listener: tokio::net::TcpListener, expose: Exposer) {
    let handler = move |req: hyper::Request<hyper::body::Incoming>| {
        answer(expose.clone(), req.uri().path().to_string())
    };
    sinkd::serve::serve(
        listener,
        handler,
        sinkd::serve::Options::default(),
        std::future::pending(),
    )
    .await;
}

pub async fn run(args: ProcessArgs) -> anyhow::Result<ExitCode> {
    let plan = Plan::from_args(&args.run)?;
    if args.source == Source::Kafka && plan.spill().is_some() {
        anyhow::bail!(
            "'--queue spill' is not available with '--source kafka': a record is acknowledged to Kafka only once written, so the topic is already the overflow (use --source generator, or --queue bounded)"
        );
    }
    let fixed_rounds = args.source == Source::Kafka && args.kafka.poll_loop != PollLoop::Decoupled;
    if fixed_rounds
        && args.run.sink_mode == SinkMode::Batch
        && args.run.batch_size == BatchSize::Auto
    {
        anyhow::bail!(
            "'--batch-size auto' needs '--poll-loop decoupled': the inline and bare loops write fixed rounds, not through the sink workers (give them a number)"
        );
    }
    let listener = tokio::net::TcpListener::bind(args.metrics_addr)
        .await
        .with_context(|| format!("cannot listen on {} ('--metrics-addr')", args.metrics_addr))?;
    eprintln!(
        "loadgen process: metrics on http://{}/metrics",
        args.metrics_addr
    );
    match args.source {
        Source::Generator => run_generator(&plan, listener).await,
        Source::Kafka => run_kafka(&args, &plan, listener).await,
    }
}

/// Serves the endpoints of an embedded pipeline on `listener`, from the samples `progress`
/// publishes (returned, to run the pipeline with): for `process` and `run --metrics-addr`.
pub fn serve_pipeline(
    plan: &Plan,
    listener: tokio::net::TcpListener,
    progress: Progress,
) -> Progress {
    let (tx, rx) = watch::channel(Sample::default());
    let plan_for_fill = plan.clone();
    let expose: Exposer = Arc::new(move || {
        let s = rx.borrow().clone();
        let pressure = plan_for_fill.queue_fill(s.queue_depth);
        (exposition(&s), pressure)
    });
    tokio::spawn(serve(listener, expose));
    progress.with_live(tx)
}

async fn run_generator(plan: &Plan, listener: tokio::net::TcpListener) -> anyhow::Result<ExitCode> {
    let progress = serve_pipeline(plan, listener, Progress::new(plan.quiet(), "process"));
    let outcome = tokio::select! {
        outcome = crate::pipeline::run(plan, &progress) => outcome?,
        _ = tokio::signal::ctrl_c() => {
            progress.finish();
            eprintln!("loadgen process: interrupted");
            return Ok(ExitCode::SUCCESS);
        }
    };
    progress.finish();
    print!("{}", outcome.report.summary());
    Ok(ExitCode::SUCCESS)
}

async fn run_kafka(
    args: &ProcessArgs,
    plan: &Plan,
    listener: tokio::net::TcpListener,
) -> anyhow::Result<ExitCode> {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
    let stopping = crate::kafka::process::Stopping {
        idle: args.kafka.stop_when_idle,
        after: args.kafka.stop_after,
    };
    let live = Arc::new(crate::kafka::process::Live {
        group: args.kafka.group.clone(),
        pressure_lag: args.kafka.pressure_lag,
        sample: Default::default(),
        kafka: Default::default(),
        poison: Default::default(),
        queue_fill: Default::default(),
    });
    let l = live.clone();
    let expose: Exposer = Arc::new(move || (l.exposition(), l.pressure()));
    tokio::spawn(serve(listener, expose));
    let progress = Progress::new(plan.quiet(), "process");
    let report = crate::kafka::process::run(args, plan, live, stopping, &progress).await?;
    progress.finish();
    println!(
        "consumed {} records in {:.1}s ({:?} poll loop): delivered {}, dead-lettered {}, poison {}, dropped {}; evictions {}, rebalances {}, commits {} ({} failed); max lag {}; p99 {:.1} ms",
        report.consumed,
        report.duration_s,
        report.poll_loop,
        report.delivered,
        report.dead_lettered,
        report.poison,
        report.dropped,
        report.evictions,
        report.rebalances,
        report.commits,
        report.commit_failures,
        report.lag_max,
        report.latency_ms.p99
    );
    if let Some(path) = plan.report() {
        std::fs::write(path, serde_json::to_string_pretty(&report)?)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    if let Some(reason) = &report.failure {
        anyhow::bail!("the Kafka consumer stopped: {reason}");
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[tokio::test]
    async fn batch_size_auto_is_refused_for_the_fixed_round_loops() {
        let argv = [
            "process",
            "--source",
            "kafka",
            "--poll-loop",
            "inline",
            "--sink-mode",
            "batch",
            "--batch-size",
            "auto",
        ];
        let err = run(ProcessArgs::parse_from(argv)).await.unwrap_err();
        assert!(err.to_string().contains("'--poll-loop decoupled'"), "{err}");
    }
}
