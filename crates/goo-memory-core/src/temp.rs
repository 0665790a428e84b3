//! Temporary allocations: a per-thread arena, created on first use and freed at thread exit.
//! `GOO_ALLOC_TEMP` on any request routes it here (see `policy::front`).

use core::cell::RefCell;
use core::ptr;

use crate::arena::{self, Arena, Mark, RewindError};
use crate::raw::GooAllocator;

/// First chunk of a thread's temporary arena.
const TEMP_CHUNK: usize = 64 * 1024;

thread_local! {
    /// Dropped at thread exit, returning its chunks.
    static TEMP: RefCell<Option<Arena>> = const { RefCell::new(None) };
}

/// This thread's temporary arena as an allocator, created on first use; null once the thread is
/// tearing down its thread-locals.
pub fn allocator() -> *mut GooAllocator {
    TEMP.try_with(|t| {
        let mut t = t.borrow_mut();
        let arena = t.get_or_insert_with(|| {
            let mut a = Arena::with_capacity(TEMP_CHUNK);
            a.set_track_stats(true);
            a
        });
        arena.as_ptr()
    })
    .unwrap_or(ptr::null_mut())
}

/// Whether this thread has a temporary arena (without creating one).
pub fn exists() -> bool {
    TEMP.try_with(|t| t.borrow().is_some()).unwrap_or(false)
}

/// Frees every temporary allocation of this thread (keeps one chunk).
pub fn reset() {
    if exists() {
        // SAFETY: this thread's live arena; temporary blocks are dead by contract.
        unsafe { arena::reset_raw(allocator()) };
    }
}

/// A checkpoint of this thread's temporary arena.
pub fn mark() -> Mark {
    let a = allocator();
    // SAFETY: null or this thread's live arena.
    unsafe { arena::mark_raw(a) }.unwrap_or(Mark::INVALID)
}

/// Frees the temporary allocations made after `mark`.
pub fn rewind(mark: &Mark) -> Result<(), RewindError> {
    let a = allocator();
    if a.is_null() {
        return Err(RewindError::NotAnArena);
    }
    // SAFETY: this thread's live arena; blocks after the mark are dead by contract.
    unsafe { arena::rewind_raw(a, mark) }
}
