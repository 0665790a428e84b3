//! What every allocator shares, done once, below the allocators: the front door (checks,
//! zeroing, stats, strategy, callbacks), the stats counters, the out-of-memory strategies,
//! the thread allocator's storage, allocator names, limits on live bytes, the lanes and gate of
//! what threads share (`sharing`: the shared allocators' lanes, the limited stats' grants), and
//! the [`Backend`](backend::Backend)
//! trait with the header every library allocator carries. Nothing here names an allocator.

pub mod backend;
pub mod callbacks;
pub(crate) mod fork;
pub mod front;
pub mod invariant;
pub mod limit;
pub mod names;
pub(crate) mod refusal;
pub mod sanitize;
pub(crate) mod sharing;
pub mod stats;
pub mod strategy;
pub(crate) mod thread_slot;

/// Marks the branch that calls it as unlikely, as `core::hint::cold_path` does (stable only
/// from Rust 1.95): a call to a `#[cold]` function makes the optimizer treat its branch as
/// rarely taken and lay the other branch out as the straight path; being empty and inlined,
/// the call itself costs nothing.
#[cold]
#[inline]
pub(crate) fn cold_path() {}
