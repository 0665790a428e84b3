//! `include/goo/runtime/stats.h`: thin shims over `goo_memory_core::policy::{report, callbacks}`.

use core::ffi::{c_char, c_int, c_void};

use goo_memory_core::policy::callbacks::{self, CallbackFn, FaultInjector, FaultSpec};
use goo_memory_core::report::{self, ExhaustiveResult, Report, ReportFormat};

use goo_memory_core::{is_managed, GooAllocator};

use crate::boundary::guard;

/// The report in the format a C caller named, or None (with a message) for an unknown one.
fn render(function: &str, format: u32) -> Option<String> {
    match ReportFormat::from_raw(format) {
        // SAFETY: the header's contract: a single-owner allocator is reported from its own
        // thread, or while its thread does not use it.
        Some(format) => Some(unsafe { Report::collect() }.render(format)),
        None => {
            eprintln!(
                "goo-memory: {function} refused: unknown report format {format} (GOO_REPORT_TEXT or GOO_REPORT_JSON)"
            );
            None
        }
    }
}

/// # Safety
/// `name` must be null or a NUL-terminated string; `allocator` must stay valid while named (for
/// an allocator written in C).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn goo_allocator_set_name(allocator: *mut GooAllocator, name: *const c_char) -> bool {
    if allocator.is_null() {
        return false;
    }
    guard(false, || {
        // SAFETY: null or NUL-terminated, per the contract.
        let name = unsafe { crate::memory::optional_name(name) };
        // SAFETY: valid while named, per the contract.
        unsafe { report::set_name(allocator, name.as_deref()) };
        true
    })
}

/// # Safety
/// `out` must be a valid `FILE*` open for writing.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn goo_memory_stats_report(out: *mut libc::FILE, format: u32) -> usize {
    if out.is_null() {
        return 0;
    }
    guard(0, || {
        let Some(text) = render("goo_memory_stats_report", format) else { return 0 };
        // SAFETY: `out` is a valid stream; the buffer is initialised.
        unsafe { libc::fwrite(text.as_ptr().cast(), 1, text.len(), out) }
    })
}

/// # Safety
/// `buffer` must be valid for `size` bytes (or `size` 0).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn goo_memory_stats_report_buffer(
    buffer: *mut c_char,
    size: usize,
    format: u32,
) -> usize {
    guard(0, || {
        let text = render("goo_memory_stats_report_buffer", format);
        // SAFETY: per the contract (an unknown format leaves the empty string).
        unsafe { crate::memory::copy_to_c_buffer(text.as_deref().unwrap_or(""), buffer, size) };
        text.map_or(0, |t| t.len())
    })
}

/// # Safety
/// `allocator` must be null or valid; `live`/`total` null or valid for 16 entries.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn goo_allocator_size_classes(
    allocator: *mut GooAllocator,
    live: *mut usize,
    total: *mut usize,
) -> bool {
    // SAFETY: per the contract.
    guard(false, || unsafe {
        if allocator.is_null() || !is_managed(allocator) {
            return false;
        }
        let Some(h) =
            goo_memory_core::policy::front::histogram(goo_memory_core::dispatch::resolve(allocator))
        else {
            return false;
        };
        if !live.is_null() {
            core::ptr::copy_nonoverlapping(h.live.as_ptr(), live, h.live.len());
        }
        if !total.is_null() {
            core::ptr::copy_nonoverlapping(h.total.as_ptr(), total, h.total.len());
        }
        true
    })
}

/// # Safety
/// As [`callbacks::add`]: the callback may be called with `user_data` from any thread until it
/// is removed.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn goo_memory_add_callback(
    events_mask: u32,
    f: Option<CallbackFn>,
    user_data: *mut c_void,
) -> u64 {
    let Some(f) = f else { return 0 };
    // SAFETY: forwarded contract.
    guard(0, || unsafe { callbacks::add(events_mask, f, user_data) })
}

#[unsafe(no_mangle)]
pub extern "C" fn goo_memory_remove_callback(id: u64) -> bool {
    guard(false, || callbacks::remove_raw(id))
}

/// # Safety
/// `spec` must be null or valid for reads.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn goo_memory_inject_faults(spec: *const FaultSpec) -> u64 {
    if spec.is_null() {
        return 0;
    }
    // SAFETY: per the contract.
    let spec = unsafe { *spec };
    guard(0, || FaultInjector::install(spec).map_or(0, FaultInjector::into_raw))
}

/// `int (*GooExhaustiveFn)(void* ctx)`.
pub type ExhaustiveFn = unsafe extern "C" fn(ctx: *mut c_void) -> c_int;

/// # Safety
/// `f` must be callable with `ctx`; `result` null or valid for writes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn goo_memory_check_all_allocation_failures(
    f: Option<ExhaustiveFn>,
    ctx: *mut c_void,
    result: *mut ExhaustiveResult,
) -> bool {
    let Some(f) = f else { return false };
    guard(false, || {
        // SAFETY: per the contract.
        let r = report::check_all_allocation_failures(&mut || unsafe { f(ctx) });
        if !result.is_null() {
            // SAFETY: per the contract.
            unsafe { result.write(r) };
        }
        r.leaks == 0 && r.crashes == 0
    })
}
