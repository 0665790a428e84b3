//! Issue 5: 64-byte objects: LIFO alloc+free pairs and a random-order churn over 1M live
//! objects, pool (Rust API and C ABI) against mimalloc and glibc malloc; the typed pool against
//! the `slab` crate; the cost of checked mode.

use std::hint::black_box;
use std::time::{Duration, Instant};

use goo_memory_core::pool::{PoolConfig, RawPool, TypedPool};

use crate::harness::{c_abi, c_pairs, compare, target, timed, Contender};

const SIZE: usize = 64;

fn xorshift(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

/// A churn contender: `live` slots, each op frees a random one and allocates it again.
struct Churn<A, F> {
    slots: Vec<*mut u8>,
    alloc: A,
    free: F,
    rng: u64,
}

impl<A: FnMut() -> *mut u8, F: FnMut(*mut u8)> Churn<A, F> {
    fn new(live: usize, mut alloc: A, free: F) -> Self {
        let slots = (0..live).map(|_| alloc()).collect();
        Churn { slots, alloc, free, rng: 0x9e37_79b9_7f4a_7c15 }
    }

    fn run(&mut self, n: u64) -> Duration {
        let t = Instant::now();
        for _ in 0..n {
            let i = (xorshift(&mut self.rng) % self.slots.len() as u64) as usize;
            (self.free)(self.slots[i]);
            self.slots[i] = black_box((self.alloc)());
        }
        t.elapsed()
    }

    fn drain(&mut self) {
        for p in self.slots.drain(..) {
            (self.free)(p);
        }
    }
}

pub fn run(quick: bool) {
    let (iters, rounds) = if quick { (200_000, 5) } else { (2_000_000, 15) };
    // Stats off, like the peers (a new pool counts them, as the C pool does).
    let checked = RawPool::with_config(PoolConfig { checked: true, ..PoolConfig::new(SIZE, 1024) })
        .unwrap()
        .with_stats(false);
    let pool = RawPool::with_config(PoolConfig { checked: false, ..PoolConfig::new(SIZE, 1024) })
        .unwrap()
        .with_stats(false);
    let c_pool = {
        let o = PoolConfig { checked: false, ..PoolConfig::new(SIZE, 1024) };
        // SAFETY: the built-in allocator is a static.
        unsafe { goo_memory_core::pool::create(goo_memory_core::builtin(), o) }.unwrap().as_ptr()
    };
    // SAFETY: fresh, unshared: compare the mechanism with stats off, like the peers.
    unsafe { (*c_pool).track_stats = false };
    let mi_malloc: unsafe extern "C" fn(usize) -> *mut libc::c_void = black_box(libmimalloc_sys::mi_malloc);
    let mi_free: unsafe extern "C" fn(*mut libc::c_void) = black_box(libmimalloc_sys::mi_free);
    let malloc: unsafe extern "C" fn(usize) -> *mut libc::c_void = black_box(libc::malloc);
    let free: unsafe extern "C" fn(*mut libc::c_void) = black_box(libc::free);
    let raw_pairs = |p: &RawPool, n| {
        timed(n, || {
            let o = p.alloc().unwrap();
            black_box(o);
            // SAFETY: just allocated.
            unsafe { p.free(o) };
        })
    };
    let rows = compare(
        "64-byte alloc+free pairs (LIFO)",
        0,
        iters,
        rounds,
        &mut [
            Contender::new("mimalloc mi_malloc/mi_free", |n| {
                timed(n, || {
                    // SAFETY: plain mimalloc calls.
                    unsafe {
                        let p = mi_malloc(SIZE);
                        black_box(p);
                        mi_free(p);
                    }
                })
            }),
            Contender::new("glibc malloc/free", |n| {
                timed(n, || {
                    // SAFETY: plain libc calls.
                    unsafe {
                        let p = malloc(SIZE);
                        black_box(p);
                        free(p);
                    }
                })
            }),
            Contender::new("goo RawPool (Rust API)", |n| raw_pairs(&pool, n)),
            Contender::new("goo pool via goo_memory_*_with (C ABI)", |n| c_pairs(c_pool, SIZE, n)),
            Contender::new("goo RawPool, checked mode", |n| raw_pairs(&checked, n)),
        ],
    );
    target("LIFO pairs: Rust API vs mimalloc", rows[2].median_ratio, 0.5, true);
    target("LIFO pairs: Rust API vs glibc", rows[2].median_ratio / rows[1].median_ratio, 0.5, true);
    target("LIFO pairs: C ABI vs mimalloc", rows[3].median_ratio, 1.0, true);
    println!("checked mode costs {:.2}x the unchecked pool", rows[4].median_ratio / rows[2].median_ratio);

    // Random-order churn over many live objects.
    let live = if quick { 100_000 } else { 1_000_000 };
    let (alloc, cfree) = c_abi();
    // Each contender frees only blocks it allocated itself.
    let mut mi = Churn::new(
        live,
        // SAFETY: plain mimalloc call.
        || unsafe { mi_malloc(SIZE).cast() },
        // SAFETY: a block from mi_malloc.
        |p| unsafe { mi_free(p.cast()) },
    );
    let mut gl = Churn::new(
        live,
        // SAFETY: plain malloc call.
        || unsafe { malloc(SIZE).cast() },
        // SAFETY: a block from malloc.
        |p| unsafe { free(p.cast()) },
    );
    let mut rp = Churn::new(
        live,
        || pool.alloc().unwrap().as_ptr(),
        // SAFETY: a live object of this pool (non-null: `alloc` succeeded).
        |p| unsafe { pool.free(core::ptr::NonNull::new_unchecked(p)) },
    );
    let mut cp = Churn::new(
        live,
        // SAFETY: a live pool.
        || unsafe { alloc(c_pool, SIZE).cast() },
        // SAFETY: a live object of that pool.
        |p| unsafe { cfree(c_pool, p.cast(), SIZE) },
    );
    let rows = compare(
        &format!("random-order churn over {live} live 64-byte objects (free one, allocate one)"),
        0,
        iters,
        rounds,
        &mut [
            Contender::new("mimalloc", |n| mi.run(n)),
            Contender::new("glibc malloc", |n| gl.run(n)),
            Contender::new("goo RawPool (Rust API)", |n| rp.run(n)),
            Contender::new("goo pool (C ABI)", |n| cp.run(n)),
        ],
    );
    target("churn: Rust API vs mimalloc", rows[2].median_ratio, 0.5, true);
    target("churn: Rust API vs glibc", rows[2].median_ratio / rows[1].median_ratio, 0.5, true);
    target("churn: C ABI vs mimalloc", rows[3].median_ratio, 1.0, true);
    mi.drain();
    gl.drain();
    rp.drain();
    cp.drain();

    // Typed: the pool's owning handle against slab's keys.
    let typed = TypedPool::<[u64; 8]>::new(1024).with_stats(false);
    let mut slab = slab::Slab::<[u64; 8]>::with_capacity(1024);
    compare(
        "typed 64-byte objects: insert + remove (LIFO)",
        0,
        iters,
        rounds,
        &mut [
            Contender::new("slab::Slab insert/remove", |n| {
                timed(n, || {
                    let k = slab.insert([1; 8]);
                    black_box(slab.remove(black_box(k)));
                })
            }),
            Contender::new("goo TypedPool alloc/drop", |n| {
                timed(n, || {
                    let b = typed.alloc([1; 8]).unwrap();
                    black_box(&*b);
                })
            }),
        ],
    );

    let s = pool.stats();
    println!(
        "\npool memory: 0 bytes per object (free objects hold the list link); block overhead {} bytes of header per block of {} objects ({:.3} bytes/object); checked mode adds a bitmap of {} bytes per block",
        (s.bytes_reserved - s.total_objects * s.object_stride) / s.blocks.max(1),
        s.objects_per_block,
        (s.bytes_reserved - s.total_objects * s.object_stride) as f64 / s.total_objects.max(1) as f64,
        s.objects_per_block.div_ceil(8)
    );
    // SAFETY: created above, unused from here.
    unsafe { goo_memory_core::managed_destroy(c_pool) };
}
