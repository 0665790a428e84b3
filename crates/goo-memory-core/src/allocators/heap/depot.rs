//! The depot: per class, the free blocks no thread's cache holds, for any thread to take. A
//! thread whose cache of a class is full moves half of it here; one whose cache is empty takes
//! a batch from here before it carves new blocks. So a block freed by another thread than the
//! one that allocated it serves whichever thread asks next, and memory freed in bulk (a
//! garbage collector's sweep) is not held by one thread.
//!
//! The blocks' addresses are kept in arrays of the C library's heap, outside the blocks: a
//! write through a freed pointer cannot redirect the heap. Per class, under its lock:
//!
//! ```text
//! len <= cap;  blocks[..len] are distinct free blocks of the class, in no cache
//! ```

use core::ptr;
use std::sync::{Mutex, MutexGuard};

use super::classes::CLASSES;

/// One class's free blocks.
struct Stack {
    blocks: *mut *mut u8,
    len: usize,
    cap: usize,
}

// SAFETY: the array is owned by the stack and only touched under its mutex.
unsafe impl Send for Stack {}

static DEPOT: [Mutex<Stack>; CLASSES] =
    [const { Mutex::new(Stack { blocks: ptr::null_mut(), len: 0, cap: 0 }) }; CLASSES];

fn lock(class: usize) -> MutexGuard<'static, Stack> {
    DEPOT[class].lock().unwrap_or_else(|e| e.into_inner())
}

/// Files `blocks` (free blocks of `class`) in the depot. False, having filed none, when the
/// C library cannot grow the array (the caller keeps them).
pub(crate) fn put(class: usize, blocks: &[*mut u8]) -> bool {
    let mut stack = lock(class);
    let need = stack.len + blocks.len();
    if need > stack.cap {
        let cap = need.max(2 * stack.cap).max(64);
        let Some(bytes) = cap.checked_mul(size_of::<*mut u8>()) else { return false };
        // SAFETY: the array is null or a live C library block of this stack.
        let grown = unsafe { libc::realloc(stack.blocks.cast(), bytes) };
        if grown.is_null() {
            return false;
        }
        stack.blocks = grown.cast();
        stack.cap = cap;
    }
    // SAFETY: the array holds `cap >= len + blocks.len()` pointers; `blocks` is elsewhere.
    unsafe { ptr::copy_nonoverlapping(blocks.as_ptr(), stack.blocks.add(stack.len), blocks.len()) };
    stack.len = need;
    true
}

/// Moves up to `out.len()` blocks of `class` from the depot into `out`; how many.
pub(crate) fn take(class: usize, out: &mut [*mut u8]) -> usize {
    let mut stack = lock(class);
    let n = out.len().min(stack.len);
    stack.len -= n;
    // SAFETY: `blocks[len..len + n]` are filed blocks; `out` has room for `n`.
    unsafe { ptr::copy_nonoverlapping(stack.blocks.add(stack.len), out.as_mut_ptr(), n) };
    n
}

/// Runs `f` on every block of `class` the depot holds, under its lock (for `check`).
pub(crate) fn for_each(class: usize, mut f: impl FnMut(*mut u8)) {
    let stack = lock(class);
    for i in 0..stack.len {
        // SAFETY: `i < len <= cap`.
        f(unsafe { stack.blocks.add(i).read() });
    }
}

/// Blocks the depot holds, all classes.
pub(crate) fn len() -> usize {
    (0..CLASSES).map(|c| lock(c).len).sum()
}
