//! `loadgen keyorder`: per-key parallelism within one partition, measured.
//!
//! confluent's parallel-consumer publishes one table: 10,000 records on one partition, each
//! taking 0–5 ms of work, done in 22.2 s in partition order, 2.18 s in key order (100 keys) and
//! 2.83 s unordered. The same claim holds here with the parts this workspace already has: a
//! [`KafkaSource`] into a key-partitioned [`workers`] pool whose writes acknowledge each record
//! when its work is done, so that the source commits only the acknowledged prefix.
//!
//! The records are produced once into a topic of one partition, with a key drawn at random
//! among `--keys` and a value `KEY:SEQ` (the record's place among its key's records). Each mode
//! then reads them all in a fresh group; a record's work is a sleep drawn from its offset, the
//! same in every mode; the order check sees each key's `SEQ`s as the work finishes. Timed from
//! the first record's arrival to the last acknowledgement; the group's commit is then read
//! back from the broker, and must be the log's end.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::Context;
use rdkafka::ClientConfig;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use reactive::Publisher;
use reactive::kafka::{KafkaConfig, KafkaRecord, KafkaSource};
use reactive::sink::{OrderCheck, Partitioning, WorkersConfig, workers};
use serde::Serialize;
use tokio::time::Instant;

use super::ahead::Ahead;
use super::group_lag::LagReader;
use crate::cli::{KeyOrderArgs, KeyOrderMode};

/// What parallel-consumer's README reports for the same workload, seconds.
const PUBLISHED: [(KeyOrderMode, f64); 3] = [
    (KeyOrderMode::Partition, 22.2),
    (KeyOrderMode::Key, 2.18),
    (KeyOrderMode::Unordered, 2.83),
];

/// One mode's result.
#[derive(Debug, Clone, Serialize)]
pub struct ModeResult {
    pub mode: KeyOrderMode,
    pub workers: usize,
    /// First record in to last acknowledgement, seconds.
    pub seconds: f64,
    /// Records whose work finished (each once).
    pub processed: u64,
    /// Records whose work finished before an earlier record of their key.
    pub order_violations: u64,
    /// The partition order's time divided by this mode's.
    pub speedup: f64,
    /// The group's committed offset read back from the broker after the run.
    pub committed: Option<i64>,
    /// parallel-consumer's published time for the mode, seconds.
    pub published_seconds: f64,
}

/// The whole comparison.
#[derive(Debug, Clone, Serialize)]
pub struct KeyOrderReport {
    pub records: u64,
    pub keys: u64,
    pub work_max_ms: f64,
    /// The sum of every record's work: what one worker needs at least, seconds.
    pub total_work_seconds: f64,
    pub seed: u64,
    pub modes: Vec<ModeResult>,
}

/// Runs `loadgen keyorder`.
///
/// # Errors
/// When the broker cannot be reached or started, the records cannot be produced, or a mode does
/// not finish within its deadline.
pub async fn run(args: KeyOrderArgs) -> anyhow::Result<std::process::ExitCode> {
    anyhow::ensure!(
        args.records >= 1,
        "invalid value '0' for '--records': at least 1"
    );
    anyhow::ensure!(args.keys >= 1, "invalid value '0' for '--keys': at least 1");
    anyhow::ensure!(
        args.workers >= 1,
        "invalid value '0' for '--workers': at least 1"
    );
    if let Some(child) = &args.child {
        return child_run(&args, child).await;
    }
    let (_broker, bootstrap) = super::broker(args.bootstrap_servers.as_deref())?;
    if let Some(kills) = args.kills {
        return kill_trials(&args, &bootstrap, kills).await;
    }
    compare(&args, &bootstrap).await
}

/// The comparison: the records produced once, then read in each mode.
async fn compare(args: &KeyOrderArgs, bootstrap: &str) -> anyhow::Result<std::process::ExitCode> {
    let topic = format!("keyorder-{}-{}", args.seed, std::process::id());
    super::create_topic(bootstrap, &topic, 1, 1).await?;
    let keys = draw_keys(args.records, args.keys, args.seed);
    produce(bootstrap, &topic, &keys)
        .await
        .context("cannot produce the records")?;
    let work = Arc::new(draw_work(args.records, args.work_max, args.seed));
    let total: Duration = work.iter().sum();
    println!(
        "{} records on 1 partition, {} keys, work 0-{:?} each ({:.1} s in all)",
        args.records,
        args.keys,
        args.work_max,
        total.as_secs_f64()
    );
    let mut modes = Vec::new();
    for (i, &mode) in args.modes.iter().enumerate() {
        let n = if mode == KeyOrderMode::Partition {
            1
        } else {
            args.workers
        };
        let group = format!("{topic}-{i}");
        let at = At {
            bootstrap,
            topic: &topic,
            group: &group,
            commit_interval: args.commit_interval,
            max_ahead: args.max_ahead,
        };
        let deadline = total + Duration::from_secs(60);
        let mut result = run_mode(at, mode, n, &work, deadline, None).await?;
        let lag = LagReader::new(bootstrap, &group, &topic, 1)?.read().await?;
        result.committed = Some(lag.log_end - lag.lag);
        println!(
            "  {:<10} {:>4} workers  {:>7.2} s  {} processed  {} order violations  commit {:?}",
            format!("{mode:?}").to_lowercase(),
            n,
            result.seconds,
            result.processed,
            result.order_violations,
            result.committed
        );
        modes.push(result);
    }
    let base = modes
        .iter()
        .find(|m| m.mode == KeyOrderMode::Partition)
        .map(|m| m.seconds);
    for m in &mut modes {
        m.speedup = base.map_or(f64::NAN, |b| b / m.seconds);
    }
    let report = KeyOrderReport {
        records: args.records,
        keys: args.keys,
        work_max_ms: args.work_max.as_secs_f64() * 1e3,
        total_work_seconds: total.as_secs_f64(),
        seed: args.seed,
        modes,
    };
    write_report(args, &report)
}

/// Prints and writes the comparison; fails when a mode missed a record, broke a key's order
/// (unordered aside) or left its commit short of the log's end.
fn write_report(
    args: &KeyOrderArgs,
    report: &KeyOrderReport,
) -> anyhow::Result<std::process::ExitCode> {
    let summary = summary(report);
    println!("\n{summary}");
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from("out/keyorder"));
    std::fs::create_dir_all(&out).with_context(|| format!("cannot create {}", out.display()))?;
    std::fs::write(
        out.join("keyorder.json"),
        serde_json::to_string_pretty(report)?,
    )?;
    std::fs::write(out.join("summary.md"), &summary)?;
    println!("wrote {}", out.display());
    let broken = report.modes.iter().any(|m| {
        m.processed != args.records
            || (m.mode != KeyOrderMode::Unordered && m.order_violations > 0)
            || m.committed != Some(args.records as i64)
    });
    Ok(if broken {
        std::process::ExitCode::FAILURE
    } else {
        std::process::ExitCode::SUCCESS
    })
}

/// The child of `--kills`: key order over `topic` in `group`, each finished record's offset
/// appended to `file`, until every record of the topic is done.
async fn child_run(
    args: &KeyOrderArgs,
    child: &[String],
) -> anyhow::Result<std::process::ExitCode> {
    let [topic, group, file] = child else {
        anyhow::bail!("--child takes TOPIC GROUP FILE");
    };
    let bootstrap = args
        .bootstrap_servers
        .clone()
        .context("--child needs --bootstrap-servers")?;
    let sink = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(file)
        .with_context(|| format!("cannot open {file}"))?;
    let work = Arc::new(draw_work(args.records, args.work_max, args.seed));
    let deadline = work.iter().sum::<Duration>() + Duration::from_secs(60);
    let sink = Some(Arc::new(std::sync::Mutex::new(sink)));
    // A restarted child finishes what is left: it stops when every record it reads is done,
    // counted by the topic's end rather than by what it processed itself.
    let at = At {
        bootstrap: &bootstrap,
        topic,
        group,
        commit_interval: args.commit_interval,
        max_ahead: args.max_ahead,
    };
    run_mode_until_end(at, args.workers, &work, deadline, sink).await?;
    Ok(std::process::ExitCode::SUCCESS)
}

/// Key order until the group's commit reaches the log's end.
async fn run_mode_until_end(
    at: At<'_>,
    n: usize,
    work: &Arc<Vec<Duration>>,
    deadline: Duration,
    sink: Option<Arc<std::sync::Mutex<std::fs::File>>>,
) -> anyhow::Result<()> {
    let reader = LagReader::new(at.bootstrap, at.group, at.topic, 1)?;
    let run = run_mode(at, KeyOrderMode::Key, n, work, deadline, sink);
    tokio::pin!(run);
    let started = Instant::now();
    loop {
        tokio::select! {
            result = &mut run => {
                // Every record processed by this run alone (a first run).
                result?;
                return Ok(());
            }
            () = tokio::time::sleep(Duration::from_millis(250)) => {
                let lag = reader.read().await?;
                if lag.lag == 0 && lag.log_end > 0 {
                    return Ok(()); // a restart: the rest is done and committed
                }
                anyhow::ensure!(started.elapsed() < deadline, "not done within {deadline:?}");
            }
        }
    }
}

/// One `--kills` trial's outcome.
#[derive(Debug, Clone, Serialize)]
pub struct KillTrial {
    /// Records the first run had written when it was killed.
    pub written_before_kill: u64,
    /// The group's commit found after the kill.
    pub committed_at_kill: i64,
    /// Records written by both runs.
    pub replayed: u64,
    /// Records written by neither.
    pub lost: u64,
    /// Records below the commit that the second run wrote again (must be 0).
    pub reread_below_commit: u64,
}

/// `--kills`: key order SIGKILLed mid-run and restarted in the same group, `kills` times.
async fn kill_trials(
    args: &KeyOrderArgs,
    bootstrap: &str,
    kills: u32,
) -> anyhow::Result<std::process::ExitCode> {
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from("out/keyorder-kills"));
    std::fs::create_dir_all(&out).with_context(|| format!("cannot create {}", out.display()))?;
    let mut state = args.seed ^ 0x6b69_6c6c;
    let mut trials = Vec::new();
    for t in 0..kills {
        // Killed somewhere between a tenth and nine tenths of the way.
        let fraction = 0.1 + 0.8 * splitmix::unit(splitmix::step(&mut state));
        let trial = kill_once(args, bootstrap, &out, t, fraction).await?;
        println!(
            "  kill {t}: {} written before the kill, commit {}, replayed {}, lost {}, re-read below the commit {}",
            trial.written_before_kill,
            trial.committed_at_kill,
            trial.replayed,
            trial.lost,
            trial.reread_below_commit
        );
        trials.push(trial);
    }
    std::fs::write(
        out.join("kills.json"),
        serde_json::to_string_pretty(&trials)?,
    )?;
    let window = args.workers * 16;
    let worst = trials.iter().map(|t| t.replayed).max().unwrap_or(0);
    println!(
        "replay after kill -9: at most {worst} records in {kills} kills (the pool holds up to {window}); wrote {}",
        out.display()
    );
    let broken = trials
        .iter()
        .any(|t| t.lost > 0 || t.reread_below_commit > 0);
    Ok(if broken {
        std::process::ExitCode::FAILURE
    } else {
        std::process::ExitCode::SUCCESS
    })
}

/// One kill: a fresh topic and group, the first run SIGKILLed once it has written `fraction`
/// of the records, the commit read, the second run to the end, the two sinks compared.
async fn kill_once(
    args: &KeyOrderArgs,
    bootstrap: &str,
    out: &std::path::Path,
    t: u32,
    fraction: f64,
) -> anyhow::Result<KillTrial> {
    let topic = format!("keyorder-kill-{}-{t}-{}", args.seed, std::process::id());
    let group = format!("{topic}-g");
    super::create_topic(bootstrap, &topic, 1, 1).await?;
    let keys = draw_keys(args.records, args.keys, args.seed);
    produce(bootstrap, &topic, &keys).await?;
    let at = (args.records as f64 * fraction) as u64;
    let files = [
        out.join(format!("kill-{t}-first.offsets")),
        out.join(format!("kill-{t}-second.offsets")),
    ];
    let argv = |file: &std::path::Path| -> Vec<String> {
        let mut v: Vec<String> = ["keyorder", "--records"].map(String::from).to_vec();
        v.push(args.records.to_string());
        v.extend([
            "--work-max".into(),
            format!("{}us", args.work_max.as_micros()),
        ]);
        v.extend(["--workers".into(), args.workers.to_string()]);
        v.extend(["--seed".into(), args.seed.to_string()]);
        v.extend([
            "--commit-interval".into(),
            format!("{}us", args.commit_interval.as_micros()),
        ]);
        if let Some(w) = args.max_ahead {
            v.extend(["--max-ahead".into(), w.to_string()]);
        }
        v.extend(["--bootstrap-servers".into(), bootstrap.to_string()]);
        v.extend(["--child".into(), topic.clone(), group.clone()]);
        v.push(file.display().to_string());
        v
    };
    let mut first =
        crate::child::spawn(&argv(&files[0]), &out.join(format!("kill-{t}-first.log")))?;
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut written = LineCount::default();
    while written.update(&files[0]) < at && Instant::now() < deadline {
        if first.try_wait()?.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    first.start_kill().context("cannot kill the first run")?; // SIGKILL
    let _ = first.wait().await;
    let lag = LagReader::new(bootstrap, &group, &topic, 1)?.read().await?;
    let committed = lag.log_end - lag.lag;
    let status = crate::child::spawn(&argv(&files[1]), &out.join(format!("kill-{t}-second.log")))?
        .wait()
        .await?;
    anyhow::ensure!(status.success(), "the restarted run failed: {status}");
    let a = offsets(&files[0]);
    let b = offsets(&files[1]);
    Ok(KillTrial {
        written_before_kill: a.len() as u64,
        committed_at_kill: committed,
        replayed: a.intersection(&b).count() as u64,
        lost: (0..args.records as i64)
            .filter(|o| !a.contains(o) && !b.contains(o))
            .count() as u64,
        reread_below_commit: b.iter().filter(|&&o| o < committed).count() as u64,
    })
}

/// Lines in a growing file, reading only what was appended since the last look (it is
/// watched every 2 ms while the child writes).
#[derive(Default)]
struct LineCount {
    read: u64,
    lines: u64,
}

impl LineCount {
    fn update(&mut self, path: &std::path::Path) -> u64 {
        use std::io::{Read, Seek, SeekFrom};
        let mut new = Vec::new();
        if let Ok(mut f) = std::fs::File::open(path) {
            if f.seek(SeekFrom::Start(self.read)).is_ok() && f.read_to_end(&mut new).is_ok() {
                self.read += new.len() as u64;
                self.lines += new.iter().filter(|&&c| c == b'\n').count() as u64;
            }
        }
        self.lines
    }
}

/// The offsets in a sink file (a torn last line, cut by the kill, is not a write).
fn offsets(path: &std::path::Path) -> std::collections::HashSet<i64> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let complete = text.rsplit_once('\n').map_or("", |(done, _)| done);
    complete.lines().filter_map(|l| l.parse().ok()).collect()
}

/// Each record's key, at random among `keys`.
fn draw_keys(records: u64, keys: u64, seed: u64) -> Vec<u64> {
    let mut state = seed ^ 0x6b65_796f_7264_6572;
    (0..records)
        .map(|_| splitmix::step(&mut state) % keys)
        .collect()
}

/// Each record's work, uniform in `[0, max]`, by offset.
fn draw_work(records: u64, max: Duration, seed: u64) -> Vec<Duration> {
    let mut state = seed ^ 0x776f_726b;
    (0..records)
        .map(|_| max.mul_f64(splitmix::unit(splitmix::step(&mut state))))
        .collect()
}

/// Produces one record per key drawn, valued `KEY:SEQ`, and waits for the broker to have all.
async fn produce(bootstrap: &str, topic: &str, keys: &[u64]) -> anyhow::Result<()> {
    let (bootstrap, topic, keys) = (bootstrap.to_string(), topic.to_string(), keys.to_vec());
    tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
        let producer: BaseProducer = ClientConfig::new()
            .set("bootstrap.servers", &bootstrap)
            .set("linger.ms", "5")
            .set("enable.idempotence", "false")
            .create()?;
        let mut seqs = std::collections::HashMap::<u64, u64>::new();
        for key in keys {
            let seq = seqs.entry(key).or_default();
            let (k, v) = (key.to_string(), format!("{key}:{seq}"));
            *seq += 1;
            let mut record = BaseRecord::to(&topic).key(&k).payload(&v);
            loop {
                match producer.send(record) {
                    Ok(()) => break,
                    Err((_, back)) => {
                        producer.poll(Duration::from_millis(10));
                        record = back;
                    }
                }
            }
        }
        producer.flush(Duration::from_secs(60))?;
        Ok(())
    })
    .await?
}

/// A record's key and its place among the key's records, from its value `KEY:SEQ`.
fn key_seq(r: &KafkaRecord) -> Option<(u64, u64)> {
    let text = std::str::from_utf8(r.payload()?).ok()?;
    let (k, s) = text.split_once(':')?;
    Some((k.parse().ok()?, s.parse().ok()?))
}

/// Where a mode reads: the cluster, the topic and the consumer group.
#[derive(Debug, Clone, Copy)]
struct At<'a> {
    bootstrap: &'a str,
    topic: &'a str,
    group: &'a str,
    /// The source's commit interval.
    commit_interval: Duration,
    /// `--max-ahead`: the gate on dispatch past the first unacknowledged record.
    max_ahead: Option<u64>,
}

/// What a mode's workers do with each record, and what they saw.
struct Probe {
    check: OrderCheck,
    processed: AtomicU64,
    first: OnceLock<Instant>,
    last: std::sync::Mutex<Option<Instant>>,
    /// Each record's work, by offset.
    work: Arc<Vec<Duration>>,
    /// `--kills`' sink: offsets written, one a line, each before its record is acknowledged.
    sink: Option<Arc<std::sync::Mutex<std::fs::File>>>,
    /// `--max-ahead`'s gate, told when a record is done.
    ahead: Option<Arc<Ahead>>,
}

impl Probe {
    /// Works on `r` (sleeps its draw), checks its key's order, writes it to the sink if there
    /// is one, and acknowledges it.
    async fn work_on(&self, r: KafkaRecord) {
        self.first.get_or_init(Instant::now);
        let at = usize::try_from(r.offset).unwrap_or(usize::MAX);
        tokio::time::sleep(self.work.get(at).copied().unwrap_or_default()).await;
        if let Some((key, seq)) = key_seq(&r) {
            self.check.observe(key, seq);
        }
        if let Some(file) = &self.sink {
            use std::io::Write;
            let mut file = file.lock().unwrap_or_else(|e| e.into_inner());
            if file
                .write_all(format!("{}\n", r.offset).as_bytes())
                .is_err()
            {
                // Not written: not acknowledged, read again after a restart.
                if let Some(gate) = &self.ahead {
                    gate.done(r.offset);
                }
                return;
            }
        }
        let offset = r.offset;
        r.ack.ack();
        if let Some(gate) = &self.ahead {
            gate.done(offset);
        }
        self.processed.fetch_add(1, Ordering::SeqCst);
        *self.last.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
    }
}

/// Connects `subscriber` to the source's records, each held until `gate` admits its offset.
fn spawn_gated<S>(
    source: KafkaSource,
    gate: Arc<Ahead>,
    subscriber: S,
) -> tokio::task::JoinHandle<()>
where
    S: reactive::Subscriber<KafkaRecord> + Send + 'static,
{
    use futures::StreamExt;
    use reactive::PublisherExt;
    let mut records = source.into_stream();
    let gated = async_stream::stream! {
        while let Some(r) = records.next().await {
            if let Ok(record) = &r {
                gate.admit(record.offset).await;
            }
            let failed = r.is_err();
            yield r;
            if failed {
                break;
            }
        }
    };
    tokio::spawn(reactive::from_try_stream(gated).connect(subscriber))
}

/// Reads every record once in `at`'s group, with `n` workers spread by `mode`.
async fn run_mode(
    at: At<'_>,
    mode: KeyOrderMode,
    n: usize,
    work: &Arc<Vec<Duration>>,
    deadline: Duration,
    sink: Option<Arc<std::sync::Mutex<std::fs::File>>>,
) -> anyhow::Result<ModeResult> {
    let At {
        bootstrap,
        topic,
        group,
        commit_interval,
        max_ahead,
    } = at;
    let records = work.len() as u64;
    let config = KafkaConfig {
        commit_interval,
        lag_interval: Duration::ZERO,
        ..KafkaConfig::new(bootstrap, group, [topic])
    };
    let source = KafkaSource::new(config);
    let handle = source.handle();
    let probe = Arc::new(Probe {
        check: OrderCheck::default(),
        processed: AtomicU64::new(0),
        first: OnceLock::new(),
        last: std::sync::Mutex::new(None),
        work: work.clone(),
        sink,
        ahead: max_ahead.map(|w| Arc::new(Ahead::new(w))),
    });
    let partitioning = match mode {
        KeyOrderMode::Unordered => Partitioning::RoundRobin,
        _ => Partitioning::Key,
    };
    let config = WorkersConfig {
        workers: n,
        window: 16,
        partitioning,
        batching: reactive::sink::Batching::default(),
    };
    let p = probe.clone();
    let (subscriber, pool) = workers(
        config,
        |r: &KafkaRecord| key_seq(r).map_or(0, |(k, _)| k),
        move |_, batch: Vec<KafkaRecord>| {
            let p = p.clone();
            async move {
                for r in batch {
                    p.work_on(r).await;
                }
            }
        },
    );
    let connection = match probe.ahead.clone() {
        None => tokio::spawn(source.connect(subscriber)),
        Some(gate) => spawn_gated(source, gate, subscriber),
    };
    let pool = tokio::spawn(pool);
    let started = Instant::now();
    while probe.processed.load(Ordering::SeqCst) < records && started.elapsed() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    handle.close().await; // commits what was acknowledged, then leaves
    connection.abort();
    pool.abort();
    probe.result(mode, n, records, deadline)
}

impl Probe {
    /// The mode's result, once its run is over.
    fn result(
        &self,
        mode: KeyOrderMode,
        n: usize,
        records: u64,
        deadline: Duration,
    ) -> anyhow::Result<ModeResult> {
        let done = self.processed.load(Ordering::SeqCst);
        anyhow::ensure!(
            done >= records,
            "{mode:?}: {done} of {records} records processed within {deadline:?}"
        );
        let last = *self.last.lock().unwrap_or_else(|e| e.into_inner());
        let seconds = match (self.first.get(), last) {
            (Some(a), Some(b)) => b.duration_since(*a).as_secs_f64(),
            _ => f64::NAN,
        };
        Ok(ModeResult {
            mode,
            workers: n,
            seconds,
            processed: done,
            order_violations: self.check.violations(),
            speedup: f64::NAN,
            committed: None,
            published_seconds: PUBLISHED
                .iter()
                .find(|(m, _)| *m == mode)
                .map_or(f64::NAN, |(_, s)| *s),
        })
    }
}

/// The table, as markdown.
fn summary(r: &KeyOrderReport) -> String {
    let mut s = format!(
        "{} records on one partition, {} keys, 0-{} ms of work each ({:.1} s of work in all), seed {}\n\n\
         | mode | workers | time | vs partition order | order violations | committed | parallel-consumer (published) |\n\
         |---|---|---|---|---|---|---|\n",
        r.records, r.keys, r.work_max_ms, r.total_work_seconds, r.seed
    );
    for m in &r.modes {
        s += &format!(
            "| {} | {} | {:.2} s | {} | {} | {} | {:.2} s |\n",
            format!("{:?}", m.mode).to_lowercase(),
            m.workers,
            m.seconds,
            // Without a partition-order run in the same command there is nothing to compare.
            if m.speedup.is_finite() {
                format!("{:.1}x", m.speedup)
            } else {
                "-".to_string()
            },
            m.order_violations,
            m.committed.map_or("-".to_string(), |c| c.to_string()),
            m.published_seconds
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_are_seeded_and_in_range() {
        let a = draw_keys(1000, 100, 7);
        assert_eq!(a, draw_keys(1000, 100, 7));
        assert_ne!(a, draw_keys(1000, 100, 8));
        assert!(a.iter().all(|&k| k < 100));
        let distinct: std::collections::HashSet<_> = a.iter().collect();
        assert!(distinct.len() > 90, "100 keys drawn 1000 times");
        let w = draw_work(1000, Duration::from_millis(5), 7);
        assert!(w.iter().all(|d| *d <= Duration::from_millis(5)));
        let mean = w.iter().sum::<Duration>().as_secs_f64() / 1000.0;
        assert!((0.002..0.003).contains(&mean), "mean {mean}");
    }
}
