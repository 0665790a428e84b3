//! The front door's policy, the same for every allocator and independent of which one it is:
//! request checks, size 0, zeroing, stats, callbacks, the out-of-memory strategy and `NOFAIL`.
//! Allocators are mechanism ([`Backend`]); the dispatch above them (`crate::dispatch`) picks
//! the allocator's type from its header's kind and calls in here.
//!
//! Two levels, as in bumpalo (`try_alloc_layout_fast` / `alloc_layout_slow`) and PostgreSQL
//! (`mcxt.c` over `aset.c`):
//! - `try_alloc_inline` / [`try_free_inline`], generic over the backend: a plain request
//!   served by the backend's call-free fast path and counted on the thread's ready stats shard.
//!   They call nothing that can unwind, so the C entry points run them outside their panic
//!   guard and need no stack frame for them. [`plain_request`] says whether a request may take
//!   them.
//! - [`alloc_slow`] / [`free_slow`] / [`realloc`]: the whole policy, through the allocator's
//!   vtable, for any allocator (C-made ones included). Everything the inline level declines
//!   lands here, and so do allocators asking their parent for memory.
//!
//! What must hold: a request is counted exactly once, by whoever serves it. The inline level
//! first finds counters ready to count it without a call (`ShardedStats::ready`: the
//! thread's shard exists; else the slow path does it all), then lets the backend serve, then
//! counts what was served: nothing is counted before it is done, so nothing is ever taken
//! back. A count that needs a call (a new high-water mark, a limit) is made by
//! [`alloc_uncounted`], reached by a tail call; when a limit refuses it, the block goes back
//! to the backend uncounted and the slow path's reservation decides.
//!
//! `TEMP` is routed to the thread's temporary arena by the dispatch, before the policy sees a
//! request; here it is only a hint.

use core::cell::Cell;
use core::ptr;

use crate::policy::backend::{header_of, is_managed, Backend};
use crate::policy::callbacks::{
    self, MemoryEvent, EVENT_ALL, EVENT_ALLOC, EVENT_FAILURE, EVENT_FREE, EVENT_REALLOC, EVENT_REQUEST,
    EVENT_RESET,
};
use crate::policy::limit;
use crate::policy::refusal;
use crate::policy::stats::{AtomicStatsView, Reservation, ShardedStats};
use crate::policy::strategy::{self, Failure};
use crate::policy::thread_slot::home_slot;
use crate::raw::{
    checked_align, plain_servable, resolve_align, AllocFn, AllocOptions, AllocStats, GooAllocator, PLAIN_MAX,
};

/// A zero-size request gets this: non-null, aligned, never dereferenced, freeing it does nothing.
#[inline(always)]
fn dangling(align: usize) -> *mut u8 {
    ptr::without_provenance_mut(align)
}

/// Whether a request may take the call-free level: no options, servable size and alignment,
/// at most `PLAIN_MAX` bytes, no callback listening to requests or allocations (the slow
/// path tells them). One load serves the size bound and the callback check
/// ([`callbacks::plain_alloc_bound`]), so the call-free level tests nothing after serving.
#[inline(always)]
pub fn plain_request(size: usize, align: usize, options: AllocOptions) -> bool {
    options.0 == 0 && plain_servable(size, align, callbacks::plain_alloc_bound())
}

/// Whether a free may take the call-free level: a non-null block of `0 < size <=`
/// `PLAIN_MAX` bytes, and no callback listening to frees. Null, size 0, larger blocks and
/// observed frees go to the slow path, which does nothing for the first two.
#[inline(always)]
pub fn plain_free(ptr: *mut u8, size: usize) -> bool {
    size.wrapping_sub(1) < callbacks::plain_free_bound() && !ptr.is_null()
}

/// Whether a request that [`plain_request`] declined only because allocations are observed
/// may still be served by the call-free level, then reported ([`report_alloc`]).
#[inline(always)]
pub fn observed_plain_request(size: usize, align: usize, options: AllocOptions) -> bool {
    options.0 == 0
        && plain_servable(size, align, PLAIN_MAX)
        && !callbacks::listening(EVENT_REQUEST)
        && !crate::policy::sanitize::active()
}

/// The calling thread's home slot where a thread-safe backend needs it (for its stats shard
/// and its own per-thread state): `Some(None)` for single-owner backends, which never look it
/// up; `None` when the thread does not own its home slot, and so the call-free level cannot
/// serve it.
#[inline(always)]
pub(crate) fn home_for<B: Backend>() -> Option<Option<usize>> {
    if B::THREAD_SAFE {
        home_slot().map(Some)
    } else {
        Some(None)
    }
}

/// What the call-free level did with an allocation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Inline {
    /// Served and counted.
    Served(*mut u8),
    /// Nothing done: the slow path serves it.
    Declined,
    /// The backend served this block, but counting it needs a call (a new high-water mark of
    /// the thread's shard, a limit): [`alloc_uncounted`] counts it or gives it back.
    Uncounted(*mut u8),
}

/// The call-free level of an allocation: the backend's fast path serves a request that passed
/// [`plain_request`] (or [`observed_plain_request`]), counted if the allocator is tracked.
///
/// # Safety
/// `a` is a live library allocator whose backend is `backend`; the request passed
/// [`plain_request`] or [`observed_plain_request`].
#[inline(always)]
pub(crate) unsafe fn try_alloc_inline<B: Backend>(
    a: *mut GooAllocator,
    backend: &B,
    size: usize,
    align: usize,
) -> Inline {
    let Some(home) = home_for::<B>() else {
        crate::policy::cold_path();
        return Inline::Declined;
    };
    // SAFETY: forwarded contract; `home` is `home_for::<B>()`.
    unsafe { try_alloc_inline_at(a, backend, home, size, align) }
}

/// [`try_alloc_inline`] for a caller that found the thread's home slot already.
///
/// # Safety
/// As for [`try_alloc_inline`]; `home` is what `home_for::<B>()` gives: for a thread-safe
/// backend, the calling thread's home slot, which it owns.
#[inline(always)]
pub(crate) unsafe fn try_alloc_inline_at<B: Backend>(
    a: *mut GooAllocator,
    backend: &B,
    home: Option<usize>,
    size: usize,
    align: usize,
) -> Inline {
    // SAFETY: `a` is live; a library allocator's header is reachable from it. The request
    // passed `plain_request`, so `0 < size <= PLAIN_MAX` for the plain count.
    unsafe {
        let stats = &header_of(a).stats;
        if !(*a).track_stats {
            // A limit needs the live count: a limited allocator counts in the slow path.
            if stats.limited() {
                return Inline::Declined;
            }
            return served(backend.try_alloc_inline(home, size, align));
        }
        let counters = if B::THREAD_SAFE {
            let Some(counters) = stats.ready(home) else {
                crate::policy::cold_path();
                return Inline::Declined;
            };
            counters
        } else {
            stats.ready_owned()
        };
        let block = backend.try_alloc_inline(home, size, align);
        if block.is_null() {
            return Inline::Declined;
        }
        if counters.count_plain_alloc(size) {
            Inline::Served(block)
        } else {
            crate::policy::cold_path();
            Inline::Uncounted(block)
        }
    }
}

/// The call-free level of a resize of `ptr`, a block of `a` (whose backend is `backend`),
/// counted as a resize: the block, or null having changed nothing (the slow path resizes it
/// then). A resize that would take the thread's counters past their mark (a peak check, a
/// limit) is left to the slow path before anything changes; so is every resize of a
/// single-owner allocator, whose counts check its limit.
///
/// # Safety
/// As for [`try_alloc_inline_at`] with `new_size`; `ptr` is a block of `a` of `old_size` bytes
/// at `align` as the caller vouches (the backend checks what it can), and `old_size` passed
/// [`plain_free`].
#[inline(always)]
unsafe fn try_realloc_inline_at<B: Backend>(
    a: *mut GooAllocator,
    backend: &B,
    home: Option<usize>,
    ptr: *mut u8,
    old_size: usize,
    new_size: usize,
    align: usize,
) -> *mut u8 {
    // SAFETY: `a` is live; a library allocator's header is reachable from it. Both sizes are
    // plain (the contract), in `1..=PLAIN_MAX`.
    unsafe {
        let stats = &header_of(a).stats;
        if !(*a).track_stats {
            // A limit needs the live count: a limited allocator counts in the slow path.
            if stats.limited() {
                return core::ptr::null_mut();
            }
            return backend.try_realloc_inline(home, ptr, old_size, new_size, align);
        }
        if !B::THREAD_SAFE {
            return core::ptr::null_mut();
        }
        let Some(counters) = stats.ready(home) else { return core::ptr::null_mut() };
        if !counters.fits_resize(old_size, new_size) {
            return core::ptr::null_mut();
        }
        let block = backend.try_realloc_inline(home, ptr, old_size, new_size, align);
        if !block.is_null() {
            counters.count_plain_resize(old_size, new_size);
        }
        block
    }
}

#[inline(always)]
fn served(block: *mut u8) -> Inline {
    if block.is_null() {
        Inline::Declined
    } else {
        Inline::Served(block)
    }
}

/// The slow path of an allocation the call-free level served but did not count
/// (`Inline::Uncounted`): counted here (a new high-water mark, a count within a shared
/// allocator's grant) and told to whoever listens, or, when a limit refuses it, given back
/// uncounted and decided by the slow path (`alloc_over_limit`).
///
/// # Safety
/// `a` is a live library allocator; `block` what its backend just served for a plain request
/// of `size` bytes at `align`, not counted.
#[cold]
#[inline(never)]
pub unsafe fn alloc_uncounted(a: *mut GooAllocator, block: *mut u8, size: usize, align: usize) -> *mut u8 {
    // SAFETY: `a` is live (contract).
    if unsafe { header_of(a) }.stats.count_uncounted(size) {
        // Plain when served, unless a listener came meanwhile: told if so.
        return report_alloc(a, block, size, align);
    }
    // SAFETY: forwarded contract.
    unsafe { alloc_over_limit(a, block, size, align) }
}

/// A block the call-free level served but a limit refused to count (a single owner's, or a
/// shared allocator's thread past its grant): it goes back to the backend uncounted, then the
/// slow path decides the request (its reservation may grant the thread more room; else it
/// fails and applies the strategy, whose retry may succeed).
///
/// # Safety
/// `a` is a live library allocator; `block` what its backend just served for a plain request
/// of `size` bytes at `align`, not counted.
#[cold]
#[inline(never)]
unsafe fn alloc_over_limit(a: *mut GooAllocator, block: *mut u8, size: usize, align: usize) -> *mut u8 {
    // SAFETY: per the contract.
    unsafe {
        (header_of(a).release_fn)(a, block, size, align);
        alloc_slow(a, size, align, AllocOptions::DEFAULT)
    }
}

/// The call-free level of a free: released by the backend's fast path, counted if tracked. Whether it freed the block (else it did nothing).
///
/// # Safety
/// `a` is a live library allocator whose backend is `backend`; `ptr` a live block of it of
/// `0 < size <= PLAIN_MAX` bytes at `align` (as [`plain_free`] checks).
#[inline(always)]
pub unsafe fn try_free_inline<B: Backend>(
    a: *mut GooAllocator,
    backend: &B,
    ptr: *mut u8,
    size: usize,
    align: usize,
) -> bool {
    let Some(home) = home_for::<B>() else {
        crate::policy::cold_path();
        return false;
    };
    // SAFETY: forwarded contract; `home` is `home_for::<B>()`.
    unsafe { try_free_inline_at(a, backend, home, ptr, size, align) }
}

/// [`try_free_inline`] for a caller that found the thread's home slot already.
///
/// # Safety
/// As for [`try_free_inline`]; `home` as for [`try_alloc_inline_at`].
#[inline(always)]
pub(crate) unsafe fn try_free_inline_at<B: Backend>(
    a: *mut GooAllocator,
    backend: &B,
    home: Option<usize>,
    ptr: *mut u8,
    size: usize,
    align: usize,
) -> bool {
    // SAFETY: forwarded contract, which includes `0 < size <= PLAIN_MAX` for the plain count.
    unsafe {
        let stats = &header_of(a).stats;
        if !(*a).track_stats {
            if stats.limited() {
                return false;
            }
            return backend.try_free_inline(home, ptr, size, align);
        }
        let counters = if B::THREAD_SAFE {
            let Some(counters) = stats.ready(home) else {
                crate::policy::cold_path();
                return false;
            };
            counters
        } else {
            stats.ready_owned()
        };
        let freed = backend.try_free_inline(home, ptr, size, align);
        if freed {
            counters.count_plain_free(size);
        }
        freed
    }
}

/// An allocation from a library allocator whose backend type is known: the call-free level,
/// then the slow path. For Rust callers (C callers reach the same levels through the dispatch).
///
/// # Safety
/// `a` is a live library allocator whose backend is `backend`.
#[inline(always)]
pub unsafe fn alloc_in<B: Backend>(
    a: *mut GooAllocator,
    backend: &B,
    size: usize,
    align: usize,
    options: AllocOptions,
) -> *mut u8 {
    // SAFETY: forwarded contract.
    unsafe {
        let plain = plain_request(size, align, options);
        if plain || observed_plain_request(size, align, options) {
            match try_alloc_inline(a, backend, size, align) {
                Inline::Served(block) if plain => return block,
                Inline::Served(block) => return report_alloc(a, block, size, align),
                Inline::Uncounted(block) => return alloc_uncounted(a, block, size, align),
                Inline::Declined => {}
            }
        }
        alloc_slow(a, size, align, options)
    }
}

/// A free to a library allocator whose backend type is known (see [`alloc_in`]).
///
/// # Safety
/// As for [`try_free_inline`]; `ptr` may be null and `size` 0 (then nothing happens).
#[inline(always)]
pub unsafe fn free_in<B: Backend>(
    a: *mut GooAllocator,
    backend: &B,
    ptr: *mut u8,
    size: usize,
    align: usize,
) {
    // SAFETY: forwarded contract.
    unsafe {
        if plain_free(ptr, size) && try_free_inline(a, backend, ptr, size, align) {
            return;
        }
        free_slow(a, ptr, size, align)
    }
}

/// A resize of a block of a library allocator whose backend type is known (see [`alloc_in`]):
/// the call-free level (`try_realloc_inline_at`) for a plain resize nobody listens to, then
/// the slow path, [`realloc`].
///
/// # Safety
/// As for [`realloc`]; `a` is a live library allocator whose backend is `backend`.
#[inline(always)]
pub unsafe fn realloc_in<B: Backend>(
    a: *mut GooAllocator,
    backend: &B,
    ptr: *mut u8,
    old_size: usize,
    new_size: usize,
    align: usize,
    options: AllocOptions,
) -> *mut u8 {
    // SAFETY: forwarded contract; the call-free level only for plain sizes, with nobody
    // listening.
    unsafe {
        if plain_request(new_size, align, options)
            && plain_free(ptr, old_size)
            && !callbacks::listening(EVENT_ALL)
        {
            if let Some(home) = home_for::<B>() {
                let block = try_realloc_inline_at(a, backend, home, ptr, old_size, new_size, align);
                if !block.is_null() {
                    return block;
                }
            }
        }
        realloc(a, ptr, old_size, new_size, align, options)
    }
}

/// `EVENT_ALLOC` of a block the call-free level served, to those who listen (a request that
/// passed [`observed_plain_request`]); returns the block.
#[cold]
#[inline(never)]
pub fn report_alloc(a: *mut GooAllocator, block: *mut u8, size: usize, align: usize) -> *mut u8 {
    report(EVENT_ALLOC, a, block, size, resolve_align(size, align));
    block
}

/// `EVENT_FREE` of a freed block, to those who listen.
#[cold]
#[inline(never)]
pub fn report_free(a: *mut GooAllocator, block: *mut u8, size: usize, align: usize) {
    report(EVENT_FREE, a, block, size, resolve_align(size, align));
}

#[inline(always)]
fn report(kind: u32, a: *mut GooAllocator, block: *mut u8, size: usize, align: usize) {
    // The slow paths that served a request call-free come here whether or not anyone listens.
    if !callbacks::listening(kind) {
        return;
    }
    callbacks::deliver_listened(kind, || {
        let mut e = MemoryEvent::new(kind, a, size, align, AllocOptions::DEFAULT);
        e.ptr = block.cast();
        e
    });
}

/// Whether the front door must zero what the backend returns for a ZERO request.
#[inline(always)]
unsafe fn must_zero(allocator: *const GooAllocator) -> bool {
    // SAFETY: caller guarantees `allocator` is a readable vtable (library ones are live).
    unsafe { !(is_managed(allocator) && header_of(allocator).zeroes) }
}

/// The counters of `a`: a library allocator's sharded stats, or a C allocator's embedded ones
/// (only ever accessed atomically).
enum Counters<'a> {
    Sharded(&'a ShardedStats),
    Embedded(AtomicStatsView<'a>),
}

impl Counters<'_> {
    /// # Safety
    /// `a` is a valid allocator (live if a library one).
    #[inline(always)]
    unsafe fn of<'a>(a: *mut GooAllocator) -> Counters<'a> {
        // SAFETY: per the contract; the embedded field is only accessed atomically.
        unsafe {
            if is_managed(a) {
                Counters::Sharded(&header_of(a).stats)
            } else {
                Counters::Embedded(AtomicStatsView::new(ptr::addr_of_mut!((*a).stats)))
            }
        }
    }

    fn record_alloc(&self, size: usize) {
        match self {
            Counters::Sharded(s) => s.record_alloc(size),
            Counters::Embedded(s) => s.record_alloc(size),
        }
    }
}

/// How a request of the slow path was counted against the allocator's limit.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Reserved {
    /// No limit: counted as usual, if tracked, once served.
    No,
    /// A library allocator's stats counted the bytes live; the rest is counted once served
    /// (or the bytes taken back).
    InStats,
    /// A C-made allocator's limit counted them ([`limit`]); its stats count as usual.
    InTable,
    /// The limit refused: nothing counted.
    Refused,
}

/// Counts `bytes` against `a`'s limit, if it has one.
///
/// # Safety
/// `a` is valid (live, if a library allocator).
unsafe fn reserve(a: *mut GooAllocator, bytes: usize) -> Reserved {
    // SAFETY: per the contract.
    unsafe {
        if is_managed(a) {
            let header = header_of(a);
            match header.stats.reserve(bytes) {
                Reservation::Unlimited => Reserved::No,
                Reservation::Reserved => Reserved::InStats,
                Reservation::Refused => Reserved::Refused,
                Reservation::OverBudget if (header.reserve_over_budget_fn)(a, bytes) => Reserved::InStats,
                Reservation::OverBudget => Reserved::Refused,
            }
        } else {
            match limit::reserve(a, bytes) {
                limit::Reserve::Unlimited => Reserved::No,
                limit::Reserve::Reserved => Reserved::InTable,
                limit::Reserve::Refused => Reserved::Refused,
            }
        }
    }
}

/// Takes back what [`reserve`] counted, for a request that failed.
///
/// # Safety
/// As for [`reserve`].
unsafe fn unreserve(a: *mut GooAllocator, bytes: usize, reserved: Reserved) {
    // SAFETY: per the contract.
    unsafe {
        match reserved {
            Reserved::InStats => header_of(a).stats.unreserve(bytes),
            Reserved::InTable => limit::release(a, bytes),
            Reserved::No | Reserved::Refused => {}
        }
    }
}

/// Whether `a` counts live bytes: tracked, or limited (a limit needs the count).
///
/// # Safety
/// As for [`reserve`].
#[inline(always)]
unsafe fn counting(a: *mut GooAllocator) -> bool {
    // SAFETY: per the contract.
    unsafe {
        (*a).track_stats || if is_managed(a) { header_of(a).stats.limited() } else { limit::limited(a) }
    }
}

/// One allocation through `a`'s vtable function `f`, within `a`'s limit: the block (null if
/// the limit or `f` refused) and how it was counted.
///
/// # Safety
/// `a` is valid; `f` its alloc function; the request is servable.
unsafe fn alloc_within_limit(
    a: *mut GooAllocator,
    f: AllocFn,
    size: usize,
    align: usize,
    options: AllocOptions,
) -> (*mut u8, Reserved) {
    // SAFETY: per the contract.
    unsafe {
        let reserved = reserve(a, size);
        if reserved == Reserved::Refused {
            return (ptr::null_mut(), reserved);
        }
        let block = f((*a).context, size, align, options).cast::<u8>();
        if block.is_null() {
            unreserve(a, size, reserved);
        }
        (block, reserved)
    }
}

impl Counters<'_> {
    fn record_free(&self, size: usize) {
        match self {
            Counters::Sharded(s) => s.record_free(size),
            Counters::Embedded(s) => s.record_free(size),
        }
    }

    fn record_realloc(&self, old_size: usize, new_size: usize) {
        match self {
            Counters::Sharded(s) => s.record_realloc(old_size, new_size),
            Counters::Embedded(s) => s.record_realloc(old_size, new_size),
        }
    }

    fn record_failure(&self) {
        match self {
            Counters::Sharded(s) => s.record_failure(),
            Counters::Embedded(s) => s.record_failure(),
        }
    }

    fn record_reset(&self) {
        match self {
            Counters::Sharded(s) => s.record_reset(),
            Counters::Embedded(s) => s.record_reset(),
        }
    }

    fn record_bulk_free(&self, bytes: usize, count: usize) {
        match self {
            Counters::Sharded(s) => s.record_bulk_free(bytes, count),
            Counters::Embedded(s) => s.record_bulk_free(bytes, count),
        }
    }
}

/// Allocates `size` bytes aligned to `align` (0 = natural) from `a`, with the whole policy,
/// through its vtable. Returns null on failure after applying the allocator's strategy (and
/// counting the failure); with [`AllocOptions::NOFAIL`] it aborts instead. A zero size returns
/// a non-null dangling pointer that must not be dereferenced and is freed as a no-op.
///
/// # Safety
/// `a` must point to a valid `GooAllocator` (live, if a library allocator) whose functions, if
/// set, behave as the header documents.
#[inline(never)]
pub unsafe fn alloc_slow(a: *mut GooAllocator, size: usize, align: usize, options: AllocOptions) -> *mut u8 {
    // SAFETY: forwarded contract.
    unsafe {
        if callbacks::listening(EVENT_ALL) {
            return alloc_observed(a, size, align, options);
        }
        alloc_unobserved(a, size, align, options)
    }
}

/// An allocation its caller can do without: a backend's speculative request for more than it
/// needs (a scope's next chunk, which a chunk for the one block at hand replaces if refused).
/// As [`alloc_slow`] when it succeeds (counted, its callbacks told); refused, it is null and
/// nothing else: no strategy, no failure counted, no failure event. The fallback request, made
/// with the whole policy, is the caller's.
///
/// # Safety
/// As for [`alloc_slow`].
pub(crate) unsafe fn alloc_speculative(
    a: *mut GooAllocator,
    size: usize,
    align: usize,
    options: AllocOptions,
) -> *mut u8 {
    let Some(align) = checked_align(size, align).filter(|_| size != 0) else {
        return ptr::null_mut();
    };
    // SAFETY: `a` is valid per the contract; its alloc function gets a servable request.
    unsafe {
        if callbacks::listening(EVENT_REQUEST)
            && !callbacks::dispatch(&MemoryEvent::new(EVENT_REQUEST, a, size, align, options))
        {
            return ptr::null_mut();
        }
        let Some(alloc_fn) = (*a).alloc else { return ptr::null_mut() };
        let (block, reserved) = alloc_within_limit(a, alloc_fn, size, align, options);
        if block.is_null() {
            return block;
        }
        let block = finish_alloc(a, block, size, options, reserved);
        callbacks::deliver(EVENT_ALLOC, || {
            let mut e = MemoryEvent::new(EVENT_ALLOC, a, size, align, options);
            e.ptr = block.cast();
            e
        });
        block
    }
}

/// The allocation itself, with nobody listening.
#[inline(always)]
unsafe fn alloc_unobserved(
    a: *mut GooAllocator,
    size: usize,
    align: usize,
    options: AllocOptions,
) -> *mut u8 {
    let Some(align) = checked_align(size, align) else {
        // SAFETY: `a` is valid.
        return unsafe { alloc_unusual(a, size, align, options) };
    };
    // SAFETY: `a` is valid per the contract; its alloc function gets a servable request.
    unsafe {
        let Some(alloc_fn) = (*a).alloc else {
            return fail(a, Failure::NoFunction, size, align, options, ptr::null_mut);
        };
        let (block, reserved) = alloc_within_limit(a, alloc_fn, size, align, options);
        if block.is_null() {
            return alloc_failed(a, size, align, options, reserved);
        }
        finish_alloc(a, block, size, options, reserved)
    }
}

/// Size 0, or a request no allocator can serve.
#[cold]
#[inline(never)]
unsafe fn alloc_unusual(a: *mut GooAllocator, size: usize, align: usize, options: AllocOptions) -> *mut u8 {
    match checked_align(size.max(1), align) {
        Some(align) if size == 0 => dangling(align),
        // SAFETY: `a` is valid (caller's contract).
        _ => unsafe { fail(a, Failure::InvalidRequest, size, align, options, ptr::null_mut) },
    }
}

/// An allocation while callbacks listen: the request (which a callback may refuse), then the
/// outcome. Events are built only when someone listens to them.
#[cold]
#[inline(never)]
unsafe fn alloc_observed(a: *mut GooAllocator, size: usize, align: usize, options: AllocOptions) -> *mut u8 {
    // SAFETY: forwarded contract.
    unsafe {
        if size == 0 {
            return alloc_unobserved(a, size, align, options);
        }
        let block = if callbacks::listening(EVENT_REQUEST) {
            alloc_requested(a, size, align, options)
        } else {
            alloc_unobserved(a, size, align, options)
        };
        let kind = if block.is_null() { EVENT_FAILURE } else { EVENT_ALLOC };
        callbacks::deliver(kind, || {
            let mut e = MemoryEvent::new(kind, a, size, align, options);
            e.ptr = block.cast();
            e
        });
        block
    }
}

/// An allocation that callbacks may refuse.
unsafe fn alloc_requested(a: *mut GooAllocator, size: usize, align: usize, options: AllocOptions) -> *mut u8 {
    let request = MemoryEvent::new(EVENT_REQUEST, a, size, align, options);
    // SAFETY: `a` is valid (caller's contract).
    unsafe {
        if callbacks::dispatch(&request) {
            return alloc_unobserved(a, size, align, options);
        }
        // Intercepted: a failure like any other; each retry asks the callbacks again.
        let align = resolve_align(size, align);
        let alloc_fn = (*a).alloc;
        let servable = checked_align(size, align).is_some();
        let mut reserved = Reserved::No;
        let attempt = || match alloc_fn {
            Some(f) if servable && callbacks::dispatch(&request) => {
                let (block, r) = alloc_within_limit(a, f, size, align, options);
                reserved = r;
                block
            }
            _ => ptr::null_mut(),
        };
        let block = fail(a, Failure::Intercepted, size, align, options, attempt);
        if block.is_null() {
            return block;
        }
        finish_alloc(a, block, size, options, reserved)
    }
}

/// Zeroing and counting after a successful allocation (`reserved`: how the limit counted
/// it); returns the block.
#[inline(always)]
unsafe fn finish_alloc(
    a: *mut GooAllocator,
    block: *mut u8,
    size: usize,
    options: AllocOptions,
    reserved: Reserved,
) -> *mut u8 {
    // SAFETY: `a` valid; `block` is a fresh block of `size` bytes.
    unsafe {
        if options.contains(AllocOptions::ZERO) && must_zero(a) {
            ptr::write_bytes(block, 0, size);
        }
        if reserved == Reserved::InStats {
            header_of(a).stats.record_alloc_reserved(size);
        } else if counting(a) {
            Counters::of(a).record_alloc(size);
        }
    }
    block
}

/// The backend (or the limit) refused: apply the strategy with retries of the same request.
#[cold]
#[inline(never)]
unsafe fn alloc_failed(
    a: *mut GooAllocator,
    size: usize,
    align: usize,
    options: AllocOptions,
    reserved: Reserved,
) -> *mut u8 {
    // SAFETY: `a` is valid; its alloc function exists (it just returned null).
    unsafe {
        let alloc_fn = (*a).alloc;
        let failure =
            if reserved == Reserved::Refused { Failure::LimitReached } else { Failure::OutOfMemory };
        let mut reserved = reserved;
        let attempt = || match alloc_fn {
            Some(f) => {
                let (block, r) = alloc_within_limit(a, f, size, align, options);
                reserved = r;
                block
            }
            None => ptr::null_mut(),
        };
        let block = fail(a, failure, size, align, options, attempt);
        if block.is_null() {
            return block;
        }
        finish_alloc(a, block, size, options, reserved)
    }
}

/// Applies the strategy; counts the failure (always, tracked or not: failures are rare and
/// worth knowing) if it still fails.
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
            Counters::of(a).record_failure();
        }
        block
    }
}

/// Frees a block with the whole policy, through the vtable. Null `ptr` or `size` 0 does
/// nothing.
///
/// # Safety
/// As for [`alloc_slow`]; `ptr` must be null or a live block of `size` bytes allocated from
/// this allocator with this `align`.
#[inline(never)]
pub unsafe fn free_slow(a: *mut GooAllocator, ptr: *mut u8, size: usize, align: usize) {
    // SAFETY: forwarded contract.
    unsafe { release_slow(a, ptr, size, align) };
}

/// [`free_slow`], saying whether the block was freed: false for nothing to free (null, size 0)
/// and for a free a library allocator refused (no live block of its own, reported by it),
/// which changes no stats and which no observer hears of. A wrapper counts a free of its own
/// only when the allocator it wraps did.
///
/// # Safety
/// As for [`free_slow`].
#[inline(never)]
pub(crate) unsafe fn release_slow(a: *mut GooAllocator, ptr: *mut u8, size: usize, align: usize) -> bool {
    if ptr.is_null() || size == 0 {
        return false;
    }
    // SAFETY: `a` valid; the caller vouches for the block.
    unsafe {
        // Released first, counted after: only the allocator and the size stay live across the
        // free. A missing free function leaks the block (and still counts it freed).
        if is_managed(a) {
            if !(header_of(a).release_fn)(a, ptr, size, align) {
                return false;
            }
            if counting(a) {
                Counters::of(a).record_free(size);
            }
        } else {
            if let Some(free_fn) = (*a).free {
                free_fn((*a).context, ptr.cast(), size, resolve_align(size, align));
            }
            // Counted free before the limit's room is given back: another thread that takes
            // the room meanwhile never makes the stats show more than the limit.
            if counting(a) {
                Counters::of(a).record_free(size);
            }
            limit::release(a, size);
        }
    }
    if callbacks::listening(EVENT_FREE) {
        report_free(a, ptr, size, align);
    }
    true
}

/// Resizes a block from `old_size` to `new_size` bytes. A null `ptr` (or `old_size` 0)
/// allocates; `new_size` 0 frees (a block, if there is one) and returns null. On failure returns null and the block is
/// untouched. With ZERO, bytes past `old_size` are zeroed.
///
/// # Safety
/// As for [`alloc_slow`]; `ptr` must be null or a live block of `old_size` bytes allocated from this
/// allocator with this `align`.
pub unsafe fn realloc(
    allocator: *mut GooAllocator,
    ptr: *mut u8,
    old_size: usize,
    new_size: usize,
    align: usize,
    options: AllocOptions,
) -> *mut u8 {
    let a = allocator;
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
        // No block: an allocation, or nothing at all for `new_size` 0 (which returns null).
        if new_size == 0 {
            return ptr::null_mut();
        }
        // SAFETY: forwarded contract.
        return unsafe { alloc_slow(a, new_size, align, options) };
    }
    if new_size == 0 {
        // SAFETY: forwarded contract.
        unsafe { free_slow(a, ptr, old_size, align) };
        return ptr::null_mut();
    }
    let asked_align = align;
    let Some(align) = checked_align(new_size.max(old_size), align) else {
        // SAFETY: `a` is valid.
        return unsafe { fail(a, Failure::InvalidRequest, new_size, align, options, ptr::null_mut) };
    };
    // SAFETY: `a` is valid.
    let (mut realloc_fn, alloc_fn, free_fn, ctx) =
        unsafe { ((*a).realloc, (*a).alloc, (*a).free, (*a).context) };
    // Each block at its own alignment for an allocator written in C: at natural alignment a
    // block under 16 bytes has a smaller one than its resize may (the vtable's realloc takes
    // one alignment for both), so such a resize is alloc, copy, free when the vtable can.
    let (old_align, new_align) = (resolve_align(old_size, asked_align), resolve_align(new_size, asked_align));
    // SAFETY: `a` is valid.
    let exact =
        old_align != new_align && !unsafe { is_managed(a) } && alloc_fn.is_some() && free_fn.is_some();
    if exact {
        realloc_fn = None;
    }
    let (old_align, new_align) = if exact { (old_align, new_align) } else { (align, align) };
    let attempt = || -> *mut u8 {
        match (realloc_fn, alloc_fn) {
            // SAFETY: the caller vouches for `ptr`/`old_size`; sizes and alignment checked.
            (Some(f), _) => unsafe { f(ctx, ptr.cast(), old_size, new_size, align, options).cast() },
            (None, Some(f)) => {
                // No realloc in the vtable (or not at one alignment): alloc, copy, free.
                // SAFETY: as above; both blocks live and disjoint while copying.
                unsafe {
                    let new = f(ctx, new_size, new_align, options.without(AllocOptions::ZERO)).cast::<u8>();
                    if !new.is_null() {
                        ptr::copy_nonoverlapping(ptr, new, old_size.min(new_size));
                        if let Some(free) = free_fn {
                            free(ctx, ptr.cast(), old_size, old_align);
                        }
                    }
                    new
                }
            }
            (None, None) => ptr::null_mut(),
        }
    };
    // Growth counts against the limit before the block grows: `reserved` says how the last
    // attempt counted it.
    let growth = new_size.saturating_sub(old_size);
    let reserved = Cell::new(Reserved::No);
    let mut attempt = || -> *mut u8 {
        // SAFETY: `a` is valid.
        unsafe {
            reserved.set(if growth == 0 { Reserved::No } else { reserve(a, growth) });
            if reserved.get() == Reserved::Refused {
                return ptr::null_mut();
            }
            let block = attempt();
            if block.is_null() {
                unreserve(a, growth, reserved.get());
            }
            block
        }
    };
    refusal::clear();
    let mut block = attempt();
    if block.is_null() {
        let failure = if refusal::misused() {
            Failure::Misuse
        } else if realloc_fn.is_none() && alloc_fn.is_none() {
            Failure::NoFunction
        } else if reserved.get() == Reserved::Refused {
            Failure::LimitReached
        } else {
            Failure::OutOfMemory
        };
        // SAFETY: `a` is valid.
        block = unsafe { fail(a, failure, new_size, align, options, &mut attempt) };
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
        if reserved.get() == Reserved::InStats {
            header_of(a).stats.record_realloc_reserved(old_size, new_size);
        } else if counting(a) {
            Counters::of(a).record_realloc(old_size, new_size);
        }
        if !is_managed(a) && new_size < old_size {
            limit::release(a, old_size - new_size);
        }
    }
    block
}

/// Sets `allocator`'s limit on live bytes (0 = none): an allocation that would take the
/// bytes the front door counts live past it fails like one the allocator refused (null,
/// counted in `failed_allocations`, the strategy applied, callbacks told). The count starts
/// from the live bytes the stats know (all of them while the allocator was tracked). False
/// only when a C-made allocator finds the table of limits full ([`limit::MAX_LIMITED`]).
///
/// A library allocator keeps the live count while limited even when not tracked (then in the
/// slow path). A tracked thread-safe one (system, heap) counts on its call-free path against
/// the calling thread's grant, which the slow path's reservation hands out under a lock and
/// takes back before it refuses (see `ShardedStats`); a single-owner one checks the limit on
/// its call-free path only on the way to a new high-water mark.
///
/// A backend may make its limit cover more than its own blocks ([`Backend::limits_changed`]
/// runs after the limit is set): a region's covers its whole subtree, so an allocation in any
/// region under it fails when it would take the live bytes of the subtree past it.
///
/// [`Backend::limits_changed`]: crate::policy::backend::Backend::limits_changed
///
/// # Safety
/// As for [`alloc_slow`]. Requests in flight on other threads while it runs may be counted
/// against the old limit.
pub unsafe fn set_limit(allocator: *mut GooAllocator, max_live_bytes: usize) -> bool {
    let a = allocator;
    // SAFETY: `a` is valid.
    unsafe {
        if is_managed(a) {
            let header = header_of(a);
            header.stats.set_limit(max_live_bytes);
            (header.limits_changed_fn)(a);
            true
        } else {
            let live = if (*a).track_stats { stats(a).bytes_allocated } else { 0 };
            limit::set(a, max_live_bytes, live)
        }
    }
}

/// `allocator`'s limit on live bytes; 0 = none.
///
/// # Safety
/// As for [`alloc_slow`].
pub unsafe fn limit(allocator: *mut GooAllocator) -> usize {
    let a = allocator;
    // SAFETY: `a` is valid.
    unsafe {
        if is_managed(a) {
            header_of(a).stats.limit()
        } else {
            limit::get(a)
        }
    }
}

/// The statistics of `allocator` . For library allocators this merges the
/// per-thread counters and refreshes the embedded `stats` field with the result.
///
/// # Safety
/// As for [`alloc_slow`].
pub unsafe fn stats(allocator: *mut GooAllocator) -> AllocStats {
    let a = allocator;
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

/// Starts the counters of `allocator` again from the blocks live now: the totals and the
/// failures restart (the live blocks count as its allocations, none freed), the peak from the
/// live bytes. `bytes_allocated`, `allocation_count` and `bytes_reserved` describe blocks and
/// memory that still exist, so they are kept: the frees of those blocks are still counted
/// right, and a limit still counts them.
///
/// # Safety
/// As for [`alloc_slow`]; no other thread may use the allocator meanwhile.
pub unsafe fn reset_stats(allocator: *mut GooAllocator) {
    let a = allocator;
    // SAFETY: `a` is valid.
    unsafe {
        if is_managed(a) {
            let header = header_of(a);
            header.stats.reset();
            // The limit counts the same live bytes; a backend that grants budgets from the
            // stats grants them afresh all the same.
            (header.limits_changed_fn)(a);
            // Refreshes the embedded copy.
            stats(a);
        } else {
            let embedded = AtomicStatsView::new(ptr::addr_of_mut!((*a).stats));
            let now = embedded.snapshot();
            embedded.store(&AllocStats {
                bytes_allocated: now.bytes_allocated,
                bytes_reserved: now.bytes_reserved,
                max_bytes_allocated: now.bytes_allocated,
                allocation_count: now.allocation_count,
                total_allocations: now.allocation_count,
                total_frees: 0,
                failed_allocations: 0,
            });
        }
    }
}

/// Records that `allocator` frees all its live blocks at once (an arena or pool reset): live
/// bytes and blocks drop to zero and the blocks count as frees. No other thread may use the
/// allocator meanwhile. Once the reset is done, [`reset_done`] tells the callbacks.
///
/// # Safety
/// As for [`alloc_slow`].
pub unsafe fn record_reset(allocator: *mut GooAllocator) {
    // SAFETY: `allocator` is valid.
    unsafe {
        if is_managed(allocator) {
            header_of(allocator).resets.fetch_add(1, core::sync::atomic::Ordering::Relaxed);
            crate::policy::backend::blocks_gone(allocator);
        }
        if counting(allocator) {
            Counters::of(allocator).record_reset();
        }
    }
}

/// Times a library allocator freed all its blocks at once ([`record_reset`]); `None` for one
/// written in C.
///
/// # Safety
/// `allocator` is valid for reads.
pub unsafe fn resets_of(allocator: *const GooAllocator) -> Option<u64> {
    // SAFETY: `allocator` is valid (contract).
    unsafe {
        is_managed(allocator).then(|| header_of(allocator).resets.load(core::sync::atomic::Ordering::Relaxed))
    }
}

/// Tells the callbacks that `allocator` freed all its blocks at once (`EVENT_RESET`), after
/// the reset: a callback sees its stats at zero, and what it allocates from it stays.
pub fn reset_done(allocator: *mut GooAllocator) {
    callbacks::notify(EVENT_RESET, allocator);
}

/// Records that `count` blocks totalling `bytes` were freed at once (a rewind to a
/// checkpoint). No other thread may use the allocator meanwhile.
///
/// # Safety
/// As for [`alloc_slow`].
pub unsafe fn record_bulk_free(allocator: *mut GooAllocator, bytes: usize, count: usize) {
    let a = allocator;
    // SAFETY: `a` is valid.
    unsafe {
        if counting(a) {
            Counters::of(a).record_bulk_free(bytes, count);
        }
    }
}

/// The size-class histogram of a library allocator (`None` for allocators written in C).
///
/// # Safety
/// As for [`alloc_slow`].
pub unsafe fn histogram(allocator: *mut GooAllocator) -> Option<crate::policy::stats::SizeHistogram> {
    let a = allocator;
    // SAFETY: `a` is valid.
    unsafe { is_managed(a).then(|| header_of(a).stats.histogram()) }
}
