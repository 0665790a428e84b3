//! Compiles the C peers of the benchmarks (an allocator written in C, for the bridge group).
fn main() {
    cc::Build::new().file("c/c_allocator.c").include("../../include").opt_level(2).compile("goo_bench_c");
    println!("cargo:rerun-if-changed=c/c_allocator.c");
}
