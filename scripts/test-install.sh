#!/usr/bin/env bash
# The install as a packager and a new user meet it: `make install DESTDIR=<tmp> PREFIX=/opt/goo-memory`
# (a staged, non-system prefix), then packaging/test/app.c built against the staged prefix
#   - with `pkg-config --cflags --libs goo-memory` and the rpath the README recommends for a
#     non-system prefix (-Wl,-rpath,$(pkg-config --variable=libdir goo-memory)),
#   - fully static with `pkg-config --static` (-static),
#   - with the archive named and the C library shared (the README's other static recipe),
#   - with CMake: find_package(goo-memory) and goo-memory::goo-memory (shared), the
#     goo-memory::goo-memory-static target, and GOO_MEMORY_STATIC=ON,
#   - from a copy of the prefix moved elsewhere (the .pc and CMake files are relocatable),
# and each program is run. Also checks the layout (SONAME, symlinks, no debug info, NODELETE),
# that the library survives being unloaded as a plugin while a thread that used it runs
# (packaging/test/plugin_host.c), and that `make uninstall` removes every file. Needs cc, make,
# pkg-config, cmake, readelf.
# Run from anywhere; CI runs it (.ci/run). Ends with "install-test: N passed, N failed".
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
cc=${CC:-cc}
for tool in "$cc" make pkg-config cmake readelf; do
  command -v "$tool" >/dev/null || { echo "test-install: $tool is missing" >&2; exit 1; }
done

work=$(mktemp -d "${TMPDIR:-/tmp}/goo-install-test.XXXXXX")
trap 'rm -rf "$work"' EXIT
stage=$work/stage
prefix=/opt/goo-memory
p=$stage$prefix

make -C "$root" install DESTDIR="$stage" PREFIX="$prefix"

version=$(sed -n 's/^Version: *//p' "$p/lib/pkgconfig/goo-memory.pc")
major=${version%%.*}
minor=${version#*.}; minor=${minor%%.*}
if [ "$major" = 0 ]; then soversion=0.$minor; else soversion=$major; fi
soname=libgoo_memory.so.$soversion

# Only the staged prefix: no sysroot rewriting, nothing from the machine's own pkg-config dirs.
unset PKG_CONFIG_SYSROOT_DIR
export PKG_CONFIG_PATH=$p/lib/pkgconfig
src=$root/packaging/test/app.c
cflags=(-std=c11 -Wall -Wextra -Werror)

passed=0 failed=0
check() {
  local name=$1; shift
  if ( set -euo pipefail; "$@" ) >"$work/$name.log" 2>&1; then
    passed=$((passed + 1)); echo "ok   $name"
  else
    failed=$((failed + 1)); echo "FAIL $name"; sed 's/^/    /' "$work/$name.log"
  fi
}
fail() { echo "$*"; return 1; }
# The program's output must be "ok" (it prints what failed otherwise).
runs() { local out; out=$("$1"); [ "$out" = ok ] || fail "$1 printed: $out"; }
needed() { readelf -d "$1" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p'; }
needs_goo() { needed "$1" | grep -Fx "$soname" >/dev/null || fail "$1 does not need $soname: $(needed "$1")"; }
needs_no_goo() { ! needed "$1" | grep libgoo_memory >/dev/null || fail "$1 needs libgoo_memory: $(needed "$1")"; }

layout() {
  local lib=$p/lib
  for f in include/goo_memory.h include/goo/core/types.h include/goo/runtime/memory.h \
           lib/libgoo_memory.a "lib/libgoo_memory.so.$version" lib/pkgconfig/goo-memory.pc \
           lib/cmake/goo-memory/goo-memory-config.cmake lib/cmake/goo-memory/goo-memory-config-version.cmake; do
    [ -f "$p/$f" ] || fail "missing $p/$f"
  done
  [ "$(readlink "$lib/libgoo_memory.so")" = "$soname" ] || fail "libgoo_memory.so -> $(readlink "$lib/libgoo_memory.so")"
  [ "$(readlink "$lib/$soname")" = "libgoo_memory.so.$version" ] || fail "$soname -> $(readlink "$lib/$soname")"
  readelf -d "$lib/libgoo_memory.so.$version" | grep -F "Library soname: [$soname]" \
    || fail "SONAME of libgoo_memory.so.$version is not $soname"
  for f in "$lib/libgoo_memory.a" "$lib/libgoo_memory.so.$version"; do
    ! readelf -S --wide "$f" | grep -E '\.debug_(info|line)' >/dev/null || fail "$f has debug info"
  done
  readelf -d "$lib/libgoo_memory.so.$version" | grep -E 'FLAGS_1.*NODELETE' >/dev/null \
    || fail "libgoo_memory.so.$version is not marked NODELETE (-z nodelete)"
  # Its references to its own functions bind inside it (-Bsymbolic-functions): no relocation
  # names a goo_ symbol, so a program's own copy cannot stand in for them.
  ! readelf -rW "$lib/libgoo_memory.so.$version" | grep -E ' goo_' >/dev/null \
    || fail "libgoo_memory.so.$version resolves its own goo_ functions through the program"
  # Relocatable: nothing installed names the staging directory or this checkout.
  ! grep -rlF -e "$stage" -e "$root" "$lib/pkgconfig" "$lib/cmake" || fail "an installed file names a build path"
}

pkgconfig_shared() {
  local libdir; libdir=$(pkg-config --variable=libdir goo-memory)
  # shellcheck disable=SC2046 # pkg-config prints several words
  "$cc" "${cflags[@]}" "$src" $(pkg-config --cflags --libs goo-memory) -Wl,-rpath,"$libdir" -o "$work/app-pc"
  needs_goo "$work/app-pc"
  ldd "$work/app-pc" | grep -F "$soname => $libdir/$soname" || fail "$(ldd "$work/app-pc")"
  runs "$work/app-pc"
}

pkgconfig_static() {
  # shellcheck disable=SC2046
  "$cc" "${cflags[@]}" -static "$src" $(pkg-config --static --cflags --libs goo-memory) -o "$work/app-pc-static"
  readelf -d "$work/app-pc-static" | grep -F 'no dynamic section' || fail "not a static executable"
  runs "$work/app-pc-static"
}

archive_shared_libc() {
  # shellcheck disable=SC2046
  "$cc" "${cflags[@]}" "$src" $(pkg-config --cflags goo-memory) \
    "$(pkg-config --variable=libdir goo-memory)/libgoo_memory.a" -lpthread -o "$work/app-archive"
  needs_no_goo "$work/app-archive"
  runs "$work/app-archive"
}

cmake_build() { # build dir, prefix, extra cmake arguments...
  local dir=$1 pfx=$2; shift 2
  cmake -S "$root/packaging/test" -B "$dir" -DCMAKE_PREFIX_PATH="$pfx" -DGOO_VERSION="$version" "$@"
  cmake --build "$dir"
}

cmake_targets() {
  cmake_build "$work/cmake" "$p"
  needs_goo "$work/cmake/app"
  needs_no_goo "$work/cmake/app_static"
  runs "$work/cmake/app"
  runs "$work/cmake/app_static"
}

cmake_static_switch() {
  cmake_build "$work/cmake-static" "$p" -DGOO_MEMORY_STATIC=ON
  needs_no_goo "$work/cmake-static/app"
  runs "$work/cmake-static/app"
}

moved_prefix() {
  local moved=$work/moved/goo
  mkdir -p "$work/moved"
  cp -a "$p" "$moved"
  local libdir; libdir=$(PKG_CONFIG_PATH=$moved/lib/pkgconfig pkg-config --variable=libdir goo-memory)
  [ "$(cd "$libdir" && pwd -P)" = "$(cd "$moved/lib" && pwd -P)" ] || fail "libdir is $libdir"
  # shellcheck disable=SC2046
  "$cc" "${cflags[@]}" "$src" $(PKG_CONFIG_PATH=$moved/lib/pkgconfig pkg-config --cflags --libs goo-memory) \
    -Wl,-rpath,"$libdir" -o "$work/app-moved"
  runs "$work/app-moved"
  cmake_build "$work/cmake-moved" "$moved"
  runs "$work/cmake-moved/app"
}

# Loaded as a plugin and unloaded while a thread that used it still runs, 600 times
# (packaging/test/plugin_host.c): no crash at the thread's exit, no pthread key taken per load.
plugin() {
  "$cc" "${cflags[@]}" "$root/packaging/test/plugin_host.c" -ldl -lpthread -o "$work/plugin_host"
  local out; out=$("$work/plugin_host" "$p/lib/libgoo_memory.so.$version")
  [ "$out" = ok ] || fail "plugin_host printed: $out"
}

uninstall() {
  make -C "$root" uninstall DESTDIR="$stage" PREFIX="$prefix"
  local left; left=$(find "$stage" ! -type d)
  [ -z "$left" ] || fail "left after uninstall: $left"
}

check layout layout
check pkg-config-shared pkgconfig_shared
check pkg-config-static pkgconfig_static
check archive-shared-libc archive_shared_libc
check cmake cmake_targets
check cmake-GOO_MEMORY_STATIC cmake_static_switch
check moved-prefix moved_prefix
check plugin plugin
check uninstall uninstall

echo "install-test: $passed passed, $failed failed"
[ "$failed" = 0 ]
