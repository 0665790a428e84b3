//! Builds every `tests/c/*.c` program against the public headers and the built static library,
//! with `-std=c11 -Wall -Wextra -Werror -pedantic`, and runs it; `test_basic.c` is also built as
//! C++. With `GOO_VALGRIND=1` each program runs under
//! `valgrind --error-exitcode=1 --leak-check=full` (as CI does), where a block definitely,
//! indirectly or possibly lost at exit fails the program: the library keeps nothing for the
//! process's life once the program has given back what it made (a "possibly lost" block is
//! one the library still holds only through an interior pointer, such as a hash table). With
//! `GOO_SANITIZE=1` each is built with `-fsanitize=address,undefined` (errors abort the
//! program; CI runs this too).
//!
//! Also checks that the headers and the library export the same set of functions.

use std::collections::BTreeSet;
use std::mem::{align_of, offset_of, size_of};
use std::path::{Path, PathBuf};
use std::process::Command;

use goo_memory_core::{AllocOptions, AllocStats, GooAllocator};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

/// target/<profile>/deps: where `cargo test` builds this run's libgoo_memory.a and .so (it
/// refreshes the copies in target/<profile> only on `cargo build`).
fn lib_dir() -> PathBuf {
    std::env::current_exe().unwrap().parent().unwrap().to_path_buf()
}

/// target/<profile>, where the build script writes goo-memory.pc.
fn profile_dir() -> PathBuf {
    lib_dir().parent().unwrap().to_path_buf()
}

fn out_dir() -> PathBuf {
    let dir = profile_dir().join("c-tests");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn compiler(cxx: bool) -> PathBuf {
    let build = cc::Build::new()
        .cpp(cxx)
        .opt_level(1)
        .target("x86_64-unknown-linux-gnu")
        .host("x86_64-unknown-linux-gnu")
        .cargo_metadata(false)
        .clone();
    build.get_compiler().path().to_path_buf()
}

fn layout_defines() -> Vec<String> {
    let d = |name: &str, v: usize| format!("-DRUST_{name}={v}");
    vec![
        d("SIZEOF_ALLOCATOR", size_of::<GooAllocator>()),
        d("ALIGNOF_ALLOCATOR", align_of::<GooAllocator>()),
        d("OFF_ALLOC", offset_of!(GooAllocator, alloc)),
        d("OFF_REALLOC", offset_of!(GooAllocator, realloc)),
        d("OFF_FREE", offset_of!(GooAllocator, free)),
        d("OFF_DESTROY", offset_of!(GooAllocator, destroy)),
        d("OFF_STRATEGY", offset_of!(GooAllocator, strategy)),
        d("OFF_OUT_OF_MEM_FN", offset_of!(GooAllocator, out_of_mem_fn)),
        d("OFF_CONTEXT", offset_of!(GooAllocator, context)),
        d("OFF_TRACK_STATS", offset_of!(GooAllocator, track_stats)),
        d("OFF_STATS", offset_of!(GooAllocator, stats)),
        d("SIZEOF_STRATEGY", size_of::<u32>()),
        d("SIZEOF_OPTIONS", size_of::<AllocOptions>()),
        d("SIZEOF_STATS", size_of::<AllocStats>()),
        d("OFF_BYTES_ALLOCATED", offset_of!(AllocStats, bytes_allocated)),
        d("OFF_BYTES_RESERVED", offset_of!(AllocStats, bytes_reserved)),
        d("OFF_MAX_BYTES_ALLOCATED", offset_of!(AllocStats, max_bytes_allocated)),
        d("OFF_ALLOCATION_COUNT", offset_of!(AllocStats, allocation_count)),
        d("OFF_TOTAL_ALLOCATIONS", offset_of!(AllocStats, total_allocations)),
        d("OFF_TOTAL_FREES", offset_of!(AllocStats, total_frees)),
        d("OFF_FAILED_ALLOCATIONS", offset_of!(AllocStats, failed_allocations)),
    ]
}

/// Whether the C programs are built with AddressSanitizer and UndefinedBehaviorSanitizer.
fn sanitize() -> bool {
    std::env::var("GOO_SANITIZE").is_ok_and(|v| v == "1")
}

/// Compiles `name` (in tests/c) and returns the executable's path.
fn build(name: &str, cxx: bool) -> PathBuf {
    let src = root().join("crates/goo-memory-capi/tests/c").join(name);
    let exe = out_dir().join(format!(
        "{}{}{}",
        name.trim_end_matches(".c"),
        if cxx { "-cxx" } else { "" },
        if sanitize() { "-asan" } else { "" }
    ));
    let mut cmd = Command::new(compiler(cxx));
    if sanitize() {
        cmd.args(["-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-fno-omit-frame-pointer"]);
    }
    if cxx {
        cmd.args(["-x", "c++", "-std=c++17"]);
    } else {
        cmd.arg("-std=c11");
    }
    cmd.args(["-Wall", "-Wextra", "-Werror", "-pedantic", "-g", "-O1"])
        .arg("-I")
        .arg(root().join("include"))
        .args(layout_defines())
        .arg(&src)
        .args(["-x", "none"]) // what follows is not C++ source
        .arg("-o")
        .arg(&exe)
        .arg(lib_dir().join("libgoo_memory.a"))
        .args(["-lpthread", "-ldl", "-lm", "-lrt", "-lgcc_s", "-lutil"]);
    let out = cmd.output().expect("run the C compiler");
    assert!(
        out.status.success(),
        "compiling {name} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    exe
}

fn run(exe: &Path) {
    let valgrind = std::env::var("GOO_VALGRIND").is_ok_and(|v| v == "1");
    let mut cmd = if valgrind {
        let mut c = Command::new("valgrind");
        c.args([
            "--error-exitcode=1",
            "--leak-check=full",
            "--errors-for-leak-kinds=definite,indirect,possible",
            "-q",
        ]);
        // Known, benign reports from mimalloc's start-up (see the file).
        c.arg(format!(
            "--suppressions={}",
            root().join("crates/goo-memory-capi/tests/valgrind.supp").display()
        ));
        c.arg(exe);
        c
    } else {
        Command::new(exe)
    };
    if sanitize() {
        // The tests ask for impossible sizes on purpose: the C library's NULL is the answer
        // they check, not an ASan report.
        cmd.env("ASAN_OPTIONS", "allocator_may_return_null=1:detect_leaks=1:abort_on_error=0")
            .env("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1");
    }
    let out = cmd.output().expect("run the C test");
    assert!(
        out.status.success(),
        "{} failed ({}):\n{}{}",
        exe.display(),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn build_and_run(name: &str) {
    run(&build(name, false));
}

/// Every `tests/c/test_*.c`, built as C11 and run (two at a time). New C tests only need a file.
#[test]
fn c_programs() {
    let dir = root().join("crates/goo-memory-capi/tests/c");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with("test_") && n.ends_with(".c"))
        .collect();
    names.sort();
    assert!(names.len() >= 5, "C tests not found in {}", dir.display());
    let failures: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = names
            .chunks(names.len().div_ceil(2))
            .map(|chunk| {
                s.spawn(move || {
                    chunk
                        .iter()
                        .filter_map(|n| {
                            std::panic::catch_unwind(|| build_and_run(n))
                                .err()
                                .map(|e| e.downcast_ref::<String>().cloned().unwrap_or_else(|| n.clone()))
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles.into_iter().flat_map(|h| h.join().unwrap()).collect()
    });
    assert!(failures.is_empty(), "C test failures:\n{}", failures.join("\n"));
}

/// The spec's example and the whole modern API also compile and run as C++.
#[test]
fn cxx_basic() {
    run(&build("test_basic.c", true));
}

/// A use of each macro the headers define, compiled after each header that makes it visible:
/// a macro must work with only the header that offers it (no function it expands to may be
/// left undeclared).
const MACRO_USES: &[(&str, &str)] = &[
    ("GOO_SCOPED", "{ GOO_SCOPED void* p = 0; (void)p; }"),
    ("GOO_SCOPE_ALLOC", "{ GOO_SCOPE_ALLOC(buf, 16); (void)buf; }"),
    ("GOO_WITH_SCOPE", "{ GOO_WITH_SCOPE(s); (void)s; }"),
    ("GOO_ALLOC_HERE", "{ void* p = GOO_ALLOC_HERE(0, 16); (void)p; }"),
    ("GOO_FREE_HERE", "{ GOO_FREE_HERE(0, 0, 0); }"),
];

/// Each header compiles on its own, as C and as C++, with every macro it offers expanded.
#[test]
fn headers_stand_alone() {
    let include = root().join("include");
    let headers = all_headers();
    assert!(headers.len() >= 3);
    for path in &headers {
        let text = std::fs::read_to_string(path).unwrap();
        for line in text.lines() {
            let Some(rest) = line.trim_start().strip_prefix("#define ") else { continue };
            let name: String = rest.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
            let guard = name.ends_with("_H") && rest.trim() == name;
            assert!(
                guard || MACRO_USES.iter().any(|(m, _)| *m == name),
                "{}: macro {name} has no use in MACRO_USES",
                path.display()
            );
        }
    }
    let uses: String =
        MACRO_USES.iter().map(|(name, code)| format!("#ifdef {name}\n    {code}\n#endif\n")).collect();
    for path in headers {
        let header = path.strip_prefix(&include).unwrap().display().to_string();
        let source = format!("#include \"{header}\"\nvoid goo_header_test_uses(void);\nvoid goo_header_test_uses(void) {{\n{uses}}}\n");
        for cxx in [false, true] {
            let out = Command::new(compiler(cxx))
                .args(if cxx { ["-x", "c++", "-std=c++11"] } else { ["-x", "c", "-std=c11"] })
                .args(["-Wall", "-Wextra", "-Werror", "-pedantic", "-fsyntax-only", "-I"])
                .arg(root().join("include"))
                .arg("-")
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .and_then(|mut child| {
                    use std::io::Write;
                    child.stdin.take().unwrap().write_all(source.as_bytes())?;
                    child.wait_with_output()
                })
                .unwrap();
            assert!(out.status.success(), "{header} (c++: {cxx}):\n{}", String::from_utf8_lossy(&out.stderr));
        }
    }
}

/// Every header under include/.
fn all_headers() -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![root().join("include")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "h") {
                found.push(path);
            }
        }
    }
    found.sort();
    found
}

/// Functions declared in the headers.
fn header_functions() -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    {
        for path in all_headers() {
            let text = std::fs::read_to_string(&path).unwrap();
            for line in text.lines() {
                let line = line.trim_start();
                if line.starts_with("typedef") || line.starts_with("#") || line.starts_with("/*") {
                    continue;
                }
                // A declaration: `type name(args...);` with name starting with goo_.
                if let Some(open) = line.find("goo_").filter(|_| line.contains('(')) {
                    let rest = &line[open..];
                    let end = rest.find('(').unwrap_or(0);
                    let name = &rest[..end];
                    if !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                        names.insert(name.to_string());
                    }
                }
            }
        }
    }
    names
}

/// The header and the shared library declare and export the same functions: nothing missing,
/// nothing undocumented.
#[test]
fn headers_match_exports() {
    let so = lib_dir().join("libgoo_memory.so");
    let out = Command::new("nm").args(["-D", "--defined-only"]).arg(&so).output().expect("nm");
    assert!(out.status.success());
    let exported: BTreeSet<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().nth(2))
        .filter(|n| n.starts_with("goo_"))
        .map(str::to_string)
        .collect();
    let declared = header_functions();
    let missing: Vec<_> = declared.difference(&exported).collect();
    let undeclared: Vec<_> = exported.difference(&declared).collect();
    assert!(missing.is_empty(), "declared in headers but not exported: {missing:?}");
    assert!(undeclared.is_empty(), "exported but not declared in a header: {undeclared:?}");
}

/// The debug allocator finds a request's site as the return address out of the outermost entry
/// point on the stack: every exported function must be in its list (beside the library's functions
/// an entry point may reach by a tail call: the guarded slow paths and the dispatch's out-of-line
/// fast paths).
#[test]
fn debug_entry_points_are_the_exports() {
    let so = lib_dir().join("libgoo_memory.so");
    let out = Command::new("nm").args(["-D", "--defined-only"]).arg(&so).output().expect("nm");
    assert!(out.status.success());
    let exported: BTreeSet<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().nth(2))
        .filter(|n| n.starts_with("goo_"))
        .map(str::to_string)
        .collect();
    let listed: Vec<(&str, usize)> = goo_memory::debug::entry_points();
    let names: BTreeSet<String> =
        listed.iter().map(|(n, _)| n.to_string()).filter(|n| n.starts_with("goo_")).collect();
    assert_eq!(names, exported, "the debug allocator's entry points and the exports differ");
    let entry_points = listed.iter().filter(|(n, _)| n.starts_with("goo_")).count();
    assert_eq!(entry_points, exported.len(), "no name twice");
    assert!(listed.len() > entry_points, "the functions between entry points and the program's code");
    assert!(listed.iter().all(|(_, start)| *start != 0));
}

/// pkg-config finds the library and headers of the build tree, and the shared library links.
#[test]
fn pkg_config_and_shared_library() {
    let pc_dir = profile_dir();
    let flags = Command::new("pkg-config")
        .env("PKG_CONFIG_PATH", &pc_dir)
        .arg(format!("--define-variable=libdir={}", lib_dir().display()))
        .args(["--cflags", "--libs", "goo-memory"])
        .output()
        .expect("pkg-config");
    assert!(flags.status.success(), "{}", String::from_utf8_lossy(&flags.stderr));
    let flags = String::from_utf8(flags.stdout).unwrap();
    let exe = out_dir().join("spec_example_shared");
    let src = root().join("crates/goo-memory-capi/tests/c/test_basic.c");
    let status = Command::new(compiler(false))
        .args(["-std=c11", "-Wall", "-Wextra", "-Werror"])
        .arg(&src)
        .args(flags.split_whitespace())
        .arg(format!("-Wl,-rpath,{}", lib_dir().display()))
        .arg("-o")
        .arg(&exe)
        .status()
        .unwrap();
    assert!(status.success());
    run(&exe);
}
