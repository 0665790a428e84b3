//! The heap allocator: a small-object heap with per-thread pages, built on mimalloc (the static,
//! non-override build of the `libmimalloc-sys` crate; its symbols are `mi_`-prefixed, so it never
//! replaces the C library's `malloc`). Why mimalloc rather than a heap of our own is measured in
//! the README ("The heap allocator").
//!
//! What mimalloc brings: per-thread heaps whose fast path takes no lock and no atomic; a block
//! freed by another thread goes back to its owning page through that page's own atomic list;
//! memory comes from the OS in large spans and goes back when empty; size classes of four steps
//! per power of two.
//!
//! # The block prefix
//! mimalloc keeps its free lists inside the free blocks (the first word of a free block links to
//! the next), so a program writing through a pointer it already freed could redirect mimalloc's
//! next allocation. Every heap block therefore starts 16 bytes before the pointer the program
//! gets ([`PREFIX`]): mimalloc's link lives in the first word of the prefix, out of reach of
//! writes through the block, and the second word holds a tag, [`LIVE`] or [`FREED`] mixed with
//! the block's address:
//!
//! ```text
//! base = user - PREFIX,  base % 16 == 0,  user % max(align, 16) == 0
//! tag(base) == LIVE ^ base      while the block is live (allocated, not yet freed)
//! tag(base) == FREED ^ base     from its free until mimalloc hands the memory out again
//! mimalloc's usable size of base >= PREFIX + the size the block was allocated (or resized) with
//! ```
//!
//! What the tag detects, for the price of one load and compare per free: a double free of a block
//! not handed out again since, and a free of a pointer that is no heap block start at all (its
//! prefix does not hold `LIVE ^ base`); both are reported on stderr and ignored, so the block is
//! never in mimalloc's free list twice. A double free of a block already handed out again frees the
//! new owner's block (no allocator can tell that apart cheaply). [`check_block`] verifies a live
//! block's equations.
//!
//! Under Miri (which cannot run mimalloc's C) the same prefix sits on `malloc` blocks.

use core::ffi::c_void;
use core::ptr::{self, NonNull};
use core::sync::atomic::{AtomicBool, Ordering::Relaxed};

use crate::policy::backend::{drop_managed, Backend, Kind, Managed};
use crate::policy::invariant::{ensure, InvariantError};
use crate::raw::{AllocOptions, AllocStrategy, GooAllocator};

// Link the static mimalloc that `libmimalloc-sys` builds; the few functions used here are
// declared below with the exact C signatures of mimalloc's header.
use libmimalloc_sys as _;

#[cfg(not(miri))]
extern "C" {
    fn mi_malloc(size: usize) -> *mut c_void;
    fn mi_zalloc(size: usize) -> *mut c_void;
    fn mi_malloc_aligned_at(size: usize, alignment: usize, offset: usize) -> *mut c_void;
    fn mi_zalloc_aligned_at(size: usize, alignment: usize, offset: usize) -> *mut c_void;
    fn mi_realloc(p: *mut c_void, newsize: usize) -> *mut c_void;
    fn mi_free(p: *mut c_void);
    fn mi_usable_size(p: *const c_void) -> usize;
    fn mi_process_info(
        elapsed_msecs: *mut usize,
        user_msecs: *mut usize,
        system_msecs: *mut usize,
        current_rss: *mut usize,
        peak_rss: *mut usize,
        current_commit: *mut usize,
        peak_commit: *mut usize,
        page_faults: *mut usize,
    );
}

/// Miri runs no foreign C: the prefix on `malloc` blocks, same contract (alignment beyond 16 is
/// not served there).
#[cfg(miri)]
mod miri_shim {
    use core::ffi::c_void;
    pub unsafe fn mi_malloc(size: usize) -> *mut c_void {
        // SAFETY: plain C library call.
        unsafe { libc::malloc(size) }
    }
    pub unsafe fn mi_zalloc(size: usize) -> *mut c_void {
        // SAFETY: plain C library call.
        unsafe { libc::calloc(1, size) }
    }
    pub unsafe fn mi_malloc_aligned_at(_: usize, _: usize, _: usize) -> *mut c_void {
        core::ptr::null_mut()
    }
    pub unsafe fn mi_zalloc_aligned_at(_: usize, _: usize, _: usize) -> *mut c_void {
        core::ptr::null_mut()
    }
    pub unsafe fn mi_realloc(p: *mut c_void, n: usize) -> *mut c_void {
        // SAFETY: forwarded: `p` is a live malloc block.
        unsafe { libc::realloc(p, n) }
    }
    pub unsafe fn mi_free(p: *mut c_void) {
        // SAFETY: forwarded: `p` is a live malloc block.
        unsafe { libc::free(p) }
    }
    pub unsafe fn mi_usable_size(_: *const c_void) -> usize {
        0
    }
}
#[cfg(miri)]
use miri_shim::*;

/// Bytes every heap block has before the pointer the program gets: mimalloc's free-list link,
/// then the tag. 16 keeps the program's pointer 16-aligned.
pub const PREFIX: usize = 16;
/// The alignment a heap block has without asking for more (mimalloc's `MI_MAX_ALIGN_SIZE`).
const BASE_ALIGN: usize = 16;
/// The tag of a live block (mixed with its address, so a copied or stale prefix does not pass).
const LIVE: usize = 0x6f6f_675f_6865_6170;
/// The tag of a freed block.
const FREED: usize = 0x6465_6572_665f_6f67;

/// The heap as a [`Backend`]. Stateless: every heap allocator shares the process's mimalloc
/// heaps (one per thread); what differs between instances made by [`Heap::create`] is their
/// stats and strategy.
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

/// The tag word of the block whose mimalloc block starts at `base`.
#[inline(always)]
fn tag_of(base: *mut u8) -> *mut usize {
    // `base` is 16-aligned: the second word is aligned.
    base.wrapping_add(core::mem::size_of::<usize>()).cast()
}

/// Tags a fresh mimalloc block live and returns the program's pointer (null stays null).
#[inline(always)]
fn hand_out(base: *mut c_void) -> *mut u8 {
    let base = base.cast::<u8>();
    if base.is_null() {
        return ptr::null_mut();
    }
    // SAFETY: a fresh mimalloc block of at least PREFIX + 1 bytes, 16-aligned.
    unsafe {
        tag_of(base).write(LIVE ^ base.addr());
        base.add(PREFIX)
    }
}

/// A plain block of `size` bytes at natural or 16-byte alignment: one mimalloc call.
#[inline(always)]
fn alloc_small(size: usize) -> *mut u8 {
    // `size <= isize::MAX - 16` (the front door's check): no overflow.
    // SAFETY: a C call with a non-zero size; mimalloc's functions cannot unwind.
    hand_out(unsafe { mi_malloc(size + PREFIX) })
}

/// Takes a block back: checks its tag, marks it freed, gives it to mimalloc. A bad tag (a double
/// free, or a pointer that is no heap block) is reported and the block left alone.
///
/// # Safety
/// `ptr` must be a pointer this heap handed out (live, or freed: the tag tells); memory of the
/// heap, not unmapped.
#[inline(always)]
unsafe fn release(ptr: *mut u8) {
    let base = ptr.wrapping_sub(PREFIX);
    // SAFETY: per the contract, `base` starts a mimalloc block (or did): its prefix is readable.
    unsafe {
        let tag = tag_of(base);
        if tag.read() != LIVE ^ base.addr() {
            crate::policy::cold_path();
            return bad_free(ptr, tag.read() == FREED ^ base.addr());
        }
        tag.write(FREED ^ base.addr());
        mi_free(base.cast());
    }
}

/// Reports a free the heap refused (once per process, on stderr: the program has a bug, and a
/// flood of lines helps nobody). Counted in [`refused_frees`].
#[cold]
#[inline(never)]
fn bad_free(ptr: *mut u8, double: bool) {
    REFUSED.fetch_add(1, Relaxed);
    static SAID: AtomicBool = AtomicBool::new(false);
    if !SAID.swap(true, Relaxed) {
        // No formatting: this may run inside an allocation of the global allocator, and must
        // not allocate.
        let msg: &[u8] = if double {
            b"goo-memory: heap: refused a double free; further refusals are only counted\n"
        } else {
            b"goo-memory: heap: refused a free of a pointer that is no live heap block; further refusals are only counted\n"
        };
        let _ = ptr;
        // SAFETY: writing a static buffer to stderr; `write` cannot unwind.
        unsafe { libc::write(2, msg.as_ptr().cast(), msg.len()) };
    }
}

static REFUSED: core::sync::atomic::AtomicUsize = core::sync::atomic::AtomicUsize::new(0);

/// How many frees the heap refused since the process started (double frees and frees of
/// pointers that are no live heap block).
pub fn refused_frees() -> usize {
    REFUSED.load(Relaxed)
}

/// Whether a request is served with mimalloc's own alignment (0 = natural).
#[inline(always)]
fn base_aligned(align: usize) -> bool {
    align <= BASE_ALIGN
}

// SAFETY: every block is a mimalloc block of at least `size + PREFIX` bytes whose first PREFIX
// bytes the heap keeps; the program's pointer is PREFIX past a 16-aligned base, or aligned to
// `align` by `mi_malloc_aligned_at(.., align, PREFIX)`; blocks are disjoint; zeroed requests use
// mimalloc's zeroing calls.
unsafe impl Backend for Heap {
    const NAME: &'static str = "heap";
    const KIND: Kind = Kind::Heap;
    const ZEROES: bool = true;

    /// One mimalloc call (its per-thread fast path, no lock, no atomic) and the tag store.
    #[inline(always)]
    fn try_alloc_inline(&self, _home: Option<usize>, size: usize, align: usize) -> *mut u8 {
        if base_aligned(align) {
            alloc_small(size)
        } else {
            ptr::null_mut()
        }
    }

    /// The tag check and one mimalloc call. A bad tag takes the slow path, which reports it.
    #[inline(always)]
    unsafe fn try_free_inline(
        &self,
        _home: Option<usize>,
        ptr: *mut u8,
        _size: usize,
        _align: usize,
    ) -> bool {
        let base = ptr.wrapping_sub(PREFIX);
        // SAFETY: `ptr` is a block of this heap (contract): its prefix is readable.
        unsafe {
            let tag = tag_of(base);
            if tag.read() != LIVE ^ base.addr() {
                return false;
            }
            tag.write(FREED ^ base.addr());
            mi_free(base.cast());
        }
        true
    }

    fn alloc(&self, size: usize, align: usize, options: AllocOptions) -> *mut u8 {
        let zero = options.contains(AllocOptions::ZERO);
        let total = size + PREFIX;
        // SAFETY: C calls with a non-zero size; `align` is a power of two.
        let base = unsafe {
            match (base_aligned(align), zero) {
                (true, false) => mi_malloc(total),
                (true, true) => mi_zalloc(total),
                (false, false) => mi_malloc_aligned_at(total, align, PREFIX),
                (false, true) => mi_zalloc_aligned_at(total, align, PREFIX),
            }
        };
        hand_out(base)
    }

    #[inline(always)]
    unsafe fn free(&self, ptr: *mut u8, _size: usize, _align: usize) {
        // SAFETY: forwarded contract.
        unsafe { release(ptr) }
    }

    unsafe fn realloc(
        &self,
        ptr: *mut u8,
        old_size: usize,
        new_size: usize,
        align: usize,
        options: AllocOptions,
    ) -> *mut u8 {
        let base = ptr.wrapping_sub(PREFIX);
        // SAFETY: `ptr` is a live block of this heap (contract).
        if unsafe { tag_of(base).read() } != LIVE ^ base.addr() {
            bad_free(ptr, false);
            return ptr::null_mut();
        }
        let new = if base_aligned(align) {
            // SAFETY: a live mimalloc block; mimalloc keeps it on failure and moves the prefix
            // with the contents when it moves the block.
            hand_out(unsafe { mi_realloc(base.cast(), new_size + PREFIX) })
        } else {
            let new = self.alloc(new_size, align, options.without(AllocOptions::ZERO));
            if !new.is_null() {
                // SAFETY: both live and disjoint; the old one is freed once copied.
                unsafe {
                    ptr::copy_nonoverlapping(ptr, new, old_size.min(new_size));
                    release(ptr);
                }
            }
            new
        };
        if !new.is_null() && new_size > old_size && options.contains(AllocOptions::ZERO) {
            // SAFETY: the block holds `new_size` bytes; the tail past `old_size` is ours.
            unsafe { ptr::write_bytes(new.add(old_size), 0, new_size - old_size) };
        }
        new
    }

    /// What the process's mimalloc holds from the OS (committed memory), shared by every heap
    /// allocator, so at least `bytes_allocated`.
    fn bytes_reserved(&self, bytes_allocated: usize) -> usize {
        bytes_allocated.max(committed_bytes())
    }
}

/// Bytes mimalloc holds committed from the OS for the whole process.
pub fn committed_bytes() -> usize {
    #[cfg(not(miri))]
    {
        let mut v = [0usize; 8];
        let [a, b, c, d, e, f, g, h] = &mut v;
        // SAFETY: eight valid out-pointers; mimalloc only writes them.
        unsafe { mi_process_info(a, b, c, d, e, f, g, h) };
        v[5]
    }
    #[cfg(miri)]
    0
}

/// The allocator kind the heap's [`InvariantError`]s name.
const HEAP: &str = "heap";

/// Verifies the equations of a live heap block of `size` bytes at `align` (0 = natural).
///
/// # Safety
/// `ptr` must be a live block of the heap allocated (or last resized) with `size`.
pub unsafe fn check_block(ptr: *mut u8, size: usize, align: usize) -> Result<(), InvariantError> {
    let base = ptr.wrapping_sub(PREFIX);
    ensure(base.addr().is_multiple_of(BASE_ALIGN), HEAP, "base % 16 == 0")?;
    ensure(ptr.addr().is_multiple_of(align.max(BASE_ALIGN)), HEAP, "user % max(align, 16) == 0")?;
    // SAFETY: a live heap block (contract): its prefix is readable.
    ensure(unsafe { tag_of(base).read() } == LIVE ^ base.addr(), HEAP, "tag(base) == LIVE ^ base")?;
    if !cfg!(miri) {
        // SAFETY: a live mimalloc block.
        let usable = unsafe { mi_usable_size(base.cast()) };
        ensure(
            usable >= PREFIX + size,
            HEAP,
            "mimalloc's usable size of base >= PREFIX + the size the block was allocated with",
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
    use super::*;

    fn alloc(size: usize, align: usize) -> *mut u8 {
        let p = Heap.alloc(size, align, AllocOptions::DEFAULT);
        assert!(!p.is_null());
        // SAFETY: just allocated with these.
        unsafe { check_block(p, size, align) }.unwrap();
        p
    }

    #[cfg(not(miri))] // reads freed memory on purpose
    /// A use-after-free write through the block cannot reach mimalloc's link: the next
    /// allocations are distinct heap blocks.
    #[test]
    fn a_write_after_free_does_not_redirect_the_heap() {
        let p = alloc(64, 0);
        // SAFETY: a live block, then freed; the write after the free is the bug under test (the
        // memory stays mimalloc's, mapped).
        unsafe {
            Heap.free(p, 64, 0);
            p.cast::<usize>().write(0xdead_beef);
        }
        let a = alloc(64, 0);
        let b = alloc(64, 0);
        assert_ne!(a, b);
        // SAFETY: live blocks.
        unsafe {
            Heap.free(a, 64, 0);
            Heap.free(b, 64, 0);
        }
    }

    #[cfg(not(miri))] // reads freed memory on purpose
    /// A double free is refused (counted), so the block is handed out once.
    #[test]
    fn a_double_free_is_refused() {
        let p = alloc(48, 0);
        let before = refused_frees();
        // SAFETY: a live block freed twice (the second is the bug under test; the memory stays
        // mapped: a thread's page is not returned while a block was just freed into it).
        unsafe {
            Heap.free(p, 48, 0);
            assert!(!Heap.try_free_inline(None, p, 48, 0), "the fast path declines a bad tag");
            Heap.free(p, 48, 0);
        }
        assert_eq!(refused_frees(), before + 1);
        let a = alloc(48, 0);
        let b = alloc(48, 0);
        assert_ne!(a, b);
        // SAFETY: live blocks.
        unsafe {
            Heap.free(a, 48, 0);
            Heap.free(b, 48, 0);
        }
    }

    #[cfg(not(miri))]
    #[test]
    fn aligned_zeroed_and_resized_blocks_keep_their_equations() {
        for align in [32, 64, 4096] {
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
        assert!(committed_bytes() > 0);
    }
}
