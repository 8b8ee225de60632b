"""Memory is bounded by configuration, not by what a client or an origin sends."""

from __future__ import annotations

import os
import socket
import time

import edgecore as ec


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def test_a_client_that_never_reads_a_huge_proxied_body_costs_little_memory(origin):
    with ec.Edge(origin=origin.url).configure(threads=1).serve() as s:
        before = rss_bytes()
        with socket.create_connection(("127.0.0.1", s.port)) as c:
            # A small receive buffer, and nothing read: the edge must stop pulling from the
            # origin instead of buffering the 300 MiB.
            c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
            c.sendall(b"GET /huge HTTP/1.1\r\nHost: x\r\n\r\n")
            deadline = time.monotonic() + 3
            peak = before
            while time.monotonic() < deadline:
                peak = max(peak, rss_bytes())
                time.sleep(0.05)
        grown = peak - before
        assert grown < 16 * 1024 * 1024, f"RSS grew by {grown / 2**20:.1f} MiB"


def test_concurrent_misses_of_an_object_too_large_to_store_stream_through(origin):
    app = ec.Edge(origin=origin.url).configure(threads=1)
    app.cache(paths=["/huge"], ttl=60, max_bytes=64 << 20)
    with app.serve() as s:
        before = rss_bytes()
        clients = []
        try:
            for _ in range(4):
                c = socket.create_connection(("127.0.0.1", s.port))
                c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
                c.sendall(b"GET /huge HTTP/1.1\r\nHost: x\r\n\r\n")
                clients.append(c)
            deadline = time.monotonic() + 3
            peak = before
            while time.monotonic() < deadline:
                peak = max(peak, rss_bytes())
                time.sleep(0.05)
            # Each client gets the response head (the body streams as it reads).
            for c in clients:
                c.settimeout(5)
                assert c.recv(65536).startswith(b"HTTP/1.1 200 OK")
        finally:
            for c in clients:
                c.close()
        grown = peak - before
        assert grown < 64 * 1024 * 1024, f"RSS grew by {grown / 2**20:.1f} MiB"


def test_a_response_past_the_cache_entry_limit_arrives_whole_and_is_not_stored(origin):
    from tests.e2e.conftest import call

    app = ec.Edge(origin=origin.url)
    app.cache(paths=["/longchunked", "/big"], ttl=60, max_bytes=1 << 20)
    expected = b"".join(bytes([65 + i % 26]) * 65536 for i in range(32))
    with app.serve() as s:
        for _ in range(2):
            # No length announced: the fill reads up to its limit, then streams the rest on.
            r = call(s.url, "/longchunked")
            assert r.status == 200 and r.body == expected
            assert r.headers["x-cache"] == "MISS"
            # A length over the limit: streamed from the start.
            r = call(s.url, "/big")
            assert r.status == 200 and len(r.body) == 8 * 1024 * 1024
        assert origin.count("/longchunked") == 2 and origin.count("/big") == 2


def test_an_http2_client_that_never_opens_its_window_costs_little_memory(origin):
    """HTTP/2 flow control is the backpressure: a client that requests the 300 MiB body and never
    sends WINDOW_UPDATE gets its first window's worth (64 KiB), and the edge stops pulling from
    the origin instead of buffering the rest. A second stream on the connection is still served."""
    from hyperframe.frame import HeadersFrame

    from tests.security.test_h2_frames import GOOD, RawH2

    with ec.Edge(origin=origin.url).configure(threads=1).serve() as s:
        before = rss_bytes()
        c = RawH2(s.port, stream_window_updates=False)
        try:
            c.send(
                HeadersFrame(
                    1, c.block([*GOOD[:3], (":path", "/huge")]), flags=["END_HEADERS", "END_STREAM"]
                ).serialize()
            )
            deadline = time.monotonic() + 3
            peak = before
            while time.monotonic() < deadline:
                c.pump(lambda: False, timeout=0.05)
                peak = max(peak, rss_bytes())
            assert c.statuses.get(1) == 200
            assert c.data_bytes.get(1, 0) <= 65535, c.data_bytes
            c.headers(3, GOOD)
            c.pump(lambda: c.answered(3))
            assert c.statuses.get(3) == 200
        finally:
            c.close()
        grown = peak - before
        assert grown < 16 * 1024 * 1024, f"RSS grew by {grown / 2**20:.1f} MiB"
