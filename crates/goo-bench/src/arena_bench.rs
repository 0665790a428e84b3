//! Issue 4: small allocations into a warm arena, against bumpalo (Rust API and C ABI) and glibc
//! malloc; memory held after reset and in a growing workload.

use core::alloc::Layout;
use std::hint::black_box;
use std::time::{Duration, Instant};

use goo_memory::arena::{goo_arena_allocator_create, goo_arena_allocator_reset};
use goo_memory::memory::goo_memory_alloc_with;
use goo_memory_core::arena::Arena;
use goo_memory_core::GooAllocator;

use crate::harness::{compare, target, Contender};

type AllocWith = unsafe extern "C" fn(*mut GooAllocator, usize) -> *mut libc::c_void;
type ResetFn = unsafe extern "C" fn(*mut GooAllocator) -> bool;

/// Objects per timed run: one reset, then this many allocations (fits the warm chunk).
const OBJECTS: u64 = 10_000;

fn rust_goo(arena: &mut Arena, size: usize, runs: u64) -> Duration {
    let layout = Layout::from_size_align(size, 8).unwrap();
    let start = Instant::now();
    for _ in 0..runs {
        arena.reset();
        for _ in 0..OBJECTS {
            black_box(arena.alloc_layout(black_box(layout)));
        }
    }
    start.elapsed()
}

fn bumpalo(bump: &mut bumpalo::Bump, size: usize, runs: u64) -> Duration {
    let layout = Layout::from_size_align(size, 8).unwrap();
    let start = Instant::now();
    for _ in 0..runs {
        bump.reset();
        for _ in 0..OBJECTS {
            black_box(bump.alloc_layout(black_box(layout)));
        }
    }
    start.elapsed()
}

fn c_abi(alloc: AllocWith, reset: ResetFn, arena: *mut GooAllocator, size: usize, runs: u64) -> Duration {
    let start = Instant::now();
    for _ in 0..runs {
        // SAFETY: a live arena; nothing from before the reset is used.
        unsafe {
            reset(arena);
            for _ in 0..OBJECTS {
                black_box(alloc(arena, black_box(size)));
            }
        }
    }
    start.elapsed()
}

fn malloc(size: usize, runs: u64, held: &mut Vec<*mut libc::c_void>) -> Duration {
    let start = Instant::now();
    for _ in 0..runs {
        // SAFETY: plain malloc/free of what was just allocated.
        unsafe {
            for _ in 0..OBJECTS {
                held.push(libc::malloc(black_box(size)));
            }
            for p in held.drain(..) {
                libc::free(p);
            }
        }
    }
    start.elapsed()
}

pub fn run(quick: bool) {
    let (runs, rounds) = if quick { (20, 5) } else { (200, 15) };
    let alloc: AllocWith = black_box(goo_memory_alloc_with);
    let reset: ResetFn = black_box(goo_arena_allocator_reset);
    for size in [16usize, 64] {
        // Stats off, like bumpalo (a new Arena counts them, as the C arena does).
        let mut goo = Arena::with_capacity(OBJECTS as usize * (size + 8)).with_stats(false);
        let mut bump = bumpalo::Bump::with_capacity(OBJECTS as usize * (size + 8));
        let c_tracked = goo_arena_allocator_create(OBJECTS as usize * (size + 8));
        let c_untracked = goo_arena_allocator_create(OBJECTS as usize * (size + 8));
        // SAFETY: fresh, unshared.
        unsafe { (*c_untracked).track_stats = false };
        let mut held = Vec::with_capacity(OBJECTS as usize);
        let per_op = |d: Duration| d / OBJECTS as u32;
        let rows = compare(
            &format!("{size}-byte allocations into a warm arena (reset + {OBJECTS} allocs per run)"),
            0,
            runs,
            rounds,
            &mut [
                Contender::new("bumpalo", |n| per_op(bumpalo(&mut bump, size, n))),
                Contender::new("goo Arena (Rust API)", |n| per_op(rust_goo(&mut goo, size, n))),
                Contender::new("goo arena via goo_memory_alloc_with, stats off", |n| {
                    per_op(c_abi(alloc, reset, c_untracked, size, n))
                }),
                Contender::new("goo arena via goo_memory_alloc_with, stats on", |n| {
                    per_op(c_abi(alloc, reset, c_tracked, size, n))
                }),
                Contender::new("glibc malloc + free", |n| per_op(malloc(size, n, &mut held))),
            ],
        );
        target(&format!("{size}B Rust API vs bumpalo"), rows[1].median_ratio, 1.0, true);
        target(&format!("{size}B C ABI (stats off) vs bumpalo"), rows[2].median_ratio, 2.5, true);
        target(&format!("{size}B C ABI (stats on) vs bumpalo"), rows[3].median_ratio, 2.5, true);
        target(
            &format!("{size}B glibc time / Rust arena time"),
            rows[4].median_ratio / rows[1].median_ratio,
            4.0,
            false,
        );
        // SAFETY: created above, no longer used.
        unsafe {
            ((*c_tracked).destroy.unwrap())(c_tracked);
            ((*c_untracked).destroy.unwrap())(c_untracked);
        }
    }

    // Memory: one chunk after reset; reserved against the peak of a growing workload.
    let mut arena = Arena::new();
    arena.set_track_stats(true);
    let mut worst = 0.0f64;
    let mut rng = 0x9e3779b97f4a7c15u64;
    for _ in 0..1_000_000 {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let size = 8 + (rng % 120) as usize;
        arena.alloc_layout(Layout::from_size_align(size, 8).unwrap());
        let s = arena.stats();
        if s.bytes_allocated > 1 << 16 {
            worst = worst.max(s.bytes_reserved as f64 / s.max_bytes_allocated as f64);
        }
    }
    let peak = arena.stats().max_bytes_allocated;
    arena.reset();
    println!(
        "\narena memory: growing workload of 1M allocations (8..128 B, align 8): peak {} B, worst reserved/peak {:.2}x (goal <= 2x); after reset: {} chunk(s), {} B held",
        peak,
        worst,
        arena.chunk_count(),
        arena.allocated_bytes()
    );
    target("arena reserved / peak allocated (growing)", worst, 2.0, true);
}
