//! The pool: fixed-size objects in O(1) with no per-object overhead.
//!
//! Objects live in blocks taken from a parent allocator, `objects_per_block` at a time; free
//! objects form an intrusive singly linked list (the link is stored in the free object itself,
//! encoded with a key of the pool's: `allocators/free_link.rs`), so allocation and free are a
//! pop and a push. A pop checks the link it reads as an unchecked free checks a pointer: one
//! that names no object (a write after free changed it) is reported, and the rest of the list
//! is dropped (its objects leak; a checked pool rebuilds the list from its bitmaps), so no
//! write through a stale pointer redirects an allocation. In checked mode each block also keeps
//! a bitmap of live objects, so a free of a foreign pointer, of a pointer inside an object, or
//! of an object already free is reported and ignored instead of corrupting the list. Unchecked,
//! a free costs a range check more than the push: a pointer outside the pool's address range,
//! off the objects' boundaries (their alignment, for a stride that is not a power of two), or
//! equal to the object freed last is refused the same way; what passes and is still no live
//! object corrupts the list (see `pool.h`). Reading the counts walks the free list bounded by
//! the number of objects and locates each entry before reading its link, so a corrupt list is
//! reported, never looped on or followed out of the pool.
//! A pool is not thread-safe.

use core::cell::UnsafeCell;
use core::mem::size_of;
use core::ptr::{self, NonNull};

use crate::allocators::chunk_list::{Chunk, PlainChunks};
use crate::allocators::free_link::LinkKey;
use crate::policy::backend::{Backend, Kind, Managed};
use crate::policy::invariant::{debug_check, ensure, InvariantError};
use crate::policy::{front, sanitize};
use crate::raw::{AllocOptions, AllocStrategy, GooAllocator, MAX_NATURAL_ALIGN};

/// Objects per block when the caller passes 0: about a page worth.
const DEFAULT_BLOCK_BYTES: usize = 4096;
/// The largest power-of-two stride whose blocks are aligned to it, so that every object of the
/// pool lies on one lattice of the stride and the unchecked free tests a boundary with a mask.
/// Larger (or other) strides test the objects' alignment only.
const MAX_LATTICE_STRIDE: usize = 4096;

/// How a pool was configured.
///
/// ```
/// use goo_memory_core::pool::{PoolConfig, RawPool};
/// let config = PoolConfig { max_objects: 2, checked: true, ..PoolConfig::new(24, 8) };
/// let pool = RawPool::with_config(config).unwrap();
/// let (a, b) = (pool.alloc().unwrap(), pool.alloc().unwrap());
/// assert!(pool.alloc().is_err(), "at the cap");
/// // SAFETY: live objects of this pool.
/// unsafe { (pool.free(a), pool.free(b)) };
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolConfig {
    /// Bytes of each object as asked for (requests up to this size are served).
    pub object_size: usize,
    /// Alignment of every object (0 = natural for the size).
    pub alignment: usize,
    /// Objects per block (0 = about 4 KiB worth).
    pub objects_per_block: usize,
    /// Most objects the pool will hold (0 = no limit).
    pub max_objects: usize,
    /// Detect bad frees (on by default in debug builds or with `GOO_POOL_CHECKED=1`).
    pub checked: bool,
}

impl PoolConfig {
    /// A configuration for objects of `object_size` bytes, checked mode from the build and the
    /// `GOO_POOL_CHECKED` environment variable.
    pub fn new(object_size: usize, objects_per_block: usize) -> Self {
        PoolConfig {
            object_size,
            alignment: 0,
            objects_per_block,
            max_objects: 0,
            checked: checked_by_default(),
        }
    }
}

/// Checked mode is on in debug builds, and whenever `GOO_POOL_CHECKED` is set to `1`.
pub fn checked_by_default() -> bool {
    cfg!(debug_assertions) || std::env::var_os("GOO_POOL_CHECKED").is_some_and(|v| v == "1")
}

/// Where a pool's objects go: their alignment, the bytes between them, how many a block holds.
pub(crate) struct ObjectLayout {
    pub(crate) align: usize,
    pub(crate) stride: usize,
    pub(crate) per_block: usize,
}

impl ObjectLayout {
    /// The layout of `config`'s objects; `None` for a size of 0 or an alignment that is not a
    /// power of two (up to 1 MiB).
    pub(crate) fn of(config: &PoolConfig) -> Option<Self> {
        let PoolConfig { object_size, alignment, objects_per_block, .. } = *config;
        if object_size == 0 || (alignment != 0 && !alignment.is_power_of_two()) {
            return None;
        }
        // At least the natural alignment of the object size, so that any request the object can
        // hold, made with natural alignment (alignment 0), is served; and room for the link a
        // free object holds.
        let align = alignment.max(crate::natural_align(object_size)).max(align_of_link());
        if !align.is_power_of_two() || align > 1 << 20 {
            return None;
        }
        let stride = object_size.max(size_of::<*mut u8>()).checked_next_multiple_of(align)?;
        let per_block =
            if objects_per_block == 0 { (DEFAULT_BLOCK_BYTES / stride).max(1) } else { objects_per_block };
        Some(ObjectLayout { align, stride, per_block })
    }
}

/// A pool's resize (the pool's and the shared pool's): every object has the full object size,
/// so a resize within it (and within the objects' alignment) stays in place; any other is
/// refused (null).
pub(crate) fn resize_within(
    ptr: *mut u8,
    new_size: usize,
    align: usize,
    object_size: usize,
    object_align: usize,
) -> *mut u8 {
    if new_size <= object_size && align <= object_align {
        ptr
    } else {
        ptr::null_mut()
    }
}

/// Counts of a pool (`GooPoolStats` in C); `Display` writes them on one line.
///
/// ```
/// use goo_memory_core::pool::TypedPool;
/// let pool = TypedPool::<[u64; 2]>::new(32);
/// let kept = pool.alloc([1, 2]).unwrap();
/// let s = pool.stats();
/// assert_eq!((s.live_objects, s.total_objects, s.object_stride, s.blocks), (1, 32, 16, 1));
/// assert!(s.to_string().starts_with("live 1 of 32 objects (16-byte stride, 32 per block)"));
/// # drop(kept);
/// ```
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PoolStats {
    /// Bytes between objects (object size rounded up to the alignment).
    pub object_stride: usize,
    pub objects_per_block: usize,
    pub blocks: usize,
    pub total_objects: usize,
    pub free_objects: usize,
    pub live_objects: usize,
    /// 0 = no limit.
    pub max_objects: usize,
    /// Bytes held from the parent.
    pub bytes_reserved: usize,
    /// Bad frees refused: every one in checked mode; unchecked, those its cheap checks catch.
    pub misuse_detected: usize,
    pub checked: bool,
}

/// The mutable state of a pool.
///
/// `B` is the list of blocks (`blocks`, a plain chunk list at alignment `block_align`, with its
/// own equations beside `ChunkList`), `F` the free list starting at `free` (linked by each free
/// object's first word); block `b` holds `b.objects` objects at
/// `obj(b, k) = b + header + k·stride` (the last block may hold fewer than `per_block`, because
/// of `max_objects`), and in checked mode a bitmap of live objects at the start of its data
/// area, after the chunk header. `boundary = boundary_mask + 1` is the stride when it is a power
/// of two up to `MAX_LATTICE_STRIDE` (blocks are then aligned to it, so every object lies on
/// one lattice), else the objects' alignment. Between operations:
///
/// ```text
/// |B|                  ==  sorted.len()
/// sorted               ==  the addresses of B, strictly increasing
/// b.size               ==  header + b.objects·stride,  1 <= b.objects <= per_block   for b ∈ B
/// b % block_align      ==  0                                                for b ∈ B
/// b + b.size           <=  the next block in `sorted`                      (blocks disjoint)
/// total                ==  Σ b.objects over b ∈ B
/// max_objects != 0     =>  total <= max_objects
/// B empty              =>  lo == 0,  span == 0
/// B not empty          =>  lo == min obj(b, 0),  lo + span == max obj(b, b.objects)  over b ∈ B
/// obj(b, 0) - lo       ≡   0  (mod boundary)                                for b ∈ B
/// f ∈ F                =>  f == obj(b, k) for some b ∈ B and k < b.objects
/// |F|                  <=  total                  (F has no cycle; live == total - |F|)
/// checked              =>  bit(f) == 0 for f ∈ F,  |F| + Σ |bits set in b's bitmap| == total
/// ```
///
/// So an object `p` passes the unchecked free's test `(p - lo) < span`,
/// `(p - lo) & boundary_mask == 0`. [`Pool::check`] verifies all of it; the free-list walk
/// stops after `total` steps.
struct State {
    free: *mut u8,
    /// The lowest object's address, and the bytes from it to the end of the highest object
    /// (`lo + span` does not wrap): the pool's address range, all the unchecked free tests.
    lo: usize,
    span: usize,
    blocks: PlainChunks,
    /// Block starts, sorted by address: finds a pointer's block in O(log blocks) (checked mode and
    /// `owns`; kept in both modes, it changes only when a block is added).
    sorted: Vec<*mut u8>,
    total: usize,
    misuse: usize,
}

/// The pool mechanism: what a [`RawPool`](crate::pool::RawPool), a
/// [`TypedPool`](crate::pool::TypedPool) and a C pool allocate from. Behind an
/// [`Allocator`](crate::Allocator) it gets the front door; [`from_raw`] finds it behind any
/// pool's vtable.
///
/// ```
/// use core::alloc::Layout;
/// use goo_memory_core::pool::{Pool, PoolConfig};
/// use goo_memory_core::{builtin, Allocator};
/// // SAFETY: the built-in allocator is a static: it outlives the pool.
/// let pool = Allocator::new(unsafe { Pool::new(builtin(), PoolConfig::new(24, 16)) }.unwrap());
/// let layout = Layout::from_size_align(24, 8).unwrap();
/// let (a, b) = (pool.allocate(layout).unwrap(), pool.allocate(layout).unwrap());
/// assert!(pool.backend().owns(a.as_ptr()) && pool.backend().owns(b.as_ptr()));
/// assert!(pool.allocate(Layout::from_size_align(25, 8).unwrap()).is_err(), "larger than an object");
/// let s = pool.backend().stats();
/// assert_eq!((s.live_objects, s.total_objects, s.blocks), (2, 16, 1));
/// // SAFETY: live objects of this pool, allocated with this layout.
/// unsafe { (pool.deallocate(a, layout), pool.deallocate(b, layout)) };
/// assert_eq!(pool.backend().stats().free_objects, 16);
/// pool.backend().check().unwrap();
/// ```
pub struct Pool {
    object_size: usize,
    stride: usize,
    align: usize,
    per_block: usize,
    max_objects: usize,
    checked: bool,
    /// Bytes from a block's start to its first object: the chunk header, the bitmap, padding.
    header: usize,
    /// The alignment of every block: the stride when it is a power of two up to
    /// [`MAX_LATTICE_STRIDE`] (and at least 16), else `max(align, 16)`.
    block_align: usize,
    /// `(p - lo) & boundary_mask != 0` says `p` is no object (see `State`): the stride less one
    /// when the blocks are aligned to it, else the alignment less one.
    boundary_mask: usize,
    /// The key of the free list's links.
    link: LinkKey,
    state: UnsafeCell<State>,
}

impl Pool {
    /// A pool taking blocks from `parent` (null = the current allocator, fixed now). `None` if
    /// the configuration is impossible (size 0, bad alignment, overflowing block size).
    ///
    /// # Safety
    /// `parent` must outlive the pool.
    pub unsafe fn new(parent: *mut GooAllocator, config: PoolConfig) -> Option<Self> {
        let PoolConfig { object_size, max_objects, checked, .. } = config;
        let ObjectLayout { align, stride, per_block } = ObjectLayout::of(&config)?;
        let bitmap = if checked { per_block.div_ceil(8) } else { 0 };
        let header = (PlainChunks::HEADER + bitmap).checked_next_multiple_of(align)?;
        // The largest block must be allocatable.
        header.checked_add(per_block.checked_mul(stride)?).filter(|&b| b <= isize::MAX as usize / 2)?;
        let lattice = stride.is_power_of_two() && stride <= MAX_LATTICE_STRIDE;
        let block_align = if lattice { stride } else { align }.max(MAX_NATURAL_ALIGN);
        // SAFETY: the parent outlives the pool (this function's contract), so it outlives its
        // blocks; `block_align` is a power of two, at least 16.
        let blocks = unsafe { PlainChunks::new(parent, block_align) };
        Some(Pool {
            object_size,
            stride,
            align,
            per_block,
            max_objects,
            checked,
            header,
            block_align,
            boundary_mask: if lattice { stride } else { align } - 1,
            link: LinkKey::new(),
            state: UnsafeCell::new(State {
                free: ptr::null_mut(),
                lo: 0,
                span: 0,
                blocks,
                sorted: Vec::new(),
                total: 0,
                misuse: 0,
            }),
        })
    }

    #[allow(clippy::mut_from_ref)]
    #[inline(always)]
    fn st(&self) -> &mut State {
        // SAFETY: `Pool` is !Sync; every method takes this borrow once and calls nothing that
        // re-enters the pool while it is alive (the parent is another allocator).
        unsafe { &mut *self.state.get() }
    }

    /// The object size requests are checked against.
    pub fn object_size(&self) -> usize {
        self.object_size
    }

    /// The alignment of every object.
    pub fn align(&self) -> usize {
        self.align
    }

    /// Serves a request of `size` bytes at `align` (0 = natural: every object is aligned at
    /// least naturally for the object size, so any size it holds is served): an object, or null
    /// if the request does not fit one, at the cap, or when the parent refuses.
    #[inline(always)]
    pub fn alloc_request(&self, size: usize, align: usize) -> *mut u8 {
        if size > self.object_size || align > self.align {
            return ptr::null_mut();
        }
        self.alloc_object()
    }

    /// [`Pool::alloc_request`] when it needs no call: a free object of an unchecked pool,
    /// else null (nothing taken; also for size 0).
    #[inline(always)]
    pub(crate) fn try_alloc_request(&self, size: usize, align: usize) -> *mut u8 {
        let st = self.st();
        let p = st.free;
        // `size - 1` wraps for 0: a zero-size request is the front door's (a dangling pointer).
        if size.wrapping_sub(1) >= self.object_size || align > self.align || p.is_null() || self.checked {
            return ptr::null_mut();
        }
        // SAFETY: a free object's first word is the link to the next free object.
        let next = unsafe { self.link.read(p) };
        if !self.link_plausible(st, next) {
            // The slow path reports it.
            return ptr::null_mut();
        }
        st.free = next;
        p
    }

    /// Pops a free object, growing by a block when none is left; null at the cap or when the
    /// parent refuses.
    #[inline(always)]
    pub fn alloc_object(&self) -> *mut u8 {
        let st = self.st();
        let p = st.free;
        if p.is_null() {
            return self.alloc_slow();
        }
        // SAFETY: a free object's first word is the link to the next free object.
        let next = unsafe { self.link.read(p) };
        st.free = next;
        if !self.link_plausible(st, next) {
            // `p` itself is a free object (it passed this check, or a free's): it serves.
            self.corrupt_list(st, p);
        }
        sanitize::hand_out_in_slot(p, self.object_size, self.stride);
        if self.checked {
            crate::policy::cold_path();
            self.mark(st, p, true);
        }
        p
    }

    #[cold]
    #[inline(never)]
    fn alloc_slow(&self) -> *mut u8 {
        if !self.grow() {
            return ptr::null_mut();
        }
        let st = self.st();
        let p = st.free;
        // SAFETY: `grow` threaded a non-empty free list.
        st.free = unsafe { self.link.read(p) };
        sanitize::hand_out_in_slot(p, self.object_size, self.stride);
        if self.checked {
            self.mark(st, p, true);
        }
        debug_check(|| self.check_state(st));
        p
    }

    /// Adds a block (partial at the cap) and threads its objects onto the free list.
    ///
    /// The parent may call back into the pool (a callback of the program's on the parent
    /// allocates or frees here): no borrow of the state is held across the parent's call, and
    /// the block is threaded onto the free list as it is when the parent answered.
    fn grow(&self) -> bool {
        let room = |st: &State| {
            if self.max_objects == 0 {
                self.per_block
            } else {
                self.per_block.min(self.max_objects.saturating_sub(st.total))
            }
        };
        let objects = room(self.st());
        if objects == 0 {
            return false;
        }
        // SAFETY: the list lives in the state; it is reached through the cell's pointer, not
        // through a borrow of the state, which the parent's callbacks may borrow meanwhile.
        let blocks = unsafe { &(*self.state.get()).blocks };
        let Some(block) = blocks.take(self.header + objects * self.stride) else {
            return false;
        };
        let st = self.st();
        // Blocks the parent's callbacks made the pool take meanwhile count against the cap: if
        // this block no longer fits under it whole (a block's objects are its size's), it goes
        // back.
        if room(st) < objects {
            // SAFETY: the block just taken, the newest of the list, unused; given back with no
            // use of the state after it.
            if let Some((detached, _)) = unsafe { st.blocks.unlink_after(ptr::null_mut(), block.start) } {
                detached.give_back();
            }
            return false;
        }
        // SAFETY: a fresh block of `header + objects·stride` bytes: the chunk header (and the
        // bitmap), then `objects` objects; the objects are linked in address order, the last
        // one to the old free list.
        unsafe {
            if self.checked {
                ptr::write_bytes(block.data, 0, objects.div_ceil(8));
            }
            let first = block.start.add(self.header);
            for i in 0..objects {
                let obj = first.add(i * self.stride);
                let next = if i + 1 < objects { first.add((i + 1) * self.stride) } else { st.free };
                sanitize::retire_linked(obj, self.stride);
                self.link.write(obj, next);
            }
            st.free = first;
        }
        let at = st.sorted.partition_point(|&x| x < block.start);
        st.sorted.insert(at, block.start);
        st.total += objects;
        // The range grows to hold the block's objects (`take` gave a block that does not wrap).
        let first = block.start.addr() + self.header;
        let end = first + objects * self.stride;
        let (lo, hi) =
            if st.span == 0 { (first, end) } else { (st.lo.min(first), (st.lo + st.span).max(end)) };
        (st.lo, st.span) = (lo, hi - lo);
        true
    }

    /// Pushes an object back and says whether it did: a pointer the pool refuses is reported,
    /// counted as misuse and ignored (checked mode refuses every pointer that is no live
    /// object; unchecked mode those that fail its range check: outside the pool's address range,
    /// off an object boundary, or the object freed last).
    ///
    /// # Safety
    /// Unchecked: `p` must be a live object of this pool or fail that range check.
    #[inline(always)]
    pub unsafe fn free_object(&self, p: *mut u8) -> bool {
        if self.checked {
            // Out of line and a tail call: the unchecked push keeps no state across a call.
            crate::policy::cold_path();
            return self.free_checked(p);
        }
        if !self.plausible(self.st(), p) {
            return self.refuse_unchecked(p);
        }
        sanitize::retire_linked(p, self.object_size);
        // SAFETY: forwarded contract: `p` passed the checks, so it is a live object.
        unsafe { self.push(p) };
        true
    }

    /// A checked free: a bad pointer is reported and ignored.
    #[inline(never)]
    fn free_checked(&self, p: *mut u8) -> bool {
        let freed = self.check_free(self.st(), p);
        if freed {
            sanitize::retire_linked(p, self.object_size);
            // SAFETY: the check found `p` to be a live object of this pool.
            unsafe { self.push(p) };
        }
        freed
    }

    /// The unchecked free's checks, a range check's cost: `p` lies in the pool's address range,
    /// at an object boundary (`boundary_mask`, see `State`), and is not the object freed last
    /// (the head of the free list: a free repeated at once would make the list a cycle).
    #[inline(always)]
    fn plausible(&self, st: &State, p: *mut u8) -> bool {
        self.on_boundary_in_range(st, p) && p != st.free
    }

    /// Whether `p` lies in the pool's address range at an object boundary (see `State`).
    #[inline(always)]
    fn on_boundary_in_range(&self, st: &State, p: *mut u8) -> bool {
        let off = p.addr().wrapping_sub(st.lo);
        off < st.span && off & self.boundary_mask == 0
    }

    /// Reports and counts a pointer an unchecked free refused; returns false.
    #[cold]
    #[inline(never)]
    fn refuse_unchecked(&self, p: *mut u8) -> bool {
        let st = self.st();
        // Called once the free's test failed: one of its reasons holds.
        const AGAIN: &str = "already free (double free)";
        let why = self.unchecked_refusal(st, p, AGAIN).unwrap_or(AGAIN);
        self.misuse(st, p, why);
        false
    }

    /// Why the unchecked free's test refuses `p`, if it does (`again`: the words for the object
    /// freed last).
    fn unchecked_refusal(&self, st: &State, p: *mut u8, again: &'static str) -> Option<&'static str> {
        let off = p.addr().wrapping_sub(st.lo);
        if off >= st.span {
            Some("not from this pool")
        } else if off & self.boundary_mask != 0 {
            Some("not at an object boundary")
        } else {
            (p == st.free).then_some(again)
        }
    }

    /// Counts and reports a refused free.
    #[cold]
    fn misuse(&self, st: &mut State, p: *mut u8, why: &str) {
        self.misuse_in(st, "free", p, why);
    }

    /// Counts and reports a refused free or resize (`verb`).
    #[cold]
    fn misuse_in(&self, st: &mut State, verb: &str, p: *mut u8, why: &str) {
        st.misuse += 1;
        eprintln!("goo-memory: pool {:p}: {verb} of {p:p}: {why} (ignored)", self as *const Self);
    }

    /// Why a resize of `p` is refused, if it is: the free's checks, without the free. Checked
    /// mode: `p` is no live object. Unchecked: `p` fails the free's range check.
    fn resize_refusal(&self, st: &State, p: *mut u8) -> Option<&'static str> {
        if self.checked {
            return match self.locate(st, p) {
                Err(why) => Some(why),
                Ok((block, i)) => {
                    let (byte, mask) = self.bit(&block, i);
                    // SAFETY: a byte of this block's bitmap.
                    (unsafe { *byte & mask == 0 }).then_some("already free (realloc after free)")
                }
            };
        }
        self.unchecked_refusal(st, p, "already free (realloc after free)")
    }

    /// Pushes an object onto the free list (what an unchecked free is).
    ///
    /// # Safety
    /// `p` must be a live object of this pool.
    #[inline(always)]
    pub(crate) unsafe fn push(&self, p: *mut u8) {
        let st = self.st();
        // SAFETY: `p` is a live object: its first word becomes the link.
        unsafe { self.link.write(p, st.free) };
        st.free = p;
    }

    /// Whether `next`, a link read from a free object, may name the next free object: null, or
    /// an object boundary in the pool's address range (the unchecked free's test).
    #[inline(always)]
    fn link_plausible(&self, st: &State, next: *mut u8) -> bool {
        next.is_null() || self.on_boundary_in_range(st, next)
    }

    /// The link of the free object `at`, being handed out, names no object: something wrote to
    /// it after its free. Unchecked, the rest of the list is dropped (its objects leak rather
    /// than serve a stale pointer's writer); checked, the list is rebuilt from the bitmaps (every
    /// object whose bit is clear but `at`). The misuse is counted and reported.
    #[cold]
    #[inline(never)]
    fn corrupt_list(&self, st: &mut State, at: *mut u8) {
        st.free = ptr::null_mut();
        st.misuse += 1;
        if self.checked {
            for block in st.blocks.iter() {
                // SAFETY: a live block of this pool: its objects.
                let first = unsafe { block.start.add(self.header) };
                for i in (0..self.objects(&block)).rev() {
                    let (byte, mask) = self.bit(&block, i);
                    // SAFETY: a byte of this block's bitmap; the object is in the block.
                    unsafe {
                        let obj = first.add(i * self.stride);
                        if *byte & mask == 0 && obj != at {
                            self.link.write(obj, st.free);
                            st.free = obj;
                        }
                    }
                }
            }
        }
        eprintln!(
            "goo-memory: pool {:p}: the free object {at:p} was written after its free; {}",
            self as *const Self,
            if self.checked {
                "the free list is rebuilt from the live bitmaps"
            } else {
                "the rest of the free list is dropped (its objects leak)"
            }
        );
    }

    /// Objects in `block`.
    fn objects(&self, block: &Chunk) -> usize {
        (block.size() - self.header) / self.stride
    }

    /// The block holding `p` and its index there, if `p` is at an object boundary of a block.
    fn locate(&self, st: &State, p: *const u8) -> Result<(Chunk, usize), &'static str> {
        let addr = p as usize;
        // The last block starting at or before `p` is the only one that can hold it.
        let at = st.sorted.partition_point(|&x| x.addr() <= addr);
        let Some(&start) = at.checked_sub(1).and_then(|i| st.sorted.get(i)) else {
            return Err("not from this pool");
        };
        // SAFETY: `sorted` holds the starts of the blocks, live chunks of the pool's list.
        let block = unsafe { st.blocks.chunk_at(start) };
        let first = start.addr() + self.header;
        if addr >= block.end.addr() {
            return Err("not from this pool");
        }
        if addr < first || !(addr - first).is_multiple_of(self.stride) {
            return Err("not at an object boundary");
        }
        Ok((block, (addr - first) / self.stride))
    }

    /// The bitmap byte of object `i` of `block` (checked mode) and its bit.
    fn bit(&self, block: &Chunk, i: usize) -> (*mut u8, u8) {
        // SAFETY: checked pools have `objects.div_ceil(8)` bitmap bytes at the start of a
        // block's data area.
        (unsafe { block.data.add(i / 8) }, 1 << (i % 8))
    }

    fn mark(&self, st: &State, p: *mut u8, live: bool) {
        if let Ok((block, i)) = self.locate(st, p) {
            let (byte, mask) = self.bit(&block, i);
            // SAFETY: a byte of this block's bitmap.
            unsafe { *byte = if live { *byte | mask } else { *byte & !mask } };
        }
    }

    #[cold]
    fn check_free(&self, st: &mut State, p: *mut u8) -> bool {
        let verdict = self.locate(st, p).and_then(|(block, i)| {
            let (byte, mask) = self.bit(&block, i);
            // SAFETY: a byte of this block's bitmap.
            let live = unsafe { *byte & mask != 0 };
            if live {
                // SAFETY: as above.
                unsafe { *byte &= !mask };
                Ok(())
            } else {
                Err("already free (double free)")
            }
        });
        match verdict {
            Ok(()) => true,
            Err(why) => {
                self.misuse(st, p, why);
                false
            }
        }
    }

    /// Every object back to the pool; blocks are kept.
    ///
    /// # Safety
    /// No object of this pool is used after this call.
    pub unsafe fn reset(&self) {
        let st = self.st();
        st.free = ptr::null_mut();
        for block in st.blocks.iter() {
            let objects = self.objects(&block);
            // SAFETY: a live block of this pool: its bitmap (checked mode) and its objects,
            // every one of them free now.
            unsafe {
                if self.checked {
                    ptr::write_bytes(block.data, 0, objects.div_ceil(8));
                }
                let first = block.start.add(self.header);
                for i in (0..objects).rev() {
                    let obj = first.add(i * self.stride);
                    sanitize::retire_linked(obj, self.stride);
                    self.link.write(obj, st.free);
                    st.free = obj;
                }
            }
        }
        debug_check(|| self.check_state(st));
    }

    /// Counts and configuration. The free objects are counted by walking the free list (the
    /// hot path keeps no counter): O(free objects · log blocks). A corrupt list (an unchecked
    /// pool given a bad free its checks let pass) is reported on stderr; the walk stops at the
    /// first entry that is no object or after `total` entries, so the counts stay within
    /// `total` and nothing outside the pool is read.
    pub fn stats(&self) -> PoolStats {
        let st = self.st();
        let (free, whole) = self.count_free(st);
        if !whole {
            eprintln!(
                "goo-memory: pool {:p}: the free list is corrupt (a bad free in unchecked mode); the counts are unreliable",
                self as *const Self
            );
        }
        PoolStats {
            object_stride: self.stride,
            objects_per_block: self.per_block,
            blocks: st.blocks.count(),
            total_objects: st.total,
            free_objects: free,
            live_objects: st.total - free,
            max_objects: self.max_objects,
            bytes_reserved: self.reserved(st),
            misuse_detected: st.misuse,
            checked: self.checked,
        }
    }

    fn reserved(&self, st: &State) -> usize {
        st.blocks.bytes()
    }

    /// The free list's length, walked at most `total` steps, each entry located in a block
    /// before its link is read; and whether the walk reached the end of the list that way.
    fn count_free(&self, st: &State) -> (usize, bool) {
        let mut free = 0;
        let mut p = st.free;
        while !p.is_null() {
            if free == st.total || self.locate(st, p).is_err() {
                return (free, false);
            }
            free += 1;
            // SAFETY: `p` is an object of one of the pool's blocks (located above), on the free
            // list: its first word is the link to the next free object.
            p = unsafe { self.link.read(p) };
        }
        (free, true)
    }

    /// Whether `p` is an object of this pool (at a boundary).
    pub fn owns(&self, p: *const u8) -> bool {
        self.locate(self.st(), p).is_ok()
    }
}

const fn align_of_link() -> usize {
    core::mem::align_of::<*mut u8>()
}

// SAFETY: objects are disjoint `stride`-byte slots of live blocks, aligned to `align` (blocks
// are aligned to `block_align`, a multiple of it, and the header and stride are multiples of
// it), handed out at most once until freed (the free list holds each free object once: checked
// mode refuses every double free, unchecked mode the immediate one, and any other is a breach
// of `free`'s contract, which `pool.h` calls undefined).
unsafe impl Backend for Pool {
    fn check_state(&self) -> Result<(), InvariantError> {
        Pool::check(self)
    }

    const NAME: &'static str = "pool";
    const KIND: Kind = Kind::Pool;
    const THREAD_SAFE: bool = false;

    /// A pop of the free list (unchecked pools: a checked one marks its bitmap on the slow
    /// path).
    #[inline(always)]
    unsafe fn try_alloc_inline(&self, _home: Option<usize>, size: usize, align: usize) -> *mut u8 {
        self.try_alloc_request(size, align)
    }

    /// A push onto the free list (unchecked pools, for a pointer that passes the range check,
    /// `Pool::plausible`: the slow path refuses the others; a checked pool verifies the pointer
    /// on the slow path).
    #[inline(always)]
    unsafe fn try_free_inline(
        &self,
        _home: Option<usize>,
        ptr: *mut u8,
        _size: usize,
        _align: usize,
    ) -> bool {
        if self.checked || !self.plausible(self.st(), ptr) {
            return false;
        }
        // SAFETY: forwarded contract: a live object, or one that fails the checks (not here).
        unsafe { self.push(ptr) };
        true
    }

    #[inline(always)]
    fn alloc(&self, size: usize, align: usize, _options: AllocOptions) -> *mut u8 {
        self.alloc_request(size, align)
    }

    #[inline(always)]
    unsafe fn free(&self, ptr: *mut u8, _size: usize, _align: usize) {
        // SAFETY: forwarded contract (checked mode verifies it).
        unsafe { self.free_object(ptr) };
    }

    /// A refused pointer (reported and counted as misuse) changes no stats.
    unsafe fn release(&self, ptr: *mut u8, _size: usize, _align: usize) -> bool {
        // SAFETY: forwarded contract (checked mode verifies it).
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
        // A resize of a pointer the free would refuse is refused too: otherwise a freed object
        // would come back as a live block while it stays on the free list.
        let st = self.st();
        if let Some(why) = self.resize_refusal(st, ptr) {
            self.misuse_in(st, "realloc", ptr, why);
            crate::policy::refusal::refuse_misuse();
            return ptr::null_mut();
        }
        resize_within(ptr, new_size, align, self.object_size, self.align)
    }

    fn bytes_reserved(&self, _bytes_allocated: usize) -> usize {
        self.reserved(self.st())
    }
}

/// Creates a C pool allocator (stats tracked).
///
/// # Safety
/// `parent` must be a valid allocator that outlives the pool.
pub unsafe fn create(parent: *mut GooAllocator, config: PoolConfig) -> Option<NonNull<GooAllocator>> {
    // SAFETY: forwarded contract.
    let pool = unsafe { Pool::new(parent, config) }?;
    Some(Managed::create(pool, AllocStrategy::Null, true))
}

/// The pool behind a `GooAllocator*`, if it is one.
///
/// # Safety
/// `allocator` must be null or valid (live if a library allocator).
pub unsafe fn from_raw<'a>(allocator: *const GooAllocator) -> Option<&'a Pool> {
    // SAFETY: forwarded contract.
    unsafe { Managed::<Pool>::try_backend(allocator) }
}

/// Resets the pool `allocator` (every object back), accounting the implicit frees.
///
/// # Safety
/// As for [`from_raw`]; no object may be used afterwards.
pub unsafe fn reset_raw(allocator: *mut GooAllocator) -> bool {
    // SAFETY: forwarded contract.
    unsafe {
        let Some(pool) = from_raw(allocator) else { return false };
        front::record_reset(allocator);
        pool.reset();
        front::reset_done(allocator);
        true
    }
}

const POOL: &str = "pool";

impl Pool {
    /// Verifies the invariants of the pool's state (the equations beside `State`, and its block
    /// list's own): walks the blocks (at most their count) and the free list (at most `total`
    /// steps, so a cycle is reported, not walked forever), locating every free object before
    /// reading its link. Reads only; allocates nothing. O(blocks + free objects · log blocks).
    pub fn check(&self) -> Result<(), InvariantError> {
        self.check_state(self.st())
    }

    /// [`Pool::check`] on the state a method already borrowed (debug checks in its slow paths).
    fn check_state(&self, st: &State) -> Result<(), InvariantError> {
        st.blocks.check(POOL)?;
        ensure(st.sorted.len() == st.blocks.count(), POOL, "|B| == sorted.len()")?;
        ensure(
            st.sorted.windows(2).all(|w| w[0] < w[1]),
            POOL,
            "sorted == the addresses of B, strictly increasing",
        )?;
        let (mut total, mut live_bits) = (0usize, 0usize);
        let (mut lo, mut hi) = (usize::MAX, 0usize);
        for block in st.blocks.iter() {
            ensure(
                block.start.addr().is_multiple_of(self.block_align),
                POOL,
                "b % block_align == 0 for b ∈ B",
            )?;
            let at = st.sorted.binary_search(&block.start);
            ensure(at.is_ok(), POOL, "sorted == the addresses of B, strictly increasing")?;
            let data_bytes = block.size().checked_sub(self.header);
            let objects = data_bytes.map_or(0, |n| n / self.stride);
            ensure(
                data_bytes.is_some_and(|n| n.is_multiple_of(self.stride))
                    && (1..=self.per_block).contains(&objects),
                POOL,
                "b.size == header + b.objects·stride, 1 <= b.objects <= per_block",
            )?;
            let next_block = at.ok().and_then(|i| st.sorted.get(i + 1));
            ensure(
                next_block.is_none_or(|&n| block.end <= n),
                POOL,
                "b + b.size <= the next block in sorted (blocks disjoint)",
            )?;
            total = total.saturating_add(objects);
            let first = block.start.addr().wrapping_add(self.header);
            lo = lo.min(first);
            hi = hi.max(first.wrapping_add(objects.wrapping_mul(self.stride)));
            ensure(
                first.wrapping_sub(st.lo) & self.boundary_mask == 0,
                POOL,
                "obj(b, 0) - lo ≡ 0 (mod boundary) for b ∈ B",
            )?;
            if self.checked {
                live_bits += (0..objects)
                    .filter(|&i| {
                        let (byte, mask) = self.bit(&block, i);
                        // SAFETY: a byte of this block's bitmap (checked pools have
                        // `objects.div_ceil(8)` of them at the start of its data area).
                        unsafe { *byte & mask != 0 }
                    })
                    .count();
            }
        }
        ensure(total == st.total, POOL, "total == Σ b.objects over b ∈ B")?;
        if total == 0 {
            ensure(st.lo == 0 && st.span == 0, POOL, "B empty => lo == 0, span == 0")?;
        } else {
            ensure(
                st.lo == lo && st.lo.checked_add(st.span) == Some(hi),
                POOL,
                "B not empty => lo == min obj(b, 0), lo + span == max obj(b, b.objects)",
            )?;
        }
        ensure(
            self.max_objects == 0 || total <= self.max_objects,
            POOL,
            "max_objects != 0 => total <= max_objects",
        )?;
        let mut free = 0usize;
        let mut f = st.free;
        while !f.is_null() {
            ensure(free < total, POOL, "|F| <= total (F has no cycle)")?;
            let (block, i) = self.locate(st, f).map_err(|_| {
                InvariantError::new(POOL, "f ∈ F => f == obj(b, k) for some b ∈ B, k < b.objects")
            })?;
            if self.checked {
                let (byte, mask) = self.bit(&block, i);
                // SAFETY: a byte of the bitmap of `block`, which holds object `i`.
                ensure(unsafe { *byte & mask == 0 }, POOL, "checked => bit(f) == 0 for f ∈ F")?;
            }
            free += 1;
            // SAFETY: `f` is object `i` of `block` (located above), a free object: its first
            // word is the link to the next free object.
            f = unsafe { self.link.read(f) };
        }
        ensure(
            !self.checked || free + live_bits == total,
            POOL,
            "checked => |F| + Σ |bits set in b's bitmap| == total",
        )
    }
}

/// Verifies the invariants of the pool `allocator` ([`Pool::check`]) and of its stats
/// ([`ShardedStats::check`](crate::policy::stats::ShardedStats::check)).
///
/// # Safety
/// As for [`from_raw`].
pub unsafe fn check_raw(allocator: *mut GooAllocator) -> Result<(), InvariantError> {
    // SAFETY: forwarded contract.
    unsafe { Managed::<Pool>::check_raw(allocator) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn broken(pool: &Pool) -> &'static str {
        pool.check().expect_err("a broken equation").broken
    }

    /// A pool of two blocks (4 + 4 objects of 32 bytes), 6 objects handed out, 2 of them back.
    fn pool(checked: bool) -> (Pool, Vec<*mut u8>) {
        let config = PoolConfig { checked, ..PoolConfig::new(32, 4) };
        // SAFETY: the built-in allocator is a static.
        let pool = unsafe { Pool::new(crate::default::builtin(), config) }.unwrap();
        let mut live: Vec<*mut u8> = (0..6).map(|_| pool.alloc_object()).collect();
        assert!(live.iter().all(|p| !p.is_null()));
        for p in live.drain(..2) {
            // SAFETY: a live object of this pool, freed once.
            unsafe { pool.free_object(p) };
        }
        assert_eq!(pool.check(), Ok(()));
        (pool, live)
    }

    /// Each corruption breaks one equation and `check` names it; undoing it makes the state
    /// whole again (so the pool can be dropped).
    #[test]
    fn check_reports_each_broken_equation() {
        for checked in [false, true] {
            let (pool, _live) = pool(checked);
            let head = pool.st().free;

            // A foreign pointer on the free list (never read: it is located first).
            let mut foreign = [0usize; 8];
            foreign[0] = head as usize;
            pool.st().free = foreign.as_mut_ptr().cast();
            assert_eq!(broken(&pool), "f ∈ F => f == obj(b, k) for some b ∈ B, k < b.objects");
            // A pointer inside an object.
            pool.st().free = head.wrapping_add(8);
            assert_eq!(broken(&pool), "f ∈ F => f == obj(b, k) for some b ∈ B, k < b.objects");
            pool.st().free = head;

            // A cycle: the head links to itself.
            // SAFETY: `head` is a free object: its first word is the pool's link.
            let next = unsafe { pool.link.read(head) };
            // SAFETY: as above.
            unsafe { pool.link.write(head, head) };
            assert_eq!(broken(&pool), "|F| <= total (F has no cycle)");
            // SAFETY: as above.
            unsafe { pool.link.write(head, next) };

            pool.st().total += 1;
            assert_eq!(broken(&pool), "total == Σ b.objects over b ∈ B");
            pool.st().total -= 1;

            // The address range the unchecked free tests.
            pool.st().span -= pool.stride;
            assert_eq!(
                broken(&pool),
                "B not empty => lo == min obj(b, 0), lo + span == max obj(b, b.objects)"
            );
            pool.st().span += pool.stride;
            pool.st().lo -= pool.align;
            assert_eq!(broken(&pool), "obj(b, 0) - lo ≡ 0 (mod boundary) for b ∈ B");
            pool.st().lo += pool.align;

            let last = pool.st().sorted.pop().unwrap();
            assert_eq!(broken(&pool), "|B| == sorted.len()");
            pool.st().sorted.push(last);

            // The block list's own equations are reported as the pool's.
            let bytes = pool.st().blocks.replace_bytes(1);
            assert_eq!(pool.check(), Err(InvariantError::new(POOL, "bytes == Σ c.size over c ∈ K")));
            pool.st().blocks.replace_bytes(bytes);

            pool.st().sorted.reverse();
            assert_eq!(broken(&pool), "sorted == the addresses of B, strictly increasing");
            pool.st().sorted.reverse();
            assert_eq!(pool.check(), Ok(()), "restored");
        }
    }

    /// A corrupt free list (what a bad free an unchecked pool lets pass makes of it): the
    /// counts walk at most `total` entries and stop at the first that is no object, so they
    /// neither loop nor wrap nor read outside the pool.
    #[test]
    fn stats_of_a_corrupt_free_list_stay_bounded() {
        let (pool, _live) = pool(false);
        let head = pool.st().free;
        assert_eq!((pool.stats().free_objects, pool.stats().live_objects), (4, 4));
        // A cycle: the head links to itself (a double free with another free between).
        // SAFETY: `head` is a free object: its first word is the pool's link (restored below).
        let next = unsafe { pool.link.read(head) };
        // SAFETY: as above.
        unsafe { pool.link.write(head, head) };
        let s = pool.stats();
        assert_eq!((s.free_objects, s.live_objects, s.total_objects), (8, 0, 8));
        // A foreign pointer on the list: the walk stops before reading it.
        let mut foreign = [0usize; 8];
        pool.st().free = foreign.as_mut_ptr().cast();
        assert_eq!((pool.stats().free_objects, pool.stats().live_objects), (0, 8));
        pool.st().free = head;
        // SAFETY: as above.
        unsafe { pool.link.write(head, next) };
        assert_eq!(pool.check(), Ok(()), "restored");
    }

    /// A write through a stale pointer into a free object (an address, or zeros) cannot
    /// redirect an allocation: the pool hands out the object, reports the damage, drops the
    /// rest of its free list and serves objects of its own from then on.
    #[test]
    fn a_write_after_free_redirects_no_allocation() {
        for checked in [false, true] {
            for written in [0usize, 1] {
                let (pool, live) = pool(checked);
                let head = pool.st().free;
                let mut target = [0u64; 8];
                let forged: *mut u8 = if written == 0 { ptr::null_mut() } else { target.as_mut_ptr().cast() };
                // SAFETY: the bug under test: a write into a free object (its memory is the
                // pool's, mapped).
                unsafe { head.cast::<*mut u8>().write(forged) };
                let misuse = pool.st().misuse;
                let a = pool.alloc_object();
                assert_eq!(a, head, "the free object itself still serves");
                assert_eq!(pool.st().misuse, misuse + 1, "the damage is counted");
                let b = pool.alloc_object();
                assert!(!b.is_null() && b.cast::<u64>() != target.as_mut_ptr() && pool.owns(b));
                assert_eq!(pool.check(), Ok(()));
                for p in live.into_iter().chain([a, b]) {
                    // SAFETY: live objects of this pool, freed once.
                    unsafe { pool.free_object(p) };
                }
                assert_eq!(pool.check(), Ok(()));
            }
        }
    }

    /// Checked mode: the bitmap must agree with the free list.
    #[test]
    fn check_reports_a_bitmap_that_disagrees_with_the_free_list() {
        let (pool, live) = pool(true);
        let head = pool.st().free;
        pool.mark(pool.st(), head, true);
        assert_eq!(broken(&pool), "checked => bit(f) == 0 for f ∈ F");
        pool.mark(pool.st(), head, false);
        pool.mark(pool.st(), live[0], false);
        assert_eq!(broken(&pool), "checked => |F| + Σ |bits set in b's bitmap| == total");
        pool.mark(pool.st(), live[0], true);
        assert_eq!(pool.check(), Ok(()), "restored");
    }
}
