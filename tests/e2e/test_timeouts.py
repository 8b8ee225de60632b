"""The header and keep-alive timeouts on real sockets: slow and idle clients are closed, busy
connections are not.

The timeouts are a watchdog with a tick of a tenth of the shorter one: a connection is closed between
the timeout and the timeout plus two ticks (see `Connections` in server/mod.rs).
"""

from __future__ import annotations

import socket
import time

import pytest

import edgecore as ec

TIMEOUT = 0.5
# The watchdog closes a connection at most two ticks after its deadline; the rest is scheduling
# slack on a loaded test machine.
LATEST = TIMEOUT * 1.2 + 0.5


def closed_after(sock: socket.socket, t0: float) -> float:
    """Reads until the server closes the connection; returns the seconds since t0. Fails if the
    server sends anything."""
    sock.settimeout(TIMEOUT + 5)
    try:
        data = sock.recv(4096)
    except ConnectionResetError:
        data = b""
    assert data == b"", data
    return time.monotonic() - t0


def trickle_until_closed(sock: socket.socket, t0: float) -> tuple[float, int]:
    """Sends a byte of request head every 50 ms (progress that must not extend the deadline:
    slowloris) until the server closes the connection; returns (seconds since t0, bytes sent).
    Gives up TIMEOUT + 3 s after t0."""
    sock.settimeout(0.05)
    sent = 0
    while time.monotonic() - t0 < TIMEOUT + 3:
        try:
            sock.sendall(b"x")
            sent += 1
        except OSError:
            break
        try:
            if sock.recv(4096) == b"":
                break
        except TimeoutError:
            continue
        except ConnectionResetError:
            break
    return time.monotonic() - t0, sent


def read_response(sock: socket.socket) -> bytes:
    """One whole response with a Content-Length body."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")
    )
    while len(body) < length:
        chunk = sock.recv(65536)
        assert chunk, data
        body += chunk
    assert len(body) == length
    return head + b"\r\n\r\n" + body


def test_a_client_trickling_its_head_is_closed_at_the_timeout(origin):
    app = ec.Edge(origin=origin.url).configure(header_read_timeout=TIMEOUT)
    with app.serve() as s, socket.create_connection(("127.0.0.1", s.port)) as raw:
        t0 = time.monotonic()
        raw.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")
        elapsed, sent = trickle_until_closed(raw, t0)
        assert TIMEOUT * 0.9 <= elapsed < LATEST, elapsed
        assert sent > 5
        assert all(r["path"] != "/" for r in origin.requests)


def test_an_idle_keep_alive_connection_is_closed_after_the_timeout(origin):
    app = ec.Edge(origin=origin.url).configure(keep_alive_timeout=TIMEOUT, header_read_timeout=5)
    with app.serve() as s, socket.create_connection(("127.0.0.1", s.port)) as raw:
        raw.sendall(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n")
        raw.settimeout(5)
        assert read_response(raw).startswith(b"HTTP/1.1 200")
        t0 = time.monotonic()
        elapsed = closed_after(raw, t0)
        assert TIMEOUT * 0.9 <= elapsed < LATEST, elapsed


def test_each_request_restarts_the_wait_for_the_next(origin):
    """Requests spaced at 60% of the timeout keep one connection open well past the timeout."""
    app = ec.Edge(origin=origin.url).configure(header_read_timeout=TIMEOUT, keep_alive_timeout=TIMEOUT)
    with app.serve() as s, socket.create_connection(("127.0.0.1", s.port)) as raw:
        raw.settimeout(5)
        t0 = time.monotonic()
        for i in range(5):
            raw.sendall(f"GET /n{i} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            assert read_response(raw).startswith(b"HTTP/1.1 200")
            time.sleep(TIMEOUT * 0.6)
        assert time.monotonic() - t0 > TIMEOUT * 2.5
        raw.sendall(b"GET /last HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_response(raw).startswith(b"HTTP/1.1 200")


def test_a_request_in_flight_longer_than_the_timeout_is_not_cut(origin):
    app = ec.Edge(origin=origin.url).configure(header_read_timeout=0.3, keep_alive_timeout=0.3, origin_timeout=5)
    with app.serve() as s, socket.create_connection(("127.0.0.1", s.port)) as raw:
        raw.settimeout(5)
        raw.sendall(b"GET /slow?s=1.0 HTTP/1.1\r\nHost: x\r\n\r\n")
        reply = b""
        while b"\r\n\r\n" not in reply or not reply.endswith(b"slow"):
            chunk = raw.recv(65536)
            assert chunk, reply
            reply += chunk
        assert reply.startswith(b"HTTP/1.1 200"), reply
        # Then the wait for the next head starts: the idle connection closes.
        t0 = time.monotonic()
        assert closed_after(raw, t0) < 0.3 * 1.2 + 0.5


def test_a_python_handler_slower_than_the_timeout_is_answered():
    app = ec.Edge().configure(header_read_timeout=0.3, keep_alive_timeout=0.3)

    @app.route("/sleepy")
    def sleepy(request, env):
        time.sleep(0.8)
        return "awake"

    with app.serve() as s, socket.create_connection(("127.0.0.1", s.port)) as raw:
        raw.settimeout(5)
        raw.sendall(b"GET /sleepy HTTP/1.1\r\nHost: x\r\n\r\n")
        reply = b""
        while not reply.endswith(b"awake"):
            chunk = raw.recv(65536)
            assert chunk, reply
            reply += chunk
        assert reply.startswith(b"HTTP/1.1 200")


def test_keep_alive_may_outlast_the_header_timeout(origin):
    """An idle connection waits the keep-alive timeout for its next request, even when that is
    longer than the header timeout; then it is closed."""
    app = ec.Edge(origin=origin.url).configure(header_read_timeout=0.3, keep_alive_timeout=1.5)
    with app.serve() as s, socket.create_connection(("127.0.0.1", s.port)) as raw:
        raw.settimeout(5)
        raw.sendall(b"GET /k1 HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_response(raw).startswith(b"HTTP/1.1 200")
        time.sleep(0.8)  # past the header timeout, within keep-alive
        raw.sendall(b"GET /k2 HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_response(raw).startswith(b"HTTP/1.1 200")
        t0 = time.monotonic()
        elapsed = closed_after(raw, t0)
        assert 1.5 * 0.9 <= elapsed < 1.5 * 1.2 + 0.5, elapsed


def test_a_head_trickled_after_an_idle_wait_gets_the_header_timeout(origin):
    """Slowloris on a kept-alive connection: the first byte of the next head starts the header
    timeout, however long the keep-alive timeout is."""
    app = ec.Edge(origin=origin.url).configure(header_read_timeout=TIMEOUT, keep_alive_timeout=30)
    with app.serve() as s, socket.create_connection(("127.0.0.1", s.port)) as raw:
        raw.settimeout(5)
        raw.sendall(b"GET /first HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_response(raw).startswith(b"HTTP/1.1 200")
        time.sleep(0.2)
        t0 = time.monotonic()
        raw.sendall(b"GET /second HTTP/1.1\r\n")
        elapsed, _ = trickle_until_closed(raw, t0)
        assert TIMEOUT * 0.9 <= elapsed < LATEST, elapsed


def test_an_idle_http2_connection_is_closed_too(origin):
    app = ec.Edge(origin=origin.url).configure(header_read_timeout=TIMEOUT)
    with app.serve() as s, socket.create_connection(("127.0.0.1", s.port)) as raw:
        # The HTTP/2 client preface and an empty SETTINGS frame, then nothing.
        raw.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        t0 = time.monotonic()
        raw.settimeout(TIMEOUT + 5)
        frames = b""
        while True:
            try:
                chunk = raw.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            frames += chunk
        elapsed = time.monotonic() - t0
        assert frames[3:4] == b"\x04"  # the server's SETTINGS came first
        assert TIMEOUT * 0.9 <= elapsed < LATEST, elapsed


def test_timed_out_connections_do_not_stop_the_server(origin):
    app = ec.Edge(origin=origin.url).configure(header_read_timeout=0.2)
    with app.serve() as s:
        silent = [socket.create_connection(("127.0.0.1", s.port)) for _ in range(20)]
        time.sleep(0.8)
        for c in silent:
            c.settimeout(2)
            assert c.recv(1) == b""
            c.close()
        with socket.create_connection(("127.0.0.1", s.port)) as raw:
            raw.settimeout(5)
            raw.sendall(b"GET /after HTTP/1.1\r\nHost: x\r\n\r\n")
            assert read_response(raw).startswith(b"HTTP/1.1 200")


def test_keep_alive_connections_are_spread_evenly_over_the_worker_threads(origin):
    """A burst of connections lands on whichever worker wakes first; hand-offs keep the open
    connections per worker within one of each other (read from the Prometheus gauge)."""
    app = ec.Edge(origin=origin.url).configure(threads=2, metrics_path="/metrics")
    with app.serve() as s:
        socks = [socket.create_connection(("127.0.0.1", s.port)) for _ in range(21)]
        try:
            for i, c in enumerate(socks):
                c.settimeout(5)
                c.sendall(f"GET /spread/{i} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            for c in socks:
                assert read_response(c).startswith(b"HTTP/1.1 200")
            # The scrape goes over one of the same connections.
            scrape = socks[0]
            scrape.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            text = read_response(scrape).decode()
        finally:
            for c in socks:
                c.close()
    counts = [
        int(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith("edgecore_open_connections{")
    ]
    assert len(counts) == 2 and sum(counts) == 21, text
    assert abs(counts[0] - counts[1]) <= 1, counts


@pytest.mark.parametrize("name", ["header_read_timeout", "keep_alive_timeout"])
@pytest.mark.parametrize("value", [0, -1, float("nan"), float("inf")])
def test_a_timeout_that_is_not_a_positive_number_of_seconds_is_refused(name, value):
    # By the call that sets it, naming it.
    with pytest.raises(ec.ConfigError, match=name):
        ec.Edge().configure(**{name: value})
