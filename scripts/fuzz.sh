#!/usr/bin/env bash
# Runs every cargo-fuzz target (fuzz/fuzz_targets/) for a bounded time each and prints how many
# inputs libFuzzer executed. Usage: scripts/fuzz.sh [SECONDS]   (per target; default 60)
#
# Needs the nightly toolchain (cargo fuzz builds with AddressSanitizer); installs cargo-fuzz if
# it is missing. Each run starts from the corpus earlier runs left in fuzz/corpus/<target>/ and
# keeps growing it; a crash leaves its input in fuzz/artifacts/<target>/ (replay it with
# `cargo +nightly fuzz run <target> <file>`, print it with `cargo +nightly fuzz fmt <target>
# <file>`) and makes the script exit non-zero. Full logs: fuzz/logs/<target>.log.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1

seconds="${1:-60}"
case "$seconds" in
  '' | *[!0-9]*) echo "usage: $0 [SECONDS]" >&2; exit 2 ;;
esac
rustup toolchain list | grep -q '^nightly' || {
  echo "needs the nightly toolchain: rustup toolchain install nightly" >&2
  exit 1
}
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked || exit 1

mkdir -p fuzz/logs
status=0
summary=()
for target in $(cargo +nightly fuzz list); do
  log="fuzz/logs/$target.log"
  echo "=== $target: ${seconds} s ==="
  # Whole operation sequences from the start (-len_control=0): a sequence needs a few dozen
  # bytes per operation, and the interesting ones are long. The library's own messages about
  # the misuse the targets try on purpose ("goo-memory: ... refused") are left out of the log.
  cargo +nightly fuzz run "$target" -- -max_total_time="$seconds" -len_control=0 -max_len=2048 \
    -print_final_stats=1 2>&1 | grep -v '^goo-memory: ' >"$log"
  rc=${PIPESTATUS[0]}
  execs=$(sed -n 's/^stat::number_of_executed_units: *\([0-9]*\).*/\1/p' "$log" | tail -n 1)
  if [ "$rc" -eq 0 ]; then
    result="no failure"
  else
    result="FAILED (exit $rc): see $log and fuzz/artifacts/$target/"
    status=1
    grep -m 1 -A 3 'panicked at\|ERROR: AddressSanitizer\|ERROR: libFuzzer' "$log" || tail -n 20 "$log"
  fi
  summary+=("$target: ${execs:-?} executions in ${seconds} s, $result")
  grep '^#[0-9]*.*DONE\|^Done ' "$log" || true
done

echo
echo "=== summary ==="
printf '%s\n' "${summary[@]}"
exit "$status"
