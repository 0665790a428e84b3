//! A callback on an allocator's parent that uses the allocator itself while the allocator is
//! asking that parent for memory (an arena taking a chunk, a pool taking a block) or giving it
//! back (an arena's reset and rewind): the allocator's state is whole whenever the parent runs,
//! so the nested request is served like any other and every invariant holds after.

use core::ffi::c_void;
use std::cell::Cell;

use goo_memory_core::arena::Arena;
use goo_memory_core::policy::callbacks::{self, MemoryEvent, EVENT_ALLOC, EVENT_FREE, EVENT_REQUEST};
use goo_memory_core::pool::RawPool;

thread_local! {
    /// Armed: the next event on the built-in allocator runs the nested use, once.
    static ARMED: Cell<bool> = const { Cell::new(false) };
}

/// Whether `event` is the armed one (on the built-in allocator, the arenas' and pools' parent).
///
/// # Safety
/// `event` is the event a callback was given.
unsafe fn fires(event: *const MemoryEvent) -> bool {
    // SAFETY: per the contract.
    let e = unsafe { &*event };
    e.allocator == goo_memory_core::builtin() && ARMED.with(|a| a.replace(false))
}

/// Allocates from the arena `data` points to: more than its current chunk holds, so it takes a
/// chunk of its own too.
unsafe extern "C" fn use_arena(event: *const MemoryEvent, data: *mut c_void) -> bool {
    // SAFETY: a callback's event; `data` is the test's arena, alive while it is registered.
    unsafe {
        if fires(event) {
            let arena = &*data.cast::<Arena>();
            let nested = arena.alloc_slice_fill_copy(20_000, 0xABu8);
            assert!(nested.iter().all(|&b| b == 0xAB));
        }
    }
    true
}

fn arena_used_while_it_takes_a_chunk(mask: u32) {
    let mut arena = Arena::with_capacity(1024);
    arena.alloc(1u8);
    let id = callbacks::add(mask, use_arena, (&raw const arena).cast_mut().cast());
    ARMED.with(|a| a.set(true));
    let outer = arena.alloc_slice_fill_copy(8_000, 0x11u8); // a new chunk: the parent is asked
    assert!(callbacks::remove(id));
    assert!(!ARMED.with(Cell::get), "the callback ran");
    let after = arena.alloc_slice_fill_copy(4_000, 0x22u8);
    assert!(outer.iter().all(|&b| b == 0x11), "the outer block is intact");
    assert!(after.iter().all(|&b| b == 0x22));
    arena.check().expect("the arena's invariants");
    arena.reset();
    arena.check().expect("after a reset");
}

#[test]
fn an_arena_used_by_its_parents_alloc_callback() {
    arena_used_while_it_takes_a_chunk(EVENT_ALLOC);
}

#[test]
fn an_arena_used_by_its_parents_request_callback() {
    arena_used_while_it_takes_a_chunk(EVENT_REQUEST);
}

/// An arena reset, and rewound, while its parent's free callback allocates from it: the
/// nested block comes from the arena as the reset (or rewind) left it, and stays whole.
#[test]
fn an_arena_used_by_its_parents_free_callback() {
    let mut arena = Arena::with_capacity(1024);
    for _ in 0..4 {
        arena.alloc_slice_fill_copy(3_000, 1u8); // more chunks than the reset keeps
    }
    let id = callbacks::add(EVENT_FREE, use_arena, (&raw const arena).cast_mut().cast());
    ARMED.with(|a| a.set(true));
    arena.reset();
    assert!(!ARMED.with(Cell::get), "the callback ran");
    arena.check().expect("after a reset with a nested allocation");
    let block = arena.alloc_slice_fill_copy(100, 3u8);
    assert!(block.iter().all(|&b| b == 3));
    {
        let checkpoint = arena.checkpoint();
        checkpoint.alloc_slice_fill_copy(50_000, 4u8); // a chunk the rewind gives back
        ARMED.with(|a| a.set(true));
    }
    assert!(callbacks::remove(id));
    arena.check().expect("after a rewind with a nested allocation");
}

/// Takes objects from the pool `data` points to: more than it has free, so it grows too.
unsafe extern "C" fn use_pool(event: *const MemoryEvent, data: *mut c_void) -> bool {
    // SAFETY: a callback's event; `data` is the test's pool, alive while it is registered.
    unsafe {
        if fires(event) {
            let pool = &*data.cast::<RawPool>();
            let taken: Vec<_> = (0..5).map(|_| pool.alloc().expect("an object")).collect();
            for p in taken {
                pool.free(p);
            }
        }
    }
    true
}

#[test]
fn a_pool_used_by_its_parents_alloc_callback() {
    let pool = RawPool::new(64, 4);
    let mut objects: Vec<_> = (0..4).map(|_| pool.alloc().unwrap()).collect();
    let id = callbacks::add(EVENT_ALLOC, use_pool, (&raw const pool).cast_mut().cast());
    ARMED.with(|a| a.set(true));
    objects.push(pool.alloc().unwrap()); // a new block: the parent is asked
    assert!(callbacks::remove(id));
    assert!(!ARMED.with(Cell::get), "the callback ran");
    objects.extend((0..20).map(|_| pool.alloc().unwrap()));
    let mut addresses: Vec<usize> = objects.iter().map(|p| p.as_ptr().addr()).collect();
    addresses.sort_unstable();
    addresses.dedup();
    assert_eq!(addresses.len(), objects.len(), "no object handed out twice");
    pool.check().expect("the pool's invariants");
    for p in objects {
        // SAFETY: live objects of the pool, freed once.
        unsafe { pool.free(p) };
    }
    assert_eq!(pool.stats().live_objects, 0);
}
