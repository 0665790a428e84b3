//! Forking a process whose other threads allocate. The child has only the thread that forked:
//! a lock another thread held at that moment would stay held in the child forever, and the
//! child's first request to take it would hang (glibc's `malloc` guards its own locks the same
//! way). So `pthread_atfork` handlers take the process-wide locks of the library before the
//! fork and release them after it, in the parent and in the child, on the forking thread:
//! the heap's (its depot's classes, its segments, its shared cache), the registry of library
//! allocators, and every debug allocator's state (so that `GOO_MEMORY_DEBUG=1` programs fork).
//! They are taken in the order every thread takes them when it nests them: the registry, then
//! each debug allocator (whose bookkeeping may allocate from the heap), then the heap's shared
//! cache, its depot by class, its segments. Each module holds its own guards
//! ([`Held`]) and offers a `lock_for_fork` / `unlock_after_fork` pair.
//!
//! Not covered (`memory.h` says so): a shared arena or pool, a locked allocator or a region
//! that another thread was using at the fork, which the child then cannot use.

use core::cell::UnsafeCell;
use std::sync::{Mutex, MutexGuard};

/// The guard of a `'static` lock held from the prepare handler to the parent's or child's.
pub(crate) struct Held<T: 'static>(UnsafeCell<Option<MutexGuard<'static, T>>>);

// SAFETY: only the forking thread touches a `Held`, from its prepare handler to its parent or
// child handler: `pthread_atfork` runs all three on the thread that calls `fork`, which holds
// the locks meanwhile, so no two threads are in these handlers at once.
unsafe impl<T> Sync for Held<T> {}

impl<T> Held<T> {
    /// Nothing held.
    pub(crate) const fn new() -> Self {
        Held(UnsafeCell::new(None))
    }

    /// Takes `lock` and keeps its guard (the prepare handler).
    pub(crate) fn hold(&self, lock: &'static Mutex<T>) {
        let guard = lock.lock().unwrap_or_else(|e| e.into_inner());
        // SAFETY: only the forking thread reaches this (see `Sync` above).
        unsafe { *self.0.get() = Some(guard) };
    }

    /// Runs `f` on what the held lock guards, if it is held (between the handlers).
    pub(crate) fn with<R>(&self, f: impl FnOnce(&T) -> R) -> Option<R> {
        // SAFETY: as for `hold`.
        unsafe { (*self.0.get()).as_deref() }.map(f)
    }

    /// Releases what [`Held::hold`] took (the parent and child handlers).
    pub(crate) fn release(&self) {
        // SAFETY: as for `hold`.
        drop(unsafe { (*self.0.get()).take() });
    }
}

/// Registers the handlers, once: before the first fork that can find a lock of the library
/// held (the heap's first segment, the first debug allocator).
pub(crate) fn install() {
    #[cfg(not(miri))]
    {
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(|| {
            // SAFETY: three handlers that never unwind (`prepare`, `parent`, `child`).
            unsafe { libc::pthread_atfork(Some(prepare), Some(parent), Some(child)) };
        });
    }
}

extern "C" fn prepare() {
    crate::policy::backend::lock_for_fork();
    crate::allocators::debug::lock_for_fork();
    crate::allocators::heap::lock_for_fork();
}

extern "C" fn parent() {
    release();
}

extern "C" fn child() {
    release();
}

/// Releases in the reverse order of `prepare`.
fn release() {
    crate::allocators::heap::unlock_after_fork();
    crate::allocators::debug::unlock_after_fork();
    crate::policy::backend::unlock_after_fork();
}
