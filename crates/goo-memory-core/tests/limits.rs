//! Limits on live bytes (`goo_allocator_set_limit`): random operation sequences on every
//! allocator kind against a model (the limit is never passed, every refusal is counted, the
//! stats stay exact, tracked or not), threads sharing a limited allocator, and a strategy whose
//! handler frees memory so the retry succeeds.

use core::ptr::{self, NonNull};
use std::ffi::c_void;
use std::sync::atomic::{AtomicPtr, AtomicUsize, Ordering::Relaxed};
use std::sync::Barrier;

use goo_memory_core::policy::invariant::InvariantError;
use goo_memory_core::{arena, heap, pool, region, scoped, system};
use goo_memory_core::{dispatch, AllocOptions, AllocStrategy, GooAllocator};
use proptest::prelude::*;

/// Every kind of allocator, made fresh; `check` verifies its invariants.
#[derive(Clone, Copy, Debug)]
enum Kind {
    System,
    Heap,
    Arena,
    Pool,
    Region,
    Scope,
    CMade,
}

const KINDS: [Kind; 7] =
    [Kind::System, Kind::Heap, Kind::Arena, Kind::Pool, Kind::Region, Kind::Scope, Kind::CMade];

/// The pool's object size: every request to a pool is at most this.
const POOL_OBJECT: usize = 96;

unsafe extern "C" fn c_alloc(_: *mut c_void, size: usize, align: usize, _: AllocOptions) -> *mut c_void {
    let mut p = ptr::null_mut();
    // SAFETY: plain C library call; `align` is a power of two (the front door checked it).
    if unsafe { libc::posix_memalign(&mut p, align.max(8), size) } == 0 {
        p
    } else {
        ptr::null_mut()
    }
}

unsafe extern "C" fn c_free(_: *mut c_void, p: *mut c_void, _: usize, _: usize) {
    // SAFETY: `p` came from `c_alloc`.
    unsafe { libc::free(p) }
}

/// A C-made allocator: a vtable of C functions, no header.
fn c_made() -> *mut GooAllocator {
    // SAFETY: all-zero is a valid `GooAllocator` (null functions, zero counters).
    let mut raw: Box<GooAllocator> = Box::new(unsafe { core::mem::zeroed() });
    raw.alloc = Some(c_alloc);
    raw.free = Some(c_free);
    raw.track_stats = true;
    Box::into_raw(raw)
}

fn make(kind: Kind) -> *mut GooAllocator {
    let builtin = goo_memory_core::builtin();
    // SAFETY: the built-in allocator outlives every allocator made here.
    unsafe {
        match kind {
            Kind::System => system::System::create(AllocStrategy::Null).as_ptr(),
            Kind::Heap => heap::Heap::create(AllocStrategy::Null).as_ptr(),
            Kind::Arena => arena::create(builtin, 0, 0).as_ptr(),
            Kind::Pool => pool::create(builtin, pool::PoolConfig::new(POOL_OBJECT, 0)).unwrap().as_ptr(),
            Kind::Region => region::create(builtin, 4096, true).as_ptr(),
            Kind::Scope => scoped::create(builtin).as_ptr(),
            Kind::CMade => c_made(),
        }
    }
}

fn destroy(kind: Kind, a: *mut GooAllocator) {
    // SAFETY: `a` was made by `make(kind)` and is not used afterwards.
    unsafe {
        match kind {
            Kind::CMade => {
                assert!(dispatch::set_limit(a, 0));
                drop(Box::from_raw(a));
            }
            _ => ((*a).destroy.unwrap())(a.cast()),
        }
    }
}

fn check(kind: Kind, a: *mut GooAllocator) -> Result<(), InvariantError> {
    // SAFETY: `a` is a live allocator of `kind`.
    unsafe {
        match kind {
            Kind::System => system::check_raw(a),
            Kind::Heap => heap::check_raw(a),
            Kind::Arena => arena::check_raw(a),
            Kind::Pool => pool::check_raw(a),
            Kind::Region => region::check_raw(a),
            Kind::Scope => scoped::check_raw(a),
            Kind::CMade => goo_memory_core::policy::limit::check(),
        }
    }
}

#[derive(Clone, Debug)]
enum Op {
    Alloc(usize),
    Free(usize),
    Realloc(usize, usize),
    SetLimit(usize),
    /// Turns the allocator's stats on or off: the limit holds either way.
    Track(bool),
}

fn op(max: usize) -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (1..=max).prop_map(Op::Alloc),
        3 => any::<usize>().prop_map(Op::Free),
        2 => (any::<usize>(), 1..=max).prop_map(|(i, n)| Op::Realloc(i, n)),
        1 => prop_oneof![Just(0usize), 1..4 * max].prop_map(Op::SetLimit),
        1 => any::<bool>().prop_map(Op::Track),
    ]
}

fn max_size(kind: Kind) -> usize {
    match kind {
        Kind::Pool => POOL_OBJECT,
        _ => 600,
    }
}

/// Runs `ops` on a fresh allocator of `kind` and checks it against the model after each one.
///
/// The model of what the limit sees: the live bytes the stats counted (`known`, signed: a
/// block allocated while nothing counted and freed while something does drives it down, and
/// leaves that much more room). A
/// library allocator counts while tracked or limited; a C-made one is kept tracked here (its
/// limit counts in a table of its own, from the stats' count when set).
fn run(kind: Kind, ops: &[Op]) {
    let a = make(kind);
    let mut blocks: Vec<(NonNull<u8>, usize)> = Vec::new();
    let mut known = 0isize;
    let mut limit = 0usize;
    let mut failed = 0usize;
    // SAFETY: `a` is live throughout; every block freed or resized is live and of its size.
    unsafe {
        for op in ops {
            match *op {
                Op::Alloc(size) => {
                    let p = dispatch::alloc(a, size, 0, AllocOptions::DEFAULT);
                    let fits = limit == 0 || known + size as isize <= limit as isize;
                    assert_eq!(
                        !p.is_null(),
                        fits,
                        "{kind:?}: alloc {size} with {known} known, limit {limit}"
                    );
                    if let Some(p) = NonNull::new(p) {
                        p.as_ptr().write_bytes(0xA5, size);
                        blocks.push((p, size));
                        if (*a).track_stats || limit != 0 {
                            known += size as isize;
                        }
                    } else {
                        failed += 1;
                    }
                }
                Op::Free(i) if !blocks.is_empty() => {
                    let (p, size) = blocks.swap_remove(i % blocks.len());
                    dispatch::free(a, p.as_ptr(), size, 0);
                    if (*a).track_stats || limit != 0 {
                        known -= size as isize;
                    }
                }
                Op::Realloc(i, new_size) if !blocks.is_empty() => {
                    let i = i % blocks.len();
                    let (p, size) = blocks[i];
                    let q = dispatch::realloc(a, p.as_ptr(), size, new_size, 0, AllocOptions::DEFAULT);
                    let growth = new_size.saturating_sub(size) as isize;
                    let fits = limit == 0 || growth == 0 || known + growth <= limit as isize;
                    assert_eq!(
                        !q.is_null(),
                        fits,
                        "{kind:?}: realloc {size} -> {new_size}, {known} known, limit {limit}"
                    );
                    match NonNull::new(q) {
                        Some(q) => {
                            blocks[i] = (q, new_size);
                            if (*a).track_stats || limit != 0 {
                                known += new_size as isize - size as isize;
                            }
                        }
                        None => failed += 1,
                    }
                }
                Op::Free(_) | Op::Realloc(..) => {}
                Op::SetLimit(max) => {
                    assert!(dispatch::set_limit(a, max));
                    assert_eq!(dispatch::limit(a), max);
                    limit = max;
                }
                Op::Track(on) => {
                    if !matches!(kind, Kind::CMade) {
                        (*a).track_stats = on;
                    }
                }
            }
            let stats = dispatch::stats(a);
            assert_eq!(stats.failed_allocations, failed, "{kind:?}: failures counted");
            assert_eq!(stats.bytes_allocated, known.max(0) as usize, "{kind:?}: live bytes after {op:?}");
            check(kind, a).unwrap();
        }
        for (p, size) in blocks {
            dispatch::free(a, p.as_ptr(), size, 0);
        }
    }
    destroy(kind, a);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: if cfg!(miri) { 4 } else { 64 }, ..ProptestConfig::default() })]

    // Minutes under Miri: the deterministic tests below cover the same paths there.
    #[test]
    #[cfg_attr(miri, ignore)]
    fn every_kind_keeps_its_limit(ops in prop::collection::vec(op(600), 1..120), k in 0..KINDS.len()) {
        let kind = KINDS[k];
        let max = max_size(kind);
        let ops: Vec<Op> = ops
            .into_iter()
            .map(|o| match o {
                Op::Alloc(s) => Op::Alloc(1 + (s - 1) % max),
                Op::Realloc(i, s) => Op::Realloc(i, 1 + (s - 1) % max),
                o => o,
            })
            .collect();
        run(kind, &ops);
    }
}

/// Up to the limit exactly, and not a byte past it; the stats count what the limit counts.
#[test]
fn up_to_the_limit_exactly() {
    for kind in KINDS {
        let unit = if matches!(kind, Kind::Pool) { 60 } else { 120 };
        let a = make(kind);
        // SAFETY: `a` is live; blocks are freed with their sizes.
        unsafe {
            assert!(dispatch::set_limit(a, 10 * unit));
            let blocks: Vec<*mut u8> =
                (0..10).map(|_| dispatch::alloc(a, unit, 0, AllocOptions::DEFAULT)).collect();
            assert!(blocks.iter().all(|p| !p.is_null()), "{kind:?}: up to the limit");
            assert!(dispatch::alloc(a, 1, 0, AllocOptions::DEFAULT).is_null(), "{kind:?}: one byte past it");
            let s = dispatch::stats(a);
            assert_eq!((s.bytes_allocated, s.failed_allocations), (10 * unit, 1), "{kind:?}");
            for p in blocks {
                dispatch::free(a, p, unit, 0);
            }
            assert_eq!(dispatch::stats(a).bytes_allocated, 0, "{kind:?}");
            let again = dispatch::alloc(a, unit, 0, AllocOptions::DEFAULT);
            assert!(!again.is_null(), "{kind:?}: room again");
            dispatch::free(a, again, unit, 0);
            check(kind, a).unwrap();
        }
        destroy(kind, a);
    }
}

/// A request the backend refuses after the limit counted it (a pool asked for more than its
/// object size) leaves no trace in the peak; one that succeeds sets it.
#[test]
fn a_refused_request_is_no_peak() {
    let a = make(Kind::Pool);
    // SAFETY: `a` is live; the block is freed with its size.
    unsafe {
        assert!(dispatch::set_limit(a, 100_000));
        assert!(dispatch::alloc(a, POOL_OBJECT + 1, 0, AllocOptions::DEFAULT).is_null());
        let s = dispatch::stats(a);
        assert_eq!((s.bytes_allocated, s.max_bytes_allocated, s.failed_allocations), (0, 0, 1));
        let p = dispatch::alloc(a, 40, 0, AllocOptions::DEFAULT);
        assert!(!p.is_null());
        assert!(dispatch::realloc(a, p, 40, POOL_OBJECT + 1, 0, AllocOptions::DEFAULT).is_null());
        let s = dispatch::stats(a);
        assert_eq!((s.bytes_allocated, s.max_bytes_allocated, s.failed_allocations), (40, 40, 2));
        dispatch::free(a, p, 40, 0);
        check(Kind::Pool, a).unwrap();
    }
    destroy(Kind::Pool, a);
}

/// A block or an allocator shared with another thread (the test synchronises every use).
struct Shared<T>(*mut T);
impl<T> Clone for Shared<T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for Shared<T> {}
// SAFETY: the tests hand these pointers between threads only through locks, joins and
// barriers, and the allocators behind them are thread-safe.
unsafe impl<T> Send for Shared<T> {}
// SAFETY: as above.
unsafe impl<T> Sync for Shared<T> {}

impl<T> Shared<T> {
    /// The pointer (a method, so that a closure captures the whole `Shared`, not its field).
    fn get(self) -> *mut T {
        self.0
    }
}

static FREED_BY_HANDLER: AtomicUsize = AtomicUsize::new(0);
static HELD: std::sync::Mutex<Vec<(Shared<u8>, usize)>> = std::sync::Mutex::new(Vec::new());
static HOLDER: AtomicPtr<GooAllocator> = AtomicPtr::new(ptr::null_mut());

unsafe extern "C" fn give_back(_: *mut c_void, _: usize) {
    let a = HOLDER.load(Relaxed);
    for (p, size) in HELD.lock().unwrap().drain(..) {
        // SAFETY: blocks of `a` this test allocated and holds.
        unsafe { dispatch::free(a, p.0, size, 0) };
        FREED_BY_HANDLER.fetch_add(1, Relaxed);
    }
}

/// The GC strategy's handler frees memory; the retry then fits under the limit.
#[test]
fn a_gc_handler_makes_room_under_the_limit() {
    let a = make(Kind::System);
    HOLDER.store(a, Relaxed);
    // SAFETY: `a` is live; the handler frees only blocks it holds.
    unsafe {
        (*a).strategy = AllocStrategy::Gc as _;
        // The hook takes no data and may run on any thread (cleared below).
        goo_memory_core::policy::strategy::set_gc_handler(Some(give_back), ptr::null_mut());
        assert!(dispatch::set_limit(a, 256));
        for _ in 0..4 {
            let p = dispatch::alloc(a, 64, 0, AllocOptions::DEFAULT);
            assert!(!p.is_null());
            HELD.lock().unwrap().push((Shared(p), 64));
        }
        let p = dispatch::alloc(a, 64, 0, AllocOptions::DEFAULT);
        assert!(!p.is_null(), "the handler freed room and the retry fit");
        assert_eq!(FREED_BY_HANDLER.load(Relaxed), 4);
        assert_eq!(dispatch::stats(a).failed_allocations, 0);
        dispatch::free(a, p, 64, 0);
        goo_memory_core::policy::strategy::set_gc_handler(None, ptr::null_mut());
    }
    destroy(Kind::System, a);
}

/// Threads share a limited thread-safe allocator: what they hold together never passes it,
/// and every refusal is counted.
#[test]
fn threads_never_pass_a_shared_limit() {
    // Under Miri each thread makes 50 requests: a lower limit, so that they reach it whatever
    // the interleaving.
    const LIMIT: usize = if cfg!(miri) { 16 * 1024 } else { 64 * 1024 };
    for kind in [Kind::System, Kind::Heap, Kind::CMade] {
        let a = Shared(make(kind));
        // SAFETY: `a` is live.
        assert!(unsafe { dispatch::set_limit(a.0, LIMIT) });
        let held = AtomicUsize::new(0);
        let refused = AtomicUsize::new(0);
        let start = Barrier::new(4);
        std::thread::scope(|t| {
            let mut threads = Vec::new();
            for seed in 0..4u64 {
                let (held, refused, start) = (&held, &refused, &start);
                threads.push(t.spawn(move || {
                    let a = a.get();
                    let mut mine: Vec<(*mut u8, usize)> = Vec::new();
                    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
                    start.wait();
                    for _ in 0..if cfg!(miri) { 50 } else { 20_000 } {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        let size = 1 + (x % 2048) as usize;
                        if x % 3 == 0 && !mine.is_empty() {
                            let (p, size) = mine.swap_remove((x as usize >> 8) % mine.len());
                            held.fetch_sub(size, Relaxed);
                            // SAFETY: a live block of `a` of `size` bytes.
                            unsafe { dispatch::free(a, p, size, 0) };
                        } else {
                            // SAFETY: `a` is live.
                            let p = unsafe { dispatch::alloc(a, size, 0, AllocOptions::DEFAULT) };
                            if p.is_null() {
                                refused.fetch_add(1, Relaxed);
                            } else {
                                let now = held.fetch_add(size, Relaxed) + size;
                                assert!(now <= LIMIT, "{kind:?}: {now} bytes held under a limit of {LIMIT}");
                                mine.push((p, size));
                            }
                        }
                    }
                    for (p, size) in mine {
                        held.fetch_sub(size, Relaxed);
                        // SAFETY: as above.
                        unsafe { dispatch::free(a, p, size, 0) };
                    }
                }));
            }
            // Joined, not left to the scope: the scope waits for the closures, not for the
            // threads' exit (their thread-local destructors give the heap's cache back), and a
            // thread still exiting when the test harness ends fails a Miri run.
            for h in threads {
                h.join().unwrap();
            }
        });
        let a = a.0;
        // SAFETY: `a` is live.
        let s = unsafe { dispatch::stats(a) };
        assert_eq!(s.failed_allocations, refused.load(Relaxed), "{kind:?}");
        assert!(refused.load(Relaxed) > 0, "{kind:?}: the limit was reached");
        assert_eq!(s.bytes_allocated, 0, "{kind:?}");
        destroy(kind, a);
    }
}

/// A thread's unused grant does not make another thread's request fail: a reservation takes
/// every grant back before it refuses, so the limit is reached exactly.
#[test]
fn a_shared_limit_is_reached_exactly_across_threads() {
    const LIMIT: usize = 64 * 1024;
    for kind in [Kind::System, Kind::Heap] {
        let a = Shared(make(kind));
        // SAFETY: `a` is live.
        assert!(unsafe { dispatch::set_limit(a.0, LIMIT) });
        // Another thread holds 100 bytes, and a grant for more.
        let kept = std::thread::scope(|t| {
            t.spawn(|| {
                let a = a.get();
                // SAFETY: `a` is live.
                let p = unsafe { dispatch::alloc(a, 100, 0, AllocOptions::DEFAULT) };
                assert!(!p.is_null());
                // SAFETY: as above.
                let q = unsafe { dispatch::alloc(a, 50, 0, AllocOptions::DEFAULT) };
                assert!(!q.is_null());
                // SAFETY: a live block of `a` of 50 bytes.
                unsafe { dispatch::free(a, q, 50, 0) };
                Shared(p)
            })
            .join()
            .unwrap()
        });
        let a = a.0;
        // SAFETY: `a` is live; the blocks are its own, freed with their sizes.
        unsafe {
            let rest = dispatch::alloc(a, LIMIT - 100, 0, AllocOptions::DEFAULT);
            assert!(!rest.is_null(), "{kind:?}: the last {} bytes under the limit", LIMIT - 100);
            assert!(dispatch::alloc(a, 1, 0, AllocOptions::DEFAULT).is_null(), "{kind:?}: one byte past it");
            dispatch::free(a, rest, LIMIT - 100, 0);
            let small: Vec<_> = (0..64).map(|_| dispatch::alloc(a, 16, 0, AllocOptions::DEFAULT)).collect();
            assert!(small.iter().all(|p| !p.is_null()), "{kind:?}: room again");
            for p in small {
                dispatch::free(a, p, 16, 0);
            }
            dispatch::free(a, kept.0, 100, 0);
            assert_eq!(dispatch::stats(a).bytes_allocated, 0);
            assert_eq!(dispatch::stats(a).failed_allocations, 1);
        }
        destroy(kind, a);
    }
}

/// A shared allocator's limit removed while threads' shards hold grants, then set again: with
/// none, threads allocate past the old limit and the counts (the peak too) stay exact; with one
/// again, the threads together get exactly the room left, no block more.
#[test]
fn a_shared_limit_removed_and_set_again_holds_across_threads() {
    const LIMIT: usize = if cfg!(miri) { 4 * 1024 } else { 32 * 1024 };
    const BLOCK: usize = 64;
    const THREADS: usize = 2;
    // Per thread: under the limit (both fit), then past it (together twice the limit).
    let (first, then) = if cfg!(miri) { (8, 40) } else { (100, 512) };
    /// `THREADS` threads at once each ask `a` for `n` blocks: the blocks served.
    fn on_threads(a: Shared<GooAllocator>, n: usize) -> Vec<Shared<u8>> {
        std::thread::scope(|t| {
            let threads: Vec<_> = (0..THREADS)
                .map(|_| {
                    t.spawn(move || {
                        let a = a.get();
                        (0..n)
                            // SAFETY: `a` is live.
                            .map(|_| Shared(unsafe { dispatch::alloc(a, BLOCK, 0, AllocOptions::DEFAULT) }))
                            .filter(|p| !p.0.is_null())
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            threads.into_iter().flat_map(|h| h.join().unwrap()).collect()
        })
    }
    for kind in [Kind::System, Kind::Heap] {
        let a = Shared(make(kind));
        // SAFETY: `a` is live (every call below); the blocks are its own, of `BLOCK` bytes.
        unsafe {
            assert!(dispatch::set_limit(a.0, LIMIT));
            let mut blocks = on_threads(a, first);
            assert_eq!(blocks.len(), THREADS * first, "{kind:?}: within the limit");
            assert!(dispatch::set_limit(a.0, 0));
            blocks.extend(on_threads(a, then));
            let live = THREADS * (first + then) * BLOCK;
            assert!(live > LIMIT);
            assert_eq!(blocks.len() * BLOCK, live, "{kind:?}: no limit");
            let s = dispatch::stats(a.0);
            assert_eq!(
                (s.bytes_allocated, s.max_bytes_allocated, s.failed_allocations),
                (live, live, 0),
                "{kind:?}"
            );
            assert!(dispatch::set_limit(a.0, live + 10 * BLOCK));
            let again = on_threads(a, then);
            assert_eq!(again.len(), 10, "{kind:?}: the room left, exactly");
            let s = dispatch::stats(a.0);
            assert_eq!(s.bytes_allocated, live + 10 * BLOCK, "{kind:?}");
            assert_eq!(s.failed_allocations, THREADS * then - 10, "{kind:?}");
            for p in blocks.into_iter().chain(again) {
                dispatch::free(a.0, p.0, BLOCK, 0);
            }
            assert_eq!(dispatch::stats(a.0).bytes_allocated, 0, "{kind:?}");
            assert!(dispatch::set_limit(a.0, 0));
        }
        destroy(kind, a.0);
    }
}

/// A limit set below the live bytes: requests fail until frees make room, and only as much
/// room as the frees made, even where the frees are of blocks another thread counted (the
/// freeing thread's counters then fall below what it ever held).
#[test]
fn a_limit_below_the_live_bytes_gives_only_the_room_frees_make() {
    for kind in [Kind::System, Kind::Heap] {
        let a = Shared(make(kind));
        // One thread allocates 100 blocks of 100 bytes; another frees half of them.
        let blocks: Vec<Shared<u8>> = std::thread::scope(|t| {
            t.spawn(|| {
                // SAFETY: `a` is live.
                (0..100)
                    .map(|_| Shared(unsafe { dispatch::alloc(a.get(), 100, 0, AllocOptions::DEFAULT) }))
                    .collect()
            })
            .join()
            .unwrap()
        });
        assert!(blocks.iter().all(|b| !b.0.is_null()));
        let (freed, kept) = blocks.split_at(50);
        std::thread::scope(|t| {
            t.spawn(|| {
                for b in freed {
                    // SAFETY: live blocks of `a` of 100 bytes.
                    unsafe { dispatch::free(a.get(), b.0, 100, 0) };
                }
            })
            .join()
            .unwrap();
        });
        let a = a.0;
        // SAFETY: `a` is live; the blocks are its own, freed with their sizes.
        unsafe {
            assert!(dispatch::set_limit(a, 4000), "{kind:?}");
            assert!(dispatch::alloc(a, 100, 0, AllocOptions::DEFAULT).is_null(), "{kind:?}: 5000 live");
            for b in &kept[..12] {
                dispatch::free(a, b.0, 100, 0);
            }
            // 3800 live: room for two more blocks, not for the 1200 bytes this thread freed.
            let given: Vec<_> = (0..10)
                .map(|_| dispatch::alloc(a, 100, 0, AllocOptions::DEFAULT))
                .filter(|p| !p.is_null())
                .collect();
            assert_eq!(given.len(), 2, "{kind:?}: {} of 10 requests given", given.len());
            assert_eq!(dispatch::stats(a).bytes_allocated, 4000, "{kind:?}");
            for p in given {
                dispatch::free(a, p, 100, 0);
            }
            for b in &kept[12..] {
                dispatch::free(a, b.0, 100, 0);
            }
            assert_eq!(dispatch::stats(a).bytes_allocated, 0, "{kind:?}");
        }
        destroy(kind, a);
    }
}

/// The region tree of the subtree-limit model: a root, two children, three grandchildren.
const TREE: [Option<usize>; 6] = [None, Some(0), Some(0), Some(1), Some(1), Some(2)];

#[derive(Clone, Debug)]
enum TreeOp {
    Alloc(usize, usize),
    Free(usize),
    Realloc(usize, usize),
    SetLimit(usize, usize),
    /// Stats on or off: a region counts while tracked or under a limit (its own or above).
    Track(usize, bool),
    /// `goo_region_allocator_reset`: the subtree's blocks go.
    Reset(usize),
    /// A grandchild destroyed and made anew.
    Recreate(usize),
    /// The region's stats started again (`goo_memory_reset_stats`): the live bytes stay.
    ResetStats(usize),
}

fn tree_op() -> impl Strategy<Value = TreeOp> {
    let region = 0..TREE.len();
    prop_oneof![
        8 => (region.clone(), 1usize..=1500).prop_map(|(r, n)| TreeOp::Alloc(r, n)),
        4 => any::<usize>().prop_map(TreeOp::Free),
        2 => (any::<usize>(), 1usize..=1500).prop_map(|(i, n)| TreeOp::Realloc(i, n)),
        3 => (region.clone(), prop_oneof![Just(0usize), 1usize..8000]).prop_map(|(r, max)| TreeOp::SetLimit(r, max)),
        1 => (region.clone(), any::<bool>()).prop_map(|(r, on)| TreeOp::Track(r, on)),
        1 => region.clone().prop_map(TreeOp::Reset),
        1 => (3usize..TREE.len()).prop_map(TreeOp::Recreate),
        1 => region.prop_map(TreeOp::ResetStats),
    ]
}

/// What the model knows of one region: as in `run`, the live bytes its stats counted
/// (signed), its refusals, its own limit and whether it is tracked.
#[derive(Clone, Copy, Default)]
struct Known {
    live: isize,
    failed: usize,
    limit: usize,
    tracked: bool,
}

/// `r` and the regions above it, nearest first.
fn tree_chain(r: usize) -> impl Iterator<Item = usize> {
    core::iter::successors(Some(r), |&r| TREE[r])
}

/// Whether `d` is `a` or under it.
fn tree_under(d: usize, a: usize) -> bool {
    tree_chain(d).any(|x| x == a)
}

/// Runs `ops` on a fresh tree and checks it against the model after each: a request fails
/// exactly when it would take the live bytes of the subtree of a limited region (summed over
/// its regions, itself included) past that region's limit, the refusal is counted in the
/// region that was asked, and every region's live count and the tree's invariants (the
/// budgets' equations among them) hold.
fn run_tree(ops: &[TreeOp]) {
    let builtin = goo_memory_core::builtin();
    let mut raw = [ptr::null_mut::<GooAllocator>(); TREE.len()];
    // SAFETY: the built-in allocator outlives the tree.
    raw[0] = unsafe { region::create(builtin, 1024, true) }.as_ptr();
    for r in 1..TREE.len() {
        // SAFETY: a live region of this test thread, destroyed by none meanwhile.
        raw[r] = unsafe { region::create_child(raw[TREE[r].unwrap()], 0) }.unwrap().as_ptr();
    }
    let mut known = [Known { tracked: true, ..Known::default() }; TREE.len()];
    // (region, block, size)
    let mut blocks: Vec<(usize, NonNull<u8>, usize)> = Vec::new();
    let covered = |known: &[Known; TREE.len()], r: usize| tree_chain(r).any(|a| known[a].limit != 0);
    let counting = |known: &[Known; TREE.len()], r: usize| known[r].tracked || covered(known, r);
    let subtree_live = |known: &[Known; TREE.len()], a: usize| -> isize {
        (0..TREE.len()).filter(|&d| tree_under(d, a)).map(|d| known[d].live).sum()
    };
    // Whether `growth` more bytes in `r` fit every limit from `r` up.
    let fits = |known: &[Known; TREE.len()], r: usize, growth: isize| {
        tree_chain(r)
            .filter(|&a| known[a].limit != 0)
            .all(|a| subtree_live(known, a) + growth <= known[a].limit as isize)
    };
    // After a request served in `r`: no limit from `r` up is passed.
    let within = |known: &[Known; TREE.len()], r: usize| {
        for a in tree_chain(r).filter(|&a| known[a].limit != 0) {
            let live = subtree_live(known, a);
            assert!(
                live <= known[a].limit as isize,
                "region {a}: {live} live under a limit of {}",
                known[a].limit
            );
        }
    };
    // SAFETY: every region is live throughout (a recreated one is replaced at once); every
    // block freed or resized is a live block of its region of its size.
    unsafe {
        for op in ops {
            match *op {
                TreeOp::Alloc(r, size) => {
                    let p = dispatch::alloc(raw[r], size, 0, AllocOptions::DEFAULT);
                    let fit = fits(&known, r, size as isize);
                    assert_eq!(!p.is_null(), fit, "alloc {size} in region {r}");
                    match NonNull::new(p) {
                        Some(p) => {
                            p.as_ptr().write_bytes(0xA5, size);
                            blocks.push((r, p, size));
                            if counting(&known, r) {
                                known[r].live += size as isize;
                            }
                            within(&known, r);
                        }
                        None => known[r].failed += 1,
                    }
                }
                TreeOp::Free(i) if !blocks.is_empty() => {
                    let (r, p, size) = blocks.swap_remove(i % blocks.len());
                    dispatch::free(raw[r], p.as_ptr(), size, 0);
                    if counting(&known, r) {
                        known[r].live -= size as isize;
                    }
                }
                TreeOp::Realloc(i, new_size) if !blocks.is_empty() => {
                    let i = i % blocks.len();
                    let (r, p, size) = blocks[i];
                    let q = dispatch::realloc(raw[r], p.as_ptr(), size, new_size, 0, AllocOptions::DEFAULT);
                    let growth = new_size.saturating_sub(size) as isize;
                    let fit = growth == 0 || fits(&known, r, growth);
                    assert_eq!(!q.is_null(), fit, "realloc {size} -> {new_size} in region {r}");
                    match NonNull::new(q) {
                        Some(q) => {
                            blocks[i] = (r, q, new_size);
                            if counting(&known, r) {
                                known[r].live += new_size as isize - size as isize;
                            }
                            if new_size > size {
                                within(&known, r);
                            }
                        }
                        None => known[r].failed += 1,
                    }
                }
                TreeOp::Free(_) | TreeOp::Realloc(..) => {}
                TreeOp::SetLimit(r, max) => {
                    assert!(dispatch::set_limit(raw[r], max));
                    assert_eq!(dispatch::limit(raw[r]), max);
                    known[r].limit = max;
                }
                TreeOp::Track(r, on) => {
                    (*raw[r]).track_stats = on;
                    known[r].tracked = on;
                }
                TreeOp::Reset(r) => {
                    region::reset(raw[r]).unwrap();
                    blocks.retain(|&(d, ..)| !tree_under(d, r));
                    for d in (0..TREE.len()).filter(|&d| tree_under(d, r)) {
                        if counting(&known, d) {
                            known[d].live = 0;
                        }
                    }
                }
                TreeOp::Recreate(r) => {
                    region::destroy(raw[r]).unwrap();
                    raw[r] = region::create_child(raw[TREE[r].unwrap()], 0).unwrap().as_ptr();
                    blocks.retain(|&(d, ..)| d != r);
                    known[r] = Known { tracked: true, ..Known::default() };
                }
                TreeOp::ResetStats(r) => {
                    goo_memory_core::policy::front::reset_stats(raw[r]);
                    // The totals restart; the live bytes stay counted (the blocks are live).
                    known[r].failed = 0;
                }
            }
            for r in 0..TREE.len() {
                let s = dispatch::stats(raw[r]);
                assert_eq!(
                    s.failed_allocations, known[r].failed,
                    "region {r}: refusals counted after {op:?}"
                );
                assert_eq!(s.bytes_allocated, known[r].live.max(0) as usize, "region {r}: live after {op:?}");
            }
            // The tree's equations, the budgets' among them.
            region::check_raw(raw[0]).unwrap();
        }
    }
    // SAFETY: the last use of the tree; the model keeps raw blocks only.
    unsafe { region::destroy(raw[0]) }.unwrap();
}

/// The model's paths in one fixed sequence (for Miri, which the random one takes minutes in):
/// refusals by the root's limit and a middle one, room made by a sibling's free, a reset and a
/// destroy, a child counting with stats off, a block freed uncounted, stats reset, a limit set
/// below what is live, limits removed.
#[test]
fn a_region_limit_covers_its_subtree_step_by_step() {
    use TreeOp::*;
    run_tree(&[
        Alloc(5, 700),
        SetLimit(0, 2000),
        Alloc(3, 900),
        Alloc(4, 500), // refused: 700 + 900 + 500 > 2000
        Alloc(0, 400), // 2000 exactly
        Alloc(2, 1),   // refused
        Free(0),       // the grandchild under the other child frees 700
        Alloc(4, 500), // fits now
        SetLimit(1, 1500),
        Alloc(1, 200),   // refused by the middle limit: 900 + 500 + 200 > 1500
        Alloc(1, 100),   // 1500 under region 1
        Reset(1),        // its subtree's 1500 go
        Alloc(2, 1400),  // 400 + 1400 <= 2000
        Track(5, false), // region 5 still counts: a limit covers it
        Alloc(5, 300),   // refused: 1800 + 300 > 2000
        SetLimit(0, 0),
        SetLimit(1, 0),
        Alloc(5, 300), // no limit: uncounted
        SetLimit(2, 1000),
        Free(2),          // region 5's 300, uncounted, freed under a limit: it counts -300
        Realloc(1, 1300), // region 2's 1400 -> 1300
        Alloc(5, 100),    // refused: 1300 - 300 + 100 > 1000
        Recreate(5),      // its -300 go: room shrinks
        ResetStats(2),    // the totals restart; region 2's 1300 live stay counted
        Alloc(2, 900),    // refused: 1300 + 900 > 1000 (a stats reset makes no room)
        Realloc(1, 200),  // region 2's 1300 -> 200
        Alloc(2, 700),    // 900 of 1000
        SetLimit(2, 500), // below the 900 live: refused until frees bring it back
        Alloc(5, 1),
        Free(2), // the 700
        Alloc(5, 1),
        Reset(0),
        Alloc(5, 500),  // exactly
        Alloc(3, 1000), // no limit above it
    ]);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: if cfg!(miri) { 4 } else { 256 }, ..ProptestConfig::default() })]

    #[test]
    #[cfg_attr(miri, ignore)]
    fn a_region_limit_covers_its_subtree(ops in prop::collection::vec(tree_op(), 1..150)) {
        run_tree(&ops);
    }
}

/// A scope takes its memory from its parent, through the parent's front door: what the scope
/// takes (its chunks, its large blocks) counts against the parent's limit, and a chunk the
/// parent refuses fails the scope's request (counted in the scope, the refusal in the
/// parent). Parents: a system allocator, an arena, a region under a limited root (the root's
/// limit covers it), another scope.
#[test]
fn a_scope_counts_against_its_parents_limit() {
    const LIMIT: usize = 24 * 1024;
    let builtin = goo_memory_core::builtin();
    for parent_kind in ["system", "arena", "region child", "scope"] {
        // SAFETY: the built-in allocator outlives everything made here; every allocator is
        // destroyed once, children and scopes before what they take memory from.
        unsafe {
            let (limited, parent) = match parent_kind {
                "system" => {
                    let a = make(Kind::System);
                    (a, a)
                }
                "arena" => {
                    let a = make(Kind::Arena);
                    (a, a)
                }
                "region child" => {
                    let root = region::create(builtin, 4096, true).as_ptr();
                    (root, region::create_child(root, 0).unwrap().as_ptr())
                }
                _ => {
                    let a = make(Kind::Scope);
                    (a, a)
                }
            };
            assert!(dispatch::set_limit(limited, LIMIT));
            let live_under_limit = || {
                if parent_kind == "region child" {
                    region::subtree_stats(limited).unwrap().bytes_allocated
                } else {
                    dispatch::stats(limited).bytes_allocated
                }
            };
            let scope = scoped::create(parent).as_ptr();
            let mut held: Vec<(*mut u8, usize)> = Vec::new();
            let mut refused = 0;
            let mut x = 0x2545_F491_4F6C_DD1Du64;
            for _ in 0..if cfg!(miri) { 60 } else { 600 } {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                if x.is_multiple_of(4) && !held.is_empty() {
                    let (p, size) = held.swap_remove((x >> 8) as usize % held.len());
                    dispatch::free(scope, p, size, 0);
                } else {
                    // Mostly small blocks (carved from chunks), some large (a parent block each).
                    let size = if x.is_multiple_of(7) {
                        9000 + (x >> 8) as usize % 4000
                    } else {
                        1 + (x >> 8) as usize % 1500
                    };
                    let p = dispatch::alloc(scope, size, 0, AllocOptions::DEFAULT);
                    if p.is_null() {
                        refused += 1;
                    } else {
                        held.push((p, size));
                    }
                }
                let live = live_under_limit();
                assert!(live <= LIMIT, "{parent_kind}: {live} bytes live under a limit of {LIMIT}");
                scoped::check_raw(scope).unwrap();
            }
            assert!(refused > 0, "{parent_kind}: the parent's limit was reached");
            assert_eq!(dispatch::stats(scope).failed_allocations, refused, "{parent_kind}: refusals counted");
            assert!(dispatch::stats(parent).failed_allocations > 0, "{parent_kind}: the parent refused");
            ((*scope).destroy.unwrap())(scope);
            assert_eq!(live_under_limit(), 0, "{parent_kind}: the scope's memory went back");
            if parent_kind == "region child" {
                region::destroy(limited).unwrap();
            } else {
                ((*limited).destroy.unwrap())(limited);
            }
        }
    }
}
