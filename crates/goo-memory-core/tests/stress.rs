//! Thread stress: several threads make random requests for a bounded time through one shared
//! tracked system allocator, the default allocator and their own thread allocators, hand
//! blocks to each other to free, and register and remove callbacks meanwhile. At the end every
//! count is exact: the shared allocator's stats and what a callback registered throughout saw
//! equal what the threads did, and nothing is live.
//!
//! `GOO_STRESS_MS` sets the time each thread runs (default 300 ms; Miri: a few hundred
//! operations instead).

use std::ffi::c_void;
use std::sync::atomic::{AtomicPtr, AtomicU64, Ordering::Relaxed};
use std::sync::{Barrier, Mutex};
use std::time::{Duration, Instant};

mod common;

use common::Rng;
use goo_memory_core::policy::callbacks::{self, MemoryEvent, EVENT_ALLOC, EVENT_FREE, EVENT_REALLOC};
use goo_memory_core::{dispatch, set_thread_allocator, AllocOptions, Allocator, GooAllocator};

const THREADS: usize = 4;

/// The allocator every thread shares; the permanent observer counts its events.
static SHARED: AtomicPtr<GooAllocator> = AtomicPtr::new(std::ptr::null_mut());
static SEEN_ALLOCS: AtomicU64 = AtomicU64::new(0);
static SEEN_FREES: AtomicU64 = AtomicU64::new(0);
static SEEN_REALLOCS: AtomicU64 = AtomicU64::new(0);

unsafe extern "C" fn observe_shared(e: *const MemoryEvent, _: *mut c_void) -> bool {
    // SAFETY: valid for the call.
    let e = unsafe { &*e };
    if e.allocator == SHARED.load(Relaxed) {
        match e.kind {
            EVENT_ALLOC => SEEN_ALLOCS.fetch_add(1, Relaxed),
            EVENT_FREE => SEEN_FREES.fetch_add(1, Relaxed),
            EVENT_REALLOC => SEEN_REALLOCS.fetch_add(1, Relaxed),
            _ => 0,
        };
    }
    true
}

/// The transient callbacks' counters, two per thread. Statics: a dispatch that read a slot just
/// before its removal may still run the callback, so its counter must outlive the removal.
static TRANSIENT_COUNTS: [AtomicU64; 2 * THREADS] = [const { AtomicU64::new(0) }; 2 * THREADS];

/// A transient callback: counts every event it sees into its `AtomicU64`.
unsafe extern "C" fn count_any(_: *const MemoryEvent, counter: *mut c_void) -> bool {
    // SAFETY: `counter` is the `AtomicU64` registered with this callback, alive until removed.
    unsafe { &*counter.cast::<AtomicU64>() }.fetch_add(1, Relaxed);
    true
}

/// A live block: where it came from, its size and alignment, and the byte it is filled with.
#[derive(Clone, Copy)]
struct Block {
    allocator: *mut GooAllocator,
    ptr: *mut u8,
    size: usize,
    align: usize,
    fill: u8,
}

// SAFETY: a block handed to another thread is freed there through its (thread-safe) allocator.
unsafe impl Send for Block {}

impl Block {
    fn new(allocator: *mut GooAllocator, size: usize, align: usize, fill: u8) -> Option<Block> {
        // SAFETY: a live allocator; a plain request.
        let ptr = unsafe { dispatch::alloc(allocator, size, align, AllocOptions::DEFAULT) };
        if ptr.is_null() {
            return None;
        }
        assert!(align == 0 || ptr.addr().is_multiple_of(align), "misaligned block");
        // SAFETY: a fresh block of `size` bytes.
        unsafe { ptr.write_bytes(fill, size) };
        Some(Block { allocator, ptr, size, align, fill })
    }

    /// Checks the fill (no other block overlapped it), then frees it.
    fn free(self) {
        self.check();
        // SAFETY: a live block of this allocator with this size and alignment.
        unsafe { dispatch::free(self.allocator, self.ptr, self.size, self.align) };
    }

    fn check(&self) {
        // SAFETY: a live block of `size` bytes.
        let bytes = unsafe { std::slice::from_raw_parts(self.ptr, self.size) };
        assert!(bytes.iter().all(|&b| b == self.fill), "a block's contents changed");
    }

    /// Resizes it (contents kept up to the smaller size), refilled.
    fn realloc(&mut self, new_size: usize) -> bool {
        self.check();
        // SAFETY: a live block of this allocator with this size and alignment.
        let p = unsafe {
            dispatch::realloc(
                self.allocator,
                self.ptr,
                self.size,
                new_size,
                self.align,
                AllocOptions::DEFAULT,
            )
        };
        if p.is_null() {
            return false;
        }
        // SAFETY: the block now has `new_size` bytes, the first min(old, new) kept.
        unsafe {
            let kept = std::slice::from_raw_parts(p, self.size.min(new_size));
            assert!(kept.iter().all(|&b| b == self.fill), "realloc lost contents");
            p.write_bytes(self.fill, new_size);
        }
        self.ptr = p;
        self.size = new_size;
        true
    }
}

/// What one thread did to the shared allocator.
#[derive(Default)]
struct Made {
    allocs: u64,
    frees: u64,
    reallocs: u64,
    ops: u64,
}

fn run_for() -> (Duration, u64) {
    if cfg!(miri) {
        return (Duration::from_secs(3600), 300);
    }
    let ms = std::env::var("GOO_STRESS_MS").ok().and_then(|v| v.parse().ok()).unwrap_or(300);
    (Duration::from_millis(ms), u64::MAX)
}

fn worker(t: usize, mailbox: &Mutex<Vec<Block>>, start: &Barrier) -> Made {
    let shared = SHARED.load(Relaxed);
    let own = Allocator::system();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ (t as u64 + 1).wrapping_mul(0x1234_5678_9abc_def1));
    let mut made = Made::default();
    let mut mine: Vec<Block> = Vec::new();
    let mut via_current: Vec<Block> = Vec::new();
    let mut own_made = (0u64, 0u64);
    let mut transient: Vec<(u64, &AtomicU64)> = Vec::new();
    let mut thread_allocator_set = false;
    let (limit, max_ops) = run_for();
    start.wait();
    let began = Instant::now();
    while made.ops < max_ops && (made.ops % 64 != 0 || began.elapsed() < limit) {
        made.ops += 1;
        let fill = (made.ops as u8) | 1;
        match rng.below(20) {
            0..=5 => {
                let range = if rng.below(8) == 0 { 20_000 } else { 512 };
                let size = 1 + rng.below(range);
                let align = [0, 8, 16, 64][rng.below(4)];
                if let Some(b) = Block::new(shared, size, align, fill) {
                    made.allocs += 1;
                    mine.push(b);
                }
            }
            6..=8 if !mine.is_empty() => {
                let b = mine.swap_remove(rng.below(mine.len()));
                b.free();
                made.frees += 1;
            }
            9 if !mine.is_empty() => {
                let i = rng.below(mine.len());
                let new_size = 1 + rng.below(3000);
                if mine[i].realloc(new_size) {
                    made.reallocs += 1;
                }
            }
            10..=11 if !mine.is_empty() => {
                // Another thread frees it.
                let b = mine.swap_remove(rng.below(mine.len()));
                mailbox.lock().unwrap().push(b);
            }
            12..=13 => {
                let taken = mailbox.lock().unwrap().pop();
                if let Some(b) = taken {
                    b.free();
                    made.frees += 1;
                }
            }
            14..=15 => {
                // Through the current allocator: this thread's own while it is set, else the
                // default. Freed through whichever served it.
                let current = goo_memory_core::current();
                if let Some(b) = Block::new(current, 1 + rng.below(300), 0, fill) {
                    if current == own.as_ptr() {
                        own_made.0 += 1;
                    }
                    via_current.push(b);
                }
                if via_current.len() > 32 {
                    let b = via_current.swap_remove(rng.below(via_current.len()));
                    if b.allocator == own.as_ptr() {
                        own_made.1 += 1;
                    }
                    b.free();
                }
            }
            16 => {
                let next = if thread_allocator_set { std::ptr::null_mut() } else { own.as_ptr() };
                // SAFETY: `own` outlives its time as this thread's allocator (cleared below).
                unsafe { set_thread_allocator(next) };
                thread_allocator_set = !thread_allocator_set;
            }
            17 if transient.len() < 2 => {
                let free = (0..2)
                    .find(|k| !transient.iter().any(|(_, c)| std::ptr::eq(*c, &TRANSIENT_COUNTS[2 * t + k])));
                let counter = &TRANSIENT_COUNTS[2 * t + free.expect("a free counter")];
                counter.store(0, Relaxed);
                let data = (counter as *const AtomicU64).cast_mut().cast();
                // SAFETY: the callback may run on any thread with any event while registered; its data
                // outlives the registration (removed below).
                let id = unsafe { callbacks::add(EVENT_ALLOC | EVENT_FREE, count_any, data) };
                if id != 0 {
                    transient.push((id, counter));
                }
            }
            18 if !transient.is_empty() => {
                let (id, counter) = transient.swap_remove(0);
                assert!(callbacks::remove(id));
                assert!(counter.load(Relaxed) <= made.ops * 4 + 1_000_000, "a callback counted nonsense");
            }
            _ => {
                // Readers race the writers (Miri checks the read is free of data races). A
                // snapshot sums the shards one after another while they change, so its fields
                // need not agree with each other: only the end's figures are exact.
                // SAFETY: a live allocator.
                std::hint::black_box(unsafe { dispatch::stats(shared) });
            }
        }
    }
    for b in mine {
        b.free();
        made.frees += 1;
    }
    for b in via_current {
        if b.allocator == own.as_ptr() {
            own_made.1 += 1;
        }
        b.free();
    }
    for (id, _counter) in transient {
        assert!(callbacks::remove(id));
    }
    // SAFETY: clearing.
    unsafe { set_thread_allocator(std::ptr::null_mut()) };
    let s = own.stats();
    assert_eq!((s.total_allocations as u64, s.total_frees as u64), own_made, "thread allocator counts");
    assert_eq!((s.allocation_count, s.bytes_allocated), (0, 0));
    made
}

#[test]
fn threads_count_exactly() {
    let shared = Allocator::system();
    SHARED.store(shared.as_ptr(), Relaxed);
    let observer =
        // SAFETY: the callback may run on any thread with any event while registered; its data
        // outlives the registration (removed below).
        unsafe { callbacks::add(EVENT_ALLOC | EVENT_FREE | EVENT_REALLOC, observe_shared, std::ptr::null_mut()) };
    assert_ne!(observer, 0);
    let mailbox = Mutex::new(Vec::new());
    let start = Barrier::new(THREADS);
    let made: Vec<Made> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                let (mailbox, start) = (&mailbox, &start);
                s.spawn(move || worker(t, mailbox, start))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut total = Made::default();
    for b in mailbox.into_inner().unwrap() {
        b.free();
        total.frees += 1;
    }
    assert!(callbacks::remove(observer));
    for m in &made {
        total.allocs += m.allocs;
        total.frees += m.frees;
        total.reallocs += m.reallocs;
        total.ops += m.ops;
    }
    let s = shared.stats();
    assert_eq!((s.allocation_count, s.bytes_allocated), (0, 0), "nothing live in the shared allocator");
    assert_eq!(s.total_allocations as u64, total.allocs);
    assert_eq!(s.total_frees as u64, total.frees);
    assert_eq!(total.allocs, total.frees);
    assert_eq!(SEEN_ALLOCS.load(Relaxed), total.allocs, "the observer saw every allocation");
    assert_eq!(SEEN_FREES.load(Relaxed), total.frees, "and every free");
    assert_eq!(SEEN_REALLOCS.load(Relaxed), total.reallocs, "and every realloc");
    assert!(total.ops >= THREADS as u64 * 100, "the threads ran ({} operations)", total.ops);
    println!("stress: {} operations on {THREADS} threads, {} allocations", total.ops, total.allocs);
}
