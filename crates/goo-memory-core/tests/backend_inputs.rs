//! `Backend::alloc` is a safe method: the library's backends, reached through
//! `Allocator::backend()` (or, for the system allocator and the heap, as plain values), must
//! be safe to call with any size and alignment, not only with the checked requests the front
//! door passes. The arena's bump with alignment 0, or with size 0 before its first chunk (a
//! region's too), made a null `NonNull` in a release build (Miri), and a non-power-of-two
//! alignment could carve past a new chunk's end.

use goo_memory_core::arena::Bump;
use goo_memory_core::locked::Locked;
use goo_memory_core::pool::{Pool, PoolConfig};
use goo_memory_core::region::{self, Region};
use goo_memory_core::scoped::Scoped;
use goo_memory_core::shared_arena::SharedBump;
use goo_memory_core::shared_pool::SharedPool;
use goo_memory_core::{builtin, AllocOptions, Allocator, Backend, Heap, System};
use goo_memory_core::{debug, policy::backend::managed_destroy};

/// Requests no front door passes: alignment 0, not a power of two, or too large; sizes 0, and
/// past `isize::MAX` with the alignment. Whatever comes back is null or a block the backend
/// owns: written to, when it is small, where its bytes lie in the backend's memory.
fn bad_requests<B: Backend>(b: &B, name: &str) {
    let mut served = 0;
    for size in [0, 1, 24, 4000, isize::MAX as usize - 2, isize::MAX as usize, usize::MAX] {
        for align in [0, 3, 24, 1 << 62, 1 << 63] {
            let p = b.alloc(size, align, AllocOptions::DEFAULT);
            if !p.is_null() {
                served += 1;
                assert!(size < 1 << 20, "{name}: {size} bytes at {align} served");
            }
        }
    }
    // The arenas refuse them all; others may serve a small size at a bad alignment, and
    // keep it as a block of theirs (freed with them).
    let _ = served;
}

#[test]
fn backends_take_any_request_through_their_safe_methods() {
    // SAFETY: the built-in allocator is a static, usable from any thread, which outlives them.
    let (bump, shared, pool, shared_pool, scope) = unsafe {
        (
            Allocator::new(Bump::new(builtin(), 4096, 0)),
            Allocator::new(SharedBump::new(builtin(), 4096, 0)),
            Allocator::new(Pool::new(builtin(), PoolConfig::new(64, 16)).unwrap()),
            Allocator::new(SharedPool::new(builtin(), PoolConfig::new(64, 16)).unwrap()),
            Allocator::new(Scoped::new(builtin())),
        )
    };
    // Before the first chunk: nothing fits, not even 0 bytes.
    for align in [1, 16, 1 << 40] {
        assert!(bump.backend().alloc(0, align).is_null(), "arena: 0 bytes at {align}");
        assert!(shared.backend().alloc(0, align).is_null(), "shared arena: 0 bytes at {align}");
    }
    let fresh = Region::new(0, true);
    // SAFETY: a live region of this thread.
    let region = unsafe { region::backend_of(fresh.as_ptr()) }.unwrap();
    bad_requests(region, "region");
    // SAFETY: the built-in allocator outlives both.
    let (debug, locked) = unsafe { (debug::create(builtin(), 0), Allocator::new(Locked::new(builtin()))) };
    // SAFETY: just made.
    bad_requests(unsafe { debug::from_raw(debug.as_ptr()) }.unwrap(), "debug");
    bad_requests(locked.backend(), "locked");
    // A chunk first, so that a bad request would carve in one.
    assert!(!bump.backend().alloc(64, 8).is_null());
    assert!(!shared.backend().alloc(64, 8).is_null());
    for (size, align) in [(8, 0), (8, 3), (4000, 24), (usize::MAX, 1), (isize::MAX as usize, 8)] {
        assert!(bump.backend().alloc(size, align).is_null(), "arena: {size} at {align}");
        assert!(shared.backend().alloc(size, align).is_null(), "shared arena: {size} at {align}");
    }
    bad_requests(bump.backend(), "arena");
    bad_requests(shared.backend(), "shared arena");
    bad_requests(pool.backend(), "pool");
    bad_requests(shared_pool.backend(), "shared pool");
    bad_requests(scope.backend(), "scope");
    if !cfg!(miri) {
        // Miri cannot fail a large `malloc`: it stops instead.
        bad_requests(&System, "system");
        bad_requests(&Heap, "heap");
    }
    // The arenas still serve, and their blocks are intact.
    let a = bump.backend().alloc(16, 16);
    let b = shared.backend().alloc(16, 16);
    assert!(!a.is_null() && !b.is_null());
    // SAFETY: made above, used no more (what it served stays the built-in's: leaks).
    unsafe { managed_destroy(debug.as_ptr()) };
}
