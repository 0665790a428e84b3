//! The heap allocator: the default allocator, a small-object heap for runtimes. Requests of up
//! to 16 KiB ([`SMALL_MAX`](classes::SMALL_MAX)) are served from size classes fine enough for
//! real sizes (16-byte steps to 128 bytes, then eight per doubling: a block wastes under 1/8);
//! larger ones go to the C library (the system allocator, which gives them back to the OS),
//! and the heap keeps a table of them (`heap/large.rs`) to check their frees.
//!
//! # Shape
//! - **Per-thread caches.** A thread that owns its home slot (`policy::thread_slot`) keeps up to
//!   [`depth`]`(k)` free blocks of class `k` (16 KiB of them, 8 to 248 blocks) in arrays of its
//!   own, and the fast paths are an array pop and push: no lock, no atomic read-modify-write, no
//!   call. Every free names its size, so the class comes from the size, not from the block's
//!   page.
//! - **The depot** (`heap/depot.rs`): a full cache moves half a class to the process-wide depot
//!   of that class (a bit per block in its span's bitmap, outside the blocks); an empty one
//!   takes a batch back, from the spans with live blocks first, before carving new blocks. A block freed by
//!   another thread serves whichever thread asks next; a sweep's frees are not kept by one
//!   thread.
//! - **Segments** (`heap/segments.rs`): 4 MiB from the OS, cut into 64 KiB spans, each carved
//!   into blocks of one class; a header byte per span names the class. A span whose blocks are
//!   all in the depot goes back to the OS once its class stops growing, or at once when another
//!   class needs a span and none is free (`heap/depot.rs`), and serves any class again.
//!
//! # What survives a buggy program
//! The free lists hold block addresses in arrays outside the blocks, so a write through a freed
//! pointer cannot redirect an allocation. Every block position has a tag in its segment's
//! metadata (`heap/segments.rs`): no block, a live block of class `k`, or a free one. Before a
//! free touches anything it checks that the pointer lies in one of the heap's segments (the
//! segment map) and that its tag is a live block of the class the free's size names; the free
//! sets the tag to free, and handing the block out again sets it to live (a block an aligned
//! request got is tagged as such: its free may name its size without the alignment, any
//! other free must name a size of the block's class). So a double free of a
//! block not handed out again since, a free of a pointer the heap never handed out (or of the
//! inside of a block, or of a position never carved), and a free naming another size class are
//! refused (reported once on stderr, counted in [`refused_frees`]), and no block is ever in the
//! free lists twice: the free's change of the tag from live to free is one atomic step
//! (a compare-and-swap, 0.7 ns a pair here), so of two threads freeing one block at once (a
//! double free racing with itself) one files it and the other is refused. A double free of a block already handed out again frees the new owner's
//! block; the debug allocator finds those. The heap never reads or writes a block's bytes.
//!
//! A large block (the C library's) is checked against the heap's table of its live large blocks
//! (`heap/large.rs`: outside the blocks, keyed by address, with each block's size) before the C
//! library sees it: a free or realloc of a pointer that is no live large block (freed already,
//! the inside of one, a static, stack or foreign `malloc` buffer) or naming another size than
//! the block's own (a large block's class is its exact size) is refused the same way.
//!
//! # Invariants
//! For every cache, between operations of the thread that owns it, for every class `k`:
//!
//! ```text
//! count[k] <= depth(k) <= DEPTH,     depth[k] == depth(k) for all k, or 0 for all k
//! blocks[rows[k]..][..count[k]] are distinct, and tag(each) == free_tag(k)
//! cursor[k] == end[k] == null,  or  cursor[k] <= end[k], both in one span, and
//!     end[k] - cursor[k] < SIZES[k],  or  the span's class is k and
//!     cursor[k] == span + carved(span) * SIZES[k]          (the blocks below it are carved)
//! ```
//!
//! A block is in at most one place: handed out (live), in one cache, in the depot, or not yet
//! carved (at or past a cursor). [`check_thread_cache`] verifies the calling thread's cache.
//!
//! The large blocks' table keeps its own equations beside its state (`heap/large.rs`: each
//! shard's entries reachable from their homes, its `len` and `bytes` their count and sum, and
//! the large blocks' bytes the shards' total); [`check_large`] verifies them, and
//! [`check_block`] that a live large block is in the table with its size.

mod classes;
mod depot;
mod large;
mod segments;

use core::ffi::c_void;
use core::ptr::{self, NonNull};
use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU8, AtomicUsize, Ordering::Relaxed};
use std::sync::Mutex;

use classes::{class_for, class_of, is_small, BLOCKS_PER_SPAN, CLASSES, SIZES, SMALL_MAX};
use segments::{
    aligned_class_of_block, aligned_tag, block_tag, carved, class_of_span, free_tag, in_depot, is_free_tag,
    live_tag, set_carved, tag_of, take_span, NO_BLOCK, SPAN,
};

use crate::allocators::system::System;
use crate::policy::backend::{drop_managed, Backend, Kind, Managed};
use crate::policy::fork::{ForkHooks, Nesting};
use crate::policy::invariant::{ensure, InvariantError};
use crate::policy::thread_slot::{self, home_slot, SlotEnd, SLOTS};
use crate::raw::{AllocOptions, AllocStrategy, GooAllocator};

/// The heap as a [`Backend`]. Stateless: every heap allocator shares the process's caches,
/// depot and segments; what differs between instances made by [`Heap::create`] is their stats
/// and strategy.
///
/// ```
/// use goo_memory_core::{Allocator, Heap};
/// let heap = Allocator::new(Heap); // as Allocator::heap()
/// let mut v = goo_memory_core::allocator_api2::vec::Vec::new_in(&heap);
/// v.extend(0..100u8);
/// assert_eq!(heap.stats().allocation_count, 1);
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct Heap;

impl Heap {
    /// A new library allocator over the heap with its own stats (tracked) and strategy.
    pub fn create(strategy: AllocStrategy) -> NonNull<GooAllocator> {
        Managed::place(Self::managed(ptr::null_mut(), drop_managed::<Heap>), strategy, true)
    }

    /// A library allocator over the heap, not yet placed.
    pub(crate) const fn managed(
        context: *mut c_void,
        drop_fn: unsafe fn(*mut GooAllocator),
    ) -> Managed<Heap> {
        Managed::unplaced(Heap, drop_fn, context)
    }
}

/// Free blocks a cache can keep per class (fewer under Miri, which builds the caches' static
/// byte by byte); a class keeps [`depth`] of them.
pub const DEPTH: usize = if cfg!(miri) { 8 } else { 248 };
/// Bytes of free blocks a cache keeps per class, up to [`DEPTH`] blocks and at least
/// [`MIN_DEPTH`]: small blocks, which programs free and allocate by the thousand (a collector's
/// sweep, a tree's teardown), go to the depot less often, and a thread holds little memory in
/// large ones.
const CLASS_BYTES: usize = 16 * 1024;
/// The fewest free blocks a cache keeps of a class.
const MIN_DEPTH: usize = if cfg!(miri) { 2 } else { 8 };

/// `DEPTHS[k]`: the free blocks a cache keeps of class `k` (even: it moves half at a time).
static DEPTHS: [u8; CLASSES] = DEPTH_TABLE;

/// [`DEPTHS`] as a constant, for [`ROWS`].
const DEPTH_TABLE: [u8; CLASSES] = {
    let mut t = [0; CLASSES];
    let mut c = 0;
    while c < CLASSES {
        let mut d = CLASS_BYTES / SIZES[c];
        if d > DEPTH {
            d = DEPTH;
        }
        if d < MIN_DEPTH {
            d = MIN_DEPTH;
        }
        t[c] = (d & !1) as u8;
        c += 1;
    }
    t
};

/// `ROW_TABLE[k]`: where class `k`'s slots start in a cache's `blocks`, each class having
/// `depth(k)` of them, packed: a cache holds [`CACHE_SLOTS`] (24 KiB of them) rather than
/// [`DEPTH`] for every class (124 KiB), and a thread that uses many classes (a compiler uses
/// all 64) keeps 100 KiB less of its cache resident. The last entry is the total.
const ROW_TABLE: [u16; CLASSES + 1] = {
    let mut t = [0; CLASSES + 1];
    let mut c = 0;
    while c < CLASSES {
        t[c + 1] = t[c] + DEPTH_TABLE[c] as u16;
        c += 1;
    }
    t
};

/// [`ROW_TABLE`], read by the fast paths.
static ROWS: [u16; CLASSES + 1] = ROW_TABLE;

/// Block slots in a cache, all classes.
const CACHE_SLOTS: usize = ROW_TABLE[CLASSES] as usize;

/// The free blocks a cache keeps of `class` (`< CLASSES`): at most [`DEPTH`], even.
#[inline(always)]
pub fn depth(class: usize) -> usize {
    DEPTHS[class] as usize
}

/// One thread's free blocks and carving positions (see the module's invariants). Only the
/// thread owning the slot touches it (the shared cache: under [`SHARED`]); a slot changes hands
/// through `thread_slot`'s release/acquire, so the relaxed atomics are plain loads and stores.
#[repr(C, align(64))]
struct Cache {
    count: [AtomicU8; CLASSES],
    /// [`DEPTHS`], beside the counts: a free's test of room reads it at the cache's address
    /// (no register for the table's). Zero (no room: frees take the slow path) until the
    /// cache's first slow path copies it in, so that the caches stay zero-initialised (the
    /// static is in `.bss`, not 8 MiB of every program's file).
    depth: [AtomicU8; CLASSES],
    /// Class `k`'s free blocks are `blocks[ROWS[k]..][..count[k]]`.
    blocks: [AtomicPtr<u8>; CACHE_SLOTS],
    cursor: [AtomicPtr<u8>; CLASSES],
    end: [AtomicPtr<u8>; CLASSES],
}

const _: () = assert!(
    DEPTH < u8::MAX as usize
        && DEPTH.is_multiple_of(2)
        && MIN_DEPTH <= DEPTH
        && CACHE_SLOTS <= u16::MAX as usize
);

impl Cache {
    /// Class `class`'s slots (`depth(class)` of them).
    fn row(&self, class: usize) -> &[AtomicPtr<u8>] {
        &self.blocks[ROWS[class] as usize..ROWS[class + 1] as usize]
    }
}

/// One cache per thread slot, and one more ([`SHARED_CACHE`]) for threads without a home slot.
static CACHES: [Cache; SLOTS + 1] = [const {
    Cache {
        count: [const { AtomicU8::new(0) }; CLASSES],
        depth: [const { AtomicU8::new(0) }; CLASSES],
        blocks: [const { AtomicPtr::new(ptr::null_mut()) }; CACHE_SLOTS],
        cursor: [const { AtomicPtr::new(ptr::null_mut()) }; CLASSES],
        end: [const { AtomicPtr::new(ptr::null_mut()) }; CLASSES],
    }
}; SLOTS + 1];

/// The cache of threads without a home slot.
const SHARED_CACHE: usize = SLOTS;
/// Held while a thread without a home slot uses the shared cache.
static SHARED: Mutex<()> = Mutex::new(());

/// The shared cache's lock, held across a fork (`policy::fork`).
static FORK_HELD: crate::policy::fork::Held<()> = crate::policy::fork::Held::new();

/// Takes the heap's locks for a fork: the shared cache's (whose users take the depot's and
/// the segments' inside it), every class's of the depot, the segments', the large blocks'
/// table's shards (whose holders take no other lock).
pub(crate) fn lock_for_fork() {
    FORK_HELD.hold(&SHARED);
    depot::lock_for_fork();
    segments::lock_for_fork();
    large::lock_for_fork();
}

/// The heap's fork hooks (registered by its segments and its large blocks' table).
static FORK_HOOKS: ForkHooks = ForkHooks::new(Nesting::Inner, lock_for_fork, unlock_after_fork);

/// Releases what [`lock_for_fork`] took, in the reverse order.
pub(crate) fn unlock_after_fork() {
    large::unlock_after_fork();
    segments::unlock_after_fork();
    depot::unlock_after_fork();
    FORK_HELD.release();
}

/// The top block of `class` in `cache`, tagged live; null when the class has none.
///
/// # Safety
/// The caller owns `cache`; `class < CLASSES`.
#[inline(always)]
unsafe fn pop(cache: &Cache, class: usize) -> *mut u8 {
    // SAFETY: `class < CLASSES` (contract).
    let count = unsafe { cache.count.get_unchecked(class) };
    let n = count.load(Relaxed);
    if n == 0 {
        return ptr::null_mut();
    }
    let n = n - 1;
    count.store(n, Relaxed);
    // SAFETY: `n < count <= depth(class)` (the cache's equations): inside the class's row; the
    // block is a free block of the class in a heap span, now the caller's.
    unsafe {
        let block =
            cache.blocks.get_unchecked(*ROWS.get_unchecked(class) as usize + n as usize).load(Relaxed);
        block_tag(block).store(live_tag(class), Relaxed);
        block
    }
}

/// Whether `ptr` lies in one of the heap's segments: memory that stays mapped for the
/// process's life, whatever was freed there (the legacy API reads a freed block's header there
/// without listing it).
#[inline(always)]
pub(crate) fn in_segments(ptr: *mut u8) -> bool {
    segments::in_segment(ptr)
}

/// Why a free was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Refusal {
    /// The pointer starts no block of the heap.
    Foreign,
    /// It starts a block of another class than the free's size names.
    WrongSize,
    /// The block is already free.
    Double,
    /// A large free's pointer is no live large block of the heap: freed already, or never
    /// handed out.
    NotLive,
}

/// A live block's tag, and its value then (a live tag of the block's class, plain or aligned).
type LiveTag<'a> = (&'a AtomicU8, u8);

/// The tag of `ptr` when it is a live block of `class`.
#[inline(always)]
fn validate<'a>(ptr: *mut u8, class: usize) -> Result<LiveTag<'a>, Refusal> {
    let Some(tag) = tag_of(ptr) else { return Err(Refusal::Foreign) };
    match tag.load(Relaxed) {
        t if t == live_tag(class) => Ok((tag, t)),
        NO_BLOCK => Err(Refusal::Foreign),
        t if is_free_tag(t) => Err(Refusal::Double),
        t if class > 0 && t == aligned_tag(class) => Ok((tag, t)),
        _ => Err(Refusal::WrongSize),
    }
}

/// Makes a live block of `class` whose tag is `tag` free, if no other free did first: the one
/// step of a free that two threads freeing the same block at once (a program's double free)
/// cannot both pass, so the block is filed once. False (nothing changed) if it was not live.
#[inline(always)]
fn claim((tag, live): LiveTag<'_>, class: usize) -> bool {
    tag.compare_exchange(live, free_tag(class), Relaxed, Relaxed).is_ok()
}

/// The outcome of [`file`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Filed {
    /// Made free and in the cache.
    Yes,
    /// The class has no room: nothing changed.
    Full,
    /// The block was no longer live (another free claimed it): nothing changed.
    NotLive,
}

/// Files `ptr`, a block of `class` whose tag is `tag`, in `cache` as free when the class has
/// room and the free claims it ([`claim`]).
///
/// # Safety
/// The caller owns `cache`; `class < CLASSES`.
#[inline(always)]
unsafe fn file(cache: &Cache, class: usize, ptr: *mut u8, tag: LiveTag<'_>) -> Filed {
    // SAFETY: `class < CLASSES` (contract).
    let count = unsafe { cache.count.get_unchecked(class) };
    let n = count.load(Relaxed);
    // SAFETY: `class < CLASSES` (contract).
    if n >= unsafe { cache.depth.get_unchecked(class) }.load(Relaxed) {
        return Filed::Full;
    }
    if !claim(tag, class) {
        return Filed::NotLive;
    }
    // SAFETY: `n < depth[class] <= depth(class)` (the cache's equations): inside the class's row.
    unsafe {
        cache.blocks.get_unchecked(*ROWS.get_unchecked(class) as usize + n as usize).store(ptr, Relaxed)
    };
    count.store(n + 1, Relaxed);
    Filed::Yes
}

/// Whether `class` of `cache` has room for one more free block.
///
/// # Safety
/// `class < CLASSES`.
#[inline(always)]
unsafe fn has_room(cache: &Cache, class: usize) -> bool {
    // SAFETY: `class < CLASSES` (contract).
    unsafe { cache.count.get_unchecked(class).load(Relaxed) < cache.depth.get_unchecked(class).load(Relaxed) }
}

/// `cache` (its owner's) with its copy of [`DEPTHS`] in place (see [`Cache`]'s `depth`).
#[inline(always)]
fn with_depths(cache: &Cache) -> &Cache {
    if cache.depth[0].load(Relaxed) == 0 {
        crate::policy::cold_path();
        for (d, &depth) in cache.depth.iter().zip(&DEPTHS) {
            d.store(depth, Relaxed);
        }
    }
    cache
}

/// Runs `f` on the calling thread's cache: its home slot's, or the shared one under its lock.
fn with_cache<R>(f: impl FnOnce(&Cache) -> R) -> R {
    let home = home_slot().or_else(|| {
        // A thread that has not claimed a slot yet claims one now (its home slot when free),
        // so its later requests take the fast path.
        thread_slot::current_slot();
        home_slot()
    });
    match home {
        Some(slot) => {
            static HOOKED: AtomicBool = AtomicBool::new(false);
            if !HOOKED.load(Relaxed) {
                thread_slot::on_home_slot_release(release_cache);
                HOOKED.store(true, Relaxed);
            }
            f(with_depths(&CACHES[slot]))
        }
        None => {
            let _lock = SHARED.lock().unwrap_or_else(|e| e.into_inner());
            f(with_depths(&CACHES[SHARED_CACHE]))
        }
    }
}

/// A small block of `class`: from the cache, else after refilling it from the depot or fresh
/// spans. Null when the OS has no memory.
fn alloc_small(class: usize) -> *mut u8 {
    with_cache(|cache| {
        // SAFETY: the caller of `with_cache` owns the cache; `class < CLASSES`.
        unsafe {
            let block = pop(cache, class);
            if !block.is_null() {
                return block;
            }
            refill(cache, class);
            pop(cache, class)
        }
    })
}

/// Fills an empty class of `cache` with a batch: from the depot, else carved from the class's
/// span (a fresh span when it runs out). Fills nothing when the OS has no memory.
#[cold]
fn refill(cache: &Cache, class: usize) {
    debug_assert_eq!(cache.count[class].load(Relaxed), 0);
    // SAFETY: the caller owns the cache; the class's first `depth / 2 <= DEPTH` slots, empty.
    let batch = unsafe { core::slice::from_raw_parts_mut(slots(cache, class), depth(class) / 2) };
    let mut n = depot::take(class, batch);
    if n == 0 {
        n = carve(cache, class, batch);
    }
    // Pops take the top: the lowest address on top hands the batch out in ascending order,
    // so that blocks allocated one after another lie one after another, as a program that
    // walks what it built (a parser's tree, a JSON document) reads them best. (Handed out
    // top-down, Rust's JSON workload ran 1.8x slower.)
    batch[..n].reverse();
    cache.count[class].store(n as u8, Relaxed);
}

/// The block slots of `class` in `cache` as plain pointers, for the bulk copies of the slow
/// paths: only the thread owning the cache touches them (see [`Cache`]), so plain accesses
/// cannot race with the fast paths' relaxed ones.
fn slots(cache: &Cache, class: usize) -> *mut *mut u8 {
    // `AtomicPtr<u8>` has the layout of `*mut u8`, and its contents may be written through a
    // shared reference (it is an `UnsafeCell`).
    cache.row(class).as_ptr().cast::<*mut u8>().cast_mut()
}

/// Bytes of blocks one carve takes at most (at least one block): a class carves a page's worth
/// at a time, as mimalloc extends a page's free list, rather than a whole batch of large blocks
/// that the program may never ask for (they would sit in one thread's cache, and keep their
/// span from going back).
const CARVE_BYTES: usize = 4096;

/// Carves up to `out.len()` new blocks of `class` (tagged free) into `out`, at most
/// [`CARVE_BYTES`] of them; how many.
fn carve(cache: &Cache, class: usize, out: &mut [*mut u8]) -> usize {
    let size = SIZES[class];
    let wanted = out.len().min((CARVE_BYTES / size).max(1));
    let mut cursor = cache.cursor[class].load(Relaxed);
    let mut end = cache.end[class].load(Relaxed);
    let mut n = 0;
    while n < wanted {
        if cursor.is_null() || end.addr() - cursor.addr() < size {
            if n > 0 {
                break;
            }
            if !segments::has_free_span() {
                // Memory another class freed serves this one before the heap maps more.
                depot::reclaim_for(class);
            }
            let span = take_span(class);
            if span.is_null() {
                break;
            }
            depot::note_growth(class);
            cursor = span;
            // SAFETY: one past the end of the span.
            end = unsafe { span.add(SPAN) };
        }
        // SAFETY: `cursor` starts a block of the class inside its span (`end - cursor >= size`),
        // never handed out: free from now on; the next block starts `size` bytes on.
        unsafe {
            block_tag(cursor).store(free_tag(class), Relaxed);
            out[n] = cursor;
            cursor = cursor.add(size);
        }
        n += 1;
    }
    if n > 0 {
        // The batch came from one span: the blocks below the cursor are carved.
        let span = end.wrapping_sub(SPAN);
        set_carved(span, (cursor.addr() - span.addr()) / size);
    }
    cache.cursor[class].store(cursor, Relaxed);
    cache.end[class].store(end, Relaxed);
    n
}

/// The class a free or realloc of `size` bytes at `align` names for `ptr`: `class_for(size,
/// align)`, or, for a free naming no alignment, the class an aligned request of that size
/// takes when that is `ptr`'s span's class. So a block from `goo_memory_alloc_aligned` freed
/// without its alignment goes back (to its own class: the span's) instead of being refused.
fn class_named(ptr: *mut u8, size: usize, align: usize) -> usize {
    let class = class_for(size, align);
    if align <= 16 {
        // Only a block an aligned request got ([`aligned_tag`]): any other block's free must
        // name a size of its class.
        if let Some(c) = aligned_class_of_block(ptr) {
            if c != class && (5..=12).any(|log2| class_for(size, 1 << log2) == c) {
                return c;
            }
        }
    }
    class
}

/// Takes back a small block of `class` (a free naming `size`), or refuses it (reported,
/// counted) having changed nothing; whether it took it. A pointer outside the classes' blocks
/// may be a large block allocated at an alignment above theirs and freed naming a smaller one:
/// the large blocks' table decides.
fn free_small(ptr: *mut u8, class: usize, size: usize) -> bool {
    let tag = match validate(ptr, class) {
        Ok(tag) => tag,
        Err(Refusal::Foreign) => return free_large(ptr, size),
        Err(why) => {
            refuse(why);
            return false;
        }
    };
    with_cache(|cache| {
        if cache.count[class].load(Relaxed) as usize >= depth(class) {
            flush_half(cache, class);
        }
        // SAFETY: the caller of `with_cache` owns the cache; `class < CLASSES`.
        match unsafe { file(cache, class, ptr, tag) } {
            Filed::Yes => true,
            // Another thread's free of the same block came first.
            Filed::NotLive => {
                refuse(Refusal::Double);
                false
            }
            // No room after a flush: the cache's depths are not copied in (`with_depths` does
            // it first, so this does not happen); the block is made free and kept out of every
            // list, lost rather than corrupted.
            Filed::Full => {
                if claim(tag, class) {
                    true
                } else {
                    refuse(Refusal::Double);
                    false
                }
            }
        }
    })
}

/// Gives a large block of `size` bytes back to the C library, or refuses it (reported,
/// counted) having changed nothing when it is no live large block of that size; whether it
/// took it.
#[cold]
fn free_large(ptr: *mut u8, size: usize) -> bool {
    match large::take(ptr, size) {
        Ok(block) => {
            // SAFETY: a live block of the system allocator with this size and alignment (the
            // table's entry, just taken out: no other free can take it).
            unsafe { System.free(ptr, block.size, block.align) };
            true
        }
        Err(why) => {
            refuse(why);
            false
        }
    }
}

/// Resizes a large block (or, `old_size` small, one aligned above the classes), or refuses it
/// (reported, counted, null) having changed nothing when it is no live large block of
/// `old_size` bytes. Null, the block unchanged, when out of memory.
///
/// # Safety
/// As for [`Backend::realloc`].
#[cold]
unsafe fn realloc_large(
    ptr: *mut u8,
    old_size: usize,
    new_size: usize,
    align: usize,
    options: AllocOptions,
) -> *mut u8 {
    // Out of the table while it moves: the C library may hand its address out again at once.
    let old = match large::take(ptr, old_size) {
        Ok(block) => block,
        Err(why) => {
            refuse(why);
            crate::policy::refusal::refuse_misuse();
            return ptr::null_mut();
        }
    };
    let block = if is_small(new_size, align) {
        let new = alloc_small(class_for(new_size, align));
        if !new.is_null() {
            // SAFETY: both live and disjoint; the old block (out of the table) is freed once
            // copied, with the size and alignment it has.
            unsafe {
                ptr::copy_nonoverlapping(ptr, new, old.size.min(new_size));
                if new_size > old.size && options.contains(AllocOptions::ZERO) {
                    ptr::write_bytes(new.add(old.size), 0, new_size - old.size);
                }
                System.free(ptr, old.size, old.align);
            }
        }
        new
    } else {
        // SAFETY: a live block of the system allocator with this size (the table's).
        let new = unsafe { System.realloc(ptr, old.size, new_size, align, options) };
        // The table has room: allocating more for it fails only when the C library is out of
        // memory, and then a slot is left unless as many blocks went in meanwhile as the table
        // held; a block the table cannot take stays the program's, untracked (and uncounted:
        // its free is refused, and leaks it).
        if !new.is_null() {
            large::insert(new, new_size, align, true);
        }
        new
    };
    if block.is_null() {
        // Back as it was (it left a slot free: see above).
        large::insert(ptr, old.size, old.align, true);
    }
    block
}

/// Moves the older half of a full class of `cache` to the depot.
#[cold]
fn flush_half(cache: &Cache, class: usize) {
    let (full, half) = (depth(class), depth(class) / 2);
    let slots = slots(cache, class);
    // SAFETY: the caller owns the cache, whose class is full: `depth <= DEPTH` slots hold blocks.
    depot::put(class, unsafe { core::slice::from_raw_parts(slots, half) });
    // SAFETY: as above; the newer half moves down over the older one.
    unsafe { ptr::copy(slots.add(half), slots, full - half) };
    cache.count[class].store((full - half) as u8, Relaxed);
}

/// Run by `thread_slot` when the thread owning `slot` gives it up (at exit): its free blocks
/// go to the depot for other threads, and a span it was carving whose carved blocks are all
/// free goes back to the OS. A span with live blocks stays the slot's next owner's to carve
/// (filing its uncarved blocks, up to 4,096, would make every thread's exit slow).
fn release_cache(slot: usize, end: SlotEnd) {
    let cache = &CACHES[slot];
    if end == SlotEnd::Lost {
        // Possibly half changed: nothing is read; the blocks and the carving positions are
        // lost to this process (their spans stay with the heap).
        for class in 0..CLASSES {
            cache.count[class].store(0, Relaxed);
            cache.cursor[class].store(ptr::null_mut(), Relaxed);
            cache.end[class].store(ptr::null_mut(), Relaxed);
        }
        return;
    }
    flush_cache(cache);
    release_carving_spans(cache);
}

/// Moves every free block of `cache` (its owner's) to the depot.
fn flush_cache(cache: &Cache) {
    for class in 0..CLASSES {
        let n = cache.count[class].load(Relaxed) as usize;
        // SAFETY: the caller owns the cache: its class's first `count <= depth` slots hold
        // free blocks of the class.
        depot::put(class, unsafe { core::slice::from_raw_parts(slots(cache, class), n) });
        cache.count[class].store(0, Relaxed);
    }
}

/// Gives back what the heap holds free, as `malloc_trim` and `mi_collect` do: the calling
/// thread's cached blocks go to the depot, and every span whose blocks are all in the depot
/// goes back to the OS at once (no span kept in reserve, no purge delay waited for). Bytes of
/// spans given back. For a runtime after a collection or a phase that freed much, or a thread
/// about to sleep; other threads' caches stay (each thread's goes to the depot when it exits).
pub fn collect() -> usize {
    let carving = with_cache(|cache| {
        flush_cache(cache);
        release_carving_spans(cache)
    });
    (carving + (0..CLASSES).map(depot::release_all_free).sum::<usize>()) * SPAN
}

/// Gives back the spans `cache` (its owner's, flushed) is carving whose carved blocks are all
/// in the depot, and forgets their carving positions; how many.
fn release_carving_spans(cache: &Cache) -> usize {
    let mut released = 0;
    for (class, &size) in SIZES.iter().enumerate() {
        let (cursor, end) = (cache.cursor[class].load(Relaxed), cache.end[class].load(Relaxed));
        if cursor.is_null() || end.addr() - cursor.addr() < size {
            // None, or carved to its end: a full span like any other, if its blocks are free.
            continue;
        }
        // The carving span starts `SPAN` before its end, and `cursor` is a block start in it.
        let span = end.wrapping_sub(SPAN);
        if depot::release_carving(class, span, (cursor.addr() - span.addr()) / size) {
            cache.cursor[class].store(ptr::null_mut(), Relaxed);
            cache.end[class].store(ptr::null_mut(), Relaxed);
            released += 1;
        }
    }
    released
}

/// Reports a refused free (once per process on stderr: the program has a bug, and a flood of
/// lines helps nobody) and counts it in [`refused_frees`].
#[cold]
#[inline(never)]
fn refuse(why: Refusal) {
    REFUSED.fetch_add(1, Relaxed);
    static SAID: AtomicBool = AtomicBool::new(false);
    if !SAID.swap(true, Relaxed) {
        // No formatting: this may run inside an allocation of the global allocator, and must
        // not allocate.
        let msg: &[u8] = match why {
            Refusal::Double => b"goo-memory: heap: refused a double free; further refusals are only counted\n",
            Refusal::Foreign => {
                b"goo-memory: heap: refused a free of a pointer the heap never handed out; further refusals are only counted\n"
            }
            Refusal::NotLive => {
                b"goo-memory: heap: refused a free of a pointer that is no live block of the heap (freed already, or never handed out); further refusals are only counted\n"
            }
            Refusal::WrongSize => {
                b"goo-memory: heap: refused a free naming another size than the block's; further refusals are only counted\n"
            }
        };
        // SAFETY: writing a static buffer to stderr; `write` cannot unwind.
        unsafe { libc::write(2, msg.as_ptr().cast(), msg.len()) };
    }
}

static REFUSED: AtomicUsize = AtomicUsize::new(0);

/// How many frees and reallocs the heap refused since the process started (double frees, frees
/// of pointers it never handed out, frees naming another size class, or for a large block
/// another size than its own).
pub fn refused_frees() -> usize {
    REFUSED.load(Relaxed)
}

// SAFETY: small blocks are distinct blocks of their class (each in one place: see the module's
// invariants), at least as large as the request, aligned to 16 and to any `align` their class
// size is a multiple of; large ones are the system allocator's, which upholds the same
// contract; zeroed requests are zeroed here.
unsafe impl Backend for Heap {
    const NAME: &'static str = "heap";
    const KIND: Kind = Kind::Heap;
    const ZEROES: bool = true;

    fn check_state(&self) -> Result<(), InvariantError> {
        check_thread_cache()?;
        check_large()
    }

    /// An array pop from the calling thread's cache, for a small request at natural or 16-byte
    /// alignment.
    #[inline(always)]
    unsafe fn try_alloc_inline(&self, home: Option<usize>, size: usize, align: usize) -> *mut u8 {
        match home {
            // SAFETY: the thread owns its home slot's cache; a size of `1..=SMALL_MAX` has a
            // class below CLASSES.
            Some(slot) if size <= SMALL_MAX && align <= 16 => unsafe { pop(&CACHES[slot], class_of(size)) },
            _ => ptr::null_mut(),
        }
    }

    /// The checks of a free (the block's tag) and an array push into the calling thread's cache,
    /// when the block checks out and its class has room. Everything else takes the slow path,
    /// which reports a refused free or moves half the class to the depot.
    #[inline(always)]
    unsafe fn try_free_inline(&self, home: Option<usize>, ptr: *mut u8, size: usize, align: usize) -> bool {
        let Some(slot) = home else { return false };
        if size > SMALL_MAX || align > 16 {
            return false;
        }
        let class = class_of(size);
        match validate(ptr, class) {
            // SAFETY: the thread owns its home slot's cache; `class < CLASSES`. A block another
            // free claimed meanwhile goes to the slow path, which refuses it.
            Ok(tag) => (unsafe { file(&CACHES[slot], class, ptr, tag) }) == Filed::Yes,
            Err(_) => false,
        }
    }

    /// A resize within the block's class keeps the block (it has its class's full size); one
    /// to another small class moves it through the calling thread's cache (a pop, a copy, a
    /// push), when the old block checks out as for a free, the new class has a block and the
    /// old class room. Everything else takes the slow path.
    #[inline(always)]
    unsafe fn try_realloc_inline(
        &self,
        home: Option<usize>,
        ptr: *mut u8,
        old_size: usize,
        new_size: usize,
        align: usize,
    ) -> *mut u8 {
        let Some(slot) = home else { return core::ptr::null_mut() };
        if old_size > SMALL_MAX || new_size > SMALL_MAX || align > 16 {
            return core::ptr::null_mut();
        }
        let (from, to) = (class_of(old_size), class_of(new_size));
        let Ok(tag) = validate(ptr, from) else { return core::ptr::null_mut() };
        if from == to {
            return ptr;
        }
        let cache = &CACHES[slot];
        // SAFETY: the thread owns its home slot's cache; both classes are below CLASSES. The
        // blocks are disjoint: `new` was free, `ptr` live.
        unsafe {
            if !has_room(cache, from) {
                return core::ptr::null_mut();
            }
            let new = pop(cache, to);
            if new.is_null() {
                return core::ptr::null_mut();
            }
            core::ptr::copy_nonoverlapping(ptr, new, old_size.min(new_size));
            if file(cache, from, ptr, tag) == Filed::Yes {
                return new;
            }
            // Another thread's free claimed the old block meanwhile (a double free racing
            // with this resize): the new block goes back (its class has the room it left),
            // and the slow path refuses the resize.
            let _ = file(cache, to, new, (block_tag(new), live_tag(to)));
            core::ptr::null_mut()
        }
    }

    fn alloc(&self, size: usize, align: usize, options: AllocOptions) -> *mut u8 {
        if !is_small(size, align) {
            let block = System.alloc(size, align, options);
            if !block.is_null() && !large::insert(block, size, align, false) {
                // No memory for the table's entry: the block could not be checked on its free.
                // SAFETY: just allocated with these.
                unsafe { System.free(block, size, align) };
                return ptr::null_mut();
            }
            return block;
        }
        let class = class_for(size, align);
        let block = alloc_small(class);
        if !block.is_null() && class != class_of(size) {
            // Its free may name the size without the alignment (`class_named`).
            // SAFETY: a live block of the heap, the caller's.
            unsafe { block_tag(block) }.store(aligned_tag(class), Relaxed);
        }
        if !block.is_null() && options.contains(AllocOptions::ZERO) {
            // SAFETY: a block of at least `size` bytes, the caller's.
            unsafe { ptr::write_bytes(block, 0, size) };
        }
        block
    }

    unsafe fn free(&self, ptr: *mut u8, size: usize, align: usize) {
        // SAFETY: forwarded contract.
        unsafe { self.release(ptr, size, align) };
    }

    /// Refuses (and reports) a small block that is no live block of the class its size names,
    /// and a large one that is no live large block of the size named.
    unsafe fn release(&self, ptr: *mut u8, size: usize, align: usize) -> bool {
        if is_small(size, align) {
            return free_small(ptr, class_named(ptr, size, align), size);
        }
        if segments::in_segment(ptr) {
            // A small block freed naming a large size: the C library must never see it.
            refuse(Refusal::WrongSize);
            return false;
        }
        free_large(ptr, size)
    }

    unsafe fn realloc(
        &self,
        ptr: *mut u8,
        old_size: usize,
        new_size: usize,
        align: usize,
        options: AllocOptions,
    ) -> *mut u8 {
        let zero_tail = |block: *mut u8| {
            if !block.is_null() && new_size > old_size && options.contains(AllocOptions::ZERO) {
                // SAFETY: the block holds `new_size` bytes; the tail past `old_size` is ours.
                unsafe { ptr::write_bytes(block.add(old_size), 0, new_size - old_size) };
            }
            block
        };
        if is_small(old_size, align) {
            let class = class_named(ptr, old_size, align);
            match validate(ptr, class) {
                Ok(_) => {}
                // Perhaps a large block aligned above the classes, resized naming a smaller
                // alignment: the large blocks' table decides.
                Err(Refusal::Foreign) => {
                    // SAFETY: forwarded contract.
                    return unsafe { realloc_large(ptr, old_size, new_size, align, options) };
                }
                Err(why) => {
                    refuse(why);
                    crate::policy::refusal::refuse_misuse();
                    return ptr::null_mut();
                }
            }
            if is_small(new_size, align) && class_for(new_size, align) == class {
                // The block already has its class's full size.
                return zero_tail(ptr);
            }
        } else if segments::in_segment(ptr) {
            // A small block resized naming a large old size: the C library must never see it.
            refuse(Refusal::WrongSize);
            crate::policy::refusal::refuse_misuse();
            return ptr::null_mut();
        } else {
            // SAFETY: forwarded contract.
            return unsafe { realloc_large(ptr, old_size, new_size, align, options) };
        }
        let new = self.alloc(new_size, align, options.without(AllocOptions::ZERO));
        if !new.is_null() {
            // SAFETY: both live and disjoint; the old one is freed once copied.
            unsafe {
                ptr::copy_nonoverlapping(ptr, new, old_size.min(new_size));
                self.free(ptr, old_size, align);
            }
        }
        zero_tail(new)
    }

    /// What the process's heap holds: the spans its classes hold (shared by every heap
    /// allocator; spans given back to the OS excluded) and the large blocks; at least
    /// `bytes_allocated`.
    fn bytes_reserved(&self, bytes_allocated: usize) -> usize {
        bytes_allocated.max(segments::span_bytes() + large::bytes())
    }
}

/// How long a class's free spans stay before they can go back to the OS (mimalloc's purge
/// delay), counted from when the class last took a fresh span and from when it first had free
/// spans: a class that is growing, or that frees and soon allocates again, will want them.
pub const PURGE_DELAY_MS: u64 = depot::PURGE_DELAY_MS;

/// Bytes of spans the heap's classes hold now (spans given back excluded), for tests and
/// reports: what `bytes_reserved` counts of small blocks.
pub fn span_bytes() -> usize {
    segments::span_bytes()
}

/// Free blocks held by the depot (all classes), for tests and reports.
pub fn depot_len() -> usize {
    depot::len()
}

/// The allocator kind the heap's [`InvariantError`]s name.
const HEAP: &str = "heap";

/// Verifies the calling thread's cache against the module's equations (nothing for a thread
/// without a home slot, whose cache is the shared one).
pub fn check_thread_cache() -> Result<(), InvariantError> {
    match home_slot() {
        Some(slot) => check_cache(&CACHES[slot]),
        None => Ok(()),
    }
}

/// Verifies the equations of the large blocks' table (`heap/large.rs`): each shard's, and the
/// large blocks' bytes against the shards' sums. Takes every shard's lock; allocates nothing.
pub fn check_large() -> Result<(), InvariantError> {
    large::check()
}

/// Verifies the depot's equations (`heap/depot.rs`): each class's lists hold spans of the
/// class, in `full` exactly those with every block in the depot; each span's depot count is its
/// bitmap's; every block the bitmaps name starts a carved block of the class with the free tag;
/// the class's `len` and `n_full` are the sums. Takes each class's lock in turn; allocates
/// nothing.
pub fn check_depot() -> Result<(), InvariantError> {
    for (class, &per_span) in BLOCKS_PER_SPAN.iter().enumerate() {
        let size = SIZES[class];
        let (mut blocks, mut fulls, mut result) = (0, 0, Ok(()));
        // Read under the class's lock: the depot's state of its spans changes only under it.
        let (len, n_full) = depot::for_each_span(class, |span, bits, full| {
            if result.is_err() {
                return;
            }
            let in_span: usize = bits.iter().map(|w| w.load(Relaxed).count_ones() as usize).sum();
            // SAFETY: a span the depot lists: inside a heap segment.
            let count = unsafe { in_depot(span) }.load(Relaxed) as usize;
            let carved = carved(span);
            let mut ok = class_of_span(span) == Some(class)
                && count == in_span
                && (full == (count == per_span))
                && count > 0;
            for (w, word) in bits.iter().enumerate() {
                let mut b = word.load(Relaxed);
                while b != 0 && ok {
                    let offset = (w * 64 + b.trailing_zeros() as usize) * 16;
                    b &= b - 1;
                    // SAFETY: inside the span (a bit per granule of it).
                    let block = unsafe { span.add(offset) };
                    ok = offset.is_multiple_of(size)
                        && offset / size < carved
                        && tag_of(block).is_some_and(|tag| tag.load(Relaxed) == free_tag(class));
                }
            }
            result = ensure(
                ok,
                HEAP,
                "in_depot(s) == popcount(bits(s)); full <=> in_depot(s) == B; a bit names a carved free block",
            );
            blocks += count;
            fulls += usize::from(full);
        });
        result?;
        ensure(len == blocks && n_full == fulls, HEAP, "len == sum of in_depot(s); n_full == |full|")?;
    }
    Ok(())
}

/// Verifies one cache (its owner calls this).
fn check_cache(cache: &Cache) -> Result<(), InvariantError> {
    for (class, &size) in SIZES.iter().enumerate() {
        let n = cache.count[class].load(Relaxed) as usize;
        ensure(n <= depth(class), HEAP, "count[k] <= depth(k)")?;
        let copied = cache.depth[0].load(Relaxed) != 0;
        ensure(
            cache.depth[class].load(Relaxed) as usize == if copied { depth(class) } else { 0 },
            HEAP,
            "depth[k] == depth(k) for all k, or 0 for all k",
        )?;
        let (cursor, end) = (cache.cursor[class].load(Relaxed), cache.end[class].load(Relaxed));
        if n == 0 && cursor.is_null() && end.is_null() {
            // A class this cache never used (most of them): nothing more to check.
            continue;
        }
        let mut held = [ptr::null_mut::<u8>(); DEPTH];
        for (h, b) in held.iter_mut().zip(cache.row(class)).take(n) {
            *h = b.load(Relaxed);
            ensure(
                tag_of(*h).is_some_and(|tag| tag.load(Relaxed) == free_tag(class)),
                HEAP,
                "tag(blocks[k][i]) == free_tag(k)",
            )?;
        }
        let held = &mut held[..n];
        held.sort_unstable();
        ensure(held.windows(2).all(|w| w[0] != w[1]), HEAP, "blocks[k][..count[k]] are distinct")?;
        if cursor.is_null() {
            ensure(end.is_null(), HEAP, "cursor[k] == end[k] == null, or both set")?;
        } else {
            ensure(cursor <= end, HEAP, "cursor[k] <= end[k]")?;
            let span = end.addr() - SPAN;
            ensure(
                span.is_multiple_of(SPAN) && cursor.addr() >= span,
                HEAP,
                "cursor[k], end[k] in one span",
            )?;
            let start = end.wrapping_sub(SPAN);
            ensure(
                end.addr() - cursor.addr() < size
                    || (class_of_span(start) == Some(class) && cursor.addr() == span + carved(start) * size),
                HEAP,
                "end[k] - cursor[k] < SIZES[k], or cursor[k] == span + carved(span) * SIZES[k] in a span of class k",
            )?;
        }
    }
    Ok(())
}

/// Verifies the equations of a live heap block of `size` bytes at `align` (0 = natural): a
/// small one is tagged as a live block of its class, a large one is in the large blocks' table
/// with its size.
///
/// # Safety
/// `ptr` must be a live block of the heap allocated (or last resized) with `size` and `align`.
pub unsafe fn check_block(ptr: *mut u8, size: usize, align: usize) -> Result<(), InvariantError> {
    ensure(
        ptr.addr().is_multiple_of(crate::raw::resolve_align(size, align).max(1)),
        HEAP,
        "block % align == 0",
    )?;
    if is_small(size, align) {
        let class = class_for(size, align);
        ensure(
            tag_of(ptr).is_some_and(|tag| {
                let t = tag.load(Relaxed);
                t == live_tag(class) || (class > 0 && t == aligned_tag(class))
            }),
            HEAP,
            "tag(block) == live_tag(class) or aligned_tag(class) for a live small block",
        )?;
        ensure(SIZES[class] >= size, HEAP, "SIZES[class] >= size")?;
    } else {
        ensure(
            large::lookup(ptr).is_some_and(|block| block.size == size),
            HEAP,
            "table(block).size == size for a live large block",
        )?;
    }
    Ok(())
}

/// Verifies that `allocator` is a heap allocator and the invariants of its stats.
///
/// # Safety
/// `allocator` must be null or valid (and live if it is a library allocator).
pub unsafe fn check_raw(allocator: *mut GooAllocator) -> Result<(), InvariantError> {
    // SAFETY: forwarded contract.
    unsafe { Managed::<Heap>::check_raw(allocator) }
}

#[cfg(test)]
mod tests {
    use super::segments::{class_of_block, span_of};
    use super::*;

    fn alloc(size: usize, align: usize) -> *mut u8 {
        let p = Heap.alloc(size, align, AllocOptions::DEFAULT);
        assert!(!p.is_null());
        // SAFETY: just allocated with these.
        unsafe { check_block(p, size, align) }.unwrap();
        check_thread_cache().unwrap();
        p
    }

    fn free(p: *mut u8, size: usize, align: usize) {
        // SAFETY: the tests free only their live blocks (or, on purpose, freed ones).
        unsafe { Heap.free(p, size, align) };
        check_thread_cache().unwrap();
    }

    /// Held by the tests that count refusals: the count is the process's, and tests run in
    /// parallel.
    fn counting_refusals() -> std::sync::MutexGuard<'static, ()> {
        static LOCK: Mutex<()> = Mutex::new(());
        LOCK.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A write through a freed pointer cannot reach the heap's lists: the next allocations are
    /// distinct blocks.
    #[test]
    fn a_write_after_free_does_not_redirect_the_heap() {
        let p = alloc(64, 0);
        free(p, 64, 0);
        // SAFETY: the bug under test: a write after the free (the memory stays mapped).
        unsafe { p.cast::<usize>().write(0xdead_beef) };
        let a = alloc(64, 0);
        let b = alloc(64, 0);
        assert_ne!(a, b);
        free(a, 64, 0);
        free(b, 64, 0);
    }

    /// A refill hands its blocks out in ascending address order: blocks allocated one after
    /// another lie one after another.
    #[test]
    fn a_refill_hands_blocks_out_in_ascending_order() {
        // A class no other test here uses: 176-byte blocks, 23 to a carve.
        let blocks: Vec<_> = (0..20).map(|_| alloc(170, 0)).collect();
        assert!(blocks.windows(2).all(|w| w[0] < w[1]), "ascending: {blocks:?}");
        for p in blocks {
            free(p, 170, 0);
        }
    }

    /// The call-free resize keeps a block within its class and moves one to another class
    /// through the cache, its contents kept; it declines, changing nothing, a block that is not
    /// live or is of another class, a size past the classes, and a move whose old class has no
    /// room in the cache.
    #[test]
    fn the_call_free_resize_keeps_or_moves_the_block() {
        // Classes no other test here uses: 2,304 and 4,608-byte blocks.
        let (small, large) = (2300, 4600);
        let p = alloc(small, 0);
        let home = home_slot();
        assert!(home.is_some(), "a test thread owns its home slot");
        // The larger class has a block in the cache to move into.
        free(alloc(large, 0), large, 0);
        // SAFETY: `p` is a live block of `small` bytes, then as each step says.
        unsafe {
            p.write_bytes(7, small);
            assert_eq!(Heap.try_realloc_inline(home, p, small, small - 100, 0), p, "the same class");
            let q = Heap.try_realloc_inline(home, p, small - 100, large, 0);
            assert!(!q.is_null() && q != p, "moved to the larger class");
            assert!(core::slice::from_raw_parts(q, small - 100).iter().all(|&b| b == 7), "contents kept");
            check_block(q, large, 0).unwrap();
            check_thread_cache().unwrap();
            assert!(Heap.try_realloc_inline(home, p, small - 100, 64, 0).is_null(), "freed");
            assert!(Heap.try_realloc_inline(home, q, 100, 64, 0).is_null(), "another class");
            assert!(Heap.try_realloc_inline(home, q, large, SMALL_MAX + 1, 0).is_null(), "past the classes");
            // The larger class's cache full: a move out of it declines (no room for q).
            let class = class_of(large);
            let cache = &CACHES[home.unwrap()];
            let spare: Vec<_> = (0..2 * depth(class)).map(|_| alloc(large, 0)).collect();
            let mut spare = spare.into_iter();
            while cache.count[class].load(Relaxed) < cache.depth[class].load(Relaxed) {
                free(spare.next().unwrap(), large, 0);
            }
            assert!(Heap.try_realloc_inline(home, q, large, small, 0).is_null(), "no room for q");
            check_block(q, large, 0).unwrap();
            check_thread_cache().unwrap();
            free(q, large, 0);
            for b in spare {
                free(b, large, 0);
            }
        }
    }

    /// A double free, a free of a foreign or interior pointer, and a free naming another class
    /// are refused (counted), and no block is handed out twice.
    #[test]
    fn bad_frees_are_refused() {
        let _counting = counting_refusals();
        let p = alloc(48, 0);
        let before = refused_frees();
        free(p, 48, 0);
        // SAFETY: `p` was freed: the fast path declines it.
        assert!(!unsafe { Heap.try_free_inline(home_slot(), p, 48, 0) });
        free(p, 48, 0);
        assert_eq!(refused_frees(), before + 1);
        let a = alloc(48, 0);
        let b = alloc(48, 0);
        assert_ne!(a, b);
        let mut local = [0u64; 4];
        // SAFETY: each is refused before anything is written.
        unsafe {
            assert!(!Heap.release(local.as_mut_ptr().cast(), 32, 0), "foreign");
            assert!(!Heap.release(a.add(16), 32, 0), "interior");
            assert!(!Heap.release(a.add(8), 40, 0), "interior, inside the block's first granule");
            assert!(!Heap.release(a, 1000, 0), "another class");
            assert!(!Heap.release(a, 1 << 20, 0), "a large size: never the C library's to free");
            assert!(Heap.realloc(a, 1 << 20, 10, 0, AllocOptions::DEFAULT).is_null(), "a large old size");
            // The segment's metadata spans: the tag map and the header.
            let segment = a.map_addr(|x| x & !(segments::SEGMENT - 1));
            for offset in [0, 16, 64, segments::META_SPANS * SPAN - 16] {
                assert!(!Heap.release(segment.wrapping_add(offset), 16, 0), "metadata at {offset}");
            }
        }
        assert_eq!(refused_frees(), before + 11);
        // A position past a span's last block, and one not carved yet: never handed out.
        let class = class_of(48);
        let tail = span_of(a).wrapping_add(BLOCKS_PER_SPAN[class] * 48);
        let uncarved = CACHES[home_slot().unwrap()].cursor[class].load(Relaxed);
        // SAFETY: both are refused before anything is written.
        unsafe {
            assert!(!Heap.release(tail, 48, 0), "a span's tail");
            assert!(!uncarved.is_null() && !Heap.release(uncarved, 48, 0), "not carved yet");
        }
        assert_eq!(refused_frees(), before + 13);
        let fresh = alloc(48, 0);
        assert!(fresh != a && fresh != b);
        free(fresh, 48, 0);
        free(a, 48, 0);
        free(b, 48, 0);
        // A block allocated at 64-byte alignment and freed naming none goes back to its class.
        let c = alloc(100, 64);
        free(c, 100, 0);
        assert_eq!(refused_frees(), before + 13);
    }

    #[test]
    fn aligned_zeroed_and_resized_blocks_keep_their_equations() {
        for align in [32, 64, 4096, 8192] {
            let p = Heap.alloc(100, align, AllocOptions::ZERO);
            // SAFETY: a live zeroed block of 100 bytes.
            unsafe {
                check_block(p, 100, align).unwrap();
                assert!(core::slice::from_raw_parts(p, 100).iter().all(|&b| b == 0));
                p.write_bytes(9, 100);
                let q = Heap.realloc(p, 100, 5000, align, AllocOptions::ZERO);
                check_block(q, 5000, align).unwrap();
                let s = core::slice::from_raw_parts(q, 5000);
                assert!(s[..100].iter().all(|&b| b == 9) && s[100..].iter().all(|&b| b == 0));
                Heap.free(q, 5000, align);
            }
        }
        let p = alloc(10, 0);
        // SAFETY: live, resized, freed with the sizes it has.
        unsafe {
            p.write_bytes(3, 10);
            let q = Heap.realloc(p, 10, 100_000, 0, AllocOptions::DEFAULT);
            check_block(q, 100_000, 0).unwrap();
            assert!(core::slice::from_raw_parts(q, 10).iter().all(|&b| b == 3));
            let r = Heap.realloc(q, 100_000, 7, 0, AllocOptions::DEFAULT);
            check_block(r, 7, 0).unwrap();
            Heap.free(r, 7, 0);
        }
        check_thread_cache().unwrap();
    }

    /// More frees than a cache holds go to the depot, and come back from it.
    #[test]
    fn a_sweep_goes_through_the_depot() {
        let n = if cfg!(miri) { 3 * depth(class_of(200)) } else { 20 * depth(class_of(200)) };
        let blocks: Vec<_> = (0..n).map(|_| alloc(200, 0)).collect();
        for &b in &blocks {
            free(b, 200, 0);
        }
        let again: Vec<_> = (0..n).map(|_| alloc(200, 0)).collect();
        let mut sorted = again.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), n, "no block twice");
        for b in again {
            free(b, 200, 0);
        }
        check_depot().unwrap();
    }

    /// The depot hands out the blocks of spans with live blocks before those of spans whose
    /// blocks are all in it, which stay whole to go back to the OS.
    #[test]
    fn the_depot_serves_spans_with_live_blocks_first() {
        // A class no other test here uses: 13,312-byte blocks, 4 a span.
        let size = 13_000;
        let class = class_of(size);
        let per_span = BLOCKS_PER_SPAN[class];
        let mut blocks: Vec<_> = (0..4 * per_span).map(|_| alloc(size, 0)).collect();
        blocks.sort_unstable();
        // Two spans whose blocks the test holds all of (carving goes span by span).
        let whole: Vec<&[*mut u8]> = blocks
            .chunk_by(|a, b| span_of(*a) == span_of(*b))
            .filter(|group| group.len() == per_span)
            .take(2)
            .collect();
        assert_eq!(whole.len(), 2);
        let (free_span, partial_span) = (whole[0], whole[1]);
        // Straight into the depot (their tags stay live: they go back to the test below).
        depot::put(class, free_span);
        depot::put(class, &partial_span[..per_span / 2]);
        let mut out = vec![ptr::null_mut(); per_span / 2 + 1];
        assert_eq!(depot::take(class, &mut out), out.len());
        let (from_partial, rest) = out.split_at(per_span / 2);
        assert!(from_partial.iter().all(|&b| span_of(b) == span_of(partial_span[0])));
        assert_eq!(span_of(rest[0]), span_of(free_span[0]), "then the span with no live block");
        let mut left = vec![ptr::null_mut(); per_span];
        assert_eq!(depot::take(class, &mut left), per_span - 1, "the depot is empty after");
        for b in blocks {
            free(b, size, 0);
        }
        check_depot().unwrap();
    }

    /// `collect` moves the thread's cached blocks to the depot and gives back every span whose
    /// blocks are all free, the reserve and the purge delay notwithstanding.
    #[test]
    fn collect_gives_back_every_free_span() {
        // A class no other test here uses: 15,360-byte blocks, 4 a span.
        let size = 15_000;
        let class = class_of(size);
        let spans = if cfg!(miri) { 3 } else { 10 };
        let blocks: Vec<_> = (0..spans * BLOCKS_PER_SPAN[class]).map(|_| alloc(size, 0)).collect();
        for &b in &blocks {
            free(b, size, 0);
        }
        // The cache holds some of them, and the depot keeps its reserve (and waits its delay).
        let (_, full) = depot::for_each_span(class, |_, _, _| ());
        assert!(full > 0);
        let given = collect();
        assert!(given >= full * SPAN, "{given} bytes given back, {full} spans were free");
        assert_eq!(depot::for_each_span(class, |_, _, _| ()), (0, 0), "no block of the class left");
        check_depot().unwrap();
        check_thread_cache().unwrap();
        // A span the thread is carving goes back too once its carved blocks are all free.
        let b = alloc(size, 0);
        let cache = &CACHES[home_slot().unwrap()];
        assert!(!cache.cursor[class].load(Relaxed).is_null(), "a fresh span is being carved");
        free(b, size, 0);
        assert!(collect() >= SPAN);
        assert!(cache.cursor[class].load(Relaxed).is_null(), "the carving span went back");
        check_depot().unwrap();
        check_thread_cache().unwrap();
    }

    /// A carve takes at most a page's worth of blocks, one when a block is larger: the program
    /// may never ask for the rest of a batch.
    #[test]
    fn a_carve_takes_a_page_at_most() {
        // A class no other test here uses: 2,560-byte blocks, one to a carve.
        let p = alloc(2500, 0);
        assert_eq!(carved(p), 1, "one block of the fresh span carved");
        let class = class_of(2500);
        let cache = &CACHES[home_slot().expect("a test thread owns its home slot")];
        assert_eq!(cache.count[class].load(Relaxed), 0, "none carved into the cache");
        free(p, 2500, 0);
    }

    /// A class that needs a span, with none free, takes the free spans of another class before
    /// the heap maps more memory, purge delay or not.
    #[test]
    fn free_spans_of_one_class_serve_another() {
        // Two classes no other test here uses: 7,168-byte blocks (9 a span) and 11,264-byte
        // blocks (5 a span).
        let (a_size, b_size) = (7000, 11_000);
        let a_spans = if cfg!(miri) { 5 } else { 40 };
        let a: Vec<_> = (0..a_spans * BLOCKS_PER_SPAN[class_of(a_size)]).map(|_| alloc(a_size, 0)).collect();
        // Freed at once: the class grew just now, so its purge delay keeps its spans.
        for &p in &a {
            free(p, a_size, 0);
        }
        let mut a_span_list: Vec<_> = a.iter().map(|&p| span_of(p)).collect();
        a_span_list.dedup();
        // More spans than other tests can have given back meanwhile (at most 40), so that the
        // list of free spans runs dry.
        let b_spans = if cfg!(miri) { 12 } else { 100 };
        let b: Vec<_> = (0..b_spans * BLOCKS_PER_SPAN[class_of(b_size)]).map(|_| alloc(b_size, 0)).collect();
        let b_class = class_of(b_size);
        let taken = a_span_list.iter().filter(|&&span| class_of_span(span) == Some(b_class)).count();
        assert!(taken > 0, "none of {} spans of the freed class serves the other", a_span_list.len());
        for &p in &b {
            free(p, b_size, 0);
        }
        check_depot().unwrap();
    }

    /// Spans whose blocks are all free go back to the OS (all but the depot's reserve and what
    /// the cache holds; the purge delay is the depot's policy, not waited for here: a loaded
    /// machine stretches any sleep), a free naming a block of one is refused, and the spans
    /// serve again.
    #[test]
    fn free_spans_go_back_and_serve_again() {
        // A class no other test here uses (9,216-byte blocks, 7 a span; under Miri, where each
        // operation is slow, 16 KiB blocks, 4 a span).
        let size = if cfg!(miri) { 16_000 } else { 9000 };
        let class = class_of(size);
        let spans = if cfg!(miri) { 8 } else { 40 };
        let n = spans * BLOCKS_PER_SPAN[class];
        let blocks: Vec<_> = (0..n).map(|_| alloc(size, 0)).collect();
        for &b in &blocks {
            free(b, size, 0);
        }
        depot::purge_now(class);
        check_depot().unwrap();
        let mut given_back: Vec<_> =
            blocks.iter().filter(|&&b| class_of_block(b).is_none()).map(|&b| span_of(b)).collect();
        given_back.dedup();
        // What stays: the spans of the cache's blocks (at most depth(class), spread over
        // depth / BLOCKS_PER_SPAN + 2 spans) and the reserve.
        let kept = depth(class) / BLOCKS_PER_SPAN[class] + 2 + depot::RETAIN;
        assert!(given_back.len() + kept >= spans, "{} of {spans} spans given back", given_back.len());
        let _counting = counting_refusals();
        let before = refused_frees();
        let stale = blocks.iter().copied().find(|&b| class_of_block(b).is_none()).unwrap();
        free(stale, size, 0);
        assert_eq!(refused_frees(), before + 1, "a block of a span given back is refused");
        let again: Vec<_> = (0..n).map(|_| alloc(size, 0)).collect();
        let mut sorted = again.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), n, "no block twice");
        for b in again {
            free(b, size, 0);
        }
        check_depot().unwrap();
    }

    /// A pointer for another thread (the tests hand blocks between threads).
    struct Sent(*mut u8);
    // SAFETY: the blocks are the heap's, usable from any thread; one thread owns each at a time.
    unsafe impl Send for Sent {}

    /// A free or realloc of a large block naming another size than its own, or of a pointer
    /// that is no live large block (the inside of one, a static, stack or foreign `malloc`
    /// buffer, a block freed already), is refused: the C library never sees it, the block stays
    /// the program's, and the stats stay exact.
    #[test]
    fn bad_large_frees_are_refused() {
        use crate::dispatch;
        let _counting = counting_refusals();
        let heap = crate::Allocator::new(Heap);
        let a = heap.as_ptr();
        let size = 100_000;
        static BUF: [u64; 8] = [0; 8];
        let mut local = [0u8; 64];
        let before = refused_frees();
        // SAFETY: every bad call is refused before anything is touched; the live blocks are
        // freed with their sizes.
        unsafe {
            let p = dispatch::alloc(a, size, 0, AllocOptions::DEFAULT);
            assert!(!p.is_null());
            check_block(p, size, 0).unwrap();
            p.write_bytes(5, size);
            dispatch::free(a, p, 5_000_000, 0);
            dispatch::free(a, p, size - 1, 0);
            dispatch::free(a, p, size + 1, 0);
            dispatch::free(a, p, 1000, 0);
            assert_eq!(refused_frees(), before + 4, "wrong sizes");
            let s = heap.stats();
            assert_eq!((s.allocation_count, s.bytes_allocated, s.total_frees), (1, size, 0));
            assert!(s.bytes_reserved >= size);
            check_block(p, size, 0).unwrap();
            let foreign = libc::malloc(size).cast::<u8>();
            assert!(!foreign.is_null());
            for bad in
                [p.add(16), p.add(size / 2), BUF.as_ptr().cast_mut().cast(), local.as_mut_ptr(), foreign]
            {
                dispatch::free(a, bad, size, 0);
            }
            libc::free(foreign.cast());
            assert_eq!(refused_frees(), before + 9, "not live large blocks");
            // Resizes naming a wrong old size, or of the inside of the block: null, untouched.
            let huge = if cfg!(miri) { 1 << 20 } else { 64 << 20 };
            assert!(dispatch::realloc(a, p, huge, 2 * huge, 0, AllocOptions::DEFAULT).is_null());
            assert!(dispatch::realloc(a, p, size + 16, 20, 0, AllocOptions::DEFAULT).is_null());
            assert!(dispatch::realloc(a, p.add(64), size, 2 * size, 0, AllocOptions::DEFAULT).is_null());
            assert_eq!(refused_frees(), before + 12, "bad resizes");
            assert!([0, size / 2, size - 1].iter().all(|&i| *p.add(i) == 5));
            check_block(p, size, 0).unwrap();
            let s = heap.stats();
            assert_eq!((s.allocation_count, s.bytes_allocated, s.total_frees), (1, size, 0));
            // A double free.
            dispatch::free(a, p, size, 0);
            dispatch::free(a, p, size, 0);
            assert_eq!(refused_frees(), before + 13, "a double free");
            let s = heap.stats();
            assert_eq!((s.allocation_count, s.bytes_allocated, s.total_frees), (0, 0, 1));
        }
        check_large().unwrap();
    }

    /// Large blocks resize to and from the classes and between each other, aligned or not
    /// (above the classes' alignment too), contents and zeroing kept; a block aligned above
    /// the classes is taken back when freed without its alignment; nothing is refused.
    #[test]
    fn large_blocks_resize_and_align() {
        use crate::dispatch;
        let _counting = counting_refusals();
        let before = refused_frees();
        let heap = crate::Allocator::new(Heap);
        let a = heap.as_ptr();
        let zero = AllocOptions::ZERO;
        // SAFETY: live blocks, resized and freed with the sizes and alignments they have.
        unsafe {
            let p = dispatch::alloc(a, 100, 0, AllocOptions::DEFAULT);
            p.write_bytes(1, 100);
            let mut block = p;
            let mut old = 100;
            for new in [50_000, 200_000, 20_000, 16_385, 300] {
                block = dispatch::realloc(a, block, old, new, 0, zero);
                assert!(!block.is_null());
                check_block(block, new, 0).unwrap();
                assert!(*block == 1 && *block.add(99) == 1, "{old} -> {new}");
                if new > old {
                    assert!(*block.add(old) == 0 && *block.add(new - 1) == 0, "{old} -> {new}");
                }
                old = new;
            }
            dispatch::free(a, block, old, 0);
            for align in [4096, 8192, 65536] {
                for size in [100, 20_000, 100_000] {
                    let p = dispatch::alloc(a, size, align, zero);
                    assert!(!p.is_null() && p.addr().is_multiple_of(align));
                    check_block(p, size, align).unwrap();
                    assert!(*p == 0 && *p.add(size - 1) == 0);
                    p.write_bytes(7, size);
                    let q = dispatch::realloc(a, p, size, 2 * size, align, zero);
                    assert!(!q.is_null() && q.addr().is_multiple_of(align), "{size} at {align}");
                    check_block(q, 2 * size, align).unwrap();
                    assert!(*q.add(size - 1) == 7 && *q.add(size) == 0);
                    // Freed naming no alignment: taken back.
                    dispatch::free(a, q, 2 * size, 0);
                }
            }
        }
        let s = heap.stats();
        assert_eq!((s.allocation_count, s.bytes_allocated), (0, 0));
        assert_eq!(refused_frees(), before, "nothing refused");
        check_large().unwrap();
        check_thread_cache().unwrap();
    }

    /// Two threads allocate large blocks at once, and each frees the other's: the totals stay
    /// exact and the table consistent.
    #[test]
    fn large_blocks_across_threads_keep_exact_totals() {
        let n = if cfg!(miri) { 12 } else { 1000 };
        let heap = crate::Allocator::new(Heap);
        let size_of = |k: usize, i: usize| SMALL_MAX + 1 + (i * 7919 + k * 104_729) % 150_000;
        let allocated: Vec<Vec<Sent>> = std::thread::scope(|s| {
            let heap = &heap;
            let workers: Vec<_> = (0..2)
                .map(|k| {
                    s.spawn(move || {
                        (0..n)
                            .map(|i| {
                                let size = size_of(k, i);
                                let p = heap.handle().allocate(
                                    core::alloc::Layout::from_size_align(size, 1).unwrap(),
                                    AllocOptions::DEFAULT,
                                );
                                let p = p.unwrap().as_ptr();
                                // SAFETY: a fresh block of `size` bytes.
                                unsafe { p.write(k as u8) };
                                Sent(p)
                            })
                            .collect()
                    })
                })
                .collect();
            workers.into_iter().map(|w| w.join().unwrap()).collect()
        });
        let total: usize = (0..2).flat_map(|k| (0..n).map(move |i| size_of(k, i))).sum();
        let s = heap.stats();
        assert_eq!((s.allocation_count, s.bytes_allocated), (2 * n, total));
        assert!(s.bytes_reserved >= total);
        check_large().unwrap();
        std::thread::scope(|s| {
            for (k, blocks) in allocated.into_iter().enumerate() {
                let heap = &heap;
                // Thread `1 - k` frees thread `k`'s blocks.
                s.spawn(move || {
                    for (i, Sent(p)) in blocks.into_iter().enumerate() {
                        let size = size_of(k, i);
                        // SAFETY: a live block of `size` bytes at alignment 1, written by its
                        // allocating thread before the join.
                        unsafe {
                            assert_eq!(*p, k as u8);
                            check_block(p, size, 0).unwrap();
                            heap.handle().deallocate(
                                NonNull::new(p).unwrap(),
                                core::alloc::Layout::from_size_align(size, 1).unwrap(),
                            );
                        }
                    }
                });
            }
        });
        let s = heap.stats();
        assert_eq!((s.allocation_count, s.bytes_allocated, s.total_frees), (0, 0, 2 * n));
        check_large().unwrap();
    }
}
