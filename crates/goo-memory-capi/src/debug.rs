//! `include/goo/runtime/debug.h`: thin shims over `goo_memory_core::debug`, and the list of
//! this library's entry points, which the debug allocator uses to find where a request came
//! from (the return address out of the outermost of them).

use core::ffi::{c_char, c_int, c_uint, c_void};
use core::ptr;

use goo_memory_core::debug::{self, Site};
use goo_memory_core::report::ReportFormat;
use goo_memory_core::{dispatch, AllocOptions, GooAllocator};

use crate::boundary::{self, guard};

/// Every function this library exports, by name, with its address: the names are checked
/// against the shared library's exports by a test, so none is forgotten.
macro_rules! entry_points {
    ($($path:path),* $(,)?) => {
        /// The library's exported functions (name, start address), and the dispatch's guarded
        /// slow paths, which an entry point may reach by a tail call (its own frame gone).
        pub fn entry_points() -> Vec<(&'static str, usize)> {
            let mut v = vec![$((stringify!($path).rsplit("::").next().unwrap_or_default(), $path as *const () as usize)),*];
            v.extend(boundary::inner_functions());
            v
        }
    };
}

entry_points!(
    crate::arena::goo_arena_allocator_create,
    crate::arena::goo_arena_allocator_create_ex,
    crate::arena::goo_arena_allocator_create_shared,
    crate::arena::goo_arena_allocator_create_shared_ex,
    crate::arena::goo_arena_allocator_reset,
    crate::arena::goo_arena_allocator_destroy,
    crate::arena::goo_arena_allocator_chunk_count,
    crate::arena::goo_arena_mark,
    crate::arena::goo_arena_rewind,
    crate::debug::goo_debug_allocator_create,
    crate::debug::goo_allocator_is_debug,
    crate::debug::goo_debug_check,
    crate::debug::goo_debug_error_count,
    crate::debug::goo_debug_report,
    crate::debug::goo_debug_report_buffer,
    crate::debug::goo_memory_alloc_at,
    crate::debug::goo_memory_free_at,
    crate::legacy::goo_runtime_alloc,
    crate::legacy::goo_runtime_realloc,
    crate::legacy::goo_runtime_free,
    crate::legacy::goo_alloc,
    crate::legacy::goo_realloc,
    crate::legacy::goo_free,
    crate::memory::goo_memory_init,
    crate::memory::goo_memory_cleanup,
    crate::memory::goo_memory_alloc,
    crate::memory::goo_memory_alloc_zeroed,
    crate::memory::goo_memory_realloc,
    crate::memory::goo_memory_free,
    crate::memory::goo_memory_alloc_aligned,
    crate::memory::goo_memory_free_aligned,
    crate::memory::goo_memory_alloc_with,
    crate::memory::goo_memory_realloc_with,
    crate::memory::goo_memory_free_with,
    crate::memory::goo_memory_alloc_ex,
    crate::memory::goo_memory_realloc_ex,
    crate::memory::goo_memory_free_ex,
    crate::memory::goo_memory_alloc_array,
    crate::memory::goo_system_allocator_create,
    crate::memory::goo_heap_allocator_create,
    crate::memory::goo_heap_refused_count,
    crate::memory::goo_heap_collect,
    crate::memory::goo_allocator_destroy,
    crate::memory::goo_locked_allocator_create,
    crate::memory::goo_locked_allocator_reset,
    crate::memory::goo_allocator_set_limit,
    crate::memory::goo_allocator_get_limit,
    crate::memory::goo_set_default_allocator,
    crate::memory::goo_get_default_allocator,
    crate::memory::goo_set_thread_allocator,
    crate::memory::goo_get_thread_allocator,
    crate::memory::goo_set_out_of_mem_handler,
    crate::memory::goo_memory_set_gc_handler,
    crate::memory::goo_get_alloc_stats,
    crate::memory::goo_memory_reset_stats,
    crate::memory::goo_memory_copy,
    crate::memory::goo_memory_set,
    crate::memory::goo_memory_cleanup_ptr,
    crate::pool::goo_pool_allocator_create,
    crate::pool::goo_pool_allocator_create_ex,
    crate::pool::goo_pool_allocator_create_shared,
    crate::pool::goo_pool_allocator_create_shared_ex,
    crate::pool::goo_pool_allocator_create_opts,
    crate::pool::goo_pool_allocator_reset,
    crate::pool::goo_pool_allocator_destroy,
    crate::pool::goo_pool_allocator_get_stats,
    crate::region::goo_region_allocator_create,
    crate::region::goo_region_allocator_create_ex,
    crate::region::goo_region_create_child,
    crate::region::goo_region_allocator_reset,
    crate::region::goo_region_allocator_destroy,
    crate::region::goo_region_add_cleanup,
    crate::region::goo_region_remove_cleanup,
    crate::region::goo_region_set_name,
    crate::region::goo_region_refused_count,
    crate::region::goo_region_stats,
    crate::region::goo_region_subtree_stats,
    crate::region::goo_region_report,
    crate::scoped::goo_scope_begin,
    crate::scoped::goo_scope_end,
    crate::scoped::goo_scoped_allocator_create,
    crate::scoped::goo_scope_live_count,
    crate::scoped::goo_scope_live_bytes,
    crate::scoped::goo_scope_set_leak_report,
    crate::scoped::goo_scope_cleanup,
    crate::scoped::goo_temp_alloc,
    crate::scoped::goo_temp_reset,
    crate::scoped::goo_temp_mark,
    crate::scoped::goo_temp_rewind,
    crate::scoped::goo_temp_allocator,
    crate::stats::goo_allocator_set_name,
    crate::stats::goo_memory_stats_report,
    crate::stats::goo_memory_stats_report_buffer,
    crate::stats::goo_allocator_size_classes,
    crate::stats::goo_memory_add_callback,
    crate::stats::goo_memory_remove_callback,
    crate::stats::goo_memory_inject_faults,
    crate::stats::goo_memory_check_all_allocation_failures,
);

/// Tells the debug allocator where the library's entry points are (once; cheap after).
/// Registers the entry points when the library is loaded (an ELF constructor), before any
/// request can reach a debug allocator; [`register_entry_points`] is idempotent.
#[used]
#[link_section = ".init_array"]
static REGISTER_AT_LOAD: extern "C" fn() = register_at_load;

extern "C" fn register_at_load() {
    let _ = std::panic::catch_unwind(register_entry_points);
}

pub(crate) fn register_entry_points() {
    static DONE: std::sync::Once = std::sync::Once::new();
    DONE.call_once(|| {
        let starts: Vec<usize> = entry_points().into_iter().map(|(_, start)| start).collect();
        debug::set_entry_points(&starts);
    });
}

/// The debug allocator behind `allocator` (null = current), if it is one.
///
/// # Safety
/// `allocator` must be null or a valid allocator.
unsafe fn debug_of<'a>(allocator: *mut GooAllocator) -> Option<&'a debug::Debug> {
    // SAFETY: forwarded contract; null resolves to the current allocator, valid by the setters'
    // contract.
    unsafe { debug::from_raw(dispatch::resolve(allocator)) }
}

/// A new debug allocator over `parent` (null = the current allocator, fixed now).
///
/// # Safety
/// `parent` must be null or a valid allocator that outlives the debug allocator.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn goo_debug_allocator_create(
    parent: *mut GooAllocator,
    flags: c_uint,
) -> *mut GooAllocator {
    guard(ptr::null_mut(), || {
        register_entry_points();
        // SAFETY: forwarded contract.
        unsafe { debug::create(dispatch::resolve(parent), flags).as_ptr() }
    })
}

/// # Safety
/// `allocator` must be null or a valid allocator.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn goo_allocator_is_debug(allocator: *mut GooAllocator) -> bool {
    // SAFETY: forwarded contract.
    guard(false, || unsafe { debug_of(allocator) }.is_some())
}

/// # Safety
/// `allocator` must be null or a valid allocator.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn goo_debug_check(allocator: *mut GooAllocator) -> usize {
    // SAFETY: forwarded contract.
    guard(0, || unsafe { debug_of(allocator) }.map_or(0, |d| d.check()))
}

/// # Safety
/// `allocator` must be null or a valid allocator.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn goo_debug_error_count(allocator: *mut GooAllocator) -> usize {
    // SAFETY: forwarded contract.
    guard(0, || unsafe { debug_of(allocator) }.map_or(0, |d| d.error_count()))
}

/// The leak report of a debug allocator in the format a C caller named, or None (with a
/// message) for another allocator or an unknown format.
///
/// # Safety
/// `allocator` must be null or a valid allocator.
unsafe fn render(function: &str, allocator: *mut GooAllocator, format: u32) -> Option<String> {
    // SAFETY: forwarded contract.
    let Some(d) = (unsafe { debug_of(allocator) }) else {
        eprintln!("goo-memory: {function} refused: {allocator:p} is not a debug allocator");
        return None;
    };
    match ReportFormat::from_raw(format) {
        Some(ReportFormat::Text) => Some(d.report().to_text()),
        Some(ReportFormat::Json) => Some(d.report().to_json()),
        None => {
            eprintln!(
                "goo-memory: {function} refused: unknown report format {format} (GOO_REPORT_TEXT or GOO_REPORT_JSON)"
            );
            None
        }
    }
}

/// # Safety
/// `allocator` must be null or a valid allocator; `out` null or a `FILE*` open for writing.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn goo_debug_report(
    allocator: *mut GooAllocator,
    out: *mut libc::FILE,
    format: u32,
) -> usize {
    if out.is_null() {
        return 0;
    }
    guard(0, || {
        // SAFETY: forwarded contract.
        let Some(text) = (unsafe { render("goo_debug_report", allocator, format) }) else { return 0 };
        // SAFETY: `out` is a valid stream; the buffer is initialised.
        unsafe { libc::fwrite(text.as_ptr().cast(), 1, text.len(), out) }
    })
}

/// # Safety
/// `allocator` must be null or a valid allocator; `buffer` valid for `size` bytes (or `size` 0).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn goo_debug_report_buffer(
    allocator: *mut GooAllocator,
    buffer: *mut c_char,
    size: usize,
    format: u32,
) -> usize {
    guard(0, || {
        // SAFETY: forwarded contract.
        let text = unsafe { render("goo_debug_report_buffer", allocator, format) };
        // SAFETY: per the contract (a refused report leaves the empty string).
        unsafe { crate::memory::copy_to_c_buffer(text.as_deref().unwrap_or(""), buffer, size) };
        text.map_or(0, |t| t.len())
    })
}

/// The site of a C caller's `__FILE__`/`__LINE__` (a negative line counts as 0).
///
/// # Safety
/// `file` must be null or a string literal (static, never written).
unsafe fn c_site(file: *const c_char, line: c_int) -> Site {
    // SAFETY: forwarded contract.
    unsafe { Site::c_file(file, u32::try_from(line).unwrap_or(0)) }
}

/// # Safety
/// `allocator` must be null or a valid allocator; `file` null or a string literal.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn goo_memory_alloc_at(
    allocator: *mut GooAllocator,
    size: usize,
    file: *const c_char,
    line: c_int,
) -> *mut c_void {
    // SAFETY: forwarded contract. `with_site` runs outside the guard: its frame, then this
    // function's, are the last of the library's on the stack (the debug allocator's trace starts
    // after them).
    debug::with_site(unsafe { c_site(file, line) }, || unsafe {
        boundary::alloc(allocator, size, 0, AllocOptions::DEFAULT)
    })
}

/// # Safety
/// `allocator` must be null or a valid allocator; `ptr` null or a live block of `size` bytes
/// from it; `file` null or a string literal.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn goo_memory_free_at(
    allocator: *mut GooAllocator,
    ptr: *mut c_void,
    size: usize,
    file: *const c_char,
    line: c_int,
) {
    // SAFETY: forwarded contract (see `goo_memory_alloc_at`).
    debug::with_site(unsafe { c_site(file, line) }, || unsafe { boundary::free(allocator, ptr, size, 0) })
}
