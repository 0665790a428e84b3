//! What every allocator shares, done once, below the allocators: the front door (checks,
//! zeroing, stats, strategy, callbacks), the stats counters, the out-of-memory strategies,
//! the thread allocator's storage, allocator names, and the [`Backend`](backend::Backend)
//! trait with the header every library allocator carries. Nothing here names an allocator.

pub mod backend;
pub mod callbacks;
pub mod front;
pub mod invariant;
pub mod names;
pub mod sanitize;
pub mod stats;
pub mod strategy;
pub(crate) mod thread_slot;
