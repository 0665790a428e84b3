//! Scopes for Rust: [`Scope`], whose allocations borrow it, over the scoped allocator
//! ([`Scoped`]); and [`begin`], what `goo_scope_begin` does.

use core::alloc::Layout;
use core::fmt;
use core::marker::PhantomData;
use core::ptr::NonNull;

use crate::allocators::scoped::{
    begin_over, check_raw, create, end_with_inner, from_raw, ScopeSummary, Scoped,
};
use crate::api::bump::{bump_methods, Blocks};
use crate::handle::counting_controls;
use crate::handle::{AllocError, AllocatorRef};
use crate::policy::invariant::InvariantError;
use crate::raw::{AllocOptions, GooAllocator};

/// Begins a scope over the current allocator and makes it this thread's allocator.
pub fn begin() -> NonNull<GooAllocator> {
    // SAFETY: the current allocator outlives the scope (it is restored when the scope ends).
    unsafe { begin_over(crate::default::current()) }
}

/// A scope for Rust: allocations borrow it, so none can be used after it ends; what is still
/// live when it ends is freed then. Values are allocated as in an
/// [`Arena`](crate::arena::Arena) (`alloc`, `alloc_with`, `alloc_str`, `alloc_slice_*`), and
/// `&Scope` is an allocator-api2 allocator whose blocks can also be freed one by one. Stats are
/// counted (as by `goo_scoped_allocator_create`) unless turned off with [`Scope::with_stats`].
///
/// ```
/// use goo_memory_core::scoped::Scope;
/// let (sum, summary) = Scope::run_with_summary(|scope| {
///     let a = scope.alloc([1u8; 64]);
///     let b = scope.alloc(7u32);
///     *b += a[0] as u32;
///     let mut v = goo_memory_core::allocator_api2::vec::Vec::new_in(scope);
///     v.extend([1u64, 2, 3]);
///     drop(v); // freed at once, not at the scope's end
///     *b
/// });
/// assert_eq!(sum, 8);
/// assert_eq!(summary.implicit_frees, 2);
/// ```
pub struct Scope {
    raw: NonNull<GooAllocator>,
    _not_send: PhantomData<*mut ()>,
}

impl Scope {
    /// A scope over the built-in default allocator, not installed as the thread allocator
    /// (stats counted). Ended when dropped, or by [`Scope::end`].
    pub fn new() -> Self {
        // SAFETY: the built-in allocator is a static.
        unsafe { Self::with_parent(crate::default::builtin()) }
    }

    /// A scope taking its memory from `parent` (stats counted): `goo_scoped_allocator_create`.
    ///
    /// # Safety
    /// `parent` must be valid and outlive the scope. The current allocator
    /// ([`crate::current`]) does only while it stays current: inside
    /// [`Scope::run`] it is that run's scope, which ends when the closure returns.
    pub unsafe fn with_parent(parent: *mut GooAllocator) -> Self {
        // SAFETY: forwarded contract.
        Scope { raw: unsafe { create(parent) }, _not_send: PhantomData }
    }

    /// Runs `f` with a fresh scope over the current allocator that is also this thread's
    /// allocator (so `goo_memory_alloc` and the legacy API inside `f` allocate in it), ends it
    /// and returns what `f` returned. The scope also ends if `f` panics.
    ///
    /// ```
    /// use goo_memory_core::scoped::Scope;
    /// let n = Scope::run(|scope| scope.alloc_slice_fill_copy(10, 1u32).iter().sum::<u32>());
    /// assert_eq!(n, 10);
    /// ```
    ///
    /// Nothing allocated in the scope can be returned:
    ///
    /// ```compile_fail
    /// use goo_memory_core::scoped::Scope;
    /// let escaped = Scope::run(|scope| scope.alloc(1u32));
    /// ```
    pub fn run<R>(f: impl FnOnce(&Scope) -> R) -> R {
        Self::run_with_summary(f).0
    }

    /// As [`Scope::run`], with what the scope's end freed because nobody else did.
    pub fn run_with_summary<R>(f: impl FnOnce(&Scope) -> R) -> (R, ScopeSummary) {
        let scope = Scope { raw: begin(), _not_send: PhantomData };
        let r = f(&scope);
        (r, scope.end())
    }

    /// Ends the scope, freeing what is still live. Scopes begun after it on this thread and
    /// still active ([`begin`] or `goo_scope_begin` inside [`Scope::run`], never ended) end
    /// first, innermost first, as when a C scope is destroyed.
    pub fn end(self) -> ScopeSummary {
        let raw = self.raw.as_ptr();
        core::mem::forget(self);
        // SAFETY: a live scope owned by `self`, on its thread (`Scope` is !Send).
        unsafe { end_with_inner(raw) }.unwrap_or_else(|e| panic!("ending a scope: {e}"))
    }

    counting_controls!();

    /// Allocates a block for `layout`.
    pub fn try_alloc_layout(&self, layout: Layout) -> Result<NonNull<u8>, AllocError> {
        self.handle().allocate(layout, AllocOptions::DEFAULT)
    }

    bump_methods!();

    /// Blocks and bytes live now.
    pub fn live(&self) -> (usize, usize) {
        self.scoped().live()
    }

    /// The front door's stats of the scope.
    pub fn stats(&self) -> crate::AllocStats {
        self.handle().stats()
    }

    /// A front-door handle (also an `allocator-api2` allocator).
    pub fn handle(&self) -> AllocatorRef<'_> {
        // SAFETY: live while `self` is.
        unsafe { AllocatorRef::from_raw(self.raw) }
    }

    /// The scope as a `GooAllocator*` (still owned by `self`).
    pub fn as_ptr(&self) -> *mut GooAllocator {
        self.raw.as_ptr()
    }

    fn scoped(&self) -> &Scoped {
        // SAFETY: a live scope owned by `self`.
        unsafe { from_raw(self.raw.as_ptr()) }.expect("a Scope is a scope")
    }
}

impl Default for Scope {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for Scope {
    fn drop(&mut self) {
        // SAFETY: a live scope owned by `self`, on its thread.
        let _ = unsafe { end_with_inner(self.raw.as_ptr()) };
    }
}

impl Blocks for Scope {
    fn try_alloc_layout(&self, layout: Layout) -> Result<NonNull<u8>, AllocError> {
        Scope::try_alloc_layout(self, layout)
    }

    unsafe fn give_back(&self, block: NonNull<u8>, layout: Layout) {
        // SAFETY: forwarded contract: a block of this scope allocated with `layout`.
        unsafe { self.handle().deallocate(block, layout) }
    }
}

// Blocks are valid until the scope ends, which needs the `Scope` itself (by value, or its drop),
// so every `&Scope` is gone by then.
#[cfg(feature = "allocator-api2")]
crate::handle::delegate_api2!(impl['s] &'s Scope, |this| this.handle());

impl fmt::Debug for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Scope")
            .field("address", &self.raw)
            .field("scoped", self.scoped())
            .field("tracks_stats", &self.tracks_stats())
            .field("stats", &self.stats())
            .finish()
    }
}

impl fmt::Debug for Scoped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (blocks, bytes) = self.live();
        f.debug_struct("Scoped")
            .field("live_blocks", &blocks)
            .field("live_bytes", &bytes)
            .field("bytes_held", &self.held())
            .finish()
    }
}

/// One line: what the scope's end freed.
impl fmt::Display for ScopeSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} blocks ({} bytes) freed by the scope's end", self.implicit_frees, self.implicit_bytes)
    }
}

impl Scope {
    /// Verifies the invariants of the scope's state and stats (see [`check_raw`]).
    pub fn check(&self) -> Result<(), InvariantError> {
        // SAFETY: a live scope owned by `self`.
        unsafe { check_raw(self.raw.as_ptr()) }
    }
}
