//! The dispatch: the one place that names every allocator. A request names an allocator (or
//! null, the current one); the dispatch finds it, routes `TEMP` to the thread's temporary
//! arena, and matches once on the kind in the allocator's header to call the front door
//! (`policy::front`) for that backend type, so each allocator's call-free fast path is inlined
//! here. Allocators written in C, and backends made outside the library, take the front door's
//! slow path through their vtable.
//!
//! Everything below this module (the allocators, the policy) works on a resolved allocator;
//! null means "current" only here and above.

use core::ptr;

use crate::allocators::arena::Bump;
use crate::allocators::pool::Pool;
use crate::allocators::region::RegionBackend;
use crate::allocators::scoped::Scoped;
use crate::allocators::system::System;
use crate::default;
use crate::policy::backend::{header_of, is_managed, Backend, Kind, Managed};
use crate::policy::front::{self, Fast};
use crate::raw::{AllocOptions, AllocStats, GooAllocator};

/// The allocator a request names: itself, or the current allocator for null.
#[inline(always)]
pub fn resolve(allocator: *mut GooAllocator) -> *mut GooAllocator {
    if allocator.is_null() {
        // Rare for `*_with` calls (and folded away where null is a constant): laid out of the
        // straight path.
        core::hint::cold_path();
        default::current()
    } else {
        allocator
    }
}

/// The kind of a valid allocator: its header's tag for a library allocator, else
/// [`Kind::Other`].
///
/// # Safety
/// `a` must be valid for reads (live, if a library allocator).
#[inline(always)]
unsafe fn kind_of(a: *mut GooAllocator) -> Kind {
    // SAFETY: per the contract; the header is read only once `is_managed` holds.
    unsafe {
        if is_managed(a) {
            header_of(a).kind
        } else {
            Kind::Other
        }
    }
}

/// [`front::try_alloc_inline`] for the backend type `B` of `a`.
///
/// # Safety
/// `a` is a live `Managed<B>`.
#[inline(always)]
unsafe fn alloc_as<B: Backend>(a: *mut GooAllocator, size: usize, align: usize) -> *mut u8 {
    // SAFETY: per the contract.
    unsafe { front::try_alloc_inline(a, Managed::<B>::backend(a), size, align) }
}

/// [`front::try_free_inline`] for the backend type `B` of `a`.
///
/// # Safety
/// `a` is a live `Managed<B>`; the block is live in it.
#[inline(always)]
unsafe fn free_as<B: Backend>(a: *mut GooAllocator, ptr: *mut u8, size: usize, align: usize) -> bool {
    // SAFETY: per the contract.
    unsafe { front::try_free_inline(a, Managed::<B>::backend(a), ptr, size, align) }
}

/// The call-free level of an allocation (see `policy::front`): the current allocator found
/// without a call, a plain request, the allocator's own fast path. Calls nothing that can
/// unwind, so the C entry points run it outside their panic guard.
///
/// # Safety
/// `allocator` must be null or point to a valid `GooAllocator` (live, if a library
/// allocator) whose functions, if set, behave as the header documents.
#[inline(always)]
pub unsafe fn alloc_fast(
    allocator: *mut GooAllocator,
    size: usize,
    align: usize,
    options: AllocOptions,
) -> Fast<*mut u8> {
    let a = if allocator.is_null() { default::current_fast() } else { allocator };
    let observed = match front::plain_request(size, align, options) {
        Some(observed) if !a.is_null() => observed,
        _ => return Fast::Slow(a),
    };
    // SAFETY: `a` is valid (contract); each arm matches the backend type its header names.
    let block = unsafe {
        match kind_of(a) {
            Kind::System => alloc_as::<System>(a, size, align),
            Kind::Pool => alloc_as::<Pool>(a, size, align),
            Kind::Arena => alloc_as::<Bump>(a, size, align),
            Kind::Region => alloc_as::<RegionBackend>(a, size, align),
            Kind::Scoped => alloc_as::<Scoped>(a, size, align),
            Kind::Other => ptr::null_mut(),
        }
    };
    if block.is_null() {
        Fast::Slow(a)
    } else if observed {
        Fast::Served(a, block)
    } else {
        Fast::Done(block)
    }
}

/// What [`alloc_fast`] left: `served` (a block it served while callbacks observe) reported
/// to them, else (null) the slow path: the allocator resolved, `TEMP` routed, the whole policy.
///
/// # Safety
/// As for [`alloc_fast`], with the same arguments and the allocator of its answer.
#[inline(never)]
pub unsafe fn alloc_rest(
    a: *mut GooAllocator,
    served: *mut u8,
    size: usize,
    align: usize,
    options: AllocOptions,
) -> *mut u8 {
    if !served.is_null() {
        front::report_alloc(a, served, size, align);
        return served;
    }
    // SAFETY: forwarded contract.
    unsafe { alloc_slow(a, size, align, options) }
}

/// The slow path of an allocation: the current allocator for null, `TEMP` routed to this
/// thread's temporary arena, then the front door's whole policy.
///
/// # Safety
/// As for [`alloc_fast`].
pub unsafe fn alloc_slow(
    allocator: *mut GooAllocator,
    size: usize,
    align: usize,
    options: AllocOptions,
) -> *mut u8 {
    let mut a = resolve(allocator);
    let mut options = options;
    if options.contains(AllocOptions::TEMP) {
        // Short-lived: served by this thread's temporary arena, whatever allocator was named
        // (by the named one while the thread is exiting).
        let temp = crate::temp::allocator();
        if !temp.is_null() {
            a = temp;
        }
        options = options.without(AllocOptions::TEMP);
    }
    // SAFETY: `a` is valid (contract; the temporary arena is this thread's, live).
    unsafe { front::alloc_slow(a, size, align, options) }
}

/// Allocates `size` bytes aligned to `align` (0 = natural) from `allocator` (null = current),
/// with the whole policy: the call-free level first, then the slow path. Null on failure
/// (after the strategy); a zero size gives a non-null dangling pointer, freed as a no-op.
///
/// # Safety
/// As for [`alloc_fast`].
#[inline(always)]
pub unsafe fn alloc(
    allocator: *mut GooAllocator,
    size: usize,
    align: usize,
    options: AllocOptions,
) -> *mut u8 {
    // SAFETY: forwarded contract.
    unsafe {
        match alloc_fast(allocator, size, align, options) {
            Fast::Done(block) => block,
            Fast::Served(a, block) => alloc_rest(a, block, size, align, options),
            Fast::Slow(a) => alloc_rest(a, ptr::null_mut(), size, align, options),
        }
    }
}

/// The call-free level of a free (see [`alloc_fast`]).
///
/// # Safety
/// As for [`alloc_fast`]; `ptr` must be null or a live block of `size` bytes allocated from
/// this allocator with this `align`.
#[inline(always)]
pub unsafe fn free_fast(allocator: *mut GooAllocator, ptr: *mut u8, size: usize, align: usize) -> Fast<()> {
    if ptr.is_null() || size == 0 {
        return Fast::Done(());
    }
    let a = if allocator.is_null() { default::current_fast() } else { allocator };
    if a.is_null() {
        return Fast::Slow(a);
    }
    // SAFETY: `a` is valid (contract); each arm matches the backend type its header names;
    // the caller vouches for the block.
    let freed = unsafe {
        match kind_of(a) {
            Kind::System => free_as::<System>(a, ptr, size, align),
            Kind::Pool => free_as::<Pool>(a, ptr, size, align),
            Kind::Arena => free_as::<Bump>(a, ptr, size, align),
            Kind::Region => free_as::<RegionBackend>(a, ptr, size, align),
            Kind::Scoped => free_as::<Scoped>(a, ptr, size, align),
            Kind::Other => false,
        }
    };
    if !freed {
        Fast::Slow(a)
    } else if front::free_observed() {
        // Observers only (no callback can refuse a free): they hear of it after.
        core::hint::cold_path();
        Fast::Served(a, ())
    } else {
        Fast::Done(())
    }
}

/// What [`free_fast`] left: the report of a block it `freed` while callbacks observe, else the
/// slow path (see [`alloc_rest`]).
///
/// # Safety
/// As for [`free_fast`], with the same arguments and the allocator of its answer.
#[inline(never)]
pub unsafe fn free_rest(a: *mut GooAllocator, freed: bool, ptr: *mut u8, size: usize, align: usize) {
    if freed {
        return front::report_free(a, ptr, size, align);
    }
    // SAFETY: forwarded contract.
    unsafe { front::free_slow(resolve(a), ptr, size, align) }
}

/// Frees a block (null `ptr` or `size` 0: nothing), with the whole policy.
///
/// # Safety
/// As for [`free_fast`].
#[inline(always)]
pub unsafe fn free(allocator: *mut GooAllocator, ptr: *mut u8, size: usize, align: usize) {
    // SAFETY: forwarded contract.
    unsafe {
        match free_fast(allocator, ptr, size, align) {
            Fast::Done(()) => {}
            Fast::Served(a, ()) => free_rest(a, true, ptr, size, align),
            Fast::Slow(a) => free_rest(a, false, ptr, size, align),
        }
    }
}

/// Resizes a block (see `policy::front::realloc`); null `allocator` = current.
///
/// # Safety
/// As for [`free_fast`], with `old_size` for the block's size.
pub unsafe fn realloc(
    allocator: *mut GooAllocator,
    ptr: *mut u8,
    old_size: usize,
    new_size: usize,
    align: usize,
    options: AllocOptions,
) -> *mut u8 {
    let a = resolve(allocator);
    if ptr.is_null() || old_size == 0 {
        // SAFETY: forwarded contract.
        return unsafe { alloc(a, new_size, align, options) };
    }
    // SAFETY: forwarded contract.
    unsafe { front::realloc(a, ptr, old_size, new_size, align, options.without(AllocOptions::TEMP)) }
}

/// Allocates `count * elem_size` bytes; a product that overflows fails like any bad request.
///
/// # Safety
/// As for [`alloc_fast`].
pub unsafe fn alloc_array(
    allocator: *mut GooAllocator,
    count: usize,
    elem_size: usize,
    align: usize,
    options: AllocOptions,
) -> *mut u8 {
    // A saturated product is larger than any valid request, so the check refuses and counts it.
    // SAFETY: forwarded contract.
    unsafe { alloc(allocator, count.saturating_mul(elem_size), align, options) }
}

/// The statistics of `allocator` (null = current); see `policy::front::stats`.
///
/// # Safety
/// As for [`alloc_fast`].
pub unsafe fn stats(allocator: *mut GooAllocator) -> AllocStats {
    // SAFETY: forwarded contract.
    unsafe { front::stats(resolve(allocator)) }
}
