//! `include/goo/runtime/scoped.h`: thin shims over `goo_memory_core::{scoped, temp}`.

use core::ffi::c_void;
use core::ptr;

use goo_memory_core::arena::Mark;
use goo_memory_core::dispatch;
use goo_memory_core::{scoped, temp, AllocOptions, GooAllocator};

use crate::boundary::{guard, guard_at};
use crate::trampoline::return_address_trampoline;

#[unsafe(no_mangle)]
pub extern "C" fn goo_scope_begin() -> *mut GooAllocator {
    guard(ptr::null_mut(), || scoped::begin().as_ptr())
}

/// # Safety
/// `scope` must be null or a valid allocator.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn goo_scope_end(scope: *mut GooAllocator) -> bool {
    // SAFETY: forwarded contract.
    guard(false, || match unsafe { scoped::end(scope) } {
        Ok(_) => true,
        Err(e) => {
            eprintln!("goo-memory: goo_scope_end refused: {e}");
            false
        }
    })
}

/// # Safety
/// `parent` must be null or a valid allocator that outlives the scope.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn goo_scoped_allocator_create(parent: *mut GooAllocator) -> *mut GooAllocator {
    // SAFETY: forwarded contract.
    guard(ptr::null_mut(), || unsafe { scoped::create(dispatch::resolve(parent)).as_ptr() })
}

/// # Safety
/// `scope` must be null or a valid allocator.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn goo_scope_live_count(scope: *mut GooAllocator) -> usize {
    // SAFETY: forwarded contract.
    guard(0, || unsafe { scoped::from_raw(scope) }.map_or(0, |s| s.live().0))
}

/// # Safety
/// `scope` must be null or a valid allocator.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn goo_scope_live_bytes(scope: *mut GooAllocator) -> usize {
    // SAFETY: forwarded contract.
    guard(0, || unsafe { scoped::from_raw(scope) }.map_or(0, |s| s.live().1))
}

/// # Safety
/// `scope` must be null or a valid allocator.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn goo_scope_set_leak_report(scope: *mut GooAllocator, on: bool) {
    guard((), || {
        // SAFETY: forwarded contract.
        if let Some(s) = unsafe { scoped::from_raw(scope) } {
            s.set_report(on);
        }
    })
}

/// # Safety
/// `scope` must be null or point to null or to a valid allocator.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn goo_scope_cleanup(scope: *mut *mut GooAllocator) {
    if scope.is_null() {
        return;
    }
    // SAFETY: per the contract.
    unsafe {
        if !(*scope).is_null() {
            goo_scope_end(*scope);
            *scope = ptr::null_mut();
        }
    }
}

return_address_trampoline! {
    #[unsafe(no_mangle)]
    pub extern "C" fn goo_temp_alloc(size: usize) -> *mut c_void => goo_temp_alloc_body(caller) {
        // SAFETY: the temporary arena of this thread (or null: the front door then uses the
        // current allocator's path for TEMP, which routes again).
        guard_at(caller, ptr::null_mut(), || unsafe {
            dispatch::alloc(temp::allocator(), size, 0, AllocOptions::DEFAULT).cast()
        })
    }
}

#[unsafe(no_mangle)]
pub extern "C" fn goo_temp_reset() {
    guard((), || {
        if let Err(e) = temp::reset() {
            eprintln!("goo-memory: goo_temp_reset refused: {e}");
        }
    })
}

#[unsafe(no_mangle)]
pub extern "C" fn goo_temp_mark() -> Mark {
    guard(Mark::INVALID, temp::mark)
}

#[unsafe(no_mangle)]
pub extern "C" fn goo_temp_rewind(mark: Mark) -> bool {
    guard(false, || match temp::rewind(&mark) {
        Ok(()) => true,
        Err(e) => {
            eprintln!("goo-memory: goo_temp_rewind refused: {e}");
            false
        }
    })
}

#[unsafe(no_mangle)]
pub extern "C" fn goo_temp_allocator() -> *mut GooAllocator {
    guard(ptr::null_mut(), temp::allocator)
}
