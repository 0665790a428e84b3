//! `report::tracked` (a safe function) on one thread while another owns an arena and switches
//! its stats: each allocator's `track_stats` flag is read and written atomically (a plain
//! write racing the registry's read was a data race Miri reported). A test binary of its own,
//! as `report_threads`: nothing else here may read the arena's mechanism meanwhile.

use goo_memory_core::arena::Arena;
use goo_memory_core::report;

#[test]
fn tracked_while_another_thread_switches_its_arenas_stats() {
    let rounds = if cfg!(miri) { 50 } else { 20_000 };
    let mut arena = Arena::new();
    let address = arena.as_ptr() as usize;
    let owner = std::thread::spawn(move || {
        for i in 0..rounds {
            arena.set_track_stats(i % 2 == 0);
            arena.alloc(i);
        }
        arena
    });
    for _ in 0..rounds / 10 {
        // The arena is listed while its stats are on, and its address is all a reader gets.
        let _ = report::tracked().iter().any(|(a, _)| *a as usize == address);
    }
    let mut arena = owner.join().unwrap();
    arena.set_track_stats(true);
    assert!(report::tracked().iter().any(|(a, kind)| *a as usize == address && kind == "arena"));
}
