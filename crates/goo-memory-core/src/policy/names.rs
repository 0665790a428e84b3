//! Names of allocators, for reports: library allocators drop their entry when destroyed;
//! allocators written in C join the registry by being named.

use std::sync::Mutex;

use crate::raw::GooAllocator;

/// Names by allocator address. Library allocators drop their entry when destroyed; allocators
/// written in C join the registry by being named and must be unnamed (null) before they die.
static NAMES: Mutex<Vec<(usize, String)>> = Mutex::new(Vec::new());

fn names() -> std::sync::MutexGuard<'static, Vec<(usize, String)>> {
    NAMES.lock().unwrap_or_else(|e| e.into_inner())
}

/// Names `allocator` (None removes the name; a C allocator then leaves the registry).
pub fn set_name(allocator: *mut GooAllocator, name: Option<&str>) {
    let mut n = names();
    n.retain(|(a, _)| *a != allocator as usize);
    if let Some(name) = name {
        n.push((allocator as usize, name.to_string()));
    }
}

/// The name of `allocator`, if it has one.
pub fn name_of(allocator: *const GooAllocator) -> Option<String> {
    names().iter().find(|(a, _)| *a == allocator as usize).map(|(_, n)| n.clone())
}

/// Forgets the name of a destroyed allocator.
pub(crate) fn forget(allocator: *mut GooAllocator) {
    let mut n = names();
    if !n.is_empty() {
        n.retain(|(a, _)| *a != allocator as usize);
    }
}

/// The addresses of every named allocator.
pub(crate) fn named() -> Vec<*mut GooAllocator> {
    names().iter().map(|(a, _)| *a as *mut GooAllocator).collect()
}
