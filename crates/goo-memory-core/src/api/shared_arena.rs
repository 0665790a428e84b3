//! The shared arena for Rust: [`SharedArena`], an [`Arena`](crate::arena::Arena) that scoped
//! threads allocate from at once (it is `Sync`), over the shared arena allocator
//! ([`SharedBump`]); each request goes through the front door's levels for that backend (the
//! calling thread's lane's bump first).

use core::alloc::Layout;
use core::fmt;
use core::ptr::NonNull;

use crate::allocators::shared_arena::{check_raw, reset_raw, SharedBump};
use crate::api::arena::{bump_alloc, bump_free};
use crate::api::bump::{bump_methods, Blocks};
use crate::handle::counting_controls;
use crate::handle::{AllocError, Allocator, AllocatorRef};
use crate::policy::invariant::InvariantError;
use crate::raw::GooAllocator;

/// A bump arena that many threads allocate from at once: each thread bumps in a chunk of its
/// own, without a lock. Values, slices and strings live as long as the arena (or until
/// [`SharedArena::reset`], which needs `&mut`, so after the threads are done); their
/// destructors do not run. Freeing through `allocator_api2` gives the bytes of a thread's most
/// recent block back; other frees wait for the reset.
///
/// ```
/// use goo_memory_core::arena::SharedArena;
/// let mut arena = SharedArena::new();
/// let total: u64 = std::thread::scope(|s| {
///     let workers: Vec<_> = (0..4u64)
///         .map(|t| {
///             let arena = &arena;
///             s.spawn(move || {
///                 let values: Vec<&mut u64> = (0..100).map(|i| arena.alloc(t * 1000 + i)).collect();
///                 values.iter().map(|v| **v).sum::<u64>()
///             })
///         })
///         .collect();
///     workers.into_iter().map(|w| w.join().unwrap()).sum()
/// });
/// assert_eq!(total, (0..4u64).map(|t| (0..100).map(|i| t * 1000 + i).sum::<u64>()).sum());
/// arena.reset();
/// ```
pub struct SharedArena {
    allocator: Allocator<SharedBump>,
    /// Cached `allocator.backend()`: the fast path skips the vtable's context load.
    bump: NonNull<SharedBump>,
}

// SAFETY: the arena owns its chunks and state; `SharedBump` is `Sync` (lanes of atomics, the
// rest under its lock) and its parent is required to be usable from any thread (the built-in
// system allocator is).
unsafe impl Send for SharedArena {}
// SAFETY: as above: every method taking `&self` is safe to call from several threads at once.
unsafe impl Sync for SharedArena {}

impl Default for SharedArena {
    fn default() -> Self {
        Self::new()
    }
}

impl SharedArena {
    /// A shared arena over the built-in default allocator, each thread's first chunk
    /// [`DEFAULT_CHUNK_SIZE`](crate::arena::DEFAULT_CHUNK_SIZE), counting stats (as the C
    /// shared arena does; `with_stats(false)` turns that off).
    pub fn new() -> Self {
        Self::with_capacity(0)
    }

    /// A shared arena whose threads' first chunks hold at least `bytes`.
    pub fn with_capacity(bytes: usize) -> Self {
        // SAFETY: the built-in allocator is a static, usable from any thread.
        unsafe { Self::with_parent(crate::default::builtin(), bytes, 0) }
    }

    /// A shared arena taking chunks from `parent`, with a byte limit on chunks (0 = none).
    ///
    /// # Safety
    /// `parent` must be valid, outlive the arena, and be usable from any thread one at a time
    /// (the arena calls it under its lock).
    pub unsafe fn with_parent(parent: *mut GooAllocator, initial_size: usize, limit: usize) -> Self {
        // SAFETY: forwarded contract.
        let allocator = Allocator::new(unsafe { SharedBump::new(parent, initial_size, limit) });
        let bump = NonNull::from(allocator.backend());
        SharedArena { allocator, bump }
    }

    counting_controls!();

    #[inline(always)]
    fn bump(&self) -> &SharedBump {
        // SAFETY: the backend lives as long as `self.allocator`.
        unsafe { self.bump.as_ref() }
    }

    /// Allocates a block for `layout`: the calling thread's lane's bump, else the front door
    /// (a new chunk, strategy, failure counting).
    #[inline(always)]
    pub fn try_alloc_layout(&self, layout: Layout) -> Result<NonNull<u8>, AllocError> {
        // SAFETY: the allocator is a live shared arena and its backend is `self.bump()`.
        unsafe { bump_alloc(self.allocator.as_ptr(), self.bump(), layout) }
    }

    bump_methods!();

    /// Bytes of chunks the arena holds, headers included.
    pub fn allocated_bytes(&self) -> usize {
        self.bump().reserved()
    }

    /// The arena's merged statistics.
    pub fn stats(&self) -> crate::AllocStats {
        self.allocator.stats()
    }

    /// The arena as a `GooAllocator*` (still owned by `self`).
    pub fn as_ptr(&self) -> *mut GooAllocator {
        self.allocator.as_ptr()
    }

    /// A handle for allocation through the front door.
    pub fn handle(&self) -> AllocatorRef<'_> {
        self.allocator.handle()
    }

    /// Frees everything; every thread's lane keeps its current chunk, the others go back to
    /// the parent. (`&mut`: no other thread is inside the arena, so it is never refused.)
    pub fn reset(&mut self) {
        // SAFETY: `&mut self` means no borrow of arena memory is alive, and no thread uses it.
        let done = unsafe { reset_raw(self.allocator.as_ptr()) };
        debug_assert!(done, "a reset through &mut is never refused");
    }

    /// Verifies the invariants of the arena's state and stats (see [`check_raw`]).
    pub fn check(&self) -> Result<(), InvariantError> {
        // SAFETY: the allocator is a live shared arena, owned by `self`.
        unsafe { check_raw(self.allocator.as_ptr()) }
    }
}

impl Blocks for SharedArena {
    #[inline(always)]
    fn try_alloc_layout(&self, layout: Layout) -> Result<NonNull<u8>, AllocError> {
        SharedArena::try_alloc_layout(self, layout)
    }

    unsafe fn give_back(&self, block: NonNull<u8>, layout: Layout) {
        // SAFETY: the allocator is a live shared arena with backend `self.bump()`; the caller
        // vouches for the block.
        unsafe { bump_free(self.allocator.as_ptr(), self.bump(), block, layout) }
    }
}

impl fmt::Debug for SharedArena {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedArena")
            .field("allocator", &self.as_ptr())
            .field("allocated_bytes", &self.allocated_bytes())
            .field("stats", &self.stats())
            .finish()
    }
}

// A shared arena's blocks stay valid until it is reset (which needs `&mut`) or dropped (which
// outlives every `&SharedArena`).
#[cfg(feature = "allocator-api2")]
crate::api::arena::bump_api2!(SharedArena);
