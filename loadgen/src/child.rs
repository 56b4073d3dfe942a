//! Child `loadgen` processes: the experiments run each run, producer and processor in a
//! process of its own, so RSS and crashes belong to one of them.

use std::path::Path;
use std::process::Stdio;

use anyhow::Context;
use tokio::process::{Child, Command};

/// `loadgen ARGS`, this same executable.
pub fn loadgen(args: &[String]) -> anyhow::Result<Command> {
    let exe = std::env::current_exe().context("cannot find the loadgen executable")?;
    let mut cmd = Command::new(exe);
    cmd.args(args).stdin(Stdio::null());
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
