"""What `python -m edgecore.bench` needs, checked before anything runs: the Python packages of
`pip install 'edgecore[bench]'` and, for the load benchmark, wrk and nginx."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

# module -> the requirement that brings it (as in pyproject's `bench` extra)
MODULES = {
    "jwt": "PyJWT[crypto]",
    "cachetools": "cachetools",
    "limits": "limits",
    "h11": "h11",
    "httptools": "httptools",
    "maxminddb": "maxminddb",
    "_maxminddb_geolite2": "maxminddb-geolite2",
    "fake_useragent": "fake-useragent",
    "crawlerdetect": "crawlerdetect",
    "matplotlib": "matplotlib",
    "uvicorn": "uvicorn[standard]",
    "starlette": "starlette",
    "granian": "granian",
    "brotli": "brotli",
    "zstandard": "zstandard",
}

# what each component suite and the load benchmark import (the report always needs matplotlib)
SUITE_MODULES = {
    "parse": ["h11", "httptools"],
    "jwt": ["jwt"],
    "limit": ["limits"],
    "cache": ["cachetools"],
    "compress": ["brotli", "zstandard"],
    "client": ["maxminddb", "_maxminddb_geolite2", "fake_useragent", "crawlerdetect"],
    "load": ["uvicorn", "starlette", "granian", "_maxminddb_geolite2", "jwt"],
}


def missing(suites: list[str], load: bool) -> list[str]:
    """What to install before running `suites` (and the load benchmark): one line each."""
    wanted = {"matplotlib"}
    for s in [*suites, *(["load"] if load else [])]:
        wanted.update(SUITE_MODULES[s])
    packages = sorted({MODULES[m] for m in wanted if importlib.util.find_spec(m) is None})
    out = []
    if packages:
        quoted = " ".join(f"'{p}'" if "[" in p else p for p in packages)
        out.append(f"Python packages: pip install 'edgecore[bench]'  (missing: {quoted})")
    if load:
        tools = [t for t in ("wrk", "nginx") if not _on_path(t)]
        if tools:
            out.append(
                f"programs for the load benchmark: {' and '.join(tools)} (Debian: apt-get install "
                f"{' '.join(tools)}; `make bench` installs them), or pass --no-load"
            )
    return out


def _on_path(tool: str) -> bool:
    return shutil.which(tool) is not None or Path(f"/usr/sbin/{tool}").exists()
