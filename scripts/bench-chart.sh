#!/usr/bin/env bash
# Runs both benchmarks (the C driver, scripts/bench-c.sh, for the C-ABI figures; the Rust
# harness, goo-bench, for the Rust API), keeps their results as JSON in target/bench/, and
# draws the peer comparison into docs/benchmarks.svg (or the file GOO_BENCH_SVG names).
# Arguments: [--quick]. Run from anywhere, on a quiet machine (the figures are the README's).
set -euo pipefail
cd "$(dirname "$0")/.."
quick=()
for a in "$@"; do
  case "$a" in
    --quick) quick=(--quick) ;;
    *) echo "usage: scripts/bench-chart.sh [--quick]" >&2; exit 2 ;;
  esac
done
target="${CARGO_TARGET_DIR:-target}"
out="$target/bench"
mkdir -p "$out"
svg="${GOO_BENCH_SVG:-docs/benchmarks.svg}"
scripts/bench-c.sh "${quick[@]}" --json "$out/c.json"
cargo build --release -p goo-bench
"$target/release/goo-bench" "${quick[@]}" --json "$out/rust.json"
"$target/release/goo-bench" chart --svg "$svg" "$out/c.json" "$out/rust.json"
echo "bench-chart: $svg (results in $out/c.json, $out/rust.json)"
