//! The arena for Rust: [`Arena`], in the style of bumpalo, over the arena allocator
//! ([`Bump`]); every request goes through the front door's levels for that backend (its
//! inline bump first), so stats and callbacks apply as for C callers.

use core::alloc::Layout;
use core::fmt;
use core::mem::MaybeUninit;
use core::ptr::NonNull;

use crate::allocators::arena::{check_raw, mark_raw, place, reset_raw, rewind_raw, Bump, Mark};
use crate::api::bump::{bump_methods, Blocks};
use crate::handle::counting_controls;
use crate::handle::{AllocError, Allocator, AllocatorRef};
use crate::policy::backend::Backend;
use crate::policy::front;
use crate::policy::invariant::InvariantError;
use crate::raw::{AllocOptions, GooAllocator};

/// A bump arena for Rust: allocate values, slices and strings that live as long as the arena
/// (or until [`Arena::reset`]); free everything at once. Destructors of values in the arena do
/// not run (as in bumpalo).
///
/// Stats are counted (as by `goo_arena_allocator_create`) unless turned off with
/// [`Arena::with_stats`]. Not `Sync`: an arena belongs to one thread at a time (it is `Send`).
///
/// ```
/// use goo_memory_core::arena::Arena;
/// let mut arena = Arena::new();
/// let x = arena.alloc(41u64);
/// *x += 1;
/// let s = arena.alloc_str("hello");
/// let squares = arena.alloc_slice_fill_with(4, |i| i * i);
/// assert_eq!((*x, &*s, &*squares), (42, "hello", &[0, 1, 4, 9][..]));
/// let mut v = goo_memory_core::allocator_api2::vec::Vec::new_in(&arena);
/// v.extend_from_slice(&[1, 2, 3]);
/// drop(v);
/// assert_eq!(arena.stats().total_allocations, 4);
/// assert!(format!("{arena:?}").starts_with("Arena { chunks: 1, limit: None, tracks_stats: true"));
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

/// A block of a bump allocator through the front door's levels for it (its inline bump first,
/// then a new chunk, strategy, failure counting): the fast path of [`Arena`] and
/// [`Temp`](crate::temp::Temp).
///
/// # Safety
/// `allocator` is a live library allocator whose backend is `bump` (an arena's, a shared
/// arena's).
#[inline(always)]
pub(crate) unsafe fn bump_alloc<B: Backend>(
    allocator: *mut GooAllocator,
    bump: &B,
    layout: Layout,
) -> Result<NonNull<u8>, AllocError> {
    // SAFETY: forwarded contract.
    let p = unsafe { front::alloc_in(allocator, bump, layout.size(), layout.align(), AllocOptions::DEFAULT) };
    NonNull::new(p).ok_or(AllocError)
}

/// Frees a block of a bump allocator through the front door's levels for it.
///
/// # Safety
/// As for [`bump_alloc`]; `block` is a live block of it allocated with `layout`.
#[inline(always)]
pub(crate) unsafe fn bump_free<B: Backend>(
    allocator: *mut GooAllocator,
    bump: &B,
    block: NonNull<u8>,
    layout: Layout,
) {
    // SAFETY: forwarded contract.
    unsafe { front::free_in(allocator, bump, block.as_ptr(), layout.size(), layout.align()) }
}

/// Why [`Arena::set_allocation_limit`] refused a limit.
///
/// ```
/// use goo_memory_core::arena::{Arena, LimitError};
/// let arena = Arena::new();
/// arena.alloc(1u8);
/// let held = arena.allocated_bytes();
/// assert_eq!(arena.set_allocation_limit(Some(1)), Err(LimitError { bytes_held: held }));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LimitError {
    /// The bytes of chunks the arena holds now, the least limit it can take.
    pub bytes_held: usize,
}

impl fmt::Display for LimitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the arena already holds {} bytes of chunks, more than the limit", self.bytes_held)
    }
}

impl std::error::Error for LimitError {}

impl Arena {
    /// An arena over the built-in default allocator, first chunk
    /// [`DEFAULT_CHUNK_SIZE`](crate::arena::DEFAULT_CHUNK_SIZE), no limit, stats counted.
    pub fn new() -> Self {
        Self::with_capacity(0)
    }

    /// An arena whose first chunk holds at least `bytes` (stats counted).
    pub fn with_capacity(bytes: usize) -> Self {
        // SAFETY: the built-in allocator is a static.
        unsafe { Self::with_parent(crate::default::builtin(), bytes, 0) }
    }

    /// An arena taking chunks from `parent`, with a byte limit on chunks (0 = none), stats
    /// counted: `goo_arena_allocator_create_ex`.
    ///
    /// # Safety
    /// `parent` must be valid, usable from the threads the arena moves to, and outlive it.
    pub unsafe fn with_parent(parent: *mut GooAllocator, initial_size: usize, limit: usize) -> Self {
        // SAFETY: forwarded contract; `place` makes a `Managed<Bump>` that the allocator owns.
        let allocator =
            unsafe { Allocator::from_managed(place(Bump::new(parent, initial_size, limit), true)) };
        let bump = NonNull::from(allocator.backend());
        Arena { allocator, bump }
    }

    counting_controls!();

    #[inline(always)]
    fn bump(&self) -> &Bump {
        // SAFETY: the backend lives as long as `self.allocator`.
        unsafe { self.bump.as_ref() }
    }

    /// Allocates a block for `layout`: inline bump, else the front door (new chunk, strategy,
    /// failure counting).
    #[inline(always)]
    pub fn try_alloc_layout(&self, layout: Layout) -> Result<NonNull<u8>, AllocError> {
        // SAFETY: the allocator is a live arena and its backend is `self.bump()`.
        unsafe { bump_alloc(self.allocator.as_ptr(), self.bump(), layout) }
    }

    bump_methods!();

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

    /// Sets the most bytes of chunks the arena may hold at once (`None`: no limit), as
    /// bumpalo's `set_allocation_limit` does; a request that would need more fails (the
    /// panicking forms call [`std::alloc::handle_alloc_error`]). The bytes count whole chunks,
    /// headers included, as [`Arena::allocated_bytes`] does. A limit below what the arena holds
    /// now is refused (the arena cannot give back chunks that hold live values; reset it
    /// first). `Some(0)` means no limit, as 0 does in `goo_arena_allocator_create_ex`: to forbid
    /// any new chunk, set the limit to [`Arena::allocated_bytes`].
    ///
    /// ```
    /// # use goo_memory_core::arena::Arena;
    /// let arena = Arena::with_capacity(1000);
    /// arena.alloc(1u8);
    /// arena.set_allocation_limit(Some(arena.allocated_bytes())).unwrap();
    /// assert!(arena.try_alloc_layout(core::alloc::Layout::new::<[u8; 2000]>()).is_err());
    /// assert!(arena.set_allocation_limit(Some(10)).is_err());
    /// arena.set_allocation_limit(None).unwrap();
    /// assert!(arena.try_alloc_slice_fill_copy(2000, 0u8).is_ok());
    /// ```
    pub fn set_allocation_limit(&self, limit: Option<usize>) -> Result<(), LimitError> {
        self.bump().set_limit(limit.unwrap_or(0)).map_err(|bytes_held| LimitError { bytes_held })
    }

    /// The limit [`Arena::set_allocation_limit`] (or [`Arena::with_parent`]) set.
    pub fn allocation_limit(&self) -> Option<usize> {
        Some(self.bump().limit()).filter(|&l| l != 0)
    }

    /// The memory of every chunk, newest chunk first, as bumpalo's `iter_allocated_chunks`:
    /// the newest chunk up to where allocation stopped, every older chunk whole (the arena does
    /// not keep where each stopped, so an older chunk's unused tail is included), a chunk of a
    /// large request whole. Blocks are laid out upward in a chunk, in allocation order, with
    /// alignment padding between them; bytes never written are uninitialised, hence
    /// `MaybeUninit`. Takes `&mut self`, so no value in the arena is borrowed meanwhile.
    ///
    /// ```
    /// # use goo_memory_core::arena::Arena;
    /// let mut arena = Arena::new();
    /// arena.alloc_slice_copy(b"abc");
    /// arena.alloc_slice_copy(b"def");
    /// let chunks: Vec<&[core::mem::MaybeUninit<u8>]> = arena.iter_allocated_chunks().collect();
    /// assert_eq!(chunks.len(), 1);
    /// // SAFETY: the six bytes were written above.
    /// let bytes: Vec<u8> = chunks[0].iter().map(|b| unsafe { b.assume_init() }).collect();
    /// assert_eq!(bytes, b"abcdef");
    /// ```
    pub fn iter_allocated_chunks(&mut self) -> impl Iterator<Item = &[MaybeUninit<u8>]> + '_ {
        self.bump().chunk_areas().map(|(start, len)| {
            // SAFETY: the data area of a live chunk, which stays while `self` is mutably
            // borrowed (nothing can allocate, free, reset or rewind meanwhile), and no reference
            // into it is alive (values in the arena are borrowed from `&self`). Any byte is a
            // valid `MaybeUninit<u8>`.
            unsafe { core::slice::from_raw_parts(start.cast::<MaybeUninit<u8>>(), len) }
        })
    }

    /// Bytes held in chunks (what the arena took from its parent).
    pub fn allocated_bytes(&self) -> usize {
        self.bump().reserved()
    }

    /// Number of chunks held.
    pub fn chunk_count(&self) -> usize {
        self.bump().chunk_count()
    }

    /// The front door's stats (`bytes_reserved` = chunk bytes; the others count only while
    /// stats tracking is on).
    pub fn stats(&self) -> crate::AllocStats {
        self.allocator.stats()
    }

    /// The arena as a `GooAllocator*` for C (still owned by the arena).
    pub fn as_ptr(&self) -> *mut GooAllocator {
        self.allocator.as_ptr()
    }

    /// A handle for allocation through the front door.
    pub fn handle(&self) -> AllocatorRef<'_> {
        self.allocator.handle()
    }
}

impl Blocks for Arena {
    #[inline(always)]
    fn try_alloc_layout(&self, layout: Layout) -> Result<NonNull<u8>, AllocError> {
        Arena::try_alloc_layout(self, layout)
    }

    unsafe fn give_back(&self, block: NonNull<u8>, layout: Layout) {
        // SAFETY: the allocator is a live arena with backend `self.bump()`; the caller vouches
        // for the block.
        unsafe { bump_free(self.allocator.as_ptr(), self.bump(), block, layout) }
    }
}

impl fmt::Debug for Arena {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Arena")
            .field("chunks", &self.chunk_count())
            .field("limit", &self.allocation_limit())
            .field("tracks_stats", &self.tracks_stats())
            .field("stats", &self.stats())
            .finish()
    }
}

impl fmt::Debug for Bump {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Bump")
            .field("chunks", &self.chunk_count())
            .field("bytes_reserved", &self.reserved())
            .field("limit", &self.limit())
            .field("parent", &self.parent())
            .finish()
    }
}

/// A checkpoint of an [`Arena`]: derefs to the arena; on drop, everything allocated since it was
/// taken is freed. Borrows of that memory cannot outlive the guard.
///
/// ```
/// use goo_memory_core::arena::Arena;
/// let mut arena = Arena::new();
/// let kept = arena.alloc(1u32) as *const u32;
/// {
///     let scratch = arena.checkpoint();
///     let mut v = goo_memory_core::allocator_api2::vec::Vec::new_in(&scratch);
///     v.extend(0..1000u32);
///     assert_eq!(scratch.stats().allocation_count, 2);
/// } // the Vec's block is freed here
/// assert_eq!(arena.stats().allocation_count, 1);
/// # let _ = kept;
/// ```
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

impl fmt::Debug for Checkpoint<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Checkpoint").field("arena", &self.arena).field("mark", &self.mark).finish()
    }
}

/// Implements allocator-api2's `Allocator` for `&$ty`, a handle over a bump allocator with an
/// inline `try_alloc_layout`, [`Blocks::give_back`] and `handle()`: an allocation takes the
/// inline bump, a free gives the bytes back, a grow or shrink goes through the front door.
/// The method `$growing`, if named, runs first wherever the bump pointer may move up (a grow; a
/// shrink to another alignment, which allocates anew). The invocation says why the handle's
/// blocks stay valid.
#[cfg(feature = "allocator-api2")]
macro_rules! bump_api2 {
    ($ty:ty $(, before growing: $growing:ident)? $(, outer releases: $releasing:ident)?) => {
        // SAFETY: blocks come from the bump allocator through the front door, valid for their
        // layout and disjoint, and stay valid while a `&$ty` exists (the invocation's reason);
        // frees, grows and shrinks go through the front door with the caller's arguments.
        unsafe impl allocator_api2::alloc::Allocator for &$ty {
            #[inline(always)]
            fn allocate(&self, layout: Layout) -> Result<NonNull<[u8]>, allocator_api2::alloc::AllocError> {
                self.try_alloc_layout(layout)
                    .map(|p| NonNull::slice_from_raw_parts(p, layout.size()))
                    .map_err(|_| allocator_api2::alloc::AllocError)
            }

            unsafe fn deallocate(&self, ptr: NonNull<u8>, layout: Layout) {
                // SAFETY: forwarded contract (a block of this allocator, allocated with `layout`).
                unsafe { self.give_back(ptr, layout) }
            }

            unsafe fn grow(
                &self,
                ptr: NonNull<u8>,
                old: Layout,
                new: Layout,
            ) -> Result<NonNull<[u8]>, allocator_api2::alloc::AllocError> {
                $(self.$growing();)?
                // SAFETY: forwarded contract.
                unsafe { allocator_api2::alloc::Allocator::grow(&self.handle(), ptr, old, new) }
            }

            unsafe fn grow_zeroed(
                &self,
                ptr: NonNull<u8>,
                old: Layout,
                new: Layout,
            ) -> Result<NonNull<[u8]>, allocator_api2::alloc::AllocError> {
                $(self.$growing();)?
                // SAFETY: forwarded contract.
                unsafe { allocator_api2::alloc::Allocator::grow_zeroed(&self.handle(), ptr, old, new) }
            }

            unsafe fn shrink(
                &self,
                ptr: NonNull<u8>,
                old: Layout,
                new: Layout,
            ) -> Result<NonNull<[u8]>, allocator_api2::alloc::AllocError> {
                if !ptr.as_ptr().addr().is_multiple_of(new.align()) {
                    // Only a block that lacks the new alignment moves (a new allocation).
                    $(self.$growing();)?
                }
                $(
                    // The block stays where it is, as large as it was: it fits `new`.
                    if self.$releasing(old.size() - new.size(), 0) {
                        return Ok(NonNull::slice_from_raw_parts(ptr, new.size()));
                    }
                )?
                // SAFETY: forwarded contract.
                unsafe { allocator_api2::alloc::Allocator::shrink(&self.handle(), ptr, old, new) }
            }
        }
    };
}
#[cfg(feature = "allocator-api2")]
pub(crate) use bump_api2;

// An arena's blocks stay valid until it is reset (which needs `&mut`) or dropped (which
// outlives every `&Arena`); nothing else moves its bump pointer back.
#[cfg(feature = "allocator-api2")]
bump_api2!(Arena);

// A checkpoint's blocks are the arena's, valid until the guard drops, which outlives every
// `&Checkpoint`.
#[cfg(feature = "allocator-api2")]
crate::handle::delegate_api2!(impl['a, 'c] &'c Checkpoint<'a>, |this| &*this.arena);

impl Arena {
    /// Verifies the invariants of the arena's state and stats (see [`check_raw`]).
    pub fn check(&self) -> Result<(), InvariantError> {
        // SAFETY: the allocator is a live arena, owned by `self`.
        unsafe { check_raw(self.allocator.as_ptr()) }
    }
}
