//! The default allocator (process-wide) and the thread allocator (per thread), and what
//! "current" means: the thread's allocator when one is set, else the default. The built-in
//! default is the heap allocator in a static, or the system allocator (the C library's
//! `malloc`) when `GOO_HEAP=system` says so or a memory tool watches ([`builtin`]).

use core::cell::UnsafeCell;
use core::ptr;
use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU8, Ordering::*};

use crate::allocators::debug;
use crate::allocators::heap::Heap;
use crate::allocators::system::System;
use crate::policy::backend::{drop_static, header_of, Backend, Managed};
use crate::policy::fork::{ForkHooks, Nesting};
use crate::policy::{sanitize, thread_slot};
use crate::raw::GooAllocator;

/// A library allocator living in a static (never registered, never freed).
struct Static<B: Backend>(UnsafeCell<Managed<B>>);
// SAFETY: the backends are stateless and thread-safe, the header's stats are atomics, and the
// vtable fields are only written by callers of the unsafe setters, who take on the races.
unsafe impl<B: Backend> Sync for Static<B> {}

/// The built-in heap: the default unless [`builtin`] chose the system allocator. Tracked, in a
/// static, so the library works before (and without) `goo_memory_init` and never allocates to
/// find its default.
static BUILTIN_HEAP: Static<Heap> = Static(UnsafeCell::new(
    Heap::managed((&raw const BUILTIN_HEAP).cast_mut().cast(), drop_static).tracked(),
));

/// The built-in allocators a program can limit (the library's own heap never is).
fn limitable_builtins() -> [*mut GooAllocator; 2] {
    [BUILTIN_HEAP.0.get().cast(), BUILTIN_SYSTEM.0.get().cast()]
}

/// Takes the built-in allocators' limit locks for a fork (see `policy::fork`).
fn lock_builtins_for_fork() {
    for a in limitable_builtins() {
        // SAFETY: allocators in statics: live, and in place, for good.
        unsafe { header_of(a).stats.hold_for_fork() };
    }
}

/// Releases what [`lock_builtins_for_fork`] took.
fn unlock_builtins_after_fork() {
    for a in limitable_builtins() {
        // SAFETY: as above.
        unsafe { header_of(a).stats.release_after_fork() };
    }
}

/// The built-in system allocator, the default when [`builtin`] chose it.
static BUILTIN_SYSTEM: Static<System> = Static(UnsafeCell::new(
    System::managed((&raw const BUILTIN_SYSTEM).cast_mut().cast(), drop_static).tracked(),
));

/// The library's own heap: an untracked system allocator in a static, outside the registry,
/// for memory the library keeps for itself (the temporary arenas' chunks). Its blocks are not
/// the program's, so they must not show among the built-in default's live allocations, which
/// the leak report of `goo_memory_cleanup` reads as the program's.
static INTERNAL: Static<System> =
    Static(UnsafeCell::new(System::managed((&raw const INTERNAL).cast_mut().cast(), drop_static)));

/// The default allocator; null until [`builtin`]'s choice is made (then the built-in), or set.
static DEFAULT: AtomicPtr<GooAllocator> = AtomicPtr::new(ptr::null_mut());
static INITIALIZED: AtomicBool = AtomicBool::new(false);

/// The built-in default: which one is chosen once, by the first call (so before the first
/// allocation through the default, whenever that is; the library's load-time constructor
/// calls it too), and never changes, so no block ever meets the wrong allocator:
/// - `GOO_HEAP=system`: the system allocator (the C library's `malloc`, with the thread cache
///   `GOO_SYSTEM_CACHE` sets), so that valgrind or ASan see every block; `GOO_HEAP=heap`: the heap;
/// - unset: the heap, or the system allocator when a memory tool watches (the process runs
///   under valgrind, or ASan is linked in), for the same reason.
#[inline(always)]
pub fn builtin() -> *mut GooAllocator {
    match BUILTIN_CHOICE.load(Relaxed) {
        HEAP => builtin_heap(),
        SYSTEM => BUILTIN_SYSTEM.0.get().cast(),
        _ => choose_builtin(),
    }
}

/// The built-in heap allocator (the default, unless [`builtin`] chose the system allocator).
#[inline(always)]
pub fn builtin_heap() -> *mut GooAllocator {
    BUILTIN_HEAP.0.get().cast()
}

const UNDECIDED: u8 = 0;
const HEAP: u8 = 1;
const SYSTEM: u8 = 2;
/// What [`builtin`] chose.
static BUILTIN_CHOICE: AtomicU8 = AtomicU8::new(UNDECIDED);

/// Makes [`builtin`]'s choice; the first caller's stands.
#[cold]
#[inline(never)]
fn choose_builtin() -> *mut GooAllocator {
    // `getenv`, not `std::env`: this may run inside the first allocation of Rust's global
    // allocator, and must not allocate.
    // SAFETY: a NUL-terminated name; the value is only read before returning.
    let value = unsafe {
        let v = libc::getenv(c"GOO_HEAP".as_ptr());
        (!v.is_null()).then(|| core::ffi::CStr::from_ptr(v).to_bytes())
    };
    // The tool's annotations are on whatever the choice (the system allocator's cache tells
    // it about cached blocks too).
    sanitize::detect();
    let choice = match value {
        Some(b"system") => SYSTEM,
        Some(b"heap") => HEAP,
        Some(b"") | None => {
            if sanitize::active() {
                SYSTEM
            } else {
                HEAP
            }
        }
        Some(_) => {
            let msg = b"goo-memory: GOO_HEAP must be \"heap\" or \"system\"; using the heap\n";
            // SAFETY: writing a static buffer to stderr.
            unsafe { libc::write(2, msg.as_ptr().cast(), msg.len()) };
            HEAP
        }
    };
    // Before any limit is set on a built-in allocator (which needs its address, found here).
    static FORK_HOOKS: ForkHooks =
        ForkHooks::new(Nesting::Limits, lock_builtins_for_fork, unlock_builtins_after_fork);
    crate::policy::fork::hold_across_fork(&FORK_HOOKS);
    let _ = BUILTIN_CHOICE.compare_exchange(UNDECIDED, choice, Relaxed, Relaxed);
    let chosen = builtin();
    // From now on the default needs no choice read (unless a default was set meanwhile).
    if DEFAULT.compare_exchange(ptr::null_mut(), chosen, AcqRel, Acquire).is_ok() {
        thread_slot::follow_default(chosen);
    }
    chosen
}

/// The built-in's kind as a report names it.
pub(crate) fn builtin_kind() -> &'static str {
    if builtin() == builtin_heap() {
        Heap::NAME
    } else {
        System::NAME
    }
}

/// The library's own heap (see [`INTERNAL`]).
pub(crate) fn internal() -> *mut GooAllocator {
    INTERNAL.0.get().cast()
}

/// The process-wide default allocator.
#[inline(always)]
pub fn default_allocator() -> *mut GooAllocator {
    let set = DEFAULT.load(Acquire);
    if set.is_null() {
        builtin()
    } else {
        set
    }
}

/// Makes `allocator` the default for every thread without a thread allocator; null restores
/// the built-in. Returns the previous default.
///
/// # Safety
/// `allocator` must stay valid while it is the default and while blocks allocated from it
/// through the legacy API are live; and, if [`init`] runs while it is the default with
/// `GOO_MEMORY_DEBUG` set, until the next [`cleanup`](crate::cleanup): the debug allocator
/// `init` puts over the default takes it as its parent and gives blocks back to it until the
/// cleanup destroys it, even after another default replaced it.
pub unsafe fn set_default_allocator(allocator: *mut GooAllocator) -> *mut GooAllocator {
    let allocator = if allocator.is_null() { builtin() } else { allocator };
    let old = DEFAULT.swap(allocator, AcqRel);
    thread_slot::follow_default(allocator);
    if old.is_null() {
        builtin()
    } else {
        old
    }
}

/// The calling thread's allocator, or null when none is set.
#[inline(always)]
pub fn thread_allocator() -> *mut GooAllocator {
    thread_slot::thread_allocator()
}

/// Sets the calling thread's allocator (null clears it). Returns the previous one (or null).
///
/// # Safety
/// As for [`set_default_allocator`], for as long as it is this thread's allocator.
pub unsafe fn set_thread_allocator(allocator: *mut GooAllocator) -> *mut GooAllocator {
    thread_slot::set_thread_allocator(allocator)
}

/// What `goo_memory_alloc` uses: the thread's allocator, else the default.
#[inline(always)]
pub fn current() -> *mut GooAllocator {
    let t = thread_allocator();
    if t.is_null() {
        default_allocator()
    } else {
        t
    }
}

/// [`current`] when finding it needs no call (the thread owns its home slot), with the calling
/// thread's home slot: one load. Null while no default is chosen yet; `None` without a home
/// slot.
#[inline(always)]
pub fn current_fast() -> Option<(usize, *mut GooAllocator)> {
    thread_slot::current_fast()
}

/// The debug allocator `init` put over the default because `GOO_MEMORY_DEBUG` asked for it
/// (null: none).
static ENV_DEBUG: AtomicPtr<GooAllocator> = AtomicPtr::new(ptr::null_mut());

/// Marks the library initialised. Idempotent; nothing requires it. With `GOO_MEMORY_DEBUG` set
/// (to anything but empty or "0") in the environment, the first `init` since the last cleanup
/// also makes a debug allocator over the default allocator and makes it the default, so every
/// request through the default (`goo_memory_alloc`, the legacy API) is checked;
/// `goo_memory_cleanup` reports its live blocks by site and destroys it.
pub fn init() {
    if std::env::var_os("GOO_MEMORY_DEBUG").is_some_and(|v| !v.is_empty() && v != "0")
        && ENV_DEBUG.load(Acquire).is_null()
    {
        // SAFETY: the default allocator stays valid while it is the debug allocator's parent
        // (its setter's contract: it is no longer the default, but still the parent, until the
        // cleanup destroys the debug allocator first).
        let debug = unsafe { debug::create(default_allocator(), 0) }.as_ptr();
        if ENV_DEBUG.compare_exchange(ptr::null_mut(), debug, AcqRel, Acquire).is_ok() {
            // SAFETY: the debug allocator lives until the cleanup takes it back.
            unsafe { set_default_allocator(debug) };
        } else {
            // Another thread's `init` won: this one was never seen by anyone.
            // SAFETY: a live library allocator, unused.
            unsafe { crate::policy::backend::managed_destroy(debug) };
        }
    }
    INITIALIZED.store(true, Release);
}

/// Takes back the debug allocator `init` made (see [`init`]), if any: the default becomes its
/// parent again, and the caller destroys it.
pub(crate) fn take_env_debug() -> Option<*mut GooAllocator> {
    let debug = ENV_DEBUG.swap(ptr::null_mut(), AcqRel);
    if debug.is_null() {
        return None;
    }
    // SAFETY: made by `init`, live until destroyed by the caller.
    if let Some(d) = unsafe { debug::from_raw(debug) } {
        if DEFAULT.load(Acquire) == debug {
            // SAFETY: the parent outlived the debug allocator so far and still does.
            unsafe { set_default_allocator(d.parent()) };
        }
    }
    Some(debug)
}

/// Whether [`init`] ran since the last `goo_memory_cleanup`.
pub fn is_initialized() -> bool {
    INITIALIZED.load(Acquire)
}

/// Restores the initial state: built-in default, no thread allocator on this thread, built-in
/// stats started again (its live blocks stay counted: see `ShardedStats::reset`).
pub(crate) fn reset() {
    DEFAULT.store(builtin(), Release);
    thread_slot::follow_default(builtin());
    thread_slot::set_thread_allocator(ptr::null_mut());
    // SAFETY: the built-in is always a live library allocator.
    let stats = unsafe { &header_of(builtin()).stats };
    stats.set_limit(0);
    stats.reset();
    INITIALIZED.store(false, Release);
}
