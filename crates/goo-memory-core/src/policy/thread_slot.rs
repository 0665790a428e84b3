//! Per-thread slots: each live thread may own one of a small, fixed number of slots, which
//! index per-thread data kept outside thread-locals (stats shards, the thread's current
//! allocator). A thread finds the slot it owns from its thread pointer, without a thread-local
//! access: in a shared library that access is a call to `__tls_get_addr` (and registers saved
//! around it) on every allocation. Threads that could not get their home slot, and every
//! thread during its exit, take the ordinary thread-local path.

use crate::policy::fork::{self, held_across_forks, ForkHooks, Nesting};
use core::ptr;
use core::sync::atomic::{AtomicPtr, AtomicU64, AtomicUsize, Ordering::*};
use std::cell::Cell;

use crate::raw::GooAllocator;

/// Thread slots with a private shard; threads beyond this share the overflow shard.
pub(crate) const SLOTS: usize = 64;
/// Slot value of a thread that has not claimed one yet.
const UNCLAIMED: usize = usize::MAX;
/// Slot value of a thread that could not claim one (all taken, or it is exiting).
pub(crate) const OVERFLOW: usize = SLOTS;

/// Bit `i` set: slot `i` belongs to a live thread.
static SLOTS_TAKEN: AtomicU64 = AtomicU64::new(0);

/// `KEYS[i]`: the [`thread_key`] of the thread that owns slot `i` when `i` is that thread's
/// [`home`] slot, else 0. Written only by that thread (when it claims the slot and when it gives
/// it back), so a thread that reads its own key there owns the slot.
static KEYS: [AtomicUsize; SLOTS] = [const { AtomicUsize::new(0) }; SLOTS];

/// A value unique among live threads, read without a thread-local access: the thread pointer
/// (on x86-64 the TCB's self-pointer at `%fs:0`, on AArch64 `tpidr_el0`). Never 0.
#[cfg(all(target_os = "linux", target_arch = "x86_64", not(miri)))]
#[inline(always)]
pub(crate) fn thread_key() -> usize {
    let key: usize;
    // SAFETY: the x86-64 TLS ABI (glibc and musl) keeps a pointer to the thread control block
    // in its first word, at `%fs:0`; reading it has no side effect and it is constant for the
    // thread.
    unsafe {
        core::arch::asm!("mov {}, qword ptr fs:[0]", out(reg) key, options(nostack, readonly, preserves_flags, pure));
    }
    key
}

/// See the x86-64 version.
#[cfg(all(target_os = "linux", target_arch = "aarch64", not(miri)))]
#[inline(always)]
pub(crate) fn thread_key() -> usize {
    let key: usize;
    // SAFETY: `tpidr_el0` holds the thread pointer, set by the C library for every thread;
    // reading it touches no memory.
    unsafe {
        core::arch::asm!("mrs {}, tpidr_el0", out(reg) key, options(nomem, nostack, preserves_flags, pure));
    }
    key
}

/// Elsewhere (and under Miri): the address of a thread-local, unique among live threads too,
/// found with an ordinary thread-local access.
#[cfg(not(all(target_os = "linux", any(target_arch = "x86_64", target_arch = "aarch64"), not(miri))))]
#[inline(always)]
pub(crate) fn thread_key() -> usize {
    thread_local!(static ANCHOR: u8 = const { 0 });
    ANCHOR.with(|a| a as *const u8 as usize)
}

/// A number unique to the calling thread for the process's life: never 0, never given to
/// another thread. [`thread_key`] is unique among live threads only (a new thread may have an
/// exited one's thread pointer); this is for what a thread owns past its exit (a scope it did
/// not end). A thread-local access and, once per thread, an atomic increment: not for hot paths.
pub(crate) fn thread_serial() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    // No destructor: readable for the thread's whole life, its exit included.
    thread_local!(static SERIAL: Cell<u64> = const { Cell::new(0) });
    SERIAL.with(|serial| {
        if serial.get() == 0 {
            serial.set(NEXT.fetch_add(1, Relaxed));
        }
        serial.get()
    })
}

/// The slot a thread with this key takes when it is free (a multiplicative hash of the key:
/// thread pointers sit at regular distances, their low bits say little).
#[inline(always)]
fn home(key: usize) -> usize {
    const _: () = assert!(SLOTS == 64);
    ((key as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 58) as usize
}

thread_local! {
    // No destructor, so it stays readable while the thread's other TLS values are destroyed.
    static SLOT: Cell<usize> = const { Cell::new(UNCLAIMED) };
}

/// The key whose destructor gives a thread's slot back when the thread exits (its value: the
/// slot + 1). A pthread key rather than a thread-local with a destructor: a thread may claim
/// its slot late in its exit, in another key's destructor (a program's per-thread cleanup that
/// allocates), after the C library ran the thread-locals' destructors, so one registered then
/// would never run and the slot would stay taken for good; the C library runs key destructors
/// again while a destructor sets values (up to `PTHREAD_DESTRUCTOR_ITERATIONS` rounds).
fn release_key() -> Option<libc::pthread_key_t> {
    static KEY: std::sync::OnceLock<Option<libc::pthread_key_t>> = std::sync::OnceLock::new();
    *KEY.get_or_init(|| {
        let mut key: libc::pthread_key_t = 0;
        // SAFETY: `key` is written by the call; `release_at_exit` never unwinds.
        (unsafe { libc::pthread_key_create(&mut key, Some(release_at_exit)) } == 0).then_some(key)
    })
}

/// The release key's destructor: `value` is the exiting thread's slot + 1.
unsafe extern "C" fn release_at_exit(value: *mut core::ffi::c_void) {
    let slot = value.addr().wrapping_sub(1);
    // Allocations made later in this thread's exit go to the shared shard.
    let _ = SLOT.try_with(|s| s.set(OVERFLOW));
    if slot < SLOTS {
        // The fast path stops finding the slot before anyone else can take it.
        if KEYS[slot].load(Relaxed) == thread_key() {
            KEYS[slot].store(0, Relaxed);
            // Per-slot state kept elsewhere (the thread caches) lets go.
            release_hook(slot, SlotEnd::Exit);
        }
        CURRENT[slot].store(ptr::null_mut(), SeqCst);
        // Release: this thread's shard writes happen-before the next owner's.
        SLOTS_TAKEN.fetch_and(!(1u64 << slot), Release);
    }
}

/// How a home slot's thread let it go, for the owners of per-slot state ([`RELEASE_HOOKS`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SlotEnd {
    /// The thread is exiting, between requests: its state is whole, and may be handed on.
    Exit,
    /// The thread is gone without ending what it was doing (a fork's child lacks it): its state
    /// may be half changed, and must be dropped without being read (what it held is lost).
    Lost,
}

/// What runs when a home slot's thread lets it go, set by the owners of per-slot state kept
/// outside this module (the system allocator's and the heap's thread caches) when they first
/// keep some: plain functions of the slot and how it ended, stored as pointers. Null: a free
/// entry.
static RELEASE_HOOKS: [AtomicPtr<()>; 4] = [const { AtomicPtr::new(ptr::null_mut()) }; 4];

/// Adds a function run when a home slot's thread lets it go (see [`RELEASE_HOOKS`]).
/// Idempotent.
pub(crate) fn on_home_slot_release(hook: fn(usize, SlotEnd)) {
    let hook = hook as *mut ();
    for entry in &RELEASE_HOOKS {
        match entry.compare_exchange(ptr::null_mut(), hook, AcqRel, Acquire) {
            Ok(_) => return,
            Err(present) if present == hook => return,
            Err(_) => {}
        }
    }
}

fn release_hook(slot: usize, end: SlotEnd) {
    for entry in &RELEASE_HOOKS {
        let hook = entry.load(Acquire);
        if !hook.is_null() {
            // SAFETY: the only non-null values ever stored are `fn(usize, SlotEnd)`s
            // (`on_home_slot_release`).
            let hook = unsafe { core::mem::transmute::<*mut (), fn(usize, SlotEnd)>(hook) };
            hook(slot, end);
        }
    }
}

/// The child's side of a fork (see [`forget_other_threads`]); takes no lock.
static FORK_HOOKS: ForkHooks = ForkHooks::new(Nesting::Leaf, hold_nothing, after_fork);

fn hold_nothing() {}

fn after_fork() {
    if fork::in_child() {
        forget_other_threads();
    }
}

/// In a fork's child, which has only the forking thread: the slots of the parent's other
/// threads become free. Their threads will never give them back, and the C library hands
/// their thread pointers (cached stacks) to the child's new threads, which would otherwise find
/// the slots as their own, with the thread allocators of threads that no longer exist. Their
/// block caches may be half changed (a thread may have been inside a request at the fork):
/// they are dropped, blocks and all ([`SlotEnd::Lost`]). Their stats shards stay (counts).
fn forget_other_threads() {
    let mine = SLOT.get();
    let taken = SLOTS_TAKEN.load(Relaxed);
    for slot in (0..SLOTS).filter(|&s| s != mine) {
        let home = KEYS[slot].load(Relaxed) != 0;
        KEYS[slot].store(0, Relaxed);
        CURRENT[slot].store(ptr::null_mut(), Relaxed);
        if home || taken & (1 << slot) != 0 {
            release_hook(slot, SlotEnd::Lost);
        }
    }
    SLOTS_TAKEN.store(if mine < SLOTS { 1 << mine } else { 0 }, Relaxed);
}

#[cold]
fn claim_slot() -> usize {
    // Until the slot is ours, this thread counts in the shared shard: making the release key
    // below may allocate, and with the library as Rust's global allocator that allocation
    // comes back here. It must not claim a second slot.
    SLOT.set(OVERFLOW);
    fork::hold_across_fork(&FORK_HOOKS);
    let key = thread_key();
    let want = home(key);
    let mut taken = SLOTS_TAKEN.load(Relaxed);
    let slot = loop {
        if taken == u64::MAX {
            break OVERFLOW;
        }
        // The home slot if it is free (then the fast path finds it), else the first free one.
        let free = if taken & (1 << want) == 0 { want } else { (!taken).trailing_zeros() as usize };
        match SLOTS_TAKEN.compare_exchange_weak(taken, taken | (1 << free), Acquire, Relaxed) {
            Ok(_) => break free,
            Err(now) => taken = now,
        }
    };
    // Without the release registered the slot must not be kept (nobody would give it back).
    if slot < SLOTS {
        let registered = release_key().is_some_and(|key| {
            // SAFETY: a key this module made; the value is a plain number, never dereferenced.
            unsafe { libc::pthread_setspecific(key, ptr::without_provenance_mut(slot + 1)) == 0 }
        });
        if !registered {
            SLOTS_TAKEN.fetch_and(!(1u64 << slot), Release);
            return OVERFLOW;
        }
    }
    if slot == want {
        // The current allocator first: once the key is there, the fast path reads it.
        store_current(slot, THREAD.get());
        KEYS[slot].store(key, Relaxed);
    }
    SLOT.set(slot);
    slot
}

#[inline(always)]
pub(crate) fn current_slot() -> usize {
    let slot = SLOT.get();
    if slot != UNCLAIMED {
        slot
    } else {
        claim_slot()
    }
}

/// The slot this thread owns if it is the thread's home slot (no thread-local access).
#[inline(always)]
pub(crate) fn home_slot() -> Option<usize> {
    let key = thread_key();
    let slot = home(key);
    (KEYS[slot].load(Relaxed) == key).then_some(slot)
}

thread_local! {
    /// The thread allocator (see `policy::default`): the source of truth.
    static THREAD: Cell<*mut GooAllocator> = const { Cell::new(ptr::null_mut()) };
}

/// `CURRENT[i]`: what requests naming no allocator use on the thread whose home slot `i` is,
/// so that its fast path finds it with one load: the thread allocator, or, when it has none,
/// the default allocator tagged with [`FOLLOWS`] (tagged null while no default is chosen; plain
/// null while no thread owns the slot). Written by the slot's thread, and by [`follow_default`]
/// for a slot that follows the default:
///
/// ```text
/// CURRENT[i] == THREAD of i's owner               if that is not null
/// CURRENT[i] == DEFAULT | FOLLOWS                  otherwise, once every setter of the default
///                                                  and the owner have returned
/// ```
static CURRENT: [AtomicPtr<GooAllocator>; SLOTS] = [const { AtomicPtr::new(ptr::null_mut()) }; SLOTS];

/// The tag of a [`CURRENT`] entry that follows the default (allocators are aligned, so the low
/// bit of their address is free).
const FOLLOWS: usize = 1;

/// The default allocator as [`follow_default`] last published it (null: none chosen yet).
static DEFAULT: AtomicPtr<GooAllocator> = AtomicPtr::new(ptr::null_mut());

held_across_forks! {
    /// Serialises [`follow_default`] calls.
    static PUBLISHING: () = (), at Leaf, locked by publishing;
}

/// Makes every slot that follows the default follow `default` (called by `policy::default`
/// each time the default changes).
pub(crate) fn follow_default(default: *mut GooAllocator) {
    let _serial = publishing();
    // SeqCst with the owners' store-then-load in `store_current`: either this walk sees an
    // owner's stale value and replaces it, or the owner sees the new default.
    DEFAULT.store(default, SeqCst);
    let want = default.map_addr(|a| a | FOLLOWS);
    for current in &CURRENT {
        let mut seen = current.load(SeqCst);
        while seen.addr() & FOLLOWS != 0 && seen != want {
            match current.compare_exchange(seen, want, SeqCst, SeqCst) {
                Ok(_) => break,
                Err(now) => seen = now,
            }
        }
    }
}

/// Sets `CURRENT[slot]` (the calling thread's home slot) for a thread allocator `thread`
/// (null: none, so the default, tagged).
fn store_current(slot: usize, thread: *mut GooAllocator) {
    if !thread.is_null() {
        CURRENT[slot].store(thread, SeqCst);
        return;
    }
    loop {
        let default = DEFAULT.load(SeqCst);
        CURRENT[slot].store(default.map_addr(|a| a | FOLLOWS), SeqCst);
        // A default published meanwhile may have passed this slot while it held something
        // else: store again until the default read is still the one published.
        if DEFAULT.load(SeqCst) == default {
            return;
        }
    }
}

/// The allocator a [`CURRENT`] entry names (the thread's or the default).
#[inline(always)]
fn untagged(current: *mut GooAllocator) -> *mut GooAllocator {
    current.map_addr(|a| a & !FOLLOWS)
}

/// The calling thread's allocator (null if none), from its home slot when it owns one.
#[inline(always)]
pub(crate) fn thread_allocator() -> *mut GooAllocator {
    match home_slot() {
        Some(slot) => {
            let current = CURRENT[slot].load(Relaxed);
            if current.addr() & FOLLOWS != 0 {
                ptr::null_mut()
            } else {
                current
            }
        }
        None => THREAD.get(),
    }
}

/// The calling thread's home slot and current allocator (its own, else the default; null while
/// no default is chosen) when it owns the slot, found without a call; `None` when only the
/// thread-local knows.
#[inline(always)]
pub(crate) fn current_fast() -> Option<(usize, *mut GooAllocator)> {
    home_slot().map(|slot| (slot, untagged(CURRENT[slot].load(Relaxed))))
}

/// Sets the calling thread's allocator; returns the previous one.
pub(crate) fn set_thread_allocator(allocator: *mut GooAllocator) -> *mut GooAllocator {
    let old = THREAD.replace(allocator);
    if let Some(slot) = home_slot() {
        if SLOT.get() != slot {
            adopt(slot);
        }
        store_current(slot, allocator);
    }
    old
}

/// The calling thread finds `slot` as its home slot but never claimed it: the slot's thread
/// died without giving it back (it claimed it in the C library's last round of key
/// destructors, after which none runs), and the C library gave this thread the same thread
/// pointer. The slot becomes this thread's, given back at its exit, so that what it sets is not
/// handed on to the next thread with that pointer; if the release cannot be registered, the
/// slot is freed instead.
#[cold]
fn adopt(slot: usize) {
    let registered = release_key().is_some_and(|key| {
        // SAFETY: a key this module made; the value is a plain number, never dereferenced.
        unsafe { libc::pthread_setspecific(key, ptr::without_provenance_mut(slot + 1)) == 0 }
    });
    if registered {
        SLOT.set(slot);
    } else {
        KEYS[slot].store(0, Relaxed);
        CURRENT[slot].store(ptr::null_mut(), SeqCst);
        SLOTS_TAKEN.fetch_and(!(1u64 << slot), Release);
    }
}

/// Every other thread's slot whose current allocator is `allocator`, being destroyed, follows
/// the default instead, so that no thread can reach it through a slot: a slot kept by a thread
/// that died without giving it back (see [`adopt`]) would hand it to the next thread with that
/// thread pointer. The calling thread's own slot is left to the allocator's teardown (a scope
/// ending gives its thread the previous allocator back).
pub(crate) fn forget_allocator(allocator: *mut GooAllocator) {
    let mine = home_slot();
    let others = || CURRENT.iter().enumerate().filter(move |&(slot, _)| Some(slot) != mine);
    // Nearly always no slot names it (a thread allocator is unset before it is destroyed):
    // a scan of the slots, then nothing.
    if !others().any(|(_, c)| c.load(Relaxed) == allocator) {
        return;
    }
    let _serial = publishing();
    let want = DEFAULT.load(SeqCst).map_addr(|a| a | FOLLOWS);
    for (_, current) in others() {
        let _ = current.compare_exchange(allocator, want, SeqCst, SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The thread allocator reads the same through both paths, before and after the thread
    /// claims its slot, and each thread sees only its own.
    #[test]
    fn the_slot_follows_the_thread_allocator() {
        // Distinct non-null values, never dereferenced.
        std::thread::scope(|t| {
            for addr in [8usize, 16] {
                t.spawn(move || {
                    let mine = ptr::without_provenance_mut::<GooAllocator>(addr);
                    assert!(thread_allocator().is_null());
                    assert!(set_thread_allocator(mine).is_null());
                    assert_eq!(thread_allocator(), mine);
                    current_slot(); // claims a slot (the home one if free)
                    assert_eq!(thread_allocator(), mine);
                    assert_eq!(THREAD.get(), mine);
                    assert_eq!(set_thread_allocator(ptr::null_mut()), mine);
                    assert!(thread_allocator().is_null());
                    set_thread_allocator(mine);
                    assert_eq!(thread_allocator(), mine);
                });
            }
        });
    }
}
