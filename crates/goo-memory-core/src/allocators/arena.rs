//! The arena: bump allocation in chunks taken from a parent allocator, freed all at once.
//!
//! [`Bump`] is the mechanism (a [`Backend`], so C gets it as a `GooAllocator`); [`Arena`] is the
//! Rust API in the style of bumpalo, with an inline fast path. Chunks grow geometrically up to a
//! cap; a request too big for a normal chunk gets a dedicated chunk. Freeing or resizing the most
//! recent allocation happens in place; other frees are accepted and only counted. `reset` keeps
//! the largest chunk; checkpoints ([`Mark`]) rewind to an earlier point.
//!
//! An arena is not thread-safe: neither [`Bump`] nor [`Arena`] is `Sync`.

use core::cell::UnsafeCell;
use core::mem::{align_of, size_of};
use core::ptr::{self, NonNull};

use crate::policy::backend::{drop_managed, Backend, Kind, Managed};
use crate::policy::front;
use crate::policy::invariant::{debug_check, ensure, InvariantError};
use crate::raw::{resolve_align, AllocOptions, AllocStrategy, GooAllocator, MAX_NATURAL_ALIGN};

/// Default size of the first chunk when the caller gives 0.
pub const DEFAULT_CHUNK_SIZE: usize = 4096;
/// Normal chunks stop doubling at this size (or the initial size, if larger).
pub const MAX_CHUNK_SIZE: usize = 16 << 20;
/// Alignment of every chunk taken from the parent.
const CHUNK_ALIGN: usize = MAX_NATURAL_ALIGN;

/// The header at the start of every chunk.
#[repr(C)]
struct Chunk {
    /// The chunk allocated before this one in the list (the list is newest first, except that
    /// dedicated chunks are linked behind the current chunk).
    prev: *mut Chunk,
    /// Total bytes of the chunk, header included, as allocated from the parent.
    size: usize,
    /// Alignment it was allocated with.
    align: usize,
    /// Creation order: a rewind returns the chunks created after its mark.
    seq: u64,
}

const HEADER: usize = size_of::<Chunk>();
const _: () = assert!(HEADER.is_multiple_of(CHUNK_ALIGN) && align_of::<Chunk>() <= CHUNK_ALIGN);

/// The mutable state of an arena.
///
/// Every chunk in the list starting at `current` (`C`, linked by `prev`, newest first) and in
/// the list starting at `large` (`L`, the dedicated chunks, newest first) is live memory from
/// the arena's `parent`. Between operations, with `data(c) = c + HEADER` and
/// `end(c) = c + c.size`:
///
/// ```text
/// current == null   <=>  ptr == end == null
/// current != null    =>  data(current) <= ptr <= end == end(current)
/// reserved           ==  Σ c.size                        over c ∈ C ∪ L
/// c.prev.seq         <   c.seq < next_seq                along C and along L
/// C ∩ L              ==  ∅                               (every seq distinct)
/// c % c.align        ==  0,  c.align >= CHUNK_ALIGN a power of two,  c.size >= HEADER
/// limit != 0         =>  reserved <= limit
/// next_chunk_size    <=  max_chunk
/// ```
///
/// The seq order makes each list acyclic: a walk that finds a seq not below the last one has
/// found a cycle (or a misplaced chunk). [`Bump::check`] verifies all of it.
struct State {
    ptr: *mut u8,
    end: *mut u8,
    current: *mut Chunk,
    /// Dedicated chunks, one block each, freed as soon as their block is.
    large: *mut Chunk,
    reserved: usize,
    next_chunk_size: usize,
    /// The arena's clock: every chunk, mark and rewind takes the next number, so a mark's
    /// `next_seq` orders it against chunks (created after it: a larger seq) and rewinds.
    next_seq: u64,
    /// Incremented by every reset: marks from an earlier epoch are refused.
    epoch: u64,
    /// The last rewind since the last reset: (its number, the `next_seq` of the mark it went
    /// to). It invalidated the marks taken between that mark and itself.
    last_rewind: Option<(u64, u64)>,
}

/// A checkpoint of an arena (`GooArenaMark` in C): rewinding to it returns everything allocated
/// after it. Valid until a reset, or until a rewind to an earlier mark returns its chunk.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mark {
    chunk: *mut u8,
    position: *mut u8,
    chunk_seq: u64,
    next_seq: u64,
    epoch: u64,
    live_bytes: usize,
    live_count: usize,
}

/// Why a rewind was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RewindError {
    /// The mark was taken before the arena's last reset.
    Stale,
    /// The mark's chunk was returned by a rewind to an earlier mark, or the arena's last rewind
    /// went to a mark taken before this one (an earlier rewind that did is not remembered).
    Invalidated,
    /// The allocator is not an arena.
    NotAnArena,
}

impl core::fmt::Display for RewindError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            RewindError::Stale => "the mark was taken before the arena's last reset",
            RewindError::Invalidated => {
                "the mark is no longer valid (a rewind to an earlier mark went past it, or it was not taken on this arena)"
            }
            RewindError::NotAnArena => "the allocator is not an arena",
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

/// The arena mechanism.
pub struct Bump {
    state: UnsafeCell<State>,
    parent: *mut GooAllocator,
    /// Maximum bytes of chunks held at once; 0 = no limit.
    limit: usize,
    max_chunk: usize,
    grow: bool,
    allow_large: bool,
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
        Bump {
            state: UnsafeCell::new(State {
                ptr: ptr::null_mut(),
                end: ptr::null_mut(),
                current: ptr::null_mut(),
                large: ptr::null_mut(),
                reserved: 0,
                next_chunk_size: initial,
                next_seq: 0,
                epoch: 0,
                last_rewind: None,
            }),
            // The parent is fixed at creation so chunks always go back where they came from.
            parent,
            limit,
            max_chunk: if grow { MAX_CHUNK_SIZE.max(initial) } else { initial },
            grow,
            allow_large,
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
    #[inline(always)]
    pub fn try_bump(&self, size: usize, align: usize) -> Option<NonNull<u8>> {
        let st = self.st();
        let addr = st.ptr as usize;
        let pad = addr.wrapping_neg() & (align - 1);
        let avail = st.end as usize - addr;
        if size <= avail && pad <= avail - size {
            // SAFETY: `pad + size <= avail`, so both offsets stay inside the current chunk
            // (invariant of `State`); a non-null chunk means `ptr` is non-null.
            unsafe {
                let p = st.ptr.add(pad);
                st.ptr = p.add(size);
                Some(NonNull::new_unchecked(p))
            }
        } else {
            // A new chunk is rare: keep the bump the straight path wherever this is inlined.
            core::hint::cold_path();
            None
        }
    }

    /// Allocates, taking a new chunk if needed; null if the parent refuses or the limit is hit.
    #[inline(always)]
    pub fn alloc(&self, size: usize, align: usize) -> *mut u8 {
        match self.try_bump(size, align) {
            Some(p) => p.as_ptr(),
            None => self.alloc_slow(size, align),
        }
    }

    #[cold]
    #[inline(never)]
    fn alloc_slow(&self, size: usize, align: usize) -> *mut u8 {
        let st = self.st();
        // Data starts right after the header, which keeps CHUNK_ALIGN; more alignment costs
        // padding inside the chunk.
        let pad = align.saturating_sub(CHUNK_ALIGN);
        let Some(need) = size.checked_add(pad).and_then(|n| n.checked_add(HEADER)) else {
            return ptr::null_mut();
        };
        let dedicated =
            if self.grow { need > st.next_chunk_size.min(self.max_chunk) / 2 } else { need > self.max_chunk };
        if dedicated && !self.allow_large {
            return ptr::null_mut();
        }
        let chunk_size = if dedicated { need } else { need.max(st.next_chunk_size) };
        let chunk_align = align.max(CHUNK_ALIGN);
        let Some(chunk) = self.new_chunk(st, chunk_size, chunk_align) else {
            return ptr::null_mut();
        };
        // SAFETY: `chunk` is a fresh chunk of `chunk_size >= HEADER + pad + size` bytes; the
        // header is initialised by `new_chunk`.
        unsafe {
            let data = chunk.cast::<u8>().add(HEADER);
            let start = data.add((data as usize).wrapping_neg() & (align - 1));
            debug_check(|| {
                ensure((start as usize).is_multiple_of(align), ARENA, "a new chunk's block is aligned")
            });
            if dedicated {
                // Keep bumping in the current chunk; the dedicated one has its own list.
                (*chunk).prev = st.large;
                st.large = chunk;
            } else {
                (*chunk).prev = st.current;
                st.current = chunk;
                st.end = chunk.cast::<u8>().add(chunk_size);
                st.ptr = start.add(size);
                // The next chunk is 3/4 of everything held so far (capped, never shrinking): the
                // arena grows by 1.75x per chunk, so it holds at most ~1.75x what it handed out
                // (plus alignment padding), in a logarithmic number of parent calls.
                if self.grow {
                    st.next_chunk_size = (st.reserved / 4 * 3).min(self.max_chunk).max(st.next_chunk_size);
                }
            }
            debug_check(|| self.check_state(st));
            start
        }
    }

    /// Takes a chunk from the parent and initialises its header (not linked yet). Takes the
    /// state borrowed by the caller, so no second `&mut State` is ever created.
    fn new_chunk(&self, st: &mut State, size: usize, align: usize) -> Option<*mut Chunk> {
        if self.limit != 0 && st.reserved.checked_add(size).is_none_or(|r| r > self.limit) {
            return None;
        }
        // SAFETY: the parent outlives the arena (constructor contract).
        let mem = unsafe { front::alloc_slow(self.parent, size, align, AllocOptions::DEFAULT) };
        if mem.is_null() {
            return None;
        }
        let chunk = mem.cast::<Chunk>();
        // SAFETY: `mem` is a fresh block of `size >= HEADER` bytes aligned for `Chunk`.
        unsafe { chunk.write(Chunk { prev: ptr::null_mut(), size, align, seq: st.next_seq }) };
        st.next_seq += 1;
        st.reserved += size;
        Some(chunk)
    }

    /// Returns a chunk to the parent.
    ///
    /// # Safety
    /// `chunk` is a live chunk of this arena, unlinked, and nothing in it is used any more.
    unsafe fn release(&self, st: &mut State, chunk: *mut Chunk) {
        // SAFETY: per the contract; chunks came from `parent` with this size and alignment.
        unsafe {
            let Chunk { size, align, .. } = chunk.read();
            st.reserved -= size;
            front::free_slow(self.parent, chunk.cast(), size, align);
        }
    }

    /// Whether `[p, p + size)` is the most recent allocation (it ends at the bump pointer,
    /// inside the current chunk).
    fn is_last(st: &State, p: *mut u8, size: usize) -> bool {
        if st.current.is_null() {
            return false;
        }
        let data = st.current as usize + HEADER;
        (p as usize).checked_add(size) == Some(st.ptr as usize) && p as usize >= data
    }

    /// The call-free part of [`Bump::free_last`]: whether it freed `p` (always, unless a
    /// dedicated chunk might hold it).
    #[inline(always)]
    pub fn try_free_in_place(&self, p: *mut u8, size: usize) -> bool {
        let st = self.st();
        if Self::is_last(st, p, size) {
            st.ptr = p;
            return true;
        }
        st.large.is_null()
    }

    /// Frees `p`: gives the bytes back if it is the most recent allocation, returns its chunk
    /// to the parent if it has a dedicated chunk, else does nothing (the bytes come back at
    /// reset).
    pub fn free_last(&self, p: *mut u8, size: usize) {
        let st = self.st();
        if Self::is_last(st, p, size) {
            st.ptr = p;
        } else if !st.large.is_null() {
            self.free_large(st, p, size);
        }
    }

    #[cold]
    fn free_large(&self, st: &mut State, p: *mut u8, size: usize) {
        let mut prev: *mut Chunk = ptr::null_mut();
        let mut c = st.large;
        while !c.is_null() {
            // SAFETY: chunks in the large list are live; a chunk is unlinked before release.
            unsafe {
                let next = (*c).prev;
                if Self::chunk_holds(c, p as usize, size) {
                    if prev.is_null() {
                        st.large = next;
                    } else {
                        (*prev).prev = next;
                    }
                    self.release(st, c);
                    debug_check(|| self.check_state(st));
                    return;
                }
                prev = c;
                c = next;
            }
        }
    }

    /// Whether `[p, p + size)` lies in the data of chunk `c`.
    ///
    /// # Safety
    /// `c` is a live chunk.
    unsafe fn chunk_holds(c: *mut Chunk, addr: usize, size: usize) -> bool {
        let lo = c as usize + HEADER;
        // SAFETY: per the contract.
        let hi = c as usize + unsafe { (*c).size };
        addr >= lo && addr.checked_add(size).is_some_and(|e| e <= hi)
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
                return p;
            }
            return ptr::null_mut();
        }
        if new <= old {
            p
        } else {
            ptr::null_mut()
        }
    }

    /// Frees every allocation; keeps the largest chunk and returns the others to the parent.
    pub fn reset(&self) {
        let st = self.st();
        let mut largest: *mut Chunk = ptr::null_mut();
        let mut c = Self::join_lists(st);
        while !c.is_null() {
            // SAFETY: chunks in the list are live (invariant).
            unsafe {
                let prev = (*c).prev;
                if largest.is_null() || (*c).size > (*largest).size {
                    if !largest.is_null() {
                        self.release(st, largest);
                    }
                    largest = c;
                } else {
                    self.release(st, c);
                }
                c = prev;
            }
        }
        st.current = largest;
        if largest.is_null() {
            st.ptr = ptr::null_mut();
            st.end = ptr::null_mut();
        } else {
            // SAFETY: `largest` is live; its data follows the header.
            unsafe {
                (*largest).prev = ptr::null_mut();
                st.ptr = largest.cast::<u8>().add(HEADER);
                st.end = largest.cast::<u8>().add((*largest).size);
            }
        }
        st.epoch += 1;
        st.last_rewind = None;
        debug_check(|| self.check_state(st));
    }

    /// Links the large list behind the normal one and returns the head of the whole list
    /// (the large list becomes empty).
    fn join_lists(st: &mut State) -> *mut Chunk {
        let large = core::mem::replace(&mut st.large, ptr::null_mut());
        if st.current.is_null() {
            return large;
        }
        let mut tail = st.current;
        // SAFETY: chunks in the lists are live.
        unsafe {
            while !(*tail).prev.is_null() {
                tail = (*tail).prev;
            }
            (*tail).prev = large;
        }
        st.current
    }

    /// A checkpoint of the current position. `live_bytes`/`live_count` are the allocator's
    /// stats at this point, so a rewind can account what it frees.
    pub fn mark(&self, live_bytes: usize, live_count: usize) -> Mark {
        let st = self.st();
        // The mark takes a number of the clock: marks are ordered even when no chunk comes
        // between them.
        st.next_seq += 1;
        Mark {
            chunk: st.current.cast(),
            position: st.ptr,
            // SAFETY: a non-null current chunk is live.
            chunk_seq: if st.current.is_null() { 0 } else { unsafe { (*st.current).seq } },
            next_seq: st.next_seq - 1,
            epoch: st.epoch,
            live_bytes,
            live_count,
        }
    }

    /// Returns the arena to `mark`: chunks created after it go back to the parent, the bump
    /// pointer goes back to the mark's position. A refused rewind changes nothing.
    pub fn rewind(&self, mark: &Mark) -> Result<(), RewindError> {
        let st = self.st();
        if mark.epoch != st.epoch {
            return Err(RewindError::Stale);
        }
        // Find the mark's chunk among those created before the mark, and check the position.
        let mark_chunk = mark.chunk.cast::<Chunk>();
        let mut found = mark_chunk.is_null();
        let mut c = st.current;
        while !c.is_null() && !found {
            // SAFETY: chunks in the list are live.
            unsafe {
                found = c == mark_chunk && (*c).seq == mark.chunk_seq;
                c = (*c).prev;
            }
        }
        // Taken before the last rewind, which went to a mark taken before this one: a rewind to
        // an earlier mark invalidated it. (Not the position: frees of the most recent blocks
        // move the bump pointer below a valid mark's.)
        let overtaken = st.last_rewind.is_some_and(|(at, to)| at > mark.next_seq && to < mark.next_seq);
        if !found || overtaken {
            return Err(RewindError::Invalidated);
        }
        if !mark_chunk.is_null() {
            // SAFETY: found in the live list above.
            let (lo, hi) =
                unsafe { (mark_chunk as usize + HEADER, mark_chunk as usize + (*mark_chunk).size) };
            if !(lo..=hi).contains(&(mark.position as usize)) {
                return Err(RewindError::Invalidated);
            }
        } else if !mark.position.is_null() {
            return Err(RewindError::Invalidated);
        }
        // Return every chunk created after the mark, normal or dedicated.
        st.current = self.release_newer(st, st.current, mark.next_seq);
        st.large = self.release_newer(st, st.large, mark.next_seq);
        debug_check(|| ensure(st.current == mark_chunk, ARENA, "a rewind leaves the mark's chunk current"));
        st.ptr = mark.position;
        st.end = if mark_chunk.is_null() {
            ptr::null_mut()
        } else {
            // SAFETY: the mark's chunk is live (found above, and not created after the mark).
            unsafe { mark_chunk.cast::<u8>().add((*mark_chunk).size) }
        };
        st.last_rewind = Some((st.next_seq, mark.next_seq));
        st.next_seq += 1;
        debug_check(|| self.check_state(st));
        Ok(())
    }

    /// Releases the chunks of the list at `head` created at or after `next_seq`; returns the
    /// list of the others, in their order.
    fn release_newer(&self, st: &mut State, head: *mut Chunk, next_seq: u64) -> *mut Chunk {
        let (mut kept_head, mut kept_tail) = (ptr::null_mut::<Chunk>(), ptr::null_mut::<Chunk>());
        let mut c = head;
        // SAFETY: walking a live list; a chunk is released only after its `prev` was read.
        unsafe {
            while !c.is_null() {
                let prev = (*c).prev;
                if (*c).seq >= next_seq {
                    self.release(st, c);
                } else {
                    (*c).prev = ptr::null_mut();
                    if kept_tail.is_null() {
                        kept_head = c;
                    } else {
                        (*kept_tail).prev = c;
                    }
                    kept_tail = c;
                }
                c = prev;
            }
        }
        kept_head
    }

    /// Calls `f` on every chunk, normal and dedicated, until it returns true.
    fn any_chunk(st: &State, mut f: impl FnMut(*mut Chunk) -> bool) -> bool {
        for head in [st.current, st.large] {
            let mut c = head;
            while !c.is_null() {
                if f(c) {
                    return true;
                }
                // SAFETY: chunks in the lists are live.
                c = unsafe { (*c).prev };
            }
        }
        false
    }

    /// Where chunks come from.
    pub fn parent(&self) -> *mut GooAllocator {
        self.parent
    }

    /// Bytes held in chunks.
    pub fn reserved(&self) -> usize {
        self.st().reserved
    }

    /// Number of chunks held.
    pub fn chunk_count(&self) -> usize {
        let mut n = 0;
        Self::any_chunk(self.st(), |_| {
            n += 1;
            false
        });
        n
    }

    /// Whether `[p, p + size)` lies inside one of the arena's chunks (for tests and checks).
    pub fn contains(&self, p: *const u8, size: usize) -> bool {
        // SAFETY: `any_chunk` only passes live chunks.
        Self::any_chunk(self.st(), |c| unsafe { Self::chunk_holds(c, p as usize, size) })
    }
}

impl Drop for Bump {
    fn drop(&mut self) {
        let st = self.st();
        let mut c = Self::join_lists(st);
        while !c.is_null() {
            // SAFETY: every listed chunk is live and unused once the arena is dropped.
            unsafe {
                let prev = (*c).prev;
                self.release(st, c);
                c = prev;
            }
        }
    }
}

// SAFETY: blocks are carved from live chunks, disjoint (the bump pointer only moves past handed
// out bytes, and back only over the most recent block or to a mark, whose later blocks the
// caller gives up), aligned by construction, and valid until reset/rewind/drop.
unsafe impl Backend for Bump {
    const NAME: &'static str = "arena";
    const KIND: Kind = Kind::Arena;
    const THREAD_SAFE: bool = false;

    /// A bump inside the current chunk.
    #[inline(always)]
    fn try_alloc_inline(&self, _home: Option<usize>, size: usize, align: usize) -> *mut u8 {
        self.try_bump(size, resolve_align(size, align)).map_or(ptr::null_mut(), NonNull::as_ptr)
    }

    /// The most recent block goes back to the bump pointer; any other block's bytes come back
    /// at reset, unless dedicated chunks exist (one of them may be this block's: the slow path
    /// returns it to the parent).
    #[inline(always)]
    unsafe fn try_free_inline(&self, _home: Option<usize>, ptr: *mut u8, size: usize, _align: usize) -> bool {
        self.try_free_in_place(ptr, size)
    }

    #[inline(always)]
    fn alloc(&self, size: usize, align: usize, _options: AllocOptions) -> *mut u8 {
        Bump::alloc(self, size, align)
    }

    #[inline]
    unsafe fn free(&self, ptr: *mut u8, size: usize, _align: usize) {
        self.free_last(ptr, size);
    }

    unsafe fn realloc(
        &self,
        ptr: *mut u8,
        old_size: usize,
        new_size: usize,
        align: usize,
        _options: AllocOptions,
    ) -> *mut u8 {
        // In place only where the block already has the alignment asked for: a block at its
        // natural alignment (say 4, for 4 bytes) grown to 100 bytes must move to a 16-aligned
        // one (the front door asks for the natural alignment of the larger size).
        if (ptr as usize).is_multiple_of(align) {
            // SAFETY: the caller vouches for the block.
            let same = unsafe { self.resize_in_place(ptr, old_size, new_size) };
            if !same.is_null() {
                return same;
            }
        }
        let new = Bump::alloc(self, new_size, align);
        if !new.is_null() {
            // SAFETY: both blocks live and disjoint (the new one was just carved).
            unsafe { ptr::copy_nonoverlapping(ptr, new, old_size.min(new_size)) };
        }
        new
    }

    fn bytes_reserved(&self, _bytes_allocated: usize) -> usize {
        self.reserved()
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
        let now = front::stats(allocator);
        front::record_bulk_free(
            allocator,
            now.bytes_allocated.saturating_sub(mark.live_bytes),
            now.allocation_count.saturating_sub(mark.live_count),
        );
        Ok(())
    }
}

const ARENA: &str = "arena";

impl Bump {
    /// Verifies the invariants of the arena's state (the equations beside `State`): walks both
    /// chunk lists, each step bound to lower `seq`, so a cyclic list is reported, not walked
    /// forever. Reads only; allocates nothing.
    pub fn check(&self) -> Result<(), InvariantError> {
        self.check_state(self.st())
    }

    /// [`Bump::check`] on the state a method already borrowed (debug checks in its slow paths).
    fn check_state(&self, st: &State) -> Result<(), InvariantError> {
        let mut reserved = 0usize;
        for head in [st.current, st.large] {
            let mut newer = st.next_seq;
            let mut c = head;
            while !c.is_null() {
                let chunk = Self::read_chunk(c)?;
                ensure(chunk.seq < newer, ARENA, "c.prev.seq < c.seq < next_seq along each list (no cycle)")?;
                ensure(
                    chunk.align.is_power_of_two()
                        && chunk.align >= CHUNK_ALIGN
                        && (c as usize).is_multiple_of(chunk.align),
                    ARENA,
                    "c % c.align == 0, c.align >= CHUNK_ALIGN a power of two",
                )?;
                ensure(chunk.size >= HEADER, ARENA, "c.size >= HEADER")?;
                reserved = reserved.saturating_add(chunk.size);
                newer = chunk.seq;
                c = chunk.prev;
            }
        }
        ensure(reserved == st.reserved, ARENA, "reserved == Σ c.size over both chunk lists")?;
        // Both lists fall in seq: one merge walk finds a seq (a chunk) in both.
        let (mut a, mut b) = (st.current, st.large);
        while !a.is_null() && !b.is_null() {
            let (ca, cb) = (Self::read_chunk(a)?, Self::read_chunk(b)?);
            ensure(ca.seq != cb.seq, ARENA, "C ∩ L == ∅ (every seq distinct)")?;
            if ca.seq > cb.seq {
                a = ca.prev;
            } else {
                b = cb.prev;
            }
        }
        if st.current.is_null() {
            ensure(st.ptr.is_null() && st.end.is_null(), ARENA, "current == null <=> ptr == end == null")?;
        } else {
            let current = Self::read_chunk(st.current)?;
            let (data, end) = (st.current as usize + HEADER, st.current as usize + current.size);
            ensure(
                data <= st.ptr as usize && st.ptr <= st.end,
                ARENA,
                "current != null => data(current) <= ptr <= end",
            )?;
            ensure(st.end as usize == end, ARENA, "end == end(current)")?;
        }
        ensure(self.limit == 0 || st.reserved <= self.limit, ARENA, "limit != 0 => reserved <= limit")?;
        ensure(st.next_chunk_size <= self.max_chunk, ARENA, "next_chunk_size <= max_chunk")
    }

    /// The header of listed chunk `c`, once its address could be one (non-null, aligned).
    fn read_chunk(c: *mut Chunk) -> Result<ChunkHeader, InvariantError> {
        ensure(!c.is_null() && (c as usize).is_multiple_of(CHUNK_ALIGN), ARENA, "c % CHUNK_ALIGN == 0")?;
        // SAFETY: `c` is linked from one of the arena's lists, whose chunks are live memory of
        // the arena (`State`'s first invariant, which a check cannot verify: it trusts the links
        // and verifies the equations between what they point to); non-null and aligned for
        // `Chunk`, checked above.
        let Chunk { prev, size, align, seq } = unsafe { c.read() };
        Ok(ChunkHeader { prev, size, align, seq })
    }
}

/// A copy of a chunk's header, as [`Bump::check`] reads it.
struct ChunkHeader {
    prev: *mut Chunk,
    size: usize,
    align: usize,
    seq: u64,
}

/// Verifies the invariants of the arena `allocator` ([`Bump::check`]) and of its stats
/// ([`ShardedStats::check`](crate::policy::stats::ShardedStats::check)).
///
/// # Safety
/// As for [`from_raw`].
pub unsafe fn check_raw(allocator: *mut GooAllocator) -> Result<(), InvariantError> {
    // SAFETY: `allocator` is null or valid, and live if a library allocator (this function's
    // contract), as `from_raw` requires.
    let bump = unsafe { from_raw(allocator) }.ok_or(InvariantError::new(ARENA, "not an arena"))?;
    bump.check()?;
    // SAFETY: `from_raw` found a live `Managed<Bump>` behind `allocator`.
    unsafe { Managed::<Bump>::stats(allocator) }.check()
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
        assert_eq!(bump.rewind(&m), Ok(()), "a valid mark");
        assert_eq!(bump.rewind(&m), Ok(()), "and again");
        // Marks nest: an inner one rewound first, then the outer one; the inner one is
        // invalid afterwards.
        let outer = bump.mark(0, 0);
        bump.alloc(100, 8);
        let inner = bump.mark(0, 0);
        bump.alloc(100, 8);
        assert_eq!(bump.rewind(&inner), Ok(()));
        assert_eq!(bump.rewind(&outer), Ok(()));
        bump.alloc(8, 8);
        assert_eq!(bump.rewind(&inner), Err(RewindError::Invalidated));
        // Two marks with nothing between them are told apart: the later one is invalid after
        // a rewind to the earlier one.
        let first = bump.mark(0, 0);
        let second = bump.mark(0, 0);
        assert_eq!(bump.rewind(&first), Ok(()));
        assert_eq!(bump.rewind(&second), Err(RewindError::Invalidated));
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
        assert!(bump.chunk_count() >= 4, "chunks in both lists");
        assert_eq!(bump.check(), Ok(()));

        bump.st().reserved += 1;
        assert_eq!(broken(&bump), "reserved == Σ c.size over both chunk lists");
        bump.st().reserved -= 1;

        let ptr = bump.st().ptr;
        bump.st().ptr = bump.st().end.wrapping_add(1);
        assert_eq!(broken(&bump), "current != null => data(current) <= ptr <= end");
        bump.st().ptr = ptr;

        let next_seq = bump.st().next_seq;
        bump.st().next_seq = 1;
        assert_eq!(broken(&bump), "c.prev.seq < c.seq < next_seq along each list (no cycle)");
        bump.st().next_seq = next_seq;

        // A cycle: the oldest chunk of the normal list links back to the newest.
        let mut oldest = bump.st().current;
        // SAFETY: walking the arena's live chunks.
        unsafe {
            while !(*oldest).prev.is_null() {
                oldest = (*oldest).prev;
            }
            (*oldest).prev = bump.st().current;
        }
        assert_eq!(broken(&bump), "c.prev.seq < c.seq < next_seq along each list (no cycle)");
        // SAFETY: as above.
        unsafe { (*oldest).prev = ptr::null_mut() };
        assert_eq!(bump.check(), Ok(()), "restored");

        // After a reset one chunk is left, current, and the large list is empty. A chunk in
        // both lists: it also heads the large list (`reserved` counting it twice, so that only
        // the disjointness fails).
        bump.reset();
        assert_eq!((bump.chunk_count(), bump.st().large), (1, ptr::null_mut()));
        bump.st().large = bump.st().current;
        bump.st().reserved *= 2;
        assert_eq!(broken(&bump), "C ∩ L == ∅ (every seq distinct)");
        bump.st().reserved /= 2;
        bump.st().large = ptr::null_mut();

        let (current, ptr, end, reserved) =
            (bump.st().current, bump.st().ptr, bump.st().end, bump.st().reserved);
        bump.st().ptr = ptr::null_mut();
        assert_eq!(broken(&bump), "current != null => data(current) <= ptr <= end");
        bump.st().current = ptr::null_mut();
        assert_eq!(broken(&bump), "reserved == Σ c.size over both chunk lists");
        bump.st().reserved = 0;
        assert_eq!(broken(&bump), "current == null <=> ptr == end == null");
        bump.st().end = ptr::null_mut();
        assert_eq!(bump.check(), Ok(()), "an empty arena's state");
        let st = bump.st();
        (st.current, st.ptr, st.end, st.reserved) = (current, ptr, end, reserved);
        assert_eq!(bump.check(), Ok(()), "restored (the chunk goes back when the arena drops)");
    }
}
