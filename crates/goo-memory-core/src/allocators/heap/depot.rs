//! The depot: per class, the free blocks no thread's cache holds, for any thread to take. A
//! thread whose cache of a class is full moves half of it here; one whose cache is empty takes
//! a batch from here before it carves new blocks. So a block freed by another thread than the
//! one that allocated it serves whichever thread asks next, and memory freed in bulk (a
//! garbage collector's sweep) is not held by one thread.
//!
//! The depot keeps no array of its blocks: a block here is a bit in its span's depot bitmap
//! (`heap/segments.rs`, a bit per 16-byte granule, outside the blocks), and each class lists the
//! spans holding its blocks, through links beside the bitmaps. Its memory is 1/128 of a span's
//! (a bitmap page per span used), where an array of addresses would cost a quarter of the
//! freed memory for 32-byte blocks. A write through a freed pointer cannot redirect the heap.
//!
//! A batch is taken from the spans most recently given a block, those with live blocks first
//! (`partial`), so a class reuses a span's free blocks before another's, and the spans whose
//! blocks are all here (`full`) stay whole to go back.
//!
//! The depot gives memory back: when half of a class's blocks here lie in spans whose every
//! block is here, the class has had such spans for [`PURGE_DELAY_MS`], and it has taken no fresh
//! span for as long, it gives those spans back to the OS ([`segments::release_span`]), but for
//! [`RETAIN`] of them. So a program that frees most of its memory sees its resident size fall,
//! and one that frees and allocates in cycles keeps its spans. When a class needs a span and
//! none is free, the free spans of the other classes go back at once, purge delay or not
//! ([`reclaim_for`]): memory one class freed serves another before the heap maps more.
//!
//! Per class, under its lock, with `B = BLOCKS_PER_SPAN[class]`:
//!
//! ```text
//! bit(s, g) set  =>  a carved block of the class starts at s + 16g, tag == free_tag(class),
//!                    in no cache
//! in_depot(s) == popcount(bits(s))            for every span s of the class
//! s in partial  <=>  0 < in_depot(s) < B;     s in full  <=>  in_depot(s) == B
//! len == sum of in_depot(s) over both lists;  n_full == |full|
//! the lists are doubly linked through the spans' links (prev of a head: null)
//! ```

use core::ptr;
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::Instant;

use super::classes::{BLOCKS_PER_SPAN, CLASSES, SIZES};
use super::segments::{self, depot_bits, depot_links, in_depot, span_start, DEPOT_WORDS, SPAN};

/// Spans with every block free that a class keeps rather than give back.
pub(crate) const RETAIN: usize = 1;

/// How long after a class last took a fresh span its free spans stay (mimalloc's purge delay):
/// a class that is growing will want them again.
pub(crate) const PURGE_DELAY_MS: u64 = 10;

/// Spans one pass gives back at most (the rest wait for the next).
const RELEASE_BATCH: usize = 64;

/// Bytes a block's start is a multiple of (a bit of a depot bitmap each).
const GRANULE: usize = 16;

/// One class's free blocks.
struct Depot {
    /// The first span with some but not all of its blocks here (null: none).
    partial: *mut u8,
    /// The first span with all of its blocks here (null: none).
    full: *mut u8,
    /// Blocks here.
    len: usize,
    /// Spans in `full`.
    n_full: usize,
    /// When `n_full` last rose above [`RETAIN`] ([`now_ms`]; 0 while it is at most that): spans
    /// stay free this long before they go back, so a class that frees its blocks and soon takes
    /// them again (a program's request loop, a compiler's passes) keeps its pages.
    full_since: u64,
}

// SAFETY: the spans are the heap's (never unmapped), and only touched under the class's mutex.
unsafe impl Send for Depot {}

static DEPOT: [Mutex<Depot>; CLASSES] = [const {
    Mutex::new(Depot { partial: ptr::null_mut(), full: ptr::null_mut(), len: 0, n_full: 0, full_since: 0 })
}; CLASSES];

/// Each class's `len`, readable without its lock (written under it).
static LEN: [AtomicUsize; CLASSES] = [const { AtomicUsize::new(0) }; CLASSES];

/// When each class last took a fresh span ([`now_ms`]).
static GREW_AT: [AtomicU64; CLASSES] = [const { AtomicU64::new(0) }; CLASSES];

/// Milliseconds since the heap first asked.
fn now_ms() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_millis() as u64
}

/// Notes that `class` took a fresh span: its free spans stay for [`PURGE_DELAY_MS`].
pub(crate) fn note_growth(class: usize) {
    GREW_AT[class].store(now_ms(), Relaxed);
}

/// The classes' locks, held across a fork (`policy::fork`).
static FORK_HELD: [crate::policy::fork::Held<Depot>; CLASSES] =
    [const { crate::policy::fork::Held::new() }; CLASSES];

/// Takes every class's lock for a fork, in class order (no thread holds two of them).
pub(crate) fn lock_for_fork() {
    for (held, lock) in FORK_HELD.iter().zip(&DEPOT) {
        held.hold(lock);
    }
}

/// Releases what [`lock_for_fork`] took.
pub(crate) fn unlock_after_fork() {
    for held in FORK_HELD.iter().rev() {
        held.release();
    }
}

fn lock(class: usize) -> MutexGuard<'static, Depot> {
    DEPOT[class].lock().unwrap_or_else(|e| e.into_inner())
}

/// Which of a class's lists.
#[derive(Clone, Copy)]
enum List {
    Partial,
    Full,
}

impl Depot {
    fn head(&mut self, list: List) -> &mut *mut u8 {
        match list {
            List::Partial => &mut self.partial,
            List::Full => &mut self.full,
        }
    }

    /// Puts `span` (in no list) first in `list`.
    ///
    /// # Safety
    /// `span` starts a span of the heap holding blocks of this depot's class.
    unsafe fn push(&mut self, list: List, span: *mut u8) {
        let head = self.head(list);
        // SAFETY: `span` and the head (a span of the list) are the heap's spans (contract).
        unsafe {
            let (prev, next) = depot_links(span);
            prev.store(ptr::null_mut(), Relaxed);
            next.store(*head, Relaxed);
            if !head.is_null() {
                depot_links(*head).0.store(span, Relaxed);
            }
        }
        *head = span;
    }

    /// Takes `span` out of `list`, which holds it.
    ///
    /// # Safety
    /// As for [`push`](Self::push).
    unsafe fn unlink(&mut self, list: List, span: *mut u8) {
        // SAFETY: `span` and its neighbours are spans of the list (contract).
        unsafe {
            let (prev, next) = depot_links(span);
            let (p, n) = (prev.load(Relaxed), next.load(Relaxed));
            if p.is_null() {
                *self.head(list) = n;
            } else {
                depot_links(p).1.store(n, Relaxed);
            }
            if !n.is_null() {
                depot_links(n).0.store(p, Relaxed);
            }
            prev.store(ptr::null_mut(), Relaxed);
            next.store(ptr::null_mut(), Relaxed);
        }
    }

    /// Takes `span`, in `list` with its `blocks` blocks here, out of the depot whole (its
    /// blocks, bits and count), before it goes back to `segments`.
    ///
    /// # Safety
    /// As for [`push`](Self::push).
    unsafe fn remove(&mut self, list: List, span: *mut u8, blocks: usize) {
        // SAFETY: a span of the list (contract), whose depot state this class's lock guards.
        unsafe {
            self.unlink(list, span);
            for word in depot_bits(span) {
                word.store(0, Relaxed);
            }
            in_depot(span).store(0, Relaxed);
        }
        self.len -= blocks;
    }

    /// Notes that `n_full` fell (a span left `full`).
    fn full_fell(&mut self) {
        self.n_full -= 1;
        if self.n_full <= RETAIN {
            self.full_since = 0;
        }
    }
}

/// The granule of `block` in its span: which bit of the span's bitmap names it.
#[inline(always)]
fn granule(block: *mut u8) -> usize {
    (block.addr() % SPAN) / GRANULE
}

/// Files `blocks` (free blocks of `class`, in no cache) in the depot.
pub(crate) fn put(class: usize, blocks: &[*mut u8]) {
    let per_span = BLOCKS_PER_SPAN[class];
    let mut depot = lock(class);
    for &block in blocks {
        // SAFETY: a free block of the class: inside a usable span of the heap, whose depot
        // state only this class's lock guards.
        unsafe {
            let span = span_start(block);
            let g = granule(block);
            let word = &depot_bits(span)[g / 64];
            let bits = word.load(Relaxed);
            debug_assert_eq!(bits & (1 << (g % 64)), 0, "a block filed in the depot twice");
            word.store(bits | 1 << (g % 64), Relaxed);
            let count = in_depot(span);
            let n = count.load(Relaxed) + 1;
            count.store(n, Relaxed);
            if n == 1 {
                depot.push(List::Partial, span);
            }
            if n as usize == per_span {
                depot.unlink(List::Partial, span);
                depot.push(List::Full, span);
                depot.n_full += 1;
            }
        }
    }
    depot.len += blocks.len();
    // Half of the class's blocks here in spans with every block here, beyond the reserve:
    // give those spans back once they have stayed free, and the class has not grown, for the
    // purge delay.
    if depot.n_full > RETAIN && depot.n_full * per_span * 2 >= depot.len {
        let now = now_ms();
        if depot.full_since == 0 {
            depot.full_since = now.max(1);
        } else if now >= depot.full_since + PURGE_DELAY_MS
            && now >= GREW_AT[class].load(Relaxed) + PURGE_DELAY_MS
        {
            release_free_spans(&mut depot, class, RELEASE_BATCH, RETAIN);
        }
    }
    LEN[class].store(depot.len, Relaxed);
}

/// Gives back now every span of `class` whose blocks are all here, but the reserve: what
/// [`put`] does once the class's delay ran out (for tests, which must not wait on a clock that
/// a loaded machine stretches).
#[cfg(test)]
pub(crate) fn purge_now(class: usize) {
    let mut depot = lock(class);
    while depot.n_full > RETAIN {
        release_free_spans(&mut depot, class, RELEASE_BATCH, RETAIN);
    }
    LEN[class].store(depot.len, Relaxed);
}

/// Gives back every span of `class` whose blocks are all here, the reserve too (for
/// `heap::collect`); how many.
pub(crate) fn release_all_free(class: usize) -> usize {
    if LEN[class].load(Relaxed) == 0 {
        return 0;
    }
    let mut depot = lock(class);
    let before = depot.n_full;
    while depot.n_full > 0 {
        release_free_spans(&mut depot, class, RELEASE_BATCH, 0);
    }
    LEN[class].store(depot.len, Relaxed);
    before
}

/// Gives back `span`, the span a cache is carving for `class`, of which the first `carved`
/// blocks are carved (fewer than the span holds), if every one of them is here: no block of it
/// is live or cached, and the blocks not carved were never handed out. Whether it did; the
/// caller then forgets its carving position. A carving span is never full, so this is the only
/// way it goes back before a thread carves it to its end.
pub(crate) fn release_carving(class: usize, span: *mut u8, carved: usize) -> bool {
    debug_assert!(carved < BLOCKS_PER_SPAN[class]);
    let mut depot = lock(class);
    // SAFETY: a span of the class (the caller carves it), whose depot state the lock guards.
    unsafe {
        let count = in_depot(span);
        if count.load(Relaxed) as usize != carved {
            return false;
        }
        if carved > 0 {
            depot.remove(List::Partial, span, carved);
        }
    }
    segments::release_span(span);
    LEN[class].store(depot.len, Relaxed);
    true
}

/// Spans [`reclaim_for`] takes from another class at once.
const RECLAIM_BATCH: usize = 16;

/// Takes up to [`RECLAIM_BATCH`] spans whose blocks are all in the depot from another class
/// than `class` (keeping [`RETAIN`] per class), whatever its purge delay, for `class` to take:
/// it needs a span and none is free, and memory another class freed should serve it before the
/// heap maps more. Their pages go back too, as any free span's: the class that takes one may
/// carve only part of it (a page at a time), and the pages it does not touch should not stay
/// resident (jq's trace: 8.2 MiB peak with them kept, 7.7 MiB without). Few are taken at a
/// time, so that a class does not lose spans it is about to fill again.
#[cold]
pub(crate) fn reclaim_for(class: usize) {
    for c in (0..CLASSES).filter(|&c| c != class) {
        // Enough blocks for a span beyond the reserve.
        if LEN[c].load(Relaxed) > BLOCKS_PER_SPAN[c] * RETAIN {
            let mut depot = lock(c);
            if depot.n_full > RETAIN {
                release_free_spans(&mut depot, c, RECLAIM_BATCH, RETAIN);
                LEN[c].store(depot.len, Relaxed);
                return;
            }
        }
    }
}

/// Gives back spans of `class` whose blocks are all in `depot`, but `keep` of them, and at most
/// `max` at a time: their blocks leave the depot, then the spans go to `segments` (which
/// may hand one to another class at once, so the depot must hold none of its blocks by then).
#[cold]
fn release_free_spans(depot: &mut Depot, class: usize, max: usize, keep: usize) {
    let per_span = BLOCKS_PER_SPAN[class];
    let mut released = 0;
    while depot.n_full > keep && released < max {
        let span = depot.full;
        // SAFETY: the first span of `full`: a span of the class with every block here.
        unsafe { depot.remove(List::Full, span, per_span) };
        depot.full_fell();
        segments::release_span(span);
        released += 1;
    }
}

/// Moves up to `out.len()` blocks of `class` from the depot into `out`; how many. The blocks
/// come from the spans most recently given one, those with live blocks before those with none.
pub(crate) fn take(class: usize, out: &mut [*mut u8]) -> usize {
    let per_span = BLOCKS_PER_SPAN[class];
    let words = (per_span * SIZES[class]).div_ceil(GRANULE * 64).min(DEPOT_WORDS);
    let mut depot = lock(class);
    let mut n = 0;
    while n < out.len() {
        let span = if !depot.partial.is_null() {
            depot.partial
        } else if !depot.full.is_null() {
            let span = depot.full;
            // SAFETY: the first span of `full`, a span of the class; it is about to lose a
            // block (`out` has room), so it goes to `partial`.
            unsafe {
                depot.unlink(List::Full, span);
                depot.push(List::Partial, span);
            }
            depot.full_fell();
            span
        } else {
            break;
        };
        // SAFETY: a span of the class in `partial`, whose depot state the class's lock guards.
        unsafe {
            let count = in_depot(span);
            let mut left = count.load(Relaxed) as usize;
            for (w, word) in depot_bits(span)[..words].iter().enumerate() {
                let mut bits = word.load(Relaxed);
                if bits == 0 {
                    continue;
                }
                let base = w * 64;
                while bits != 0 && n < out.len() {
                    let g = bits.trailing_zeros() as usize;
                    bits &= bits - 1;
                    out[n] = span.add((base + g) * GRANULE);
                    n += 1;
                    left -= 1;
                }
                word.store(bits, Relaxed);
                if n == out.len() {
                    break;
                }
            }
            count.store(left as u16, Relaxed);
            if left == 0 {
                depot.unlink(List::Partial, span);
            }
        }
    }
    depot.len -= n;
    LEN[class].store(depot.len, Relaxed);
    n
}

/// Runs `f` on every span of `class` the depot lists, with its depot bitmap and whether it is
/// in `full`, under the class's lock (for `check`); the class's `len` and `n_full`.
pub(crate) fn for_each_span(
    class: usize,
    mut f: impl FnMut(*mut u8, &[AtomicU64; DEPOT_WORDS], bool),
) -> (usize, usize) {
    let depot = lock(class);
    for (head, full) in [(depot.partial, false), (depot.full, true)] {
        let mut span = head;
        while !span.is_null() {
            // SAFETY: a span of the class in one of its lists.
            unsafe {
                f(span, depot_bits(span), full);
                span = depot_links(span).1.load(Relaxed);
            }
        }
    }
    (depot.len, depot.n_full)
}

/// Blocks the depot holds, all classes.
pub(crate) fn len() -> usize {
    (0..CLASSES).map(|c| lock(c).len).sum()
}
