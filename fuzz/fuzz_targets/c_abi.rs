//! Fuzz target `c_abi`: random operation sequences through the C ABI (the `extern "C"`
//! functions of the `goo_memory` crate, called as a C program calls them) against a shadow
//! model of every allocator: the built-in default, system allocators, arenas (limits,
//! mark/rewind, reset), pools (every create function, checked and unchecked), region trees
//! (children, cleanups, reset, destroy), scopes (begun and nested, or created over a parent;
//! PERSIST blocks), the thread's temporary arena (TEMP requests, mark/rewind/reset), with
//! `alloc_with` / `_ex` / `alloc_array` / the current-allocator calls, reallocs and frees.
//!
//! After every operation: each block the library returned is non-null and aligned as asked (or
//! was refused where the headers allow it), disjoint from every other live block of every
//! allocator, still holds the pattern written into it; a realloc kept the contents up to the
//! smaller size and zeroed a ZERO tail; every allocator's `goo_get_alloc_stats` matches the
//! model's live blocks and bytes (and failures), and its invariants hold (`check_raw`). At the
//! end everything is freed or destroyed, and the built-in allocator is back where it started.
#![no_main]

use core::ffi::c_void;
use core::ptr;

use arbitrary::Arbitrary;
use goo_memory::arena::{
    goo_arena_allocator_chunk_count, goo_arena_allocator_create, goo_arena_allocator_create_ex,
    goo_arena_allocator_destroy, goo_arena_allocator_reset, goo_arena_mark, goo_arena_rewind,
};
use goo_memory::memory::{
    goo_allocator_destroy, goo_get_alloc_stats, goo_get_default_allocator, goo_get_thread_allocator,
    goo_memory_alloc, goo_memory_alloc_aligned, goo_memory_alloc_array, goo_memory_alloc_ex,
    goo_memory_alloc_with, goo_memory_alloc_zeroed, goo_memory_free, goo_memory_free_aligned,
    goo_memory_free_ex, goo_memory_free_with, goo_memory_realloc, goo_memory_realloc_ex,
    goo_memory_realloc_with, goo_system_allocator_create,
};
use goo_memory::pool::{
    goo_pool_allocator_create, goo_pool_allocator_create_ex, goo_pool_allocator_create_opts,
    goo_pool_allocator_destroy, goo_pool_allocator_get_stats, goo_pool_allocator_reset, PoolOptions,
};
use goo_memory::region::{
    goo_region_add_cleanup, goo_region_allocator_create, goo_region_allocator_create_ex,
    goo_region_allocator_destroy, goo_region_allocator_reset, goo_region_create_child,
    goo_region_remove_cleanup, goo_region_report, goo_region_set_name, goo_region_stats,
    goo_region_subtree_stats,
};
use goo_memory::scoped::{
    goo_scope_begin, goo_scope_end, goo_scope_live_bytes, goo_scope_live_count, goo_scoped_allocator_create,
    goo_temp_alloc, goo_temp_allocator, goo_temp_mark, goo_temp_reset, goo_temp_rewind,
};
use goo_memory_core::arena::Mark;
use goo_memory_core::pool::PoolStats;
use goo_memory_core::{AllocOptions, AllocStats, GooAllocator};
use goo_memory_fuzz::model::{
    self, cleanups_ran, scope_live, Baseline, BlockExtra, Heaps, Kind, Parts, PoolParams, Target, BUILTIN,
    TEMP as TEMP_HEAP,
};
use goo_memory_fuzz::{resolve, Align, Book, Expect, Size, Tracked, HUGE, MAX_HEAPS, MAX_OPS};
use libfuzzer_sys::fuzz_target;

/// `GOO_ALLOC_*` bits (`include/goo/core/types.h`).
const ZERO: u32 = 1;
const GROWABLE: u32 = 4;
const PERSIST: u32 = 8;
const TEMP: u32 = 16;

#[derive(Arbitrary, Debug)]
enum Op {
    CreateSystem,
    CreateArena { parent: u8, initial: u16, limit: u8, ex: bool },
    CreatePool { parent: u8, object_size: Size, align: Align, per_block: u8, max_objects: u8, api: u8 },
    CreateRegion { parent: u8, size: u16, allow_large: bool, ex: bool },
    CreateChild { region: u8, size: u16 },
    ScopeBegin,
    ScopeCreate { parent: u8 },
    Destroy { heap: u8, how: u8 },
    Reset { heap: u8 },
    Alloc { heap: u8, size: Size, align: Align, opts: u8, api: u8 },
    AllocArray { heap: u8, count: u8, elem: Size, align: Align, opts: u8 },
    AllocCurrent { size: Size, align: Align, api: u8 },
    TempAlloc { size: Size },
    Free { block: u16, api: u8 },
    Realloc { block: u16, size: Size, opts: u8, api: u8 },
    Mark { heap: u8 },
    Rewind { heap: u8, mark: u8 },
    AddCleanup { region: u8 },
    RemoveCleanup { region: u8, which: u8 },
    Report { region: u8, len: u8 },
    Misuse { heap: u8, other: u8, what: u8 },
}

type Heap = goo_memory_fuzz::model::Heap<*mut GooAllocator, u64>;

/// What the model keeps of a block besides its place and pattern.
#[derive(Clone, Debug)]
struct Extra {
    /// As passed (0 = natural): frees and reallocs pass it again.
    align: usize,
    /// A PERSIST block of a scope: its parent's, surviving the scope.
    persist: bool,
}

type Block = Tracked<Extra>;

impl BlockExtra for Extra {
    fn counted(&self, size: usize) -> usize {
        size
    }

    fn persist(&self) -> bool {
        self.persist
    }

    fn unpersist(&mut self) {
        self.persist = false;
    }
}

unsafe extern "C" fn record_cleanup(arg: *mut c_void) {
    model::cleanup_ran(arg as usize as u64);
}

fn stats(a: *mut GooAllocator) -> AllocStats {
    // SAFETY: every allocator the model passes is live.
    unsafe { goo_get_alloc_stats(a) }
}

fn options(bits: u8, temp_allowed: bool) -> u32 {
    let mut o = 0;
    if bits & 1 != 0 {
        o |= ZERO;
    }
    if bits & 2 != 0 {
        o |= GROWABLE;
    }
    if bits & 4 != 0 && temp_allowed {
        o |= TEMP;
    }
    if bits & 8 != 0 {
        o |= PERSIST;
    }
    if bits & 16 != 0 {
        // Unknown bits are ignored (types.h); never NOFAIL (2), which aborts on a refusal.
        o |= 1 << (8 + (bits >> 5));
    }
    o
}

/// A C-layout mirror of `GooArenaMark` (types.h), read only to know whether a mark names a
/// chunk (an empty arena's mark names none and fits any empty arena).
#[repr(C)]
struct CMark {
    chunk: *mut c_void,
    position: *mut c_void,
    chunk_seq: u64,
    next_seq: u64,
    epoch: u64,
    live_bytes: usize,
    live_count: usize,
}

fn names_a_chunk(m: &Mark) -> bool {
    const { assert!(size_of::<CMark>() == size_of::<Mark>()) };
    // SAFETY: `Mark` is `#[repr(C)]` with the layout of `GooArenaMark`, which `CMark` mirrors.
    let c: CMark = unsafe { core::mem::transmute_copy(m) };
    !c.chunk.is_null()
}

struct Model {
    heaps: Heaps<*mut GooAllocator, u64>,
    book: Book<Extra>,
    /// Scopes begun with goo_scope_begin, innermost last.
    begun: Vec<usize>,
    baseline: Baseline,
    next_token: u64,
}

impl Model {
    fn new() -> Model {
        // A temporary arena that exists and holds one chunk, as it will at the end (the byte is
        // released by the reset).
        assert!(!goo_temp_alloc(1).is_null());
        goo_temp_reset();
        let builtin = goo_get_default_allocator();
        let temp = goo_temp_allocator();
        assert!(goo_get_thread_allocator().is_null(), "a thread allocator left over");
        let mut heaps = Heaps::new(builtin, temp);
        heaps[TEMP_HEAP].failed = stats(temp).failed_allocations;
        Model {
            heaps,
            book: Book::default(),
            begun: Vec::new(),
            baseline: Baseline::new(stats(builtin), stats(temp).bytes_reserved),
            next_token: 1,
        }
    }

    fn current(&self) -> usize {
        self.begun.last().copied().unwrap_or(BUILTIN)
    }

    /// A parent for a new allocator: the built-in, a system allocator, a pool, a region or a
    /// scope (never an arena: its rewinds would take chunks from under its dependents), or the
    /// current allocator (passed as null).
    fn pick_parent(&self, sel: u8) -> (usize, *mut GooAllocator) {
        if sel == 255 {
            return (self.current(), ptr::null_mut());
        }
        let i = self
            .heaps
            .pick(sel, |h| {
                matches!(h.kind, Kind::Builtin | Kind::System | Kind::Pool | Kind::Region | Kind::Scope)
            })
            .unwrap_or(BUILTIN);
        (i, self.heaps[i].handle)
    }

    /// What a realloc of block `b` to `new` bytes may do.
    fn expect_realloc(&self, b: &Block, new: usize) -> Expect {
        let h = &self.heaps[b.owner];
        if b.size == 0 {
            return self.heaps.expect_alloc(b.owner, new, b.extra.align);
        }
        if new == 0 {
            return Expect::Succeed;
        }
        if new >= HUGE {
            return Expect::Fail;
        }
        let a = resolve(new.max(b.size), b.extra.align);
        match h.kind {
            Kind::Pool => {
                if new <= h.object_size && a <= h.pool_align {
                    Expect::Succeed
                } else if new <= h.object_size && a <= h.pool_align.max(8) {
                    Expect::MayFail
                } else {
                    Expect::Fail
                }
            }
            // Arena and region blocks shrink in place.
            Kind::Arena | Kind::Region if new <= b.size => Expect::Succeed,
            _ if b.extra.persist => self.heaps.expect_alloc(h.parent, new, a),
            _ => self.heaps.expect_alloc(b.owner, new, a),
        }
    }

    /// Whether a request of `size` bytes may be made without going past the memory cap.
    fn room(&self, size: usize) -> bool {
        let heaps = &self.heaps;
        self.book.room(size, || heaps.footprint(self.baseline.builtin(), |i| stats(heaps[i].handle)))
    }

    /// Records what a request returned: a new block of `owner` (checked: aligned, zeroed if
    /// asked, disjoint from every live block; then filled with its pattern), or a refusal
    /// (checked against `expect`, counted).
    #[allow(clippy::too_many_arguments)] // the block, what it must be, and whose
    fn record_alloc(
        &mut self,
        owner: usize,
        p: *mut c_void,
        size: usize,
        align: usize,
        zero: bool,
        persist: bool,
        expect: Expect,
        what: &dyn core::fmt::Debug,
    ) {
        let p = p.cast::<u8>();
        expect.check(!p.is_null(), what);
        if p.is_null() {
            self.heaps[owner].failed += 1;
            return;
        }
        let extra = Extra { align, persist };
        // SAFETY: a fresh block of `size` bytes from the library.
        let b = unsafe { self.book.add(p, size, resolve(size, align), zero, owner, extra, what) };
        self.heaps.count(b);
    }

    /// Forgets block `bi` after the library freed it (its contents were verified before).
    fn forget(&mut self, bi: usize) {
        let b = self.book.remove(bi);
        self.heaps.uncount(&b);
    }

    /// Forgets every block for which `dead` holds (the library freed them at once).
    fn bury(&mut self, dead: impl Fn(&Block) -> bool) {
        self.heaps.bury(&mut self.book, dead);
    }

    // ---- operations ----

    fn create_arena(&mut self, parent: u8, initial: u16, limit: u8, ex: bool) {
        const LIMITS: [usize; 6] = [0, 0, 4096, 65536, 1 << 20, 8 << 20];
        let initial = initial as usize;
        let limit = LIMITS[limit as usize % LIMITS.len()];
        let (p, raw_parent) = if ex { self.pick_parent(parent) } else { (BUILTIN, ptr::null_mut()) };
        let raw = if ex {
            // SAFETY: the parent is live (or null: the current allocator) and outlives the
            // arena (the model destroys dependents first).
            unsafe { goo_arena_allocator_create_ex(raw_parent, initial, limit) }
        } else {
            goo_arena_allocator_create(initial)
        };
        assert!(!raw.is_null(), "arena creation failed");
        let mut h = Heap::new(raw, Kind::Arena, p);
        h.limit = if ex { limit } else { 0 };
        self.heaps.add(h);
    }

    fn create_pool(&mut self, op: &Op) {
        let Op::CreatePool { parent, object_size, align, per_block, max_objects, api } = *op else {
            unreachable!()
        };
        let mut pp = PoolParams::new(object_size, align, per_block, max_objects);
        let (p, raw) = match api % 3 {
            0 => {
                // The spec's call: natural alignment, no cap, over the built-in.
                (pp.align, pp.max_objects) = (0, 0);
                (BUILTIN, goo_pool_allocator_create(pp.object_size, pp.per_block))
            }
            1 => {
                let (p, rp) = self.pick_parent(parent);
                let PoolParams { object_size, align, per_block, max_objects } = pp;
                // SAFETY: the parent is live and outlives the pool.
                (p, unsafe { goo_pool_allocator_create_ex(rp, object_size, align, per_block, max_objects) })
            }
            _ => {
                let (p, rp) = self.pick_parent(parent);
                let o = PoolOptions {
                    parent: rp,
                    object_size: pp.object_size,
                    alignment: pp.align,
                    objects_per_block: pp.per_block,
                    max_objects: pp.max_objects,
                    check: u32::from(api / 3 % 3),
                };
                // SAFETY: valid options; the parent is live and outlives the pool.
                (p, unsafe { goo_pool_allocator_create_opts(&o) })
            }
        };
        pp.check_made(!raw.is_null());
        if !raw.is_null() {
            let mut h = Heap::new(raw, Kind::Pool, p);
            h.set_pool(&pp);
            self.heaps.add(h);
        }
    }

    fn create_region(&mut self, parent: u8, size: u16, allow_large: bool, ex: bool) {
        let (p, raw) = if ex {
            let (p, rp) = self.pick_parent(parent);
            // SAFETY: the parent is live and outlives the region tree.
            (p, unsafe { goo_region_allocator_create_ex(rp, size as usize, allow_large) })
        } else {
            (BUILTIN, goo_region_allocator_create(size as usize, allow_large))
        };
        assert!(!raw.is_null(), "region creation failed");
        let mut h = Heap::new(raw, Kind::Region, p);
        h.region_size = size as usize;
        h.allow_large = allow_large;
        self.heaps.add(h);
    }

    fn create_child(&mut self, region: u8, size: u16) {
        let Some(r) = self.heaps.pick(region, |h| h.kind == Kind::Region) else { return };
        // SAFETY: a live region of this thread.
        let raw = unsafe { goo_region_create_child(self.heaps[r].handle, size as usize) };
        assert!(!raw.is_null(), "goo_region_create_child of a live region failed");
        self.heaps.add_child(r, raw, size as usize);
    }

    fn scope_begin(&mut self) {
        let parent = self.current();
        let raw = goo_scope_begin();
        assert!(!raw.is_null(), "goo_scope_begin failed");
        assert_eq!(goo_get_thread_allocator(), raw, "a begun scope is the thread allocator");
        let mut h = Heap::new(raw, Kind::Scope, parent);
        h.begun = true;
        let i = self.heaps.add(h);
        self.begun.push(i);
    }

    fn scope_create(&mut self, parent: u8) {
        let (p, rp) = self.pick_parent(parent);
        // SAFETY: the parent is live and outlives the scope.
        let raw = unsafe { goo_scoped_allocator_create(rp) };
        assert!(!raw.is_null(), "goo_scoped_allocator_create failed");
        self.heaps.add(Heap::new(raw, Kind::Scope, p));
    }

    /// A scope ended: its blocks die, its PERSIST blocks become its parent's.
    fn end_scope_model(&mut self, s: usize) {
        self.heaps.gone(&mut self.book, s);
        if let Some(pos) = self.begun.iter().position(|&x| x == s) {
            assert_eq!(pos, self.begun.len() - 1, "a begun scope ended before its inner ones");
            // `check` then finds the thread allocator restored to the next outer one.
            self.begun.pop();
        }
    }

    /// `s->destroy(s)` on a begun scope: the library ends the scopes begun after it first.
    fn destroy_begun_chain(&mut self, s: usize) {
        let pos = self.begun.iter().position(|&x| x == s).expect("a begun scope is on the stack");
        let chain: Vec<usize> = self.begun[pos..].to_vec();
        for &c in &chain {
            for d in self.heaps.dependents(c) {
                if !chain.contains(&d) {
                    self.destroy(d, 0);
                }
            }
        }
        let what = format!("vtable destroy of begun scope {s} with {} inner", chain.len() - 1);
        self.book.verify_where(|b| chain.contains(&b.owner), &what);
        let raw = self.heaps[s].handle;
        // SAFETY: a live scope of this thread; the scopes begun after it (which the library ends
        // first) have no other dependents left.
        unsafe { ((*raw).destroy.expect("a scope has a destroy function"))(raw) };
        for &c in chain.iter().rev() {
            self.end_scope_model(c);
        }
    }

    fn alloc(&mut self, op: &Op) {
        let Op::Alloc { heap, size, align, opts, api } = *op else { unreachable!() };
        let Some(i) = self.heaps.pick(heap, |_| true) else { return };
        let size = size.get();
        if !self.room(size) {
            return;
        }
        let raw = self.heaps[i].handle;
        let (p, align, o) = if api % 2 == 0 {
            // Natural alignment, no options.
            // SAFETY: a live allocator.
            (unsafe { goo_memory_alloc_with(raw, size) }, 0, 0)
        } else {
            let (align, o) = (align.get(), options(opts, true));
            // SAFETY: a live allocator.
            (unsafe { goo_memory_alloc_ex(raw, size, align, AllocOptions(o)) }, align, o)
        };
        let owner = if o & TEMP != 0 { TEMP_HEAP } else { i };
        self.record_request(owner, p, size, align, o, op);
    }

    /// [`Model::record_alloc`] for a request made with options `o` to `owner` (after TEMP went
    /// to the temporary arena): a PERSIST request to a scope is served by its parent.
    fn record_request(
        &mut self,
        owner: usize,
        p: *mut c_void,
        size: usize,
        align: usize,
        o: u32,
        what: &dyn core::fmt::Debug,
    ) {
        let persist = o & PERSIST != 0 && self.heaps[owner].kind == Kind::Scope;
        let expect = self.heaps.expect_request(owner, size, align, persist);
        self.record_alloc(owner, p, size, align, o & ZERO != 0, persist, expect, what);
    }

    fn alloc_array(&mut self, op: &Op) {
        let Op::AllocArray { heap, count, elem, align, opts } = *op else { unreachable!() };
        const COUNTS: [usize; 10] = [0, 1, 2, 3, 7, 16, 100, 1000, usize::MAX / 2 + 1, usize::MAX];
        let Some(i) = self.heaps.pick(heap, |_| true) else { return };
        let (count, elem, align) = (COUNTS[count as usize % COUNTS.len()], elem.get(), align.get());
        let size = count.checked_mul(elem);
        if !self.room(size.unwrap_or(HUGE)) {
            return;
        }
        let o = options(opts, true);
        // SAFETY: a live allocator.
        let p = unsafe { goo_memory_alloc_array(self.heaps[i].handle, count, elem, align, AllocOptions(o)) };
        let owner = if o & TEMP != 0 { TEMP_HEAP } else { i };
        let Some(size) = size else {
            // An overflowing product fails (memory.h), counted.
            return self.record_alloc(owner, p, 0, align, false, false, Expect::Fail, op);
        };
        self.record_request(owner, p, size, align, o, op);
    }

    fn alloc_current(&mut self, op: &Op) {
        let Op::AllocCurrent { size, align, api } = *op else { unreachable!() };
        let (size, align) = (size.get(), align.get());
        if !self.room(size) {
            return;
        }
        let owner = self.current();
        // SAFETY: the current allocator is the built-in or a live begun scope.
        let (p, align, zero) = unsafe {
            match api % 3 {
                0 => (goo_memory_alloc(size), 0, false),
                1 => (goo_memory_alloc_zeroed(size), 0, true),
                _ => (goo_memory_alloc_aligned(size, align), align, false),
            }
        };
        let expect = self.heaps.expect_alloc(owner, size, align);
        self.record_alloc(owner, p, size, align, zero, false, expect, op);
    }

    fn temp_alloc(&mut self, size: Size) {
        let size = size.get();
        if !self.room(size) {
            return;
        }
        let p = goo_temp_alloc(size);
        let expect = self.heaps.expect_alloc(TEMP_HEAP, size, 0);
        self.record_alloc(TEMP_HEAP, p, size, 0, false, false, expect, &("goo_temp_alloc", size));
    }

    fn realloc(&mut self, op: &Op) {
        let Op::Realloc { block, size, opts, api } = *op else { unreachable!() };
        if self.book.is_empty() {
            return;
        }
        let bi = block as usize % self.book.len();
        let b = self.book.blocks[bi].clone();
        let (p, old, align) = (b.p.cast(), b.size, b.extra.align);
        let new = size.get();
        if new > old && !self.room(new - old) {
            return;
        }
        self.book.verify(bi, op);
        let o = options(opts, false);
        let raw = self.heaps[b.owner].handle;
        let current = b.owner == self.current() && !b.extra.persist;
        // SAFETY: a live block of `raw` with this size and alignment.
        let (q, o) = unsafe {
            match api % 3 {
                0 if align == 0 => (goo_memory_realloc_with(raw, p, old, new), 0),
                1 if current && align == 0 => (goo_memory_realloc(p, old, new), 0),
                _ => (goo_memory_realloc_ex(raw, p, old, new, align, AllocOptions(o)), o),
            }
        };
        let expect = self.expect_realloc(&b, new);
        let owner_kind = self.heaps[b.owner].kind;
        if old == 0 {
            // `old_size` 0 allocates (memory.h), unless `new_size` is 0 too: then NULL, nothing
            // allocated. The zero-size block itself needs no free.
            self.forget(bi);
            if new == 0 {
                assert!(q.is_null(), "realloc of no block to 0 returned {q:p}: {op:?}");
                return;
            }
            return self.record_request(b.owner, q, new, align, o, op);
        }
        if new == 0 {
            // Frees and returns null.
            assert!(q.is_null(), "realloc to 0 returned {q:p}: {op:?}");
            return self.forget(bi);
        }
        expect.check(!q.is_null(), op);
        if q.is_null() {
            // Refused: the block is untouched.
            self.book.verify(bi, op);
            self.heaps[b.owner].failed += 1;
            return;
        }
        if owner_kind == Kind::Pool {
            assert_eq!(q, p, "a pool realloc within the object size stays in place: {op:?}");
        }
        // SAFETY: the library resized block `bi` to `new` bytes at `q`.
        unsafe { self.book.resized(bi, q.cast(), new, resolve(new, align), o & ZERO != 0, op) };
        let h = &mut self.heaps[b.owner];
        h.bytes = h.bytes - old + new;
    }

    fn mark(&mut self, heap: u8) {
        let Some(i) = self.heaps.pick(heap, |h| matches!(h.kind, Kind::Arena | Kind::Temp)) else { return };
        let mark = if i == TEMP_HEAP {
            goo_temp_mark()
        } else {
            // SAFETY: a live arena.
            unsafe { goo_arena_mark(self.heaps[i].handle) }
        };
        let h = &mut self.heaps[i];
        h.marks.taken(mark, self.book.seq, h.expected());
    }

    fn rewind(&mut self, heap: u8, which: u8) {
        let Some(i) = self.heaps.pick(heap, |h| matches!(h.kind, Kind::Arena | Kind::Temp)) else { return };
        self.heaps.rewind(&mut self.book, i, which, |&raw, mark| {
            if i == TEMP_HEAP {
                goo_temp_rewind(mark)
            } else {
                // SAFETY: a live arena; blocks allocated after the mark are not used afterwards.
                unsafe { goo_arena_rewind(raw, mark) }
            }
        });
    }

    fn add_cleanup(&mut self, region: u8) {
        let Some(r) = self.heaps.pick(region, |h| h.kind == Kind::Region) else { return };
        let token = self.next_token;
        self.next_token += 1;
        // SAFETY: `record_cleanup` takes any token, on this thread.
        let id = unsafe {
            goo_region_add_cleanup(self.heaps[r].handle, Some(record_cleanup), token as usize as *mut c_void)
        };
        assert_ne!(id, 0, "goo_region_add_cleanup of a live region");
        self.heaps[r].cleanup_added(id, token);
    }

    fn remove_cleanup(&mut self, region: u8, which: u8) {
        let Some(r) = self.heaps.pick(region, |h| h.kind == Kind::Region) else { return };
        if which != 255 && which & 0x80 != 0 {
            // An id another region issued: ids are unique in the process, so region `r` has no
            // cleanup by it, and the other region's stays registered.
            let other = (0..self.heaps.len()).filter(|&j| j != r).find_map(|j| {
                self.heaps[j].issued.get((which & 0x7f) as usize % self.heaps[j].issued.len().max(1))
            });
            if let Some(&id) = other {
                // SAFETY: a live region of this thread.
                let removed = unsafe { goo_region_remove_cleanup(self.heaps[r].handle, id) };
                assert!(!removed, "goo_region_remove_cleanup({id}) removed another region's cleanup");
                return;
            }
        }
        let h = &mut self.heaps[r];
        // An id never issued, or one issued (perhaps run or removed since).
        let (id, registered) =
            if which == 255 { Some((u64::MAX, false)) } else { h.cleanup_cancelled(which) }
                .unwrap_or((u64::MAX, false));
        // SAFETY: a live region of this thread.
        let removed = unsafe { goo_region_remove_cleanup(h.handle, id) };
        assert_eq!(removed, registered, "goo_region_remove_cleanup({id})");
    }

    fn report(&mut self, region: u8, len: u8) {
        let Some(r) = self.heaps.pick(region, |h| h.kind == Kind::Region) else { return };
        let raw = self.heaps[r].handle;
        // SAFETY: a NUL-terminated name.
        assert!(unsafe { goo_region_set_name(raw, c"fuzz".as_ptr()) });
        let len = len as usize;
        let mut buf = vec![0xffu8; len];
        // SAFETY: `buf` holds `len` bytes.
        let n = unsafe { goo_region_report(raw, buf.as_mut_ptr().cast(), len) };
        assert!(n > 0, "an empty report of a live region");
        if len > 0 {
            let end = n.min(len - 1);
            assert_eq!(buf[end], 0, "the report is NUL-terminated at {end}");
            assert!(!buf[..end].contains(&0), "the report holds no NUL");
        }
    }

    /// A call the headers say is refused or does nothing, on an allocator of the wrong kind.
    fn misuse(&mut self, heap: u8, other: u8, what: u8) {
        let Some(i) = self.heaps.pick(heap, |_| true) else { return };
        let (raw, kind) = (self.heaps[i].handle, self.heaps[i].kind);
        // The temporary arena is an arena to every arena call.
        let arena = matches!(kind, Kind::Arena | Kind::Temp);
        let before = stats(raw);
        // SAFETY: every pointer passed is a live allocator; the calls refuse wrong kinds.
        unsafe {
            match what % 12 {
                0 if !arena => assert!(!goo_arena_allocator_reset(raw)),
                1 if kind != Kind::Pool => assert!(!goo_pool_allocator_reset(raw)),
                2 if !arena => assert_eq!(goo_arena_allocator_chunk_count(raw), 0),
                3 if !arena => {
                    let Some(a) = self.heaps.pick(other, |h| h.kind == Kind::Arena) else { return };
                    let m = goo_arena_mark(raw);
                    assert!(!goo_arena_rewind(self.heaps[a].handle, m), "a non-arena's mark was accepted");
                }
                4 if kind != Kind::Pool => {
                    let mut s = PoolStats::default();
                    assert!(!goo_pool_allocator_get_stats(raw, &mut s));
                }
                5 if kind != Kind::Scope => {
                    assert_eq!((goo_scope_live_count(raw), goo_scope_live_bytes(raw)), (0, 0));
                }
                6 if kind != Kind::Scope => assert!(!goo_scope_end(raw)),
                7 if kind != Kind::Region => {
                    assert!(goo_region_create_child(raw, 0).is_null());
                    assert!(!goo_region_allocator_reset(raw));
                }
                8 => {
                    if !arena {
                        goo_arena_allocator_destroy(raw);
                    }
                    if kind != Kind::Pool {
                        goo_pool_allocator_destroy(raw);
                    }
                }
                9 if kind == Kind::Scope && self.heaps[i].begun && self.begun.last() != Some(&i) => {
                    assert!(!goo_scope_end(raw), "an outer scope ended before its inner ones");
                }
                10 if kind == Kind::Arena => {
                    // A mark of another arena, naming a chunk that arena still holds.
                    let Some(a) = self.heaps.pick(other, |h| h.kind == Kind::Arena) else { return };
                    let Some(r) = self.heaps[a].marks.plan(other) else { return };
                    if a != i && r.expect == Some(true) && names_a_chunk(&r.mark) {
                        assert!(!goo_arena_rewind(raw, r.mark), "another arena's mark was accepted");
                    }
                }
                11 if kind == Kind::Region => {
                    assert_eq!(goo_region_add_cleanup(raw, None, ptr::null_mut()), 0);
                }
                _ => return,
            }
        }
        assert_eq!(stats(raw), before, "a refused call changed the stats");
    }

    fn apply(&mut self, op: &Op) {
        match *op {
            Op::CreateSystem if self.heaps.made() < MAX_HEAPS => {
                let raw = goo_system_allocator_create();
                assert!(!raw.is_null());
                self.heaps.add(Heap::new(raw, Kind::System, usize::MAX));
            }
            Op::CreateArena { parent, initial, limit, ex } if self.heaps.made() < MAX_HEAPS => {
                self.create_arena(parent, initial, limit, ex)
            }
            Op::CreatePool { .. } if self.heaps.made() < MAX_HEAPS => self.create_pool(op),
            Op::CreateRegion { parent, size, allow_large, ex } if self.heaps.made() < MAX_HEAPS => {
                self.create_region(parent, size, allow_large, ex)
            }
            Op::CreateChild { region, size } if self.heaps.made() < MAX_HEAPS => {
                self.create_child(region, size)
            }
            Op::ScopeBegin if self.heaps.made() < MAX_HEAPS => self.scope_begin(),
            Op::ScopeCreate { parent } if self.heaps.made() < MAX_HEAPS => self.scope_create(parent),
            Op::Destroy { heap, how } => {
                if let Some(i) = self.heaps.pick(heap, |h| !matches!(h.kind, Kind::Builtin | Kind::Temp)) {
                    self.destroy(i, how);
                }
            }
            Op::Reset { heap } => {
                if let Some(i) = self
                    .heaps
                    .pick(heap, |h| matches!(h.kind, Kind::Arena | Kind::Pool | Kind::Region | Kind::Temp))
                {
                    self.reset(i);
                }
            }
            Op::Alloc { .. } => self.alloc(op),
            Op::AllocArray { .. } => self.alloc_array(op),
            Op::AllocCurrent { .. } => self.alloc_current(op),
            Op::TempAlloc { size } => self.temp_alloc(size),
            Op::Free { block, api } => {
                if !self.book.is_empty() {
                    let bi = block as usize % self.book.len();
                    self.free_block(bi, api, op);
                }
            }
            Op::Realloc { .. } => self.realloc(op),
            Op::Mark { heap } => self.mark(heap),
            Op::Rewind { heap, mark } => self.rewind(heap, mark),
            Op::AddCleanup { region } => self.add_cleanup(region),
            Op::RemoveCleanup { region, which } => self.remove_cleanup(region, which),
            Op::Report { region, len } => self.report(region, len),
            Op::Misuse { heap, other, what } => self.misuse(heap, other, what),
            _ => {}
        }
    }

    // ---- checks ----

    /// Every live allocator's stats and invariants against the model; every block's edges.
    fn check(&self, op: &dyn core::fmt::Debug) {
        model::check(self, op);
        let top = self.begun.last().map_or(ptr::null_mut(), |&s| self.heaps[s].handle);
        assert_eq!(goo_get_thread_allocator(), top, "the thread allocator is the innermost begun scope");
    }
}

impl Target for Model {
    type Handle = *mut GooAllocator;
    type Cleanup = u64;
    type Extra = Extra;

    fn parts(&self) -> Parts<'_, *mut GooAllocator, u64, Extra> {
        (&self.heaps, &self.book, &self.baseline)
    }

    fn stats(&self, i: usize) -> AllocStats {
        stats(self.heaps[i].handle)
    }

    fn check_heap(&self, i: usize, op: &dyn core::fmt::Debug) {
        let h = &self.heaps[i];
        let s = stats(h.handle);
        let what = || format!("{:?} {i} after {op:?}", h.kind);
        // SAFETY: a live allocator of the kind each check takes.
        let invariants = unsafe {
            match h.kind {
                Kind::Builtin | Kind::System => goo_memory_core::system::check_raw(h.handle),
                Kind::Arena | Kind::Temp => goo_memory_core::arena::check_raw(h.handle),
                Kind::Pool => goo_memory_core::pool::check_raw(h.handle),
                Kind::Region => goo_memory_core::region::check_raw(h.handle),
                Kind::Scope => goo_memory_core::scoped::check_raw(h.handle),
            }
        };
        assert_eq!(invariants, Ok(()), "invariants of {}", what());
        let deps = self.heaps.has_dependents(i);
        match h.kind {
            Kind::Pool => {
                let mut ps = PoolStats::default();
                // SAFETY: a live pool; `ps` is writable.
                assert!(unsafe { goo_pool_allocator_get_stats(h.handle, &mut ps) });
                if !deps {
                    assert_eq!(ps.live_objects, h.count, "pool live objects: {}", what());
                }
                assert!(h.max_objects == 0 || ps.total_objects <= h.max_objects, "pool cap: {}", what());
            }
            Kind::Region => {
                // SAFETY: a live region of this thread.
                let (own, subtree) =
                    unsafe { (goo_region_stats(h.handle), goo_region_subtree_stats(h.handle)) };
                assert_eq!(own, s, "goo_region_stats: {}", what());
                self.heaps.check_subtree(i, &subtree, &what());
            }
            Kind::Scope if !deps => {
                // SAFETY: a live scope.
                let live = unsafe { (goo_scope_live_count(h.handle), goo_scope_live_bytes(h.handle)) };
                assert_eq!(live, scope_live(&self.book, i), "scope live: {}", what());
            }
            _ => {}
        }
    }

    /// Destroys allocator `i`, its dependents first (and, for a region, those of its subtree).
    fn destroy(&mut self, i: usize, how: u8) {
        if !self.heaps[i].live || matches!(self.heaps[i].kind, Kind::Builtin | Kind::Temp) {
            return;
        }
        let kind = self.heaps[i].kind;
        if kind == Kind::Scope && self.heaps[i].begun && how % 3 == 2 {
            return self.destroy_begun_chain(i);
        }
        let owners = if kind == Kind::Region { self.heaps.subtree(i) } else { vec![i] };
        for &o in &owners {
            for d in self.heaps.dependents(o) {
                self.destroy(d, how / 3);
            }
        }
        let what = format!("destroy {kind:?} {i} (how {how})");
        let raw = self.heaps[i].handle;
        match kind {
            Kind::System => {
                // Its blocks go back one by one first: destroying it would leak them.
                while let Some(bi) = self.book.blocks.iter().position(|b| b.owner == i) {
                    self.free_block(bi, how / 3, &what);
                }
            }
            Kind::Scope => {
                // PERSIST blocks survive (they are the parent's); the others die.
                self.book.verify_where(|b| b.owner == i, &what);
            }
            _ => self.book.verify_where(|b| owners.contains(&b.owner), &what),
        }
        let mut expected_cleanups = Vec::new();
        if kind == Kind::Region {
            self.heaps.cleanup_order(i, &mut expected_cleanups);
        }
        // SAFETY: a live allocator of this kind whose dependents are gone; none of its blocks is
        // used afterwards (the model forgets them below).
        unsafe {
            match (kind, how % 2) {
                (Kind::Arena, 0) => goo_arena_allocator_destroy(raw),
                (Kind::Pool, 0) => goo_pool_allocator_destroy(raw),
                (Kind::Region, 0) => goo_region_allocator_destroy(raw),
                (Kind::Scope, 0) => assert!(goo_scope_end(raw), "goo_scope_end refused: {what}"),
                _ => goo_allocator_destroy(raw),
            }
        }
        match kind {
            Kind::Scope => self.end_scope_model(i),
            _ => {
                assert_eq!(cleanups_ran(), expected_cleanups, "region cleanups: {what}");
                for &r in owners.iter().rev() {
                    self.heaps.gone(&mut self.book, r);
                }
            }
        }
    }

    /// Frees block `bi` through the C ABI (verified first), and forgets it.
    fn free_block(&mut self, bi: usize, api: u8, what: &dyn core::fmt::Debug) {
        self.book.verify(bi, what);
        let b = self.book.blocks[bi].clone();
        let (p, size, align) = (b.p.cast(), b.size, b.extra.align);
        let raw = self.heaps[b.owner].handle;
        let current = b.owner == self.current() && !b.extra.persist;
        // SAFETY: a live block of `raw` with this size and alignment, not used afterwards.
        unsafe {
            match api % 3 {
                0 if align == 0 => goo_memory_free_with(raw, p, size),
                1 if current && align == 0 => goo_memory_free(p, size),
                1 if current => goo_memory_free_aligned(p, size, align),
                _ => goo_memory_free_ex(raw, p, size, align),
            }
        }
        self.forget(bi);
    }

    fn reset(&mut self, i: usize) {
        let kind = self.heaps[i].kind;
        let owners = if kind == Kind::Region { self.heaps.subtree(i) } else { vec![i] };
        for &o in &owners {
            for d in self.heaps.dependents(o) {
                self.destroy(d, 0);
            }
        }
        let what = format!("reset {kind:?} {i}");
        self.book.verify_where(|b| owners.contains(&b.owner), &what);
        let raw = self.heaps[i].handle;
        let mut expected_cleanups = Vec::new();
        // SAFETY: a live allocator of this kind with no dependents; its blocks die (below).
        let ok = unsafe {
            match kind {
                Kind::Arena => goo_arena_allocator_reset(raw),
                Kind::Pool => goo_pool_allocator_reset(raw),
                Kind::Temp => {
                    goo_temp_reset();
                    true
                }
                Kind::Region => {
                    self.heaps.cleanup_order(i, &mut expected_cleanups);
                    goo_region_allocator_reset(raw)
                }
                _ => return,
            }
        };
        assert!(ok, "{what} refused");
        assert_eq!(cleanups_ran(), expected_cleanups, "region cleanups: {what}");
        self.bury(|b| owners.contains(&b.owner));
        for &o in &owners {
            self.heaps[o].reset();
        }
    }
}

fuzz_target!(|ops: Vec<Op>| {
    let mut m = Model::new();
    for op in ops.iter().take(MAX_OPS) {
        m.apply(op);
        m.check(op);
    }
    model::teardown(&mut m);
    assert!(m.begun.is_empty() && goo_get_thread_allocator().is_null(), "a scope left begun");
});
