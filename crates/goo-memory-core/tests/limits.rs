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
    const LIMIT: usize = 64 * 1024;
    for kind in [Kind::System, Kind::Heap, Kind::CMade] {
        let a = Shared(make(kind));
        // SAFETY: `a` is live.
        assert!(unsafe { dispatch::set_limit(a.0, LIMIT) });
        let held = AtomicUsize::new(0);
        let refused = AtomicUsize::new(0);
        let start = Barrier::new(4);
        std::thread::scope(|t| {
            for seed in 0..4u64 {
                let (held, refused, start) = (&held, &refused, &start);
                t.spawn(move || {
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
                });
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
