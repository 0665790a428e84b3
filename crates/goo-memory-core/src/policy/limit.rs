//! Limits on live bytes for allocators written in C. A library allocator keeps its limit in
//! its stats ([`crate::policy::stats::ShardedStats::set_limit`]); a C-made one has no room of
//! its own, so its limit lives here, in a fixed table keyed by the allocator's address (fixed:
//! setting a limit never allocates, so it works while memory is short).
//!
//! What must hold, for every entry `e` with `e.allocator != null`:
//! ```text
//! e.max != 0                        (an entry without a limit is free)
//! e.used == live bytes the front door counted through `e` (signed: a block allocated before
//!           the limit was set, uncounted, and freed after lowers it, which leaves that much
//!           more room, as for a library allocator)
//! COUNT == number of entries with e.allocator != null
//! ```
//! A C-made allocator always takes the front door's slow path, so every request reaches
//! `reserve` and every free [`release`].

use crate::policy::fork::held_across_forks;
use core::ptr;
use core::sync::atomic::{AtomicIsize, AtomicPtr, AtomicUsize, Ordering::*};

use crate::policy::invariant::{ensure, InvariantError};
use crate::raw::GooAllocator;

/// How many C-made allocators may have a limit at once.
pub const MAX_LIMITED: usize = 64;

struct Entry {
    allocator: AtomicPtr<GooAllocator>,
    max: AtomicUsize,
    used: AtomicIsize,
}

static ENTRIES: [Entry; MAX_LIMITED] = [const {
    Entry { allocator: AtomicPtr::new(ptr::null_mut()), max: AtomicUsize::new(0), used: AtomicIsize::new(0) }
}; MAX_LIMITED];
/// Entries in use: 0 lets every lookup skip the table.
static COUNT: AtomicUsize = AtomicUsize::new(0);
held_across_forks! {
    /// Serialises changes of the table.
    static WRITERS: () = (), at Leaf, locked by writers;
}

fn entry_of(a: *mut GooAllocator) -> Option<&'static Entry> {
    if COUNT.load(Acquire) == 0 {
        return None;
    }
    ENTRIES.iter().find(|e| e.allocator.load(Acquire) == a)
}

/// Sets the limit of the C-made allocator `a` to `max` live bytes (0 = none), counting from
/// `live` bytes already live. False if the table is full.
pub fn set(a: *mut GooAllocator, max: usize, live: usize) -> bool {
    let _serial = writers();
    if let Some(e) = entry_of(a) {
        if max == 0 {
            e.allocator.store(ptr::null_mut(), Release);
            e.max.store(0, Relaxed);
            COUNT.fetch_sub(1, Release);
        } else {
            e.max.store(max, Relaxed);
        }
        return true;
    }
    if max == 0 {
        return true;
    }
    let Some(free) = ENTRIES.iter().find(|e| e.allocator.load(Relaxed).is_null()) else {
        return false;
    };
    free.max.store(max, Relaxed);
    free.used.store(live.min(isize::MAX as usize) as isize, Relaxed);
    free.allocator.store(a, Release);
    COUNT.fetch_add(1, Release);
    true
}

/// The limit of the C-made allocator `a`; 0 = none.
pub fn get(a: *mut GooAllocator) -> usize {
    entry_of(a).map_or(0, |e| e.max.load(Relaxed))
}

/// Whether `a` has a limit here.
pub fn limited(a: *mut GooAllocator) -> bool {
    entry_of(a).is_some()
}

/// What [`reserve`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Reserve {
    /// `a` has no limit here.
    Unlimited,
    /// The bytes are counted against the limit.
    Reserved,
    /// They would pass it: nothing counted.
    Refused,
}

/// Counts `bytes` against the limit of `a`, if it has one and they fit.
pub(crate) fn reserve(a: *mut GooAllocator, bytes: usize) -> Reserve {
    let Some(e) = entry_of(a) else { return Reserve::Unlimited };
    let max = e.max.load(Relaxed) as isize;
    let Ok(bytes) = isize::try_from(bytes) else { return Reserve::Refused };
    let fits = e.used.fetch_update(Relaxed, Relaxed, |used| {
        let after = used.checked_add(bytes)?;
        (after <= max).then_some(used + bytes)
    });
    if fits.is_ok() {
        Reserve::Reserved
    } else {
        Reserve::Refused
    }
}

/// Takes `bytes` off what `a` has counted against its limit (a free, or a reservation whose
/// request failed).
pub fn release(a: *mut GooAllocator, bytes: usize) {
    if let Some(e) = entry_of(a) {
        e.used.fetch_sub(bytes.min(isize::MAX as usize) as isize, Relaxed);
    }
}

/// Forgets every limit (the library's cleanup).
pub fn clear() {
    let _serial = writers();
    for e in &ENTRIES {
        e.allocator.store(ptr::null_mut(), Release);
        e.max.store(0, Relaxed);
    }
    COUNT.store(0, Release);
}

/// Checks the table's equations, under the writers' lock (`used` is not checked: it counts
/// blocks only the program knows).
pub fn check() -> Result<(), InvariantError> {
    let _serial = writers();
    let mut used = 0;
    for e in &ENTRIES {
        if !e.allocator.load(Relaxed).is_null() {
            used += 1;
            ensure(e.max.load(Relaxed) != 0, "limit", "allocator != null => max != 0")?;
        }
    }
    ensure(COUNT.load(Relaxed) == used, "limit", "COUNT == entries in use")
}
