//! A handle that borrows an allocator for `'a` (a `LockedAllocator` over an arena, a
//! `DebugAllocator` over an `AllocatorRef`) registers a library allocator of its own. Forgotten
//! (`mem::forget`, safe), it leaves that allocator registered after the borrowed one is gone:
//! the registry's reports and the cleanup must not reach the borrowed allocator through it
//! (both read a freed arena before: Miri). One test, in a binary of its own: the cleanup wants
//! no other thread in the library.

use core::alloc::Layout;
use goo_memory_core::arena::Arena;
use goo_memory_core::debug::{DebugAllocator, DebugFlags};
use goo_memory_core::locked::LockedAllocator;
use goo_memory_core::report::{self, Report};

#[test]
fn reports_and_cleanup_reach_no_allocator_a_forgotten_handle_borrowed() {
    let mut arena = Arena::new();
    arena.alloc(1u64);
    let locked = LockedAllocator::new(&mut arena);
    locked.handle().allocate(Layout::new::<u64>(), Default::default()).unwrap();
    let wrapper = locked.as_ptr() as usize;
    core::mem::forget(locked);
    drop(arena);
    // SAFETY: no other thread uses a single-owner allocator (the only contract).
    let report = unsafe { Report::collect() };
    let entry = report.allocators.iter().find(|a| a.address == wrapper).expect("still registered");
    assert_eq!(entry.stats.bytes_reserved, 8, "the wrapper's own live bytes");

    let arena = Arena::new();
    let debug = DebugAllocator::new(arena.handle(), DebugFlags::DEFAULT);
    let layout = Layout::new::<[u8; 48]>();
    let block = debug.allocate(layout).unwrap();
    // SAFETY: a live block of `debug` with this layout: into the quarantine.
    unsafe { debug.deallocate(block, layout) };
    let debug_address = debug.as_ptr() as usize;
    core::mem::forget(debug);
    drop(arena);
    // SAFETY: as above.
    let report = unsafe { Report::collect() };
    assert!(report.allocators.iter().any(|a| a.address == debug_address), "still registered");
    // SAFETY: no other thread uses the library meanwhile.
    unsafe { report::cleanup() };
}
