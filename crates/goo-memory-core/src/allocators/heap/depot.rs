//! The depot: per class, the free blocks no thread's cache holds, for any thread to take. A
//! thread whose cache of a class is full moves half of it here; one whose cache is empty takes
//! a batch from here before it carves new blocks. So a block freed by another thread than the
//! one that allocated it serves whichever thread asks next, and memory freed in bulk (a
//! garbage collector's sweep) is not held by one thread.
//!
//! The depot gives memory back: it counts its blocks per span (in the segment's header), and
//! when half of a class's blocks here lie in spans whose every block is here, the class has had
//! such spans for [`PURGE_DELAY_MS`], and it has taken no fresh span for as long, it takes those
//! spans' blocks out and gives the spans back to the OS ([`segments::release_span`]), but for
//! [`RETAIN`] of them. So a program that frees most of its memory sees its resident size fall,
//! and one that frees and allocates in cycles keeps its spans. When a class needs a span and
//! none is free, the free spans of the other classes go back at once, purge delay or not
//! ([`reclaim_for`]): memory one class freed serves another before the heap maps more.
//!
//! The counting is lazy: a batch a cache puts here goes on top of the class's stack uncounted,
//! and a batch taken from the top is taken uncounted, so a sweep's blocks that come back soon
//! (most of them) cost a copy of their addresses each way and nothing per block. The blocks
//! still here are counted when the class looks for spans to give back: once per
//! [`PURGE_DELAY_MS`], when the uncounted blocks have grown as many as the counted ones (a
//! sweep's), and when another class needs a span.
//!
//! The blocks' addresses are kept in arrays of the C library's heap, outside the blocks: a
//! write through a freed pointer cannot redirect the heap. Per class, under its lock:
//!
//! ```text
//! counted <= len <= cap;  blocks[..len] are distinct free blocks of the class, in no cache
//! in_depot(s) == |{ b in blocks[..counted] : span(b) == s }|   for each span s of the class
//! full == |{ s : in_depot(s) == BLOCKS_PER_SPAN[class] }|
//! ```

use core::ptr;
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::Instant;

use super::classes::{BLOCKS_PER_SPAN, CLASSES};
use super::segments::{self, in_depot, span_of};

/// Spans with every block free that a class keeps rather than give back.
pub(crate) const RETAIN: usize = 1;

/// How long after a class last took a fresh span its free spans stay (mimalloc's purge delay):
/// a class that is growing will want them again.
pub(crate) const PURGE_DELAY_MS: u64 = 10;

/// Spans one pass gives back at most (the rest wait for the next).
const RELEASE_BATCH: usize = 64;

/// The depot count of a span being given back (never a count: a span holds at most 4,096 blocks).
const RELEASING: u16 = u16::MAX;

/// One class's free blocks.
struct Stack {
    blocks: *mut *mut u8,
    len: usize,
    cap: usize,
    /// `blocks[..counted]` are counted in their spans' depot counts; the rest are not yet.
    counted: usize,
    /// When the class last counted its blocks ([`now_ms`]).
    counted_at: u64,
    /// Spans of the class with every block here and counted.
    full: usize,
    /// When `full` last rose above [`RETAIN`] ([`now_ms`]; 0 while it is at most that): spans
    /// stay free this long before they go back, so a class that frees its blocks and soon takes
    /// them again (a program's request loop, a compiler's passes) keeps its pages.
    full_since: u64,
}

// SAFETY: the array is owned by the stack and only touched under its mutex.
unsafe impl Send for Stack {}

static DEPOT: [Mutex<Stack>; CLASSES] = [const {
    Mutex::new(Stack {
        blocks: ptr::null_mut(),
        len: 0,
        cap: 0,
        counted: 0,
        counted_at: 0,
        full: 0,
        full_since: 0,
    })
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
static FORK_HELD: [crate::policy::fork::Held<Stack>; CLASSES] =
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

fn lock(class: usize) -> MutexGuard<'static, Stack> {
    DEPOT[class].lock().unwrap_or_else(|e| e.into_inner())
}

/// Files `blocks` (free blocks of `class`) in the depot. False, having filed none, when the
/// C library cannot grow the array (the caller keeps them).
pub(crate) fn put(class: usize, blocks: &[*mut u8]) -> bool {
    let mut stack = lock(class);
    let need = stack.len + blocks.len();
    if need > stack.cap {
        let cap = need.max(2 * stack.cap).max(64);
        let Some(bytes) = cap.checked_mul(size_of::<*mut u8>()) else { return false };
        // SAFETY: the array is null or a live C library block of this stack.
        let grown = unsafe { libc::realloc(stack.blocks.cast(), bytes) };
        if grown.is_null() {
            return false;
        }
        stack.blocks = grown.cast();
        stack.cap = cap;
    }
    // SAFETY: the array holds `cap >= len + blocks.len()` pointers; `blocks` is elsewhere.
    unsafe { ptr::copy_nonoverlapping(blocks.as_ptr(), stack.blocks.add(stack.len), blocks.len()) };
    stack.len = need;
    // Enough blocks for a span beyond the reserve: look for spans to give back, once per purge
    // delay, or when the blocks not counted yet are as many as those counted (so a sweep that
    // frees a class's memory is counted as it grows, at most twice its puts).
    let per_span = BLOCKS_PER_SPAN[class];
    if stack.len > per_span * RETAIN {
        let now = now_ms();
        let uncounted = stack.len - stack.counted;
        if now >= stack.counted_at + PURGE_DELAY_MS || uncounted >= stack.counted.max(per_span * (RETAIN + 1))
        {
            count(&mut stack, class, now);
            if stack.full > RETAIN && stack.full * per_span * 2 >= stack.len {
                if stack.full_since == 0 {
                    stack.full_since = now.max(1);
                } else if now >= stack.full_since + PURGE_DELAY_MS
                    && now >= GREW_AT[class].load(Relaxed) + PURGE_DELAY_MS
                {
                    release_free_spans(&mut stack, class, RELEASE_BATCH, Release::ToTheOs);
                }
            }
        }
    }
    LEN[class].store(stack.len, Relaxed);
    true
}

/// Gives back now every span of `class` whose blocks are all here, but the reserve: what the
/// purge pass of [`put`] does once the class's delay ran out (for tests, which must not wait
/// on a clock that a loaded machine stretches).
#[cfg(test)]
pub(crate) fn purge_now(class: usize) {
    let mut stack = lock(class);
    count(&mut stack, class, now_ms());
    while stack.full > RETAIN {
        let before = stack.full;
        release_free_spans(&mut stack, class, RELEASE_BATCH, Release::ToTheOs);
        if stack.full == before {
            break;
        }
    }
    LEN[class].store(stack.len, Relaxed);
}

/// Counts the blocks of `stack` (class `class`) not counted yet in their spans' depot counts,
/// at `now`.
fn count(stack: &mut Stack, class: usize, now: u64) {
    let per_span = BLOCKS_PER_SPAN[class];
    for i in stack.counted..stack.len {
        // SAFETY: `i < len <= cap`: a filed block of the class, inside a span of the heap.
        let count = unsafe { in_depot(stack.blocks.add(i).read()) };
        let n = count.load(Relaxed) + 1;
        count.store(n, Relaxed);
        if n as usize == per_span {
            stack.full += 1;
        }
    }
    stack.counted = stack.len;
    stack.counted_at = now;
}

/// Spans [`reclaim_for`] takes from another class at once.
const RECLAIM_BATCH: usize = 16;

/// Where a span given back goes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Release {
    /// Its pages to the OS: the span waits in the list of free spans, maybe for long.
    ToTheOs,
    /// Its pages kept: a class is about to take it.
    ForReuse,
}

/// Takes up to [`RECLAIM_BATCH`] spans whose blocks are all in the depot from another class
/// than `class` (keeping [`RETAIN`] per class), whatever its purge delay, for `class` to take:
/// it needs a span and none is free, and memory another class freed should serve it before the
/// heap maps more. Their pages stay (they are used again at once); few are taken at a time, so
/// that a class does not lose spans it is about to fill again.
#[cold]
pub(crate) fn reclaim_for(class: usize) {
    for c in (0..CLASSES).filter(|&c| c != class) {
        // Enough blocks for a span beyond the reserve (counted or not).
        if LEN[c].load(Relaxed) > BLOCKS_PER_SPAN[c] * RETAIN {
            let mut stack = lock(c);
            count(&mut stack, c, now_ms());
            if stack.full > RETAIN {
                release_free_spans(&mut stack, c, RECLAIM_BATCH, Release::ForReuse);
                LEN[c].store(stack.len, Relaxed);
                return;
            }
        }
    }
}

/// Gives back the spans of `class` whose blocks are all in `stack`, but [`RETAIN`] of them (and
/// at most `max` at a time, at most [`RELEASE_BATCH`]): their blocks leave the stack, then the
/// spans go to `segments`. Only then: a span given back can serve another class at once, and
/// must hold none of this stack's blocks by then. Every block of the stack is counted.
#[cold]
fn release_free_spans(stack: &mut Stack, class: usize, max: usize, how: Release) {
    debug_assert_eq!(stack.counted, stack.len);
    let max = max.min(RELEASE_BATCH);
    let per_span = BLOCKS_PER_SPAN[class];
    let mut kept = [ptr::null_mut(); RETAIN];
    let mut n_kept = 0;
    let mut released = [ptr::null_mut(); RELEASE_BATCH];
    let mut n_released = 0;
    let mut len = 0;
    for i in 0..stack.len {
        // SAFETY: `i < len <= cap`: a filed block, inside a span of the heap.
        let (block, count) = unsafe {
            let block = stack.blocks.add(i).read();
            (block, in_depot(block))
        };
        let span = span_of(block);
        let n = count.load(Relaxed);
        let keep = if n as usize == per_span {
            if kept[..n_kept].contains(&span) {
                true
            } else if n_kept < RETAIN {
                kept[n_kept] = span;
                n_kept += 1;
                true
            } else if n_released < max {
                // Its other blocks, further on, see RELEASING.
                count.store(RELEASING, Relaxed);
                released[n_released] = span;
                n_released += 1;
                false
            } else {
                true
            }
        } else {
            n != RELEASING
        };
        if keep {
            // SAFETY: `len <= i < cap`.
            unsafe { stack.blocks.add(len).write(block) };
            len += 1;
        }
    }
    stack.len = len;
    stack.counted = len;
    stack.full -= n_released;
    if stack.full <= RETAIN {
        stack.full_since = 0;
    }
    for &span in &released[..n_released] {
        segments::release_span(span, how == Release::ToTheOs);
    }
}

/// Moves up to `out.len()` blocks of `class` from the depot into `out`; how many.
pub(crate) fn take(class: usize, out: &mut [*mut u8]) -> usize {
    let mut stack = lock(class);
    let n = out.len().min(stack.len);
    stack.len -= n;
    // SAFETY: `blocks[len..len + n]` are filed blocks; `out` has room for `n`.
    unsafe { ptr::copy_nonoverlapping(stack.blocks.add(stack.len), out.as_mut_ptr(), n) };
    // Of the blocks taken, those below `counted` leave their spans' counts; the others were
    // never counted.
    let per_span = BLOCKS_PER_SPAN[class];
    let counted_taken = stack.counted.saturating_sub(stack.len);
    for &block in &out[..counted_taken] {
        // SAFETY: a block of the class just taken from the depot: inside a span of the heap.
        let count = unsafe { in_depot(block) };
        let was = count.load(Relaxed);
        if was as usize == per_span {
            stack.full -= 1;
        }
        count.store(was - 1, Relaxed);
    }
    stack.counted = stack.counted.min(stack.len);
    if stack.full <= RETAIN {
        stack.full_since = 0;
    }
    LEN[class].store(stack.len, Relaxed);
    n
}

/// Runs `f` on every block of `class` the depot holds, with whether it is counted, under its
/// lock (for `check`); the class's count of full spans, read under the same lock.
pub(crate) fn for_each(class: usize, mut f: impl FnMut(*mut u8, bool)) -> usize {
    let stack = lock(class);
    for i in 0..stack.len {
        // SAFETY: `i < len <= cap`.
        f(unsafe { stack.blocks.add(i).read() }, i < stack.counted);
    }
    stack.full
}

/// Blocks the depot holds, all classes.
pub(crate) fn len() -> usize {
    (0..CLASSES).map(|c| lock(c).len).sum()
}
