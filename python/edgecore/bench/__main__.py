"""python -m edgecore.bench [--quick] [--only SUITE ...]"""

from __future__ import annotations

import argparse
import importlib
import platform
import sys

from ._harness import print_result

SUITES = ["parse", "jwt", "limit", "cache", "client"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m edgecore.bench", description=__doc__)
    ap.add_argument("--quick", action="store_true", help="fewer rounds (a short run)")
    ap.add_argument("--only", nargs="+", choices=SUITES, help="run only these suites")
    args = ap.parse_args(argv)
    print(f"edgecore benchmarks on {platform.machine()} / Python {platform.python_version()} / {platform.platform()}")
    misses = 0
    for name in args.only or SUITES:
        mod = importlib.import_module(f"edgecore.bench.{name}")
        res = mod.run(quick=args.quick)
        print_result(res)
        misses += sum(res.measured(r) < r.factor for r in res.ratios)
    print(f"\n{misses} ratio target(s) missed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
