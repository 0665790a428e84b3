//! `include/goo_memory.h`: the unsized legacy API. Thin shims over the core's `legacy` module.

use core::ffi::c_void;
use core::ptr;

use goo_memory_core::legacy;

use crate::boundary::guard;

#[unsafe(no_mangle)]
pub extern "C" fn goo_runtime_alloc(size: usize) -> *mut c_void {
    guard(ptr::null_mut(), || legacy::alloc(size).cast())
}

/// # Safety
/// `ptr` must be null or a live legacy block.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn goo_runtime_realloc(ptr: *mut c_void, new_size: usize) -> *mut c_void {
    // SAFETY: forwarded contract.
    guard(ptr::null_mut(), || unsafe { legacy::realloc(ptr.cast(), new_size).cast() })
}

/// # Safety
/// `ptr` must be null or a live legacy block.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn goo_runtime_free(ptr: *mut c_void) {
    // SAFETY: forwarded contract.
    guard((), || unsafe { legacy::free(ptr.cast()) })
}

#[unsafe(no_mangle)]
pub extern "C" fn goo_alloc(size: usize) -> *mut c_void {
    goo_runtime_alloc(size)
}

/// # Safety
/// As for [`goo_runtime_realloc`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn goo_realloc(ptr: *mut c_void, size: usize) -> *mut c_void {
    // SAFETY: forwarded contract.
    unsafe { goo_runtime_realloc(ptr, size) }
}

/// # Safety
/// As for [`goo_runtime_free`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn goo_free(ptr: *mut c_void) {
    // SAFETY: forwarded contract.
    unsafe { goo_runtime_free(ptr) }
}
