//! Shared by loadgen's Kafka tests: processors as child processes, a producer, sinkd, waits.

#![allow(dead_code)]

use std::net::TcpListener;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

pub fn temp(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("loadgen-kafka-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

pub fn loadgen() -> Command {
    Command::new(env!("CARGO_BIN_EXE_loadgen"))
}

/// A `loadgen process --source kafka` child, killed when dropped.
pub struct Processor {
    pub child: Child,
    pub metrics: String,
    /// Where its stdout and stderr go: files, not pipes, so a chatty member never blocks on a
    /// full pipe that nobody reads (a blocked member misses its heartbeats and churns the group).
    pub output: std::path::PathBuf,
}

impl Processor {
    pub fn start(
        bootstrap: &str,
        topic: &str,
        sink: &str,
        dir: &std::path::Path,
        extra: &[&str],
    ) -> Self {
        let port = free_port();
        std::fs::create_dir_all(dir).expect("the member's folder");
        let output = dir.join("output.log");
        let log = std::fs::File::create(&output).expect("the member's log");
        let child = loadgen()
            .args(["process", "--quiet", "--source", "kafka"])
            .args([
                "--bootstrap-servers",
                bootstrap,
                "--topic",
                topic,
                "--group",
                topic,
            ])
            .args(["--metrics-addr", &format!("127.0.0.1:{port}")])
            .args([
                "--sink-url",
                sink,
                "--session-timeout",
                "6s",
                "--stop-after",
                "150s",
            ])
            .arg("--out")
            .arg(dir)
            .args(extra)
            .stdout(log.try_clone().expect("the log again"))
            .stderr(log)
            .spawn()
            .expect("loadgen process starts");
        Processor {
            child,
            metrics: format!("http://127.0.0.1:{port}"),
            output,
        }
    }

    /// The process's /metrics, if it answers.
    pub fn metrics_text(&self) -> Option<String> {
        get(&self.metrics, "/metrics")
    }

    /// The value of `name` on /metrics (summed over label sets), if the process answers.
    pub fn metric(&self, name: &str) -> Option<f64> {
        let body = get(&self.metrics, "/metrics")?;
        let mut found = None;
        for line in body.lines().filter(|l| !l.starts_with('#')) {
            let (key, value) = line.rsplit_once(' ')?;
            let bare = key.split('{').next()?;
            if bare == name {
                *found.get_or_insert(0.0) += value.parse::<f64>().ok()?;
            }
        }
        found
    }

    pub fn terminate(mut self) -> String {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        std::fs::read_to_string(&self.output).unwrap_or_default()
    }
}

impl Drop for Processor {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A blocking GET over loopback (the test runs the tokio runtime only for sinkd).
pub fn get(base: &str, path: &str) -> Option<String> {
    use std::io::{Read, Write};
    let addr = base.trim_start_matches("http://");
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    // Short: a stopped process (SIGSTOP) accepts the connection but never answers.
    s.set_read_timeout(Some(Duration::from_secs(1))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    text.split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
}

pub fn produce(
    bootstrap: &str,
    topic: &str,
    rate: u32,
    duration: &str,
    extra: &[&str],
) -> (bool, String) {
    let out = loadgen()
        .args([
            "produce",
            "--quiet",
            "--bootstrap-servers",
            bootstrap,
            "--topic",
            topic,
        ])
        .args([
            "--rate",
            &rate.to_string(),
            "--duration",
            duration,
            "--keys",
            "64",
        ])
        .args(extra)
        .output()
        .expect("loadgen produce runs");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

pub async fn start_sinkd(rate: Option<f64>) -> sinkd::Running {
    let config = sinkd::Config {
        listen: "127.0.0.1:0".parse().expect("addr"),
        rate,
        burst: rate.map_or(1.0, |r| (r / 10.0).max(1.0)),
        max_held: 100_000,
        ..sinkd::Config::default()
    };
    sinkd::start(config).await.expect("sinkd starts")
}

pub async fn wait_for<T>(what: &str, limit: Duration, mut f: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "not within {limit:?}: {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
