//! Forking a process whose other threads allocate. The child has only the thread that forked:
//! a lock another thread held at that moment would stay held in the child forever, and the
//! child's first request to take it would hang (glibc's `malloc` guards its own locks the same
//! way). So `pthread_atfork` handlers take the process-wide locks of the library before the
//! fork and release them after it, in the parent and in the child, on the forking thread: the
//! locks of the modules that asked ([`hold_across_fork`]: the registry of library allocators,
//! every allocator's limit lock, the debug allocators' state, the heap's), by [`Nesting`]: the
//! order every thread takes them in when it nests them. Each module holds its own guards
//! ([`Held`]). State a lock guards may also record what other threads were doing (a thread
//! counting against its grant of a limit); the child's release clears that ([`in_child`]).
//!
//! Not covered (`memory.h` says so): a shared arena or pool, a locked allocator or a region
//! that another thread was using at the fork, which the child then cannot use.

use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicPtr, Ordering::*};
use std::sync::{Mutex, MutexGuard};

/// The guard of a `'static` lock held from the prepare handler to the parent's or child's.
pub(crate) struct Held<T: 'static>(UnsafeCell<Option<MutexGuard<'static, T>>>);

// SAFETY: only the forking thread touches a `Held`, from its prepare handler to its parent or
// child handler: `pthread_atfork` runs all three on the thread that calls `fork`, which holds
// the locks meanwhile, so no two threads are in these handlers at once.
unsafe impl<T> Sync for Held<T> {}
// SAFETY: a guard is in a `Held` only between the handlers, on the forking thread, and a value
// holding one is not moved meanwhile (the registry's lock, held as long, keeps every library
// allocator where it is); a `Held` moved between threads otherwise holds nothing.
unsafe impl<T> Send for Held<T> {}

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

    /// Takes `lock`, which is not `'static`, and keeps its guard (the prepare handler).
    ///
    /// # Safety
    /// `lock` stays where it is until [`Held::release`] (the registry's lock, held from the
    /// prepare handler to the release, keeps a library allocator's locks from being destroyed).
    pub(crate) unsafe fn hold_unbounded(&self, lock: &Mutex<T>) {
        let guard = lock.lock().unwrap_or_else(|e| e.into_inner());
        // SAFETY: the guard is dropped by `release` before `lock` moves or dies (the contract).
        let guard = unsafe { core::mem::transmute::<MutexGuard<'_, T>, MutexGuard<'static, T>>(guard) };
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

/// Where an allocator's locks come in the fork handlers' order.
#[derive(Clone, Copy)]
pub(crate) enum Nesting {
    /// The registry of library allocators (`policy::backend`), which the later ranks walk, and
    /// the limit locks of the allocators in it: taken first.
    Registry = 0,
    /// The limit locks of the built-in allocators, which live in statics outside the registry
    /// (`default`). No thread takes one limit lock inside another.
    Builtin = 1,
    /// Locks held while the allocator asks another for memory (the debug allocator's state).
    Outer = 2,
    /// Locks taken inside such requests (the heap's): taken last.
    Inner = 3,
}

/// Per [`Nesting`]: the functions that take and release an allocator's locks (as pointers; null
/// while none registered).
static HOOKS: [[AtomicPtr<()>; 2]; 4] = [const { [const { AtomicPtr::new(core::ptr::null_mut()) }; 2] }; 4];

/// Has `lock` take an allocator's locks before every fork, and `unlock` release them after it
/// (in the parent and the child), at `nesting`'s place in the order; registers the handlers
/// the first time. One pair per place, registered before the allocator first takes its locks.
pub(crate) fn hold_across_fork(nesting: Nesting, lock: fn(), unlock: fn()) {
    let [lock_slot, unlock_slot] = &HOOKS[nesting as usize];
    unlock_slot.store(unlock as *mut (), Release);
    lock_slot.store(lock as *mut (), Release);
    install();
}

/// The registered function in `slot`, if any.
fn hook(slot: &AtomicPtr<()>) -> Option<fn()> {
    let f = slot.load(Acquire);
    // SAFETY: the only non-null values ever stored are `fn()`s (`hold_across_fork`).
    (!f.is_null()).then(|| unsafe { core::mem::transmute::<*mut (), fn()>(f) })
}

/// Registers the handlers, once.
fn install() {
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
    for [lock, _] in &HOOKS {
        if let Some(f) = hook(lock) {
            f();
        }
    }
}

extern "C" fn parent() {
    release();
}

/// Set while the child's handler runs: what a lock's holder kept in the state it guards for
/// threads of the parent (a gate's flags) is stale in the child, which has none of them.
static IN_CHILD: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);

extern "C" fn child() {
    IN_CHILD.store(true, Relaxed);
    release();
    IN_CHILD.store(false, Relaxed);
}

/// Whether the release running is the child's (the only thread of the new process).
pub(crate) fn in_child() -> bool {
    IN_CHILD.load(Relaxed)
}

/// Releases in the reverse order of `prepare`.
fn release() {
    for [_, unlock] in HOOKS.iter().rev() {
        if let Some(f) = hook(unlock) {
            f();
        }
    }
}
