//! Issue 3: 64-byte alloc+free pairs through the C ABI versus glibc malloc/free.

use std::hint::black_box;
use std::sync::Barrier;
use std::time::{Duration, Instant};

use goo_memory::memory::goo_system_allocator_create;
use goo_memory_core::GooAllocator;

use crate::harness::{c_pairs, compare, target, timed, Contender};

type Malloc = unsafe extern "C" fn(usize) -> *mut libc::c_void;
type Free = unsafe extern "C" fn(*mut libc::c_void);

#[derive(Clone, Copy)]
struct Libc {
    malloc: Malloc,
    free: Free,
}

#[derive(Clone, Copy)]
struct Shared(*mut GooAllocator);
// SAFETY: the library allocator is thread-safe (system backend, sharded stats).
unsafe impl Send for Shared {}
// SAFETY: as above.
unsafe impl Sync for Shared {}

impl Shared {
    /// Through a method, so closures capture the whole `Shared` (Sync), not the raw field.
    fn ptr(self) -> *mut GooAllocator {
        self.0
    }
}

fn malloc_pairs(c: Libc, iters: u64) -> Duration {
    timed(iters, || {
        // SAFETY: plain malloc/free.
        unsafe {
            let p = (c.malloc)(64);
            black_box(p);
            (c.free)(p);
        }
    })
}

/// Wall time for two threads doing `iters` operations each, started together.
fn two_threads(iters: u64, work: impl Fn(u64) -> Duration + Sync) -> Duration {
    let barrier = Barrier::new(3);
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                barrier.wait();
                work(iters);
                barrier.wait();
            });
        }
        barrier.wait();
        let start = Instant::now();
        barrier.wait();
        start.elapsed()
    })
}

pub fn run(quick: bool) {
    let (iters, rounds) = if quick { (200_000, 5) } else { (2_000_000, 15) };
    let c = Libc { malloc: black_box(libc::malloc), free: black_box(libc::free) };
    let untracked = goo_system_allocator_create();
    let tracked = goo_system_allocator_create();
    // SAFETY: freshly created, not shared yet.
    unsafe { (*untracked).track_stats = false };
    let (u, t) = (Shared(untracked), Shared(tracked));

    let rows = compare(
        "64-byte alloc+free pairs, one thread, through the C ABI",
        0,
        iters,
        rounds,
        &mut [
            Contender::new("glibc malloc/free", |n| malloc_pairs(c, n)),
            Contender::new("goo_memory_*_with(system), stats off", |n| c_pairs(u.ptr(), 64, n)),
            Contender::new("goo_memory_*_with(system), stats on", |n| c_pairs(t.ptr(), 64, n)),
        ],
    );
    target("stats off vs malloc", rows[1].median_ratio, 1.25, true);
    target("stats on vs malloc", rows[2].median_ratio, 1.6, true);

    let rows = compare(
        "64-byte alloc+free pairs, two threads (wall time per pair per thread)",
        0,
        iters,
        rounds,
        &mut [
            Contender::new("glibc malloc/free, 2 threads", |n| two_threads(n, |k| malloc_pairs(c, k))),
            Contender::new("goo, one tracked allocator shared by 2 threads", |n| {
                two_threads(n, |k| c_pairs(t.ptr(), 64, k))
            }),
        ],
    );
    target("2 threads on one tracked allocator vs malloc 2 threads", rows[1].median_ratio, 2.0, true);
    // SAFETY: created above, no longer used.
    unsafe {
        let s = goo_memory::memory::goo_get_alloc_stats(tracked);
        assert_eq!(s.allocation_count, 0);
        ((*untracked).destroy.unwrap())(untracked);
        ((*tracked).destroy.unwrap())(tracked);
    }
}
