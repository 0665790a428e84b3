//! The shared pool: fixed-size objects that many threads allocate and free at once.
//!
//! Each thread has a lane (`policy::sharing`) with two free lists: `local`, which only the
//! lane's thread touches (a pop and a push, no locked instruction), and `remote`, where other
//! threads push the lane's objects they free (a compare-and-swap on a cache line of its own).
//! Every block belongs to the lane that grew it, and says so in its header; a freed object goes
//! back to its block's lane: onto the freeing thread's local list when the lane is its own,
//! else onto the owner's remote list, as mimalloc's thread-free lists do. A lane whose local
//! list is empty takes its whole remote list with one swap (several takers each get what they
//! swapped: nothing is popped one by one, so there is no ABA), and grows by a block under the
//! pool's lock when both are empty. So objects flow back to the thread that allocates them and
//! a producer-consumer pair does not grow the pool without bound.
//!
//! Blocks are aligned to their full size, a power of two, so an object's block (and its
//! owner) is the object's address with the low bits cleared. A free is checked cheaply, as an
//! unchecked pool's: a pointer outside the pool's address range, or not on an object boundary
//! of its block, is refused (reported, counted as misuse, nothing else changed). There is no
//! checked mode (a bitmap shared by threads would cost a locked instruction per operation).
//!
//! At the cap (`max_objects`) a lane that finds no free object of its own takes another lane's
//! remote list under the lock, else half of another lane's local list with every lane frozen
//! (a first thread's block may hold the whole cap on its local list). A lane keeps its lists
//! when its thread exits: the next thread to take the slot allocates from them (and their frees
//! from other threads wait on the remote list until then). Reset and the counts need every lane
//! still, as in the shared arena: they are refused (with a message) while another thread is
//! inside.

use core::mem::{offset_of, size_of};
use core::ptr::{self, NonNull};
use core::sync::atomic::{AtomicPtr, AtomicUsize, Ordering::*};
use std::io::Write;

use crate::allocators::chunk_list::PlainChunks;
use crate::allocators::free_link::LinkKey;
use crate::allocators::pool::{resize_within, ObjectLayout, PoolConfig, PoolStats};
use crate::policy::backend::{Backend, Kind, Managed};
use crate::policy::front;
use crate::policy::invariant::{debug_check, ensure, InvariantError};
use crate::policy::sharing::{Lanes, ReentryLock, LANES};
use crate::policy::thread_slot::{current_slot, SLOTS};
use crate::raw::{AllocOptions, AllocStrategy, GooAllocator, MAX_NATURAL_ALIGN};

const NAME: &str = "shared pool";
/// The largest block (its alignment too).
const MAX_BLOCK_BYTES: usize = 1 << 30;

/// One thread's free lists. `remote` sits on a cache line of its own (the lane's state starts
/// 8 bytes into the lane), so other threads' frees do not disturb the owner's pops and pushes.
#[repr(C)]
struct PoolLane {
    /// The lane's own list: only its thread changes it (or a holder of the lock, for the
    /// overflow lane and with the lanes frozen).
    local: AtomicPtr<u8>,
    _line: [u64; 6],
    /// Objects of this lane's blocks that other threads freed: pushed with a compare-and-swap,
    /// taken whole with a swap.
    remote: AtomicPtr<u8>,
}
const _: () = assert!(offset_of!(PoolLane, remote) + 8 >= 64);

/// What a block says about itself, right after its chunk header.
#[repr(C)]
struct BlockHead {
    /// The lane that grew it, where its objects go back when freed.
    owner: usize,
    /// Bytes from the block's start to the end of its last object: `header + objects·stride`.
    end: usize,
}

/// What the lock guards: the blocks.
struct Book {
    blocks: PlainChunks,
    /// Block starts, sorted by address (`check` and the counts locate objects with it).
    sorted: Vec<*mut u8>,
    total: usize,
}

// SAFETY: the book is only reached under its lock; its chunk list calls the parent, which the
// pool's constructors require to be usable from any thread one at a time (the lock serialises
// the calls).
unsafe impl Send for Book {}

/// The shared pool mechanism. `Sync`: any number of threads may allocate and free at once.
/// What a [`SharedRawPool`](crate::shared_pool::SharedRawPool) and a C shared pool allocate
/// from; behind an [`Allocator`](crate::Allocator) it gets the front door, and [`from_raw`]
/// finds it behind any shared pool's vtable.
///
/// ```
/// use goo_memory_core::allocator_api2::boxed::Box;
/// use goo_memory_core::pool::PoolConfig;
/// use goo_memory_core::shared_pool::SharedPool;
/// use goo_memory_core::{builtin, Allocator};
/// // SAFETY: the built-in allocator is a static, usable from any thread.
/// let pool = Allocator::new(unsafe { SharedPool::new(builtin(), PoolConfig::new(32, 64)) }.unwrap());
/// // Objects allocated on this thread, freed on others.
/// let mut objects: Vec<_> = (0..8).map(|i| Box::new_in([i as u8; 32], &pool)).collect();
/// std::thread::scope(|s| {
///     let half = objects.split_off(4);
///     s.spawn(move || drop(half));
///     s.spawn(move || drop(objects));
/// });
/// let s = pool.backend().stats().unwrap(); // `None` only while another thread is inside
/// assert_eq!((s.live_objects, s.blocks), (0, 1));
/// assert_eq!(pool.stats().total_frees, 8);
/// pool.backend().check().unwrap();
/// ```
///
/// `B` is the set of blocks, `obj(b, k) = b + header + k·stride` for `k < b.objects`; `F(l)` the
/// objects on lane `l`'s lists (local and remote), each list up to a link that names no object
/// (a program's write after that object's free: the lane's pop reports it, and the objects past
/// it are lost until a reset). Between operations, the lock held and no thread inside its
/// lane:
///
/// ```text
/// |B|                ==  sorted.len(),  sorted == the addresses of B, strictly increasing
/// b % block_bytes    ==  0,   b.size == b.end == header + b.objects·stride <= block_bytes  for b ∈ B
/// 1 <= b.objects <= per_block,   b.owner < LANES                                  for b ∈ B
/// total              ==  Σ b.objects over b ∈ B;   max_objects != 0 => total <= max_objects
/// B empty            =>  lo == hi == 0
/// B not empty        =>  lo == min obj(b, 0),  hi == max obj(b, b.objects)   over b ∈ B
/// f ∈ F(l)           =>  f == obj(b, k) for some b ∈ B, k < b.objects
/// Σ |F(l)|           <=  total                      (no list has a cycle)
/// reserved           ==  B.bytes
/// ```
pub struct SharedPool {
    object_size: usize,
    stride: usize,
    align: usize,
    per_block: usize,
    max_objects: usize,
    /// Bytes from a block's start to its first object: the chunk header, the block's head,
    /// padding to the alignment.
    header: usize,
    /// Every block's alignment, and a full block's size: a power of two.
    block_bytes: usize,
    /// `p & boundary_mask == phase` for every object `p`: the stride less one for a power-of-two
    /// stride (blocks are aligned to more), else the alignment less one.
    boundary_mask: usize,
    phase: usize,
    /// The free's exact test of an object boundary ([`Multiple`]: `off - header` a multiple of
    /// the stride, without a division).
    on_stride: Multiple,
    lanes: Lanes<PoolLane>,
    book: ReentryLock<Book>,
    /// The objects' address range (0, 0 when there are none), for the free's check.
    lo: AtomicUsize,
    hi: AtomicUsize,
    /// Bytes of blocks held (published under the lock).
    reserved: AtomicUsize,
    misuse: AtomicUsize,
    /// The key of the free lists' links (`allocators/free_link.rs`).
    link: LinkKey,
}

/// A test of divisibility by a fixed `d > 0` with a mask and a multiplication (Hacker's Delight
/// 10-16): with `d = d0·2^k`, `d0` odd and `inverse·d0 ≡ 1 (mod 2^N)`, `x` is a multiple of `d`
/// exactly when its low `k` bits are zero and `x·inverse <= usize::MAX / d0` (the multiples of
/// `d0` are the numbers the multiplication maps to `0..=usize::MAX / d0`). No shift by a
/// variable amount: x86 takes its count in one register, which would cost the free's fast path
/// that register's contents.
#[derive(Clone, Copy, Debug)]
struct Multiple {
    inverse: usize,
    low_bits: usize,
    limit: usize,
}

impl Multiple {
    fn of(d: usize) -> Multiple {
        assert!(d > 0, "a divisor");
        let shift = d.trailing_zeros();
        let odd = d >> shift;
        // Newton's iteration doubles the correct low bits; `odd` is its own inverse mod 8.
        let mut inverse = odd;
        for _ in 0..6 {
            inverse = inverse.wrapping_mul(2usize.wrapping_sub(odd.wrapping_mul(inverse)));
        }
        debug_assert_eq!(odd.wrapping_mul(inverse), 1);
        Multiple { inverse, low_bits: (1 << shift) - 1, limit: usize::MAX / odd }
    }

    #[inline(always)]
    fn divides(self, x: usize) -> bool {
        x & self.low_bits == 0 && x.wrapping_mul(self.inverse) <= self.limit
    }
}

/// The layout and the figures published for readers without the lock.
impl core::fmt::Debug for SharedPool {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SharedPool")
            .field("object_size", &self.object_size)
            .field("stride", &self.stride)
            .field("align", &self.align)
            .field("objects_per_block", &self.per_block)
            .field("max_objects", &self.max_objects)
            .field("bytes_reserved", &self.reserved.load(Relaxed))
            .field("misuse_detected", &self.misuse.load(Relaxed))
            .finish_non_exhaustive()
    }
}

impl SharedPool {
    /// A shared pool of `config`'s objects taking blocks from `parent`; `None` if the
    /// configuration is impossible (size 0, bad alignment, a block past 1 GiB). Blocks hold at
    /// least `objects_per_block` objects: a block's size is rounded up to a power of two and
    /// filled. `config.checked` is ignored: a shared pool makes the cheap checks only.
    ///
    /// # Safety
    /// `parent` must be a valid allocator that outlives the pool and may be called from any
    /// thread, one at a time (the pool calls it under its lock).
    pub unsafe fn new(parent: *mut GooAllocator, config: PoolConfig) -> Option<Self> {
        let ObjectLayout { align, stride, per_block } = ObjectLayout::of(&config)?;
        let header = (PlainChunks::HEADER + size_of::<BlockHead>()).checked_next_multiple_of(align)?;
        let block_bytes = header
            .checked_add(per_block.checked_mul(stride)?)?
            .checked_next_power_of_two()
            .filter(|&b| b <= MAX_BLOCK_BYTES)?
            .max(MAX_NATURAL_ALIGN);
        let per_block = (block_bytes - header) / stride;
        let boundary_mask = if stride.is_power_of_two() { stride } else { align } - 1;
        // SAFETY: the parent outlives the pool (the contract), so it outlives its blocks;
        // `block_bytes` is a power of two, at least 16.
        let blocks = unsafe { PlainChunks::new(parent, block_bytes) };
        Some(SharedPool {
            object_size: config.object_size,
            stride,
            align,
            per_block,
            max_objects: config.max_objects,
            header,
            block_bytes,
            boundary_mask,
            phase: header & boundary_mask,
            on_stride: Multiple::of(stride),
            lanes: Lanes::new(|| PoolLane {
                local: AtomicPtr::new(ptr::null_mut()),
                _line: [0; 6],
                remote: AtomicPtr::new(ptr::null_mut()),
            }),
            book: ReentryLock::new(Book { blocks, sorted: Vec::new(), total: 0 }),
            lo: AtomicUsize::new(0),
            hi: AtomicUsize::new(0),
            link: LinkKey::new(),
            reserved: AtomicUsize::new(0),
            misuse: AtomicUsize::new(0),
        })
    }

    /// The object size requests are checked against.
    pub fn object_size(&self) -> usize {
        self.object_size
    }

    /// The alignment of every object.
    pub fn align(&self) -> usize {
        self.align
    }

    /// Pops a free object of `lane`: its local list, else its whole remote list taken at once.
    /// Null when both are empty. A link that names no object (written after its object's free)
    /// ends the list there: reported, counted, the rest leaked (see `free_link.rs`).
    #[inline(always)]
    fn pop(&self, lane: &PoolLane) -> *mut u8 {
        let p = self.pop_call_free(lane);
        if !p.is_null() {
            return p;
        }
        // Declined with an object left at the head: its link names no object.
        let damaged = lane.local.load(Relaxed);
        if !damaged.is_null() {
            self.corrupt_list(lane, damaged);
        }
        damaged
    }

    /// [`SharedPool::pop`] for the call-free level, which calls nothing: a link that names no
    /// object is left where it is (its object heads the lane's local list, which is otherwise
    /// empty when this returns null) and the request declined, so the slow path's `pop` finds
    /// it, reports it and drops the list. (A call here would make the whole call-free level
    /// save and restore registers.)
    #[inline(always)]
    fn pop_call_free(&self, lane: &PoolLane) -> *mut u8 {
        let mut p = lane.local.load(Relaxed);
        if p.is_null() {
            // (A load first: no locked instruction while nobody freed to this lane.)
            if lane.remote.load(Relaxed).is_null() {
                return ptr::null_mut();
            }
            // Acquire: the links the freeing threads wrote before their release.
            p = lane.remote.swap(ptr::null_mut(), Acquire);
            if p.is_null() {
                return ptr::null_mut();
            }
        }
        // SAFETY: a free object's first word links the next free object of its list.
        let next = unsafe { self.link.read(p) };
        if next.is_null() || self.in_range(next) {
            lane.local.store(next, Relaxed);
            return p;
        }
        crate::policy::cold_path();
        // The list, the remote one taken whole included, stays the lane's.
        lane.local.store(p, Relaxed);
        ptr::null_mut()
    }

    /// Whether `p` lies in the pool's address range on an object boundary (the first of the
    /// free's checks, which read no memory).
    #[inline(always)]
    fn in_range(&self, p: *mut u8) -> bool {
        let addr = p.addr();
        addr >= self.lo.load(Relaxed)
            && addr < self.hi.load(Relaxed)
            && addr & self.boundary_mask == self.phase
    }

    /// The link of the free object `at`, being handed out, names no object: something wrote to
    /// it after its free. The rest of `lane`'s list is dropped (its objects leak rather than
    /// serve a stale pointer's writer); the misuse is counted and reported. `extern "C"`: it
    /// cannot unwind, so the C entry points that reach the pop need no landing pad.
    #[cold]
    #[inline(never)]
    extern "C" fn corrupt_list(&self, lane: &PoolLane, at: *mut u8) {
        lane.local.store(ptr::null_mut(), Relaxed);
        self.misuse.fetch_add(1, Relaxed);
        let _ = writeln!(
            std::io::stderr(),
            "goo-memory: shared pool {:p}: the free object {at:p} was written after its free; the rest of its free list is dropped (its objects leak)",
            self as *const Self
        );
    }

    /// Gives object `p` of lane `owner`'s blocks back, from the thread of lane `mine` (inside
    /// its gate, or holding the lock): onto `mine`'s local list if it is the owner, else onto
    /// the owner's remote list.
    ///
    /// # Safety
    /// `p` is a live object of this pool; `owner` its block's owner.
    #[inline(always)]
    unsafe fn give_back(&self, mine: usize, lane: &PoolLane, owner: usize, p: *mut u8) {
        if owner == mine {
            // SAFETY: `p` is a live object, ours now: its first word becomes the link.
            unsafe { self.link.write(p, lane.local.load(Relaxed)) };
            lane.local.store(p, Relaxed);
            return;
        }
        let remote = &self.lanes.get(owner).remote;
        let mut head = remote.load(Relaxed);
        loop {
            // SAFETY: as above; written before the release that publishes it.
            unsafe { self.link.write(p, head) };
            match remote.compare_exchange_weak(head, p, Release, Relaxed) {
                Ok(_) => return,
                Err(now) => head = now,
            }
        }
    }

    /// The cheap check of a free: `p` lies in the pool's address range, on an object boundary of
    /// its block, inside the block's objects; then the block's owner. `None` refuses `p`.
    #[inline(always)]
    fn owner_of(&self, p: *mut u8) -> Option<usize> {
        let addr = p.addr();
        if !self.in_range(p) {
            return None;
        }
        let base = addr & !(self.block_bytes - 1);
        let off = addr - base;
        // The mask above is the alignment's for a stride that is no power of two: a pointer
        // inside an object may pass it; this may not.
        if off < self.header || !self.on_stride.divides(off - self.header) {
            return None;
        }
        // SAFETY: `p` lies in the pool's range, so `base` (the start of the block-sized slot
        // holding it) is the start of one of its blocks, whose head stays readable while the
        // pool lives; a pointer between blocks is undefined (see `pool.h`).
        let head = unsafe { p.with_addr(base + PlainChunks::HEADER).cast::<BlockHead>().read() };
        (off < head.end && head.owner < LANES).then_some(head.owner)
    }

    /// An object for the calling thread: its lane's lists, else a new block under the lock.
    /// Null for a request the object cannot hold, at the cap, or when the parent refuses.
    pub fn alloc_request(&self, size: usize, align: usize) -> *mut u8 {
        if size > self.object_size || align > self.align {
            return ptr::null_mut();
        }
        let slot = current_slot();
        if slot < SLOTS {
            if let Some(lane) = self.lanes.enter(slot) {
                let p = self.pop(&lane);
                if !p.is_null() {
                    return p;
                }
            }
        }
        self.alloc_locked(slot)
    }

    #[cold]
    #[inline(never)]
    fn alloc_locked(&self, slot: usize) -> *mut u8 {
        let Ok(mut book) = self.book.lock() else {
            let _ = writeln!(
                std::io::stderr(),
                "goo-memory: an allocation from a shared pool refused: the calling thread is already inside the pool (its parent or a callback called back into it)"
            );
            return ptr::null_mut();
        };
        // The lane is this thread's (the overflow lane: every slotless thread's, under the lock).
        let lane = self.lanes.get(slot);
        let mut p = self.pop(lane);
        if p.is_null() && self.grow(&mut book, slot) {
            p = self.pop(lane);
        }
        if p.is_null() {
            // At the cap: another lane's remote list, whole (a swap, as its owner would).
            let taken = (0..LANES).map(|i| self.lanes.get(i).remote.swap(ptr::null_mut(), Acquire));
            if let Some(list) = taken.into_iter().find(|l| !l.is_null()) {
                lane.local.store(list, Relaxed);
                p = self.pop(lane);
            }
        }
        if p.is_null() && self.max_objects != 0 {
            p = self.take_from_other_lanes(slot, book.total);
        }
        debug_check(|| self.check_book(&book, false));
        p
    }

    /// At the cap, with no free object on the calling thread's lists nor on any remote list:
    /// half of another lane's own list (the first lane that has one) moves to lane `slot`'s,
    /// with every lane frozen, so that a thread is not refused while another holds the cap's
    /// free objects (a first thread's block may take the whole cap). Under the lock; tried a
    /// few times while another thread is inside its lane (the freeze needs every thread out).
    /// An object, or null: no lane has a free one, or the other threads stayed inside.
    #[cold]
    #[inline(never)]
    fn take_from_other_lanes(&self, slot: usize, total: usize) -> *mut u8 {
        for _ in 0..4 {
            let Some(quiet) = self.lanes.quiesce() else {
                std::thread::yield_now();
                continue;
            };
            let lane = self.lanes.get(slot);
            for (_, other) in quiet.iter().filter(|&(i, _)| i != slot) {
                let taken = self.take_half(other, total);
                if !taken.is_null() {
                    // The calling lane's own list is empty (its pop found nothing).
                    lane.local.store(taken, Relaxed);
                    break;
                }
            }
            drop(quiet);
            return self.pop(lane);
        }
        ptr::null_mut()
    }

    /// Detaches the first half (rounded up) of `lane`'s own list and returns it, or null when
    /// it has no object to give. The lanes are frozen; `total` is the pool's objects, more than
    /// any list holds (a walk stops there, whatever a stale pointer's writes made of the links).
    /// An object whose link names no object stays on `lane`, where its own pop reports it.
    fn take_half(&self, lane: &PoolLane, total: usize) -> *mut u8 {
        let head = lane.local.load(Relaxed);
        // The objects at the head whose links name an object or end the list.
        let mut sound = 0usize;
        let mut p = head;
        while !p.is_null() && sound < total {
            // SAFETY: `p` is a free object of this pool: the head, or a link checked here.
            let next = unsafe { self.link.read(p) };
            if !next.is_null() && !self.in_range(next) {
                break;
            }
            sound += 1;
            p = next;
        }
        if sound == 0 {
            return ptr::null_mut();
        }
        let mut last = head;
        for _ in 1..sound.div_ceil(2) {
            // SAFETY: within the sound prefix walked above.
            last = unsafe { self.link.read(last) };
        }
        // SAFETY: `last` is in the sound prefix: its link names the rest of the list, an object
        // or nothing.
        unsafe {
            lane.local.store(self.link.read(last), Relaxed);
            self.link.write(last, ptr::null_mut());
        }
        head
    }

    /// Adds a block (partial at the cap) owned by lane `slot` and puts its objects on the
    /// lane's local list (empty now). The lock is held (`book`).
    fn grow(&self, book: &mut Book, slot: usize) -> bool {
        let objects = if self.max_objects == 0 {
            self.per_block
        } else {
            self.per_block.min(self.max_objects.saturating_sub(book.total))
        };
        if objects == 0 {
            return false;
        }
        let Some(block) = book.blocks.take(self.header + objects * self.stride) else {
            return false;
        };
        let lane = self.lanes.get(slot);
        // SAFETY: a fresh block of `header + objects·stride` bytes: the chunk header, the block's
        // head, then `objects` objects, linked in address order onto the lane's local list.
        unsafe {
            block
                .data
                .cast::<BlockHead>()
                .write(BlockHead { owner: slot, end: self.header + objects * self.stride });
            let first = block.start.add(self.header);
            for i in 0..objects {
                let obj = first.add(i * self.stride);
                let next =
                    if i + 1 < objects { first.add((i + 1) * self.stride) } else { lane.local.load(Relaxed) };
                self.link.write(obj, next);
            }
            lane.local.store(first, Relaxed);
        }
        let at = book.sorted.partition_point(|&x| x < block.start);
        book.sorted.insert(at, block.start);
        book.total += objects;
        let first = block.start.addr() + self.header;
        let end = first + objects * self.stride;
        let (lo, hi) = (self.lo.load(Relaxed), self.hi.load(Relaxed));
        // Published before the objects are handed out (the lock's release orders them for
        // every thread that gets one).
        self.lo.store(if hi == 0 { first } else { lo.min(first) }, Relaxed);
        self.hi.store(hi.max(end), Relaxed);
        self.reserved.store(book.blocks.bytes(), Relaxed);
        true
    }

    /// Frees `p` and says whether it did: a pointer the cheap check refuses is reported,
    /// counted as misuse and ignored.
    ///
    /// # Safety
    /// `p` must be a live object of this pool or fail the check.
    pub unsafe fn free_object(&self, p: *mut u8) -> bool {
        let Some(owner) = self.owner_of(p) else {
            return self.refuse(p);
        };
        let slot = current_slot();
        if slot < SLOTS {
            if let Some(lane) = self.lanes.enter(slot) {
                // SAFETY: forwarded contract; `owner` read from `p`'s block.
                unsafe { self.give_back(slot, &lane, owner, p) };
                return true;
            }
        }
        // The overflow lane, or the lanes are frozen: under the lock (once the quiescer is
        // done). A thread that holds it already (a callback freeing back) may go on: it is
        // the holder.
        let _book = self.book.lock();
        // SAFETY: as above; the lane is ours, under the lock.
        unsafe { self.give_back(slot, self.lanes.get(slot), owner, p) };
        true
    }

    /// Reports and counts a pointer a free refused; returns false.
    #[cold]
    #[inline(never)]
    fn refuse(&self, p: *mut u8) -> bool {
        self.refuse_in("free", p)
    }

    /// Reports and counts a pointer a free or resize (`verb`) refused; returns false.
    #[cold]
    #[inline(never)]
    fn refuse_in(&self, verb: &str, p: *mut u8) -> bool {
        self.misuse.fetch_add(1, Relaxed);
        let _ = writeln!(
            std::io::stderr(),
            "goo-memory: shared pool {:p}: {verb} of {p:p}: not an object of this pool (ignored)",
            self as *const Self
        );
        false
    }

    /// Runs `f` with the lock held and every lane frozen, or refuses (a message naming `what`,
    /// `None`) while another thread is inside.
    fn quiescent<R>(&self, what: &str, f: impl FnOnce(&mut Book) -> R) -> Option<R> {
        let quiet = self.book.try_lock().ok().and_then(|book| Some((self.lanes.quiesce()?, book)));
        let Some((quiet, mut book)) = quiet else {
            let _ = writeln!(
                std::io::stderr(),
                "goo-memory: {what} of a shared pool refused: another thread is inside an allocation or free of it; call it once the other threads are done"
            );
            return None;
        };
        let r = f(&mut book);
        debug_check(|| self.check_book(&book, true));
        drop(quiet);
        Some(r)
    }

    /// Every object back to the pool (each onto its block's lane), blocks kept. Refused (false,
    /// with a message) while another thread is inside.
    ///
    /// # Safety
    /// No object of this pool is used after a reset that succeeds.
    pub unsafe fn reset(&self) -> bool {
        self.reset_with(|| {})
    }

    /// [`SharedPool::reset`], running `before` first with the pool quiet (the stats' count).
    fn reset_with(&self, before: impl FnOnce()) -> bool {
        self.quiescent("reset", |book| {
            before();
            for i in 0..LANES {
                let lane = self.lanes.get(i);
                lane.local.store(ptr::null_mut(), Relaxed);
                lane.remote.store(ptr::null_mut(), Relaxed);
            }
            for block in book.blocks.iter() {
                // SAFETY: a live block of this pool: its head, and its objects, every one free
                // now, linked onto the owner's local list.
                unsafe {
                    let BlockHead { owner, end } = block.data.cast::<BlockHead>().read();
                    let objects = (end - self.header) / self.stride;
                    let lane = self.lanes.get(owner);
                    let first = block.start.add(self.header);
                    for i in (0..objects).rev() {
                        let obj = first.add(i * self.stride);
                        self.link.write(obj, lane.local.load(Relaxed));
                        lane.local.store(obj, Relaxed);
                    }
                }
            }
        })
        .is_some()
    }

    /// Counts and configuration (`checked` false), counted with the pool quiet: `None` (with a
    /// message) while another thread is inside.
    pub fn stats(&self) -> Option<PoolStats> {
        self.quiescent("counting the objects", |book| {
            let free = self.count_free(book).unwrap_or(book.total);
            PoolStats {
                object_stride: self.stride,
                objects_per_block: self.per_block,
                blocks: book.blocks.count(),
                total_objects: book.total,
                free_objects: free,
                live_objects: book.total - free,
                max_objects: self.max_objects,
                bytes_reserved: book.blocks.bytes(),
                misuse_detected: self.misuse.load(Relaxed),
                checked: false,
            }
        })
    }

    /// Bytes of blocks held.
    pub fn reserved(&self) -> usize {
        self.reserved.load(Relaxed)
    }

    /// The block holding object `p` and its index there, if `p` is an object of a block.
    fn locate(&self, book: &Book, p: *mut u8) -> Option<(*mut u8, usize)> {
        let base = p.addr() & !(self.block_bytes - 1);
        let at = book.sorted.binary_search_by(|b| b.addr().cmp(&base)).ok()?;
        let block = book.sorted[at];
        // SAFETY: a live block of the pool: its head.
        let BlockHead { end, .. } = unsafe { block.add(PlainChunks::HEADER).cast::<BlockHead>().read() };
        let off = (p.addr() - base).checked_sub(self.header)?;
        let objects = end.saturating_sub(self.header) / self.stride;
        (off.is_multiple_of(self.stride) && off / self.stride < objects).then_some((block, off / self.stride))
    }

    /// Objects on every lane's lists: each walk bounded by `total` and locating every entry
    /// before reading its link, and ended, as the pops end it, by a link that names no object.
    /// `None` when a list is corrupt otherwise (an entry that is no object, a cycle).
    fn count_free(&self, book: &Book) -> Option<usize> {
        let mut free = 0usize;
        for i in 0..LANES {
            let lane = self.lanes.get(i);
            for head in [&lane.local, &lane.remote] {
                let mut p = head.load(Relaxed);
                while !p.is_null() {
                    if free == book.total {
                        return None;
                    }
                    self.locate(book, p)?;
                    free += 1;
                    // SAFETY: `p` is an object of one of the pool's blocks (located above), on
                    // a free list: its first word is the link.
                    let next = unsafe { self.link.read(p) };
                    if !next.is_null() && !self.in_range(next) {
                        // Damaged: the end of the list (see `F(l)`).
                        break;
                    }
                    p = next;
                }
            }
        }
        Some(free)
    }

    /// Verifies the equations beside [`SharedPool`], under the lock with the lanes frozen; an
    /// error also when another thread is inside (nothing to verify then). Reads only.
    pub fn check(&self) -> Result<(), InvariantError> {
        let book =
            self.book.try_lock().map_err(|_| InvariantError::new(NAME, "no thread inside while checked"))?;
        let quiet =
            self.lanes.quiesce().ok_or(InvariantError::new(NAME, "no thread inside while checked"))?;
        let r = self.check_book(&book, true);
        drop(quiet);
        r
    }

    /// [`SharedPool::check`] with the lock held; the free lists are walked only when `quiet`
    /// (the lanes frozen: a debug check in the slow path runs while other threads pop and push).
    fn check_book(&self, book: &Book, quiet: bool) -> Result<(), InvariantError> {
        book.blocks.check(NAME)?;
        ensure(
            book.sorted.len() == book.blocks.count() && book.sorted.windows(2).all(|w| w[0] < w[1]),
            NAME,
            "|B| == sorted.len(), sorted == the addresses of B, strictly increasing",
        )?;
        let (mut total, mut lo, mut hi) = (0usize, usize::MAX, 0usize);
        for block in book.blocks.iter() {
            ensure(
                block.start.addr().is_multiple_of(self.block_bytes)
                    && book.sorted.binary_search(&block.start).is_ok(),
                NAME,
                "b % block_bytes == 0, b ∈ sorted",
            )?;
            // SAFETY: a live block of the pool: its head.
            let BlockHead { owner, end } = unsafe { block.data.cast::<BlockHead>().read() };
            let objects = end.saturating_sub(self.header) / self.stride;
            ensure(
                (1..=self.per_block).contains(&objects)
                    && owner < LANES
                    && end == self.header + objects * self.stride
                    && block.size() == end
                    && block.size() <= self.block_bytes,
                NAME,
                "b.size == b.end == header + b.objects·stride <= block_bytes, 1 <= b.objects <= per_block, b.owner < LANES",
            )?;
            total += objects;
            let first = block.start.addr() + self.header;
            lo = lo.min(first);
            hi = hi.max(first + objects * self.stride);
        }
        ensure(total == book.total, NAME, "total == Σ b.objects over b ∈ B")?;
        ensure(
            self.max_objects == 0 || total <= self.max_objects,
            NAME,
            "max_objects != 0 => total <= max_objects",
        )?;
        let (got_lo, got_hi) = (self.lo.load(Relaxed), self.hi.load(Relaxed));
        if total == 0 {
            ensure(got_lo == 0 && got_hi == 0, NAME, "B empty => lo == hi == 0")?;
        } else {
            ensure(
                got_lo == lo && got_hi == hi,
                NAME,
                "B not empty => lo == min obj(b, 0), hi == max obj(b, b.objects)",
            )?;
        }
        ensure(self.reserved.load(Relaxed) == book.blocks.bytes(), NAME, "reserved == B.bytes")?;
        if !quiet {
            return Ok(());
        }
        self.count_free(book).map(|_| ()).ok_or(InvariantError::new(
            NAME,
            "f ∈ F(l) => f == obj(b, k) for some b ∈ B, k < b.objects; Σ |F(l)| <= total",
        ))
    }
}

// SAFETY: objects are disjoint `stride`-byte slots of live blocks, aligned to `align` (blocks
// are aligned to `block_bytes`, a multiple of it, and the header and stride are multiples of
// it); each free object is on exactly one list (a free moves it onto one, a pop off one, a
// reset rebuilds them), so none is handed out twice unless the caller frees one twice, which
// the contract of `free` forbids.
unsafe impl Backend for SharedPool {
    fn check_state(&self) -> Result<(), InvariantError> {
        SharedPool::check(self)
    }

    const NAME: &'static str = NAME;
    const KIND: Kind = Kind::SharedPool;

    /// A pop from the calling thread's lane, inside its gate.
    #[inline(always)]
    unsafe fn try_alloc_inline(&self, home: Option<usize>, size: usize, align: usize) -> *mut u8 {
        // `size - 1` wraps for 0: a zero-size request is the front door's (a dangling pointer).
        if size.wrapping_sub(1) >= self.object_size || align > self.align {
            return ptr::null_mut();
        }
        let Some(lane) = home.and_then(|slot| self.lanes.enter(slot)) else {
            return ptr::null_mut();
        };
        self.pop_call_free(&lane)
    }

    /// A push onto the calling thread's lane, or onto the owner's remote list, for a pointer
    /// that passes the cheap check (the slow path refuses the others).
    #[inline(always)]
    unsafe fn try_free_inline(&self, home: Option<usize>, ptr: *mut u8, _size: usize, _align: usize) -> bool {
        let (Some(slot), Some(owner)) = (home, self.owner_of(ptr)) else {
            return false;
        };
        let Some(lane) = self.lanes.enter(slot) else {
            return false;
        };
        // SAFETY: forwarded contract: a live object (it passed the check).
        unsafe { self.give_back(slot, &lane, owner, ptr) };
        true
    }

    fn alloc(&self, size: usize, align: usize, _options: AllocOptions) -> *mut u8 {
        self.alloc_request(size, align)
    }

    unsafe fn free(&self, ptr: *mut u8, _size: usize, _align: usize) {
        // SAFETY: forwarded contract.
        unsafe { self.free_object(ptr) };
    }

    /// A refused pointer (reported and counted as misuse) changes no stats.
    unsafe fn release(&self, ptr: *mut u8, _size: usize, _align: usize) -> bool {
        // SAFETY: forwarded contract.
        unsafe { self.free_object(ptr) }
    }

    unsafe fn realloc(
        &self,
        ptr: *mut u8,
        _old_size: usize,
        new_size: usize,
        align: usize,
        _options: AllocOptions,
    ) -> *mut u8 {
        // The free's cheap check: a resize of a pointer the free would refuse is refused too.
        if self.owner_of(ptr).is_none() {
            self.refuse_in("realloc", ptr);
            crate::policy::refusal::refuse_misuse();
            return ptr::null_mut();
        }
        resize_within(ptr, new_size, align, self.object_size, self.align)
    }

    fn bytes_reserved(&self, _bytes_allocated: usize) -> usize {
        self.reserved()
    }
}

/// Creates a C shared pool (stats tracked, strategy `Null`).
///
/// # Safety
/// As for [`SharedPool::new`].
pub unsafe fn create(parent: *mut GooAllocator, config: PoolConfig) -> Option<NonNull<GooAllocator>> {
    // SAFETY: forwarded contract.
    let pool = unsafe { SharedPool::new(parent, config) }?;
    Some(Managed::create(pool, AllocStrategy::Null, true))
}

/// The shared pool behind a `GooAllocator*`, if it is one.
///
/// # Safety
/// `allocator` must be null or valid (live if a library allocator).
pub unsafe fn from_raw<'a>(allocator: *const GooAllocator) -> Option<&'a SharedPool> {
    // SAFETY: forwarded contract.
    unsafe { Managed::<SharedPool>::try_backend(allocator) }
}

/// Resets the shared pool `allocator`, accounting the implicit frees. False if it is not a
/// shared pool, or (with a message) while another thread is inside it.
///
/// # Safety
/// As for [`from_raw`]; no object may be used afterwards.
pub unsafe fn reset_raw(allocator: *mut GooAllocator) -> bool {
    // SAFETY: forwarded contract.
    let Some(pool) = (unsafe { from_raw(allocator) }) else { return false };
    // SAFETY: forwarded contract.
    let done = pool.reset_with(|| unsafe { front::record_reset(allocator) });
    if done {
        front::reset_done(allocator);
    }
    done
}

/// Verifies the invariants of the shared pool `allocator` and of its stats.
///
/// # Safety
/// As for [`from_raw`].
pub unsafe fn check_raw(allocator: *mut GooAllocator) -> Result<(), InvariantError> {
    // SAFETY: forwarded contract.
    unsafe { Managed::<SharedPool>::check_raw(allocator) }
}

#[cfg(test)]
mod tests {
    use super::Multiple;

    /// The rotation test agrees with the remainder for every stride a pool can have.
    #[test]
    fn multiple_agrees_with_the_remainder() {
        // (Fewer under Miri, which interprets every step.)
        let (strides, values) = if cfg!(miri) { (40, 200) } else { (300, 3000) };
        for d in 1..=strides {
            let m = Multiple::of(d);
            for x in (0..values).chain([usize::MAX - values..=usize::MAX].into_iter().flatten()) {
                assert_eq!(m.divides(x), x % d == 0, "{x} by {d}");
            }
        }
    }
}
