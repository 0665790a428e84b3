//! One JSON shape: the report's own writer (what `goo_memory_stats_report` prints) and serde
//! produce the same text, field for field, escapes included. Run with `--features serde`.
#![cfg(feature = "serde")]

use goo_memory_core::report::{self, Report};
use goo_memory_core::{dispatch, AllocOptions, Allocator};

#[test]
fn report_json_is_serdes_json() {
    let system = Allocator::system();
    let heap = Allocator::heap();
    // Names with every kind of escape: quote, backslash, the short escapes, another control
    // character, a line separator (which JSON leaves as it is).
    // SAFETY: a live library allocator (its drop unnames it).
    unsafe {
        report::set_name(system.as_ptr(), Some("sys \"quoted\" \\ back\u{8}\u{c}\n\r\t\u{1b}\u{2028} end"))
    };
    // SAFETY: a live library allocator (its drop unnames it).
    unsafe { report::set_name(heap.as_ptr(), Some("heap")) };
    // SAFETY: live allocators; blocks freed with their sizes.
    unsafe {
        let p = dispatch::alloc(system.as_ptr(), 100, 0, AllocOptions::DEFAULT);
        let q = dispatch::alloc(heap.as_ptr(), 5000, 0, AllocOptions::DEFAULT);
        // No other thread uses a single-owner allocator meanwhile (the test binary's one test).
        let r = Report::collect();
        let leaks = goo_memory_core::leaks();
        assert!(leaks
            .iter()
            .any(|l| l.allocator == system.as_ptr() && l.live_allocations == 1 && l.live_bytes == 100));
        assert!(r.allocators.iter().any(|a| a.address == system.as_ptr() as usize));
        let ours = r.to_json();
        let serde = serde_json::to_string(&r).unwrap() + "\n";
        assert_eq!(ours, serde);
        assert!(ours.ends_with("]}\n"));
        let parsed: serde_json::Value = serde_json::from_str(&ours).unwrap();
        let sys = parsed["allocators"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["address"] == system.as_ptr() as usize)
            .unwrap();
        let keys: Vec<&str> = sys.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(keys, ["address", "name", "kind", "parent", "stats", "histogram"]);
        assert_eq!(sys["histogram"]["class_limits"][0], 8);
        assert!(sys["histogram"]["class_limits"][15].is_null());
        assert_eq!(sys["stats"]["bytes_allocated"], 100);
        dispatch::free(system.as_ptr(), p, 100, 0);
        dispatch::free(heap.as_ptr(), q, 5000, 0);
    }
}
