//! How a Rust allocator mechanism becomes a `GooAllocator`: the [`Backend`] trait every
//! allocator implements (its mechanism and its call-free fast path), one generic vtable for
//! every backend, a header with the sharded stats and the allocator's [`Kind`], and the
//! registry of live library allocators.
//!
//! A `Managed<B>` is `#[repr(C)] { GooAllocator, Header, B }`; its `context` points to itself,
//! so the front door can find the header of any library allocator from the vtable alone.

use core::any::TypeId;
use core::ffi::c_void;
use core::ptr::{self, NonNull};
use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::Mutex;

use crate::policy::fork::{ForkHooks, Nesting};
use crate::policy::invariant::InvariantError;
use crate::policy::stats::ShardedStats;
use crate::policy::thread_slot::thread_key;
use crate::raw::{checked_align, AllocOptions, AllocStrategy, DestroyFn, GooAllocator};

/// Which of the library's allocators a library allocator is: the tag the dispatch above the
/// allocators matches on to reach the allocator's own fast path. A backend made outside this
/// crate (an exported Rust allocator), or one with no fast path of its own (the locked
/// wrapper), is [`Kind::Other`] and is served through its vtable.
///
/// ```
/// use goo_memory_core::{Backend, Heap, Kind, System};
/// assert_eq!(<Heap as Backend>::KIND, Kind::Heap);
/// assert_eq!(<System as Backend>::KIND, Kind::System);
/// ```
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Kind {
    System,
    Heap,
    Arena,
    Pool,
    Region,
    Scoped,
    SharedArena,
    SharedPool,
    /// The debug allocator: served by the front door's slow path, which takes its call-free
    /// level once a C entry point named the request's site.
    Debug,
    Other,
}

/// A block of memory a [`Backend`] hands out is valid for `size` bytes at `align`.
///
/// The front door calls a backend only with a checked input: `size > 0`,
/// `align` a power of two and `size + align <= isize::MAX`.
///
/// # Safety
/// Implementations must return null or a pointer aligned to `align`, valid for reads and writes
/// of `size` bytes, disjoint from every other live block, until it is freed or reallocated; if
/// [`Backend::ZEROES`] is true, a block allocated with [`AllocOptions::ZERO`] must be zeroed.
///
/// ```
/// use core::alloc::Layout;
/// use goo_memory_core::{AllocOptions, Allocator, Backend};
///
/// /// The C library's `malloc`, as a library allocator.
/// struct Malloc;
///
/// // SAFETY: `aligned_alloc` returns null or a block of `size` bytes at `align`, disjoint from
/// // every other, until `free`; `ZEROES` is false, so the front door zeroes.
/// unsafe impl Backend for Malloc {
///     const NAME: &'static str = "malloc";
///     fn alloc(&self, size: usize, align: usize, _: AllocOptions) -> *mut u8 {
///         let align = align.max(core::mem::size_of::<usize>());
///         // SAFETY: `align` is a power of two (the front door checked it), a multiple of a
///         // pointer's size; the size is rounded up to a multiple of it.
///         unsafe { libc::aligned_alloc(align, size.next_multiple_of(align)).cast() }
///     }
///     unsafe fn free(&self, ptr: *mut u8, _: usize, _: usize) {
///         // SAFETY: a block from `alloc` (the caller's contract).
///         unsafe { libc::free(ptr.cast()) }
///     }
/// }
///
/// let malloc = Allocator::new(Malloc); // stats, strategies, callbacks from the front door
/// let layout = Layout::from_size_align(24, 64).unwrap();
/// let block = malloc.allocate(layout).unwrap();
/// assert!(block.as_ptr().addr().is_multiple_of(64));
/// assert_eq!(malloc.stats().bytes_allocated, 24);
/// unsafe { malloc.deallocate(block, layout) };
/// ```
pub unsafe trait Backend: 'static {
    /// A short name for reports ("system", "arena", ...).
    const NAME: &'static str;
    /// The tag the dispatch matches on; the library's own allocators each have theirs.
    const KIND: Kind = Kind::Other;
    /// Whether `alloc` honours [`AllocOptions::ZERO`] itself (else the front door zeroes).
    const ZEROES: bool = false;
    /// Whether several threads may use the allocator at once. When false (arenas, pools,
    /// regions, scopes: one thread at a time) the stats use one plain counter block instead of
    /// per-thread shards.
    const THREAD_SAFE: bool = true;

    /// Allocates a block, or returns null.
    fn alloc(&self, size: usize, align: usize, options: AllocOptions) -> *mut u8;

    /// Frees a block.
    ///
    /// # Safety
    /// `ptr` came from this backend with this `size` and `align` and is live.
    unsafe fn free(&self, ptr: *mut u8, size: usize, align: usize);

    /// Frees a block as [`Backend::free`] does, and says whether it did: false when the backend
    /// refused the pointer as no live block of its own (and reported it), having changed
    /// nothing. The front door then counts no free and reports none to observers. The default
    /// frees and says true.
    ///
    /// # Safety
    /// As for [`Backend::free`], except for the pointers the backend documents that it refuses.
    unsafe fn release(&self, ptr: *mut u8, size: usize, align: usize) -> bool {
        // SAFETY: forwarded contract.
        unsafe { self.free(ptr, size, align) };
        true
    }

    /// Resizes a block; on failure returns null and leaves the block as it was.
    ///
    /// # Safety
    /// As for [`Backend::free`], and `new_size` satisfies the checks the front door makes.
    unsafe fn realloc(
        &self,
        ptr: *mut u8,
        old_size: usize,
        new_size: usize,
        align: usize,
        options: AllocOptions,
    ) -> *mut u8 {
        let new = self.alloc(new_size, align, options.without(AllocOptions::ZERO));
        if !new.is_null() {
            // SAFETY: both blocks are live, disjoint and valid for the copied length.
            unsafe {
                ptr::copy_nonoverlapping(ptr, new, old_size.min(new_size));
                self.free(ptr, old_size, align);
            }
        }
        new
    }

    /// The call-free fast path: serves a plain request (no options; `size` in
    /// `1..=isize::MAX - 16`; `align` 0 for natural alignment, else a power of two that passed
    /// the request check) without calling anything that may unwind, or returns null having
    /// changed nothing. The default serves nothing.
    ///
    /// # Safety
    /// `home` is the calling thread's home slot (`policy::thread_slot`'s `home_slot`) for
    /// thread-safe backends, whose per-slot state only that thread may touch; `None` for
    /// single-owner ones.
    #[inline(always)]
    unsafe fn try_alloc_inline(&self, home: Option<usize>, size: usize, align: usize) -> *mut u8 {
        let _ = (home, size, align);
        ptr::null_mut()
    }

    /// The call-free free: gives a block back (calling nothing but C) and returns true, or
    /// returns false having changed nothing. It also takes back a block that
    /// [`Backend::try_alloc_inline`] just served (when counting it was refused).
    ///
    /// # Safety
    /// `ptr` is a live block of this backend of `size > 0` bytes at `align` (0 = natural).
    #[inline(always)]
    unsafe fn try_free_inline(&self, home: Option<usize>, ptr: *mut u8, size: usize, align: usize) -> bool {
        let _ = (home, ptr, size, align);
        false
    }

    /// The call-free resize: the block resized to `new_size` bytes (`ptr` itself, or a new
    /// block holding `ptr`'s first `min(old_size, new_size)` bytes, `ptr` then given back),
    /// calling nothing but C, or null having changed nothing. Both sizes are plain requests'
    /// (as for [`Backend::try_alloc_inline`]). The default resizes nothing.
    ///
    /// # Safety
    /// As for [`Backend::try_free_inline`] for `ptr`, `old_size` and `align`; `home` as for
    /// [`Backend::try_alloc_inline`].
    #[inline(always)]
    unsafe fn try_realloc_inline(
        &self,
        home: Option<usize>,
        ptr: *mut u8,
        old_size: usize,
        new_size: usize,
        align: usize,
    ) -> *mut u8 {
        let _ = (home, ptr, old_size, new_size, align);
        core::ptr::null_mut()
    }

    /// Bytes this allocator holds from where it gets memory, given the live requested bytes.
    /// The default (no overhead of its own) is `bytes_allocated`. Called when stats are read,
    /// from the reading thread.
    fn bytes_reserved(&self, bytes_allocated: usize) -> usize {
        bytes_allocated
    }

    /// Runs first when the allocator is asked to be destroyed, before anything is notified,
    /// unregistered or freed: returning false refuses the destroy, which then changes nothing
    /// (the backend reports why). A region refuses while a reset or destroy of its tree that it
    /// would disturb is running (a cleanup destroying its own region). The default allows.
    ///
    /// # Safety
    /// `allocator` is a `Managed<Self>`.
    unsafe fn begin_destroy(allocator: *mut GooAllocator) -> bool {
        let _ = allocator;
        true
    }

    /// Runs when the allocator is destroyed, before the backend is dropped, with only the raw
    /// allocator pointer (no reference to the backend is held), so it may tear down structures
    /// that point back into this allocator (a region's children).
    ///
    /// # Safety
    /// `allocator` is a live `Managed<Self>` being destroyed.
    unsafe fn before_destroy(allocator: *mut GooAllocator) {
        let _ = allocator;
    }

    /// The slow path's answer for budgeted stats ([`ShardedStats::set_budget`]) when a request
    /// of `bytes` would pass the budget (`Reservation::OverBudget`): a backend that budgets
    /// its stats keeps the limits the budget is granted from (a region's limit covers its
    /// subtree). If the bytes fit every such limit it counts them
    /// ([`ShardedStats::reserve_granted`]) and returns true; else it returns false having
    /// counted nothing, and the request fails as past a limit. The default (stats never
    /// budgeted, so never called) refuses.
    ///
    /// # Safety
    /// `allocator` is a live `Managed<Self>` whose stats are budgeted; no other request of it
    /// runs meanwhile.
    unsafe fn reserve_over_budget(allocator: *mut GooAllocator, bytes: usize) -> bool {
        let _ = (allocator, bytes);
        false
    }

    /// Runs after the allocator's limit was set or its stats reset (what a limit counts from):
    /// a backend whose limit covers more than its own stats (a region's covers its subtree)
    /// grants its budgets afresh here. The default: nothing to do.
    ///
    /// # Safety
    /// `allocator` is a live `Managed<Self>`; no other request of it runs meanwhile.
    unsafe fn limits_changed(allocator: *mut GooAllocator) {
        let _ = allocator;
    }

    /// Verifies the equations written beside the backend's state (for the model tests and
    /// [`Managed::check_raw`]). The default: none to check.
    fn check_state(&self) -> Result<(), InvariantError> {
        Ok(())
    }
}

/// The part of a library allocator that is the same for every backend.
///
/// Invariant, for a `Managed<B>`: `stats.single_owner == !B::THREAD_SAFE` (set at creation,
/// never changed), so the call-free level of a single-owner backend counts on the owner's
/// counters without asking them.
#[repr(C)]
pub(crate) struct Header {
    pub(crate) stats: ShardedStats,
    pub(crate) kind: Kind,
    pub(crate) name: &'static str,
    pub(crate) zeroes: bool,
    /// `TypeId::of::<B>` of the backend, as a function: a `TypeId` itself cannot be made in a
    /// const fn before Rust 1.91, and the built-in allocators are statics.
    type_id: fn() -> TypeId,
    drop_fn: unsafe fn(*mut GooAllocator),
    begin_destroy_fn: unsafe fn(*mut GooAllocator) -> bool,
    pub(crate) reserved_fn: unsafe fn(*const GooAllocator, usize) -> usize,
    /// [`Backend::release`] of the allocator's backend: the front door's free of a library
    /// allocator, which learns from it whether the block was freed.
    pub(crate) release_fn: unsafe fn(*mut GooAllocator, *mut u8, usize, usize) -> bool,
    /// [`Backend::reserve_over_budget`] of the allocator's backend.
    pub(crate) reserve_over_budget_fn: unsafe fn(*mut GooAllocator, usize) -> bool,
    /// [`Backend::limits_changed`] of the allocator's backend.
    pub(crate) limits_changed_fn: unsafe fn(*mut GooAllocator),
    /// Debug builds, single-owner backends: the [`thread_key`] of a thread inside a request of
    /// the allocator's vtable (its slow path), 0 when none is (see [`OwnerCheck`]).
    in_use: AtomicUsize,
    /// A second thread found inside at the same time was reported (once per allocator).
    concurrent_use_reported: AtomicBool,
    /// Times the allocator freed all its blocks at once (resets): an allocator over it (a debug
    /// allocator) learns from it that its blocks went.
    pub(crate) resets: AtomicU64,
    /// Registry links, written under [`REGISTRY`]'s lock. Atomics (relaxed: the lock orders
    /// them) because unregistering an allocator writes its neighbours' links while other
    /// threads may hold a `&Header` of those neighbours (their stats, their kind).
    prev: AtomicPtr<Prefix>,
    next: AtomicPtr<Prefix>,
}

/// The type-erased start of every `Managed<B>`.
#[repr(C)]
pub(crate) struct Prefix {
    pub(crate) raw: GooAllocator,
    pub(crate) header: Header,
}

/// A library allocator: the C vtable, the shared header, then the mechanism. Any [`Backend`]
/// becomes one with [`Managed::create`] (an [`Allocator`](crate::Allocator) owns one), and the
/// backend is found again from the vtable.
///
/// ```
/// use goo_memory_core::{dispatch, is_managed, managed_destroy, AllocOptions, AllocStrategy};
/// use goo_memory_core::{Heap, Managed, System};
/// let raw = Managed::create(System, AllocStrategy::Null, true).as_ptr();
/// // SAFETY: a live library allocator, destroyed once at the end; the block is freed with its
/// // size and alignment before that.
/// unsafe {
///     assert!(is_managed(raw));
///     assert!(Managed::<System>::try_backend(raw).is_some());
///     assert!(Managed::<Heap>::try_backend(raw).is_none(), "made with another backend");
///     let block = dispatch::alloc(raw, 32, 0, AllocOptions::DEFAULT);
///     assert_eq!(dispatch::stats(raw).bytes_allocated, 32);
///     Managed::<System>::check_raw(raw).unwrap();
///     dispatch::free(raw, block, 32, 0);
///     managed_destroy(raw); // what its `destroy` function does
/// }
/// ```
#[repr(C)]
pub struct Managed<B> {
    prefix: Prefix,
    backend: B,
}

impl core::fmt::Debug for Header {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Header")
            .field("kind", &self.kind)
            .field("name", &self.name)
            .field("zeroes", &self.zeroes)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl core::fmt::Debug for Prefix {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Prefix").field("raw", &self.raw).field("header", &self.header).finish()
    }
}

impl<B: core::fmt::Debug> core::fmt::Debug for Managed<B> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Managed").field("prefix", &self.prefix).field("backend", &self.backend).finish()
    }
}

struct Registry {
    head: *mut Prefix,
}
// SAFETY: the raw pointers are only followed while the mutex is held, and point to allocators
// that unlink themselves (under the mutex) before they are freed.
unsafe impl Send for Registry {}

/// Every live library allocator, for the leak report at cleanup. An intrusive list, so that
/// registering never allocates.
static REGISTRY: Mutex<Registry> = Mutex::new(Registry { head: ptr::null_mut() });

impl<B: Backend> Managed<B> {
    /// Builds a library allocator around `backend` and returns it as a C vtable. The caller
    /// owns it: its `destroy` function ([`managed_destroy`]) frees it.
    pub fn create(backend: B, strategy: AllocStrategy, track_stats: bool) -> NonNull<GooAllocator> {
        Self::place(Self::unplaced(backend, drop_managed::<B>, ptr::null_mut()), strategy, track_stats)
    }

    /// Boxes and registers an object made by `unplaced` (possibly adjusted).
    pub(crate) fn place(managed: Self, strategy: AllocStrategy, track_stats: bool) -> NonNull<GooAllocator> {
        let memory = NonNull::from(Box::leak(Box::<Self>::new_uninit())).cast::<Self>();
        // SAFETY: a fresh block of `Layout::new::<Self>()` from the global allocator.
        unsafe { Self::place_in(memory, managed, strategy, track_stats) }
    }

    /// [`Managed::place`] into `memory` (what a drop function kept of an earlier object, say).
    ///
    /// # Safety
    /// `memory` is a block of `Layout::new::<Self>()` from the global allocator that nothing
    /// else uses (the object's drop function frees it as a `Box<Self>`).
    pub(crate) unsafe fn place_in(
        memory: NonNull<Self>,
        mut managed: Self,
        strategy: AllocStrategy,
        track_stats: bool,
    ) -> NonNull<GooAllocator> {
        managed.prefix.raw.strategy = strategy as u32;
        managed.prefix.raw.track_stats = track_stats;
        // Before the allocator hands anything out: whether a memory checker is watching.
        crate::policy::sanitize::detect();
        let this = memory.as_ptr();
        // SAFETY: per the contract `this` is valid for a `Self`; the context points to the object
        // itself.
        unsafe {
            this.write(managed);
            (*this).prefix.raw.context = this.cast();
            register(ptr::addr_of_mut!((*this).prefix));
            NonNull::new_unchecked(ptr::addr_of_mut!((*this).prefix.raw))
        }
    }

    /// With stats tracking on (for an allocator built in a `static`).
    pub(crate) const fn tracked(mut self) -> Self {
        self.prefix.raw.track_stats = true;
        self
    }

    /// The object before it has a place: the generic vtable, an empty header, the backend.
    pub(crate) const fn unplaced(
        backend: B,
        drop_fn: unsafe fn(*mut GooAllocator),
        context: *mut c_void,
    ) -> Self {
        Managed {
            prefix: Prefix {
                raw: GooAllocator {
                    alloc: Some(alloc_shim::<B>),
                    realloc: Some(realloc_shim::<B>),
                    free: Some(free_shim::<B>),
                    destroy: Some(MANAGED_DESTROY),
                    context,
                    ..GooAllocator::EMPTY
                },
                header: Header {
                    stats: if B::THREAD_SAFE { ShardedStats::new() } else { ShardedStats::single_owner() },
                    kind: B::KIND,
                    name: B::NAME,
                    zeroes: B::ZEROES,
                    type_id: TypeId::of::<B>,
                    drop_fn,
                    begin_destroy_fn: B::begin_destroy,
                    reserved_fn: reserved_of::<B>,
                    release_fn: release_of::<B>,
                    reserve_over_budget_fn: B::reserve_over_budget,
                    limits_changed_fn: B::limits_changed,
                    in_use: AtomicUsize::new(0),
                    concurrent_use_reported: AtomicBool::new(false),
                    resets: AtomicU64::new(0),
                    prev: AtomicPtr::new(ptr::null_mut()),
                    next: AtomicPtr::new(ptr::null_mut()),
                },
            },
            backend,
        }
    }

    /// The backend of a library allocator made by [`Managed::create`] with this `B`.
    ///
    /// # Safety
    /// `allocator` must be such an allocator, still live, and its `context` untouched.
    pub unsafe fn backend<'a>(allocator: *const GooAllocator) -> &'a B {
        // SAFETY: per the contract, the context is the `Managed<B>` itself.
        unsafe { &(*(*allocator).context.cast::<Managed<B>>()).backend }
    }

    /// The backend, if `allocator` is a live library allocator made with this `B`; `None` for
    /// any other allocator (another kind, or one written in C).
    ///
    /// # Safety
    /// `allocator` must be null or valid for reads, and if it is a library allocator, live.
    pub unsafe fn try_backend<'a>(allocator: *const GooAllocator) -> Option<&'a B> {
        // SAFETY: per the contract; the header is read only once `is_managed` holds.
        unsafe {
            if allocator.is_null()
                || !is_managed(allocator)
                || (header_of(allocator).type_id)() != TypeId::of::<B>()
            {
                return None;
            }
            Some(Self::backend(allocator))
        }
    }

    /// Verifies that `allocator` is a live `Managed<B>`, then the invariants of its backend
    /// ([`Backend::check_state`]) and of its stats
    /// ([`ShardedStats::check`](crate::policy::stats::ShardedStats::check)).
    ///
    /// # Safety
    /// As for [`Managed::try_backend`].
    pub unsafe fn check_raw(allocator: *mut GooAllocator) -> Result<(), InvariantError> {
        // SAFETY: forwarded contract.
        let backend = unsafe { Self::try_backend(allocator) }
            .ok_or(InvariantError::new(B::NAME, "not of this kind"))?;
        backend.check_state()?;
        // SAFETY: `try_backend` found a live `Managed<B>` behind `allocator`.
        unsafe { Self::stats(allocator) }.check()
    }

    /// The sharded stats of a library allocator.
    ///
    /// # Safety
    /// As for [`Managed::backend`].
    pub unsafe fn stats<'a>(allocator: *const GooAllocator) -> &'a ShardedStats {
        // SAFETY: per the contract.
        unsafe { &header_of(allocator).stats }
    }
}

/// What is told that a library allocator's blocks are all gone (its reset, its destroy): the
/// legacy API's list of page-aligned blocks ([`crate::legacy`]), registered when it lists one.
static BLOCKS_GONE: AtomicPtr<()> = AtomicPtr::new(ptr::null_mut());

/// Registers `observer` for [`blocks_gone`] (one observer: the last registered).
pub(crate) fn observe_blocks_gone(observer: fn(*mut GooAllocator)) {
    BLOCKS_GONE.store(observer as *mut (), Relaxed);
}

/// Tells the observer that every block of `allocator` is gone (a reset, a destroy).
pub(crate) fn blocks_gone(allocator: *mut GooAllocator) {
    let observer = BLOCKS_GONE.load(Relaxed);
    if !observer.is_null() {
        // SAFETY: stored from a `fn(*mut GooAllocator)` by `observe_blocks_gone`.
        let observer = unsafe { core::mem::transmute::<*mut (), fn(*mut GooAllocator)>(observer) };
        observer(allocator);
    }
}

/// Whether `allocator` is one of the library's own (its header can be reached by `context`).
///
/// # Safety
/// `allocator` must be valid for reads.
#[inline(always)]
pub unsafe fn is_managed(allocator: *const GooAllocator) -> bool {
    // Every library allocator, whatever its backend, shares this one destroy function; a C
    // allocator cannot have it unless it copied a library allocator, whose context then still
    // points to the original.
    // SAFETY: caller guarantees `allocator` is readable.
    let destroy = unsafe { (*allocator).destroy };
    // (None is the null pointer, never equal: one comparison, no separate null test.)
    destroy.map_or(ptr::null(), |f| f as *const ()) == MANAGED_DESTROY as *const ()
}

/// The header of a library allocator.
///
/// # Safety
/// `allocator` must satisfy [`is_managed`] and be live.
#[inline(always)]
pub(crate) unsafe fn header_of<'a>(allocator: *const GooAllocator) -> &'a Header {
    // SAFETY: the context of a library allocator is its `Prefix`.
    unsafe { &(*(*allocator).context.cast::<Prefix>()).header }
}

// The shims are what C sees in the vtable. C may call them directly, so they re-check the input
// (three compares) instead of trusting that the front door ran.

pub(crate) unsafe extern "C" fn alloc_shim<B: Backend>(
    ctx: *mut c_void,
    size: usize,
    align: usize,
    options: AllocOptions,
) -> *mut c_void {
    let Some(align) = checked_align(size, align) else {
        return ptr::null_mut();
    };
    // SAFETY: the vtable holding this shim was made by `Managed::<B>::create` with `ctx` = self.
    let _check = unsafe { OwnerCheck::enter::<B>(ctx) };
    // SAFETY: as above.
    let backend = unsafe { &(*ctx.cast::<Managed<B>>()).backend };
    backend.alloc(size, align, options).cast()
}

unsafe extern "C" fn realloc_shim<B: Backend>(
    ctx: *mut c_void,
    ptr: *mut c_void,
    old_size: usize,
    new_size: usize,
    align: usize,
    options: AllocOptions,
) -> *mut c_void {
    // SAFETY: as in `alloc_shim`.
    let _check = unsafe { OwnerCheck::enter::<B>(ctx) };
    // SAFETY: as in `alloc_shim`.
    let backend = unsafe { &(*ctx.cast::<Managed<B>>()).backend };
    if ptr.is_null() || old_size == 0 {
        return match checked_align(new_size, align) {
            Some(align) => backend.alloc(new_size, align, options).cast(),
            None => ptr::null_mut(),
        };
    }
    let Some(align) = checked_align(new_size.max(old_size), align) else {
        return ptr::null_mut();
    };
    // SAFETY: the caller of a realloc function vouches that `ptr` is a live block of `old_size`
    // bytes from this allocator; sizes and alignment were checked above.
    unsafe { backend.realloc(ptr.cast(), old_size, new_size, align, options).cast() }
}

pub(crate) unsafe extern "C" fn free_shim<B: Backend>(
    ctx: *mut c_void,
    ptr: *mut c_void,
    size: usize,
    align: usize,
) {
    if ptr.is_null() || size == 0 {
        return;
    }
    let align = crate::raw::resolve_align(size, align);
    // SAFETY: as in `alloc_shim`; the caller vouches for `ptr`, `size` and `align`.
    unsafe {
        let _check = OwnerCheck::enter::<B>(ctx);
        let backend = &(*ctx.cast::<Managed<B>>()).backend;
        backend.free(ptr.cast(), size, align);
    }
}

/// The one `destroy` pointer value every library allocator holds. Taken once, in a static, so
/// the identity test in [`is_managed`] compares against exactly the value stored in vtables
/// (Rust does not promise that two reifications of one function give the same address).
static MANAGED_DESTROY: DestroyFn = managed_destroy;

/// The destroy function of every library allocator. The backend may refuse first
/// ([`Backend::begin_destroy`]); then nothing happens.
///
/// # Safety
/// `allocator` must be a live library allocator; it is freed.
pub unsafe extern "C" fn managed_destroy(allocator: *mut GooAllocator) {
    if allocator.is_null() {
        return;
    }
    // SAFETY: the caller passes a live library allocator; its header is reachable by context.
    let begin_destroy = unsafe { (*(*allocator).context.cast::<Prefix>()).header.begin_destroy_fn };
    // SAFETY: the hook of this allocator's own backend type, called with the allocator.
    if !unsafe { begin_destroy(allocator) } {
        return;
    }
    crate::policy::callbacks::notify(crate::policy::callbacks::EVENT_DESTROY, allocator);
    crate::policy::names::forget(allocator);
    crate::policy::thread_slot::forget_allocator(allocator);
    blocks_gone(allocator);
    // SAFETY: the caller passes a live library allocator; its header is reachable by context.
    unsafe {
        let prefix = (*allocator).context.cast::<Prefix>();
        unregister(prefix);
        ((*prefix).header.drop_fn)(prefix.cast());
    }
}

pub(crate) unsafe fn drop_managed<B: Backend>(allocator: *mut GooAllocator) {
    // SAFETY: `allocator` is the start of a live `Managed<B>` made by `Box::into_raw` in
    // `create`; the hook runs before anything is freed.
    unsafe {
        B::before_destroy(allocator);
        drop(Box::from_raw(allocator.cast::<Managed<B>>()));
    }
}

unsafe fn reserved_of<B: Backend>(allocator: *const GooAllocator, bytes_allocated: usize) -> usize {
    // SAFETY: installed only in headers of `Managed<B>`, called with that allocator.
    unsafe { Managed::<B>::backend(allocator) }.bytes_reserved(bytes_allocated)
}

/// [`Backend::release`] of a `Managed<B>`'s backend, for the header: the block's alignment is
/// resolved, as the vtable's free function resolves it.
///
/// # Safety
/// `allocator` is a live `Managed<B>`; the rest as for [`Backend::release`] (`size > 0`).
unsafe fn release_of<B: Backend>(
    allocator: *mut GooAllocator,
    ptr: *mut u8,
    size: usize,
    align: usize,
) -> bool {
    // SAFETY: installed only in headers of `Managed<B>`, called with that allocator; the caller
    // vouches for the block.
    unsafe {
        let _check = OwnerCheck::enter::<B>(allocator.cast());
        Managed::<B>::backend(allocator).release(ptr, size, crate::raw::resolve_align(size, align))
    }
}

/// Debug builds of the library: a request of a single-owner allocator (an arena, a pool, a
/// region, a scope: one thread at a time) marks the allocator with the calling thread while it
/// runs in the allocator's vtable (its slow path), and a second thread found inside at the same
/// time is reported on stderr, once per allocator. Concurrent use is what the marks catch, not
/// a hand-off: an allocator passed to another thread (moved, sent, or used under a lock of the
/// program's) is never reported. The call-free paths are not marked (they would pay for it in
/// every request), so what is caught is concurrent use that reaches the slow paths: every
/// request of a checked pool (the debug default), an arena's new chunks, a scope's and a
/// region's larger requests. Release builds: nothing (the type is empty of work).
struct OwnerCheck<'a> {
    in_use: Option<(&'a AtomicUsize, usize, usize)>,
}

impl OwnerCheck<'_> {
    /// Marks the allocator `ctx` (a live `Managed<B>`) with the calling thread, reporting a
    /// second thread inside; unmarks on drop.
    ///
    /// # Safety
    /// `ctx` is a live `Managed<B>`.
    #[inline(always)]
    unsafe fn enter<'a, B: Backend>(ctx: *const c_void) -> OwnerCheck<'a> {
        if !cfg!(debug_assertions) || B::THREAD_SAFE {
            return OwnerCheck { in_use: None };
        }
        // SAFETY: a `Managed<B>` starts with its `Prefix` (per the contract, live).
        let header: &'a Header = unsafe { &(*ctx.cast::<Prefix>()).header };
        let me = thread_key();
        let before = header.in_use.swap(me, Relaxed);
        if before != 0 && before != me {
            report_concurrent_use(header, ctx);
        }
        OwnerCheck { in_use: Some((&header.in_use, me, before)) }
    }
}

impl Drop for OwnerCheck<'_> {
    #[inline(always)]
    fn drop(&mut self) {
        // A request nested in one of this thread's (a parent that is the same allocator) leaves
        // the mark to the outer one.
        if let Some((in_use, me, before)) = self.in_use {
            if before != me {
                let _ = in_use.compare_exchange(me, 0, Relaxed, Relaxed);
            }
        }
    }
}

#[cold]
#[inline(never)]
fn report_concurrent_use(header: &Header, allocator: *const c_void) {
    if !header.concurrent_use_reported.swap(true, Relaxed) {
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "goo-memory: {} allocator {allocator:p} used by two threads at once: it belongs to one thread at a time (share a shared arena or pool, or wrap it with goo_locked_allocator_create)",
            header.name
        );
    }
}

/// The drop function of a library allocator living in a `static`: destroying it does nothing.
pub(crate) unsafe fn drop_static(_: *mut GooAllocator) {}

/// The registry's lock, held across a fork (`policy::fork`).
static FORK_HELD: crate::policy::fork::Held<Registry> = crate::policy::fork::Held::new();

/// Takes the registry's lock for a fork: no library allocator is made or destroyed until
/// [`unlock_after_fork`].
fn lock_for_fork() {
    FORK_HELD.hold(&REGISTRY);
}

/// Releases the registry's lock after a fork, in the parent or the child.
fn unlock_after_fork() {
    FORK_HELD.release();
}

static REGISTRY_FORK_HOOKS: ForkHooks = ForkHooks::new(Nesting::Registry, lock_for_fork, unlock_after_fork);
static LIMITS_FORK_HOOKS: ForkHooks =
    ForkHooks::new(Nesting::Limits, lock_limits_for_fork, unlock_limits_after_fork);

/// Takes every registered allocator's limit lock for a fork (the registry's lock is held: the
/// prepare handler took it first): no reservation runs until [`unlock_limits_after_fork`].
fn lock_limits_for_fork() {
    for_each_live_while_forking(|a, _| {
        // SAFETY: a registered allocator stays live and in place while the registry's lock is
        // held, which it is until `unlock_limits_after_fork` released the limit lock.
        unsafe { header_of(a).stats.hold_for_fork() }
    });
}

/// Releases what [`lock_limits_for_fork`] took, in the parent or the child.
fn unlock_limits_after_fork() {
    // SAFETY: as above; the registry's lock is still held.
    for_each_live_while_forking(|a, _| unsafe { header_of(a).stats.release_after_fork() });
}

/// [`for_each_live`] for the fork's prepare handler, which holds the registry's lock already.
pub(crate) fn for_each_live_while_forking(mut f: impl FnMut(*mut GooAllocator, &'static str)) {
    FORK_HELD.with(|reg| {
        let mut cur = reg.head;
        while !cur.is_null() {
            // SAFETY: registered allocators are live while linked, and the lock is held.
            unsafe {
                f(ptr::addr_of_mut!((*cur).raw), (*cur).header.name);
                cur = (*cur).header.next.load(Relaxed);
            }
        }
    });
}

fn lock_registry() -> std::sync::MutexGuard<'static, Registry> {
    // A panic while holding the lock cannot leave the list half-linked (no panicking code runs
    // under it), so a poisoned lock is still consistent.
    REGISTRY.lock().unwrap_or_else(|e| e.into_inner())
}

unsafe fn register(prefix: *mut Prefix) {
    // Before the registry's lock is first taken with an allocator in it: a fork then finds it
    // free (`policy::fork`). Cheap after the first call.
    crate::policy::fork::hold_across_fork(&REGISTRY_FORK_HOOKS);
    crate::policy::fork::hold_across_fork(&LIMITS_FORK_HOOKS);
    let mut reg = lock_registry();
    // SAFETY: `prefix` is live and not linked; the list is guarded by the lock.
    unsafe {
        (*prefix).header.next.store(reg.head, Relaxed);
        if !reg.head.is_null() {
            (*reg.head).header.prev.store(prefix, Relaxed);
        }
    }
    reg.head = prefix;
}

unsafe fn unregister(prefix: *mut Prefix) {
    let mut reg = lock_registry();
    // SAFETY: `prefix` is linked (registered at creation); neighbours are live; lock held.
    unsafe {
        let (prev, next) = ((*prefix).header.prev.load(Relaxed), (*prefix).header.next.load(Relaxed));
        if prev.is_null() {
            if reg.head == prefix {
                reg.head = next;
            }
        } else {
            (*prev).header.next.store(next, Relaxed);
        }
        if !next.is_null() {
            (*next).header.prev.store(prev, Relaxed);
        }
        (*prefix).header.prev.store(ptr::null_mut(), Relaxed);
        (*prefix).header.next.store(ptr::null_mut(), Relaxed);
    }
}

/// Calls `f` with every live library allocator (registry lock held: `f` must not create or
/// destroy allocators).
pub fn for_each_live(mut f: impl FnMut(*mut GooAllocator, &'static str)) {
    with_live_list(|live| live.iter().for_each(|&(a, name)| f(a, name)));
}

/// `f` of the list of live library allocators (and their names), with the registry's lock held
/// until it returns: no library allocator is made or destroyed meanwhile (`f` must not make or
/// destroy one).
pub fn with_live_list<R>(f: impl FnOnce(&[(*mut GooAllocator, &'static str)]) -> R) -> R {
    let reg = lock_registry();
    let mut live = Vec::new();
    let mut cur = reg.head;
    while !cur.is_null() {
        // SAFETY: registered allocators are live while linked, and the lock is held.
        unsafe {
            live.push((ptr::addr_of_mut!((*cur).raw), (*cur).header.name));
            cur = (*cur).header.next.load(Relaxed);
        }
    }
    let r = f(&live);
    drop(reg);
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::allocators::arena::Bump;

    /// Debug builds: two threads inside a single-owner allocator's vtable at once are reported
    /// (once); one thread after another, or a nested request of the same thread, are not; a
    /// thread-safe allocator is never marked. (The marks alone, without a request: two threads
    /// really inside the arena's mechanism would race on it.)
    #[test]
    fn concurrent_use_of_a_single_owner_allocator_is_reported_once() {
        // SAFETY: the built-in allocator is a static.
        let arena = unsafe { crate::allocators::arena::create(crate::default::builtin(), 0, 0) }.as_ptr();
        /// The allocator's address, shared with the test's threads (which only mark it).
        #[derive(Clone, Copy)]
        struct Ctx(*const c_void);
        // SAFETY: the threads only pass it to `OwnerCheck::enter`, whose marks are atomics.
        unsafe impl Sync for Ctx {}
        // SAFETY: as above.
        unsafe impl Send for Ctx {}
        impl Ctx {
            fn get(self) -> *const c_void {
                self.0
            }
        }
        let shared = Ctx(arena.cast::<c_void>().cast_const());
        let ctx = shared.get();
        // SAFETY: `arena` is a live `Managed<Bump>`, destroyed at the end.
        let header = unsafe { header_of(arena) };
        let reported = || header.concurrent_use_reported.load(Relaxed);
        // SAFETY: as above (each `enter` below).
        unsafe {
            let outer = OwnerCheck::enter::<Bump>(ctx);
            drop(OwnerCheck::enter::<Bump>(ctx)); // nested: the same thread
            assert_eq!(header.in_use.load(Relaxed) != 0, cfg!(debug_assertions), "still marked");
            drop(outer);
            assert_eq!(header.in_use.load(Relaxed), 0);
        }
        std::thread::scope(|s| {
            // SAFETY: as above.
            s.spawn(move || drop(unsafe { OwnerCheck::enter::<Bump>(shared.get()) })).join().unwrap();
        });
        assert!(!reported(), "one thread after another is a hand-off");
        let (inside, done) = (std::sync::Barrier::new(2), std::sync::Barrier::new(2));
        std::thread::scope(|s| {
            s.spawn(|| {
                // SAFETY: as above.
                let _mark = unsafe { OwnerCheck::enter::<Bump>(shared.get()) };
                inside.wait();
                done.wait();
            });
            inside.wait();
            // SAFETY: as above.
            drop(unsafe { OwnerCheck::enter::<Bump>(ctx) });
            done.wait();
        });
        assert_eq!(reported(), cfg!(debug_assertions));
        // SAFETY: as above.
        drop(unsafe { OwnerCheck::enter::<crate::System>(ctx) });
        // SAFETY: a live library allocator, not used afterwards.
        unsafe { managed_destroy(arena) };
    }
}
