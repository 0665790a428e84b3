//! Regions for Rust: [`Region`], whose children borrow their parent, over the region
//! allocator ([`RegionBackend`]); requests go through the front door's levels for it.

use core::alloc::Layout;
use core::fmt;
use core::marker::PhantomData;
use core::ptr::NonNull;

use crate::allocators::region::{
    add_cleanup_closure, check_raw, create, create_child, destroy, name_of, remove_cleanup, report, reset,
    set_name, stats, subtree_stats, take_cleanup_panic, RegionBackend,
};
use crate::api::bump::{bump_methods, Blocks};
use crate::handle::counting_controls;
use crate::handle::{AllocError, AllocatorRef};
use crate::policy::backend::Managed;
use crate::policy::front;
use crate::policy::invariant::InvariantError;
use crate::raw::{AllocOptions, AllocStats, GooAllocator};

/// A region for Rust. Children borrow their parent, so the borrow checker keeps a child from
/// outliving it; dropping a region destroys it (children first) and runs its cleanups. Values
/// are allocated as in an [`Arena`](crate::arena::Arena) (`alloc`, `alloc_with`, `alloc_str`,
/// `alloc_slice_*`), and `&Region` is an allocator-api2 allocator. Stats are counted (as by
/// `goo_region_allocator_create`) unless turned off with [`Region::with_stats`].
///
/// A region's limit ([`Region::set_limit`]) covers its whole subtree: an allocation in it or
/// in any region under it fails, as past any limit, when it would take the live bytes of the
/// subtree past the limit (counted in the region asked; see `goo/runtime/region.h`, "Limits").
///
/// ```
/// use goo_memory_core::region::Region;
/// let root = Region::new(0, true);
/// root.set_limit(1000);
/// let (a, b) = (root.child(0), root.child(0));
/// b.alloc_slice_fill_copy(600, 0u8);
/// assert!(a.try_alloc_slice_fill_copy(500, 0u8).is_err(), "600 + 500 > 1000");
/// assert_eq!((a.stats().failed_allocations, root.stats().failed_allocations), (1, 0));
/// drop(b); // its 600 bytes go with it
/// assert!(a.try_alloc_slice_fill_copy(500, 0u8).is_ok());
/// ```
///
/// ```
/// use goo_memory_core::region::Region;
/// use std::{cell::Cell, rc::Rc};
/// let closed = Rc::new(Cell::new(0));
/// let root = Region::new(4096, true);
/// root.set_name("server");
/// {
///     let request = root.child(0);
///     request.set_name("request");
///     let buf = request.alloc_slice_copy(b"GET / HTTP/1.1");
///     assert_eq!(&buf[..3], b"GET");
///     let mut headers = goo_memory_core::allocator_api2::vec::Vec::new_in(&request);
///     headers.push(request.alloc_str("Host: example.org"));
///     let c = closed.clone();
///     request.on_cleanup(move || c.set(c.get() + 1));
///     assert_eq!(root.subtree_stats().allocation_count, 3);
///     assert!(root.report().contains("request"));
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
///
/// ```
/// use goo_memory_core::region::Region;
/// let region = Region::new(0, true);
/// let id = region.on_cleanup(|| unreachable!("cancelled"));
/// assert!(region.cancel_cleanup(id));
/// assert!(!region.cancel_cleanup(id), "already gone");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CleanupId(u64);

impl Region<'static> {
    /// A root region over the built-in default allocator, in regions of memory of
    /// `region_size` bytes (0 = 4096); a request larger than that gets a dedicated one when
    /// `allow_large`, else fails. Stats counted.
    pub fn new(region_size: usize, allow_large: bool) -> Self {
        // SAFETY: the built-in allocator is a static.
        let raw = unsafe { create(crate::default::builtin(), region_size, allow_large) };
        Region { raw, _parent: PhantomData, _not_send: PhantomData }
    }
}

impl<'parent> Region<'parent> {
    /// A child region (0 = the parent's region size), destroyed when dropped.
    pub fn child(&self, region_size: usize) -> Region<'_> {
        // SAFETY: a `Region` is a live region, used on the thread that holds it (not `Sync`).
        let raw = unsafe { create_child(self.raw.as_ptr(), region_size) }.expect("a Region is a live region");
        Region { raw, _parent: PhantomData, _not_send: PhantomData }
    }

    /// Registers a cleanup, run when the region is reset or dropped (newest first). One that
    /// panics does not stop the others: the reset or drop finishes, then panics with it.
    pub fn on_cleanup(&self, f: impl FnOnce() + 'static) -> CleanupId {
        // SAFETY: a `Region` is a live region, used on the thread that holds it (not `Sync`).
        CleanupId(unsafe { add_cleanup_closure(self.raw.as_ptr(), Box::new(f)) }.expect("live region"))
    }

    /// Cancels a cleanup that has not run yet.
    pub fn cancel_cleanup(&self, id: CleanupId) -> bool {
        // SAFETY: a `Region` is a live region, used on the thread that holds it (not `Sync`).
        unsafe { remove_cleanup(self.raw.as_ptr(), id.0) }.expect("live region")
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

    bump_methods!();

    counting_controls!();

    /// Frees everything in the region (its children must be gone: they borrow it), running its
    /// cleanups.
    ///
    /// # Panics
    /// If a reset or destroy of the region's tree is running (a cleanup reached this region
    /// through shared ownership): the reset is refused ([`RegionError::Busy`]). If a cleanup
    /// panicked: with the first such panic, once every cleanup ran and the reset finished.
    ///
    /// [`RegionError::Busy`]: crate::region::RegionError::Busy
    pub fn reset(&mut self) {
        // SAFETY: `&mut self`: no value borrowed from the region or its children (which borrow
        // it) is alive; a Region stays on its thread.
        unsafe { reset(self.raw.as_ptr()) }.expect("a Region is live and not busy");
        resume_cleanup_panic();
    }

    /// Sets the region's name, the one every report shows (the registry report's too).
    pub fn set_name(&self, name: &str) {
        set_name(self.raw.as_ptr(), Some(name)).expect("live region");
    }

    /// Stats of this region alone.
    pub fn stats(&self) -> AllocStats {
        // SAFETY: a `Region` is a live region, used on the thread that holds it (not `Sync`).
        unsafe { stats(self.raw.as_ptr()) }.expect("live region")
    }

    /// Stats summed over the subtree.
    pub fn subtree_stats(&self) -> AllocStats {
        // SAFETY: a `Region` is a live region, used on the thread that holds it (not `Sync`).
        unsafe { subtree_stats(self.raw.as_ptr()) }.expect("live region")
    }

    /// The subtree as text.
    pub fn report(&self) -> String {
        // SAFETY: a `Region` is a live region, used on the thread that holds it (not `Sync`).
        unsafe { report(self.raw.as_ptr()) }.expect("live region")
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

impl Blocks for Region<'_> {
    #[inline(always)]
    fn try_alloc_layout(&self, layout: Layout) -> Result<NonNull<u8>, AllocError> {
        Region::try_alloc_layout(self, layout)
    }

    unsafe fn give_back(&self, block: NonNull<u8>, layout: Layout) {
        // SAFETY: forwarded contract: a block of this region allocated with `layout`.
        unsafe { self.handle().deallocate(block, layout) }
    }
}

impl fmt::Debug for Region<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Region")
            .field("address", &self.raw)
            .field("name", &name_of(self.raw.as_ptr()))
            .field("tracks_stats", &self.tracks_stats())
            .field("stats", &self.stats())
            .finish()
    }
}

impl fmt::Debug for RegionBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegionBackend").field("bump", self.bump()).finish()
    }
}

// Blocks are valid until the region is reset (`&mut`) or dropped, which outlives every
// `&Region`; a child cannot be reset or dropped by the parent's holder while it borrows it.
#[cfg(feature = "allocator-api2")]
crate::handle::delegate_api2!(impl['r, 'p] &'r Region<'p>, |this| this.handle());

impl Drop for Region<'_> {
    /// Destroys the region. A drop from a cleanup while a reset or destroy of the region's tree
    /// runs is refused ([`RegionError::Busy`], counted); the region then lives on, destroyed with
    /// its parent if it has one. A cleanup that panics does not stop the destroy: the drop then
    /// panics with the first such panic, once the destroy finished (unless the thread is
    /// already panicking: then it ends there, its message printed).
    ///
    /// [`RegionError::Busy`]: crate::region::RegionError::Busy
    fn drop(&mut self) {
        // SAFETY: the handle owns the region and is dropped: no value borrows it any more, and
        // nothing uses it after.
        let _ = unsafe { destroy(self.raw.as_ptr()) };
        resume_cleanup_panic();
    }
}

/// Goes on with the panic a cleanup raised during the reset or destroy just done, if any (see
/// `allocators::region`'s notes); while the thread already unwinds, drops it instead.
fn resume_cleanup_panic() {
    if let Some(payload) = take_cleanup_panic() {
        if !std::thread::panicking() {
            std::panic::resume_unwind(payload);
        }
    }
}

impl Region<'_> {
    /// Verifies the invariants of this region and its subtree (see [`check_raw`]).
    pub fn check(&self) -> Result<(), InvariantError> {
        // SAFETY: a `Region` is a live region, used on the thread that holds it (not `Sync`).
        unsafe { check_raw(self.raw.as_ptr()) }
    }
}
