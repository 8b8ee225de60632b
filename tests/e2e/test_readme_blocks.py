"""Docs that run: every Python block in the README and the documentation site (docs/*.md) is
either complete — run here as written, its ``test_*`` functions called — or says on its first
line that it is a fragment (then it must still be valid Python, checked as the body of an async
function), or includes a file of the repository (``--8<-- "examples/..."``, served by its own
test)."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"^( *)```python\n(.*?)^\1```", flags=re.S | re.M)


def blocks(page: Path) -> list[str]:
    return [textwrap.dedent(body) for _, body in BLOCK.findall(page.read_text())]


README = blocks(ROOT / "README.md")
ALL = [(page.name, i, b) for page in PAGES for i, b in enumerate(blocks(page))]


def test_the_pages_have_complete_blocks_and_marked_fragments():
    complete = [b for b in README if not b.startswith("# fragment")]
    assert len(README) >= 10 and len(complete) >= 3, "the README's Python blocks were not found"
    assert any("def test_" in b for b in complete), "the TestClient example is not run"
    # The complete app the README opens with is the one test_example_app serves.
    assert README[0] == (ROOT / "examples" / "app.py").read_text()
    assert {name for name, _, _ in ALL} >= {"README.md", "testing.md", "from-nextjs.md", "from-workers.md"}


@pytest.mark.parametrize(("page", "index", "block"), ALL, ids=[f"{p}:{i + 1}" for p, i, _ in ALL])
def test_each_block_runs_or_is_a_marked_fragment(page, index, block, monkeypatch):
    if block.startswith("--8<--"):
        included = block.split('"')[1]
        assert (ROOT / included).is_file(), f"{page} block {index + 1} includes a missing {included}"
        return
    if block.startswith("# fragment"):
        # `return` and `await` are fine in a fragment (it stands inside a handler).
        compile("async def _fragment():\n" + textwrap.indent(block, "    "), f"{page} fragment", "exec")
        return
    monkeypatch.syspath_prepend(str(ROOT))
    namespace: dict = {"__name__": "docs_block"}
    exec(compile(block, f"{page} block {index + 1}", "exec"), namespace)
    for name, fn in list(namespace.items()):
        if name.startswith("test_") and callable(fn):
            fn()
