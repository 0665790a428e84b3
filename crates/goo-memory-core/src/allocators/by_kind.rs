//! The call-free level of every library allocator that wraps no other, reached by the kind tag
//! in its header: for the dispatch above the allocators, and for the debug allocator, whose
//! requests to its parent take it. An allocator with no fast path of its own (one written in
//! C, an exported Rust backend, the locked wrapper) and the debug allocator itself are declined
//! here: their requests take the front door's slow path.

use crate::allocators::arena::Bump;
use crate::allocators::heap::Heap;
use crate::allocators::pool::Pool;
use crate::allocators::region::RegionBackend;
use crate::allocators::scoped::Scoped;
use crate::allocators::shared_arena::SharedBump;
use crate::allocators::shared_pool::SharedPool;
use crate::allocators::system::System;
use crate::policy::backend::{header_of, is_managed, Backend, Kind, Managed};
use crate::policy::front::{self, Inline};
use crate::raw::GooAllocator;

/// The kind of a valid allocator: its header's tag for a library allocator, else
/// [`Kind::Other`].
///
/// # Safety
/// `a` must be valid for reads (live, if a library allocator).
#[inline(always)]
pub(crate) unsafe fn kind_of(a: *mut GooAllocator) -> Kind {
    // SAFETY: per the contract; the header is read only once `is_managed` holds.
    unsafe {
        if is_managed(a) {
            header_of(a).kind
        } else {
            Kind::Other
        }
    }
}

/// The call-free level of an allocation from `a`, whose kind is `kind`, for a plain request.
///
/// # Safety
/// `a` is valid (live, if a library allocator) and `kind` is `kind_of(a)`; the request passed
/// [`front::plain_request`] or [`front::observed_plain_request`].
pub(crate) unsafe fn try_alloc(a: *mut GooAllocator, kind: Kind, size: usize, align: usize) -> Inline {
    /// The call-free level of `B`'s backend.
    ///
    /// # Safety
    /// `a` is a live `Managed<B>`.
    unsafe fn of<B: Backend>(a: *mut GooAllocator, size: usize, align: usize) -> Inline {
        // SAFETY: per the contract.
        unsafe { front::try_alloc_inline(a, Managed::<B>::backend(a), size, align) }
    }
    // SAFETY: `a` is valid; each arm matches the backend type its header names.
    unsafe {
        match kind {
            Kind::System => of::<System>(a, size, align),
            Kind::Heap => of::<Heap>(a, size, align),
            Kind::Pool => of::<Pool>(a, size, align),
            Kind::Arena => of::<Bump>(a, size, align),
            Kind::Region => of::<RegionBackend>(a, size, align),
            Kind::Scoped => of::<Scoped>(a, size, align),
            Kind::SharedArena => of::<SharedBump>(a, size, align),
            Kind::SharedPool => of::<SharedPool>(a, size, align),
            Kind::Debug | Kind::Other => Inline::Declined,
        }
    }
}

/// The call-free level of a free to `a`, whose kind is `kind`: whether it freed the block
/// (else it did nothing).
///
/// # Safety
/// `a` is valid (live, if a library allocator) and `kind` is `kind_of(a)`; `ptr` a live block
/// of it of `0 < size <= PLAIN_MAX` bytes at `align`.
pub(crate) unsafe fn try_free(
    a: *mut GooAllocator,
    kind: Kind,
    ptr: *mut u8,
    size: usize,
    align: usize,
) -> bool {
    /// The call-free level of `B`'s backend.
    ///
    /// # Safety
    /// `a` is a live `Managed<B>`; the block as above.
    unsafe fn of<B: Backend>(a: *mut GooAllocator, ptr: *mut u8, size: usize, align: usize) -> bool {
        // SAFETY: per the contract.
        unsafe { front::try_free_inline(a, Managed::<B>::backend(a), ptr, size, align) }
    }
    // SAFETY: `a` is valid; each arm matches the backend type its header names.
    unsafe {
        match kind {
            Kind::System => of::<System>(a, ptr, size, align),
            Kind::Heap => of::<Heap>(a, ptr, size, align),
            Kind::Pool => of::<Pool>(a, ptr, size, align),
            Kind::Arena => of::<Bump>(a, ptr, size, align),
            Kind::Region => of::<RegionBackend>(a, ptr, size, align),
            Kind::Scoped => of::<Scoped>(a, ptr, size, align),
            Kind::SharedArena => of::<SharedBump>(a, ptr, size, align),
            Kind::SharedPool => of::<SharedPool>(a, ptr, size, align),
            Kind::Debug | Kind::Other => false,
        }
    }
}
