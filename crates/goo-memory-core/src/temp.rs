//! Temporary allocations: a per-thread arena, created on first use and freed at thread exit.
//! `GOO_ALLOC_TEMP` on any request routes it here (see `policy::front`).
//!
//! From safe Rust, [`with`] lends the arena as a [`Temp`] handle for the length of a closure:
//! whatever the closure allocates in it is freed when it returns, and nothing allocated can
//! leave it.
//!
//! ```
//! use goo_memory_core::temp;
//! let total = temp::with(|t| {
//!     let words: &mut [&str] = t.alloc_slice_fill_iter(["a", "temporary", "list"]);
//!     let mut lengths = goo_memory_core::allocator_api2::vec::Vec::new_in(t);
//!     lengths.extend(words.iter().map(|w| w.len()));
//!     lengths.iter().sum::<usize>()
//! });
//! assert_eq!(total, 14);
//! ```

use core::alloc::Layout;
use core::cell::Cell;
use core::fmt;
use core::marker::PhantomData;
use core::ptr::NonNull;

use crate::allocators::arena::{self, Bump, Mark, RewindError};
use crate::api::arena::{bump_alloc, bump_free};
use crate::api::bump::{bump_methods, Blocks};
use crate::handle::{AllocError, AllocatorRef};
use crate::policy::backend::Managed;
use crate::policy::front;
use crate::raw::{AllocStats, GooAllocator};

thread_local! {
    /// How many [`with`] calls are running on this thread (no destructor: readable during
    /// thread exit).
    static DEPTH: Cell<usize> = const { Cell::new(0) };
}

/// How many [`with`] calls are running on this thread.
fn depth() -> usize {
    DEPTH.with(Cell::get)
}

pub use crate::allocators::temp_arena::{allocator, exists};

/// Why a reset or rewind of the temporary arena was refused.
///
/// ```
/// use goo_memory_core::temp::{self, TempError};
/// temp::with(|_| assert_eq!(temp::reset(), Err(TempError::InUse)));
/// assert_eq!(temp::reset(), Ok(()));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TempError {
    /// A [`with`] is running on this thread: its [`Temp`] handle lends out blocks that a reset
    /// or rewind would free under it (nothing changed).
    InUse,
    /// The arena refused the rewind.
    Rewind(RewindError),
}

impl fmt::Display for TempError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TempError::InUse => {
                f.write_str("a Rust temp::with is running on this thread, and its blocks are in use")
            }
            TempError::Rewind(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for TempError {}

/// Frees every temporary allocation of this thread (keeps one chunk). Refused while a [`with`]
/// is running on the thread.
pub fn reset() -> Result<(), TempError> {
    if depth() != 0 {
        return Err(TempError::InUse);
    }
    if exists() {
        // SAFETY: this thread's live arena; temporary blocks are dead by contract, and no
        // `Temp` lends any (none exists: no `with` is running).
        unsafe { arena::reset_raw(allocator()) };
    }
    Ok(())
}

/// A checkpoint of this thread's temporary arena.
pub fn mark() -> Mark {
    let a = allocator();
    // SAFETY: null or this thread's live arena.
    unsafe { arena::mark_raw(a) }.unwrap_or(Mark::INVALID)
}

/// Frees the temporary allocations made after `mark`. Refused while a [`with`] is running on
/// the thread.
pub fn rewind(mark: &Mark) -> Result<(), TempError> {
    if depth() != 0 {
        return Err(TempError::InUse);
    }
    let a = allocator();
    if a.is_null() {
        return Err(TempError::Rewind(RewindError::NotAnArena));
    }
    // SAFETY: this thread's live arena; blocks after the mark are dead by contract, and no
    // `Temp` lends any.
    unsafe { arena::rewind_raw(a, mark) }.map_err(TempError::Rewind)
}

/// Lends this thread's temporary arena to `f` as a [`Temp`], and frees everything allocated in
/// the arena meanwhile when `f` returns (or panics): a rewind to where the arena was. Blocks
/// borrow the handle, so none can be used afterwards. Calls nest: an inner `with` frees its own
/// blocks first.
///
/// Inside, the temporary arena cannot be reset or rewound by other means ([`reset`],
/// [`rewind`], `goo_temp_reset` and `goo_temp_rewind` are refused), and `GOO_ALLOC_TEMP`
/// requests made meanwhile (from C too) are freed with the rest when `f` returns.
///
/// # Panics
/// If the C library has no thread-specific key left for the temporary arena (it has 1,024).
///
/// ```
/// use goo_memory_core::temp;
/// let n = temp::with(|t| {
///     let squares = t.alloc_slice_fill_with(100, |i| i * i);
///     temp::with(|inner| inner.alloc_str("nested").len()) + squares[9]
/// });
/// assert_eq!(n, 87);
/// ```
///
/// Nothing allocated in it leaves `f`:
///
/// ```compile_fail
/// let escaped = goo_memory_core::temp::with(|t| t.alloc(1u8));
/// ```
pub fn with<R>(f: impl FnOnce(&Temp) -> R) -> R {
    let raw = NonNull::new(allocator()).expect(
        "goo-memory: temp::with: the C library has no thread-specific key left for the temporary arena",
    );
    // SAFETY: this thread's live temporary arena (a `Managed<Bump>`), which lives until the
    // thread exits (its key's destructor), after this call.
    let (bump, mark) = unsafe {
        (
            NonNull::from(Managed::<Bump>::backend(raw.as_ptr())),
            arena::mark_raw(raw.as_ptr()).expect("an arena"),
        )
    };
    let depth = depth() + 1;
    DEPTH.with(|d| d.set(depth));
    let temp = Temp { raw, bump, depth, mark, deferred: Cell::new((0, 0)), _not_send: PhantomData };
    f(&temp)
}

/// This thread's temporary arena, lent by [`with`] for the length of its closure: allocations
/// borrow the handle, and are freed when the closure returns. Values are allocated as in an
/// [`Arena`](crate::arena::Arena) (`alloc`, `alloc_with`, `alloc_str`, `alloc_slice_*`), and
/// `&Temp` is an allocator-api2 allocator.
///
/// While an inner [`with`] runs, an outer handle cannot allocate (it panics): its blocks would
/// lie above the inner call's rewind point and be freed under it. It may free and shrink its
/// blocks: their bytes then stay where they are until the outer call returns (giving them back
/// would move the arena below the inner call's rewind point), and the stats count the free
/// once the outer handle is the innermost again.
///
/// ```
/// use goo_memory_core::temp;
/// temp::with(|t| {
///     let line = t.alloc_str("key=value");
///     let (k, v) = line.split_once('=').unwrap();
///     assert_eq!((k, v), ("key", "value"));
///     assert!(t.stats().bytes_allocated >= 9);
/// });
/// ```
pub struct Temp {
    raw: NonNull<GooAllocator>,
    bump: NonNull<Bump>,
    /// The nesting level of the `with` that lent it: it may allocate only while it is the
    /// innermost.
    depth: usize,
    /// Where the arena was when lent: the rewind point.
    mark: Mark,
    /// Bytes and blocks freed through this handle while an inner [`with`] ran, not yet
    /// counted: the inner call's rewind counts what it frees from its stats at its mark, which
    /// a free of an older block would throw off. Counted once the handle is the innermost again.
    deferred: Cell<(usize, usize)>,
    _not_send: PhantomData<*mut ()>,
}

impl Drop for Temp {
    fn drop(&mut self) {
        // The innermost now (inner calls' handles are gone): its deferred frees count before
        // the rewind counts the rest.
        self.count_deferred();
        DEPTH.with(|d| d.set(self.depth - 1));
        // SAFETY: this thread's live temporary arena; the handle's borrow ends here, so no
        // block allocated through it is used any more. The mark stays valid: no reset or rewind
        // ran meanwhile (refused while `with` runs), and inner `with`s rewound to later marks.
        let rewound = unsafe { arena::rewind_raw(self.raw.as_ptr(), &self.mark) };
        // Only `OutOfMemory` is possible: the blocks then stay until the next reset.
        debug_assert!(matches!(rewound, Ok(()) | Err(RewindError::OutOfMemory)), "{rewound:?}");
    }
}

impl Temp {
    #[inline(always)]
    fn bump(&self) -> &Bump {
        // SAFETY: the temporary arena lives until thread exit, after the handle.
        unsafe { self.bump.as_ref() }
    }

    /// Panics unless this handle belongs to the innermost running [`with`]; then counts the
    /// frees deferred while an inner one ran.
    #[inline(always)]
    fn innermost(&self) {
        if depth() != self.depth {
            outer_handle_used();
        }
        self.count_deferred();
    }

    /// Counts the frees made through this handle while an inner [`with`] ran.
    #[inline(always)]
    fn count_deferred(&self) {
        if self.deferred.get() != (0, 0) {
            let (bytes, blocks) = self.deferred.take();
            // SAFETY: the temporary arena is a live library allocator.
            unsafe { front::record_bulk_free(self.raw.as_ptr(), bytes, blocks) };
        }
    }

    /// A free (`blocks` 1) or shrink (0) of `bytes` through this handle while an inner [`with`]
    /// runs: nothing moves (giving the bytes back would take the bump pointer below the inner
    /// call's mark, and its rewind would then cut this call's own mark), and the count waits
    /// until this handle is the innermost again; true. False, doing nothing, when it is the
    /// innermost.
    fn outer_release(&self, bytes: usize, blocks: usize) -> bool {
        if depth() == self.depth {
            return false;
        }
        let (b, n) = self.deferred.get();
        self.deferred.set((b + bytes, n + blocks));
        true
    }

    /// Allocates a block for `layout` (inline bump, else the front door).
    ///
    /// # Panics
    /// If an inner [`with`] is running.
    #[inline(always)]
    pub fn try_alloc_layout(&self, layout: Layout) -> Result<NonNull<u8>, AllocError> {
        self.innermost();
        // SAFETY: the temporary arena is live and its backend is `self.bump()`.
        unsafe { bump_alloc(self.raw.as_ptr(), self.bump(), layout) }
    }

    bump_methods!();

    /// The temporary arena's stats (it always counts, as in C).
    pub fn stats(&self) -> AllocStats {
        if depth() == self.depth {
            self.count_deferred();
        }
        self.handle().stats()
    }

    /// The temporary arena as a front-door handle, for this crate only: the handle allocates
    /// without the innermost check, so its callers make it first ([`Temp::innermost`]). A
    /// public one could allocate above an inner call's rewind point.
    pub(crate) fn handle(&self) -> AllocatorRef<'_> {
        // SAFETY: the temporary arena outlives the handle.
        unsafe { AllocatorRef::from_raw(self.raw) }
    }
}

#[cold]
#[inline(never)]
fn outer_handle_used() -> ! {
    panic!("goo-memory: a temp::Temp of an outer temp::with allocated while an inner one runs")
}

impl Blocks for Temp {
    #[inline(always)]
    fn try_alloc_layout(&self, layout: Layout) -> Result<NonNull<u8>, AllocError> {
        Temp::try_alloc_layout(self, layout)
    }

    unsafe fn give_back(&self, block: NonNull<u8>, layout: Layout) {
        if self.outer_release(layout.size(), 1) {
            return;
        }
        self.count_deferred();
        // SAFETY: the temporary arena with backend `self.bump()`; the caller vouches for the
        // block. This handle is the innermost: nothing is above its own mark.
        unsafe { bump_free(self.raw.as_ptr(), self.bump(), block, layout) }
    }
}

impl fmt::Debug for Temp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Temp")
            .field("depth", &self.depth)
            .field("arena", self.bump())
            .field("stats", &self.stats())
            .finish()
    }
}

// Blocks stay valid until the `with` that lent the handle returns, after every `&Temp`: reset
// and rewind are refused meanwhile, and an outer handle cannot take bytes past an inner call's
// rewind point (checked before every allocation and growth) nor give any back while an inner
// call runs (its frees and shrinks keep the bytes, `outer_release`).
#[cfg(feature = "allocator-api2")]
crate::api::arena::bump_api2!(Temp, before growing: innermost, outer releases: outer_release);
