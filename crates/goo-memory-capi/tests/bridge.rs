//! The bridge across the boundary: an allocator written in C (compiled from
//! tests/c/bridge/c_side.c into a shared object and loaded at run time) used by Rust
//! collections with stats checked, and Rust allocators (arena, pool, a user backend) handed to
//! C code that allocates through them. CI runs this binary under valgrind.

use std::ffi::{c_char, c_long, c_void, CString};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::ptr::NonNull;

use goo_memory::memory::{goo_memory_alloc_with, goo_memory_free_with};
use goo_memory_core::bridge::{export, ForeignAllocator};
use goo_memory_core::{arena::Arena, pool::RawPool, AllocOptions, Backend, GooAllocator, System};

type AllocWith = unsafe extern "C" fn(*mut GooAllocator, usize) -> *mut c_void;
type FreeWith = unsafe extern "C" fn(*mut GooAllocator, *mut c_void, usize);

struct CSide {
    // Function pointers into the loaded object, which stays loaded for the process.
    counting: unsafe extern "C" fn() -> *mut GooAllocator,
    live: unsafe extern "C" fn() -> c_long,
    calls: unsafe extern "C" fn() -> c_long,
    use_allocator: unsafe extern "C" fn(*mut GooAllocator, usize, AllocWith, FreeWith) -> i32,
}

/// Builds and loads the C side once per test process (the tests run in parallel).
fn load() -> &'static CSide {
    static C_SIDE: std::sync::OnceLock<CSide> = std::sync::OnceLock::new();
    C_SIDE.get_or_init(build_and_open)
}

fn build_and_open() -> CSide {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = std::env::current_exe().unwrap().parent().unwrap().join("bridge-c");
    std::fs::create_dir_all(&out).unwrap();
    let so: PathBuf = out.join(format!("libbridge_c_side_{}.so", std::process::id()));
    let cc = cc::Build::new()
        .target("x86_64-unknown-linux-gnu")
        .host("x86_64-unknown-linux-gnu")
        .opt_level(1)
        .cargo_metadata(false)
        .get_compiler();
    let status = Command::new(cc.path())
        .args(["-std=c11", "-Wall", "-Wextra", "-Werror", "-pedantic", "-D_POSIX_C_SOURCE=200809L"])
        .args(["-shared", "-fPIC", "-g", "-I"])
        .arg(root.join("../../include"))
        .arg(root.join("tests/c/bridge/c_side.c"))
        .arg("-o")
        .arg(&so)
        .status()
        .expect("C compiler");
    assert!(status.success());
    let path = CString::new(so.to_str().unwrap()).unwrap();
    // SAFETY: dlopen/dlsym with valid C strings; the symbols have the declared C signatures
    // (tests/c/bridge/c_side.c).
    unsafe {
        let lib = libc::dlopen(path.as_ptr(), libc::RTLD_NOW);
        assert!(!lib.is_null(), "dlopen failed");
        let sym = |name: &str| {
            let n = CString::new(name).unwrap();
            let p = libc::dlsym(lib, n.as_ptr() as *const c_char);
            assert!(!p.is_null(), "missing {name}");
            p
        };
        CSide {
            counting: std::mem::transmute::<*mut c_void, unsafe extern "C" fn() -> *mut GooAllocator>(sym(
                "bridge_counting_allocator",
            )),
            live: std::mem::transmute::<*mut c_void, unsafe extern "C" fn() -> c_long>(sym(
                "bridge_counting_live",
            )),
            calls: std::mem::transmute::<*mut c_void, unsafe extern "C" fn() -> c_long>(sym(
                "bridge_counting_calls",
            )),
            use_allocator: std::mem::transmute::<
                *mut c_void,
                unsafe extern "C" fn(*mut GooAllocator, usize, AllocWith, FreeWith) -> i32,
            >(sym("bridge_use_allocator")),
        }
    }
}

#[test]
fn rust_collections_allocate_through_a_c_allocator() {
    let c = load();
    // SAFETY: the C allocator is a static in the loaded object, valid for the test; its
    // functions are malloc-based and match the header's contract.
    let heap = unsafe { ForeignAllocator::from_raw(NonNull::new((c.counting)()).unwrap()) };
    {
        let mut v = allocator_api2::vec::Vec::new_in(heap);
        for i in 0..1000u32 {
            v.push(i);
        }
        let b = allocator_api2::boxed::Box::new_in([7u64; 16], heap);
        let mut map = hashbrown::HashMap::new_in(heap);
        for i in 0..100 {
            map.insert(i, i * i);
        }
        assert_eq!(map[&9], 81);
        assert_eq!(b[15], 7);
        assert_eq!(v.iter().map(|&x| x as u64).sum::<u64>(), 499_500);
        // SAFETY: plain getters.
        assert_eq!(unsafe { (c.live)() }, heap.stats().allocation_count as c_long);
        assert!(heap.stats().allocation_count >= 3);
        assert!(heap.stats().bytes_allocated >= 4000 + 128);
    }
    let s = heap.stats();
    assert_eq!(s.allocation_count, 0);
    assert_eq!(s.bytes_allocated, 0);
    assert!(s.total_allocations >= 3);
    // SAFETY: plain getters.
    unsafe {
        assert_eq!((c.live)(), 0);
        assert!((c.calls)() > 0);
    }
}

/// A user's allocator in Rust: counts its live blocks.
struct UserBackend(std::sync::atomic::AtomicIsize);

// SAFETY: delegates to the system allocator.
unsafe impl Backend for UserBackend {
    const NAME: &'static str = "user";
    fn alloc(&self, size: usize, align: usize, o: AllocOptions) -> *mut u8 {
        self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        System.alloc(size, align, o)
    }
    unsafe fn free(&self, p: *mut u8, size: usize, align: usize) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        // SAFETY: blocks come from System.
        unsafe { System.free(p, size, align) }
    }
}

#[test]
fn c_code_allocates_through_rust_allocators() {
    let c = load();
    let (alloc, free): (AllocWith, FreeWith) = (goo_memory_alloc_with, goo_memory_free_with);
    let arena = Arena::new();
    let pool = RawPool::new(64, 8);
    let user = export(UserBackend(Default::default()));
    for (name, a, size) in
        [("arena", arena.as_ptr(), 40), ("pool", pool.as_ptr(), 64), ("user", user.as_ptr(), 100)]
    {
        // SAFETY: live allocators; the C code frees what it allocates.
        let r = unsafe { (c.use_allocator)(a, size, alloc, free) };
        assert_eq!(r, 0, "C code failed with {name}");
    }
    assert_eq!(pool.stats().live_objects, 0);
    assert!(pool.stats().total_objects >= 32);
    // SAFETY: `user` is the exported allocator; the backend is ours.
    unsafe {
        let b = goo_memory_core::Managed::<UserBackend>::backend(user.as_ptr());
        assert_eq!(b.0.load(std::sync::atomic::Ordering::Relaxed), 0);
        assert_eq!(goo_memory_core::dispatch::stats(user.as_ptr()).total_allocations, 16);
        ((*user.as_ptr()).destroy.unwrap())(user.as_ptr());
    }
}
