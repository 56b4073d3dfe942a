//! The audit's memory against the number of ids it has seen, measured by a counting allocator
//! (live heap bytes, not an estimate). Run with `cargo bench -p sinkd --bench audit_memory`.
//!
//! Ids arrive as concurrent writers deliver them: in order, shuffled within windows of 4,096.
//! A lossless stream should hold the same memory at 1 M ids and at 64 M (a bitmap of every id
//! would hold 8 KiB per 65,536 ids: 8.4 MB at 64 M); a stream that loses one id in 10,000 keeps
//! a bitmap for each chunk with a loss, as before. Prints both, and the audit's own estimate
//! (`audit_bytes` on /stats) beside the measured heap.

#![allow(unsafe_code)] // the counting allocator

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use sinkd::audit::Audit;

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards every call to the system allocator unchanged; only counts bytes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size(), Ordering::Relaxed);
        // SAFETY: the caller's contract is passed on as is.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// Feeds `from..to` shuffled within windows of 4,096, skipping ids where `lost(id)`.
fn feed(a: &mut Audit, from: u64, to: u64, state: &mut u64, lost: impl Fn(u64) -> bool) {
    let mut window = Vec::with_capacity(4096);
    for base in (from..to).step_by(4096) {
        window.clear();
        window.extend(base..(base + 4096).min(to));
        for i in (1..window.len()).rev() {
            let j = (splitmix::step(state) % (i as u64 + 1)) as usize;
            window.swap(i, j);
        }
        for &id in window.iter().filter(|&&id| !lost(id)) {
            a.record(id, id % 64, id / 64, 512);
        }
    }
}

fn run(label: &str, lost: impl Fn(u64) -> bool + Copy) {
    println!("{label}");
    println!("  ids seen    live heap   audit_bytes   bitmap of every id");
    let before = LIVE.load(Ordering::Relaxed);
    let mut a = Audit::default();
    let mut state = 1;
    let mut at = 0;
    for millions in [1u64, 4, 16, 64] {
        let to = millions * 1_000_000;
        feed(&mut a, at, to, &mut state, lost);
        at = to;
        let live = LIVE.load(Ordering::Relaxed) - before;
        let estimate = a.stats(None).audit_bytes;
        println!(
            "  {millions:>3} M    {:>9.1} KB   {:>9.1} KB   {:>9.1} KB",
            live as f64 / 1e3,
            estimate as f64 / 1e3,
            (to.div_ceil(65_536) * 8192) as f64 / 1e3
        );
    }
}

fn main() {
    run("lossless:", |_| false);
    run("one id in 10,000 lost:", |id| id % 10_000 == 9_999);
}
