//! Where the heap's memory comes from: segments of 4 MiB, aligned to their size, mapped from the
//! OS; each is cut into 64 spans of 64 KiB, and each span given to one size class at a time.
//! The first span holds the segment's header: a class byte and a depot count per span. So from
//! any block the heap finds its class with two loads and no search: the segment is the block's
//! address rounded down to 4 MiB, the span its next 6 bits.
//!
//! A span whose blocks are all free in the depot can be given back ([`release_span`]): its class
//! byte goes to `NO_CLASS`, its pages to the OS (`MADV_DONTNEED`), and the span to a list of
//! free spans that [`take_span`] hands out before it maps a new segment. Segments themselves stay
//! mapped (address space, not memory).
//!
//! A process-wide map (one bit per 4 MiB of address space) says which segments are the heap's,
//! so a pointer the heap never handed out is recognised before anything is read through it.
//!
//! ```text
//! segment % SEGMENT == 0;   map bit of segment set   <=>  segment is mapped and its header set
//! header.class[0] == NO_CLASS                              (the header's own span)
//! header.class[s] == NO_CLASS  for s >= next of the newest segment, and for free spans
//! header.class[s] == c < CLASSES  from take_span(c) until release_span
//! header.carved[s] == the blocks of span s carved so far (from its start), <= BLOCKS_PER_SPAN[c];
//!     zeroed by take_span before the class byte is published: `class_of_block` accepts only
//!     the blocks below it, so a position never handed out is never taken back
//! header.in_depot[s] == the depot's blocks in span s  (kept by the depot, under the class's
//!     lock; meaningful while class[s] != NO_CLASS, zeroed by take_span)
//! span_bytes == SPAN * (spans whose class byte is a class)
//! ```

use core::ptr;
use core::sync::atomic::{AtomicU16, AtomicU8, AtomicUsize, Ordering::*};
use std::sync::Mutex;

pub(crate) use super::classes::SPAN;
use super::classes::{block_index, CLASSES};

/// Bytes per segment (and its alignment).
pub(crate) const SEGMENT: usize = 1 << 22;
/// Spans per segment; span 0 is the header.
const SPANS: usize = SEGMENT / SPAN;
/// The class byte of a span that holds no blocks.
pub(crate) const NO_CLASS: u8 = u8::MAX;

/// The start of every segment.
#[repr(C)]
struct Header {
    class: [AtomicU8; SPANS],
    in_depot: [AtomicU16; SPANS],
    carved: [AtomicU16; SPANS],
}

// A span's blocks fit the depot count (the smallest class has 4,096 per span).
const _: () = assert!(SPAN / 16 <= u16::MAX as usize);

/// The newest segment and its next span to hand out (`next == SPANS`: none left), and the
/// spans given back, in an array of the C library's heap (`free[..free_len]`, `free_cap` long).
struct Source {
    segment: *mut u8,
    next: usize,
    free: *mut *mut u8,
    free_len: usize,
    free_cap: usize,
}

// SAFETY: the pointers are only used under the mutex; segments live for the process, and the
// free array is the source's own.
unsafe impl Send for Source {}

static SOURCE: Mutex<Source> = Mutex::new(Source {
    segment: ptr::null_mut(),
    next: SPANS,
    free: ptr::null_mut(),
    free_len: 0,
    free_cap: 0,
});

fn source() -> std::sync::MutexGuard<'static, Source> {
    SOURCE.lock().unwrap_or_else(|e| e.into_inner())
}

/// Bytes of spans held by classes now.
static SPAN_BYTES: AtomicUsize = AtomicUsize::new(0);

/// Bytes of spans the heap's classes hold (handed out and not given back).
pub(crate) fn span_bytes() -> usize {
    SPAN_BYTES.load(Relaxed)
}

/// Spans given back and not taken again: `free_len`, readable without the source's lock.
static FREE_SPANS: AtomicUsize = AtomicUsize::new(0);

/// Whether a span given back waits to be taken (a hint: another thread may take it first).
pub(crate) fn has_free_span() -> bool {
    FREE_SPANS.load(Relaxed) > 0
}

/// A span for class `class`, none of it carved: a free one, else a fresh one (mapping a segment
/// when the newest is used up); null when the OS has no memory.
pub(crate) fn take_span(class: usize) -> *mut u8 {
    debug_assert!(class < CLASSES);
    let mut source = source();
    let span = if source.free_len > 0 {
        source.free_len -= 1;
        FREE_SPANS.store(source.free_len, Relaxed);
        // SAFETY: `free[..free_len]` are filed spans (the source's invariant).
        unsafe { source.free.add(source.free_len).read() }
    } else {
        if source.next == SPANS {
            let segment = map_segment();
            if segment.is_null() {
                return ptr::null_mut();
            }
            source.segment = segment;
            source.next = 1;
        }
        let s = source.next;
        source.next += 1;
        // SAFETY: span `s < SPANS` of the live newest segment.
        unsafe { source.segment.add(s * SPAN) }
    };
    let (segment, s) = locate(span);
    // SAFETY: `span` is a span of a live segment, free or never handed out: nobody else writes
    // its counts; the class byte is published last (Release, read with Acquire by
    // `class_of_block`, which so sees no carved block of the span's last class).
    unsafe {
        let header = header(segment);
        header.in_depot[s].store(0, Relaxed);
        header.carved[s].store(0, Relaxed);
        header.class[s].store(class as u8, Release);
    }
    SPAN_BYTES.fetch_add(SPAN, Relaxed);
    span
}

/// Gives `span` back: no class, its pages to the OS with `decommit`, filed for [`take_span`].
/// The caller holds its class's depot lock and has taken every one of its blocks out of the
/// depot; no block of it is live or cached. A free naming one of its blocks is refused from now
/// on (no class; and once it serves again, a position is taken only below the new count of
/// carved blocks, so a stale marker left in kept pages is never read as one).
pub(crate) fn release_span(span: *mut u8, decommit: bool) {
    let (segment, s) = locate(span);
    // The span as the segment's pointer reaches it (not a block's, which may carry a caller's
    // tag), for whoever takes it next.
    // SAFETY: span `s < SPANS` of a live segment (contract).
    let span = unsafe { segment.add(s * SPAN) };
    // SAFETY: as above.
    unsafe { header(segment).class[s].store(NO_CLASS, Release) };
    SPAN_BYTES.fetch_sub(SPAN, Relaxed);
    if decommit {
        os::decommit(span, SPAN);
    }
    let mut source = source();
    if source.free_len == source.free_cap {
        let cap = (2 * source.free_cap).max(64);
        // SAFETY: the array is null or a live C library block of the source.
        let grown = unsafe { libc::realloc(source.free.cast(), cap * size_of::<*mut u8>()) };
        if grown.is_null() {
            // The span stays out of use (address space lost, not memory: its pages went back).
            return;
        }
        source.free = grown.cast();
        source.free_cap = cap;
    }
    // SAFETY: `free_len < free_cap`.
    unsafe { source.free.add(source.free_len).write(span) };
    source.free_len += 1;
    FREE_SPANS.store(source.free_len, Relaxed);
}

/// The segment and span index of `p`, an address inside one of the heap's segments; the segment
/// as a pointer that may reach its header ([`segment_of`]).
#[inline(always)]
fn locate(p: *mut u8) -> (*mut u8, usize) {
    let segment = segment_of(p).unwrap_or_else(|| p.map_addr(|a| a & !(SEGMENT - 1)));
    (segment, (p.addr() / SPAN) % SPANS)
}

/// The heap's segment holding `p`, or `None` (not the heap's memory). The pointer reaches the
/// segment's header: under Miri the segment's own pointer from the map (a block's pointer may
/// carry a caller's tag, a `Box`'s, that other writes to the header disable), elsewhere `p`
/// rounded down.
#[inline(always)]
fn segment_of(p: *mut u8) -> Option<*mut u8> {
    map::find(p.map_addr(|a| a & !(SEGMENT - 1)))
}

/// Records that the first `blocks` blocks of the span starting at `span` (taken by the calling
/// thread's cache) are carved: frees of them are taken from now on.
pub(crate) fn set_carved(span: *mut u8, blocks: usize) {
    debug_assert!(blocks <= u16::MAX as usize);
    let (segment, s) = locate(span);
    // SAFETY: a span of a live segment (the caller carves it).
    unsafe { header(segment).carved[s].store(blocks as u16, Release) };
}

/// The blocks carved so far from the span holding `p`, in a heap segment (for `check`).
pub(crate) fn carved(p: *mut u8) -> usize {
    match segment_of(p) {
        // SAFETY: a live segment of the heap.
        Some(segment) => unsafe { header(segment) }.carved[(p.addr() / SPAN) % SPANS].load(Acquire) as usize,
        None => 0,
    }
}

/// The class of the span holding `p`, if it is a span of the heap's holding blocks (for
/// `check`).
pub(crate) fn class_of_span(p: *mut u8) -> Option<usize> {
    let segment = segment_of(p)?;
    // SAFETY: a live segment of the heap.
    let class = unsafe { header(segment) }.class[(p.addr() / SPAN) % SPANS].load(Acquire) as usize;
    (class < CLASSES).then_some(class)
}

/// The start of the span holding `block`.
#[inline(always)]
pub(crate) fn span_of(block: *mut u8) -> *mut u8 {
    block.map_addr(|a| a & !(SPAN - 1))
}

/// The depot count of the span holding `block`.
///
/// # Safety
/// `block` is inside a span of the heap's segments.
pub(crate) unsafe fn in_depot<'a>(block: *mut u8) -> &'a AtomicU16 {
    let (segment, s) = locate(block);
    // SAFETY: a live segment (contract).
    unsafe { &header(segment).in_depot[s] }
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
    let segment = segment_of(ptr)?;
    let s = (ptr.addr() / SPAN) % SPANS;
    // SAFETY: the map says `segment` is a live segment of the heap. Acquire: the span's markers
    // were written before its class byte.
    let class = unsafe { header(segment) }.class[s].load(Acquire) as usize;
    if class >= CLASSES {
        return None;
    }
    // SAFETY: as above.
    let carved = unsafe { header(segment) }.carved[s].load(Relaxed);
    (block_index(class, ptr.addr() % SPAN) < u64::from(carved)).then_some(class)
}

/// Maps and registers a new segment (its header initialised), or null.
fn map_segment() -> *mut u8 {
    let segment = os::map_aligned(SEGMENT);
    if segment.is_null() {
        return segment;
    }
    // SAFETY: a fresh, writable mapping of SEGMENT bytes, SEGMENT-aligned: the header fits at
    // its start.
    unsafe {
        segment.cast::<Header>().write(Header {
            class: [const { AtomicU8::new(NO_CLASS) }; SPANS],
            in_depot: [const { AtomicU16::new(0) }; SPANS],
            carved: [const { AtomicU16::new(0) }; SPANS],
        })
    };
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

    /// `segment` (a multiple of `SEGMENT`) when the heap mapped it.
    #[inline(always)]
    pub(super) fn find(segment: *mut u8) -> Option<*mut u8> {
        let s = segment.addr() / SEGMENT;
        MAP.get(s / 64).is_some_and(|word| word.load(Relaxed) & (1 << (s % 64)) != 0).then_some(segment)
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

    /// The registered segment at `segment`'s address (its own pointer), if any.
    #[inline(always)]
    pub(super) fn find(segment: *mut u8) -> Option<*mut u8> {
        let used = USED.load(Acquire);
        SEGMENTS.iter().take(used).map(|s| s.load(Relaxed)).find(|s| s.addr() == segment.addr())
    }
}

/// Registers a segment in the map. A segment the map cannot hold (an address beyond it) is
/// still used; frees of its blocks are then refused, so they leak instead of corrupting.
fn register(segment: *mut u8) {
    let _ = map::register(segment);
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

    /// Gives the pages of `len` bytes at `p` (page-aligned, mapped) back to the OS; they read as
    /// zeros when touched again.
    #[cfg(all(unix, not(miri)))]
    pub(super) fn decommit(p: *mut u8, len: usize) {
        // SAFETY: a range of a mapping of ours that holds nothing anyone reads again (contract);
        // failure leaves the pages as they were, which is harmless.
        unsafe { libc::madvise(p.cast(), len, libc::MADV_DONTNEED) };
    }

    /// Under Miri, and where pages cannot be given back: nothing.
    #[cfg(any(not(unix), miri))]
    pub(super) fn decommit(_p: *mut u8, _len: usize) {}

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
