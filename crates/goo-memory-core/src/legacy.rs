//! The unsized legacy API (`goo_runtime_alloc` / `goo_alloc` and friends) on top of sized
//! allocators: each block carries a 16-byte header with its size and the allocator it came from,
//! so it can be freed or resized without the caller knowing either, even after the current
//! allocator changed.

use core::ptr;

use crate::default::current;
use crate::dispatch;
use crate::policy::front;
use crate::raw::{AllocOptions, GooAllocator, MAX_NATURAL_ALIGN};

/// Bytes in front of every legacy block; keeps the block aligned like `malloc`'s.
pub const HEADER_SIZE: usize = MAX_NATURAL_ALIGN;

#[repr(C)]
struct Header {
    size: usize,
    allocator: *mut GooAllocator,
}
const _: () = assert!(core::mem::size_of::<Header>() <= HEADER_SIZE);

/// Allocates `size` bytes from the current allocator; null on failure. `size` 0 returns a
/// unique block (as `malloc(0)` may) so that every non-null result can be freed.
pub fn alloc(size: usize) -> *mut u8 {
    let Some(total) = size.checked_add(HEADER_SIZE) else {
        // Let the front door count and report the impossible size.
        // SAFETY: the current allocator is valid (setters' contract).
        return unsafe {
            dispatch::alloc(ptr::null_mut(), usize::MAX, MAX_NATURAL_ALIGN, AllocOptions::DEFAULT)
        };
    };
    let a = current();
    // SAFETY: the current allocator is valid (setters' contract).
    let base = unsafe { dispatch::alloc(a, total, MAX_NATURAL_ALIGN, AllocOptions::DEFAULT) };
    if base.is_null() {
        return base;
    }
    // SAFETY: `base` holds `total` bytes, aligned for `Header`.
    unsafe {
        base.cast::<Header>().write(Header { size, allocator: a });
        base.add(HEADER_SIZE)
    }
}

/// Frees a block from [`alloc`] or [`realloc`]; null does nothing.
///
/// # Safety
/// `ptr` must be null or a live block returned by this module, whose allocator is still live.
pub unsafe fn free(ptr: *mut u8) {
    if ptr.is_null() {
        return;
    }
    // SAFETY: per the contract, a header precedes `ptr`.
    unsafe {
        let base = ptr.sub(HEADER_SIZE);
        let Header { size, allocator } = base.cast::<Header>().read();
        dispatch::free(allocator, base, size + HEADER_SIZE, MAX_NATURAL_ALIGN);
    }
}

/// `realloc(NULL, n)` allocates, `realloc(p, 0)` frees and returns null; otherwise resizes in
/// the allocator the block came from, returning null (block untouched) on failure.
///
/// # Safety
/// As for [`free`].
pub unsafe fn realloc(ptr: *mut u8, new_size: usize) -> *mut u8 {
    if ptr.is_null() {
        return alloc(new_size);
    }
    if new_size == 0 {
        // SAFETY: forwarded contract.
        unsafe { free(ptr) };
        return ptr::null_mut();
    }
    // SAFETY: per the contract, a header precedes `ptr`.
    unsafe {
        let base = ptr.sub(HEADER_SIZE);
        let Header { size, allocator } = base.cast::<Header>().read();
        let new_total = new_size.saturating_add(HEADER_SIZE);
        let new_base = front::realloc(
            allocator,
            base,
            size + HEADER_SIZE,
            new_total,
            MAX_NATURAL_ALIGN,
            AllocOptions::DEFAULT,
        );
        if new_base.is_null() {
            return new_base;
        }
        new_base.cast::<Header>().write(Header { size: new_size, allocator });
        new_base.add(HEADER_SIZE)
    }
}

/// The size a legacy block was allocated with.
///
/// # Safety
/// As for [`free`], and `ptr` non-null.
pub unsafe fn size_of(ptr: *const u8) -> usize {
    // SAFETY: per the contract, a header precedes `ptr`.
    unsafe { ptr.sub(HEADER_SIZE).cast::<Header>().read().size }
}
