//! The idiomatic Rust face of the library: [`AllocatorRef`] (any `GooAllocator`, borrowed) and
//! [`Allocator<B>`] (a library allocator you own). Both go through the front door, so Rust
//! callers get the same stats and strategies as C callers.

use core::alloc::Layout;
use core::fmt;
use core::marker::PhantomData;
use core::ptr::NonNull;

use crate::allocators::heap::Heap;
use crate::allocators::system::System;
use crate::policy::backend::{Backend, Managed};
use crate::policy::front;
use crate::raw::{AllocOptions, AllocStats, AllocStrategy, GooAllocator};
use crate::{default, dispatch};

/// Puts the stats switch and the limit on live bytes on a handle with an `as_ptr()` to the
/// library allocator it owns: the same methods on every handle, and the same default as in C
/// (every allocator counts unless told not to).
macro_rules! counting_controls {
    () => {
        /// Turns stats counting on or off (builder form of `set_track_stats`): a new handle
        /// counts, as the C allocators do.
        #[must_use]
        pub fn with_stats(mut self, on: bool) -> Self {
            self.set_track_stats(on);
            self
        }

        /// Turns stats counting on or off (the C header's `track_stats`). What happened while
        /// it was off is not made up: a block allocated then and freed while on makes the live
        /// figures read low (never below zero), so switch while nothing is allocated for exact
        /// live counts. Failures are counted either way.
        pub fn set_track_stats(&mut self, on: bool) {
            // SAFETY: the allocator is live and owned by `self`; `&mut self` means no request
            // through it is running (the handle is the only way in, and it is borrowed). The
            // store is atomic: a registry reader on another thread may read the flag meanwhile.
            unsafe { crate::raw::track_stats_flag(self.as_ptr()) }
                .store(on, core::sync::atomic::Ordering::Relaxed);
        }

        /// Whether stats are counted.
        pub fn tracks_stats(&self) -> bool {
            // SAFETY: the allocator is live while `self` is.
            unsafe { crate::raw::track_stats_flag(self.as_ptr()) }.load(core::sync::atomic::Ordering::Relaxed)
        }

        /// Limits the live bytes (what the stats count live) to `max_live_bytes`; 0 removes
        /// the limit. An allocation past it fails as the allocator failing would (counted,
        /// the strategy applied), and the limited allocator keeps the live count even with
        /// stats off. See `goo_allocator_set_limit` in `goo/runtime/memory.h`.
        pub fn set_limit(&self, max_live_bytes: usize) {
            // SAFETY: the allocator is live while `self` is; a library allocator's limit is
            // set without fail (only a C-made one's table can be full).
            let set = unsafe { crate::dispatch::set_limit(self.as_ptr(), max_live_bytes) };
            debug_assert!(set);
        }

        /// The limit on live bytes; 0 = none.
        pub fn limit(&self) -> usize {
            // SAFETY: as in `set_limit`.
            unsafe { crate::dispatch::limit(self.as_ptr()) }
        }
    };
}
pub(crate) use counting_controls;

/// A request could not be met (after the allocator's strategy gave up).
///
/// ```
/// use goo_memory_core::{arena::Arena, AllocError};
/// // SAFETY: the built-in allocator is a static.
/// let arena = unsafe { Arena::with_parent(goo_memory_core::builtin(), 1024, 4096) };
/// assert_eq!(arena.try_alloc_slice_fill_copy(10_000, 0u8).unwrap_err(), AllocError);
/// assert_eq!(AllocError.to_string(), "memory allocation failed");
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AllocError;

impl fmt::Display for AllocError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("memory allocation failed")
    }
}

impl std::error::Error for AllocError {}

/// A borrowed handle to any allocator, library-made or C-made.
///
/// `Copy`, and neither `Send` nor `Sync`: whether an allocator may be used from several threads
/// depends on it; [`Allocator<B>`] knows and says so through its own auto traits.
///
/// ```
/// use goo_memory_core::{AllocOptions, Allocator, AllocatorRef};
/// use core::alloc::Layout;
/// let heap = Allocator::system();
/// let a: AllocatorRef<'_> = heap.handle();
/// let p = a.allocate(Layout::new::<[u64; 4]>(), AllocOptions::ZERO).unwrap();
/// // SAFETY: 32 zeroed bytes, just allocated.
/// assert_eq!(unsafe { p.cast::<[u64; 4]>().read() }, [0; 4]);
/// // SAFETY: a live block of `a` with this layout.
/// unsafe { a.deallocate(p, Layout::new::<[u64; 4]>()) };
/// assert_eq!(a.stats().total_frees, 1);
/// ```
#[derive(Clone, Copy)]
pub struct AllocatorRef<'a> {
    raw: NonNull<GooAllocator>,
    _lifetime: PhantomData<&'a GooAllocator>,
}

impl fmt::Debug for AllocatorRef<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("AllocatorRef").field(&self.raw).finish()
    }
}

impl<'a> AllocatorRef<'a> {
    /// Wraps a raw vtable.
    ///
    /// # Safety
    /// `raw` must point to a valid `GooAllocator` for `'a`, whose functions behave as documented
    /// in `include/goo/runtime/memory.h`.
    pub unsafe fn from_raw(raw: NonNull<GooAllocator>) -> Self {
        Self { raw, _lifetime: PhantomData }
    }

    /// Runs `f` with the allocator `goo_memory_alloc` would use on this thread now. The handle
    /// (and whatever is allocated through it, as a `Vec::new_in(a)`) cannot leave `f`: the
    /// current allocator may be a scope that [`Scope::run`](crate::scoped::Scope::run) ends
    /// right after, so no safe code may keep a block of it longer.
    ///
    /// ```
    /// use goo_memory_core::scoped::Scope;
    /// use goo_memory_core::{AllocOptions, AllocatorRef};
    /// Scope::run(|_| {
    ///     AllocatorRef::with_current(|a| {
    ///         let p = a.allocate(core::alloc::Layout::new::<u64>(), AllocOptions::DEFAULT);
    ///         assert!(p.is_ok()); // the scope's block, freed when the scope ends
    ///     });
    /// });
    /// ```
    ///
    /// Keeping the handle, or anything allocated through it, past `f` does not compile:
    ///
    /// ```compile_fail
    /// use goo_memory_core::AllocatorRef;
    /// let escaped = AllocatorRef::with_current(|a| a);
    /// ```
    pub fn with_current<R>(f: impl for<'c> FnOnce(AllocatorRef<'c>) -> R) -> R {
        // SAFETY: the current allocator is valid while it is current (the setters' contracts;
        // `Scope::run` ends its scope only after its closure returns, and this call returns
        // within that closure or outside any scope), and the handle cannot leave `f`.
        f(unsafe { AllocatorRef::from_raw(NonNull::new_unchecked(default::current())) })
    }

    /// The allocator `goo_memory_alloc` would use on this thread now, for as long as the caller
    /// says.
    ///
    /// # Safety
    /// The current allocator must stay valid for `'a`, and so for every block allocated through
    /// the handle: inside [`Scope::run`](crate::scoped::Scope::run) it is the scope, which ends
    /// when the closure returns. [`AllocatorRef::with_current`] is the safe form.
    pub unsafe fn current() -> AllocatorRef<'a> {
        // SAFETY: per the contract; the current allocator is never null.
        unsafe { AllocatorRef::from_raw(NonNull::new_unchecked(default::current())) }
    }

    /// The process-wide default allocator now, for as long as the caller says.
    ///
    /// # Safety
    /// The default allocator must stay valid for `'a`, and so for every block allocated through
    /// the handle. [`set_default_allocator`](crate::set_default_allocator) only keeps it valid
    /// while it is the default: once any thread makes another one the default, it may be
    /// destroyed. (The built-in default is never destroyed.)
    ///
    /// Safe code cannot keep such a handle past a change of the default:
    ///
    /// ```compile_fail
    /// let handle = goo_memory_core::AllocatorRef::default_allocator();
    /// ```
    pub unsafe fn default_allocator() -> AllocatorRef<'a> {
        // SAFETY: per the contract; the default allocator is never null.
        unsafe { AllocatorRef::from_raw(NonNull::new_unchecked(default::default_allocator())) }
    }

    /// The raw vtable, for C.
    pub fn as_ptr(self) -> *mut GooAllocator {
        self.raw.as_ptr()
    }

    /// Allocates a block for `layout` with `options`.
    pub fn allocate(self, layout: Layout, options: AllocOptions) -> Result<NonNull<u8>, AllocError> {
        // SAFETY: `raw` is valid for 'a (constructor contract).
        let p = unsafe { dispatch::alloc(self.raw.as_ptr(), layout.size(), layout.align(), options) };
        NonNull::new(p).ok_or(AllocError)
    }

    /// Resizes a block to `new_size` (same alignment). On error the block is untouched.
    ///
    /// # Safety
    /// `ptr` must be a live block of this allocator allocated with `old` (not one allocated
    /// with [`AllocOptions::TEMP`]: that is the temporary arena's); `new_size > 0`.
    pub unsafe fn reallocate(
        self,
        ptr: NonNull<u8>,
        old: Layout,
        new_size: usize,
        options: AllocOptions,
    ) -> Result<NonNull<u8>, AllocError> {
        debug_assert!(new_size > 0);
        // SAFETY: forwarded contract.
        let p = unsafe {
            dispatch::realloc(self.raw.as_ptr(), ptr.as_ptr(), old.size(), new_size, old.align(), options)
        };
        NonNull::new(p).ok_or(AllocError)
    }

    /// Frees a block.
    ///
    /// # Safety
    /// `ptr` must be a live block of this allocator allocated with `layout` (a block allocated
    /// with [`AllocOptions::TEMP`] is the temporary arena's, not this allocator's).
    pub unsafe fn deallocate(self, ptr: NonNull<u8>, layout: Layout) {
        // SAFETY: forwarded contract.
        unsafe { dispatch::free(self.raw.as_ptr(), ptr.as_ptr(), layout.size(), layout.align()) }
    }

    /// Merged statistics.
    pub fn stats(self) -> AllocStats {
        // SAFETY: `raw` is valid.
        unsafe { front::stats(self.raw.as_ptr()) }
    }

    /// Limits the allocator's live bytes to `max_live_bytes` (0 = no limit): an allocation
    /// that would pass it fails like one the allocator refused (counted, the strategy
    /// applied). False only for an allocator written in C when the table of such limits is
    /// full. See `goo_allocator_set_limit` in `goo/runtime/memory.h`.
    pub fn set_limit(self, max_live_bytes: usize) -> bool {
        // SAFETY: a handle is a valid allocator for its lifetime.
        unsafe { crate::dispatch::set_limit(self.raw.as_ptr(), max_live_bytes) }
    }

    /// The allocator's limit on live bytes; 0 = none.
    pub fn limit(self) -> usize {
        // SAFETY: as in `set_limit`.
        unsafe { crate::dispatch::limit(self.raw.as_ptr()) }
    }

    /// The allocator's out-of-memory strategy.
    pub fn strategy(self) -> AllocStrategy {
        // SAFETY: `raw` is valid for reads.
        AllocStrategy::from_raw(unsafe { (*self.raw.as_ptr()).strategy })
    }
}

/// A library allocator you own, with mechanism `B`; destroyed on drop. Stats are counted (as by
/// `goo_system_allocator_create`) unless turned off with [`Allocator::with_stats`].
///
/// `Send`/`Sync` exactly when `B` is: a system allocator can be shared across threads, an arena
/// cannot.
///
/// ```
/// use goo_memory_core::{AllocStrategy, Allocator};
/// let heap = Allocator::heap().with_stats(true);
/// let mut names = goo_memory_core::allocator_api2::vec::Vec::new_in(&heap);
/// names.push("goo");
/// assert_eq!(heap.stats().allocation_count, 1);
/// assert_eq!(heap.handle().strategy(), AllocStrategy::Null);
/// assert!(format!("{heap:?}").starts_with(r#"Allocator { kind: "heap", tracks_stats: true"#));
/// let line = heap.stats().to_string(); // one line: live bytes 64, reserved ..., failed 0
/// assert!(line.starts_with("live bytes 64, reserved ") && line.ends_with(", live 1, allocs 1, frees 0, failed 0"));
/// ```
pub struct Allocator<B: Backend> {
    raw: NonNull<GooAllocator>,
    _backend: PhantomData<B>,
}

// SAFETY: the allocator object is uniquely owned; moving it moves `B` (the header's stats are
// thread-safe atomics).
unsafe impl<B: Backend + Send> Send for Allocator<B> {}
// SAFETY: shared use calls `B` through `&B`, which is fine when `B: Sync`; stats are atomics.
unsafe impl<B: Backend + Sync> Sync for Allocator<B> {}

impl Allocator<System> {
    /// A new system allocator with its own stats (tracked) and the `Null` strategy.
    pub fn system() -> Self {
        Self::new(System)
    }
}

impl Allocator<Heap> {
    /// A new heap allocator (the small-object heap, `allocators::heap`) with its own stats
    /// (tracked) and the `Null` strategy.
    pub fn heap() -> Self {
        Self::new(Heap)
    }
}

impl<B: Backend> Allocator<B> {
    /// Wraps `backend` as a library allocator (stats tracked, strategy `Null`).
    pub fn new(backend: B) -> Self {
        Self::with_strategy(backend, AllocStrategy::Null)
    }

    /// Takes ownership of a library allocator made for backend `B`.
    ///
    /// # Safety
    /// `raw` must be a live `Managed<B>` allocator that nothing else owns.
    pub(crate) unsafe fn from_managed(raw: NonNull<GooAllocator>) -> Self {
        Self { raw, _backend: PhantomData }
    }

    /// Wraps `backend` with a strategy.
    pub fn with_strategy(backend: B, strategy: AllocStrategy) -> Self {
        Self { raw: Managed::create(backend, strategy, true), _backend: PhantomData }
    }

    /// A borrowed handle for allocation (and for `allocator-api2` containers).
    pub fn handle(&self) -> AllocatorRef<'_> {
        // SAFETY: `raw` is live while `self` is.
        unsafe { AllocatorRef::from_raw(self.raw) }
    }

    /// The mechanism.
    pub fn backend(&self) -> &B {
        // SAFETY: `raw` was made by `Managed::<B>::create` and is live.
        unsafe { Managed::<B>::backend(self.raw.as_ptr()) }
    }

    /// The raw vtable, for C (still owned by `self`).
    pub fn as_ptr(&self) -> *mut GooAllocator {
        self.raw.as_ptr()
    }

    /// Gives ownership to C: free it with its `destroy` function.
    pub fn into_raw(self) -> NonNull<GooAllocator> {
        let raw = self.raw;
        core::mem::forget(self);
        raw
    }

    /// Merged statistics.
    pub fn stats(&self) -> AllocStats {
        self.handle().stats()
    }

    counting_controls!();

    /// Sets the out-of-memory strategy.
    pub fn set_strategy(&mut self, strategy: AllocStrategy) {
        // SAFETY: as above.
        unsafe { (*self.raw.as_ptr()).strategy = strategy as u32 };
    }

    /// Allocates a block for `layout`.
    pub fn allocate(&self, layout: Layout) -> Result<NonNull<u8>, AllocError> {
        self.handle().allocate(layout, AllocOptions::DEFAULT)
    }

    /// Frees a block.
    ///
    /// # Safety
    /// `ptr` must be a live block of this allocator allocated with `layout`.
    pub unsafe fn deallocate(&self, ptr: NonNull<u8>, layout: Layout) {
        // SAFETY: forwarded contract.
        unsafe { self.handle().deallocate(ptr, layout) }
    }
}

impl<B: Backend> Drop for Allocator<B> {
    fn drop(&mut self) {
        // SAFETY: owned and live; destroy is the library's own.
        unsafe { crate::policy::backend::managed_destroy(self.raw.as_ptr()) }
    }
}

impl<B: Backend> fmt::Debug for Allocator<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Allocator")
            .field("kind", &B::NAME)
            .field("tracks_stats", &self.tracks_stats())
            .field("stats", &self.stats())
            .finish()
    }
}

/// Implements `allocator_api2::alloc::Allocator` for a handle type by delegating every method
/// to the [`AllocatorRef`] that `$handle` yields (the front door does the work).
#[cfg(feature = "allocator-api2")]
macro_rules! delegate_api2 {
    (impl[$($generics:tt)*] $ty:ty, |$this:ident| $handle:expr) => {
        // SAFETY: every method forwards to `AllocatorRef`, which upholds the contract, with the
        // caller's arguments unchanged.
        unsafe impl<$($generics)*> allocator_api2::alloc::Allocator for $ty {
            fn allocate(
                &self,
                layout: core::alloc::Layout,
            ) -> Result<core::ptr::NonNull<[u8]>, allocator_api2::alloc::AllocError> {
                let $this = self;
                allocator_api2::alloc::Allocator::allocate(&$handle, layout)
            }

            fn allocate_zeroed(
                &self,
                layout: core::alloc::Layout,
            ) -> Result<core::ptr::NonNull<[u8]>, allocator_api2::alloc::AllocError> {
                let $this = self;
                allocator_api2::alloc::Allocator::allocate_zeroed(&$handle, layout)
            }

            unsafe fn deallocate(&self, ptr: core::ptr::NonNull<u8>, layout: core::alloc::Layout) {
                let $this = self;
                // SAFETY: forwarded contract.
                unsafe { allocator_api2::alloc::Allocator::deallocate(&$handle, ptr, layout) }
            }

            unsafe fn grow(
                &self,
                ptr: core::ptr::NonNull<u8>,
                old: core::alloc::Layout,
                new: core::alloc::Layout,
            ) -> Result<core::ptr::NonNull<[u8]>, allocator_api2::alloc::AllocError> {
                let $this = self;
                // SAFETY: forwarded contract.
                unsafe { allocator_api2::alloc::Allocator::grow(&$handle, ptr, old, new) }
            }

            unsafe fn grow_zeroed(
                &self,
                ptr: core::ptr::NonNull<u8>,
                old: core::alloc::Layout,
                new: core::alloc::Layout,
            ) -> Result<core::ptr::NonNull<[u8]>, allocator_api2::alloc::AllocError> {
                let $this = self;
                // SAFETY: forwarded contract.
                unsafe { allocator_api2::alloc::Allocator::grow_zeroed(&$handle, ptr, old, new) }
            }

            unsafe fn shrink(
                &self,
                ptr: core::ptr::NonNull<u8>,
                old: core::alloc::Layout,
                new: core::alloc::Layout,
            ) -> Result<core::ptr::NonNull<[u8]>, allocator_api2::alloc::AllocError> {
                let $this = self;
                // SAFETY: forwarded contract.
                unsafe { allocator_api2::alloc::Allocator::shrink(&$handle, ptr, old, new) }
            }
        }
    };
}
#[cfg(feature = "allocator-api2")]
pub(crate) use delegate_api2;

#[cfg(feature = "allocator-api2")]
mod api2 {
    use super::*;
    use allocator_api2::alloc::{AllocError as Api2Error, Allocator as Api2Allocator};

    fn slice(p: NonNull<u8>, len: usize) -> NonNull<[u8]> {
        NonNull::slice_from_raw_parts(p, len)
    }

    // SAFETY: blocks come from the front door, which returns blocks valid for the layout until
    // freed (zero sizes get a dangling aligned pointer, freed as a no-op); the handle is a
    // pointer, so clones share the same allocator.
    unsafe impl Api2Allocator for AllocatorRef<'_> {
        fn allocate(&self, layout: Layout) -> Result<NonNull<[u8]>, Api2Error> {
            AllocatorRef::allocate(*self, layout, AllocOptions::DEFAULT)
                .map(|p| slice(p, layout.size()))
                .map_err(|_| Api2Error)
        }

        fn allocate_zeroed(&self, layout: Layout) -> Result<NonNull<[u8]>, Api2Error> {
            AllocatorRef::allocate(*self, layout, AllocOptions::ZERO)
                .map(|p| slice(p, layout.size()))
                .map_err(|_| Api2Error)
        }

        unsafe fn deallocate(&self, ptr: NonNull<u8>, layout: Layout) {
            // SAFETY: forwarded contract.
            unsafe { AllocatorRef::deallocate(*self, ptr, layout) }
        }

        unsafe fn grow(
            &self,
            ptr: NonNull<u8>,
            old: Layout,
            new: Layout,
        ) -> Result<NonNull<[u8]>, Api2Error> {
            // SAFETY: forwarded contract (new.size() >= old.size()).
            unsafe { resize(*self, ptr, old, new, AllocOptions::DEFAULT) }
        }

        unsafe fn grow_zeroed(
            &self,
            ptr: NonNull<u8>,
            old: Layout,
            new: Layout,
        ) -> Result<NonNull<[u8]>, Api2Error> {
            // SAFETY: forwarded contract.
            unsafe { resize(*self, ptr, old, new, AllocOptions::ZERO) }
        }

        unsafe fn shrink(
            &self,
            ptr: NonNull<u8>,
            old: Layout,
            new: Layout,
        ) -> Result<NonNull<[u8]>, Api2Error> {
            // SAFETY: forwarded contract.
            unsafe { resize(*self, ptr, old, new, AllocOptions::DEFAULT) }
        }
    }

    /// Resizes through the front door, falling back to copy when the alignment changes.
    unsafe fn resize(
        a: AllocatorRef<'_>,
        ptr: NonNull<u8>,
        old: Layout,
        new: Layout,
        options: AllocOptions,
    ) -> Result<NonNull<[u8]>, Api2Error> {
        if old.align() == new.align() && old.size() != 0 && new.size() != 0 {
            // SAFETY: the caller vouches for `ptr`/`old`.
            return unsafe { a.reallocate(ptr, old, new.size(), options) }
                .map(|p| slice(p, new.size()))
                .map_err(|_| Api2Error);
        }
        let fresh = a.allocate(new, options).map_err(|_| Api2Error)?;
        // SAFETY: both blocks live and disjoint; the old one is freed after copying.
        unsafe {
            core::ptr::copy_nonoverlapping(ptr.as_ptr(), fresh.as_ptr(), old.size().min(new.size()));
            a.deallocate(ptr, old);
        }
        Ok(slice(fresh, new.size()))
    }

    crate::handle::delegate_api2!(impl[B: Backend] &Allocator<B>, |this| this.handle());
}
