//! What every allocator shares, done once: the front door (checks, zeroing, stats, strategy),
//! the stats counters, the out-of-memory strategies, and the default/thread allocators.

pub mod default;
pub mod front;
pub mod stats;
pub mod strategy;

use std::io::Write;

use crate::managed;
use crate::raw::GooAllocator;

/// One allocator that still has live allocations at cleanup.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Leak {
    pub allocator: *mut GooAllocator,
    pub kind: &'static str,
    pub live_allocations: usize,
    pub live_bytes: usize,
}

/// Every tracked library allocator (and the current default, whoever made it) that still has
/// live allocations.
pub fn leaks() -> Vec<Leak> {
    let mut found = Vec::new();
    let mut check = |a: *mut GooAllocator, kind: &'static str| {
        // SAFETY: registered allocators are live; the default is valid by its setter's contract.
        unsafe {
            if (*a).track_stats {
                let s = front::stats(a);
                if s.allocation_count > 0 {
                    found.push(Leak {
                        allocator: a,
                        kind,
                        live_allocations: s.allocation_count,
                        live_bytes: s.bytes_allocated,
                    });
                }
            }
        }
    };
    check(default::builtin(), "system (built-in default)");
    let user_default = default::default_allocator();
    let mut seen_default = user_default == default::builtin();
    managed::for_each_live(|a, kind| {
        seen_default |= a == user_default;
        check(a, kind);
    });
    if !seen_default {
        check(user_default, "default");
    }
    found
}

/// Reports leaks to stderr, then returns the library to its initial state: built-in default,
/// no thread allocator on this thread, no handlers, built-in stats cleared. Returns the number
/// of leaking allocators.
pub fn cleanup() -> usize {
    let leaks = leaks();
    let mut err = std::io::stderr().lock();
    for l in &leaks {
        let _ = writeln!(
            err,
            "goo-memory: leak: allocator {:p} ({}) still has {} live allocation(s), {} byte(s)",
            l.allocator, l.kind, l.live_allocations, l.live_bytes
        );
    }
    default::reset();
    strategy::reset();
    leaks.len()
}
