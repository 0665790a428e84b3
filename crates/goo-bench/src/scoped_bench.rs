//! Issue 7: a scoped alloc+free pair against its parent's pair (same run), for small blocks
//! (the scope's own chunks) and large ones (forwarded to the parent); a churn of mixed sizes;
//! the cost of ending a scope with 1,000 live allocations; the tracking memory per allocation.

use std::hint::black_box;
use std::time::{Duration, Instant};

use goo_memory::memory::goo_system_allocator_create;
use goo_memory::scoped::{goo_scope_end, goo_scoped_allocator_create};
use goo_memory_core::scoped::{self, HEADER_BYTES, LARGE_HEADER_BYTES, SMALL_MAX};
use goo_memory_core::GooAllocator;

use crate::harness::{c_abi, c_pairs, compare, target, timed, Contender};

/// A tiny deterministic generator (xorshift), the same sequence for every contender.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// `n` operations on a window of 256 live blocks of 16..=1024 bytes: each frees a random
/// block of the window and allocates a new one in its place (C ABI).
fn churn(a: *mut GooAllocator, n: u64) -> Duration {
    const WINDOW: usize = 256;
    let (alloc, free) = c_abi();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut live = [(std::ptr::null_mut(), 0usize); WINDOW];
    for slot in live.iter_mut() {
        let size = 16 + (rng.next() % 1009) as usize;
        // SAFETY: a live allocator; freed below with its size.
        *slot = (unsafe { alloc(a, size) }, size);
    }
    let t = timed(n, || {
        let i = (rng.next() % WINDOW as u64) as usize;
        let size = 16 + (rng.next() % 1009) as usize;
        // SAFETY: a live block of the window, freed with its size; the new one replaces it.
        unsafe {
            free(a, live[i].0, live[i].1);
            live[i] = (black_box(alloc(a, size)), size);
        }
    });
    for (p, size) in live {
        // SAFETY: as above.
        unsafe { free(a, p, size) };
    }
    t
}

pub fn run(quick: bool) {
    let (iters, rounds) = if quick { (200_000, 5) } else { (2_000_000, 15) };
    let (alloc, _) = c_abi();
    let parent = goo_system_allocator_create();
    // SAFETY: `parent` outlives the scopes.
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

    for (what, size) in [("16 KiB", 16384), ("4 KiB", 4096)] {
        let kind =
            if size > SMALL_MAX { "large blocks: forwarded to the parent, linked" } else { "small blocks" };
        compare(
            &format!("{what} alloc+free pairs ({kind}), C ABI"),
            0,
            iters / 4,
            rounds,
            &mut [
                Contender::new("parent (goo system allocator)", |n| c_pairs(parent, size, n)),
                Contender::new("scoped allocator over it (its own stats on)", |n| c_pairs(scope, size, n)),
            ],
        );
    }
    compare(
        "churn: 256 live blocks of 16-1024 bytes, each op frees one and allocates one, C ABI",
        0,
        iters / 2,
        rounds,
        &mut [
            Contender::new("parent (goo system allocator)", |n| churn(parent, n)),
            Contender::new("scoped allocator over it (its own stats on)", |n| churn(scope, n)),
        ],
    );

    // A scope's whole life (create, n 64-byte allocations, end) against the same allocations
    // made and freed one by one through the parent.
    for n in [1usize, 10, 100] {
        let (_, free) = c_abi();
        compare(
            &format!("a scope's life: create, {n} x 64-byte alloc, end (vs {n} allocs then {n} frees on the parent)"),
            0,
            (iters / 20 / n as u64).max(1000),
            rounds,
            &mut [
                Contender::new("parent: allocs, then frees", |reps| {
                    let mut blocks = vec![std::ptr::null_mut(); n];
                    timed(reps, || {
                        // SAFETY: a live allocator; each block freed once with its size.
                        unsafe {
                            for b in blocks.iter_mut() {
                                *b = alloc(parent, 64);
                            }
                            for &b in &blocks {
                                free(parent, b, 64);
                            }
                        }
                    })
                }),
                Contender::new("scope over it: create, allocs, end", |reps| {
                    timed(reps, || {
                        // SAFETY: a fresh scope over a live parent, ended here.
                        unsafe {
                            let s = goo_scoped_allocator_create(parent);
                            for _ in 0..n {
                                black_box(alloc(s, 64));
                            }
                            goo_scope_end(s);
                        }
                    })
                }),
            ],
        );
    }

    // Ending a scope with 1,000 live allocations: only the end is timed.
    const LIVE: u64 = 1000;
    let scopes = if quick { 20 } else { 200 };
    for (what, sizes) in [("64-byte", [64usize, 64]), ("16-16384-byte (about half small)", [16, 16384])] {
        let (mut end_ns, mut ratios) = (Vec::new(), Vec::new());
        let mut rng = Rng(42);
        let (_, free) = c_abi();
        let mut blocks = Vec::with_capacity(LIVE as usize);
        for _ in 0..rounds {
            let (mut ended, mut freed) = (Duration::ZERO, Duration::ZERO);
            for _ in 0..scopes {
                let sizes: Vec<usize> = (0..LIVE)
                    .map(|_| sizes[0] + (rng.next() % (sizes[1] - sizes[0] + 1) as u64) as usize)
                    .collect();
                // SAFETY: a fresh scope over a live parent, ended here; the same blocks from the
                // parent, freed one by one with their sizes (the baseline, same round).
                unsafe {
                    let s = goo_scoped_allocator_create(parent);
                    for &size in &sizes {
                        black_box(alloc(s, size));
                    }
                    let t = Instant::now();
                    goo_scope_end(s);
                    ended += t.elapsed();
                    blocks.clear();
                    blocks.extend(sizes.iter().map(|&size| (alloc(parent, size), size)));
                    let t = Instant::now();
                    for &(p, size) in &blocks {
                        free(parent, p, size);
                    }
                    freed += t.elapsed();
                }
            }
            end_ns.push(ended.as_nanos() as f64 / (scopes as f64 * LIVE as f64));
            ratios.push(ended.as_secs_f64() / freed.as_secs_f64());
        }
        end_ns.sort_by(|a, b| a.partial_cmp(b).unwrap());
        ratios.sort_by(|a, b| a.partial_cmp(b).unwrap());
        println!(
            "\nending a scope with {LIVE} live {what} allocations: {:.1} ns per allocation freed, \
             {:.2}x the time of freeing the same blocks one by one through the parent (medians of {rounds} rounds)",
            end_ns[end_ns.len() / 2],
            ratios[ratios.len() / 2]
        );
    }

    // Tracking memory: what the scope holds from its parent beyond the bytes asked for, per
    // block (header, class rounding, the chunks' unused rest), for sizes uniform in 1..=max.
    println!(
        "\nscoped tracking memory: a {HEADER_BYTES}-byte header per small block (aim <= 16), \
         {LARGE_HEADER_BYTES} per large block (> {SMALL_MAX} bytes or aligned > 16)"
    );
    for max in [128u64, 1024, SMALL_MAX as u64] {
        let mut rng = Rng(7);
        // SAFETY: a live parent; the scope is ended below.
        let s = unsafe { goo_scoped_allocator_create(parent) };
        for _ in 0..10_000 {
            // SAFETY: a live scope.
            black_box(unsafe { alloc(s, 1 + (rng.next() % max) as usize) });
        }
        // SAFETY: a live scope.
        let sc = unsafe { scoped::from_raw(s) }.expect("a scope");
        let (count, bytes) = sc.live();
        println!(
            "  {count} live blocks of 1-{max} bytes: {:.1} bytes per block held beyond the bytes asked \
             for (header + size-class rounding + chunk headers and tails), {:.1} more in the newest \
             chunk's unused rest",
            (sc.held() - sc.spare() - bytes) as f64 / count as f64,
            sc.spare() as f64 / count as f64
        );
        // SAFETY: made above.
        unsafe { goo_scope_end(s) };
    }
    // SAFETY: created above, unused from here.
    unsafe {
        goo_scope_end(scope);
        goo_scope_end(quiet);
        ((*parent).destroy.unwrap())(parent);
    }
}
