//! A memory cgroup of our own for one child: found under this process's own cgroup (v2's
//! unified hierarchy when it has the memory controller, else v1's `memory` hierarchy), created,
//! limited, and removed when the child is gone.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

/// Which cgroup interface holds the limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Version {
    /// `memory.max`, `memory.current`, `memory.events`.
    V2,
    /// `memory.limit_in_bytes`, `memory.usage_in_bytes`, `memory.oom_control`.
    V1,
}

/// A cgroup created for one child; removed on drop (once its processes are gone).
#[derive(Debug)]
pub struct Cgroup {
    pub dir: PathBuf,
    pub version: Version,
}

/// The mount point of a hierarchy in `/proc/self/mountinfo` text, and its root: v2 (`cgroup2`)
/// or v1's with the memory controller.
fn mount_of(mountinfo: &str, version: Version) -> Option<(PathBuf, String)> {
    mountinfo.lines().find_map(|line| {
        let (left, right) = line.split_once(" - ")?;
        let left: Vec<&str> = left.split(' ').collect();
        let right: Vec<&str> = right.split(' ').collect();
        let (root, point) = (left.get(3)?, left.get(4)?);
        let fits = match version {
            Version::V2 => right.first() == Some(&"cgroup2"),
            Version::V1 => {
                right.first() == Some(&"cgroup") && right.get(2)?.split(',').any(|o| o == "memory")
            }
        };
        fits.then(|| (PathBuf::from(point), root.to_string()))
    })
}

/// This process's path in a hierarchy, from `/proc/self/cgroup` text: v2's `0::PATH`, or the
/// v1 line whose controllers include `memory`.
fn own_path(proc_cgroup: &str, version: Version) -> Option<String> {
    proc_cgroup.lines().find_map(|line| {
        let mut parts = line.splitn(3, ':');
        let (id, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        let fits = match version {
            Version::V2 => id == "0" && controllers.is_empty(),
            Version::V1 => controllers.split(',').any(|c| c == "memory"),
        };
        fits.then(|| path.to_string())
    })
}

/// The directory of this process's own cgroup in `version`'s hierarchy.
fn own_dir(version: Version) -> anyhow::Result<PathBuf> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")?;
    let proc_cgroup = std::fs::read_to_string("/proc/self/cgroup")?;
    let (point, root) = mount_of(&mountinfo, version).context("no such hierarchy mounted")?;
    let path = own_path(&proc_cgroup, version).context("this process is in none of its cgroups")?;
    let relative = path.strip_prefix(root.as_str()).unwrap_or(&path);
    let dir = point.join(relative.trim_start_matches('/'));
    if !dir.is_dir() {
        bail!("{} is not visible here", dir.display());
    }
    Ok(dir)
}

impl Cgroup {
    /// Creates `name` under this process's own cgroup with a limit of `bytes` (swap off where
    /// the interface allows), v2 first.
    pub fn create(name: &str, bytes: u64) -> anyhow::Result<Cgroup> {
        let v2 = Self::create_in(Version::V2, name, bytes);
        v2.or_else(|e2| {
            Self::create_in(Version::V1, name, bytes)
                .map_err(|e1| anyhow::anyhow!("cgroup v2: {e2:#}; cgroup v1: {e1:#}"))
        })
    }

    fn create_in(version: Version, name: &str, bytes: u64) -> anyhow::Result<Cgroup> {
        let dir = own_dir(version)?.join(name);
        std::fs::create_dir(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
        // From here on, a failure removes the directory again (on drop).
        let cgroup = Cgroup { dir, version };
        let (limit, swap) = match version {
            Version::V2 => ("memory.max", "memory.swap.max"),
            Version::V1 => ("memory.limit_in_bytes", "memory.memsw.limit_in_bytes"),
        };
        let limit_file = cgroup.dir.join(limit);
        if !limit_file.exists() {
            bail!("no memory controller in {}", cgroup.dir.display());
        }
        std::fs::write(&limit_file, bytes.to_string())
            .with_context(|| format!("cannot write {}", limit_file.display()))?;
        // No swap on the way to the limit, where it can be said (v1's memsw only with swap
        // accounting; v2's swap.max only with a swap controller). Otherwise nothing to say.
        let swap_value = if version == Version::V2 { 0 } else { bytes };
        let _ = std::fs::write(cgroup.dir.join(swap), swap_value.to_string());
        Ok(cgroup)
    }

    /// The file a process writes `0` into to join this cgroup.
    pub fn procs(&self) -> PathBuf {
        self.dir.join("cgroup.procs")
    }

    /// Bytes charged to the cgroup now.
    pub fn usage(&self) -> Option<u64> {
        let file = match self.version {
            Version::V2 => "memory.current",
            Version::V1 => "memory.usage_in_bytes",
        };
        read_number(&self.dir.join(file))
    }

    /// How many times the OOM killer killed in this cgroup.
    pub fn oom_kills(&self) -> Option<u64> {
        let file = match self.version {
            Version::V2 => "memory.events",
            Version::V1 => "memory.oom_control",
        };
        let text = std::fs::read_to_string(self.dir.join(file)).ok()?;
        keyed(&text, "oom_kill")
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        // A cgroup can be removed once its last process has been reaped; allow a moment.
        for _ in 0..40 {
            if std::fs::remove_dir(&self.dir).is_ok() || !self.dir.exists() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }
}

fn read_number(path: &Path) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// The value of `key` in `key value` lines.
pub(super) fn keyed(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(char::is_whitespace)?;
        if k != key {
            return None;
        }
        v.split_whitespace().next()?.parse().ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO: &str = "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw";

    #[test]
    fn hierarchies_are_found_in_mountinfo() {
        assert_eq!(
            mount_of(MOUNTINFO, Version::V1),
            Some((PathBuf::from("/sys/fs/cgroup/memory"), "/".into()))
        );
        assert_eq!(
            mount_of(MOUNTINFO, Version::V2),
            Some((PathBuf::from("/sys/fs/cgroup/unified"), "/".into()))
        );
    }

    #[test]
    fn own_paths_are_read_per_version() {
        let text = "5:devices:/\n4:memory:/box/a1\n0::/user.slice\n";
        assert_eq!(own_path(text, Version::V1).as_deref(), Some("/box/a1"));
        assert_eq!(own_path(text, Version::V2).as_deref(), Some("/user.slice"));
        assert_eq!(own_path("4:cpu,cpuacct:/x\n", Version::V1), None);
    }

    #[test]
    fn oom_kills_are_read_from_either_file() {
        let v1 = "oom_kill_disable 0\nunder_oom 0\noom_kill 1\n";
        let v2 = "low 0\nhigh 0\nmax 12\noom 1\noom_kill 1\noom_group_kill 0\n";
        assert_eq!(keyed(v1, "oom_kill"), Some(1));
        assert_eq!(keyed(v2, "oom_kill"), Some(1));
        assert_eq!(keyed("VmData:\t  20480 kB\n", "VmData:"), Some(20480));
    }
}
