#!/usr/bin/env bash
# Builds libgoo_memory (release), links examples/demo.c against it with pkg-config, runs it.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p goo-memory-capi
# Cargo resolves a relative CARGO_TARGET_DIR against the directory it runs in: this one.
target=$(cd "${CARGO_TARGET_DIR:-target}" && pwd)
export PKG_CONFIG_PATH="$target/release${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}"
mkdir -p "$target/demo"
# The rpath is the README's build-tree recipe: target/release is not on the loader's path,
# and the program looks for the library by its SONAME, libgoo_memory.so.0.<minor>, which the
# build script links to libgoo_memory.so there.
# shellcheck disable=SC2046 # pkg-config prints several words
cc -std=c11 -Wall -Wextra -Werror examples/demo.c $(pkg-config --cflags --libs goo-memory) \
   -Wl,-rpath,"$(pkg-config --variable=libdir goo-memory)" -o "$target/demo/demo"
"$target/demo/demo"
