//! A memory limit for a child process, and how a child that met it ended.
//!
//! [`Limit::new`] picks the mechanism: a memory cgroup of its own under this process's cgroup
//! (v2 or v1) where the machine allows one, else `setrlimit(RLIMIT_DATA)`. [`Limit::apply`]
//! puts a command under it *before it runs* (a `pre_exec` hook: the child joins the cgroup, or
//! takes the rlimit, between fork and exec), so every byte of the child is counted.
//!
//! What each mechanism means:
//! - a cgroup charges resident memory (anonymous and page cache) against the limit; at the
//!   limit the kernel reclaims what it can, then the OOM killer sends SIGKILL. The cgroup counts
//!   its OOM kills, which is how [`fate::classify`] tells them from any other SIGKILL.
//! - `RLIMIT_DATA` caps the data segment: private writable mappings, so address space reserved
//!   writable counts whether touched or not. A request over it fails; Rust aborts on a failed
//!   allocation (SIGABRT, "memory allocation of N bytes failed" on stderr). Chosen over
//!   `RLIMIT_AS`, which also counts the PROT_NONE reservations of the allocator's arenas: a
//!   `loadgen run` on glibc's malloc, 3 s in, had 150 MB of address space (VmSize) for 12 MB of
//!   data segment (VmData) and 15 MB resident.

mod cgroup;
pub mod fate;

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;

pub use cgroup::Version;

/// How to impose a limit (`--memory-limit-via`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Via {
    /// A cgroup where the machine allows one, else setrlimit.
    Auto,
    /// A cgroup, or an error.
    Cgroup,
    /// setrlimit(RLIMIT_DATA).
    Rlimit,
}

/// The mechanism a limit uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mechanism {
    Cgroup(Version),
    RlimitData,
}

impl std::fmt::Display for Mechanism {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Mechanism::Cgroup(Version::V2) => "cgroup v2 (memory.max)",
            Mechanism::Cgroup(Version::V1) => "cgroup v1 (memory.limit_in_bytes)",
            Mechanism::RlimitData => "setrlimit(RLIMIT_DATA)",
        })
    }
}

/// A memory limit of `bytes`, ready to put one child under.
#[derive(Debug)]
pub struct Limit {
    pub bytes: u64,
    cgroup: Option<cgroup::Cgroup>,
    /// The cgroup's `cgroup.procs`, made before the fork: the hook must not allocate.
    procs: Option<CString>,
    /// Why there is no cgroup, when `Auto` fell back to the rlimit.
    pub fallback: Option<String>,
}

impl Limit {
    /// A limit of `bytes` through `via`; `name` names the cgroup (unique on this machine).
    pub fn new(bytes: u64, via: Via, name: &str) -> anyhow::Result<Limit> {
        let (cgroup, fallback) = match via {
            Via::Rlimit => (None, None),
            Via::Cgroup => (Some(cgroup::Cgroup::create(name, bytes)?), None),
            Via::Auto => match cgroup::Cgroup::create(name, bytes) {
                Ok(c) => (Some(c), None),
                Err(e) => (None, Some(format!("{e:#}"))),
            },
        };
        let procs = match &cgroup {
            Some(c) => Some(CString::new(c.procs().as_os_str().as_bytes())?),
            None => None,
        };
        Ok(Limit {
            bytes,
            cgroup,
            procs,
            fallback,
        })
    }

    pub fn mechanism(&self) -> Mechanism {
        self.cgroup
            .as_ref()
            .map_or(Mechanism::RlimitData, |c| Mechanism::Cgroup(c.version))
    }

    /// Puts the child `cmd` starts under the limit, from before its first instruction.
    #[allow(unsafe_code)]
    pub fn apply(&self, cmd: &mut tokio::process::Command) {
        let procs = self.procs.clone();
        let bytes = self.bytes;
        let hook = move || -> std::io::Result<()> {
            match &procs {
                Some(path) => join_cgroup(path),
                None => limit_data(bytes),
            }
        };
        // SAFETY: the hook runs between fork and exec, where only async-signal-safe calls are
        // allowed: it makes only open, write, close and setrlimit, and allocates nothing (the
        // path was made before the fork; the closure owns it).
        unsafe {
            cmd.pre_exec(hook);
        }
    }

    /// The bytes the limit counts, for the child `pid`, now: the cgroup's charge, or the
    /// child's data segment (VmData) under the rlimit.
    pub fn usage(&self, pid: u32) -> Option<u64> {
        match &self.cgroup {
            Some(c) => c.usage(),
            None => {
                let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
                cgroup::keyed(&status, "VmData:").map(|kib| kib * 1024)
            }
        }
    }

    /// The OOM kills the cgroup counted (`None` under the rlimit: nothing counts them).
    pub fn oom_kills(&self) -> Option<u64> {
        self.cgroup.as_ref().and_then(cgroup::Cgroup::oom_kills)
    }
}

/// In the forked child: moves this process into the cgroup (`0` is "the writer").
#[allow(unsafe_code)]
fn join_cgroup(procs: &CString) -> std::io::Result<()> {
    // SAFETY: a valid NUL-terminated path; the descriptor is closed on every path.
    unsafe {
        let fd = libc::open(procs.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let written = libc::write(fd, b"0".as_ptr().cast(), 1);
        let error = std::io::Error::last_os_error();
        libc::close(fd);
        if written != 1 {
            return Err(error);
        }
    }
    Ok(())
}

/// In the forked child: caps the data segment at `bytes`.
#[allow(unsafe_code)]
fn limit_data(bytes: u64) -> std::io::Result<()> {
    let limit = libc::rlimit {
        rlim_cur: bytes as libc::rlim_t,
        rlim_max: bytes as libc::rlim_t,
    };
    // SAFETY: setrlimit reads the struct we pass and nothing else.
    if unsafe { libc::setrlimit(libc::RLIMIT_DATA, &limit) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use fate::Fate;

    /// What the children below run: allocate and touch a MiB at a time until refused.
    #[test]
    #[ignore = "run in a child under a limit by the tests below"]
    fn allocate_until_refused() {
        let mut hold: Vec<Vec<u8>> = Vec::new();
        loop {
            hold.push(vec![1u8; 1 << 20]);
        }
    }

    /// This test binary running only [`allocate_until_refused`] under `limit`; its fate.
    async fn allocate_under(limit: &Limit) -> Fate {
        let exe = std::env::current_exe().expect("the test binary");
        let mut cmd = tokio::process::Command::new(exe);
        cmd.args([
            "--ignored",
            "--exact",
            "memlimit::tests::allocate_until_refused",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
        limit.apply(&mut cmd);
        // A guard against a child that never meets its limit, not a measurement.
        let out = tokio::time::timeout(std::time::Duration::from_secs(120), cmd.output())
            .await
            .expect("the child met its limit")
            .expect("the child ran");
        fate::of_status(
            out.status,
            limit.oom_kills(),
            &String::from_utf8_lossy(&out.stderr),
        )
    }

    #[tokio::test]
    async fn a_child_over_its_rlimit_dies_of_an_allocation_failure() {
        let limit = Limit::new(64 << 20, Via::Rlimit, "unused").unwrap();
        assert_eq!(limit.mechanism(), Mechanism::RlimitData);
        let fate = allocate_under(&limit).await;
        assert!(matches!(fate, Fate::AllocationFailure { .. }), "{fate:?}");
    }

    #[tokio::test]
    async fn a_child_over_its_cgroup_limit_is_killed_by_the_oom_killer() {
        let name = format!("loadgen-test-{}", std::process::id());
        let Ok(limit) = Limit::new(64 << 20, Via::Cgroup, &name) else {
            eprintln!("no writable memory cgroup here: nothing to test");
            return;
        };
        assert!(matches!(limit.mechanism(), Mechanism::Cgroup(_)));
        assert_eq!(allocate_under(&limit).await, Fate::OomKilled);
    }
}
