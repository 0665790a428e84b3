//! The registry report: every live tracked allocator with its name, kind, the seven stats and
//! a size-class histogram, as a text table (regions as trees) or JSON; the leak report of
//! `goo_memory_cleanup`; and the exhaustive allocation-failure check.

use std::fmt::Write as _;
use std::io::Write as _;

use crate::allocators::{debug, region};
use crate::default;
use crate::policy::backend::{header_of, is_managed, with_live_list};
use crate::policy::callbacks::{self, FaultInjector, FaultSpec};
use crate::policy::names::{self, escaped, json_string, named};
use crate::policy::stats::{size_class_limit, SizeHistogram, SIZE_CLASSES};
use crate::policy::{front, strategy};
use crate::raw::{track_stats_flag, AllocStats, GooAllocator};
use core::sync::atomic::Ordering::Relaxed;

/// One allocator in a report. Its JSON (from [`Report::to_json`] and from serde alike):
/// `{"address","name","kind","parent","stats":{...},"histogram":{"class_limits","live","total"}|null}`,
/// fields in that order.
///
/// ```
/// use goo_memory_core::{region::Region, report::Report};
/// let root = Region::new(0, true);
/// let child = root.child(0);
/// child.set_name("request");
/// child.alloc(7u64);
/// // SAFETY: only this thread uses the regions.
/// let report = unsafe { Report::collect() };
/// let entry = report.allocators.iter().find(|a| a.address == child.as_ptr() as usize).unwrap();
/// assert_eq!((entry.name.as_str(), entry.kind.as_str()), ("request", "region"));
/// assert_eq!(entry.parent, Some(root.as_ptr() as usize));
/// assert_eq!(entry.stats.bytes_allocated, 8);
/// assert!(entry.histogram.is_some(), "a library allocator keeps a size histogram");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct AllocatorReport {
    pub address: usize,
    pub name: String,
    pub kind: String,
    /// For a child region: its parent's address.
    pub parent: Option<usize>,
    pub stats: AllocStats,
    /// Library allocators only (C allocators keep no histogram).
    pub histogram: Option<SizeHistogram>,
}

/// Every live tracked allocator: what `goo_memory_stats_report` prints.
///
/// ```
/// use goo_memory_core::{report::{self, Report, ReportFormat}, Allocator};
/// let heap = Allocator::heap();
/// // SAFETY: a live library allocator (its drop unnames it).
/// unsafe { report::set_name(heap.as_ptr(), Some("parser")) };
/// // SAFETY: no other thread uses a single-owner allocator.
/// let report = unsafe { Report::collect() };
/// assert!(report.allocators.iter().any(|a| a.name == "parser" && a.kind == "heap"));
/// let json = report.render(ReportFormat::Json);
/// assert!(json.starts_with(r#"{"allocators":["#) && json.ends_with("]}\n"));
/// assert!(report.to_text().contains("parser"));
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct Report {
    pub allocators: Vec<AllocatorReport>,
}

/// Names `allocator` (None clears the name): its one name, shown by every report. A live region
/// keeps it in its node (where [`region::set_name`] puts it), any other allocator in the names
/// registry, which an allocator written in C joins by being named and leaves by being unnamed.
///
/// # Safety
/// As for [`names::set_name`]: while it is named, `allocator` is a valid allocator (a live
/// one, if a library allocator), since every report reads it, [`tracked`] (a safe function)
/// included. A pointer that names nothing would be read by the next report:
///
/// ```compile_fail,E0133
/// let gone = core::ptr::without_provenance_mut(0x1000);
/// goo_memory_core::report::set_name(gone, Some("nothing there"));
/// goo_memory_core::report::tracked(); // would read `gone`'s header
/// ```
pub unsafe fn set_name(allocator: *mut GooAllocator, name: Option<&str>) {
    if region::is_live(allocator) {
        // Cannot fail: the region is live.
        let _ = region::set_name(allocator, name);
    } else {
        // SAFETY: forwarded contract.
        unsafe { names::set_name(allocator, name) };
    }
}

/// The name of `allocator`, if it has one (see [`set_name`]).
pub fn name_of(allocator: *mut GooAllocator) -> Option<String> {
    if region::is_live(allocator) {
        region::name_of(allocator)
    } else {
        names::name_of(allocator)
    }
}

/// The form of a report: `GooReportFormat` in `stats.h`.
///
/// ```
/// use goo_memory_core::report::ReportFormat;
/// assert_eq!(ReportFormat::from_raw(1), Some(ReportFormat::Json));
/// assert_eq!(ReportFormat::from_raw(2), None, "an unknown C value is refused");
/// ```
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReportFormat {
    /// A table ([`Report::to_text`]).
    Text = 0,
    /// JSON ([`Report::to_json`]).
    Json = 1,
}

impl ReportFormat {
    /// The format a C caller's `GooReportFormat` value names; None for any other value.
    pub fn from_raw(value: u32) -> Option<ReportFormat> {
        match value {
            0 => Some(ReportFormat::Text),
            1 => Some(ReportFormat::Json),
            _ => None,
        }
    }
}

/// Calls `f` with every tracked allocator the library knows and its kind: the built-in default,
/// the library's live allocators, the current default, and named C allocators, all under the
/// registry's lock, so that another thread makes or destroys no library allocator meanwhile
/// (`f` must not either). Whatever is not a registered one then is C-made (a library
/// allocator's destroy forgets its name before it leaves the registry), live by its
/// registrant's contract (the default's setter, the naming).
///
/// Each `track_stats` flag is read atomically ([`track_stats_flag`]): the thread that owns a
/// single-owner allocator may switch it meanwhile.
fn for_each_tracked(mut f: impl FnMut(*mut GooAllocator, &str)) {
    let tracks = |a: *mut GooAllocator| {
        // SAFETY: every `a` passed below is valid for the call: the built-in default is a
        // static, a registered allocator is live while the registry's lock is held, a C-made
        // one is live by the default's setter's or the naming's contract.
        unsafe { track_stats_flag(a) }.load(Relaxed)
    };
    let mut seen = vec![default::builtin()];
    // The built-in default is a static.
    if tracks(default::builtin()) {
        f(default::builtin(), default::builtin_kind());
    }
    with_live_list(|registered| {
        for &(a, kind) in registered {
            seen.push(a);
            // Registered, so live while the registry's lock is held.
            if tracks(a) {
                f(a, kind);
            }
        }
        let mut others: Vec<*mut GooAllocator> = vec![default::default_allocator()];
        others.extend(named());
        for a in others {
            if !seen.contains(&a) {
                seen.push(a);
                // C-made (see above), live by the default's setter's or the naming's contract.
                if tracks(a) {
                    f(a, "custom");
                }
            }
        }
    });
}

/// Every tracked allocator the library knows (the built-in default, the library's live
/// allocators, the current default, named C allocators): a snapshot,
/// whose library allocators another thread may destroy once it is taken (only the addresses
/// and kinds are kept).
pub fn tracked() -> Vec<(*mut GooAllocator, String)> {
    let mut all = Vec::new();
    for_each_tracked(|a, kind| all.push((a, kind.to_string())));
    all
}

impl Report {
    /// A snapshot of every live tracked allocator. Any thread may collect one while others
    /// create and destroy allocators (the library's own are visited under the registry's
    /// lock).
    ///
    /// # Safety
    /// No other thread uses a single-owner allocator (an arena, pool, region, scope or
    /// temporary arena, one made in C included) meanwhile: its reserved bytes are read from its
    /// chunk lists, which only its own thread may touch (the counters are atomics, the lists
    /// are not). Collecting on the thread that uses them, or while the threads that do are
    /// waiting, is always safe.
    pub unsafe fn collect() -> Report {
        let mut allocators = Vec::new();
        for_each_tracked(|a, kind| {
            // SAFETY: live allocators, none destroyed while visited (see `for_each_tracked`).
            let (stats, histogram) = unsafe {
                let stats = front::stats(a);
                let hist = is_managed(a).then(|| header_of(a).stats.histogram());
                (stats, hist)
            };
            let parent = if kind == "region" { region::parent_of(a).map(|p| p as usize) } else { None };
            allocators.push(AllocatorReport {
                address: a as usize,
                // The library's own default heap is named even if nobody named it.
                name: name_of(a).unwrap_or_else(|| {
                    if a == default::builtin() {
                        "built-in default".to_string()
                    } else {
                        String::new()
                    }
                }),
                kind: kind.to_string(),
                stats,
                histogram,
                parent,
            });
        });
        Report { allocators }
    }

    /// The report in `format`.
    pub fn render(&self, format: ReportFormat) -> String {
        match format {
            ReportFormat::Text => self.to_text(),
            ReportFormat::Json => self.to_json(),
        }
    }

    /// A text table; child regions are indented under their parents. Names are printed
    /// escaped ([`escaped`]), so each allocator's row is one line.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{:<32} {:<8} {:>12} {:>12} {:>12} {:>9} {:>10} {:>10} {:>7}",
            "allocator", "kind", "live bytes", "reserved", "peak", "live", "allocs", "frees", "failed"
        );
        let roots: Vec<&AllocatorReport> = self
            .allocators
            .iter()
            .filter(|r| r.parent.is_none_or(|p| !self.allocators.iter().any(|x| x.address == p)))
            .collect();
        for r in roots {
            self.row(r, 0, &mut out);
        }
        out
    }

    fn row(&self, r: &AllocatorReport, depth: usize, out: &mut String) {
        let label = if r.name.is_empty() { format!("{:#x}", r.address) } else { escaped(&r.name) };
        let label = format!("{:indent$}{label}", "", indent = depth * 2);
        let s = &r.stats;
        let _ = writeln!(
            out,
            "{label:<32} {:<8} {:>12} {:>12} {:>12} {:>9} {:>10} {:>10} {:>7}",
            r.kind,
            s.bytes_allocated,
            s.bytes_reserved,
            s.max_bytes_allocated,
            s.allocation_count,
            s.total_allocations,
            s.total_frees,
            s.failed_allocations
        );
        if let Some(h) = &r.histogram {
            let classes: Vec<String> = (0..SIZE_CLASSES)
                .filter(|&c| h.total[c] > 0)
                .map(|c| {
                    let limit = size_class_limit(c);
                    let label = if limit == usize::MAX {
                        format!(">{}", size_class_limit(c - 1))
                    } else {
                        format!("<={limit}")
                    };
                    format!("{label}: {} live/{} total", h.live[c], h.total[c])
                })
                .collect();
            if !classes.is_empty() {
                let _ = writeln!(out, "{:indent$}  sizes {}", "", classes.join(", "), indent = depth * 2);
            }
        }
        for child in self.allocators.iter().filter(|c| c.parent == Some(r.address)) {
            self.row(child, depth + 1, out);
        }
    }

    /// JSON: `{"allocators":[{...}]}` with every field (see [`AllocatorReport`]), then a
    /// newline. The same text as serde's `serde_json::to_string`, plus the newline.
    pub fn to_json(&self) -> String {
        let mut out = String::from("{\"allocators\":[");
        for (i, r) in self.allocators.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            let s = &r.stats;
            let _ = write!(
                out,
                "{{\"address\":{},\"name\":{},\"kind\":{},\"parent\":{},\"stats\":{{\"bytes_allocated\":{},\"bytes_reserved\":{},\"max_bytes_allocated\":{},\"allocation_count\":{},\"total_allocations\":{},\"total_frees\":{},\"failed_allocations\":{}}}",
                r.address,
                json_string(&r.name),
                json_string(&r.kind),
                r.parent.map_or("null".to_string(), |p| p.to_string()),
                s.bytes_allocated,
                s.bytes_reserved,
                s.max_bytes_allocated,
                s.allocation_count,
                s.total_allocations,
                s.total_frees,
                s.failed_allocations
            );
            match &r.histogram {
                Some(h) => {
                    let list = |v: &[usize]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>().join(",");
                    let limits: Vec<String> = (0..SIZE_CLASSES)
                        .map(|c| {
                            if c + 1 == SIZE_CLASSES {
                                "null".to_string()
                            } else {
                                size_class_limit(c).to_string()
                            }
                        })
                        .collect();
                    let _ = write!(
                        out,
                        ",\"histogram\":{{\"class_limits\":[{}],\"live\":[{}],\"total\":[{}]}}}}",
                        limits.join(","),
                        list(&h.live),
                        list(&h.total)
                    );
                }
                None => out.push_str(",\"histogram\":null}"),
            }
        }
        out.push_str("]}\n");
        out
    }
}

/// One allocator that still has live allocations at cleanup (a null `allocator`: unnamed
/// C-made allocators together, see [`leaks`]).
///
/// ```
/// use goo_memory_core::{arena::Arena, report};
/// let arena = Arena::new();
/// arena.alloc([0u8; 100]);
/// // SAFETY: only this thread uses the arena.
/// let leak = unsafe { report::leaks() }.into_iter().find(|l| l.allocator == arena.as_ptr()).unwrap();
/// assert_eq!((leak.kind, leak.live_allocations, leak.live_bytes), ("arena", 1, 100));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Leak {
    pub allocator: *mut GooAllocator,
    pub kind: &'static str,
    pub name: Option<String>,
    pub live_allocations: usize,
    pub live_bytes: usize,
}

/// Every tracked allocator the library knows ([`tracked`]) that still has live allocations,
/// then (with a null `allocator` and kind "custom") what tracked C-made allocators outside the
/// registry still hold together: the library counts their blocks but cannot name or list
/// them until they are named.
///
/// # Safety
/// As for [`Report::collect`]: no other thread uses a single-owner allocator meanwhile.
pub unsafe fn leaks() -> Vec<Leak> {
    let mut leaks: Vec<Leak> = Vec::new();
    for_each_tracked(|a, kind| {
        // SAFETY: live allocators, none destroyed while visited (see `for_each_tracked`).
        let s = unsafe { front::stats(a) };
        if s.allocation_count > 0 {
            leaks.push(Leak {
                allocator: a,
                kind: leak_kind(kind),
                name: name_of(a),
                live_allocations: s.allocation_count,
                live_bytes: s.bytes_allocated,
            });
        }
    });
    let (count, bytes) = unlisted_c_made_live();
    if count > 0 {
        leaks.push(Leak {
            allocator: core::ptr::null_mut(),
            kind: "custom",
            name: None,
            live_allocations: count,
            live_bytes: bytes,
        });
    }
    leaks
}

/// Live blocks and bytes of tracked C-made allocators that [`tracked`] does not list: all of
/// them (`policy::stats::c_made_live`) less those of the listed ones.
fn unlisted_c_made_live() -> (usize, usize) {
    let (count, bytes) = crate::policy::stats::c_made_live();
    let mut listed = Vec::new();
    for_each_tracked(|a, _| {
        // SAFETY: live allocators, none destroyed while visited (see `for_each_tracked`).
        if !unsafe { is_managed(a) } {
            // SAFETY: as above.
            listed.push(unsafe { front::stats(a) });
        }
    });
    listed.into_iter().fold((count, bytes), |(c, b), s| {
        (c.saturating_sub(s.allocation_count), b.saturating_sub(s.bytes_allocated))
    })
}

/// A leak's kind as the stats report names it (`goo/core/types.h`); "other" for a Rust-made
/// backend (its name is not static).
fn leak_kind(kind: &str) -> &'static str {
    [
        "system",
        "heap",
        "arena",
        "pool",
        "region",
        "scoped",
        "debug",
        "shared arena",
        "shared pool",
        "locked",
        "custom",
    ]
    .into_iter()
    .find(|k| *k == kind)
    .unwrap_or("other")
}

/// Reports leaks to stderr (each debug allocator's live blocks by site, too), then returns the
/// library to its initial state: the debug allocator `init` made for `GOO_MEMORY_DEBUG` no
/// longer the default, and destroyed unless blocks of it are live (the program may still free
/// them through it: a legacy block's header names it) or another library allocator is (it may
/// be that allocator's parent), built-in default, no thread allocator on this thread, no handlers, built-in stats
/// cleared, this thread's cached system blocks given back to the C library. Returns the number
/// of leaking allocators.
///
/// # Safety
/// No other thread uses the library meanwhile (the cleanup gives quarantined blocks back to
/// their parents, which may be single-owner allocators, and resets what every thread shares).
/// With `GOO_MEMORY_DEBUG` set, the default allocator is the debug allocator `init` made, which
/// this destroys when no block of it is live: nothing may use it meanwhile (another thread) or
/// afterwards through a handle taken before (an
/// [`AllocatorRef::default_allocator`](crate::AllocatorRef::default_allocator) or
/// [`AllocatorRef::with_current`](crate::AllocatorRef::with_current) handle, or a collection
/// that holds one) unless blocks of it were live.
pub unsafe fn cleanup() -> usize {
    // Blocks the program freed into a debug allocator's quarantine are still live in its
    // parent: they go back first, so that they are not reported as the parent's leaks.
    // SAFETY: this function's contract: no other thread uses the library meanwhile.
    unsafe { debug::flush_all_quarantines() };
    // SAFETY: this function's contract: no other thread uses the library meanwhile.
    let leaks = unsafe { leaks() };
    let mut err = std::io::stderr().lock();
    for l in &leaks {
        if l.allocator.is_null() {
            let _ = writeln!(
                err,
                "goo-memory: leak: unnamed C-made allocators still have {} live allocation(s), {} byte(s) \
                 (name one with goo_allocator_set_name to see it in reports)",
                l.live_allocations, l.live_bytes
            );
            continue;
        }
        let _ = writeln!(
            err,
            "goo-memory: leak: allocator {:p} ({}{}) still has {} live allocation(s), {} byte(s)",
            l.allocator,
            l.kind,
            l.name.as_deref().map(|n| format!(", \"{}\"", escaped(n))).unwrap_or_default(),
            l.live_allocations,
            l.live_bytes
        );
    }
    // The debug allocator `init` made, and those earlier cleanups kept: each is destroyed once
    // no block of it is live and no allocator may be over it.
    let mut candidates = core::mem::take(&mut *kept_env_debug());
    candidates.extend(default::take_env_debug().map(|d| d as usize));
    for &d in &candidates {
        let debug = d as *mut GooAllocator;
        let (registered, maybe_a_parent) = with_live_list(|allocators| {
            let registered = allocators.iter().any(|&(a, _)| a == debug);
            // An allocator made over the default while it was the default (a scope, an arena,
            // a region, ...) holds it as its parent; a live allocator may be one.
            let other = allocators.iter().any(|&(a, _)| !candidates.contains(&(a as usize)));
            (registered, other)
        });
        if !registered {
            // The program destroyed it (through the default's pointer it read).
            continue;
        }
        // SAFETY: made by `goo_memory_init`, registered: live.
        let live = unsafe { debug::from_raw(debug) }.map_or(0, |d| d.live().0);
        if live == 0 && !maybe_a_parent {
            // SAFETY: made by `goo_memory_init`, no longer the default, no allocator's parent,
            // destroyed once.
            unsafe { crate::policy::backend::managed_destroy(debug) };
        } else {
            // It stays, as a debug allocator the program made would: the report below names
            // its live blocks by site, freeing them later is checked as before, allocators
            // over it keep their parent, and a later cleanup destroys it once it is free.
            kept_env_debug().push(d);
        }
    }
    // SAFETY: as above.
    unsafe { debug::report_all_at_cleanup() };
    default::reset();
    strategy::reset();
    callbacks::clear();
    crate::policy::limit::clear();
    crate::allocators::system::trim_thread_cache();
    leaks.len()
}

/// Debug allocators `goo_memory_init` made for `GOO_MEMORY_DEBUG` that a cleanup kept (blocks
/// of them were live): a later cleanup destroys them once they are free. Touched only by
/// [`cleanup`], which no other thread runs beside (its contract); empty, it holds no memory.
fn kept_env_debug() -> std::sync::MutexGuard<'static, Vec<usize>> {
    static KEPT: std::sync::Mutex<Vec<usize>> = std::sync::Mutex::new(Vec::new());
    KEPT.lock().unwrap_or_else(|e| e.into_inner())
}

/// The environment read when the library is loaded, by an ELF constructor before `main` (a
/// program needs no call): `GOO_MEMORY_DEBUG` puts the debug allocator over the default
/// (`default::init`); `GOO_MEMORY_STATS=text|json` prints the report ([`Report::render`]) at
/// exit, to stderr or to the file `GOO_MEMORY_STATS_FILE` names (created or truncated then);
/// any other value is refused with a message on stderr.
mod exit_report {
    use core::ffi::{c_char, CStr};
    use core::sync::atomic::{AtomicU8, Ordering::Relaxed};
    use std::io::Write as _;
    use std::sync::Mutex;

    use super::{Report, ReportFormat};

    /// 0: none; 1 + `ReportFormat` as u8 otherwise.
    static FORMAT: AtomicU8 = AtomicU8::new(0);
    /// `GOO_MEMORY_STATS_FILE`, copied at load (the environment may change later).
    static FILE: Mutex<Option<std::path::PathBuf>> = Mutex::new(None);

    #[used]
    #[link_section = ".init_array"]
    static READ_AT_LOAD: extern "C" fn() = read_environment;

    fn var(name: &CStr) -> Option<&'static str> {
        // SAFETY: `getenv` with a NUL-terminated name; the constructor runs before any thread
        // could change the environment; the value is copied out before main runs.
        let value = unsafe { libc::getenv(name.as_ptr()) };
        if value.is_null() {
            return None;
        }
        // SAFETY: a non-null `getenv` result is a NUL-terminated string that lives as long as
        // the environment entry (the whole process, unless the program changes it).
        unsafe { CStr::from_ptr(value.cast::<c_char>()) }.to_str().ok()
    }

    extern "C" fn read_environment() {
        let _ = std::panic::catch_unwind(|| {
            // `GOO_MEMORY_DEBUG=1`: the debug allocator over the default from the start, with
            // no call to `goo_memory_init` needed (which does the same, idempotently).
            if var(c"GOO_MEMORY_DEBUG").is_some_and(|v| !v.is_empty() && v != "0") {
                crate::default::init();
            }
            let Some(value) = var(c"GOO_MEMORY_STATS") else { return };
            let format = match value {
                "text" => ReportFormat::Text,
                "json" => ReportFormat::Json,
                "" | "0" => return,
                other => {
                    let _ = writeln!(
                        std::io::stderr(),
                        "goo-memory: GOO_MEMORY_STATS={other:?} is neither \"text\" nor \"json\"; no report at exit"
                    );
                    return;
                }
            };
            if let Some(path) = var(c"GOO_MEMORY_STATS_FILE").filter(|p| !p.is_empty()) {
                *FILE.lock().unwrap_or_else(|e| e.into_inner()) = Some(path.into());
            }
            FORMAT.store(1 + format as u8, Relaxed);
            // SAFETY: registering a function that takes nothing and never unwinds.
            unsafe { libc::atexit(print_at_exit) };
        });
    }

    extern "C" fn print_at_exit() {
        let _ = std::panic::catch_unwind(|| {
            let format = match FORMAT.load(Relaxed) {
                1 => ReportFormat::Text,
                2 => ReportFormat::Json,
                _ => return,
            };
            // SAFETY: the program is exiting: the stats.h contract of GOO_MEMORY_STATS is that
            // no other thread uses a single-owner allocator by then.
            let text = unsafe { Report::collect() }.render(format);
            let file = FILE.lock().unwrap_or_else(|e| e.into_inner()).clone();
            match file {
                Some(path) => {
                    if let Err(e) = std::fs::write(&path, &text) {
                        let _ = writeln!(
                            std::io::stderr(),
                            "goo-memory: GOO_MEMORY_STATS_FILE {}: {e}",
                            path.display()
                        );
                    }
                }
                None => {
                    let _ = std::io::stderr().write_all(text.as_bytes());
                }
            }
        });
    }
}

/// What [`check_all_allocation_failures`] found.
///
/// ```
/// # if cfg!(miri) { return; } // each run is a forked child, which Miri cannot make
/// use goo_memory_core::{report, Allocator};
/// use goo_memory_core::allocator_api2::vec::Vec;
/// let heap = Allocator::heap();
/// // Two requests; each failure is handled (the function gives up cleanly).
/// let result = report::check_all_allocation_failures(&mut || {
///     let mut v = Vec::new_in(&heap);
///     if v.try_reserve_exact(8).is_err() { return 1; }
///     v.extend([1u64; 8]);
///     if v.try_reserve_exact(100).is_err() { return 1; }
///     0
/// });
/// assert_eq!((result.allocations, result.runs), (2, 2));
/// assert_eq!((result.leaks, result.crashes, result.first_bad), (0, 0, 0));
/// ```
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExhaustiveResult {
    /// Allocation requests the function made in a run without failures.
    pub allocations: u64,
    /// Runs made with one request failing (one per allocation).
    pub runs: u64,
    /// Runs that left live allocations behind (including the run without failures).
    pub leaks: u64,
    /// Runs that crashed (ended by a signal) or exited on their own.
    pub crashes: u64,
    /// The first failing allocation (1-based) whose run leaked or crashed; 0 if none.
    pub first_bad: u64,
}

/// Live allocations over every tracked allocator: the library's, and C-made ones whether
/// named or not. Reads only the library allocators' counters (atomics), never their mechanism
/// (`front::stats` reads an arena's chunk list for its reserved bytes), so another thread may
/// be using any of them meanwhile.
fn live_allocations() -> usize {
    let mut library = 0;
    for_each_tracked(|a, _| {
        // SAFETY: live allocators, none destroyed while visited (see `for_each_tracked`).
        if unsafe { is_managed(a) } {
            // SAFETY: as above; a library allocator has a header.
            library += unsafe { header_of(a) }.stats.snapshot().allocation_count;
        }
    });
    library + crate::policy::stats::c_made_live().0
}

/// Like Zig's `checkAllAllocationFailures`: runs `f` once to count its allocation requests on
/// this thread, then once per request with exactly that one failing, each time in a forked child
/// so that a crash is caught. A run that leaves live allocations in tracked allocators (compared
/// with before it) is a leak; one that dies is a crash. Each bad run is reported on stderr.
/// `f` returns an exit status of its own choosing (ignored, except that the child reports it).
///
/// Unix only; `f` runs in a child process with only the calling thread.
#[cfg(unix)]
pub fn check_all_allocation_failures(f: &mut dyn FnMut() -> i32) -> ExhaustiveResult {
    let mut result = ExhaustiveResult::default();
    // The run without failures, in process: count requests, check it does not leak.
    let spec = FaultSpec { this_thread_only: true, ..FaultSpec::default() };
    let before = live_allocations();
    let Some(counter) = FaultInjector::install(spec) else {
        eprintln!("goo-memory: check_all_allocation_failures: callback table full");
        return result;
    };
    f();
    result.allocations = counter.requests_seen();
    drop(counter);
    if live_allocations() > before {
        result.leaks += 1;
        eprintln!("goo-memory: check_all_allocation_failures: leaks even without failures");
    }
    for nth in 1..=result.allocations {
        result.runs += 1;
        match run_failing(f, nth) {
            RunOutcome::Ok => continue,
            RunOutcome::Leak => {
                result.leaks += 1;
                eprintln!("goo-memory: check_all_allocation_failures: failing allocation #{nth} leaks");
            }
            RunOutcome::Crash(sig) => {
                result.crashes += 1;
                eprintln!(
                    "goo-memory: check_all_allocation_failures: failing allocation #{nth} crashes (signal {sig})"
                );
            }
            RunOutcome::Exit(status) => {
                result.crashes += 1;
                eprintln!(
                    "goo-memory: check_all_allocation_failures: failing allocation #{nth} exits (status {status})"
                );
            }
            RunOutcome::Lost => {
                result.crashes += 1;
                eprintln!(
                    "goo-memory: check_all_allocation_failures: failing allocation #{nth}: no child could be run"
                );
            }
        }
        if result.first_bad == 0 {
            result.first_bad = nth;
        }
    }
    result
}

#[cfg(unix)]
enum RunOutcome {
    Ok,
    Leak,
    /// Ended by this signal.
    Crash(i32),
    /// Exited on its own (`exit`, `_exit`) with this status, before its verdict.
    Exit(i32),
    /// No child ran (no pipe, no fork), or its end was not seen.
    Lost,
}

#[cfg(unix)]
fn run_failing(f: &mut dyn FnMut() -> i32, nth: u64) -> RunOutcome {
    use std::io::Write as _;
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    // And C's streams: a child that leaves by `exit` (as a C function may when a request
    // fails) flushes its copy of every buffer, which printed the caller's pending output once
    // more per such run.
    // SAFETY: fflush(NULL) flushes every open output stream.
    unsafe { libc::fflush(core::ptr::null_mut()) };
    // The child reports its verdict through a pipe, so its exit status (which tools such as
    // valgrind may rewrite) does not matter; no verdict means it died.
    let mut fds = [0i32; 2];
    // SAFETY: a plain pipe(2) into a two-int array.
    if unsafe { libc::pipe(fds.as_mut_ptr()) } != 0 {
        return RunOutcome::Lost;
    }
    // SAFETY: fork; the child only runs `f`, writes its verdict and leaves with `_exit` (no
    // destructors, no atexit handlers).
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        let spec = FaultSpec { fail_nth: nth, this_thread_only: true, ..FaultSpec::default() };
        let before = live_allocations();
        let injector = FaultInjector::install(spec);
        f();
        drop(injector);
        let verdict: u8 = if live_allocations() > before { b'L' } else { b'O' };
        // SAFETY: writing one byte to our end of the pipe, then leaving the child at once.
        unsafe {
            libc::write(fds[1], (&verdict as *const u8).cast(), 1);
            libc::_exit(0);
        }
    }
    // SAFETY: closing our copy of the write end; the read end is ours.
    unsafe { libc::close(fds[1]) };
    if pid < 0 {
        // SAFETY: our read end.
        unsafe { libc::close(fds[0]) };
        return RunOutcome::Lost;
    }
    let mut verdict = 0u8;
    // A signal handled meanwhile (without SA_RESTART) interrupts the read and the wait: both
    // are asked again, so that a verdict is not taken for a crash, nor the child left a zombie.
    let got = loop {
        // SAFETY: reading one byte into a local.
        let n = unsafe { libc::read(fds[0], (&mut verdict as *mut u8).cast(), 1) };
        if n >= 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            break n;
        }
    };
    // SAFETY: our read end.
    unsafe { libc::close(fds[0]) };
    let mut status = 0;
    let waited = loop {
        // SAFETY: waiting for our own child.
        let w = unsafe { libc::waitpid(pid, &mut status, 0) };
        if w >= 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            break w;
        }
    };
    match (got, verdict) {
        (1, b'O') => RunOutcome::Ok,
        (1, b'L') => RunOutcome::Leak,
        _ if waited == pid && libc::WIFSIGNALED(status) => RunOutcome::Crash(libc::WTERMSIG(status)),
        _ if waited == pid && libc::WIFEXITED(status) => RunOutcome::Exit(libc::WEXITSTATUS(status)),
        _ => RunOutcome::Lost,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arena::Arena;

    /// `check_all_allocation_failures` (a safe function) counts live allocations while other
    /// threads use their allocators: it read each library allocator's stats through
    /// `front::stats`, whose reserved bytes come from an arena's chunk list, which the arena's
    /// own thread was changing meanwhile (a data race Miri reported). Only counters now.
    #[test]
    fn live_allocations_reads_no_allocator_mechanism() {
        let rounds = if cfg!(miri) { 20 } else { 2_000 };
        let arena = Arena::with_capacity(64);
        let owner = std::thread::spawn(move || {
            for i in 0..rounds {
                // Past the first chunk every few rounds: the chunk list changes.
                arena.alloc_slice_fill_copy(64 + i, 0u8);
            }
            arena
        });
        for _ in 0..rounds / 4 {
            // What it counts depends on the other tests running; what matters is the reading.
            let _ = live_allocations();
        }
        drop(owner.join().unwrap());
    }
}
