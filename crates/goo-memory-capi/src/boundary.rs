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

use goo_memory_core::debug::{with_caller, with_return_address};
use goo_memory_core::dispatch::{self, SlowPath};
use goo_memory_core::{AllocOptions, GooAllocator};

use crate::trampoline::return_address_trampoline;

/// Runs `body` under [`guard`], with `caller` (the program's return address, 0 = not known) as
/// the site of its requests to a debug allocator.
#[inline(always)]
pub(crate) fn guard_at<T>(caller: usize, on_panic: T, body: impl FnOnce() -> T) -> T {
    guard(on_panic, || with_caller(caller, body))
}

/// The dispatch's slow paths behind the guard.
#[derive(Clone, Copy)]
pub(crate) struct Guarded;

impl SlowPath for Guarded {
    #[inline(always)]
    unsafe fn alloc_slow(a: *mut GooAllocator, size: usize, align: usize, options: AllocOptions) -> *mut u8 {
        // SAFETY: forwarded contract.
        unsafe { alloc_slow(a, size, align, options) }
    }

    #[inline(always)]
    unsafe fn alloc_uncounted(a: *mut GooAllocator, block: *mut u8, size: usize, align: usize) -> *mut u8 {
        // SAFETY: forwarded contract.
        unsafe { alloc_uncounted(a, block, size, align) }
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

return_address_trampoline! {
    /// `dispatch::alloc_slow` behind the guard; `extern "C"` so that calling it cannot unwind
    /// (and can be a tail call with every argument in a register). Its return address is the
    /// program's when the entry point came by a tail call, the site a debug allocator names.
    unsafe extern "C" fn alloc_slow(a: *mut GooAllocator, size: usize, align: usize, options: AllocOptions) -> *mut u8
        => alloc_slow_body(ret)
    {
        guard(core::ptr::null_mut(), || {
            // SAFETY: forwarded contract.
            with_return_address(ret, || unsafe { dispatch::alloc_slow(a, size, align, options) })
        })
    }
}

/// `dispatch::alloc_uncounted` behind the guard (see [`alloc_slow`]). It counts the block, or
/// gives it back to its own allocator and takes the slow path: no debug allocator is involved
/// (only library allocators have a call-free level).
#[inline(never)]
unsafe extern "C" fn alloc_uncounted(
    a: *mut GooAllocator,
    block: *mut u8,
    size: usize,
    align: usize,
) -> *mut u8 {
    // SAFETY: forwarded contract.
    guard(core::ptr::null_mut(), || unsafe { dispatch::alloc_uncounted(a, block, size, align) })
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

return_address_trampoline! {
    /// `dispatch::free_slow` behind the guard (see [`alloc_slow`]).
    unsafe extern "C" fn free_slow(a: *mut GooAllocator, ptr: *mut u8, size: usize, align: usize) => free_slow_body(ret) {
        // SAFETY: forwarded contract.
        guard((), || with_return_address(ret, || unsafe { dispatch::free_slow(a, ptr, size, align) }))
    }
}

/// The functions between an entry point and the program's code that are not entry points
/// themselves: the guarded slow paths, which an entry point may reach by a tail call (its own
/// frame gone), their bodies, and the dispatch's out-of-line fast paths. The debug allocator
/// counts them as entry points (`crate::debug`).
pub(crate) fn inner_functions() -> Vec<(&'static str, usize)> {
    let mut v = vec![
        ("alloc_slow", alloc_slow as *const () as usize),
        ("alloc_slow_body", alloc_slow_body as *const () as usize),
        ("alloc_uncounted", alloc_uncounted as *const () as usize),
        ("free_slow", free_slow as *const () as usize),
        ("free_slow_body", free_slow_body as *const () as usize),
        // Every library allocator's `destroy`, which a program may call through the vtable.
        ("managed_destroy", goo_memory_core::managed_destroy as *const () as usize),
    ];
    v.extend(dispatch::out_of_line_paths::<Guarded>().map(|start| ("out_of_line_path", start)));
    v
}
