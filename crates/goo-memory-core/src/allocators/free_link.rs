//! The links of the pools' free lists, which live in the free objects themselves (a pool has no
//! per-object overhead), encoded as mimalloc's secure mode does: each link is the next object's
//! address XOR a key random per pool. A write through a stale pointer into a free object (a use
//! after free) cannot then name an address the pool would hand out: what it leaves decodes to
//! an address the pool's range check refuses (the pool then drops the rest of that list, leaks
//! those objects, and reports it), unless the writer knew the key. Encoding keeps the pointer's
//! provenance (only its address bits change), so strict provenance holds.

use core::hash::BuildHasher;
use core::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::hash::RandomState;

/// One pool's key for its links.
#[derive(Clone, Copy, Debug)]
pub(crate) struct LinkKey(usize);

impl LinkKey {
    /// A new key: random (the OS's seed of Rust's hash maps, through a process-wide counter),
    /// never 0, with its top bit set so that an encoded null is no canonical address.
    pub(crate) fn new() -> Self {
        static MADE: AtomicUsize = AtomicUsize::new(0);
        let n = MADE.fetch_add(1, Relaxed);
        let random = RandomState::new().hash_one(n) as usize;
        LinkKey(random | (1 << (usize::BITS - 1)))
    }

    /// The link of the free object at `p`.
    ///
    /// # Safety
    /// `p` is a free object of the pool this key belongs to (its first word is a link).
    #[inline(always)]
    pub(crate) unsafe fn read(self, p: *mut u8) -> *mut u8 {
        // SAFETY: per the contract.
        let stored = unsafe { p.cast::<*mut u8>().read() };
        stored.map_addr(|a| a ^ self.0)
    }

    /// Makes `next` the link of the object at `p`, which becomes free.
    ///
    /// # Safety
    /// `p` is an object of the pool this key belongs to, no longer the program's.
    #[inline(always)]
    pub(crate) unsafe fn write(self, p: *mut u8, next: *mut u8) {
        // SAFETY: per the contract.
        unsafe { p.cast::<*mut u8>().write(next.map_addr(|a| a ^ self.0)) };
    }
}
