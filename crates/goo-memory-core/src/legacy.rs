//! The unsized legacy API (`goo_runtime_alloc` / `goo_alloc` and friends) on top of sized
//! allocators: each block carries a 16-byte header with its size and the allocator it came from,
//! so it can be freed or resized without the caller knowing either, even after the current
//! allocator changed.
//!
//! The header lies in memory a free gives back, so a second free or a resize of a freed block
//! may find it overwritten: by the debug allocator's fill, by the C library's free-list links.
//! Its size therefore carries a check (16 bits of a hash of the block's address and allocator,
//! in the size's top bits: no block is 2^48 bytes), verified before the allocator pointer is
//! followed. A header that fails it is refused: reported on stderr, counted
//! ([`refused_count`]), the block left alone. An intact header of a freed block goes to its
//! allocator, whose own checks find the double free (the heap's tags, the debug allocator).
//!
//! A freed block's header may also be gone from the address space: the C library unmaps a
//! large block at its free. So the header is read only where memory stays mapped: a block of
//! more than `MAPPED_MAX` bytes (header included) from an allocator that gives large blocks
//! to the C library (`frees_to_the_os`) is allocated page-aligned, and every block
//! whose start is page-aligned is listed (`PAGE_ALIGNED`) from its allocation to its free,
//! but for the heap's small blocks: its segments stay mapped, so a header there can always
//! be read (and the heap's tags find a second free). A free or resize of a page-aligned start
//! outside them that is not listed is refused unread; any other start is a block of at most
//! `MAPPED_MAX` bytes of such an allocator (the system allocator's double frees are undefined,
//! as documented) or a block of an arena, pool, region or scope, whose memory stays mapped
//! until a reset or destroy, which unlists its blocks (`observe_blocks_gone`).
//!
//! ```text
//! b ∈ PAGE_ALIGNED  <=>  listed_start(b) and b is the base of a live legacy block
//! the base of a live legacy block of total > MAPPED_MAX bytes from an allocator that
//!     frees_to_the_os  is a multiple of PAGE
//! ```

use core::ptr;
use core::sync::atomic::{AtomicUsize, Ordering::Relaxed};

use crate::addr_set::{addr_map, AddrMap};
use crate::allocators::{debug, locked};
use crate::default::current;
use crate::dispatch::{self, SlowPath};
use crate::policy::backend::{header_of, is_managed, observe_blocks_gone, Kind};
use crate::policy::fork::held_across_forks;
use crate::raw::{AllocOptions, GooAllocator, MAX_NATURAL_ALIGN};

/// Bytes in front of every legacy block; keeps the block aligned like `malloc`'s.
pub const HEADER_SIZE: usize = MAX_NATURAL_ALIGN;

/// The largest legacy block (header included) allocated at the natural alignment: the heap's
/// largest class. Larger ones from an allocator whose frees go to the C library, which may
/// unmap them, are allocated page-aligned and listed (see the module's notes).
const MAPPED_MAX: usize = 16 * 1024;
/// The page size the listed blocks are aligned to.
const PAGE: usize = 4096;

held_across_forks! {
    /// The live legacy blocks that [`listed_start`] names (every block of more than
    /// [`MAPPED_MAX`] bytes allocated page-aligned, and the others outside the heap's segments
    /// that start on a page), each with its allocator's
    /// address (for [`forget_allocator`]).
    static PAGE_ALIGNED: AddrMap<usize> = addr_map(), at Leaf, locked by page_aligned;
}

/// Blocks listed (read without the lock: a reset or destroy takes it only when some are).
static LISTED: AtomicUsize = AtomicUsize::new(0);

/// Whether `allocator`'s large blocks go back to the C library at their free, which may unmap
/// them: the heap's and the system allocator's, and those of a debug or locked allocator over
/// one. Each of these serves any alignment.
///
/// # Safety
/// `allocator` is valid for reads, and so is the chain of allocators under it.
unsafe fn frees_to_the_os(allocator: *mut GooAllocator) -> bool {
    let mut a = allocator;
    // A chain of wrappers, bounded (a longer one is asked at the natural alignment).
    for _ in 0..8 {
        // SAFETY: `a` is valid (contract); a library allocator's header is reachable.
        unsafe {
            if !is_managed(a) {
                return false;
            }
            if matches!(header_of(a).kind, Kind::Heap | Kind::System) {
                return true;
            }
            if let Some(d) = debug::from_raw(a) {
                a = d.parent();
            } else if let Some(l) = locked::from_raw(a) {
                a = l.inner();
            } else {
                return false;
            }
        }
    }
    false
}

/// The alignment a legacy block of `total` bytes (header included) is asked at from
/// `allocator`: page-aligned if larger than [`MAPPED_MAX`] and its memory may be unmapped at
/// its free ([`frees_to_the_os`]); the natural alignment otherwise (an arena's, a pool's, a
/// region's or a scope's memory stays mapped until their reset or destroy, which unlists their
/// blocks; an allocator written in C may serve no other alignment, and what its frees unmap is
/// its contract).
///
/// # Safety
/// As for [`frees_to_the_os`].
unsafe fn align_of(total: usize, allocator: *mut GooAllocator) -> usize {
    // SAFETY: forwarded contract.
    if total > MAPPED_MAX && unsafe { frees_to_the_os(allocator) } {
        PAGE
    } else {
        MAX_NATURAL_ALIGN
    }
}

/// Whether a legacy block that starts at `base` is listed while live: it starts on a page,
/// outside the heap's segments (whose memory stays mapped).
#[inline(always)]
fn listed_start(base: *mut u8) -> bool {
    base.addr().is_multiple_of(PAGE) && !crate::allocators::heap::in_segments(base)
}

/// Lists `base`, a new legacy block of `allocator`, if [`listed_start`] says so. False (with
/// `base` unlisted) if the list cannot grow.
fn list(base: *mut u8, allocator: *mut GooAllocator) -> bool {
    if !listed_start(base) {
        return true;
    }
    observe_blocks_gone(forget_allocator);
    let mut map = page_aligned();
    if map.try_reserve(1).is_err() {
        return false;
    }
    map.insert(base.addr(), allocator.addr());
    LISTED.store(map.len(), Relaxed);
    true
}

/// Claims the block at `base` for a free or resize: whether its header may be read. A block
/// that [`listed_start`] names must be listed, and leaves the list (of two frees of one block,
/// one finds it); one not listed was freed already (its memory may be unmapped), or is no
/// legacy block, and is refused unread.
fn claim(base: *mut u8) -> bool {
    if !listed_start(base) {
        return true;
    }
    let mut map = page_aligned();
    let listed = map.remove(&base.addr()).is_some();
    LISTED.store(map.len(), Relaxed);
    release_if_empty(&mut map);
    listed
}

/// Forgets the listed blocks of `allocator`, which freed all its blocks at once (a reset) or
/// is being destroyed: their memory goes back to its parent, maybe to the OS, so a later free
/// of one must find it unlisted. Called for every library allocator's reset and destroy.
fn forget_allocator(allocator: *mut GooAllocator) {
    if LISTED.load(Relaxed) == 0 {
        return;
    }
    let mut map = page_aligned();
    map.retain(|_, &mut a| a != allocator.addr());
    LISTED.store(map.len(), Relaxed);
    release_if_empty(&mut map);
}

/// Frees the list's table once it lists nothing: it is not kept for the process's life, where
/// leak checkers would see it as lost.
fn release_if_empty(map: &mut AddrMap<usize>) {
    if map.is_empty() && map.capacity() > 0 {
        *map = addr_map();
    }
}

#[repr(C)]
struct Header {
    /// The block's size, its check in the top [`CHECK_BITS`] bits.
    size: usize,
    allocator: *mut GooAllocator,
}
const _: () = assert!(core::mem::size_of::<Header>() <= HEADER_SIZE);
// The check needs the top bits of a size: 64-bit addresses (the heap assumes them too).
const _: () = assert!(usize::BITS == 64);

/// Bits of the header's check.
const CHECK_BITS: u32 = 16;
/// The sizes a header holds: below `2^48`, larger than any address space's blocks.
const SIZE_MASK: usize = usize::MAX >> CHECK_BITS;

/// The check of a header at `base` naming `allocator`.
fn check_of(base: *mut u8, allocator: *mut GooAllocator) -> usize {
    let h = (base.addr() ^ allocator.addr().rotate_left(29)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    h >> (usize::BITS - CHECK_BITS)
}

impl Header {
    fn new(base: *mut u8, size: usize, allocator: *mut GooAllocator) -> Self {
        debug_assert!(size <= SIZE_MASK, "a block of 2^48 bytes");
        Header { size: size | check_of(base, allocator) << (usize::BITS - CHECK_BITS), allocator }
    }

    /// The header of the block at `base` (its size and allocator), if its check holds.
    ///
    /// # Safety
    /// `base` is readable for a header: `HEADER_SIZE` bytes before a block this module
    /// returned (live or not: the bytes are only read).
    unsafe fn read(base: *mut u8) -> Option<(usize, *mut GooAllocator)> {
        // SAFETY: per the contract.
        let Header { size, allocator } = unsafe { base.cast::<Header>().read() };
        (size >> (usize::BITS - CHECK_BITS) == check_of(base, allocator))
            .then_some((size & SIZE_MASK, allocator))
    }
}

/// Refuses `what` (a free or a resize) of the block at `base`, whose header failed its check.
/// A debug allocator that freed it reports it, with its sites; otherwise it is reported here
/// (once) and counted.
#[cold]
#[inline(never)]
fn refuse(base: *mut u8, what: &str) {
    if let Some(debug) = crate::allocators::debug::remembering_free_of(base) {
        // It refuses the free whatever the size and alignment named.
        // SAFETY: a live debug allocator, which checks the pointer before any use.
        unsafe { dispatch::free(debug, base, HEADER_SIZE, MAX_NATURAL_ALIGN) };
        return;
    }
    if REFUSED.fetch_add(1, Relaxed) == 0 {
        eprintln!(
            "goo-memory: {what} of {:p}: not a live block of the legacy API (freed already, or not from goo_alloc): refused (reported once)",
            base.wrapping_add(HEADER_SIZE)
        );
    }
}

static REFUSED: AtomicUsize = AtomicUsize::new(0);

/// Frees and resizes the legacy API refused, over the process's life, because the block's
/// header failed its check (see the module's notes).
pub fn refused_count() -> usize {
    REFUSED.load(Relaxed)
}

/// What the call-free level of a legacy allocation did ([`try_alloc`]).
// Public for the C crate, with `try_alloc`, `finish_on_page` and `try_free`.
#[doc(hidden)]
#[derive(Debug)]
pub enum FastAlloc {
    /// The caller's block; null when the allocation failed (counted, the strategy applied).
    Done(*mut u8),
    /// A block to be listed ([`listed_start`]) before it is handed out:
    /// [`finish_on_page`] does it (not a call-free step).
    OnPage(OnPage),
    /// Nothing was done: [`alloc`] serves the request.
    Declined,
}

/// A new legacy block to be listed ([`listed_start`]), not yet listed nor given its header.
#[doc(hidden)]
#[derive(Debug)]
pub struct OnPage {
    base: *mut u8,
    size: usize,
    allocator: *mut GooAllocator,
}

/// The call-free level of [`alloc`]: a block of at most [`MAPPED_MAX`] bytes (header included)
/// from a current allocator with a call-free level, reaching `R`'s slow paths as the dispatch
/// does (`dispatch::alloc_current_then`). Everything else is [`FastAlloc::Declined`], done by
/// [`alloc`]; what this serves is what [`alloc`] would have, at the same alignment.
///
/// # Safety
/// As for `dispatch::alloc` with a null allocator.
#[doc(hidden)]
#[inline(always)]
pub unsafe fn try_alloc<R: SlowPath>(size: usize) -> FastAlloc {
    if size > MAPPED_MAX - HEADER_SIZE {
        return FastAlloc::Declined;
    }
    let total = size + HEADER_SIZE;
    // SAFETY: forwarded contract. `align_of` gives the natural alignment at this size.
    let Some((base, allocator)) = (unsafe { dispatch::alloc_current_then::<R>(total, MAX_NATURAL_ALIGN) })
    else {
        return FastAlloc::Declined;
    };
    if base.is_null() {
        return FastAlloc::Done(base);
    }
    if listed_start(base) {
        crate::policy::cold_path();
        return FastAlloc::OnPage(OnPage { base, size, allocator });
    }
    // SAFETY: a new block of `total` bytes from `allocator`, the caller's.
    FastAlloc::Done(unsafe { with_header(base, size, allocator) })
}

/// Lists a block [`try_alloc`] made to be listed and gives it its header; null (the block given
/// back) when the list cannot grow, as [`alloc`] does.
#[doc(hidden)]
pub fn finish_on_page(block: OnPage) -> *mut u8 {
    let OnPage { base, size, allocator } = block;
    if !list(base, allocator) {
        // SAFETY: the block just allocated from `allocator` at this size and alignment, unused.
        unsafe { dispatch::free(allocator, base, size + HEADER_SIZE, MAX_NATURAL_ALIGN) };
        return ptr::null_mut();
    }
    // SAFETY: as above.
    unsafe { with_header(base, size, allocator) }
}

/// The call-free level of [`free`]: true when the block is dealt with (freed, or refused by its
/// allocator's slow path, reported), false (nothing done) when [`free`] must do it: a listed
/// block ([`listed_start`]), a header that fails its check, a block over [`MAPPED_MAX`] bytes, an
/// allocator without a call-free level.
///
/// # Safety
/// As for [`free`].
#[doc(hidden)]
#[inline(always)]
pub unsafe fn try_free<R: SlowPath>(ptr: *mut u8) -> bool {
    if ptr.is_null() {
        return true;
    }
    let base = ptr.wrapping_sub(HEADER_SIZE);
    if listed_start(base) {
        return false;
    }
    // SAFETY: per the contract, a header precedes `ptr`; not a listed start, it lies in mapped
    // memory (see the module's notes).
    let Some((size, allocator)) = (unsafe { Header::read(base) }) else { return false };
    if size > MAPPED_MAX - HEADER_SIZE || allocator.is_null() {
        return false;
    }
    // SAFETY: the header's allocator is live (contract); the block is its block of `size + HEADER_SIZE` bytes at the
    // natural alignment (`align_of` at that size).
    unsafe { dispatch::free_to_then::<R>(allocator, base, size + HEADER_SIZE, MAX_NATURAL_ALIGN) }
}

/// Writes the header of `base`, a new block of `size` bytes (header excluded) from `allocator`;
/// the caller's pointer.
///
/// # Safety
/// `base` holds `size + HEADER_SIZE` bytes, aligned for `Header`, and is the caller's.
#[inline(always)]
unsafe fn with_header(base: *mut u8, size: usize, allocator: *mut GooAllocator) -> *mut u8 {
    // SAFETY: per the contract.
    unsafe {
        base.cast::<Header>().write(Header::new(base, size, allocator));
        base.add(HEADER_SIZE)
    }
}

/// Allocates `size` bytes from the current allocator; null on failure. `size` 0 returns a
/// unique block (as `malloc(0)` may) so that every non-null result can be freed.
pub fn alloc(size: usize) -> *mut u8 {
    let Some(total) = size.checked_add(HEADER_SIZE) else {
        // Let the front door count and report the impossible size.
        // SAFETY: the current allocator is valid (setters' contract).
        return unsafe {
            dispatch::alloc(ptr::null_mut(), usize::MAX, MAX_NATURAL_ALIGN, AllocOptions::DEFAULT)
        };
    };
    let a = current();
    // SAFETY: the current allocator is valid (setters' contract).
    let align = unsafe { align_of(total, a) };
    // SAFETY: as above.
    let base = unsafe { dispatch::alloc(a, total, align, AllocOptions::DEFAULT) };
    if base.is_null() {
        return base;
    }
    if !list(base, a) {
        // SAFETY: the block just allocated, unused.
        unsafe { dispatch::free(a, base, total, align) };
        return ptr::null_mut();
    }
    // SAFETY: `base` holds `total` bytes, aligned for `Header`.
    unsafe { with_header(base, size, a) }
}

/// Frees a block from [`alloc`] or [`realloc`]; null does nothing. A block whose header fails
/// its check (freed already, and overwritten since) is refused.
///
/// # Safety
/// `ptr` must be null or a block returned by this module (live, or freed: see the module's
/// notes), whose allocator is still live.
pub unsafe fn free(ptr: *mut u8) {
    if ptr.is_null() {
        return;
    }
    let base = ptr.wrapping_sub(HEADER_SIZE);
    if !claim(base) {
        refuse(base, "a legacy free");
        return;
    }
    // SAFETY: per the contract, a header precedes `ptr`, in mapped memory (`claim`); its
    // allocator is live, and the block's alignment is the one `align_of` gave it.
    unsafe {
        match Header::read(base) {
            Some((size, allocator)) => {
                let total = size + HEADER_SIZE;
                dispatch::free(allocator, base, total, align_of(total, allocator));
            }
            None => refuse(base, "a legacy free"),
        }
    }
}

/// `realloc(NULL, n)` allocates, `realloc(p, 0)` frees and returns null; otherwise resizes in
/// the allocator the block came from, returning null (block untouched) on failure.
///
/// # Safety
/// As for [`free`].
pub unsafe fn realloc(ptr: *mut u8, new_size: usize) -> *mut u8 {
    if ptr.is_null() {
        return alloc(new_size);
    }
    if new_size == 0 {
        // SAFETY: forwarded contract.
        unsafe { free(ptr) };
        return ptr::null_mut();
    }
    let base = ptr.wrapping_sub(HEADER_SIZE);
    if !claim(base) {
        refuse(base, "a legacy resize");
        return ptr::null_mut();
    }
    // SAFETY: per the contract, a header precedes `ptr`, in mapped memory (`claim`).
    let Some((size, allocator)) = (unsafe { Header::read(base) }) else {
        refuse(base, "a legacy resize");
        return ptr::null_mut();
    };
    // Claimed: `base` (if listed) left the list; it goes back if the block stays.
    let keep = || {
        let _ = list(base, allocator);
    };
    let total = size + HEADER_SIZE;
    let Some(new_total) = new_size.checked_add(HEADER_SIZE) else {
        keep();
        // Let the front door count and report the impossible size.
        // SAFETY: the block's allocator is live (contract).
        return unsafe { dispatch::alloc(allocator, usize::MAX, MAX_NATURAL_ALIGN, AllocOptions::DEFAULT) };
    };
    // SAFETY: the block's allocator is live (contract).
    let (align, wanted) = unsafe { (align_of(total, allocator), align_of(new_total, allocator)) };
    // Room in the list first for a block that will start on a page, so that a block made is
    // never left unlisted.
    if wanted == PAGE && page_aligned().try_reserve(1).is_err() {
        keep();
        return ptr::null_mut();
    }
    // SAFETY: the block's allocator is live (contract); `base` is its block of `total` bytes at
    // `align`.
    let new_base = unsafe {
        if wanted == align {
            // The dispatch's resize: the heap's call-free step for a small block.
            dispatch::realloc(allocator, base, total, new_total, align, AllocOptions::DEFAULT)
        } else {
            // The alignment changes (across `MAPPED_MAX`): a new block, the bytes, the old freed.
            let moved = dispatch::alloc(allocator, new_total, wanted, AllocOptions::DEFAULT);
            if !moved.is_null() {
                ptr::copy_nonoverlapping(base, moved, total.min(new_total));
                dispatch::free(allocator, base, total, align);
            }
            moved
        }
    };
    if new_base.is_null() {
        keep();
        return new_base;
    }
    // Room was made above for a page-aligned block; should another thread have taken it and
    // the table not grow (or a smaller block start on a page then), the block stays unlisted:
    // a later free of it is refused (a leak, never a fault).
    let _ = list(new_base, allocator);
    release_if_empty(&mut page_aligned());
    // SAFETY: `new_base` holds `new_total` bytes, aligned for `Header`.
    unsafe { with_header(new_base, new_size, allocator) }
}

/// The size a legacy block was allocated with (0 for one whose header fails its check).
///
/// # Safety
/// As for [`free`], and `ptr` non-null.
pub unsafe fn size_of(ptr: *const u8) -> usize {
    let base = ptr.wrapping_sub(HEADER_SIZE).cast_mut();
    if listed_start(base) && !page_aligned().contains_key(&base.addr()) {
        return 0;
    }
    // SAFETY: per the contract, a header precedes `ptr`, in mapped memory (listed, or not a
    // listed start).
    unsafe { Header::read(base) }.map_or(0, |(size, _)| size)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dispatch::Unguarded;

    /// The call-free level serves what [`alloc`] would, and [`free`] and it free each other's
    /// blocks: small blocks of the heap (never listed) and of the system allocator (listed
    /// where they start on a page); larger ones declined.
    #[test]
    fn call_free_level_matches_the_slow_path() {
        for kind in ["heap", "system"] {
            let a = if kind == "heap" {
                crate::allocators::heap::Heap::create(crate::AllocStrategy::Null).as_ptr()
            } else {
                crate::allocators::system::System::create(crate::AllocStrategy::Null).as_ptr()
            };
            let on_page = matches_the_slow_path(a);
            // The heap's segments stay mapped: none of its blocks is listed.
            assert!(kind != "heap" || on_page == 0, "{on_page} heap blocks listed");
        }
    }

    /// Allocates and frees legacy blocks of `a` (a live library allocator, destroyed here)
    /// through both levels, each freeing the other's blocks; the blocks listed.
    fn matches_the_slow_path(a: *mut GooAllocator) -> usize {
        // SAFETY: a live library allocator, until it is no longer the thread's.
        let previous = unsafe { crate::default::set_thread_allocator(a) };
        let mut blocks = Vec::new();
        let mut on_page = 0;
        for i in 0..if cfg!(miri) { 40 } else { 600 } {
            let size = 1 + i * 37 % 700;
            // SAFETY: the thread's allocator is live.
            let p = match unsafe { try_alloc::<Unguarded>(size) } {
                FastAlloc::Done(p) => p,
                FastAlloc::OnPage(block) => {
                    on_page += 1;
                    finish_on_page(block)
                }
                FastAlloc::Declined => alloc(size),
            };
            assert!(!p.is_null() && p.addr() % 16 == 0);
            // SAFETY: a live legacy block of `size` bytes.
            unsafe {
                p.write_bytes(i as u8, size);
                assert_eq!(size_of(p), size);
            }
            blocks.push((p, size));
        }
        // SAFETY: the thread's allocator is live.
        assert!(matches!(unsafe { try_alloc::<Unguarded>(MAPPED_MAX) }, FastAlloc::Declined));
        // SAFETY: a live library allocator.
        assert_eq!(unsafe { crate::policy::front::stats(a) }.allocation_count, blocks.len());
        for (i, &(p, size)) in blocks.iter().enumerate() {
            // SAFETY: live legacy blocks, each freed once; those listed by `free`.
            unsafe {
                assert_eq!(*p.add(size - 1), i as u8);
                if !(i % 2 == 0 && try_free::<Unguarded>(p)) {
                    free(p);
                }
            }
        }
        // SAFETY: as above.
        assert_eq!(unsafe { crate::policy::front::stats(a) }.allocation_count, 0);
        // SAFETY: the thread's previous allocator, live.
        unsafe { crate::default::set_thread_allocator(previous) };
        // SAFETY: a live library allocator with no live block, no longer the thread's.
        unsafe { crate::policy::backend::managed_destroy(a) };
        on_page
    }
}
