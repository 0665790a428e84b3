//! Region model test: random trees (create child, allocate, reset, destroy, add and cancel
//! cleanups) checked against a plain model: every cleanup runs exactly once and in the right
//! order (children depth first in creation order, then the region's own cleanups newest first),
//! subtree stats equal the sum of their regions, the tree's invariants hold after every operation,
//! and all memory goes back to a tracked parent. Some cleanups meddle: they try to destroy or
//! reset their own region or one above it, which the busy rule refuses, and check the tree's
//! invariants from inside the running operation.

mod common;

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::ffi::c_void;
use std::rc::Rc;

use goo_memory_core::dispatch;
use goo_memory_core::region::{self, Region};
use goo_memory_core::{AllocOptions, Allocator, GooAllocator};
use proptest::prelude::*;

#[derive(Clone, Debug)]
enum Op {
    Child {
        parent: usize,
        region_size: usize,
    },
    Alloc {
        region: usize,
        size: usize,
    },
    AddCleanup {
        region: usize,
    },
    Cancel {
        region: usize,
        which: usize,
    },
    Reset {
        region: usize,
    },
    Destroy {
        region: usize,
    },
    /// A cleanup on `region` that tries to destroy (or reset) the region `up` levels above it.
    Meddle {
        region: usize,
        up: usize,
        destroy: bool,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (any::<usize>(), prop_oneof![Just(0usize), 256usize..4096]).prop_map(|(parent, region_size)| Op::Child { parent, region_size }),
        5 => (any::<usize>(), 1usize..3000).prop_map(|(region, size)| Op::Alloc { region, size }),
        3 => any::<usize>().prop_map(|region| Op::AddCleanup { region }),
        1 => (any::<usize>(), any::<usize>()).prop_map(|(region, which)| Op::Cancel { region, which }),
        1 => any::<usize>().prop_map(|region| Op::Reset { region }),
        2 => any::<usize>().prop_map(|region| Op::Destroy { region }),
        2 => (any::<usize>(), any::<usize>(), any::<bool>()).prop_map(|(region, up, destroy)| Op::Meddle { region, up, destroy }),
    ]
}

struct Node {
    raw: *mut GooAllocator,
    parent: Option<usize>,
    children: Vec<usize>,
    live_bytes: usize,
    live_blocks: usize,
    /// Allocations made and blocks freed (by resets), as the region's stats count them.
    allocs: usize,
    frees: usize,
    /// (cleanup id in the library, token it logs)
    cleanups: Vec<(u64, u64)>,
    alive: bool,
}

thread_local! {
    static LOG: RefCell<Vec<u64>> = const { RefCell::new(Vec::new()) };
    /// Meddling cleanups by token: the region each one tries to destroy (or reset).
    static MEDDLE: RefCell<HashMap<u64, (*mut GooAllocator, bool)>> = RefCell::new(HashMap::new());
    /// The tree's root, checked from inside meddling cleanups.
    static ROOT: Cell<*mut GooAllocator> = const { Cell::new(core::ptr::null_mut()) };
    /// What went wrong inside cleanups (a panic must not cross their C boundary).
    static WRONG: RefCell<Vec<String>> = const { RefCell::new(Vec::new()) };
}

unsafe extern "C" fn log_token(arg: *mut c_void) {
    LOG.with(|l| l.borrow_mut().push(arg as u64));
}

/// Logs its token, then tries to destroy or reset its target: always the cleanup's own region or
/// one above it, so the busy rule must refuse; the tree's invariants hold meanwhile.
unsafe extern "C" fn meddle(arg: *mut c_void) {
    LOG.with(|l| l.borrow_mut().push(arg as u64));
    let (target, destroy) = MEDDLE.with(|m| m.borrow()[&(arg as u64)]);
    // SAFETY: the model holds raw blocks only, on this thread; the busy rule refuses these.
    let got = unsafe {
        if destroy {
            region::destroy(target)
        } else {
            region::reset(target)
        }
    };
    // SAFETY: a live region of this test thread, destroyed by none meanwhile.
    let check = unsafe { region::check_raw(ROOT.with(Cell::get)) };
    if got != Err(region::RegionError::Busy) || check.is_err() {
        WRONG
            .with(|w| w.borrow_mut().push(format!("{target:p} destroy={destroy}: {got:?}, check {check:?}")));
    }
}

/// The cleanups a reset (`destroy == false`) or destroy of `i` must run, in order.
fn expected(nodes: &mut [Node], i: usize, destroy: bool, out: &mut Vec<u64>) {
    for c in nodes[i].children.clone() {
        expected(nodes, c, destroy, out);
    }
    out.extend(nodes[i].cleanups.drain(..).rev().map(|(_, token)| token));
    if destroy {
        nodes[i].alive = false;
        if let Some(p) = nodes[i].parent {
            nodes[p].children.retain(|&c| c != i);
        }
    } else {
        nodes[i].frees += nodes[i].live_blocks;
        nodes[i].live_bytes = 0;
        nodes[i].live_blocks = 0;
    }
}

fn subtree_bytes(nodes: &[Node], i: usize) -> usize {
    nodes[i].live_bytes + nodes[i].children.iter().map(|&c| subtree_bytes(nodes, c)).sum::<usize>()
}

fn run(ops: &[Op]) {
    let parent = Allocator::system();
    // SAFETY: `parent` outlives the tree (destroyed below, before `parent` drops).
    let root = unsafe { region::create(parent.as_ptr(), 1024, true) }.as_ptr();
    let mut nodes = vec![Node {
        raw: root,
        parent: None,
        children: vec![],
        live_bytes: 0,
        live_blocks: 0,
        allocs: 0,
        frees: 0,
        cleanups: vec![],
        alive: true,
    }];
    let mut next_token = 1u64;
    LOG.with(|l| l.borrow_mut().clear());
    ROOT.with(|r| r.set(root));
    MEDDLE.with(|m| m.borrow_mut().clear());
    let alive = |nodes: &[Node], k: usize| -> usize {
        let ids: Vec<usize> = (0..nodes.len()).filter(|&i| nodes[i].alive).collect();
        ids[k % ids.len()]
    };
    for op in ops {
        match *op {
            Op::Child { parent, region_size } => {
                let p = alive(&nodes, parent);
                // SAFETY: a live region of this test thread, destroyed by none meanwhile.
                let raw = unsafe { region::create_child(nodes[p].raw, region_size) }.unwrap().as_ptr();
                nodes.push(Node {
                    raw,
                    parent: Some(p),
                    children: vec![],
                    live_bytes: 0,
                    live_blocks: 0,
                    allocs: 0,
                    frees: 0,
                    cleanups: vec![],
                    alive: true,
                });
                let id = nodes.len() - 1;
                nodes[p].children.push(id);
            }
            Op::Alloc { region, size } => {
                let r = alive(&nodes, region);
                // SAFETY: a live region.
                let p = unsafe { dispatch::alloc(nodes[r].raw, size, 8, AllocOptions::ZERO) };
                assert!(!p.is_null());
                nodes[r].live_bytes += size;
                nodes[r].live_blocks += 1;
                nodes[r].allocs += 1;
            }
            Op::AddCleanup { region } => {
                let r = alive(&nodes, region);
                let token = next_token;
                next_token += 1;
                // SAFETY: `log_token` takes any argument, on this thread.
                let id = unsafe {
                    region::add_cleanup(
                        nodes[r].raw,
                        log_token,
                        core::ptr::without_provenance_mut(token as usize),
                    )
                }
                .unwrap();
                nodes[r].cleanups.push((id, token));
            }
            Op::Meddle { region, up, destroy } => {
                let r = alive(&nodes, region);
                let mut target = r;
                for _ in 0..up % 3 {
                    target = nodes[target].parent.unwrap_or(target);
                }
                let token = next_token;
                next_token += 1;
                MEDDLE.with(|m| m.borrow_mut().insert(token, (nodes[target].raw, destroy)));
                // SAFETY: `meddle` takes any token `MEDDLE` holds, on this thread.
                let id = unsafe {
                    region::add_cleanup(
                        nodes[r].raw,
                        meddle,
                        core::ptr::without_provenance_mut(token as usize),
                    )
                }
                .unwrap();
                nodes[r].cleanups.push((id, token));
            }
            Op::Cancel { region, which } => {
                let r = alive(&nodes, region);
                if !nodes[r].cleanups.is_empty() {
                    let k = which % nodes[r].cleanups.len();
                    let (id, _) = nodes[r].cleanups.remove(k);
                    // SAFETY: a live region of this test thread, destroyed by none meanwhile.
                    assert!(unsafe { region::remove_cleanup(nodes[r].raw, id) }.unwrap());
                    // SAFETY: a live region of this test thread, destroyed by none meanwhile.
                    assert!(!unsafe { region::remove_cleanup(nodes[r].raw, id) }.unwrap());
                }
            }
            Op::Reset { region } => {
                let r = alive(&nodes, region);
                let mut want = Vec::new();
                expected(&mut nodes, r, false, &mut want);
                LOG.with(|l| l.borrow_mut().clear());
                // SAFETY: the model keeps no reference into the regions' blocks.
                unsafe { region::reset(nodes[r].raw) }.unwrap();
                assert_eq!(LOG.with(|l| l.borrow().clone()), want, "reset cleanups");
            }
            Op::Destroy { region } => {
                let r = alive(&nodes, region);
                if r == 0 {
                    continue;
                }
                let raw = nodes[r].raw;
                let mut want = Vec::new();
                expected(&mut nodes, r, true, &mut want);
                LOG.with(|l| l.borrow_mut().clear());
                // SAFETY: as for the reset; the model marked the subtree dead.
                unsafe { region::destroy(raw) }.unwrap();
                assert_eq!(LOG.with(|l| l.borrow().clone()), want, "destroy cleanups");
                // SAFETY: refused without a dereference (no live region there).
                assert!(unsafe { region::destroy(raw) }.is_err(), "a destroyed region is refused");
            }
        }
        for i in (0..nodes.len()).filter(|&i| nodes[i].alive) {
            // SAFETY: a live region of this test thread, destroyed by none meanwhile.
            let s = unsafe { region::stats(nodes[i].raw) }.unwrap();
            assert_eq!(s.bytes_allocated, nodes[i].live_bytes);
            assert_eq!(s.allocation_count, nodes[i].live_blocks);
            assert_eq!((s.total_allocations, s.total_frees), (nodes[i].allocs, nodes[i].frees));
            assert_eq!(
                // SAFETY: a live region of this test thread, destroyed by none meanwhile.
                unsafe { region::subtree_stats(nodes[i].raw) }.unwrap().bytes_allocated,
                subtree_bytes(&nodes, i)
            );
        }
        // Every live region descends from the root: its check walks them all.
        // SAFETY: a live region of this test thread, destroyed by none meanwhile.
        assert_eq!(unsafe { region::check_raw(root) }, Ok(()), "after {op:?}");
    }
    // SAFETY: a live region of this test thread, destroyed by none meanwhile.
    let report = unsafe { region::report(root) }.unwrap();
    assert_eq!(report.lines().count(), nodes.iter().filter(|n| n.alive).count());
    let mut want = Vec::new();
    expected(&mut nodes, 0, true, &mut want);
    LOG.with(|l| l.borrow_mut().clear());
    // SAFETY: as above; the last use of the tree.
    unsafe { region::destroy(root) }.unwrap();
    assert_eq!(LOG.with(|l| l.borrow().clone()), want);
    assert_eq!(WRONG.with(|w| w.take()), Vec::<String>::new(), "meddling cleanups");
    let s = parent.stats();
    assert_eq!((s.allocation_count, s.bytes_allocated), (0, 0), "memory not returned");
}

proptest! {
    #![proptest_config(common::model_config())]

    #[test]
    fn region_trees_match_model(ops in prop::collection::vec(op(), 1..common::ops(120, 20))) {
        run(&ops);
    }
}

#[test]
fn rust_regions_nest_by_lifetime_and_run_closures() {
    let log = Rc::new(RefCell::new(Vec::new()));
    let mut root = Region::new(4096, true);
    root.set_name("root");
    {
        let child = root.child(0);
        child.set_name("child");
        let l = log.clone();
        child.on_cleanup(move || l.borrow_mut().push("child"));
        let l = log.clone();
        let cancelled = child.on_cleanup(move || l.borrow_mut().push("never"));
        assert!(child.cancel_cleanup(cancelled));
        let v = child.alloc(vec![1, 2, 3]);
        v.push(4);
        let l = log.clone();
        // A value's destructor runs through a cleanup.
        let raw: *mut Vec<i32> = v;
        child.on_cleanup(move || {
            // SAFETY: the vector lives in the child region until its cleanups have run.
            unsafe { core::ptr::drop_in_place(raw) };
            l.borrow_mut().push("vec dropped");
        });
        assert!(root.report().contains("  region \"child\""));
        assert_eq!(root.check(), Ok(()));
        assert_eq!(root.subtree_stats().allocation_count, 1);
    }
    assert_eq!(*log.borrow(), ["vec dropped", "child"]);
    let l = log.clone();
    root.on_cleanup(move || l.borrow_mut().push("root reset"));
    root.alloc_slice_copy(&[0u8; 10_000]);
    assert_eq!(root.check(), Ok(()));
    root.reset();
    assert_eq!(root.check(), Ok(()));
    assert_eq!(log.borrow().last(), Some(&"root reset"));
    assert_eq!(root.stats().bytes_allocated, 0);
    let mut v = allocator_api2::vec::Vec::new_in(root.handle());
    v.extend_from_slice(&[1u8; 100]);
    assert_eq!(root.stats().bytes_allocated, 100);
}

#[test]
fn a_panicking_cleanup_lets_the_others_run_then_panics_the_caller() {
    let log = Rc::new(RefCell::new(Vec::new()));
    let l = log.clone();
    let mut r = Region::new(4096, true);
    r.on_cleanup(move || l.borrow_mut().push("first"));
    r.on_cleanup(|| panic!("cleanup one"));
    r.on_cleanup(|| panic!("cleanup two"));
    r.alloc([7u8; 100]);
    let reset = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| r.reset()));
    let message = *reset.expect_err("the reset goes on with the panic").downcast::<&str>().unwrap();
    assert_eq!(message, "cleanup two", "the first panic (newest cleanup first)");
    assert_eq!(*log.borrow(), ["first"], "the other cleanups ran");
    assert_eq!(r.stats().bytes_allocated, 0, "the reset finished");
    assert_eq!(r.check(), Ok(()));

    let l = log.clone();
    r.on_cleanup(move || l.borrow_mut().push("second"));
    r.on_cleanup(|| panic!("at drop"));
    let raw = r.as_ptr();
    let dropped = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || drop(r)));
    assert_eq!(*dropped.expect_err("the drop goes on with it").downcast::<&str>().unwrap(), "at drop");
    assert_eq!(log.borrow().last(), Some(&"second"));
    assert!(!region::is_live(raw), "the region was destroyed");
}

#[test]
fn regions_without_large_allocations_refuse_them() {
    let r = Region::new(1024, false);
    assert!(r.try_alloc_layout(core::alloc::Layout::from_size_align(2000, 8).unwrap()).is_err());
    assert_eq!(r.stats().failed_allocations, 1);
    assert!(r.try_alloc_layout(core::alloc::Layout::from_size_align(500, 8).unwrap()).is_ok());
}

/// A chain of regions deeper than a small thread stack could recurse through: its subtree
/// stats, its report, its check, a limit over it, its reset and its destroy walk it with
/// stacks of their own, and each level costs the same however deep it is (the busy rule asks
/// the tree's running operations, not every region above: 100,000 levels took minutes when
/// it walked them).
#[test]
#[cfg_attr(miri, ignore)] // minutes under Miri; the walks are the same on a short chain
fn a_deep_tree_needs_no_deep_stack() {
    const LEVELS: usize = 100_000;
    let work = || {
        // SAFETY: the built-in allocator outlives the tree; every region is this thread's, and
        // the tree is destroyed once, through its root.
        unsafe {
            let root = region::create(goo_memory_core::builtin(), 0, true).as_ptr();
            let mut leaf = root;
            for _ in 0..LEVELS {
                leaf = region::create_child(leaf, 0).unwrap().as_ptr();
            }
            assert!(!dispatch::alloc(leaf, 100, 0, AllocOptions::DEFAULT).is_null());
            let total = region::subtree_stats(root).unwrap();
            assert_eq!((total.allocation_count, total.bytes_allocated), (1, 100));
            let report = region::report(root).unwrap();
            assert_eq!(report.lines().count(), LEVELS + 1);
            assert!(report.len() < (LEVELS + 1) * 400, "no line grows with its depth");
            region::check_raw(root).unwrap();
            // A limit over the chain: its budgets are granted and checked down the whole chain.
            assert!(dispatch::set_limit(root, 1 << 20));
            assert!(!dispatch::alloc(leaf, 1000, 0, AllocOptions::DEFAULT).is_null());
            assert!(dispatch::alloc(leaf, 2 << 20, 0, AllocOptions::DEFAULT).is_null());
            region::check_raw(root).unwrap();
            region::reset(root).unwrap();
            assert_eq!(region::subtree_stats(root).unwrap().allocation_count, 0);
            region::destroy(root).unwrap();
        }
    };
    std::thread::Builder::new().stack_size(256 << 10).spawn(work).unwrap().join().unwrap();
}

/// A region with many children lets each go in any order at the same cost (a list linked
/// through the children: 100,000 of them, destroyed oldest first, took seconds when each
/// destroy searched its parent's list), and keeps the survivors in the order they were made.
#[test]
#[cfg_attr(miri, ignore)] // minutes under Miri; a few children walk the same paths
fn a_wide_tree_lets_its_children_go_in_any_order() {
    const CHILDREN: usize = 100_000;
    // SAFETY: the built-in allocator outlives the tree; every region is this thread's, and
    // each is destroyed once.
    unsafe {
        let root = region::create(goo_memory_core::builtin(), 0, true).as_ptr();
        let children: Vec<_> =
            (0..CHILDREN).map(|_| region::create_child(root, 256).unwrap().as_ptr()).collect();
        for (i, &c) in children.iter().enumerate() {
            if i % 3 != 1 {
                region::destroy(c).unwrap();
            }
        }
        let last = *children.last().unwrap();
        assert!(region::destroy(last).is_err(), "destroyed already");
        region::check_raw(root).unwrap();
        let report = region::report(root).unwrap();
        let listed: Vec<String> =
            report.lines().skip(1).map(|l| l.split_whitespace().nth(2).unwrap().to_string()).collect();
        let kept: Vec<String> = children.iter().skip(1).step_by(3).map(|&c| format!("{c:p}:")).collect();
        assert_eq!(listed, kept, "the survivors, oldest first");
        region::destroy(root).unwrap();
    }
}

/// A limited tree of many regions near its limit: each child's first request past its share
/// takes back the slack of the shares granted lately, not every share of the tree (100,000
/// children under a root with 64 KiB of room took minutes when each such request walked
/// the tree). The limit holds, and every request fits.
#[test]
#[cfg_attr(miri, ignore)] // minutes under Miri; a few children walk the same paths
fn many_regions_near_a_limit_take_back_recent_shares() {
    const CHILDREN: usize = 100_000;
    // SAFETY: the built-in allocator outlives the tree; every region is this thread's, and
    // the tree is destroyed once, through its root.
    unsafe {
        let root = region::create(goo_memory_core::builtin(), 4096, true).as_ptr();
        let children: Vec<_> =
            (0..CHILDREN).map(|_| region::create_child(root, 0).unwrap().as_ptr()).collect();
        let big = dispatch::alloc(root, 1 << 20, 0, AllocOptions::DEFAULT);
        assert!(!big.is_null());
        assert!(dispatch::set_limit(root, (1 << 20) + (64 << 10)));
        for &c in &children {
            let p = dispatch::alloc(c, 32, 0, AllocOptions::DEFAULT);
            assert!(!p.is_null(), "room is left");
            dispatch::free(c, p, 32, 0);
        }
        region::check_raw(root).unwrap();
        assert!(
            dispatch::alloc(children[7], 128 << 10, 0, AllocOptions::DEFAULT).is_null(),
            "past the limit"
        );
        assert_eq!(region::subtree_stats(root).unwrap().failed_allocations, 1);
        region::check_raw(root).unwrap();
        region::destroy(root).unwrap();
    }
}
