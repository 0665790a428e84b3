//! `include/goo/runtime/pool.h`: thin shims over `goo_memory_core::pool`.

use core::ptr::{self, NonNull};

use goo_memory_core::pool::{self, checked_by_default, PoolConfig, PoolStats};
use goo_memory_core::{dispatch, shared_pool, GooAllocator};

use crate::boundary::{guard, guard_at};
use crate::trampoline::return_address_trampoline;

/// `GooPoolOptions`.
#[repr(C)]
pub struct PoolOptions {
    pub parent: *mut GooAllocator,
    pub object_size: usize,
    pub alignment: usize,
    pub objects_per_block: usize,
    pub max_objects: usize,
    /// `GooPoolCheck`: 0 default, 1 off, 2 on.
    pub check: u32,
}

/// A pool made by `pool::create` or `shared_pool::create` from a resolved parent.
type MakePool = unsafe fn(*mut GooAllocator, PoolConfig) -> Option<NonNull<GooAllocator>>;

/// # Safety
/// `parent` must be null or a valid allocator that outlives the pool (and, for a shared pool,
/// usable from any thread one at a time).
unsafe fn create_with(make: MakePool, parent: *mut GooAllocator, config: PoolConfig) -> *mut GooAllocator {
    guard(ptr::null_mut(), || {
        // SAFETY: forwarded contract (null resolved to the current allocator).
        unsafe { make(dispatch::resolve(parent), config) }.map_or(ptr::null_mut(), |p| p.as_ptr())
    })
}

/// # Safety
/// As for [`create_with`].
unsafe fn create(parent: *mut GooAllocator, config: PoolConfig) -> *mut GooAllocator {
    // SAFETY: forwarded contract.
    unsafe { create_with(pool::create, parent, config) }
}

#[unsafe(no_mangle)]
pub extern "C" fn goo_pool_allocator_create(
    object_size: usize,
    objects_per_block: usize,
) -> *mut GooAllocator {
    // SAFETY: the built-in allocator is a static.
    unsafe { create(goo_memory_core::builtin(), PoolConfig::new(object_size, objects_per_block)) }
}

/// # Safety
/// `parent` must be null or a valid allocator that outlives the pool.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn goo_pool_allocator_create_ex(
    parent: *mut GooAllocator,
    object_size: usize,
    alignment: usize,
    objects_per_block: usize,
    max_objects: usize,
) -> *mut GooAllocator {
    let config = PoolConfig { alignment, max_objects, ..PoolConfig::new(object_size, objects_per_block) };
    // SAFETY: forwarded contract.
    unsafe { create(parent, config) }
}

/// A shared pool over the built-in default allocator.
#[unsafe(no_mangle)]
pub extern "C" fn goo_pool_allocator_create_shared(
    object_size: usize,
    objects_per_block: usize,
) -> *mut GooAllocator {
    // SAFETY: the built-in allocator is a static, usable from any thread.
    unsafe { create_shared(goo_memory_core::builtin(), PoolConfig::new(object_size, objects_per_block)) }
}

/// # Safety
/// `parent` must be null or a valid allocator that outlives the pool, usable from any thread
/// one at a time.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn goo_pool_allocator_create_shared_ex(
    parent: *mut GooAllocator,
    object_size: usize,
    alignment: usize,
    objects_per_block: usize,
    max_objects: usize,
) -> *mut GooAllocator {
    let config = PoolConfig { alignment, max_objects, ..PoolConfig::new(object_size, objects_per_block) };
    // SAFETY: forwarded contract.
    unsafe { create_shared(parent, config) }
}

/// # Safety
/// As for [`create_with`].
unsafe fn create_shared(parent: *mut GooAllocator, config: PoolConfig) -> *mut GooAllocator {
    // SAFETY: forwarded contract.
    unsafe { create_with(shared_pool::create, parent, config) }
}

/// # Safety
/// `options` must be null or valid for reads, its parent null or valid and outliving the pool.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn goo_pool_allocator_create_opts(options: *const PoolOptions) -> *mut GooAllocator {
    if options.is_null() {
        return ptr::null_mut();
    }
    // SAFETY: per the contract.
    let o = unsafe { &*options };
    let checked = match o.check {
        0 => checked_by_default(),
        1 => false,
        2 => true,
        // Not a GooPoolCheck: invalid options.
        _ => return ptr::null_mut(),
    };
    let config = PoolConfig {
        object_size: o.object_size,
        alignment: o.alignment,
        objects_per_block: o.objects_per_block,
        max_objects: o.max_objects,
        checked,
    };
    // SAFETY: forwarded contract.
    unsafe { create(o.parent, config) }
}

/// # Safety
/// `allocator` must be null or valid; no object of the pool may be used afterwards.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn goo_pool_allocator_reset(allocator: *mut GooAllocator) -> bool {
    // SAFETY: forwarded contract.
    guard(false, || unsafe { pool::reset_raw(allocator) || shared_pool::reset_raw(allocator) })
}

return_address_trampoline! {
    /// # Safety
    /// `allocator` must be null or valid, and not used afterwards if it is a pool.
    #[unsafe(no_mangle)]
    pub unsafe extern "C" fn goo_pool_allocator_destroy(allocator: *mut GooAllocator)
        => goo_pool_allocator_destroy_body(caller)
    {
        // SAFETY: forwarded contract; only pools are destroyed. The caller is the site of the
        // blocks' frees to a debug parent.
        guard_at(caller, (), || unsafe {
            if pool::from_raw(allocator).is_some() || shared_pool::from_raw(allocator).is_some() {
                goo_memory_core::managed_destroy(allocator);
            }
        })
    }
}

/// # Safety
/// `allocator` must be null or valid; `stats` null or valid for writes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn goo_pool_allocator_get_stats(
    allocator: *mut GooAllocator,
    stats: *mut PoolStats,
) -> bool {
    if stats.is_null() {
        return false;
    }
    // SAFETY: forwarded contract.
    guard(false, || unsafe {
        let counts = match pool::from_raw(allocator) {
            Some(p) => Some(p.stats()),
            // (A busy shared pool has said why on stderr.)
            None => shared_pool::from_raw(allocator).and_then(|p| p.stats()),
        };
        counts.map(|c| stats.write(c)).is_some()
    })
}
