"""`edgecore demo`: a tour of what edgecore does, on embedded defaults (nothing external)."""

from __future__ import annotations

import argparse
import timeit

import edgecore as ec

RAW = (
    b"POST /api/orders?id=42 HTTP/1.1\r\n"
    b"Host: shop.example.com\r\n"
    b"User-Agent: demo/1.0\r\n"
    b"Transfer-Encoding: chunked\r\n"
    b"\r\n"
    b'7\r\n{"a":1}\r\n0\r\n\r\n'
)

SMUGGLED = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"


def main(args: argparse.Namespace) -> int:
    print(f"edgecore {ec.__version__} — the Rust core, driven from Python\n")
    r = ec.parse_request(RAW)
    print("parse_request:")
    print(f"  {r.method} {r.url}  body={r.body!r}  user-agent={r.headers['user-agent']!r}")
    try:
        ec.parse_request(SMUGGLED)
    except ec.HTTPParseError as e:
        print(f"  a smuggling attempt is refused with {e.status}: {e}")
    try:
        ec.parse_request(RAW[:40])
    except ec.IncompleteRequest:
        print("  an unfinished message is reported as incomplete, not malformed")
    n = 20000
    t = timeit.timeit(lambda: ec.parse_request(RAW), number=n) / n
    print(f"  {t * 1e9:.0f} ns per parse through the Python API")
    print("\nresponses:")
    ok = ec.Response.json({"ok": True})
    moved = ec.redirect("https://example.com/de/", 308)
    print(f"  {ok!r} {ok.body!r}")
    print(f"  {moved!r} -> {moved.headers['location']}")
    return 0
