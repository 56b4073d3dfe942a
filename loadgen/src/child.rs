//! Child `loadgen` processes: the experiments run each run, producer and processor in a
//! process of its own, so RSS and crashes belong to one of them.

use std::path::Path;
use std::process::Stdio;

use anyhow::Context;
use tokio::process::{Child, Command};

/// `loadgen ARGS`, this same executable; killed if its handle drops before it ends (a command
/// that is interrupted takes its children with it).
pub fn loadgen(args: &[String]) -> anyhow::Result<Command> {
    let exe = std::env::current_exe().context("cannot find the loadgen executable")?;
    let mut cmd = Command::new(exe);
    cmd.args(args).stdin(Stdio::null()).kill_on_drop(true);
    Ok(cmd)
}

/// Runs `loadgen ARGS` to the end and returns what it printed.
pub async fn output(args: &[String]) -> anyhow::Result<std::process::Output> {
    loadgen(args)?.output().await.context("cannot run loadgen")
}

/// Starts `loadgen ARGS` with its stdout and stderr in `log`; killed when dropped.
pub fn spawn(args: &[String], log: &Path) -> anyhow::Result<Child> {
    let file =
        std::fs::File::create(log).with_context(|| format!("cannot create {}", log.display()))?;
    loadgen(args)?
        .stdout(file.try_clone()?)
        .stderr(file)
        .kill_on_drop(true)
        .spawn()
        .context("cannot start loadgen")
}

/// Sends SIGTERM to `child` (a graceful stop) and waits up to `grace` for it; kills it after.
pub async fn terminate(child: &mut Child, grace: std::time::Duration) {
    if let Some(pid) = child.id() {
        let _ = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .await;
    }
    if tokio::time::timeout(grace, child.wait()).await.is_err() {
        let _ = child.kill().await;
    }
}

/// A free TCP port on loopback, for a child's metrics endpoint.
pub fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// One `loadgen process --source kafka` member of a consumer group, as the experiments and
/// `autoscale` start them: metrics on `127.0.0.1:port`, writing to `sink_url`, its dead letters
/// in `out`.
pub struct Member<'a> {
    pub bootstrap: &'a str,
    pub topic: &'a str,
    pub group: &'a str,
    pub sink_url: &'a str,
    pub port: u16,
    pub out: &'a Path,
}

impl Member<'_> {
    /// Its argv, before the run's own flags.
    pub fn argv(&self) -> Vec<String> {
        let mut argv: Vec<String> = ["process", "--quiet", "--source", "kafka"]
            .map(String::from)
            .into();
        argv.extend([
            "--bootstrap-servers".into(),
            self.bootstrap.into(),
            "--topic".into(),
            self.topic.into(),
            "--group".into(),
            self.group.into(),
            "--metrics-addr".into(),
            format!("127.0.0.1:{}", self.port),
            "--sink-url".into(),
            self.sink_url.into(),
            "--out".into(),
            self.out.display().to_string(),
        ]);
        argv
    }
}

/// One `loadgen produce` into a topic, as the experiments and `autoscale` start them: `rate`
/// events/s for `secs` seconds, ids from `first_id`, its report (what it sent) in `report`.
pub struct Producer<'a> {
    pub bootstrap: &'a str,
    pub topic: &'a str,
    pub rate: f64,
    pub secs: f64,
    pub seed: u64,
    pub first_id: u64,
    pub report: &'a Path,
}

impl Producer<'_> {
    /// Its argv; further flags (`--msg-size`, `--pressure-url`, ...) go after it.
    pub fn argv(&self) -> Vec<String> {
        vec![
            "produce".into(),
            "--quiet".into(),
            "--bootstrap-servers".into(),
            self.bootstrap.into(),
            "--topic".into(),
            self.topic.into(),
            "--rate".into(),
            self.rate.to_string(),
            "--duration".into(),
            format!("{}s", self.secs),
            "--seed".into(),
            self.seed.to_string(),
            "--first-id".into(),
            self.first_id.to_string(),
            "--report".into(),
            self.report.display().to_string(),
        ]
    }
}

/// Waits (up to a minute) until the member whose metrics are on `port` owns a partition, so
/// that load does not start into a group still forming; an error, with its log, if it exits.
pub async fn joined(port: u16, member: &mut Child, log: &Path) -> anyhow::Result<()> {
    let metrics = sinkd::SinkClient::new(&format!("http://127.0.0.1:{port}"))?;
    let until = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
    while tokio::time::Instant::now() < until {
        if let Ok(Some(status)) = member.try_wait() {
            let tail = std::fs::read_to_string(log).unwrap_or_default();
            anyhow::bail!("the processor exited ({status}) before joining its group:\n{tail}");
        }
        if let Ok(text) = metrics.metrics().await
            && crate::telemetry::scrape(&text, "kafka_consumer_assigned_partitions") > 0.0
        {
            return Ok(());
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    anyhow::bail!(
        "the processor did not join its group within 60 s (see {})",
        log.display()
    )
}

/// Resolves on Ctrl-C or SIGTERM (so `kill` stops a command as cleanly as Ctrl-C).
pub fn signalled() -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> {
    #[cfg(unix)]
    let terminate: std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> =
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => Box::pin(async move {
                s.recv().await;
            }),
            Err(_) => Box::pin(std::future::pending()),
        };
    #[cfg(not(unix))]
    let terminate: std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> =
        Box::pin(std::future::pending());
    Box::pin(async move {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = terminate => {}
        }
    })
}
