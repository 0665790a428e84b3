//! `include/goo_memory.h`: the unsized legacy API. Thin shims over the core's `legacy` module.

use core::ffi::c_void;

use goo_memory_core::legacy;

use crate::boundary::guard_at;
use crate::trampoline::return_address_trampoline;

return_address_trampoline! {
    #[unsafe(no_mangle)]
    pub extern "C" fn goo_runtime_alloc(size: usize) -> *mut c_void => goo_runtime_alloc_body(caller) {
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
