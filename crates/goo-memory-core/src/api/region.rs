//! Regions for Rust: [`Region`], whose children borrow their parent, over the region
//! allocator ([`RegionBackend`]); requests go through the front door's levels for it.

use core::marker::PhantomData;
use core::ptr::{self, NonNull};

use crate::allocators::region::{
    add_cleanup_closure, check_raw, create, create_child, destroy, remove_cleanup, report, reset, set_name,
    stats, subtree_stats, RegionBackend,
};
use crate::handle::{AllocError, AllocatorRef};
use crate::policy::backend::Managed;
use crate::policy::front;
use crate::policy::invariant::InvariantError;
use crate::raw::{AllocOptions, AllocStats, GooAllocator};

/// A region for Rust. Children borrow their parent, so the borrow checker keeps a child from
/// outliving it; dropping a region destroys it (children first) and runs its cleanups.
///
/// ```
/// use goo_memory_core::region::Region;
/// use std::{cell::Cell, rc::Rc};
/// let closed = Rc::new(Cell::new(0));
/// let root = Region::new(4096, true);
/// {
///     let request = root.child(0);
///     let buf = request.alloc_slice_copy(b"GET / HTTP/1.1");
///     assert_eq!(&buf[..3], b"GET");
///     let c = closed.clone();
///     request.on_cleanup(move || c.set(c.get() + 1));
/// } // the child is destroyed here; its cleanup runs
/// assert_eq!(closed.get(), 1);
/// ```
pub struct Region<'parent> {
    raw: NonNull<GooAllocator>,
    _parent: PhantomData<&'parent ()>,
    /// Not Send/Sync: a region tree belongs to one thread.
    _not_send: PhantomData<*mut ()>,
}

/// Identifies a registered cleanup, for [`Region::cancel_cleanup`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CleanupId(u64);

impl Region<'static> {
    /// A root region over the built-in system allocator.
    pub fn new(region_size: usize, allow_large: bool) -> Self {
        // SAFETY: the built-in allocator is a static.
        let raw = unsafe { create(crate::default::builtin(), region_size, allow_large) };
        Region { raw, _parent: PhantomData, _not_send: PhantomData }
    }
}

impl<'parent> Region<'parent> {
    /// A child region (0 = the parent's region size), destroyed when dropped.
    pub fn child(&self, region_size: usize) -> Region<'_> {
        let raw = create_child(self.raw.as_ptr(), region_size).expect("a Region is a live region");
        Region { raw, _parent: PhantomData, _not_send: PhantomData }
    }

    /// Registers a cleanup, run when the region is reset or dropped (newest first).
    pub fn on_cleanup(&self, f: impl FnOnce() + 'static) -> CleanupId {
        CleanupId(add_cleanup_closure(self.raw.as_ptr(), Box::new(f)).expect("live region"))
    }

    /// Cancels a cleanup that has not run yet.
    pub fn cancel_cleanup(&self, id: CleanupId) -> bool {
        remove_cleanup(self.raw.as_ptr(), id.0).expect("live region")
    }

    /// Moves `value` into the region (its destructor does not run; use a cleanup for that).
    #[allow(clippy::mut_from_ref)]
    pub fn alloc<T>(&self, value: T) -> &mut T {
        let p = self.try_alloc_layout(core::alloc::Layout::new::<T>());
        let p = p.unwrap_or_else(|_| std::alloc::handle_alloc_error(core::alloc::Layout::new::<T>()));
        let p = p.cast::<T>().as_ptr();
        // SAFETY: a fresh block for one `T`, valid while the region is (borrowed from `self`).
        unsafe {
            p.write(value);
            &mut *p
        }
    }

    /// Copies a slice into the region.
    #[allow(clippy::mut_from_ref)]
    pub fn alloc_slice_copy<T: Copy>(&self, src: &[T]) -> &mut [T] {
        let layout = core::alloc::Layout::for_value(src);
        let p = self.try_alloc_layout(layout);
        let p = p.unwrap_or_else(|_| std::alloc::handle_alloc_error(layout)).cast::<T>().as_ptr();
        // SAFETY: a fresh block for `src.len()` values; `T: Copy`.
        unsafe {
            ptr::copy_nonoverlapping(src.as_ptr(), p, src.len());
            core::slice::from_raw_parts_mut(p, src.len())
        }
    }

    /// Allocates a block for `layout`: an inline bump in the current region of memory, else the
    /// front door (new region of memory, strategy, failure counting).
    #[inline(always)]
    pub fn try_alloc_layout(&self, layout: core::alloc::Layout) -> Result<NonNull<u8>, AllocError> {
        // SAFETY: `raw` is a live region, a `Managed<RegionBackend>`.
        let p = unsafe {
            let b = Managed::<RegionBackend>::backend(self.raw.as_ptr());
            front::alloc_in(self.raw.as_ptr(), b, layout.size(), layout.align(), AllocOptions::DEFAULT)
        };
        NonNull::new(p).ok_or(AllocError)
    }

    /// Frees everything in the region (its children must be gone: they borrow it), running its
    /// cleanups.
    ///
    /// # Panics
    /// If a reset or destroy of the region's tree is running (a cleanup reached this region
    /// through shared ownership): the reset is refused ([`RegionError::Busy`]).
    ///
    /// [`RegionError::Busy`]: crate::region::RegionError::Busy
    pub fn reset(&mut self) {
        reset(self.raw.as_ptr()).expect("a Region is live and not busy");
    }

    /// Sets the region's name, the one every report shows (the registry report's too).
    pub fn set_name(&self, name: &str) {
        set_name(self.raw.as_ptr(), Some(name)).expect("live region");
    }

    /// Stats of this region alone.
    pub fn stats(&self) -> AllocStats {
        stats(self.raw.as_ptr()).expect("live region")
    }

    /// Stats summed over the subtree.
    pub fn subtree_stats(&self) -> AllocStats {
        subtree_stats(self.raw.as_ptr()).expect("live region")
    }

    /// The subtree as text.
    pub fn report(&self) -> String {
        report(self.raw.as_ptr()).expect("live region")
    }

    /// A front-door handle (also an `allocator-api2` allocator).
    pub fn handle(&self) -> AllocatorRef<'_> {
        // SAFETY: the region is live while `self` is.
        unsafe { AllocatorRef::from_raw(self.raw) }
    }

    /// The region as a `GooAllocator*` (still owned by `self`).
    pub fn as_ptr(&self) -> *mut GooAllocator {
        self.raw.as_ptr()
    }
}

impl Drop for Region<'_> {
    /// Destroys the region. A drop from a cleanup while a reset or destroy of the region's tree
    /// runs is refused ([`RegionError::Busy`], counted); the region then lives on, destroyed with
    /// its parent if it has one.
    ///
    /// [`RegionError::Busy`]: crate::region::RegionError::Busy
    fn drop(&mut self) {
        let _ = destroy(self.raw.as_ptr());
    }
}

impl Region<'_> {
    /// Verifies the invariants of this region and its subtree (see [`check_raw`]).
    pub fn check(&self) -> Result<(), InvariantError> {
        check_raw(self.raw.as_ptr())
    }
}
