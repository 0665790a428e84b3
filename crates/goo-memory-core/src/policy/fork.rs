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
use core::ptr;
use core::sync::atomic::{AtomicBool, AtomicPtr, Ordering::*};
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
        // SAFETY: a `'static` lock stays where it is.
        unsafe { self.hold_unbounded(lock) }
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

/// Declares a process-wide `static` mutex held across every fork at a place of [`Nesting`],
/// and the function that locks it (registering the fork handlers first, so they are in place
/// before the lock is first held):
///
/// ```ignore
/// held_across_forks! {
///     /// What it guards.
///     static NAMES: Vec<Named> = Vec::new(), at Leaf, locked by names;
/// }
/// ```
macro_rules! held_across_forks {
    ($(#[$doc:meta])* static $name:ident: $t:ty = $init:expr, at $place:ident, locked by $lock_fn:ident;) => {
        $(#[$doc])*
        static $name: std::sync::Mutex<$t> = std::sync::Mutex::new($init);

        /// Locks it (poisoning ignored: no code that can panic runs under it with its data half
        /// changed).
        fn $lock_fn() -> std::sync::MutexGuard<'static, $t> {
            static HELD: $crate::policy::fork::Held<$t> = $crate::policy::fork::Held::new();
            fn hold() {
                HELD.hold(&$name);
            }
            fn release() {
                HELD.release();
            }
            static HOOKS: $crate::policy::fork::ForkHooks =
                $crate::policy::fork::ForkHooks::new($crate::policy::fork::Nesting::$place, hold, release);
            $crate::policy::fork::hold_across_fork(&HOOKS);
            $name.lock().unwrap_or_else(|e| e.into_inner())
        }
    };
}
pub(crate) use held_across_forks;

/// Where a module's locks come in the fork handlers' order: the order threads nest them in.
#[derive(Clone, Copy)]
pub(crate) enum Nesting {
    /// The registry of library allocators (`policy::backend`), which the later places walk
    /// (a report reads names and regions' details under it): taken first.
    Registry = 0,
    /// Process-wide locks whose holders take no library lock but an allocation's (one through
    /// Rust's global allocator, which may be this library's): the names, the live regions,
    /// the callbacks, the collector hook, the C-made allocators' limits, the default's
    /// publication. None is taken inside another.
    Leaf = 1,
    /// Every library allocator's limit lock (the registered ones, walked under the registry's
    /// lock, and the built-in ones in statics): an allocation may take one. No thread takes
    /// one limit lock inside another.
    Limits = 2,
    /// Locks held while the allocator asks another for memory (the debug allocator's state).
    Outer = 3,
    /// Locks taken inside such requests (the heap's): taken last.
    Inner = 4,
}

/// Modules' hooks each place can hold (a test counts the crate's uses of each place against it:
/// a registration past it would panic).
const PER_PLACE: usize = 16;
/// Places in [`Nesting`].
const PLACES: usize = 5;

/// A module's fork hooks: `lock` takes its locks before every fork, `unlock` releases them
/// after it (in the parent and the child), at `nesting`'s place in the order. One `static` per
/// module: its address is its identity (function pointers have none that Rust promises).
pub(crate) struct ForkHooks {
    nesting: Nesting,
    lock: fn(),
    unlock: fn(),
    registered: AtomicBool,
}

impl ForkHooks {
    /// Hooks not yet registered ([`hold_across_fork`] registers them).
    pub(crate) const fn new(nesting: Nesting, lock: fn(), unlock: fn()) -> Self {
        ForkHooks { nesting, lock, unlock, registered: AtomicBool::new(false) }
    }
}

/// Per [`Nesting`], in registration order: the registered hooks (null: a free entry).
static HOOKS: [[AtomicPtr<ForkHooks>; PER_PLACE]; PLACES] =
    [const { [const { AtomicPtr::new(core::ptr::null_mut()) }; PER_PLACE] }; PLACES];

/// Serialises registrations; held across a fork too, so that none is half done in the child.
static REGISTERING: Mutex<()> = Mutex::new(());
static REGISTERING_HELD: Held<()> = Held::new();

/// Registers `hooks` (and the handlers, the first time), before the module first takes its
/// locks; registering them again changes nothing (one load).
pub(crate) fn hold_across_fork(hooks: &'static ForkHooks) {
    if hooks.registered.load(Acquire) {
        return;
    }
    let _serial = REGISTERING.lock().unwrap_or_else(|e| e.into_inner());
    if hooks.registered.load(Relaxed) {
        return;
    }
    let Some(entry) = HOOKS[hooks.nesting as usize].iter().find(|e| e.load(Relaxed).is_null()) else {
        panic!("goo-memory: more fork hooks than a place holds");
    };
    entry.store(ptr::from_ref(hooks).cast_mut(), Release);
    hooks.registered.store(true, Release);
    install();
}

/// The registered hooks, in the order `prepare` runs them.
fn registered() -> impl DoubleEndedIterator<Item = &'static ForkHooks> {
    HOOKS.iter().flatten().filter_map(|e| {
        let hooks = e.load(Acquire);
        // SAFETY: non-null entries point to `static` hooks (`hold_across_fork`).
        (!hooks.is_null()).then(|| unsafe { &*hooks })
    })
}

/// Registers the handlers, once.
#[cfg_attr(miri, allow(dead_code))]
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

#[cfg_attr(miri, allow(dead_code))]
extern "C" fn prepare() {
    REGISTERING_HELD.hold(&REGISTERING);
    for hooks in registered() {
        (hooks.lock)();
    }
}

#[cfg_attr(miri, allow(dead_code))]
extern "C" fn parent() {
    release();
}

/// Set while the child's handler runs: what a lock's holder kept in the state it guards for
/// threads of the parent (a gate's flags) is stale in the child, which has none of them.
static IN_CHILD: AtomicBool = AtomicBool::new(false);

#[cfg_attr(miri, allow(dead_code))]
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
#[cfg_attr(miri, allow(dead_code))]
fn release() {
    for hooks in registered().rev() {
        (hooks.unlock)();
    }
    REGISTERING_HELD.release();
}

#[cfg(test)]
mod tests {
    use super::PER_PLACE;

    /// Every module's hooks find an entry: the crate's sources name each place (`at Leaf` in
    /// `held_across_forks!`, `Nesting::Leaf` in a `ForkHooks::new`) at most `PER_PLACE` times.
    /// (Ten `Leaf` users once met a table of eight: the tenth to register panicked.)
    #[test]
    #[cfg_attr(miri, ignore)] // reads the source tree
    fn every_place_has_room_for_its_modules() {
        fn sources(dir: &std::path::Path, out: &mut Vec<String>) {
            for entry in std::fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    sources(&path, out);
                } else if path.extension().is_some_and(|e| e == "rs") && !path.ends_with("fork.rs") {
                    out.push(std::fs::read_to_string(&path).unwrap());
                }
            }
        }
        let mut all = Vec::new();
        sources(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src"), &mut all);
        let code: Vec<&str> =
            all.iter().flat_map(|s| s.lines()).filter(|l| !l.trim_start().starts_with("//")).collect();
        for place in ["Registry", "Leaf", "Limits", "Outer", "Inner"] {
            let uses = code
                .iter()
                .filter(|l| {
                    l.contains(&format!("at {place}, locked by")) || l.contains(&format!("Nesting::{place}"))
                })
                .count();
            assert!(uses <= PER_PLACE, "{uses} modules hold locks at {place}: more than {PER_PLACE}");
        }
        assert!(
            code.iter().filter(|l| l.contains("at Leaf, locked by")).count() >= 8,
            "the count sees the uses"
        );
    }
}
