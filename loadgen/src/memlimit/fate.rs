//! How a child under a memory limit ended, from its exit status, the cgroup's count of OOM
//! kills, and the end of its stderr. Pure: the caller reads those, this judges them.

use serde::{Deserialize, Serialize};

/// The end of a child, as far as its memory limit is concerned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Fate {
    /// It exited on its own, with this code: it lived through the run.
    Exited { code: i32 },
    /// SIGKILL, and its cgroup counted an OOM kill: the kernel's OOM killer.
    OomKilled,
    /// SIGKILL from an unknown sender (no cgroup counted an OOM kill).
    Killed,
    /// An allocation failed and the process ended (Rust aborts: SIGABRT), with the line that
    /// said so.
    AllocationFailure { message: String },
    /// Another signal (or SIGABRT with no word of an allocation).
    Signalled { signal: i32 },
}

impl Fate {
    /// Whether the child ended before its run did.
    pub fn died(&self) -> bool {
        !matches!(self, Fate::Exited { .. })
    }
}

impl std::fmt::Display for Fate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Fate::Exited { code } => write!(f, "lived: exited with code {code}"),
            Fate::OomKilled => f.write_str("killed by SIGKILL (the OOM killer)"),
            Fate::Killed => f.write_str("killed by SIGKILL (sender unknown: no OOM kill counted)"),
            Fate::AllocationFailure { message } => write!(f, "allocation failure: {message}"),
            Fate::Signalled { signal } => write!(f, "killed by signal {signal}"),
        }
    }
}

/// The line in which Rust's allocation-error handler (or a panic on a failed allocation) says
/// an allocation failed.
fn allocation_message(stderr: &str) -> Option<String> {
    stderr
        .lines()
        .find(|l| {
            l.contains("memory allocation of")
                || l.contains("Cannot allocate memory")
                || l.contains("capacity overflow")
        })
        .map(|l| l.trim().to_string())
}

/// Judges an exit: `code` and `signal` as `ExitStatus` gives them, `oom_kills` from the cgroup
/// (`None` without one), `stderr` the end of what the child wrote there.
pub fn classify(
    code: Option<i32>,
    signal: Option<i32>,
    oom_kills: Option<u64>,
    stderr: &str,
) -> Fate {
    const SIGKILL: i32 = 9;
    match (code, signal) {
        (_, Some(SIGKILL)) if oom_kills.is_some_and(|n| n > 0) => Fate::OomKilled,
        (_, Some(SIGKILL)) => Fate::Killed,
        (_, Some(signal)) => match allocation_message(stderr) {
            Some(message) => Fate::AllocationFailure { message },
            None => Fate::Signalled { signal },
        },
        (Some(code), None) => match allocation_message(stderr) {
            Some(message) if code != 0 => Fate::AllocationFailure { message },
            _ => Fate::Exited { code },
        },
        // Neither a code nor a signal: not on Unix; call it a death by an unknown signal.
        (None, None) => Fate::Signalled { signal: 0 },
    }
}

/// [`classify`] for a real exit status.
pub fn of_status(status: std::process::ExitStatus, oom_kills: Option<u64>, stderr: &str) -> Fate {
    use std::os::unix::process::ExitStatusExt;
    classify(status.code(), status.signal(), oom_kills, stderr)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sigkill_with_an_oom_kill_counted_is_the_oom_killer() {
        assert_eq!(classify(None, Some(9), Some(1), ""), Fate::OomKilled);
        assert!(Fate::OomKilled.died());
    }

    #[test]
    fn sigkill_without_an_oom_kill_counted_is_not_blamed_on_it() {
        assert_eq!(classify(None, Some(9), Some(0), ""), Fate::Killed);
        assert_eq!(classify(None, Some(9), None, ""), Fate::Killed);
    }

    #[test]
    fn an_abort_after_a_failed_allocation_is_an_allocation_failure() {
        let stderr = "loadgen: started\nmemory allocation of 1048576 bytes failed\n";
        assert_eq!(
            classify(None, Some(6), None, stderr),
            Fate::AllocationFailure {
                message: "memory allocation of 1048576 bytes failed".into()
            }
        );
        assert_eq!(
            classify(None, Some(6), None, "something else"),
            Fate::Signalled { signal: 6 }
        );
    }

    #[test]
    fn a_panic_on_a_failed_allocation_is_one_too_but_a_clean_exit_lives() {
        let stderr =
            "thread 'main' panicked: failed to spawn thread: Cannot allocate memory (os error 12)";
        assert!(matches!(
            classify(Some(101), None, None, stderr),
            Fate::AllocationFailure { .. }
        ));
        assert_eq!(
            classify(Some(0), None, Some(0), ""),
            Fate::Exited { code: 0 }
        );
        assert_eq!(
            classify(Some(1), None, None, "a gate failed"),
            Fate::Exited { code: 1 }
        );
        assert!(!Fate::Exited { code: 1 }.died());
    }
}
