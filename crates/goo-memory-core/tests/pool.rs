//! Pool model test: random alloc/free orders, resets, growth past several blocks and the cap,
//! through the front door, against a plain model: objects disjoint, aligned, inside a block,
//! never handed out twice, contents intact, stats equal to the model; blocks go back to a
//! tracked parent; the pool's invariants (`pool::check_raw`) hold after every operation. Plus the
//! typed pool, and misuse in both modes: refused frees change no stats.

mod common;

use std::collections::HashSet;

use goo_memory_core::dispatch;
use goo_memory_core::pool::{self, PoolConfig, RawPool, TypedPool};
use goo_memory_core::shared_pool;
use goo_memory_core::{AllocOptions, Allocator};
use proptest::prelude::*;

#[derive(Clone, Debug)]
enum Op {
    Alloc { size_pct: u8 },
    Free { index: usize },
    Reset,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (1u8..=100).prop_map(|size_pct| Op::Alloc { size_pct }),
        4 => any::<usize>().prop_map(|index| Op::Free { index }),
        1 => Just(Op::Reset),
    ]
}

fn run(object_size: usize, align_log2: u32, per_block: usize, max_objects: usize, checked: bool, ops: &[Op]) {
    let parent = Allocator::system();
    let config = PoolConfig {
        object_size,
        alignment: 1 << align_log2,
        objects_per_block: per_block,
        max_objects,
        checked,
    };
    // SAFETY: `parent` outlives the pool (destroyed below).
    let a = unsafe { pool::create(parent.as_ptr(), config) }.unwrap().as_ptr();
    // SAFETY: `a` is a live pool.
    let p = unsafe { pool::from_raw(a) }.unwrap();
    let align = p.align();
    let mut live: Vec<(*mut u8, usize, u8)> = Vec::new();
    let (mut allocs, mut frees, mut failed) = (0usize, 0usize, 0usize);
    let mut fill = 0u8;
    for op in ops {
        match *op {
            Op::Alloc { size_pct } => {
                let size = (object_size * size_pct as usize).div_ceil(100).max(1);
                // SAFETY: a live pool.
                let q = unsafe { dispatch::alloc(a, size, 0, AllocOptions::DEFAULT) };
                let at_cap = max_objects != 0 && live.len() == max_objects;
                if at_cap {
                    assert!(q.is_null(), "the cap was exceeded");
                    failed += 1;
                    continue;
                }
                assert!(!q.is_null());
                assert_eq!(q as usize % align, 0, "misaligned");
                assert!(p.owns(q), "object outside the pool's blocks");
                fill = fill.wrapping_add(1);
                // SAFETY: a fresh object of at least `size` bytes.
                unsafe { q.write_bytes(fill, size) };
                live.push((q, size, fill));
                allocs += 1;
            }
            Op::Free { index } if !live.is_empty() => {
                let (q, size, f) = live.swap_remove(index % live.len());
                // SAFETY: a live object of this pool.
                unsafe {
                    assert!(core::slice::from_raw_parts(q, size).iter().all(|&x| x == f), "contents changed");
                    dispatch::free(a, q, size, 0);
                }
                frees += 1;
            }
            Op::Reset => {
                // SAFETY: the model forgets every object.
                assert!(unsafe { pool::reset_raw(a) });
                frees += live.len();
                live.clear();
            }
            _ => {}
        }
        let distinct: HashSet<usize> = live.iter().map(|&(q, _, _)| q as usize).collect();
        assert_eq!(distinct.len(), live.len(), "an object was handed out twice");
        let ps = p.stats();
        assert_eq!(ps.live_objects, live.len());
        assert_eq!(ps.free_objects + ps.live_objects, ps.total_objects);
        assert!(max_objects == 0 || ps.total_objects <= max_objects);
        // SAFETY: a live pool.
        let s = unsafe { dispatch::stats(a) };
        assert_eq!(s.allocation_count, live.len());
        assert_eq!(s.bytes_allocated, live.iter().map(|&(_, n, _)| n).sum::<usize>());
        assert_eq!((s.total_allocations, s.total_frees, s.failed_allocations), (allocs, frees, failed));
        assert_eq!(ps.misuse_detected, 0);
        // SAFETY: a live pool.
        assert_eq!(unsafe { pool::check_raw(a) }, Ok(()), "after {op:?}");
    }
    // SAFETY: live pool, destroyed once.
    unsafe { goo_memory_core::managed_destroy(a) };
    assert_eq!(parent.stats().allocation_count, 0, "blocks not returned");
}

proptest! {
    #![proptest_config(common::model_config())]

    #[test]
    fn pool_matches_model(
        object_size in 1usize..200,
        align_log2 in 0u32..8,
        per_block in 1usize..9,
        max_objects in prop_oneof![Just(0usize), 1usize..40],
        checked in any::<bool>(),
        ops in prop::collection::vec(op(), 1..common::ops(300, 30)),
    ) {
        run(object_size, align_log2, per_block, max_objects, checked, &ops);
    }
}

#[test]
fn typed_pool_returns_objects_on_drop() {
    use std::rc::Rc;
    let pool = TypedPool::<(u64, Rc<()>)>::new(4);
    let token = Rc::new(());
    let boxes: Vec<_> = (0..10).map(|i| pool.alloc((i, token.clone())).unwrap()).collect();
    assert_eq!(Rc::strong_count(&token), 11);
    assert_eq!(boxes[7].0, 7);
    assert_eq!(pool.stats().blocks, 3);
    assert_eq!(pool.check(), Ok(()));
    drop(boxes);
    assert_eq!(Rc::strong_count(&token), 1, "destructors ran");
    assert_eq!(pool.stats().live_objects, 0);
    assert_eq!(pool.check(), Ok(()));
}

#[test]
fn raw_pool_with_containers_and_misuse() {
    let pool = RawPool::with_config(PoolConfig { checked: true, ..PoolConfig::new(64, 16) }).unwrap();
    {
        let b = allocator_api2::boxed::Box::new_in([9u8; 64], &pool);
        assert_eq!(b[63], 9);
        assert_eq!(pool.stats().live_objects, 1);
        // Too big for an object: refused.
        assert!(allocator_api2::boxed::Box::try_new_in([0u8; 65], &pool).is_err());
    }
    assert_eq!(pool.stats().live_objects, 0);
    let a = pool.alloc().unwrap();
    // SAFETY: `a` is live; the second free is a misuse the checked pool refuses.
    unsafe {
        pool.free(a);
        pool.free(a);
    }
    assert_eq!(pool.stats().misuse_detected, 1);
    assert_eq!(pool.stats().free_objects, pool.stats().total_objects);
    assert_eq!(pool.check(), Ok(()), "a refused double free leaves the pool whole");
}

/// Frees the pool refuses, checked or not: a foreign pointer, one off an object boundary, an
/// object freed again at once. Each is counted as misuse, changes no stats, and leaves the pool
/// whole; objects are not handed out twice. Unchecked, the boundary is the stride for a
/// power-of-two stride (32), the alignment otherwise (48 at 16).
#[test]
fn refused_frees_change_no_stats_in_either_mode() {
    for checked in [true, false] {
        for (object_size, off_boundary) in [(32usize, 16usize), (48, 8)] {
            let parent = Allocator::system();
            let config = PoolConfig { checked, ..PoolConfig::new(object_size, 4) };
            // SAFETY: `parent` outlives the pool (destroyed below).
            let a = unsafe { pool::create(parent.as_ptr(), config) }.unwrap().as_ptr();
            // SAFETY: `a` is a live pool, destroyed once at the end; the bad frees are the ones
            // the pool refuses in this mode, nothing it would take for an object.
            unsafe {
                let p = pool::from_raw(a).unwrap();
                let x = dispatch::alloc(a, object_size, 0, AllocOptions::DEFAULT);
                let y = dispatch::alloc(a, object_size, 0, AllocOptions::DEFAULT);
                let mut foreign = [0u128; 8];
                let before = dispatch::stats(a);
                dispatch::free(a, foreign.as_mut_ptr().cast::<u8>().add(16), object_size, 0);
                dispatch::free(a, x.add(off_boundary), object_size, 0);
                assert_eq!(dispatch::stats(a), before, "checked {checked}, size {object_size}");
                dispatch::free(a, x, object_size, 0);
                dispatch::free(a, x, object_size, 0);
                let s = dispatch::stats(a);
                assert_eq!((s.allocation_count, s.total_frees, s.bytes_allocated), (1, 1, object_size));
                assert_eq!(p.stats().misuse_detected, 3);
                assert_eq!(p.stats().live_objects, 1);
                let (u, v) = (
                    dispatch::alloc(a, object_size, 0, AllocOptions::DEFAULT),
                    dispatch::alloc(a, object_size, 0, AllocOptions::DEFAULT),
                );
                assert!(u != v && u != y && v != y, "an object handed out twice");
                assert_eq!(pool::check_raw(a), Ok(()));
                goo_memory_core::managed_destroy(a);
            }
            assert_eq!(parent.stats().allocation_count, 0);
        }
    }
}

/// Resizes the pool refuses, as it refuses the frees: of a foreign pointer, one off an object
/// boundary, and (checked, or the object freed last) an object already free. Each is null,
/// counted as misuse, changes no stats; a freed object never comes back as a live block while
/// it stays free, so no object is handed out twice. The shared pool refuses the first two.
#[test]
fn refused_resizes_change_no_stats() {
    for kind in ["checked", "unchecked", "shared"] {
        let parent = Allocator::system();
        let config = PoolConfig { checked: kind == "checked", ..PoolConfig::new(64, 4) };
        // SAFETY: `parent` outlives the pool (destroyed below).
        let a = unsafe {
            if kind == "shared" {
                shared_pool::create(parent.as_ptr(), config)
            } else {
                pool::create(parent.as_ptr(), config)
            }
        }
        .unwrap()
        .as_ptr();
        let misuse = || {
            // SAFETY: `a` is live until the end of the loop's body.
            unsafe {
                match shared_pool::from_raw(a) {
                    Some(p) => p.stats().unwrap().misuse_detected,
                    None => pool::from_raw(a).unwrap().stats().misuse_detected,
                }
            }
        };
        // SAFETY: `a` is a live pool, destroyed once at the end; the bad resizes are ones the
        // pool refuses in this mode, nothing it would take for a live object.
        unsafe {
            let x = dispatch::alloc(a, 64, 0, AllocOptions::DEFAULT);
            let mut foreign = [0u128; 8];
            let before = dispatch::stats(a);
            let refused = [foreign.as_mut_ptr().cast::<u8>().add(16), x.add(16)];
            for bad in refused {
                assert!(dispatch::realloc(a, bad, 64, 32, 0, AllocOptions::DEFAULT).is_null(), "{kind}");
            }
            let s = dispatch::stats(a);
            assert_eq!((s.bytes_allocated, s.allocation_count), (before.bytes_allocated, 1), "{kind}");
            assert_eq!(misuse(), 2, "{kind}");
            if kind != "shared" {
                dispatch::free(a, x, 64, 0);
                assert!(dispatch::realloc(a, x, 64, 32, 0, AllocOptions::DEFAULT).is_null(), "{kind}");
                let s = dispatch::stats(a);
                assert_eq!((s.bytes_allocated, s.allocation_count, s.total_frees), (0, 0, 1), "{kind}");
                assert_eq!(misuse(), 3, "{kind}");
                let (u, v) = (
                    dispatch::alloc(a, 64, 0, AllocOptions::DEFAULT),
                    dispatch::alloc(a, 64, 0, AllocOptions::DEFAULT),
                );
                assert!(!u.is_null() && !v.is_null() && u != v, "{kind}: an object handed out twice");
                dispatch::free(a, u, 64, 0);
                dispatch::free(a, v, 64, 0);
            } else {
                dispatch::free(a, x, 64, 0);
            }
            goo_memory_core::managed_destroy(a);
        }
        assert_eq!(parent.stats().allocation_count, 0, "{kind}");
    }
}
