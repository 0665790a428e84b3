//! The one place where Rust meets C: every `extern "C"` function runs its body through [`guard`],
//! which catches a panic and turns it into the function's failure value, so no unwinding ever
//! crosses into C.

use std::panic::{catch_unwind, AssertUnwindSafe};

/// Runs `body`; if it panics, reports it on stderr and returns `on_panic`.
#[inline(always)]
pub(crate) fn guard<T>(on_panic: T, body: impl FnOnce() -> T) -> T {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(v) => v,
        Err(_) => {
            report_panic();
            on_panic
        }
    }
}

#[cold]
fn report_panic() {
    // The panic hook already printed the message; say what the C caller gets instead.
    eprintln!("goo-memory: internal panic caught at the C boundary; returning a failure value");
}

// ---- Allocation and free: the call-free level runs unguarded ----
//
// The dispatch's call-free level (`dispatch::alloc_then` / `free_then`) calls nothing that can
// unwind; what it cannot serve goes to `Guarded`'s slow path, the dispatch's own behind the
// guard, reached with a tail call. The entry points then need no stack frame on the fast path
// (a guard around the whole call would make every inner call an `invoke` with a landing pad,
// and so a frame).

use core::ffi::c_void;

use goo_memory_core::dispatch::{self, SlowPath};
use goo_memory_core::{AllocOptions, GooAllocator};

/// The dispatch's slow paths behind the guard.
struct Guarded;

impl SlowPath for Guarded {
    #[inline(always)]
    unsafe fn alloc_slow(a: *mut GooAllocator, size: usize, align: usize, options: AllocOptions) -> *mut u8 {
        // SAFETY: forwarded contract.
        unsafe { alloc_slow(a, size, align, options) }
    }

    #[inline(always)]
    unsafe fn alloc_over_limit(a: *mut GooAllocator, block: *mut u8, size: usize, align: usize) -> *mut u8 {
        // SAFETY: forwarded contract.
        unsafe { alloc_over_limit(a, block, size, align) }
    }

    #[inline(always)]
    unsafe fn free_slow(a: *mut GooAllocator, ptr: *mut u8, size: usize, align: usize) {
        // SAFETY: forwarded contract.
        unsafe { free_slow(a, ptr, size, align) }
    }
}

/// `dispatch::alloc` for the C entry points.
///
/// # Safety
/// As for `dispatch::alloc`.
#[inline(always)]
pub(crate) unsafe fn alloc(
    allocator: *mut GooAllocator,
    size: usize,
    align: usize,
    options: AllocOptions,
) -> *mut c_void {
    // SAFETY: forwarded contract.
    unsafe { dispatch::alloc_then::<Guarded>(allocator, size, align, options).cast() }
}

/// `dispatch::alloc_slow` behind the guard; `extern "C"` so that calling it cannot unwind (and
/// can be a tail call with every argument in a register).
#[inline(never)]
unsafe extern "C" fn alloc_slow(
    a: *mut GooAllocator,
    size: usize,
    align: usize,
    options: AllocOptions,
) -> *mut u8 {
    // SAFETY: forwarded contract.
    guard(core::ptr::null_mut(), || unsafe { dispatch::alloc_slow(a, size, align, options) })
}

/// `dispatch::alloc_over_limit` behind the guard (see [`alloc_slow`]).
#[inline(never)]
unsafe extern "C" fn alloc_over_limit(
    a: *mut GooAllocator,
    block: *mut u8,
    size: usize,
    align: usize,
) -> *mut u8 {
    // SAFETY: forwarded contract.
    guard(core::ptr::null_mut(), || unsafe { dispatch::alloc_over_limit(a, block, size, align) })
}

/// `dispatch::free` for the C entry points.
///
/// # Safety
/// As for `dispatch::free`.
#[inline(always)]
pub(crate) unsafe fn free(allocator: *mut GooAllocator, ptr: *mut c_void, size: usize, align: usize) {
    // SAFETY: forwarded contract.
    unsafe { dispatch::free_then::<Guarded>(allocator, ptr.cast(), size, align) }
}

/// `dispatch::free_slow` behind the guard (see [`alloc_slow`]).
#[inline(never)]
unsafe extern "C" fn free_slow(a: *mut GooAllocator, ptr: *mut u8, size: usize, align: usize) {
    // SAFETY: forwarded contract.
    guard((), || unsafe { dispatch::free_slow(a, ptr, size, align) })
}

/// The guarded slow paths' names and start addresses: an entry point that leaves by a tail call
/// to one of them has no frame of its own left, so the debug allocator counts them as entry
/// points too (`crate::debug`).
pub(crate) fn slow_paths() -> [(&'static str, usize); 3] {
    [
        ("alloc_slow", alloc_slow as *const () as usize),
        ("alloc_over_limit", alloc_over_limit as *const () as usize),
        ("free_slow", free_slow as *const () as usize),
    ]
}
