//! End-to-end events/s: `loadgen run`'s whole pipeline (generator -> queue -> batch -> sink
//! workers -> HTTP over loopback -> sinkd, rate limit off, `--sink-mode batch`), against the
//! limit of this machine measured in the same run: a bare tokio + hyper 1 client posting the
//! same events, in the same wire format, to the same sinkd, over as many connections as the
//! pipeline has sink workers, with no queue, no demand and no stage accounting.
//!
//! ```sh
//! cargo build --release -p sinkd && cargo bench -p loadgen --bench e2e
//! E2E_CHART=docs/img/e2e-batch.svg cargo bench -p loadgen --bench e2e   # also draws the chart
//! ```
//!
//! (A relative `E2E_CHART` is taken from the workspace root.)
//!
//! - sinkd is the `sinkd` binary (`target/release/sinkd`, or `SINKD_BIN`), a process of its
//!   own, fresh for each batch size; its CPU is read from `/proc/PID/stat`.
//! - The pipeline runs in this process ([`loadgen::e2e::run`]), as does the limit client, one
//!   after the other; each one's CPU is the change in `/proc/self/stat` over its run (the
//!   kernel's 10 ms ticks: runs last about a second).
//! - A rep is a fixed number of events N (`--rate 100000000 --duration` N × 10 ns: an event due
//!   every 10 ns, delivered however long it takes). The generator is an open model that never
//!   emits an event before its intended time (less 1 ms), so the schedule must be far faster than
//!   the pipeline: with the earlier `--rate 1000000` the pipeline could never pass 10^6 events/s,
//!   whatever it could do. Reps alternate between the two; the figures are medians, and the
//!   ratio's min / median / max is over the reps' pairs.
//! - Stage shares come from the pipeline's own accounting: the generator's busy, held-back and
//!   idle time, and the sink workers' busy time over `workers × elapsed`.
//!
//! `E2E_PROFILE=ours` runs the pipeline alone (for `perf record`), `E2E_PROFILE=limit` the limit
//! client alone; `E2E_FLAGS` adds `loadgen run`
//! flags to the pipeline's (e.g. `--worker-window 4096`). `BENCH_REPS` (default 3) sets
//! the reps, `E2E_BATCHES` the batch sizes (default
//! `1,16,64,256,1024`), `E2E_EVENTS` the events per rep (default: 20,000 × batch, at most
//! 400,000).

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HOST};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use loadgen::e2e::{Events, Unpaced};
use sinkd::wire::{self, Format};

/// Sink workers in the pipeline, connections in the limit client.
const WORKERS: usize = 4;
/// The pipeline's generator: events of this shape (the `loadgen run` defaults).
const SEED: u64 = 1;
const KEYS: u64 = 64;
const MSG_SIZE: usize = 512;
/// The batch size the target is judged at.
const HEADLINE_BATCH: usize = 256;
const TARGET: f64 = 0.8;
/// The pipeline's schedule: an event due every this many nanoseconds (10^8 events/s), so the
/// generator always has events due and runs as fast as the pipeline takes them.
const PACE_NS: u64 = 10;
/// Each run must end within this; a run that does not is an error, not a figure.
const RUN_LIMIT: Duration = Duration::from_secs(120);

/// /proc reports CPU time in USER_HZ ticks, 100 a second on Linux.
const TICKS_PER_SEC: f64 = 100.0;

/// User + system CPU time of a process, from `/proc/PID/stat` (`self` for this one).
fn cpu(pid: &str) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The command name may hold spaces: fields are counted after its closing parenthesis.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or(vec![], |(_, rest)| rest.split_whitespace().collect());
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    Duration::from_secs_f64((ticks(11) + ticks(12)) as f64 / TICKS_PER_SEC)
}

/// A sinkd process on a free loopback port, rate limit off; killed when dropped.
struct Sinkd {
    child: Child,
    addr: SocketAddr,
}

impl Sinkd {
    fn start() -> Sinkd {
        let bin = std::env::var("SINKD_BIN").unwrap_or_else(|_| {
            let loadgen = std::path::Path::new(env!("CARGO_BIN_EXE_loadgen"));
            loadgen.with_file_name("sinkd").display().to_string()
        });
        let mut child = Command::new(&bin)
            .args(["--listen", "127.0.0.1:0", "--rate-limit", "off"])
            .env("SINKD_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("e2e: cannot start {bin}: {e} (build it: cargo build --release -p sinkd)")
            });
        // sinkd logs `listening on http://127.0.0.1:PORT` when it is ready.
        let stderr = child.stderr.take().expect("piped");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(url) = line.split("listening on http://").nth(1) {
                    let addr = url.split_whitespace().next().unwrap_or("").to_string();
                    let _ = tx.send(addr);
                }
            }
        });
        let addr = rx
            .recv_timeout(Duration::from_secs(10))
            .expect("e2e: sinkd did not say where it listens within 10 s");
        Sinkd {
            child,
            addr: addr.parse().expect("e2e: sinkd's address"),
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn cpu(&self) -> Duration {
        cpu(&self.child.id().to_string())
    }
}

impl Drop for Sinkd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One rep of either side: wall time, CPU of this process and of sinkd.
struct Rep {
    elapsed: Duration,
    own_cpu: Duration,
    sinkd_cpu: Duration,
    stages: Option<Unpaced>,
}

impl Rep {
    fn rate(&self, events: u64) -> f64 {
        events as f64 / self.elapsed.as_secs_f64()
    }
}

/// Runs `f` and measures it.
fn measure(sinkd: &Sinkd, f: impl FnOnce() -> (Duration, Option<Unpaced>)) -> Rep {
    let (own0, sinkd0) = (cpu("self"), sinkd.cpu());
    let (elapsed, stages) = f();
    Rep {
        elapsed,
        own_cpu: cpu("self") - own0,
        sinkd_cpu: sinkd.cpu() - sinkd0,
        stages,
    }
}

/// The pipeline: `loadgen run` with the sink at `url`, through `events` events.
async fn ours(url: &str, events: u64, batch: usize) -> (Duration, Option<Unpaced>) {
    // The schedule must never be what limits the pipeline: events are due PACE_NS apart, far
    // faster than any pipeline here goes. The duration ends half a step after the last event's
    // intended time, so a rounding of a nanosecond either way still gives exactly `events`.
    let rate = 1_000_000_000 / PACE_NS;
    let flags: Vec<String> = [
        "--profile",
        "constant",
        "--rate",
        &rate.to_string(),
        "--duration",
        &format!("{}ns", events * PACE_NS - PACE_NS / 2),
        "--sink-url",
        url,
        "--sink-mode",
        "batch",
        "--batch-size",
        &batch.to_string(),
        "--sink-workers",
        &WORKERS.to_string(),
        "--seed",
        &SEED.to_string(),
        "--keys",
        &KEYS.to_string(),
        "--msg-size",
        &MSG_SIZE.to_string(),
        "--drain-timeout",
        &format!("{}s", RUN_LIMIT.as_secs()),
        "--quiet",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain(
        std::env::var("E2E_FLAGS")
            .unwrap_or_default()
            .split_whitespace()
            .map(str::to_string),
    )
    .collect();
    let run = loadgen::e2e::run(&flags).await.expect("e2e: the pipeline");
    assert_eq!(
        run.delivered, events,
        "e2e: the pipeline delivered every event"
    );
    (run.elapsed, Some(run))
}

/// The limit: `WORKERS` bare http1 connections, each posting the next batch of the same events
/// and waiting for the answer, until `events` are posted.
async fn limit(addr: SocketAddr, events: u64, batch: usize) -> (Duration, Option<Unpaced>) {
    let batches = events.div_ceil(batch as u64);
    let next = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let tasks: Vec<_> = (0..WORKERS)
        .map(|_| {
            let next = next.clone();
            tokio::spawn(async move {
                let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
                stream.set_nodelay(true).expect("nodelay");
                let (mut sender, connection) =
                    hyper::client::conn::http1::handshake(TokioIo::new(stream))
                        .await
                        .expect("handshake");
                tokio::spawn(connection);
                let mut factory = Events::new(SEED, KEYS, MSG_SIZE);
                let mut posted = Vec::with_capacity(batch);
                loop {
                    let b = next.fetch_add(1, Ordering::Relaxed);
                    if b >= batches {
                        break;
                    }
                    let first = b * batch as u64;
                    posted.clear();
                    posted.extend(
                        (first..(first + batch as u64).min(events)).map(|id| factory.make(id)),
                    );
                    let body = wire::encode_batch(&posted, Format::Binary);
                    let request = http::Request::post("/write/batch")
                        .header(HOST, addr.to_string())
                        .header(CONTENT_TYPE, Format::Binary.content_type())
                        .body(Full::new(Bytes::from(body)))
                        .expect("request");
                    let response = sender.send_request(request).await.expect("send");
                    assert!(response.status().is_success(), "{}", response.status());
                    response.into_body().collect().await.expect("answer");
                }
            })
        })
        .collect();
    let deadline = tokio::time::Instant::now() + RUN_LIMIT;
    for task in tasks {
        tokio::time::timeout_at(deadline, task)
            .await
            .expect("e2e: the limit client did not finish within the run limit")
            .expect("a limit connection");
    }
    (start.elapsed(), None)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn micros_per_event(d: Duration, events: u64) -> f64 {
    d.as_secs_f64() * 1e6 / events as f64
}

/// What one batch size gave.
struct Point {
    batch: usize,
    ours: f64,
    limit: f64,
    /// The median of the reps' ours ÷ limit (each pair measured back to back).
    ratio: f64,
}

fn main() {
    let reps = std::env::var("BENCH_REPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3usize)
        .max(1);
    let batches: Vec<usize> = std::env::var("E2E_BATCHES")
        .ok()
        .map(|v| v.split(',').filter_map(|b| b.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![1, 16, 64, 256, 1024]);
    // For `perf record`: the pipeline alone (or the limit client alone), no table.
    let profile = std::env::var("E2E_PROFILE").ok();
    let profile_ours = profile.as_deref() == Some("ours");
    let profile_limit = profile.as_deref() == Some("limit");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    println!(
        "end to end: generator -> queue -> batch -> {WORKERS} sink workers -> HTTP (loopback) -> sinkd (limit off), {MSG_SIZE}-byte events, against a bare hyper client on {WORKERS} connections; median of {reps}"
    );
    println!(
        "{:>6} {:>8} {:>12} {:>12} {:>20} {:>9} {:>9} {:>9} {:>9} {:>22} {:>8} {:>8}",
        "batch",
        "events",
        "ours ev/s",
        "limit ev/s",
        "ours/limit min/med/max",
        "lg µs/ev",
        "sd µs/ev",
        "cl µs/ev",
        "sd µs/ev",
        "gen busy/held/idle",
        "sink busy",
        "ev/write"
    );
    let mut points = Vec::new();
    for &batch in &batches {
        let events = std::env::var("E2E_EVENTS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or((20_000 * batch as u64).clamp(20_000, 400_000));
        let sinkd = Sinkd::start();
        let url = sinkd.url();
        let run_ours = || measure(&sinkd, || runtime.block_on(ours(&url, events, batch)));
        let run_limit = || {
            measure(&sinkd, || {
                runtime.block_on(limit(sinkd.addr, events, batch))
            })
        };
        if profile_ours {
            for _ in 0..reps {
                let rep = run_ours();
                println!(
                    "{batch:>6} {events:>8} {:>12.0} (ours only; this process {:.2} µs/ev, sinkd {:.2} µs/ev)",
                    rep.rate(events),
                    micros_per_event(rep.own_cpu, events),
                    micros_per_event(rep.sinkd_cpu, events)
                );
            }
            continue;
        }
        if profile_limit {
            for _ in 0..reps {
                let rep = run_limit();
                println!(
                    "{batch:>6} {events:>8} {:>12.0} (limit only; this process {:.2} µs/ev, sinkd {:.2} µs/ev)",
                    rep.rate(events),
                    micros_per_event(rep.own_cpu, events),
                    micros_per_event(rep.sinkd_cpu, events)
                );
            }
            continue;
        }
        // One warm-up each: connections, the audit's first ids, the allocator.
        run_ours();
        run_limit();
        let mut ours_reps = Vec::new();
        let mut limit_reps = Vec::new();
        for _ in 0..reps {
            ours_reps.push(run_ours());
            limit_reps.push(run_limit());
        }
        let ratios: Vec<f64> = ours_reps
            .iter()
            .zip(&limit_reps)
            .map(|(o, l)| o.rate(events) / l.rate(events))
            .collect();
        let (rmin, rmax) = ratios
            .iter()
            .fold((f64::MAX, f64::MIN), |(a, b), &r| (a.min(r), b.max(r)));
        let ours_rate = median(ours_reps.iter().map(|r| r.rate(events)).collect());
        let limit_rate = median(limit_reps.iter().map(|r| r.rate(events)).collect());
        let cpu_of = |reps: &[Rep], f: fn(&Rep) -> Duration| {
            median(
                reps.iter()
                    .map(|r| micros_per_event(f(r), events))
                    .collect(),
            )
        };
        // The stage shares of the median rep.
        let mut by_rate: Vec<&Rep> = ours_reps.iter().collect();
        by_rate.sort_by_key(|r| r.elapsed);
        let stages = by_rate[by_rate.len() / 2]
            .stages
            .as_ref()
            .expect("ours has stages");
        let g = &stages.generator;
        let sink_busy = stages.workers_busy.as_secs_f64()
            / (stages.workers as f64 * stages.elapsed.as_secs_f64()).max(1e-9);
        println!(
            "{batch:>6} {events:>8} {ours_rate:>12.0} {limit_rate:>12.0} {:>20} {:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>22} {:>7.0}% {:>8.1}",
            format!("{rmin:.2}/{:.2}/{rmax:.2}", median(ratios.clone())),
            cpu_of(&ours_reps, |r| r.own_cpu),
            cpu_of(&ours_reps, |r| r.sinkd_cpu),
            cpu_of(&limit_reps, |r| r.own_cpu),
            cpu_of(&limit_reps, |r| r.sinkd_cpu),
            format!(
                "{:.0}%/{:.0}%/{:.0}%",
                g.busy_ratio() * 100.0,
                g.backpressured_ratio() * 100.0,
                g.idle_ratio() * 100.0
            ),
            sink_busy * 100.0,
            stages.delivered as f64 / stages.writes.max(1) as f64
        );
        points.push(Point {
            batch,
            ours: ours_rate,
            limit: limit_rate,
            ratio: median(ratios),
        });
    }
    println!(
        "(lg: loadgen's pipeline, this process; sd: the sinkd process; cl: the limit client, this process; CPU per event, user + system)"
    );
    if let Some(p) = points.iter().find(|p| p.batch == HEADLINE_BATCH) {
        let ratio = p.ratio;
        let verdict = if ratio >= TARGET { "met" } else { "NOT met" };
        println!(
            "batch {HEADLINE_BATCH}: ours {:.0} events/s, the limit {:.0} events/s; ours/limit {ratio:.2}x (median of the reps' pairs); target >= {TARGET:.2}x: {verdict}",
            p.ours, p.limit
        );
    }
    if let Ok(path) = std::env::var("E2E_CHART") {
        let line = |f: fn(&Point) -> f64| -> Vec<(f64, f64)> {
            points.iter().map(|p| (p.batch as f64, f(p))).collect()
        };
        let svg = loadgen::e2e::chart(
            "End to end: events/s against batch size (sinkd, limit off, loopback)",
            &[
                ("loadgen pipeline", line(|p| p.ours)),
                ("bare hyper client (the limit)", line(|p| p.limit)),
            ],
        );
        // `cargo bench` runs this in loadgen/: a relative path is taken from the workspace root.
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join(path);
        std::fs::write(&path, svg)
            .unwrap_or_else(|e| panic!("e2e: cannot write {}: {e}", path.display()));
        println!("wrote {}", path.display());
    }
}
