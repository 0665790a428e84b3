//! The debug allocator for Rust: [`DebugAllocator<A>`] wraps an allocator you own (or
//! borrow) and checks every request; its own methods record the caller's file and line
//! (`#[track_caller]`) as each block's site.

use core::alloc::Layout;
use core::ptr::NonNull;

use crate::allocators::debug::{self as mechanism, with_site, Debug, DebugReport, Site};
use crate::handle::{counting_controls, AllocError, Allocator, AllocatorRef};
use crate::policy::backend::{managed_destroy, Backend, Managed};
use crate::raw::{AllocOptions, AllocStats, GooAllocator};
use crate::{dispatch, report::ReportFormat};

/// An allocator a [`DebugAllocator`] can wrap: anything that is a `GooAllocator` for as long as
/// it lives (every handle of this crate that owns its allocator, and `AllocatorRef`).
///
/// ```
/// use goo_memory_core::arena::Arena;
/// use goo_memory_core::debug::{DebugAllocator, DebugFlags, Wrappable};
/// let arena = Arena::new();
/// let raw = arena.goo_allocator();
/// let debug = DebugAllocator::new(arena, DebugFlags::DEFAULT); // owns the arena now
/// assert_eq!(debug.parent().as_ptr(), raw);
/// ```
///
/// # Safety
/// [`Wrappable::goo_allocator`] returns the same valid allocator every time, one that stays
/// valid (live, if a library allocator) while `self` lives: the debug allocator takes every
/// block from it and gives them back to it, up to its own drop.
pub unsafe trait Wrappable {
    /// The allocator's vtable, valid while `self` lives.
    fn goo_allocator(&self) -> *mut GooAllocator;
}

macro_rules! wrappable {
    ($([$($g:tt)*] $t:ty),* $(,)?) => {$(
        // SAFETY: each handle owns (or, for `AllocatorRef`, borrows for its lifetime) the
        // allocator `as_ptr` names, which lives as long as the handle.
        unsafe impl<$($g)*> Wrappable for $t {
            fn goo_allocator(&self) -> *mut GooAllocator {
                self.as_ptr()
            }
        }
    )*};
}

wrappable!(
    [B: Backend] Allocator<B>,
    [] crate::arena::Arena,
    [] crate::pool::RawPool,
    ['p] crate::region::Region<'p>,
    [] crate::scoped::Scope,
    ['a] AllocatorRef<'a>,
    [A: Wrappable] DebugAllocator<A>,
);

/// Which checks a [`DebugAllocator`] adds to the default ones (`GOO_DEBUG_*` in C).
///
/// ```
/// use goo_memory_core::debug::{DebugAllocator, DebugFlags};
/// use goo_memory_core::Allocator;
/// // Stack traces for every block and free; report and go on (no ABORT).
/// let debug = DebugAllocator::new(Allocator::system(), DebugFlags::TRACES);
/// assert_eq!(DebugFlags::TRACES | DebugFlags::ABORT, DebugFlags(3));
/// # drop(debug);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct DebugFlags(pub u32);

impl DebugFlags {
    /// Report and go on (the environment's `GOO_DEBUG_TRACES` and `GOO_DEBUG_ABORT` still apply).
    pub const DEFAULT: Self = Self(0);
    /// Record a short stack trace for every block and free ([`mechanism::TRACES`]).
    pub const TRACES: Self = Self(mechanism::TRACES);
    /// Abort the process after reporting the first error ([`mechanism::ABORT`]).
    pub const ABORT: Self = Self(mechanism::ABORT);
}

impl core::ops::BitOr for DebugFlags {
    type Output = Self;
    fn bitor(self, rhs: Self) -> Self {
        Self(self.0 | rhs.0)
    }
}

/// A debug allocator over `A` (see `allocators::debug`): double frees, bad frees, wrong sizes,
/// writes around blocks and after frees are reported on stderr with the sites involved, and
/// dropping it reports the live blocks by site. Blocks still live when it drops stay allocated
/// in `A` (they are leaks). Its own stats are counted (as by `goo_debug_allocator_create`)
/// unless turned off with [`DebugAllocator::with_stats`].
///
/// ```
/// use core::alloc::Layout;
/// use goo_memory_core::debug::{DebugAllocator, DebugFlags};
/// use goo_memory_core::Allocator;
///
/// let debug = DebugAllocator::new(Allocator::system(), DebugFlags::DEFAULT);
/// let layout = Layout::from_size_align(64, 8).unwrap();
/// let p = debug.allocate(layout).unwrap();
/// unsafe { debug.deallocate(p, layout) };
/// unsafe { debug.deallocate(p, layout) }; // reported: a double free, with both sites
/// assert_eq!(debug.error_count(), 1);
/// assert_eq!(debug.check(), 0);
/// ```
pub struct DebugAllocator<A: Wrappable> {
    raw: NonNull<GooAllocator>,
    parent: A,
}

// SAFETY: the debug allocator's own state is locked; every request to the parent goes through
// `A`'s vtable, which may be used from another thread (or from several) exactly when `A` may.
unsafe impl<A: Wrappable + Send> Send for DebugAllocator<A> {}
// SAFETY: as above.
unsafe impl<A: Wrappable + Sync> Sync for DebugAllocator<A> {}

impl<A: Wrappable> DebugAllocator<A> {
    /// Wraps `parent` (stats tracked, strategy `Null`).
    pub fn new(parent: A, flags: DebugFlags) -> Self {
        // SAFETY: the parent is owned by the result and dropped after it (field order and the
        // `Drop` below), so it outlives the handle. Not necessarily the debug allocator: a
        // handle forgotten with `mem::forget` leaves it registered, and a parent borrowed for
        // `'a` (an `AllocatorRef`, a child region) goes; so the cleanup must not reach it.
        let raw = unsafe { mechanism::create_for_handle(parent.goo_allocator(), flags.0) };
        DebugAllocator { raw, parent }
    }

    fn debug(&self) -> &Debug {
        // SAFETY: `raw` is a live `Managed<Debug>` owned by `self`.
        unsafe { Managed::<Debug>::backend(self.raw.as_ptr()) }
    }

    /// The wrapped allocator.
    pub fn parent(&self) -> &A {
        &self.parent
    }

    /// The raw vtable, for C (or to put other allocators over it).
    pub fn as_ptr(&self) -> *mut GooAllocator {
        self.raw.as_ptr()
    }

    /// A handle for `allocator-api2` containers. Their requests have no site of their own
    /// (reports name an unknown site), unless traces are on.
    pub fn handle(&self) -> AllocatorRef<'_> {
        // SAFETY: live for as long as `self` is borrowed.
        unsafe { AllocatorRef::from_raw(self.raw) }
    }

    /// Allocates a block; the caller's location is its site.
    #[track_caller]
    pub fn allocate(&self, layout: Layout) -> Result<NonNull<u8>, AllocError> {
        self.allocate_with(layout, AllocOptions::DEFAULT)
    }

    /// Allocates a block with options (`ZERO`, ...); the caller's location is its site.
    #[track_caller]
    pub fn allocate_with(&self, layout: Layout, options: AllocOptions) -> Result<NonNull<u8>, AllocError> {
        let raw = self.raw.as_ptr();
        with_site(Site::caller(), || {
            // SAFETY: `raw` is live.
            let p = unsafe { dispatch::alloc(raw, layout.size(), layout.align(), options) };
            NonNull::new(p).ok_or(AllocError)
        })
    }

    /// Frees a block; a misuse is reported with the caller's location.
    ///
    /// # Safety
    /// Either `ptr` is a live block of this allocator allocated with `layout`, or the misuse
    /// is one the debug allocator detects and refuses (any pointer that is no live block of
    /// it, or the wrong layout), so that nothing is freed.
    #[track_caller]
    pub unsafe fn deallocate(&self, ptr: NonNull<u8>, layout: Layout) {
        let raw = self.raw.as_ptr();
        // SAFETY: forwarded contract.
        with_site(Site::caller(), || unsafe {
            dispatch::free(raw, ptr.as_ptr(), layout.size(), layout.align())
        })
    }

    /// Resizes a block to `new_size` (same alignment); the caller's location is the new
    /// block's site. The block always moves.
    ///
    /// # Safety
    /// As for [`DebugAllocator::deallocate`], with `old` the block's layout; `new_size > 0`.
    #[track_caller]
    pub unsafe fn reallocate(
        &self,
        ptr: NonNull<u8>,
        old: Layout,
        new_size: usize,
    ) -> Result<NonNull<u8>, AllocError> {
        let raw = self.raw.as_ptr();
        with_site(Site::caller(), || {
            // SAFETY: forwarded contract.
            let p = unsafe {
                dispatch::realloc(raw, ptr.as_ptr(), old.size(), new_size, old.align(), AllocOptions::DEFAULT)
            };
            NonNull::new(p).ok_or(AllocError)
        })
    }

    /// Checks every block's guards and the quarantine; returns the problems found.
    pub fn check(&self) -> usize {
        self.debug().check()
    }

    /// Errors reported so far.
    pub fn error_count(&self) -> usize {
        self.debug().error_count()
    }

    /// The leak report: live blocks by site.
    pub fn leaks(&self) -> DebugReport {
        self.debug().report()
    }

    /// The leak report as text or JSON.
    pub fn report(&self, format: ReportFormat) -> String {
        let report = self.leaks();
        match format {
            ReportFormat::Text => report.to_text(),
            ReportFormat::Json => report.to_json(),
        }
    }

    /// The stats the front door keeps for it.
    pub fn stats(&self) -> AllocStats {
        self.handle().stats()
    }

    counting_controls!();
}

impl<A: Wrappable + core::fmt::Debug> core::fmt::Debug for DebugAllocator<A> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("DebugAllocator")
            .field("debug", self.debug())
            .field("tracks_stats", &self.tracks_stats())
            .field("stats", &self.stats())
            .field("parent", &self.parent)
            .finish()
    }
}

impl<A: Wrappable> Drop for DebugAllocator<A> {
    fn drop(&mut self) {
        // SAFETY: owned by `self`, not used afterwards; the parent is dropped after this.
        unsafe { managed_destroy(self.raw.as_ptr()) }
    }
}

#[cfg(feature = "allocator-api2")]
crate::handle::delegate_api2!(impl[A: Wrappable] &DebugAllocator<A>, |this| this.handle());
