//! Scopes for Rust: [`Scope`], whose allocations borrow it, over the scoped allocator
//! ([`Scoped`]); and [`begin`], what `goo_scope_begin` does.

use core::ptr::NonNull;

use crate::allocators::scoped::{begin_over, check_raw, create, end, from_raw, ScopeSummary};
use crate::handle::{AllocError, AllocatorRef};
use crate::policy::invariant::InvariantError;
use crate::raw::{AllocOptions, GooAllocator};

/// Begins a scope over the current allocator and makes it this thread's allocator.
pub fn begin() -> NonNull<GooAllocator> {
    // SAFETY: the current allocator outlives the scope (it is restored when the scope ends).
    unsafe { begin_over(crate::default::current()) }
}

/// A scope for Rust: allocations borrow it, so none can be used after it ends.
///
/// ```
/// use goo_memory_core::scoped::Scope;
/// let summary = Scope::run(|scope| {
///     let a = scope.alloc([1u8; 64]);
///     let b = scope.alloc(7u32);
///     *b += a[0] as u32;
///     assert_eq!(*b, 8);
/// });
/// assert_eq!(summary.implicit_frees, 2);
/// ```
pub struct Scope {
    raw: NonNull<GooAllocator>,
    _not_send: core::marker::PhantomData<*mut ()>,
}

impl Scope {
    /// A scope over the current allocator (not installed as the thread allocator).
    pub fn new() -> Self {
        // SAFETY: the current allocator outlives a scope used within its lifetime.
        Scope { raw: unsafe { create(crate::default::current()) }, _not_send: core::marker::PhantomData }
    }

    /// Runs `f` with a fresh scope that is also this thread's allocator (so `goo_memory_alloc`
    /// and the legacy API inside `f` allocate in it), then ends it.
    pub fn run(f: impl FnOnce(&Scope)) -> ScopeSummary {
        let scope = Scope { raw: begin(), _not_send: core::marker::PhantomData };
        f(&scope);
        scope.end()
    }

    /// Ends the scope, freeing what is still live.
    pub fn end(self) -> ScopeSummary {
        let raw = self.raw.as_ptr();
        core::mem::forget(self);
        // SAFETY: a live scope owned by `self`, on its thread (`Scope` is !Send).
        unsafe { end(raw) }.unwrap_or_else(|e| panic!("ending a scope: {e}"))
    }

    /// Moves `value` into the scope (its destructor does not run).
    #[allow(clippy::mut_from_ref)]
    pub fn alloc<T>(&self, value: T) -> &mut T {
        let layout = core::alloc::Layout::new::<T>();
        let p = self.handle().allocate(layout, AllocOptions::DEFAULT);
        let p = p.unwrap_or_else(|_| std::alloc::handle_alloc_error(layout)).cast::<T>().as_ptr();
        // SAFETY: a fresh block for one `T`, valid while the scope is (borrowed from `self`).
        unsafe {
            p.write(value);
            &mut *p
        }
    }

    /// Allocates a block for `layout`.
    pub fn try_alloc_layout(&self, layout: core::alloc::Layout) -> Result<NonNull<u8>, AllocError> {
        self.handle().allocate(layout, AllocOptions::DEFAULT)
    }

    /// Blocks and bytes live now.
    pub fn live(&self) -> (usize, usize) {
        // SAFETY: live scope.
        unsafe { from_raw(self.raw.as_ptr()) }.expect("a Scope is a scope").live()
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
}

impl Default for Scope {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for Scope {
    fn drop(&mut self) {
        // SAFETY: a live scope owned by `self`.
        let _ = unsafe { end(self.raw.as_ptr()) };
    }
}

impl Scope {
    /// Verifies the invariants of the scope's state and stats (see [`check_raw`]).
    pub fn check(&self) -> Result<(), InvariantError> {
        // SAFETY: a live scope owned by `self`.
        unsafe { check_raw(self.raw.as_ptr()) }
    }
}
