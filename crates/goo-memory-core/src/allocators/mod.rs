//! The library's allocators, one file each: the mechanism (a [`Backend`](crate::Backend)),
//! its call-free fast path, the invariants of its state, and its C-level functions. They
//! import the policy below them, never the dispatch or the Rust handles above.

pub mod arena;
pub(crate) mod by_kind;
pub(crate) mod chunk_list;
pub mod debug;
mod free_link;
pub mod heap;
pub mod locked;
pub mod pool;
pub mod region;
pub mod scoped;
pub mod shared_arena;
pub mod shared_pool;
pub mod system;
pub(crate) mod temp_arena;
