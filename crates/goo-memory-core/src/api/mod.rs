//! The Rust API of each allocator, above the allocators and the dispatch; re-exported in the
//! allocator's public module (`crate::arena`, ...).

pub mod arena;
pub(crate) mod bump;
pub mod debug;
pub mod locked;
pub mod pool;
pub mod region;
pub mod scoped;
pub mod shared_arena;
pub mod shared_pool;
