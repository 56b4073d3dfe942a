//! sinkd benchmarks. Run with `cargo bench -p sinkd`; `-- accuracy` or `-- throughput` runs one.
//!
//! - accuracy: a client offers twice the rate for 10 s (after 1 s of warm-up, so the initial
//!   burst is not counted); the accepted writes/s must be within ±0.5% of `--rate-limit`, at
//!   100, 2,000 and 20,000/s.
//! - throughput: with the rate limit off, `wrk` (Debian's `wrk` package) measures the requests/s
//!   sinkd serves on loopback, and the same for a minimal hyper server that reads the body and
//!   answers 200, in the same run; prints the ratio (target ≥ 0.8).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use clap::Parser;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use sinkd::wire::{Event, Format};
use sinkd::{Args, Config, SinkClient};
use tokio::time::Instant;

fn main() {
    let which: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let wants = |name: &str| which.is_empty() || which.iter().any(|w| w == name);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    if wants("accuracy") {
        runtime.block_on(accuracy());
    }
    if wants("throughput") {
        runtime.block_on(throughput());
    }
}

async fn start(flags: &[&str]) -> sinkd::Running {
    let args =
        Args::try_parse_from(["sinkd", "--listen", "127.0.0.1:0"].iter().chain(flags)).unwrap();
    sinkd::start(Config::from_args(args).unwrap())
        .await
        .unwrap()
}

async fn accuracy() {
    println!(
        "token bucket accuracy: offer 2x the rate, count accepted writes/s over 10 s after 1 s warm-up"
    );
    for rate in [100u64, 2_000, 20_000] {
        let running = start(&["--rate-limit", &rate.to_string(), "--on-limit", "reject"]).await;
        let client = SinkClient::new(&running.url()).unwrap();
        let offer = 2 * rate;
        let stop = Arc::new(AtomicBool::new(false));
        let offered = Arc::new(AtomicU64::new(0));
        // Open model: each of `workers` tasks sends on its own fixed schedule.
        let workers = (offer / 500).clamp(4, 64);
        let period = Duration::from_secs_f64(workers as f64 / offer as f64);
        let start_at = Instant::now();
        let tasks: Vec<_> = (0..workers)
            .map(|w| {
                let client = client.clone();
                let stop = stop.clone();
                let offered = offered.clone();
                tokio::spawn(async move {
                    let mut next = start_at + period.mul_f64(w as f64 / workers as f64);
                    let mut id = w;
                    while !stop.load(Ordering::Relaxed) {
                        tokio::time::sleep_until(next).await;
                        next += period;
                        let event = Event {
                            id,
                            key: w,
                            seq: id,
                            ts_ns: 0,
                            priority: 0,
                            payload: String::new(),
                        };
                        id += workers;
                        if client.write(&event, Format::Binary).await.is_ok() {
                            offered.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                })
            })
            .collect();
        tokio::time::sleep_until(start_at + Duration::from_secs(1)).await;
        let (a0, o0, t0) = (
            running.stats(None).received,
            offered.load(Ordering::Relaxed),
            Instant::now(),
        );
        tokio::time::sleep(Duration::from_secs(10)).await;
        let (a1, o1, t1) = (
            running.stats(None).received,
            offered.load(Ordering::Relaxed),
            Instant::now(),
        );
        stop.store(true, Ordering::Relaxed);
        for t in tasks {
            let _ = t.await;
        }
        running.shutdown().await;
        let secs = (t1 - t0).as_secs_f64();
        let accepted = (a1 - a0) as f64 / secs;
        let achieved_offer = (o1 - o0) as f64 / secs;
        let error = (accepted - rate as f64) / rate as f64 * 100.0;
        let verdict = if error.abs() <= 0.5 {
            "within ±0.5%"
        } else {
            "OUTSIDE ±0.5%"
        };
        println!(
            "  --rate-limit {rate:>6}: offered {achieved_offer:>8.0}/s, accepted {accepted:>9.1}/s, error {error:+.3}%  {verdict}"
        );
    }
}

async fn minimal_server() -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let service = service_fn(|req: hyper::Request<hyper::body::Incoming>| async move {
                    let _ = req.into_body().collect().await;
                    Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::from_static(b"{}"))))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (addr, task)
}

const SCRIPT: &str = r#"
counter = 0
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
request = function()
  counter = counter + 1
  local body = string.format('{"id":%d,"key":%d,"seq":%d,"ts_ns":0,"priority":0,"payload":"%s"}', counter, counter % 64, counter, string.rep("x", 64))
  return wrk.format(nil, "/write", nil, body)
end
"#;

fn wrk(addr: SocketAddr, script: &std::path::Path) -> Option<f64> {
    let out = Command::new("wrk")
        .args(["-t1", "-c32", "-d5s", "-s"])
        .arg(script)
        .arg(format!("http://{addr}/write"))
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let non_2xx = text.lines().any(|l| l.contains("Non-2xx"));
    if non_2xx {
        eprintln!("wrk saw non-2xx answers:\n{text}");
    }
    text.lines()
        .find_map(|l| l.strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok())
}

async fn throughput() {
    println!(
        "unlimited throughput on loopback (wrk -t1 -c32 -d5s x 3 interleaved rounds, medians; POST /write, one JSON event)"
    );
    if Command::new("wrk").arg("--version").output().is_err() {
        println!("  skipped: wrk is not installed (apt-get install wrk)");
        return;
    }
    let script = std::env::temp_dir().join(format!("sinkd-bench-{}.lua", std::process::id()));
    std::fs::write(&script, SCRIPT).unwrap();
    let (minimal_addr, minimal) = minimal_server().await;
    let running = start(&["--rate-limit", "off"]).await;
    let sinkd_addr = running.local_addr();
    // Interleaved rounds, so that a noisy neighbour hurts both sides alike; medians.
    let mut baselines = Vec::new();
    let mut sinkds = Vec::new();
    for _ in 0..3 {
        for (addr, out) in [(minimal_addr, &mut baselines), (sinkd_addr, &mut sinkds)] {
            let s = script.clone();
            if let Some(rate) = tokio::task::spawn_blocking(move || wrk(addr, &s))
                .await
                .unwrap()
            {
                out.push(rate);
            }
        }
    }
    minimal.abort();
    let stats = running.shutdown().await;
    let _ = std::fs::remove_file(&script);
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).copied()
    };
    let (baseline, measured) = (median(baselines), median(sinkds));
    match (baseline, measured) {
        (Some(b), Some(m)) => {
            let ratio = m / b;
            let verdict = if ratio >= 0.8 {
                "target >= 0.80x: met"
            } else {
                "target >= 0.80x: NOT met"
            };
            println!("  minimal hyper server: {b:>9.0} req/s");
            println!("  sinkd (limit off):    {m:>9.0} req/s   {ratio:.2}x minimal   {verdict}");
            println!(
                "  sinkd audited {} events, {} distinct ids",
                stats.received, stats.distinct_ids
            );
        }
        _ => println!("  wrk did not report a rate"),
    }
}
