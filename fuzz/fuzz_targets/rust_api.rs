//! Fuzz target `rust_api`: random operation sequences through the core's Rust API against a
//! shadow model: `Allocator::system()` (its own methods and its `allocator_api2` impl),
//! `AllocatorRef` (allocate with options, reallocate, deallocate, and its `allocator_api2` impl
//! with grow/shrink across alignments), `arena::Arena` (`try_alloc_layout`, `alloc_slice_copy`,
//! its `allocator_api2` impl, `reset`, nested `checkpoint`s, stats on or off, over a parent),
//! `pool::RawPool` (objects, its `allocator_api2` impl, `reset`, checked or not) and
//! `TypedPool`, `region::Region` trees (children, closures as cleanups, `reset`), `scoped::Scope`
//! (`new`, nested `Scope::run` with `AllocatorRef::with_current`, PERSIST), the temporary arena
//! (TEMP, `temp::mark`/`rewind`/`reset`) and the default allocator.
//!
//! After every operation: each block is non-null and aligned to its layout (or was refused where
//! the API allows it), disjoint from every other live block, still holds its pattern; a resize
//! kept the contents up to the smaller size (and zeroed a zeroed grow's tail); the stats of every
//! allocator that counts them match the model; every allocator's `check()` passes. At the end
//! everything is freed or dropped, and the built-in allocator is back where it started.
#![no_main]

use core::alloc::Layout;
use core::ptr::NonNull;

use allocator_api2::alloc::Allocator as Api2;
use arbitrary::Arbitrary;
use goo_memory_core::arena::{Arena, Checkpoint};
use goo_memory_core::pool::{PoolConfig, RawPool, TypedPool};
use goo_memory_core::region::{CleanupId, Region};
use goo_memory_core::scoped::Scope;
use goo_memory_core::system::System;
use goo_memory_core::{temp, AllocOptions, AllocStats, Allocator, AllocatorRef, GooAllocator};
use goo_memory_fuzz::model::{
    self, cleanups_ran, scope_live, Baseline, BlockExtra, Heaps, Kind, Parts, PoolParams, Target, BUILTIN,
    NO_PARENT, TEMP as TEMP_HEAP,
};
use goo_memory_fuzz::{pool_expect, Align, Book, Expect, Shadow, Size, Tracked, HUGE, MAX_HEAPS, MAX_OPS};
use libfuzzer_sys::fuzz_target;

/// How deep checkpoints and scope runs nest.
const MAX_DEPTH: usize = 3;

#[derive(Arbitrary, Debug)]
enum Op {
    NewSystem,
    NewArena {
        parent: u8,
        capacity: u16,
        limit: u8,
        track: bool,
    },
    NewPool {
        object_size: Size,
        align: Align,
        per_block: u8,
        max_objects: u8,
        checked: bool,
        track: bool,
    },
    NewRegion {
        size: u16,
        allow_large: bool,
    },
    NewChild {
        region: u8,
        size: u16,
    },
    NewScope,
    Drop {
        heap: u8,
        how: u8,
    },
    Reset {
        heap: u8,
    },
    Alloc {
        heap: u8,
        size: Size,
        align: Align,
        opts: u8,
        how: u8,
    },
    AllocCurrent {
        size: Size,
        align: Align,
        opts: u8,
    },
    Free {
        block: u16,
        how: u8,
    },
    Resize {
        block: u16,
        size: Size,
        align: Align,
        opts: u8,
        how: u8,
    },
    /// Runs `ops` inside a checkpoint of an arena (nested in its innermost one, if any).
    Checkpoint {
        arena: u8,
        ops: Vec<Op>,
    },
    /// Runs `ops` inside `Scope::run`: a scope that is the thread's allocator meanwhile.
    ScopeRun {
        ops: Vec<Op>,
    },
    TempMark,
    TempRewind {
        mark: u8,
    },
    OnCleanup {
        region: u8,
    },
    CancelCleanup {
        region: u8,
        which: u8,
    },
    Typed {
        per_block: u8,
        kind: u8,
        values: Vec<u16>,
        drops: Vec<u8>,
    },
}

/// What the model holds of an allocator.
enum Handle {
    /// The default allocator, the temporary arena, or an allocator dropped.
    None,
    System(Allocator<System>),
    Arena(Box<Arena>),
    /// An arena inside a checkpoint: the innermost guard, alive for as long as the slot says so
    /// (`Model::checkpoint` restores the slot before the guard drops).
    Guarded(*mut Checkpoint<'static>),
    Pool(RawPool),
    /// Children borrow their parent; the model drops every child before its parent.
    Region(Region<'static>),
    Scope(Scope),
    /// The scope of a `Scope::run` in progress (valid until the run's closure returns).
    Running(*const Scope),
}

type Heap = goo_memory_fuzz::model::Heap<Handle, CleanupId>;

/// How a block was allocated, hence how it is freed and resized.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Family {
    /// Through an `AllocatorRef` (or a method that is one underneath): freed through one.
    Ref,
    /// Through the handle type's own `allocator_api2` impl.
    Api2,
    /// `RawPool::alloc`: a whole object, freed with `RawPool::free`.
    Object,
}

#[derive(Clone, Debug)]
struct Extra {
    align: usize,
    family: Family,
    /// The bytes the front door counted for it (0: a dangling zero-size block, not counted).
    counted: usize,
    persist: bool,
}

type Block = Tracked<Extra>;

impl BlockExtra for Extra {
    fn counted(&self, _size: usize) -> usize {
        self.counted
    }

    fn persist(&self) -> bool {
        self.persist
    }

    fn unpersist(&mut self) {
        self.persist = false;
    }
}

fn options(bits: u8) -> AllocOptions {
    let mut o = AllocOptions::DEFAULT;
    for (bit, option) in [
        (1, AllocOptions::ZERO),
        (2, AllocOptions::GROWABLE),
        (4, AllocOptions::PERSIST),
        (8, AllocOptions::TEMP),
    ] {
        if bits & bit != 0 {
            o = o | option;
        }
    }
    o
}

struct Model {
    heaps: Heaps<Handle, CleanupId>,
    book: Book<Extra>,
    /// Scopes of the `Scope::run`s in progress, innermost last.
    running: Vec<usize>,
    baseline: Baseline,
    next_token: u64,
    ops_left: usize,
}

fn temp_ref() -> AllocatorRef<'static> {
    // SAFETY: this thread's temporary arena lives until the thread exits.
    unsafe { AllocatorRef::from_raw(NonNull::new(temp::allocator()).expect("a temporary arena")) }
}

impl Model {
    fn new() -> Model {
        // A temporary arena that exists and holds one chunk, as it will at the end.
        let p = temp_ref().allocate(Layout::new::<u8>(), AllocOptions::DEFAULT);
        assert!(p.is_ok());
        temp::reset().expect("no temp::with runs");
        let mut heaps = Heaps::new(Handle::None, Handle::None);
        heaps[TEMP_HEAP].failed = temp_ref().stats().failed_allocations;
        Model {
            heaps,
            book: Book::default(),
            running: Vec::new(),
            baseline: Baseline::new(
                // SAFETY: the target never sets a default: the built-in one, never destroyed.
                unsafe { AllocatorRef::default_allocator() }.stats(),
                temp_ref().stats().bytes_reserved,
            ),
            next_token: 1,
            ops_left: MAX_OPS,
        }
    }

    /// The allocator `i` as an `AllocatorRef`.
    fn aref(&self, i: usize) -> AllocatorRef<'_> {
        match &self.heaps[i].handle {
            Handle::None if i == TEMP_HEAP => temp_ref(),
            // SAFETY: as in `new`: the built-in default.
            Handle::None => unsafe { AllocatorRef::default_allocator() },
            Handle::System(a) => a.handle(),
            Handle::Arena(a) => a.handle(),
            // SAFETY: the guard is alive while the slot holds it.
            Handle::Guarded(g) => unsafe { &**g }.handle(),
            // SAFETY: the pool lives in the slot; the handle borrows `self`.
            Handle::Pool(p) => unsafe { AllocatorRef::from_raw(NonNull::new(p.as_ptr()).expect("a pool")) },
            Handle::Region(r) => r.handle(),
            Handle::Scope(s) => s.handle(),
            // SAFETY: the run is in progress while the slot holds it.
            Handle::Running(s) => unsafe { &**s }.handle(),
        }
    }

    fn raw(&self, i: usize) -> *mut GooAllocator {
        self.aref(i).as_ptr()
    }

    fn arena(&self, i: usize) -> Option<&Arena> {
        match &self.heaps[i].handle {
            Handle::Arena(a) => Some(a),
            // SAFETY: the guard is alive while the slot holds it.
            Handle::Guarded(g) => Some(unsafe { &**g }),
            _ => None,
        }
    }

    fn current(&self) -> usize {
        self.running.last().copied().unwrap_or(BUILTIN)
    }

    fn room(&self, size: usize) -> bool {
        self.book.room(size, || self.heaps.footprint(self.baseline.builtin(), |i| self.aref(i).stats()))
    }

    /// Records a request's outcome: a new block of `owner` (checked and filled), or a refusal.
    #[allow(clippy::too_many_arguments)] // the block, what it must be, and whose
    fn record(
        &mut self,
        owner: usize,
        got: Option<NonNull<u8>>,
        size: usize,
        extra: Extra,
        zero: bool,
        expect: Expect,
        counted_failure: bool,
        what: &dyn core::fmt::Debug,
    ) {
        expect.check(got.is_some(), what);
        let Some(p) = got else {
            if counted_failure {
                self.heaps[owner].failed += 1;
            }
            return;
        };
        // SAFETY: a fresh block of `size` bytes from the library.
        let b = unsafe { self.book.add(p.as_ptr(), size, extra.align, zero, owner, extra, what) };
        self.heaps.count(b);
    }

    fn bury(&mut self, dead: impl Fn(&Block) -> bool) {
        self.heaps.bury(&mut self.book, dead);
    }

    // ---- allocators ----

    fn new_arena(&mut self, parent: u8, capacity: u16, limit: u8, track: bool) {
        const LIMITS: [usize; 5] = [0, 0, 4096, 65536, 1 << 20];
        let limit = LIMITS[limit as usize % LIMITS.len()];
        let p = self
            .heaps
            .pick(parent, |h| matches!(h.kind, Kind::Builtin | Kind::System | Kind::Region | Kind::Scope))
            .unwrap_or(BUILTIN);
        let mut arena = if p == BUILTIN && limit == 0 {
            Arena::with_capacity(capacity as usize)
        } else {
            // SAFETY: the parent is live, used on this thread only, and outlives the arena (the
            // model drops dependents first).
            unsafe { Arena::with_parent(self.raw(p), capacity as usize, limit) }
        };
        arena.set_track_stats(track);
        let mut h = Heap::new(Handle::Arena(Box::new(arena)), Kind::Arena, p);
        h.tracked = track;
        h.limit = limit;
        self.heaps.add(h);
    }

    fn new_pool(&mut self, op: &Op) {
        let Op::NewPool { object_size, align, per_block, max_objects, checked, track } = *op else {
            unreachable!()
        };
        let pp = PoolParams::new(object_size, align, per_block, max_objects);
        let config = PoolConfig {
            object_size: pp.object_size,
            alignment: pp.align,
            objects_per_block: pp.per_block,
            max_objects: pp.max_objects,
            checked,
        };
        let pool = RawPool::with_config(config);
        pp.check_made(pool.is_some());
        let Some(mut pool) = pool else { return };
        pool.set_track_stats(track);
        let mut h = Heap::new(Handle::Pool(pool), Kind::Pool, BUILTIN);
        h.tracked = track;
        // Its `allocator_api2` impl refuses some requests without counting them.
        h.failures_inexact = true;
        h.set_pool(&pp);
        self.heaps.add(h);
    }

    fn new_region(&mut self, size: u16, allow_large: bool) {
        let mut h = Heap::new(Handle::Region(Region::new(size as usize, allow_large)), Kind::Region, BUILTIN);
        h.region_size = size as usize;
        h.allow_large = allow_large;
        self.heaps.add(h);
    }

    fn new_child(&mut self, region: u8, size: u16) {
        let Some(r) = self.heaps.pick(region, |h| h.kind == Kind::Region) else { return };
        let Handle::Region(parent) = &self.heaps[r].handle else { unreachable!() };
        // SAFETY: only the lifetime changes: the model drops every child before its parent.
        let child =
            unsafe { core::mem::transmute::<Region<'_>, Region<'static>>(parent.child(size as usize)) };
        self.heaps.add_child(r, Handle::Region(child), size as usize);
    }

    fn new_scope(&mut self) {
        // `Scope::new` takes its memory from the built-in allocator, whatever is current.
        self.heaps.add(Heap::new(Handle::Scope(Scope::new()), Kind::Scope, BUILTIN));
    }

    /// Whether allocator `i` can be dropped now, with its dependents and children: none of them
    /// is inside a checkpoint or a `Scope::run` in progress.
    fn droppable(&self, i: usize) -> bool {
        let h = &self.heaps[i];
        !matches!(h.handle, Handle::None | Handle::Guarded(_) | Handle::Running(_))
            && h.children.iter().all(|&c| self.droppable(c))
            && (0..self.heaps.len())
                .all(|j| j == i || !self.heaps[j].live || self.heaps[j].parent != i || self.droppable(j))
    }

    // ---- blocks ----

    fn alloc(&mut self, op: &Op) {
        let Op::Alloc { heap, size, align, opts, how } = *op else { unreachable!() };
        let Some(i) = self.heaps.pick(heap, |_| true) else { return };
        let (size, align) = (size.get(), align.layout_align());
        let Ok(layout) = Layout::from_size_align(size, align) else { return };
        if !self.room(size) {
            return;
        }
        let kind = self.heaps[i].kind;
        match (how % 5, kind) {
            (1 | 2, _) => self.alloc_api2(i, layout, how % 5 == 2, op),
            (3, Kind::Pool) => {
                let Handle::Pool(pool) = &self.heaps[i].handle else { unreachable!() };
                let got = pool.alloc().ok();
                let h = &self.heaps[i];
                let (size, align) = (h.object_size, h.pool_align);
                let expect = self.heaps.expect_alloc(i, size, align);
                let extra = Extra { align, family: Family::Object, counted: size, persist: false };
                self.record(i, got, size, extra, false, expect, true, op);
            }
            (3, Kind::System | Kind::Arena | Kind::Region | Kind::Scope) => {
                let got = match &self.heaps[i].handle {
                    Handle::System(a) => a.allocate(layout).ok(),
                    Handle::Region(r) => r.try_alloc_layout(layout).ok(),
                    Handle::Scope(s) => s.try_alloc_layout(layout).ok(),
                    // SAFETY: the run is in progress while the slot holds it.
                    Handle::Running(s) => unsafe { &**s }.try_alloc_layout(layout).ok(),
                    _ => self.arena(i).expect("an arena").try_alloc_layout(layout).ok(),
                };
                self.record_ref(i, got, layout, AllocOptions::DEFAULT, op);
            }
            (4, Kind::Arena | Kind::Region)
                if size <= 65536 && self.heaps.expect_alloc(i, size, align) == Expect::Succeed =>
            {
                // The infallible copies (they abort on failure: asked only where the request
                // must succeed); the copy must hold what it copied.
                let src: Vec<u8> = (0..size).map(|k| (k * 7 + 3) as u8).collect();
                let copy = match &self.heaps[i].handle {
                    Handle::Region(r) => r.alloc_slice_copy(&src).as_mut_ptr(),
                    _ => self.arena(i).expect("an arena").alloc_slice_copy(&src).as_mut_ptr(),
                };
                // SAFETY: the copy holds `size` bytes.
                assert_eq!(unsafe { core::slice::from_raw_parts(copy, size) }, &src[..], "alloc_slice_copy");
                self.record_ref(
                    i,
                    NonNull::new(copy),
                    Layout::array::<u8>(size).expect("a layout"),
                    AllocOptions::DEFAULT,
                    op,
                );
            }
            _ => {
                let o = options(opts);
                let got = self.aref(i).allocate(layout, o).ok();
                self.record_ref(i, got, layout, o, op);
            }
        }
    }

    /// Records a front-door request to `i` with `o` (TEMP goes to the temporary arena; PERSIST
    /// to a scope is served by its parent).
    fn record_ref(
        &mut self,
        i: usize,
        got: Option<NonNull<u8>>,
        layout: Layout,
        o: AllocOptions,
        what: &dyn core::fmt::Debug,
    ) {
        let owner = if o.contains(AllocOptions::TEMP) { TEMP_HEAP } else { i };
        let (size, align) = (layout.size(), layout.align());
        let persist = o.contains(AllocOptions::PERSIST) && self.heaps[owner].kind == Kind::Scope;
        let expect = self.heaps.expect_request(owner, size, align, persist);
        let extra = Extra { align, family: Family::Ref, counted: size, persist };
        self.record(owner, got, size, extra, o.contains(AllocOptions::ZERO), expect, true, what);
    }

    /// An allocation through the handle type's own `allocator_api2` impl.
    fn alloc_api2(&mut self, i: usize, layout: Layout, zeroed: bool, what: &dyn core::fmt::Debug) {
        let l = layout;
        let got = match &self.heaps[i].handle {
            Handle::System(a) if zeroed => Api2::allocate_zeroed(&a, l),
            Handle::System(a) => Api2::allocate(&a, l),
            Handle::Pool(p) if zeroed => Api2::allocate_zeroed(&p, l),
            Handle::Pool(p) => Api2::allocate(&p, l),
            Handle::Arena(_) | Handle::Guarded(_) => {
                let arena = self.arena(i).expect("an arena");
                if zeroed {
                    Api2::allocate_zeroed(&arena, l)
                } else {
                    Api2::allocate(&arena, l)
                }
            }
            _ if zeroed => Api2::allocate_zeroed(&self.aref(i), l),
            _ => Api2::allocate(&self.aref(i), l),
        };
        if let Ok(s) = got {
            assert!(s.len() >= layout.size(), "an api2 block shorter than its layout: {what:?}");
        }
        let got = got.ok().map(|s| s.cast::<u8>());
        let h = &self.heaps[i];
        let (size, align) = (layout.size(), layout.align());
        let (expect, counted) = if h.kind == Kind::Pool {
            // The pool's impl: an object (counted as one) for a request it holds, dangling for
            // size 0, refused (not counted) past the object size or the pool's alignment.
            let at_cap = size > 0 && h.max_objects != 0 && h.count >= h.max_objects;
            let e = pool_expect(size.max(1), align, h.object_size, h.pool_align, at_cap, Expect::Succeed);
            (e, if size > 0 { h.object_size } else { 0 })
        } else {
            (self.heaps.expect_alloc(i, size, align), size)
        };
        let extra = Extra { align, family: Family::Api2, counted, persist: false };
        self.record(i, got, size, extra, zeroed, expect, h.kind != Kind::Pool, what);
    }

    fn alloc_current(&mut self, size: Size, align: Align, opts: u8) {
        let (size, align) = (size.get(), align.layout_align());
        let Ok(layout) = Layout::from_size_align(size, align) else { return };
        if !self.room(size) {
            return;
        }
        // TEMP and PERSIST are left to `alloc`: the current allocator is the owner here.
        let o = options(opts & 3);
        let got = AllocatorRef::with_current(|a| a.allocate(layout, o).ok());
        let what = ("with_current", size, align, o);
        self.record_ref(self.current(), got, layout, o, &what);
    }

    fn resize(&mut self, op: &Op) {
        let Op::Resize { block, size, align, opts, how } = *op else { unreachable!() };
        if self.book.is_empty() {
            return;
        }
        let bi = block as usize % self.book.len();
        let b = self.book.blocks[bi].clone();
        if b.extra.family == Family::Object {
            return;
        }
        let new = size.get();
        let old_layout = Layout::from_size_align(b.size, b.extra.align).expect("the block's layout");
        let reallocate = b.extra.family == Family::Ref && how % 3 == 0;
        let new_align = if reallocate { b.extra.align } else { align.layout_align() };
        let Ok(new_layout) = Layout::from_size_align(new, new_align) else { return };
        if (new > b.size && !self.room(new - b.size)) || (reallocate && new == 0) {
            return;
        }
        self.book.verify(bi, op);
        let zero = if reallocate { opts & 1 != 0 } else { how % 3 == 2 && new >= b.size };
        let p = NonNull::new(b.p).expect("a block");
        let h = &self.heaps[b.owner];
        let pool = h.kind == Kind::Pool;
        // What the request may do: a resize in place where the allocator does them (same
        // alignment, both sizes non-zero), else a new block (alloc, copy, free).
        let in_place = new_align == b.extra.align
            && b.size != 0
            && new != 0
            && !(pool && b.extra.family == Family::Api2);
        let expect = if new >= HUGE {
            Expect::Fail
        } else if in_place && pool {
            pool_expect(new, new_align, h.object_size, h.pool_align, false, Expect::Succeed)
        } else if in_place && matches!(h.kind, Kind::Arena | Kind::Region) && new <= b.size {
            Expect::Succeed
        } else if pool && b.extra.family == Family::Api2 {
            let at_cap = new > 0 && h.max_objects != 0 && h.count >= h.max_objects;
            pool_expect(new.max(1), new_align, h.object_size, h.pool_align, at_cap, Expect::Succeed)
        } else if b.extra.persist {
            self.heaps.expect_request(b.owner, new, new_align, true)
        } else {
            self.heaps.expect_alloc(b.owner, new, new_align)
        };
        // SAFETY: a live block of its owner with `old_layout`; on success it is not used through
        // `p` again.
        let got = if reallocate {
            // SAFETY: as above.
            unsafe { self.aref(b.owner).reallocate(p, old_layout, new, options(opts & 3)) }.ok()
        } else {
            let how = (old_layout, new_layout, zero);
            // SAFETY: as above, through the handle type's own impl (or an `AllocatorRef`'s).
            let r = unsafe {
                match (b.extra.family, &self.heaps[b.owner].handle) {
                    (Family::Api2, Handle::System(a)) => resize_api2(&a, p, how),
                    (Family::Api2, Handle::Pool(pool)) => resize_api2(&pool, p, how),
                    (Family::Api2, Handle::Arena(_) | Handle::Guarded(_)) => {
                        resize_api2(&self.arena(b.owner).expect("an arena"), p, how)
                    }
                    _ => resize_api2(&self.aref(b.owner), p, how),
                }
            };
            r.ok().map(|s| {
                assert!(s.len() >= new, "an api2 block shorter than its layout: {op:?}");
                s.cast::<u8>()
            })
        };
        expect.check(got.is_some(), op);
        let Some(q) = got else {
            self.book.verify(bi, op);
            // Refusals of a pool's own impl are not counted; the front door's are.
            if !(pool && b.extra.family == Family::Api2) {
                self.heaps[b.owner].failed += 1;
            }
            return;
        };
        // SAFETY: the library resized block `bi` to `new` bytes at `q`.
        unsafe { self.book.resized(bi, q.as_ptr(), new, new_align, zero, op) };
        let counted = if pool && b.extra.family == Family::Api2 {
            if new > 0 {
                h.object_size
            } else {
                0
            }
        } else {
            new
        };
        let old = b.extra.counted;
        let h = &mut self.heaps[b.owner];
        h.bytes = h.bytes - old + counted;
        h.count = h.count - usize::from(old > 0) + usize::from(counted > 0);
        let e = &mut self.book.blocks[bi].extra;
        (e.align, e.counted) = (new_align, counted);
        if new_align != b.extra.align || b.size == 0 || new == 0 {
            // A new block (alloc, copy, free), allocated without options: a PERSIST block of a
            // scope becomes one of the scope itself (`AllocOptions::PERSIST`).
            e.persist = false;
        }
    }

    // ---- nested sessions ----

    fn run(&mut self, ops: &[Op], depth: usize) {
        for op in ops {
            if self.ops_left == 0 {
                return;
            }
            self.ops_left -= 1;
            self.apply(op, depth);
            model::check(self, op);
        }
    }

    fn checkpoint(&mut self, arena: u8, ops: &[Op], depth: usize) {
        let Some(i) = self.heaps.pick(arena, |h| matches!(h.handle, Handle::Arena(_) | Handle::Guarded(_)))
        else {
            return;
        };
        match core::mem::replace(&mut self.heaps[i].handle, Handle::None) {
            Handle::Arena(mut a) => {
                let r = {
                    let mut g = a.checkpoint();
                    self.guarded(i, &mut g, ops, depth)
                };
                self.heaps[i].handle = Handle::Arena(a);
                self.rewound(i, r);
            }
            Handle::Guarded(outer) => {
                let r = {
                    // SAFETY: the outer guard is alive (its slot held it); the inner one borrows
                    // it until the end of this block, while the slot holds the inner one.
                    let mut g = unsafe { &mut *outer }.checkpoint();
                    self.guarded(i, &mut g, ops, depth)
                };
                self.heaps[i].handle = Handle::Guarded(outer);
                self.rewound(i, r);
            }
            _ => unreachable!(),
        }
    }

    /// Runs `ops` with arena `i` inside guard `g`; verifies what the guard's drop will free.
    fn guarded(
        &mut self,
        i: usize,
        g: &mut Checkpoint<'_>,
        ops: &[Op],
        depth: usize,
    ) -> (u64, (usize, usize)) {
        let h = &self.heaps[i];
        let at_mark = h.expected();
        let seq = self.book.seq;
        self.heaps[i].handle = Handle::Guarded((g as *mut Checkpoint<'_>).cast());
        self.run(ops, depth + 1);
        self.heaps[i].handle = Handle::None;
        self.book.verify_where(|b| b.owner == i && b.seq > seq, &("checkpoint drop", i));
        (seq, at_mark)
    }

    /// The guard of a checkpoint of arena `i` dropped: a rewind to its mark.
    fn rewound(&mut self, i: usize, (seq, at_mark): (u64, (usize, usize))) {
        let before = self.heaps[i].expected();
        self.bury(|b| b.owner == i && b.seq > seq);
        let after = (before.0.min(at_mark.0), before.1.min(at_mark.1));
        self.heaps[i].rewound_to(after, &("checkpoint drop", i));
    }

    fn scope_run(&mut self, ops: &[Op], depth: usize) {
        let parent = self.current();
        let mut index = usize::MAX;
        let ((), summary) = Scope::run_with_summary(|s| {
            index = self.heaps.add(Heap::new(Handle::Running(s), Kind::Scope, parent));
            self.running.push(index);
            self.run(ops, depth + 1);
            // What the run's scope holds dies with it: its dependents first.
            for j in 0..self.heaps.len() {
                if j != index && self.heaps[j].live && self.heaps[j].parent == index {
                    self.destroy(j, 1);
                }
            }
            self.book.verify_where(|b| b.owner == index, &"scope run end");
            self.running.pop();
        });
        let live = scope_live(&self.book, index);
        assert_eq!((summary.implicit_frees, summary.implicit_bytes), live, "Scope::run's summary");
        self.heaps[index].handle = Handle::None;
        self.heaps.gone(&mut self.book, index);
    }

    // ---- the rest ----

    fn temp_rewind(&mut self, which: u8) {
        self.heaps.rewind(&mut self.book, TEMP_HEAP, which, |_, mark| temp::rewind(&mark).is_ok());
    }

    fn on_cleanup(&mut self, region: u8) {
        let Some(r) = self.heaps.pick(region, |h| h.kind == Kind::Region) else { return };
        let token = self.next_token;
        self.next_token += 1;
        let Handle::Region(reg) = &self.heaps[r].handle else { unreachable!() };
        let id = reg.on_cleanup(move || model::cleanup_ran(token));
        self.heaps[r].cleanup_added(id, token);
    }

    fn cancel_cleanup(&mut self, region: u8, which: u8) {
        let Some(r) = self.heaps.pick(region, |h| h.kind == Kind::Region) else { return };
        let h = &mut self.heaps[r];
        let Some((id, registered)) = h.cleanup_cancelled(which) else { return };
        let Handle::Region(reg) = &h.handle else { unreachable!() };
        assert_eq!(reg.cancel_cleanup(id), registered, "cancel_cleanup");
    }

    fn apply(&mut self, op: &Op, depth: usize) {
        let room = self.heaps.made() < MAX_HEAPS;
        match op {
            Op::NewSystem if room => {
                self.heaps.add(Heap::new(Handle::System(Allocator::system()), Kind::System, NO_PARENT));
            }
            &Op::NewArena { parent, capacity, limit, track } if room => {
                self.new_arena(parent, capacity, limit, track)
            }
            Op::NewPool { .. } if room => self.new_pool(op),
            &Op::NewRegion { size, allow_large } if room => self.new_region(size, allow_large),
            &Op::NewChild { region, size } if room => self.new_child(region, size),
            Op::NewScope if room => self.new_scope(),
            &Op::Drop { heap, how } => {
                if let Some(i) = self.heaps.pick(heap, |h| !matches!(h.kind, Kind::Builtin | Kind::Temp)) {
                    self.destroy(i, how);
                }
            }
            &Op::Reset { heap } => {
                if let Some(i) = self
                    .heaps
                    .pick(heap, |h| matches!(h.kind, Kind::Temp | Kind::Arena | Kind::Pool | Kind::Region))
                {
                    self.reset(i);
                }
            }
            Op::Alloc { .. } => self.alloc(op),
            &Op::AllocCurrent { size, align, opts } => self.alloc_current(size, align, opts),
            &Op::Free { block, how } => {
                if !self.book.is_empty() {
                    self.free_block(block as usize % self.book.len(), how, op);
                }
            }
            Op::Resize { .. } => self.resize(op),
            Op::Checkpoint { arena, ops } if depth < MAX_DEPTH => self.checkpoint(*arena, ops, depth),
            Op::ScopeRun { ops } if depth < MAX_DEPTH && room => self.scope_run(ops, depth),
            Op::TempMark => {
                let h = &mut self.heaps[TEMP_HEAP];
                h.marks.taken(temp::mark(), self.book.seq, h.expected());
            }
            &Op::TempRewind { mark } => self.temp_rewind(mark),
            &Op::OnCleanup { region } => self.on_cleanup(region),
            &Op::CancelCleanup { region, which } => self.cancel_cleanup(region, which),
            Op::Typed { per_block, kind, values, drops } => match kind % 3 {
                0 => typed::<[u64; 3]>(*per_block, values, drops, |v| {
                    [u64::from(v), !u64::from(v), 3 * u64::from(v)]
                }),
                1 => typed::<u8>(*per_block, values, drops, |v| v as u8),
                _ => typed::<()>(*per_block, values, drops, |_| ()),
            },
            _ => {}
        }
    }

    // ---- checks ----
}

/// `a`'s `allocator_api2` grow (zeroed if asked) or shrink of `p` from `old` to `new`.
///
/// # Safety
/// As for `allocator_api2::alloc::Allocator::grow` / `shrink`: `p` is a block of `a` with `old`.
unsafe fn resize_api2<A: Api2>(
    a: &A,
    p: NonNull<u8>,
    (old, new, zero): (Layout, Layout, bool),
) -> Result<NonNull<[u8]>, allocator_api2::alloc::AllocError> {
    // SAFETY: forwarded contract; grow when not smaller, shrink when not larger.
    unsafe {
        if new.size() < old.size() {
            a.shrink(p, old, new)
        } else if zero {
            a.grow_zeroed(p, old, new)
        } else {
            a.grow(p, old, new)
        }
    }
}

/// A `TypedPool<T>` session: values in, some dropped, the rest checked and dropped; the pool's
/// counts follow, its objects are disjoint and aligned for `T`.
fn typed<T: Copy + PartialEq + core::fmt::Debug>(
    per_block: u8,
    values: &[u16],
    drops: &[u8],
    make: impl Fn(u16) -> T,
) {
    let pool = TypedPool::<T>::new(per_block as usize % 32);
    let mut boxes = Vec::new();
    let mut shadow = Shadow::default();
    let size = core::mem::size_of::<T>().max(1);
    for (k, &v) in values.iter().take(64).enumerate() {
        let b = pool.alloc(make(v)).unwrap_or_else(|_| panic!("a TypedPool refused an object"));
        let p = &*b as *const T as *const u8;
        goo_memory_fuzz::check_aligned(p, core::mem::align_of::<T>(), &"TypedPool object");
        shadow.insert(p, size, k as u64);
        boxes.push((b, make(v), k as u64));
        assert_eq!(pool.stats().live_objects, boxes.len());
    }
    for &d in drops.iter().take(64) {
        if boxes.is_empty() {
            break;
        }
        let (b, v, k) = boxes.swap_remove(d as usize % boxes.len());
        assert_eq!(*b, v, "a TypedPool object changed");
        shadow.remove(&*b as *const T as *const u8, size, k);
        drop(b);
        assert_eq!(pool.stats().live_objects, boxes.len());
        assert_eq!(pool.check(), Ok(()));
    }
    for (b, v, _) in &boxes {
        assert_eq!(**b, *v, "a TypedPool object changed");
    }
    drop(boxes);
    assert_eq!(pool.stats().live_objects, 0);
    assert_eq!(pool.check(), Ok(()));
}

impl Target for Model {
    type Handle = Handle;
    type Cleanup = CleanupId;
    type Extra = Extra;

    fn parts(&self) -> Parts<'_, Handle, CleanupId, Extra> {
        (&self.heaps, &self.book, &self.baseline)
    }

    fn stats(&self, i: usize) -> AllocStats {
        self.aref(i).stats()
    }

    fn check_heap(&self, i: usize, op: &dyn core::fmt::Debug) {
        let h = &self.heaps[i];
        let s = self.aref(i).stats();
        let what = || format!("{:?} {i} after {op:?}", h.kind);
        let invariants = match &h.handle {
            // SAFETY: this thread's live temporary arena.
            Handle::None => unsafe { goo_memory_core::arena::check_raw(temp::allocator()) },
            // SAFETY: a live system allocator.
            Handle::System(a) => unsafe { goo_memory_core::system::check_raw(a.as_ptr()) },
            Handle::Arena(_) | Handle::Guarded(_) => self.arena(i).expect("an arena").check(),
            Handle::Pool(p) => {
                assert_eq!(p.stats().live_objects, h.count, "live objects: {}", what());
                p.check()
            }
            Handle::Region(r) => {
                assert_eq!(r.stats(), s, "Region::stats: {}", what());
                self.heaps.check_subtree(i, &r.subtree_stats(), &what());
                r.check()
            }
            Handle::Scope(_) | Handle::Running(_) => {
                let scope = match &h.handle {
                    Handle::Scope(s) => s,
                    // SAFETY: the run is in progress while the slot holds it.
                    Handle::Running(s) => unsafe { &**s },
                    _ => unreachable!(),
                };
                if !self.heaps.has_dependents(i) {
                    assert_eq!(scope.live(), scope_live(&self.book, i), "Scope::live: {}", what());
                }
                scope.check()
            }
        };
        assert_eq!(invariants, Ok(()), "invariants of {}", what());
    }

    /// Drops allocator `i`: its dependents first, a region's children first.
    fn destroy(&mut self, i: usize, how: u8) {
        // A scope ends with `Scope::end` (its summary checked), or is dropped.
        let end = how.is_multiple_of(2);
        let h = &self.heaps[i];
        if !h.live || !self.droppable(i) {
            return;
        }
        let kind = h.kind;
        for j in 0..self.heaps.len() {
            if j != i && self.heaps[j].live && self.heaps[j].parent == i {
                self.destroy(j, how);
            }
        }
        for c in self.heaps[i].children.clone() {
            self.destroy(c, how);
        }
        let what = format!("drop {kind:?} {i}");
        if kind == Kind::System {
            while let Some(bi) = self.book.blocks.iter().position(|b| b.owner == i) {
                self.free_block(bi, 0, &what);
            }
        }
        self.book.verify_where(|b| b.owner == i, &what);
        let expected: Vec<u64> = self.heaps[i].cleanups.iter().rev().map(|&(_, t)| t).collect();
        let live = scope_live(&self.book, i);
        match core::mem::replace(&mut self.heaps[i].handle, Handle::None) {
            Handle::Scope(s) if end => {
                let summary = s.end();
                assert_eq!((summary.implicit_frees, summary.implicit_bytes), live, "{what}");
            }
            other => drop(other),
        }
        assert_eq!(cleanups_ran(), expected, "cleanups: {what}");
        self.heaps.gone(&mut self.book, i);
    }

    /// Frees block `bi` the way its family says (verified first), and forgets it.
    fn free_block(&mut self, bi: usize, how: u8, what: &dyn core::fmt::Debug) {
        self.book.verify(bi, what);
        let b = self.book.blocks[bi].clone();
        let p = NonNull::new(b.p).expect("a block");
        let layout = Layout::from_size_align(b.size, b.extra.align).expect("the block's layout");
        // SAFETY: a live block of its owner, allocated with this layout, not used afterwards.
        unsafe {
            match (b.extra.family, &self.heaps[b.owner].handle) {
                (Family::Object, Handle::Pool(pool)) => pool.free(p),
                (Family::Api2, Handle::System(a)) => Api2::deallocate(&a, p, layout),
                (Family::Api2, Handle::Pool(pool)) => Api2::deallocate(&pool, p, layout),
                (Family::Api2, Handle::Arena(_) | Handle::Guarded(_)) => {
                    Api2::deallocate(&self.arena(b.owner).expect("an arena"), p, layout)
                }
                (_, _) if how % 3 == 1 && b.owner == self.current() && !b.extra.persist => {
                    AllocatorRef::with_current(|a| a.deallocate(p, layout))
                }
                (_, _) if how % 3 == 2 => Api2::deallocate(&self.aref(b.owner), p, layout),
                _ => self.aref(b.owner).deallocate(p, layout),
            }
        }
        let b = self.book.remove(bi);
        self.heaps.uncount(&b);
    }

    fn reset(&mut self, i: usize) {
        let what = format!("reset {:?} {i}", self.heaps[i].kind);
        let has_children = !self.heaps[i].children.is_empty();
        if has_children || self.heaps.has_dependents(i) {
            return;
        }
        let expected: Vec<u64> = self.heaps[i].cleanups.iter().rev().map(|&(_, t)| t).collect();
        self.book.verify_where(|b| b.owner == i, &what);
        match &mut self.heaps[i].handle {
            Handle::None if i == TEMP_HEAP => temp::reset().expect("no temp::with runs"),
            Handle::Arena(a) => a.reset(),
            Handle::Pool(p) => p.reset(),
            Handle::Region(r) => r.reset(),
            _ => return,
        }
        assert_eq!(cleanups_ran(), expected, "cleanups: {what}");
        self.bury(|b| b.owner == i);
        self.heaps[i].reset();
    }
}

fuzz_target!(|ops: Vec<Op>| {
    let mut m = Model::new();
    m.run(&ops, 0);
    model::teardown(&mut m);
});
