//! The front door: every allocation through any `GooAllocator` passes here, from C
//! (`goo_memory_*_with`) and from Rust ([`crate::AllocatorRef`]). Policy lives here once:
//! null allocator = current, size 0, overflow and alignment checks, zeroing, stats, the
//! out-of-memory strategy and `NOFAIL`. Allocators themselves are pure mechanism.

use core::ptr;

use crate::arena::{Bump, ARENA_ALLOC};
use crate::managed::{header_of, is_managed};
use crate::managed::{Backend, Managed};
use crate::policy::callbacks::{
    self, MemoryEvent, EVENT_ALL, EVENT_FAILURE, EVENT_FREE, EVENT_REALLOC, EVENT_REQUEST,
};
use crate::policy::callbacks::{EVENT_ALLOC, EVENT_RESET};
use crate::policy::default::{current, current_fast};
use crate::policy::stats::AtomicStatsView;
use crate::policy::strategy::{self, Failure};
use crate::policy::thread_slot::home_slot;
use crate::pool::{Pool, POOL_ALLOC, POOL_FREE};
use crate::raw::{resolve_align, AllocOptions, AllocStats, GooAllocator, MAX_ALIGN, MAX_NATURAL_ALIGN};
use crate::region::{RegionBackend, REGION_ALLOC};
use crate::scoped::{Scoped, SCOPED_ALLOC, SCOPED_FREE};
use crate::system::{System, SYSTEM_ALLOC, SYSTEM_FREE};

/// A zero-size request gets this: non-null, aligned, never dereferenced, freeing it does nothing.
#[inline(always)]
fn dangling(align: usize) -> *mut u8 {
    ptr::without_provenance_mut(align)
}

/// Whether a request with a resolved alignment can be passed to an allocator: `size > 0`, a
/// power-of-two `align <= MAX_ALIGN`, and `size + align <= isize::MAX`. One combined test on the
/// hot path; the cold path sorts out which rule failed.
#[inline(always)]
fn servable(size: usize, align: usize) -> bool {
    let mask = align.wrapping_sub(1);
    (mask & align) == 0 && mask < MAX_ALIGN && size.wrapping_sub(1) < isize::MAX as usize - align
}

/// Resolves alignment 0 and rejects what no allocator can serve (size 0 is servable here).
#[inline(always)]
fn check(size: usize, align: usize) -> Result<usize, Failure> {
    let align = resolve_align(size, align);
    if align.is_power_of_two() && align <= MAX_ALIGN && size <= isize::MAX as usize - align {
        Ok(align)
    } else {
        Err(Failure::InvalidRequest)
    }
}

#[inline(always)]
fn resolve(allocator: *mut GooAllocator) -> *mut GooAllocator {
    if allocator.is_null() {
        // Rare for `*_with` calls (and folded away where null is a constant): laid out of the
        // straight path, which is what costs on a hot path (taken branches), not instructions.
        core::hint::cold_path();
        current()
    } else {
        allocator
    }
}

/// Whether the front door must zero what the backend returns for a ZERO request.
#[inline(always)]
unsafe fn must_zero(allocator: *const GooAllocator) -> bool {
    // SAFETY: caller guarantees `allocator` is a readable vtable (library ones are live).
    unsafe { !(is_managed(allocator) && header_of(allocator).zeroes) }
}

macro_rules! with_stats {
    ($allocator:expr, |$s:ident| $body:expr) => {{
        let a = $allocator;
        // SAFETY (for callers): `a` is valid; library allocators keep sharded stats in their
        // header, C allocators in their embedded field, only ever accessed atomically.
        if is_managed(a) {
            let $s = &header_of(a).stats;
            $body
        } else {
            let $s = AtomicStatsView::new(ptr::addr_of_mut!((*a).stats));
            $body
        }
    }};
}

/// Counts a failed request (always, tracked or not: failures are rare and worth knowing).
#[cold]
unsafe fn count_failure(allocator: *mut GooAllocator) {
    // SAFETY: caller guarantees validity.
    unsafe { with_stats!(allocator, |s| s.record_failure()) }
}

/// Allocates `size` bytes aligned to `align` (0 = natural) from `allocator` (null = current).
///
/// Returns null on failure after applying the allocator's strategy (and counting the failure);
/// with [`AllocOptions::NOFAIL`] it aborts instead. A zero size returns a non-null dangling
/// pointer that must not be dereferenced and is freed as a no-op.
///
/// # Safety
/// `allocator` must be null or point to a valid `GooAllocator` whose functions, if set, behave
/// as the header documents.
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
            Fast::Observe(a) => observed_alloc(a, size, align, options),
            Fast::Scope(scope) => match scoped_alloc_fast(scope, size, align) {
                block if !block.is_null() => block,
                _ => scoped_alloc_rest(scope, size, align),
            },
            Fast::Slow(a) => alloc_slow(a, size, align, options),
        }
    }
}

/// What the call-free part of an allocation ([`alloc_fast`]) or free ([`free_fast`]) came to.
#[derive(Clone, Copy, Debug)]
pub enum Fast<T> {
    /// Done: the block (allocation) or nothing (free).
    Done(T),
    /// Nothing was done; callbacks observe (none can refuse): try [`observed_alloc_leaf`] /
    /// [`observed_free_leaf`] with this allocator and [`report`], then the slow path.
    Observe(*mut GooAllocator),
    /// A plain request to this scope: try [`scoped_alloc_fast`] / [`scoped_free_fast`] (also
    /// call-free, with a frame of their own), then the slow path.
    Scope(*mut GooAllocator),
    /// Nothing was done: the slow path does it all, with this allocator (what the request
    /// named, resolved if that was done: the same allocator, so only one value stays live).
    Slow(*mut GooAllocator),
}

/// The part of [`alloc`] that calls nothing: a plain request (no options, nobody listening)
/// that a library allocator serves inline (a system thread-cache hit, a pool pop, an arena or
/// region bump; a scope is sent on to [`scoped_alloc_fast`]) and, if tracked, counts on the
/// thread's ready shard.
/// Otherwise it did nothing and says what comes next (see [`Fast`]).
///
/// Calling nothing, it needs no stack frame and cannot unwind: the C entry points run it
/// outside their panic guard and jump to the guarded rest (a tail call).
///
/// # Safety
/// As for [`alloc`].
#[inline(always)]
pub unsafe fn alloc_fast(
    allocator: *mut GooAllocator,
    size: usize,
    align: usize,
    options: AllocOptions,
) -> Fast<*mut u8> {
    let a = if allocator.is_null() { current_fast() } else { allocator };
    // An explicit alignment is checked here; sizes (0, too large) by each leaf, whose own
    // bounds cover them (folded away for every `goo_memory_alloc*` call, alignment 0).
    if a.is_null() || options.0 != 0 || (align != 0 && !servable(size, align)) {
        return Fast::Slow(a);
    }
    let mask = callbacks::mask();
    if mask & (EVENT_REQUEST | EVENT_ALLOC) != 0 {
        // Callbacks that may refuse a request take the slow path; observers hear of it after
        // the call-free path served it (and of a failure from the slow path, which it is).
        core::hint::cold_path();
        return if mask & EVENT_REQUEST == 0 { Fast::Observe(a) } else { Fast::Slow(a) };
    }
    // SAFETY: `a` is valid per the contract.
    unsafe {
        let Some(alloc_fn) = (*a).alloc else { return Fast::Slow(a) };
        let alloc_fn = alloc_fn as *const ();
        let block = if alloc_fn == SYSTEM_ALLOC as *const () {
            system_leaf(a, size, align)
        } else if alloc_fn == POOL_ALLOC as *const () {
            pool_leaf(a, size, align)
        } else if alloc_fn == SCOPED_ALLOC as *const () {
            return if plain_servable(size, align) { Fast::Scope(a) } else { Fast::Slow(a) };
        } else {
            bump_leaf(a, alloc_fn, size, align)
        };
        if block.is_null() {
            Fast::Slow(a)
        } else {
            Fast::Done(block)
        }
    }
}

/// A plain, servable request while callbacks only observe ([`Fast::Observe`]), served by the
/// call-free path; `EVENT_ALLOC` is the caller's to send ([`report`]). Calling nothing, a caller
/// that then reaches [`report`] with a tail call needs no stack frame (and saves no registers)
/// for it. Null when it did nothing (then the slow path, which reports too).
///
/// # Safety
/// `a` is valid; `align` is 0 (natural) or passes the front door's checks with `size`.
#[inline(always)]
pub unsafe fn observed_alloc_leaf(a: *mut GooAllocator, size: usize, align: usize) -> *mut u8 {
    // SAFETY: forwarded contract.
    unsafe { alloc_leaf(a, size, align) }
}

/// The reporting half of [`observed_alloc_leaf`] and [`observed_free_fast`]: an `EVENT_ALLOC` or
/// `EVENT_FREE` (`kind`) of `block` to those who listen ([`Fast::Observe`] found some).
#[inline(always)]
pub fn report(kind: u32, a: *mut GooAllocator, block: *mut u8, size: usize, align: usize) {
    callbacks::deliver_listened(kind, || {
        let mut e = MemoryEvent::new(kind, a, size, align, AllocOptions::DEFAULT);
        e.ptr = block.cast();
        e
    });
}

/// [`report`] of an allocation in a frame of its own, returning the block (reached with a
/// tail call).
#[inline(never)]
fn reported_alloc(a: *mut GooAllocator, block: *mut u8, size: usize, align: usize) -> *mut u8 {
    report(EVENT_ALLOC, a, block, size, align);
    block
}

/// [`report`] of a free in a frame of its own (reached with a tail call).
#[inline(never)]
fn reported_free(a: *mut GooAllocator, ptr: *mut u8, size: usize, align: usize) {
    report(EVENT_FREE, a, ptr, size, align);
}

/// [`Fast::Observe`] for Rust callers: [`observed_alloc_leaf`] and the report, else the slow
/// path.
///
/// # Safety
/// As for [`alloc`].
#[inline(never)]
unsafe fn observed_alloc(a: *mut GooAllocator, size: usize, align: usize, options: AllocOptions) -> *mut u8 {
    // SAFETY: forwarded contract.
    unsafe {
        match observed_alloc_leaf(a, size, align) {
            block if !block.is_null() => reported_alloc(a, block, size, align),
            _ => alloc_slow(a, size, align, options),
        }
    }
}

/// [`Fast::Observe`] for Rust callers: [`observed_free_fast`], else the slow path.
///
/// # Safety
/// As for [`free`].
#[inline(never)]
unsafe fn observed_free(a: *mut GooAllocator, ptr: *mut u8, size: usize, align: usize) {
    // SAFETY: forwarded contract.
    unsafe {
        if observed_free_leaf(a, ptr, size, align) {
            reported_free(a, ptr, size, resolve_align(size, align))
        } else if !observed_free_fast(a, ptr, size, align) {
            free_slow(a, ptr, size, align)
        }
    }
}

/// A free while callbacks only observe ([`Fast::Observe`]): freed by the front door's own path
/// (`free_leaf`, which may call the C library's or an allocator's free), then `EVENT_FREE` to
/// those who listen. Whether it freed the block.
///
/// # Safety
/// `a` is valid; `ptr` is a live block of `size` bytes from it with this `align`.
#[inline(always)]
pub unsafe fn observed_free_fast(a: *mut GooAllocator, ptr: *mut u8, size: usize, align: usize) -> bool {
    // SAFETY: forwarded contract.
    if !unsafe { free_leaf(a, ptr, size, align) } {
        return false;
    }
    report(EVENT_FREE, a, ptr, size, resolve_align(size, align));
    true
}

/// The common part of [`observed_free_fast`] that calls nothing at all (a system thread-cache
/// push, a pool push): whether it freed the block; if not, it did nothing. A caller that then
/// reaches [`report`] with a tail call needs no stack frame for it.
///
/// # Safety
/// As for [`observed_free_fast`].
#[inline(always)]
pub unsafe fn observed_free_leaf(a: *mut GooAllocator, ptr: *mut u8, size: usize, align: usize) -> bool {
    // SAFETY: `a` valid; the caller vouches for the block.
    unsafe {
        let Some(free_fn) = (*a).free else { return false };
        let free_addr = free_fn as *const ();
        if free_addr == SYSTEM_FREE as *const () {
            if !crate::system::cacheable(size, align) {
                // Not the cache's: `free` is a call, left to `observed_free_fast`.
                return false;
            }
            let home = home_slot();
            let counted = (*a).track_stats;
            if counted && !(is_managed(a) && header_of(a).stats.try_record_free_at(home, size)) {
                return false;
            }
            if crate::system::try_cached_free(home, ptr, size) {
                return true;
            }
            // A full cache (or none): `free` is a call, left to `observed_free_fast`.
            if counted {
                header_of(a).stats.undo_record_free_at(home, size);
            }
            return false;
        }
        if free_addr == POOL_FREE as *const () && count_free_fast(a, size) {
            // An unchecked pool (checked ones have vtable functions of their own).
            Managed::<Pool>::backend(a).push(ptr);
            return true;
        }
    }
    false
}

/// Whether a request passes the front door's checks (size > 0; alignment 0 needs one size
/// check, as in `alloc_inner`).
#[inline(always)]
fn plain_servable(size: usize, align: usize) -> bool {
    if align == 0 {
        size.wrapping_sub(1) < isize::MAX as usize - MAX_NATURAL_ALIGN
    } else {
        servable(size, align)
    }
}

/// Counts (if tracked) and serves a request without a call, or does nothing and returns null
/// (also for size 0 or one no allocator can serve: each leaf's bounds exclude those). Counting
/// comes first because it is what may refuse (a thread without its shard, a new high-water
/// mark); a backend that then cannot serve inline has it taken back. Scopes are not served here
/// but in [`scoped_alloc_fast`] (their frame stays off this path).
///
/// # Safety
/// `a` is valid; `align` is 0 (natural) or passes the front door's checks with `size`.
#[inline(always)]
unsafe fn alloc_leaf(a: *mut GooAllocator, size: usize, align: usize) -> *mut u8 {
    // SAFETY: `a` is valid.
    unsafe {
        let Some(alloc_fn) = (*a).alloc else { return ptr::null_mut() };
        let alloc_fn = alloc_fn as *const ();
        if alloc_fn == SYSTEM_ALLOC as *const () {
            system_leaf(a, size, align)
        } else if alloc_fn == POOL_ALLOC as *const () {
            pool_leaf(a, size, align)
        } else {
            bump_leaf(a, alloc_fn, size, align)
        }
    }
}

/// [`alloc_leaf`] for a system allocator: its thread cache, counted on the same home slot (it
/// finds both the thread's stats shard and its cache).
///
/// # Safety
/// As for [`alloc_leaf`]; `a`'s alloc function is [`SYSTEM_ALLOC`].
#[inline(always)]
unsafe fn system_leaf(a: *mut GooAllocator, size: usize, align: usize) -> *mut u8 {
    if !crate::system::cacheable(size, align) {
        // Not the cache's: no home slot to find, nothing to count and take back.
        return ptr::null_mut();
    }
    let home = home_slot();
    // SAFETY: `a` is valid.
    unsafe {
        let counted = (*a).track_stats;
        if counted && !(is_managed(a) && header_of(a).stats.try_record_alloc_at(home, size)) {
            return ptr::null_mut();
        }
        let block = crate::system::try_cached_alloc(home, size, align);
        if block.is_null() && counted {
            header_of(a).stats.undo_record_alloc_at(home, size);
        }
        block
    }
}

/// [`alloc_leaf`] for an unchecked pool: a pop, counted after (a push undoes it).
///
/// # Safety
/// As for [`alloc_leaf`]; `a`'s alloc function is [`POOL_ALLOC`].
#[inline(always)]
unsafe fn pool_leaf(a: *mut GooAllocator, size: usize, align: usize) -> *mut u8 {
    // SAFETY: `a` is an unchecked pool (its vtable says so).
    unsafe {
        let pool = Managed::<Pool>::backend(a);
        let block = pool.try_alloc_request(size, align);
        if !block.is_null()
            && (*a).track_stats
            && !(is_managed(a) && header_of(a).stats.try_record_alloc(size))
        {
            pool.push(block);
            return ptr::null_mut();
        }
        block
    }
}

/// [`alloc_leaf`] for arenas and regions (null for anything else): counted first (what may
/// refuse), taken back if the chunk is full.
///
/// # Safety
/// As for [`alloc_leaf`]; `alloc_fn` is `a`'s alloc function.
#[inline(always)]
unsafe fn bump_leaf(a: *mut GooAllocator, alloc_fn: *const (), size: usize, align: usize) -> *mut u8 {
    // SAFETY: `a` is valid; library allocators are recognised by their alloc function and
    // served through their backends, which they are.
    unsafe {
        let bump = if alloc_fn == ARENA_ALLOC as *const () {
            Managed::<Bump>::backend(a)
        } else if alloc_fn == REGION_ALLOC as *const () {
            Managed::<RegionBackend>::backend(a).bump()
        } else {
            return ptr::null_mut();
        };
        if !plain_servable(size, align) {
            return ptr::null_mut();
        }
        let counted = (*a).track_stats;
        if counted && !(is_managed(a) && header_of(a).stats.try_record_alloc(size)) {
            return ptr::null_mut();
        }
        let block = bump_fast(bump, size, align);
        if block.is_null() && counted {
            header_of(a).stats.undo_record_alloc_at(home_slot(), size);
        }
        block
    }
}

/// A plain request to a scope, short of the whole policy: a small block from the scope's free
/// list or newest chunk, counted on the scope. Null when it did nothing (then
/// [`scoped_alloc_rest`]). What [`Fast::Scope`] leads to (out of [`alloc_fast`], whose other
/// paths then need no saved registers).
///
/// # Safety
/// `a` is a valid scope; `align` is 0 (natural) or passes the front door's checks with `size`.
#[inline(never)]
pub unsafe fn scoped_alloc_fast(a: *mut GooAllocator, size: usize, align: usize) -> *mut u8 {
    // SAFETY: forwarded contract.
    unsafe { scoped_alloc_inline(a, size, align) }
}

/// [`scoped_alloc_fast`] inlined, for callers that are out of line themselves (and may know
/// `align`).
///
/// # Safety
/// As for [`scoped_alloc_fast`].
#[inline(always)]
pub unsafe fn scoped_alloc_inline(a: *mut GooAllocator, size: usize, align: usize) -> *mut u8 {
    // SAFETY: `a` is a scope (its vtable says so), so a library allocator whose counters are
    // single-owner (a scope is not `Sync`); its parent outlives it.
    unsafe {
        if !Scoped::is_small(size, align) {
            // A parent block of its own: the parent's whole path, in `scoped_alloc_rest`.
            return ptr::null_mut();
        }
        // From the scope's own chunks; its counting never refuses.
        let block = Managed::<Scoped>::backend(a).try_alloc_small(size);
        if !block.is_null() && (*a).track_stats {
            header_of(a).stats.record_alloc_owned(size);
        }
        block
    }
}

/// What a plain request to a scope needs when [`scoped_alloc_fast`] did nothing. A large block:
/// a parent block from the parent's whole path (its call-free path first), then the header,
/// counted on the scope (the scope's failure strategy if the parent fails), short of the
/// scope's own slow path. Anything else (a small block needing a new chunk, live PERSIST
/// blocks): [`alloc_slow`].
///
/// # Safety
/// As for [`scoped_alloc_fast`].
#[inline(never)]
pub unsafe fn scoped_alloc_rest(a: *mut GooAllocator, size: usize, align: usize) -> *mut u8 {
    // SAFETY: `a` is a scope (its vtable says so; see `scoped_alloc_inline`); its parent
    // outlives it.
    unsafe {
        let scope = Managed::<Scoped>::backend(a);
        let Some((parent, total, parent_align, slot)) = scope.plan_alloc(size, align) else {
            return alloc_slow(a, size, align, AllocOptions::DEFAULT);
        };
        let base = alloc(parent, total, parent_align, AllocOptions::DEFAULT);
        if base.is_null() {
            return alloc_failed(a, size, resolve_align(size, align), AllocOptions::DEFAULT);
        }
        if (*a).track_stats {
            header_of(a).stats.record_alloc_owned(size);
        }
        scope.link(base, slot, parent_align, size)
    }
}

/// An arena's inline bump, or null.
#[inline(always)]
fn bump_fast(bump: &Bump, size: usize, align: usize) -> *mut u8 {
    bump.try_bump(size, resolve_align(size, align)).map_or(ptr::null_mut(), |p| p.as_ptr())
}

/// What [`alloc_fast`] did not do: the request with the whole policy.
///
/// # Safety
/// As for [`alloc`].
#[inline(never)]
pub unsafe fn alloc_slow(
    allocator: *mut GooAllocator,
    size: usize,
    align: usize,
    options: AllocOptions,
) -> *mut u8 {
    let a = resolve(allocator);
    if callbacks::listening(EVENT_ALL) {
        // SAFETY: forwarded contract.
        return unsafe {
            if align == 0 && options.0 == 0 {
                // Every `goo_memory_alloc*_with` call: a copy of the observed path made for it
                // (folded where the arguments are constants).
                alloc_observed_plain(a, size)
            } else {
                alloc_observed(a, size, align, options)
            }
        };
    }
    // SAFETY: forwarded contract.
    unsafe { alloc_inner(a, size, align, options) }
}

/// The allocation itself (no callbacks). `a` is resolved.
#[inline(always)]
unsafe fn alloc_inner(a: *mut GooAllocator, size: usize, align: usize, options: AllocOptions) -> *mut u8 {
    // Alignment 0 (every `goo_memory_alloc*` call) needs one size check: the natural alignment
    // is always a valid one. An explicit alignment gets the full check.
    let ok = if align == 0 {
        size.wrapping_sub(1) < isize::MAX as usize - MAX_NATURAL_ALIGN
    } else {
        servable(size, align)
    };
    // SAFETY: `a` is valid per the contract; the fast path only reads the vtable and calls its
    // alloc with a servable request, everything else is out of line.
    unsafe {
        let alloc_fn = match (*a).alloc {
            Some(f) if ok && !options.contains(AllocOptions::TEMP) => f,
            _ => return alloc_unusual(a, size, align, options),
        };
        // The system allocator is called directly (no vtable hop); the check is one compare of
        // the function pointer already loaded. It takes alignment 0 as it is (malloc's own
        // alignment covers the natural one), so the common call computes no alignment at all.
        // Pools too (an inline pop; alignment 0 needs no resolving there either).
        let block = if alloc_fn as *const () == SYSTEM_ALLOC as *const () {
            System.alloc(size, align, options)
        } else if alloc_fn as *const () == POOL_ALLOC as *const () {
            Managed::<Pool>::backend(a).alloc_request(size, align)
        } else {
            let align = resolve_align(size, align);
            if alloc_fn as *const () == ARENA_ALLOC as *const () {
                // Likewise the arena (an inline bump) and scopes.
                Managed::<Bump>::backend(a).alloc(size, align)
            } else if alloc_fn as *const () == SCOPED_ALLOC as *const () {
                Backend::alloc(Managed::<Scoped>::backend(a), size, align, options)
            } else if alloc_fn as *const () == REGION_ALLOC as *const () {
                // And regions: an arena's bump too.
                Managed::<RegionBackend>::backend(a).bump().alloc(size, align)
            } else {
                alloc_fn((*a).context, size, align, options).cast::<u8>()
            }
        };
        if block.is_null() {
            return alloc_failed(a, size, resolve_align(size, align), options);
        }
        if options.0 != 0 || (*a).track_stats {
            // The common counted case, a library allocator whose counting needs no call, is
            // done inline; everything else (zeroing, C allocators, a new shard or peak) out of
            // line, as a tail call.
            if options.0 == 0 && is_managed(a) && header_of(a).stats.try_record_alloc(size) {
                return block;
            }
            return finish_alloc_slow(a, block, size, options);
        }
        block
    }
}

/// [`finish_alloc`] out of line.
#[inline(never)]
unsafe fn finish_alloc_slow(
    a: *mut GooAllocator,
    block: *mut u8,
    size: usize,
    options: AllocOptions,
) -> *mut u8 {
    // SAFETY: forwarded contract.
    unsafe { finish_alloc(a, block, size, options) }
}

/// [`alloc_observed`] at natural alignment with no options, specialised for them.
#[inline(never)]
unsafe fn alloc_observed_plain(a: *mut GooAllocator, size: usize) -> *mut u8 {
    // SAFETY: forwarded contract.
    unsafe { observe_alloc(a, size, 0, AllocOptions::DEFAULT) }
}

/// See [`observe_alloc`].
#[inline(never)]
unsafe fn alloc_observed(a: *mut GooAllocator, size: usize, align: usize, options: AllocOptions) -> *mut u8 {
    // SAFETY: forwarded contract.
    unsafe { observe_alloc(a, size, align, options) }
}

/// An allocation while callbacks listen: the request (which a callback may refuse), then the
/// outcome. Events are built only when someone listens to them.
#[inline(always)]
unsafe fn observe_alloc(a: *mut GooAllocator, size: usize, align: usize, options: AllocOptions) -> *mut u8 {
    if size == 0 {
        // SAFETY: forwarded contract.
        return unsafe { alloc_inner(a, size, align, options) };
    }
    if callbacks::listening(EVENT_REQUEST) {
        // SAFETY: forwarded contract.
        return unsafe { alloc_requested(a, size, align, options) };
    }
    // SAFETY: forwarded contract.
    let block = unsafe { alloc_inner(a, size, align, options) };
    notify_outcome(a, block, size, align, options);
    block
}

/// An allocation that callbacks may refuse.
#[cold]
#[inline(never)]
unsafe fn alloc_requested(a: *mut GooAllocator, size: usize, align: usize, options: AllocOptions) -> *mut u8 {
    let request = MemoryEvent::new(EVENT_REQUEST, a, size, align, options);
    // SAFETY: `a` is valid (caller's contract).
    let block = unsafe {
        if callbacks::dispatch(&request) {
            alloc_inner(a, size, align, options)
        } else {
            // Intercepted: a failure like any other; each retry asks the callbacks again.
            let align = resolve_align(size, align);
            let (alloc_fn, ctx) = ((*a).alloc, (*a).context);
            let attempt = || match alloc_fn {
                Some(f) if servable(size, align) && callbacks::dispatch(&request) => {
                    f(ctx, size, align, options).cast::<u8>()
                }
                _ => ptr::null_mut(),
            };
            let block = fail(a, Failure::Intercepted, size, align, options, attempt);
            if !block.is_null() {
                finish_alloc(a, block, size, options);
            }
            block
        }
    };
    notify_outcome(a, block, size, align, options);
    block
}

/// `EVENT_ALLOC` (or `EVENT_FAILURE` for null) to whoever listens.
#[inline(always)]
fn notify_outcome(a: *mut GooAllocator, block: *mut u8, size: usize, align: usize, options: AllocOptions) {
    let kind = if block.is_null() { EVENT_FAILURE } else { EVENT_ALLOC };
    callbacks::deliver(kind, || {
        let mut e = MemoryEvent::new(kind, a, size, align, options);
        e.ptr = block.cast();
        e
    });
}

/// Zeroing and counting after a successful allocation; returns the block.
#[inline(always)]
unsafe fn finish_alloc(a: *mut GooAllocator, block: *mut u8, size: usize, options: AllocOptions) -> *mut u8 {
    // SAFETY: `a` valid; `block` is a fresh block of `size` bytes.
    unsafe {
        if options.contains(AllocOptions::ZERO) && must_zero(a) {
            ptr::write_bytes(block, 0, size);
        }
        count_alloc(a, size);
    }
    block
}

/// Counts a successful allocation if `allocator` tracks stats. For Rust fast paths that serve
/// a request without the vtable (an arena's inline bump) and must still be counted.
///
/// # Safety
/// `allocator` must be valid (not null).
#[inline(always)]
pub unsafe fn count_alloc(allocator: *mut GooAllocator, size: usize) {
    // SAFETY: caller guarantees validity.
    unsafe {
        if (*allocator).track_stats {
            with_stats!(allocator, |s| s.record_alloc(size));
        }
    }
}

/// Counts a free, as [`count_alloc`].
///
/// # Safety
/// `allocator` must be valid (not null).
#[inline(always)]
pub unsafe fn count_free(allocator: *mut GooAllocator, size: usize) {
    // SAFETY: caller guarantees validity.
    unsafe {
        if (*allocator).track_stats {
            with_stats!(allocator, |s| s.record_free(size));
        }
    }
}

/// Size 0, an unservable request, or no alloc function.
#[cold]
#[inline(never)]
unsafe fn alloc_unusual(a: *mut GooAllocator, size: usize, align: usize, options: AllocOptions) -> *mut u8 {
    // SAFETY: `a` is valid (caller's contract).
    unsafe {
        if options.contains(AllocOptions::TEMP) {
            // Short-lived: served by this thread's temporary arena, whatever allocator was named.
            let temp = crate::temp::allocator();
            if !temp.is_null() && temp != a {
                return alloc_inner(temp, size, align, options.without(AllocOptions::TEMP));
            }
        }
        let align = match check(size, align) {
            Ok(align) => align,
            Err(f) => return fail(a, f, size, align, options, ptr::null_mut),
        };
        if size == 0 {
            return dangling(align);
        }
        match (*a).alloc {
            // TEMP that could not be routed (thread exiting): serve it here.
            Some(_) => alloc_inner(a, size, align, options.without(AllocOptions::TEMP)),
            None => fail(a, Failure::NoFunction, size, align, options, ptr::null_mut),
        }
    }
}

/// The backend returned null: apply the strategy with retries of the same request.
#[cold]
#[inline(never)]
unsafe fn alloc_failed(a: *mut GooAllocator, size: usize, align: usize, options: AllocOptions) -> *mut u8 {
    // SAFETY: `a` is valid; its alloc function exists (it just returned null).
    unsafe {
        let (alloc_fn, ctx) = ((*a).alloc, (*a).context);
        let attempt = || match alloc_fn {
            Some(f) => f(ctx, size, align, options).cast::<u8>(),
            None => ptr::null_mut(),
        };
        let block = fail(a, Failure::OutOfMemory, size, align, options, attempt);
        if !block.is_null() {
            finish_alloc(a, block, size, options);
        }
        block
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
    // A saturated product is larger than any valid request, so `alloc` refuses and counts it.
    // SAFETY: forwarded contract.
    unsafe { alloc(allocator, count.saturating_mul(elem_size), align, options) }
}

/// Applies the strategy; counts the failure if it still fails.
#[cold]
#[inline(never)]
unsafe fn fail(
    a: *mut GooAllocator,
    failure: Failure,
    size: usize,
    align: usize,
    options: AllocOptions,
    attempt: impl FnMut() -> *mut u8,
) -> *mut u8 {
    // SAFETY: caller guarantees `a` is valid.
    unsafe {
        let block = strategy::apply(a, failure, size, align, options, attempt);
        if block.is_null() {
            count_failure(a);
        }
        block
    }
}

/// Resizes a block from `old_size` to `new_size` bytes. A null `ptr` (or `old_size` 0)
/// allocates; `new_size` 0 frees and returns null. On failure returns null and the block is
/// untouched. With ZERO, bytes past `old_size` are zeroed.
///
/// # Safety
/// As for [`alloc`]; `ptr` must be null or a live block of `old_size` bytes allocated from this
/// allocator with this `align`.
pub unsafe fn realloc(
    allocator: *mut GooAllocator,
    ptr: *mut u8,
    old_size: usize,
    new_size: usize,
    align: usize,
    options: AllocOptions,
) -> *mut u8 {
    let a = resolve(allocator);
    if callbacks::listening(EVENT_ALL) && !ptr.is_null() && old_size != 0 && new_size != 0 {
        // SAFETY: forwarded contract.
        return unsafe { realloc_observed(a, ptr, old_size, new_size, align, options) };
    }
    // SAFETY: forwarded contract.
    unsafe { realloc_inner(a, ptr, old_size, new_size, align, options) }
}

/// A resize while callbacks listen: the request (refusable), then the outcome.
#[cold]
#[inline(never)]
unsafe fn realloc_observed(
    a: *mut GooAllocator,
    ptr: *mut u8,
    old_size: usize,
    new_size: usize,
    align: usize,
    options: AllocOptions,
) -> *mut u8 {
    let mut event = MemoryEvent::new(EVENT_REQUEST, a, new_size, align, options);
    event.old_ptr = ptr.cast();
    event.old_size = old_size;
    let block = if callbacks::listening(EVENT_REQUEST) && !callbacks::dispatch(&event) {
        // Intercepted: the block stays as it was; the strategy decides what happens next.
        // SAFETY: `a` is valid; retries go through the callbacks and the full path again.
        unsafe {
            fail(a, Failure::Intercepted, new_size, align, options, || {
                if callbacks::dispatch(&event) {
                    realloc_inner(a, ptr, old_size, new_size, align, options)
                } else {
                    ptr::null_mut()
                }
            })
        }
    } else {
        // SAFETY: forwarded contract.
        unsafe { realloc_inner(a, ptr, old_size, new_size, align, options) }
    };
    event.kind = if block.is_null() { EVENT_FAILURE } else { EVENT_REALLOC };
    event.ptr = block.cast();
    if callbacks::listening(event.kind) {
        callbacks::dispatch(&event);
    }
    block
}

/// The resize itself (no callbacks). `a` is resolved.
unsafe fn realloc_inner(
    a: *mut GooAllocator,
    ptr: *mut u8,
    old_size: usize,
    new_size: usize,
    align: usize,
    options: AllocOptions,
) -> *mut u8 {
    if ptr.is_null() || old_size == 0 {
        // SAFETY: forwarded contract.
        return unsafe { alloc(a, new_size, align, options) };
    }
    if new_size == 0 {
        // SAFETY: forwarded contract.
        unsafe { free(a, ptr, old_size, align) };
        return ptr::null_mut();
    }
    let align = match check(new_size.max(old_size), align) {
        Ok(align) => align,
        // SAFETY: `a` is valid.
        Err(f) => return unsafe { fail(a, f, new_size, align, options, ptr::null_mut) },
    };
    // SAFETY: `a` is valid.
    let (realloc_fn, alloc_fn, free_fn, ctx) = unsafe { ((*a).realloc, (*a).alloc, (*a).free, (*a).context) };
    let attempt = || -> *mut u8 {
        match (realloc_fn, alloc_fn) {
            // SAFETY: the caller vouches for `ptr`/`old_size`; sizes and alignment checked.
            (Some(f), _) => unsafe { f(ctx, ptr.cast(), old_size, new_size, align, options).cast() },
            (None, Some(f)) => {
                // No realloc in the vtable: alloc, copy, free.
                // SAFETY: as above; both blocks live and disjoint while copying.
                unsafe {
                    let new = f(ctx, new_size, align, options.without(AllocOptions::ZERO)).cast::<u8>();
                    if !new.is_null() {
                        ptr::copy_nonoverlapping(ptr, new, old_size.min(new_size));
                        if let Some(free) = free_fn {
                            free(ctx, ptr.cast(), old_size, align);
                        }
                    }
                    new
                }
            }
            (None, None) => ptr::null_mut(),
        }
    };
    let mut block = attempt();
    if block.is_null() {
        let failure = if realloc_fn.is_none() && alloc_fn.is_none() {
            Failure::NoFunction
        } else {
            Failure::OutOfMemory
        };
        // SAFETY: `a` is valid.
        block = unsafe { fail(a, failure, new_size, align, options, attempt) };
        if block.is_null() {
            return block;
        }
    }
    // SAFETY: `a` valid; `block` holds `new_size` bytes.
    unsafe {
        if new_size > old_size
            && options.contains(AllocOptions::ZERO)
            && (realloc_fn.is_none() || must_zero(a))
        {
            ptr::write_bytes(block.add(old_size), 0, new_size - old_size);
        }
        if (*a).track_stats {
            with_stats!(a, |s| s.record_realloc(old_size, new_size));
        }
    }
    block
}

/// Frees a block. Null `ptr` or `size` 0 does nothing.
///
/// # Safety
/// As for [`alloc`]; `ptr` must be null or a live block of `size` bytes allocated from this
/// allocator with this `align`.
#[inline(always)]
pub unsafe fn free(allocator: *mut GooAllocator, ptr: *mut u8, size: usize, align: usize) {
    // SAFETY: forwarded contract.
    unsafe {
        match free_fast(allocator, ptr, size, align) {
            Fast::Done(()) => {}
            Fast::Observe(a) => observed_free(a, ptr, size, align),
            Fast::Scope(scope) => {
                if !scoped_free_fast(scope, ptr, size) {
                    free_slow(scope, ptr, size, align)
                }
            }
            Fast::Slow(a) => free_slow(a, ptr, size, align),
        }
    }
}

/// The part of [`free`] that calls nothing but C (the system's `free`, an allocator's free
/// function): an unobserved free, counted on the thread's ready shard if tracked. Unless it is
/// [`Fast::Done`] it did nothing and says what comes next.
///
/// It cannot unwind: the C entry points run it outside their panic guard, its calls are tail
/// calls.
///
/// # Safety
/// As for [`free`].
#[inline(always)]
pub unsafe fn free_fast(allocator: *mut GooAllocator, ptr: *mut u8, size: usize, align: usize) -> Fast<()> {
    if ptr.is_null() || size == 0 {
        return Fast::Done(());
    }
    let a = if allocator.is_null() { current_fast() } else { allocator };
    if a.is_null() {
        return Fast::Slow(a);
    }
    if callbacks::listening(EVENT_FREE) {
        // Observers only (no callback can refuse a free): they hear of it after.
        core::hint::cold_path();
        return Fast::Observe(a);
    }
    // SAFETY: `a` valid; the caller vouches for the block.
    unsafe {
        if free_leaf(a, ptr, size, align) {
            Fast::Done(())
        } else if (*a).free.is_some_and(|f| f as *const () == SCOPED_FREE as *const ()) {
            Fast::Scope(a)
        } else {
            Fast::Slow(a)
        }
    }
}

/// Counts (if tracked) and releases a block without a call but into C, or does nothing and
/// returns false. Counting, what may refuse, comes first; the release cannot fail. Scopes are
/// left to [`scoped_free_fast`].
///
/// # Safety
/// `a` is valid; `ptr` is a live block of `size > 0` bytes from it with this `align`.
#[inline(always)]
unsafe fn free_leaf(a: *mut GooAllocator, ptr: *mut u8, size: usize, align: usize) -> bool {
    // SAFETY: `a` valid; the caller vouches for the block.
    unsafe {
        let Some(free_fn) = (*a).free else { return false };
        let free_addr = free_fn as *const ();
        if free_addr == SYSTEM_FREE as *const () {
            // The thread's home slot finds both its stats shard and its block cache.
            let home = home_slot();
            if (*a).track_stats && !(is_managed(a) && header_of(a).stats.try_record_free_at(home, size)) {
                return false;
            }
            crate::system::free_at(home, ptr, size, align);
            return true;
        }
        if free_addr == SCOPED_FREE as *const () || !count_free_fast(a, size) {
            return false;
        }
        if free_addr == POOL_FREE as *const () {
            // An unchecked pool (checked ones have vtable functions of their own).
            Managed::<Pool>::backend(a).push(ptr);
        } else {
            free_fn((*a).context, ptr.cast(), size, resolve_align(size, align));
        }
    }
    true
}

/// A free to a scope, short of the whole policy: the block checked as the scope's and counted
/// on the scope; a small block goes on its free list; a large one is counted on the parent,
/// unlinked, and its parent block released (`release_leaf_at`). Whatever may refuse (the check,
/// the parent's counting) comes before anything is changed. Returns whether it freed
/// the block. What [`Fast::Scope`] leads to.
///
/// # Safety
/// `a` is a valid scope; `ptr` is a live block of `size` bytes from it.
#[inline(never)]
pub unsafe fn scoped_free_fast(a: *mut GooAllocator, ptr: *mut u8, size: usize) -> bool {
    // SAFETY: forwarded contract.
    unsafe { scoped_free_inline(a, ptr, size) }
}

/// [`scoped_free_fast`] inlined, for callers that are out of line themselves.
///
/// # Safety
/// As for [`scoped_free_fast`].
#[inline(always)]
pub unsafe fn scoped_free_inline(a: *mut GooAllocator, ptr: *mut u8, size: usize) -> bool {
    // SAFETY: `a` is a scope (its vtable says so: a library allocator with single-owner
    // counters); its parent outlives it.
    unsafe {
        let scope = Managed::<Scoped>::backend(a);
        let Some(block) = scope.plan_free(ptr) else { return false };
        if block.is_small() {
            if (*a).track_stats {
                header_of(a).stats.record_free_owned(size);
            }
            scope.forget_small(block);
            return true;
        }
        let (parent, base, total, parent_align) = block.parent_block(scope);
        // One home-slot lookup for the parent's counting and its release. The parent's
        // counting is all that may refuse; the scope's own (single-owner) never does.
        let home = home_slot();
        if !count_free_fast_at(parent, home, total) {
            return false;
        }
        if (*a).track_stats {
            header_of(a).stats.record_free_owned(size);
        }
        scope.forget(block, total);
        release_leaf_at(parent, home, base, total, parent_align);
        true
    }
}

/// Counts a free of `size` on `a` if it is tracked, when that needs no call; whether it may go
/// on (untracked, or counted).
///
/// # Safety
/// `a` is valid.
#[inline(always)]
unsafe fn count_free_fast(a: *mut GooAllocator, size: usize) -> bool {
    // SAFETY: `a` is valid.
    unsafe { !(*a).track_stats || (is_managed(a) && header_of(a).stats.try_record_free(size)) }
}

/// [`count_free_fast`] with `home_slot()`'s answer.
///
/// # Safety
/// `a` is valid.
#[inline(always)]
unsafe fn count_free_fast_at(a: *mut GooAllocator, home: Option<usize>, size: usize) -> bool {
    // SAFETY: `a` is valid.
    unsafe { !(*a).track_stats || (is_managed(a) && header_of(a).stats.try_record_free_at(home, size)) }
}

/// Gives a block back without a call but into C: the system's cache or `free` (`home` is
/// `home_slot()`'s answer), a pool's push, else the allocator's free function (C, or a library
/// shim: mechanism only).
///
/// # Safety
/// `a` is valid; `ptr` is a live block of `size > 0` bytes from it with this `align`.
#[inline(always)]
unsafe fn release_leaf_at(
    a: *mut GooAllocator,
    home: Option<usize>,
    ptr: *mut u8,
    size: usize,
    align: usize,
) {
    // SAFETY: the caller vouches for `a` and the block.
    unsafe {
        let Some(free_fn) = (*a).free else { return };
        let free_addr = free_fn as *const ();
        if free_addr == SYSTEM_FREE as *const () {
            crate::system::free_at(home, ptr, size, align);
        } else if free_addr == POOL_FREE as *const () {
            // An unchecked pool (checked ones have vtable functions of their own).
            Managed::<Pool>::backend(a).push(ptr);
        } else {
            free_fn((*a).context, ptr.cast(), size, resolve_align(size, align));
        }
    }
}

/// What [`free_fast`] did not do: the whole policy (observed, counted through a call, the
/// current allocator found through a thread-local).
///
/// # Safety
/// As for [`free`].
#[inline(never)]
pub unsafe fn free_slow(allocator: *mut GooAllocator, ptr: *mut u8, size: usize, align: usize) {
    if ptr.is_null() || size == 0 {
        return;
    }
    let a = resolve(allocator);
    // SAFETY: `a` valid; the caller vouches for the block.
    unsafe {
        // Untracked, unobserved: the free is a tail call (no state kept across it, no registers
        // to save). Counted or observed frees go out of line. Alignment 0 is resolved only
        // where a free function needs it (the system's does not).
        if (*a).track_stats || callbacks::listening(EVENT_FREE) {
            return if callbacks::listening(EVENT_FREE) {
                if align == 0 {
                    free_observed_plain(a, ptr, size)
                } else {
                    free_observed(a, ptr, size, align)
                }
            } else {
                free_tracked(a, ptr, size, align)
            };
        }
        release(a, ptr, size, align);
    }
}

/// A counted, unobserved free. The common case, a library allocator whose counting needs no
/// call, keeps the free a tail call and saves no registers; the rest goes to [`free_accounted`].
#[inline(never)]
unsafe fn free_tracked(a: *mut GooAllocator, ptr: *mut u8, size: usize, align: usize) {
    // SAFETY: forwarded contract.
    unsafe {
        if is_managed(a) && header_of(a).stats.try_record_free(size) {
            return release(a, ptr, size, align);
        }
        core::hint::cold_path();
        free_accounted(a, ptr, size, align)
    }
}

/// A counted free the fast path could not count (a C allocator's embedded stats, a thread
/// without its shard yet).
#[inline(never)]
unsafe fn free_accounted(a: *mut GooAllocator, ptr: *mut u8, size: usize, align: usize) {
    // SAFETY: forwarded contract.
    unsafe {
        // Released first, counted after: only the allocator and the size stay live across the
        // free, so the counting (and its rare calls) needs few saved registers.
        release(a, ptr, size, align);
        count_free(a, size);
    }
}

/// Gives a block back through the vtable (the system allocator directly). `align` may still be
/// 0 (natural).
#[inline(always)]
unsafe fn release(a: *mut GooAllocator, ptr: *mut u8, size: usize, align: usize) {
    // SAFETY: the caller vouches for `a` and the block.
    unsafe {
        if let Some(free_fn) = (*a).free {
            if free_fn as *const () == SYSTEM_FREE as *const () {
                System.free(ptr, size, align);
            } else if free_fn as *const () == POOL_FREE as *const () {
                Managed::<Pool>::backend(a).free_object(ptr);
            } else {
                let align = resolve_align(size, align);
                if free_fn as *const () == SCOPED_FREE as *const () {
                    Backend::free(Managed::<Scoped>::backend(a), ptr, size, align);
                } else {
                    free_fn((*a).context, ptr.cast(), size, align);
                }
            }
        }
    }
}

/// [`free_observed`] at natural alignment, specialised for it.
#[inline(never)]
unsafe fn free_observed_plain(a: *mut GooAllocator, ptr: *mut u8, size: usize) {
    // SAFETY: forwarded contract.
    unsafe { observe_free(a, ptr, size, 0) }
}

/// See [`observe_free`].
#[inline(never)]
unsafe fn free_observed(a: *mut GooAllocator, ptr: *mut u8, size: usize, align: usize) {
    // SAFETY: forwarded contract.
    unsafe { observe_free(a, ptr, size, align) }
}

/// A free while callbacks listen: counted, released, then the event, in one frame.
#[inline(always)]
unsafe fn observe_free(a: *mut GooAllocator, ptr: *mut u8, size: usize, align: usize) {
    // SAFETY: forwarded contract.
    unsafe {
        count_free(a, size);
        release(a, ptr, size, align);
    }
    callbacks::deliver(EVENT_FREE, || {
        let mut e = MemoryEvent::new(EVENT_FREE, a, size, resolve_align(size, align), AllocOptions::DEFAULT);
        e.ptr = ptr.cast();
        e
    });
}

/// Tells callbacks that `allocator` is being reset or destroyed (`EVENT_RESET`/`EVENT_DESTROY`).
pub fn notify(kind: u32, allocator: *mut GooAllocator) {
    if callbacks::listening(kind) {
        callbacks::dispatch(&MemoryEvent::new(kind, allocator, 0, 0, AllocOptions::DEFAULT));
    }
}

/// The statistics of `allocator` (null = current). For library allocators this merges the
/// per-thread counters and refreshes the embedded `stats` field with the result.
///
/// # Safety
/// As for [`alloc`].
pub unsafe fn stats(allocator: *mut GooAllocator) -> AllocStats {
    let a = resolve(allocator);
    // SAFETY: `a` is valid; the embedded field is only accessed atomically by the library.
    unsafe {
        let embedded = AtomicStatsView::new(ptr::addr_of_mut!((*a).stats));
        if is_managed(a) {
            let header = header_of(a);
            let mut snap = header.stats.snapshot();
            snap.bytes_reserved = (header.reserved_fn)(a, snap.bytes_allocated);
            embedded.store(&snap);
            snap
        } else {
            embedded.snapshot()
        }
    }
}

/// Zeroes the counters of `allocator` (but `bytes_reserved`, which describes memory held).
///
/// # Safety
/// As for [`alloc`]; no other thread may use the allocator meanwhile.
pub unsafe fn reset_stats(allocator: *mut GooAllocator) {
    let a = resolve(allocator);
    // SAFETY: `a` is valid.
    unsafe {
        let embedded = AtomicStatsView::new(ptr::addr_of_mut!((*a).stats));
        let reserved = embedded.snapshot().bytes_reserved;
        if is_managed(a) {
            header_of(a).stats.reset();
        }
        embedded.store(&AllocStats { bytes_reserved: reserved, ..AllocStats::default() });
    }
}

/// Records that `allocator` freed all its live blocks at once (an arena or pool reset): live
/// bytes and blocks drop to zero and the blocks count as frees. No other thread may use the
/// allocator meanwhile.
///
/// # Safety
/// As for [`alloc`].
pub unsafe fn record_reset(allocator: *mut GooAllocator) {
    let a = resolve(allocator);
    notify(EVENT_RESET, a);
    // SAFETY: `a` is valid.
    unsafe {
        if (*a).track_stats {
            with_stats!(a, |s| s.record_reset());
        }
    }
}

/// Records that `count` blocks totalling `bytes` were freed at once (a rewind to a
/// checkpoint). No other thread may use the allocator meanwhile.
///
/// # Safety
/// As for [`alloc`].
pub unsafe fn record_bulk_free(allocator: *mut GooAllocator, bytes: usize, count: usize) {
    let a = resolve(allocator);
    // SAFETY: `a` is valid.
    unsafe {
        if (*a).track_stats {
            with_stats!(a, |s| s.record_bulk_free(bytes, count));
        }
    }
}

/// The size-class histogram of a library allocator (`None` for allocators written in C).
///
/// # Safety
/// As for [`alloc`].
pub unsafe fn histogram(allocator: *mut GooAllocator) -> Option<crate::policy::stats::SizeHistogram> {
    let a = resolve(allocator);
    // SAFETY: `a` is valid.
    unsafe { is_managed(a).then(|| header_of(a).stats.histogram()) }
}
