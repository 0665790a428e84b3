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

// ---- Allocation and free: the front door's call-free fast path runs unguarded ----
//
// `front::alloc_fast` / `front::free_fast` call nothing that can unwind (nothing but C), so
// they need no guard; everything else runs in a guarded function of its own, reached with a
// tail call. The entry points then need no stack frame on the fast path (a guard around the
// whole call would make every inner call an `invoke` with a landing pad, and so a frame).

use core::ffi::c_void;

use goo_memory_core::policy::callbacks::{EVENT_ALLOC, EVENT_FREE};
use goo_memory_core::policy::front::{self, Fast};
use goo_memory_core::{resolve_align, AllocOptions, GooAllocator};

/// `front::alloc`, with the part that may call out guarded.
///
/// # Safety
/// As for `front::alloc`.
#[inline(always)]
pub(crate) unsafe fn alloc(
    allocator: *mut GooAllocator,
    size: usize,
    align: usize,
    options: AllocOptions,
) -> *mut c_void {
    // SAFETY: forwarded contract.
    unsafe {
        match front::alloc_fast(allocator, size, align, options) {
            Fast::Done(block) => block.cast(),
            Fast::Observe(a) if align == 0 => observed_alloc_plain(a, size),
            Fast::Observe(a) => observed_alloc(a, size, align, options),
            // Natural alignment, no options (every `goo_memory_alloc*_with`): a copy made for it.
            Fast::Scope(scope) if align == 0 && options.0 == 0 => scope_alloc_plain(scope, size),
            Fast::Scope(scope) => scope_alloc(scope, size, align, options),
            Fast::Slow(a) => alloc_rest(a, size, align, options),
        }
    }
}

/// A scope's call-free path (`front::scoped_alloc_fast`), else the guarded rest: out of the
/// entry points (its frame is its own) and reached with a tail call.
#[inline(never)]
unsafe extern "C" fn scope_alloc(
    scope: *mut GooAllocator,
    size: usize,
    align: usize,
    options: AllocOptions,
) -> *mut c_void {
    debug_assert_eq!(options.0, 0, "`alloc_fast` sends only plain requests to a scope");
    // SAFETY: `alloc_fast` found `scope` to be the scope the request names.
    let block = unsafe { front::scoped_alloc_inline(scope, size, align) };
    if !block.is_null() {
        return block.cast();
    }
    // SAFETY: forwarded contract.
    unsafe { scope_alloc_rest(scope, size, align) }
}

/// An allocation while callbacks only observe: `front::observed_alloc_leaf`, then the report
/// (a tail call: this function calls nothing itself, so it has no frame), else the guarded slow
/// path. Unguarded: the call-free path calls nothing but the callbacks, which are `extern "C"`
/// and so cannot unwind (a Rust callback that panics aborts).
#[inline(never)]
unsafe extern "C" fn observed_alloc(
    a: *mut GooAllocator,
    size: usize,
    align: usize,
    options: AllocOptions,
) -> *mut c_void {
    // SAFETY: forwarded contract.
    unsafe { observed_alloc_inline(a, size, align, options) }
}

/// [`observed_alloc`] at natural alignment with no options (every `goo_memory_alloc*`), a copy
/// made for it.
#[inline(never)]
unsafe extern "C" fn observed_alloc_plain(a: *mut GooAllocator, size: usize) -> *mut c_void {
    // SAFETY: forwarded contract.
    unsafe { observed_alloc_inline(a, size, 0, AllocOptions::DEFAULT) }
}

/// See [`observed_alloc`].
#[inline(always)]
unsafe fn observed_alloc_inline(
    a: *mut GooAllocator,
    size: usize,
    align: usize,
    options: AllocOptions,
) -> *mut c_void {
    // SAFETY: forwarded contract.
    let block = unsafe { front::observed_alloc_leaf(a, size, align) };
    if !block.is_null() {
        return report_alloc(a, size, align, block.cast());
    }
    // SAFETY: forwarded contract.
    unsafe { alloc_rest(a, size, align, options) }
}

/// `front::report` in the one frame of an observed allocation; returns `block` (last, so
/// that the arguments the caller received stay in their registers).
#[inline(never)]
extern "C" fn report_alloc(
    a: *mut GooAllocator,
    size: usize,
    align: usize,
    block: *mut c_void,
) -> *mut c_void {
    front::report(EVENT_ALLOC, a, block.cast(), size, align);
    block
}

/// A free while callbacks only observe: `front::observed_free_leaf` then the report (a tail
/// call, as in [`observed_alloc`]); a free that calls out (a full cache, an allocator's own
/// free function) goes to [`observed_free_calling`]. Unguarded, as [`observed_alloc`].
#[inline(never)]
unsafe extern "C" fn observed_free(a: *mut GooAllocator, ptr: *mut c_void, size: usize, align: usize) {
    // SAFETY: forwarded contract.
    unsafe { observed_free_inline(a, ptr, size, align) }
}

/// [`observed_free`] at natural alignment (every `goo_memory_free*`), a copy made for it.
#[inline(never)]
unsafe extern "C" fn observed_free_plain(a: *mut GooAllocator, ptr: *mut c_void, size: usize) {
    // SAFETY: forwarded contract.
    unsafe { observed_free_inline(a, ptr, size, 0) }
}

/// See [`observed_free`].
#[inline(always)]
unsafe fn observed_free_inline(a: *mut GooAllocator, ptr: *mut c_void, size: usize, align: usize) {
    // SAFETY: forwarded contract.
    unsafe {
        if front::observed_free_leaf(a, ptr.cast(), size, align) {
            report_free(a, ptr, size, resolve_align(size, align))
        } else {
            observed_free_calling(a, ptr, size, align)
        }
    }
}

/// `front::report` in the one frame of an observed free (`align` resolved).
#[inline(never)]
extern "C" fn report_free(a: *mut GooAllocator, ptr: *mut c_void, size: usize, align: usize) {
    front::report(EVENT_FREE, a, ptr.cast(), size, align);
}

/// The rest of [`observed_free`]: `front::observed_free_fast`, else the guarded slow path.
#[inline(never)]
unsafe extern "C" fn observed_free_calling(
    a: *mut GooAllocator,
    ptr: *mut c_void,
    size: usize,
    align: usize,
) {
    // SAFETY: forwarded contract.
    unsafe {
        if !front::observed_free_fast(a, ptr.cast(), size, align) {
            free_rest(a, ptr, size, align)
        }
    }
}

/// [`scope_alloc`] at natural alignment with no options, specialised for them.
#[inline(never)]
unsafe extern "C" fn scope_alloc_plain(scope: *mut GooAllocator, size: usize) -> *mut c_void {
    // SAFETY: `alloc_fast` found `scope` to be the scope the request names.
    let block = unsafe { front::scoped_alloc_inline(scope, size, 0) };
    if !block.is_null() {
        return block.cast();
    }
    // SAFETY: forwarded contract.
    unsafe { scope_alloc_rest(scope, size, 0) }
}

/// `front::scoped_alloc_rest` behind the guard (see [`alloc_rest`]).
#[inline(never)]
unsafe extern "C" fn scope_alloc_rest(scope: *mut GooAllocator, size: usize, align: usize) -> *mut c_void {
    // SAFETY: forwarded contract.
    guard(core::ptr::null_mut(), || unsafe { front::scoped_alloc_rest(scope, size, align).cast() })
}

/// `front::alloc_slow` behind the guard; `extern "C"` so that calling it cannot unwind (and can
/// be a tail call).
#[inline(never)]
unsafe extern "C" fn alloc_rest(
    allocator: *mut GooAllocator,
    size: usize,
    align: usize,
    options: AllocOptions,
) -> *mut c_void {
    // SAFETY: forwarded contract.
    guard(core::ptr::null_mut(), || unsafe { front::alloc_slow(allocator, size, align, options).cast() })
}

/// `front::free`, with the part that may call out guarded.
///
/// # Safety
/// As for `front::free`.
#[inline(always)]
pub(crate) unsafe fn free(allocator: *mut GooAllocator, ptr: *mut c_void, size: usize, align: usize) {
    // SAFETY: forwarded contract.
    unsafe {
        match front::free_fast(allocator, ptr.cast(), size, align) {
            Fast::Done(()) => {}
            Fast::Observe(a) if align == 0 => observed_free_plain(a, ptr, size),
            Fast::Observe(a) => observed_free(a, ptr, size, align),
            Fast::Scope(scope) => scope_free(scope, ptr, size, align),
            Fast::Slow(a) => free_rest(a, ptr, size, align),
        }
    }
}

/// A scope's call-free free (`front::scoped_free_fast`), else the guarded rest (see
/// [`scope_alloc`]).
#[inline(never)]
unsafe extern "C" fn scope_free(scope: *mut GooAllocator, ptr: *mut c_void, size: usize, align: usize) {
    // SAFETY: `free_fast` found `scope` to be the scope the call names; forwarded contract.
    unsafe {
        if !front::scoped_free_inline(scope, ptr.cast(), size) {
            free_rest(scope, ptr, size, align)
        }
    }
}

/// `front::free_slow` behind the guard (see [`alloc_rest`]).
#[inline(never)]
unsafe extern "C" fn free_rest(allocator: *mut GooAllocator, ptr: *mut c_void, size: usize, align: usize) {
    // SAFETY: forwarded contract.
    guard((), || unsafe { front::free_slow(allocator, ptr.cast(), size, align) })
}
