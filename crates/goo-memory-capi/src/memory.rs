//! `include/goo/runtime/memory.h`: the modern sized API. Thin shims over the core's front door.

use core::ffi::c_void;
use core::ptr;

use goo_memory_core::dispatch;
use goo_memory_core::policy::front;
use goo_memory_core::{self as core_api, legacy, AllocOptions, AllocStats, GcFn, GooAllocator, OutOfMemFn};

use crate::boundary::{self, guard, guard_at};
use crate::trampoline::return_address_trampoline;

const NULL: *mut c_void = ptr::null_mut();

/// Marks the library initialised; idempotent and optional. Returns true.
#[unsafe(no_mangle)]
pub extern "C" fn goo_memory_init() -> bool {
    guard(false, || {
        core_api::init();
        true
    })
}

/// Reports live allocations of tracked allocators to stderr and restores the initial state.
#[unsafe(no_mangle)]
pub extern "C" fn goo_memory_cleanup() {
    guard((), || {
        // SAFETY: memory.h's contract for goo_memory_cleanup: the debug allocator made for
        // GOO_MEMORY_DEBUG is destroyed, and the caller uses it no more.
        unsafe { core_api::cleanup() };
    })
}

/// # Safety
/// The current allocator must be valid (setters' contract).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn goo_memory_alloc(size: usize) -> *mut c_void {
    // SAFETY: the current allocator is valid.
    unsafe { boundary::alloc(ptr::null_mut(), size, 0, AllocOptions::DEFAULT) }
}

/// # Safety
/// As for [`goo_memory_alloc`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn goo_memory_alloc_zeroed(size: usize) -> *mut c_void {
    // SAFETY: the current allocator is valid.
    unsafe { boundary::alloc(ptr::null_mut(), size, 0, AllocOptions::ZERO) }
}

return_address_trampoline! {
    /// # Safety
    /// `ptr` must be null or a live block of `old_size` bytes from the current allocator.
    #[unsafe(no_mangle)]
    pub unsafe extern "C" fn goo_memory_realloc(ptr: *mut c_void, old_size: usize, new_size: usize) -> *mut c_void
        => goo_memory_realloc_body(caller)
    {
        // SAFETY: forwarded contract.
        guard_at(caller, NULL, || unsafe {
            dispatch::realloc(ptr::null_mut(), ptr.cast(), old_size, new_size, 0, AllocOptions::DEFAULT).cast()
        })
    }
}

/// # Safety
/// `ptr` must be null or a live block of `size` bytes from the current allocator.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn goo_memory_free(ptr: *mut c_void, size: usize) {
    // SAFETY: forwarded contract.
    unsafe { boundary::free(ptr::null_mut(), ptr, size, 0) }
}

/// # Safety
/// As for [`goo_memory_alloc`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn goo_memory_alloc_aligned(size: usize, alignment: usize) -> *mut c_void {
    // SAFETY: the current allocator is valid.
    unsafe { boundary::alloc(ptr::null_mut(), size, alignment, AllocOptions::DEFAULT) }
}

/// # Safety
/// `ptr` must be null or a live block from [`goo_memory_alloc_aligned`] with this size/alignment.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn goo_memory_free_aligned(ptr: *mut c_void, size: usize, alignment: usize) {
    // SAFETY: forwarded contract.
    unsafe { boundary::free(ptr::null_mut(), ptr, size, alignment) }
}

/// # Safety
/// `allocator` must be null or a valid allocator.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn goo_memory_alloc_with(allocator: *mut GooAllocator, size: usize) -> *mut c_void {
    // SAFETY: forwarded contract.
    unsafe { boundary::alloc(allocator, size, 0, AllocOptions::DEFAULT) }
}

return_address_trampoline! {
    /// # Safety
    /// `allocator` must be null or valid; `ptr` null or a live block of `old_size` bytes from it.
    #[unsafe(no_mangle)]
    pub unsafe extern "C" fn goo_memory_realloc_with(
        allocator: *mut GooAllocator,
        ptr: *mut c_void,
        old_size: usize,
        new_size: usize,
    ) -> *mut c_void => goo_memory_realloc_with_body(caller) {
        // SAFETY: forwarded contract.
        guard_at(caller, NULL, || unsafe {
            dispatch::realloc(allocator, ptr.cast(), old_size, new_size, 0, AllocOptions::DEFAULT).cast()
        })
    }
}

/// # Safety
/// `allocator` must be null or valid; `ptr` null or a live block of `size` bytes from it.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn goo_memory_free_with(allocator: *mut GooAllocator, ptr: *mut c_void, size: usize) {
    // SAFETY: forwarded contract.
    unsafe { boundary::free(allocator, ptr, size, 0) }
}

/// # Safety
/// `allocator` must be null or a valid allocator.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn goo_memory_alloc_ex(
    allocator: *mut GooAllocator,
    size: usize,
    alignment: usize,
    options: AllocOptions,
) -> *mut c_void {
    // SAFETY: forwarded contract.
    unsafe { boundary::alloc(allocator, size, alignment, options) }
}

/// # Safety
/// As for [`goo_memory_realloc_with`], with the block's alignment.
// Six arguments fill the argument registers, so this entry point has no trampoline (see
// `boundary`): a debug allocator walks the stack to find its caller.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn goo_memory_realloc_ex(
    allocator: *mut GooAllocator,
    ptr: *mut c_void,
    old_size: usize,
    new_size: usize,
    alignment: usize,
    options: AllocOptions,
) -> *mut c_void {
    // SAFETY: forwarded contract.
    guard(NULL, || unsafe {
        dispatch::realloc(allocator, ptr.cast(), old_size, new_size, alignment, options).cast()
    })
}

/// # Safety
/// As for [`goo_memory_free_with`], with the block's alignment.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn goo_memory_free_ex(
    allocator: *mut GooAllocator,
    ptr: *mut c_void,
    size: usize,
    alignment: usize,
) {
    // SAFETY: forwarded contract.
    unsafe { boundary::free(allocator, ptr, size, alignment) }
}

return_address_trampoline! {
    /// # Safety
    /// `allocator` must be null or a valid allocator.
    #[unsafe(no_mangle)]
    pub unsafe extern "C" fn goo_memory_alloc_array(
        allocator: *mut GooAllocator,
        count: usize,
        elem_size: usize,
        alignment: usize,
        options: AllocOptions,
    ) -> *mut c_void => goo_memory_alloc_array_body(caller) {
        // SAFETY: forwarded contract.
        guard_at(caller, NULL, || unsafe {
            dispatch::alloc_array(allocator, count, elem_size, alignment, options).cast()
        })
    }
}

/// A new system allocator with its own stats; free it with `destroy`.
#[unsafe(no_mangle)]
pub extern "C" fn goo_system_allocator_create() -> *mut GooAllocator {
    guard(ptr::null_mut(), || core_api::System::create(core_api::AllocStrategy::Null).as_ptr())
}

/// A new heap allocator (the small-object heap) with its own stats; free it with `destroy`.
#[unsafe(no_mangle)]
pub extern "C" fn goo_heap_allocator_create() -> *mut GooAllocator {
    guard(ptr::null_mut(), || core_api::Heap::create(core_api::AllocStrategy::Null).as_ptr())
}

/// How many frees and reallocs the heap refused since the process started.
#[unsafe(no_mangle)]
pub extern "C" fn goo_heap_refused_count() -> usize {
    core_api::heap::refused_frees()
}

/// Gives back what the heap holds free; bytes of spans given back to the OS.
#[unsafe(no_mangle)]
pub extern "C" fn goo_heap_collect() -> usize {
    guard(0, core_api::heap::collect)
}

/// # Safety
/// `inner` must be null or a valid allocator that outlives the wrapper, usable from any thread
/// one at a time, and used by nothing else while the wrapper is in use.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn goo_locked_allocator_create(inner: *mut GooAllocator) -> *mut GooAllocator {
    if inner.is_null() {
        return ptr::null_mut();
    }
    // SAFETY: forwarded contract.
    guard(ptr::null_mut(), || unsafe { core_api::locked::create(inner).as_ptr() })
}

/// # Safety
/// `locked` must be null or valid; no block of the wrapper may be used afterwards.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn goo_locked_allocator_reset(locked: *mut GooAllocator) -> bool {
    // SAFETY: forwarded contract.
    guard(false, || unsafe { core_api::locked::reset_raw(locked) })
}

return_address_trampoline! {
    /// # Safety
    /// `allocator` must be null or a valid allocator not used afterwards.
    #[unsafe(no_mangle)]
    pub unsafe extern "C" fn goo_allocator_destroy(allocator: *mut GooAllocator)
        => goo_allocator_destroy_body(caller)
    {
        if allocator.is_null() {
            return;
        }
        // SAFETY: `allocator` is valid per the contract. The caller is the site of the frees
        // the destroy makes to a debug parent.
        guard_at(caller, (), || unsafe {
            if let Some(destroy) = (*allocator).destroy {
                destroy(allocator);
            }
        })
    }
}

/// # Safety
/// `allocator` must be null or a valid allocator.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn goo_allocator_set_limit(
    allocator: *mut GooAllocator,
    max_live_bytes: usize,
) -> bool {
    if allocator.is_null() {
        return false;
    }
    // SAFETY: `allocator` is valid per the contract.
    guard(false, || unsafe { dispatch::set_limit(allocator, max_live_bytes) })
}

/// # Safety
/// `allocator` must be null or a valid allocator.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn goo_allocator_get_limit(allocator: *mut GooAllocator) -> usize {
    if allocator.is_null() {
        return 0;
    }
    // SAFETY: `allocator` is valid per the contract.
    guard(0, || unsafe { dispatch::limit(allocator) })
}

/// # Safety
/// `allocator` must be null or stay valid while it is the default.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn goo_set_default_allocator(allocator: *mut GooAllocator) {
    // SAFETY: forwarded contract.
    guard((), || unsafe {
        core_api::set_default_allocator(allocator);
    })
}

#[unsafe(no_mangle)]
pub extern "C" fn goo_get_default_allocator() -> *mut GooAllocator {
    guard(ptr::null_mut(), core_api::default_allocator)
}

/// # Safety
/// `allocator` must be null or stay valid while it is this thread's allocator.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn goo_set_thread_allocator(allocator: *mut GooAllocator) {
    // SAFETY: forwarded contract.
    guard((), || unsafe {
        core_api::set_thread_allocator(allocator);
    })
}

#[unsafe(no_mangle)]
pub extern "C" fn goo_get_thread_allocator() -> *mut GooAllocator {
    guard(ptr::null_mut(), core_api::thread_allocator)
}

/// # Safety
/// As [`core_api::set_out_of_mem_handler`]: the handler may be called from any allocating
/// thread while it is set.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn goo_set_out_of_mem_handler(handler: Option<OutOfMemFn>) {
    // SAFETY: forwarded contract.
    guard((), || unsafe { core_api::set_out_of_mem_handler(handler) })
}

/// # Safety
/// As [`core_api::set_gc_handler`]: the hook may be called with `user_data` from any
/// allocating thread while it is set.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn goo_memory_set_gc_handler(handler: Option<GcFn>, user_data: *mut c_void) {
    // SAFETY: forwarded contract.
    guard((), || unsafe { core_api::set_gc_handler(handler, user_data) })
}

/// # Safety
/// `allocator` must be null or a valid allocator.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn goo_get_alloc_stats(allocator: *mut GooAllocator) -> AllocStats {
    // SAFETY: forwarded contract.
    guard(AllocStats::default(), || unsafe { dispatch::stats(allocator) })
}

/// # Safety
/// `allocator` must be null or a valid allocator that no other thread uses meanwhile.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn goo_memory_reset_stats(allocator: *mut GooAllocator) {
    // SAFETY: forwarded contract.
    guard((), || unsafe { front::reset_stats(dispatch::resolve(allocator)) })
}

/// # Safety
/// With `size > 0`, `dest` and `src` must be valid for `size` bytes (they may overlap).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn goo_memory_copy(dest: *mut c_void, src: *const c_void, size: usize) {
    if size == 0 || dest.is_null() || src.is_null() {
        return;
    }
    // SAFETY: the caller vouches for both regions; `copy` allows overlap.
    unsafe { ptr::copy(src.cast::<u8>(), dest.cast::<u8>(), size) }
}

/// # Safety
/// With `size > 0`, `dest` must be valid for `size` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn goo_memory_set(dest: *mut c_void, value: u8, size: usize) {
    if size == 0 || dest.is_null() {
        return;
    }
    // SAFETY: the caller vouches for the region.
    unsafe { ptr::write_bytes(dest.cast::<u8>(), value, size) }
}

/// # Safety
/// `ptr` must be null or point to null or to a live legacy block.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn goo_memory_cleanup_ptr(ptr: *mut *mut c_void) {
    if ptr.is_null() {
        return;
    }
    // SAFETY: forwarded contract.
    guard((), || unsafe {
        legacy::free((*ptr).cast());
        *ptr = core::ptr::null_mut();
    })
}

/// Copies `text` into a C buffer of `size` bytes like `snprintf`: truncated, NUL-terminated
/// when `size > 0`.
///
/// # Safety
/// `buffer` must be valid for `size` bytes, or `size` must be 0.
pub(crate) unsafe fn copy_to_c_buffer(text: &str, buffer: *mut core::ffi::c_char, size: usize) {
    if size == 0 || buffer.is_null() {
        return;
    }
    let n = text.len().min(size - 1);
    // SAFETY: `n + 1 <= size` bytes are written inside the caller's buffer.
    unsafe {
        ptr::copy_nonoverlapping(text.as_ptr(), buffer.cast::<u8>(), n);
        *buffer.add(n) = 0;
    }
}

/// A name passed from C: None for NULL, else the string (invalid UTF-8 replaced).
///
/// # Safety
/// `name` must be null or a NUL-terminated string that outlives the result.
pub(crate) unsafe fn optional_name<'a>(name: *const core::ffi::c_char) -> Option<std::borrow::Cow<'a, str>> {
    // SAFETY: non-null, and NUL-terminated per the contract.
    (!name.is_null()).then(|| unsafe { core::ffi::CStr::from_ptr(name) }.to_string_lossy())
}
