//! `loadgen process`: the processor as a long-running service. It reads from the embedded
//! generator (a Kafka source comes with the Kafka work) and serves its live state as Prometheus
//! text on `/metrics`.

use std::convert::Infallible;
use std::process::ExitCode;

use anyhow::Context;
use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::sync::watch;

use crate::cli::ProcessArgs;
use crate::pipeline::Sample;
use crate::plan::Plan;
use crate::progress::Progress;

/// Prometheus text for the latest sample.
pub fn exposition(s: &Sample) -> String {
    let metrics: [(&str, &str, &str, f64); 12] = [
        (
            "loadgen_target_rate",
            "gauge",
            "Offered rate of the schedule, events/s",
            s.target_rate,
        ),
        (
            "loadgen_generated_rate",
            "gauge",
            "Events the generator emitted per second",
            s.generated_rate,
        ),
        (
            "loadgen_delivered_rate",
            "gauge",
            "Events the sink acknowledged per second",
            s.delivered_rate,
        ),
        (
            "loadgen_sink_writes_rate",
            "gauge",
            "Sink write requests acknowledged per second",
            s.writes_rate,
        ),
        (
            "loadgen_queue_depth",
            "gauge",
            "Events queued between transform and sink",
            s.queue_depth as f64,
        ),
        (
            "loadgen_queue_bytes",
            "gauge",
            "Bytes queued between transform and sink",
            s.queue_bytes as f64,
        ),
        (
            "loadgen_source_backlog",
            "gauge",
            "Events due and held back at the source",
            s.source_backlog as f64,
        ),
        (
            "loadgen_lag",
            "gauge",
            "Events due and not yet delivered, dropped or dead-lettered",
            s.lag as f64,
        ),
        (
            "loadgen_process_resident_memory_bytes",
            "gauge",
            "Resident memory of the processor",
            s.rss_bytes as f64,
        ),
        (
            "loadgen_dropped",
            "counter",
            "Events dropped so far",
            s.dropped as f64,
        ),
        (
            "loadgen_latency_p99_seconds",
            "gauge",
            "End-to-end p99 over the last sample period",
            s.p99_ms / 1e3,
        ),
        (
            "loadgen_slow_source_rate",
            "gauge",
            "The slow-source signal's rate, events/s (0 when off)",
            s.signal_rate,
        ),
    ];
    let mut out = String::new();
    for (name, kind, help, value) in metrics {
        let name = if kind == "counter" {
            format!("{name}_total")
        } else {
            name.to_string()
        };
        out.push_str(&format!(
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n"
        ));
    }
    out
}

/// A heap profile in pprof format (gzipped protobuf), or why there is none.
#[cfg(feature = "heap-profile")]
async fn heap_profile() -> Result<Vec<u8>, String> {
    let Some(ctl) = jemalloc_pprof::PROF_CTL.as_ref() else {
        return Err("jemalloc profiling is not available in this process".into());
    };
    let mut ctl = ctl.lock().await;
    if !ctl.activated() {
        return Err("jemalloc profiling is not active (malloc_conf prof:true)".into());
    }
    ctl.dump_pprof()
        .map_err(|e| format!("cannot dump the heap profile: {e}"))
}

#[cfg(not(feature = "heap-profile"))]
async fn heap_profile() -> Result<Vec<u8>, String> {
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

async fn serve(listener: tokio::net::TcpListener, latest: watch::Receiver<Sample>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let latest = latest.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                let sample = latest.borrow().clone();
                async move {
                    let response = match req.uri().path() {
                        "/metrics" => respond(
                            http::StatusCode::OK,
                            "text/plain; version=0.0.4",
                            exposition(&sample),
                        ),
                        "/debug/pprof/heap" => match heap_profile().await {
                            Ok(profile) => {
                                respond(http::StatusCode::OK, "application/octet-stream", profile)
                            }
                            Err(why) => respond(
                                http::StatusCode::NOT_IMPLEMENTED,
                                "text/plain",
                                format!("{why}\n"),
                            ),
                        },
                        _ => respond(
                            http::StatusCode::NOT_FOUND,
                            "text/plain",
                            "try /metrics or /debug/pprof/heap\n",
                        ),
                    };
                    Ok::<_, Infallible>(response)
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

pub async fn run(args: ProcessArgs) -> anyhow::Result<ExitCode> {
    let plan = Plan::from_args(&args.run)?;
    let listener = tokio::net::TcpListener::bind(args.metrics_addr)
        .await
        .with_context(|| format!("cannot listen on {} ('--metrics-addr')", args.metrics_addr))?;
    let (tx, rx) = watch::channel(Sample::default());
    tokio::spawn(serve(listener, rx));
    eprintln!(
        "loadgen process: metrics on http://{}/metrics",
        args.metrics_addr
    );
    let progress = Progress::new(plan.quiet, "process").with_live(tx);
    let outcome = tokio::select! {
        outcome = crate::pipeline::run(&plan, &progress) => outcome?,
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

#[cfg(test)]
mod tests {
    #[test]
    fn the_exposition_names_every_metric_once() {
        let text = super::exposition(&super::Sample {
            lag: 42,
            ..Default::default()
        });
        assert!(text.contains("\nloadgen_lag 42\n"));
        assert!(text.contains("# TYPE loadgen_dropped_total counter"));
        assert_eq!(text.matches("# HELP").count(), 12);
    }
}
