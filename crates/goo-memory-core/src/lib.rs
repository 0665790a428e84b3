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
//! let mut v = allocator_api2::vec::Vec::new_in(heap.handle());
//! v.extend_from_slice(&[1u32, 2, 3]);
//! assert_eq!(heap.stats().allocation_count, 1);
//! # let _ = AllocOptions::ZERO;
//! ```

mod addr_set;
pub mod arena;
pub mod bridge;
mod handle;
pub mod legacy;
mod managed;
pub mod policy;
pub mod pool;
mod raw;
pub mod region;
pub mod scoped;
pub mod system;
pub mod temp;

pub use handle::{AllocError, Allocator, AllocatorRef};
pub use managed::{for_each_live, is_managed, managed_destroy, Backend, Managed};
pub use policy::default::{
    builtin, current, default_allocator, init, is_initialized, set_default_allocator, set_thread_allocator,
    thread_allocator,
};
pub use policy::strategy::{set_gc_handler, set_out_of_mem_handler, GcFn, MAX_RETRIES};
pub use policy::{cleanup, leaks, Leak};
pub use raw::{
    natural_align, resolve_align, AllocFn, AllocOptions, AllocStats, AllocStrategy, DestroyFn, FreeFn,
    GooAllocator, OutOfMemFn, ReallocFn, MAX_NATURAL_ALIGN,
};
pub use system::System;
