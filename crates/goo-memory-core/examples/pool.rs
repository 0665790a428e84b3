//! Pools: a `TypedPool` of tree nodes (an owning `PoolBox` gives each node back on drop), with
//! stats turned on and off, and a `RawPool` serving allocator-api2 boxes of any type that fits.
//!
//! `cargo run -p goo-memory-core --example pool`

use goo_memory_core::allocator_api2::boxed::Box;
use goo_memory_core::pool::{PoolBox, RawPool, TypedPool};

struct Node<'p> {
    key: u32,
    left: Option<PoolBox<'p, Node<'p>>>,
    right: Option<PoolBox<'p, Node<'p>>>,
}

fn insert<'p>(pool: &'p TypedPool<Node<'p>>, slot: &mut Option<PoolBox<'p, Node<'p>>>, key: u32) {
    match slot {
        None => *slot = Some(pool.alloc(Node { key, left: None, right: None }).ok().expect("memory")),
        Some(node) if key < node.key => insert(pool, &mut node.left, key),
        Some(node) => insert(pool, &mut node.right, key),
    }
}

fn depth(slot: &Option<PoolBox<'_, Node<'_>>>) -> usize {
    slot.as_ref().map_or(0, |n| 1 + depth(&n.left).max(depth(&n.right)))
}

fn main() {
    let pool = TypedPool::<Node>::new(64);
    let mut root = None;
    for i in 0..100u32 {
        insert(&pool, &mut root, i.wrapping_mul(2_654_435_761) % 1000);
    }
    println!("tree of depth {}; pool: {}", depth(&root), pool.stats());
    println!("front door: {}", pool.alloc_stats());
    assert_eq!(pool.stats().live_objects, 100);
    drop(root); // every node goes back to the pool
    assert_eq!(pool.stats().live_objects, 0);
    assert_eq!(pool.alloc_stats().total_frees, 100);

    // Stats off, for a pool on a hot path (it counts by default, as the C pool does).
    let quiet = TypedPool::<[u64; 4]>::new(0).with_stats(false);
    let b = quiet.alloc([1, 2, 3, 4]).ok().unwrap();
    assert_eq!(quiet.alloc_stats().total_allocations, 0);
    drop(b);

    // A raw pool of 64-byte objects serves any value of up to 64 bytes through allocator-api2.
    let raw = RawPool::new(64, 32);
    let a = Box::new_in([0u8; 48], &raw);
    let b = Box::new_in(String::from("in a pool"), &raw);
    println!("{} and {} bytes: {}", a.len(), b.len(), raw.stats());
    assert_eq!(raw.stats().live_objects, 2);
}
