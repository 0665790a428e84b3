//! Allocation statistics, exact under concurrency and cheap on the hot path.
//!
//! The library's own allocators count in [`ShardedStats`]: one counter block per thread slot,
//! written only by the thread that owns the slot (plain load + store, no locked instruction, no
//! shared cache line), and summed when someone reads. C-made allocators have no room for shards,
//! so the front door counts in their embedded `stats` field with relaxed atomic read-modify-writes
//! (`AtomicStatsView`): exact too, just slower.

use core::ptr;
use core::sync::atomic::{AtomicBool, AtomicIsize, AtomicPtr, AtomicU64, AtomicUsize, Ordering::*};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::Mutex;

use crate::policy::fork::{self, Held};
use crate::policy::invariant::{ensure, InvariantError};
use crate::policy::sharing::{asymmetric_fences, entering_fence, quiescing_fence};
use crate::policy::thread_slot::{current_slot, home_slot, SLOTS};
use crate::raw::{AllocStats, PLAIN_MAX};

/// Number of size classes in the histograms: sizes up to 8, 16, 32, ... 128 KiB, and larger.
pub const SIZE_CLASSES: usize = 16;

/// The size class of a request of `size` bytes (> 0).
#[inline(always)]
pub fn size_class(size: usize) -> usize {
    // `| 7` keeps the operand non-zero (no special case for the bit scan) and puts every size
    // up to 8 in class 0.
    let bits = (usize::BITS - (size.wrapping_sub(1) | 7).leading_zeros()) as usize;
    (bits - 3).min(SIZE_CLASSES - 1)
}

/// [`size_class`] of a size of at most `PLAIN_MAX`, which needs no clamp: the call-free
/// level's counters.
///
/// # Safety
/// `0 < size <= PLAIN_MAX` (what `crate::raw::plain_servable` and the front door's
/// `plain_free` check).
#[inline(always)]
pub unsafe fn plain_size_class(size: usize) -> usize {
    debug_assert!(size > 0 && size <= PLAIN_MAX);
    const { assert!(PLAIN_MAX <= 8 << (SIZE_CLASSES - 2)) };
    let class = (usize::BITS - (size.wrapping_sub(1) | 7).leading_zeros()) as usize - 3;
    // SAFETY: `size <= PLAIN_MAX` (contract) puts it in class 14 at most. Said to the
    // compiler, this leaves no bounds check, and so no panic path, in the C entry points,
    // whose calls could not be tail calls with one.
    unsafe { core::hint::assert_unchecked(class < SIZE_CLASSES) };
    class
}

/// Serialized as the report's JSON writes it: `{"class_limits":[8,16,...,131072,null],
/// "live":[...],"total":[...]}` (the last class has no limit).
#[cfg(feature = "serde")]
impl serde::Serialize for SizeHistogram {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let limits: [Option<usize>; SIZE_CLASSES] =
            core::array::from_fn(|c| (c + 1 < SIZE_CLASSES).then(|| size_class_limit(c)));
        let mut h = serializer.serialize_struct("SizeHistogram", 3)?;
        h.serialize_field("class_limits", &limits)?;
        h.serialize_field("live", &self.live)?;
        h.serialize_field("total", &self.total)?;
        h.end()
    }
}

/// The largest size of each class (`usize::MAX` for the last).
pub fn size_class_limit(class: usize) -> usize {
    if class + 1 >= SIZE_CLASSES {
        usize::MAX
    } else {
        8 << class
    }
}

/// Allocations by size class: made in total, and live now.
///
/// ```
/// use goo_memory_core::policy::{front, stats::size_class_limit};
/// let arena = goo_memory_core::arena::Arena::new();
/// arena.alloc_slice_fill_copy(100, 0u8);
/// // SAFETY: a live allocator.
/// let h = unsafe { front::histogram(arena.as_ptr()) }.expect("a library allocator");
/// let class = (0..h.total.len()).find(|&c| h.total[c] == 1).unwrap();
/// assert!(size_class_limit(class) >= 100 && h.live[class] == 1);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SizeHistogram {
    pub total: [usize; SIZE_CLASSES],
    pub live: [usize; SIZE_CLASSES],
}

/// One thread's counters. `bytes` is a wrapping (two's complement) delta: a thread that frees
/// blocks another thread allocated drives its own below zero.
///
/// A thread's own shard is allocated on cache lines of its own ([`SHARD_LAYOUT`]). The type is
/// not over-aligned: the overflow shard is embedded in every allocator, and an over-aligned
/// allocator object costs `posix_memalign` (hundreds of instructions in glibc) at every
/// creation, a scope's included.
struct Shard {
    bytes: AtomicUsize,
    /// Frees counted in bulk (a rewind), whose size classes are unknown.
    frees: AtomicUsize,
    /// Reallocations that moved a block to another size class (counted in the class counters
    /// as a free and an allocation, and taken back out of the totals).
    moves: AtomicUsize,
    failed: AtomicUsize,
    /// Where passing `bytes` (signed) triggers a peak check: the shard's bytes at its last
    /// check plus its share of the room below the peak (see [`ShardedStats::raise_high`]).
    /// Below zero while a shared allocator is limited, which keeps its allocations off the hot
    /// path.
    high: AtomicUsize,
    /// The `high` this shard's last check set (an unlimited shared allocator's): a lower
    /// `high` now means another shard took room back since, growing at the same time.
    set_high: AtomicUsize,
    /// While a shared allocator is limited: the most live bytes this shard may reach without
    /// asking (signed; its grant, see [`ShardedStats`]), and its high-water for the peak check.
    ceiling: AtomicUsize,
    limited_high: AtomicUsize,
    /// The owning thread is counting against its grant (the gate's lane flag, see
    /// `policy::sharing`).
    busy: AtomicBool,
    /// Allocations and frees by size class (size at allocation time).
    class_allocs: [AtomicUsize; SIZE_CLASSES],
    class_frees: [AtomicUsize; SIZE_CLASSES],
}

impl Shard {
    /// What the shard may count without a peak check: `max(high, bytes)`, signed (see the
    /// peak's equation at [`ShardedStats`]).
    fn reach(&self) -> isize {
        (self.high.load(Relaxed) as isize).max(self.bytes.load(Relaxed) as isize)
    }
}

/// What a limited shared allocator's shard holds or may take without asking (see
/// [`ShardedStats`]): its grant, or its live bytes where they are above it (a block counted
/// while the limit was being set).
fn held(shard: &Shard) -> isize {
    (shard.ceiling.load(Relaxed) as isize).max(shard.bytes.load(Relaxed) as isize)
}

/// The ceiling of a shard with no grant: nothing more without asking, not even the bytes it
/// frees. Its frees may be of blocks other shards counted, and the live bytes may be over a
/// limit set or lowered since they were counted: only a reservation, on the exact live bytes,
/// knows whether there is room. New shards start with it too.
const NO_GRANT: usize = isize::MIN as usize;

/// Every shard's high-water mark while a shared allocator is limited and its gate's fences are
/// asymmetric: below any live total, so that every allocation takes the call-free level's cold
/// branch, which counts it against the thread's grant when the mark is this one.
const LIMITED_HIGH: usize = isize::MIN as usize;
/// The same with symmetric fences (`fence(SeqCst)` on entry): the cold branch leaves those
/// counts to [`ShardedStats::count_uncounted`].
const LIMITED_HIGH_FENCED: usize = LIMITED_HIGH + 1;

/// How much more than a request a grant gives a limited shared allocator's thread: a share of
/// the limit, at most 256 KiB (a reservation every few thousand small allocations).
fn grant_size(limit: usize) -> isize {
    (limit / 64).min(256 << 10) as isize
}

/// A thread's shard: whole cache lines, so no two threads' counters share one.
const SHARD_LAYOUT: Layout = match Layout::from_size_align(size_of::<Shard>().next_multiple_of(64), 64) {
    Ok(layout) => layout,
    Err(_) => panic!("a shard's layout"),
};

/// Adds to a counter only its owner thread writes: a plain load and store, still atomic so
/// readers on other threads never see a torn value.
#[inline(always)]
fn bump(counter: &AtomicUsize, delta: usize) -> usize {
    let new = counter.load(Relaxed).wrapping_add(delta);
    counter.store(new, Relaxed);
    new
}

/// Per-thread sharded counters of one allocator.
///
/// The per-thread shard pointers of one allocator, allocated on the first counted operation of
/// a thread (single-owner allocators never need one).
struct ShardTable([AtomicPtr<Shard>; SLOTS]);

/// Where every allocator's table pointer starts: all entries null, never written. Sharing it
/// keeps the hot path free of a null check (a null entry already sends it to the cold path).
static EMPTY_TABLE: ShardTable = ShardTable([const { AtomicPtr::new(ptr::null_mut()) }; SLOTS]);

#[inline(always)]
const fn empty_table() -> *mut ShardTable {
    (&raw const EMPTY_TABLE).cast_mut()
}

/// Invariant: `shards`, once non-null, points to a `ShardTable` owned by this value whose entry
/// `i`, once non-null, points to a `Shard` owned by this value, written
/// only by the thread holding slot `i`; `overflow` is written with atomic read-modify-writes.
///
/// A limit on live bytes ([`ShardedStats::set_limit`]), as isize throughout:
/// ```text
/// !budgeted:  limit == 0 (none)  <=>  ceiling == isize::MAX
/// !budgeted:  limit != 0          =>  ceiling == limit
/// limit != 0 && !single_owner     =>  high of every shard (overflow included) < 0
/// limited() && single_owner       =>  overflow.high <= ceiling
/// budgeted                        =>  single_owner  and  ceiling < isize::MAX
/// ```
/// The third keeps every allocation of a shared limited allocator off the hot path; it takes
/// the cold branch of the call-free level, which counts it against its shard's grant, else the
/// slow path reserves it. A grant is a shard's `ceiling`: the most live bytes it may reach
/// without asking. With `held(s) = max(ceiling(s), bytes(s))`, while a shared allocator is
/// limited, between reservations:
/// ```text
/// sum over shards of held(s)  <=  limit      (unless the limit was set below the live bytes)
/// bytes(s) <= ceiling(s)  for a shard that counts against its grant
/// ```
/// A reservation, under `limit_lock`, raises the calling thread's ceiling to fit the request
/// and a share of the room left (`grant_size`). When the room is too small it takes every
/// grant back first: it lowers every ceiling to `NO_GRANT` and waits until no thread is
/// inside the gate (a thread counts against its grant only inside, with its shard's `busy`
/// set: see `take_back_grants`), then decides on the exact live bytes. Every
/// mark is `LIMITED_HIGH` (asymmetric fences) or `LIMITED_HIGH_FENCED`, so the cold branch
/// knows from the mark it just read whether it may count. Frees count call-free (they only
/// lower a shard's bytes). A single
/// owner's call-free allocation checks `bytes + size <= ceiling` itself, on the way to a new
/// high-water mark.
///
/// Budgeted: a single owner whose bytes count against limits kept above its own stats (a
/// region's limit covers its subtree, so a region under a limited one counts against it).
/// Its backend grants it a budget ([`ShardedStats::set_budget`]), which is its ceiling: the
/// call-free level allocates up to it without asking, and the slow path's reservation past it
/// asks the backend (`Reservation::OverBudget`), which checks the limits it keeps and grants
/// more ([`ShardedStats::reserve_granted`]) or refuses. `limit` is still the allocator's own
/// (what `front::limit` reports); while budgeted, only the backend reads it.
///
/// The peak: with `reach(s) = max(high(s), bytes(s))`, what shard `s` may count without a
/// check, an unlimited shared allocator keeps, while one thread at a time counts on its own
/// slot's shard, `sum over shards of reach(s) <= peak`; so the live total passes the peak
/// only through a check (see `raise_high`).
///
/// Every library allocator has one, which its backend reaches with
/// [`Managed::stats`](crate::Managed::stats):
///
/// ```
/// use core::alloc::Layout;
/// use goo_memory_core::policy::stats::ShardedStats;
/// use goo_memory_core::{Allocator, Managed, System};
/// let stats = ShardedStats::new(); // any thread may count, each on a shard of its own
/// std::thread::scope(|s| {
///     for _ in 0..4 {
///         s.spawn(|| {
///             stats.record_alloc(100);
///             stats.record_free(100);
///             stats.record_alloc(8);
///         });
///     }
/// });
/// let total = stats.snapshot(); // the shards summed
/// assert_eq!((total.bytes_allocated, total.allocation_count, total.total_allocations), (32, 4, 8));
/// stats.check().unwrap();
///
/// let heap = Allocator::system();
/// let block = heap.allocate(Layout::new::<u64>()).unwrap();
/// // SAFETY: a live library allocator made with this backend.
/// let own = unsafe { Managed::<System>::stats(heap.as_ptr()) };
/// assert_eq!(own.snapshot().bytes_allocated, 8);
/// // SAFETY: a live block of `heap`, allocated with this layout.
/// unsafe { heap.deallocate(block, Layout::new::<u64>()) };
/// ```
pub struct ShardedStats {
    shards: AtomicPtr<ShardTable>,
    /// Bit `i` set: entry `i` of the table is non-null (lets readers skip empty slots).
    present: AtomicU64,
    overflow: Shard,
    peak: AtomicUsize,
    /// For allocators used by one thread at a time (arenas, pools, regions, scopes): every
    /// count goes to one block with plain loads and stores, no thread slot lookup. Handing the
    /// allocator to another thread must synchronise, as for the allocator itself.
    single_owner: bool,
    /// The most live bytes allowed; 0 = no limit.
    limit: AtomicUsize,
    /// A single owner's bound for call-free allocations (see the invariant above): the limit,
    /// or the budget its backend granted.
    ceiling: AtomicUsize,
    /// The ceiling is a budget its backend grants (see the invariant above).
    budgeted: AtomicBool,
    /// Serialises reservations against the limit.
    limit_lock: Mutex<()>,
    /// `limit_lock`, held across a fork (`policy::fork`): a reservation another thread was
    /// making at that moment would leave it held in the child for good.
    fork_held: Held<()>,
    /// The fences of a limited shared allocator's grants' gate (see the invariant above) are
    /// asymmetric; fixed when the first limit is set, before any thread enters.
    asymmetric: AtomicBool,
}

/// The merged counts and the limit (reading them sums the shards, as [`ShardedStats::snapshot`]
/// does).
impl core::fmt::Debug for ShardedStats {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ShardedStats")
            .field("single_owner", &self.single_owner)
            .field("limit", &self.limit.load(Relaxed))
            .field("snapshot", &self.snapshot())
            .finish_non_exhaustive()
    }
}

/// What [`ShardedStats::reserve`] says of a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Reservation {
    /// No limit: nothing was counted, the caller counts as usual.
    Unlimited,
    /// Within the limit: the bytes are counted live; the caller counts the rest of the
    /// allocation ([`ShardedStats::record_alloc_reserved`]) or takes them back
    /// ([`ShardedStats::unreserve`]).
    Reserved,
    /// The request would pass the limit: nothing was counted.
    Refused,
    /// Budgeted counters, and the request would pass the budget: nothing was counted; the
    /// allocator's backend decides (and counts it with [`ShardedStats::reserve_granted`]).
    OverBudget,
}

/// Counters ready for one call-free count ([`ShardedStats::ready`] or
/// [`ShardedStats::ready_owned`]): the calling thread's shard, or a single owner's counters.
/// Nothing is counted when they are made ready: the backend serves first, then the count
/// decides (a new high-water mark, or a limit, is handled off the common path).
pub(crate) struct ReadyCounters<'a> {
    stats: &'a ShardedStats,
    shard: &'a Shard,
    /// A single owner's counters (found with no home slot).
    owned: bool,
}

impl ReadyCounters<'_> {
    /// Counts the allocation of `size` bytes these counters were made ready for, if that
    /// needs no call. False, with nothing counted: a new high-water mark of a shared
    /// allocator's shard ([`ShardedStats::count_uncounted`] counts it), or a single owner's
    /// limit refuses it.
    #[inline(always)]
    pub fn count_alloc(self, size: usize) -> bool {
        self.count_alloc_in(size, size_class(size))
    }

    /// [`ReadyCounters::count_alloc`] of a size that passed the call-free level's gate.
    ///
    /// # Safety
    /// `0 < size <= PLAIN_MAX`.
    #[inline(always)]
    pub unsafe fn count_plain_alloc(self, size: usize) -> bool {
        // SAFETY: forwarded contract.
        self.count_alloc_in(size, unsafe { plain_size_class(size) })
    }

    #[inline(always)]
    fn count_alloc_in(self, size: usize, class: usize) -> bool {
        if self.owned {
            return self.stats.record_alloc_owned(size, class);
        }
        // Only this thread writes its shard. Below the shard's high-water mark no limit is set
        // (a limited shared allocator keeps every mark below zero).
        let bytes = self.shard.bytes.load(Relaxed).wrapping_add(size);
        let high = self.shard.high.load(Relaxed);
        if (bytes as isize) > (high as isize) {
            crate::policy::cold_path();
            // Every allocation of a limited shared allocator comes here: one within the
            // thread's grant and below its mark is counted without a call, when the gate's
            // fences are asymmetric (the mark says so: no load of the allocator's flags).
            return high == LIMITED_HIGH && self.stats.count_within_grant(self.shard, bytes, class);
        }
        self.shard.bytes.store(bytes, Relaxed);
        bump(&self.shard.class_allocs[class], 1);
        true
    }

    /// Whether a resize from `old_size` to `new_size` bytes can be counted without a call
    /// ([`ReadyCounters::count_plain_resize`]): a shared allocator's shard that stays below
    /// its high-water mark (so no peak check, and no limit: a limited one's mark is below any
    /// total). Checked before the backend resizes, as nothing can be undone after.
    #[inline(always)]
    pub fn fits_resize(&self, old_size: usize, new_size: usize) -> bool {
        let bytes = self.shard.bytes.load(Relaxed).wrapping_add(new_size.wrapping_sub(old_size));
        !self.owned && (bytes as isize) <= (self.shard.high.load(Relaxed) as isize)
    }

    /// Counts a resize that [`ReadyCounters::fits_resize`] allowed, as
    /// [`ShardedStats::record_realloc`] does.
    ///
    /// # Safety
    /// Both sizes are in `1..=PLAIN_MAX`.
    #[inline(always)]
    pub unsafe fn count_plain_resize(self, old_size: usize, new_size: usize) {
        bump(&self.shard.bytes, new_size.wrapping_sub(old_size));
        // SAFETY: forwarded contract.
        let (from, to) = unsafe { (plain_size_class(old_size), plain_size_class(new_size)) };
        if from != to {
            // The block changes class: `moves` keeps this out of the totals.
            bump(&self.shard.class_frees[from], 1);
            bump(&self.shard.class_allocs[to], 1);
            bump(&self.shard.moves, 1);
        }
    }

    /// Counts a free of `size` bytes.
    #[inline(always)]
    pub fn count_free(self, size: usize) {
        ShardedStats::count_free(self.shard, size, size_class(size));
    }

    /// [`ReadyCounters::count_free`] of a size that passed the call-free level's gate.
    ///
    /// # Safety
    /// `0 < size <= PLAIN_MAX`.
    #[inline(always)]
    pub unsafe fn count_plain_free(self, size: usize) {
        // SAFETY: forwarded contract.
        ShardedStats::count_free(self.shard, size, unsafe { plain_size_class(size) });
    }
}

impl Default for ShardedStats {
    fn default() -> Self {
        Self::new()
    }
}

impl ShardedStats {
    /// Empty counters.
    pub const fn new() -> Self {
        Self::with_owner(false)
    }

    /// Counters for an allocator used by one thread at a time (see `single_owner`).
    pub const fn single_owner() -> Self {
        Self::with_owner(true)
    }

    const fn with_owner(single_owner: bool) -> Self {
        Self {
            single_owner,
            shards: AtomicPtr::new(empty_table()),
            present: AtomicU64::new(0),
            overflow: Shard {
                bytes: AtomicUsize::new(0),
                frees: AtomicUsize::new(0),
                moves: AtomicUsize::new(0),
                failed: AtomicUsize::new(0),
                high: AtomicUsize::new(0),
                set_high: AtomicUsize::new(0),
                ceiling: AtomicUsize::new(NO_GRANT),
                limited_high: AtomicUsize::new(0),
                busy: AtomicBool::new(false),
                class_allocs: [const { AtomicUsize::new(0) }; SIZE_CLASSES],
                class_frees: [const { AtomicUsize::new(0) }; SIZE_CLASSES],
            },
            peak: AtomicUsize::new(0),
            limit: AtomicUsize::new(0),
            ceiling: AtomicUsize::new(isize::MAX as usize),
            budgeted: AtomicBool::new(false),
            limit_lock: Mutex::new(()),
            fork_held: Held::new(),
            asymmetric: AtomicBool::new(false),
        }
    }

    /// The calling thread's shard, or `None` when it must use the shared overflow shard.
    #[inline(always)]
    fn own_shard(&self) -> Option<&Shard> {
        if self.single_owner {
            return Some(&self.overflow);
        }
        let slot = current_slot();
        if slot >= SLOTS {
            return None;
        }
        let table = self.shards.load(Acquire);
        // SAFETY: the table is the shared empty one or owned by `self` until it is dropped;
        // `slot < SLOTS`.
        let shard = unsafe { (*table).0[slot].load(Acquire) };
        if shard.is_null() {
            return self.create_shard(slot);
        }
        // SAFETY: non-null entries point to shards this value owns until it is dropped.
        Some(unsafe { &*shard })
    }

    /// The shard table, allocated (zeroed) on first use; threads racing to make it agree on one.
    fn table(&self) -> Option<&ShardTable> {
        let mut table = self.shards.load(Acquire);
        if table == empty_table() {
            let layout = Layout::new::<ShardTable>();
            // SAFETY: non-zero size; System (malloc) directly, never the global allocator.
            let fresh = unsafe { System.alloc_zeroed(layout) }.cast::<ShardTable>();
            if fresh.is_null() {
                return None;
            }
            match self.shards.compare_exchange(empty_table(), fresh, AcqRel, Acquire) {
                Ok(_) => table = fresh,
                Err(theirs) => {
                    // SAFETY: ours lost the race and was never published.
                    unsafe { System.dealloc(fresh.cast(), layout) };
                    table = theirs;
                }
            }
        }
        // SAFETY: our own table (never the shared empty one here), owned by `self` until it is
        // dropped; all-zero bytes are a valid table (null pointers).
        Some(unsafe { &*table })
    }

    #[cold]
    fn create_shard(&self, slot: usize) -> Option<&Shard> {
        let table = self.table()?;
        let existing = table.0[slot].load(Acquire);
        if !existing.is_null() {
            // SAFETY: a shard this value owns.
            return Some(unsafe { &*existing });
        }
        let layout = SHARD_LAYOUT;
        // SAFETY: `Shard` has non-zero size. System (malloc) is used directly so that counting
        // never recurses into an allocator that is itself Rust's global allocator.
        let shard = unsafe { System.alloc(layout) }.cast::<Shard>();
        if shard.is_null() {
            return None;
        }
        // SAFETY: `shard` is fresh, aligned for `Shard` and large enough; all-zero bytes are a
        // valid `Shard` (atomics of zero).
        unsafe { shard.cast::<u8>().write_bytes(0, layout.size()) };
        // SAFETY: just initialised.
        unsafe {
            (*shard).high.store(self.initial_high(self.limited()), Relaxed);
            (*shard).ceiling.store(NO_GRANT, Relaxed);
        }
        // Only the slot's owner (this thread) ever installs this entry, so a plain store is
        // enough; Release publishes the initialised shard to readers.
        table.0[slot].store(shard, Release);
        self.present.fetch_or(1 << slot, Release);
        // SAFETY: just initialised; owned by `self` from now on.
        Some(unsafe { &*shard })
    }

    /// The calling thread's ready counters, if counting on them needs no call (no claim, no
    /// creation, no thread-local access). `home` is the thread's home slot ([`home_slot`]'s
    /// answer, which callers that need it for more than this find once) for sharded counters,
    /// or `None` for single-owner ones: then the slot's shard if it exists (single-owner
    /// counters have none: their table is the empty one), else the single owner's counters.
    #[inline(always)]
    fn ready_shard(&self, home: Option<usize>) -> Option<&Shard> {
        let Some(slot) = home else {
            return self.single_owner.then_some(&self.overflow);
        };
        // SAFETY: as in `own_shard`; `slot < SLOTS` (a home slot).
        let shard = unsafe { (*self.shards.load(Acquire)).0[slot].load(Acquire) };
        // SAFETY: non-null entries point to shards this value owns until it is dropped.
        (!shard.is_null()).then(|| unsafe { &*shard })
    }

    /// Counts an allocation of `size` bytes if that needs no call: the thread's shard exists and
    /// the count is within the counters' limit. Otherwise counts nothing and returns false: the
    /// caller then uses [`ShardedStats::record_alloc`]. This keeps the front door's counted
    /// paths free of calls (and so of saved registers) but on a new high-water mark.
    #[inline(always)]
    pub fn try_record_alloc(&self, size: usize) -> bool {
        self.try_record_alloc_at(self.home(), size)
    }

    /// [`home_slot`]'s answer where the shard depends on it (not for a single owner).
    #[inline(always)]
    fn home(&self) -> Option<usize> {
        if self.single_owner {
            None
        } else {
            home_slot()
        }
    }

    /// [`ShardedStats::try_record_alloc`] for a caller that knows the calling thread's home slot
    /// (`home` as for `ShardedStats::ready`: the thread's home slot for sharded counters, `None`
    /// for single-owner ones).
    #[inline(always)]
    pub fn try_record_alloc_at(&self, home: Option<usize>, size: usize) -> bool {
        match self.ready(home) {
            Some(counters) => counters.count_alloc(size),
            None => false,
        }
    }

    /// The counters a call-free allocation or free would count on, if they exist: the thread's
    /// shard (single-owner counters: theirs). Nothing is counted yet: the caller serves the
    /// request, then counts it ([`ReadyCounters::count_alloc`], which may still refuse it over
    /// a limit), so a request it cannot serve leaves nothing to take back. No one else writes
    /// the thread's shard in between.
    ///
    /// `home` is the thread's home slot (`home_slot()`'s answer) for sharded counters, `None`
    /// for single-owner ones (a slot given to single-owner counters, or `None` to sharded ones,
    /// finds nothing).
    #[inline(always)]
    pub(crate) fn ready(&self, home: Option<usize>) -> Option<ReadyCounters<'_>> {
        let shard = self.ready_shard(home)?;
        Some(ReadyCounters { stats: self, shard, owned: home.is_none() })
    }

    /// The single owner's counters, for a call-free count by a single-owner backend (which
    /// has them by the header's invariant: no test of that). An allocation's count checks the
    /// limit ([`ReadyCounters::count_alloc`]).
    #[inline(always)]
    pub(crate) fn ready_owned(&self) -> ReadyCounters<'_> {
        debug_assert!(self.single_owner, "a single-owner backend has single-owner counters");
        ReadyCounters { stats: self, shard: &self.overflow, owned: true }
    }

    /// Whether a limit covers these counters, their own or (budgeted) one kept above them: one
    /// relaxed load.
    #[inline(always)]
    pub fn limited(&self) -> bool {
        self.ceiling.load(Relaxed) != isize::MAX as usize
    }

    /// The limit on live bytes; 0 = none.
    pub fn limit(&self) -> usize {
        self.limit.load(Relaxed)
    }

    /// Sets the limit on live bytes (0 = none). Requests that start after it returns are held
    /// to it; one in flight on another thread meanwhile may be counted as before.
    ///
    /// Budgeted counters keep their budget: the limit is only stored, for the backend, which
    /// grants budgets from it.
    pub fn set_limit(&self, max_live_bytes: usize) {
        let _serial = self.limit_lock.lock().unwrap_or_else(|e| e.into_inner());
        // Beyond isize::MAX no request could pass it: the same as no limit.
        let max = if max_live_bytes > isize::MAX as usize { 0 } else { max_live_bytes };
        self.limit.store(max, Relaxed);
        if self.budgeted.load(Relaxed) {
            return;
        }
        let was_limited = self.limited();
        self.ceiling.store(if max == 0 { isize::MAX as usize } else { max }, Relaxed);
        if max == 0 && was_limited && !self.single_owner {
            // The grants go: the shards' marks, still below any live total, send the next
            // allocation of each thread to the slow count, which sets its mark again.
            self.take_back_grants();
        }
        if max != 0 && self.single_owner && (self.overflow.high.load(Relaxed) as isize) > max as isize {
            // A lower mark only costs a peak check on the way back up.
            self.overflow.high.store(max, Relaxed);
        }
        if max != 0 && !self.single_owner {
            self.asymmetric.store(asymmetric_fences(), Relaxed);
            // Off the hot path: every shard's high-water mark below any live total.
            let high = self.limited_high_mark();
            self.for_each_shard(|shard| {
                shard.high.store(high, Relaxed);
                shard.limited_high.store(shard.bytes.load(Relaxed), Relaxed);
            });
            // No grant under the new limit yet (the slow path's reservations hand them out), so
            // no thread counts against an old one after this.
            self.take_back_grants();
        }
    }

    /// For a limited allocator's slow path: counts `bytes` live if that keeps the live total
    /// within the limit. The total is summed over every shard under `limit_lock`, so two
    /// threads never both take the last bytes; call-free frees meanwhile only lower it.
    /// Budgeted counters count them if they fit the budget, else leave the answer to the
    /// backend ([`Reservation::OverBudget`]).
    pub(crate) fn reserve(&self, bytes: usize) -> Reservation {
        if !self.limited() {
            return Reservation::Unlimited;
        }
        if self.budgeted.load(Relaxed) {
            // One owner: nobody counts meanwhile.
            let after = self.live_bytes().checked_add_unsigned(bytes);
            if after.is_some_and(|after| after <= self.budget()) {
                self.count_reserved(bytes);
                return Reservation::Reserved;
            }
            return Reservation::OverBudget;
        }
        let _serial = self.limit_lock.lock().unwrap_or_else(|e| e.into_inner());
        let limit = self.limit.load(Relaxed);
        if limit == 0 {
            return Reservation::Unlimited;
        }
        if bytes > isize::MAX as usize {
            return Reservation::Refused;
        }
        let shard = self.own_shard().unwrap_or(&self.overflow);
        let mut taken_back = false;
        loop {
            // What every shard holds or may take without asking; the others' cannot change
            // while the lock is held but to fall (their frees).
            let granted = self.sum_granted();
            let held = held(shard);
            let room = (limit as isize).saturating_sub(granted);
            let need = (shard.bytes.load(Relaxed) as isize).saturating_add(bytes as isize) - held;
            if need <= room {
                // A grant: room for this request and, up to a share of the limit, for more
                // requests on the thread's call-free level.
                let extra = (room - need.max(0)).min(grant_size(limit));
                shard.ceiling.store((held + need.max(0) + extra) as usize, Relaxed);
                self.count_reserved(bytes);
                return Reservation::Reserved;
            }
            if taken_back {
                return Reservation::Refused;
            }
            // Too little room: every shard gives back what it holds unused, then the request
            // is decided on the exact live bytes.
            self.take_back_grants();
            taken_back = true;
        }
    }

    /// The sum over every shard of what it holds or may take without asking: the most the
    /// live bytes may reach before a reservation is asked again.
    fn sum_granted(&self) -> isize {
        let mut total: isize = 0;
        self.for_each_shard(|s| total = total.wrapping_add(held(s)));
        total
    }

    /// Takes every shard's grant back ([`NO_GRANT`]), then waits until no thread is inside its
    /// lane of the gate (one that is holds it only for a few instructions): after that, every
    /// count against an old grant is done and in the shards' bytes, and none can start. The
    /// caller holds `limit_lock`.
    ///
    /// The gate is Dekker's pattern (`policy::sharing`), with the ceilings as the quiescing
    /// side's store: a thread sets its `busy` flag, fences, then reads its ceiling; this side
    /// lowers every ceiling, fences, then reads every `busy` flag. So either the thread reads
    /// the lowered ceiling (and counts nothing), or this side sees it inside and waits for it
    /// to leave, which publishes its count (its `busy` store is a release, read with acquire).
    #[cold]
    fn take_back_grants(&self) {
        self.for_each_shard(|s| s.ceiling.store(NO_GRANT, Relaxed));
        loop {
            let fenced = quiescing_fence(self.asymmetric.load(Relaxed));
            let mut inside = false;
            self.for_each_shard(|s| inside |= s.busy.load(Acquire));
            if fenced && !inside {
                break;
            }
            std::thread::yield_now();
        }
    }

    /// The high-water mark of every shard of a limited shared allocator ([`LIMITED_HIGH`] or
    /// [`LIMITED_HIGH_FENCED`]).
    fn limited_high_mark(&self) -> usize {
        if self.asymmetric.load(Relaxed) {
            LIMITED_HIGH
        } else {
            LIMITED_HIGH_FENCED
        }
    }

    /// Takes `limit_lock` for a fork (the registry's prepare handler, with the registry's lock
    /// held): no reservation, limit change or grant taken back runs across the fork.
    ///
    /// # Safety
    /// `self` stays where it is until [`ShardedStats::release_after_fork`] (the registry's lock
    /// keeps its allocator alive).
    pub(crate) unsafe fn hold_for_fork(&self) {
        // SAFETY: forwarded contract.
        unsafe { self.fork_held.hold_unbounded(&self.limit_lock) };
    }

    /// Releases what [`ShardedStats::hold_for_fork`] took. In the child, which has only the
    /// forking thread, a gate's flags that other threads of the parent had set (a thread inside
    /// its lane at the fork) are cleared: nobody would clear them, and a reservation that takes
    /// grants back would wait for them forever.
    pub(crate) fn release_after_fork(&self) {
        if fork::in_child() {
            self.for_each_shard(|s| s.busy.store(false, Relaxed));
        }
        self.fork_held.release();
    }

    /// Counts `bytes` live for a reservation. The peak waits for the request to succeed
    /// ([`ShardedStats::record_alloc_reserved`]): a refused one never held them.
    fn count_reserved(&self, bytes: usize) {
        self.add_bytes(bytes);
    }

    /// The live total of a request that succeeded on a reservation may be a new peak.
    fn note_reserved_peak(&self) {
        let live = self.live_bytes();
        if live > 0 {
            self.peak.fetch_max(live as usize, Relaxed);
        }
    }

    /// The live bytes, signed (a block counted before the counters were and freed after
    /// drives them below zero). A single owner's are exact; a shared allocator's are a sum
    /// that threads counting meanwhile may change.
    pub fn live_bytes(&self) -> isize {
        self.sum(|s| &s.bytes) as isize
    }

    /// Whether the counters are budgeted (see the struct's invariant).
    pub fn budgeted(&self) -> bool {
        self.budgeted.load(Relaxed)
    }

    /// A budgeted single owner's budget: the most live bytes its call-free level may reach
    /// (below zero: none, whatever it frees).
    pub fn budget(&self) -> isize {
        self.ceiling.load(Relaxed) as isize
    }

    /// Makes single-owner counters budgeted with `budget` (below `isize::MAX`), or sets the
    /// budget of budgeted ones: the call-free level allocates up to it, a reservation past it
    /// asks the backend. The backend keeps the limits the budget is granted from; the
    /// counters' own limit is left to it.
    pub fn set_budget(&self, budget: isize) {
        debug_assert!(self.single_owner && budget < isize::MAX, "a single owner's budget");
        self.ceiling.store(budget as usize, Relaxed);
        self.budgeted.store(true, Relaxed);
        // Never above the budget: past it, the call-free level must ask.
        if (self.overflow.high.load(Relaxed) as isize) > budget {
            self.overflow.high.store(budget as usize, Relaxed);
        }
    }

    /// Ends a budget ([`ShardedStats::set_budget`]): the counters' own limit (if any) is their
    /// ceiling again.
    pub fn clear_budget(&self) {
        let _serial = self.limit_lock.lock().unwrap_or_else(|e| e.into_inner());
        self.budgeted.store(false, Relaxed);
        let limit = self.limit.load(Relaxed);
        self.ceiling.store(if limit == 0 { isize::MAX as usize } else { limit }, Relaxed);
        if limit != 0 && (self.overflow.high.load(Relaxed) as isize) > limit as isize {
            self.overflow.high.store(limit, Relaxed);
        }
    }

    /// The backend's answer to `Reservation::OverBudget` when the bytes fit: counts them
    /// live (as `Reservation::Reserved` does) under a new `budget`, which covers them.
    pub fn reserve_granted(&self, bytes: usize, budget: isize) {
        self.set_budget(budget);
        self.count_reserved(bytes);
        debug_assert!(self.live_bytes() <= budget, "a budget covers what it granted");
    }

    /// Takes back a reservation whose request failed.
    pub(crate) fn unreserve(&self, bytes: usize) {
        self.add_bytes(bytes.wrapping_neg());
    }

    /// Counts an allocation of `size` bytes whose bytes `ShardedStats::reserve` counted.
    pub(crate) fn record_alloc_reserved(&self, size: usize) {
        self.note_reserved_peak();
        match self.own_shard() {
            Some(shard) => {
                bump(&shard.class_allocs[size_class(size)], 1);
            }
            None => {
                self.overflow.class_allocs[size_class(size)].fetch_add(1, Relaxed);
            }
        }
    }

    /// Adds `delta` (wrapping) to the calling thread's live bytes.
    fn add_bytes(&self, delta: usize) {
        match self.own_shard() {
            Some(shard) => {
                bump(&shard.bytes, delta);
            }
            None => {
                self.overflow.bytes.fetch_add(delta, Relaxed);
            }
        }
    }

    /// Calls `f` on the overflow shard and every thread's shard.
    fn for_each_shard(&self, mut f: impl FnMut(&Shard)) {
        f(&self.overflow);
        let mut present = self.present.load(Acquire);
        while present != 0 {
            let slot = present.trailing_zeros() as usize;
            present &= present - 1;
            // SAFETY: `present` bits are set only after the table and the entry are non-null
            // and initialised (as in `sum`).
            f(unsafe { &*(*self.shards.load(Acquire)).0[slot].load(Acquire) });
        }
    }

    /// [`ShardedStats::record_alloc`] for single-owner counters: no home slot, and never a
    /// call. One owner's block is the whole live total, so a new high-water mark is checked
    /// against the peak right here.
    #[inline(always)]
    fn record_alloc_owned(&self, size: usize, class: usize) -> bool {
        let shard = &self.overflow;
        let bytes = shard.bytes.load(Relaxed).wrapping_add(size);
        if (bytes as isize) > (shard.high.load(Relaxed) as isize) {
            crate::policy::cold_path();
            // Below the high-water mark is below the limit (`high <= limit`): the limit is
            // read only on the way to a new mark.
            if (bytes as isize) > (self.ceiling.load(Relaxed) as isize) {
                return false;
            }
            shard.high.store(bytes, Relaxed);
            // Only the owner writes the peak of single-owner counters (a reset may have
            // lowered the high-water mark below it).
            if bytes > self.peak.load(Relaxed) {
                self.peak.store(bytes, Relaxed);
            }
        }
        shard.bytes.store(bytes, Relaxed);
        bump(&shard.class_allocs[class], 1);
        true
    }

    /// Counts a free of `size` bytes, of size class `class`, on `shard`.
    #[inline(always)]
    fn count_free(shard: &Shard, size: usize, class: usize) {
        bump(&shard.bytes, size.wrapping_neg());
        bump(&shard.class_frees[class], 1);
    }

    /// Counts a free as [`ShardedStats::record_free`] if that needs no call; else counts nothing
    /// and returns false.
    #[inline(always)]
    pub fn try_record_free(&self, size: usize) -> bool {
        self.try_record_free_at(self.home(), size)
    }

    /// [`ShardedStats::try_record_free`] for a caller that knows the calling thread's home slot
    /// (`home` as for `ShardedStats::ready`: the thread's home slot for sharded counters, `None`
    /// for single-owner ones).
    #[inline(always)]
    pub fn try_record_free_at(&self, home: Option<usize>, size: usize) -> bool {
        match self.ready(home) {
            Some(counters) => {
                counters.count_free(size);
                true
            }
            None => false,
        }
    }

    /// Counts a successful allocation of `size` bytes: the call-free path when it can, else
    /// the full one.
    #[inline(always)]
    pub fn record_alloc(&self, size: usize) {
        if !self.try_record_alloc(size) {
            self.record_alloc_full(size);
        }
    }

    /// [`ShardedStats::record_alloc`] for what the fast path refuses: claiming a slot, creating
    /// a shard, a new high-water mark, the shared shard.
    #[inline(never)]
    fn record_alloc_full(&self, size: usize) {
        match self.own_shard() {
            Some(shard) => {
                let bytes = bump(&shard.bytes, size);
                // The class counters are the allocation count (summed on read).
                bump(&shard.class_allocs[size_class(size)], 1);
                if (bytes as isize) > (shard.high.load(Relaxed) as isize) {
                    self.raise_high(shard, bytes);
                }
            }
            None => {
                self.overflow.class_allocs[size_class(size)].fetch_add(1, Relaxed);
                self.overflow_add(size as isize, 0)
            }
        }
    }

    /// Counts a free of a `size`-byte block (the call-free path when it can).
    #[inline(always)]
    pub fn record_free(&self, size: usize) {
        if !self.try_record_free(size) {
            self.record_free_full(size);
        }
    }

    /// [`ShardedStats::record_free`] for what the fast path refuses.
    #[inline(never)]
    fn record_free_full(&self, size: usize) {
        match self.own_shard() {
            Some(shard) => {
                bump(&shard.bytes, size.wrapping_neg());
                bump(&shard.class_frees[size_class(size)], 1);
            }
            None => {
                self.overflow.class_frees[size_class(size)].fetch_add(1, Relaxed);
                self.overflow_add(-(size as isize), 0)
            }
        }
    }

    /// Counts a resize from `old_size` to `new_size` bytes.
    #[inline(always)]
    pub fn record_realloc(&self, old_size: usize, new_size: usize) {
        let delta = new_size.wrapping_sub(old_size);
        let (from, to) = (size_class(old_size), size_class(new_size));
        match self.own_shard() {
            Some(shard) => {
                let bytes = bump(&shard.bytes, delta);
                if from != to {
                    // The block changes class: it leaves one and enters the other; `moves`
                    // keeps this out of the totals.
                    bump(&shard.class_frees[from], 1);
                    bump(&shard.class_allocs[to], 1);
                    bump(&shard.moves, 1);
                }
                if (bytes as isize) > (shard.high.load(Relaxed) as isize) {
                    self.raise_high(shard, bytes);
                }
            }
            None => {
                if from != to {
                    self.overflow.class_frees[from].fetch_add(1, Relaxed);
                    self.overflow.class_allocs[to].fetch_add(1, Relaxed);
                    self.overflow.moves.fetch_add(1, Relaxed);
                }
                self.overflow_add(delta as isize, 0)
            }
        }
    }

    /// Counts a resize whose growth `ShardedStats::reserve` counted: the block's size class
    /// only.
    pub(crate) fn record_realloc_reserved(&self, old_size: usize, new_size: usize) {
        self.note_reserved_peak();
        let (from, to) = (size_class(old_size), size_class(new_size));
        if from == to {
            return;
        }
        match self.own_shard() {
            Some(shard) => {
                bump(&shard.class_frees[from], 1);
                bump(&shard.class_allocs[to], 1);
                bump(&shard.moves, 1);
            }
            None => {
                self.overflow.class_frees[from].fetch_add(1, Relaxed);
                self.overflow.class_allocs[to].fetch_add(1, Relaxed);
                self.overflow.moves.fetch_add(1, Relaxed);
            }
        }
    }

    /// Counts a request that returned null.
    #[cold]
    pub fn record_failure(&self) {
        match self.own_shard() {
            Some(shard) => {
                bump(&shard.failed, 1);
            }
            None => {
                self.overflow.failed.fetch_add(1, Relaxed);
            }
        }
    }

    #[cold]
    fn overflow_add(&self, bytes: isize, frees: usize) {
        self.overflow.bytes.fetch_add(bytes as usize, Relaxed);
        self.overflow.frees.fetch_add(frees, Relaxed);
        if bytes > 0 {
            self.update_peak();
        }
    }

    /// `shard`'s live bytes passed its high-water mark: maybe a new peak, and a new mark
    /// (unless a limit keeps shared shards below zero, see the invariant).
    ///
    /// A shared allocator's shard checks next where it keeps the sum of every shard's reach
    /// (`max(high, bytes)`: what it may count without a check) within the peak: its `high` is
    /// its bytes plus the room the others leave below the peak, so no live total passes the
    /// peak without a check, and the peak is exact while one thread at a time allocates. When
    /// the others leave none, they give it back first: each other shard's `high` down to its
    /// bytes. A shard that another took room from since its last check (its `high` below the
    /// one it set) grows at the same time as another, and takes half the room: threads that
    /// grow at once share it and check once per halving, never at every allocation; a thread
    /// that grows alone checks once per peak's worth of growth, and at each allocation past
    /// the peak, as the peak moves with it.
    fn raise_high(&self, shard: &Shard, bytes: usize) {
        if self.single_owner {
            // Never above the limit (blocks from before it may hold the live bytes above).
            let ceiling = self.ceiling.load(Relaxed);
            shard.high.store(if (bytes as isize) > ceiling as isize { ceiling } else { bytes }, Relaxed);
            self.update_peak();
        } else if !self.limited() {
            let contended = shard.high.load(Relaxed) != shard.set_high.load(Relaxed);
            // One pass: the live total (for the peak) and the others' reach.
            let (mut live, mut others) = (0usize, 0isize);
            self.for_each_shard(|other| {
                live = live.wrapping_add(other.bytes.load(Relaxed));
                if !ptr::eq(other, shard) {
                    others = others.wrapping_add(other.reach());
                }
            });
            let peak = self.peak_with(live);
            let mut room = (peak as isize).wrapping_sub(others).wrapping_sub(bytes as isize);
            if room < 0 {
                others = 0;
                self.for_each_shard(|other| {
                    if !ptr::eq(other, shard) {
                        let (high, own) = (other.high.load(Relaxed), other.bytes.load(Relaxed));
                        // Only down, and not over a store made meanwhile (a limit's).
                        if (high as isize) > (own as isize) {
                            let _ = other.high.compare_exchange(high, own, Relaxed, Relaxed);
                        }
                        others = others.wrapping_add(other.reach());
                    }
                });
                room = (peak as isize).wrapping_sub(others).wrapping_sub(bytes as isize);
            }
            let room = if contended { room.max(0) / 2 } else { room.max(0) };
            let high = bytes.wrapping_add(room as usize);
            shard.high.store(high, Relaxed);
            shard.set_high.store(high, Relaxed);
        } else {
            self.update_peak();
        }
    }

    /// Counts an allocation of `size` bytes that the call-free level served but did not count
    /// ([`ReadyCounters::count_alloc`] said false): false when a limit refuses it, with nothing
    /// counted (the caller gives the block back and takes the slow path, whose reservation
    /// decides).
    #[cold]
    #[inline(never)]
    pub(crate) fn count_uncounted(&self, size: usize) -> bool {
        let class = size_class(size);
        if self.single_owner {
            return self.record_alloc_owned(size, class);
        }
        match self.home().and_then(|slot| self.ready_shard(Some(slot))) {
            Some(shard) => self.passed_high(shard, size, class),
            // Not the thread that was ready to count: the slow path counts it.
            None => false,
        }
    }

    /// A limited shared allocator's call-free count, its gate's fences asymmetric: `bytes` (the
    /// calling thread's `shard`'s live bytes with the allocation) are counted if they stay
    /// within the shard's grant and below its mark (a new mark checks the peak:
    /// [`ShardedStats::passed_high`]), inside the thread's lane of the gate. False: nothing
    /// counted.
    #[inline(always)]
    fn count_within_grant(&self, shard: &Shard, bytes: usize, class: usize) -> bool {
        if (bytes as isize) > (shard.limited_high.load(Relaxed) as isize)
            || !self.count_in_gate(shard, bytes, true)
        {
            return false;
        }
        bump(&shard.class_allocs[class], 1);
        true
    }

    /// Sets `shard`'s (the calling thread's) live bytes to `bytes` if they stay within its
    /// grant, inside the thread's lane of the gate, so that a reservation taking grants back
    /// ([`ShardedStats::reserve`]) sees every such count done or refused (see
    /// [`ShardedStats::take_back_grants`]). `asymmetric`: the allocator's fences are. Whether it
    /// did.
    #[inline(always)]
    fn count_in_gate(&self, shard: &Shard, bytes: usize, asymmetric: bool) -> bool {
        shard.busy.store(true, Relaxed);
        entering_fence(asymmetric);
        let fits = (bytes as isize) <= (shard.ceiling.load(Relaxed) as isize);
        if fits {
            shard.bytes.store(bytes, Relaxed);
        }
        // Release: the count happens before a reservation that sees the thread out.
        shard.busy.store(false, Release);
        fits
    }

    /// An allocation of `size` bytes in `class` takes `shard` (the calling thread's) past its
    /// high-water mark: counted, and the peak checked; false when a limit refuses it, with
    /// nothing counted. A limited shared allocator keeps every shard's mark below zero, so
    /// each of its allocations comes here and counts within the shard's grant, inside the
    /// thread's lane of the gate, so that a reservation taking grants back
    /// ([`ShardedStats::reserve`]) sees every such count done or refused; past the grant the
    /// slow path's reservation decides.
    fn passed_high(&self, shard: &Shard, size: usize, class: usize) -> bool {
        if !self.limited() {
            let bytes = bump(&shard.bytes, size);
            bump(&shard.class_allocs[class], 1);
            if (bytes as isize) > (shard.high.load(Relaxed) as isize) {
                self.raise_high(shard, bytes);
            }
            return true;
        }
        // Only this thread writes its shard's live bytes.
        let bytes = shard.bytes.load(Relaxed).wrapping_add(size);
        if !self.count_in_gate(shard, bytes, self.asymmetric.load(Relaxed)) {
            return false;
        }
        bump(&shard.class_allocs[class], 1);
        if (bytes as isize) > (shard.limited_high.load(Relaxed) as isize) {
            // A new mark of this shard within its grant: maybe a new peak.
            shard.limited_high.store(bytes, Relaxed);
            self.update_peak();
        }
        true
    }

    /// A shard passed its high-water mark: the live total may be a new peak.
    ///
    /// Exact while one thread uses the allocator; with several threads the peak is the largest
    /// live total observed at such checks (`types.h` says what that may miss or include).
    /// Returns the live total it saw and the peak after it (signed).
    #[cold]
    fn update_peak(&self) -> (usize, usize) {
        let live = self.sum(|s| &s.bytes);
        (live, self.peak_with(live))
    }

    /// Whether the shards' reach stays within the peak (see the peak's equation above).
    #[cfg(test)]
    fn reach_within_peak(&self) -> bool {
        let mut reach = 0isize;
        self.for_each_shard(|s| reach = reach.wrapping_add(s.reach()));
        reach <= self.peak.load(Relaxed) as isize
    }

    /// The peak once `live` (signed), a live total just summed, is counted in it.
    fn peak_with(&self, live: usize) -> usize {
        if (live as isize) > 0 {
            self.peak.fetch_max(live, Relaxed).max(live)
        } else {
            self.peak.load(Relaxed)
        }
    }

    fn sum(&self, field: impl Fn(&Shard) -> &AtomicUsize) -> usize {
        let mut total = field(&self.overflow).load(Relaxed);
        let mut present = self.present.load(Acquire);
        while present != 0 {
            let slot = present.trailing_zeros() as usize;
            present &= present - 1;
            // SAFETY: `present` bits are set only after the table and the entry are non-null and
            // initialised.
            let shard = unsafe { (*self.shards.load(Acquire)).0[slot].load(Acquire) };
            // SAFETY: as above.
            total = total.wrapping_add(field(unsafe { &*shard }).load(Relaxed));
        }
        total
    }

    /// Counts the implicit free of every live block (an allocator reset): live bytes and
    /// blocks drop to zero, `total_frees` grows by the number of blocks that were live.
    /// Callers make sure no other thread uses the allocator meanwhile.
    pub fn record_reset(&self) {
        let live = self.snapshot();
        let hist = self.histogram();
        if let Some(shard) = self.own_shard() {
            for (c, &n) in hist.live.iter().enumerate() {
                bump(&shard.class_frees[c], n);
            }
        } else {
            for (c, &n) in hist.live.iter().enumerate() {
                self.overflow.class_frees[c].fetch_add(n, Relaxed);
            }
        }
        // The class frees above empty the histogram; they count as frees too, so the bulk
        // counter takes the difference to the true number of live blocks (blocks freed by an
        // earlier rewind were still live in the histogram; wrapping arithmetic on read).
        let in_classes: usize = hist.live.iter().sum();
        self.record_bulk_free(0, live.allocation_count.wrapping_sub(in_classes));
        // The live bytes: every shard's back to zero (no other thread counts meanwhile, the
        // caller's promise), each below its high-water mark. Counting them all off the calling
        // thread's shard instead left the others' where they were, so an allocator that threads
        // fill and one resets (a shared arena) passed a high-water mark, and took the slow path,
        // at every allocation after its first fill.
        self.for_each_shard(|s| s.bytes.store(0, Relaxed));
    }

    /// Allocations by size class, merged over threads.
    pub fn histogram(&self) -> SizeHistogram {
        let mut h = SizeHistogram::default();
        for c in 0..SIZE_CLASSES {
            let a = self.sum(|s| &s.class_allocs[c]);
            let f = self.sum(|s| &s.class_frees[c]);
            h.total[c] = a;
            h.live[c] = a.saturating_sub(f);
        }
        h
    }

    /// Counts `count` blocks of `bytes` bytes in all freed at once (a rewind to a checkpoint).
    pub fn record_bulk_free(&self, bytes: usize, count: usize) {
        match self.own_shard() {
            Some(shard) => {
                bump(&shard.bytes, bytes.wrapping_neg());
                bump(&shard.frees, count);
            }
            None => self.overflow_add(-(bytes as isize), count),
        }
    }

    /// Merges every shard into one snapshot.
    pub fn snapshot(&self) -> AllocStats {
        let moves = self.sum(|s| &s.moves);
        let mut allocs = moves.wrapping_neg();
        let mut frees = self.sum(|s| &s.frees).wrapping_sub(moves);
        for c in 0..SIZE_CLASSES {
            allocs = allocs.wrapping_add(self.sum(|s| &s.class_allocs[c]));
            frees = frees.wrapping_add(self.sum(|s| &s.class_frees[c]));
        }
        let bytes = self.sum(|s| &s.bytes);
        // Readers can race writers on other threads; never report a transient negative.
        let bytes = if (bytes as isize) < 0 { 0 } else { bytes };
        AllocStats {
            bytes_allocated: bytes,
            // The allocator's mechanism knows this; `front::stats` fills it in.
            bytes_reserved: bytes,
            max_bytes_allocated: self.peak.load(Relaxed).max(bytes),
            allocation_count: allocs.saturating_sub(frees),
            total_allocations: allocs,
            total_frees: frees,
            failed_allocations: self.sum(|s| &s.failed),
        }
    }

    /// Starts the counters again from the blocks live now: the live blocks count as the
    /// allocations of the new period (`total_allocations` = `allocation_count`, no frees, no
    /// failures, per size class alike) and the peak restarts from the live bytes. The live
    /// bytes and blocks themselves are kept: they describe blocks that still exist, their
    /// frees will be counted, and a limit counts them. (Zeroing them left every later count
    /// short by what was live at the reset, for good: the live bytes read 0 with blocks live,
    /// and a limit let that much more through.) Callers make sure no other thread uses the
    /// allocator meanwhile.
    pub fn reset(&self) {
        let limited = self.limited();
        // What is live now, merged over the shards (a shard alone may count more frees than
        // allocations: blocks other threads allocated, or allocated uncounted).
        let live_blocks = self.snapshot().allocation_count;
        let hist = self.histogram();
        self.for_each_shard(|s| {
            for c in [&s.frees, &s.moves, &s.failed].into_iter().chain(&s.class_allocs).chain(&s.class_frees)
            {
                c.store(0, Relaxed);
            }
            // The next growth of a shard checks the new peak (a lower mark only costs a check
            // on the way up), within the limit's invariants: a single owner's mark never above
            // its ceiling, a limited shared allocator's below any live total, its own peak
            // check at `limited_high`.
            let bytes = s.bytes.load(Relaxed);
            if self.single_owner {
                let ceiling = self.ceiling.load(Relaxed);
                s.high.store(if (bytes as isize) > ceiling as isize { ceiling } else { bytes }, Relaxed);
            } else if limited {
                s.limited_high.store(bytes, Relaxed);
            } else {
                s.high.store(bytes, Relaxed);
                s.set_high.store(bytes, Relaxed);
            }
        });
        // The live blocks count as allocations of their classes, on one shard (no other thread
        // counts meanwhile, the caller's promise). Those the classes hold beyond the live count
        // (freed in bulk by a rewind, classes unknown) count as bulk frees and as moves alike,
        // which takes them off the allocations and leaves no free.
        let shard = self.own_shard().unwrap_or(&self.overflow);
        let mut in_classes = 0usize;
        for (c, &n) in hist.live.iter().enumerate() {
            shard.class_allocs[c].store(n, Relaxed);
            in_classes = in_classes.wrapping_add(n);
        }
        let bulk = in_classes.wrapping_sub(live_blocks);
        shard.frees.store(bulk, Relaxed);
        shard.moves.store(bulk, Relaxed);
        let live = self.sum(|s| &s.bytes);
        self.peak.store(if (live as isize) > 0 { live } else { 0 }, Relaxed);
    }

    /// The high-water mark a new shard starts from: 0, or below any live total for a shared
    /// allocator under a limit, or a single owner's ceiling if that is lower (a budget may be;
    /// see the invariant).
    fn initial_high(&self, limited: bool) -> usize {
        if limited && !self.single_owner {
            self.limited_high_mark()
        } else {
            (self.ceiling.load(Relaxed) as isize).min(0) as usize
        }
    }
}

impl Drop for ShardedStats {
    fn drop(&mut self) {
        let table = self.shards.load(Acquire);
        if table == empty_table() {
            return;
        }
        // SAFETY: the table and its shards were allocated in `table`/`create_shard` with these
        // layouts and are owned by `self`, which nobody uses any more.
        unsafe {
            for entry in &(*table).0 {
                let shard = entry.load(Acquire);
                if !shard.is_null() {
                    System.dealloc(shard.cast(), SHARD_LAYOUT);
                }
            }
            System.dealloc(table.cast(), Layout::new::<ShardTable>());
        }
    }
}

/// Blocks (and their bytes) that the front door counted in tracked C-made allocators and has
/// not seen freed, all such allocators together. A C-made allocator joins the registry only when
/// named (the library cannot know when an unnamed one's memory goes away), so reports and the
/// exhaustive failure check count the unnamed ones through this. Signed: a block counted before
/// `track_stats` was set but freed after makes a share negative, read as zero.
static C_MADE_LIVE: [AtomicIsize; 2] = [AtomicIsize::new(0), AtomicIsize::new(0)];

#[inline]
fn c_made_add(count: isize, bytes: isize) {
    C_MADE_LIVE[0].fetch_add(count, Relaxed);
    C_MADE_LIVE[1].fetch_add(bytes, Relaxed);
}

impl core::fmt::Debug for ReadyCounters<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ReadyCounters").field("owned", &self.owned).finish_non_exhaustive()
    }
}

/// Live blocks and bytes in tracked C-made allocators, named or not: what the front door
/// counted in them and has not seen freed.
pub fn c_made_live() -> (usize, usize) {
    let read = |i: usize| C_MADE_LIVE[i].load(Relaxed).max(0) as usize;
    (read(0), read(1))
}

/// Lowers a live count of a C-made allocator's embedded stats by `n`, stopping at zero: the
/// program reads these fields as they are, and a block counted before the stats were reset
/// (or before they counted at all) but freed after must not wrap them.
fn take(count: &AtomicUsize, n: usize) {
    let _ = count.fetch_update(Relaxed, Relaxed, |c| Some(c.saturating_sub(n)));
}

/// The embedded `stats` of a C-made allocator seen as atomics, so that threads sharing the
/// allocator never lose or tear a count.
pub(crate) struct AtomicStatsView<'a> {
    bytes_allocated: &'a AtomicUsize,
    bytes_reserved: &'a AtomicUsize,
    max_bytes_allocated: &'a AtomicUsize,
    allocation_count: &'a AtomicUsize,
    total_allocations: &'a AtomicUsize,
    total_frees: &'a AtomicUsize,
    failed_allocations: &'a AtomicUsize,
}

impl core::fmt::Debug for AtomicStatsView<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_tuple("AtomicStatsView").field(&self.snapshot()).finish()
    }
}

impl AtomicStatsView<'_> {
    /// # Safety
    /// `stats` must be valid for reads and writes for `'a`, and every concurrent access to it
    /// must be atomic (the library only accesses it through this view).
    #[inline(always)]
    pub unsafe fn new<'a>(stats: *mut AllocStats) -> AtomicStatsView<'a> {
        // SAFETY: `AtomicUsize` has the size and alignment of `usize`; the caller guarantees
        // validity and atomic-only access.
        unsafe {
            AtomicStatsView {
                bytes_allocated: AtomicUsize::from_ptr(ptr::addr_of_mut!((*stats).bytes_allocated)),
                bytes_reserved: AtomicUsize::from_ptr(ptr::addr_of_mut!((*stats).bytes_reserved)),
                max_bytes_allocated: AtomicUsize::from_ptr(ptr::addr_of_mut!((*stats).max_bytes_allocated)),
                allocation_count: AtomicUsize::from_ptr(ptr::addr_of_mut!((*stats).allocation_count)),
                total_allocations: AtomicUsize::from_ptr(ptr::addr_of_mut!((*stats).total_allocations)),
                total_frees: AtomicUsize::from_ptr(ptr::addr_of_mut!((*stats).total_frees)),
                failed_allocations: AtomicUsize::from_ptr(ptr::addr_of_mut!((*stats).failed_allocations)),
            }
        }
    }

    #[inline]
    pub fn record_alloc(&self, size: usize) {
        c_made_add(1, size as isize);
        let live = self.bytes_allocated.fetch_add(size, Relaxed).wrapping_add(size);
        self.allocation_count.fetch_add(1, Relaxed);
        self.total_allocations.fetch_add(1, Relaxed);
        if live > self.max_bytes_allocated.load(Relaxed) {
            self.max_bytes_allocated.fetch_max(live, Relaxed);
        }
    }

    #[inline]
    pub fn record_free(&self, size: usize) {
        c_made_add(-1, (size as isize).wrapping_neg());
        take(self.bytes_allocated, size);
        take(self.allocation_count, 1);
        self.total_frees.fetch_add(1, Relaxed);
    }

    #[inline]
    pub fn record_realloc(&self, old_size: usize, new_size: usize) {
        c_made_add(0, (new_size as isize).wrapping_sub(old_size as isize));
        if new_size >= old_size {
            let grow = new_size - old_size;
            let live = self.bytes_allocated.fetch_add(grow, Relaxed).wrapping_add(grow);
            if live > self.max_bytes_allocated.load(Relaxed) {
                self.max_bytes_allocated.fetch_max(live, Relaxed);
            }
        } else {
            take(self.bytes_allocated, old_size - new_size);
        }
    }

    pub fn record_failure(&self) {
        self.failed_allocations.fetch_add(1, Relaxed);
    }

    pub fn record_reset(&self) {
        let count = self.allocation_count.swap(0, Relaxed);
        let bytes = self.bytes_allocated.swap(0, Relaxed);
        c_made_add((count as isize).wrapping_neg(), (bytes as isize).wrapping_neg());
        self.total_frees.fetch_add(count, Relaxed);
    }

    pub fn record_bulk_free(&self, bytes: usize, count: usize) {
        c_made_add((count as isize).wrapping_neg(), (bytes as isize).wrapping_neg());
        take(self.bytes_allocated, bytes);
        take(self.allocation_count, count);
        self.total_frees.fetch_add(count, Relaxed);
    }

    pub fn snapshot(&self) -> AllocStats {
        let bytes = self.bytes_allocated.load(Relaxed);
        AllocStats {
            bytes_allocated: bytes,
            // A C allocator may keep this itself; the front door cannot know its overhead.
            bytes_reserved: self.bytes_reserved.load(Relaxed).max(bytes),
            max_bytes_allocated: self.max_bytes_allocated.load(Relaxed),
            allocation_count: self.allocation_count.load(Relaxed),
            total_allocations: self.total_allocations.load(Relaxed),
            total_frees: self.total_frees.load(Relaxed),
            failed_allocations: self.failed_allocations.load(Relaxed),
        }
    }

    /// Stores a whole snapshot (used to refresh a library allocator's embedded copy).
    pub fn store(&self, s: &AllocStats) {
        self.bytes_allocated.store(s.bytes_allocated, Relaxed);
        self.bytes_reserved.store(s.bytes_reserved, Relaxed);
        self.max_bytes_allocated.store(s.max_bytes_allocated, Relaxed);
        self.allocation_count.store(s.allocation_count, Relaxed);
        self.total_allocations.store(s.total_allocations, Relaxed);
        self.total_frees.store(s.total_frees, Relaxed);
        self.failed_allocations.store(s.failed_allocations, Relaxed);
    }
}

/// The invariants of [`ShardedStats`], between counted operations of every thread (a thread
/// that is creating its shard has stored the table entry but not yet set its bit):
///
/// ```text
/// present bit i set   <=>  table[i] != null            for every slot i < SLOTS
/// shards == EMPTY     =>   present == 0                (the shared empty table is never written)
/// single_owner        =>   shards == EMPTY             (one owner counts in `overflow` only)
/// table[i] != null    =>   table[i] % 64 == 0          (a shard is whole cache lines)
/// ```
impl ShardedStats {
    /// Verifies the invariants above. Reads only; allocates nothing.
    pub fn check(&self) -> Result<(), InvariantError> {
        const STATS: &str = "stats";
        let table = self.shards.load(Acquire);
        let present = self.present.load(Acquire);
        ensure(!self.single_owner || table == empty_table(), STATS, "single_owner => shards == EMPTY")?;
        if table == empty_table() {
            ensure(present == 0, STATS, "shards == EMPTY => present == 0")?;
        }
        ensure(!table.is_null(), STATS, "shards != null")?;
        for slot in 0..SLOTS {
            // SAFETY: `shards` is the shared empty table or one this value owns until it is
            // dropped (the struct's invariant); `slot < SLOTS`.
            let shard = unsafe { (*table).0[slot].load(Acquire) };
            ensure(
                (present >> slot & 1 == 1) != shard.is_null(),
                STATS,
                "present bit i set <=> table[i] != null",
            )?;
            ensure(shard.addr().is_multiple_of(SHARD_LAYOUT.align()), STATS, "table[i] % 64 == 0")?;
        }
        let limit = self.limit.load(Relaxed);
        let ceiling = self.ceiling.load(Relaxed);
        let budgeted = self.budgeted.load(Relaxed);
        if !budgeted {
            ensure(
                if limit == 0 { ceiling == isize::MAX as usize } else { ceiling == limit },
                STATS,
                "!budgeted => ceiling == (limit == 0 ? isize::MAX : limit)",
            )?;
        }
        ensure(
            !budgeted || (self.single_owner && (ceiling as isize) < isize::MAX),
            STATS,
            "budgeted => single_owner and ceiling < isize::MAX",
        )?;
        if self.limited() && self.single_owner {
            let high = self.overflow.high.load(Relaxed) as isize;
            ensure(high <= ceiling as isize, STATS, "limited() && single_owner => high <= ceiling")?;
        }
        if limit != 0 && !self.single_owner {
            let mut below = true;
            self.for_each_shard(|s| below &= (s.high.load(Relaxed) as isize) < 0);
            ensure(below, STATS, "limit != 0 && !single_owner => high < 0 in every shard")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod invariant_tests {
    use super::*;

    /// Each corruption breaks one equation and `check` names it.
    #[test]
    fn check_reports_each_broken_equation() {
        let s = ShardedStats::new();
        assert_eq!(s.check(), Ok(()));
        std::thread::scope(|t| {
            t.spawn(|| s.record_alloc(8)); // a thread of its own: a slot and a shard
        });
        s.record_alloc(16);
        assert_eq!(s.check(), Ok(()));
        let present = s.present.load(Relaxed);
        assert_ne!(present, 0);
        s.present.store(present & (present - 1), Relaxed);
        assert_eq!(s.check().unwrap_err().broken, "present bit i set <=> table[i] != null");
        s.present.store(present | !present & (!present).wrapping_neg(), Relaxed);
        assert_eq!(s.check().unwrap_err().broken, "present bit i set <=> table[i] != null");
        s.present.store(present, Relaxed);
        assert_eq!(s.check(), Ok(()));

        let owned = ShardedStats::single_owner();
        owned.record_alloc(8);
        assert_eq!(owned.check(), Ok(()));
        owned.present.store(1, Relaxed);
        assert_eq!(owned.check().unwrap_err().broken, "shards == EMPTY => present == 0");
        owned.present.store(0, Relaxed);
        let table = s.shards.swap(empty_table(), Relaxed);
        owned.shards.store(table, Relaxed);
        assert_eq!(owned.check().unwrap_err().broken, "single_owner => shards == EMPTY");
        owned.shards.store(empty_table(), Relaxed);
        s.shards.store(table, Relaxed);
        assert_eq!((s.check(), owned.check()), (Ok(()), Ok(())));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_thread_counts_and_peak_are_exact() {
        let s = ShardedStats::new();
        s.record_alloc(100);
        s.record_alloc(50);
        s.record_free(100);
        s.record_realloc(50, 80);
        s.record_failure();
        let snap = s.snapshot();
        assert_eq!(snap.bytes_allocated, 80);
        assert_eq!(snap.max_bytes_allocated, 150);
        assert_eq!(snap.allocation_count, 1);
        assert_eq!(snap.total_allocations, 2);
        assert_eq!(snap.total_frees, 1);
        assert_eq!(snap.failed_allocations, 1);
        s.reset();
        // The live block stays (its free will be counted); the totals restart from it.
        let snap = s.snapshot();
        assert_eq!((snap.bytes_allocated, snap.max_bytes_allocated, snap.allocation_count), (80, 80, 1));
        assert_eq!((snap.total_allocations, snap.total_frees, snap.failed_allocations), (1, 0, 0));
        s.record_free(80);
        s.record_alloc(40);
        let snap = s.snapshot();
        assert_eq!((snap.bytes_allocated, snap.max_bytes_allocated, snap.allocation_count), (40, 80, 1));
        assert_eq!((snap.total_allocations, snap.total_frees), (2, 1));
        s.record_free(40);
        s.reset();
        assert_eq!(s.snapshot(), AllocStats::default());
    }

    #[test]
    fn histogram_follows_reallocs_and_resets() {
        let s = ShardedStats::new();
        s.record_alloc(8); // class 0
        s.record_alloc(100); // class 4
        s.record_realloc(8, 1000); // class 0 -> 7
        s.record_bulk_free(100, 1); // a rewind: class unknown
        let h = s.histogram();
        assert_eq!((h.live[0], h.live[4], h.live[7]), (0, 1, 1));
        let snap = s.snapshot();
        assert_eq!((snap.total_allocations, snap.total_frees, snap.allocation_count), (2, 1, 1));
        s.record_reset();
        let snap = s.snapshot();
        assert_eq!((snap.total_allocations, snap.total_frees, snap.allocation_count), (2, 2, 0));
        assert_eq!(s.histogram().live, [0; SIZE_CLASSES]);
        assert_eq!(size_class(1), 0);
        assert_eq!(size_class(9), 1);
        assert_eq!(size_class(usize::MAX), SIZE_CLASSES - 1);
    }

    /// The call-free fast paths count exactly what the full ones do, and refuse (counting
    /// nothing) exactly when they cannot: no shard yet, or a new high-water mark of shared
    /// counters (single-owner ones never refuse).
    #[test]
    fn fast_paths_count_like_the_full_ones() {
        for single_owner in [false, true] {
            let s = if single_owner { ShardedStats::single_owner() } else { ShardedStats::new() };
            let model = ShardedStats::single_owner();
            // The first count of shared counters is never fast: it is a new high-water mark (and
            // a fresh thread has no shard yet).
            let first = std::thread::scope(|t| t.spawn(|| s.try_record_alloc(8)).join().unwrap());
            assert_eq!(first, single_owner);
            if !first {
                std::thread::scope(|t| {
                    t.spawn(|| s.record_alloc(8));
                });
            }
            model.record_alloc(8);
            let sizes = [100, 3, 4000, 100, 17, 1 << 20, 64];
            let mut live = Vec::new();
            for (i, &size) in sizes.iter().cycle().take(40).enumerate() {
                if i % 3 == 2 {
                    let size = live.pop().unwrap();
                    if !s.try_record_free(size) {
                        s.record_free(size);
                    }
                    model.record_free(size);
                } else {
                    if !s.try_record_alloc(size) {
                        s.record_alloc(size);
                    }
                    model.record_alloc(size);
                    live.push(size);
                }
                assert_eq!(s.snapshot(), model.snapshot(), "after op {i}");
                assert_eq!(s.histogram(), model.histogram());
            }
            // Below the high-water mark the fast path serves. Past it, a single owner's raises
            // the mark and the peak itself; shared counters' refuses, counting nothing, and the
            // full path counts. (Shared counters' fast path needs the thread's home slot, which
            // another test's thread may hold: then it refuses too.)
            let home = single_owner || home_slot().is_some();
            let size = live.pop().unwrap();
            assert!(s.try_record_free(size) || !home);
            assert!(s.try_record_alloc(1) || !home);
            let snap = s.snapshot();
            let big = snap.max_bytes_allocated;
            let counted = s.try_record_alloc(big);
            assert_eq!(counted, single_owner);
            if !counted {
                assert_eq!(s.snapshot(), snap);
                s.record_alloc(big);
            }
            assert_eq!(s.snapshot().max_bytes_allocated, snap.bytes_allocated + big);
        }
    }

    /// A thread whose shard only climbs (a producer whose blocks another thread frees) passes
    /// its high-water mark once per peak's worth of growth, not at every allocation, and the
    /// peak stays exact while one thread at a time counts.
    #[test]
    fn a_climbing_shard_checks_the_peak_once_per_peak_of_growth() {
        let s = ShardedStats::new();
        let (runs, per_run) = if cfg!(miri) { (3, 50) } else { (10, 1000) };
        let (to_worker, worker_rx) = std::sync::mpsc::channel::<()>();
        let (to_main, main_rx) = std::sync::mpsc::channel::<(usize, bool)>();
        std::thread::scope(|t| {
            t.spawn(|| {
                // One thread for every run, so that its shard climbs across them.
                for () in worker_rx {
                    let mut calls = 0;
                    for _ in 0..per_run {
                        if !s.try_record_alloc(16) {
                            calls += 1;
                            s.record_alloc(16);
                        }
                    }
                    // Without its home slot (another test's thread holds it) a thread never
                    // takes the fast path: nothing to show then.
                    to_main.send((calls, home_slot().is_some())).unwrap();
                }
            });
            for run in 0..runs {
                to_worker.send(()).unwrap();
                let (calls, home) = main_rx.recv().unwrap();
                // The consumer frees what the producer made, counted on its own shard.
                for _ in 0..per_run {
                    s.record_free(16);
                }
                let snap = s.snapshot();
                assert_eq!(snap.max_bytes_allocated, 16 * per_run, "run {run}: the peak is one run's");
                assert_eq!((snap.bytes_allocated, snap.total_frees), (0, (run + 1) * per_run));
                if home && run > 0 {
                    assert!(calls <= 2, "run {run}: {calls} of {per_run} allocations left the fast path");
                }
            }
            drop(to_worker);
        });
    }

    /// Two threads that grow at once (in lockstep, the worst interleaving) to a peak a third
    /// thread set before share the room below it: each checks once per halving of it, not at
    /// every allocation, and the peak stays exact (one thread counts at a time).
    #[test]
    fn threads_growing_at_once_share_the_room_below_the_peak() {
        let s = ShardedStats::new();
        let per_run = if cfg!(miri) { 40 } else { 1000 };
        // Each step: allocate once (or, with `false`, free what the thread holds), then answer
        // with the calls taken and whether the thread holds its home slot.
        let worker = |steps: std::sync::mpsc::Receiver<bool>,
                      done: std::sync::mpsc::Sender<(usize, bool)>| {
            let mut held = 0;
            for alloc in steps {
                let mut calls = 0;
                if alloc {
                    held += 1;
                    if !s.try_record_alloc(16) {
                        calls += 1;
                        s.record_alloc(16);
                    }
                } else {
                    for _ in 0..core::mem::take(&mut held) {
                        s.record_free(16);
                    }
                }
                done.send((calls, home_slot().is_some())).unwrap();
            }
        };
        std::thread::scope(|t| {
            let mut threads = Vec::new();
            for _ in 0..3 {
                let (to, steps) = std::sync::mpsc::channel();
                let (done, from) = std::sync::mpsc::channel();
                t.spawn(move || worker(steps, done));
                threads.push((to, from));
            }
            let step = |i: usize, alloc: bool| {
                let (to, from) = &threads[i];
                to.send(alloc).unwrap();
                from.recv().unwrap()
            };
            // The third thread sets the peak, and leaves its room where its shard is.
            for _ in 0..2 * per_run {
                step(2, true);
            }
            step(2, false);
            let (mut calls, mut homes) = (0, true);
            for _ in 0..per_run {
                for i in 0..2 {
                    let (c, home) = step(i, true);
                    calls += c;
                    homes &= home;
                }
            }
            let snap = s.snapshot();
            assert_eq!(
                (snap.max_bytes_allocated, snap.bytes_allocated),
                (2 * 16 * per_run, 2 * 16 * per_run)
            );
            if homes {
                assert!(calls <= 64, "{calls} of {} allocations left the fast path", 2 * per_run);
                assert!(s.reach_within_peak());
            }
            // Past the peak, the peak moves with every allocation.
            step(0, true);
            assert_eq!(s.snapshot().max_bytes_allocated, 2 * 16 * per_run + 16, "the peak is exact");
            step(0, false);
            step(1, false);
        });
        assert_eq!(s.snapshot().bytes_allocated, 0);
        s.check().unwrap();
    }

    /// Threads one after the other (each joined before the next counts): a shard's room below
    /// the peak goes when another shard checks, so the last thread's new peak is seen.
    #[test]
    fn one_thread_at_a_time_keeps_the_peak_exact() {
        let s = ShardedStats::new();
        let on_a_thread = |f: &(dyn Fn() + Sync)| std::thread::scope(|t| t.spawn(f).join().unwrap());
        let alloc = |size| {
            if !s.try_record_alloc(size) {
                s.record_alloc(size);
            }
        };
        on_a_thread(&|| alloc(10_000));
        on_a_thread(&|| s.record_free(10_000)); // live 0, peak 10,000
        alloc(100); // this thread's shard: room up to the peak, were it the only one counting
        on_a_thread(&|| alloc(9_900)); // live 10,000: another shard checked
        alloc(3_000); // a new peak
        s.record_free(3_000);
        let snap = s.snapshot();
        assert_eq!((snap.bytes_allocated, snap.max_bytes_allocated), (10_000, 13_000));
    }

    /// Waves of threads (more than the slots' home positions can hold without collisions, and
    /// reusing the slots of threads that exited) count exactly, whether a thread gets its home
    /// slot (fast path) or another one (full path).
    #[test]
    fn thread_waves_count_exactly_on_both_paths() {
        let s = ShardedStats::new();
        let (waves, threads, ops) = if cfg!(miri) { (2, 4, 60) } else { (3, 24, 2_000) };
        let fast = AtomicUsize::new(0);
        for _ in 0..waves {
            std::thread::scope(|t| {
                for _ in 0..threads {
                    t.spawn(|| {
                        // A distinct, non-zero key per live thread.
                        assert_ne!(crate::policy::thread_slot::thread_key(), 0);
                        s.record_alloc(1); // claims a slot
                        for i in 0..ops {
                            // A short cycle of sizes: past its first turn, no new peaks.
                            let size = 1 + (i * 7) % 13;
                            if s.try_record_alloc(size) {
                                fast.fetch_add(1, Relaxed);
                            } else {
                                s.record_alloc(size);
                            }
                            if !s.try_record_free(size) {
                                s.record_free(size);
                            }
                        }
                        s.record_free(1);
                    });
                }
            });
        }
        let snap = s.snapshot();
        let total = waves * threads * (ops + 1);
        assert_eq!(snap.total_allocations, total);
        assert_eq!(snap.total_frees, total);
        assert_eq!(snap.bytes_allocated, 0);
        assert_eq!(snap.allocation_count, 0);
        // Threads that got their home slot count on the fast path (most do; a loose bound, as
        // where threads land depends on their addresses and on the tests running alongside).
        assert!(fast.load(Relaxed) > total / 8, "fast path taken {} of {total}", fast.load(Relaxed));
    }

    #[test]
    fn frees_on_another_thread_balance() {
        let s = ShardedStats::new();
        s.record_alloc(64);
        std::thread::scope(|scope| {
            scope.spawn(|| s.record_free(64));
        });
        let snap = s.snapshot();
        assert_eq!(snap.bytes_allocated, 0);
        assert_eq!(snap.allocation_count, 0);
        assert_eq!(snap.max_bytes_allocated, 64);
    }
}
