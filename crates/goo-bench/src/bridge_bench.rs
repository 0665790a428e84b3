//! Issue 8: what the bridge adds to a call. A C allocator (compiled from c/c_allocator.c)
//! called from Rust through `ForeignAllocator`, against calling its functions directly; a Rust
//! allocator called the way C calls it (through the exported vtable, and through
//! `goo_memory_alloc_with`), against calling the Rust mechanism directly.

use core::alloc::Layout;
use core::ffi::c_void;
use core::ptr::NonNull;
use std::hint::black_box;

use goo_memory_core::bridge::{export, ForeignAllocator};
use goo_memory_core::{AllocOptions, Backend, GooAllocator, System};

use crate::harness::{c_pairs, compare, timed, Contender};

unsafe extern "C" {
    fn bench_c_alloc(ctx: *mut c_void, size: usize, align: usize, options: AllocOptions) -> *mut c_void;
    fn bench_c_free(ctx: *mut c_void, ptr: *mut c_void, size: usize, align: usize);
    fn bench_c_allocator() -> *mut GooAllocator;
}

pub fn run(quick: bool) {
    let (iters, rounds) = if quick { (200_000, 5) } else { (2_000_000, 15) };
    let layout = Layout::from_size_align(64, 16).unwrap();

    // C allocator from Rust.
    // SAFETY: a static vtable in the C object, valid for the program; malloc-based.
    let raw = unsafe { bench_c_allocator() };
    // SAFETY: as above.
    let foreign = unsafe { ForeignAllocator::from_raw(NonNull::new(raw).unwrap()) };
    let c_alloc: unsafe extern "C" fn(*mut c_void, usize, usize, AllocOptions) -> *mut c_void =
        black_box(bench_c_alloc);
    let c_free: unsafe extern "C" fn(*mut c_void, *mut c_void, usize, usize) = black_box(bench_c_free);
    let rows = compare(
        "C allocator called from Rust: 64-byte alloc+free pairs",
        0,
        iters,
        rounds,
        &mut [
            Contender::new("C functions called directly", |n| {
                timed(n, || {
                    // SAFETY: the C allocator's own functions, used as it documents.
                    unsafe {
                        let p = c_alloc(core::ptr::null_mut(), 64, 16, AllocOptions::DEFAULT);
                        black_box(p);
                        c_free(core::ptr::null_mut(), p, 64, 16);
                    }
                })
            }),
            Contender::new("through ForeignAllocator (front door + vtable)", |n| {
                timed(n, || {
                    let p = foreign.allocate(layout).unwrap();
                    black_box(p);
                    // SAFETY: just allocated with `layout`.
                    unsafe { foreign.deallocate(p, layout) };
                })
            }),
        ],
    );
    println!(
        "bridge C->Rust adds {:.2} ns per call (alloc or free)",
        (rows[1].median_ns - rows[0].median_ns) / 2.0
    );

    // Rust allocator from C.
    let exported = export(System);
    // SAFETY: the exported allocator is live until destroyed below.
    let (alloc_fn, free_fn, ctx) = unsafe {
        (
            (*exported.as_ptr()).alloc.unwrap(),
            (*exported.as_ptr()).free.unwrap(),
            (*exported.as_ptr()).context,
        )
    };
    let (alloc_fn, free_fn) = (black_box(alloc_fn), black_box(free_fn));
    let rows = compare(
        "Rust allocator (System backend) called from C: 64-byte alloc+free pairs",
        0,
        iters,
        rounds,
        &mut [
            Contender::new("Rust Backend called directly", |n| {
                timed(n, || {
                    let p = black_box(&System).alloc(64, 16, AllocOptions::DEFAULT);
                    black_box(p);
                    // SAFETY: just allocated.
                    unsafe { System.free(p, 64, 16) };
                })
            }),
            Contender::new("through the exported vtable (a->alloc / a->free)", |n| {
                timed(n, || {
                    // SAFETY: the exported allocator's own functions with its context.
                    unsafe {
                        let p = alloc_fn(ctx, 64, 16, AllocOptions::DEFAULT);
                        black_box(p);
                        free_fn(ctx, p, 64, 16);
                    }
                })
            }),
            Contender::new("through goo_memory_*_with (front door, stats on)", |n| {
                c_pairs(exported.as_ptr(), 64, n)
            }),
        ],
    );
    println!(
        "bridge Rust->C adds {:.2} ns per call through the vtable, {:.2} ns through the front door",
        (rows[1].median_ns - rows[0].median_ns) / 2.0,
        (rows[2].median_ns - rows[0].median_ns) / 2.0
    );
    // SAFETY: exported above, unused from here.
    unsafe { ((*exported.as_ptr()).destroy.unwrap())(exported.as_ptr()) };
}
