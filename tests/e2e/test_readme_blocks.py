"""Docs that run: every Python block in the README is either complete — run here as written,
its ``test_*`` functions called — or says on its first line that it is a fragment (then it must
still be valid Python, checked as the body of an async function)."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BLOCKS = re.findall(r"^```python\n(.*?)^```", (ROOT / "README.md").read_text(), flags=re.S | re.M)


def test_the_readme_has_complete_blocks_and_marked_fragments():
    complete = [b for b in BLOCKS if not b.startswith("# fragment")]
    assert len(BLOCKS) >= 10 and len(complete) >= 3, "the README's Python blocks were not found"
    assert any("def test_" in b for b in complete), "the TestClient example is not run"
    # The complete app the README opens with is the one test_example_app serves.
    assert BLOCKS[0] == (ROOT / "examples" / "app.py").read_text()


@pytest.mark.parametrize("block", BLOCKS, ids=[f"block{i + 1}" for i in range(len(BLOCKS))])
def test_each_block_runs_or_is_a_marked_fragment(block, monkeypatch):
    if block.startswith("# fragment"):
        # `return` and `await` are fine in a fragment (it stands inside a handler).
        compile("async def _fragment():\n" + textwrap.indent(block, "    "), "README fragment", "exec")
        return
    monkeypatch.syspath_prepend(str(ROOT))
    namespace: dict = {"__name__": "readme_block"}
    exec(compile(block, "README block", "exec"), namespace)
    for name, fn in list(namespace.items()):
        if name.startswith("test_") and callable(fn):
            fn()
