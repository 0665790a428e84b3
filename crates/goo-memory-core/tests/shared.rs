//! Allocators that threads share: the shared arena, the shared pool and the locked allocator.
//!
//! - Threads: N threads allocate through the front door, write a pattern into every block, free
//!   some of their own and some of the others' (handed over through a queue); after the join
//!   every live block is disjoint from the others and intact, the stats are exact, the
//!   allocator's invariants hold, and a reset empties it.
//! - Refusals: a reset (mark, rewind, count) while another thread is inside the allocator (held
//!   there by a parent that blocks) is refused and changes nothing; once the thread is out it
//!   succeeds.
//! - Models: random single-thread sequences (with some requests made on another thread, so
//!   other lanes and remote frees take part) against a plain model, `check()` after every step.

mod common;

use std::collections::BTreeMap;
use std::ffi::c_void;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicUsize, Ordering::SeqCst};
use std::sync::{Barrier, Mutex};

use common::Rng;
use goo_memory_core::arena::{Arena, SharedArena};
use goo_memory_core::locked::{self, LockedAllocator};
use goo_memory_core::pool::{PoolConfig, SharedRawPool};
use goo_memory_core::{
    dispatch, shared_arena, shared_pool, AllocOptions, AllocStats, Allocator, GooAllocator,
};
use proptest::prelude::*;

const THREADS: usize = if cfg!(miri) { 2 } else { 4 };
const PER_THREAD: usize = common::ops(3000, 60);

/// A live block and the byte it is filled with.
#[derive(Clone, Copy, Debug)]
struct Block {
    ptr: *mut u8,
    size: usize,
    align: usize,
    fill: u8,
}

// SAFETY: a block is plain memory of the allocator under test, handed between the test's
// threads (which free it once).
unsafe impl Send for Block {}

impl Block {
    fn ptr(self) -> *mut u8 {
        self.ptr
    }

    fn write(self) {
        // SAFETY: a live block of `size` bytes, the test's.
        unsafe { self.ptr().write_bytes(self.fill, self.size) };
    }

    fn intact(self) -> bool {
        // SAFETY: as above.
        unsafe { core::slice::from_raw_parts(self.ptr(), self.size) }.iter().all(|&b| b == self.fill)
    }
}

/// Every block aligned, intact and disjoint from the others.
fn check_blocks(blocks: &[Block]) {
    let mut spans: Vec<(usize, usize)> = Vec::with_capacity(blocks.len());
    for b in blocks {
        assert_eq!(b.ptr.addr() % b.align.max(1), 0, "misaligned: {b:?}");
        assert!(b.intact(), "contents changed: {b:?}");
        spans.push((b.ptr.addr(), b.ptr.addr() + b.size));
    }
    spans.sort_unstable();
    assert!(spans.windows(2).all(|w| w[0].1 <= w[1].0), "blocks overlap");
}

/// What the threads did, summed.
#[derive(Default)]
struct Tally {
    allocs: AtomicUsize,
    frees: AtomicUsize,
}

/// A pointer the test's threads share: the allocator under test, or a block it returned.
struct Shared<T>(*mut T);

impl<T> Clone for Shared<T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for Shared<T> {}

// SAFETY: the allocators shared this way are thread-safe, and the blocks are only passed on.
unsafe impl<T> Send for Shared<T> {}
// SAFETY: as above.
unsafe impl<T> Sync for Shared<T> {}

impl<T> Shared<T> {
    fn get(self) -> *mut T {
        self.0
    }
}

/// `THREADS` threads make `PER_THREAD` requests each of sizes `size(rng)` through `a`'s front
/// door, fill them, free a third of them themselves and hand a third to the next thread to free.
/// Returns the blocks still live.
fn hammer(a: *mut GooAllocator, size: fn(&mut Rng) -> (usize, usize)) -> (Vec<Block>, Tally) {
    let shared = Shared(a);
    let tally = Tally::default();
    let queues: Vec<Mutex<Vec<Block>>> = (0..THREADS).map(|_| Mutex::new(Vec::new())).collect();
    let start = Barrier::new(THREADS);
    let kept: Vec<Block> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..THREADS)
            .map(|t| {
                let (tally, queues, start) = (&tally, &queues, &start);
                s.spawn(move || {
                    let a = shared.get();
                    let mut rng = Rng(0x9e37_79b9 + t as u64 * 7919);
                    let mut mine: Vec<Block> = Vec::new();
                    start.wait();
                    for i in 0..PER_THREAD {
                        let (size, align) = size(&mut rng);
                        // SAFETY: `a` is a live thread-safe allocator.
                        let p = unsafe { dispatch::alloc(a, size, align, AllocOptions::DEFAULT) };
                        assert!(!p.is_null(), "thread {t}: request {i} of {size} bytes failed");
                        let b = Block { ptr: p, size, align, fill: (t * 37 + i) as u8 };
                        b.write();
                        tally.allocs.fetch_add(1, SeqCst);
                        match rng.below(3) {
                            // The newest block, freed at once: an arena gives its bytes back.
                            0 => free(a, b, tally),
                            1 => queues[(t + 1) % THREADS].lock().unwrap().push(b),
                            _ => mine.push(b),
                        }
                        if i % 16 == 0 {
                            let handed: Vec<Block> = core::mem::take(&mut *queues[t].lock().unwrap());
                            for b in handed {
                                assert!(b.intact(), "a block handed over changed");
                                free(a, b, tally);
                            }
                        }
                        if mine.len() > 64 {
                            let b = mine.swap_remove(rng.below(mine.len()));
                            assert!(b.intact(), "contents changed");
                            free(a, b, tally);
                        }
                    }
                    mine
                })
            })
            .collect();
        workers.into_iter().flat_map(|w| w.join().unwrap()).collect()
    });
    let mut live = kept;
    for q in queues {
        live.extend(q.into_inner().unwrap());
    }
    (live, tally)
}

fn free(a: *mut GooAllocator, b: Block, tally: &Tally) {
    // SAFETY: a live block of `a`, freed once.
    unsafe { dispatch::free(a, b.ptr(), b.size, b.align) };
    tally.frees.fetch_add(1, SeqCst);
}

/// The stats of `a` equal what the threads did and what is live.
fn assert_exact(s: AllocStats, live: &[Block], tally: &Tally) {
    assert_eq!(s.total_allocations, tally.allocs.load(SeqCst));
    assert_eq!(s.total_frees, tally.frees.load(SeqCst));
    assert_eq!(s.allocation_count, live.len());
    assert_eq!(s.bytes_allocated, live.iter().map(|b| b.size).sum::<usize>());
    assert_eq!(s.failed_allocations, 0);
}

fn arena_size(rng: &mut Rng) -> (usize, usize) {
    let size = match rng.below(20) {
        0 => 3000 + rng.below(6000), // a dedicated chunk, now and then
        1..=5 => 1 + rng.below(512),
        _ => 1 + rng.below(64),
    };
    (size, [0, 0, 1, 8, 16, 64][rng.below(6)])
}

#[test]
fn shared_arena_threads_allocate_disjoint_blocks_with_exact_stats() {
    // SAFETY: the built-in allocator is a static.
    let a = unsafe { shared_arena::create(goo_memory_core::builtin(), 1024, 0) }.as_ptr();
    let (live, tally) = hammer(a, arena_size);
    check_blocks(&live);
    // SAFETY: `a` is live.
    unsafe {
        assert_exact(dispatch::stats(a), &live, &tally);
        assert_eq!(shared_arena::check_raw(a), Ok(()));
        let arena = shared_arena::from_raw(a).unwrap();
        assert!(arena.chunk_count() >= THREADS, "a chunk per thread at least");
        assert_eq!(dispatch::stats(a).bytes_reserved, arena.reserved());
        // After the join: the reset succeeds, keeps a chunk per lane, and empties the stats.
        assert!(shared_arena::reset_raw(a));
        let s = dispatch::stats(a);
        assert_eq!((s.allocation_count, s.bytes_allocated), (0, 0));
        assert_eq!(s.total_frees, s.total_allocations);
        assert!(arena.chunk_count() <= THREADS + 1);
        assert_eq!(shared_arena::check_raw(a), Ok(()));
        goo_memory_core::managed_destroy(a);
    }
}

#[test]
fn shared_pool_threads_allocate_and_free_across_threads_with_exact_stats() {
    let config = PoolConfig { alignment: 16, ..PoolConfig::new(48, 32) };
    // SAFETY: the built-in allocator is a static.
    let a = unsafe { shared_pool::create(goo_memory_core::builtin(), config) }.unwrap().as_ptr();
    let (live, tally) = hammer(a, |rng| (1 + rng.below(48), [0, 8, 16][rng.below(3)]));
    check_blocks(&live);
    // SAFETY: `a` is live.
    unsafe {
        assert_exact(dispatch::stats(a), &live, &tally);
        assert_eq!(shared_pool::check_raw(a), Ok(()));
        let pool = shared_pool::from_raw(a).unwrap();
        let counts = pool.stats().expect("no thread inside");
        assert_eq!(counts.live_objects, live.len());
        assert_eq!(counts.free_objects + counts.live_objects, counts.total_objects);
        assert_eq!(counts.misuse_detected, 0);
        for b in &live {
            assert_eq!(b.ptr.addr() % 16, 0);
        }
        assert!(shared_pool::reset_raw(a));
        assert_eq!(dispatch::stats(a).allocation_count, 0);
        let counts = pool.stats().unwrap();
        assert_eq!((counts.live_objects, counts.free_objects), (0, counts.total_objects));
        assert_eq!(shared_pool::check_raw(a), Ok(()));
        goo_memory_core::managed_destroy(a);
    }
}

#[test]
fn a_locked_arena_serves_several_threads() {
    let mut arena = Arena::new();
    arena.set_track_stats(true);
    let arena_ptr = arena.as_ptr();
    {
        let locked = LockedAllocator::new(&mut arena);
        let (live, tally) = hammer(locked.as_ptr(), arena_size);
        check_blocks(&live);
        assert_exact(locked.stats(), &live, &tally);
        // The arena counted every request too (through its own front door, under the lock).
        // SAFETY: the arena is live (borrowed by the wrapper); read under the lock.
        let inner = locked.with_inner(|inner| inner.stats()).unwrap();
        assert_eq!(
            (inner.total_allocations, inner.allocation_count),
            (tally.allocs.load(SeqCst), live.len())
        );
        assert_eq!(locked.stats().bytes_reserved, inner.bytes_reserved);
        let mut locked = locked;
        assert!(locked.reset(), "an arena has a reset");
        assert_eq!(locked.stats().allocation_count, 0);
    }
    assert_eq!(arena.stats().allocation_count, 0);
    assert_eq!(arena.check(), Ok(()));
    assert_eq!(arena.as_ptr(), arena_ptr, "the wrapper did not destroy the arena");
}

/// Rust handles: `&SharedArena` and `&SharedRawPool` from scoped threads, containers included.
#[test]
fn rust_handles_are_shared_by_scoped_threads() {
    let mut arena = SharedArena::new();
    arena.set_track_stats(true);
    let pool = SharedRawPool::new(64, 0);
    std::thread::scope(|s| {
        for t in 0..THREADS as u64 {
            let (arena, pool) = (&arena, &pool);
            s.spawn(move || {
                let values: Vec<&mut u64> = (0..100).map(|i| arena.alloc(t << 32 | i)).collect();
                let mut v = allocator_api2::vec::Vec::new_in(arena);
                v.extend(0..1000u64);
                assert_eq!(v.iter().sum::<u64>(), 999 * 500);
                assert!(values.iter().enumerate().all(|(i, v)| **v == t << 32 | i as u64));
                let s = arena.alloc_str("shared");
                assert_eq!(&*s, "shared");
                let objects: Vec<_> = (0..200).map(|_| pool.alloc().unwrap()).collect();
                for p in objects {
                    // SAFETY: a live object of the pool, freed once.
                    unsafe { pool.free(p) };
                }
            });
        }
    });
    assert!(arena.stats().allocation_count >= THREADS * 101);
    assert_eq!(arena.check(), Ok(()));
    arena.reset();
    assert_eq!(arena.stats().allocation_count, 0);
    assert_eq!(pool.stats().unwrap().live_objects, 0);
    assert_eq!(pool.check(), Ok(()));
}

/// A C-made parent whose next allocation blocks until the test lets it go: it holds a thread
/// inside the allocator that asked it (which asks its parent under its lock).
struct Gate {
    armed: AtomicBool,
    inside: Barrier,
    release: Barrier,
}

unsafe extern "C" fn gate_alloc(ctx: *mut c_void, size: usize, align: usize, _: AllocOptions) -> *mut c_void {
    // SAFETY: the context is the test's `Gate`, alive while the vtable is used.
    let gate = unsafe { &*ctx.cast::<Gate>() };
    if gate.armed.swap(false, SeqCst) {
        gate.inside.wait();
        gate.release.wait();
    }
    let mut p = core::ptr::null_mut();
    // SAFETY: plain C call; `align` is a power of two (the front door checked it).
    if unsafe { libc::posix_memalign(&mut p, align.max(8), size) } == 0 {
        p
    } else {
        core::ptr::null_mut()
    }
}

unsafe extern "C" fn gate_free(_: *mut c_void, p: *mut c_void, _: usize, _: usize) {
    // SAFETY: a block of `gate_alloc`.
    unsafe { libc::free(p) }
}

fn gate_vtable(gate: &Gate) -> GooAllocator {
    GooAllocator {
        alloc: Some(gate_alloc),
        free: Some(gate_free),
        context: core::ptr::from_ref(gate).cast_mut().cast(),
        ..GooAllocator::EMPTY
    }
}

/// Runs `inside` on the main thread while another thread is held inside an allocation from
/// `a` (its parent `gate` blocking), then `after` once that thread is done.
fn with_a_thread_inside(
    gate: &Gate,
    a: *mut GooAllocator,
    size: usize,
    inside: impl FnOnce(),
    after: impl FnOnce(),
) {
    let shared = Shared(a);
    gate.armed.store(true, SeqCst);
    std::thread::scope(|s| {
        let worker = s.spawn(move || {
            // SAFETY: `a` is live; the block is left to the allocator's reset.
            let p = unsafe { dispatch::alloc(shared.get(), size, 0, AllocOptions::DEFAULT) };
            assert!(!p.is_null());
        });
        gate.inside.wait();
        inside();
        gate.release.wait();
        worker.join().unwrap();
    });
    after();
}

#[test]
fn shared_arena_reset_mark_and_rewind_are_refused_while_a_thread_is_inside() {
    let gate = Gate { armed: AtomicBool::new(false), inside: Barrier::new(2), release: Barrier::new(2) };
    let mut parent = gate_vtable(&gate);
    // SAFETY: the parent outlives the arena (destroyed first, below).
    let a = unsafe { shared_arena::create(&mut parent, 256, 0) }.as_ptr();
    // SAFETY: `a` is live.
    let mark = unsafe { shared_arena::mark_raw(a) }.unwrap().unwrap();
    // SAFETY: `a` is live throughout.
    unsafe {
        let kept = dispatch::alloc(a, 100, 0, AllocOptions::DEFAULT);
        assert!(!kept.is_null());
        with_a_thread_inside(
            &gate,
            a,
            64,
            || {
                assert!(!shared_arena::reset_raw(a), "a thread is taking a chunk");
                assert_eq!(shared_arena::mark_raw(a), Some(Err(goo_memory_core::arena::RewindError::Busy)));
                assert_eq!(
                    shared_arena::rewind_raw(a, &mark),
                    Err(goo_memory_core::arena::RewindError::Busy)
                );
                assert_eq!(dispatch::stats(a).allocation_count, 1, "nothing changed");
            },
            || {
                assert_eq!(dispatch::stats(a).allocation_count, 2);
                assert_eq!(shared_arena::rewind_raw(a, &mark), Ok(()));
                assert_eq!(dispatch::stats(a).allocation_count, 0, "both blocks came after the mark");
                assert!(shared_arena::reset_raw(a));
                assert_eq!(shared_arena::check_raw(a), Ok(()));
            },
        );
        goo_memory_core::managed_destroy(a);
    }
}

#[test]
fn shared_pool_reset_and_counts_are_refused_while_a_thread_is_inside() {
    let gate = Gate { armed: AtomicBool::new(false), inside: Barrier::new(2), release: Barrier::new(2) };
    let mut parent = gate_vtable(&gate);
    // SAFETY: the parent outlives the pool (destroyed first, below).
    let a = unsafe { shared_pool::create(&mut parent, PoolConfig::new(32, 8)) }.unwrap().as_ptr();
    // SAFETY: `a` is live throughout.
    unsafe {
        let pool = shared_pool::from_raw(a).unwrap();
        with_a_thread_inside(
            &gate,
            a,
            32,
            || {
                assert!(!shared_pool::reset_raw(a));
                assert_eq!(pool.stats(), None);
                assert!(shared_pool::check_raw(a).is_err());
            },
            || {
                assert_eq!(pool.stats().unwrap().live_objects, 1);
                assert!(shared_pool::reset_raw(a));
                assert_eq!(pool.stats().unwrap().live_objects, 0);
                assert_eq!(shared_pool::check_raw(a), Ok(()));
            },
        );
        goo_memory_core::managed_destroy(a);
    }
}

/// A parent that calls back into the locked wrapper from inside one of its requests (the lock
/// held by the same thread) is refused, not deadlocked.
#[test]
fn a_locked_allocator_refuses_reentry() {
    static WRAPPER: AtomicPtr<GooAllocator> = AtomicPtr::new(core::ptr::null_mut());
    unsafe extern "C" fn reentering(_: *mut c_void, size: usize, _: usize, _: AllocOptions) -> *mut c_void {
        let wrapper = WRAPPER.load(SeqCst);
        // SAFETY: the wrapper is live while the test runs; this call must be refused.
        let again = unsafe { dispatch::alloc(wrapper, 8, 0, AllocOptions::DEFAULT) };
        assert!(again.is_null(), "a request from inside a request was served");
        // SAFETY: plain C call.
        unsafe { libc::malloc(size) }
    }
    let mut parent = GooAllocator { alloc: Some(reentering), free: Some(gate_free), ..GooAllocator::EMPTY };
    // SAFETY: the parent outlives the arena, the arena the wrapper.
    unsafe {
        let inner = goo_memory_core::arena::create(&mut parent, 0, 0).as_ptr();
        let wrapper = locked::create(inner).as_ptr();
        WRAPPER.store(wrapper, SeqCst);
        let p = dispatch::alloc(wrapper, 16, 0, AllocOptions::DEFAULT);
        assert!(!p.is_null());
        assert_eq!(dispatch::stats(wrapper).failed_allocations, 1, "the refused request");
        dispatch::free(wrapper, p, 16, 0);
        goo_memory_core::managed_destroy(wrapper);
        goo_memory_core::managed_destroy(inner);
    }
}

// ---- Models ----

#[derive(Clone, Debug)]
enum ArenaOp {
    Alloc {
        size: usize,
        align_log2: u32,
    },
    /// An allocation made on another thread (another lane).
    AllocElsewhere {
        size: usize,
    },
    FreeNewest,
    FreeAny {
        index: usize,
    },
    Realloc {
        index: usize,
        new_size: usize,
    },
    Mark,
    Rewind {
        depth: usize,
    },
    Reset,
}

fn arena_op() -> impl Strategy<Value = ArenaOp> {
    let size = prop_oneof![4 => 1usize..128, 2 => 1usize..2048, 1 => 1usize..common::ops(20_000, 4000)];
    prop_oneof![
        8 => (size.clone(), 0u32..8).prop_map(|(size, align_log2)| ArenaOp::Alloc { size, align_log2 }),
        2 => size.clone().prop_map(|size| ArenaOp::AllocElsewhere { size }),
        2 => Just(ArenaOp::FreeNewest),
        2 => any::<usize>().prop_map(|index| ArenaOp::FreeAny { index }),
        2 => (any::<usize>(), size).prop_map(|(index, new_size)| ArenaOp::Realloc { index, new_size }),
        1 => Just(ArenaOp::Mark),
        1 => (0usize..3).prop_map(|depth| ArenaOp::Rewind { depth }),
        1 => Just(ArenaOp::Reset),
    ]
}

/// The model: live blocks by allocation number, marks with the number they were taken at.
struct ArenaModel {
    live: BTreeMap<u64, Block>,
    next: u64,
    /// A mark, the allocation number it was taken at, and the stats' live count and bytes then.
    marks: Vec<(goo_memory_core::arena::Mark, u64, usize, usize)>,
    allocs: usize,
    frees: usize,
    fill: u8,
}

impl ArenaModel {
    fn add(&mut self, p: *mut u8, size: usize, align: usize) {
        assert!(!p.is_null());
        self.fill = self.fill.wrapping_add(1);
        let b = Block { ptr: p, size, align, fill: self.fill };
        b.write();
        self.live.insert(self.next, b);
        self.next += 1;
        self.allocs += 1;
    }

    fn bytes(&self) -> usize {
        self.live.values().map(|b| b.size).sum()
    }
}

fn run_arena(ops: &[ArenaOp]) {
    let parent = Allocator::system();
    // SAFETY: the parent outlives the arena (destroyed below).
    let a = unsafe { shared_arena::create(parent.as_ptr(), 256, 0) }.as_ptr();
    let shared = Shared(a);
    let mut m =
        ArenaModel { live: BTreeMap::new(), next: 0, marks: Vec::new(), allocs: 0, frees: 0, fill: 0 };
    // The live counts the stats hold (a rewind takes them to the lesser of now and the mark's).
    let (mut count, mut bytes) = (0usize, 0usize);
    for op in ops {
        // SAFETY: `a` is live; blocks are the model's.
        unsafe {
            match *op {
                ArenaOp::Alloc { size, align_log2 } => {
                    let p = dispatch::alloc(a, size, 1 << align_log2, AllocOptions::DEFAULT);
                    m.add(p, size, 1 << align_log2);
                    (count, bytes) = (count + 1, bytes + size);
                }
                ArenaOp::AllocElsewhere { size } => {
                    let p = std::thread::spawn(move || {
                        Shared(dispatch::alloc(shared.get(), size, 0, AllocOptions::DEFAULT))
                    })
                    .join()
                    .unwrap();
                    m.add(p.get(), size, 1);
                    (count, bytes) = (count + 1, bytes + size);
                }
                ArenaOp::FreeNewest | ArenaOp::FreeAny { .. } if !m.live.is_empty() => {
                    let key = match *op {
                        ArenaOp::FreeAny { index } => *m.live.keys().nth(index % m.live.len()).unwrap(),
                        _ => *m.live.keys().next_back().unwrap(),
                    };
                    let b = m.live.remove(&key).unwrap();
                    dispatch::free(a, b.ptr(), b.size, b.align);
                    m.frees += 1;
                    (count, bytes) = (count - 1, bytes - b.size);
                }
                ArenaOp::Realloc { index, new_size } if !m.live.is_empty() => {
                    let key = *m.live.keys().nth(index % m.live.len()).unwrap();
                    let b = m.live[&key];
                    let q = dispatch::realloc(a, b.ptr(), b.size, new_size, b.align, AllocOptions::DEFAULT);
                    assert!(!q.is_null());
                    let kept = b.size.min(new_size);
                    // SAFETY: `q` holds `new_size` bytes, the first `kept` copied.
                    assert!(
                        core::slice::from_raw_parts(q, kept).iter().all(|&x| x == b.fill),
                        "contents moved"
                    );
                    // A resized block counts as allocated now (for marks): a new number.
                    m.live.remove(&key);
                    let nb = Block { ptr: q, size: new_size, ..b };
                    nb.write();
                    m.live.insert(m.next, nb);
                    m.next += 1;
                    bytes = bytes - b.size + new_size;
                }
                ArenaOp::Mark => {
                    let mark = shared_arena::mark_raw(a).unwrap().unwrap();
                    m.marks.push((mark, m.next, count, bytes));
                }
                ArenaOp::Rewind { depth } if depth < m.marks.len() => {
                    let (mark, at, mark_count, mark_bytes) = m.marks[m.marks.len() - 1 - depth];
                    assert_eq!(shared_arena::rewind_raw(a, &mark), Ok(()));
                    m.marks.truncate(m.marks.len() - depth);
                    m.live.retain(|&n, _| n < at);
                    // The rewind counts as freed what the live count had above the mark's.
                    m.frees += count.saturating_sub(mark_count);
                    (count, bytes) = (count.min(mark_count), bytes.min(mark_bytes));
                }
                ArenaOp::Reset => {
                    assert!(shared_arena::reset_raw(a));
                    m.live.clear();
                    m.marks.clear();
                    m.frees += count;
                    (count, bytes) = (0, 0);
                }
                _ => {}
            }
            let blocks: Vec<Block> = m.live.values().copied().collect();
            check_blocks(&blocks);
            let arena = shared_arena::from_raw(a).unwrap();
            for b in &blocks {
                assert!(arena.reserved() >= b.size, "a block bigger than the chunks");
            }
            let s = dispatch::stats(a);
            assert_eq!((s.allocation_count, s.bytes_allocated), (count, bytes));
            assert!(bytes >= m.bytes(), "the stats lost a live block");
            assert_eq!(s.total_allocations, m.allocs);
            assert_eq!(s.total_frees, m.frees);
            assert_eq!(s.bytes_reserved, arena.reserved());
            assert_eq!(shared_arena::check_raw(a), Ok(()));
        }
    }
    // SAFETY: `a` is live, not used afterwards.
    unsafe { goo_memory_core::managed_destroy(a) };
    assert_eq!(parent.stats().allocation_count, 0, "every chunk went back to the parent");
}

#[derive(Clone, Debug)]
enum PoolOp {
    Alloc,
    AllocElsewhere,
    Free {
        index: usize,
    },
    FreeElsewhere {
        index: usize,
    },
    FreeForeign,
    /// A free of a pointer inside a live object (past its start): refused, the object stays.
    FreeInterior {
        index: usize,
        offset: usize,
    },
    Reset,
}

fn pool_op() -> impl Strategy<Value = PoolOp> {
    prop_oneof![
        6 => Just(PoolOp::Alloc),
        1 => Just(PoolOp::AllocElsewhere),
        4 => any::<usize>().prop_map(|index| PoolOp::Free { index }),
        1 => any::<usize>().prop_map(|index| PoolOp::FreeElsewhere { index }),
        1 => Just(PoolOp::FreeForeign),
        1 => (any::<usize>(), any::<usize>()).prop_map(|(index, offset)| PoolOp::FreeInterior { index, offset }),
        1 => Just(PoolOp::Reset),
    ]
}

fn run_pool(object_size: usize, per_block: usize, max_objects: usize, ops: &[PoolOp]) {
    let parent = Allocator::system();
    let config = PoolConfig { max_objects, ..PoolConfig::new(object_size, per_block) };
    // SAFETY: the parent outlives the pool (destroyed below).
    let a = unsafe { shared_pool::create(parent.as_ptr(), config) }.unwrap().as_ptr();
    let shared = Shared(a);
    // SAFETY: `a` is live until the end.
    let pool = unsafe { shared_pool::from_raw(a) }.unwrap();
    let mut live: Vec<Block> = Vec::new();
    let (mut allocs, mut frees, mut failed, mut misuse) = (0usize, 0usize, 0usize, 0usize);
    let mut fill = 0u8;
    for op in ops {
        // SAFETY: `a` is live; blocks are the model's.
        unsafe {
            match *op {
                PoolOp::Alloc | PoolOp::AllocElsewhere => {
                    let p = if matches!(op, PoolOp::Alloc) {
                        dispatch::alloc(a, object_size, 0, AllocOptions::DEFAULT)
                    } else {
                        std::thread::spawn(move || {
                            Shared(dispatch::alloc(shared.get(), object_size, 0, AllocOptions::DEFAULT))
                        })
                        .join()
                        .unwrap()
                        .get()
                    };
                    // Refused only at the cap with every object live: a thread takes free
                    // objects from other lanes' lists (the other threads are out of the pool).
                    if p.is_null() {
                        assert!(max_objects != 0 && live.len() == max_objects, "refused with a free object");
                        failed += 1;
                        continue;
                    }
                    fill = fill.wrapping_add(1);
                    let b = Block { ptr: p, size: object_size, align: pool.align(), fill };
                    b.write();
                    live.push(b);
                    allocs += 1;
                }
                PoolOp::Free { index } | PoolOp::FreeElsewhere { index } if !live.is_empty() => {
                    let b = live.swap_remove(index % live.len());
                    assert!(b.intact());
                    if matches!(op, PoolOp::Free { .. }) {
                        dispatch::free(a, b.ptr(), b.size, 0);
                    } else {
                        std::thread::spawn(move || dispatch::free(shared.get(), b.ptr(), b.size, 0))
                            .join()
                            .unwrap();
                    }
                    frees += 1;
                }
                PoolOp::FreeForeign => {
                    let mut foreign = [0u64; 8];
                    dispatch::free(a, foreign.as_mut_ptr().cast(), object_size, 0);
                    misuse += 1;
                }
                PoolOp::FreeInterior { index, offset } if !live.is_empty() && object_size > 1 => {
                    let b = &live[index % live.len()];
                    let inside = b.ptr().add(1 + offset % (object_size - 1));
                    dispatch::free(a, inside, object_size, 0);
                    misuse += 1;
                }
                PoolOp::Reset => {
                    assert!(shared_pool::reset_raw(a));
                    frees += live.len();
                    live.clear();
                }
                _ => {}
            }
            check_blocks(&live);
            let s = dispatch::stats(a);
            assert_eq!((s.allocation_count, s.bytes_allocated), (live.len(), live.len() * object_size));
            assert_eq!((s.total_allocations, s.total_frees, s.failed_allocations), (allocs, frees, failed));
            let counts = pool.stats().unwrap();
            assert_eq!((counts.live_objects, counts.misuse_detected), (live.len(), misuse));
            assert!(max_objects == 0 || counts.total_objects <= max_objects);
            assert_eq!(s.bytes_reserved, counts.bytes_reserved);
            assert_eq!(shared_pool::check_raw(a), Ok(()));
        }
    }
    // SAFETY: `a` is live, not used afterwards.
    unsafe { goo_memory_core::managed_destroy(a) };
    assert_eq!(parent.stats().allocation_count, 0, "every block went back to the parent");
}

proptest! {
    #![proptest_config(common::model_config())]

    #[test]
    fn shared_arena_model(ops in prop::collection::vec(arena_op(), 1..common::ops(120, 20))) {
        run_arena(&ops);
    }

    #[test]
    fn shared_pool_model(
        object_size in 1usize..200,
        per_block in 1usize..20,
        capped in any::<bool>(),
        ops in prop::collection::vec(pool_op(), 1..common::ops(150, 20)),
    ) {
        run_pool(object_size, per_block, if capped { 40 } else { 0 }, &ops);
    }
}

/// A write through a stale pointer into a free object of a shared pool cannot redirect an
/// allocation: the pool hands the object out, reports the damage, drops the rest of that free
/// list and serves objects of its own. The objects are freed by the thread that allocated them
/// (onto its lane's local list) or by another thread (onto the owner's remote list, which the
/// owner's next allocation takes whole).
fn a_write_after_free_redirects_no_allocation(freed_elsewhere: bool) {
    // SAFETY: the built-in allocator is a static.
    let a =
        unsafe { shared_pool::create(goo_memory_core::builtin(), PoolConfig::new(64, 8)) }.unwrap().as_ptr();
    let mut target = [0u64; 8];
    // SAFETY: `a` is live; the blocks are freed once, but for the write under test.
    unsafe {
        let p = dispatch::alloc(a, 64, 0, AllocOptions::DEFAULT);
        let q = dispatch::alloc(a, 64, 0, AllocOptions::DEFAULT);
        // The block's other objects taken: the next allocation pops the list `p` heads.
        let per_block = shared_pool::from_raw(a).unwrap().stats().unwrap().objects_per_block;
        let rest: Vec<*mut u8> =
            (2..per_block).map(|_| dispatch::alloc(a, 64, 0, AllocOptions::DEFAULT)).collect();
        let (sa, sp, sq) = (Shared(a), Shared(p), Shared(q));
        let free_both = move || {
            dispatch::free(sa.get(), sq.get(), 64, 0);
            dispatch::free(sa.get(), sp.get(), 64, 0);
        };
        if freed_elsewhere {
            std::thread::spawn(free_both).join().unwrap();
        } else {
            free_both();
        }
        // The bug: a write through the stale `p` into its first word.
        p.cast::<*mut u64>().write(target.as_mut_ptr());
        let x = dispatch::alloc(a, 64, 0, AllocOptions::DEFAULT);
        let y = dispatch::alloc(a, 64, 0, AllocOptions::DEFAULT);
        assert_eq!(x, p, "the free object itself still serves");
        assert!(
            !y.is_null() && y.cast::<u64>() != target.as_mut_ptr(),
            "no allocation at the forged address"
        );
        let pool = shared_pool::from_raw(a).unwrap();
        assert_eq!(pool.stats().unwrap().misuse_detected, 1, "the damage is counted");
        for r in rest.into_iter().chain([x, y]) {
            dispatch::free(a, r, 64, 0);
        }
        assert_eq!(dispatch::stats(a).allocation_count, 0);
        assert_eq!(shared_pool::check_raw(a), Ok(()));
        goo_memory_core::managed_destroy(a);
    }
}

#[test]
fn a_write_after_free_redirects_no_shared_pool_allocation() {
    a_write_after_free_redirects_no_allocation(false);
}

#[test]
fn a_write_after_a_remote_free_redirects_no_shared_pool_allocation() {
    a_write_after_free_redirects_no_allocation(true);
}

/// At the cap another thread takes half of a thread's own list, and only the part of it whose
/// links a stale pointer's write left intact: the damaged object stays on its owner's list,
/// whose next pop reports it, and no allocation lands at the forged address.
#[test]
fn a_steal_at_the_cap_stops_at_a_damaged_link() {
    let config = PoolConfig { max_objects: 8, ..PoolConfig::new(64, 8) };
    // SAFETY: the built-in allocator is a static.
    let a = unsafe { shared_pool::create(goo_memory_core::builtin(), config) }.unwrap().as_ptr();
    let mut target = [0u64; 8];
    // SAFETY: `a` is live; each object is freed once, but for the write under test.
    unsafe {
        // One block holds the whole cap, on this thread's lane.
        let objects: Vec<*mut u8> =
            (0..8).map(|_| dispatch::alloc(a, 64, 0, AllocOptions::DEFAULT)).collect();
        assert!(objects.iter().all(|p| !p.is_null()));
        assert!(dispatch::alloc(a, 64, 0, AllocOptions::DEFAULT).is_null(), "the cap");
        // This thread's list: c -> b -> a (freed in that order, pushed on the head).
        let (oa, ob, oc) = (objects[0], objects[1], objects[2]);
        for &p in &[oa, ob, oc] {
            dispatch::free(a, p, 64, 0);
        }
        // The bug: a write through the stale `oa`, the third on the list.
        oa.cast::<*mut u64>().write(target.as_mut_ptr());
        // Another thread: its lists are empty, the pool at its cap. Of the two objects before
        // the damage it takes one (half, rounded up): the head.
        let sa = Shared(a);
        let got = std::thread::spawn(move || Shared(dispatch::alloc(sa.get(), 64, 0, AllocOptions::DEFAULT)))
            .join()
            .unwrap()
            .get();
        assert_eq!(got, oc, "the head of the sound part");
        let pool = shared_pool::from_raw(a).unwrap();
        assert_eq!(pool.stats().unwrap().misuse_detected, 0, "the damage is the owner's to find");
        // The owner: `ob`, then the damaged `oa` (reported; the rest of its list dropped).
        let x = dispatch::alloc(a, 64, 0, AllocOptions::DEFAULT);
        let y = dispatch::alloc(a, 64, 0, AllocOptions::DEFAULT);
        assert_eq!((x, y), (ob, oa));
        assert_eq!(pool.stats().unwrap().misuse_detected, 1, "the damage is counted");
        assert!(dispatch::alloc(a, 64, 0, AllocOptions::DEFAULT).is_null(), "every object live");
        assert_eq!(shared_pool::check_raw(a), Ok(()));
        for p in objects[3..].iter().copied().chain([got, x, y]) {
            dispatch::free(a, p, 64, 0);
        }
        assert_eq!(dispatch::stats(a).allocation_count, 0);
        goo_memory_core::managed_destroy(a);
    }
}
