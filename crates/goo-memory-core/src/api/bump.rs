//! What every arena-like handle ([`Arena`](crate::arena::Arena), [`Region`](crate::region::Region),
//! [`Scope`](crate::scoped::Scope), [`Temp`](crate::temp::Temp)) offers in bumpalo's style:
//! values, slices and strings moved, copied, cloned or built into the allocator, borrowed from
//! the handle. Written once here, over two operations each handle supplies ([`Blocks`]); the
//! [`bump_methods!`] macro puts them on each handle as inherent methods, so that a bumpalo
//! user finds them where bumpalo has them, without importing a trait.
//!
//! Panic safety: a closure that builds a value in place (`alloc_with`, `alloc_slice_fill_*`)
//! may panic. The block was allocated before the closure ran; the guard ([`Filling`]) then drops
//! the elements already built and gives the block back, so nothing half-built is ever
//! reachable and the allocator's stats count the block as freed.

use core::alloc::Layout;
use core::ptr::{self, NonNull};

use crate::handle::AllocError;

/// The two operations the shared methods are built on.
pub(crate) trait Blocks {
    /// A block for `layout`, valid while the handle is borrowed (and until its owner resets it,
    /// which needs `&mut`).
    fn try_alloc_layout(&self, layout: Layout) -> Result<NonNull<u8>, AllocError>;

    /// Gives back a block of this handle.
    ///
    /// # Safety
    /// `block` came from [`Blocks::try_alloc_layout`] with `layout`, was not given back yet,
    /// and nothing refers to it any more.
    unsafe fn give_back(&self, block: NonNull<u8>, layout: Layout);
}

/// Why a request failed, for the panicking forms: a size that cannot be described, or a
/// refusal by the allocator.
pub(crate) enum Failure {
    /// `len` elements of `T` exceed `isize::MAX` bytes.
    Overflow,
    /// The allocator refused `Layout` (after its strategy).
    Refused(Layout),
}

impl Failure {
    /// What `Box::new` and `Vec` do: a capacity overflow panics, an allocation failure calls
    /// [`std::alloc::handle_alloc_error`].
    #[cold]
    pub(crate) fn raise(self) -> ! {
        match self {
            Failure::Overflow => panic!("capacity overflow"),
            Failure::Refused(layout) => std::alloc::handle_alloc_error(layout),
        }
    }
}

impl From<Failure> for AllocError {
    fn from(_: Failure) -> AllocError {
        AllocError
    }
}

#[inline(always)]
pub(crate) fn alloc_layout<S: Blocks + ?Sized>(s: &S, layout: Layout) -> Result<NonNull<u8>, Failure> {
    s.try_alloc_layout(layout).map_err(|_| Failure::Refused(layout))
}

/// Moves `value` into a fresh block, or gives it back.
#[inline(always)]
#[allow(clippy::mut_from_ref)]
pub(crate) fn alloc<S: Blocks + ?Sized, T>(s: &S, value: T) -> Result<&mut T, T> {
    match s.try_alloc_layout(Layout::new::<T>()) {
        Ok(p) => {
            let p = p.cast::<T>();
            // SAFETY: a fresh block for one `T`, borrowed for as long as the handle is.
            unsafe {
                p.as_ptr().write(value);
                Ok(&mut *p.as_ptr())
            }
        }
        Err(_) => Err(value),
    }
}

/// A block of `len` `T`s being filled: on drop (a panic while filling) the `done` first
/// elements are dropped and the block is given back. Forgotten once the block is full.
struct Filling<'a, S: Blocks + ?Sized, T> {
    source: &'a S,
    start: NonNull<T>,
    done: usize,
    layout: Layout,
}

impl<S: Blocks + ?Sized, T> Drop for Filling<'_, S, T> {
    fn drop(&mut self) {
        // SAFETY: the first `done` elements were written and nothing refers to them (the
        // slice was never handed out); the block came from `source` with `layout`.
        unsafe {
            ptr::drop_in_place(ptr::slice_from_raw_parts_mut(self.start.as_ptr(), self.done));
            self.source.give_back(self.start.cast(), self.layout);
        }
    }
}

/// Allocates room for one `T`, then writes `f()` into it (so the value can be built in place).
#[inline(always)]
#[allow(clippy::mut_from_ref)]
pub(crate) fn alloc_with<S: Blocks + ?Sized, T>(s: &S, f: impl FnOnce() -> T) -> Result<&mut T, Failure> {
    let layout = Layout::new::<T>();
    let start = alloc_layout(s, layout)?.cast::<T>();
    let guard = Filling { source: s, start, done: 0, layout };
    // SAFETY: a fresh block for one `T`; if `f` panics, the guard gives it back.
    unsafe { start.as_ptr().write(f()) };
    core::mem::forget(guard);
    // SAFETY: written just above, borrowed for as long as the handle is.
    Ok(unsafe { &mut *start.as_ptr() })
}

/// Allocates room for `len` `T`s and fills it with `f(0)`, `f(1)`, ...
#[allow(clippy::mut_from_ref)]
pub(crate) fn alloc_slice_fill_with<S: Blocks + ?Sized, T>(
    s: &S,
    len: usize,
    mut f: impl FnMut(usize) -> T,
) -> Result<&mut [T], Failure> {
    let layout = Layout::array::<T>(len).map_err(|_| Failure::Overflow)?;
    let start = alloc_layout(s, layout)?.cast::<T>();
    let mut guard = Filling { source: s, start, done: 0, layout };
    while guard.done < len {
        let i = guard.done;
        // SAFETY: `i < len`: inside the block; if `f` panics, the guard drops the `i` elements
        // written and gives the block back.
        unsafe { start.as_ptr().add(i).write(f(i)) };
        guard.done = i + 1;
    }
    core::mem::forget(guard);
    // SAFETY: all `len` elements written; borrowed for as long as the handle is.
    Ok(unsafe { core::slice::from_raw_parts_mut(start.as_ptr(), len) })
}

/// Copies `src` into a fresh block.
#[allow(clippy::mut_from_ref)]
pub(crate) fn alloc_slice_copy<'a, S: Blocks + ?Sized, T: Copy>(
    s: &'a S,
    src: &[T],
) -> Result<&'a mut [T], Failure> {
    let start = alloc_layout(s, Layout::for_value(src))?.cast::<T>();
    // SAFETY: a fresh block for `src.len()` values of `T`, disjoint from `src`; `T: Copy`.
    unsafe {
        ptr::copy_nonoverlapping(src.as_ptr(), start.as_ptr(), src.len());
        Ok(core::slice::from_raw_parts_mut(start.as_ptr(), src.len()))
    }
}

/// Copies `src` into a fresh block.
#[allow(clippy::mut_from_ref)]
pub(crate) fn alloc_str<'a, S: Blocks + ?Sized>(s: &'a S, src: &str) -> Result<&'a mut str, Failure> {
    let bytes = alloc_slice_copy(s, src.as_bytes())?;
    // SAFETY: copied from a `str`, so valid UTF-8.
    Ok(unsafe { core::str::from_utf8_unchecked_mut(bytes) })
}

/// Fills a fresh block from an iterator that says its length.
///
/// # Panics
/// If the iterator yields fewer elements than it said (the block is then given back).
#[allow(clippy::mut_from_ref)]
pub(crate) fn alloc_slice_fill_iter<S: Blocks + ?Sized, T, I>(s: &S, iter: I) -> Result<&mut [T], Failure>
where
    I: IntoIterator<Item = T>,
    I::IntoIter: ExactSizeIterator,
{
    let mut iter = iter.into_iter();
    alloc_slice_fill_with(s, iter.len(), |_| {
        iter.next().expect("the iterator yielded fewer elements than its len()")
    })
}

/// Puts the bumpalo-style methods on a handle that implements [`Blocks`] (with an inherent
/// `try_alloc_layout`). Each fallible `try_` form returns `Err` where the panicking form calls
/// [`std::alloc::handle_alloc_error`] (or panics on a size overflow, as `Vec` does).
macro_rules! bump_methods {
    () => {
        /// A block for `layout`; calls [`std::alloc::handle_alloc_error`] when memory is
        /// exhausted (as `Box::new` does). See `try_alloc_layout`.
        #[inline(always)]
        pub fn alloc_layout(&self, layout: core::alloc::Layout) -> core::ptr::NonNull<u8> {
            match crate::api::bump::alloc_layout(self, layout) {
                Ok(p) => p,
                Err(e) => e.raise(),
            }
        }

        /// Moves `value` into the allocator and borrows it from the handle. Its destructor does
        /// not run when the memory is freed (as in bumpalo).
        #[inline(always)]
        #[allow(clippy::mut_from_ref)]
        pub fn alloc<T>(&self, value: T) -> &mut T {
            match crate::api::bump::alloc(self, value) {
                Ok(r) => r,
                Err(_) => crate::api::bump::Failure::Refused(core::alloc::Layout::new::<T>()).raise(),
            }
        }

        /// As `alloc`, but gives `value` back when memory is exhausted.
        #[inline(always)]
        #[allow(clippy::mut_from_ref)]
        pub fn try_alloc<T>(&self, value: T) -> Result<&mut T, T> {
            crate::api::bump::alloc(self, value)
        }

        /// Allocates room for a `T`, then calls `f` and writes its result there, so a large
        /// value can be built in place rather than on the stack first. If `f` panics, the room
        /// is given back (nothing half-built is left behind).
        #[inline(always)]
        #[allow(clippy::mut_from_ref)]
        pub fn alloc_with<T>(&self, f: impl FnOnce() -> T) -> &mut T {
            crate::api::bump::alloc_with(self, f).unwrap_or_else(|e| e.raise())
        }

        /// As `alloc_with`; `Err` (and `f` not called) when memory is exhausted.
        #[inline(always)]
        #[allow(clippy::mut_from_ref)]
        pub fn try_alloc_with<T>(&self, f: impl FnOnce() -> T) -> Result<&mut T, crate::AllocError> {
            Ok(crate::api::bump::alloc_with(self, f)?)
        }

        /// Copies a slice into the allocator.
        #[allow(clippy::mut_from_ref)]
        pub fn alloc_slice_copy<T: Copy>(&self, src: &[T]) -> &mut [T] {
            crate::api::bump::alloc_slice_copy(self, src).unwrap_or_else(|e| e.raise())
        }

        /// As `alloc_slice_copy`; `Err` when memory is exhausted.
        #[allow(clippy::mut_from_ref)]
        pub fn try_alloc_slice_copy<T: Copy>(&self, src: &[T]) -> Result<&mut [T], crate::AllocError> {
            Ok(crate::api::bump::alloc_slice_copy(self, src)?)
        }

        /// Clones each element of a slice into the allocator. If a `clone` panics, the clones
        /// made so far are dropped and the room is given back.
        #[allow(clippy::mut_from_ref)]
        pub fn alloc_slice_clone<T: Clone>(&self, src: &[T]) -> &mut [T] {
            self.alloc_slice_fill_with(src.len(), |i| src[i].clone())
        }

        /// As `alloc_slice_clone`; `Err` when memory is exhausted.
        #[allow(clippy::mut_from_ref)]
        pub fn try_alloc_slice_clone<T: Clone>(&self, src: &[T]) -> Result<&mut [T], crate::AllocError> {
            self.try_alloc_slice_fill_with(src.len(), |i| src[i].clone())
        }

        /// Copies a string into the allocator.
        #[allow(clippy::mut_from_ref)]
        pub fn alloc_str(&self, src: &str) -> &mut str {
            crate::api::bump::alloc_str(self, src).unwrap_or_else(|e| e.raise())
        }

        /// As `alloc_str`; `Err` when memory is exhausted.
        #[allow(clippy::mut_from_ref)]
        pub fn try_alloc_str(&self, src: &str) -> Result<&mut str, crate::AllocError> {
            Ok(crate::api::bump::alloc_str(self, src)?)
        }

        /// A slice of `len` elements, element `i` being `f(i)`, built in place. If `f` panics,
        /// the elements built so far are dropped and the room is given back. Panics on a `len`
        /// whose bytes overflow `isize` (as `Vec::with_capacity` does).
        #[allow(clippy::mut_from_ref)]
        pub fn alloc_slice_fill_with<T>(&self, len: usize, f: impl FnMut(usize) -> T) -> &mut [T] {
            crate::api::bump::alloc_slice_fill_with(self, len, f).unwrap_or_else(|e| e.raise())
        }

        /// As `alloc_slice_fill_with`; `Err` (and `f` not called) when memory is exhausted or
        /// the size overflows.
        #[allow(clippy::mut_from_ref)]
        pub fn try_alloc_slice_fill_with<T>(
            &self,
            len: usize,
            f: impl FnMut(usize) -> T,
        ) -> Result<&mut [T], crate::AllocError> {
            Ok(crate::api::bump::alloc_slice_fill_with(self, len, f)?)
        }

        /// A slice of `len` copies of `value`.
        #[allow(clippy::mut_from_ref)]
        pub fn alloc_slice_fill_copy<T: Copy>(&self, len: usize, value: T) -> &mut [T] {
            self.alloc_slice_fill_with(len, |_| value)
        }

        /// As `alloc_slice_fill_copy`; `Err` when memory is exhausted or the size overflows.
        #[allow(clippy::mut_from_ref)]
        pub fn try_alloc_slice_fill_copy<T: Copy>(
            &self,
            len: usize,
            value: T,
        ) -> Result<&mut [T], crate::AllocError> {
            self.try_alloc_slice_fill_with(len, |_| value)
        }

        /// A slice of `len` clones of `value` (the panic safety of `alloc_slice_fill_with`).
        #[allow(clippy::mut_from_ref)]
        pub fn alloc_slice_fill_clone<T: Clone>(&self, len: usize, value: &T) -> &mut [T] {
            self.alloc_slice_fill_with(len, |_| value.clone())
        }

        /// As `alloc_slice_fill_clone`; `Err` when memory is exhausted or the size overflows.
        #[allow(clippy::mut_from_ref)]
        pub fn try_alloc_slice_fill_clone<T: Clone>(
            &self,
            len: usize,
            value: &T,
        ) -> Result<&mut [T], crate::AllocError> {
            self.try_alloc_slice_fill_with(len, |_| value.clone())
        }

        /// A slice of `len` `T::default()`s.
        #[allow(clippy::mut_from_ref)]
        pub fn alloc_slice_fill_default<T: Default>(&self, len: usize) -> &mut [T] {
            self.alloc_slice_fill_with(len, |_| T::default())
        }

        /// As `alloc_slice_fill_default`; `Err` when memory is exhausted or the size overflows.
        #[allow(clippy::mut_from_ref)]
        pub fn try_alloc_slice_fill_default<T: Default>(
            &self,
            len: usize,
        ) -> Result<&mut [T], crate::AllocError> {
            self.try_alloc_slice_fill_with(len, |_| T::default())
        }

        /// A slice of the elements of an iterator that knows its length. Panics if it yields
        /// fewer than it said (the elements taken so far are dropped, the room given back);
        /// elements beyond its length are not taken.
        #[allow(clippy::mut_from_ref)]
        pub fn alloc_slice_fill_iter<T, I>(&self, iter: I) -> &mut [T]
        where
            I: IntoIterator<Item = T>,
            I::IntoIter: ExactSizeIterator,
        {
            crate::api::bump::alloc_slice_fill_iter(self, iter).unwrap_or_else(|e| e.raise())
        }

        /// As `alloc_slice_fill_iter`; `Err` when memory is exhausted or the size overflows.
        #[allow(clippy::mut_from_ref)]
        pub fn try_alloc_slice_fill_iter<T, I>(&self, iter: I) -> Result<&mut [T], crate::AllocError>
        where
            I: IntoIterator<Item = T>,
            I::IntoIter: ExactSizeIterator,
        {
            Ok(crate::api::bump::alloc_slice_fill_iter(self, iter)?)
        }
    };
}
pub(crate) use bump_methods;
