//! What every allocator shares, done once: the front door (checks, zeroing, stats, strategy),
//! the stats counters, the out-of-memory strategies, and the default/thread allocators.

pub mod callbacks;
pub mod default;
pub mod front;
pub mod invariant;
pub mod report;
pub mod stats;
pub mod strategy;
pub(crate) mod thread_slot;

use std::io::Write;

use crate::raw::GooAllocator;

/// One allocator that still has live allocations at cleanup.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Leak {
    pub allocator: *mut GooAllocator,
    pub kind: &'static str,
    pub name: Option<String>,
    pub live_allocations: usize,
    pub live_bytes: usize,
}

/// Every tracked allocator the library knows ([`report::tracked`]) that still has live
/// allocations.
pub fn leaks() -> Vec<Leak> {
    report::tracked()
        .into_iter()
        .filter_map(|(a, kind)| {
            // SAFETY: `tracked` returns live allocators.
            let s = unsafe { front::stats(a) };
            (s.allocation_count > 0).then(|| Leak {
                allocator: a,
                kind: leak_kind(&kind),
                name: report::name_of(a),
                live_allocations: s.allocation_count,
                live_bytes: s.bytes_allocated,
            })
        })
        .collect()
}

fn leak_kind(kind: &str) -> &'static str {
    ["system", "arena", "pool", "region", "scoped", "custom"]
        .into_iter()
        .find(|k| *k == kind)
        .unwrap_or("other")
}

/// Reports leaks to stderr, then returns the library to its initial state: built-in default,
/// no thread allocator on this thread, no handlers, built-in stats cleared, this thread's
/// cached system blocks given back to the C library. Returns the number
/// of leaking allocators.
pub fn cleanup() -> usize {
    let leaks = leaks();
    let mut err = std::io::stderr().lock();
    for l in &leaks {
        let _ = writeln!(
            err,
            "goo-memory: leak: allocator {:p} ({}{}) still has {} live allocation(s), {} byte(s)",
            l.allocator,
            l.kind,
            l.name.as_deref().map(|n| format!(", \"{n}\"")).unwrap_or_default(),
            l.live_allocations,
            l.live_bytes
        );
    }
    default::reset();
    strategy::reset();
    callbacks::clear();
    crate::system::trim_thread_cache();
    leaks.len()
}
