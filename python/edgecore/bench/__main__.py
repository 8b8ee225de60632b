"""python -m edgecore.bench [--quick] [--only SUITE ...] [--no-load] [--out DIR]

Runs every component suite and the server load benchmark, prints progress and results, and writes
a Markdown report with PNG charts to DIR (default: bench-results/)."""

from __future__ import annotations

import argparse
import importlib
import sys
import time
from pathlib import Path

from . import _harness
from ._harness import print_result

SUITES = ["parse", "jwt", "limit", "cache", "client", "compress"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m edgecore.bench", description=__doc__)
    ap.add_argument("--quick", action="store_true", help="short batches and fewer load rounds (under two minutes)")
    ap.add_argument("--only", nargs="+", choices=SUITES, help="run only these component suites")
    ap.add_argument("--no-load", action="store_true", help="skip the server load benchmark")
    ap.add_argument("--out", default="bench-results", help="folder for report.md and the charts")
    args = ap.parse_args(argv)
    suites = args.only or SUITES
    load_wanted = not args.no_load and not args.only
    from .requirements import missing

    needed = missing(suites, load_wanted)
    if needed:
        print("python -m edgecore.bench cannot run yet; install:", file=sys.stderr)
        for line in needed:
            print(f"  - {line}", file=sys.stderr)
        return 2
    if args.quick:
        _harness.BATCH_TIME = 0.01
    from .report import machine, write

    print(f"edgecore benchmarks on {machine()}", flush=True)
    start = time.time()
    results = []
    for i, name in enumerate(suites, 1):
        print(f"[{i}/{len(suites)}] {name} …", file=sys.stderr, flush=True)
        res = importlib.import_module(f"edgecore.bench.{name}").run(quick=args.quick)
        print_result(res)
        results.append(res)
    load = None
    if load_wanted:
        print("[load] servers under wrk …", file=sys.stderr, flush=True)
        from . import load as load_mod

        load = load_mod.run(quick=args.quick)
        for name, rows in load["scenarios"].items():
            print(f"\n== server: {name} ==")
            for r in rows:
                print(
                    f"  {r['name']:<44} {r['rps']:>9.0f} req/s  "
                    f"p99 {r['p99_ms']:6.2f} ms  CPU {r['cpu_us']:6.1f} µs/req"
                )
    path = write(results, load, Path(args.out), args.quick, time.time() - start)
    print(f"\nreport: {path} ({time.time() - start:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
