#!/usr/bin/env python3
"""Checks that every public type of the core crate (struct, enum, union, trait, type alias, as
rustdoc shows them: `#[doc(hidden)]` and `pub(crate)` items are not part of the Rust API) has a
doc example that `cargo test --doc` compiles and runs: a code block without `ignore`, `no_run`,
`compile_fail` or `text`. Reads rustdoc's JSON output, which needs a nightly toolchain.
Usage: scripts/check-doc-examples.py [rustdoc JSON file] (default: build it with
`cargo +nightly rustdoc`). Exits 1 and names each type without one."""
import json
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
KINDS = ("struct", "enum", "union", "trait", "type_alias")
# A code block's info string may carry these and still be compiled and run.
RUNS = {"rust", "should_panic", "edition2018", "edition2021", "edition2024"}
# Types whose example may be compiled only, and why.
COMPILED_ONLY = {
    # A `#[global_allocator]` replaces the doctest program's own; tests/global.rs runs it.
    "goo_memory_core::bridge::GooGlobal",
}
FENCE = re.compile(r"^[ \t]*(```+|~~~+)[ \t]*([^\n`]*)$", re.M)


def examples(docs: str) -> list[set[str]]:
    """The info-string tags of each fenced code block in `docs`."""
    blocks, opening = [], None
    for m in FENCE.finditer(docs or ""):
        if opening is None:
            opening = m.group(1)
            blocks.append({t for t in re.split(r"[\s,]+", m.group(2).strip()) if t})
        elif m.group(1).startswith(opening[0]) and len(m.group(1)) >= len(opening) and not m.group(2).strip():
            opening = None
    return blocks


def main() -> int:
    if len(sys.argv) > 1:
        doc_json = Path(sys.argv[1])
    else:
        target = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
        subprocess.run(
            ["cargo", "+nightly", "rustdoc", "-q", "-p", "goo-memory-core", "--all-features", "--",
             "-Z", "unstable-options", "--output-format", "json"],
            cwd=ROOT, check=True,
        )
        doc_json = target / "doc" / "goo_memory_core.json"
    doc = json.loads(doc_json.read_text(encoding="utf-8"))
    missing, checked = [], 0
    for item_id, path in doc["paths"].items():
        item = doc["index"].get(item_id)
        if path["crate_id"] != 0 or path["kind"] not in KINDS or item is None:
            continue
        checked += 1
        name = "::".join(path["path"])
        blocks = examples(item.get("docs") or "")
        if any(tags <= RUNS for tags in blocks):
            continue
        if name in COMPILED_ONLY and any(tags <= RUNS | {"no_run"} for tags in blocks):
            continue
        missing.append(f"{path['kind']} {name}")
    for m in sorted(missing):
        print(f"no running doc example: {m}")
    print(f"check-doc-examples: {checked - len(missing)} of {checked} public types have one")
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main())
