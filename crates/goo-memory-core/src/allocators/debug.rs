//! The debug allocator: wraps any allocator (its parent) and checks every request made to it,
//! naming the sites involved in each misuse it finds: double frees, frees of pointers it never
//! returned, frees and resizes with the wrong size or alignment, writes before or after a block
//! (guard bytes around every block), writes after a free (freed blocks are filled with a
//! pattern and held in a bounded quarantine, then checked), and, when it is destroyed, at
//! `goo_memory_cleanup` or on demand, the live blocks grouped by the site that allocated them.
//!
//! Its requests take the dispatch's slow path, which names their site (a C entry point's return
//! address, a Rust caller's location) and then serves a plain request through the debug
//! allocator's call-free level, counted as any allocator's is; a free that finds misuse there
//! changes nothing and leaves the report to the front door's slow path. Stats, strategies and
//! callbacks apply to it as to any allocator, and no other allocator's path pays for it. It
//! reaches its parent through the parent's call-free level where the parent has one
//! (`allocators::by_kind`). Its own bookkeeping is out of band, in a table keyed by address
//! behind a mutex: a program writing anywhere in or around its blocks cannot corrupt it.
//!
//! Layout of every block, taken from the parent as one block at the request's alignment:
//!
//! ```text
//! base                       user = base + front           user + size      base + total
//! | front guard (GUARD)      | the caller's size bytes      | back guard (GUARD)         |
//! front = max(16, align)        fresh: FRESH, freed: FREED    round_up(size, 16) - size + 16
//! ```
//!
//! What must hold, for every entry of the live table (`check` verifies the guards):
//! `user % align == 0`, `front % align == 0`, `total == front + round_up(size, 16) + 16`, the
//! last `min(front, 256)` bytes of the front guard and every byte of the back guard still
//! `GUARD`; a quarantined block also still `FREED` in its `size` bytes; `held` is the sum of
//! `total` over live and quarantined blocks.

use core::alloc::Layout;
use core::ptr::{self, NonNull};
use core::sync::atomic::{AtomicPtr, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::collections::{HashMap, VecDeque};
use std::fmt::Write as _;
use std::io::Write as _;
use std::sync::{Mutex, MutexGuard};

use crate::allocators::by_kind;
use crate::policy::backend::{for_each_live, Backend, Kind, Managed};
use crate::policy::fork::{ForkHooks, Nesting};
use crate::policy::front::{self, Inline};
use crate::policy::names::{self, escaped, json_string};
use crate::raw::{natural_align, resolve_align, AllocOptions, AllocStrategy, GooAllocator};

mod site;
use site::{capture, Captured};
pub use site::{
    debug_allocators_alive, describe, set_entry_points, with_caller, with_return_address, with_site, CFile,
    Site, TRACE_DEPTH,
};

/// Flag: record a stack trace of [`TRACE_DEPTH`] frames for every block and free
/// (`GOO_DEBUG_TRACES` in C and in the environment).
pub const TRACES: u32 = 1;
/// Flag: abort the process after reporting the first error (`GOO_DEBUG_ABORT`).
pub const ABORT: u32 = 2;

/// Bytes of freed blocks the quarantine holds by default (`GOO_DEBUG_QUARANTINE` sets it).
pub const DEFAULT_QUARANTINE_BYTES: usize = 1 << 20;
/// Freed blocks the quarantine holds at most, whatever their bytes.
pub const QUARANTINE_BLOCKS: usize = 4096;
/// Blocks that left the quarantine whose sites are kept, to name them in a late double free.
const RETIRED_BLOCKS: usize = 4096;
/// The smallest guard on each side, and the granule the back guard rounds the size up to.
const GUARD_BYTES: usize = 16;
/// Bytes of the front guard that are filled and checked (a large alignment makes it larger).
const FRONT_CHECKED: usize = 256;
/// A fresh block's bytes (unless zeroed): reads of memory never written show this.
pub const FRESH: u8 = 0xAA;
/// The guard bytes around every block.
pub const GUARD: u8 = 0xFD;
/// A freed block's bytes while it is in the quarantine.
pub const FREED: u8 = 0xDD;

/// One block of the parent that holds a caller's block with its guards.
struct Block {
    /// The parent block (its provenance covers `total` bytes).
    base: NonNull<u8>,
    total: usize,
    front: usize,
    size: usize,
    /// The block's alignment, as resolved for the request; also the parent block's.
    align: usize,
    /// `align` is the natural alignment the front door resolved alignment 0 to (of the size, or
    /// of the larger size of the resize that made the block): a free or resize naming the
    /// natural alignment of its own size names it too.
    natural: bool,
    allocated: Captured,
    /// Damage found in it was reported (once per block).
    reported: bool,
}

/// How far writes reached outside a block.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Damage {
    /// Bytes before the block's start, to the furthest changed guard byte (0: none).
    before: usize,
    /// Bytes after the block's end, to the furthest changed guard byte (0: none).
    after: usize,
}

impl Block {
    fn user(&self) -> *mut u8 {
        // `front < total`: inside the parent block.
        self.base.as_ptr().wrapping_add(self.front)
    }

    fn back(&self) -> usize {
        self.total - self.front - self.size
    }

    /// Fills the guards.
    ///
    /// # Safety
    /// The block is held by this allocator (live or quarantined): `base` is valid for `total`.
    unsafe fn fill_guards(&self) {
        let checked = self.front.min(FRONT_CHECKED);
        // SAFETY: both ranges lie inside the parent block (per the contract).
        unsafe {
            fill_bytes(self.user().sub(checked), GUARD, checked);
            fill_bytes(self.user().add(self.size), GUARD, self.back());
        }
    }

    /// Fills the caller's bytes with `byte`.
    ///
    /// # Safety
    /// As for [`Block::fill_guards`].
    unsafe fn fill(&self, byte: u8) {
        // SAFETY: the caller's bytes lie inside the parent block.
        unsafe { fill_bytes(self.user(), byte, self.size) }
    }

    /// How far writes outside the block reached, if any did.
    ///
    /// # Safety
    /// As for [`Block::fill_guards`].
    #[inline(always)]
    unsafe fn damage(&self) -> Option<Damage> {
        let checked = self.front.min(FRONT_CHECKED);
        // SAFETY: both guards lie inside the parent block, which only this allocator writes
        // (or the program, wrongly: these are plain bytes).
        if unsafe {
            all_bytes(self.user().sub(checked), checked, GUARD)
                && all_bytes(self.user().add(self.size), self.back(), GUARD)
        } {
            return None;
        }
        // SAFETY: forwarded contract.
        unsafe { self.damage_found() }
    }

    /// [`Block::damage`] once a guard was found changed: how far the writes reached.
    ///
    /// # Safety
    /// As for [`Block::fill_guards`].
    #[cold]
    #[inline(never)]
    unsafe fn damage_found(&self) -> Option<Damage> {
        let checked = self.front.min(FRONT_CHECKED);
        // SAFETY: both guards lie inside the parent block (see `damage`).
        let (before, after) = unsafe {
            (
                core::slice::from_raw_parts(self.user().sub(checked), checked),
                core::slice::from_raw_parts(self.user().add(self.size), self.back()),
            )
        };
        let damage = Damage {
            before: before.iter().position(|&b| b != GUARD).map_or(0, |i| checked - i),
            after: after.iter().rposition(|&b| b != GUARD).map_or(0, |i| i + 1),
        };
        (damage != Damage::default()).then_some(damage)
    }

    /// The offset of the first of the caller's bytes that is not `byte`.
    ///
    /// # Safety
    /// As for [`Block::fill_guards`].
    #[inline(always)]
    unsafe fn first_not(&self, byte: u8) -> Option<usize> {
        // SAFETY: the caller's bytes lie inside the parent block.
        if unsafe { all_bytes(self.user(), self.size, byte) } {
            return None;
        }
        // SAFETY: as above.
        let bytes = unsafe { core::slice::from_raw_parts(self.user(), self.size) };
        bytes.iter().position(|&b| b != byte)
    }
}

/// Whether the `len` bytes at `p` are all `byte`: 16 at a time (unaligned `u128` loads; the
/// last one overlaps the one before when `len` is no multiple of 16), as the checks of every
/// free and of every block leaving the quarantine find them intact nearly always, and most
/// guards are 16 to 31 bytes: two loads.
///
/// # Safety
/// `p` is valid for reads of `len` bytes.
#[inline(always)]
unsafe fn all_bytes(p: *const u8, len: usize, byte: u8) -> bool {
    const W: usize = size_of::<u128>();
    if len < W {
        // SAFETY: per the contract.
        return unsafe { core::slice::from_raw_parts(p, len) }.iter().all(|&b| b == byte);
    }
    let word = u128::from_ne_bytes([byte; W]);
    // SAFETY: every load is of `W` bytes at an offset of at most `len - W` (`len >= W`);
    // any bytes are a valid `u128`.
    unsafe {
        let load = |at: usize| p.add(at).cast::<u128>().read_unaligned() ^ word;
        let mut diff = load(0) | load(len - W);
        let mut at = W;
        while at < len - W && diff == 0 {
            diff |= load(at);
            at += W;
        }
        diff == 0
    }
}

/// Fills the `len` bytes at `p` with `byte`: as [`ptr::write_bytes`], with two to four
/// overlapping 16-byte stores inline for the short ranges of every allocation and free (guards,
/// small blocks) rather than a call to `memset`.
///
/// # Safety
/// `p` is valid for writes of `len` bytes.
#[inline(always)]
unsafe fn fill_bytes(p: *mut u8, byte: u8, len: usize) {
    const W: usize = size_of::<u128>();
    if !(W..=4 * W).contains(&len) {
        // SAFETY: per the contract.
        return unsafe { ptr::write_bytes(p, byte, len) };
    }
    let word = u128::from_ne_bytes([byte; W]);
    // SAFETY: `W <= len <= 4 * W`: every store is of `W` bytes at an offset of at most
    // `len - W`, and together they cover the range.
    unsafe {
        let store = |at: usize| p.add(at).cast::<u128>().write_unaligned(word);
        store(0);
        store(len - W);
        if len > 2 * W {
            store(W);
            store(len - 2 * W);
        }
    }
}

/// The live blocks by user address: a table with open addressing and linear probing, kept at
/// most half full, so that a request finds its block in one or two probes with no hashing
/// beyond a multiply (the keys are addresses this allocator chose).
///
/// What must hold: `entries` is empty or has a power-of-two length, `1 << (64 - shift)`;
/// an entry is empty exactly when its key is 0 (no block starts at address 0), else its value
/// is the block whose user address is the key; `len` counts the full entries, and
/// `2 * len <= entries.len()`; every full entry lies at its key's home slot or after it with no
/// empty entry in between (cyclically), which a removal keeps by shifting the entries after
/// it back (there are no tombstones).
#[derive(Default)]
struct LiveTable {
    entries: Vec<(usize, Option<Block>)>,
    len: usize,
    shift: u32,
}

impl LiveTable {
    /// The first slot to look at for `key` (the table is not empty).
    #[inline(always)]
    fn home(&self, key: usize) -> usize {
        ((key as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> self.shift) as usize
    }

    /// The slot of `key`, if it is in the table.
    #[inline(always)]
    fn find(&self, key: usize) -> Option<usize> {
        if self.entries.is_empty() || key == 0 {
            return None;
        }
        let mask = self.entries.len() - 1;
        let mut i = self.home(key);
        loop {
            match self.entries[i].0 {
                k if k == key => return Some(i),
                0 => return None,
                _ => i = (i + 1) & mask,
            }
        }
    }

    fn len(&self) -> usize {
        self.len
    }

    fn get(&self, key: &usize) -> Option<&Block> {
        self.find(*key).and_then(|i| self.entries[i].1.as_ref())
    }

    fn get_mut(&mut self, key: &usize) -> Option<&mut Block> {
        self.find(*key).and_then(|i| self.entries[i].1.as_mut())
    }

    fn values(&self) -> impl Iterator<Item = &Block> {
        self.entries.iter().filter_map(|(_, b)| b.as_ref())
    }

    fn values_mut(&mut self) -> impl Iterator<Item = &mut Block> {
        self.entries.iter_mut().filter_map(|(_, b)| b.as_mut())
    }

    /// Adds the block at `key` (not 0), replacing the one there, if any.
    #[inline(always)]
    fn insert(&mut self, key: usize, block: Block) {
        debug_assert_ne!(key, 0);
        if 2 * (self.len + 1) > self.entries.len() {
            self.grow();
        }
        let mask = self.entries.len() - 1;
        let mut i = self.home(key);
        loop {
            let entry = &mut self.entries[i];
            if entry.0 == key {
                entry.1 = Some(block);
                return;
            }
            if entry.0 == 0 {
                *entry = (key, Some(block));
                self.len += 1;
                return;
            }
            i = (i + 1) & mask;
        }
    }

    /// The block in the full entry `at` (from [`LiveTable::find`]).
    #[inline(always)]
    fn at_mut(&mut self, at: usize) -> &mut Block {
        let block = self.entries[at].1.as_mut();
        // A full entry holds a block (the table's invariant).
        block.unwrap_or_else(|| unreachable!("an empty entry of the live table"))
    }

    /// Takes the block at `key` out of the table.
    #[cfg(test)]
    fn remove(&mut self, key: &usize) -> Option<Block> {
        let at = self.find(*key)?;
        Some(self.remove_at(at))
    }

    /// Takes the block out of the full entry `at` (from [`LiveTable::find`]).
    #[inline(always)]
    fn remove_at(&mut self, at: usize) -> Block {
        let mut hole = at;
        let block =
            self.entries[hole].1.take().unwrap_or_else(|| unreachable!("an empty entry of the live table"));
        self.entries[hole].0 = 0;
        self.len -= 1;
        // Shift back the entries after the hole that may not stay behind it: those whose home
        // is not cyclically in (hole, j].
        let mask = self.entries.len() - 1;
        let mut j = hole;
        loop {
            j = (j + 1) & mask;
            let k = self.entries[j].0;
            if k == 0 {
                break;
            }
            let home = self.home(k);
            if (j.wrapping_sub(home) & mask) >= (j.wrapping_sub(hole) & mask) {
                self.entries.swap(hole, j);
                hole = j;
            }
        }
        block
    }

    /// Doubles the table (16 entries to start with) and puts every entry back.
    #[cold]
    #[inline(never)]
    fn grow(&mut self) {
        let capacity = (self.entries.len() * 2).max(16);
        let old = core::mem::replace(&mut self.entries, Vec::with_capacity(capacity));
        self.entries.resize_with(capacity, || (0, None));
        self.shift = 64 - capacity.trailing_zeros();
        self.len = 0;
        for (key, block) in old {
            if let Some(block) = block {
                self.insert(key, block);
            }
        }
    }
}

/// A freed block in the quarantine.
struct Freed {
    block: Block,
    freed: Captured,
}

/// What is kept of a block after it left the quarantine.
struct Retired {
    user: usize,
    size: usize,
    align: usize,
    allocated: Site,
    freed: Site,
}

/// The debug allocator's bookkeeping, behind its mutex.
#[derive(Default)]
struct State {
    live: LiveTable,
    /// Oldest first.
    quarantine: VecDeque<Freed>,
    quarantine_bytes: usize,
    /// Oldest first.
    retired: VecDeque<Retired>,
    /// Bytes of parent blocks held, live and quarantined.
    held: usize,
}

/// Blocks that left the quarantine, for the caller to give back once the lock is released:
/// nearly always none or one, kept without allocating.
#[derive(Default)]
struct Leaving {
    first: Option<ParentBlock>,
    more: Vec<ParentBlock>,
}

/// What a free does with a pointer it must refuse.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Refusal {
    /// Reports the misuse (the front door's slow path).
    Report,
    /// Leaves it, unreported, to the slow path; so does damage around the block (the
    /// call-free level, which then changes nothing).
    Decline,
}

/// A parent block to give back: what the parent's free needs (a block is larger, and a free
/// copies what leaves the quarantine at every step).
#[derive(Clone, Copy)]
struct ParentBlock {
    base: NonNull<u8>,
    total: usize,
    align: usize,
}

impl Block {
    fn parent_block(&self) -> ParentBlock {
        ParentBlock { base: self.base, total: self.total, align: self.align }
    }
}

impl Leaving {
    fn push(&mut self, block: ParentBlock) {
        match self.first {
            None => self.first = Some(block),
            Some(_) => self.more.push(block),
        }
    }
}

// SAFETY: the pointers in the state are to parent blocks that only this allocator holds; they
// are read and written only under the state's mutex (or by the program, through the blocks it
// was given, which the allocator only reads as bytes).
unsafe impl Send for State {}

/// The debug allocator's mechanism. Its bookkeeping is locked; its requests to the parent are
/// made outside the lock (a parent's callback may use the debug allocator), so it may be used
/// from several threads at once exactly when its parent may. [`create`] makes one (a
/// [`DebugAllocator`](crate::debug::DebugAllocator) owns one), [`from_raw`] finds it behind a
/// debug allocator's vtable.
///
/// ```
/// use core::alloc::Layout;
/// use goo_memory_core::debug::{self, DebugAllocator, DebugFlags};
/// use goo_memory_core::Allocator;
/// let checked = DebugAllocator::new(Allocator::system(), DebugFlags::DEFAULT);
/// let layout = Layout::new::<[u8; 100]>();
/// let block = checked.allocate(layout).unwrap();
/// // SAFETY: a live debug allocator.
/// let mechanism = unsafe { debug::from_raw(checked.as_ptr()) }.unwrap();
/// assert_eq!(mechanism.parent(), checked.parent().as_ptr());
/// assert_eq!(mechanism.live(), (1, 100));
/// assert_eq!((mechanism.check(), mechanism.error_count()), (0, 0), "guards intact");
/// // SAFETY: a live block of `checked`, allocated with this layout.
/// unsafe { checked.deallocate(block, layout) };
/// assert_eq!(mechanism.live(), (0, 0));
/// ```
pub struct Debug {
    parent: *mut GooAllocator,
    flags: u32,
    quarantine_limit: usize,
    state: Mutex<State>,
    errors: AtomicUsize,
    /// This allocator's own `GooAllocator`, for messages.
    this: AtomicPtr<GooAllocator>,
    /// The parent's count of resets when this allocator last looked (`front::resets_of`):
    /// when it moved, the parent freed every block it had, this allocator's too.
    parent_resets: AtomicU64,
    /// Whether the parent outlives this allocator, so that the cleanup may give the
    /// quarantine back to it: true from [`create`], whose contract says so; false for a Rust
    /// [`DebugAllocator`](crate::debug::DebugAllocator), whose parent may live only as long as
    /// the handle (a borrowed allocator, a child region): a handle forgotten (`mem::forget`)
    /// leaves this allocator registered after its parent is gone. Its quarantine is then
    /// given back only by its own requests and its drop, which need the live handle.
    parent_outlives: bool,
}

/// What can be read without the state's lock (`Debug` may be printed from inside a request).
impl core::fmt::Debug for Debug {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Debug")
            .field("parent", &self.parent)
            .field("flags", &self.flags)
            .field("quarantine_limit", &self.quarantine_limit)
            .field("errors", &self.errors.load(Relaxed))
            .finish_non_exhaustive()
    }
}

// SAFETY: the state is behind a mutex and the counters are atomics; the parent is called as
// any caller calls it, which is what the thread-safety rule above says.
unsafe impl Send for Debug {}
// SAFETY: as above.
unsafe impl Sync for Debug {}

impl Drop for Debug {
    fn drop(&mut self) {
        site::count_debug_allocator(false);
    }
}

/// Whether the environment variable `name` is set to something other than empty or "0".
fn env_on(name: &str) -> bool {
    std::env::var_os(name).is_some_and(|v| !v.is_empty() && v != "0")
}

/// The quarantine's size `GOO_DEBUG_QUARANTINE` asks for (bytes, decimal), else the default
/// (unset or empty, as for the other knobs); a value that is no such number is refused with a
/// message.
fn quarantine_from_env() -> usize {
    let Some(v) = std::env::var_os("GOO_DEBUG_QUARANTINE").filter(|v| !v.is_empty()) else {
        return DEFAULT_QUARANTINE_BYTES;
    };
    match v.to_str().and_then(|v| v.trim().parse().ok()) {
        Some(bytes) => bytes,
        None => {
            let _ = writeln!(
                std::io::stderr(),
                "goo-memory: GOO_DEBUG_QUARANTINE must be a number of bytes; using {DEFAULT_QUARANTINE_BYTES}"
            );
            DEFAULT_QUARANTINE_BYTES
        }
    }
}

/// A new debug allocator over `parent` (stats tracked, strategy `Null`), with `flags`
/// ([`TRACES`], [`ABORT`]; other bits are ignored) and whatever `GOO_DEBUG_TRACES`,
/// `GOO_DEBUG_ABORT` and `GOO_DEBUG_QUARANTINE` (bytes) say in the environment now.
/// Destroy it with its `destroy` function: that reports its live blocks, if any, to stderr.
///
/// # Safety
/// `parent` is a valid allocator that outlives the debug allocator.
pub unsafe fn create(parent: *mut GooAllocator, flags: u32) -> NonNull<GooAllocator> {
    // SAFETY: forwarded contract.
    unsafe { create_with(parent, flags, true) }
}

/// [`create`] for a Rust handle that owns the debug allocator: the cleanup leaves its
/// quarantine alone (see `parent_outlives`).
///
/// # Safety
/// `parent` is a valid allocator that outlives the handle, which makes every request to the
/// debug allocator and destroys it when dropped.
pub(crate) unsafe fn create_for_handle(parent: *mut GooAllocator, flags: u32) -> NonNull<GooAllocator> {
    // SAFETY: forwarded contract; the cleanup does not reach the parent (false).
    unsafe { create_with(parent, flags, false) }
}

/// # Safety
/// `parent` is a valid allocator that outlives the debug allocator, or, with `parent_outlives`
/// false, the handle that makes every request to it.
unsafe fn create_with(parent: *mut GooAllocator, flags: u32, parent_outlives: bool) -> NonNull<GooAllocator> {
    let mut flags = flags & (TRACES | ABORT);
    if env_on("GOO_DEBUG_TRACES") {
        flags |= TRACES;
    }
    if env_on("GOO_DEBUG_ABORT") {
        flags |= ABORT;
    }
    let quarantine_limit = quarantine_from_env();
    let debug = Debug {
        parent,
        flags,
        quarantine_limit,
        state: Mutex::new(State::default()),
        errors: AtomicUsize::new(0),
        this: AtomicPtr::new(ptr::null_mut()),
        // SAFETY: the parent is valid (contract).
        parent_resets: AtomicU64::new(unsafe { front::resets_of(parent) }.unwrap_or(0)),
        parent_outlives,
    };
    site::count_debug_allocator(true);
    static FORK_HOOKS: ForkHooks = ForkHooks::new(Nesting::Outer, lock_for_fork, unlock_after_fork);
    crate::policy::fork::hold_across_fork(&FORK_HOOKS);
    let raw = Managed::create(debug, AllocStrategy::Null, true);
    // SAFETY: just made with this backend type.
    unsafe { Managed::<Debug>::backend(raw.as_ptr()) }.this.store(raw.as_ptr(), Relaxed);
    raw
}

/// The debug allocator behind `allocator`, if it is one.
///
/// # Safety
/// `allocator` must be null or valid for reads, and live if a library allocator.
pub unsafe fn from_raw<'a>(allocator: *const GooAllocator) -> Option<&'a Debug> {
    // SAFETY: forwarded contract.
    unsafe { Managed::<Debug>::try_backend(allocator) }
}

/// The debug allocators' state locks, held across a fork (`policy::fork`).
struct ForkHeld(core::cell::UnsafeCell<Vec<MutexGuard<'static, State>>>);

// SAFETY: only the forking thread touches it, between its prepare handler and its parent or
// child handler (as `policy::fork::Held`).
unsafe impl Sync for ForkHeld {}

static FORK_HELD: ForkHeld = ForkHeld(core::cell::UnsafeCell::new(Vec::new()));

/// Takes every live debug allocator's state lock for a fork; the fork's prepare handler holds
/// the registry's lock, so none of them is destroyed until [`unlock_after_fork`].
pub(crate) fn lock_for_fork() {
    let mut debugs = Vec::new();
    crate::policy::backend::for_each_live_while_forking(|a, name| {
        if name == <Debug as Backend>::NAME {
            debugs.push(a);
        }
    });
    // SAFETY: only the forking thread reaches this (see `ForkHeld`).
    let held = unsafe { &mut *FORK_HELD.0.get() };
    for a in debugs {
        // SAFETY: a registered debug allocator, live until the registry's lock (held by the
        // fork's handlers) is released.
        if let Some(debug) = unsafe { from_raw(a) } {
            let guard = debug.lock();
            // SAFETY: the guard is dropped (`unlock_after_fork`) before the registry's lock is
            // released, while the allocator is live: its real lifetime is that span.
            let guard =
                unsafe { core::mem::transmute::<MutexGuard<'_, State>, MutexGuard<'static, State>>(guard) };
            held.push(guard);
        }
    }
}

/// Releases what [`lock_for_fork`] took, in the parent or the child.
pub(crate) fn unlock_after_fork() {
    // SAFETY: as in `lock_for_fork`.
    unsafe { &mut *FORK_HELD.0.get() }.clear();
}

/// Every live debug allocator (a snapshot of the registry).
fn live_debug_allocators() -> Vec<*mut GooAllocator> {
    let mut all = Vec::new();
    for_each_live(|a, name| {
        if name == <Debug as Backend>::NAME {
            all.push(a);
        }
    });
    all
}

/// Empties every live debug allocator's quarantine, each block checked as it leaves and given
/// back to its parent: what `goo_memory_cleanup` does before it counts leaks, so that blocks the
/// program freed are not counted live in the parents.
///
/// # Safety
/// The cleanup's contract: no other thread uses the library meanwhile (it gives blocks back to
/// parents that may be single-owner allocators, and destroys no debug allocator only because
/// nobody else does).
pub(crate) unsafe fn flush_all_quarantines() {
    for a in live_debug_allocators() {
        // SAFETY: registered allocators are live, and nobody destroys one meanwhile (the
        // contract; the registry lock is released, so flushing may allocate and free). Only
        // one whose parent outlives it: a Rust handle's may be gone (`parent_outlives`).
        if let Some(debug) = unsafe { from_raw(a) }.filter(|d| d.parent_outlives) {
            debug.flush_quarantine();
        }
    }
}

/// The leak reports of `goo_memory_cleanup`: every live debug allocator's quarantine is checked
/// and given back to its parent, and its live blocks, if any, are reported by site on stderr.
///
/// # Safety
/// As for [`flush_all_quarantines`].
pub(crate) unsafe fn report_all_at_cleanup() {
    for a in live_debug_allocators() {
        // SAFETY: as in `flush_all_quarantines`.
        if let Some(debug) = unsafe { from_raw(a) } {
            if debug.parent_outlives {
                debug.flush_quarantine();
            }
            debug.print_leaks_for_registry();
        }
    }
}

/// The live debug allocator that freed the block at `ptr` and still remembers it (in its
/// quarantine, or among the blocks that left it), if any. A caller that lost the allocator of
/// a block it frees (the legacy API, whose header a quarantine's fill overwrote) sends the free
/// there, to be reported as the double free it is, with its sites. Asked under the registry's
/// lock, so that no debug allocator is destroyed meanwhile (its own lock nests inside).
pub(crate) fn remembering_free_of(ptr: *mut u8) -> Option<*mut GooAllocator> {
    let mut found = None;
    for_each_live(|a, name| {
        if found.is_some() || name != <Debug as Backend>::NAME {
            return;
        }
        // SAFETY: a registered allocator, live while the registry's lock is held.
        let remembers = unsafe { from_raw(a) }.is_some_and(|debug| {
            let state = debug.lock();
            state.quarantine.iter().any(|f| f.block.user() == ptr)
                || state.retired.iter().any(|r| r.user == ptr.addr())
        });
        if remembers {
            found = Some(a);
        }
    });
    found
}

impl Debug {
    /// The allocator it takes blocks from.
    pub fn parent(&self) -> *mut GooAllocator {
        self.parent
    }

    /// Its flags ([`TRACES`], [`ABORT`]), the environment's included.
    pub fn flags(&self) -> u32 {
        self.flags
    }

    /// Errors it has reported since it was made.
    pub fn error_count(&self) -> usize {
        self.errors.load(Relaxed)
    }

    /// Live blocks and their bytes.
    pub fn live(&self) -> (usize, usize) {
        let state = self.lock();
        (state.live.len(), state.live.values().map(|b| b.size).sum())
    }

    /// Checks the guards of every live and quarantined block, and that every quarantined block
    /// still holds the freed pattern. Returns the number of problems found (blocks with damage);
    /// each is reported on stderr the first time it is found, and counted as an error then.
    pub fn check(&self) -> usize {
        let mut found = 0;
        let mut messages = Vec::new();
        {
            let mut state = self.lock();
            let state = &mut *state;
            for block in state.live.values_mut() {
                // SAFETY: a live block is held by this allocator.
                if let Some(damage) = unsafe { block.damage() } {
                    found += 1;
                    if !block.reported {
                        block.reported = true;
                        messages.push(self.damage_message(block, damage, None, "found by goo_debug_check"));
                    }
                }
            }
            for freed in state.quarantine.iter_mut() {
                if let Some(message) = self.freed_problem(freed, "found by goo_debug_check") {
                    found += 1;
                    if let Some(message) = message {
                        messages.push(message);
                    }
                }
            }
        }
        for message in messages {
            self.error(message);
        }
        found
    }

    /// The live blocks grouped by the site that allocated them (and their trace), largest
    /// group first.
    pub fn leak_sites(&self) -> Vec<LeakSite> {
        self.leak_sites_of(self.lock())
    }

    /// [`Debug::leak_sites`] of the state `state` (locked).
    fn leak_sites_of(&self, state: MutexGuard<'_, State>) -> Vec<LeakSite> {
        let mut groups: HashMap<Captured, (usize, usize)> = HashMap::new();
        {
            // Released at the end of this block, before the sites are described.
            let state = state;
            for block in state.live.values() {
                let entry = groups.entry(block.allocated.clone()).or_default();
                entry.0 += 1;
                entry.1 += block.size;
            }
        }
        let mut sites: Vec<LeakSite> = groups
            .into_iter()
            .map(|(Captured { site, trace }, (blocks, bytes))| LeakSite {
                site,
                trace: trace.map(Vec::from).unwrap_or_default(),
                blocks,
                bytes,
            })
            .collect();
        sites.sort_by(|a, b| {
            (b.bytes, b.blocks)
                .cmp(&(a.bytes, a.blocks))
                .then_with(|| a.site.describe().cmp(&b.site.describe()))
        });
        sites
    }

    /// The leak report: live blocks by site.
    pub fn report(&self) -> DebugReport {
        self.report_of(self.leak_sites())
    }

    /// The leak report of `sites`.
    fn report_of(&self, sites: Vec<LeakSite>) -> DebugReport {
        let allocator = self.this.load(Relaxed);
        DebugReport {
            allocator: allocator.addr(),
            name: names::name_of(allocator),
            live_blocks: sites.iter().map(|s| s.blocks).sum(),
            live_bytes: sites.iter().map(|s| s.bytes).sum(),
            errors: self.error_count(),
            sites,
        }
    }

    /// Prints the leak report on stderr if any block is live.
    fn print_leaks(&self) {
        self.print_report(self.report());
    }

    /// [`Debug::print_leaks`] for the cleanup, a registry reader (see `lock_for_registry`).
    fn print_leaks_for_registry(&self) {
        self.print_report(self.report_of(self.leak_sites_of(self.lock_for_registry())));
    }

    fn print_report(&self, report: DebugReport) {
        if report.live_blocks > 0 {
            let text = report.to_text();
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "goo-memory: leak report of {text}");
        }
    }

    /// Checks every quarantined block and gives it back to the parent.
    pub fn flush_quarantine(&self) {
        let mut messages = Vec::new();
        let drained: Vec<Freed> = {
            let mut state = self.lock();
            state.quarantine_bytes = 0;
            let drained: Vec<Freed> = state.quarantine.drain(..).collect();
            for freed in &drained {
                state.retire(Retired::of(freed), freed.block.total);
            }
            drained
        };
        let mut drained = drained;
        for freed in &mut drained {
            if let Some(Some(message)) = self.freed_problem(freed, "found when the quarantine was emptied") {
                messages.push(message);
            }
        }
        self.give_back(drained.iter().map(|f| f.block.parent_block()));
        for message in messages {
            self.error(message);
        }
    }

    #[inline(always)]
    fn lock(&self) -> MutexGuard<'_, State> {
        self.lock_following(true)
    }

    /// The state for the registry's readers (a report's reserved bytes, the cleanup's leak
    /// report), which reach this allocator without its owner: for a Rust handle's allocator
    /// (`parent_outlives` false) the handle may have been forgotten and the parent be gone, so
    /// they do not follow the parent's resets then (the blocks a reset freed stay counted
    /// until the next call through the handle, if any).
    fn lock_for_registry(&self) -> MutexGuard<'_, State> {
        self.lock_following(self.parent_outlives)
    }

    #[inline(always)]
    fn lock_following(&self, follow: bool) -> MutexGuard<'_, State> {
        // No code that can panic runs under the lock with the state half changed.
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if follow {
            self.follow_parent_resets(&mut state);
        }
        state
    }

    /// Forgets every block when the parent was reset since the last look (an arena, a pool or
    /// a region reset directly, not through this allocator): the reset freed them all, and the
    /// parent hands their memory out again. The live ones leave this allocator's counts as a
    /// reset's would; none is reported, checked or given back.
    #[inline(always)]
    fn follow_parent_resets(&self, state: &mut State) {
        // SAFETY: the parent is live: it outlives this allocator (`create`'s contract), or
        // the Rust handle that makes every call that follows it (see `lock_for_registry`).
        let Some(resets) = (unsafe { front::resets_of(self.parent) }) else { return };
        // A load first: a reset is rare, and the lock is taken on every request.
        if self.parent_resets.load(Relaxed) != resets {
            self.forget_after_reset(state, resets);
        }
    }

    /// [`Debug::follow_parent_resets`] once the parent's count of resets moved.
    #[cold]
    #[inline(never)]
    fn forget_after_reset(&self, state: &mut State, resets: u64) {
        if self.parent_resets.swap(resets, Relaxed) == resets {
            return;
        }
        let (count, bytes) = (state.live.len(), state.live.values().map(|b| b.size).sum());
        *state = State::default();
        let this = self.this.load(Relaxed);
        if !this.is_null() && count > 0 {
            // SAFETY: this allocator, live while it is used.
            unsafe { front::record_bulk_free(this, bytes, count) };
        }
    }

    fn traces(&self) -> bool {
        self.flags & TRACES != 0
    }

    /// An allocation at `site`.
    fn alloc_at(
        &self,
        site: Captured,
        size: usize,
        align: usize,
        natural: bool,
        options: AllocOptions,
    ) -> *mut u8 {
        let front = GUARD_BYTES.max(align);
        let Some(total) = size
            .checked_add(GUARD_BYTES - 1)
            .map(|s| s & !(GUARD_BYTES - 1))
            .and_then(|s| s.checked_add(front))
            .and_then(|s| s.checked_add(GUARD_BYTES))
            .filter(|&t| Layout::from_size_align(t, align).is_ok())
        else {
            return ptr::null_mut();
        };
        // Without `TEMP` too: the option names the thread's temporary arena, and every block
        // comes from the parent.
        let parent_options =
            options.without(AllocOptions::ZERO).without(AllocOptions::NOFAIL).without(AllocOptions::TEMP);
        // SAFETY: the parent is valid (`create`'s contract); the request was checked above.
        let base = unsafe { parent_alloc(self.parent, total, align, parent_options) };
        let Some(base) = NonNull::new(base) else { return ptr::null_mut() };
        let block = Block { base, total, front, size, align, natural, allocated: site, reported: false };
        // SAFETY: a fresh parent block of `total` bytes, this allocator's alone.
        unsafe {
            block.fill_guards();
            if !options.contains(AllocOptions::ZERO) {
                block.fill(FRESH);
            }
        }
        let user = block.user();
        let mut state = self.lock();
        state.held += total;
        state.live.insert(user.addr(), block);
        user
    }

    /// A free from `site`: false, nothing changed, when `ptr` is no live block of this
    /// allocator or names the wrong size or alignment (reported with [`Refusal::Report`]).
    /// With [`Refusal::Decline`], damage around the block declines the free too, unreported.
    #[inline(always)]
    fn release_at(&self, site: Captured, ptr: *mut u8, size: usize, align: usize, refusal: Refusal) -> bool {
        let mut messages = Vec::new();
        let give_back = {
            let mut state = self.lock();
            // Checked where it lies in the table, then taken out.
            let Some(at) = state.live.find(ptr.addr()) else {
                if refusal == Refusal::Report {
                    let message = self.bad_pointer_message(&state, ptr, size, align, &site, "free");
                    drop(state);
                    self.error(message);
                }
                return false;
            };
            let block = state.live.at_mut(at);
            if block.size != size || !free_alignment_fits(block, align) {
                if refusal == Refusal::Report {
                    let message = self.wrong_layout_message(block, size, align, &site, "freed");
                    drop(state);
                    self.error(message);
                }
                return false;
            }
            // SAFETY: the block is live, so it is held by this allocator.
            if let Some(damage) = unsafe { block.damage() }.filter(|_| !block.reported) {
                if refusal == Refusal::Decline {
                    return false;
                }
                block.reported = true;
                messages.push(self.damage_message(block, damage, Some(&site), "found when it was freed"));
            }
            let block = state.live.remove_at(at);
            state.quarantine(self, Freed { block, freed: site }, &mut messages)
        };
        let Leaving { first, more } = give_back;
        if let Some(block) = first {
            self.give_back_one(&block);
            if !more.is_empty() {
                self.give_back(more);
            }
        }
        if !messages.is_empty() {
            self.errors_found(messages);
        }
        true
    }

    /// Gives blocks back to the parent.
    fn give_back(&self, blocks: impl IntoIterator<Item = ParentBlock>) {
        for block in blocks {
            self.give_back_one(&block);
        }
    }

    /// Gives a block back to the parent: one no longer in any table.
    #[inline(always)]
    fn give_back_one(&self, block: &ParentBlock) {
        // SAFETY: a block of the parent with the size and alignment it was taken with, no
        // longer in any table (the caller's word).
        unsafe { parent_free(self.parent, block.base.as_ptr(), block.total, block.align) };
    }

    /// Reports the errors a request found.
    #[cold]
    #[inline(never)]
    fn errors_found(&self, messages: Vec<String>) {
        for message in messages {
            self.error(message);
        }
    }

    /// Checks a quarantined block: `None` if it is intact; `Some(None)` if it is damaged and
    /// was reported before; `Some(Some(message))` for damage found now (then marked reported).
    #[inline(always)]
    fn freed_problem(&self, freed: &mut Freed, when: &str) -> Option<Option<String>> {
        let block = &freed.block;
        // SAFETY: a quarantined block is held by this allocator.
        let (damage, changed) = unsafe { (block.damage(), block.first_not(FREED)) };
        if damage.is_none() && changed.is_none() {
            return None;
        }
        self.freed_problem_found(freed, damage, changed, when)
    }

    /// [`Debug::freed_problem`] once it found damage (`damage`) or a write after the free
    /// (`changed`, the first changed byte's offset).
    #[cold]
    #[inline(never)]
    fn freed_problem_found(
        &self,
        freed: &mut Freed,
        damage: Option<Damage>,
        changed: Option<usize>,
        when: &str,
    ) -> Option<Option<String>> {
        if freed.block.reported {
            return Some(None);
        }
        freed.block.reported = true;
        let block = &freed.block;
        let mut m = self.headline();
        match changed {
            Some(offset) => {
                let _ = write!(
                    m,
                    "use after free: {} written after it was freed (first changed byte at offset {offset}), {when}",
                    block_name(block)
                );
            }
            None => {
                let _ = write!(
                    m,
                    "{} was freed with {}, {when}",
                    block_name(block),
                    damage_words(damage.unwrap_or_default())
                );
            }
        }
        m.push('\n');
        site_lines(&mut m, "allocated at", &block.allocated);
        site_lines(&mut m, "freed at", &freed.freed);
        if let (Some(_), Some(d)) = (changed, damage) {
            let _ = writeln!(m, "  and {}", damage_words(d));
        }
        Some(Some(m))
    }

    fn headline(&self) -> String {
        format!("goo-memory: debug allocator {:p}: ", self.this.load(Relaxed))
    }

    fn damage_message(&self, block: &Block, damage: Damage, site: Option<&Captured>, when: &str) -> String {
        let mut m = self.headline();
        let _ = writeln!(m, "{} has {}, {when}", block_name(block), damage_words(damage));
        site_lines(&mut m, "allocated at", &block.allocated);
        if let Some(site) = site {
            site_lines(&mut m, "freed at", site);
        }
        m
    }

    fn wrong_layout_message(
        &self,
        block: &Block,
        size: usize,
        align: usize,
        site: &Captured,
        verb: &str,
    ) -> String {
        let mut m = self.headline();
        let what = if block.size != size { "size" } else { "alignment" };
        let _ = writeln!(
            m,
            "{verb} with the wrong {what}: {} was {verb} as {size} bytes, alignment {align}; the block stays live",
            block_name(block)
        );
        site_lines(&mut m, "allocated at", &block.allocated);
        site_lines(&mut m, &format!("{verb} at"), site);
        m
    }

    /// A free or realloc of a pointer that is no live block: a double free, an interior
    /// pointer, or a pointer the allocator never returned.
    fn bad_pointer_message(
        &self,
        state: &State,
        ptr: *mut u8,
        size: usize,
        align: usize,
        site: &Captured,
        verb: &str,
    ) -> String {
        let addr = ptr.addr();
        let mut m = self.headline();
        if let Some(freed) = state.quarantine.iter().rev().find(|f| f.block.user().addr() == addr) {
            let what = if verb == "free" { "double free" } else { "realloc after free" };
            let _ = writeln!(m, "{what} of {}", block_name(&freed.block));
            site_lines(&mut m, "allocated at", &freed.block.allocated);
            site_lines(&mut m, "freed at", &freed.freed);
            site_lines(&mut m, &format!("{} again at", past(verb)), site);
        } else if let Some(r) = state.retired.iter().rev().find(|r| r.user == addr) {
            let what = if verb == "free" { "double free" } else { "realloc after free" };
            let _ = writeln!(
                m,
                "{what} of the block {addr:#x} of {} bytes (alignment {}), which has left the quarantine since",
                r.size, r.align
            );
            let _ = writeln!(m, "  allocated at {}", r.allocated.describe());
            let _ = writeln!(m, "  freed at {}", r.freed.describe());
            site_lines(&mut m, &format!("{} again at", past(verb)), site);
        } else if let Some(block) = state.live.values().find(|b| {
            let start = b.base.as_ptr().addr();
            start <= addr && addr < start + b.total
        }) {
            let user = block.user().addr();
            let place = if addr < user {
                format!("{} bytes before the start of", user - addr)
            } else if addr < user + block.size {
                format!("{} bytes inside", addr - user)
            } else {
                format!("{} bytes past the end of", addr - user - block.size)
            };
            let _ = writeln!(m, "{verb} of {addr:#x}, {place} {}", block_name(block));
            site_lines(&mut m, "allocated at", &block.allocated);
            site_lines(&mut m, &format!("{} at", past(verb)), site);
        } else {
            let _ = writeln!(
                m,
                "{verb} of {addr:#x} ({size} bytes, alignment {align}), which this allocator never returned"
            );
            site_lines(&mut m, &format!("{} at", past(verb)), site);
        }
        m
    }

    /// Reports an error: stderr, the count, and the abort when asked for.
    fn error(&self, message: String) {
        self.errors.fetch_add(1, Relaxed);
        let mut err = std::io::stderr().lock();
        let _ = err.write_all(message.as_bytes());
        if self.flags & ABORT != 0 {
            let _ = err.write_all(b"goo-memory: debug allocator: aborting (GOO_DEBUG_ABORT)\n");
            let _ = err.flush();
            std::process::abort();
        }
    }
}

impl State {
    /// Puts a freed block in the quarantine (filled with [`FREED`]) and returns the blocks that
    /// leave it (checked; problems pushed to `messages`), for the caller to give back. A block
    /// larger than the whole quarantine leaves at once, unfilled.
    #[inline(always)]
    fn quarantine(&mut self, debug: &Debug, freed: Freed, messages: &mut Vec<String>) -> Leaving {
        let mut leaving = Leaving::default();
        if freed.block.size > debug.quarantine_limit {
            self.retire(Retired::of(&freed), freed.block.total);
            leaving.push(freed.block.parent_block());
            return leaving;
        }
        // SAFETY: the block was live until now: held by this allocator.
        unsafe { freed.block.fill(FREED) };
        // Room is made before the block goes in: the ring never grows past its bound, and the
        // new entry takes the slot the oldest just left, in cache, where a slot past it is not.
        let size = freed.block.size;
        while self.quarantine_bytes + size > debug.quarantine_limit
            || self.quarantine.len() >= QUARANTINE_BLOCKS
        {
            // Checked and recorded where it lies, then dropped: only what the parent's free
            // needs is copied out.
            let Some(oldest) = self.quarantine.front_mut() else { break };
            if let Some(Some(message)) = debug.freed_problem(oldest, "found when it left the quarantine") {
                messages.push(message);
            }
            let (retired, parent) = (Retired::of(oldest), oldest.block.parent_block());
            self.quarantine_bytes -= oldest.block.size;
            drop(self.quarantine.pop_front());
            self.retire(retired, parent.total);
            leaving.push(parent);
        }
        self.quarantine_bytes += size;
        self.quarantine.push_back(freed);
        leaving
    }

    /// Records a block leaving the quarantine (its sites kept for a late double free; `total`,
    /// its parent block's bytes, no longer held).
    fn retire(&mut self, retired: Retired, total: usize) {
        self.held -= total;
        if self.retired.len() == RETIRED_BLOCKS {
            self.retired.pop_front();
        }
        self.retired.push_back(retired);
    }
}

impl Retired {
    /// What is kept of a block that leaves the quarantine.
    fn of(freed: &Freed) -> Retired {
        Retired {
            user: freed.block.user().addr(),
            size: freed.block.size,
            align: freed.block.align,
            allocated: freed.block.allocated.site,
            freed: freed.freed.site,
        }
    }
}

/// Whether a resize names the block's alignment: the one it was allocated with, or, for a block
/// at a natural alignment, the natural alignment of the larger size (what the front door
/// resolves alignment 0 to for a resize).
fn realloc_alignment_fits(block: &Block, old_size: usize, new_size: usize, align: usize) -> bool {
    align == block.align || (block.natural && align == natural_align(old_size.max(new_size)))
}

/// Whether a free names the block's alignment (see [`Block::natural`]).
fn free_alignment_fits(block: &Block, align: usize) -> bool {
    align == block.align || (block.natural && align == natural_align(block.size))
}

/// A request to the parent: its call-free level where it has one and the request is plain,
/// else the front door's slow path, with the whole policy.
///
/// # Safety
/// As for [`front::alloc_slow`].
#[inline(always)]
unsafe fn parent_alloc(
    parent: *mut GooAllocator,
    size: usize,
    align: usize,
    options: AllocOptions,
) -> *mut u8 {
    // SAFETY: forwarded contract; `kind_of(parent)` is its kind.
    unsafe {
        if front::plain_request(size, align, options) {
            match by_kind::try_alloc(parent, by_kind::kind_of(parent), size, align) {
                Inline::Served(block) => return block,
                Inline::Uncounted(block) => return front::alloc_uncounted(parent, block, size, align),
                Inline::Declined => {}
            }
        }
        front::alloc_slow(parent, size, align, options)
    }
}

/// A block given back to the parent, as [`parent_alloc`] takes one.
///
/// # Safety
/// As for [`front::free_slow`].
#[inline(always)]
unsafe fn parent_free(parent: *mut GooAllocator, ptr: *mut u8, size: usize, align: usize) {
    // SAFETY: forwarded contract; `kind_of(parent)` is its kind.
    unsafe {
        if front::plain_free(ptr, size)
            && by_kind::try_free(parent, by_kind::kind_of(parent), ptr, size, align)
        {
            return;
        }
        front::free_slow(parent, ptr, size, align)
    }
}

fn past(verb: &str) -> &'static str {
    if verb == "free" {
        "freed"
    } else {
        "reallocated"
    }
}

fn block_name(block: &Block) -> String {
    format!("the block {:p} of {} bytes (alignment {})", block.user(), block.size, block.align)
}

fn damage_words(d: Damage) -> String {
    match (d.before, d.after) {
        (0, after) => format!("bytes written past its end (up to {after} bytes after it)"),
        (before, 0) => format!("bytes written before its start (up to {before} bytes before it)"),
        (before, after) => {
            format!("bytes written before its start (up to {before} bytes) and past its end (up to {after} bytes)")
        }
    }
}

/// `  label site` and, with a trace, its frames.
fn site_lines(out: &mut String, label: &str, c: &Captured) {
    let _ = writeln!(out, "  {label} {}", c.site.describe());
    if let Some(trace) = &c.trace {
        for (i, ip) in trace.iter().enumerate() {
            let _ = writeln!(out, "      #{i} {}", escaped(&describe(*ip)));
        }
    }
}

// SAFETY: every block comes from the parent with room for its guards at the request's
// alignment (`user = base + front`, `front % align == 0`), is valid for `size` bytes and
// disjoint from every other live block (the parent's contract); it is given back only once it
// left the quarantine, so it stays disjoint from every block handed out meanwhile.
unsafe impl Backend for Debug {
    const NAME: &'static str = "debug";
    const KIND: Kind = Kind::Debug;

    fn alloc(&self, size: usize, align: usize, options: AllocOptions) -> *mut u8 {
        self.alloc_at(capture(self.traces()), size, align, align == natural_align(size), options)
    }

    unsafe fn free(&self, ptr: *mut u8, size: usize, align: usize) {
        // SAFETY: forwarded contract (a refused free was reported).
        let _ = unsafe { self.release(ptr, size, align) };
    }

    unsafe fn release(&self, ptr: *mut u8, size: usize, align: usize) -> bool {
        self.release_at(capture(self.traces()), ptr, size, align, Refusal::Report)
    }

    /// A plain request with the whole check; null (nothing changed) when the parent cannot
    /// serve it, whose slow path then applies its strategy. The dispatch takes it only in its
    /// slow path, where the site is set (a C entry point's, behind its panic guard).
    #[inline(always)]
    unsafe fn try_alloc_inline(&self, _home: Option<usize>, size: usize, align: usize) -> *mut u8 {
        let align = resolve_align(size, align);
        self.alloc_at(
            capture(self.traces()),
            size,
            align,
            align == natural_align(size),
            AllocOptions::DEFAULT,
        )
    }

    /// A free that checks out (a live block with this size and alignment, its guards intact);
    /// any other changes nothing and is left to the slow path, which reports it. Blocks
    /// leaving the quarantine are checked and reported as in every free.
    #[inline(always)]
    unsafe fn try_free_inline(&self, _home: Option<usize>, ptr: *mut u8, size: usize, align: usize) -> bool {
        self.release_at(capture(self.traces()), ptr, size, resolve_align(size, align), Refusal::Decline)
    }

    unsafe fn realloc(
        &self,
        ptr: *mut u8,
        old_size: usize,
        new_size: usize,
        align: usize,
        options: AllocOptions,
    ) -> *mut u8 {
        let site = capture(self.traces());
        let addr = ptr.addr();
        let mut state = self.lock();
        let fits = state
            .live
            .get(&addr)
            .map(|b| b.size == old_size && realloc_alignment_fits(b, old_size, new_size, align));
        // The old block is freed with its own alignment (a natural one may be smaller).
        let old_align = state.live.get(&addr).map_or(align, |b| b.align);
        let problem = match fits {
            // Not a live block, or the wrong size or alignment: refused.
            None => Some((self.bad_pointer_message(&state, ptr, old_size, align, &site, "realloc"), true)),
            Some(false) => state
                .live
                .get(&addr)
                .map(|b| (self.wrong_layout_message(b, old_size, align, &site, "reallocated"), true)),
            // Damage around a live block is reported, and the block still resized.
            Some(true) => state.live.get_mut(&addr).and_then(|b| {
                // SAFETY: a live block is held by this allocator.
                let damage = unsafe { b.damage() }.filter(|_| !b.reported)?;
                b.reported = true;
                Some((self.damage_message(b, damage, Some(&site), "found when it was reallocated"), false))
            }),
        };
        drop(state);
        if let Some((message, refuse)) = problem {
            self.error(message);
            if refuse {
                crate::policy::refusal::refuse_misuse();
                return ptr::null_mut();
            }
        }
        // Always a new block, so that the old one goes to the quarantine and stale pointers to
        // it are caught.
        let natural = align == natural_align(old_size.max(new_size));
        let new = self.alloc_at(site.clone(), new_size, align, natural, options.without(AllocOptions::ZERO));
        if new.is_null() {
            return new;
        }
        // SAFETY: both blocks are live and disjoint; the old one holds `old_size` bytes.
        unsafe { ptr::copy_nonoverlapping(ptr, new, old_size.min(new_size)) };
        self.release_at(site, ptr, old_size, old_align, Refusal::Report);
        new
    }

    fn bytes_reserved(&self, _bytes_allocated: usize) -> usize {
        // A report's read: the registry's (see `lock_for_registry`).
        self.lock_for_registry().held
    }

    unsafe fn begin_destroy(allocator: *mut GooAllocator) -> bool {
        // SAFETY: `allocator` is a live `Managed<Debug>` (the hook's contract); its name is still
        // registered here, so the report shows it.
        let debug = unsafe { Managed::<Debug>::backend(allocator) };
        debug.flush_quarantine();
        debug.print_leaks();
        true
    }
}

/// Live blocks allocated at one site (with one trace): one entry of a [`DebugReport`].
///
/// ```
/// use core::alloc::Layout;
/// use goo_memory_core::debug::{DebugAllocator, DebugFlags, LeakSite, Site};
/// use goo_memory_core::Allocator;
/// let checked = DebugAllocator::new(Allocator::system(), DebugFlags::DEFAULT);
/// let layout = Layout::new::<[u8; 40]>();
/// let (blocks, line) = ((0..3).map(|_| checked.allocate(layout).unwrap()).collect::<Vec<_>>(), line!());
/// let site: &LeakSite = &checked.leaks().sites[0];
/// assert_eq!((site.blocks, site.bytes), (3, 120));
/// let Site::Rust(location) = site.site else { panic!("a Rust caller's site") };
/// assert_eq!(location.line(), line);
/// assert!(site.trace.is_empty(), "no traces without DebugFlags::TRACES");
/// for block in blocks {
///     // SAFETY: a live block of `checked`, allocated with this layout.
///     unsafe { checked.deallocate(block, layout) };
/// }
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeakSite {
    pub site: Site,
    /// The trace, with traces on (else empty).
    pub trace: Vec<usize>,
    pub blocks: usize,
    pub bytes: usize,
}

/// A debug allocator's leak report: its live blocks grouped by site, largest group first.
///
/// ```
/// use core::alloc::Layout;
/// use goo_memory_core::debug::{DebugAllocator, DebugFlags, DebugReport};
/// use goo_memory_core::Allocator;
/// let checked = DebugAllocator::new(Allocator::system(), DebugFlags::DEFAULT);
/// // SAFETY: a live library allocator (its drop unnames it).
/// unsafe { goo_memory_core::report::set_name(checked.as_ptr(), Some("parser")) };
/// let small = checked.allocate(Layout::new::<u64>()).unwrap();
/// let large = checked.allocate(Layout::new::<[u8; 256]>()).unwrap();
/// let report: DebugReport = checked.leaks();
/// assert_eq!((report.live_blocks, report.live_bytes, report.errors), (2, 264, 0));
/// assert_eq!(report.name.as_deref(), Some("parser"));
/// assert_eq!(report.sites.iter().map(|s| s.bytes).collect::<Vec<_>>(), [256, 8], "largest first");
/// assert!(report.to_text().contains("2 live block(s), 264 byte(s) from 2 site(s)"));
/// assert!(report.to_json().starts_with(&format!(r#"{{"allocator":{},"name":"parser""#, report.allocator)));
/// // SAFETY: live blocks of `checked`, allocated with these layouts.
/// unsafe {
///     checked.deallocate(small, Layout::new::<u64>());
///     checked.deallocate(large, Layout::new::<[u8; 256]>());
/// }
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DebugReport {
    pub allocator: usize,
    pub name: Option<String>,
    pub live_blocks: usize,
    pub live_bytes: usize,
    /// Errors the allocator has reported.
    pub errors: usize,
    pub sites: Vec<LeakSite>,
}

impl DebugReport {
    /// One line for the allocator, one per site (with its trace below it).
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let name = self.name.as_deref().map(|n| format!(" \"{}\"", escaped(n))).unwrap_or_default();
        let _ = writeln!(
            out,
            "debug allocator {:#x}{name}: {} live block(s), {} byte(s) from {} site(s); {} error(s) reported",
            self.allocator,
            self.live_blocks,
            self.live_bytes,
            self.sites.len(),
            self.errors
        );
        for s in &self.sites {
            let _ = writeln!(
                out,
                "  {} byte(s) in {} block(s) allocated at {}",
                s.bytes,
                s.blocks,
                s.site.describe()
            );
            for (i, ip) in s.trace.iter().enumerate() {
                let _ = writeln!(out, "      #{i} {}", escaped(&describe(*ip)));
            }
        }
        out
    }

    /// `{"allocator","name","live_blocks","live_bytes","errors","sites":[{"site","address",
    /// "blocks","bytes","trace":[...]}]}`, then a newline (as the stats report's JSON); the name
    /// is `""` for an unnamed allocator, as in the stats report.
    pub fn to_json(&self) -> String {
        let mut out = String::new();
        let _ = write!(
            out,
            "{{\"allocator\":{},\"name\":{},\"live_blocks\":{},\"live_bytes\":{},\"errors\":{},\"sites\":[",
            self.allocator,
            json_string(self.name.as_deref().unwrap_or("")),
            self.live_blocks,
            self.live_bytes,
            self.errors
        );
        for (i, s) in self.sites.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            let trace: Vec<String> = s.trace.iter().map(|ip| json_string(&describe(*ip))).collect();
            let _ = write!(
                out,
                "{{\"site\":{},\"address\":{},\"blocks\":{},\"bytes\":{},\"trace\":[{}]}}",
                json_string(&s.site.unescaped()),
                s.site.address().map_or("null".to_string(), |a| a.to_string()),
                s.blocks,
                s.bytes,
                trace.join(",")
            );
        }
        out.push_str("]}\n");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::{all_bytes, fill_bytes};

    /// Every length around the 16-byte words, and every position of one changed byte: the
    /// word-wise fill covers exactly its range and the word-wise check misses no byte.
    #[test]
    fn debug_byte_helpers_cover_every_byte() {
        for len in 0..=80 {
            let mut buf = [0u8; 96];
            // SAFETY: `8 + len <= 88 < 96`.
            unsafe { fill_bytes(buf.as_mut_ptr().add(8), 0xFD, len) };
            assert!(buf[..8].iter().all(|&b| b == 0) && buf[8 + len..].iter().all(|&b| b == 0), "len {len}");
            assert!(buf[8..8 + len].iter().all(|&b| b == 0xFD), "len {len}");
            // SAFETY: as above.
            assert!(unsafe { all_bytes(buf.as_ptr().add(8), len, 0xFD) });
            for at in 8..8 + len {
                buf[at] = 0xFC;
                // SAFETY: as above.
                assert!(!unsafe { all_bytes(buf.as_ptr().add(8), len, 0xFD) }, "len {len}, byte {at}");
                buf[at] = 0xFD;
            }
        }
    }
}

#[cfg(test)]
mod table_tests {
    use super::{Block, Captured, LiveTable, Site};
    use core::ptr::NonNull;
    use std::collections::HashMap;

    fn block(size: usize) -> Block {
        Block {
            base: NonNull::dangling(),
            total: size + 32,
            front: 16,
            size,
            align: 8,
            natural: true,
            allocated: Captured { site: Site::Unknown, trace: None },
            reported: false,
        }
    }

    /// Checks the table's invariants (see `LiveTable`) and that it holds what `model` does.
    fn check(table: &LiveTable, model: &HashMap<usize, usize>) {
        assert_eq!(table.len(), model.len());
        assert!(table.entries.is_empty() || 2 * table.len <= table.entries.len());
        let mask = table.entries.len().wrapping_sub(1);
        for (i, (key, value)) in table.entries.iter().enumerate() {
            assert_eq!(*key == 0, value.is_none());
            if *key != 0 {
                // No empty entry between its home and it.
                let mut j = table.home(*key);
                while j != i {
                    assert_ne!(table.entries[j].0, 0, "entry {i} is cut off from its home {j}");
                    j = (j + 1) & mask;
                }
            }
        }
        for (key, size) in model {
            assert_eq!(table.get(key).map(|b| b.size), Some(*size));
        }
        assert_eq!(table.values().count(), model.len());
    }

    /// Inserts, replacements and removals, clustered keys included (addresses a few granules
    /// apart, as blocks are), against a `HashMap`.
    #[test]
    fn debug_live_table_matches_a_map() {
        let mut table = LiveTable::default();
        let mut model = HashMap::new();
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        // (Fewer steps under Miri, which interprets each one: still past the table's growth.)
        for step in 0..if cfg!(miri) { 800 } else { 5000usize } {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let key = 0x1000 + (x as usize % 300) * 16;
            if x.is_multiple_of(3) {
                assert_eq!(table.remove(&key).map(|b| b.size), model.remove(&key));
            } else {
                table.insert(key, block(step));
                model.insert(key, step);
            }
            if step.is_multiple_of(97) {
                check(&table, &model);
            }
        }
        check(&table, &model);
        assert!(table.get(&0).is_none() && table.get(&0x1008).is_none());
        for key in model.keys().copied().collect::<Vec<_>>() {
            assert!(table.remove(&key).is_some());
        }
        check(&table, &HashMap::new());
    }
}
