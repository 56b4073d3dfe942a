//! A child's heap, taken at 80% of its limit and symbolized here. The child (the same executable) sends jemalloc's raw dump
//! (`/debug/pprof/heap/raw`: sampled stacks as addresses, and its own memory map); this process
//! moves each address from the child's map to its own, symbolizes it, and writes the pprof file
//! and the flamegraph. So the child, under its memory limit, pays for a dump and nothing more:
//! symbolizing in-process costs about 80 MB of heap and maps the debug information.

// The address translation is used by `render` only with heap-profile; its tests run always.
#![cfg_attr(not(feature = "heap-profile"), allow(dead_code))]

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::cliff::Profile;

/// A mapped file's region in a memory map: `[start, end)` holds the file from `offset`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Region {
    start: usize,
    end: usize,
    offset: usize,
    path: String,
}

/// The file-backed regions of a `/proc/PID/maps` text (other lines are ignored).
fn regions(maps: &str) -> Vec<Region> {
    maps.lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            let (range, _perms, offset) = (w.next()?, w.next()?, w.next()?);
            let path = w.nth(2)?;
            let (start, end) = range.split_once('-')?;
            let hex = |s: &str| usize::from_str_radix(s, 16).ok();
            path.starts_with('/').then_some(Region {
                start: hex(start)?,
                end: hex(end)?,
                offset: hex(offset)?,
                path: path.to_string(),
            })
        })
        .collect()
}

/// `addr` in the child's map, at the same file and offset in ours.
fn translate(addr: usize, child: &[Region], ours: &[Region]) -> Option<usize> {
    let c = child.iter().find(|r| r.start <= addr && addr < r.end)?;
    let file_offset = addr - c.start + c.offset;
    let o = ours.iter().find(|r| {
        r.path == c.path && r.offset <= file_offset && file_offset < r.offset + (r.end - r.start)
    })?;
    Some(o.start + (file_offset - o.offset))
}

/// The child's memory map, from the `MAPPED_LIBRARIES:` section of its raw dump.
fn child_maps(raw: &str) -> &str {
    raw.split_once("MAPPED_LIBRARIES:").map_or("", |(_, m)| m)
}

/// Writes `heap.pb.gz` and `heap-flamegraph.svg` into `dir` from the raw dump `raw` of a
/// child of this same executable.
#[cfg(feature = "heap-profile")]
pub(super) fn render(raw: &[u8], dir: &Path, title: &str) -> anyhow::Result<()> {
    use pprof_util::{StackProfile, WeightedStack};
    let text = String::from_utf8_lossy(raw);
    let child = regions(child_maps(&text));
    let ours = regions(&std::fs::read_to_string("/proc/self/maps")?);
    let parsed = pprof_util::parse_jeheap(raw, None)?;
    let mut profile = StackProfile::default();
    for (stack, annotation) in parsed.iter() {
        // An address in no file both processes map (a JIT, a vDSO) is left out of its stack.
        let addrs = stack
            .addrs
            .iter()
            .filter_map(|&a| translate(a, &child, &ours))
            .collect();
        profile.push_stack(
            WeightedStack {
                addrs,
                weight: stack.weight,
            },
            annotation,
        );
    }
    let pprof = profile.to_pprof(("inuse_space", "bytes"), ("space", "bytes"), None);
    std::fs::write(dir.join("heap.pb.gz"), pprof)?;
    let mut opts = pprof_util::FlamegraphOptions::default();
    opts.title = title.to_string();
    opts.count_name = "bytes".to_string();
    std::fs::write(
        dir.join("heap-flamegraph.svg"),
        profile.to_flamegraph(&mut opts)?,
    )?;
    Ok(())
}

#[cfg(not(feature = "heap-profile"))]
pub(super) fn render(_: &[u8], _: &Path, _: &str) -> anyhow::Result<()> {
    anyhow::bail!("this loadgen was built without --features heap-profile")
}

/// jemalloc's raw dump of the child's heap, into `dir` (rendered after the run: [`render_dump`]).
pub(super) async fn take_profile(
    addr: SocketAddr,
    dir: std::path::PathBuf,
    at_s: f64,
    usage: u64,
) -> anyhow::Result<Profile> {
    if !cfg!(feature = "heap-profile") {
        bail!("this loadgen was built without --features heap-profile");
    }
    let raw = get(addr, "/debug/pprof/heap/raw").await?;
    std::fs::write(dir.join(RAW), raw)?;
    Ok(Profile {
        at_s,
        usage_bytes: usage,
        pprof: "heap.pb.gz".into(),
        flamegraph: "heap-flamegraph.svg".into(),
    })
}

/// The raw dump's file name in the run's folder.
const RAW: &str = "heap.jeheap";

/// The pprof file and the flamegraph of a raw dump taken, symbolized here, off the runtime.
pub(super) async fn render_dump(
    profile: Result<Profile, String>,
    dir: &Path,
    label: &str,
) -> Result<Profile, String> {
    let p = profile?;
    let raw = std::fs::read(dir.join(RAW)).map_err(|e| format!("none: {e}"))?;
    let (dir, title) = (
        dir.to_path_buf(),
        format!(
            "{label}: heap in use at {:.1} s ({:.0} MB charged)",
            p.at_s,
            p.usage_bytes as f64 / 1e6
        ),
    );
    match tokio::task::spawn_blocking(move || render(&raw, &dir, &title)).await {
        Ok(Ok(())) => Ok(p),
        Ok(Err(e)) => Err(format!("none: {e:#}")),
        Err(e) => Err(format!("none: {e}")),
    }
}

/// `GET path` from the child, the body of a 200 (within a minute: symbolizing takes seconds).
async fn get(addr: SocketAddr, path: &str) -> anyhow::Result<Vec<u8>> {
    let fetch = async {
        let mut s = tokio::net::TcpStream::connect(addr).await?;
        let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        s.write_all(request.as_bytes()).await?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await?;
        anyhow::Ok(buf)
    };
    let buf = tokio::time::timeout(Duration::from_secs(60), fetch)
        .await
        .with_context(|| format!("GET {path}: no answer within 60 s"))?
        .with_context(|| format!("GET {path}"))?;
    let split = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .with_context(|| format!("GET {path}: not HTTP"))?;
    let head = String::from_utf8_lossy(&buf[..split]);
    let body = buf[split + 4..].to_vec();
    if !head.starts_with("HTTP/1.1 200") {
        bail!("GET {path}: {}", String::from_utf8_lossy(&body).trim());
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHILD: &str = "55d0a0000000-55d0a0100000 r--p 00000000 08:01 42 /usr/bin/loadgen
55d0a0100000-55d0a0500000 r-xp 00100000 08:01 42 /usr/bin/loadgen
7f0000000000-7f0000021000 rw-p 00000000 00:00 0
7f1000000000-7f1000200000 r-xp 00028000 08:01 7 /usr/lib/libc.so.6
";
    const OURS: &str = "5600b0000000-5600b0100000 r--p 00000000 08:01 42 /usr/bin/loadgen
5600b0100000-5600b0500000 r-xp 00100000 08:01 42 /usr/bin/loadgen
7fa000000000-7fa000200000 r-xp 00028000 08:01 7 /usr/lib/libc.so.6
";

    #[test]
    fn an_address_keeps_its_file_and_offset() {
        let (child, ours) = (regions(CHILD), regions(OURS));
        assert_eq!(child.len(), 3, "the anonymous mapping is no region");
        assert_eq!(
            translate(0x55d0a0123456, &child, &ours),
            Some(0x5600b0123456)
        );
        assert_eq!(
            translate(0x7f1000000010, &child, &ours),
            Some(0x7fa000000010)
        );
        // Anonymous memory, or a file we do not map: no address here.
        assert_eq!(translate(0x7f0000000010, &child, &ours), None);
        assert_eq!(
            translate(0x7f1000000010, &child, &regions(&OURS[..120])),
            None
        );
    }

    #[test]
    fn the_map_is_read_from_the_dump() {
        let raw = format!("heap_v2/524288\n  t*: 1: 8 [0: 0]\n\nMAPPED_LIBRARIES:\n{CHILD}");
        assert_eq!(regions(child_maps(&raw)).len(), 3);
        assert!(child_maps("heap_v2/524288\n").is_empty());
    }
}
