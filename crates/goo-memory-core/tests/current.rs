//! The current allocator (what a request naming none uses) as threads see it while the default
//! changes: a thread without its own allocator follows every new default at once, a thread with
//! its own keeps it, and one that drops its own follows the default again. In a process of its
//! own: it changes the process's default.

use core::ptr;
use std::sync::mpsc;

use goo_memory_core::{
    dispatch, set_default_allocator, set_thread_allocator, AllocOptions, AllocStrategy, GooAllocator, System,
};

/// An allocator handed to the worker thread.
struct Handle(*mut GooAllocator);
// SAFETY: library allocators may be used from any thread; this one is used by one at a time.
unsafe impl Send for Handle {}

/// Allocates and frees one block through the current allocator (null), on the calling thread.
fn one_request() {
    // SAFETY: the block is freed through the same (current) allocator, which no other thread
    // changes between the two calls (the test steps in turn).
    unsafe {
        let p = dispatch::alloc(ptr::null_mut(), 64, 0, AllocOptions::DEFAULT);
        assert!(!p.is_null());
        dispatch::free(ptr::null_mut(), p, 64, 0);
    }
}

fn total(a: *mut GooAllocator) -> usize {
    // SAFETY: a live allocator.
    unsafe { dispatch::stats(a) }.total_allocations
}

#[test]
fn threads_follow_the_default_and_keep_their_own() {
    let first = System::create(AllocStrategy::Null).as_ptr();
    let second = System::create(AllocStrategy::Null).as_ptr();
    let own = System::create(AllocStrategy::Null).as_ptr();
    // The worker does one step each time the main thread asks, and says when it is done.
    let (ask, steps) = mpsc::channel::<u32>();
    let (done, finished) = mpsc::channel::<()>();
    let handle = Handle(own);
    let worker = std::thread::spawn(move || {
        let own = handle;
        one_request(); // claims the thread's slot
        done.send(()).unwrap();
        for step in steps {
            match step {
                // SAFETY: `own` outlives its time as this thread's allocator (cleared in step 2).
                1 => unsafe {
                    set_thread_allocator(own.0);
                },
                // SAFETY: clearing.
                2 => unsafe {
                    set_thread_allocator(ptr::null_mut());
                },
                _ => {}
            }
            one_request();
            done.send(()).unwrap();
        }
    });
    let step = |n: u32| {
        ask.send(n).unwrap();
        finished.recv().unwrap();
    };

    finished.recv().unwrap(); // the worker's first request went to the built-in
                              // SAFETY: `first` and `second` outlive their time as the default (restored below).
    let builtin = unsafe { set_default_allocator(first) };
    step(0);
    assert_eq!(total(first), 1, "a thread without its own allocator follows a new default");
    step(1);
    assert_eq!(total(own), 1, "a thread's own allocator comes first");
    // SAFETY: as above.
    unsafe { set_default_allocator(second) };
    step(0);
    assert_eq!((total(own), total(second)), (2, 0), "and stays while the default changes");
    step(2);
    assert_eq!(total(second), 1, "a thread that drops its own follows the current default");
    // SAFETY: restoring the built-in.
    unsafe { set_default_allocator(builtin) };
    step(0);
    assert_eq!((total(first), total(second)), (1, 1), "and the next one");
    drop(ask);
    worker.join().unwrap();
    for a in [first, second, own] {
        // SAFETY: live library allocators with no live blocks, used by nobody now.
        unsafe { goo_memory_core::managed_destroy(a) };
    }
}
