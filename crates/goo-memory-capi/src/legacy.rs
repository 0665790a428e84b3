//! `include/goo_memory.h`: the unsized legacy API. Thin shims over the core's `legacy` module.

use core::ffi::c_void;

use goo_memory_core::debug;
use goo_memory_core::legacy::{self, FastAlloc};

use crate::boundary::{guard, guard_at, Guarded};
use crate::trampoline::return_address_trampoline;

// The call-free level first (`legacy::try_alloc` / `try_free`: a small block of an allocator
// with one, unguarded as `boundary::alloc` is), while no debug allocator is alive: one is never
// reached from there, and the guarded path names the caller's site to those alive.

return_address_trampoline! {
    #[unsafe(no_mangle)]
    pub extern "C" fn goo_runtime_alloc(size: usize) -> *mut c_void => goo_runtime_alloc_body(caller) {
        if !debug::debug_allocators_alive() {
            // SAFETY: the current allocator is valid (setters' contract).
            match unsafe { legacy::try_alloc::<Guarded>(size) } {
                FastAlloc::Done(block) => return block.cast(),
                FastAlloc::OnPage(block) => {
                    return guard(core::ptr::null_mut(), || legacy::finish_on_page(block)).cast();
                }
                FastAlloc::Declined => {}
            }
        }
        guard_at(caller, core::ptr::null_mut(), || legacy::alloc(size).cast())
    }
}

return_address_trampoline! {
    /// # Safety
    /// `ptr` must be null or a live legacy block.
    #[unsafe(no_mangle)]
    pub unsafe extern "C" fn goo_runtime_realloc(ptr: *mut c_void, new_size: usize) -> *mut c_void
        => goo_runtime_realloc_body(caller)
    {
        // SAFETY: forwarded contract.
        guard_at(caller, core::ptr::null_mut(), || unsafe { legacy::realloc(ptr.cast(), new_size).cast() })
    }
}

return_address_trampoline! {
    /// # Safety
    /// `ptr` must be null or a live legacy block.
    #[unsafe(no_mangle)]
    pub unsafe extern "C" fn goo_runtime_free(ptr: *mut c_void) => goo_runtime_free_body(caller) {
        // SAFETY: forwarded contract.
        if !debug::debug_allocators_alive() && unsafe { legacy::try_free::<Guarded>(ptr.cast()) } {
            return;
        }
        // SAFETY: forwarded contract.
        guard_at(caller, (), || unsafe { legacy::free(ptr.cast()) })
    }
}

return_address_trampoline! {
    #[unsafe(no_mangle)]
    pub extern "C" fn goo_alloc(size: usize) -> *mut c_void => goo_alloc_body(caller) {
        // SAFETY: no contract.
        unsafe { goo_runtime_alloc_body(size, caller) }
    }
}

return_address_trampoline! {
    /// # Safety
    /// As for [`goo_runtime_realloc`].
    #[unsafe(no_mangle)]
    pub unsafe extern "C" fn goo_realloc(ptr: *mut c_void, size: usize) -> *mut c_void => goo_realloc_body(caller) {
        // SAFETY: forwarded contract.
        unsafe { goo_runtime_realloc_body(ptr, size, caller) }
    }
}

return_address_trampoline! {
    /// # Safety
    /// As for [`goo_runtime_free`].
    #[unsafe(no_mangle)]
    pub unsafe extern "C" fn goo_free(ptr: *mut c_void) => goo_free_body(caller) {
        // SAFETY: forwarded contract.
        unsafe { goo_runtime_free_body(ptr, caller) }
    }
}
