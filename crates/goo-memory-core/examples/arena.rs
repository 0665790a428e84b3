//! An arena for a parse: words interned as `&str`s in the arena, a hashbrown map and a
//! allocator-api2 `Vec` living in it, a checkpoint for scratch work, a limit, and the arena's
//! chunks and stats at the end.
//!
//! `cargo run -p goo-memory-core --example arena`

use goo_memory_core::allocator_api2::vec::Vec;
use goo_memory_core::arena::Arena;

const TEXT: &str = "the quick brown fox jumps over the lazy dog the end";

fn main() {
    let mut arena = Arena::new();
    {
        // Every distinct word once, in the arena; counts in a map that also lives there.
        let mut counts = hashbrown::HashMap::new_in(&arena);
        for word in TEXT.split(' ') {
            *counts.entry(word).or_insert(0u32) += 1;
        }
        let mut words: Vec<&str, _> = Vec::new_in(&arena);
        for &w in counts.keys() {
            words.push(arena.alloc_str(w));
        }
        words.sort_unstable();
        assert_eq!(counts["the"], 3);
        println!("{} distinct words: {}", words.len(), words.join(" "));

        // A large value built in place, and slices built element by element.
        let table = arena.alloc_with(|| [0u16; 4096]);
        table[7] = 7;
        let squares = arena.alloc_slice_fill_with(10, |i| i * i);
        assert_eq!(squares[9], 81);
        println!("after the parse: {}", arena.stats());
    }

    // Scratch work: everything allocated through the checkpoint is freed when it drops.
    let before = arena.stats().allocation_count;
    {
        let scratch = arena.checkpoint();
        let upper: Vec<u8, _> =
            TEXT.bytes().map(|b| b.to_ascii_uppercase()).fold(Vec::new_in(&scratch), |mut v, b| {
                v.push(b);
                v
            });
        assert!(upper.starts_with(b"THE QUICK"));
    }
    assert_eq!(arena.stats().allocation_count, before);

    // No more chunks than it holds now: what fits in them is still served, nothing more.
    arena.set_allocation_limit(Some(arena.allocated_bytes())).expect("not below what it holds");
    assert!(arena.try_alloc_slice_fill_copy(1 << 20, 0u8).is_err());
    arena.set_allocation_limit(None).unwrap();

    for (i, chunk) in arena.iter_allocated_chunks().enumerate() {
        println!("chunk {i}: {} bytes in use", chunk.len());
    }
    println!("{arena:?}");
    arena.reset();
    assert_eq!(arena.chunk_count(), 1);
}
