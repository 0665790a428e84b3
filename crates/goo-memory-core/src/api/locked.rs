//! The locked allocator for Rust: [`LockedAllocator`] makes an allocator that belongs to one
//! thread at a time (an [`Arena`](crate::arena::Arena), say) shareable between threads for as
//! long as it borrows it: every request takes a lock.

use core::fmt;
use core::marker::PhantomData;
use core::ptr::NonNull;

use crate::allocators::locked::{reset_raw, Locked};
use crate::arena::Arena;
use crate::handle::{counting_controls, Allocator, AllocatorRef};
use crate::policy::backend::Backend;
use crate::raw::{AllocStats, GooAllocator};

/// A Rust handle that owns a library allocator and may move to another thread: what a
/// [`LockedAllocator`] can wrap while it borrows it mutably (an [`Arena`], an
/// [`Allocator<B>`](Allocator) whose backend is `Send`).
///
/// ```
/// use goo_memory_core::locked::{Lockable, LockedAllocator};
/// use goo_memory_core::Allocator;
/// let mut heap = Allocator::heap();
/// let raw = heap.raw_allocator();
/// let locked = LockedAllocator::new(&mut heap);
/// assert_eq!(locked.with_inner(|inner| inner.as_ptr()), Some(raw));
/// ```
///
/// # Safety
/// [`Lockable::raw_allocator`] returns a live allocator that the handle owns, usable from any
/// thread one at a time, and valid while the handle is.
pub unsafe trait Lockable: Send {
    /// The allocator the handle owns.
    fn raw_allocator(&mut self) -> *mut GooAllocator;
}

// SAFETY: an arena owns its allocator, is `Send`, and its parent (required to be usable from
// the threads it moves to) is called under the wrapper's lock.
unsafe impl Lockable for Arena {
    fn raw_allocator(&mut self) -> *mut GooAllocator {
        self.as_ptr()
    }
}

// SAFETY: `Allocator<B>` owns its allocator and is `Send` when `B` is.
unsafe impl<B: Backend + Send> Lockable for Allocator<B> {
    fn raw_allocator(&mut self) -> *mut GooAllocator {
        self.as_ptr()
    }
}

/// An allocator behind a lock: `Sync` whatever the allocator it wraps (borrowed mutably for
/// `'a`, so nothing else uses it meanwhile). Every request goes through the lock to the inner
/// allocator's front door; both count it. The wrapper's own stats are counted (as by
/// `goo_locked_allocator_create`) unless turned off with [`LockedAllocator::with_stats`].
///
/// ```
/// use goo_memory_core::arena::Arena;
/// use goo_memory_core::locked::LockedAllocator;
/// let mut arena = Arena::new();
/// let locked = LockedAllocator::new(&mut arena);
/// std::thread::scope(|s| {
///     for t in 0..4u32 {
///         let locked = &locked;
///         s.spawn(move || {
///             let mut v = allocator_api2::vec::Vec::new_in(locked);
///             v.extend(0..100 * t);
///         });
///     }
/// });
/// drop(locked);
/// assert!(arena.allocated_bytes() > 0);
/// ```
pub struct LockedAllocator<'a> {
    allocator: Allocator<Locked>,
    _inner: PhantomData<&'a mut ()>,
}

impl<'a> LockedAllocator<'a> {
    /// Wraps `inner` for as long as it is borrowed.
    pub fn new<A: Lockable + ?Sized>(inner: &'a mut A) -> Self {
        // SAFETY: a `Lockable` owns a live allocator usable from any thread one at a time; the
        // mutable borrow keeps every other use out for `'a`.
        unsafe { Self::from_raw(NonNull::new_unchecked(inner.raw_allocator())) }
    }

    /// Wraps any allocator.
    ///
    /// # Safety
    /// As for [`Locked::new`], for `'a`.
    pub unsafe fn from_raw(inner: NonNull<GooAllocator>) -> Self {
        // SAFETY: forwarded contract: the inner allocator is valid for `'a`, as long as the
        // handle, which makes every request to the wrapper (a forgotten handle leaves the
        // wrapper to reports, which a borrowing wrapper keeps from the inner allocator).
        let allocator = Allocator::new(unsafe { Locked::borrowing(inner.as_ptr()) });
        LockedAllocator { allocator, _inner: PhantomData }
    }

    /// A borrowed handle for allocation through the front door (and `allocator-api2`).
    pub fn handle(&self) -> AllocatorRef<'_> {
        self.allocator.handle()
    }

    /// The wrapper as a `GooAllocator*` for C (still owned by `self`).
    pub fn as_ptr(&self) -> *mut GooAllocator {
        self.allocator.as_ptr()
    }

    /// The wrapper's stats (the requests made through it); `bytes_reserved` is what the inner
    /// allocator holds. (The registry's reports, which may outlive a handle that was forgotten,
    /// show the wrapper's live bytes there instead: they never read the borrowed allocator.)
    pub fn stats(&self) -> AllocStats {
        let mut stats = self.allocator.stats();
        // `None` on re-entry (a callback inside a request): the wrapper's own figure stays.
        if let Some(reserved) = self.with_inner(|inner| inner.stats().bytes_reserved) {
            stats.bytes_reserved = reserved;
        }
        stats
    }

    counting_controls!();

    /// Runs `f` with the inner allocator, under the lock; `None` when called from inside a
    /// request to the wrapper on this thread (a callback). Inside `f` this thread holds the
    /// lock, so a request through the wrapper itself (a collection allocated in it, dropped or
    /// grown there) is refused like one from a callback: an allocation fails, and a free is
    /// refused, its block left live in the inner allocator. Free such blocks outside `f`.
    pub fn with_inner<R>(&self, f: impl FnOnce(AllocatorRef<'_>) -> R) -> Option<R> {
        self.allocator.backend().with_inner(|inner| {
            // SAFETY: the inner allocator is valid for `'a`, which outlives this call.
            f(unsafe { AllocatorRef::from_raw(NonNull::new_unchecked(inner)) })
        })
    }

    /// Resets the inner allocator if it has a reset (an arena, a pool, a region): every block
    /// allocated through the wrapper is freed. False if it has none.
    pub fn reset(&mut self) -> bool {
        // SAFETY: `&mut self`: no block allocated through the wrapper is still borrowed.
        unsafe { reset_raw(self.allocator.as_ptr()) }
    }
}

impl fmt::Debug for LockedAllocator<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LockedAllocator")
            .field("locked", self.allocator.backend())
            .field("tracks_stats", &self.tracks_stats())
            .field("stats", &self.stats())
            .finish()
    }
}

#[cfg(feature = "allocator-api2")]
crate::handle::delegate_api2!(impl['a] &LockedAllocator<'a>, |this| this.handle());
