//! Names of allocators, for reports: library allocators drop their entry when destroyed;
//! allocators written in C join the registry by being named. (A region keeps its name in its
//! own node; `report::set_name` puts each allocator's one name where it belongs.) And the
//! escaping of names in text reports.

use crate::policy::fork::held_across_forks;
use std::fmt::Write as _;

use crate::raw::GooAllocator;

/// A named allocator: its pointer (kept as a pointer, so that the registry hands back one with
/// its provenance, not an address cast back) and its name.
struct Named(*mut GooAllocator, String);

// SAFETY: the pointer is only compared, and handed to reports, under the naming contract (the
// allocator stays valid while named); the list is behind a mutex.
unsafe impl Send for Named {}

held_across_forks! {
    /// Names by allocator. Library allocators drop their entry when destroyed; allocators
    /// written in C join the registry by being named and must be unnamed (null) before they die.
    static NAMES: Vec<Named> = Vec::new(), at Leaf, locked by names;
}

/// Names `allocator` (None removes the name; a C allocator then leaves the registry).
///
/// # Safety
/// While it is named, `allocator` is a valid allocator (a live one, if a library allocator,
/// whose destroy unnames it): the registry's readers read every named allocator, safe ones
/// among them ([`report::tracked`](crate::report::tracked)). Removing a name (None) takes any
/// pointer.
pub unsafe fn set_name(allocator: *mut GooAllocator, name: Option<&str>) {
    let mut n = names();
    n.retain(|e| e.0 != allocator);
    if let Some(name) = name {
        n.push(Named(allocator, name.to_string()));
    }
}

/// The name of `allocator`, if it has one.
pub fn name_of(allocator: *const GooAllocator) -> Option<String> {
    names().iter().find(|e| e.0.cast_const() == allocator).map(|e| e.1.clone())
}

/// Forgets the name of a destroyed allocator.
pub(crate) fn forget(allocator: *mut GooAllocator) {
    let mut n = names();
    if !n.is_empty() {
        n.retain(|e| e.0 != allocator);
    }
}

/// Every named allocator.
pub(crate) fn named() -> Vec<*mut GooAllocator> {
    names().iter().map(|e| e.0).collect()
}

/// `name` as the text reports print it: a control character, a Unicode line or paragraph
/// separator, a bidirectional control, a backslash or a double quote is written as Rust's
/// `char::escape_default` writes it (`\n`, `\t`, `\u{1b}`, `\\`, `\"`), so a name can neither
/// split a row nor make one row look like another; everything else is kept.
pub fn escaped(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        let escape = c.is_control()
            || matches!(c, '\\' | '"' | '\u{2028}' | '\u{2029}' | '\u{200e}' | '\u{200f}')
            || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}');
        if escape {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// `s` as a JSON string, quoted, escaped as serde_json escapes it (so the report's writer and
/// serde agree).
pub fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::escaped;

    #[test]
    fn escaped_keeps_rows_whole() {
        assert_eq!(escaped("plain name, déjà vu's"), "plain name, déjà vu's");
        assert_eq!(escaped("a\nb\r\tc"), "a\\nb\\r\\tc");
        assert_eq!(escaped("\u{1b}[31mred\u{7f}"), "\\u{1b}[31mred\\u{7f}");
        assert_eq!(escaped("q\"\\"), "q\\\"\\\\");
        assert_eq!(escaped("x\u{2028}y\u{202e}z\u{85}"), "x\\u{2028}y\\u{202e}z\\u{85}");
    }
}
