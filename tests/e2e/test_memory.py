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
