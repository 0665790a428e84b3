//! The system allocator: the C library's `malloc` family, with `posix_memalign` for alignments
//! beyond what `malloc` guarantees, and a small per-thread cache of freed small blocks in
//! front of it. The default allocator is one of these.
//!
//! # The thread cache
//! A thread that owns its home slot (see `policy::thread_slot`) keeps up to [`CACHE_DEPTH`]
//! freed blocks in each of [`CACHE_CLASSES`] classes of 16, 32, ... 256 bytes, and serves small
//! requests from there before it asks `malloc`: a cached pair is an array pop and push, no
//! `malloc` bookkeeping. What it holds is bounded (68 KiB per thread at most), given back to
//! `free` when the thread exits or calls `goo_memory_cleanup`, and shared by every system
//! allocator instance (their blocks are all `malloc` blocks; each instance keeps its own stats).
//! `GOO_SYSTEM_CACHE=0` in the environment turns it off (say, so valgrind sees every free).
//!
//! A small block is filed by the size its free names, which must be the size it was allocated
//! with (the contract of every sized free); debug builds of the library check it against
//! `malloc_usable_size`. Every small block the allocator hands out, from the cache, `malloc`,
//! a zeroed request or a `realloc`, has its class's full size, so any block of a class serves any
//! request of it. The bookkeeping lives in arrays outside the blocks: a use-after-free write
//! cannot redirect the cache.
//!
//! A double free must not hand one block out twice, and the cache hides it from the C
//! library's own check (glibc's tcache finds it by a key in the block). So a block the cache
//! files carries a mark in its second word (its address mixed with a constant), which the
//! cache clears when it hands the block out: a free that finds the mark looks through its
//! class's stack and refuses the block if it is there (reported once on stderr, counted in
//! [`refused_frees`]; no stats change). A mark without the block (a program that stored that
//! very word) costs the look and nothing else. A block freed twice on two threads, into two
//! caches, is not found (neither thread sees the other's cache); nor is one freed again after
//! the cache handed it out anew, which frees its new owner's block (a debug allocator finds
//! those).
//!
//! While a memory checker watches (`policy::sanitize`), every block is `malloc`'s at its exact
//! size and the cache takes none (`rounded`): the tool sees a read past a block's end or
//! after its free as it would for a plain `malloc` block. A block the cache held before the
//! tool was found stays no-access to the tool until it goes back to `free` (`malloc` still
//! counts it live).

use core::ffi::c_void;
use core::ptr::{self, NonNull};
use core::sync::atomic::{AtomicPtr, AtomicU8, AtomicUsize, Ordering::Relaxed};

use crate::policy::backend::{drop_managed, Backend, Kind, Managed};
use crate::policy::invariant::{debug_check, ensure, InvariantError};
use crate::policy::sanitize;
use crate::policy::thread_slot::{self, home_slot, SlotEnd, SLOTS};
use crate::raw::{resolve_align, AllocOptions, AllocStrategy, GooAllocator, MAX_NATURAL_ALIGN};

/// The C library heap as a [`Backend`]. Stateless: every instance shares the process heap;
/// what differs between instances made by [`System::create`] is their stats and strategy.
///
/// ```
/// use goo_memory_core::{AllocStrategy, Allocator, System};
/// let heap = Allocator::with_strategy(System, AllocStrategy::Null); // as Allocator::system()
/// let block = heap.allocate(core::alloc::Layout::new::<u64>()).unwrap();
/// // SAFETY: a live block of `heap` with this layout.
/// unsafe { heap.deallocate(block, core::alloc::Layout::new::<u64>()) };
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct System;

impl System {
    /// A new library allocator over the system heap with its own stats (tracked) and strategy.
    pub fn create(strategy: AllocStrategy) -> NonNull<GooAllocator> {
        Managed::place(Self::managed(ptr::null_mut(), drop_managed::<System>), strategy, true)
    }

    /// A library allocator over the system heap, not yet placed.
    pub(crate) const fn managed(
        context: *mut c_void,
        drop_fn: unsafe fn(*mut GooAllocator),
    ) -> Managed<System> {
        Managed::unplaced(System, drop_fn, context)
    }
}

/// The alignment every `malloc` block has, whatever its size: glibc and musl give
/// `2 * sizeof(size_t)`, 16 on 64-bit targets. 0 where the library promises less, and under
/// Miri, whose `malloc` gives small blocks only C11's alignment.
#[cfg(all(
    target_os = "linux",
    any(target_env = "gnu", target_env = "musl"),
    target_pointer_width = "64",
    not(miri)
))]
const MALLOC_ALIGN: usize = 16;
#[cfg(not(all(
    target_os = "linux",
    any(target_env = "gnu", target_env = "musl"),
    target_pointer_width = "64",
    not(miri)
)))]
const MALLOC_ALIGN: usize = 0;

/// Whether `malloc` alone gives this alignment for a block of this size (`align` 0, natural
/// alignment, is at most `MAX_NATURAL_ALIGN`).
#[inline(always)]
fn malloc_aligns(size: usize, align: usize) -> bool {
    if MALLOC_ALIGN >= MAX_NATURAL_ALIGN {
        // One compare, no natural-alignment computation: the C library's fixed alignment.
        align <= MALLOC_ALIGN
    } else {
        // Elsewhere C11 only promises a block aligned for the objects that fit in it.
        let align = resolve_align(size, align);
        align <= MAX_NATURAL_ALIGN && align <= size
    }
}

// SAFETY: every block comes from malloc/calloc/realloc/posix_memalign with the requested size,
// which return suitably aligned, disjoint blocks; calloc zeroes.
unsafe impl Backend for System {
    fn check_state(&self) -> Result<(), InvariantError> {
        // Every system allocator shares the calling thread's cache.
        check_thread_cache()
    }

    const NAME: &'static str = "system";
    const KIND: Kind = Kind::System;
    const ZEROES: bool = true;

    /// A cached block of the request's class (align 0 = natural), when the thread owns its
    /// home slot and the class has one: an array pop.
    #[inline(always)]
    unsafe fn try_alloc_inline(&self, home: Option<usize>, size: usize, align: usize) -> *mut u8 {
        match home {
            Some(slot) if cacheable(size, align) => take(&CACHES[slot], class_of_request(size)),
            _ => ptr::null_mut(),
        }
    }

    /// Files a cacheable block in the calling thread's open cache when its class has room.
    /// Everything else takes the slow path, so this calls nothing: `free`, a cache's first
    /// opening, debug builds' check of the size a free names, and a block that carries a
    /// cached block's mark (maybe a double free: the slow path looks).
    #[inline(always)]
    unsafe fn try_free_inline(&self, home: Option<usize>, ptr: *mut u8, size: usize, align: usize) -> bool {
        match home {
            Some(slot) if cacheable(size, align) && !cfg!(debug_assertions) => {
                // SAFETY: a live cacheable block (the contract): 16 bytes at least, the cache's
                // once filed.
                unsafe {
                    let filed = !marked(ptr) && push_open(&CACHES[slot], class_of_request(size), ptr);
                    if filed {
                        set_mark(ptr);
                    }
                    filed
                }
            }
            _ => false,
        }
    }

    /// Also accepts `align` 0 (natural alignment), as the front door's fast path passes it.
    #[inline(always)]
    fn alloc(&self, size: usize, align: usize, options: AllocOptions) -> *mut u8 {
        let zero = options.contains(AllocOptions::ZERO);
        if rounded(size, align) {
            let block = cached_alloc(size);
            if zero && !block.is_null() {
                // SAFETY: a block of at least `size` bytes, ours.
                unsafe { ptr::write_bytes(block, 0, size) };
            }
            return block;
        }
        if malloc_aligns(size, align) {
            // SAFETY: plain C library calls with a non-zero size.
            unsafe {
                if zero {
                    libc::calloc(1, size).cast()
                } else {
                    libc::malloc(size).cast()
                }
            }
        } else {
            aligned_alloc(size, resolve_align(size, align), zero)
        }
    }

    #[inline(always)]
    unsafe fn free(&self, ptr: *mut u8, size: usize, align: usize) {
        // SAFETY: forwarded contract.
        unsafe { self.release(ptr, size, align) };
    }

    /// A small block found in the thread's cache already (freed twice) is refused: false.
    #[inline(always)]
    unsafe fn release(&self, ptr: *mut u8, size: usize, align: usize) -> bool {
        if rounded(size, align) {
            // SAFETY: forwarded: `ptr` is a live block of this allocator, or one freed twice.
            return unsafe { cached_free(ptr, size) };
        }
        // SAFETY: `ptr` came from malloc/calloc/realloc/posix_memalign, all freed by free().
        unsafe { libc::free(ptr.cast()) };
        true
    }

    unsafe fn realloc(
        &self,
        ptr: *mut u8,
        old_size: usize,
        new_size: usize,
        align: usize,
        options: AllocOptions,
    ) -> *mut u8 {
        let small = rounded(new_size, align);
        if small && rounded(old_size, align) && class_of_request(old_size) == class_of_request(new_size) {
            // The block already has its class's full size.
            if new_size > old_size && options.contains(AllocOptions::ZERO) {
                // SAFETY: the block holds the class size >= `new_size` bytes.
                unsafe { ptr::write_bytes(ptr.add(old_size), 0, new_size - old_size) };
            }
            return ptr;
        }
        // A small block gets its class's full size, like every small block (the thread cache
        // files blocks by class).
        let target = if small { class_bytes(new_size) } else { new_size };
        // Under Miri, `realloc` keeps only C11's alignment, below the 16 bytes every cached
        // block must have (`ThreadCache`'s equations): small blocks move through
        // `aligned_alloc` there.
        let realloc_aligns = !(cfg!(miri) && small);
        let new = if realloc_aligns && malloc_aligns(target, align) && malloc_aligns(old_size, align) {
            // SAFETY: `ptr` is a live malloc block; realloc keeps it on failure.
            unsafe { libc::realloc(ptr.cast(), target).cast::<u8>() }
        } else {
            let new = aligned_alloc(target, if small { align.max(CLASS_BYTES) } else { align }, false);
            if !new.is_null() {
                // SAFETY: both blocks live and disjoint; the old one is freed once copied.
                unsafe {
                    ptr::copy_nonoverlapping(ptr, new, old_size.min(new_size));
                    libc::free(ptr.cast());
                }
            }
            new
        };
        if !new.is_null() && new_size > old_size && options.contains(AllocOptions::ZERO) {
            // SAFETY: the block is `new_size` bytes long; the tail past `old_size` is ours.
            unsafe { ptr::write_bytes(new.add(old_size), 0, new_size - old_size) };
        }
        new
    }
}

/// Number of small-block classes the thread cache keeps: 16, 32, ... `CACHE_CLASSES * 16` bytes.
pub const CACHE_CLASSES: usize = 16;
/// Blocks the thread cache keeps per class.
pub const CACHE_DEPTH: usize = 32;
/// Bytes per class step; also the alignment every cached block has.
const CLASS_BYTES: usize = 16;
/// The largest request the thread cache serves.
pub const CACHE_MAX_SIZE: usize = CACHE_CLASSES * CLASS_BYTES;

// A `malloc` block of 16 bytes or more is 16-aligned wherever `max_align_t` is (C11: aligned for
// any object that fits), and every cached block is a multiple of 16: natural alignment of any
// cacheable size is covered.
const _: () = assert!(MAX_NATURAL_ALIGN <= CLASS_BYTES);
const _: () = assert!(CACHE_DEPTH < u8::MAX as usize);

/// Whether a request is the thread cache's: `size` in `1..=CACHE_MAX_SIZE` (`size - 1` wraps
/// for 0, which the front door's call-free path may pass) and at most 16-byte alignment (0 =
/// natural).
#[inline(always)]
pub(crate) fn cacheable(size: usize, align: usize) -> bool {
    size.wrapping_sub(1) < CACHE_MAX_SIZE && align <= CLASS_BYTES && cfg!(target_pointer_width = "64")
}

/// Whether the slow path serves a request with a block of its class's full size, which may go
/// through the thread cache: a cacheable one, unless a memory tool watches (`policy::sanitize`).
/// Then every block is `malloc`'s at its exact size and the cache takes none, so the tool sees
/// a read past a block's end as it would past a plain `malloc` block (the call-free level,
/// which would fill the cache, is closed meanwhile). A block the cache held before the tool was
/// found goes to `free` whole.
#[inline(always)]
fn rounded(size: usize, align: usize) -> bool {
    cacheable(size, align) && !sanitize::active()
}

/// The class that serves a request of `size` bytes (`1..=CACHE_MAX_SIZE`).
#[inline(always)]
fn class_of_request(size: usize) -> usize {
    (size - 1) / CLASS_BYTES
}

/// The bytes every block of `size`'s class has.
#[inline(always)]
fn class_bytes(size: usize) -> usize {
    (class_of_request(size) + 1) * CLASS_BYTES
}

/// One thread's cache: per class a stack of blocks. Only the thread that owns the slot reads or
/// writes it (its home slot, found by `home_slot`), and a slot changes hands only through
/// `thread_slot`'s release/acquire on the taken-mask, after [`release_thread_cache`] emptied it:
/// relaxed atomics are plain loads and stores here, and there is never a data race.
///
/// A cache is closed (it holds nothing and takes nothing: every push and pop misses and the
/// slow path opens it) until its thread's first free, and again once the slot is released;
/// `count[k] == CLOSED` in every class marks it, so the fast paths test nothing else. Between
/// operations of its owner, for every class `k < CACHE_CLASSES`:
///
/// ```text
/// count[k] == CLOSED for every k,  or  count[k] <= CACHE_DEPTH for every k
/// blocks[k][i] != null,  blocks[k][i] % 16 == 0                     for i < count[k] <= CACHE_DEPTH
/// the blocks[k][..count[k]] of all classes are distinct             (no block twice, or in two classes)
/// ```
///
/// (So a cache holds at most `Σ CACHE_DEPTH·16·(k + 1)` = 68 KiB.) [`ThreadCache::check`]
/// verifies it; [`check_thread_cache`] checks the calling thread's cache.
#[repr(C, align(64))]
struct ThreadCache {
    /// Blocks held per class, or [`CLOSED`].
    count: [AtomicU8; CACHE_CLASSES],
    blocks: [[AtomicPtr<u8>; CACHE_DEPTH]; CACHE_CLASSES],
}

/// `count[k]` of a closed cache: past any stack, so a pop and a push both miss.
const CLOSED: u8 = u8::MAX;
const _: () = assert!(CACHE_DEPTH < CLOSED as usize);

static CACHES: [ThreadCache; SLOTS] = [const {
    ThreadCache {
        count: [const { AtomicU8::new(CLOSED) }; CACHE_CLASSES],
        blocks: [const { [const { AtomicPtr::new(ptr::null_mut()) }; CACHE_DEPTH] }; CACHE_CLASSES],
    }
}; SLOTS];

/// A small request: a cached block of its class if this thread has one, else a fresh `malloc`
/// block of the class's full size (so that, freed, it can serve any request of its class).
#[inline(always)]
fn cached_alloc(size: usize) -> *mut u8 {
    let class = class_of_request(size);
    if let Some(slot) = home_slot() {
        let block = take(&CACHES[slot], class);
        if !block.is_null() {
            return sanitize::handed_out(block, class_bytes(size));
        }
    } else {
        // A thread that has no slot yet claims one (its home slot when free), so its later
        // requests find a cache; threads without a home slot just use `malloc`.
        crate::policy::cold_path();
        thread_slot::current_slot();
    }
    // SAFETY: a plain C library call with a non-zero size.
    let block: *mut u8 = unsafe { libc::malloc(class_bytes(size)).cast() };
    if !block.is_null() {
        // SAFETY: a fresh block of 16 bytes at least. Its mark word is then defined (a free
        // reads it), whatever the program writes.
        unsafe { clear_mark(block) };
    }
    block
}

/// Where a cached block keeps its mark: its second word (every cached block has 16 bytes).
const MARK_AT: usize = size_of::<usize>();
/// Mixed into a cached block's mark, its address: a word a program is unlikely to leave there.
const MARK_KEY: usize = 0x5bd1_e995_c0de_f00d;

/// The mark a cached `block` carries.
#[inline(always)]
fn mark_of(block: *mut u8) -> usize {
    block.addr() ^ MARK_KEY
}

/// Whether `block` carries the mark of a cached block: it may be in a cache already. Never
/// under Miri, where the blocks' words may be uninitialised bytes a Rust caller left there.
///
/// # Safety
/// `block` is a cacheable block of this allocator (16 bytes at least, readable).
#[inline(always)]
unsafe fn marked(block: *mut u8) -> bool {
    // SAFETY: per the contract; a volatile read, since the word is the program's bytes.
    !cfg!(miri) && unsafe { block.add(MARK_AT).cast::<usize>().read_volatile() } == mark_of(block)
}

/// Marks `block` as cached.
///
/// # Safety
/// `block` is a cacheable block of this allocator, free: only the cache writes it.
#[inline(always)]
unsafe fn set_mark(block: *mut u8) {
    if !cfg!(miri) {
        // SAFETY: per the contract.
        unsafe { block.add(MARK_AT).cast::<usize>().write(mark_of(block)) };
    }
}

/// Clears `block`'s mark as the block is handed out.
///
/// # Safety
/// `block` is a cacheable block of this allocator being handed out.
#[inline(always)]
unsafe fn clear_mark(block: *mut u8) {
    if !cfg!(miri) {
        // SAFETY: per the contract.
        unsafe { block.add(MARK_AT).cast::<usize>().write(0) };
    }
}

/// [`pop`], handing the block out: its mark cleared.
#[inline(always)]
fn take(cache: &ThreadCache, class: usize) -> *mut u8 {
    let block = pop(cache, class);
    if !block.is_null() {
        // SAFETY: a cached block (the cache's equations), handed out now.
        unsafe { clear_mark(block) };
    }
    block
}

/// The top block of `class` in `cache`, or null when it has none.
#[inline(always)]
fn pop(cache: &ThreadCache, class: usize) -> *mut u8 {
    let (Some(count), Some(blocks)) = (cache.count.get(class), cache.blocks.get(class)) else {
        return ptr::null_mut();
    };
    let n = count.load(Relaxed).wrapping_sub(1);
    // `n` wrapped (an empty class) misses the stack like any out-of-range index: no panic path.
    if n as usize >= blocks.len() {
        return ptr::null_mut();
    }
    count.store(n, Relaxed);
    blocks[n as usize].load(Relaxed)
}

/// A small block back: onto this thread's stack of its class, or to `free` when the stack is
/// full or the thread has no cache.
///
/// The class comes from the size the caller names, which the contract requires to be the size
/// the block was allocated with (as C++'s sized `delete` and jemalloc's `sdallocx` do): checking
/// it against the C library (`malloc_usable_size`) costs a call that would make the cached pair
/// 40% slower. Debug builds of the library check it (see [`wrong_size`]);
/// `GOO_SYSTEM_CACHE=0` makes the size irrelevant (every block goes to `free`).
///
/// # Safety
/// `ptr` must be a live block of this allocator of `size` bytes, not used after this call.
/// Whether it did: false for a block this thread's cache holds already (a double free),
/// refused and reported.
#[inline(always)]
unsafe fn cached_free(ptr: *mut u8, size: usize) -> bool {
    if let Some(slot) = home_slot() {
        // SAFETY: a cacheable block (the contract), readable: ours or cached.
        if unsafe { marked(ptr) } && holds(&CACHES[slot], ptr) {
            refuse_double_free();
            return false;
        }
        // SAFETY: forwarded contract.
        if unsafe { try_push(slot, ptr, size) } {
            // Freed, for the program: only the cache may touch it now.
            sanitize::retire(ptr, class_bytes(size));
            return true;
        }
    }
    // SAFETY: `ptr` came from malloc/realloc, freed by free().
    unsafe { libc::free(ptr.cast()) };
    true
}

/// Whether `cache` (the calling thread's, open or closed) holds `block`, in any class (a
/// double free may name another size than the first).
#[cold]
#[inline(never)]
fn holds(cache: &ThreadCache, block: *mut u8) -> bool {
    !is_closed(cache)
        && cache.count.iter().zip(&cache.blocks).any(|(count, blocks)| {
            blocks.iter().take(count.load(Relaxed) as usize).any(|b| b.load(Relaxed) == block)
        })
}

/// Counts and reports (the first time) a double free the cache refused.
#[cold]
#[inline(never)]
fn refuse_double_free() {
    if REFUSED.fetch_add(1, Relaxed) == 0 {
        // No formatting: this may run inside an allocation of the global allocator, and must
        // not allocate.
        let msg: &[u8] = b"goo-memory: system allocator: refused a double free (the block is in this thread's cache); further refusals are only counted (system::refused_frees)\n";
        // SAFETY: writes a static buffer to stderr; the result does not matter.
        unsafe { libc::write(2, msg.as_ptr().cast(), msg.len()) };
    }
}

static REFUSED: AtomicUsize = AtomicUsize::new(0);

/// How many frees the system allocators refused since the process started: blocks the calling
/// thread's cache held already (double frees).
pub fn refused_frees() -> usize {
    REFUSED.load(Relaxed)
}

/// Files a cacheable block in the cache of home slot `slot` (the calling thread's), if it has
/// room; whether it did.
///
/// # Safety
/// As for [`cached_free`]; `size` is cacheable.
#[inline(always)]
unsafe fn try_push(slot: usize, ptr: *mut u8, size: usize) -> bool {
    // SAFETY: forwarded contract (debug builds check the size the caller names).
    if cfg!(debug_assertions) && unsafe { wrong_size(ptr, size) } {
        return false;
    }
    let filed = push(&CACHES[slot], class_of_request(size), ptr);
    if filed {
        // SAFETY: a cacheable block (the contract), the cache's now.
        unsafe { set_mark(ptr) };
    }
    filed
}

/// Files `block` under `class` in `cache` if the class has room; whether it did. A closed
/// cache (its thread's first free, or caching turned off) opens here. (The block's mark is
/// the caller's: [`set_mark`].)
#[inline(always)]
fn push(cache: &ThreadCache, class: usize, block: *mut u8) -> bool {
    push_open(cache, class, block) || (open(cache) && push_open(cache, class, block))
}

/// [`push`] into an open cache: false when the class is full or the cache closed.
#[inline(always)]
fn push_open(cache: &ThreadCache, class: usize, block: *mut u8) -> bool {
    let (Some(count), Some(blocks)) = (cache.count.get(class), cache.blocks.get(class)) else {
        return false;
    };
    let n = count.load(Relaxed);
    // `get`: a full class (`n == CACHE_DEPTH`) or a closed cache (`CLOSED`) is past the stack:
    // no room, and no panic path.
    match blocks.get(n as usize) {
        Some(slot) => {
            slot.store(block, Relaxed);
            count.store(n + 1, Relaxed);
            true
        }
        None => false,
    }
}

/// Opens a closed cache of the calling thread's home slot, unless caching is off; whether a
/// push may go on (a full open cache stays full). The slot's release at thread exit then
/// empties and closes it ([`release_thread_cache`]).
#[cold]
#[inline(never)]
fn open(cache: &ThreadCache) -> bool {
    if !is_closed(cache) || !cache_enabled() {
        return false;
    }
    thread_slot::on_home_slot_release(release_thread_cache);
    for count in &cache.count {
        count.store(0, Relaxed);
    }
    true
}

/// Whether `cache` is closed (all its counts are [`CLOSED`] together).
fn is_closed(cache: &ThreadCache) -> bool {
    cache.count[0].load(Relaxed) == CLOSED
}

/// Debug builds: whether `ptr`'s block is smaller than the class of the `size` its free names
/// (a caller's bug that would make the cache hand the block out for requests it cannot hold).
/// Reports it on stderr; the block then goes to `free` instead of the cache.
///
/// # Safety
/// `ptr` must be a live block from this C library's `malloc` family.
#[cfg(all(target_os = "linux", any(target_env = "gnu", target_env = "musl"), not(miri)))]
#[cold]
unsafe fn wrong_size(ptr: *mut u8, size: usize) -> bool {
    // SAFETY: forwarded contract.
    let usable = unsafe { libc::malloc_usable_size(ptr.cast()) };
    let wrong = usable < class_bytes(size);
    if wrong {
        eprintln!(
            "goo-memory: free of system block {ptr:p} names {size} bytes, but the block has only \
             {usable}: the size must be the one it was allocated with (not cached)"
        );
    }
    wrong
}

/// Where the C library cannot say (and under Miri): no check.
///
/// # Safety
/// None needed; `unsafe` to match the checking version.
#[cfg(not(all(target_os = "linux", any(target_env = "gnu", target_env = "musl"), not(miri))))]
unsafe fn wrong_size(_ptr: *mut u8, _size: usize) -> bool {
    false
}

/// Whether the thread cache is on: not when `GOO_SYSTEM_CACHE=0` is set (read once).
fn cache_enabled() -> bool {
    // 0: not read yet, 1: on, 2: off.
    static STATE: AtomicU8 = AtomicU8::new(0);
    match STATE.load(Relaxed) {
        0 => {
            // `getenv`, not `std::env`: this runs while a thread claims its slot, maybe inside
            // an allocation (with the library as Rust's global allocator), and must not allocate.
            // SAFETY: a NUL-terminated name; the result is only read before returning.
            let off = unsafe {
                let v = libc::getenv(c"GOO_SYSTEM_CACHE".as_ptr());
                !v.is_null() && *v == b'0' as libc::c_char
            };
            STATE.store(if off { 2 } else { 1 }, Relaxed);
            !off
        }
        s => s == 1,
    }
}

/// Run by `thread_slot` when the thread that owns `slot` gives it up (at thread exit, after
/// the fast path stopped finding the slot): the cache closes and its blocks go back to `free`.
fn release_thread_cache(slot: usize, end: SlotEnd) {
    if end == SlotEnd::Lost {
        // Possibly half changed: nothing is read; its blocks are lost to this process.
        for count in &CACHES[slot].count {
            count.store(CLOSED, Relaxed);
        }
        return;
    }
    debug_check(|| CACHES[slot].check());
    drain(&CACHES[slot]);
    for count in &CACHES[slot].count {
        count.store(CLOSED, Relaxed);
    }
}

/// Gives the calling thread's cached blocks back to `free` (the cache stays open). For
/// `goo_memory_cleanup`, and for tests that want the C library's view of the heap.
pub fn trim_thread_cache() {
    if let Some(slot) = home_slot() {
        debug_check(|| CACHES[slot].check());
        drain(&CACHES[slot]);
    }
}

/// Frees every block `cache` holds (a closed cache holds none, and stays closed). Only its
/// owner calls this.
fn drain(cache: &ThreadCache) {
    if is_closed(cache) {
        return;
    }
    for (class, blocks) in cache.blocks.iter().enumerate() {
        let n = cache.count[class].swap(0, Relaxed) as usize;
        for b in blocks.iter().take(n) {
            let b = b.swap(ptr::null_mut(), Relaxed);
            // Whole and accessible again for `free` and its next user (see the module doc).
            sanitize::hand_out(b, (class + 1) * CLASS_BYTES);
            // SAFETY: every cached block is a live `malloc` block that only this cache holds.
            unsafe { libc::free(b.cast()) };
        }
    }
    debug_check(|| cache.check());
}

/// Blocks the calling thread's cache holds (all classes).
pub fn thread_cache_len() -> usize {
    home_slot().map_or(0, |slot| blocks_in(&CACHES[slot]).0)
}

/// What every thread's cache holds at one moment (read with relaxed loads while other threads
/// may use theirs: a consistent figure per class, not across them): [`thread_cache_stats`].
///
/// ```
/// use core::alloc::Layout;
/// use goo_memory_core::{system, Allocator};
/// let heap = Allocator::system();
/// let layout = Layout::from_size_align(48, 16).unwrap();
/// let block = heap.allocate(layout).unwrap();
/// // SAFETY: a live block of `heap`, allocated with this layout.
/// unsafe { heap.deallocate(block, layout) }; // kept by this thread's cache for the next request
/// let held = system::thread_cache_stats();
/// if std::env::var_os("GOO_SYSTEM_CACHE").is_none_or(|v| v != "0") {
///     assert!(held.threads >= 1 && held.blocks >= 1 && held.bytes >= 48);
/// }
/// assert_eq!(held.bytes % 16, 0, "whole blocks of 16, 32, ... 256 bytes");
/// system::trim_thread_cache(); // this thread's blocks back to `free`
/// assert_eq!(system::thread_cache_len(), 0);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ThreadCacheStats {
    /// Threads whose cache is open (those that own their home slot, with caching on).
    pub threads: usize,
    /// Blocks held, all threads and classes.
    pub blocks: usize,
    /// Bytes those blocks have (each its class's size).
    pub bytes: usize,
}

/// The thread caches' current holdings.
pub fn thread_cache_stats() -> ThreadCacheStats {
    CACHES.iter().fold(ThreadCacheStats::default(), |acc, cache| {
        let (blocks, bytes) = blocks_in(cache);
        ThreadCacheStats {
            threads: acc.threads + usize::from(!is_closed(cache)),
            blocks: acc.blocks + blocks,
            bytes: acc.bytes + bytes,
        }
    })
}

/// Blocks and bytes one cache holds.
fn blocks_in(cache: &ThreadCache) -> (usize, usize) {
    cache.count.iter().enumerate().fold((0, 0), |(blocks, bytes), (class, n)| {
        // A closed cache holds nothing (read from another thread, a count may be mid-change).
        let n = (n.load(Relaxed) as usize).min(CACHE_DEPTH) * usize::from(!is_closed(cache));
        (blocks + n, bytes + n * (class + 1) * CLASS_BYTES)
    })
}

#[cold]
fn aligned_alloc(size: usize, align: usize, zero: bool) -> *mut u8 {
    let align = align.max(core::mem::size_of::<usize>());
    let mut out: *mut c_void = ptr::null_mut();
    // SAFETY: `align` is a power of two and a multiple of sizeof(void*), as required.
    if unsafe { libc::posix_memalign(&mut out, align, size) } != 0 {
        return ptr::null_mut();
    }
    if zero {
        // SAFETY: `out` is a fresh block of `size` bytes.
        unsafe { ptr::write_bytes(out.cast::<u8>(), 0, size) };
    }
    out.cast()
}

/// The allocator kind the thread cache's [`InvariantError`]s name.
const SYSTEM: &str = "system";

impl ThreadCache {
    /// Verifies the invariants of the cache (the equations beside the struct). Reads only;
    /// allocates nothing (the distinctness test sorts a copy on the stack). Only the cache's
    /// owner may call it (another thread's reads could race its pushes).
    fn check(&self) -> Result<(), InvariantError> {
        if is_closed(self) {
            return ensure(
                self.count.iter().all(|c| c.load(Relaxed) == CLOSED),
                SYSTEM,
                "count[k] == CLOSED for every k, or count[k] <= CACHE_DEPTH for every k",
            );
        }
        let mut held = [0usize; CACHE_CLASSES * CACHE_DEPTH];
        let mut n = 0;
        for (count, blocks) in self.count.iter().zip(&self.blocks) {
            let count = count.load(Relaxed) as usize;
            ensure(
                count <= CACHE_DEPTH,
                SYSTEM,
                "count[k] == CLOSED for every k, or count[k] <= CACHE_DEPTH for every k",
            )?;
            for block in &blocks[..count] {
                let block = block.load(Relaxed).addr();
                ensure(block != 0, SYSTEM, "blocks[k][i] != null for i < count[k]")?;
                ensure(block.is_multiple_of(CLASS_BYTES), SYSTEM, "blocks[k][i] % 16 == 0 for i < count[k]")?;
                held[n] = block;
                n += 1;
            }
        }
        let held = &mut held[..n];
        held.sort_unstable();
        ensure(
            held.windows(2).all(|w| w[0] != w[1]),
            SYSTEM,
            "the blocks[k][..count[k]] of all classes are distinct",
        )
    }
}

/// Verifies the invariants of the calling thread's cache (Ok if it has none: it does not own
/// its home slot).
pub fn check_thread_cache() -> Result<(), InvariantError> {
    home_slot().map_or(Ok(()), |slot| CACHES[slot].check())
}

/// Verifies that `allocator` is a system allocator, the invariants of its stats
/// ([`ShardedStats::check`](crate::policy::stats::ShardedStats::check)), and those of the
/// calling thread's cache, which every system allocator shares ([`check_thread_cache`]).
///
/// # Safety
/// `allocator` must be null or valid (and live if it is a library allocator).
pub unsafe fn check_raw(allocator: *mut GooAllocator) -> Result<(), InvariantError> {
    // SAFETY: forwarded contract.
    unsafe { Managed::<System>::check_raw(allocator) }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `f` on a thread that owns its home slot, so that it has a thread cache (a thread
    /// whose home slot another live thread holds has none). A thread that does not own its home
    /// slot stays alive until the end, so that the next one gets another thread pointer (a
    /// thread started after one has ended often reuses its thread pointer, and so its slot:
    /// the one a thread of a test running in parallel may hold).
    fn on_cached_thread(f: impl Fn() + Send + Sync) {
        use std::sync::atomic::AtomicBool;
        use std::sync::mpsc;
        let done = AtomicBool::new(false);
        let ran = std::thread::scope(|s| {
            let (f, done) = (&f, &done);
            let mut ran = false;
            for _ in 0..64 {
                let (tx, rx) = mpsc::channel();
                s.spawn(move || {
                    thread_slot::current_slot();
                    let owns = home_slot().is_some();
                    if owns {
                        f();
                    }
                    tx.send(owns).unwrap();
                    while !owns && !done.load(Relaxed) {
                        std::thread::yield_now();
                    }
                });
                if rx.recv().unwrap() {
                    ran = true;
                    break;
                }
            }
            done.store(true, Relaxed);
            ran
        });
        assert!(ran, "no thread got its home slot");
    }

    fn alloc(size: usize) -> *mut u8 {
        let p = System.alloc(size, 0, AllocOptions::DEFAULT);
        assert!(!p.is_null());
        p
    }

    /// A freed small block serves the next request of its class (any size in it), and only of
    /// its class; the cache takes a block only when its class's stack has room.
    #[test]
    fn freed_small_blocks_serve_their_class() {
        on_cached_thread(|| {
            let p = alloc(50);
            // SAFETY: live block of 50 bytes.
            unsafe { System.free(p, 50, 0) };
            assert_eq!(thread_cache_len(), 1);
            let q = alloc(65); // next class: not the cached block
            assert_ne!(p, q);
            assert_eq!(alloc(64), p, "a block of 49..=64 bytes serves 64");
            assert_eq!(thread_cache_len(), 0);
            // SAFETY: live blocks with the sizes they were allocated with.
            unsafe {
                System.free(q, 65, 0);
                System.free(p, 64, 16);
            }
            assert_eq!(thread_cache_len(), 2);
            // Larger or over-aligned blocks are not cached.
            let big = alloc(CACHE_MAX_SIZE + 1);
            let aligned = System.alloc(64, 32, AllocOptions::DEFAULT);
            // SAFETY: as above.
            unsafe {
                System.free(big, CACHE_MAX_SIZE + 1, 0);
                System.free(aligned, 64, 32);
            }
            assert_eq!(thread_cache_len(), 2);
            trim_thread_cache();
            assert_eq!(thread_cache_len(), 0);
        });
    }

    /// A block freed twice while the cache holds it is refused (and counted), however many
    /// frees came between and whatever size the second free names; the next requests get
    /// distinct blocks. (Not under Miri, where blocks carry no mark: the bytes a Rust caller
    /// leaves may be uninitialised.)
    #[test]
    #[cfg_attr(miri, ignore)]
    fn a_double_free_is_refused_while_the_block_is_cached() {
        if !cache_enabled() {
            return; // every free goes to the C library, which finds double frees itself
        }
        on_cached_thread(|| {
            let (p, q) = (alloc(64), alloc(64));
            let before = refused_frees();
            // SAFETY: live blocks of 64 bytes; then `p` freed again while the cache holds it,
            // the misuse under test, which the cache refuses without touching anything.
            unsafe {
                assert!(System.release(p, 64, 0));
                assert!(!System.release(p, 64, 0), "an immediate double free");
                assert!(System.release(q, 64, 0));
                assert!(!System.release(p, 64, 0), "with a free between");
                assert!(!System.release(p, 200, 0), "naming another class");
            }
            assert_eq!(refused_frees(), before + 3);
            assert_eq!(thread_cache_len(), 2);
            let (a, b, c) = (alloc(64), alloc(64), alloc(64));
            assert!(a != b && b != c && a != c, "no block twice");
            // A block handed out again carries no mark: its free is an ordinary one.
            // SAFETY: live blocks of 64 bytes.
            unsafe {
                for x in [a, b, c] {
                    assert!(System.release(x, 64, 0));
                }
            }
            assert_eq!(refused_frees(), before + 3);
            // The program may store any word in a block, the mark included: a look, no refusal.
            let d = alloc(64);
            // SAFETY: `d` is live, 64 bytes; its second word is the program's.
            unsafe {
                d.add(MARK_AT).cast::<usize>().write(mark_of(d));
                assert!(System.release(d, 64, 0));
            }
            assert_eq!(refused_frees(), before + 3);
            trim_thread_cache();
        });
    }

    /// Each class keeps at most `CACHE_DEPTH` blocks; the rest go back to `free`.
    #[test]
    fn each_class_holds_at_most_its_depth() {
        on_cached_thread(|| {
            let blocks: Vec<_> = (0..CACHE_DEPTH + 8).map(|_| alloc(32)).collect();
            for &b in &blocks {
                // SAFETY: live 32-byte blocks.
                unsafe { System.free(b, 32, 0) };
            }
            assert_eq!(thread_cache_len(), CACHE_DEPTH);
            let stats = thread_cache_stats();
            assert!(stats.threads >= 1);
            assert!(stats.blocks >= CACHE_DEPTH && stats.bytes >= CACHE_DEPTH * 32);
            trim_thread_cache();
        });
    }

    /// A zeroed request served from the cache is zeroed; resizing within a class keeps the block,
    /// across classes moves it with its contents; every block reaching the cache has its class's
    /// full size (what lets any block of a class serve any request of it).
    #[test]
    fn zeroing_and_resizing_keep_blocks_whole() {
        on_cached_thread(|| {
            let p = alloc(64);
            // SAFETY: a live 64-byte block; then freed with its size.
            unsafe {
                ptr::write_bytes(p, 0xAA, 64);
                System.free(p, 64, 0);
            }
            let z = System.alloc(60, 0, AllocOptions::ZERO);
            assert_eq!(z, p);
            // SAFETY: 60 live bytes.
            assert!(unsafe { core::slice::from_raw_parts(z, 60) }.iter().all(|&b| b == 0));
            // SAFETY: live blocks, resized and freed with the sizes they have.
            unsafe {
                ptr::write_bytes(z, 7, 60);
                let same = System.realloc(z, 60, 49, 0, AllocOptions::DEFAULT);
                assert_eq!(same, z, "49 and 60 bytes are one class");
                let moved = System.realloc(same, 49, 200, 0, AllocOptions::ZERO);
                assert!(!moved.is_null());
                let bytes = core::slice::from_raw_parts(moved, 200);
                assert!(bytes[..49].iter().all(|&b| b == 7) && bytes[49..].iter().all(|&b| b == 0));
                #[cfg(all(target_os = "linux", any(target_env = "gnu", target_env = "musl"), not(miri)))]
                assert!(libc::malloc_usable_size(moved.cast()) >= class_bytes(200));
                let shrunk = System.realloc(moved, 200, 20, 0, AllocOptions::DEFAULT);
                assert!(core::slice::from_raw_parts(shrunk, 20).iter().all(|&b| b == 7));
                #[cfg(all(target_os = "linux", any(target_env = "gnu", target_env = "musl"), not(miri)))]
                assert!(libc::malloc_usable_size(shrunk.cast()) >= class_bytes(20));
                System.free(shrunk, 20, 0);
                assert_eq!(alloc(32), shrunk, "the shrunk block serves its class");
                System.free(shrunk, 32, 0);
            }
            trim_thread_cache();
        });
    }

    /// A block allocated on one thread and freed on another goes to the freeing thread's cache
    /// and serves that thread's next request of its class. (Every cached block is a plain
    /// `malloc` block, which any thread may free.)
    #[test]
    fn blocks_freed_on_another_thread_serve_that_thread() {
        struct Blocks(Vec<*mut u8>);
        // SAFETY: raw blocks handed from this thread to one other, which alone uses them.
        unsafe impl Send for Blocks {}
        // SAFETY: as above (the closure that holds them runs on one thread).
        unsafe impl Sync for Blocks {}
        let blocks = Blocks(
            (0..4)
                .map(|_| {
                    let p = alloc(64);
                    // SAFETY: 64 live bytes.
                    unsafe { p.write_bytes(0x5A, 64) };
                    p
                })
                .collect(),
        );
        let shared = &blocks;
        on_cached_thread(move || {
            let blocks = &shared.0;
            for &b in blocks {
                // SAFETY: live 64-byte blocks from this allocator, freed once.
                unsafe { System.free(b, 64, 0) };
            }
            assert_eq!(thread_cache_len(), blocks.len());
            let mut again: Vec<*mut u8> = (0..blocks.len()).map(|_| alloc(60)).collect();
            for &b in &again {
                // SAFETY: live blocks of 60 bytes, freed once.
                unsafe { System.free(b, 60, 0) };
            }
            again.sort();
            let mut expected = blocks.clone();
            expected.sort();
            assert_eq!(again, expected, "the cached blocks serve this thread");
            trim_thread_cache();
        });
    }

    /// Debug builds catch a free that names a size larger than the block: the block is not
    /// cached (so it is never handed out for a request it cannot hold).
    #[cfg(all(
        debug_assertions,
        target_os = "linux",
        any(target_env = "gnu", target_env = "musl"),
        not(miri)
    ))]
    #[test]
    fn debug_builds_refuse_a_wrong_size() {
        on_cached_thread(|| {
            let p = alloc(16);
            // SAFETY: a live block (of 16 bytes, misnamed as 256: the bug under test).
            unsafe { System.free(p, CACHE_MAX_SIZE, 0) };
            assert_eq!(thread_cache_len(), 0);
        });
    }

    fn empty_cache() -> ThreadCache {
        ThreadCache {
            count: [const { AtomicU8::new(0) }; CACHE_CLASSES],
            blocks: [const { [const { AtomicPtr::new(ptr::null_mut()) }; CACHE_DEPTH] }; CACHE_CLASSES],
        }
    }

    /// A cache built by hand (never used to allocate) that breaks one equation at a time: the
    /// check names it. The blocks are addresses only, never dereferenced.
    #[test]
    fn check_reports_each_broken_equation() {
        let block = |addr: usize| ptr::without_provenance_mut::<u8>(addr);
        let cache = empty_cache();
        assert_eq!(cache.check(), Ok(()));
        for (class, addr) in [(0, 0x1000), (0, 0x2000), (5, 0x3000)] {
            assert!(push(&cache, class, block(addr)));
        }
        assert_eq!(cache.check(), Ok(()));
        let broken = |cache: &ThreadCache| cache.check().expect_err("a broken equation").broken;

        assert!(push(&cache, 7, block(0x2000)), "a block already in class 0");
        assert_eq!(broken(&cache), "the blocks[k][..count[k]] of all classes are distinct");
        assert!(!pop(&cache, 7).is_null());
        assert!(push(&cache, 5, block(0x3000)), "twice in one class");
        assert_eq!(broken(&cache), "the blocks[k][..count[k]] of all classes are distinct");
        assert!(!pop(&cache, 5).is_null());
        assert_eq!(cache.check(), Ok(()));

        assert!(push(&cache, 3, ptr::null_mut()));
        assert_eq!(broken(&cache), "blocks[k][i] != null for i < count[k]");
        pop(&cache, 3);
        assert!(push(&cache, 3, block(0x4008)));
        assert_eq!(broken(&cache), "blocks[k][i] % 16 == 0 for i < count[k]");
        pop(&cache, 3);

        let closed_or_bounded = "count[k] == CLOSED for every k, or count[k] <= CACHE_DEPTH for every k";
        cache.count[2].store(CACHE_DEPTH as u8 + 1, Relaxed);
        assert_eq!(broken(&cache), closed_or_bounded);
        cache.count[2].store(CLOSED, Relaxed);
        assert_eq!(broken(&cache), closed_or_bounded, "one class closed, not all");
        cache.count[2].store(0, Relaxed);
        assert_eq!(cache.check(), Ok(()));
        let closed = empty_cache();
        for count in &closed.count {
            count.store(CLOSED, Relaxed);
        }
        assert_eq!(closed.check(), Ok(()));
        assert!(pop(&closed, 1).is_null() && !push_open(&closed, 1, block(0x5000)), "a closed cache misses");
        assert_eq!(blocks_in(&closed), (0, 0));
    }

    /// The calling thread's cache holds its invariants through pushes, pops and a drain.
    #[test]
    fn a_used_thread_cache_checks() {
        on_cached_thread(|| {
            let blocks: Vec<_> = (1..=CACHE_MAX_SIZE).step_by(7).map(alloc).collect();
            assert_eq!(check_thread_cache(), Ok(()));
            for (&b, size) in blocks.iter().zip((1..=CACHE_MAX_SIZE).step_by(7)) {
                // SAFETY: live blocks of this allocator with the sizes they were allocated with.
                unsafe { System.free(b, size, 0) };
                assert_eq!(check_thread_cache(), Ok(()));
            }
            assert!(thread_cache_len() > 0);
            trim_thread_cache();
            assert_eq!(check_thread_cache(), Ok(()));
        });
    }
}
