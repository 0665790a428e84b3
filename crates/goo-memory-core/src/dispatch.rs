//! The dispatch: the one place that names every allocator. A request names an allocator (or
//! null, the current one); the dispatch finds it, routes `TEMP` to the thread's temporary
//! arena, and matches once on the kind in the allocator's header to call the front door
//! (`policy::front`) for that backend type, so each allocator's call-free fast path is inlined
//! here. Allocators written in C, and backends made outside the library, take the front door's
//! slow path through their vtable.
//!
//! Everything below this module (the allocators, the policy) works on a resolved allocator;
//! null means "current" only here and above.

use crate::allocators::arena::Bump;
use crate::allocators::by_kind::{self, kind_of};
use crate::allocators::debug::Debug;
use crate::allocators::heap::Heap;
use crate::allocators::pool::Pool;
use crate::allocators::region::RegionBackend;
use crate::allocators::scoped::Scoped;
use crate::allocators::shared_arena::SharedBump;
use crate::allocators::shared_pool::SharedPool;
use crate::allocators::system::System;
use crate::default;
use crate::policy::backend::{Backend, Kind, Managed};
use crate::policy::front::{self, Inline};
use crate::raw::{AllocOptions, AllocStats, GooAllocator, PLAIN_MAX};

/// The allocator a request names: itself, or the current allocator for null.
#[inline(always)]
pub fn resolve(allocator: *mut GooAllocator) -> *mut GooAllocator {
    if allocator.is_null() {
        // Rare for `*_with` calls (and folded away where null is a constant): laid out of the
        // straight path.
        crate::policy::cold_path();
        default::current()
    } else {
        allocator
    }
}

/// Where a request goes when the call-free level cannot serve it: the caller's slow path, by
/// default [`alloc_slow`] / [`free_slow`] as they are (for Rust callers, `Unguarded`); the C
/// entry points put them behind their panic guard. The call-free level reaches them by tail
/// calls, so it needs no stack frame of its own.
// Public for the C crate (its panic guard), with `alloc_then`, `free_then` and the slow paths
// below; not part of the Rust API, whose callers use `alloc` and `free`.
#[doc(hidden)]
pub trait SlowPath {
    /// [`alloc_slow`], or a function with its contract and effect.
    ///
    /// # Safety
    /// As for [`alloc_slow`].
    #[inline(always)]
    unsafe fn alloc_slow(a: *mut GooAllocator, size: usize, align: usize, options: AllocOptions) -> *mut u8 {
        // SAFETY: forwarded contract.
        unsafe { alloc_slow(a, size, align, options) }
    }

    /// [`alloc_uncounted`], or a function with its contract and effect.
    ///
    /// # Safety
    /// As for [`alloc_uncounted`].
    #[inline(always)]
    unsafe fn alloc_uncounted(a: *mut GooAllocator, block: *mut u8, size: usize, align: usize) -> *mut u8 {
        // SAFETY: forwarded contract.
        unsafe { alloc_uncounted(a, block, size, align) }
    }

    /// [`free_slow`], or a function with its contract and effect.
    ///
    /// # Safety
    /// As for [`free_slow`].
    #[inline(always)]
    unsafe fn free_slow(a: *mut GooAllocator, ptr: *mut u8, size: usize, align: usize) {
        // SAFETY: forwarded contract.
        unsafe { free_slow(a, ptr, size, align) }
    }
}

/// [`alloc_slow`] and [`free_slow`] as they are: for Rust callers, where a panic may unwind.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Unguarded;

impl SlowPath for Unguarded {}

/// An allocation from `allocator` (null = current): the call-free level, one `match` on the
/// allocator's kind to its backend's fast path, and whatever is left to `R`.
///
/// The fast paths of the heap (the default allocator, which nearly every allocation passes)
/// and of the arena (a runtime's other hot path: a compiler's or a request's
/// allocations) are inlined here; every other kind's is a function of its own (`alloc_as`),
/// entered and left by tail calls, so its registers are its own and the inlined paths pay
/// nothing for the pool's or the scope's.
///
/// # Safety
/// As for [`alloc`].
// Public for the C crate (see `SlowPath`).
#[doc(hidden)]
#[inline(always)]
pub unsafe fn alloc_then<R: SlowPath>(
    allocator: *mut GooAllocator,
    size: usize,
    align: usize,
    options: AllocOptions,
) -> *mut u8 {
    if !front::plain_request(size, align, options) {
        // SAFETY: forwarded contract (the slow path finds the current allocator for null).
        return unsafe { R::alloc_slow(allocator, size, align, options) };
    }
    if allocator.is_null() {
        let Some((home, a)) = default::current_fast() else {
            // SAFETY: forwarded contract (the slow path finds the current allocator).
            return unsafe { R::alloc_slow(allocator, size, align, options) };
        };
        if a == default::builtin_heap() {
            // The built-in heap, where most requests naming no allocator go: no header read to
            // find its kind, and the thread's home slot is known.
            // SAFETY: the built-in heap is a live `Managed<Heap>`; `home` is the thread's.
            return unsafe { serve_alloc_at::<Heap, R>(a, Some(home), size, align) };
        }
        if a.is_null() {
            // SAFETY: forwarded contract (the slow path finds the current allocator).
            return unsafe { R::alloc_slow(a, size, align, options) };
        }
        // SAFETY: the current allocator is valid (contract of `set_current`).
        return unsafe { alloc_from::<R>(a, size, align) };
    }
    // SAFETY: forwarded contract.
    unsafe { alloc_from::<R>(allocator, size, align) }
}

/// [`alloc_then`] for a plain request to a valid allocator `a`: one match on its kind.
///
/// # Safety
/// `a` is valid (live, if a library allocator); the request passed [`front::plain_request`].
#[inline(always)]
unsafe fn alloc_from<R: SlowPath>(a: *mut GooAllocator, size: usize, align: usize) -> *mut u8 {
    // SAFETY: `a` is valid (contract); each arm matches the backend type its header names; a
    // plain request has no options.
    unsafe {
        match kind_of(a) {
            Kind::System => serve_alloc::<System, R>(a, size, align),
            Kind::Heap => serve_alloc::<Heap, R>(a, size, align),
            Kind::Pool => alloc_as::<Pool, R>(a, size, align),
            Kind::Arena => serve_alloc::<Bump, R>(a, size, align),
            Kind::Region => alloc_as::<RegionBackend, R>(a, size, align),
            Kind::Scoped => alloc_as::<Scoped, R>(a, size, align),
            Kind::SharedArena => alloc_as::<SharedBump, R>(a, size, align),
            Kind::SharedPool => alloc_as::<SharedPool, R>(a, size, align),
            // The slow path names the request's site, then takes the debug allocator's
            // call-free level (`try_alloc_inline`).
            Kind::Debug | Kind::Other => R::alloc_slow(a, size, align, AllocOptions::DEFAULT),
        }
    }
}

/// The call-free level for the backend type `B` of `a`, for a plain request: the block, or
/// `R`'s slow path.
///
/// # Safety
/// `a` is a live `Managed<B>`; the request passed [`front::plain_request`].
#[inline(always)]
unsafe fn serve_alloc<B: Backend, R: SlowPath>(a: *mut GooAllocator, size: usize, align: usize) -> *mut u8 {
    let Some(home) = front::home_for::<B>() else {
        crate::policy::cold_path();
        // SAFETY: forwarded contract.
        return unsafe { R::alloc_slow(a, size, align, AllocOptions::DEFAULT) };
    };
    // SAFETY: forwarded contract; `home` is `home_for::<B>()`.
    unsafe { serve_alloc_at::<B, R>(a, home, size, align) }
}

/// [`serve_alloc`] for a caller that found `home_for::<B>()` already.
///
/// # Safety
/// As for [`serve_alloc`]; `home` as for `front::try_alloc_inline_at`.
#[inline(always)]
unsafe fn serve_alloc_at<B: Backend, R: SlowPath>(
    a: *mut GooAllocator,
    home: Option<usize>,
    size: usize,
    align: usize,
) -> *mut u8 {
    // SAFETY: per the contract.
    unsafe {
        match front::try_alloc_inline_at(a, Managed::<B>::backend(a), home, size, align) {
            Inline::Served(block) => block,
            Inline::Declined => {
                crate::policy::cold_path();
                R::alloc_slow(a, size, align, AllocOptions::DEFAULT)
            }
            Inline::Uncounted(block) => R::alloc_uncounted(a, block, size, align),
        }
    }
}

/// The call-free level alone, for any allocator and a plain request (it declines a C-made
/// allocator). The debug allocator's is taken here, in the slow path, once the caller named
/// the request's site.
///
/// # Safety
/// `a` is valid (live, if a library allocator); the request passed
/// [`front::observed_plain_request`].
unsafe fn try_alloc_inline(a: *mut GooAllocator, size: usize, align: usize) -> Inline {
    // SAFETY: `a` is valid; the arm matches the backend type its header names.
    unsafe {
        match kind_of(a) {
            Kind::Debug => front::try_alloc_inline(a, Managed::<Debug>::backend(a), size, align),
            kind => by_kind::try_alloc(a, kind, size, align),
        }
    }
}

/// The call-free level of a free alone, for any allocator: whether it freed the block (it
/// cannot for a C-made allocator, say). The debug allocator's is taken here (see
/// [`try_alloc_inline`]).
///
/// # Safety
/// `a` is valid (live, if a library allocator); `ptr` a live block of it of
/// `0 < size <= PLAIN_MAX` bytes at `align`.
unsafe fn try_free_inline(a: *mut GooAllocator, ptr: *mut u8, size: usize, align: usize) -> bool {
    // SAFETY: `a` is valid; the arm matches the backend type its header names.
    unsafe {
        match kind_of(a) {
            Kind::Debug => front::try_free_inline(a, Managed::<Debug>::backend(a), ptr, size, align),
            kind => by_kind::try_free(a, kind, ptr, size, align),
        }
    }
}

/// [`serve_alloc`] as a function of its own.
///
/// # Safety
/// As for [`serve_alloc`].
#[inline(never)]
unsafe fn alloc_as<B: Backend, R: SlowPath>(a: *mut GooAllocator, size: usize, align: usize) -> *mut u8 {
    // SAFETY: forwarded contract.
    unsafe { serve_alloc::<B, R>(a, size, align) }
}

/// The start addresses of the functions of this module that may call the slow path `R` (every
/// `alloc_as` and `free_as` that [`alloc_then`] and [`free_then`] reach): the C crate names them
/// to its debug allocator as its own code, which is not the program's (see `debug::set_entry_points`).
/// Lists the kinds whose fast path is out of line in `alloc_from` and `free_from`.
// Public for the C crate (see `SlowPath`).
#[doc(hidden)]
pub fn out_of_line_paths<R: SlowPath>() -> [usize; 11] {
    [
        alloc_as::<Pool, R> as *const () as usize,
        alloc_as::<RegionBackend, R> as *const () as usize,
        alloc_as::<Scoped, R> as *const () as usize,
        alloc_as::<SharedBump, R> as *const () as usize,
        alloc_as::<SharedPool, R> as *const () as usize,
        free_as::<Pool, R> as *const () as usize,
        free_as::<Bump, R> as *const () as usize,
        free_as::<RegionBackend, R> as *const () as usize,
        free_as::<Scoped, R> as *const () as usize,
        free_as::<SharedBump, R> as *const () as usize,
        free_as::<SharedPool, R> as *const () as usize,
    ]
}

/// The slow path of an allocation: the current allocator for null, `TEMP` routed to this
/// thread's temporary arena, then the front door's whole policy.
///
/// # Safety
/// As for [`alloc`].
// Public for the C crate (see `SlowPath`).
#[doc(hidden)]
pub unsafe fn alloc_slow(
    allocator: *mut GooAllocator,
    size: usize,
    align: usize,
    options: AllocOptions,
) -> *mut u8 {
    let mut a = resolve(allocator);
    if front::observed_plain_request(size, align, options) {
        // Observers only: the call-free level serves the request, then they hear of it.
        // SAFETY: `a` is valid (contract).
        match unsafe { try_alloc_inline(a, size, align) } {
            Inline::Served(block) => return front::report_alloc(a, block, size, align),
            // SAFETY: as above; the block was just served, uncounted.
            Inline::Uncounted(block) => return unsafe { front::alloc_uncounted(a, block, size, align) },
            Inline::Declined => {}
        }
    }
    let mut options = options;
    if options.contains(AllocOptions::TEMP) {
        // Short-lived: served by this thread's temporary arena, whatever allocator was named
        // (by the named one while the thread is exiting).
        let temp = crate::allocators::temp_arena::allocator();
        if !temp.is_null() {
            a = temp;
        }
        options = options.without(AllocOptions::TEMP);
    }
    // SAFETY: `a` is valid (contract; the temporary arena is this thread's, live).
    unsafe { front::alloc_slow(a, size, align, options) }
}

/// Allocates `size` bytes aligned to `align` (0 = natural) from `allocator` (null = current),
/// with the whole policy. Null on failure (after the strategy); a zero size gives a non-null
/// dangling pointer, freed as a no-op.
///
/// # Safety
/// `allocator` must be null or point to a valid `GooAllocator` (live, if a library
/// allocator) whose functions, if set, behave as the header documents.
#[inline(always)]
pub unsafe fn alloc(
    allocator: *mut GooAllocator,
    size: usize,
    align: usize,
    options: AllocOptions,
) -> *mut u8 {
    // SAFETY: forwarded contract.
    unsafe { alloc_then::<Unguarded>(allocator, size, align, options) }
}

/// A free (see [`alloc_then`]); null `ptr` or `size` 0: nothing.
///
/// # Safety
/// As for [`free`].
// Public for the C crate (see `SlowPath`).
#[doc(hidden)]
#[inline(always)]
pub unsafe fn free_then<R: SlowPath>(allocator: *mut GooAllocator, ptr: *mut u8, size: usize, align: usize) {
    if ptr.is_null() {
        return;
    }
    if !front::plain_free(ptr, size) {
        // Size 0 (nothing to do) or a large block: the slow path.
        crate::policy::cold_path();
        // SAFETY: forwarded contract.
        return unsafe { R::free_slow(allocator, ptr, size, align) };
    }
    if allocator.is_null() {
        let Some((home, a)) = default::current_fast() else {
            // SAFETY: forwarded contract (the slow path finds the current allocator).
            return unsafe { R::free_slow(allocator, ptr, size, align) };
        };
        if a == default::builtin_heap() {
            // SAFETY: as in `alloc_then`; the caller vouches for the block.
            return unsafe { serve_free_at::<Heap, R>(a, Some(home), ptr, size, align) };
        }
        if a.is_null() {
            // SAFETY: forwarded contract (the slow path finds the current allocator).
            return unsafe { R::free_slow(a, ptr, size, align) };
        }
        // SAFETY: the current allocator is valid; the caller vouches for the block.
        return unsafe { free_from::<R>(a, ptr, size, align) };
    }
    // SAFETY: forwarded contract.
    unsafe { free_from::<R>(allocator, ptr, size, align) }
}

/// [`free_then`] for a free that passed [`front::plain_free`], to a valid allocator `a`: one
/// match on its kind.
///
/// # Safety
/// `a` is valid (live, if a library allocator); `ptr` a live block of it of `size` bytes at
/// `align`.
#[inline(always)]
unsafe fn free_from<R: SlowPath>(a: *mut GooAllocator, ptr: *mut u8, size: usize, align: usize) {
    // SAFETY: `a` is valid (contract); each arm matches the backend type its header names;
    // the caller vouches for the block.
    unsafe {
        match kind_of(a) {
            Kind::System => serve_free::<System, R>(a, ptr, size, align),
            Kind::Heap => serve_free::<Heap, R>(a, ptr, size, align),
            Kind::Pool => free_as::<Pool, R>(a, ptr, size, align),
            Kind::Arena => free_as::<Bump, R>(a, ptr, size, align),
            Kind::Region => free_as::<RegionBackend, R>(a, ptr, size, align),
            Kind::Scoped => free_as::<Scoped, R>(a, ptr, size, align),
            Kind::SharedArena => free_as::<SharedBump, R>(a, ptr, size, align),
            Kind::SharedPool => free_as::<SharedPool, R>(a, ptr, size, align),
            Kind::Debug | Kind::Other => R::free_slow(a, ptr, size, align),
        }
    }
}

/// [`alloc_then`] from the current allocator, for a caller that records which allocator that
/// was (the legacy API's block header): the block (null on failure, as `alloc_then` gives) and
/// the allocator that served it. `None`, having done nothing, where the current allocator is
/// not known without a call, is written in C or is a debug allocator (whose requests need
/// their site), or where the request is not plain: the caller takes its own slow path. So `R`'s
/// slow paths only ever see a library allocator with a call-free level.
///
/// # Safety
/// As for [`alloc`] with a null allocator.
// Public for the C crate (the legacy entry points' call-free level).
#[doc(hidden)]
#[inline(always)]
pub unsafe fn alloc_current_then<R: SlowPath>(
    size: usize,
    align: usize,
) -> Option<(*mut u8, *mut GooAllocator)> {
    if !front::plain_request(size, align, AllocOptions::DEFAULT) {
        return None;
    }
    let (home, a) = default::current_fast()?;
    if a == default::builtin_heap() {
        // SAFETY: as in `alloc_then`.
        return Some((unsafe { serve_alloc_at::<Heap, R>(a, Some(home), size, align) }, a));
    }
    // SAFETY: a non-null current allocator is valid (contract of `set_current`).
    if a.is_null() || matches!(unsafe { kind_of(a) }, Kind::Debug | Kind::Other) {
        return None;
    }
    // SAFETY: as above; the request is plain.
    Some((unsafe { alloc_from::<R>(a, size, align) }, a))
}

/// [`free_then`] to a named library allocator with a call-free level: whether it took the free
/// (`R`'s slow path may have refused it, reported). False, having done nothing, for an
/// allocator written in C, a debug allocator or a free that is not plain: the caller takes its
/// own slow path.
///
/// # Safety
/// As for [`free`], with `a` not null.
// Public for the C crate (the legacy entry points' call-free level).
#[doc(hidden)]
#[inline(always)]
pub unsafe fn free_to_then<R: SlowPath>(
    a: *mut GooAllocator,
    ptr: *mut u8,
    size: usize,
    align: usize,
) -> bool {
    if !front::plain_free(ptr, size) {
        return false;
    }
    if a == default::builtin_heap() {
        // SAFETY: the built-in heap is a live `Managed<Heap>`; the caller vouches for the block.
        unsafe { serve_free::<Heap, R>(a, ptr, size, align) };
        return true;
    }
    // SAFETY: `a` is valid (contract).
    if matches!(unsafe { kind_of(a) }, Kind::Debug | Kind::Other) {
        return false;
    }
    // SAFETY: forwarded contract.
    unsafe { free_from::<R>(a, ptr, size, align) };
    true
}

/// The call-free level of a free for the backend type `B` of `a` (see [`serve_alloc`]).
///
/// # Safety
/// `a` is a live `Managed<B>`; `ptr` a live block of it of `size > 0` bytes at `align`.
#[inline(always)]
unsafe fn serve_free<B: Backend, R: SlowPath>(a: *mut GooAllocator, ptr: *mut u8, size: usize, align: usize) {
    let Some(home) = front::home_for::<B>() else {
        crate::policy::cold_path();
        // SAFETY: forwarded contract.
        return unsafe { R::free_slow(a, ptr, size, align) };
    };
    // SAFETY: forwarded contract; `home` is `home_for::<B>()`.
    unsafe { serve_free_at::<B, R>(a, home, ptr, size, align) }
}

/// [`serve_free`] for a caller that found `home_for::<B>()` already.
///
/// # Safety
/// As for [`serve_free`]; `home` as for `front::try_alloc_inline_at`.
#[inline(always)]
unsafe fn serve_free_at<B: Backend, R: SlowPath>(
    a: *mut GooAllocator,
    home: Option<usize>,
    ptr: *mut u8,
    size: usize,
    align: usize,
) {
    // SAFETY: per the contract.
    unsafe {
        if !front::try_free_inline_at(a, Managed::<B>::backend(a), home, ptr, size, align) {
            crate::policy::cold_path();
            R::free_slow(a, ptr, size, align)
        }
    }
}

/// [`serve_free`] as a function of its own.
///
/// # Safety
/// As for [`serve_free`].
#[inline(never)]
unsafe fn free_as<B: Backend, R: SlowPath>(a: *mut GooAllocator, ptr: *mut u8, size: usize, align: usize) {
    // SAFETY: forwarded contract.
    unsafe { serve_free::<B, R>(a, ptr, size, align) }
}

/// The slow path of an allocation the call-free level served but did not count
/// (`front::alloc_uncounted`): counted there, or given back and decided by the slow path.
///
/// # Safety
/// As for `front::alloc_uncounted`.
// Public for the C crate (see `SlowPath`).
#[doc(hidden)]
pub unsafe fn alloc_uncounted(a: *mut GooAllocator, block: *mut u8, size: usize, align: usize) -> *mut u8 {
    // SAFETY: forwarded contract.
    unsafe { front::alloc_uncounted(a, block, size, align) }
}

/// The slow path of a free: the current allocator for null, then the front door's whole
/// policy.
///
/// # Safety
/// As for [`free`].
// Public for the C crate (see `SlowPath`).
#[doc(hidden)]
pub unsafe fn free_slow(allocator: *mut GooAllocator, ptr: *mut u8, size: usize, align: usize) {
    if ptr.is_null() || size == 0 {
        return;
    }
    let a = resolve(allocator);
    // SAFETY: forwarded contract; a free passing `plain_free` but for its observers may take
    // the call-free level.
    unsafe {
        if size <= PLAIN_MAX && !crate::policy::sanitize::active() && try_free_inline(a, ptr, size, align) {
            // Observers only (the call-free level serves every other such free): they hear
            // of it after.
            return front::report_free(a, ptr, size, align);
        }
        front::free_slow(a, ptr, size, align)
    }
}

/// Frees a block (null `ptr` or `size` 0: nothing), with the whole policy.
///
/// # Safety
/// As for [`alloc`]; `ptr` must be null or a live block of `size` bytes allocated from this
/// allocator with this `align`.
#[inline(always)]
pub unsafe fn free(allocator: *mut GooAllocator, ptr: *mut u8, size: usize, align: usize) {
    // SAFETY: forwarded contract.
    unsafe { free_then::<Unguarded>(allocator, ptr, size, align) }
}

/// Resizes a block (see `policy::front::realloc`); null `allocator` = current.
///
/// # Safety
/// As for [`free`], with `old_size` for the block's size.
pub unsafe fn realloc(
    allocator: *mut GooAllocator,
    ptr: *mut u8,
    old_size: usize,
    new_size: usize,
    align: usize,
    options: AllocOptions,
) -> *mut u8 {
    let mut a = resolve(allocator);
    if ptr.is_null() || old_size == 0 {
        // No block: an allocation, or nothing at all for `new_size` 0 (which returns null).
        if new_size == 0 {
            return core::ptr::null_mut();
        }
        // SAFETY: forwarded contract.
        return unsafe { alloc(a, new_size, align, options) };
    }
    if options.contains(AllocOptions::TEMP) {
        // A temporary block is resized where it was served, as it was allocated: by this
        // thread's temporary arena, whatever allocator was named.
        let temp = crate::allocators::temp_arena::allocator();
        if !temp.is_null() {
            a = temp;
        }
    }
    let options = options.without(AllocOptions::TEMP);
    // SAFETY: forwarded contract (a TEMP block is the temporary arena's); the arm matches the
    // backend type the header names.
    unsafe {
        if !a.is_null() && kind_of(a) == Kind::Heap {
            // The default allocator, where a runtime's growing strings and arrays are: its
            // call-free resize first.
            return front::realloc_in(
                a,
                Managed::<Heap>::backend(a),
                ptr,
                old_size,
                new_size,
                align,
                options,
            );
        }
        front::realloc(a, ptr, old_size, new_size, align, options)
    }
}

/// Allocates `count * elem_size` bytes; a product that overflows fails like any bad request.
///
/// # Safety
/// As for [`alloc`].
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

/// Sets the limit on live bytes of `allocator` (null = current); see
/// `policy::front::set_limit`.
///
/// # Safety
/// As for [`alloc`].
pub unsafe fn set_limit(allocator: *mut GooAllocator, max_live_bytes: usize) -> bool {
    // SAFETY: forwarded contract.
    unsafe { front::set_limit(resolve(allocator), max_live_bytes) }
}

/// The limit on live bytes of `allocator` (null = current); 0 = none.
///
/// # Safety
/// As for [`alloc`].
pub unsafe fn limit(allocator: *mut GooAllocator) -> usize {
    // SAFETY: forwarded contract.
    unsafe { front::limit(resolve(allocator)) }
}

/// The statistics of `allocator` (null = current); see `policy::front::stats`.
///
/// # Safety
/// As for [`alloc`].
pub unsafe fn stats(allocator: *mut GooAllocator) -> AllocStats {
    // SAFETY: forwarded contract.
    unsafe { front::stats(resolve(allocator)) }
}
