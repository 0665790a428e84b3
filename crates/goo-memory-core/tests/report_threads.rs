//! A report collected on one thread while another makes and drops allocators.

use goo_memory_core::Allocator;

/// A report made on one thread while another creates, names and drops allocators: every
/// allocator it visits is live while visited (the registry's lock keeps a destroy out; ASan saw
/// one freed under the report). Thread-safe kinds only, and a test binary of its own: a
/// single-owner allocator's chunk lists must not change while a report reads them (see
/// `Report::collect`).
#[test]
fn a_report_on_another_thread_sees_only_live_allocators() {
    let stop = std::sync::atomic::AtomicBool::new(false);
    let rounds = if cfg!(miri) { 5 } else { 2_000 };
    std::thread::scope(|s| {
        s.spawn(|| {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                // SAFETY: the other thread uses thread-safe allocators only, and no other test
                // runs in this binary.
                let r = unsafe { goo_memory_core::report::Report::collect() };
                assert!(!r.allocators.is_empty(), "the built-in default is always there");
            }
        });
        for i in 0..rounds {
            let system = Allocator::system();
            let name = if i % 2 == 0 { "an allocator with a long enough name" } else { "s" };
            // SAFETY: a live library allocator (its drop unnames it).
            unsafe { goo_memory_core::report::set_name(system.as_ptr(), Some(name)) };
            let heap = Allocator::heap();
            let v = goo_memory_core::allocator_api2::vec![in &heap; 7u64; 10];
            drop(v);
            drop((system, heap));
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
    });
}
