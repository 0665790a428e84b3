//! The arena for Rust: [`Arena`], in the style of bumpalo, over the arena allocator
//! ([`Bump`]); every request goes through the front door's levels for that backend (its
//! inline bump first), so stats and callbacks apply as for C callers.

use core::alloc::Layout;
use core::ptr::NonNull;

use crate::allocators::arena::{check_raw, mark_raw, place, reset_raw, rewind_raw, Bump, Mark};
use crate::handle::Allocator;
use crate::policy::invariant::InvariantError;
use crate::raw::GooAllocator;

/// The methods a bump arena's Rust handle ([`Arena`], [`SharedArena`](crate::arena::SharedArena))
/// has whatever its backend `$backend`: allocation through the front door's levels for it (the
/// inline bump first), the value-allocating methods built on it, stats and the raw pointer. The
/// handle has fields `allocator: Allocator<$backend>` and `bump: NonNull<$backend>`, and the
/// backend `reserved()` and `chunk_count()`.
macro_rules! bump_handle {
    ($backend:ty) => {
        /// Turns stats (through the front door's counters) on or off.
        pub fn set_track_stats(&mut self, on: bool) {
            self.allocator.set_track_stats(on);
        }

        #[inline(always)]
        fn bump(&self) -> &$backend {
            // SAFETY: the backend lives as long as `self.allocator`.
            unsafe { self.bump.as_ref() }
        }

        /// Allocates a block for `layout`: the inline bump, else the front door (a new chunk,
        /// strategy, failure counting).
        #[inline(always)]
        pub fn try_alloc_layout(
            &self,
            layout: core::alloc::Layout,
        ) -> Result<core::ptr::NonNull<u8>, $crate::AllocError> {
            // SAFETY: the allocator is live and its backend is `self.bump()`.
            let p = unsafe {
                $crate::policy::front::alloc_in(
                    self.allocator.as_ptr(),
                    self.bump(),
                    layout.size(),
                    layout.align(),
                    $crate::AllocOptions::DEFAULT,
                )
            };
            core::ptr::NonNull::new(p).ok_or($crate::AllocError)
        }

        /// Bytes held in chunks (what the arena took from its parent).
        pub fn allocated_bytes(&self) -> usize {
            self.bump().reserved()
        }

        /// Number of chunks held.
        pub fn chunk_count(&self) -> usize {
            self.bump().chunk_count()
        }

        /// The front door's stats (bytes_reserved = chunk bytes; the others count only while
        /// stats tracking is on).
        pub fn stats(&self) -> $crate::AllocStats {
            self.allocator.stats()
        }

        /// The arena as a `GooAllocator*` for C (still owned by the arena).
        pub fn as_ptr(&self) -> *mut $crate::GooAllocator {
            self.allocator.as_ptr()
        }

        /// A handle for allocation through the front door.
        pub fn handle(&self) -> $crate::AllocatorRef<'_> {
            self.allocator.handle()
        }

        /// As `try_alloc_layout`; panics (like `Box::new`) when memory is exhausted.
        #[inline(always)]
        pub fn alloc_layout(&self, layout: core::alloc::Layout) -> core::ptr::NonNull<u8> {
            match self.try_alloc_layout(layout) {
                Ok(p) => p,
                Err(_) => $crate::api::arena::oom(layout),
            }
        }

        /// Moves `value` into the arena.
        #[inline(always)]
        #[allow(clippy::mut_from_ref)]
        pub fn alloc<T>(&self, value: T) -> &mut T {
            match self.try_alloc(value) {
                Ok(r) => r,
                Err(_) => $crate::api::arena::oom(core::alloc::Layout::new::<T>()),
            }
        }

        /// Moves `value` into the arena, or gives it back on failure.
        #[inline(always)]
        #[allow(clippy::mut_from_ref)]
        pub fn try_alloc<T>(&self, value: T) -> Result<&mut T, T> {
            match self.try_alloc_layout(core::alloc::Layout::new::<T>()) {
                Ok(p) => {
                    let p = p.cast::<T>();
                    // SAFETY: a fresh block for one `T`, borrowed for the arena's lifetime.
                    unsafe {
                        p.as_ptr().write(value);
                        Ok(&mut *p.as_ptr())
                    }
                }
                Err(_) => Err(value),
            }
        }

        /// Copies a slice into the arena.
        #[allow(clippy::mut_from_ref)]
        pub fn alloc_slice_copy<T: Copy>(&self, src: &[T]) -> &mut [T] {
            let layout = core::alloc::Layout::for_value(src);
            let p = self.alloc_layout(layout).cast::<T>();
            // SAFETY: a fresh block for `src.len()` values of `T`; `T: Copy`.
            unsafe {
                core::ptr::copy_nonoverlapping(src.as_ptr(), p.as_ptr(), src.len());
                core::slice::from_raw_parts_mut(p.as_ptr(), src.len())
            }
        }

        /// Copies a string into the arena.
        #[allow(clippy::mut_from_ref)]
        pub fn alloc_str(&self, s: &str) -> &mut str {
            let bytes = self.alloc_slice_copy(s.as_bytes());
            // SAFETY: copied from a `str`, so valid UTF-8.
            unsafe { core::str::from_utf8_unchecked_mut(bytes) }
        }
    };
}
pub(crate) use bump_handle;

/// `allocator_api2::alloc::Allocator` for `&$ty`, a bump arena's handle made with
/// [`bump_handle`]: allocation and free through the front door's
/// levels for that backend, resizes through the handle.
#[cfg(feature = "allocator-api2")]
macro_rules! bump_api2 {
    ($ty:ty) => {
        // SAFETY: blocks come from the arena and stay valid until it is reset (which needs
        // `&mut`) or dropped (which outlives every `&` of it); deallocate, grow and shrink go
        // through the front door.
        unsafe impl allocator_api2::alloc::Allocator for &$ty {
            #[inline(always)]
            fn allocate(
                &self,
                layout: core::alloc::Layout,
            ) -> Result<core::ptr::NonNull<[u8]>, allocator_api2::alloc::AllocError> {
                self.try_alloc_layout(layout)
                    .map(|p| core::ptr::NonNull::slice_from_raw_parts(p, layout.size()))
                    .map_err(|_| allocator_api2::alloc::AllocError)
            }

            unsafe fn deallocate(&self, ptr: core::ptr::NonNull<u8>, layout: core::alloc::Layout) {
                // SAFETY: the allocator is live, its backend is `self.bump()`; the caller
                // vouches for the block.
                unsafe {
                    $crate::policy::front::free_in(
                        self.as_ptr(),
                        self.bump(),
                        ptr.as_ptr(),
                        layout.size(),
                        layout.align(),
                    )
                }
            }

            unsafe fn grow(
                &self,
                ptr: core::ptr::NonNull<u8>,
                old: core::alloc::Layout,
                new: core::alloc::Layout,
            ) -> Result<core::ptr::NonNull<[u8]>, allocator_api2::alloc::AllocError> {
                // SAFETY: forwarded contract.
                unsafe { allocator_api2::alloc::Allocator::grow(&self.handle(), ptr, old, new) }
            }

            unsafe fn shrink(
                &self,
                ptr: core::ptr::NonNull<u8>,
                old: core::alloc::Layout,
                new: core::alloc::Layout,
            ) -> Result<core::ptr::NonNull<[u8]>, allocator_api2::alloc::AllocError> {
                // SAFETY: forwarded contract.
                unsafe { allocator_api2::alloc::Allocator::shrink(&self.handle(), ptr, old, new) }
            }
        }
    };
}
#[cfg(feature = "allocator-api2")]
pub(crate) use bump_api2;

/// A bump arena for Rust: allocate values, slices and strings that live as long as the arena
/// (or until [`Arena::reset`]); free everything at once. Destructors of values in the arena do
/// not run (as in bumpalo).
///
/// Not `Sync`: an arena belongs to one thread at a time (it is `Send`).
///
/// ```
/// use goo_memory_core::arena::Arena;
/// let mut arena = Arena::new();
/// let x = arena.alloc(41u64);
/// *x += 1;
/// let s = arena.alloc_str("hello");
/// assert_eq!((*x, &*s), (42, "hello"));
/// let mut v = allocator_api2::vec::Vec::new_in(&arena);
/// v.extend_from_slice(&[1, 2, 3]);
/// drop(v);
/// arena.reset();
/// assert_eq!(arena.chunk_count(), 1);
/// ```
pub struct Arena {
    allocator: Allocator<Bump>,
    /// Cached `allocator.backend()`: the fast path skips the vtable's context load.
    bump: NonNull<Bump>,
}

// SAFETY: the arena owns its chunks and state; moving it to another thread moves all of it (the
// parent allocator is required to be usable from any thread: the default system allocator is).
unsafe impl Send for Arena {}

impl Default for Arena {
    fn default() -> Self {
        Self::new()
    }
}

impl Arena {
    /// An arena over the built-in system allocator, first chunk [`DEFAULT_CHUNK_SIZE`](crate::arena::DEFAULT_CHUNK_SIZE), no stats.
    pub fn new() -> Self {
        Self::with_capacity(0)
    }

    /// An arena whose first chunk holds at least `bytes`.
    pub fn with_capacity(bytes: usize) -> Self {
        // SAFETY: the built-in allocator is a static.
        unsafe { Self::with_parent(crate::default::builtin(), bytes, 0) }
    }

    /// An arena taking chunks from `parent`, with a byte limit on chunks (0 = none).
    ///
    /// # Safety
    /// `parent` must be valid, usable from the threads the arena moves to, and outlive it.
    pub unsafe fn with_parent(parent: *mut GooAllocator, initial_size: usize, limit: usize) -> Self {
        // SAFETY: forwarded contract; `place` makes a `Managed<Bump>` that the allocator owns.
        let allocator =
            unsafe { Allocator::from_managed(place(Bump::new(parent, initial_size, limit), false)) };
        let bump = NonNull::from(allocator.backend());
        Arena { allocator, bump }
    }

    bump_handle!(Bump);

    /// Frees everything; keeps the largest chunk, so a reused arena stops calling its parent.
    pub fn reset(&mut self) {
        // SAFETY: `&mut self` means no borrow of arena memory is alive.
        unsafe { reset_raw(self.allocator.as_ptr()) };
    }

    /// A checkpoint: everything allocated through the guard is freed when it drops.
    /// ```
    /// # use goo_memory_core::arena::Arena;
    /// let mut arena = Arena::new();
    /// arena.alloc(1u8);
    /// let before = arena.stats().bytes_reserved;
    /// {
    ///     let scope = arena.checkpoint();
    ///     scope.alloc_slice_copy(&[0u8; 100_000]);
    /// }
    /// assert_eq!(arena.stats().bytes_reserved, before);
    /// ```
    pub fn checkpoint(&mut self) -> Checkpoint<'_> {
        // SAFETY: the allocator is a live arena.
        let mark = unsafe { mark_raw(self.allocator.as_ptr()) }.expect("an Arena is an arena");
        Checkpoint { arena: self, mark }
    }
}

#[cold]
pub(crate) fn oom(layout: Layout) -> ! {
    std::alloc::handle_alloc_error(layout)
}

/// A checkpoint of an [`Arena`]: derefs to the arena; on drop, everything allocated since it was
/// taken is freed. Borrows of that memory cannot outlive the guard.
pub struct Checkpoint<'a> {
    arena: &'a mut Arena,
    mark: Mark,
}

impl core::ops::Deref for Checkpoint<'_> {
    type Target = Arena;
    fn deref(&self) -> &Arena {
        self.arena
    }
}

impl Checkpoint<'_> {
    /// A nested checkpoint.
    pub fn checkpoint(&mut self) -> Checkpoint<'_> {
        self.arena.checkpoint()
    }
}

impl Drop for Checkpoint<'_> {
    fn drop(&mut self) {
        // SAFETY: the guard's borrow ends here, so nothing allocated through it is still
        // borrowed; the mark is valid (taken on this arena, nested guards dropped first).
        let r = unsafe { rewind_raw(self.arena.allocator.as_ptr(), &self.mark) };
        debug_assert!(r.is_ok());
    }
}

#[cfg(feature = "allocator-api2")]
bump_api2!(Arena);

impl Arena {
    /// Verifies the invariants of the arena's state and stats (see [`check_raw`]).
    pub fn check(&self) -> Result<(), InvariantError> {
        // SAFETY: the allocator is a live arena, owned by `self`.
        unsafe { check_raw(self.allocator.as_ptr()) }
    }
}
