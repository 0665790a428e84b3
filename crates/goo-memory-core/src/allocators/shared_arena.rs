//! The shared arena: one arena that several threads allocate from at once.
//!
//! Each thread bumps in a chunk of its own, in its lane (`policy::sharing`): the fast path
//! is the arena's bump on the lane's pointer, inside the lane's gate (a flag set and cleared, a
//! compiler fence, one load of the arena's `frozen` flag), with no locked instruction and no
//! cache line shared between threads. A lane whose chunk is full takes a new one under the
//! arena's lock, which guards every chunk; a request too big for a lane's chunk gets a
//! dedicated chunk there too. The lock also serialises the arena's calls to its parent, so a
//! parent used by one thread at a time serves (if nothing else uses it meanwhile).
//!
//! Frees: freeing the most recent block of the calling thread's own lane gives its bytes back
//! (a check against that lane only, so it is safe whichever thread allocated the block); every
//! other free is a no-op until reset. Dedicated chunks are kept until reset, not returned when
//! their block is freed (finding whether a freed block has one would take the lock).
//!
//! Reset, mark and rewind need every lane still: each takes the lock without waiting and
//! freezes the lanes, and refuses (with a message, changing nothing) when another thread holds
//! the lock (it is taking a chunk) or is inside its lane. Called after the other threads are
//! done (joined, or synchronised with), they always succeed. A reset keeps every lane's current
//! chunk (its thread, or the next thread to take its slot, bumps on in it) and returns the
//! others to the parent. A mark is a snapshot of every lane's position, kept by the arena until
//! a reset or a rewind below it; the `GooArenaMark` names it.

use core::ptr::{self, NonNull};
use core::sync::atomic::{AtomicPtr, AtomicUsize, Ordering::Relaxed};
use std::io::Write;

use crate::allocators::arena::{
    carvable, carve, record_rewind, resize_or_move, Mark, RewindError, DEFAULT_CHUNK_SIZE, MAX_CHUNK_SIZE,
};
use crate::allocators::chunk_list::{check_pair, NumberedChunks};
use crate::policy::backend::{Backend, Kind, Managed};
use crate::policy::front;
use crate::policy::invariant::{debug_check, ensure, InvariantError};
use crate::policy::sharing::{Lanes, Quiesced, ReentryLock, LANES};
use crate::policy::thread_slot::{current_slot, SLOTS};
use crate::raw::{resolve_align, AllocOptions, AllocStrategy, GooAllocator, MAX_NATURAL_ALIGN};

const CHUNK_ALIGN: usize = MAX_NATURAL_ALIGN;
const HEADER: usize = NumberedChunks::HEADER;
const NAME: &str = "shared arena";

/// What a shared arena's [`Mark`] holds as its position: no address an arena's own mark has
/// (an arena refuses it, as a mark with a position but no chunk of its own).
pub const MARK_TAG: *mut u8 = ptr::without_provenance_mut(1);

/// One thread's lane: its current chunk and bump pointer. Changed by the lane's thread (inside
/// its gate, or under the lock) and by a holder of the lock with the lanes frozen.
struct ArenaLane {
    ptr: AtomicPtr<u8>,
    end: AtomicPtr<u8>,
    /// The start of the lane's current chunk (null: none). Changed only under the lock.
    chunk: AtomicPtr<u8>,
    /// Bytes of the lane's next chunk (header included). Changed only under the lock.
    next_chunk_size: AtomicUsize,
}

/// Where a lane was when a mark was taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct LanePos {
    lane: usize,
    chunk: *mut u8,
    ptr: *mut u8,
    end: *mut u8,
}

/// A mark's snapshot: the arena's clock when taken, the next chunk number then, and the
/// position of every lane that had a chunk.
struct Snapshot {
    epoch: u64,
    next_seq: u64,
    lanes: Vec<LanePos>,
}

/// What the lock guards: every chunk of the arena and the marks.
///
/// `C` (`chunks`) holds the normal chunks of every lane, `L` (`large`) the dedicated ones, both
/// numbered from `next_seq` (newest first). With `K(l)` lane `l`'s chunk and `data(c)`,
/// `end(c)` the bounds of chunk `c`'s data area, between operations (the lock held, so no chunk
/// changes; lanes' `ptr` may move inside their chunk meanwhile):
///
/// ```text
/// c.seq            <   next_seq                                for c ∈ C ∪ L
/// C ∩ L            ==  ∅                                       (every seq distinct)
/// K(l) == null     <=> ptr(l) == end(l) == null
/// K(l) != null      => K(l) ∈ C,  data(K(l)) <= ptr(l) <= end(l) == end(K(l))
/// K(l) != null      => K(l) != K(m)                            for lanes l != m
/// next_chunk_size(l) <= max_chunk
/// reserved         ==  C.bytes + L.bytes,   held == |C| + |L|   (the published counts)
/// limit != 0        => reserved <= limit
/// reset_at         <   marks[i].epoch < marks[i + 1].epoch <= clock
/// marks[i].next_seq <= marks[i + 1].next_seq <= next_seq
/// p ∈ marks[i].lanes => p.chunk ∈ C, seq(p.chunk) < marks[i].next_seq,
///                       data(p.chunk) <= p.ptr <= p.end == end(p.chunk)
/// ```
struct Book {
    chunks: NumberedChunks,
    large: NumberedChunks,
    next_seq: u64,
    /// Ticks at every mark taken and every reset.
    clock: u64,
    reset_at: u64,
    marks: Vec<Snapshot>,
}

// SAFETY: the book is only reached under its lock, one thread at a time; its chunk lists call
// the parent, which the arena's constructors require to be usable from any thread one at a
// time (the lock serialises the calls); the marks' pointers are plain data.
unsafe impl Send for Book {}

impl Book {
    fn reserved(&self) -> usize {
        self.chunks.bytes() + self.large.bytes()
    }
}

/// Why a reset of a [`SharedBump`] was refused: another thread was inside the arena (taking a
/// chunk, or in its lane). After the other threads are done, a reset always succeeds.
///
/// ```
/// use goo_memory_core::shared_arena::{Busy, SharedBump};
/// // SAFETY: the built-in allocator is a static, usable from any thread.
/// let arena = unsafe { SharedBump::new(goo_memory_core::builtin(), 0, 0) };
/// std::thread::scope(|s| {
///     for _ in 0..2 {
///         s.spawn(|| assert!(!arena.alloc(100, 8).is_null()));
///     }
/// });
/// // SAFETY: the blocks are not used after the reset (every thread is done: never busy).
/// let reset: Result<(), Busy> = unsafe { arena.reset() };
/// assert_eq!(reset, Ok(()));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Busy;

/// The shared arena mechanism. `Sync`: any number of threads may allocate from it at once.
/// What a [`SharedArena`](crate::shared_arena::SharedArena) and a C shared arena allocate from;
/// behind an [`Allocator`](crate::Allocator) it gets the front door, and [`from_raw`] finds it
/// behind any shared arena's vtable.
///
/// ```
/// use core::alloc::Layout;
/// use goo_memory_core::shared_arena::SharedBump;
/// use goo_memory_core::{builtin, Allocator};
/// // SAFETY: the built-in allocator is a static, usable from any thread.
/// let arena = Allocator::new(unsafe { SharedBump::new(builtin(), 4096, 0) });
/// std::thread::scope(|s| {
///     for _ in 0..4 {
///         s.spawn(|| {
///             for _ in 0..10 {
///                 arena.allocate(Layout::new::<[u64; 4]>()).unwrap();
///             }
///         });
///     }
/// });
/// assert_eq!(arena.stats().total_allocations, 40);
/// let chunks = arena.backend().chunk_count(); // each thread bumps in a chunk of its own
/// assert!((1..=4).contains(&chunks));
/// assert!(arena.backend().reserved() >= 40 * 32);
/// arena.backend().check().unwrap();
/// ```
pub struct SharedBump {
    lanes: Lanes<ArenaLane>,
    book: ReentryLock<Book>,
    /// The book's `reserved()` and chunk count, published for readers without the lock.
    reserved: AtomicUsize,
    held: AtomicUsize,
    limit: usize,
    max_chunk: usize,
}

/// The figures published for readers without the lock.
impl core::fmt::Debug for SharedBump {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SharedBump")
            .field("bytes_reserved", &self.reserved.load(Relaxed))
            .field("chunks", &self.held.load(Relaxed))
            .field("limit", &self.limit)
            .field("max_chunk", &self.max_chunk)
            .finish_non_exhaustive()
    }
}

impl SharedBump {
    /// An empty shared arena taking chunks from `parent`, each lane's first of `initial_size`
    /// bytes (0 = [`DEFAULT_CHUNK_SIZE`]), never holding more than `limit` bytes of chunks
    /// (0 = no limit).
    ///
    /// # Safety
    /// `parent` must be a valid allocator that outlives the arena and may be called from any
    /// thread, one at a time (the arena calls it under its lock).
    pub unsafe fn new(parent: *mut GooAllocator, initial_size: usize, limit: usize) -> Self {
        let initial = if initial_size == 0 { DEFAULT_CHUNK_SIZE } else { initial_size };
        let initial = initial.saturating_add(HEADER).min(isize::MAX as usize / 2);
        // SAFETY: the parent outlives the arena (the contract), so it outlives its lists;
        // CHUNK_ALIGN is a power of two, 16.
        let (chunks, large) =
            unsafe { (NumberedChunks::new(parent, CHUNK_ALIGN), NumberedChunks::new(parent, CHUNK_ALIGN)) };
        SharedBump {
            lanes: Lanes::new(|| ArenaLane {
                ptr: AtomicPtr::new(ptr::null_mut()),
                end: AtomicPtr::new(ptr::null_mut()),
                chunk: AtomicPtr::new(ptr::null_mut()),
                next_chunk_size: AtomicUsize::new(initial),
            }),
            book: ReentryLock::new(Book {
                chunks,
                large,
                next_seq: 0,
                clock: 0,
                reset_at: 0,
                marks: Vec::new(),
            }),
            reserved: AtomicUsize::new(0),
            held: AtomicUsize::new(0),
            limit,
            max_chunk: MAX_CHUNK_SIZE.max(initial),
        }
    }

    /// Bumps in `lane` (its thread inside its gate, or holding the lock): the block, or null
    /// when it does not fit.
    ///
    /// # Safety
    /// `size > 0`, `align` is a power of two and `size + align - 1 <= isize::MAX`
    /// ([`carvable`]).
    #[inline(always)]
    unsafe fn bump_in(lane: &ArenaLane, size: usize, align: usize) -> *mut u8 {
        let (ptr, end) = (lane.ptr.load(Relaxed), lane.end.load(Relaxed));
        // SAFETY: a lane's `ptr` and `end` bound its chunk's free bytes, or are both null (the
        // equations beside `Book`); only the lane's thread moves `ptr`, and `end` changes under
        // the lock or with the lanes frozen, neither of which can be happening now; the size
        // and alignment as `carve` wants (this function's contract).
        match unsafe { carve(ptr, end, size, align) } {
            Some((block, next)) => {
                lane.ptr.store(next, Relaxed);
                block.as_ptr()
            }
            None => ptr::null_mut(),
        }
    }

    /// Whether `[p, p + size)` is `lane`'s most recent block: it ends at the bump pointer,
    /// inside the lane's chunk. Blocks of other lanes and of dedicated chunks never are: they
    /// lie outside this lane's chunk.
    #[inline(always)]
    fn is_last(lane: &ArenaLane, p: *mut u8, size: usize) -> bool {
        let chunk = lane.chunk.load(Relaxed);
        !chunk.is_null()
            && p.addr() >= chunk.addr() + HEADER
            && p.addr().checked_add(size) == Some(lane.ptr.load(Relaxed).addr())
    }

    /// Gives the bytes of `[p, p + size)` back to `lane` if it is the lane's most recent block.
    #[inline(always)]
    fn give_back_last(lane: &ArenaLane, p: *mut u8, size: usize) {
        if Self::is_last(lane, p, size) {
            lane.ptr.store(p, Relaxed);
        }
    }

    /// An allocation for the calling thread: its lane's bump, else a new chunk under the lock.
    /// Null if the parent refuses, the limit would be passed, or the calling thread holds the
    /// lock already (a parent or callback calling back into the arena); and for a size of 0,
    /// an `align` that is no power of two or a `size` past `isize::MAX` with it (no request the
    /// front door passes; this method is safe to call with anything).
    pub fn alloc(&self, size: usize, align: usize) -> *mut u8 {
        if !carvable(size, align) {
            return ptr::null_mut();
        }
        let slot = current_slot();
        if slot < SLOTS {
            if let Some(lane) = self.lanes.enter(slot) {
                // SAFETY: checked above.
                let block = unsafe { Self::bump_in(&lane, size, align) };
                if !block.is_null() {
                    return block;
                }
            }
        }
        // SAFETY: checked above.
        unsafe { self.alloc_locked(slot, size, align) }
    }

    /// # Safety
    /// As for [`SharedBump::bump_in`].
    #[cold]
    #[inline(never)]
    unsafe fn alloc_locked(&self, slot: usize, size: usize, align: usize) -> *mut u8 {
        let Ok(mut book) = self.book.lock() else {
            report_reentry("an allocation");
            return ptr::null_mut();
        };
        // The lane is this thread's (the overflow lane: every slotless thread's, under the
        // lock); no quiescer runs while the lock is held.
        let lane = self.lanes.get(slot);
        // SAFETY: this function's contract.
        let block = unsafe { Self::bump_in(lane, size, align) };
        if !block.is_null() {
            return block;
        }
        let block = self.take_chunk(&mut book, lane, size, align);
        debug_check(|| self.check_book(&book));
        block
    }

    /// Serves a request from a new chunk: the lane's next one, or a dedicated chunk for a
    /// request too big for it. The lock is held (`book`).
    fn take_chunk(&self, book: &mut Book, lane: &ArenaLane, size: usize, align: usize) -> *mut u8 {
        // Data starts right after the header, which keeps CHUNK_ALIGN; more alignment costs
        // padding inside the chunk.
        let pad = align.saturating_sub(CHUNK_ALIGN);
        let Some(need) = size.checked_add(pad).and_then(|n| n.checked_add(HEADER)) else {
            return ptr::null_mut();
        };
        let next = lane.next_chunk_size.load(Relaxed);
        let dedicated = need > next / 2;
        let mut chunk_size = if dedicated { need } else { need.max(next) };
        if self.limit != 0 && book.reserved().checked_add(chunk_size).is_none_or(|r| r > self.limit) {
            // The limit caps what the arena holds, not the size a lane's chunks grow to: a
            // request that fits the room left gets a chunk of that room (as the arena's).
            let room = self.limit.saturating_sub(book.reserved()) & !(CHUNK_ALIGN - 1);
            if dedicated || room < need {
                return ptr::null_mut();
            }
            chunk_size = room;
        }
        let list = if dedicated { &book.large } else { &book.chunks };
        let seq = book.next_seq;
        let Some(chunk) = list.take(chunk_size, align, || seq) else {
            return ptr::null_mut();
        };
        book.next_seq += 1;
        self.publish(book);
        // SAFETY: the chunk's data area holds `chunk_size - HEADER >= pad + size` bytes, and
        // aligning its start (CHUNK_ALIGN-aligned) to `align` skips at most `pad` of them.
        let (start, block_end) = unsafe {
            let start = chunk.data.add(chunk.data.addr().wrapping_neg() & (align - 1));
            (start, start.add(size))
        };
        if !dedicated {
            lane.chunk.store(chunk.start, Relaxed);
            lane.end.store(chunk.end, Relaxed);
            lane.ptr.store(block_end, Relaxed);
            // Each lane's chunks grow 1.75x, up to the cap.
            let grown = chunk_size.saturating_mul(7) / 4;
            lane.next_chunk_size.store(grown.min(self.max_chunk).max(next), Relaxed);
        }
        start
    }

    /// Publishes the book's counts for readers without the lock.
    fn publish(&self, book: &Book) {
        self.reserved.store(book.reserved(), Relaxed);
        self.held.store(book.chunks.count() + book.large.count(), Relaxed);
    }

    /// Runs `f` on the calling thread's lane: inside its gate, or under the lock (the overflow
    /// lane, or while a quiescer holds the lanes: then once it is done). `None` when the calling
    /// thread holds the lock already.
    fn with_own_lane<R>(&self, f: impl FnOnce(&ArenaLane) -> R) -> Option<R> {
        let slot = current_slot();
        if slot < SLOTS {
            if let Some(lane) = self.lanes.enter(slot) {
                return Some(f(&lane));
            }
        }
        let _book = self.book.lock().ok()?;
        Some(f(self.lanes.get(slot)))
    }

    /// Frees `p` (a live block of `size` bytes): its bytes come back if it is the most recent
    /// block of the calling thread's lane; otherwise nothing happens until reset (and nothing
    /// at all when the calling thread is inside the arena already: a no-op is a valid free).
    ///
    /// # Safety
    /// `[p, p + size)` is a block of this arena (or the tail of one) that is not used
    /// afterwards: the arena hands the bytes of a lane's most recent block out again, so a
    /// block still in use that was named here would be handed out twice. Safe code cannot
    /// name one (a `Box` in the arena, say):
    ///
    /// ```compile_fail,E0133
    /// use goo_memory_core::{allocator_api2::boxed::Box, builtin, shared_arena::SharedBump, Allocator};
    /// // SAFETY: the built-in allocator is a static, usable from any thread.
    /// let arena = Allocator::new(unsafe { SharedBump::new(builtin(), 0, 0) });
    /// let first = Box::new_in(1u64, arena.handle());
    /// arena.backend().free(&*first as *const u64 as *mut u8, 8);
    /// let second = Box::new_in(2u64, arena.handle()); // would be `first`'s memory
    /// ```
    pub unsafe fn free(&self, p: *mut u8, size: usize) {
        self.with_own_lane(|lane| Self::give_back_last(lane, p, size));
    }

    /// Resizes in place where it can: the most recent block of the calling thread's lane,
    /// within its chunk, or any shrink. Null when a move is needed.
    ///
    /// # Safety
    /// `p` is a live block of this arena of `old` bytes.
    unsafe fn resize_in_place(&self, p: *mut u8, old: usize, new: usize) -> *mut u8 {
        if new <= old {
            // SAFETY: forwarded contract; the tail past `new` is what the shrink gives up.
            unsafe { self.free_tail(p, old, new) };
            return p;
        }
        let grown = self.with_own_lane(|lane| {
            if Self::is_last(lane, p, old) && new <= lane.end.load(Relaxed).addr() - p.addr() {
                // SAFETY: `p + new <= end`: inside the lane's chunk.
                lane.ptr.store(unsafe { p.add(new) }, Relaxed);
                true
            } else {
                false
            }
        });
        if grown == Some(true) {
            p
        } else {
            ptr::null_mut()
        }
    }

    /// A shrink of the most recent block gives its tail back.
    ///
    /// # Safety
    /// `p` is a live block of this arena of `old >= new` bytes, whose bytes past `new` are not
    /// used afterwards.
    unsafe fn free_tail(&self, p: *mut u8, old: usize, new: usize) {
        // SAFETY: `new <= old`: the tail lies inside the block.
        let tail = unsafe { p.add(new) };
        if old > new {
            // SAFETY: the block's tail, which a shrink gives up (the caller's contract).
            unsafe { self.free(tail, old - new) };
        }
    }

    /// Runs `f` with the lock held and every lane frozen: `Err(Busy)` (nothing done, a message
    /// on stderr naming `what`) when another thread holds the lock or is inside its lane, or
    /// the calling thread holds the lock.
    fn quiescent<R>(
        &self,
        what: &str,
        f: impl FnOnce(&mut Book, &Quiesced<'_, ArenaLane>) -> R,
    ) -> Result<R, Busy> {
        let Ok(mut book) = self.book.try_lock() else {
            report_busy(what);
            return Err(Busy);
        };
        let Some(quiet) = self.lanes.quiesce() else {
            report_busy(what);
            return Err(Busy);
        };
        let r = f(&mut book, &quiet);
        self.publish(&book);
        debug_check(|| self.check_book(&book));
        drop(quiet);
        Ok(r)
    }

    /// Frees every allocation: every lane keeps its current chunk (bumping from its start
    /// again), every other chunk goes back to the parent, marks become stale. Refused (see
    /// `SharedBump::quiescent`) while another thread is inside.
    ///
    /// # Safety
    /// No block of this arena is used after a reset that succeeds.
    pub unsafe fn reset(&self) -> Result<(), Busy> {
        self.reset_with(|| {})
    }

    /// [`SharedBump::reset`], running `before` first with the arena quiet (the stats' count
    /// of the implicit frees: no thread counts meanwhile an allocation the reset takes back).
    fn reset_with(&self, before: impl FnOnce()) -> Result<(), Busy> {
        self.quiescent("reset", |book, quiet| {
            before();
            book.chunks.retain(|c| quiet.iter().any(|(_, l)| l.chunk.load(Relaxed) == c.start));
            book.large.release_all();
            for (_, lane) in quiet.iter() {
                let chunk = lane.chunk.load(Relaxed);
                if !chunk.is_null() {
                    lane.ptr.store(chunk.wrapping_add(HEADER), Relaxed);
                }
            }
            book.clock += 1;
            book.reset_at = book.clock;
            book.marks.clear();
        })
    }

    /// A mark of every lane's position (`live_bytes`/`live_count`: the allocator's stats now,
    /// for the rewind to account what it frees). Refused while another thread is inside.
    pub fn mark(&self, live_bytes: usize, live_count: usize) -> Result<Mark, RewindError> {
        self.mark_with(|| (live_bytes, live_count))
    }

    /// [`SharedBump::mark`] with the live counts read while the arena is quiet.
    fn mark_with(&self, live: impl FnOnce() -> (usize, usize)) -> Result<Mark, RewindError> {
        let this = ptr::from_ref(self).cast_mut().cast::<u8>();
        self.quiescent("mark", |book, quiet| {
            let has_chunk = |(_, l): &(usize, &ArenaLane)| !l.chunk.load(Relaxed).is_null();
            let mut lanes = Vec::new();
            lanes
                .try_reserve_exact(quiet.iter().filter(has_chunk).count())
                .map_err(|_| RewindError::OutOfMemory)?;
            lanes.extend(quiet.iter().filter(has_chunk).map(|(i, l)| LanePos {
                lane: i,
                chunk: l.chunk.load(Relaxed),
                ptr: l.ptr.load(Relaxed),
                end: l.end.load(Relaxed),
            }));
            // Nothing moved since the newest mark: it names this position too (a loop of mark,
            // allocations, rewind keeps one snapshot).
            let same = book.marks.last().is_some_and(|s| s.next_seq == book.next_seq && s.lanes == lanes);
            if !same {
                book.marks.try_reserve(1).map_err(|_| RewindError::OutOfMemory)?;
                book.clock += 1;
                book.marks.push(Snapshot { epoch: book.clock, next_seq: book.next_seq, lanes });
            }
            let index = book.marks.len() - 1;
            let snapshot = &book.marks[index];
            let (live_bytes, live_count) = live();
            Ok(Mark {
                chunk: this,
                position: MARK_TAG,
                chunk_seq: index as u64,
                next_seq: snapshot.next_seq,
                epoch: snapshot.epoch,
                live_bytes,
                live_count,
            })
        })
        .unwrap_or(Err(RewindError::Busy))
    }

    /// Returns every lane to where `mark` found it: chunks taken after it go back to the
    /// parent, marks taken after it become invalid. Refused while another thread is inside, for
    /// a mark taken before the last reset, and for one a rewind to an earlier mark went past
    /// (or of another arena); a refused rewind changes nothing.
    ///
    /// # Safety
    /// No block of this arena allocated after `mark` is used after a rewind that succeeds.
    pub unsafe fn rewind(&self, mark: &Mark) -> Result<(), RewindError> {
        self.rewind_with(mark, || {})
    }

    /// [`SharedBump::rewind`], running `after` once it is done, with the arena still quiet
    /// (the stats' count of what it freed).
    fn rewind_with(&self, mark: &Mark, after: impl FnOnce()) -> Result<(), RewindError> {
        if mark.chunk != ptr::from_ref(self).cast_mut().cast::<u8>() || mark.position != MARK_TAG {
            return Err(RewindError::Invalidated);
        }
        self.quiescent("rewind", |book, quiet| {
            if mark.epoch <= book.reset_at {
                return Err(RewindError::Stale);
            }
            let index = usize::try_from(mark.chunk_seq).map_err(|_| RewindError::Invalidated)?;
            let Some(snapshot) = book.marks.get(index).filter(|s| s.epoch == mark.epoch) else {
                return Err(RewindError::Invalidated);
            };
            book.chunks.release_newer(snapshot.next_seq);
            book.large.release_newer(snapshot.next_seq);
            for (i, lane) in quiet.iter() {
                let at = snapshot.lanes.iter().find(|p| p.lane == i);
                let (chunk, ptr, end) = at
                    .map_or((ptr::null_mut(), ptr::null_mut(), ptr::null_mut()), |p| (p.chunk, p.ptr, p.end));
                lane.chunk.store(chunk, Relaxed);
                lane.ptr.store(ptr, Relaxed);
                lane.end.store(end, Relaxed);
            }
            book.marks.truncate(index + 1);
            after();
            Ok(())
        })
        .unwrap_or(Err(RewindError::Busy))
    }

    /// Bytes held in chunks.
    pub fn reserved(&self) -> usize {
        self.reserved.load(Relaxed)
    }

    /// Number of chunks held.
    pub fn chunk_count(&self) -> usize {
        self.held.load(Relaxed)
    }

    /// Whether a thread is inside lane `slot` (tests of the refusals).
    #[cfg(test)]
    fn set_busy(&self, slot: usize, busy: bool) {
        self.lanes.set_busy(slot, busy);
    }
}

/// The stderr line of a refused reset, mark or rewind. Written without anything that can
/// panic: C may reach it.
#[cold]
fn report_busy(what: &str) {
    let _ = writeln!(
        std::io::stderr(),
        "goo-memory: {what} of a shared arena refused: another thread is inside an allocation from it; call it once the other threads are done"
    );
}

#[cold]
fn report_reentry(what: &str) {
    let _ = writeln!(
        std::io::stderr(),
        "goo-memory: {what} from a shared arena refused: the calling thread is already inside the arena (its parent or a callback called back into it)"
    );
}

// SAFETY: blocks are carved from live chunks, disjoint: each lane's bump pointer moves only
// past handed out bytes (and back over its own most recent block, or to a mark whose later
// blocks the caller gives up), lanes never share a chunk, and dedicated chunks hold one block
// each; aligned by construction; valid until reset, rewind or drop.
unsafe impl Backend for SharedBump {
    fn check_state(&self) -> Result<(), InvariantError> {
        SharedBump::check(self)
    }

    const NAME: &'static str = NAME;
    const KIND: Kind = Kind::SharedArena;

    /// A bump in the calling thread's lane, inside its gate.
    #[inline(always)]
    unsafe fn try_alloc_inline(&self, home: Option<usize>, size: usize, align: usize) -> *mut u8 {
        let Some(lane) = home.and_then(|slot| self.lanes.enter(slot)) else {
            return ptr::null_mut();
        };
        // SAFETY: the hook's contract: `0 < size <= isize::MAX - 16` and `align` 0 (natural:
        // at most 16) or a power of two that passed the request check.
        unsafe { Self::bump_in(&lane, size, resolve_align(size, align)) }
    }

    /// The most recent block of the calling thread's lane gives its bytes back; any other free
    /// is a no-op.
    #[inline(always)]
    unsafe fn try_free_inline(&self, home: Option<usize>, ptr: *mut u8, size: usize, _align: usize) -> bool {
        let Some(lane) = home.and_then(|slot| self.lanes.enter(slot)) else {
            return false;
        };
        Self::give_back_last(&lane, ptr, size);
        true
    }

    fn alloc(&self, size: usize, align: usize, _options: AllocOptions) -> *mut u8 {
        SharedBump::alloc(self, size, align)
    }

    unsafe fn free(&self, ptr: *mut u8, size: usize, _align: usize) {
        // SAFETY: forwarded contract: a live block of this arena, not used afterwards.
        unsafe { SharedBump::free(self, ptr, size) };
    }

    unsafe fn realloc(
        &self,
        ptr: *mut u8,
        old_size: usize,
        new_size: usize,
        align: usize,
        _options: AllocOptions,
    ) -> *mut u8 {
        // SAFETY: the caller vouches for the block (a live one of `old_size` bytes, which the
        // in-place resize needs too).
        unsafe {
            resize_or_move(
                ptr,
                old_size,
                new_size,
                align,
                || self.resize_in_place(ptr, old_size, new_size),
                || SharedBump::alloc(self, new_size, align),
                // No annotation: the shared arena hands its bytes out unannotated, so marking
                // them would make a correct program's later use of them a report.
                |_, _| {},
            )
        }
    }

    fn bytes_reserved(&self, _bytes_allocated: usize) -> usize {
        self.reserved()
    }
}

/// Creates a C shared arena (stats tracked, strategy `Null`).
///
/// # Safety
/// As for [`SharedBump::new`].
pub unsafe fn create(parent: *mut GooAllocator, initial_size: usize, limit: usize) -> NonNull<GooAllocator> {
    // SAFETY: forwarded contract.
    Managed::create(unsafe { SharedBump::new(parent, initial_size, limit) }, AllocStrategy::Null, true)
}

/// The shared arena behind a `GooAllocator*`, if it is one.
///
/// # Safety
/// `allocator` must be null or valid (and live if it is a library allocator).
pub unsafe fn from_raw<'a>(allocator: *const GooAllocator) -> Option<&'a SharedBump> {
    // SAFETY: forwarded contract.
    unsafe { Managed::<SharedBump>::try_backend(allocator) }
}

/// Resets the shared arena `allocator` and accounts the implicit frees. False if it is not a
/// shared arena, or (with a message on stderr) while another thread is inside it.
///
/// # Safety
/// As for [`from_raw`]; no block of the arena may be used afterwards.
pub unsafe fn reset_raw(allocator: *mut GooAllocator) -> bool {
    // SAFETY: forwarded contract.
    let Some(arena) = (unsafe { from_raw(allocator) }) else { return false };
    // SAFETY: forwarded contract.
    let done = arena.reset_with(|| unsafe { front::record_reset(allocator) }).is_ok();
    if done {
        front::reset_done(allocator);
    }
    done
}

/// A mark of the shared arena `allocator`: `None` if it is not one, `Err(Busy)` (with a
/// message) while another thread is inside it.
///
/// # Safety
/// As for [`from_raw`].
pub unsafe fn mark_raw(allocator: *mut GooAllocator) -> Option<Result<Mark, RewindError>> {
    // SAFETY: forwarded contract.
    let arena = unsafe { from_raw(allocator) }?;
    Some(arena.mark_with(|| {
        // SAFETY: forwarded contract.
        let s = unsafe { front::stats(allocator) };
        (s.bytes_allocated, s.allocation_count)
    }))
}

/// Rewinds the shared arena `allocator` to `mark`, accounting what it frees.
///
/// # Safety
/// As for [`from_raw`]; no block allocated after the mark may be used afterwards.
pub unsafe fn rewind_raw(allocator: *mut GooAllocator, mark: &Mark) -> Result<(), RewindError> {
    // SAFETY: forwarded contract.
    let arena = unsafe { from_raw(allocator) }.ok_or(RewindError::NotAnArena)?;
    // SAFETY: forwarded contract.
    arena.rewind_with(mark, || unsafe { record_rewind(allocator, mark) })
}

impl SharedBump {
    /// Verifies the invariants of the arena's state (the equations beside `Book`, and its two
    /// chunk lists' own), under the lock: safe while other threads allocate. Reads only;
    /// allocates nothing. An error too when the calling thread holds the lock.
    pub fn check(&self) -> Result<(), InvariantError> {
        let book =
            self.book.lock().map_err(|_| InvariantError::new(NAME, "checked from inside the arena"))?;
        self.check_book(&book)
    }

    fn check_book(&self, book: &Book) -> Result<(), InvariantError> {
        check_pair(&book.chunks, &book.large, book.next_seq, NAME)?;
        let mut seen = [ptr::null_mut::<u8>(); LANES];
        for i in 0..LANES {
            let lane = self.lanes.get(i);
            let (chunk, end) = (lane.chunk.load(Relaxed), lane.end.load(Relaxed));
            // `ptr` last: it is the one field a lane's thread moves without the lock.
            let ptr = lane.ptr.load(Relaxed);
            if chunk.is_null() {
                ensure(ptr.is_null() && end.is_null(), NAME, "K(l) == null <=> ptr(l) == end(l) == null")?;
            } else {
                let found = book.chunks.iter().find(|c| c.start == chunk);
                ensure(found.is_some(), NAME, "K(l) != null => K(l) ∈ C")?;
                let c = found.expect("checked above");
                ensure(
                    c.data <= ptr && ptr <= end && end == c.end,
                    NAME,
                    "K(l) != null => data(K(l)) <= ptr(l) <= end(l) == end(K(l))",
                )?;
                ensure(!seen[..i].contains(&chunk), NAME, "K(l) != K(m) for lanes l != m")?;
            }
            seen[i] = chunk;
            ensure(
                lane.next_chunk_size.load(Relaxed) <= self.max_chunk,
                NAME,
                "next_chunk_size(l) <= max_chunk",
            )?;
        }
        ensure(
            self.reserved.load(Relaxed) == book.reserved()
                && self.held.load(Relaxed) == book.chunks.count() + book.large.count(),
            NAME,
            "reserved == C.bytes + L.bytes, held == |C| + |L|",
        )?;
        ensure(self.limit == 0 || book.reserved() <= self.limit, NAME, "limit != 0 => reserved <= limit")?;
        let mut previous: Option<&Snapshot> = None;
        for snapshot in &book.marks {
            ensure(
                book.reset_at < snapshot.epoch
                    && snapshot.epoch <= book.clock
                    && previous.is_none_or(|p| p.epoch < snapshot.epoch),
                NAME,
                "reset_at < marks[i].epoch < marks[i + 1].epoch <= clock",
            )?;
            ensure(
                snapshot.next_seq <= book.next_seq
                    && previous.is_none_or(|p| p.next_seq <= snapshot.next_seq),
                NAME,
                "marks[i].next_seq <= marks[i + 1].next_seq <= next_seq",
            )?;
            for p in &snapshot.lanes {
                let c = book.chunks.iter().find(|c| c.start == p.chunk);
                ensure(
                    c.is_some_and(|c| {
                        c.seq < snapshot.next_seq && c.data <= p.ptr && p.ptr <= p.end && p.end == c.end
                    }),
                    NAME,
                    "p ∈ marks[i].lanes => p.chunk ∈ C, seq(p.chunk) < marks[i].next_seq, data(p.chunk) <= p.ptr <= p.end == end(p.chunk)",
                )?;
            }
            previous = Some(snapshot);
        }
        Ok(())
    }
}

/// Verifies the invariants of the shared arena `allocator` ([`SharedBump::check`]) and of its
/// stats.
///
/// # Safety
/// As for [`from_raw`].
pub unsafe fn check_raw(allocator: *mut GooAllocator) -> Result<(), InvariantError> {
    // SAFETY: forwarded contract.
    unsafe { Managed::<SharedBump>::check_raw(allocator) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new_arena() -> SharedBump {
        // SAFETY: the built-in allocator is a static, usable from any thread.
        unsafe { SharedBump::new(crate::default::builtin(), 256, 0) }
    }

    /// A lane's thread inside its gate makes reset, mark and rewind refuse, changing nothing.
    #[test]
    fn reset_mark_and_rewind_refuse_while_a_lane_is_busy() {
        let arena = new_arena();
        let a = arena.alloc(64, 8);
        let mark = arena.mark(0, 0).expect("quiet");
        let b = arena.alloc(64, 8);
        assert!(!a.is_null() && !b.is_null());
        arena.set_busy(7, true);
        // SAFETY: no block of it is used afterwards.
        assert_eq!(unsafe { arena.reset() }, Err(Busy));
        assert_eq!(arena.mark(0, 0), Err(RewindError::Busy));
        // SAFETY: no block allocated after the mark is used afterwards.
        assert_eq!(unsafe { arena.rewind(&mark) }, Err(RewindError::Busy));
        assert_eq!(arena.check(), Ok(()));
        arena.set_busy(7, false);
        // SAFETY: no block allocated after the mark is used afterwards.
        assert_eq!(unsafe { arena.rewind(&mark) }, Ok(()));
        assert_eq!(arena.alloc(64, 8), b, "the rewind gave b's bytes back");
        // SAFETY: no block of it is used afterwards.
        assert_eq!(unsafe { arena.reset() }, Ok(()));
        assert_eq!(arena.alloc(64, 8), a, "the reset kept the lane's chunk");
        assert_eq!(arena.check(), Ok(()));
    }

    /// Marks nest as a stack; a rewind to an outer one invalidates the inner ones; a mark with
    /// nothing allocated since the newest one reuses it; an arena refuses a shared mark and the
    /// other way round.
    #[test]
    fn marks_are_a_stack_of_snapshots() {
        let arena = new_arena();
        let outer = arena.mark(0, 0).unwrap();
        arena.alloc(100, 8);
        let inner = arena.mark(0, 0).unwrap();
        assert_eq!(arena.mark(0, 0).unwrap(), inner, "nothing moved: the same snapshot");
        for _ in 0..50 {
            arena.alloc(100, 8); // new chunks
        }
        assert!(arena.chunk_count() > 2);
        // SAFETY: no block allocated after the mark is used afterwards.
        assert_eq!(unsafe { arena.rewind(&inner) }, Ok(()));
        assert_eq!(arena.chunk_count(), 1);
        // SAFETY: no block allocated after the mark is used afterwards.
        assert_eq!(unsafe { arena.rewind(&inner) }, Ok(()), "again");
        // SAFETY: no block allocated after the mark is used afterwards.
        assert_eq!(unsafe { arena.rewind(&outer) }, Ok(()));
        // SAFETY: no block allocated after the mark is used afterwards.
        assert_eq!(unsafe { arena.rewind(&inner) }, Err(RewindError::Invalidated));
        assert_eq!(arena.chunk_count(), 0, "the outer mark was taken before the first chunk");
        // SAFETY: no block of it is used afterwards.
        assert_eq!(unsafe { arena.reset() }, Ok(()));
        // SAFETY: no block allocated after the mark is used afterwards.
        assert_eq!(unsafe { arena.rewind(&outer) }, Err(RewindError::Stale));
        let other = new_arena();
        // SAFETY: no block allocated after the mark is used afterwards.
        assert_eq!(unsafe { other.rewind(&arena.mark(0, 0).unwrap()) }, Err(RewindError::Invalidated));
        // SAFETY: the built-in allocator is a static.
        let bump = unsafe { crate::allocators::arena::Bump::new(crate::default::builtin(), 256, 0) };
        for _ in 0..10 {
            bump.mark(0, 0); // its clock past the shared mark's epoch
        }
        // SAFETY: no block allocated after the mark is used afterwards.
        assert_eq!(unsafe { bump.rewind(&arena.mark(0, 0).unwrap()) }, Err(RewindError::Invalidated));
        // SAFETY: no block allocated after the mark is used afterwards.
        assert_eq!(unsafe { arena.rewind(&bump.mark(0, 0)) }, Err(RewindError::Invalidated));
        assert_eq!(arena.check(), Ok(()));
    }

    /// Each corruption breaks one equation and `check` names it; undoing it restores the state.
    #[test]
    fn check_reports_each_broken_equation() {
        let arena = new_arena();
        for _ in 0..20 {
            assert!(!arena.alloc(100, 8).is_null());
        }
        assert!(!arena.alloc(5000, 16).is_null(), "a dedicated chunk");
        arena.mark(0, 0).unwrap();
        assert_eq!(arena.check(), Ok(()));
        let broken = |arena: &SharedBump| arena.check().expect_err("a broken equation").broken;
        let lane = arena.lanes.get(current_slot());
        let ptr = lane.ptr.load(Relaxed);
        lane.ptr.store(lane.end.load(Relaxed).wrapping_add(1), Relaxed);
        assert_eq!(broken(&arena), "K(l) != null => data(K(l)) <= ptr(l) <= end(l) == end(K(l))");
        lane.ptr.store(ptr, Relaxed);
        let chunk = lane.chunk.swap(ptr::null_mut(), Relaxed);
        assert_eq!(broken(&arena), "K(l) == null <=> ptr(l) == end(l) == null");
        let other = arena.lanes.get(OVERFLOW);
        for (from, to) in [(&lane.chunk, &other.chunk), (&lane.ptr, &other.ptr), (&lane.end, &other.end)] {
            to.store(from.load(Relaxed), Relaxed);
        }
        other.chunk.store(chunk, Relaxed);
        lane.chunk.store(chunk, Relaxed);
        assert_eq!(broken(&arena), "K(l) != K(m) for lanes l != m");
        for field in [&other.chunk, &other.ptr, &other.end] {
            field.store(ptr::null_mut(), Relaxed);
        }
        arena.reserved.fetch_add(1, Relaxed);
        assert_eq!(broken(&arena), "reserved == C.bytes + L.bytes, held == |C| + |L|");
        arena.reserved.fetch_sub(1, Relaxed);
        arena.book.lock().unwrap().marks[0].epoch = 0;
        assert_eq!(broken(&arena), "reset_at < marks[i].epoch < marks[i + 1].epoch <= clock");
        arena.book.lock().unwrap().marks.clear();
        assert_eq!(arena.check(), Ok(()), "restored");
    }

    const OVERFLOW: usize = SLOTS;
}
