//! The storage of each thread's temporary arena: made on first use, destroyed at thread exit.
//! Below the dispatch, which routes `GOO_ALLOC_TEMP` requests here; the API over it (the safe
//! handle, reset, marks) is `crate::temp`.

use core::ffi::c_void;
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
///
/// The arena hangs on a pthread key, whose destructor destroys it, rather than on a
/// thread-local with a destructor: a thread may first use it late in its exit, in another key's
/// destructor (a program's per-thread cleanup), after the C library ran the thread-locals'
/// destructors, and one registered then would never run (the arena and its chunk would leak
/// with every such thread). The C library runs key destructors again while destructors set
/// values (up to `PTHREAD_DESTRUCTOR_ITERATIONS` rounds).
fn key() -> Option<libc::pthread_key_t> {
    static KEY: std::sync::OnceLock<Option<libc::pthread_key_t>> = std::sync::OnceLock::new();
    *KEY.get_or_init(|| {
        let mut key: libc::pthread_key_t = 0;
        // SAFETY: `key` is written by the call; `destroy_at_exit` never unwinds.
        (unsafe { libc::pthread_key_create(&mut key, Some(destroy_at_exit)) } == 0).then_some(key)
    })
}

/// The key's destructor: `value` is the exiting thread's temporary arena.
unsafe extern "C" fn destroy_at_exit(value: *mut c_void) {
    let a = value.cast::<GooAllocator>();
    // SAFETY: an arena `allocator` made for this thread and alone owns, unpinned so that its
    // destroy goes ahead.
    unsafe {
        if let Some(bump) = arena::from_raw(a) {
            bump.pin(false);
        }
        managed_destroy(a)
    };
}

/// This thread's temporary arena as an allocator, created on first use (null only if the C
/// library could not give the library its key).
pub fn allocator() -> *mut GooAllocator {
    let Some(key) = key() else { return ptr::null_mut() };
    // SAFETY: a key this module made.
    let a = unsafe { libc::pthread_getspecific(key) }.cast::<GooAllocator>();
    if !a.is_null() {
        return a;
    }
    // SAFETY: the library's own heap is a static.
    let bump = unsafe { Bump::new(default::internal(), TEMP_CHUNK, 0) };
    // Pinned: the program may reset it, not destroy it.
    bump.pin(true);
    let a = arena::place(bump, true).as_ptr();
    // SAFETY: as above; the value is the arena, which the destructor destroys.
    if unsafe { libc::pthread_setspecific(key, a.cast()) } != 0 {
        // SAFETY: just made, never handed out.
        unsafe { destroy_at_exit(a.cast()) };
        return ptr::null_mut();
    }
    a
}

/// Whether this thread has a temporary arena (without creating one).
pub fn exists() -> bool {
    // SAFETY: a key this module made.
    key().is_some_and(|key| !unsafe { libc::pthread_getspecific(key) }.is_null())
}
