"""Compression: edgecore's codecs (the ones `app.compress` runs: zlib-rs gzip, Rust brotli,
libzstd) against the C libraries Python users reach for (zlib through `gzip`, `brotli`,
`zstandard`), at each coding's default level; then CPU per MB and ratio over a range of levels,
the measurement the defaults were chosen from."""

from __future__ import annotations

import argparse
import functools
import gzip
import json
import random

from ._harness import Batch, Ratio, SuiteResult, compare, version

LEVELS = {"gzip": [1, 3, 5, 6, 9], "br": [1, 3, 4, 5, 6, 9], "zstd": [1, 3, 6, 9, 12]}


def corpus() -> bytes:
    """What an edge compresses: HTML, JSON and script text, ~300 kB, the same on every run."""
    rng = random.Random(7)
    words = [w for w in argparse.__doc__.split() if w.isalpha()] or ["edge"]
    rows = "".join(
        f'<tr class="row"><td>{i}</td><td><a href="/item/{rng.randrange(10**6)}">'
        f"{' '.join(rng.choice(words) for _ in range(6))}</a></td><td>{rng.random():.4f}</td></tr>\n"
        for i in range(900)
    )
    html = f"<!doctype html><html><body><table>{rows}</table></body></html>".encode()
    records = [
        {"id": i, "name": " ".join(rng.choice(words) for _ in range(3)), "score": rng.random(), "tags": ["a", "b"]}
        for i in range(1200)
    ]
    script = open(argparse.__file__, "rb").read()[:100_000]
    return html + json.dumps(records).encode() + script


def run(quick: bool = False) -> SuiteResult:
    import brotli
    import zstandard

    import edgecore as ec

    data = corpus()
    mb = len(data) / 1e6
    zstd_c = zstandard.ZstdCompressor(level=3)
    stats = compare(
        {
            "edgecore gzip (level 5)": lambda: ec.compress(data, "gzip"),
            "gzip.compress (zlib, level 5)": lambda: gzip.compress(data, 5, mtime=0),
            "edgecore br (level 4)": lambda: ec.compress(data, "br"),
            "brotli.compress (C, quality 4)": lambda: brotli.compress(data, quality=4, lgwin=20),
            "edgecore zstd (level 3)": lambda: ec.compress(data, "zstd"),
            "zstandard (level 3)": lambda: zstd_c.compress(data),
        },
        rounds=3 if quick else 7,
        batch_time=0.05 if quick else 0.2,
    )
    for s in stats.values():  # per MB of input, not per call
        s.samples = [t / mb for t in s.samples]
    res = SuiteResult(
        "Compression (CPU per MB of input, one core)",
        stats,
        [
            Ratio("edgecore gzip (level 5)", "gzip.compress (zlib, level 5)", 0.9),
            Ratio("edgecore br (level 4)", "brotli.compress (C, quality 4)", 0.9),
            Ratio("edgecore zstd (level 3)", "zstandard (level 3)", 0.9),
        ],
        notes=[
            f"corpus: {len(data) / 1e3:.0f} kB of HTML, JSON and Python source",
            version("brotli"),
            version("zstandard"),
            "targets: no more than ~1.1x the C libraries' time",
        ],
    )
    for coding, levels in LEVELS.items():
        if quick:
            levels = levels[:3]
        row = []
        for level in levels:
            out = ec.compress(data, coding, level)
            job = functools.partial(ec.compress, data, coding, level)
            timed = compare({"x": Batch(job, 1)}, rounds=3, batch_time=0.05)
            ms_per_mb = timed["x"].median / mb * 1e3
            row.append(f"{level}: {ms_per_mb:.1f} ms/MB, {len(data) / len(out):.1f}x")
        res.figures[f"{coding} by level (CPU per MB, ratio)"] = "; ".join(row)
    return res
