//! Callbacks and fault injection from Rust: every event exactly once and in order per thread,
//! from several threads at once; interception fails exactly the chosen request; callbacks that
//! allocate do not recurse; reports include named allocators; the exhaustive checker.

use std::collections::HashMap;
use std::ffi::c_void;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};
use std::sync::Mutex;

use goo_memory_core::dispatch;
use goo_memory_core::policy::callbacks::{self, FaultInjector, FaultSpec, MemoryEvent};
use goo_memory_core::policy::callbacks::{EVENT_ALL, EVENT_ALLOC, EVENT_FREE, EVENT_REQUEST};
use goo_memory_core::report::{self, Report};
use goo_memory_core::{AllocOptions, Allocator, GooAllocator};

/// An allocator pointer handed to another thread (the allocators used so are thread-safe).
#[derive(Clone, Copy)]
struct Shared(*mut GooAllocator);
// SAFETY: only thread-safe (system) allocators are shared this way in these tests.
unsafe impl Send for Shared {}
// SAFETY: as above.
unsafe impl Sync for Shared {}

impl Shared {
    fn get(self) -> *mut GooAllocator {
        self.0
    }
}

type Log = Mutex<HashMap<usize, Vec<(u32, usize)>>>;

/// The tests here run one at a time: the exhaustive checker forks, and a fork must not happen
/// while another test thread holds one of the library's locks.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

unsafe extern "C" fn record(e: *const MemoryEvent, data: *mut c_void) -> bool {
    // SAFETY: `data` is the test's `Log`, alive while registered; the event is valid.
    let (log, e) = unsafe { (&*(data as *const Log), &*e) };
    if let Some(v) = log.lock().unwrap().get_mut(&(e.allocator as usize)) {
        v.push((e.kind, e.ptr as usize));
    }
    true
}

#[test]
fn every_event_once_in_order_from_several_threads() {
    let _serial = serial();
    let threads = if cfg!(miri) { 2 } else { 4 };
    let ops = if cfg!(miri) { 20 } else { 2000 };
    let heaps: Vec<Allocator<goo_memory_core::System>> = (0..threads).map(|_| Allocator::system()).collect();
    let log: Log = Mutex::new(heaps.iter().map(|h| (h.as_ptr() as usize, Vec::new())).collect());
    // SAFETY: the callback may run on any thread with any event while registered; its data
    // outlives the registration (removed below).
    let id = unsafe { callbacks::add(EVENT_ALL, record, &log as *const Log as *mut c_void) };
    assert_ne!(id, 0);
    std::thread::scope(|s| {
        for h in &heaps {
            let raw = Shared(h.as_ptr());
            s.spawn(move || {
                let a = raw.get();
                for i in 0..ops {
                    // SAFETY: a live allocator; the block is freed right away.
                    unsafe {
                        let p = dispatch::alloc(a, 8 + i % 100, 0, AllocOptions::DEFAULT);
                        dispatch::free(a, p, 8 + i % 100, 0);
                    }
                }
            });
        }
    });
    assert!(callbacks::remove(id));
    for (_, events) in log.into_inner().unwrap() {
        assert_eq!(events.len(), 3 * ops);
        for chunk in events.chunks(3) {
            assert_eq!(chunk[0], (EVENT_REQUEST, 0));
            assert_eq!(chunk[1].0, EVENT_ALLOC);
            assert_eq!(chunk[2], (EVENT_FREE, chunk[1].1), "free of the block just allocated");
        }
    }
}

#[test]
fn interception_fails_exactly_the_chosen_request() {
    let _serial = serial();
    let heap = Allocator::system();
    for nth in [1u64, 3, 7] {
        let inj = FaultInjector::install(FaultSpec {
            allocator: heap.as_ptr(),
            fail_nth: nth,
            this_thread_only: true,
            ..FaultSpec::default()
        })
        .unwrap();
        let layout = core::alloc::Layout::from_size_align(32, 8).unwrap();
        let results: Vec<_> = (1..=8).map(|_| heap.allocate(layout)).collect();
        for (i, r) in results.iter().enumerate() {
            assert_eq!(r.is_err(), i as u64 + 1 == nth);
        }
        assert_eq!(inj.failures_injected(), 1);
        for p in results.into_iter().flatten() {
            // SAFETY: allocated above.
            unsafe { heap.deallocate(p, layout) };
        }
    }
    assert_eq!(heap.stats().failed_allocations, 3);
}

static INNER: Mutex<usize> = Mutex::new(0);
unsafe extern "C" fn allocating_callback(e: *const MemoryEvent, data: *mut c_void) -> bool {
    // SAFETY: valid for the call.
    let e = unsafe { &*e };
    if e.allocator == data.cast() {
        *INNER.lock().unwrap() += 1;
        // An allocation inside a callback: served, but not reported back to callbacks.
        let v = vec![0u8; 64];
        // SAFETY: the same live allocator.
        unsafe {
            let p = dispatch::alloc(data.cast(), 16, 0, AllocOptions::DEFAULT);
            dispatch::free(data.cast(), p, 16, 0);
        }
        drop(v);
    }
    true
}

#[test]
fn a_callback_that_allocates_does_not_recurse() {
    let _serial = serial();
    let heap = Allocator::system();
    // SAFETY: the callback may run on any thread with any event while registered; its data
    // outlives the registration (removed below).
    let id = unsafe { callbacks::add(EVENT_ALLOC, allocating_callback, heap.as_ptr().cast()) };
    // SAFETY: a live allocator.
    unsafe {
        let p = dispatch::alloc(heap.as_ptr(), 8, 0, AllocOptions::DEFAULT);
        dispatch::free(heap.as_ptr(), p, 8, 0);
    }
    callbacks::remove(id);
    assert_eq!(*INNER.lock().unwrap(), 1);
    assert_eq!(heap.stats().total_allocations, 2);
}

#[test]
fn reports_name_allocators_and_show_size_classes() {
    let _serial = serial();
    let heap = Allocator::system();
    // SAFETY: a live library allocator (its drop unnames it).
    unsafe { report::set_name(heap.as_ptr(), Some("rust heap \"one\"")) };
    let l = core::alloc::Layout::from_size_align(100, 8).unwrap();
    let p = heap.allocate(l).unwrap();
    // SAFETY: every test of this binary holds the serial lock: no other thread uses a
    // single-owner allocator meanwhile.
    let r = unsafe { Report::collect() };
    let me = r.allocators.iter().find(|a| a.address == heap.as_ptr() as usize).unwrap();
    assert_eq!(me.name, "rust heap \"one\"");
    assert_eq!(me.histogram.unwrap().live[4], 1); // 100 bytes: the <=128 class
    assert!(r.to_json().contains("\"name\":\"rust heap \\\"one\\\"\""));
    assert!(r.to_text().contains("rust heap"));
    // SAFETY: allocated above.
    unsafe { heap.deallocate(p, l) };
}

#[cfg(not(miri))]
#[test]
fn exhaustive_checker_finds_a_planted_leak() {
    let _serial = serial();
    let heap = Allocator::system();
    let a = heap.as_ptr();
    let l = |n| core::alloc::Layout::from_size_align(n, 8).unwrap();
    let h = heap.handle();
    let correct = report::check_all_allocation_failures(&mut || {
        let Ok(x) = h.allocate(l(8), AllocOptions::DEFAULT) else { return 1 };
        let Ok(y) = h.allocate(l(16), AllocOptions::DEFAULT) else {
            // SAFETY: allocated above.
            unsafe { h.deallocate(x, l(8)) };
            return 1;
        };
        // SAFETY: allocated above.
        unsafe {
            h.deallocate(y, l(16));
            h.deallocate(x, l(8));
        }
        0
    });
    assert_eq!((correct.allocations, correct.leaks, correct.crashes), (2, 0, 0));
    let leaky = report::check_all_allocation_failures(&mut || {
        // SAFETY: a live allocator.
        let x = unsafe { dispatch::alloc(a, 8, 0, AllocOptions::DEFAULT) };
        // SAFETY: as above.
        let y = unsafe { dispatch::alloc(a, 8, 0, AllocOptions::DEFAULT) };
        if x.is_null() || y.is_null() {
            return 1; // planted: the other block leaks
        }
        // SAFETY: both live.
        unsafe {
            dispatch::free(a, x, 8, 0);
            dispatch::free(a, y, 8, 0);
        }
        0
    });
    assert_eq!((leaky.allocations, leaky.leaks, leaky.first_bad), (2, 2, 1));
}

/// Appends `(tag, kind)` to the [`Tagged`] log behind `data` for every event on its allocator.
unsafe extern "C" fn tagged(e: *const MemoryEvent, data: *mut c_void) -> bool {
    // SAFETY: `data` points to a live `Tagged` while registered; the event is valid.
    let (t, e) = unsafe { (&*(data as *const Tagged), &*e) };
    if e.allocator as usize == t.allocator {
        t.log.lock().unwrap().push((t.tag, e.kind));
    }
    true
}

struct Tagged<'a> {
    tag: u32,
    allocator: usize,
    log: &'a Mutex<Vec<(u32, u32)>>,
}

#[test]
fn each_event_reaches_exactly_the_callbacks_listening_to_it_after_slots_are_reused() {
    let _serial = serial();
    let heap = Allocator::system();
    let a = heap.as_ptr();
    let log = Mutex::new(Vec::new());
    let mk = |tag| Tagged { tag, allocator: a as usize, log: &log };
    let (t1, t2, t3, t4) = (mk(1), mk(2), mk(3), mk(4));
    let arg = |t: &Tagged| t as *const Tagged as *mut c_void;
    // SAFETY: the callback may run on any thread with any event while registered; its data
    // outlives the registration (removed below).
    let id1 = unsafe { callbacks::add(EVENT_ALLOC, tagged, arg(&t1)) };
    // SAFETY: the callback may run on any thread with any event while registered; its data
    // outlives the registration (removed below).
    let id2 = unsafe { callbacks::add(EVENT_FREE, tagged, arg(&t2)) };
    // Removing the first frees its slot; the next registration takes it with another mask.
    assert!(callbacks::remove(id1));
    // SAFETY: the callback may run on any thread with any event while registered; its data
    // outlives the registration (removed below).
    let id3 = unsafe { callbacks::add(EVENT_ALLOC | EVENT_FREE, tagged, arg(&t3)) };
    // SAFETY: the callback may run on any thread with any event while registered; its data
    // outlives the registration (removed below).
    let id4 = unsafe { callbacks::add(EVENT_ALLOC, tagged, arg(&t4)) };
    // SAFETY: a live allocator; the block is freed right away.
    unsafe {
        let p = dispatch::alloc(a, 24, 0, AllocOptions::DEFAULT);
        dispatch::free(a, p, 24, 0);
    }
    for id in [id2, id3, id4] {
        assert!(callbacks::remove(id));
    }
    assert!(!callbacks::remove(id1), "a removed id stays removed");
    let mut got = log.into_inner().unwrap();
    // Within one event, callbacks run in slot order; the test only needs who saw what.
    got.sort();
    assert_eq!(got, vec![(2, EVENT_FREE), (3, EVENT_ALLOC), (3, EVENT_FREE), (4, EVENT_ALLOC)]);
    // With nothing registered, nothing is called and no event is listened to.
    assert!(!callbacks::listening(EVENT_ALL));
}

/// A sole listener is served from its kind's copy of it: that copy must follow the table as
/// listeners come and go (a second one joins, the first leaves, the last leaves).
#[test]
fn a_sole_listener_gives_way_to_several_and_back() {
    let _serial = serial();
    let heap = Allocator::system();
    let a = heap.as_ptr();
    let log = Mutex::new(Vec::new());
    let mk = |tag| Tagged { tag, allocator: a as usize, log: &log };
    let (t1, t2) = (mk(1), mk(2));
    let arg = |t: &Tagged| t as *const Tagged as *mut c_void;
    let pair = || {
        // SAFETY: a live allocator; the block is freed right away.
        unsafe {
            let p = dispatch::alloc(a, 40, 0, AllocOptions::DEFAULT);
            dispatch::free(a, p, 40, 0);
        }
    };
    // SAFETY: the callback may run on any thread with any event while registered; its data
    // outlives the registration (removed below).
    let id1 = unsafe { callbacks::add(EVENT_ALLOC, tagged, arg(&t1)) };
    pair();
    // SAFETY: the callback may run on any thread with any event while registered; its data
    // outlives the registration (removed below).
    let id2 = unsafe { callbacks::add(EVENT_ALLOC | EVENT_FREE, tagged, arg(&t2)) };
    pair();
    assert!(callbacks::remove(id1));
    pair();
    assert!(callbacks::remove(id2));
    pair();
    let got = log.into_inner().unwrap();
    assert_eq!(
        got,
        vec![
            (1, EVENT_ALLOC),
            (1, EVENT_ALLOC),
            (2, EVENT_ALLOC),
            (2, EVENT_FREE),
            (2, EVENT_ALLOC),
            (2, EVENT_FREE),
        ]
    );
}

/// What a [`checked`] callback was registered with.
struct Registration {
    /// The events it was registered for.
    mask: u32,
    /// Which of the two registrations this is (the callback's own `data` must say the same).
    tag: usize,
}

static MISDELIVERED: AtomicUsize = AtomicUsize::new(0);
static DELIVERED: AtomicUsize = AtomicUsize::new(0);

/// Counts a delivery, and a misdelivery if it comes with another registration's data or for an
/// event it was not registered for (a callback cannot panic: it would abort).
fn check(e: *const MemoryEvent, data: *mut c_void, tag: usize) {
    // SAFETY: `data` is a `Registration` that outlives the test's threads; the event is valid.
    let (r, e) = unsafe { (&*(data as *const Registration), &*e) };
    DELIVERED.fetch_add(1, Relaxed);
    if r.tag != tag || r.mask & e.kind == 0 {
        MISDELIVERED.fetch_add(1, Relaxed);
    }
}

unsafe extern "C" fn checked_a(e: *const MemoryEvent, data: *mut c_void) -> bool {
    check(e, data, 0);
    true
}

unsafe extern "C" fn checked_b(e: *const MemoryEvent, data: *mut c_void) -> bool {
    check(e, data, 1);
    true
}

/// Registrations come and go (reusing one slot with another callback, data and mask) while
/// another thread allocates: a dispatcher never pairs a callback with another registration's
/// data, nor calls one for an event it did not register for.
#[test]
fn registration_churn_never_mixes_registrations() {
    let _serial = serial();
    let rounds = if cfg!(miri) { 20 } else { 5000 };
    let heap = Allocator::system();
    let raw = Shared(heap.as_ptr());
    let regs = [Registration { mask: EVENT_ALLOC, tag: 0 }, Registration { mask: EVENT_FREE, tag: 1 }];
    let fns: [callbacks::CallbackFn; 2] = [checked_a, checked_b];
    let stop = AtomicBool::new(false);
    MISDELIVERED.store(0, Relaxed);
    std::thread::scope(|s| {
        s.spawn(|| {
            let a = raw.get();
            while !stop.load(Relaxed) {
                // SAFETY: a live allocator; the block is freed right away.
                unsafe {
                    let p = dispatch::alloc(a, 48, 0, AllocOptions::DEFAULT);
                    dispatch::free(a, p, 48, 0);
                }
            }
        });
        for i in 0..rounds {
            let r = &regs[i % 2];
            // SAFETY: the callback may run on any thread with any event while registered; its data
            // outlives the registration (removed below).
            let id = unsafe { callbacks::add(r.mask, fns[i % 2], r as *const Registration as *mut c_void) };
            assert_ne!(id, 0);
            std::thread::yield_now();
            assert!(callbacks::remove(id));
        }
        stop.store(true, Relaxed);
    });
    assert_eq!(MISDELIVERED.load(Relaxed), 0, "of {} deliveries", DELIVERED.load(Relaxed));
}

unsafe extern "C" fn always_allow(_e: *const MemoryEvent, _data: *mut c_void) -> bool {
    true
}

/// No callback listening refuses nothing: a dispatch with nobody listening allows the event,
/// and a callback that always allows, added and removed on one thread while another allocates,
/// never fails an allocation (a request that saw it listen, then found nobody, once failed).
#[test]
fn nobody_listening_refuses_nothing() {
    let _serial = serial();
    let a = Allocator::system();
    let event = MemoryEvent::new(EVENT_REQUEST, a.as_ptr(), 8, 8, AllocOptions::DEFAULT);
    assert!(callbacks::dispatch(&event), "nobody listens: nobody refuses");
    let stop = AtomicBool::new(false);
    let shared = Shared(a.as_ptr());
    let rounds = if cfg!(miri) { 20 } else { 20_000 };
    let failed = std::thread::scope(|s| {
        let allocating = s.spawn(|| {
            let mut failed = 0;
            while !stop.load(Relaxed) {
                // SAFETY: a thread-safe allocator; the block is freed at once.
                unsafe {
                    let p = dispatch::alloc(shared.get(), 32, 0, AllocOptions::DEFAULT);
                    if p.is_null() {
                        failed += 1;
                    } else {
                        dispatch::free(shared.get(), p, 32, 0);
                    }
                }
            }
            failed
        });
        for _ in 0..rounds {
            // SAFETY: the callback may run on any thread with any event while registered; its data
            // outlives the registration (removed below).
            let id = unsafe { callbacks::add(EVENT_REQUEST, always_allow, std::ptr::null_mut()) };
            assert_ne!(id, 0);
            assert!(callbacks::remove(id));
        }
        stop.store(true, Relaxed);
        allocating.join().unwrap()
    });
    assert_eq!(failed, 0);
    assert_eq!(a.stats().failed_allocations, 0);
}

/// A fault injector dropped while another thread allocates: the other thread may still be
/// running its callback, so its state outlives the drop (ASan and Miri saw it freed under the
/// callback before).
#[test]
fn a_fault_injector_dropped_under_a_running_callback_stays_valid() {
    let _serial = serial();
    let a = Allocator::system();
    let shared = Shared(a.as_ptr());
    let stop = AtomicBool::new(false);
    let rounds = if cfg!(miri) { 10 } else { 5_000 };
    std::thread::scope(|s| {
        s.spawn(|| {
            while !stop.load(Relaxed) {
                // SAFETY: a thread-safe allocator; the block is freed at once.
                unsafe {
                    let p = dispatch::alloc(shared.get(), 32, 0, AllocOptions::DEFAULT);
                    if !p.is_null() {
                        dispatch::free(shared.get(), p, 32, 0);
                    }
                }
            }
        });
        for _ in 0..rounds {
            let faults = FaultInjector::install(FaultSpec { fail_nth: 1_000_000, ..FaultSpec::default() });
            drop(faults.unwrap());
        }
        stop.store(true, Relaxed);
    });
}
