//! A backend's refusal of a misused resize: a block it never handed out or freed already, a
//! wrong size or alignment. The backend reports the misuse its own way (the heap counts it, the
//! debug allocator prints both sites, a scope reports it) and returns null; the front door must
//! then not take the null for running out of memory: it is a failure of its own
//! (`strategy::Failure::Misuse`), counted as any request that returns null, but no `RETRY` or
//! `GC` handler runs for it (a retry repeats the misuse; there is nothing to free). `PANIC` and
//! `NOFAIL` still abort, as the caller counts on never seeing null. The backend says so through
//! this thread's flag, which the front door clears before it asks and reads after.

use core::cell::Cell;

thread_local! {
    /// A backend refused the calling thread's current resize as misuse.
    static REFUSED: Cell<bool> = const { Cell::new(false) };
}

/// Called by a backend as it refuses a misused resize, before it returns null.
pub(crate) fn refuse_misuse() {
    // During thread exit the flag may be gone: the null then counts as a failure.
    let _ = REFUSED.try_with(|r| r.set(true));
}

/// Forgets any earlier refusal: the front door calls it before it asks the backend.
pub(crate) fn clear() {
    let _ = REFUSED.try_with(|r| r.set(false));
}

/// Whether a backend refused the request as misuse since [`clear`]. Left set, so that a front
/// door that called into another (a scope resizing a PERSIST block in its parent) sees the
/// inner refusal too.
pub(crate) fn misused() -> bool {
    REFUSED.try_with(Cell::get).unwrap_or(false)
}
