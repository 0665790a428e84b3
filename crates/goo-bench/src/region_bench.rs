//! Issue 6: small allocations in a region against the arena (same run), and the cost of a child
//! region's life (create, 10 allocations, one cleanup, destroy) next to talloc (loaded at run
//! time from Debian's libtalloc2 when installed) and the arena.

use core::alloc::Layout;
use std::ffi::{c_char, c_int, c_void, CString};
use std::hint::black_box;
use std::time::{Duration, Instant};

use goo_memory::memory::goo_memory_alloc_with;
use goo_memory::region::{goo_region_add_cleanup, goo_region_allocator_destroy, goo_region_create_child};
use goo_memory_core::arena::Arena;
use goo_memory_core::region::Region;
use goo_memory_core::GooAllocator;

use crate::harness::{compare, target, Contender};

const OBJECTS: u64 = 10_000;

type NamedConst = unsafe extern "C" fn(*const c_void, usize, *const c_char) -> *mut c_void;
type TallocFree = unsafe extern "C" fn(*mut c_void, *const c_char) -> c_int;
type SetDestructor = unsafe extern "C" fn(*const c_void, Option<unsafe extern "C" fn(*mut c_void) -> c_int>);

/// The few talloc entry points the comparison needs, resolved with dlopen.
#[derive(Clone, Copy)]
struct Talloc {
    named_const: NamedConst,
    free: TallocFree,
    set_destructor: SetDestructor,
}

fn load_talloc() -> Option<Talloc> {
    let name = CString::new("libtalloc.so.2").unwrap();
    // SAFETY: dlopen/dlsym with valid C strings; the symbols have these C signatures in
    // talloc.h (talloc 2.x ABI).
    unsafe {
        let lib = libc::dlopen(name.as_ptr(), libc::RTLD_NOW);
        if lib.is_null() {
            return None;
        }
        let sym = |s: &str| {
            let s = CString::new(s).unwrap();
            let p = libc::dlsym(lib, s.as_ptr());
            (!p.is_null()).then_some(p)
        };
        Some(Talloc {
            named_const: core::mem::transmute::<*mut c_void, NamedConst>(sym("talloc_named_const")?),
            free: core::mem::transmute::<*mut c_void, TallocFree>(sym("_talloc_free")?),
            set_destructor: core::mem::transmute::<*mut c_void, SetDestructor>(sym(
                "_talloc_set_destructor",
            )?),
        })
    }
}

unsafe extern "C" fn talloc_destructor(_: *mut c_void) -> c_int {
    black_box(0)
}

unsafe extern "C" fn goo_cleanup(arg: *mut c_void) {
    black_box(arg);
}

fn per_op(d: Duration, n: u64) -> Duration {
    d / n as u32
}

pub fn run(quick: bool) {
    let (runs, rounds) = if quick { (20, 5) } else { (200, 15) };
    let layout = Layout::from_size_align(32, 8).unwrap();

    // Small allocations: region vs arena, Rust API and C ABI.
    let mut arena = Arena::with_capacity(OBJECTS as usize * 40);
    // Same policy on both sides: regions count stats (their reports need them).
    arena.set_track_stats(true);
    let mut region = Region::new(OBJECTS as usize * 40 + 4096, true);
    let c_arena = goo_memory::arena::goo_arena_allocator_create(OBJECTS as usize * 40);
    let c_region = goo_memory::region::goo_region_allocator_create(OBJECTS as usize * 40 + 4096, true);
    let alloc: unsafe extern "C" fn(*mut GooAllocator, usize) -> *mut c_void =
        black_box(goo_memory_alloc_with);
    let rows = compare(
        "32-byte allocations into a warm region vs the arena, stats on for both (reset + 10000 allocs per run)",
        0,
        runs,
        rounds,
        &mut [
            Contender::new("goo Arena (Rust API)", |n| {
                let t = Instant::now();
                for _ in 0..n {
                    arena.reset();
                    for _ in 0..OBJECTS {
                        black_box(arena.alloc_layout(black_box(layout)));
                    }
                }
                per_op(t.elapsed(), OBJECTS)
            }),
            Contender::new("goo Region (Rust API)", |n| {
                let t = Instant::now();
                for _ in 0..n {
                    region.reset();
                    for _ in 0..OBJECTS {
                        black_box(region.try_alloc_layout(black_box(layout)).unwrap());
                    }
                }
                per_op(t.elapsed(), OBJECTS)
            }),
            Contender::new("goo arena via goo_memory_alloc_with", |n| {
                let t = Instant::now();
                for _ in 0..n {
                    // SAFETY: live allocators; nothing from before the reset is used.
                    unsafe {
                        goo_memory::arena::goo_arena_allocator_reset(c_arena);
                        for _ in 0..OBJECTS {
                            black_box(alloc(c_arena, black_box(32)));
                        }
                    }
                }
                per_op(t.elapsed(), OBJECTS)
            }),
            Contender::new("goo region via goo_memory_alloc_with", |n| {
                let t = Instant::now();
                for _ in 0..n {
                    // SAFETY: as above.
                    unsafe {
                        goo_memory::region::goo_region_allocator_reset(c_region);
                        for _ in 0..OBJECTS {
                            black_box(alloc(c_region, black_box(32)));
                        }
                    }
                }
                per_op(t.elapsed(), OBJECTS)
            }),
        ],
    );
    target("region vs arena, Rust API", rows[1].median_ratio, 1.2, true);
    target("region vs arena, C ABI", rows[3].median_ratio / rows[2].median_ratio, 1.2, true);
    // SAFETY: created above, unused from here (no block of it is used after).
    unsafe { goo_region_allocator_destroy(c_region) };
    // SAFETY: created above, unused from here.
    unsafe { ((*c_arena).destroy.unwrap())(c_arena) };

    // A child's life: create, 10 allocations, one cleanup, destroy.
    let cycles = if quick { 2_000 } else { 20_000 };
    let root = Region::new(4096, true);
    let c_root = goo_memory::region::goo_region_allocator_create(4096, true);
    let talloc = load_talloc();
    let loc = CString::new("bench").unwrap();
    // SAFETY: a root talloc context (NULL parent).
    let t_root = talloc.map(|t| unsafe { (t.named_const)(core::ptr::null(), 0, loc.as_ptr()) });
    let mut contenders = vec![
        Contender::new("goo Region child (Rust API)", |n| {
            let t = Instant::now();
            for _ in 0..n {
                let child = root.child(1024);
                for _ in 0..10 {
                    black_box(child.try_alloc_layout(layout).unwrap());
                }
                child.on_cleanup(|| {
                    black_box(());
                });
            }
            t.elapsed()
        }),
        Contender::new("goo region child (C ABI)", |n| {
            let t = Instant::now();
            for _ in 0..n {
                // SAFETY: live regions; the child is destroyed before the next cycle.
                unsafe {
                    let child = goo_region_create_child(c_root, 1024);
                    for _ in 0..10 {
                        black_box(alloc(child, 32));
                    }
                    goo_region_add_cleanup(child, Some(goo_cleanup), core::ptr::null_mut());
                    goo_region_allocator_destroy(child);
                }
            }
            t.elapsed()
        }),
        Contender::new("goo Arena (create, 10 allocs, drop)", |n| {
            let t = Instant::now();
            for _ in 0..n {
                let a = Arena::with_capacity(1024).with_stats(false);
                for _ in 0..10 {
                    black_box(a.alloc_layout(layout));
                }
            }
            t.elapsed()
        }),
    ];
    if let (Some(tl), Some(t_root)) = (talloc, t_root) {
        let loc = loc.as_ptr();
        contenders.insert(
            0,
            Contender::new("talloc (talloc_new, 10 x talloc_size, destructor, talloc_free)", move |n| {
                let t = Instant::now();
                for _ in 0..n {
                    // SAFETY: talloc calls on a live context tree; the child is freed each cycle.
                    unsafe {
                        let child = (tl.named_const)(t_root, 0, loc);
                        let mut last = core::ptr::null_mut();
                        for _ in 0..10 {
                            last = black_box((tl.named_const)(child, 32, loc));
                        }
                        (tl.set_destructor)(last, Some(talloc_destructor));
                        (tl.free)(child, loc);
                    }
                }
                t.elapsed()
            }),
        );
    } else {
        println!("\n(talloc not found: install Debian's libtalloc2 to compare with it)");
    }
    let rows = compare(
        "child region life: create, 10 x 32 B allocations, one cleanup, destroy (ns per cycle)",
        0,
        cycles,
        rounds,
        &mut contenders,
    );
    for r in &rows {
        println!("cycle: {:<66} {:>8.0} ns", r.name, r.median_ns);
    }
    // SAFETY: the root region, unused from here.
    unsafe { goo_region_allocator_destroy(c_root) };
    if let (Some(tl), Some(t_root)) = (talloc, t_root) {
        // SAFETY: the root context, freed once.
        unsafe { (tl.free)(t_root, loc.as_ptr()) };
    }
}
