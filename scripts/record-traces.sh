#!/usr/bin/env bash
# Records the allocation traces that scripts/bench-traces.sh replays, into
# ${CARGO_TARGET_DIR:-target}/traces/ (too large for git: 30-200 MB each, so they are re-recorded
# here, deterministically up to the programs' own address-dependent behaviour). Each trace is one
# real program run on real input from this machine, under the LD_PRELOAD recorder
# (crates/goo-bench/c/trace/recorder.c):
#   python3  an interpreter: parses every module of its own standard library's json, email,
#            http and asyncio packages into ASTs and compiles them (PYTHONMALLOC=malloc, so its
#            small objects reach malloc instead of its own pymalloc arenas)
#   cc1      a compiler: gcc -O2 -c of this repository's C benchmark driver (the cc1 process)
#   jq       a data tool: groups the first 40,000 lines of the Python standard library's .py
#            files by their first word and ranks the groups (jq -R -s)
# Provenance (program versions, inputs) is written to traces/PROVENANCE beside them.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${CARGO_TARGET_DIR:-target}/traces"
mkdir -p "$out"
rec="$(realpath "$out")/goo-trace-recorder.so"
gcc -std=c11 -O2 -Wall -Wextra -Werror -fPIC -shared crates/goo-bench/c/trace/recorder.c -o "$rec" -lpthread

pylib=$(python3 -c 'import sysconfig; print(sysconfig.get_paths()["stdlib"])')
# The interpreter itself (a launcher such as pyenv's shim is a shell script that would be traced
# instead).
python=$(python3 -c 'import sys; print(sys.executable)')
GOO_TRACE_OUT="$out/python3.trace" PYTHONMALLOC=malloc LD_PRELOAD="$rec" "$python" - "$pylib" <<'PY'
import ast, pathlib, sys
root = pathlib.Path(sys.argv[1])
for pkg in ["json", "email", "http", "asyncio"]:
    for f in sorted((root / pkg).glob("*.py")):
        src = f.read_text()
        tree = ast.parse(src)
        compile(tree, str(f), "exec")
PY

# cc1 alone: gcc runs it as a child, so trace the child by recording cc1 directly.
cc1=$(gcc -print-prog-name=cc1)
incs=$(gcc -E -Wp,-v -x c /dev/null 2>&1 | sed -n 's/^ \(\/.*\)/-isystem \1/p' | tr '\n' ' ')
# shellcheck disable=SC2086
GOO_TRACE_OUT="$out/cc1.trace" LD_PRELOAD="$rec" "$cc1" -quiet -O2 -std=c11 -Iinclude $incs \
    crates/goo-bench/c/driver.c -o /dev/null

find "$pylib" -name '*.py' -print0 | sort -z | xargs -0 cat | { head -n 40000; cat > /dev/null; } > "$out/jq-input.txt"
GOO_TRACE_OUT="$out/jq.trace" LD_PRELOAD="$rec" jq -R -s \
    'split("\n") | map(select(length > 0)) | group_by(ltrimstr(" ") | split(" ")[0])
     | map({word: (.[0] | ltrimstr(" ") | split(" ")[0]), lines: length}) | sort_by(-.lines) | .[:20]' \
    "$out/jq-input.txt" > /dev/null

{
  echo "recorded $(date -u +%Y-%m-%dT%H:%MZ) by scripts/record-traces.sh on $(uname -sr)"
  echo "python3: $(python3 --version 2>&1), stdlib $pylib; json, email, http, asyncio *.py parsed and compiled"
  echo "cc1: $(gcc --version | head -n 1); gcc -O2 -c crates/goo-bench/c/driver.c"
  echo "jq: $(jq --version); the first 40,000 lines of $pylib/**/*.py (sorted paths) grouped by first word"
  ls -l "$out"/*.trace
} > "$out/PROVENANCE"
cat "$out/PROVENANCE"
