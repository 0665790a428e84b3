//! The memory bridge between C and Rust:
//!
//! - C to Rust: [`ForeignAllocator`] wraps a `GooAllocator*` a C program made, so Rust
//!   containers allocate through it (with the front door's stats, strategies and callbacks).
//! - Rust to C: [`export`] turns any [`Backend`] into a `GooAllocator*` (one generic vtable);
//!   [`Api2Backend`] makes any `allocator-api2` allocator a `Backend` first.
//! - [`GooGlobal`]: the Goo heap as Rust's `#[global_allocator]`.

use core::alloc::{GlobalAlloc, Layout};
use core::marker::PhantomData;
use core::ptr::{self, NonNull};

use crate::allocators::system::System;
use crate::default;
use crate::handle::{AllocError, AllocatorRef};
use crate::policy::backend::{Backend, Managed};
use crate::policy::front;
use crate::raw::{AllocOptions, AllocStats, AllocStrategy, GooAllocator};

/// A C-made allocator, borrowed for `'a`, usable from the thread that holds it.
///
/// It is neither `Send` nor `Sync`: nothing says the C functions behind it tolerate other
/// threads. If they do, [`ForeignAllocator::assume_thread_safe`] says so once, unsafely.
///
/// ```
/// use goo_memory_core::bridge::ForeignAllocator;
/// use goo_memory_core::GooAllocator;
/// use core::ptr::NonNull;
///
/// // A C allocator: here its functions are written in Rust with the C ABI.
/// unsafe extern "C" fn c_alloc(_: *mut core::ffi::c_void, n: usize, a: usize, _: goo_memory_core::AllocOptions) -> *mut core::ffi::c_void {
///     let mut p = core::ptr::null_mut();
///     if unsafe { libc::posix_memalign(&mut p, a.max(8), n) } == 0 { p } else { core::ptr::null_mut() }
/// }
/// unsafe extern "C" fn c_free(_: *mut core::ffi::c_void, p: *mut core::ffi::c_void, _: usize, _: usize) {
///     unsafe { libc::free(p) }
/// }
/// let mut vtable = GooAllocator { alloc: Some(c_alloc), free: Some(c_free), track_stats: true, ..GooAllocator::EMPTY };
/// let heap = unsafe { ForeignAllocator::from_raw(NonNull::from(&mut vtable)) };
/// let mut v = allocator_api2::vec::Vec::new_in(heap);
/// v.extend_from_slice(&[1u8, 2, 3]);
/// assert_eq!(heap.stats().allocation_count, 1);
/// drop(v);
/// assert_eq!(heap.stats().allocation_count, 0);
/// ```
#[derive(Clone, Copy, Debug)]
pub struct ForeignAllocator<'a> {
    inner: AllocatorRef<'a>,
}

impl<'a> ForeignAllocator<'a> {
    /// Wraps a C-made vtable.
    ///
    /// # Safety
    /// `raw` must stay valid for `'a`, and its functions must behave as
    /// `include/goo/runtime/memory.h` documents, on the calling thread.
    pub unsafe fn from_raw(raw: NonNull<GooAllocator>) -> Self {
        // SAFETY: forwarded contract.
        ForeignAllocator { inner: unsafe { AllocatorRef::from_raw(raw) } }
    }

    /// Declares the C allocator usable from any thread at once.
    ///
    /// # Safety
    /// Its functions must be thread-safe (the front door's own counting is).
    pub unsafe fn assume_thread_safe(self) -> SharedForeignAllocator<'a> {
        SharedForeignAllocator { raw: self.inner.as_ptr(), _lifetime: PhantomData }
    }

    /// Allocates through the front door.
    pub fn allocate(self, layout: Layout) -> Result<NonNull<u8>, AllocError> {
        self.inner.allocate(layout, AllocOptions::DEFAULT)
    }

    /// Frees a block.
    ///
    /// # Safety
    /// `ptr` must be a live block of this allocator allocated with `layout`.
    pub unsafe fn deallocate(self, ptr: NonNull<u8>, layout: Layout) {
        // SAFETY: forwarded contract.
        unsafe { self.inner.deallocate(ptr, layout) }
    }

    /// The allocator's stats (kept by the front door in its embedded field).
    pub fn stats(self) -> AllocStats {
        self.inner.stats()
    }

    /// The handle for `allocator-api2` containers.
    pub fn handle(self) -> AllocatorRef<'a> {
        self.inner
    }
}

/// A C-made allocator declared thread-safe: `Send + Sync`, shareable across threads.
///
/// ```
/// use goo_memory_core::bridge::ForeignAllocator;
/// use goo_memory_core::Allocator;
/// let heap = Allocator::system(); // stands in for a thread-safe allocator made in C
/// // SAFETY: the system allocator is valid while `heap` is, and thread-safe.
/// let shared = unsafe { ForeignAllocator::from_raw(core::ptr::NonNull::new(heap.as_ptr()).unwrap()).assume_thread_safe() };
/// std::thread::scope(|s| {
///     s.spawn(|| {
///         let mut v = goo_memory_core::allocator_api2::vec::Vec::new_in(shared.local());
///         v.push(1u64);
///     });
/// });
/// assert_eq!(heap.stats().total_frees, 1);
/// ```
#[derive(Clone, Copy, Debug)]
pub struct SharedForeignAllocator<'a> {
    raw: *mut GooAllocator,
    _lifetime: PhantomData<&'a GooAllocator>,
}

// SAFETY: `assume_thread_safe`'s contract: the C functions tolerate concurrent use; the front
// door counts with atomics for C-made allocators.
unsafe impl Send for SharedForeignAllocator<'_> {}
// SAFETY: as above.
unsafe impl Sync for SharedForeignAllocator<'_> {}

impl<'a> SharedForeignAllocator<'a> {
    /// A per-thread handle.
    pub fn local(&self) -> ForeignAllocator<'a> {
        // SAFETY: `raw` came from a `ForeignAllocator` valid for `'a`.
        ForeignAllocator { inner: unsafe { AllocatorRef::from_raw(NonNull::new_unchecked(self.raw)) } }
    }
}

#[cfg(feature = "allocator-api2")]
mod api2 {
    use super::*;
    use allocator_api2::alloc::Allocator as A;

    crate::handle::delegate_api2!(impl['a] ForeignAllocator<'a>, |this| this.inner);
    crate::handle::delegate_api2!(impl['a] SharedForeignAllocator<'a>, |this| this.local().inner);

    /// Any `allocator-api2` allocator as a [`Backend`], so it can be [`export`]ed to C.
    ///
    /// ```
    /// use goo_memory_core::bridge::{export, Api2Backend};
    /// use goo_memory_core::dispatch;
    /// use goo_memory_core::AllocOptions;
    /// let raw = export(Api2Backend(allocator_api2::alloc::Global));
    /// unsafe {
    ///     let p = dispatch::alloc(raw.as_ptr(), 100, 0, AllocOptions::ZERO);
    ///     assert_eq!(*p.add(99), 0);
    ///     dispatch::free(raw.as_ptr(), p, 100, 0);
    ///     ((*raw.as_ptr()).destroy.unwrap())(raw.as_ptr());
    /// }
    /// ```
    pub struct Api2Backend<T: A>(pub T);

    impl<T: A + core::fmt::Debug> core::fmt::Debug for Api2Backend<T> {
        fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
            f.debug_tuple("Api2Backend").field(&self.0).finish()
        }
    }

    // SAFETY: blocks come from `T::allocate` with the request's layout (valid, disjoint, aligned
    // per allocator-api2's contract) and go back to `T::deallocate` with the same layout.
    unsafe impl<T: A + 'static> Backend for Api2Backend<T> {
        const NAME: &'static str = "rust";
        const ZEROES: bool = true;

        fn alloc(&self, size: usize, align: usize, options: AllocOptions) -> *mut u8 {
            let Ok(layout) = Layout::from_size_align(size, align) else { return ptr::null_mut() };
            let r = if options.contains(AllocOptions::ZERO) {
                self.0.allocate_zeroed(layout)
            } else {
                self.0.allocate(layout)
            };
            r.map_or(ptr::null_mut(), |p| p.cast::<u8>().as_ptr())
        }

        unsafe fn free(&self, ptr: *mut u8, size: usize, align: usize) {
            // SAFETY: the front door passes back the block's size and alignment, which made a
            // valid layout when it was allocated.
            unsafe {
                let layout = Layout::from_size_align_unchecked(size, align);
                self.0.deallocate(NonNull::new_unchecked(ptr), layout);
            }
        }

        unsafe fn realloc(
            &self,
            ptr: *mut u8,
            old_size: usize,
            new_size: usize,
            align: usize,
            options: AllocOptions,
        ) -> *mut u8 {
            // SAFETY: the block was allocated with `old_size`/`align`; the new layout was
            // checked by the front door (size + align <= isize::MAX).
            unsafe {
                let old = Layout::from_size_align_unchecked(old_size, align);
                let new = Layout::from_size_align_unchecked(new_size, align);
                let p = NonNull::new_unchecked(ptr);
                let r = if new_size >= old_size {
                    if options.contains(AllocOptions::ZERO) {
                        self.0.grow_zeroed(p, old, new)
                    } else {
                        self.0.grow(p, old, new)
                    }
                } else {
                    self.0.shrink(p, old, new)
                };
                r.map_or(ptr::null_mut(), |p| p.cast::<u8>().as_ptr())
            }
        }
    }
}

#[cfg(feature = "allocator-api2")]
pub use api2::Api2Backend;

// The built-in default heap through its front door, as `GlobalAlloc` uses it: containers can
// name it explicitly (`Vec::new_in(GooGlobal)`) without it being the global allocator.
#[cfg(feature = "allocator-api2")]
crate::handle::delegate_api2!(impl[] GooGlobal, |this| this.handle());

/// Hands `backend` to C as a `GooAllocator*` (stats tracked, strategy `Null`): the generic
/// vtable calls it for `alloc`/`realloc`/`free`; C frees it with `destroy`, which drops it.
///
/// ```
/// use goo_memory_core::{bridge::export, AllocOptions, Backend};
/// /// A user's allocator: counts, and gets memory from the system allocator.
/// struct Counting(std::sync::atomic::AtomicUsize);
/// unsafe impl Backend for Counting {
///     const NAME: &'static str = "counting";
///     fn alloc(&self, size: usize, align: usize, o: AllocOptions) -> *mut u8 {
///         self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
///         goo_memory_core::System.alloc(size, align, o)
///     }
///     unsafe fn free(&self, p: *mut u8, size: usize, align: usize) {
///         unsafe { goo_memory_core::System.free(p, size, align) }
///     }
/// }
/// let raw = export(Counting(Default::default()));
/// // ... give `raw` to C; C calls raw->destroy(raw) when done:
/// unsafe { ((*raw.as_ptr()).destroy.unwrap())(raw.as_ptr()) };
/// ```
pub fn export<B: Backend>(backend: B) -> NonNull<GooAllocator> {
    Managed::create(backend, AllocStrategy::Null, true)
}

/// The Goo heap as Rust's global allocator: every Rust allocation goes through the front door
/// of the built-in default allocator (stats, strategies, callbacks, fault injection).
///
/// It always uses the built-in allocator, not whatever `goo_set_default_allocator` set later,
/// so every block goes back where it came from. It does not recurse into itself: counting never
/// allocates (stat shards come from `malloc` directly, the allocator registry is intrusive), and
/// the bookkeeping that does allocate (names, the region registry, a pool's block index) is
/// ordinary Rust allocation through this front door, outside any allocator's own state. It works
/// before `goo_memory_init` and during thread exit (thread-locals it needs have no destructors;
/// counts then go to a shared shard). With it installed, a callback should not call the
/// registry functions (names, reports): their locks may be held by the allocation it observes.
///
/// ```no_run
/// #[global_allocator]
/// static GLOBAL: goo_memory_core::bridge::GooGlobal = goo_memory_core::bridge::GooGlobal;
///
/// fn main() {
///     let v = vec![1u8; 1000];
///     let s = goo_memory_core::bridge::GooGlobal::stats();
///     assert!(s.bytes_allocated >= 1000);
///     drop(v);
/// }
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct GooGlobal;

impl GooGlobal {
    /// The stats of the heap behind it.
    pub fn stats() -> AllocStats {
        // SAFETY: the built-in allocator is a static.
        unsafe { front::stats(default::builtin()) }
    }

    /// The heap behind it as a front-door handle (what `GooGlobal` is as an allocator-api2
    /// allocator too, installed as the global allocator or not).
    pub fn handle(self) -> AllocatorRef<'static> {
        // SAFETY: the built-in allocator is a static, never null.
        unsafe { AllocatorRef::from_raw(NonNull::new_unchecked(default::builtin())) }
    }
}

/// Runs `$body` with the built-in default and its backend (the heap, or the system allocator
/// when `GOO_HEAP=system` or a memory tool chose it), so the generic front door is inlined for
/// the one in use.
macro_rules! on_builtin {
    (|$a:ident, $backend:ident| $body:expr) => {{
        let $a = default::builtin();
        if $a == default::builtin_heap() {
            let $backend = &crate::allocators::heap::Heap;
            $body
        } else {
            let $backend = &System;
            $body
        }
    }};
}

// SAFETY: the front door returns null or a block valid for the layout (size > 0 here, since
// GlobalAlloc never asks for zero bytes), aligned, disjoint; dealloc/realloc pass back the
// same layout, as the front door requires.
unsafe impl GlobalAlloc for GooGlobal {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the built-in allocator is a static.
        unsafe {
            on_builtin!(|a, backend| front::alloc_in(
                a,
                backend,
                layout.size(),
                layout.align(),
                AllocOptions::DEFAULT
            ))
        }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as above.
        unsafe {
            on_builtin!(|a, backend| front::alloc_in(
                a,
                backend,
                layout.size(),
                layout.align(),
                AllocOptions::ZERO
            ))
        }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `alloc` with `layout`, from the same built-in (chosen once).
        unsafe { on_builtin!(|a, backend| front::free_in(a, backend, ptr, layout.size(), layout.align())) }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: as above; `new_size > 0` and fits `isize` with the alignment (GlobalAlloc's
        // contract).
        unsafe {
            on_builtin!(|a, backend| front::realloc_in(
                a,
                backend,
                ptr,
                layout.size(),
                new_size,
                layout.align(),
                AllocOptions::DEFAULT
            ))
        }
    }
}
