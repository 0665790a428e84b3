//! A region tree as a server keeps one: a region for the server, a child per connection and a
//! grandchild per request. Children borrow their parent, so none can outlive it; dropping a
//! region frees its memory and runs its cleanups, children first. The report shows the tree.
//!
//! `cargo run -p goo-memory-core --example region_tree`

use std::cell::RefCell;
use std::rc::Rc;

use goo_memory_core::allocator_api2::vec::Vec;
use goo_memory_core::region::Region;

fn main() {
    let log = Rc::new(RefCell::new(std::vec::Vec::new()));
    let server = Region::new(16 * 1024, true);
    server.set_name("server");
    let config = server.alloc_str("listen 0.0.0.0:8080");

    for id in 0..2 {
        let connection = server.child(4096);
        connection.set_name(&format!("connection {id}"));
        let l = log.clone();
        connection.on_cleanup(move || l.borrow_mut().push(format!("connection {id} closed")));
        for n in 0..3 {
            let request = connection.child(0);
            request.set_name(&format!("request {n}"));
            // Headers in a Vec that lives in the request's region.
            let mut headers = Vec::new_in(&request);
            headers.push(request.alloc_str("Host: example.org"));
            headers.push(request.alloc_str(&format!("X-Request: {id}.{n}")));
            let body = request.alloc_slice_fill_copy(512, b' ');
            assert_eq!(body.len(), 512);
            if (id, n) == (1, 2) {
                // The last request is still open when the report is taken.
                println!("{}", server.report());
                let stats = server.subtree_stats();
                println!("server subtree: {stats}");
                assert!(stats.allocation_count >= 5);
            }
        } // each request region is destroyed here
    } // each connection region: its cleanup runs

    assert_eq!(*log.borrow(), ["connection 0 closed", "connection 1 closed"]);
    assert_eq!(config, "listen 0.0.0.0:8080");
    println!("server alone: {}", server.stats());
}
