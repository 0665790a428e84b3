//! What every allocator's `check()` shares: the error it returns when an invariant of its state
//! does not hold, and the report debug builds make then.
//!
//! Each allocator writes its invariants as equations in the doc comment of its state struct (as
//! mimalloc does beside `mi_page_t`) and verifies them in a `check()` that only reads the state:
//! it walks lists with a step bound, so a corrupted (cyclic) list is reported, never looped on,
//! and it never allocates (a check may run inside an allocation, with the library as Rust's
//! global allocator). Debug builds run it after every state-changing operation of the
//! allocators' slow paths ([`debug_check`]); tests and users call it through each module's
//! `check_raw` and the Rust handles' `check` methods. (One exception keeps debug builds from
//! turning O(1) steps into O(n) ones: after a step that takes or gives back a single chunk, an
//! arena checks everything once per as many steps as it holds chunks, and in between the
//! equations that need no walk.)

use core::fmt;
use std::io::Write;

/// An invariant of an allocator's state that does not hold.
///
/// ```
/// use goo_memory_core::policy::invariant::InvariantError;
/// let arena = goo_memory_core::arena::Arena::new();
/// assert_eq!(arena.check(), Ok(())); // every handle's `check` returns one of these if broken
/// let e = InvariantError::new("arena", "reset_at <= clock");
/// assert_eq!(e.to_string(), "arena: reset_at <= clock");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InvariantError {
    /// The kind of allocator whose state is broken ("arena", "pool", ...).
    pub allocator: &'static str,
    /// The equation that does not hold, as its struct's doc comment writes it.
    pub broken: &'static str,
}

impl InvariantError {
    /// The error for `broken` in a state of `allocator`.
    pub const fn new(allocator: &'static str, broken: &'static str) -> Self {
        InvariantError { allocator, broken }
    }
}

impl fmt::Display for InvariantError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.allocator, self.broken)
    }
}

impl std::error::Error for InvariantError {}

/// `Ok` if `holds`, else the error naming `broken`: a check's one-line test of an equation.
#[inline]
pub fn ensure(holds: bool, allocator: &'static str, broken: &'static str) -> Result<(), InvariantError> {
    if holds {
        Ok(())
    } else {
        Err(InvariantError::new(allocator, broken))
    }
}

/// Debug builds: runs `check` and, if it reports a broken invariant, prints
/// `goo-memory: invariant broken: <allocator>: <what>` to stderr and aborts. Release builds do
/// nothing (and never run `check`).
///
/// It aborts, never panics: the allocators' slow paths are reachable from `extern "C"`
/// functions that have no panic guard, and a panic must not try to unwind into C. It takes the
/// check as a closure, not as its result, so that a release build does not walk the state only
/// to drop the answer (a loop over raw pointers is not one the compiler may remove).
#[inline(always)]
pub fn debug_check(check: impl FnOnce() -> Result<(), InvariantError>) {
    if cfg!(debug_assertions) {
        if let Err(e) = check() {
            broken(e);
        }
    }
}

/// Reports a broken invariant and aborts. Writes from a stack buffer straight to fd 2: the
/// state of the heap is in doubt, and the report must not allocate.
#[cold]
#[inline(never)]
pub fn broken(e: InvariantError) -> ! {
    let mut buf = [0u8; 512];
    let mut cursor = std::io::Cursor::new(&mut buf[..]);
    let _ = writeln!(cursor, "goo-memory: invariant broken: {}: {}", e.allocator, e.broken);
    let len = cursor.position() as usize;
    // SAFETY: writes `len` initialised bytes of `buf` to fd 2 (the cursor wrote at most its
    // length); no memory is handed over.
    unsafe { libc::write(2, buf.as_ptr().cast(), len) };
    std::process::abort()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ensure_and_display_name_the_broken_equation() {
        assert_eq!(ensure(true, "pool", "x"), Ok(()));
        let e = ensure(false, "pool", "|free| <= total").unwrap_err();
        assert_eq!(e, InvariantError::new("pool", "|free| <= total"));
        assert_eq!(e.to_string(), "pool: |free| <= total");
        // Release builds never run the check; debug builds run it (and a passing one returns).
        let mut ran = false;
        debug_check(|| {
            ran = true;
            Ok(())
        });
        assert_eq!(ran, cfg!(debug_assertions));
    }

    /// A broken invariant in a debug check aborts the process (no unwinding) with the report on
    /// stderr. Runs itself again as a child process that breaks one.
    #[cfg(unix)]
    #[test]
    fn a_broken_debug_check_aborts_with_a_report() {
        const VAR: &str = "GOO_TEST_BREAK_INVARIANT";
        if std::env::var_os(VAR).is_some() {
            // The process ends in here; if it did not, the parent sees the test pass and fails.
            debug_check(|| Err(InvariantError::new("arena", "ptr <= end")));
            broken(InvariantError::new("arena", "ptr <= end (release build)"));
        }
        if cfg!(miri) {
            return; // no processes under Miri
        }
        let exe = std::env::current_exe().unwrap();
        let out = std::process::Command::new(exe)
            .args(["--exact", "policy::invariant::tests::a_broken_debug_check_aborts_with_a_report"])
            .args(["--test-threads=1", "--nocapture"])
            .env(VAR, "1")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(out.status.signal(), Some(libc::SIGABRT), "{stderr}");
        assert!(stderr.contains("goo-memory: invariant broken: arena: ptr <= end"), "{stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}
