//! The locked allocator: any allocator behind a lock, so that threads can share one that is not
//! thread-safe (an arena, a pool, a region, one written in C). The slow, general answer: every
//! request takes the lock; the shared arena and the shared pool are the fast ones.
//!
//! Each request goes to the inner allocator through the front door, under the lock, so the
//! inner allocator counts it in its own stats and applies its own strategy and limit, and the
//! wrapper counts it in its stats too (a free the inner allocator refuses in neither). A callback, GC handler or parent that calls back into
//! the wrapper from inside a request (the same thread, the lock held) is refused with a message
//! instead of deadlocking: an allocation fails, a free is ignored. Destroying the wrapper does
//! not destroy the inner allocator.

use core::ptr::{self, NonNull};
use std::io::Write;

use crate::allocators::{arena, pool, region, shared_arena, shared_pool};
use crate::policy::backend::{Backend, Managed};
use crate::policy::front;
use crate::policy::sharing::ReentryLock;
use crate::raw::{AllocOptions, AllocStrategy, GooAllocator};

/// The locked allocator's mechanism: the inner allocator and the lock. What a
/// [`LockedAllocator`](crate::locked::LockedAllocator) and a C locked allocator are made of;
/// behind an [`Allocator`](crate::Allocator) it gets the front door.
///
/// ```
/// use core::alloc::Layout;
/// use goo_memory_core::{arena::Arena, locked::Locked, Allocator};
/// let arena = Arena::new(); // for one thread at a time
/// // SAFETY: the arena outlives the wrapper (dropped first), may be used from any thread one
/// // at a time, and nothing else uses it while the threads run.
/// let locked = Allocator::new(unsafe { Locked::new(arena.as_ptr()) });
/// std::thread::scope(|s| {
///     for _ in 0..4 {
///         s.spawn(|| {
///             locked.allocate(Layout::new::<[u8; 48]>()).unwrap();
///         });
///     }
/// });
/// assert_eq!(locked.stats().total_allocations, 4);
/// assert_eq!(arena.stats().total_allocations, 4, "counted by the inner allocator too");
/// assert_eq!(locked.backend().with_inner(|inner| inner), Some(arena.as_ptr()));
/// ```
///
/// Invariant: `inner` is reached only while `lock` is held (by [`Locked::with_inner`]).
pub struct Locked {
    inner: *mut GooAllocator,
    lock: ReentryLock<()>,
    /// Whether `inner` outlives the wrapper, so that a report may read it: true from
    /// [`Locked::new`], whose contract says so; false for a Rust
    /// [`LockedAllocator`](crate::locked::LockedAllocator), which borrows it only for its
    /// lifetime: a handle forgotten (`mem::forget`) leaves the wrapper registered, for every
    /// report to read, after the inner allocator is gone. Reached then only through a request
    /// to the wrapper, which needs the live handle.
    inner_outlives: bool,
}

// SAFETY: the inner allocator is used only under the lock, one thread at a time, and the
// constructor requires it to be usable from any thread that way.
unsafe impl Send for Locked {}
// SAFETY: as above.
unsafe impl Sync for Locked {}

impl core::fmt::Debug for Locked {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Locked").field("inner", &self.inner).finish_non_exhaustive()
    }
}

impl Locked {
    /// `inner` behind a lock.
    ///
    /// # Safety
    /// `inner` must be a valid allocator that outlives the wrapper, usable from any thread one
    /// at a time (not a scope, which belongs to its thread, nor this thread's temporary
    /// arena), and used by nothing else while the wrapper is in use.
    pub unsafe fn new(inner: *mut GooAllocator) -> Self {
        Locked { inner, lock: ReentryLock::new(()), inner_outlives: true }
    }

    /// `inner` behind a lock, borrowed only for as long as the handle that owns the wrapper
    /// lives: reports do not read it (see `inner_outlives`).
    ///
    /// # Safety
    /// As for [`Locked::new`], except that `inner` need outlive only the handle that owns the
    /// wrapper and makes every request to it, not the wrapper.
    pub(crate) unsafe fn borrowing(inner: *mut GooAllocator) -> Self {
        Locked { inner, lock: ReentryLock::new(()), inner_outlives: false }
    }

    /// The wrapped allocator.
    pub fn inner(&self) -> *mut GooAllocator {
        self.inner
    }

    /// Runs `f` with the inner allocator, under the lock. `None` (with a message, `f` not run)
    /// when the calling thread holds the lock already.
    pub fn with_inner<R>(&self, f: impl FnOnce(*mut GooAllocator) -> R) -> Option<R> {
        match self.lock.lock() {
            Ok(_held) => Some(f(self.inner)),
            Err(_) => {
                let _ = writeln!(
                    std::io::stderr(),
                    "goo-memory: a request to locked allocator over {:p} refused: the calling thread is inside a request to it already (a callback or handler called back into it)",
                    self.inner
                );
                None
            }
        }
    }
}

// SAFETY: every block comes from the inner allocator's front door, which returns null or a
// block valid for the request (zeroed for ZERO) until it is freed through the same wrapper.
unsafe impl Backend for Locked {
    const NAME: &'static str = "locked";
    const ZEROES: bool = true;

    fn alloc(&self, size: usize, align: usize, options: AllocOptions) -> *mut u8 {
        // SAFETY: the inner allocator is valid (the constructor's contract), used under the lock.
        self.with_inner(|inner| unsafe { front::alloc_slow(inner, size, align, options) })
            .unwrap_or(ptr::null_mut())
    }

    unsafe fn free(&self, ptr: *mut u8, size: usize, align: usize) {
        // SAFETY: as above; the caller vouches for the block, one of the inner allocator's.
        self.with_inner(|inner| unsafe { front::free_slow(inner, ptr, size, align) });
    }

    /// A free refused for re-entry, or refused by the inner allocator (a block it does not
    /// hold), changes no stats of the wrapper.
    unsafe fn release(&self, ptr: *mut u8, size: usize, align: usize) -> bool {
        // SAFETY: as for `free`.
        self.with_inner(|inner| unsafe { front::release_slow(inner, ptr, size, align) }) == Some(true)
    }

    unsafe fn realloc(
        &self,
        ptr: *mut u8,
        old_size: usize,
        new_size: usize,
        align: usize,
        options: AllocOptions,
    ) -> *mut u8 {
        // SAFETY: as for `free`.
        self.with_inner(|inner| unsafe { front::realloc(inner, ptr, old_size, new_size, align, options) })
            .unwrap_or(ptr::null_mut())
    }

    /// What the inner allocator holds (read under the lock: its mechanism may be single-owner),
    /// when it outlives the wrapper; else what the wrapper's blocks take (the inner allocator
    /// may be gone: see `inner_outlives`; it is in the reports on its own line).
    fn bytes_reserved(&self, bytes_allocated: usize) -> usize {
        if !self.inner_outlives {
            return bytes_allocated;
        }
        // SAFETY: as for `alloc`.
        self.with_inner(|inner| unsafe { front::stats(inner) }.bytes_reserved).unwrap_or(bytes_allocated)
    }
}

/// Creates a locked allocator over `inner` (stats tracked, strategy `Null`).
///
/// # Safety
/// As for [`Locked::new`].
pub unsafe fn create(inner: *mut GooAllocator) -> NonNull<GooAllocator> {
    // SAFETY: forwarded contract.
    Managed::create(unsafe { Locked::new(inner) }, AllocStrategy::Null, true)
}

/// The locked allocator behind a `GooAllocator*`, if it is one.
///
/// # Safety
/// `allocator` must be null or valid (live if a library allocator).
pub unsafe fn from_raw<'a>(allocator: *const GooAllocator) -> Option<&'a Locked> {
    // SAFETY: forwarded contract.
    unsafe { Managed::<Locked>::try_backend(allocator) }
}

/// Resets the inner allocator of the locked allocator `allocator` under its lock, when it is a
/// kind with a reset (an arena, a pool, their shared forms, a region), and counts every block
/// of the wrapper freed. False if `allocator` is no locked allocator, the inner one has no
/// reset or refused it (a shared one with another thread inside, a region busy), or on
/// re-entry.
///
/// # Safety
/// As for [`from_raw`]; no block of the wrapper may be used afterwards.
pub unsafe fn reset_raw(allocator: *mut GooAllocator) -> bool {
    // SAFETY: forwarded contract.
    let Some(locked) = (unsafe { from_raw(allocator) }) else { return false };
    let reset = locked.with_inner(|inner| {
        // SAFETY: the inner allocator is valid and ours under the lock; the caller gives up
        // every block of the wrapper, which are the inner allocator's blocks.
        let done = unsafe {
            arena::reset_raw(inner)
                || shared_arena::reset_raw(inner)
                || pool::reset_raw(inner)
                || shared_pool::reset_raw(inner)
                || (region::is_live(inner) && region::reset(inner).is_ok())
        };
        if done {
            // SAFETY: `allocator` is live (the contract); still under the lock, so no request
            // of the wrapper is counted meanwhile.
            unsafe { front::record_reset(allocator) };
        }
        done
    });
    let done = reset == Some(true);
    if done {
        // Out of the lock: a callback may use the wrapper.
        front::reset_done(allocator);
    }
    done
}
