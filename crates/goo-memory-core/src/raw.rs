//! The C-layout types shared with `include/goo/core/types.h` and `include/goo/runtime/memory.h`.
//!
//! These are the ABI: field order, sizes and values must match the headers exactly (a C test
//! compares `sizeof`/`offsetof` with the values here). Everything else in the crate builds on them.

use core::ffi::c_void;

/// Allocation option bits (`GooAllocOptions` in C, a `uint32_t`).
///
/// A plain bit set rather than an enum so C can OR flags together and unknown bits are harmless.
///
/// ```
/// use goo_memory_core::{AllocOptions, Allocator};
/// use core::alloc::Layout;
/// let heap = Allocator::system();
/// let options = AllocOptions::ZERO | AllocOptions::GROWABLE;
/// assert!(options.contains(AllocOptions::ZERO) && !options.without(AllocOptions::ZERO).contains(AllocOptions::ZERO));
/// let p = heap.handle().allocate(Layout::new::<[u8; 32]>(), options).unwrap();
/// // SAFETY: 32 bytes, zeroed as asked.
/// assert_eq!(unsafe { p.cast::<[u8; 32]>().read() }, [0; 32]);
/// // SAFETY: a live block of `heap` with this layout.
/// unsafe { heap.deallocate(p, Layout::new::<[u8; 32]>()) };
/// ```
#[repr(transparent)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct AllocOptions(pub u32);

impl AllocOptions {
    /// No special behaviour.
    pub const DEFAULT: Self = Self(0);
    /// The returned memory is zeroed.
    pub const ZERO: Self = Self(1);
    /// Never return null: when the strategy gives up, the process ends with a message.
    pub const NOFAIL: Self = Self(2);
    /// Hint: the block is likely to be reallocated to a larger size.
    pub const GROWABLE: Self = Self(4);
    /// From a scoped allocator: a block of its parent that survives the scope. A resize keeps
    /// it one (a realloc, `AllocatorRef::reallocate`, or an `allocator_api2` grow or shrink at
    /// the same alignment); an `allocator_api2` grow or shrink to another alignment allocates
    /// its new block without options, so it becomes a block of the scope, freed when it ends.
    pub const PERSIST: Self = Self(8);
    /// The block is short-lived: served by the thread's temporary arena ([`crate::temp`]),
    /// whatever allocator the request named. It is the temporary arena's block, not that
    /// allocator's: it goes with [`temp::reset`](crate::temp::reset), a
    /// [`temp::rewind`](crate::temp::rewind) below it or the end of the
    /// [`temp::with`](crate::temp::with) it was made in (safe calls), and freeing or resizing
    /// it through the named allocator breaks that allocator's contract (`scoped.h`: an error).
    pub const TEMP: Self = Self(16);

    /// Whether every bit of `other` is set in `self`.
    #[inline(always)]
    pub const fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }

    /// `self` without the bits of `other`.
    #[inline(always)]
    pub const fn without(self, other: Self) -> Self {
        Self(self.0 & !other.0)
    }
}

impl core::ops::BitOr for AllocOptions {
    type Output = Self;
    #[inline(always)]
    fn bitor(self, rhs: Self) -> Self {
        Self(self.0 | rhs.0)
    }
}

/// What an allocator does when its backend cannot satisfy a request (`GooAllocStrategy`).
///
/// ```
/// use goo_memory_core::{AllocStrategy, Allocator, System};
/// let mut heap = Allocator::with_strategy(System, AllocStrategy::Retry);
/// assert_eq!(heap.handle().strategy(), AllocStrategy::Retry);
/// heap.set_strategy(AllocStrategy::Null);
/// assert_eq!(AllocStrategy::from_raw(7), AllocStrategy::Null, "unknown C values fail safe");
/// ```
#[repr(u32)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum AllocStrategy {
    /// Return null (`Err` in Rust).
    #[default]
    Null = 0,
    /// Print what failed to stderr and abort the process.
    Panic = 1,
    /// Call the out-of-memory handler and retry, a bounded number of times, then return null.
    /// With no handler (the allocator's or the process's), fail as [`AllocStrategy::Null`]:
    /// the request was asked once, and nothing could have released memory.
    Retry = 2,
    /// Call the registered garbage-collector hook and retry, a bounded number of times. With
    /// no hook, fail as [`AllocStrategy::Null`].
    Gc = 3,
}

impl AllocStrategy {
    /// Reads a strategy from the raw C value; values C may have written that name no strategy
    /// behave as [`AllocStrategy::Null`], the safest choice.
    #[inline]
    pub const fn from_raw(raw: u32) -> Self {
        match raw {
            1 => Self::Panic,
            2 => Self::Retry,
            3 => Self::Gc,
            _ => Self::Null,
        }
    }
}

/// Statistics of one allocator (`GooAllocStats`). All counts are in requests as callers made
/// them, through the front door (`goo_memory_*_with` and its Rust twin). `Display` writes one
/// line with the text report's column names.
///
/// ```
/// use goo_memory_core::arena::Arena;
/// let arena = Arena::new();
/// arena.alloc_slice_fill_copy(100, 0u8);
/// let stats = arena.stats();
/// assert_eq!((stats.bytes_allocated, stats.allocation_count, stats.total_frees), (100, 1, 0));
/// assert!(stats.bytes_reserved >= 100);
/// assert!(stats.to_string().starts_with("live bytes 100, reserved "));
/// ```
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct AllocStats {
    /// Live bytes: the sum of the sizes callers asked for, over blocks not yet freed. A realloc
    /// moves it by `new_size - old_size`.
    pub bytes_allocated: usize,
    /// Bytes the allocator holds from where it gets memory (its parent or the OS), including
    /// space not handed out; at least `bytes_allocated` for allocators that report it, except
    /// that a scope's `PERSIST` blocks count in its `bytes_allocated` but not here (its parent
    /// holds them).
    pub bytes_reserved: usize,
    /// The peak of `bytes_allocated` since creation (or the last stats reset, which starts it
    /// at the live bytes).
    pub max_bytes_allocated: usize,
    /// Live blocks: `total_allocations - total_frees`.
    pub allocation_count: usize,
    /// Successful allocations since creation (a realloc is not a new allocation); a stats reset
    /// starts it at the live blocks.
    pub total_allocations: usize,
    /// Frees since creation (a realloc to size 0 counts as a free).
    pub total_frees: usize,
    /// Requests that returned null after the out-of-memory strategy gave up, including requests
    /// refused for bad input (overflowing size, bad alignment, missing function).
    pub failed_allocations: usize,
}

/// One line, with the text report's column names: `live bytes 64, reserved 4096, peak 64,
/// live 1, allocs 1, frees 0, failed 0`.
impl core::fmt::Display for AllocStats {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "live bytes {}, reserved {}, peak {}, live {}, allocs {}, frees {}, failed {}",
            self.bytes_allocated,
            self.bytes_reserved,
            self.max_bytes_allocated,
            self.allocation_count,
            self.total_allocations,
            self.total_frees,
            self.failed_allocations
        )
    }
}

/// `void* (*GooAllocFn)(void* ctx, size_t size, size_t alignment, GooAllocOptions options)`:
/// a [`GooAllocator`]'s `alloc`, called with its `context`.
///
/// ```
/// use core::ffi::c_void;
/// use goo_memory_core::{dispatch, AllocFn, AllocOptions, GooAllocator};
/// /// An allocator that is always out of memory; its context counts the requests.
/// unsafe extern "C" fn refuse(ctx: *mut c_void, _: usize, _: usize, _: AllocOptions) -> *mut c_void {
///     // SAFETY: the context is the counter below, alive while the vtable is used.
///     unsafe { *ctx.cast::<u32>() += 1 };
///     core::ptr::null_mut()
/// }
/// let mut calls = 0u32;
/// let alloc: AllocFn = refuse;
/// let mut full = GooAllocator {
///     alloc: Some(alloc),
///     context: (&raw mut calls).cast(),
///     track_stats: true,
///     ..GooAllocator::EMPTY
/// };
/// // SAFETY: a valid vtable, alive for the calls.
/// unsafe {
///     assert!(dispatch::alloc(&mut full, 64, 0, AllocOptions::DEFAULT).is_null());
///     assert_eq!(dispatch::stats(&mut full).failed_allocations, 1);
/// }
/// assert_eq!(calls, 1);
/// ```
pub type AllocFn =
    unsafe extern "C" fn(ctx: *mut c_void, size: usize, align: usize, options: AllocOptions) -> *mut c_void;
/// `void* (*GooReallocFn)(void* ctx, void* ptr, size_t old, size_t new, size_t align, GooAllocOptions)`:
/// a [`GooAllocator`]'s `realloc` (without one, the front door allocates, copies and frees).
///
/// ```
/// use core::ffi::c_void;
/// use goo_memory_core::{dispatch, AllocOptions, GooAllocator, ReallocFn};
/// unsafe extern "C" fn c_alloc(_: *mut c_void, size: usize, _align: usize, _: AllocOptions) -> *mut c_void {
///     // SAFETY: any size; `malloc` aligns to 16, all this example asks for.
///     unsafe { libc::malloc(size) }
/// }
/// unsafe extern "C" fn c_free(_: *mut c_void, ptr: *mut c_void, _size: usize, _align: usize) {
///     // SAFETY: a live block from `c_alloc` or `c_realloc`.
///     unsafe { libc::free(ptr) }
/// }
/// /// `realloc`, counting its calls in the context.
/// unsafe extern "C" fn c_realloc(
///     ctx: *mut c_void, ptr: *mut c_void, _old: usize, new: usize, _align: usize, _: AllocOptions,
/// ) -> *mut c_void {
///     // SAFETY: the context is the counter below; `ptr` is a live block of this allocator.
///     unsafe {
///         *ctx.cast::<u32>() += 1;
///         libc::realloc(ptr, new)
///     }
/// }
/// let mut calls = 0u32;
/// let realloc: ReallocFn = c_realloc;
/// let mut c_heap = GooAllocator {
///     alloc: Some(c_alloc),
///     realloc: Some(realloc),
///     free: Some(c_free),
///     context: (&raw mut calls).cast(),
///     track_stats: true,
///     ..GooAllocator::EMPTY
/// };
/// // SAFETY: a valid vtable, alive for the calls; each block is used within its size.
/// unsafe {
///     let p = dispatch::alloc(&mut c_heap, 8, 8, AllocOptions::DEFAULT).cast::<u64>();
///     p.write(42);
///     let q = dispatch::realloc(&mut c_heap, p.cast(), 8, 4000, 8, AllocOptions::DEFAULT).cast::<u64>();
///     assert_eq!(q.read(), 42, "the contents moved with the block");
///     assert_eq!(dispatch::stats(&mut c_heap).bytes_allocated, 4000);
///     dispatch::free(&mut c_heap, q.cast(), 4000, 8);
/// }
/// assert_eq!(calls, 1);
/// ```
pub type ReallocFn = unsafe extern "C" fn(
    ctx: *mut c_void,
    ptr: *mut c_void,
    old_size: usize,
    new_size: usize,
    align: usize,
    options: AllocOptions,
) -> *mut c_void;
/// `void (*GooFreeFn)(void* ctx, void* ptr, size_t size, size_t alignment)`: a
/// [`GooAllocator`]'s `free`, told the block's size and alignment (without one, blocks leak).
///
/// ```
/// use core::ffi::c_void;
/// use goo_memory_core::{dispatch, AllocOptions, FreeFn, GooAllocator};
/// unsafe extern "C" fn c_alloc(_: *mut c_void, size: usize, _align: usize, _: AllocOptions) -> *mut c_void {
///     // SAFETY: any size; `malloc` aligns to 16, all this example asks for.
///     unsafe { libc::malloc(size) }
/// }
/// /// `free`, keeping the size it was told in the context.
/// unsafe extern "C" fn c_free(ctx: *mut c_void, ptr: *mut c_void, size: usize, _align: usize) {
///     // SAFETY: the context is the `usize` below; `ptr` is a live block from `c_alloc`.
///     unsafe {
///         *ctx.cast::<usize>() = size;
///         libc::free(ptr)
///     }
/// }
/// let mut freed = 0usize;
/// let free: FreeFn = c_free;
/// let mut c_heap = GooAllocator {
///     alloc: Some(c_alloc),
///     free: Some(free),
///     context: (&raw mut freed).cast(),
///     track_stats: true,
///     ..GooAllocator::EMPTY
/// };
/// // SAFETY: a valid vtable, alive for the calls.
/// unsafe {
///     let p = dispatch::alloc(&mut c_heap, 100, 0, AllocOptions::DEFAULT);
///     dispatch::free(&mut c_heap, p, 100, 0);
///     let s = dispatch::stats(&mut c_heap);
///     assert_eq!((s.total_allocations, s.total_frees, s.bytes_allocated), (1, 1, 0));
/// }
/// assert_eq!(freed, 100, "a sized free");
/// ```
pub type FreeFn = unsafe extern "C" fn(ctx: *mut c_void, ptr: *mut c_void, size: usize, align: usize);
/// `void (*GooDestroyFn)(void* self)`: `self` is the `GooAllocator*`. Whoever is done with an
/// allocator calls it (C code, or the drop of a Rust handle that owns a library allocator).
///
/// ```
/// use goo_memory_core::{DestroyFn, GooAllocator};
/// /// Frees a vtable made with `Box`; its context counts the calls.
/// unsafe extern "C" fn destroy(a: *mut GooAllocator) {
///     // SAFETY: made by `Box::into_raw` below and destroyed once; the context is the counter
///     // below, which outlives it.
///     unsafe {
///         *(*a).context.cast::<u32>() += 1;
///         drop(Box::from_raw(a));
///     }
/// }
/// let mut destroyed = 0u32;
/// let destroy: DestroyFn = destroy;
/// let vtable =
///     GooAllocator { destroy: Some(destroy), context: (&raw mut destroyed).cast(), ..GooAllocator::EMPTY };
/// let raw = Box::into_raw(Box::new(vtable));
/// // SAFETY: a live vtable whose `destroy` is set; not used afterwards.
/// unsafe { ((*raw).destroy.unwrap())(raw) }; // `a->destroy(a)` in C
/// assert_eq!(destroyed, 1);
/// ```
pub type DestroyFn = unsafe extern "C" fn(allocator: *mut GooAllocator);
/// `void (*GooOutOfMemFn)(void)`: an out-of-memory handler, called by allocators with the
/// `Retry` strategy before each retry (their own `out_of_mem_fn`, else the process-wide one,
/// [`set_out_of_mem_handler`](crate::set_out_of_mem_handler)).
///
/// ```
/// use core::alloc::Layout;
/// use core::sync::atomic::{AtomicU32, Ordering::Relaxed};
/// use goo_memory_core::{set_out_of_mem_handler, AllocStrategy, Allocator, OutOfMemFn, System, MAX_RETRIES};
/// static CALLS: AtomicU32 = AtomicU32::new(0);
/// /// A handler with nothing to give back (a real one would drop caches): it only counts.
/// unsafe extern "C" fn on_out_of_memory() {
///     CALLS.fetch_add(1, Relaxed);
/// }
/// let handler: OutOfMemFn = on_out_of_memory;
/// // SAFETY: the handler may run on any thread at any time.
/// unsafe { set_out_of_mem_handler(Some(handler)) };
/// let heap = Allocator::with_strategy(System, AllocStrategy::Retry);
/// heap.handle().set_limit(1000);
/// assert!(heap.allocate(Layout::from_size_align(2000, 8).unwrap()).is_err());
/// // SAFETY: clearing registers nothing to call.
/// unsafe { set_out_of_mem_handler(None) };
/// assert_eq!(CALLS.load(Relaxed), MAX_RETRIES, "called before each retry, then the request failed");
/// ```
pub type OutOfMemFn = unsafe extern "C" fn();

/// The allocator vtable, laid out exactly as `struct GooAllocator` in
/// `include/goo/runtime/memory.h`. C code may build one with its own functions; the library's
/// allocators are one of these at offset 0 of a larger Rust object (see [`crate::Managed`]).
///
/// Any function pointer may be null: the front door treats a missing `alloc` as a failed
/// allocation, a missing `realloc` as alloc + copy + free, a missing `free` as a leak.
///
/// ```
/// use goo_memory_core::{dispatch, AllocOptions, Allocator, GooAllocator};
/// // A vtable with no functions: every request fails cleanly, and is counted.
/// let mut nothing = GooAllocator { track_stats: true, ..GooAllocator::EMPTY };
/// // SAFETY: a valid vtable, alive for the calls.
/// unsafe {
///     assert!(dispatch::alloc(&mut nothing, 16, 0, AllocOptions::DEFAULT).is_null());
///     assert_eq!(dispatch::stats(&mut nothing).failed_allocations, 1);
/// }
/// // The library's allocators are one of these at the start of a larger object.
/// let heap = Allocator::system();
/// // SAFETY: live while `heap` is.
/// assert!(unsafe { (*heap.as_ptr()).track_stats });
/// ```
#[repr(C)]
#[derive(Debug)]
pub struct GooAllocator {
    pub alloc: Option<AllocFn>,
    pub realloc: Option<ReallocFn>,
    pub free: Option<FreeFn>,
    pub destroy: Option<DestroyFn>,
    /// A raw [`AllocStrategy`] value (C writes it as an enum).
    pub strategy: u32,
    pub out_of_mem_fn: Option<OutOfMemFn>,
    pub context: *mut c_void,
    pub track_stats: bool,
    /// For allocators made in C, the live counters (updated atomically by the front door).
    /// For the library's allocators, a snapshot refreshed by every stats read.
    pub stats: AllocStats,
}

/// The `track_stats` flag of `allocator`, read and written atomically: the registry's readers
/// ([`report::tracked`](crate::report::tracked), which any thread may call) read it while the
/// thread that owns a single-owner allocator (an [`Arena`](crate::arena::Arena) moved there)
/// may switch it, so every access from another thread, and every switch, goes through this.
/// The front door's own reads are plain: they run on a thread that may use the allocator, and
/// a switch needs the handle exclusively (`&mut`), so no switch runs meanwhile.
///
/// # Safety
/// `allocator` is valid for `'a`.
pub(crate) unsafe fn track_stats_flag<'a>(
    allocator: *mut GooAllocator,
) -> &'a core::sync::atomic::AtomicBool {
    // SAFETY: valid for `'a` (the contract); `AtomicBool` has the size and alignment of `bool`,
    // and the library writes the flag non-atomically only while it makes the allocator, before
    // any other thread can reach it (its registration publishes it).
    unsafe { core::sync::atomic::AtomicBool::from_ptr(core::ptr::addr_of_mut!((*allocator).track_stats)) }
}

impl GooAllocator {
    /// A vtable with every function missing, strategy `Null`, no stats.
    pub const EMPTY: Self = Self {
        alloc: None,
        realloc: None,
        free: None,
        destroy: None,
        strategy: AllocStrategy::Null as u32,
        out_of_mem_fn: None,
        context: core::ptr::null_mut(),
        track_stats: false,
        stats: AllocStats {
            bytes_allocated: 0,
            bytes_reserved: 0,
            max_bytes_allocated: 0,
            allocation_count: 0,
            total_allocations: 0,
            total_frees: 0,
            failed_allocations: 0,
        },
    };
}

/// The largest alignment `malloc` guarantees on this target (`alignof(max_align_t)`).
pub const MAX_NATURAL_ALIGN: usize = 16;

/// The largest alignment any request may ask for (larger ones are refused as invalid).
pub const MAX_ALIGN: usize = 1 << 30;

/// The alignment the front door uses when a caller passes 0: the smallest power of two that is
/// at least `size`, capped at [`MAX_NATURAL_ALIGN`], as `malloc` guarantees for an object of
/// that size.
#[inline(always)]
pub const fn natural_align(size: usize) -> usize {
    // A table rather than branches: every call-free allocation resolves its alignment.
    const NATURAL: [u8; MAX_NATURAL_ALIGN + 1] = {
        let mut t = [0; MAX_NATURAL_ALIGN + 1];
        let mut s = 0;
        while s <= MAX_NATURAL_ALIGN {
            t[s] = if s <= 1 { 1 } else { s.next_power_of_two() as u8 };
            s += 1;
        }
        t
    };
    let clamped = if size < MAX_NATURAL_ALIGN { size } else { MAX_NATURAL_ALIGN };
    NATURAL[clamped] as usize
}

/// `align`, or the natural alignment for `size` when it is 0.
#[inline(always)]
pub const fn resolve_align(size: usize, align: usize) -> usize {
    if align == 0 {
        natural_align(size)
    } else {
        align
    }
}

/// The one request check: whether a request with a resolved alignment can be passed to an
/// allocator (`size > 0`, a power-of-two `align <= MAX_ALIGN`, `size + align <= isize::MAX`),
/// as one combined test (`size - 1` wraps for 0).
#[inline(always)]
pub const fn servable(size: usize, align: usize) -> bool {
    let mask = align.wrapping_sub(1);
    (mask & align) == 0 && mask < MAX_ALIGN && size.wrapping_sub(1) < isize::MAX as usize - align
}

/// The largest request the call-free level serves (128 KiB). A larger one takes the slow
/// path: it costs a new chunk or a system call anyway, and the bound lets the call-free
/// level's counters find a size class without clamping it.
pub const PLAIN_MAX: usize = 1 << 17;

/// Whether a request whose alignment may be 0 (natural) is servable ([`servable`]) and
/// `size - 1 < bound` for a `bound <= PLAIN_MAX`. The natural alignment is always valid, so
/// one compare of the size covers it (`size - 1` wraps for 0); a size this small cannot
/// overflow with any alignment.
#[inline(always)]
pub const fn plain_servable(size: usize, align: usize, bound: usize) -> bool {
    let small = size.wrapping_sub(1) < bound;
    if align == 0 {
        small
    } else {
        let mask = align.wrapping_sub(1);
        small && (mask & align) == 0 && mask < MAX_ALIGN
    }
}

/// The resolved alignment of a servable request, or `None` (see `servable`).
#[inline(always)]
pub const fn checked_align(size: usize, align: usize) -> Option<usize> {
    let align = resolve_align(size, align);
    if servable(size, align) {
        Some(align)
    } else {
        None
    }
}
