//! Gives `libgoo_memory.so` its SONAME and makes the build tree usable from C: writes
//! `goo-memory.pc` next to the built libraries and the `libgoo_memory.so.<soversion>` symlinks
//! that programs linked against the build tree look for at run time.
//!
//! The SONAME follows Cargo's compatibility rule, so the ABI may change exactly where the
//! crate's semver says it may: `libgoo_memory.so.<major>` from 1.0 on, and
//! `libgoo_memory.so.0.<minor>` for 0.x (0.1.x and 0.2.x are incompatible releases).
//! The root Makefile computes the same name for `make install` and checks it against the
//! built library with readelf, so the two cannot drift apart.
use std::path::{Path, PathBuf};

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let env = |k: &str| std::env::var(k).unwrap();
    let major: u64 = env("CARGO_PKG_VERSION_MAJOR").parse().unwrap();
    let minor: u64 = env("CARGO_PKG_VERSION_MINOR").parse().unwrap();
    let soversion = if major == 0 { format!("0.{minor}") } else { major.to_string() };
    let soname = format!("libgoo_memory.so.{soversion}");

    // OUT_DIR is <target>/[<triple>/]<profile>/build/<pkg>-<hash>/out; cargo writes the
    // libraries into <profile>/deps and links them into <profile>.
    let out = PathBuf::from(env("OUT_DIR"));
    let profile_dir = out.ancestors().nth(3).unwrap().to_path_buf();

    // ELF platforms only: Mach-O uses an install name, Windows DLLs have no SONAME.
    let cfg = |k: &str| std::env::var(k).unwrap_or_default();
    let elf = cfg("CARGO_CFG_TARGET_FAMILY").split(',').any(|f| f == "unix")
        && !matches!(cfg("CARGO_CFG_TARGET_OS").as_str(), "macos" | "ios" | "tvos" | "watchos" | "visionos");
    if elf {
        println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,{soname}");
        // Once loaded, the library stays (dlclose leaves it mapped): threads that used it run
        // its pthread key destructors at their exit (thread slots, the temporary arena, the
        // thread caches), which must not jump into unmapped code, and a plugin loaded and
        // unloaded again and again must not take a new pair of keys each time.
        println!("cargo:rustc-cdylib-link-arg=-Wl,-z,nodelete");
        // The library's references to its own functions bind to its own definitions: the debug
        // allocator recognises its entry points by address on the stack, and a program that
        // also carries (and exports) a static copy must not lend it its own.
        println!("cargo:rustc-cdylib-link-arg=-Wl,-Bsymbolic-functions");
        // A program linked against <dir>/libgoo_memory.so records the SONAME, not the file
        // name, so the loader looks for libgoo_memory.so.<soversion> in its rpath: give the
        // build tree that name too (dangling until the library is linked, right after this).
        for dir in [profile_dir.clone(), profile_dir.join("deps")] {
            symlink("libgoo_memory.so", &dir.join(&soname));
        }
    }

    // The build tree's pkg-config file: headers from this crate's include/ (in the repository
    // a symlink to the root's include/, in the published package a copy), libraries from this
    // profile's directory. The installed, relocatable one is written by `make install`.
    let root = PathBuf::from(env("CARGO_MANIFEST_DIR")).canonicalize().unwrap();
    let version = env("CARGO_PKG_VERSION");
    let pc = format!(
        "prefix={root}\nincludedir=${{prefix}}/include\nlibdir={lib}\n\n\
         Name: goo-memory\nDescription: Goo runtime memory management: pluggable allocators, stats, OOM strategies\n\
         Version: {version}\nCflags: -I${{includedir}}\nLibs: -L${{libdir}} -lgoo_memory\n\
         Libs.private: {private}\n",
        root = root.display(),
        lib = profile_dir.display(),
        private = LIBS_PRIVATE,
    );
    std::fs::write(profile_dir.join("goo-memory.pc"), pc).unwrap();
}

/// What a static link of `libgoo_memory.a` needs beyond the C compiler driver's defaults
/// (the root Makefile writes the same into the installed goo-memory.pc). The archive's
/// undefined symbols (`nm -u`) are libc's, the unwinder's (`_Unwind_*`, which gcc's and
/// clang's drivers take from libgcc_s or, with -static/-static-libgcc, libgcc_eh) and
/// `pthread_key_*`, which live in libpthread before glibc 2.34 (an empty stub since): so only
/// -lpthread. Naming -lgcc_s, as `rustc --print native-static-libs` does, breaks `-static`
/// links (there is no libgcc_s.a); -lm, -ldl, -lrt and -lutil provide nothing it uses.
const LIBS_PRIVATE: &str = "-lpthread";

/// Makes `link` a symlink to `target` (a name in the same directory), replacing what was there.
fn symlink(target: &str, link: &Path) {
    #[cfg(unix)]
    {
        if std::fs::read_link(link).is_ok_and(|t| t == Path::new(target)) {
            return;
        }
        let _ = std::fs::remove_file(link);
        if let Some(dir) = link.parent() {
            std::fs::create_dir_all(dir).unwrap();
        }
        std::os::unix::fs::symlink(target, link).unwrap();
    }
    #[cfg(not(unix))]
    let _ = (target, link);
}
