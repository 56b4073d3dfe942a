//! `loadgen`: the command line. Everything is in the library (`src/lib.rs`); the allocator,
//! which only a binary may choose, is here.

use std::process::ExitCode;

/// With `--features heap-profile`: jemalloc, sampling allocations for `/debug/pprof/heap`.
#[cfg(feature = "heap-profile")]
#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc reads its options from this symbol at start-up: profiling on, one sample per 512 KiB.
#[cfg(feature = "heap-profile")]
#[allow(non_upper_case_globals, unsafe_code)]
#[unsafe(export_name = "malloc_conf")]
pub static malloc_conf: &[u8] = b"prof:true,prof_active:true,lg_prof_sample:19\0";

fn main() -> ExitCode {
    loadgen::run_cli()
}
