//! Writes `goo-memory.pc` next to the built libraries, for pkg-config users of the build tree.
use std::path::PathBuf;

fn main() {
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap());
    // OUT_DIR is <target>/<profile>/build/<pkg>-<hash>/out
    let profile_dir = out.ancestors().nth(3).unwrap().to_path_buf();
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap()).join("../..");
    let root = root.canonicalize().unwrap();
    let version = std::env::var("CARGO_PKG_VERSION").unwrap();
    let pc = format!(
        "prefix={root}\nincludedir=${{prefix}}/include\nlibdir={lib}\n\n\
         Name: goo-memory\nDescription: Goo runtime memory management: pluggable allocators, stats, OOM strategies\n\
         Version: {version}\nCflags: -I${{includedir}}\nLibs: -L${{libdir}} -lgoo_memory\n\
         Libs.private: -lpthread -ldl -lm -lrt -lgcc_s -lutil -lc\n",
        root = root.display(),
        lib = profile_dir.display(),
    );
    std::fs::write(profile_dir.join("goo-memory.pc"), pc).unwrap();
    println!("cargo:rerun-if-changed=build.rs");
}
