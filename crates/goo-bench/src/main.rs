//! goo-memory benchmarks: each group compares the library with its peers in the same run and
//! prints ratios (median of per-round ratios; see `harness`).
//!
//! `cargo run --release -p goo-bench -- [core|arena|pool|region|scoped|bridge|callbacks|all] [--quick]`

mod arena_bench;
mod bridge_bench;
mod callbacks_bench;
mod core_bench;
mod harness;
mod pool_bench;
mod region_bench;
mod scoped_bench;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let quick = args.iter().any(|a| a == "--quick");
    let groups: Vec<&str> = args.iter().filter(|a| !a.starts_with("--")).map(String::as_str).collect();
    let all = groups.is_empty() || groups.contains(&"all");
    println!("# goo-memory benchmarks{}", if quick { " (quick)" } else { "" });
    if all || groups.contains(&"core") {
        core_bench::run(quick);
    }
    if all || groups.contains(&"arena") {
        arena_bench::run(quick);
    }
    if all || groups.contains(&"pool") {
        pool_bench::run(quick);
    }
    if all || groups.contains(&"region") {
        region_bench::run(quick);
    }
    if all || groups.contains(&"scoped") {
        scoped_bench::run(quick);
    }
    if all || groups.contains(&"bridge") {
        bridge_bench::run(quick);
    }
    if all || groups.contains(&"callbacks") {
        callbacks_bench::run(quick);
    }
}
