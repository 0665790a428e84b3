//! The global-allocator benchmark's baseline: the workloads of `global_workloads.rs` with Rust's
//! system allocator (glibc's `malloc`) as the global allocator.
//! `rust_global_system WORKLOAD SCALE REPS`; scripts/bench-rust-global.py runs it.

use std::alloc::System;

#[global_allocator]
static GLOBAL: System = System;

#[path = "../global_workloads.rs"]
mod global_workloads;

fn main() {
    println!("{}", global_workloads::run_from_args());
}
