#!/usr/bin/env python3
"""Checks that the project's Markdown files parse as their authors meant (CommonMark, with
markdown-it-py): every code fence is closed (an unclosed one swallows the rest of the file as
code), every line that looks like a heading outside a code block is one, and every table row
has as many cells as its header. Usage: scripts/check-markdown.py [FILE.md ...] (default: the
README files). Exits 1 and names each problem."""
import re
import sys
from pathlib import Path

from markdown_it import MarkdownIt

ROOT = Path(__file__).resolve().parent.parent
DEFAULT = ["README.md", "CHANGELOG.md", "crates/goo-memory-core/README.md", "crates/goo-memory-capi/README.md"]


def check(path: Path) -> list[str]:
    text = path.read_text(encoding="utf-8")
    lines = text.split("\n")
    md = MarkdownIt("commonmark").enable("table")
    tokens = md.parse(text)
    problems = []
    code_lines = set()
    for t in tokens:
        if t.type in ("fence", "code_block") and t.map:
            start, end = t.map
            code_lines.update(range(start, end))
            if t.type == "fence":
                closing = lines[end - 1].strip() if end - 1 > start else ""
                if not (closing.startswith(t.markup) and closing.strip(t.markup[0]) == ""):
                    problems.append(f"{path}:{start + 1}: code fence {t.markup}{t.info} is never closed")
                for j in range(start + 1, end - 1):
                    if lines[j].lstrip().startswith(t.markup):
                        problems.append(
                            f"{path}:{j + 1}: {lines[j].strip()[:30]!r} does not close the code block opened "
                            f"at line {start + 1} (a closing fence has nothing after it), which runs on to line {end}"
                        )
    headings = {t.map[0] for t in tokens if t.type == "heading_open" and t.map}
    for i, line in enumerate(lines):
        if re.match(r"^#{1,6} \S", line) and i not in code_lines and i not in headings:
            problems.append(f"{path}:{i + 1}: looks like a heading but is not one: {line!r}")
    # Tables: markdown-it drops a row's extra cells silently; count them in the source.
    for t in tokens:
        if t.type == "table_open" and t.map:
            start, end = t.map
            width = len(split_row(lines[start]))
            for j in range(start, end):
                if lines[j].strip() and len(split_row(lines[j])) != width:
                    problems.append(f"{path}:{j + 1}: table row has {len(split_row(lines[j]))} cells, the header {width}")
    return problems


def split_row(line: str) -> list[str]:
    # Cells are split on unescaped pipes outside code spans.
    cells, cell, code, prev = [], "", False, ""
    for ch in line.strip().strip("|") if line.strip().startswith("|") else line.strip():
        if ch == "`":
            code = not code
        if ch == "|" and not code and prev != "\\":
            cells.append(cell)
            cell = ""
        else:
            cell += ch
        prev = ch
    cells.append(cell)
    return cells


def main() -> int:
    files = [Path(f) for f in sys.argv[1:]] or [ROOT / f for f in DEFAULT if (ROOT / f).exists()]
    problems = [p for f in files for p in check(f)]
    for p in problems:
        print(p, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
