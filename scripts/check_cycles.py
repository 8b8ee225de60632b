#!/usr/bin/env python3
"""Lists dependency cycles between the Rust files of each crate under rust/ (exit 1 if any).

A file depends on another when it names an item of it: `use crate::a::b::X`, `super::x::f()`,
`self::y::Z` (grouped `use` lists are expanded). Paths resolve to the deepest module that has a
file (`a/b.rs` or `a/b/mod.rs`). `#[cfg(test)]` sections are left out: tests may reach anywhere.
A `mod.rs` is an index (declarations and `pub use` only), so reaching an item through it counts
as depending on it: import from the file that defines the item instead.

    python3 scripts/check_cycles.py                # no output and exit 0: no cycles
    python3 scripts/check_cycles.py --root DIR     # the crates under DIR instead of rust/
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent / "rust"
PATH_RE = re.compile(r"\b(crate|super|self)((?:::[A-Za-z_][A-Za-z0-9_]*)+)")


def module_of(src: Path, f: Path) -> list[str]:
    parts = list(f.relative_to(src).with_suffix("").parts)
    if parts[-1] in ("mod", "lib"):
        parts.pop()
    return parts


def file_of(src: Path, module: list[str]) -> Path | None:
    if not module:
        return src / "lib.rs"
    base = src.joinpath(*module)
    for cand in (base.with_suffix(".rs"), base / "mod.rs"):
        if cand.exists():
            return cand
    return None


def expand_uses(text: str) -> list[str]:
    """Every path in `use` statements, with brace groups expanded."""
    out: list[str] = []
    for m in re.finditer(r"\buse\s+([^;]+);", text):
        stack = [(m.group(1).replace("\n", " "), "")]
        while stack:
            body, prefix = stack.pop()
            body = body.strip()
            i = body.find("{")
            if i < 0:
                for item in body.split(","):
                    item = item.strip().split(" as ")[0].strip()
                    if item:
                        out.append(prefix + item)
                continue
            head = body[:i]
            depth, j = 0, i
            for j in range(i, len(body)):
                depth += {"{": 1, "}": -1}.get(body[j], 0)
                if depth == 0:
                    break
            inner = body[i + 1 : j]
            parts, depth, cur = [], 0, ""
            for ch in inner:
                depth += {"{": 1, "}": -1}.get(ch, 0)
                if ch == "," and depth == 0:
                    parts.append(cur)
                    cur = ""
                else:
                    cur += ch
            parts.append(cur)
            for p in parts:
                if p.strip():
                    stack.append((p, prefix + head))
    return out


def deps(src: Path, f: Path) -> set[Path]:
    text = f.read_text()
    text = text.split("#[cfg(test)]")[0]
    text = re.sub(r"//[^\n]*", "", text)
    here = module_of(src, f)
    found: set[Path] = set()
    paths = expand_uses(text) + [m.group(0) for m in PATH_RE.finditer(text)]
    for p in paths:
        segs = [s for s in p.replace(" ", "").split("::") if s]
        if segs and f.name in ("mod.rs", "lib.rs") and file_of(src, [*here, segs[0]]):
            segs = ["self", *segs]  # `use child::X` in an index names its own child
        if not segs or segs[0] not in ("crate", "super", "self"):
            continue
        if segs[0] == "crate":
            mod, rest = [], segs[1:]
        else:
            # `self` in a mod.rs is the module itself; in a.rs it is module a.
            mod = list(here)
            rest = segs
            while rest and rest[0] in ("super", "self"):
                if rest[0] == "super":
                    mod = mod[:-1]
                rest = rest[1:]
        best = file_of(src, mod)
        cur = list(mod)
        for s in rest:
            cur.append(s)
            cand = file_of(src, cur)
            if cand is None:
                break
            best = cand
        if best is not None and best != f:
            found.add(best)
    return found


def cycles(graph: dict[Path, set[Path]]) -> list[list[Path]]:
    index: dict[Path, int] = {}
    low: dict[Path, int] = {}
    stack: list[Path] = []
    on: set[Path] = set()
    out: list[list[Path]] = []
    counter = [0]

    def strong(v: Path) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in graph:
        if v not in index:
            strong(v)
    return out


def main() -> int:
    root = ROOT
    if len(sys.argv) == 3 and sys.argv[1] == "--root":
        root = Path(sys.argv[2])
    bad = 0
    for src in sorted(root.glob("*/src")):
        files = sorted(src.rglob("*.rs"))
        graph = {f: deps(src, f) for f in files}
        for comp in cycles(graph):
            bad += 1
            names = [str(f.relative_to(root)) for f in comp]
            print("cycle:", " <-> ".join(names))
            for f in comp:
                for d in sorted(graph[f] & set(comp)):
                    print(f"    {f.relative_to(root)} -> {d.relative_to(root)}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
