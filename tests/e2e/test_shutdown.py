"""Graceful shutdown under load: `edgecore serve` gets SIGTERM while clients hammer it, and no
client that reached the server sees a reset, a truncated response or an error status."""

from __future__ import annotations

import http.client
import signal
import socket
import threading
import time

from tests.e2e.test_cli import fetch, start_serve, write_app
from tests.redis_server import free_port

APP = """
import asyncio

app = ec.Edge(origin={origin!r}).configure(grace_period=10)
app.redirect(to="/elsewhere", paths="/r")

@app.route("/work")
async def work(request, env):
    await asyncio.sleep(0.05)
    return "done " + "x" * 2000

@app.route("/long")
async def long(request, env):
    await asyncio.sleep(3)
    return "long done"

@app.route("/sync")
def sync(request, env):
    return "sync done"
"""


# path -> (status, what its body contains). /slow is proxied (the origin answers after 50 ms); /r is
# answered by Rust alone (a redirect), so new connections arrive fast while the listener closes.
EXPECTED = {"/work": (200, b"done"), "/slow?s=0.05": (200, b"slow"), "/sync": (200, b"sync done"), "/r": (302, b"")}


def read_response(sock: socket.socket) -> tuple[int, bytes, bytes]:
    """Reads one complete Content-Length response (the server closes after it): status, head, body."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed before the response head ({len(data)} bytes)")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")
    )
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"response truncated at {len(body)} of {length} bytes")
        body += chunk
    return int(head.split(b" ", 2)[1]), head, body


class Load:
    """Client threads: two in three open a new connection per request (these exercise the accept
    queue at the moment the listener closes), the others reuse keep-alive connections."""

    def __init__(self, port: int, threads: int = 24) -> None:
        self.port = port
        self.stop_sent: float | None = None
        self.lock = threading.Lock()
        self.ok_before = self.ok_after = 0
        self.refused_after = 0
        self.idle_closed = 0  # keep-alive: closed before any response byte (retryable, RFC 9112 §9.3.1)
        self.errors: list[str] = []
        self.done = threading.Event()
        paths = list(EXPECTED)
        self.threads = [
            threading.Thread(target=self.fresh if i % 3 else self.keepalive, args=(paths[i % 4],), daemon=True)
            for i in range(threads)
        ]

    def start(self) -> None:
        for t in self.threads:
            t.start()

    def _ok(self) -> None:
        with self.lock:
            if self.stop_sent is None:
                self.ok_before += 1
            else:
                self.ok_after += 1

    def _error(self, what: str) -> None:
        with self.lock:
            self.errors.append(what)

    def _refused(self) -> bool:
        """A refused connection is fine once the server has stopped listening; before, an error."""
        with self.lock:
            if self.stop_sent is None:
                self.errors.append("connection refused before shutdown")
                return True
            self.refused_after += 1
            return True

    def fresh(self, path: str) -> None:
        request = f"GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".encode()
        while not self.done.is_set():
            try:
                sock = socket.create_connection(("127.0.0.1", self.port), timeout=15)
            except (ConnectionRefusedError, ConnectionResetError):
                # No connection was made (a SYN that met the closing listener gets a reset
                # instead of a refusal): nothing was sent, so nothing was lost.
                self._refused()
                return
            try:
                sock.sendall(request)
                status, _, body = read_response(sock)
                if (status, True) != (EXPECTED[path][0], EXPECTED[path][1] in body):
                    self._error(f"{path}: status {status} {body[:80]!r}")
                else:
                    self._ok()
            except (OSError, ValueError, StopIteration) as e:
                self._error(f"{path} on a new connection: {type(e).__name__}: {e}")
            finally:
                sock.close()

    def keepalive(self, path: str) -> None:
        conn: http.client.HTTPConnection | None = None
        while not self.done.is_set():
            if conn is None:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=15)
                try:
                    conn.connect()
                except (ConnectionRefusedError, ConnectionResetError):
                    self._refused()
                    return
                fresh = True
            else:
                fresh = False
            try:
                conn.request("GET", path)
                r = conn.getresponse()
                body = r.read()
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError) as e:
                conn.close()
                conn = None
                if fresh:
                    self._error(f"{path} on a new keep-alive connection: {type(e).__name__}")
                else:
                    with self.lock:
                        self.idle_closed += 1
                continue
            except (OSError, http.client.HTTPException) as e:
                self._error(f"{path} keep-alive: {type(e).__name__}: {e}")
                conn.close()
                conn = None
                continue
            if (r.status, True) != (EXPECTED[path][0], EXPECTED[path][1] in body):
                self._error(f"{path}: status {r.status} {body[:80]!r}")
            else:
                self._ok()
            if r.getheader("connection", "").lower() == "close":
                conn.close()
                conn = None


def test_sigterm_under_load_drains_without_client_errors(tmp_path, origin):
    write_app(tmp_path, APP.format(origin=origin.url))
    port = free_port()
    proc = start_serve(tmp_path, port)
    try:
        assert fetch(proc, f"http://127.0.0.1:{port}/sync") == b"sync done"
        load = Load(port)
        long_result: list[object] = []

        def long_request() -> None:
            try:
                long_result.append(http.client.HTTPConnection("127.0.0.1", port, timeout=30))
                c = long_result[0]
                assert isinstance(c, http.client.HTTPConnection)
                c.request("GET", "/long")
                r = c.getresponse()
                long_result.append((r.status, r.read()))
            except Exception as e:
                long_result.append(e)

        load.start()
        time.sleep(1.5)
        long_thread = threading.Thread(target=long_request)
        long_thread.start()
        time.sleep(0.5)  # /long is in flight (3 s), the load is running
        with load.lock:
            load.stop_sent = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
        stopped = time.monotonic()
        load.done.set()
        for t in load.threads:
            t.join(timeout=20)
        long_thread.join(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert "draining" in err
    assert load.errors == [], load.errors[:10]
    assert long_result[-1] == (200, b"long done"), long_result
    # The load was real, requests were in flight at the signal and finished, and the server
    # stopped listening only then, well within the grace period.
    assert load.ok_before > 100, load.ok_before
    assert load.ok_after > 0
    assert load.refused_after > 0
    assert stopped - load.stop_sent < 9
