//! The Goo heap as Rust's global allocator: every `Box`, `Vec` and `String` of the program goes
//! through the library's front door, so its stats see them. Inside, a scope catches what a
//! piece of work allocates through the C-style API, and the temporary arena serves scratch
//! memory that is gone when `temp::with` returns.
//!
//! `cargo run -p goo-memory-core --example global_allocator`

use goo_memory_core::bridge::GooGlobal;
use goo_memory_core::scoped::Scope;
use goo_memory_core::temp;

#[global_allocator]
static GLOBAL: GooGlobal = GooGlobal;

fn main() {
    let before = GooGlobal::stats();
    let words: Vec<String> = (0..1000).map(|i| format!("word{i}")).collect();
    let during = GooGlobal::stats();
    println!("the program's heap: {during}");
    assert!(during.total_allocations >= before.total_allocations + 1001);
    drop(words);

    // A scope is the thread's allocator inside `run`: the legacy C-style calls land in it and
    // whatever they leave is freed when it ends.
    let (copied, summary) = Scope::run_with_summary(|scope| {
        let p = goo_memory_core::legacy::alloc(100);
        assert!(!p.is_null());
        scope.alloc_str("kept until the scope ends").len()
    });
    println!("scope: {copied} bytes copied; {summary}");
    assert_eq!(summary.implicit_frees, 2);

    // Scratch memory from the thread's temporary arena, freed when the closure returns.
    let longest = temp::with(|t| {
        let lengths = t.alloc_slice_fill_with(100, |i| format!("{i}").len());
        lengths.iter().copied().max().unwrap_or(0)
    });
    assert_eq!(longest, 2);
    println!("after: {}", GooGlobal::stats());
}
