//! The scoped allocator: remembers every live allocation made through it, so single frees and
//! reallocs work as usual, and frees everything still live when the scope ends.
//!
//! Two kinds of block, told apart by their header's tag:
//! - **Small** (1 to [`SMALL_MAX`] bytes at alignment up to 16): carved from chunks the scope
//!   takes from its parent, in [`CLASSES`] size classes, each behind a 16-byte header (size,
//!   tag). A freed small block goes on its class's free list and serves the scope's next request
//!   of that class; the chunks go back to the parent when the scope ends. PostgreSQL's memory
//!   contexts and mimalloc's heaps work this way: the parent sees one allocation per chunk, and
//!   ending a scope costs one free per chunk, not one per block.
//! - **Large** (bigger, or more aligned): a parent block of its own behind a 32-byte header that
//!   links it into the scope's list (prev, next, size, tag); freeing it gives it straight back.
//!
//! The tag's check bits mix the block's address with the scope's key, a spread of its
//! generation (a process-wide count of the scopes made), so a block of another scope, of an
//! ended one, or one already freed, is refused after reading the 8 bytes in front of it.
//! `GOO_ALLOC_PERSIST` blocks are plain blocks of the parent and survive the scope.
//! A scope belongs to the thread that made it; it is not thread-safe.
//!
//! Scopes begun on a thread ([`begin_over`]) form a chain, innermost first, kept apart from the
//! thread allocator (which `goo_memory_cleanup` or the program may change): ending one checks
//! the chain, and restores the thread allocator only if it is still that scope.
//!
//! An ended scope's object is not freed at once: it holds a vtable that refuses everything
//! ([`ENDED`]) among the last [`ENDED_KEPT`] + 1 scope objects its thread ended, and only the
//! oldest of those is reused for a new scope (or freed). So a pointer to an ended scope names
//! no scope, and is read without touching freed memory, until [`ENDED_KEPT`] later scopes of
//! its thread have ended.

use core::cell::{Cell, UnsafeCell};
use core::ptr::{self, NonNull};

use crate::addr_set::{addr_set, AddrSet};
use crate::allocators::chunk_list::{Chunk, PlainChunks};
use crate::policy::backend::{Backend, Kind, Managed};
use crate::policy::invariant::{debug_check, ensure, InvariantError};
use crate::policy::thread_slot::{self, thread_serial};
use crate::policy::{front, sanitize};
use crate::raw::{AllocOptions, AllocStrategy, GooAllocator, MAX_NATURAL_ALIGN};

/// The header of a large block.
#[repr(C)]
struct Hdr {
    prev: *mut Hdr,
    next: *mut Hdr,
    size: usize,
    /// See [`TAG_WORD`].
    tag: usize,
}

/// Bookkeeping in front of every small block: its size (while free: the next free block of its
/// class) and its tag.
pub const HEADER_BYTES: usize = 16;
/// Bookkeeping in front of every large block (for alignments up to 32).
pub const LARGE_HEADER_BYTES: usize = core::mem::size_of::<Hdr>();
const _: () = assert!(LARGE_HEADER_BYTES == 32);
/// The largest small block (PostgreSQL's memory contexts draw the same line).
pub const SMALL_MAX: usize = 8192;
/// Small size classes: 16-byte steps up to 128 bytes, then eight per doubling (a block is at
/// most 1/8 larger than its request).
pub const CLASSES: usize = 56;
const CLASS_MASK: usize = 63;
/// Bytes of each class (padded to 64 entries: a class is masked, never bounds-checked).
const CLASS_BYTES: [usize; CLASS_MASK + 1] = class_bytes();
/// The class of a small size, by `(size + 15) / 16`.
const CLASS_OF: [u8; SMALL_MAX / 16 + 1] = class_of_table();
const _: () = assert!(CLASSES <= CLASS_MASK + 1 && CLASS_BYTES[CLASSES - 1] == SMALL_MAX);

const fn class_bytes() -> [usize; CLASS_MASK + 1] {
    let mut t = [SMALL_MAX; CLASS_MASK + 1];
    let mut c = 0;
    while c < 8 {
        t[c] = 16 * (c + 1);
        c += 1;
    }
    let mut base = 128;
    while c < CLASSES {
        let mut k = 1;
        while k <= 8 {
            t[c] = base + base / 8 * k;
            c += 1;
            k += 1;
        }
        base *= 2;
    }
    t
}

const fn class_of_table() -> [u8; SMALL_MAX / 16 + 1] {
    let mut t = [0u8; SMALL_MAX / 16 + 1];
    let (mut i, mut c) = (0, 0);
    while i < t.len() {
        while CLASS_BYTES[c] < i * 16 {
            c += 1;
        }
        t[i] = c as u8;
        i += 1;
    }
    t
}

/// The class of a small size (at most [`SMALL_MAX`]).
#[inline(always)]
fn class_of(size: usize) -> usize {
    CLASS_OF[(size + 15) >> 4] as usize & CLASS_MASK
}

/// The block's bytes in a chunk: its header and its class.
#[inline(always)]
fn stride(class: usize) -> usize {
    HEADER_BYTES + CLASS_BYTES[class & CLASS_MASK]
}

/// Bytes of every chunk's header (the chunk list's plain header: link and size); the small
/// blocks follow it.
const CHUNK_HEADER: usize = PlainChunks::HEADER;
const _: () = assert!(CHUNK_HEADER == 16);
/// The first chunk's size (small enough for the C library's per-thread cache: a scope with a
/// few small blocks stays cheap); each next one doubles, up to [`MAX_CHUNK`].
const FIRST_CHUNK: usize = 1024;
const MAX_CHUNK: usize = 256 * 1024;

/// The tag, the word right before every block: check bits (the block's address and the scope's
/// key) above bit 16; below them the layout. A small block: [`SMALL_FLAG`] and its class. A
/// large block: log2 of the slot (bytes from the parent block's start to the user block) in
/// bits 0..8, log2 of the parent alignment in bits 8..16 (both below 64, so never the flag).
const TAG_WORD: usize = 8;
const META_BITS: usize = 0xffff;
const SMALL_FLAG: usize = 0x8000;
/// Flipped in the tag of a small block when it is freed: a second free no longer matches.
const FREED: usize = 1 << 63;
const MAGIC: usize = 0x5c09_e0a1_1c47_0000;
/// The layout bits of a large block with alignment up to 16.
const PLAIN_META: usize = meta(LARGE_HEADER_BYTES, MAX_NATURAL_ALIGN);

/// The layout bits of a large block's tag: log2 of the slot and of the parent alignment.
const fn meta(slot: usize, parent_align: usize) -> usize {
    slot.trailing_zeros() as usize | (parent_align.trailing_zeros() as usize) << 8
}
/// The generation of the next scope made: every scope has its own.
static NEXT_GENERATION: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(1);

/// The key of a scope of `generation`: the generation spread by an odd multiplier, so keys of
/// any two scopes differ in their high bits (those the tag's check bits keep).
const fn key_of(generation: u64) -> usize {
    (generation as usize).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ MAGIC
}

/// What the end of a scope freed because nobody else did; `Display` says it in one line.
///
/// ```
/// use goo_memory_core::scoped::Scope;
/// let ((), summary) = Scope::run_with_summary(|s| {
///     s.alloc(1u32);
/// });
/// assert_eq!((summary.implicit_frees, summary.implicit_bytes), (1, 4));
/// assert_eq!(summary.to_string(), "1 blocks (4 bytes) freed by the scope's end");
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ScopeSummary {
    /// Blocks still live at the end, freed by the scope.
    pub implicit_frees: usize,
    /// Their bytes (as requested).
    pub implicit_bytes: usize,
}

/// Why a scope operation was refused.
///
/// ```
/// use goo_memory_core::scoped::{self, ScopeError};
/// let outer = scoped::begin();
/// let inner = scoped::begin();
/// // SAFETY: live scopes of this thread.
/// unsafe {
///     assert_eq!(scoped::end(outer.as_ptr()), Err(ScopeError::OutOfOrder));
///     scoped::end(inner.as_ptr()).unwrap();
///     scoped::end(outer.as_ptr()).unwrap();
/// }
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScopeError {
    /// The allocator is not a scope (or has ended).
    NotAScope,
    /// The scope belongs to another thread.
    WrongThread,
    /// The scope was begun on this thread and an inner scope is still active.
    OutOfOrder,
}

impl core::fmt::Display for ScopeError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            ScopeError::NotAScope => "not a live scope (never one, or already ended)",
            ScopeError::WrongThread => "the scope belongs to another thread",
            ScopeError::OutOfOrder => "an inner scope is still active: end scopes innermost first",
        })
    }
}

impl std::error::Error for ScopeError {}

/// A live block of a scope, found by [`Scoped::plan_free`] (or a full-path check) and not yet
/// freed: the user pointer and its tag.
struct LiveBlock {
    p: *mut u8,
    tag: usize,
}

impl LiveBlock {
    /// Whether it is a small block (in a chunk; see [`Scoped::forget_small`]), else a large
    /// one (a parent block of its own; see [`LiveBlock::parent_block`], [`Scoped::forget`]).
    #[inline(always)]
    fn is_small(&self) -> bool {
        self.tag & SMALL_FLAG != 0
    }

    /// A large block's header.
    #[inline(always)]
    fn large_header(&self) -> *mut Hdr {
        debug_check(|| ensure(!self.is_small(), SCOPED, "a large header is read of a large block only"));
        self.p.wrapping_sub(LARGE_HEADER_BYTES).cast()
    }

    /// The scope's parent and the parent block behind this large block: (parent, start, size,
    /// alignment), what freeing it must give back.
    fn parent_block(&self, scope: &Scoped) -> (*mut GooAllocator, *mut u8, usize, usize) {
        // SAFETY: the block was found live and large, its header intact.
        let (base, total, parent_align) = unsafe { Scoped::parent_block_of(self.large_header()) };
        (scope.parent, base, total, parent_align)
    }
}

/// The mutable state of a scope.
///
/// `Ch` is the scope's list of chunks (`Scoped::chunks`, newest first, a plain chunk list with
/// its own equations beside `ChunkList`), `Lg` the list of large blocks' headers starting at
/// `head` (linked by `next` and `prev`, newest first). A chunk's small blocks lie end to end
/// through its data area (from `data(c) = c + CHUNK_HEADER` to `end(c) = c + c.size`), each a
/// 16-byte header and its class's bytes (`stride(k)` in all), up to `bump` in the newest chunk
/// and to less than `stride(0)` before the end of the others (`carve_rest` put the rest on the
/// free lists). A small block's header is `[size, tag]` while live and `[link, tag ^ FREED]`
/// while free, with `tag = check_bits(p) | SMALL_FLAG | k` for the block `p` of class `k`.
/// Between operations:
///
/// ```text
/// Ch empty          <=>  bump == bump_end == null
/// Ch not empty       =>  data(newest of Ch) <= bump <= bump_end == end(newest of Ch)
/// c.size            >=  CHUNK_HEADER + stride(0)                  for c ∈ Ch
/// large_held        ==  Σ (h.size + slot(h)) over h ∈ Lg
/// every small block's tag is its live or its freed tag, of a class k < CLASSES
/// live small block   =>  class_of(size) == k
/// free[k]           ==  the freed blocks of class k, each once     (null for k >= CLASSES)
/// live_count        ==  |live small blocks| + |Lg|
/// live_bytes        ==  Σ size over live small blocks + Σ h.size over h ∈ Lg
/// h ∈ Lg             =>  h.tag == check_bits(h + 32) | meta(slot, parent_align),
///                        slot >= 32 and parent_align >= 16, powers of two
/// head.prev         ==  null,   h.next.prev == h                   along Lg
/// FIRST_CHUNK       <=  next_chunk <= MAX_CHUNK
/// !installed         =>  previous == null,  outer == null
/// key               ==  key_of(generation)
/// ```
///
/// [`Scoped::check`] verifies all of it, walking the chunks' blocks one by one.
///
/// What a watching memory checker is told (`policy::sanitize`; the slow paths tell it, the
/// call-free ones are closed while one watches): a live small block's header and its `size`
/// bytes are accessible; the rest of its class, a free block's bytes and a chunk's data past
/// `bump` are not. A free block's header stays accessible: it holds the free list's link and
/// the tag a free checks, which only the scope reads and writes.
struct State {
    /// Free small blocks by class (their headers); a free block's first word links the next.
    free: [*mut u8; CLASS_MASK + 1],
    /// The unused rest of the newest chunk: `bump..bump_end`.
    bump: *mut u8,
    bump_end: *mut u8,
    /// The size of the next chunk.
    next_chunk: usize,
    /// Large blocks, newest first.
    head: *mut Hdr,
    /// Live blocks (small and large) and their bytes as requested.
    live_count: usize,
    live_bytes: usize,
    /// Bytes held from the parent in large blocks (the chunks' are the chunk list's).
    large_held: usize,
    /// PERSIST blocks handed out (they belong to the parent; frees through the scope forward).
    /// A set, so many of them cost O(1) per operation; every hot-path lookup first checks it is
    /// non-empty (no hashing while no PERSIST block is live).
    persist: AddrSet,
    /// For a scope begun with [`begin_over`]: the thread allocator to restore at its end (if
    /// it is still this scope then), and the scope begun before it and still active then, the
    /// next one along the thread's chain (see [`INNERMOST`]).
    installed: bool,
    previous: *mut GooAllocator,
    outer: *mut GooAllocator,
}

impl State {
    const EMPTY: State = State {
        free: [ptr::null_mut(); CLASS_MASK + 1],
        bump: ptr::null_mut(),
        bump_end: ptr::null_mut(),
        next_chunk: FIRST_CHUNK,
        head: ptr::null_mut(),
        live_count: 0,
        live_bytes: 0,
        large_held: 0,
        persist: addr_set(),
        installed: false,
        previous: ptr::null_mut(),
        outer: ptr::null_mut(),
    };

    /// A small block's header to serve `class` with: a free one, or the next one of the newest
    /// chunk; null if neither.
    #[inline(always)]
    fn take_small(&mut self, class: usize) -> *mut u8 {
        let h = self.free[class];
        if !h.is_null() {
            // SAFETY: a free block's first word links the next free block of its class.
            self.free[class] = unsafe { h.cast::<*mut u8>().read() };
            return h;
        }
        let stride = stride(class);
        if self.bump_end.addr() - self.bump.addr() < stride {
            return ptr::null_mut();
        }
        let h = self.bump;
        // SAFETY: `stride` bytes remain in the chunk.
        self.bump = unsafe { h.add(stride) };
        h
    }

    /// Puts the free small block behind header `h` on its class's list, with `tag` (a freed
    /// tag: it matches no live block).
    ///
    /// # Safety
    /// `h` is a small block's header in a chunk of this scope, of `class`, not live.
    #[inline(always)]
    unsafe fn push_free(&mut self, h: *mut u8, class: usize, tag: usize) {
        // SAFETY: the header's two words are the scope's to write.
        unsafe {
            h.cast::<*mut u8>().write(self.free[class]);
            h.add(TAG_WORD).cast::<usize>().write(tag);
        }
        self.free[class] = h;
    }
}

/// The scope mechanism: what a [`Scope`](crate::scoped::Scope), `goo_scope_begin` and a C
/// scoped allocator allocate from. [`from_raw`] finds it behind a live scope's vtable.
///
/// ```
/// use goo_memory_core::scoped::{self, Scope};
/// let scope = Scope::new();
/// scope.alloc([0u8; 100]);
/// scope.alloc(1u64);
/// // SAFETY: a live scope of this thread.
/// let mechanism = unsafe { scoped::from_raw(scope.as_ptr()) }.unwrap();
/// assert_eq!(mechanism.live(), (2, 108), "blocks and bytes live");
/// assert!(mechanism.held() >= 108 + mechanism.spare());
/// assert_eq!(scope.end().implicit_frees, 2);
/// ```
pub struct Scoped {
    parent: *mut GooAllocator,
    /// This scope's number among all scopes made: no two scopes share one.
    generation: u64,
    /// Mixed into every header's check bits: `key_of(generation)`, so a block of one scope is
    /// refused by another, the scope that reused an ended one's object included.
    key: usize,
    /// The thread that made it ([`thread_serial`]), the only one that may end it.
    owner: u64,
    report: Cell<bool>,
    /// The chunks small blocks are carved from. Outside `state`: taking a chunk calls the
    /// parent, and no borrow of the state is held across a call to the parent.
    chunks: PlainChunks,
    state: UnsafeCell<State>,
}

impl Scoped {
    /// A scope over `parent`.
    ///
    /// # Safety
    /// `parent` must be a valid allocator that outlives the scope.
    pub unsafe fn new(parent: *mut GooAllocator) -> Self {
        let generation = NEXT_GENERATION.fetch_add(1, core::sync::atomic::Ordering::Relaxed);
        Scoped {
            parent,
            generation,
            key: key_of(generation),
            owner: thread_serial(),
            report: Cell::new(false),
            // SAFETY: the parent outlives the scope (this function's contract), so it outlives
            // its chunks; 16 is a power of two.
            chunks: unsafe { PlainChunks::new(parent, MAX_NATURAL_ALIGN) },
            state: UnsafeCell::new(State::EMPTY),
        }
    }

    #[allow(clippy::mut_from_ref)]
    #[inline(always)]
    fn st(&self) -> &mut State {
        // SAFETY: scopes are !Sync; each use of this borrow ends before anything that takes it
        // again (a method of this scope) is called; the parent is another allocator.
        unsafe { &mut *self.state.get() }
    }

    /// The check bits of a block at `p` in this scope.
    #[inline(always)]
    fn check_bits(&self, p: *mut u8) -> usize {
        ((p as usize) ^ self.key) & !META_BITS
    }

    /// Whether a request is served by a small block.
    #[inline(always)]
    fn is_small(size: usize, align: usize) -> bool {
        size.wrapping_sub(1) < SMALL_MAX && align <= MAX_NATURAL_ALIGN
    }

    /// The tag of `p` if it is a live block of this scope.
    #[inline(always)]
    fn tag_of(&self, p: *mut u8) -> Option<usize> {
        self.tag_read(p, true)
    }

    /// [`Scoped::tag_of`]; `quiet` tells a watching valgrind not to report the read (a block of
    /// an ended scope over an arena: the arena retired the memory, which it still holds). The
    /// call-free path reads plainly: it declines while a tool watches.
    #[inline(always)]
    fn tag_read(&self, p: *mut u8, quiet: bool) -> Option<usize> {
        // Every block of a scope is at least 16-aligned and has a header in front.
        if (p as usize) < LARGE_HEADER_BYTES || !(p as usize).is_multiple_of(MAX_NATURAL_ALIGN) {
            return None;
        }
        // The caller vouches `p` is a block from this allocator; reading the word in front of
        // it is the check it can afford.
        // SAFETY: per the above, the word is readable (a tag this scope wrote, if `p` is ours),
        // and aligned (`p` is).
        let tag = unsafe {
            let word = p.wrapping_sub(TAG_WORD).cast::<usize>();
            if quiet {
                sanitize::read_quietly(word)
            } else {
                word.read()
            }
        };
        (tag & !META_BITS == self.check_bits(p)).then_some(tag)
    }

    #[cold]
    fn misuse(&self, what: &str, p: *mut u8) {
        eprintln!(
            "goo-memory: scoped allocator: {what} of {p:p}, which is not a live block of this scope (ignored)"
        );
    }

    fn alloc(&self, size: usize, align: usize, options: AllocOptions) -> *mut u8 {
        if options.contains(AllocOptions::PERSIST) {
            // SAFETY: the parent outlives the scope.
            let p = unsafe {
                front::alloc_slow(self.parent, size, align, options.without(AllocOptions::PERSIST))
            };
            if !p.is_null() {
                self.st().persist.insert(p as usize);
            }
            return p;
        }
        let p = if Self::is_small(size, align) {
            self.alloc_small(size)
        } else {
            self.alloc_large(size, align, options)
        };
        if !p.is_null() {
            self.claim_address(p);
        }
        p
    }

    /// For the call-free path: a small block for `size` (at most [`SMALL_MAX`]) from a free list or the newest chunk, or null when the full path
    /// must serve it (no block at hand, or live PERSIST blocks: the full path keeps their set in
    /// order).
    #[inline(always)]
    fn try_alloc_small(&self, size: usize) -> *mut u8 {
        debug_check(|| {
            ensure(Self::is_small(size, 0), SCOPED, "the call-free path serves small requests only")
        });
        let st = self.st();
        if !st.persist.is_empty() {
            return ptr::null_mut();
        }
        let class = class_of(size);
        let h = st.take_small(class);
        if h.is_null() {
            return h;
        }
        // SAFETY: a small block's header of `class`, taken for this request.
        unsafe { self.place_small(h, class, size) }
    }

    /// A small block for `size`, from a new chunk if need be. Tells a watching tool (see
    /// `policy::sanitize`; the call-free path, closed while one watches, does not): the header
    /// and `size` bytes are handed out, the rest of the class stays retired.
    fn alloc_small(&self, size: usize) -> *mut u8 {
        let class = class_of(size);
        let mut h = self.st().take_small(class);
        if h.is_null() {
            if !self.refill(stride(class)) {
                return h;
            }
            // A fresh chunk holds the block (`refill` made room for one of this stride).
            h = self.st().take_small(class);
            debug_check(|| ensure(!h.is_null(), SCOPED, "a fresh chunk holds the block"));
        }
        // The header is written next: a block from the bump had it retired with the chunk's
        // rest.
        sanitize::hand_out(h, HEADER_BYTES + size);
        // SAFETY: as in `try_alloc_small`.
        unsafe { self.place_small(h, class, size) }
    }

    /// Writes a small block's header and counts it live; returns the block.
    ///
    /// # Safety
    /// `h` is a small block's header of `class` in a chunk of this scope, just taken.
    #[inline(always)]
    unsafe fn place_small(&self, h: *mut u8, class: usize, size: usize) -> *mut u8 {
        // SAFETY: per the contract; the user block follows the 16-byte header.
        unsafe {
            let p = h.add(HEADER_BYTES);
            h.cast::<usize>().write(size);
            h.add(TAG_WORD).cast::<usize>().write(self.check_bits(p) | SMALL_FLAG | class);
            let st = self.st();
            st.live_count += 1;
            st.live_bytes += size;
            p
        }
    }

    /// Takes a new chunk from the parent for blocks of `stride` bytes (at least that much);
    /// what the newest chunk had left goes on the free lists first. False if the parent refused.
    #[cold]
    #[inline(never)]
    fn refill(&self, stride: usize) -> bool {
        let want = self.st().next_chunk;
        let least = CHUNK_HEADER + stride;
        // A chunk of the size the scope grows to, if the parent has it; else (short of memory,
        // or under its limit) one just for this block, whose refusal is the request's failure
        // (counted in the parent, its strategy applied).
        let chunk = if want > least { self.chunks.try_take(want) } else { None };
        let Some(chunk) = chunk.or_else(|| self.chunks.take(least)) else {
            return false;
        };
        self.carve_rest();
        // Nothing of the new chunk's data area is handed out yet.
        sanitize::retire(chunk.data, chunk.end.addr() - chunk.data.addr());
        let st = self.st();
        (st.bump, st.bump_end) = (chunk.data, chunk.end);
        st.next_chunk = (want * 2).min(MAX_CHUNK);
        debug_check(|| self.check());
        true
    }

    /// Puts what is left of the newest chunk on the free lists, largest classes first, so no
    /// chunk's tail is wasted when the next one comes. The tail was retired with its chunk:
    /// only each block's header, the scope's own, is made accessible.
    fn carve_rest(&self) {
        let st = self.st();
        let mut class = CLASSES - 1;
        loop {
            let rest = st.bump_end.addr() - st.bump.addr();
            if rest < stride(0) {
                return;
            }
            while stride(class) > rest {
                class -= 1;
            }
            let h = st.bump;
            // SAFETY: `stride(class)` bytes remain in the chunk: a block for the free list, with
            // a freed tag.
            unsafe {
                st.bump = h.add(stride(class));
                let tag = (self.check_bits(h.add(HEADER_BYTES)) | SMALL_FLAG | class) ^ FREED;
                sanitize::hand_out(h, HEADER_BYTES);
                st.push_free(h, class, tag);
            }
        }
    }

    /// A large block: a parent block of its own, linked.
    fn alloc_large(&self, size: usize, align: usize, options: AllocOptions) -> *mut u8 {
        let Some((total, parent_align, slot)) = Self::large_layout(size, align) else {
            return ptr::null_mut();
        };
        // SAFETY: the parent outlives the scope.
        let base = unsafe { front::alloc_slow(self.parent, total, parent_align, options) };
        if base.is_null() {
            return base;
        }
        // SAFETY: `base` holds `slot + size` bytes at `parent_align`.
        let p = unsafe { self.link(base, slot, parent_align, size) };
        debug_check(|| self.check());
        p
    }

    /// The parent block of a large block of `size` bytes at `align`: (its size, its alignment,
    /// the slot in front of the user block), or `None` if the size overflows. Alignment 0
    /// (natural, at most 16) is covered by the 32-byte slot in a 16-aligned block.
    #[inline(always)]
    fn large_layout(size: usize, align: usize) -> Option<(usize, usize, usize)> {
        let slot = align.max(LARGE_HEADER_BYTES);
        Some((size.checked_add(slot)?, align.max(MAX_NATURAL_ALIGN), slot))
    }

    /// Writes the header of a fresh parent block, links it as a large block and counts it
    /// live; returns the user block.
    ///
    /// # Safety
    /// `base` is a live parent block of `slot + size` bytes at `parent_align` from this scope's
    /// parent, `slot` at least [`LARGE_HEADER_BYTES`] and a power of two (as
    /// [`Scoped::large_layout`] gives), and nothing else holds it.
    unsafe fn link(&self, base: *mut u8, slot: usize, parent_align: usize, size: usize) -> *mut u8 {
        let st = self.st();
        // SAFETY: per the contract the header fits right before the user block.
        unsafe {
            let p = base.add(slot);
            let h = p.sub(LARGE_HEADER_BYTES).cast::<Hdr>();
            let tag = self.check_bits(p) | meta(slot, parent_align);
            h.write(Hdr { prev: ptr::null_mut(), next: st.head, size, tag });
            if !st.head.is_null() {
                (*st.head).prev = h;
            }
            st.head = h;
            st.live_count += 1;
            st.live_bytes += size;
            st.large_held += size + slot;
            p
        }
    }

    /// For the call-free free: `p` as a live block of this scope, if it is one and no PERSIST
    /// block is live (else the full path decides). Changes nothing.
    #[inline(always)]
    fn plan_free(&self, p: *mut u8) -> Option<LiveBlock> {
        if !self.st().persist.is_empty() {
            return None;
        }
        self.tag_read(p, false).map(|tag| LiveBlock { p, tag })
    }

    /// Frees a planned small block: it goes on its class's free list.
    #[inline(always)]
    fn forget_small(&self, block: LiveBlock) {
        debug_check(|| ensure(block.is_small(), SCOPED, "a small free is of a small block only"));
        let st = self.st();
        // SAFETY: a live small block's header: its size, then the free-list link and a freed
        // tag in its place.
        unsafe {
            let h = block.p.sub(HEADER_BYTES);
            let size = h.cast::<usize>().read();
            st.live_count -= 1;
            st.live_bytes -= size;
            st.push_free(h, block.tag & CLASS_MASK, block.tag ^ FREED);
        }
    }

    /// Takes a planned large block out of the live list; its parent block, of `total` bytes
    /// (see [`LiveBlock::parent_block`]), is then the caller's to free.
    fn forget(&self, block: LiveBlock, total: usize) {
        let h = block.large_header();
        let st = self.st();
        // SAFETY: the block was found live and large: its header is intact and linked.
        unsafe {
            st.live_count -= 1;
            st.live_bytes -= (*h).size;
            st.large_held -= total;
            Self::unlink(st, h);
        }
    }

    /// `p` is now a block of this scope: drop it from the PERSIST set, where a PERSIST block
    /// freed through the parent (which the scope cannot see) may have left the same address.
    /// Without this, freeing `p` would be forwarded to the parent as a PERSIST block.
    fn claim_address(&self, p: *mut u8) {
        let st = self.st();
        if !st.persist.is_empty() {
            st.persist.remove(&(p as usize));
        }
    }

    /// Unlinks `h` from the live list.
    ///
    /// # Safety
    /// `h` is a linked header of this scope.
    unsafe fn unlink(st: &mut State, h: *mut Hdr) {
        // SAFETY: linked headers and their neighbours are live.
        unsafe {
            let (prev, next) = ((*h).prev, (*h).next);
            if prev.is_null() {
                st.head = next;
            } else {
                (*prev).next = next;
            }
            if !next.is_null() {
                (*next).prev = prev;
            }
        }
    }

    /// The parent block behind large header `h`: (its start, its size, its alignment).
    ///
    /// # Safety
    /// `h` is the intact header of a large block of this scope.
    #[inline(always)]
    unsafe fn parent_block_of(h: *mut Hdr) -> (*mut u8, usize, usize) {
        // SAFETY: per the contract, the header is intact and describes its parent block.
        unsafe {
            let Hdr { size, tag, .. } = h.read();
            if tag & META_BITS == PLAIN_META {
                // The common block (alignment up to 16): a header-sized slot in a 16-aligned
                // parent block, which starts at the header.
                return (h.cast::<u8>(), size + LARGE_HEADER_BYTES, MAX_NATURAL_ALIGN);
            }
            let slot = 1usize << (tag & 0xff);
            let parent_align = 1usize << ((tag >> 8) & 0xff);
            (h.cast::<u8>().add(LARGE_HEADER_BYTES).sub(slot), size + slot, parent_align)
        }
    }

    /// Gives a large block back to the parent (already unlinked and uncounted).
    ///
    /// # Safety
    /// `h` is the header of a large block of this scope.
    unsafe fn release(&self, h: *mut Hdr) {
        // SAFETY: per the contract, the header is intact and describes its parent block.
        unsafe {
            let (base, total, parent_align) = Self::parent_block_of(h);
            front::free_slow(self.parent, base, total, parent_align);
        }
    }

    /// Frees a live block of this scope.
    ///
    /// # Safety
    /// `block` was found live by `tag_of`, and nothing changed it since.
    unsafe fn free_block(&self, block: LiveBlock) {
        if block.is_small() {
            let (p, class) = (block.p, block.tag & CLASS_MASK);
            self.forget_small(block);
            // The block's bytes, not its header (the scope's, with the free list's link).
            sanitize::retire(p, CLASS_BYTES[class]);
        } else {
            let (parent, base, total, parent_align) = block.parent_block(self);
            self.forget(block, total);
            // SAFETY: the parent block of a large block of this scope, unlinked and uncounted.
            unsafe { front::free_slow(parent, base, total, parent_align) };
        }
    }

    /// Frees `p` and says whether it did: false (reported, nothing changed) if it is no live
    /// block of this scope.
    fn free(&self, p: *mut u8, size: usize, align: usize) -> bool {
        let st = self.st();
        if !st.persist.is_empty() && st.persist.contains(&(p as usize)) {
            // SAFETY: a PERSIST block is a block of the parent. A free the parent refuses (the
            // wrong size, say: reported by it) changes nothing here either: the block stays the
            // scope's to free.
            if !unsafe { front::release_slow(self.parent, p, size, align) } {
                return false;
            }
            self.st().persist.remove(&(p as usize));
            return true;
        }
        let Some(tag) = self.tag_of(p) else {
            self.misuse("free", p);
            return false;
        };
        // SAFETY: just found live.
        unsafe { self.free_block(LiveBlock { p, tag }) };
        true
    }

    /// Moves a live block to a new one of `new_size` (alloc, copy, free); null (the block kept)
    /// if the new one cannot be had.
    ///
    /// # Safety
    /// `block` was found live by `tag_of`, holding `old` bytes.
    unsafe fn realloc_by_moving(
        &self,
        block: LiveBlock,
        old: usize,
        new_size: usize,
        align: usize,
        options: AllocOptions,
    ) -> *mut u8 {
        let q = self.alloc(new_size, align, options.without(AllocOptions::PERSIST));
        if !q.is_null() {
            // SAFETY: two live, distinct blocks of at least the copied size; then the old one
            // is freed once (`alloc` left it alone).
            unsafe {
                ptr::copy_nonoverlapping(block.p, q, old.min(new_size));
                self.free_block(block);
            }
        }
        q
    }

    fn realloc(&self, p: *mut u8, new_size: usize, align: usize, options: AllocOptions) -> *mut u8 {
        let Some(tag) = self.tag_of(p) else {
            self.misuse("realloc", p);
            crate::policy::refusal::refuse_misuse();
            return ptr::null_mut();
        };
        let block = LiveBlock { p, tag };
        if block.is_small() {
            // SAFETY: a live small block: its size word is intact.
            unsafe {
                let h = p.sub(HEADER_BYTES).cast::<usize>();
                let old = h.read();
                if Self::is_small(new_size, align) && class_of(new_size) == tag & CLASS_MASK {
                    // The same class: in place.
                    h.write(new_size);
                    sanitize::resized(p, old, new_size);
                    let st = self.st();
                    st.live_bytes = st.live_bytes - old + new_size;
                    return p;
                }
                return self.realloc_by_moving(block, old, new_size, align, options);
            }
        }
        let h = block.large_header();
        // SAFETY: a live large header of this scope; the parent keeps the block on failure, and
        // on success the neighbours are re-pointed to the moved header.
        unsafe {
            let Hdr { prev, next, size: old, tag } = h.read();
            let slot = 1usize << (tag & 0xff);
            let parent_align = 1usize << ((tag >> 8) & 0xff);
            if align > slot.max(parent_align) {
                // More alignment than the block's layout gives: a new block.
                return self.realloc_by_moving(block, old, new_size, align, options);
            }
            let Some(total) = new_size.checked_add(slot) else { return ptr::null_mut() };
            let base = p.sub(slot);
            let new_base = front::realloc(self.parent, base, old + slot, total, parent_align, options);
            if new_base.is_null() {
                return new_base;
            }
            let np = new_base.add(slot);
            let nh = np.sub(LARGE_HEADER_BYTES).cast::<Hdr>();
            nh.write(Hdr { prev, next, size: new_size, tag: self.check_bits(np) | (tag & META_BITS) });
            let st = self.st();
            if prev.is_null() {
                st.head = nh;
            } else {
                (*prev).next = nh;
            }
            if !next.is_null() {
                (*next).prev = nh;
            }
            st.live_bytes = st.live_bytes - old + new_size;
            st.large_held = st.large_held - old + new_size;
            self.claim_address(np);
            debug_check(|| self.check());
            np
        }
    }

    /// Frees every block still live (PERSIST blocks are left to the parent): the large blocks
    /// one by one, the small ones with their chunks.
    ///
    /// # Safety
    /// No block of the scope is used afterwards: a block it frees may still be in use (an
    /// allocator-api2 container through an [`Allocator<Scoped>`](crate::Allocator)), and the
    /// scope hands its memory out again. Safe code cannot end a scope under a live block:
    ///
    /// ```compile_fail,E0133
    /// use goo_memory_core::{allocator_api2::boxed::Box, builtin, scoped::Scoped, Allocator};
    /// // SAFETY: the built-in allocator is a static, which outlives the scope.
    /// let scope = Allocator::new(unsafe { Scoped::new(builtin()) });
    /// let block = Box::new_in([7u64; 4], scope.handle());
    /// scope.backend().end(); // would free `block`'s memory under it
    /// ```
    pub unsafe fn end(&self) -> ScopeSummary {
        debug_check(|| self.check());
        let st = self.st();
        let summary = ScopeSummary { implicit_frees: st.live_count, implicit_bytes: st.live_bytes };
        let mut h = core::mem::replace(&mut st.head, ptr::null_mut());
        // Field by field: a whole `State` built and copied would move its 600 bytes twice.
        st.free = [ptr::null_mut(); CLASS_MASK + 1];
        (st.bump, st.bump_end) = (ptr::null_mut(), ptr::null_mut());
        (st.next_chunk, st.live_count, st.live_bytes, st.large_held) = (FIRST_CHUNK, 0, 0, 0);
        st.persist.clear();
        while !h.is_null() {
            // SAFETY: walking the large blocks; each header is read before its block is freed.
            unsafe {
                let next = (*h).next;
                self.release(h);
                h = next;
            }
        }
        self.chunks.release_all();
        if self.report.get() && summary.implicit_frees > 0 {
            eprintln!(
                "goo-memory: scope {:p} ended with {} live block(s), {} byte(s): freed implicitly",
                self as *const Self, summary.implicit_frees, summary.implicit_bytes
            );
        }
        debug_check(|| self.check());
        summary
    }

    /// Blocks and bytes live in the scope now.
    pub fn live(&self) -> (usize, usize) {
        let st = self.st();
        (st.live_count, st.live_bytes)
    }

    /// Bytes the scope holds from its parent: its chunks and its large blocks.
    pub fn held(&self) -> usize {
        self.chunks.bytes() + self.st().large_held
    }

    /// Bytes of the newest chunk not handed out yet (part of [`Scoped::held`]).
    pub fn spare(&self) -> usize {
        let st = self.st();
        st.bump_end.addr() - st.bump.addr()
    }

    /// Print what the end of the scope frees implicitly (for leak hunting).
    pub fn set_report(&self, on: bool) {
        self.report.set(on);
    }
}

impl Drop for Scoped {
    fn drop(&mut self) {
        // SAFETY: the scope is being dropped: its owner (a destroy) ends every use of its blocks.
        unsafe { self.end() };
    }
}

// SAFETY: a small block is a 16-aligned span of `CLASS_BYTES[class] >= size` bytes in a chunk
// (chunks are 16-aligned, and so are their headers and strides), handed out by one request at a
// time (a free list holds only freed blocks, the bump only fresh ones); chunks go back to the
// parent once, at the end. A large block is a fresh parent block (aligned to `align` since the
// slot is a multiple of it and the parent block is aligned to max(align, 16)), returned to the
// parent exactly once: by a single free, or by the end of the scope.
unsafe impl Backend for Scoped {
    fn check_state(&self) -> Result<(), InvariantError> {
        Scoped::check(self)
    }

    const NAME: &'static str = "scoped";
    const KIND: Kind = Kind::Scoped;
    const THREAD_SAFE: bool = false;
    const ZEROES: bool = false;

    /// A small block (up to 8 KiB, alignment up to 16) from its class's free list or the
    /// newest chunk. Large blocks are parent blocks of their own: the slow path.
    #[inline(always)]
    unsafe fn try_alloc_inline(&self, _home: Option<usize>, size: usize, align: usize) -> *mut u8 {
        if Self::is_small(size, align) {
            self.try_alloc_small(size)
        } else {
            ptr::null_mut()
        }
    }

    /// A small block of this scope onto its class's free list. Anything else (a large block, a
    /// pointer the scope does not know, live PERSIST blocks): the slow path.
    #[inline(always)]
    unsafe fn try_free_inline(
        &self,
        _home: Option<usize>,
        ptr: *mut u8,
        _size: usize,
        _align: usize,
    ) -> bool {
        match self.plan_free(ptr) {
            Some(block) if block.is_small() => {
                self.forget_small(block);
                true
            }
            _ => false,
        }
    }

    fn alloc(&self, size: usize, align: usize, options: AllocOptions) -> *mut u8 {
        Scoped::alloc(self, size, align, options.without(AllocOptions::ZERO))
    }

    unsafe fn free(&self, ptr: *mut u8, size: usize, align: usize) {
        Scoped::free(self, ptr, size, align);
    }

    /// A pointer that is no live block of the scope is reported and changes no stats.
    unsafe fn release(&self, ptr: *mut u8, size: usize, align: usize) -> bool {
        Scoped::free(self, ptr, size, align)
    }

    unsafe fn realloc(
        &self,
        ptr: *mut u8,
        old_size: usize,
        new_size: usize,
        align: usize,
        options: AllocOptions,
    ) -> *mut u8 {
        let persist = &self.st().persist;
        if !persist.is_empty() && persist.contains(&(ptr as usize)) {
            // SAFETY: a PERSIST block is a parent block of `old_size` bytes.
            let q = unsafe { front::realloc(self.parent, ptr, old_size, new_size, align, options) };
            if !q.is_null() {
                let st = self.st();
                st.persist.remove(&(ptr as usize));
                st.persist.insert(q as usize);
            }
            return q;
        }
        Scoped::realloc(self, ptr, new_size, align, options.without(AllocOptions::ZERO))
    }

    fn bytes_reserved(&self, _bytes_allocated: usize) -> usize {
        self.held()
    }

    /// Only the thread that made a scope destroys it, as only it ends it ([`end`]): another
    /// thread's destroy (through the vtable) is refused with a message, and the scope stays.
    unsafe fn begin_destroy(allocator: *mut GooAllocator) -> bool {
        // SAFETY: a live scope (the hook's contract).
        let s = unsafe { Managed::<Scoped>::backend(allocator) };
        if s.owner == thread_serial() {
            return true;
        }
        eprintln!("goo-memory: the destroy of scope {allocator:p} refused: {}", ScopeError::WrongThread);
        false
    }

    unsafe fn before_destroy(allocator: *mut GooAllocator) {
        // Destroying a scope begun on this thread (the only one that may: `begin_destroy`)
        // ends its inner scopes first and restores the thread allocator.
        // SAFETY: a live scope being destroyed.
        let s = unsafe { Managed::<Scoped>::backend(allocator) };
        if s.st().installed {
            end_inner_scopes(allocator);
            let (previous, outer) = (s.st().previous, s.st().outer);
            if INNERMOST.get() == allocator {
                INNERMOST.set(outer);
            }
            if thread_slot::thread_allocator() == allocator {
                // The previous thread allocator was valid when the scope began and outlives it
                // (nesting). If the thread allocator is another one now (goo_memory_cleanup
                // cleared it, or the program set one), it is left as it is.
                thread_slot::set_thread_allocator(previous);
            }
        }
    }
}

thread_local! {
    /// The innermost scope begun on this thread ([`begin_over`]) and not yet ended; each links
    /// the next one out (`outer`). A `Cell` without a destructor: readable until the thread
    /// is gone.
    static INNERMOST: Cell<*mut GooAllocator> = const { Cell::new(ptr::null_mut()) };
}

/// Ends (destroys) every scope begun on this thread after `scope` that is still active: the
/// chain from [`INNERMOST`] down to `scope`, innermost first. Nothing if `scope` is not on it.
fn end_inner_scopes(scope: *mut GooAllocator) {
    let mut chain = Vec::new();
    let mut cur = INNERMOST.get();
    while cur != scope {
        // SAFETY: the chain holds live scopes of this thread (each unlinks itself when it ends).
        match unsafe { Managed::<Scoped>::try_backend(cur) } {
            Some(s) if s.st().installed => {
                chain.push(cur);
                cur = s.st().outer;
            }
            _ => return,
        }
    }
    for inner in chain {
        // SAFETY: an active inner scope of this thread.
        unsafe { crate::policy::backend::managed_destroy(inner) };
    }
}

/// Creates a scope over `parent`, stats tracked.
///
/// # Safety
/// `parent` must be a valid allocator that outlives the scope.
pub unsafe fn create(parent: *mut GooAllocator) -> NonNull<GooAllocator> {
    // SAFETY: forwarded contract.
    let scope = unsafe { Scoped::new(parent) };
    let managed = Managed::unplaced(scope, drop_scope, ptr::null_mut());
    match NonNull::new(ENDED_SCOPES.try_with(Ended::reusable).unwrap_or(ptr::null_mut())) {
        // SAFETY: an ended scope's object, a `Box<Managed<Scoped>>`'s block whose object was
        // dropped, now this thread's alone (taken off its list).
        Some(memory) => unsafe { Managed::place_in(memory, managed, AllocStrategy::Null, true) },
        None => Managed::place(managed, AllocStrategy::Null, true),
    }
}

/// How many ended scopes of its thread must end after a scope before its object's memory may
/// be reused or freed: until then a pointer to it names no scope (its vtable refuses everything).
pub const ENDED_KEPT: usize = 8;
const ENDED_SLOTS: usize = ENDED_KEPT + 1;

thread_local! {
    /// The objects of the scopes this thread ended last, oldest first. A scope that lives for
    /// a few allocations then costs no malloc of its own object once the thread has ended
    /// [`ENDED_SLOTS`] scopes (PostgreSQL keeps the memory of deleted contexts the same way).
    /// Freed at thread exit.
    static ENDED_SCOPES: Ended = const { Ended::new() };
}

/// A ring of ended scope objects, oldest first, each a `Box<Managed<Scoped>>`'s block whose
/// object was dropped, holding [`ENDED`]. With `N = ENDED_SLOTS`, between operations:
///
/// ```text
/// first < N,  len <= N
/// slots[(first + i) % N]  !=  null      for i < len,   == null for len <= i < N
/// e.context == e,  e no library allocator          for every entry e (the ENDED vtable)
/// ```
///
/// [`check_ended`] verifies it for the calling thread.
struct Ended {
    slots: [Cell<*mut Managed<Scoped>>; ENDED_SLOTS],
    first: Cell<usize>,
    len: Cell<usize>,
}

impl Ended {
    const fn new() -> Ended {
        Ended {
            slots: [const { Cell::new(ptr::null_mut()) }; ENDED_SLOTS],
            first: Cell::new(0),
            len: Cell::new(0),
        }
    }

    /// The oldest object, taken off the ring, if [`ENDED_KEPT`] younger ones follow it (the
    /// ring is full); else null.
    fn reusable(&self) -> *mut Managed<Scoped> {
        if self.len.get() < ENDED_SLOTS {
            return ptr::null_mut();
        }
        let first = self.first.get();
        self.first.set((first + 1) % ENDED_SLOTS);
        self.len.set(ENDED_SLOTS - 1);
        self.slots[first].replace(ptr::null_mut())
    }

    /// Adds the newest ended object; returns the oldest one if that makes it the
    /// [`ENDED_KEPT`]` + 1`-th older than the new one (the caller frees it), else null.
    fn push(&self, memory: *mut Managed<Scoped>) -> *mut Managed<Scoped> {
        let evicted = self.reusable();
        let len = self.len.get();
        self.slots[(self.first.get() + len) % ENDED_SLOTS].set(memory);
        self.len.set(len + 1);
        evicted
    }
}

const ENDED_RING: &str = "ended scopes";

/// Verifies the equations beside the ring of the calling thread's ended scopes (none while the
/// thread is exiting). Reads only the ring and its entries' vtables, memory the library holds.
pub fn check_ended() -> Result<(), InvariantError> {
    ENDED_SCOPES
        .try_with(|e| {
            let (first, len) = (e.first.get(), e.len.get());
            ensure(first < ENDED_SLOTS && len <= ENDED_SLOTS, ENDED_RING, "first < N, len <= N")?;
            for i in 0..ENDED_SLOTS {
                let entry = e.slots[(first + i) % ENDED_SLOTS].get();
                ensure(
                    (i < len) != entry.is_null(),
                    ENDED_RING,
                    "slots[(first + i) % N] != null for i < len, == null for len <= i < N",
                )?;
                if !entry.is_null() {
                    let raw = entry.cast::<GooAllocator>();
                    // SAFETY: an entry of the ring: a block the library holds, whose start is the
                    // `ENDED` vtable `drop_scope` wrote.
                    let whole =
                        unsafe { (*raw).context == raw.cast() && !crate::policy::backend::is_managed(raw) };
                    ensure(whole, ENDED_RING, "e.context == e, e no library allocator for every entry e")?;
                }
            }
            Ok(())
        })
        .unwrap_or(Ok(()))
}

impl Drop for Ended {
    fn drop(&mut self) {
        for slot in &self.slots {
            free_ended(slot.replace(ptr::null_mut()));
        }
    }
}

/// Frees an ended scope's object (null: nothing).
fn free_ended(memory: *mut Managed<Scoped>) {
    if !memory.is_null() {
        // SAFETY: an ended scope's object: a `Box<Managed<Scoped>>`'s block whose object was
        // dropped, no longer on the ring.
        unsafe { drop(Box::from_raw(memory.cast::<core::mem::MaybeUninit<Managed<Scoped>>>())) };
    }
}

/// A scope's drop function: [`drop_managed`](crate::policy::backend::drop_managed), except that
/// the object's memory, holding the [`ENDED`] vtable, joins this thread's ended scopes (see
/// [`ENDED_SCOPES`]), which frees the oldest of them if they are too many.
///
/// # Safety
/// As for [`drop_managed`](crate::policy::backend::drop_managed).
unsafe fn drop_scope(allocator: *mut GooAllocator) {
    // SAFETY: `allocator` is a live scope object, made by `create` (a `Box`'s block); the hook
    // runs before anything is dropped; the dropped object's memory is still that block, so it
    // holds the `ENDED` vtable (a plain `GooAllocator` at its start, where every `Managed`
    // keeps its vtable) and is either kept whole on the ring or freed as that Box.
    unsafe {
        <Scoped as Backend>::before_destroy(allocator);
        let this = allocator.cast::<Managed<Scoped>>();
        ptr::drop_in_place(this);
        allocator.write(GooAllocator { context: allocator.cast(), ..ENDED });
        match ENDED_SCOPES.try_with(|e| e.push(this)) {
            Ok(evicted) => free_ended(evicted),
            Err(_) => free_ended(this),
        }
    }
}

/// The vtable of an ended scope's object (its `context` is the object itself): no library
/// allocator, so no `goo_scope_*` call takes it for a scope; an allocation or resize through it
/// fails (NULL, counted in its embedded stats as any failure is), a free is ignored, a destroy
/// does nothing, each with a message on stderr.
const ENDED: GooAllocator = GooAllocator {
    alloc: Some(ended_alloc),
    realloc: Some(ended_realloc),
    free: Some(ended_free),
    destroy: Some(ended_destroy),
    ..GooAllocator::EMPTY
};

/// Reports a use of an ended scope. Writes to stderr without panicking (an `extern "C"`
/// function calls it unguarded).
#[cold]
fn ended_use(scope: *const core::ffi::c_void, what: &str) {
    use std::io::Write;
    let _ =
        writeln!(std::io::stderr(), "goo-memory: {what} through scope {scope:p}, which has ended (refused)");
}

unsafe extern "C" fn ended_alloc(
    ctx: *mut core::ffi::c_void,
    _size: usize,
    _align: usize,
    _options: AllocOptions,
) -> *mut core::ffi::c_void {
    ended_use(ctx, "an allocation");
    ptr::null_mut()
}

unsafe extern "C" fn ended_realloc(
    ctx: *mut core::ffi::c_void,
    _ptr: *mut core::ffi::c_void,
    _old_size: usize,
    _new_size: usize,
    _align: usize,
    _options: AllocOptions,
) -> *mut core::ffi::c_void {
    ended_use(ctx, "a resize");
    ptr::null_mut()
}

unsafe extern "C" fn ended_free(
    ctx: *mut core::ffi::c_void,
    _ptr: *mut core::ffi::c_void,
    _size: usize,
    _align: usize,
) {
    ended_use(ctx, "a free");
}

unsafe extern "C" fn ended_destroy(allocator: *mut GooAllocator) {
    ended_use(allocator.cast(), "a destroy");
}

/// Begins a scope over `parent` (what `goo_scope_begin` passes: the current allocator) and
/// makes it this thread's allocator.
///
/// # Safety
/// `parent` must be a valid allocator that outlives the scope.
pub unsafe fn begin_over(parent: *mut GooAllocator) -> NonNull<GooAllocator> {
    let previous = thread_slot::thread_allocator();
    // SAFETY: forwarded contract.
    let scope = unsafe { create(parent) };
    // SAFETY: just made.
    let s = unsafe { Managed::<Scoped>::backend(scope.as_ptr()) };
    let st = s.st();
    st.installed = true;
    st.previous = previous;
    st.outer = INNERMOST.replace(scope.as_ptr());
    // The scope lives until `end`, which unlinks it and restores `previous`.
    thread_slot::set_thread_allocator(scope.as_ptr());
    scope
}

/// Ends a scope: frees what is still live, restores the thread allocator if it was begun with
/// [`begin_over`] (and the thread allocator is still this scope), and destroys it. Refused
/// (nothing freed) for a pointer that names no live scope (an ended one included: see
/// [`ENDED_KEPT`]), on another thread, or out of order (a scope begun later on this thread is still
/// active).
///
/// # Safety
/// `scope` must be null or a valid allocator (a live library allocator if it is one).
pub unsafe fn end(scope: *mut GooAllocator) -> Result<ScopeSummary, ScopeError> {
    // SAFETY: forwarded contract.
    let s = unsafe { Managed::<Scoped>::try_backend(scope) }.ok_or(ScopeError::NotAScope)?;
    if s.owner != thread_serial() {
        return Err(ScopeError::WrongThread);
    }
    if s.st().installed && INNERMOST.get() != scope {
        return Err(ScopeError::OutOfOrder);
    }
    // SAFETY: ending the scope is this function's purpose; its blocks are dead by the
    // caller's contract (`goo_scope_end`'s).
    let summary = unsafe { s.end() };
    // SAFETY: a live scope of this thread; `before_destroy` restores the thread allocator.
    unsafe { crate::policy::backend::managed_destroy(scope) };
    Ok(summary)
}

/// As [`end`], after ending the scopes begun on this thread after `scope` that are still
/// active (innermost first): the end of a Rust [`Scope`](crate::scoped::Scope), whose
/// [`run`](crate::scoped::Scope::run) closure may begin scopes and not end them.
///
/// # Safety
/// As for [`end`].
pub unsafe fn end_with_inner(scope: *mut GooAllocator) -> Result<ScopeSummary, ScopeError> {
    // SAFETY: forwarded contract.
    let s = unsafe { Managed::<Scoped>::try_backend(scope) }.ok_or(ScopeError::NotAScope)?;
    if s.owner == thread_serial() && s.st().installed {
        end_inner_scopes(scope);
    }
    // SAFETY: forwarded contract; the inner scopes ended, unlinking themselves.
    unsafe { end(scope) }
}

/// The scope behind a `GooAllocator*`, if it is one.
///
/// # Safety
/// As for [`end`].
pub unsafe fn from_raw<'a>(scope: *mut GooAllocator) -> Option<&'a Scoped> {
    // SAFETY: forwarded contract.
    unsafe { Managed::<Scoped>::try_backend(scope) }
}

const SCOPED: &str = "scoped";

const FREE_LISTS: &str = "free[k] == the freed blocks of class k, each once";
const FREE_ENTRIES: &str =
    "free[k] == the freed blocks of class k: every entry a freed block of k in a chunk";

impl Scoped {
    /// Verifies the invariants of the scope's state (the equations beside `State`, and its
    /// chunk list's own): walks the chunks (bound: their count), the large blocks (bound:
    /// `live_count`), every small block of every chunk, and each free list (bound: the freed
    /// blocks of its class, each entry found in a chunk before its link is read). Reads only;
    /// allocates nothing. O(blocks + free blocks · chunks).
    pub fn check(&self) -> Result<(), InvariantError> {
        let st = self.st();
        self.chunks.check(SCOPED)?;
        // The newest chunk and the bump.
        match self.chunks.newest() {
            None => ensure(
                st.bump.is_null() && st.bump_end.is_null(),
                SCOPED,
                "Ch empty <=> bump == bump_end == null",
            )?,
            Some(newest) => ensure(
                newest.data <= st.bump && st.bump <= st.bump_end && st.bump_end == newest.end,
                SCOPED,
                "Ch not empty => data(newest of Ch) <= bump <= bump_end == end(newest of Ch)",
            )?,
        }
        ensure(
            (FIRST_CHUNK..=MAX_CHUNK).contains(&st.next_chunk),
            SCOPED,
            "FIRST_CHUNK <= next_chunk <= MAX_CHUNK",
        )?;
        ensure(
            st.installed || (st.previous.is_null() && st.outer.is_null()),
            SCOPED,
            "!installed => previous == null, outer == null",
        )?;
        ensure(self.key == key_of(self.generation), SCOPED, "key == key_of(generation)")?;
        // The chunks' blocks, one by one.
        let (mut small_count, mut small_bytes) = (0usize, 0usize);
        let mut freed = [0usize; CLASS_MASK + 1];
        let newest = self.chunks.newest_start();
        for chunk in self.chunks.iter() {
            ensure(
                chunk.size() >= CHUNK_HEADER + stride(0),
                SCOPED,
                "c.size >= CHUNK_HEADER + stride(0) for c ∈ Ch",
            )?;
            let limit = Self::carved_end(st, &chunk, newest);
            let mut h = chunk.data;
            loop {
                let rest = limit - h.addr().min(limit);
                if rest == 0 || (chunk.start != newest && rest < stride(0)) {
                    break;
                }
                ensure(rest >= stride(0), SCOPED, "small blocks lie end to end up to bump")?;
                // SAFETY: `h` is the header of a block of `chunk` (blocks lie end to end from its
                // data area's start; at least a header's bytes are left before `limit`).
                let (size, tag) =
                    unsafe { (h.cast::<usize>().read(), h.add(TAG_WORD).cast::<usize>().read()) };
                let bits = self.check_bits(h.wrapping_add(HEADER_BYTES));
                let live = tag & !META_BITS == bits;
                ensure(
                    live || (tag ^ FREED) & !META_BITS == bits,
                    SCOPED,
                    "every small block's tag is its live or its freed tag",
                )?;
                let class = tag & META_BITS & !SMALL_FLAG;
                ensure(
                    tag & SMALL_FLAG != 0 && class < CLASSES,
                    SCOPED,
                    "every small block's tag is of a class k < CLASSES",
                )?;
                ensure(stride(class) <= rest, SCOPED, "small blocks lie end to end inside their chunk")?;
                if live {
                    ensure(
                        (1..=SMALL_MAX).contains(&size) && class_of(size) == class,
                        SCOPED,
                        "live small block => class_of(size) == k",
                    )?;
                    small_count += 1;
                    small_bytes += size;
                } else {
                    freed[class] += 1;
                }
                h = h.wrapping_add(stride(class));
            }
        }
        // The large blocks.
        let (mut large_count, mut large_bytes, mut large_held) = (0usize, 0usize, 0usize);
        let mut prev: *mut Hdr = ptr::null_mut();
        let mut h = st.head;
        while !h.is_null() {
            ensure(large_count < st.live_count, SCOPED, "live_count == |live small blocks| + |Lg|")?;
            ensure(h.addr().is_multiple_of(MAX_NATURAL_ALIGN), SCOPED, "h ∈ Lg => h % 16 == 0")?;
            // SAFETY: `h` is linked in the scope's list of large blocks, whose headers are live
            // (`State`'s invariant; the check trusts the links and verifies the equations
            // between what they point to); aligned for `Hdr`, checked above.
            let Hdr { prev: back, next, size, tag } = unsafe { h.read() };
            ensure(back == prev, SCOPED, "head.prev == null, h.next.prev == h along Lg")?;
            let (slot_log, align_log) = (tag & 0xff, tag >> 8 & 0xff);
            ensure(
                tag & !META_BITS == self.check_bits(h.cast::<u8>().wrapping_add(LARGE_HEADER_BYTES))
                    && tag & SMALL_FLAG == 0
                    && (5..usize::BITS as usize).contains(&slot_log)
                    && (4..usize::BITS as usize).contains(&align_log),
                SCOPED,
                "h ∈ Lg => h.tag == check_bits(h + 32) | meta(slot, parent_align), slot >= 32, parent_align >= 16",
            )?;
            large_held = large_held.saturating_add(size.saturating_add(1 << slot_log));
            large_count += 1;
            large_bytes = large_bytes.saturating_add(size);
            prev = h;
            h = next;
        }
        ensure(large_held == st.large_held, SCOPED, "large_held == Σ (h.size + slot(h)) over h ∈ Lg")?;
        ensure(
            st.live_count == small_count + large_count,
            SCOPED,
            "live_count == |live small blocks| + |Lg|",
        )?;
        ensure(
            st.live_bytes == small_bytes.saturating_add(large_bytes),
            SCOPED,
            "live_bytes == Σ size over live small blocks + Σ h.size over Lg",
        )?;
        // The free lists.
        for (class, &head) in st.free.iter().enumerate() {
            ensure(class < CLASSES || head.is_null(), SCOPED, FREE_LISTS)?;
            let mut listed = 0;
            let mut e = head;
            while !e.is_null() {
                ensure(listed < freed[class], SCOPED, FREE_LISTS)?;
                ensure(self.in_a_chunk(st, e, stride(class)), SCOPED, FREE_ENTRIES)?;
                // SAFETY: `e` is a block's header inside a chunk of this scope (found above).
                let (link, tag) =
                    unsafe { (e.cast::<*mut u8>().read(), e.add(TAG_WORD).cast::<usize>().read()) };
                let want = (self.check_bits(e.wrapping_add(HEADER_BYTES)) | SMALL_FLAG | class) ^ FREED;
                ensure(tag == want, SCOPED, FREE_ENTRIES)?;
                listed += 1;
                e = link;
            }
            ensure(listed == freed[class], SCOPED, FREE_LISTS)?;
        }
        Ok(())
    }

    /// Where the carved part of `chunk` ends: at `bump` in the newest chunk (`newest` is its
    /// start), at its end in the others.
    fn carved_end(st: &State, chunk: &Chunk, newest: *mut u8) -> usize {
        if chunk.start == newest {
            st.bump.addr()
        } else {
            chunk.end.addr()
        }
    }

    /// Whether `stride` bytes at `h` lie in the carved part of one of the scope's chunks, at a
    /// 16-byte boundary.
    fn in_a_chunk(&self, st: &State, h: *mut u8, stride: usize) -> bool {
        let newest = self.chunks.newest_start();
        self.chunks.iter().any(|c| {
            let limit = Self::carved_end(st, &c, newest);
            (c.data.addr()..limit).contains(&h.addr())
                && (h.addr() - c.data.addr()).is_multiple_of(MAX_NATURAL_ALIGN)
                && h.addr().checked_add(stride).is_some_and(|e| e <= limit)
        })
    }
}

/// Verifies the invariants of the scope `allocator` ([`Scoped::check`]) and of its stats
/// ([`ShardedStats::check`](crate::policy::stats::ShardedStats::check)).
///
/// # Safety
/// As for [`end`].
pub unsafe fn check_raw(allocator: *mut GooAllocator) -> Result<(), InvariantError> {
    // SAFETY: forwarded contract.
    unsafe { Managed::<Scoped>::check_raw(allocator) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn broken(scope: &Scoped) -> &'static str {
        scope.check().expect_err("a broken equation").broken
    }

    fn alloc(scope: &Scoped, size: usize) -> *mut u8 {
        let p = scope.alloc(size, 0, AllocOptions::DEFAULT);
        assert!(!p.is_null());
        p
    }

    /// Each corruption breaks one equation and `check` names it; undoing it makes the state
    /// whole again (so the scope can end).
    #[test]
    fn check_reports_each_broken_equation() {
        // SAFETY: the built-in allocator is a static.
        let mut scope = unsafe { Scoped::new(crate::builtin()) };
        assert_eq!(scope.check(), Ok(()), "an empty scope");
        let small: Vec<*mut u8> = (0..40).map(|i| alloc(&scope, 16 + i * 8)).collect();
        let large = alloc(&scope, SMALL_MAX + 100);
        let also_large = alloc(&scope, SMALL_MAX + 200);
        scope.free(small[3], 40, 0); // a freed block of class_of(40)
        assert!(scope.chunks.count() >= 2, "chunks");
        assert_eq!(scope.check(), Ok(()));

        // The chunk list's own equations are reported as the scope's.
        let bytes = scope.chunks.replace_bytes(0);
        assert_eq!(scope.check(), Err(InvariantError::new(SCOPED, "bytes == Σ c.size over c ∈ K")));
        scope.chunks.replace_bytes(bytes);
        scope.st().large_held += 1;
        assert_eq!(broken(&scope), "large_held == Σ (h.size + slot(h)) over h ∈ Lg");
        scope.st().large_held -= 1;
        scope.st().live_count += 1;
        assert_eq!(broken(&scope), "live_count == |live small blocks| + |Lg|");
        scope.st().live_count -= 1;
        scope.st().live_bytes -= 1;
        assert_eq!(broken(&scope), "live_bytes == Σ size over live small blocks + Σ h.size over Lg");
        scope.st().live_bytes += 1;

        let bump = scope.st().bump;
        scope.st().bump = scope.st().bump_end.wrapping_add(16);
        assert_eq!(
            broken(&scope),
            "Ch not empty => data(newest of Ch) <= bump <= bump_end == end(newest of Ch)"
        );
        scope.st().bump = bump;

        // The free list of the freed block's class: a foreign pointer, a cycle, a live block.
        let class = class_of(40);
        let head = scope.st().free[class];
        assert_eq!(head, small[3].wrapping_sub(HEADER_BYTES));
        let mut foreign = [0u128; 4];
        scope.st().free[class] = foreign.as_mut_ptr().cast();
        assert_eq!(broken(&scope), FREE_ENTRIES);
        // SAFETY: `head` is the free block's header: its first word is the scope's link.
        let link = unsafe { head.cast::<*mut u8>().replace(head) };
        scope.st().free[class] = head;
        assert_eq!(broken(&scope), FREE_LISTS);
        // SAFETY: as above.
        unsafe { head.cast::<*mut u8>().write(link) };
        let live = small[4].wrapping_sub(HEADER_BYTES);
        assert_eq!(class_of(16 + 4 * 8), class, "a live block of the same class");
        scope.st().free[class] = live;
        assert_eq!(broken(&scope), FREE_ENTRIES);
        scope.st().free[class] = head;
        scope.st().free[CLASSES] = head;
        assert_eq!(broken(&scope), FREE_LISTS);
        scope.st().free[CLASSES] = ptr::null_mut();
        assert_eq!(scope.check(), Ok(()), "restored");

        // A live block's tag, and its size word.
        let tag_word = small[7].wrapping_sub(TAG_WORD).cast::<usize>();
        // SAFETY: the live block's header, the scope's to write (restored below).
        let tag = unsafe { tag_word.replace(0x1234) };
        assert_eq!(broken(&scope), "every small block's tag is its live or its freed tag");
        // SAFETY: as above.
        unsafe { tag_word.write(tag) };
        let size_word = small[7].wrapping_sub(HEADER_BYTES).cast::<usize>();
        // SAFETY: as above.
        let size = unsafe { size_word.replace(SMALL_MAX) };
        assert_eq!(broken(&scope), "live small block => class_of(size) == k");
        // SAFETY: as above.
        unsafe { size_word.write(size) };

        // The large blocks' links: the newest one's `prev` points at itself.
        let newest = scope.st().head;
        assert_eq!(newest.cast::<u8>().wrapping_add(LARGE_HEADER_BYTES), also_large);
        // SAFETY: a linked large header of this scope (restored below).
        unsafe { (*newest).prev = newest };
        assert_eq!(broken(&scope), "head.prev == null, h.next.prev == h along Lg");
        // SAFETY: as above.
        unsafe { (*newest).prev = ptr::null_mut() };
        let _ = large;
        assert_eq!(scope.check(), Ok(()), "restored");

        // A scope not begun links nothing; its key is its generation's.
        scope.st().outer = newest.cast();
        assert_eq!(broken(&scope), "!installed => previous == null, outer == null");
        scope.st().outer = ptr::null_mut();
        scope.key ^= 1 << 20;
        assert_eq!(broken(&scope), "key == key_of(generation)");
        scope.key ^= 1 << 20;
        assert_eq!(scope.check(), Ok(()), "restored");
        // SAFETY: no block of the scope is used afterwards.
        assert_eq!(unsafe { scope.end() }.implicit_frees, 41);
        assert_eq!(scope.check(), Ok(()));
    }
}
