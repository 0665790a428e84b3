#!/usr/bin/env bash
# The C benchmark driver (crates/goo-bench/c/driver.c): builds libgoo_memory.a and mimalloc's
# static library (through goo-bench's libmimalloc-sys dependency), compiles the driver with gcc
# against them and the public headers, checks that no mimalloc shared object is linked (it would
# replace glibc's malloc, the peer), and runs it. Arguments go to the driver: [--quick] [--rounds N].
# GOO_BENCH_PROFILE=profiling builds the same code with line tables (target/profiling/), for
# perf, callgrind or objdump -S on the driver; the default, release, has no debug info.
# Run from anywhere.
set -euo pipefail
cd "$(dirname "$0")/.."
# (grep in the checks below writes to /dev/null rather than using -q: under pipefail, -q's
# early exit can kill the writer with SIGPIPE and turn a match into a failed pipeline.)

profile="${GOO_BENCH_PROFILE:-release}"
# The library as users get it: `make build` (what `make install` ships, with the profile's
# LTO, which `cargo build` leaves out of a crate that also emits an rlib); goo-bench for
# mimalloc's static library.
make -s build PROFILE="$profile"
cargo build --profile "$profile" -p goo-bench
# Cargo resolves a relative CARGO_TARGET_DIR against the directory it runs in: this one.
target="${CARGO_TARGET_DIR:-target}/$profile"
lib="${CARGO_TARGET_DIR:-target}/make/$profile/libgoo_memory.a"
test -f "$lib" || { echo "bench-c: missing $lib" >&2; exit 1; }

# mimalloc's static library, as libmimalloc-sys built it. Old builds can leave several
# build/libmimalloc-sys-<hash> directories: take the newest.
mimalloc_a=$(ls -t "$target"/build/libmimalloc-sys-*/out/libmimalloc.a 2>/dev/null | head -n 1 || true)
if [ -z "$mimalloc_a" ]; then
  echo "bench-c: no libmimalloc.a under $target/build/libmimalloc-sys-*/out/" >&2
  exit 1
fi

# Statically linked, a library that defines malloc or free would silently replace glibc's
# (libmimalloc-sys does with its "override" feature): refuse rather than measure the wrong peer.
for a in "$mimalloc_a" "$lib"; do
  if nm -g --defined-only "$a" 2>/dev/null | grep -wE '[TW] (malloc|free|calloc|realloc)' >/dev/null; then
    echo "bench-c: $a defines malloc/free: it would replace glibc's allocator; refusing" >&2
    exit 1
  fi
done

exe="$target/goo-bench-c"
# Link line: the static libraries after the driver, then what libgoo_memory.a needs: the
# Libs.private that crates/goo-memory-capi/build.rs wrote into the build tree's goo-memory.pc
# (gcc adds the unwinder and libc itself). -fPIE -pie (Debian's default, spelled out): the
# driver's own check reads the address it calls malloc at, which is libc's only in a PIE.
libs_private=$(sed -n 's/^Libs.private: *//p' "$(dirname "$lib")/goo-memory.pc")
debug=()
[ "$profile" = release ] || debug=(-g) # the driver's lines too, beside the library's
# shellcheck disable=SC2086 # several words
gcc -std=c11 -O2 "${debug[@]}" -Wall -Wextra -Werror -pedantic -fPIE -pie -Iinclude \
    crates/goo-bench/c/driver.c "$lib" "$mimalloc_a" $libs_private -o "$exe"

# No mimalloc shared object may be loaded, and malloc must stay undefined in the program
# (resolved from libc.so.6 at run time; the driver checks that too).
if ldd "$exe" | grep -i mimalloc >/dev/null; then
  echo "bench-c: $exe links a mimalloc shared object:" >&2; ldd "$exe" >&2; exit 1
fi
if ! nm -D "$exe" | grep -E '^ +U malloc(@|$)' >/dev/null; then
  echo "bench-c: $exe does not take malloc from a shared libc" >&2; exit 1
fi

exec "$exe" "$@"
