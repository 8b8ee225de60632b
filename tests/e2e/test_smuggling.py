"""Request smuggling over raw sockets. For each ambiguous or malformed message, edgecore either
answers 4xx and closes the connection, or exactly one request reaches the origin, carrying the
bytes edgecore understood. A body after an early response is never parsed as a request."""

from __future__ import annotations

import socket
import time

import pytest

import edgecore as ec

SMUGGLED = b"GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"


def exchange(port: int, data: bytes, wait: float = 1.5) -> bytes:
    s = socket.create_connection(("127.0.0.1", port), timeout=wait)
    s.sendall(data)
    out = b""
    deadline = time.monotonic() + wait
    try:
        while time.monotonic() < deadline:
            chunk = s.recv(65536)
            if not chunk:
                break
            out += chunk
    except TimeoutError:
        pass
    finally:
        s.close()
    return out


def statuses(raw: bytes) -> list[int]:
    return [int(line.split()[1]) for line in raw.split(b"\r\n") if line.startswith(b"HTTP/1.1 ")]


VECTORS = {
    "cl-te": b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
    + SMUGGLED,
    "te-cl": b"POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 40\r\n\r\n0\r\n\r\n"
    + SMUGGLED,
    "duplicate-cl": b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nContent-Length: 37\r\n\r\n" + SMUGGLED,
    "malformed-cl": b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: +37\r\n\r\n" + SMUGGLED,
    "te-not-chunked": b"POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n" + SMUGGLED,
    "te-chunked-then-gzip": b"POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n"
    + SMUGGLED,
    "obs-fold-te": b"POST /a HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n Transfer-Encoding: chunked\r\nContent-Length: 37\r\n\r\n"
    + SMUGGLED,
    "space-before-colon": b"POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding : chunked\r\nContent-Length: 37\r\n\r\n"
    + SMUGGLED,
    "bad-chunk-size": b"POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n" + SMUGGLED,
    "http10-te": b"POST /a HTTP/1.0\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + SMUGGLED,
}


@pytest.mark.parametrize("name", list(VECTORS))
def test_ambiguous_messages(origin, name):
    with ec.Edge(origin=origin.url).serve() as s:
        raw = exchange(s.port, VECTORS[name])
        got = statuses(raw)
        time.sleep(0.2)
        assert origin.count("/smuggled") == 0, f"{name}: the smuggled request reached the origin"
        if got and 400 <= got[0] < 500:
            assert len(got) == 1, f"{name}: answered {got} (the connection must close after a 4xx)"
        else:
            assert origin.count("/a") <= 1, f"{name}: {origin.count('/a')} requests reached the origin"


@pytest.mark.parametrize("policy", ["jwt", "rate", "bot", "redirect", "cache"])
def test_early_responses_never_parse_the_body_as_a_request(origin, policy):
    app = ec.Edge(origin=origin.url)
    if policy == "jwt":
        app.jwt(paths=["/*"], key=b"k" * 32, algorithms=["HS256"])
    elif policy == "rate":
        app.rate_limit(paths=["/*"], limit=1, period=60)
        app.rate_limit(paths=["/*"], limit=1, period=60)
    elif policy == "bot":
        app.bots("block")
    elif policy == "redirect":
        app.redirect(to="/elsewhere", paths=["/*"])
    else:
        app.cache(paths=["/*"], ttl=60)
    body = SMUGGLED
    message = b"POST /cached/x HTTP/1.1\r\nHost: x\r\nUser-Agent: curl/8\r\nContent-Length: %d\r\n\r\n%s" % (
        len(body),
        body,
    )
    with app.serve() as s:
        if policy == "rate":
            exchange(s.port, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        raw = exchange(s.port, message + b"GET /second HTTP/1.1\r\nHost: x\r\nUser-Agent: curl/8\r\n\r\n")
        time.sleep(0.2)
        assert origin.count("/smuggled") == 0, f"{policy}: body bytes were parsed as a request"
        assert statuses(raw), raw[:200]
