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

use core::ptr;
use core::sync::atomic::{AtomicUsize, Ordering::Relaxed};

use crate::default::current;
use crate::dispatch;
use crate::policy::front;
use crate::raw::{AllocOptions, GooAllocator, MAX_NATURAL_ALIGN};

/// Bytes in front of every legacy block; keeps the block aligned like `malloc`'s.
pub const HEADER_SIZE: usize = MAX_NATURAL_ALIGN;

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
    let base = unsafe { dispatch::alloc(a, total, MAX_NATURAL_ALIGN, AllocOptions::DEFAULT) };
    if base.is_null() {
        return base;
    }
    // SAFETY: `base` holds `total` bytes, aligned for `Header`.
    unsafe {
        base.cast::<Header>().write(Header::new(base, size, a));
        base.add(HEADER_SIZE)
    }
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
    // SAFETY: per the contract, a header precedes `ptr`.
    unsafe {
        let base = ptr.sub(HEADER_SIZE);
        match Header::read(base) {
            Some((size, allocator)) => dispatch::free(allocator, base, size + HEADER_SIZE, MAX_NATURAL_ALIGN),
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
    // SAFETY: per the contract, a header precedes `ptr`.
    unsafe {
        let base = ptr.sub(HEADER_SIZE);
        let Some((size, allocator)) = Header::read(base) else {
            refuse(base, "a legacy resize");
            return ptr::null_mut();
        };
        let new_total = new_size.saturating_add(HEADER_SIZE);
        let new_base = front::realloc(
            allocator,
            base,
            size + HEADER_SIZE,
            new_total,
            MAX_NATURAL_ALIGN,
            AllocOptions::DEFAULT,
        );
        if new_base.is_null() {
            return new_base;
        }
        new_base.cast::<Header>().write(Header::new(new_base, new_size, allocator));
        new_base.add(HEADER_SIZE)
    }
}

/// The size a legacy block was allocated with (0 for one whose header fails its check).
///
/// # Safety
/// As for [`free`], and `ptr` non-null.
pub unsafe fn size_of(ptr: *const u8) -> usize {
    // SAFETY: per the contract, a header precedes `ptr`.
    unsafe { Header::read(ptr.sub(HEADER_SIZE).cast_mut()) }.map_or(0, |(size, _)| size)
}
