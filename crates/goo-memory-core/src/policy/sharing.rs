//! What the allocators that threads share have in common: per-thread lanes that threads
//! allocate from without a lock ([`Lanes`]: the shared arena's bump pointers, the shared pool's
//! free lists), the gate that tells a reset, a mark or a rewind that no thread is inside one
//! (its fences, [`entering_fence`] and [`quiescing_fence`], serve the limited stats' grants
//! too),
//! and a lock that refuses re-entry instead of deadlocking ([`ReentryLock`]: the slow paths'
//! lock, and the locked wrapper's).
//!
//! # Lanes
//! Lane `i < SLOTS` belongs to the thread that holds thread slot `i` (`policy::thread_slot`):
//! only that thread changes it outside the owner's lock, so its fast path is loads and stores
//! without a locked instruction. A slot outlives its thread: the next thread to claim it takes
//! the lane over as it is (the slot's release and claim order the two threads' accesses).
//! Lane `SLOTS` (the overflow lane) serves the threads that hold no slot (more than `SLOTS` live threads,
//! or a thread in its exit); it is used only under the owner's lock.
//!
//! # The gate
//! A thread enters its lane ([`Lanes::enter`]) before it touches it and leaves when done: it
//! sets the lane's `busy` flag, then reads `frozen`. A thread that wants every lane still
//! ([`Lanes::quiesce`], under the owner's lock) sets `frozen`, then reads every `busy` flag.
//! That is Dekker's pattern: each side's store must be ordered before its load, so that at least
//! one of them sees the other's. A full fence on both sides would cost every allocation a locked
//! instruction (about 20 cycles, several times an arena's bump). So the fast side orders its
//! store and load with a compiler fence only, and the quiescing side, which is rare, makes
//! every running thread of the process execute a full memory barrier with
//! `membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED)` (Linux 4.14 and later; userspace RCU's
//! membarrier flavour and folly's asymmetric fences work this way): a thread's store and load
//! either both come before that barrier (the quiescing side then sees `busy`) or the load comes
//! after it (and sees `frozen`). Where the call is not available (other systems, Miri, a
//! kernel without it, found once per process) both sides use `fence(SeqCst)`.

use core::ops::Deref;
use core::sync::atomic::{compiler_fence, fence, AtomicBool, AtomicUsize, Ordering::*};
use std::sync::{Mutex, MutexGuard, TryLockError};

use crate::policy::thread_slot::{thread_key, SLOTS};

/// Lanes per shared allocator: one per thread slot, and the overflow lane (lane `SLOTS`, the
/// slot value of threads that hold none), used under the owner's lock only.
pub(crate) const LANES: usize = SLOTS + 1;
const _: () = assert!(SLOTS.is_power_of_two());

/// One thread's lane: a cache line (or more) of its own, so that threads' fast paths never
/// share one.
#[repr(C, align(64))]
struct Lane<T> {
    /// The owning thread is inside (between [`Lanes::enter`] and the end of its [`Entered`]).
    busy: AtomicBool,
    state: T,
}

/// Per-thread lanes with the gate described in the module documentation.
///
/// Equations (with `Q` true while a [`Quiesced`] guard is alive):
/// ```text
/// Q               =>  frozen,  busy(l) == false for every lane l (entries are refused)
/// !Q              =>  !frozen  (outside `quiesce`)
/// busy(l)         =>  the thread holding slot l is between `enter` and the end of its entry
/// ```
pub(crate) struct Lanes<T> {
    lanes: Box<[Lane<T>; LANES]>,
    frozen: AtomicBool,
    /// The fences are asymmetric (membarrier on the quiescing side); else `fence(SeqCst)`
    /// on both. Fixed at creation, before any other thread can see the lanes.
    asymmetric: bool,
}

impl<T> Lanes<T> {
    /// Lanes whose states `make` builds.
    pub(crate) fn new(mut make: impl FnMut() -> T) -> Self {
        Lanes {
            lanes: Box::new(core::array::from_fn(|_| Lane { busy: AtomicBool::new(false), state: make() })),
            frozen: AtomicBool::new(false),
            asymmetric: asymmetric_fences(),
        }
    }

    /// With `fence(SeqCst)` on both sides of the gate (tests of the fallback).
    #[cfg(test)]
    pub(crate) fn symmetric(mut self) -> Self {
        self.asymmetric = false;
        self
    }

    /// The state of lane `i`, for the holder of the owner's lock or of a [`Quiesced`] guard
    /// (and for a lane's owner reading what only it writes).
    #[inline(always)]
    pub(crate) fn get(&self, i: usize) -> &T {
        &self.lanes[i].state
    }

    /// Enters the lane of `slot` (a thread slot the calling thread holds, `< SLOTS`): `None`
    /// (nothing entered) while the lanes are frozen. Calls nothing.
    #[inline(always)]
    pub(crate) fn enter(&self, slot: usize) -> Option<Entered<'_, T>> {
        debug_assert!(slot < SLOTS);
        // (`& (SLOTS - 1)` keeps a provably in-bounds index: no panic path here.)
        let lane = &self.lanes[slot & (SLOTS - 1)];
        lane.busy.store(true, Relaxed);
        entering_fence(self.asymmetric);
        // Acquire: a quiesced thread's changes to the lane (a reset) are seen once it unfroze.
        if self.frozen.load(Acquire) {
            crate::policy::cold_path();
            lane.busy.store(false, Release);
            return None;
        }
        Some(Entered { lane })
    }

    /// Freezes every lane if no thread is inside one: `None` (nothing changed) when one is, or
    /// when the barrier failed. The caller holds the owner's lock (one quiescer at a time; the
    /// slow paths, which change lanes under it, are kept out).
    pub(crate) fn quiesce(&self) -> Option<Quiesced<'_, T>> {
        self.frozen.store(true, Relaxed);
        let fenced = quiescing_fence(self.asymmetric);
        // Acquire: what a thread did inside its lane happens before what the quiescer does.
        if !fenced || self.lanes.iter().any(|l| l.busy.load(Acquire)) {
            self.frozen.store(false, Release);
            return None;
        }
        Some(Quiesced { lanes: self })
    }

    /// Whether a thread is inside its lane now (tests).
    #[cfg(test)]
    pub(crate) fn set_busy(&self, slot: usize, busy: bool) {
        self.lanes[slot].busy.store(busy, SeqCst);
    }
}

/// A lane its thread is inside: derefs to the lane's state; leaving is dropping it.
pub(crate) struct Entered<'a, T> {
    lane: &'a Lane<T>,
}

impl<T> Deref for Entered<'_, T> {
    type Target = T;
    #[inline(always)]
    fn deref(&self) -> &T {
        &self.lane.state
    }
}

impl<T> Drop for Entered<'_, T> {
    #[inline(always)]
    fn drop(&mut self) {
        // Release: what the thread did inside happens before a quiescer that sees it out.
        self.lane.busy.store(false, Release);
    }
}

/// Every lane frozen, no thread inside: the holder may change any lane. Unfreezes on drop.
pub(crate) struct Quiesced<'a, T> {
    lanes: &'a Lanes<T>,
}

impl<T> Quiesced<'_, T> {
    /// Every lane's state, with its index.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (usize, &T)> {
        self.lanes.lanes.iter().map(|l| &l.state).enumerate()
    }
}

impl<T> Drop for Quiesced<'_, T> {
    fn drop(&mut self) {
        // Release: the changes made while frozen are seen by the next thread to enter.
        self.lanes.frozen.store(false, Release);
    }
}

/// Whether a gate made now may use the asymmetric fences (see the module documentation).
pub(crate) fn asymmetric_fences() -> bool {
    membarrier::available()
}

/// The entering side's fence of a gate: orders the thread's `busy` store before its load of
/// `frozen`.
#[inline(always)]
pub(crate) fn entering_fence(asymmetric: bool) {
    if asymmetric {
        compiler_fence(SeqCst);
    } else {
        fence(SeqCst);
    }
}

/// The quiescing side's fence of a gate: after its `frozen` store, before it reads the `busy`
/// flags; false if the barrier failed (then nothing may be assumed).
pub(crate) fn quiescing_fence(asymmetric: bool) -> bool {
    if asymmetric {
        membarrier::barrier()
    } else {
        fence(SeqCst);
        true
    }
}

/// The asymmetric barrier: `membarrier(2)` where the kernel has the private expedited command.
#[cfg(all(target_os = "linux", not(miri)))]
mod membarrier {
    use core::sync::atomic::{AtomicU8, Ordering::*};

    const QUERY: libc::c_long = 0;
    const PRIVATE_EXPEDITED: libc::c_long = 1 << 3;
    const REGISTER_PRIVATE_EXPEDITED: libc::c_long = 1 << 4;

    /// 0: not asked yet; 1: registered; 2: not available.
    static STATE: AtomicU8 = AtomicU8::new(0);

    /// Whether the barrier is available to this process (registering it on first use).
    pub(super) fn available() -> bool {
        match STATE.load(Acquire) {
            1 => true,
            2 => false,
            _ => register(),
        }
    }

    #[cold]
    fn register() -> bool {
        // `GOO_MEMBARRIER=0` in the environment keeps the symmetric fences (for comparisons).
        let off = std::env::var_os("GOO_MEMBARRIER").is_some_and(|v| v == "0");
        // SAFETY: membarrier takes and returns integers only; QUERY and the registration have
        // no effect but the registration itself (idempotent: threads racing here agree).
        let ok = !off
            && unsafe {
                let commands = libc::syscall(libc::SYS_membarrier, QUERY, 0, 0);
                let wanted = PRIVATE_EXPEDITED | REGISTER_PRIVATE_EXPEDITED;
                commands >= 0
                    && commands & wanted == wanted
                    && libc::syscall(libc::SYS_membarrier, REGISTER_PRIVATE_EXPEDITED, 0, 0) == 0
            };
        STATE.store(if ok { 1 } else { 2 }, Release);
        ok
    }

    /// A full memory barrier on every running thread of the process; false if the call failed.
    pub(super) fn barrier() -> bool {
        // SAFETY: as above; the process registered for this command (`available`).
        unsafe { libc::syscall(libc::SYS_membarrier, PRIVATE_EXPEDITED, 0, 0) == 0 }
    }
}

/// Elsewhere: symmetric fences.
#[cfg(not(all(target_os = "linux", not(miri))))]
mod membarrier {
    pub(super) fn available() -> bool {
        false
    }

    pub(super) fn barrier() -> bool {
        false
    }
}

/// A mutex that knows which thread holds it, so that the same thread asking again (a callback
/// or a parent allocator calling back into the allocator that holds it) is refused instead of
/// deadlocking. Poisoning is ignored: nothing that runs under it leaves its data half changed
/// on a panic (the library's code under it does not panic; what it calls through C cannot
/// unwind).
pub(crate) struct ReentryLock<T> {
    mutex: Mutex<T>,
    /// The [`thread_key`] of the holder, 0 when free.
    holder: AtomicUsize,
}

/// Why [`ReentryLock::lock`] or [`ReentryLock::try_lock`] gave no guard.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LockRefused {
    /// The calling thread holds it already.
    Reentry,
    /// Another thread holds it (`try_lock` only).
    Held,
}

impl<T> ReentryLock<T> {
    pub(crate) const fn new(value: T) -> Self {
        ReentryLock { mutex: Mutex::new(value), holder: AtomicUsize::new(0) }
    }

    /// The lock, waiting for another holder; refused when the calling thread holds it.
    pub(crate) fn lock(&self) -> Result<Held<'_, T>, LockRefused> {
        let me = thread_key();
        // Only this thread stores its own key, so reading it here means it holds the lock.
        if self.holder.load(Relaxed) == me {
            return Err(LockRefused::Reentry);
        }
        let guard = self.mutex.lock().unwrap_or_else(|e| e.into_inner());
        Ok(self.held(guard, me))
    }

    /// The lock if it is free now.
    pub(crate) fn try_lock(&self) -> Result<Held<'_, T>, LockRefused> {
        let me = thread_key();
        if self.holder.load(Relaxed) == me {
            return Err(LockRefused::Reentry);
        }
        match self.mutex.try_lock() {
            Ok(guard) => Ok(self.held(guard, me)),
            Err(TryLockError::Poisoned(e)) => Ok(self.held(e.into_inner(), me)),
            Err(TryLockError::WouldBlock) => Err(LockRefused::Held),
        }
    }

    fn held<'a>(&'a self, guard: MutexGuard<'a, T>, me: usize) -> Held<'a, T> {
        self.holder.store(me, Relaxed);
        Held { guard, holder: &self.holder }
    }
}

/// A held [`ReentryLock`]: derefs to the data.
pub(crate) struct Held<'a, T> {
    guard: MutexGuard<'a, T>,
    holder: &'a AtomicUsize,
}

impl<T> Deref for Held<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.guard
    }
}

impl<T> core::ops::DerefMut for Held<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.guard
    }
}

impl<T> Drop for Held<'_, T> {
    fn drop(&mut self) {
        // Before the mutex unlocks (the guard field drops after this body).
        self.holder.store(0, Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The gate refuses a quiesce while a lane is busy and an entry while frozen, with either
    /// kind of fence.
    #[test]
    fn the_gate_keeps_entries_and_quiesces_apart() {
        for lanes in [Lanes::new(|| 0u8), Lanes::new(|| 0u8).symmetric()] {
            let entered = lanes.enter(3).expect("not frozen");
            assert_eq!(*entered, 0);
            assert!(lanes.quiesce().is_none(), "a thread is inside lane 3");
            drop(entered);
            let quiet = lanes.quiesce().expect("nobody inside");
            assert_eq!(quiet.iter().count(), LANES);
            assert!(lanes.enter(3).is_none(), "frozen");
            drop(quiet);
            assert!(lanes.enter(3).is_some(), "unfrozen");
        }
    }

    /// Two threads racing: one entering and leaving in a loop, the other quiescing and then
    /// checking that nobody is inside while it is frozen.
    #[test]
    fn a_quiesce_never_overlaps_an_entry() {
        let lanes = Lanes::new(|| AtomicUsize::new(0));
        let rounds = if cfg!(miri) { 50 } else { 20_000 };
        std::thread::scope(|s| {
            s.spawn(|| {
                for _ in 0..rounds {
                    if let Some(lane) = lanes.enter(5) {
                        lane.fetch_add(1, Relaxed);
                        lane.fetch_add(1, Relaxed);
                    }
                }
            });
            for _ in 0..rounds / 10 {
                if let Some(quiet) = lanes.quiesce() {
                    // Nobody is inside: the counter is even and stays put.
                    let n = lanes.get(5).load(Relaxed);
                    assert_eq!(n % 2, 0);
                    std::thread::yield_now();
                    assert_eq!(lanes.get(5).load(Relaxed), n);
                    drop(quiet);
                }
            }
        });
    }

    #[test]
    fn the_lock_refuses_reentry_and_reports_a_holder() {
        let lock = ReentryLock::new(5);
        let held = lock.lock().unwrap();
        assert_eq!(*held, 5);
        assert_eq!(lock.lock().err(), Some(LockRefused::Reentry));
        assert_eq!(lock.try_lock().err(), Some(LockRefused::Reentry));
        std::thread::scope(|s| {
            s.spawn(|| assert_eq!(lock.try_lock().err(), Some(LockRefused::Held)));
        });
        drop(held);
        assert!(lock.try_lock().is_ok());
    }
}
