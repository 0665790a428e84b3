//! Where the heap's memory comes from: segments of 4 MiB, aligned to their size, mapped from the
//! OS and kept; each is cut into 64 spans of 64 KiB, and each span given to one size class.
//! The first span holds the segment's header: one class byte per span. So from any block the
//! heap can find its class with two loads and no search: the segment is the block's address
//! rounded down to 4 MiB, the span its next 6 bits.
//!
//! A process-wide map (one bit per 4 MiB of address space) says which segments are the heap's,
//! so a pointer the heap never handed out is recognised before anything is read through it.
//!
//! ```text
//! segment % SEGMENT == 0;   map bit of segment set   <=>  segment is mapped and its header set
//! header.class[0] == NO_CLASS                              (the header's own span)
//! header.class[s] == NO_CLASS  for s >= next of the newest segment  (spans not handed out yet)
//! header.class[s] == c < CLASSES  from when span s was handed out for class c, for good
//! ```

use core::ptr;
use core::sync::atomic::{AtomicU8, AtomicUsize, Ordering::*};
use std::sync::Mutex;

use super::classes::{starts_block, CLASSES};

/// Bytes per segment (and its alignment).
pub(crate) const SEGMENT: usize = 1 << 22;
/// Bytes per span (and its alignment).
pub(crate) const SPAN: usize = 1 << 16;
/// Spans per segment; span 0 is the header.
const SPANS: usize = SEGMENT / SPAN;
/// The class byte of a span that holds no blocks.
pub(crate) const NO_CLASS: u8 = u8::MAX;

/// The start of every segment.
#[repr(C)]
struct Header {
    class: [AtomicU8; SPANS],
}

/// The newest segment and its next span to hand out (`next == SPANS`: none left).
struct Source {
    segment: *mut u8,
    next: usize,
}

// SAFETY: the segment pointer is only used under the mutex, and segments live for the process.
unsafe impl Send for Source {}

static SOURCE: Mutex<Source> = Mutex::new(Source { segment: ptr::null_mut(), next: SPANS });

/// Bytes of spans handed out to classes, for good.
static SPAN_BYTES: AtomicUsize = AtomicUsize::new(0);

/// Bytes of spans the heap handed to its classes since the process started.
pub(crate) fn span_bytes() -> usize {
    SPAN_BYTES.load(Relaxed)
}

/// A fresh span for class `class` (its class byte set), or null when the OS has no memory.
pub(crate) fn take_span(class: usize) -> *mut u8 {
    debug_assert!(class < CLASSES);
    let mut source = SOURCE.lock().unwrap_or_else(|e| e.into_inner());
    if source.next == SPANS {
        let segment = map_segment();
        if segment.is_null() {
            return ptr::null_mut();
        }
        *source = Source { segment, next: 1 };
    }
    let span = source.next;
    source.next += 1;
    // SAFETY: `segment` is a live segment: its header is at its start, and span `span` is
    // within it (`span < SPANS`).
    unsafe {
        header(source.segment).class[span].store(class as u8, Release);
        SPAN_BYTES.fetch_add(SPAN, Relaxed);
        source.segment.add(span * SPAN)
    }
}

/// The header of the segment that starts at `segment`.
///
/// # Safety
/// `segment` is a live segment of the heap.
unsafe fn header<'a>(segment: *mut u8) -> &'a Header {
    // SAFETY: every segment starts with its header, initialised before the segment was
    // registered, and segments are never unmapped.
    unsafe { &*segment.cast::<Header>() }
}

/// The class of the block at `ptr` when `ptr` is the start of a block in a span of the heap:
/// its segment is the heap's, its span has a class, and its offset in the span is a multiple of
/// the class size. Else `None` (a pointer the heap never handed out). Reads nothing through a
/// pointer outside the heap's segments.
#[inline(always)]
pub(crate) fn class_of_block(ptr: *mut u8) -> Option<usize> {
    let segment = ptr.map_addr(|a| a & !(SEGMENT - 1));
    if !is_segment(segment.addr()) {
        return None;
    }
    // SAFETY: the map says `segment` is a live segment of the heap.
    let class = unsafe { header(segment) }.class[(ptr.addr() / SPAN) % SPANS].load(Relaxed) as usize;
    (class < CLASSES && starts_block(class, ptr.addr() % SPAN)).then_some(class)
}

/// Maps and registers a new segment (its header initialised), or null.
fn map_segment() -> *mut u8 {
    let segment = os::map_aligned(SEGMENT);
    if segment.is_null() {
        return segment;
    }
    // SAFETY: a fresh, writable mapping of SEGMENT bytes, SEGMENT-aligned: the header fits at
    // its start.
    unsafe { segment.cast::<Header>().write(Header { class: [const { AtomicU8::new(NO_CLASS) }; SPANS] }) };
    register(segment);
    segment
}

/// The segment map, where the address space fits it (47-bit user addresses: 2^25 segments,
/// one bit each, 4 MiB of zero pages of which only the words in use are ever touched).
#[cfg(all(target_pointer_width = "64", not(miri)))]
mod map {
    use core::sync::atomic::{AtomicU64, Ordering::*};

    use super::SEGMENT;

    const WORDS: usize = (1 << 47) / SEGMENT / 64;
    static MAP: [AtomicU64; WORDS] = [const { AtomicU64::new(0) }; WORDS];

    pub(super) fn register(segment: *mut u8) -> bool {
        let s = segment.addr() / SEGMENT;
        match MAP.get(s / 64) {
            Some(word) => {
                word.fetch_or(1 << (s % 64), Release);
                true
            }
            None => false,
        }
    }

    #[inline(always)]
    pub(super) fn contains(segment: usize) -> bool {
        let s = segment / SEGMENT;
        MAP.get(s / 64).is_some_and(|word| word.load(Relaxed) & (1 << (s % 64)) != 0)
    }
}

/// Elsewhere (and under Miri, which would have to build the 4 MiB map): a short list, searched
/// up to the number of segments registered (one or two, in a test). It keeps the segments'
/// pointers, so Miri sees them reachable rather than leaked.
#[cfg(not(all(target_pointer_width = "64", not(miri))))]
mod map {
    use core::ptr;
    use core::sync::atomic::{AtomicPtr, AtomicUsize, Ordering::*};

    static SEGMENTS: [AtomicPtr<u8>; 64] = [const { AtomicPtr::new(ptr::null_mut()) }; 64];
    /// Entries of `SEGMENTS` in use (registration is under the span source's lock).
    static USED: AtomicUsize = AtomicUsize::new(0);

    pub(super) fn register(segment: *mut u8) -> bool {
        let used = USED.load(Relaxed);
        match SEGMENTS.get(used) {
            Some(entry) => {
                entry.store(segment, Relaxed);
                USED.store(used + 1, Release);
                true
            }
            None => false,
        }
    }

    #[inline(always)]
    pub(super) fn contains(segment: usize) -> bool {
        let used = USED.load(Acquire);
        SEGMENTS.iter().take(used).any(|s| s.load(Relaxed).addr() == segment)
    }
}

/// Registers a segment in the map. A segment the map cannot hold (an address beyond it) is
/// still used; frees of its blocks are then refused, so they leak instead of corrupting.
fn register(segment: *mut u8) {
    let _ = map::register(segment);
}

/// Whether `segment` (a multiple of [`SEGMENT`]) is one of the heap's.
#[inline(always)]
pub(crate) fn is_segment(segment: usize) -> bool {
    map::contains(segment)
}

/// Aligned mappings from the OS.
mod os {
    use core::ptr;

    /// `size` bytes aligned to `size` (a power of two), never given back; or null.
    #[cfg(all(unix, not(miri)))]
    pub(super) fn map_aligned(size: usize) -> *mut u8 {
        // Twice the size, then the unaligned head and tail go back.
        // SAFETY: an anonymous private mapping; no existing memory is touched.
        let raw = unsafe {
            libc::mmap(
                ptr::null_mut(),
                2 * size,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if raw == libc::MAP_FAILED {
            return ptr::null_mut();
        }
        let raw = raw.cast::<u8>();
        let head = raw.addr().next_multiple_of(size) - raw.addr();
        // SAFETY: both ranges lie inside the mapping just made and outside the kept part.
        unsafe {
            if head > 0 {
                libc::munmap(raw.cast(), head);
            }
            libc::munmap(raw.add(head + size).cast(), size - head);
            raw.add(head)
        }
    }

    /// Under Miri (no `mmap`): the C library's aligned allocation.
    #[cfg(any(not(unix), miri))]
    pub(super) fn map_aligned(size: usize) -> *mut u8 {
        let mut p = ptr::null_mut();
        // SAFETY: `posix_memalign` with a power-of-two alignment, a multiple of the pointer size.
        if unsafe { libc::posix_memalign(&mut p, size, size) } != 0 {
            return ptr::null_mut();
        }
        p.cast()
    }
}
