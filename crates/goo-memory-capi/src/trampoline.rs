//! Functions that know their return address.
//!
//! A debug allocator names the site of every request: for a C caller, the return address out of
//! the library. Rust has no stable way to read a function's return address, and walking the
//! stack with the unwinder costs about 100 ns a frame; so the entry points that resize or free
//! without a fast path, and the slow paths of those that have one, are trampolines: a naked
//! function that copies its return address (on the stack on x86-64, in the link register on
//! AArch64) into the next argument register and jumps to its body, an ordinary `extern "C"`
//! function with one more parameter. The stack is untouched, so the body returns straight to
//! the trampoline's caller. The fast paths have none: a trampoline there would cost every
//! allocation a jump. On other targets the body gets 0, and a debug allocator walks the stack.

/// The register that holds the argument after `$arg...` in the C calling convention (x86-64,
/// AArch64): where a trampoline puts its return address.
macro_rules! next_argument_register {
    () => {
        $crate::trampoline::on_this_target!("rdi", "x0")
    };
    ($a:ident) => {
        $crate::trampoline::on_this_target!("rsi", "x1")
    };
    ($a:ident, $b:ident) => {
        $crate::trampoline::on_this_target!("rdx", "x2")
    };
    ($a:ident, $b:ident, $c:ident) => {
        $crate::trampoline::on_this_target!("rcx", "x3")
    };
    ($a:ident, $b:ident, $c:ident, $d:ident) => {
        $crate::trampoline::on_this_target!("r8", "x4")
    };
    ($a:ident, $b:ident, $c:ident, $d:ident, $e:ident) => {
        $crate::trampoline::on_this_target!("r9", "x5")
    };
}

/// The x86-64 or the AArch64 text of an instruction or register.
#[cfg(target_arch = "x86_64")]
macro_rules! on_this_target {
    ($x86_64:literal, $aarch64:literal) => {
        $x86_64
    };
}

#[cfg(target_arch = "aarch64")]
macro_rules! on_this_target {
    ($x86_64:literal, $aarch64:literal) => {
        $aarch64
    };
}

/// Defines an `extern "C"` function whose body also gets its return address:
///
/// ```text
/// return_address_trampoline! {
///     /// docs
///     #[unsafe(no_mangle)]
///     pub unsafe extern "C" fn goo_x(a: *mut GooAllocator, size: usize) -> *mut c_void
///         => goo_x_body(ret) { body using a, size and ret }
/// }
/// ```
///
/// Every argument must travel in an integer register (pointers and integers, at most five).
macro_rules! return_address_trampoline {
    ($(#[$attr:meta])* $vis:vis unsafe extern "C" fn $($rest:tt)*) => {
        $crate::trampoline::return_address_trampoline!(@define [unsafe] [$vis] $(#[$attr])* $($rest)*);
    };
    ($(#[$attr:meta])* $vis:vis extern "C" fn $($rest:tt)*) => {
        $crate::trampoline::return_address_trampoline!(@define [] [$vis] $(#[$attr])* $($rest)*);
    };
    (@define [$($unsafe:tt)?] [$vis:vis] $(#[$attr:meta])*
        $name:ident($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)? => $body_fn:ident($ret_addr:ident) $body:block
    ) => {
        $(#[$attr])*
        #[cfg(all(any(target_arch = "x86_64", target_arch = "aarch64"), not(miri)))]
        #[unsafe(naked)]
        $vis $($unsafe)? extern "C" fn $name($($arg: $ty),*) $(-> $ret)? {
            core::arch::naked_asm!(
                concat!(
                    "mov ",
                    $crate::trampoline::next_argument_register!($($arg),*),
                    $crate::trampoline::on_this_target!(", qword ptr [rsp]", ", x30"),
                ),
                $crate::trampoline::on_this_target!("jmp {body}", "b {body}"),
                body = sym $body_fn,
            )
        }

        $(#[$attr])*
        #[cfg(any(not(any(target_arch = "x86_64", target_arch = "aarch64")), miri))]
        $vis $($unsafe)? extern "C" fn $name($($arg: $ty),*) $(-> $ret)? {
            // SAFETY: the body's contract is the function's.
            #[allow(unused_unsafe)]
            unsafe { $body_fn($($arg,)* 0) }
        }

        /// The body of the function of the same name, with the return address it was called
        /// with (0 = not known).
        ///
        /// # Safety
        /// As for that function.
        unsafe extern "C" fn $body_fn($($arg: $ty,)* $ret_addr: usize) $(-> $ret)? $body
    };
}

pub(crate) use next_argument_register;
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
pub(crate) use on_this_target;
pub(crate) use return_address_trampoline;
