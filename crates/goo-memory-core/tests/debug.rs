//! Debug allocator tests: over every kind of allocator, random correct sequences (allocations
//! with and without zeroing at every alignment, frees, resizes, through its own methods and
//! through the dispatch) raise no false positive: no error, `check()` finds nothing after every
//! operation, contents and alignment hold, the stats and the leak report count the model's live
//! blocks. Then the leak report's grouping, and misuse from Rust (sites are callers' lines).

mod common;

use core::alloc::Layout;
use core::ffi::c_void;
use core::ptr::NonNull;

use goo_memory_core::arena::Arena;
use goo_memory_core::bridge::{export, Api2Backend};
use goo_memory_core::debug::{DebugAllocator, DebugFlags, Site, Wrappable, FRESH};
use goo_memory_core::pool::{PoolConfig, RawPool};
use goo_memory_core::region::Region;
use goo_memory_core::report::ReportFormat;
use goo_memory_core::scoped::Scope;
use goo_memory_core::{
    dispatch, natural_align, temp, AllocError, AllocOptions, Allocator, AllocatorRef, GooAllocator,
};
use proptest::prelude::*;

#[derive(Clone, Debug)]
enum Op {
    /// `natural`: alignment 0 (natural), through the dispatch, for its whole life.
    Alloc {
        size: usize,
        align_log2: u32,
        zero: bool,
        via_handle: bool,
        natural: bool,
    },
    Free {
        index: usize,
        via_handle: bool,
    },
    Realloc {
        index: usize,
        size: usize,
    },
}

fn ops(max_size: usize, max_align_log2: u32) -> impl Strategy<Value = Vec<Op>> {
    let op = prop_oneof![
        5 => (1..=max_size, 0..=max_align_log2, any::<bool>(), any::<bool>(), any::<bool>()).prop_map(
            |(size, align_log2, zero, via_handle, natural)| Op::Alloc { size, align_log2, zero, via_handle, natural }
        ),
        3 => (any::<usize>(), any::<bool>()).prop_map(|(index, via_handle)| Op::Free { index, via_handle }),
        2 => (any::<usize>(), 1..=max_size).prop_map(|(index, size)| Op::Realloc { index, size }),
    ];
    proptest::collection::vec(op, 1..common::ops(64, 12))
}

struct Live {
    ptr: NonNull<u8>,
    layout: Layout,
    fill: u8,
    /// Allocated, resized and freed with alignment 0.
    natural: bool,
}

fn assert_holds(block: &Live) {
    // SAFETY: a live block of `layout.size()` bytes.
    let bytes = unsafe { core::slice::from_raw_parts(block.ptr.as_ptr(), block.layout.size()) };
    assert!(bytes.iter().all(|&b| b == block.fill), "contents of a live block changed");
}

fn fill(block: &Live) {
    // SAFETY: a live block of `layout.size()` bytes.
    unsafe { core::ptr::write_bytes(block.ptr.as_ptr(), block.fill, block.layout.size()) };
}

/// Runs `ops` against `debug`, checking after every operation, and frees everything at the end.
fn run<A: Wrappable>(debug: &DebugAllocator<A>, ops: &[Op]) {
    let mut live: Vec<Live> = Vec::new();
    let mut next_fill = 1u8;
    for op in ops {
        next_fill = next_fill.wrapping_add(1).max(1);
        match *op {
            Op::Alloc { size, align_log2, zero, via_handle, natural } => {
                let align = if natural { natural_align(size) } else { 1 << align_log2 };
                let layout = Layout::from_size_align(size, align).unwrap();
                let options = if zero { AllocOptions::ZERO } else { AllocOptions::DEFAULT };
                let ptr = if natural {
                    // SAFETY: a live allocator.
                    NonNull::new(unsafe { dispatch::alloc(debug.as_ptr(), size, 0, options) })
                        .ok_or(AllocError)
                } else if via_handle {
                    debug.handle().allocate(layout, options)
                } else {
                    debug.allocate_with(layout, options)
                }
                .expect("the parent has room for every request of the test");
                assert_eq!(ptr.as_ptr().addr() % layout.align(), 0, "misaligned");
                // SAFETY: a fresh block of `size` bytes.
                let bytes = unsafe { core::slice::from_raw_parts(ptr.as_ptr(), size) };
                let expected = if zero { 0 } else { FRESH };
                assert!(bytes.iter().all(|&b| b == expected), "a fresh block holds {expected:#x}");
                let block = Live { ptr, layout, fill: next_fill, natural };
                fill(&block);
                live.push(block);
            }
            Op::Free { index, via_handle } => {
                if live.is_empty() {
                    continue;
                }
                let block = live.swap_remove(index % live.len());
                assert_holds(&block);
                // SAFETY: a live block with its layout.
                unsafe {
                    if block.natural {
                        dispatch::free(debug.as_ptr(), block.ptr.as_ptr(), block.layout.size(), 0);
                    } else if via_handle {
                        debug.handle().deallocate(block.ptr, block.layout);
                    } else {
                        debug.deallocate(block.ptr, block.layout);
                    }
                }
            }
            Op::Realloc { index, size } => {
                if live.is_empty() {
                    continue;
                }
                let i = index % live.len();
                let old = &live[i];
                assert_holds(old);
                let ptr = if old.natural {
                    // SAFETY: a live block of `old` bytes allocated at alignment 0; `size > 0`.
                    let p = unsafe {
                        dispatch::realloc(
                            debug.as_ptr(),
                            old.ptr.as_ptr(),
                            old.layout.size(),
                            size,
                            0,
                            AllocOptions::DEFAULT,
                        )
                    };
                    NonNull::new(p).expect("room for the resize")
                } else {
                    // SAFETY: a live block with its layout; `size > 0`.
                    unsafe { debug.reallocate(old.ptr, old.layout, size) }.expect("room for the resize")
                };
                let align =
                    if old.natural { natural_align(old.layout.size().max(size)) } else { old.layout.align() };
                assert_eq!(ptr.as_ptr().addr() % align, 0, "a resize misaligned the block");
                let kept = old.layout.size().min(size);
                // SAFETY: the new block holds at least `kept` bytes.
                let bytes = unsafe { core::slice::from_raw_parts(ptr.as_ptr(), kept) };
                assert!(bytes.iter().all(|&b| b == old.fill), "a resize lost the contents");
                let natural = old.natural;
                let layout = Layout::from_size_align(
                    size,
                    if natural { natural_align(size) } else { old.layout.align() },
                )
                .unwrap();
                live[i] = Live { ptr, layout, fill: next_fill, natural };
                fill(&live[i]);
            }
        }
        assert_eq!(debug.check(), 0, "check() found damage in a correct sequence");
        assert_eq!(debug.error_count(), 0, "an error was reported for a correct sequence");
        let stats = debug.stats();
        assert_eq!(stats.allocation_count, live.len());
        assert_eq!(stats.bytes_allocated, live.iter().map(|b| b.layout.size()).sum::<usize>());
        assert!(stats.bytes_reserved >= stats.bytes_allocated);
    }
    let report = debug.leaks();
    assert_eq!(report.live_blocks, live.len());
    assert_eq!(report.sites.iter().map(|s| s.blocks).sum::<usize>(), live.len());
    for block in live.drain(..) {
        assert_holds(&block);
        // SAFETY: a live block with its layout (alignment 0 for a natural one).
        unsafe {
            if block.natural {
                dispatch::free(debug.as_ptr(), block.ptr.as_ptr(), block.layout.size(), 0);
            } else {
                debug.deallocate(block.ptr, block.layout);
            }
        }
    }
    assert_eq!(debug.leaks().live_blocks, 0);
    assert_eq!(debug.check(), 0);
    assert_eq!(debug.error_count(), 0);
    assert_eq!(debug.stats().allocation_count, 0);
}

/// A C-made allocator: malloc and free behind a vtable of its own.
unsafe extern "C" fn c_alloc(_: *mut c_void, size: usize, align: usize, _: AllocOptions) -> *mut c_void {
    let mut p = core::ptr::null_mut();
    // SAFETY: posix_memalign with a power-of-two alignment of at least a pointer's size.
    if unsafe { libc::posix_memalign(&mut p, align.max(8), size) } != 0 {
        return core::ptr::null_mut();
    }
    p
}

unsafe extern "C" fn c_free(_: *mut c_void, p: *mut c_void, _: usize, _: usize) {
    // SAFETY: a block from `c_alloc`.
    unsafe { libc::free(p) }
}

fn config() -> ProptestConfig {
    ProptestConfig { cases: if cfg!(miri) { 2 } else { 48 }, ..common::model_config() }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn over_system(ops in ops(600, 7)) {
        run(&DebugAllocator::new(Allocator::system(), DebugFlags::DEFAULT), &ops);
    }

    #[test]
    // (Under Miri the heap serves alignments up to 16 only: see `allocators/heap.rs`.)
    fn over_heap(ops in ops(600, if cfg!(miri) { 4 } else { 7 })) {
        run(&DebugAllocator::new(Allocator::heap(), DebugFlags::DEFAULT), &ops);
    }

    #[test]
    fn over_arena(ops in ops(600, 9)) {
        run(&DebugAllocator::new(Arena::with_capacity(1024), DebugFlags::DEFAULT), &ops);
    }

    #[test]
    fn over_pools(ops in ops(200, 4), checked in any::<bool>()) {
        // Each block with its guards: 16 + round_up(200, 16) + 16 = 240 bytes at most.
        let config = PoolConfig { object_size: 240, alignment: 16, objects_per_block: 8, max_objects: 0, checked };
        let pool = RawPool::with_config(config).unwrap();
        run(&DebugAllocator::new(pool, DebugFlags::DEFAULT), &ops);
    }

    #[test]
    fn over_region(ops in ops(600, 7)) {
        run(&DebugAllocator::new(Region::new(2048, true), DebugFlags::DEFAULT), &ops);
    }

    #[test]
    fn over_scope(ops in ops(600, 7)) {
        run(&DebugAllocator::new(Scope::new(), DebugFlags::DEFAULT), &ops);
    }

    #[test]
    fn over_temporary_arena(ops in ops(600, 7)) {
        // SAFETY: this thread's temporary arena lives as long as the thread.
        let temp = unsafe { AllocatorRef::from_raw(NonNull::new(temp::allocator()).unwrap()) };
        run(&DebugAllocator::new(temp, DebugFlags::DEFAULT), &ops);
        temp::reset().expect("no temp::with runs on this thread");
    }

    #[test]
    fn over_a_c_allocator(ops in ops(600, 7)) {
        let mut vtable = GooAllocator {
            alloc: Some(c_alloc),
            free: Some(c_free),
            track_stats: true,
            ..GooAllocator::EMPTY
        };
        // SAFETY: the vtable outlives the handle, which the debug allocator below holds.
        let c = unsafe { AllocatorRef::from_raw(NonNull::from(&mut vtable)) };
        run(&DebugAllocator::new(c, DebugFlags::DEFAULT), &ops);
        assert_eq!(c.stats().allocation_count, 0);
    }

    #[test]
    fn over_a_rust_allocator(ops in ops(600, 7)) {
        let raw = export(Api2Backend(allocator_api2::alloc::Global));
        {
            // SAFETY: destroyed below, after the debug allocator.
            let rust = unsafe { AllocatorRef::from_raw(raw) };
            run(&DebugAllocator::new(rust, DebugFlags::DEFAULT), &ops);
        }
        // SAFETY: a live exported allocator, not used afterwards.
        unsafe { goo_memory_core::managed_destroy(raw.as_ptr()) };
    }

    #[test]
    fn over_a_debug_allocator_with_traces(ops in ops(600, 7)) {
        let inner = DebugAllocator::new(Allocator::system(), DebugFlags::TRACES);
        run(&DebugAllocator::new(inner, DebugFlags::TRACES), &ops);
    }
}

/// Allocates `n` blocks of `size` bytes on one line (one site).
#[track_caller]
fn many<A: Wrappable>(debug: &DebugAllocator<A>, n: usize, size: usize) -> Vec<NonNull<u8>> {
    let mut blocks = Vec::new();
    for _ in 0..n {
        // (A closure would be the caller: `#[track_caller]` does not pass through closures.)
        blocks.push(debug.allocate(Layout::from_size_align(size, 8).unwrap()).unwrap());
    }
    blocks
}

#[test]
fn leak_report_groups_by_site_largest_first() {
    let debug = DebugAllocator::new(Allocator::system(), DebugFlags::DEFAULT);
    let small_line = line!() + 1;
    let small = many(&debug, 5, 16);
    let large_line = line!() + 1;
    let large = many(&debug, 2, 100);
    let one_line = line!() + 1;
    let one = many(&debug, 1, 8);
    let freed = many(&debug, 3, 1000);
    for p in &freed {
        // SAFETY: live blocks of 1000 bytes at 8.
        unsafe { debug.deallocate(*p, Layout::from_size_align(1000, 8).unwrap()) };
    }
    let report = debug.leaks();
    assert_eq!((report.live_blocks, report.live_bytes, report.errors), (8, 288, 0));
    let found: Vec<(u32, usize, usize)> = report
        .sites
        .iter()
        .map(|s| match s.site {
            Site::Rust(loc) => {
                assert_eq!(loc.file(), file!());
                (loc.line(), s.blocks, s.bytes)
            }
            other => panic!("a Rust caller's site is its location, not {other:?}"),
        })
        .collect();
    assert_eq!(found, vec![(large_line, 2, 200), (small_line, 5, 80), (one_line, 1, 8)]);
    let text = debug.report(ReportFormat::Text);
    assert!(text.contains(": 8 live block(s), 288 byte(s) from 3 site(s); 0 error(s) reported\n"), "{text}");
    assert!(text.contains(&format!("  200 byte(s) in 2 block(s) allocated at {}:{large_line}\n", file!())));
    let json = debug.report(ReportFormat::Json);
    assert!(json.contains(&format!(
        "\"sites\":[{{\"site\":\"{}:{large_line}\",\"address\":null,\"blocks\":2,\"bytes\":200,\"trace\":[]}}",
        file!()
    )));
    for (blocks, size) in [(small, 16), (large, 100), (one, 8)] {
        for p in blocks {
            // SAFETY: live blocks of `size` bytes at 8.
            unsafe { debug.deallocate(p, Layout::from_size_align(size, 8).unwrap()) };
        }
    }
    assert_eq!(debug.leaks().sites, vec![]);
}

#[test]
fn misuse_from_rust_is_refused_and_counted() {
    let debug = DebugAllocator::new(Arena::new(), DebugFlags::DEFAULT);
    let layout = Layout::from_size_align(32, 16).unwrap();
    let p = debug.allocate(layout).unwrap();
    // SAFETY: each call is a misuse the debug allocator refuses, changing nothing, and the
    // write lands in the block's back guard, inside its parent block.
    unsafe {
        debug.deallocate(p, Layout::from_size_align(16, 16).unwrap()); // wrong size
        assert_eq!(debug.stats().allocation_count, 1);
        debug.deallocate(NonNull::new(p.as_ptr().add(4)).unwrap(), layout); // interior pointer
        assert!(debug.reallocate(p, Layout::from_size_align(32, 64).unwrap(), 64).is_err()); // wrong alignment
        p.as_ptr().add(32).write(1); // into the back guard
    }
    assert_eq!(debug.error_count(), 3);
    assert_eq!(debug.check(), 1);
    assert_eq!(debug.error_count(), 4);
    assert_eq!(debug.check(), 1, "still damaged");
    assert_eq!(debug.error_count(), 4, "reported once");
    // SAFETY: the block, with its layout; then a double free, refused.
    unsafe {
        debug.deallocate(p, layout);
        debug.deallocate(p, layout);
    }
    assert_eq!(debug.error_count(), 5);
    assert_eq!(debug.stats().total_frees, 1);
    assert_eq!(debug.stats().allocation_count, 0);
}

/// One `__FILE__` may be two strings (a header's inline function used from two files): the
/// leak report groups by the site's text, not by the string's address.
#[test]
fn leak_report_groups_equal_file_names_as_one_site() {
    let debug = DebugAllocator::new(Allocator::system(), DebugFlags::DEFAULT);
    // Outlive every use: the debug allocator's (dropped first, below).
    let names: Vec<Box<core::ffi::CStr>> =
        (0..2).map(|_| c"shared.h".to_owned().into_boxed_c_str()).collect();
    assert_ne!(names[0].as_ptr(), names[1].as_ptr(), "two strings");
    let layout = Layout::from_size_align(24, 8).unwrap();
    let blocks: Vec<_> = names
        .iter()
        .map(|name| {
            // SAFETY: a NUL-terminated string, never written, that outlives the debug
            // allocator, the one user of the site.
            let site = unsafe { Site::c_file(name.as_ptr(), 2) };
            goo_memory_core::debug::with_site(site, || debug.handle().allocate(layout, AllocOptions::DEFAULT))
                .unwrap()
        })
        .collect();
    let report = debug.leaks();
    assert_eq!(report.sites.len(), 1, "one site");
    assert_eq!((report.sites[0].blocks, report.sites[0].bytes), (2, 48));
    assert_eq!(report.sites[0].site.describe(), "shared.h:2");
    for p in blocks {
        // SAFETY: live blocks of this layout.
        unsafe { debug.handle().deallocate(p.cast(), layout) };
    }
    drop(debug);
    drop(names);
}
