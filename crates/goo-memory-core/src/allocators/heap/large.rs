//! The heap's large blocks: those its classes do not serve (above
//! [`SMALL_MAX`](super::classes::SMALL_MAX) bytes, or aligned above
//! [`SMALL_ALIGN_MAX`](super::classes::SMALL_ALIGN_MAX)), which are the C library's. The heap keeps every live one
//! in a table keyed by address, with the size and alignment it was allocated (or last resized)
//! with, so that a free or realloc of a large block is checked before the C library sees it: a
//! pointer that is no live large block of the heap (a double free, the inside of a block, a
//! static or stack buffer, a block of the program's own `malloc`) and a size other than the
//! block's are refused instead of corrupting the C library's heap or copying past a block's end.
//!
//! A large block has no class: its class is its own size, so a free or realloc must name that
//! size exactly (the front door counts the size a free names: any other would skew the stats).
//! Its alignment is not checked (the C library frees any of its blocks, whatever alignment a
//! free names), as a small block from `goo_memory_alloc_aligned` freed without its alignment is
//! taken back.
//!
//! The table lives outside the blocks, in memory of the C library's own `malloc` (never through
//! Rust's global allocator, which the heap may be): a program writing past a block's end cannot
//! forge or erase an entry. It is split into [`SHARDS`] shards by a hash of the address, each an
//! open-addressing table (linear probing, deletion by backward shift: no tombstones) under its
//! own lock, so threads allocating and freeing large blocks seldom wait for each other; a large
//! block costs far more in the C library than a lock and a probe.
//!
//! # Invariants
//! Per shard, under its lock, with `cap` its slots and `E` its occupied slots (`addr != 0`):
//!
//! ```text
//! cap == 0 and slots == null,  or  cap is a power of two >= MIN_CAP and len < cap
//! len == |E|;   the addresses in E are distinct, and shard(addr) is this shard
//! for e in E: the slots from home(e.addr) to e's slot, cyclically, are all occupied
//! bytes == Σ e.size for e in E;   e.size > 0 and e.align is 0 or a power of two
//! ```
//!
//! And, with every shard's lock held: `LARGE_BYTES == Σ bytes` over the shards (it changes only
//! under the lock of the shard whose entry changes). [`check`] verifies all of it.

use core::ptr;
use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::{Mutex, MutexGuard};

use super::Refusal;
use crate::policy::fork::Held;
use crate::policy::invariant::{ensure, InvariantError};

/// Shards of the table (a power of two).
const SHARDS: usize = 16;
/// Slots of a shard's first array (a power of two).
const MIN_CAP: usize = if cfg!(miri) { 4 } else { 32 };

/// A live large block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Block {
    /// Its size, as allocated (or last resized): what a free must name.
    pub(crate) size: usize,
    /// Its alignment (0 = natural), as allocated (or last resized): what the C library is told
    /// on its free.
    pub(crate) align: usize,
}

/// A slot: `addr == 0` for an empty one.
#[derive(Clone, Copy)]
struct Entry {
    addr: usize,
    block: Block,
}

const EMPTY: Entry = Entry { addr: 0, block: Block { size: 0, align: 0 } };

/// One shard's open-addressing table (see the module's invariants).
pub(crate) struct Table {
    /// `cap` slots from the C library's `malloc` (zeroed: all empty), or null.
    slots: *mut Entry,
    cap: usize,
    len: usize,
    /// Bytes of the shard's live blocks.
    bytes: usize,
}

// SAFETY: the array is owned by the table and only touched under its shard's lock.
unsafe impl Send for Table {}

/// A shard on a cache line of its own, so that threads using two shards do not contend.
#[repr(align(64))]
struct Shard(Mutex<Table>);

static SHARD: [Shard; SHARDS] =
    [const { Shard(Mutex::new(Table { slots: ptr::null_mut(), cap: 0, len: 0, bytes: 0 })) }; SHARDS];

/// Bytes of the heap's live large blocks (see the module's invariants).
static LARGE_BYTES: AtomicUsize = AtomicUsize::new(0);

/// Bytes of the heap's live large blocks.
pub(crate) fn bytes() -> usize {
    LARGE_BYTES.load(Relaxed)
}

/// Set (the fork hooks registered) before the first entry goes in: until then every shard is
/// empty (the statics' value), and [`check`] has nothing to lock (under Miri, where each lock is
/// slow, a program that never makes a large block skips them all).
static USED: AtomicBool = AtomicBool::new(false);

/// The shards' locks, held across a fork (`policy::fork`).
static FORK_HELD: [Held<Table>; SHARDS] = [const { Held::new() }; SHARDS];

/// Takes every shard's lock for a fork, in shard order (no thread holds two of them but
/// [`check`], which takes them in the same order).
pub(crate) fn lock_for_fork() {
    for (held, shard) in FORK_HELD.iter().zip(&SHARD) {
        held.hold(&shard.0);
    }
}

/// Releases what [`lock_for_fork`] took.
pub(crate) fn unlock_after_fork() {
    for held in FORK_HELD.iter().rev() {
        held.release();
    }
}

/// `addr`'s hash: a multiply, so that the high bits (the shard) and, folded down, the low
/// bits (the home slot) depend on every bit of the address.
#[inline]
fn hash(addr: usize) -> u64 {
    (addr as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

/// The shard of `addr`.
#[inline]
fn shard_index(addr: usize) -> usize {
    (hash(addr) >> (64 - SHARDS.trailing_zeros())) as usize
}

fn lock(index: usize) -> MutexGuard<'static, Table> {
    SHARD[index].0.lock().unwrap_or_else(|e| e.into_inner())
}

impl Table {
    /// An empty table (allocates nothing until the first insert).
    #[cfg(test)]
    const fn new() -> Self {
        Table { slots: ptr::null_mut(), cap: 0, len: 0, bytes: 0 }
    }

    /// The slot where a probe for `addr` starts (`cap > 0`).
    #[inline]
    fn home(&self, addr: usize) -> usize {
        let h = hash(addr);
        (h ^ (h >> 29)) as usize & (self.cap - 1)
    }

    /// Slot `i` (`< cap`).
    #[inline]
    fn at(&self, i: usize) -> Entry {
        debug_assert!(i < self.cap);
        // SAFETY: `i < cap`, the array's length, initialised (zeroed, then written).
        unsafe { self.slots.add(i).read() }
    }

    /// Writes slot `i` (`< cap`).
    #[inline]
    fn set(&mut self, i: usize, e: Entry) {
        debug_assert!(i < self.cap);
        // SAFETY: as for `at`; `&mut self` under the shard's lock.
        unsafe { self.slots.add(i).write(e) }
    }

    /// The slot holding `addr` (`!= 0`), if any.
    fn find(&self, addr: usize) -> Option<usize> {
        if self.cap == 0 {
            return None;
        }
        let mut i = self.home(addr);
        loop {
            // `len < cap`: an empty slot ends every probe.
            match self.at(i).addr {
                0 => return None,
                a if a == addr => return Some(i),
                _ => i = (i + 1) & (self.cap - 1),
            }
        }
    }

    /// Moves the entries to an array of `cap` slots; false (nothing changed) when the C library
    /// has no memory for it.
    fn grow(&mut self, cap: usize) -> bool {
        let Ok(layout) = Layout::array::<Entry>(cap) else { return false };
        // SAFETY: a non-zero size. System (malloc) directly, never the global allocator, which
        // may be this heap.
        let fresh = unsafe { System.alloc_zeroed(layout) }.cast::<Entry>();
        if fresh.is_null() {
            return false;
        }
        // Read as a table, freed below (never dropped: the tests' tables free their arrays).
        let old = core::mem::ManuallyDrop::new(Table { slots: self.slots, cap: self.cap, len: 0, bytes: 0 });
        self.slots = fresh;
        self.cap = cap;
        for i in 0..old.cap {
            let e = old.at(i);
            if e.addr != 0 {
                self.place(e);
            }
        }
        if !old.slots.is_null() {
            // SAFETY: the old array, allocated with this layout for `old.cap` slots.
            unsafe { System.dealloc(old.slots.cast(), Layout::array::<Entry>(old.cap).unwrap_unchecked()) };
        }
        true
    }

    /// Puts `e` (whose address is not in the table) in the first empty slot from its home
    /// (`len < cap`); counts nothing.
    fn place(&mut self, e: Entry) {
        let mut i = self.home(e.addr);
        while self.at(i).addr != 0 {
            i = (i + 1) & (self.cap - 1);
        }
        self.set(i, e);
    }

    /// Adds `e` (whose address is not in the table), growing the array when more than half
    /// full. When it cannot grow (no memory), false, unless `must` and a slot is left
    /// (`len + 1 < cap`): then it is added above the load factor.
    fn insert(&mut self, e: Entry, must: bool) -> bool {
        debug_assert!(e.addr != 0 && self.find(e.addr).is_none());
        if 2 * (self.len + 1) > self.cap
            && !self.grow((2 * self.cap).max(MIN_CAP))
            && !(must && self.len + 1 < self.cap)
        {
            return false;
        }
        self.place(e);
        self.len += 1;
        self.bytes += e.block.size;
        true
    }

    /// Removes slot `i` (occupied), shifting back the entries of its probe run that it would
    /// otherwise cut off from their homes; the removed entry.
    fn remove_at(&mut self, mut i: usize) -> Entry {
        let removed = self.at(i);
        let mask = self.cap - 1;
        let mut j = i;
        loop {
            j = (j + 1) & mask;
            let e = self.at(j);
            if e.addr == 0 {
                break;
            }
            // `e` may fill the hole at `i` when its home is not cyclically in `(i, j]`.
            let home = self.home(e.addr);
            if (j.wrapping_sub(home) & mask) >= (j.wrapping_sub(i) & mask) {
                self.set(i, e);
                i = j;
            }
        }
        self.set(i, EMPTY);
        self.len -= 1;
        self.bytes -= removed.block.size;
        removed
    }

    /// Verifies the module's equations of one shard (`shard`: its index).
    fn check(&self, shard: Option<usize>) -> Result<(), InvariantError> {
        if self.cap == 0 {
            return ensure(self.slots.is_null() && self.len == 0 && self.bytes == 0, HEAP, "cap == 0: empty");
        }
        ensure(
            self.cap.is_power_of_two() && self.cap >= MIN_CAP && self.len < self.cap,
            HEAP,
            "cap is a power of two >= MIN_CAP, len < cap",
        )?;
        let (mut len, mut bytes) = (0, 0);
        for i in 0..self.cap {
            let e = self.at(i);
            if e.addr == 0 {
                continue;
            }
            len += 1;
            bytes += e.block.size;
            ensure(
                e.block.size > 0 && (e.block.align == 0 || e.block.align.is_power_of_two()),
                HEAP,
                "e.size > 0, e.align 0 or a power of two",
            )?;
            ensure(shard.is_none_or(|s| shard_index(e.addr) == s), HEAP, "shard(e.addr) is this shard")?;
            // Reachable from its home, hence found, hence distinct: `find` stops at the first
            // slot holding the address.
            ensure(self.find(e.addr) == Some(i), HEAP, "slots from home(e.addr) to e's are occupied")?;
        }
        ensure(len == self.len, HEAP, "len == |E|")?;
        ensure(bytes == self.bytes, HEAP, "bytes == Σ e.size")
    }
}

/// Records `ptr` as a live large block of `size` bytes at `align` and counts it (see
/// [`Table::insert`] for `must`); false, having changed nothing, when the C library has no
/// memory for the table.
pub(crate) fn insert(ptr: *mut u8, size: usize, align: usize, must: bool) -> bool {
    if !USED.load(Relaxed) {
        // From the first large block on, a fork finds the shards' locks free (`policy::fork`),
        // whether or not the heap has mapped a segment yet.
        crate::policy::fork::hold_across_fork(&super::FORK_HOOKS);
        USED.store(true, Relaxed);
    }
    let addr = ptr.addr();
    let mut table = lock(shard_index(addr));
    if !table.insert(Entry { addr, block: Block { size, align } }, must) {
        return false;
    }
    LARGE_BYTES.fetch_add(size, Relaxed);
    true
}

/// Takes `ptr` out of the table (uncounted) when it is a live large block of `size` bytes: its
/// entry, which the caller frees (or puts back with [`insert`]). Refused, changing nothing,
/// when it is no live large block ([`Refusal::NotLive`]) or one of another size.
pub(crate) fn take(ptr: *mut u8, size: usize) -> Result<Block, Refusal> {
    let addr = ptr.addr();
    let mut table = lock(shard_index(addr));
    let Some(i) = table.find(addr) else { return Err(Refusal::NotLive) };
    if table.at(i).block.size != size {
        return Err(Refusal::WrongSize);
    }
    let e = table.remove_at(i);
    LARGE_BYTES.fetch_sub(e.block.size, Relaxed);
    Ok(e.block)
}

/// The live large block at `ptr`, if any.
pub(crate) fn lookup(ptr: *mut u8) -> Option<Block> {
    let addr = ptr.addr();
    let table = lock(shard_index(addr));
    table.find(addr).map(|i| table.at(i).block)
}

/// Verifies the module's equations: every shard's, and `LARGE_BYTES` against their sum, with
/// every shard's lock held (taken in shard order, as a fork takes them).
pub(crate) fn check() -> Result<(), InvariantError> {
    if !USED.load(Relaxed) {
        // No entry had gone in when it was read: the shards were as the statics made them,
        // empty, and LARGE_BYTES 0 (it may have changed since: not read here).
        return Ok(());
    }
    // An array, not a vector: no allocation (the global allocator may be this heap).
    let tables: [MutexGuard<'static, Table>; SHARDS] = core::array::from_fn(lock);
    let mut bytes = 0;
    for (s, table) in tables.iter().enumerate() {
        table.check(Some(s))?;
        bytes += table.bytes;
    }
    ensure(LARGE_BYTES.load(Relaxed) == bytes, HEAP, "LARGE_BYTES == Σ bytes over the shards")
}

/// The allocator kind the heap's [`InvariantError`]s name.
const HEAP: &str = "heap";

#[cfg(test)]
mod tests {
    use super::*;

    impl Drop for Table {
        fn drop(&mut self) {
            if !self.slots.is_null() {
                // SAFETY: the array, allocated with this layout for `cap` slots.
                unsafe { System.dealloc(self.slots.cast(), Layout::array::<Entry>(self.cap).unwrap()) };
            }
        }
    }

    fn entry(addr: usize) -> Entry {
        Entry { addr, block: Block { size: addr / 16, align: 0 } }
    }

    /// Inserts and removes in an order that makes long probe runs and wraps around the array:
    /// every removal's backward shift keeps every other entry findable.
    #[test]
    fn entries_in_and_out() {
        let n = if cfg!(miri) { 40 } else { 2000 };
        let mut t = Table::new();
        t.check(None).unwrap();
        let mut model = std::collections::HashSet::new();
        // Addresses 16 apart, as blocks are, some listed twice.
        let addrs: Vec<usize> = (1..=n).map(|i| 0x7f00_0000_0000 + i * 16 * (1 + i % 3)).collect();
        for &a in &addrs {
            if model.insert(a) {
                assert!(t.find(a).is_none());
                assert!(t.insert(entry(a), false));
            } else {
                assert!(t.find(a).is_some());
            }
        }
        t.check(None).unwrap();
        assert_eq!(t.bytes, model.iter().map(|&a| entry(a).block.size).sum::<usize>());
        for &a in addrs.iter().step_by(3).chain(addrs.iter().skip(1).step_by(3)) {
            if model.remove(&a) {
                let i = t.find(a).unwrap();
                assert_eq!(t.remove_at(i).addr, a);
            }
        }
        t.check(None).unwrap();
        for &a in &addrs {
            assert_eq!(t.find(a).is_some(), model.contains(&a), "{a:#x}");
        }
        assert_eq!(t.len, model.len());
        assert!(t.find(0x10).is_none());
        // Filled to all slots but one (as `must` may, when the array cannot grow): every entry
        // is found, and a probe for a missing one still ends.
        let mut full = Table::new();
        assert!(full.grow(MIN_CAP));
        for k in 1..MIN_CAP {
            full.place(entry(k * 16));
            full.len += 1;
            full.bytes += entry(k * 16).block.size;
        }
        full.check(None).unwrap();
        assert!(full.find(MIN_CAP * 16).is_none());
        let i = full.find(16).unwrap();
        full.remove_at(i);
        full.check(None).unwrap();
    }
}
