//! The shared pool for Rust: [`SharedRawPool`], a pool of untyped objects that scoped threads
//! allocate and free at once (it is `Sync`), over the shared pool allocator ([`SharedPool`]);
//! each request goes through the front door's levels for that backend (the calling thread's
//! lane first).

use core::fmt;
use core::ptr::NonNull;

use crate::allocators::pool::{PoolConfig, PoolStats};
use crate::allocators::shared_pool::{check_raw, reset_raw, SharedPool};
use crate::api::pool::pool_methods;
use crate::handle::{counting_controls, Allocator};
use crate::policy::invariant::InvariantError;

/// An untyped pool that many threads allocate from and free to at once: each thread pops and
/// pushes its own free list without a lock, and an object freed by another thread goes back to
/// the list of the thread whose block holds it. Stats are counted (as by
/// `goo_pool_allocator_create_shared`) unless turned off with [`SharedRawPool::with_stats`].
///
/// ```
/// use allocator_api2::boxed::Box;
/// use goo_memory_core::pool::SharedRawPool;
/// let pool = SharedRawPool::new(64, 128);
/// // Objects allocated on one thread, freed on another.
/// let boxes: Vec<Box<[u8; 64], &SharedRawPool>> = (0..100).map(|i| Box::new_in([i as u8; 64], &pool)).collect();
/// std::thread::scope(|s| {
///     s.spawn(move || drop(boxes));
/// });
/// assert_eq!(pool.stats().unwrap().live_objects, 0);
/// ```
pub struct SharedRawPool {
    allocator: Allocator<SharedPool>,
    pool: NonNull<SharedPool>,
}

// SAFETY: the pool owns its blocks; `SharedPool` is `Sync` (lanes of atomics, the rest under
// its lock) and its parent is required to be usable from any thread (the built-in default
// allocator is).
unsafe impl Send for SharedRawPool {}
// SAFETY: as above: every method taking `&self` is safe to call from several threads at once.
unsafe impl Sync for SharedRawPool {}

impl SharedRawPool {
    /// A shared pool of `object_size`-byte objects over the built-in default allocator, at least
    /// `objects_per_block` per block (0 = about 4 KiB worth), stats counted.
    pub fn new(object_size: usize, objects_per_block: usize) -> Self {
        Self::with_config(PoolConfig::new(object_size, objects_per_block))
            .expect("a valid pool configuration")
    }

    /// A shared pool with an explicit configuration (`checked` is ignored), over the built-in
    /// default allocator (stats counted).
    pub fn with_config(config: PoolConfig) -> Option<Self> {
        // SAFETY: the built-in allocator is a static, usable from any thread.
        let pool = unsafe { SharedPool::new(crate::default::builtin(), config) }?;
        let allocator = Allocator::new(pool);
        let pool = NonNull::from(allocator.backend());
        Some(SharedRawPool { allocator, pool })
    }

    counting_controls!();

    pool_methods!(SharedPool);

    /// Every object back to its lane; blocks kept. (`&mut`: no other thread is inside, so it
    /// is never refused.)
    pub fn reset(&mut self) {
        // SAFETY: `&mut self`: no object is borrowed and no thread uses the pool.
        let done = unsafe { reset_raw(self.allocator.as_ptr()) };
        debug_assert!(done, "a reset through &mut is never refused");
    }

    /// Counts and configuration, counted while no thread is inside: `None` (with a message on
    /// stderr) when one is.
    pub fn stats(&self) -> Option<PoolStats> {
        self.pool().stats()
    }

    /// Verifies the invariants of the pool's state and stats (see [`check_raw`]); an error
    /// also while another thread is inside.
    pub fn check(&self) -> Result<(), InvariantError> {
        // SAFETY: the allocator is a live shared pool, owned by `self`.
        unsafe { check_raw(self.allocator.as_ptr()) }
    }
}

impl fmt::Debug for SharedRawPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedRawPool")
            .field("pool", self.pool())
            .field("tracks_stats", &self.tracks_stats())
            .field("stats", &self.alloc_stats())
            .finish()
    }
}

#[cfg(feature = "allocator-api2")]
crate::api::pool::pool_api2!(SharedRawPool);
