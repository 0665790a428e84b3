//! `include/goo/runtime/region.h`: thin shims over `goo_memory_core::region`.

use core::ffi::{c_char, c_void};
use core::ptr;

use goo_memory_core::region::{self, CleanupFn, RegionError};
use goo_memory_core::{dispatch, AllocStats, GooAllocator};

use crate::boundary::guard;

/// Reports a refused region call on stderr and returns `fallback`.
fn refused<T>(what: &str, e: RegionError, fallback: T) -> T {
    eprintln!("goo-memory: {what} refused: {e}");
    fallback
}

/// Ends here the panic of a Rust cleanup (`Region::on_cleanup`) that a reset or destroy from C
/// caught (its message was printed when it happened): C cannot unwind.
fn end_cleanup_panic(what: &str) {
    if region::take_cleanup_panic().is_some() {
        eprintln!("goo-memory: {what}: a Rust cleanup panicked; the region operation finished and the panic ends here");
    }
}

#[unsafe(no_mangle)]
pub extern "C" fn goo_region_allocator_create(
    region_size: usize,
    allow_large_allocations: bool,
) -> *mut GooAllocator {
    // SAFETY: the built-in allocator is a static.
    guard(ptr::null_mut(), || unsafe {
        region::create(goo_memory_core::builtin(), region_size, allow_large_allocations).as_ptr()
    })
}

/// # Safety
/// `parent` must be null or a valid allocator that outlives the region tree.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn goo_region_allocator_create_ex(
    parent: *mut GooAllocator,
    region_size: usize,
    allow_large_allocations: bool,
) -> *mut GooAllocator {
    // SAFETY: forwarded contract.
    guard(ptr::null_mut(), || unsafe {
        region::create(dispatch::resolve(parent), region_size, allow_large_allocations).as_ptr()
    })
}

/// # Safety
/// region.h's contract: a region tree belongs to one thread at a time (any pointer that is no
/// live region is refused).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn goo_region_create_child(
    parent: *mut GooAllocator,
    region_size: usize,
) -> *mut GooAllocator {
    // SAFETY: this function's contract.
    guard(ptr::null_mut(), || match unsafe { region::create_child(parent, region_size) } {
        Ok(child) => child.as_ptr(),
        Err(e) => refused("goo_region_create_child", e, ptr::null_mut()),
    })
}

/// # Safety
/// region.h's contract: no block of the region or of its subtree is used afterwards.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn goo_region_allocator_reset(region: *mut GooAllocator) -> bool {
    guard(false, || {
        // SAFETY: region.h's contract: the caller gives up every block of the region and its
        // subtree; a pointer that names no live region is refused.
        let done = unsafe { region::reset(region) };
        end_cleanup_panic("goo_region_allocator_reset");
        done.map_or_else(|e| refused("goo_region_allocator_reset", e, false), |_| true)
    })
}

/// # Safety
/// region.h's contract: nothing uses the region, its subtree or their blocks afterwards.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn goo_region_allocator_destroy(region: *mut GooAllocator) {
    guard((), || {
        // SAFETY: region.h's contract: nothing uses the regions or their blocks afterwards; a
        // pointer that names no live region is refused.
        let done = unsafe { region::destroy(region) };
        end_cleanup_panic("goo_region_allocator_destroy");
        if let Err(e) = done {
            refused("goo_region_allocator_destroy", e, ());
        }
    })
}

/// # Safety
/// region.h's contract: `f(arg)` may run when the region is reset or destroyed.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn goo_region_add_cleanup(
    region: *mut GooAllocator,
    f: Option<CleanupFn>,
    arg: *mut c_void,
) -> u64 {
    let Some(f) = f else { return 0 };
    guard(0, || {
        // SAFETY: region.h's contract: `f(arg)` may run when the region is reset or destroyed.
        unsafe { region::add_cleanup(region, f, arg) }
            .unwrap_or_else(|e| refused("goo_region_add_cleanup", e, 0))
    })
}

/// # Safety
/// region.h's contract: a region tree belongs to one thread at a time (any pointer that is no
/// live region is refused).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn goo_region_remove_cleanup(region: *mut GooAllocator, id: u64) -> bool {
    guard(false, || {
        // SAFETY: this function's contract.
        unsafe { region::remove_cleanup(region, id) }
            .unwrap_or_else(|e| refused("goo_region_remove_cleanup", e, false))
    })
}

/// # Safety
/// `name` must be null or a NUL-terminated string.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn goo_region_set_name(region: *mut GooAllocator, name: *const c_char) -> bool {
    guard(false, || {
        // SAFETY: null or NUL-terminated, per the contract.
        let name = unsafe { crate::memory::optional_name(name) };
        region::set_name(region, name.as_deref())
            .map_or_else(|e| refused("goo_region_set_name", e, false), |_| true)
    })
}

#[unsafe(no_mangle)]
pub extern "C" fn goo_region_refused_count() -> u64 {
    guard(0, region::refused_count)
}

/// # Safety
/// region.h's contract: a region tree belongs to one thread at a time (any pointer that is no
/// live region is refused).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn goo_region_stats(region: *mut GooAllocator) -> AllocStats {
    guard(AllocStats::default(), || {
        // SAFETY: this function's contract.
        unsafe { region::stats(region) }
            .unwrap_or_else(|e| refused("goo_region_stats", e, AllocStats::default()))
    })
}

/// # Safety
/// region.h's contract: a region tree belongs to one thread at a time (any pointer that is no
/// live region is refused).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn goo_region_subtree_stats(region: *mut GooAllocator) -> AllocStats {
    guard(AllocStats::default(), || {
        // SAFETY: this function's contract.
        unsafe { region::subtree_stats(region) }
            .unwrap_or_else(|e| refused("goo_region_subtree_stats", e, AllocStats::default()))
    })
}

/// # Safety
/// `buffer` must be valid for `size` bytes (or `size` 0); region.h's contract for `region` (a
/// region tree belongs to one thread at a time).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn goo_region_report(
    region: *mut GooAllocator,
    buffer: *mut c_char,
    size: usize,
) -> usize {
    guard(0, || {
        // SAFETY: this function's contract.
        let text = unsafe { region::report(region) }
            .unwrap_or_else(|e| refused("goo_region_report", e, String::new()));
        // SAFETY: per the contract (a refused report leaves the empty string).
        unsafe { crate::memory::copy_to_c_buffer(&text, buffer, size) };
        text.len()
    })
}
