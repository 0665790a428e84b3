//! The one place where Rust meets C: every `extern "C"` function runs its body through [`guard`],
//! which catches a panic and turns it into the function's failure value, so no unwinding ever
//! crosses into C.

use std::panic::{catch_unwind, AssertUnwindSafe};

/// Runs `body`; if it panics, reports it on stderr and returns `on_panic`.
#[inline(always)]
pub(crate) fn guard<T>(on_panic: T, body: impl FnOnce() -> T) -> T {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(v) => v,
        Err(_) => {
            report_panic();
            on_panic
        }
    }
}

#[cold]
fn report_panic() {
    // The panic hook already printed the message; say what the C caller gets instead.
    eprintln!("goo-memory: internal panic caught at the C boundary; returning a failure value");
}
