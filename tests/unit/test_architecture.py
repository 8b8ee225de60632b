"""The Rust code's shape: no dependency cycles between files (scripts/check_cycles.py), no file
over 600 lines (functions over 80 lines are clippy's `too_many_lines`, in `make lint`)."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "check_cycles.py"


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, check=False)


def test_no_file_of_either_crate_imports_one_that_imports_it_back():
    r = run()
    assert r.returncode == 0, r.stdout


def test_the_checker_finds_a_cycle(tmp_path):
    # The checker must be able to fail: two files that import each other are reported.
    src = tmp_path / "demo" / "src"
    src.mkdir(parents=True)
    (src / "lib.rs").write_text("pub mod a;\npub mod b;\n")
    (src / "a.rs").write_text("use crate::b::B;\npub struct A;\n")
    (src / "b.rs").write_text("use super::a::A;\npub struct B;\n")
    r = run("--root", str(tmp_path))
    assert r.returncode == 1
    assert "demo/src/a.rs <-> demo/src/b.rs" in r.stdout


def test_no_rust_file_is_over_600_lines():
    long = {
        str(f.relative_to(ROOT)): n
        for f in (ROOT / "rust").rglob("*.rs")
        if (n := len(f.read_text().splitlines())) > 600
    }
    assert long == {}
