//! The default allocator (process-wide) and the thread allocator (per thread), and what
//! "current" means: the thread's allocator when one is set, else the default. The built-in
//! default is a system allocator in a static, so this sits just above the system allocator.

use core::cell::UnsafeCell;
use core::ptr;
use core::sync::atomic::{AtomicBool, AtomicPtr, Ordering::*};

use crate::allocators::debug;
use crate::allocators::system::System;
use crate::policy::backend::{drop_static, Managed};
use crate::policy::thread_slot;
use crate::raw::GooAllocator;

/// A system allocator living in a static (never registered, never freed).
struct StaticSystem(UnsafeCell<Managed<System>>);
// SAFETY: the backend is stateless and thread-safe, the header's stats are atomics, and the
// vtable fields are only written by callers of the unsafe setters, who take on the races.
unsafe impl Sync for StaticSystem {}

/// The built-in default: a tracked system allocator in a static, so the library works before
/// (and without) `goo_memory_init` and never allocates to find its default.
static BUILTIN: StaticSystem = StaticSystem(UnsafeCell::new(
    System::managed((&raw const BUILTIN).cast_mut().cast(), drop_static).tracked(),
));

/// The library's own heap: an untracked system allocator in a static, outside the registry,
/// for memory the library keeps for itself (the temporary arenas' chunks). Its blocks are not
/// the program's, so they must not show among the built-in default's live allocations, which
/// the leak report of `goo_memory_cleanup` reads as the program's.
static INTERNAL: StaticSystem =
    StaticSystem(UnsafeCell::new(System::managed((&raw const INTERNAL).cast_mut().cast(), drop_static)));

/// Null means the built-in.
static DEFAULT: AtomicPtr<GooAllocator> = AtomicPtr::new(ptr::null_mut());
static INITIALIZED: AtomicBool = AtomicBool::new(false);

/// The built-in system allocator that is the default until another is set.
#[inline(always)]
pub fn builtin() -> *mut GooAllocator {
    BUILTIN.0.get().cast()
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
/// through the legacy API are live.
pub unsafe fn set_default_allocator(allocator: *mut GooAllocator) -> *mut GooAllocator {
    let old = DEFAULT.swap(allocator, AcqRel);
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

/// [`current`] when finding it needs no call (the thread owns its home slot), else null.
#[inline(always)]
pub fn current_fast() -> *mut GooAllocator {
    match thread_slot::thread_allocator_fast() {
        Some(t) if t.is_null() => default_allocator(),
        Some(t) => t,
        None => ptr::null_mut(),
    }
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
/// stats cleared.
pub(crate) fn reset() {
    DEFAULT.store(ptr::null_mut(), Release);
    thread_slot::set_thread_allocator(ptr::null_mut());
    // SAFETY: the built-in is always a live library allocator.
    let stats = unsafe { Managed::<System>::stats(builtin()) };
    stats.set_limit(0);
    stats.reset();
    INITIALIZED.store(false, Release);
}
