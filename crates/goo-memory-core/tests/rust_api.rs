//! The Rust API as a bumpalo and allocator-api2 user meets it, the same on every handle: the
//! bumpalo-style methods (and their panic safety) on arenas, regions, scopes and the temporary
//! arena; allocator-api2 containers in every allocator; the stats switch and its default (the
//! C one); `Debug` and `Display`; `Scope::run`'s value; the arena's limit and chunks; and
//! `temp::with`, the safe temporary arena.

use core::cell::Cell;
use core::mem::MaybeUninit;
use std::panic::{catch_unwind, AssertUnwindSafe};

use goo_memory_core::allocator_api2::{boxed::Box as ApiBox, vec::Vec as ApiVec};
use goo_memory_core::arena::{Arena, LimitError, SharedArena};
use goo_memory_core::bridge::GooGlobal;
use goo_memory_core::debug::{DebugAllocator, DebugFlags};
use goo_memory_core::locked::LockedAllocator;
use goo_memory_core::pool::{PoolStats, RawPool, SharedRawPool, TypedPool};
use goo_memory_core::region::Region;
use goo_memory_core::scoped::{Scope, ScopeSummary};
use goo_memory_core::temp::{self, TempError};
use goo_memory_core::{dispatch, AllocOptions, AllocStats, Allocator, GooAllocator};

/// Runs `$body` with `$h` bound to each arena-like handle in turn (an arena, a region, a scope,
/// the temporary arena), then checks the handle's invariants.
macro_rules! on_every_handle {
    (|$h:ident| $body:block) => {{
        {
            let arena = Arena::new();
            let $h = &arena;
            $body;
            arena.check().unwrap();
        }
        {
            let region = Region::new(0, true);
            let $h = &region;
            $body;
            region.check().unwrap();
        }
        {
            let scope = Scope::new();
            let $h = &scope;
            $body;
            scope.check().unwrap();
        }
        temp::with(|$h| $body);
    }};
}

/// Counts its drops in a cell (no heap memory: a value left in an arena leaks nothing).
#[derive(Debug)]
struct Counted<'a>(&'a Cell<usize>, u32);

impl Clone for Counted<'_> {
    fn clone(&self) -> Self {
        Counted(self.0, self.1 + 1)
    }
}

impl Drop for Counted<'_> {
    fn drop(&mut self) {
        self.0.set(self.0.get() + 1);
    }
}

#[repr(align(64))]
#[derive(Clone, Copy, Debug, PartialEq)]
struct Line([u8; 64]);

impl Default for Line {
    fn default() -> Self {
        Line([0; 64])
    }
}

#[test]
fn bumpalo_methods_work_on_every_handle() {
    on_every_handle!(|h| {
        let before = h.stats();
        let big = h.alloc_with(|| [7u64; 32]);
        assert_eq!(*big, [7; 32]);
        let line = h.alloc_with(|| Line([1; 64]));
        assert!((line as *mut Line as usize).is_multiple_of(64));
        let drops = Cell::new(0);
        let originals = [Counted(&drops, 1), Counted(&drops, 5)];
        let clones = h.alloc_slice_clone(&originals);
        assert_eq!((clones[0].1, clones[1].1), (2, 6));
        let fill: &[u32] = h.alloc_slice_fill_with(5, |i| i as u32 * 3);
        assert_eq!(fill, [0, 3, 6, 9, 12]);
        assert_eq!(h.alloc_slice_fill_copy(3, 9u8), [9, 9, 9]);
        let cloned = h.alloc_slice_fill_clone(3, &Counted(&drops, 10));
        assert!(cloned.iter().all(|c| c.1 == 11));
        assert_eq!(h.alloc_slice_fill_iter([1u16, 2, 3]), [1, 2, 3]);
        assert_eq!(h.alloc_slice_fill_iter((0..4u8).map(|x| x * 2)), [0, 2, 4, 6]);
        assert_eq!(h.alloc_slice_fill_default::<Line>(2), [Line::default(); 2]);
        assert_eq!(h.alloc_slice_copy(b"bytes"), b"bytes");
        let s = h.alloc_str("text");
        s.make_ascii_uppercase();
        assert_eq!(s, "TEXT");
        // Nothing to hold: an empty slice and a slice of zero-size values.
        assert!(h.alloc_slice_copy::<u64>(&[]).is_empty());
        assert_eq!(h.alloc_slice_fill_with(1000, |_| ()).len(), 1000);
        assert_eq!(*h.alloc(5u8), 5);
        // Values in the allocator are not dropped (as in bumpalo): only the two originals and
        // the temporary passed to `alloc_slice_fill_clone` were.
        drop(originals);
        assert_eq!(drops.get(), 3);
        // Twelve blocks of non-zero size.
        let after = h.stats();
        assert_eq!(after.total_allocations - before.total_allocations, 12);

        // The fallible forms: an overflowing size and an impossible one fail, calling nothing.
        let failed = h.stats().failed_allocations;
        assert!(h.try_alloc_slice_fill_copy(usize::MAX / 4, 0u64).is_err());
        // Miri ends the run at a request larger than memory rather than failing it.
        let huge = !cfg!(miri);
        if huge {
            let refused =
                h.try_alloc_slice_fill_with(isize::MAX as usize / 2, |_| -> u8 { panic!("called") });
            assert!(refused.is_err());
        }
        assert!(h.try_alloc_with(|| -> [u8; 0] { [] }).is_ok());
        assert!(h.try_alloc_slice_clone(&[1u8, 2]).is_ok());
        assert!(h.try_alloc_str("ok").is_ok());
        assert_eq!(h.try_alloc(3u16).map(|x| *x), Ok(3));
        let refused = h.stats().failed_allocations - failed;
        assert_eq!(refused, usize::from(huge), "the overflow never reached the allocator");
    });
}

#[test]
fn a_panicking_closure_leaves_nothing_behind() {
    on_every_handle!(|h| {
        h.alloc(0u64); // something before, so the block under test is not the first
        let before = h.stats();
        let drops = Cell::new(0);
        let r = catch_unwind(AssertUnwindSafe(|| {
            h.alloc_slice_fill_with(10, |i| {
                assert!(i != 6, "the seventh element fails");
                Counted(&drops, i as u32)
            })
        }));
        assert!(r.is_err());
        assert_eq!(drops.get(), 6, "the six elements built were dropped");
        let after = h.stats();
        assert_eq!(after.allocation_count, before.allocation_count, "the block was given back");
        assert_eq!(after.bytes_allocated, before.bytes_allocated);
        assert_eq!(after.total_frees, before.total_frees + 1);

        let r =
            catch_unwind(AssertUnwindSafe(|| h.alloc_with(|| -> [u64; 100] { panic!("while building") })));
        assert!(r.is_err());
        assert_eq!(h.stats().allocation_count, before.allocation_count);

        // A clone that panics is the same case.
        let r = catch_unwind(AssertUnwindSafe(|| {
            struct Bomb;
            impl Clone for Bomb {
                fn clone(&self) -> Self {
                    panic!("clone")
                }
            }
            h.alloc_slice_fill_clone(3, &Bomb).len()
        }));
        assert!(r.is_err());
        assert_eq!(h.stats().allocation_count, before.allocation_count);
        // An iterator that yields fewer elements than it says.
        struct Liar(usize);
        impl Iterator for Liar {
            type Item = u8;
            fn next(&mut self) -> Option<u8> {
                self.0 = self.0.checked_sub(1)?;
                Some(1)
            }
        }
        impl ExactSizeIterator for Liar {
            fn len(&self) -> usize {
                self.0 + 5
            }
        }
        assert!(catch_unwind(AssertUnwindSafe(|| h.alloc_slice_fill_iter(Liar(3)).len())).is_err());
        assert_eq!(h.stats().allocation_count, before.allocation_count);
    });
}

/// On a bump allocator the bytes of a given-back block are the next request's.
#[test]
fn a_panicking_fill_gives_the_bytes_back_to_the_arena() {
    let arena = Arena::new();
    let r = catch_unwind(AssertUnwindSafe(|| {
        arena.alloc_slice_fill_with(4, |i| if i < 3 { i } else { panic!() })
    }));
    assert!(r.is_err());
    let next = arena.alloc_slice_fill_copy(4, 0usize);
    let again = catch_unwind(AssertUnwindSafe(|| arena.alloc_with(|| -> usize { panic!() })));
    assert!(again.is_err());
    assert_eq!(arena.alloc(1usize) as *mut usize, next.as_mut_ptr().wrapping_add(4));
    assert_eq!(arena.stats().allocation_count, 2);
}

#[test]
fn every_handle_is_an_allocator_api2_allocator() {
    fn fill<A: goo_memory_core::allocator_api2::alloc::Allocator>(alloc: A) -> u64 {
        let mut v = ApiVec::new_in(alloc);
        v.extend(0..1000u64);
        v.shrink_to_fit();
        v.iter().sum()
    }
    const SUM: u64 = 499_500;

    let region = Region::new(0, true);
    assert_eq!(fill(&region), SUM);
    let child = region.child(256);
    let mut map = hashbrown::HashMap::new_in(&child);
    map.extend((0..100).map(|i| (i, i * i)));
    assert_eq!(map[&9], 81);
    drop(map);
    assert_eq!(child.stats().allocation_count, 0);
    drop(child);
    assert_eq!(region.stats().allocation_count, 0);

    let scope = Scope::new();
    assert_eq!(fill(&scope), SUM);
    assert_eq!(scope.live(), (0, 0), "a scope's blocks are freed one by one");
    assert_eq!(Scope::run(|s| fill(s)), SUM);

    let mut arena = Arena::new();
    assert_eq!(fill(&arena), SUM);
    {
        let checkpoint = arena.checkpoint();
        assert_eq!(fill(&checkpoint), SUM);
    }
    assert_eq!(arena.stats().allocation_count, 0);

    let typed = TypedPool::<[u64; 4]>::new(16);
    let boxed = ApiBox::new_in([1u64, 2, 3, 4], &typed);
    assert_eq!(typed.stats().live_objects, 1);
    drop(boxed);
    assert_eq!(typed.stats().live_objects, 0);
    let raw = RawPool::new(32, 16);
    assert_eq!(*ApiBox::new_in(7u32, &raw), 7);
    let shared_pool = SharedRawPool::new(32, 16);
    assert_eq!(*ApiBox::new_in(7u32, &shared_pool), 7);
    let shared_arena = SharedArena::new();
    assert_eq!(fill(&shared_arena), SUM);
    let debug = DebugAllocator::new(Allocator::system(), DebugFlags::DEFAULT);
    assert_eq!(fill(&debug), SUM);
    assert_eq!(debug.stats().allocation_count, 0);
    let mut inner = Arena::new();
    let locked = LockedAllocator::new(&mut inner);
    assert_eq!(fill(&locked), SUM);
    drop(locked);

    let heap = Allocator::heap();
    assert_eq!(fill(&heap), SUM);
    assert_eq!(fill(heap.handle()), SUM);
    let system = Allocator::system();
    assert_eq!(fill(&system), SUM);
    // Growth and the shrink are reallocations of the one block.
    assert_eq!((system.stats().total_allocations, system.stats().total_frees), (1, 1));

    let before = GooGlobal::stats().total_allocations;
    assert_eq!(fill(GooGlobal), SUM);
    assert!(GooGlobal::stats().total_allocations > before);

    assert_eq!(temp::with(|t| fill(t)), SUM);
}

#[test]
fn scope_run_returns_the_closures_value() {
    let v =
        Scope::run(|s| s.alloc_slice_fill_with(4, |i| i as u8).iter().map(|&x| u32::from(x)).sum::<u32>());
    assert_eq!(v, 6);
    let (text, summary) = Scope::run_with_summary(|s| {
        s.alloc(1u64);
        s.alloc_str("left for the scope's end");
        String::from("returned")
    });
    assert_eq!(text, "returned");
    assert_eq!(summary, ScopeSummary { implicit_frees: 2, implicit_bytes: 8 + 24 });
    // A scope made inside a run takes its memory from the built-in allocator, not from the
    // run's scope, so it can leave the run.
    let (kept, summary) = Scope::run_with_summary(|s| {
        let inner = Scope::new();
        inner.alloc(5u32);
        assert_eq!(s.live(), (0, 0));
        inner
    });
    assert_eq!(summary.implicit_frees, 0);
    assert_eq!(*kept.alloc(6u32), 6);
    assert_eq!(kept.live(), (2, 8));
    assert_eq!(kept.end(), ScopeSummary { implicit_frees: 2, implicit_bytes: 8 });
    // A panic ends the scope and restores the thread allocator.
    let thread_allocator = goo_memory_core::thread_allocator();
    assert!(catch_unwind(|| Scope::run(|s| {
        s.alloc(1u8);
        panic!("inside the run")
    }))
    .is_err());
    assert_eq!(goo_memory_core::thread_allocator(), thread_allocator);
}

/// Whether the allocator counts stats, read from its C header.
fn counts(a: *mut GooAllocator) -> bool {
    // SAFETY: a live allocator of the test.
    unsafe { (*a).track_stats }
}

#[test]
fn every_handle_counts_stats_by_default_as_in_c_and_can_stop() {
    let builtin = goo_memory_core::builtin();
    // What the C constructors make (goo_*_create call these).
    // SAFETY: the built-in allocator is a static; each allocator is destroyed right away.
    unsafe {
        for c in [
            goo_memory_core::arena::create(builtin, 0, 0),
            goo_memory_core::pool::create(builtin, goo_memory_core::pool::PoolConfig::new(64, 8)).unwrap(),
            goo_memory_core::region::create(builtin, 0, true),
            goo_memory_core::scoped::create(builtin),
            goo_memory_core::System::create(goo_memory_core::AllocStrategy::Null),
            goo_memory_core::shared_arena::create(builtin, 0, 0),
            goo_memory_core::shared_pool::create(builtin, goo_memory_core::pool::PoolConfig::new(64, 8))
                .unwrap(),
            goo_memory_core::locked::create(builtin),
            goo_memory_core::debug::create(builtin, 0),
        ] {
            assert!(counts(c.as_ptr()), "a C allocator counts stats");
            if goo_memory_core::region::is_live(c.as_ptr()) {
                goo_memory_core::region::destroy(c.as_ptr()).unwrap();
            } else if goo_memory_core::scoped::from_raw(c.as_ptr()).is_some() {
                goo_memory_core::scoped::end(c.as_ptr()).unwrap();
            } else {
                goo_memory_core::managed_destroy(c.as_ptr());
            }
        }
    }

    /// Checks the switch on a handle: on by default, off with `with_stats(false)`, on again.
    macro_rules! switch {
        ($make:expr, |$h:ident| $alloc:expr, $stats:ident) => {{
            let $h = $make;
            assert!($h.tracks_stats() && counts($h.as_ptr()), "{:?}", $h);
            $alloc;
            assert_eq!($h.$stats().total_allocations, 1);
            let mut $h = $make.with_stats(false);
            assert!(!$h.tracks_stats() && !counts($h.as_ptr()));
            $alloc;
            assert_eq!($h.$stats().total_allocations, 0);
            $h.set_track_stats(true);
            $alloc;
            assert_eq!($h.$stats().total_allocations, 1);
        }};
    }
    switch!(Arena::new(), |h| h.alloc(1u64), stats);
    switch!(Region::new(0, true), |h| h.alloc(1u64), stats);
    switch!(Scope::new(), |h| h.alloc(1u64), stats);
    switch!(Allocator::system(), |h| drop(ApiBox::new_in(1u64, &h)), stats);
    switch!(Allocator::heap(), |h| drop(ApiBox::new_in(1u64, &h)), stats);
    switch!(RawPool::new(8, 8), |h| h.alloc().unwrap(), alloc_stats);
    switch!(SharedArena::new(), |h| h.alloc(1u64), stats);
    switch!(SharedRawPool::new(8, 8), |h| h.alloc().unwrap(), alloc_stats);
    switch!(
        DebugAllocator::new(Allocator::system(), DebugFlags::DEFAULT),
        |h| drop(ApiBox::new_in(1u64, &h)),
        stats
    );
    // A locked allocator borrows what it wraps mutably: one inner allocator per wrapper.
    let (mut first, mut second) = (Allocator::system(), Allocator::system());
    let locked = LockedAllocator::new(&mut first);
    assert!(locked.tracks_stats() && counts(locked.as_ptr()), "{locked:?}");
    drop(ApiBox::new_in(1u64, &locked));
    assert_eq!(locked.stats().total_allocations, 1);
    drop(locked);
    let mut locked = LockedAllocator::new(&mut second).with_stats(false);
    assert!(!locked.tracks_stats() && !counts(locked.as_ptr()));
    drop(ApiBox::new_in(1u64, &locked));
    assert_eq!(locked.stats().total_allocations, 0);
    locked.set_track_stats(true);
    drop(ApiBox::new_in(1u64, &locked));
    assert_eq!(locked.stats().total_allocations, 1);
    // A typed pool's boxes borrow it: the switch is tried on three pools, each kept whole.
    let pool = TypedPool::<u64>::new(8);
    assert!(pool.tracks_stats());
    let b = pool.alloc(1).unwrap();
    assert_eq!(pool.alloc_stats().total_allocations, 1);
    drop(b);
    let quiet = TypedPool::<u64>::new(8).with_stats(false);
    let b = quiet.alloc(1).unwrap();
    assert_eq!(quiet.alloc_stats().total_allocations, 0);
    drop(b);
    let mut on = TypedPool::<u64>::new(8).with_stats(false);
    on.set_track_stats(true);
    assert!(on.tracks_stats());
    drop(on.alloc(2).unwrap());
    assert_eq!((on.alloc_stats().total_allocations, on.alloc_stats().total_frees), (1, 1));
}

#[test]
fn debug_on_every_allocator_and_display_on_stats() {
    let mut arena = Arena::new();
    arena.alloc(1u8);
    assert!(format!("{arena:?}")
        .starts_with("Arena { chunks: 1, limit: None, tracks_stats: true, stats: AllocStats {"));
    assert!(format!("{:?}", arena.checkpoint()).starts_with("Checkpoint { arena: Arena {"));
    let pool = TypedPool::<u32>::new(4);
    let b = pool.alloc(3).unwrap();
    assert_eq!(format!("{b:?}"), "PoolBox(3)");
    assert!(format!("{pool:?}").starts_with(r#"TypedPool { type: "u32", pool: PoolStats {"#));
    drop(b);
    assert!(format!("{:?}", pool.raw()).starts_with("RawPool { pool: PoolStats {"));
    let region = Region::new(0, true);
    region.set_name("root");
    assert!(format!("{region:?}").contains(r#"name: Some("root"), tracks_stats: true"#));
    let scope = Scope::new();
    scope.alloc(1u16);
    assert!(format!("{scope:?}").contains("scoped: Scoped { live_blocks: 1, live_bytes: 2, bytes_held: "));
    temp::with(|t| assert!(format!("{t:?}").starts_with("Temp { depth: 1, arena: Bump { chunks: ")));
    assert!(
        format!("{:?}", Allocator::system()).starts_with(r#"Allocator { kind: "system", tracks_stats: true"#)
    );
    assert_eq!(format!("{GooGlobal:?}"), "GooGlobal");
    let shared = SharedRawPool::new(32, 8);
    assert!(format!("{shared:?}")
        .starts_with("SharedRawPool { pool: SharedPool { object_size: 32, stride: 32, align: 16, "));
    assert!(format!("{:?}", SharedArena::new()).starts_with("SharedArena { allocator: 0x"));
    let debug = DebugAllocator::new(Allocator::system(), DebugFlags::DEFAULT);
    assert!(format!("{debug:?}").starts_with("DebugAllocator { debug: Debug { parent: 0x"));
    assert!(format!("{debug:?}").contains(r#"parent: Allocator { kind: "system", "#));
    let mut inner = Arena::new();
    let locked = LockedAllocator::new(&mut inner);
    assert!(format!("{locked:?}").starts_with("LockedAllocator { locked: Locked { inner: 0x"));
    drop(locked);
    // The mechanisms behind the handles.
    assert!(format!("{:?}", Allocator::new(goo_memory_core::Heap).backend()).starts_with("Heap"));
    // SAFETY: the built-in allocator is a static.
    let bump = unsafe { goo_memory_core::arena::Bump::new(goo_memory_core::builtin(), 0, 0) };
    assert!(format!("{bump:?}").starts_with("Bump { chunks: 0, bytes_reserved: 0, limit: 0, parent: 0x"));
    let api2 = goo_memory_core::bridge::Api2Backend(goo_memory_core::allocator_api2::alloc::Global);
    assert_eq!(format!("{api2:?}"), "Api2Backend(Global)");

    let stats = AllocStats {
        bytes_allocated: 64,
        bytes_reserved: 4096,
        max_bytes_allocated: 128,
        allocation_count: 1,
        total_allocations: 3,
        total_frees: 2,
        failed_allocations: 0,
    };
    assert_eq!(
        stats.to_string(),
        "live bytes 64, reserved 4096, peak 128, live 1, allocs 3, frees 2, failed 0"
    );
    let pool_stats = PoolStats {
        object_stride: 64,
        objects_per_block: 16,
        blocks: 2,
        total_objects: 32,
        free_objects: 29,
        live_objects: 3,
        max_objects: 100,
        bytes_reserved: 2080,
        misuse_detected: 1,
        checked: true,
    };
    assert_eq!(
        pool_stats.to_string(),
        "live 3 of 32 objects (64-byte stride, 16 per block), 2 blocks, 2080 bytes reserved, cap 100, 1 misuse refused, checked"
    );
    let summary = ScopeSummary { implicit_frees: 2, implicit_bytes: 40 };
    assert_eq!(summary.to_string(), "2 blocks (40 bytes) freed by the scope's end");
}

#[test]
fn the_arena_limit_is_set_and_read_as_in_bumpalo() {
    let arena = Arena::with_capacity(1000);
    assert_eq!(arena.allocation_limit(), None);
    arena.alloc(1u8);
    let held = arena.allocated_bytes();
    assert_eq!(arena.set_allocation_limit(Some(held - 1)), Err(LimitError { bytes_held: held }));
    assert_eq!(arena.allocation_limit(), None, "a refused limit changes nothing");
    arena.set_allocation_limit(Some(held)).unwrap();
    assert_eq!(arena.allocation_limit(), Some(held));
    // Room left in the chunk is still served; a new chunk is not.
    assert!(arena.try_alloc_slice_fill_copy(100, 0u8).is_ok());
    let failed = arena.stats().failed_allocations;
    assert!(arena.try_alloc_slice_fill_copy(5000, 0u8).is_err());
    assert_eq!(arena.stats().failed_allocations, failed + 1);
    assert_eq!(arena.allocated_bytes(), held);
    arena.check().unwrap();
    arena.set_allocation_limit(Some(held + 100_000)).unwrap();
    assert!(arena.try_alloc_slice_fill_copy(5000, 0u8).is_ok());
    arena.set_allocation_limit(None).unwrap();
    assert_eq!(arena.allocation_limit(), None);
    assert!(arena.try_alloc_slice_fill_copy(200_000, 0u8).is_ok());
    arena.check().unwrap();
    // SAFETY: the built-in allocator is a static.
    let limited = unsafe { Arena::with_parent(goo_memory_core::builtin(), 0, 1 << 20) };
    assert_eq!(limited.allocation_limit(), Some(1 << 20));
    assert_eq!(limited.set_allocation_limit(Some(0)), Ok(()));
    assert_eq!(limited.allocation_limit(), None, "0 is no limit, as in C");
}

#[test]
fn iter_allocated_chunks_yields_every_chunk_newest_first() {
    let mut arena = Arena::with_capacity(64);
    assert_eq!(arena.iter_allocated_chunks().count(), 0);
    // Blocks in several normal chunks and one large request (a dedicated chunk), each filled
    // with its own byte.
    let mut blocks: Vec<(usize, usize, u8)> = Vec::new();
    for (i, len) in [40usize, 40, 100, 300, 20_000, 700, 10].into_iter().enumerate() {
        let b = arena.alloc_slice_fill_copy(len, i as u8 + 1);
        blocks.push((b.as_ptr() as usize, len, i as u8 + 1));
    }
    let count = arena.chunk_count();
    let chunks: Vec<&[MaybeUninit<u8>]> = arena.iter_allocated_chunks().collect();
    assert_eq!(chunks.len(), count);
    assert!(chunks.len() >= 3);
    for &(start, len, byte) in &blocks {
        let chunk = chunks
            .iter()
            .find(|c| start >= c.as_ptr() as usize && start + len <= c.as_ptr() as usize + c.len())
            .unwrap_or_else(|| panic!("block of {len} bytes in no chunk"));
        let block = &chunk[start - chunk.as_ptr() as usize..][..len];
        // SAFETY: the block's bytes were written (padding between blocks may not be).
        assert!(block.iter().all(|b| unsafe { b.assume_init() } == byte));
    }
    // The newest chunk comes first and ends where the last block does.
    let (last_start, last_len, _) = blocks[blocks.len() - 1];
    assert_eq!(chunks[0].as_ptr() as usize + chunks[0].len(), last_start + last_len);
    drop(chunks);
    arena.reset();
    let after: Vec<usize> = arena.iter_allocated_chunks().map(|c| c.len()).collect();
    assert_eq!(after, [0], "one empty chunk after a reset");
}

#[test]
fn temp_with_frees_its_blocks_and_nests() {
    let bytes = || temp::with(|t| t.stats().bytes_allocated);
    let base = bytes();
    let n = temp::with(|outer| {
        let a = outer.alloc_slice_fill_copy(1000, 1u8);
        let inner_sum = temp::with(|inner| {
            let b = inner.alloc_slice_fill_copy(500, 2u8);
            assert!(inner.stats().bytes_allocated >= base + 1500);
            b.iter().map(|&x| usize::from(x)).sum::<usize>()
        });
        assert_eq!(outer.stats().bytes_allocated, base + 1000, "the inner call's block is gone");
        // The outer handle allocates again once the inner call is over.
        let c = outer.alloc(3u8);
        a.iter().map(|&x| usize::from(x)).sum::<usize>() + inner_sum + usize::from(*c)
    });
    assert_eq!(n, 1000 + 1000 + 3);
    assert_eq!(bytes(), base);
}

#[test]
fn an_outer_temp_handle_cannot_allocate_inside_an_inner_call() {
    temp::with(|outer| {
        let mut v = ApiVec::new_in(outer);
        v.push(1u32);
        let kept = outer.alloc(7u64);
        temp::with(|inner| {
            let x = inner.alloc(1u8);
            assert!(catch_unwind(AssertUnwindSafe(|| outer.alloc(2u8))).is_err(), "allocation");
            assert!(catch_unwind(AssertUnwindSafe(|| v.reserve(100))).is_err(), "growth in place");
            assert_eq!(*x, 1);
        });
        assert_eq!((*kept, v.len()), (7, 1));
        v.extend(0..100);
        assert_eq!(v.len(), 101);
    });
}

#[test]
fn the_temp_arena_cannot_be_reset_or_rewound_under_a_temp_handle() {
    let mark = temp::mark();
    let sys = Allocator::system();
    temp::with(|t| {
        let x = t.alloc(42u64);
        assert_eq!(temp::reset(), Err(TempError::InUse));
        assert_eq!(temp::rewind(&mark), Err(TempError::InUse));
        assert_eq!(temp::rewind(&temp::mark()), Err(TempError::InUse));
        // A GOO_ALLOC_TEMP request meanwhile is freed with the rest.
        // SAFETY: a live allocator; TEMP routes to this thread's temporary arena.
        let p = unsafe { dispatch::alloc(sys.as_ptr(), 64, 0, AllocOptions::TEMP) };
        assert!(!p.is_null());
        assert_eq!(*x, 42);
    });
    assert_eq!(sys.stats().total_allocations, 0);
    assert_eq!(temp::rewind(&mark), Ok(()));
    assert_eq!(temp::reset(), Ok(()));
    assert_eq!(temp::with(|t| t.stats().bytes_allocated), 0);
    // A panic inside frees the blocks and lets the arena be reset again.
    assert!(catch_unwind(|| temp::with(|t| {
        t.alloc_slice_fill_copy(100, 0u8);
        panic!("inside temp::with")
    }))
    .is_err());
    assert_eq!(temp::reset(), Ok(()));
    assert_eq!(temp::with(|t| t.stats().allocation_count), 0);
}

/// An inner `temp::with` frees (and shrinks) the outer call's newest blocks: nothing moves
/// below the inner call's mark, every rewind is accepted, and the stats count each block once.
#[test]
fn inner_temp_calls_free_outer_blocks_exactly() {
    let live = |t: &temp::Temp| {
        let s = t.stats();
        (s.allocation_count, s.bytes_allocated)
    };
    temp::with(|t1| {
        let base = live(t1);
        let mut a: Option<ApiVec<u8, &temp::Temp>> = Some(ApiVec::with_capacity_in(64, t1));
        a.as_mut().unwrap().push(1);
        let mut b: ApiVec<u8, &temp::Temp> = ApiVec::with_capacity_in(48, t1);
        b.push(2);
        assert_eq!(live(t1), (base.0 + 2, base.1 + 112));
        temp::with(|t2| {
            drop(a.take()); // the outer's block, freed while t2 runs
            b.shrink_to(16); // the outer's newest block, shrunk while t2 runs
            temp::with(|t3| {
                let x = t3.alloc(5u64);
                assert_eq!(*x, 5);
            });
            let y = t2.alloc_slice_fill_copy(100, 7u8);
            assert!(y.iter().all(|&v| v == 7));
            let _z = t2.alloc(1u64);
        });
        assert_eq!(b[0], 2, "the outer's block is intact");
        assert_eq!(live(t1), (base.0 + 1, base.1 + 16), "the inner calls' blocks are gone");
        drop(b);
        assert_eq!(live(t1), base);
    });
    assert_eq!(temp::with(|t| live(t)), (0, 0));
}

/// An outer handle's shrink to a smaller alignment while an inner call runs keeps the block
/// where it is (it has that alignment already): no allocation, no panic.
#[test]
fn an_outer_temp_shrinks_to_a_smaller_alignment_while_an_inner_call_runs() {
    use goo_memory_core::allocator_api2::alloc::Allocator as _;
    let (wide, narrow) = (
        core::alloc::Layout::from_size_align(64, 64).unwrap(),
        core::alloc::Layout::from_size_align(32, 8).unwrap(),
    );
    temp::with(|outer| {
        let p = outer.allocate(wide).unwrap().cast::<u8>();
        // SAFETY: a live block of `wide`, shrunk with it, then freed with the new layout.
        unsafe {
            p.as_ptr().write_bytes(3, 64);
            let q = temp::with(|_inner| outer.shrink(p, wide, narrow).unwrap().cast::<u8>());
            assert_eq!(q, p, "the block stays");
            assert!(core::slice::from_raw_parts(q.as_ptr(), 32).iter().all(|&b| b == 3));
            outer.deallocate(q, narrow);
        }
        assert_eq!(outer.stats().allocation_count, 0);
    });
}

/// `grow_zeroed` through every handle is a resize: one allocation counted, the new bytes zero.
#[test]
fn grow_zeroed_is_a_resize_on_every_handle() {
    fn grow<A: goo_memory_core::allocator_api2::alloc::Allocator>(a: A, stats: impl Fn() -> AllocStats) {
        let small = core::alloc::Layout::from_size_align(16, 8).unwrap();
        let large = core::alloc::Layout::from_size_align(64, 8).unwrap();
        let before = stats().total_allocations;
        let p = a.allocate(small).unwrap().cast::<u8>();
        // SAFETY: a fresh block of 16 bytes, grown with its layout, then freed with the new one.
        unsafe {
            p.as_ptr().write_bytes(0xFF, 16);
            let q = a.grow_zeroed(p, small, large).unwrap().cast::<u8>();
            let bytes = core::slice::from_raw_parts(q.as_ptr(), 64);
            assert!(bytes[..16].iter().all(|&b| b == 0xFF) && bytes[16..].iter().all(|&b| b == 0));
            assert_eq!(stats().total_allocations, before + 1, "a resize, not a new allocation");
            a.deallocate(q, large);
        }
    }
    let system = Allocator::system();
    grow(&system, || system.stats());
    let arena = Arena::new();
    grow(&arena, || arena.stats());
    let region = Region::new(0, true);
    grow(&region, || region.stats());
    let debug = DebugAllocator::new(Allocator::system(), DebugFlags::DEFAULT);
    grow(&debug, || debug.stats());
    temp::with(|t| grow(t, || t.stats()));
}
