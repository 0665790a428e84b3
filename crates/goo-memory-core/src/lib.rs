//! goo-memory: the memory-management core of the Goo runtime.
//!
//! Every allocator is a [`GooAllocator`] vtable (the C ABI type); the library's own allocators
//! are Rust mechanisms ([`Backend`]s) behind one generic vtable ([`Managed`]). Every request goes
//! through one front door ([`policy::front`]) that owns the shared policy: checks, zeroing,
//! [stats](AllocStats), [out-of-memory strategies](AllocStrategy) and `NOFAIL`.
//!
//! ```
//! use goo_memory_core::{Allocator, AllocOptions};
//! use core::alloc::Layout;
//!
//! let heap = Allocator::system();
//! let block = heap.allocate(Layout::from_size_align(64, 16).unwrap()).unwrap();
//! assert_eq!(heap.stats().bytes_allocated, 64);
//! unsafe { heap.deallocate(block, Layout::from_size_align(64, 16).unwrap()) };
//! assert_eq!(heap.stats().allocation_count, 0);
//!
//! // Containers, through allocator-api2:
//! let mut v = goo_memory_core::allocator_api2::vec::Vec::new_in(heap.handle());
//! v.extend_from_slice(&[1u32, 2, 3]);
//! assert_eq!(heap.stats().allocation_count, 1);
//! # let _ = AllocOptions::ZERO;
//! ```

// Every public type prints with `{:?}` (the allocators and their handles above all), so a
// new one without `Debug` fails clippy's `-D warnings`.
#![warn(missing_debug_implementations)]

// The layers, bottom up (imports run one way): `raw` (the ABI types, the request check);
// `policy` (the front door's policy, stats, callbacks, strategies, the `Backend` trait: it
// names no allocator); `allocators` (one file per allocator: mechanism, fast path,
// invariants); `default` (the built-in default, a system allocator) and `temp`; `dispatch`
// (the one match on an allocator's kind); the Rust handles (`handle`, `api`), `bridge`,
// `legacy` and `report`.
mod addr_set;
mod allocators;
mod api;
pub mod bridge;
mod default;
pub mod dispatch;
mod handle;
pub mod legacy;
pub mod policy;
mod raw;
pub mod report;
pub mod temp;

/// The arena: bump allocation in chunks from a parent ([`Bump`](arena::Bump), the mechanism),
/// and [`Arena`](arena::Arena), its Rust API in the style of bumpalo.
pub mod arena {
    pub use crate::allocators::arena::*;
    pub use crate::api::arena::*;
    pub use crate::api::shared_arena::SharedArena;
}

/// The shared arena: one arena that many threads allocate from at once, each in a chunk of its
/// own ([`SharedBump`](shared_arena::SharedBump), the mechanism), and
/// [`SharedArena`](shared_arena::SharedArena), its Rust API.
pub mod shared_arena {
    pub use crate::allocators::shared_arena::*;
    pub use crate::api::shared_arena::*;
}

/// The debug allocator: wraps any allocator and reports every misuse with the sites involved
/// ([`Debug`](debug::Debug), the mechanism), and [`DebugAllocator`](debug::DebugAllocator)
/// for Rust.
pub mod debug {
    pub use crate::allocators::debug::*;
    pub use crate::api::debug::*;
}

/// Pools of fixed-size objects: [`Pool`](pool::Pool) (the mechanism), [`RawPool`](pool::RawPool)
/// and [`TypedPool`](pool::TypedPool) for Rust.
pub mod pool {
    pub use crate::allocators::pool::*;
    pub use crate::api::pool::*;
    pub use crate::api::shared_pool::SharedRawPool;
}

/// The shared pool: fixed-size objects that many threads allocate and free at once, each
/// thread from free lists of its own ([`SharedPool`](shared_pool::SharedPool), the mechanism),
/// and [`SharedRawPool`](shared_pool::SharedRawPool), its Rust API.
pub mod shared_pool {
    pub use crate::allocators::shared_pool::*;
    pub use crate::api::shared_pool::*;
}

/// Regions with nested lifetimes and cleanups: the mechanism and [`Region`](region::Region)
/// for Rust.
pub mod region {
    pub use crate::allocators::region::*;
    pub use crate::api::region::*;
}

/// Scopes: the scoped allocator ([`Scoped`](scoped::Scoped)), [`Scope`](scoped::Scope) for
/// Rust, and `begin`/`end` as `goo_scope_begin`/`goo_scope_end` do them.
pub mod scoped {
    pub use crate::allocators::scoped::*;
    pub use crate::api::scoped::*;
}

/// The locked allocator: any allocator behind a lock, for threads to share
/// ([`Locked`](locked::Locked), the mechanism), and [`LockedAllocator`](locked::LockedAllocator)
/// for Rust.
pub mod locked {
    pub use crate::allocators::locked::*;
    pub use crate::api::locked::*;
}

/// The heap allocator: the built-in default, a small-object heap with per-thread caches.
pub mod heap {
    pub use crate::allocators::heap::*;
}
/// The system allocator: the C library's heap with a per-thread cache of small blocks.
pub mod system {
    pub use crate::allocators::system::*;
}

/// The allocator-api2 crate, whose `Allocator` trait every handle implements (so that
/// `Vec::new_in(&arena)` works), re-exported so that its containers need no dependency line of
/// their own: `goo_memory_core::allocator_api2::vec::Vec`.
#[cfg(feature = "allocator-api2")]
pub use allocator_api2;
pub use default::{
    builtin, current, default_allocator, init, is_initialized, set_default_allocator, set_thread_allocator,
    thread_allocator,
};
pub use handle::{AllocError, Allocator, AllocatorRef};
pub use heap::Heap;
pub use policy::backend::{for_each_live, is_managed, managed_destroy, Backend, Kind, Managed};
pub use policy::strategy::{set_gc_handler, set_out_of_mem_handler, GcFn, MAX_RETRIES};
pub use raw::{
    checked_align, natural_align, resolve_align, AllocFn, AllocOptions, AllocStats, AllocStrategy, DestroyFn,
    FreeFn, GooAllocator, OutOfMemFn, ReallocFn, MAX_NATURAL_ALIGN,
};
pub use report::{cleanup, leaks, Leak};
pub use system::System;
