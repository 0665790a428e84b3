//! The global-allocator benchmark's subject: the workloads of `global_workloads.rs` with
//! `GooGlobal`, the Goo heap behind the library's front door (stats on), as the global
//! allocator. `rust_global_goo WORKLOAD SCALE REPS`; scripts/bench-rust-global.py runs it.
//!
//! Besides the common line it prints `allocations=<total_allocations>`, the heap's count since
//! the process started: it must have grown during the runs, or the program's allocations did not
//! go through the front door and the times would not be GooGlobal's.

use goo_memory_core::bridge::GooGlobal;

#[global_allocator]
static GLOBAL: GooGlobal = GooGlobal;

#[path = "../global_workloads.rs"]
mod global_workloads;

fn main() {
    let before = GooGlobal::stats().total_allocations;
    let measurement = global_workloads::run_from_args();
    let allocations = GooGlobal::stats().total_allocations;
    if allocations <= before {
        eprintln!("rust_global_goo: GooGlobal's stats counted no allocations during the runs");
        std::process::exit(1);
    }
    println!("{measurement} allocations={allocations}");
}
