//! Integration tests of the core: a model test of random operation sequences through the front
//! door, exact stats under threads, strategies, the legacy header, containers.

mod common;

use core::alloc::Layout;
use core::ptr::{self, NonNull};
use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};

use goo_memory_core::dispatch;
use goo_memory_core::policy::invariant::InvariantError;
use goo_memory_core::{
    legacy, AllocOptions, AllocStats, AllocStrategy, Allocator, AllocatorRef, Backend, GooAllocator, System,
};
use goo_memory_core::{scoped, system};
use proptest::prelude::*;

#[derive(Clone, Debug)]
enum Op {
    Alloc { size: usize, align_log2: u32, zero: bool },
    Realloc { index: usize, new_size: usize, zero: bool },
    Free { index: usize },
}

/// Sizes below `max`, half of them small (the system allocator's thread cache serves up to 256
/// bytes, by 16-byte classes).
fn size(max: usize) -> impl Strategy<Value = usize> {
    prop_oneof![0usize..300, 0..max]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (size(4096), 0u32..13, any::<bool>()).prop_map(|(size, align_log2, zero)| Op::Alloc { size, align_log2, zero }),
        2 => (any::<usize>(), size(8192), any::<bool>()).prop_map(|(index, new_size, zero)| Op::Realloc { index, new_size, zero }),
        3 => any::<usize>().prop_map(|index| Op::Free { index }),
    ]
}

struct Block {
    ptr: *mut u8,
    size: usize,
    align: usize,
    fill: u8,
}

/// The model: what stats must say after the same operations.
#[derive(Default)]
struct Model {
    live: usize,
    peak: usize,
    count: usize,
    allocs: usize,
    frees: usize,
}

fn check_block(b: &Block) {
    assert_eq!(b.ptr as usize % b.align, 0, "misaligned block");
    // SAFETY: the block is live and `size` bytes long.
    let bytes = unsafe { core::slice::from_raw_parts(b.ptr, b.size) };
    assert!(bytes.iter().all(|&x| x == b.fill), "block contents changed");
}

fn fill(b: &Block) {
    // SAFETY: the block is live and `size` bytes long.
    unsafe { ptr::write_bytes(b.ptr, b.fill, b.size) };
}

/// Runs `ops` on `a`, checking after every operation the allocator's invariants with `check`
/// (and the calling thread's system cache, which every system block passes through).
fn run_model(
    a: AllocatorRef<'_>,
    ops: &[Op],
    check: impl Fn(*mut GooAllocator) -> Result<(), InvariantError>,
) {
    let raw = a.as_ptr();
    let base = a.stats();
    let mut blocks: Vec<Block> = Vec::new();
    let mut m = Model::default();
    let mut next_fill = 1u8;
    for op in ops {
        match *op {
            Op::Alloc { size, align_log2, zero } => {
                let align = 1usize << align_log2;
                let options = if zero { AllocOptions::ZERO } else { AllocOptions::DEFAULT };
                // SAFETY: `raw` is a live allocator.
                let p = unsafe { dispatch::alloc(raw, size, align, options) };
                assert!(!p.is_null());
                if size == 0 {
                    assert_eq!(p as usize % align, 0);
                    continue;
                }
                if zero {
                    // SAFETY: fresh block of `size` bytes.
                    assert!(unsafe { core::slice::from_raw_parts(p, size) }.iter().all(|&x| x == 0));
                }
                next_fill = next_fill.wrapping_add(1).max(1);
                let b = Block { ptr: p, size, align, fill: next_fill };
                fill(&b);
                blocks.push(b);
                m.live += size;
                m.count += 1;
                m.allocs += 1;
                m.peak = m.peak.max(m.live);
            }
            Op::Realloc { index, new_size, zero } if !blocks.is_empty() && new_size > 0 => {
                let i = index % blocks.len();
                let b = &mut blocks[i];
                check_block(b);
                let options = if zero { AllocOptions::ZERO } else { AllocOptions::DEFAULT };
                // SAFETY: `b` is a live block of this allocator with this size and alignment.
                let p = unsafe { dispatch::realloc(raw, b.ptr, b.size, new_size, b.align, options) };
                assert!(!p.is_null());
                let kept = b.size.min(new_size);
                // SAFETY: the new block holds `new_size` bytes.
                let bytes = unsafe { core::slice::from_raw_parts(p, new_size) };
                assert!(bytes[..kept].iter().all(|&x| x == b.fill), "realloc lost contents");
                if zero {
                    assert!(bytes[kept..].iter().all(|&x| x == 0), "realloc tail not zeroed");
                }
                m.live = m.live - b.size + new_size;
                m.peak = m.peak.max(m.live);
                b.ptr = p;
                b.size = new_size;
                fill(b);
            }
            Op::Free { index } if !blocks.is_empty() => {
                let b = blocks.swap_remove(index % blocks.len());
                check_block(&b);
                // SAFETY: live block of this allocator.
                unsafe { dispatch::free(raw, b.ptr, b.size, b.align) };
                m.live -= b.size;
                m.count -= 1;
                m.frees += 1;
            }
            _ => {}
        }
        // No two live blocks overlap.
        let mut spans: Vec<_> = blocks.iter().map(|b| (b.ptr as usize, b.ptr as usize + b.size)).collect();
        spans.sort_unstable();
        assert!(spans.windows(2).all(|w| w[0].1 <= w[1].0), "blocks overlap");
        assert_eq!(check(raw), Ok(()), "after {op:?}");
        assert_eq!(system::check_thread_cache(), Ok(()), "after {op:?}");
    }
    let s = a.stats();
    assert_eq!(s.bytes_allocated - base.bytes_allocated, m.live);
    assert_eq!(s.allocation_count - base.allocation_count, m.count);
    assert_eq!(s.total_allocations - base.total_allocations, m.allocs);
    assert_eq!(s.total_frees - base.total_frees, m.frees);
    if base == AllocStats::default() {
        assert_eq!(s.max_bytes_allocated, m.peak);
    }
    for b in blocks {
        check_block(&b);
        // SAFETY: live block of this allocator.
        unsafe { dispatch::free(raw, b.ptr, b.size, b.align) };
    }
    let s = a.stats();
    assert_eq!(s.bytes_allocated, base.bytes_allocated);
    assert_eq!(s.allocation_count, base.allocation_count);
}

proptest! {
    #![proptest_config(common::model_config())]

    /// Random alloc/realloc/free sequences on a system allocator: alignment, no overlap,
    /// contents preserved, zeroing, and stats equal to the model.
    #[test]
    fn system_allocator_matches_model(ops in prop::collection::vec(op(), 1..common::ops(200, 12))) {
        let heap = Allocator::system();
        // SAFETY: `heap` is live throughout.
        run_model(heap.handle(), &ops, |a| unsafe { system::check_raw(a) });
    }

    /// The same on a scope over a counted system allocator: the scope's own stats (peak
    /// included: its counting on the call-free path updates the peak itself) equal the model.
    #[test]
    fn scoped_allocator_matches_model(ops in prop::collection::vec(op(), 1..common::ops(200, 12))) {
        let heap = Allocator::system();
        // SAFETY: `heap` outlives the scope (ended before `heap` drops).
        let scope = unsafe { goo_memory_core::scoped::create(heap.as_ptr()) };
        // SAFETY: live until the end of this test.
        run_model(unsafe { AllocatorRef::from_raw(scope) }, &ops, |a| unsafe { scoped::check_raw(a) });
        // SAFETY: a live scope of this thread.
        let summary = unsafe { goo_memory_core::scoped::end(scope.as_ptr()) }.expect("ends");
        prop_assert_eq!(summary.implicit_frees, 0);
        prop_assert_eq!(heap.stats().bytes_allocated, 0);
    }

    /// The same through a C-style vtable (no library header): stats live in the embedded field.
    #[test]
    fn c_style_allocator_matches_model(ops in prop::collection::vec(op(), 1..common::ops(200, 12))) {
        let mut vtable = malloc_vtable();
        // SAFETY: the vtable is valid for the whole test.
        let a = unsafe { AllocatorRef::from_raw(NonNull::from(&mut vtable)) };
        // No library state of its own: the thread cache is all there is to check.
        run_model(a, &ops, |_| Ok(()));
    }
}

unsafe extern "C" fn c_alloc(
    _ctx: *mut core::ffi::c_void,
    size: usize,
    align: usize,
    _o: AllocOptions,
) -> *mut core::ffi::c_void {
    let mut out = ptr::null_mut();
    // SAFETY: align is a power of two (the front door checked), raised to pointer size.
    if unsafe { libc::posix_memalign(&mut out, align.max(8), size) } != 0 {
        return ptr::null_mut();
    }
    out
}

unsafe extern "C" fn c_free(_ctx: *mut core::ffi::c_void, p: *mut core::ffi::c_void, _s: usize, _a: usize) {
    // SAFETY: blocks come from posix_memalign.
    unsafe { libc::free(p) }
}

/// A vtable as a C program would write it: alloc and free only.
fn malloc_vtable() -> GooAllocator {
    GooAllocator { alloc: Some(c_alloc), free: Some(c_free), track_stats: true, ..GooAllocator::EMPTY }
}

/// N threads x M operations on one tracked allocator: no lost or torn counts.
#[test]
fn threads_share_one_allocator_exactly() {
    let (threads, ops) = if cfg!(miri) { (3, 50) } else { (8, 20_000) };
    let heap = Allocator::system();
    let layout = |i: usize| Layout::from_size_align(1 + i % 300, 8).unwrap();
    std::thread::scope(|s| {
        for t in 0..threads {
            let heap = &heap;
            s.spawn(move || {
                let mut held = Vec::new();
                for i in 0..ops {
                    if (i + t) % 3 == 2 {
                        if let Some((p, l)) = held.pop() {
                            // SAFETY: allocated just above with `l`.
                            unsafe { heap.deallocate(p, l) };
                        }
                    } else {
                        held.push((heap.allocate(layout(i)).unwrap(), layout(i)));
                    }
                }
                for (p, l) in held {
                    // SAFETY: as above.
                    unsafe { heap.deallocate(p, l) };
                }
            });
        }
    });
    let s = heap.stats();
    let per_thread_allocs: usize = (0..threads).map(|t| (0..ops).filter(|i| (i + t) % 3 != 2).count()).sum();
    assert_eq!(s.total_allocations, per_thread_allocs);
    assert_eq!(s.total_frees, per_thread_allocs);
    assert_eq!(s.bytes_allocated, 0);
    assert_eq!(s.allocation_count, 0);
    assert!(s.max_bytes_allocated > 0);
}

/// Like Zig's FailingAllocator: fails every request while `fail` is set.
struct Failing {
    fail: Cell<u32>,
    calls: Cell<u32>,
}

// SAFETY: delegates to System whenever it does not fail.
unsafe impl Backend for Failing {
    const NAME: &'static str = "failing";
    fn alloc(&self, size: usize, align: usize, options: AllocOptions) -> *mut u8 {
        self.calls.set(self.calls.get() + 1);
        if self.fail.get() > 0 {
            self.fail.set(self.fail.get() - 1);
            return ptr::null_mut();
        }
        System.alloc(size, align, options)
    }
    unsafe fn free(&self, ptr: *mut u8, size: usize, align: usize) {
        // SAFETY: blocks come from System.
        unsafe { System.free(ptr, size, align) }
    }
}

static OOM_CALLS: AtomicUsize = AtomicUsize::new(0);
unsafe extern "C" fn count_oom() {
    OOM_CALLS.fetch_add(1, Ordering::SeqCst);
}

#[test]
fn retry_strategy_retries_a_bounded_number_of_times() {
    let heap =
        Allocator::with_strategy(Failing { fail: Cell::new(2), calls: Cell::new(0) }, AllocStrategy::Retry);
    // SAFETY: the allocator is live and used by this thread only.
    unsafe { (*heap.as_ptr()).out_of_mem_fn = Some(count_oom) };
    let l = Layout::from_size_align(100, 8).unwrap();
    let p = heap.allocate(l).unwrap();
    assert_eq!(heap.backend().calls.get(), 3);
    assert_eq!(OOM_CALLS.load(Ordering::SeqCst), 2);
    // SAFETY: just allocated.
    unsafe { heap.deallocate(p, l) };
    heap.backend().fail.set(100);
    assert!(heap.allocate(l).is_err());
    assert_eq!(heap.backend().calls.get(), 3 + 1 + goo_memory_core::MAX_RETRIES);
    let s = heap.stats();
    assert_eq!(s.failed_allocations, 1);
    assert_eq!(s.total_allocations, 1);
}

/// Small blocks get the alignment asked for (or the natural one for alignment 0) from the
/// system allocator, whichever way it serves them (plain malloc or an aligned allocation).
#[test]
fn small_system_blocks_are_aligned_as_asked() {
    let heap = Allocator::system();
    let a = heap.as_ptr();
    for size in 1..=40usize {
        for align in [0usize, 1, 2, 4, 8, 16, 32] {
            let want = if align == 0 { goo_memory_core::natural_align(size) } else { align };
            // SAFETY: `a` is live; the block is freed with its size and alignment.
            unsafe {
                let p = dispatch::alloc(a, size, align, AllocOptions::DEFAULT);
                assert!(!p.is_null());
                assert_eq!(p as usize % want, 0, "size {size}, align {align}");
                p.write_bytes(0xa5, size);
                dispatch::free(a, p, size, align);
            }
        }
    }
    assert_eq!(heap.stats().allocation_count, 0);
}

#[test]
fn bad_requests_fail_cleanly_and_are_counted() {
    let heap = Allocator::system();
    let a = heap.as_ptr();
    // SAFETY: `a` is live.
    unsafe {
        assert!(dispatch::alloc(a, usize::MAX, 0, AllocOptions::DEFAULT).is_null());
        assert!(dispatch::alloc(a, 8, 3, AllocOptions::DEFAULT).is_null());
        assert!(dispatch::alloc(a, 8, 1 << 40, AllocOptions::DEFAULT).is_null());
        assert!(dispatch::alloc(a, isize::MAX as usize, 16, AllocOptions::DEFAULT).is_null());
    }
    assert_eq!(heap.stats().failed_allocations, 4);
    assert_eq!(heap.stats().total_allocations, 0);
}

#[test]
fn legacy_blocks_remember_size_and_allocator() {
    let p = legacy::alloc(40);
    assert!(!p.is_null());
    // SAFETY: `p` is a live legacy block.
    unsafe {
        assert_eq!(legacy::size_of(p), 40);
        ptr::write_bytes(p, 9, 40);
        let q = legacy::realloc(p, 4000);
        assert_eq!(legacy::size_of(q), 4000);
        assert_eq!(*q.add(39), 9);
        assert!(legacy::realloc(q, 0).is_null());
        legacy::free(ptr::null_mut());
    }
}

#[test]
fn thread_allocator_is_per_thread() {
    let mine = Allocator::system();
    // SAFETY: `mine` outlives its use as this thread's allocator (cleared below).
    unsafe { goo_memory_core::set_thread_allocator(mine.as_ptr()) };
    assert_eq!(AllocatorRef::with_current(|a| a.as_ptr()), mine.as_ptr());
    std::thread::spawn(|| assert!(goo_memory_core::thread_allocator().is_null())).join().unwrap();
    let p = legacy::alloc(8);
    assert_eq!(mine.stats().allocation_count, 1);
    // SAFETY: live legacy block.
    unsafe { legacy::free(p) };
    assert_eq!(mine.stats().allocation_count, 0);
    // SAFETY: clearing.
    unsafe { goo_memory_core::set_thread_allocator(ptr::null_mut()) };
    assert_eq!(AllocatorRef::with_current(|a| a.as_ptr()), goo_memory_core::default_allocator());
}

#[cfg(feature = "allocator-api2")]
#[test]
fn containers_allocate_through_the_front_door() {
    use allocator_api2::boxed::Box;
    use allocator_api2::vec::Vec;
    let heap = Allocator::system();
    {
        let mut v = Vec::new_in(&heap);
        for i in 0..1000u64 {
            v.push(i);
        }
        assert_eq!(v.iter().sum::<u64>(), 499_500);
        assert_eq!(heap.stats().allocation_count, 1);
        assert!(heap.stats().bytes_allocated >= 8000);
        let b = Box::new_in([7u8; 100], heap.handle());
        assert_eq!(b[99], 7);
        assert_eq!(heap.stats().allocation_count, 2);
        v.shrink_to_fit();
    }
    let s = heap.stats();
    assert_eq!(s.allocation_count, 0);
    assert_eq!(s.bytes_allocated, 0);
}

#[test]
fn system_allocators_are_independent_and_registered() {
    let a = Allocator::system();
    let b = Allocator::system();
    let l = Layout::new::<[u8; 32]>();
    let p = a.allocate(l).unwrap();
    assert_eq!(a.stats().allocation_count, 1);
    assert_eq!(b.stats().allocation_count, 0);
    let mut found = false;
    goo_memory_core::for_each_live(|raw, kind| found |= raw == a.as_ptr() && kind == "system");
    assert!(found);
    // SAFETY: allocated above.
    unsafe { a.deallocate(p, l) };
}

/// `GOO_SYSTEM_CACHE=0` turns the system allocator's thread cache off: every free goes to the C
/// library. Runs itself again as a child process with the variable set (it is read once).
#[test]
fn system_cache_can_be_turned_off() {
    use goo_memory_core::system::{thread_cache_len, thread_cache_stats};
    if std::env::var_os("GOO_SYSTEM_CACHE").is_some_and(|v| v == "0") {
        let heap = Allocator::system();
        for size in [1, 16, 64, 256] {
            let layout = Layout::from_size_align(size, 1).unwrap();
            let p = heap.allocate(layout).unwrap();
            // SAFETY: allocated just above with this layout.
            unsafe { heap.deallocate(p, layout) };
        }
        assert_eq!(thread_cache_len(), 0);
        assert_eq!(thread_cache_stats().threads, 0);
        return;
    }
    if cfg!(miri) {
        return; // no processes under Miri
    }
    let exe = std::env::current_exe().unwrap();
    let out = std::process::Command::new(exe)
        .args(["--exact", "system_cache_can_be_turned_off", "--test-threads=1"])
        .env("GOO_SYSTEM_CACHE", "0")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && stdout.contains("1 passed"), "{stdout}");
}

/// Every library allocator kind, through the front door at natural alignment (the call-free
/// path): size 0 gives a dangling non-null pointer, counted nowhere, freed as a no-op; an
/// unservable size fails and is counted; a plain request is served and counted exactly.
#[test]
fn every_kind_handles_zero_and_huge_sizes_on_the_fast_path() {
    use goo_memory_core::{arena, pool, region, scoped};
    let parent = Allocator::system();
    let p = parent.as_ptr();
    // SAFETY: the parent outlives every allocator made over it; each is destroyed below.
    unsafe {
        let kinds: Vec<(&str, *mut GooAllocator)> = vec![
            ("system", System::create(AllocStrategy::Null).as_ptr()),
            ("pool", pool::create(p, pool::PoolConfig::new(64, 16)).unwrap().as_ptr()),
            ("arena", arena::create(p, 4096, 0).as_ptr()),
            ("region", region::create(p, 4096, true).as_ptr()),
            ("scoped", scoped::create(p).as_ptr()),
        ];
        for (kind, a) in kinds {
            let zero = dispatch::alloc(a, 0, 0, AllocOptions::DEFAULT);
            assert!(!zero.is_null(), "{kind}: size 0 gives a dangling non-null pointer");
            dispatch::free(a, zero, 0, 0);
            assert!(dispatch::alloc(a, usize::MAX, 0, AllocOptions::DEFAULT).is_null(), "{kind}");
            assert!(dispatch::alloc(a, isize::MAX as usize, 0, AllocOptions::DEFAULT).is_null(), "{kind}");
            let block = dispatch::alloc(a, 48, 0, AllocOptions::DEFAULT);
            assert!(!block.is_null() && (block as usize).is_multiple_of(16), "{kind}");
            block.write_bytes(0xA5, 48);
            let s = dispatch::stats(a);
            assert_eq!((s.allocation_count, s.bytes_allocated, s.total_allocations), (1, 48, 1), "{kind}");
            assert_eq!(s.failed_allocations, 2, "{kind}");
            dispatch::free(a, block, 48, 0);
            let s = dispatch::stats(a);
            assert_eq!((s.allocation_count, s.bytes_allocated, s.total_frees), (0, 0, 1), "{kind}");
            goo_memory_core::managed_destroy(a);
        }
    }
    assert_eq!(parent.stats().allocation_count, 0);
}
