//! The system allocator: the C library's `malloc` family, with `posix_memalign` for alignments
//! beyond what `malloc` guarantees. The default allocator is one of these.

use core::ffi::c_void;
use core::ptr::{self, NonNull};

use crate::managed::{alloc_shim, drop_managed, free_shim, Backend, Managed};
use crate::raw::{
    resolve_align, AllocFn, AllocOptions, AllocStrategy, FreeFn, GooAllocator, MAX_NATURAL_ALIGN,
};

/// The C library heap as a [`Backend`]. Stateless: every instance shares the process heap;
/// what differs between instances made by [`System::create`] is their stats and strategy.
#[derive(Clone, Copy, Debug, Default)]
pub struct System;

impl System {
    /// A new library allocator over the system heap with its own stats (tracked) and strategy.
    pub fn create(strategy: AllocStrategy) -> NonNull<GooAllocator> {
        Managed::place(Self::managed(ptr::null_mut(), drop_managed::<System>), strategy, true)
    }

    /// A library allocator over the system heap whose vtable holds [`SYSTEM_ALLOC`] and
    /// [`SYSTEM_FREE`], which the front door recognises and calls without the vtable.
    pub(crate) const fn managed(
        context: *mut c_void,
        drop_fn: unsafe fn(*mut GooAllocator),
    ) -> Managed<System> {
        Managed::unplaced(System, drop_fn, context).with_alloc_free(SYSTEM_ALLOC, SYSTEM_FREE)
    }
}

/// The system allocator's vtable functions, taken once: the front door compares an allocator's
/// functions with these to skip the indirect call (a speculative devirtualisation; a miss only
/// costs the ordinary path).
pub(crate) static SYSTEM_ALLOC: AllocFn = alloc_shim::<System>;
pub(crate) static SYSTEM_FREE: FreeFn = free_shim::<System>;

/// The alignment every `malloc` block has, whatever its size: glibc and musl give
/// `2 * sizeof(size_t)`, 16 on 64-bit targets. 0 where the library promises less, and under
/// Miri, whose `malloc` gives small blocks only C11's alignment.
#[cfg(all(
    target_os = "linux",
    any(target_env = "gnu", target_env = "musl"),
    target_pointer_width = "64",
    not(miri)
))]
const MALLOC_ALIGN: usize = 16;
#[cfg(not(all(
    target_os = "linux",
    any(target_env = "gnu", target_env = "musl"),
    target_pointer_width = "64",
    not(miri)
)))]
const MALLOC_ALIGN: usize = 0;

/// Whether `malloc` alone gives this alignment for a block of this size (`align` 0, natural
/// alignment, is at most `MAX_NATURAL_ALIGN`).
#[inline(always)]
fn malloc_aligns(size: usize, align: usize) -> bool {
    if MALLOC_ALIGN >= MAX_NATURAL_ALIGN {
        // One compare, no natural-alignment computation: the C library's fixed alignment.
        align <= MALLOC_ALIGN
    } else {
        // Elsewhere C11 only promises a block aligned for the objects that fit in it.
        let align = resolve_align(size, align);
        align <= MAX_NATURAL_ALIGN && align <= size
    }
}

// SAFETY: every block comes from malloc/calloc/realloc/posix_memalign with the requested size,
// which return suitably aligned, disjoint blocks; calloc zeroes.
unsafe impl Backend for System {
    const KIND: &'static str = "system";
    const ZEROES: bool = true;

    /// Also accepts `align` 0 (natural alignment), as the front door's fast path passes it.
    #[inline(always)]
    fn alloc(&self, size: usize, align: usize, options: AllocOptions) -> *mut u8 {
        let zero = options.contains(AllocOptions::ZERO);
        if malloc_aligns(size, align) {
            // SAFETY: plain C library calls with a non-zero size.
            unsafe {
                if zero {
                    libc::calloc(1, size).cast()
                } else {
                    libc::malloc(size).cast()
                }
            }
        } else {
            aligned_alloc(size, resolve_align(size, align), zero)
        }
    }

    #[inline(always)]
    unsafe fn free(&self, ptr: *mut u8, _size: usize, _align: usize) {
        // SAFETY: `ptr` came from malloc/calloc/realloc/posix_memalign, all freed by free().
        unsafe { libc::free(ptr.cast()) }
    }

    unsafe fn realloc(
        &self,
        ptr: *mut u8,
        old_size: usize,
        new_size: usize,
        align: usize,
        options: AllocOptions,
    ) -> *mut u8 {
        let new = if malloc_aligns(new_size, align) && malloc_aligns(old_size, align) {
            // SAFETY: `ptr` is a live malloc block; realloc keeps it on failure.
            unsafe { libc::realloc(ptr.cast(), new_size).cast::<u8>() }
        } else {
            let new = aligned_alloc(new_size, align, false);
            if !new.is_null() {
                // SAFETY: both blocks live and disjoint; the old one is freed once copied.
                unsafe {
                    ptr::copy_nonoverlapping(ptr, new, old_size.min(new_size));
                    libc::free(ptr.cast());
                }
            }
            new
        };
        if !new.is_null() && new_size > old_size && options.contains(AllocOptions::ZERO) {
            // SAFETY: the block is `new_size` bytes long; the tail past `old_size` is ours.
            unsafe { ptr::write_bytes(new.add(old_size), 0, new_size - old_size) };
        }
        new
    }
}

#[cold]
fn aligned_alloc(size: usize, align: usize, zero: bool) -> *mut u8 {
    let align = align.max(core::mem::size_of::<usize>());
    let mut out: *mut c_void = ptr::null_mut();
    // SAFETY: `align` is a power of two and a multiple of sizeof(void*), as required.
    if unsafe { libc::posix_memalign(&mut out, align, size) } != 0 {
        return ptr::null_mut();
    }
    if zero {
        // SAFETY: `out` is a fresh block of `size` bytes.
        unsafe { ptr::write_bytes(out.cast::<u8>(), 0, size) };
    }
    out.cast()
}
