#!/usr/bin/env bash
# Replays the allocation traces of real programs (scripts/record-traces.sh records them when
# missing) through glibc malloc, mimalloc and goo-memory's C ABI, interleaved in rounds (median
# of per-round ratios), with each contender's peak RSS: crates/goo-bench/c/trace/replay.c.
# Like scripts/bench-c.sh it links libgoo_memory.a and the static, mi_-prefixed mimalloc of the
# libmimalloc-sys build, and refuses a build where anything replaces glibc's malloc.
# Arguments go to the driver: [--rounds N] (default 7). Run from anywhere.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p goo-memory-capi -p goo-bench
target="${CARGO_TARGET_DIR:-target}/release"
traces="${CARGO_TARGET_DIR:-target}/traces"
lib="$target/libgoo_memory.a"
mimalloc_a=$(ls -t "$target"/build/libmimalloc-sys-*/out/libmimalloc.a 2>/dev/null | head -n 1 || true)
[ -n "$mimalloc_a" ] || { echo "bench-traces: no libmimalloc.a" >&2; exit 1; }
for a in "$mimalloc_a" "$lib"; do
  if nm -g --defined-only "$a" 2>/dev/null | grep -wE '[TW] (malloc|free|calloc|realloc)' >/dev/null; then
    echo "bench-traces: $a defines malloc/free; refusing" >&2; exit 1
  fi
done
[ -f "$traces/jq.trace" ] || scripts/record-traces.sh
exe="$target/goo-bench-traces"
libs_private=$(sed -n 's/^Libs.private: *//p' "$target/goo-memory.pc")
# shellcheck disable=SC2086
gcc -std=c11 -O2 -Wall -Wextra -Werror -fPIE -pie -Iinclude -Icrates/goo-bench/c/trace \
    crates/goo-bench/c/trace/replay.c "$lib" "$mimalloc_a" $libs_private -o "$exe"
if ! nm -D "$exe" | grep -E '^ +U malloc(@|$)' >/dev/null; then
  echo "bench-traces: $exe does not take malloc from a shared libc" >&2; exit 1
fi
echo "# goo-memory trace replay ($(date -u +%Y-%m-%d), load: $(cut -d' ' -f1-3 /proc/loadavg))"
[ -n "${GOO_HEAP:-}" ] && echo "note: GOO_HEAP=$GOO_HEAP"
# One process per trace: each trace's peak RSS is measured in children of a parent that has
# replayed nothing yet.
for trace in python3 cc1 jq; do
  "$exe" "$@" "$traces/$trace.trace"
done
