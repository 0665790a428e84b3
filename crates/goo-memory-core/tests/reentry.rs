//! A callback on an allocator's parent that uses the allocator itself while the allocator is
//! asking that parent for memory (an arena taking a chunk, a pool taking a block) or giving it
//! back (an arena's reset and rewind): the allocator's state is whole whenever the parent runs,
//! so the nested request is served like any other and every invariant holds after.

use core::ffi::c_void;
use std::cell::Cell;

use goo_memory_core::arena::{self, Arena};
use goo_memory_core::policy::callbacks::{self, MemoryEvent, EVENT_ALLOC, EVENT_FREE, EVENT_REQUEST};
use goo_memory_core::pool::RawPool;
use goo_memory_core::{dispatch, AllocOptions};

thread_local! {
    /// The allocator (a callback's user data) whose nested use the next event on the built-in
    /// allocator on this thread runs, once. Callbacks are process-wide and tests run on threads
    /// of their own: each test's callback fires only for the allocator its thread armed.
    static ARMED: Cell<*mut c_void> = const { Cell::new(core::ptr::null_mut()) };
}

fn arm(data: *mut c_void) {
    ARMED.with(|a| a.set(data));
}

fn armed() -> bool {
    !ARMED.with(Cell::get).is_null()
}

/// Whether `event` is the armed one for `data` (on the built-in allocator, the arenas' and
/// pools' parent).
///
/// # Safety
/// `event` is the event a callback was given.
unsafe fn fires(event: *const MemoryEvent, data: *mut c_void) -> bool {
    // SAFETY: per the contract.
    let e = unsafe { &*event };
    e.allocator == goo_memory_core::builtin()
        && ARMED.with(|a| a.get() == data && !a.replace(core::ptr::null_mut()).is_null())
}

/// Allocates from the arena `data` points to: more than its current chunk holds, so it takes a
/// chunk of its own too.
unsafe extern "C" fn use_arena(event: *const MemoryEvent, data: *mut c_void) -> bool {
    // SAFETY: a callback's event; `data` is the test's arena, alive while it is registered.
    unsafe {
        if fires(event, data) {
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
    let data = (&raw const arena).cast_mut().cast();
    // SAFETY: the callback may run on any thread with any event while registered; its data
    // outlives the registration (removed below).
    let id = unsafe { callbacks::add(mask, use_arena, data) };
    arm(data);
    let outer = arena.alloc_slice_fill_copy(8_000, 0x11u8); // a new chunk: the parent is asked
    assert!(callbacks::remove(id));
    assert!(!armed(), "the callback ran");
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

/// Allocates from the library arena `data` is (a C arena, through the front door).
unsafe extern "C" fn use_raw_arena(event: *const MemoryEvent, data: *mut c_void) -> bool {
    // SAFETY: a callback's event; `data` is the test's arena, alive while it is registered.
    unsafe {
        if fires(event, data) {
            let p = dispatch::alloc(data.cast(), 20_000, 0, AllocOptions::DEFAULT);
            assert!(!p.is_null());
            p.write_bytes(0xAB, 20_000);
        }
    }
    true
}

/// An arena reset, and rewound, from C (a safe Rust `Arena` needs `&mut` to reset, which no
/// callback can share) while its parent's free callback allocates from it: the nested block
/// comes from the arena as the reset (or rewind) left it, and stays whole.
#[test]
fn an_arena_used_by_its_parents_free_callback() {
    // SAFETY: the built-in allocator outlives the arena; every block is the arena's, dropped
    // with it at the end.
    unsafe {
        let a = arena::create(goo_memory_core::builtin(), 1024, 0).as_ptr();
        for _ in 0..4 {
            // More chunks than the reset keeps.
            assert!(!dispatch::alloc(a, 3_000, 0, AllocOptions::DEFAULT).is_null());
        }
        // The callback's data, the arena, outlives the registration (removed below).
        let id = callbacks::add(EVENT_FREE, use_raw_arena, a.cast());
        arm(a.cast());
        assert!(arena::reset_raw(a));
        assert!(!armed(), "the callback ran");
        arena::check_raw(a).expect("after a reset with a nested allocation");
        let mark = arena::mark_raw(a).unwrap();
        assert!(!dispatch::alloc(a, 50_000, 0, AllocOptions::DEFAULT).is_null()); // a chunk the rewind gives back
        arm(a.cast());
        assert_eq!(arena::rewind_raw(a, &mark), Ok(()));
        assert!(!armed(), "the callback ran");
        assert!(callbacks::remove(id));
        arena::check_raw(a).expect("after a rewind with a nested allocation");
        let block = dispatch::alloc(a, 100, 0, AllocOptions::DEFAULT);
        assert!(!block.is_null());
        goo_memory_core::managed_destroy(a);
    }
}

/// Takes objects from the pool `data` points to: more than it has free, so it grows too.
unsafe extern "C" fn use_pool(event: *const MemoryEvent, data: *mut c_void) -> bool {
    // SAFETY: a callback's event; `data` is the test's pool, alive while it is registered.
    unsafe {
        if fires(event, data) {
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
    let data = (&raw const pool).cast_mut().cast();
    // SAFETY: the callback may run on any thread with any event while registered; its data
    // outlives the registration (removed below).
    let id = unsafe { callbacks::add(EVENT_ALLOC, use_pool, data) };
    arm(data);
    objects.push(pool.alloc().unwrap()); // a new block: the parent is asked
    assert!(callbacks::remove(id));
    assert!(!armed(), "the callback ran");
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
