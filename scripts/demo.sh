#!/usr/bin/env bash
# Builds libgoo_memory (release), links examples/demo.c against it with pkg-config, runs it.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p goo-memory-capi
export PKG_CONFIG_PATH="$PWD/target/release${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}"
mkdir -p target/demo
cc -std=c11 -Wall -Wextra -Werror examples/demo.c $(pkg-config --cflags --libs goo-memory) \
   -Wl,-rpath,"$PWD/target/release" -o target/demo/demo
./target/demo/demo
