//! Scoped allocator model test: random interleavings of allocs, frees, reallocs, PERSIST
//! allocations and nested scopes, checked against tracked parents: after every operation the
//! parent holds for the scope exactly what the scope says it holds (its chunks and large
//! blocks); a single free of a large block gives exactly that block back; when a scope ends, its
//! summary is exactly its non-persistent live blocks and the parent gets everything back but
//! the PERSIST blocks; and every scope's invariants hold after every operation.

mod common;

use core::ptr;

use goo_memory_core::dispatch;
use goo_memory_core::scoped::{self, Scope, LARGE_HEADER_BYTES, SMALL_MAX};
use goo_memory_core::{AllocOptions, Allocator, GooAllocator};
use proptest::prelude::*;

#[derive(Clone, Debug)]
enum Op {
    Alloc { size: usize, persist: bool },
    Free { index: usize },
    Realloc { index: usize, new_size: usize },
    Push,
    Pop,
}

/// Mostly small sizes, sometimes around the line between small and large blocks.
fn size() -> impl Strategy<Value = usize> {
    let small: usize = if cfg!(miri) { 256 } else { 5000 };
    let edge = if cfg!(miri) { 64 } else { 2000 };
    prop_oneof![8 => 1..small, 1 => (SMALL_MAX - edge)..(SMALL_MAX + edge)]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (size(), prop::bool::weighted(0.15)).prop_map(|(size, persist)| Op::Alloc { size, persist }),
        3 => any::<usize>().prop_map(|index| Op::Free { index }),
        2 => (any::<usize>(), size()).prop_map(|(index, new_size)| Op::Realloc { index, new_size }),
        1 => Just(Op::Push),
        1 => Just(Op::Pop),
    ]
}

struct Block {
    ptr: *mut u8,
    size: usize,
    fill: u8,
    /// A parent block of its own: allocated above `SMALL_MAX`, and a large block stays large
    /// when a realloc shrinks it (a small one becomes large when it grows past `SMALL_MAX`).
    large: bool,
}

struct Level {
    scope: *mut GooAllocator,
    parent: *mut GooAllocator,
    blocks: Vec<Block>,
    /// PERSIST blocks handed out by this scope: (count, bytes).
    persisted: (usize, usize),
    /// The parent's bytes when the scope began, and the bytes of this scope's PERSIST blocks
    /// still live in the parent.
    base: usize,
    kept: usize,
}

impl Level {
    fn new(scope: *mut GooAllocator, parent: *mut GooAllocator) -> Level {
        Level { scope, parent, blocks: Vec::new(), persisted: (0, 0), base: bytes(parent), kept: 0 }
    }
}

fn held(scope: *mut GooAllocator) -> usize {
    // SAFETY: a live scope.
    unsafe { scoped::from_raw(scope) }.unwrap().held()
}

/// What the parent holds for the scope is what the scope says it holds, and what its stats
/// report as reserved; and the scope's invariants hold.
fn check_held(level: &Level) {
    // SAFETY: a live scope.
    assert_eq!(unsafe { scoped::check_raw(level.scope) }, Ok(()));
    let held = held(level.scope);
    assert_eq!(bytes(level.parent), level.base + level.kept + held, "parent vs scope");
    // SAFETY: a live scope.
    assert_eq!(unsafe { dispatch::stats(level.scope) }.bytes_reserved, held);
}

fn check(b: &Block) {
    // SAFETY: a live block of `size` bytes.
    let s = unsafe { core::slice::from_raw_parts(b.ptr, b.size) };
    assert!(s.iter().all(|&x| x == b.fill), "contents changed");
    assert_eq!(b.ptr as usize % 16, 0);
}

fn bytes(a: *mut GooAllocator) -> usize {
    // SAFETY: a live allocator.
    unsafe { dispatch::stats(a) }.bytes_allocated
}

/// The scope's own stats equal the model: its live blocks, plus the PERSIST blocks it handed
/// out (counted as its allocations; they belong to the parent and are never freed through it).
fn check_scope_stats(level: &Level) {
    // SAFETY: a live scope.
    let s = unsafe { dispatch::stats(level.scope) };
    assert_eq!(s.allocation_count, level.blocks.len() + level.persisted.0);
    assert_eq!(s.bytes_allocated, level.blocks.iter().map(|b| b.size).sum::<usize>() + level.persisted.1);
    // SAFETY: a live scope.
    let (count, bytes) = unsafe { scoped::from_raw(level.scope) }.unwrap().live();
    assert_eq!(count, level.blocks.len());
    assert_eq!(bytes, level.blocks.iter().map(|b| b.size).sum::<usize>());
}

fn end_level(level: Level) {
    for b in &level.blocks {
        check(b);
    }
    check_held(&level);
    check_scope_stats(&level);
    // SAFETY: a live scope of this thread, innermost of the model.
    let summary = unsafe { scoped::end(level.scope) }.unwrap();
    assert_eq!(summary.implicit_frees, level.blocks.len());
    assert_eq!(summary.implicit_bytes, level.blocks.iter().map(|b| b.size).sum::<usize>());
    assert_eq!(bytes(level.parent), level.base + level.kept, "the scope returned all it held");
}

fn run(ops: &[Op]) {
    let root = Allocator::system();
    let mut persist: Vec<(*mut u8, usize)> = Vec::new();
    // SAFETY: `root` outlives every scope.
    let first = unsafe { scoped::create(root.as_ptr()) }.as_ptr();
    let mut stack = vec![Level::new(first, root.as_ptr())];
    let mut fill = 0u8;
    for op in ops {
        match *op {
            Op::Alloc { size, persist: keep } => {
                let outermost = stack.len() == 1;
                let top = stack.last_mut().unwrap();
                let options = if keep { AllocOptions::PERSIST } else { AllocOptions::DEFAULT };
                // SAFETY: a live scope.
                let p = unsafe { dispatch::alloc(top.scope, size, 0, options) };
                assert!(!p.is_null());
                if keep {
                    top.persisted.0 += 1;
                    top.persisted.1 += size;
                    // Persistent blocks live in the root (the outermost parent) only when the
                    // scope is the outermost; deeper ones belong to the enclosing scope.
                    if outermost {
                        persist.push((p, size));
                        top.kept += size;
                    } else {
                        let parent = stack.len() - 2;
                        fill = fill.wrapping_add(1);
                        // Model it as a block of the enclosing scope (minus the header, which it
                        // lacks, hence freed explicitly before the enclosing scope ends).
                        // SAFETY: fresh block.
                        unsafe { ptr::write_bytes(p, fill, size) };
                        // SAFETY: a block of the enclosing scope's parent-side: free it through
                        // the enclosing scope now, as PERSIST blocks are the parent's.
                        unsafe { dispatch::free(stack[parent].scope, p, size, 0) };
                    }
                    continue;
                }
                fill = fill.wrapping_add(1);
                // SAFETY: fresh block of `size` bytes.
                unsafe { ptr::write_bytes(p, fill, size) };
                top.blocks.push(Block { ptr: p, size, fill, large: size > SMALL_MAX });
            }
            Op::Free { index } => {
                let top = stack.last_mut().unwrap();
                if top.blocks.is_empty() {
                    continue;
                }
                let b = top.blocks.swap_remove(index % top.blocks.len());
                check(&b);
                let before = bytes(top.parent);
                // SAFETY: a live block of this scope.
                unsafe { dispatch::free(top.scope, b.ptr, b.size, 0) };
                // A small block stays in the scope's chunk, for its next request of that class.
                let back = if b.large { b.size + LARGE_HEADER_BYTES } else { 0 };
                assert_eq!(before - bytes(top.parent), back);
            }
            Op::Realloc { index, new_size } => {
                let top = stack.last_mut().unwrap();
                if top.blocks.is_empty() {
                    continue;
                }
                let i = index % top.blocks.len();
                let b = &mut top.blocks[i];
                check(b);
                // SAFETY: a live block of this scope.
                let p = unsafe {
                    dispatch::realloc(top.scope, b.ptr, b.size, new_size, 0, AllocOptions::DEFAULT)
                };
                assert!(!p.is_null());
                // SAFETY: the block holds `new_size` bytes now.
                let kept = unsafe { core::slice::from_raw_parts(p, b.size.min(new_size)) };
                assert!(kept.iter().all(|&x| x == b.fill));
                b.ptr = p;
                b.size = new_size;
                b.large |= new_size > SMALL_MAX;
                // SAFETY: as above.
                unsafe { ptr::write_bytes(p, b.fill, new_size) };
            }
            Op::Push => {
                let parent = stack.last().unwrap().scope;
                // SAFETY: the enclosing scope outlives the nested one (ended first).
                let s = unsafe { scoped::create(parent) }.as_ptr();
                stack.push(Level::new(s, parent));
            }
            Op::Pop => {
                if stack.len() > 1 {
                    end_level(stack.pop().unwrap());
                }
            }
        }
        for level in &stack {
            check_held(level);
        }
    }
    while let Some(level) = stack.pop() {
        end_level(level);
    }
    // Only the outermost scope's PERSIST blocks are left in the root.
    let s = root.stats();
    assert_eq!(s.allocation_count, persist.len());
    assert_eq!(s.bytes_allocated, persist.iter().map(|&(_, n)| n).sum::<usize>());
    for (p, n) in persist {
        // SAFETY: PERSIST blocks are blocks of the root.
        unsafe { dispatch::free(root.as_ptr(), p, n, 0) };
    }
    assert_eq!(root.stats().allocation_count, 0);
}

proptest! {
    #![proptest_config(common::model_config())]

    #[test]
    fn scopes_return_exactly_their_live_blocks(ops in prop::collection::vec(op(), 1..common::ops(200, 25))) {
        run(&ops);
    }
}

#[test]
fn rust_scope_run_installs_and_restores_the_thread_allocator() {
    let before = goo_memory_core::thread_allocator();
    let ((), summary) = Scope::run_with_summary(|s| {
        assert_eq!(goo_memory_core::thread_allocator(), s.as_ptr());
        let p = goo_memory_core::legacy::alloc(100);
        assert!(!p.is_null());
        let v = s.alloc([5u8; 10]);
        assert_eq!(v[9], 5);
        assert_eq!(s.live().0, 2);
    });
    assert_eq!(summary.implicit_frees, 2);
    assert_eq!(goo_memory_core::thread_allocator(), before);
}

#[test]
fn a_scope_run_ends_the_scopes_its_closure_began_and_left() {
    let before = goo_memory_core::thread_allocator();
    let ((), summary) = Scope::run_with_summary(|s| {
        s.alloc(1u32);
        let inner = scoped::begin();
        let innermost = scoped::begin();
        assert_eq!(goo_memory_core::thread_allocator(), innermost.as_ptr());
        // SAFETY: the innermost scope is live and current.
        assert!(!unsafe { dispatch::alloc(inner.as_ptr(), 64, 0, AllocOptions::DEFAULT) }.is_null());
        assert!(!goo_memory_core::legacy::alloc(32).is_null());
    });
    assert_eq!(summary.implicit_frees, 1, "the run's own block; the inner scopes freed theirs");
    assert_eq!(goo_memory_core::thread_allocator(), before, "restored past the inner scopes");
    // The thread goes on allocating through what was current before the run.
    assert!(!goo_memory_core::legacy::alloc(16).is_null());
}

#[test]
fn temp_arena_marks_and_routing() {
    let sys = Allocator::system();
    let m = goo_memory_core::temp::mark();
    // SAFETY: a live allocator; TEMP routes to this thread's temporary arena.
    let p = unsafe { dispatch::alloc(sys.as_ptr(), 64, 0, AllocOptions::TEMP) };
    assert!(!p.is_null());
    assert_eq!(sys.stats().total_allocations, 0);
    let t = goo_memory_core::temp::allocator();
    // SAFETY: this thread's temporary arena.
    assert!(unsafe { dispatch::stats(t) }.bytes_allocated >= 64);
    goo_memory_core::temp::rewind(&m).unwrap();
    goo_memory_core::temp::reset().unwrap();
    // SAFETY: as above.
    assert_eq!(unsafe { dispatch::stats(t) }.bytes_allocated, 0);
}

/// A root whose blocks come from one buffer at addresses the test chooses (and whose free keeps
/// nothing), so that a later block lands exactly where an earlier one was.
struct Scripted {
    buf: Vec<u128>,
    /// Byte offsets into `buf` of the blocks to hand out, in order.
    script: Vec<usize>,
    next: usize,
}

unsafe extern "C" fn scripted_alloc(
    ctx: *mut core::ffi::c_void,
    _size: usize,
    _align: usize,
    _o: AllocOptions,
) -> *mut core::ffi::c_void {
    // SAFETY: `ctx` is the test's `Scripted`, alive while the allocator is used.
    let s = unsafe { &mut *ctx.cast::<Scripted>() };
    let off = s.script[s.next];
    s.next += 1;
    // SAFETY: every scripted offset leaves room for the test's blocks inside `buf`.
    unsafe { s.buf.as_mut_ptr().cast::<u8>().add(off).cast() }
}

unsafe extern "C" fn scripted_free(_: *mut core::ffi::c_void, _: *mut core::ffi::c_void, _: usize, _: usize) {
}

/// A nested scope's PERSIST block belongs to the enclosing scope; freed through it, its address
/// stays in the nested scope's PERSIST set. A block of the nested scope that a realloc then
/// puts at that very address is still the nested scope's own: freeing it unlinks it (it is not
/// forwarded as a PERSIST block).
#[test]
fn a_stale_persist_address_does_not_capture_a_scope_block() {
    // Large blocks (parent blocks of their own at each level, one 32-byte header per level).
    // Root blocks: the PERSIST block's at 1056 (the enclosing scope's header, then the block at
    // 1088); the nested block first at 16384, then (moved by its realloc, clear of the old
    // block) at 1024, which puts it where the PERSIST one was: 1024 + 32 + 32 = 1088.
    let mut s = Scripted { buf: vec![0; 2048], script: vec![1056, 16384, 1024], next: 0 };
    let mut root = GooAllocator {
        alloc: Some(scripted_alloc),
        free: Some(scripted_free),
        context: (&raw mut s).cast(),
        track_stats: true,
        ..GooAllocator::EMPTY
    };
    let root_ptr: *mut GooAllocator = &raw mut root;
    let (size, new_size) = (SMALL_MAX + 2000, SMALL_MAX + 3000);
    assert!(size > SMALL_MAX);
    // SAFETY: the root outlives both scopes (ended below).
    unsafe {
        let outer = scoped::create(root_ptr).as_ptr();
        let inner = scoped::create(outer).as_ptr();
        let kept = dispatch::alloc(inner, size, 0, AllocOptions::PERSIST);
        assert_eq!(kept, s.buf.as_mut_ptr().cast::<u8>().add(1088));
        dispatch::free(outer, kept, size, 0);
        let p = dispatch::alloc(inner, size, 0, AllocOptions::DEFAULT);
        let q = dispatch::realloc(inner, p, size, new_size, 0, AllocOptions::DEFAULT);
        assert_eq!(q, kept, "the script put the moved block at the stale address");
        assert_eq!(scoped::from_raw(inner).unwrap().live(), (1, new_size));
        dispatch::free(inner, q, new_size, 0);
        assert_eq!(scoped::from_raw(inner).unwrap().live(), (0, 0), "the block was unlinked");
        assert_eq!(dispatch::stats(inner).allocation_count, 1, "only the PERSIST block is left counted");
        assert_eq!(scoped::end(inner).unwrap().implicit_frees, 0);
        scoped::end(outer).unwrap();
    }
}

fn scope_over(parent: &Allocator<goo_memory_core::System>) -> *mut GooAllocator {
    // SAFETY: every test ends its scope before `parent` drops.
    unsafe { scoped::create(parent.as_ptr()) }.as_ptr()
}

/// A freed small block goes on its class's free list and serves the next request of that
/// class; the parent sees one allocation (the chunk) throughout.
#[test]
fn a_freed_small_block_serves_the_next_request_of_its_class() {
    let parent = Allocator::system();
    let s = scope_over(&parent);
    // SAFETY: a live scope of this thread; blocks used within their sizes.
    unsafe {
        let p = dispatch::alloc(s, 64, 0, AllocOptions::DEFAULT);
        assert_eq!(parent.stats().total_allocations, 1, "one chunk");
        dispatch::free(s, p, 64, 0);
        assert_eq!(parent.stats().total_frees, 0, "the block stays in the scope");
        let q = dispatch::alloc(s, 49, 0, AllocOptions::DEFAULT);
        assert_eq!(q, p, "49 bytes is the 64-byte class: the freed block");
        let r = dispatch::alloc(s, 200, 0, AllocOptions::DEFAULT);
        assert_ne!(r, p);
        assert_eq!(parent.stats().total_allocations, 1);
        assert_eq!(scoped::from_raw(s).unwrap().live(), (2, 249));
        assert_eq!(scoped::end(s).unwrap(), scoped::ScopeSummary { implicit_frees: 2, implicit_bytes: 249 });
        assert_eq!(parent.stats().total_frees, 1, "the chunk");
    }
}

/// A second free of a small block is refused (its tag no longer matches), so the block is on
/// its free list once and is not handed out twice.
#[test]
fn a_second_free_of_a_small_block_is_refused() {
    let parent = Allocator::system();
    let s = scope_over(&parent);
    // SAFETY: as above; the second free is the misuse under test (the block's memory stays the
    // scope's, so reading its tag is defined).
    unsafe {
        let p = dispatch::alloc(s, 32, 0, AllocOptions::DEFAULT);
        dispatch::free(s, p, 32, 0);
        dispatch::free(s, p, 32, 0);
        dispatch::free(s, p, 32, 0);
        assert_eq!(scoped::from_raw(s).unwrap().live(), (0, 0));
        let stats = dispatch::stats(s);
        assert_eq!((stats.total_frees, stats.allocation_count), (1, 0), "refused frees change no stats");
        let a = dispatch::alloc(s, 32, 0, AllocOptions::DEFAULT);
        let b = dispatch::alloc(s, 32, 0, AllocOptions::DEFAULT);
        assert_ne!(a, b, "the block was on its free list once");
        let other = scope_over(&parent);
        dispatch::free(other, a, 32, 0);
        assert_eq!(scoped::from_raw(s).unwrap().live(), (2, 64), "another scope cannot free it");
        assert_eq!(dispatch::stats(other).total_frees, 0, "nor count it freed");
        scoped::end(other).unwrap();
        scoped::end(s).unwrap();
    }
}

/// A realloc within the block's class stays in place; to another class, or to more alignment
/// than 16, it moves with the contents.
#[test]
fn small_reallocs_stay_in_their_class_or_move() {
    let parent = Allocator::system();
    let s = scope_over(&parent);
    // SAFETY: as above.
    unsafe {
        let p = dispatch::alloc(s, 40, 0, AllocOptions::DEFAULT);
        ptr::write_bytes(p, 7, 40);
        let q = dispatch::realloc(s, p, 40, 48, 0, AllocOptions::DEFAULT);
        assert_eq!(q, p, "40 and 48 bytes share the 48-byte class");
        let r = dispatch::realloc(s, q, 48, 100, 0, AllocOptions::DEFAULT);
        assert_ne!(r, q);
        assert!(core::slice::from_raw_parts(r, 40).iter().all(|&x| x == 7));
        let a = dispatch::realloc(s, r, 100, 100, 64, AllocOptions::DEFAULT);
        assert_eq!(a as usize % 64, 0);
        assert!(core::slice::from_raw_parts(a, 40).iter().all(|&x| x == 7));
        let big = dispatch::realloc(s, a, 100, 5000, 64, AllocOptions::DEFAULT);
        assert!(core::slice::from_raw_parts(big, 40).iter().all(|&x| x == 7));
        assert_eq!(scoped::from_raw(s).unwrap().live(), (1, 5000));
        dispatch::free(s, big, 5000, 64);
        assert_eq!(scoped::from_raw(s).unwrap().live(), (0, 0));
        scoped::end(s).unwrap();
    }
    assert_eq!(parent.stats().allocation_count, 0);
}

/// When a chunk is full, what is left of it goes on the free lists: later requests of those
/// classes are served from the old chunk's tail.
#[test]
fn a_new_chunk_leaves_the_old_tail_on_the_free_lists() {
    let parent = Allocator::system();
    let s = scope_over(&parent);
    // SAFETY: as above.
    unsafe {
        // The first chunk (1 KiB, 16 bytes of it its header) holds twelve 64-byte blocks (80
        // bytes with their headers); 48 bytes are left: a 32-byte block.
        let first = dispatch::alloc(s, 64, 0, AllocOptions::DEFAULT);
        for _ in 0..11 {
            dispatch::alloc(s, 64, 0, AllocOptions::DEFAULT);
        }
        assert_eq!(scoped::from_raw(s).unwrap().held(), 1024);
        dispatch::alloc(s, 64, 0, AllocOptions::DEFAULT);
        assert_eq!(scoped::from_raw(s).unwrap().held(), 1024 + 2048, "a second, doubled chunk");
        let chunk = (first as usize - 32)..(first as usize - 32 + 1024);
        let small = dispatch::alloc(s, 20, 0, AllocOptions::DEFAULT);
        assert!(chunk.contains(&(small as usize)), "the 32-byte class from the old tail");
        assert_eq!(parent.stats().total_allocations, 2);
        scoped::end(s).unwrap();
    }
    assert_eq!(parent.stats().allocation_count, 0);
}

unsafe extern "C" fn refusing_alloc(
    _: *mut core::ffi::c_void,
    _: usize,
    _: usize,
    _: AllocOptions,
) -> *mut core::ffi::c_void {
    ptr::null_mut()
}

/// A parent that refuses: a scope's request fails cleanly, small (no chunk) or large, by the
/// call-free route or the full one: null, counted once on the scope, nothing live.
#[test]
fn a_refusing_parent_fails_the_scope_cleanly() {
    let mut root = GooAllocator {
        alloc: Some(refusing_alloc),
        free: Some(scripted_free),
        track_stats: true,
        ..GooAllocator::EMPTY
    };
    let root_ptr: *mut GooAllocator = &raw mut root;
    // SAFETY: the root outlives the scope (ended below).
    unsafe {
        let s = scoped::create(root_ptr).as_ptr();
        let mut failed = 0;
        for (size, options) in [
            (64, AllocOptions::DEFAULT),
            (SMALL_MAX + 1, AllocOptions::DEFAULT),
            (64, AllocOptions::ZERO),
            (SMALL_MAX + 1, AllocOptions::ZERO),
        ] {
            assert!(dispatch::alloc(s, size, 0, options).is_null());
            failed += 1;
            assert_eq!(dispatch::stats(s).failed_allocations, failed, "{size} {options:?}");
        }
        assert_eq!(dispatch::stats(s).allocation_count, 0);
        assert_eq!(scoped::from_raw(s).unwrap().live(), (0, 0));
        assert_eq!(scoped::from_raw(s).unwrap().held(), 0);
        assert_eq!(scoped::end(s).unwrap().implicit_frees, 0);
    }
    // SAFETY: `root` is a plain vtable with embedded stats.
    assert_eq!(unsafe { dispatch::stats(root_ptr) }.allocation_count, 0);
}

/// An ended scope's object is kept, holding a vtable that refuses everything, until
/// `ENDED_KEPT` later scopes of its thread have ended: its pointer names no scope meanwhile (read
/// without touching freed memory), the scopes made meanwhile get other objects, and then the
/// oldest ended object serves a new scope (no malloc of its own). Everything is freed at thread
/// exit (Miri checks for the leak).
#[test]
fn an_ended_scope_stays_refused_until_later_scopes_end() {
    let parent = Allocator::system();
    std::thread::spawn(move || {
        let first = scope_over(&parent);
        // SAFETY: a live scope of this thread; then an ended scope's object, which the library
        // keeps (its vtable refuses everything).
        unsafe {
            dispatch::alloc(first, 64, 0, AllocOptions::DEFAULT);
            assert_eq!(scoped::end(first).unwrap().implicit_frees, 1);
            let mut ended = vec![first];
            for _ in 0..scoped::ENDED_KEPT {
                assert!(scoped::from_raw(first).is_none(), "an ended scope is no scope");
                assert_eq!(scoped::end(first), Err(scoped::ScopeError::NotAScope));
                assert!(dispatch::alloc(first, 16, 0, AllocOptions::DEFAULT).is_null());
                let s = scope_over(&parent);
                assert!(!ended.contains(&s), "a new scope never takes a recently ended one's object");
                assert_eq!(scoped::end(s).unwrap().implicit_frees, 0);
                ended.push(s);
                assert_eq!(scoped::check_ended(), Ok(()));
            }
            let reused = scope_over(&parent);
            assert_eq!(reused, first, "the oldest ended object, {} scopes later", scoped::ENDED_KEPT);
            let p = dispatch::alloc(reused, 100, 0, AllocOptions::DEFAULT);
            assert_eq!(dispatch::stats(reused).allocation_count, 1, "fresh counters");
            dispatch::free(reused, p, 100, 0);
            scoped::end(reused).unwrap();
        }
        assert_eq!(parent.stats().allocation_count, 0);
    })
    .join()
    .unwrap();
}

/// A block of an ended scope freed into the scope that reused that scope's object is refused
/// (the tag names the scope's generation), and changes nothing: the new scope's blocks stay.
/// The scopes take their chunks from an arena, so the ended scope's chunk stays readable.
#[test]
fn a_stale_block_is_refused_by_the_scope_that_reused_its_object() {
    let parent = goo_memory_core::arena::Arena::new();
    std::thread::spawn(move || {
        let over = |_: ()| {
            // SAFETY: the arena outlives every scope of this test (all end below).
            unsafe { scoped::create(parent.as_ptr()) }.as_ptr()
        };
        // SAFETY: live scopes of this thread; the stale block lies in an arena chunk, readable.
        unsafe {
            let old = over(());
            let stale = dispatch::alloc(old, 48, 0, AllocOptions::DEFAULT);
            // After the scope's chunk: the chunk's free is then only counted by the arena.
            let spacer = dispatch::alloc(parent.as_ptr(), 16, 0, AllocOptions::DEFAULT);
            scoped::end(old).unwrap();
            for _ in 0..scoped::ENDED_KEPT {
                scoped::end(over(())).unwrap();
            }
            let new = over(());
            assert_eq!(new, old, "the new scope reused the ended one's object");
            let live = dispatch::alloc(new, 48, 0, AllocOptions::DEFAULT);
            assert_ne!(live, stale, "an arena parent never hands a chunk out twice");
            dispatch::free(new, stale, 48, 0);
            assert_eq!(scoped::from_raw(new).unwrap().live(), (1, 48), "the stale block was refused");
            assert_eq!(dispatch::stats(new).allocation_count, 1);
            dispatch::free(new, live, 48, 0);
            scoped::end(new).unwrap();
            dispatch::free(parent.as_ptr(), spacer, 16, 0);
        }
    })
    .join()
    .unwrap();
}

/// Scopes begun on a thread end innermost first even when the thread allocator was changed
/// meanwhile (as `goo_memory_cleanup` clears it): the chain of begun scopes decides the order,
/// and the thread allocator is restored only where it is still the scope that ends.
#[test]
fn begun_scopes_end_after_the_thread_allocator_changed() {
    std::thread::spawn(|| {
        let parent = Allocator::system();
        // SAFETY: `parent` outlives the scopes (all end below); the thread allocator is this
        // thread's.
        unsafe {
            goo_memory_core::set_thread_allocator(parent.as_ptr());
            let outer = scoped::begin().as_ptr();
            dispatch::alloc(ptr::null_mut(), 16, 0, AllocOptions::DEFAULT);
            let inner = scoped::begin().as_ptr();
            dispatch::alloc(ptr::null_mut(), 16, 0, AllocOptions::DEFAULT);
            goo_memory_core::set_thread_allocator(ptr::null_mut());
            assert_eq!(scoped::end(outer), Err(scoped::ScopeError::OutOfOrder));
            assert_eq!(scoped::end(inner).unwrap().implicit_frees, 1);
            assert!(goo_memory_core::thread_allocator().is_null(), "left as the program set it");
            assert_eq!(
                scoped::end(outer).unwrap().implicit_frees,
                1,
                "its own block (the inner's chunk came back)"
            );
            assert!(goo_memory_core::thread_allocator().is_null());
            // Innermost first, with the thread allocator untouched: each restores its own.
            goo_memory_core::set_thread_allocator(parent.as_ptr());
            let outer = scoped::begin().as_ptr();
            let inner = scoped::begin().as_ptr();
            assert_eq!(scoped::end(inner).map(|s| s.implicit_frees), Ok(0));
            assert_eq!(goo_memory_core::thread_allocator(), outer);
            // Destroying the outer one ends every scope begun inside it first.
            let inner = scoped::begin().as_ptr();
            goo_memory_core::managed_destroy(outer);
            assert!(scoped::from_raw(inner).is_none());
            assert_eq!(goo_memory_core::thread_allocator(), parent.as_ptr());
            goo_memory_core::set_thread_allocator(ptr::null_mut());
        }
        assert_eq!(parent.stats().allocation_count, 0);
    })
    .join()
    .unwrap();
}

/// A free of a PERSIST block that the parent refuses (the size of another class, which the heap
/// checks) changes nothing in the scope either: the block stays live in both, and the right
/// free through the scope still frees it.
#[test]
fn a_persist_free_the_parent_refuses_changes_nothing() {
    let parent = goo_memory_core::heap::Heap::create(goo_memory_core::AllocStrategy::Null).as_ptr();
    // SAFETY: `parent` outlives the scope; the block is freed once with its size.
    unsafe {
        let scope = scoped::create(parent).as_ptr();
        let p = dispatch::alloc(scope, 100, 0, AllocOptions::PERSIST);
        assert!(!p.is_null());
        // The counts (a heap's bytes_reserved is the whole process's heap, which other tests
        // move meanwhile).
        let counts = |a| {
            let s = dispatch::stats(a);
            (s.allocation_count, s.bytes_allocated, s.total_allocations, s.total_frees)
        };
        let before = (counts(scope), counts(parent));
        dispatch::free(scope, p, 5000, 0); // another class: the heap refuses it
        assert_eq!((counts(scope), counts(parent)), before, "nothing changed");
        dispatch::free(scope, p, 100, 0);
        assert_eq!(dispatch::stats(parent).allocation_count, 0, "freed in the parent");
        assert_eq!(dispatch::stats(scope).total_frees, 1);
        goo_memory_core::managed_destroy(scope);
        goo_memory_core::managed_destroy(parent);
    }
}
