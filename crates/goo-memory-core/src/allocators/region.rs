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
//! The raw-pointer functions here are safe to call with any pointer: each checks it against the
//! set of live regions before dereferencing it (hence the clippy allowance below).
#![allow(clippy::not_unsafe_ptr_arg_deref)]

use core::cell::UnsafeCell;
use core::ffi::c_void;
use core::fmt::Write as _;
use core::ptr::{self, NonNull};
use core::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;

use crate::addr_set::{addr_set, AddrSet};
use crate::allocators::arena::{Bump, ChunkPolicy};
use crate::policy::backend::{drop_managed, managed_destroy, Backend, Kind, Managed};
use crate::policy::front;
use crate::policy::invariant::{debug_check, ensure, InvariantError};
use crate::policy::names::escaped;
use crate::raw::{AllocOptions, AllocStats, AllocStrategy, GooAllocator};

/// `void (*GooCleanupFn)(void* arg)`.
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
/// parent != null  =>  parent ∈ LIVE  and  r occurs once in parent.children
/// c ∈ children    =>  c ∈ LIVE  and  c.parent == r,   children distinct
/// 1 <= cleanups[0].id,  cleanups[i].id < cleanups[i + 1].id < next_cleanup_id
/// the subtree under r is a tree: a walk of it visits at most |LIVE| regions
/// running_below = |{ d strictly under r : d.phase ∈ {Resetting, Destroying} }|
/// phase != Granted
/// r's bump satisfies the arena's invariants (`Bump::check`)
/// ```
///
/// [`check_raw`] verifies them for a region and its whole subtree.
struct Node {
    /// The parent region, or null for a root.
    parent: *mut GooAllocator,
    /// Child regions, owned by this node (destroyed with it).
    children: Vec<*mut GooAllocator>,
    /// Cleanups in registration order.
    cleanups: Vec<Cleanup>,
    next_cleanup_id: u64,
    /// The region's name ("" = none): the allocator's one name, which
    /// [`report::set_name`](crate::report::set_name) sets here too.
    name: String,
    /// Whether a reset or destroy of this region is running (the busy rule).
    phase: Phase,
    /// How many regions under this one run a reset or destroy (the busy rule: an ancestor of a
    /// running operation may be neither reset nor destroyed).
    running_below: usize,
    region_size: usize,
    allow_large: bool,
}

/// The region mechanism: a fixed-chunk bump allocator and its node in the tree.
pub struct RegionBackend {
    bump: Bump,
    node: UnsafeCell<Node>,
}

/// Regions alive now, by address: the C API checks a pointer against it before trusting it, so
/// destroying a region twice or using a destroyed one through `goo_region_*` is caught.
static LIVE: Mutex<AddrSet> = Mutex::new(addr_set());

fn live() -> std::sync::MutexGuard<'static, AddrSet> {
    LIVE.lock().unwrap_or_else(|e| e.into_inner())
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
/// assert!(region::stats(r.as_ptr()).is_ok());
/// let gone = r.as_ptr();
/// drop(r);
/// assert_eq!(region::stats(gone), Err(RegionError::NotARegion));
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

    /// The regions above this one, nearest first.
    fn ancestors<'a>(&self) -> impl Iterator<Item = &'a RegionBackend> {
        let mut parent = self.node().parent;
        core::iter::from_fn(move || {
            if parent.is_null() {
                return None;
            }
            // SAFETY: the parent of a live region is live (`Node`'s equations), and so is each
            // region above it.
            let p = unsafe { Managed::<RegionBackend>::backend(parent) };
            parent = p.node().parent;
            Some(p)
        })
    }

    /// The busy rule for a reset or destroy of this region: refused while a reset or destroy of
    /// it, of a region above it (it is inside the subtree being torn down) or of a region under
    /// it (that operation's regions would be freed) is running.
    fn check_not_busy(&self) -> Result<(), RegionError> {
        let n = self.node();
        let (phase, below) = (n.phase, n.running_below);
        if phase != Phase::Idle || below > 0 || self.ancestors().any(|a| a.node().phase.running()) {
            return Err(RegionError::Busy);
        }
        Ok(())
    }

    /// Marks a reset or destroy of this region as running (for the busy rule).
    fn begin(&self, phase: Phase) {
        self.node().phase = phase;
        self.ancestors().for_each(|a| a.node().running_below += 1);
    }

    /// Marks this region's reset or destroy as finished.
    fn end(&self) {
        self.ancestors().for_each(|a| a.node().running_below -= 1);
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
    fn try_alloc_inline(&self, home: Option<usize>, size: usize, align: usize) -> *mut u8 {
        self.bump.try_alloc_inline(home, size, align)
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
                b.begin(Phase::Destroying);
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
    unsafe { create_node(parent, ptr::null_mut(), region_size, allow_large) }
}

unsafe fn create_node(
    backing: *mut GooAllocator,
    parent_region: *mut GooAllocator,
    region_size: usize,
    allow_large: bool,
) -> NonNull<GooAllocator> {
    let policy = ChunkPolicy { initial_size: region_size, limit: 0, grow: false, allow_large };
    let backend = RegionBackend {
        // SAFETY: forwarded contract (the backing allocator outlives the region).
        bump: unsafe { Bump::with_policy(backing, policy) },
        node: UnsafeCell::new(Node {
            parent: parent_region,
            children: Vec::new(),
            cleanups: Vec::new(),
            next_cleanup_id: 1,
            name: String::new(),
            phase: Phase::Idle,
            running_below: 0,
            region_size,
            allow_large,
        }),
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
pub fn create_child(
    parent: *mut GooAllocator,
    region_size: usize,
) -> Result<NonNull<GooAllocator>, RegionError> {
    let p = live_backend(parent)?;
    let doomed = |r: &RegionBackend| matches!(r.node().phase, Phase::Granted | Phase::Destroying);
    if doomed(p) || p.ancestors().any(doomed) {
        return Err(refuse(RegionError::BeingDestroyed));
    }
    let (size, allow_large) = {
        let n = p.node();
        (if region_size == 0 { n.region_size } else { region_size }, n.allow_large)
    };
    // SAFETY: the parent's backing allocator outlives the parent, which outlives the child.
    let child = unsafe { create_node(p.bump.parent(), parent, size, allow_large) };
    p.node().children.push(child.as_ptr());
    debug_check(|| check_node(parent).map(drop));
    Ok(child)
}

/// Registers a cleanup run when the region is reset or destroyed (in reverse order of
/// registration). Returns its id (never 0).
pub fn add_cleanup(region: *mut GooAllocator, f: CleanupFn, arg: *mut c_void) -> Result<u64, RegionError> {
    add_action(region, Action::C(f, arg))
}

/// Registers a Rust closure as a cleanup (the Rust API's `Region::on_cleanup`).
pub fn add_cleanup_closure(region: *mut GooAllocator, f: Box<dyn FnOnce()>) -> Result<u64, RegionError> {
    add_action(region, Action::Rust(f))
}

fn add_action(region: *mut GooAllocator, action: Action) -> Result<u64, RegionError> {
    let n = live_backend(region)?.node();
    let id = n.next_cleanup_id;
    n.next_cleanup_id += 1;
    n.cleanups.push(Cleanup { id, action });
    Ok(id)
}

/// Cancels a cleanup that has not run. Returns whether it was found.
pub fn remove_cleanup(region: *mut GooAllocator, id: u64) -> Result<bool, RegionError> {
    let n = live_backend(region)?.node();
    let before = n.cleanups.len();
    n.cleanups.retain(|c| c.id != id);
    Ok(n.cleanups.len() != before)
}

/// Runs the region's cleanups, newest first, each exactly once; cleanups registered while they
/// run are run too.
fn run_cleanups(b: &RegionBackend) {
    loop {
        let Some(c) = b.node().cleanups.pop() else { break };
        match c.action {
            // SAFETY: registered as a callable `void (*)(void*)` with this argument.
            Action::C(f, arg) => unsafe { f(arg) },
            Action::Rust(f) => f(),
        }
    }
}

/// Resets `region`: children first (depth first, they stay alive and empty), then its cleanups
/// (reverse order), then its memory (keeping one region of memory). Refused
/// ([`RegionError::Busy`]) while a reset or destroy runs on it, above it or under it.
pub fn reset(region: *mut GooAllocator) -> Result<(), RegionError> {
    let b = live_backend(region)?;
    b.check_not_busy().map_err(refuse)?;
    b.begin(Phase::Resetting);
    reset_subtree(region, b);
    b.end();
    Ok(())
}

/// The work of [`reset`], under a running reset: no region of the subtree can be destroyed
/// meanwhile (the busy rule), so every child listed at the start is still live when its turn
/// comes. A child created by a cleanup meanwhile is new and stays as it is.
fn reset_subtree(region: *mut GooAllocator, b: &RegionBackend) {
    let children = b.node().children.clone();
    for child in children {
        if let Ok(c) = backend(child) {
            reset_subtree(child, c);
        }
    }
    run_cleanups(b);
    // SAFETY: `region` is a live library allocator.
    unsafe { front::record_reset(region) };
    b.bump.reset();
    debug_check(|| check_node(region).map(drop));
}

/// Destroys `region` and its subtree (children first), running cleanups, returning memory, and
/// detaching it from its parent. Refused ([`RegionError::Busy`]) while a reset or destroy runs
/// on it, above it or under it.
pub fn destroy(region: *mut GooAllocator) -> Result<(), RegionError> {
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
    // Children go first, each detaching itself from our list.
    while let Some(&child) = b.node().children.first() {
        if let Ok(c) = backend(child) {
            c.node().phase = Phase::Granted;
            // SAFETY: a live region, granted its destroy.
            unsafe { managed_destroy(child) };
        }
        if b.node().children.first() == Some(&child) {
            b.node().children.remove(0);
        }
    }
    run_cleanups(b);
    b.end();
    let parent = b.node().parent;
    if let Ok(p) = backend(parent) {
        p.node().children.retain(|&c| c != region);
        debug_check(|| check_node(parent).map(drop));
    }
    let mut live = live();
    live.remove(&(region as usize));
    if live.is_empty() {
        // The set's table is freed with its last region: it is not kept for the process's
        // life, where leak checkers would see it as lost.
        *live = addr_set();
    }
}

/// The parent of a live child region.
pub fn parent_of(region: *mut GooAllocator) -> Option<*mut GooAllocator> {
    let p = backend(region).ok()?.node().parent;
    (!p.is_null()).then_some(p)
}

/// Names the region (None or "" clears the name): the allocator's one name, which
/// [`report::set_name`](crate::report::set_name) also sets, shown in every report. Kept in the
/// node, not in the names registry, so that naming many regions costs nothing per operation.
pub fn set_name(region: *mut GooAllocator, name: Option<&str>) -> Result<(), RegionError> {
    let n = live_backend(region)?.node();
    n.name.clear();
    n.name.push_str(name.unwrap_or(""));
    Ok(())
}

/// The name of a live region, if it has one.
pub fn name_of(region: *mut GooAllocator) -> Option<String> {
    let n = backend(region).ok()?.node();
    (!n.name.is_empty()).then(|| n.name.clone())
}

/// Stats of the region alone.
pub fn stats(region: *mut GooAllocator) -> Result<AllocStats, RegionError> {
    live_backend(region)?;
    // SAFETY: a live region.
    Ok(unsafe { front::stats(region) })
}

/// Stats summed over the region and all its descendants (every field is the sum).
pub fn subtree_stats(region: *mut GooAllocator) -> Result<AllocStats, RegionError> {
    let mut total = stats(region)?;
    let children = live_backend(region)?.node().children.clone();
    for child in children {
        let s = subtree_stats(child)?;
        total.bytes_allocated += s.bytes_allocated;
        total.bytes_reserved += s.bytes_reserved;
        total.max_bytes_allocated += s.max_bytes_allocated;
        total.allocation_count += s.allocation_count;
        total.total_allocations += s.total_allocations;
        total.total_frees += s.total_frees;
        total.failed_allocations += s.failed_allocations;
    }
    Ok(total)
}

/// The tree under `region` as text, one line per region, children indented.
pub fn report(region: *mut GooAllocator) -> Result<String, RegionError> {
    let mut out = String::new();
    report_into(region, 0, &mut out)?;
    Ok(out)
}

fn report_into(region: *mut GooAllocator, depth: usize, out: &mut String) -> Result<(), RegionError> {
    let s = stats(region)?;
    let sub = subtree_stats(region)?;
    let b = live_backend(region)?;
    let (name, cleanups, children) = {
        let n = b.node();
        let name = if n.name.is_empty() { "(unnamed)".to_string() } else { escaped(&n.name) };
        (name, n.cleanups.len(), n.children.clone())
    };
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
        indent = depth * 2
    );
    for child in children {
        report_into(child, depth + 1, out)?;
    }
    Ok(())
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
pub fn backend_of<'a>(region: *mut GooAllocator) -> Option<&'a RegionBackend> {
    backend(region).ok()
}

/// The allocator kind a region's [`InvariantError`]s name (its bump's name "arena").
const REGION: &str = "region";

/// Verifies the invariants of `region` and of every region under it (the equations beside
/// `Node`, the arena's for each region's bump, and each region's stats), walking the subtree
/// with at most |LIVE| visits, so a cycle in the tree is reported, not walked forever. Safe with
/// any pointer: each one is checked against the live set before it is used. Allocates nothing.
pub fn check_raw(region: *mut GooAllocator) -> Result<(), InvariantError> {
    let mut budget = live().len();
    check_subtree(region, &mut budget).map(drop)
}

/// Checks the subtree under `region`; returns how many of its regions (itself included) run a
/// reset or destroy.
fn check_subtree(region: *mut GooAllocator, budget: &mut usize) -> Result<usize, InvariantError> {
    ensure(*budget > 0, REGION, "the subtree under r is a tree (at most |LIVE| regions)")?;
    *budget -= 1;
    let b = check_node(region)?;
    // SAFETY: `check_node` found `region` live, a `Managed<RegionBackend>`.
    unsafe { Managed::<RegionBackend>::stats(region) }.check()?;
    let mut running_below = 0;
    let mut i = 0;
    while let Some(child) = b.node().children.get(i).copied() {
        running_below += check_subtree(child, budget)?;
        i += 1;
    }
    let n = b.node();
    ensure(
        n.running_below == running_below,
        REGION,
        "running_below = |{ d strictly under r : d.phase ∈ {Resetting, Destroying} }|",
    )?;
    Ok(running_below + usize::from(n.phase.running()))
}

/// Verifies the invariants of one region's node, its links with its parent and children, and
/// its bump. Every node is borrowed for one expression at a time (so a corrupted link that
/// names the region itself never makes two borrows of one node).
fn check_node<'a>(region: *mut GooAllocator) -> Result<&'a RegionBackend, InvariantError> {
    let b = backend(region).map_err(|_| InvariantError::new(REGION, "r ∈ LIVE"))?;
    b.bump.check()?;
    let parent = b.node().parent;
    if !parent.is_null() {
        let p =
            backend(parent).map_err(|_| InvariantError::new(REGION, "parent != null => parent ∈ LIVE"))?;
        let occurs = p.node().children.iter().filter(|&&c| c == region).count();
        ensure(occurs == 1, REGION, "parent != null => r occurs once in parent.children")?;
    }
    let mut i = 0;
    while let Some(child) = b.node().children.get(i).copied() {
        let occurs = b.node().children.iter().filter(|&&c| c == child).count();
        ensure(occurs == 1, REGION, "children distinct")?;
        let c = backend(child).map_err(|_| InvariantError::new(REGION, "c ∈ children => c ∈ LIVE"))?;
        ensure(c.node().parent == region, REGION, "c ∈ children => c.parent == r")?;
        i += 1;
    }
    let ids_rise = {
        let n = b.node();
        n.cleanups.first().is_none_or(|c| c.id >= 1)
            && n.cleanups.windows(2).all(|w| w[0].id < w[1].id)
            && n.cleanups.last().is_none_or(|c| c.id < n.next_cleanup_id)
    };
    ensure(ids_rise, REGION, "1 <= cleanups[0].id, cleanups[i].id < cleanups[i + 1].id < next_cleanup_id")?;
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
        let node = |r: &Region<'_>| backend_of(r.as_ptr()).unwrap().node();

        node(&child).parent = ptr::null_mut();
        assert_eq!(broken(&root).broken, "c ∈ children => c.parent == r");
        node(&child).parent = root.as_ptr();

        node(&root).children.push(child.as_ptr());
        assert_eq!(broken(&root).broken, "children distinct");
        node(&root).children.pop();

        let mut not_a_region = GooAllocator::EMPTY;
        node(&child).children.push(&raw mut not_a_region);
        assert_eq!(broken(&root).broken, "c ∈ children => c ∈ LIVE");
        node(&child).children.pop();

        node(&child).parent = grandchild.as_ptr();
        assert_eq!(broken(&child).broken, "parent != null => r occurs once in parent.children");
        node(&child).parent = root.as_ptr();

        // A cycle whose every link agrees: the root hangs under its own grandchild.
        node(&grandchild).children.push(root.as_ptr());
        node(&root).parent = grandchild.as_ptr();
        assert_eq!(broken(&root).broken, "the subtree under r is a tree (at most |LIVE| regions)");
        node(&root).parent = ptr::null_mut();
        node(&grandchild).children.pop();

        node(&grandchild).cleanups.swap(0, 1);
        assert_eq!(
            broken(&root).broken,
            "1 <= cleanups[0].id, cleanups[i].id < cleanups[i + 1].id < next_cleanup_id"
        );
        node(&grandchild).cleanups.swap(0, 1);

        // A region's bump is an arena: its equations are checked too.
        let next_seq = backend_of(child.as_ptr()).unwrap().bump.replace_next_seq(0);
        assert_eq!(broken(&root).allocator, "arena");
        backend_of(child.as_ptr()).unwrap().bump.replace_next_seq(next_seq);

        assert_eq!(root.check(), Ok(()), "restored");
        drop(grandchild);
        assert_eq!(root.check(), Ok(()));
    }
}
