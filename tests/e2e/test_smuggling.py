"""Request smuggling over raw sockets. For each ambiguous or malformed message, edgecore either
answers 4xx and closes the connection, or exactly one request reaches the origin, carrying the
bytes edgecore understood. A body after an early response is never parsed as a request."""

from __future__ import annotations

import socket
import time
from pathlib import Path

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


def exchange_patiently(port: int, data: bytes, first: float = 5.0, then: float = 1.0) -> bytes:
    """Like `exchange`, sized for a loaded machine: up to `first` seconds for a first complete
    response, then `then` seconds more for anything that follows (a second, smuggled answer)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=first)
    s.sendall(data)
    out = b""
    deadline = time.monotonic() + first
    try:
        while time.monotonic() < deadline:
            s.settimeout(max(0.01, deadline - time.monotonic()))
            chunk = s.recv(65536)
            if not chunk:
                break
            out += chunk
            try:
                if responses(out):
                    deadline = min(deadline, time.monotonic() + then)
            except (AssertionError, ValueError, IndexError):
                pass  # not a whole response yet
    except (TimeoutError, ConnectionResetError):
        pass
    finally:
        s.close()
    return out


def responses(raw: bytes) -> list[tuple[int, dict[str, str]]]:
    """Every response in `raw`, split by its framing (Content-Length, or chunked), so that a second
    response glued to the previous body is counted too. A response that cannot be framed (no
    length, not chunked) runs to the end."""
    out = []
    rest = raw
    while rest.startswith(b"HTTP/1."):
        head, sep, rest = rest.partition(b"\r\n\r\n")
        assert sep, f"an incomplete response head: {head[:200]!r}"
        lines = head.split(b"\r\n")
        status = int(lines[0].split()[1])
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            headers[name.strip().lower().decode()] = value.strip().decode()
        out.append((status, headers))
        if "content-length" in headers:
            rest = rest[int(headers["content-length"]) :]
        elif headers.get("transfer-encoding", "").lower() == "chunked":
            while True:
                size_line, _, rest = rest.partition(b"\r\n")
                size = int(size_line.split(b";")[0], 16)
                rest = rest[size + 2 :]
                if size == 0:
                    break
        else:
            rest = b""
    return out


def statuses(raw: bytes) -> list[int]:
    return [status for status, _ in responses(raw)]


def test_the_response_splitter_counts_glued_responses():
    glued = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"
    assert statuses(glued) == [200, 404]
    chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\nHTTP/1.1 204 No\r\n\r\n"
    assert statuses(chunked) == [200, 204]


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


# What each vector gets: the status of the one response, and whether /a reached the origin.
# Every ambiguous framing is refused with 400 before anything is forwarded, including
# Content-Length with Transfer-Encoding, which hyper alone would frame by Transfer-Encoding
# (the framing guard, rust/edgecore-core/src/http/framing.rs, refuses it first).
EXPECTED = {
    "cl-te": (400, False),
    "te-cl": (400, False),
    "duplicate-cl": (400, False),
    "malformed-cl": (400, False),
    "te-not-chunked": (400, False),
    "te-chunked-then-gzip": (400, False),
    "obs-fold-te": (400, False),
    "space-before-colon": (400, False),
    "bad-chunk-size": (400, False),
    "http10-te": (400, False),
}


@pytest.mark.parametrize("name", list(VECTORS))
def test_ambiguous_messages(origin, name):
    with ec.Edge(origin=origin.url).serve() as s:
        raw = exchange(s.port, VECTORS[name])
        got = responses(raw)
        status, reaches = EXPECTED[name]
        # Exactly one response, then the connection is closed: the rest is never read as a request.
        assert [g[0] for g in got] == [status], f"{name}: {raw[:300]!r}"
        if status >= 400:
            assert got[0][1].get("connection") == "close", got[0][1]
        assert origin.count("/a") == int(reaches), name
        assert origin.count("/smuggled") == 0, f"{name}: the smuggled request reached the origin"


def test_transfer_codings_other_than_one_chunked_are_refused(origin):
    with ec.Edge(origin=origin.url).serve() as s:
        # hyper refuses a coding after chunked (400); the edge refuses every other mix (501).
        for te, status in [(b"foo, chunked", 501), (b"chunked, chunked", 501), (b"Chunked, identity", 400)]:
            raw = exchange(s.port, b"POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: %s\r\n\r\n0\r\n\r\n" % te)
            assert statuses(raw) == [status], (te, raw[:200])
        raw = exchange(
            s.port,
            b"POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        )
        assert statuses(raw) == [400]
        assert origin.count("/a") == 0


@pytest.mark.parametrize(
    "head,status",
    [
        (b"GET /a HTTP/1.1\r\nHost: x\r\nX: a\x00b\r\n\r\n", 400),
        (b"GET /a HTTP/2.0\r\nHost: x\r\n\r\n", 505),
        (b"GET /a HTTP/3.1\r\nHost: x\r\n\r\n", 505),
        (b"GET /a HTTP/0.9\r\nHost: x\r\n\r\n", 400),
        (b"GET /a b HTTP/1.1\r\nHost: x\r\n\r\n", 400),
        (b"GET /a HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(150)) + b"\r\n", 431),
        (b"GET /a HTTP/1.1\r\nHost: x\r\nX: " + b"a" * 70_000 + b"\r\n\r\n", 431),
    ],
)
def test_malformed_heads_are_answered_not_dropped(origin, head, status):
    with ec.Edge(origin=origin.url).serve() as s:
        got = responses(exchange(s.port, head))
        assert [st for st, _ in got] == [status]
        assert got[0][1].get("connection") == "close"
        assert origin.count("/a") == 0


def test_a_higher_minor_version_is_served_as_http_1_1(origin):
    """RFC 9112 §2.3: HTTP/1.2 is processed as the highest 1.x the server speaks."""
    with ec.Edge(origin=origin.url).serve() as s:
        got = responses(exchange(s.port, b"GET /a HTTP/1.2\r\nHost: x\r\nConnection: close\r\n\r\n"))
        assert [st for st, _ in got] == [200]
        assert origin.count("/a") == 1


def test_a_bad_chunk_or_an_oversized_chunked_upload_is_the_clients_error(origin):
    with ec.Edge(origin=origin.url).configure(max_body_bytes=1000).serve() as s:
        bad = b"POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0x5\r\nhello\r\n0\r\n\r\n"
        assert statuses(exchange(s.port, bad)) == [400]
        big = b"POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        big += b"".join(b"100\r\n" + b"x" * 256 + b"\r\n" for _ in range(8)) + b"0\r\n\r\n"
        assert statuses(exchange(s.port, big)) == [413]


@pytest.mark.parametrize("policy", ["jwt", "rate", "bot", "redirect", "cache"])
def test_early_responses_never_parse_the_body_as_a_request(origin, policy):
    """Each policy answers /guarded/x itself; the body is a request for /smuggled, which no rule
    would answer, so it reaches the origin if (and only if) the body were parsed as a request.
    (With a cache rule, a GET with a body passes the cache and carries its body to the origin.)"""
    app = ec.Edge(origin=origin.url)
    guarded = ["/guarded/*"]
    if policy == "jwt":
        app.jwt(paths=guarded, key=b"k" * 32, algorithms=["HS256"])
    elif policy == "rate":
        app.rate_limit(paths=guarded, limit=1, period=60)
    elif policy == "bot":
        app.bots("block")
    elif policy == "redirect":
        app.redirect(to="/elsewhere", paths=guarded)
    else:
        app.cache(paths=["/cached/*"], ttl=60)
    path = b"/cached/x" if policy == "cache" else b"/guarded/x"
    method = b"GET" if policy == "cache" else b"POST"
    ua = b"curl/8" if policy == "bot" else b"Mozilla/5.0"
    message = b"%s %s HTTP/1.1\r\nHost: x\r\nUser-Agent: %s\r\nContent-Length: %d\r\n\r\n%s" % (
        method,
        path,
        ua,
        len(SMUGGLED),
        SMUGGLED,
    )
    expected = {"jwt": 401, "rate": 429, "bot": 403, "redirect": 302, "cache": 200}[policy]
    with app.serve() as s:
        if policy == "rate":
            assert statuses(exchange(s.port, b"GET /guarded/x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")) == [
                200
            ]
        if policy == "cache":
            # Filled first, so the request with a body is answered from the cache (a hit).
            assert statuses(exchange(s.port, b"GET /cached/x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")) == [
                200
            ]
        before = len(origin.requests)
        raw = exchange(s.port, message + b"GET /second HTTP/1.1\r\nHost: x\r\nUser-Agent: Mozilla/5.0\r\n\r\n")
        got = statuses(raw)
        assert got[0] == expected, raw[:300]
        assert origin.count("/smuggled") == 0, f"{policy}: body bytes were parsed as a request"
        if policy == "cache":
            # A GET with a body is never answered from the cache: it goes to the origin, its body
            # as a body (one request, carrying the smuggled bytes as data).
            assert "x-cache: hit" not in raw.decode("latin-1").lower()
            forwarded = [r for r in origin.requests[before:] if r["path"] == "/cached/x"]
            assert len(forwarded) == 1 and forwarded[0]["body"] == SMUGGLED


CORPUS = Path(__file__).resolve().parents[2] / "rust" / "edgecore-core" / "fuzz" / "seeds" / "http_parse"
SMUGGLING_CORPUS = sorted(CORPUS.glob("smuggle-*"))


def test_the_smuggling_corpus_exists():
    # The fuzz seeds are the single list of smuggling cases; an empty glob must not pass silently.
    assert len(SMUGGLING_CORPUS) >= 40


def test_every_smuggling_case_of_the_fuzz_corpus_through_the_server(origin):
    """Each published smuggling case (rust/edgecore-core/fuzz/seeds/http_parse/smuggle-*) hides
    GET /smuggled behind a framing some parser reads differently. Through the running server, each
    gets exactly one response: a 4xx/5xx that closes the connection and sends nothing to the
    origin, or one answer (HTTP/1.2 is served as 1.1, RFC 9112 §2.3), after which the origin has
    seen one request, /a, carrying the body the edge framed. /smuggled never reaches the origin."""
    failures = []
    with ec.Edge(origin=origin.url).serve() as s:
        for case in SMUGGLING_CORPUS:
            before = len(origin.requests)
            raw = exchange_patiently(s.port, case.read_bytes())
            got = responses(raw)
            seen = [r["path"] for r in origin.requests[before:]]
            if len(got) != 1:
                failures.append(f"{case.name}: {len(got)} responses: {raw[:200]!r}")
                continue
            status, headers = got[0]
            if status >= 400 and (seen or headers.get("connection") != "close"):
                failures.append(f"{case.name}: {status}, connection {headers.get('connection')}, origin saw {seen}")
            if status < 400 and seen != ["/a"]:
                failures.append(f"{case.name}: {status}, origin saw {seen}")
            if "/smuggled" in seen:
                failures.append(f"{case.name}: /smuggled reached the origin")
    assert not failures, "\n".join(failures)


def test_every_refusal_is_a_log_line_naming_the_client_and_the_reason(origin, capfd):
    # At most 10 refusal lines a second per process (a flood of bad requests must not flood the
    # log): start in a fresh second, after the other tests' refusals.
    time.sleep(1.01 - time.time() % 1)
    with ec.Edge(origin=origin.url).serve() as s:
        assert statuses(exchange(s.port, b"GET /a HTTP/1.1\nHost: x\r\n\r\n")) == [400]
        assert statuses(exchange(s.port, b"GET /a HTTP/1.1\r\nHost: x\r\nX: a\x00b\r\n\r\n")) == [400]
        bad_chunk = b"POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5 \r\nhello\r\n0\r\n\r\n"
        assert statuses(exchange(s.port, bad_chunk)) == [400]
    err = capfd.readouterr().err
    lines = [line for line in err.splitlines() if "refused a malformed request from 127.0.0.1:" in line]
    assert any("bare LF" in line for line in lines), err
    assert any("invalid" in line.lower() and "header" in line.lower() for line in lines), err
    assert any("an invalid chunk size" in line for line in lines), err
