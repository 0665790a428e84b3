#!/usr/bin/env python3
"""Rust programs with GooGlobal as their global allocator, against Rust's system allocator and
the mimalloc crate, measured in the same run (issue #19). Builds the three binaries of
crates/goo-bench/src/bin/rust_global_*.rs (the same workloads, crates/goo-bench/src/
global_workloads.rs, under three `#[global_allocator]`s) with `cargo build --release`, which
respects CARGO_TARGET_DIR, and checks that none of them replaces C's malloc. Then, for each
round and each workload (json, parser, strings, threads), runs the three as separate processes
in an order that rotates each round; each process warms up once and times REPS runs.

Prints, per workload, a Markdown table (median ms per run, the median of the per-round ratios
to the system allocator and to mimalloc, the median peak RSS) and a `goal:` line for GooGlobal;
goals are reported, never enforced. Fails if the three binaries' checksums differ for a workload
(they would not have done the same work) or if a binary fails.

Usage: scripts/bench-rust-global.py [--rounds N] [--scale S] [--reps R] [--quick]
(--quick: scale 100, 2 rounds, 1 rep, to check that everything runs; its times mean little).
Run from anywhere; GOO_HEAP must be unset or "heap", or GooGlobal would be glibc's malloc."""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORKLOADS = ["json", "parser", "strings", "threads"]
# (name in the tables, binary); the first is the baseline of every ratio.
CONTENDERS = [("system", "rust_global_system"), ("GooGlobal", "rust_global_goo"), ("mimalloc", "rust_global_mimalloc")]
BASELINE, SUBJECT, PEER = "system", "GooGlobal", "mimalloc"
# Issue #19's goals for GooGlobal: a tenth faster than the system allocator, as fast as mimalloc.
GOAL_VS_SYSTEM = 0.90
GOAL_VS_PEER = 1.00
# About 50-150 ms per run with the system allocator (one unit of scale is about 50 us of work
# in every workload; see global_workloads.rs).
DEFAULT_SCALE = 2000
DEFAULT_ROUNDS = 7
DEFAULT_REPS = 3
QUICK_SCALE, QUICK_ROUNDS, QUICK_REPS = 100, 2, 1


def fail(message: str) -> None:
    sys.exit(f"bench-rust-global: {message}")


def build() -> dict[str, Path]:
    """Builds the three binaries; returns each one's path as cargo reports it (so that
    CARGO_TARGET_DIR and any cargo configuration are respected)."""
    bins = [b for _, b in CONTENDERS]
    command = ["cargo", "build", "--release", "-p", "goo-bench", "--message-format=json-render-diagnostics"]
    for b in bins:
        command += ["--bin", b]
    # Diagnostics and progress go to stderr as usual; stdout carries cargo's JSON messages.
    result = subprocess.run(command, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    if result.returncode != 0:
        fail(f"{' '.join(command)} failed with status {result.returncode}")
    executables = {}
    for line in result.stdout.splitlines():
        message = json.loads(line)
        if message.get("reason") == "compiler-artifact" and message.get("executable"):
            name = message["target"]["name"]
            if name in bins:
                executables[name] = Path(message["executable"])
    missing = [b for b in bins if b not in executables]
    if missing:
        fail(f"cargo reported no executable for {', '.join(missing)}")
    return executables


def check_malloc_is_glibcs(executables: dict[str, Path]) -> None:
    """Each binary must take malloc from the shared C library: a binary that defines it (the
    mimalloc crate's "override" feature would) replaces the system allocator, the baseline."""
    if shutil.which("nm") is None:
        fail("nm (binutils) is needed to check that no binary replaces malloc")
    for name, exe in executables.items():
        symbols = subprocess.run(["nm", "-D", "--undefined-only", str(exe)], capture_output=True, text=True)
        undefined = {line.split()[-1].split("@")[0] for line in symbols.stdout.splitlines() if line.strip()}
        if symbols.returncode != 0 or "malloc" not in undefined:
            fail(f"{exe} does not take malloc from a shared C library: {name} may replace it; refusing")


def run(exe: Path, workload: str, scale: int, reps: int) -> dict[str, int]:
    """One process: `ns`, `checksum`, `maxrss_kib` (and `allocations` for GooGlobal)."""
    command = [str(exe), workload, str(scale), str(reps)]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        fail(f"{' '.join(command)} exited with status {result.returncode}:\n{result.stdout}{result.stderr}")
    try:
        fields = {k: int(v) for k, v in (item.split("=", 1) for item in result.stdout.split())}
    except ValueError:
        fail(f"{' '.join(command)} printed an unexpected line: {result.stdout!r}")
    for key in ("ns", "checksum", "maxrss_kib"):
        if key not in fields:
            fail(f"{' '.join(command)} printed no {key}=: {result.stdout!r}")
    return fields


def machine() -> str:
    """The CPU model and the core count."""
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} cores"


def load() -> str:
    try:
        return Path("/proc/loadavg").read_text().strip()
    except OSError:
        return "unknown"


def verdict(ratio: float, goal: float) -> str:
    return "goal met" if ratio <= goal else "goal missed"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, help=f"rounds (default {DEFAULT_ROUNDS})")
    parser.add_argument("--scale", type=int, help=f"input size of every workload (default {DEFAULT_SCALE})")
    parser.add_argument("--reps", type=int, help=f"timed runs per process (default {DEFAULT_REPS})")
    parser.add_argument("--quick", action="store_true", help="small scale, 2 rounds: checks that everything runs")
    args = parser.parse_args()
    scale = args.scale or (QUICK_SCALE if args.quick else DEFAULT_SCALE)
    rounds = args.rounds or (QUICK_ROUNDS if args.quick else DEFAULT_ROUNDS)
    reps = args.reps or (QUICK_REPS if args.quick else DEFAULT_REPS)
    if min(scale, rounds, reps) < 1:
        fail("--scale, --rounds and --reps must be at least 1")
    if os.environ.get("GOO_HEAP", "") not in ("", "heap"):
        fail(f"GOO_HEAP={os.environ['GOO_HEAP']} would make GooGlobal use the system allocator; unset it")

    executables = build()
    check_malloc_is_glibcs(executables)

    print("# Rust programs with GooGlobal as the global allocator, against System and mimalloc")
    print()
    print(f"machine: {machine()}; load (/proc/loadavg) before: {load()}")
    print(
        f"{rounds} rounds x {len(WORKLOADS)} workloads x {len(CONTENDERS)} processes in rotating order; "
        f"scale {scale}; each process: 1 warm-up run, then {reps} timed; "
        "ratio = median of the per-round ratios of time per run"
    )

    # ms per run, peak RSS and (GooGlobal) allocations per run, by workload and contender, one
    # entry per round.
    ms = {w: {c: [] for c, _ in CONTENDERS} for w in WORKLOADS}
    rss = {w: {c: [] for c, _ in CONTENDERS} for w in WORKLOADS}
    allocations_per_run = {w: [] for w in WORKLOADS}
    checksums: dict[str, tuple[str, int]] = {}
    for round_index in range(rounds):
        print(f"round {round_index + 1}/{rounds}", file=sys.stderr, flush=True)
        for workload in WORKLOADS:
            k = round_index % len(CONTENDERS)
            for name, binary in CONTENDERS[k:] + CONTENDERS[:k]:
                fields = run(executables[binary], workload, scale, reps)
                first = checksums.setdefault(workload, (name, fields["checksum"]))
                if fields["checksum"] != first[1]:
                    fail(
                        f"{workload}: checksum {fields['checksum']} from {name} but {first[1]} from {first[0]}: "
                        "the binaries did not do the same work"
                    )
                ms[workload][name].append(fields["ns"] / reps / 1e6)
                rss[workload][name].append(fields["maxrss_kib"])
                if name == SUBJECT:
                    if "allocations" not in fields:
                        fail(f"{binary} printed no allocations=")
                    allocations_per_run[workload].append(fields["allocations"] / (reps + 1))

    for workload in WORKLOADS:
        times = ms[workload]

        def ratio(name: str, to: str) -> float:
            return statistics.median(a / b for a, b in zip(times[name], times[to]))

        print()
        print(f"## {workload} (scale {scale}, checksum {checksums[workload][1]})")
        print()
        print(f"| contender | ms per run (median) | vs {BASELINE} | vs {PEER} | peak RSS KiB (median) |")
        print("|---|---:|---:|---:|---:|")
        for name, _ in CONTENDERS:
            print(
                f"| {name} | {statistics.median(times[name]):.1f} | {ratio(name, BASELINE):.2f}x | "
                f"{ratio(name, PEER):.2f}x | {statistics.median(rss[workload][name]):.0f} |"
            )
        print()
        print(f"{SUBJECT}'s stats: about {statistics.median(allocations_per_run[workload]):,.0f} allocations per run")
        vs_system, vs_peer = ratio(SUBJECT, BASELINE), ratio(SUBJECT, PEER)
        print(
            f"goal: {SUBJECT}, {workload}: {vs_system:.2f}x the system allocator (goal <= {GOAL_VS_SYSTEM:.2f}x) "
            f"{verdict(vs_system, GOAL_VS_SYSTEM)}; {vs_peer:.2f}x mimalloc (goal <= {GOAL_VS_PEER:.2f}x) "
            f"{verdict(vs_peer, GOAL_VS_PEER)}"
        )
    print()
    print(f"load (/proc/loadavg) after: {load()}")


if __name__ == "__main__":
    main()
