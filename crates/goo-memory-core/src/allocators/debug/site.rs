//! Where a block was allocated or misused: a [`Site`], found without any cost to the other
//! allocators.
//!
//! A request says where it comes from in one of four ways, best first:
//! - a site set for the request by the caller ([`with_site`]): `__FILE__`/`__LINE__` from C
//!   (`goo_memory_alloc_at`, `GOO_ALLOC_HERE`), a `#[track_caller]` location from Rust;
//! - the return address into the program of the C entry point that allocates or frees: those
//!   entry points take it as they are entered (a trampoline, see the C crate's `boundary`) and
//!   their slow path passes it here ([`with_caller`]): no stack walk;
//! - for the other entry points (one that resizes with six arguments, the destruction of an
//!   allocator whose parent is a debug allocator), the return address out of the library's
//!   outermost C entry point on the stack, found by walking the stack with the unwinder
//!   (`_Unwind_Backtrace`) until the first frame after a run of entry-point frames
//!   ([`set_entry_points`] names them: the C ABI crate registers every function it exports).
//!   The walk runs only for requests that reach a debug allocator, so no other allocator's path
//!   changes; it costs about 100 ns a frame;
//! - nothing: [`Site::Unknown`] (a Rust caller not using the debug allocator's own methods).
//!
//! With traces on, the same walk also keeps the next [`TRACE_DEPTH`] return addresses from the
//! site outwards. Addresses are symbolized only when a report is written ([`describe`]).

use core::ffi::{c_char, CStr};
use core::panic::Location;
use core::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::cell::Cell;
use std::sync::OnceLock;

/// Return addresses kept per block with traces on, the site's own included.
pub const TRACE_DEPTH: usize = 8;

/// Frames the walk looks at, at most, to find the site.
#[cfg(not(miri))]
const MAX_WALK: usize = 48;

/// A `__FILE__` string from C: NUL-terminated with static storage duration (the contract of
/// `goo_memory_alloc_at`), never written. Made by [`Site::c_file`].
///
/// ```
/// use goo_memory_core::debug::{CFile, Site};
/// // SAFETY: a string literal: NUL-terminated, static, never written.
/// let site = unsafe { Site::c_file(c"parser.c".as_ptr(), 42) };
/// assert_eq!(site.describe(), "parser.c:42");
/// let Site::File(file, line) = site else { panic!("a C file and line") };
/// let same_file: CFile = file; // `Copy`: the pointer, not the string
/// assert_eq!(Site::File(same_file, line + 1).describe(), "parser.c:43");
/// ```
///
/// Two `CFile`s are equal when their names are: one `__FILE__` may be two strings (a header's
/// inline function used from two files), and a leak report groups by the site's text.
#[derive(Clone, Copy, Debug)]
pub struct CFile(*const c_char);

impl CFile {
    /// The name's bytes (none for a null pointer).
    fn bytes(&self) -> Option<&'static [u8]> {
        // SAFETY: non-null, NUL-terminated and static (see the type).
        (!self.0.is_null()).then(|| unsafe { CStr::from_ptr(self.0) }.to_bytes())
    }
}

impl PartialEq for CFile {
    fn eq(&self, other: &Self) -> bool {
        self.0 == other.0 || self.bytes() == other.bytes()
    }
}

impl Eq for CFile {}

impl core::hash::Hash for CFile {
    fn hash<H: core::hash::Hasher>(&self, state: &mut H) {
        self.bytes().hash(state);
    }
}

// SAFETY: the pointer is to an immutable string that lives as long as the program (the
// contract of every function that takes one), so any thread may read it.
unsafe impl Send for CFile {}
// SAFETY: as above.
unsafe impl Sync for CFile {}

impl CFile {
    /// The file name, or "?" for a null pointer.
    fn name(&self) -> String {
        if self.0.is_null() {
            return "?".to_string();
        }
        // SAFETY: non-null, NUL-terminated and static (see the type).
        unsafe { CStr::from_ptr(self.0) }.to_string_lossy().into_owned()
    }
}

/// Where a request came from: what a debug allocator's reports name for a block.
///
/// ```
/// use core::alloc::Layout;
/// use goo_memory_core::debug::{with_site, DebugAllocator, DebugFlags, Site};
/// use goo_memory_core::{AllocOptions, Allocator};
/// let checked = DebugAllocator::new(Allocator::system(), DebugFlags::DEFAULT);
/// let layout = Layout::new::<u64>();
/// // SAFETY: a string literal: NUL-terminated, static, never written.
/// let site = unsafe { Site::c_file(c"parser.c".as_ptr(), 42) };
/// let block = with_site(site, || checked.handle().allocate(layout, AllocOptions::DEFAULT)).unwrap();
/// assert_eq!(checked.leaks().sites[0].site, site);
/// assert_eq!(site.describe(), "parser.c:42");
/// assert_eq!((site.address(), Site::Code(0x1234).address()), (None, Some(0x1234)));
/// // SAFETY: a live block of `checked`, allocated with this layout.
/// unsafe { checked.deallocate(block, layout) };
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Site {
    /// Not known: the request named no site and no C entry point was found on the stack.
    Unknown,
    /// A return address into the code that called the library's C entry point.
    Code(usize),
    /// `__FILE__`, `__LINE__` from C.
    File(CFile, u32),
    /// A Rust caller's location (`#[track_caller]`).
    Rust(&'static Location<'static>),
}

impl Site {
    /// A C caller's `__FILE__`/`__LINE__`.
    ///
    /// # Safety
    /// `file` is null or a NUL-terminated string that is never written and lives as long as the
    /// program (a string literal such as `__FILE__`).
    pub unsafe fn c_file(file: *const c_char, line: u32) -> Site {
        Site::File(CFile(file), line)
    }

    /// The caller's location, through `#[track_caller]` functions.
    #[track_caller]
    pub fn caller() -> Site {
        Site::Rust(Location::caller())
    }

    /// The site as text reports print it: `file:line`, or the symbolized return address. A
    /// file name is escaped as allocator names are (it is the program's text, and a report keeps
    /// one site to a line).
    pub fn describe(&self) -> String {
        // A name from the program (a C file name, or one its debug information gives a code
        // address) is escaped as a stats report escapes names.
        crate::policy::names::escaped(&self.unescaped())
    }

    /// The site as [`Site::describe`] names it, with a file name as it is: for a JSON report,
    /// which escapes its strings itself.
    pub fn unescaped(&self) -> String {
        match self {
            Site::Unknown => {
                "an unknown site (name it with GOO_ALLOC_HERE, or see GOO_DEBUG_TRACES)".to_string()
            }
            Site::Code(ip) => describe(*ip),
            Site::File(file, line) => format!("{}:{line}", file.name()),
            Site::Rust(loc) => format!("{}:{}", loc.file(), loc.line()),
        }
    }

    /// The return address, for a site that is one.
    pub fn address(&self) -> Option<usize> {
        match self {
            Site::Code(ip) => Some(*ip),
            _ => None,
        }
    }
}

/// A request's site and, with traces on, the return addresses from it outwards.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Captured {
    pub(crate) site: Site,
    pub(crate) trace: Option<Box<[usize]>>,
}

thread_local! {
    /// The site [`with_site`] set for this thread's request under way, and the stack address
    /// below which that request's own frames lie (0: none set).
    static PENDING: Cell<(Site, usize)> = const { Cell::new((Site::Unknown, 0)) };
}

/// Runs `f` with `site` as the site of every request it makes to a debug allocator on this
/// thread (an allocator over a debug allocator included), then restores what was set before.
/// Requests to other allocators ignore it.
#[inline(never)]
pub fn with_site<R>(site: Site, f: impl FnOnce() -> R) -> R {
    // This frame's address: the request's own frames are below it, its caller's above.
    let anchor = core::hint::black_box(0u8);
    run_with_site(site, (&raw const anchor).addr(), f)
}

/// [`with_site`] with [`Site::Code`]`(ret)`, made here: a site made by the caller is in its
/// memory, and a request reads it back with one load wider than the stores that wrote it (a
/// stall of about a dozen cycles on every request that names its return address).
#[inline(never)]
fn with_code_site<R>(ret: usize, f: impl FnOnce() -> R) -> R {
    let anchor = core::hint::black_box(0u8);
    run_with_site(Site::Code(ret), (&raw const anchor).addr(), f)
}

/// The body of [`with_site`] and [`with_code_site`], with `here` the address of the calling
/// frame (the anchor).
#[inline(always)]
fn run_with_site<R>(site: Site, here: usize, f: impl FnOnce() -> R) -> R {
    let previous = PENDING.try_with(|p| p.replace((site, here))).unwrap_or((Site::Unknown, 0));
    restoring(previous, f)
}

/// Runs `f`, then sets the thread's pending site back to `previous`.
#[inline(always)]
fn restoring<R>(previous: (Site, usize), f: impl FnOnce() -> R) -> R {
    struct Restore((Site, usize));
    impl Drop for Restore {
        fn drop(&mut self) {
            let _ = PENDING.try_with(|p| p.set(self.0));
        }
    }
    let _restore = Restore(previous);
    f()
}

/// Debug allocators alive: while there are none, [`with_caller`] and [`with_return_address`]
/// record nothing.
static LIVE_DEBUG_ALLOCATORS: AtomicUsize = AtomicUsize::new(0);

/// Counts a debug allocator made (`true`) or dropped (`false`).
pub(crate) fn count_debug_allocator(made: bool) {
    if made {
        LIVE_DEBUG_ALLOCATORS.fetch_add(1, Relaxed);
    } else {
        LIVE_DEBUG_ALLOCATORS.fetch_sub(1, Relaxed);
    }
}

/// Whether a debug allocator is alive: only then does a request's site matter.
#[inline(always)]
pub fn debug_allocators_alive() -> bool {
    LIVE_DEBUG_ALLOCATORS.load(Relaxed) != 0
}

/// Runs `f` with the return address `caller` (into the program that called one of the
/// library's entry points; 0 = not known) as the site of its requests to a debug allocator, as
/// [`with_site`] with [`Site::Code`] does. The C entry points that allocate or free take their
/// return address as they are entered and pass it here from their slow path, so a debug
/// allocator finds a request's site without walking the stack. While no debug allocator is
/// alive it only runs `f`.
#[inline(always)]
pub fn with_caller<R>(caller: usize, f: impl FnOnce() -> R) -> R {
    if caller == 0 || !debug_allocators_alive() {
        return f();
    }
    with_code_site(caller, f)
}

/// Runs `f` with the return address `ret` of one of the C crate's slow paths as the site of its
/// requests to a debug allocator, when it returns into the program and no site is set yet: an
/// entry point that reached its slow path by a tail call, as optimised builds do, left the
/// program's return address where the slow path's own is. Whether it did is found once per
/// return address by a stack walk, then cached; where it did not (an entry point that called
/// its slow path), a debug allocator walks the stack for each request. While no debug allocator
/// is alive it only runs `f`.
#[inline(always)]
pub fn with_return_address<R>(ret: usize, f: impl FnOnce() -> R) -> R {
    if ret == 0 || !debug_allocators_alive() {
        return f();
    }
    with_return_site(ret, f)
}

/// [`with_return_address`] once a debug allocator is alive: the pending site read once, kept
/// if one is set, else `ret` if it returns into the program.
#[inline(never)]
fn with_return_site<R>(ret: usize, f: impl FnOnce() -> R) -> R {
    let anchor = core::hint::black_box(0u8);
    let Ok(previous) = PENDING.try_with(Cell::get) else { return f() };
    if !matches!(previous.0, Site::Unknown) || !returns_into_program(ret) {
        return f();
    }
    let _ = PENDING.try_with(|p| p.set((Site::Code(ret), (&raw const anchor).addr())));
    restoring(previous, f)
}

/// Return addresses looked up: `ret << 1 | in_program`, 0 for an empty slot (user-space code
/// addresses leave the top bit free).
#[cfg(target_pointer_width = "64")]
static SEEN: [AtomicUsize; 4096] = [const { AtomicUsize::new(0) }; 4096];

/// Where [`SEEN`] looks for `ret` first.
#[cfg(target_pointer_width = "64")]
#[inline(always)]
fn seen_home(ret: usize) -> usize {
    ret.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> (usize::BITS - SEEN.len().trailing_zeros())
}

/// Whether the return address `ret` of the calling slow path lies in the program: the site a
/// stack walk finds from here (see [`set_entry_points`]). A return address seen before is
/// nearly always in its first slot, read here; the rest is [`look_up_return`].
#[inline(always)]
fn returns_into_program(ret: usize) -> bool {
    #[cfg(target_pointer_width = "64")]
    {
        let seen = SEEN[seen_home(ret)].load(Relaxed);
        if seen >> 1 == ret {
            return seen & 1 == 1;
        }
    }
    look_up_return(ret)
}

/// [`returns_into_program`] past the first slot: the other slots, else a stack walk, whose
/// answer is kept in the first empty slot.
#[cold]
#[inline(never)]
fn look_up_return(ret: usize) -> bool {
    let look_up = || {
        let entries: &[usize] = ENTRY_POINTS.get().map_or(&[], |e| e);
        walk(entries, 0, false, 0).site == Some(ret)
    };
    #[cfg(target_pointer_width = "64")]
    {
        const PROBES: usize = 8;
        let home = seen_home(ret);
        for i in 0..PROBES {
            let slot = &SEEN[(home + i) % SEEN.len()];
            match slot.load(Relaxed) {
                0 => {
                    let in_program = look_up();
                    let _ = slot.compare_exchange(0, ret << 1 | usize::from(in_program), Relaxed, Relaxed);
                    return in_program;
                }
                seen if seen >> 1 == ret => return seen & 1 == 1,
                _ => {}
            }
        }
    }
    look_up()
}

/// The entry points' start addresses, sorted.
static ENTRY_POINTS: OnceLock<Box<[usize]>> = OnceLock::new();

/// Names the functions through which a program calls the library (the C ABI's exported
/// functions): a request's site is the return address out of the outermost of them. The first
/// call sets them; later calls change nothing.
pub fn set_entry_points(starts: &[usize]) {
    let _ = ENTRY_POINTS.get_or_init(|| {
        let mut v = starts.to_vec();
        v.sort_unstable();
        v.dedup();
        v.into_boxed_slice()
    });
}

/// The site of the request under way (and its trace when `trace` is true).
#[inline(always)]
pub(crate) fn capture(trace: bool) -> Captured {
    let (pending, anchor) = PENDING.try_with(|p| p.get()).unwrap_or((Site::Unknown, 0));
    let entries: &[usize] = ENTRY_POINTS.get().map_or(&[], |e| e);
    let walk_for_site = matches!(pending, Site::Unknown) && !entries.is_empty();
    if !trace && !walk_for_site {
        return Captured { site: pending, trace: None };
    }
    // A site given as a return address (a C entry point's caller) starts the trace at its frame.
    let walked = walk(entries, anchor, trace, pending.address().unwrap_or(0));
    let site = if matches!(pending, Site::Unknown) {
        walked.site.map_or(Site::Unknown, Site::Code)
    } else {
        pending
    };
    Captured { site, trace: trace.then(|| walked.trace[..walked.len].into()) }
}

/// What a walk found.
struct Walked {
    site: Option<usize>,
    trace: [usize; TRACE_DEPTH],
    len: usize,
}

#[cfg(miri)]
fn walk(_: &[usize], _: usize, _: bool, _: usize) -> Walked {
    // Miri runs no foreign unwinder.
    Walked { site: None, trace: [0; TRACE_DEPTH], len: 0 }
}

/// Walks this thread's stack from here outwards: the site is the frame whose return address is
/// `hint` when it is not 0, else the first frame after the library's (see [`set_entry_points`]);
/// with `trace`, the walk keeps return addresses from the site on.
#[cfg(not(miri))]
fn walk(entries: &[usize], anchor: usize, trace: bool, hint: usize) -> Walked {
    use core::ffi::c_void;

    #[repr(C)]
    struct UnwindContext {
        _opaque: [u8; 0],
    }
    type TraceFn = extern "C" fn(*mut UnwindContext, *mut c_void) -> i32;
    // The unwinder's interface (libgcc_s / libgcc_eh, which the standard library links).
    extern "C" {
        fn _Unwind_Backtrace(trace: TraceFn, arg: *mut c_void) -> i32;
        fn _Unwind_GetIP(ctx: *mut UnwindContext) -> usize;
        fn _Unwind_GetRegionStart(ctx: *mut UnwindContext) -> usize;
        fn _Unwind_GetCFA(ctx: *mut UnwindContext) -> usize;
    }
    const CONTINUE: i32 = 0; // _URC_NO_REASON
    const STOP: i32 = 5; // _URC_END_OF_STACK

    struct State<'a> {
        entries: &'a [usize],
        anchor: usize,
        trace: bool,
        hint: usize,
        frames: usize,
        anchor_passed: bool,
        in_entry: bool,
        found: Walked,
    }

    extern "C" fn frame(ctx: *mut UnwindContext, arg: *mut c_void) -> i32 {
        // SAFETY: `arg` is the `State` that `walk` passed, alive for the whole walk and used by
        // nothing else meanwhile.
        let s = unsafe { &mut *arg.cast::<State<'_>>() };
        s.frames += 1;
        if s.frames > MAX_WALK {
            return STOP;
        }
        // SAFETY: `ctx` is the unwinder's context for this frame, valid during the callback.
        let (ip, start, cfa) =
            unsafe { (_Unwind_GetIP(ctx), _Unwind_GetRegionStart(ctx), _Unwind_GetCFA(ctx)) };
        if s.found.site.is_none() && s.hint != 0 {
            if ip != s.hint {
                return CONTINUE;
            }
            s.found.site = Some(ip);
        } else if s.found.site.is_none() {
            // The library's frames end with a run of entry points, or with the frame of
            // `with_site` (the first whose frame lies above the anchor); the first frame after
            // that is the program's.
            let with_site_frame = s.anchor != 0 && !s.anchor_passed && cfa > s.anchor;
            s.anchor_passed |= with_site_frame;
            if with_site_frame || s.entries.binary_search(&start).is_ok() {
                s.in_entry = true;
                return CONTINUE;
            }
            // Below `with_site`'s frame every frame is the library's, entry points or not.
            if !s.in_entry || ip == 0 || (s.anchor != 0 && !s.anchor_passed) {
                return CONTINUE;
            }
            s.found.site = Some(ip);
        }
        if !s.trace {
            return STOP;
        }
        if ip == 0 {
            // The outermost frame's return address (past the thread's first function).
            return STOP;
        }
        s.found.trace[s.found.len] = ip;
        s.found.len += 1;
        if s.found.len == TRACE_DEPTH {
            STOP
        } else {
            CONTINUE
        }
    }

    let mut state = State {
        entries,
        anchor,
        trace,
        hint,
        frames: 0,
        anchor_passed: false,
        in_entry: false,
        found: Walked { site: None, trace: [0; TRACE_DEPTH], len: 0 },
    };
    // SAFETY: `frame` matches the unwinder's callback type and only touches `state`, which
    // outlives the call; the walk reads this thread's own stack.
    unsafe { _Unwind_Backtrace(frame, (&raw mut state).cast()) };
    state.found
}

/// A return address as reports print it: `function (file:line) [address]` when symbols and
/// line tables are there, else the object it lies in and the offset.
pub fn describe(ip: usize) -> String {
    let symbolized = symbolize(ip);
    match symbolized {
        Some(text) => format!("{text} [{ip:#x}]"),
        None => format!("{ip:#x}{}", object_offset(ip)),
    }
}

#[cfg(all(feature = "symbolize", not(miri)))]
fn symbolize(ip: usize) -> Option<String> {
    let mut found: Option<String> = None;
    // The call instruction is just before the return address.
    backtrace::resolve(core::ptr::without_provenance_mut(ip.saturating_sub(1)), |symbol| {
        if found.is_some() {
            return; // an inlined frame's callers: the innermost names the line
        }
        let name = symbol.name().map(|n| format!("{n:#}"));
        let place = match (symbol.filename(), symbol.lineno()) {
            (Some(file), Some(line)) => Some(format!("{}:{line}", file.display())),
            _ => None,
        };
        found = match (name, place) {
            (Some(n), Some(p)) => Some(format!("{n} ({p})")),
            (None, Some(p)) => Some(p),
            (Some(n), None) => Some(n),
            (None, None) => None,
        };
    });
    found
}

#[cfg(not(all(feature = "symbolize", not(miri))))]
fn symbolize(_: usize) -> Option<String> {
    None
}

/// ` (object+0xoffset)` or ` (symbol+0xoffset)` from the dynamic linker, or nothing.
#[cfg(all(unix, not(miri)))]
fn object_offset(ip: usize) -> String {
    // SAFETY: `Dl_info` is plain data that `dladdr` fills; all zeroes is a valid value.
    let mut info: libc::Dl_info = unsafe { core::mem::zeroed() };
    // SAFETY: `dladdr` only reads the loader's tables for the address.
    if unsafe { libc::dladdr(core::ptr::without_provenance(ip), &mut info) } == 0 {
        return String::new();
    }
    // SAFETY: `dladdr` returned non-zero: the names are null or NUL-terminated strings owned by
    // the loader, valid while the object is loaded.
    let name = |p: *const c_char| (!p.is_null()).then(|| unsafe { CStr::from_ptr(p) }.to_string_lossy());
    match (name(info.dli_sname), name(info.dli_fname)) {
        (Some(sym), _) => format!(" ({sym}+{:#x})", ip - info.dli_saddr.addr()),
        (None, Some(obj)) => format!(" ({obj}+{:#x})", ip - info.dli_fbase.addr()),
        (None, None) => String::new(),
    }
}

#[cfg(not(all(unix, not(miri))))]
fn object_offset(_: usize) -> String {
    String::new()
}
