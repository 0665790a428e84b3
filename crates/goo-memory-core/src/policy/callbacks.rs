//! Allocation callbacks: observe every allocation event, or intercept (fail) a request.
//!
//! Registration is thread-safe and lock-free for dispatchers: callbacks live in a fixed table of
//! slots, each guarded by a sequence number (a seqlock), and a global event mask lets the front
//! door skip everything with one relaxed load and a predictable branch when nothing listens.
//! Each event kind also keeps, under a seqlock of its own, what dispatching it calls (the sole
//! listener itself, or the walk through the slots that listen), rebuilt by every change.
//! A callback that allocates does not see its own allocations (a per-thread guard).

use crate::policy::fork::held_across_forks;
use core::ffi::c_void;
use core::sync::atomic::{fence, AtomicBool, AtomicPtr, AtomicU32, AtomicU64, AtomicUsize, Ordering::*};
use std::cell::Cell;

use crate::raw::{AllocOptions, GooAllocator, PLAIN_MAX};

/// Before an allocation or reallocation: return false to make it fail.
pub const EVENT_REQUEST: u32 = 1;
/// After a successful allocation.
pub const EVENT_ALLOC: u32 = 2;
/// After a successful reallocation (`old_ptr`/`old_size` describe the block before).
pub const EVENT_REALLOC: u32 = 4;
/// After a free.
pub const EVENT_FREE: u32 = 8;
/// A request returned null (after the strategy).
pub const EVENT_FAILURE: u32 = 16;
/// An allocator was reset (all its blocks freed at once).
pub const EVENT_RESET: u32 = 32;
/// An allocator is being destroyed.
pub const EVENT_DESTROY: u32 = 64;
/// Every event.
pub const EVENT_ALL: u32 = 127;

/// What a callback sees (`GooMemoryEvent`).
///
/// ```
/// use goo_memory_core::policy::callbacks::{self, MemoryEvent, EVENT_ALLOC};
/// use std::sync::atomic::{AtomicUsize, Ordering};
/// static BYTES: AtomicUsize = AtomicUsize::new(0);
/// unsafe extern "C" fn observe(event: *const MemoryEvent, _: *mut core::ffi::c_void) -> bool {
///     // SAFETY: the event is valid for the call.
///     BYTES.fetch_add(unsafe { (*event).size }, Ordering::Relaxed);
///     true
/// }
/// let arena = goo_memory_core::arena::Arena::new();
/// arena.alloc(0u8); // its first chunk, taken from its parent, before anyone listens
/// // SAFETY: `observe` may run on any thread with any event; it takes no user data.
/// let id = unsafe { callbacks::add(EVENT_ALLOC, observe, core::ptr::null_mut()) };
/// arena.alloc([0u8; 48]);
/// callbacks::remove(id);
/// assert_eq!(BYTES.load(Ordering::Relaxed), 48);
/// ```
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct MemoryEvent {
    /// One `EVENT_*` bit.
    pub kind: u32,
    pub allocator: *mut GooAllocator,
    /// The block (null for a request or a failure).
    pub ptr: *mut c_void,
    /// For realloc: the block before (also set on a realloc request).
    pub old_ptr: *mut c_void,
    pub size: usize,
    pub old_size: usize,
    pub alignment: usize,
    pub options: AllocOptions,
}

impl MemoryEvent {
    /// An event with no pointers.
    pub fn new(
        kind: u32,
        allocator: *mut GooAllocator,
        size: usize,
        alignment: usize,
        options: AllocOptions,
    ) -> Self {
        MemoryEvent {
            kind,
            allocator,
            ptr: core::ptr::null_mut(),
            old_ptr: core::ptr::null_mut(),
            size,
            old_size: 0,
            alignment,
            options,
        }
    }
}

/// `bool (*GooMemoryCallback)(const GooMemoryEvent* event, void* user_data)`: the return value
/// matters for `EVENT_REQUEST` only (false = fail the request).
///
/// ```
/// use core::alloc::Layout;
/// use core::ffi::c_void;
/// use goo_memory_core::policy::callbacks::{self, CallbackFn, MemoryEvent, EVENT_REQUEST};
/// use goo_memory_core::Allocator;
/// /// A quota: refuses every request of more than `*user_data` bytes.
/// unsafe extern "C" fn quota(event: *const MemoryEvent, user_data: *mut c_void) -> bool {
///     // SAFETY: the event is valid for the call; `user_data` is the quota below.
///     unsafe { (*event).size <= *user_data.cast::<usize>() }
/// }
/// let heap = Allocator::system();
/// let mut max = 1024usize;
/// let callback: CallbackFn = quota;
/// // SAFETY: `max` outlives the registration, and only this thread allocates meanwhile.
/// let id = unsafe { callbacks::add(EVENT_REQUEST, callback, (&raw mut max).cast()) };
/// let refused = heap.allocate(Layout::from_size_align(4096, 8).unwrap());
/// let served = heap.allocate(Layout::from_size_align(64, 8).unwrap());
/// callbacks::remove(id);
/// assert!(refused.is_err() && served.is_ok());
/// assert_eq!(heap.stats().failed_allocations, 1);
/// # unsafe { heap.deallocate(served.unwrap(), Layout::from_size_align(64, 8).unwrap()) };
/// ```
pub type CallbackFn = unsafe extern "C" fn(event: *const MemoryEvent, user_data: *mut c_void) -> bool;

/// Most callbacks registered at once.
pub const MAX_CALLBACKS: usize = 32;

struct Slot {
    /// Odd while being written; bumped by every change.
    seq: AtomicU64,
    /// The callback as a pointer (keeps provenance), null when the slot is free.
    f: AtomicPtr<()>,
    user_data: AtomicPtr<c_void>,
    mask: AtomicU32,
    id: AtomicU64,
}

#[allow(clippy::declare_interior_mutable_const)]
const EMPTY_SLOT: Slot = Slot {
    seq: AtomicU64::new(0),
    f: AtomicPtr::new(core::ptr::null_mut()),
    user_data: AtomicPtr::new(core::ptr::null_mut()),
    mask: AtomicU32::new(0),
    id: AtomicU64::new(0),
};

static SLOTS: [Slot; MAX_CALLBACKS] = [EMPTY_SLOT; MAX_CALLBACKS];
/// Union of the masks of registered callbacks: the front door's one check.
static MASK: AtomicU32 = AtomicU32::new(0);
static NEXT_ID: AtomicU64 = AtomicU64::new(1);
/// `PLAIN_MAX`, or 0 while a callback listens to requests or allocations: an allocation of
/// `size` may take the call-free level only if `size - 1 < PLAIN_ALLOC_BOUND`, so the front
/// door's size check and callback check are one compare. Only ever 0 or `PLAIN_MAX`.
static PLAIN_ALLOC_BOUND: AtomicUsize = AtomicUsize::new(PLAIN_MAX);
/// As [`PLAIN_ALLOC_BOUND`], for frees: 0 while a callback listens to frees.
static PLAIN_FREE_BOUND: AtomicUsize = AtomicUsize::new(PLAIN_MAX);
/// A memory checker (valgrind, ASan) watches the process: both bounds stay 0, so every request
/// takes the slow path, where the allocators tell the tool what they hand out and take back.
static TOOL_WATCHING: AtomicBool = AtomicBool::new(false);

/// What dispatching one kind of event calls, ready made: the sole listener's callback and user
/// data when there is one (the common case, one observer: a seqlock read of one line, then the
/// call), else [`dispatch_slots`] with the bitmask of the slots that listen.
struct Kind {
    /// Odd while a writer changes the table; bumped twice by every change (a seqlock over
    /// `f` and `data`).
    seq: AtomicU64,
    f: AtomicPtr<()>,
    data: AtomicPtr<c_void>,
}

/// `KINDS[k]`: how to dispatch event `1 << k`.
static KINDS: [Kind; 8] = [const {
    Kind {
        seq: AtomicU64::new(0),
        f: AtomicPtr::new(dispatch_slots as *mut ()),
        data: AtomicPtr::new(core::ptr::null_mut()),
    }
}; 8];
const _: () = assert!(MAX_CALLBACKS <= 32 && EVENT_ALL < 1 << 8);
held_across_forks! {
    /// Serialises writers (registration, removal); dispatch never takes it.
    static WRITERS: () = (), at Leaf, locked by writers;
}

thread_local! {
    static IN_CALLBACK: Cell<bool> = const { Cell::new(false) };
}

/// Whether any callback listens to one of `kinds` (one relaxed load).
#[inline(always)]
pub fn listening(kinds: u32) -> bool {
    MASK.load(Relaxed) & kinds != 0
}

/// A memory checker watches from now on (`policy::sanitize`): the call-free level is closed
/// for good, so that no block changes hands without the tool being told.
pub fn tool_watching() {
    let _writers = writers();
    TOOL_WATCHING.store(true, Relaxed);
    store_bounds(MASK.load(Relaxed));
}

/// The bound below which `size - 1` lets an allocation take the call-free level: no callback
/// listens to requests or allocations, and `size <= PLAIN_MAX` (one relaxed load). Never
/// more than `PLAIN_MAX`.
#[inline(always)]
pub fn plain_alloc_bound() -> usize {
    PLAIN_ALLOC_BOUND.load(Relaxed)
}

/// [`plain_alloc_bound`] for frees (no callback listens to frees).
#[inline(always)]
pub fn plain_free_bound() -> usize {
    PLAIN_FREE_BOUND.load(Relaxed)
}

/// The events some callback listens to (one relaxed load), for paths that test several.
#[inline(always)]
pub fn mask() -> u32 {
    MASK.load(Relaxed)
}

/// Opens a change of the table (writers only, under [`WRITERS`]): every kind's sequence
/// number turns odd, which sends dispatchers to the per-slot seqlocks meanwhile.
fn begin_write() {
    for kind in &KINDS {
        kind.seq.fetch_add(1, Relaxed);
    }
    // The seqlock writer's fence: the odd numbers are visible before anything changes.
    fence(Release);
}

/// Closes a change of the table: rebuilds what each kind dispatches to from the slots, and
/// [`MASK`] from them (writers only, under [`WRITERS`]).
fn end_write() {
    let mut m = 0;
    for (k, kind) in KINDS.iter().enumerate() {
        let bits = SLOTS
            .iter()
            .enumerate()
            .filter(|(_, s)| !s.f.load(Relaxed).is_null() && s.mask.load(Relaxed) & (1 << k) != 0)
            .fold(0u32, |bits, (i, _)| bits | 1 << i);
        let (f, data) = if bits.is_power_of_two() {
            let slot = &SLOTS[bits.trailing_zeros() as usize];
            (slot.f.load(Relaxed), slot.user_data.load(Relaxed))
        } else {
            (dispatch_slots as *mut (), core::ptr::without_provenance_mut(bits as usize))
        };
        kind.f.store(f, Relaxed);
        kind.data.store(data, Relaxed);
        kind.seq.fetch_add(1, Release);
        if bits != 0 {
            m |= 1 << k;
        }
    }
    MASK.store(m, Release);
    store_bounds(m);
}

/// The call-free level's bounds from the event mask `m` and the tool (writers only).
fn store_bounds(m: u32) {
    let tool = TOOL_WATCHING.load(Relaxed);
    let bound = |events: u32| if m & events == 0 && !tool { PLAIN_MAX } else { 0 };
    PLAIN_ALLOC_BOUND.store(bound(EVENT_REQUEST | EVENT_ALLOC), Release);
    PLAIN_FREE_BOUND.store(bound(EVENT_FREE), Release);
}

/// Opens a change of one slot (writers only): its sequence number turns odd, and the fence
/// orders that before the slot's fields change, so a dispatcher that reads a changed field
/// then finds the number changed (the seqlock writer's half of [`dispatch_slots`]'s check).
fn open_slot(slot: &Slot) {
    slot.seq.fetch_add(1, Relaxed);
    fence(Release);
}

/// Registers `f` for the events in `mask`. Returns its id (never 0), or 0 if the table is full
/// or the mask is empty.
///
/// # Safety
/// `f` must be safe to call with any event and `user_data`, on any thread that uses any
/// allocator, at any time until [`remove`] removes it (a dispatch that already read it may
/// still run it after that): `user_data` must stay valid that long.
pub unsafe fn add(mask: u32, f: CallbackFn, user_data: *mut c_void) -> u64 {
    if mask & EVENT_ALL == 0 {
        return 0;
    }
    let _w = writers();
    let Some(index) = SLOTS.iter().position(|s| s.f.load(Relaxed).is_null()) else { return 0 };
    let slot = &SLOTS[index];
    let id = NEXT_ID.fetch_add(1, Relaxed);
    begin_write();
    open_slot(slot);
    slot.user_data.store(user_data, Relaxed);
    slot.mask.store(mask & EVENT_ALL, Relaxed);
    slot.id.store(id, Relaxed);
    slot.f.store(f as *mut (), Relaxed);
    slot.seq.fetch_add(1, Release); // even: stable
    end_write();
    id
}

/// Removes a callback. Returns whether it was registered. A dispatch that already read the
/// slot on another thread may still be running it.
pub fn remove(id: u64) -> bool {
    if id == 0 {
        return false;
    }
    let _w = writers();
    let Some(slot) = SLOTS.iter().find(|s| s.id.load(Relaxed) == id && !s.f.load(Relaxed).is_null()) else {
        return false;
    };
    begin_write();
    open_slot(slot);
    slot.f.store(core::ptr::null_mut(), Relaxed);
    slot.id.store(0, Relaxed);
    slot.mask.store(0, Relaxed);
    slot.seq.fetch_add(1, Release);
    end_write();
    true
}

/// Removes every callback and frees the removed fault injectors' state (library cleanup, which
/// no other thread runs the library during).
pub(crate) fn clear() {
    let ids: Vec<u64> = SLOTS.iter().map(|s| s.id.load(Relaxed)).filter(|&i| i != 0).collect();
    for id in ids {
        remove(id);
    }
    let retired = core::mem::take(&mut *retired_faults());
    for RawFault(_, p) in retired {
        // SAFETY: made by `Box::into_raw` in `install`, its callback removed before it was
        // retired, and no dispatch runs during the cleanup (its contract).
        drop(unsafe { Box::from_raw(p.as_ptr()) });
    }
}

/// Calls every callback listening to `event.kind`, in slot order. Returns false if one of them
/// returned false. Does nothing (returns true) inside a callback on this thread.
#[inline(never)]
pub fn dispatch(event: &MemoryEvent) -> bool {
    let kind = event.kind;
    deliver(kind, || *event)
}

/// [`dispatch`] of the event `make` builds (an event of `kind`), inlined into the front door's
/// observed paths: one frame for the whole observed operation, and the event is built only
/// when someone listens to it. True when nobody does (no callback refused): a path that found
/// a listener a moment before may find none now, another thread having removed it.
#[inline(always)]
pub(crate) fn deliver(kind: u32, make: impl FnOnce() -> MemoryEvent) -> bool {
    !listening(kind) || deliver_listened(kind, make)
}

/// [`deliver`] for a caller that found [`listening`]`(kind)` already. Should the last
/// listener leave meanwhile, the event is built and nobody called.
#[inline(always)]
pub(crate) fn deliver_listened(kind: u32, make: impl FnOnce() -> MemoryEvent) -> bool {
    let event = make();
    // A const thread-local without destructor: always accessible, even during thread exit.
    if IN_CALLBACK.replace(true) {
        return true;
    }
    // Read last, next to the call: fewer values live through the code above. A seqlock read:
    // an even, unchanged number means the pair is what one table said. Else (a change under
    // way) every slot is asked, each checking that it listens. An event is one kind: one bit
    // (folded to one address for the constant kinds).
    let kind = &KINDS[(kind.trailing_zeros() & 7) as usize];
    let seq = kind.seq.load(Acquire);
    let read = (kind.f.load(Relaxed), kind.data.load(Relaxed));
    fence(Acquire);
    let (f, data) = if seq & 1 == 0 && kind.seq.load(Relaxed) == seq {
        read
    } else {
        (dispatch_slots as *mut (), core::ptr::without_provenance_mut(u32::MAX as usize))
    };
    // SAFETY: `dispatch_slots`, or a sole listener's pair, a slot's, whose non-null `f` was
    // stored from a `CallbackFn` in `add`.
    let f = unsafe { core::mem::transmute::<*mut (), CallbackFn>(f) };
    // SAFETY: the registrant made `f` callable with its user data from any thread.
    let allowed = unsafe { f(&event, data) };
    IN_CALLBACK.set(false);
    allowed
}

/// The slots among `listeners` (a slot bitmask, as an address) that listen to `event.kind`,
/// called in slot order, each read under its own seqlock (a slot being rewritten is skipped: it
/// is being added or removed). Whether all of them allowed the event. A [`CallbackFn`] itself,
/// so that [`deliver`] has one call site.
#[inline(never)]
unsafe extern "C" fn dispatch_slots(event: *const MemoryEvent, listeners: *mut c_void) -> bool {
    // SAFETY: `deliver` passes its event.
    let event = unsafe { &*event };
    let mut listeners = listeners.addr() as u32;
    let mut allowed = true;
    while listeners != 0 {
        let slot = &SLOTS[listeners.trailing_zeros() as usize % MAX_CALLBACKS];
        listeners &= listeners - 1;
        // Seqlock read: a consistent (f, user_data, mask) or skip a slot being rewritten.
        let before = slot.seq.load(Acquire);
        let f = slot.f.load(Relaxed);
        let data = slot.user_data.load(Relaxed);
        let mask = slot.mask.load(Relaxed);
        fence(Acquire);
        if before & 1 == 1 || slot.seq.load(Relaxed) != before || f.is_null() || mask & event.kind == 0 {
            continue;
        }
        // SAFETY: non-null values were stored from a `CallbackFn` in `add`.
        let f = unsafe { core::mem::transmute::<*mut (), CallbackFn>(f) };
        // SAFETY: the registrant made `f` callable with its user data from any thread.
        allowed &= unsafe { f(event, data) };
    }
    allowed
}

/// Fault injection: which requests to fail (see [`FaultInjector`]).
///
/// ```
/// use goo_memory_core::policy::callbacks::FaultSpec;
/// let spec = FaultSpec { fail_above: 1 << 20, this_thread_only: true, ..FaultSpec::default() };
/// assert_eq!((spec.fail_nth, spec.probability), (0, 0.0));
/// ```
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct FaultSpec {
    /// Only requests to this allocator (null = any).
    pub allocator: *mut GooAllocator,
    /// Fail the nth matching request (1-based; 0 = off).
    pub fail_nth: u64,
    /// Fail each matching request with this probability (0 = off).
    pub probability: f64,
    /// Seed of the probability's generator.
    pub seed: u64,
    /// Fail every matching request larger than this (0 = off).
    pub fail_above: usize,
    /// Only requests made by the thread that installed it.
    pub this_thread_only: bool,
}

struct Fault {
    spec: FaultSpec,
    seen: AtomicU64,
    rng: AtomicU64,
    thread: usize,
    failed: AtomicU64,
}

fn thread_id() -> usize {
    thread_local!(static T: u8 = const { 0 });
    T.with(|t| t as *const u8 as usize)
}

unsafe extern "C" fn fault_callback(event: *const MemoryEvent, data: *mut c_void) -> bool {
    // SAFETY: `data` is the `Fault` installed with this callback, alive until the cleanup after
    // its removal (`retire`); the event is valid for the call.
    let (fault, e) = unsafe { (&*data.cast::<Fault>(), &*event) };
    let spec = &fault.spec;
    if (!spec.allocator.is_null() && spec.allocator != e.allocator)
        || (spec.this_thread_only && fault.thread != thread_id())
    {
        return true;
    }
    let n = fault.seen.fetch_add(1, Relaxed) + 1;
    let mut fail = spec.fail_nth != 0 && n == spec.fail_nth;
    fail |= spec.fail_above != 0 && e.size > spec.fail_above;
    if spec.probability > 0.0 {
        // xorshift64*, stepped atomically so threads share one sequence.
        let mut x = fault.rng.load(Relaxed);
        loop {
            let mut y = x;
            y ^= y >> 12;
            y ^= y << 25;
            y ^= y >> 27;
            match fault.rng.compare_exchange_weak(x, y, Relaxed, Relaxed) {
                Ok(_) => {
                    let r = (y.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 / (1u64 << 53) as f64;
                    fail |= r < spec.probability;
                    break;
                }
                Err(now) => x = now,
            }
        }
    }
    if fail {
        fault.failed.fetch_add(1, Relaxed);
    }
    !fail
}

/// An installed fault injector; removing it (drop) stops the failures.
///
/// ```
/// use goo_memory_core::policy::callbacks::{FaultInjector, FaultSpec};
/// let arena = goo_memory_core::arena::Arena::new();
/// let spec = FaultSpec { allocator: arena.as_ptr(), fail_nth: 2, ..FaultSpec::default() };
/// let faults = FaultInjector::install(spec).unwrap();
/// assert!(arena.try_alloc(1u8).is_ok());
/// assert!(arena.try_alloc(2u8).is_err(), "the second request fails");
/// assert_eq!((faults.requests_seen(), faults.failures_injected()), (2, 1));
/// drop(faults);
/// assert!(arena.try_alloc(3u8).is_ok());
/// ```
pub struct FaultInjector {
    id: u64,
    /// Owned (from `Box::into_raw`); a raw pointer because the callback holds it too, and a
    /// `Box` would claim unique access when moved.
    fault: core::ptr::NonNull<Fault>,
}

impl core::fmt::Debug for FaultInjector {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("FaultInjector")
            .field("id", &self.id)
            .field("requests_seen", &self.requests_seen())
            .field("failures_injected", &self.failures_injected())
            .finish()
    }
}

impl FaultInjector {
    /// Installs `spec`. `None` if its probability is not in [0, 1] (NaN included; a message on
    /// stderr) or the callback table is full.
    pub fn install(spec: FaultSpec) -> Option<Self> {
        if !(0.0..=1.0).contains(&spec.probability) {
            // NaN, negative or above 1: no probability, so no injector (the caller's mistake
            // must not pass for "fail nothing" or "fail everything").
            eprintln!(
                "goo-memory: fault injection refused: probability {} is not in [0, 1]",
                spec.probability
            );
            return None;
        }
        let fault = Box::into_raw(Box::new(Fault {
            spec,
            seen: AtomicU64::new(0),
            rng: AtomicU64::new(spec.seed | 1),
            thread: thread_id(),
            failed: AtomicU64::new(0),
        }));
        // SAFETY: `fault_callback` reads its `Fault` with atomics, from any thread; a removed
        // injector's `Fault` is kept until the library's cleanup ([`retire`]), so a dispatch
        // that read the slot before the removal still finds it.
        let id = unsafe { add(EVENT_REQUEST, fault_callback, fault.cast()) };
        // SAFETY: `fault` came from `Box::into_raw` just above.
        let fault = unsafe { core::ptr::NonNull::new_unchecked(fault) };
        if id == 0 {
            // SAFETY: not registered, so nobody else holds it.
            drop(unsafe { Box::from_raw(fault.as_ptr()) });
            return None;
        }
        Some(FaultInjector { id, fault })
    }

    fn fault(&self) -> &Fault {
        // SAFETY: owned by `self`, freed only by the cleanup after `drop`/`remove_raw`.
        unsafe { self.fault.as_ref() }
    }

    /// Requests seen that matched the filter.
    pub fn requests_seen(&self) -> u64 {
        self.fault().seen.load(Relaxed)
    }

    /// Requests made to fail.
    pub fn failures_injected(&self) -> u64 {
        self.fault().failed.load(Relaxed)
    }

    /// The callback id (for `goo_memory_remove_callback`).
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Hands the injector to C: removed by [`remove_raw`] with the returned id.
    pub fn into_raw(self) -> u64 {
        let this = core::mem::ManuallyDrop::new(self);
        raw_faults().push(RawFault(this.id, this.fault));
        this.id
    }
}

held_across_forks! {
    /// Fault injectors handed to C, by callback id.
    static RAW_FAULTS: Vec<RawFault> = Vec::new(), at Leaf, locked by raw_faults;
}

/// A fault injector handed to C: its callback id and the `Fault` it owns.
struct RawFault(u64, core::ptr::NonNull<Fault>);

// SAFETY: the `Fault` is only freed by the cleanup, after its entry left the lists (under
// their mutexes); its counters are atomics.
unsafe impl Send for RawFault {}

/// Removes a fault injector handed to C (or any callback by id). Returns whether it existed.
pub fn remove_raw(id: u64) -> bool {
    let removed = remove(id);
    // Out of the list before it is retired: no thread holds both locks at once.
    let taken = {
        let mut raw = raw_faults();
        raw.iter().position(|r| r.0 == id).map(|i| raw.swap_remove(i))
    };
    if let Some(RawFault(_, p)) = taken {
        retire(p);
    }
    removed
}

held_across_forks! {
    /// The `Fault`s of removed injectors. A dispatch on another thread that read the
    /// callback's slot before the removal may still be running it (dispatch takes no lock), so
    /// a removed `Fault` is kept until the library's cleanup ([`clear`]), when no thread uses
    /// the library.
    static RETIRED_FAULTS: Vec<RawFault> = Vec::new(), at Leaf, locked by retired_faults;
}

/// Keeps the `Fault` of a removed injector until [`clear`] (see [`RETIRED_FAULTS`]).
fn retire(fault: core::ptr::NonNull<Fault>) {
    retired_faults().push(RawFault(0, fault));
}

impl Drop for FaultInjector {
    fn drop(&mut self) {
        remove(self.id);
        retire(self.fault);
    }
}

/// Tells callbacks that `allocator` is being reset or destroyed (`EVENT_RESET`/`EVENT_DESTROY`).
pub fn notify(kind: u32, allocator: *mut GooAllocator) {
    if listening(kind) {
        dispatch(&MemoryEvent::new(kind, allocator, 0, 0, AllocOptions::DEFAULT));
    }
}
