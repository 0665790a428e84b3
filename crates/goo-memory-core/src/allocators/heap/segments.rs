//! Where the heap's memory comes from: segments of 4 MiB, aligned to their size, mapped from the
//! OS; each is cut into 64 spans of 64 KiB, and each span given to one size class at a time.
//! The first [`META_SPANS`] spans hold the segment's metadata: a header (a class byte and two
//! counts per span), the depot's bitmaps and list links, and a tag map, a byte per 16-byte granule of the segment that says whether
//! a block starts there and whether it is live or free. So from any block the heap finds its
//! state with one load and no search: the segment is the block's address rounded down to
//! 4 MiB, the tag its offset divided by 16; and a free checks a block without reading the
//! block (which a program that frees long-unused memory would wait on).
//!
//! A span whose blocks are all free in the depot can be given back ([`release_span`]): its class
//! byte goes to `NO_CLASS`, its tags to [`NO_BLOCK`], its pages to the OS (`MADV_DONTNEED`), and
//! the span to a list of free spans that [`take_span`] hands out before it maps a new segment.
//! Segments themselves stay mapped (address space, not memory).
//!
//! A process-wide map (one bit per 4 MiB of address space) says which segments are the heap's,
//! so a pointer the heap never handed out is recognised before anything is read through it.
//!
//! ```text
//! segment % SEGMENT == 0;   map bit of segment set   <=>  segment is mapped and its header set
//! spans 0 .. META_SPANS hold the tags and the header; never a class, their own tags NO_BLOCK
//! header.class[s] == NO_CLASS  for s >= next of the newest segment, and for free spans
//! header.class[s] == c < CLASSES  from take_span(c) until release_span
//! tag(p) == live_tag(c)   <=>  a live block of class c starts at p       (p in a usable span)
//! tag(p) == aligned_tag(c) <=> a live block of class c starts at p, from a request aligned
//!                              above 16 that the block's size alone would not give class c
//! tag(p) == free_tag(c)   <=>  a free block of class c starts at p (in a cache or the depot)
//! tag(p) == NO_BLOCK      otherwise: never carved, past a span's last block, not 16-aligned
//!     to a block start, or in a free span
//! header.carved[s] == the blocks of span s carved so far (from its start), <= BLOCKS_PER_SPAN[c];
//!     zeroed by take_span
//! header.in_depot[s] == the depot's blocks in span s  (kept by the depot, under the class's
//!     lock; meaningful while class[s] != NO_CLASS, zeroed by take_span)
//! depot bit of granule g of span s set  <=>  the block at s + 16g is in the depot
//!     (all clear for a free span; kept by the depot, under the class's lock)
//! span_bytes == SPAN * (spans whose class byte is a class)
//! ```

use core::ptr;
use core::sync::atomic::{AtomicPtr, AtomicU16, AtomicU64, AtomicU8, AtomicUsize, Ordering::*};
use std::sync::Mutex;

pub(crate) use super::classes::SPAN;
use super::classes::{BLOCKS_PER_SPAN, CLASSES, SIZES};

/// Bytes per segment (and its alignment).
pub(crate) const SEGMENT: usize = 1 << 22;
/// Spans per segment.
const SPANS: usize = SEGMENT / SPAN;
/// Bytes a tag describes (every block starts at a multiple of it).
const GRANULE: usize = 16;
/// Spans at a segment's start that hold its tag map (a byte per granule), then one for its
/// header. The tags of these spans' granules are never written: `NO_BLOCK`, so a free of a
/// pointer into them is refused with no range check.
pub(crate) const META_SPANS: usize = (SEGMENT / GRANULE).div_ceil(SPAN) + 1;
/// Where a segment's header starts: the last metadata span.
const HEADER_OFFSET: usize = (META_SPANS - 1) * SPAN;
/// The tag of a granule where no block of the heap starts.
pub(crate) const NO_BLOCK: u8 = 0;
/// The flag of a free block's tag.
const FREE_FLAG: u8 = 0x80;

/// The tag of a live block of `class`.
#[inline(always)]
pub(crate) const fn live_tag(class: usize) -> u8 {
    class as u8 + 1
}

/// The tag of a free block of `class`.
#[inline(always)]
pub(crate) const fn free_tag(class: usize) -> u8 {
    FREE_FLAG | live_tag(class)
}

/// The tags of live blocks from aligned requests start above the free ones'.
const ALIGNED_BASE: u8 = FREE_FLAG | CLASSES as u8;

/// The tag of a live block of `class` (`1 <= class`: an alignment above 16 never gives the
/// first class) handed out for an aligned request whose size alone names another class: its
/// free may name that size without the alignment (`heap::class_named`).
#[inline(always)]
pub(crate) const fn aligned_tag(class: usize) -> u8 {
    ALIGNED_BASE + class as u8
}

/// The class a live or free block's tag names (`tag != NO_BLOCK`).
#[inline(always)]
pub(crate) const fn class_of_tag(tag: u8) -> usize {
    if tag > ALIGNED_BASE {
        (tag - ALIGNED_BASE) as usize
    } else {
        (tag & !FREE_FLAG) as usize - 1
    }
}

/// Whether a tag is a free block's.
#[inline(always)]
pub(crate) const fn is_free_tag(tag: u8) -> bool {
    tag & FREE_FLAG != 0 && tag <= ALIGNED_BASE
}

const _: () = assert!(
    CLASSES < FREE_FLAG as usize
        && aligned_tag(CLASSES - 1) == u8::MAX
        && META_SPANS == 5
        && size_of::<Header>() <= SPAN
);
/// The class byte of a span that holds no blocks.
pub(crate) const NO_CLASS: u8 = u8::MAX;

/// A segment's header, in its last metadata span.
#[repr(C)]
struct Header {
    class: [AtomicU8; SPANS],
    in_depot: [AtomicU16; SPANS],
    carved: [AtomicU16; SPANS],
}

/// Words of a span's depot bitmap: a bit per granule.
pub(crate) const DEPOT_WORDS: usize = SPAN / GRANULE / 64;

/// The depot's per-span state (`heap/depot.rs`), after the header's page in the same span:
/// which of a span's blocks are in the depot, and the links of the class's list of spans with
/// blocks there. Never written when a segment is mapped (zero pages read as all clear and
/// null), so a segment's pages for it become resident only where the depot uses them.
#[repr(C)]
struct DepotMeta {
    bits: [[AtomicU64; DEPOT_WORDS]; SPANS],
    prev: [AtomicPtr<u8>; SPANS],
    next: [AtomicPtr<u8>; SPANS],
}

/// Where a segment's [`DepotMeta`] starts.
const DEPOT_OFFSET: usize = HEADER_OFFSET + 4096;

const _: () = assert!(size_of::<Header>() <= 4096 && 4096 + size_of::<DepotMeta>() <= SPAN);

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

/// The segments' lock, held across a fork (`policy::fork`).
static FORK_HELD: crate::policy::fork::Held<Source> = crate::policy::fork::Held::new();

/// Takes the segments' lock for a fork (after the depot's: a class's lock is held while spans
/// go back here).
pub(crate) fn lock_for_fork() {
    FORK_HELD.hold(&SOURCE);
}

/// Releases what [`lock_for_fork`] took.
pub(crate) fn unlock_after_fork() {
    FORK_HELD.release();
}

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
            source.next = META_SPANS;
        }
        let s = source.next;
        source.next += 1;
        // SAFETY: span `s < SPANS` of the live newest segment.
        unsafe { source.segment.add(s * SPAN) }
    };
    let (segment, s) = locate(span);
    // SAFETY: `span` is a span of a live segment, free or never handed out: nobody else writes
    // its counts; the class byte is published last (Release, read with Acquire by
    // whoever reads the span's class).
    unsafe {
        let header = header(segment);
        header.in_depot[s].store(0, Relaxed);
        header.carved[s].store(0, Relaxed);
        header.class[s].store(class as u8, Release);
    }
    SPAN_BYTES.fetch_add(SPAN, Relaxed);
    span
}

/// Gives `span` back: no class, no block tags, its pages to the OS (the tags' page too), filed
/// for [`take_span`]. The caller holds its class's depot lock and has taken
/// every one of its blocks out of the depot; no block of it is live or cached. A free naming one
/// of its blocks is refused from now on (its tag is `NO_BLOCK` until the span serves again and
/// hands that block out).
pub(crate) fn release_span(span: *mut u8) {
    let (segment, s) = locate(span);
    // The span as the segment's pointer reaches it (not a block's, which may carry a caller's
    // tag), for whoever takes it next.
    // SAFETY: span `s < SPANS` of a live segment (contract).
    let span = unsafe { segment.add(s * SPAN) };
    // SAFETY: as above.
    let class = unsafe { header(segment).class[s].swap(NO_CLASS, AcqRel) } as usize;
    debug_assert!(class < CLASSES);
    let size = SIZES[class];
    for i in 0..BLOCKS_PER_SPAN[class] {
        // SAFETY: block starts of a usable span of a live segment.
        unsafe { tag(segment, span.addr() % SEGMENT + i * size) }.store(NO_BLOCK, Relaxed);
    }
    SPAN_BYTES.fetch_sub(SPAN, Relaxed);
    os::decommit(span, SPAN);
    // SAFETY: the span's tags are a page of the tag map (`SPAN / GRANULE` bytes at a multiple of
    // it), all `NO_BLOCK` now: zero pages read the same.
    os::decommit(unsafe { segment.add(s * (SPAN / GRANULE)) }, SPAN / GRANULE);
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
/// thread's cache) are carved (for `check`: the cache's cursor is past them).
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
    // SAFETY: a live segment (contract).
    unsafe { &header(segment_of_block(block)).in_depot[(block.addr() / SPAN) % SPANS] }
}

/// The start of the span holding `block` (inside a usable span of the heap's segments), as a
/// pointer that reaches every block of the span: outside Miri the block's address rounded
/// down, under Miri the segment's own pointer from the map (see [`segment_of`]).
///
/// # Safety
/// `block` is inside one of the heap's segments.
#[inline(always)]
pub(crate) unsafe fn span_start(block: *mut u8) -> *mut u8 {
    #[cfg(not(miri))]
    return span_of(block);
    #[cfg(miri)]
    {
        let (segment, s) = locate(block);
        // SAFETY: span `s < SPANS` of a live segment.
        unsafe { segment.add(s * SPAN) }
    }
}

/// The depot bitmap of the span starting at `span` (a bit per granule: the blocks starting
/// there that are in the depot).
///
/// # Safety
/// `span` starts a span of one of the heap's segments, as [`span_start`] gives it.
#[inline(always)]
pub(crate) unsafe fn depot_bits<'a>(span: *mut u8) -> &'a [AtomicU64; DEPOT_WORDS] {
    // SAFETY: a live segment (contract), whose metadata span holds the depot's state.
    unsafe { &depot_meta(segment_of_block(span)).bits[(span.addr() / SPAN) % SPANS] }
}

/// The links (previous, next) of the span starting at `span` in its class's depot list.
///
/// # Safety
/// As for [`depot_bits`].
#[inline(always)]
pub(crate) unsafe fn depot_links<'a>(span: *mut u8) -> (&'a AtomicPtr<u8>, &'a AtomicPtr<u8>) {
    // SAFETY: as above.
    let meta = unsafe { depot_meta(segment_of_block(span)) };
    let s = (span.addr() / SPAN) % SPANS;
    (&meta.prev[s], &meta.next[s])
}

/// The depot's state of the segment that starts at `segment`.
///
/// # Safety
/// `segment` is a live segment of the heap.
#[inline(always)]
unsafe fn depot_meta<'a>(segment: *mut u8) -> &'a DepotMeta {
    // SAFETY: zero (all clear, null) since the segment was mapped, and only the depot writes
    // it; segments are never unmapped.
    unsafe { &*segment.add(DEPOT_OFFSET).cast::<DepotMeta>() }
}

/// The segment holding `block`, as a pointer that may reach its metadata: outside Miri the
/// block's own address rounded down (one `and`, no lookup); under Miri the map's pointer (see
/// [`segment_of`]).
///
/// # Safety
/// `block` is inside one of the heap's segments.
#[inline(always)]
unsafe fn segment_of_block(block: *mut u8) -> *mut u8 {
    #[cfg(not(miri))]
    return block.map_addr(|a| a & !(SEGMENT - 1));
    #[cfg(miri)]
    return locate(block).0;
}

/// The header of the segment that starts at `segment`.
///
/// # Safety
/// `segment` is a live segment of the heap.
unsafe fn header<'a>(segment: *mut u8) -> &'a Header {
    // SAFETY: every segment holds its header, initialised before the segment was registered,
    // and segments are never unmapped.
    unsafe { &*segment.add(HEADER_OFFSET).cast::<Header>() }
}

/// The tag of the granule at `offset` bytes into `segment`.
///
/// # Safety
/// `segment` is a live segment of the heap (a pointer that may reach its tag map);
/// `offset < SEGMENT`.
#[inline(always)]
unsafe fn tag<'a>(segment: *mut u8, offset: usize) -> &'a AtomicU8 {
    // SAFETY: the tag map spans the segment's first `SEGMENT / GRANULE` bytes, initialised to
    // `NO_BLOCK` when the segment was mapped (contract).
    unsafe { &*segment.add(offset / GRANULE).cast::<AtomicU8>() }
}

/// The tag of the block position at `ptr` when `ptr` is 16-aligned inside one of the heap's
/// segments (`NO_BLOCK` in its metadata spans); else `None` (a pointer the heap never handed
/// out). Reads nothing through a pointer outside the heap's segments.
#[inline(always)]
pub(crate) fn tag_of<'a>(ptr: *mut u8) -> Option<&'a AtomicU8> {
    // The alignment first: the map's test is then one bit test, its last check.
    let offset = ptr.addr() % SEGMENT;
    if !offset.is_multiple_of(GRANULE) {
        return None;
    }
    let segment = segment_of(ptr)?;
    // SAFETY: a live segment of the heap; `offset < SEGMENT`.
    Some(unsafe { tag(segment, offset) })
}

/// Whether `p` lies in one of the heap's segments (metadata included).
pub(crate) fn in_segment(p: *mut u8) -> bool {
    segment_of(p).is_some()
}

/// The tag of `block`, a block of a heap span (live, cached, in the depot or being carved).
///
/// # Safety
/// `block` is inside a usable span of one of the heap's segments.
#[inline(always)]
pub(crate) unsafe fn block_tag<'a>(block: *mut u8) -> &'a AtomicU8 {
    // SAFETY: a live segment (contract).
    unsafe { tag(segment_of_block(block), block.addr() % SEGMENT) }
}

/// The class of the block at `ptr` when a live or free block of the heap starts there; else
/// `None` (a pointer the heap never handed out, or one of a span given back).
#[cfg(test)]
pub(crate) fn class_of_block(ptr: *mut u8) -> Option<usize> {
    let tag = tag_of(ptr)?.load(Relaxed);
    (tag != NO_BLOCK).then(|| class_of_tag(tag))
}

/// The class of the live block at `ptr` when an aligned request got it ([`aligned_tag`]).
#[inline(always)]
pub(crate) fn aligned_class_of_block(ptr: *mut u8) -> Option<usize> {
    let tag = tag_of(ptr)?.load(Relaxed);
    (tag > ALIGNED_BASE).then(|| class_of_tag(tag))
}

/// Maps and registers a new segment (its header initialised), or null.
fn map_segment() -> *mut u8 {
    // From the first segment on, a fork finds the heap's locks free (`policy::fork`).
    crate::policy::fork::hold_across_fork(&super::FORK_HOOKS);
    let segment = os::map_aligned(SEGMENT);
    if segment.is_null() {
        return segment;
    }
    // Under Miri the memory comes from `posix_memalign`, uninitialised: the tags start as
    // `NO_BLOCK` (zero), as a fresh mapping's do.
    #[cfg(miri)]
    // SAFETY: the segment's first bytes, and its depot state, writable.
    unsafe {
        segment.write_bytes(NO_BLOCK, SEGMENT / GRANULE);
        segment.add(DEPOT_OFFSET).write_bytes(0, size_of::<DepotMeta>());
    };
    // SAFETY: a fresh, writable mapping of SEGMENT bytes, SEGMENT-aligned: the header fits in
    // its last metadata span.
    unsafe {
        segment.add(HEADER_OFFSET).cast::<Header>().write(Header {
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

    /// Gives the pages of `len` bytes at `p` (mapped, holding nothing anyone reads again) back
    /// to the OS; they read as zeros when touched again. Only whole pages of the OS's size: a
    /// range that does not start and end on one (a span's 4 KiB of tags where pages are 16 or
    /// 64 KiB) is left as it is, since `madvise` would round its end up over its neighbours'.
    #[cfg(all(unix, not(miri)))]
    pub(super) fn decommit(p: *mut u8, len: usize) {
        if !whole_pages(p.addr(), len, page_size()) {
            return;
        }
        // SAFETY: whole pages of a mapping of ours that hold nothing anyone reads again
        // (contract); failure leaves the pages as they were, which is harmless.
        unsafe { libc::madvise(p.cast(), len, libc::MADV_DONTNEED) };
    }

    /// Whether `len` bytes at `addr` are whole pages of `page` bytes.
    #[cfg_attr(any(not(unix), miri), allow(dead_code))]
    pub(super) fn whole_pages(addr: usize, len: usize, page: usize) -> bool {
        addr.is_multiple_of(page) && len.is_multiple_of(page)
    }

    /// The OS's page size (read once; 4 KiB if it cannot say).
    #[cfg(all(unix, not(miri)))]
    fn page_size() -> usize {
        use core::sync::atomic::{AtomicUsize, Ordering::Relaxed};
        static PAGE: AtomicUsize = AtomicUsize::new(0);
        match PAGE.load(Relaxed) {
            0 => {
                // SAFETY: `sysconf` reads a configuration value.
                let page = match unsafe { libc::sysconf(libc::_SC_PAGESIZE) } {
                    n if n > 0 && (n as usize).is_power_of_two() => n as usize,
                    _ => 4096,
                };
                PAGE.store(page, Relaxed);
                page
            }
            page => page,
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A span's tag page is decommitted only where it is a whole page of the OS: with 16 or
    /// 64 KiB pages, `madvise` would round it up over the tags of its neighbours' spans.
    #[test]
    fn only_whole_pages_are_decommitted() {
        let tags_of = |s: usize| (s * (SPAN / GRANULE), SPAN / GRANULE);
        for s in 0..SPANS {
            let (offset, len) = tags_of(s);
            assert!(os::whole_pages(offset, len, 4096));
            assert!(!os::whole_pages(offset, len, 16384));
            assert!(!os::whole_pages(offset, len, 65536));
            // A span itself is whole pages of any size up to its own.
            assert!(os::whole_pages(s * SPAN, SPAN, 65536));
        }
    }
}
