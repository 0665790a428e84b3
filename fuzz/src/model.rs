//! The allocator side of both models: every allocator a target made (through whatever handle
//! the target holds, `H`), what the model counts for it, who serves its memory, and what the
//! headers say a request to it may do; and the ties between them and the blocks of a [`Book`].

use core::ops::{Deref, DerefMut};

use goo_memory_core::arena::Mark;
use goo_memory_core::AllocStats;

use crate::{
    bad_align, natural, pool_expect, region_expect, Align, Book, Expect, Marks, Size, Tracked, HUGE,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// The built-in default allocator.
    Builtin,
    /// The thread's temporary arena.
    Temp,
    System,
    Arena,
    Pool,
    Region,
    Scope,
}

/// Where the built-in and the temporary arena sit in every model.
pub const BUILTIN: usize = 0;
pub const TEMP: usize = 1;
/// The parent of the built-in.
pub const NO_PARENT: usize = usize::MAX;

/// What a model keeps of a block besides its place and pattern, as the allocator side needs it.
pub trait BlockExtra: Clone {
    /// The bytes the front door counted for the block, `size` bytes as the model sees it (0: a
    /// zero-size block, not counted).
    fn counted(&self, size: usize) -> usize;
    /// A scope's PERSIST block: its parent's memory, surviving the scope.
    fn persist(&self) -> bool;
    fn unpersist(&mut self);
}

/// An allocator as a model knows it.
pub struct Heap<H, C> {
    pub handle: H,
    pub kind: Kind,
    pub live: bool,
    /// Where it takes its memory from (an index); [`NO_PARENT`] for the built-in.
    pub parent: usize,
    /// The live bytes and blocks the front door counts for it, and its refusals.
    pub bytes: usize,
    pub count: usize,
    pub failed: usize,
    /// Its failure count is not the model's: it served other allocators' memory (their
    /// refusals count here too), or refuses without counting.
    pub failures_inexact: bool,
    /// How far the library's live counts are above the model's after rewinds (see [`Marks`]).
    pub offset: (usize, usize),
    /// Its front-door stats are counted (arenas and pools may turn them off).
    pub tracked: bool,
    // Arenas.
    pub limit: usize,
    pub marks: Marks<Mark>,
    // Pools: the object size, the alignment every request up to it may ask for, the cap.
    pub object_size: usize,
    pub pool_align: usize,
    pub max_objects: usize,
    // Regions.
    pub region_parent: Option<usize>,
    pub children: Vec<usize>,
    pub region_size: usize,
    pub allow_large: bool,
    /// Registered cleanups (id, token), in registration order; every id ever issued.
    pub cleanups: Vec<(C, u64)>,
    pub issued: Vec<C>,
    /// A scope installed as the thread's allocator (begun, or run).
    pub begun: bool,
}

impl<H, C> Heap<H, C> {
    pub fn new(handle: H, kind: Kind, parent: usize) -> Self {
        Heap {
            handle,
            kind,
            live: true,
            parent,
            bytes: 0,
            count: 0,
            failed: 0,
            failures_inexact: false,
            offset: (0, 0),
            tracked: true,
            limit: 0,
            marks: Marks::default(),
            object_size: 0,
            pool_align: 0,
            max_objects: 0,
            region_parent: None,
            children: Vec::new(),
            region_size: 0,
            allow_large: true,
            cleanups: Vec::new(),
            issued: Vec::new(),
            begun: false,
        }
    }

    /// The live bytes and blocks its stats show, by the model.
    pub fn expected(&self) -> (usize, usize) {
        if self.tracked {
            (self.bytes + self.offset.0, self.count + self.offset.1)
        } else {
            (0, 0)
        }
    }

    /// A rewind left its live counts at `after` (see [`Marks::rewound`]).
    pub fn rewound_to(&mut self, after: (usize, usize), what: &dyn core::fmt::Debug) {
        if self.tracked {
            assert!(
                after.0 >= self.bytes && after.1 >= self.count,
                "{what:?}: the stats fell below the live blocks"
            );
            self.offset = (after.0 - self.bytes, after.1 - self.count);
        }
    }

    /// A pool made with `p`.
    pub fn set_pool(&mut self, p: &PoolParams) {
        self.object_size = p.object_size;
        self.pool_align = p.align.max(natural(p.object_size));
        self.max_objects = p.max_objects;
    }

    /// A cleanup registered as `id`, running `token`.
    pub fn cleanup_added(&mut self, id: C, token: u64)
    where
        C: PartialEq + Copy + core::fmt::Debug,
    {
        assert!(!self.issued.contains(&id), "cleanup id {id:?} issued twice");
        self.cleanups.push((id, token));
        self.issued.push(id);
    }

    /// The `which`-th cleanup id ever issued (cyclically), if any, and whether it is still
    /// registered (not run, not cancelled): what cancelling it must return. The model forgets it.
    pub fn cleanup_cancelled(&mut self, which: u8) -> Option<(C, bool)>
    where
        C: PartialEq + Copy,
    {
        let id = *self.issued.get(which as usize % self.issued.len().max(1))?;
        let registered = self.cleanups.iter().any(|&(c, _)| c == id);
        self.cleanups.retain(|&(c, _)| c != id);
        Some((id, registered))
    }

    /// A reset: no block, no cleanup, no mark is left; the stats are exact again.
    pub fn reset(&mut self) {
        self.cleanups.clear();
        self.marks.reset();
        self.offset = (0, 0);
    }
}

/// Every allocator of a model: the built-in first, then the temporary arena, then those the
/// operations made (dead ones stay, so indices are stable).
pub struct Heaps<H, C>(Vec<Heap<H, C>>);

impl<H, C> Deref for Heaps<H, C> {
    type Target = Vec<Heap<H, C>>;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl<H, C> DerefMut for Heaps<H, C> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

impl<H, C> Heaps<H, C> {
    pub fn new(builtin: H, temp: H) -> Self {
        Heaps(vec![Heap::new(builtin, Kind::Builtin, NO_PARENT), Heap::new(temp, Kind::Temp, BUILTIN)])
    }

    /// Adds an allocator; its parent now serves other allocators' memory.
    pub fn add(&mut self, h: Heap<H, C>) -> usize {
        if h.parent != NO_PARENT {
            self.0[h.parent].failures_inexact = true;
        }
        self.0.push(h);
        self.0.len() - 1
    }

    /// Adds a child of region `r` (region_size 0 = the parent's), taking memory from where the
    /// parent does.
    pub fn add_child(&mut self, r: usize, handle: H, region_size: usize) -> usize {
        let p = &self.0[r];
        let mut h = Heap::new(handle, Kind::Region, p.parent);
        h.region_size = if region_size == 0 { p.region_size } else { region_size };
        h.allow_large = p.allow_large;
        h.region_parent = Some(r);
        let c = self.add(h);
        self.0[r].children.push(c);
        c
    }

    /// Live allocators the operations made.
    pub fn made(&self) -> usize {
        self.0.iter().filter(|h| h.live).count() - 2
    }

    /// The `sel`-th live allocator (cyclically) for which `f` holds.
    pub fn pick(&self, sel: u8, f: impl Fn(&Heap<H, C>) -> bool) -> Option<usize> {
        let c: Vec<usize> = (0..self.0.len()).filter(|&i| self.0[i].live && f(&self.0[i])).collect();
        (!c.is_empty()).then(|| c[sel as usize % c.len()])
    }

    /// The live allocators whose memory `i` serves.
    pub fn dependents(&self, i: usize) -> Vec<usize> {
        (0..self.0.len()).filter(|&j| j != i && self.0[j].live && self.0[j].parent == i).collect()
    }

    pub fn has_dependents(&self, i: usize) -> bool {
        self.0.iter().enumerate().any(|(j, h)| j != i && h.live && h.parent == i)
    }

    /// The region `r` and its descendants, parents before children, children in creation order.
    pub fn subtree(&self, r: usize) -> Vec<usize> {
        let mut out = vec![r];
        let mut k = 0;
        while k < out.len() {
            out.extend(self.0[out[k]].children.iter().copied());
            k += 1;
        }
        out
    }

    /// The cleanups a reset or destroy of region `r` runs, in the order region.h gives:
    /// children first (depth first, in creation order), then the region's own, newest first.
    pub fn cleanup_order(&self, r: usize, out: &mut Vec<u64>) {
        for &c in &self.0[r].children {
            self.cleanup_order(c, out);
        }
        out.extend(self.0[r].cleanups.iter().rev().map(|&(_, token)| token));
    }

    /// Whether `i`, as a parent, may refuse a request for memory: a pool, a region without
    /// large allocations, a limited arena, or one above them.
    pub fn may_refuse(&self, i: usize) -> bool {
        let h = &self.0[i];
        match h.kind {
            Kind::Builtin | Kind::System | Kind::Temp => false,
            Kind::Pool => true,
            Kind::Arena => h.limit != 0 || self.may_refuse(h.parent),
            Kind::Region => !h.allow_large || self.may_refuse(h.parent),
            Kind::Scope => self.may_refuse(h.parent),
        }
    }

    /// What the memory behind `i` may do when `i` needs more.
    pub fn chain(&self, i: usize) -> Expect {
        let parent = self.0[i].parent;
        if parent != NO_PARENT && self.may_refuse(parent) {
            Expect::MayFail
        } else {
            Expect::Succeed
        }
    }

    /// What a request of `size` bytes at `align` (0 = natural) to allocator `i` may do.
    pub fn expect_alloc(&self, i: usize, size: usize, align: usize) -> Expect {
        if bad_align(align) {
            return Expect::Fail;
        }
        if size == 0 {
            return Expect::Succeed;
        }
        if size >= HUGE {
            return Expect::Fail;
        }
        let h = &self.0[i];
        match h.kind {
            Kind::Builtin | Kind::System | Kind::Temp => Expect::Succeed,
            Kind::Arena if h.limit != 0 => Expect::MayFail,
            Kind::Arena | Kind::Scope => self.chain(i),
            Kind::Pool => {
                // Objects used by dependents: the model cannot tell the cap.
                let deps = self.has_dependents(i);
                let chain = if deps { Expect::MayFail } else { self.chain(i) };
                let at_cap = !deps && h.max_objects != 0 && h.count >= h.max_objects;
                pool_expect(size, align, h.object_size, h.pool_align, at_cap, chain)
            }
            Kind::Region => region_expect(size, align, h.region_size, h.allow_large, self.chain(i)),
        }
    }

    /// What a PERSIST request to scope `i` (or any other request, to another allocator) may do.
    pub fn expect_request(&self, i: usize, size: usize, align: usize, persist: bool) -> Expect {
        let e = self.expect_alloc(i, size, align);
        if persist && self.0[i].kind == Kind::Scope && e != Expect::Fail {
            e.and(self.expect_alloc(self.0[i].parent, size, align))
        } else {
            e
        }
    }

    /// A new block of its owner: counted.
    pub fn count<X: BlockExtra>(&mut self, b: &Tracked<X>) {
        let counted = b.extra.counted(b.size);
        if counted > 0 {
            let h = &mut self.0[b.owner];
            h.bytes += counted;
            h.count += 1;
        }
    }

    /// A block the library freed: off its owner's counts.
    pub fn uncount<X: BlockExtra>(&mut self, b: &Tracked<X>) {
        let counted = b.extra.counted(b.size);
        if counted > 0 {
            let h = &mut self.0[b.owner];
            h.bytes -= counted;
            h.count -= 1;
        }
    }

    /// Forgets every block for which `dead` holds (the library freed them at once).
    pub fn bury<X: BlockExtra>(&mut self, book: &mut Book<X>, dead: impl Fn(&Tracked<X>) -> bool) {
        for b in book.remove_where(dead) {
            self.uncount(&b);
        }
    }

    /// Allocator `i` is gone: its blocks with it, but a scope's PERSIST blocks, now its
    /// parent's; a region is detached from its parent.
    pub fn gone<X: BlockExtra>(&mut self, book: &mut Book<X>, i: usize) {
        let parent = self.0[i].parent;
        for b in book.blocks.iter_mut().filter(|b| b.owner == i && b.extra.persist()) {
            self.uncount(b);
            b.owner = parent;
            b.extra.unpersist();
            self.count(b);
        }
        self.bury(book, |b| b.owner == i);
        self.0[i].live = false;
        if let Some(p) = self.0[i].region_parent {
            self.0[p].children.retain(|&c| c != i);
        }
    }

    /// A rewind of arena `i` to its `which`-th mark (see [`Marks::plan`]) by `rewind`, the
    /// library's call: checks whether it was accepted, verifies and forgets the blocks it
    /// freed, follows the stats.
    pub fn rewind<X: BlockExtra>(
        &mut self,
        book: &mut Book<X>,
        i: usize,
        which: u8,
        rewind: impl FnOnce(&H, Mark) -> bool,
    ) {
        let h = &self.0[i];
        let Some(r) = h.marks.plan(which) else { return };
        let what = format!("rewind {:?} {i} to mark {which} (expected {:?})", h.kind, r.expect);
        if r.expect != Some(false) {
            book.verify_where(|b| b.owner == i && b.seq > r.seq, &what);
        }
        let before = h.expected();
        let ok = rewind(&h.handle, r.mark);
        assert!(r.expect.is_none_or(|e| e == ok), "{what}: returned {ok}");
        if ok {
            self.bury(book, |b| b.owner == i && b.seq > r.seq);
            let h = &mut self.0[i];
            let after = h.marks.rewound(&r, before);
            h.rewound_to(after, &what);
        }
    }

    /// What every allocator holds now: the built-in's growth since `base`, plus the system
    /// allocators' live bytes (everything else takes its memory from one of them).
    pub fn footprint(&self, base: &AllocStats, stats: impl Fn(usize) -> AllocStats) -> usize {
        let b = stats(BUILTIN).bytes_allocated.saturating_sub(base.bytes_allocated);
        let s: usize = (0..self.0.len())
            .filter(|&i| self.0[i].live && self.0[i].kind == Kind::System)
            .map(|i| stats(i).bytes_allocated)
            .sum();
        b + s
    }

    /// Allocator `i`'s stats `s` against the model: its live bytes and blocks (at least the
    /// model's while it serves others), its failures, the counters' own equations.
    pub fn check_counts<X: BlockExtra>(
        &self,
        i: usize,
        s: &AllocStats,
        book: &Book<X>,
        what: &dyn core::fmt::Debug,
    ) {
        let h = &self.0[i];
        let ctx = || {
            let (kind, count, bytes, offset) = (h.kind, h.count, h.bytes, h.offset);
            format!("{kind:?} {i} after {what:?}: library {s:?}, model {count} blocks {bytes} bytes, offset {offset:?}")
        };
        assert_eq!(s.total_allocations.wrapping_sub(s.total_frees), s.allocation_count, "{}", ctx());
        assert!(s.max_bytes_allocated >= s.bytes_allocated, "{}", ctx());
        let expected = h.expected();
        if self.has_dependents(i) {
            assert!(s.bytes_allocated >= expected.0 && s.allocation_count >= expected.1, "{}", ctx());
        } else {
            assert_eq!((s.bytes_allocated, s.allocation_count), expected, "{}", ctx());
        }
        if h.offset == (0, 0) {
            // At least what was handed out, but a scope's PERSIST blocks: the parent holds them.
            let persisted: usize =
                book.blocks.iter().filter(|b| b.owner == i && b.extra.persist()).map(|b| b.size).sum();
            assert!(
                s.bytes_reserved + persisted >= s.bytes_allocated,
                "bytes_reserved < bytes_allocated: {}",
                ctx()
            );
        }
        if !h.failures_inexact {
            assert_eq!(s.failed_allocations, h.failed, "failures: {}", ctx());
        }
    }

    /// The subtree stats of region `r`, summed field by field, against the model (when no
    /// region of the subtree serves another allocator).
    pub fn check_subtree(&self, r: usize, sub: &AllocStats, what: &dyn core::fmt::Debug) {
        let tree = self.subtree(r);
        if tree.iter().all(|&t| !self.has_dependents(t)) {
            let bytes: usize = tree.iter().map(|&t| self.0[t].bytes).sum();
            let count: usize = tree.iter().map(|&t| self.0[t].count).sum();
            assert_eq!(
                (sub.bytes_allocated, sub.allocation_count),
                (bytes, count),
                "subtree of {r}: {what:?}"
            );
        }
    }
}

/// How a target makes a pool: the object size (past 64 KiB up to the huge ones, which a pool
/// refuses or cannot grow by, cut to 64 KiB), an alignment up to 4 KiB or a bad one, up to 64
/// objects a block (0 = about 4 KiB worth), up to 39 objects (0 = no cap): blocks stay small.
#[derive(Clone, Copy, Debug)]
pub struct PoolParams {
    pub object_size: usize,
    pub align: usize,
    pub per_block: usize,
    pub max_objects: usize,
}

impl PoolParams {
    pub fn new(object_size: Size, align: Align, per_block: u8, max_objects: u8) -> Self {
        let mut object_size = object_size.get();
        if object_size > 65536 && object_size < HUGE {
            object_size = 65536;
        }
        let align = match align {
            Align::Big(n) => Align::Page(n).get(),
            a => a.get(),
        };
        PoolParams {
            object_size,
            align,
            per_block: per_block as usize % 65,
            max_objects: max_objects as usize % 40,
        }
    }

    /// Checks whether the pool was made (pool.h: not for an object size of 0 or a bad
    /// alignment; perhaps not for a huge object size, whose block size may overflow).
    pub fn check_made(&self, made: bool) {
        let refused = self.object_size == 0 || bad_align(self.align);
        if made {
            assert!(!refused, "a pool was made with {self:?}");
        } else {
            assert!(refused || self.object_size >= HUGE, "no pool was made with {self:?}");
        }
    }
}

/// The blocks and bytes scope `i` holds itself (its live blocks but the PERSIST ones): what it
/// reports live, and what ending it frees implicitly.
pub fn scope_live<X: BlockExtra>(book: &Book<X>, i: usize) -> (usize, usize) {
    book.blocks
        .iter()
        .filter(|b| b.owner == i && !b.extra.persist() && b.size > 0)
        .fold((0, 0), |(count, bytes), b| (count + 1, bytes + b.size))
}

/// What a model does its own way, for what both models then do the same way ([`check`],
/// [`teardown`]).
pub trait Target {
    type Handle;
    type Cleanup;
    type Extra: BlockExtra;
    /// The model's allocators, blocks, and what the built-in held when it began.
    fn parts(&self) -> Parts<'_, Self::Handle, Self::Cleanup, Self::Extra>;
    /// Allocator `i`'s stats, as the library reports them.
    fn stats(&self, i: usize) -> AllocStats;
    /// Allocator `i`'s stats and invariants against the model (besides [`Heaps::check_counts`]).
    fn check_heap(&self, i: usize, what: &dyn core::fmt::Debug);
    /// Destroys allocator `i`, its dependents first, the way `how` picks.
    fn destroy(&mut self, i: usize, how: u8);
    /// Frees block `bi` (verified first) the way `how` picks, and forgets it.
    fn free_block(&mut self, bi: usize, how: u8, what: &dyn core::fmt::Debug);
    /// Resets allocator `i` (an arena, a pool, a region without children, the temporary arena).
    fn reset(&mut self, i: usize);
}

/// What [`Target::parts`] gives: a model's allocators, blocks and baseline.
pub type Parts<'a, H, C, X> = (&'a Heaps<H, C>, &'a Book<X>, &'a Baseline);

/// Every live allocator's stats and invariants against the model; every block's edges.
pub fn check<T: Target>(t: &T, what: &dyn core::fmt::Debug) {
    let (heaps, book, _) = t.parts();
    for i in 1..heaps.len() {
        if heaps[i].live {
            heaps.check_counts(i, &t.stats(i), book, what);
            t.check_heap(i, what);
        }
    }
    book.check(what);
}

/// Frees and destroys everything, then checks nothing is left: no block, no cleanup that has
/// not run, nothing in the built-in it did not hold at the start.
pub fn teardown<T: Target>(t: &mut T) {
    for i in (2..t.parts().0.len()).rev() {
        t.destroy(i, i as u8);
    }
    while let Some(bi) = t.parts().1.blocks.iter().position(|b| b.owner == BUILTIN) {
        t.free_block(bi, 0, &"teardown");
    }
    t.reset(TEMP);
    check(t, &"teardown");
    let (_, book, baseline) = t.parts();
    assert!(book.is_empty(), "blocks left after teardown");
    assert!(cleanups_ran().is_empty(), "a cleanup ran outside a reset or destroy");
    baseline.check_back(&t.stats(BUILTIN), t.stats(TEMP).bytes_reserved);
}

/// What the built-in held, and the temporary arena's chunk, when a model began.
pub struct Baseline {
    builtin: AllocStats,
    temp_reserved: usize,
}

impl Baseline {
    /// Taken with the temporary arena holding one chunk (as a reset leaves it).
    pub fn new(builtin: AllocStats, temp_reserved: usize) -> Self {
        Baseline { builtin, temp_reserved }
    }

    /// The built-in's bytes when the model began: what [`Heaps::footprint`] counts from.
    pub fn builtin(&self) -> &AllocStats {
        &self.builtin
    }

    /// After a teardown: everything that came from the built-in (or from a system allocator now
    /// gone) went back. The temporary arena takes its chunks from the library's internal heap,
    /// not the built-in, so the built-in is exactly as it was; the arena holds one chunk as it
    /// did at the start (perhaps another size).
    pub fn check_back(&self, now: &AllocStats, temp_reserved: usize) {
        assert_eq!(now.allocation_count, self.builtin.allocation_count, "built-in blocks leaked: {now:?}");
        assert_eq!(now.bytes_allocated, self.builtin.bytes_allocated, "built-in bytes leaked: {now:?}");
        assert!(temp_reserved > 0 || self.temp_reserved == 0, "the temporary arena lost its chunk");
    }
}

thread_local! {
    /// Tokens of the region cleanups that ran, in order.
    static CLEANUPS_RAN: core::cell::RefCell<Vec<u64>> = const { core::cell::RefCell::new(Vec::new()) };
}

/// A region cleanup ran: the one registered with `token`.
pub fn cleanup_ran(token: u64) {
    CLEANUPS_RAN.with(|l| l.borrow_mut().push(token));
}

/// The tokens of the cleanups that ran since the last call, in order.
pub fn cleanups_ran() -> Vec<u64> {
    CLEANUPS_RAN.with(|l| core::mem::take(&mut *l.borrow_mut()))
}
