"""README promises, each tested through a running server (issue 25): what the README says the
server does, and a test that fails on a build that does not."""

from __future__ import annotations

import logging
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

import edgecore as ec
from tests.e2e.conftest import call
from tests.e2e.test_smuggling import exchange, responses
from tests.waiting import wait_for


def test_stale_while_revalidate_serves_stale_while_exactly_one_refresh_runs(origin):
    app = ec.Edge(origin=origin.url)
    app.cache(paths=["/swr"], ttl=60)
    with app.serve() as s:
        assert call(s.url, "/swr").body == b"swr #1"
        wait_for(lambda: call(s.url, "/swr").headers.get("x-cache", "").upper() == "STALE", 5, "a stale entry")
        # Ten clients while the refresh (0.5 s at the origin) runs: each is answered from the
        # stale copy at once, and the origin is asked once.
        started = time.monotonic()
        with ThreadPoolExecutor(10) as pool:
            replies = list(pool.map(lambda _: call(s.url, "/swr"), range(10)))
        assert all(r.body == b"swr #1" for r in replies), [r.body for r in replies]
        assert time.monotonic() - started < 0.45, "a stale answer waited for the refresh"
        wait_for(lambda: call(s.url, "/swr").body == b"swr #2", 5, "the refreshed entry")
        assert origin.count("/swr") == 2


def test_max_connections_holds_further_connections_until_one_closes(origin):
    with ec.Edge(origin=origin.url).configure(max_connections=2).serve() as s:
        held = [socket.create_connection(("127.0.0.1", s.port)) for _ in range(2)]
        for c in held:
            c.sendall(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n")
            assert c.recv(65536).startswith(b"HTTP/1.1 200")
        third = socket.create_connection(("127.0.0.1", s.port), timeout=0.5)
        third.sendall(b"GET /third HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        try:
            early = third.recv(65536)
        except TimeoutError:
            early = b""
        assert early == b"", "a third connection was served past max_connections=2"
        held[0].close()
        third.settimeout(5)
        assert third.recv(65536).startswith(b"HTTP/1.1 200")
        assert origin.count("/third") == 1
        third.close()
        held[1].close()


class CountingOrigin:
    """A TCP origin that counts the requests it reads and then closes without answering."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.requests = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = conn.recv(65536)
                if not chunk:
                    break
                data += chunk
            self.requests += data.count(b" HTTP/1.1\r\n")
            conn.close()


def test_requests_are_never_retried():
    o = CountingOrigin()
    with ec.Edge(origin=o.url).serve() as s:
        for method in ["GET", "POST"]:
            before = o.requests
            assert call(s.url, "/x", method=method, body=b"b" if method == "POST" else None).status == 502
            time.sleep(0.2)  # a retry, if there were one, would arrive now
            assert o.requests == before + 1, f"{method} was sent {o.requests - before} times"
    o.sock.close()


def test_origin_connect_timeout_answers_504():
    # A listener whose accept queue is full: the kernel drops further SYNs, so connect hangs.
    blackhole = socket.socket()
    blackhole.bind(("127.0.0.1", 0))
    blackhole.listen(0)
    port = blackhole.getsockname()[1]
    fillers = []
    for _ in range(8):
        f = socket.socket()
        f.setblocking(False)
        f.connect_ex(("127.0.0.1", port))
        fillers.append(f)
    app = ec.Edge(origin=f"http://127.0.0.1:{port}").configure(origin_connect_timeout=0.3, origin_timeout=10)
    with app.serve() as s:
        started = time.monotonic()
        status = call(s.url, "/x").status
        took = time.monotonic() - started
    assert status in (502, 504), status
    assert 0.25 < took < 3, f"answered after {took:.2f}s with a 0.3 s connect timeout"
    for f in fillers:
        f.close()
    blackhole.close()


def test_pipelined_requests_are_answered_in_order(origin):
    with ec.Edge(origin=origin.url).serve() as s:
        raw = exchange(
            s.port,
            b"GET /slow?s=0.4 HTTP/1.1\r\nHost: x\r\n\r\n"
            b"GET /first-fast HTTP/1.1\r\nHost: x\r\n\r\n"
            b"GET /second-fast HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            wait=5,
        )
        assert_answered_in_order(raw, [b"slow", b"/first-fast", b"/second-fast"])


def assert_answered_in_order(raw: bytes, marks: list[bytes]) -> None:
    """Each response (one per mark, all 200) carries its mark, in the order sent."""
    assert [st for st, _ in responses(raw)] == [200] * len(marks)
    order = [raw.find(m) for m in marks]
    assert -1 not in order and order == sorted(order), order


def test_the_order_check_fails_on_responses_out_of_order():
    # hyper's dispatcher keeps pipelined answers in order, so the server cannot be broken on
    # purpose without another HTTP stack: the check is shown to fail on the stream a server
    # answering the fast requests first would send.
    def answer(mark: bytes) -> bytes:
        return b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n%s" % (len(mark), mark)

    in_order = answer(b"slow") + answer(b"/first-fast") + answer(b"/second-fast")
    assert_answered_in_order(in_order, [b"slow", b"/first-fast", b"/second-fast"])
    swapped = answer(b"/first-fast") + answer(b"/second-fast") + answer(b"slow")
    with pytest.raises(AssertionError):
        assert_answered_in_order(swapped, [b"slow", b"/first-fast", b"/second-fast"])
    with pytest.raises(AssertionError):  # one answer missing
        assert_answered_in_order(answer(b"slow") + answer(b"/first-fast"), [b"slow", b"/first-fast", b"/second-fast"])


def test_wrong_return_types_and_raising_middleware_are_500s_with_a_log_line(caplog):
    app = ec.Edge()

    @app.route("/wrong")
    def wrong(request, env):
        return 42

    @app.middleware(["/mw/*"])
    def raises(request):
        raise ValueError("middleware kaboom")

    @app.middleware(["/mw2/*"])
    def wrong_mw(request):
        return 3.5

    @app.route("/mw/x")
    @app.route("/mw2/x")
    @app.route("/ok")
    def ok(request, env):
        return "fine"

    with caplog.at_level(logging.ERROR, logger="edgecore"), app.serve() as s:
        assert call(s.url, "/wrong").status == 500
        assert call(s.url, "/mw/x").status == 500
        assert call(s.url, "/mw2/x").status == 500
        assert call(s.url, "/ok").body == b"fine"
    text = caplog.text
    assert "route handler" in text and ".wrong failed on GET /wrong" in text and "returned int" in text
    assert ".raises failed on GET /mw/x" in text and "middleware kaboom" in text
    assert ".wrong_mw failed on GET /mw2/x" in text and "returned float" in text
    assert "edgecore: edgecore:" not in text


def test_chunked_uploads_past_max_body_bytes_are_413_and_never_forwarded_whole(origin):
    app = ec.Edge(origin=origin.url).configure(max_body_bytes=1000)

    @app.route("/handler", methods=["POST"])
    def handler(request, env):
        return f"got {len(request.body)}"

    big = b"".join(b"100\r\n" + b"x" * 256 + b"\r\n" for _ in range(8)) + b"0\r\n\r\n"
    with app.serve() as s:
        for path in [b"/handler", b"/proxied"]:
            raw = exchange(s.port, b"POST %s HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n%s" % (path, big))
            got = responses(raw)
            assert [st for st, _ in got] == [413], (path, raw[:200])
            assert got[0][1].get("connection") == "close"
        time.sleep(0.2)
        # The proxied upload was refused before it was forwarded, or cut off: the origin never
        # records a complete request carrying it.
        assert all(len(r["body"]) <= 1000 for r in origin.requests if r["path"] == "/proxied")


def test_an_origin_response_framed_two_ways_is_a_502_and_its_connection_is_dropped():
    """RFC 9112 §6.3: Content-Length with Transfer-Encoding is an error. Here the two disagree
    (3 vs 5 bytes): relayed as is, the client would get a Content-Length that is not the body's."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    seen = []

    def serve() -> None:
        while True:
            try:
                c, _ = srv.accept()
            except OSError:
                return
            seen.append(c.recv(65536).split(b" ")[1])
            c.sendall(
                b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
            )
            c.close()

    threading.Thread(target=serve, daemon=True).start()
    with ec.Edge(origin=f"http://127.0.0.1:{srv.getsockname()[1]}").serve() as s:
        assert call(s.url, "/x").status == 502
        assert call(s.url, "/y").status == 502
    srv.close()
    assert seen == [b"/x", b"/y"]
