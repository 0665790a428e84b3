//! Issue 9: the cost of callbacks and stats on the alloc+free pair (system allocator, C ABI),
//! with raw malloc as the baseline, in one run.

use std::hint::black_box;

use goo_memory::memory::goo_system_allocator_create;
use goo_memory::stats::{goo_memory_add_callback, goo_memory_remove_callback};
use goo_memory_core::policy::callbacks::{MemoryEvent, EVENT_ALLOC, EVENT_FREE};
use goo_memory_core::GooAllocator;

use crate::harness::{c_pairs, compare, target, timed, Contender};

static SEEN: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

unsafe extern "C" fn observe(e: *const MemoryEvent, _: *mut libc::c_void) -> bool {
    // SAFETY: valid for the call.
    black_box(unsafe { (*e).size });
    // A cheap observer (this bench is single-threaded: a plain load and store).
    SEEN.store(SEEN.load(std::sync::atomic::Ordering::Relaxed) + 1, std::sync::atomic::Ordering::Relaxed);
    true
}

pub fn run(quick: bool) {
    let (iters, rounds) = if quick { (200_000, 5) } else { (2_000_000, 15) };
    let malloc: unsafe extern "C" fn(usize) -> *mut libc::c_void = black_box(libc::malloc);
    let cfree: unsafe extern "C" fn(*mut libc::c_void) = black_box(libc::free);
    let plain = goo_system_allocator_create();
    let tracked = goo_system_allocator_create();
    // SAFETY: fresh, unshared.
    unsafe { (*plain).track_stats = false };
    let with_observer = |a: *mut GooAllocator, n: u64| {
        // SAFETY: `observe` takes no data and may run on any thread.
        let id = unsafe {
            goo_memory_add_callback(EVENT_ALLOC | EVENT_FREE, Some(observe), core::ptr::null_mut())
        };
        let d = c_pairs(a, 64, n);
        goo_memory_remove_callback(id);
        d
    };
    let rows = compare(
        "64-byte alloc+free pairs, system allocator via the C ABI: callbacks and stats",
        0,
        iters,
        rounds,
        &mut [
            Contender::new("raw malloc/free", |n| {
                timed(n, || {
                    // SAFETY: plain malloc/free.
                    unsafe {
                        let p = malloc(64);
                        black_box(p);
                        cfree(p);
                    }
                })
            }),
            Contender::new("goo, no callback, stats off", |n| c_pairs(plain, 64, n)),
            Contender::new("goo, no callback, stats on", |n| c_pairs(tracked, 64, n)),
            Contender::new("goo, one observing callback, stats off", |n| with_observer(plain, n)),
            Contender::new("goo, one observing callback, stats on", |n| with_observer(tracked, n)),
        ],
    );
    // The ratios are to raw malloc; the stricter reading (to the library's own
    // no-callback pair, which the thread cache made faster than malloc) is printed too.
    target("one observer vs raw malloc (stats off)", rows[3].median_ratio, 1.5, true);
    target("one observer vs no callback (stats off)", rows[3].median_ratio / rows[1].median_ratio, 1.5, true);
    println!("(callback invocations observed: {})", SEEN.load(std::sync::atomic::Ordering::Relaxed));
    // SAFETY: created above, unused from here.
    unsafe {
        ((*plain).destroy.unwrap())(plain);
        ((*tracked).destroy.unwrap())(tracked);
    }
}
