//! Regions: memory regions with nested lifetimes and cleanup callbacks, as in talloc, APR pools
//! and PostgreSQL memory contexts.
//!
//! A region is an arena ([`Bump`]) with fixed-size chunks (its "regions" of `region_size`
//! bytes) plus a node in a tree: children, cleanups, a name. Resetting or destroying a region
//! first resets or destroys its children, depth first, then runs its cleanups in reverse order
//! of registration, then frees its memory. Regions are not thread-safe.
//!
//! Cleanups are user code running in the middle of a reset or destroy, so what they may do to
//! the tree is limited by one rule (see [`RegionError::Busy`]): while a reset or destroy of a
//! region runs, that region, every region under it and every region above it can be neither
//! reset nor destroyed, and no child can be created under a region being destroyed. Such a
//! request is refused (an error, counted in [`refused_count`]) and the running operation
//! finishes whole.
//!
//! A region's limit on live bytes (`front::set_limit`) covers its whole subtree: an allocation
//! in the region or in any region under it fails, as past any limit, when it would take the
//! live bytes of the subtree of a limited region past that region's limit (see "Limits" below:
//! each region's stats are granted a budget, so the call-free path stays as it is).
//!
//! Each raw-pointer function here checks its pointer against the set of live regions before
//! dereferencing it, so a pointer that names no live region is refused. Those that are safe to
//! call (hence the clippy allowance below) only read or name a region, or add to it; those that
//! free a region's memory ([`reset`], [`destroy`]), lend it out ([`backend_of`]) or register a C
//! function to run on it later ([`add_cleanup`]) are `unsafe`: Rust code may still borrow the
//! region's blocks, which the borrow checker cannot see through a raw pointer.
//!
//! A Rust cleanup ([`add_cleanup_closure`], `Region::on_cleanup`) that panics does not stop the
//! reset or destroy running it: the other cleanups run and the operation finishes, then the
//! Rust `Region` method that ran it ([`Region::reset`](crate::region::Region::reset), its drop)
//! goes on with the first such panic ([`take_cleanup_panic`]). Through the C API the panic stops
//! there, with a message (C cannot unwind).
#![allow(clippy::not_unsafe_ptr_arg_deref)]

use crate::policy::fork::held_across_forks;
use core::cell::UnsafeCell;
use core::ffi::c_void;
use core::fmt::Write as _;
use core::ptr::{self, NonNull};
use core::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::collections::HashMap;
use std::sync::Mutex;

use crate::addr_set::{addr_set, AddrSet};
use crate::allocators::arena::{Bump, ChunkPolicy};
use crate::policy::backend::{drop_managed, managed_destroy, Backend, Kind, Managed};
use crate::policy::front;
use crate::policy::invariant::{debug_check, ensure, InvariantError};
use crate::policy::names::escaped;
use crate::policy::stats::ShardedStats;
use crate::raw::{AllocOptions, AllocStats, AllocStrategy, GooAllocator};

/// `void (*GooCleanupFn)(void* arg)`: a cleanup that [`add_cleanup`] registers with a region,
/// run with its `arg` when the region is reset or destroyed.
///
/// ```
/// use core::ffi::c_void;
/// use goo_memory_core::region::{self, CleanupFn, Region};
/// unsafe extern "C" fn count(arg: *mut c_void) {
///     // SAFETY: `arg` is the counter below, alive while the region is.
///     unsafe { *arg.cast::<u32>() += 1 };
/// }
/// let mut runs = 0u32;
/// let r = Region::new(0, true);
/// let cleanup: CleanupFn = count;
/// // SAFETY: `runs` outlives the region, and `count` may run with it on this thread; no block of
/// // the region is borrowed when it is reset.
/// unsafe {
///     region::add_cleanup(r.as_ptr(), cleanup, (&raw mut runs).cast()).unwrap();
///     region::reset(r.as_ptr()).unwrap(); // runs it (once: a reset forgets the cleanups it ran)
/// }
/// drop(r);
/// assert_eq!(runs, 1);
/// ```
pub type CleanupFn = unsafe extern "C" fn(arg: *mut c_void);

enum Action {
    C(CleanupFn, *mut c_void),
    Rust(Box<dyn FnOnce()>),
}

struct Cleanup {
    id: u64,
    action: Action,
}

/// Where a region stands in its own reset or destroy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// No reset or destroy of this region runs.
    Idle,
    /// Its reset runs (the cleanups of its subtree may be running).
    Resetting,
    /// Its destroy was let through (by [`destroy`] or by its parent's teardown) and has not
    /// begun: the one destroy [`Backend::begin_destroy`] lets through without the busy rule.
    /// Never seen by user code: nothing runs between the grant and the begin.
    Granted,
    /// Its destroy runs (the cleanups of its subtree may be running).
    Destroying,
}

impl Phase {
    /// A reset or destroy of the region is running.
    fn running(self) -> bool {
        matches!(self, Phase::Resetting | Phase::Destroying)
    }
}

/// The tree part of a region.
///
/// For a live region `r` (its `GooAllocator*`) and its node, whenever user code can run (between
/// operations, and in cleanups and callbacks):
///
/// ```text
/// r               ∈  LIVE                                       (the live set)
/// children(r) := first_child, first_child.next, ... up to last_child   (the list)
/// parent != null  =>  parent ∈ LIVE  and  r ∈ children(parent)
/// c ∈ children    =>  c ∈ LIVE  and  c.parent == r,   children distinct
/// first_child == null <=> last_child == null;   c.next == null <=> c == last_child
/// c.prev == null <=> c == first_child;   c.next != null => c.next.prev == c
/// 1 <= cleanups[0].id,  cleanups[i].id < cleanups[i + 1].id < NEXT_CLEANUP_ID
/// the subtree under r is a tree: a walk of it visits at most |LIVE| regions
/// parent == null  =>  root == null, depth == 0
/// parent != null  =>  root == (parent.root, or parent if that is null), depth == parent.depth + 1
/// parent == null  =>  running == { d in r's tree : d.phase ∈ {Resetting, Destroying} },
///                     distinct, in the order their operations began
/// parent != null  =>  running empty, recent_shares empty
/// phase != Granted
/// r's bump satisfies the arena's invariants (`Bump::check`)
/// ```
///
/// and, for a region's limit over its subtree, the equations of "Limits" below.
/// [`check_raw`] verifies them all for a region and its whole subtree.
struct Node {
    /// The parent region, or null for a root.
    parent: *mut GooAllocator,
    /// Child regions, owned by this node (destroyed with it), in a list linked through their
    /// nodes (`prev`, `next`), oldest first: a child leaves it in O(1), however many siblings
    /// it has.
    first_child: *mut GooAllocator,
    last_child: *mut GooAllocator,
    /// This region's neighbours in its parent's list of children (null at either end).
    prev: *mut GooAllocator,
    next: *mut GooAllocator,
    /// Cleanups in registration order.
    cleanups: Vec<Cleanup>,
    /// The root of the region's tree, or null for a root.
    root: *mut GooAllocator,
    /// Regions between this one and its root (0 for a root).
    depth: usize,
    /// Whether a reset or destroy of this region is running (the busy rule).
    phase: Phase,
    /// In a root: the regions of its tree whose reset or destroy runs, in the order they began
    /// (nested in cleanups: a few). The busy rule asks them, not every region above or below,
    /// so that a request costs the same however deep the tree is.
    running: Vec<*mut GooAllocator>,
    /// In a root: regions of its tree granted a share with slack since the tree's shares were
    /// last taken back (a region may be listed more than once, or be gone: each is checked
    /// when the list is used). Taking back their slack first spares a walk of the whole tree
    /// when its room runs out (see "Limits" below).
    recent_shares: Vec<*mut GooAllocator>,
    region_size: usize,
    allow_large: bool,
    /// A limited region's count of what its subtree may hold without asking it (see "Limits"
    /// below); unused while the region has no limit.
    committed: isize,
    /// The nearest region above with a limit, or null (see "Limits" below): the limits over a
    /// region are found without a walk past the unlimited regions above it.
    limited_above: *mut GooAllocator,
}

/// The region mechanism: a fixed-chunk bump allocator and its node in the tree. [`backend_of`]
/// finds it behind a live region's vtable.
///
/// ```
/// use goo_memory_core::region::{self, Region};
/// let r = Region::new(1024, false); // regions of memory of 1 KiB, nothing larger
/// r.alloc([0u8; 600]);
/// r.alloc([0u8; 600]); // does not fit beside the first: a second chunk
/// // SAFETY: `r` lives while `mechanism` is used, on this thread.
/// let mechanism = unsafe { region::backend_of(r.as_ptr()) }.unwrap();
/// assert_eq!((mechanism.bump().chunk_count(), mechanism.bump().reserved()), (2, 2048));
/// let gone = r.as_ptr();
/// drop(r);
/// // SAFETY: no live region there: refused before any dereference.
/// assert!(unsafe { region::backend_of(gone) }.is_none(), "not a live region");
/// ```
pub struct RegionBackend {
    bump: Bump,
    node: UnsafeCell<Node>,
    /// The region's name ("" = none): the allocator's one name, which
    /// [`report::set_name`](crate::report::set_name) sets here too. Beside the node, behind a
    /// lock of its own: a report made on any thread reads it.
    name: Mutex<String>,
}

held_across_forks! {
    /// Regions alive now, by address: the C API checks a pointer against it before trusting
    /// it, so destroying a region twice or using a destroyed one through `goo_region_*` is
    /// caught.
    static LIVE: AddrSet = addr_set(), at Leaf, locked by live;
}

/// Whether `allocator` is a live region (checked without dereferencing it).
pub fn is_live(allocator: *const GooAllocator) -> bool {
    !allocator.is_null() && live().contains(&(allocator as usize))
}

/// Error of a region operation through a raw pointer. Every one a public function returns is
/// counted in [`refused_count`].
///
/// ```
/// use goo_memory_core::region::{self, Region, RegionError};
/// let r = Region::new(0, true);
/// // SAFETY: a region of this thread, destroyed by none meanwhile.
/// assert!(unsafe { region::stats(r.as_ptr()) }.is_ok());
/// let gone = r.as_ptr();
/// drop(r);
/// // SAFETY: no live region there: refused before it is used.
/// assert_eq!(unsafe { region::stats(gone) }, Err(RegionError::NotARegion));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RegionError {
    /// Not a live region (never was one, or already destroyed).
    NotARegion,
    /// A reset or destroy of the region, of a region above it or of a region under it is
    /// running (the request comes from one of its cleanups or callbacks): resetting or
    /// destroying the region now would free what that operation is working on.
    Busy,
    /// The region is being destroyed: a child created now would outlive it.
    BeingDestroyed,
}

impl core::fmt::Display for RegionError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            RegionError::NotARegion => "not a live region (never created, or already destroyed)",
            RegionError::Busy => {
                "a reset or destroy of this region, of a region above it or under it is running \
                 (called from a cleanup or callback)"
            }
            RegionError::BeingDestroyed => "the region is being destroyed (a child would outlive it)",
        })
    }
}

impl std::error::Error for RegionError {}

/// Region requests refused since the process started.
static REFUSED: AtomicU64 = AtomicU64::new(0);

/// How many region requests were refused since the process started (every [`RegionError`] a
/// public function of this module returned, and every destroy through a region's vtable that
/// [`Backend::begin_destroy`] refused).
pub fn refused_count() -> u64 {
    REFUSED.load(Relaxed)
}

/// Counts a refusal and passes its error on.
fn refuse(e: RegionError) -> RegionError {
    REFUSED.fetch_add(1, Relaxed);
    e
}

/// The backend of a live region for a public function: a refusal is counted.
fn live_backend<'a>(region: *mut GooAllocator) -> Result<&'a RegionBackend, RegionError> {
    backend(region).map_err(refuse)
}

/// The backend of a live region.
fn backend<'a>(region: *mut GooAllocator) -> Result<&'a RegionBackend, RegionError> {
    if !is_live(region) {
        return Err(RegionError::NotARegion);
    }
    // SAFETY: live regions are valid library allocators of this backend.
    unsafe { Managed::<RegionBackend>::try_backend(region) }.ok_or(RegionError::NotARegion)
}

impl RegionBackend {
    /// Short-lived access to the node. Callers never keep it across a call that can reach
    /// another region's node or run user code (cleanups), so two borrows never overlap.
    #[allow(clippy::mut_from_ref)]
    fn node(&self) -> &mut Node {
        // SAFETY: regions are !Sync and every use of the returned borrow is confined to a few
        // statements without calls into other regions or user code (see the callers).
        unsafe { &mut *self.node.get() }
    }

    /// The root of this region's tree (itself for a root).
    fn root(&self) -> &RegionBackend {
        let root = self.node().root;
        if root.is_null() {
            self
        } else {
            // SAFETY: the root of a live region is live: it is destroyed after its subtree.
            unsafe { Managed::<RegionBackend>::backend(root) }
        }
    }

    /// Whether this region is `other` or lies under it: a walk up from this region to `other`'s
    /// depth.
    fn is_within(&self, other: &RegionBackend) -> bool {
        let target = other.node().depth;
        let mut r = self;
        while r.node().depth > target {
            // SAFETY: a region deeper than 0 has a parent, live (`Node`'s equations).
            r = unsafe { Managed::<RegionBackend>::backend(r.node().parent) };
        }
        ptr::eq(r, other)
    }

    /// The regions of this region's tree whose reset or destroy runs, each with its phase.
    fn running_in_tree(&self) -> impl Iterator<Item = (&RegionBackend, Phase)> {
        let running = self.root().node().running.clone();
        running.into_iter().map(|r| {
            // SAFETY: a region whose operation runs is live (it leaves the list before it is freed).
            let b = unsafe { Managed::<RegionBackend>::backend(r) };
            (b, b.node().phase)
        })
    }

    /// The busy rule for a reset or destroy of this region: refused while a reset or destroy of
    /// it, of a region above it (it is inside the subtree being torn down) or of a region under
    /// it (that operation's regions would be freed) is running.
    fn check_not_busy(&self) -> Result<(), RegionError> {
        if self.node().phase != Phase::Idle
            || self.running_in_tree().any(|(r, _)| self.is_within(r) || r.is_within(self))
        {
            return Err(RegionError::Busy);
        }
        Ok(())
    }

    /// Whether this region is being destroyed, or lies under one being destroyed (no child may
    /// be created under it).
    fn doomed(&self) -> bool {
        matches!(self.node().phase, Phase::Granted | Phase::Destroying)
            || self.running_in_tree().any(|(r, phase)| phase == Phase::Destroying && self.is_within(r))
    }

    /// Marks a reset or destroy of this region (`me`) as running (for the busy rule).
    fn begin(&self, me: *mut GooAllocator, phase: Phase) {
        self.node().phase = phase;
        self.root().node().running.push(me);
    }

    /// Marks this region's (`me`'s) reset or destroy as finished.
    fn end(&self, me: *mut GooAllocator) {
        let running = &mut self.root().node().running;
        if let Some(i) = running.iter().rposition(|&r| r == me) {
            running.remove(i);
        }
        self.node().phase = Phase::Idle;
    }
}

// SAFETY: delegates to `Bump`, which upholds the contract.
unsafe impl Backend for RegionBackend {
    const NAME: &'static str = "region";
    const KIND: Kind = Kind::Region;
    const THREAD_SAFE: bool = false;

    /// The arena's bump, in the region's current chunk.
    #[inline(always)]
    unsafe fn try_alloc_inline(&self, home: Option<usize>, size: usize, align: usize) -> *mut u8 {
        // SAFETY: forwarded contract.
        unsafe { self.bump.try_alloc_inline(home, size, align) }
    }

    /// As the arena's.
    #[inline(always)]
    unsafe fn try_free_inline(&self, home: Option<usize>, ptr: *mut u8, size: usize, align: usize) -> bool {
        // SAFETY: forwarded contract.
        unsafe { self.bump.try_free_inline(home, ptr, size, align) }
    }

    #[inline(always)]
    fn alloc(&self, size: usize, align: usize, options: AllocOptions) -> *mut u8 {
        Backend::alloc(&self.bump, size, align, options)
    }

    unsafe fn free(&self, ptr: *mut u8, size: usize, align: usize) {
        // SAFETY: forwarded contract.
        unsafe { Backend::free(&self.bump, ptr, size, align) }
    }

    unsafe fn realloc(
        &self,
        ptr: *mut u8,
        old_size: usize,
        new_size: usize,
        align: usize,
        options: AllocOptions,
    ) -> *mut u8 {
        // SAFETY: forwarded contract.
        unsafe { Backend::realloc(&self.bump, ptr, old_size, new_size, align, options) }
    }

    fn bytes_reserved(&self, _bytes_allocated: usize) -> usize {
        self.bump.reserved()
    }

    /// A destroy granted by [`destroy`] or by the parent's teardown begins; any other (a
    /// `region->destroy(region)` call) is held to the busy rule first, and refused with a message
    /// on stderr when it breaks it.
    unsafe fn begin_destroy(allocator: *mut GooAllocator) -> bool {
        let granted = backend(allocator).and_then(|b| {
            if b.node().phase != Phase::Granted {
                b.check_not_busy()?;
            }
            Ok(b)
        });
        match granted {
            Ok(b) => {
                b.begin(allocator, Phase::Destroying);
                true
            }
            Err(e) => {
                refuse(e);
                eprintln!("goo-memory: destroy of region {allocator:p} refused: {e}");
                false
            }
        }
    }

    unsafe fn before_destroy(allocator: *mut GooAllocator) {
        teardown(allocator);
    }

    /// A request past the region's budget: granted if it fits the limit of every limited
    /// region from this one up (see "Limits" below).
    unsafe fn reserve_over_budget(allocator: *mut GooAllocator, bytes: usize) -> bool {
        if backend(allocator).is_err() {
            return false;
        }
        let Ok(bytes) = isize::try_from(bytes) else { return false };
        if try_grant(allocator, bytes) {
            return true;
        }
        // The shares granted lately hold the room, most likely: their slack back first.
        if take_back_recent_shares(allocator) && try_grant(allocator, bytes) {
            return true;
        }
        // The counts above are bounds: take back every budget's slack and count exactly.
        let Some(top) = top_limited(allocator) else {
            // Budgeted yet under no limit: the invariant says it cannot be. Budgets afresh
            // (none), and this request fails as past a limit.
            rebalance(chain(allocator).last().unwrap_or(allocator));
            return false;
        };
        rebalance(top);
        try_grant(allocator, bytes)
    }

    /// A region's limit was set or its stats reset: every budget under the topmost limited
    /// region above it (or under itself) is granted afresh.
    unsafe fn limits_changed(allocator: *mut GooAllocator) {
        if backend(allocator).is_ok() {
            find_limits_above(allocator);
            rebalance(top_limited(allocator).unwrap_or(allocator));
        }
    }
}

/// Creates a root region taking memory from `parent` (a valid allocator: callers resolve null to the current one) in regions
/// of `region_size` bytes (0 = 4096). Requests larger than a region get a dedicated region when
/// `allow_large`, else fail.
///
/// # Safety
/// `parent` must be a valid allocator that outlives the region.
pub unsafe fn create(
    parent: *mut GooAllocator,
    region_size: usize,
    allow_large: bool,
) -> NonNull<GooAllocator> {
    // SAFETY: forwarded contract.
    unsafe { create_node(parent, Place::ROOT, region_size, allow_large) }
}

/// Where a new region goes in its tree.
struct Place {
    parent: *mut GooAllocator,
    root: *mut GooAllocator,
    depth: usize,
    limited_above: *mut GooAllocator,
}

impl Place {
    const ROOT: Place =
        Place { parent: ptr::null_mut(), root: ptr::null_mut(), depth: 0, limited_above: ptr::null_mut() };
}

unsafe fn create_node(
    backing: *mut GooAllocator,
    place: Place,
    region_size: usize,
    allow_large: bool,
) -> NonNull<GooAllocator> {
    let policy = ChunkPolicy { initial_size: region_size, limit: 0, grow: false, allow_large };
    let backend = RegionBackend {
        // SAFETY: forwarded contract (the backing allocator outlives the region).
        bump: unsafe { Bump::with_policy(backing, policy) },
        node: UnsafeCell::new(Node {
            parent: place.parent,
            first_child: ptr::null_mut(),
            last_child: ptr::null_mut(),
            prev: ptr::null_mut(),
            next: ptr::null_mut(),
            cleanups: Vec::new(),
            root: place.root,
            depth: place.depth,
            limited_above: place.limited_above,
            phase: Phase::Idle,
            running: Vec::new(),
            recent_shares: Vec::new(),
            region_size,
            allow_large,
            committed: 0,
        }),
        name: Mutex::new(String::new()),
    };
    let managed = Managed::unplaced(backend, drop_managed::<RegionBackend>, ptr::null_mut());
    let raw = Managed::place(managed, AllocStrategy::Null, true);
    live().insert(raw.as_ptr() as usize);
    raw
}

/// Creates a child of `parent` (a live region) with its own `region_size` (0 = the parent's),
/// taking memory from the same place as the parent. The child is destroyed with its parent.
/// Refused ([`RegionError::BeingDestroyed`]) while `parent` or a region above it is being
/// destroyed.
///
/// # Safety
/// `region` is any pointer (one that is no live region is refused before it is used); a live
/// region is used by no other thread meanwhile (a region tree belongs to one thread at a time)
/// and destroyed by none.
pub unsafe fn create_child(
    parent: *mut GooAllocator,
    region_size: usize,
) -> Result<NonNull<GooAllocator>, RegionError> {
    let p = live_backend(parent)?;
    if p.doomed() {
        return Err(refuse(RegionError::BeingDestroyed));
    }
    let (size, allow_large, place) = {
        let n = p.node();
        let root = if n.root.is_null() { parent } else { n.root };
        let limited_above = if stats_of(parent).limit() != 0 { parent } else { n.limited_above };
        let place = Place { parent, root, depth: n.depth + 1, limited_above };
        (if region_size == 0 { n.region_size } else { region_size }, n.allow_large, place)
    };
    // SAFETY: the parent's backing allocator outlives the parent, which outlives the child.
    let child = unsafe { create_node(p.bump.parent(), place, size, allow_large) };
    link_child(parent, child.as_ptr());
    if stats_of(parent).budgeted() {
        // Under a limit: no budget until it asks (its term in every count above is 0).
        stats_of(child.as_ptr()).set_budget(CLOSED);
    }
    debug_check(|| check_node(parent, false).map(drop));
    Ok(child)
}

/// Registers a cleanup run when the region is reset or destroyed (in reverse order of
/// registration). Returns its id (never 0).
///
/// # Safety
/// `f(arg)` must be sound to call when the region is next reset or destroyed, on the thread
/// that does it (until the cleanup is removed).
pub unsafe fn add_cleanup(
    region: *mut GooAllocator,
    f: CleanupFn,
    arg: *mut c_void,
) -> Result<u64, RegionError> {
    add_action(region, Action::C(f, arg))
}

/// Registers a Rust closure as a cleanup (the Rust API's `Region::on_cleanup`).
///
/// # Safety
/// `region` is any pointer (one that is no live region is refused before it is used); a live
/// region is used by no other thread meanwhile (a region tree belongs to one thread at a time)
/// and destroyed by none.
pub unsafe fn add_cleanup_closure(
    region: *mut GooAllocator,
    f: Box<dyn FnOnce()>,
) -> Result<u64, RegionError> {
    add_action(region, Action::Rust(f))
}

/// The next cleanup's id. Ids are unique in the process, not per region: an id passed to the
/// wrong region (a parent's for a child's) finds nothing there rather than another cleanup.
static NEXT_CLEANUP_ID: AtomicU64 = AtomicU64::new(1);

fn add_action(region: *mut GooAllocator, action: Action) -> Result<u64, RegionError> {
    let n = live_backend(region)?.node();
    let id = NEXT_CLEANUP_ID.fetch_add(1, Relaxed);
    n.cleanups.push(Cleanup { id, action });
    Ok(id)
}

/// Cancels a cleanup that has not run. Returns whether it was found.
///
/// # Safety
/// `region` is any pointer (one that is no live region is refused before it is used); a live
/// region is used by no other thread meanwhile (a region tree belongs to one thread at a time)
/// and destroyed by none.
pub unsafe fn remove_cleanup(region: *mut GooAllocator, id: u64) -> Result<bool, RegionError> {
    let n = live_backend(region)?.node();
    // Ids rise in registration order (the invariant).
    let Ok(at) = n.cleanups.binary_search_by_key(&id, |c| c.id) else { return Ok(false) };
    n.cleanups.remove(at);
    Ok(true)
}

/// Runs the region's cleanups, newest first, each exactly once; cleanups registered while they
/// run are run too. A Rust cleanup's panic is caught and kept ([`take_cleanup_panic`]): the
/// rest still run, and the reset or destroy finishes.
fn run_cleanups(b: &RegionBackend) {
    loop {
        let Some(c) = b.node().cleanups.pop() else { break };
        match c.action {
            // SAFETY: registered (`add_cleanup`'s contract) as sound to call now, here.
            Action::C(f, arg) => unsafe { f(arg) },
            Action::Rust(f) => {
                if let Err(payload) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
                    keep_cleanup_panic(payload);
                }
            }
        }
    }
}

thread_local! {
    /// The first panic of a Rust cleanup on this thread not yet taken ([`take_cleanup_panic`]).
    static CLEANUP_PANIC: core::cell::Cell<Option<Box<dyn core::any::Any + Send>>> =
        const { core::cell::Cell::new(None) };
}

fn keep_cleanup_panic(payload: Box<dyn core::any::Any + Send>) {
    // During thread exit the slot may be gone: the panic then ends here (its message printed).
    let _ = CLEANUP_PANIC.try_with(|slot| {
        let first = slot.take().unwrap_or(payload);
        slot.set(Some(first));
    });
}

/// The first panic a Rust cleanup raised on this thread since the last call, if any: what a
/// reset or destroy caught (see the module's notes). The Rust `Region` resumes it after its
/// reset or drop; the C API reports and drops it.
pub fn take_cleanup_panic() -> Option<Box<dyn core::any::Any + Send>> {
    CLEANUP_PANIC.try_with(|slot| slot.take()).ok().flatten()
}

/// Resets `region`: children first (depth first, they stay alive and empty), then its cleanups
/// (reverse order), then its memory (keeping one region of memory). Refused
/// ([`RegionError::Busy`]) while a reset or destroy runs on it, above it or under it.
///
/// # Safety
/// No block of the region or of a region under it is used afterwards (a Rust `Region`'s
/// values borrow it: reset those with [`Region::reset`](crate::region::Region::reset)), and no
/// other thread uses these regions meanwhile.
pub unsafe fn reset(region: *mut GooAllocator) -> Result<(), RegionError> {
    let b = live_backend(region)?;
    b.check_not_busy().map_err(refuse)?;
    b.begin(region, Phase::Resetting);
    reset_subtree(region, b);
    b.end(region);
    Ok(())
}

/// The live regions under `region`, each after the regions under it and children in their
/// list's order: the order a teardown or a reset visits them, deepest first. A walk with a
/// stack of its own, not a recursion, so that however deep the tree is, the thread's stack is
/// not.
fn below_deepest_first(region: *mut GooAllocator) -> Vec<*mut GooAllocator> {
    // (A region that is not live has none: the callers refuse it afterwards.)
    let children = |r: *mut GooAllocator| {
        if backend(r).is_ok() {
            children_of(r).collect()
        } else {
            Vec::new()
        }
    };
    let mut order = Vec::new();
    // Each entry: a region and its children not yet visited (reversed: the next is the last).
    let mut stack: Vec<(*mut GooAllocator, Vec<*mut GooAllocator>)> = Vec::new();
    let mut top = children(region);
    top.reverse();
    stack.push((region, top));
    while let Some((r, pending)) = stack.last_mut() {
        match pending.pop() {
            Some(child) => {
                let mut grandchildren = children(child);
                grandchildren.reverse();
                stack.push((child, grandchildren));
            }
            None => {
                let r = *r;
                stack.pop();
                if r != region {
                    order.push(r);
                }
            }
        }
    }
    order
}

/// The work of [`reset`], under a running reset: no region of the subtree can be destroyed
/// meanwhile (the busy rule), so every region listed at the start is still live when its turn
/// comes (deepest first). A child created by a cleanup meanwhile is new and stays as it is.
fn reset_subtree(region: *mut GooAllocator, b: &RegionBackend) {
    for below in below_deepest_first(region) {
        if let Ok(c) = backend(below) {
            reset_one(below, c);
        }
    }
    reset_one(region, b);
}

/// [`reset_subtree`]'s work on one region, whose subtree is reset already.
fn reset_one(region: *mut GooAllocator, b: &RegionBackend) {
    run_cleanups(b);
    let held = held_under_limits(region);
    // SAFETY: `region` is a live library allocator.
    unsafe { front::record_reset(region) };
    if let Some(before) = held {
        // Its live bytes are 0 now: the counts above it follow its term.
        retire(region, true, held_under_limits(region).unwrap_or(0) - before);
    }
    // SAFETY: a reset's contract: no block of the region is used afterwards.
    unsafe { b.bump.reset() };
    debug_check(|| check_node(region, false).map(drop));
    front::reset_done(region);
}

/// Destroys `region` and its subtree (children first), running cleanups, returning memory, and
/// detaching it from its parent. Refused ([`RegionError::Busy`]) while a reset or destroy runs
/// on it, above it or under it.
///
/// # Safety
/// Nothing uses these regions or their blocks afterwards, a Rust `Region` owning one of them
/// included (drop it instead), and no other thread uses them meanwhile.
pub unsafe fn destroy(region: *mut GooAllocator) -> Result<(), RegionError> {
    let b = live_backend(region)?;
    b.check_not_busy().map_err(refuse)?;
    b.node().phase = Phase::Granted;
    // SAFETY: a live region; `managed_destroy` begins the granted destroy, runs `teardown`,
    // then frees it.
    unsafe { managed_destroy(region) };
    Ok(())
}

/// The tree work of destroying a region (called with no borrow of it held), under its running
/// destroy: no child can be added meanwhile, and nothing under or above it can be destroyed
/// by anyone else (the busy rule).
fn teardown(region: *mut GooAllocator) {
    let Ok(b) = backend(region) else { return };
    // The regions under it go first, deepest first, each detaching itself from its parent's
    // list: each has no child left when its turn comes, so no destroy nests in another, however
    // deep the tree is.
    for below in below_deepest_first(region) {
        if let Ok(c) = backend(below) {
            c.node().phase = Phase::Granted;
            // SAFETY: a live region, granted its destroy.
            unsafe { managed_destroy(below) };
        }
    }
    // Children left (none, but for a destroy that failed to detach one).
    while let Some(child) = Some(b.node().first_child).filter(|c| !c.is_null()) {
        if let Ok(c) = backend(child) {
            c.node().phase = Phase::Granted;
            // SAFETY: a live region, granted its destroy.
            unsafe { managed_destroy(child) };
        }
        if b.node().first_child == child {
            // It did not detach itself, so its destroy did not run (or it was no live region):
            // its node is not read, and the list goes with it.
            let n = b.node();
            n.first_child = ptr::null_mut();
            n.last_child = ptr::null_mut();
        }
    }
    run_cleanups(b);
    b.end(region);
    let held = held_under_limits(region);
    let parent = b.node().parent;
    if backend(parent).is_ok() {
        unlink_child(parent, region);
        if let Some(held) = held {
            // Its term leaves every count above it.
            retire(parent, true, -held);
        }
        debug_check(|| check_node(parent, false).map(drop));
    }
    let mut live = live();
    live.remove(&(region as usize));
    if live.is_empty() {
        // The set's table is freed with its last region: it is not kept for the process's
        // life, where leak checkers would see it as lost.
        *live = addr_set();
    }
}

/// The parent of a live child region. Any thread may ask (a report does): the region is held
/// live meanwhile (its live-set entry held), and the parent is read through a raw pointer, with no
/// reference to the node that its own thread may hold; it is never written after the region is
/// made.
pub fn parent_of(region: *mut GooAllocator) -> Option<*mut GooAllocator> {
    // SAFETY: the node of a live region; `parent` is set before the region is published and
    // never written after.
    let p = with_live(region, |b| unsafe { ptr::addr_of!((*b.node.get()).parent).read() })?;
    (!p.is_null()).then_some(p)
}

/// `f` of the backend of `region` if it is a live region, with the live set's lock held: a
/// destroy, which leaves the set before it frees the region, waits until `f` returns. For what
/// any thread may read (the name, the parent); `f` must not reach the live set.
fn with_live<R>(region: *mut GooAllocator, f: impl FnOnce(&RegionBackend) -> R) -> Option<R> {
    let live = live();
    if region.is_null() || !live.contains(&(region as usize)) {
        return None;
    }
    // SAFETY: a live region (in the set, which it leaves before it is freed: not while the
    // lock is held), a valid library allocator of this backend.
    let b = unsafe { Managed::<RegionBackend>::try_backend(region) }?;
    let r = f(b);
    drop(live);
    Some(r)
}

/// Names the region (None or "" clears the name): the allocator's one name, which
/// [`report::set_name`](crate::report::set_name) also sets, shown in every report. Kept in the
/// node, not in the names registry, so that naming many regions costs nothing per operation.
pub fn set_name(region: *mut GooAllocator, name: Option<&str>) -> Result<(), RegionError> {
    let named = with_live(region, |b| {
        let mut n = b.name.lock().unwrap_or_else(|e| e.into_inner());
        n.clear();
        n.push_str(name.unwrap_or(""));
    });
    named.ok_or_else(|| refuse(RegionError::NotARegion))
}

/// The name of a live region, if it has one.
pub fn name_of(region: *mut GooAllocator) -> Option<String> {
    let n = with_live(region, |b| b.name.lock().unwrap_or_else(|e| e.into_inner()).clone())?;
    (!n.is_empty()).then_some(n)
}

/// Stats of the region alone.
///
/// # Safety
/// `region` is any pointer (one that is no live region is refused before it is used); a live
/// region is used by no other thread meanwhile (a region tree belongs to one thread at a time)
/// and destroyed by none.
pub unsafe fn stats(region: *mut GooAllocator) -> Result<AllocStats, RegionError> {
    live_backend(region)?;
    // SAFETY: a live region.
    Ok(unsafe { front::stats(region) })
}

/// Stats summed over the region and all its descendants (every field is the sum).
///
/// # Safety
/// `region` is any pointer (one that is no live region is refused before it is used); a live
/// region is used by no other thread meanwhile (a region tree belongs to one thread at a time)
/// and destroyed by none.
pub unsafe fn subtree_stats(region: *mut GooAllocator) -> Result<AllocStats, RegionError> {
    // SAFETY: forwarded contract.
    let mut total = unsafe { stats(region) }?;
    for below in below_deepest_first(region) {
        // SAFETY: a region of the tree, used by the same thread.
        add_stats(&mut total, &unsafe { stats(below) }?);
    }
    Ok(total)
}

/// Adds `s` to `total`, field by field.
fn add_stats(total: &mut AllocStats, s: &AllocStats) {
    total.bytes_allocated += s.bytes_allocated;
    total.bytes_reserved += s.bytes_reserved;
    total.max_bytes_allocated += s.max_bytes_allocated;
    total.allocation_count += s.allocation_count;
    total.total_allocations += s.total_allocations;
    total.total_frees += s.total_frees;
    total.failed_allocations += s.failed_allocations;
}

/// The tree under `region` as text, one line per region, children indented.
///
/// # Safety
/// `region` is any pointer (one that is no live region is refused before it is used); a live
/// region is used by no other thread meanwhile (a region tree belongs to one thread at a time)
/// and destroyed by none.
pub unsafe fn report(region: *mut GooAllocator) -> Result<String, RegionError> {
    // The subtree sums, deepest first: each region's own stats plus its children's sums.
    let mut sums: HashMap<usize, AllocStats> = HashMap::new();
    for r in below_deepest_first(region).into_iter().chain([region]) {
        // SAFETY: the caller's region or one under it (this function's contract).
        let mut sum = unsafe { stats(r) }?;
        live_backend(r)?;
        for child in children_of(r) {
            if let Some(s) = sums.get(&(child as usize)) {
                add_stats(&mut sum, s);
            }
        }
        sums.insert(r as usize, sum);
    }
    // One line per region, parents before children, with a stack of its own.
    let mut out = String::new();
    let mut stack = vec![(region, 0)];
    while let Some((r, depth)) = stack.pop() {
        let children = report_line(r, depth, &sums[&(r as usize)], &mut out)?;
        stack.extend(children.into_iter().rev().map(|c| (c, depth + 1)));
    }
    Ok(out)
}

/// Levels of a region report that are indented.
const MAX_INDENT: usize = 64;

/// `region`'s line of [`report`] (`sub`: its subtree's sums); returns its children.
fn report_line(
    region: *mut GooAllocator,
    depth: usize,
    sub: &AllocStats,
    out: &mut String,
) -> Result<Vec<*mut GooAllocator>, RegionError> {
    // SAFETY: the caller's region or one under it (`report`'s contract).
    let s = unsafe { stats(region)? };
    let b = live_backend(region)?;
    let (name, cleanups) = {
        let name = b.name.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let name = if name.is_empty() { "(unnamed)".to_string() } else { escaped(&name) };
        let n = b.node();
        (name, n.cleanups.len())
    };
    let children = children_of(region).collect();
    // Indented two spaces a level, up to `MAX_INDENT` levels; deeper lines name their level
    // (a deep tree's report stays linear in its regions).
    if depth > MAX_INDENT {
        let _ = write!(out, "{:indent$}[level {depth}] ", "", indent = MAX_INDENT * 2);
    }
    let _ = writeln!(
        out,
        "{:indent$}region \"{name}\" {region:p}: {} live blocks, {} B live, {} B reserved, {} chunks, {cleanups} cleanups; subtree: {} B live, {} B reserved",
        "",
        s.allocation_count,
        s.bytes_allocated,
        s.bytes_reserved,
        b.bump.chunk_count(),
        sub.bytes_allocated,
        sub.bytes_reserved,
        indent = if depth > MAX_INDENT { 0 } else { depth * 2 }
    );
    Ok(children)
}

impl RegionBackend {
    /// The mechanism: the bump allocator the region's requests are served from (the front
    /// door bumps it inline; tests inspect it).
    #[inline(always)]
    pub fn bump(&self) -> &Bump {
        &self.bump
    }
}

/// The backend of a live region (for tests and introspection).
///
/// # Safety
/// The region stays live for `'a` and is used by this thread only meanwhile.
pub unsafe fn backend_of<'a>(region: *mut GooAllocator) -> Option<&'a RegionBackend> {
    backend(region).ok()
}

// ---- Limits ----
//
// A region's limit covers its subtree. Summing a subtree at every allocation would cost each
// allocation a walk, so each region under a limit (its own, or one above it: it is *covered*)
// has budgeted stats (`ShardedStats::set_budget`): its budget `budget(d)` is how many live
// bytes its call-free path may reach without asking, checked only on the way to a new
// high-water mark, as for any single owner's limit. Past it, the slow path asks
// (`Backend::reserve_over_budget`): the request fits if, for every limited region `A` from
// this one up, `committed(A)` plus what the budget must grow by stays within `limit(A)`; then
// the budget grows (by the request and some slack) and so does `committed` of each such `A`.
// Otherwise `rebalance` takes back every budget's slack under the topmost limited region and
// sets each `committed` to its subtree's exact live bytes, and the request is decided on them:
// a refusal is exact. So, with `term(d) = max(budget(d), live(d))` (what `d` holds or may take
// call-free) and every sum over the subtree of `A`, itself included:
//
// ```text
// covered(r) := limit(r) != 0 or covered(parent(r))
// r's stats budgeted            <=>  covered(r)
// limited_above(r) == the nearest region strictly above r whose limit != 0, or null
// limit(A) != 0  =>  Σ term(d)  <=  committed(A)
// limit(A) != 0  =>  committed(A) <= limit(A), or budget(d) == CLOSED for every d under A
// ```
//
// The last two make the call-free path safe: below its budget a region's allocation raises
// `Σ live` by at most what the terms already count. The second branch is a subtree already
// past its limit (blocks from before the limit was set): no region under it allocates without
// asking then, even after a free. Frees need no call: they only lower terms. A reset or a
// destroy changes a region's term without a request, so it charges the change to the counts
// above (`retire`). An unlimited tree pays nothing of this: its stats are not budgeted, so its
// call-free path is any single owner's, and a new child or a reset reads one flag.

/// The budget of a covered region that must ask before any allocation, whatever it frees
/// first: below any live count.
const CLOSED: isize = isize::MIN / 2;

/// The stats of a live region.
fn stats_of<'a>(region: *mut GooAllocator) -> &'a ShardedStats {
    // SAFETY: callers pass live regions, each a `Managed<RegionBackend>`.
    unsafe { Managed::<RegionBackend>::stats(region) }
}

/// The children of a live region, oldest first: a walk of its list (each node borrowed for one
/// statement).
fn children_of(region: *mut GooAllocator) -> impl Iterator<Item = *mut GooAllocator> {
    let first = node_of(region).first_child;
    core::iter::successors(Some(first).filter(|c| !c.is_null()), |&c| {
        Some(node_of(c).next).filter(|n| !n.is_null())
    })
}

/// Appends `child` (a new region) to the list of `parent`'s children.
fn link_child(parent: *mut GooAllocator, child: *mut GooAllocator) {
    let last = node_of(parent).last_child;
    {
        let c = node_of(child);
        c.prev = last;
        c.next = ptr::null_mut();
    }
    if last.is_null() {
        node_of(parent).first_child = child;
    } else {
        node_of(last).next = child;
    }
    node_of(parent).last_child = child;
}

/// Takes `child` out of the list of `parent`'s children.
fn unlink_child(parent: *mut GooAllocator, child: *mut GooAllocator) {
    let (prev, next) = {
        let c = node_of(child);
        let links = (c.prev, c.next);
        c.prev = ptr::null_mut();
        c.next = ptr::null_mut();
        links
    };
    if prev.is_null() {
        node_of(parent).first_child = next;
    } else {
        node_of(prev).next = next;
    }
    if next.is_null() {
        node_of(parent).last_child = prev;
    } else {
        node_of(next).prev = prev;
    }
}

/// The node of a live region (borrowed for one statement at a time, as `RegionBackend::node`).
fn node_of<'a>(region: *mut GooAllocator) -> &'a mut Node {
    // SAFETY: callers pass live regions, each a `Managed<RegionBackend>`.
    unsafe { Managed::<RegionBackend>::backend(region) }.node()
}

/// A live `region` and the regions above it, nearest first.
fn chain(region: *mut GooAllocator) -> impl Iterator<Item = *mut GooAllocator> {
    // The parent of a live region is live (`Node`'s equations).
    core::iter::successors(Some(region), |&r| Some(node_of(r).parent).filter(|p| !p.is_null()))
}

/// The limited regions of `region`'s chain (itself included), nearest first: a walk of the
/// `limited_above` links, past no unlimited region.
fn limited_chain(region: *mut GooAllocator) -> impl Iterator<Item = *mut GooAllocator> {
    let first = if stats_of(region).limit() != 0 { region } else { node_of(region).limited_above };
    core::iter::successors(Some(first).filter(|r| !r.is_null()), |&r| {
        Some(node_of(r).limited_above).filter(|a| !a.is_null())
    })
}

/// The topmost limited region of `region`'s chain (itself included).
fn top_limited(region: *mut GooAllocator) -> Option<*mut GooAllocator> {
    limited_chain(region).last()
}

/// Sets `limited_above` of every region under `region` (whose own is right), after a limit in
/// the subtree changed.
fn find_limits_above(region: *mut GooAllocator) {
    let above = node_of(region).limited_above;
    let down = |r: *mut GooAllocator, above: *mut GooAllocator| {
        node_of(r).limited_above = above;
        if stats_of(r).limit() != 0 {
            r
        } else {
            above
        }
    };
    let Ok(()) = fold_subtree(region, above, down, |_, _, _: Vec<()>| Ok::<_, core::convert::Infallible>(()));
}

/// `term(region)` (see above) if the region is covered.
fn held_under_limits(region: *mut GooAllocator) -> Option<isize> {
    let stats = stats_of(region);
    stats.budgeted().then(|| stats.budget().max(stats.live_bytes()))
}

/// Adds `delta` to `committed` of every limited region above `region` (and of `region`
/// itself, if `with_self`).
fn charge(region: *mut GooAllocator, with_self: bool, delta: isize) {
    for r in limited_chain(region).filter(|&r| with_self || r != region) {
        let n = node_of(r);
        n.committed = n.committed.saturating_add(delta);
    }
}

/// A covered region's term changed by `delta` without a request (a reset made its live bytes
/// 0; a destroy took it out of the tree, and `region` is then its parent): the counts of the
/// limited regions from `region` up (`with_self`) or above it follow. A term that grew (live
/// bytes below zero, from blocks freed uncounted, that a reset or destroy forgets) takes room
/// that budgets may have been granted from: then every budget is granted afresh.
fn retire(region: *mut GooAllocator, with_self: bool, delta: isize) {
    if delta <= 0 {
        charge(region, with_self, delta);
    } else if let Some(top) = top_limited(region) {
        rebalance(top);
    }
}

/// Grants `bytes` more live bytes to the covered `region` if they fit the counts of every
/// limited region from it up, with some slack while there is room; counts them. False (nothing
/// changed) if they do not fit.
fn try_grant(region: *mut GooAllocator, bytes: isize) -> bool {
    let stats = stats_of(region);
    let live = stats.live_bytes();
    let Some(after) = live.checked_add(bytes) else { return false };
    let held = stats.budget().max(live);
    let need = (after - held).max(0);
    let mut room = None::<isize>;
    for r in limited_chain(region) {
        let limit = stats_of(r).limit();
        let free = (limit as isize).saturating_sub(node_of(r).committed).saturating_sub(need);
        if free < 0 {
            return false;
        }
        room = Some(room.map_or(free, |room| room.min(free)));
    }
    let Some(room) = room else { return false };
    // Slack: up to a region of memory, never more than half the room left, so a sibling
    // finds some too before a rebalance.
    let region_size = node_of(region).region_size;
    let slack = (room / 2).min(if region_size == 0 { 4096 } else { region_size.min(1 << 30) as isize });
    let budget = after.saturating_add(slack).min(isize::MAX - 1);
    charge(region, true, budget - held);
    stats.reserve_granted(bytes as usize, budget);
    if slack > 0 {
        // SAFETY: a live region (this function's callers').
        let b = unsafe { Managed::<RegionBackend>::backend(region) };
        let recent = &mut b.root().node().recent_shares;
        // Bounded: a region forgotten here only costs a walk of the tree later.
        if recent.len() >= RECENT_SHARES {
            recent.clear();
        }
        recent.push(region);
    }
    true
}

/// The shares granted lately that a tree remembers at most.
const RECENT_SHARES: usize = 256;

/// Takes back the slack of the shares granted lately in `region`'s tree (each listed region
/// still live and covered gets a budget of its live bytes, and the counts above it drop by
/// the difference): cheaper than [`rebalance`], which walks the whole tree, and exact for what
/// it takes. Whether it took any.
fn take_back_recent_shares(region: *mut GooAllocator) -> bool {
    // SAFETY: a live region (the caller's).
    let root = unsafe { Managed::<RegionBackend>::backend(region) }.root();
    let recent = core::mem::take(&mut root.node().recent_shares);
    let mut took = false;
    for r in recent {
        // Gone since (destroyed: its term left the counts then), or no longer covered.
        if backend(r).is_err() || !stats_of(r).budgeted() {
            continue;
        }
        // As `grant_exactly` does: a budget of its live bytes, its term falling by the slack.
        let stats = stats_of(r);
        let (budget, live) = (stats.budget(), stats.live_bytes());
        if budget > live && budget != CLOSED {
            stats.set_budget(live);
            charge(r, true, live - budget);
            took = true;
        }
    }
    took
}

/// Grants every region under `top` (itself included; no limited region is above it) a budget
/// of its live bytes exactly (no slack), or [`CLOSED`] under a limited region whose subtree is
/// already past its limit, and sets `committed` of each limited one to its subtree's live
/// bytes; a region no limit covers loses its budget. Walks the subtree twice.
fn rebalance(top: *mut GooAllocator) {
    count_live(top);
    grant_exactly(top, false, false);
    // SAFETY: a live region (the caller's).
    unsafe { Managed::<RegionBackend>::backend(top) }.root().node().recent_shares.clear();
}

/// Folds the subtree under `region` (a tree) with a stack of its own, so that however deep the
/// tree is, the thread's stack is not: `down(r, d)` is what `r` hands its children, given what
/// its parent handed it (`top` for `region`); `up(r, d, folded)` is `r`'s result, from what it
/// was handed and its children's results in their list's order.
fn fold_subtree<D: Copy, U, E>(
    region: *mut GooAllocator,
    top: D,
    mut down: impl FnMut(*mut GooAllocator, D) -> D,
    mut up: impl FnMut(*mut GooAllocator, D, Vec<U>) -> Result<U, E>,
) -> Result<U, E> {
    // Each frame: a region, what it hands its children, its next child (null: none left), its
    // children's results.
    let mut stack = vec![(region, down(region, top), node_of(region).first_child, Vec::new())];
    loop {
        let (r, d, next, _) = stack.last_mut().expect("a frame");
        let (r, d) = (*r, *d);
        if !next.is_null() {
            let child = *next;
            *next = node_of(child).next;
            stack.push((child, down(child, d), node_of(child).first_child, Vec::new()));
            continue;
        }
        let (_, d, _, folded) = stack.pop().expect("a frame");
        let result = up(r, d, folded)?;
        match stack.last_mut() {
            Some((_, _, _, siblings)) => siblings.push(result),
            None => return Ok(result),
        }
    }
}

/// The live bytes of the subtree under `region` (itself included), stored as `committed` of
/// the limited regions in it.
fn count_live(region: *mut GooAllocator) -> isize {
    let Ok(total) = fold_subtree(
        region,
        (),
        |_, ()| (),
        |r, (), children: Vec<isize>| {
            let total = children.into_iter().fold(stats_of(r).live_bytes(), isize::saturating_add);
            if stats_of(r).limit() != 0 {
                node_of(r).committed = total;
            }
            Ok::<_, core::convert::Infallible>(total)
        },
    );
    total
}

/// The budgets of [`rebalance`], `covered`: a limit above covers `region`; `closed`: one above
/// is already passed.
fn grant_exactly(region: *mut GooAllocator, covered: bool, closed: bool) {
    let grant = |r: *mut GooAllocator, (covered, closed): (bool, bool)| {
        let stats = stats_of(r);
        let limit = stats.limit();
        let covered = covered || limit != 0;
        let closed = closed || (limit != 0 && node_of(r).committed > limit as isize);
        if !covered {
            if stats.budgeted() {
                stats.clear_budget();
            }
        } else if closed {
            stats.set_budget(CLOSED);
        } else {
            stats.set_budget(stats.live_bytes().min(isize::MAX - 1));
        }
        (covered, closed)
    };
    let Ok(()) = fold_subtree(region, (covered, closed), grant, |_, _, _: Vec<()>| {
        Ok::<_, core::convert::Infallible>(())
    });
}

/// Verifies the equations of "Limits" above for the subtree under `region` (a tree: checked
/// first); `covered`: a limit above `region` covers it. Returns `Σ term(d)` over the subtree
/// and whether every budget in it is [`CLOSED`].
fn check_limits(
    region: *mut GooAllocator,
    covered: bool,
    above: *mut GooAllocator,
) -> Result<(isize, bool), InvariantError> {
    // What a region is handed: whether it is covered, the nearest limited region above it, and
    // the one above its children.
    type Down = (bool, *mut GooAllocator, *mut GooAllocator);
    let down = |r: *mut GooAllocator, (covered, _, above_r): Down| {
        let limited = stats_of(r).limit() != 0;
        (covered || limited, above_r, if limited { r } else { above_r })
    };
    let top = (covered, ptr::null_mut(), above);
    fold_subtree(region, top, down, |r, (covered, above, _), children: Vec<(isize, bool)>| {
        let stats = stats_of(r);
        let limit = stats.limit();
        ensure(stats.budgeted() == covered, REGION, "r's stats budgeted <=> covered(r)")?;
        ensure(
            node_of(r).limited_above == above,
            REGION,
            "limited_above(r) == the nearest region strictly above r whose limit != 0, or null",
        )?;
        let mut held = if covered { stats.budget().max(stats.live_bytes()) } else { 0 };
        let mut closed = covered && stats.budget() == CLOSED;
        for (h, c) in children {
            held = held.saturating_add(h);
            closed &= c;
        }
        if limit != 0 {
            let committed = node_of(r).committed;
            ensure(held <= committed, REGION, "limit(A) != 0 => Σ term(d) <= committed(A)")?;
            ensure(
                committed <= limit as isize || closed,
                REGION,
                "limit(A) != 0 => committed(A) <= limit(A), or budget(d) == CLOSED for every d under A",
            )?;
        }
        Ok((held, closed))
    })
}

/// The allocator kind a region's [`InvariantError`]s name (its bump's name "arena").
const REGION: &str = "region";

/// Verifies the invariants of `region` and of every region under it (the equations beside
/// `Node`, the arena's for each region's bump, and each region's stats), walking the subtree
/// with at most |LIVE| visits, so a cycle in the tree is reported, not walked forever. Safe with
/// any pointer: each one is checked against the live set before it is used. Allocates nothing.
///
/// # Safety
/// `region` is any pointer (one that is no live region is refused before it is used); a live
/// region is used by no other thread meanwhile (a region tree belongs to one thread at a time)
/// and destroyed by none.
pub unsafe fn check_raw(region: *mut GooAllocator) -> Result<(), InvariantError> {
    let mut budget = live().len();
    check_subtree(region, &mut budget)?;
    // A tree now. The limits above it cover it too: the regions above, each checked live.
    let (mut covered, mut up, mut steps) = (false, node_of(region).parent, live().len());
    let mut nearest: *mut GooAllocator = ptr::null_mut();
    while !up.is_null() {
        ensure(steps > 0, REGION, "the regions above r are finitely many")?;
        steps -= 1;
        backend(up).map_err(|_| InvariantError::new(REGION, "parent != null => parent ∈ LIVE"))?;
        if stats_of(up).limit() != 0 {
            covered = true;
            if nearest.is_null() {
                nearest = up;
            }
        }
        up = node_of(up).parent;
    }
    check_limits(region, covered, nearest).map(drop)
}

/// Checks the subtree under `region` (a walk with a stack of its own: a deep tree does not
/// exhaust the thread's), then its tree's list of running operations.
fn check_subtree(region: *mut GooAllocator, budget: &mut usize) -> Result<(), InvariantError> {
    let mut running = Vec::new();
    let mut pending = vec![region];
    while let Some(r) = pending.pop() {
        ensure(*budget > 0, REGION, "the subtree under r is a tree (at most |LIVE| regions)")?;
        *budget -= 1;
        let b = check_node(r, true)?;
        // SAFETY: `check_node` found `r` live, a `Managed<RegionBackend>`.
        unsafe { Managed::<RegionBackend>::stats(r) }.check()?;
        if b.node().phase.running() {
            running.push(r);
        }
        // Bounded: a cycle in a corrupted list stops at the budget.
        let children: Vec<_> = children_of(r).take(*budget + 1).collect();
        pending.extend(children.into_iter().rev());
    }
    // The list names the tree's running regions: checked at a root, where the whole tree was
    // walked; under it, each running region of the subtree must be listed.
    let root = check_node(region, false)?.root();
    let listed = root.node().running.clone();
    let distinct = listed.iter().enumerate().all(|(i, r)| !listed[..i].contains(r));
    ensure(distinct, REGION, "running distinct")?;
    let is_root = node_of(region).parent.is_null();
    let complete = running.iter().all(|r| listed.contains(r)) && (!is_root || listed.len() == running.len());
    ensure(
        complete,
        REGION,
        "parent == null => running == { d in r's tree : d.phase ∈ {Resetting, Destroying} }",
    )?;
    Ok(())
}

/// Verifies the invariants of one region's node, its links with its parent and its neighbours,
/// and its bump; with `walk`, its list of children too (a walk of it: O(children), so the
/// checks after each operation leave it out, and a check of a subtree walks each list once).
/// Every node is borrowed for one expression at a time (so a corrupted link that names the
/// region itself never makes two borrows of one node).
fn check_node<'a>(region: *mut GooAllocator, walk: bool) -> Result<&'a RegionBackend, InvariantError> {
    let b = backend(region).map_err(|_| InvariantError::new(REGION, "r ∈ LIVE"))?;
    b.bump.check()?;
    let parent = b.node().parent;
    if parent.is_null() {
        let n = b.node();
        ensure(n.root.is_null() && n.depth == 0, REGION, "parent == null => root == null, depth == 0")?;
    } else {
        let p =
            backend(parent).map_err(|_| InvariantError::new(REGION, "parent != null => parent ∈ LIVE"))?;
        // Listed: first in the parent's list, or after a live sibling that names it next (the
        // walk of the parent's list, in a check of the subtree above, shows the rest).
        let prev = b.node().prev;
        let listed = if prev.is_null() {
            p.node().first_child == region
        } else {
            backend(prev).is_ok_and(|s| s.node().parent == parent && s.node().next == region)
        };
        ensure(listed, REGION, "parent != null => r ∈ children(parent)")?;
        let (p_root, p_depth) = (p.node().root, p.node().depth);
        let root = if p_root.is_null() { parent } else { p_root };
        let n = b.node();
        ensure(
            n.root == root && n.depth == p_depth + 1,
            REGION,
            "parent != null => root == (parent.root, or parent if that is null), depth == parent.depth + 1",
        )?;
        let (running, recent) = (b.node().running.is_empty(), b.node().recent_shares.is_empty());
        ensure(running && recent, REGION, "parent != null => running empty, recent_shares empty")?;
    }
    let (first, last) = (b.node().first_child, b.node().last_child);
    ensure(first.is_null() == last.is_null(), REGION, "first_child == null <=> last_child == null")?;
    let mut c = if walk { first } else { ptr::null_mut() };
    // A walk of the list, each child checked live before its links are read, bounded by the
    // live regions (a cycle revisits one: "children distinct").
    let mut seen = AddrSet::default();
    let mut prev = ptr::null_mut::<GooAllocator>();
    while !c.is_null() {
        let child = backend(c).map_err(|_| InvariantError::new(REGION, "c ∈ children => c ∈ LIVE"))?;
        ensure(seen.insert(c as usize), REGION, "children distinct")?;
        let n = child.node();
        let (parent, c_prev, c_next) = (n.parent, n.prev, n.next);
        ensure(parent == region, REGION, "c ∈ children => c.parent == r")?;
        ensure(
            c_prev == prev && (c_prev.is_null() == (c == first)),
            REGION,
            "c.prev == null <=> c == first_child;   c.next != null => c.next.prev == c",
        )?;
        ensure(c_next.is_null() == (c == last), REGION, "c.next == null <=> c == last_child")?;
        (prev, c) = (c, c_next);
    }
    let ids_rise = {
        let n = b.node();
        n.cleanups.first().is_none_or(|c| c.id >= 1)
            && n.cleanups.windows(2).all(|w| w[0].id < w[1].id)
            && n.cleanups.last().is_none_or(|c| c.id < NEXT_CLEANUP_ID.load(Relaxed))
    };
    ensure(ids_rise, REGION, "1 <= cleanups[0].id, cleanups[i].id < cleanups[i + 1].id < NEXT_CLEANUP_ID")?;
    ensure(b.node().phase != Phase::Granted, REGION, "phase != Granted")?;
    Ok(b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::region::Region;

    fn broken(region: &Region<'_>) -> InvariantError {
        region.check().expect_err("a broken equation")
    }

    /// Each corruption of a tree (root, child, grandchild) breaks one equation and the root's
    /// check names it; undoing it makes the tree whole again (so it can be destroyed).
    #[test]
    fn check_reports_each_broken_equation() {
        let root = Region::new(1024, true);
        let child = root.child(0);
        let grandchild = child.child(0);
        for r in [&root, &child, &grandchild] {
            r.alloc_slice_copy(&[1u8; 3000]);
            r.on_cleanup(|| ());
            r.on_cleanup(|| ());
        }
        assert_eq!(root.check(), Ok(()));
        // SAFETY: the regions live to the end of the test, on this thread.
        let node = |r: &Region<'_>| unsafe { backend_of(r.as_ptr()) }.unwrap().node();

        node(&child).parent = ptr::null_mut();
        assert_eq!(broken(&root).broken, "c ∈ children => c.parent == r");
        node(&child).parent = root.as_ptr();

        node(&child).prev = grandchild.as_ptr();
        assert_eq!(
            broken(&root).broken,
            "c.prev == null <=> c == first_child;   c.next != null => c.next.prev == c"
        );
        node(&child).prev = ptr::null_mut();

        // A list that comes back to a child: root's list is child, child2, child, ...
        let child2 = root.child(0);
        node(&child2).next = child.as_ptr();
        node(&root).last_child = grandchild.as_ptr();
        assert_eq!(broken(&root).broken, "children distinct");
        node(&root).last_child = child2.as_ptr();
        node(&child2).next = ptr::null_mut();
        drop(child2);

        let mut not_a_region = GooAllocator::EMPTY;
        node(&grandchild).next = &raw mut not_a_region;
        node(&child).last_child = &raw mut not_a_region;
        assert_eq!(broken(&root).broken, "c ∈ children => c ∈ LIVE");
        node(&child).last_child = grandchild.as_ptr();
        node(&grandchild).next = ptr::null_mut();

        node(&child).parent = grandchild.as_ptr();
        assert_eq!(broken(&child).broken, "parent != null => r ∈ children(parent)");
        node(&child).parent = root.as_ptr();

        node(&child).last_child = ptr::null_mut();
        assert_eq!(broken(&root).broken, "first_child == null <=> last_child == null");
        node(&child).last_child = grandchild.as_ptr();

        // A cycle whose parent and child links agree: the root hangs under its own grandchild.
        // Depths cannot agree around a cycle (the walk's bound, |LIVE|, is a second guard).
        node(&grandchild).first_child = root.as_ptr();
        node(&grandchild).last_child = root.as_ptr();
        node(&root).parent = grandchild.as_ptr();
        assert_eq!(
            broken(&root).broken,
            "parent != null => root == (parent.root, or parent if that is null), depth == parent.depth + 1"
        );
        node(&root).parent = ptr::null_mut();
        node(&grandchild).first_child = ptr::null_mut();
        node(&grandchild).last_child = ptr::null_mut();

        node(&grandchild).cleanups.swap(0, 1);
        assert_eq!(
            broken(&root).broken,
            "1 <= cleanups[0].id, cleanups[i].id < cleanups[i + 1].id < NEXT_CLEANUP_ID"
        );
        node(&grandchild).cleanups.swap(0, 1);

        // A region's bump is an arena: its equations are checked too.
        // SAFETY: as for `node`.
        let bump = || unsafe { backend_of(child.as_ptr()) }.unwrap().bump();
        let next_seq = bump().replace_next_seq(0);
        assert_eq!(broken(&root).allocator, "arena");
        bump().replace_next_seq(next_seq);

        assert_eq!(root.check(), Ok(()), "restored");
        drop(grandchild);
        assert_eq!(root.check(), Ok(()));
    }
}
