//! One JSON report shape: what a C program gets from `goo_memory_stats_report` (and its buffer
//! form) is, byte for byte, serde's serialisation of the same report plus a newline
//! (`types.h`, beside `GooReportFormat`). One test in its own process, so no other thread
//! makes or frees an allocator between the C call and serde's.

use std::ffi::CStr;

use goo_memory::stats::{goo_memory_stats_report, goo_memory_stats_report_buffer};
use goo_memory_core::report::{self, Report};
use goo_memory_core::{dispatch, AllocOptions, Allocator};

const GOO_REPORT_JSON: u32 = 1;

/// What `goo_memory_stats_report` writes to a C stream.
fn through_file() -> String {
    // SAFETY: a temporary stream of our own, read back and closed here.
    unsafe {
        let file = libc::tmpfile();
        assert!(!file.is_null());
        let written = goo_memory_stats_report(file, GOO_REPORT_JSON);
        libc::rewind(file);
        let mut text = vec![0u8; written];
        assert_eq!(libc::fread(text.as_mut_ptr().cast(), 1, written, file), written);
        libc::fclose(file);
        String::from_utf8(text).unwrap()
    }
}

/// What `goo_memory_stats_report_buffer` writes into a buffer large enough.
fn through_buffer() -> String {
    // SAFETY: a null buffer of size 0 asks for the length; then a buffer of that size plus NUL.
    unsafe {
        let len = goo_memory_stats_report_buffer(core::ptr::null_mut(), 0, GOO_REPORT_JSON);
        let mut buffer = vec![0u8; len + 1];
        assert_eq!(
            goo_memory_stats_report_buffer(buffer.as_mut_ptr().cast(), buffer.len(), GOO_REPORT_JSON),
            len
        );
        CStr::from_bytes_until_nul(&buffer).unwrap().to_str().unwrap().to_owned()
    }
}

#[test]
fn the_c_calls_json_is_serdes_json_and_a_newline() {
    let heap = Allocator::heap();
    let region = goo_memory_core::region::Region::new(0, true);
    let child = region.child(0);
    // SAFETY: a live library allocator (its drop unnames it).
    unsafe { report::set_name(heap.as_ptr(), Some("heap \"quoted\" \\ \n end")) };
    child.set_name("child");
    // SAFETY: a live allocator; the block is freed with its size.
    let block = unsafe { dispatch::alloc(heap.as_ptr(), 100, 0, AllocOptions::DEFAULT) };
    child.alloc([0u8; 40]);

    let from_file = through_file();
    let from_buffer = through_buffer();
    // SAFETY: no other thread uses a single-owner allocator meanwhile.
    let serde = serde_json::to_string(&unsafe { Report::collect() }).unwrap() + "\n";
    assert_eq!(from_file, serde);
    assert_eq!(from_buffer, serde);
    assert!(from_file.ends_with("]}\n"), "{from_file}");
    // The allocators made here are in it, the child under its parent.
    let parsed: serde_json::Value = serde_json::from_str(&from_file).unwrap();
    let all = parsed["allocators"].as_array().unwrap();
    let find =
        |a: *mut goo_memory_core::GooAllocator| all.iter().find(|r| r["address"] == a as usize).unwrap();
    assert_eq!(find(heap.as_ptr())["stats"]["bytes_allocated"], 100);
    assert_eq!(find(child.as_ptr())["parent"], region.as_ptr() as usize);
    assert_eq!(find(child.as_ptr())["name"], "child");

    // SAFETY: allocated above with this size.
    unsafe { dispatch::free(heap.as_ptr(), block, 100, 0) };
}
