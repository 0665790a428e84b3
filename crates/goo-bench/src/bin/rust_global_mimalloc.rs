//! The global-allocator benchmark's peer: the workloads of `global_workloads.rs` with the
//! `mimalloc` crate's `MiMalloc` as the global allocator (Rust allocations only: without the
//! crate's "override" feature, C's `malloc` stays glibc's).
//! `rust_global_mimalloc WORKLOAD SCALE REPS`; scripts/bench-rust-global.py runs it.

use mimalloc::MiMalloc;

#[global_allocator]
static GLOBAL: MiMalloc = MiMalloc;

#[path = "../global_workloads.rs"]
mod global_workloads;

fn main() {
    println!("{}", global_workloads::run_from_args());
}
