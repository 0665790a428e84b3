//! The Goo heap as Rust's global allocator (its own binary: `#[global_allocator]` is per
//! program, and `harness = false` keeps the test runner's own threads out of the counts).
//! Several threads allocate at once; the stats see every allocation; thread exit (with
//! thread-locals that allocate in their destructors) is safe and gives the threads' cached
//! system blocks back.

use std::cell::RefCell;

use goo_memory_core::bridge::GooGlobal;

#[global_allocator]
static GLOBAL: GooGlobal = GooGlobal;

thread_local! {
    /// Allocates in its destructor, which runs during thread exit.
    static ON_EXIT: RefCell<Vec<String>> = const { RefCell::new(Vec::new()) };
}

struct Noisy;
impl Drop for Noisy {
    fn drop(&mut self) {
        let v: Vec<u8> = vec![1; 100];
        assert_eq!(v.len(), 100);
    }
}

thread_local! {
    static NOISY: Noisy = const { Noisy };
}

fn main() {
    let (threads, per_thread) = if cfg!(miri) { (2, 50) } else { (4, 20_000) };
    // Warm up what the runtime caches (thread machinery, stdout).
    std::thread::spawn(|| ()).join().unwrap();
    println!("global allocator test");
    let before = GooGlobal::stats();
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            std::thread::spawn(move || {
                NOISY.with(|_| ());
                let mut kept = Vec::new();
                for i in 0..per_thread {
                    let s = format!("thread {t} item {i}");
                    if i % 10 == 0 {
                        kept.push(s);
                    }
                }
                ON_EXIT.with(|v| v.borrow_mut().push("bye".to_string()));
                kept.len()
            })
        })
        .collect();
    let kept: usize = handles.into_iter().map(|h| h.join().unwrap()).sum();
    let after = GooGlobal::stats();
    assert_eq!(kept, threads * per_thread / 10);
    let allocations = after.total_allocations - before.total_allocations;
    // Every format! allocated at least once.
    assert!(allocations >= threads * per_thread, "{allocations} allocations seen");
    // Everything the threads made is gone again (give or take what the runtime caches).
    let live_delta = after.allocation_count as isize - before.allocation_count as isize;
    assert!(live_delta.abs() <= 8, "live blocks changed by {live_delta}");
    assert!(after.max_bytes_allocated >= before.bytes_allocated);
    assert_eq!(after.failed_allocations, 0);
    // The threads' system caches went back to the C library when they exited: only this
    // thread's cache still holds blocks.
    let caches = goo_memory_core::system::thread_cache_stats();
    assert!(caches.threads <= 1, "{caches:?}");
    assert_eq!(caches.blocks, goo_memory_core::system::thread_cache_len(), "{caches:?}");
    println!(
        "ok: {allocations} allocations from {threads} threads, live delta {live_delta}, peak {} bytes; \
         caches after exit: {caches:?}",
        after.max_bytes_allocated
    );
}
