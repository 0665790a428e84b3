//! Named allocators and the registry report: every live tracked allocator with its name, kind,
//! the seven stats and a size-class histogram, as a text table (regions as trees) or JSON.

use std::fmt::Write as _;
use std::sync::Mutex;

use crate::managed::{self, header_of, is_managed};
use crate::policy::stats::{size_class_limit, SizeHistogram, SIZE_CLASSES};
use crate::policy::{default, front};
use crate::raw::{AllocStats, GooAllocator};

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

/// One allocator in a report.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct AllocatorReport {
    pub address: usize,
    pub name: String,
    pub kind: String,
    pub stats: AllocStats,
    /// Library allocators only (C allocators keep no histogram).
    pub histogram: Option<SizeHistogram>,
    /// For a child region: its parent's address.
    pub parent: Option<usize>,
}

/// Every live tracked allocator.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct Report {
    pub allocators: Vec<AllocatorReport>,
}

/// Every tracked allocator the library knows: the built-in default, the library's live
/// allocators, the current default, and named C allocators.
pub fn tracked() -> Vec<(*mut GooAllocator, String)> {
    let mut all: Vec<(*mut GooAllocator, String)> = vec![(default::builtin(), "system".to_string())];
    managed::for_each_live(|a, kind| all.push((a, kind.to_string())));
    let d = default::default_allocator();
    if !all.iter().any(|(a, _)| *a == d) {
        all.push((d, "custom".to_string()));
    }
    for (a, _) in names().iter() {
        let a = *a as *mut GooAllocator;
        if !all.iter().any(|(x, _)| *x == a) {
            all.push((a, "custom".to_string()));
        }
    }
    // SAFETY: every entry is live (registry, default's setter contract, naming contract).
    all.retain(|(a, _)| unsafe { (**a).track_stats });
    all
}

impl Report {
    /// A snapshot of every live tracked allocator.
    pub fn collect() -> Report {
        let allocators = tracked()
            .into_iter()
            .map(|(a, kind)| {
                // SAFETY: live allocators (see `tracked`).
                let (stats, histogram) = unsafe {
                    let stats = front::stats(a);
                    let hist = is_managed(a).then(|| header_of(a).stats.histogram());
                    (stats, hist)
                };
                let parent =
                    if kind == "region" { crate::region::parent_of(a).map(|p| p as usize) } else { None };
                AllocatorReport {
                    address: a as usize,
                    // The library's own default heap is named even if nobody named it.
                    name: name_of(a).unwrap_or_else(|| {
                        if a == crate::builtin() {
                            "built-in default".to_string()
                        } else {
                            String::new()
                        }
                    }),
                    kind,
                    stats,
                    histogram,
                    parent,
                }
            })
            .collect();
        Report { allocators }
    }

    /// A text table; child regions are indented under their parents.
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
        let label = if r.name.is_empty() { format!("{:#x}", r.address) } else { r.name.clone() };
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

    /// JSON: `{"allocators":[{...}]}` with every field.
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
        out.push_str("]}");
        out
    }
}

fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}
