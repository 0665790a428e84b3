//! Arena model test: random sequences of alloc, realloc-last, free-last, mark/rewind and reset
//! through the front door, checked after every step against a plain model (alignment,
//! disjointness, inside a chunk, contents, stats, the arena's invariants), and the parent getting
//! every chunk back. Marks a rewind to an earlier mark invalidated are refused, changing
//! nothing.

mod common;

use core::ptr;

use goo_memory_core::arena::{self, Arena, Bump};
use goo_memory_core::dispatch;
use goo_memory_core::{AllocOptions, Allocator, GooAllocator};
use proptest::prelude::*;

#[derive(Clone, Debug)]
enum Op {
    Alloc {
        size: usize,
        align_log2: u32,
    },
    ReallocLast {
        new_size: usize,
    },
    FreeLast,
    Mark,
    /// Rewind to the `depth`-th newest mark (dropping the newer ones).
    Rewind {
        depth: usize,
    },
    /// Rewind to a mark an earlier rewind invalidated: refused.
    RewindInvalidated {
        index: usize,
    },
    Reset,
}

fn max_size() -> usize {
    if cfg!(miri) {
        2048
    } else {
        64 * 1024
    }
}

fn size() -> impl Strategy<Value = usize> {
    prop_oneof![4 => 0usize..128, 2 => 0usize..4096, 1 => 0..max_size()]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (size(), 0u32..13).prop_map(|(size, align_log2)| Op::Alloc { size, align_log2 }),
        2 => size().prop_map(|new_size| Op::ReallocLast { new_size }),
        2 => Just(Op::FreeLast),
        1 => Just(Op::Mark),
        1 => (0usize..3).prop_map(|depth| Op::Rewind { depth }),
        1 => any::<usize>().prop_map(|index| Op::RewindInvalidated { index }),
        1 => Just(Op::Reset),
    ]
}

struct Block {
    ptr: *mut u8,
    size: usize,
    align: usize,
    fill: u8,
}

struct Model {
    blocks: Vec<Block>,
    /// (mark, number of model blocks when it was taken)
    marks: Vec<(arena::Mark, usize)>,
    /// Marks a rewind to an earlier mark went below: taken after that mark, with more blocks
    /// (so at a higher position).
    invalidated: Vec<arena::Mark>,
    allocs: usize,
    frees: usize,
}

fn check(bump: &Bump, a: *mut GooAllocator, m: &Model) {
    for b in &m.blocks {
        assert_eq!(b.ptr as usize % b.align, 0, "misaligned");
        assert!(bump.contains(b.ptr, b.size), "block outside the arena's chunks");
        // SAFETY: live block of `size` bytes.
        let bytes = unsafe { core::slice::from_raw_parts(b.ptr, b.size) };
        assert!(bytes.iter().all(|&x| x == b.fill), "contents changed");
    }
    let mut spans: Vec<_> = m.blocks.iter().map(|b| (b.ptr as usize, b.ptr as usize + b.size)).collect();
    spans.sort_unstable();
    assert!(spans.windows(2).all(|w| w[0].1 <= w[1].0), "blocks overlap");
    // SAFETY: `a` is live.
    let s = unsafe { dispatch::stats(a) };
    assert_eq!(s.bytes_allocated, m.blocks.iter().map(|b| b.size).sum::<usize>());
    assert_eq!(s.allocation_count, m.blocks.len());
    assert_eq!(s.total_allocations, m.allocs);
    assert_eq!(s.total_frees, m.frees);
    assert_eq!(s.bytes_reserved, bump.reserved());
    assert!(s.bytes_reserved >= s.bytes_allocated);
    // SAFETY: `a` is live.
    assert_eq!(unsafe { arena::check_raw(a) }, Ok(()));
}

fn fill(b: &Block) {
    // SAFETY: live block of `size` bytes.
    unsafe { ptr::write_bytes(b.ptr, b.fill, b.size) };
}

fn run(ops: &[Op]) {
    let parent = Allocator::system();
    // SAFETY: `parent` outlives the arena (dropped after it, below).
    let a = unsafe { arena::create(parent.as_ptr(), 512, 0) }.as_ptr();
    // SAFETY: `a` is a live arena.
    let bump = unsafe { arena::from_raw(a) }.unwrap();
    let mut m = Model { blocks: Vec::new(), marks: Vec::new(), invalidated: Vec::new(), allocs: 0, frees: 0 };
    let mut next_fill = 0u8;
    // Blocks allocated after the newest mark may be freed or resized (stack discipline).
    let after_newest_mark = |m: &Model| m.blocks.len() > m.marks.last().map_or(0, |&(_, n)| n);
    for op in ops {
        match *op {
            Op::Alloc { size, align_log2 } => {
                let align = 1 << align_log2;
                // SAFETY: `a` is live.
                let p = unsafe { dispatch::alloc(a, size, align, AllocOptions::DEFAULT) };
                assert!(!p.is_null());
                if size > 0 {
                    next_fill = next_fill.wrapping_add(1);
                    let b = Block { ptr: p, size, align, fill: next_fill };
                    fill(&b);
                    m.blocks.push(b);
                    m.allocs += 1;
                }
            }
            Op::ReallocLast { new_size } if new_size > 0 && after_newest_mark(&m) => {
                let b = m.blocks.last_mut().unwrap();
                // SAFETY: live block of this arena.
                let p =
                    unsafe { dispatch::realloc(a, b.ptr, b.size, new_size, b.align, AllocOptions::DEFAULT) };
                assert!(!p.is_null());
                // SAFETY: the block now holds `new_size` bytes.
                let kept = unsafe { core::slice::from_raw_parts(p, b.size.min(new_size)) };
                assert!(kept.iter().all(|&x| x == b.fill), "realloc lost contents");
                b.ptr = p;
                b.size = new_size;
                fill(b);
            }
            Op::FreeLast if after_newest_mark(&m) => {
                let b = m.blocks.pop().unwrap();
                // SAFETY: live block of this arena.
                unsafe { dispatch::free(a, b.ptr, b.size, b.align) };
                m.frees += 1;
            }
            Op::Mark => {
                // SAFETY: `a` is a live arena.
                let mark = unsafe { arena::mark_raw(a) }.unwrap();
                m.marks.push((mark, m.blocks.len()));
            }
            Op::Rewind { depth } if depth < m.marks.len() => {
                let keep = m.marks.len() - 1 - depth;
                let (mark, n) = m.marks[keep];
                m.invalidated
                    .extend(m.marks.drain(keep + 1..).filter(|&(_, later)| later > n).map(|(mark, _)| mark));
                m.marks.truncate(keep);
                // SAFETY: blocks after the mark are dropped from the model right away.
                unsafe { arena::rewind_raw(a, &mark) }.unwrap();
                m.frees += m.blocks.len() - n;
                m.blocks.truncate(n);
            }
            Op::RewindInvalidated { index } if !m.invalidated.is_empty() => {
                let mark = m.invalidated[index % m.invalidated.len()];
                // SAFETY: `a` is live; a refused rewind changes nothing (checked below).
                assert_eq!(unsafe { arena::rewind_raw(a, &mark) }, Err(arena::RewindError::Invalidated));
            }
            Op::Reset => {
                // SAFETY: the model forgets every block.
                assert!(unsafe { arena::reset_raw(a) });
                assert!(bump.chunk_count() <= 1);
                m.frees += m.blocks.len();
                m.blocks.clear();
                let stale = m.marks.drain(..).map(|(mark, _)| mark).chain(m.invalidated.drain(..));
                for mark in stale {
                    // SAFETY: `a` is live; a refused rewind changes nothing.
                    assert_eq!(unsafe { arena::rewind_raw(a, &mark) }, Err(arena::RewindError::Stale));
                }
            }
            _ => {}
        }
        check(bump, a, &m);
    }
    // SAFETY: `a` is a live library allocator, not used afterwards.
    unsafe { goo_memory_core::managed_destroy(a) };
    let s = parent.stats();
    assert_eq!(s.allocation_count, 0, "chunks not returned to the parent");
    assert_eq!(s.bytes_allocated, 0);
}

proptest! {
    #![proptest_config(common::model_config())]

    #[test]
    fn arena_matches_model(ops in prop::collection::vec(op(), 1..common::ops(300, 25))) {
        run(&ops);
    }
}

#[test]
fn rust_api_values_slices_strings_checkpoints() {
    let mut arena = Arena::with_capacity(64);
    arena.set_track_stats(true);
    let a = arena.alloc(7u32);
    let s = arena.alloc_str("goo");
    let v = arena.alloc_slice_copy(&[1u16, 2, 3]);
    *a += 1;
    assert_eq!((*a, &*s, &*v), (8, "goo", &[1u16, 2, 3][..]));
    assert_eq!(arena.stats().bytes_allocated, 4 + 3 + 6);
    assert_eq!(arena.check(), Ok(()));
    {
        let mut outer = arena.checkpoint();
        let big = outer.alloc_slice_copy(&[9u8; 10_000]);
        assert_eq!(big[9_999], 9);
        {
            let inner = outer.checkpoint();
            inner.alloc_slice_copy(&[1u64; 5_000]);
            assert!(inner.chunk_count() >= 2);
            assert_eq!(inner.check(), Ok(()));
        }
        assert_eq!(outer.check(), Ok(()));
        assert_eq!(outer.stats().bytes_allocated, 13 + 10_000);
    }
    assert_eq!(arena.stats().bytes_allocated, 13);
    assert_eq!(arena.stats().allocation_count, 3);
    let held = arena.allocated_bytes();
    arena.reset();
    assert_eq!(arena.chunk_count(), 1);
    assert!(arena.allocated_bytes() <= held);
    assert_eq!(arena.stats().bytes_allocated, 0);
    assert_eq!(arena.check(), Ok(()));
}

/// Two marks taken after a mark that a rewind returns to are invalidated by it, however far the
/// arena grows again: rewinding to either is refused and changes nothing; the mark rewound to
/// stays valid, and so does a mark taken at its position after the rewind.
#[test]
fn marks_invalidated_by_a_rewind_to_an_earlier_mark_are_refused() {
    let parent = Allocator::system();
    // SAFETY: `parent` outlives the arena (destroyed below).
    let a = unsafe { arena::create(parent.as_ptr(), 4096, 0) }.as_ptr();
    // SAFETY: `a` is a live arena, destroyed once at the end; blocks after a mark are not used
    // after a rewind to it.
    unsafe {
        let alloc = |n| dispatch::alloc(a, n, 0, AllocOptions::DEFAULT);
        let mark = || arena::mark_raw(a).unwrap();
        alloc(40);
        let first = mark();
        alloc(100);
        let second = mark();
        alloc(100);
        let third = mark();
        alloc(100);
        arena::rewind_raw(a, &first).unwrap();
        let again = mark();
        // Grow past both invalidated marks, in the same chunk and into new ones.
        for n in [400, 5000, 9000] {
            assert!(!alloc(n).is_null());
            let before = dispatch::stats(a);
            for stale in [&third, &second] {
                assert_eq!(arena::rewind_raw(a, stale), Err(arena::RewindError::Invalidated));
            }
            assert_eq!(dispatch::stats(a), before, "a refused rewind changes nothing");
            assert_eq!(arena::check_raw(a), Ok(()));
        }
        arena::rewind_raw(a, &again).unwrap();
        arena::rewind_raw(a, &first).unwrap();
        assert_eq!(dispatch::stats(a).allocation_count, 1);
        // A loop of mark, allocate, rewind keeps no record.
        for _ in 0..100 {
            let m = mark();
            alloc(64);
            arena::rewind_raw(a, &m).unwrap();
        }
        assert_eq!(arena::check_raw(a), Ok(()));
        goo_memory_core::managed_destroy(a);
    }
    assert_eq!(parent.stats().allocation_count, 0);
}

#[test]
fn rust_containers_live_in_the_arena() {
    let arena = Arena::new();
    let mut v = allocator_api2::vec::Vec::new_in(&arena);
    for i in 0..10_000u32 {
        v.push(i);
    }
    assert_eq!(v.iter().map(|&x| x as u64).sum::<u64>(), 49_995_000);
    // Growing the most recent allocation happens in place: the arena holds little beyond the
    // final vector.
    assert!(arena.allocated_bytes() < 4 * 40_000 + 8192, "{}", arena.allocated_bytes());
    let mut map = hashbrown::HashMap::new_in(&arena);
    for i in 0..1000 {
        map.insert(i, i * 2);
    }
    assert_eq!(map[&500], 1000);
}

#[test]
fn limit_and_bad_input_fail_and_leave_the_arena_usable() {
    // SAFETY: the built-in allocator is a static.
    let arena = unsafe { Arena::with_parent(goo_memory_core::builtin(), 1024, 4096) };
    let layout = |n| core::alloc::Layout::from_size_align(n, 8).unwrap();
    assert!(arena.try_alloc_layout(layout(100)).is_ok());
    assert!(arena.try_alloc_layout(layout(5000)).is_err());
    assert_eq!(arena.stats().failed_allocations, 1);
    assert!(arena.try_alloc_layout(layout(100)).is_ok());
    // SAFETY: live arena.
    unsafe {
        assert!(dispatch::alloc(arena.as_ptr(), usize::MAX, 8, AllocOptions::DEFAULT).is_null());
        assert!(dispatch::alloc(arena.as_ptr(), 8, 6, AllocOptions::DEFAULT).is_null());
    }
    assert_eq!(arena.stats().failed_allocations, 3);
    assert!(arena.try_alloc_layout(layout(100)).is_ok());
}

#[test]
fn reserved_stays_within_twice_the_peak_in_a_growing_workload() {
    let arena = Arena::new();
    let mut live = 0usize;
    for i in 0..if cfg!(miri) { 500 } else { 200_000 } {
        // Multiples of the alignment, so padding does not blur what the growth policy holds.
        let n = 16 + 8 * ((i * 7) % 13);
        arena.alloc_layout(core::alloc::Layout::from_size_align(n, 8).unwrap());
        live += n;
        // Once past the first chunk, the arena never holds much more than twice what it gave.
        if live > 64 * 1024 {
            assert!(arena.allocated_bytes() <= 2 * live + 4096, "{} vs {live}", arena.allocated_bytes());
        }
    }
}
