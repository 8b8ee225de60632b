"""Where two callgrind profiles differ, function by function, per request.

    OUT=/tmp/a benches/profile_proxy.sh 3000     # one build (PYTHONPATH=... for another)
    OUT=/tmp/b benches/profile_proxy.sh 3000     # the other
    python benches/callgrind_diff.py /tmp/a.1 /tmp/b.1 3000 [--inclusive]

Prints the functions whose instructions per request grew most, then those that shrank
(self cost by default; ``--inclusive`` for inclusive cost). Needs ``callgrind_annotate``
(valgrind).
"""

from __future__ import annotations

import argparse
import re
import subprocess

LINE = re.compile(r"^\s*([\d,]+)\s+\(\s*[\d.]+%\)\s+(.*)$")


def costs(profile: str, inclusive: bool) -> dict[str, int]:
    """Instructions by function name in `profile`."""
    args = ["callgrind_annotate", *(["--inclusive=yes"] if inclusive else []), profile]
    out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    by_name: dict[str, int] = {}
    for line in out.splitlines():
        m = LINE.match(line)
        if m:
            name = re.sub(r" \[.*", "", m.group(2))
            by_name[name] = by_name.get(name, 0) + int(m.group(1).replace(",", ""))
    return by_name


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("before")
    ap.add_argument("after")
    ap.add_argument("requests", type=int, help="requests each profile covers (profile_proxy.sh's N)")
    ap.add_argument("--inclusive", action="store_true")
    ap.add_argument("--top", type=int, default=40)
    args = ap.parse_args()
    a, b = costs(args.before, args.inclusive), costs(args.after, args.inclusive)
    n = args.requests
    diff = sorted(((b.get(k, 0) - a.get(k, 0)) / n, k) for k in a.keys() | b.keys())
    for title, rows in (("grew", diff[::-1][: args.top]), ("shrank", diff[: args.top // 2])):
        print(f"--- {title} (instructions per request: change, before -> after, function)")
        for d, k in rows:
            print(f"{d:8.0f}  {a.get(k, 0) / n:8.0f} -> {b.get(k, 0) / n:8.0f}  {k[:140]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
