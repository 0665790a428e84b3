//! `include/goo/runtime/arena.h`: thin shims over `goo_memory_core::arena`.

use core::ptr;

use goo_memory_core::arena::{self, Mark};
use goo_memory_core::{dispatch, shared_arena, GooAllocator};

use crate::boundary::{guard, guard_at};
use crate::trampoline::return_address_trampoline;

/// An arena over the built-in default allocator.
#[unsafe(no_mangle)]
pub extern "C" fn goo_arena_allocator_create(initial_size: usize) -> *mut GooAllocator {
    // SAFETY: a null parent means the current allocator (valid by the setters' contract).
    guard(ptr::null_mut(), || unsafe { arena::create(goo_memory_core::builtin(), initial_size, 0).as_ptr() })
}

/// # Safety
/// `parent` must be null or a valid allocator that outlives the arena.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn goo_arena_allocator_create_ex(
    parent: *mut GooAllocator,
    initial_size: usize,
    max_bytes: usize,
) -> *mut GooAllocator {
    // SAFETY: forwarded contract.
    guard(ptr::null_mut(), || unsafe {
        arena::create(dispatch::resolve(parent), initial_size, max_bytes).as_ptr()
    })
}

/// A shared arena over the built-in default allocator.
#[unsafe(no_mangle)]
pub extern "C" fn goo_arena_allocator_create_shared(initial_size: usize) -> *mut GooAllocator {
    // SAFETY: the built-in allocator is a static, usable from any thread.
    guard(ptr::null_mut(), || unsafe {
        shared_arena::create(goo_memory_core::builtin(), initial_size, 0).as_ptr()
    })
}

/// # Safety
/// `parent` must be null or a valid allocator that outlives the arena, usable from any thread
/// one at a time.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn goo_arena_allocator_create_shared_ex(
    parent: *mut GooAllocator,
    initial_size: usize,
    max_bytes: usize,
) -> *mut GooAllocator {
    // SAFETY: forwarded contract.
    guard(ptr::null_mut(), || unsafe {
        shared_arena::create(dispatch::resolve(parent), initial_size, max_bytes).as_ptr()
    })
}

/// # Safety
/// `allocator` must be null or valid; no block of the arena may be used afterwards.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn goo_arena_allocator_reset(allocator: *mut GooAllocator) -> bool {
    // SAFETY: forwarded contract.
    guard(false, || unsafe { arena::reset_raw(allocator) || shared_arena::reset_raw(allocator) })
}

return_address_trampoline! {
    /// # Safety
    /// `allocator` must be null or valid, and not used afterwards if it is an arena.
    #[unsafe(no_mangle)]
    pub unsafe extern "C" fn goo_arena_allocator_destroy(allocator: *mut GooAllocator)
        => goo_arena_allocator_destroy_body(caller)
    {
        // SAFETY: forwarded contract; only arenas are destroyed. The caller is the site of the
        // chunks' frees to a debug parent.
        guard_at(caller, (), || unsafe {
            if arena::from_raw(allocator).is_some() || shared_arena::from_raw(allocator).is_some() {
                goo_memory_core::managed_destroy(allocator);
            }
        })
    }
}

/// # Safety
/// `allocator` must be null or valid.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn goo_arena_allocator_chunk_count(allocator: *mut GooAllocator) -> usize {
    // SAFETY: forwarded contract.
    guard(0, || unsafe {
        match arena::from_raw(allocator) {
            Some(a) => a.chunk_count(),
            None => shared_arena::from_raw(allocator).map_or(0, |a| a.chunk_count()),
        }
    })
}

/// # Safety
/// `allocator` must be null or valid.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn goo_arena_mark(allocator: *mut GooAllocator) -> Mark {
    // SAFETY: forwarded contract.
    guard(Mark::INVALID, || unsafe {
        match arena::mark_raw(allocator) {
            Some(mark) => mark,
            // A busy shared arena has said why on stderr.
            None => shared_arena::mark_raw(allocator).and_then(Result::ok).unwrap_or(Mark::INVALID),
        }
    })
}

/// # Safety
/// `allocator` must be null or valid; blocks allocated after the mark are not used afterwards.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn goo_arena_rewind(allocator: *mut GooAllocator, mark: Mark) -> bool {
    guard(false, || {
        // SAFETY: forwarded contract.
        let rewound = unsafe {
            if shared_arena::from_raw(allocator).is_some() {
                shared_arena::rewind_raw(allocator, &mark)
            } else {
                arena::rewind_raw(allocator, &mark)
            }
        };
        match rewound {
            Ok(()) => true,
            Err(e) => {
                eprintln!("goo-memory: goo_arena_rewind refused: {e}");
                false
            }
        }
    })
}
