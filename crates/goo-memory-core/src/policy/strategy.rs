//! Out-of-memory strategies: what happens when a request cannot be met. One implementation,
//! applied by the front door to every allocator, C-made or not.

use crate::policy::fork::held_across_forks;
use core::ffi::c_void;
use core::sync::atomic::{AtomicPtr, Ordering::*};
use std::cell::Cell;
use std::io::Write;

use crate::raw::{AllocOptions, AllocStrategy, GooAllocator, OutOfMemFn};

/// How many times `Retry` and `Gc` call their hook and try again before giving up.
pub const MAX_RETRIES: u32 = 3;

/// `void (*GooGcFn)(void* user_data, size_t bytes_needed)`: a collector hook that tries to free
/// at least `bytes_needed` bytes, called by allocators with the `Gc` strategy
/// ([`set_gc_handler`]).
///
/// ```
/// use core::alloc::Layout;
/// use core::ffi::c_void;
/// use goo_memory_core::{set_gc_handler, AllocStrategy, Allocator, GcFn, System, MAX_RETRIES};
/// /// A collector that finds nothing to free: it only counts the calls.
/// unsafe extern "C" fn collect(user_data: *mut c_void, _bytes_needed: usize) {
///     // SAFETY: `user_data` is the counter below, alive while the hook is set.
///     unsafe { *user_data.cast::<u32>() += 1 };
/// }
/// let mut calls = 0u32;
/// let hook: GcFn = collect;
/// // SAFETY: `calls` outlives the hook (cleared below), and only this thread allocates.
/// unsafe { set_gc_handler(Some(hook), (&raw mut calls).cast()) };
/// let heap = Allocator::with_strategy(System, AllocStrategy::Gc);
/// heap.handle().set_limit(1000);
/// assert!(heap.allocate(Layout::from_size_align(2000, 8).unwrap()).is_err());
/// // SAFETY: clearing registers nothing to call.
/// unsafe { set_gc_handler(None, core::ptr::null_mut()) };
/// assert_eq!(calls, MAX_RETRIES, "asked once per retry, then the request failed");
/// ```
pub type GcFn = unsafe extern "C" fn(user_data: *mut c_void, bytes_needed: usize);

/// The process-wide out-of-memory handler, used by allocators whose `out_of_mem_fn` is null.
static OOM_HANDLER: AtomicPtr<()> = AtomicPtr::new(core::ptr::null_mut());

struct GcHook {
    f: Option<GcFn>,
    user_data: *mut c_void,
}
// SAFETY: the user data is only handed back to the hook, which the registrant made callable from
// any allocating thread.
unsafe impl Send for GcHook {}

held_across_forks! {
    /// The collector hook of the `Gc` strategy.
    static GC_HOOK: GcHook = GcHook { f: None, user_data: core::ptr::null_mut() }, at Leaf, locked by gc_hook_lock;
}
/// Fast "is a GC hook set" check without the lock.
static GC_SET: AtomicPtr<c_void> = AtomicPtr::new(core::ptr::null_mut());

thread_local! {
    /// Set while this thread runs a hook: a failure inside a hook does not retry again.
    static IN_HOOK: Cell<bool> = const { Cell::new(false) };
}

/// Sets the process-wide out-of-memory handler (None clears it).
///
/// # Safety
/// `handler` must be safe to call, with no argument, on any thread that allocates through an
/// allocator with the `Retry` strategy, at any time until it is replaced or cleared (a call
/// that already read it may still run it after that).
pub unsafe fn set_out_of_mem_handler(handler: Option<OutOfMemFn>) {
    OOM_HANDLER.store(handler.map_or(core::ptr::null_mut(), |f| f as *mut ()), Release);
}

fn global_oom_handler() -> Option<OutOfMemFn> {
    let raw = OOM_HANDLER.load(Acquire);
    // SAFETY: non-null values were stored from an `OutOfMemFn` in `set_out_of_mem_handler`.
    (!raw.is_null()).then(|| unsafe { core::mem::transmute::<*mut (), OutOfMemFn>(raw) })
}

/// Sets the collector hook used by the `Gc` strategy (None clears it).
///
/// # Safety
/// `f` must be safe to call with `user_data` and any size, on any thread that allocates
/// through an allocator with the `Gc` strategy, at any time until it is replaced or cleared (a
/// call that already read it may still run it after that): `user_data` must stay valid that
/// long.
pub unsafe fn set_gc_handler(f: Option<GcFn>, user_data: *mut c_void) {
    let mut hook = gc_hook_lock();
    hook.f = f;
    hook.user_data = user_data;
    GC_SET.store(f.map_or(core::ptr::null_mut(), |f| f as *mut c_void), Release);
}

fn gc_hook() -> Option<(GcFn, *mut c_void)> {
    if GC_SET.load(Acquire).is_null() {
        return None;
    }
    let hook = gc_hook_lock();
    hook.f.map(|f| (f, hook.user_data))
}

/// Clears both hooks (library cleanup).
pub(crate) fn reset() {
    // SAFETY: clearing registers nothing to call.
    unsafe {
        set_out_of_mem_handler(None);
        set_gc_handler(None, core::ptr::null_mut());
    }
}

/// Why a request failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Failure {
    /// The backend returned null.
    OutOfMemory,
    /// The size overflowed or the alignment is not a power of two: retrying cannot help.
    InvalidRequest,
    /// The allocator has no `alloc` function.
    NoFunction,
    /// A callback refused the request (fault injection, quotas).
    Intercepted,
    /// The allocator's limit on live bytes would be passed.
    LimitReached,
    /// The backend refused a misused block, and reported it (`policy::refusal`): retrying
    /// cannot help, and a handler has nothing to free for it.
    Misuse,
}

/// Applies `allocator`'s strategy after a failed request; `attempt` retries it. Returns the
/// block a retry produced, or null. Does not count the failure (the caller does, once).
///
/// # Safety
/// `allocator` must be valid for reads.
#[cold]
#[inline(never)]
pub(crate) unsafe fn apply(
    allocator: *const GooAllocator,
    failure: Failure,
    size: usize,
    align: usize,
    options: AllocOptions,
    mut attempt: impl FnMut() -> *mut u8,
) -> *mut u8 {
    // SAFETY: caller guarantees `allocator` is readable.
    let strategy = AllocStrategy::from_raw(unsafe { (*allocator).strategy });
    let retryable = matches!(failure, Failure::OutOfMemory | Failure::Intercepted | Failure::LimitReached)
        && !IN_HOOK.get();
    let mut block = core::ptr::null_mut();
    match strategy {
        AllocStrategy::Null => {}
        AllocStrategy::Panic => die(allocator, failure, size, align, "strategy PANIC"),
        // The handler and the hook are read again before each retry: one that clears itself
        // (and frees its data) is not called again.
        AllocStrategy::Retry if retryable => {
            for _ in 0..MAX_RETRIES {
                // SAFETY: caller guarantees `allocator` is readable.
                let Some(handler) = unsafe { (*allocator).out_of_mem_fn }.or_else(global_oom_handler) else {
                    break;
                };
                // SAFETY: the handler was registered as a callable `void (*)(void)`.
                in_hook(|| unsafe { handler() });
                block = attempt();
                if !block.is_null() {
                    break;
                }
            }
        }
        AllocStrategy::Gc if retryable => {
            for _ in 0..MAX_RETRIES {
                let Some((hook, user_data)) = gc_hook() else { break };
                // SAFETY: the hook was registered with this user data.
                in_hook(|| unsafe { hook(user_data, size) });
                block = attempt();
                if !block.is_null() {
                    break;
                }
            }
        }
        AllocStrategy::Retry | AllocStrategy::Gc => {}
    }
    if block.is_null() && options.contains(AllocOptions::NOFAIL) {
        die(allocator, failure, size, align, "GOO_ALLOC_NOFAIL");
    }
    block
}

fn in_hook(f: impl FnOnce()) {
    IN_HOOK.set(true);
    f();
    IN_HOOK.set(false);
}

/// Prints what failed and aborts. Writes with a stack buffer: memory may be exhausted.
#[cold]
fn die(allocator: *const GooAllocator, failure: Failure, size: usize, align: usize, why: &str) -> ! {
    let what = match failure {
        Failure::OutOfMemory => "out of memory",
        Failure::InvalidRequest => "invalid request (size overflow or bad alignment)",
        Failure::NoFunction => "allocator has no alloc function",
        Failure::Intercepted => "refused by an allocation callback",
        Failure::LimitReached => "the allocator's limit on live bytes",
        Failure::Misuse => "a misused block, refused (reported above)",
    };
    let mut buf = [0u8; 256];
    let mut cursor = std::io::Cursor::new(&mut buf[..]);
    let _ = writeln!(
        cursor,
        "goo-memory: allocation of {size} bytes (alignment {align}) from allocator {allocator:p} failed: {what} [{why}]; aborting"
    );
    let len = cursor.position() as usize;
    // SAFETY: writing an initialised buffer to fd 2.
    unsafe { libc::write(2, buf.as_ptr().cast(), len) };
    std::process::abort();
}
