"""The `edgecore` command line."""

from __future__ import annotations

import argparse
import sys


def _demo(args: argparse.Namespace) -> int:
    from edgecore import _demo

    return _demo.main(args)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="edgecore", description="edgecore: the fast edge layer for Python")
    sub = ap.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="show edgecore working on an embedded default (no external services)")
    demo.set_defaults(func=_demo)
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
