//! Pools for Rust: [`RawPool`] (untyped objects) and [`TypedPool`] with its owning
//! [`PoolBox`], over the pool allocator ([`Pool`]); every request goes through the front
//! door's levels for that backend (its inline pop first).

use core::alloc::Layout;
use core::fmt;
use core::marker::PhantomData;
use core::ptr::{self, NonNull};

use crate::allocators::pool::{check_raw, reset_raw, Pool, PoolConfig, PoolStats};
use crate::handle::counting_controls;
use crate::handle::{Allocator, AllocatorRef};
use crate::policy::invariant::InvariantError;
use crate::raw::GooAllocator;

/// The methods a pool's Rust handle (`RawPool`, `SharedRawPool`) has whatever its backend
/// `$backend`: allocation and free through the front door's levels for it, raw pointer,
/// front-door stats (the stats switch is `counting_controls!`, as on every handle). The handle
/// has fields `allocator: Allocator<$backend>` and `pool: NonNull<$backend>`.
macro_rules! pool_methods {
    ($backend:ty) => {
        #[inline(always)]
        fn pool(&self) -> &$backend {
            // SAFETY: the backend lives as long as `self.allocator`.
            unsafe { self.pool.as_ref() }
        }

        /// An object, or `Err` at the cap or when memory is exhausted (counted, strategy
        /// applied).
        #[inline(always)]
        pub fn alloc(&self) -> Result<core::ptr::NonNull<u8>, $crate::AllocError> {
            let pool = self.pool();
            // SAFETY: the allocator is live and its backend is `pool`.
            let p = unsafe {
                $crate::policy::front::alloc_in(
                    self.allocator.as_ptr(),
                    pool,
                    pool.object_size(),
                    pool.align(),
                    $crate::AllocOptions::DEFAULT,
                )
            };
            core::ptr::NonNull::new(p).ok_or($crate::AllocError)
        }

        /// Returns an object.
        ///
        /// # Safety
        /// `p` must be a live object of this pool (a pointer the pool's checks refuse is
        /// reported and ignored).
        #[inline(always)]
        pub unsafe fn free(&self, p: core::ptr::NonNull<u8>) {
            let pool = self.pool();
            // SAFETY: the allocator is live and its backend is `pool`; the caller vouches for
            // `p`.
            unsafe {
                $crate::policy::front::free_in(
                    self.allocator.as_ptr(),
                    pool,
                    p.as_ptr(),
                    pool.object_size(),
                    pool.align(),
                )
            }
        }

        /// The pool as a `GooAllocator*` (still owned by `self`).
        pub fn as_ptr(&self) -> *mut $crate::GooAllocator {
            self.allocator.as_ptr()
        }

        /// The front door's stats.
        pub fn alloc_stats(&self) -> $crate::AllocStats {
            self.allocator.stats()
        }
    };
}
pub(crate) use pool_methods;

/// `allocator_api2::alloc::Allocator` for `&$ty`, a pool's handle made by [`pool_methods`]:
/// a layout that fits the object is served with one, others are refused.
#[cfg(feature = "allocator-api2")]
macro_rules! pool_api2 {
    ($ty:ty) => {
        // SAFETY: objects are valid for any layout that fits the object size and alignment
        // (others are refused), until freed; the pool outlives every `&` of its handle.
        unsafe impl allocator_api2::alloc::Allocator for &$ty {
            fn allocate(
                &self,
                layout: core::alloc::Layout,
            ) -> Result<core::ptr::NonNull<[u8]>, allocator_api2::alloc::AllocError> {
                if layout.size() > self.pool().object_size() || layout.align() > self.pool().align() {
                    return Err(allocator_api2::alloc::AllocError);
                }
                if layout.size() == 0 {
                    // Nothing to hold: a dangling pointer aligned as asked (`NonNull::dangling()`
                    // is aligned for a `u8` only), freed as a no-op.
                    let dangling = core::ptr::NonNull::new(core::ptr::without_provenance_mut(layout.align()))
                        .ok_or(allocator_api2::alloc::AllocError)?;
                    return Ok(core::ptr::NonNull::slice_from_raw_parts(dangling, 0));
                }
                self.alloc()
                    .map(|p| core::ptr::NonNull::slice_from_raw_parts(p, self.pool().object_size()))
                    .map_err(|_| allocator_api2::alloc::AllocError)
            }

            unsafe fn deallocate(&self, ptr: core::ptr::NonNull<u8>, layout: core::alloc::Layout) {
                if layout.size() != 0 {
                    // SAFETY: forwarded contract.
                    unsafe { self.free(ptr) };
                }
            }
        }
    };
}
#[cfg(feature = "allocator-api2")]
pub(crate) use pool_api2;

/// An untyped pool for Rust: `alloc`/`free` of fixed-size blocks, inline. Stats are counted
/// (as by `goo_pool_allocator_create`) unless turned off with [`RawPool::with_stats`].
///
/// ```
/// use goo_memory_core::pool::RawPool;
/// let pool = RawPool::new(64, 128).with_stats(false);
/// let a = pool.alloc().unwrap();
/// // SAFETY: `a` is a live object of this pool.
/// unsafe { pool.free(a) };
/// assert_eq!(pool.stats().live_objects, 0);
/// // Through allocator-api2, any layout that fits an object:
/// let b = goo_memory_core::allocator_api2::boxed::Box::new_in([7u64; 8], &pool);
/// assert_eq!(pool.stats().live_objects, 1);
/// drop(b);
/// let line = pool.stats().to_string();
/// assert!(line.starts_with("live 0 of 128 objects (64-byte stride, 128 per block), 1 blocks"), "{line}");
/// ```
pub struct RawPool {
    allocator: Allocator<Pool>,
    pool: NonNull<Pool>,
}

impl RawPool {
    /// A pool of `object_size`-byte objects over the built-in default allocator (stats counted;
    /// checked mode from the build and `GOO_POOL_CHECKED`).
    pub fn new(object_size: usize, objects_per_block: usize) -> Self {
        Self::with_config(PoolConfig::new(object_size, objects_per_block))
            .expect("a valid pool configuration")
    }

    /// A pool with an explicit configuration, over the built-in default allocator (stats
    /// counted); `None` for a configuration `goo_pool_allocator_create_opts` refuses.
    pub fn with_config(config: PoolConfig) -> Option<Self> {
        // SAFETY: the built-in allocator is a static.
        unsafe { Self::with_parent(crate::default::builtin(), config) }
    }

    /// A pool taking its blocks from `parent` (stats counted).
    ///
    /// # Safety
    /// `parent` must be valid and outlive the pool.
    pub unsafe fn with_parent(parent: *mut GooAllocator, config: PoolConfig) -> Option<Self> {
        // SAFETY: forwarded contract.
        let pool = unsafe { Pool::new(parent, config) }?;
        let allocator = Allocator::new(pool);
        let pool = NonNull::from(allocator.backend());
        Some(RawPool { allocator, pool })
    }

    counting_controls!();

    pool_methods!(Pool);

    /// Every object back; blocks kept.
    pub fn reset(&mut self) {
        // SAFETY: `&mut self`: no object is borrowed.
        unsafe { reset_raw(self.allocator.as_ptr()) };
    }

    /// Counts and configuration.
    pub fn stats(&self) -> PoolStats {
        self.pool().stats()
    }

    /// A handle for allocation through the front door.
    pub fn handle(&self) -> AllocatorRef<'_> {
        self.allocator.handle()
    }
}

#[cfg(feature = "allocator-api2")]
pool_api2!(RawPool);

/// A typed pool: `alloc(value)` gives a [`PoolBox`] that returns the object on drop. Stats are
/// counted unless turned off with [`TypedPool::with_stats`].
///
/// ```
/// use goo_memory_core::pool::TypedPool;
/// #[derive(Debug, PartialEq)]
/// struct Node { key: u64, next: Option<u32> }
/// let pool = TypedPool::<Node>::new(256);
/// let n = pool.alloc(Node { key: 7, next: None }).unwrap();
/// assert_eq!(n.key, 7);
/// assert_eq!(pool.alloc_stats().allocation_count, 1);
/// drop(n); // back to the pool, destructor run
/// assert_eq!(pool.stats().live_objects, 0);
/// assert_eq!(pool.alloc_stats().total_frees, 1);
/// ```
pub struct TypedPool<T> {
    raw: RawPool,
    _t: PhantomData<T>,
}

impl<T> TypedPool<T> {
    /// A pool of `T`s, `objects_per_block` per block (0 = about 4 KiB worth).
    pub fn new(objects_per_block: usize) -> Self {
        let layout = Layout::new::<T>();
        let config = PoolConfig {
            object_size: layout.size().max(1),
            alignment: layout.align(),
            ..PoolConfig::new(layout.size().max(1), objects_per_block)
        };
        TypedPool { raw: RawPool::with_config(config).expect("a valid pool for T"), _t: PhantomData }
    }

    /// Turns stats counting on or off (builder form of [`TypedPool::set_track_stats`]).
    #[must_use]
    pub fn with_stats(mut self, on: bool) -> Self {
        self.set_track_stats(on);
        self
    }

    /// Turns stats counting on or off (see [`RawPool::set_track_stats`]).
    pub fn set_track_stats(&mut self, on: bool) {
        self.raw.set_track_stats(on);
    }

    /// Whether stats are counted.
    pub fn tracks_stats(&self) -> bool {
        self.raw.tracks_stats()
    }

    /// The front door's stats.
    pub fn alloc_stats(&self) -> crate::AllocStats {
        self.raw.alloc_stats()
    }

    /// Moves `value` into the pool; gives it back on failure.
    #[inline(always)]
    pub fn alloc(&self, value: T) -> Result<PoolBox<'_, T>, T> {
        match self.raw.alloc() {
            Ok(p) => {
                let p = p.cast::<T>();
                // SAFETY: a fresh object sized and aligned for `T`.
                unsafe { p.as_ptr().write(value) };
                Ok(PoolBox { pool: self, ptr: p })
            }
            Err(_) => Err(value),
        }
    }

    /// Counts and configuration.
    pub fn stats(&self) -> PoolStats {
        self.raw.stats()
    }

    /// The untyped pool.
    pub fn raw(&self) -> &RawPool {
        &self.raw
    }
}

/// An object owned by a [`TypedPool`]: derefs to `T`; on drop runs `T`'s destructor and returns
/// the object to the pool.
///
/// ```
/// use goo_memory_core::pool::TypedPool;
/// let pool = TypedPool::<String>::new(0);
/// let mut name = pool.alloc(String::from("goo")).unwrap();
/// name.push_str("-memory");
/// assert_eq!(format!("{name:?}"), "PoolBox(\"goo-memory\")");
/// ```
pub struct PoolBox<'a, T> {
    pool: &'a TypedPool<T>,
    ptr: NonNull<T>,
}

impl<T> core::ops::Deref for PoolBox<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the object is live and initialised while the box exists.
        unsafe { self.ptr.as_ref() }
    }
}

impl<T> core::ops::DerefMut for PoolBox<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as above, and the box is the only handle.
        unsafe { self.ptr.as_mut() }
    }
}

impl<T> Drop for PoolBox<'_, T> {
    fn drop(&mut self) {
        // SAFETY: the value is initialised and owned by the box; the object is live.
        unsafe {
            ptr::drop_in_place(self.ptr.as_ptr());
            self.pool.raw.free(self.ptr.cast());
        }
    }
}

impl<T: fmt::Debug> fmt::Debug for PoolBox<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("PoolBox").field(&**self).finish()
    }
}

impl fmt::Debug for RawPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RawPool")
            .field("pool", &self.stats())
            .field("tracks_stats", &self.tracks_stats())
            .field("stats", &self.alloc_stats())
            .finish()
    }
}

impl<T> fmt::Debug for TypedPool<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TypedPool")
            .field("type", &core::any::type_name::<T>())
            .field("pool", &self.stats())
            .field("tracks_stats", &self.tracks_stats())
            .field("stats", &self.alloc_stats())
            .finish()
    }
}

impl fmt::Debug for Pool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pool").field("stats", &self.stats()).finish()
    }
}

/// One line: live and total objects, the layout, blocks, the cap, bytes held, misuse.
impl fmt::Display for PoolStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "live {} of {} objects ({}-byte stride, {} per block), {} blocks, {} bytes reserved, ",
            self.live_objects,
            self.total_objects,
            self.object_stride,
            self.objects_per_block,
            self.blocks,
            self.bytes_reserved
        )?;
        match self.max_objects {
            0 => f.write_str("no cap")?,
            cap => write!(f, "cap {cap}")?,
        }
        write!(
            f,
            ", {} misuse refused, {}",
            self.misuse_detected,
            if self.checked { "checked" } else { "unchecked" }
        )
    }
}

impl RawPool {
    /// Verifies the invariants of the pool's state and stats (see [`check_raw`]).
    pub fn check(&self) -> Result<(), InvariantError> {
        // SAFETY: the allocator is a live pool, owned by `self`.
        unsafe { check_raw(self.allocator.as_ptr()) }
    }
}

impl<T> TypedPool<T> {
    /// Verifies the invariants of the pool's state and stats (see [`check_raw`]).
    pub fn check(&self) -> Result<(), InvariantError> {
        self.raw.check()
    }
}

// A typed pool serves, through allocator-api2, what its untyped pool does: any layout that fits
// a `T`'s object (so `Box::new_in(value, &pool)` works).
#[cfg(feature = "allocator-api2")]
crate::handle::delegate_api2!(impl['p, T] &'p TypedPool<T>, |this| &this.raw);

#[cfg(all(test, feature = "allocator-api2"))]
mod tests {
    use super::*;
    use allocator_api2::alloc::Allocator as _;

    /// Found by the `rust_api` fuzz target: a zero-size request through the pool's
    /// `allocator_api2` impl got `NonNull::dangling()`, address 1, whatever alignment it asked.
    #[test]
    fn a_zero_size_block_is_aligned_as_asked() {
        let pool = RawPool::new(64, 16);
        for align in [1, 2, 4, 8, 16] {
            let layout = Layout::from_size_align(0, align).unwrap();
            let block = (&pool).allocate(layout).expect("a zero-size block");
            assert!(block.cast::<u8>().as_ptr().addr().is_multiple_of(align), "{block:p} for {layout:?}");
            // SAFETY: just allocated with this layout.
            unsafe { (&pool).deallocate(block.cast(), layout) };
        }
        assert_eq!(pool.stats().live_objects, 0);
    }
}
