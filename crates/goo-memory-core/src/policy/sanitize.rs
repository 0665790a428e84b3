//! Tells memory checkers which bytes of the library's own chunks a program may touch, so that
//! a read past an arena block or after a pool free is reported by the tool, as it would be for
//! `malloc` blocks: valgrind's memcheck through its client requests, AddressSanitizer through
//! its poisoning interface (when the program is an ASan build: the library itself is not
//! instrumented, the program's reads are checked).
//!
//! The allocators call these functions where they hand bytes out ([`hand_out`], [`resized`])
//! and take them back ([`retire`], [`retire_linked`]), and the chunk list calls [`hand_out`] on
//! a whole chunk before giving it back to its parent (whose next user must find it accessible).
//! Each function is `#[inline(always)]` and costs one load of a global and a predictable branch
//! when no tool is there; [`detect`] (run when a library allocator is made) sets the global. The
//! call-free fast paths make no such call and test nothing: when a tool is found, the front
//! door's gate closes for good (`callbacks::tool_watching`: the bound it compares sizes with
//! becomes 0), so every request takes the slow path, which tells the tool.

use core::ffi::c_void;
use core::sync::atomic::{AtomicPtr, AtomicU8, Ordering::Relaxed};
use std::sync::Once;

/// No tool (or not detected yet).
const NONE: u8 = 0;
/// Running under valgrind.
const VALGRIND: u8 = 1;
/// An AddressSanitizer build.
const ASAN: u8 = 2;

/// Which tool is watching.
static TOOL: AtomicU8 = AtomicU8::new(NONE);

/// `__asan_poison_memory_region` and `__asan_unpoison_memory_region`, when ASan is there.
static ASAN_POISON: AtomicPtr<c_void> = AtomicPtr::new(core::ptr::null_mut());
static ASAN_UNPOISON: AtomicPtr<c_void> = AtomicPtr::new(core::ptr::null_mut());

/// Looks for a tool, once. Cheap after the first call.
pub fn detect() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // GOO_TOOL_ANNOTATIONS=0 keeps the fast paths under a profiler that is a valgrind tool
        // too (callgrind, cachegrind), where memcheck's annotations mean nothing.
        // SAFETY: `getenv` with a NUL-terminated name; the value is only compared.
        let off = unsafe { libc::getenv(c"GOO_TOOL_ANNOTATIONS".as_ptr()) };
        // SAFETY: a non-null `getenv` result is a NUL-terminated string.
        if !off.is_null() && unsafe { core::ffi::CStr::from_ptr(off) }.to_bytes() == b"0" {
            return;
        }
        if running_on_valgrind() {
            TOOL.store(VALGRIND, Relaxed);
        } else if find_asan() {
            TOOL.store(ASAN, Relaxed);
        } else {
            return;
        }
        crate::policy::callbacks::tool_watching();
    });
}

/// Whether a tool is watching (after [`detect`]).
#[inline(always)]
pub fn active() -> bool {
    TOOL.load(Relaxed) != NONE
}

/// [`hand_out`], returning `p`.
#[inline(always)]
pub fn handed_out(p: *mut u8, len: usize) -> *mut u8 {
    hand_out(p, len);
    p
}

/// Bytes handed out: accessible, contents undefined.
#[inline(always)]
pub fn hand_out(p: *const u8, len: usize) {
    if TOOL.load(Relaxed) != NONE {
        tell(Mark::Undefined, p, len);
    }
}

/// The first `len` bytes of a slot of `slot` bytes handed out (accessible, contents undefined),
/// the rest of the slot no access: a pool object, whose slot's tail past the object may still
/// be accessible from its time as a free object (its link word, under valgrind).
#[inline(always)]
pub fn hand_out_in_slot(p: *const u8, len: usize, slot: usize) {
    if TOOL.load(Relaxed) != NONE {
        tell(Mark::Undefined, p, len);
        if slot > len {
            tell(Mark::NoAccess, p.wrapping_add(len), slot - len);
        }
    }
}

/// Bytes taken back (freed, reset, past the bump pointer): no access.
#[inline(always)]
pub fn retire(p: *const u8, len: usize) {
    if TOOL.load(Relaxed) != NONE {
        tell(Mark::NoAccess, p, len);
    }
}

/// A free object whose first word is the allocator's own link (a pool's free list): no access
/// for the program. Valgrind checks the library's code too, so the link word is accessible
/// there (call this before writing the link); ASan checks only the program's, so the whole
/// object is poisoned.
#[inline(always)]
pub fn retire_linked(p: *const u8, len: usize) {
    if TOOL.load(Relaxed) != NONE {
        retire_linked_slow(p, len);
    }
}

/// A block resized in place from `old` to `new` bytes: the bytes it gained are handed out,
/// those it lost taken back.
#[inline(always)]
pub fn resized(p: *const u8, old: usize, new: usize) {
    if TOOL.load(Relaxed) != NONE {
        if new > old {
            tell(Mark::Undefined, p.wrapping_add(old), new - old);
        } else {
            tell(Mark::NoAccess, p.wrapping_add(new), old - new);
        }
    }
}

/// Reads `*p` where the library reads memory it knows is readable but may have told a tool
/// the program must not touch (a scope's check of the tag in front of a block of an ended
/// scope, whose parent still holds the memory): valgrind, which checks the library's own code,
/// is told not to report this one read.
///
/// # Safety
/// `p` is valid for reads of a `T` and aligned.
#[inline(always)]
pub unsafe fn read_quietly<T: Copy>(p: *const T) -> T {
    if TOOL.load(Relaxed) == VALGRIND {
        // SAFETY: forwarded contract.
        return unsafe { read_unreported(p) };
    }
    // SAFETY: forwarded contract.
    unsafe { p.read() }
}

/// [`read_quietly`] under valgrind: error reporting off for this thread around the read.
///
/// # Safety
/// As for [`read_quietly`].
#[cold]
#[inline(never)]
unsafe fn read_unreported<T: Copy>(p: *const T) -> T {
    // VALGRIND_DISABLE_ERROR_REPORTING / _ENABLE_: VG_USERREQ__CHANGE_ERR_DISABLEMENT, +1 / -1.
    const CHANGE_ERR_DISABLEMENT: usize = 0x1801;
    client_request(0, [CHANGE_ERR_DISABLEMENT, 1, 0, 0, 0, 0]);
    // SAFETY: forwarded contract.
    let value = unsafe { p.read_volatile() };
    client_request(0, [CHANGE_ERR_DISABLEMENT, usize::MAX, 0, 0, 0, 0]);
    value
}

#[derive(Clone, Copy)]
enum Mark {
    NoAccess,
    Undefined,
    Defined,
}

/// Bytes the allocator is about to read as its own (the first word of a block being freed,
/// which another allocator may have told the tool was undefined): accessible and defined.
#[inline(always)]
pub fn take_back(p: *const u8, len: usize) {
    if TOOL.load(Relaxed) != NONE {
        tell(Mark::Defined, p, len);
    }
}

#[cold]
#[inline(never)]
fn retire_linked_slow(p: *const u8, len: usize) {
    let link = size_of::<*mut u8>();
    if TOOL.load(Relaxed) == VALGRIND {
        // The link word is the library's to write next (an object smaller than it had the
        // word's tail taken back while live: `hand_out_in_slot`).
        tell(Mark::Undefined, p, link);
        if len > link {
            tell(Mark::NoAccess, p.wrapping_add(link), len - link);
        }
    } else {
        tell(Mark::NoAccess, p, len);
    }
}

#[cold]
#[inline(never)]
fn tell(mark: Mark, p: *const u8, len: usize) {
    if p.is_null() || len == 0 {
        return;
    }
    match TOOL.load(Relaxed) {
        VALGRIND => {
            // memcheck's requests: VG_USERREQ_TOOL_BASE('M','C') + 0 (NOACCESS), + 1
            // (UNDEFINED), + 2 (DEFINED).
            const MEMCHECK: usize = (b'M' as usize) << 24 | (b'C' as usize) << 16;
            let request = match mark {
                Mark::NoAccess => MEMCHECK,
                Mark::Undefined => MEMCHECK + 1,
                Mark::Defined => MEMCHECK + 2,
            };
            client_request(0, [request, p.addr(), len, 0, 0, 0]);
        }
        ASAN => {
            let f = match mark {
                Mark::NoAccess => ASAN_POISON.load(Relaxed),
                Mark::Undefined | Mark::Defined => ASAN_UNPOISON.load(Relaxed),
            };
            if !f.is_null() {
                // SAFETY: the only non-null values stored are the addresses of the ASan
                // runtime's `void f(void const volatile* addr, size_t size)` functions.
                let f = unsafe {
                    core::mem::transmute::<*mut c_void, unsafe extern "C" fn(*const c_void, usize)>(f)
                };
                // SAFETY: ASan's interface takes any address range; it only changes shadow
                // memory (the allocator owns the range and says what the program may touch).
                unsafe { f(p.cast(), len) };
            }
        }
        _ => {}
    }
}

/// Valgrind's client request: the magic instruction sequence that valgrind recognises and a
/// real CPU runs as no-ops (four rotations of `rdi` by 128 bits in all, and `xchg rbx, rbx`),
/// with `rax` pointing to the request and its arguments; the answer comes back in `rdx`,
/// `default` when not running under valgrind. As `VALGRIND_DO_CLIENT_REQUEST_EXPR` in
/// `valgrind.h` for amd64-linux.
#[cfg(all(target_arch = "x86_64", target_os = "linux", not(miri)))]
fn client_request(default: usize, args: [usize; 6]) -> usize {
    let result: usize;
    // SAFETY: the sequence leaves every register as it found it but `rdx` (declared); it reads
    // `args` (valgrind does, through `rax`), which outlives the call; valgrind may write the
    // memory the request names, as the allocator asked.
    unsafe {
        core::arch::asm!(
            "rol rdi, 3",
            "rol rdi, 13",
            "rol rdi, 61",
            "rol rdi, 51",
            "xchg rbx, rbx",
            inout("rdx") default => result,
            in("rax") args.as_ptr(),
            options(nostack),
        );
    }
    result
}

#[cfg(not(all(target_arch = "x86_64", target_os = "linux", not(miri))))]
fn client_request(default: usize, _args: [usize; 6]) -> usize {
    default
}

fn running_on_valgrind() -> bool {
    const RUNNING_ON_VALGRIND: usize = 0x1001;
    client_request(0, [RUNNING_ON_VALGRIND, 0, 0, 0, 0, 0]) != 0
}

/// Finds ASan's poisoning functions in the process (an ASan build exports them).
#[cfg(all(unix, not(miri)))]
fn find_asan() -> bool {
    // SAFETY: `dlsym` with the default handle and NUL-terminated names only reads the loader's
    // tables.
    let (poison, unpoison) = unsafe {
        (
            libc::dlsym(libc::RTLD_DEFAULT, c"__asan_poison_memory_region".as_ptr()),
            libc::dlsym(libc::RTLD_DEFAULT, c"__asan_unpoison_memory_region".as_ptr()),
        )
    };
    if poison.is_null() || unpoison.is_null() {
        return false;
    }
    ASAN_POISON.store(poison, Relaxed);
    ASAN_UNPOISON.store(unpoison, Relaxed);
    true
}

#[cfg(not(all(unix, not(miri))))]
fn find_asan() -> bool {
    false
}
