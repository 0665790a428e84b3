//! The arena: bump allocation in chunks taken from a parent allocator, freed all at once.
//!
//! [`Bump`] is the mechanism (a [`Backend`], so C gets it as a `GooAllocator`); [`Arena`] is the
//! Rust API in the style of bumpalo, with an inline fast path. Chunks grow geometrically up to a
//! cap; a request too big for a normal chunk gets a dedicated chunk. Freeing or resizing the most
//! recent allocation happens in place; freeing a block that has a dedicated chunk returns the
//! chunk to the parent (found by the block's address in an index, in O(1) however many the
//! arena holds); other frees are accepted and only counted. `reset` keeps the largest chunk;
//! checkpoints ([`Mark`]) rewind to an earlier point.
//!
//! An arena is not thread-safe: neither [`Bump`] nor [`Arena`] is `Sync`.

use core::cell::{Cell, UnsafeCell};
use core::ptr::{self, NonNull};
use core::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crate::addr_set::AddrMap;
use crate::allocators::chunk_list::{check_pair, Chunk, NumberedChunks};
use crate::policy::backend::{drop_managed, Backend, Kind, Managed};
use crate::policy::invariant::{debug_check, ensure, InvariantError};
use crate::policy::{front, sanitize};
use crate::raw::{resolve_align, AllocOptions, AllocStrategy, GooAllocator, MAX_NATURAL_ALIGN};

/// Default size of the first chunk when the caller gives 0.
pub const DEFAULT_CHUNK_SIZE: usize = 4096;
/// Normal chunks stop doubling at this size (or the initial size, if larger).
pub const MAX_CHUNK_SIZE: usize = 16 << 20;
/// The least alignment of a chunk (a chunk for a more aligned request has that alignment).
const CHUNK_ALIGN: usize = MAX_NATURAL_ALIGN;

/// Bytes of every chunk's header: the chunk list's numbered header (link, size, alignment and
/// creation number); the data area after it starts `CHUNK_ALIGN`-aligned.
const HEADER: usize = NumberedChunks::HEADER;
const _: () = assert!(HEADER.is_multiple_of(CHUNK_ALIGN));

/// Where a new arena's clock starts: arenas made one after another get numbers spread over
/// `[0, 2^48)` (a Weyl sequence of the golden ratio), so a mark stamped by one arena lies in
/// another's range of live stamps (above its last reset, up to its clock) only if the two
/// ranges meet, which takes billions of marks. Far below `u64::MAX`: the clock never wraps.
fn clock_base() -> u64 {
    static ARENAS: AtomicU64 = AtomicU64::new(1);
    ARENAS.fetch_add(1, Relaxed).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 16
}

/// Whether a block of `size` bytes at `align` is one [`carve`] and a new chunk can take:
/// `size > 0`, `align` a power of two and `size + align - 1 <= isize::MAX`. Every request the
/// front door passes to a backend is; the mechanisms' safe methods check it for callers that
/// come another way (their `Backend` methods are safe to call with anything).
#[inline(always)]
pub(crate) fn carvable(size: usize, align: usize) -> bool {
    size > 0 && align.is_power_of_two() && size <= isize::MAX as usize - (align - 1)
}

/// Where a block of `size` bytes at `align` goes in the free bytes `[ptr, end)` of a chunk: the
/// block and the bump pointer after it, or `None` when it does not fit. The arena's bump, and
/// each lane's of the shared arena.
///
/// # Safety
/// `ptr <= end` bound bytes of one chunk, or both are null (then nothing fits: `size > 0`);
/// `align` is a power of two and `size + align - 1 <= isize::MAX` (any request the front door
/// passes, and any `Layout`): [`carvable`].
#[inline(always)]
pub(crate) unsafe fn carve(
    ptr: *mut u8,
    end: *mut u8,
    size: usize,
    align: usize,
) -> Option<(NonNull<u8>, *mut u8)> {
    debug_assert!(align.is_power_of_two() && size <= isize::MAX as usize - (align - 1));
    let addr = ptr.addr();
    // Each call's bump pointer depends on the last one's through memory: few steps from `ptr`
    // to the next bump pointer (round up, add) keep back-to-back allocations fast. A sum that
    // wraps (only possible where addresses reach the top of `usize`) leaves `next` below
    // `ptr`, and the check below refuses it.
    let block = addr.wrapping_add(align - 1) & !(align - 1);
    let next = block.wrapping_add(size);
    if next.wrapping_sub(addr) <= end.addr() - addr {
        // SAFETY: `ptr <= block <= next <= end` (the check, with no wrap: see above): the
        // block and the new bump pointer lie inside the chunk; a non-null chunk means a
        // non-null `ptr` (no chunk is `ptr == end == null`, where nothing fits).
        unsafe { Some((NonNull::new_unchecked(ptr.with_addr(block)), ptr.with_addr(next))) }
    } else {
        // A new chunk is rare: keep the bump the straight path wherever this is inlined.
        crate::policy::cold_path();
        None
    }
}

/// An arena's resize (the arena's and the shared arena's): `in_place` (the block, or null),
/// tried only where the block already has the alignment asked for (a block at its natural
/// alignment, say 4 for 4 bytes, grown to 100 bytes must move to a 16-aligned one: the front
/// door asks for the natural alignment of the larger size); else a block from `alloc` with the
/// contents copied (the old one's bytes come back at reset; `retire`, the arena's memory-tool
/// annotation, marks them no-access meanwhile). Null if both fail.
///
/// # Safety
/// `ptr` is a live block of `old_size` bytes; `alloc` returns null or a fresh block of
/// `new_size` bytes.
#[inline]
pub(crate) unsafe fn resize_or_move(
    ptr: *mut u8,
    old_size: usize,
    new_size: usize,
    align: usize,
    in_place: impl FnOnce() -> *mut u8,
    alloc: impl FnOnce() -> *mut u8,
    retire: impl FnOnce(*mut u8, usize),
) -> *mut u8 {
    if (ptr as usize).is_multiple_of(align) {
        let same = in_place();
        if !same.is_null() {
            return same;
        }
    }
    let new = alloc();
    if !new.is_null() {
        // SAFETY: both blocks live and disjoint (the new one is fresh), each valid for the
        // copied length (the contract).
        unsafe { ptr::copy_nonoverlapping(ptr, new, old_size.min(new_size)) };
        retire(ptr, old_size);
    }
    new
}

/// The mutable state of an arena.
///
/// `C` (`current`) is the list of normal chunks, newest first: the newest is the one bumped in;
/// `L` (`large`) the list of dedicated chunks, one block each, newest first. Both are numbered
/// chunk lists of the arena's parent, each with its own equations (beside `ChunkList`); their
/// numbers come from `next_seq`. `large_at` indexes `L` by block, so that a free finds its
/// dedicated chunk, and the chunk before it along `L` (which links to it), without walking `L`.
/// Between operations, with `data(c)` and `end(c)` the bounds of chunk `c`'s data area,
/// `block(c)` its block (`data(c)` rounded up to `c.align`, where the arena put it) and
/// `newer(c)` the chunk before `c` along `L` (null for the newest):
///
/// ```text
/// C empty          <=>  ptr == end == null
/// C not empty       =>  data(newest of C) <= ptr <= end == end(newest of C)
/// c.seq            <   next_seq                    for c ∈ C ∪ L
/// C ∩ L            ==  ∅                           (every seq distinct)
/// large_at         ==  { block(c) ↦ (c, newer(c)) : c ∈ L }
/// limit != 0        =>  C.bytes + L.bytes <= limit
/// next_chunk_size  <=  max_chunk
/// born             <=  reset_at <= clock
/// cuts[i].pos      <   cuts[i + 1].pos,   cuts[i].at < cuts[i + 1].at
/// reset_at         <   cut.at <= clock              for cut ∈ cuts
/// ```
///
/// Numbers fall along each list, so the newest chunk of each bounds the rest, and one merge walk
/// of the two lists finds a number in both. [`Bump::check`] verifies all of it.
///
/// Marks. A position is `(current chunk's seq, bump address, next_seq)`, ordered as the arena
/// moves on between rewinds (the bump moves up, a new current chunk has a higher number, a
/// dedicated chunk raises `next_seq`); with no current chunk the first two are `(0, 0)`, and
/// the mark names the arena itself in place of a chunk, so that another arena's mark at that
/// position is refused. `clock` starts at a number drawn for the arena ([`clock_base`]: another
/// arena's stamps fall outside this one's range, nearly always) and ticks at every mark (which
/// records it, `Mark::epoch`) and every rewind. A mark is
/// valid while no reset came after it (`mark.epoch > reset_at`) and no rewind after it took the
/// arena back below its position: a rewind to position `q` at clock `at` invalidates every mark
/// above `q` stamped before `at`. `cuts` keeps the rewinds that still matter, as a staircase: a
/// new rewind removes the cuts at or above its position (it invalidates all they did) and adds
/// its own when marks above its position may exist (`marked`, the highest position marked
/// since the last cut, says so, or a removed cut did); a mark is invalid when the last cut
/// below its position came after it. A mark taken at the very position a later rewind returns
/// to stays valid: rewinding to it frees what that rewind freed. So a loop of mark,
/// allocations, rewind adds no cut, and cuts never outnumber the distinct positions rewound
/// to.
struct State {
    ptr: *mut u8,
    end: *mut u8,
    current: NumberedChunks,
    /// Dedicated chunks, freed as soon as their block is.
    large: NumberedChunks,
    /// `L` by block: each dedicated chunk and its newer neighbor along `L`.
    large_at: AddrMap<Dedicated>,
    next_chunk_size: usize,
    /// The arena's clock: every chunk, mark and rewind takes the next number, so a mark's
    /// `next_seq` orders it against chunks (created after it: a larger seq) and rewinds.
    next_seq: u64,
    /// Ticks at every mark and rewind (see `State` on marks).
    clock: u64,
    /// The clock when the arena was made: its own marks are stamped later.
    born: u64,
    /// The clock at the last reset: marks stamped at or before it are stale.
    reset_at: u64,
    /// The rewinds that still invalidate marks: positions and clocks, both increasing.
    cuts: Vec<Cut>,
    /// The highest position marked since the last cut or reset.
    marked: Pos,
    /// Debug builds: slow-path steps since the last full check (see [`Bump::debug_check_step`]).
    unchecked: usize,
}

/// A dedicated chunk in the index `large_at`: its start, and the start of the chunk before it
/// along `L` (the one that links to it; null for the newest), so that freeing its block unlinks
/// it without a walk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Dedicated {
    chunk: *mut u8,
    newer: *mut u8,
}

/// Where the arena puts the block of dedicated chunk `c`: `data(c)` rounded up to `c.align` (the
/// request's alignment, or the list's least one, 16, to which the data area is aligned anyway).
fn block_of(c: &Chunk) -> usize {
    c.data.addr() + (c.data.addr().wrapping_neg() & (c.align - 1))
}

/// A position in an arena: the number of its current chunk, the bump address, the next chunk's
/// number (see `State` on marks).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Pos(u64, usize, u64);

impl Pos {
    /// Where a new arena is, below every other position.
    const EMPTY: Pos = Pos(0, 0, 0);
}

/// A rewind that invalidated the marks above `pos` stamped before `at`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Cut {
    pos: Pos,
    at: u64,
}

impl State {
    /// Bytes held in chunks.
    fn reserved(&self) -> usize {
        self.current.bytes() + self.large.bytes()
    }

    /// Sets the `newer` of the dedicated chunk starting at `start` (null: nothing to do).
    ///
    /// # Safety
    /// `start` is null or a live chunk of `L`.
    unsafe fn set_newer(&mut self, start: *mut u8, newer: *mut u8) {
        if start.is_null() {
            return;
        }
        // SAFETY: a live chunk of `L` (the contract).
        let c = unsafe { self.large.chunk_at(start) };
        if let Some(d) = self.large_at.get_mut(&block_of(&c)) {
            d.newer = newer;
        }
    }

    /// Drops the index's table once `L` is empty (freeing many large blocks leaves a large
    /// one); a small table is kept for the next dedicated chunk.
    fn shrink_index(&mut self) {
        if self.large_at.is_empty() && self.large_at.capacity() > 64 {
            self.large_at = AddrMap::default();
        }
    }
}

/// A checkpoint of an arena (`GooArenaMark` in C): rewinding to it returns everything allocated
/// after it. Valid until a reset, or until a rewind takes the arena back below its position (a
/// rewind to an earlier mark does).
///
/// ```
/// use goo_memory_core::{arena::{self, Arena}, AllocOptions, dispatch};
/// let arena = Arena::new();
/// // SAFETY: a live arena; the block after the mark is not used after the rewind.
/// unsafe {
///     let mark = arena::mark_raw(arena.as_ptr()).unwrap();
///     dispatch::alloc(arena.as_ptr(), 100, 0, AllocOptions::DEFAULT);
///     arena::rewind_raw(arena.as_ptr(), &mark).unwrap();
/// }
/// assert_eq!(arena.stats().allocation_count, 0);
/// ```
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mark {
    /// The current chunk's start (a shared arena's mark: the arena itself).
    pub(crate) chunk: *mut u8,
    /// The bump address (a shared arena's mark: `shared_arena::MARK_TAG`).
    pub(crate) position: *mut u8,
    /// The current chunk's number (a shared arena's mark: the index of its snapshot).
    pub(crate) chunk_seq: u64,
    pub(crate) next_seq: u64,
    /// The arena's clock when the mark was taken (see `State` on marks).
    pub(crate) epoch: u64,
    pub(crate) live_bytes: usize,
    pub(crate) live_count: usize,
}

/// Why a rewind was refused.
///
/// ```
/// use goo_memory_core::arena::{self, Arena, Mark, RewindError};
/// let mut a = Arena::new();
/// // SAFETY: a live arena.
/// let mark = unsafe { arena::mark_raw(a.as_ptr()) }.unwrap();
/// a.reset();
/// // SAFETY: as above.
/// assert_eq!(unsafe { arena::rewind_raw(a.as_ptr(), &mark) }, Err(RewindError::Stale));
/// assert_eq!(unsafe { arena::rewind_raw(a.as_ptr(), &Mark::INVALID) }, Err(RewindError::Invalidated));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RewindError {
    /// The mark was taken before the arena's last reset.
    Stale,
    /// A rewind to an earlier mark took the arena back below the mark's position (returning its
    /// chunk, say), the mark lies ahead of the arena's current position, or it was not taken on
    /// this arena.
    Invalidated,
    /// The allocator is not an arena.
    NotAnArena,
    /// The arena could not record the rewind (out of memory for its bookkeeping); nothing
    /// changed.
    OutOfMemory,
    /// A shared arena: another thread is inside an allocation (or a reset, mark or rewind of
    /// the arena); nothing changed.
    Busy,
}

impl core::fmt::Display for RewindError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            RewindError::Stale => "the mark was taken before the arena's last reset",
            RewindError::Invalidated => {
                "the mark is no longer valid (a rewind to an earlier mark went past it, or it was not taken on this arena)"
            }
            RewindError::NotAnArena => "the allocator is not an arena",
            RewindError::OutOfMemory => "out of memory recording the rewind",
            RewindError::Busy => "another thread is inside an allocation from the arena",
        })
    }
}

impl std::error::Error for RewindError {}

impl Mark {
    /// A mark no arena accepts (what `goo_arena_mark` returns for a non-arena).
    pub const INVALID: Mark = Mark {
        chunk: ptr::null_mut(),
        position: ptr::null_mut(),
        chunk_seq: 0,
        next_seq: 0,
        epoch: u64::MAX,
        live_bytes: 0,
        live_count: 0,
    };
}

/// How an arena sizes its chunks.
///
/// ```
/// use core::alloc::Layout;
/// use goo_memory_core::arena::{Bump, ChunkPolicy};
/// use goo_memory_core::{builtin, Allocator};
/// // Chunks of exactly 4 KiB (a region's policy), at most two, nothing larger than a chunk.
/// let policy = ChunkPolicy { initial_size: 4096, limit: 8192, grow: false, allow_large: false };
/// // SAFETY: the built-in allocator is a static: it outlives the arena.
/// let fixed = Allocator::new(unsafe { Bump::with_policy(builtin(), policy) });
/// let big = Layout::from_size_align(3000, 8).unwrap();
/// let (_a, _b) = (fixed.allocate(big).unwrap(), fixed.allocate(big).unwrap());
/// assert_eq!((fixed.backend().chunk_count(), fixed.backend().reserved()), (2, 8192));
/// assert!(fixed.allocate(big).is_err(), "a third chunk would pass the limit");
/// assert!(fixed.allocate(Layout::from_size_align(5000, 8).unwrap()).is_err(), "no dedicated chunks");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChunkPolicy {
    /// Bytes of the first chunk (0 = [`DEFAULT_CHUNK_SIZE`]).
    pub initial_size: usize,
    /// Maximum bytes of chunks held at once; 0 = no limit.
    pub limit: usize,
    /// Grow chunks geometrically (arena) or keep every chunk at `initial_size` (region).
    pub grow: bool,
    /// Serve a request too big for a chunk with a dedicated chunk (else it fails).
    pub allow_large: bool,
}

/// The arena mechanism: what an [`Arena`](crate::arena::Arena) and a C arena allocate from.
/// Behind an [`Allocator`](crate::Allocator) it gets the front door (stats, strategies,
/// callbacks); [`from_raw`] finds it behind any arena's vtable.
///
/// ```
/// use core::alloc::Layout;
/// use goo_memory_core::arena::{self, Arena, Bump};
/// use goo_memory_core::{builtin, Allocator};
/// // SAFETY: the built-in allocator is a static: it outlives the arena.
/// let bump = Allocator::new(unsafe { Bump::new(builtin(), 1024, 0) });
/// let layout = Layout::new::<[u64; 4]>();
/// let (a, b) = (bump.allocate(layout).unwrap(), bump.allocate(layout).unwrap());
/// assert_eq!(b.as_ptr().addr() - a.as_ptr().addr(), 32, "one after the other");
/// assert!(bump.backend().contains(b.as_ptr(), 32));
/// assert_eq!(bump.backend().chunk_count(), 1);
/// bump.backend().check().unwrap();
///
/// // The mechanism of an `Arena` handle, through its vtable:
/// let handle = Arena::new();
/// handle.alloc([0u8; 5000]);
/// // SAFETY: a live arena.
/// let mechanism = unsafe { arena::from_raw(handle.as_ptr()) }.unwrap();
/// assert!(mechanism.reserved() >= 5000);
/// ```
pub struct Bump {
    state: UnsafeCell<State>,
    /// Maximum bytes of chunks held at once; 0 = no limit. A cell for [`Bump::set_limit`].
    limit: Cell<usize>,
    max_chunk: usize,
    grow: bool,
    allow_large: bool,
    /// Owned by the library (a thread's temporary arena): a destroy through the vtable is
    /// refused (see [`Bump::pin`]).
    pinned: Cell<bool>,
}

impl Bump {
    /// An empty arena taking chunks from `parent` (a valid allocator: callers
    /// resolve null to the current one), the first of `initial_size` bytes (0 = [`DEFAULT_CHUNK_SIZE`]), never holding
    /// more than `limit` bytes (0 = no limit).
    ///
    /// # Safety
    /// `parent` must be a valid allocator that outlives the arena.
    pub unsafe fn new(parent: *mut GooAllocator, initial_size: usize, limit: usize) -> Self {
        let policy = ChunkPolicy { initial_size, limit, grow: true, allow_large: true };
        // SAFETY: forwarded contract.
        unsafe { Self::with_policy(parent, policy) }
    }

    /// An empty arena with an explicit chunk policy. With `grow` off, every chunk is exactly
    /// `initial_size` bytes from the parent, header included (a region).
    ///
    /// # Safety
    /// As for [`Bump::new`].
    pub unsafe fn with_policy(parent: *mut GooAllocator, policy: ChunkPolicy) -> Self {
        let ChunkPolicy { initial_size, limit, grow, allow_large } = policy;
        let initial = if initial_size == 0 { DEFAULT_CHUNK_SIZE } else { initial_size };
        let initial = if grow { initial.saturating_add(HEADER) } else { initial.max(HEADER + CHUNK_ALIGN) };
        let initial = initial.min(isize::MAX as usize / 2);
        let base = clock_base();
        // The parent is fixed at creation so chunks always go back where they came from.
        // SAFETY: the parent outlives the arena (this function's contract), so it outlives its
        // lists; CHUNK_ALIGN is a power of two, 16.
        let (current, large) =
            unsafe { (NumberedChunks::new(parent, CHUNK_ALIGN), NumberedChunks::new(parent, CHUNK_ALIGN)) };
        Bump {
            state: UnsafeCell::new(State {
                ptr: ptr::null_mut(),
                end: ptr::null_mut(),
                current,
                large,
                large_at: AddrMap::default(),
                next_chunk_size: initial,
                next_seq: 0,
                clock: base,
                born: base,
                reset_at: base,
                cuts: Vec::new(),
                marked: Pos::EMPTY,
                unchecked: 0,
            }),
            limit: Cell::new(limit),
            max_chunk: if grow { MAX_CHUNK_SIZE.max(initial) } else { initial },
            grow,
            allow_large,
            pinned: Cell::new(false),
        }
    }

    #[allow(clippy::mut_from_ref)]
    #[inline(always)]
    fn st(&self) -> &mut State {
        // SAFETY: `Bump` is !Sync, and every method calls `st()` once and passes the borrow down
        // to helpers (which take `&mut State`, never calling `st()` again); the parent is a
        // different allocator, so nothing re-enters the arena while a borrow is alive. Miri
        // checks this discipline under Stacked Borrows.
        unsafe { &mut *self.state.get() }
    }

    /// The fast path: bump inside the current chunk, or `None`.
    ///
    /// # Safety
    /// `size > 0`, `align` is a power of two and `size + align - 1 <= isize::MAX` (any request
    /// the front door passes to a backend): the bump's arithmetic relies on it (an alignment
    /// of 0, or a size of 0 before the first chunk, made a null `NonNull`: Miri).
    #[inline(always)]
    pub unsafe fn try_bump(&self, size: usize, align: usize) -> Option<NonNull<u8>> {
        let st = self.st();
        // SAFETY: `ptr` and `end` bound the current chunk's free bytes, or are both null (the
        // invariant of `State`); the size and alignment as `carve` wants (this function's
        // contract).
        let (block, ptr) = unsafe { carve(st.ptr, st.end, size, align) }?;
        st.ptr = ptr;
        Some(block)
    }

    /// Allocates, taking a new chunk if needed; null if the parent refuses or the limit is hit,
    /// and for a size of 0, an `align` that is no power of two or a `size` past `isize::MAX`
    /// with it (no request the front door passes; this method is safe to call with anything).
    #[inline(always)]
    pub fn alloc(&self, size: usize, align: usize) -> *mut u8 {
        if !carvable(size, align) {
            return ptr::null_mut();
        }
        // SAFETY: checked just above.
        match unsafe { self.try_bump(size, align) } {
            Some(p) => sanitize::handed_out(p.as_ptr(), size),
            None => self.alloc_slow(size, align),
        }
    }

    /// Takes a new chunk for the request and serves it there. The parent may call back into
    /// the arena (a callback of the program's on the parent allocates from it): no borrow of
    /// the state is held across the parent's call, the chunk is numbered once the parent
    /// answered, and what depends on the state is decided after it.
    #[cold]
    #[inline(never)]
    fn alloc_slow(&self, size: usize, align: usize) -> *mut u8 {
        // Data starts right after the header, which keeps CHUNK_ALIGN; more alignment costs
        // padding inside the chunk.
        let pad = align.saturating_sub(CHUNK_ALIGN);
        let Some(need) = size.checked_add(pad).and_then(|n| n.checked_add(HEADER)) else {
            return ptr::null_mut();
        };
        let (chunk_size, dedicated) = {
            let st = self.st();
            let dedicated = if self.grow {
                need > st.next_chunk_size.min(self.max_chunk) / 2
            } else {
                need > self.max_chunk
            };
            if dedicated && !self.allow_large {
                return ptr::null_mut();
            }
            let mut chunk_size = if dedicated { need } else { need.max(st.next_chunk_size) };
            if !self.within_limit(st, chunk_size) {
                // max_bytes caps what the arena holds, not the size its chunks grow to: a
                // request that fits the room left gets a chunk of that room. (The first chunk
                // with its header passed a max_bytes of 4096 with the default size: no request
                // could ever be served.)
                let room = self.limit.get().saturating_sub(st.reserved()) & !(CHUNK_ALIGN - 1);
                if dedicated || room < need {
                    return ptr::null_mut();
                }
                chunk_size = room;
            }
            (chunk_size, dedicated)
        };
        let state = self.state.get();
        // SAFETY: the lists live in the state; they are reached through the cell's pointer, not
        // through a borrow of the state, which the parent's callbacks may borrow meanwhile.
        // Keep bumping in the current chunk when the new one is dedicated: it has its own list.
        let list = unsafe {
            if dedicated {
                &(*state).large
            } else {
                &(*state).current
            }
        };
        // SAFETY: as above; numbered when the parent answered, so above every chunk taken
        // meanwhile, and linked at once.
        let next_seq = || unsafe {
            let seq = (*state).next_seq;
            (*state).next_seq = seq + 1;
            seq
        };
        let Some(chunk) = list.take(chunk_size, align, next_seq) else {
            return ptr::null_mut();
        };
        let st = self.st();
        // Chunks the parent's callbacks made the arena take meanwhile count too (this one is
        // counted already).
        let limit = self.limit.get();
        if (limit != 0 && st.reserved() > limit) || (dedicated && st.large_at.try_reserve(1).is_err()) {
            // SAFETY: the chunk just taken, the newest of its list, unused. Given back with no
            // use of the state after it.
            if let Some((detached, _)) = unsafe { list.unlink_after(ptr::null_mut(), chunk.start) } {
                detached.give_back();
            }
            return ptr::null_mut();
        }
        // SAFETY: the chunk's data area holds `chunk_size - HEADER >= pad + size` bytes, and
        // aligning its start (CHUNK_ALIGN-aligned) to `align` skips at most `pad` of them.
        let (start, block_end) = unsafe {
            let start = chunk.data.add(chunk.data.addr().wrapping_neg() & (align - 1));
            (start, start.add(size))
        };
        debug_check(|| ensure(start.addr().is_multiple_of(align), ARENA, "a new chunk's block is aligned"));
        if dedicated {
            debug_check(|| ensure(start.addr() == block_of(&chunk), ARENA, "block(c) is where the block is"));
            // The chunk that was newest when this one was linked: the next along `L`.
            let older = st.large.iter().nth(1).map_or(ptr::null_mut(), |c| c.start);
            // Room reserved above: no allocation here.
            st.large_at.insert(start.addr(), Dedicated { chunk: chunk.start, newer: ptr::null_mut() });
            // SAFETY: `older` follows the new chunk along `L` (or is null): still listed.
            unsafe { st.set_newer(older, chunk.start) };
        } else {
            sanitize::retire(block_end, chunk.end.addr() - block_end.addr());
            st.ptr = block_end;
            st.end = chunk.end;
            // The next chunk is 3/4 of everything held so far (capped, never shrinking): the
            // arena grows by 1.75x per chunk, so it holds at most ~1.75x what it handed out
            // (plus alignment padding), in a logarithmic number of parent calls.
            if self.grow {
                st.next_chunk_size = (st.reserved() / 4 * 3).min(self.max_chunk).max(st.next_chunk_size);
            }
        }
        self.debug_check_step(st);
        start
    }

    /// Whether the arena may take a chunk of `chunk_size` more bytes under its limit.
    fn within_limit(&self, st: &State, chunk_size: usize) -> bool {
        let limit = self.limit.get();
        limit == 0 || st.reserved().checked_add(chunk_size).is_some_and(|r| r <= limit)
    }

    /// Whether `[p, p + size)` is the most recent allocation (it ends at the bump pointer,
    /// inside the current chunk).
    #[inline(always)]
    fn is_last(st: &State, p: *mut u8, size: usize) -> bool {
        let current = st.current.newest_start();
        if current.is_null() {
            return false;
        }
        let data = current as usize + HEADER;
        (p as usize).checked_add(size) == Some(st.ptr as usize) && p as usize >= data
    }

    /// The call-free part of [`Bump::free_last`]: whether it freed `p` (always, unless a
    /// dedicated chunk might hold it).
    ///
    /// # Safety
    /// As for [`Bump::free_last`].
    #[inline(always)]
    pub unsafe fn try_free_in_place(&self, p: *mut u8, size: usize) -> bool {
        let st = self.st();
        if Self::is_last(st, p, size) {
            st.ptr = p;
            return true;
        }
        st.large.is_empty()
    }

    /// Frees `p`: gives the bytes back if it is the most recent allocation, returns its chunk
    /// to the parent if it has a dedicated chunk, else does nothing (the bytes come back at
    /// reset). No walk either way: a dedicated chunk is found in `large_at` by its block's
    /// address (a pointer that is no dedicated chunk's block is not looked for further).
    ///
    /// # Safety
    /// `p` is a live block of this arena of `size` bytes, not used after this call (its bytes
    /// may be handed out again).
    pub unsafe fn free_last(&self, p: *mut u8, size: usize) {
        sanitize::retire(p, size);
        let st = self.st();
        if Self::is_last(st, p, size) {
            st.ptr = p;
        } else if !st.large.is_empty() {
            self.free_large(st, p, size);
        }
    }

    #[cold]
    fn free_large(&self, st: &mut State, p: *mut u8, size: usize) {
        let Some(&Dedicated { chunk, newer }) = st.large_at.get(&p.addr()) else { return };
        // SAFETY: the index holds live chunks of `L` (`large_at`'s equation).
        if !unsafe { st.large.chunk_at(chunk) }.holds(p.addr(), size) {
            return;
        }
        // SAFETY: `chunk` and `newer` (when non-null) are live chunks of `L` (as above).
        let Some((detached, older)) = (unsafe { st.large.unlink_after(newer, chunk) }) else {
            // The index does not match the list: nothing changed; the check reports it.
            debug_check(|| self.check_state(st));
            return;
        };
        st.large_at.remove(&p.addr());
        // SAFETY: `older` followed the chunk just unlinked along `L` (or is null): still listed.
        unsafe { st.set_newer(older, newer) };
        st.shrink_index();
        self.debug_check_step(st);
        // Last, with the state whole and no use of it after: the parent may call back.
        detached.give_back();
    }

    /// Resizes in place when possible (the most recent allocation, or any shrink); null when a
    /// move is needed.
    ///
    /// # Safety
    /// `p` must be a live block of this arena of `old` bytes.
    pub unsafe fn resize_in_place(&self, p: *mut u8, old: usize, new: usize) -> *mut u8 {
        let st = self.st();
        if Self::is_last(st, p, old) {
            if new <= st.end as usize - p as usize {
                // SAFETY: `p + new` stays inside the current chunk (checked just above).
                st.ptr = unsafe { p.add(new) };
                sanitize::resized(p, old, new);
                return p;
            }
            return ptr::null_mut();
        }
        if new <= old {
            sanitize::resized(p, old, new);
            p
        } else {
            ptr::null_mut()
        }
    }

    /// Frees every allocation; keeps the largest chunk and returns the others to the parent.
    ///
    /// # Safety
    /// No block of this arena is used after this call.
    pub unsafe fn reset(&self) {
        let st = self.st();
        // Of chunks of equal size, the first met wins: normal chunks before dedicated ones,
        // newest first.
        let largest =
            st.current.iter().chain(st.large.iter()).reduce(|a, c| if c.size() > a.size() { c } else { a });
        let keep = largest.map_or(ptr::null_mut(), |c| c.start);
        // Given back last, with the state whole: the parent may call back into the arena.
        let released = [st.current.detach(|c| c.start == keep), st.large.detach(|c| c.start == keep)];
        if st.current.is_empty() {
            // The largest chunk was a dedicated one: it becomes the current chunk.
            core::mem::swap(&mut st.current, &mut st.large);
        }
        // `L` is empty now (its one kept chunk, if any, became the current one).
        st.large_at = AddrMap::default();
        (st.ptr, st.end) = largest.map_or((ptr::null_mut(), ptr::null_mut()), |c| (c.data, c.end));
        sanitize::retire(st.ptr, st.end.addr() - st.ptr.addr());
        st.clock += 1;
        st.reset_at = st.clock;
        st.cuts.clear();
        st.marked = Pos::EMPTY;
        debug_check(|| self.check_state(st));
        for chunks in released {
            chunks.give_back();
        }
    }

    /// A checkpoint of the current position. `live_bytes`/`live_count` are the allocator's
    /// stats at this point, so a rewind can account what it frees.
    pub fn mark(&self, live_bytes: usize, live_count: usize) -> Mark {
        let st = self.st();
        st.clock += 1;
        let chunk = st.current.newest_start();
        let mark = Mark {
            chunk: if chunk.is_null() { self.token() } else { chunk },
            position: st.ptr,
            chunk_seq: st.current.newest().map_or(0, |c| c.seq),
            next_seq: st.next_seq,
            epoch: st.clock,
            live_bytes,
            live_count,
        };
        st.marked = st.marked.max(Self::pos_of(&mark));
        mark
    }

    /// What a mark taken with no chunk names in place of one: this arena (it does not move
    /// while it lives).
    fn token(&self) -> *mut u8 {
        ptr::from_ref(self).cast_mut().cast()
    }

    /// Where `mark` was taken.
    fn pos_of(mark: &Mark) -> Pos {
        Pos(mark.chunk_seq, mark.position.addr(), mark.next_seq)
    }

    /// Returns the arena to `mark`: chunks created after it go back to the parent, the bump
    /// pointer goes back to the mark's position. A refused rewind changes nothing.
    ///
    /// # Safety
    /// No block of this arena allocated (or resized) after `mark` is used after this call.
    pub unsafe fn rewind(&self, mark: &Mark) -> Result<(), RewindError> {
        let st = self.st();
        if mark.epoch > st.clock || mark.epoch <= st.born {
            // Stamped outside this arena's life: another arena's (or `Mark::INVALID`).
            return Err(RewindError::Invalidated);
        }
        if mark.epoch <= st.reset_at {
            return Err(RewindError::Stale);
        }
        let pos = Self::pos_of(mark);
        // The last cut below the mark's position is the latest of those below it.
        let below = st.cuts.partition_point(|c| c.pos < pos);
        if below > 0 && st.cuts[below - 1].at > mark.epoch {
            return Err(RewindError::Invalidated);
        }
        // The mark's chunk is a normal chunk created before the mark (its number tells it from
        // a later chunk at the same address), holding the mark's position; a mark taken with no
        // chunk names this arena.
        let mark_chunk = if mark.position.is_null() {
            if mark.chunk != self.token() {
                return Err(RewindError::Invalidated);
            }
            None
        } else {
            let found = st.current.iter().find(|c| c.start == mark.chunk && c.seq == mark.chunk_seq);
            let valid = found.filter(|c| {
                c.seq < mark.next_seq && (c.data.addr()..=c.end.addr()).contains(&mark.position.addr())
            });
            Some(valid.ok_or(RewindError::Invalidated)?)
        };
        // (A mark may lie above the bump pointer: freeing the most recent blocks allocated
        // before it moves the pointer down. Such a mark is valid; the rewind re-takes the
        // freed bytes up to it. Marks a rewind invalidated are the cuts' business.)
        // This rewind invalidates the marks above `pos` stamped before it: its cut replaces
        // those at or above `pos` (it covers all they did), and is kept if some mark may lie
        // above `pos`. Room first, so that a refusal changes nothing (a replaced cut leaves
        // room).
        let replaced = st.cuts.len() > below;
        let cut = replaced || st.marked > pos;
        if cut && !replaced {
            st.cuts.try_reserve(1).map_err(|_| RewindError::OutOfMemory)?;
        }
        st.clock += 1;
        st.cuts.truncate(below);
        if cut {
            st.cuts.push(Cut { pos, at: st.clock });
        }
        st.marked = pos;
        // Return every chunk created after the mark, normal or dedicated: the newest ones of
        // each list, so the newest dedicated chunk left has no newer neighbor.
        // Given back last, with the state whole: the parent may call back into the arena.
        let newer = st.current.detach_newer(mark.next_seq);
        let State { large, large_at, .. } = &mut *st;
        let newer_large = large.detach(|c| {
            let keep = c.seq < mark.next_seq;
            if !keep {
                large_at.remove(&block_of(c));
            }
            keep
        });
        // SAFETY: the newest chunk of `L`, or null.
        unsafe { st.set_newer(st.large.newest_start(), ptr::null_mut()) };
        st.shrink_index();
        debug_check(|| {
            let chunk = mark_chunk.map_or(ptr::null_mut(), |c| c.start);
            ensure(st.current.newest_start() == chunk, ARENA, "a rewind leaves the mark's chunk current")
        });
        st.ptr = mark.position;
        st.end = mark_chunk.map_or(ptr::null_mut(), |c| c.end);
        sanitize::retire(st.ptr, st.end.addr().saturating_sub(st.ptr.addr()));
        debug_check(|| self.check_state(st));
        newer.give_back();
        newer_large.give_back();
        Ok(())
    }

    /// Where chunks come from.
    pub fn parent(&self) -> *mut GooAllocator {
        self.st().current.parent()
    }

    /// Bytes held in chunks.
    pub fn reserved(&self) -> usize {
        self.st().reserved()
    }

    /// Number of chunks held.
    pub fn chunk_count(&self) -> usize {
        let st = self.st();
        st.current.count() + st.large.count()
    }

    /// The byte limit on chunks held (0 = none).
    pub fn limit(&self) -> usize {
        self.limit.get()
    }

    /// Sets the byte limit on chunks held (0 = none). Refused (`Err` with the bytes held) below
    /// what the arena holds now, which would break `C.bytes + L.bytes <= limit`.
    pub fn set_limit(&self, limit: usize) -> Result<(), usize> {
        let held = self.reserved();
        if limit != 0 && limit < held {
            return Err(held);
        }
        self.limit.set(limit);
        Ok(())
    }

    /// The data area of every chunk as `(start, bytes)`, newest chunk first: the current chunk
    /// up to the bump pointer, any other chunk whole (where its bump stopped is not kept, so
    /// its unused tail is included). Nothing may allocate from, reset or rewind the arena while
    /// the iterator lives.
    pub(crate) fn chunk_areas(&self) -> impl Iterator<Item = (*mut u8, usize)> + '_ {
        let st = self.st();
        let (current_start, bump) = (st.current.newest_start(), st.ptr);
        let (mut normal, mut large) = (st.current.iter().peekable(), st.large.iter().peekable());
        // Both lists fall in seq: merge them newest first.
        core::iter::from_fn(move || {
            let c = match (normal.peek(), large.peek()) {
                (Some(n), Some(l)) if l.seq > n.seq => large.next(),
                (Some(_), _) => normal.next(),
                (None, _) => large.next(),
            }?;
            let end = if c.start == current_start { bump } else { c.end };
            Some((c.data, end.addr() - c.data.addr()))
        })
    }

    /// Whether `[p, p + size)` lies inside one of the arena's chunks (for tests and checks).
    pub fn contains(&self, p: *const u8, size: usize) -> bool {
        let st = self.st();
        st.current.iter().chain(st.large.iter()).any(|c| c.holds(p as usize, size))
    }
}

// SAFETY: blocks are carved from live chunks, disjoint (the bump pointer only moves past handed
// out bytes, and back only over the most recent block or to a mark, whose later blocks the
// caller gives up), aligned by construction, and valid until reset/rewind/drop.
unsafe impl Backend for Bump {
    fn check_state(&self) -> Result<(), InvariantError> {
        Bump::check(self)
    }

    const NAME: &'static str = "arena";
    const KIND: Kind = Kind::Arena;
    const THREAD_SAFE: bool = false;

    /// A bump inside the current chunk.
    #[inline(always)]
    unsafe fn try_alloc_inline(&self, _home: Option<usize>, size: usize, align: usize) -> *mut u8 {
        // SAFETY: the hook's contract: `0 < size <= isize::MAX - 16` and `align` 0 (natural:
        // at most 16) or a power of two that passed the request check (`size + align <=
        // isize::MAX`).
        unsafe { self.try_bump(size, resolve_align(size, align)) }.map_or(ptr::null_mut(), NonNull::as_ptr)
    }

    /// The most recent block goes back to the bump pointer; any other block's bytes come back
    /// at reset, unless dedicated chunks exist (one of them may be this block's: the slow path
    /// returns it to the parent).
    #[inline(always)]
    unsafe fn try_free_inline(&self, _home: Option<usize>, ptr: *mut u8, size: usize, _align: usize) -> bool {
        // SAFETY: forwarded contract (a live block of `size` bytes, not used after its free).
        unsafe { self.try_free_in_place(ptr, size) }
    }

    #[inline(always)]
    fn alloc(&self, size: usize, align: usize, _options: AllocOptions) -> *mut u8 {
        Bump::alloc(self, size, align)
    }

    #[inline]
    unsafe fn free(&self, ptr: *mut u8, size: usize, _align: usize) {
        // SAFETY: forwarded contract (a live block of `size` bytes, not used after its free).
        unsafe { self.free_last(ptr, size) };
    }

    unsafe fn realloc(
        &self,
        ptr: *mut u8,
        old_size: usize,
        new_size: usize,
        align: usize,
        _options: AllocOptions,
    ) -> *mut u8 {
        // SAFETY: the caller vouches for the block.
        unsafe {
            resize_or_move(
                ptr,
                old_size,
                new_size,
                align,
                || self.resize_in_place(ptr, old_size, new_size),
                || Bump::alloc(self, new_size, align),
                // The old block's bytes come back at reset: no access until then.
                |p: *mut u8, len| sanitize::retire(p, len),
            )
        }
    }

    fn bytes_reserved(&self, _bytes_allocated: usize) -> usize {
        self.reserved()
    }

    /// A pinned arena (a thread's temporary arena) is the library's: the destroy is refused.
    /// C may reach this unguarded (`arena->destroy(arena)`): the message is written without
    /// anything that could panic.
    unsafe fn begin_destroy(allocator: *mut GooAllocator) -> bool {
        use std::io::Write;
        // SAFETY: `allocator` is a live `Managed<Bump>` (this hook's contract).
        let pinned = unsafe { Managed::<Bump>::backend(allocator) }.pinned.get();
        if pinned {
            let _ = writeln!(
                std::io::stderr(),
                "goo-memory: destroy of arena {allocator:p} refused: it is a thread's temporary arena, which the library frees when that thread exits (goo_temp_reset frees its blocks)"
            );
        }
        !pinned
    }
}

impl Bump {
    /// Marks the arena as the library's own (`true`: a thread's temporary arena), so that a
    /// destroy through its vtable or `goo_arena_allocator_destroy` is refused; the owner
    /// unpins it before destroying it.
    pub(crate) fn pin(&self, on: bool) {
        self.pinned.set(on);
    }
}

/// Creates a C arena allocator (stats tracked, strategy `Null`).
///
/// # Safety
/// `parent` must be a valid allocator that outlives the arena.
pub unsafe fn create(parent: *mut GooAllocator, initial_size: usize, limit: usize) -> NonNull<GooAllocator> {
    // SAFETY: forwarded contract.
    place(unsafe { Bump::new(parent, initial_size, limit) }, true)
}

/// A library allocator around `bump`.
pub(crate) fn place(bump: Bump, track_stats: bool) -> NonNull<GooAllocator> {
    Managed::place(
        Managed::unplaced(bump, drop_managed::<Bump>, ptr::null_mut()),
        AllocStrategy::Null,
        track_stats,
    )
}

/// The arena behind a `GooAllocator*`, if it is one.
///
/// # Safety
/// `allocator` must be null or valid (and live if it is a library allocator).
pub unsafe fn from_raw<'a>(allocator: *const GooAllocator) -> Option<&'a Bump> {
    // SAFETY: forwarded contract.
    unsafe { Managed::<Bump>::try_backend(allocator) }
}

/// Resets the arena `allocator` and accounts the implicit frees. False if it is not an arena.
///
/// # Safety
/// As for [`from_raw`]; no block of the arena may be used afterwards.
pub unsafe fn reset_raw(allocator: *mut GooAllocator) -> bool {
    // SAFETY: forwarded contract.
    unsafe {
        let Some(bump) = from_raw(allocator) else { return false };
        front::record_reset(allocator);
        bump.reset();
        front::reset_done(allocator);
        true
    }
}

/// A checkpoint of the arena `allocator`, or `None` if it is not an arena.
///
/// # Safety
/// As for [`from_raw`].
pub unsafe fn mark_raw(allocator: *mut GooAllocator) -> Option<Mark> {
    // SAFETY: forwarded contract.
    unsafe {
        let bump = from_raw(allocator)?;
        let s = front::stats(allocator);
        Some(bump.mark(s.bytes_allocated, s.allocation_count))
    }
}

/// Rewinds the arena `allocator` to `mark`, accounting what it frees.
///
/// # Safety
/// As for [`from_raw`]; no block allocated after the mark may be used afterwards.
pub unsafe fn rewind_raw(allocator: *mut GooAllocator, mark: &Mark) -> Result<(), RewindError> {
    // SAFETY: forwarded contract.
    unsafe {
        let bump = from_raw(allocator).ok_or(RewindError::NotAnArena)?;
        bump.rewind(mark)?;
        record_rewind(allocator, mark);
        Ok(())
    }
}

/// Counts what a rewind of `allocator` (an arena or a shared arena) to `mark` freed: the live
/// counts fall to the mark's, where they were higher.
///
/// # Safety
/// As for [`from_raw`].
pub(crate) unsafe fn record_rewind(allocator: *mut GooAllocator, mark: &Mark) {
    // SAFETY: forwarded contract.
    unsafe {
        let now = front::stats(allocator);
        front::record_bulk_free(
            allocator,
            now.bytes_allocated.saturating_sub(mark.live_bytes),
            now.allocation_count.saturating_sub(mark.live_count),
        );
    }
}

const ARENA: &str = "arena";
/// The index's equation, as [`Bump::check`] reports it.
const LARGE_AT: &str = "large_at == { block(c) ↦ (c, newer(c)) : c ∈ L }";

impl Bump {
    /// Verifies the invariants of the arena's state (the equations beside `State`, and its two
    /// chunk lists' own): each list walk is bound to its count, so a cyclic list is reported,
    /// not walked forever. Reads only; allocates nothing.
    pub fn check(&self) -> Result<(), InvariantError> {
        self.check_state(self.st())
    }

    /// [`Bump::check`] on the state a method already borrowed (debug checks in its slow paths).
    fn check_state(&self, st: &State) -> Result<(), InvariantError> {
        check_pair(&st.current, &st.large, st.next_seq, ARENA)?;
        let mut newer = ptr::null_mut();
        for c in st.large.iter() {
            ensure(
                st.large_at.get(&block_of(&c)) == Some(&Dedicated { chunk: c.start, newer }),
                ARENA,
                LARGE_AT,
            )?;
            newer = c.start;
        }
        self.check_local(st)?;
        ensure(
            st.cuts.windows(2).all(|w| w[0].pos < w[1].pos && w[0].at < w[1].at),
            ARENA,
            "cuts[i].pos < cuts[i + 1].pos, cuts[i].at < cuts[i + 1].at",
        )?;
        ensure(
            st.cuts.iter().all(|c| st.reset_at < c.at && c.at <= st.clock),
            ARENA,
            "reset_at < cut.at <= clock for cut ∈ cuts",
        )
    }

    /// The equations [`Bump::check_state`] verifies without a walk: those on the newest chunks
    /// and the counters (of the index's equation, `|large_at| == |L|`).
    fn check_local(&self, st: &State) -> Result<(), InvariantError> {
        ensure(st.large_at.len() == st.large.count(), ARENA, LARGE_AT)?;
        for list in [&st.current, &st.large] {
            ensure(
                list.newest().is_none_or(|c| c.seq < st.next_seq),
                ARENA,
                "c.seq < next_seq for c ∈ C ∪ L",
            )?;
        }
        match st.current.newest() {
            None => ensure(st.ptr.is_null() && st.end.is_null(), ARENA, "C empty <=> ptr == end == null")?,
            Some(current) => {
                ensure(
                    current.data <= st.ptr && st.ptr <= st.end,
                    ARENA,
                    "C not empty => data(newest of C) <= ptr <= end",
                )?;
                ensure(st.end == current.end, ARENA, "end == end(newest of C)")?;
            }
        }
        ensure(
            self.limit.get() == 0 || st.reserved() <= self.limit.get(),
            ARENA,
            "limit != 0 => C.bytes + L.bytes <= limit",
        )?;
        ensure(st.next_chunk_size <= self.max_chunk, ARENA, "next_chunk_size <= max_chunk")?;
        ensure(st.born <= st.reset_at && st.reset_at <= st.clock, ARENA, "born <= reset_at <= clock")
    }

    /// Debug builds, after a slow-path step that takes or gives back one chunk (an allocation
    /// in a new chunk, the free of a dedicated block): the full check, or, while the steps since
    /// the last full one are fewer than the chunks held, the equations that need no walk. A
    /// full check walks every chunk, so checking fully after every step made each step cost
    /// O(chunks) (20,000 dedicated blocks, allocated and freed: seconds); this way the walks
    /// cost O(1) per step, amortized, and an arena of few chunks is still checked fully after
    /// every step. Reset and rewind, which may give back many chunks, check fully.
    fn debug_check_step(&self, st: &mut State) {
        if cfg!(debug_assertions) {
            st.unchecked += 1;
            if st.unchecked >= st.current.count() + st.large.count() {
                st.unchecked = 0;
                debug_check(|| self.check_state(st));
            } else {
                debug_check(|| self.check_local(st));
            }
        }
    }
}

/// Verifies the invariants of the arena `allocator` ([`Bump::check`]) and of its stats
/// ([`ShardedStats::check`](crate::policy::stats::ShardedStats::check)).
///
/// # Safety
/// As for [`from_raw`].
pub unsafe fn check_raw(allocator: *mut GooAllocator) -> Result<(), InvariantError> {
    // SAFETY: forwarded contract.
    unsafe { Managed::<Bump>::check_raw(allocator) }
}

#[cfg(test)]
impl Bump {
    /// Sets `next_seq` (breaking an equation, for other modules' tests); returns the old value.
    pub(crate) fn replace_next_seq(&self, seq: u64) -> u64 {
        core::mem::replace(&mut self.st().next_seq, seq)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bump's arithmetic at a chunk's edges: padding counts against the room, an exact fit
    /// is taken, one byte more is refused, and nothing fits where there is no chunk.
    #[test]
    fn carve_takes_exact_fits_and_refuses_padding_past_the_end() {
        let mut bytes = [0u64; 8]; // 64 bytes, 8-aligned
        let base = bytes.as_mut_ptr().cast::<u8>();
        // SAFETY: every `[ptr, end)` lies in `bytes`, or both are null; the sizes are small.
        unsafe {
            let end = base.add(64);
            let (block, next) = carve(base.add(1), end, 8, 8).unwrap();
            assert_eq!((block.as_ptr(), next), (base.add(8), base.add(16)), "padded to 8");
            assert_eq!(carve(base.add(1), end, 56, 8).unwrap().1, end, "exact fit after padding");
            assert!(carve(base.add(1), end, 57, 8).is_none(), "one byte past the end");
            assert!(carve(base.add(60), end, 1, 8).is_none(), "the padding alone passes the end");
            assert_eq!(carve(base.add(63), end, 1, 1).unwrap().1, end);
            assert!(carve(base.add(64), end, 1, 1).is_none(), "a full chunk");
            assert!(carve(ptr::null_mut(), ptr::null_mut(), 1, 16).is_none(), "no chunk");
        }
    }

    /// Found by the `c_abi` fuzz target: freeing the most recent block allocated before a mark
    /// moved the bump pointer below the mark, and the rewind to that (valid) mark was refused as
    /// if a rewind to an earlier mark had gone past it.
    #[test]
    fn a_mark_stays_valid_when_blocks_before_it_are_freed() {
        // SAFETY: the built-in allocator is a static.
        let bump = unsafe { Bump::new(crate::default::builtin(), 4096, 0) };
        let a = bump.alloc(64, 16);
        let m = bump.mark(0, 0);
        // SAFETY: `a` is the most recent block, 64 bytes, not used afterwards.
        unsafe { Backend::free(&bump, a, 64, 16) };
        let b = bump.alloc(16, 16);
        assert_eq!(b, a, "the freed bytes came back");
        // SAFETY: no block allocated after the mark is used afterwards.
        assert_eq!(unsafe { bump.rewind(&m) }, Ok(()), "a valid mark");
        // SAFETY: no block allocated after the mark is used afterwards.
        assert_eq!(unsafe { bump.rewind(&m) }, Ok(()), "and again");
        // Marks nest: an inner one rewound first, then the outer one; the inner one is
        // invalid afterwards.
        let outer = bump.mark(0, 0);
        bump.alloc(100, 8);
        let inner = bump.mark(0, 0);
        bump.alloc(100, 8);
        // SAFETY: no block allocated after the mark is used afterwards.
        assert_eq!(unsafe { bump.rewind(&inner) }, Ok(()));
        // SAFETY: no block allocated after the mark is used afterwards.
        assert_eq!(unsafe { bump.rewind(&outer) }, Ok(()));
        bump.alloc(8, 8);
        // SAFETY: no block allocated after the mark is used afterwards.
        assert_eq!(unsafe { bump.rewind(&inner) }, Err(RewindError::Invalidated));
        // Two marks with nothing between them are one position: after a rewind to the first,
        // the second still names where the arena is (arena.h), and a rewind to it frees nothing.
        let first = bump.mark(0, 0);
        let second = bump.mark(0, 0);
        // SAFETY: no block allocated after the mark is used afterwards.
        assert_eq!(unsafe { bump.rewind(&first) }, Ok(()));
        // SAFETY: no block allocated after the mark is used afterwards.
        assert_eq!(unsafe { bump.rewind(&second) }, Ok(()));
        assert_eq!(bump.check(), Ok(()));
    }

    /// Found by the `c_abi` fuzz target: the most recent block, at the natural alignment of its
    /// small size, grew in place and so kept an alignment below the natural one of its new size.
    #[test]
    fn growing_in_place_keeps_the_natural_alignment_of_the_new_size() {
        // SAFETY: the built-in allocator is a static.
        let a = unsafe { create(crate::default::builtin(), 4096, 0) }.as_ptr();
        // SAFETY: `a` is a live arena; blocks are used within their sizes and freed with it.
        unsafe {
            let first = front::alloc_slow(a, 4, 0, AllocOptions::DEFAULT);
            let p = front::alloc_slow(a, 4, 0, AllocOptions::DEFAULT);
            assert_eq!(p as usize - first as usize, 4, "the second block follows the first");
            assert!(!(p as usize).is_multiple_of(8), "a block aligned only to 4");
            p.cast::<u32>().write_unaligned(0xdead_beef);
            let q = front::realloc(a, p, 4, 100, 0, AllocOptions::DEFAULT);
            assert!(!q.is_null() && (q as usize).is_multiple_of(16), "{q:p} is not 16-aligned");
            assert_eq!(q.cast::<u32>().read_unaligned(), 0xdead_beef, "the contents moved with it");
            assert_eq!(check_raw(a), Ok(()));
            crate::policy::backend::managed_destroy(a);
        }
    }

    /// Found by a hostile tester: every free of a block that was not the most recent walked
    /// the whole list of dedicated chunks, so freeing n large blocks took O(n²) (40,000 blocks
    /// of 5,000 bytes from a region: 28 s), and a small free paid O(n) too. The index
    /// `large_at` finds a dedicated chunk and its neighbor by the block's address. Frees in
    /// allocation order (the oldest chunk, at the list's tail), in reverse (the newest, at its
    /// head) and from the middle, with small blocks in between, each followed by the whole
    /// check: the bytes held fall by exactly one chunk per free.
    #[test]
    fn freeing_dedicated_blocks_in_any_order_gives_each_chunk_back_at_once() {
        let n: usize = if cfg!(miri) { 24 } else { 2000 };
        let parent = crate::handle::Allocator::system();
        let live = |a: *mut GooAllocator| {
            // SAFETY: a live allocator.
            let s = unsafe { front::stats(a) };
            (s.allocation_count, s.bytes_allocated, s.bytes_reserved)
        };
        for order in ["allocation", "reverse", "middle out"] {
            // SAFETY: `parent` outlives the arena, destroyed below.
            let a = unsafe { create(parent.as_ptr(), 4096, 0) }.as_ptr();
            // SAFETY: `a` is a live arena, here and below.
            let bump = unsafe { from_raw(a) }.unwrap();
            // SAFETY: as above; blocks are used within their sizes and freed once.
            unsafe {
                let mut blocks: Vec<(*mut u8, usize, usize)> = (0..n)
                    .map(|i| {
                        // Sizes and alignments vary: each chunk's size is its own.
                        let (size, align) = (5000 + i % 7 * 100, [0, 64, 4096][i % 3]);
                        let p = front::alloc_slow(a, size, align, AllocOptions::DEFAULT);
                        assert!(!p.is_null() && p.addr().is_multiple_of(align.max(8)));
                        p.write_bytes(0xab, size);
                        (p, size, align)
                    })
                    .collect();
                assert_eq!(bump.st().large.count(), n, "one dedicated chunk per block");
                assert_eq!(check_raw(a), Ok(()));
                match order {
                    "allocation" => {}
                    "reverse" => blocks.reverse(),
                    _ => {
                        let (front_half, back_half) = blocks.split_at(n / 2);
                        let mut out: Vec<_> = front_half.iter().rev().copied().collect();
                        out.extend(back_half.iter().copied());
                        blocks = out;
                    }
                }
                // A normal chunk, for the small blocks below.
                assert!(!front::alloc_slow(a, 16, 0, AllocOptions::DEFAULT).is_null());
                let (count, mut bytes, reserved) = live(a);
                assert_eq!((count, bump.reserved()), (n + 1, reserved));
                for (i, &(p, size, align)) in blocks.iter().enumerate() {
                    // Two small blocks: the first freed while not the most recent (a no-op, no
                    // walk), the second while it is (its bytes come back).
                    let s1 = front::alloc_slow(a, 16, 0, AllocOptions::DEFAULT);
                    let s2 = front::alloc_slow(a, 16, 0, AllocOptions::DEFAULT);
                    front::free_slow(a, s1, 16, 0);
                    front::free_slow(a, s2, 16, 0);
                    // (The small blocks may have taken a new normal chunk: 16 bytes stay taken.)
                    let reserved = live(a).2;
                    front::free_slow(a, p, size, align);
                    bytes -= size;
                    let (count_now, bytes_now, reserved_now) = live(a);
                    assert_eq!((count_now, bytes_now), (n - i, bytes), "{order}: stats after free {i}");
                    let chunk = size + align.saturating_sub(CHUNK_ALIGN) + HEADER;
                    assert_eq!(reserved - reserved_now, chunk, "{order}: its chunk back at once");
                    assert_eq!(bump.st().large.count(), n - 1 - i, "{order}");
                    assert_eq!(bump.st().large_at.len(), n - 1 - i, "{order}");
                    assert_eq!(check_raw(a), Ok(()), "{order}: after free {i}");
                }
                assert_eq!(live(a).2, bump.st().current.bytes(), "{order}: only normal chunks left");
                assert_eq!(parent.stats().allocation_count, bump.st().current.count());
                crate::policy::backend::managed_destroy(a);
            }
            assert_eq!(parent.stats().allocation_count, 0, "{order}: every chunk given back");
        }
    }

    /// Rewind and reset give back dedicated chunks in bulk: the index follows, and a free after
    /// them finds the chunks still held.
    #[test]
    fn rewind_and_reset_keep_the_index_of_dedicated_chunks() {
        let parent = crate::handle::Allocator::system();
        // SAFETY: `parent` outlives the arena.
        let bump = unsafe { Bump::new(parent.as_ptr(), 1024, 0) };
        let big = |_| bump.alloc(3000, 16);
        let before: Vec<*mut u8> = (0..4).map(big).collect();
        let m = bump.mark(0, 0);
        let after: Vec<*mut u8> = (0..4).map(big).collect();
        assert_eq!((bump.st().large.count(), bump.st().large_at.len()), (8, 8));
        // SAFETY: no block allocated after the mark is used afterwards.
        assert_eq!(unsafe { bump.rewind(&m) }, Ok(()));
        assert_eq!((bump.st().large.count(), bump.st().large_at.len()), (4, 4));
        assert!(after.iter().all(|p| !bump.st().large_at.contains_key(&p.addr())));
        assert_eq!(bump.check(), Ok(()));
        // The newest left (the last before the mark) is the head of the list now.
        // SAFETY: a live block of it with its size, not used afterwards.
        unsafe { bump.free_last(before[3], 3000) };
        // SAFETY: a live block of it with its size, not used afterwards.
        unsafe { bump.free_last(before[0], 3000) };
        assert_eq!(bump.st().large.count(), 2);
        assert_eq!(bump.check(), Ok(()));
        // A pointer inside a dedicated block, or one freed already: nothing happens.
        // SAFETY: a live block of it with its size, not used afterwards.
        unsafe { bump.free_last(before[1].wrapping_add(16), 16) };
        // SAFETY: a live block of it with its size, not used afterwards.
        unsafe { bump.free_last(before[0], 3000) };
        assert_eq!(bump.st().large.count(), 2);
        // The index's equation: a wrong neighbor, a missing entry.
        let key = before[1].addr();
        let newer = core::mem::replace(&mut bump.st().large_at.get_mut(&key).unwrap().newer, before[1]);
        assert_eq!(broken(&bump), LARGE_AT);
        bump.st().large_at.get_mut(&key).unwrap().newer = newer;
        let entry = bump.st().large_at.remove(&key).unwrap();
        assert_eq!(broken(&bump), LARGE_AT);
        bump.st().large_at.insert(key, entry);
        assert_eq!(bump.check(), Ok(()), "restored");
        // SAFETY: no block of it is used afterwards.
        unsafe { bump.reset() };
        assert!(bump.st().large.is_empty() && bump.st().large_at.is_empty());
        assert_eq!(bump.check(), Ok(()));
        assert_eq!(parent.stats().allocation_count, 1, "the largest chunk is kept");
    }

    fn broken(bump: &Bump) -> &'static str {
        bump.check().expect_err("a broken equation").broken
    }

    /// Each corruption breaks one equation and `check` names it; undoing it makes the state
    /// whole again (so the arena can be dropped).
    #[test]
    fn check_reports_each_broken_equation() {
        // SAFETY: the built-in allocator is a static.
        let bump = unsafe { Bump::new(crate::default::builtin(), 256, 0) };
        assert_eq!(bump.check(), Ok(()), "an empty arena");
        for (size, align) in [(100, 8), (200, 8), (300, 64), (5000, 16), (6000, 16)] {
            assert!(!bump.alloc(size, align).is_null());
        }
        for _ in 0..10 {
            assert!(!bump.alloc(100, 8).is_null());
        }
        assert!(bump.st().current.count() >= 2 && bump.st().large.count() >= 2, "chunks in both lists");
        assert_eq!(bump.check(), Ok(()));

        // A list's own equations are reported as the arena's.
        let bytes = bump.st().large.replace_bytes(0);
        assert_eq!(bump.check(), Err(InvariantError::new(ARENA, "bytes == Σ c.size over c ∈ K")));
        bump.st().large.replace_bytes(bytes);

        let ptr = bump.st().ptr;
        bump.st().ptr = bump.st().end.wrapping_add(1);
        assert_eq!(broken(&bump), "C not empty => data(newest of C) <= ptr <= end");
        bump.st().ptr = ptr;

        let next_seq = bump.st().next_seq;
        bump.st().next_seq = 1;
        assert_eq!(broken(&bump), "c.seq < next_seq for c ∈ C ∪ L");
        bump.st().next_seq = next_seq;

        // The marks' clock and cuts: two marks, a rewind past the newer one (a cut).
        let (outer, inner) = (bump.mark(0, 0), {
            bump.alloc(8, 8);
            bump.mark(0, 0)
        });
        bump.alloc(8, 8);
        // SAFETY: no block allocated after the mark is used afterwards.
        assert_eq!(unsafe { bump.rewind(&outer) }, Ok(()));
        assert_eq!(bump.st().cuts.len(), 1);
        // SAFETY: no block allocated after the mark is used afterwards.
        assert_eq!(unsafe { bump.rewind(&inner) }, Err(RewindError::Invalidated));
        let clock = bump.st().clock;
        bump.st().reset_at = clock + 1;
        assert_eq!(broken(&bump), "born <= reset_at <= clock");
        let born = bump.st().born;
        bump.st().reset_at = born;
        bump.st().clock = born;
        assert_eq!(broken(&bump), "reset_at < cut.at <= clock for cut ∈ cuts");
        bump.st().clock = clock;
        let cut = bump.st().cuts[0];
        bump.st().cuts.push(cut);
        assert_eq!(broken(&bump), "cuts[i].pos < cuts[i + 1].pos, cuts[i].at < cuts[i + 1].at");
        bump.st().cuts.pop();
        assert_eq!(bump.check(), Ok(()), "restored");

        // A cycle: the oldest chunk of the normal list links back to the newest.
        let chunks: Vec<*mut u8> = bump.st().current.iter().map(|c| c.start).collect();
        let (newest, oldest) = (chunks[0], chunks[chunks.len() - 1]);
        // SAFETY: live chunks of the list; the link is restored below.
        unsafe { bump.st().current.replace_link(oldest, newest) };
        assert_eq!(broken(&bump), "count == |K| (no cycle)");
        // SAFETY: as above.
        unsafe { bump.st().current.replace_link(oldest, ptr::null_mut()) };
        assert_eq!(bump.check(), Ok(()), "restored");

        // After a reset one chunk is left, current, and the large list is empty. A chunk in
        // both lists: the large list becomes a copy of the normal one.
        // SAFETY: no block of it is used afterwards.
        unsafe { bump.reset() };
        assert_eq!((bump.st().current.count(), bump.st().large.count()), (1, 0));
        let st = bump.st();
        // SAFETY: a bitwise copy of the normal list, forgotten below, never dropped: its chunk
        // goes back to the parent once, with the normal list.
        let copy = unsafe { ptr::read(&st.current) };
        let large = core::mem::replace(&mut st.large, copy);
        assert_eq!(broken(&bump), "C ∩ L == ∅ (every seq distinct)");
        core::mem::forget(core::mem::replace(&mut bump.st().large, large));

        let (ptr, end) = (bump.st().ptr, bump.st().end);
        bump.st().ptr = ptr::null_mut();
        assert_eq!(broken(&bump), "C not empty => data(newest of C) <= ptr <= end");
        let current = core::mem::replace(&mut bump.st().current, empty_list());
        assert_eq!(broken(&bump), "C empty <=> ptr == end == null");
        bump.st().end = ptr::null_mut();
        assert_eq!(bump.check(), Ok(()), "an empty arena's state");
        let st = bump.st();
        drop(core::mem::replace(&mut st.current, current));
        (st.ptr, st.end) = (ptr, end);
        assert_eq!(bump.check(), Ok(()), "restored (the chunk goes back when the arena drops)");
    }

    /// An empty chunk list of the built-in allocator's.
    fn empty_list() -> NumberedChunks {
        // SAFETY: the built-in allocator is a static.
        unsafe { NumberedChunks::new(crate::default::builtin(), CHUNK_ALIGN) }
    }
}
