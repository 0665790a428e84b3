//! Issue 7: a scoped alloc+free pair against its parent's pair (same run), the cost of ending a
//! scope with 1,000 live allocations, and the tracking memory per allocation.

use std::hint::black_box;
use std::time::{Duration, Instant};

use goo_memory::memory::{goo_memory_alloc_with, goo_system_allocator_create};
use goo_memory::scoped::{goo_scope_end, goo_scoped_allocator_create};
use goo_memory_core::GooAllocator;

use crate::harness::{c_pairs, compare, target, Contender};

type AllocWith = unsafe extern "C" fn(*mut GooAllocator, usize) -> *mut libc::c_void;

pub fn run(quick: bool) {
    let (iters, rounds) = if quick { (200_000, 5) } else { (2_000_000, 15) };
    let alloc: AllocWith = black_box(goo_memory_alloc_with);
    let parent = goo_system_allocator_create();
    // SAFETY: `parent` outlives the scope.
    let scope = unsafe { goo_scoped_allocator_create(parent) };
    // SAFETY: as above.
    let quiet = unsafe { goo_scoped_allocator_create(parent) };
    // SAFETY: fresh, unshared: the scope's own counters off (the parent still counts).
    unsafe { (*quiet).track_stats = false };
    let rows = compare(
        "64-byte alloc+free pairs: scoped allocator vs its parent (system, stats on), C ABI",
        0,
        iters,
        rounds,
        &mut [
            Contender::new("parent (goo system allocator)", |n| c_pairs(parent, 64, n)),
            Contender::new("scoped allocator over it (its own stats on)", |n| c_pairs(scope, 64, n)),
            Contender::new("scoped allocator over it (its own stats off)", |n| c_pairs(quiet, 64, n)),
        ],
    );
    target("scoped pair vs parent pair (scope stats on)", rows[1].median_ratio, 1.5, true);
    target("scoped pair vs parent pair (scope stats off)", rows[2].median_ratio, 1.5, true);

    // Ending a scope with 1,000 live allocations: only the end is timed.
    const LIVE: u64 = 1000;
    let scopes = if quick { 20 } else { 200 };
    let mut end_ns = Vec::new();
    for _ in 0..rounds {
        let mut total = Duration::ZERO;
        for _ in 0..scopes {
            // SAFETY: a fresh scope over a live parent; ended below.
            unsafe {
                let s = goo_scoped_allocator_create(parent);
                for _ in 0..LIVE {
                    black_box(alloc(s, 64));
                }
                let t = Instant::now();
                goo_scope_end(s);
                total += t.elapsed();
            }
        }
        end_ns.push(total.as_nanos() as f64 / (scopes as f64 * LIVE as f64));
    }
    end_ns.sort_by(|a, b| a.partial_cmp(b).unwrap());
    println!(
        "\nending a scope with {LIVE} live 64-byte allocations: {:.1} ns per allocation freed (median of {rounds} rounds)",
        end_ns[end_ns.len() / 2]
    );
    println!(
        "scoped tracking memory: {} bytes per allocation (a header: prev, next, size, tag); aim <= 16",
        goo_memory_core::scoped::HEADER_BYTES
    );
    // SAFETY: created above, unused from here.
    unsafe {
        goo_scope_end(scope);
        goo_scope_end(quiet);
        ((*parent).destroy.unwrap())(parent);
    }
}
