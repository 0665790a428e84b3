//! The storage of each thread's temporary arena: made on first use, destroyed at thread exit.
//! Below the dispatch, which routes `GOO_ALLOC_TEMP` requests here; the API over it (the safe
//! handle, reset, marks) is `crate::temp`.

use core::cell::Cell;
use core::ptr;

use crate::allocators::arena::{self, Bump};
use crate::default;
use crate::policy::backend::managed_destroy;
use crate::raw::GooAllocator;

/// First chunk of a thread's temporary arena.
const TEMP_CHUNK: usize = 64 * 1024;

/// A thread's temporary arena (a library arena allocator, stats tracked), destroyed at thread
/// exit, returning its chunks. Its chunks come from the library's own heap
/// ([`default::internal`]), not from the built-in default: what it keeps after a reset is the
/// library's, never a live allocation of the program's default heap (the leak report would
/// name it), while its own stats still show it as reserved bytes.
struct TempArena(Cell<*mut GooAllocator>);

impl Drop for TempArena {
    fn drop(&mut self) {
        let a = self.0.replace(ptr::null_mut());
        if !a.is_null() {
            // SAFETY: an arena this thread-local made and alone owns, unpinned so that its
            // destroy goes ahead.
            unsafe {
                if let Some(bump) = arena::from_raw(a) {
                    bump.pin(false);
                }
                managed_destroy(a)
            };
        }
    }
}

thread_local! {
    static TEMP: TempArena = const { TempArena(Cell::new(ptr::null_mut())) };
}

/// This thread's temporary arena as an allocator, created on first use; null once the thread is
/// tearing down its thread-locals.
pub fn allocator() -> *mut GooAllocator {
    TEMP.try_with(|t| {
        if t.0.get().is_null() {
            // SAFETY: the library's own heap is a static.
            let bump = unsafe { Bump::new(default::internal(), TEMP_CHUNK, 0) };
            // Pinned: the program may reset it, not destroy it.
            bump.pin(true);
            t.0.set(arena::place(bump, true).as_ptr());
        }
        t.0.get()
    })
    .unwrap_or(ptr::null_mut())
}

/// Whether this thread has a temporary arena (without creating one).
pub fn exists() -> bool {
    TEMP.try_with(|t| !t.0.get().is_null()).unwrap_or(false)
}
